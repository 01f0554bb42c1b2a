//! Shared by the RDS integration tests: unencrypted sources on the stand-in and the reads the
//! invariants make.

#![allow(dead_code)]

use std::collections::BTreeSet;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_rds::Client;
use aws_sdk_rds::types::{DbInstance, Tag};

pub const MASTER_PASSWORD: &str = "correct-horse-battery";

pub fn rds(sdk: &SdkConfig) -> Client {
    Client::new(sdk)
}

/// Turns deletion protection on for a cluster (what a careful owner has, and what a fix's
/// temporary cluster must not inherit).
pub async fn protect_cluster(sdk: &SdkConfig, cluster: &str) {
    rds(sdk)
        .modify_db_cluster()
        .db_cluster_identifier(cluster)
        .deletion_protection(true)
        .apply_immediately(true)
        .send()
        .await
        .expect("ModifyDBCluster");
}

/// For aws-smithy-mocks tests: nothing is reachable, every RDS call goes to the mocks (keys are
/// given as ARNs, so no KMS call either).
pub fn mocked_sdk() -> SdkConfig {
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
}

/// A modeled error's metadata with its AWS code, as the real deserializer sets it.
pub fn error_code(code: &str) -> aws_smithy_types::error::ErrorMetadata {
    aws_smithy_types::error::ErrorMetadata::builder().code(code).build()
}

pub fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

pub fn tag_set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn rds_tags(tags: &BTreeSet<(String, String)>) -> Option<Vec<Tag>> {
    Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect())
}

/// Tags without the fix's own `atrest:*` bookkeeping.
pub fn user_tags(tags: &[Tag]) -> BTreeSet<(String, String)> {
    tags.iter()
        .filter(|t| !t.key().unwrap_or_default().starts_with("atrest:"))
        .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
        .collect()
}

/// An unencrypted Aurora MySQL cluster on `port` with `tags` and the given members (suffix,
/// class), the first the writer, named `<id>-<suffix>`. Returns the cluster's resource id.
pub async fn aurora_cluster(
    sdk: &SdkConfig,
    id: &str,
    port: Option<i32>,
    tags: &BTreeSet<(String, String)>,
    members: &[(&str, &str)],
) -> String {
    let client = rds(sdk);
    let out = client
        .create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-mysql")
        .engine_version("8.0.mysql_aurora.3.04.1")
        .master_username("admin")
        .master_user_password(MASTER_PASSWORD)
        .set_port(port)
        .deletion_protection(false)
        .storage_encrypted(false)
        .set_tags(rds_tags(tags))
        .send()
        .await
        .expect("CreateDBCluster");
    for (suffix, class) in members {
        client
            .create_db_instance()
            .db_instance_identifier(format!("{id}-{suffix}"))
            .db_cluster_identifier(id)
            .engine("aurora-mysql")
            .db_instance_class(*class)
            .send()
            .await
            .expect("CreateDBInstance (cluster member)");
    }
    out.db_cluster().and_then(|c| c.db_cluster_resource_id()).expect("DbClusterResourceId").to_string()
}

/// A small unencrypted PostgreSQL instance (a source for DB snapshots).
pub async fn postgres_instance(sdk: &SdkConfig, id: &str) -> DbInstance {
    rds(sdk)
        .create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("admin")
        .master_user_password(MASTER_PASSWORD)
        .allocated_storage(20)
        .storage_encrypted(false)
        .send()
        .await
        .expect("CreateDBInstance")
        .db_instance()
        .cloned()
        .expect("the new instance")
}

/// Which manual snapshots to list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SnapshotKind {
    Db,
    Cluster,
}

/// One manual snapshot of either kind, reduced to what the invariants look at.
#[derive(Debug, Clone)]
pub struct ManualSnapshot {
    pub id: String,
    pub encrypted: bool,
    /// Without the fix's own `atrest:*` tags.
    pub user_tags: BTreeSet<(String, String)>,
}

/// The manual snapshots of `kind` whose identifier starts with `prefix`, in the order RDS lists
/// them (paginated: the shared stand-in holds hundreds).
pub async fn manual_snapshots(sdk: &SdkConfig, kind: SnapshotKind, prefix: &str) -> Vec<ManualSnapshot> {
    let client = rds(sdk);
    let all: Vec<ManualSnapshot> = match kind {
        SnapshotKind::Db => {
            let pages = client.describe_db_snapshots().snapshot_type("manual").into_paginator().items().send();
            let listed: Vec<_> = pages.collect::<Result<_, _>>().await.expect("DescribeDBSnapshots");
            listed
                .iter()
                .map(|s| ManualSnapshot {
                    id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
                    encrypted: s.encrypted() == Some(true),
                    user_tags: user_tags(s.tag_list()),
                })
                .collect()
        }
        SnapshotKind::Cluster => {
            let pages = client.describe_db_cluster_snapshots().snapshot_type("manual").into_paginator().items().send();
            let listed: Vec<_> = pages.collect::<Result<_, _>>().await.expect("DescribeDBClusterSnapshots");
            listed
                .iter()
                .map(|s| ManualSnapshot {
                    id: s.db_cluster_snapshot_identifier().unwrap_or_default().to_string(),
                    encrypted: s.storage_encrypted() == Some(true),
                    user_tags: user_tags(s.tag_list()),
                })
                .collect()
        }
    };
    all.into_iter().filter(|s| s.id.starts_with(prefix)).collect()
}

/// The identifiers of `manual_snapshots`.
pub async fn manual_snapshot_ids(sdk: &SdkConfig, kind: SnapshotKind, prefix: &str) -> Vec<String> {
    manual_snapshots(sdk, kind, prefix).await.into_iter().map(|s| s.id).collect()
}
