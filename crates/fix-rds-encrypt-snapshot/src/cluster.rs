//! Unencrypted DB cluster snapshots.
//!
//! RDS cannot encrypt a cluster snapshot by copying it: "If you copy an unencrypted DB cluster
//! snapshot and specify a value for the KmsKeyId parameter, an error is returned"
//! (CopyDBClusterSnapshot API reference). The documented path is a restore: a cluster restored
//! from an unencrypted snapshot with `KmsKeyId` is encrypted with that key
//! (RestoreDBClusterFromSnapshot API reference). So, one step per invocation:
//!
//! 1. `RestoreDBClusterFromSnapshot` with `KmsKeyId` into a temporary cluster
//!    `atrest-<snapshot>-encrypting` (Aurora: no instances; a Multi-AZ DB cluster gets the
//!    instances the restore makes itself), tagged, deletion protection off;
//! 2. once it is `available`: `CreateDBClusterSnapshot` of it, named like a copy
//!    (`<snapshot>-encrypted`), with the source's tags and atrest's markers;
//! 3. once that snapshot is `available`: `DeleteDBCluster` of the temporary cluster with
//!    `SkipFinalSnapshot` (waiting until it is gone);
//! 4. `DeleteSource=true`: delete the source, only a manual snapshot.
//!
//! Every resource is found again by its deterministic name and verified by its atrest tags, so a
//! run killed after any call resumes and converges to one encrypted snapshot and no temporary
//! cluster. The planner (`plan`) is pure and table-tested; `observe` reads, `Run::act` writes.

use atrest::error::{Error, Result, aws_error};
use atrest::{FixOutcome, FixRequest};
use atrest_rds::*;
use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, Tag};

use crate::{SPEC, Snap, deletable, deletion_refusal};

/// The temporary cluster of a source snapshot: derived from the source's identifier alone, so a
/// resumed run (whatever `TargetSnapshotIdentifier` it is given) finds the one an earlier run made.
pub fn temporary_cluster_identifier(source_id: &str) -> String {
    derived_identifier(&format!("atrest-{source_id}"), "-encrypting")
}

// ------------------------------------------------------------------------------------ model

/// A snapshot (the target) as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotView {
    pub status: String,
    pub percent: Option<i32>,
    pub encrypted: bool,
    /// Carries atrest's markers for this source.
    pub ours: bool,
}

/// The temporary cluster as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub status: String,
    pub encrypted: bool,
    pub ours: bool,
    pub deletion_protection: bool,
}

/// The source snapshot as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    pub status: String,
    pub percent: Option<i32>,
    /// `manual`, `automated`, `awsbackup`, `shared`, `public`.
    pub snapshot_type: String,
    /// Whether `DeleteSource=true` may delete it (a manual snapshot not made by AWS Backup).
    pub deletable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub source: String,
    pub target: String,
    pub temporary: String,
}

/// Everything the next step depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub names: Names,
    /// `None`: the source is gone (deleted by an earlier run with DeleteSource=true, or by hand).
    pub source: Option<SourceView>,
    pub target: Option<SnapshotView>,
    pub temporary: Option<ClusterView>,
    pub delete_source: bool,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Wait(String),
    Fail(String),
    Restore,
    SnapshotTemporary,
    DeleteTemporary,
    DeleteSource,
    Done,
}

// ------------------------------------------------------------------------------------- plan

