//! The plan table, and turns against `aws-smithy-mocks` for what the stand-in cannot show: moto
//! has no `alias/aws/sns` (DescribeKey answers NotFoundException), while in AWS a topic may be
//! set to it before it exists (AWS creates the managed key on first use).

use super::*;
use atrest::{FixRunner, FixStatus};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sns::operation::get_topic_attributes::GetTopicAttributesOutput;
use aws_sdk_sns::operation::set_topic_attributes::SetTopicAttributesOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use serde_json::json;
use std::sync::Arc;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alerts";
const EVENTS_PUBLISH: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowEventBridge","Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sns:Publish","Resource":"arn:aws:sns:us-east-1:123456789012:alerts"}]}"#;

#[test]
fn next_table() {
    // (case, topic key, KmsKeyId, the keys match, expected)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, bool, Next);
    let cases: Vec<Case> = vec![
        ("unencrypted, default key", None, None, false, Next::Encrypt),
        ("unencrypted, given key", None, Some("alias/app"), false, Next::Encrypt),
        ("any key is enough by default", Some("alias/other"), None, false, Next::Done),
        ("the key asked for", Some("alias/app"), Some("alias/app"), true, Next::Done),
        ("another key than asked", Some("alias/aws/sns"), Some("alias/app"), false, Next::Encrypt),
    ];
    for (name, current, requested, matches, expected) in cases {
        assert_eq!(next(current, requested, matches), expected, "{name}");
    }
}

#[test]
fn only_topic_arns_are_resource_ids() {
    assert!(is_topic_arn(TOPIC));
    assert!(is_topic_arn("arn:aws-us-gov:sns:us-gov-west-1:123456789012:orders.fifo"));
    for bad in
        ["alerts", "arn:aws:sqs:us-east-1:123456789012:alerts", "arn:aws:sns:us-east-1:123:alerts", "arn:aws:sns:us-east-1:123456789012:"]
    {
        assert!(!is_topic_arn(bad), "{bad}");
    }
}

fn sdk() -> SdkConfig {
    // No endpoint is reachable: every answer comes from a mock.
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
}

fn attributes(policy: &str, key: Option<&str>) -> GetTopicAttributesOutput {
    let mut out = GetTopicAttributesOutput::builder().attributes("TopicArn", TOPIC).attributes("Policy", policy);
    if let Some(key) = key {
        out = out.attributes("KmsMasterKeyId", key);
    }
    out.build()
}

fn no_kms_calls() -> aws_sdk_kms::Client {
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_error(|| panic!("alias/aws/sns must not be described"));
    mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe])
}

#[tokio::test]
async fn the_managed_alias_is_set_without_describing_it() {
    let get = mock!(aws_sdk_sns::Client::get_topic_attributes)
        .sequence()
        .output(|| attributes("{}", None))
        .output(|| attributes("{}", Some("alias/aws/sns")))
        .build();
    let set = mock!(aws_sdk_sns::Client::set_topic_attributes)
        .match_requests(|r| r.attribute_name() == Some("KmsMasterKeyId") && r.attribute_value() == Some("alias/aws/sns"))
        .then_output(|| SetTopicAttributesOutput::builder().build());
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&get, &set]);
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk(), None).with_client(sns).with_client(no_kms_calls());
    let req = FixRequest::decode(&SPEC, &json!({"ResourceId": TOPIC})).unwrap();
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Succeeded, "{}", turn.message);
    assert!(turn.message.contains("alias/aws/sns"), "{}", turn.message);
    assert_eq!(set.num_calls(), 1);
}

#[tokio::test]
async fn the_managed_alias_is_refused_when_a_service_publishes() {
    let get = mock!(aws_sdk_sns::Client::get_topic_attributes).then_output(|| attributes(EVENTS_PUBLISH, None));
    let set = mock!(aws_sdk_sns::Client::set_topic_attributes).then_error(|| panic!("a refused switch changes nothing"));
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&get, &set]);
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk(), None).with_client(sns).with_client(no_kms_calls());
    let req = FixRequest::decode(&SPEC, &json!({"ResourceId": TOPIC})).unwrap();
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Failed, "{}", turn.message);
    assert!(turn.message.contains("events.amazonaws.com") && turn.message.contains("customer managed key"), "{}", turn.message);
    assert!(turn.message.contains("Nothing was changed"), "{}", turn.message);
    assert_eq!(set.num_calls(), 0);
}

#[tokio::test]
async fn a_deleted_topic_fails_plainly() {
    let get = mock!(aws_sdk_sns::Client::get_topic_attributes).then_error(|| {
        aws_sdk_sns::operation::get_topic_attributes::GetTopicAttributesError::NotFoundException(
            aws_sdk_sns::types::error::NotFoundException::builder()
                .message("Topic does not exist")
                .meta(aws_smithy_types::error::ErrorMetadata::builder().code("NotFound").message("Topic does not exist").build())
                .build(),
        )
    });
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&get]);
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk(), None).with_client(sns).with_client(no_kms_calls());
    let req = FixRequest::decode(&SPEC, &json!({"ResourceId": TOPIC})).unwrap();
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Failed, "{}", turn.message);
    assert!(turn.message.contains("does not exist"), "{}", turn.message);
}
