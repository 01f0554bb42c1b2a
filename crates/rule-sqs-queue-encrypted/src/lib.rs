//! `sqs-queue-encrypted`: every SQS queue is encrypted at rest.
//!
//! No AWS managed rule exists for SQS (Security Hub's SQS.1 is a service-internal rule), so the
//! parameters are our own: by default a queue passes with SSE-SQS (`SqsManagedSseEnabled`, the
//! default for new queues) or SSE-KMS (`KmsMasterKeyId`); with `requireKms` only SSE-KMS passes,
//! and with `kmsKeyIds` an SSE-KMS queue's key must be one of those (key ARNs, key ids, aliases
//! or alias ARNs on either side, compared through `atrest::kms`). Resource id: the queue URL, as
//! Config reports `AWS::SQS::Queue`.
//!
//! A key means SSE-KMS whatever `SqsManagedSseEnabled` says: AWS reports it false once a key is
//! set, but the stand-in (moto) keeps reporting true, and an item captured mid-change may too.
//! The item carries the queue's attributes, so a change is judged from it alone. Periodic sweeps
//! page through `ListQueues` and read only the encryption attributes of each queue.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_bool, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Map, Value};

pub const RESOURCE_TYPE: &str = "AWS::SQS::Queue";

pub static SPEC: RuleSpec = RuleSpec {
    name: "sqs-queue-encrypted",
    description: "SQS queues are encrypted at rest (SSE-SQS or SSE-KMS); optionally SSE-KMS only, with one of the approved keys.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[
        ParamSpec {
            name: "requireKms",
            kind: ParamKind::Bool,
            default: "false",
            description: "true: only SSE-KMS passes (SSE-SQS is NON_COMPLIANT). false: SSE-SQS or SSE-KMS.",
        },
        ParamSpec {
            name: "kmsKeyIds",
            kind: ParamKind::List,
            default: "",
            description: "Comma-separated approved KMS keys (key ARNs, key ids, aliases or alias ARNs) for SSE-KMS queues. Empty: any KMS key.",
        },
    ],
    mirrors: None,
    fix: Some("sqs-encrypt-queue"),
};

/// A queue's encryption at rest as its item (or `GetQueueAttributes`) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEncryption {
    None,
    /// SSE-SQS: SQS owned encryption keys.
    SqsManaged,
    /// SSE-KMS with this key, named as it was set (alias, alias ARN, key id or key ARN).
    Kms(String),
}

impl QueueEncryption {
    pub fn describe(&self) -> String {
        match self {
            QueueEncryption::None => "no encryption".into(),
            QueueEncryption::SqsManaged => "SSE-SQS".into(),
            QueueEncryption::Kms(key) => format!("SSE-KMS with {key}"),
        }
    }
}

/// Reads the encryption from a queue's attributes (field names compared without case).
pub fn queue_encryption(configuration: &Value) -> QueueEncryption {
    if let Some(key) = field_str(configuration, "kmsMasterKeyId").map(str::trim).filter(|k| !k.is_empty()) {
        return QueueEncryption::Kms(key.to_string());
    }
    if field_bool(configuration, "sqsManagedSseEnabled") == Some(true) {
        return QueueEncryption::SqsManaged;
    }
    QueueEncryption::None
}

pub struct SqsQueueEncrypted;

