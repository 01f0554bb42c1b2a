//! What the stand-in cannot show, with aws-smithy-mocks answering in DynamoDB's shapes: a table
//! whose encryption is UPDATING (moto makes every change final at once), a table busy with
//! another update (`ResourceInUseException`), too many updates at once (`LimitExceededException`),
//! and the turn-by-turn path from UpdateTable to ENABLED.

use std::sync::Arc;

use atrest::{FixOutcome, FixRunner, FixStatus};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput;
use aws_sdk_dynamodb::operation::update_table::{UpdateTableError, UpdateTableOutput};
use aws_sdk_dynamodb::types::error::{LimitExceededException, ResourceInUseException};
use aws_sdk_dynamodb::types::{SseDescription, SseStatus, SseType, TableDescription, TableStatus};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use fix_dynamodb_encrypt_table::DynamodbEncryptTable;
use serde_json::json;

const TABLE: &str = "orders";
const MANAGED_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-0000-4000-8000-00000000aaaa";

fn sdk() -> SdkConfig {
    // No endpoint is reachable: every call must be mocked.
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
}

fn table(status: TableStatus, sse: Option<(SseStatus, Option<&str>)>) -> DescribeTableOutput {
    let sse = sse.map(|(status, key)| {
        SseDescription::builder().status(status).sse_type(SseType::Kms).set_kms_master_key_arn(key.map(str::to_string)).build()
    });
    DescribeTableOutput::builder()
        .table(TableDescription::builder().table_name(TABLE).table_status(status).set_sse_description(sse).build())
        .build()
}

fn describe_then(answers: Vec<DescribeTableOutput>) -> Rule {
    let mut sequence = mock!(Client::describe_table).match_requests(|r| r.table_name() == Some(TABLE)).sequence();
    for answer in answers {
        sequence = sequence.output(move || answer.clone());
    }
    sequence.build()
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message("Attempt to change a resource which is still in use").build()
}

async fn step(client: Client) -> FixOutcome {
    let payload = json!({"ResourceId": TABLE, "ExecutionId": "00000000-0000-4000-8000-0000000000d1"});
    FixRunner::new(Arc::new(DynamodbEncryptTable), &sdk(), None).with_client(client).step(&payload).await
}

#[tokio::test]
async fn an_update_in_flight_is_waited_for_without_a_second_update() {
    let describe = describe_then(vec![table(TableStatus::Active, Some((SseStatus::Updating, None)))]);
    let update = mock!(Client::update_table).then_output(|| panic!("UpdateTable must not be sent while the encryption is UPDATING"));
    let o = step(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&describe, &update])).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert!(o.message.contains("its encryption is UPDATING") && o.changes.is_empty(), "{o:?}");
    assert_eq!(update.num_calls(), 0);
}

#[tokio::test]
async fn a_busy_table_or_too_many_updates_mean_wait() {
    for code in ["ResourceInUseException", "LimitExceededException"] {
        let describe = describe_then(vec![table(TableStatus::Active, None)]);
        let update = mock!(Client::update_table).then_error(move || match code {
            "ResourceInUseException" => {
                UpdateTableError::ResourceInUseException(ResourceInUseException::builder().meta(meta(code)).build())
            }
            _ => UpdateTableError::LimitExceededException(LimitExceededException::builder().meta(meta(code)).build()),
        });
        let o = step(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&describe, &update])).await;
        assert_eq!(o.status, FixStatus::InProgress, "{code}: {o:?}");
        assert!(o.message.contains(code), "{code}: {}", o.message);
        assert!(update.num_calls() >= 1, "{code}");
    }
}

#[tokio::test]
async fn updating_then_enabled_is_in_progress_then_succeeded() {
    // Turn 1: AWS owned key -> UpdateTable -> DynamoDB reports UPDATING. Turn 2: ENABLED.
    let describe = describe_then(vec![
        table(TableStatus::Active, None),
        table(TableStatus::Active, Some((SseStatus::Updating, None))),
        table(TableStatus::Active, Some((SseStatus::Enabled, Some(MANAGED_KEY)))),
    ]);
    let update = mock!(Client::update_table)
        .match_requests(|r| {
            let sse = r.sse_specification().expect("SSESpecification");
            // No key named: the AWS managed key aws/dynamodb.
            sse.enabled() == Some(true) && sse.sse_type() == Some(&SseType::Kms) && sse.kms_master_key_id().is_none()
        })
        .then_output(|| UpdateTableOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&describe, &update]);
    let first = step(client.clone()).await;
    assert_eq!(first.status, FixStatus::InProgress, "{first:?}");
    assert!(first.message.contains("waiting for it to report ENABLED") && first.changes.len() == 1, "{first:?}");
    let second = step(client).await;
    assert_eq!(second.status, FixStatus::Succeeded, "{second:?}");
    assert!(second.message.contains(MANAGED_KEY), "{}", second.message);
    assert_eq!(update.num_calls(), 1, "one UpdateTable in all");
}
