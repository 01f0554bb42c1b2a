//! fix-rds-encrypt-snapshot on DB cluster snapshots: the restore path (encrypted restore into a
//! temporary cluster, snapshot, delete), against the stand-in where it can show it and with
//! `aws-smithy-mocks` answering as AWS documents where it cannot (work still in progress,
//! Multi-AZ DB cluster snapshots, VPCs, AWS Backup snapshots).
//!
//! The stand-in refuses CopyDBClusterSnapshot with `KmsKeyId` from an unencrypted source, as AWS
//! does (tests/moto/atrest_moto_rds.py), so the old copy path fails every moto test here.

use std::sync::Arc;
use std::time::Duration;

use atrest::remediation::DriveOptions;
use atrest::{FixOutcome, FixRequest, FixRunner, FixStatus};
use atrest_rds::{TAG_ENCRYPTED_FROM, TAG_SOURCE_RESOURCE_ID, tag_value};
use atrest_testkit::{load_event, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_rds::Client;
use aws_sdk_rds::operation::describe_db_cluster_snapshots::{DescribeDBClusterSnapshotsError, DescribeDbClusterSnapshotsOutput};
use aws_sdk_rds::operation::describe_db_clusters::{DescribeDBClustersError, DescribeDbClustersOutput};
use aws_sdk_rds::operation::describe_db_snapshots::{DescribeDBSnapshotsError, DescribeDbSnapshotsOutput};
use aws_sdk_rds::operation::describe_db_subnet_groups::DescribeDbSubnetGroupsOutput;
use aws_sdk_rds::operation::restore_db_cluster_from_snapshot::RestoreDbClusterFromSnapshotOutput;
use aws_sdk_rds::types::error::{DbClusterNotFoundFault, DbClusterSnapshotNotFoundFault, DbSnapshotNotFoundFault};
use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, DbSnapshot, DbSubnetGroup, Tag};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use fix_rds_encrypt_snapshot::cluster::temporary_cluster_identifier;
use rds_support::{error_code as code, mocked_sdk, rds, tag, tag_set, user_tags};
use serde_json::{Value, json};

#[path = "rds_support/mod.rs"]
mod rds_support;

const FAST: DriveOptions = DriveOptions { max_steps: 30, pause: Duration::ZERO };
const EVENT: &str = "fix-rds-encrypt-snapshot/ssm-payload.json";

fn request(resource_id: &str, extra: Value) -> FixRequest {
    let mut p = load_event(EVENT);
    p["ResourceId"] = json!(resource_id);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    FixRequest::decode(&fix_rds_encrypt_snapshot::SPEC, &p).unwrap()
}

fn runner(sdk: &SdkConfig) -> FixRunner {
    FixRunner::new(Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot), sdk, None)
}

async fn cluster_snapshot(sdk: &SdkConfig, id: &str) -> Option<DbClusterSnapshot> {
    let out = rds(sdk).describe_db_cluster_snapshots().db_cluster_snapshot_identifier(id).send().await.ok()?;
    out.db_cluster_snapshots().iter().find(|s| s.db_cluster_snapshot_identifier() == Some(id)).cloned()
}

async fn cluster_exists(sdk: &SdkConfig, id: &str) -> bool {
    rds(sdk).describe_db_clusters().db_cluster_identifier(id).send().await.is_ok()
}

/// An unencrypted Aurora cluster with deletion protection on (as production clusters have it)
/// and a manual snapshot of it tagged team=billing: the snapshot's identifier.
async fn unencrypted_cluster_snapshot(sdk: &SdkConfig) -> (String, String) {
    let cluster = unique("snapc");
    rds_support::aurora_cluster(sdk, &cluster, None, &tag_set(&[]), &[]).await;
    rds_support::protect_cluster(sdk, &cluster).await;
    let snapshot = unique("billing-before");
    rds(sdk)
        .create_db_cluster_snapshot()
        .db_cluster_identifier(&cluster)
        .db_cluster_snapshot_identifier(&snapshot)
        .tags(Tag::builder().key("team").value("billing").build())
        .send()
        .await
        .expect("CreateDBClusterSnapshot");
    (cluster, snapshot)
}

