//! `fix-kms-enable-key-rotation`: turn on automatic rotation of a customer managed KMS key.
//!
//! Reconciler: `DescribeKey` (a key automatic rotation does not apply to is refused with the
//! reason, the rule's NOT_APPLICABLE kinds: AWS managed, asymmetric, HMAC, imported material,
//! custom key store, multi-Region replica, not Enabled) → `GetKeyRotationStatus` → the pure
//! [`plan`]: nothing to do when rotation is on (with the asked period, if one was asked), else
//! `EnableKeyRotation` (with `RotationPeriodInDays` when given; KMS's default is 365 days) →
//! read the status back; a read-back that does not show it yet is `InProgress`.
//!
//! Non-disruptive: rotation keeps every earlier key material, so everything encrypted before
//! still decrypts; the key id, ARN, aliases, policy and grants are unchanged.

use atrest::error::{Result, aws_error};
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_kms_rotation::{
    DEFAULT_ROTATION_DAYS, KeyFacts, MAX_ROTATION_DAYS, MIN_ROTATION_DAYS, RESOURCE_TYPE, RotationStatus, not_rotatable_reason,
    rotation_status,
};

pub const ROTATION_PERIOD_PARAM: &str = "RotationPeriodInDays";

pub static SPEC: FixSpec = FixSpec {
    name: "kms-enable-key-rotation",
    description: "Turn on automatic rotation of a customer managed symmetric KMS key (optionally with a rotation period) and verify it.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[ParamSpec {
        name: ROTATION_PERIOD_PARAM,
        kind: ParamKind::Integer { min: MIN_ROTATION_DAYS, max: MAX_ROTATION_DAYS },
        default: "",
        description: "Days between automatic rotations, 90 to 2560. Empty: KMS's default (365), and an existing period is kept.",
    }],
    disruptive: false,
};

/// The next thing to do for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Rotation does not apply to this key: nothing can be changed.
    Refuse(String),
    /// Rotation is on as asked.
    Done,
    /// `EnableKeyRotation`, with the period to pass (None: KMS's default).
    Enable { period_days: Option<i32> },
}

/// Pure: what to do given the key's kind, its rotation status and the period asked for.
pub fn plan(not_rotatable: Option<String>, status: Option<&RotationStatus>, wanted_days: Option<i32>) -> Plan {
    if let Some(reason) = not_rotatable {
        return Plan::Refuse(reason);
    }
    match status {
        Some(s) if s.enabled && (wanted_days.is_none() || s.period_days == wanted_days) => Plan::Done,
        _ => Plan::Enable { period_days: wanted_days },
    }
}

fn target(period_days: Option<i32>) -> String {
    match period_days {
        Some(d) => format!("on, every {d} days"),
        None => format!("on (KMS's default period, {DEFAULT_ROTATION_DAYS} days, or the period already set)"),
    }
}

pub struct KmsEnableKeyRotation;

