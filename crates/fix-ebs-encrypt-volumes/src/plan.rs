//! The decision: given what AWS shows now, the next things to do. Pure, so every branch is
//! a table test, and the worker is just observe → plan → act, repeated.
//!
//! A turn may carry several actions when they are independent: one per volume of the same
//! phase (every snapshot, every copy, every new volume, every detach, every attach), or every
//! cleanup at the end. Each is complete on its own, so a crash between two of them leaves
//! a state the next observation plans from like any other; batching only saves the re-reads.
//!
//! Order of work for an instance (one stop at most):
//! 1. For every volume to replace: plain snapshot → encrypted copy (explicit key) → new volume
//!    (same AZ, type, size, IOPS, throughput, multi-attach, tags). All volumes in parallel.
//! 2. Once every new volume is `available`: stop the instance if it runs (only with
//!    AllowInstanceStop). Snapshots taken while it ran miss the writes made since, so those
//!    copies are replaced by fresh ones taken after the stop — incremental against the first
//!    encrypted copy, so the downtime is minutes, not the hours of a first full copy.
//! 3. Detach each old volume, attach its replacement at the same device, restore
//!    DeleteOnTermination. A failed attach starts a rollback (originals back, instance restarted).
//! 4. Tag each old volume `replaced-by`, start the instance if this fix stopped it, delete the
//!    temporary snapshots and any unused temporary volume (a duplicate of a retried create).
//!    Old volumes are never deleted.
//!
//! Duplicates: CreateSnapshot and CopySnapshot take no client token, so a retry of a call whose
//! response was lost makes a second snapshot, and a CreateVolume retried after its token expired
//! (or on a stand-in ignoring it) a second volume. Of several candidates for one role the oldest
//! (creation time, then id) is used, by every run alike; the others are deleted at the end, and
//! only if they are this fix's temporaries (tagged `atrest:encrypting`, attached nowhere).

use crate::model::{Instance, Observed, Snapshot, Target, Volume, tag};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    SnapshotSource { volume: String, taken_while: String },
    CopyEncrypted { volume: String, source: String, taken_while: String, taken_at: i64 },
    CreateVolume { old: Box<Volume>, copy: String, source: String, taken_while: String, taken_at: i64, destination: Option<Destination> },
    DeleteVolume { volume: String, why: String },
    DeleteSnapshot { snapshot: String, why: String },
    StopInstance { instance: String },
    StartInstance { instance: String },
    ClearInstanceTags { instance: String },
    Detach { volume: String, instance: String, device: String },
    Attach { volume: String, instance: String, device: String, original: bool },
    SetDeleteOnTermination { instance: String, device: String, volume: String, value: bool },
    MarkReplaced { old: String, new: String },
}

/// Where a new volume goes (recorded on it at creation, so the swap survives the old volume
/// being detached).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub instance: String,
    pub device: String,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Independent actions, run in order (never empty).
    Act(Vec<Action>),
    Wait(String),
    Done(String),
    Fail(String),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub key_arn: String,
    pub allow_stop: bool,
}

/// Whether a snapshot or volume (by its `taken-while`/`taken-at` tags) holds the data the swap
/// needs. While the instance runs any copy will do (it is only preparation); once it is stopped
/// only copies taken after the stop, with no start since, are current.
fn current_for(instance: Option<&Instance>, tags: &crate::model::Tags) -> bool {
    let taken_while = tags.get(tag::TAKEN_WHILE).map(String::as_str).unwrap_or("");
    let taken_at: i64 = tags.get(tag::TAKEN_AT).and_then(|t| t.parse().ok()).unwrap_or(0);
    match instance {
        None => taken_while == "detached",
        Some(i) if i.state == "running" => true,
        Some(i) => {
            let stopped_at: i64 = i.tag(tag::STOPPED_AT).and_then(|t| t.parse().ok()).unwrap_or(0);
            taken_while == "stopped" && taken_at >= stopped_at && taken_at >= i.launch_secs
        }
    }
}

fn taken_while(instance: Option<&Instance>) -> &'static str {
    match instance {
        None => "detached",
        Some(i) if i.state == "running" => "running",
        Some(_) => "stopped",
    }
}

/// Step 1 for one target: its usable new volume, or the next step toward one.
enum Prep<'a> {
    Ready(&'a Volume),
    Next(Step),
}

