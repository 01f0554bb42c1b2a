//! `rds-storage-encrypted`: every RDS DB instance stores its data encrypted.
//!
//! Mirrors the managed rule `RDS_STORAGE_ENCRYPTED` (ComplianceResourceId = the DbiResourceId,
//! `db-…`, as Config records it) and takes a list of approved keys (`kmsKeyIds`) instead of one.
//! Change notifications carry `storageEncrypted`/`kmsKeyId`, so a change is judged without
//! calling AWS (except to resolve key aliases). Periodic sweeps page through
//! `DescribeDBInstances` and judge each page's instances as they are.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_bool, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, RuleContext, RuleSpec, Verdict, async_trait};
use atrest_rds::{InstanceBlocker, KMS_KEY_IDS, TAG_REPLACED_BY, encryption_verdict, instance_blocker, instance_by_resource_id, tags_of};
use aws_sdk_rds::types::DbInstance;
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::RDS::DBInstance";

pub static SPEC: RuleSpec = RuleSpec {
    name: "rds-storage-encrypted",
    description: "RDS DB instances have storage encryption; optionally with one of the approved KMS keys.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[KMS_KEY_IDS],
    mirrors: Some("RDS_STORAGE_ENCRYPTED"),
    fix: Some("rds-encrypt-instance"),
};

/// Why the instance cannot be remediated automatically, from a configuration item.
pub fn manual_remediation_reason(configuration: &Value) -> Option<String> {
    let blocker = instance_blocker(
        field_str(configuration, "readReplicaSourceDBInstanceIdentifier")
            .or_else(|| field_str(configuration, "readReplicaSourceDBClusterIdentifier")),
        field_str(configuration, "dBClusterIdentifier"),
        field_str(configuration, "engine").unwrap_or_default(),
        field_str(configuration, "dBInstanceClass").unwrap_or_default(),
    )?;
    Some(match blocker {
        InstanceBlocker::ReadReplica(_) => {
            "It is a read replica: remediation must be manual (encrypt its source, then recreate the replica).".into()
        }
        InstanceBlocker::ClusterMember(cluster) => {
            format!("It belongs to DB cluster {cluster}: remediate the cluster (rds-cluster-encrypted-at-rest).")
        }
        InstanceBlocker::Engine(engine) => format!("Engine {engine}: remediation must be manual."),
        InstanceBlocker::Class(class) => {
            format!("Class {class} cannot be encrypted: remediation must be manual (restore to a current class).")
        }
    })
}

fn name_of(item: &ConfigurationItem) -> String {
    field_str(&item.configuration, "dBInstanceIdentifier")
        .map(str::to_string)
        .or_else(|| item.resource_name.clone())
        .unwrap_or_else(|| item.resource_id.clone())
}

pub struct RdsStorageEncrypted;

#[async_trait]
impl ConfigRule for RdsStorageEncrypted {
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
            manual = Some(format!("Encrypted replacement {new} exists: move clients to it, then delete this instance."));
        }
        let what = format!("DB instance {}", name_of(item));
        encryption_verdict(ctx, &what, field_bool(c, "storageEncrypted"), field_str(c, "kmsKeyId"), manual).await
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let rds = ctx.client(aws_sdk_rds::Client::new);
        let mut found = Vec::new();
        let mut pages = rds.describe_db_instances().max_records(100).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("rds:DescribeDBInstances", "the account's DB instances", e))?;
            found.extend(page.db_instances().iter().filter_map(instance_item).map(Discovered::Item));
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, resource_id: &str) -> Result<Option<ConfigurationItem>> {
        let rds = ctx.client(aws_sdk_rds::Client::new);
        Ok(instance_by_resource_id(&rds, resource_id).await?.as_ref().and_then(instance_item))
    }
}

