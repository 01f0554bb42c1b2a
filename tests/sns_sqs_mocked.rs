//! What moto cannot show for SNS and SQS, with `aws-smithy-mocks` answering in AWS's shapes
//! (gaps of moto 5.2.5, see FIDELITY.md):
//! - moto keeps `SqsManagedSseEnabled` true once a queue has a `KmsMasterKeyId`; AWS reports
//!   false (SSE-SQS and SSE-KMS are exclusive), and a missing queue is `QueueDoesNotExist`
//!   (JSON protocol), not moto's `AWS.SimpleQueueService.NonExistentQueue`;
//! - moto has no `alias/aws/sqs` (DescribeKey answers NotFoundException); in AWS it may be set
//!   before it exists (created on first use), so the fix must not need DescribeKey for it;
//! - moto validates no key on SetTopicAttributes / SetQueueAttributes; AWS refuses a key it
//!   cannot use (SNS `InvalidParameter`/`KMSNotFound`, SQS `KmsNotFound`/`InvalidAttributeValue`).

use std::sync::Arc;

use atrest::{ConfigRule, FixRequest, FixRunner, FixStatus, Params, RuleContext};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::types::{KeyManagerType, KeyMetadata, KeySpec, KeyState};
use aws_sdk_sns::operation::get_topic_attributes::GetTopicAttributesOutput;
use aws_sdk_sns::operation::set_topic_attributes::SetTopicAttributesError;
use aws_sdk_sqs::operation::get_queue_attributes::{GetQueueAttributesError, GetQueueAttributesOutput};
use aws_sdk_sqs::operation::list_queue_tags::ListQueueTagsOutput;
use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesOutput;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use fix_sns_encrypt_topic::SnsEncryptTopic;
use fix_sqs_encrypt_queue::SqsEncryptQueue;
use rule_sqs_queue_encrypted::SqsQueueEncrypted;
use serde_json::json;

const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alerts";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn sdk() -> SdkConfig {
    // No endpoint is reachable: every answer comes from a mock.
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
}

fn error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// A queue as AWS reports it: with a key, `SqsManagedSseEnabled` is false.
fn queue(key: Option<&str>, sse_sqs: bool) -> GetQueueAttributesOutput {
    let mut out = GetQueueAttributesOutput::builder()
        .attributes(QueueAttributeName::QueueArn, "arn:aws:sqs:us-east-1:123456789012:orders")
        .attributes(QueueAttributeName::SqsManagedSseEnabled, sse_sqs.to_string());
    if let Some(key) = key {
        out = out.attributes(QueueAttributeName::KmsMasterKeyId, key).attributes(QueueAttributeName::KmsDataKeyReusePeriodSeconds, "300");
    }
    out.build()
}

fn customer_key() -> DescribeKeyOutput {
    DescribeKeyOutput::builder()
        .key_metadata(
            KeyMetadata::builder()
                .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
                .arn(KEY)
                .key_manager(KeyManagerType::Customer)
                .key_state(KeyState::Enabled)
                .key_spec(KeySpec::SymmetricDefault)
                .build()
                .unwrap(),
        )
        .build()
}

fn no_describe_key() -> aws_sdk_kms::Client {
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_error(|| panic!("the AWS managed alias must not be described"));
    mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe])
}

fn sqs_request(extra: serde_json::Value) -> FixRequest {
    let mut payload = json!({"ResourceId": QUEUE});
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    FixRequest::decode(&fix_sqs_encrypt_queue::SPEC, &payload).unwrap()
}

#[tokio::test]
async fn sqs_switch_from_sse_sqs_to_a_key_reads_back_as_aws_reports_it() {
    let get = mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .sequence()
        .output(|| queue(None, true))
        // AWS after the switch: the key, and SqsManagedSseEnabled false.
        .output(|| queue(Some(KEY), false))
        .build();
    let set = mock!(aws_sdk_sqs::Client::set_queue_attributes)
        .match_requests(|r| {
            let a = r.attributes().unwrap();
            a.get(&QueueAttributeName::KmsMasterKeyId).map(String::as_str) == Some(KEY)
                && a.get(&QueueAttributeName::KmsDataKeyReusePeriodSeconds).map(String::as_str) == Some("300")
                // The key alone switches: SSE-SQS is not also sent (AWS refuses both at once).
                && !a.contains_key(&QueueAttributeName::SqsManagedSseEnabled)
        })
        .then_output(|| SetQueueAttributesOutput::builder().build());
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&get, &set]);
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(customer_key);
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
    let runner = FixRunner::new(Arc::new(SqsEncryptQueue), &sdk(), None).with_client(sqs).with_client(kms);
    let turn = runner.step_request(&sqs_request(json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": KEY}))).await;
    assert_eq!(turn.status, FixStatus::Succeeded, "{}", turn.message);
    assert!(turn.message.contains("SSE-SQS -> SSE-KMS") || turn.changes.iter().any(|c| c.contains("SSE-SQS -> SSE-KMS")), "{turn:?}");
    assert_eq!(set.num_calls(), 1);
}

#[tokio::test]
async fn sqs_rule_reads_a_kms_queue_as_aws_reports_it() {
    let get = mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .match_requests(|r| {
            // Only the attributes the rule needs.
            let names = r.attribute_names();
            names.len() == 3 && !names.contains(&QueueAttributeName::All)
        })
        .then_output(|| queue(Some("alias/aws/sqs"), false));
    let tags = mock!(aws_sdk_sqs::Client::list_queue_tags).then_output(|| ListQueueTagsOutput::builder().tags("team", "orders").build());
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&get, &tags]);
    let raw = [("requireKms".to_string(), json!("true"))].into_iter().collect();
    let params: Params = rule_sqs_queue_encrypted::SPEC.parse_params(&raw).unwrap();
    let ctx = RuleContext::new(&sdk(), params).with_client(sqs);
    let item = SqsQueueEncrypted.fetch_item(&ctx, "AWS::SQS::Queue", QUEUE).await.unwrap().expect("the queue");
    assert_eq!(item.tag("team"), Some("orders"));
    let verdict = SqsQueueEncrypted.judge(&ctx, &item).await.unwrap();
    assert_eq!(verdict.compliance, atrest::Compliance::Compliant, "{}", verdict.annotation);
}