fn prepare<'a>(t: &'a Target, instance: Option<&Instance>) -> Prep<'a> {
    if let Some(i) = instance
        && let Some(n) = t.new_volumes.iter().find(|n| n.attachment_to(&i.id).is_some())
    {
        return Prep::Ready(n); // mid-swap: already attached
    }
    let current = |tags| current_for(instance, tags);
    if let Some(n) = t.new_volumes.iter().find(|n| current(&n.tags) && n.is_detached()) {
        return match n.state.as_str() {
            "available" => Prep::Ready(n),
            "error" => {
                // Start again from a fresh encrypted copy: CreateVolume's idempotency token is
                // derived from the copy, so retrying from the same copy would only hand back the
                // failed volume (AWS remembers a token after the volume is gone).
                let mut actions = vec![Action::DeleteVolume {
                    volume: n.id.clone(),
                    why: format!("EC2 failed to create it from the encrypted copy of {}", t.old.id),
                }];
                actions.extend(t.copies.iter().filter(|c| current(&c.tags)).map(|c| Action::DeleteSnapshot {
                    snapshot: c.id.clone(),
                    why: format!("a volume made from this copy of {} failed; a fresh copy replaces it", t.old.id),
                }));
                Prep::Next(Step::Act(actions))
            }
            state => Prep::Next(Step::Wait(format!("{} is {state} (new encrypted volume for {})", n.id, t.old.id))),
        };
    }
    let destination = |i: &Instance| -> Option<Destination> {
        Some(Destination {
            instance: i.id.clone(),
            device: t.device.clone()?,
            delete_on_termination: t.delete_on_termination.unwrap_or(false),
        })
    };
    if let Some(copy) = t.copies.iter().find(|s| current(&s.tags)) {
        return match copy.state.as_str() {
            "completed" => Prep::Next(Step::Act(vec![Action::CreateVolume {
                old: Box::new(t.old.clone()),
                copy: copy.id.clone(),
                source: copy.tag(tag::SOURCE_SNAPSHOT).unwrap_or(&copy.id).to_string(),
                taken_while: copy.tag(tag::TAKEN_WHILE).unwrap_or("").to_string(),
                taken_at: copy.tag(tag::TAKEN_AT).and_then(|v| v.parse().ok()).unwrap_or(copy.start_secs),
                destination: instance.and_then(destination),
            }])),
            "error" => Prep::Next(Step::Act(vec![Action::DeleteSnapshot {
                snapshot: copy.id.clone(),
                why: format!("the encrypted copy for {} failed", t.old.id),
            }])),
            _ => Prep::Next(Step::Wait(progress("encrypting a copy of", &t.old.id, copy))),
        };
    }
    if let Some(source) = t.sources.iter().find(|s| current(&s.tags)) {
        return match source.state.as_str() {
            "completed" => Prep::Next(Step::Act(vec![Action::CopyEncrypted {
                volume: t.old.id.clone(),
                source: source.id.clone(),
                taken_while: source.tag(tag::TAKEN_WHILE).unwrap_or("").to_string(),
                taken_at: source.tag(tag::TAKEN_AT).and_then(|v| v.parse().ok()).unwrap_or(source.start_secs),
            }])),
            "error" => Prep::Next(Step::Act(vec![Action::DeleteSnapshot {
                snapshot: source.id.clone(),
                why: format!("the snapshot of {} failed", t.old.id),
            }])),
            _ => Prep::Next(Step::Wait(progress("snapshotting", &t.old.id, source))),
        };
    }
    Prep::Next(Step::Act(vec![Action::SnapshotSource { volume: t.old.id.clone(), taken_while: taken_while(instance).to_string() }]))
}

fn progress(what: &str, volume: &str, s: &Snapshot) -> String {
    let pct = s.progress.as_deref().filter(|p| !p.is_empty()).map(|p| format!(", {p}")).unwrap_or_default();
    format!("{what} {volume} ({}{pct})", s.id)
}

/// Step 1 for every target at once: every action any of them needs (one per target, each on
/// its own volume's snapshots and copies), else a combined wait, else every ready volume.
enum PrepAll<'a> {
    Ready(Vec<(&'a Target, &'a Volume)>),
    Next(Step),
}

fn prepare_all<'a>(targets: &'a [Target], instance: Option<&Instance>) -> PrepAll<'a> {
    let mut ready = Vec::new();
    let mut waits = Vec::new();
    let mut actions = Vec::new();
    for t in targets {
        match prepare(t, instance) {
            Prep::Ready(n) => ready.push((t, n)),
            Prep::Next(Step::Wait(m)) => waits.push(m),
            Prep::Next(Step::Act(a)) => actions.extend(a),
            Prep::Next(step) => return PrepAll::Next(step),
        }
    }
    if !actions.is_empty() {
        return PrepAll::Next(Step::Act(actions));
    }
    if !waits.is_empty() {
        return PrepAll::Next(Step::Wait(format!("Waiting for AWS: {}.", waits.join("; "))));
    }
    PrepAll::Ready(ready)
}

pub fn plan(obs: &Observed, settings: &Settings) -> Step {
    match &obs.instance {
        Some(i) => plan_instance(obs, i, settings),
        None => plan_detached(obs),
    }
}

fn plan_detached(obs: &Observed) -> Step {
    if obs.targets.is_empty() {
        return finish_cleanup(obs).unwrap_or_else(|| Step::Done(done_message(obs, None)));
    }
    // A new volume made while the old one was attached may be older than its data: drop it.
    let stale: Vec<Action> = obs
        .targets
        .iter()
        .flat_map(|t| t.new_volumes.iter().filter(|n| !current_for(None, &n.tags) && n.is_detached() && n.state == "available"))
        .map(|n| Action::DeleteVolume { volume: n.id.clone(), why: "made before the volume was detached".into() })
        .collect();
    if !stale.is_empty() {
        return Step::Act(stale);
    }
    match prepare_all(&obs.targets, None) {
        PrepAll::Next(step) => step,
        PrepAll::Ready(ready) => Step::Act(mark_all(&ready)),
    }
}

fn mark_all(ready: &[(&Target, &Volume)]) -> Vec<Action> {
    ready.iter().map(|(t, n)| Action::MarkReplaced { old: t.old.id.clone(), new: n.id.clone() }).collect()
}

/// The end of a run: marks left half-done, then every temporary of a replaced volume that is
/// still there (snapshots; duplicate volumes, only when attached nowhere). `None`: all clean.
fn finish_cleanup(obs: &Observed) -> Option<Step> {
    if !obs.unfinished_marks.is_empty() {
        return Some(Step::Act(
            obs.unfinished_marks.iter().map(|(old, new)| Action::MarkReplaced { old: old.clone(), new: new.clone() }).collect(),
        ));
    }
    let mut cleanup = Vec::new();
    let mut waits = Vec::new();
    for v in &obs.leftover_volumes {
        match v.state.as_str() {
            "available" | "error" => cleanup.push(Action::DeleteVolume {
                volume: v.id.clone(),
                why: format!("unused duplicate of the replacement of {}", v.tag(tag::ENCRYPTED_FROM).unwrap_or("?")),
            }),
            state => waits.push(format!("{} is {state} (unused duplicate, deleted once it is available)", v.id)),
        }
    }
    cleanup.extend(
        obs.leftover_snapshots
            .iter()
            .map(|s| Action::DeleteSnapshot { snapshot: s.id.clone(), why: "temporary snapshot; the swap is verified".into() }),
    );
    if !cleanup.is_empty() {
        return Some(Step::Act(cleanup));
    }
    if !waits.is_empty() {
        return Some(Step::Wait(format!("Waiting for AWS: {}.", waits.join("; "))));
    }
    None
}

