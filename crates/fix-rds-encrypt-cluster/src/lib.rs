//! `fix-rds-encrypt-cluster`: give an unencrypted Aurora or Multi-AZ DB cluster an encrypted
//! twin with every member, without touching the source.
//!
//! One step per invocation, each decided from what exists in AWS:
//!
//! 1. manual cluster snapshot `atrest-<cluster-resource-id>-source`, with the cluster's tags;
//! 2. `RestoreDBClusterFromSnapshot` with `KmsKeyId` (a cluster restore encrypts an unencrypted
//!    snapshot directly, no copy needed) and the cluster's settings: subnet group, security
//!    groups, custom cluster parameter group, engine and version, port, IAM auth, deletion
//!    protection, backtrack, Serverless v2 scaling, log exports, backups, Aurora AZs, Kerberos
//!    domain, engine lifecycle support, Multi-AZ DB cluster monitoring and Performance Insights, tags;
//! 3. once `available`: `AddRoleToDBCluster` for each IAM role of the source and
//!    `ModifyDBCluster` for the maintenance window and a Secrets-Manager-managed master password;
//! 4. Aurora: recreate every member instance with its class, parameter group, promotion tier and
//!    AZ — the writer first, the readers once it is available. Multi-AZ DB clusters get their
//!    members from the restore itself;
//! 5. optional rename cutover (cluster names, so the cluster endpoints move), only with
//!    `WritesFrozen=true` and no replica clusters (they would stay attached to the source);
//! 6. delete the intermediate snapshot, tag the source `atrest:replaced-by`. The source cluster
//!    and its instances are never stopped, modified or deleted — except the source cluster renamed
//!    by a rename cutover.
//!
//! The flow is the one the instance fix shares, `atrest_rds::replace` (its plan is pure and
//! table-tested); this crate gives it a cluster's words ((`replace::CLUSTER`)), reads (`observe`: the source
//! by DbClusterResourceId, the rest by derived name and atrest:* tags), writes (`act`: one RDS
//! call per action) and settings (the restore and member requests, what a restore cannot set).

pub mod act;
pub mod observe;

use atrest::error::Result;
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_rds::replace::{self, Names, Observed, Replace};
use atrest_rds::*;
use aws_sdk_rds::types::{DbCluster, DbInstance, ScalingConfiguration, ServerlessV2ScalingConfiguration};

pub const RESOURCE_TYPE: &str = "AWS::RDS::DBCluster";

