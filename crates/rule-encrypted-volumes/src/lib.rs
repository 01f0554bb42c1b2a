//! `encrypted-volumes`: every EBS volume is encrypted, optionally with one KMS key.
//!
//! Mirrors the managed rule `ENCRYPTED_VOLUMES` (parameter `kmsId`) with one deliberate
//! difference: the managed rule only judges *attached* volumes, so a detached unencrypted volume
//! (a leftover data disk, a restored backup) is never reported. Here detached volumes are judged
//! too unless `includeDetached` is `false`.
//!
//! A change notification carries everything (`encrypted`, `kmsKeyId`, `attachments`), so it is
//! judged without calling AWS, except to resolve a `kmsId` alias. Periodic sweeps page through
//! `DescribeVolumes`.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_bool, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::EC2::Volume";

pub static SPEC: RuleSpec = RuleSpec {
    name: "encrypted-volumes",
    description: "EBS volumes are encrypted (optionally with a given KMS key); detached volumes are judged too.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[
        ParamSpec {
            name: "kmsId",
            kind: ParamKind::KmsKey,
            default: "",
            description: "KMS key (key id, key ARN, alias or alias ARN) every volume must use. Empty: any key.",
        },
        ParamSpec {
            name: "includeDetached",
            kind: ParamKind::Bool,
            default: "true",
            description: "Judge volumes that are not attached to an instance (the managed rule does not).",
        },
    ],
    mirrors: Some("ENCRYPTED_VOLUMES"),
    fix: Some("ebs-encrypt-volumes"),
};

/// Where a volume is attached, as read from an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub instance_id: String,
    pub device: Option<String>,
}

pub fn attachments(item: &ConfigurationItem) -> Vec<Attachment> {
    let Some(list) = field(&item.configuration, "attachments").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter(|a| !matches!(field_str(a, "state"), Some("detached")))
        .filter_map(|a| {
            Some(Attachment { instance_id: field_str(a, "instanceId")?.to_string(), device: field_str(a, "device").map(str::to_string) })
        })
        .collect()
}

