//! `ec2-instance-store-encrypted`: data on instance-store (ephemeral) volumes is encrypted.
//!
//! No AWS managed rule covers this. Instance-store volumes of Nitro NVMe types are always
//! encrypted in hardware (`DescribeInstanceTypes` → `InstanceStorageInfo.EncryptionSupport` =
//! `required`); older types (`m3`, `c3`, `d2`, `i2`, `r3`, `x1`, …) are not, and only
//! encryption inside the guest protects them. This rule reports:
//! - NOT_APPLICABLE: the instance type has no instance store (or the instance is terminated);
//! - COMPLIANT: the type encrypts its instance store in hardware, or the instance carries the
//!   LUKS tag (`<luksTagKey>=luks`, set by the `fix-ec2-instance-store-luks` SSM Command document
//!   once the device is formatted with LUKS);
//! - NON_COMPLIANT otherwise.

use std::collections::HashMap;

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use serde_json::json;
use tokio::sync::Mutex;

pub const RESOURCE_TYPE: &str = "AWS::EC2::Instance";
/// The value the LUKS document writes under the tag key.
pub const LUKS_TAG_VALUE: &str = "luks";

pub static SPEC: RuleSpec = RuleSpec {
    name: "ec2-instance-store-encrypted",
    description: "Instance-store volumes are hardware-encrypted, or the instance is tagged as encrypting them with LUKS.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[ParamSpec {
        name: "luksTagKey",
        kind: ParamKind::Text,
        default: "atrest:instance-store-encryption",
        description: "Tag key that marks an instance whose instance-store volumes are LUKS-encrypted (value \"luks\").",
    }],
    mirrors: None,
    fix: Some("ec2-instance-store-luks"),
};

/// What an instance type says about its instance store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStorage {
    pub total_gb: i64,
    pub disks: i32,
    /// `required`, `supported` or `unsupported`.
    pub encryption_support: String,
}

/// Instance types never change their storage, so answers are kept for the life of the Lambda
/// container (a sweep of 1,000 instances makes one call per distinct type).
#[derive(Default)]
pub struct Ec2InstanceStoreEncrypted {
    types: Mutex<HashMap<String, Option<InstanceStorage>>>,
}

impl Ec2InstanceStoreEncrypted {
    /// The instance type's storage; `None` when it has no instance store.
    pub async fn storage(&self, ctx: &RuleContext, instance_type: &str) -> Result<Option<InstanceStorage>> {
        if let Some(hit) = self.types.lock().await.get(instance_type) {
            return Ok(hit.clone());
        }
        let out = ctx
            .client(aws_sdk_ec2::Client::new)
            .describe_instance_types()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeInstanceTypes", instance_type, e))?;
        let info = out
            .instance_types()
            .first()
            .ok_or_else(|| atrest::Error::Unsupported(format!("DescribeInstanceTypes does not know instance type {instance_type}")))?;
        let storage = info.instance_storage_info().filter(|_| info.instance_storage_supported().unwrap_or(true)).and_then(|s| {
            let total_gb = s.total_size_in_gb().unwrap_or(0);
            let disks = s.disks().iter().map(|d| d.count().unwrap_or(0)).sum();
            (total_gb > 0 || disks > 0).then(|| InstanceStorage {
                total_gb,
                disks,
                encryption_support: s.encryption_support().map(|e| e.as_str().to_string()).unwrap_or_else(|| "unsupported".into()),
            })
        });
        self.types.lock().await.insert(instance_type.to_string(), storage.clone());
        Ok(storage)
    }
}

