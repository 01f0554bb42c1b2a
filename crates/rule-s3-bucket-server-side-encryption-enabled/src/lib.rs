//! `s3-bucket-server-side-encryption-enabled`: every S3 bucket has default encryption.
//!
//! Mirrors the managed rule `S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED` (a bucket whose policy
//! denies unencrypted uploads also passes) and adds what security teams actually need since S3
//! began applying SSE-S3 to every new bucket in January 2023: `requiredAlgorithm` (e.g. insist on
//! SSE-KMS) and `kmsKeyArns` (insist on specific keys, as `S3_DEFAULT_ENCRYPTION_KMS` does).
//!
//! Change notifications carry the bucket's encryption and policy in `supplementaryConfiguration`,
//! so a change is judged without calling AWS (except to resolve key aliases). Periodic sweeps
//! list the buckets of the current region and read their state.

use atrest::error::Result;
use atrest::item::ConfigurationItem;
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_s3::{ALGORITHMS, KMS_ALGORITHMS, RESOURCE_TYPE, Requirement};

pub static SPEC: RuleSpec = RuleSpec {
    name: "s3-bucket-server-side-encryption-enabled",
    description: "S3 buckets have default encryption; optionally a minimum algorithm and an approved KMS key list.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[
        ParamSpec {
            name: "requiredAlgorithm",
            kind: ParamKind::OneOf(ALGORITHMS),
            default: "",
            description: "Minimum default encryption: AES256 (any), aws:kms (SSE-KMS or DSSE-KMS) or aws:kms:dsse. Empty: any.",
        },
        ParamSpec {
            name: "kmsKeyArns",
            kind: ParamKind::List,
            default: "",
            description: "Comma-separated approved KMS keys (key ARNs, key ids, aliases or alias ARNs). Implies SSE-KMS.",
        },
    ],
    mirrors: Some("S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED"),
    fix: Some("s3-enable-default-encryption"),
};

/// Algorithms that satisfy a required minimum.
fn acceptable(required: Option<&str>, keys_required: bool) -> &'static [&'static str] {
    match (required, keys_required) {
        (Some("aws:kms:dsse"), _) => &["aws:kms:dsse"],
        (Some("aws:kms"), _) | (_, true) => KMS_ALGORITHMS,
        _ => ALGORITHMS,
    }
}

pub struct S3BucketServerSideEncryptionEnabled;

#[async_trait]
impl ConfigRule for S3BucketServerSideEncryptionEnabled {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        // Config always records supplementary configuration for buckets; without any, the item
        // was trimmed and cannot say whether encryption is off.
        item.supplementary_configuration.is_empty()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let required = ctx.params.text("requiredAlgorithm");
        let keys = ctx.params.list("kmsKeyArns");
        let accepted = acceptable(required, !keys.is_empty());
        atrest_s3::judge_default_encryption(ctx, item, &Requirement { accepted, keys, policy_may_substitute: true }).await
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
    use atrest_s3::testing::{KEY, OTHER_KEY as OTHER, item};
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::{Value, json};

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn sse(algorithm: &str, key: Option<&str>) -> Value {
        json!({"ServerSideEncryptionConfiguration": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm, "kmsMasterKeyID": key}, "bucketKeyEnabled": true}]}, "BucketPolicy": {"policyText": null}})
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        S3BucketServerSideEncryptionEnabled.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let deny_policy = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#;
        let cases: Vec<(&str, Value, Value, Compliance)> = vec![
            ("no encryption", json!({}), json!({"BucketPolicy": {"policyText": null}}), Compliance::NonCompliant),
            ("SSE-S3, any algorithm", json!({}), sse("AES256", None), Compliance::Compliant),
            ("SSE-S3 when KMS required", json!({"requiredAlgorithm": "aws:kms"}), sse("AES256", None), Compliance::NonCompliant),
            ("DSSE satisfies KMS", json!({"requiredAlgorithm": "aws:kms"}), sse("aws:kms:dsse", Some(KEY)), Compliance::Compliant),
            (
                "KMS does not satisfy DSSE",
                json!({"requiredAlgorithm": "aws:kms:dsse"}),
                sse("aws:kms", Some(KEY)),
                Compliance::NonCompliant,
            ),
            ("approved key", json!({"kmsKeyArns": format!("{OTHER}, {KEY}")}), sse("aws:kms", Some(KEY)), Compliance::Compliant),
            ("unapproved key", json!({"kmsKeyArns": OTHER}), sse("aws:kms", Some(KEY)), Compliance::NonCompliant),
            ("key list implies KMS", json!({"kmsKeyArns": KEY}), sse("AES256", None), Compliance::NonCompliant),
            (
                "deny policy instead of default",
                json!({"requiredAlgorithm": "aws:kms"}),
                json!({"BucketPolicy": {"policyText": deny_policy}}),
                Compliance::Compliant,
            ),
            (
                "deny policy is not a key list",
                json!({"kmsKeyArns": KEY}),
                json!({"BucketPolicy": {"policyText": deny_policy}}),
                Compliance::NonCompliant,
            ),
            ("garbage policy", json!({}), json!({"BucketPolicy": {"policyText": "{{{"}}), Compliance::NonCompliant),
        ];
        for (name, params, supplementary, expected) in cases {
            let verdict = judge(params, &item(supplementary)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(!verdict.annotation.is_empty(), "{name}");
        }
    }
}
