use super::*;
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::operation::get_key_policy::GetKeyPolicyOutput;
use aws_sdk_kms::types::{KeyManagerType, KeyMetadata};
use aws_smithy_mocks::{RuleMode, mock, mock_client};

const KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROOT_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;

fn set(services: &[&str]) -> BTreeSet<String> {
    services.iter().map(|s| s.to_string()).collect()
}

#[test]
fn service_publishers_table() {
    let cases: Vec<(&str, &str, &str, &[&str])> = vec![
        ("no policy", "", SNS_PUBLISH_ACTION, &[]),
        (
            "the default topic policy: account principals only",
            r#"{"Version":"2008-10-17","Statement":[{"Sid":"__default_statement_ID","Effect":"Allow","Principal":{"AWS":"*"},"Action":["SNS:GetTopicAttributes","SNS:Publish"],"Resource":"arn:aws:sns:us-east-1:123456789012:alerts","Condition":{"StringEquals":{"AWS:SourceOwner":"123456789012"}}}]}"#,
            SNS_PUBLISH_ACTION,
            &[],
        ),
        (
            "Statement as an object, Service as a string, upper-case action",
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"SNS:Publish","Resource":"*"}}"#,
            SNS_PUBLISH_ACTION,
            &["events.amazonaws.com"],
        ),
        (
            "Service as an array, wildcard action, condition on the source",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":["s3.amazonaws.com","cloudwatch.amazonaws.com"]},"Action":"sns:*","Resource":"*","Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::uploads"}}}]}"#,
            SNS_PUBLISH_ACTION,
            &["cloudwatch.amazonaws.com", "s3.amazonaws.com"],
        ),
        (
            "a queue: sqs:SendMessage",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"*"}]}"#,
            SQS_SEND_ACTION,
            &["events.amazonaws.com"],
        ),
        (
            "a service allowed only to read is no publisher",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:GetQueueAttributes","Resource":"*"}]}"#,
            SQS_SEND_ACTION,
            &[],
        ),
        (
            "a Deny is no publisher",
            r#"{"Statement":[{"Effect":"Deny","Principal":{"Service":"events.amazonaws.com"},"Action":"sqs:*","Resource":"*"}]}"#,
            SQS_SEND_ACTION,
            &[],
        ),
        (
            "NotAction that leaves SendMessage in",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"NotAction":"sqs:DeleteQueue","Resource":"*"}]}"#,
            SQS_SEND_ACTION,
            &["sns.amazonaws.com"],
        ),
    ];
    for (name, policy, action, expected) in cases {
        assert_eq!(service_publishers(policy, action).unwrap(), set(expected), "{name}");
    }
    assert!(service_publishers("{not json", SNS_PUBLISH_ACTION).is_err());
}

#[test]
fn missing_key_permissions_table() {
    let doc = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let events = "events.amazonaws.com";
    let both: &[&str] = &["kms:GenerateDataKey*", "kms:Decrypt"];
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("the account root does not grant a service principal", ROOT_ONLY.to_string(), both),
        (
            "the developer guide's statement",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":["kms:GenerateDataKey*","kms:Decrypt"],"Resource":"*"}]}"#.into(),
            &[],
        ),
        (
            "kms:* to the service, Statement as an object",
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["s3.amazonaws.com","events.amazonaws.com"]},"Action":"kms:*","Resource":"*"}}"#.into(),
            &[],
        ),
        (
            "only GenerateDataKey",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"kms:GenerateDataKey","Resource":"*"}]}"#.into(),
            &["kms:Decrypt"],
        ),
        (
            "split over two statements, any case",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"KMS:generatedatakey*","Resource":"*"},{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}]}"#.into(),
            &[],
        ),
        (
            "another service's grant",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"kms:*","Resource":"*"}]}"#.into(),
            both,
        ),
        (
            "everyone, with a condition the key owner set",
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":["kms:GenerateDataKey*","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"aws:SourceAccount":"123456789012"}}}]}"#.into(),
            &[],
        ),
        (
            "an unconditional Deny undoes the grant",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#.into(),
            &["kms:Decrypt"],
        ),
        (
            "a conditional Deny does not",
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#.into(),
            &[],
        ),
        ("a policy with no statements", "{}".into(), both),
    ];
    for (name, policy, expected) in cases {
        assert_eq!(missing_key_permissions(&doc(&policy), events), expected.to_vec(), "{name}");
    }
}

