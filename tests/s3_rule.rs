//! The S3 default-encryption rules end to end against the local stand-in, over HTTP, with the
//! real SDK: Config event in → evaluation stored in Config. `s3-bucket-server-side-encryption-enabled`
//! first, then `s3-default-encryption-kms` (same items and helpers; keys named by alias resolved
//! with DescribeKey).

use std::sync::Arc;

use atrest::config_api::{self, Delivery};
use atrest::event::Invocation;
use atrest::{Compliance, Evaluation, RuleRunner, Verdict};
use atrest_testkit::{adapt_event, load_event, result_for, results_in_config, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use aws_smithy_types::DateTime;
use rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled;
use rule_s3_default_encryption_kms::S3DefaultEncryptionKms;
use serde_json::{Value, json};

const DIR: &str = "s3-bucket-server-side-encryption-enabled";
const KMS_DIR: &str = "s3-default-encryption-kms";

fn runner(sdk: &SdkConfig) -> RuleRunner {
    RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), sdk)
}

fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    atrest::clients::s3(sdk)
}

async fn create_bucket(sdk: &SdkConfig, name: &str) {
    s3(sdk).create_bucket().bucket(name).send().await.expect("CreateBucket");
}

async fn encrypt(sdk: &SdkConfig, bucket: &str, algorithm: ServerSideEncryption, key: Option<&str>) {
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(algorithm)
                .set_kms_master_key_id(key.map(str::to_string))
                .build()
                .unwrap(),
        )
        .build();
    s3(sdk)
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap())
        .send()
        .await
        .expect("PutBucketEncryption");
}

async fn tag(sdk: &SdkConfig, bucket: &str, key: &str, value: &str) {
    s3(sdk)
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(Tagging::builder().tag_set(Tag::builder().key(key).value(value).build().unwrap()).build().unwrap())
        .send()
        .await
        .expect("PutBucketTagging");
}

/// Sends a sample event (renamed for this test) through the Lambda handler.
async fn invoke(sdk: &SdkConfig, event: Value) -> Value {
    runner(sdk).handle_lambda(event).await.expect("the handler answers")
}

fn rename_item(bucket: &str) -> impl FnOnce(&mut Value) + '_ {
    move |invoking| {
        let item = &mut invoking["configurationItem"];
        item["resourceId"] = json!(bucket);
        item["resourceName"] = json!(bucket);
        item["ARN"] = json!(format!("arn:aws:s3:::{bucket}"));
    }
}

#[tokio::test]
async fn change_events_are_judged_from_the_item_and_stored_in_config() {
    let sdk = sdk().await;
    let rule = unique("rule-change");
    let unencrypted = unique("plain");
    let encrypted = unique("sse");
    // No bucket exists for these names: the verdict must come from the item alone.
    let response = invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-unencrypted.json")), &rule, rename_item(&unencrypted))).await;
    assert_eq!(response["Evaluations"], 1, "{response}");
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-sse-s3.json")), &rule, rename_item(&encrypted))).await;

    let stored = result_for(&sdk, &rule, &unencrypted).await.expect("stored");
    assert_eq!(stored.compliance, "NON_COMPLIANT");
    assert_eq!(stored.resource_type, "AWS::S3::Bucket");
    assert!(stored.annotation.unwrap().contains("no default encryption"));
    assert_eq!(result_for(&sdk, &rule, &encrypted).await.unwrap().compliance, "COMPLIANT");
}

#[tokio::test]
async fn the_ordering_timestamp_is_the_item_capture_time() {
    let sdk = sdk().await;
    let event = load_event(&format!("{DIR}/change-unencrypted.json"));
    let invocation = Invocation::decode(&event).unwrap();
    let report = runner(&sdk).handle(&invocation, &Delivery::None).await.unwrap();
    assert_eq!(atrest::evaluation::format_time(&report.evaluations[0].ordering_timestamp), "2026-11-20T10:00:00Z");
}

#[tokio::test]
async fn deleted_and_left_scope_items_are_not_applicable() {
    let sdk = sdk().await;
    let rule = unique("rule-scope");
    let deleted = unique("deleted");
    let left = unique("left");
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-deleted.json")), &rule, rename_item(&deleted))).await;
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-left-scope.json")), &rule, rename_item(&left))).await;
    let results = results_in_config(&sdk, &rule).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|r| r.compliance == "NOT_APPLICABLE"), "{results:?}");
    assert!(result_for(&sdk, &rule, &left).await.unwrap().annotation.unwrap().contains("left the rule's scope"));
}

