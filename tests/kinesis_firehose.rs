//! Kinesis data streams and Firehose delivery streams end to end against the local stand-in,
//! over HTTP, with the real SDK: Config events in → evaluations stored in Config; the fixes
//! driven as the SSM document drives them, read back from the stand-in. What moto cannot show
//! (UPDATING/ENABLING, KMS refusals, `alias/aws/kinesis`) is in tests/kinesis_mocked.rs.

use std::sync::Arc;
use std::time::Duration;

use atrest::remediation::DriveOptions;
use atrest::{FixRequest, FixRunner, FixStatus, RuleRunner};
use atrest_testkit::{ACCOUNT_ID, REGION, adapt_event, load_event, result_for, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_firehose::types::{
    DeliveryStreamEncryptionConfigurationInput, DeliveryStreamType, ExtendedS3DestinationConfiguration, KeyType,
    KinesisStreamSourceConfiguration,
};
use aws_sdk_kinesis::types::EncryptionType;
use fix_firehose_encrypt_delivery_stream::FirehoseEncryptDeliveryStream;
use fix_kinesis_encrypt_stream::KinesisEncryptStream;
use rule_kinesis_firehose_delivery_stream_encrypted::KinesisFirehoseDeliveryStreamEncrypted;
use rule_kinesis_stream_encrypted::KinesisStreamEncrypted;
use serde_json::{Value, json};

const RULE_DIR: &str = "kinesis-stream-encrypted";
const FIREHOSE_RULE_DIR: &str = "kinesis-firehose-delivery-stream-encrypted";
const ROLE: &str = "arn:aws:iam::123456789012:role/firehose-delivery";

fn kinesis(sdk: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(sdk)
}

fn firehose(sdk: &SdkConfig) -> aws_sdk_firehose::Client {
    aws_sdk_firehose::Client::new(sdk)
}

fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}")
}

async fn create_stream(sdk: &SdkConfig, name: &str) {
    kinesis(sdk).create_stream().stream_name(name).shard_count(1).send().await.expect("CreateStream");
}

async fn encrypt_stream(sdk: &SdkConfig, name: &str, key: &str) {
    kinesis(sdk)
        .start_stream_encryption()
        .stream_name(name)
        .encryption_type(EncryptionType::Kms)
        .key_id(key)
        .send()
        .await
        .expect("StartStreamEncryption");
}

async fn stream_encryption(sdk: &SdkConfig, name: &str) -> (Option<String>, Option<String>) {
    let out = kinesis(sdk).describe_stream_summary().stream_name(name).send().await.expect("DescribeStreamSummary");
    let summary = out.stream_description_summary().unwrap();
    (summary.encryption_type().map(|t| t.as_str().to_string()), summary.key_id().map(str::to_string))
}

fn s3_destination() -> ExtendedS3DestinationConfiguration {
    ExtendedS3DestinationConfiguration::builder().role_arn(ROLE).bucket_arn("arn:aws:s3:::atrest-firehose-landing").build().unwrap()
}

async fn create_direct_put(sdk: &SdkConfig, name: &str) {
    firehose(sdk)
        .create_delivery_stream()
        .delivery_stream_name(name)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(s3_destination())
        .send()
        .await
        .expect("CreateDeliveryStream (Direct PUT)");
}

async fn create_kinesis_fed(sdk: &SdkConfig, name: &str, source: &str) {
    firehose(sdk)
        .create_delivery_stream()
        .delivery_stream_name(name)
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(
            KinesisStreamSourceConfiguration::builder().kinesis_stream_arn(stream_arn(source)).role_arn(ROLE).build().unwrap(),
        )
        .extended_s3_destination_configuration(s3_destination())
        .send()
        .await
        .expect("CreateDeliveryStream (Kinesis source)");
}

async fn delivery_stream_encryption(sdk: &SdkConfig, name: &str) -> Option<(String, String, Option<String>)> {
    let out = firehose(sdk).describe_delivery_stream().delivery_stream_name(name).send().await.expect("DescribeDeliveryStream");
    let e = out.delivery_stream_description().unwrap().delivery_stream_encryption_configuration()?;
    Some((e.status()?.as_str().to_string(), e.key_type()?.as_str().to_string(), e.key_arn().map(str::to_string)))
}

async fn invoke(runner: RuleRunner, event: Value) -> Value {
    runner.handle_lambda(event).await.expect("the handler answers")
}

