//! `fix-rds-encrypt-instance`: give an unencrypted RDS DB instance an encrypted twin, without
//! losing a byte and without touching the source.
//!
//! RDS cannot encrypt an instance in place. The reconciler takes one step per invocation, each
//! decided from what exists in AWS (names derived from the source's immutable DbiResourceId and
//! tags), so a re-run after a crash or a timeout between any two calls resumes:
//!
//! 1. manual snapshot `atrest-<dbi-resource-id>-source` of the source, with the source's tags;
//! 2. `CopyDBSnapshot` to `atrest-<dbi-resource-id>-encrypted` with the KMS key and `CopyTags`;
//! 3. `RestoreDBInstanceFromDBSnapshot` carrying over every setting a restore does not copy by
//!    itself (subnet group, security groups, class, Multi-AZ, AZ, port, parameter and option
//!    groups, public access, IAM auth, deletion protection, storage, backups, CA, tags …);
//! 4. once `available`: `AddRoleToDBInstance` for each IAM role of the source, and
//!    `ModifyDBInstance` for what a restore cannot set (Performance Insights, Enhanced
//!    Monitoring, storage autoscaling, maintenance window, a Secrets-Manager-managed master
//!    password);
//! 5. optional cutover by renaming, only when the operator says writes are frozen and the source
//!    has no read replicas (they stay attached to the renamed, unencrypted source);
//! 6. delete the intermediate source snapshot (never the encrypted one), tag the source
//!    `atrest:replaced-by`. The source instance is never stopped, modified or deleted — except
//!    renamed when a rename cutover was asked for, and RDS reboots an instance it renames.
//!
//! What no restore or modify can carry (read replicas, activity streams, backup replication to
//! another Region) is named in the result and the email.

use atrest::error::{Error, Result, aws_error};
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use aws_sdk_rds::types::{DbInstance, DbSnapshot, Tag};

use atrest_rds::*;

pub const RESOURCE_TYPE: &str = "AWS::RDS::DBInstance";

pub static SPEC: FixSpec = FixSpec {
    name: "rds-encrypt-instance",
    description: "Encrypt an RDS DB instance: snapshot, encrypted copy, restore with every setting carried over; the source is kept.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[
        ParamSpec {
            name: "KmsKeyId",
            kind: ParamKind::KmsKey,
            default: DEFAULT_KMS_KEY,
            description: "KMS key for the encrypted copy: key id, key ARN, alias or alias ARN. Default: the AWS managed key aws/rds.",
        },
        ParamSpec {
            name: "TargetInstanceIdentifier",
            kind: ParamKind::Text,
            default: "",
            description: "Name of the encrypted instance. Default: <source>-encrypted (shortened to 63 characters).",
        },
        ParamSpec {
            name: "Cutover",
            kind: ParamKind::OneOf(&["none", "rename"]),
            default: "none",
            description: "none: leave both instances side by side. rename: the source becomes <source>-unencrypted (RDS reboots it) and the encrypted instance takes its name and endpoint (needs WritesFrozen=true; refused while the source has read replicas).",
        },
        ParamSpec {
            name: "WritesFrozen",
            kind: ParamKind::Bool,
            default: "false",
            description: "true asserts that nothing has written to the source since before its snapshot, so a rename cutover loses nothing.",
        },
    ],
    disruptive: true,
};

/// Every name the fix uses for one source, derived so that any run finds the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The source's name before any cutover.
    pub original: String,
    pub target: String,
    /// The source's name after a rename cutover.
    pub renamed_source: String,
    pub source_snapshot: String,
    pub encrypted_snapshot: String,
}

impl Names {
    pub fn new(source: &DbInstance, resource_id: &str, target: Option<&str>) -> Result<Names> {
        let current = source.db_instance_identifier().unwrap_or_default();
        let original = tag_value(source.tag_list(), TAG_ORIGINAL_IDENTIFIER).unwrap_or(current).to_string();
        let renamed_source = derived_identifier(&original, "-unencrypted");
        let target = match target {
            Some(t) => {
                let t = t.to_ascii_lowercase();
                if !is_valid_identifier(&t) {
                    return Err(Error::invalid_parameter(
                        "TargetInstanceIdentifier",
                        format!("{t:?} is not a valid DB instance identifier (1-63 letters, digits, hyphens; starts with a letter)"),
                    ));
                }
                if t == original || t == renamed_source {
                    return Err(Error::invalid_parameter("TargetInstanceIdentifier", format!("{t} is the source's own name")));
                }
                t
            }
            None => derived_identifier(&original, "-encrypted"),
        };
        let id = resource_id.to_ascii_lowercase();
        Ok(Names {
            original,
            target,
            renamed_source,
            source_snapshot: derived_identifier(&format!("atrest-{id}"), "-source"),
            encrypted_snapshot: derived_identifier(&format!("atrest-{id}"), "-encrypted"),
        })
    }
}

