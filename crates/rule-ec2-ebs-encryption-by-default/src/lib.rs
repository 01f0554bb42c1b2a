//! `ec2-ebs-encryption-by-default`: EBS encryption by default is on in this region.
//!
//! Mirrors the managed rule `EC2_EBS_ENCRYPTION_BY_DEFAULT`: periodic only (the setting is not a
//! recorded resource, so there is no change notification), one evaluation per region on the
//! account (`AWS::::Account`, resource id = the account id). Adds `kmsKeyId`: when set, the
//! region's default EBS key must also be that key, so new volumes land on the key the
//! organisation manages.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field_bool, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use serde_json::json;

pub const RESOURCE_TYPE: &str = "AWS::::Account";

pub static SPEC: RuleSpec = RuleSpec {
    name: "ec2-ebs-encryption-by-default",
    description: "EBS encryption by default is enabled in the region (optionally with a given default KMS key).",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::Periodic],
    parameters: &[ParamSpec {
        name: "kmsKeyId",
        kind: ParamKind::KmsKey,
        default: "",
        description: "KMS key (key id, key ARN, alias or alias ARN) that must be the region's default EBS key. Empty: any.",
    }],
    mirrors: Some("EC2_EBS_ENCRYPTION_BY_DEFAULT"),
    fix: Some("ebs-enable-default-encryption"),
};

/// Without a customer key, EBS uses (and `GetEbsDefaultKmsKeyId` may report) the AWS managed key.
pub const AWS_MANAGED_EBS_KEY: &str = "alias/aws/ebs";

/// The rule. Tests register a mocked EC2 client on the runner: the stand-in does not implement
/// `GetEbsDefaultKmsKeyId`.
#[derive(Default)]
pub struct Ec2EbsEncryptionByDefault;

impl Ec2EbsEncryptionByDefault {
    async fn account_id(&self, ctx: &RuleContext) -> Result<String> {
        // GetCallerIdentity needs no permission.
        let out = ctx
            .client(aws_sdk_sts::Client::new)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| aws_error("sts:GetCallerIdentity", "the caller", e))?;
        out.account().map(str::to_string).ok_or_else(|| atrest::Error::Internal("GetCallerIdentity returned no account".into()))
    }
}

/// Reads the region's setting (and, when `with_key`, its default key) into an item.
pub async fn account_item(ec2: &aws_sdk_ec2::Client, account_id: &str, with_key: bool) -> Result<ConfigurationItem> {
    let enabled = ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(|e| aws_error("ec2:GetEbsEncryptionByDefault", account_id, e))?
        .ebs_encryption_by_default()
        .unwrap_or(false);
    let key = if with_key {
        ec2.get_ebs_default_kms_key_id()
            .send()
            .await
            .map_err(|e| aws_error("ec2:GetEbsDefaultKmsKeyId", account_id, e))?
            .kms_key_id()
            .map(str::to_string)
    } else {
        None
    };
    Ok(ConfigurationItem::live(RESOURCE_TYPE, account_id, json!({ "ebsEncryptionByDefault": enabled, "ebsDefaultKmsKeyId": key })))
}

#[async_trait]
impl ConfigRule for Ec2EbsEncryptionByDefault {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        if !field_bool(&item.configuration, "ebsEncryptionByDefault").unwrap_or(false) {
            return Ok(Verdict::non_compliant("EBS encryption by default is off in this region: new volumes may be created unencrypted."));
        }
        let Some(required) = ctx.params.text("kmsKeyId") else {
            return Ok(Verdict::compliant("EBS encryption by default is on in this region."));
        };
        let key = field_str(&item.configuration, "ebsDefaultKmsKeyId").filter(|k| !k.is_empty()).unwrap_or(AWS_MANAGED_EBS_KEY);
        if ctx.kms.is_one_of(key, &[required.to_string()]).await? {
            Ok(Verdict::compliant(format!("EBS encryption by default is on in this region with default key {key}.")))
        } else {
            Ok(Verdict::non_compliant(format!("EBS encryption by default is on, but the default key is {key}, not {required}.")))
        }
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let account_id = self.account_id(ctx).await?;
        let item = account_item(&ctx.client(aws_sdk_ec2::Client::new), &account_id, ctx.params.text("kmsKeyId").is_some()).await?;
        Ok(vec![Discovered::Item(item)])
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, account_id: &str) -> Result<Option<ConfigurationItem>> {
        Ok(Some(account_item(&ctx.client(aws_sdk_ec2::Client::new), account_id, ctx.params.text("kmsKeyId").is_some()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::Value;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    async fn judge(params: Value, configuration: Value) -> Verdict {
        let sdk = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build();
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk, SPEC.parse_params(&raw).unwrap());
        let item = ConfigurationItem::live(RESOURCE_TYPE, "123456789012", configuration);
        Ec2EbsEncryptionByDefault.judge(&ctx, &item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let cases = [
            (json!({}), json!({"ebsEncryptionByDefault": false}), Compliance::NonCompliant),
            (json!({}), json!({"ebsEncryptionByDefault": true}), Compliance::Compliant),
            (json!({"kmsKeyId": KEY}), json!({"ebsEncryptionByDefault": false, "ebsDefaultKmsKeyId": KEY}), Compliance::NonCompliant),
            (json!({"kmsKeyId": KEY}), json!({"ebsEncryptionByDefault": true, "ebsDefaultKmsKeyId": KEY}), Compliance::Compliant),
            (json!({"kmsKeyId": OTHER}), json!({"ebsEncryptionByDefault": true, "ebsDefaultKmsKeyId": KEY}), Compliance::NonCompliant),
        ];
        for (params, configuration, expected) in cases {
            let verdict = judge(params.clone(), configuration.clone()).await;
            assert_eq!(verdict.compliance, expected, "{params} {configuration}: {}", verdict.annotation);
        }
    }
}