pub static SPEC: FixSpec = FixSpec {
    name: "rds-encrypt-cluster",
    description: "Encrypt an RDS DB cluster: snapshot, encrypted restore with the cluster's settings, every member recreated; the source is kept.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[
        ParamSpec {
            name: KMS_KEY_PARAM,
            kind: ParamKind::KmsKey,
            default: DEFAULT_KMS_KEY,
            description: "KMS key for the encrypted cluster: key id, key ARN, alias or alias ARN. Default: the AWS managed key aws/rds.",
        },
        ParamSpec {
            name: "TargetClusterIdentifier",
            kind: ParamKind::Text,
            default: "",
            description: "Name of the encrypted cluster. Default: <source>-encrypted (shortened to 63 characters).",
        },
        ParamSpec {
            name: "Cutover",
            kind: ParamKind::OneOf(&["none", "rename"]),
            default: "none",
            description: "none: both clusters side by side. rename: the source becomes <source>-unencrypted and the encrypted cluster takes its name and endpoints (needs WritesFrozen=true; refused while the source has replica clusters).",
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

pub fn is_aurora(cluster: &DbCluster) -> bool {
    cluster.engine().unwrap_or_default().starts_with("aurora")
}

pub fn unsupported_reason(source: &DbCluster) -> Option<String> {
    let id = source.db_cluster_identifier().unwrap_or("?");
    let blocker = cluster_blocker(
        source.replication_source_identifier(),
        source.global_cluster_identifier(),
        source.engine().unwrap_or_default(),
        source.engine_mode(),
    )?;
    Some(match blocker {
        ClusterBlocker::Replica(primary) => {
            format!("{id} replicates {primary}; encrypt the source cluster, then recreate the replica (manual remediation).")
        }
        ClusterBlocker::Global(global) => format!("{id} belongs to global database {global}; remediation must be manual."),
        ClusterBlocker::Engine(engine) => format!("{id} runs engine {engine}, which this fix cannot restore; remediation must be manual."),
        ClusterBlocker::ServerlessV1 => {
            format!("{id} is Aurora Serverless v1; upgrade it to provisioned or Serverless v2 first (manual remediation).")
        }
    })
}

/// The restore request with every cluster setting a restore does not copy by itself.
pub fn restore_request(
    rds: &aws_sdk_rds::Client,
    source: &DbCluster,
    names: &Names,
    resource_id: &str,
    key_arn: &str,
) -> aws_sdk_rds::operation::restore_db_cluster_from_snapshot::builders::RestoreDBClusterFromSnapshotFluentBuilder {
    let security_groups: Vec<String> =
        source.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).map(str::to_string).collect();
    let logs = source.enabled_cloudwatch_logs_exports().to_vec();
    let v2 = source.serverless_v2_scaling_configuration().map(|s| {
        ServerlessV2ScalingConfiguration::builder()
            .set_min_capacity(s.min_capacity())
            .set_max_capacity(s.max_capacity())
            .set_seconds_until_auto_pause(s.seconds_until_auto_pause())
            .build()
    });
    let v1 = (source.engine_mode() == Some("serverless")).then(|| source.scaling_configuration_info()).flatten().map(|s| {
        ScalingConfiguration::builder()
            .set_min_capacity(s.min_capacity())
            .set_max_capacity(s.max_capacity())
            .set_auto_pause(s.auto_pause())
            .set_seconds_until_auto_pause(s.seconds_until_auto_pause())
            .build()
    });
    let multi_az_db_cluster = !is_aurora(source);
    // Multi-AZ DB clusters take monitoring and Performance Insights at restore; Aurora sets them
    // per member instance.
    let interval = if multi_az_db_cluster { source.monitoring_interval().filter(|i| *i > 0) } else { None };
    let pi = multi_az_db_cluster && source.performance_insights_enabled() == Some(true);
    // RestoreDBClusterFromSnapshot takes AWS Managed AD only (Domain + DomainIAMRoleName).
    let domain = domain_settings(source.domain_memberships()).filter(|d| d.domain.is_some()).unwrap_or_default();
    let tags = carried_tags(source.tag_list(), vec![tag(TAG_ENCRYPTED_FROM, &names.original), tag(TAG_SOURCE_RESOURCE_ID, resource_id)]);
    rds.restore_db_cluster_from_snapshot()
        .db_cluster_identifier(&names.target)
        .snapshot_identifier(&names.source_snapshot)
        .kms_key_id(key_arn)
        .set_engine(source.engine().map(str::to_string))
        .set_engine_version(source.engine_version().map(str::to_string))
        .set_engine_mode(source.engine_mode().filter(|m| *m != "provisioned").map(str::to_string))
        .set_port(source.port())
        .set_db_subnet_group_name(source.db_subnet_group().map(str::to_string))
        .set_vpc_security_group_ids(Some(security_groups).filter(|v| !v.is_empty()))
        .set_db_cluster_parameter_group_name(custom_group(source.db_cluster_parameter_group()))
        .set_option_group_name(custom_group(
            source.db_cluster_option_group_memberships().first().and_then(|g| g.db_cluster_option_group_name()),
        ))
        // Aurora places a restored cluster in three AZs of RDS's choosing; a member recreated in
        // the source's AZ outside them is refused.
        .set_availability_zones(Some(source.availability_zones().to_vec()).filter(|z| is_aurora(source) && !z.is_empty()))
        // Without it a restore of an engine version past standard support is enrolled in paid
        // RDS Extended Support, whatever the source chose.
        .set_engine_lifecycle_support(source.engine_lifecycle_support().map(str::to_string))
        .set_domain(domain.domain)
        .set_domain_iam_role_name(domain.iam_role_name)
        .set_monitoring_interval(interval)
        .set_monitoring_role_arn(interval.and(source.monitoring_role_arn().map(str::to_string)))
        .set_enable_performance_insights(pi.then_some(true))
        .set_performance_insights_kms_key_id(if pi { source.performance_insights_kms_key_id().map(str::to_string) } else { None })
        .set_performance_insights_retention_period(if pi { source.performance_insights_retention_period() } else { None })
        .set_enable_iam_database_authentication(source.iam_database_authentication_enabled())
        .set_deletion_protection(source.deletion_protection())
        .set_copy_tags_to_snapshot(source.copy_tags_to_snapshot())
        .set_backtrack_window(source.backtrack_window().filter(|w| *w > 0))
        .set_enable_cloudwatch_logs_exports(Some(logs).filter(|v| !v.is_empty()))
        .set_serverless_v2_scaling_configuration(v2)
        .set_scaling_configuration(v1)
        .set_backup_retention_period(source.backup_retention_period())
        .set_preferred_backup_window(source.preferred_backup_window().map(str::to_string))
        .set_network_type(source.network_type().map(str::to_string))
        // Multi-AZ DB clusters create their instances from these; Aurora ignores them.
        .set_db_cluster_instance_class(if multi_az_db_cluster { source.db_cluster_instance_class().map(str::to_string) } else { None })
        .set_storage_type(source.storage_type().map(str::to_string))
        .set_iops(if multi_az_db_cluster { source.iops() } else { None })
        .set_publicly_accessible(if multi_az_db_cluster { source.publicly_accessible() } else { None })
        .set_tags(Some(tags))
}

/// The source's IAM role associations the target lacks: (role ARN, feature name).
pub fn missing_roles(source: &DbCluster, target: &DbCluster) -> Vec<(String, Option<String>)> {
    source
        .associated_roles()
        .iter()
        .filter_map(|r| Some((r.role_arn()?.to_string(), r.feature_name().map(str::to_string))))
        .filter(|(arn, _)| !target.associated_roles().iter().any(|t| t.role_arn() == Some(arn.as_str())))
        .collect()
}

/// What one `ModifyDBCluster` must set on `target` after the restore: a restore takes neither
/// the maintenance window nor a managed master password.
pub fn modify_changes(source: &DbCluster, target: &DbCluster) -> Vec<String> {
    let mut changes = Vec::new();
    if let Some(window) = source.preferred_maintenance_window()
        && target.preferred_maintenance_window() != Some(window)
    {
        changes.push(format!("maintenance window {window}"));
    }
    // Without it the copy keeps the snapshot's password, which the source's secret stops
    // matching at its next rotation (every 7 days by default).
    if source.master_user_secret().is_some() && target.master_user_secret().is_none() {
        changes.push("master password managed in Secrets Manager (a new secret for the copy)".to_string());
    }
    if local_write_forwarding(source) && !local_write_forwarding(target) {
        changes.push("local write forwarding on".to_string());
    }
    changes
}

/// Aurora readers forward writes to the writer: a restore has no parameter for it.
pub fn local_write_forwarding(cluster: &DbCluster) -> bool {
    cluster.local_write_forwarding_status().is_some_and(|s| matches!(s.as_str(), "enabled" | "enabling"))
}

/// Everything the settle step sets on `target`, in words.
pub fn post_restore_changes(source: &DbCluster, target: &DbCluster) -> Vec<String> {
    let mut changes = modify_changes(source, target);
    for (arn, feature) in missing_roles(source, target) {
        changes.push(format!("IAM role {arn}{}", feature.map(|f| format!(" for {f}")).unwrap_or_default()));
    }
    changes
}

/// Why a rename cutover would leave something behind on the unencrypted source, if it would:
/// replica clusters stay attached to the cluster they replicate, whatever its name.
pub fn rename_refusal(source: &DbCluster) -> Option<String> {
    let replicas = source.read_replica_identifiers();
    (!replicas.is_empty()).then(|| {
        format!(
            "the rename cutover was refused: {} has replica clusters ({}), which stay attached to it when it is renamed \
             and would keep serving its unencrypted data. Recreate them from the encrypted cluster and delete these, or run \
             with Cutover=none",
            source.db_cluster_identifier().unwrap_or("?"),
            list_text(replicas)
        )
    })
}

/// What no restore or modify carries over: named in the result and the email.
pub fn not_carried(source: &DbCluster) -> Vec<String> {
    let mut out = Vec::new();
    if !source.read_replica_identifiers().is_empty() {
        out.push(format!(
            "replica clusters {} (they keep replicating the unencrypted source; recreate them from the encrypted cluster)",
            list_text(source.read_replica_identifiers())
        ));
    }
    if source.activity_stream_status().is_some_and(|s| s.as_str() == "started" || s.as_str() == "starting") {
        out.push("the Database Activity Stream (start one on the encrypted cluster)".to_string());
    }
    if source.http_endpoint_enabled() == Some(true) {
        out.push("the RDS Data API (HTTP endpoint; enable it on the encrypted cluster)".to_string());
    }
    if source.database_insights_mode().is_some_and(|m| m.as_str() == "advanced") {
        out.push("Database Insights advanced mode (turn it on for the encrypted cluster)".to_string());
    }
    if domain_settings(source.domain_memberships()).is_some_and(|d| d.domain.is_none()) {
        out.push("the self-managed Active Directory membership (a cluster restore takes AWS Managed AD only)".to_string());
    }
    out
}

/// A member instance of the encrypted cluster, made like the source member.
pub fn member_request(
    rds: &aws_sdk_rds::Client,
    member: &DbInstance,
    target_cluster: &str,
    target_member: &str,
) -> aws_sdk_rds::operation::create_db_instance::builders::CreateDBInstanceFluentBuilder {
    let interval = member.monitoring_interval().filter(|i| *i > 0);
    let pi = member.performance_insights_enabled() == Some(true);
    let tags = carried_tags(
        member.tag_list(),
        vec![
            tag(TAG_ENCRYPTED_FROM, member.db_instance_identifier().unwrap_or_default()),
            tag(TAG_SOURCE_RESOURCE_ID, member.dbi_resource_id().unwrap_or_default()),
        ],
    );
    rds.create_db_instance()
        .db_instance_identifier(target_member)
        .db_cluster_identifier(target_cluster)
        .set_engine(member.engine().map(str::to_string))
        .set_db_instance_class(member.db_instance_class().map(str::to_string))
        .set_db_parameter_group_name(custom_group(member.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name())))
        .set_promotion_tier(member.promotion_tier())
        .set_availability_zone(member.availability_zone().map(str::to_string))
        .set_publicly_accessible(member.publicly_accessible())
        .set_auto_minor_version_upgrade(member.auto_minor_version_upgrade())
        .set_ca_certificate_identifier(member.ca_certificate_identifier().map(str::to_string))
        .set_preferred_maintenance_window(member.preferred_maintenance_window().map(str::to_string))
        .set_monitoring_interval(interval)
        .set_monitoring_role_arn(interval.and(member.monitoring_role_arn().map(str::to_string)))
        .set_enable_performance_insights(pi.then_some(true))
        .set_performance_insights_kms_key_id(if pi { member.performance_insights_kms_key_id().map(str::to_string) } else { None })
        .set_performance_insights_retention_period(if pi { member.performance_insights_retention_period() } else { None })
        .set_tags(Some(tags))
}

