//! What moto cannot show, with `aws-smithy-mocks` answering in AWS's real shapes: RDS work that
//! is still in progress (moto makes everything `available` at once), the full restore request,
//! and a cluster restore from an unencrypted snapshot with `KmsKeyId` (moto 5.2.5 leaves the
//! cluster unencrypted; AWS encrypts it).

use std::sync::Arc;

use atrest::{FixRequest, FixRunner, FixStatus};
use atrest_rds::{TAG_ENCRYPTED_FROM, TAG_SOURCE_RESOURCE_ID};
use atrest_testkit::load_event;
use aws_sdk_rds::Client;
use aws_sdk_rds::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput;
use aws_sdk_rds::operation::describe_db_clusters::DescribeDbClustersOutput;
use aws_sdk_rds::operation::describe_db_instances::{DescribeDBInstancesError, DescribeDbInstancesOutput};
use aws_sdk_rds::operation::describe_db_snapshots::{DescribeDBSnapshotsError, DescribeDbSnapshotsOutput};
use aws_sdk_rds::operation::restore_db_cluster_from_snapshot::RestoreDbClusterFromSnapshotOutput;
use aws_sdk_rds::operation::restore_db_instance_from_db_snapshot::RestoreDbInstanceFromDbSnapshotOutput;
use aws_sdk_rds::types::error::{DbInstanceNotFoundFault, DbSnapshotNotFoundFault};
use aws_sdk_rds::types::{
    DbCluster, DbClusterSnapshot, DbInstance, DbParameterGroupStatus, DbSnapshot, DbSubnetGroup, Endpoint, OptionGroupMembership,
    VpcSecurityGroupMembership,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use rds_support::{error_code as code, mocked_sdk as sdk, tag};
use serde_json::json;

mod rds_support;

const DBI: &str = "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn source() -> DbInstance {
    DbInstance::builder()
        .db_instance_identifier("orders")
        .db_instance_arn("arn:aws:rds:us-east-1:123456789012:db:orders")
        .dbi_resource_id(DBI)
        .db_instance_status("available")
        .engine("postgres")
        .db_instance_class("db.m6g.large")
        .storage_encrypted(false)
        .multi_az(false)
        .availability_zone("us-east-1b")
        .endpoint(Endpoint::builder().address("orders.x.us-east-1.rds.amazonaws.com").port(5433).build())
        .db_subnet_group(DbSubnetGroup::builder().db_subnet_group_name("private").build())
        .vpc_security_groups(VpcSecurityGroupMembership::builder().vpc_security_group_id("sg-app").build())
        .vpc_security_groups(VpcSecurityGroupMembership::builder().vpc_security_group_id("sg-admin").build())
        .db_parameter_groups(DbParameterGroupStatus::builder().db_parameter_group_name("orders-pg16").build())
        .option_group_memberships(OptionGroupMembership::builder().option_group_name("default:postgres-16").build())
        .publicly_accessible(false)
        .iam_database_authentication_enabled(true)
        .deletion_protection(true)
        .copy_tags_to_snapshot(true)
        .storage_type("io1")
        .iops(3000)
        .allocated_storage(100)
        .backup_retention_period(14)
        .preferred_backup_window("03:00-03:30")
        .ca_certificate_identifier("rds-ca-rsa2048-g1")
        .performance_insights_enabled(true)
        .monitoring_interval(60)
        .monitoring_role_arn("arn:aws:iam::123456789012:role/rds-monitoring")
        .tag_list(tag("team", "orders"))
        .build()
}

fn snapshot(id: &str, status: &str, encrypted: bool) -> DbSnapshot {
    DbSnapshot::builder()
        .db_snapshot_identifier(id)
        .status(status)
        .percent_progress(40)
        .encrypted(encrypted)
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, DBI))
        .build()
}

fn describe_source() -> Rule {
    mock!(Client::describe_db_instances)
        .match_requests(|r| !r.filters().is_empty())
        .then_output(|| DescribeDbInstancesOutput::builder().db_instances(source()).build())
}

fn no_instance_by_name() -> Rule {
    mock!(Client::describe_db_instances).match_requests(|r| r.db_instance_identifier().is_some()).then_error(|| {
        DescribeDBInstancesError::DbInstanceNotFoundFault(DbInstanceNotFoundFault::builder().meta(code("DBInstanceNotFound")).build())
    })
}

fn snapshot_rule(id: &'static str, answer: Option<DbSnapshot>) -> Rule {
    let rule = mock!(Client::describe_db_snapshots).match_requests(move |r| r.db_snapshot_identifier() == Some(id));
    match answer {
        Some(s) => rule.then_output(move || DescribeDbSnapshotsOutput::builder().db_snapshots(s.clone()).build()),
        None => rule.then_error(|| {
            DescribeDBSnapshotsError::DbSnapshotNotFoundFault(DbSnapshotNotFoundFault::builder().meta(code("DBSnapshotNotFound")).build())
        }),
    }
}

