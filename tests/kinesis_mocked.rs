//! What moto cannot show for Kinesis and Firehose, with `aws-smithy-mocks` answering in AWS's
//! real shapes (gaps of moto 5.2.5, see FIDELITY.md):
//! - moto applies StartStreamEncryption and StartDeliveryStreamEncryption at once; AWS sets the
//!   stream UPDATING (Kinesis) or the encryption ENABLING (Firehose) and finishes later, and a
//!   Firehose change can end ENABLING_FAILED with a FailureDescription;
//! - moto validates no key: AWS answers KMSNotFoundException, KMSDisabledException,
//!   KMSAccessDeniedException … (Kinesis) and InvalidKMSResourceException (Firehose);
//! - moto has no `alias/aws/kinesis` (DescribeKey answers NotFoundException); in AWS it names
//!   the AWS managed key, a key ARN different from a customer key's;
//! - moto accepts StartDeliveryStreamEncryption on a Kinesis-fed delivery stream; AWS refuses it
//!   (only Direct PUT streams take SSE), so the fix must never ask;
//! - Firehose's 25 encryption changes per stream per day (LimitExceededException).

use std::sync::Arc;

use atrest::{FixOutcome, FixRequest, FixRunner, FixStatus};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput;
use aws_sdk_firehose::operation::start_delivery_stream_encryption::{
    StartDeliveryStreamEncryptionError, StartDeliveryStreamEncryptionOutput,
};
use aws_sdk_firehose::types::{
    DeliveryStreamDescription, DeliveryStreamEncryptionConfiguration, DeliveryStreamEncryptionStatus, DeliveryStreamFailureType,
    DeliveryStreamStatus, DeliveryStreamType, FailureDescription, KeyType, KinesisStreamSourceDescription, SourceDescription,
};
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryOutput;
use aws_sdk_kinesis::operation::start_stream_encryption::{StartStreamEncryptionError, StartStreamEncryptionOutput};
use aws_sdk_kinesis::types::{EncryptionType, StreamDescriptionSummary, StreamStatus};
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::types::KeyMetadata;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use fix_firehose_encrypt_delivery_stream::FirehoseEncryptDeliveryStream;
use fix_kinesis_encrypt_stream::KinesisEncryptStream;
use serde_json::json;

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const AWS_KINESIS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-0000-4000-8000-00000000aaaa";
const SOURCE_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clickstream";

fn sdk() -> SdkConfig {
    // No endpoint is reachable: every answer comes from a mock.
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
}

fn error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

fn stream(status: StreamStatus, key: Option<&str>) -> DescribeStreamSummaryOutput {
    let mut summary = StreamDescriptionSummary::builder()
        .stream_name("clickstream")
        .stream_arn(SOURCE_ARN)
        .stream_status(status)
        .retention_period_hours(24)
        .stream_creation_timestamp(aws_smithy_types::DateTime::from_secs(0))
        .set_enhanced_monitoring(Some(vec![]))
        .open_shard_count(1);
    summary = match key {
        Some(k) => summary.encryption_type(EncryptionType::Kms).key_id(k),
        None => summary.encryption_type(EncryptionType::None),
    };
    DescribeStreamSummaryOutput::builder().stream_description_summary(summary.build().unwrap()).build()
}

fn kinesis_request(key: &str) -> FixRequest {
    FixRequest::decode(&fix_kinesis_encrypt_stream::SPEC, &json!({"ResourceId": "clickstream", "KmsKeyId": key})).unwrap()
}

fn kms_describing(alias: &'static str, arn: &'static str) -> aws_sdk_kms::Client {
    let describe = mock!(aws_sdk_kms::Client::describe_key).match_requests(move |r| r.key_id() == Some(alias)).then_output(move || {
        DescribeKeyOutput::builder().key_metadata(KeyMetadata::builder().key_id("k").arn(arn).build().unwrap()).build()
    });
    mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe])
}

