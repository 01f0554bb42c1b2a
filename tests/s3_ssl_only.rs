//! The SSL-only rule and fix against the local stand-in, over HTTP, with the real SDK: change
//! events judged from the item alone, a sweep reading live policies, the fix merging its one
//! statement into a policy without touching the others, recognising an equivalent deny in every
//! spelling, skipping website buckets, refusing to pass the 20 KB limit. What the stand-in cannot
//! show (a read-back that lags the write) is answered by `aws-smithy-mocks` in `aws_behaviour`.
//!
//! Ordering: after the fix the policy denies plain HTTP, and these tests talk HTTP to the
//! stand-in. AWS then refuses every request they make (403). moto 5.2.5 refuses object requests
//! (Get/Put/Head/DeleteObject) too, because it applies a bucket policy's Deny statements for
//! `"*"` to object requests with their conditions ignored; bucket-level requests (GetBucketPolicy,
//! ListObjects) it lets through. So every object read or write happens before the fix runs;
//! after it, only the policy is read, as an operator with HTTPS would, and one object read shows
//! plain HTTP refused.

use std::sync::Arc;

use atrest::remediation::DriveOptions;
use atrest::{ConfigRule, FixOutcome, FixRequest, FixRunner, FixStatus, RuleContext};
use atrest_testkit::{adapt_event, load_event, result_for, sdk, unique};
use aws_config::SdkConfig;
use fix_s3_restrict_ssl_requests_only::{S3RestrictSslRequestsOnly, SPEC};
use rule_s3_bucket_ssl_requests_only::S3BucketSslRequestsOnly;
use serde_json::{Value, json};

const RULE_DIR: &str = "s3-bucket-ssl-requests-only";

fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    atrest::clients::s3(sdk)
}

fn arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

/// The canonical deny, as published in AWS's examples.
fn canonical_deny(bucket: &str) -> Value {
    json!({"Sid": "AllowSSLRequestsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
           "Resource": [arn(bucket), format!("{}/*", arn(bucket))],
           "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
}

async fn bucket(sdk: &SdkConfig, prefix: &str) -> String {
    let name = unique(prefix);
    s3(sdk).create_bucket().bucket(&name).send().await.expect("CreateBucket");
    name
}

async fn put_policy(sdk: &SdkConfig, bucket: &str, policy: &str) {
    s3(sdk).put_bucket_policy().bucket(bucket).policy(policy).send().await.expect("PutBucketPolicy");
}

/// The policy text, or None when the bucket has none.
async fn policy_text(sdk: &SdkConfig, bucket: &str) -> Option<String> {
    match s3(sdk).get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => out.policy().map(str::to_string),
        Err(e) => {
            let code = e.as_service_error().and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e)).map(str::to_string);
            assert_eq!(code.as_deref(), Some("NoSuchBucketPolicy"), "{e:?}");
            None
        }
    }
}

fn statements(policy: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(policy).expect("the policy is JSON");
    match &doc["Statement"] {
        Value::Array(list) => list.clone(),
        single => vec![single.clone()],
    }
}

