//! The decision: given what AWS shows now, the next thing to do. Pure, so every branch is a
//! table test; the worker is observe → plan → act.
//!
//! Order of work, one step per invocation:
//! 1. build the target: manual snapshot of the source → (instances) encrypted copy of it →
//!    restore (clusters: restore with the key);
//! 2. once the target is available: settle what a restore cannot set (roles, one modify), then
//!    mark it `atrest:settings-applied` so a setting RDS reports differently never loops;
//! 3. Aurora: recreate every member, the writer first, the readers once it is available;
//! 4. `Cutover=rename` with `WritesFrozen=true`: the source takes `<name>-unencrypted` (its
//!    original name kept in a tag first), then the target takes the original name;
//! 5. finish: delete the intermediate snapshot (only it), tag the source `atrest:replaced-by`.

use crate::replace::model::{Lookup, Member, Observed, Snapshot, Target};
use crate::{Progress, SnapshotReadiness, is_broken_status, rename_blocked_by_state, snapshot_progress, snapshot_readiness, status_text};

/// One AWS write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Manual snapshot of the source, with its tags and atrest's markers.
    TakeSnapshot,
    /// The source snapshot copied to the encrypted one with the key (instances).
    CopySnapshot,
    /// The target restored from the last snapshot with every setting of the source.
    Restore,
    AddRole {
        arn: String,
        feature: Option<String>,
    },
    /// What a restore cannot set, in one modify call of the target.
    ModifyTarget,
    MarkSettingsApplied,
    /// The encrypted twin of the source member at this index of [`Observed::members`].
    CreateMember {
        member: usize,
        twin: String,
    },
    /// `atrest:original-identifier` on the source, before it is renamed.
    MarkOriginalName,
    Rename {
        from: String,
        to: String,
    },
    DeleteSourceSnapshot,
    MarkReplaced {
        by: String,
    },
}

/// What a step is part of, for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Build,
    Settle,
    Members,
    Cutover,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Read this, then plan again.
    Look(Lookup),
    /// The source already is as asked; nothing to do.
    AlreadyDone(String),
    /// The run ends failed, nothing more to say.
    Fail(String),
    /// The run cannot go on without the operator (an error, as AWS refusals are).
    Refuse(String),
    Wait(String),
    /// A change, in one or more writes; AWS works on it until the next invocation.
    Start {
        phase: Phase,
        change: String,
        actions: Vec<Action>,
    },
    /// The last writes; the fix is done.
    Finish {
        changes: Vec<String>,
        actions: Vec<Action>,
    },
}

/// A turn: writes that change nothing the operator sees (made first, skipped in a dry run),
/// then what the turn is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub first: Vec<Action>,
    pub next: Next,
}

impl From<Next> for Turn {
    fn from(next: Next) -> Turn {
        Turn { first: Vec::new(), next }
    }
}

pub fn plan(o: &Observed) -> Turn {
    let names = &o.names;
    let Some(by_name) = &o.by_name else { return Next::Look(Lookup::TargetByName).into() };
    if let Some(t) = by_name
        && !t.ours
    {
        return Next::Refuse(format!(
            "{} named {} already exists and was not made from {} by atrest; pass another {}. Nothing was changed",
            o.kind.a_named, names.target, o.source.id, o.kind.target_param
        ))
        .into();
    }
    if by_name.is_none() && o.source.id != names.original && o.at_original.is_none() {
        return Next::Look(Lookup::AtOriginal).into();
    }
    match o.target() {
        None => build(o).into(),
        Some(target) => replace(o, target),
    }
}

