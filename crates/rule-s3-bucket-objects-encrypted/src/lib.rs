//! `s3-bucket-objects-encrypted` (periodic): a bucket holds no object without server-side
//! encryption (with `requireKms`: none outside SSE-KMS/DSSE-KMS).
//!
//! Default encryption covers new writes only; objects stored before it stay unencrypted until
//! rewritten, and no AWS managed rule looks at them. This rule lists up to
//! `maxObjectsPerBucket` objects of each bucket (in key order) and checks each one: an object
//! written on or after 2023-01-05 is encrypted (S3 encrypts every new object since), so when any
//! SSE will do its listing entry decides; any other object costs one `HeadObject`. The fix,
//! `s3-encrypt-existing-objects`, copies the rest onto themselves encrypted.
//!
//! Periodic only: a configuration item says nothing about objects.

use atrest::clients;
use atrest::error::{Result, aws_error};
use atrest::item::ConfigurationItem;
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_s3::objects::{ObjectState, Required, is_compliant};
use futures::stream::{self, StreamExt};
use serde_json::json;

pub const RESOURCE_TYPE: &str = "AWS::S3::Bucket";

/// Objects checked at once within one bucket (the sweep also runs buckets concurrently).
const HEAD_CONCURRENCY: usize = 16;

pub static SPEC: RuleSpec = RuleSpec {
    name: "s3-bucket-objects-encrypted",
    description: "S3 buckets hold no objects without server-side encryption (checks up to maxObjectsPerBucket objects per bucket).",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::Periodic],
    parameters: &[
        ParamSpec {
            name: "maxObjectsPerBucket",
            kind: ParamKind::Integer { min: 1, max: 100_000 },
            default: "1000",
            description: "Objects checked per bucket, in key order (each one written before 2023-01-05 costs a HeadObject).",
        },
        ParamSpec {
            name: "requireKms",
            kind: ParamKind::Bool,
            default: "false",
            description: "true: objects must be under SSE-KMS or DSSE-KMS; SSE-S3 and SSE-C objects fail.",
        },
    ],
    mirrors: None,
    fix: Some("s3-encrypt-existing-objects"),
};

/// What a check of one bucket found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub checked: u64,
    pub failed: u64,
    /// The bucket holds more objects than were checked.
    pub more: bool,
    /// One failing key, for the annotation.
    pub example: Option<String>,
}

/// The verdict for what was found (pure).
pub fn verdict(counts: &Counts, require_kms: bool) -> Verdict {
    let what = if require_kms { "not under SSE-KMS" } else { "without server-side encryption" };
    let scope = if counts.more {
        format!("the first {} objects (in key order)", counts.checked)
    } else {
        format!("all {} objects", counts.checked)
    };
    if counts.checked == 0 {
        return Verdict::compliant("The bucket holds no objects.");
    }
    if counts.failed == 0 {
        let kind = if require_kms { "under SSE-KMS" } else { "encrypted" };
        return Verdict::compliant(format!("Checked {scope}: every one is {kind}."));
    }
    let example = counts.example.as_deref().map(|k| format!(" e.g. {:?}.", k.chars().take(60).collect::<String>())).unwrap_or_default();
    Verdict::non_compliant(format!("{} of {scope} checked are {what}.{example}", counts.failed))
}

pub struct S3BucketObjectsEncrypted;

/// One object: `Some((key, encrypted as required))`, `None` when it is gone.
async fn check_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    required: &Required,
    object: aws_sdk_s3::types::Object,
) -> Result<Option<(String, bool)>> {
    let Some(key) = object.key() else { return Ok(None) };
    if required.met_by_listing(object.last_modified()) {
        return Ok(Some((key.to_string(), true)));
    }
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => {
            let state = ObjectState {
                sse: head.server_side_encryption().map(|s| s.as_str().to_string()),
                kms_key: head.ssekms_key_id().map(str::to_string),
                sse_c: head.sse_customer_algorithm().is_some(),
                ..Default::default()
            };
            Ok(Some((key.to_string(), is_compliant(&state, required, true))))
        }
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            // Deleted since the listing.
            Some(404) => Ok(None),
            // SSE-C: HeadObject without the customer's key answers 400.
            Some(400) => Ok(Some((key.to_string(), matches!(required, Required::AnySse)))),
            _ => Err(aws_error("s3:GetObject", format!("s3://{bucket}/{key}"), e)),
        },
    }
}

