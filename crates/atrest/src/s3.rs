//! What every S3 rule needs from S3 itself: the buckets of this Region, and each bucket's
//! policy as its configuration item carries it.

use serde_json::Value;

use crate::error::{Result, aws_error};
use crate::item::{ConfigurationItem, field};

/// The names of the account's buckets in `region`. Config records each bucket in its own Region,
/// so a regional rule judges only those. ListBuckets names each bucket's Region
/// (`BucketRegion`); GetBucketLocation answers for the buckets where it does not.
pub async fn regional_buckets(s3: &aws_sdk_s3::Client, region: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pages = s3.list_buckets().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("s3:ListAllMyBuckets", "the account's buckets", e))?;
        for bucket in page.buckets() {
            let Some(name) = bucket.name() else { continue };
            let bucket_region = match bucket.bucket_region() {
                Some(r) => r.to_string(),
                None => bucket_location(s3, name).await?,
            };
            if bucket_region == region {
                found.push(name.to_string());
            }
        }
    }
    Ok(found)
}

/// `GetBucketLocation` answers an empty constraint for us-east-1 and `EU` for the oldest buckets.
pub async fn bucket_location(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<String> {
    let out = s3.get_bucket_location().bucket(bucket).send().await.map_err(|e| aws_error("s3:GetBucketLocation", bucket, e))?;
    Ok(match out.location_constraint().map(|c| c.as_str()) {
        None | Some("") => "us-east-1".to_string(),
        Some("EU") => "eu-west-1".to_string(),
        Some(other) => other.to_string(),
    })
}

/// The bucket policy an item carries in `supplementaryConfiguration.BucketPolicy.policyText`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemPolicy {
    /// `policyText` is null or absent: the bucket has no policy.
    None,
    /// The policy document's text.
    Text(String),
    /// The entry is there but not in a shape Config writes.
    Unreadable(String),
}

pub fn item_bucket_policy(item: &ConfigurationItem) -> ItemPolicy {
    let Some(entry) = item.supplementary("BucketPolicy") else { return ItemPolicy::None };
    if !entry.is_object() {
        return ItemPolicy::Unreadable(format!("BucketPolicy is {}", kind(entry)));
    }
    match field(entry, "policyText") {
        None => ItemPolicy::None,
        Some(Value::String(s)) if s.trim().is_empty() => ItemPolicy::None,
        Some(Value::String(s)) => ItemPolicy::Text(s.clone()),
        // The history API nests documents; an already-parsed policy is its own text.
        Some(doc @ Value::Object(_)) => ItemPolicy::Text(doc.to_string()),
        Some(other) => ItemPolicy::Unreadable(format!("policyText is {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(supplementary: Value) -> ConfigurationItem {
        let mut item = ConfigurationItem::live("AWS::S3::Bucket", "b", json!({"name": "b"}));
        item.supplementary_configuration = supplementary.as_object().unwrap().clone();
        item
    }

    #[test]
    fn reads_the_policy_in_every_shape_config_writes() {
        assert_eq!(item_bucket_policy(&item(json!({}))), ItemPolicy::None);
        assert_eq!(item_bucket_policy(&item(json!({"BucketPolicy": null}))), ItemPolicy::None);
        assert_eq!(item_bucket_policy(&item(json!({"BucketPolicy": {"policyText": null}}))), ItemPolicy::None);
        assert_eq!(item_bucket_policy(&item(json!({"BucketPolicy": {}}))), ItemPolicy::None);
        assert_eq!(item_bucket_policy(&item(json!({"BucketPolicy": {"policyText": "{\"a\":1}"}}))), ItemPolicy::Text("{\"a\":1}".into()));
        assert_eq!(item_bucket_policy(&item(json!({"bucketPolicy": {"PolicyText": {"a": 1}}}))), ItemPolicy::Text("{\"a\":1}".into()));
        assert!(matches!(item_bucket_policy(&item(json!({"BucketPolicy": {"policyText": 7}}))), ItemPolicy::Unreadable(_)));
        assert!(matches!(item_bucket_policy(&item(json!({"BucketPolicy": "{not json"}))), ItemPolicy::Unreadable(_)));
    }
}
