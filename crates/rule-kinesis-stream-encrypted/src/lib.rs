//! `kinesis-stream-encrypted`: every Kinesis data stream is encrypted at rest.
//!
//! Mirrors the managed rule `KINESIS_STREAM_ENCRYPTED` (no parameters; NON_COMPLIANT when the
//! stream's `StreamEncryption` is not present; ComplianceResourceId = the stream name, as Config
//! records `AWS::Kinesis::Stream`). Change notifications carry `StreamEncryption`, so a change
//! is judged from the item alone, without calling AWS. Periodic sweeps list the region's streams
//! (ListStreams, paged) and read each one's encryption with DescribeStreamSummary, with the
//! runtime's bounded concurrency.

use atrest::error::{Error, Result};
use atrest::item::ConfigurationItem;
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_kinesis::{
    STREAM_RESOURCE_TYPE, StreamEncryption, describe_stream, encryption_from_configuration, list_stream_names, stream_item,
};

pub static SPEC: RuleSpec = RuleSpec {
    name: "kinesis-stream-encrypted",
    description: "Kinesis data streams are encrypted at rest with server-side encryption (a KMS key).",
    resource_types: &[STREAM_RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[],
    mirrors: Some("KINESIS_STREAM_ENCRYPTED"),
    fix: Some("kinesis-encrypt-stream"),
};

/// The verdict for a stream's encryption: pure, table-tested.
pub fn verdict(stream: &str, encryption: &StreamEncryption) -> Verdict {
    match encryption {
        StreamEncryption::Kms { .. } => {
            Verdict::compliant(format!("Data stream {stream} is encrypted at rest: {}.", encryption.describe()))
        }
        StreamEncryption::None => Verdict::non_compliant(format!(
            "Data stream {stream} has no server-side encryption: its records are stored unencrypted. Fix: kinesis-encrypt-stream."
        )),
    }
}

pub struct KinesisStreamEncrypted;

#[async_trait]
impl ConfigRule for KinesisStreamEncrypted {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        encryption_from_configuration(&item.configuration).is_none()
    }

    async fn judge(&self, _ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let encryption = encryption_from_configuration(&item.configuration).ok_or_else(|| {
            Error::MalformedEvent(format!("the configuration item of data stream {} carries no configuration", item.resource_id))
        })?;
        let name = item.resource_name.as_deref().unwrap_or(&item.resource_id);
        Ok(verdict(name, &encryption))
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let kinesis = ctx.client(aws_sdk_kinesis::Client::new);
        Ok(list_stream_names(&kinesis)
            .await?
            .into_iter()
            .map(|name| Discovered::Id { resource_type: STREAM_RESOURCE_TYPE.to_string(), resource_id: name })
            .collect())
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, stream: &str) -> Result<Option<ConfigurationItem>> {
        let kinesis = ctx.client(aws_sdk_kinesis::Client::new);
        Ok(describe_stream(&kinesis, stream).await?.as_ref().map(stream_item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::{Value, json};

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: a change must be judged without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    /// A change notification's item, as Config records an AWS::Kinesis::Stream.
    fn notification(configuration: Value) -> ConfigurationItem {
        ConfigurationItem::from_notification(&json!({
            "configurationItemVersion": "1.3",
            "configurationItemCaptureTime": "2026-11-20T10:00:00.000Z",
            "configurationItemStatus": "OK",
            "resourceType": STREAM_RESOURCE_TYPE,
            "resourceId": "orders",
            "resourceName": "orders",
            "ARN": "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            "awsRegion": "us-east-1",
            "awsAccountId": "123456789012",
            "tags": {},
            "configuration": configuration,
            "supplementaryConfiguration": {}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let base = json!({"Name": "orders", "Arn": "arn:aws:kinesis:us-east-1:123456789012:stream/orders", "RetentionPeriodHours": 24,
            "ShardCount": 1, "StreamModeDetails": {"StreamMode": "PROVISIONED"}});
        let with = |encryption: Value| {
            let mut c = base.clone();
            c["StreamEncryption"] = encryption;
            c
        };
        let cases = [
            ("no StreamEncryption", base.clone(), Compliance::NonCompliant),
            ("AWS managed key", with(json!({"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"})), Compliance::Compliant),
            (
                "customer key ARN",
                with(
                    json!({"EncryptionType": "KMS", "KeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}),
                ),
                Compliance::Compliant,
            ),
            ("explicit NONE", with(json!({"EncryptionType": "NONE"})), Compliance::NonCompliant),
            ("null StreamEncryption", with(Value::Null), Compliance::NonCompliant),
        ];
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&Default::default()).unwrap());
        for (name, configuration, expected) in cases {
            let item = notification(configuration);
            assert!(!KinesisStreamEncrypted.needs_live_state(&item), "{name}");
            let verdict = KinesisStreamEncrypted.judge(&ctx, &item).await.unwrap();
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains("orders"), "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.chars().count() <= 256, "{name}");
        }
    }

    #[tokio::test]
    async fn an_item_without_configuration_is_fetched_live_not_guessed() {
        let item = notification(json!({}));
        assert!(KinesisStreamEncrypted.needs_live_state(&item));
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&Default::default()).unwrap());
        assert!(matches!(KinesisStreamEncrypted.judge(&ctx, &item).await, Err(Error::MalformedEvent(_))));
    }

    #[test]
    fn the_rule_takes_no_parameters_like_the_managed_rule() {
        assert!(SPEC.parameters.is_empty());
        let mut raw = std::collections::BTreeMap::new();
        raw.insert("kmsKeyArns".to_string(), json!("x"));
        assert!(SPEC.parse_params(&raw).is_err(), "an unknown parameter is refused");
    }
}
