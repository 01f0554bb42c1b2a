//! What the fix observes, reduced to the fields it decides on. Built from EC2 describe calls
//! (`observe.rs`) or by hand in the planner's table tests.

use std::collections::BTreeMap;

/// Tags this fix writes. Every piece of progress lives in one of them, so a re-run finds it.
pub mod tag {
    /// On temporary snapshots and new volumes: the unencrypted volume they are made from.
    pub const ENCRYPTING: &str = "atrest:encrypting";
    /// On temporary snapshots: `source` (plain snapshot). Runs of earlier versions also made
    /// `encrypted` copies (CopySnapshot); those are only cleaned up now.
    pub const STAGE: &str = "atrest:stage";
    /// On new volumes: the plain snapshot they were created from.
    pub const SOURCE_SNAPSHOT: &str = "atrest:source-snapshot";
    /// On temporary snapshots and new volumes: the SSM execution that made them. EC2 reports a
    /// KMS problem only as a snapshot or volume in `error`, so the failed attempts of one
    /// execution are counted from AWS (they survive a crash) and capped; a new execution (after
    /// the key is fixed) starts with a fresh allowance.
    pub const EXECUTION: &str = "atrest:execution";
    /// On plain snapshots: the new volumes made from it that EC2 deleted on its own, as
    /// `<total> <execution> <count in that execution>` (see [`Vanished`]).
    pub const VANISHED_VOLUMES: &str = "atrest:vanished-volumes";
    /// On the instance while this fix restarts it: how many StartInstances it sent. A start
    /// that fails asynchronously leaves the instance `stopped`; the count caps the retries.
    pub const START_ATTEMPTS: &str = "atrest:start-attempts";
    /// On snapshots and new volumes: whether the instance was `running` or `stopped` (or the
    /// volume `detached`) when the plain snapshot was taken, and when (epoch seconds).
    pub const TAKEN_WHILE: &str = "atrest:taken-while";
    pub const TAKEN_AT: &str = "atrest:taken-at";
    /// On new volumes, for good: the volume they replace.
    pub const ENCRYPTED_FROM: &str = atrest::tags::ENCRYPTED_FROM;
    /// On new volumes until the swap is done: where they go.
    pub const FOR_INSTANCE: &str = "atrest:for-instance";
    pub const FOR_DEVICE: &str = "atrest:for-device";
    pub const DELETE_ON_TERMINATION: &str = "atrest:delete-on-termination";
    /// On old volumes, for good: the encrypted volume that replaced them.
    pub const REPLACED_BY: &str = atrest::tags::REPLACED_BY;
    /// On the instance while this fix has it stopped: restart it at the end; when it was stopped.
    pub const RESTART: &str = "atrest:restart-after-encryption";
    pub const STOPPED_AT: &str = "atrest:stopped-for-encryption-at";
    /// On the instance after a failed swap was rolled back: the reason. While it is there the
    /// fix only completes the rollback and reports it; remove it to try again.
    pub const ROLLED_BACK: &str = "atrest:encryption-rolled-back";

    /// Tags that are bookkeeping, never copied from an old volume to its replacement.
    pub const OPERATIONAL: &[&str] = &[
        ENCRYPTING,
        STAGE,
        SOURCE_SNAPSHOT,
        EXECUTION,
        TAKEN_WHILE,
        TAKEN_AT,
        ENCRYPTED_FROM,
        FOR_INSTANCE,
        FOR_DEVICE,
        DELETE_ON_TERMINATION,
        REPLACED_BY,
    ];
    /// Removed from a new volume once it is in place.
    pub const TRANSIENT_ON_NEW: &[&str] =
        &[ENCRYPTING, SOURCE_SNAPSHOT, EXECUTION, TAKEN_WHILE, TAKEN_AT, FOR_INSTANCE, FOR_DEVICE, DELETE_ON_TERMINATION];
}

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub instance_id: String,
    pub device: String,
    /// attaching | attached | detaching | detached | busy
    pub state: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub id: String,
    pub availability_zone: String,
    pub volume_type: String,
    pub size_gib: i32,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub multi_attach: bool,
    pub outpost_arn: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    /// creating | available | in-use | deleting | deleted | error
    pub state: String,
    /// CreateTime, epoch seconds: of several candidates for one role the oldest is adopted.
    pub created_secs: i64,
    pub tags: Tags,
    pub attachments: Vec<Attachment>,
}

impl Volume {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The live attachment to `instance_id`, if any.
    pub fn attachment_to(&self, instance_id: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.instance_id == instance_id && a.state != "detached")
    }

    pub fn is_detached(&self) -> bool {
        self.attachments.iter().all(|a| a.state == "detached")
    }

    /// A volume this fix made and has not handed over yet (`atrest:encrypting` is removed once
    /// it replaces its old volume): an encrypted copy of a temporary snapshot, attached nowhere.
    /// Only such a volume is ever deleted as a leftover.
    pub fn is_unused_temporary(&self) -> bool {
        self.encrypted && self.attachments.is_empty() && self.tag(tag::ENCRYPTING).is_some() && self.tag(tag::ENCRYPTED_FROM).is_some()
    }

    /// A short description for messages: `gp3 20 GiB, 4000 IOPS, 250 MiB/s`.
    pub fn shape(&self) -> String {
        let mut s = format!("{} {} GiB", self.volume_type, self.size_gib);
        if let Some(i) = self.iops.filter(|_| carries_iops(&self.volume_type)) {
            s.push_str(&format!(", {i} IOPS"));
        }
        if let Some(t) = self.throughput.filter(|_| self.volume_type == "gp3") {
            s.push_str(&format!(", {t} MiB/s"));
        }
        if self.multi_attach {
            s.push_str(", multi-attach");
        }
        s
    }

    /// Where the new volume goes, from its own tags.
    pub fn destination(&self) -> Option<(&str, &str)> {
        Some((self.tag(tag::FOR_INSTANCE)?, self.tag(tag::FOR_DEVICE)?))
    }
}

