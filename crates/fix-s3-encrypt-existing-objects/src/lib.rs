//! `fix-s3-encrypt-existing-objects`: copy every object of a bucket that is not encrypted as
//! required onto itself with SSE-S3, or SSE-KMS with the key and an S3 Bucket Key.
//!
//! Default encryption only applies to new writes; objects stored before it (or before S3 began
//! encrypting every new object on 2023-01-05) stay as they are until rewritten. A copy onto
//! itself (`CopyObject`, server-side: the bytes never leave S3) rewrites one with the target
//! encryption. What such a copy must carry, and how (S3 API Reference, CopyObject):
//! user metadata, content type/encoding/language/disposition, cache-control and expires
//! (`MetadataDirective COPY`, the default), tags (`TaggingDirective COPY`), the website redirect
//! location ("not copied when using the x-amz-metadata-directive header": passed from
//! `HeadObject`), the storage class (a copy is STANDARD unless told: passed) and the ACL (never
//! copied: its grants are passed where ACLs are enabled). Objects over 5 GiB (CopyObject's limit)
//! are copied by multipart `UploadPartCopy` (from 1 GiB on, so no single request outlasts the
//! SDK's 30 s attempt timeout), each part conditioned on the ETag `HeadObject` saw.
//!
//! Requests: one `ListObjectsV2` per 1000 objects; an object written on or after 2023-01-05 needs
//! nothing more when any SSE will do (S3 encrypted it on write). Any other object: `HeadObject`
//! (+ `CopyObject` when it must be rewritten, + `GetObjectAcl` when the bucket has ACLs enabled).
//! Per turn: `GetBucketVersioning` and `GetBucketOwnershipControls` (+ `GetBucketAcl` when ACLs
//! are enabled, for the bucket owner).
//!
//! Progress is never kept in memory: each turn lists the bucket from the start and rewrites only
//! what is still not encrypted as required (what an earlier turn copied is recognised from its
//! listing date or its `HeadObject`), so a crash or a stop at the time budget resumes without
//! copying anything twice. Each copy is conditioned on the ETag `HeadObject` saw, so an object
//! rewritten by someone else meanwhile is left alone and checked again next turn.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atrest::clients;
use atrest::error::{Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_s3::objects::{Decision, ObjectState, Required, SkipReason, decide};
use aws_sdk_s3::types::Object;
use futures::stream::{self, StreamExt};

mod copy;

pub use copy::copy_source;

pub static SPEC: FixSpec = FixSpec {
    name: "s3-encrypt-existing-objects",
    description: "Copy every S3 object that is not encrypted as required onto itself with SSE-S3 or SSE-KMS, keeping its metadata, tags, storage class and ACL.",
    resource_types: &["AWS::S3::Bucket"],
    parameters: &[
        ParamSpec {
            name: "SSEAlgorithm",
            kind: ParamKind::OneOf(&["AES256", "aws:kms"]),
            default: "AES256",
            description: "AES256 (SSE-S3: any server-side encryption already meets it) or aws:kms (SSE-KMS with an S3 Bucket Key).",
        },
        ParamSpec {
            name: KMS_KEY_PARAM,
            kind: ParamKind::KmsKey,
            default: "",
            description: "For aws:kms: key id, key ARN, alias or alias ARN. Empty: the AWS managed key aws/s3 (objects under any KMS key then meet it).",
        },
        ParamSpec {
            name: "Prefix",
            kind: ParamKind::Text,
            default: "",
            description: "Only objects whose key starts with this prefix. Empty: every object.",
        },
        ParamSpec {
            name: "Concurrency",
            kind: ParamKind::Integer { min: 1, max: 64 },
            default: "16",
            description: "Objects handled at once (1-64). S3 supports 3500 writes/s per prefix; lower it if other writers share the bucket.",
        },
    ],
    disruptive: false,
};

/// Largest object `CopyObject` copies in one request (S3 API Reference, CopyObject).
pub const COPY_OBJECT_LIMIT: i64 = 5 * 1024 * 1024 * 1024;

/// The worker. `Default` is what the Lambda runs; tests lower the limits.
#[derive(Debug, Clone)]
pub struct S3EncryptExistingObjects {
    /// No new object is started after this much time in one turn; the function times out at
    /// 240 s and an SSM step allows 300 s.
    pub budget: Duration,
    /// A multipart copy still running this long into the turn is aborted (and redone next turn).
    pub hard_stop: Duration,
    /// Objects larger than this are copied with multipart `UploadPartCopy`.
    pub multipart_threshold: i64,
    /// Part size of multipart copies (S3: 5 MiB to 5 GiB, at most 10 000 parts).
    pub part_size: i64,
    /// `MaxKeys` of each `ListObjectsV2` page (S3 answers at most 1000).
    pub page_size: i32,
}

impl Default for S3EncryptExistingObjects {
    fn default() -> Self {
        S3EncryptExistingObjects {
            budget: Duration::from_secs(200),
            hard_stop: Duration::from_secs(225),
            // Below CopyObject's 5 GiB limit: one CopyObject of several GiB can outlast the SDK's
            // 30 s attempt timeout (atrest::clients); 256 MiB parts copy in seconds each.
            multipart_threshold: 1024 * 1024 * 1024,
            part_size: 256 * 1024 * 1024,
            page_size: 1000,
        }
    }
}

/// The encryption a copy is written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub algorithm: String,
    pub key_arn: Option<String>,
}

