//! What the rule `cmk-backing-key-rotation-enabled` and the fix `kms-enable-key-rotation` share
//! (a library, so neither Lambda crate depends on the other): which KMS keys automatic rotation
//! applies to and, for the others, the reason in plain words; a key as AWS Config records it
//! (`AWS::KMS::Key`, lower-camel `KeyMetadata`); the rotation status as `GetKeyRotationStatus`
//! reports it.
//!
//! AWS KMS documents automatic rotation ("Rotate AWS KMS keys", `EnableKeyRotation`) only for
//! symmetric encryption keys with key material KMS generated, in the AWS KMS key store, that the
//! customer manages: AWS managed keys rotate every year on their own and cannot be changed;
//! asymmetric, HMAC, imported-material (`Origin` EXTERNAL) and custom key store keys
//! (`AWS_CLOUDHSM`, `EXTERNAL_KEY_STORE`) are not supported; for multi-Region keys rotation is
//! set on the primary key and shared by its replicas (`EnableKeyRotation` refuses a replica).
//! A key that is not `Enabled` (disabled, pending deletion or import, …) cannot be changed
//! (`KMSInvalidStateException`).

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_str};
use aws_sdk_kms::types::KeyMetadata;
use aws_smithy_types::DateTime;
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::KMS::Key";

/// `RotationPeriodInDays` bounds (KMS API reference, `EnableKeyRotation`); 365 when not given.
pub const MIN_ROTATION_DAYS: i64 = 90;
pub const MAX_ROTATION_DAYS: i64 = 2560;
pub const DEFAULT_ROTATION_DAYS: i32 = 365;

/// What decides whether automatic rotation applies to a key, read from a configuration item or
/// from `DescribeKey`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFacts {
    pub key_manager: Option<String>,
    /// `KeySpec`, or the older `CustomerMasterKeySpec` where only that is recorded.
    pub key_spec: Option<String>,
    pub key_usage: Option<String>,
    pub origin: Option<String>,
    pub key_state: Option<String>,
    pub custom_key_store_id: Option<String>,
    /// PRIMARY or REPLICA for multi-Region keys.
    pub multi_region_type: Option<String>,
    pub primary_key_arn: Option<String>,
}

impl KeyFacts {
    /// From the `configuration` of an `AWS::KMS::Key` item (field names compared without case:
    /// the notification and history shapes differ).
    pub fn from_configuration(configuration: &Value) -> Self {
        let text = |name: &str| field_str(configuration, name).filter(|s| !s.is_empty()).map(str::to_string);
        let multi = field(configuration, "multiRegionConfiguration");
        KeyFacts {
            key_manager: text("keyManager"),
            key_spec: text("keySpec").or_else(|| text("customerMasterKeySpec")),
            key_usage: text("keyUsage"),
            origin: text("origin"),
            key_state: text("keyState"),
            custom_key_store_id: text("customKeyStoreId"),
            multi_region_type: multi.and_then(|m| field_str(m, "multiRegionKeyType")).map(str::to_string),
            primary_key_arn: multi.and_then(|m| field(m, "primaryKey")).and_then(|p| field_str(p, "arn")).map(str::to_string),
        }
    }

    pub fn from_metadata(meta: &KeyMetadata) -> Self {
        Self::from_configuration(&key_configuration(meta))
    }

    /// Whether the item says enough to decide (a trimmed item does not).
    pub fn is_complete(&self) -> bool {
        self.key_manager.is_some() && self.key_spec.is_some() && self.origin.is_some() && self.key_state.is_some()
    }
}