/// An instance as a configuration item, with Config's field names.
pub fn instance_item(instance: &DbInstance) -> Option<ConfigurationItem> {
    let resource_id = instance.dbi_resource_id()?;
    let configuration = json!({
        "dBInstanceIdentifier": instance.db_instance_identifier(),
        "dbiResourceId": resource_id,
        "dBInstanceArn": instance.db_instance_arn(),
        "dBInstanceStatus": instance.db_instance_status(),
        "dBInstanceClass": instance.db_instance_class(),
        "engine": instance.engine(),
        "storageEncrypted": instance.storage_encrypted(),
        "kmsKeyId": instance.kms_key_id(),
        "dBClusterIdentifier": instance.db_cluster_identifier(),
        "readReplicaSourceDBInstanceIdentifier": instance.read_replica_source_db_instance_identifier(),
        "readReplicaSourceDBClusterIdentifier": instance.read_replica_source_db_cluster_identifier(),
    });
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, resource_id, configuration);
    item.resource_name = instance.db_instance_identifier().map(str::to_string);
    item.arn = instance.db_instance_arn().map(str::to_string);
    item.tags = tags_of(instance.tag_list());
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_rds::types::Tag;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: the table must be decided without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    /// A change notification's item, as Config records an RDS instance (camelCase, with Config's
    /// own capitalisation of the DB prefixes).
    fn notification(configuration: Value, tags: Value) -> ConfigurationItem {
        ConfigurationItem::from_notification(&json!({
            "configurationItemVersion": "1.3",
            "configurationItemCaptureTime": "2026-11-20T10:00:00.000Z",
            "configurationItemStatus": "OK",
            "resourceType": RESOURCE_TYPE,
            "resourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "resourceName": "orders",
            "ARN": "arn:aws:rds:us-east-1:123456789012:db:orders",
            "awsRegion": "us-east-1",
            "awsAccountId": "123456789012",
            "tags": tags,
            "configuration": configuration,
            "supplementaryConfiguration": {}
        }))
        .unwrap()
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        RdsStorageEncrypted.judge(&ctx, item).await.unwrap()
    }

    fn config(extra: Value) -> Value {
        let mut c = json!({
            "dBInstanceIdentifier": "orders",
            "dBInstanceClass": "db.t3.micro",
            "engine": "postgres",
            "dBInstanceStatus": "available",
            "dbiResourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "storageEncrypted": false,
            "kmsKeyId": null,
            "dBClusterIdentifier": null
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[tokio::test]
    async fn verdict_table() {
        let cases: Vec<(&str, Value, Value, Value, Compliance, &str)> = vec![
            ("unencrypted", json!({}), config(json!({})), json!({}), Compliance::NonCompliant, "not encrypted"),
            (
                "encrypted, any key",
                json!({}),
                config(json!({"storageEncrypted": true, "kmsKeyId": KEY})),
                json!({}),
                Compliance::Compliant,
                KEY,
            ),
            (
                "encrypted with an approved key",
                json!({"kmsKeyIds": format!("{OTHER}, {KEY}")}),
                config(json!({"storageEncrypted": true, "kmsKeyId": KEY})),
                json!({}),
                Compliance::Compliant,
                "approved",
            ),
            (
                "encrypted with another key",
                json!({"kmsKeyIds": OTHER}),
                config(json!({"storageEncrypted": true, "kmsKeyId": KEY})),
                json!({}),
                Compliance::NonCompliant,
                "not in kmsKeyIds",
            ),
            (
                "boolean as a string (history API)",
                json!({}),
                config(json!({"storageEncrypted": "true", "kmsKeyId": KEY})),
                json!({}),
                Compliance::Compliant,
                "encrypted",
            ),
            (
                "read replica: manual",
                json!({}),
                config(json!({"readReplicaSourceDBInstanceIdentifier": "orders-primary"})),
                json!({}),
                Compliance::NonCompliant,
                "remediation must be manual",
            ),
            (
                "cluster member: the cluster rule",
                json!({}),
                config(json!({"dBClusterIdentifier": "orders-aurora", "engine": "aurora-mysql"})),
                json!({}),
                Compliance::NonCompliant,
                "orders-aurora",
            ),
            (
                "old class: manual",
                json!({}),
                config(json!({"dBInstanceClass": "db.m1.small"})),
                json!({}),
                Compliance::NonCompliant,
                "cannot be encrypted",
            ),
            (
                "replaced already",
                json!({}),
                config(json!({})),
                json!({"atrest:replaced-by": "orders-encrypted"}),
                Compliance::NonCompliant,
                "orders-encrypted",
            ),
            (
                "lower-case field spellings",
                json!({}),
                json!({"dbInstanceIdentifier": "orders", "storageencrypted": true, "kmskeyid": KEY}),
                json!({}),
                Compliance::Compliant,
                "orders",
            ),
        ];
        for (name, params, configuration, tags, expected, phrase) in cases {
            let verdict = judge(params, &notification(configuration, tags)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(phrase), "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.chars().count() <= 256, "{name}");
        }
    }

    #[test]
    fn an_item_without_the_flag_is_fetched_live() {
        let item = notification(json!({"dBInstanceIdentifier": "orders"}), json!({}));
        assert!(RdsStorageEncrypted.needs_live_state(&item));
        assert!(!RdsStorageEncrypted.needs_live_state(&notification(config(json!({})), json!({}))));
    }

    #[test]
    fn live_items_use_the_dbi_resource_id() {
        let instance = DbInstance::builder()
            .db_instance_identifier("orders")
            .dbi_resource_id("db-ABC")
            .storage_encrypted(false)
            .tag_list(Tag::builder().key("team").value("x").build())
            .build();
        let item = instance_item(&instance).unwrap();
        assert_eq!(item.resource_id, "db-ABC");
        assert_eq!(item.resource_name.as_deref(), Some("orders"));
        assert_eq!(field_bool(&item.configuration, "storageEncrypted"), Some(false));
        assert_eq!(item.tag("team"), Some("x"));
    }
}
