//! `fix-ebs-encrypt-volumes`: replace unencrypted EBS volumes by encrypted copies, in place.
//!
//! EBS cannot encrypt a volume after creation. For a volume attached to an instance, the whole
//! instance is handled in one run, so it stops at most once: every unencrypted volume (root
//! included) is snapshotted and recreated from the snapshot, encrypted with the requested key,
//! in the same AZ with the same type, size, IOPS, throughput, multi-attach setting and tags
//! (plus `atrest:encrypted-from=<old>`); then the instance is stopped (only with
//! `AllowInstanceStop=true`; its instance store, erased by a stop, only with
//! `AllowInstanceStoreDataLoss=true`; never an instance-store root or an Auto Scaling member
//! the group would replace), each volume gets an incremental snapshot of current data and a new
//! encrypted volume from it, the volumes are swapped at the same devices with the same
//! DeleteOnTermination, and the instance is started again if it was running. A failed attach
//! rolls back. Old volumes are kept, detached, tagged `atrest:replaced-by=<new>`; never deleted.
//! A detached volume is simply replaced.
//!
//! Each invocation observes AWS (`observe`), decides the next actions (`plan`, pure: one, or
//! several independent ones of the same phase) and runs them (`act`), repeating until it has to wait for AWS, reaches its per-invocation budget, or is
//! finished. All progress is in tags, so a crash or timeout anywhere resumes where it stopped.

pub mod act;
pub mod model;
pub mod observe;
pub mod plan;

use std::time::{Duration, Instant};

use atrest::error::{ErrorClass, Result};
use atrest::kms::{KMS_KEY_PARAM, KeyResolver};
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};

use crate::model::{Observed, tag};
use crate::plan::{Action, Settings, Step};

pub const DEFAULT_KEY: &str = "alias/aws/ebs";

pub static SPEC: FixSpec = FixSpec {
    name: "ebs-encrypt-volumes",
    description: "Replace unencrypted EBS volumes (a whole instance at once, root included) by encrypted copies; old volumes kept.",
    resource_types: &["AWS::EC2::Volume"],
    parameters: &[
        ParamSpec {
            name: KMS_KEY_PARAM,
            kind: ParamKind::KmsKey,
            default: DEFAULT_KEY,
            description: "KMS key for the new volumes (key id, key ARN, alias or alias ARN).",
        },
        ParamSpec {
            name: "AllowInstanceStop",
            kind: ParamKind::Bool,
            default: "false",
            description: "Stop a running instance (once) to swap its volumes. When false, the encrypted volumes are prepared and the run fails asking for a stop.",
        },
        ParamSpec {
            name: "AllowInstanceStoreDataLoss",
            kind: ParamKind::Bool,
            default: "false",
            description: "Accept that stopping an instance whose type has instance store volumes erases every block of them. When false, such an instance is not stopped.",
        },
    ],
    disruptive: true,
};

/// The worker. `Default` is what the Lambda runs; tests shorten the budgets.
pub struct EbsEncryptVolumes {
    /// Actions per invocation before handing back `InProgress` (1 = "crash" after every step).
    pub max_actions: usize,
    /// Wall-clock budget per invocation; the SSM step allows 300 s.
    pub budget: Duration,
    /// While AWS works, poll this often inside the invocation (until `budget`) instead of
    /// handing back at once. Zero: hand back at once.
    pub poll: Duration,
}

impl Default for EbsEncryptVolumes {
    fn default() -> Self {
        EbsEncryptVolumes { max_actions: 200, budget: Duration::from_secs(150), poll: Duration::from_secs(5) }
    }
}

/// Account limits on snapshots in progress (20 concurrent copies per destination Region, a
/// cap on pending snapshots, a rate per volume): they clear as other snapshots complete, so
/// the run waits instead of failing.
const WAIT_FOR_LIMIT: &[&str] = &["ResourceLimitExceeded", "PendingSnapshotLimitExceeded", "SnapshotCreationPerVolumeRateExceeded"];

