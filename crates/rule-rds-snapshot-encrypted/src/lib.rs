//! `rds-snapshot-encrypted`: every RDS DB snapshot and DB cluster snapshot is encrypted.
//!
//! Mirrors the managed rule `RDS_SNAPSHOT_ENCRYPTED` (resource id = the snapshot identifier, as
//! Config records both types), with a list of approved keys. DB snapshots report `encrypted`,
//! cluster snapshots `storageEncrypted`. Periodic sweeps page through `DescribeDBSnapshots` and
//! `DescribeDBClusterSnapshots`.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field_bool, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_rds::{KMS_KEY_IDS, encryption_verdict, tags_of};
use aws_sdk_rds::types::{DbClusterSnapshot, DbSnapshot};
use serde_json::json;

pub const DB_SNAPSHOT: &str = "AWS::RDS::DBSnapshot";
pub const CLUSTER_SNAPSHOT: &str = "AWS::RDS::DBClusterSnapshot";

pub static SPEC: RuleSpec = RuleSpec {
    name: "rds-snapshot-encrypted",
    description: "RDS DB snapshots and DB cluster snapshots are encrypted; optionally with one of the approved KMS keys.",
    resource_types: &[DB_SNAPSHOT, CLUSTER_SNAPSHOT],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[KMS_KEY_IDS],
    mirrors: Some("RDS_SNAPSHOT_ENCRYPTED"),
    fix: Some("rds-encrypt-snapshot"),
};

fn encrypted_flag(item: &ConfigurationItem) -> Option<bool> {
    field_bool(&item.configuration, "encrypted").or_else(|| field_bool(&item.configuration, "storageEncrypted"))
}

pub struct RdsSnapshotEncrypted;

#[async_trait]
impl ConfigRule for RdsSnapshotEncrypted {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        encrypted_flag(item).is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let c = &item.configuration;
        let encrypted = encrypted_flag(item);
        let key = if encrypted == Some(true) { field_str(c, "kmsKeyId") } else { None };
        let (kind, automated) = if item.resource_type == CLUSTER_SNAPSHOT {
            ("DB cluster snapshot", field_str(c, "snapshotType") == Some("automated"))
        } else {
            ("DB snapshot", field_str(c, "snapshotType") == Some("automated"))
        };
        let manual = automated.then(|| {
            "Automated snapshots cannot be deleted: encrypt the instance or cluster; the fix can make an encrypted manual copy.".to_string()
        });
        encryption_verdict(ctx, &format!("{kind} {}", item.resource_id), encrypted, key, manual).await
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let rds = ctx.client(aws_sdk_rds::Client::new);
        let mut found = Vec::new();
        let mut pages = rds.describe_db_snapshots().max_records(100).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("rds:DescribeDBSnapshots", "the account's DB snapshots", e))?;
            found.extend(page.db_snapshots().iter().filter_map(db_snapshot_item).map(Discovered::Item));
        }
        let mut pages = rds.describe_db_cluster_snapshots().max_records(100).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("rds:DescribeDBClusterSnapshots", "the account's DB cluster snapshots", e))?;
            found.extend(page.db_cluster_snapshots().iter().filter_map(cluster_snapshot_item).map(Discovered::Item));
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, resource_type: &str, resource_id: &str) -> Result<Option<ConfigurationItem>> {
        let rds = ctx.client(aws_sdk_rds::Client::new);
        if resource_type == CLUSTER_SNAPSHOT {
            return match rds.describe_db_cluster_snapshots().db_cluster_snapshot_identifier(resource_id).send().await {
                Ok(out) => Ok(out.db_cluster_snapshots().first().and_then(cluster_snapshot_item)),
                Err(e) => {
                    let err = aws_error("rds:DescribeDBClusterSnapshots", resource_id, e);
                    if err.aws_code() == Some("DBClusterSnapshotNotFoundFault") { Ok(None) } else { Err(err) }
                }
            };
        }
        match rds.describe_db_snapshots().db_snapshot_identifier(resource_id).send().await {
            Ok(out) => Ok(out.db_snapshots().first().and_then(db_snapshot_item)),
            Err(e) => {
                let err = aws_error("rds:DescribeDBSnapshots", resource_id, e);
                if err.aws_code() == Some("DBSnapshotNotFound") { Ok(None) } else { Err(err) }
            }
        }
    }
}