#[async_trait]
impl ConfigRule for SqsQueueEncrypted {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        // An unencrypted queue may carry neither encryption field, so only an item that
        // describes the queue at all can say so; a trimmed one is read live.
        ["queueUrl", "queueArn", "queueName", "arn"].iter().all(|name| field(&item.configuration, name).is_none())
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let queue = item.resource_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(item.resource_id.as_str());
        let require_kms = ctx.params.bool("requireKms");
        let approved = ctx.params.list("kmsKeyIds");
        match queue_encryption(&item.configuration) {
            QueueEncryption::None => {
                Ok(Verdict::non_compliant(format!("Queue {queue} is not encrypted at rest (neither SSE-SQS nor SSE-KMS).")))
            }
            QueueEncryption::SqsManaged if require_kms => {
                Ok(Verdict::non_compliant(format!("Queue {queue} uses SSE-SQS; requireKms requires SSE-KMS with a KMS key.")))
            }
            QueueEncryption::SqsManaged => Ok(Verdict::compliant(format!("Queue {queue} is encrypted with SSE-SQS."))),
            QueueEncryption::Kms(key) if approved.is_empty() => {
                Ok(Verdict::compliant(format!("Queue {queue} is encrypted with KMS key {key}.")))
            }
            QueueEncryption::Kms(key) if ctx.kms.is_one_of(&key, approved).await? => {
                Ok(Verdict::compliant(format!("Queue {queue} is encrypted with approved KMS key {key}.")))
            }
            QueueEncryption::Kms(key) => {
                Ok(Verdict::non_compliant(format!("Queue {queue} is encrypted with KMS key {key}, which is not in kmsKeyIds.")))
            }
        }
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let sqs = ctx.client(aws_sdk_sqs::Client::new);
        let mut found = Vec::new();
        // Without MaxResults ListQueues returns at most 1,000 queues and no NextToken.
        let mut pages = sqs.list_queues().max_results(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("sqs:ListQueues", "the region's queues", e))?;
            found.extend(
                page.queue_urls().iter().map(|url| Discovered::Id { resource_type: RESOURCE_TYPE.to_string(), resource_id: url.clone() }),
            );
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, queue_url: &str) -> Result<Option<ConfigurationItem>> {
        let sqs = ctx.client(aws_sdk_sqs::Client::new);
        let attributes = match sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::KmsMasterKeyId)
            .attribute_names(QueueAttributeName::SqsManagedSseEnabled)
            .send()
            .await
        {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) => {
                let err = aws_error("sqs:GetQueueAttributes", queue_url, e);
                return if is_missing_queue(err.aws_code()) { Ok(None) } else { Err(err) };
            }
        };
        let tags = match sqs.list_queue_tags().queue_url(queue_url).send().await {
            Ok(out) => out.tags.unwrap_or_default().into_iter().collect(),
            Err(e) => {
                let err = aws_error("sqs:ListQueueTags", queue_url, e);
                return if is_missing_queue(err.aws_code()) { Ok(None) } else { Err(err) };
            }
        };
        let mut item = queue_item(queue_url, attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        item.tags = tags;
        Ok(Some(item))
    }
}