/// Why this instance cannot be encrypted by copying it, in words for the operator.
pub fn unsupported_reason(source: &DbInstance) -> Option<String> {
    let id = source.db_instance_identifier().unwrap_or("?");
    let blocker = instance_blocker(
        source.read_replica_source_db_instance_identifier().or(source.read_replica_source_db_cluster_identifier()),
        source.db_cluster_identifier(),
        source.engine().unwrap_or_default(),
        source.db_instance_class().unwrap_or_default(),
    )?;
    Some(match blocker {
        InstanceBlocker::ReadReplica(primary) => format!(
            "{id} is a read replica of {primary}; a replica's encryption follows its source. Encrypt {primary} first, \
             then create a new replica of the encrypted instance and retire {id} (manual remediation)."
        ),
        InstanceBlocker::ClusterMember(cluster) => format!(
            "{id} is a member of DB cluster {cluster}; its storage belongs to the cluster. Remediate the cluster with \
             fix-rds-encrypt-cluster (its DbClusterResourceId) instead."
        ),
        InstanceBlocker::Engine(engine) => format!("{id} runs engine {engine}, which this fix cannot restore; remediation must be manual."),
        InstanceBlocker::Class(class) => format!(
            "{id} uses instance class {class}, which RDS cannot encrypt; restore it manually to a current-generation class with encryption."
        ),
    })
}

/// The restore request: every setting a restore from snapshot does not copy by itself.
pub fn restore_request(
    rds: &aws_sdk_rds::Client,
    source: &DbInstance,
    names: &Names,
    resource_id: &str,
) -> aws_sdk_rds::operation::restore_db_instance_from_db_snapshot::builders::RestoreDBInstanceFromDBSnapshotFluentBuilder {
    let multi_az = source.multi_az();
    let security_groups: Vec<String> =
        source.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).map(str::to_string).collect();
    let logs = source.enabled_cloudwatch_logs_exports().to_vec();
    let (iops, throughput) = provisioned_performance(source);
    let domain = domain_settings(source.domain_memberships()).unwrap_or_default();
    let mut tags =
        carried_tags(source.tag_list(), vec![tag(TAG_ENCRYPTED_FROM, &names.original), tag(TAG_SOURCE_RESOURCE_ID, resource_id)]);
    tags.dedup_by(|a, b| a.key() == b.key());
    rds.restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&names.target)
        .db_snapshot_identifier(&names.encrypted_snapshot)
        .set_db_instance_class(source.db_instance_class().map(str::to_string))
        .set_port(source.endpoint().and_then(|e| e.port()).or(source.db_instance_port().filter(|p| *p > 0)))
        .set_multi_az(multi_az)
        // An AZ cannot be named for a Multi-AZ instance; RDS places it.
        .set_availability_zone(if multi_az == Some(true) { None } else { source.availability_zone().map(str::to_string) })
        .set_db_subnet_group_name(source.db_subnet_group().and_then(|g| g.db_subnet_group_name()).map(str::to_string))
        .set_vpc_security_group_ids(Some(security_groups).filter(|v| !v.is_empty()))
        .set_db_parameter_group_name(custom_group(source.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name())))
        .set_option_group_name(custom_group(source.option_group_memberships().first().and_then(|g| g.option_group_name())))
        .set_publicly_accessible(source.publicly_accessible())
        .set_auto_minor_version_upgrade(source.auto_minor_version_upgrade())
        .set_license_model(source.license_model().map(str::to_string))
        .set_enable_iam_database_authentication(source.iam_database_authentication_enabled())
        .set_deletion_protection(source.deletion_protection())
        .set_copy_tags_to_snapshot(source.copy_tags_to_snapshot())
        .set_storage_type(source.storage_type().map(str::to_string))
        .set_iops(iops)
        .set_storage_throughput(throughput)
        .set_enable_cloudwatch_logs_exports(Some(logs).filter(|v| !v.is_empty()))
        .set_backup_retention_period(source.backup_retention_period())
        .set_preferred_backup_window(source.preferred_backup_window().map(str::to_string))
        .set_ca_certificate_identifier(source.ca_certificate_identifier().map(str::to_string))
        .set_network_type(source.network_type().map(str::to_string))
        .set_dedicated_log_volume(source.dedicated_log_volume())
        .set_processor_features(Some(source.processor_features().to_vec()).filter(|v| !v.is_empty()))
        // Without it a restore of an engine version past standard support is enrolled in paid
        // RDS Extended Support, whatever the source chose.
        .set_engine_lifecycle_support(source.engine_lifecycle_support().map(str::to_string))
        .set_domain(domain.domain)
        .set_domain_iam_role_name(domain.iam_role_name)
        .set_domain_fqdn(domain.fqdn)
        .set_domain_ou(domain.ou)
        .set_domain_auth_secret_arn(domain.auth_secret_arn)
        .set_domain_dns_ips(Some(domain.dns_ips).filter(|v| !v.is_empty()))
        .set_tags(Some(tags))
}