impl Target {
    fn describe(&self) -> String {
        match (self.algorithm.as_str(), &self.key_arn) {
            ("AES256", _) => "SSE-S3 (AES256)".into(),
            (_, Some(k)) => format!("SSE-KMS with key {k} and an S3 Bucket Key"),
            (_, None) => "SSE-KMS with the AWS managed key aws/s3 and an S3 Bucket Key".into(),
        }
    }
    fn required(&self) -> Required {
        if self.algorithm == "AES256" { Required::AnySse } else { Required::Kms { key_arn: self.key_arn.clone() } }
    }
}

/// What one turn knows about the bucket.
pub(crate) struct Bucket<'a> {
    pub name: &'a str,
    /// Object ACLs are in effect (no BucketOwnerEnforced): they must be carried over.
    pub acls_enabled: bool,
    /// The bucket owner's canonical id, read when ACLs are enabled.
    pub owner_id: Option<String>,
}

/// What happened to one object.
#[derive(Debug)]
enum ObjectResult {
    /// Written on or after 2023-01-05 with any SSE required: no request needed.
    CompliantByDate,
    Compliant,
    Copied {
        multipart: bool,
    },
    WouldCopy,
    Skipped(SkipReason),
    /// Deleted between the listing and the copy: nothing to do.
    Gone,
    /// Rewritten by someone else between `HeadObject` and the copy (ETag precondition failed):
    /// checked again next turn.
    Changed,
    Failed(String),
    /// Not started: the turn's budget was spent.
    NotReached,
}

/// The counts a turn reports.
#[derive(Debug, Default)]
struct Tally {
    listed: u64,
    compliant_by_date: u64,
    compliant: u64,
    copied: u64,
    copied_multipart: u64,
    would_copy: u64,
    skipped: BTreeMap<SkipReason, u64>,
    gone: u64,
    changed: u64,
    failed: u64,
    failures: Vec<String>,
    not_reached: u64,
    /// The last key, in listing order, before the first object this turn did not finish (not
    /// reached, changed meanwhile or failed): where the next turn starts listing.
    resume_after: Option<String>,
    /// An object was left unfinished: `resume_after` no longer moves.
    unfinished_seen: bool,
}

