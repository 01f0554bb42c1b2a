//! The reliability harness: any fix, under any fault schedule, against the stand-in.
//!
//! A fix joins by implementing [`FixScenario`] (build the fix, set up one unencrypted resource
//! and remember what the user had) and [`Fixture`] (the payload, and the invariants to check
//! once the fix reports `Succeeded`), then adding one line to the scenario table in
//! `tests/reliability_fixes.rs`. The harness does the rest:
//!
//! - [`run_plan`]: the SSM loop (`step_request` until terminal) through a [`FaultProxy`] with a
//!   seeded or targeted fault schedule, then the fixture's invariants, checked directly
//!   against the stand-in;
//! - [`run_kill`]: the same loop killed around call N (the in-flight future is dropped, every
//!   later request refused), then resumed by a fresh runner with a fresh SDK configuration and
//!   no faults, as a new Lambda would after a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrest::alerts::AlertPublisher;
use atrest::{Compliance, ConfigRule, Fix, FixOutcome, FixRequest, FixRunner, FixStatus, Params, RuleContext};
use aws_config::SdkConfig;
use serde_json::Value;

use crate::faults::{Exchange, FaultClass, FaultPlan, FaultProxy, Kill};

/// Whether `rule`, reading the live resource as a sweep would (with `params`), judges it
/// COMPLIANT: `Err` says why not, for a fixture's violations.
pub async fn rule_judges_compliant(
    rule: &dyn ConfigRule,
    sdk: &SdkConfig,
    params: Value,
    resource_type: &str,
    id: &str,
) -> Result<(), String> {
    let params: Params =
        rule.spec().parse_params(&params.as_object().cloned().unwrap_or_default().into_iter().collect()).map_err(|e| e.to_string())?;
    let ctx = RuleContext::new(sdk, params);
    match rule.fetch_item(&ctx, resource_type, id).await {
        Ok(Some(item)) => match rule.judge(&ctx, &item).await {
            Ok(v) if v.compliance == Compliance::Compliant => Ok(()),
            other => Err(format!("the rule does not judge {id} compliant: {other:?}")),
        },
        other => Err(format!("cannot read {id} back: {other:?}")),
    }
}

/// A fix and how to give it something to fix.
#[atrest::async_trait]
pub trait FixScenario: Send + Sync {
    /// A short name for reports: `<fix>/<variant>`.
    fn name(&self) -> &'static str;
    /// The fix under test. `sdk` is the faulty configuration its runner uses; the fix asks its
    /// context for clients (`ctx.client(...)`), so they go through the faults too.
    fn fix(&self, sdk: &SdkConfig) -> Arc<dyn Fix>;
    /// Creates one resource the fix must repair, through `sdk` (straight to the stand-in), and
    /// records everything the user had that must survive.
    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture>;
    /// One call per service the fix uses, before anything is timed (moto loads backends lazily,
    /// and a 2 s first call would look like a hung attempt).
    async fn warm_up(&self, _sdk: &SdkConfig) {}
    /// Seeded random schedules to run (fewer for fixes whose runs are expensive on the stand-in).
    fn seeds(&self) -> u64 {
        24
    }
    /// Fault classes tried at every call of a clean run. Every class for cheap fixes; the
    /// classes that decide whether a call happened (lost response, reset) for expensive ones,
    /// whose other classes the random schedules cover.
    fn targeted_classes(&self) -> &'static [FaultClass] {
        crate::faults::ALL_FAULTS
    }
    /// Kill sweep density: every mutation is a kill point (before it is sent and just after it
    /// landed); of the reads, every n-th. 1 (the default) kills at every call; larger values
    /// bound the sweep for fixes whose clean run makes hundreds of calls.
    fn kill_read_stride(&self) -> usize {
        1
    }
}

