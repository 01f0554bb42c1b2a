//! `sns-encrypted-kms`: every SNS topic is encrypted with a KMS key.
//!
//! Mirrors the managed rule `SNS_ENCRYPTED_KMS` (parameter `kmsKeyIds`): a topic with no
//! `KmsMasterKeyId` is NON_COMPLIANT; so is one whose key is not in `kmsKeyIds` when that is set
//! (key ARNs, key ids, aliases or alias ARNs on either side: compared through `atrest::kms`).
//! Resource id: the topic ARN, as Config reports `AWS::SNS::Topic`.
//!
//! The configuration item carries the topic's attributes (`topicArn`, `kmsMasterKeyId`, …), so a
//! change is judged from the item alone; a topic without server-side encryption simply has no
//! key field. Periodic sweeps page through `ListTopics` and read each topic's attributes.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use serde_json::{Map, Value};

pub const RESOURCE_TYPE: &str = "AWS::SNS::Topic";

pub static SPEC: RuleSpec = RuleSpec {
    name: "sns-encrypted-kms",
    description: "SNS topics are encrypted with a KMS key; optionally one of the approved keys.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[ParamSpec {
        name: "kmsKeyIds",
        kind: ParamKind::List,
        default: "",
        description: "Comma-separated approved KMS keys (key ARNs, key ids, aliases or alias ARNs). Empty: any KMS key.",
    }],
    mirrors: Some("SNS_ENCRYPTED_KMS"),
    fix: Some("sns-encrypt-topic"),
};

/// The topic's key as the item (or `GetTopicAttributes`) names it: an alias, alias ARN, key id
/// or key ARN, exactly as it was set.
pub fn topic_key(configuration: &Value) -> Option<&str> {
    field_str(configuration, "kmsMasterKeyId").map(str::trim).filter(|k| !k.is_empty())
}

pub struct SnsEncryptedKms;

#[async_trait]
impl ConfigRule for SnsEncryptedKms {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        // An unencrypted topic has no key field, so only an item that describes the topic at all
        // can say so; a trimmed one is read live.
        field(&item.configuration, "topicArn").is_none() && field(&item.configuration, "topicName").is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let topic = item.resource_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(item.resource_id.as_str());
        let approved = ctx.params.list("kmsKeyIds");
        match topic_key(&item.configuration) {
            None => Ok(Verdict::non_compliant(format!("Topic {topic} has no server-side encryption (no KmsMasterKeyId)."))),
            Some(key) if approved.is_empty() => Ok(Verdict::compliant(format!("Topic {topic} is encrypted with KMS key {key}."))),
            Some(key) if ctx.kms.is_one_of(key, approved).await? => {
                Ok(Verdict::compliant(format!("Topic {topic} is encrypted with approved KMS key {key}.")))
            }
            Some(key) => Ok(Verdict::non_compliant(format!("Topic {topic} is encrypted with KMS key {key}, which is not in kmsKeyIds."))),
        }
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let sns = ctx.client(aws_sdk_sns::Client::new);
        let mut found = Vec::new();
        let mut pages = sns.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("sns:ListTopics", "the region's topics", e))?;
            found.extend(
                page.topics()
                    .iter()
                    .filter_map(|t| t.topic_arn())
                    .map(|arn| Discovered::Id { resource_type: RESOURCE_TYPE.to_string(), resource_id: arn.to_string() }),
            );
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, topic_arn: &str) -> Result<Option<ConfigurationItem>> {
        let sns = ctx.client(aws_sdk_sns::Client::new);
        let attributes = match sns.get_topic_attributes().topic_arn(topic_arn).send().await {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) => {
                let err = aws_error("sns:GetTopicAttributes", topic_arn, e);
                return if err.aws_code() == Some("NotFound") { Ok(None) } else { Err(err) };
            }
        };
        let tags = match sns.list_tags_for_resource().resource_arn(topic_arn).send().await {
            Ok(out) => out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
            Err(e) => {
                let err = aws_error("sns:ListTagsForResource", topic_arn, e);
                // Deleted between the two calls: nothing to judge.
                return if matches!(err.aws_code(), Some("NotFound" | "ResourceNotFound")) { Ok(None) } else { Err(err) };
            }
        };
        let mut item = topic_item(topic_arn, &attributes);
        item.tags = tags;
        Ok(Some(item))
    }
}

/// A live topic in the configuration item's shape (lower-camel attribute names, as Config
/// records them; `kmsMasterKeyId` only when the topic has one).
pub fn topic_item(topic_arn: &str, attributes: &std::collections::HashMap<String, String>) -> ConfigurationItem {
    let mut configuration = Map::new();
    configuration.insert("topicArn".into(), Value::String(topic_arn.to_string()));
    if let Some(key) = attributes.get("KmsMasterKeyId").filter(|k| !k.is_empty()) {
        configuration.insert("kmsMasterKeyId".into(), Value::String(key.clone()));
    }
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, topic_arn, Value::Object(configuration));
    item.arn = Some(topic_arn.to_string());
    item.resource_name = topic_arn.rsplit(':').next().map(str::to_string);
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::json;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alerts";
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(configuration: Value) -> ConfigurationItem {
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, TOPIC, configuration);
        item.resource_name = Some("alerts".into());
        item
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        SnsEncryptedKms.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let cases: Vec<(&str, Value, Value, Compliance, &str)> = vec![
            ("no key", json!({}), json!({"topicArn": TOPIC}), Compliance::NonCompliant, "no server-side encryption"),
            ("an empty key", json!({}), json!({"topicArn": TOPIC, "kmsMasterKeyId": ""}), Compliance::NonCompliant, "no server-side"),
            ("any key", json!({}), json!({"topicArn": TOPIC, "kmsMasterKeyId": "alias/aws/sns"}), Compliance::Compliant, "alias/aws/sns"),
            (
                "an approved key ARN",
                json!({"kmsKeyIds": format!("{OTHER},{KEY}")}),
                json!({"topicArn": TOPIC, "kmsMasterKeyId": KEY}),
                Compliance::Compliant,
                "approved",
            ),
            (
                "an approved alias, named the same way",
                json!({"kmsKeyIds": "alias/topics"}),
                json!({"topicArn": TOPIC, "kmsMasterKeyId": "alias/topics"}),
                Compliance::Compliant,
                "approved",
            ),
            (
                "a key ARN not in the list",
                json!({"kmsKeyIds": OTHER}),
                json!({"topicArn": TOPIC, "kmsMasterKeyId": KEY}),
                Compliance::NonCompliant,
                "not in kmsKeyIds",
            ),
            (
                "the API's field names",
                json!({"kmsKeyIds": KEY}),
                json!({"TopicArn": TOPIC, "KmsMasterKeyId": KEY}),
                Compliance::Compliant,
                KEY,
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
        assert!(!SnsEncryptedKms.needs_live_state(&item(json!({"topicArn": TOPIC}))));
        assert!(SnsEncryptedKms.needs_live_state(&item(json!({}))));
    }

    #[test]
    fn a_live_topic_looks_like_its_item() {
        let attributes = [("KmsMasterKeyId".to_string(), KEY.to_string()), ("Policy".to_string(), "{}".to_string())].into();
        let live = topic_item(TOPIC, &attributes);
        assert_eq!(topic_key(&live.configuration), Some(KEY));
        assert_eq!(live.resource_name.as_deref(), Some("alerts"));
        assert_eq!(topic_key(&topic_item(TOPIC, &Default::default()).configuration), None);
    }
}