#[tokio::test]
async fn kinesis_the_stream_is_updating_then_active_and_encrypted() {
    // Turn 1: ACTIVE and unencrypted → start → read back UPDATING. Turn 2: still UPDATING.
    // Turn 3: ACTIVE with the key.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream(StreamStatus::Active, None))
        .output(|| stream(StreamStatus::Updating, Some("alias/aws/kinesis")))
        .times(2)
        .output(|| stream(StreamStatus::Active, Some("alias/aws/kinesis")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .match_requests(|r| r.key_id() == Some("alias/aws/kinesis") && r.encryption_type() == Some(&EncryptionType::Kms))
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&describe, &start]);
    let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk(), None).with_client(client);
    let req = FixRequest::decode(&fix_kinesis_encrypt_stream::SPEC, &json!({"ResourceId": "clickstream"})).unwrap();

    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::InProgress, "{}", turn.message);
    assert_eq!(turn.changes.len(), 1);
    // While UPDATING the next turn waits and asks nothing again.
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::InProgress, "{}", turn.message);
    assert!(turn.message.contains("UPDATING"), "{}", turn.message);
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Succeeded, "{}", turn.message);
    assert!(turn.message.contains("alias/aws/kinesis"), "{}", turn.message);
    assert_eq!(start.num_calls(), 1, "StartStreamEncryption is asked once");
}

#[tokio::test]
async fn kinesis_a_key_kinesis_cannot_use_fails_with_the_reason_and_changes_nothing() {
    for code in ["KMSNotFoundException", "KMSDisabledException", "KMSAccessDeniedException", "KMSInvalidStateException", "KMSOptInRequired"]
    {
        let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| stream(StreamStatus::Active, None));
        let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
            .then_error(move || StartStreamEncryptionError::generic(error(code, "the key cannot be used")));
        let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&describe, &start]);
        let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk(), None).with_client(client);
        let outcome = runner.step_request(&kinesis_request("alias/stream-data")).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{code}: {}", outcome.message);
        assert!(outcome.message.contains(code) && outcome.message.contains("alias/stream-data"), "{code}: {}", outcome.message);
        assert!(outcome.message.contains("Nothing was changed"), "{}", outcome.message);
        assert!(outcome.changes.is_empty());
    }
}

#[tokio::test]
async fn kinesis_a_busy_stream_or_throttling_is_tried_again() {
    for code in ["ResourceInUseException", "LimitExceededException", "KMSThrottlingException"] {
        let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| stream(StreamStatus::Active, None));
        let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
            .then_error(move || StartStreamEncryptionError::generic(error(code, "try later")));
        let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&describe, &start]);
        let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk(), None).with_client(client);
        let outcome = runner.step_request(&kinesis_request("alias/stream-data")).await;
        assert_eq!(outcome.status, FixStatus::InProgress, "{code}: {}", outcome.message);
    }
}

#[tokio::test]
async fn kinesis_keys_are_compared_by_arn_not_by_text() {
    // The stream reports the key ARN; the request names it by alias: the same key, no change.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| stream(StreamStatus::Active, Some(KEY)));
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption).then_output(|| StartStreamEncryptionOutput::builder().build());
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&describe, &start]);
    let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk(), None)
        .with_client(client)
        .with_client(kms_describing("alias/stream-data", KEY));
    let outcome = runner.step_request(&kinesis_request("alias/stream-data")).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert_eq!(start.num_calls(), 0);

    // In AWS alias/aws/kinesis names the AWS managed key (moto has no such alias): a stream on
    // it is re-keyed when a customer key is asked for.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream(StreamStatus::Active, Some("alias/aws/kinesis")))
        .output(|| stream(StreamStatus::Updating, Some(KEY)))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .match_requests(|r| r.key_id() == Some(KEY))
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&describe, &start]);
    let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk(), None)
        .with_client(client)
        .with_client(kms_describing("alias/aws/kinesis", AWS_KINESIS_KEY));
    let outcome = runner.step_request(&kinesis_request(KEY)).await;
    assert_eq!(outcome.status, FixStatus::InProgress, "{}", outcome.message);
    assert_eq!(start.num_calls(), 1);
}

