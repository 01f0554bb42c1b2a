//! `rds-cluster-encrypted-at-rest`: every RDS DB cluster (Aurora or Multi-AZ DB cluster) stores
//! its data encrypted.
//!
//! Mirrors the managed rule `RDS_CLUSTER_ENCRYPTED_AT_REST` (ComplianceResourceId = the
//! DbClusterResourceId, `cluster-…`, as Config records it), with a list of approved keys.
//! Periodic sweeps page through `DescribeDBClusters`.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_bool, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_rds::{ClusterBlocker, KMS_KEY_IDS, TAG_REPLACED_BY, cluster_blocker, cluster_by_resource_id, encryption_verdict, tags_of};
use aws_sdk_rds::types::DbCluster;
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::RDS::DBCluster";

pub static SPEC: RuleSpec = RuleSpec {
    name: "rds-cluster-encrypted-at-rest",
    description: "RDS DB clusters (Aurora and Multi-AZ DB clusters) are encrypted at rest; optionally with one of the approved KMS keys.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[KMS_KEY_IDS],
    mirrors: Some("RDS_CLUSTER_ENCRYPTED_AT_REST"),
    fix: Some("rds-encrypt-cluster"),
};

/// Why the cluster cannot be remediated automatically, from its configuration.
pub fn manual_remediation_reason(configuration: &Value) -> Option<String> {
    let blocker = cluster_blocker(
        field_str(configuration, "replicationSourceIdentifier"),
        field_str(configuration, "globalClusterIdentifier"),
        field_str(configuration, "engine").unwrap_or_default(),
        field_str(configuration, "engineMode"),
    )?;
    Some(match blocker {
        ClusterBlocker::Replica(_) => {
            "It replicates another cluster: remediation must be manual (encrypt the source, then recreate the replica).".into()
        }
        ClusterBlocker::Global(_) => "It is part of a global database: remediation must be manual.".into(),
        ClusterBlocker::Engine(engine) => format!("Engine {engine}: remediation must be manual."),
        ClusterBlocker::ServerlessV1 => {
            "Aurora Serverless v1: remediation must be manual (upgrade to provisioned or Serverless v2 first).".into()
        }
    })
}

pub struct RdsClusterEncryptedAtRest;

#[async_trait]
impl ConfigRule for RdsClusterEncryptedAtRest {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        field(&item.configuration, "storageEncrypted").is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        let c = &item.configuration;
        let mut manual = manual_remediation_reason(c);
        if let Some(new) = item.tag(TAG_REPLACED_BY) {
            manual = Some(format!("Encrypted replacement {new} exists: move clients to it, then delete this cluster."));
        }
        let name = field_str(c, "dBClusterIdentifier")
            .map(str::to_string)
            .or_else(|| item.resource_name.clone())
            .unwrap_or_else(|| item.resource_id.clone());
        let encrypted = field_bool(c, "storageEncrypted");
        // Unencrypted clusters may still report a key (moto: a placeholder); only trust it when encrypted.
        let key = if encrypted == Some(true) { field_str(c, "kmsKeyId") } else { None };
        encryption_verdict(ctx, &format!("DB cluster {name}"), encrypted, key, manual).await
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let rds = ctx.client(aws_sdk_rds::Client::new);
        let mut found = Vec::new();
        let mut pages = rds.describe_db_clusters().max_records(100).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("rds:DescribeDBClusters", "the account's DB clusters", e))?;
            found.extend(page.db_clusters().iter().filter_map(cluster_item).map(Discovered::Item));
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, resource_id: &str) -> Result<Option<ConfigurationItem>> {
        let rds = ctx.client(aws_sdk_rds::Client::new);
        Ok(cluster_by_resource_id(&rds, resource_id).await?.as_ref().and_then(cluster_item))
    }
}

