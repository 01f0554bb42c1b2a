//! `kinesis-firehose-delivery-stream-encrypted`: every Firehose delivery stream keeps its data
//! encrypted at rest.
//!
//! Mirrors the managed rule `KINESIS_FIREHOSE_DELIVERY_STREAM_ENCRYPTED` (periodic; optional
//! `kmsKeyArns`: the KMS keys approved for Firehose; ComplianceResourceId = the delivery stream
//! name). Where the data rests depends on the source (see `atrest_kinesis::firehose`): a Direct
//! PUT stream is judged by its own server-side encryption; a stream fed by a Kinesis data stream
//! stores nothing at rest, so it is judged by that source stream's encryption (and names it when
//! it is not encrypted); an MSK-fed stream is COMPLIANT (Amazon MSK always encrypts at rest).
//!
//! Periodic only, as the managed rule: a Kinesis-fed stream's verdict changes when its source
//! stream changes, which no change notification of the delivery stream would report. Sweeps
//! page ListDeliveryStreams and describe each stream (and a Kinesis source) with the runtime's
//! bounded concurrency.

use atrest::error::{Error, Result};
use atrest::item::ConfigurationItem;
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_kinesis::firehose::{
    DELIVERY_STREAM_RESOURCE_TYPE, DeliveryStreamState, Source, delivery_stream_item, describe_delivery_stream, list_delivery_stream_names,
};
use atrest_kinesis::{StreamEncryption, describe_stream, encryption_from_configuration, stream_name_from_arn};
use serde_json::{Value, json};

pub static SPEC: RuleSpec = RuleSpec {
    name: "kinesis-firehose-delivery-stream-encrypted",
    description: "Firehose delivery streams are encrypted at rest (their own server-side encryption, or their Kinesis source stream's); optionally with approved KMS keys.",
    resource_types: &[DELIVERY_STREAM_RESOURCE_TYPE],
    triggers: &[TriggerKind::Periodic],
    parameters: &[ParamSpec {
        name: "kmsKeyArns",
        kind: ParamKind::List,
        default: "",
        description: "Comma-separated KMS keys approved for Firehose (key ARNs, key ids, aliases or alias ARNs). Empty: any key, AWS owned included.",
    }],
    mirrors: Some("KINESIS_FIREHOSE_DELIVERY_STREAM_ENCRYPTED"),
    fix: Some("firehose-encrypt-delivery-stream"),
};

/// The supplementary-configuration key under which a sweep records a Kinesis source stream's
/// state (its name, ARN and `StreamEncryption`), or `{"Exists": false}`.
pub const SOURCE_STREAM_KEY: &str = "SourceStream";

/// What the rule knows about a Kinesis source stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStream {
    Missing,
    Found(StreamEncryption),
}

fn source_stream_value(state: Option<&atrest_kinesis::StreamState>) -> Value {
    match state {
        None => json!({"Exists": false}),
        Some(s) => atrest_kinesis::stream_item(s).configuration,
    }
}

fn source_stream_from_item(item: &ConfigurationItem) -> Option<SourceStream> {
    let value = item.supplementary(SOURCE_STREAM_KEY)?;
    if value.get("Exists") == Some(&Value::Bool(false)) {
        return Some(SourceStream::Missing);
    }
    encryption_from_configuration(value).map(SourceStream::Found)
}

/// Whether `key` (a key ARN, or for a Kinesis source the key as the stream reports it) is one
/// of `approved`; an AWS owned key (no key to name) never is.
async fn approved(ctx: &RuleContext, key: Option<&str>, approved: &[String]) -> Result<bool> {
    match key {
        Some(k) => ctx.kms.is_one_of(k, approved).await,
        None => Ok(false),
    }
}

pub struct KinesisFirehoseDeliveryStreamEncrypted;

impl KinesisFirehoseDeliveryStreamEncrypted {
    async fn judge_kinesis_source(
        &self,
        ctx: &RuleContext,
        stream: &DeliveryStreamState,
        source_arn: &str,
        source: SourceStream,
    ) -> Result<Verdict> {
        let name = &stream.name;
        let source_name = stream_name_from_arn(source_arn).unwrap_or(source_arn);
        let keys = ctx.params.list("kmsKeyArns");
        Ok(match source {
            SourceStream::Missing => Verdict::not_applicable(format!(
                "Delivery stream {name} reads from Kinesis data stream {source_name}, which no longer exists: nothing is stored at rest."
            )),
            SourceStream::Found(StreamEncryption::None) => Verdict::non_compliant(format!(
                "Delivery stream {name} stores nothing at rest; its records rest in its source, Kinesis data stream {source_name}, \
                 which is not encrypted. Encrypt {source_name} (kinesis-encrypt-stream)."
            )),
            SourceStream::Found(StreamEncryption::Kms { key_id }) => {
                if !keys.is_empty() && !approved(ctx, key_id.as_deref(), keys).await? {
                    Verdict::non_compliant(format!(
                        "Delivery stream {name}'s source, Kinesis data stream {source_name}, is encrypted with KMS key {}, which is not in kmsKeyArns.",
                        key_id.as_deref().unwrap_or("(unnamed)")
                    ))
                } else {
                    Verdict::compliant(format!(
                        "Delivery stream {name} stores nothing at rest; its source, Kinesis data stream {source_name}, is encrypted with KMS key {}.",
                        key_id.as_deref().unwrap_or("(unnamed)")
                    ))
                }
            }
        })
    }

