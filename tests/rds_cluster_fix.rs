//! The RDS cluster fix against the local stand-in, for what a cluster restore drops and the
//! source states a snapshot needs: IAM roles associated after creation come back on the copy,
//! a stopped cluster is refused untouched.

use std::sync::Arc;
use std::time::Duration;

use atrest::remediation::DriveOptions;
use atrest::{FixRequest, FixRunner, FixStatus};
use atrest_testkit::{load_event, sdk, unique};
use aws_config::SdkConfig;
use rds_support::{SnapshotKind, manual_snapshot_ids, rds, tag_set};
use serde_json::{Value, json};

#[path = "rds_support/mod.rs"]
mod rds_support;

const FAST: DriveOptions = DriveOptions { max_steps: 30, pause: Duration::ZERO };

fn request(resource_id: &str, extra: Value) -> FixRequest {
    let mut p = load_event("fix-rds-encrypt-cluster/ssm-payload.json");
    p["ResourceId"] = json!(resource_id);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    FixRequest::decode(&fix_rds_encrypt_cluster::SPEC, &p).unwrap()
}

fn runner(sdk: &SdkConfig) -> FixRunner {
    FixRunner::new(Arc::new(fix_rds_encrypt_cluster::RdsEncryptCluster), sdk, None)
}

async fn cluster(sdk: &SdkConfig, id: &str) -> aws_sdk_rds::types::DbCluster {
    rds(sdk).describe_db_clusters().db_cluster_identifier(id).send().await.unwrap().db_clusters()[0].clone()
}

#[tokio::test]
async fn the_sources_iam_roles_come_back_on_the_encrypted_cluster() {
    let sdk = sdk().await;
    let id = unique("roles");
    let resource_id = rds_support::aurora_cluster(&sdk, &id, None, &tag_set(&[]), &[("writer", "db.r5.large")]).await;
    // Associated after creation, as people do: a restore does not carry it.
    let role = "arn:aws:iam::123456789012:role/aurora-s3-import";
    rds(&sdk).add_role_to_db_cluster().db_cluster_identifier(&id).role_arn(role).feature_name("s3Import").send().await.unwrap();

    let o = runner(&sdk).drive(&request(&resource_id, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    let target = cluster(&sdk, &format!("{id}-encrypted")).await;
    assert_eq!(target.storage_encrypted(), Some(true));
    let roles: Vec<(Option<&str>, Option<&str>)> = target.associated_roles().iter().map(|r| (r.role_arn(), r.feature_name())).collect();
    assert_eq!(roles, vec![(Some(role), Some("s3Import"))]);
    assert_eq!(target.db_cluster_members().len(), 1, "the member is recreated after the settings");

    // A second run finds everything done.
    let again = runner(&sdk).drive(&request(&resource_id, json!({})), &FAST).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_stopped_cluster_is_refused_and_left_as_it_is() {
    let sdk = sdk().await;
    let id = unique("stopped");
    let resource_id = rds_support::aurora_cluster(&sdk, &id, None, &tag_set(&[]), &[("writer", "db.r5.large")]).await;
    rds(&sdk).stop_db_cluster().db_cluster_identifier(&id).send().await.unwrap();

    let o = runner(&sdk).drive(&request(&resource_id, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains(&format!("{id} is stopped")) && o.message.contains("never starts or stops"), "{}", o.message);
    let prefix = format!("atrest-{}", resource_id.to_ascii_lowercase());
    assert!(manual_snapshot_ids(&sdk, SnapshotKind::Cluster, &prefix).await.is_empty());
    assert_eq!(cluster(&sdk, &id).await.status(), Some("stopped"), "never started");
    let out = rds(&sdk).describe_db_clusters().db_cluster_identifier(format!("{id}-encrypted")).send().await;
    assert!(out.is_err(), "no encrypted cluster was made");
}