// ------------------------------------------------------------------------------ on the stand-in

#[tokio::test]
async fn an_unencrypted_cluster_snapshot_is_encrypted_through_a_temporary_cluster_that_is_then_deleted() {
    let sdk = sdk().await;
    let key = aws_sdk_kms::Client::new(&sdk).create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    let (_, snapshot) = unencrypted_cluster_snapshot(&sdk).await;
    let target = format!("{snapshot}-encrypted");
    let temporary = temporary_cluster_identifier(&snapshot);

    // What the fix did before, and what AWS refuses: the stand-in refuses it too.
    let copy = rds(&sdk)
        .copy_db_cluster_snapshot()
        .source_db_cluster_snapshot_identifier(&snapshot)
        .target_db_cluster_snapshot_identifier(format!("{snapshot}-copy"))
        .kms_key_id(&key)
        .send()
        .await;
    assert!(copy.is_err(), "CopyDBClusterSnapshot with KmsKeyId from an unencrypted snapshot is an error in AWS");

    let dry = runner(&sdk).step_request(&request(&snapshot, json!({"KmsKeyId": key, "DryRun": "true"}))).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{dry:?}");
    assert!(dry.message.contains(&temporary) && dry.message.contains("Nothing was changed"), "{}", dry.message);
    assert!(!cluster_exists(&sdk, &temporary).await && cluster_snapshot(&sdk, &target).await.is_none(), "a dry run makes nothing");

    let outcome = runner(&sdk).drive(&request(&snapshot, json!({"KmsKeyId": key})), &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.resource_type.as_deref(), Some("AWS::RDS::DBClusterSnapshot"));

    let copy = cluster_snapshot(&sdk, &target).await.expect("the encrypted snapshot");
    assert_eq!(copy.storage_encrypted(), Some(true));
    assert!(copy.kms_key_id().is_some_and(|k| key.ends_with(k) || k == key), "encrypted with the key asked for: {:?}", copy.kms_key_id());
    assert_eq!(user_tags(copy.tag_list()), tag_set(&[("team", "billing")]), "the source's tags, and only them");
    assert_eq!(tag_value(copy.tag_list(), TAG_ENCRYPTED_FROM), Some(snapshot.as_str()));
    assert!(!cluster_exists(&sdk, &temporary).await, "the temporary cluster is deleted (it had no deletion protection)");

    let source = cluster_snapshot(&sdk, &snapshot).await.expect("the source is kept by default");
    assert_eq!(source.storage_encrypted(), Some(false));
    assert_eq!(user_tags(source.tag_list()), tag_set(&[("team", "billing")]));
    assert!(outcome.message.contains("was kept") && outcome.message.contains("temporary"), "{}", outcome.message);

    // Again: nothing to do, still one encrypted snapshot.
    let again = runner(&sdk).step_request(&request(&snapshot, json!({"KmsKeyId": key}))).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test]
