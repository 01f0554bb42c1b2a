//! Every rule and fix atrest has, listed once: each one's spec and how to build its handler as
//! its Lambda does. The CLI, the cross-crate tests and the fuzz targets read this list instead of
//! keeping their own; adding a rule or a fix means one entry here (and its crate in this crate's
//! Cargo.toml). Nothing Lambda-specific lives here, and no Lambda crate depends on this one.

use std::sync::Arc;

use atrest::{ConfigRule, Fix, FixSpec, RuleSpec};

/// A rule: its spec (name, resource types, parameters, fix) and its handler.
pub struct RuleEntry {
    pub spec: &'static RuleSpec,
    /// Builds the handler with the settings its Lambda uses.
    pub build: fn() -> Arc<dyn ConfigRule>,
}

/// A fix: its spec (name, parameters) and its handler.
pub struct FixEntry {
    pub spec: &'static FixSpec,
    /// Builds the handler with the settings its Lambda uses.
    pub build: fn() -> Arc<dyn Fix>,
}

/// The rules and fixes whose SDKs `atrest` already links (S3): always in.
const CORE_RULES: &[RuleEntry] = &[
    RuleEntry {
        spec: &rule_s3_bucket_server_side_encryption_enabled::SPEC,
        build: || Arc::new(rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled),
    },
    RuleEntry {
        spec: &rule_s3_bucket_objects_encrypted::SPEC,
        build: || Arc::new(rule_s3_bucket_objects_encrypted::S3BucketObjectsEncrypted),
    },
    RuleEntry { spec: &rule_s3_default_encryption_kms::SPEC, build: || Arc::new(rule_s3_default_encryption_kms::S3DefaultEncryptionKms) },
    RuleEntry {
        spec: &rule_s3_bucket_ssl_requests_only::SPEC,
        build: || Arc::new(rule_s3_bucket_ssl_requests_only::S3BucketSslRequestsOnly),
    },
    // SNS needs no SDK beyond atrest's own (alerts): in the core set, fuzzed with S3.
    RuleEntry { spec: &rule_sns_encrypted_kms::SPEC, build: || Arc::new(rule_sns_encrypted_kms::SnsEncryptedKms) },
    // KMS key rotation needs no SDK beyond atrest's own (aws-sdk-kms): in the core set too.
    RuleEntry {
        spec: &rule_cmk_backing_key_rotation_enabled::SPEC,
        build: || Arc::new(rule_cmk_backing_key_rotation_enabled::CmkBackingKeyRotationEnabled),
    },
];

const CORE_FIXES: &[FixEntry] = &[
    FixEntry {
        spec: &fix_s3_enable_default_encryption::SPEC,
        build: || Arc::new(fix_s3_enable_default_encryption::S3EnableDefaultEncryption),
    },
    FixEntry {
        spec: &fix_s3_restrict_ssl_requests_only::SPEC,
        build: || Arc::new(fix_s3_restrict_ssl_requests_only::S3RestrictSslRequestsOnly),
    },
    FixEntry {
        spec: &fix_s3_encrypt_existing_objects::SPEC,
        build: || Arc::new(fix_s3_encrypt_existing_objects::S3EncryptExistingObjects::default()),
    },
    FixEntry { spec: &fix_sns_encrypt_topic::SPEC, build: || Arc::new(fix_sns_encrypt_topic::SnsEncryptTopic) },
    FixEntry { spec: &fix_kms_enable_key_rotation::SPEC, build: || Arc::new(fix_kms_enable_key_rotation::KmsEnableKeyRotation) },
];

/// The rest, behind the `all` feature (default on; see Cargo.toml).
#[cfg(feature = "all")]
const MORE_RULES: &[RuleEntry] = &[
    RuleEntry { spec: &rule_encrypted_volumes::SPEC, build: || Arc::new(rule_encrypted_volumes::EncryptedVolumes) },
    RuleEntry {
        spec: &rule_ec2_ebs_encryption_by_default::SPEC,
        build: || Arc::new(rule_ec2_ebs_encryption_by_default::Ec2EbsEncryptionByDefault),
    },
    RuleEntry {
        spec: &rule_ec2_instance_store_encrypted::SPEC,
        build: || Arc::new(rule_ec2_instance_store_encrypted::Ec2InstanceStoreEncrypted::default()),
    },
    RuleEntry { spec: &rule_rds_storage_encrypted::SPEC, build: || Arc::new(rule_rds_storage_encrypted::RdsStorageEncrypted) },
    RuleEntry {
        spec: &rule_rds_cluster_encrypted_at_rest::SPEC,
        build: || Arc::new(rule_rds_cluster_encrypted_at_rest::RdsClusterEncryptedAtRest),
    },
    RuleEntry { spec: &rule_rds_snapshot_encrypted::SPEC, build: || Arc::new(rule_rds_snapshot_encrypted::RdsSnapshotEncrypted) },
    RuleEntry { spec: &rule_kinesis_stream_encrypted::SPEC, build: || Arc::new(rule_kinesis_stream_encrypted::KinesisStreamEncrypted) },
    RuleEntry {
        spec: &rule_kinesis_firehose_delivery_stream_encrypted::SPEC,
        build: || Arc::new(rule_kinesis_firehose_delivery_stream_encrypted::KinesisFirehoseDeliveryStreamEncrypted),
    },
    RuleEntry {
        spec: &rule_dynamodb_table_encrypted_kms::SPEC,
        build: || Arc::new(rule_dynamodb_table_encrypted_kms::DynamodbTableEncryptedKms),
    },
    RuleEntry { spec: &rule_sqs_queue_encrypted::SPEC, build: || Arc::new(rule_sqs_queue_encrypted::SqsQueueEncrypted) },
];