/// One run over one source: what was read, for the writes and the messages.
pub struct Run {
    rds: aws_sdk_rds::Client,
    resource_id: String,
    source: DbCluster,
    /// Clusters found where the target could be.
    targets: Vec<DbCluster>,
    /// The source's members as read, in the order of [`Observed::members`].
    members: Vec<DbInstance>,
}

impl Run {
    fn target(&self, o: &Observed) -> Option<&DbCluster> {
        replace::found_target(&self.targets, o.target())
    }
}

/// The worker. Its RDS client comes from the invocation's context (`ctx.client`), where tests
/// register mocked ones when the stand-in is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct RdsEncryptCluster;

#[async_trait]
impl Fix for RdsEncryptCluster {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let rds = ctx.client(client);
        let source = cluster_by_resource_id(&rds, &req.resource_id).await?;
        let mut run =
            source.map(|source| Run { rds, resource_id: req.resource_id.clone(), source, targets: Vec::new(), members: Vec::new() });
        replace::replace_by_copy(&SPEC, &replace::CLUSTER, ctx, req, run.as_mut().map(|r| r as &mut dyn Replace)).await
    }
}

impl replace::Report for Run {
    fn dry_run_message(&self, o: &Observed, change: &str) -> String {
        format!(
            "Dry run: the next step would be to {change}; then encrypted cluster {} would get every member of {} and the \
             intermediate snapshot {} would be deleted. {} would not be stopped or deleted (a rename cutover renames it).{} \
             Nothing was changed.",
            o.names.target,
            o.source.id,
            o.names.source_snapshot,
            o.source.id,
            replace::not_carried_text(&not_carried(&self.source))
        )
    }