    async fn judge_own_encryption(&self, ctx: &RuleContext, stream: &DeliveryStreamState) -> Result<Verdict> {
        let name = &stream.name;
        let e = &stream.encryption;
        let keys = ctx.params.list("kmsKeyArns");
        Ok(match e.status.as_deref() {
            Some("ENABLED") => {
                let key_arn = if e.key_type.as_deref() == Some("CUSTOMER_MANAGED_CMK") { e.key_arn.as_deref() } else { None };
                if !keys.is_empty() && !approved(ctx, key_arn, keys).await? {
                    Verdict::non_compliant(format!(
                        "Delivery stream {name} is encrypted with {}, which is not in kmsKeyArns. Fix: firehose-encrypt-delivery-stream with an approved key.",
                        e.describe_key()
                    ))
                } else {
                    Verdict::compliant(format!("Delivery stream {name} has server-side encryption with {}.", e.describe_key()))
                }
            }
            Some("ENABLING") => Verdict::non_compliant(format!(
                "Delivery stream {name}: server-side encryption is being turned on (ENABLING); records are not encrypted until it is ENABLED."
            )),
            Some(failed @ ("ENABLING_FAILED" | "DISABLING_FAILED")) => Verdict::non_compliant(format!(
                "Delivery stream {name}: server-side encryption is {failed}: {}",
                e.failure.as_deref().unwrap_or("no failure description")
            )),
            other => Verdict::non_compliant(format!(
                "Delivery stream {name} has no server-side encryption ({}): buffered records are stored unencrypted. Fix: firehose-encrypt-delivery-stream.",
                other.unwrap_or("DISABLED")
            )),
        })
    }
}