#[tokio::test]
async fn sqs_aws_managed_alias_is_set_without_describing_it() {
    let get = mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .sequence()
        .output(|| queue(None, false))
        .output(|| queue(Some("alias/aws/sqs"), false))
        .build();
    let set = mock!(aws_sdk_sqs::Client::set_queue_attributes).then_output(|| SetQueueAttributesOutput::builder().build());
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&get, &set]);
    let runner = FixRunner::new(Arc::new(SqsEncryptQueue), &sdk(), None).with_client(sqs).with_client(no_describe_key());
    let turn = runner.step_request(&sqs_request(json!({"SSEAlgorithm": "aws:kms"}))).await;
    assert_eq!(turn.status, FixStatus::Succeeded, "{}", turn.message);
    assert!(turn.message.contains("alias/aws/sqs"), "{}", turn.message);
}

#[tokio::test]
async fn sqs_missing_queue_and_refused_key_fail_plainly() {
    let get = mock!(aws_sdk_sqs::Client::get_queue_attributes)
        .then_error(|| GetQueueAttributesError::generic(error("QueueDoesNotExist", "The specified queue does not exist.")));
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&get]);
    let runner = FixRunner::new(Arc::new(SqsEncryptQueue), &sdk(), None).with_client(sqs).with_client(no_describe_key());
    let turn = runner.step_request(&sqs_request(json!({}))).await;
    assert_eq!(turn.status, FixStatus::Failed, "{}", turn.message);
    assert!(turn.message.contains("does not exist"), "{}", turn.message);

    let get = mock!(aws_sdk_sqs::Client::get_queue_attributes).then_output(|| queue(None, false));
    let set = mock!(aws_sdk_sqs::Client::set_queue_attributes).then_error(|| {
        aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesError::generic(error(
            "KmsNotFound",
            "The referenced key was not found.",
        ))
    });
    let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&get, &set]);
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(customer_key);
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
    let runner = FixRunner::new(Arc::new(SqsEncryptQueue), &sdk(), None).with_client(sqs).with_client(kms);
    let turn = runner.step_request(&sqs_request(json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": KEY}))).await;
    assert_eq!(turn.status, FixStatus::Failed, "{}", turn.message);
    assert!(turn.message.contains("KmsNotFound") && turn.message.contains("Nothing was changed"), "{}", turn.message);
}

#[tokio::test]
async fn sns_a_key_sns_refuses_fails_with_the_reason() {
    let get = mock!(aws_sdk_sns::Client::get_topic_attributes)
        .then_output(|| GetTopicAttributesOutput::builder().attributes("TopicArn", TOPIC).build());
    let set = mock!(aws_sdk_sns::Client::set_topic_attributes)
        .then_error(|| SetTopicAttributesError::generic(error("InvalidParameter", "Invalid parameter: KmsMasterKeyId")));
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&get, &set]);
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(customer_key);
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk(), None).with_client(sns).with_client(kms);
    let req = FixRequest::decode(&fix_sns_encrypt_topic::SPEC, &json!({"ResourceId": TOPIC, "KmsKeyId": KEY})).unwrap();
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Failed, "{}", turn.message);
    assert!(turn.message.contains("SNS refused") && turn.message.contains("Nothing was changed"), "{}", turn.message);
}

#[tokio::test]
async fn sns_a_disabled_key_is_refused_before_any_change() {
    let get = mock!(aws_sdk_sns::Client::get_topic_attributes)
        .then_output(|| GetTopicAttributesOutput::builder().attributes("TopicArn", TOPIC).build());
    let set = mock!(aws_sdk_sns::Client::set_topic_attributes).then_error(|| panic!("a disabled key is never set"));
    let sns = mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&get, &set]);
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(|| {
        let mut out = customer_key();
        out.key_metadata = out.key_metadata.map(|mut m| {
            m.key_state = Some(KeyState::Disabled);
            m
        });
        out
    });
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe]);
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk(), None).with_client(sns).with_client(kms);
    let req = FixRequest::decode(&fix_sns_encrypt_topic::SPEC, &json!({"ResourceId": TOPIC, "KmsKeyId": KEY})).unwrap();
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Failed, "{}", turn.message);
    assert!(turn.message.contains("Disabled"), "{}", turn.message);
}