/// The next step, from what exists. Pure.
pub fn plan(o: &Observed) -> Next {
    let Names { source, target, temporary } = &o.names;
    if let Some(t) = &o.target {
        if !t.ours {
            return Next::Fail(format!(
                "A snapshot named {target} already exists and is not atrest's copy of {source}; pass another TargetSnapshotIdentifier. Nothing was changed."
            ));
        }
        match snapshot_progress(Some(&t.status)) {
            Progress::Working => {
                return Next::Wait(format!(
                    "Taking encrypted snapshot {target} of temporary cluster {temporary} ({}).",
                    status_text(Some(&t.status), t.percent)
                ));
            }
            Progress::Broken => {
                return Next::Fail(format!("Encrypted snapshot {target} is {}; delete it and run the fix again.", t.status));
            }
            Progress::Ready => {}
        }
        if !t.encrypted {
            return Next::Fail(format!("Snapshot {target} reports that it is not encrypted; it was left for inspection."));
        }
        // The encrypted snapshot holds the data: the temporary cluster can go.
        if let Some(c) = &o.temporary
            && c.ours
        {
            return match c.status.as_str() {
                "deleting" => Next::Wait(format!("Waiting for temporary cluster {temporary} to be deleted ({target} is available).")),
                _ if c.deletion_protection => Next::Fail(format!(
                    "Encrypted snapshot {target} is available, but temporary cluster {temporary} has deletion protection on (atrest \
                     restored it without; someone turned it on). Turn it off and run the fix again, or delete {temporary} yourself."
                )),
                // DeleteDBCluster needs a settled cluster; a broken one can be deleted too.
                "available" => Next::DeleteTemporary,
                s if is_broken_status(s) => Next::DeleteTemporary,
                s => Next::Wait(format!("Waiting for temporary cluster {temporary} to settle ({s}) before deleting it.")),
            };
        }
        if o.delete_source
            && let Some(s) = &o.source
            && s.deletable
            && s.status != "deleting"
        {
            return Next::DeleteSource;
        }
        return Next::Done;
    }

    if let Some(c) = &o.temporary {
        if !c.ours {
            return Next::Fail(format!(
                "A DB cluster named {temporary} already exists and was not restored from {source} by atrest; rename or delete it. Nothing was changed."
            ));
        }
        return match c.status.as_str() {
            // Someone deleted the encrypted snapshot after the cluster was being deleted: start
            // over once it is gone.
            "deleting" => Next::Wait(format!("Waiting for temporary cluster {temporary} to be deleted before restoring {source} again.")),
            s if is_broken_status(s) => Next::Fail(format!(
                "Temporary cluster {temporary} (restored from {source}) is {s}; check the KMS key and delete {temporary}, then run the fix again."
            )),
            "available" if !c.encrypted => Next::Fail(format!(
                "Temporary cluster {temporary} was restored from {source} with a KMS key but reports unencrypted storage; it was left for inspection."
            )),
            "available" => Next::SnapshotTemporary,
            s => Next::Wait(format!("Waiting for temporary encrypted cluster {temporary} to be available (now {s}).")),
        };
    }

    let Some(s) = &o.source else {
        return Next::Fail(format!("No DB or DB cluster snapshot named {source} exists. Nothing was changed."));
    };
    match snapshot_progress(Some(&s.status)) {
        Progress::Ready => Next::Restore,
        Progress::Working => {
            Next::Wait(format!("Waiting for DB cluster snapshot {source} to be available ({}).", status_text(Some(&s.status), s.percent)))
        }
        Progress::Broken => {
            Next::Fail(format!("DB cluster snapshot {source} is {}; it cannot be restored. Nothing was changed.", s.status))
        }
    }
}

// ---------------------------------------------------------------------------------- observe

fn ours(tags: &[Tag], source_id: &str, source_marker: Option<&str>) -> bool {
    match source_marker {
        Some(marker) => tag_value(tags, TAG_SOURCE_RESOURCE_ID) == Some(marker),
        // The source is gone: its identifier is all there is to go by.
        None => tag_value(tags, TAG_ENCRYPTED_FROM) == Some(source_id) && tag_value(tags, TAG_SOURCE_RESOURCE_ID).is_some(),
    }
}

/// One run over an unencrypted cluster snapshot (or the remains of one whose source is gone).
pub struct Run<'a> {
    pub rds: &'a aws_sdk_rds::Client,
    pub req: &'a FixRequest,
    pub names: Names,
    pub key_arn: &'a str,
    pub delete_source: bool,
    pub source: Option<&'a Snap>,
    pub target: Option<&'a Snap>,
}

