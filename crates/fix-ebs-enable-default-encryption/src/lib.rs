//! `fix-ebs-enable-default-encryption`: turn on EBS encryption by default in this region.
//!
//! Reconciler steps: read `GetEbsEncryptionByDefault` (and, when a key is requested,
//! `GetEbsDefaultKmsKeyId`) → `EnableEbsEncryptionByDefault` if off → `ModifyEbsDefaultKmsKeyId`
//! if a key was requested and differs → read both back; a read-back that does not show the
//! change yet is `InProgress`. Idempotent: a region already in the requested state is reported
//! without any change.
//!
//! The setting only affects volumes created afterwards (and instance types without EBS
//! encryption support can no longer be launched); existing volumes are untouched, which the
//! message says.

use atrest::error::{Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};

pub static SPEC: FixSpec = FixSpec {
    name: "ebs-enable-default-encryption",
    description: "Enable EBS encryption by default in the region (optionally with a default KMS key) and verify it.",
    resource_types: &["AWS::::Account"],
    parameters: &[ParamSpec {
        name: KMS_KEY_PARAM,
        kind: ParamKind::KmsKey,
        default: "",
        description: "Default KMS key for new EBS volumes (key id, key ARN, alias or alias ARN). Empty: leave the default key as it is.",
    }],
    disruptive: false,
};

/// The worker. Tests register a mocked EC2 client on the runner: the stand-in does not implement
/// `GetEbsDefaultKmsKeyId`.
#[derive(Default)]
pub struct EbsEnableDefaultEncryption;

async fn enabled(ec2: &aws_sdk_ec2::Client, account: &str) -> Result<bool> {
    Ok(ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(|e| aws_error("ec2:GetEbsEncryptionByDefault", account, e))?
        .ebs_encryption_by_default()
        .unwrap_or(false))
}

async fn default_key(ec2: &aws_sdk_ec2::Client, account: &str) -> Result<Option<String>> {
    Ok(ec2
        .get_ebs_default_kms_key_id()
        .send()
        .await
        .map_err(|e| aws_error("ec2:GetEbsDefaultKmsKeyId", account, e))?
        .kms_key_id()
        .map(str::to_string))
}

#[async_trait]
impl Fix for EbsEnableDefaultEncryption {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let account = req.resource_id.as_str();
        let ec2 = ctx.client(aws_sdk_ec2::Client::new);
        let wanted_key = match req.params.text(KMS_KEY_PARAM) {
            // Resolving validates that the key exists before anything is changed.
            Some(k) => Some(ctx.kms.requested_key_arn(k).await?),
            None => None,
        };

        let key_ok = |current: &Option<String>| -> bool { wanted_key.is_none() || current.as_deref() == wanted_key.as_deref() };
        let mut changes = Vec::new();
        let is_on = enabled(&ec2, account).await?;
        let mut current_key = match &wanted_key {
            Some(_) => default_key(&ec2, account).await?,
            None => None,
        };
        // The default key may be reported as an alias ARN; compare key ARNs.
        if let (Some(_), Some(k)) = (&wanted_key, &current_key) {
            current_key = Some(ctx.kms.key_arn(k).await?);
        }
        if !is_on {
            changes.push(format!("EBS encryption by default in account {account}: off -> on"));
        }
        if !key_ok(&current_key) {
            let from = current_key.clone().unwrap_or_else(|| "alias/aws/ebs".into());
            changes.push(format!("default EBS KMS key: {from} -> {}", wanted_key.as_deref().unwrap_or_default()));
        }
        if changes.is_empty() {
            let key = current_key.map(|k| format!(" with default key {k}")).unwrap_or_default();
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("EBS encryption by default is already on in this region{key}; nothing was changed."),
            ));
        }
        if req.dry_run {
            let mut outcome = FixOutcome::succeeded(&SPEC, req, format!("Dry run: would set {}. Nothing was changed.", changes.join("; ")));
            outcome.changes = changes;
            return Ok(outcome);
        }
        if !is_on {
            ec2.enable_ebs_encryption_by_default().send().await.map_err(|e| aws_error("ec2:EnableEbsEncryptionByDefault", account, e))?;
        }
        if let Some(key) = wanted_key.as_deref().filter(|_| !key_ok(&current_key)) {
            ec2.modify_ebs_default_kms_key_id()
                .kms_key_id(key)
                .send()
                .await
                .map_err(|e| aws_error("ec2:ModifyEbsDefaultKmsKeyId", account, e))?;
        }

        let now_on = enabled(&ec2, account).await?;
        let mut now_key = match &wanted_key {
            Some(_) => default_key(&ec2, account).await?,
            None => None,
        };
        if let (Some(_), Some(k)) = (&wanted_key, &now_key) {
            now_key = Some(ctx.kms.key_arn(k).await?);
        }
        let mut outcome = if now_on && key_ok(&now_key) {
            let key = now_key.map(|k| format!(" with default key {k}")).unwrap_or_default();
            FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "EBS encryption by default is now on in this region{key} (verified by reading it back). \
                     New volumes will be encrypted; existing volumes were not changed."
                ),
            )
        } else {
            FixOutcome::in_progress(&SPEC, req, "Enabled EBS encryption by default; waiting for EC2 to report it.")
        };
        outcome.changes = changes;
        Ok(outcome)
    }
}
