//! Re-encrypting existing S3 objects against the local stand-in: every property a copy must carry
//! is equal afterwards and the bytes are the same; odd keys, empty objects, several list pages and
//! multipart copies end right; a run stopped by its time budget resumes and copies each object
//! exactly once (counted from the versions a versioned bucket keeps); a dry run changes nothing;
//! the rule counts what it checked.
//!
//! Objects stored before 2023 without encryption are made with the stand-in's seeding endpoint
//! (`make_legacy_objects`): S3 has encrypted every new object since 2023-01-05.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atrest::remediation::DriveOptions;
use atrest::{Compliance, ConfigRule, FixOutcome, FixRequest, FixRunner, FixStatus, RuleContext};
use atrest_testkit::{make_legacy_objects, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_s3::types::{BucketVersioningStatus, ObjectCannedAcl, StorageClass, VersioningConfiguration};
use fix_s3_encrypt_existing_objects::{S3EncryptExistingObjects, SPEC};
use rule_s3_bucket_objects_encrypted::S3BucketObjectsEncrypted;
use serde_json::{Value, json};

fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    atrest::clients::s3(sdk)
}

fn request(bucket: &str, extra: Value) -> FixRequest {
    let mut payload = json!({"ResourceId": bucket, "ExecutionId": "test"});
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    FixRequest::decode(&SPEC, &payload).unwrap()
}

async fn drive(sdk: &SdkConfig, worker: S3EncryptExistingObjects, req: &FixRequest) -> FixOutcome {
    FixRunner::new(Arc::new(worker), sdk, None).drive(req, &DriveOptions { max_steps: 100, pause: Duration::ZERO }).await
}

async fn bucket(sdk: &SdkConfig, prefix: &str, versioned: bool) -> String {
    let name = unique(prefix);
    s3(sdk).create_bucket().bucket(&name).send().await.unwrap();
    if versioned {
        s3(sdk)
            .put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
            .send()
            .await
            .unwrap();
    }
    name
}

async fn put(sdk: &SdkConfig, bucket: &str, key: &str, body: Vec<u8>) {
    s3(sdk).put_object().bucket(bucket).key(key).body(body.into()).send().await.unwrap();
}

/// Everything a copy must keep, as S3 reports it (encryption, ETag and dates left out).
#[derive(Debug, PartialEq)]
struct Properties {
    bytes: Vec<u8>,
    metadata: BTreeMap<String, String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    content_disposition: Option<String>,
    cache_control: Option<String>,
    expires: Option<String>,
    website_redirect: Option<String>,
    storage_class: Option<String>,
    tags: Vec<(String, String)>,
    grants: Vec<String>,
}

async fn properties(sdk: &SdkConfig, bucket: &str, key: &str) -> Properties {
    let s3 = s3(sdk);
    let head = s3.head_object().bucket(bucket).key(key).send().await.unwrap();
    let body = s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap().to_vec();
    let mut tags: Vec<(String, String)> = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    let mut grants: Vec<String> = s3
        .get_object_acl()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .map(|g| {
            let who = g.grantee().map(|w| w.id().or(w.uri()).unwrap_or_default().to_string()).unwrap_or_default();
            format!("{who}:{}", g.permission().map(|p| p.as_str()).unwrap_or_default())
        })
        .collect();
    grants.sort();
    Properties {
        bytes: body,
        metadata: head.metadata().cloned().unwrap_or_default().into_iter().collect(),
        content_type: head.content_type().map(str::to_string),
        content_encoding: head.content_encoding().map(str::to_string),
        content_language: head.content_language().map(str::to_string),
        content_disposition: head.content_disposition().map(str::to_string),
        cache_control: head.cache_control().map(str::to_string),
        expires: head.expires_string().map(str::to_string),
        website_redirect: head.website_redirect_location().map(str::to_string),
        storage_class: head.storage_class().map(|c| c.as_str().to_string()),
        tags,
        grants,
    }
}

/// (algorithm, key, bucket key) of the current version.
async fn encryption(sdk: &SdkConfig, bucket: &str, key: &str) -> (Option<String>, Option<String>, Option<bool>) {
    let head = s3(sdk).head_object().bucket(bucket).key(key).send().await.unwrap();
    (head.server_side_encryption().map(|s| s.as_str().to_string()), head.ssekms_key_id().map(str::to_string), head.bucket_key_enabled())
}