#[async_trait]
impl ConfigRule for KinesisFirehoseDeliveryStreamEncrypted {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        DeliveryStreamState::from_configuration(&item.configuration).is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let stream = DeliveryStreamState::from_configuration(&item.configuration).ok_or_else(|| {
            Error::MalformedEvent(format!("the configuration item of delivery stream {} carries no DeliveryStreamName", item.resource_id))
        })?;
        match &stream.source {
            Source::KinesisStream { arn } => {
                let source = match source_stream_from_item(item) {
                    Some(known) => known,
                    // An item this rule did not build: read the source stream now.
                    None => match describe_stream(&ctx.client(aws_sdk_kinesis::Client::new), arn).await? {
                        Some(s) => SourceStream::Found(s.encryption),
                        None => SourceStream::Missing,
                    },
                };
                self.judge_kinesis_source(ctx, &stream, arn, source).await
            }
            Source::Msk { cluster_arn } => Ok(Verdict::compliant(format!(
                "Delivery stream {} stores nothing at rest; its records rest in MSK cluster {}, and Amazon MSK always encrypts data at rest.",
                stream.name,
                cluster_arn.as_deref().unwrap_or("(unnamed)")
            ))),
            Source::DirectPut | Source::Other(_) => self.judge_own_encryption(ctx, &stream).await,
        }
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let firehose = ctx.client(aws_sdk_firehose::Client::new);
        Ok(list_delivery_stream_names(&firehose)
            .await?
            .into_iter()
            .map(|name| Discovered::Id { resource_type: DELIVERY_STREAM_RESOURCE_TYPE.to_string(), resource_id: name })
            .collect())
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, name: &str) -> Result<Option<ConfigurationItem>> {
        let firehose = ctx.client(aws_sdk_firehose::Client::new);
        let Some(stream) = describe_delivery_stream(&firehose, name).await? else { return Ok(None) };
        let mut item = delivery_stream_item(&stream);
        if let Source::KinesisStream { arn } = &stream.source {
            let source = describe_stream(&ctx.client(aws_sdk_kinesis::Client::new), arn).await?;
            item.supplementary_configuration.insert(SOURCE_STREAM_KEY.to_string(), source_stream_value(source.as_ref()));
        }
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use atrest_kinesis::StreamState;
    use atrest_kinesis::firehose::Encryption;
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";
    const SOURCE_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: every case below must be decided from the item.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn encryption(status: Option<&str>, key_type: Option<&str>, key_arn: Option<&str>) -> Encryption {
        Encryption {
            status: status.map(str::to_string),
            key_type: key_type.map(str::to_string),
            key_arn: key_arn.map(str::to_string),
            failure: (status == Some("ENABLING_FAILED")).then(|| "KMS key is disabled".to_string()),
        }
    }

    fn item(source: Source, e: Encryption, source_stream: Option<Option<StreamEncryption>>) -> ConfigurationItem {
        let state = DeliveryStreamState {
            name: "ingest".into(),
            arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/ingest".into(),
            status: "ACTIVE".into(),
            source,
            encryption: e,
        };
        let mut item = delivery_stream_item(&state);
        if let Some(found) = source_stream {
            let state =
                found.map(|encryption| StreamState { name: "clicks".into(), arn: SOURCE_ARN.into(), status: "ACTIVE".into(), encryption });
            item.supplementary_configuration.insert(SOURCE_STREAM_KEY.into(), source_stream_value(state.as_ref()));
        }
        item
    }

    #[tokio::test]
    async fn verdict_table() {
        use Compliance::*;
        let kinesis = || Source::KinesisStream { arn: SOURCE_ARN.into() };
        let none = Encryption::default();
        let kms = |k: &str| Some(StreamEncryption::Kms { key_id: Some(k.to_string()) });
        let both_keys = format!("{OTHER},{KEY}");
        let cases: Vec<(&str, &str, ConfigurationItem, Compliance, &str)> = vec![
            ("direct put, no SSE", "", item(Source::DirectPut, none.clone(), None), NonCompliant, "no server-side encryption"),
            ("direct put, DISABLED", "", item(Source::DirectPut, encryption(Some("DISABLED"), None, None), None), NonCompliant, "DISABLED"),
            (
                "AWS owned key",
                "",
                item(Source::DirectPut, encryption(Some("ENABLED"), Some("AWS_OWNED_CMK"), None), None),
                Compliant,
                "AWS owned",
            ),
            (
                "AWS owned key, key list",
                KEY,
                item(Source::DirectPut, encryption(Some("ENABLED"), Some("AWS_OWNED_CMK"), None), None),
                NonCompliant,
                "not in kmsKeyArns",
            ),
            (
                "approved customer key",
                &both_keys,
                item(Source::DirectPut, encryption(Some("ENABLED"), Some("CUSTOMER_MANAGED_CMK"), Some(KEY)), None),
                Compliant,
                KEY,
            ),
            (
                "unapproved customer key",
                OTHER,
                item(Source::DirectPut, encryption(Some("ENABLED"), Some("CUSTOMER_MANAGED_CMK"), Some(KEY)), None),
                NonCompliant,
                "not in kmsKeyArns",
            ),
            (
                "ENABLING",
                "",
                item(Source::DirectPut, encryption(Some("ENABLING"), Some("AWS_OWNED_CMK"), None), None),
                NonCompliant,
                "ENABLING",
            ),
            (
                "ENABLING_FAILED quotes the failure",
                "",
                item(Source::DirectPut, encryption(Some("ENABLING_FAILED"), Some("CUSTOMER_MANAGED_CMK"), Some(KEY)), None),
                NonCompliant,
                "KMS key is disabled",
            ),
            ("kinesis source, unencrypted", "", item(kinesis(), none.clone(), Some(Some(StreamEncryption::None))), NonCompliant, "clicks"),
            ("kinesis source, encrypted", "", item(kinesis(), none.clone(), Some(kms("alias/aws/kinesis"))), Compliant, "clicks"),
            ("kinesis source, approved key", KEY, item(kinesis(), none.clone(), Some(kms(KEY))), Compliant, "clicks"),
            ("kinesis source, unapproved key", OTHER, item(kinesis(), none.clone(), Some(kms(KEY))), NonCompliant, "not in kmsKeyArns"),
            ("kinesis source gone", "", item(kinesis(), none.clone(), Some(None)), NotApplicable, "no longer exists"),
            (
                "MSK source",
                "",
                item(Source::Msk { cluster_arn: Some("arn:aws:kafka:us-east-1:123456789012:cluster/c/1".into()) }, none.clone(), None),
                Compliant,
                "MSK",
            ),
            (
                "other source types are judged by their own SSE",
                "",
                item(Source::Other("DatabaseAsSource".into()), none.clone(), None),
                NonCompliant,
                "no server-side encryption",
            ),
        ];
        for (name, keys, item, expected, says) in cases {
            let mut raw = std::collections::BTreeMap::new();
            raw.insert("kmsKeyArns".to_string(), json!(keys));
            let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
            assert!(!KinesisFirehoseDeliveryStreamEncrypted.needs_live_state(&item), "{name}");
            let verdict = KinesisFirehoseDeliveryStreamEncrypted.judge(&ctx, &item).await.unwrap();
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(says), "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains("ingest"), "{name}: {}", verdict.annotation);
        }
    }

    #[test]
    fn periodic_only_like_the_managed_rule() {
        assert_eq!(SPEC.triggers, &[TriggerKind::Periodic]);
        assert_eq!(SPEC.parameters.iter().map(|p| p.name).collect::<Vec<_>>(), ["kmsKeyArns"]);
    }
}
