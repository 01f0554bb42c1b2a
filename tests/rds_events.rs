//! The RDS rules' sample events (events/rds-*/): each change event is judged from the item it
//! carries, with no AWS call, to the compliance its file name promises; the scheduled events
//! decode as sweeps and sweep the local stand-in cleanly.

use std::sync::Arc;

use atrest::config_api::Delivery;
use atrest::event::{Invocation, Trigger};
use atrest::{Compliance, ConfigRule, RuleRunner};
use atrest_testkit::load_event;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use rule_rds_cluster_encrypted_at_rest::RdsClusterEncryptedAtRest;
use rule_rds_snapshot_encrypted::RdsSnapshotEncrypted;
use rule_rds_storage_encrypted::RdsStorageEncrypted;

/// An SDK configuration that cannot reach anything: no credentials and a closed local port, so
/// a change event that needed an AWS call would fail the test instead of passing by luck.
fn offline() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build()
}

fn rules() -> Vec<(&'static str, Arc<dyn ConfigRule>)> {
    vec![
        ("rds-storage-encrypted", Arc::new(RdsStorageEncrypted)),
        ("rds-cluster-encrypted-at-rest", Arc::new(RdsClusterEncryptedAtRest)),
        ("rds-snapshot-encrypted", Arc::new(RdsSnapshotEncrypted)),
    ]
}

/// (rule directory, sample file, resource type, resource id, expected compliance, phrase in the annotation)
const CHANGE_EVENTS: &[(&str, &str, &str, &str, Compliance, &str)] = &[
    (
        "rds-storage-encrypted",
        "change-unencrypted.json",
        "AWS::RDS::DBInstance",
        "db-EXAMPLEUNENCRYPTED0000000A",
        Compliance::NonCompliant,
        "DB instance orders is not encrypted",
    ),
    (
        "rds-storage-encrypted",
        "change-encrypted.json",
        "AWS::RDS::DBInstance",
        "db-EXAMPLEENCRYPTED00000000B",
        Compliance::Compliant,
        "DB instance billing is encrypted",
    ),
    ("rds-storage-encrypted", "change-deleted.json", "AWS::RDS::DBInstance", "db-EXAMPLEDELETED0000000000C", Compliance::NotApplicable, ""),
    (
        "rds-cluster-encrypted-at-rest",
        "change-unencrypted.json",
        "AWS::RDS::DBCluster",
        "cluster-EXAMPLEUNENCRYPTED00000A",
        Compliance::NonCompliant,
        "DB cluster orders-aurora is not encrypted",
    ),
    (
        "rds-cluster-encrypted-at-rest",
        "change-encrypted.json",
        "AWS::RDS::DBCluster",
        "cluster-EXAMPLEENCRYPTED0000000B",
        Compliance::Compliant,
        "DB cluster billing-aurora is encrypted",
    ),
    (
        "rds-cluster-encrypted-at-rest",
        "change-deleted.json",
        "AWS::RDS::DBCluster",
        "cluster-EXAMPLEDELETED000000000C",
        Compliance::NotApplicable,
        "",
    ),
    (
        "rds-snapshot-encrypted",
        "change-unencrypted.json",
        "AWS::RDS::DBSnapshot",
        "orders-before-migration",
        Compliance::NonCompliant,
        "DB snapshot orders-before-migration is not encrypted",
    ),
    (
        "rds-snapshot-encrypted",
        "change-cluster-snapshot-unencrypted.json",
        "AWS::RDS::DBClusterSnapshot",
        "orders-aurora-before-migration",
        Compliance::NonCompliant,
        "DB cluster snapshot orders-aurora-before-migration is not encrypted",
    ),
    (
        "rds-snapshot-encrypted",
        "change-encrypted.json",
        "AWS::RDS::DBSnapshot",
        "billing-2026-11-20",
        Compliance::Compliant,
        "DB snapshot billing-2026-11-20 is encrypted",
    ),
    ("rds-snapshot-encrypted", "change-deleted.json", "AWS::RDS::DBSnapshot", "retired-final-snapshot", Compliance::NotApplicable, ""),
];

fn runner(dir: &str, sdk: &SdkConfig) -> RuleRunner {
    let rule = rules().into_iter().find(|(d, _)| *d == dir).unwrap_or_else(|| panic!("no rule for {dir}")).1;
    RuleRunner::new(rule, sdk)
}

#[tokio::test]
async fn change_events_are_judged_from_the_item_without_aws() {
    let sdk = offline();
    for &(dir, file, resource_type, resource_id, expected, phrase) in CHANGE_EVENTS {
        let event = load_event(&format!("{dir}/{file}"));
        assert_eq!(event["configRuleName"], format!("atrest-{dir}"), "{dir}/{file}");
        let invocation = Invocation::decode(&event).unwrap_or_else(|e| panic!("{dir}/{file} does not decode: {e}"));
        assert!(matches!(invocation.trigger, Trigger::Change { .. }), "{dir}/{file} is not a change event");
        let report = runner(dir, &sdk)
            .handle(&invocation, &Delivery::None)
            .await
            .unwrap_or_else(|e| panic!("{dir}/{file}: {e} (a change event that carries its data needs no AWS call)"));
        assert!(report.failures.is_empty(), "{dir}/{file}: {:?}", report.failures);
        assert_eq!(report.evaluations.len(), 1, "{dir}/{file}");
        let evaluation = &report.evaluations[0];
        assert_eq!(evaluation.compliance_resource_type, resource_type, "{dir}/{file}");
        assert_eq!(evaluation.compliance_resource_id, resource_id, "{dir}/{file}");
        let annotation = evaluation.annotation.clone().unwrap_or_default();
        assert_eq!(evaluation.compliance_type, expected, "{dir}/{file}: {annotation}");
        assert!(annotation.contains(phrase), "{dir}/{file}: {annotation}");
    }
}

#[tokio::test]
async fn every_rds_sample_change_event_is_covered() {
    // A sample added to events/rds-*/ without an expectation here is a sample nobody checks.
    for (dir, _) in rules() {
        let path = atrest_testkit::events_dir().join(dir);
        for file in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).flatten() {
            let name = file.file_name().to_string_lossy().to_string();
            if name.starts_with("change-") {
                assert!(CHANGE_EVENTS.iter().any(|(d, f, ..)| *d == dir && *f == name), "{dir}/{name} has no expectation");
            }
        }
    }
}

#[tokio::test]
async fn scheduled_events_sweep_the_stand_in() {
    let sdk = atrest_testkit::sdk().await;
    for (dir, rule) in rules() {
        let event = load_event(&format!("{dir}/scheduled.json"));
        let invocation = Invocation::decode(&event).unwrap_or_else(|e| panic!("{dir}/scheduled.json does not decode: {e}"));
        assert!(matches!(invocation.trigger, Trigger::Scheduled), "{dir}/scheduled.json is not a scheduled event");
        let report = RuleRunner::new(rule, &sdk).handle(&invocation, &Delivery::None).await.unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(report.failures.is_empty(), "{dir}: {:?}", report.failures);
    }
}
