//! `fix-s3-restrict-ssl-requests-only`: add a Deny for requests that do not use SSL/TLS to a
//! bucket's policy, keeping every other statement, and verify it.
//!
//! Reconciler steps: read the policy (GetBucketPolicy; `NoSuchBucketPolicy` = none) → when it
//! already denies plain HTTP in any spelling the rule accepts, report success without touching
//! it → refuse a static-website bucket unless `IncludeWebsiteBuckets=true` (its website endpoint
//! serves HTTP only, so the deny takes the site down) → append one statement to the policy as
//! read, every other statement kept byte for byte (a new policy when there is none) → refuse
//! when the result would pass S3's 20 KB limit → PutBucketPolicy → read it back; S3 is eventually
//! consistent, so a read-back that does not show the statement yet is `InProgress`, and the next
//! turn starts over from what S3 then shows: the statement is appended to the policy as read,
//! never to one already holding it, so a re-run cannot add a duplicate (AWS's runbook
//! AWSConfigRemediation-RestrictBucketSSLRequestsOnly appends one on every run).

use atrest::clients;
use atrest::error::{Result, aws_error};
use atrest::policy::{
    BUCKET_POLICY_MAX_BYTES, Policy, SSL_ONLY_SID, append_statement, bucket_arn, ssl_only, ssl_only_statement, unused_sid,
};
use atrest::{Fix, FixContext, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use serde_json::Value;

pub const INCLUDE_WEBSITE_BUCKETS: &str = "IncludeWebsiteBuckets";

pub static SPEC: FixSpec = FixSpec {
    name: "s3-restrict-ssl-requests-only",
    description: "Add a Deny for requests without SSL/TLS (aws:SecureTransport=false) to the bucket policy, keeping every other statement, and verify it.",
    resource_types: &["AWS::S3::Bucket"],
    parameters: &[ParamSpec {
        name: INCLUDE_WEBSITE_BUCKETS,
        kind: ParamKind::Bool,
        default: "false",
        description: "Also restrict buckets configured as static websites (their website endpoint serves HTTP only and stops working).",
    }],
    // Clients that still use plain HTTP are refused from the moment the policy is in place.
    disruptive: true,
};

/// What to do with the policy as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// It already denies plain HTTP as the rule requires: the sentence that says how.
    AlreadyDone(String),
    /// Nothing can be changed safely: why.
    Refuse(String),
    /// Put `policy`: the one read plus `statement` (named `sid`); `kept` statements were there.
    Add { sid: String, statement: Value, policy: String, kept: usize },
}

/// The pure part: from the policy text S3 returned (None: no policy) to the next action.
pub fn plan(bucket: &str, bucket_arn: &str, existing: Option<&str>) -> Plan {
    let policy = match existing {
        None => Policy::default(),
        Some(text) => match Policy::parse(text) {
            Ok(p) => p,
            Err(e) => return Plan::Refuse(format!("The bucket policy of {bucket} cannot be read ({e}); nothing was changed.")),
        },
    };
    let found = ssl_only(&policy, bucket_arn);
    if found.complete() {
        return Plan::AlreadyDone(found.explain());
    }
    let sid = unused_sid(&policy, SSL_ONLY_SID);
    let statement = ssl_only_statement(&sid, bucket_arn);
    let merged = match append_statement(existing, &statement) {
        Ok(text) => text,
        Err(e) => return Plan::Refuse(format!("The bucket policy of {bucket} cannot be extended: {e}; nothing was changed.")),
    };
    if merged.len() > BUCKET_POLICY_MAX_BYTES {
        return Plan::Refuse(format!(
            "Adding the SSL-only statement would make the bucket policy of {bucket} {} bytes, over S3's 20 KB limit ({BUCKET_POLICY_MAX_BYTES} bytes); \
             nothing was changed. Shorten the policy (merge statements), then run this again.",
            merged.len()
        ));
    }
    Plan::Add { sid, statement, policy: merged, kept: policy.statements.len() }
}

/// The worker. Its S3 client comes from the invocation's context (`ctx.client`), where tests
/// register mocked ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3RestrictSslRequestsOnly;

impl S3RestrictSslRequestsOnly {
    /// The policy text, or None when the bucket has none.
    async fn policy(&self, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Option<String>> {
        match s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => Ok(out.policy().map(str::to_string)),
            Err(e) => {
                let err = aws_error("s3:GetBucketPolicy", bucket, e);
                if err.aws_code() == Some("NoSuchBucketPolicy") { Ok(None) } else { Err(err) }
            }
        }
    }

    /// Whether the bucket has a website configuration (GetBucketWebsite answers
    /// `NoSuchWebsiteConfiguration` when it has none).
    async fn is_website(&self, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool> {
        match s3.get_bucket_website().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = aws_error("s3:GetBucketWebsite", bucket, e);
                if err.aws_code() == Some("NoSuchWebsiteConfiguration") { Ok(false) } else { Err(err) }
            }
        }
    }
}

fn gone(req: &FixRequest, bucket: &str) -> FixOutcome {
    FixOutcome::failed(&SPEC, req, format!("Bucket {bucket} does not exist (deleted since it was evaluated); nothing to do."))
}