/// Provisioned IOPS / throughput to pass on: io1/io2 always; gp3 only when they differ from the
/// baseline RDS gives the size anyway, and only at or above the size where RDS lets them differ
/// (it rejects them below it): 400 GiB for Db2, MariaDB, MySQL and PostgreSQL, 200 GiB for
/// Oracle; SQL Server has one baseline (3,000 IOPS, 125 MiB/s) at every size.
pub fn provisioned_performance(source: &DbInstance) -> (Option<i32>, Option<i32>) {
    match source.storage_type().unwrap_or_default() {
        "io1" | "io2" => (source.iops(), None),
        "gp3" => {
            let engine = source.engine().unwrap_or_default();
            let size = source.allocated_storage().unwrap_or(0);
            let threshold = if engine.starts_with("sqlserver") {
                None
            } else if engine.starts_with("oracle") {
                Some(200)
            } else {
                Some(400)
            };
            let baseline = match threshold {
                Some(t) if size >= t => (12_000, 500),
                _ => (3_000, 125),
            };
            if threshold.is_some_and(|t| size < t) {
                return (None, None);
            }
            let wanted = (source.iops(), source.storage_throughput());
            if wanted == (Some(baseline.0), Some(baseline.1)) || wanted == (None, None) {
                return (None, None);
            }
            // One differs: both go, so the other keeps its value rather than its default.
            (wanted.0.or(Some(baseline.0)), wanted.1.or(Some(baseline.1)))
        }
        _ => (None, None),
    }
}

/// The source's IAM role associations the target lacks: (role ARN, feature name).
pub fn missing_roles(source: &DbInstance, target: &DbInstance) -> Vec<(String, Option<String>)> {
    source
        .associated_roles()
        .iter()
        .filter_map(|r| Some((r.role_arn()?.to_string(), r.feature_name().map(str::to_string))))
        .filter(|(arn, _)| !target.associated_roles().iter().any(|t| t.role_arn() == Some(arn.as_str())))
        .collect()
}

/// What no restore or modify carries over: named in the result and the email, never dropped
/// silently.
pub fn not_carried(source: &DbInstance) -> Vec<String> {
    let mut out = Vec::new();
    let replicas = read_replicas(source);
    if !replicas.is_empty() {
        out.push(format!(
            "read replicas {} (they keep replicating the unencrypted source; create replicas of the encrypted instance)",
            list_text(&replicas)
        ));
    }
    if source.activity_stream_status().is_some_and(|s| s.as_str() == "started" || s.as_str() == "starting") {
        out.push("the Database Activity Stream (start one on the encrypted instance)".to_string());
    }
    if source.database_insights_mode().is_some_and(|m| m.as_str() == "advanced") {
        out.push("Database Insights advanced mode (turn it on for the encrypted instance)".to_string());
    }
    let regions: Vec<String> = source
        .db_instance_automated_backups_replications()
        .iter()
        .filter_map(|r| r.db_instance_automated_backups_arn())
        .map(str::to_string)
        .collect();
    if !regions.is_empty() {
        out.push(format!("automated backup replication to {} (start it for the encrypted instance)", list_text(&regions)));
    }
    out
}

/// The source's read replicas: instances, and Aurora clusters that replicate it.
pub fn read_replicas(source: &DbInstance) -> Vec<String> {
    source.read_replica_db_instance_identifiers().iter().chain(source.read_replica_db_cluster_identifiers()).cloned().collect()
}

/// Settings a restore cannot set, as the changes `AddRoleToDBInstance` and `ModifyDBInstance`
/// must make to `target`.
pub fn post_restore_changes(source: &DbInstance, target: &DbInstance) -> Vec<String> {
    let mut changes = modify_changes(source, target);
    for (arn, feature) in missing_roles(source, target) {
        changes.push(format!("IAM role {arn}{}", feature.map(|f| format!(" for {f}")).unwrap_or_default()));
    }
    changes
}

