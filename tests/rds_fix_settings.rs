//! The RDS instance and cluster fixes against `aws-smithy-mocks` answering as AWS documents, where
//! moto cannot show it: moto's restore copies every attribute of the snapshot's instance (IAM
//! roles, the managed master password, the directory), lets a stopped instance be snapshotted,
//! and has no engine lifecycle support. Each test pins the exact requests for one behaviour:
//! the settings a restore or a follow-up call must carry, the source states a snapshot needs, and
//! the rename cutover refused while replicas exist.

use std::sync::Arc;

use atrest::{FixOutcome, FixRequest, FixRunner, FixStatus};
use atrest_rds::{TAG_SETTINGS_APPLIED, TAG_SOURCE_RESOURCE_ID};
use atrest_testkit::load_event;
use aws_sdk_rds::Client;
use aws_sdk_rds::operation::add_role_to_db_cluster::AddRoleToDbClusterOutput;
use aws_sdk_rds::operation::add_role_to_db_instance::AddRoleToDbInstanceOutput;
use aws_sdk_rds::operation::add_tags_to_resource::AddTagsToResourceOutput;
use aws_sdk_rds::operation::create_db_snapshot::CreateDbSnapshotOutput;
use aws_sdk_rds::operation::describe_db_cluster_snapshots::{DescribeDBClusterSnapshotsError, DescribeDbClusterSnapshotsOutput};
use aws_sdk_rds::operation::describe_db_clusters::{DescribeDBClustersError, DescribeDbClustersOutput};
use aws_sdk_rds::operation::describe_db_instances::{DescribeDBInstancesError, DescribeDbInstancesOutput};
use aws_sdk_rds::operation::describe_db_snapshots::{DescribeDBSnapshotsError, DescribeDbSnapshotsOutput};
use aws_sdk_rds::operation::modify_db_cluster::ModifyDbClusterOutput;
use aws_sdk_rds::operation::modify_db_instance::ModifyDbInstanceOutput;
use aws_sdk_rds::operation::restore_db_cluster_from_snapshot::RestoreDbClusterFromSnapshotOutput;
use aws_sdk_rds::operation::restore_db_instance_from_db_snapshot::RestoreDbInstanceFromDbSnapshotOutput;
use aws_sdk_rds::types::error::{DbClusterNotFoundFault, DbClusterSnapshotNotFoundFault, DbInstanceNotFoundFault, DbSnapshotNotFoundFault};
use aws_sdk_rds::types::{
    DbCluster, DbClusterOptionGroupStatus, DbClusterRole, DbClusterSnapshot, DbInstance, DbInstanceRole, DbParameterGroupStatus,
    DbSnapshot, DomainMembership, LocalWriteForwardingStatus, MasterUserSecret, OptionGroupMembership,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use rds_support::{error_code as code, mocked_sdk as sdk, tag};
use serde_json::{Value, json};

mod rds_support;

const DBI: &str = "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const CLUSTER_RID: &str = "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const SECRET_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab";
const S3_ROLE: &str = "arn:aws:iam::123456789012:role/rds-s3-import";
const LAMBDA_ROLE: &str = "arn:aws:iam::123456789012:role/aurora-lambda";
const SOURCE_SNAP: &str = "atrest-db-abcdefghijklmnopqrstuvwxyz-source";
const ENCRYPTED_SNAP: &str = "atrest-db-abcdefghijklmnopqrstuvwxyz-encrypted";
const CLUSTER_SNAP: &str = "atrest-cluster-abcdefghijklmnopqrstuvwxyz-source";

fn request(spec: &'static atrest::FixSpec, event: &str, resource_id: &str, extra: Value) -> FixRequest {
    let mut p = load_event(event);
    p["ResourceId"] = json!(resource_id);
    p["KmsKeyId"] = json!(KEY);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    FixRequest::decode(spec, &p).unwrap()
}

// ------------------------------------------------------------------------------------ instances

/// A PostgreSQL instance created with the engine's default groups, joined to an AWS Managed AD,
/// with an S3-import role, a Secrets-Manager-managed password, Extended Support turned off and
/// gp3 storage at exactly the baseline for its size.
fn source() -> DbInstance {
    DbInstance::builder()
        .db_instance_identifier("orders")
        .db_instance_arn("arn:aws:rds:us-east-1:123456789012:db:orders")
        .dbi_resource_id(DBI)
        .db_instance_status("available")
        .engine("postgres")
        .engine_version("16.4")
        .db_instance_class("db.m6g.large")
        .storage_encrypted(false)
        .multi_az(false)
        .db_parameter_groups(DbParameterGroupStatus::builder().db_parameter_group_name("default.postgres16").build())
        .option_group_memberships(OptionGroupMembership::builder().option_group_name("default:postgres-16").build())
        .storage_type("gp3")
        .allocated_storage(500)
        .iops(12_000)
        .storage_throughput(500)
        .engine_lifecycle_support("open-source-rds-extended-support-disabled")
        .domain_memberships(
            DomainMembership::builder().domain("d-1234567890").iam_role_name("rds-directoryservice-access").status("joined").build(),
        )
        .associated_roles(DbInstanceRole::builder().role_arn(S3_ROLE).feature_name("s3Import").status("ACTIVE").build())
        .master_user_secret(
            MasterUserSecret::builder()
                .secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1")
                .kms_key_id(SECRET_KEY)
                .build(),
        )
        .preferred_maintenance_window("sun:05:00-sun:05:30")
        .tag_list(tag("team", "orders"))
        .build()
}

fn describe_source(source: DbInstance) -> Rule {
    mock!(Client::describe_db_instances)
        .match_requests(|r| !r.filters().is_empty())
        .then_output(move || DescribeDbInstancesOutput::builder().db_instances(source.clone()).build())
}

fn no_instance_named(name: &'static str) -> Rule {
    mock!(Client::describe_db_instances).match_requests(move |r| r.db_instance_identifier() == Some(name)).then_error(|| {
        DescribeDBInstancesError::DbInstanceNotFoundFault(DbInstanceNotFoundFault::builder().meta(code("DBInstanceNotFound")).build())
    })
}

fn db_snapshot_rule(id: &'static str, status: Option<&'static str>) -> Rule {
    let rule = mock!(Client::describe_db_snapshots).match_requests(move |r| r.db_snapshot_identifier() == Some(id));
    match status {
        Some(status) => rule.then_output(move || {
            DescribeDbSnapshotsOutput::builder()
                .db_snapshots(
                    DbSnapshot::builder()
                        .db_snapshot_identifier(id)
                        .status(status)
                        .encrypted(id == ENCRYPTED_SNAP)
                        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, DBI))
                        .build(),
                )
                .build()
        }),
        None => rule.then_error(|| {
            DescribeDBSnapshotsError::DbSnapshotNotFoundFault(DbSnapshotNotFoundFault::builder().meta(code("DBSnapshotNotFound")).build())
        }),
    }
}