impl Tally {
    /// Counts one object's result; `key` is its key, results come in listing order.
    fn add(&mut self, key: String, result: ObjectResult) {
        let finished = !matches!(result, ObjectResult::NotReached | ObjectResult::Changed | ObjectResult::Failed(_));
        if !finished {
            self.unfinished_seen = true;
        } else if !self.unfinished_seen && !key.is_empty() {
            self.resume_after = Some(key);
        }
        match result {
            ObjectResult::CompliantByDate => self.compliant_by_date += 1,
            ObjectResult::Compliant => self.compliant += 1,
            ObjectResult::Copied { multipart } => {
                self.copied += 1;
                self.copied_multipart += u64::from(multipart);
            }
            ObjectResult::WouldCopy => self.would_copy += 1,
            ObjectResult::Skipped(reason) => *self.skipped.entry(reason).or_default() += 1,
            ObjectResult::Gone => self.gone += 1,
            ObjectResult::Changed => self.changed += 1,
            ObjectResult::Failed(message) => {
                self.failed += 1;
                if self.failures.len() < 3 {
                    self.failures.push(message);
                }
            }
            ObjectResult::NotReached => self.not_reached += 1,
        }
    }

    fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// "copied 3 (1 by multipart copy), 5 already encrypted as required, skipped 2 (...), 0 failed"
    fn summary(&self, dry_run: bool) -> String {
        let mut parts = Vec::new();
        if dry_run {
            parts.push(format!("would copy {}", self.would_copy));
        } else if self.copied_multipart > 0 {
            parts.push(format!("copied {} ({} by multipart copy)", self.copied, self.copied_multipart));
        } else {
            parts.push(format!("copied {}", self.copied));
        }
        let compliant = self.compliant + self.compliant_by_date;
        if self.compliant_by_date > 0 {
            parts.push(format!(
                "{compliant} already encrypted as required ({} of them written since 2023-01-05, when S3 began encrypting every new object)",
                self.compliant_by_date
            ));
        } else {
            parts.push(format!("{compliant} already encrypted as required"));
        }
        if self.skipped_total() > 0 {
            let reasons: Vec<String> = self.skipped.iter().map(|(r, n)| format!("{n} {}", r.describe())).collect();
            parts.push(format!("skipped {} ({})", self.skipped_total(), reasons.join("; ")));
        } else {
            parts.push("skipped 0".into());
        }
        if self.gone > 0 {
            parts.push(format!("{} deleted meanwhile", self.gone));
        }
        if self.changed > 0 {
            parts.push(format!("{} rewritten by someone else meanwhile (checked again next turn)", self.changed));
        }
        parts.push(format!("{} failed", self.failed));
        parts.join(", ")
    }
}

/// Counts this turn's S3 requests (reported in the message: the cost of a run).
#[derive(Debug, Default)]
pub(crate) struct Requests(AtomicU64);

impl Requests {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl S3EncryptExistingObjects {
    async fn target(&self, ctx: &FixContext, req: &FixRequest) -> Result<Target> {
        let algorithm = req.params.text("SSEAlgorithm").unwrap_or("AES256").to_string();
        let key = req.params.text(KMS_KEY_PARAM);
        if algorithm == "AES256" && key.is_some() {
            return Err(atrest::Error::invalid_parameter(KMS_KEY_PARAM, "is only used with SSEAlgorithm aws:kms"));
        }
        let key_arn = match key {
            // Resolving validates that the key exists before anything is changed.
            Some(k) => Some(ctx.kms.requested_key_arn(k).await?),
            None => None,
        };
        Ok(Target { algorithm, key_arn })
    }