/// How many versions each key has (a versioned bucket keeps one per write).
async fn versions(sdk: &SdkConfig, bucket: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = s3(sdk)
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .unwrap();
        for v in page.versions() {
            *counts.entry(v.key().unwrap().to_string()).or_default() += 1;
        }
        if page.is_truncated() != Some(true) {
            return counts;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

#[tokio::test]
async fn copies_carry_every_property_and_the_same_bytes() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "objs-props", false).await;
    let client = s3(&sdk);
    client
        .put_object()
        .bucket(&bucket)
        .key("docs/report 2024.csv")
        .body(b"a,b\n1,2\n".to_vec().into())
        .metadata("owner", "finance")
        .metadata("review", "ok")
        .content_type("text/csv")
        .content_encoding("identity")
        .content_language("fr")
        .content_disposition("attachment; filename=\"r.csv\"")
        .cache_control("max-age=60")
        .expires(aws_smithy_types::DateTime::from_secs(1_900_000_000))
        .website_redirect_location("/elsewhere.html")
        .storage_class(StorageClass::StandardIa)
        .tagging("team=data&class=internal")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    put(&sdk, &bucket, "empty", Vec::new()).await;
    put(&sdk, &bucket, "unicode/été 東京+plus.txt", b"unicode".to_vec()).await;
    put(&sdk, &bucket, "a+b c", b"plus and space".to_vec()).await;
    client
        .put_object()
        .bucket(&bucket)
        .key("cold/archive.bin")
        .body(b"cold".to_vec().into())
        .storage_class(StorageClass::Glacier)
        .send()
        .await
        .unwrap();
    put(&sdk, &bucket, "new-since-2023.txt", b"already encrypted".to_vec()).await;
    let legacy = ["docs/report 2024.csv", "empty", "unicode/été 東京+plus.txt", "a+b c", "cold/archive.bin"];
    for key in legacy {
        assert_eq!(make_legacy_objects(&bucket, Some(key), "").await, 1);
    }
    let mut before = BTreeMap::new();
    for key in legacy.iter().filter(|k| !k.starts_with("cold/")) {
        assert_eq!(encryption(&sdk, &bucket, key).await.0, None, "{key} is seeded unencrypted");
        before.insert(*key, properties(&sdk, &bucket, key).await);
    }
    assert!(before["docs/report 2024.csv"].grants.iter().any(|g| g.contains("AllUsers")), "public-read was seeded");

    let outcome = drive(&sdk, S3EncryptExistingObjects::default(), &request(&bucket, json!({}))).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert!(outcome.message.contains("copied 4"), "{}", outcome.message);
    assert!(outcome.message.contains("1 already encrypted as required (1 of them written since 2023-01-05"), "{}", outcome.message);
    assert!(outcome.message.contains("skipped 1 (1 archived (Glacier/Deep Archive) and not restored)"), "{}", outcome.message);
    assert!(outcome.message.contains("0 failed"), "{}", outcome.message);

    for (key, was) in &before {
        assert_eq!(encryption(&sdk, &bucket, key).await.0.as_deref(), Some("AES256"), "{key}");
        assert_eq!(&properties(&sdk, &bucket, key).await, was, "{key} kept every property");
    }
    assert_eq!(encryption(&sdk, &bucket, "cold/archive.bin").await.0, None, "archived object left alone");

    // A second run finds nothing to do.
    let again = drive(&sdk, S3EncryptExistingObjects::default(), &request(&bucket, json!({}))).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{}", again.message);
    assert!(again.message.contains("copied 0"), "{}", again.message);
    assert!(again.changes.is_empty());
}

#[tokio::test]
async fn sse_kms_with_the_key_and_a_bucket_key_only_under_the_prefix() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "objs-kms", false).await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key_arn = kms.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    for key in ["in/a", "in/b", "out/c"] {
        put(&sdk, &bucket, key, key.as_bytes().to_vec()).await;
    }
    make_legacy_objects(&bucket, None, "").await;
    let outcome = drive(
        &sdk,
        S3EncryptExistingObjects::default(),
        &request(&bucket, json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": key_arn, "Prefix": "in/"})),
    )
    .await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert!(outcome.message.contains("copied 2"), "{}", outcome.message);
    for key in ["in/a", "in/b"] {
        assert_eq!(encryption(&sdk, &bucket, key).await, (Some("aws:kms".to_string()), Some(key_arn.clone()), Some(true)), "{key}");
    }
    assert_eq!(encryption(&sdk, &bucket, "out/c").await.0, None, "outside the prefix: untouched");
}