async fn step_instance(client: Client, extra: Value) -> FixOutcome {
    let fix = fix_rds_encrypt_instance::RdsEncryptInstance;
    let req = request(&fix_rds_encrypt_instance::SPEC, "fix-rds-encrypt-instance/ssm-payload.json", DBI, extra);
    FixRunner::new(Arc::new(fix), &sdk(), None).with_client(client).step_request(&req).await
}

#[tokio::test]
async fn an_instance_restore_leaves_default_groups_to_the_engine_and_carries_domain_and_lifecycle() {
    let restore = mock!(Client::restore_db_instance_from_db_snapshot)
        .match_requests(|r| {
            r.db_instance_identifier() == Some("orders-encrypted")
                // The engine's default groups are what a restore uses anyway; naming them fails
                // where they do not exist (OptionGroupNotFoundFault).
                && r.db_parameter_group_name().is_none()
                && r.option_group_name().is_none()
                && r.engine_lifecycle_support() == Some("open-source-rds-extended-support-disabled")
                && r.domain() == Some("d-1234567890")
                && r.domain_iam_role_name() == Some("rds-directoryservice-access")
                && r.domain_fqdn().is_none()
                // 12,000 IOPS and 500 MiB/s are the gp3 baseline at 500 GiB: nothing to ask for.
                && r.storage_type() == Some("gp3")
                && r.iops().is_none()
                && r.storage_throughput().is_none()
        })
        .then_output(|| RestoreDbInstanceFromDbSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &describe_source(source()),
            &no_instance_named("orders-encrypted"),
            &db_snapshot_rule(ENCRYPTED_SNAP, Some("available")),
            &db_snapshot_rule(SOURCE_SNAP, Some("available")),
            &restore
        ]
    );
    let o = step_instance(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "the restore matched: {o:?}");
}