async fn delete_source_deletes_a_manual_cluster_snapshot_but_never_an_automated_one() {
    let sdk = sdk().await;
    let (cluster, snapshot) = unencrypted_cluster_snapshot(&sdk).await;
    let outcome = runner(&sdk).drive(&request(&snapshot, json!({"DeleteSource": "true"})), &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert!(cluster_snapshot(&sdk, &snapshot).await.is_none(), "DeleteSource=true deletes the manual source");
    assert_eq!(cluster_snapshot(&sdk, &format!("{snapshot}-encrypted")).await.and_then(|s| s.storage_encrypted()), Some(true));

    // The automated snapshot RDS took of the same cluster: encrypted, never deleted.
    let automated = rds(&sdk)
        .describe_db_cluster_snapshots()
        .db_cluster_identifier(&cluster)
        .snapshot_type("automated")
        .send()
        .await
        .unwrap()
        .db_cluster_snapshots()
        .first()
        .and_then(|s| s.db_cluster_snapshot_identifier())
        .expect("an automated snapshot")
        .to_string();
    let outcome = runner(&sdk).drive(&request(&automated, json!({"DeleteSource": "true"})), &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert!(cluster_snapshot(&sdk, &automated).await.is_some(), "an automated snapshot is never deleted");
    assert!(outcome.message.contains("automated snapshot") && outcome.message.contains("was kept"), "{}", outcome.message);
    let target = atrest_rds::derived_identifier(&automated, "-encrypted");
    assert_eq!(cluster_snapshot(&sdk, &target).await.and_then(|s| s.storage_encrypted()), Some(true), "{target}");
    assert!(!cluster_exists(&sdk, &temporary_cluster_identifier(&automated)).await);
}

#[tokio::test]
async fn a_source_deleted_mid_run_still_ends_in_an_encrypted_snapshot() {
    let sdk = sdk().await;
    let (_, snapshot) = unencrypted_cluster_snapshot(&sdk).await;
    let first = runner(&sdk).step_request(&request(&snapshot, json!({}))).await;
    assert_eq!(first.status, FixStatus::InProgress, "{first:?}");
    assert!(cluster_exists(&sdk, &temporary_cluster_identifier(&snapshot)).await, "the first step restores the temporary cluster");
    // Someone deletes the source now: the temporary cluster holds the only copy of the data, so
    // it is snapshotted before it is deleted.
    rds(&sdk).delete_db_cluster_snapshot().db_cluster_snapshot_identifier(&snapshot).send().await.unwrap();
    let outcome = runner(&sdk).drive(&request(&snapshot, json!({})), &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    let copy = cluster_snapshot(&sdk, &format!("{snapshot}-encrypted")).await.expect("the encrypted snapshot");
    assert_eq!(copy.storage_encrypted(), Some(true));
    assert_eq!(user_tags(copy.tag_list()), tag_set(&[("team", "billing")]), "the tags came along through the temporary cluster");
    assert!(!cluster_exists(&sdk, &temporary_cluster_identifier(&snapshot)).await);
}

#[tokio::test]
async fn a_cluster_that_only_has_the_temporary_name_is_left_alone() {
    let sdk = sdk().await;
    let (_, snapshot) = unencrypted_cluster_snapshot(&sdk).await;
    let temporary = temporary_cluster_identifier(&snapshot);
    rds_support::aurora_cluster(&sdk, &temporary, None, &tag_set(&[("team", "other")]), &[]).await;
    let outcome = runner(&sdk).drive(&request(&snapshot, json!({})), &FAST).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{outcome:?}");
    assert!(outcome.message.contains("was not restored from") && outcome.message.contains(&temporary), "{}", outcome.message);
    assert!(cluster_exists(&sdk, &temporary).await, "someone else's cluster is never deleted");
    assert!(cluster_snapshot(&sdk, &format!("{snapshot}-encrypted")).await.is_none());
}

// ------------------------------------------------------------------- what the stand-in cannot show

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const SNAP: &str = "ledger-before";
const SNAP_ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:ledger-before";
const TARGET: &str = "ledger-before-encrypted";
const TEMPORARY: &str = "atrest-ledger-before-encrypting";

fn source_snapshot(engine: &str, cluster: &str, snapshot_type: &str) -> DbClusterSnapshot {
    DbClusterSnapshot::builder()
        .db_cluster_snapshot_identifier(SNAP)
        .db_cluster_snapshot_arn(SNAP_ARN)
        .db_cluster_identifier(cluster)
        .db_cluster_resource_id("cluster-LEDGER")
        .engine(engine)
        .engine_version(if engine.starts_with("aurora") { "16.4" } else { "8.0.39" })
        .engine_mode("provisioned")
        .vpc_id("vpc-ledger")
        .status("available")
        .storage_encrypted(false)
        .snapshot_type(snapshot_type)
        .set_storage_type(engine.starts_with("aurora").then(|| "aurora-iopt1".to_string()))
        .iam_database_authentication_enabled(engine.starts_with("aurora"))
        .tag_list(tag("team", "ledger"))
        .build()
}

fn no_db_snapshot() -> Rule {
    mock!(Client::describe_db_snapshots).then_error(|| {
        DescribeDBSnapshotsError::DbSnapshotNotFoundFault(DbSnapshotNotFoundFault::builder().meta(code("DBSnapshotNotFound")).build())
    })
}

fn cluster_snapshot_rule(id: &'static str, answer: Option<DbClusterSnapshot>) -> Rule {
    let rule = mock!(Client::describe_db_cluster_snapshots).match_requests(move |r| r.db_cluster_snapshot_identifier() == Some(id));
    match answer {
        Some(s) => rule.then_output(move || DescribeDbClusterSnapshotsOutput::builder().db_cluster_snapshots(s.clone()).build()),
        None => rule.then_error(|| {
            DescribeDBClusterSnapshotsError::DbClusterSnapshotNotFoundFault(
                DbClusterSnapshotNotFoundFault::builder().meta(code("DBClusterSnapshotNotFoundFault")).build(),
            )
        }),
    }
}

fn cluster_rule(id: &'static str, answer: Option<DbCluster>) -> Rule {
    let rule = mock!(Client::describe_db_clusters).match_requests(move |r| r.db_cluster_identifier() == Some(id));
    match answer {
        Some(c) => rule.then_output(move || DescribeDbClustersOutput::builder().db_clusters(c.clone()).build()),
        None => rule.then_error(|| {
            DescribeDBClustersError::DbClusterNotFoundFault(DbClusterNotFoundFault::builder().meta(code("DBClusterNotFoundFault")).build())
        }),
    }
}

/// atrest's markers for `SNAP`, with its tags.
fn ours() -> Vec<Tag> {
    vec![tag("team", "ledger"), tag(TAG_ENCRYPTED_FROM, SNAP), tag(TAG_SOURCE_RESOURCE_ID, SNAP_ARN)]
}

async fn step(client: Client, extra: Value) -> FixOutcome {
    let mut p = load_event(EVENT);
    p["ResourceId"] = json!(SNAP);
    p["KmsKeyId"] = json!(KEY);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    let req = FixRequest::decode(&fix_rds_encrypt_snapshot::SPEC, &p).unwrap();
    FixRunner::new(Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot), &mocked_sdk(), None).with_client(client).step_request(&req).await
}

#[tokio::test]
async fn the_aurora_restore_asks_for_the_key_the_snapshots_engine_version_its_network_and_no_deletion_protection() {
    let source_cluster = DbCluster::builder()
        .db_cluster_identifier("ledger")
        .db_cluster_resource_id("cluster-LEDGER")
        .engine("aurora-postgresql")
        .db_subnet_group("ledger-private")
        .build();
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| {
            let tags: Vec<(&str, &str)> = r.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            r.db_cluster_identifier() == Some(TEMPORARY)
                && r.snapshot_identifier() == Some(SNAP)
                && r.kms_key_id() == Some(KEY)
                && r.engine() == Some("aurora-postgresql")
                // Left out, RDS would restore into the Region's default version.
                && r.engine_version() == Some("16.4")
                && r.engine_mode().is_none()
                && r.db_subnet_group_name() == Some("ledger-private")
                && r.deletion_protection() == Some(false)
                && r.db_cluster_instance_class().is_none()
                // What the encrypted snapshot should record like the source's.
                && r.storage_type() == Some("aurora-iopt1")
                && r.enable_iam_database_authentication() == Some(true)
                && tags.contains(&("team", "ledger"))
                && tags.contains(&(TAG_SOURCE_RESOURCE_ID, SNAP_ARN))
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &cluster_snapshot_rule(SNAP, Some(source_snapshot("aurora-postgresql", "ledger", "manual"))),
            &cluster_snapshot_rule(TARGET, None),
            &cluster_rule(TEMPORARY, None),
            &cluster_rule("ledger", Some(source_cluster)),
            &restore
        ]
    );
    let o = step(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "the restore request matched: {o:?}");
    assert!(o.message.contains("(no instances)"), "{}", o.message);
}

#[tokio::test]
async fn a_multi_az_cluster_snapshot_is_restored_with_its_clusters_instance_class_and_storage() {
    let source_cluster = DbCluster::builder()
        .db_cluster_identifier("ledger")
        .db_cluster_resource_id("cluster-LEDGER")
        .engine("mysql")
        .db_subnet_group("ledger-3az")
        .db_cluster_instance_class("db.m6gd.large")
        .storage_type("io1")
        .iops(3000)
        .build();
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| {
            r.db_cluster_identifier() == Some(TEMPORARY)
                && r.engine() == Some("mysql")
                && r.engine_version() == Some("8.0.39")
                && r.kms_key_id() == Some(KEY)
                && r.db_cluster_instance_class() == Some("db.m6gd.large")
                && r.storage_type() == Some("io1")
                && r.iops() == Some(3000)
                && r.db_subnet_group_name() == Some("ledger-3az")
                && r.publicly_accessible() == Some(false)
                && r.deletion_protection() == Some(false)
                && r.enable_iam_database_authentication().is_none()
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &cluster_snapshot_rule(SNAP, Some(source_snapshot("mysql", "ledger", "manual"))),
            &cluster_snapshot_rule(TARGET, None),
            &cluster_rule(TEMPORARY, None),
            &cluster_rule("ledger", Some(source_cluster)),
            &restore
        ]
    );
    let o = step(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "RestoreDBClusterFromSnapshot carried DBClusterInstanceClass, StorageType and Iops: {o:?}");
}

