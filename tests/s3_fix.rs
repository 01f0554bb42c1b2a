//! The S3 fix against the local stand-in: the bucket ends encrypted, re-runs converge, dry runs
//! change nothing, nothing the user had is touched, and the operator gets a readable email.

use std::sync::Arc;

use atrest::alerts::AlertPublisher;
use atrest::remediation::DriveOptions;
use atrest::{FixRequest, FixRunner, FixStatus};
use atrest_testkit::{load_event, sdk, sns_messages, topic, unique};
use aws_config::SdkConfig;
use fix_s3_enable_default_encryption::{S3EnableDefaultEncryption, SPEC};
use serde_json::{Value, json};

fn runner(sdk: &SdkConfig, topic_arn: Option<&str>) -> FixRunner {
    FixRunner::new(Arc::new(S3EnableDefaultEncryption), sdk, topic_arn.map(|t| AlertPublisher::new(sdk, t)))
}

fn payload(bucket: &str, extra: Value) -> Value {
    let mut p = load_event("fix-s3-enable-default-encryption/ssm-payload-sse-s3.json");
    p["ResourceId"] = json!(bucket);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// (algorithm, key, bucket key) as S3 reports them now; `None` if S3 reports no default
/// encryption, which no bucket has had since January 2023.
async fn encryption(sdk: &SdkConfig, bucket: &str) -> Option<(String, Option<String>, bool)> {
    match atrest::clients::s3(sdk).get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => {
            let rule = out.server_side_encryption_configuration().unwrap().rules().first().unwrap().clone();
            let d = rule.apply_server_side_encryption_by_default().unwrap();
            Some((
                d.sse_algorithm().as_str().to_string(),
                d.kms_master_key_id().map(str::to_string),
                rule.bucket_key_enabled().unwrap_or(false),
            ))
        }
        Err(_) => None,
    }
}

async fn bucket_with_object(sdk: &SdkConfig, prefix: &str) -> String {
    let bucket = unique(prefix);
    let s3 = atrest::clients::s3(sdk);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("data/report.csv")
        .body(b"a,b\n1,2\n".to_vec().into())
        .metadata("owner", "finance")
        .send()
        .await
        .unwrap();
    bucket
}

async fn object_bytes(sdk: &SdkConfig, bucket: &str) -> (Vec<u8>, Option<String>) {
    let out = atrest::clients::s3(sdk).get_object().bucket(bucket).key("data/report.csv").send().await.unwrap();
    let owner = out.metadata().and_then(|m| m.get("owner").cloned());
    (out.body.collect().await.unwrap().into_bytes().to_vec(), owner)
}

/// What every bucket has since January 2023, before anyone configures it.
fn sse_s3_base() -> Option<(String, Option<String>, bool)> {
    Some(("AES256".into(), None, false))
}

#[tokio::test]
async fn sse_s3_is_already_the_base_level_of_every_bucket() {
    let sdk = sdk().await;
    let bucket = bucket_with_object(&sdk, "fix-base").await;
    assert_eq!(encryption(&sdk, &bucket).await, sse_s3_base());
    let outcome = runner(&sdk, None).step(&payload(&bucket, json!({}))).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert!(outcome.changes.is_empty(), "{outcome:?}");
    assert!(outcome.message.contains("already has default encryption"), "{}", outcome.message);
}