/// Step 1: snapshot, encrypted copy, restore.
fn build(o: &Observed) -> Next {
    let (kind, names, source) = (&o.kind, &o.names, &o.source);
    if source.encrypted {
        match o.key_matches {
            None => return Next::Look(Lookup::KeyMatches),
            Some(true) => {
                return Next::AlreadyDone(format!(
                    "{} {} is already encrypted with KMS key {}; nothing was changed.",
                    kind.db_noun, source.id, o.settings.key_arn
                ));
            }
            Some(false) => {}
        }
    }
    // Refused before any copy is made: building one for a cutover that cannot happen helps no one.
    if o.settings.rename()
        && source.id == names.original
        && let Some(refusal) = &source.rename_refusal
    {
        return Next::Fail(format!("{}. Nothing was changed.", capitalised(refusal)));
    }
    let restore_from = names.encrypted_snapshot.as_deref().unwrap_or(&names.source_snapshot);
    let restore = || Next::Start {
        phase: Phase::Build,
        change: format!(
            "restore encrypted {} {} from snapshot {restore_from} with {}{}'s settings",
            kind.db_noun,
            names.target,
            if kind.copies_snapshot { String::new() } else { format!("KMS key {} and ", o.settings.key_arn) },
            source.id
        ),
        actions: vec![Action::Restore],
    };
    let mut encrypted = None;
    if let Some(encrypted_id) = &names.encrypted_snapshot {
        let Some(found) = &o.encrypted_snapshot else { return Next::Look(Lookup::EncryptedSnapshot) };
        encrypted = found.as_ref().map(|s| (encrypted_id, s));
    }
    let Some(intermediate) = &o.source_snapshot else { return Next::Look(Lookup::SourceSnapshot) };
    if let Some((encrypted_id, snap)) = encrypted {
        if let Some(refusal) = not_ours(o, snap) {
            return refusal;
        }
        if intermediate.is_none() {
            // A finished earlier run whose target was deleted since: restoring this old snapshot
            // would silently drop every write made after it.
            return Next::Refuse(format!(
                "encrypted snapshot {encrypted_id} from an earlier run (taken {}) exists, but its {} {} does not. Restoring it \
                 would lose every write made since. Delete the snapshot to start again from fresh data, or restore it yourself. \
                 Nothing was changed",
                snap.taken, kind.noun, names.target
            ));
        }
        return match snapshot_progress(snap.status.as_deref()) {
            Progress::Ready => restore(),
            Progress::Working => Next::Wait(format!(
                "Copying {} to encrypted snapshot {encrypted_id} ({}).",
                names.source_snapshot,
                status_text(snap.status.as_deref(), snap.percent)
            )),
            Progress::Broken => broken(o, snap),
        };
    }
    if let Some(snap) = intermediate {
        if let Some(refusal) = not_ours(o, snap) {
            return refusal;
        }
        return match snapshot_progress(snap.status.as_deref()) {
            Progress::Ready => match &names.encrypted_snapshot {
                Some(encrypted_id) => Next::Start {
                    phase: Phase::Build,
                    change: format!(
                        "copy snapshot {} to encrypted snapshot {encrypted_id} with KMS key {}",
                        names.source_snapshot, o.settings.key_arn
                    ),
                    actions: vec![Action::CopySnapshot],
                },
                None => restore(),
            },
            Progress::Working => Next::Wait(format!(
                "Taking {} {} of {} ({}).",
                kind.snapshot_noun,
                names.source_snapshot,
                source.id,
                status_text(snap.status.as_deref(), snap.percent)
            )),
            Progress::Broken => broken(o, snap),
        };
    }
    match snapshot_readiness(kind.noun, kind.snapshot_call, &source.id, &source.status) {
        SnapshotReadiness::Ready => Next::Start {
            phase: Phase::Build,
            change: format!("take manual {} {} of {}", kind.snapshot_noun, names.source_snapshot, source.id),
            actions: vec![Action::TakeSnapshot],
        },
        SnapshotReadiness::Wait => {
            Next::Wait(format!("Waiting for {} to be available before its snapshot (now {}).", source.id, source.status))
        }
        SnapshotReadiness::Refuse(reason) => Next::Refuse(reason),
    }
}

fn not_ours(o: &Observed, snap: &Snapshot) -> Option<Next> {
    (!snap.ours).then(|| {
        Next::Refuse(format!(
            "{} {} exists but was not made by atrest from {}; rename or delete it. Nothing was changed",
            o.kind.snapshot_noun, snap.id, o.source.id
        ))
    })
}

fn broken(o: &Observed, snap: &Snapshot) -> Next {
    Next::Refuse(format!(
        "{} {} is {}; delete it and run the fix again. Nothing else was changed",
        o.kind.snapshot_noun,
        snap.id,
        snap.status.as_deref().unwrap_or("in an unknown state")
    ))
}