fn rename_stream(name: &str) -> impl FnOnce(&mut Value) + '_ {
    move |invoking| {
        let item = if invoking.get("configurationItem").is_some() {
            &mut invoking["configurationItem"]
        } else {
            &mut invoking["configurationItemSummary"]
        };
        item["resourceId"] = json!(name);
        item["resourceName"] = json!(name);
        item["ARN"] = json!(stream_arn(name));
        if item["configuration"].is_object() {
            item["configuration"]["Name"] = json!(name);
        }
    }
}

fn fast() -> DriveOptions {
    DriveOptions { max_steps: 5, pause: Duration::ZERO }
}

fn kinesis_request(stream: &str, extra: Value) -> FixRequest {
    let mut payload = load_event("fix-kinesis-encrypt-stream/ssm-payload-aws-managed-key.json");
    payload["ResourceId"] = json!(stream);
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    FixRequest::decode(&fix_kinesis_encrypt_stream::SPEC, &payload).unwrap()
}

fn firehose_request(stream: &str, extra: Value) -> FixRequest {
    let mut payload = load_event("fix-firehose-encrypt-delivery-stream/ssm-payload-aws-owned-key.json");
    payload["ResourceId"] = json!(stream);
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    FixRequest::decode(&fix_firehose_encrypt_delivery_stream::SPEC, &payload).unwrap()
}

#[tokio::test]
async fn kinesis_change_events_are_judged_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("rule-kinesis-change");
    // No stream exists under these names: the verdict must come from the item.
    let plain = unique("plain");
    let encrypted = unique("encrypted");
    let runner = || RuleRunner::new(Arc::new(KinesisStreamEncrypted), &sdk);
    let response =
        invoke(runner(), adapt_event(load_event(&format!("{RULE_DIR}/change-unencrypted.json")), &rule, rename_stream(&plain))).await;
    assert_eq!(response["Evaluations"], 1, "{response}");
    invoke(runner(), adapt_event(load_event(&format!("{RULE_DIR}/change-encrypted.json")), &rule, rename_stream(&encrypted))).await;
    let stored = result_for(&sdk, &rule, &plain).await.expect("stored");
    assert_eq!((stored.compliance.as_str(), stored.resource_type.as_str()), ("NON_COMPLIANT", "AWS::Kinesis::Stream"));
    assert!(stored.annotation.unwrap().contains("no server-side encryption"));
    let stored = result_for(&sdk, &rule, &encrypted).await.expect("stored");
    assert_eq!(stored.compliance, "COMPLIANT");
    assert!(stored.annotation.unwrap().contains("alias/aws/kinesis"));
    let deleted = unique("deleted");
    invoke(runner(), adapt_event(load_event(&format!("{RULE_DIR}/change-deleted.json")), &rule, rename_stream(&deleted))).await;
    assert_eq!(result_for(&sdk, &rule, &deleted).await.unwrap().compliance, "NOT_APPLICABLE");
}

#[tokio::test]
async fn kinesis_sweep_and_oversized_items_read_the_live_streams() {
    let sdk = sdk().await;
    let rule = unique("rule-kinesis-sweep");
    let plain = unique("sweep-plain");
    let encrypted = unique("sweep-enc");
    create_stream(&sdk, &plain).await;
    create_stream(&sdk, &encrypted).await;
    encrypt_stream(&sdk, &encrypted, "alias/app-data").await;
    let runner = || RuleRunner::new(Arc::new(KinesisStreamEncrypted), &sdk);
    let response = invoke(runner(), adapt_event(load_event(&format!("{RULE_DIR}/scheduled.json")), &rule, |_| {})).await;
    assert!(response["Evaluations"].as_u64().unwrap() >= 2, "{response}");
    assert_eq!(result_for(&sdk, &rule, &plain).await.unwrap().compliance, "NON_COMPLIANT");
    let stored = result_for(&sdk, &rule, &encrypted).await.unwrap();
    assert_eq!(stored.compliance, "COMPLIANT");
    assert!(stored.annotation.unwrap().contains("alias/app-data"));

    // An oversized notification carries no configuration: the stream is read live.
    let oversized_rule = unique("rule-kinesis-oversized");
    invoke(runner(), adapt_event(load_event(&format!("{RULE_DIR}/oversized.json")), &oversized_rule, rename_stream(&plain))).await;
    assert_eq!(result_for(&sdk, &oversized_rule, &plain).await.unwrap().compliance, "NON_COMPLIANT");
}