fn plan_instance(obs: &Observed, i: &Instance, settings: &Settings) -> Step {
    match i.state.as_str() {
        "terminated" | "shutting-down" => {
            return Step::Fail(format!("Instance {} is {}; nothing was changed.", i.id, i.state));
        }
        "pending" | "stopping" => return Step::Wait(format!("Instance {} is {}.", i.id, i.state)),
        _ => {}
    }
    if let Some(reason) = i.tag(tag::ROLLED_BACK) {
        return plan_rollback(obs, i, reason);
    }
    if obs.targets.is_empty() {
        return finish(obs, i);
    }
    for t in &obs.targets {
        if t.old.attachments.iter().filter(|a| a.state != "detached").count() > 1 {
            return Step::Fail(format!(
                "{} is attached to several instances (multi-attach); swapping it would affect all of them. Nothing was changed.",
                t.old.id
            ));
        }
        if t.device.is_none() {
            return Step::Fail(format!("Cannot tell at which device of {} volume {} belongs; nothing was changed.", i.id, t.old.id));
        }
    }
    let mut stale = Vec::new();
    if i.state == "stopped" {
        for t in &obs.targets {
            for n in t.new_volumes.iter().filter(|n| !current_for(Some(i), &n.tags) && n.is_detached() && n.state == "available") {
                stale.push(Action::DeleteVolume {
                    volume: n.id.clone(),
                    why: format!("made from a snapshot of {} older than the instance's last stop; a current copy replaces it", t.old.id),
                });
            }
        }
    }
    let ready = match prepare_all(&obs.targets, Some(i)) {
        // The fresh copies start in the same turn as the stale volumes go.
        PrepAll::Next(Step::Act(fresh)) => return Step::Act(stale.into_iter().chain(fresh).collect()),
        _ if !stale.is_empty() => return Step::Act(stale),
        PrepAll::Ready(ready) => ready,
        PrepAll::Next(step) => return step,
    };
    if i.state == "running" {
        if !settings.allow_stop {
            let pairs = ready.iter().map(|(t, n)| format!("{} for {}", n.id, t.old.id)).collect::<Vec<_>>().join(", ");
            return Step::Fail(format!(
                "The encrypted volumes are ready ({pairs}), but instance {} is running and a stop is needed to swap them. \
                 Nothing was detached. Run the remediation again with AllowInstanceStop=true in a maintenance window: \
                 the instance is stopped once, fresh copies are made from current data, swapped in, and the instance started again.",
                i.id
            ));
        }
        return Step::Act(vec![Action::StopInstance { instance: i.id.clone() }]);
    }
    // Stopped: swap. Each device goes detach → attach → DeleteOnTermination on its own; the
    // devices move together (one action per device per turn).
    let mut actions = Vec::new();
    let mut waits = Vec::new();
    for (t, n) in &ready {
        match swap_step(i, t, n) {
            None => {}
            Some(Step::Act(a)) => actions.extend(a),
            Some(Step::Wait(m)) => waits.push(m),
            Some(other) => return other,
        }
    }
    if !actions.is_empty() {
        return Step::Act(actions);
    }
    if !waits.is_empty() {
        return Step::Wait(waits.join(" "));
    }
    // Every device swapped: mark them all.
    Step::Act(mark_all(&ready))
}

/// The next swap action for one device; `None` once it is swapped.
fn swap_step(i: &Instance, t: &Target, n: &Volume) -> Option<Step> {
    let device = t.device.clone().unwrap_or_default();
    if let Some(a) = t.old.attachment_to(&i.id) {
        if a.state != "attached" {
            return Some(Step::Wait(format!("{} is {} at {}.", t.old.id, a.state, a.device)));
        }
        return Some(Step::Act(vec![Action::Detach { volume: t.old.id.clone(), instance: i.id.clone(), device: a.device.clone() }]));
    }
    match n.attachment_to(&i.id) {
        Some(a) if a.state != "attached" => return Some(Step::Wait(format!("{} is {} at {}.", n.id, a.state, a.device))),
        Some(_) => {}
        None => {
            if let Some(other) = i.device(&device).filter(|b| b.volume_id != n.id) {
                return Some(Step::Fail(format!(
                    "Device {device} of {} is taken by {}; cannot attach {} there. Nothing more was changed.",
                    i.id, other.volume_id, n.id
                )));
            }
            return Some(Step::Act(vec![Action::Attach { volume: n.id.clone(), instance: i.id.clone(), device, original: false }]));
        }
    }
    let wanted = t.delete_on_termination.unwrap_or(false);
    if i.device(&device).map(|b| b.delete_on_termination) != Some(wanted) {
        return Some(Step::Act(vec![Action::SetDeleteOnTermination {
            instance: i.id.clone(),
            device,
            volume: n.id.clone(),
            value: wanted,
        }]));
    }
    None
}

/// After the swap: finish half-done marks, restart if this fix stopped the instance, then
/// delete temporary snapshots and unused duplicate volumes.
fn finish(obs: &Observed, i: &Instance) -> Step {
    if !obs.unfinished_marks.is_empty() {
        return finish_cleanup(obs).unwrap_or_else(|| Step::Done(done_message(obs, Some(i))));
    }
    if i.tag(tag::RESTART) == Some("true") {
        return match i.state.as_str() {
            "stopped" => Step::Act(vec![Action::StartInstance { instance: i.id.clone() }]),
            "running" => Step::Act(vec![Action::ClearInstanceTags { instance: i.id.clone() }]),
            other => Step::Wait(format!("Instance {} is {other}.", i.id)),
        };
    }
    if i.tag(tag::STOPPED_AT).is_some() {
        return Step::Act(vec![Action::ClearInstanceTags { instance: i.id.clone() }]);
    }
    finish_cleanup(obs).unwrap_or_else(|| Step::Done(done_message(obs, Some(i))))
}

