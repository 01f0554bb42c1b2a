//! What atrest's S3 rules share (a library, so no Lambda crate depends on another): a bucket's
//! default encryption and policy read from a configuration item (notification, history or live
//! shape), the live item built from the S3 API for sweeps and trimmed items, the region's
//! buckets, and the default-encryption judgement `s3-bucket-server-side-encryption-enabled` and
//! `s3-default-encryption-kms` both make, each with its own requirement.

pub mod objects;

use atrest::clients;
use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_bool, field_str};
use atrest::policy::{Policy, denies_unencrypted_uploads};
use atrest::{Discovered, RuleContext, Verdict};
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::S3::Bucket";
/// Default-encryption algorithms, weakest first.
pub const ALGORITHMS: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];
/// The KMS algorithms: SSE-KMS and DSSE-KMS.
pub const KMS_ALGORITHMS: &[&str] = &["aws:kms", "aws:kms:dsse"];
/// S3 uses the AWS managed key when SSE-KMS names none.
pub const AWS_MANAGED_S3_KEY: &str = "alias/aws/s3";

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

/// The bucket policy the item carries (`supplementaryConfiguration.BucketPolicy.policyText`).
/// No policy, or text that is not a policy, is `None`.
pub fn bucket_policy(item: &ConfigurationItem) -> Option<Policy> {
    match atrest::s3::item_bucket_policy(item) {
        atrest::s3::ItemPolicy::Text(text) => Policy::parse(&text).ok(),
        _ => None,
    }
}

/// What a rule requires of a bucket's default encryption.
pub struct Requirement<'a> {
    /// Algorithms that pass.
    pub accepted: &'a [&'a str],
    /// Approved KMS keys (any spelling); empty accepts any key.
    pub keys: &'a [String],
    /// Whether a bucket policy that denies unencrypted uploads passes in place of default
    /// encryption (the managed rule S3_BUCKET_SERVER_SIDE_ENCRYPTION_ENABLED accepts it; with
    /// approved keys it cannot, since the policy names no key).
    pub policy_may_substitute: bool,
}

/// The verdict on a bucket's default encryption. Calls AWS only to resolve key aliases.
pub async fn judge_default_encryption(ctx: &RuleContext, item: &ConfigurationItem, req: &Requirement<'_>) -> Result<Verdict> {
    let Some(enc) = default_encryption(item) else {
        if req.policy_may_substitute
            && req.keys.is_empty()
            && let Some(policy) = bucket_policy(item)
            && denies_unencrypted_uploads(&policy, &item.resource_id, req.accepted)
        {
            return Ok(Verdict::compliant("No default encryption, but the bucket policy denies unencrypted uploads."));
        }
        return Ok(Verdict::non_compliant("The bucket has no default encryption."));
    };
    if !req.accepted.contains(&enc.algorithm.as_str()) {
        return Ok(Verdict::non_compliant(format!(
            "Default encryption is {}, but {} is required.",
            enc.algorithm,
            req.accepted.join(" or ")
        )));
    }
    if !req.keys.is_empty() {
        let key = enc.kms_key.as_deref().unwrap_or(AWS_MANAGED_S3_KEY);
        if !ctx.kms.is_one_of(key, req.keys).await? {
            return Ok(Verdict::non_compliant(format!("Default encryption uses KMS key {key}, which is not in kmsKeyArns.")));
        }
    }
    let with_key = match (&enc.kms_key, KMS_ALGORITHMS.contains(&enc.algorithm.as_str())) {
        (Some(k), _) => format!(" with key {k}"),
        (None, true) => format!(" with the AWS managed key {AWS_MANAGED_S3_KEY}"),
        (None, false) => String::new(),
    };
    Ok(Verdict::compliant(format!("Default encryption is {}{with_key}.", enc.algorithm)))
}

/// The buckets of the rule's region (Config records each bucket in its own region).
pub async fn regional_buckets(ctx: &RuleContext) -> Result<Vec<Discovered>> {
    let s3 = ctx.client(clients::s3);
    let names = atrest::s3::regional_buckets(&s3, &clients::region_name(&ctx.sdk)).await?;
    Ok(names.into_iter().map(|name| Discovered::Id { resource_type: RESOURCE_TYPE.into(), resource_id: name }).collect())
}

/// The bucket as the encryption rules need it: [`bucket_item`] plus its default encryption.
/// (Two functions, not a flag: the least-privilege test follows calls function by function, so
/// the SSL-only rule's role needs no GetEncryptionConfiguration.)
pub async fn bucket_item_with_encryption(ctx: &RuleContext, bucket: &str) -> Result<Option<ConfigurationItem>> {
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
    let Some(mut item) = bucket_item(ctx, bucket).await? else { return Ok(None) };
    if let Some(enc) = encryption {
        item.supplementary_configuration.insert("ServerSideEncryptionConfiguration".into(), enc);
    }
    Ok(Some(item))
}

/// The bucket as a configuration item built from the S3 API, in the notification's shape: its
/// policy in `supplementaryConfiguration` and its tags (the runner exempts buckets by tag).
/// `None` when the bucket is gone.
pub async fn bucket_item(ctx: &RuleContext, bucket: &str) -> Result<Option<ConfigurationItem>> {
    let s3 = ctx.client(clients::s3);
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
    let region = clients::region_name(&ctx.sdk);
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, bucket, json!({ "name": bucket }));
    item.resource_name = Some(bucket.to_string());
    item.arn = Some(atrest::policy::bucket_arn(&region, bucket));
    item.aws_region = Some(region);
    item.tags = tags;
    item.supplementary_configuration.insert("BucketPolicy".into(), json!({ "policyText": policy }));
    Ok(Some(item))
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

/// Item builders for the S3 rules' verdict tables.
pub mod testing {
    use super::*;

    pub fn item(supplementary: Value) -> ConfigurationItem {
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, "b", json!({"name": "b"}));
        item.supplementary_configuration = supplementary.as_object().cloned().unwrap_or_default();
        item
    }

    /// A bucket item with default encryption `algorithm` (and key) and no policy.
    pub fn with_default_encryption(algorithm: &str, key: Option<&str>) -> ConfigurationItem {
        item(
            json!({"ServerSideEncryptionConfiguration": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm, "kmsMasterKeyID": key}, "bucketKeyEnabled": true}]}, "BucketPolicy": {"policyText": null}}),
        )
    }

    pub const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    pub const OTHER_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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

    #[test]
    fn a_null_or_garbage_policy_is_no_policy() {
        assert!(bucket_policy(&item(json!({"BucketPolicy": {"policyText": null}}))).is_none());
        assert!(bucket_policy(&item(json!({"BucketPolicy": {"policyText": "{{{"}}))).is_none());
        assert!(bucket_policy(&item(json!({}))).is_none());
    }
}
