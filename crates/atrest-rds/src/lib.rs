//! What the RDS rules and fixes share: deterministic names, atrest's bookkeeping tags, lookups that
//! turn "not found" into `None`, the checks for what cannot be remediated automatically, the
//! progress wording, the rules' verdict (`rule`), the fixes' KMS key handling (`key`) and the
//! replace-by-copy flow the instance and cluster fixes share (`replace`).
//!
//! A library, so that no Lambda crate depends on another: every RDS rule and fix depends on this.
//!
//! All of a fix's state lives in AWS: each intermediate or final resource has a name derived
//! from the source's immutable resource id (or its original identifier) and carries
//! `atrest:source-resource-id`, so a re-run finds what an earlier run made and verifies that it
//! is really ours before building on it.

mod key;
pub mod replace;
mod rule;

pub use key::{key_matches, resolve_key};
pub use rule::{KMS_KEY_IDS, encryption_verdict, tags_of};

use atrest::error::{Error, Result, aws_error};
use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, DbInstance, DbSnapshot, Filter, Tag};

/// RDS identifiers (instances, clusters, snapshots) are at most 63 characters.
pub const MAX_IDENTIFIER: usize = 63;

/// On every encrypted copy: the identifier of what it was made from.
pub const TAG_ENCRYPTED_FROM: &str = atrest::tags::ENCRYPTED_FROM;
/// On every snapshot, instance and cluster a fix creates: the source's immutable resource id
/// (DbiResourceId, DbClusterResourceId or snapshot ARN). A re-run trusts only resources with it.
pub const TAG_SOURCE_RESOURCE_ID: &str = atrest::tags::SOURCE_RESOURCE_ID;
/// On the source once its encrypted replacement is ready: the replacement's identifier.
pub const TAG_REPLACED_BY: &str = atrest::tags::REPLACED_BY;
/// On the source before a rename cutover: its name before the rename (so a resumed run knows it).
pub const TAG_ORIGINAL_IDENTIFIER: &str = "atrest:original-identifier";
/// On an encrypted target once the settings a restore cannot set were applied.
pub const TAG_SETTINGS_APPLIED: &str = "atrest:settings-applied";

/// Bookkeeping tags that are never carried from a source to its copy.
const OWN_TAGS: &[&str] = &[TAG_ENCRYPTED_FROM, TAG_SOURCE_RESOURCE_ID, TAG_REPLACED_BY, TAG_ORIGINAL_IDENTIFIER, TAG_SETTINGS_APPLIED];

/// RDS allows 50 tags per resource.
pub const MAX_TAGS: usize = 50;

/// The AWS managed key RDS uses when none is named.
pub const DEFAULT_KMS_KEY: &str = "alias/aws/rds";

/// Whether `id` is a valid RDS identifier: 1–63 letters, digits and hyphens, starting with a
/// letter, no trailing hyphen and no two hyphens in a row.
pub fn is_valid_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_IDENTIFIER
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--")
}