pub fn db_snapshot_item(snap: &DbSnapshot) -> Option<ConfigurationItem> {
    let id = snap.db_snapshot_identifier()?;
    let configuration = json!({
        "dBSnapshotIdentifier": id,
        "dBInstanceIdentifier": snap.db_instance_identifier(),
        "dBSnapshotArn": snap.db_snapshot_arn(),
        "snapshotType": snap.snapshot_type(),
        "status": snap.status(),
        "encrypted": snap.encrypted(),
        "kmsKeyId": snap.kms_key_id(),
    });
    let mut item = ConfigurationItem::live(DB_SNAPSHOT, id, configuration);
    item.resource_name = Some(id.to_string());
    item.arn = snap.db_snapshot_arn().map(str::to_string);
    item.tags = tags_of(snap.tag_list());
    Some(item)
}

pub fn cluster_snapshot_item(snap: &DbClusterSnapshot) -> Option<ConfigurationItem> {
    let id = snap.db_cluster_snapshot_identifier()?;
    let configuration = json!({
        "dBClusterSnapshotIdentifier": id,
        "dBClusterIdentifier": snap.db_cluster_identifier(),
        "dBClusterSnapshotArn": snap.db_cluster_snapshot_arn(),
        "snapshotType": snap.snapshot_type(),
        "status": snap.status(),
        "storageEncrypted": snap.storage_encrypted(),
        "kmsKeyId": snap.kms_key_id(),
    });
    let mut item = ConfigurationItem::live(CLUSTER_SNAPSHOT, id, configuration);
    item.resource_name = Some(id.to_string());
    item.arn = snap.db_cluster_snapshot_arn().map(str::to_string);
    item.tags = tags_of(snap.tag_list());
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use serde_json::Value;

    const KEY: &str = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-2:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn item(resource_type: &str, configuration: Value) -> ConfigurationItem {
        ConfigurationItem::from_notification(&json!({
            "configurationItemCaptureTime": "2022-02-21T18:46:35.200Z",
            "configurationItemStatus": "ResourceDiscovered",
            "resourceType": resource_type, "resourceId": "test", "resourceName": "test",
            "awsRegion": "us-east-2", "tags": {}, "configuration": configuration,
            "supplementaryConfiguration": {}
        }))
        .unwrap()
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let sdk = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-2")).build();
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk, SPEC.parse_params(&raw).unwrap());
        RdsSnapshotEncrypted.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        // The RDK's example DBClusterSnapshot item reports storageEncrypted; DB snapshots report encrypted.
        let cluster_snap = json!({"engine": "aurora-mysql", "status": "available", "snapshotType": "manual",
            "storageEncrypted": true, "kmsKeyId": KEY, "dbclusterIdentifier": "database-1", "dbclusterSnapshotIdentifier": "test"});
        let cases: Vec<(&str, &str, Value, Value, Compliance, &str)> = vec![
            (
                "cluster snapshot encrypted",
                CLUSTER_SNAPSHOT,
                json!({}),
                cluster_snap.clone(),
                Compliance::Compliant,
                "DB cluster snapshot test is encrypted",
            ),
            (
                "cluster snapshot other key",
                CLUSTER_SNAPSHOT,
                json!({"kmsKeyIds": OTHER}),
                cluster_snap,
                Compliance::NonCompliant,
                "not in kmsKeyIds",
            ),
            (
                "cluster snapshot unencrypted",
                CLUSTER_SNAPSHOT,
                json!({}),
                json!({"storageEncrypted": false, "kmsKeyId": "default_kms_key_id"}),
                Compliance::NonCompliant,
                "not encrypted",
            ),
            (
                "db snapshot unencrypted",
                DB_SNAPSHOT,
                json!({}),
                json!({"encrypted": false, "snapshotType": "manual"}),
                Compliance::NonCompliant,
                "DB snapshot test is not encrypted",
            ),
            (
                "db snapshot approved",
                DB_SNAPSHOT,
                json!({"kmsKeyIds": KEY}),
                json!({"encrypted": true, "kmsKeyId": KEY}),
                Compliance::Compliant,
                "approved",
            ),
            (
                "automated",
                DB_SNAPSHOT,
                json!({}),
                json!({"encrypted": false, "snapshotType": "automated"}),
                Compliance::NonCompliant,
                "Automated snapshots",
            ),
        ];
        for (name, kind, params, configuration, expected, phrase) in cases {
            let verdict = judge(params, &item(kind, configuration)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(phrase), "{name}: {}", verdict.annotation);
        }
        assert!(RdsSnapshotEncrypted.needs_live_state(&item(DB_SNAPSHOT, json!({"status": "available"}))));
    }
}