/// Steps 2–5, once the target exists.
fn replace(o: &Observed, target: &Target) -> Turn {
    let kind = &o.kind;
    let unencrypted = || {
        let from = match &o.names.encrypted_snapshot {
            Some(snapshot) => format!("from {snapshot}"),
            None => format!("with KMS key {}", o.settings.key_arn),
        };
        Next::Fail(format!("{} was restored {from} but reports unencrypted storage; it was left as it is for inspection.", target.id))
    };
    if kind.copies_snapshot && !target.encrypted {
        return unencrypted().into();
    }
    if is_broken_status(&target.status) {
        return Next::Fail(format!("Encrypted {} {} is {}; it was left for inspection.", kind.noun, target.id, target.status)).into();
    }
    if target.status != "available" {
        return Next::Wait(format!(
            "Waiting for encrypted {} {} to be available (now {}).",
            kind.noun,
            target.id,
            status_text(Some(&target.status), None)
        ))
        .into();
    }
    if !target.encrypted {
        return unencrypted().into();
    }
    let mut first = Vec::new();
    if !target.settings_applied {
        if !target.settle_changes.is_empty() {
            // Roles first: adding one needs the target available, and the modify leaves it
            // `modifying`.
            let mut actions: Vec<Action> =
                target.missing_roles.iter().map(|(arn, feature)| Action::AddRole { arn: arn.clone(), feature: feature.clone() }).collect();
            if target.needs_modify {
                actions.push(Action::ModifyTarget);
            }
            actions.push(Action::MarkSettingsApplied);
            let change = format!("set on {}: {}", target.id, target.settle_changes.join(", "));
            return Next::Start { phase: Phase::Settle, change, actions }.into();
        }
        first.push(Action::MarkSettingsApplied);
    }
    let next = (|| {
        if o.source.has_members {
            let Some(members) = &o.members else { return Next::Look(Lookup::Members) };
            if let Some(next) = members_step(o, members) {
                return next;
            }
        }
        if o.settings.rename()
            && let Some(next) = cutover(o, target)
        {
            return next;
        }
        finish(o, target)
    })();
    Turn { first, next }
}

/// Step 3: the writer first; the readers once the writer is available. Aurora makes the first
/// instance of a cluster its writer.
fn members_step(o: &Observed, members: &[Member]) -> Option<Next> {
    let mut created = Vec::new();
    let mut actions = Vec::new();
    let mut waiting = Vec::new();
    let mut writer_ready = true;
    for (index, member) in members.iter().enumerate() {
        let twin_id = o.names.member(&member.id);
        match &member.twin {
            Some(twin) => {
                if !twin.ours {
                    return Some(Next::Refuse(format!(
                        "an instance named {twin_id} already exists and is not atrest's copy of {}. Nothing more was changed",
                        member.id
                    )));
                }
                if is_broken_status(&twin.status) {
                    return Some(Next::Refuse(format!("encrypted member {twin_id} is {}; it was left for inspection", twin.status)));
                }
                if twin.status != "available" {
                    waiting.push(format!("{twin_id} ({})", twin.status));
                    writer_ready &= index > 0;
                }
            }
            None if index > 0 && !writer_ready => {}
            None => {
                created.push(format!("create member {twin_id} ({}) like {}", member.class.as_deref().unwrap_or("?"), member.id));
                actions.push(Action::CreateMember { member: index, twin: twin_id });
                writer_ready &= index > 0;
            }
        }
    }
    if !created.is_empty() {
        return Some(Next::Start { phase: Phase::Members, change: created.join("; "), actions });
    }
    (!waiting.is_empty()).then(|| Next::Wait(format!("Waiting for encrypted members: {}.", waiting.join(", "))))
}