/// Why a rename cutover would leave something behind on the unencrypted source, if it would.
/// "All read replicas associated with a DB instance remain associated with that instance after it
/// is renamed": they would keep serving the old, unencrypted data under their own names.
pub fn rename_refusal(source: &DbInstance) -> Option<String> {
    let replicas = read_replicas(source);
    (!replicas.is_empty()).then(|| {
        format!(
            "the rename cutover was refused: {} has read replicas ({}), which stay attached to it when it is renamed and \
             would keep serving its unencrypted data. Create replicas of the encrypted instance, move readers to them and \
             delete these, or run with Cutover=none",
            source.db_instance_identifier().unwrap_or("?"),
            list_text(&replicas)
        )
    })
}

/// The part of `post_restore_changes` one `ModifyDBInstance` makes.
fn modify_changes(source: &DbInstance, target: &DbInstance) -> Vec<String> {
    let mut changes = Vec::new();
    if source.performance_insights_enabled() == Some(true) && target.performance_insights_enabled() != Some(true) {
        changes.push("Performance Insights on".to_string());
    }
    let interval = source.monitoring_interval().unwrap_or(0);
    if interval > 0 && (target.monitoring_interval() != Some(interval) || target.monitoring_role_arn() != source.monitoring_role_arn()) {
        changes.push(format!("Enhanced Monitoring every {interval} s"));
    }
    if let Some(max) = source.max_allocated_storage()
        && target.max_allocated_storage() != Some(max)
    {
        changes.push(format!("storage autoscaling up to {max} GiB"));
    }
    if let Some(window) = source.preferred_maintenance_window()
        && target.preferred_maintenance_window() != Some(window)
    {
        changes.push(format!("maintenance window {window}"));
    }
    // A snapshot restore manages the password in Secrets Manager for Oracle only: without this
    // the copy keeps the password of the snapshot, which the source's secret stops matching at
    // its next rotation (every 7 days by default).
    if source.master_user_secret().is_some() && target.master_user_secret().is_none() {
        changes.push("master password managed in Secrets Manager (a new secret for the copy)".to_string());
    }
    changes
}

/// The worker. `default()` builds its RDS client from the invocation's SDK configuration;
/// `with_client` uses the given one (tests use mocked clients where the stand-in is wrong).
#[derive(Debug, Clone, Default)]
pub struct RdsEncryptInstance {
    rds: Option<aws_sdk_rds::Client>,
}

impl RdsEncryptInstance {
    pub fn with_client(rds: aws_sdk_rds::Client) -> Self {
        RdsEncryptInstance { rds: Some(rds) }
    }

    fn client(&self, ctx: &FixContext) -> aws_sdk_rds::Client {
        self.rds.clone().unwrap_or_else(|| client(&ctx.sdk))
    }
}

/// What a step decided, before it is turned into an outcome.
enum Step {
    /// A change was made (or would be, in a dry run); AWS is working on it.
    Started(String),
    /// Nothing to do yet; AWS is still working.
    Waiting(String),
}

struct Run<'a> {
    rds: aws_sdk_rds::Client,
    req: &'a FixRequest,
    resource_id: &'a str,
    key_arn: String,
    names: Names,
    source: DbInstance,
}