fn delivery_stream(
    stream_type: DeliveryStreamType,
    status: Option<DeliveryStreamEncryptionStatus>,
    key: Option<&str>,
    failure: Option<&str>,
) -> DescribeDeliveryStreamOutput {
    let encryption = status.map(|s| {
        DeliveryStreamEncryptionConfiguration::builder()
            .status(s)
            .key_type(if key.is_some() { KeyType::CustomerManagedCmk } else { KeyType::AwsOwnedCmk })
            .set_key_arn(key.map(str::to_string))
            .set_failure_description(
                failure
                    .map(|d| FailureDescription::builder().r#type(DeliveryStreamFailureType::KmsAccessDenied).details(d).build().unwrap()),
            )
            .build()
    });
    let source = (stream_type == DeliveryStreamType::KinesisStreamAsSource).then(|| {
        SourceDescription::builder()
            .kinesis_stream_source_description(KinesisStreamSourceDescription::builder().kinesis_stream_arn(SOURCE_ARN).build())
            .build()
    });
    DescribeDeliveryStreamOutput::builder()
        .delivery_stream_description(
            DeliveryStreamDescription::builder()
                .delivery_stream_name("ingest")
                .delivery_stream_arn("arn:aws:firehose:us-east-1:123456789012:deliverystream/ingest")
                .delivery_stream_status(DeliveryStreamStatus::Active)
                .delivery_stream_type(stream_type)
                .version_id("1")
                .set_delivery_stream_encryption_configuration(encryption)
                .set_source(source)
                .set_destinations(Some(vec![]))
                .has_more_destinations(false)
                .build()
                .unwrap(),
        )
        .build()
}

fn firehose_request(key: &str) -> FixRequest {
    FixRequest::decode(&fix_firehose_encrypt_delivery_stream::SPEC, &json!({"ResourceId": "ingest", "KmsKeyId": key})).unwrap()
}

async fn firehose_step(firehose: aws_sdk_firehose::Client, kms: Option<aws_sdk_kms::Client>, key: &str) -> FixOutcome {
    let mut runner = FixRunner::new(Arc::new(FirehoseEncryptDeliveryStream), &sdk(), None).with_client(firehose);
    if let Some(kms) = kms {
        runner = runner.with_client(kms);
    }
    runner.step_request(&firehose_request(key)).await
}

#[tokio::test]
async fn firehose_enabling_then_enabled_and_never_asked_twice() {
    use DeliveryStreamEncryptionStatus as S;
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
        .sequence()
        .output(|| delivery_stream(DeliveryStreamType::DirectPut, None, None, None))
        .output(|| delivery_stream(DeliveryStreamType::DirectPut, Some(S::Enabling), None, None))
        .times(2)
        .output(|| delivery_stream(DeliveryStreamType::DirectPut, Some(S::Enabled), None, None))
        .build();
    let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
        .match_requests(|r| r.delivery_stream_encryption_configuration_input().map(|i| i.key_type()) == Some(&KeyType::AwsOwnedCmk))
        .then_output(|| StartDeliveryStreamEncryptionOutput::builder().build());
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&describe, &start]);
    let runner = FixRunner::new(Arc::new(FirehoseEncryptDeliveryStream), &sdk(), None).with_client(client);
    let req = FixRequest::decode(&fix_firehose_encrypt_delivery_stream::SPEC, &json!({"ResourceId": "ingest"})).unwrap();
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::InProgress, "{}", turn.message);
    assert_eq!(turn.changes.len(), 1);
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::InProgress, "{}", turn.message);
    assert!(turn.message.contains("ENABLING"), "{}", turn.message);
    let turn = runner.step_request(&req).await;
    assert_eq!(turn.status, FixStatus::Succeeded, "{}", turn.message);
    assert_eq!(start.num_calls(), 1, "the 25-a-day call is made once");
}

