//! The Kinesis and Firehose fixes' fault-sweep scenarios (tests/reliability_fixes.rs): one data
//! stream or one Direct PUT delivery stream per run, with what the user had (tags, retention,
//! the destination) checked to survive, and the rule judging the result compliant.

use std::sync::Arc;

use atrest::Fix;
use atrest_testkit::reliability::{FixScenario, Fixture, rule_judges_compliant};
use atrest_testkit::unique;
use aws_config::SdkConfig;
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamType, EncryptionConfiguration, ExtendedS3DestinationConfiguration, NoEncryptionConfig,
};
use serde_json::{Value, json};

const BUCKET_ARN: &str = "arn:aws:s3:::atrest-firehose-landing";

/// Creates a customer managed key with an alias; returns (alias, key ARN).
async fn key_with_alias(sdk: &SdkConfig, prefix: &str) -> (String, String) {
    let kms = aws_sdk_kms::Client::new(sdk);
    let arn = kms.create_key().send().await.expect("CreateKey").key_metadata.and_then(|m| m.arn).expect("key ARN");
    let alias = format!("alias/{}", unique(prefix));
    kms.create_alias().alias_name(&alias).target_key_id(&arn).send().await.expect("CreateAlias");
    (alias, arn)
}

// ---------------------------------------------------------------------------------------------
// fix-kinesis-encrypt-stream

pub struct KinesisScenario {
    pub name: &'static str,
    /// A customer managed key named by alias, instead of the default alias/aws/kinesis.
    pub customer_key: bool,
}

struct KinesisFixture {
    stream: String,
    key: Option<String>,
}

#[atrest::async_trait]
impl FixScenario for KinesisScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_kinesis_encrypt_stream::KinesisEncryptStream)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = aws_sdk_kinesis::Client::new(sdk).list_streams().send().await;
        let _ = aws_sdk_kms::Client::new(sdk).list_keys().send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let kinesis = aws_sdk_kinesis::Client::new(sdk);
        let stream = unique("rel-stream");
        kinesis.create_stream().stream_name(&stream).shard_count(1).send().await.expect("CreateStream");
        // What the user had: a longer retention and a tag, both kept by the fix.
        kinesis.increase_stream_retention_period().stream_name(&stream).retention_period_hours(48).send().await.expect("retention");
        kinesis.add_tags_to_stream().stream_name(&stream).tags("team", "analytics").send().await.expect("AddTagsToStream");
        let key = if self.customer_key { Some(key_with_alias(sdk, "rel-stream-key").await.0) } else { None };
        Box::new(KinesisFixture { stream, key })
    }
}