impl Run<'_> {
    fn marker(&self) -> Option<String> {
        self.source.map(|s| s.arn.clone().unwrap_or_else(|| s.id.clone()))
    }

    /// The reconciler. `None`: nothing of this source exists at all (the caller reports that).
    pub async fn reconcile(&self) -> Result<Option<FixOutcome>> {
        let temporary = cluster_by_id(self.rds, &self.names.temporary).await?;
        if self.source.is_none() && self.target.is_none() && temporary.is_none() {
            return Ok(None);
        }
        let marker = self.marker();
        let observed = Observed {
            names: self.names.clone(),
            source: self.source.map(|s| SourceView {
                status: s.status.clone().unwrap_or_default(),
                percent: s.percent,
                snapshot_type: s.snapshot_type.clone(),
                deletable: deletable(&s.id, &s.snapshot_type),
            }),
            target: self.target.map(|t| SnapshotView {
                status: t.status.clone().unwrap_or_default(),
                percent: t.percent,
                encrypted: t.encrypted,
                ours: ours(&t.tags, &self.names.source, marker.as_deref()),
            }),
            temporary: temporary.as_ref().map(|c| ClusterView {
                status: c.status().unwrap_or_default().to_string(),
                encrypted: c.storage_encrypted() == Some(true),
                ours: ours(c.tag_list(), &self.names.source, marker.as_deref()),
                deletion_protection: c.deletion_protection() == Some(true),
            }),
            delete_source: self.delete_source,
        };
        let next = plan(&observed);
        Ok(Some(self.act(next, temporary.as_ref()).await?))
    }

    fn outcome_for_change(&self, change: String, then: &str) -> FixOutcome {
        if self.req.dry_run {
            return FixOutcome::succeeded(
                &SPEC,
                self.req,
                format!("Dry run: the next step would be to {change}{then}. Nothing was changed."),
            )
            .with_change(change);
        }
        FixOutcome::in_progress(&SPEC, self.req, format!("Started: {change}.")).with_change(change)
    }

    async fn act(&self, next: Next, temporary: Option<&DbCluster>) -> Result<FixOutcome> {
        let Names { source: source_id, target: target_id, temporary: temporary_id } = &self.names;
        match next {
            Next::Wait(message) => Ok(FixOutcome::in_progress(&SPEC, self.req, message)),
            Next::Fail(message) => Ok(FixOutcome::failed(&SPEC, self.req, message)),
            Next::Restore => {
                let source = self.source.ok_or_else(|| Error::Internal("restore planned without a source".into()))?;
                let snapshot =
                    source.cluster.as_ref().ok_or_else(|| Error::Internal(format!("{source_id} was read without its details")))?;
                let settings = restore_settings(self.rds, snapshot).await?;
                let change = format!(
                    "restore DB cluster snapshot {source_id} into temporary cluster {temporary_id} encrypted with KMS key {}{}",
                    self.key_arn,
                    if settings.multi_az_class.is_some() { "" } else { " (no instances)" }
                );
                let then = format!(
                    "; then snapshot it as {target_id} with {source_id}'s tags and delete {temporary_id}; {source_id} {}",
                    if self.delete_source { "would then be deleted (DeleteSource=true)" } else { "would be kept" }
                );
                if !self.req.dry_run {
                    let marker = self.marker().unwrap_or_else(|| source_id.clone());
                    let tags = carried_tags(&source.tags, vec![tag(TAG_ENCRYPTED_FROM, source_id), tag(TAG_SOURCE_RESOURCE_ID, &marker)]);
                    restore_request(self.rds, snapshot, temporary_id, self.key_arn, &settings, tags)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:RestoreDBClusterFromSnapshot", temporary_id, e))?;
                }
                Ok(self.outcome_for_change(change, &then))
            }
            Next::SnapshotTemporary => {
                let change =
                    format!("take encrypted cluster snapshot {target_id} of temporary cluster {temporary_id} with {source_id}'s tags");
                if !self.req.dry_run {
                    // The source's own tags when it still exists; otherwise the temporary
                    // cluster's, which were carried from it.
                    let from: &[Tag] = match (self.source, temporary) {
                        (Some(s), _) => &s.tags,
                        (None, Some(c)) => c.tag_list(),
                        (None, None) => &[],
                    };
                    let marker = match (self.marker(), temporary) {
                        (Some(m), _) => m,
                        (None, Some(c)) => tag_value(c.tag_list(), TAG_SOURCE_RESOURCE_ID).unwrap_or(source_id).to_string(),
                        (None, None) => source_id.clone(),
                    };
                    let tags = carried_tags(from, vec![tag(TAG_ENCRYPTED_FROM, source_id), tag(TAG_SOURCE_RESOURCE_ID, &marker)]);
                    self.rds
                        .create_db_cluster_snapshot()
                        .db_cluster_identifier(temporary_id)
                        .db_cluster_snapshot_identifier(target_id)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:CreateDBClusterSnapshot", target_id, e))?;
                }
                Ok(self.outcome_for_change(change, &format!("; then delete {temporary_id}")))
            }
            Next::DeleteTemporary => {
                let change = format!("delete temporary cluster {temporary_id} without a final snapshot ({target_id} holds its data)");
                if !self.req.dry_run {
                    self.rds
                        .delete_db_cluster()
                        .db_cluster_identifier(temporary_id)
                        .skip_final_snapshot(true)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:DeleteDBCluster", temporary_id, e))?;
                }
                Ok(self.outcome_for_change(change, ""))
            }
            Next::DeleteSource => {
                let change = format!("delete unencrypted DB cluster snapshot {source_id}");
                if self.req.dry_run {
                    return Ok(FixOutcome::succeeded(
                        &SPEC,
                        self.req,
                        format!("Dry run: {target_id} is ready; would {change}. Nothing was changed."),
                    )
                    .with_change(change));
                }
                self.rds
                    .delete_db_cluster_snapshot()
                    .db_cluster_snapshot_identifier(source_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("rds:DeleteDBClusterSnapshot", source_id, e))?;
                Ok(FixOutcome::succeeded(
                    &SPEC,
                    self.req,
                    format!(
                        "Encrypted snapshot {target_id} of DB cluster snapshot {source_id} is available (KMS key {}, same tags), and \
                         the unencrypted {source_id} was deleted as DeleteSource=true asked. Next: restore from {target_id} from now on.",
                        self.key_arn
                    ),
                )
                .with_change(change))
            }
            Next::Done => {
                let key = self.target.and_then(|t| t.key.as_deref()).unwrap_or(self.key_arn);
                let kept = match self.source {
                    None => format!("{source_id} is gone."),
                    Some(s) if self.delete_source && s.status.as_deref() == Some("deleting") => format!("{source_id} is being deleted."),
                    Some(s) if self.delete_source => deletion_refusal(source_id, &s.snapshot_type),
                    Some(_) => format!(
                        "The unencrypted {source_id} was kept. Next: use {target_id} from now on, then delete {source_id} when satisfied (or run again with DeleteSource=true)."
                    ),
                };
                Ok(FixOutcome::succeeded(
                    &SPEC,
                    self.req,
                    format!(
                        "Encrypted snapshot {target_id} of DB cluster snapshot {source_id} is available (KMS key {key}, same tags). RDS \
                         cannot encrypt a cluster snapshot by copying it, so it was restored into a temporary encrypted cluster, \
                         which was snapshotted and deleted. {kept}"
                    ),
                ))
            }
        }
    }
}

