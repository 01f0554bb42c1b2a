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
//!
//! The flow is the one the cluster fix shares, `atrest_rds::replace` (its plan is pure and
//! table-tested); this crate gives it an instance's words ((`replace::INSTANCE`)), reads (`observe`: the
//! source by DbiResourceId, the rest by derived name and atrest:* tags), writes (`act`: one RDS
//! call per action) and settings (the restore request, what a restore cannot set).

pub mod act;
pub mod observe;

use atrest::error::Result;
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_rds::replace::{self, Names, Observed, Replace};
use atrest_rds::*;
use aws_sdk_rds::types::DbInstance;

pub const RESOURCE_TYPE: &str = "AWS::RDS::DBInstance";

pub static SPEC: FixSpec = FixSpec {
    name: "rds-encrypt-instance",
    description: "Encrypt an RDS DB instance: snapshot, encrypted copy, restore with every setting carried over; the source is kept.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[
        ParamSpec {
            name: KMS_KEY_PARAM,
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
        .set_db_snapshot_identifier(names.encrypted_snapshot.clone())
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

/// One run over one source: what was read, for the writes and the messages.
pub struct Run {
    rds: aws_sdk_rds::Client,
    resource_id: String,
    source: DbInstance,
    /// Instances found where the target could be.
    targets: Vec<DbInstance>,
}

impl Run {
    fn target(&self, o: &Observed) -> Option<&DbInstance> {
        replace::found_target(&self.targets, o.target())
    }
}

/// The worker. Its RDS client comes from the invocation's context (`ctx.client`), where tests
/// register mocked ones when the stand-in is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct RdsEncryptInstance;

#[async_trait]
impl Fix for RdsEncryptInstance {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let rds = ctx.client(client);
        let source = instance_by_resource_id(&rds, &req.resource_id).await?;
        let mut run = source.map(|source| Run { rds, resource_id: req.resource_id.clone(), source, targets: Vec::new() });
        replace::replace_by_copy(&SPEC, &replace::INSTANCE, ctx, req, run.as_mut().map(|r| r as &mut dyn Replace)).await
    }
}

impl replace::Report for Run {
    fn dry_run_message(&self, o: &Observed, next: &str) -> String {
        format!(
            "Dry run: the next step would be to {next}; then encrypted instance {} would be restored with the source's settings \
             and the intermediate snapshot {} deleted. {} would not be stopped or deleted (a rename cutover renames it, and \
             RDS reboots a renamed instance).{} Nothing was changed.",
            o.names.target,
            o.names.source_snapshot,
            o.source.id,
            replace::not_carried_text(&not_carried(&self.source))
        )
    }

    fn success_message(&self, o: &Observed) -> String {
        let names = &o.names;
        let target = self.target(o);
        let target_id = target.and_then(|t| t.db_instance_identifier()).unwrap_or_default();
        let endpoint = target.map(endpoint_text).unwrap_or_default();
        let source_id = o.source.id.as_str();
        let key = target.and_then(|t| t.kms_key_id()).unwrap_or(&o.settings.key_arn);
        let encrypted_snapshot = names.encrypted_snapshot.as_deref().unwrap_or_default();
        let not_carried = replace::not_carried_text(&not_carried(&self.source));
        if target_id == names.original {
            return format!(
                "DB instance {target_id} is now encrypted (KMS key {key}) and keeps its endpoint {endpoint}: the encrypted copy took \
                 over the name, and the unencrypted original was renamed {source_id} (RDS rebooted it for the rename). \
                 {source_id} is still running and was not otherwise changed (tagged {TAG_REPLACED_BY}={target_id}). Encrypted \
                 snapshot {encrypted_snapshot} is kept.{not_carried} Next: check the application against {target_id}, then delete \
                 {source_id} when satisfied."
            );
        }
        let mut message = format!(
            "Encrypted copy {target_id} of DB instance {source_id} is available at {endpoint} (KMS key {key}), with {source_id}'s \
             network, parameter/option groups, storage, backup, monitoring settings and tags. {source_id} is still running and \
             was not changed (tagged {TAG_REPLACED_BY}={target_id}). Encrypted snapshot {encrypted_snapshot} is kept. {target_id} \
             holds the data as of its snapshot: writes made to {source_id} after the snapshot are not in it.{not_carried} "
        );
        if o.settings.cutover_asked && !o.settings.writes_frozen {
            message.push_str("The rename cutover was NOT done because WritesFrozen is not true. ");
        }
        message.push_str(&format!(
            "Next: point clients at {endpoint}, then delete {source_id} when satisfied. To keep the old endpoint instead, stop \
             writes to {source_id}, delete {target_id} and snapshot {encrypted_snapshot}, and run this fix again with \
             Cutover=rename and WritesFrozen=true (RDS reboots {source_id} when it is renamed)."
        ));
        message
    }
}