#[tokio::test]
async fn a_restored_instance_gets_the_sources_iam_roles_and_a_managed_master_password() {
    let target = DbInstance::builder()
        .db_instance_identifier("orders-encrypted")
        .db_instance_arn("arn:aws:rds:us-east-1:123456789012:db:orders-encrypted")
        .db_instance_status("available")
        .storage_encrypted(true)
        .preferred_maintenance_window("sun:05:00-sun:05:30")
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, DBI))
        .build();
    let by_name = mock!(Client::describe_db_instances)
        .match_requests(|r| r.db_instance_identifier() == Some("orders-encrypted"))
        .then_output(move || DescribeDbInstancesOutput::builder().db_instances(target.clone()).build());
    let add_role = mock!(Client::add_role_to_db_instance)
        .match_requests(|r| {
            r.db_instance_identifier() == Some("orders-encrypted") && r.role_arn() == Some(S3_ROLE) && r.feature_name() == Some("s3Import")
        })
        .then_output(|| AddRoleToDbInstanceOutput::builder().build());
    let modify = mock!(Client::modify_db_instance)
        .match_requests(|r| {
            r.db_instance_identifier() == Some("orders-encrypted")
                && r.manage_master_user_password() == Some(true)
                && r.master_user_secret_kms_key_id() == Some(SECRET_KEY)
                && r.master_user_password().is_none()
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let settled = mock!(Client::add_tags_to_resource)
        .match_requests(|r| r.tags().iter().any(|t| t.key() == Some(TAG_SETTINGS_APPLIED)))
        .then_output(|| AddTagsToResourceOutput::builder().build());
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&describe_source(source()), &by_name, &add_role, &modify, &settled]);
    let o = step_instance(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!((add_role.num_calls(), modify.num_calls(), settled.num_calls()), (1, 1, 1), "{o:?}");
    assert!(o.changes[0].contains("Secrets Manager") && o.changes[0].contains(S3_ROLE), "{:?}", o.changes);
}

#[test]
fn gp3_iops_and_throughput_are_passed_only_where_they_differ_from_the_baseline() {
    let gp3 = |engine: &str, size: i32, iops: i32, throughput: i32| {
        let source = DbInstance::builder()
            .engine(engine)
            .storage_type("gp3")
            .allocated_storage(size)
            .iops(iops)
            .storage_throughput(throughput)
            .build();
        fix_rds_encrypt_instance::provisioned_performance(&source)
    };
    // (engine, GiB, IOPS, MiB/s) -> what the restore asks for.
    type Row = (&'static str, i32, i32, i32, (Option<i32>, Option<i32>));
    let table: &[Row] = &[
        ("postgres", 100, 3_000, 125, (None, None)),
        ("mysql", 500, 12_000, 500, (None, None)),
        ("mysql", 500, 16_000, 500, (Some(16_000), Some(500))),
        ("mysql", 500, 12_000, 1_000, (Some(12_000), Some(1_000))),
        // Db2 takes IOPS/throughput from 400 GiB, like MySQL: below it AWS rejects them.
        ("db2-se", 300, 12_000, 500, (None, None)),
        ("db2-se", 400, 12_000, 500, (None, None)),
        ("db2-ae", 400, 20_000, 800, (Some(20_000), Some(800))),
        ("oracle-ee", 200, 12_000, 500, (None, None)),
        ("oracle-ee", 250, 15_000, 500, (Some(15_000), Some(500))),
        ("oracle-ee", 100, 3_000, 125, (None, None)),
        ("sqlserver-se", 20, 3_000, 125, (None, None)),
        ("sqlserver-se", 20, 6_000, 250, (Some(6_000), Some(250))),
    ];
    for (engine, size, iops, throughput, expected) in table {
        assert_eq!(gp3(engine, *size, *iops, *throughput), *expected, "{engine} {size} GiB {iops} IOPS {throughput} MiB/s");
    }
}

#[tokio::test]
async fn a_stopped_instance_fails_clearly_and_is_never_snapshotted() {
    let mut stopped = source();
    stopped.db_instance_status = Some("stopped".into());
    // Only reads are mocked: a CreateDBSnapshot (or a StartDBInstance) would fail differently.
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &describe_source(stopped),
            &no_instance_named("orders-encrypted"),
            &db_snapshot_rule(ENCRYPTED_SNAP, None),
            &db_snapshot_rule(SOURCE_SNAP, None)
        ]
    );
    let o = step_instance(client, json!({})).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.changes.is_empty(), "{o:?}");
    assert!(o.message.contains("orders is stopped") && o.message.contains("never starts or stops"), "{}", o.message);
    assert!(o.message.contains("Start orders"), "{}", o.message);
}

