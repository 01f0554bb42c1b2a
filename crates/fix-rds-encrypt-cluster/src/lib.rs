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

use atrest::error::{Error, Result, aws_error};
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_rds::*;
use aws_sdk_rds::types::{DbCluster, DbInstance, ScalingConfiguration, ServerlessV2ScalingConfiguration, Tag};

pub const RESOURCE_TYPE: &str = "AWS::RDS::DBCluster";

pub static SPEC: FixSpec = FixSpec {
    name: "rds-encrypt-cluster",
    description: "Encrypt an RDS DB cluster: snapshot, encrypted restore with the cluster's settings, every member recreated; the source is kept.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[
        ParamSpec {
            name: "KmsKeyId",
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub original: String,
    pub target: String,
    pub renamed_source: String,
    pub snapshot: String,
}

impl Names {
    pub fn new(source: &DbCluster, resource_id: &str, target: Option<&str>) -> Result<Names> {
        let current = source.db_cluster_identifier().unwrap_or_default();
        let original = tag_value(source.tag_list(), TAG_ORIGINAL_IDENTIFIER).unwrap_or(current).to_string();
        let renamed_source = derived_identifier(&original, "-unencrypted");
        let target = match target.map(str::to_ascii_lowercase) {
            Some(t) if !is_valid_identifier(&t) => {
                return Err(Error::invalid_parameter("TargetClusterIdentifier", format!("{t:?} is not a valid DB cluster identifier")));
            }
            Some(t) if t == original || t == renamed_source => {
                return Err(Error::invalid_parameter("TargetClusterIdentifier", format!("{t} is the source's own name")));
            }
            Some(t) => t,
            None => derived_identifier(&original, "-encrypted"),
        };
        Ok(Names {
            original,
            target,
            renamed_source,
            snapshot: derived_identifier(&format!("atrest-{}", resource_id.to_ascii_lowercase()), "-source"),
        })
    }

    /// The encrypted twin of a member instance.
    pub fn member(&self, member_id: &str) -> String {
        derived_identifier(member_id, "-encrypted")
    }
}

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
        .snapshot_identifier(&names.snapshot)
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
fn local_write_forwarding(cluster: &DbCluster) -> bool {
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

fn not_carried_text(source: &DbCluster) -> String {
    let missing = not_carried(source);
    if missing.is_empty() { String::new() } else { format!(" Not carried over, to do by hand: {}.", missing.join("; ")) }
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

/// The worker. `default()` builds its RDS client from the invocation's SDK configuration;
/// `with_client` uses the given one (tests use mocked clients where the stand-in is wrong).
#[derive(Debug, Clone, Default)]
pub struct RdsEncryptCluster {
    rds: Option<aws_sdk_rds::Client>,
}

impl RdsEncryptCluster {
    pub fn with_client(rds: aws_sdk_rds::Client) -> Self {
        RdsEncryptCluster { rds: Some(rds) }
    }

    fn client(&self, ctx: &FixContext) -> aws_sdk_rds::Client {
        self.rds.clone().unwrap_or_else(|| client(&ctx.sdk))
    }
}

struct Run<'a> {
    rds: aws_sdk_rds::Client,
    req: &'a FixRequest,
    resource_id: &'a str,
    key_arn: String,
    names: Names,
    source: DbCluster,
}

enum Step {
    Started(String),
    Waiting(String),
}

impl Run<'_> {
    fn source_id(&self) -> &str {
        self.source.db_cluster_identifier().unwrap_or_default()
    }

    fn ours(&self, tags: &[Tag]) -> bool {
        tag_value(tags, TAG_SOURCE_RESOURCE_ID) == Some(self.resource_id)
    }

    async fn find_target(&self) -> Result<Option<DbCluster>> {
        if let Some(found) = cluster_by_id(&self.rds, &self.names.target).await? {
            if self.ours(found.tag_list()) {
                return Ok(Some(found));
            }
            return Err(Error::Unsupported(format!(
                "a DB cluster named {} already exists and was not made from {} by atrest; pass another TargetClusterIdentifier. Nothing was changed",
                self.names.target,
                self.source_id()
            )));
        }
        if self.source_id() != self.names.original
            && let Some(found) = cluster_by_id(&self.rds, &self.names.original).await?
            && self.ours(found.tag_list())
        {
            return Ok(Some(found));
        }
        Ok(None)
    }

    async fn build_target(&self) -> Result<Step> {
        let names = &self.names;
        let source_id = self.source_id();
        if let Some(snap) = cluster_snapshot(&self.rds, &names.snapshot).await? {
            if !self.ours(snap.tag_list()) {
                return Err(Error::Unsupported(format!(
                    "cluster snapshot {} exists but was not made by atrest from {source_id}; rename or delete it. Nothing was changed",
                    names.snapshot
                )));
            }
            return match snapshot_progress(snap.status()) {
                Progress::Ready => {
                    let change = format!(
                        "restore encrypted DB cluster {} from snapshot {} with KMS key {} and {source_id}'s settings",
                        names.target, names.snapshot, self.key_arn
                    );
                    if !self.req.dry_run {
                        restore_request(&self.rds, &self.source, names, self.resource_id, &self.key_arn)
                            .send()
                            .await
                            .map_err(|e| aws_error("rds:RestoreDBClusterFromSnapshot", &names.target, e))?;
                    }
                    Ok(Step::Started(change))
                }
                Progress::Working => Ok(Step::Waiting(format!(
                    "Taking cluster snapshot {} of {source_id} ({}).",
                    names.snapshot,
                    status_text(snap.status(), snap.percent_progress())
                ))),
                Progress::Broken => Err(Error::Unsupported(format!(
                    "cluster snapshot {} is {}; delete it and run the fix again. Nothing else was changed",
                    names.snapshot,
                    snap.status().unwrap_or("?")
                ))),
            };
        }
        let status = self.source.status().unwrap_or_default();
        match snapshot_readiness("cluster", "CreateDBClusterSnapshot", source_id, status) {
            SnapshotReadiness::Ready => {}
            SnapshotReadiness::Wait => {
                return Ok(Step::Waiting(format!("Waiting for {source_id} to be available before its snapshot (now {status}).")));
            }
            SnapshotReadiness::Refuse(reason) => return Err(Error::Unsupported(reason)),
        }
        let change = format!("take manual cluster snapshot {} of {source_id}", names.snapshot);
        if !self.req.dry_run {
            let tags = carried_tags(
                self.source.tag_list(),
                vec![tag(TAG_ENCRYPTED_FROM, &names.original), tag(TAG_SOURCE_RESOURCE_ID, self.resource_id)],
            );
            self.rds
                .create_db_cluster_snapshot()
                .db_cluster_identifier(source_id)
                .db_cluster_snapshot_identifier(&names.snapshot)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| aws_error("rds:CreateDBClusterSnapshot", &names.snapshot, e))?;
        }
        Ok(Step::Started(change))
    }

    /// Step 3: what a restore cannot set. Tagged when done so a setting RDS reports differently
    /// from how it was asked never loops.
    async fn settle(&self, target: &DbCluster) -> Result<Option<Step>> {
        if tag_value(target.tag_list(), TAG_SETTINGS_APPLIED).is_some() {
            return Ok(None);
        }
        let target_id = target.db_cluster_identifier().unwrap_or_default();
        let changes = post_restore_changes(&self.source, target);
        let change = (!changes.is_empty()).then(|| Step::Started(format!("set on {target_id}: {}", changes.join(", "))));
        if self.req.dry_run {
            return Ok(change);
        }
        // Roles first: AddRoleToDBCluster needs the cluster available, and the modify below
        // leaves it `modifying`. A role added by an interrupted earlier turn is not missing.
        for (arn, feature) in missing_roles(&self.source, target) {
            match self
                .rds
                .add_role_to_db_cluster()
                .db_cluster_identifier(target_id)
                .role_arn(&arn)
                .set_feature_name(feature)
                .send()
                .await
                .map_err(|e| aws_error("rds:AddRoleToDBCluster", target_id, e))
            {
                Err(e) if e.aws_code() == Some("DBClusterRoleAlreadyExists") => {}
                other => other.map(|_| ())?,
            }
        }
        if !modify_changes(&self.source, target).is_empty() {
            let s = &self.source;
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
        self.add_tags(target.db_cluster_arn(), target_id, vec![tag(TAG_SETTINGS_APPLIED, "true")]).await?;
        Ok(change)
    }

    /// The source's member instances, writer first.
    async fn source_members(&self) -> Result<Vec<DbInstance>> {
        let mut members = Vec::new();
        let mut ordered: Vec<_> = self.source.db_cluster_members().to_vec();
        ordered.sort_by_key(|m| (m.is_cluster_writer() != Some(true), m.promotion_tier().unwrap_or(15)));
        for member in ordered {
            let Some(id) = member.db_instance_identifier() else { continue };
            if let Some(instance) = instance_by_id(&self.rds, id).await? {
                members.push(instance);
            }
        }
        Ok(members)
    }

    /// Step 3: the writer first; the readers once the writer is available.
    async fn members(&self, target: &DbCluster) -> Result<Option<Step>> {
        let target_id = target.db_cluster_identifier().unwrap_or_default();
        let members = self.source_members().await?;
        let mut created = Vec::new();
        let mut waiting = Vec::new();
        // Aurora makes the first instance of a cluster its writer: the source's writer is
        // recreated first, and the readers only once it is available.
        let mut writer_ready = true;
        for (index, member) in members.iter().enumerate() {
            let member_id = member.db_instance_identifier().unwrap_or_default();
            let twin_id = self.names.member(member_id);
            match instance_by_id(&self.rds, &twin_id).await? {
                Some(twin) => {
                    if tag_value(twin.tag_list(), TAG_SOURCE_RESOURCE_ID) != member.dbi_resource_id() {
                        return Err(Error::Unsupported(format!(
                            "an instance named {twin_id} already exists and is not atrest's copy of {member_id}. Nothing more was changed"
                        )));
                    }
                    let status = twin.db_instance_status().unwrap_or_default();
                    if is_broken_status(status) {
                        return Err(Error::Unsupported(format!("encrypted member {twin_id} is {status}; it was left for inspection")));
                    }
                    if status != "available" {
                        waiting.push(format!("{twin_id} ({status})"));
                        writer_ready &= index > 0;
                    }
                }
                None if index > 0 && !writer_ready => {}
                None => {
                    created.push(format!("create member {twin_id} ({}) like {member_id}", member.db_instance_class().unwrap_or("?")));
                    if !self.req.dry_run {
                        member_request(&self.rds, member, target_id, &twin_id)
                            .send()
                            .await
                            .map_err(|e| aws_error("rds:CreateDBInstance", &twin_id, e))?;
                    }
                    writer_ready &= index > 0;
                }
            }
        }
        if !created.is_empty() {
            return Ok(Some(Step::Started(created.join("; "))));
        }
        if !waiting.is_empty() {
            return Ok(Some(Step::Waiting(format!("Waiting for encrypted members: {}.", waiting.join(", ")))));
        }
        Ok(None)
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

    async fn cutover(&self, target: &DbCluster) -> Result<Option<Step>> {
        let names = &self.names;
        let target_id = target.db_cluster_identifier().unwrap_or_default();
        if target_id == names.original {
            return Ok(None);
        }
        let source_id = self.source_id();
        let source_status = self.source.status().unwrap_or_default();
        let (renaming, new_name) = if source_id == names.original {
            if let Some(refusal) = rename_refusal(&self.source) {
                return Err(Error::Unsupported(format!("{refusal}; the encrypted cluster {target_id} is ready and kept")));
            }
            if let Some(reason) = rename_blocked_by_state("cluster", source_id, source_status) {
                return Err(Error::Unsupported(reason));
            }
            if source_status != "available" {
                return Ok(Some(Step::Waiting(format!(
                    "Waiting for {source_id} to be available before renaming it (now {source_status})."
                ))));
            }
            (source_id, names.renamed_source.as_str())
        } else {
            if source_status == "renaming" {
                return Ok(Some(Step::Waiting(format!("Waiting for {} to finish renaming to {source_id}.", names.original))));
            }
            if cluster_by_id(&self.rds, &names.original).await?.is_some() {
                return Err(Error::Unsupported(format!(
                    "the name {} was taken by another cluster after the source was renamed {source_id}; the encrypted cluster keeps the name {target_id}",
                    names.original
                )));
            }
            (target_id, names.original.as_str())
        };
        let change = format!("rename DB cluster {renaming} to {new_name}");
        if !self.req.dry_run {
            if renaming == source_id {
                self.add_tags(self.source.db_cluster_arn(), source_id, vec![tag(TAG_ORIGINAL_IDENTIFIER, &names.original)]).await?;
            }
            self.rds
                .modify_db_cluster()
                .db_cluster_identifier(renaming)
                .new_db_cluster_identifier(new_name)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error("rds:ModifyDBCluster", renaming, e))?;
        }
        Ok(Some(Step::Started(change)))
    }

    async fn finish(&self, target: &DbCluster) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        let target_id = target.db_cluster_identifier().unwrap_or_default();
        if let Some(snap) = cluster_snapshot(&self.rds, &self.names.snapshot).await?
            && self.ours(snap.tag_list())
        {
            changes.push(format!("delete intermediate cluster snapshot {}", self.names.snapshot));
            if !self.req.dry_run {
                self.rds
                    .delete_db_cluster_snapshot()
                    .db_cluster_snapshot_identifier(&self.names.snapshot)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:DeleteDBClusterSnapshot", &self.names.snapshot, e))?;
            }
        }
        if tag_value(self.source.tag_list(), TAG_REPLACED_BY) != Some(target_id) {
            changes.push(format!("tag {} {TAG_REPLACED_BY}={target_id}", self.source_id()));
            if !self.req.dry_run {
                self.add_tags(self.source.db_cluster_arn(), self.source_id(), vec![tag(TAG_REPLACED_BY, target_id)]).await?;
            }
        }
        Ok(changes)
    }

    fn success_message(&self, target: &DbCluster, cutover_asked: bool, writes_frozen: bool) -> String {
        let target_id = target.db_cluster_identifier().unwrap_or_default();
        let source_id = self.source_id();
        let endpoint = target.endpoint().unwrap_or("(endpoint not published yet)");
        let reader = target.reader_endpoint().map(|r| format!(" (readers: {r})")).unwrap_or_default();
        let members = target.db_cluster_members().len();
        let key = target.kms_key_id().unwrap_or(&self.key_arn);
        if target_id == self.names.original {
            return format!(
                "DB cluster {target_id} is now encrypted (KMS key {key}) with {members} member instance(s) and keeps its endpoint \
                 {endpoint}{reader}: the encrypted cluster took over the name, and the unencrypted original was renamed {source_id}. \
                 {source_id} and its instances are still running and were not otherwise changed (tagged {TAG_REPLACED_BY}={target_id}).{} \
                 Next: check the application, then delete {source_id} and its instances when satisfied.",
                not_carried_text(&self.source)
            );
        }
        let not_done =
            if cutover_asked && !writes_frozen { "The rename cutover was NOT done because WritesFrozen is not true. " } else { "" };
        let not_carried = not_carried_text(&self.source);
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

#[async_trait]
impl Fix for RdsEncryptCluster {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let resource_id = req.resource_id.as_str();
        let rds = self.client(ctx);
        let Some(source) = cluster_by_resource_id(&rds, resource_id).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("No DB cluster has the resource id {resource_id} (deleted since it was evaluated?). Nothing was changed."),
            ));
        };
        let source_id = source.db_cluster_identifier().unwrap_or_default().to_string();
        if let Some(reason) = unsupported_reason(&source) {
            return Ok(FixOutcome::failed(&SPEC, req, format!("{reason} Nothing was changed.")));
        }
        let key_arn = resolve_key(ctx, req).await?;
        let names = Names::new(&source, resource_id, req.params.text("TargetClusterIdentifier"))?;
        let cutover_asked = req.params.text("Cutover") == Some("rename");
        let writes_frozen = req.params.bool("WritesFrozen");
        let run = Run { rds, req, resource_id, key_arn: key_arn.clone(), names, source };

        let target = run.find_target().await?;
        if target.is_none() && run.source.storage_encrypted() == Some(true) && key_matches(ctx, run.source.kms_key_id(), &key_arn).await? {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("DB cluster {source_id} is already encrypted with KMS key {key_arn}; nothing was changed."),
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
            return Ok(outcome(req, &run, run.build_target().await?));
        };
        let target_id = target.db_cluster_identifier().unwrap_or_default().to_string();
        let status = target.status().unwrap_or_default();
        if is_broken_status(status) {
            return Ok(FixOutcome::failed(&SPEC, req, format!("Encrypted cluster {target_id} is {status}; it was left for inspection.")));
        }
        if status != "available" {
            return Ok(FixOutcome::in_progress(
                &SPEC,
                req,
                format!("Waiting for encrypted cluster {target_id} to be available (now {status})."),
            ));
        }
        if target.storage_encrypted() != Some(true) {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "{target_id} was restored with KMS key {key_arn} but reports unencrypted storage; it was left as it is for inspection."
                ),
            ));
        }
        if let Some(step) = run.settle(&target).await? {
            return Ok(outcome(req, &run, step));
        }
        if is_aurora(&run.source)
            && let Some(step) = run.members(&target).await?
        {
            return Ok(outcome(req, &run, step));
        }
        if cutover_asked
            && writes_frozen
            && let Some(step) = run.cutover(&target).await?
        {
            return Ok(outcome(req, &run, step));
        }
        let changes = run.finish(&target).await?;
        let mut result = if req.dry_run {
            FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Dry run: {target_id} is ready; would finish with: {}. Nothing was changed.",
                    if changes.is_empty() { "nothing".to_string() } else { changes.join("; ") }
                ),
            )
        } else {
            FixOutcome::succeeded(&SPEC, req, run.success_message(&target, cutover_asked, writes_frozen))
        };
        result.changes = changes;
        Ok(result)
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn outcome(req: &FixRequest, run: &Run<'_>, step: Step) -> FixOutcome {
    match step {
        Step::Started(change) if req.dry_run => FixOutcome::succeeded(
            &SPEC,
            req,
            format!(
                "Dry run: the next step would be to {change}; then encrypted cluster {} would get every member of {} and the \
                 intermediate snapshot {} would be deleted. {} would not be stopped or deleted (a rename cutover renames it).{} \
                 Nothing was changed.",
                run.names.target,
                run.source_id(),
                run.names.snapshot,
                run.source_id(),
                not_carried_text(&run.source)
            ),
        )
        .with_change(change),
        Step::Started(change) => FixOutcome::in_progress(&SPEC, req, format!("Started: {change}.")).with_change(change),
        Step::Waiting(message) => FixOutcome::in_progress(&SPEC, req, message),
    }
}