fn plan_rollback(obs: &Observed, i: &Instance, reason: &str) -> Step {
    for t in &obs.targets {
        for n in &t.new_volumes {
            if let Some(a) = n.attachment_to(&i.id) {
                if a.state != "attached" {
                    return Step::Wait(format!("{} is {} at {}.", n.id, a.state, a.device));
                }
                return Step::Act(vec![Action::Detach { volume: n.id.clone(), instance: i.id.clone(), device: a.device.clone() }]);
            }
        }
    }
    for t in &obs.targets {
        let Some(device) = t.device.clone() else { continue };
        match t.old.attachment_to(&i.id) {
            Some(a) if a.state != "attached" => return Step::Wait(format!("{} is {} at {}.", t.old.id, a.state, a.device)),
            Some(_) => {}
            None => {
                if let Some(other) = i.device(&device) {
                    return Step::Fail(format!(
                        "Rollback blocked: device {device} of {} is taken by {}, so original volume {} could not be reattached. \
                         Reattach it by hand. First failure: {reason}",
                        i.id, other.volume_id, t.old.id
                    ));
                }
                return Step::Act(vec![Action::Attach { volume: t.old.id.clone(), instance: i.id.clone(), device, original: true }]);
            }
        }
        if let Some(wanted) = t.delete_on_termination
            && i.device(&device).map(|b| b.delete_on_termination) != Some(wanted)
        {
            return Step::Act(vec![Action::SetDeleteOnTermination {
                instance: i.id.clone(),
                device,
                volume: t.old.id.clone(),
                value: wanted,
            }]);
        }
    }
    if i.tag(tag::RESTART) == Some("true") {
        match i.state.as_str() {
            "stopped" => return Step::Act(vec![Action::StartInstance { instance: i.id.clone() }]),
            "running" => return Step::Act(vec![Action::ClearInstanceTags { instance: i.id.clone() }]),
            other => return Step::Wait(format!("Instance {} is {other}.", i.id)),
        }
    }
    let kept = obs.targets.iter().flat_map(|t| t.new_volumes.iter().map(|n| n.id.as_str())).collect::<Vec<_>>().join(", ");
    Step::Fail(format!(
        "The swap on {} failed and was rolled back: {reason}. The original volumes are attached again at their devices \
         and the instance is {}. The encrypted volumes ({kept}) were kept, detached, for inspection. \
         Remove the tag {} from {} to try again.",
        i.id,
        i.state,
        tag::ROLLED_BACK,
        i.id
    ))
}