#[tokio::test]
async fn a_multi_az_cluster_snapshot_whose_cluster_is_gone_is_refused_with_the_alternative() {
    // Only reads are mocked: a restore would fail the step differently.
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &cluster_snapshot_rule(SNAP, Some(source_snapshot("postgres", "ledger", "manual"))),
            &cluster_snapshot_rule(TARGET, None),
            &cluster_rule(TEMPORARY, None),
            &cluster_rule("ledger", None)
        ]
    );
    for dry_run in ["true", "false"] {
        let o = step(client.clone(), json!({"DryRun": dry_run})).await;
        assert_eq!(o.status, FixStatus::Failed, "{o:?}");
        assert!(o.changes.is_empty(), "{o:?}");
        assert!(
            o.message.contains("Multi-AZ DB cluster snapshot")
                && o.message.contains("restore-db-cluster-from-snapshot")
                && o.message.contains("--db-cluster-instance-class"),
            "{}",
            o.message
        );
    }
}

#[tokio::test]
async fn a_snapshot_whose_cluster_is_gone_is_restored_into_a_subnet_group_of_its_vpc() {
    let group = |name: &str, vpc: &str| DbSubnetGroup::builder().db_subnet_group_name(name).vpc_id(vpc).build();
    let groups = mock!(Client::describe_db_subnet_groups).then_output(move || {
        DescribeDbSubnetGroupsOutput::builder()
            .db_subnet_groups(group("default", "vpc-default"))
            .db_subnet_groups(group("ledger-b", "vpc-ledger"))
            .db_subnet_groups(group("ledger-a", "vpc-ledger"))
            .build()
    });
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| r.db_subnet_group_name() == Some("ledger-a") && r.kms_key_id() == Some(KEY))
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &cluster_snapshot_rule(SNAP, Some(source_snapshot("aurora-mysql", "ledger", "manual"))),
            &cluster_snapshot_rule(TARGET, None),
            &cluster_rule(TEMPORARY, None),
            &cluster_rule("ledger", None),
            &groups,
            &restore
        ]
    );
    let o = step(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(restore.num_calls(), 1, "a subnet group of the snapshot's VPC (the default VPC may not exist): {o:?}");
}