/// A valid identifier made of `base` and `suffix` (e.g. `orders-db` + `-encrypted`).
///
/// Characters RDS does not allow (the `:` of automated snapshot names) become hyphens. When the
/// result would pass 63 characters, `base` is shortened and a 4-hex-digit hash of the whole
/// base keeps two long names with the same prefix apart.
pub fn derived_identifier(base: &str, suffix: &str) -> String {
    let clean = |s: &str| -> String {
        let mapped: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        let mut out = String::with_capacity(mapped.len());
        for c in mapped.chars() {
            if !(c == '-' && out.ends_with('-')) {
                out.push(c);
            }
        }
        out
    };
    let mut head = clean(base).trim_matches('-').to_string();
    if !head.starts_with(|c: char| c.is_ascii_alphabetic()) {
        head.insert_str(0, "x-");
    }
    let suffix = clean(suffix);
    if head.len() + suffix.len() > MAX_IDENTIFIER {
        let hash = format!("-{:04x}", fnv1a(base) & 0xffff);
        let keep = MAX_IDENTIFIER - suffix.len() - hash.len();
        head.truncate(keep);
        while head.ends_with('-') {
            head.pop();
        }
        head.push_str(&hash);
    }
    let mut out = format!("{head}{suffix}");
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_end_matches('-').to_string()
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

pub fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// The source's own tags (not AWS-reserved `aws:` ones, not atrest's bookkeeping), then
/// `markers`, within RDS's 50-tag limit (markers win: a copy must be recognisable).
pub fn carried_tags(source: &[Tag], markers: Vec<Tag>) -> Vec<Tag> {
    let room = MAX_TAGS.saturating_sub(markers.len());
    let mut out: Vec<Tag> =
        source.iter().filter(|t| t.key().is_some_and(|k| !k.starts_with("aws:") && !OWN_TAGS.contains(&k))).take(room).cloned().collect();
    out.extend(markers);
    out
}

pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(sdk)
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The instance with this DbiResourceId (Config's resource id for AWS::RDS::DBInstance), whatever
/// it is called now.
pub async fn instance_by_resource_id(rds: &aws_sdk_rds::Client, resource_id: &str) -> Result<Option<DbInstance>> {
    match rds.describe_db_instances().filters(filter("dbi-resource-id", resource_id)).send().await {
        Ok(out) => Ok(out.db_instances().iter().find(|i| i.dbi_resource_id() == Some(resource_id)).cloned()),
        Err(e) => none_if(aws_error("rds:DescribeDBInstances", resource_id, e), "DBInstanceNotFound"),
    }
}

pub async fn instance_by_id(rds: &aws_sdk_rds::Client, identifier: &str) -> Result<Option<DbInstance>> {
    match rds.describe_db_instances().db_instance_identifier(identifier).send().await {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(e) => none_if(aws_error("rds:DescribeDBInstances", identifier, e), "DBInstanceNotFound"),
    }
}

/// The cluster with this DbClusterResourceId (Config's resource id for AWS::RDS::DBCluster).
pub async fn cluster_by_resource_id(rds: &aws_sdk_rds::Client, resource_id: &str) -> Result<Option<DbCluster>> {
    match rds.describe_db_clusters().filters(filter("db-cluster-resource-id", resource_id)).send().await {
        Ok(out) => Ok(out.db_clusters().iter().find(|c| c.db_cluster_resource_id() == Some(resource_id)).cloned()),
        Err(e) => none_if(aws_error("rds:DescribeDBClusters", resource_id, e), "DBClusterNotFoundFault"),
    }
}

pub async fn cluster_by_id(rds: &aws_sdk_rds::Client, identifier: &str) -> Result<Option<DbCluster>> {
    match rds.describe_db_clusters().db_cluster_identifier(identifier).send().await {
        Ok(out) => Ok(out.db_clusters().first().cloned()),
        Err(e) => none_if(aws_error("rds:DescribeDBClusters", identifier, e), "DBClusterNotFoundFault"),
    }
}

pub async fn db_snapshot(rds: &aws_sdk_rds::Client, identifier: &str) -> Result<Option<DbSnapshot>> {
    match rds.describe_db_snapshots().db_snapshot_identifier(identifier).send().await {
        Ok(out) => Ok(out.db_snapshots().first().cloned()),
        Err(e) => none_if(aws_error("rds:DescribeDBSnapshots", identifier, e), "DBSnapshotNotFound"),
    }
}

pub async fn cluster_snapshot(rds: &aws_sdk_rds::Client, identifier: &str) -> Result<Option<DbClusterSnapshot>> {
    match rds.describe_db_cluster_snapshots().db_cluster_snapshot_identifier(identifier).send().await {
        Ok(out) => Ok(out.db_cluster_snapshots().first().cloned()),
        Err(e) => none_if(aws_error("rds:DescribeDBClusterSnapshots", identifier, e), "DBClusterSnapshotNotFoundFault"),
    }
}

fn none_if<T>(err: Error, not_found_code: &str) -> Result<Option<T>> {
    if err.aws_code() == Some(not_found_code) { Ok(None) } else { Err(err) }
}

/// Where a snapshot or copy stands, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Ready,
    Working,
    Broken,
}

/// Snapshot statuses: `available` is done; `creating`/`copying`/`pending` are in flight.
pub fn snapshot_progress(status: Option<&str>) -> Progress {
    match status.unwrap_or("") {
        "available" => Progress::Ready,
        "creating" | "copying" | "pending" | "" => Progress::Working,
        _ => Progress::Broken,
    }
}

/// Instance and cluster statuses that will not become `available` without an operator.
pub fn is_broken_status(status: &str) -> bool {
    status == "failed"
        || status == "deleting"
        || status == "restore-error"
        || status == "storage-full"
        || status.starts_with("incompatible-")
        || status.starts_with("inaccessible-")
}

/// A parameter or option group to name in a restore: only a custom one. The engine's own groups
/// (`default.mysql8.0`, `default:mysql-8-0`; custom names can hold neither `.` nor `:`) are what
/// a restore uses when none is named, and naming them fails where they do not exist yet
/// (`OptionGroupNotFoundFault`) — an instance created without groups could not be encrypted.
pub fn custom_group(name: Option<&str>) -> Option<String> {
    name.filter(|n| !n.is_empty() && !n.starts_with("default.") && !n.starts_with("default:")).map(str::to_string)
}

/// What a fresh snapshot of the source needs from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotReadiness {
    /// `available` or `storage-optimization`: the only states CreateDBSnapshot accepts.
    Ready,
    /// A transient state (backing-up, modifying, rebooting, …) that ends in `available`.
    Wait,
    /// A state that never becomes `available` without the operator: why, in words.
    Refuse(String),
}

