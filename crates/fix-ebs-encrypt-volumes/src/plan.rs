//! The decision: given what AWS shows now, the next things to do. Pure, so every branch is
//! a table test, and the worker is just observe → plan → act, repeated.
//!
//! A turn may carry several actions when they are independent: one per volume of the same
//! phase (every snapshot, every new volume, every detach, every attach), or every cleanup at
//! the end. Each is complete on its own, so a crash between two of them leaves a state the next
//! observation plans from like any other; batching only saves the re-reads.
//!
//! Order of work for an instance (one stop at most):
//! 1. For every volume to replace: plain snapshot → new volume created from it with
//!    `Encrypted=true` and the key (same AZ, type, size, IOPS, throughput, multi-attach, tags).
//!    All volumes in parallel, while the instance runs. This first snapshot is the full one;
//!    the volume proves, before any downtime, that EBS can use the key (EC2 checks the key
//!    asynchronously: a key it cannot use shows up only as a volume in `error`).
//! 2. Once every new volume is `available`: stop the instance if it runs (only with
//!    AllowInstanceStop, never an instance-store root, instance store erased only with
//!    AllowInstanceStoreDataLoss, never an InService Auto Scaling member that would be
//!    replaced). Volumes made while it ran miss the writes made since, so they are replaced:
//!    a second plain snapshot, incremental against the first (only the blocks changed since),
//!    and a new encrypted volume from it, available at once (it loads lazily from the
//!    snapshot). No CopySnapshot: an encrypting copy is always a full copy, which would put a
//!    full copy of every volume inside the downtime.
//! 3. Detach each old volume, attach its replacement at the same device, restore
//!    DeleteOnTermination. A failed attach starts a rollback (originals back, instance restarted).
//! 4. Tag each old volume `replaced-by`, start the instance if this fix stopped it, delete the
//!    temporary snapshots and any unused temporary volume (a duplicate of a retried create, a
//!    failed attempt). Old volumes are never deleted.
//!
//! Failures EC2 reports late (a snapshot or volume in `error`, a start that ends `stopped`) are
//! counted from AWS (tags), so a crash never resets the count, and capped.
//!
//! Duplicates: CreateSnapshot takes no client token, so a retry of a call whose response was
//! lost makes a second snapshot, and a CreateVolume retried after its token expired (or on a
//! stand-in ignoring it) a second volume. Of several candidates for one role the oldest
//! (creation time, then id) is used, by every run alike; the others are deleted at the end, and
//! only if they are this fix's temporaries (tagged `atrest:encrypting`, attached nowhere).

use crate::model::{Instance, Observed, Snapshot, Target, Vanished, Volume, tag};

/// Failed attempts (a snapshot or a new volume in `error`, or a new volume EC2 deleted by
/// itself) per volume and execution before the run fails: a key EBS cannot use fails every
/// attempt the same way.
pub const MAX_FAILED_ATTEMPTS: usize = 3;
/// StartInstances sent per restart before the run fails: a start that fails asynchronously
/// (a KMS key the instance's volumes cannot use, no capacity) leaves the instance `stopped`.
pub const MAX_START_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    SnapshotSource {
        volume: String,
        taken_while: String,
    },
    /// `attempt`: how many volumes made from this snapshot failed; part of the client token,
    /// so a retried call returns the same volume and a fresh attempt makes a new one.
    /// `vanished`: the snapshot's count of volumes EC2 deleted by itself, which the action
    /// raises if this attempt's token turns out to be spent on one more.
    CreateVolume {
        old: Box<Volume>,
        source: String,
        attempt: usize,
        vanished: Vanished,
        taken_while: String,
        taken_at: i64,
        destination: Option<Destination>,
    },
    DeleteVolume {
        volume: String,
        why: String,
    },
    DeleteSnapshot {
        snapshot: String,
        why: String,
    },
    StopInstance {
        instance: String,
    },
    /// `attempt`: recorded on the instance before the call (1 for the first start).
    StartInstance {
        instance: String,
        attempt: u32,
    },
    ClearInstanceTags {
        instance: String,
    },
    Detach {
        volume: String,
        instance: String,
        device: String,
    },
    Attach {
        volume: String,
        instance: String,
        device: String,
        original: bool,
    },
    SetDeleteOnTermination {
        instance: String,
        device: String,
        volume: String,
        value: bool,
    },
    MarkReplaced {
        old: String,
        new: String,
    },
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

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub key_arn: String,
    pub allow_stop: bool,
    /// The user accepts that a stop erases the instance store.
    pub allow_instance_store_loss: bool,
    /// The SSM execution (`atrest:execution` on what it creates): failed attempts are counted
    /// per execution.
    pub execution: String,
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