impl Run<'_> {
    fn source_id(&self) -> &str {
        self.source.db_instance_identifier().unwrap_or_default()
    }

    fn ours(&self, tags: &[Tag]) -> bool {
        tag_value(tags, TAG_SOURCE_RESOURCE_ID) == Some(self.resource_id)
    }

    /// The encrypted instance, whether still under its own name or already cut over.
    async fn find_target(&self) -> Result<Option<DbInstance>> {
        if let Some(found) = instance_by_id(&self.rds, &self.names.target).await? {
            if self.ours(found.tag_list()) {
                return Ok(Some(found));
            }
            return Err(Error::Unsupported(format!(
                "an instance named {} already exists and was not made from {} by atrest; pass another TargetInstanceIdentifier. Nothing was changed",
                self.names.target,
                self.source_id()
            )));
        }
        if self.source_id() != self.names.original
            && let Some(found) = instance_by_id(&self.rds, &self.names.original).await?
            && self.ours(found.tag_list())
        {
            return Ok(Some(found));
        }
        Ok(None)
    }

    /// Steps 1–3: snapshot, encrypted copy, restore.
    async fn build_target(&self) -> Result<Step> {
        let names = &self.names;
        let source_id = self.source_id();
        let encrypted = db_snapshot(&self.rds, &names.encrypted_snapshot).await?;
        let intermediate = db_snapshot(&self.rds, &names.source_snapshot).await?;
        if let Some(snap) = &encrypted {
            self.check_snapshot_is_ours(snap)?;
            if intermediate.is_none() {
                // A finished earlier run whose instance was deleted since: restoring this old
                // snapshot would silently drop every write made after it.
                return Err(Error::Unsupported(format!(
                    "encrypted snapshot {} from an earlier run (taken {}) exists, but its instance {} does not. \
                     Restoring it would lose every write made since. Delete the snapshot to start again from fresh data, \
                     or restore it yourself. Nothing was changed",
                    names.encrypted_snapshot,
                    snapshot_time(snap),
                    names.target
                )));
            }
            return match snapshot_progress(snap.status()) {
                Progress::Ready => {
                    let change = format!(
                        "restore encrypted DB instance {} from snapshot {} with {}'s settings",
                        names.target, names.encrypted_snapshot, source_id
                    );
                    if !self.req.dry_run {
                        restore_request(&self.rds, &self.source, names, self.resource_id)
                            .send()
                            .await
                            .map_err(|e| aws_error("rds:RestoreDBInstanceFromDBSnapshot", &names.target, e))?;
                    }
                    Ok(Step::Started(change))
                }
                Progress::Working => Ok(Step::Waiting(format!(
                    "Copying {} to encrypted snapshot {} ({}).",
                    names.source_snapshot,
                    names.encrypted_snapshot,
                    status_text(snap.status(), snap.percent_progress())
                ))),
                Progress::Broken => Err(broken_snapshot(&names.encrypted_snapshot, snap.status())),
            };
        }
        if let Some(snap) = &intermediate {
            self.check_snapshot_is_ours(snap)?;
            return match snapshot_progress(snap.status()) {
                Progress::Ready => {
                    let change = format!(
                        "copy snapshot {} to encrypted snapshot {} with KMS key {}",
                        names.source_snapshot, names.encrypted_snapshot, self.key_arn
                    );
                    if !self.req.dry_run {
                        self.rds
                            .copy_db_snapshot()
                            .source_db_snapshot_identifier(&names.source_snapshot)
                            .target_db_snapshot_identifier(&names.encrypted_snapshot)
                            .kms_key_id(&self.key_arn)
                            // The intermediate snapshot carries the source's tags and atrest's markers.
                            .copy_tags(true)
                            .send()
                            .await
                            .map_err(|e| aws_error("rds:CopyDBSnapshot", &names.encrypted_snapshot, e))?;
                    }
                    Ok(Step::Started(change))
                }
                Progress::Working => Ok(Step::Waiting(format!(
                    "Taking snapshot {} of {} ({}).",
                    names.source_snapshot,
                    source_id,
                    status_text(snap.status(), snap.percent_progress())
                ))),
                Progress::Broken => Err(broken_snapshot(&names.source_snapshot, snap.status())),
            };
        }
        let status = self.source.db_instance_status().unwrap_or_default();
        match snapshot_readiness("instance", "CreateDBSnapshot", source_id, status) {
            SnapshotReadiness::Ready => {}
            SnapshotReadiness::Wait => {
                return Ok(Step::Waiting(format!("Waiting for {source_id} to be available before its snapshot (now {status}).")));
            }
            SnapshotReadiness::Refuse(reason) => return Err(Error::Unsupported(reason)),
        }
        let change = format!("take manual snapshot {} of {}", names.source_snapshot, source_id);
        if !self.req.dry_run {
            let tags = carried_tags(
                self.source.tag_list(),
                vec![tag(TAG_ENCRYPTED_FROM, &names.original), tag(TAG_SOURCE_RESOURCE_ID, self.resource_id)],
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
        Ok(Step::Started(change))
    }

    fn check_snapshot_is_ours(&self, snap: &DbSnapshot) -> Result<()> {
        let id = snap.db_snapshot_identifier().unwrap_or("?");
        if !self.ours(snap.tag_list()) {
            return Err(Error::Unsupported(format!(
                "snapshot {id} exists but was not made by atrest from {}; rename or delete it. Nothing was changed",
                self.source_id()
            )));
        }
        Ok(())
    }

    /// Step 4: settings a restore cannot set. Tagged when done so a setting RDS reports
    /// differently from how it was asked never loops.
    async fn settle(&self, target: &DbInstance) -> Result<Option<Step>> {
        if tag_value(target.tag_list(), TAG_SETTINGS_APPLIED).is_some() {
            return Ok(None);
        }
        let target_id = target.db_instance_identifier().unwrap_or_default();
        let changes = post_restore_changes(&self.source, target);
        if self.req.dry_run {
            return Ok((!changes.is_empty()).then(|| Step::Started(format!("set on {target_id}: {}", changes.join(", ")))));
        }
        // Roles first: AddRoleToDBInstance needs the instance available, and the modify below
        // leaves it `modifying`. A role added by an earlier, interrupted turn is not missing.
        for (arn, feature) in missing_roles(&self.source, target) {
            match self
                .rds
                .add_role_to_db_instance()
                .db_instance_identifier(target_id)
                .role_arn(&arn)
                .set_feature_name(feature)
                .send()
                .await
                .map_err(|e| aws_error("rds:AddRoleToDBInstance", target_id, e))
            {
                Err(e) if e.aws_code() == Some("DBInstanceRoleAlreadyExists") => {}
                other => other.map(|_| ())?,
            }
        }
        let managed_password = self.source.master_user_secret().is_some() && target.master_user_secret().is_none();
        if !modify_changes(&self.source, target).is_empty() {
            let s = &self.source;
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
        self.add_tags(target.db_instance_arn(), target_id, vec![tag(TAG_SETTINGS_APPLIED, "true")]).await?;
        Ok((!changes.is_empty()).then(|| Step::Started(format!("set on {target_id}: {}", changes.join(", ")))))
    }

    async fn add_tags(&self, arn: Option<&str>, id: &str, tags: Vec<Tag>) -> Result<()> {
        let arn = arn.ok_or_else(|| Error::Internal(format!("RDS returned {id} without an ARN")))?;
        self.rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("rds:AddTagsToResource", id, e))?;
        Ok(())
    }

    /// Step 5: the source becomes `<name>-unencrypted`, then the target takes `<name>`.
    async fn cutover(&self, target: &DbInstance) -> Result<Option<Step>> {
        let names = &self.names;
        let target_id = target.db_instance_identifier().unwrap_or_default();
        if target_id == names.original {
            return Ok(None);
        }
        let source_id = self.source_id();
        let source_status = self.source.db_instance_status().unwrap_or_default();
        if source_id == names.original {
            if let Some(refusal) = rename_refusal(&self.source) {
                return Err(Error::Unsupported(format!("{refusal}; the encrypted copy {target_id} is ready and kept")));
            }
            if let Some(reason) = rename_blocked_by_state("instance", source_id, source_status) {
                return Err(Error::Unsupported(reason));
            }
            if source_status != "available" {
                return Ok(Some(Step::Waiting(format!(
                    "Waiting for {source_id} to be available before renaming it (now {source_status})."
                ))));
            }
            // RDS reboots an instance it renames: said in the change line the email lists.
            let change = format!("rename {} to {} (RDS reboots it for the rename)", names.original, names.renamed_source);
            if !self.req.dry_run {
                // Remember the original name first: a resumed run finds the source by its
                // resource id whatever it is called, and needs to know what to give the target.
                self.add_tags(self.source.db_instance_arn(), source_id, vec![tag(TAG_ORIGINAL_IDENTIFIER, &names.original)]).await?;
                self.rds
                    .modify_db_instance()
                    .db_instance_identifier(source_id)
                    .new_db_instance_identifier(&names.renamed_source)
                    .apply_immediately(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:ModifyDBInstance", source_id, e))?;
            }
            return Ok(Some(Step::Started(change)));
        }
        if source_status == "renaming" {
            return Ok(Some(Step::Waiting(format!("Waiting for {} to finish renaming to {source_id}.", names.original))));
        }
        if instance_by_id(&self.rds, &names.original).await?.is_some() {
            return Err(Error::Unsupported(format!(
                "the name {} was taken by another instance after the source was renamed {source_id}; the encrypted instance \
                 keeps the name {target_id}. Point clients at {target_id}",
                names.original
            )));
        }
        let target_status = target.db_instance_status().unwrap_or_default();
        if target_status != "available" {
            return Ok(Some(Step::Waiting(format!("Waiting for {target_id} to be available before renaming it (now {target_status})."))));
        }
        let change = format!("rename {target_id} to {}", names.original);
        if !self.req.dry_run {
            self.rds
                .modify_db_instance()
                .db_instance_identifier(target_id)
                .new_db_instance_identifier(&names.original)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error("rds:ModifyDBInstance", target_id, e))?;
        }
        Ok(Some(Step::Started(change)))
    }

    /// Step 6: delete the intermediate snapshot (only it), mark the source.
    async fn finish(&self, target: &DbInstance) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        let target_id = target.db_instance_identifier().unwrap_or_default();
        if let Some(snap) = db_snapshot(&self.rds, &self.names.source_snapshot).await? {
            // Deleted only when it is the intermediate copy this fix made of this source.
            if self.ours(snap.tag_list()) && snap.db_snapshot_identifier() == Some(self.names.source_snapshot.as_str()) {
                changes.push(format!("delete intermediate snapshot {}", self.names.source_snapshot));
                if !self.req.dry_run {
                    self.rds
                        .delete_db_snapshot()
                        .db_snapshot_identifier(&self.names.source_snapshot)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:DeleteDBSnapshot", &self.names.source_snapshot, e))?;
                }
            }
        }
        if tag_value(self.source.tag_list(), TAG_REPLACED_BY) != Some(target_id) {
            changes.push(format!("tag {} {TAG_REPLACED_BY}={target_id}", self.source_id()));
            if !self.req.dry_run {
                self.add_tags(self.source.db_instance_arn(), self.source_id(), vec![tag(TAG_REPLACED_BY, target_id)]).await?;
            }
        }
        Ok(changes)
    }

    fn success_message(&self, target: &DbInstance, cutover_asked: bool, writes_frozen: bool) -> String {
        let names = &self.names;
        let target_id = target.db_instance_identifier().unwrap_or_default();
        let endpoint = endpoint_text(target);
        let source_id = self.source_id();
        let key = target.kms_key_id().unwrap_or(&self.key_arn);
        if target_id == names.original {
            return format!(
                "DB instance {target_id} is now encrypted (KMS key {key}) and keeps its endpoint {endpoint}: the encrypted copy took \
                 over the name, and the unencrypted original was renamed {source_id} (RDS rebooted it for the rename). \
                 {source_id} is still running and was not otherwise changed (tagged {TAG_REPLACED_BY}={target_id}). Encrypted \
                 snapshot {} is kept.{} Next: check the application against {target_id}, then delete {source_id} when satisfied.",
                names.encrypted_snapshot,
                not_carried_text(&self.source)
            );
        }
        let mut message = format!(
            "Encrypted copy {target_id} of DB instance {source_id} is available at {endpoint} (KMS key {key}), with {source_id}'s \
             network, parameter/option groups, storage, backup, monitoring settings and tags. {source_id} is still running and \
             was not changed (tagged {TAG_REPLACED_BY}={target_id}). Encrypted snapshot {} is kept. {target_id} holds the data \
             as of its snapshot: writes made to {source_id} after the snapshot are not in it.{} ",
            names.encrypted_snapshot,
            not_carried_text(&self.source)
        );
        if cutover_asked && !writes_frozen {
            message.push_str("The rename cutover was NOT done because WritesFrozen is not true. ");
        }
        message.push_str(&format!(
            "Next: point clients at {endpoint}, then delete {source_id} when satisfied. To keep the old endpoint instead, stop \
             writes to {source_id}, delete {target_id} and snapshot {}, and run this fix again with Cutover=rename and \
             WritesFrozen=true (RDS reboots {source_id} when it is renamed).",
            names.encrypted_snapshot
        ));
        message
    }
}