const SOURCE_SNAP: &str = "atrest-db-abcdefghijklmnopqrstuvwxyz-source";
const ENCRYPTED_SNAP: &str = "atrest-db-abcdefghijklmnopqrstuvwxyz-encrypted";

fn instance_request() -> FixRequest {
    let mut p = load_event("fix-rds-encrypt-instance/ssm-payload.json");
    p["ResourceId"] = json!(DBI);
    p["KmsKeyId"] = json!(KEY);
    FixRequest::decode(&fix_rds_encrypt_instance::SPEC, &p).unwrap()
}

async fn step_instance(client: Client) -> atrest::FixOutcome {
    let fix = fix_rds_encrypt_instance::RdsEncryptInstance;
    FixRunner::new(Arc::new(fix), &sdk(), None).with_client(client).step_request(&instance_request()).await
}

#[tokio::test]
async fn a_snapshot_still_being_taken_is_waited_for_without_any_change() {
    // Only describes are mocked: any create/copy/restore call would fail the step.
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &describe_source(),
            &no_instance_by_name(),
            &snapshot_rule(ENCRYPTED_SNAP, None),
            &snapshot_rule(SOURCE_SNAP, Some(snapshot(SOURCE_SNAP, "creating", false)))
        ]
    );
    let o = step_instance(client).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert!(o.changes.is_empty(), "{o:?}");
    assert!(o.message.contains("Taking snapshot") && o.message.contains("creating, 40%"), "{}", o.message);
}

#[tokio::test]
async fn an_encrypted_copy_in_flight_is_waited_for() {
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &describe_source(),
            &no_instance_by_name(),
            &snapshot_rule(ENCRYPTED_SNAP, Some(snapshot(ENCRYPTED_SNAP, "copying", true))),
            &snapshot_rule(SOURCE_SNAP, Some(snapshot(SOURCE_SNAP, "available", false)))
        ]
    );
    let o = step_instance(client).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert!(o.changes.is_empty());
    assert!(o.message.contains("Copying") && o.message.contains("copying, 40%"), "{}", o.message);
}

#[tokio::test]
async fn a_target_still_being_restored_is_waited_for() {
    let target = DbInstance::builder()
        .db_instance_identifier("orders-encrypted")
        .db_instance_status("creating")
        .storage_encrypted(true)
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, DBI))
        .build();
    let by_name = mock!(Client::describe_db_instances)
        .match_requests(|r| r.db_instance_identifier() == Some("orders-encrypted"))
        .then_output(move || DescribeDbInstancesOutput::builder().db_instances(target.clone()).build());
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&describe_source(), &by_name]);
    let o = step_instance(client).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert!(o.message.contains("orders-encrypted") && o.message.contains("creating"), "{}", o.message);
}

#[tokio::test]
async fn the_restore_request_carries_every_setting_the_restore_does_not_copy() {
    let restore = mock!(Client::restore_db_instance_from_db_snapshot)
        .match_requests(|r| {
            let mut sgs = r.vpc_security_group_ids().to_vec();
            sgs.sort();
            let tags: Vec<(&str, &str)> = r.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            r.db_instance_identifier() == Some("orders-encrypted")
                && r.db_snapshot_identifier() == Some(ENCRYPTED_SNAP)
                && r.db_instance_class() == Some("db.m6g.large")
                && r.port() == Some(5433)
                && r.multi_az() == Some(false)
                && r.availability_zone() == Some("us-east-1b")
                && r.db_subnet_group_name() == Some("private")
                && sgs == ["sg-admin", "sg-app"]
                && r.db_parameter_group_name() == Some("orders-pg16")
                // The engine's default option group is left to the restore (naming it fails where it
                // does not exist yet); custom groups are carried.
                && r.option_group_name().is_none()
                && r.publicly_accessible() == Some(false)
                && r.enable_iam_database_authentication() == Some(true)
                && r.deletion_protection() == Some(true)
                && r.copy_tags_to_snapshot() == Some(true)
                && r.storage_type() == Some("io1")
                && r.iops() == Some(3000)
                && r.backup_retention_period() == Some(14)
                && r.preferred_backup_window() == Some("03:00-03:30")
                && r.ca_certificate_identifier() == Some("rds-ca-rsa2048-g1")
                && tags.contains(&("team", "orders"))
                && tags.contains(&(TAG_ENCRYPTED_FROM, "orders"))
                && tags.contains(&(TAG_SOURCE_RESOURCE_ID, DBI))
        })
        .then_output(|| RestoreDbInstanceFromDbSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &describe_source(),
            &no_instance_by_name(),
            &snapshot_rule(ENCRYPTED_SNAP, Some(snapshot(ENCRYPTED_SNAP, "available", true))),
            &snapshot_rule(SOURCE_SNAP, Some(snapshot(SOURCE_SNAP, "available", false))),
            &restore
        ]
    );
    let o = step_instance(client).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "the restore request matched every carried-over setting: {o:?}");
}