#[tokio::test]
async fn an_instance_in_storage_optimization_is_snapshotted_without_waiting() {
    let mut optimizing = source();
    optimizing.db_instance_status = Some("storage-optimization".into());
    let create = mock!(Client::create_db_snapshot)
        .match_requests(|r| r.db_instance_identifier() == Some("orders") && r.db_snapshot_identifier() == Some(SOURCE_SNAP))
        .then_output(|| CreateDbSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &describe_source(optimizing),
            &no_instance_named("orders-encrypted"),
            &db_snapshot_rule(ENCRYPTED_SNAP, None),
            &db_snapshot_rule(SOURCE_SNAP, None),
            &create
        ]
    );
    let o = step_instance(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(create.num_calls(), 1, "{o:?}");
}

#[tokio::test]
async fn a_rename_cutover_is_refused_while_the_instance_has_read_replicas() {
    let mut primary = source();
    primary.read_replica_db_instance_identifiers = Some(vec!["orders-replica-1".into()]);
    primary.read_replica_db_cluster_identifiers = Some(vec!["orders-aurora-replica".into()]);

    // Asked for before anything exists: refused before any copy is made.
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&describe_source(primary.clone()), &no_instance_named("orders-encrypted")]);
    let o = step_instance(client, json!({"Cutover": "rename", "WritesFrozen": "true"})).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.changes.is_empty());
    assert!(
        o.message.contains("orders-replica-1") && o.message.contains("orders-aurora-replica") && o.message.contains("Nothing was changed"),
        "{}",
        o.message
    );

    // Replicas made after the copy was built: the copy is kept, the source is not renamed.
    let target = DbInstance::builder()
        .db_instance_identifier("orders-encrypted")
        .db_instance_arn("arn:aws:rds:us-east-1:123456789012:db:orders-encrypted")
        .db_instance_status("available")
        .storage_encrypted(true)
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, DBI))
        .tag_list(tag(TAG_SETTINGS_APPLIED, "true"))
        .build();
    let by_name = mock!(Client::describe_db_instances)
        .match_requests(|r| r.db_instance_identifier() == Some("orders-encrypted"))
        .then_output(move || DescribeDbInstancesOutput::builder().db_instances(target.clone()).build());
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&describe_source(primary), &by_name]);
    let o = step_instance(client, json!({"Cutover": "rename", "WritesFrozen": "true"})).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains("orders-replica-1") && o.message.contains("orders-encrypted is ready and kept"), "{}", o.message);
}

// ------------------------------------------------------------------------------------ clusters

/// An Aurora PostgreSQL cluster on the engine's default cluster parameter group, in three AZs,
/// joined to an AWS Managed AD, with a Lambda role, a managed password and Extended Support off.
fn source_cluster() -> DbCluster {
    DbCluster::builder()
        .db_cluster_identifier("ledger")
        .db_cluster_arn("arn:aws:rds:us-east-1:123456789012:cluster:ledger")
        .db_cluster_resource_id(CLUSTER_RID)
        .status("available")
        .engine("aurora-postgresql")
        .engine_version("16.4")
        .db_cluster_parameter_group("default.aurora-postgresql16")
        .db_cluster_option_group_memberships(
            DbClusterOptionGroupStatus::builder().db_cluster_option_group_name("default:aurora-postgresql-16").build(),
        )
        .availability_zones("us-east-1a")
        .availability_zones("us-east-1c")
        .availability_zones("us-east-1d")
        .storage_encrypted(false)
        .engine_lifecycle_support("open-source-rds-extended-support-disabled")
        .domain_memberships(DomainMembership::builder().domain("d-1234567890").iam_role_name("rds-directoryservice-access").build())
        .associated_roles(DbClusterRole::builder().role_arn(LAMBDA_ROLE).feature_name("Lambda").status("ACTIVE").build())
        .master_user_secret(
            MasterUserSecret::builder().secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-1").build(),
        )
        .preferred_maintenance_window("sat:04:00-sat:04:30")
        .local_write_forwarding_status(LocalWriteForwardingStatus::Enabled)
        .http_endpoint_enabled(true)
        .build()
}