#[tokio::test]
async fn several_list_pages_and_a_multipart_copy() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "objs-pages", false).await;
    for i in 0..23 {
        put(&sdk, &bucket, &format!("k/{i:03}"), format!("object {i}").into_bytes()).await;
    }
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s3(&sdk)
        .put_object()
        .bucket(&bucket)
        .key("big/blob.bin")
        .body(big.clone().into())
        .metadata("origin", "camera")
        .content_type("application/x-blob")
        .cache_control("no-cache")
        .tagging("size=big")
        .storage_class(StorageClass::StandardIa)
        .send()
        .await
        .unwrap();
    make_legacy_objects(&bucket, None, "").await;
    let before = properties(&sdk, &bucket, "big/blob.bin").await;
    // Pages of 5 keys; objects over 6 MiB copied in 5 MiB parts (CopyObject's real limit is 5 GiB).
    let worker =
        S3EncryptExistingObjects { page_size: 5, multipart_threshold: 6 * 1024 * 1024, part_size: 5 * 1024 * 1024, ..Default::default() };
    let outcome = drive(&sdk, worker, &request(&bucket, json!({"Concurrency": "4"}))).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert!(outcome.message.contains("copied 24 (1 by multipart copy)"), "{}", outcome.message);
    for i in 0..23 {
        assert_eq!(encryption(&sdk, &bucket, &format!("k/{i:03}")).await.0.as_deref(), Some("AES256"), "k/{i:03}");
    }
    assert_eq!(encryption(&sdk, &bucket, "big/blob.bin").await.0.as_deref(), Some("AES256"));
    let after = properties(&sdk, &bucket, "big/blob.bin").await;
    assert!(after.bytes == big, "multipart copy kept the bytes");
    assert_eq!(after, before, "multipart copy kept every property");
}

/// How many objects a turn's message says it examined.
fn examined_this_turn(message: &str) -> usize {
    let after = ["This turn over ", "this last one ", "Every one of the "]
        .iter()
        .find_map(|lead| message.split_once(lead).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no count of objects in {message}"));
    after.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("no count of objects in {message}"))
}

#[tokio::test]
async fn a_run_stopped_by_its_budget_resumes_and_copies_each_object_once() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "objs-resume", true).await;
    let keys: Vec<String> = (0..150).map(|i| format!("data/{i:04}.json")).collect();
    for key in &keys {
        put(&sdk, &bucket, key, key.as_bytes().to_vec()).await;
    }
    make_legacy_objects(&bucket, None, "").await;
    // One object at a time with a budget of 150 ms: the first turn stops part-way.
    let worker = || S3EncryptExistingObjects { budget: Duration::from_millis(150), page_size: 40, ..Default::default() };
    let req = request(&bucket, json!({"Concurrency": "1"}));
    let runner = FixRunner::new(Arc::new(worker()), &sdk, None);
    let first = runner.step_request(&req).await;
    assert_eq!(first.status, FixStatus::InProgress, "{}", first.message);
    assert!(first.message.contains("Every key up to \"data/"), "{}", first.message);
    assert!(first.message.contains("Versioning is enabled"), "{}", first.message);
    let copied_first = versions(&sdk, &bucket).await.values().filter(|n| **n == 2).count();
    assert!(copied_first > 0 && copied_first < keys.len(), "first turn copied {copied_first}");
    // The continuation point is the last key the turn finished, in key order.
    assert_eq!(first.resume, Some(format!("after:{}", keys[copied_first - 1])), "{}", first.message);

    // The turns that follow, as the document runs them: each starts where the last one stopped,
    // so every object is examined once over the whole run.
    let mut examined = examined_this_turn(&first.message);
    let mut last = first;
    let outcome = loop {
        let mut next = req.clone();
        next.resume = last.resume.as_deref().and_then(|r| r.strip_prefix("after:")).map(str::to_string);
        let outcome = runner.step_request(&next).await;
        examined += examined_this_turn(&outcome.message);
        if outcome.status != FixStatus::InProgress {
            break outcome;
        }
        last = outcome;
    };
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert_eq!(examined, keys.len(), "each object examined once across turns");
    let counts = versions(&sdk, &bucket).await;
    assert_eq!(counts.len(), keys.len());
    for key in &keys {
        // The original and exactly one encrypted copy.
        assert_eq!(counts[key.as_str()], 2, "{key} copied exactly once");
        assert_eq!(encryption(&sdk, &bucket, key).await.0.as_deref(), Some("AES256"), "{key}");
    }
    assert!(outcome.message.contains("only current versions were rewritten"), "{}", outcome.message);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "objs-dry", true).await;
    for i in 0..7 {
        put(&sdk, &bucket, &format!("f{i}"), vec![i as u8; 10]).await;
    }
    make_legacy_objects(&bucket, None, "").await;
    let outcome = drive(&sdk, S3EncryptExistingObjects::default(), &request(&bucket, json!({"DryRun": "true"}))).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert!(outcome.message.starts_with("Dry run over 7 objects"), "{}", outcome.message);
    assert!(outcome.message.contains("would copy 7"), "{}", outcome.message);
    for i in 0..7 {
        assert_eq!(encryption(&sdk, &bucket, &format!("f{i}")).await.0, None);
    }
    assert!(versions(&sdk, &bucket).await.values().all(|n| *n == 1), "no new version was written");
}

