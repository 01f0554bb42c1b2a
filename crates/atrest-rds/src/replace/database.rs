//! What the flow reads of a DB instance or cluster and of their snapshots, one accessor each, so
//! the views in `model` are built once for both kinds.

use aws_sdk_rds::primitives::{DateTime, DateTimeFormat};
use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, DbInstance, DbSnapshot, Tag};

use crate::replace::model::{Snapshot, Source, Target};
use crate::{TAG_ORIGINAL_IDENTIFIER, TAG_REPLACED_BY, TAG_SETTINGS_APPLIED, TAG_SOURCE_RESOURCE_ID, tag_value};

pub trait Database: Send + Sync {
    fn identifier(&self) -> &str;
    fn status(&self) -> &str;
    fn encrypted(&self) -> bool;
    fn kms_key_id(&self) -> Option<&str>;
    fn arn(&self) -> Option<&str>;
    fn tags(&self) -> &[Tag];
}

/// The same accessors under each type's own names.
macro_rules! database {
    ($type:ty, $identifier:ident, $status:ident, $arn:ident) => {
        impl Database for $type {
            fn identifier(&self) -> &str {
                self.$identifier().unwrap_or_default()
            }
            fn status(&self) -> &str {
                self.$status().unwrap_or_default()
            }
            fn encrypted(&self) -> bool {
                self.storage_encrypted() == Some(true)
            }
            fn kms_key_id(&self) -> Option<&str> {
                self.kms_key_id()
            }
            fn arn(&self) -> Option<&str> {
                self.$arn()
            }
            fn tags(&self) -> &[Tag] {
                self.tag_list()
            }
        }
    };
}
database!(DbInstance, db_instance_identifier, db_instance_status, db_instance_arn);
database!(DbCluster, db_cluster_identifier, status, db_cluster_arn);

pub trait SnapshotRecord {
    fn identifier(&self) -> &str;
    fn status(&self) -> Option<&str>;
    fn percent(&self) -> Option<i32>;
    fn created(&self) -> Option<&DateTime>;
    fn tags(&self) -> &[Tag];
}

macro_rules! snapshot_record {
    ($type:ty, $identifier:ident) => {
        impl SnapshotRecord for $type {
            fn identifier(&self) -> &str {
                self.$identifier().unwrap_or_default()
            }
            fn status(&self) -> Option<&str> {
                self.status()
            }
            fn percent(&self) -> Option<i32> {
                self.percent_progress()
            }
            fn created(&self) -> Option<&DateTime> {
                self.snapshot_create_time()
            }
            fn tags(&self) -> &[Tag] {
                self.tag_list()
            }
        }
    };
}
snapshot_record!(DbSnapshot, db_snapshot_identifier);
snapshot_record!(DbClusterSnapshot, db_cluster_snapshot_identifier);

impl Source {
    /// `rename_refusal` and `has_members` are the kind's to say.
    pub fn of(db: &impl Database, rename_refusal: Option<String>, has_members: bool) -> Source {
        Source {
            id: db.identifier().to_string(),
            status: db.status().to_string(),
            encrypted: db.encrypted(),
            kms_key_id: db.kms_key_id().map(str::to_string),
            original: tag_value(db.tags(), TAG_ORIGINAL_IDENTIFIER).map(str::to_string),
            replaced_by: tag_value(db.tags(), TAG_REPLACED_BY).map(str::to_string),
            rename_refusal,
            has_members,
        }
    }
}

impl Target {
    /// What was found where the target could be, with what the kind says the settle step must
    /// set on it (in words, the roles it lacks, whether that takes a modify call).
    pub fn of(
        found: &impl Database,
        resource_id: &str,
        settle_changes: Vec<String>,
        missing_roles: Vec<(String, Option<String>)>,
        needs_modify: bool,
    ) -> Target {
        Target {
            id: found.identifier().to_string(),
            status: found.status().to_string(),
            encrypted: found.encrypted(),
            ours: tag_value(found.tags(), TAG_SOURCE_RESOURCE_ID) == Some(resource_id),
            settings_applied: tag_value(found.tags(), TAG_SETTINGS_APPLIED).is_some(),
            settle_changes,
            missing_roles,
            needs_modify,
        }
    }
}

impl Snapshot {
    pub fn of(snap: &impl SnapshotRecord, resource_id: &str) -> Snapshot {
        Snapshot {
            id: snap.identifier().to_string(),
            status: snap.status().map(str::to_string),
            percent: snap.percent(),
            ours: tag_value(snap.tags(), TAG_SOURCE_RESOURCE_ID) == Some(resource_id),
            taken: snap.created().and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()).unwrap_or_else(|| "at an unknown time".into()),
        }
    }
}

/// Of the databases a run found, the one the plan took for the target.
pub fn found_target<'a, D: Database>(found: &'a [D], target: Option<&Target>) -> Option<&'a D> {
    let id = target?.id.as_str();
    found.iter().find(|d| d.identifier() == id)
}
