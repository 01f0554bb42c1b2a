//! Replace by copy: what `fix-rds-encrypt-instance` and `fix-rds-encrypt-cluster` share. RDS
//! cannot encrypt a database in place, so each builds an encrypted twin from a snapshot, settles
//! what the restore could not carry, optionally takes over the source's name, and cleans up.
//!
//! `model` is what is observed, `plan` the pure decision (table-tested), and [`drive`] the turn:
//! read what the plan asks for, then make its writes, or in a dry run report them. Each fix
//! implements [`Replace`]: its reads by id and by atrest:* tags (`observe.rs`) and one AWS write
//! per action (`act.rs`), with its own wording for the result.

pub mod database;
pub mod model;
pub mod plan;

use atrest::error::{Error, Result};
use atrest::remediation::FixContext;
use atrest::{FixOutcome, FixRequest, FixSpec, async_trait};

pub use database::{Database, SnapshotRecord, found_target};
pub use model::{CLUSTER, INSTANCE, Kind, Lookup, Member, Names, Observed, Settings, Snapshot, Source, Target, Twin};
pub use plan::{Action, Next, Phase, Turn, capitalised, not_carried_text, plan};

/// One kind's reads for one run over one source (its `observe.rs`).
#[async_trait]
pub trait Observe: Send + Sync {
    /// The source as the plan sees it.
    fn source(&self) -> Source;
    /// Why this source cannot be replaced by a copy, in the kind's words.
    fn unsupported(&self) -> Option<String>;
    /// Reads what `lookup` names into `o` (never [`Lookup::KeyMatches`]: [`drive`] asks KMS).
    async fn look(&mut self, lookup: Lookup, o: &mut Observed) -> Result<()>;
}

/// One kind's writes (its `act.rs`).
#[async_trait]
pub trait Act: Send + Sync {
    /// Makes one write.
    async fn act(&self, action: &Action, o: &Observed) -> Result<()>;
}

/// One kind's words for the outcome.
pub trait Report {
    /// A dry run's answer when the next step would be `change`.
    fn dry_run_message(&self, o: &Observed, change: &str) -> String;
    /// The answer once the target is in place.
    fn success_message(&self, o: &Observed) -> String;
}

/// A run over one source: what [`drive`] needs of a kind.
pub trait Replace: Observe + Act + Report {}

impl<T: Observe + Act + Report> Replace for T {}

/// A fix's reconcile: `run` is over the source found by its resource id, `None` when there is
/// none.
pub async fn replace_by_copy(
    spec: &'static FixSpec,
    kind: &Kind,
    ctx: &FixContext,
    req: &FixRequest,
    run: Option<&mut dyn Replace>,
) -> Result<FixOutcome> {
    let resource_id = req.resource_id.as_str();
    let Some(run) = run else {
        return Ok(FixOutcome::failed(
            spec,
            req,
            format!("No {} has the resource id {resource_id} (deleted since it was evaluated?). Nothing was changed.", kind.db_noun),
        ));
    };
    if let Some(reason) = run.unsupported() {
        return Ok(FixOutcome::failed(spec, req, format!("{reason} Nothing was changed.")));
    }
    let source = run.source();
    let settings = Settings::of(req, crate::resolve_key(ctx, req).await?);
    let names = Names::new(kind, &source, resource_id, req.params.text(kind.target_param))?;
    drive(spec, ctx, req, run, Observed::new(*kind, names, settings, source)).await
}

/// Tags `db` (an ARN is needed, RDS always returns one).
pub async fn add_tag(rds: &aws_sdk_rds::Client, db: &impl Database, tag: aws_sdk_rds::types::Tag) -> Result<()> {
    let id = db.identifier();
    let arn = db.arn().ok_or_else(|| Error::Internal(format!("RDS returned {id} without an ARN")))?;
    rds.add_tags_to_resource()
        .resource_name(arn)
        .tags(tag)
        .send()
        .await
        .map_err(|e| atrest::error::aws_error("rds:AddTagsToResource", id, e))?;
    Ok(())
}