/// One resource set up for one run.
#[atrest::async_trait]
pub trait Fixture: Send + Sync {
    /// The SSM payload for the fix.
    fn payload(&self) -> Value;
    /// Every violated invariant, checked straight against the stand-in after the fix reported
    /// `Succeeded`: the resource is compliant; exactly one target exists; nothing the user had
    /// is gone or changed; intermediate artifacts are cleaned up or tagged for cleanup.
    async fn violations(&self, sdk: &SdkConfig) -> Vec<String>;
    /// The Region the fix runs in, when not the stand-in's default: for fixes of account-wide,
    /// per-Region settings, each run takes its own Region so concurrent runs do not share state.
    /// The outcome email still goes to the harness's topic in the default Region.
    fn region(&self) -> Option<String> {
        None
    }
}

/// Knobs shared by every run.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The stand-in (the proxy's upstream, and where fixtures are set up and checked).
    pub upstream: String,
    pub attempt_timeout: Duration,
    /// Steps of the SSM loop before a run counts as stuck.
    pub max_steps: usize,
    /// SNS topic for the outcome emails (publishing goes through the proxy too).
    pub alert_topic: Option<String>,
}

impl Harness {
    pub fn new(upstream: &str) -> Self {
        Harness { upstream: upstream.to_string(), attempt_timeout: Duration::from_millis(1500), max_steps: 40, alert_topic: None }
    }

    /// How long a `Slow` fault holds a request: past the attempt timeout.
    pub fn slow_for(&self) -> Duration {
        self.attempt_timeout + Duration::from_millis(300)
    }
}

/// What one run did and found.
#[derive(Debug)]
pub struct RunResult {
    pub scenario: &'static str,
    pub label: String,
    pub outcome: FixOutcome,
    pub steps: usize,
    /// Every request the worker made, in order (the resumed run's after the killed one's).
    pub exchanges: Vec<Exchange>,
    /// Whether the kill actually happened (the run may have finished before call N+1).
    pub killed: bool,
    pub violations: Vec<String>,
    pub elapsed: Duration,
}

impl RunResult {
    pub fn faults(&self) -> impl Iterator<Item = (&Exchange, FaultClass)> {
        self.exchanges.iter().filter_map(|e| e.fault.map(|f| (e, f)))
    }
}

fn runner(h: &Harness, scenario: &dyn FixScenario, fixture: &dyn Fixture, sdk: &SdkConfig) -> FixRunner {
    let alerts = h.alert_topic.as_deref().map(|t| AlertPublisher::new(sdk, t));
    let fix_sdk = match fixture.region() {
        Some(region) => sdk.to_builder().region(aws_config::Region::new(region)).build(),
        None => sdk.clone(),
    };
    FixRunner::new(scenario.fix(&fix_sdk), &fix_sdk, alerts)
}

/// The SSM loop: step until a final status, counting steps.
async fn drive(runner: &FixRunner, req: &FixRequest, max_steps: usize, steps: &mut usize) -> FixOutcome {
    let mut last = None;
    while *steps < max_steps {
        *steps += 1;
        let outcome = runner.step_request(req).await;
        if outcome.status.is_terminal() {
            return outcome;
        }
        last = Some(outcome);
    }
    let mut outcome = last.expect("at least one step");
    outcome.message = format!("still InProgress after {max_steps} steps: {}", outcome.message);
    outcome
}

fn judge(outcome: &FixOutcome, mut violations: Vec<String>) -> Vec<String> {
    if outcome.status != FixStatus::Succeeded {
        violations.insert(0, format!("the fix ended {:?}: {}", outcome.status, outcome.message));
    }
    violations
}

/// One run of the SSM loop under `plan`, then the invariants.
pub async fn run_plan(h: &Harness, direct: &SdkConfig, scenario: &dyn FixScenario, label: String, plan: FaultPlan) -> RunResult {
    let started = Instant::now();
    let fixture = scenario.setup(direct).await;
    let proxy = FaultProxy::start(&h.upstream, plan).await;
    let sdk = crate::sdk_at(&proxy.endpoint(), h.attempt_timeout).await;
    let runner = runner(h, scenario, fixture.as_ref(), &sdk);
    let req = FixRequest::decode(runner.spec(), &fixture.payload()).expect("the scenario's payload decodes");
    let mut steps = 0;
    let outcome = drive(&runner, &req, h.max_steps, &mut steps).await;
    let exchanges = proxy.log();
    drop(proxy);
    let violations = if outcome.status == FixStatus::Succeeded { fixture.violations(direct).await } else { Vec::new() };
    RunResult {
        scenario: scenario.name(),
        label,
        violations: judge(&outcome, violations),
        outcome,
        steps,
        exchanges,
        killed: false,
        elapsed: started.elapsed(),
    }
}