/// Why automatic rotation does not apply to a key (`None`: it does). Short enough for an
/// annotation with the key id around it.
pub fn not_rotatable_reason(key: &KeyFacts) -> Option<String> {
    if key.key_manager.as_deref() == Some("AWS") {
        return Some("an AWS managed key: AWS rotates it every year and its rotation cannot be changed".into());
    }
    match key.key_spec.as_deref() {
        Some("SYMMETRIC_DEFAULT") | None => {}
        Some(spec) if spec.starts_with("HMAC_") => {
            return Some(format!("an HMAC key ({spec}): KMS does not rotate HMAC keys automatically"));
        }
        Some(spec) => return Some(format!("an asymmetric key ({spec}): KMS does not rotate asymmetric keys automatically")),
    }
    match key.origin.as_deref() {
        Some("EXTERNAL") => {
            return Some("imported key material (Origin EXTERNAL): KMS does not rotate it automatically; rotate it by hand".into());
        }
        Some(origin @ ("AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE")) => {
            return Some(format!("a custom key store key (Origin {origin}): KMS does not rotate it automatically"));
        }
        _ => {}
    }
    if key.custom_key_store_id.is_some() {
        return Some("a custom key store key: KMS does not rotate it automatically".into());
    }
    if key.multi_region_type.as_deref() == Some("REPLICA") {
        let primary = key.primary_key_arn.as_deref().unwrap_or("its primary key");
        return Some(format!("a multi-Region replica key: rotation is set on the primary key {primary} and shared"));
    }
    match key.key_state.as_deref() {
        Some("Enabled") | None => None,
        Some(state) => Some(format!("in state {state}: rotation applies to Enabled keys only")),
    }
}

/// A key as AWS Config records an `AWS::KMS::Key` (lower-camel `KeyMetadata`).
pub fn key_configuration(meta: &KeyMetadata) -> Value {
    let multi = meta.multi_region_configuration().map(|m| {
        json!({
            "multiRegionKeyType": m.multi_region_key_type().map(|t| t.as_str()),
            "primaryKey": m.primary_key().map(|p| json!({"arn": p.arn(), "region": p.region()})),
        })
    });
    json!({
        "keyId": meta.key_id(),
        "arn": meta.arn(),
        "description": meta.description(),
        "enabled": meta.enabled(),
        "keyManager": meta.key_manager().map(|m| m.as_str()),
        "keySpec": meta.key_spec().map(|s| s.as_str()),
        "keyUsage": meta.key_usage().map(|u| u.as_str()),
        "origin": meta.origin().map(|o| o.as_str()),
        "keyState": meta.key_state().map(|s| s.as_str()),
        "customKeyStoreId": meta.custom_key_store_id(),
        "multiRegion": meta.multi_region(),
        "multiRegionConfiguration": multi,
    })
}

/// A key as a configuration item (id: the key id, as Config reports `AWS::KMS::Key`).
pub fn key_item(meta: &KeyMetadata) -> ConfigurationItem {
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, meta.key_id(), key_configuration(meta));
    item.arn = meta.arn().map(str::to_string);
    item
}

/// `DescribeKey` by key id (or ARN); `None` when the key does not exist.
pub async fn describe(kms: &aws_sdk_kms::Client, key_id: &str) -> Result<Option<KeyMetadata>> {
    match kms.describe_key().key_id(key_id).send().await {
        Ok(out) => Ok(out.key_metadata),
        Err(e) => {
            let err = aws_error("kms:DescribeKey", key_id, e);
            if err.aws_code() == Some("NotFoundException") { Ok(None) } else { Err(err) }
        }
    }
}

/// What `GetKeyRotationStatus` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationStatus {
    pub enabled: bool,
    /// Reported while rotation is on (KMS omits it otherwise).
    pub period_days: Option<i32>,
    pub next_rotation: Option<DateTime>,
}

impl RotationStatus {
    /// "on, every 365 days (next 2027-01-01)" / "off".
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "off".into();
        }
        let period = self.period_days.map(|d| format!(", every {d} days")).unwrap_or_default();
        let next = self
            .next_rotation
            .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
            .map(|t| format!(" (next {})", t.get(..10).unwrap_or(&t)))
            .unwrap_or_default();
        format!("on{period}{next}")
    }
}