/// Step 4: the source becomes `<name>-unencrypted`, then the target takes `<name>`.
fn cutover(o: &Observed, target: &Target) -> Option<Next> {
    let (kind, names, source) = (&o.kind, &o.names, &o.source);
    if target.id == names.original {
        return None;
    }
    let rename = |from: &str, to: &str, note: &str| format!("rename {}{from} to {to}{note}", kind.rename_prefix);
    if source.id == names.original {
        if let Some(refusal) = &source.rename_refusal {
            return Some(Next::Refuse(format!("{refusal}; the encrypted {} {} is ready and kept", kind.copy_noun, target.id)));
        }
        if let Some(reason) = rename_blocked_by_state(kind.noun, &source.id, &source.status) {
            return Some(Next::Refuse(reason));
        }
        if source.status != "available" {
            return Some(Next::Wait(format!("Waiting for {} to be available before renaming it (now {}).", source.id, source.status)));
        }
        return Some(Next::Start {
            phase: Phase::Cutover,
            change: rename(&names.original, &names.renamed_source, kind.source_rename_note),
            // The original name is remembered first: a resumed run finds the source by its
            // resource id whatever it is called, and needs to know what to give the target.
            actions: vec![Action::MarkOriginalName, Action::Rename { from: source.id.clone(), to: names.renamed_source.clone() }],
        });
    }
    if source.status == "renaming" {
        return Some(Next::Wait(format!("Waiting for {} to finish renaming to {}.", names.original, source.id)));
    }
    let Some(at_original) = &o.at_original else { return Some(Next::Look(Lookup::AtOriginal)) };
    if at_original.is_some() {
        return Some(Next::Refuse(format!(
            "the name {} was taken by another {} after the source was renamed {}; the encrypted {} keeps the name {}{}",
            names.original,
            kind.noun,
            source.id,
            kind.noun,
            target.id,
            if kind.point_clients_when_name_taken { format!(". Point clients at {}", target.id) } else { String::new() }
        )));
    }
    Some(Next::Start {
        phase: Phase::Cutover,
        change: rename(&target.id, &names.original, ""),
        actions: vec![Action::Rename { from: target.id.clone(), to: names.original.clone() }],
    })
}

/// Step 5: delete the intermediate snapshot (only it), mark the source.
fn finish(o: &Observed, target: &Target) -> Next {
    let Some(intermediate) = &o.source_snapshot else { return Next::Look(Lookup::SourceSnapshot) };
    let mut changes = Vec::new();
    let mut actions = Vec::new();
    // Deleted only when it is the intermediate copy this fix made of this source.
    if let Some(snap) = intermediate
        && snap.ours
    {
        changes.push(format!("delete intermediate {} {}", o.kind.snapshot_noun, snap.id));
        actions.push(Action::DeleteSourceSnapshot);
    }
    if o.source.replaced_by.as_deref() != Some(target.id.as_str()) {
        changes.push(format!("tag {} {}={}", o.source.id, crate::TAG_REPLACED_BY, target.id));
        actions.push(Action::MarkReplaced { by: target.id.clone() });
    }
    Next::Finish { changes, actions }
}