#[async_trait]
impl Fix for S3RestrictSslRequestsOnly {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let bucket = req.resource_id.as_str();
        let include_websites = req.params.bool(INCLUDE_WEBSITE_BUCKETS);
        let s3 = ctx.client(clients::s3);
        let arn = bucket_arn(&clients::region_name(&ctx.sdk), bucket);
        let existing = match self.policy(&s3, bucket).await {
            Ok(p) => p,
            Err(e) if e.aws_code() == Some("NoSuchBucket") => return Ok(gone(req, bucket)),
            Err(e) => return Err(e),
        };
        let (sid, statement, policy, kept) = match plan(bucket, &arn, existing.as_deref()) {
            Plan::AlreadyDone(how) => {
                return Ok(FixOutcome::succeeded(&SPEC, req, format!("Bucket {bucket}: {how} Nothing was changed.")));
            }
            Plan::Refuse(why) => return Ok(FixOutcome::failed(&SPEC, req, why)),
            Plan::Add { sid, statement, policy, kept } => (sid, statement, policy, kept),
        };
        let website = match self.is_website(&s3, bucket).await {
            Ok(w) => w,
            Err(e) if e.aws_code() == Some("NoSuchBucket") => return Ok(gone(req, bucket)),
            Err(e) => return Err(e),
        };
        if website && !include_websites {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "Skipped: bucket {bucket} is configured as a static website, whose endpoint serves HTTP only; denying plain HTTP would take \
                     the site down. Serve it through CloudFront over HTTPS and run this again with {INCLUDE_WEBSITE_BUCKETS}=true, or exempt \
                     the bucket from the rule. Nothing was changed."
                ),
            ));
        }
        let change = format!(
            "bucket policy of {bucket}: add statement {sid} ({statement}){}",
            if kept > 0 { format!(", keeping its {kept} other statement(s)") } else { " as a new policy".to_string() }
        );
        if req.dry_run {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("Dry run: would add to the bucket policy of {bucket}: {statement}. Nothing was changed."),
            )
            .with_change(change));
        }
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(&policy)
            // Never let a policy we write lock the account's own principals out of it.
            .confirm_remove_self_bucket_access(false)
            .send()
            .await
            .map_err(|e| aws_error("s3:PutBucketPolicy", bucket, e))?;

        let now = self.policy(&s3, bucket).await?;
        match plan(bucket, &arn, now.as_deref()) {
            Plan::AlreadyDone(_) => {
                let website_note = if website { " The bucket's website endpoint (HTTP only) now refuses requests." } else { "" };
                Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!(
                        "Bucket {bucket} now denies every request that does not use SSL/TLS (statement {sid}, verified by reading the policy back); \
                         its other {kept} statement(s) were kept as they were. Clients still using plain HTTP are refused from now on.{website_note}"
                    ),
                )
                .with_change(change))
            }
            _ => Ok(FixOutcome::in_progress(
                &SPEC,
                req,
                format!("Put the bucket policy of {bucket}; waiting for S3 to report statement {sid}."),
            )
            .with_change(change)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:s3:::b";

    fn policy(statements: Value) -> String {
        json!({"Version": "2012-10-17", "Statement": statements}).to_string()
    }

    #[test]
    fn plan_table() {
        let other = json!({"Sid": "Read", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"});
        let equivalent = json!({"Effect": "Deny", "Principal": {"AWS": ["*"]}, "Action": "*", "Resource": "arn:aws:s3:::b*", "Condition": {"BoolIfExists": {"aws:SecureTransport": false}}});
        let objects_only = json!({"Sid": "AllowSSLRequestsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
        let huge = policy(json!((0..98).map(|i| json!({"Sid": format!("S{i}"), "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::b/prefix-{i}/{}", "x".repeat(60))})).collect::<Vec<_>>()));
        assert!(huge.len() < BUCKET_POLICY_MAX_BYTES && huge.len() + 300 > BUCKET_POLICY_MAX_BYTES, "{}", huge.len());

        match plan("b", ARN, None) {
            Plan::Add { sid, policy, kept, .. } => {
                assert_eq!((sid.as_str(), kept), (SSL_ONLY_SID, 0));
                assert!(ssl_only(&Policy::parse(&policy).unwrap(), ARN).complete());
            }
            other => panic!("no policy: {other:?}"),
        }
        match plan("b", ARN, Some(&policy(json!([other.clone()])))) {
            Plan::Add { policy: merged, kept, .. } => {
                assert_eq!(kept, 1);
                let doc: Value = serde_json::from_str(&merged).unwrap();
                assert_eq!(doc["Statement"][0], other);
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(plan("b", ARN, Some(&policy(json!([other.clone(), equivalent])))), Plan::AlreadyDone(_)));
        // The deny on the objects only is kept, and ours needs another Sid (Sids are unique).
        match plan("b", ARN, Some(&policy(json!([objects_only])))) {
            Plan::Add { sid, kept, .. } => assert_eq!((sid.as_str(), kept), ("AllowSSLRequestsOnly2", 1)),
            p => panic!("{p:?}"),
        }
        match plan("b", ARN, Some(&huge)) {
            Plan::Refuse(why) => assert!(why.contains("20 KB") && why.contains("nothing was changed"), "{why}"),
            p => panic!("{p:?}"),
        }
        assert!(matches!(plan("b", ARN, Some("{{{")), Plan::Refuse(why) if why.contains("cannot be read")));
        assert!(matches!(plan("b", ARN, Some(r#"{"Statement": "x"}"#)), Plan::Refuse(why) if why.contains("cannot be extended")));
    }

    #[test]
    fn the_plan_after_our_own_put_is_done() {
        let Plan::Add { policy, .. } = plan("b", ARN, None) else { panic!() };
        assert!(matches!(plan("b", ARN, Some(&policy)), Plan::AlreadyDone(_)), "a re-run adds nothing");
    }
}