#[cfg(feature = "all")]
const MORE_FIXES: &[FixEntry] = &[
    FixEntry { spec: &fix_ebs_encrypt_volumes::SPEC, build: || Arc::new(fix_ebs_encrypt_volumes::EbsEncryptVolumes::default()) },
    FixEntry {
        spec: &fix_ebs_enable_default_encryption::SPEC,
        build: || Arc::new(fix_ebs_enable_default_encryption::EbsEnableDefaultEncryption),
    },
    FixEntry { spec: &fix_rds_encrypt_instance::SPEC, build: || Arc::new(fix_rds_encrypt_instance::RdsEncryptInstance) },
    FixEntry { spec: &fix_rds_encrypt_cluster::SPEC, build: || Arc::new(fix_rds_encrypt_cluster::RdsEncryptCluster) },
    FixEntry { spec: &fix_rds_encrypt_snapshot::SPEC, build: || Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot) },
    FixEntry { spec: &fix_kinesis_encrypt_stream::SPEC, build: || Arc::new(fix_kinesis_encrypt_stream::KinesisEncryptStream) },
    FixEntry {
        spec: &fix_firehose_encrypt_delivery_stream::SPEC,
        build: || Arc::new(fix_firehose_encrypt_delivery_stream::FirehoseEncryptDeliveryStream),
    },
    FixEntry { spec: &fix_dynamodb_encrypt_table::SPEC, build: || Arc::new(fix_dynamodb_encrypt_table::DynamodbEncryptTable) },
    FixEntry { spec: &fix_sqs_encrypt_queue::SPEC, build: || Arc::new(fix_sqs_encrypt_queue::SqsEncryptQueue) },
];

#[cfg(not(feature = "all"))]
const MORE_RULES: &[RuleEntry] = &[];
#[cfg(not(feature = "all"))]
const MORE_FIXES: &[FixEntry] = &[];

/// Every rule entry, S3 first.
pub fn rule_entries() -> impl Iterator<Item = &'static RuleEntry> {
    CORE_RULES.iter().chain(MORE_RULES)
}

/// Every fix entry, S3 first.
pub fn fix_entries() -> impl Iterator<Item = &'static FixEntry> {
    CORE_FIXES.iter().chain(MORE_FIXES)
}

/// Every rule's handler.
pub fn rules() -> Vec<Arc<dyn ConfigRule>> {
    rule_entries().map(|e| (e.build)()).collect()
}

/// Every fix's handler.
pub fn fixes() -> Vec<Arc<dyn Fix>> {
    fix_entries().map(|e| (e.build)()).collect()
}

/// Every fix's spec (decoding a payload needs nothing else).
pub fn fix_specs() -> Vec<&'static FixSpec> {
    fix_entries().map(|e| e.spec).collect()
}

/// A rule by name, with or without the crate's `rule-` prefix.
pub fn rule(name: &str) -> Option<Arc<dyn ConfigRule>> {
    let name = name.strip_prefix("rule-").unwrap_or(name);
    rule_entries().find(|e| e.spec.name == name).map(|e| (e.build)())
}

/// A fix by name, with or without the crate's `fix-` prefix.
pub fn fix(name: &str) -> Option<Arc<dyn Fix>> {
    let name = name.strip_prefix("fix-").unwrap_or(name);
    fix_entries().find(|e| e.spec.name == name).map(|e| (e.build)())
}

pub fn rule_names() -> String {
    rule_entries().map(|e| e.spec.name).collect::<Vec<_>>().join(", ")
}

pub fn fix_names() -> String {
    fix_entries().map(|e| e.spec.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn each_entry_builds_the_handler_its_spec_names() {
        for e in rule_entries() {
            assert!(std::ptr::eq((e.build)().spec(), e.spec), "rule {}", e.spec.name);
        }
        for e in fix_entries() {
            assert!(std::ptr::eq((e.build)().spec(), e.spec), "fix {}", e.spec.name);
        }
    }

    #[test]
    fn names_are_unique() {
        // (A rule's `fix` may name no entry here: ec2-instance-store-luks is an SSM Command
        // document, with no worker.)
        let rules: BTreeSet<_> = rule_entries().map(|e| e.spec.name).collect();
        let fixes: BTreeSet<_> = fix_entries().map(|e| e.spec.name).collect();
        assert_eq!(rules.len(), rule_entries().count(), "duplicate rule names");
        assert_eq!(fixes.len(), fix_entries().count(), "duplicate fix names");
    }

    #[test]
    fn names_resolve_with_or_without_the_crate_prefix() {
        assert!(rule("rule-s3-bucket-server-side-encryption-enabled").is_some());
        assert!(rule("s3-bucket-server-side-encryption-enabled").is_some());
        assert!(fix("fix-s3-enable-default-encryption").is_some());
        assert!(fix("nope").is_none());
    }
}
