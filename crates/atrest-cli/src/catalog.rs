//! Every rule and fix this build knows. Adding a resource type means adding its crates here.

use std::sync::Arc;

use atrest::{ConfigRule, Fix};

pub fn rules() -> Vec<Arc<dyn ConfigRule>> {
    vec![
        Arc::new(rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled),
        Arc::new(rule_encrypted_volumes::EncryptedVolumes),
        Arc::new(rule_ec2_ebs_encryption_by_default::Ec2EbsEncryptionByDefault::default()),
        Arc::new(rule_ec2_instance_store_encrypted::Ec2InstanceStoreEncrypted::default()),
        Arc::new(rule_rds_storage_encrypted::RdsStorageEncrypted),
        Arc::new(rule_rds_cluster_encrypted_at_rest::RdsClusterEncryptedAtRest),
        Arc::new(rule_rds_snapshot_encrypted::RdsSnapshotEncrypted),
    ]
}

pub fn fixes() -> Vec<Arc<dyn Fix>> {
    vec![
        Arc::new(fix_s3_enable_default_encryption::S3EnableDefaultEncryption),
        Arc::new(fix_ebs_encrypt_volumes::EbsEncryptVolumes::default()),
        Arc::new(fix_ebs_enable_default_encryption::EbsEnableDefaultEncryption::default()),
        Arc::new(fix_rds_encrypt_instance::RdsEncryptInstance::default()),
        Arc::new(fix_rds_encrypt_cluster::RdsEncryptCluster::default()),
        Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot::default()),
    ]
}

/// A rule by name, with or without the crate's `rule-` prefix.
pub fn rule(name: &str) -> Option<Arc<dyn ConfigRule>> {
    let name = name.strip_prefix("rule-").unwrap_or(name);
    rules().into_iter().find(|r| r.spec().name == name)
}

/// A fix by name, with or without the crate's `fix-` prefix.
pub fn fix(name: &str) -> Option<Arc<dyn Fix>> {
    let name = name.strip_prefix("fix-").unwrap_or(name);
    fixes().into_iter().find(|f| f.spec().name == name)
}

pub fn rule_names() -> String {
    rules().iter().map(|r| r.spec().name).collect::<Vec<_>>().join(", ")
}

pub fn fix_names() -> String {
    fixes().iter().map(|f| f.spec().name).collect::<Vec<_>>().join(", ")
}