/// `kind` is "instance" or "cluster", `call` the API that takes the snapshot.
///
/// CreateDBSnapshot: "The source DB instance must be in the available or storage-optimization
/// state". A stopped database is never started by atrest (starting it costs money and changes
/// what the user chose), so `stopped`/`stopping` is a clear failure, not an endless wait.
pub fn snapshot_readiness(kind: &str, call: &str, id: &str, status: &str) -> SnapshotReadiness {
    match status {
        "available" | "storage-optimization" => SnapshotReadiness::Ready,
        "stopped" | "stopping" => SnapshotReadiness::Refuse(format!(
            "{id} is {status}: RDS only snapshots a running DB {kind} ({call} needs it available or \
             storage-optimization), and atrest never starts or stops your database. Start {id}, wait until it is \
             available, then run this fix again. Nothing was changed"
        )),
        s if is_broken_status(s) || s == "insufficient-capacity" || s == "delete-precheck" => {
            SnapshotReadiness::Refuse(format!("{id} is {status}; RDS cannot snapshot it. Nothing was changed"))
        }
        _ => SnapshotReadiness::Wait,
    }
}

/// The rename cutover needs a running source: a stopped one cannot be modified.
pub fn rename_blocked_by_state(kind: &str, id: &str, status: &str) -> Option<String> {
    matches!(status, "stopped" | "stopping").then(|| {
        format!(
            "{id} is {status}, so it cannot be renamed for the cutover: RDS modifies only a running DB {kind}, and atrest \
             never starts your database. Start {id}, then run this fix again; the encrypted copy is ready and kept"
        )
    })
}

/// Kerberos (AWS Managed Microsoft AD or self-managed AD) membership, as a restore takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainSettings {
    pub domain: Option<String>,
    pub iam_role_name: Option<String>,
    pub fqdn: Option<String>,
    pub ou: Option<String>,
    pub auth_secret_arn: Option<String>,
    pub dns_ips: Vec<String>,
}

/// The source's directory membership. AWS Managed AD is named by `Domain` (+ the role RDS uses to
/// reach the directory); a self-managed AD by FQDN, OU, credentials secret and DNS servers, and
/// RDS refuses `Domain` together with those.
pub fn domain_settings(memberships: &[aws_sdk_rds::types::DomainMembership]) -> Option<DomainSettings> {
    let m = memberships.first()?;
    let owned = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(secret) = owned(m.auth_secret_arn()) {
        return Some(DomainSettings {
            fqdn: owned(m.fqdn()),
            ou: owned(m.ou()),
            auth_secret_arn: Some(secret),
            dns_ips: m.dns_ips().to_vec(),
            ..Default::default()
        });
    }
    let domain = owned(m.domain())?;
    Some(DomainSettings { domain: Some(domain), iam_role_name: owned(m.iam_role_name()), ..Default::default() })
}

/// `a, b and c`.
pub fn list_text(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [head @ .., last] => format!("{} and {last}", head.join(", ")),
    }
}

/// "creating, 40%" for messages.
pub fn status_text(status: Option<&str>, percent: Option<i32>) -> String {
    match (status.unwrap_or("unknown"), percent) {
        (s, Some(p)) if p > 0 && p < 100 => format!("{s}, {p}%"),
        (s, _) => s.to_string(),
    }
}

/// "host:port", or the identifier when RDS has not published an endpoint yet.
pub fn endpoint_text(instance: &DbInstance) -> String {
    match instance.endpoint() {
        Some(e) => format!("{}:{}", e.address().unwrap_or("?"), e.port().map(|p| p.to_string()).unwrap_or_else(|| "?".into())),
        None => format!("(endpoint of {} not published yet)", instance.db_instance_identifier().unwrap_or("?")),
    }
}