#[tokio::test]
async fn a_temporary_cluster_still_being_restored_or_deleted_is_waited_for() {
    let target = DbClusterSnapshot::builder()
        .db_cluster_snapshot_identifier(TARGET)
        .status("available")
        .storage_encrypted(true)
        .set_tag_list(Some(ours()))
        .build();
    for (status, target_exists, expected) in [("creating", false, "to be available"), ("deleting", true, "to be deleted")] {
        let temporary =
            DbCluster::builder().db_cluster_identifier(TEMPORARY).status(status).storage_encrypted(true).set_tag_list(Some(ours())).build();
        let client = mock_client!(
            aws_sdk_rds,
            RuleMode::MatchAny,
            [
                &no_db_snapshot(),
                &cluster_snapshot_rule(SNAP, Some(source_snapshot("aurora-mysql", "ledger", "manual"))),
                &cluster_snapshot_rule(TARGET, target_exists.then(|| target.clone())),
                &cluster_rule(TEMPORARY, Some(temporary))
            ]
        );
        let o = step(client, json!({})).await;
        assert_eq!(o.status, FixStatus::InProgress, "{status}: {o:?}");
        assert!(o.changes.is_empty(), "{status}: {o:?}");
        assert!(o.message.contains(TEMPORARY) && o.message.contains(expected), "{status}: {}", o.message);
    }
}