#[tokio::test]
async fn exempt_tag_makes_a_resource_not_applicable_in_both_tag_shapes() {
    let sdk = sdk().await;
    let rule = unique("rule-exempt");
    let as_map = unique("exempt-map");
    let as_list = unique("exempt-list");
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-exempt.json")), &rule, rename_item(&as_map))).await;
    let list_event = adapt_event(load_event(&format!("{DIR}/change-exempt.json")), &rule, |inv| {
        rename_item(&as_list)(inv);
        inv["configurationItem"]["tags"] = json!([{"key": "atrest:exempt", "value": "TRUE"}]);
    });
    invoke(&sdk, list_event).await;
    for bucket in [&as_map, &as_list] {
        let r = result_for(&sdk, &rule, bucket).await.expect("stored");
        assert_eq!(r.compliance, "NOT_APPLICABLE");
        assert!(r.annotation.unwrap().contains("atrest:exempt=true"));
    }
    // A custom exemption key replaces the default one.
    let custom = adapt_event(load_event(&format!("{DIR}/change-exempt.json")), &rule, rename_item(&as_map));
    let mut custom = custom;
    custom["ruleParameters"] = json!("{\"exemptTagKey\": \"security:skip\"}");
    invoke(&sdk, custom).await;
    assert_eq!(result_for(&sdk, &rule, &as_map).await.unwrap().compliance, "NON_COMPLIANT");
}

#[tokio::test]
async fn periodic_sweep_judges_live_buckets_and_clears_stale_results() {
    let sdk = sdk().await;
    let rule = unique("rule-periodic");
    // Every bucket has SSE-S3 as its base level since January 2023 (the stand-in does as AWS
    // does), so a bucket falls short only of a stronger requirement: this sweep asks for KMS.
    let base = unique("sweep-base");
    let kms = unique("sweep-kms");
    let exempt = unique("sweep-exempt");
    for b in [&base, &kms, &exempt] {
        create_bucket(&sdk, b).await;
    }
    encrypt(&sdk, &kms, ServerSideEncryption::AwsKms, None).await;
    tag(&sdk, &exempt, "atrest:exempt", "true").await;

    // An earlier run judged a bucket that has since been deleted.
    let gone = unique("sweep-gone");
    let old = Evaluation::new("AWS::S3::Bucket", &gone, Verdict::compliant("was fine"), DateTime::from_secs(1_700_000_000));
    config_api::put_evaluations(&atrest::clients::config(&sdk), &Delivery::Put { result_token: rule.clone() }, &[old]).await.unwrap();

    let mut sweep = adapt_event(load_event(&format!("{DIR}/scheduled.json")), &rule, |_| {});
    sweep["ruleParameters"] = json!("{\"requiredAlgorithm\": \"aws:kms\"}");
    let response = invoke(&sdk, sweep).await;
    assert!(response["StaleCleared"].as_u64().unwrap() >= 1, "{response}");
    let base_result = result_for(&sdk, &rule, &base).await.unwrap();
    assert_eq!(base_result.compliance, "NON_COMPLIANT");
    assert!(base_result.annotation.unwrap().contains("Default encryption is AES256, but aws:kms"));
    assert_eq!(result_for(&sdk, &rule, &kms).await.unwrap().compliance, "COMPLIANT");
    assert_eq!(result_for(&sdk, &rule, &exempt).await.unwrap().compliance, "NOT_APPLICABLE");
    let stale = result_for(&sdk, &rule, &gone).await.unwrap();
    assert_eq!(stale.compliance, "NOT_APPLICABLE");
    assert!(stale.annotation.unwrap().contains("no longer exists"));
}

#[tokio::test]
async fn a_bucket_nobody_configured_has_sse_s3_and_meets_the_default_rule() {
    // AWS applies SSE-S3 to every bucket (S3 User Guide, "Setting default server-side encryption
    // behavior"); with no requiredAlgorithm the rule accepts it, as the managed rule does.
    let sdk = sdk().await;
    let rule = unique("rule-base");
    let base = unique("sweep-default");
    create_bucket(&sdk, &base).await;
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/scheduled.json")), &rule, |_| {})).await;
    assert_eq!(result_for(&sdk, &rule, &base).await.unwrap().compliance, "COMPLIANT");
}

#[tokio::test]
async fn more_than_a_hundred_evaluations_are_sent_in_chunks() {
    let sdk = sdk().await;
    let rule = unique("rule-chunks");
    let evaluations: Vec<Evaluation> = (0..250)
        .map(|i| {
            Evaluation::new("AWS::S3::Bucket", &format!("bucket-{i:03}"), Verdict::non_compliant("x"), DateTime::from_secs(1_795_168_800))
        })
        .collect();
    // The stand-in rejects any call with more than 100, as Config does.
    config_api::put_evaluations(&atrest::clients::config(&sdk), &Delivery::Put { result_token: rule.clone() }, &evaluations).await.unwrap();
    assert_eq!(results_in_config(&sdk, &rule).await.len(), 250);
}