#[tokio::test]
async fn firehose_enabling_failed_quotes_the_failure_description() {
    use DeliveryStreamEncryptionStatus as S;
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
        .sequence()
        .output(|| delivery_stream(DeliveryStreamType::DirectPut, None, None, None))
        .output(|| {
            delivery_stream(DeliveryStreamType::DirectPut, Some(S::EnablingFailed), Some(KEY), Some("Access was denied to the KMS key."))
        })
        .build();
    let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
        .match_requests(|r| r.delivery_stream_encryption_configuration_input().and_then(|i| i.key_arn()) == Some(KEY))
        .then_output(|| StartDeliveryStreamEncryptionOutput::builder().build());
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&describe, &start]);
    // The key is named by alias: Firehose takes only a key ARN, so it is resolved first.
    let outcome = firehose_step(client, Some(kms_describing("alias/firehose-data", KEY)), "alias/firehose-data").await;
    assert_eq!(outcome.status, FixStatus::Failed, "{}", outcome.message);
    assert!(
        outcome.message.contains("ENABLING_FAILED") && outcome.message.contains("Access was denied to the KMS key."),
        "{}",
        outcome.message
    );
    assert_eq!(start.num_calls(), 1);

    // Run again with the same key: not retried (it would fail the same way), the cause is quoted.
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream).then_output(|| {
        delivery_stream(DeliveryStreamType::DirectPut, Some(S::EnablingFailed), Some(KEY), Some("Access was denied to the KMS key."))
    });
    let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
        .then_output(|| StartDeliveryStreamEncryptionOutput::builder().build());
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&describe, &start]);
    let outcome = firehose_step(client, Some(kms_describing("alias/firehose-data", KEY)), "alias/firehose-data").await;
    assert_eq!(outcome.status, FixStatus::Failed, "{}", outcome.message);
    assert_eq!(start.num_calls(), 0);
}

#[tokio::test]
async fn firehose_refusals_are_failed_with_the_reason() {
    for (code, says) in [
        ("InvalidKMSResourceException", "cannot use"),
        ("LimitExceededException", "25 encryption changes"),
        ("InvalidArgumentException", "refused"),
    ] {
        let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
            .then_output(|| delivery_stream(DeliveryStreamType::DirectPut, None, None, None));
        let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
            .then_error(move || StartDeliveryStreamEncryptionError::generic(error(code, "refused by Firehose")));
        let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&describe, &start]);
        let outcome = firehose_step(client, Some(kms_describing("alias/firehose-data", KEY)), "alias/firehose-data").await;
        assert_eq!(outcome.status, FixStatus::Failed, "{code}: {}", outcome.message);
        assert!(outcome.message.contains(says) && outcome.message.contains(code), "{code}: {}", outcome.message);
    }
    // A busy stream is tried again.
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
        .then_output(|| delivery_stream(DeliveryStreamType::DirectPut, None, None, None));
    let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
        .then_error(|| StartDeliveryStreamEncryptionError::generic(error("ResourceInUseException", "busy")));
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&describe, &start]);
    assert_eq!(firehose_step(client, None, "").await.status, FixStatus::InProgress);
}

#[tokio::test]
async fn firehose_a_kinesis_fed_stream_is_never_asked_to_encrypt() {
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
        .then_output(|| delivery_stream(DeliveryStreamType::KinesisStreamAsSource, None, None, None));
    let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
        .then_error(|| StartDeliveryStreamEncryptionError::generic(error("InvalidArgumentException", "only DirectPut streams take SSE")));
    let firehose = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&describe, &start]);
    let source = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .match_requests(|r| r.stream_arn() == Some(SOURCE_ARN))
        .then_output(|| stream(StreamStatus::Active, None));
    let kinesis = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&source]);
    let runner = FixRunner::new(Arc::new(FirehoseEncryptDeliveryStream), &sdk(), None).with_client(firehose).with_client(kinesis);
    let outcome = runner.step_request(&firehose_request("")).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{}", outcome.message);
    assert!(outcome.message.contains("clickstream") && outcome.message.contains("kinesis-encrypt-stream"), "{}", outcome.message);
    assert_eq!(start.num_calls(), 0);
}