#[async_trait]
impl Fix for KmsEnableKeyRotation {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let key_id = req.resource_id.as_str();
        // Bounded by the ParamSpec (90..=2560), so the conversion cannot fail.
        let wanted_days = req.params.integer(ROTATION_PERIOD_PARAM).and_then(|d| i32::try_from(d).ok());
        let kms = ctx.client(aws_sdk_kms::Client::new);
        let Some(meta) = atrest_kms_rotation::describe(&kms, key_id).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("KMS key {key_id} does not exist (deleted since it was evaluated); nothing to do."),
            ));
        };
        let reason = not_rotatable_reason(&KeyFacts::from_metadata(&meta));
        // The status is only read for a key rotation applies to (KMS refuses it for some others).
        let status = match reason {
            None => Some(rotation_status(&kms, key_id).await?),
            Some(_) => None,
        };
        let before = status.as_ref().map(RotationStatus::describe).unwrap_or_default();
        let period_days = match plan(reason, status.as_ref(), wanted_days) {
            Plan::Refuse(reason) => {
                return Ok(FixOutcome::failed(
                    &SPEC,
                    req,
                    format!("Nothing was changed: KMS key {key_id} is {reason}, so automatic rotation cannot be turned on for it."),
                ));
            }
            Plan::Done => {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!("Automatic rotation of KMS key {key_id} is already {before}; nothing was changed."),
                ));
            }
            Plan::Enable { period_days } => period_days,
        };
        let change = format!("automatic rotation of KMS key {key_id}: {before} -> {}", target(period_days));
        if req.dry_run {
            return Ok(FixOutcome::succeeded(&SPEC, req, format!("Dry run: would set {change}. Nothing was changed.")).with_change(change));
        }
        kms.enable_key_rotation()
            .key_id(key_id)
            .set_rotation_period_in_days(period_days)
            .send()
            .await
            .map_err(|e| aws_error("kms:EnableKeyRotation", key_id, e))?;

        let now = rotation_status(&kms, key_id).await?;
        Ok(match plan(None, Some(&now), wanted_days) {
            Plan::Done => FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Automatic rotation of KMS key {key_id} is now {} (verified by reading it back). Earlier key material is kept, \
                     so everything encrypted before still decrypts; nothing else was changed.",
                    now.describe()
                ),
            ),
            _ => FixOutcome::in_progress(&SPEC, req, format!("Set {change}; waiting for KMS to report it.")),
        }
        .with_change(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(enabled: bool, days: Option<i32>) -> RotationStatus {
        RotationStatus { enabled, period_days: days, next_rotation: None }
    }

    /// (case, why rotation does not apply, status now, period asked, expected plan)
    type Case = (&'static str, Option<&'static str>, Option<RotationStatus>, Option<i32>, Plan);

    #[test]
    fn plan_table() {
        let cases: Vec<Case> = vec![
            ("off, no period asked", None, Some(status(false, None)), None, Plan::Enable { period_days: None }),
            ("off, period asked", None, Some(status(false, None)), Some(90), Plan::Enable { period_days: Some(90) }),
            ("on, no period asked: any period will do", None, Some(status(true, Some(730))), None, Plan::Done),
            ("on with the asked period", None, Some(status(true, Some(180))), Some(180), Plan::Done),
            ("on with another period: set it", None, Some(status(true, Some(365))), Some(180), Plan::Enable { period_days: Some(180) }),
            ("not rotatable", Some("an AWS managed key"), None, Some(180), Plan::Refuse("an AWS managed key".into())),
        ];
        for (name, reason, status, wanted, expected) in cases {
            assert_eq!(plan(reason.map(str::to_string), status.as_ref(), wanted), expected, "{name}");
        }
    }

    /// What moto cannot show: it reports AWS managed keys as CUSTOMER and has no multi-Region
    /// replicas. Both are refused from DescribeKey alone: no status read, no EnableKeyRotation.
    #[tokio::test]
    async fn aws_managed_keys_and_replicas_are_refused_without_a_write() {
        use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
        use aws_sdk_kms::types::{
            KeyManagerType, KeyMetadata, KeySpec, KeyState, MultiRegionConfiguration, MultiRegionKeyType, OriginType,
        };
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let metadata = |manager: KeyManagerType, replica: bool| {
            let mut meta = KeyMetadata::builder()
                .key_id(KEY_ID)
                .arn(format!("arn:aws:kms:us-east-1:123456789012:key/{KEY_ID}"))
                .key_manager(manager)
                .key_spec(KeySpec::SymmetricDefault)
                .origin(OriginType::AwsKms)
                .key_state(KeyState::Enabled)
                .build()
                .unwrap();
            if replica {
                meta.multi_region_configuration =
                    Some(MultiRegionConfiguration::builder().multi_region_key_type(MultiRegionKeyType::Replica).build());
            }
            meta
        };
        for (name, meta, says) in [
            ("AWS managed", metadata(KeyManagerType::Aws, false), "AWS managed key"),
            ("replica", metadata(KeyManagerType::Customer, true), "multi-Region replica"),
        ] {
            let describe = mock!(aws_sdk_kms::Client::describe_key)
                .then_output(move || DescribeKeyOutput::builder().key_metadata(meta.clone()).build());
            let status = mock!(aws_sdk_kms::Client::get_key_rotation_status).then_output(|| panic!("no status read"));
            let enable = mock!(aws_sdk_kms::Client::enable_key_rotation).then_output(|| panic!("no EnableKeyRotation"));
            let client = mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&describe, &status, &enable]);
            let runner = atrest::FixRunner::new(std::sync::Arc::new(KmsEnableKeyRotation), &sdk, None).with_client(client);
            let outcome = runner.step(&serde_json::json!({"ResourceId": KEY_ID, "RotationPeriodInDays": "180"})).await;
            assert_eq!(outcome.status, atrest::FixStatus::Failed, "{name}");
            assert!(outcome.message.starts_with("Nothing was changed") && outcome.message.contains(says), "{name}: {}", outcome.message);
            assert_eq!((status.num_calls(), enable.num_calls()), (0, 0), "{name}");
        }
    }
}