fn snapshot_time(snap: &DbSnapshot) -> String {
    snap.snapshot_create_time()
        .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
        .unwrap_or_else(|| "at an unknown time".into())
}

fn broken_snapshot(id: &str, status: Option<&str>) -> Error {
    Error::Unsupported(format!(
        "snapshot {id} is {}; delete it and run the fix again. Nothing else was changed",
        status.unwrap_or("in an unknown state")
    ))
}

#[async_trait]
impl Fix for RdsEncryptInstance {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let resource_id = req.resource_id.as_str();
        let rds = self.client(ctx);
        let Some(source) = instance_by_resource_id(&rds, resource_id).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("No DB instance has the resource id {resource_id} (deleted since it was evaluated?). Nothing was changed."),
            ));
        };
        let source_id = source.db_instance_identifier().unwrap_or_default().to_string();
        if let Some(reason) = unsupported_reason(&source) {
            return Ok(FixOutcome::failed(&SPEC, req, format!("{reason} Nothing was changed.")));
        }
        let key_arn = resolve_key(ctx, req).await?;
        let names = Names::new(&source, resource_id, req.params.text("TargetInstanceIdentifier"))?;
        let cutover_asked = req.params.text("Cutover") == Some("rename");
        let writes_frozen = req.params.bool("WritesFrozen");
        let run = Run { rds, req, resource_id, key_arn: key_arn.clone(), names, source };

        let target = run.find_target().await?;
        if target.is_none() && source_encrypted_with(ctx, &run.source, &key_arn).await? {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("DB instance {source_id} is already encrypted with KMS key {key_arn}; nothing was changed."),
            ));
        }
        // Refused before any copy is made: building one for a cutover that cannot happen helps no one.
        if target.is_none()
            && cutover_asked
            && writes_frozen
            && source_id == run.names.original
            && let Some(refusal) = rename_refusal(&run.source)
        {
            return Ok(FixOutcome::failed(&SPEC, req, format!("{}. Nothing was changed.", capitalised(&refusal))));
        }
        let Some(target) = target else {
            return Ok(match run.build_target().await? {
                Step::Started(change) if req.dry_run => dry_run_outcome(req, &run, change),
                Step::Started(change) => {
                    FixOutcome::in_progress(&SPEC, req, format!("Started: {change}. The next step follows when AWS is done."))
                        .with_change(change)
                }
                Step::Waiting(message) => FixOutcome::in_progress(&SPEC, req, message),
            });
        };
        if target.storage_encrypted() != Some(true) {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "{} was restored from {} but reports unencrypted storage; it was left as it is for inspection.",
                    target.db_instance_identifier().unwrap_or_default(),
                    run.names.encrypted_snapshot
                ),
            ));
        }
        let target_id = target.db_instance_identifier().unwrap_or_default().to_string();
        let status = target.db_instance_status().unwrap_or_default();
        if is_broken_status(status) {
            return Ok(FixOutcome::failed(&SPEC, req, format!("Encrypted instance {target_id} is {status}; it was left for inspection.")));
        }
        if status != "available" {
            return Ok(FixOutcome::in_progress(
                &SPEC,
                req,
                format!("Waiting for encrypted instance {target_id} to be available (now {}).", status_text(Some(status), None)),
            ));
        }
        if let Some(step) = run.settle(&target).await? {
            return Ok(step_outcome(req, &run, step));
        }
        if cutover_asked
            && writes_frozen
            && let Some(step) = run.cutover(&target).await?
        {
            return Ok(step_outcome(req, &run, step));
        }
        let changes = run.finish(&target).await?;
        if req.dry_run {
            let mut outcome = FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Dry run: {target_id} exists; would finish with: {}. Nothing was changed.",
                    if changes.is_empty() { "nothing".to_string() } else { changes.join("; ") }
                ),
            );
            outcome.changes = changes;
            return Ok(outcome);
        }
        let mut outcome = FixOutcome::succeeded(&SPEC, req, run.success_message(&target, cutover_asked, writes_frozen));
        outcome.changes = changes;
        Ok(outcome)
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// " Not carried over (do it by hand): …." or nothing.
fn not_carried_text(source: &DbInstance) -> String {
    let missing = not_carried(source);
    if missing.is_empty() { String::new() } else { format!(" Not carried over, to do by hand: {}.", missing.join("; ")) }
}