impl S3BucketObjectsEncrypted {
    async fn check(&self, s3: &aws_sdk_s3::Client, bucket: &str, max: u64, required: &Required) -> Result<Counts> {
        let mut counts = Counts::default();
        let mut token = None;
        loop {
            let remaining = max - counts.checked;
            let page = s3
                .list_objects_v2()
                .bucket(bucket)
                .max_keys(remaining.min(1000) as i32)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| aws_error("s3:ListBucket", bucket, e))?;
            let checks = stream::iter(page.contents().iter().cloned())
                .map(|object| check_object(s3, bucket, required, object))
                .buffered(HEAD_CONCURRENCY)
                .collect::<Vec<Result<Option<(String, bool)>>>>()
                .await;
            for check in checks {
                if let Some((key, ok)) = check? {
                    counts.checked += 1;
                    if !ok {
                        counts.failed += 1;
                        counts.example.get_or_insert(key);
                    }
                }
            }
            let next = page.next_continuation_token().filter(|_| page.is_truncated() == Some(true)).map(str::to_string);
            match next {
                Some(t) if counts.checked < max => token = Some(t),
                Some(_) => {
                    counts.more = true;
                    return Ok(counts);
                }
                None => return Ok(counts),
            }
        }
    }
}

#[async_trait]
impl ConfigRule for S3BucketObjectsEncrypted {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let max = ctx.params.integer("maxObjectsPerBucket").unwrap_or(1000).max(1) as u64;
        let require_kms = ctx.params.bool("requireKms");
        let required = if require_kms { Required::Kms { key_arn: None } } else { Required::AnySse };
        let s3 = ctx.client(clients::s3);
        let counts = match self.check(&s3, &item.resource_id, max, &required).await {
            Ok(counts) => counts,
            Err(e) if e.aws_code() == Some("NoSuchBucket") => {
                return Ok(Verdict::not_applicable("The bucket no longer exists."));
            }
            Err(e) => return Err(e),
        };
        Ok(verdict(&counts, require_kms))
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        atrest_s3::regional_buckets(ctx).await
    }

    async fn fetch_item(&self, _ctx: &RuleContext, _resource_type: &str, bucket: &str) -> Result<Option<ConfigurationItem>> {
        // `judge` reads the objects itself; a bucket that is gone is NOT_APPLICABLE there.
        let mut item = ConfigurationItem::live(RESOURCE_TYPE, bucket, json!({ "name": bucket }));
        item.resource_name = Some(bucket.to_string());
        item.arn = Some(format!("arn:aws:s3:::{bucket}"));
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;

    #[test]
    fn verdict_table() {
        let c = |checked, failed, more| Counts { checked, failed, more, example: (failed > 0).then(|| "old/report.csv".to_string()) };
        let cases = [
            ("empty bucket", c(0, 0, false), false, Compliance::Compliant, "no objects"),
            ("all encrypted", c(12, 0, false), false, Compliance::Compliant, "all 12 objects"),
            (
                "some plain",
                c(12, 3, false),
                false,
                Compliance::NonCompliant,
                "3 of all 12 objects checked are without server-side encryption",
            ),
            ("limit reached", c(1000, 1, true), false, Compliance::NonCompliant, "1 of the first 1000 objects (in key order)"),
            ("kms required", c(5, 5, false), true, Compliance::NonCompliant, "not under SSE-KMS"),
            ("kms met", c(1000, 0, true), true, Compliance::Compliant, "the first 1000 objects (in key order): every one is under SSE-KMS"),
        ];
        for (name, counts, kms, expected, text) in cases {
            let v = verdict(&counts, kms);
            assert_eq!(v.compliance, expected, "{name}: {}", v.annotation);
            assert!(v.annotation.to_lowercase().contains(&text.to_lowercase()), "{name}: {}", v.annotation);
            assert!(v.annotation.chars().count() <= 256, "{name}");
        }
    }

    #[test]
    fn long_keys_keep_the_annotation_short() {
        let counts = Counts { checked: 100_000, failed: 99_999, more: true, example: Some("k".repeat(1024)) };
        assert!(verdict(&counts, true).annotation.chars().count() <= 256);
    }

    #[test]
    fn parameters_parse() {
        let raw = [("maxObjectsPerBucket".to_string(), json!("50")), ("requireKms".to_string(), json!("true"))].into_iter().collect();
        let params = SPEC.parse_params(&raw).unwrap();
        assert_eq!(params.integer("maxObjectsPerBucket"), Some(50));
        assert!(params.bool("requireKms"));
        let bad = [("maxObjectsPerBucket".to_string(), json!("0"))].into_iter().collect();
        assert!(SPEC.parse_params(&bad).is_err());
    }
}