fn where_attached(attached: &[Attachment]) -> String {
    match attached {
        [] => "detached".to_string(),
        list => list
            .iter()
            .map(|a| match &a.device {
                Some(d) => format!("{} {d}", a.instance_id),
                None => a.instance_id.clone(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

pub struct EncryptedVolumes;

#[async_trait]
impl ConfigRule for EncryptedVolumes {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        field_bool(&item.configuration, "encrypted").is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let attached = attachments(item);
        if attached.is_empty() && !ctx.params.bool("includeDetached") {
            return Ok(Verdict::not_applicable("The volume is detached and includeDetached is false."));
        }
        let place = where_attached(&attached);
        if !field_bool(&item.configuration, "encrypted").unwrap_or(false) {
            return Ok(Verdict::non_compliant(format!("The volume is not encrypted ({place}).")));
        }
        let key = field_str(&item.configuration, "kmsKeyId").filter(|k| !k.is_empty());
        if let Some(required) = ctx.params.text("kmsId") {
            let Some(key) = key else {
                return Ok(Verdict::non_compliant(format!("The volume is encrypted but reports no KMS key; {required} is required.")));
            };
            if !ctx.kms.is_one_of(key, &[required.to_string()]).await? {
                return Ok(Verdict::non_compliant(format!("The volume is encrypted with KMS key {key}, not {required} ({place}).")));
            }
        }
        let with_key = key.map(|k| format!(" with KMS key {k}")).unwrap_or_default();
        Ok(Verdict::compliant(format!("The volume is encrypted{with_key} ({place}).")))
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let ec2 = ctx.client(aws_sdk_ec2::Client::new);
        let mut found = Vec::new();
        let mut pages = ec2.describe_volumes().max_results(500).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ec2:DescribeVolumes", "the region's volumes", e))?;
            found.extend(page.volumes().iter().filter_map(volume_item).map(Discovered::Item));
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, volume_id: &str) -> Result<Option<ConfigurationItem>> {
        let ec2 = ctx.client(aws_sdk_ec2::Client::new);
        match ec2.describe_volumes().volume_ids(volume_id).send().await {
            Ok(out) => Ok(out.volumes().first().and_then(volume_item)),
            Err(e) => {
                let err = aws_error("ec2:DescribeVolumes", volume_id, e);
                if err.aws_code() == Some("InvalidVolume.NotFound") { Ok(None) } else { Err(err) }
            }
        }
    }
}

/// A live volume in the configuration item's shape (the fields Config records for
/// `AWS::EC2::Volume`, camelCase).
pub fn volume_item(volume: &aws_sdk_ec2::types::Volume) -> Option<ConfigurationItem> {
    let id = volume.volume_id()?;
    let attachments: Vec<Value> = volume
        .attachments()
        .iter()
        .map(|a| {
            json!({
                "instanceId": a.instance_id(),
                "device": a.device(),
                "state": a.state().map(|s| s.as_str()),
                "deleteOnTermination": a.delete_on_termination(),
            })
        })
        .collect();
    let configuration = json!({
        "volumeId": id,
        "encrypted": volume.encrypted().unwrap_or(false),
        "kmsKeyId": volume.kms_key_id(),
        "availabilityZone": volume.availability_zone(),
        "volumeType": volume.volume_type().map(|t| t.as_str()),
        "size": volume.size(),
        "state": volume.state().map(|s| s.as_str()),
        "attachments": attachments,
    });
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, id, configuration);
    item.tags = volume.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect();
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(configuration: Value) -> ConfigurationItem {
        ConfigurationItem::live(RESOURCE_TYPE, "vol-0123456789abcdef0", configuration)
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        EncryptedVolumes.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let attached = json!([{"instanceId": "i-0abc", "device": "/dev/xvda", "state": "attached"}]);
        let cases: Vec<(&str, Value, Value, Compliance, &str)> = vec![
            (
                "attached, unencrypted",
                json!({}),
                json!({"encrypted": false, "attachments": attached}),
                Compliance::NonCompliant,
                "i-0abc /dev/xvda",
            ),
            ("detached, unencrypted", json!({}), json!({"encrypted": false, "attachments": []}), Compliance::NonCompliant, "detached"),
            (
                "detached volumes can be left out, as the managed rule does",
                json!({"includeDetached": "false"}),
                json!({"encrypted": false, "attachments": []}),
                Compliance::NotApplicable,
                "includeDetached",
            ),
            (
                "a detaching attachment counts as detached",
                json!({"includeDetached": "false"}),
                json!({"encrypted": false, "attachments": [{"instanceId": "i-0abc", "state": "detached"}]}),
                Compliance::NotApplicable,
                "detached",
            ),
            (
                "encrypted, any key",
                json!({}),
                json!({"encrypted": true, "kmsKeyId": KEY, "attachments": attached}),
                Compliance::Compliant,
                KEY,
            ),
            ("required key", json!({"kmsId": KEY}), json!({"encrypted": true, "kmsKeyId": KEY}), Compliance::Compliant, KEY),
            ("another key", json!({"kmsId": OTHER}), json!({"encrypted": true, "kmsKeyId": KEY}), Compliance::NonCompliant, OTHER),
            ("no key reported", json!({"kmsId": KEY}), json!({"encrypted": true}), Compliance::NonCompliant, "no KMS key"),
            ("history shape", json!({}), json!({"Encrypted": "true", "KmsKeyId": KEY}), Compliance::Compliant, KEY),
        ];
        for (name, params, configuration, expected, mentions) in cases {
            let verdict = judge(params, &item(configuration)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(mentions), "{name}: {}", verdict.annotation);
        }
    }

    #[test]
    fn items_without_the_encrypted_field_are_fetched_live() {
        assert!(EncryptedVolumes.needs_live_state(&item(json!(null))));
        assert!(!EncryptedVolumes.needs_live_state(&item(json!({"encrypted": false}))));
    }
}