    /// One object: decide from the listing or `HeadObject`, then copy when needed.
    #[allow(clippy::too_many_arguments)]
    async fn encrypt_object(
        &self,
        ctx: &FixContext,
        s3: &aws_sdk_s3::Client,
        bucket: &Bucket<'_>,
        target: &Target,
        required: &Required,
        object: Object,
        dry_run: bool,
        started: Instant,
        requests: &Requests,
    ) -> ObjectResult {
        let Some(key) = object.key() else { return ObjectResult::Gone };
        if started.elapsed() >= self.budget {
            return ObjectResult::NotReached;
        }
        if required.met_by_listing(object.last_modified()) {
            return ObjectResult::CompliantByDate;
        }
        requests.add(1);
        let head = match s3.head_object().bucket(bucket.name).key(key).send().await {
            Ok(head) => head,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                return match status {
                    Some(404) => ObjectResult::Gone,
                    // "If you encrypt an object by using SSE-C ... you must use [its key] headers
                    // ... If you don't, you get 400 Bad Request" (S3 API Reference, HeadObject).
                    Some(400) => ObjectResult::Skipped(SkipReason::CustomerKey),
                    _ => ObjectResult::Failed(aws_error("s3:GetObject", format!("s3://{}/{key}", bucket.name), e).to_string()),
                };
            }
        };
        let state = ObjectState {
            sse: head.server_side_encryption().map(|s| s.as_str().to_string()),
            kms_key: head.ssekms_key_id().map(str::to_string),
            sse_c: head.sse_customer_algorithm().is_some(),
            storage_class: head.storage_class().map(|c| c.as_str().to_string()),
            restore: head.restore().map(str::to_string),
            archive_status: head.archive_status().map(|a| a.as_str().to_string()),
            locked: head.object_lock_mode().is_some() || head.object_lock_legal_hold_status().is_some_and(|s| s.as_str() == "ON"),
        };
        let key_matches = match (&target.key_arn, &state.kms_key) {
            (Some(want), Some(have)) => match ctx.kms.is_one_of(have, std::slice::from_ref(want)).await {
                Ok(matches) => matches,
                Err(e) => return ObjectResult::Failed(e.to_string()),
            },
            _ => false,
        };
        match decide(&state, required, key_matches) {
            Decision::AlreadyCompliant => ObjectResult::Compliant,
            Decision::Skip(reason) => ObjectResult::Skipped(reason),
            Decision::Copy if dry_run => ObjectResult::WouldCopy,
            Decision::Copy => {
                let copy = copy::Copy { worker: self, s3, bucket, target, key, head: &head, started, requests };
                match copy.run().await {
                    Ok(result) => result,
                    Err(e) => ObjectResult::Failed(e.to_string()),
                }
            }
        }
    }

    /// Whether object ACLs are in effect, and the bucket owner when they are. ACLs are disabled
    /// only by ObjectOwnership BucketOwnerEnforced; a bucket without ownership controls (made
    /// before April 2023 and never changed) uses ObjectWriter, with ACLs.
    async fn acl_settings(&self, s3: &aws_sdk_s3::Client, bucket: &str, requests: &Requests) -> Result<(bool, Option<String>)> {
        requests.add(1);
        let enforced = match s3.get_bucket_ownership_controls().bucket(bucket).send().await {
            Ok(out) => {
                out.ownership_controls().is_some_and(|c| c.rules().iter().any(|r| r.object_ownership().as_str() == "BucketOwnerEnforced"))
            }
            Err(e) => {
                let err = aws_error("s3:GetBucketOwnershipControls", bucket, e);
                if err.aws_code() == Some("OwnershipControlsNotFoundError") { false } else { return Err(err) }
            }
        };
        if enforced {
            return Ok((false, None));
        }
        requests.add(1);
        let acl = s3.get_bucket_acl().bucket(bucket).send().await.map_err(|e| aws_error("s3:GetBucketAcl", bucket, e))?;
        Ok((true, acl.owner().and_then(|o| o.id()).map(str::to_string)))
    }

    async fn list_page(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: Option<&str>,
        token: Option<String>,
        start_after: Option<&str>,
        requests: &Requests,
    ) -> Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output> {
        requests.add(1);
        s3.list_objects_v2()
            .bucket(bucket)
            .set_prefix(prefix.map(str::to_string))
            .max_keys(self.page_size)
            .set_continuation_token(token)
            // Ignored by S3 once a continuation token is given: only the turn's first page.
            .set_start_after(start_after.map(str::to_string))
            .send()
            .await
            .map_err(|e| aws_error("s3:ListBucket", bucket, e))
    }
}

#[async_trait]
impl Fix for S3EncryptExistingObjects {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let started = Instant::now();
        let name = req.resource_id.as_str();
        let target = self.target(ctx, req).await?;
        let required = target.required();
        let prefix = req.params.text("Prefix");
        let concurrency = req.params.integer("Concurrency").unwrap_or(16).clamp(1, 64) as usize;
        let s3 = ctx.client(clients::s3);
        let requests = Requests::default();
        let progress = ctx.progress();
        progress.counting("objects", "copied");