fn payload(bucket: &str, extra: Value) -> Value {
    let mut p = load_event("fix-s3-restrict-ssl-requests-only/ssm-payload.json");
    p["ResourceId"] = json!(bucket);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn runner(sdk: &SdkConfig) -> FixRunner {
    FixRunner::new(Arc::new(S3RestrictSslRequestsOnly), sdk, None)
}

async fn fix(sdk: &SdkConfig, bucket: &str, extra: Value) -> FixOutcome {
    let req = FixRequest::decode(&SPEC, &payload(bucket, extra)).unwrap();
    runner(sdk).drive(&req, &DriveOptions { max_steps: 5, pause: std::time::Duration::ZERO }).await
}

/// The rule's verdict on the live bucket (the sweep's path: GetBucketPolicy).
async fn live_verdict(sdk: &SdkConfig, bucket: &str) -> atrest::Verdict {
    let rule = S3BucketSslRequestsOnly;
    let ctx = RuleContext::new(sdk, rule.spec().parse_params(&Default::default()).unwrap());
    let item = rule.fetch_item(&ctx, "AWS::S3::Bucket", bucket).await.unwrap().expect("the bucket exists");
    rule.judge(&ctx, &item).await.unwrap()
}

/// A sample change event with its example bucket renamed everywhere (id, ARN and the policy's
/// resources), for a bucket that does not exist: the verdict can only come from the item.
fn change_event(file: &str, rule: &str, bucket: &str) -> Value {
    let event = load_event(&format!("{RULE_DIR}/{file}"));
    let invoking: Value = serde_json::from_str(event["invokingEvent"].as_str().unwrap()).unwrap();
    let example = invoking["configurationItem"]["resourceId"].as_str().unwrap().to_string();
    let mut event = event;
    event["invokingEvent"] = json!(event["invokingEvent"].as_str().unwrap().replace(&example, bucket));
    adapt_event(event, rule, |_| {})
}

#[tokio::test]
async fn change_events_are_judged_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("rule-ssl-change");
    let runner = atrest::RuleRunner::new(Arc::new(S3BucketSslRequestsOnly), &sdk);
    let cases = [
        ("change-ssl-only.json", "COMPLIANT", "denies every request that does not use SSL/TLS"),
        ("change-no-policy.json", "NON_COMPLIANT", "no bucket policy"),
        ("change-objects-only.json", "NON_COMPLIANT", "not to the bucket ARN"),
        ("change-allow-https-only.json", "NON_COMPLIANT", "is not a Deny"),
    ];
    for (file, expected, says) in cases {
        // No bucket of this name exists on the stand-in.
        let bucket = unique("ssl-item");
        let response = runner.handle_lambda(change_event(file, &rule, &bucket)).await.expect("the handler answers");
        assert_eq!(response["Evaluations"], 1, "{file}: {response}");
        let stored = result_for(&sdk, &rule, &bucket).await.unwrap_or_else(|| panic!("{file}: nothing stored"));
        assert_eq!(stored.compliance, expected, "{file}: {stored:?}");
        assert_eq!(stored.resource_type, "AWS::S3::Bucket");
        let annotation = stored.annotation.unwrap_or_default();
        assert!(annotation.contains(says), "{file}: {annotation}");
        assert!(annotation.len() <= 256);
    }
}

#[tokio::test]
async fn a_sweep_reads_each_buckets_live_policy() {
    let sdk = sdk().await;
    let rule = unique("rule-ssl-sweep");
    let none = bucket(&sdk, "ssl-sweep-none").await;
    let good = bucket(&sdk, "ssl-sweep-good").await;
    put_policy(&sdk, &good, &json!({"Version": "2012-10-17", "Statement": canonical_deny(&good)}).to_string()).await;
    let objects_only = bucket(&sdk, "ssl-sweep-objects").await;
    let mut deny = canonical_deny(&objects_only);
    deny["Resource"] = json!(format!("{}/*", arn(&objects_only)));
    put_policy(&sdk, &objects_only, &json!({"Version": "2012-10-17", "Statement": [deny]}).to_string()).await;

    let event = adapt_event(load_event(&format!("{RULE_DIR}/scheduled.json")), &rule, |_| {});
    let response = atrest::RuleRunner::new(Arc::new(S3BucketSslRequestsOnly), &sdk).handle_lambda(event).await.unwrap();
    assert!(response["Evaluations"].as_u64().unwrap() >= 3, "{response}");
    for (b, expected) in [(&none, "NON_COMPLIANT"), (&good, "COMPLIANT"), (&objects_only, "NON_COMPLIANT")] {
        let stored = result_for(&sdk, &rule, b).await.unwrap_or_else(|| panic!("{b}: not evaluated"));
        assert_eq!(stored.compliance, expected, "{b}: {stored:?}");
    }
}