#[tokio::test]
async fn kinesis_fix_encrypts_with_the_aws_managed_key_and_converges() {
    let sdk = sdk().await;
    let stream = unique("fix-stream");
    create_stream(&sdk, &stream).await;
    let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk, None);

    let dry = runner.drive(&kinesis_request(&stream, json!({"DryRun": "true"})), &fast()).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{}", dry.message);
    assert!(dry.message.starts_with("Dry run"), "{}", dry.message);
    assert_eq!(stream_encryption(&sdk, &stream).await.0.as_deref(), Some("NONE"), "a dry run changes nothing");

    let done = runner.drive(&kinesis_request(&stream, json!({})), &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert_eq!(done.changes.len(), 1, "{:?}", done.changes);
    assert_eq!(stream_encryption(&sdk, &stream).await, (Some("KMS".into()), Some("alias/aws/kinesis".into())));

    // Run again: observed as done, nothing changed.
    let again = runner.drive(&kinesis_request(&stream, json!({})), &fast()).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{}", again.message);
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    // The rule agrees.
    let rule = unique("rule-kinesis-after-fix");
    invoke(
        RuleRunner::new(Arc::new(KinesisStreamEncrypted), &sdk),
        adapt_event(load_event(&format!("{RULE_DIR}/oversized.json")), &rule, rename_stream(&stream)),
    )
    .await;
    assert_eq!(result_for(&sdk, &rule, &stream).await.unwrap().compliance, "COMPLIANT");
}

#[tokio::test]
async fn kinesis_fix_uses_the_named_key_and_fails_clearly_for_a_missing_stream() {
    let sdk = sdk().await;
    let stream = unique("fix-stream-key");
    create_stream(&sdk, &stream).await;
    let runner = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk, None);
    let done = runner.drive(&kinesis_request(&stream, json!({"KmsKeyId": "alias/stream-data"})), &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert!(done.message.contains("kms:GenerateDataKey"), "a customer key's users are told what they need: {}", done.message);
    assert_eq!(stream_encryption(&sdk, &stream).await.1.as_deref(), Some("alias/stream-data"));

    let gone = unique("no-such-stream");
    let outcome = runner.drive(&kinesis_request(&gone, json!({})), &fast()).await;
    assert_eq!(outcome.status, FixStatus::Failed);
    assert!(outcome.message.contains("does not exist"), "{}", outcome.message);
}