pub fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// " Not carried over, to do by hand: …." or nothing.
pub fn not_carried_text(missing: &[String]) -> String {
    if missing.is_empty() { String::new() } else { format!(" Not carried over, to do by hand: {}.", missing.join("; ")) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::replace::model::{CLUSTER, INSTANCE, Kind, Names, Settings, Source, Twin};

    /// An unencrypted source `orders`, nothing else read yet.
    pub(crate) fn observed(kind: Kind) -> Observed {
        let source = Source { id: "orders".into(), status: "available".into(), ..Default::default() };
        let names = Names::new(&kind, &source, "db-ABC", None).unwrap();
        Observed::new(kind, names, Settings { key_arn: "arn:key".into(), ..Default::default() }, source)
    }

    fn snap(id: &str, status: &str) -> Option<Option<Snapshot>> {
        Some(Some(Snapshot {
            id: id.into(),
            status: Some(status.into()),
            ours: true,
            taken: "2026-11-20T10:00:00Z".into(),
            ..Default::default()
        }))
    }

    fn target(id: &str, status: &str) -> Option<Option<Target>> {
        Some(Some(Target {
            id: id.into(),
            status: status.into(),
            encrypted: true,
            ours: true,
            settings_applied: true,
            ..Default::default()
        }))
    }

    /// Nothing built yet: no target, no snapshot.
    fn fresh(kind: Kind) -> Observed {
        let mut o = observed(kind);
        o.by_name = Some(None);
        o.encrypted_snapshot = kind.copies_snapshot.then_some(None);
        o.source_snapshot = Some(None);
        o
    }

    /// The target `orders-encrypted` available and settled.
    fn built(kind: Kind) -> Observed {
        let mut o = observed(kind);
        o.by_name = target("orders-encrypted", "available");
        o
    }

    fn with(mut o: Observed, change: impl FnOnce(&mut Observed)) -> Observed {
        change(&mut o);
        o
    }

    /// A turn in a few words: `[first] next`.
    fn summary(turn: &Turn) -> String {
        let first = if turn.first.is_empty() { String::new() } else { format!("first {:?} then ", turn.first) };
        let next = match &turn.next {
            Next::Look(what) => format!("look {what:?}"),
            Next::AlreadyDone(_) => "done".into(),
            Next::Fail(_) => "fail".into(),
            Next::Refuse(_) => "refuse".into(),
            Next::Wait(_) => "wait".into(),
            Next::Start { phase, actions, .. } => format!("{phase:?} {actions:?}"),
            Next::Finish { actions, .. } => format!("finish {actions:?}"),
        };
        format!("{first}{next}")
    }

    fn check(rows: Vec<(&str, Observed, &str)>) {
        for (name, o, expected) in rows {
            let turn = plan(&o);
            assert_eq!(summary(&turn), expected, "{name}: {turn:?}");
        }
    }

    #[test]
    fn an_instance_is_built_snapshot_copy_restore_and_resumes_from_any_point() {
        let i = || fresh(INSTANCE);
        check(vec![
            ("nothing read", observed(INSTANCE), "look TargetByName"),
            ("no target: the encrypted copy first", with(i(), |o| o.encrypted_snapshot = None), "look EncryptedSnapshot"),
            ("then the intermediate", with(i(), |o| o.source_snapshot = None), "look SourceSnapshot"),
            ("fresh", i(), "Build [TakeSnapshot]"),
            ("source busy", with(i(), |o| o.source.status = "backing-up".into()), "wait"),
            ("source stopped", with(i(), |o| o.source.status = "stopped".into()), "refuse"),
            ("source storage-full", with(i(), |o| o.source.status = "storage-full".into()), "refuse"),
            ("snapshot being taken", with(i(), |o| o.source_snapshot = snap("s", "creating")), "wait"),
            ("snapshot taken", with(i(), |o| o.source_snapshot = snap("s", "available")), "Build [CopySnapshot]"),
            ("snapshot failed", with(i(), |o| o.source_snapshot = snap("s", "failed")), "refuse"),
            (
                "a snapshot of that name not ours",
                with(i(), |o| {
                    o.source_snapshot = snap("s", "available");
                    o.source_snapshot.as_mut().unwrap().as_mut().unwrap().ours = false;
                }),
                "refuse",
            ),
            (
                "copy in flight",
                with(i(), |o| {
                    o.source_snapshot = snap("s", "available");
                    o.encrypted_snapshot = snap("e", "copying");
                }),
                "wait",
            ),
            (
                "copy done",
                with(i(), |o| {
                    o.source_snapshot = snap("s", "available");
                    o.encrypted_snapshot = snap("e", "available");
                }),
                "Build [Restore]",
            ),
            (
                "copy failed",
                with(i(), |o| {
                    o.source_snapshot = snap("s", "available");
                    o.encrypted_snapshot = snap("e", "incompatible-restore");
                }),
                "refuse",
            ),
            // A finished earlier run whose target was deleted: its snapshot is old data.
            ("only an old encrypted snapshot", with(i(), |o| o.encrypted_snapshot = snap("e", "available")), "refuse"),
            ("restoring", with(built(INSTANCE), |o| o.by_name = target("orders-encrypted", "creating")), "wait"),
        ]);
    }

    #[test]
    fn a_cluster_is_restored_with_the_key_from_its_one_snapshot() {
        let c = || fresh(CLUSTER);
        check(vec![
            ("no target: its snapshot", with(c(), |o| o.source_snapshot = None), "look SourceSnapshot"),
            ("fresh", c(), "Build [TakeSnapshot]"),
            ("snapshot being taken", with(c(), |o| o.source_snapshot = snap("s", "creating")), "wait"),
            ("snapshot taken", with(c(), |o| o.source_snapshot = snap("s", "available")), "Build [Restore]"),
            ("snapshot failed", with(c(), |o| o.source_snapshot = snap("s", "failed")), "refuse"),
            ("source stopped", with(c(), |o| o.source.status = "stopped".into()), "refuse"),
        ]);
        let Next::Start { change, .. } = plan(&with(c(), |o| o.source_snapshot = snap("s", "available"))).next else { panic!() };
        assert_eq!(
            change,
            "restore encrypted DB cluster orders-encrypted from snapshot atrest-db-abc-source with KMS key arn:key and orders's settings"
        );
    }

    #[test]
    fn the_target_is_found_under_its_name_or_the_sources_after_a_cutover_and_never_someone_elses() {
        let renamed = |o: &mut Observed| {
            o.source.id = o.names.renamed_source.clone();
        };
        check(vec![
            (
                "someone else's under the target's name",
                with(built(INSTANCE), |o| o.by_name.as_mut().unwrap().as_mut().unwrap().ours = false),
                "refuse",
            ),
            (
                "source renamed: look under its old name",
                with(observed(INSTANCE), |o| {
                    renamed(o);
                    o.by_name = Some(None);
                }),
                "look AtOriginal",
            ),
            (
                "the target took the old name",
                with(observed(CLUSTER), |o| {
                    renamed(o);
                    o.by_name = Some(None);
                    o.at_original = target("orders", "available");
                }),
                "look SourceSnapshot",
            ),
            (
                "someone else's under the old name: build again",
                with(fresh(CLUSTER), |o| {
                    renamed(o);
                    o.at_original = target("orders", "available");
                    o.at_original.as_mut().unwrap().as_mut().unwrap().ours = false;
                }),
                "Build [TakeSnapshot]",
            ),
        ]);
    }

    #[test]
    fn an_encrypted_source_with_the_key_asked_for_is_left_alone() {
        let encrypted = || with(fresh(INSTANCE), |o| o.source.encrypted = true);
        check(vec![
            ("key unknown", with(encrypted(), |o| o.key_matches = None), "look KeyMatches"),
            ("same key", with(encrypted(), |o| o.key_matches = Some(true)), "done"),
            ("another key: re-encrypted", with(encrypted(), |o| o.key_matches = Some(false)), "Build [TakeSnapshot]"),
            // The key is asked of KMS only for an encrypted source.
            ("unencrypted", fresh(CLUSTER), "Build [TakeSnapshot]"),
        ]);
    }

    #[test]
    fn a_cutover_that_cannot_happen_is_refused_before_any_copy_is_made() {
        let replicas = |o: &mut Observed| o.source.rename_refusal = Some("the rename cutover was refused: orders has read replicas".into());
        let rename = |o: &mut Observed| {
            o.settings.cutover_asked = true;
            o.settings.writes_frozen = true;
        };
        check(vec![
            (
                "asked, frozen",
                with(fresh(INSTANCE), |o| {
                    replicas(o);
                    rename(o);
                }),
                "fail",
            ),
            (
                "asked, not frozen: no cutover, so no refusal",
                with(fresh(INSTANCE), |o| {
                    replicas(o);
                    o.settings.cutover_asked = true;
                }),
                "Build [TakeSnapshot]",
            ),
            (
                "once built, refused at the cutover",
                with(built(CLUSTER), |o| {
                    replicas(o);
                    rename(o);
                }),
                "refuse",
            ),
        ]);
        let Next::Fail(message) = plan(&with(fresh(INSTANCE), |o| {
            replicas(o);
            rename(o);
        }))
        .next
        else {
            panic!()
        };
        assert_eq!(message, "The rename cutover was refused: orders has read replicas. Nothing was changed.");
    }

    #[test]
    fn the_target_is_judged_before_anything_is_built_on_it() {
        let state = |kind, status: &str, encrypted: bool| {
            with(built(kind), |o| {
                o.by_name = target("orders-encrypted", status);
                o.by_name.as_mut().unwrap().as_mut().unwrap().encrypted = encrypted;
            })
        };
        check(vec![
            ("instance: restored from an encrypted snapshot, unencrypted at once", state(INSTANCE, "creating", false), "fail"),
            ("cluster: encrypted by the restore, judged once available", state(CLUSTER, "creating", false), "wait"),
            ("cluster available unencrypted", state(CLUSTER, "available", false), "fail"),
            ("broken", state(INSTANCE, "inaccessible-encryption-credentials", true), "fail"),
            ("modifying", state(CLUSTER, "modifying", true), "wait"),
        ]);
    }

    #[test]
    fn what_a_restore_cannot_set_is_set_once_then_marked() {
        let unsettled = |changes: Vec<&str>, roles: usize, modify: bool| {
            with(built(INSTANCE), |o| {
                let t = o.by_name.as_mut().unwrap().as_mut().unwrap();
                t.settings_applied = false;
                t.settle_changes = changes.into_iter().map(str::to_string).collect();
                t.missing_roles = (0..roles).map(|n| (format!("arn:role/{n}"), Some("s3Import".to_string()))).collect();
                t.needs_modify = modify;
            })
        };
        let role = |n: usize| Action::AddRole { arn: format!("arn:role/{n}"), feature: Some("s3Import".into()) };
        check(vec![
            (
                "roles and a modify",
                unsettled(vec!["Performance Insights on", "IAM role"], 1, true),
                &format!("Settle [{:?}, ModifyTarget, MarkSettingsApplied]", role(0)),
            ),
            ("modify only", unsettled(vec!["maintenance window"], 0, true), "Settle [ModifyTarget, MarkSettingsApplied]"),
            // Nothing to set: marked on the way, the turn goes on.
            ("nothing to set", unsettled(vec![], 0, false), "first [MarkSettingsApplied] then look SourceSnapshot"),
            ("marked", built(INSTANCE), "look SourceSnapshot"),
        ]);
        let Next::Start { change, .. } = plan(&unsettled(vec!["Performance Insights on", "maintenance window x"], 0, true)).next else {
            panic!()
        };
        assert_eq!(change, "set on orders-encrypted: Performance Insights on, maintenance window x");
    }

    fn member(id: &str, twin: Option<&str>) -> Member {
        Member { id: id.into(), class: Some("db.r6g.large".into()), twin: twin.map(|status| Twin { status: status.into(), ours: true }) }
    }

    #[test]
    fn aurora_members_are_recreated_writer_first() {
        let aurora = |members: Option<Vec<Member>>| {
            with(built(CLUSTER), |o| {
                o.source.has_members = true;
                o.members = members;
            })
        };
        let create = |index: usize, id: &str| Action::CreateMember { member: index, twin: format!("{id}-encrypted") };
        check(vec![
            ("members unread", aurora(None), "look Members"),
            (
                "none yet: the writer alone",
                aurora(Some(vec![member("w", None), member("r", None)])),
                &format!("Members [{:?}]", create(0, "w")),
            ),
            ("writer creating", aurora(Some(vec![member("w", Some("creating")), member("r", None)])), "wait"),
            (
                "writer ready: the readers",
                aurora(Some(vec![member("w", Some("available")), member("r1", None), member("r2", None)])),
                &format!("Members [{:?}, {:?}]", create(1, "r1"), create(2, "r2")),
            ),
            ("a reader creating", aurora(Some(vec![member("w", Some("available")), member("r", Some("creating"))])), "wait"),
            ("a twin failed", aurora(Some(vec![member("w", Some("available")), member("r", Some("failed"))])), "refuse"),
            ("all there", aurora(Some(vec![member("w", Some("available")), member("r", Some("available"))])), "look SourceSnapshot"),
            ("no members", aurora(Some(vec![])), "look SourceSnapshot"),
        ]);
        let mut foreign = member("r", Some("available"));
        foreign.twin.as_mut().unwrap().ours = false;
        let Next::Refuse(reason) = plan(&aurora(Some(vec![member("w", Some("available")), foreign]))).next else { panic!() };
        assert!(reason.contains("an instance named r-encrypted already exists and is not atrest's copy of r"), "{reason}");
    }

    #[test]
    fn the_rename_cutover_moves_the_source_aside_then_gives_its_name_to_the_target() {
        let cutover = |o: &mut Observed| {
            o.settings.cutover_asked = true;
            o.settings.writes_frozen = true;
        };
        let ready = || with(built(INSTANCE), cutover);
        let source_renamed = |status: &str| {
            let status = status.to_string();
            with(ready(), move |o| {
                o.source.id = o.names.renamed_source.clone();
                o.source.status = status;
            })
        };
        let rename_source = Action::Rename { from: "orders".into(), to: "orders-unencrypted".into() };
        let rename_target = Action::Rename { from: "orders-encrypted".into(), to: "orders".into() };
        check(vec![
            ("not asked", built(INSTANCE), "look SourceSnapshot"),
            ("asked without WritesFrozen", with(built(INSTANCE), |o| o.settings.cutover_asked = true), "look SourceSnapshot"),
            ("source first, its name remembered", ready(), &format!("Cutover [MarkOriginalName, {rename_source:?}]")),
            ("source busy", with(ready(), |o| o.source.status = "backing-up".into()), "wait"),
            ("source stopped", with(ready(), |o| o.source.status = "stopped".into()), "refuse"),
            ("source renaming", source_renamed("renaming"), "wait"),
            ("source renamed: is its old name free?", source_renamed("available"), "look AtOriginal"),
            (
                "free: the target takes it",
                with(source_renamed("available"), |o| o.at_original = Some(None)),
                &format!("Cutover [{rename_target:?}]"),
            ),
            ("taken by someone else", with(source_renamed("available"), |o| o.at_original = target("orders", "available")), "refuse"),
            (
                "done: the target holds the name",
                with(source_renamed("available"), |o| {
                    o.by_name = Some(None);
                    o.at_original = target("orders", "available");
                }),
                "look SourceSnapshot",
            ),
        ]);
        let Next::Start { change, .. } = plan(&ready()).next else { panic!() };
        assert_eq!(change, "rename orders to orders-unencrypted (RDS reboots it for the rename)");
        let Next::Start { change, .. } = plan(&with(built(CLUSTER), cutover)).next else { panic!() };
        assert_eq!(change, "rename DB cluster orders to orders-unencrypted");
    }

    #[test]
    fn the_finish_deletes_only_our_intermediate_snapshot_and_marks_the_source_once() {
        let marked = |o: &mut Observed| o.source.replaced_by = Some("orders-encrypted".into());
        let mark = Action::MarkReplaced { by: "orders-encrypted".into() };
        check(vec![
            (
                "snapshot left",
                with(built(INSTANCE), |o| o.source_snapshot = snap("s", "available")),
                &format!("finish [DeleteSourceSnapshot, {mark:?}]"),
            ),
            (
                "someone else's snapshot of that name is kept",
                with(built(CLUSTER), |o| {
                    o.source_snapshot = snap("s", "available");
                    o.source_snapshot.as_mut().unwrap().as_mut().unwrap().ours = false;
                }),
                &format!("finish [{mark:?}]"),
            ),
            (
                "deleted, not marked (a crash between the two)",
                with(built(INSTANCE), |o| o.source_snapshot = Some(None)),
                &format!("finish [{mark:?}]"),
            ),
            (
                "all done: a re-run changes nothing",
                with(built(INSTANCE), |o| {
                    o.source_snapshot = Some(None);
                    marked(o);
                }),
                "finish []",
            ),
        ]);
    }

    #[test]
    fn names_are_derived_from_the_resource_id_and_the_original_name() {
        let orders = Source { id: "orders".into(), ..Default::default() };
        let instance = Names::new(&INSTANCE, &orders, "db-ABC", None).unwrap();
        assert_eq!(instance.target, "orders-encrypted");
        assert_eq!(instance.renamed_source, "orders-unencrypted");
        assert_eq!(instance.source_snapshot, "atrest-db-abc-source");
        assert_eq!(instance.encrypted_snapshot.as_deref(), Some("atrest-db-abc-encrypted"));
        assert_eq!(Names::new(&CLUSTER, &orders, "cluster-ABC", None).unwrap().encrypted_snapshot, None);
        // After a cutover the source is found by its resource id under its new name; its tag
        // says what it was called.
        let renamed = Source { id: "orders-unencrypted".into(), original: Some("orders".into()), ..Default::default() };
        let resumed = Names::new(&INSTANCE, &renamed, "db-ABC", None).unwrap();
        assert_eq!(resumed, instance);
        assert_eq!(Names::new(&INSTANCE, &orders, "db-ABC", Some("Orders-New")).unwrap().target, "orders-new");
        for (kind, bad) in [(INSTANCE, "9x"), (CLUSTER, "orders"), (CLUSTER, "orders-unencrypted")] {
            let err = Names::new(&kind, &orders, "db-ABC", Some(bad)).unwrap_err().to_string();
            assert!(err.contains(kind.target_param), "{err}");
        }
    }
}