#[tokio::test]
async fn a_missing_bucket_fails_with_a_clear_message() {
    let sdk = sdk().await;
    let outcome = drive(&sdk, S3EncryptExistingObjects::default(), &request(&unique("objs-gone"), json!({}))).await;
    assert_eq!(outcome.status, FixStatus::Failed);
    assert!(outcome.message.contains("does not exist"), "{}", outcome.message);
}

async fn judge(sdk: &SdkConfig, bucket: &str, params: Value) -> atrest::Verdict {
    let rule = S3BucketObjectsEncrypted;
    let raw = params.as_object().unwrap().clone().into_iter().collect();
    let ctx = RuleContext::new(sdk, rule.spec().parse_params(&raw).unwrap());
    let item = rule.fetch_item(&ctx, "AWS::S3::Bucket", bucket).await.unwrap().unwrap();
    rule.judge(&ctx, &item).await.unwrap()
}

#[tokio::test]
async fn the_rule_counts_what_it_checked() {
    let sdk = sdk().await;
    let bucket = bucket(&sdk, "objs-rule", false).await;
    assert_eq!(judge(&sdk, &bucket, json!({})).await.compliance, Compliance::Compliant, "empty bucket");
    for i in 0..12 {
        put(&sdk, &bucket, &format!("o/{i:02}"), vec![1]).await;
    }
    for i in 0..5 {
        make_legacy_objects(&bucket, Some(&format!("o/{i:02}")), "").await;
    }
    let all = judge(&sdk, &bucket, json!({})).await;
    assert_eq!(all.compliance, Compliance::NonCompliant);
    assert!(all.annotation.starts_with("5 of all 12 objects checked are without server-side encryption"), "{}", all.annotation);
    let limited = judge(&sdk, &bucket, json!({"maxObjectsPerBucket": "3"})).await;
    assert_eq!(limited.compliance, Compliance::NonCompliant);
    assert!(limited.annotation.starts_with("3 of the first 3 objects (in key order)"), "{}", limited.annotation);
    let kms = judge(&sdk, &bucket, json!({"requireKms": "true"})).await;
    assert!(kms.annotation.starts_with("12 of all 12 objects checked are not under SSE-KMS"), "{}", kms.annotation);

    let fixed = drive(&sdk, S3EncryptExistingObjects::default(), &request(&bucket, json!({}))).await;
    assert_eq!(fixed.status, FixStatus::Succeeded, "{}", fixed.message);
    let after = judge(&sdk, &bucket, json!({})).await;
    assert_eq!(after.compliance, Compliance::Compliant, "{}", after.annotation);
    assert_eq!(after.annotation, "Checked all 12 objects: every one is encrypted.");
}