// ------------------------------------------------------------------------------------ restore

/// What the restore needs beyond the snapshot itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSettings {
    pub subnet_group: Option<String>,
    /// Multi-AZ DB clusters only: the instance class, storage type and IOPS of the source cluster.
    pub multi_az_class: Option<String>,
    pub storage_type: Option<String>,
    pub iops: Option<i32>,
    /// Aurora: IAM database authentication as the snapshot records it, so the encrypted
    /// snapshot records the same.
    pub iam_auth: bool,
}

/// Why a cluster snapshot cannot take this path, with what to do instead; `None` when it can.
/// `source_cluster` is the snapshot's cluster when it still exists.
pub fn unsupported_reason(snapshot: &DbClusterSnapshot, source_cluster: Option<&DbCluster>) -> Option<String> {
    let id = snapshot.db_cluster_snapshot_identifier().unwrap_or("?");
    let engine = snapshot.engine().unwrap_or_default();
    if is_non_rds_engine(engine) {
        return Some(format!(
            "{id} is a {engine} cluster snapshot, which this fix does not restore. Encrypt it with that service: restore it with a KMS key, \
             snapshot the restored cluster, then delete the restored cluster. Nothing was changed."
        ));
    }
    if snapshot.engine_mode() == Some("serverless") {
        return Some(format!(
            "{id} is an Aurora Serverless v1 snapshot, which this fix does not restore. Restore it as a provisioned or Serverless v2 \
             cluster with a KMS key (console: Restore snapshot, Encryption), snapshot that cluster, then delete it. Nothing was changed."
        ));
    }
    if !engine.starts_with("aurora") && source_cluster.and_then(|c| c.db_cluster_instance_class()).is_none() {
        let cluster = snapshot.db_cluster_identifier().unwrap_or("?");
        return Some(format!(
            "{id} is a Multi-AZ DB cluster snapshot and its cluster {cluster} no longer exists, so the DB instance class the restore \
             needs is unknown. Restore it yourself with a KMS key: aws rds restore-db-cluster-from-snapshot --snapshot-identifier {id} \
             --db-cluster-identifier <name> --engine {engine} --db-cluster-instance-class <class> --kms-key-id <key>, then \
             create-db-cluster-snapshot of it and delete-db-cluster --skip-final-snapshot. Nothing was changed."
        ));
    }
    None
}

