//! `s3-default-encryption-kms`: every S3 bucket's default encryption is SSE-KMS or DSSE-KMS.
//!
//! Mirrors the managed rule `S3_DEFAULT_ENCRYPTION_KMS`: NON_COMPLIANT unless the bucket's
//! default encryption uses KMS and, when `kmsKeyArns` is set, one of those keys (a bucket that
//! names no key uses the AWS managed key `aws/s3`, which must then be in the list). Unlike
//! `s3-bucket-server-side-encryption-enabled`, a bucket policy that denies unencrypted uploads
//! does not pass: the rule is about the bucket's default, as the managed rule is. The judging
//! code is shared with that rule (`atrest-s3`); so are the sweep and the live item.

use atrest::error::Result;
use atrest::item::ConfigurationItem;
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_s3::{KMS_ALGORITHMS, RESOURCE_TYPE, Requirement};

pub static SPEC: RuleSpec = RuleSpec {
    name: "s3-default-encryption-kms",
    description: "S3 buckets default to SSE-KMS or DSSE-KMS; optionally with one of the approved KMS keys (aws/s3 when a bucket names none).",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[ParamSpec {
        name: "kmsKeyArns",
        kind: ParamKind::List,
        default: "",
        description: "Comma-separated approved KMS keys (key ARNs, key ids, aliases or alias ARNs). Empty: any KMS key.",
    }],
    mirrors: Some("S3_DEFAULT_ENCRYPTION_KMS"),
    fix: Some("s3-enable-default-encryption"),
};

pub struct S3DefaultEncryptionKms;

#[async_trait]
impl ConfigRule for S3DefaultEncryptionKms {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        // Config always records supplementary configuration for buckets; without any, the item
        // was trimmed and cannot say whether encryption is off.
        item.supplementary_configuration.is_empty()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let keys = ctx.params.list("kmsKeyArns");
        atrest_s3::judge_default_encryption(ctx, item, &Requirement { accepted: KMS_ALGORITHMS, keys, policy_may_substitute: false }).await
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        atrest_s3::regional_buckets(ctx).await
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, bucket: &str) -> Result<Option<ConfigurationItem>> {
        atrest_s3::bucket_item(ctx, bucket).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use atrest_s3::testing::{KEY, OTHER_KEY, item, with_default_encryption};
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::{Value, json};

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        S3DefaultEncryptionKms.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let deny_policy = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#;
        let cases: Vec<(&str, Value, ConfigurationItem, Compliance, &str)> = vec![
            (
                "no default encryption",
                json!({}),
                item(json!({"BucketPolicy": {"policyText": null}})),
                Compliance::NonCompliant,
                "no default",
            ),
            ("SSE-S3", json!({}), with_default_encryption("AES256", None), Compliance::NonCompliant, "AES256"),
            ("SSE-KMS, AWS managed key", json!({}), with_default_encryption("aws:kms", None), Compliance::Compliant, "aws/s3"),
            ("SSE-KMS, customer key", json!({}), with_default_encryption("aws:kms", Some(KEY)), Compliance::Compliant, KEY),
            ("DSSE-KMS", json!({}), with_default_encryption("aws:kms:dsse", Some(KEY)), Compliance::Compliant, "aws:kms:dsse"),
            (
                "approved key",
                json!({"kmsKeyArns": format!("{OTHER_KEY},{KEY}")}),
                with_default_encryption("aws:kms", Some(KEY)),
                Compliance::Compliant,
                KEY,
            ),
            (
                "unapproved key",
                json!({"kmsKeyArns": OTHER_KEY}),
                with_default_encryption("aws:kms", Some(KEY)),
                Compliance::NonCompliant,
                "not in kmsKeyArns",
            ),
            // A bucket that names no key uses aws/s3: in the list by that alias it passes without a
            // call (by key ARN, DescribeKey resolves it: tests/s3_rule.rs, on the stand-in).
            (
                "aws/s3 named by alias",
                json!({"kmsKeyArns": "alias/aws/s3"}),
                with_default_encryption("aws:kms", None),
                Compliance::Compliant,
                "aws/s3",
            ),
            // The managed rule judges the default, not what a policy forces on uploads.
            (
                "deny policy is not a default",
                json!({}),
                item(json!({"BucketPolicy": {"policyText": deny_policy}})),
                Compliance::NonCompliant,
                "no default",
            ),
        ];
        for (name, params, item, expected, says) in cases {
            let verdict = judge(params, &item).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(says), "{name}: {}", verdict.annotation);
        }
    }
}
