//! `fix-rds-encrypt-snapshot`: make an encrypted copy of an unencrypted RDS DB snapshot or DB
//! cluster snapshot.
//!
//! Steps (one per invocation, resumable): find the snapshot (DB snapshot first, then cluster
//! snapshot; an ARN says which) → copy it with the KMS key to `<snapshot>-encrypted`, with its
//! tags and `atrest:source-resource-id` → wait for `available` → delete the unencrypted source
//! only when `DeleteSource=true` (manual snapshots only: RDS deletes automated ones itself, and
//! AWS Backup owns the ones it made).
//!
//! An unencrypted DB cluster snapshot cannot be encrypted by a copy (AWS returns an error for
//! CopyDBClusterSnapshot with `KmsKeyId` from an unencrypted source): it takes the restore path
//! in `cluster` (encrypted restore into a temporary cluster, snapshot, delete the cluster). An
//! encrypted cluster snapshot is re-keyed by a copy, which AWS documents.

pub mod cluster;

use atrest::error::{Error, Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_rds::*;
use aws_sdk_rds::types::{DbClusterSnapshot, Tag};

pub static SPEC: FixSpec = FixSpec {
    name: "rds-encrypt-snapshot",
    description: "Make an encrypted copy of an RDS DB snapshot, or of a DB cluster snapshot through a temporary encrypted cluster, with its tags; delete the source only when asked.",
    resource_types: &["AWS::RDS::DBSnapshot", "AWS::RDS::DBClusterSnapshot"],
    parameters: &[
        ParamSpec {
            name: KMS_KEY_PARAM,
            kind: ParamKind::KmsKey,
            default: DEFAULT_KMS_KEY,
            description: "KMS key for the encrypted copy: key id, key ARN, alias or alias ARN. Default: the AWS managed key aws/rds.",
        },
        ParamSpec {
            name: "TargetSnapshotIdentifier",
            kind: ParamKind::Text,
            default: "",
            description: "Name of the encrypted copy. Default: <snapshot>-encrypted (shortened to 63 characters).",
        },
        ParamSpec {
            name: "DeleteSource",
            kind: ParamKind::Bool,
            default: "false",
            description: "true deletes the unencrypted manual snapshot once its encrypted copy is available (never an automated or AWS Backup snapshot).",
        },
    ],
    disruptive: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Db,
    Cluster,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Db => "DB snapshot",
            Kind::Cluster => "DB cluster snapshot",
        }
    }

    fn resource_type(self) -> &'static str {
        match self {
            Kind::Db => "AWS::RDS::DBSnapshot",
            Kind::Cluster => "AWS::RDS::DBClusterSnapshot",
        }
    }
}

/// One snapshot of either kind, reduced to what the fix needs.
#[derive(Debug, Clone)]
pub struct Snap {
    kind: Kind,
    id: String,
    arn: Option<String>,
    status: Option<String>,
    percent: Option<i32>,
    encrypted: bool,
    key: Option<String>,
    /// `manual`, `automated`, `awsbackup`, `shared` or `public` (empty when RDS did not say).
    snapshot_type: String,
    tags: Vec<Tag>,
    /// A cluster snapshot as RDS described it (the restore path needs its engine and network).
    cluster: Option<DbClusterSnapshot>,
}

/// AWS Backup's recovery points of RDS and Aurora are snapshots named `awsbackup:job-<id>`
/// (AWS Backup Developer Guide, "Working with backups"). DB snapshots also report SnapshotType
/// `awsbackup`, which "does not apply to Aurora": a cluster snapshot is known by its name.
fn is_aws_backup(id: &str, snapshot_type: &str) -> bool {
    snapshot_type == "awsbackup" || id.starts_with("awsbackup:")
}

/// Only manual snapshots of this account are deleted: RDS deletes automated ones at the end of
/// their retention period, and AWS Backup owns the ones it made: deleting one behind its back
/// would break the recovery points its plan and vault keep.
fn deletable(id: &str, snapshot_type: &str) -> bool {
    snapshot_type == "manual" && !is_aws_backup(id, snapshot_type)
}

/// Why `DeleteSource=true` left the source alone.
fn deletion_refusal(source_id: &str, snapshot_type: &str) -> String {
    match snapshot_type {
        _ if is_aws_backup(source_id, snapshot_type) => format!(
            "{source_id} was made by AWS Backup, which owns and expires it under its backup plan; it was kept. Delete its recovery point in AWS Backup if it is no longer needed."
        ),
        "automated" => {
            format!("{source_id} is an automated snapshot, which RDS deletes itself at the end of its retention period; it was kept.")
        }
        other => format!("{source_id} is not a manual snapshot of this account (type {other:?}); it was kept."),
    }
}