/// The snapshot's cluster, if it still exists and is the same cluster (same resource id when
/// the snapshot records one).
async fn source_cluster(rds: &aws_sdk_rds::Client, snapshot: &DbClusterSnapshot) -> Result<Option<DbCluster>> {
    let Some(id) = snapshot.db_cluster_identifier() else { return Ok(None) };
    let cluster = cluster_by_id(rds, id).await?;
    Ok(cluster.filter(|c| match (snapshot.db_cluster_resource_id(), c.db_cluster_resource_id()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }))
}

/// A DB subnet group in `vpc`, for a restore whose source cluster is gone: without one RDS uses
/// the default VPC, which many accounts no longer have. The first by name, so every run picks
/// the same.
async fn subnet_group_in(rds: &aws_sdk_rds::Client, vpc: &str) -> Result<Option<String>> {
    let mut names = Vec::new();
    let mut pages = rds.describe_db_subnet_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("rds:DescribeDBSubnetGroups", vpc, e))?;
        names.extend(
            page.db_subnet_groups().iter().filter(|g| g.vpc_id() == Some(vpc)).filter_map(|g| g.db_subnet_group_name()).map(str::to_string),
        );
    }
    names.sort();
    Ok(names.into_iter().next())
}

/// Reads what the restore needs; refuses (customer error, nothing changed) a snapshot that
/// cannot take this path.
pub async fn restore_settings(rds: &aws_sdk_rds::Client, snapshot: &DbClusterSnapshot) -> Result<RestoreSettings> {
    let cluster = source_cluster(rds, snapshot).await?;
    if let Some(reason) = unsupported_reason(snapshot, cluster.as_ref()) {
        return Err(Error::Unsupported(reason));
    }
    let subnet_group = match (&cluster, snapshot.vpc_id()) {
        (Some(c), _) => c.db_subnet_group().map(str::to_string),
        (None, Some(vpc)) => subnet_group_in(rds, vpc).await?,
        (None, None) => None,
    };
    let aurora = snapshot.engine().unwrap_or_default().starts_with("aurora");
    let multi_az = cluster.as_ref().filter(|_| !aurora);
    // Aurora: the snapshot's own storage type (Standard or I/O-Optimized), so the encrypted
    // snapshot records the same; Multi-AZ: the cluster's, with the IOPS RDS requires with it.
    let storage_type = if aurora {
        snapshot.storage_type().filter(|t| *t == "aurora" || *t == "aurora-iopt1").map(str::to_string)
    } else {
        multi_az.and_then(|c| c.storage_type()).map(str::to_string)
    };
    Ok(RestoreSettings {
        subnet_group,
        multi_az_class: multi_az.and_then(|c| c.db_cluster_instance_class()).map(str::to_string),
        storage_type,
        iops: multi_az.and_then(|c| c.iops()),
        iam_auth: aurora && snapshot.iam_database_authentication_enabled() == Some(true),
    })
}