/// Volume types whose IOPS are provisioned (and must be passed again to keep them).
pub fn carries_iops(volume_type: &str) -> bool {
    matches!(volume_type, "io1" | "io2" | "gp3")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: String,
    /// pending | completed | error | recoverable | recovering
    pub state: String,
    pub start_secs: i64,
    pub encrypted: bool,
    pub progress: Option<String>,
    /// Why a snapshot is in `error` (DescribeSnapshots `StateMessage`), e.g. a KMS key EBS
    /// cannot use.
    pub state_message: Option<String>,
    pub tags: Tags,
}

impl Snapshot {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// New volumes made from one plain snapshot that EC2 deleted by itself. This is how EBS reports
/// a KMS key it cannot use on CreateVolume: the call answers `creating`, the volume disappears
/// (DescribeVolumes: InvalidVolume.NotFound), and the same client token then answers
/// `IdempotentParameterMismatch`. Nothing is left to count in AWS but this tag on the snapshot:
/// `total` keeps every client token distinct, `in_execution` counts toward this execution's cap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vanished {
    pub total: usize,
    pub in_execution: usize,
}

impl Vanished {
    /// What the snapshot's tag says, with the count of another execution read as 0.
    pub fn of(snapshot: &Snapshot, execution: &str) -> Self {
        let Some(value) = snapshot.tag(tag::VANISHED_VOLUMES) else { return Self::default() };
        let mut parts = value.split_whitespace();
        let total = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let in_execution = match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
            (Some(e), Some(count)) if e == execution => count,
            _ => 0,
        };
        Self { total, in_execution }
    }

    /// The tag value after one more volume vanished in `execution`.
    pub fn one_more(&self, execution: &str) -> String {
        format!("{} {execution} {}", self.total + 1, self.in_execution + 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockDevice {
    pub device: String,
    pub volume_id: String,
    pub delete_on_termination: bool,
    /// DescribeVolumes shows that volume attached (or attaching, detaching) to this instance.
    /// EC2 is eventually consistent: right after a DetachVolume, DescribeInstances may still
    /// list the old volume at its device while DescribeVolumes already shows it detached. Only
    /// a confirmed volume really holds the device.
    pub confirmed: bool,
}

/// What decides whether stopping a running instance is safe. Read only while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopFacts {
    /// Instance-store capacity of the instance type (DescribeInstanceTypes
    /// `InstanceStorageInfo.TotalSizeInGB`; 0: none). Every block of it is erased by a stop.
    pub instance_store_gib: i64,
    /// The Auto Scaling group the instance belongs to, if any.
    pub auto_scaling: Option<AutoScaling>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoScaling {
    pub group: String,
    /// InService | Standby | Pending | Terminating | ... (DescribeAutoScalingInstances).
    pub lifecycle_state: String,
    /// Suspended processes of the group (DescribeAutoScalingGroups).
    pub suspended_processes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    /// pending | running | stopping | stopped | shutting-down | terminated
    pub state: String,
    pub launch_secs: i64,
    /// `ebs` or `instance-store` (an instance-store root cannot be stopped at all).
    pub root_device_type: String,
    pub instance_type: String,
    /// Why the instance is in its state (`StateReason`: code and message), e.g. why a start
    /// failed and left it `stopped`.
    pub state_reason: Option<String>,
    pub tags: Tags,
    pub block_devices: Vec<BlockDevice>,
    pub stop_facts: StopFacts,
}

impl Instance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    pub fn device(&self, device: &str) -> Option<&BlockDevice> {
        self.block_devices.iter().find(|b| b.device == device)
    }
}

/// One volume to replace and everything made for it so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub old: Volume,
    /// Device and DeleteOnTermination to restore: from the instance while the old volume is
    /// attached, from the new volume's tags once it is not. `None` for a detached volume.
    pub device: Option<String>,
    pub delete_on_termination: Option<bool>,
    /// Plain snapshots (`stage=source`), oldest first.
    pub sources: Vec<Snapshot>,
    /// Volumes tagged `encrypted-from=<old>` (not deleted), oldest first (creation time, then
    /// id): when a create was retried and landed twice, the first of the current ones is used and
    /// the others are deleted once the swap is done.
    pub new_volumes: Vec<Volume>,
}

/// Everything one turn decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The volume the run was started for.
    pub requested: Volume,
    pub instance: Option<Instance>,
    /// Volumes still to replace (not yet tagged `replaced-by`), sorted by device.
    pub targets: Vec<Target>,
    /// Pairs already replaced on this instance (old, new, device), for the final message.
    pub replaced: Vec<(String, String, String)>,
    /// Temporary snapshots of volumes already replaced: deleted once everything is in place.
    pub leftover_snapshots: Vec<Snapshot>,
    /// Volumes made for volumes already replaced but not the replacement (duplicates of a
    /// retried CreateVolume, copies left by a crash): unused temporaries, deleted at the end.
    pub leftover_volumes: Vec<Volume>,
    /// Replacements whose old volume is tagged `replaced-by` but which still carry this fix's
    /// transient tags (a crash between the two tag calls of MarkReplaced): marked again.
    pub unfinished_marks: Vec<(String, String)>,
}