/// SQS answers a missing queue with `QueueDoesNotExist` (JSON protocol) or, in older and
/// emulated endpoints, `AWS.SimpleQueueService.NonExistentQueue`.
pub fn is_missing_queue(code: Option<&str>) -> bool {
    matches!(code, Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue"))
}

/// A live queue in the configuration item's shape (lower-camel attribute names).
pub fn queue_item<'a>(queue_url: &str, attributes: impl IntoIterator<Item = (&'a str, &'a str)>) -> ConfigurationItem {
    let mut configuration = Map::new();
    configuration.insert("queueUrl".into(), Value::String(queue_url.to_string()));
    let mut arn = None;
    for (name, value) in attributes {
        match name {
            "QueueArn" => {
                arn = Some(value.to_string());
                configuration.insert("queueArn".into(), Value::String(value.to_string()));
            }
            "KmsMasterKeyId" if !value.is_empty() => {
                configuration.insert("kmsMasterKeyId".into(), Value::String(value.to_string()));
            }
            "SqsManagedSseEnabled" => {
                configuration.insert("sqsManagedSseEnabled".into(), Value::Bool(value.eq_ignore_ascii_case("true")));
            }
            _ => {}
        }
    }
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, queue_url, Value::Object(configuration));
    item.arn = arn;
    item.resource_name = queue_url.trim_end_matches('/').rsplit('/').next().map(str::to_string);
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::json;

    const URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/orders";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(configuration: Value) -> ConfigurationItem {
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, URL, configuration);
        item.resource_name = Some("orders".into());
        item
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        SqsQueueEncrypted.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let none = json!({"queueUrl": URL, "sqsManagedSseEnabled": false});
        let sse_sqs = json!({"queueUrl": URL, "sqsManagedSseEnabled": true});
        let kms = |key: &str| json!({"queueUrl": URL, "kmsMasterKeyId": key, "sqsManagedSseEnabled": false});
        let cases: Vec<(&str, Value, Value, Compliance, &str)> = vec![
            ("unencrypted", json!({}), none.clone(), Compliance::NonCompliant, "not encrypted"),
            ("unencrypted, no fields at all", json!({}), json!({"queueUrl": URL}), Compliance::NonCompliant, "not encrypted"),
            ("SSE-SQS", json!({}), sse_sqs.clone(), Compliance::Compliant, "SSE-SQS"),
            ("SSE-SQS as a string", json!({}), json!({"queueUrl": URL, "SqsManagedSseEnabled": "true"}), Compliance::Compliant, "SSE-SQS"),
            ("SSE-SQS with requireKms", json!({"requireKms": "true"}), sse_sqs.clone(), Compliance::NonCompliant, "requireKms"),
            ("SSE-SQS passes a key list without requireKms", json!({"kmsKeyIds": KEY}), sse_sqs, Compliance::Compliant, "SSE-SQS"),
            ("SSE-KMS, any key", json!({"requireKms": "true"}), kms("alias/aws/sqs"), Compliance::Compliant, "alias/aws/sqs"),
            ("SSE-KMS, approved", json!({"kmsKeyIds": format!("{OTHER},{KEY}")}), kms(KEY), Compliance::Compliant, "approved"),
            (
                "SSE-KMS, not approved",
                json!({"kmsKeyIds": OTHER, "requireKms": "true"}),
                kms(KEY),
                Compliance::NonCompliant,
                "not in kmsKeyIds",
            ),
            // moto keeps SqsManagedSseEnabled true once a key is set (AWS reports false): the key decides.
            (
                "a key with SqsManagedSseEnabled still true",
                json!({"kmsKeyIds": KEY}),
                json!({"queueUrl": URL, "KmsMasterKeyId": KEY, "SqsManagedSseEnabled": true}),
                Compliance::Compliant,
                KEY,
            ),
            (
                "an empty key is no key",
                json!({}),
                json!({"queueUrl": URL, "kmsMasterKeyId": ""}),
                Compliance::NonCompliant,
                "not encrypted",
            ),
        ];
        for (name, params, configuration, expected, says) in cases {
            let verdict = judge(params, &item(configuration)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(says), "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.len() <= 256, "{name}");
        }
    }

    #[test]
    fn only_a_trimmed_item_is_read_live() {
        assert!(!SqsQueueEncrypted.needs_live_state(&item(json!({"queueUrl": URL}))));
        assert!(SqsQueueEncrypted.needs_live_state(&item(json!({}))));
    }

    #[test]
    fn a_live_queue_looks_like_its_item() {
        let live = queue_item(
            URL,
            [("QueueArn", "arn:aws:sqs:us-east-1:123456789012:orders"), ("KmsMasterKeyId", KEY), ("SqsManagedSseEnabled", "false")],
        );
        assert_eq!(queue_encryption(&live.configuration), QueueEncryption::Kms(KEY.into()));
        assert_eq!(live.resource_name.as_deref(), Some("orders"));
        assert_eq!(live.arn.as_deref(), Some("arn:aws:sqs:us-east-1:123456789012:orders"));
        assert_eq!(queue_encryption(&queue_item(URL, [("SqsManagedSseEnabled", "true")]).configuration), QueueEncryption::SqsManaged);
        assert!(is_missing_queue(Some("AWS.SimpleQueueService.NonExistentQueue")));
    }
}
