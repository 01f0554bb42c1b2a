//! The RDS cluster and snapshot fixes and the RDS rules' sweeps against the local stand-in.

use std::sync::Arc;
use std::time::Duration;

use atrest::remediation::DriveOptions;
use atrest::{Compliance, FixRequest, FixRunner, FixStatus, Params, RuleRunner};
use atrest_rds::{TAG_REPLACED_BY, TAG_SOURCE_RESOURCE_ID, tag_value};
use atrest_testkit::{load_event, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_rds::types::Tag;
use aws_smithy_types::DateTime;
use rds_support::{postgres_instance, rds, tag_set};
use serde_json::{Value, json};

#[path = "rds_support/mod.rs"]
mod rds_support;

const FAST: DriveOptions = DriveOptions { max_steps: 30, pause: Duration::ZERO };

fn request(spec: &'static atrest::FixSpec, event: &str, resource_id: &str, extra: Value) -> FixRequest {
    let mut p = load_event(event);
    p["ResourceId"] = json!(resource_id);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    FixRequest::decode(spec, &p).unwrap()
}

/// The members of the cluster `aurora_cluster` makes: a writer and two readers of different classes.
const MEMBERS: &[(&str, &str)] = &[("writer", "db.r5.large"), ("reader-a", "db.r5.xlarge"), ("reader-b", "db.r5.large")];

/// An unencrypted Aurora MySQL cluster on port 3310, tagged team=billing, with `MEMBERS`:
/// its resource id and its members (identifier, class).
async fn aurora_cluster(sdk: &SdkConfig, id: &str) -> (String, Vec<(String, String)>) {
    let resource_id = rds_support::aurora_cluster(sdk, id, Some(3310), &tag_set(&[("team", "billing")]), MEMBERS).await;
    (resource_id, MEMBERS.iter().map(|(suffix, class)| (format!("{id}-{suffix}"), class.to_string())).collect())
}

#[tokio::test]
async fn a_cluster_comes_back_encrypted_with_every_member() {
    let sdk = sdk().await;
    let id = unique("billing");
    let (resource_id, members) = aurora_cluster(&sdk, &id).await;
    let runner = FixRunner::new(Arc::new(fix_rds_encrypt_cluster::RdsEncryptCluster), &sdk, None);
    let req = request(&fix_rds_encrypt_cluster::SPEC, "fix-rds-encrypt-cluster/ssm-payload.json", &resource_id, json!({}));
    let outcome = runner.drive(&req, &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");

    let target_id = format!("{id}-encrypted");
    let target = rds(&sdk).describe_db_clusters().db_cluster_identifier(&target_id).send().await.unwrap().db_clusters()[0].clone();
    assert_eq!(target.storage_encrypted(), Some(true));
    assert_eq!(target.port(), Some(3310));
    assert_eq!(target.engine_version(), Some("8.0.mysql_aurora.3.04.1"));
    assert_eq!(tag_value(target.tag_list(), "team"), Some("billing"));
    assert_eq!(tag_value(target.tag_list(), TAG_SOURCE_RESOURCE_ID), Some(resource_id.as_str()));

    let out = rds(&sdk).describe_db_instances().send().await.unwrap();
    let mut new_members: Vec<(String, String)> = out
        .db_instances()
        .iter()
        .filter(|i| i.db_cluster_identifier() == Some(target_id.as_str()))
        .map(|i| (i.db_instance_identifier().unwrap().to_string(), i.db_instance_class().unwrap().to_string()))
        .collect();
    new_members.sort();
    let mut expected: Vec<(String, String)> = members.iter().map(|(m, c)| (format!("{m}-encrypted"), c.clone())).collect();
    expected.sort();
    assert_eq!(new_members, expected, "three members of the same classes");
    assert!(
        out.db_instances()
            .iter()
            .filter(|i| i.db_cluster_identifier() == Some(target_id.as_str()))
            .all(|i| i.storage_encrypted() == Some(true))
    );

    // The source cluster and its members are untouched.
    let source = rds(&sdk).describe_db_clusters().db_cluster_identifier(&id).send().await.unwrap().db_clusters()[0].clone();
    assert_eq!(source.storage_encrypted(), Some(false));
    assert_eq!(source.db_cluster_members().len(), 3);
    assert_eq!(tag_value(source.tag_list(), TAG_REPLACED_BY), Some(target_id.as_str()));
    // The intermediate snapshot is gone.
    let snaps = rds(&sdk).describe_db_cluster_snapshots().db_cluster_identifier(&id).send().await.unwrap();
    assert!(snaps.db_cluster_snapshots().iter().all(|s| s.snapshot_type() != Some("manual")), "{snaps:?}");
    assert!(outcome.message.contains("point clients at"), "{}", outcome.message);

    // Again: nothing to do, still one target.
    let again = runner.step_request(&req).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_cluster_rename_cutover_moves_the_name() {
    let sdk = sdk().await;
    let id = unique("ledger");
    let (resource_id, _) = aurora_cluster(&sdk, &id).await;
    let runner = FixRunner::new(Arc::new(fix_rds_encrypt_cluster::RdsEncryptCluster), &sdk, None);
    let req = request(
        &fix_rds_encrypt_cluster::SPEC,
        "fix-rds-encrypt-cluster/ssm-payload.json",
        &resource_id,
        json!({"Cutover": "rename", "WritesFrozen": "true"}),
    );
    let outcome = runner.drive(&req, &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    let now = rds(&sdk).describe_db_clusters().db_cluster_identifier(&id).send().await.unwrap().db_clusters()[0].clone();
    assert_eq!(now.storage_encrypted(), Some(true));
    assert_eq!(now.db_cluster_members().len(), 3);
    let old =
        rds(&sdk).describe_db_clusters().db_cluster_identifier(format!("{id}-unencrypted")).send().await.unwrap().db_clusters()[0].clone();
    assert_eq!(old.db_cluster_resource_id(), Some(resource_id.as_str()));
    assert_eq!(old.db_cluster_members().len(), 3, "the source keeps its members");
}

async fn manual_snapshot(sdk: &SdkConfig) -> String {
    let client = rds(sdk);
    let db = unique("snapsrc");
    postgres_instance(sdk, &db).await;
    let snap = unique("before-migration");
    client
        .create_db_snapshot()
        .db_instance_identifier(&db)
        .db_snapshot_identifier(&snap)
        .tags(Tag::builder().key("purpose").value("migration").build())
        .send()
        .await
        .unwrap();
    snap
}

async fn db_snapshot(sdk: &SdkConfig, id: &str) -> Option<aws_sdk_rds::types::DbSnapshot> {
    rds(sdk).describe_db_snapshots().db_snapshot_identifier(id).send().await.ok().and_then(|o| o.db_snapshots().first().cloned())
}

#[tokio::test]
async fn snapshot_copies_are_encrypted_and_the_source_is_kept_unless_asked() {
    let sdk = sdk().await;
    let runner = FixRunner::new(Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot), &sdk, None);
    let spec = &fix_rds_encrypt_snapshot::SPEC;
    let event = "fix-rds-encrypt-snapshot/ssm-payload.json";

    let snap = manual_snapshot(&sdk).await;
    let dry = runner.step_request(&request(spec, event, &snap, json!({"DryRun": "true"}))).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{dry:?}");
    assert!(db_snapshot(&sdk, &format!("{snap}-encrypted")).await.is_none(), "dry run made nothing");

    let o = runner.drive(&request(spec, event, &snap, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert_eq!(o.resource_type.as_deref(), Some("AWS::RDS::DBSnapshot"));
    let copy = db_snapshot(&sdk, &format!("{snap}-encrypted")).await.expect("encrypted copy");
    assert_eq!(copy.encrypted(), Some(true));
    assert_eq!(tag_value(copy.tag_list(), "purpose"), Some("migration"));
    assert!(db_snapshot(&sdk, &snap).await.is_some(), "the source is kept by default");
    assert!(o.message.contains("was kept"), "{}", o.message);

    let o = runner.drive(&request(spec, event, &snap, json!({"DeleteSource": "true"})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert!(db_snapshot(&sdk, &snap).await.is_none(), "DeleteSource=true deletes the unencrypted source");
    assert!(db_snapshot(&sdk, &format!("{snap}-encrypted")).await.is_some());
    let again = runner.step_request(&request(spec, event, &snap, json!({"DeleteSource": "true"}))).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");

    // A cluster snapshot.
    let cluster = unique("snapcluster");
    aurora_cluster(&sdk, &cluster).await;
    let csnap = unique("cluster-before");
    rds(&sdk).create_db_cluster_snapshot().db_cluster_identifier(&cluster).db_cluster_snapshot_identifier(&csnap).send().await.unwrap();
    let o = runner.drive(&request(spec, event, &csnap, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    // The result email names a cluster snapshot, not the fix's first type.
    assert_eq!(o.resource_type.as_deref(), Some("AWS::RDS::DBClusterSnapshot"));
    let copy = rds(&sdk).describe_db_cluster_snapshots().db_cluster_snapshot_identifier(format!("{csnap}-encrypted")).send().await.unwrap();
    assert_eq!(copy.db_cluster_snapshots()[0].storage_encrypted(), Some(true));
}

#[tokio::test]
async fn sweeps_report_each_instance_by_its_own_dbi_resource_id() {
    let sdk = sdk().await;
    let client = rds(&sdk);
    let mut ids = Vec::new();
    for encrypted in [false, false, true] {
        let out = client
            .create_db_instance()
            .db_instance_identifier(unique("sweep"))
            .db_instance_class("db.t3.micro")
            .engine("postgres")
            .master_username("admin")
            .master_user_password("correct-horse-battery")
            .allocated_storage(20)
            .storage_encrypted(encrypted)
            .send()
            .await
            .unwrap();
        ids.push((out.db_instance().unwrap().dbi_resource_id().unwrap().to_string(), encrypted));
    }
    assert_ne!(ids[0].0, ids[1].0, "each instance has its own DbiResourceId");
    let runner = RuleRunner::new(Arc::new(rule_rds_storage_encrypted::RdsStorageEncrypted), &sdk);
    let params = rule_rds_storage_encrypted::SPEC.parse_params(&Default::default()).unwrap();
    let report = runner.sweep(params, DateTime::from_secs(1_800_000_000), None).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for (dbi, encrypted) in &ids {
        let e = report.evaluations.iter().find(|e| &e.compliance_resource_id == dbi).expect("evaluated");
        assert_eq!(e.compliance_resource_type, "AWS::RDS::DBInstance");
        let expected = if *encrypted { Compliance::Compliant } else { Compliance::NonCompliant };
        assert_eq!(e.compliance_type, expected, "{e:?}");
    }

    // The cluster and snapshot rules sweep too.
    let cluster = unique("sweepc");
    let (cluster_resource_id, _) = aurora_cluster(&sdk, &cluster).await;
    let runner = RuleRunner::new(Arc::new(rule_rds_cluster_encrypted_at_rest::RdsClusterEncryptedAtRest), &sdk);
    let report = runner.sweep(Params::default(), DateTime::from_secs(1_800_000_000), None).await.unwrap();
    let e = report.evaluations.iter().find(|e| e.compliance_resource_id == cluster_resource_id).expect("cluster evaluated");
    assert_eq!(e.compliance_type, Compliance::NonCompliant);

    let snap = manual_snapshot(&sdk).await;
    let runner = RuleRunner::new(Arc::new(rule_rds_snapshot_encrypted::RdsSnapshotEncrypted), &sdk);
    let report = runner.sweep(Params::default(), DateTime::from_secs(1_800_000_000), None).await.unwrap();
    let e = report.evaluations.iter().find(|e| e.compliance_resource_id == snap).expect("snapshot evaluated");
    assert_eq!(e.compliance_resource_type, "AWS::RDS::DBSnapshot");
    assert_eq!(e.compliance_type, Compliance::NonCompliant);
}
