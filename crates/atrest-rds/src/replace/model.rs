//! What a replace-by-copy fix observes, reduced to the fields the plan decides on. Built from RDS
//! describe calls by each fix's `observe.rs`, or by hand in the planner's table tests.
//!
//! Everything past the source is read only when the plan asks for it ([`Lookup`]): a field left
//! `None` has not been read yet, `Some(None)` was read and does not exist.

use atrest::error::{Error, Result};

use crate::{derived_identifier, is_valid_identifier};

/// How one kind of database is replaced, and the words its messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// "instance" or "cluster".
    pub noun: &'static str,
    /// "DB instance" or "DB cluster".
    pub db_noun: &'static str,
    /// "an instance" or "a DB cluster": what holds a name the fix wanted.
    pub a_named: &'static str,
    /// The parameter naming the encrypted copy.
    pub target_param: &'static str,
    /// How an invalid target name is explained after "is not a valid <db_noun> identifier".
    pub identifier_rule: &'static str,
    /// "snapshot" or "cluster snapshot".
    pub snapshot_noun: &'static str,
    /// The API that snapshots the source (named when the source cannot be snapshotted).
    pub snapshot_call: &'static str,
    /// An instance snapshot is encrypted by a copy (CopyDBSnapshot with the key) and restored
    /// from that encrypted snapshot, so the target is encrypted from the moment it exists. A
    /// cluster restore takes the key itself: no copy, and its encryption is judged once it is
    /// available.
    pub copies_snapshot: bool,
    /// What the cutover calls the ready target when it refuses ("copy", "cluster").
    pub copy_noun: &'static str,
    /// Put before the identifiers of a rename change ("DB cluster ").
    pub rename_prefix: &'static str,
    /// Added to the change that renames the source (RDS reboots an instance it renames).
    pub source_rename_note: &'static str,
    /// The cutover's "the name was taken" refusal ends by pointing clients at the target.
    pub point_clients_when_name_taken: bool,
    /// The dry run of the last step says the target "exists" or "is ready".
    pub ready_word: &'static str,
    /// Added to "Started: <change>." while the target is being built.
    pub build_started_note: &'static str,
}

/// A DB instance: its snapshot is encrypted by a copy, and restored.
pub const INSTANCE: Kind = Kind {
    noun: "instance",
    db_noun: "DB instance",
    a_named: "an instance",
    target_param: "TargetInstanceIdentifier",
    identifier_rule: " (1-63 letters, digits, hyphens; starts with a letter)",
    snapshot_noun: "snapshot",
    snapshot_call: "CreateDBSnapshot",
    copies_snapshot: true,
    copy_noun: "copy",
    rename_prefix: "",
    source_rename_note: " (RDS reboots it for the rename)",
    point_clients_when_name_taken: true,
    ready_word: "exists",
    build_started_note: " The next step follows when AWS is done.",
};

/// A DB cluster: restored with the key from its snapshot, members recreated.
pub const CLUSTER: Kind = Kind {
    noun: "cluster",
    db_noun: "DB cluster",
    a_named: "a DB cluster",
    target_param: "TargetClusterIdentifier",
    identifier_rule: "",
    snapshot_noun: "cluster snapshot",
    snapshot_call: "CreateDBClusterSnapshot",
    copies_snapshot: false,
    copy_noun: "cluster",
    rename_prefix: "DB cluster ",
    source_rename_note: "",
    point_clients_when_name_taken: false,
    ready_word: "is ready",
    build_started_note: "",
};

/// Every name the fix uses for one source, derived so that any run finds the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The source's name before any cutover.
    pub original: String,
    pub target: String,
    /// The source's name after a rename cutover.
    pub renamed_source: String,
    /// The manual snapshot of the source (the intermediate one, deleted at the end).
    pub source_snapshot: String,
    /// Its encrypted copy, kept: only for a kind that [`Kind::copies_snapshot`].
    pub encrypted_snapshot: Option<String>,
}