fn describe_source_cluster(source: DbCluster) -> Rule {
    mock!(Client::describe_db_clusters)
        .match_requests(|r| !r.filters().is_empty())
        .then_output(move || DescribeDbClustersOutput::builder().db_clusters(source.clone()).build())
}

fn no_cluster_named(name: &'static str) -> Rule {
    mock!(Client::describe_db_clusters).match_requests(move |r| r.db_cluster_identifier() == Some(name)).then_error(|| {
        DescribeDBClustersError::DbClusterNotFoundFault(DbClusterNotFoundFault::builder().meta(code("DBClusterNotFoundFault")).build())
    })
}

fn cluster_snapshot_rule(available: bool) -> Rule {
    let rule = mock!(Client::describe_db_cluster_snapshots).match_requests(|r| r.db_cluster_snapshot_identifier() == Some(CLUSTER_SNAP));
    if available {
        rule.then_output(|| {
            DescribeDbClusterSnapshotsOutput::builder()
                .db_cluster_snapshots(
                    DbClusterSnapshot::builder()
                        .db_cluster_snapshot_identifier(CLUSTER_SNAP)
                        .status("available")
                        .storage_encrypted(false)
                        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, CLUSTER_RID))
                        .build(),
                )
                .build()
        })
    } else {
        rule.then_error(|| {
            DescribeDBClusterSnapshotsError::DbClusterSnapshotNotFoundFault(
                DbClusterSnapshotNotFoundFault::builder().meta(code("DBClusterSnapshotNotFoundFault")).build(),
            )
        })
    }
}

async fn step_cluster(client: Client, extra: Value) -> FixOutcome {
    let fix = fix_rds_encrypt_cluster::RdsEncryptCluster;
    let req = request(&fix_rds_encrypt_cluster::SPEC, "fix-rds-encrypt-cluster/ssm-payload.json", CLUSTER_RID, extra);
    FixRunner::new(Arc::new(fix), &sdk(), None).with_client(client).step_request(&req).await
}

#[tokio::test]
async fn a_cluster_restore_carries_azs_domain_and_lifecycle_and_leaves_default_groups() {
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| {
            let mut azs = r.availability_zones().to_vec();
            azs.sort();
            r.db_cluster_identifier() == Some("ledger-encrypted")
                && r.kms_key_id() == Some(KEY)
                && azs == ["us-east-1a", "us-east-1c", "us-east-1d"]
                && r.engine_lifecycle_support() == Some("open-source-rds-extended-support-disabled")
                && r.domain() == Some("d-1234567890")
                && r.domain_iam_role_name() == Some("rds-directoryservice-access")
                && r.db_cluster_parameter_group_name().is_none()
                && r.option_group_name().is_none()
                // Aurora: monitoring and Performance Insights belong to the member instances.
                && r.monitoring_interval().is_none()
                && r.enable_performance_insights().is_none()
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [&describe_source_cluster(source_cluster()), &no_cluster_named("ledger-encrypted"), &cluster_snapshot_rule(true), &restore]
    );
    let o = step_cluster(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "{o:?}");
}

#[tokio::test]
async fn a_multi_az_db_cluster_restore_carries_monitoring_and_performance_insights() {
    let mut source = source_cluster();
    source.engine = Some("postgres".into());
    source.availability_zones = None;
    source.db_cluster_instance_class = Some("db.m6gd.large".into());
    source.monitoring_interval = Some(30);
    source.monitoring_role_arn = Some("arn:aws:iam::123456789012:role/rds-monitoring".into());
    source.performance_insights_enabled = Some(true);
    source.performance_insights_kms_key_id = Some(KEY.into());
    source.performance_insights_retention_period = Some(31);
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| {
            r.db_cluster_instance_class() == Some("db.m6gd.large")
                && r.monitoring_interval() == Some(30)
                && r.monitoring_role_arn() == Some("arn:aws:iam::123456789012:role/rds-monitoring")
                && r.enable_performance_insights() == Some(true)
                && r.performance_insights_kms_key_id() == Some(KEY)
                && r.performance_insights_retention_period() == Some(31)
                // AvailabilityZones is for Aurora only.
                && r.availability_zones().is_empty()
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [&describe_source_cluster(source), &no_cluster_named("ledger-encrypted"), &cluster_snapshot_rule(true), &restore]
    );
    let o = step_cluster(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "{o:?}");
}

