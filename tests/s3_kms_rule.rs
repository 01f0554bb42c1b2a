//! `s3-default-encryption-kms` end to end against the local stand-in: Config events in,
//! evaluations stored in Config; keys named by alias resolved with DescribeKey.

use std::sync::Arc;

use atrest::RuleRunner;
use atrest_testkit::{adapt_event, load_event, result_for, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_s3::types::{ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule};
use rule_s3_default_encryption_kms::S3DefaultEncryptionKms;
use serde_json::{Value, json};

const DIR: &str = "s3-default-encryption-kms";

async fn invoke(sdk: &SdkConfig, event: Value) -> Value {
    RuleRunner::new(Arc::new(S3DefaultEncryptionKms), sdk).handle_lambda(event).await.expect("the handler answers")
}

fn rename_item(bucket: &str) -> impl FnOnce(&mut Value) + '_ {
    move |invoking| {
        let item = &mut invoking["configurationItem"];
        item["resourceId"] = json!(bucket);
        item["resourceName"] = json!(bucket);
        item["ARN"] = json!(format!("arn:aws:s3:::{bucket}"));
    }
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
    atrest::clients::s3(sdk)
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap())
        .send()
        .await
        .expect("PutBucketEncryption");
}

#[tokio::test]
async fn sse_s3_and_no_default_are_non_compliant_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("kms-rule-change");
    let (plain, sse_s3) = (unique("plain"), unique("sse-s3"));
    // No bucket exists for these names: the verdict must come from the item alone.
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-unencrypted.json")), &rule, rename_item(&plain))).await;
    invoke(&sdk, adapt_event(load_event(&format!("{DIR}/change-sse-s3.json")), &rule, rename_item(&sse_s3))).await;
    assert!(result_for(&sdk, &rule, &plain).await.unwrap().annotation.unwrap().contains("no default encryption"));
    let r = result_for(&sdk, &rule, &sse_s3).await.unwrap();
    assert_eq!(r.compliance, "NON_COMPLIANT");
    assert!(r.annotation.unwrap().contains("Default encryption is AES256, but aws:kms or aws:kms:dsse is required"));
}

#[tokio::test]
async fn a_sweep_checks_kms_keys_named_in_any_spelling() {
    let sdk = sdk().await;
    let kms = atrest::clients::kms(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let alias = format!("alias/{}", unique("approved"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.unwrap();
    let other = kms.create_key().send().await.unwrap().key_metadata.unwrap();

    let (approved, unapproved, sse_s3) = (unique("kms-approved"), unique("kms-other"), unique("kms-sse-s3"));
    for b in [&approved, &unapproved, &sse_s3] {
        atrest::clients::s3(&sdk).create_bucket().bucket(b).send().await.unwrap();
    }
    // The bucket names the key by ARN; the rule's list names it by alias.
    encrypt(&sdk, &approved, ServerSideEncryption::AwsKms, key.arn()).await;
    encrypt(&sdk, &unapproved, ServerSideEncryption::AwsKms, other.arn()).await;

    let rule = unique("kms-rule-sweep");
    let mut sweep = adapt_event(load_event(&format!("{DIR}/scheduled.json")), &rule, |_| {});
    sweep["ruleParameters"] = json!(json!({ "kmsKeyArns": alias }).to_string());
    invoke(&sdk, sweep).await;
    assert_eq!(result_for(&sdk, &rule, &approved).await.unwrap().compliance, "COMPLIANT");
    let r = result_for(&sdk, &rule, &unapproved).await.unwrap();
    assert_eq!(r.compliance, "NON_COMPLIANT");
    assert!(r.annotation.unwrap().contains("not in kmsKeyArns"));
    // Every bucket has SSE-S3 as its base level (the stand-in does as AWS does): not KMS.
    assert_eq!(result_for(&sdk, &rule, &sse_s3).await.unwrap().compliance, "NON_COMPLIANT");
}