/// RDS names automated snapshots `rds:<db>-<time>`, and describes one by identifier only when
/// the request also says `SnapshotType=automated` (DescribeDBSnapshots and
/// DescribeDBClusterSnapshots API references: "If this identifier is for an automated snapshot,
/// the SnapshotType parameter must also be specified").
fn may_be_automated(id: &str) -> bool {
    id.starts_with("rds:")
}

async fn automated_db_snapshot(rds: &aws_sdk_rds::Client, id: &str) -> Result<Option<aws_sdk_rds::types::DbSnapshot>> {
    match rds.describe_db_snapshots().db_snapshot_identifier(id).snapshot_type("automated").send().await {
        Ok(out) => Ok(out.db_snapshots().first().cloned()),
        Err(e) => {
            let err = aws_error("rds:DescribeDBSnapshots", id, e);
            if err.aws_code() == Some("DBSnapshotNotFound") { Ok(None) } else { Err(err) }
        }
    }
}

async fn automated_cluster_snapshot(rds: &aws_sdk_rds::Client, id: &str) -> Result<Option<DbClusterSnapshot>> {
    match rds.describe_db_cluster_snapshots().db_cluster_snapshot_identifier(id).snapshot_type("automated").send().await {
        Ok(out) => Ok(out.db_cluster_snapshots().first().cloned()),
        Err(e) => {
            let err = aws_error("rds:DescribeDBClusterSnapshots", id, e);
            if err.aws_code() == Some("DBClusterSnapshotNotFoundFault") { Ok(None) } else { Err(err) }
        }
    }
}

async fn find(rds: &aws_sdk_rds::Client, kind: Kind, id: &str) -> Result<Option<Snap>> {
    Ok(match kind {
        Kind::Db => {
            let found = match db_snapshot(rds, id).await? {
                None if may_be_automated(id) => automated_db_snapshot(rds, id).await?,
                found => found,
            };
            found.map(|s| Snap {
                kind,
                id: s.db_snapshot_identifier().unwrap_or(id).to_string(),
                arn: s.db_snapshot_arn().map(str::to_string),
                status: s.status().map(str::to_string),
                percent: s.percent_progress(),
                encrypted: s.encrypted() == Some(true),
                key: s.kms_key_id().map(str::to_string),
                snapshot_type: s.snapshot_type().unwrap_or_default().to_string(),
                tags: s.tag_list().to_vec(),
                cluster: None,
            })
        }
        Kind::Cluster => {
            let found = match cluster_snapshot(rds, id).await? {
                None if may_be_automated(id) => automated_cluster_snapshot(rds, id).await?,
                found => found,
            };
            found.map(|s| Snap {
                kind,
                id: s.db_cluster_snapshot_identifier().unwrap_or(id).to_string(),
                arn: s.db_cluster_snapshot_arn().map(str::to_string),
                status: s.status().map(str::to_string),
                percent: s.percent_progress(),
                encrypted: s.storage_encrypted() == Some(true),
                key: s.kms_key_id().map(str::to_string),
                snapshot_type: s.snapshot_type().unwrap_or_default().to_string(),
                tags: s.tag_list().to_vec(),
                cluster: Some(s),
            })
        }
    })
}

/// The kinds to look in and the identifier, from a Config resource id (the snapshot identifier)
/// or a snapshot ARN.
fn parse_resource_id(resource_id: &str) -> (Vec<Kind>, String) {
    let parts: Vec<&str> = resource_id.splitn(7, ':').collect();
    if parts.len() == 7 && parts[0] == "arn" && parts[2] == "rds" {
        match parts[5] {
            "snapshot" => return (vec![Kind::Db], parts[6].to_string()),
            "cluster-snapshot" => return (vec![Kind::Cluster], parts[6].to_string()),
            _ => {}
        }
    }
    (vec![Kind::Db, Kind::Cluster], resource_id.to_string())
}

/// The worker. Tests register mocked RDS clients on the runner where the stand-in is wrong.
#[derive(Debug, Clone, Default)]
pub struct RdsEncryptSnapshot;

#[async_trait]
impl Fix for RdsEncryptSnapshot {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let mut found = None;
        let outcome = self.encrypt(ctx, req, &mut found).await?;
        // The id alone does not say which kind of snapshot it names; the email should.
        Ok(match found {
            Some(kind) => outcome.with_resource_type(kind.resource_type()),
            None => outcome,
        })
    }
}