#[test]
fn cut_off_and_refusal() {
    let publishers = set(&["events.amazonaws.com"]);
    // An AWS managed key cuts off every service publisher whatever its policy says.
    let managed = cut_off_publishers(&publishers, KeyOwner::AwsManaged, None).unwrap();
    assert_eq!(managed, vec![CutOff { service: "events.amazonaws.com".into(), missing: vec!["kms:GenerateDataKey*", "kms:Decrypt"] }]);
    let message = refusal_message("topic alerts", SNS_MANAGED_KEY, KeyOwner::AwsManaged, &managed);
    assert!(message.contains("customer managed key") && message.contains("events.amazonaws.com"), "{message}");
    assert!(message.contains(r#""Principal":{"Service":"events.amazonaws.com"}"#), "{message}");
    assert!(message.contains("Nothing was changed"), "{message}");
    // A customer managed key whose policy only enables IAM (root) cuts it off too.
    let customer = cut_off_publishers(&publishers, KeyOwner::Customer, Some(ROOT_ONLY)).unwrap();
    let message = refusal_message("topic alerts", KEY_ARN, KeyOwner::Customer, &customer);
    assert!(message.contains("events.amazonaws.com lacks kms:GenerateDataKey* and kms:Decrypt"), "{message}");
    assert!(message.contains("Force=true"), "{message}");
    // No publishers, nothing cut off.
    assert!(cut_off_publishers(&BTreeSet::new(), KeyOwner::AwsManaged, None).unwrap().is_empty());
    assert!(cut_off_publishers(&publishers, KeyOwner::Customer, Some("nope")).is_err());
}

#[test]
fn managed_alias_by_name_or_arn() {
    assert!(is_managed_alias("alias/aws/sns", SNS_MANAGED_KEY));
    assert!(is_managed_alias("arn:aws:kms:us-east-1:123456789012:alias/aws/sqs", SQS_MANAGED_KEY));
    assert!(!is_managed_alias("alias/aws/sns", SQS_MANAGED_KEY));
    assert!(!is_managed_alias("alias/aws/sns-custom", SNS_MANAGED_KEY));
    assert!(!is_managed_alias(KEY_ARN, SNS_MANAGED_KEY));
}

fn metadata(manager: KeyManagerType) -> DescribeKeyOutput {
    DescribeKeyOutput::builder()
        .key_metadata(KeyMetadata::builder().key_id("1234").arn(KEY_ARN).key_manager(manager).build().unwrap())
        .build()
}

const EVENTS_PUBLISH: &str =
    r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"events.amazonaws.com"},"Action":"sns:Publish","Resource":"*"}]}"#;

#[tokio::test]
async fn refusal_reads_the_key_only_when_a_service_publishes() {
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(|| metadata(KeyManagerType::Customer));
    let policy = mock!(aws_sdk_kms::Client::get_key_policy)
        .match_requests(|r| r.key_id() == Some(KEY_ARN) && r.policy_name() == Some("default"))
        .then_output(|| GetKeyPolicyOutput::builder().policy(ROOT_ONLY).build());
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe, &policy]);
    let resolver = KeyResolver::new(kms.clone());
    let switch = |resource_policy, key| Switch {
        resource: "topic alerts",
        resource_policy,
        publish_action: SNS_PUBLISH_ACTION,
        key,
        managed_alias: SNS_MANAGED_KEY,
    };

    // No service publisher: no KMS call at all.
    assert_eq!(publisher_refusal(&kms, &resolver, &switch(None, "alias/app")).await.unwrap(), None);
    // The managed alias: refused without a call (moto and a fresh account have no aws/sns yet).
    let refused = publisher_refusal(&kms, &resolver, &switch(Some(EVENTS_PUBLISH), SNS_MANAGED_KEY)).await.unwrap();
    assert!(refused.is_some_and(|m| m.contains("AWS managed key")));
    assert_eq!((describe.num_calls(), policy.num_calls()), (0, 0));
    // A customer key whose policy grants only the account root: refused, naming the principal.
    let refused = publisher_refusal(&kms, &resolver, &switch(Some(EVENTS_PUBLISH), "alias/app")).await.unwrap();
    assert!(refused.is_some_and(|m| m.contains("events.amazonaws.com lacks")));
    assert_eq!((describe.num_calls(), policy.num_calls()), (1, 1));
}

#[tokio::test]
async fn an_aws_managed_key_by_arn_is_refused_from_describe_key() {
    let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(|| metadata(KeyManagerType::Aws));
    let policy = mock!(aws_sdk_kms::Client::get_key_policy).then_error(|| panic!("an AWS managed key's policy need not be read"));
    let kms = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe, &policy]);
    let resolver = KeyResolver::new(kms.clone());
    let switch = Switch {
        resource: "queue orders",
        resource_policy: Some(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"*"}]}"#,
        ),
        publish_action: SQS_SEND_ACTION,
        key: KEY_ARN,
        managed_alias: SQS_MANAGED_KEY,
    };
    let refused = publisher_refusal(&kms, &resolver, &switch).await.unwrap();
    assert!(refused.is_some_and(|m| m.contains("AWS managed key") && m.contains("s3.amazonaws.com")));
    assert_eq!(policy.num_calls(), 0);
}