    fn success_message(&self, o: &Observed) -> String {
        let target = self.target(o);
        let target_id = target.and_then(|t| t.db_cluster_identifier()).unwrap_or_default();
        let source_id = o.source.id.as_str();
        let endpoint = target.and_then(|t| t.endpoint()).unwrap_or("(endpoint not published yet)");
        let reader = target.and_then(|t| t.reader_endpoint()).map(|r| format!(" (readers: {r})")).unwrap_or_default();
        let members = target.map(|t| t.db_cluster_members().len()).unwrap_or_default();
        let key = target.and_then(|t| t.kms_key_id()).unwrap_or(&o.settings.key_arn);
        let not_carried = replace::not_carried_text(&not_carried(&self.source));
        if target_id == o.names.original {
            return format!(
                "DB cluster {target_id} is now encrypted (KMS key {key}) with {members} member instance(s) and keeps its endpoint \
                 {endpoint}{reader}: the encrypted cluster took over the name, and the unencrypted original was renamed {source_id}. \
                 {source_id} and its instances are still running and were not otherwise changed (tagged {TAG_REPLACED_BY}={target_id}).{not_carried} \
                 Next: check the application, then delete {source_id} and its instances when satisfied."
            );
        }
        let not_done = if o.settings.cutover_asked && !o.settings.writes_frozen {
            "The rename cutover was NOT done because WritesFrozen is not true. "
        } else {
            ""
        };
        format!(
            "Encrypted copy {target_id} of DB cluster {source_id} is available at {endpoint}{reader} (KMS key {key}) with {members} \
             member instance(s) recreated like the source's, and the source's network, parameter group, engine version and tags. \
             {source_id} is still running and was not changed (tagged {TAG_REPLACED_BY}={target_id}). {target_id} holds the data \
             as of its snapshot: writes made to {source_id} after it are not in it.{not_carried} {not_done}Next: point clients at {endpoint}, \
             then delete {source_id} and its instances when satisfied. To keep the old endpoint instead, stop writes to \
             {source_id}, delete {target_id} and its instances, and run this fix again with Cutover=rename and WritesFrozen=true."
        )
    }
}