#[atrest::async_trait]
impl Fixture for KinesisFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.stream, "ExecutionId": "00000000-0000-4000-8000-00000000c1a5", "KmsKeyId": self.key.clone().unwrap_or_default()})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let kinesis = aws_sdk_kinesis::Client::new(sdk);
        let s = &self.stream;
        if let Some(problem) =
            rule_judges_compliant(&rule_kinesis_stream_encrypted::KinesisStreamEncrypted, sdk, json!({}), "AWS::Kinesis::Stream", s)
                .await
                .err()
        {
            v.push(problem);
        }
        match kinesis.describe_stream_summary().stream_name(s).send().await {
            Ok(out) => {
                let summary = out.stream_description_summary();
                let key = summary.and_then(|d| d.key_id());
                let wanted = self.key.as_deref().unwrap_or("alias/aws/kinesis");
                if key != Some(wanted) {
                    v.push(format!("stream {s} is encrypted with {key:?}, not {wanted}"));
                }
                if summary.map(|d| d.retention_period_hours()) != Some(48) {
                    v.push(format!("stream {s} lost its 48 h retention: {summary:?}"));
                }
            }
            Err(e) => v.push(format!("stream {s} is gone: {e:?}")),
        }
        match kinesis.list_tags_for_stream().stream_name(s).send().await {
            Ok(out) if out.tags().iter().any(|t| t.key() == "team" && t.value() == Some("analytics")) => {}
            other => v.push(format!("stream {s} lost its tag: {other:?}")),
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// fix-firehose-encrypt-delivery-stream

pub struct FirehoseScenario {
    pub name: &'static str,
    /// A customer managed key named by alias, instead of an AWS owned key.
    pub customer_key: bool,
}

struct FirehoseFixture {
    stream: String,
    /// (alias given to the fix, the key ARN Firehose must report)
    key: Option<(String, String)>,
}

#[atrest::async_trait]
impl FixScenario for FirehoseScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_firehose_encrypt_delivery_stream::FirehoseEncryptDeliveryStream)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = aws_sdk_firehose::Client::new(sdk).list_delivery_streams().send().await;
        let _ = aws_sdk_kms::Client::new(sdk).list_keys().send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let stream = unique("rel-delivery");
        // What the user had, checked to survive: a prefix, GZIP, buffering hints.
        let destination = ExtendedS3DestinationConfiguration::builder()
            .role_arn("arn:aws:iam::123456789012:role/firehose-delivery")
            .bucket_arn(BUCKET_ARN)
            .prefix("events/")
            .compression_format(CompressionFormat::Gzip)
            .buffering_hints(BufferingHints::builder().size_in_mbs(64).interval_in_seconds(60).build())
            .encryption_configuration(EncryptionConfiguration::builder().no_encryption_config(NoEncryptionConfig::NoEncryption).build())
            .build()
            .expect("destination");
        aws_sdk_firehose::Client::new(sdk)
            .create_delivery_stream()
            .delivery_stream_name(&stream)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(destination)
            .send()
            .await
            .expect("CreateDeliveryStream");
        let key = if self.customer_key { Some(key_with_alias(sdk, "rel-firehose-key").await) } else { None };
        Box::new(FirehoseFixture { stream, key })
    }
}

#[atrest::async_trait]
impl Fixture for FirehoseFixture {
    fn payload(&self) -> Value {
        let key = self.key.as_ref().map(|(alias, _)| alias.clone()).unwrap_or_default();
        json!({"ResourceId": self.stream, "ExecutionId": "00000000-0000-4000-8000-00000000f1e5", "KmsKeyId": key})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let s = &self.stream;
        let rule = rule_kinesis_firehose_delivery_stream_encrypted::KinesisFirehoseDeliveryStreamEncrypted;
        if let Some(problem) = rule_judges_compliant(&rule, sdk, json!({}), "AWS::KinesisFirehose::DeliveryStream", s).await.err() {
            v.push(problem);
        }
        match aws_sdk_firehose::Client::new(sdk).describe_delivery_stream().delivery_stream_name(s).send().await {
            Ok(out) => {
                let Some(d) = out.delivery_stream_description() else {
                    v.push(format!("{s}: no description"));
                    return v;
                };
                let sse = d.delivery_stream_encryption_configuration();
                let (key_type, key_arn) =
                    (sse.and_then(|e| e.key_type()).map(|t| t.as_str().to_string()), sse.and_then(|e| e.key_arn()).map(str::to_string));
                let wanted = match &self.key {
                    Some((_, arn)) => (Some("CUSTOMER_MANAGED_CMK".to_string()), Some(arn.clone())),
                    None => (Some("AWS_OWNED_CMK".to_string()), None),
                };
                if (key_type.clone(), key_arn.clone()) != wanted {
                    v.push(format!("{s} is encrypted with {key_type:?} {key_arn:?}, not {wanted:?}"));
                }
                // The destination is untouched.
                let destination = d.destinations().first().and_then(|x| x.extended_s3_destination_description());
                if destination.map(|x| (x.bucket_arn(), x.prefix())) != Some((BUCKET_ARN, Some("events/"))) {
                    v.push(format!("{s}'s destination changed: {destination:?}"));
                }
            }
            Err(e) => v.push(format!("{s} is gone: {e:?}")),
        }
        // Checked: delete it. The stand-in holds at most 50 delivery streams per Region (AWS's
        // default quota is thousands) and a sweep sets up about a hundred.
        let _ = aws_sdk_firehose::Client::new(sdk).delete_delivery_stream().delivery_stream_name(s).send().await;
        v
    }
}