        requests.add(1);
        let versioning = match s3.get_bucket_versioning().bucket(name).send().await {
            Ok(out) => out.status().map(|s| s.as_str().to_string()),
            Err(e) => {
                let err = aws_error("s3:GetBucketVersioning", name, e);
                if err.aws_code() == Some("NoSuchBucket") {
                    return Ok(FixOutcome::failed(
                        &SPEC,
                        req,
                        format!("Bucket {name} does not exist (deleted since it was evaluated); nothing to do."),
                    ));
                }
                return Err(err);
            }
        };
        let (acls_enabled, owner_id) = self.acl_settings(&s3, name, &requests).await?;
        let bucket = Bucket { name, acls_enabled, owner_id };

        // Where the last turn said the work stands (the document's Resume variable): every key up
        // to it is done. Without one (first turn, or a run started again) from the first key.
        let mut tally = Tally { resume_after: req.resume.clone(), ..Tally::default() };
        let mut page = self.list_page(&s3, name, prefix, None, req.resume.as_deref(), &requests).await?;
        let mut stopped = false;
        loop {
            let objects = page.contents().to_vec();
            tally.listed += objects.len() as u64;
            let next_token = page.next_continuation_token().filter(|_| page.is_truncated() == Some(true)).map(str::to_string);
            // In listing order (still `concurrency` at once), so the turn knows the last key
            // before the first one it did not finish.
            let work = stream::iter(objects)
                .map(|object| {
                    let key = object.key().unwrap_or_default().to_string();
                    let result = self.encrypt_object(ctx, &s3, &bucket, &target, &required, object, req.dry_run, started, &requests);
                    let progress = &progress;
                    async move {
                        let result = result.await;
                        match result {
                            ObjectResult::NotReached => {}
                            ObjectResult::Copied { .. } => {
                                progress.examined();
                                progress.changed();
                            }
                            _ => progress.examined(),
                        }
                        (key, result)
                    }
                })
                .buffered(concurrency)
                .collect::<Vec<_>>();
            // The next page is fetched while this one is worked on.
            let next = async {
                match &next_token {
                    Some(token) if started.elapsed() < self.budget => {
                        Some(self.list_page(&s3, name, prefix, Some(token.clone()), None, &requests).await)
                    }
                    _ => None,
                }
            };
            let (results, next) = tokio::join!(work, next);
            for (key, result) in results {
                tally.add(key, result);
            }
            if tally.not_reached > 0 || (next_token.is_some() && started.elapsed() >= self.budget) {
                stopped = true;
                break;
            }
            match next {
                Some(next) => page = next?,
                None if next_token.is_some() => {
                    stopped = true;
                    break;
                }
                None => break,
            }
        }

        let scope = match prefix {
            Some(p) => format!("objects under {p:?} in bucket {name}"),
            None => format!("objects in bucket {name}"),
        };
        let wanted = target.describe();
        let versions_note = match versioning.as_deref() {
            Some("Enabled") | Some("Suspended") => format!(
                " Versioning is {}: only current versions were rewritten; the previous, unencrypted versions remain until a lifecycle rule (NoncurrentVersionExpiration) or you delete them.",
                versioning.as_deref().unwrap_or_default().to_lowercase()
            ),
            _ => String::new(),
        };
        let cost = format!(" {} S3 requests this turn.", requests.get());
        let counts = tally.summary(req.dry_run);
        let resume = match &tally.resume_after {
            Some(key) => {
                format!(" Every key up to {:?} is done; the next turn lists from there.", key.chars().take(200).collect::<String>())
            }
            None => " The next turn lists from the first key.".to_string(),
        };
        let examined = tally.listed - tally.not_reached;