#[test]
fn settings_a_restore_cannot_set_are_applied_afterwards() {
    let restored = DbInstance::builder().db_instance_identifier("orders-encrypted").build();
    let changes = fix_rds_encrypt_instance::post_restore_changes(&source(), &restored);
    assert!(changes.iter().any(|c| c.contains("Performance Insights")), "{changes:?}");
    assert!(changes.iter().any(|c| c.contains("Enhanced Monitoring every 60 s")), "{changes:?}");
    assert!(fix_rds_encrypt_instance::post_restore_changes(&source(), &source()).is_empty());
}

// ------------------------------------------------------------------------------------ clusters
const CLUSTER_RID: &str = "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn source_cluster() -> DbCluster {
    DbCluster::builder()
        .db_cluster_identifier("ledger")
        .db_cluster_resource_id(CLUSTER_RID)
        .status("available")
        .engine("aurora-postgresql")
        .engine_version("16.4")
        .port(5432)
        .db_subnet_group("private")
        .db_cluster_parameter_group("ledger-cluster-pg")
        .vpc_security_groups(VpcSecurityGroupMembership::builder().vpc_security_group_id("sg-app").build())
        .storage_encrypted(false)
        .iam_database_authentication_enabled(true)
        .deletion_protection(true)
        .build()
}

fn cluster_request() -> FixRequest {
    let mut p = load_event("fix-rds-encrypt-cluster/ssm-payload.json");
    p["ResourceId"] = json!(CLUSTER_RID);
    p["KmsKeyId"] = json!(KEY);
    FixRequest::decode(&fix_rds_encrypt_cluster::SPEC, &p).unwrap()
}

#[tokio::test]
async fn a_cluster_restore_asks_for_the_key_and_an_unencrypted_result_fails() {
    let by_resource = mock!(Client::describe_db_clusters)
        .match_requests(|r| !r.filters().is_empty())
        .then_output(|| DescribeDbClustersOutput::builder().db_clusters(source_cluster()).build());
    let no_target =
        mock!(Client::describe_db_clusters).match_requests(|r| r.db_cluster_identifier() == Some("ledger-encrypted")).then_error(|| {
            aws_sdk_rds::operation::describe_db_clusters::DescribeDBClustersError::DbClusterNotFoundFault(
                aws_sdk_rds::types::error::DbClusterNotFoundFault::builder().meta(code("DBClusterNotFoundFault")).build(),
            )
        });
    let snap = mock!(Client::describe_db_cluster_snapshots).then_output(|| {
        DescribeDbClusterSnapshotsOutput::builder()
            .db_cluster_snapshots(
                DbClusterSnapshot::builder()
                    .db_cluster_snapshot_identifier("atrest-cluster-abcdefghijklmnopqrstuvwxyz-source")
                    .status("available")
                    .storage_encrypted(false)
                    .tag_list(tag(TAG_SOURCE_RESOURCE_ID, CLUSTER_RID))
                    .build(),
            )
            .build()
    });
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| {
            r.kms_key_id() == Some(KEY)
                && r.db_cluster_identifier() == Some("ledger-encrypted")
                && r.engine() == Some("aurora-postgresql")
                && r.engine_version() == Some("16.4")
                && r.db_subnet_group_name() == Some("private")
                && r.db_cluster_parameter_group_name() == Some("ledger-cluster-pg")
                && r.vpc_security_group_ids() == ["sg-app"]
                && r.enable_iam_database_authentication() == Some(true)
                && r.deletion_protection() == Some(true)
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&by_resource, &no_target, &snap, &restore]);
    let fix = fix_rds_encrypt_cluster::RdsEncryptCluster;
    let o = FixRunner::new(Arc::new(fix), &sdk(), None).with_client(client).step_request(&cluster_request()).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "RestoreDBClusterFromSnapshot carried the key and the settings");

    // A restored cluster that reports unencrypted storage is never taken for success.
    let unencrypted_target = DbCluster::builder()
        .db_cluster_identifier("ledger-encrypted")
        .status("available")
        .storage_encrypted(false)
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, CLUSTER_RID))
        .build();
    let by_resource = mock!(Client::describe_db_clusters)
        .match_requests(|r| !r.filters().is_empty())
        .then_output(|| DescribeDbClustersOutput::builder().db_clusters(source_cluster()).build());
    let target = mock!(Client::describe_db_clusters)
        .match_requests(|r| r.db_cluster_identifier() == Some("ledger-encrypted"))
        .then_output(move || DescribeDbClustersOutput::builder().db_clusters(unencrypted_target.clone()).build());
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&by_resource, &target]);
    let fix = fix_rds_encrypt_cluster::RdsEncryptCluster;
    let o = FixRunner::new(Arc::new(fix), &sdk(), None).with_client(client).step_request(&cluster_request()).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains("reports unencrypted storage"), "{}", o.message);
}