/// A data stream's description as DescribeStreamSummary answers for `name`.
fn named_stream(name: &str, key: Option<&str>) -> DescribeStreamSummaryOutput {
    let mut out = stream(StreamStatus::Active, key);
    if let Some(summary) = out.stream_description_summary.as_mut() {
        summary.stream_name = name.to_string();
        summary.stream_arn = format!("arn:aws:kinesis:us-east-1:123456789012:stream/{name}");
    }
    out
}

#[tokio::test]
async fn a_kinesis_sweep_pages_the_list_and_reads_each_stream_once() {
    use aws_sdk_kinesis::operation::list_streams::ListStreamsOutput;
    // Two pages (AWS's token on the first), three streams, one of them encrypted.
    let list = mock!(aws_sdk_kinesis::Client::list_streams)
        .sequence()
        .output(|| ListStreamsOutput::builder().stream_names("a").stream_names("b").has_more_streams(true).next_token("t").build().unwrap())
        .output(|| ListStreamsOutput::builder().stream_names("c").has_more_streams(false).build().unwrap())
        .build();
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_compute_output(|r| {
        named_stream(r.stream_name().unwrap_or_default(), (r.stream_name() == Some("b")).then_some("alias/aws/kinesis"))
    });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&list, &describe]);
    let runner = atrest::RuleRunner::new(Arc::new(rule_kinesis_stream_encrypted::KinesisStreamEncrypted), &sdk()).with_client(client);
    let params = rule_kinesis_stream_encrypted::SPEC.parse_params(&Default::default()).unwrap();
    let report = runner.sweep(params, aws_smithy_types::DateTime::from_secs(0), None).await.unwrap();
    let verdicts: Vec<(&str, &str)> =
        report.evaluations.iter().map(|e| (e.compliance_resource_id.as_str(), e.compliance_type.as_str())).collect();
    assert_eq!(verdicts, [("a", "NON_COMPLIANT"), ("b", "COMPLIANT"), ("c", "NON_COMPLIANT")]);
    assert_eq!((list.num_calls(), describe.num_calls()), (2, 3), "one list call per page, one describe per stream");
}

#[tokio::test]
async fn a_firehose_sweep_reads_each_delivery_stream_once_and_a_kinesis_source_once() {
    use aws_sdk_firehose::operation::list_delivery_streams::ListDeliveryStreamsOutput;
    let list = mock!(aws_sdk_firehose::Client::list_delivery_streams).then_output(|| {
        ListDeliveryStreamsOutput::builder()
            .delivery_stream_names("direct")
            .delivery_stream_names("fed")
            .has_more_delivery_streams(false)
            .build()
            .unwrap()
    });
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream).then_compute_output(|r| {
        let name = r.delivery_stream_name().unwrap_or_default().to_string();
        let kind = if name == "fed" { DeliveryStreamType::KinesisStreamAsSource } else { DeliveryStreamType::DirectPut };
        let mut out = delivery_stream(kind, Some(DeliveryStreamEncryptionStatus::Enabled), None, None);
        if let Some(d) = out.delivery_stream_description.as_mut() {
            d.delivery_stream_name = name;
        }
        out
    });
    let firehose = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&list, &describe]);
    let source = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| stream(StreamStatus::Active, None));
    let kinesis = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&source]);
    let rule = rule_kinesis_firehose_delivery_stream_encrypted::KinesisFirehoseDeliveryStreamEncrypted;
    let runner = atrest::RuleRunner::new(Arc::new(rule), &sdk()).with_client(firehose).with_client(kinesis);
    let params = rule_kinesis_firehose_delivery_stream_encrypted::SPEC.parse_params(&Default::default()).unwrap();
    let report = runner.sweep(params, aws_smithy_types::DateTime::from_secs(0), None).await.unwrap();
    let verdicts: Vec<(&str, &str)> =
        report.evaluations.iter().map(|e| (e.compliance_resource_id.as_str(), e.compliance_type.as_str())).collect();
    // The Kinesis-fed stream is judged by its unencrypted source, whatever its own SSE says.
    assert_eq!(verdicts, [("direct", "COMPLIANT"), ("fed", "NON_COMPLIANT")]);
    assert_eq!((list.num_calls(), describe.num_calls(), source.num_calls()), (1, 2, 1));
}