#[tokio::test]
async fn delete_source_never_deletes_an_aws_backup_snapshot() {
    // DB snapshot: the copy path. Only describes are mocked, so a DeleteDBSnapshot would fail.
    let backup_id = "awsbackup:job-1234";
    let db_source = DbSnapshot::builder()
        .db_snapshot_identifier(backup_id)
        .db_snapshot_arn("arn:aws:rds:us-east-1:123456789012:snapshot:awsbackup:job-1234")
        .status("available")
        .encrypted(false)
        .snapshot_type("awsbackup")
        .build();
    let db_copy = DbSnapshot::builder()
        .db_snapshot_identifier("awsbackup-job-1234-encrypted")
        .status("available")
        .encrypted(true)
        .tag_list(tag(TAG_SOURCE_RESOURCE_ID, "arn:aws:rds:us-east-1:123456789012:snapshot:awsbackup:job-1234"))
        .build();
    let by_id = mock!(Client::describe_db_snapshots)
        .match_requests(move |r| r.db_snapshot_identifier() == Some(backup_id))
        .then_output(move || DescribeDbSnapshotsOutput::builder().db_snapshots(db_source.clone()).build());
    let copy = mock!(Client::describe_db_snapshots)
        .match_requests(|r| r.db_snapshot_identifier() == Some("awsbackup-job-1234-encrypted"))
        .then_output(move || DescribeDbSnapshotsOutput::builder().db_snapshots(db_copy.clone()).build());
    let client = mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&by_id, &copy]);
    let mut p = load_event(EVENT);
    p["ResourceId"] = json!(backup_id);
    p["KmsKeyId"] = json!(KEY);
    p["DeleteSource"] = json!("true");
    let req = FixRequest::decode(&fix_rds_encrypt_snapshot::SPEC, &p).unwrap();
    let fix = FixRunner::new(Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot), &mocked_sdk(), None).with_client(client);
    let o = fix.step_request(&req).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert!(o.changes.is_empty(), "{o:?}");
    assert!(o.message.contains("AWS Backup") && o.message.contains("was kept"), "{}", o.message);

    // Cluster snapshot: the restore path, finished; the source is AWS Backup's.
    let target = DbClusterSnapshot::builder()
        .db_cluster_snapshot_identifier(TARGET)
        .status("available")
        .storage_encrypted(true)
        .set_tag_list(Some(ours()))
        .build();
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &cluster_snapshot_rule(SNAP, Some(source_snapshot("aurora-mysql", "ledger", "awsbackup"))),
            &cluster_snapshot_rule(TARGET, Some(target)),
            &cluster_rule(TEMPORARY, None)
        ]
    );
    let o = step(client, json!({"DeleteSource": "true"})).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert!(o.changes.is_empty(), "{o:?}");
    assert!(o.message.contains("AWS Backup") && o.message.contains("was kept"), "{}", o.message);
}