/// A cluster as a configuration item, with Config's field names.
pub fn cluster_item(cluster: &DbCluster) -> Option<ConfigurationItem> {
    let resource_id = cluster.db_cluster_resource_id()?;
    let configuration = json!({
        "dBClusterIdentifier": cluster.db_cluster_identifier(),
        "dbClusterResourceId": resource_id,
        "dBClusterArn": cluster.db_cluster_arn(),
        "status": cluster.status(),
        "engine": cluster.engine(),
        "engineMode": cluster.engine_mode(),
        "storageEncrypted": cluster.storage_encrypted(),
        "kmsKeyId": cluster.kms_key_id(),
        "replicationSourceIdentifier": cluster.replication_source_identifier(),
        "globalClusterIdentifier": cluster.global_cluster_identifier(),
    });
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, resource_id, configuration);
    item.resource_name = cluster.db_cluster_identifier().map(str::to_string);
    item.arn = cluster.db_cluster_arn().map(str::to_string);
    item.tags = tags_of(cluster.tag_list());
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    const KEY: &str = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-2:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    /// The shape of the RDK's example configuration item for AWS::RDS::DBCluster.
    fn rdk_item(configuration_edit: Value) -> ConfigurationItem {
        let mut c = json!({
            "allocatedStorage": 1, "availabilityZones": ["us-east-2b", "us-east-2c", "us-east-2a"],
            "backupRetentionPeriod": 1, "status": "available", "multiAZ": false,
            "engine": "aurora-mysql", "engineVersion": "5.7.mysql_aurora.2.07.2", "port": 3306,
            "vpcSecurityGroups": [{"vpcSecurityGroupId": "sg-test", "status": "active"}],
            "storageEncrypted": true, "kmsKeyId": KEY, "dbClusterResourceId": "cluster-test",
            "engineMode": "provisioned", "deletionProtection": false, "copyTagsToSnapshot": true,
            "dbclusterIdentifier": "test", "dbsubnetGroup": "default-vpc-test",
            "dbclusterParameterGroup": "default.aurora-mysql5.7",
            "dbclusterMembers": [{"isClusterWriter": false, "promotionTier": 1, "dbinstanceIdentifier": "test-instance-1"}],
            "dbclusterArn": "arn:aws:rds:us-east-2:123456789012:cluster:test"
        });
        for (k, v) in configuration_edit.as_object().unwrap() {
            c[k] = v.clone();
        }
        ConfigurationItem::from_notification(&json!({
            "version": "1.3", "accountId": "123456789012",
            "configurationItemCaptureTime": "2022-02-21T18:42:15.271Z",
            "configurationItemStatus": "ResourceDiscovered",
            "arn": "arn:aws:rds:us-east-2:123456789012:cluster:test",
            "resourceType": RESOURCE_TYPE, "resourceId": "cluster-test", "resourceName": "test",
            "awsRegion": "us-east-2", "tags": {}, "configuration": c,
            "supplementaryConfiguration": {"Tags": []}
        }))
        .unwrap()
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let sdk = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-2")).build();
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk, SPEC.parse_params(&raw).unwrap());
        RdsClusterEncryptedAtRest.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let cases: Vec<(&str, Value, Value, Compliance, &str)> = vec![
            ("encrypted", json!({}), json!({}), Compliance::Compliant, "DB cluster test is encrypted"),
            ("unencrypted", json!({}), json!({"storageEncrypted": false}), Compliance::NonCompliant, "not encrypted"),
            ("approved key", json!({"kmsKeyIds": KEY}), json!({}), Compliance::Compliant, "approved"),
            ("other key", json!({"kmsKeyIds": OTHER}), json!({}), Compliance::NonCompliant, "not in kmsKeyIds"),
            (
                "cross-region replica",
                json!({}),
                json!({"storageEncrypted": false, "replicationSourceIdentifier": "arn:aws:rds:us-east-1:123456789012:cluster:src"}),
                Compliance::NonCompliant,
                "manual",
            ),
            (
                "serverless v1",
                json!({}),
                json!({"storageEncrypted": false, "engineMode": "serverless"}),
                Compliance::NonCompliant,
                "manual",
            ),
        ];
        for (name, params, edit, expected, phrase) in cases {
            let verdict = judge(params, &rdk_item(edit)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(phrase), "{name}: {}", verdict.annotation);
        }
    }
}
