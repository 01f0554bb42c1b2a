//! What the stand-in cannot show for `s3-encrypt-existing-objects`, with the real SDK calls
//! answered by smithy mocks: HeadObject on an SSE-C object answers 400 without the customer's
//! key (S3 API Reference, HeadObject), Object Lock, and an AccessDenied copy that names the
//! action to grant.

use std::sync::Arc;

use atrest::{FixRequest, FixRunner, FixStatus};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::copy_object::{CopyObjectError, CopyObjectOutput};
use aws_sdk_s3::operation::get_bucket_ownership_controls::GetBucketOwnershipControlsOutput;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::types::{Object, ObjectLockMode, ObjectOwnership, OwnershipControls, OwnershipControlsRule};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use fix_s3_encrypt_existing_objects::{S3EncryptExistingObjects, SPEC};
use serde_json::json;

fn sdk() -> SdkConfig {
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
}

/// A bucket with ACLs disabled holding objects written in 2020.
fn bucket_rules(keys: &'static [&'static str]) -> Vec<Rule> {
    vec![
        mock!(Client::get_bucket_versioning).then_output(|| GetBucketVersioningOutput::builder().build()),
        mock!(Client::get_bucket_ownership_controls).then_output(|| {
            GetBucketOwnershipControlsOutput::builder()
                .ownership_controls(
                    OwnershipControls::builder()
                        .rules(OwnershipControlsRule::builder().object_ownership(ObjectOwnership::BucketOwnerEnforced).build().unwrap())
                        .build()
                        .unwrap(),
                )
                .build()
        }),
        mock!(Client::list_objects_v2).then_output(move || {
            let mut out = ListObjectsV2Output::builder().is_truncated(false);
            for key in keys {
                out = out.contents(Object::builder().key(*key).size(4).last_modified(DateTime::from_secs(1_600_000_000)).build());
            }
            out.build()
        }),
    ]
}

async fn run(client: Client) -> atrest::FixOutcome {
    let req = FixRequest::decode(&SPEC, &json!({"ResourceId": "old-bucket"})).unwrap();
    FixRunner::new(Arc::new(S3EncryptExistingObjects::default()), &sdk(), None).with_client(client).step_request(&req).await
}

#[tokio::test]
async fn sse_c_and_object_lock_are_skipped_and_counted_the_rest_copied() {
    let mut rules = bucket_rules(&["customer-key.bin", "locked.txt", "plain.txt"]);
    rules.push(
        mock!(Client::head_object)
            .match_requests(|r| r.key() == Some("customer-key.bin"))
            .then_http_response(|| HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty())),
    );
    rules.push(
        mock!(Client::head_object)
            .match_requests(|r| r.key() == Some("locked.txt"))
            .then_output(|| HeadObjectOutput::builder().e_tag("\"l\"").object_lock_mode(ObjectLockMode::Governance).build()),
    );
    rules.push(
        mock!(Client::head_object)
            .match_requests(|r| r.key() == Some("plain.txt"))
            .then_output(|| HeadObjectOutput::builder().e_tag("\"p\"").content_length(4).build()),
    );
    let copy = mock!(Client::copy_object)
        .match_requests(|r| {
            r.key() == Some("plain.txt")
                && r.copy_source() == Some("old-bucket/plain.txt")
                && r.copy_source_if_match() == Some("\"p\"")
                && r.server_side_encryption().map(|s| s.as_str()) == Some("AES256")
                && r.grant_read().is_none()
        })
        .then_output(|| CopyObjectOutput::builder().build());
    rules.push(copy);
    let refs: Vec<&Rule> = rules.iter().collect();
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, refs.as_slice());
    let outcome = run(client).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{}", outcome.message);
    assert!(outcome.message.contains("copied 1,"), "{}", outcome.message);
    assert!(
        outcome
            .message
            .contains("skipped 2 (1 encrypted with a customer-provided key (SSE-C); 1 under Object Lock retention or legal hold)"),
        "{}",
        outcome.message
    );
    assert_eq!(rules.last().unwrap().num_calls(), 1, "plain.txt copied once, with its ETag and SSE-S3");
}

#[tokio::test]
async fn an_access_denied_copy_fails_naming_the_action() {
    let mut rules = bucket_rules(&["plain.txt"]);
    rules.push(mock!(Client::head_object).then_output(|| HeadObjectOutput::builder().e_tag("\"p\"").content_length(4).build()));
    rules.push(mock!(Client::copy_object).then_error(|| {
        CopyObjectError::generic(aws_smithy_types::error::ErrorMetadata::builder().code("AccessDenied").message("no").build())
    }));
    let refs: Vec<&Rule> = rules.iter().collect();
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, refs.as_slice());
    let outcome = run(client).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{}", outcome.message);
    assert!(outcome.message.contains("1 failed"), "{}", outcome.message);
    assert!(outcome.message.contains("s3:PutObject"), "{}", outcome.message);
}