#[tokio::test]
async fn firehose_sweep_judges_each_source_by_where_its_data_rests() {
    let sdk = sdk().await;
    let plain = unique("ds-plain");
    let owned = unique("ds-owned");
    let source_plain = unique("src-plain");
    let source_encrypted = unique("src-enc");
    let fed_plain = unique("ds-fed-plain");
    let fed_encrypted = unique("ds-fed-enc");
    create_direct_put(&sdk, &plain).await;
    create_direct_put(&sdk, &owned).await;
    firehose(&sdk)
        .start_delivery_stream_encryption()
        .delivery_stream_name(&owned)
        .delivery_stream_encryption_configuration_input(
            DeliveryStreamEncryptionConfigurationInput::builder().key_type(KeyType::AwsOwnedCmk).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    create_stream(&sdk, &source_plain).await;
    create_stream(&sdk, &source_encrypted).await;
    encrypt_stream(&sdk, &source_encrypted, "alias/aws/kinesis").await;
    create_kinesis_fed(&sdk, &fed_plain, &source_plain).await;
    create_kinesis_fed(&sdk, &fed_encrypted, &source_encrypted).await;

    let rule = unique("rule-firehose-sweep");
    let runner = || RuleRunner::new(Arc::new(KinesisFirehoseDeliveryStreamEncrypted), &sdk);
    invoke(runner(), adapt_event(load_event(&format!("{FIREHOSE_RULE_DIR}/scheduled.json")), &rule, |_| {})).await;
    let verdict = |name: String| {
        let (sdk, rule) = (&sdk, &rule);
        async move {
            let r = result_for(sdk, rule, &name).await.unwrap_or_else(|| panic!("no result for {name}"));
            assert_eq!(r.resource_type, "AWS::KinesisFirehose::DeliveryStream");
            (r.compliance, r.annotation.unwrap_or_default())
        }
    };
    assert_eq!(verdict(plain.clone()).await.0, "NON_COMPLIANT");
    assert_eq!(verdict(owned.clone()).await.0, "COMPLIANT");
    let (compliance, annotation) = verdict(fed_plain.clone()).await;
    assert_eq!(compliance, "NON_COMPLIANT");
    assert!(annotation.contains(&source_plain), "the source stream is named: {annotation}");
    assert_eq!(verdict(fed_encrypted.clone()).await.0, "COMPLIANT");

    // With approved keys, an AWS owned key is not one of them.
    let key = aws_sdk_kms::Client::new(&sdk).create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();
    let keyed_rule = unique("rule-firehose-keys");
    let mut event = adapt_event(load_event(&format!("{FIREHOSE_RULE_DIR}/scheduled-approved-keys.json")), &keyed_rule, |_| {});
    event["ruleParameters"] = json!(json!({"kmsKeyArns": key}).to_string());
    invoke(runner(), event).await;
    let r = result_for(&sdk, &keyed_rule, &owned).await.unwrap();
    assert_eq!(r.compliance, "NON_COMPLIANT");
    assert!(r.annotation.unwrap().contains("not in kmsKeyArns"));
}

#[tokio::test]
async fn firehose_fix_encrypts_a_direct_put_stream_and_converges() {
    let sdk = sdk().await;
    let stream = unique("fix-ds");
    create_direct_put(&sdk, &stream).await;
    let runner = FixRunner::new(Arc::new(FirehoseEncryptDeliveryStream), &sdk, None);

    let dry = runner.drive(&firehose_request(&stream, json!({"DryRun": "true"})), &fast()).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{}", dry.message);
    assert_eq!(delivery_stream_encryption(&sdk, &stream).await, None, "a dry run changes nothing");

    let done = runner.drive(&firehose_request(&stream, json!({})), &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert_eq!(done.changes.len(), 1);
    assert_eq!(delivery_stream_encryption(&sdk, &stream).await, Some(("ENABLED".into(), "AWS_OWNED_CMK".into(), None)));
    let again = runner.drive(&firehose_request(&stream, json!({})), &fast()).await;
    assert_eq!(again.status, FixStatus::Succeeded);
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    // A customer key named by alias is resolved to its key ARN, as Firehose requires.
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();
    let alias = format!("alias/{}", unique("firehose-data"));
    kms.create_alias().alias_name(&alias).target_key_id(&key).send().await.unwrap();
    let rekeyed = runner.drive(&firehose_request(&stream, json!({"KmsKeyId": alias})), &fast()).await;
    assert_eq!(rekeyed.status, FixStatus::Succeeded, "{}", rekeyed.message);
    assert_eq!(delivery_stream_encryption(&sdk, &stream).await, Some(("ENABLED".into(), "CUSTOMER_MANAGED_CMK".into(), Some(key))));
}

#[tokio::test]
async fn firehose_fix_names_the_source_stream_of_a_kinesis_fed_delivery_stream() {
    let sdk = sdk().await;
    let source = unique("fix-src");
    let stream = unique("fix-fed");
    create_stream(&sdk, &source).await;
    create_kinesis_fed(&sdk, &stream, &source).await;
    let runner = FixRunner::new(Arc::new(FirehoseEncryptDeliveryStream), &sdk, None);
    let outcome = runner.drive(&firehose_request(&stream, json!({})), &fast()).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{}", outcome.message);
    assert!(outcome.message.contains(&source) && outcome.message.contains("kinesis-encrypt-stream"), "{}", outcome.message);
    assert!(outcome.changes.is_empty());
    // AWS (and the stand-in, atrest_moto_firehose.py) refuses SSE for this stream: nothing was asked.
    assert_eq!(delivery_stream_encryption(&sdk, &stream).await, None);

    // Encrypting the source, as the message says, settles it.
    let kinesis_fix = FixRunner::new(Arc::new(KinesisEncryptStream), &sdk, None);
    assert_eq!(kinesis_fix.drive(&kinesis_request(&source, json!({})), &fast()).await.status, FixStatus::Succeeded);
    let outcome = runner.drive(&firehose_request(&stream, json!({})), &fast()).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert!(outcome.message.contains("stores nothing at rest"), "{}", outcome.message);
}
