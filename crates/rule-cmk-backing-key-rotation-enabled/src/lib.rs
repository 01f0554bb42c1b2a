//! `cmk-backing-key-rotation-enabled`: customer managed symmetric KMS keys rotate automatically.
//!
//! Mirrors the managed rule `CMK_BACKING_KEY_ROTATION_ENABLED` (periodic, no parameters, one
//! result per `AWS::KMS::Key`, resource id the key id). Keys automatic rotation does not apply
//! to (AWS managed, asymmetric, HMAC, imported material, custom key store, multi-Region
//! replicas, keys not Enabled) are NOT_APPLICABLE with the reason (`atrest-kms-rotation`).
//!
//! Config records a key's metadata but not its rotation status, which is why the managed rule is
//! periodic: the kind of key is judged from the item, and only a key rotation applies to costs a
//! `GetKeyRotationStatus`. A sweep pages through `ListKeys` and describes each key; the runtime
//! keeps a bounded number of keys in flight, since an account may hold thousands.

use atrest::error::{Result, aws_error};
use atrest::item::ConfigurationItem;
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_kms_rotation::{KeyFacts, RESOURCE_TYPE, key_item, not_rotatable_reason, rotation_status};

pub static SPEC: RuleSpec = RuleSpec {
    name: "cmk-backing-key-rotation-enabled",
    description: "Customer managed symmetric KMS keys have automatic key rotation on.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::Periodic],
    parameters: &[],
    mirrors: Some("CMK_BACKING_KEY_ROTATION_ENABLED"),
    fix: Some("kms-enable-key-rotation"),
};

pub struct CmkBackingKeyRotationEnabled;