/// Kills the worker around call `kill.after_calls + 1`, then resumes with a fresh runner.
pub async fn run_kill(h: &Harness, direct: &SdkConfig, scenario: &dyn FixScenario, kill: Kill) -> RunResult {
    let started = Instant::now();
    let fixture = scenario.setup(direct).await;
    let payload = fixture.payload();
    let mut steps = 0;
    let mut exchanges;
    let killed;
    {
        let proxy = FaultProxy::start(&h.upstream, FaultPlan::kill(kill)).await;
        let sdk = crate::sdk_at(&proxy.endpoint(), h.attempt_timeout).await;
        let runner = runner(h, scenario, fixture.as_ref(), &sdk);
        let req = FixRequest::decode(runner.spec(), &payload).expect("the scenario's payload decodes");
        let finished = tokio::select! {
            outcome = drive(&runner, &req, h.max_steps, &mut steps) => Some(outcome),
            _ = proxy.killed() => None,
        };
        killed = finished.is_none() || proxy.is_killed();
        exchanges = proxy.log();
        // The process is gone: runner, clients, caches and proxy are all dropped here.
    }
    let proxy = FaultProxy::start(&h.upstream, FaultPlan::clean()).await;
    let sdk = crate::sdk_at(&proxy.endpoint(), h.attempt_timeout).await;
    let runner = runner(h, scenario, fixture.as_ref(), &sdk);
    let req = FixRequest::decode(runner.spec(), &payload).expect("the scenario's payload decodes");
    let outcome = drive(&runner, &req, steps + h.max_steps, &mut steps).await;
    exchanges.extend(proxy.log());
    drop(proxy);
    let violations = if outcome.status == FixStatus::Succeeded { fixture.violations(direct).await } else { Vec::new() };
    RunResult {
        scenario: scenario.name(),
        label: format!("kill after call {} ({})", kill.after_calls, if kill.perform_last { "after it landed" } else { "before the next" }),
        violations: judge(&outcome, violations),
        outcome,
        steps,
        exchanges,
        killed,
        elapsed: started.elapsed(),
    }
}

/// The calls a fault-free run makes, in order (to size targeted sweeps and kill points).
pub async fn clean_run(h: &Harness, direct: &SdkConfig, scenario: &dyn FixScenario) -> RunResult {
    run_plan(h, direct, scenario, "clean".into(), FaultPlan::clean()).await
}

/// Which fault classes each operation of a scenario has been hit with, over many runs.
#[derive(Debug, Default)]
pub struct Coverage {
    pub hits: BTreeMap<String, BTreeSet<FaultClass>>,
    pub mutating: BTreeSet<String>,
    pub runs: usize,
    pub faults: usize,
}

impl Coverage {
    pub fn add(&mut self, run: &RunResult) {
        self.runs += 1;
        for e in &run.exchanges {
            let op = format!("{}:{}", e.service, e.operation);
            if e.mutating {
                self.mutating.insert(op.clone());
            }
            let entry = self.hits.entry(op).or_default();
            if let Some(f) = e.fault {
                entry.insert(f);
                self.faults += 1;
            }
        }
    }

    /// `(operation, class)` pairs of `wanted` not hit yet, for operations in `operations`.
    pub fn missing(&self, operations: &BTreeSet<String>, wanted: &[FaultClass]) -> Vec<String> {
        let mut out = Vec::new();
        for op in operations {
            let hit = self.hits.get(op).cloned().unwrap_or_default();
            for class in wanted {
                // A lost response only matters for calls that change something.
                if *class == FaultClass::DropResponse && !self.mutating.contains(op) {
                    continue;
                }
                if !hit.contains(class) {
                    out.push(format!("{op} × {}", class.name()));
                }
            }
        }
        out
    }
}

