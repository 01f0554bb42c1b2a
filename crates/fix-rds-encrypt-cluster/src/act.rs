//! The cluster fix's writes: one AWS call per planned action. Every resource it creates carries
//! atrest's markers in the same call, so a run that stops right after finds it again.

use atrest::async_trait;
use atrest::error::{Error, Result, aws_error};
use atrest_rds::replace::{Act, Action, Observed, add_tag, unless_done};
use atrest_rds::*;

use crate::{Run, local_write_forwarding, member_request, restore_request};

#[async_trait]
impl Act for Run {
    async fn act(&self, action: &Action, o: &Observed) -> Result<()> {
        let (names, source) = (&o.names, &self.source);
        let source_id = o.source.id.as_str();
        let target = || self.target(o).ok_or_else(|| Error::Internal(format!("{action:?} planned without a target")));
        match action {
            Action::TakeSnapshot => {
                let tags = carried_tags(
                    source.tag_list(),
                    vec![tag(TAG_ENCRYPTED_FROM, &names.original), tag(TAG_SOURCE_RESOURCE_ID, &self.resource_id)],
                );
                self.rds
                    .create_db_cluster_snapshot()
                    .db_cluster_identifier(source_id)
                    .db_cluster_snapshot_identifier(&names.source_snapshot)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:CreateDBClusterSnapshot", &names.source_snapshot, e))?;
            }
            Action::Restore => {
                restore_request(&self.rds, source, names, &self.resource_id, &o.settings.key_arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:RestoreDBClusterFromSnapshot", &names.target, e))?;
            }
            Action::AddRole { arn, feature } => {
                let target_id = target()?.db_cluster_identifier().unwrap_or_default();
                // A role added by an interrupted earlier turn is not missing.
                let added = self
                    .rds
                    .add_role_to_db_cluster()
                    .db_cluster_identifier(target_id)
                    .role_arn(arn)
                    .set_feature_name(feature.clone())
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:AddRoleToDBCluster", target_id, e));
                unless_done(added, "DBClusterRoleAlreadyExists")?;
            }
            Action::ModifyTarget => {
                let target = target()?;
                let target_id = target.db_cluster_identifier().unwrap_or_default();
                let s = source;
                let managed_password = s.master_user_secret().is_some() && target.master_user_secret().is_none();
                self.rds
                    .modify_db_cluster()
                    .db_cluster_identifier(target_id)
                    .apply_immediately(true)
                    .set_preferred_maintenance_window(s.preferred_maintenance_window().map(str::to_string))
                    .set_manage_master_user_password(managed_password.then_some(true))
                    .set_master_user_secret_kms_key_id(if managed_password {
                        s.master_user_secret().and_then(|m| m.kms_key_id()).map(str::to_string)
                    } else {
                        None
                    })
                    .set_enable_local_write_forwarding((local_write_forwarding(s) && !local_write_forwarding(target)).then_some(true))
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:ModifyDBCluster", target_id, e))?;
            }
            Action::MarkSettingsApplied => add_tag(&self.rds, target()?, tag(TAG_SETTINGS_APPLIED, "true")).await?,
            Action::CreateMember { member, twin } => {
                let member = self.members.get(*member).ok_or_else(|| Error::Internal(format!("{action:?}: no such member was read")))?;
                member_request(&self.rds, member, target()?.db_cluster_identifier().unwrap_or_default(), twin)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:CreateDBInstance", twin, e))?;
            }
            Action::MarkOriginalName => {
                add_tag(&self.rds, source, tag(TAG_ORIGINAL_IDENTIFIER, &names.original)).await?;
            }
            Action::Rename { from, to } => {
                self.rds
                    .modify_db_cluster()
                    .db_cluster_identifier(from)
                    .new_db_cluster_identifier(to)
                    .apply_immediately(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:ModifyDBCluster", from, e))?;
            }
            Action::DeleteSourceSnapshot => {
                self.rds
                    .delete_db_cluster_snapshot()
                    .db_cluster_snapshot_identifier(&names.source_snapshot)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:DeleteDBClusterSnapshot", &names.source_snapshot, e))?;
            }
            Action::MarkReplaced { by } => add_tag(&self.rds, source, tag(TAG_REPLACED_BY, by)).await?,
            Action::CopySnapshot => return Err(Error::Internal(format!("a cluster restore takes the key itself: {action:?}"))),
        }
        Ok(())
    }
}