        if req.dry_run {
            let partial = if stopped {
                format!(" The dry run stopped at its time budget after {examined} objects (in key order); the rest were not examined.")
            } else {
                String::new()
            };
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("Dry run over {examined} {scope}: {counts}. Target: {wanted}. Nothing was changed.{partial}{versions_note}{cost}"),
            )
            .with_change(format!("would copy {} {scope} onto themselves with {wanted}", tally.would_copy)));
        }

        let mut outcome = if stopped || tally.changed > 0 {
            let why = if stopped { "stopped at this turn's time budget" } else { "some objects changed while being copied" };
            let in_progress = FixOutcome::in_progress(
                &SPEC,
                req,
                format!(
                    "This turn over {examined} {scope}: {counts}; {why}.{resume} It copies only what is still not encrypted with {wanted} (were the run started again from the first key, what was copied is recognised and not copied twice).{versions_note}{cost}"
                ),
            );
            match &tally.resume_after {
                Some(key) => in_progress.with_resume(key),
                None => in_progress,
            }
        } else if tally.failed > 0 {
            FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "Re-encrypting {scope} with {wanted}: {counts}. First failures: {}. Objects copied stay copied; run the remediation again once the cause is fixed.{versions_note}{cost}",
                    tally.failures.join(" | ")
                ),
            )
        } else {
            let every = match &req.resume {
                None => format!("Every one of the {examined}"),
                Some(_) => format!("Earlier turns did the first keys and this last one {examined} more: every one of the"),
            };
            let skipped_note = if tally.skipped_total() > 0 {
                " Skipped objects were left unchanged: restore archived ones first; SSE-C, Object Lock and other-account objects need their owners."
            } else {
                ""
            };
            FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "{every} {scope} is now encrypted as required ({wanted}) or accounted for: {counts}. Metadata, tags, storage class and ACLs were kept.{skipped_note}{versions_note}{cost}"
                ),
            )
        };
        if tally.copied > 0 {
            outcome = outcome.with_change(format!("copied {} {scope} onto themselves with {wanted}", tally.copied));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_every_kind() {
        let mut tally = Tally::default();
        for result in [
            ObjectResult::Copied { multipart: false },
            ObjectResult::Copied { multipart: true },
            ObjectResult::Compliant,
            ObjectResult::CompliantByDate,
            ObjectResult::Skipped(SkipReason::ArchivedNotRestored),
            ObjectResult::Skipped(SkipReason::CustomerKey),
            ObjectResult::Skipped(SkipReason::CustomerKey),
            ObjectResult::Failed("boom".into()),
        ] {
            tally.add(String::new(), result);
        }
        let text = tally.summary(false);
        assert!(text.starts_with("copied 2 (1 by multipart copy), 2 already encrypted as required (1 of them"), "{text}");
        assert!(
            text.contains(
                "skipped 3 (1 archived (Glacier/Deep Archive) and not restored; 2 encrypted with a customer-provided key (SSE-C))"
            ),
            "{text}"
        );
        assert!(text.ends_with("1 failed"), "{text}");
        assert_eq!(tally.failures, vec!["boom".to_string()]);
    }

    #[test]
    fn dry_run_summary_says_would() {
        let mut tally = Tally::default();
        tally.add("k".into(), ObjectResult::WouldCopy);
        assert!(tally.summary(true).starts_with("would copy 1,"));
    }

    #[test]
    fn target_requirements() {
        let sse_s3 = Target { algorithm: "AES256".into(), key_arn: None };
        assert_eq!(sse_s3.required(), Required::AnySse);
        let kms = Target { algorithm: "aws:kms".into(), key_arn: Some("arn:k".into()) };
        assert_eq!(kms.required(), Required::Kms { key_arn: Some("arn:k".into()) });
        assert!(kms.describe().contains("arn:k"));
    }

    #[test]
    fn spec_defaults_parse() {
        let params = atrest::Params::parse(SPEC.parameters, &Default::default()).unwrap();
        assert_eq!(params.text("SSEAlgorithm"), Some("AES256"));
        assert_eq!(params.integer("Concurrency"), Some(16));
        assert_eq!(params.text("Prefix"), None);
    }
}