fn prepare<'a>(t: &'a Target, instance: Option<&Instance>, settings: &Settings) -> Prep<'a> {
    if let Some(i) = instance
        && let Some(n) = t.new_volumes.iter().find(|n| n.attachment_to(&i.id).is_some())
    {
        return Prep::Ready(n); // mid-swap: already attached
    }
    let current = |tags| current_for(instance, tags);
    let this_execution = |tags: &crate::model::Tags| tags.get(tag::EXECUTION).map(String::as_str) == Some(settings.execution.as_str());
    // Failed attempts stay in AWS (deleted with the other temporaries at the end) so that they
    // can be counted after any crash.
    let failed_volumes: Vec<&Volume> = t.new_volumes.iter().filter(|n| n.state == "error" && this_execution(&n.tags)).collect();
    let vanished: usize = t.sources.iter().map(|s| Vanished::of(s, &settings.execution).in_execution).sum();
    if failed_volumes.len() + vanished >= MAX_FAILED_ATTEMPTS {
        let mut how = Vec::new();
        if !failed_volumes.is_empty() {
            how.push(format!("{} ended in `error`", failed_volumes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")));
        }
        if vanished > 0 {
            how.push(format!("{vanished} deleted by EC2 right after creation"));
        }
        return Prep::Next(Step::Fail(format!(
            "EC2 could not create an encrypted volume for {} ({} attempts: {}). EC2 checks the KMS key \
             asynchronously, so a key EBS cannot use fails this way: check that {} is enabled, and that its key policy lets \
             this role and EBS use it (kms:CreateGrant, kms:GenerateDataKeyWithoutPlaintext, kms:Decrypt via EC2). \
             Nothing was detached; the old volume is untouched.",
            t.old.id,
            failed_volumes.len() + vanished,
            how.join("; "),
            settings.key_arn
        )));
    }
    let failed_snapshots: Vec<&Snapshot> = t.sources.iter().filter(|s| s.state == "error" && this_execution(&s.tags)).collect();
    if failed_snapshots.len() >= MAX_FAILED_ATTEMPTS {
        let reasons = failed_snapshots
            .iter()
            .map(|s| format!("{}: {}", s.id, s.state_message.as_deref().unwrap_or("no reason given")))
            .collect::<Vec<_>>()
            .join("; ");
        return Prep::Next(Step::Fail(format!(
            "EC2 could not snapshot {} ({} attempts ended in `error`: {reasons}). Nothing was detached; the old volume is untouched.",
            t.old.id,
            failed_snapshots.len()
        )));
    }
    if let Some(n) = t.new_volumes.iter().find(|n| current(&n.tags) && n.is_detached() && n.state != "error") {
        return match n.state.as_str() {
            "available" => Prep::Ready(n),
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
    if let Some(source) = t.sources.iter().find(|s| current(&s.tags) && s.state != "error") {
        return match source.state.as_str() {
            "completed" => Prep::Next(Step::Act(vec![Action::CreateVolume {
                old: Box::new(t.old.clone()),
                source: source.id.clone(),
                // Every failed volume made from this snapshot, in any execution, whether it is
                // still there in `error` or EC2 deleted it: the client token must differ from
                // each of theirs (AWS remembers a token after its volume is gone).
                attempt: t
                    .new_volumes
                    .iter()
                    .filter(|n| n.state == "error" && n.tag(tag::SOURCE_SNAPSHOT) == Some(source.id.as_str()))
                    .count()
                    + Vanished::of(source, &settings.execution).total,
                vanished: Vanished::of(source, &settings.execution),
                taken_while: source.tag(tag::TAKEN_WHILE).unwrap_or("").to_string(),
                taken_at: source.tag(tag::TAKEN_AT).and_then(|v| v.parse().ok()).unwrap_or(source.start_secs),
                destination: instance.and_then(destination),
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
/// its own volume's snapshots and volumes), else a combined wait, else every ready volume.
enum PrepAll<'a> {
    Ready(Vec<(&'a Target, &'a Volume)>),
    Next(Step),
}

fn prepare_all<'a>(targets: &'a [Target], instance: Option<&Instance>, settings: &Settings) -> PrepAll<'a> {
    let mut ready = Vec::new();
    let mut waits = Vec::new();
    let mut actions = Vec::new();
    for t in targets {
        match prepare(t, instance, settings) {
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
        None => plan_detached(obs, settings),
    }
}

fn plan_detached(obs: &Observed, settings: &Settings) -> Step {
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
    match prepare_all(&obs.targets, None, settings) {
        PrepAll::Next(step) => step,
        PrepAll::Ready(ready) => Step::Act(mark_all(&ready)),
    }
}

fn mark_all(ready: &[(&Target, &Volume)]) -> Vec<Action> {
    ready.iter().map(|(t, n)| Action::MarkReplaced { old: t.old.id.clone(), new: n.id.clone() }).collect()
}

/// The end of a run: marks left half-done, then every temporary of a replaced volume that is
/// still there (snapshots; duplicate or failed volumes, only when attached nowhere). `None`:
/// all clean.
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
    if i.root_device_type == "instance-store" {
        // StopInstances refuses an instance-store-backed instance: no swap is possible, so no
        // copy is worth making.
        return Step::Fail(format!(
            "Instance {} has an instance-store root device: EC2 cannot stop it, so its EBS volumes cannot be swapped. \
             Nothing was changed. Move the data to a new encrypted volume from inside the instance (or relaunch it \
             from an EBS-backed AMI with encrypted volumes).",
            i.id
        ));
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
                    why: format!(
                        "made from a snapshot of {} older than the instance's last stop; a volume from a current snapshot replaces it",
                        t.old.id
                    ),
                });
            }
        }
    }
    let ready = match prepare_all(&obs.targets, Some(i), settings) {
        // The fresh snapshots start in the same turn as the stale volumes go.
        PrepAll::Next(Step::Act(fresh)) => return Step::Act(stale.into_iter().chain(fresh).collect()),
        _ if !stale.is_empty() => return Step::Act(stale),
        PrepAll::Ready(ready) => ready,
        // Preparation failed for good before anything was detached: give the instance back
        // as it was before failing.
        PrepAll::Next(Step::Fail(message)) => return restart(i, &message).unwrap_or(Step::Fail(message)),
        PrepAll::Next(step) => return step,
    };
    if i.state == "running" {
        let needs = stop_needs(i, settings);
        if !needs.is_empty() {
            let pairs = ready.iter().map(|(t, n)| format!("{} for {}", n.id, t.old.id)).collect::<Vec<_>>().join(", ");
            let needs = needs.iter().enumerate().map(|(k, n)| format!("({}) {n}", k + 1)).collect::<Vec<_>>().join("; ");
            return Step::Fail(format!(
                "The encrypted volumes are ready ({pairs}), but instance {} is running and a stop is needed to swap them. \
                 Nothing was detached and the instance was not stopped. Run the remediation again in a maintenance window \
                 with: {needs}. The instance is then stopped once, a current (incremental) snapshot of each volume becomes \
                 its encrypted volume, they are swapped in, and the instance is started again.",
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

/// What a stop of this running instance still needs from the user; empty: it may be stopped.
pub fn stop_needs(i: &Instance, settings: &Settings) -> Vec<String> {
    let mut needs = Vec::new();
    if !settings.allow_stop {
        needs.push("AllowInstanceStop=true".to_string());
    }
    let store = i.stop_facts.instance_store_gib;
    if store > 0 && !settings.allow_instance_store_loss {
        needs.push(format!(
            "AllowInstanceStoreDataLoss=true, once you have copied off what you need: its instance type {} has {store} GB of \
             instance store, and a stop erases every block of it",
            i.instance_type
        ));
    }
    if let Some(a) = &i.stop_facts.auto_scaling
        && !auto_scaling_lets_it_stop(a)
    {
        needs.push(format!(
            "the instance in Standby in Auto Scaling group {} (aws autoscaling enter-standby), or the group's HealthCheck or \
             ReplaceUnhealthy process suspended: it is {} there, and the group marks a stopped instance unhealthy and \
             terminates it",
            a.group,
            if a.lifecycle_state.is_empty() { "a member" } else { a.lifecycle_state.as_str() }
        ));
    }
    needs
}

/// Auto Scaling leaves a stopped instance alone when it is in Standby, or when the group does
/// not mark instances unhealthy (HealthCheck suspended) or does not replace them
/// (ReplaceUnhealthy suspended).
fn auto_scaling_lets_it_stop(a: &crate::model::AutoScaling) -> bool {
    a.lifecycle_state == "Standby" || a.suspended_processes.iter().any(|p| p == "HealthCheck" || p == "ReplaceUnhealthy")
}

/// Gives back an instance this fix stopped (its `restart` tag): start it, or once it runs clear
/// the tags. `None` when there is nothing to give back. Each start is counted on the instance
/// first: a start that fails asynchronously leaves it `stopped` with a `StateReason`, and
/// after `MAX_START_ATTEMPTS` the run fails saying why instead of starting it forever.
fn restart(i: &Instance, context: &str) -> Option<Step> {
    if i.tag(tag::RESTART) != Some("true") {
        return None;
    }
    Some(match i.state.as_str() {
        "stopped" => {
            let attempts: u32 = i.tag(tag::START_ATTEMPTS).and_then(|v| v.parse().ok()).unwrap_or(0);
            if attempts >= MAX_START_ATTEMPTS {
                let reason = i.state_reason.as_deref().unwrap_or("EC2 gave no reason");
                Step::Fail(format!(
                    "Instance {} did not start again: {attempts} StartInstances calls each left it stopped (last reason: {reason}). \
                     {context} If the reason names a KMS key, the instance could not use a volume's key (key disabled or \
                     pending deletion, or its policy does not allow EBS to create grants). Start the instance yourself once \
                     the cause is fixed; a new run then only tidies up.",
                    i.id
                ))
            } else {
                Step::Act(vec![Action::StartInstance { instance: i.id.clone(), attempt: attempts + 1 }])
            }
        }
        "running" => Step::Act(vec![Action::ClearInstanceTags { instance: i.id.clone() }]),
        other => Step::Wait(format!("Instance {} is {other}.", i.id)),
    })
}

/// Whether DescribeVolumes confirms that `b` holds its device. EC2 is eventually consistent:
/// right after a DetachVolume, DescribeInstances may still list the old volume at the device;
/// that is a reason to wait, never a conflict.
fn lag(i: &Instance, device: &str, b: &crate::model::BlockDevice) -> String {
    format!(
        "Waiting for EC2: DescribeInstances still lists {} at {} {device}, but the volume is no longer attached there.",
        b.volume_id, i.id
    )
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
                if !other.confirmed {
                    return Some(Step::Wait(lag(i, &device, other)));
                }
                return Some(Step::Fail(format!(
                    "Device {device} of {} is taken by {}; cannot attach {} there. Nothing more was changed.",
                    i.id, other.volume_id, n.id
                )));
            }
            return Some(Step::Act(vec![Action::Attach { volume: n.id.clone(), instance: i.id.clone(), device, original: false }]));
        }
    }
    let wanted = t.delete_on_termination.unwrap_or(false);
    match i.device(&device) {
        // Attached per DescribeVolumes, not yet listed by DescribeInstances: its
        // DeleteOnTermination cannot be set (or read) until it is.
        None => Some(Step::Wait(format!("Waiting for EC2: DescribeInstances does not list {} at {} {device} yet.", n.id, i.id))),
        Some(b) if b.volume_id != n.id => Some(Step::Wait(lag(i, &device, b))),
        Some(b) if b.delete_on_termination != wanted => {
            Some(Step::Act(vec![Action::SetDeleteOnTermination { instance: i.id.clone(), device, volume: n.id.clone(), value: wanted }]))
        }
        Some(_) => None,
    }
}

/// After the swap: finish half-done marks, restart if this fix stopped the instance, then
/// delete temporary snapshots and unused duplicate volumes.
fn finish(obs: &Observed, i: &Instance) -> Step {
    if !obs.unfinished_marks.is_empty() {
        return finish_cleanup(obs).unwrap_or_else(|| Step::Done(done_message(obs, Some(i))));
    }
    let swapped = format!(
        "The swap itself is done ({}); the old volumes are kept, detached.",
        obs.replaced.iter().map(|(old, new, device)| format!("{device}: {old} -> {new}")).collect::<Vec<_>>().join(", ")
    );
    if let Some(step) = restart(i, &swapped) {
        return step;
    }
    if i.tag(tag::STOPPED_AT).is_some() || i.tag(tag::START_ATTEMPTS).is_some() {
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
                    if !other.confirmed {
                        return Step::Wait(lag(i, &device, other));
                    }
                    return Step::Fail(format!(
                        "Rollback blocked: device {device} of {} is taken by {}, so original volume {} could not be reattached. \
                         Reattach it by hand. First failure: {reason}",
                        i.id, other.volume_id, t.old.id
                    ));
                }
                return Step::Act(vec![Action::Attach { volume: t.old.id.clone(), instance: i.id.clone(), device, original: true }]);
            }
        }
        if let Some(wanted) = t.delete_on_termination {
            match i.device(&device) {
                None => {
                    return Step::Wait(format!("Waiting for EC2: DescribeInstances does not list {} at {} {device} yet.", t.old.id, i.id));
                }
                Some(b) if b.volume_id != t.old.id => return Step::Wait(lag(i, &device, b)),
                Some(b) if b.delete_on_termination != wanted => {
                    return Step::Act(vec![Action::SetDeleteOnTermination {
                        instance: i.id.clone(),
                        device,
                        volume: t.old.id.clone(),
                        value: wanted,
                    }]);
                }
                Some(_) => {}
            }
        }
    }
    let kept = obs.targets.iter().flat_map(|t| t.new_volumes.iter().map(|n| n.id.as_str())).collect::<Vec<_>>().join(", ");
    let rolled_back = format!(
        "The swap on {} failed and was rolled back: {reason}. The original volumes are attached again at their devices. \
         The encrypted volumes ({kept}) were kept, detached, for inspection.",
        i.id
    );
    if let Some(step) = restart(i, &rolled_back) {
        return step;
    }
    Step::Fail(format!("{rolled_back} The instance is {}. Remove the tag {} from {} to try again.", i.state, tag::ROLLED_BACK, i.id))
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
    use crate::model::{Attachment, AutoScaling, BlockDevice, Tags};

    const I: &str = "i-0abc";
    const OLD: &str = "vol-0old";
    const NEW: &str = "vol-0new";
    const EXEC: &str = "exec-1";

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
            state_message: None,
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
            root_device_type: "ebs".into(),
            instance_type: "t3.micro".into(),
            state_reason: None,
            tags: tags(tag_pairs),
            block_devices: devices
                .iter()
                .map(|(d, v, dot)| BlockDevice {
                    device: d.to_string(),
                    volume_id: v.to_string(),
                    delete_on_termination: *dot,
                    confirmed: true,
                })
                .collect(),
            stop_facts: Default::default(),
        }
    }

    fn target(old: Volume, sources: Vec<Snapshot>, new_volumes: Vec<Volume>) -> Target {
        Target { old, device: Some("/dev/sdf".into()), delete_on_termination: Some(false), sources, new_volumes }
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
        Settings {
            key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".into(),
            allow_stop,
            allow_instance_store_loss: false,
            execution: EXEC.into(),
        }
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
    fn preparation_runs_snapshot_then_encrypted_volume_and_waits_in_between() {
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let old = || vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        let s = settings(false);

        let a = act(plan(&observed(running(), vec![target(old(), vec![], vec![])]), &s));
        assert_eq!(a, Action::SnapshotSource { volume: OLD.into(), taken_while: "running".into() });

        let pending = observed(running(), vec![target(old(), vec![snap("snap-src", "source", "pending", "running", 200)], vec![])]);
        assert!(matches!(plan(&pending, &s), Step::Wait(m) if m.contains("snapshotting vol-0old") && m.contains("40%")));

        // No CopySnapshot: the encrypted volume is created straight from the plain snapshot.
        let done = observed(running(), vec![target(old(), vec![snap("snap-src", "source", "completed", "running", 200)], vec![])]);
        match act(plan(&done, &s)) {
            Action::CreateVolume { source, attempt, taken_at, destination, .. } => {
                assert_eq!((source.as_str(), attempt, taken_at), ("snap-src", 0, 200));
                assert_eq!(destination, Some(Destination { instance: I.into(), device: "/dev/sdf".into(), delete_on_termination: false }));
            }
            other => panic!("{other:?}"),
        }

        let creating = observed(running(), vec![target(old(), vec![], vec![new_vol("creating", None, "running", 200)])]);
        assert!(matches!(plan(&creating, &s), Step::Wait(m) if m.contains("creating")));
    }

    fn failed_vol(id: &str, execution: &str) -> Volume {
        let mut n = new_vol("error", None, "running", 200);
        n.id = id.into();
        n.encrypted = true;
        n.tags.insert(tag::ENCRYPTING.into(), OLD.into());
        n.tags.insert(tag::SOURCE_SNAPSHOT.into(), "snap-src".into());
        n.tags.insert(tag::EXECUTION.into(), execution.into());
        n
    }

    #[test]
    fn a_failed_new_volume_is_retried_under_a_new_token_and_capped_per_execution() {
        // EC2 checks the key asynchronously: a key EBS cannot use shows up as a volume in
        // `error`. The failed volume stays (it is the count, in AWS); the next attempt gets the
        // next client token (AWS would hand back the failed volume for the same one).
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let old = || vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        let src = || vec![snap("snap-src", "source", "completed", "running", 200)];
        let s = settings(true);
        let obs = observed(running(), vec![target(old(), src(), vec![failed_vol("vol-0f1", EXEC)])]);
        assert!(matches!(act(plan(&obs, &s)), Action::CreateVolume { source, attempt: 1, .. } if source == "snap-src"));
        let obs = observed(running(), vec![target(old(), src(), vec![failed_vol("vol-0f1", EXEC), failed_vol("vol-0f2", EXEC)])]);
        assert!(matches!(act(plan(&obs, &s)), Action::CreateVolume { attempt: 2, .. }));

        // The third failure of this execution ends the run, naming the key; nothing detached.
        let three = vec![failed_vol("vol-0f1", EXEC), failed_vol("vol-0f2", EXEC), failed_vol("vol-0f3", EXEC)];
        let obs = observed(running(), vec![target(old(), src(), three.clone())]);
        match plan(&obs, &s) {
            Step::Fail(m) => assert!(
                m.contains("vol-0f1, vol-0f2, vol-0f3")
                    && m.contains(&s.key_arn)
                    && m.contains("asynchronously")
                    && m.contains("Nothing was detached"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        // A new execution (the key fixed) gets a fresh allowance, with a token none used.
        let mut later = s.clone();
        later.execution = "exec-2".into();
        assert!(matches!(act(plan(&obs, &later)), Action::CreateVolume { attempt: 3, .. }));

        // The same cap after the stop: the instance this fix stopped is started again first.
        let mut stopped = instance("stopped", &[("/dev/sdf", OLD, false)], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);
        let obs = observed(
            stopped.clone(),
            vec![target(
                old(),
                src(),
                three
                    .into_iter()
                    .map(|mut n| {
                        n.tags.insert(tag::TAKEN_WHILE.into(), "stopped".into());
                        n.tags.insert(tag::TAKEN_AT.into(), "400".into());
                        n
                    })
                    .collect(),
            )],
        );
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into(), attempt: 1 });
        stopped.state = "running".into();
        let obs = Observed { instance: Some(stopped), ..obs };
        assert_eq!(act(plan(&obs, &s)), Action::ClearInstanceTags { instance: I.into() });
    }

    #[test]
    fn volumes_ec2_deleted_by_itself_move_the_token_on_and_count_toward_the_cap() {
        // What AWS does on CreateVolume with a KMS key EBS cannot use: the call answers
        // `creating`, the volume disappears and its client token is spent. Nothing is left in
        // AWS to count but the tag the action writes on the plain snapshot.
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let old = || vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        let src = |vanished: &str| {
            let mut s = snap("snap-src", "source", "completed", "running", 200);
            s.tags.insert(tag::VANISHED_VOLUMES.into(), vanished.into());
            vec![s]
        };
        let s = settings(true);

        // One vanished and one failed volume in this execution: the next token is the third.
        let obs = observed(running(), vec![target(old(), src(&format!("1 {EXEC} 1")), vec![failed_vol("vol-0f1", EXEC)])]);
        match act(plan(&obs, &s)) {
            Action::CreateVolume { attempt, vanished, .. } => {
                assert_eq!(attempt, 2);
                assert_eq!(vanished, Vanished { total: 1, in_execution: 1 });
                assert_eq!(vanished.one_more(EXEC), format!("2 {EXEC} 2"));
            }
            other => panic!("{other:?}"),
        }

        // Three in this execution end the run naming the key; nothing detached.
        let obs = observed(running(), vec![target(old(), src(&format!("3 {EXEC} 3")), vec![])]);
        match plan(&obs, &s) {
            Step::Fail(m) => assert!(
                m.contains("3 deleted by EC2 right after creation") && m.contains(&s.key_arn) && m.contains("Nothing was detached"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let mixed = observed(running(), vec![target(old(), src(&format!("2 {EXEC} 2")), vec![failed_vol("vol-0f1", EXEC)])]);
        assert!(matches!(plan(&mixed, &s), Step::Fail(m) if m.contains("vol-0f1 ended in `error`; 2 deleted by EC2")));

        // Another execution's count does not cap this one, but its tokens stay spent.
        let obs = observed(running(), vec![target(old(), src("3 exec-0 3"), vec![])]);
        match act(plan(&obs, &s)) {
            Action::CreateVolume { attempt, vanished, .. } => {
                assert_eq!(attempt, 3);
                assert_eq!(vanished.one_more(EXEC), format!("4 {EXEC} 1"));
            }
            other => panic!("{other:?}"),
        }

        // A mangled tag reads as no count rather than failing the run.
        let obs = observed(running(), vec![target(old(), src("lots"), vec![])]);
        assert!(matches!(act(plan(&obs, &s)), Action::CreateVolume { attempt: 0, .. }));
    }

    #[test]
    fn a_failed_snapshot_is_retried_then_fails_with_the_state_message() {
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let old = || vol(OLD, "in-use", Some("/dev/sdf"), &[]);
        let failed = |id: &str| {
            let mut f = snap(id, "source", "error", "running", 200);
            f.tags.insert(tag::EXECUTION.into(), EXEC.into());
            f.state_message = Some("The KMS key is not accessible".into());
            f
        };
        let s = settings(true);
        let obs = observed(running(), vec![target(old(), vec![failed("snap-e1")], vec![])]);
        assert_eq!(act(plan(&obs, &s)), Action::SnapshotSource { volume: OLD.into(), taken_while: "running".into() });
        let obs = observed(running(), vec![target(old(), vec![failed("snap-e1"), failed("snap-e2"), failed("snap-e3")], vec![])]);
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("snap-e3: The KMS key is not accessible")));
    }

    #[test]
    fn a_start_that_fails_asynchronously_is_retried_then_reported_not_looped() {
        // After the swap the instance is started; EC2 accepts the call and the instance falls
        // back to `stopped` with a StateReason. Each start is counted on the instance.
        let s = settings(true);
        let swapped = |attempts: &str| {
            let mut i = instance(
                "stopped",
                &[("/dev/sdf", NEW, false)],
                &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300"), (tag::START_ATTEMPTS, attempts)],
            );
            i.state_reason = Some("Client.InternalError: Client error on launch".into());
            let mut obs = observed(i, vec![]);
            obs.replaced = vec![(OLD.into(), NEW.into(), "/dev/sdf".into())];
            obs
        };
        assert_eq!(act(plan(&swapped("0"), &s)), Action::StartInstance { instance: I.into(), attempt: 1 });
        assert_eq!(act(plan(&swapped("2"), &s)), Action::StartInstance { instance: I.into(), attempt: 3 });
        match plan(&swapped("3"), &s) {
            Step::Fail(m) => assert!(
                m.contains("did not start")
                    && m.contains("Client.InternalError: Client error on launch")
                    && m.contains("/dev/sdf: vol-0old -> vol-0new"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_running_instance_is_stopped_only_when_allowed_and_only_once_everything_is_ready() {
        let obs = observed(
            instance("running", &[("/dev/sdf", OLD, false)], &[]),
            vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![new_vol("available", None, "running", 200)])],
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
    fn a_stop_that_would_erase_instance_store_or_get_the_instance_replaced_is_refused() {
        let ready = |i: Instance| {
            observed(i, vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![new_vol("available", None, "running", 200)])])
        };
        let running = || instance("running", &[("/dev/sdf", OLD, false)], &[]);
        let s = settings(true);

        // Instance store: erased by the stop; only with AllowInstanceStoreDataLoss.
        let mut store = running();
        store.instance_type = "m5d.large".into();
        store.stop_facts.instance_store_gib = 75;
        match plan(&ready(store.clone()), &s) {
            Step::Fail(m) => assert!(
                m.contains("AllowInstanceStoreDataLoss=true")
                    && m.contains("m5d.large has 75 GB of instance store")
                    && m.contains("not stopped"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let accepted = Settings { allow_instance_store_loss: true, ..s.clone() };
        assert_eq!(act(plan(&ready(store), &accepted)), Action::StopInstance { instance: I.into() });

        // Auto Scaling: an InService member would be marked unhealthy and replaced.
        let member = |state: &str, suspended: &[&str]| {
            let mut i = running();
            i.stop_facts.auto_scaling = Some(AutoScaling {
                group: "web".into(),
                lifecycle_state: state.into(),
                suspended_processes: suspended.iter().map(|p| p.to_string()).collect(),
            });
            i
        };
        match plan(&ready(member("InService", &["AZRebalance"])), &s) {
            Step::Fail(m) => assert!(m.contains("Auto Scaling group web") && m.contains("Standby") && m.contains("InService"), "{m}"),
            other => panic!("{other:?}"),
        }
        for ok in [member("Standby", &[]), member("InService", &["HealthCheck"]), member("InService", &["ReplaceUnhealthy"])] {
            assert_eq!(act(plan(&ready(ok), &s)), Action::StopInstance { instance: I.into() });
        }

        // Several blockers are named together, so one change of parameters is enough.
        let mut both = member("InService", &[]);
        both.stop_facts.instance_store_gib = 75;
        assert!(matches!(plan(&ready(both), &settings(false)), Step::Fail(m)
            if m.contains("(1) AllowInstanceStop=true") && m.contains("(2) AllowInstanceStoreDataLoss") && m.contains("(3) the instance in Standby")));
    }

    #[test]
    fn an_instance_store_root_is_refused_before_any_copy() {
        let mut i = instance("running", &[("/dev/sdf", OLD, false)], &[]);
        i.root_device_type = "instance-store".into();
        let obs = observed(i, vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![])]);
        assert!(
            matches!(plan(&obs, &settings(true)), Step::Fail(m) if m.contains("instance-store root") && m.contains("Nothing was changed"))
        );
    }

    #[test]
    fn after_the_stop_volumes_older_than_the_stop_are_replaced_by_current_ones() {
        let stopped = instance("stopped", &[("/dev/sdf", OLD, false)], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);
        let stale = new_vol("available", None, "running", 200);
        let obs = observed(
            stopped.clone(),
            vec![target(
                vol(OLD, "in-use", Some("/dev/sdf"), &[]),
                vec![snap("snap-src", "source", "completed", "running", 200)],
                vec![stale],
            )],
        );
        // The stale volume goes and the fresh (incremental) snapshot starts in the same turn.
        let turn = acts(plan(&obs, &settings(true)));
        assert!(
            matches!(&turn[..], [Action::DeleteVolume { volume, .. }, Action::SnapshotSource { taken_while, .. }]
            if volume == NEW && taken_while == "stopped"),
            "{turn:?}"
        );
        // The current snapshot becomes the encrypted volume directly.
        let obs = observed(
            stopped,
            vec![target(
                vol(OLD, "in-use", Some("/dev/sdf"), &[]),
                vec![snap("snap-src", "source", "completed", "running", 200), snap("snap-now", "source", "completed", "stopped", 400)],
                vec![],
            )],
        );
        assert!(matches!(act(plan(&obs, &settings(true))), Action::CreateVolume { source, .. } if source == "snap-now"));
    }

    #[test]
    fn the_swap_detaches_attaches_at_the_same_device_restores_delete_on_termination_then_marks() {
        let s = settings(true);
        let current = |attached| new_vol("available", attached, "stopped", 400);
        let stopped = |devices: &[(&str, &str, bool)]| instance("stopped", devices, &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]);

        let obs = observed(
            stopped(&[("/dev/sdf", OLD, false)]),
            vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![current(None)])],
        );
        assert_eq!(act(plan(&obs, &s)), Action::Detach { volume: OLD.into(), instance: I.into(), device: "/dev/sdf".into() });

        let obs = observed(stopped(&[]), vec![target(vol(OLD, "available", None, &[]), vec![], vec![current(None)])]);
        assert_eq!(
            act(plan(&obs, &s)),
            Action::Attach { volume: NEW.into(), instance: I.into(), device: "/dev/sdf".into(), original: false }
        );

        let obs = observed(
            stopped(&[("/dev/sdf", "vol-0other", false)]),
            vec![target(vol(OLD, "available", None, &[]), vec![], vec![current(None)])],
        );
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("taken by vol-0other")));

        // Attaching resets DeleteOnTermination to false; the root had true.
        let mut t = target(vol(OLD, "available", None, &[]), vec![], vec![current(Some("/dev/sdf"))]);
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
    fn describe_instances_lagging_behind_a_detach_or_attach_is_waited_out_not_failed() {
        // EC2 is eventually consistent: after DetachVolume, DescribeVolumes shows the old
        // volume detached while DescribeInstances still lists it at the device.
        let s = settings(true);
        let lagging = |devices: &[(&str, &str, bool)], tag_pairs: &[(&str, &str)]| {
            let mut i = instance("stopped", devices, tag_pairs);
            for b in &mut i.block_devices {
                b.confirmed = false;
            }
            i
        };
        let swap_tags = [(tag::RESTART, "true"), (tag::STOPPED_AT, "300")];
        let current = |attached| new_vol("available", attached, "stopped", 400);
        let obs = observed(
            lagging(&[("/dev/sdf", OLD, false)], &swap_tags),
            vec![target(vol(OLD, "available", None, &[]), vec![], vec![current(None)])],
        );
        assert!(matches!(plan(&obs, &s), Step::Wait(m) if m.contains("still lists vol-0old")), "{:?}", plan(&obs, &s));

        // Only a volume DescribeVolumes shows attached there is a conflict.
        let obs = observed(
            instance("stopped", &[("/dev/sdf", "vol-0other", false)], &swap_tags),
            vec![target(vol(OLD, "available", None, &[]), vec![], vec![current(None)])],
        );
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("taken by vol-0other")));

        // After the attach, DescribeInstances may not list the new volume yet: its
        // DeleteOnTermination is set once it does.
        let obs = observed(
            instance("stopped", &[], &swap_tags),
            vec![target(vol(OLD, "available", None, &[]), vec![], vec![current(Some("/dev/sdf"))])],
        );
        assert!(matches!(plan(&obs, &s), Step::Wait(m) if m.contains("does not list vol-0new")));

        // The same in a rollback: the new volume is detached, DescribeInstances still lists it.
        let rolled = [(tag::ROLLED_BACK, "AttachVolume failed"), (tag::RESTART, "true"), (tag::STOPPED_AT, "300")];
        let obs = observed(
            lagging(&[("/dev/sdf", NEW, false)], &rolled),
            vec![target(vol(OLD, "available", None, &[]), vec![], vec![new_vol("available", None, "stopped", 400)])],
        );
        assert!(matches!(plan(&obs, &s), Step::Wait(m) if m.contains("still lists vol-0new")));
    }

    #[test]
    fn finishing_restarts_only_what_it_stopped_then_deletes_snapshots() {
        let s = settings(true);
        let mut obs =
            observed(instance("stopped", &[("/dev/sdf", NEW, false)], &[(tag::RESTART, "true"), (tag::STOPPED_AT, "300")]), vec![]);
        obs.replaced = vec![(OLD.into(), NEW.into(), "/dev/sdf".into())];
        obs.leftover_snapshots = vec![snap("snap-src", "source", "completed", "stopped", 400)];
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into(), attempt: 1 });
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
        let t = |old_at, new_at| target(vol(OLD, "available", old_at, &[]), vec![], vec![new_vol("available", new_at, "stopped", 400)]);
        let obs = observed(rolled(&[("/dev/sdf", NEW, false)], "stopped"), vec![t(None, Some("/dev/sdf"))]);
        assert_eq!(act(plan(&obs, &s)), Action::Detach { volume: NEW.into(), instance: I.into(), device: "/dev/sdf".into() });
        let obs = observed(rolled(&[], "stopped"), vec![t(None, None)]);
        assert_eq!(
            act(plan(&obs, &s)),
            Action::Attach { volume: OLD.into(), instance: I.into(), device: "/dev/sdf".into(), original: true }
        );
        let obs = observed(rolled(&[("/dev/sdf", OLD, false)], "stopped"), vec![t(Some("/dev/sdf"), None)]);
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into(), attempt: 1 });
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
        let obs = observed(instance("running", &[("/dev/sdf", OLD, false)], &[]), vec![target(shared, vec![], vec![])]);
        assert!(matches!(plan(&obs, &s), Step::Fail(m) if m.contains("multi-attach")));
        let obs = observed(instance("stopping", &[], &[]), vec![]);
        assert!(matches!(plan(&obs, &s), Step::Wait(_)));
    }

    #[test]
    fn a_detached_volume_is_replaced_and_marked() {
        let s = settings(false);
        let old = vol(OLD, "available", None, &[]);
        let mut t = target(old.clone(), vec![], vec![]);
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
        let mut t = target(vol(OLD2, "in-use", Some("/dev/xvda"), &[]), sources, vec![]);
        t.device = Some("/dev/xvda".into());
        t
    }

    #[test]
    fn independent_actions_of_one_phase_share_a_turn() {
        let running = instance("running", &[("/dev/sdf", OLD, false), ("/dev/xvda", OLD2, true)], &[]);
        let s = settings(true);
        let obs = observed(running.clone(), vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![], vec![]), root_target(vec![])]);
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
                target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), vec![snap("snap-a", "source", "pending", "running", 200)], vec![]),
                root_target(vec![snap("snap-b", "source", "completed", "running", 200)]),
            ],
        );
        assert!(matches!(&acts(plan(&obs, &s))[..], [Action::CreateVolume { source, .. }] if source == "snap-b"));

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
        let obs = observed(stopped.clone(), vec![target(vol(OLD, "available", None, &[]), vec![], vec![first, second])]);
        assert!(matches!(act(plan(&obs, &s)), Action::Attach { volume, .. } if volume == "vol-0zzz"));

        // Two plain snapshots (CreateSnapshot retried): the oldest is used.
        let sources =
            vec![snap("snap-old", "source", "completed", "stopped", 400), snap("snap-dup", "source", "completed", "stopped", 401)];
        let obs = observed(stopped, vec![target(vol(OLD, "in-use", Some("/dev/sdf"), &[]), sources, vec![])]);
        assert!(matches!(act(plan(&obs, &s)), Action::CreateVolume { source, .. } if source == "snap-old"));
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
        assert_eq!(act(plan(&obs, &s)), Action::StartInstance { instance: I.into(), attempt: 1 });
    }
}
