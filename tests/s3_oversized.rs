//! Oversized change notifications: the item is re-fetched with `GetResourceConfigHistory`.
//!
//! moto answers that call for S3 with timestamps the SDK rejects ("2026-11-24 03:20:00" where
//! AWS sends epoch seconds), so the Config side is mocked with `aws-smithy-mocks` in AWS's real
//! shape — `configuration` and each supplementary value as JSON strings — while S3 stays the
//! stand-in where a live read is needed.

use std::collections::HashMap;
use std::sync::Arc;

use atrest::RuleRunner;
use atrest_testkit::{adapt_event, load_event, sdk, unique};
use aws_sdk_config::operation::get_resource_config_history::{GetResourceConfigHistoryError, GetResourceConfigHistoryOutput};
use aws_sdk_config::operation::put_evaluations::PutEvaluationsOutput;
use aws_sdk_config::types::error::ResourceNotDiscoveredException;
use aws_sdk_config::types::{ComplianceType, ConfigurationItem, ConfigurationItemStatus, ResourceType};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled;
use serde_json::json;

fn oversized_event(bucket: &str, params: &str) -> serde_json::Value {
    let mut event = adapt_event(load_event("s3-bucket-server-side-encryption-enabled/oversized.json"), "rule-oversized", |inv| {
        inv["configurationItemSummary"]["resourceId"] = json!(bucket);
    });
    event["ruleParameters"] = json!(params);
    event
}

#[tokio::test]
async fn the_history_item_is_converted_and_judged() {
    let bucket = "history-bucket";
    let history = mock!(aws_sdk_config::Client::get_resource_config_history)
        .match_requests(move |r| r.resource_id() == Some(bucket) && r.resource_type() == Some(&ResourceType::Bucket))
        .then_output(move || {
            let sse = r#"{"rules":[{"applyServerSideEncryptionByDefault":{"sseAlgorithm":"aws:kms","kmsMasterKeyID":"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},"bucketKeyEnabled":true}]}"#;
            GetResourceConfigHistoryOutput::builder()
                .configuration_items(
                    ConfigurationItem::builder()
                        .resource_type(ResourceType::Bucket)
                        .resource_id(bucket)
                        .account_id("123456789012")
                        .arn(format!("arn:aws:s3:::{bucket}"))
                        .configuration_item_status(ConfigurationItemStatus::Ok)
                        .configuration_item_capture_time(DateTime::from_secs(1_795_168_800))
                        .configuration(format!(r#"{{"name":"{bucket}"}}"#))
                        .set_supplementary_configuration(Some(HashMap::from([
                            ("ServerSideEncryptionConfiguration".to_string(), sse.to_string()),
                            ("BucketPolicy".to_string(), r#"{"policyText":null}"#.to_string()),
                        ])))
                        .set_tags(Some(HashMap::from([("team".to_string(), "data".to_string())])))
                        .build(),
                )
                .build()
        });
    let put = mock!(aws_sdk_config::Client::put_evaluations)
        .match_requests(|r| {
            let e = &r.evaluations()[0];
            r.evaluations().len() == 1
                && e.compliance_resource_id() == "history-bucket"
                && e.compliance_type() == &ComplianceType::Compliant
                // The summary's capture time, not the notification's.
                && e.ordering_timestamp() == &DateTime::from_secs(1_795_168_800)
        })
        .then_output(|| PutEvaluationsOutput::builder().build());
    let config = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&history, &put]);
    let runner = RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), &sdk().await).with_client(config);

    let response = runner.handle_lambda(oversized_event(bucket, r#"{"requiredAlgorithm":"aws:kms"}"#)).await.unwrap();
    assert_eq!(response["Evaluations"], 1, "{response}");
    assert_eq!(history.num_calls(), 1);
    assert_eq!(put.num_calls(), 1, "the evaluation posted was COMPLIANT at the capture time");
}

#[tokio::test]
async fn without_history_the_live_bucket_is_read() {
    let sdk = sdk().await;
    let bucket = unique("no-history");
    atrest::clients::s3(&sdk).create_bucket().bucket(&bucket).send().await.unwrap();
    let history = mock!(aws_sdk_config::Client::get_resource_config_history).then_error(|| {
        GetResourceConfigHistoryError::ResourceNotDiscoveredException(
            ResourceNotDiscoveredException::builder().message("not recorded").build(),
        )
    });
    let expected = bucket.clone();
    let put = mock!(aws_sdk_config::Client::put_evaluations)
        .match_requests(move |r| {
            r.evaluations()[0].compliance_resource_id() == expected && r.evaluations()[0].compliance_type() == &ComplianceType::NonCompliant
        })
        .then_output(|| PutEvaluationsOutput::builder().build());
    let config = mock_client!(aws_sdk_config, RuleMode::MatchAny, [&history, &put]);
    let runner = RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), &sdk).with_client(config);

    // The live bucket has SSE-S3, every bucket's base level: short of the KMS this rule asks for.
    let response = runner.handle_lambda(oversized_event(&bucket, r#"{"requiredAlgorithm":"aws:kms"}"#)).await.unwrap();
    assert_eq!(response["NonCompliant"], 1, "{response}");
    assert_eq!(put.num_calls(), 1);
}