#[tokio::test]
async fn a_restored_cluster_gets_the_sources_roles_maintenance_window_and_managed_password() {
    let target = DbCluster::builder()
        .db_cluster_identifier("ledger-encrypted")
        .db_cluster_arn("arn:aws:rds:us-east-1:123456789012:cluster:ledger-encrypted")
        .status("available")
        .storage_encrypted(true)
        .preferred_maintenance_window("mon:09:00-mon:09:30")
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, CLUSTER_RID))
        .build();
    let by_name = mock!(Client::describe_db_clusters)
        .match_requests(|r| r.db_cluster_identifier() == Some("ledger-encrypted"))
        .then_output(move || DescribeDbClustersOutput::builder().db_clusters(target.clone()).build());
    let add_role = mock!(Client::add_role_to_db_cluster)
        .match_requests(|r| {
            r.db_cluster_identifier() == Some("ledger-encrypted") && r.role_arn() == Some(LAMBDA_ROLE) && r.feature_name() == Some("Lambda")
        })
        .then_output(|| AddRoleToDbClusterOutput::builder().build());
    let modify = mock!(Client::modify_db_cluster)
        .match_requests(|r| {
            r.db_cluster_identifier() == Some("ledger-encrypted")
                && r.preferred_maintenance_window() == Some("sat:04:00-sat:04:30")
                && r.manage_master_user_password() == Some(true)
                && r.master_user_password().is_none()
                && r.enable_local_write_forwarding() == Some(true)
                && r.new_db_cluster_identifier().is_none()
        })
        .then_output(|| ModifyDbClusterOutput::builder().build());
    let settled = mock!(Client::add_tags_to_resource)
        .match_requests(|r| r.tags().iter().any(|t| t.key() == Some(TAG_SETTINGS_APPLIED)))
        .then_output(|| AddTagsToResourceOutput::builder().build());
    let client =
        mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&describe_source_cluster(source_cluster()), &by_name, &add_role, &modify, &settled]);
    let o = step_cluster(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!((add_role.num_calls(), modify.num_calls(), settled.num_calls()), (1, 1, 1), "{o:?}");
}

#[tokio::test]
async fn a_stopped_cluster_fails_clearly_and_is_never_snapshotted() {
    let mut stopped = source_cluster();
    stopped.status = Some("stopped".into());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [&describe_source_cluster(stopped), &no_cluster_named("ledger-encrypted"), &cluster_snapshot_rule(false)]
    );
    let o = step_cluster(client, json!({})).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains("ledger is stopped") && o.message.contains("CreateDBClusterSnapshot"), "{}", o.message);
}

#[tokio::test]
async fn a_cluster_rename_cutover_is_refused_while_replica_clusters_exist() {
    let mut primary = source_cluster();
    primary.read_replica_identifiers = Some(vec!["arn:aws:rds:us-west-2:123456789012:cluster:ledger-west".into()]);
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&describe_source_cluster(primary), &no_cluster_named("ledger-encrypted")]);
    let o = step_cluster(client, json!({"Cutover": "rename", "WritesFrozen": "true"})).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains("ledger-west") && o.message.contains("Nothing was changed"), "{}", o.message);
}

#[test]
fn what_no_restore_or_modify_carries_is_named() {
    let mut instance = source();
    instance.read_replica_db_instance_identifiers = Some(vec!["orders-replica-1".into()]);
    instance.activity_stream_status = Some(aws_sdk_rds::types::ActivityStreamStatus::Started);
    let named = fix_rds_encrypt_instance::not_carried(&instance).join("; ");
    assert!(named.contains("orders-replica-1") && named.contains("Database Activity Stream"), "{named}");
    assert!(fix_rds_encrypt_instance::not_carried(&source()).is_empty(), "everything else is carried");

    let mut cluster = source_cluster();
    cluster.domain_memberships = Some(vec![
        DomainMembership::builder()
            .fqdn("corp.example.com")
            .auth_secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:ad")
            .build(),
    ]);
    let named = fix_rds_encrypt_cluster::not_carried(&cluster).join("; ");
    assert!(named.contains("Data API") && named.contains("self-managed Active Directory"), "{named}");
}