fn step_outcome(req: &FixRequest, run: &Run<'_>, step: Step) -> FixOutcome {
    match step {
        Step::Started(change) if req.dry_run => dry_run_outcome(req, run, change),
        Step::Started(change) => FixOutcome::in_progress(&SPEC, req, format!("Started: {change}.")).with_change(change),
        Step::Waiting(message) => FixOutcome::in_progress(&SPEC, req, message),
    }
}

fn dry_run_outcome(req: &FixRequest, run: &Run<'_>, next: String) -> FixOutcome {
    FixOutcome::succeeded(
        &SPEC,
        req,
        format!(
            "Dry run: the next step would be to {next}; then encrypted instance {} would be restored with the source's settings \
             and the intermediate snapshot {} deleted. {} would not be stopped or deleted (a rename cutover renames it, and \
             RDS reboots a renamed instance).{} Nothing was changed.",
            run.names.target,
            run.names.source_snapshot,
            run.source_id(),
            not_carried_text(&run.source)
        ),
    )
    .with_change(next)
}

async fn source_encrypted_with(ctx: &FixContext, source: &DbInstance, key_arn: &str) -> Result<bool> {
    if source.storage_encrypted() != Some(true) {
        return Ok(false);
    }
    key_matches(ctx, source.kms_key_id(), key_arn).await
}