/// The key the new volumes are encrypted with, checked before anything is made: EC2 checks
/// `KmsKeyId` only asynchronously, so an unusable key would otherwise show up as snapshots and
/// volumes in `error`. EBS encrypts only with enabled symmetric encryption keys.
async fn usable_key(kms: &KeyResolver, key: &str) -> Result<String> {
    use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
    let meta = kms.requested_key_metadata(key).await?;
    let arn = meta.arn().ok_or_else(|| atrest::Error::Internal(format!("DescribeKey {key} returned no key ARN")))?;
    let unusable =
        |why: String| Err(atrest::Error::invalid_parameter(KMS_KEY_PARAM, format!("{key} ({arn}) {why}; EBS cannot encrypt with it")));
    match meta.key_state() {
        Some(KeyState::Enabled) => {}
        state => return unusable(format!("is {}", state.map(|s| s.as_str()).unwrap_or("in an unknown state"))),
    }
    if meta.key_usage().is_some_and(|u| *u != KeyUsageType::EncryptDecrypt) {
        return unusable(format!("has key usage {}, not ENCRYPT_DECRYPT", meta.key_usage().map(|u| u.as_str()).unwrap_or("")));
    }
    if meta.key_spec().is_some_and(|k| *k != KeySpec::SymmetricDefault) {
        return unusable(format!(
            "is an asymmetric or HMAC key ({}), not SYMMETRIC_DEFAULT",
            meta.key_spec().map(|k| k.as_str()).unwrap_or("")
        ));
    }
    Ok(arn.to_string())
}

/// Errors that mean "someone (a concurrent run, a retry) already did it": observe again.
const ALREADY_DONE: &[&str] = &[
    "IncorrectState",
    "IncorrectInstanceState",
    "InvalidVolume.NotFound",
    "InvalidSnapshot.NotFound",
    "InvalidAttachment.NotFound",
    "VolumeInUse",
    "IdempotentParameterMismatch",
];

fn dry_run_message(obs: &Observed, step: &Step, settings: &Settings) -> (String, Vec<String>) {
    if let Step::Done(m) | Step::Fail(m) = step {
        return (format!("Dry run: {m}"), Vec::new());
    }
    let changes: Vec<String> = obs
        .targets
        .iter()
        .map(|t| {
            let place = match (&obs.instance, &t.device) {
                (Some(i), Some(d)) => format!(" on {} {d}", i.id),
                _ => " (detached)".to_string(),
            };
            format!("{}{place} ({}) -> new volume encrypted with {}; old volume kept", t.old.id, t.old.shape(), settings.key_arn)
        })
        .collect();
    let stop = match &obs.instance {
        Some(i) if i.state == "running" => {
            let needs = plan::stop_needs(i, settings);
            let store = match i.stop_facts.instance_store_gib {
                0 => String::new(),
                gib => format!(
                    " Its instance type {} has {gib} GB of instance store: the stop erases every block of it{}.",
                    i.instance_type,
                    if settings.allow_instance_store_loss { " (accepted: AllowInstanceStoreDataLoss=true)" } else { "" }
                ),
            };
            if needs.is_empty() {
                format!(" Instance {} would be stopped once and started again.{store}", i.id)
            } else {
                format!(
                    " Instance {} is running: the encrypted volumes would be prepared, and the swap needs {}.{store}",
                    i.id,
                    needs.join("; and ")
                )
            }
        }
        _ => String::new(),
    };
    (format!("Dry run: would replace {} volume(s).{stop} Nothing was changed.", changes.len()), changes)
}

#[async_trait]
impl Fix for EbsEncryptVolumes {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let started = Instant::now();
        let volume_id = req.resource_id.as_str();
        if !volume_id.starts_with("vol-") {
            return Err(atrest::Error::invalid_parameter("ResourceId", format!("{volume_id:?} is not an EBS volume id (vol-...)")));
        }
        let key = req.params.text(KMS_KEY_PARAM).unwrap_or(DEFAULT_KEY);
        // Resolved and checked once: volumes are always created with an explicit key ARN.
        let key_arn = usable_key(&ctx.kms, key).await?;
        let settings = Settings {
            key_arn: key_arn.clone(),
            allow_stop: req.params.bool("AllowInstanceStop"),
            allow_instance_store_loss: req.params.bool("AllowInstanceStoreDataLoss"),
            execution: req.execution_id.clone().unwrap_or_default(),
        };
        let ec2 = ctx.client(aws_sdk_ec2::Client::new);
        let autoscaling = ctx.client(aws_sdk_autoscaling::Client::new);
        let executor = act::Executor { ec2: &ec2, key_arn: &key_arn, execution: &settings.execution };

