//! The cluster fix's reads: the source (read by its DbClusterResourceId before the plan starts),
//! what holds the target's names, the cluster snapshot by its derived name, and the source's
//! members with their twins, each reduced to what the plan decides on.

use atrest::async_trait;
use atrest::error::{Error, Result};
use atrest_rds::replace::{Lookup, Member, Observe, Observed, Snapshot, Source, Target, Twin};
use atrest_rds::*;
use aws_sdk_rds::types::DbCluster;

use crate::{Run, is_aurora, missing_roles, modify_changes, post_restore_changes, rename_refusal, unsupported_reason};

pub fn source(source: &DbCluster) -> Source {
    // Multi-AZ DB clusters get their members from the restore itself.
    Source::of(source, rename_refusal(source), is_aurora(source))
}

/// A cluster found where the target could be, as a target of `source`.
pub fn target(source: &DbCluster, found: &DbCluster, resource_id: &str) -> Target {
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
            Lookup::TargetByName => o.by_name = Some(self.cluster(&o.names.target).await?),
            Lookup::AtOriginal => o.at_original = Some(self.cluster(&o.names.original).await?),
            Lookup::SourceSnapshot => {
                o.source_snapshot =
                    Some(cluster_snapshot(&self.rds, &o.names.source_snapshot).await?.map(|s| Snapshot::of(&s, &self.resource_id)));
            }
            Lookup::Members => o.members = Some(self.members(o).await?),
            other => return Err(Error::Internal(format!("a cluster has no {other:?} to look up"))),
        }
        Ok(())
    }
}

impl Run {
    async fn cluster(&mut self, id: &str) -> Result<Option<Target>> {
        let Some(found) = cluster_by_id(&self.rds, id).await? else { return Ok(None) };
        let view = target(&self.source, &found, &self.resource_id);
        self.targets.push(found);
        Ok(Some(view))
    }

    /// The source's member instances, writer first, each with its encrypted twin if it exists
    /// (tagged with the member's DbiResourceId when it is atrest's).
    async fn members(&mut self, o: &Observed) -> Result<Vec<Member>> {
        let mut ordered: Vec<_> = self.source.db_cluster_members().to_vec();
        ordered.sort_by_key(|m| (m.is_cluster_writer() != Some(true), m.promotion_tier().unwrap_or(15)));
        self.members.clear();
        for member in ordered {
            let Some(id) = member.db_instance_identifier() else { continue };
            if let Some(instance) = instance_by_id(&self.rds, id).await? {
                self.members.push(instance);
            }
        }
        let mut views = Vec::new();
        for member in &self.members {
            let id = member.db_instance_identifier().unwrap_or_default();
            let twin = instance_by_id(&self.rds, &o.names.member(id)).await?.map(|twin| Twin {
                status: twin.db_instance_status().unwrap_or_default().to_string(),
                ours: tag_value(twin.tag_list(), TAG_SOURCE_RESOURCE_ID) == member.dbi_resource_id(),
            });
            views.push(Member { id: id.to_string(), class: member.db_instance_class().map(str::to_string), twin });
        }
        Ok(views)
    }
}