#[async_trait]
impl ConfigRule for CmkBackingKeyRotationEnabled {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        !KeyFacts::from_configuration(&item.configuration).is_complete()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let key_id = item.resource_id.as_str();
        if let Some(reason) = not_rotatable_reason(&KeyFacts::from_configuration(&item.configuration)) {
            return Ok(Verdict::not_applicable(format!("Key {key_id} is {reason}.")));
        }
        let status = rotation_status(&ctx.client(aws_sdk_kms::Client::new), key_id).await?;
        Ok(if status.enabled {
            Verdict::compliant(format!("Automatic rotation of customer managed key {key_id} is {}.", status.describe()))
        } else {
            Verdict::non_compliant(format!("Automatic rotation of customer managed key {key_id} is off."))
        })
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let kms = ctx.client(aws_sdk_kms::Client::new);
        let mut found = Vec::new();
        let mut pages = kms.list_keys().limit(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("kms:ListKeys", "the region's keys", e))?;
            found.extend(
                page.keys()
                    .iter()
                    .filter_map(|k| k.key_id())
                    .map(|id| Discovered::Id { resource_type: RESOURCE_TYPE.to_string(), resource_id: id.to_string() }),
            );
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, key_id: &str) -> Result<Option<ConfigurationItem>> {
        let kms = ctx.client(aws_sdk_kms::Client::new);
        let Some(meta) = atrest_kms_rotation::describe(&kms, key_id).await? else { return Ok(None) };
        let mut item = key_item(&meta);
        // Only a customer managed key can carry tags (the exemption tag among them); AWS
        // managed keys are never judged, so they cost no second call.
        if not_rotatable_reason(&KeyFacts::from_metadata(&meta)).is_none() {
            let mut pages = kms.list_resource_tags().key_id(key_id).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| aws_error("kms:ListResourceTags", key_id, e))?;
                item.tags.extend(page.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())));
            }
        }
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_kms::operation::get_key_rotation_status::GetKeyRotationStatusOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::{Value, json};

    const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: anything not mocked fails.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(overrides: Value) -> ConfigurationItem {
        let mut configuration = json!({
            "keyId": KEY_ID, "keyManager": "CUSTOMER", "keySpec": "SYMMETRIC_DEFAULT", "keyUsage": "ENCRYPT_DECRYPT",
            "origin": "AWS_KMS", "keyState": "Enabled"
        });
        for (k, v) in overrides.as_object().unwrap() {
            configuration[k] = v.clone();
        }
        ConfigurationItem::live(RESOURCE_TYPE, KEY_ID, configuration)
    }

    /// Judges with a KMS client whose GetKeyRotationStatus answers `rotation` (None: no answer
    /// at all, so the verdict must come from the item); returns the verdict and the calls made.
    async fn judge(item: &ConfigurationItem, rotation: Option<bool>) -> (Verdict, usize) {
        let status =
            mock!(aws_sdk_kms::Client::get_key_rotation_status).match_requests(|r| r.key_id() == Some(KEY_ID)).then_output(move || {
                let enabled = rotation.unwrap_or_else(|| panic!("GetKeyRotationStatus must not be called for {KEY_ID}"));
                GetKeyRotationStatusOutput::builder()
                    .key_rotation_enabled(enabled)
                    .set_rotation_period_in_days(enabled.then_some(365))
                    .build()
            });
        let client = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&status]);
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params_json(None).unwrap()).with_client(client);
        (CmkBackingKeyRotationEnabled.judge(&ctx, item).await.unwrap(), status.num_calls())
    }

    #[tokio::test]
    async fn verdict_table() {
        let cases: Vec<(&str, Value, Option<bool>, Compliance, &str)> = vec![
            ("rotation on", json!({}), Some(true), Compliance::Compliant, "on, every 365 days"),
            ("rotation off", json!({}), Some(false), Compliance::NonCompliant, "is off"),
            // moto reports every key as CUSTOMER; AWS says AWS for aws/* keys (FIDELITY.md).
            ("AWS managed", json!({"keyManager": "AWS"}), None, Compliance::NotApplicable, "AWS managed"),
            ("asymmetric", json!({"keySpec": "RSA_4096", "keyUsage": "SIGN_VERIFY"}), None, Compliance::NotApplicable, "asymmetric"),
            ("HMAC", json!({"keySpec": "HMAC_512", "keyUsage": "GENERATE_VERIFY_MAC"}), None, Compliance::NotApplicable, "HMAC"),
            ("imported material", json!({"origin": "EXTERNAL"}), None, Compliance::NotApplicable, "imported"),
            (
                "CloudHSM key store",
                json!({"origin": "AWS_CLOUDHSM", "customKeyStoreId": "cks-1"}),
                None,
                Compliance::NotApplicable,
                "custom key store",
            ),
            ("disabled", json!({"keyState": "Disabled"}), None, Compliance::NotApplicable, "Disabled"),
            ("pending deletion", json!({"keyState": "PendingDeletion"}), None, Compliance::NotApplicable, "PendingDeletion"),
            (
                "multi-Region replica",
                json!({"multiRegion": true, "multiRegionConfiguration": {"multiRegionKeyType": "REPLICA", "primaryKey": {"arn": "arn:aws:kms:eu-west-1:123456789012:key/mrk-1", "region": "eu-west-1"}}}),
                None,
                Compliance::NotApplicable,
                "primary key arn:aws:kms:eu-west-1",
            ),
        ];
        for (name, overrides, rotation, expected, says) in cases {
            let (verdict, calls) = judge(&item(overrides), rotation).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(says), "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.chars().count() <= 256, "{name}");
            assert_eq!(calls, usize::from(rotation.is_some()), "{name}: one status read, only where rotation applies");
        }
    }

    #[test]
    fn a_trimmed_item_is_read_live() {
        assert!(CmkBackingKeyRotationEnabled.needs_live_state(&ConfigurationItem::live(RESOURCE_TYPE, KEY_ID, json!({}))));
        assert!(!CmkBackingKeyRotationEnabled.needs_live_state(&item(json!({}))));
    }
}