        let mut changes: Vec<String> = Vec::new();
        let with_changes = |mut outcome: FixOutcome, changes: &[String]| {
            outcome.changes = changes.to_vec();
            outcome
        };
        let mut actions = 0;
        let mut last_refused: Option<Action> = None;
        let mut instance_store = observe::InstanceStoreCache::new();
        loop {
            let Some(obs) = observe::observe(&ec2, &autoscaling, volume_id, &key_arn, &mut instance_store).await? else {
                return Ok(with_changes(
                    FixOutcome::failed(
                        &SPEC,
                        req,
                        format!("Volume {volume_id} does not exist (deleted since it was evaluated); nothing to do."),
                    ),
                    &changes,
                ));
            };
            let step = plan::plan(&obs, &settings);
            tracing::debug!(?step, "planned");
            if req.dry_run {
                let (message, would) = dry_run_message(&obs, &step, &settings);
                let outcome = if matches!(step, Step::Fail(_)) {
                    FixOutcome::failed(&SPEC, req, message)
                } else {
                    FixOutcome::succeeded(&SPEC, req, message)
                };
                return Ok(with_changes(outcome, &would));
            }
            match step {
                Step::Done(message) => return Ok(with_changes(FixOutcome::succeeded(&SPEC, req, message), &changes)),
                Step::Fail(message) => return Ok(with_changes(FixOutcome::failed(&SPEC, req, message), &changes)),
                Step::Wait(message) => {
                    if self.poll.is_zero() || started.elapsed() + self.poll >= self.budget {
                        return Ok(with_changes(FixOutcome::in_progress(&SPEC, req, message), &changes));
                    }
                    tokio::time::sleep(self.poll).await;
                }
                Step::Act(batch) => {
                    for action in batch {
                        match executor.run(&action).await {
                            Ok(change) => {
                                tracing::info!(change = %change, "changed");
                                changes.push(change);
                            }
                            Err(e) if e.aws_code().is_some_and(|c| ALREADY_DONE.contains(&c)) => {
                                // Once is a race with AWS or a concurrent run; twice in a row means
                                // AWS is not there yet: hand back and let the document wait. The
                                // other actions of the turn are independent and go ahead.
                                if last_refused.as_ref() == Some(&action) {
                                    return Ok(with_changes(
                                        FixOutcome::in_progress(&SPEC, req, format!("Waiting for AWS: {e}")),
                                        &changes,
                                    ));
                                }
                                tracing::warn!(error = %e, "already done or in the way; observing again");
                                last_refused = Some(action.clone());
                            }
                            Err(e) if e.aws_code().is_some_and(|c| WAIT_FOR_LIMIT.contains(&c)) => {
                                tracing::warn!(error = %e, "account limit; waiting");
                                return Ok(with_changes(
                                    FixOutcome::in_progress(
                                        &SPEC,
                                        req,
                                        format!("Waiting for an account limit to clear (other snapshots in progress): {e}"),
                                    ),
                                    &changes,
                                ));
                            }
                            Err(e) if e.class() != ErrorClass::Transient && matches!(action, Action::Attach { original: false, .. }) => {
                                let Action::Attach { instance, .. } = &action else { unreachable!() };
                                let reason: String = e.to_string().chars().take(250).collect();
                                tracing::error!(error = %e, "attach failed; rolling back");
                                ec2.create_tags()
                                    .resources(instance)
                                    .tags(aws_sdk_ec2::types::Tag::builder().key(tag::ROLLED_BACK).value(&reason).build())
                                    .send()
                                    .await
                                    .map_err(|e| atrest::error::aws_error("ec2:CreateTags", instance.as_str(), e))?;
                                changes.push(format!("attach failed ({reason}); rolling back"));
                                actions += 1;
                                break; // the rest of the turn was planned for a swap, not a rollback
                            }
                            Err(e) => return Err(e),
                        }
                        actions += 1;
                        if actions >= self.max_actions || started.elapsed() >= self.budget {
                            let last = changes.last().cloned().unwrap_or_default();
                            return Ok(with_changes(FixOutcome::in_progress(&SPEC, req, format!("Working: {last}.")), &changes));
                        }
                    }
                }
            }
        }
    }
}
