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

use atrest::clients;
use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_bool, field_str};
use atrest::policy::{Policy, denies_unencrypted_uploads};
use atrest::rule::TriggerKind;
pub use atrest::s3_buckets::bucket_location;
use atrest::s3_buckets::buckets_in_region;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::S3::Bucket";
pub const ALGORITHMS: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];

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

/// The bucket's default encryption, as read from an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultEncryption {
    pub algorithm: String,
    pub kms_key: Option<String>,
    pub bucket_key: bool,
}

/// Reads `ServerSideEncryptionConfiguration` from an item (notification, history or live shape).
pub fn default_encryption(item: &ConfigurationItem) -> Option<DefaultEncryption> {
    let config = item.supplementary("ServerSideEncryptionConfiguration")?;
    let rules = field(config, "rules")?.as_array()?;
    rules.iter().find_map(|rule| {
        let default = field(rule, "applyServerSideEncryptionByDefault")?;
        Some(DefaultEncryption {
            algorithm: field_str(default, "sseAlgorithm")?.to_string(),
            kms_key: field_str(default, "kmsMasterKeyID").filter(|k| !k.is_empty()).map(str::to_string),
            bucket_key: field_bool(rule, "bucketKeyEnabled").unwrap_or(false),
        })
    })
}

fn bucket_policy(item: &ConfigurationItem) -> Option<Policy> {
    let entry = item.supplementary("BucketPolicy")?;
    let text = match field(entry, "policyText")? {
        Value::String(s) => s.clone(),
        doc @ Value::Object(_) => doc.to_string(),
        _ => return None,
    };
    Policy::parse(&text).ok()
}

/// Algorithms that satisfy a required minimum.
fn acceptable(required: Option<&str>, keys_required: bool) -> &'static [&'static str] {
    match (required, keys_required) {
        (Some("aws:kms:dsse"), _) => &["aws:kms:dsse"],
        (Some("aws:kms"), _) | (_, true) => &["aws:kms", "aws:kms:dsse"],
        _ => ALGORITHMS,
    }
}

/// S3 uses the AWS managed key when SSE-KMS names none.
const AWS_MANAGED_S3_KEY: &str = "alias/aws/s3";

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
        let Some(enc) = default_encryption(item) else {
            if keys.is_empty()
                && let Some(policy) = bucket_policy(item)
                && denies_unencrypted_uploads(&policy, &item.resource_id, accepted)
            {
                return Ok(Verdict::compliant("No default encryption, but the bucket policy denies unencrypted uploads."));
            }
            return Ok(Verdict::non_compliant("The bucket has no default encryption."));
        };
        if !accepted.contains(&enc.algorithm.as_str()) {
            return Ok(Verdict::non_compliant(format!(
                "Default encryption is {}, but {} is required.",
                enc.algorithm,
                accepted.join(" or ")
            )));
        }
        if !keys.is_empty() {
            let key = enc.kms_key.as_deref().unwrap_or(AWS_MANAGED_S3_KEY);
            if !ctx.kms.is_one_of(key, keys).await? {
                return Ok(Verdict::non_compliant(format!("Default encryption uses KMS key {key}, which is not in kmsKeyArns.")));
            }
        }
        let with_key = enc.kms_key.map(|k| format!(" with key {k}")).unwrap_or_default();
        Ok(Verdict::compliant(format!("Default encryption is {}{with_key}.", enc.algorithm)))
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let s3 = ctx.client(clients::s3);
        let region = clients::region_name(&ctx.sdk);
        let found = buckets_in_region(&s3, &region).await?;
        Ok(found.into_iter().map(|name| Discovered::Id { resource_type: RESOURCE_TYPE.into(), resource_id: name }).collect())
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, bucket: &str) -> Result<Option<ConfigurationItem>> {
        let s3 = ctx.client(clients::s3);
        let encryption = match s3.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => out.server_side_encryption_configuration().map(encryption_json),
            Err(e) => {
                let err = aws_error("s3:GetEncryptionConfiguration", bucket, e);
                match err.aws_code() {
                    Some("ServerSideEncryptionConfigurationNotFoundError") => None,
                    Some("NoSuchBucket") => return Ok(None),
                    _ => return Err(err),
                }
            }
        };
        let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => out.policy().map(str::to_string),
            Err(e) => {
                let err = aws_error("s3:GetBucketPolicy", bucket, e);
                match err.aws_code() {
                    Some("NoSuchBucketPolicy") => None,
                    Some("NoSuchBucket") => return Ok(None),
                    _ => return Err(err),
                }
            }
        };
        let tags = match s3.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
            Err(e) => {
                let err = aws_error("s3:GetBucketTagging", bucket, e);
                match err.aws_code() {
                    Some("NoSuchTagSet") => Default::default(),
                    Some("NoSuchBucket") => return Ok(None),
                    _ => return Err(err),
                }
            }
        };
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, bucket, json!({ "name": bucket }));
        item.resource_name = Some(bucket.to_string());
        item.arn = Some(format!("arn:aws:s3:::{bucket}"));
        item.tags = tags;
        if let Some(enc) = encryption {
            item.supplementary_configuration.insert("ServerSideEncryptionConfiguration".into(), enc);
        }
        item.supplementary_configuration.insert("BucketPolicy".into(), json!({ "policyText": policy }));
        Ok(Some(item))
    }
}

/// Converts the API's encryption configuration into the item's shape.
pub fn encryption_json(config: &aws_sdk_s3::types::ServerSideEncryptionConfiguration) -> Value {
    let rules: Vec<Value> = config
        .rules()
        .iter()
        .map(|rule| {
            let default = rule
                .apply_server_side_encryption_by_default()
                .map(|d| json!({ "sseAlgorithm": d.sse_algorithm().as_str(), "kmsMasterKeyID": d.kms_master_key_id() }));
            json!({ "applyServerSideEncryptionByDefault": default, "bucketKeyEnabled": rule.bucket_key_enabled().unwrap_or(false) })
        })
        .collect();
    json!({ "rules": rules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(supplementary: Value) -> ConfigurationItem {
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, "b", json!({"name": "b"}));
        item.supplementary_configuration = supplementary.as_object().unwrap().clone();
        item
    }

    fn sse(algorithm: &str, key: Option<&str>) -> Value {
        json!({"ServerSideEncryptionConfiguration": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm, "kmsMasterKeyID": key}, "bucketKeyEnabled": true}]}, "BucketPolicy": {"policyText": null}})
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        S3BucketServerSideEncryptionEnabled.judge(&ctx, item).await.unwrap()
    }

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

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

    #[test]
    fn reads_the_history_shape_too() {
        // GetResourceConfigHistory spells fields differently and nests JSON strings.
        let it = item(
            json!({"ServerSideEncryptionConfiguration": {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}, "BucketKeyEnabled": true}]}}),
        );
        assert_eq!(
            default_encryption(&it),
            Some(DefaultEncryption { algorithm: "aws:kms".into(), kms_key: Some(KEY.into()), bucket_key: true })
        );
    }
}
