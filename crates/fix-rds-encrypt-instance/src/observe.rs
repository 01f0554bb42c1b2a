//! The instance fix's reads: the source (read by its DbiResourceId before the plan starts), what
//! holds the target's names, and the snapshots by their derived names, each reduced to what the
//! plan decides on.

use atrest::async_trait;
use atrest::error::{Error, Result};
use atrest_rds::replace::{Lookup, Observe, Observed, Snapshot, Source, Target};
use atrest_rds::*;
use aws_sdk_rds::types::DbInstance;

use crate::{Run, missing_roles, modify_changes, post_restore_changes, rename_refusal, unsupported_reason};

pub fn source(source: &DbInstance) -> Source {
    Source::of(source, rename_refusal(source), false)
}

/// An instance found where the target could be, as a target of `source`.
pub fn target(source: &DbInstance, found: &DbInstance, resource_id: &str) -> Target {
    let needs_modify = !modify_changes(source, found).is_empty();
    Target::of(found, resource_id, post_restore_changes(source, found), missing_roles(source, found), needs_modify)
}

#[async_trait]
impl Observe for Run {
    fn source(&self) -> Source {
        source(&self.source)
    }

    fn unsupported(&self) -> Option<String> {
        unsupported_reason(&self.source)
    }

    async fn look(&mut self, lookup: Lookup, o: &mut Observed) -> Result<()> {
        match lookup {
            Lookup::TargetByName => o.by_name = Some(self.instance(&o.names.target).await?),
            Lookup::AtOriginal => o.at_original = Some(self.instance(&o.names.original).await?),
            Lookup::EncryptedSnapshot => {
                let id = o.names.encrypted_snapshot.as_deref().unwrap_or_default();
                o.encrypted_snapshot = Some(db_snapshot(&self.rds, id).await?.map(|s| Snapshot::of(&s, &self.resource_id)));
            }
            Lookup::SourceSnapshot => {
                o.source_snapshot =
                    Some(db_snapshot(&self.rds, &o.names.source_snapshot).await?.map(|s| Snapshot::of(&s, &self.resource_id)));
            }
            other => return Err(Error::Internal(format!("an instance has no {other:?} to look up"))),
        }
        Ok(())
    }
}

impl Run {
    async fn instance(&mut self, id: &str) -> Result<Option<Target>> {
        let Some(found) = instance_by_id(&self.rds, id).await? else { return Ok(None) };
        let view = target(&self.source, &found, &self.resource_id);
        self.targets.push(found);
        Ok(Some(view))
    }
}