/// The temporary cluster's restore: the snapshot's engine and version (left out, RDS would use
/// the Region's default version), the key, no deletion protection, tags on create.
pub fn restore_request(
    rds: &aws_sdk_rds::Client,
    snapshot: &DbClusterSnapshot,
    temporary_id: &str,
    key_arn: &str,
    settings: &RestoreSettings,
    tags: Vec<Tag>,
) -> aws_sdk_rds::operation::restore_db_cluster_from_snapshot::builders::RestoreDBClusterFromSnapshotFluentBuilder {
    let multi_az = settings.multi_az_class.is_some();
    rds.restore_db_cluster_from_snapshot()
        .db_cluster_identifier(temporary_id)
        .set_snapshot_identifier(snapshot.db_cluster_snapshot_identifier().map(str::to_string))
        .set_engine(snapshot.engine().map(str::to_string))
        .set_engine_version(snapshot.engine_version().map(str::to_string))
        .set_engine_mode(snapshot.engine_mode().filter(|m| *m != "provisioned").map(str::to_string))
        .kms_key_id(key_arn)
        .set_db_subnet_group_name(settings.subnet_group.clone())
        .deletion_protection(false)
        // The encrypted snapshot gets its tags explicitly; the cluster's would only add atrest's.
        .copy_tags_to_snapshot(false)
        .set_db_cluster_instance_class(settings.multi_az_class.clone())
        .set_storage_type(settings.storage_type.clone())
        .set_iops(settings.iops)
        .set_enable_iam_database_authentication(settings.iam_auth.then_some(true))
        // Multi-AZ DB cluster instances are made by the restore; they serve nobody.
        .set_publicly_accessible(multi_az.then_some(false))
        .set_tags(Some(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names { source: "orders-snap".into(), target: "orders-snap-encrypted".into(), temporary: "atrest-orders-snap-encrypting".into() }
    }

    fn source(status: &str, kind: &str) -> Option<SourceView> {
        Some(SourceView { status: status.into(), percent: None, snapshot_type: kind.into(), deletable: kind == "manual" })
    }

    fn target(status: &str, encrypted: bool, ours: bool) -> Option<SnapshotView> {
        Some(SnapshotView { status: status.into(), percent: None, encrypted, ours })
    }

    fn temporary(status: &str, encrypted: bool, ours: bool) -> Option<ClusterView> {
        Some(ClusterView { status: status.into(), encrypted, ours, deletion_protection: false })
    }

    fn observed(source: Option<SourceView>, target: Option<SnapshotView>, temporary: Option<ClusterView>, delete_source: bool) -> Observed {
        Observed { names: names(), source, target, temporary, delete_source }
    }

    fn kind(next: &Next) -> &'static str {
        match next {
            Next::Wait(_) => "wait",
            Next::Fail(_) => "fail",
            Next::Restore => "restore",
            Next::SnapshotTemporary => "snapshot",
            Next::DeleteTemporary => "delete-temporary",
            Next::DeleteSource => "delete-source",
            Next::Done => "done",
        }
    }

    #[test]
    fn the_plan_walks_restore_snapshot_cleanup_and_resumes_from_any_point() {
        let cases: Vec<(&str, Observed, &str)> = vec![
            ("fresh source", observed(source("available", "manual"), None, None, false), "restore"),
            ("source still being taken", observed(source("creating", "manual"), None, None, false), "wait"),
            ("source broken", observed(source("failed", "manual"), None, None, false), "fail"),
            ("restoring", observed(source("available", "manual"), None, temporary("creating", true, true), false), "wait"),
            ("restored", observed(source("available", "manual"), None, temporary("available", true, true), false), "snapshot"),
            ("restored but unencrypted", observed(source("available", "manual"), None, temporary("available", false, true), false), "fail"),
            (
                "restore failed on the key",
                observed(source("available", "manual"), None, temporary("inaccessible-encryption-credentials", true, true), false),
                "fail",
            ),
            ("someone else's cluster", observed(source("available", "manual"), None, temporary("available", true, false), false), "fail"),
            (
                "snapshot in flight",
                observed(source("available", "manual"), target("creating", true, true), temporary("available", true, true), false),
                "wait",
            ),
            (
                "snapshot ready",
                observed(source("available", "manual"), target("available", true, true), temporary("available", true, true), false),
                "delete-temporary",
            ),
            (
                "temporary backing up",
                observed(source("available", "manual"), target("available", true, true), temporary("backing-up", true, true), false),
                "wait",
            ),
            (
                "temporary deleting",
                observed(source("available", "manual"), target("available", true, true), temporary("deleting", true, true), false),
                "wait",
            ),
            ("all done, keep", observed(source("available", "manual"), target("available", true, true), None, false), "done"),
            ("all done, delete", observed(source("available", "manual"), target("available", true, true), None, true), "delete-source"),
            ("source deleting", observed(source("deleting", "manual"), target("available", true, true), None, true), "done"),
            ("automated kept", observed(source("available", "automated"), target("available", true, true), None, true), "done"),
            ("AWS Backup kept", observed(source("available", "awsbackup"), target("available", true, true), None, true), "done"),
            ("shared kept", observed(source("available", "shared"), target("available", true, true), None, true), "done"),
            ("source deleted earlier", observed(None, target("available", true, true), None, true), "done"),
            // The user deleted the source mid-run: the temporary cluster holds the only copy, so
            // it is snapshotted, not deleted.
            ("source gone mid-run", observed(None, None, temporary("available", true, true), false), "snapshot"),
            ("name taken", observed(source("available", "manual"), target("available", true, false), None, false), "fail"),
            ("unencrypted target", observed(source("available", "manual"), target("available", false, true), None, false), "fail"),
            ("nothing at all", observed(None, None, None, false), "fail"),
        ];
        for (name, o, expected) in cases {
            let next = plan(&o);
            assert_eq!(kind(&next), expected, "{name}: {next:?}");
        }
    }

    #[test]
    fn a_protected_temporary_cluster_is_reported_not_forced() {
        let mut o = observed(source("available", "manual"), target("available", true, true), temporary("available", true, true), false);
        o.temporary.as_mut().unwrap().deletion_protection = true;
        let Next::Fail(message) = plan(&o) else { panic!("{:?}", plan(&o)) };
        assert!(message.contains("deletion protection") && message.contains("atrest-orders-snap-encrypting"), "{message}");
    }

    #[test]
    fn temporary_names_are_valid_and_stable() {
        assert_eq!(temporary_cluster_identifier("orders-snap"), "atrest-orders-snap-encrypting");
        let automated = temporary_cluster_identifier("rds:orders-2026-11-20-10-00");
        assert!(is_valid_identifier(&automated), "{automated}");
        let backup = temporary_cluster_identifier(&format!("awsbackup:job-{}", "a".repeat(60)));
        assert!(is_valid_identifier(&backup) && backup.starts_with("atrest-"), "{backup}");
    }

    fn snapshot(engine: &str, mode: Option<&str>) -> DbClusterSnapshot {
        DbClusterSnapshot::builder()
            .db_cluster_snapshot_identifier("s1")
            .db_cluster_identifier("c1")
            .engine(engine)
            .set_engine_mode(mode.map(str::to_string))
            .build()
    }

    #[test]
    fn snapshots_this_path_cannot_take_name_the_alternative() {
        assert_eq!(unsupported_reason(&snapshot("aurora-postgresql", Some("provisioned")), None), None);
        let serverless = unsupported_reason(&snapshot("aurora-mysql", Some("serverless")), None).unwrap();
        assert!(serverless.contains("Serverless v1") && serverless.contains("Restore it as a provisioned"), "{serverless}");
        let neptune = unsupported_reason(&snapshot("neptune", None), None).unwrap();
        assert!(neptune.contains("neptune"), "{neptune}");
        let multi_az = unsupported_reason(&snapshot("postgres", None), None).unwrap();
        assert!(multi_az.contains("--db-cluster-instance-class") && multi_az.contains("c1 no longer exists"), "{multi_az}");
        let cluster = DbCluster::builder().db_cluster_instance_class("db.m6gd.large").build();
        assert_eq!(unsupported_reason(&snapshot("postgres", None), Some(&cluster)), None);
    }
}