#[tokio::test]
async fn encrypts_the_bucket_idempotently_and_keeps_the_data() {
    let sdk = sdk().await;
    let bucket = bucket_with_object(&sdk, "fix-sse").await;
    let topic_arn = topic(&sdk, &unique("alerts")).await;
    let runner = runner(&sdk, Some(&topic_arn));
    let kms = json!({"SSEAlgorithm": "aws:kms"});

    let first = runner.step(&payload(&bucket, kms.clone())).await;
    assert_eq!(first.status, FixStatus::Succeeded, "{first:?}");
    assert_eq!(first.changes.len(), 1);
    assert_eq!(encryption(&sdk, &bucket).await.map(|(algorithm, _, _)| algorithm), Some("aws:kms".into()));

    let second = runner.step(&payload(&bucket, kms)).await;
    assert_eq!(second.status, FixStatus::Succeeded);
    assert!(second.changes.is_empty(), "a re-run changes nothing: {second:?}");
    assert!(second.message.contains("already has default encryption"));

    assert_eq!(object_bytes(&sdk, &bucket).await, (b"a,b\n1,2\n".to_vec(), Some("finance".into())));

    let messages = sns_messages(&topic_arn).await;
    assert_eq!(messages.len(), 2, "one email per finished run: {messages:?}");
    let (subject, body) = &messages[0];
    let subject = subject.as_deref().unwrap();
    assert!(subject.starts_with("[atrest] fixed: S3 bucket"), "{subject}");
    assert!(subject.len() < 100 && subject.is_ascii());
    assert!(body.contains(&bucket) && body.contains("SSE-KMS") && body.contains("Existing objects were not rewritten"), "{body}");
    assert!(body.contains("4f1c8a52-0000-4000-8000-000000000001"), "the SSM execution id is in the email: {body}");
    assert!(!body.trim_start().starts_with('{'), "no JSON blobs in emails");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let sdk = sdk().await;
    let bucket = bucket_with_object(&sdk, "fix-dry").await;
    let topic_arn = topic(&sdk, &unique("alerts")).await;
    let outcome = runner(&sdk, Some(&topic_arn)).step(&payload(&bucket, json!({"DryRun": "true", "SSEAlgorithm": "aws:kms"}))).await;
    assert_eq!(outcome.status, FixStatus::Succeeded);
    assert!(outcome.dry_run);
    assert!(outcome.message.contains("would set"), "{}", outcome.message);
    assert_eq!(outcome.changes.len(), 1);
    assert_eq!(encryption(&sdk, &bucket).await, sse_s3_base());
    assert!(sns_messages(&topic_arn).await.is_empty(), "dry runs send no email");
}

#[tokio::test]
async fn sse_kms_with_an_alias_uses_the_key_arn_and_a_bucket_key() {
    let sdk = sdk().await;
    let kms = atrest::clients::kms(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata().unwrap().clone();
    let alias = format!("alias/{}", unique("data"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.unwrap();
    // The bucket starts from SSE-S3, every bucket's base level: asking for KMS must upgrade it.
    let bucket = bucket_with_object(&sdk, "fix-kms").await;

    let p = payload(&bucket, json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": alias}));
    let req = FixRequest::decode(&SPEC, &p).unwrap();
    let outcome = runner(&sdk, None).drive(&req, &DriveOptions { max_steps: 5, pause: std::time::Duration::ZERO }).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert_eq!(encryption(&sdk, &bucket).await, Some(("aws:kms".into(), Some(key.arn().unwrap().to_string()), true)));
    // Asking again, by key id this time, is already satisfied.
    let again = runner(&sdk, None).step(&payload(&bucket, json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": key.key_id()}))).await;
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test]
async fn bad_parameters_fail_fast_naming_the_parameter_and_change_nothing() {
    let sdk = sdk().await;
    let bucket = bucket_with_object(&sdk, "fix-bad").await;
    let cases = [
        (json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": "alias/does-not-exist"}), "KmsKeyId"),
        (json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": "arn:aws:s3:::not-a-key"}), "KmsKeyId"),
        (json!({"SSEAlgorithm": "AES256", "KmsKeyId": "alias/aws/s3"}), "KmsKeyId"),
        (json!({"SSEAlgorithm": "DES"}), "SSEAlgorithm"),
        (json!({"BucketName": "x"}), "unknown parameter BucketName"),
        (json!({"DryRun": "maybe"}), "DryRun"),
    ];
    for (extra, expected) in cases {
        let outcome = runner(&sdk, None).step(&payload(&bucket, extra.clone())).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{extra}");
        assert!(outcome.message.contains(expected), "{extra}: {}", outcome.message);
    }
    assert_eq!(encryption(&sdk, &bucket).await, sse_s3_base());
}

#[tokio::test]
async fn a_missing_bucket_fails_clearly() {
    let sdk = sdk().await;
    let outcome = runner(&sdk, None).step(&payload(&unique("never-created"), json!({}))).await;
    assert_eq!(outcome.status, FixStatus::Failed);
    assert!(outcome.message.contains("does not exist"), "{}", outcome.message);
}