/// The operations of a run, as coverage keys.
pub fn operations(run: &RunResult) -> BTreeSet<String> {
    run.exchanges.iter().map(|e| format!("{}:{}", e.service, e.operation)).collect()
}

/// One run to make.
#[derive(Debug, Clone)]
pub enum Job {
    Plan { label: String, plan: FaultPlan },
    Kill(Kill),
}

/// Runs `jobs` for `scenario`, `concurrency` at a time (each on its own resource and proxy).
pub async fn run_all(h: &Harness, direct: &SdkConfig, scenario: &dyn FixScenario, jobs: Vec<Job>, concurrency: usize) -> Vec<RunResult> {
    use futures::stream::{self, StreamExt};
    stream::iter(jobs)
        .map(|job| async move {
            match job {
                Job::Plan { label, plan } => run_plan(h, direct, scenario, label, plan).await,
                Job::Kill(kill) => run_kill(h, direct, scenario, kill).await,
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Seeded random schedules: `seeds` runs, each with up to `max_faults` faults of `classes`.
pub fn random_jobs(h: &Harness, seeds: std::ops::Range<u64>, rate_percent: u64, max_faults: u32, classes: &[FaultClass]) -> Vec<Job> {
    seeds
        .map(|seed| Job::Plan {
            label: format!("seed {seed}"),
            plan: FaultPlan::random(seed, rate_percent, max_faults, classes, h.slow_for()),
        })
        .collect()
}

/// Every class of fault at every call of a clean run, one fault per run. A lost response is
/// only tried on calls that change something: on a read it is the same as a reset.
pub fn targeted_jobs(h: &Harness, clean: &RunResult, classes: &[FaultClass]) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for e in &clean.exchanges {
        let operation = format!("{}:{}", e.service, e.operation);
        let occurrence = {
            let count = seen.entry(operation.clone()).or_default();
            *count += 1;
            *count
        };
        for &class in classes {
            if class == FaultClass::DropResponse && !e.mutating {
                continue;
            }
            jobs.push(Job::Plan {
                label: format!("{} at call {} ({operation} #{occurrence})", class.name(), e.n),
                plan: FaultPlan::single(&operation, occurrence, class, h.slow_for()),
            });
        }
    }
    jobs
}

/// A kill after every call of a clean run, before the next call; and, when the next call
/// changes something, also just after it landed.
pub fn kill_jobs(clean: &RunResult) -> Vec<Job> {
    kill_jobs_sampled(clean, 1)
}

/// [`kill_jobs`] thinned deterministically: every kill point at a mutation (before it is sent
/// and just after it landed) and before every `read_stride`-th read. A kill before a read
/// differs from one before the preceding call only in what that call left behind, which the
/// points at the mutations cover.
pub fn kill_jobs_sampled(clean: &RunResult, read_stride: usize) -> Vec<Job> {
    let stride = read_stride.max(1);
    let mut jobs = Vec::new();
    let mut reads = 0usize;
    for (i, e) in clean.exchanges.iter().enumerate() {
        let keep = e.mutating || {
            reads += 1;
            (reads - 1).is_multiple_of(stride)
        };
        if keep {
            jobs.push(Job::Kill(Kill { after_calls: i as u64, perform_last: false }));
        }
        if e.mutating {
            jobs.push(Job::Kill(Kill { after_calls: i as u64, perform_last: true }));
        }
    }
    jobs
}

/// One line per failing run, for assertion messages.
pub fn failures(results: &[RunResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| {
            let trace: Vec<String> = r
                .exchanges
                .iter()
                .map(|e| {
                    let mark = match (e.fault, e.kill) {
                        (_, true) => " [KILL]".to_string(),
                        (Some(f), _) => format!(" [{}]", f.name()),
                        _ => String::new(),
                    };
                    format!("{}:{}{mark}", e.service, e.operation)
                })
                .collect();
            format!("{} / {}: {}\n    calls: {}", r.scenario, r.label, r.violations.join("; "), trace.join(", "))
        })
        .collect()
}