impl Names {
    /// The source's name before a cutover is its original-identifier tag (a resumed run after
    /// the source was renamed), else its name. `target`: the operator's name for the copy.
    pub fn new(kind: &Kind, source: &Source, resource_id: &str, target: Option<&str>) -> Result<Names> {
        let original = source.original.clone().unwrap_or_else(|| source.id.clone());
        let renamed_source = derived_identifier(&original, "-unencrypted");
        let target = match target.map(str::to_ascii_lowercase) {
            Some(t) if !is_valid_identifier(&t) => {
                return Err(Error::invalid_parameter(
                    kind.target_param,
                    format!("{t:?} is not a valid {} identifier{}", kind.db_noun, kind.identifier_rule),
                ));
            }
            Some(t) if t == original || t == renamed_source => {
                return Err(Error::invalid_parameter(kind.target_param, format!("{t} is the source's own name")));
            }
            Some(t) => t,
            None => derived_identifier(&original, "-encrypted"),
        };
        let base = format!("atrest-{}", resource_id.to_ascii_lowercase());
        Ok(Names {
            original,
            target,
            renamed_source,
            source_snapshot: derived_identifier(&base, "-source"),
            encrypted_snapshot: kind.copies_snapshot.then(|| derived_identifier(&base, "-encrypted")),
        })
    }

    /// The encrypted twin of a cluster member instance.
    pub fn member(&self, member_id: &str) -> String {
        derived_identifier(member_id, "-encrypted")
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub key_arn: String,
    /// `Cutover=rename`.
    pub cutover_asked: bool,
    pub writes_frozen: bool,
}

impl Settings {
    /// `Cutover` and `WritesFrozen` as the request gives them.
    pub fn of(req: &atrest::FixRequest, key_arn: String) -> Settings {
        Settings { key_arn, cutover_asked: req.params.text("Cutover") == Some("rename"), writes_frozen: req.params.bool("WritesFrozen") }
    }

    pub fn rename(&self) -> bool {
        self.cutover_asked && self.writes_frozen
    }
}

/// The source instance or cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub id: String,
    pub status: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// `atrest:original-identifier`: its name before a cutover renamed it.
    pub original: Option<String>,
    /// `atrest:replaced-by`, once set.
    pub replaced_by: Option<String>,
    /// Why a rename cutover would leave something behind on it (its replicas), in words.
    pub rename_refusal: Option<String>,
    /// Aurora: its members are recreated in the encrypted cluster.
    pub has_members: bool,
}

/// An instance or cluster found where the target could be (its name, or the source's original
/// name after a cutover).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub status: String,
    pub encrypted: bool,
    /// Tagged with this source's resource id: made from it by atrest.
    pub ours: bool,
    /// `atrest:settings-applied` is on it.
    pub settings_applied: bool,
    /// What the settle step must set, in words (empty: nothing).
    pub settle_changes: Vec<String>,
    /// The source's IAM roles it lacks: (role ARN, feature name).
    pub missing_roles: Vec<(String, Option<String>)>,
    /// The part of `settle_changes` that one modify call makes.
    pub needs_modify: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub status: Option<String>,
    pub percent: Option<i32>,
    pub ours: bool,
    /// When it was taken, for messages.
    pub taken: String,
}

/// A member instance of the source cluster and its encrypted twin, if one exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub class: Option<String>,
    pub twin: Option<Twin>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Twin {
    pub status: String,
    /// Tagged with the member's resource id.
    pub ours: bool,
}

/// A read the plan needs before it can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Whatever is named like the target.
    TargetByName,
    /// Whatever is named like the source was before a cutover.
    AtOriginal,
    /// Whether the source's KMS key is the one asked for.
    KeyMatches,
    /// The encrypted copy of the source snapshot.
    EncryptedSnapshot,
    /// The manual snapshot of the source.
    SourceSnapshot,
    /// The source cluster's members (writer first) and their twins.
    Members,
}

/// Everything one turn decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub kind: Kind,
    pub names: Names,
    pub settings: Settings,
    pub source: Source,
    pub by_name: Option<Option<Target>>,
    pub at_original: Option<Option<Target>>,
    pub key_matches: Option<bool>,
    pub encrypted_snapshot: Option<Option<Snapshot>>,
    pub source_snapshot: Option<Option<Snapshot>>,
    pub members: Option<Vec<Member>>,
}

impl Observed {
    /// Only the source read so far.
    pub fn new(kind: Kind, names: Names, settings: Settings, source: Source) -> Observed {
        Observed {
            kind,
            names,
            settings,
            source,
            by_name: None,
            at_original: None,
            key_matches: None,
            encrypted_snapshot: None,
            source_snapshot: None,
            members: None,
        }
    }

    /// The target, once found: under its own name, or under the source's original one after the
    /// cutover. `None` also while it has not been looked for.
    pub fn target(&self) -> Option<&Target> {
        match (&self.by_name, &self.at_original) {
            (Some(Some(t)), _) if t.ours => Some(t),
            (Some(None), Some(Some(t))) if t.ours && self.source.id != self.names.original => Some(t),
            _ => None,
        }
    }
}