/// A write whose error `code` means it was already made (by an earlier, interrupted turn).
pub fn unless_done<T>(result: Result<T>, code: &str) -> Result<()> {
    match result {
        Err(e) if e.aws_code() == Some(code) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// One invocation: looks until the plan can decide, then acts on it (or, in a dry run, says what
/// it would do).
pub async fn drive(
    spec: &'static FixSpec,
    ctx: &FixContext,
    req: &FixRequest,
    run: &mut dyn Replace,
    mut o: Observed,
) -> Result<FixOutcome> {
    let turn = loop {
        match plan(&o) {
            Turn { next: Next::Look(Lookup::KeyMatches), .. } => {
                o.key_matches = Some(crate::key_matches(ctx, o.source.kms_key_id.as_deref(), &o.settings.key_arn).await?);
            }
            Turn { next: Next::Look(lookup), .. } => run.look(lookup, &mut o).await?,
            turn => break turn,
        }
    };
    respond(spec, req, run, &o, turn).await
}

/// The decided turn carried out, or in a dry run reported: the one place a dry run differs.
pub async fn respond<R: Act + Report + ?Sized>(
    spec: &'static FixSpec,
    req: &FixRequest,
    run: &R,
    o: &Observed,
    turn: Turn,
) -> Result<FixOutcome> {
    let Turn { first, next } = turn;
    if req.dry_run {
        return Ok(match next {
            Next::Start { change, .. } => FixOutcome::succeeded(spec, req, run.dry_run_message(o, &change)).with_change(change),
            Next::Finish { changes, .. } => {
                let target = o.target().map(|t| t.id.as_str()).unwrap_or_default();
                let mut outcome = FixOutcome::succeeded(
                    spec,
                    req,
                    format!(
                        "Dry run: {target} {}; would finish with: {}. Nothing was changed.",
                        o.kind.ready_word,
                        if changes.is_empty() { "nothing".to_string() } else { changes.join("; ") }
                    ),
                );
                outcome.changes = changes;
                outcome
            }
            other => answer(spec, req, other)?,
        });
    }
    for action in &first {
        run.act(action, o).await?;
    }
    match next {
        Next::Start { phase, change, actions } => {
            for action in &actions {
                run.act(action, o).await?;
            }
            let note = if phase == Phase::Build { o.kind.build_started_note } else { "" };
            Ok(FixOutcome::in_progress(spec, req, format!("Started: {change}.{note}")).with_change(change))
        }
        Next::Finish { changes, actions } => {
            for action in &actions {
                run.act(action, o).await?;
            }
            let mut outcome = FixOutcome::succeeded(spec, req, run.success_message(o));
            outcome.changes = changes;
            Ok(outcome)
        }
        other => answer(spec, req, other),
    }
}

/// The turns that change nothing, alike in a dry run.
fn answer(spec: &'static FixSpec, req: &FixRequest, next: Next) -> Result<FixOutcome> {
    match next {
        Next::AlreadyDone(message) => Ok(FixOutcome::succeeded(spec, req, message)),
        Next::Fail(message) => Ok(FixOutcome::failed(spec, req, message)),
        Next::Wait(message) => Ok(FixOutcome::in_progress(spec, req, message)),
        Next::Refuse(reason) => Err(Error::Unsupported(reason)),
        other => Err(Error::Internal(format!("the RDS replacement planned {other:?} as a final answer"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use atrest::{FixStatus, Params};

    use super::*;
    use crate::replace::plan::tests::observed;

    static SPEC: FixSpec = FixSpec {
        name: "rds-encrypt-test",
        description: "test",
        resource_types: &["AWS::RDS::DBInstance"],
        parameters: &[],
        disruptive: true,
    };

    /// Records what it is asked to write.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Action>>);

    #[async_trait]
    impl Act for Recorder {
        async fn act(&self, action: &Action, _: &Observed) -> Result<()> {
            self.0.lock().unwrap().push(action.clone());
            Ok(())
        }
    }

    impl Report for Recorder {
        fn dry_run_message(&self, _: &Observed, change: &str) -> String {
            format!("Dry run: the next step would be to {change}.")
        }
        fn success_message(&self, _: &Observed) -> String {
            "done".into()
        }
    }

    fn request(dry_run: bool) -> FixRequest {
        FixRequest { resource_id: "db-ABC".into(), dry_run, execution_id: None, resume: None, params: Params::default() }
    }

    fn start() -> Turn {
        Turn {
            first: vec![Action::MarkSettingsApplied],
            next: Next::Start {
                phase: Phase::Build,
                change: "take manual snapshot s of orders".into(),
                actions: vec![Action::TakeSnapshot],
            },
        }
    }

    fn finish() -> Turn {
        Turn {
            first: vec![],
            next: Next::Finish { changes: vec!["delete intermediate snapshot s".into()], actions: vec![Action::DeleteSourceSnapshot] },
        }
    }

    #[tokio::test]
    async fn a_dry_run_reports_the_planned_step_and_writes_nothing() {
        let mut o = observed(INSTANCE);
        o.by_name = Some(Some(Target { id: "orders-encrypted".into(), ours: true, ..Default::default() }));
        let run = Recorder::default();
        let started = respond(&SPEC, &request(true), &run, &o, start()).await.unwrap();
        assert_eq!(started.status, FixStatus::Succeeded);
        assert_eq!(started.message, "Dry run: the next step would be to take manual snapshot s of orders.");
        assert_eq!(started.changes, ["take manual snapshot s of orders"]);
        let finished = respond(&SPEC, &request(true), &run, &o, finish()).await.unwrap();
        assert_eq!(
            finished.message,
            "Dry run: orders-encrypted exists; would finish with: delete intermediate snapshot s. Nothing was changed."
        );
        assert_eq!(finished.changes, ["delete intermediate snapshot s"]);
        assert!(run.0.lock().unwrap().is_empty(), "a dry run writes nothing");
    }

    #[tokio::test]
    async fn a_run_makes_the_quiet_writes_then_the_step() {
        let o = observed(INSTANCE);
        let run = Recorder::default();
        let started = respond(&SPEC, &request(false), &run, &o, start()).await.unwrap();
        assert_eq!(started.status, FixStatus::InProgress);
        assert_eq!(started.message, "Started: take manual snapshot s of orders. The next step follows when AWS is done.");
        assert_eq!(*run.0.lock().unwrap(), [Action::MarkSettingsApplied, Action::TakeSnapshot]);
        let finished = respond(&SPEC, &request(false), &run, &o, finish()).await.unwrap();
        assert_eq!((finished.status, finished.message.as_str()), (FixStatus::Succeeded, "done"));
        assert_eq!(finished.changes, ["delete intermediate snapshot s"]);
        let refused = respond(&SPEC, &request(false), &run, &o, Next::Refuse("no".into()).into()).await;
        assert!(matches!(refused, Err(Error::Unsupported(reason)) if reason == "no"));
    }
}