pub async fn rotation_status(kms: &aws_sdk_kms::Client, key_id: &str) -> Result<RotationStatus> {
    let out = kms.get_key_rotation_status().key_id(key_id).send().await.map_err(|e| aws_error("kms:GetKeyRotationStatus", key_id, e))?;
    Ok(RotationStatus {
        enabled: out.key_rotation_enabled(),
        period_days: out.rotation_period_in_days(),
        next_rotation: out.next_rotation_date().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::types::{
        KeyManagerType, KeySpec, KeyState, KeyUsageType, MultiRegionConfiguration, MultiRegionKey, MultiRegionKeyType, OriginType,
    };

    fn key(manager: KeyManagerType, spec: KeySpec, origin: OriginType, state: KeyState) -> KeyMetadata {
        KeyMetadata::builder()
            .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
            .arn("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
            .key_manager(manager)
            .key_spec(spec)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .origin(origin)
            .key_state(state)
            .build()
            .unwrap()
    }

    #[test]
    fn which_keys_rotate_and_why_not() {
        use KeyManagerType::{Aws, Customer};
        let cases: Vec<(&str, KeyMetadata, Option<&str>)> = vec![
            ("customer symmetric", key(Customer, KeySpec::SymmetricDefault, OriginType::AwsKms, KeyState::Enabled), None),
            ("AWS managed", key(Aws, KeySpec::SymmetricDefault, OriginType::AwsKms, KeyState::Enabled), Some("AWS managed")),
            ("asymmetric", key(Customer, KeySpec::Rsa2048, OriginType::AwsKms, KeyState::Enabled), Some("asymmetric key (RSA_2048)")),
            ("HMAC", key(Customer, KeySpec::Hmac256, OriginType::AwsKms, KeyState::Enabled), Some("HMAC key")),
            ("imported", key(Customer, KeySpec::SymmetricDefault, OriginType::External, KeyState::Enabled), Some("imported key material")),
            ("CloudHSM", key(Customer, KeySpec::SymmetricDefault, OriginType::AwsCloudhsm, KeyState::Enabled), Some("custom key store")),
            (
                "external key store",
                key(Customer, KeySpec::SymmetricDefault, OriginType::ExternalKeyStore, KeyState::Enabled),
                Some("custom key store"),
            ),
            ("disabled", key(Customer, KeySpec::SymmetricDefault, OriginType::AwsKms, KeyState::Disabled), Some("in state Disabled")),
            (
                "pending deletion",
                key(Customer, KeySpec::SymmetricDefault, OriginType::AwsKms, KeyState::PendingDeletion),
                Some("in state PendingDeletion"),
            ),
        ];
        for (name, meta, expected) in cases {
            let reason = not_rotatable_reason(&KeyFacts::from_metadata(&meta));
            match (expected, &reason) {
                (None, None) => {}
                (Some(words), Some(r)) => assert!(r.contains(words), "{name}: {r}"),
                _ => panic!("{name}: {reason:?}"),
            }
        }
    }

    #[test]
    fn a_replica_points_at_its_primary_and_a_primary_rotates() {
        let primary = "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        let with = |kind: MultiRegionKeyType| {
            let mut meta = key(KeyManagerType::Customer, KeySpec::SymmetricDefault, OriginType::AwsKms, KeyState::Enabled);
            meta.multi_region = Some(true);
            meta.multi_region_configuration = Some(
                MultiRegionConfiguration::builder()
                    .multi_region_key_type(kind)
                    .primary_key(MultiRegionKey::builder().arn(primary).region("eu-west-1").build())
                    .build(),
            );
            KeyFacts::from_metadata(&meta)
        };
        assert!(not_rotatable_reason(&with(MultiRegionKeyType::Replica)).unwrap().contains(primary));
        assert_eq!(not_rotatable_reason(&with(MultiRegionKeyType::Primary)), None);
    }

    #[test]
    fn config_items_in_either_case_and_the_older_spec_field_are_read() {
        let item = json!({"KeyManager": "CUSTOMER", "CustomerMasterKeySpec": "ECC_NIST_P256", "Origin": "AWS_KMS", "KeyState": "Enabled"});
        let facts = KeyFacts::from_configuration(&item);
        assert!(facts.is_complete());
        assert!(not_rotatable_reason(&facts).unwrap().contains("ECC_NIST_P256"));
        assert!(!KeyFacts::from_configuration(&json!({"keyId": "x"})).is_complete());
    }

    #[test]
    fn the_status_reads_plainly() {
        let on = RotationStatus { enabled: true, period_days: Some(180), next_rotation: Some(DateTime::from_secs(1_800_000_000)) };
        assert_eq!(on.describe(), "on, every 180 days (next 2027-01-15)");
        assert_eq!(RotationStatus { enabled: false, period_days: None, next_rotation: None }.describe(), "off");
    }
}
