//! The buckets a regional S3 rule judges: those of the account in the function's region.

use crate::error::{Result, aws_error};

/// Names of the account's buckets in `region`. Config records each bucket in its own region; a
/// regional rule judges only those.
pub async fn buckets_in_region(s3: &aws_sdk_s3::Client, region: &str) -> Result<Vec<String>> {
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