impl RdsEncryptSnapshot {
    /// The reconciler; `found` learns which kind of snapshot the id names once it is known.
    async fn encrypt(&self, ctx: &FixContext, req: &FixRequest, found: &mut Option<Kind>) -> Result<FixOutcome> {
        let rds = ctx.client(client);
        let (kinds, source_id) = parse_resource_id(&req.resource_id);
        let target_id = match req.params.text("TargetSnapshotIdentifier") {
            Some(t) if is_valid_identifier(&t.to_ascii_lowercase()) => t.to_ascii_lowercase(),
            Some(t) => {
                return Err(Error::invalid_parameter("TargetSnapshotIdentifier", format!("{t:?} is not a valid snapshot identifier")));
            }
            None => derived_identifier(&source_id, "-encrypted"),
        };
        let delete_source = req.params.bool("DeleteSource");
        let key_arn = resolve_key(ctx, req).await?;

        let mut source = None;
        for kind in &kinds {
            if let Some(found) = find(&rds, *kind, &source_id).await? {
                source = Some(found);
                break;
            }
        }
        // A copy is of the source's own kind (DB and cluster snapshot names are separate).
        let target_kinds = source.as_ref().map(|s| vec![s.kind]).unwrap_or_else(|| kinds.clone());
        let mut target = None;
        for kind in &target_kinds {
            if let Some(found) = find(&rds, *kind, &target_id).await? {
                target = Some(found);
                break;
            }
        }
        *found = source.as_ref().or(target.as_ref()).map(|s| s.kind);

        // An unencrypted cluster snapshot (or what is left of one whose source is gone) takes
        // the restore path.
        let cluster_path = match &source {
            Some(s) => s.kind == Kind::Cluster && !s.encrypted,
            None => kinds.contains(&Kind::Cluster) && target.as_ref().is_none_or(|t| t.kind == Kind::Cluster),
        };
        if cluster_path {
            let run = cluster::Run {
                rds: &rds,
                req,
                names: cluster::Names {
                    source: source_id.clone(),
                    target: target_id.clone(),
                    temporary: cluster::temporary_cluster_identifier(&source_id),
                },
                key_arn: &key_arn,
                delete_source,
                source: source.as_ref(),
                target: target.as_ref(),
            };
            if let Some(outcome) = run.reconcile().await? {
                *found = Some(Kind::Cluster);
                return Ok(outcome);
            }
        }

        let Some(source) = source else {
            // Deleted by an earlier run with DeleteSource=true?
            if let Some(t) = &target
                && tag_value(&t.tags, TAG_ENCRYPTED_FROM) == Some(source_id.as_str())
                && t.encrypted
            {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!("Encrypted copy {} of {source_id} exists and {source_id} is gone; nothing was changed.", t.id),
                ));
            }
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("No DB or DB cluster snapshot named {source_id} exists. Nothing was changed."),
            ));
        };
        let noun = source.kind.noun();
        let source_marker = source.arn.clone().unwrap_or_else(|| source.id.clone());

        if target.is_none() && source.encrypted && key_matches(ctx, source.key.as_deref(), &key_arn).await? {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("{noun} {source_id} is already encrypted with KMS key {key_arn}; nothing was changed."),
            ));
        }

        let Some(target) = target else {
            match snapshot_progress(source.status.as_deref()) {
                Progress::Ready => {}
                Progress::Working => {
                    return Ok(FixOutcome::in_progress(
                        &SPEC,
                        req,
                        format!(
                            "Waiting for {noun} {source_id} to be available ({}).",
                            status_text(source.status.as_deref(), source.percent)
                        ),
                    ));
                }
                Progress::Broken => {
                    return Ok(FixOutcome::failed(
                        &SPEC,
                        req,
                        format!(
                            "{noun} {source_id} is {}; it cannot be copied. Nothing was changed.",
                            source.status.as_deref().unwrap_or("?")
                        ),
                    ));
                }
            }
            let change = format!("copy {noun} {source_id} to encrypted snapshot {target_id} with KMS key {key_arn} and its tags");
            if req.dry_run {
                let delete = if delete_source { format!(", then delete {source_id}") } else { format!("; {source_id} would be kept") };
                return Ok(
                    FixOutcome::succeeded(&SPEC, req, format!("Dry run: would {change}{delete}. Nothing was changed.")).with_change(change)
                );
            }
            // Tags are passed explicitly (the source's own plus atrest's markers): with explicit
            // tags RDS ignores CopyTags, so this is the only way to have both.
            let tags = carried_tags(&source.tags, vec![tag(TAG_ENCRYPTED_FROM, &source.id), tag(TAG_SOURCE_RESOURCE_ID, &source_marker)]);
            match source.kind {
                Kind::Db => {
                    rds.copy_db_snapshot()
                        .source_db_snapshot_identifier(&source.id)
                        .target_db_snapshot_identifier(&target_id)
                        .kms_key_id(&key_arn)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:CopyDBSnapshot", &target_id, e))?;
                }
                Kind::Cluster => {
                    rds.copy_db_cluster_snapshot()
                        .source_db_cluster_snapshot_identifier(&source.id)
                        .target_db_cluster_snapshot_identifier(&target_id)
                        .kms_key_id(&key_arn)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:CopyDBClusterSnapshot", &target_id, e))?;
                }
            }
            return Ok(FixOutcome::in_progress(&SPEC, req, format!("Started: {change}.")).with_change(change));
        };

        if tag_value(&target.tags, TAG_SOURCE_RESOURCE_ID) != Some(source_marker.as_str()) {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "A snapshot named {target_id} already exists and is not atrest's copy of {source_id}; pass another TargetSnapshotIdentifier. Nothing was changed."
                ),
            ));
        }
        match snapshot_progress(target.status.as_deref()) {
            Progress::Ready => {}
            Progress::Working => {
                return Ok(FixOutcome::in_progress(
                    &SPEC,
                    req,
                    format!(
                        "Copying {source_id} to encrypted snapshot {target_id} ({}).",
                        status_text(target.status.as_deref(), target.percent)
                    ),
                ));
            }
            Progress::Broken => {
                return Ok(FixOutcome::failed(
                    &SPEC,
                    req,
                    format!("Encrypted copy {target_id} is {}; delete it and run the fix again.", target.status.as_deref().unwrap_or("?")),
                ));
            }
        }
        if !target.encrypted {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("Copy {target_id} reports that it is not encrypted; it was left for inspection."),
            ));
        }
        let key = target.key.as_deref().unwrap_or(&key_arn);
        if delete_source && deletable(&source.id, &source.snapshot_type) {
            let change = format!("delete unencrypted {noun} {source_id}");
            if req.dry_run {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!("Dry run: {target_id} is ready; would {change}. Nothing was changed."),
                )
                .with_change(change));
            }
            match source.kind {
                Kind::Db => {
                    rds.delete_db_snapshot()
                        .db_snapshot_identifier(&source.id)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:DeleteDBSnapshot", &source.id, e))?;
                }
                Kind::Cluster => {
                    rds.delete_db_cluster_snapshot()
                        .db_cluster_snapshot_identifier(&source.id)
                        .send()
                        .await
                        .map_err(|e| aws_error("rds:DeleteDBClusterSnapshot", &source.id, e))?;
                }
            }
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Encrypted copy {target_id} of {noun} {source_id} is available (KMS key {key}, same tags), and the unencrypted \
                     {source_id} was deleted as DeleteSource=true asked. Next: restore from {target_id} from now on."
                ),
            )
            .with_change(change));
        }
        let kept = if delete_source {
            deletion_refusal(&source_id, &source.snapshot_type)
        } else {
            format!(
                "The unencrypted {source_id} was kept. Next: use {target_id} from now on, then delete {source_id} when satisfied (or run again with DeleteSource=true)."
            )
        };
        Ok(FixOutcome::succeeded(
            &SPEC,
            req,
            format!("Encrypted copy {target_id} of {noun} {source_id} is available (KMS key {key}, same tags). {kept}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_and_arns() {
        assert_eq!(parse_resource_id("orders-snap"), (vec![Kind::Db, Kind::Cluster], "orders-snap".to_string()));
        assert_eq!(
            parse_resource_id("arn:aws:rds:us-east-1:123456789012:snapshot:rds:orders-2026-11-20-10-00"),
            (vec![Kind::Db], "rds:orders-2026-11-20-10-00".to_string())
        );
        assert_eq!(parse_resource_id("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:c1"), (vec![Kind::Cluster], "c1".to_string()));
    }

    #[test]
    fn only_manual_snapshots_outside_aws_backup_are_ever_deleted() {
        assert!(deletable("before-migration", "manual"));
        for (id, kind) in [
            ("rds:orders-2026-11-20-10-00", "automated"),
            ("awsbackup:job-be59cf2a", "awsbackup"),
            // Aurora: AWS Backup's cluster snapshots do not report the awsbackup type.
            ("awsbackup:job-be59cf2a", "manual"),
            ("shared-in", "shared"),
            ("no-type", ""),
        ] {
            assert!(!deletable(id, kind), "{id} ({kind})");
            assert!(deletion_refusal(id, kind).contains("was kept"), "{id}");
        }
        assert!(deletion_refusal("awsbackup:job-be59cf2a", "manual").contains("AWS Backup"));
    }
}