/// Engines whose instances and clusters the RDS API lists but which RDS does not restore this
/// way (they have their own services and Config resource types).
pub fn is_non_rds_engine(engine: &str) -> bool {
    engine == "docdb" || engine.starts_with("neptune")
}

/// Instance classes RDS cannot encrypt (previous generations).
pub fn is_unencryptable_class(class: &str) -> bool {
    ["db.m1.", "db.m2.", "db.t1."].iter().any(|p| class.starts_with(p))
}

/// Why a DB instance cannot be encrypted by fix-rds-encrypt-instance: checked once, here, for the
/// rule (from a configuration item) and the fix (from DescribeDBInstances); each words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceBlocker<'a> {
    /// A read replica of this instance or cluster: its encryption follows its source.
    ReadReplica(&'a str),
    /// A member of this DB cluster: the cluster owns the storage.
    ClusterMember(&'a str),
    /// DocumentDB, Neptune or RDS Custom.
    Engine(&'a str),
    /// A previous-generation class RDS cannot encrypt.
    Class(&'a str),
}

pub fn instance_blocker<'a>(
    replica_source: Option<&'a str>,
    cluster: Option<&'a str>,
    engine: &'a str,
    class: &'a str,
) -> Option<InstanceBlocker<'a>> {
    if let Some(primary) = replica_source {
        return Some(InstanceBlocker::ReadReplica(primary));
    }
    if let Some(cluster) = cluster {
        return Some(InstanceBlocker::ClusterMember(cluster));
    }
    if is_non_rds_engine(engine) || engine.starts_with("custom-") {
        return Some(InstanceBlocker::Engine(engine));
    }
    if is_unencryptable_class(class) {
        return Some(InstanceBlocker::Class(class));
    }
    None
}

/// Why a DB cluster cannot be encrypted by fix-rds-encrypt-cluster: checked once, here, for the
/// rule and the fix; each words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterBlocker<'a> {
    /// A replica of this cluster: encrypt the source, then recreate the replica.
    Replica(&'a str),
    /// A member of this global database.
    Global(&'a str),
    /// DocumentDB or Neptune.
    Engine(&'a str),
    /// Aurora Serverless v1 (`engineMode` serverless).
    ServerlessV1,
}

pub fn cluster_blocker<'a>(
    replication_source: Option<&'a str>,
    global_cluster: Option<&'a str>,
    engine: &'a str,
    engine_mode: Option<&str>,
) -> Option<ClusterBlocker<'a>> {
    if let Some(source) = replication_source {
        return Some(ClusterBlocker::Replica(source));
    }
    if let Some(global) = global_cluster {
        return Some(ClusterBlocker::Global(global));
    }
    if is_non_rds_engine(engine) {
        return Some(ClusterBlocker::Engine(engine));
    }
    if engine_mode == Some("serverless") {
        return Some(ClusterBlocker::ServerlessV1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_valid_and_at_most_63_characters() {
        assert_eq!(derived_identifier("orders-db", "-encrypted"), "orders-db-encrypted");
        assert_eq!(derived_identifier("Orders-DB", "-unencrypted"), "orders-db-unencrypted");
        assert_eq!(derived_identifier("rds:orders-2026-11-20-10-00", "-encrypted"), "rds-orders-2026-11-20-10-00-encrypted");
        let long = format!("a{}", "b".repeat(62));
        assert_eq!(long.len(), 63);
        for suffix in ["-encrypted", "-unencrypted", ""] {
            let name = derived_identifier(&long, suffix);
            assert!(is_valid_identifier(&name), "{name}");
            assert!(name.len() <= 63, "{name}");
            assert!(name.ends_with(suffix));
        }
        // Same 63-character prefix, different sources: different names.
        let other = format!("a{}c", "b".repeat(61));
        assert_ne!(derived_identifier(&long, "-encrypted"), derived_identifier(&other, "-encrypted"));
        // A hyphen at the cut never leaves "--" or a trailing hyphen.
        let hyphens = format!("a{}", "-b".repeat(31));
        let name = derived_identifier(&hyphens, "-encrypted");
        assert!(is_valid_identifier(&name), "{name}");
        assert!(is_valid_identifier(&derived_identifier("9lives", "-encrypted")));
    }

    #[test]
    fn a_snapshot_is_taken_only_of_a_running_source_and_a_stopped_one_is_refused() {
        use SnapshotReadiness::*;
        let ready = |status| snapshot_readiness("instance", "CreateDBSnapshot", "db1", status);
        assert_eq!(ready("available"), Ready);
        assert_eq!(ready("storage-optimization"), Ready);
        for transient in ["backing-up", "modifying", "rebooting", "renaming", "starting", "upgrading", "maintenance", "creating"] {
            assert_eq!(ready(transient), Wait, "{transient}");
        }
        for refused in
            ["stopped", "stopping", "failed", "storage-full", "incompatible-parameters", "inaccessible-encryption-credentials", "deleting"]
        {
            assert!(matches!(ready(refused), Refuse(_)), "{refused}");
        }
        let Refuse(reason) = ready("stopped") else { unreachable!() };
        assert!(reason.contains("Start db1") && reason.contains("Nothing was changed"), "{reason}");
        assert!(rename_blocked_by_state("instance", "db1", "stopped").is_some());
        assert!(rename_blocked_by_state("instance", "db1", "available").is_none());
    }

    #[test]
    fn only_custom_groups_are_named_in_a_restore() {
        assert_eq!(custom_group(Some("orders-pg16")), Some("orders-pg16".to_string()));
        for engine_default in ["default.mysql8.0", "default:mysql-8-0", "default.aurora-postgresql16", ""] {
            assert_eq!(custom_group(Some(engine_default)), None, "{engine_default}");
        }
        assert_eq!(custom_group(None), None);
    }

    #[test]
    fn what_cannot_be_remediated_automatically_is_decided_once_in_order() {
        use ClusterBlocker as C;
        use InstanceBlocker as I;
        let instance = |replica, cluster, engine, class| instance_blocker(replica, cluster, engine, class);
        assert_eq!(instance(None, None, "postgres", "db.m5.large"), None);
        assert_eq!(instance(Some("primary"), Some("c1"), "docdb", "db.m1.small"), Some(I::ReadReplica("primary")));
        assert_eq!(instance(None, Some("c1"), "aurora-mysql", "db.r6g.large"), Some(I::ClusterMember("c1")));
        for engine in ["docdb", "neptune", "custom-oracle-ee"] {
            assert_eq!(instance(None, None, engine, "db.m1.small"), Some(I::Engine(engine)));
        }
        for class in ["db.m1.small", "db.m2.xlarge", "db.t1.micro"] {
            assert_eq!(instance(None, None, "mysql", class), Some(I::Class(class)));
        }
        assert_eq!(cluster_blocker(None, None, "aurora-postgresql", Some("provisioned")), None);
        assert_eq!(cluster_blocker(Some("arn:src"), Some("g1"), "neptune", Some("serverless")), Some(C::Replica("arn:src")));
        assert_eq!(cluster_blocker(None, Some("g1"), "neptune", Some("serverless")), Some(C::Global("g1")));
        assert_eq!(cluster_blocker(None, None, "neptune", Some("serverless")), Some(C::Engine("neptune")));
        assert_eq!(cluster_blocker(None, None, "custom-x", None), None, "RDS Custom has no clusters to refuse");
        assert_eq!(cluster_blocker(None, None, "aurora-mysql", Some("serverless")), Some(C::ServerlessV1));
    }

    #[test]
    fn identifier_validation() {
        assert!(is_valid_identifier("orders-db"));
        for bad in ["", "1db", "db-", "db--x", "db_x", &"a".repeat(64)] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn carried_tags_drop_reserved_and_bookkeeping_and_keep_the_limit() {
        let mut source: Vec<Tag> = (0..60).map(|i| tag(&format!("k{i}"), "v")).collect();
        source.insert(0, tag("aws:cloudformation:stack-name", "s"));
        source.insert(0, tag(TAG_REPLACED_BY, "x"));
        let out = carried_tags(&source, vec![tag(TAG_ENCRYPTED_FROM, "db1")]);
        assert_eq!(out.len(), MAX_TAGS);
        assert_eq!(tag_value(&out, TAG_ENCRYPTED_FROM), Some("db1"));
        assert_eq!(tag_value(&out, "k0"), Some("v"));
        assert!(tag_value(&out, "aws:cloudformation:stack-name").is_none());
        assert!(tag_value(&out, TAG_REPLACED_BY).is_none());
    }
}