#[tokio::test]
async fn an_automated_cluster_snapshot_is_found_with_its_snapshot_type_and_restored() {
    // DescribeDBClusterSnapshots: "If this identifier is for an automated snapshot, the
    // SnapshotType parameter must also be specified." Without it, AWS answers not found.
    const AUTOMATED: &str = "rds:ledger-2026-11-20-10-00";
    let automated = DbClusterSnapshot::builder()
        .db_cluster_snapshot_identifier(AUTOMATED)
        .db_cluster_snapshot_arn("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:rds:ledger-2026-11-20-10-00")
        .db_cluster_identifier("ledger")
        .engine("aurora-mysql")
        .engine_version("8.0.mysql_aurora.3.04.1")
        .status("available")
        .storage_encrypted(false)
        .snapshot_type("automated")
        .build();
    let without_type = mock!(Client::describe_db_cluster_snapshots)
        .match_requests(|r| r.db_cluster_snapshot_identifier() == Some(AUTOMATED) && r.snapshot_type().is_none())
        .then_error(|| {
            DescribeDBClusterSnapshotsError::DbClusterSnapshotNotFoundFault(
                DbClusterSnapshotNotFoundFault::builder().meta(code("DBClusterSnapshotNotFoundFault")).build(),
            )
        });
    let with_type = mock!(Client::describe_db_cluster_snapshots)
        .match_requests(|r| r.db_cluster_snapshot_identifier() == Some(AUTOMATED) && r.snapshot_type() == Some("automated"))
        .then_output(move || DescribeDbClusterSnapshotsOutput::builder().db_cluster_snapshots(automated.clone()).build());
    let source_cluster =
        DbCluster::builder().db_cluster_identifier("ledger").engine("aurora-mysql").db_subnet_group("ledger-private").build();
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(|r| {
            r.snapshot_identifier() == Some(AUTOMATED)
                && r.db_cluster_identifier() == Some("atrest-rds-ledger-2026-11-20-10-00-encrypting")
                && r.kms_key_id() == Some(KEY)
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &without_type,
            &with_type,
            &cluster_snapshot_rule("rds-ledger-2026-11-20-10-00-encrypted", None),
            &cluster_rule("atrest-rds-ledger-2026-11-20-10-00-encrypting", None),
            &cluster_rule("ledger", Some(source_cluster)),
            &restore
        ]
    );
    let mut p = load_event(EVENT);
    p["ResourceId"] = json!(AUTOMATED);
    p["KmsKeyId"] = json!(KEY);
    let req = FixRequest::decode(&fix_rds_encrypt_snapshot::SPEC, &p).unwrap();
    let fix = FixRunner::new(Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot), &mocked_sdk(), None).with_client(client);
    let o = fix.step_request(&req).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(with_type.num_calls(), 1, "looked up again with SnapshotType=automated");
    assert_eq!(restore.num_calls(), 1, "{o:?}");
}

#[tokio::test]
async fn a_multi_az_temporary_cluster_is_deleted_with_its_members_in_one_call_and_no_final_snapshot() {
    // DeleteDBCluster: deleting a Multi-AZ DB cluster terminates its members; `SkipFinalSnapshot`
    // keeps RDS from taking a final snapshot that would outlive the run.
    let target = DbClusterSnapshot::builder()
        .db_cluster_snapshot_identifier(TARGET)
        .status("available")
        .storage_encrypted(true)
        .set_tag_list(Some(ours()))
        .build();
    let temporary = DbCluster::builder()
        .db_cluster_identifier(TEMPORARY)
        .engine("mysql")
        .status("available")
        .storage_encrypted(true)
        .deletion_protection(false)
        .db_cluster_members(aws_sdk_rds::types::DbClusterMember::builder().db_instance_identifier("atrest-tmp-instance-1").build())
        .set_tag_list(Some(ours()))
        .build();
    let delete = mock!(Client::delete_db_cluster)
        .match_requests(|r| {
            r.db_cluster_identifier() == Some(TEMPORARY)
                && r.skip_final_snapshot() == Some(true)
                && r.final_db_snapshot_identifier().is_none()
        })
        .then_output(|| aws_sdk_rds::operation::delete_db_cluster::DeleteDbClusterOutput::builder().build());
    let client = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [
            &no_db_snapshot(),
            &cluster_snapshot_rule(SNAP, Some(source_snapshot("mysql", "ledger", "manual"))),
            &cluster_snapshot_rule(TARGET, Some(target)),
            &cluster_rule(TEMPORARY, Some(temporary)),
            &delete
        ]
    );
    let o = step(client, json!({})).await;
    assert_eq!(o.status, FixStatus::InProgress, "{o:?}");
    assert_eq!(delete.num_calls(), 1, "{o:?}");
    assert!(o.changes.iter().any(|c| c.contains(TEMPORARY)), "{o:?}");
}
