//! The instance fix's writes: one AWS call per planned action. Every resource it creates carries
//! atrest's markers in the same call, so a run that stops right after finds it again.

use atrest::async_trait;
use atrest::error::{Error, Result, aws_error};
use atrest_rds::replace::{Act, Action, Observed, add_tag, unless_done};
use atrest_rds::*;

use crate::{Run, restore_request};

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
                    .create_db_snapshot()
                    .db_instance_identifier(source_id)
                    .db_snapshot_identifier(&names.source_snapshot)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:CreateDBSnapshot", &names.source_snapshot, e))?;
            }
            Action::CopySnapshot => {
                let encrypted = names.encrypted_snapshot.as_deref().unwrap_or_default();
                self.rds
                    .copy_db_snapshot()
                    .source_db_snapshot_identifier(&names.source_snapshot)
                    .target_db_snapshot_identifier(encrypted)
                    .kms_key_id(&o.settings.key_arn)
                    // The intermediate snapshot carries the source's tags and atrest's markers.
                    .copy_tags(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:CopyDBSnapshot", encrypted, e))?;
            }
            Action::Restore => {
                restore_request(&self.rds, source, names, &self.resource_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:RestoreDBInstanceFromDBSnapshot", &names.target, e))?;
            }
            Action::AddRole { arn, feature } => {
                let target_id = target()?.db_instance_identifier().unwrap_or_default();
                // A role added by an earlier, interrupted turn is not missing.
                let added = self
                    .rds
                    .add_role_to_db_instance()
                    .db_instance_identifier(target_id)
                    .role_arn(arn)
                    .set_feature_name(feature.clone())
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:AddRoleToDBInstance", target_id, e));
                unless_done(added, "DBInstanceRoleAlreadyExists")?;
            }
            Action::ModifyTarget => {
                let target = target()?;
                let target_id = target.db_instance_identifier().unwrap_or_default();
                let s = source;
                let managed_password = s.master_user_secret().is_some() && target.master_user_secret().is_none();
                let pi = s.performance_insights_enabled() == Some(true);
                let interval = s.monitoring_interval().filter(|i| *i > 0);
                self.rds
                    .modify_db_instance()
                    .db_instance_identifier(target_id)
                    .apply_immediately(true)
                    .set_enable_performance_insights(pi.then_some(true))
                    .set_performance_insights_kms_key_id(if pi { s.performance_insights_kms_key_id().map(str::to_string) } else { None })
                    .set_performance_insights_retention_period(if pi { s.performance_insights_retention_period() } else { None })
                    .set_monitoring_interval(interval)
                    .set_monitoring_role_arn(interval.and(s.monitoring_role_arn().map(str::to_string)))
                    .set_max_allocated_storage(s.max_allocated_storage())
                    .set_preferred_maintenance_window(s.preferred_maintenance_window().map(str::to_string))
                    .set_manage_master_user_password(managed_password.then_some(true))
                    .set_master_user_secret_kms_key_id(if managed_password {
                        s.master_user_secret().and_then(|m| m.kms_key_id()).map(str::to_string)
                    } else {
                        None
                    })
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:ModifyDBInstance", target_id, e))?;
            }
            Action::MarkSettingsApplied => add_tag(&self.rds, target()?, tag(TAG_SETTINGS_APPLIED, "true")).await?,
            Action::MarkOriginalName => {
                add_tag(&self.rds, source, tag(TAG_ORIGINAL_IDENTIFIER, &names.original)).await?;
            }
            Action::Rename { from, to } => {
                self.rds
                    .modify_db_instance()
                    .db_instance_identifier(from)
                    .new_db_instance_identifier(to)
                    .apply_immediately(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:ModifyDBInstance", from, e))?;
            }
            Action::DeleteSourceSnapshot => {
                self.rds
                    .delete_db_snapshot()
                    .db_snapshot_identifier(&names.source_snapshot)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:DeleteDBSnapshot", &names.source_snapshot, e))?;
            }
            Action::MarkReplaced { by } => add_tag(&self.rds, source, tag(TAG_REPLACED_BY, by)).await?,
            Action::CreateMember { .. } => return Err(Error::Internal(format!("an instance has no members: {action:?}"))),
        }
        Ok(())
    }
}