#[tokio::test]
async fn test_mode_validates_without_storing() {
    let sdk = sdk().await;
    let rule = unique("rule-testmode");
    let event = adapt_event(load_event(&format!("{DIR}/change-unencrypted.json")), &rule, rename_item("testmode-bucket"));
    let invocation = Invocation::decode(&event).unwrap();
    let report = runner(&sdk).handle(&invocation, &Delivery::TestMode).await.unwrap();
    assert_eq!(report.evaluations[0].compliance_type, Compliance::NonCompliant);
    assert!(results_in_config(&sdk, &rule).await.is_empty());
}

#[tokio::test]
async fn bad_input_gets_a_customer_error_and_posts_nothing() {
    let sdk = sdk().await;
    let rule = unique("rule-bad");
    let cases = [
        ("{\"requiredAlgorithm\": \"DES\"}", "requiredAlgorithm"),
        ("{\"kmsKeyArn\": \"x\"}", "unknown parameter kmsKeyArn"),
        ("{not json", "ruleParameters is not valid JSON"),
    ];
    for (params, expected) in cases {
        let mut event = adapt_event(load_event(&format!("{DIR}/change-unencrypted.json")), &rule, rename_item("bad-params-bucket"));
        event["ruleParameters"] = json!(params);
        let response = invoke(&sdk, event).await;
        assert!(response["customerErrorMessage"].as_str().unwrap().contains(expected), "{response}");
    }
    let mut no_token = adapt_event(load_event(&format!("{DIR}/change-unencrypted.json")), &rule, rename_item("bad-params-bucket"));
    no_token.as_object_mut().unwrap().remove("resultToken");
    assert!(invoke(&sdk, no_token).await["customerErrorMessage"].as_str().unwrap().contains("resultToken"));
    assert!(invoke(&sdk, json!({"invokingEvent": 17})).await["customerErrorCode"] == "MalformedEvent");
    assert!(results_in_config(&sdk, &rule).await.is_empty());
}

// ---- s3-default-encryption-kms

async fn invoke_kms(sdk: &SdkConfig, event: Value) -> Value {
    RuleRunner::new(Arc::new(S3DefaultEncryptionKms), sdk).handle_lambda(event).await.expect("the handler answers")
}

#[tokio::test]
async fn kms_rule_sse_s3_and_no_default_are_non_compliant_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("kms-rule-change");
    let (plain, sse_s3) = (unique("plain"), unique("sse-s3"));
    // No bucket exists for these names: the verdict must come from the item alone.
    invoke_kms(&sdk, adapt_event(load_event(&format!("{KMS_DIR}/change-unencrypted.json")), &rule, rename_item(&plain))).await;
    invoke_kms(&sdk, adapt_event(load_event(&format!("{KMS_DIR}/change-sse-s3.json")), &rule, rename_item(&sse_s3))).await;
    assert!(result_for(&sdk, &rule, &plain).await.unwrap().annotation.unwrap().contains("no default encryption"));
    let r = result_for(&sdk, &rule, &sse_s3).await.unwrap();
    assert_eq!(r.compliance, "NON_COMPLIANT");
    assert!(r.annotation.unwrap().contains("Default encryption is AES256, but aws:kms or aws:kms:dsse is required"));
}

#[tokio::test]
async fn kms_rule_sweep_checks_kms_keys_named_in_any_spelling() {
    let sdk = sdk().await;
    let kms = atrest::clients::kms(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let alias = format!("alias/{}", unique("approved"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.unwrap();
    let other = kms.create_key().send().await.unwrap().key_metadata.unwrap();

    let (approved, unapproved, sse_s3) = (unique("kms-approved"), unique("kms-other"), unique("kms-sse-s3"));
    for b in [&approved, &unapproved, &sse_s3] {
        create_bucket(&sdk, b).await;
    }
    // The bucket names the key by ARN; the rule's list names it by alias.
    encrypt(&sdk, &approved, ServerSideEncryption::AwsKms, key.arn()).await;
    encrypt(&sdk, &unapproved, ServerSideEncryption::AwsKms, other.arn()).await;

    let rule = unique("kms-rule-sweep");
    let mut sweep = adapt_event(load_event(&format!("{KMS_DIR}/scheduled.json")), &rule, |_| {});
    sweep["ruleParameters"] = json!(json!({ "kmsKeyArns": alias }).to_string());
    invoke_kms(&sdk, sweep).await;
    assert_eq!(result_for(&sdk, &rule, &approved).await.unwrap().compliance, "COMPLIANT");
    let r = result_for(&sdk, &rule, &unapproved).await.unwrap();
    assert_eq!(r.compliance, "NON_COMPLIANT");
    assert!(r.annotation.unwrap().contains("not in kmsKeyArns"));
    // Every bucket has SSE-S3 as its base level (the stand-in does as AWS does): not KMS.
    assert_eq!(result_for(&sdk, &rule, &sse_s3).await.unwrap().compliance, "NON_COMPLIANT");
}
