//! `s3-bucket-ssl-requests-only`: every S3 bucket's policy denies requests that do not use
//! SSL/TLS.
//!
//! Mirrors the managed rule `S3_BUCKET_SSL_REQUESTS_ONLY`: COMPLIANT only when the bucket policy
//! has an explicit `Deny` for `aws:SecureTransport = false` covering the bucket ARN and its
//! objects, for every principal and every S3 action (`atrest::policy::ssl_only` says exactly
//! which spellings count). An `Allow` conditioned on `true` is not enough: other statements, or
//! IAM policies, can still allow plain HTTP, and only an explicit Deny overrides every Allow.
//!
//! Change notifications carry the policy in `supplementaryConfiguration.BucketPolicy.policyText`,
//! so a change is judged from the item alone. Periodic sweeps list the buckets of the current
//! Region and read each policy with GetBucketPolicy.

use atrest::error::Result;
use atrest::item::ConfigurationItem;
use atrest::policy::{Policy, bucket_arn, ssl_only};
use atrest::rule::TriggerKind;
use atrest::s3::{ItemPolicy, item_bucket_policy};
use atrest::{ConfigRule, Discovered, RuleContext, RuleSpec, Verdict, async_trait};

pub use atrest_s3::RESOURCE_TYPE;

pub static SPEC: RuleSpec = RuleSpec {
    name: "s3-bucket-ssl-requests-only",
    description: "S3 bucket policies explicitly deny requests that do not use SSL/TLS, to the bucket and its objects, for everyone.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[],
    mirrors: Some("S3_BUCKET_SSL_REQUESTS_ONLY"),
    fix: Some("s3-restrict-ssl-requests-only"),
};

pub struct S3BucketSslRequestsOnly;

/// The bucket's ARN: the item's own when it has one (its partition), else the commercial one.
fn arn_of(item: &ConfigurationItem) -> String {
    match item.arn.as_deref() {
        Some(arn) if arn.starts_with("arn:") && arn.contains(":s3:::") => arn.to_string(),
        _ => bucket_arn(item.aws_region.as_deref().unwrap_or(""), &item.resource_id),
    }
}

/// The verdict for a policy text (or none).
pub fn judge_policy(policy: &ItemPolicy, bucket_arn: &str) -> Verdict {
    match policy {
        ItemPolicy::None => Verdict::non_compliant("The bucket has no bucket policy, so requests over plain HTTP are not denied."),
        ItemPolicy::Unreadable(why) => {
            Verdict::non_compliant(format!("The bucket policy in the configuration item cannot be read ({why})."))
        }
        ItemPolicy::Text(text) => match Policy::parse(text) {
            Err(e) => Verdict::non_compliant(format!("The bucket policy cannot be read: {e}")),
            Ok(policy) => {
                let found = ssl_only(&policy, bucket_arn);
                if found.complete() { Verdict::compliant(found.explain()) } else { Verdict::non_compliant(found.explain()) }
            }
        },
    }
}