#[tokio::test]
async fn the_fix_keeps_three_statements_adds_one_and_a_rerun_adds_nothing() {
    let sdk = sdk().await;
    let b = bucket(&sdk, "ssl-merge").await;
    // Objects first: after the fix, AWS refuses plain-HTTP requests like these.
    s3(&sdk).put_object().bucket(&b).key("data/report.csv").body(b"a,b\n".to_vec().into()).send().await.unwrap();
    let before = vec![
        json!({"Sid": "CrossAccountRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
               "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [arn(&b), format!("{}/*", arn(&b))]}),
        json!({"Sid": "DenyUnencryptedUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
               "Resource": format!("{}/*", arn(&b)), "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}),
        json!({"Sid": "OnlyFromOurVpc", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
               "Resource": format!("{}/private/*", arn(&b)), "Condition": {"StringNotEquals": {"aws:SourceVpc": "vpc-0abc"}}}),
    ];
    let original = json!({"Version": "2012-10-17", "Id": "keep", "Statement": before}).to_string();
    put_policy(&sdk, &b, &original).await;
    assert_eq!(live_verdict(&sdk, &b).await.compliance, atrest::Compliance::NonCompliant);

    let outcome = fix(&sdk, &b, json!({})).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.changes.len(), 1, "{outcome:?}");
    assert!(outcome.message.contains("3 statement(s) were kept"), "{}", outcome.message);
    let after = policy_text(&sdk, &b).await.expect("a policy");
    let now = statements(&after);
    assert_eq!(now.len(), 4, "{after}");
    assert_eq!(&now[..3], before.as_slice(), "the three statements are unchanged, in order");
    assert_eq!(now[3], canonical_deny(&b));
    assert_eq!(serde_json::from_str::<Value>(&after).unwrap()["Id"], "keep");
    assert_eq!(live_verdict(&sdk, &b).await.compliance, atrest::Compliance::Compliant);
    // Plain HTTP is refused now (AWS: 403 AccessDenied; the stand-in: a bare 403).
    let refused = s3(&sdk).get_object().bucket(&b).key("data/report.csv").send().await.expect_err("plain HTTP is refused");
    assert_eq!(refused.raw_response().map(|r| r.status().as_u16()), Some(403), "{refused:?}");

    let again = fix(&sdk, &b, json!({})).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");
    assert!(again.changes.is_empty(), "a re-run changes nothing: {again:?}");
    assert!(again.message.contains("Nothing was changed"), "{}", again.message);
    assert_eq!(policy_text(&sdk, &b).await.as_deref(), Some(after.as_str()), "not one byte of the policy moved");
}

#[tokio::test]
async fn an_equivalent_deny_is_recognised_in_every_spelling_and_left_alone() {
    let sdk = sdk().await;
    type Spelling = fn(&str) -> Value;
    let spellings: &[(&str, Spelling)] = &[
        ("Statement as one object", |b| json!({"Version": "2012-10-17", "Statement": canonical_deny(b)})),
        ("Principal {AWS: *}, boolean false", |b| {
            let mut s = canonical_deny(b);
            s["Principal"] = json!({"AWS": "*"});
            s["Condition"] = json!({"Bool": {"aws:SecureTransport": false}});
            json!({"Version": "2012-10-17", "Statement": [s]})
        }),
        ("Principal {AWS: [*]}, Action *, BoolIfExists", |b| {
            let mut s = canonical_deny(b);
            s["Principal"] = json!({"AWS": ["*"]});
            s["Action"] = json!("*");
            s["Condition"] = json!({"BoolIfExists": {"aws:SecureTransport": "false"}});
            json!({"Version": "2012-10-17", "Statement": [s]})
        }),
        ("wildcard resource and action, value as a list", |b| {
            let mut s = canonical_deny(b);
            s["Action"] = json!(["s3:*"]);
            s["Resource"] = json!(format!("{}*", arn(b)));
            s["Condition"] = json!({"Bool": {"aws:SecureTransport": ["false"]}});
            json!({"Version": "2012-10-17", "Statement": [s]})
        }),
        ("bucket and objects in two statements", |b| {
            let mut on_bucket = canonical_deny(b);
            on_bucket["Sid"] = json!("DenyHttpBucket");
            on_bucket["Resource"] = json!(arn(b));
            let mut on_objects = canonical_deny(b);
            on_objects["Sid"] = json!("DenyHttpObjects");
            on_objects["Resource"] = json!(format!("{}/*", arn(b)));
            json!({"Version": "2012-10-17", "Statement": [on_bucket, on_objects]})
        }),
    ];
    for (name, spelling) in spellings {
        let b = bucket(&sdk, "ssl-spelling").await;
        let text = spelling(&b).to_string();
        put_policy(&sdk, &b, &text).await;
        let outcome = fix(&sdk, &b, json!({})).await;
        assert_eq!(outcome.status, FixStatus::Succeeded, "{name}: {outcome:?}");
        assert!(outcome.changes.is_empty(), "{name}: {outcome:?}");
        assert_eq!(policy_text(&sdk, &b).await.as_deref(), Some(text.as_str()), "{name}: the policy is untouched");
        assert_eq!(live_verdict(&sdk, &b).await.compliance, atrest::Compliance::Compliant, "{name}");
    }
}

#[tokio::test]
async fn a_partial_deny_is_kept_and_completed_under_a_fresh_sid() {
    let sdk = sdk().await;
    let b = bucket(&sdk, "ssl-partial").await;
    let mut objects_only = canonical_deny(&b);
    objects_only["Resource"] = json!(format!("{}/*", arn(&b)));
    put_policy(&sdk, &b, &json!({"Version": "2012-10-17", "Statement": [objects_only.clone()]}).to_string()).await;
    let outcome = fix(&sdk, &b, json!({})).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    let now = statements(&policy_text(&sdk, &b).await.unwrap());
    assert_eq!(now.len(), 2);
    assert_eq!(now[0], objects_only);
    assert_eq!(now[1]["Sid"], "AllowSSLRequestsOnly2", "Sids stay unique: {now:?}");
}

#[tokio::test]
async fn a_bucket_without_a_policy_gets_one_and_a_dry_run_changes_nothing() {
    let sdk = sdk().await;
    let b = bucket(&sdk, "ssl-new").await;
    let dry = fix(&sdk, &b, json!({"DryRun": "true"})).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{dry:?}");
    assert!(dry.dry_run && dry.message.contains("would add") && dry.message.contains("aws:SecureTransport"), "{}", dry.message);
    assert_eq!(dry.changes.len(), 1);
    assert_eq!(policy_text(&sdk, &b).await, None, "a dry run writes no policy");

    let outcome = fix(&sdk, &b, json!({})).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    let text = policy_text(&sdk, &b).await.expect("a new policy");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({"Version": "2012-10-17", "Statement": [canonical_deny(&b)]}));
}

#[tokio::test]
async fn a_website_bucket_is_skipped_unless_included() {
    let sdk = sdk().await;
    let b = bucket(&sdk, "ssl-site").await;
    let website = aws_sdk_s3::types::WebsiteConfiguration::builder()
        .index_document(aws_sdk_s3::types::IndexDocument::builder().suffix("index.html").build().unwrap())
        .build();
    s3(&sdk).put_bucket_website().bucket(&b).website_configuration(website).send().await.expect("PutBucketWebsite");

    let skipped = fix(&sdk, &b, json!({})).await;
    assert_eq!(skipped.status, FixStatus::Failed, "{skipped:?}");
    assert!(skipped.message.contains("static website") && skipped.message.contains("IncludeWebsiteBuckets=true"), "{}", skipped.message);
    assert!(skipped.changes.is_empty());
    assert_eq!(policy_text(&sdk, &b).await, None, "nothing was written");

    let included = fix(&sdk, &b, json!({"IncludeWebsiteBuckets": "true"})).await;
    assert_eq!(included.status, FixStatus::Succeeded, "{included:?}");
    assert!(included.message.contains("website endpoint"), "{}", included.message);
    assert_eq!(live_verdict(&sdk, &b).await.compliance, atrest::Compliance::Compliant);
}

#[tokio::test]
async fn a_policy_the_statement_would_push_over_20_kb_fails_clearly_and_is_left_alone() {
    let sdk = sdk().await;
    let b = bucket(&sdk, "ssl-big").await;
    // Just under the limit now, over it with the statement (about 250 bytes).
    let read = |i: usize| {
        json!({"Sid": format!("Read{i}"), "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
               "Action": "s3:GetObject", "Resource": format!("{}/team-{i}/{}", arn(&b), "x".repeat(60))})
    };
    let mut statements: Vec<Value> = Vec::new();
    let document = |statements: &Vec<Value>| json!({"Version": "2012-10-17", "Statement": statements}).to_string();
    let mut text = document(&statements);
    while text.len() + canonical_deny(&b).to_string().len() < 20 * 1024 {
        statements.push(read(statements.len()));
        text = document(&statements);
    }
    assert!(text.len() <= 20 * 1024, "{}", text.len());
    put_policy(&sdk, &b, &text).await;
    let outcome = fix(&sdk, &b, json!({})).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{outcome:?}");
    assert!(outcome.message.contains("20 KB") && outcome.message.contains("nothing was changed"), "{}", outcome.message);
    assert_eq!(policy_text(&sdk, &b).await.as_deref(), Some(text.as_str()));
}

#[tokio::test]
async fn a_bucket_that_is_gone_fails_clearly() {
    let sdk = sdk().await;
    let outcome = fix(&sdk, &unique("ssl-gone"), json!({})).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{outcome:?}");
    assert!(outcome.message.contains("does not exist"), "{}", outcome.message);
}

/// What moto cannot show: it is consistent at once.
mod aws_behaviour {
    use super::*;
    use aws_sdk_s3::operation::get_bucket_policy::{GetBucketPolicyError, GetBucketPolicyOutput};
    use aws_sdk_s3::operation::get_bucket_website::GetBucketWebsiteError;
    use aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn mocked_sdk() -> SdkConfig {
        SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new("us-east-1")).build()
    }

    fn error_meta(code: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder().code(code).message(code).build()
    }

    /// S3 is eventually consistent: a read-back that still shows the old policy is InProgress,
    /// and the next turn appends to what it then reads, once (never a duplicate).
    #[tokio::test]
    async fn a_read_back_that_lags_the_put_is_in_progress_and_converges_without_a_duplicate() {
        let bucket = "lagging-bucket";
        let old = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::lagging-bucket/*"}]}"#;
        let expected = fix_s3_restrict_ssl_requests_only::plan(bucket, &arn(bucket), Some(old));
        let fix_s3_restrict_ssl_requests_only::Plan::Add { policy: new, .. } = expected else { panic!("{expected:?}") };
        // Reads: turn 1 (before the put, the read-back) and turn 2 (before) see the old policy;
        // turn 2's read-back and turn 3 see the new one.
        let (o, n) = (old.to_string(), new.clone());
        let get = mock!(aws_sdk_s3::Client::get_bucket_policy)
            .sequence()
            .output(move || GetBucketPolicyOutput::builder().policy(o.clone()).build())
            .times(3)
            .output(move || GetBucketPolicyOutput::builder().policy(n.clone()).build())
            .repeatedly()
            .build();
        let website = mock!(aws_sdk_s3::Client::get_bucket_website)
            .then_error(|| GetBucketWebsiteError::generic(error_meta("NoSuchWebsiteConfiguration")));
        let want = new.clone();
        let put = mock!(aws_sdk_s3::Client::put_bucket_policy)
            .match_requests(move |r| r.policy() == Some(want.as_str()) && r.confirm_remove_self_bucket_access() == Some(false))
            .then_output(|| PutBucketPolicyOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get, &website, &put]);
        let runner = FixRunner::new(Arc::new(S3RestrictSslRequestsOnly), &mocked_sdk(), None).with_client(client);
        let req = FixRequest::decode(&SPEC, &payload(bucket, json!({}))).unwrap();

        let first = runner.step_request(&req).await;
        assert_eq!(first.status, FixStatus::InProgress, "{first:?}");
        let second = runner.step_request(&req).await;
        assert_eq!(second.status, FixStatus::Succeeded, "{second:?}");
        let third = runner.step_request(&req).await;
        assert_eq!(third.status, FixStatus::Succeeded, "{third:?}");
        assert!(third.changes.is_empty(), "{third:?}");
        assert_eq!(put.num_calls(), 2, "each put carried the old policy plus one statement: the same document");
    }

    /// An oversized notification carries no item: without a history item (here Config answers
    /// ResourceNotDiscovered) the live policy on the stand-in is read and judged.
    #[tokio::test]
    async fn an_oversized_change_without_history_reads_the_live_policy() {
        use aws_sdk_config::operation::get_resource_config_history::GetResourceConfigHistoryError;
        use aws_sdk_config::operation::put_evaluations::PutEvaluationsOutput;
        use aws_sdk_config::types::ComplianceType;
        use aws_sdk_config::types::error::ResourceNotDiscoveredException;
        let sdk = sdk().await;
        let b = bucket(&sdk, "ssl-oversized").await;
        put_policy(&sdk, &b, &json!({"Version": "2012-10-17", "Statement": [canonical_deny(&b)]}).to_string()).await;
        let history = mock!(aws_sdk_config::Client::get_resource_config_history).then_error(|| {
            GetResourceConfigHistoryError::ResourceNotDiscoveredException(
                ResourceNotDiscoveredException::builder().message("not recorded").build(),
            )
        });
        let expected = b.clone();
        let put = mock!(aws_sdk_config::Client::put_evaluations)
            .match_requests(move |r| {
                r.evaluations().len() == 1
                    && r.evaluations()[0].compliance_resource_id() == expected
                    && r.evaluations()[0].compliance_type() == &ComplianceType::Compliant
            })
            .then_output(|| PutEvaluationsOutput::builder().build());
        let config = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&history, &put]);
        let runner = atrest::RuleRunner::new(Arc::new(S3BucketSslRequestsOnly), &sdk).with_client(config);
        let event = adapt_event(load_event(&format!("{RULE_DIR}/oversized.json")), "rule-ssl-oversized", |inv| {
            inv["configurationItemSummary"]["resourceId"] = json!(b);
        });
        let response = runner.handle_lambda(event).await.unwrap();
        assert_eq!(response["Evaluations"], 1, "{response}");
        assert_eq!((history.num_calls(), put.num_calls()), (1, 1));
    }

    /// S3 validates a policy when it is put (MalformedPolicy, e.g. a principal that does not
    /// exist); moto accepts any text. The run fails with S3's reason and never loops.
    #[tokio::test]
    async fn a_policy_s3_refuses_fails_the_run_with_s3s_reason() {
        let get =
            mock!(aws_sdk_s3::Client::get_bucket_policy).then_error(|| GetBucketPolicyError::generic(error_meta("NoSuchBucketPolicy")));
        let website = mock!(aws_sdk_s3::Client::get_bucket_website)
            .then_error(|| GetBucketWebsiteError::generic(error_meta("NoSuchWebsiteConfiguration")));
        let put = mock!(aws_sdk_s3::Client::put_bucket_policy).then_error(|| {
            aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyError::generic(
                aws_smithy_types::error::ErrorMetadata::builder().code("MalformedPolicy").message("Invalid principal in policy").build(),
            )
        });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get, &website, &put]);
        let runner = FixRunner::new(Arc::new(S3RestrictSslRequestsOnly), &mocked_sdk(), None).with_client(client);
        let outcome = runner.step_request(&FixRequest::decode(&SPEC, &payload("refused-bucket", json!({}))).unwrap()).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{outcome:?}");
        assert!(outcome.message.contains("MalformedPolicy") || outcome.message.contains("Invalid principal"), "{}", outcome.message);
        assert_eq!(put.num_calls(), 1);
    }

    /// GetBucketPolicy without a policy is the error NoSuchBucketPolicy (404), not an empty answer.
    #[tokio::test]
    async fn no_such_bucket_policy_means_none_and_a_new_policy_is_put() {
        let bucket = "fresh-bucket";
        let get = mock!(aws_sdk_s3::Client::get_bucket_policy)
            .sequence()
            .error(|| GetBucketPolicyError::generic(error_meta("NoSuchBucketPolicy")))
            .output(|| {
                GetBucketPolicyOutput::builder()
                    .policy(json!({"Version": "2012-10-17", "Statement": [canonical_deny("fresh-bucket")]}).to_string())
                    .build()
            })
            .repeatedly()
            .build();
        let website = mock!(aws_sdk_s3::Client::get_bucket_website)
            .then_error(|| GetBucketWebsiteError::generic(error_meta("NoSuchWebsiteConfiguration")));
        let put = mock!(aws_sdk_s3::Client::put_bucket_policy).then_output(|| PutBucketPolicyOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get, &website, &put]);
        let runner = FixRunner::new(Arc::new(S3RestrictSslRequestsOnly), &mocked_sdk(), None).with_client(client);
        let outcome = runner.step_request(&FixRequest::decode(&SPEC, &payload(bucket, json!({}))).unwrap()).await;
        assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
        assert!(outcome.changes[0].contains("as a new policy"), "{:?}", outcome.changes);
        assert_eq!(put.num_calls(), 1);
    }
}