/// The verdict once the type's storage is known: the pure part of the rule.
pub fn verdict(storage: Option<&InstanceStorage>, instance_type: &str, luks_tag_key: &str, luks_tag: Option<&str>) -> Verdict {
    let Some(storage) = storage else {
        return Verdict::not_applicable(format!("Instance type {instance_type} has no instance-store volumes."));
    };
    let what = format!("{instance_type} has {} instance-store volume(s), {} GB", storage.disks, storage.total_gb);
    if storage.encryption_support == "required" {
        return Verdict::compliant(format!("{what}, always encrypted by the hardware."));
    }
    if luks_tag.is_some_and(|v| v.trim().eq_ignore_ascii_case(LUKS_TAG_VALUE)) {
        return Verdict::compliant(format!("{what}, not hardware-encrypted; the instance is tagged {luks_tag_key}={LUKS_TAG_VALUE}."));
    }
    Verdict::non_compliant(format!(
        "{what}, not encrypted by the hardware, and the instance is not tagged {luks_tag_key}={LUKS_TAG_VALUE} (LUKS)."
    ))
}

#[async_trait]
impl ConfigRule for Ec2InstanceStoreEncrypted {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        field_str(&item.configuration, "instanceType").is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let state = field(&item.configuration, "state").and_then(|s| field_str(s, "name"));
        if matches!(state, Some("terminated" | "shutting-down")) {
            return Ok(Verdict::not_applicable("The instance is terminated."));
        }
        let Some(instance_type) = field_str(&item.configuration, "instanceType") else {
            return Err(atrest::Error::MalformedEvent(format!("{} has no instanceType in its configuration", item.resource_id)));
        };
        let key = ctx.params.text("luksTagKey").unwrap_or("atrest:instance-store-encryption");
        let storage = self.storage(ctx, instance_type).await?;
        Ok(verdict(storage.as_ref(), instance_type, key, item.tag(key)))
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let mut found = Vec::new();
        let mut pages = ctx.client(aws_sdk_ec2::Client::new).describe_instances().max_results(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("ec2:DescribeInstances", "the region's instances", e))?;
            for reservation in page.reservations() {
                found.extend(reservation.instances().iter().filter_map(instance_item).map(Discovered::Item));
            }
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, instance_id: &str) -> Result<Option<ConfigurationItem>> {
        match ctx.client(aws_sdk_ec2::Client::new).describe_instances().instance_ids(instance_id).send().await {
            Ok(out) => Ok(out.reservations().iter().flat_map(|r| r.instances()).find_map(instance_item)),
            Err(e) => {
                let err = aws_error("ec2:DescribeInstances", instance_id, e);
                if err.aws_code() == Some("InvalidInstanceID.NotFound") { Ok(None) } else { Err(err) }
            }
        }
    }
}

/// A live instance in the configuration item's shape (the fields this rule reads).
pub fn instance_item(instance: &aws_sdk_ec2::types::Instance) -> Option<ConfigurationItem> {
    let id = instance.instance_id()?;
    let configuration = json!({
        "instanceId": id,
        "instanceType": instance.instance_type().map(|t| t.as_str()),
        "state": { "name": instance.state().and_then(|s| s.name()).map(|n| n.as_str()) },
    });
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, id, configuration);
    item.tags = instance.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect();
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;

    fn storage(support: &str) -> InstanceStorage {
        InstanceStorage { total_gb: 4, disks: 1, encryption_support: support.into() }
    }

    #[test]
    fn verdict_table() {
        let key = "atrest:instance-store-encryption";
        let cases = [
            (None, None, Compliance::NotApplicable),
            (Some(storage("required")), None, Compliance::Compliant),
            (Some(storage("unsupported")), None, Compliance::NonCompliant),
            (Some(storage("supported")), None, Compliance::NonCompliant),
            (Some(storage("unsupported")), Some("luks"), Compliance::Compliant),
            (Some(storage("unsupported")), Some(" LUKS "), Compliance::Compliant),
            (Some(storage("unsupported")), Some("planned"), Compliance::NonCompliant),
        ];
        for (storage, tag, expected) in cases {
            let v = verdict(storage.as_ref(), "m3.medium", key, tag);
            assert_eq!(v.compliance, expected, "{storage:?} {tag:?}: {}", v.annotation);
            assert!(v.annotation.contains("m3.medium"), "{}", v.annotation);
        }
    }
}