#[async_trait]
impl ConfigRule for S3BucketSslRequestsOnly {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        // Config always records supplementary configuration for buckets (BucketPolicy with a
        // null policyText when there is none); without any, the item was trimmed.
        item.supplementary_configuration.is_empty()
    }

    async fn judge(&self, _ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        Ok(judge_policy(&item_bucket_policy(item), &arn_of(item)))
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
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::{Value, json};

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(supplementary: Value) -> ConfigurationItem {
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, "b", json!({"name": "b"}));
        item.arn = Some("arn:aws:s3:::b".into());
        item.supplementary_configuration = supplementary.as_object().unwrap().clone();
        item
    }

    fn with_policy(policy: Value) -> ConfigurationItem {
        item(json!({"BucketPolicy": {"policyText": policy.to_string()}}))
    }

    fn deny(principal: Value, action: Value, resource: Value, condition: Value) -> Value {
        json!({"Effect": "Deny", "Principal": principal, "Action": action, "Resource": resource, "Condition": condition})
    }

    async fn judge(item: &ConfigurationItem) -> Verdict {
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&Default::default()).unwrap());
        S3BucketSslRequestsOnly.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let both = json!(["arn:aws:s3:::b", "arn:aws:s3:::b/*"]);
        let fals = json!({"Bool": {"aws:SecureTransport": "false"}});
        let other = json!({"Sid": "CrossAccount", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"});
        let cases: Vec<(&str, ConfigurationItem, Compliance)> = vec![
            ("policyText null", item(json!({"BucketPolicy": {"policyText": null}})), Compliance::NonCompliant),
            ("BucketPolicy absent", item(json!({"IsRequesterPaysEnabled": false})), Compliance::NonCompliant),
            ("not JSON", item(json!({"BucketPolicy": {"policyText": "{{{"}})), Compliance::NonCompliant),
            ("policyText a number", item(json!({"BucketPolicy": {"policyText": 3}})), Compliance::NonCompliant),
            (
                "Statement as object",
                with_policy(json!({"Statement": deny(json!("*"), json!("s3:*"), both.clone(), fals.clone())})),
                Compliance::Compliant,
            ),
            (
                "Statement as array with others",
                with_policy(
                    json!({"Version": "2012-10-17", "Statement": [other.clone(), deny(json!("*"), json!("s3:*"), both.clone(), fals.clone())]}),
                ),
                Compliance::Compliant,
            ),
            (
                "Principal {AWS: *}",
                with_policy(json!({"Statement": [deny(json!({"AWS": "*"}), json!("s3:*"), both.clone(), fals.clone())]})),
                Compliance::Compliant,
            ),
            (
                "Principal {AWS: [*]}",
                with_policy(json!({"Statement": [deny(json!({"AWS": ["*"]}), json!(["s3:*"]), both.clone(), fals.clone())]})),
                Compliance::Compliant,
            ),
            (
                "Action * and Resource *",
                with_policy(json!({"Statement": [deny(json!("*"), json!("*"), json!("*"), fals.clone())]})),
                Compliance::Compliant,
            ),
            (
                "BoolIfExists with a boolean",
                with_policy(
                    json!({"Statement": [deny(json!("*"), json!("s3:*"), both.clone(), json!({"BoolIfExists": {"aws:SecureTransport": false}}))]}),
                ),
                Compliance::Compliant,
            ),
            (
                "value as one-element list",
                with_policy(
                    json!({"Statement": [deny(json!("*"), json!("s3:*"), both.clone(), json!({"Bool": {"aws:SecureTransport": ["false"]}}))]}),
                ),
                Compliance::Compliant,
            ),
            (
                "history shape: parsed document",
                item(json!({"BucketPolicy": {"policyText": {"Statement": deny(json!("*"), json!("s3:*"), both.clone(), fals.clone())}}})),
                Compliance::Compliant,
            ),
            (
                "Allow on true",
                with_policy(
                    json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": both.clone(), "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}),
                ),
                Compliance::NonCompliant,
            ),
            (
                "objects only",
                with_policy(json!({"Statement": [deny(json!("*"), json!("s3:*"), json!("arn:aws:s3:::b/*"), fals.clone())]})),
                Compliance::NonCompliant,
            ),
            (
                "bucket ARN only",
                with_policy(json!({"Statement": [deny(json!("*"), json!("s3:*"), json!("arn:aws:s3:::b"), fals.clone())]})),
                Compliance::NonCompliant,
            ),
            (
                "some principals",
                with_policy(
                    json!({"Statement": [deny(json!({"AWS": ["arn:aws:iam::111122223333:root"]}), json!("s3:*"), both.clone(), fals.clone())]}),
                ),
                Compliance::NonCompliant,
            ),
            (
                "some actions",
                with_policy(json!({"Statement": [deny(json!("*"), json!(["s3:GetObject"]), both.clone(), fals.clone())]})),
                Compliance::NonCompliant,
            ),
            (
                "another bucket",
                with_policy(
                    json!({"Statement": [deny(json!("*"), json!("s3:*"), json!(["arn:aws:s3:::c", "arn:aws:s3:::c/*"]), fals.clone())]}),
                ),
                Compliance::NonCompliant,
            ),
            ("no SSL statement", with_policy(json!({"Statement": [other.clone()]})), Compliance::NonCompliant),
        ];
        for (name, item, expected) in cases {
            let verdict = judge(&item).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(!verdict.annotation.is_empty() && verdict.annotation.len() <= 256, "{name}: {}", verdict.annotation);
        }
    }

    #[tokio::test]
    async fn annotations_say_what_is_missing() {
        let v = judge(&item(json!({"BucketPolicy": {"policyText": null}}))).await;
        assert!(v.annotation.contains("no bucket policy"), "{}", v.annotation);
        let v = judge(&with_policy(json!({"Statement": [deny(json!("*"), json!("s3:*"), json!("arn:aws:s3:::b/*"), json!({"Bool": {"aws:SecureTransport": "false"}}))]}))).await;
        assert!(v.annotation.contains("not to the bucket ARN"), "{}", v.annotation);
        let v = judge(&item(json!({"BucketPolicy": {"policyText": "{{{"}}))).await;
        assert!(v.annotation.contains("cannot be read"), "{}", v.annotation);
    }

    #[test]
    fn a_trimmed_item_asks_for_the_live_policy_and_the_arn_keeps_its_partition() {
        let trimmed = ConfigurationItem::live(RESOURCE_TYPE, "b", json!({}));
        assert!(S3BucketSslRequestsOnly.needs_live_state(&trimmed));
        assert!(!S3BucketSslRequestsOnly.needs_live_state(&item(json!({"BucketPolicy": {"policyText": null}}))));
        let mut cn = trimmed.clone();
        cn.arn = Some("arn:aws-cn:s3:::b".into());
        assert_eq!(arn_of(&cn), "arn:aws-cn:s3:::b");
        cn.arn = None;
        cn.aws_region = Some("cn-north-1".into());
        assert_eq!(arn_of(&cn), "arn:aws-cn:s3:::b");
    }
}