fn done_message(obs: &Observed, instance: Option<&Instance>) -> String {
    if obs.replaced.is_empty() {
        let v = &obs.requested;
        let key = v.kms_key_id.as_deref().map(|k| format!(" with KMS key {k}")).unwrap_or_default();
        return match instance {
            Some(i) => format!("{} and every other volume of {} are encrypted{key}; nothing was changed.", v.id, i.id),
            None => format!("{} is encrypted{key}; nothing was changed.", v.id),
        };
    }
    let pairs: Vec<String> = obs
        .replaced
        .iter()
        .map(|(old, new, device)| match instance {
            Some(i) => format!("{old} on {} {device} replaced by encrypted {new}", i.id),
            None => format!("{old} (detached) replaced by encrypted {new}"),
        })
        .collect();
    let kept = if obs.replaced.len() == 1 { "old volume kept" } else { "old volumes kept" };
    let detached = if instance.is_some() { ", detached" } else { "" };
    let state = instance.map(|i| format!(" Instance {} is {}.", i.id, i.state)).unwrap_or_default();
    format!("{}; {kept}{detached} (tagged {}).{state}", pairs.join("; "), tag::REPLACED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attachment, BlockDevice, Tags};

    const I: &str = "i-0abc";
    const OLD: &str = "vol-0old";
    const NEW: &str = "vol-0new";

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn vol(id: &str, state: &str, attached_at: Option<&str>, tag_pairs: &[(&str, &str)]) -> Volume {
        Volume {
            id: id.into(),
            availability_zone: "us-east-1a".into(),
            volume_type: "gp3".into(),
            size_gib: 20,
            iops: Some(4000),
            throughput: Some(250),
            multi_attach: false,
            outpost_arn: None,
            encrypted: id == NEW,
            kms_key_id: None,
            state: state.into(),
            created_secs: 0,
            tags: tags(tag_pairs),
            attachments: attached_at
                .map(|d| vec![Attachment { instance_id: I.into(), device: d.into(), state: "attached".into() }])
                .unwrap_or_default(),
        }
    }

    fn snap(id: &str, stage: &str, state: &str, taken_while: &str, taken_at: i64) -> Snapshot {
        Snapshot {
            id: id.into(),
            state: state.into(),
            start_secs: taken_at,
            encrypted: stage == "encrypted",
            progress: Some("40%".into()),
            tags: tags(&[
                (tag::ENCRYPTING, OLD),
                (tag::STAGE, stage),
                (tag::TAKEN_WHILE, taken_while),
                (tag::TAKEN_AT, &taken_at.to_string()),
                (tag::SOURCE_SNAPSHOT, "snap-src"),
            ]),
        }
    }

    fn new_vol(state: &str, attached_at: Option<&str>, taken_while: &str, taken_at: i64) -> Volume {
        vol(
            NEW,
            state,
            attached_at,
            &[
                (tag::ENCRYPTED_FROM, OLD),
                (tag::FOR_INSTANCE, I),
                (tag::FOR_DEVICE, "/dev/sdf"),
                (tag::TAKEN_WHILE, taken_while),
                (tag::TAKEN_AT, &taken_at.to_string()),
            ],
        )
    }

    fn instance(state: &str, devices: &[(&str, &str, bool)], tag_pairs: &[(&str, &str)]) -> Instance {
        Instance {
            id: I.into(),
            state: state.into(),
            launch_secs: 100,
            tags: tags(tag_pairs),
            block_devices: devices
                .iter()
                .map(|(d, v, dot)| BlockDevice { device: d.to_string(), volume_id: v.to_string(), delete_on_termination: *dot })
                .collect(),
        }
    }

    fn target(old: Volume, sources: Vec<Snapshot>, copies: Vec<Snapshot>, new_volumes: Vec<Volume>) -> Target {
        Target { old, device: Some("/dev/sdf".into()), delete_on_termination: Some(false), sources, copies, new_volumes }
    }

    fn observed(i: Instance, targets: Vec<Target>) -> Observed {
        Observed {
            requested: vol(OLD, "in-use", Some("/dev/sdf"), &[]),
            instance: Some(i),
            targets,
            replaced: vec![],
            leftover_snapshots: vec![],
            leftover_volumes: vec![],
            unfinished_marks: vec![],
        }
    }

    fn settings(allow_stop: bool) -> Settings {
        Settings { key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".into(), allow_stop }
    }

    /// The turn's only action.
    fn act(step: Step) -> Action {
        let mut all = acts(step);
        assert_eq!(all.len(), 1, "expected one action, got {all:?}");
        all.remove(0)
    }

    fn acts(step: Step) -> Vec<Action> {
        match step {
            Step::Act(a) => a,
            other => panic!("expected actions, got {other:?}"),
        }
    }

    #[test]
    fn preparation_runs_snapshot_copy_volume_and_waits_in_between() {
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let old = || vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        let s = settings(false);

        let a = act(plan(&observed(running(), vec![target(old(), vec![], vec![], vec![])]), &s));
        assert_eq!(a, Action::SnapshotSource { volume: OLD.into(), taken_while: "running".into() });

        let pending = observed(running(), vec![target(old(), vec![snap("snap-src", "source", "pending", "running", 200)], vec![], vec![])]);
        assert!(matches!(plan(&pending, &s), Step::Wait(m) if m.contains("snapshotting vol-0old") && m.contains("40%")));

        let done = observed(running(), vec![target(old(), vec![snap("snap-src", "source", "completed", "running", 200)], vec![], vec![])]);
        assert!(matches!(act(plan(&done, &s)), Action::CopyEncrypted { source, taken_at: 200, .. } if source == "snap-src"));

        let copy = observed(
            running(),
            vec![target(
                old(),
                vec![snap("snap-src", "source", "completed", "running", 200)],
                vec![snap("snap-enc", "encrypted", "completed", "running", 200)],
                vec![],
            )],
        );
        match act(plan(&copy, &s)) {
            Action::CreateVolume { copy, source, destination, .. } => {
                assert_eq!((copy.as_str(), source.as_str()), ("snap-enc", "snap-src"));
                assert_eq!(destination, Some(Destination { instance: I.into(), device: "/dev/sdf".into(), delete_on_termination: false }));
            }
            other => panic!("{other:?}"),
        }

        let creating = observed(running(), vec![target(old(), vec![], vec![], vec![new_vol("creating", None, "running", 200)])]);
        assert!(matches!(plan(&creating, &s), Step::Wait(m) if m.contains("creating")));

        let failed_copy =
            observed(running(), vec![target(old(), vec![], vec![snap("snap-enc", "encrypted", "error", "running", 200)], vec![])]);
        assert!(matches!(act(plan(&failed_copy, &s)), Action::DeleteSnapshot { snapshot, .. } if snapshot == "snap-enc"));
    }

    #[test]
    fn a_failed_new_volume_is_replaced_from_a_fresh_copy() {
        // CreateVolume's token comes from the copy: retrying from the same copy would return the
        // failed volume, so the copy goes too and the plain snapshot is copied again.
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let old = || vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        let s = settings(true);
        let failed = observed(
            running(),
            vec![target(
                old(),
                vec![snap("snap-src", "source", "completed", "running", 200)],
                vec![snap("snap-enc", "encrypted", "completed", "running", 200)],
                vec![new_vol("error", None, "running", 200)],
            )],
        );
        match plan(&failed, &s) {
            Step::Act(actions) => assert_eq!(
                actions.iter().map(|a| format!("{a:?}").split_whitespace().next().unwrap_or("").to_string()).collect::<Vec<_>>(),
                ["DeleteVolume", "DeleteSnapshot"],
                "{actions:?}"
            ),
            other => panic!("{other:?}"),
        }
        let recopy =
            observed(running(), vec![target(old(), vec![snap("snap-src", "source", "completed", "running", 200)], vec![], vec![])]);
        assert!(matches!(act(plan(&recopy, &s)), Action::CopyEncrypted { source, .. } if source == "snap-src"));
    }

    #[test]
    fn a_running_instance_is_stopped_only_when_allowed_and_only_once_everything_is_ready() {
        let obs = observed(
            instance("running", &[("/dev/sdf", OLD, false)], &[]),
            vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![], vec![new_vol("available", None, "running", 200)])],
        );
        match plan(&obs, &settings(false)) {
            Step::Fail(m) => {
                assert!(m.contains("volumes are ready") && m.contains("a stop is needed") && m.contains("Nothing was detached"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(act(plan(&obs, &settings(true))), Action::StopInstance { instance: I.into() });
    }

    #[test]
    fn after_the_stop_copies_older_than_the_stop_are_replaced_by_current_ones() {
        let stopped = instance("stopped", &[("/dev/sdf", OLD, false)], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);
        let stale = new_vol("available", None, "running", 200);
        let obs = observed(stopped.clone(), vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![], vec![stale])]);
        // The stale volume goes and the fresh snapshot starts in the same turn.
        let turn = acts(plan(&obs, &settings(true)));
        assert!(
            matches!(&turn[..], [Action::DeleteVolume { volume, .. }, Action::SnapshotSource { taken_while, .. }]
            if volume == NEW && taken_while == "stopped"),
            "{turn:?}"
        );

        // The stale encrypted copy is kept (the next copy is incremental) but not used.
        let obs = observed(
            stopped,
            vec![target(
                vol(OLD, "in-use", Some("/dev/sdf"), &[]),
                vec![],
                vec![snap("snap-enc", "encrypted", "completed", "running", 200)],
                vec![],
            )],
        );
        assert_eq!(act(plan(&obs, &settings(true))), Action::SnapshotSource { volume: OLD.into(), taken_while: "stopped".into() });
    }

    #[test]
    fn the_swap_detaches_attaches_at_the_same_device_restores_delete_on_termination_then_marks() {
        let s = settings(true);
        let current = |attached| new_vol("available", attached, "stopped", 400);
        let stopped = |devices: &[(&str, &str, bool)]| instance("stopped", devices, &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);

        let obs = observed(
            stopped(&[("/dev/sdf", OLD, false)]),
            vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![], vec![current(None)])],
        );
        assert_eq!(act(plan(&obs, &s)), Action::Detach { volume: OLD.into(), instance: I.into(), device: "/dev/sdf".into() });

        let obs = observed(stopped(&[]), vec![target(vol(OLD, "available", None, &[]), vec![], vec![], vec![current(None)])]);
        assert_eq!(
            act(plan(&obs, &s)),
            Action::Attach { volume: NEW.into(), instance: I.into(), device: "/dev/sdf".into(), original: false }
        );

        let obs = observed(
            stopped(&[("/dev/sdf", "vol-0other", false)]),
            vec![target(vol(OLD, "available", None, &[]), vec![], vec![], vec![current(None)])],
        );
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("taken by vol-0other")));

        // Attaching resets DeleteOnTermination to false; the root had true.
        let mut t = target(vol(OLD, "available", None, &[]), vec![], vec![], vec![current(Some("/dev/sdf"))]);
        t.delete_on_termination = Some(true);
        let obs = observed(stopped(&[("/dev/sdf", NEW, false)]), vec![t.clone()]);
        assert_eq!(
            act(plan(&obs, &s)),
            Action::SetDeleteOnTermination { instance: I.into(), device: "/dev/sdf".into(), volume: NEW.into(), value: true }
        );
        let obs = observed(stopped(&[("/dev/sdf", NEW, true)]), vec![t]);
        assert_eq!(act(plan(&obs, &s)), Action::MarkReplaced { old: OLD.into(), new: NEW.into() });
    }

    #[test]
    fn finishing_restarts_only_what_it_stopped_then_deletes_snapshots() {
        let s = settings(true);
        let mut obs =
            observed(instance("stopped", &[("/dev/sdf", NEW, false)], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]), vec![]);
        obs.replaced = vec![(OLD.into(), NEW.into(), "/dev/sdf".into())];
        obs.leftover_snapshots = vec![snap("snap-src", "source", "completed", "stopped", 400)];
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into() });
        obs.instance.as_mut().unwrap().state = "running".into();
        assert_eq!(act(plan(&obs, &s)), Action::ClearInstanceTags { instance: I.into() });
        obs.instance.as_mut().unwrap().tags.clear();
        assert!(matches!(act(plan(&obs, &s)), Action::DeleteSnapshot { snapshot, .. } if snapshot == "snap-src"));
        obs.leftover_snapshots.clear();
        match plan(&obs, &s) {
            Step::Done(m) => assert_eq!(
                m,
                "vol-0old on i-0abc /dev/sdf replaced by encrypted vol-0new; old volume kept, detached (tagged atrest:replaced-by). Instance i-0abc is running."
            ),
            other => panic!("{other:?}"),
        }
        // An instance that was stopped before the fix stays stopped.
        let obs = observed(instance("stopped", &[], &[]), vec![]);
        assert!(matches!(plan(&obs, &s), Step::Done(_)));
    }

    #[test]
    fn a_rolled_back_swap_reattaches_the_originals_restarts_and_reports() {
        let s = settings(true);
        let rolled = |devices: &[(&str, &str, bool)], state: &str| {
            instance(state, devices, &[(tag::ROLLED_BACK, "AttachVolume failed"), (tag::RESTART, "true"), (tag::STOPPED_AT, "300")])
        };
        let t =
            |old_at, new_at| target(vol(OLD, "available", old_at, &[]), vec![], vec![], vec![new_vol("available", new_at, "stopped", 400)]);
        let obs = observed(rolled(&[("/dev/sdf", NEW, false)], "stopped"), vec![t(None, Some("/dev/sdf"))]);
        assert_eq!(act(plan(&obs, &s)), Action::Detach { volume: NEW.into(), instance: I.into(), device: "/dev/sdf".into() });
        let obs = observed(rolled(&[], "stopped"), vec![t(None, None)]);
        assert_eq!(
            act(plan(&obs, &s)),
            Action::Attach { volume: OLD.into(), instance: I.into(), device: "/dev/sdf".into(), original: true }
        );
        let obs = observed(rolled(&[("/dev/sdf", OLD, false)], "stopped"), vec![t(Some("/dev/sdf"), None)]);
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into() });
        let mut done = rolled(&[("/dev/sdf", OLD, false)], "running");
        done.tags.remove(tag::RESTART);
        let obs = observed(done, vec![t(Some("/dev/sdf"), None)]);
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("rolled back: AttachVolume failed") && m.contains("vol-0new")));
    }

    #[test]
    fn refuses_what_it_cannot_do_safely() {
        let s = settings(true);
        let obs = observed(instance("terminated", &[], &[]), vec![]);
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("terminated")));
        let mut shared = vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        shared.attachments.push(Attachment { instance_id: "i-0other".into(), device: "/dev/sdg".into(), state: "attached".into() });
        let obs = observed(instance("running", &[("/dev/sdf", OLD, false)], &[]), vec![target(shared, vec![], vec![], vec![])]);
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("multi-attach")));
        let obs = observed(instance("stopping", &[], &[]), vec![]);
        assert!(matches!(plan(&obs, &s), Step::Wait(_)));
    }

    #[test]
    fn a_detached_volume_is_replaced_and_marked() {
        let s = settings(false);
        let old = vol(OLD, "available", None, &[]);
        let mut t = target(old.clone(), vec![], vec![], vec![]);
        t.device = None;
        let mut obs = Observed {
            requested: old,
            instance: None,
            targets: vec![t.clone()],
            replaced: vec![],
            leftover_snapshots: vec![],
            leftover_volumes: vec![],
            unfinished_marks: vec![],
        };
        assert_eq!(act(plan(&obs, &s)), Action::SnapshotSource { volume: OLD.into(), taken_while: "detached".into() });
        t.new_volumes = vec![vol(NEW, "available", None, &[(tag::ENCRYPTED_FROM, OLD), (tag::TAKEN_WHILE, "detached")])];
        obs.targets = vec![t];
        assert_eq!(act(plan(&obs, &s)), Action::MarkReplaced { old: OLD.into(), new: NEW.into() });
    }

    const OLD2: &str = "vol-0old2";

    /// A second target (the root volume at /dev/xvda) beside the one at /dev/sdf.
    fn root_target(sources: Vec<Snapshot>) -> Target {
        let mut t = target(vol(OLD2, "in-use", Some("/dev/xvda"), &[]), sources, vec![], vec![]);
        t.device = Some("/dev/xvda".into());
        t
    }

    #[test]
    fn independent_actions_of_one_phase_share_a_turn() {
        let running = instance("running", &[("/dev/sdf", OLD, false), ("/dev/xvda", OLD2, true)], &[]);
        let s = settings(true);
        let obs =
            observed(running.clone(), vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![], vec![]), root_target(vec![])]);
        assert_eq!(
            acts(plan(&obs, &s)),
            vec![
                Action::SnapshotSource { volume: OLD.into(), taken_while: "running".into() },
                Action::SnapshotSource { volume: OLD2.into(), taken_while: "running".into() },
            ]
        );
        // One volume waits, the other acts: the action goes ahead.
        let obs = observed(
            running.clone(),
            vec![
                target(
                    vol(OLD, "in-use", Some("/dev/sdf"), &[]),
                    vec![snap("snap-a", "source", "pending", "running", 200)],
                    vec![],
                    vec![],
                ),
                root_target(vec![snap("snap-b", "source", "completed", "running", 200)]),
            ],
        );
        assert!(matches!(&acts(plan(&obs, &s))[..], [Action::CopyEncrypted { source, .. }] if source == "snap-b"));

        // The cleanup at the end is one turn: every temporary snapshot at once.
        let mut done = observed(instance("running", &[("/dev/sdf", NEW, false)], &[]), vec![]);
        done.replaced = vec![(OLD.into(), NEW.into(), "/dev/sdf".into())];
        done.leftover_snapshots =
            ["snap-1", "snap-2", "snap-3", "snap-4"].iter().map(|id| snap(id, "source", "completed", "stopped", 400)).collect();
        let turn = acts(plan(&done, &s));
        assert_eq!(turn.len(), 4);
        assert!(turn.iter().all(|a| matches!(a, Action::DeleteSnapshot { .. })));
    }

    #[test]
    fn both_devices_are_detached_then_attached_together_and_marked_together() {
        let s = settings(true);
        let stopped = |devices: &[(&str, &str, bool)]| instance("stopped", devices, &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);
        let new_at = |id: &str, device: &str, attached: bool, old: &str| {
            let mut n = new_vol("available", attached.then_some(device), "stopped", 400);
            n.id = id.into();
            n.tags.insert(tag::ENCRYPTED_FROM.into(), old.into());
            n.tags.insert(tag::FOR_DEVICE.into(), device.into());
            if let Some(a) = n.attachments.first_mut() {
                a.device = device.into();
            }
            n
        };
        let two = |old_attached: bool, new_attached: bool| {
            let mut a = target(
                vol(OLD, "in-use", old_attached.then_some("/dev/sdf"), &[]),
                vec![],
                vec![],
                vec![new_at(NEW, "/dev/sdf", new_attached, OLD)],
            );
            let mut b = root_target(vec![]);
            b.old = vol(OLD2, "in-use", old_attached.then_some("/dev/xvda"), &[]);
            b.new_volumes = vec![new_at("vol-0new2", "/dev/xvda", new_attached, OLD2)];
            b.delete_on_termination = Some(true);
            a.delete_on_termination = Some(false);
            vec![a, b]
        };
        let obs = observed(stopped(&[("/dev/sdf", OLD, false), ("/dev/xvda", OLD2, true)]), two(true, false));
        assert!(
            matches!(&acts(plan(&obs, &s))[..], [Action::Detach { volume: a, .. }, Action::Detach { volume: b, .. }] if a == OLD && b == OLD2)
        );
        let obs = observed(stopped(&[]), two(false, false));
        assert!(
            matches!(&acts(plan(&obs, &s))[..], [Action::Attach { volume: a, .. }, Action::Attach { volume: b, .. }] if a == NEW && b == "vol-0new2")
        );
        let obs = observed(stopped(&[("/dev/sdf", NEW, false), ("/dev/xvda", "vol-0new2", false)]), two(false, true));
        assert_eq!(
            acts(plan(&obs, &s)),
            vec![Action::SetDeleteOnTermination {
                instance: I.into(),
                device: "/dev/xvda".into(),
                volume: "vol-0new2".into(),
                value: true
            }]
        );
        let obs = observed(stopped(&[("/dev/sdf", NEW, false), ("/dev/xvda", "vol-0new2", true)]), two(false, true));
        assert_eq!(
            acts(plan(&obs, &s)),
            vec![
                Action::MarkReplaced { old: OLD.into(), new: NEW.into() },
                Action::MarkReplaced { old: OLD2.into(), new: "vol-0new2".into() }
            ]
        );
    }

    #[test]
    fn of_duplicate_candidates_the_oldest_is_used() {
        let s = settings(true);
        let stopped = instance("stopped", &[], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);
        // Two current volumes for one old volume (a CreateVolume retried after its response was
        // lost): the older one is attached, whatever their ids.
        let mut first = new_vol("available", None, "stopped", 400);
        first.id = "vol-0zzz".into();
        first.created_secs = 500;
        let mut second = new_vol("available", None, "stopped", 400);
        second.id = "vol-0aaa".into();
        second.created_secs = 501;
        let obs = observed(stopped.clone(), vec![target(vol(OLD, "available", None, &[]), vec![], vec![], vec![first, second])]);
        assert!(matches!(act(plan(&obs, &s)), Action::Attach { volume, .. } if volume == "vol-0zzz"));

        // Two plain snapshots (CreateSnapshot retried) and two encrypted copies (CopySnapshot
        // retried): the oldest of each is used.
        let sources =
            vec![snap("snap-old", "source", "completed", "stopped", 400), snap("snap-dup", "source", "completed", "stopped", 401)];
        let obs = observed(stopped.clone(), vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), sources.clone(), vec![], vec![])]);
        assert!(matches!(act(plan(&obs, &s)), Action::CopyEncrypted { source, .. } if source == "snap-old"));
        let copies =
            vec![snap("snap-enc1", "encrypted", "completed", "stopped", 400), snap("snap-enc2", "encrypted", "completed", "stopped", 400)];
        let obs = observed(stopped, vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), sources, copies, vec![])]);
        assert!(matches!(act(plan(&obs, &s)), Action::CreateVolume { copy, .. } if copy == "snap-enc1"));
    }

    #[test]
    fn no_success_while_a_duplicate_volume_or_a_temporary_snapshot_is_left() {
        let s = settings(true);
        let mut obs = observed(instance("running", &[("/dev/sdf", NEW, false)], &[]), vec![]);
        obs.replaced = vec![(OLD.into(), NEW.into(), "/dev/sdf".into())];
        let mut dup = new_vol("available", None, "stopped", 400);
        dup.id = "vol-0dup".into();
        dup.encrypted = true;
        dup.tags.insert(tag::ENCRYPTING.into(), OLD.into());
        assert!(dup.is_unused_temporary());
        obs.leftover_volumes = vec![dup.clone()];
        obs.leftover_snapshots = vec![snap("snap-src", "source", "completed", "stopped", 400)];
        assert_eq!(
            acts(plan(&obs, &s)),
            vec![
                Action::DeleteVolume { volume: "vol-0dup".into(), why: format!("unused duplicate of the replacement of {OLD}") },
                Action::DeleteSnapshot { snapshot: "snap-src".into(), why: "temporary snapshot; the swap is verified".into() },
            ]
        );
        // A duplicate still being created is waited for, not reported done.
        obs.leftover_snapshots.clear();
        obs.leftover_volumes[0].state = "creating".into();
        assert!(matches!(plan(&obs, &s), Step::Wait(m) if m.contains("vol-0dup")));
        obs.leftover_volumes.clear();
        assert!(matches!(plan(&obs, &s), Step::Done(_)));

        // The same for a detached volume.
        let mut det = Observed {
            requested: vol(OLD, "available", None, &[(tag::REPLACED_BY, NEW)]),
            instance: None,
            targets: vec![],
            replaced: vec![(OLD.into(), NEW.into(), String::new())],
            leftover_snapshots: vec![],
            leftover_volumes: vec![dup.clone()],
            unfinished_marks: vec![],
        };
        assert!(matches!(act(plan(&det, &s)), Action::DeleteVolume { volume, .. } if volume == "vol-0dup"));
        det.leftover_volumes.clear();
        assert!(matches!(plan(&det, &s), Step::Done(_)));

        // What is never a leftover: an attached volume, an unencrypted one, one without this
        // fix's temporary tag (the replacement once handed over, or anything of the user's).
        let mut attached = dup.clone();
        attached.attachments = vec![Attachment { instance_id: I.into(), device: "/dev/sdg".into(), state: "attached".into() }];
        let mut plain = dup.clone();
        plain.encrypted = false;
        let mut handed_over = dup.clone();
        handed_over.tags.remove(tag::ENCRYPTING);
        let users = vol("vol-0user", "available", None, &[("Name", "data")]);
        for v in [attached, plain, handed_over, users] {
            assert!(!v.is_unused_temporary(), "{v:?}");
        }
    }

    #[test]
    fn a_half_done_mark_is_finished_before_the_restart() {
        // Killed between the two tag calls of MarkReplaced: the old volume names its
        // replacement, which still carries the transient tags.
        let s = settings(true);
        let mut obs =
            observed(instance("stopped", &[("/dev/sdf", NEW, false)], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]), vec![]);
        obs.replaced = vec![(OLD.into(), NEW.into(), "/dev/sdf".into())];
        obs.unfinished_marks = vec![(OLD.into(), NEW.into())];
        obs.leftover_snapshots = vec![snap("snap-src", "source", "completed", "stopped", 400)];
        assert_eq!(act(plan(&obs, &s)), Action::MarkReplaced { old: OLD.into(), new: NEW.into() });
        obs.unfinished_marks.clear();
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into() });
    }
}
