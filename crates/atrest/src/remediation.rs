//! The remediation contract: every fix is a reconciler.
//!
//! Given the resource id Config passes as `RESOURCE_ID` and its parameters, a fix observes the
//! current AWS state, performs the next step toward the goal and reports
//! `InProgress | Succeeded | Failed`. All progress lives in AWS itself (deterministic names,
//! tags), so a re-run after a crash or timeout resumes instead of duplicating. The SSM
//! Automation document is the same small loop for every fix — invoke, branch on `Status`,
//! sleep, invoke again — and `FixRunner::drive` is that loop, run locally.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde::Serialize;
use serde_json::Value;

use crate::alerts::AlertPublisher;
use crate::error::{Error, ErrorClass, Result};
use crate::kms::KeyResolver;
use crate::overrides::ClientOverrides;
use crate::params::{ParamSpec, Params};

mod email;
pub use email::fix_outcome_alert;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum FixStatus {
    InProgress,
    Succeeded,
    Failed,
}

impl FixStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, FixStatus::InProgress)
    }
}

/// What a fix is, for the CLI, the template and the docs.
#[derive(Debug, Serialize)]
pub struct FixSpec {
    /// Also the crate name without the `fix-` prefix.
    pub name: &'static str,
    pub description: &'static str,
    pub resource_types: &'static [&'static str],
    /// SSM-style PascalCase parameters (besides `ResourceId`, `DryRun`, `ExecutionId`).
    pub parameters: &'static [ParamSpec],
    /// Whether the fix interrupts service (stops instances, swaps databases): such fixes are
    /// never automatic by default.
    pub disruptive: bool,
}

/// Payload keys every fix accepts besides its own parameters.
pub const RESERVED_KEYS: &[&str] = &["ResourceId", "DryRun", "ExecutionId", "AutomationAssumeRole", RESUME_KEY];

/// The payload key (and answer field) that carries a long fix's continuation point from one
/// turn to the next. A resumable document holds it in a runbook variable (`aws:updateVariable`),
/// whose strings are 1 to 512 characters, so "no continuation point" is spelled
/// [`RESUME_FROM_START`] and a point is `after:<text>` (see [`FixOutcome::with_resume`]).
pub const RESUME_KEY: &str = "Resume";
/// The variable's value before any turn has answered: start from the beginning.
pub const RESUME_FROM_START: &str = "start";
const RESUME_AFTER: &str = "after:";
/// The longest continuation text a turn hands on (the variable's 512 less `after:`).
pub const RESUME_MAX_CHARS: usize = 512 - RESUME_AFTER.len();

/// One request to a fix, decoded from the SSM payload (a flat map of strings) or the CLI.
#[derive(Debug, Clone)]
pub struct FixRequest {
    pub resource_id: String,
    pub dry_run: bool,
    pub execution_id: Option<String>,
    /// Where an earlier turn of this execution stopped (only fixes whose document is resumable
    /// receive one). A hint: the fix must be correct without it, as after a crash.
    pub resume: Option<String>,
    pub params: Params,
}

impl FixRequest {
    pub fn decode(spec: &FixSpec, payload: &Value) -> Result<Self> {
        let map = payload.as_object().ok_or_else(|| Error::MalformedEvent("the fix payload must be a JSON object".into()))?;
        let text = |key: &str| -> Result<Option<String>> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
                Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                Some(other) => Err(Error::invalid_parameter(key, format!("expected a string, got {other}"))),
            }
        };
        let resource_id = text("ResourceId")?.ok_or_else(|| Error::invalid_parameter("ResourceId", "is required"))?;
        if resource_id.len() > 768 || resource_id.chars().any(char::is_control) {
            return Err(Error::invalid_parameter("ResourceId", "is not a Config resource id"));
        }
        let dry_run = match text("DryRun")?.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(Error::invalid_parameter("DryRun", format!("expected \"true\" or \"false\", got {other:?}"))),
        };
        let raw: BTreeMap<String, Value> =
            map.iter().filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        let resume = match map.get(RESUME_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == RESUME_FROM_START => None,
            Some(Value::String(s)) => match s.strip_prefix(RESUME_AFTER) {
                Some(point) => Some(point.to_string()),
                None => {
                    return Err(Error::invalid_parameter(
                        RESUME_KEY,
                        format!("expected {RESUME_FROM_START:?} or \"after:<point>\", got {s:?}"),
                    ));
                }
            },
            Some(other) => return Err(Error::invalid_parameter(RESUME_KEY, format!("expected a string, got {other}"))),
        };
        Ok(FixRequest { resource_id, dry_run, execution_id: text("ExecutionId")?, resume, params: Params::parse(spec.parameters, &raw)? })
    }
}

/// What one step of a fix reports; the SSM document branches on `Status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct FixOutcome {
    pub status: FixStatus,
    /// Plain language: what happened, what was kept, what the operator should do next.
    pub message: String,
    pub resource_id: String,
    /// The Config resource type, when the fix knows it: always for a fix of one type; the
    /// snapshot fix sets it once it has found which kind of snapshot the id names.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource_type: Option<String>,
    pub fix: String,
    pub dry_run: bool,
    /// Each change made (or, in a dry run, that would be made), one line each.
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub execution_id: Option<String>,
    /// The continuation point the next turn starts from, as the document's variable holds it
    /// (`after:<point>`); absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resume: Option<String>,
}

impl FixOutcome {
    fn new(status: FixStatus, spec: &FixSpec, req: &FixRequest, message: impl Into<String>) -> Self {
        FixOutcome {
            status,
            message: message.into(),
            resource_id: req.resource_id.clone(),
            resource_type: only_resource_type(spec),
            fix: format!("fix-{}", spec.name),
            dry_run: req.dry_run,
            changes: Vec::new(),
            execution_id: req.execution_id.clone(),
            resume: None,
        }
    }
    pub fn succeeded(spec: &FixSpec, req: &FixRequest, message: impl Into<String>) -> Self {
        Self::new(FixStatus::Succeeded, spec, req, message)
    }
    pub fn in_progress(spec: &FixSpec, req: &FixRequest, message: impl Into<String>) -> Self {
        Self::new(FixStatus::InProgress, spec, req, message)
    }
    pub fn failed(spec: &FixSpec, req: &FixRequest, message: impl Into<String>) -> Self {
        Self::new(FixStatus::Failed, spec, req, message)
    }
    pub fn with_change(mut self, change: impl Into<String>) -> Self {
        self.changes.push(change.into());
        self
    }
    /// Hands the next turn its continuation point. A point longer than a runbook variable holds
    /// is cut to its first [`RESUME_MAX_CHARS`] characters: a fix that resumes *after* a prefix
    /// of where it stopped re-examines a little and never skips anything.
    pub fn with_resume(mut self, point: &str) -> Self {
        let point: String = point.chars().take(RESUME_MAX_CHARS).collect();
        self.resume = (!point.is_empty()).then(|| format!("{RESUME_AFTER}{point}"));
        self
    }
    pub fn with_resource_type(mut self, resource_type: &str) -> Self {
        self.resource_type = Some(resource_type.to_string());
        self
    }
}

/// The resource type of a fix that handles exactly one.
fn only_resource_type(spec: &FixSpec) -> Option<String> {
    match spec.resource_types {
        [only] => Some(only.to_string()),
        _ => None,
    }
}

/// Everything a fix may use: clients and the per-invocation KMS cache.
pub struct FixContext {
    pub sdk: SdkConfig,
    pub kms: KeyResolver,
    overrides: ClientOverrides,
}

impl FixContext {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::with_overrides(sdk, ClientOverrides::default())
    }

    /// This context with `client` in place of the one its type would be built from `sdk` (a KMS
    /// client also backs `kms`); for tests that reconcile without a runner.
    pub fn with_client<C: Clone + Send + Sync + 'static>(self, client: C) -> Self {
        Self::with_overrides(&self.sdk, self.overrides.with(client))
    }

    fn with_overrides(sdk: &SdkConfig, overrides: ClientOverrides) -> Self {
        FixContext { sdk: sdk.clone(), kms: KeyResolver::new(overrides.client(sdk, crate::clients::kms)), overrides }
    }

    /// The client of type `C` a test registered, else `build(&self.sdk)`:
    /// `ctx.client(aws_sdk_ec2::Client::new)`.
    pub fn client<C: Clone + 'static>(&self, build: impl FnOnce(&SdkConfig) -> C) -> C {
        self.overrides.client(&self.sdk, build)
    }

    /// Where a long fix counts what it has done while a turn runs (a progress bar in `atrest
    /// remediate`); counts into nothing when nobody watches.
    pub fn progress(&self) -> crate::progress::WorkProgress {
        self.overrides.get().unwrap_or_default()
    }
}

#[async_trait]
pub trait Fix: Send + Sync {
    fn spec(&self) -> &'static FixSpec;

    /// Observe, take the next step, report. Must be safe to call again at any point, and must
    /// change nothing when `req.dry_run` is set.
    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome>;
}

/// How `drive` paces the loop (the SSM document sleeps between invocations too).
#[derive(Debug, Clone)]
pub struct DriveOptions {
    pub max_steps: usize,
    pub pause: Duration,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions { max_steps: 720, pause: Duration::from_secs(5) }
    }
}

pub struct FixRunner {
    fix: Arc<dyn Fix>,
    sdk: SdkConfig,
    overrides: ClientOverrides,
    alerts: Option<AlertPublisher>,
}

impl FixRunner {
    pub fn new(fix: Arc<dyn Fix>, sdk: &SdkConfig, alerts: Option<AlertPublisher>) -> Self {
        FixRunner { fix, sdk: sdk.clone(), overrides: ClientOverrides::default(), alerts }
    }

    /// Uses `client` wherever a client of its type would be built from the SDK configuration,
    /// in every context given to the fix (tests use mocked ones where the stand-in is wrong).
    pub fn with_client<C: Clone + Send + Sync + 'static>(mut self, client: C) -> Self {
        self.overrides = self.overrides.with(client);
        self
    }

    /// Lets a watcher see what the fix counts while a turn runs (`FixContext::progress`).
    pub fn with_progress(mut self, progress: crate::progress::WorkProgress) -> Self {
        self.overrides = self.overrides.with(progress);
        self
    }

    pub fn spec(&self) -> &'static FixSpec {
        self.fix.spec()
    }

    /// One invocation, as the SSM step makes it. Never fails: errors become a `Failed` outcome
    /// (or `InProgress` when transient, so the loop tries again). Terminal outcomes of real runs
    /// are published to the alert topic.
    pub async fn step(&self, payload: &Value) -> FixOutcome {
        let spec = self.spec();
        let req = match FixRequest::decode(spec, payload) {
            Ok(req) => req,
            Err(e) => {
                let resource_id = payload.get("ResourceId").and_then(Value::as_str).unwrap_or("").chars().take(256).collect();
                let outcome = FixOutcome {
                    status: FixStatus::Failed,
                    message: format!("Nothing was changed: {e}."),
                    resource_id,
                    resource_type: only_resource_type(spec),
                    fix: format!("fix-{}", spec.name),
                    dry_run: false,
                    changes: Vec::new(),
                    execution_id: payload.get("ExecutionId").and_then(Value::as_str).map(str::to_string),
                    resume: None,
                };
                self.publish(&outcome).await;
                return outcome;
            }
        };
        self.step_request(&req).await
    }

    pub async fn step_request(&self, req: &FixRequest) -> FixOutcome {
        let spec = self.spec();
        let span = tracing::info_span!("remediate", fix = spec.name, resource_id = %req.resource_id, dry_run = req.dry_run);
        let _guard = span.enter();
        let ctx = FixContext::with_overrides(&self.sdk, self.overrides.clone());
        let outcome = match self.fix.reconcile(&ctx, req).await {
            Ok(outcome) => outcome,
            Err(e) if e.class() == ErrorClass::Transient => {
                tracing::warn!(error = %e, "transient failure; the next step will retry");
                let outcome = FixOutcome::in_progress(spec, req, format!("Waiting to retry after a temporary AWS error: {e}"));
                // The next turn picks up where this one was asked to, not from the start.
                match &req.resume {
                    Some(point) => outcome.with_resume(point),
                    None => outcome,
                }
            }
            Err(e) => FixOutcome::failed(spec, req, failure_message(&e)),
        };
        tracing::info!(status = ?outcome.status, message = %outcome.message, changes = outcome.changes.len(), "step finished");
        if outcome.status.is_terminal() && !req.dry_run {
            self.publish(&outcome).await;
        }
        outcome
    }

    /// The SSM document's loop, locally: step until terminal or `max_steps`.
    pub async fn drive(&self, req: &FixRequest, options: &DriveOptions) -> FixOutcome {
        let mut last = None;
        let mut req = req.clone();
        for step in 0..options.max_steps.max(1) {
            if step > 0 {
                tokio::time::sleep(options.pause).await;
            }
            let outcome = self.step_request(&req).await;
            if outcome.status.is_terminal() {
                return outcome;
            }
            // As a resumable document's variable does: each turn starts where the last one said.
            req.resume = outcome.resume.as_deref().and_then(|r| r.strip_prefix(RESUME_AFTER)).map(str::to_string);
            last = Some(outcome);
        }
        let mut outcome = last.unwrap_or_else(|| FixOutcome::in_progress(self.spec(), &req, ""));
        outcome.status = FixStatus::Failed;
        outcome.message = format!("Gave up after {} steps; last state: {}", options.max_steps, outcome.message);
        outcome
    }

    async fn publish(&self, outcome: &FixOutcome) {
        if let Some(alerts) = &self.alerts {
            let alert = fix_outcome_alert(self.spec(), outcome, &crate::clients::region_name(&self.sdk));
            // A lost email must not turn a successful fix into a failed one; it is logged.
            if let Err(e) = alerts.publish(&alert).await {
                tracing::error!(error = %e, "could not publish the remediation result to SNS");
            }
        }
    }
}

fn failure_message(error: &Error) -> String {
    match error {
        Error::AccessDenied { .. } => format!("Nothing more was changed: {error}."),
        _ => format!("The fix stopped: {error}."),
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use serde_json::json;

    static SPEC: FixSpec = FixSpec { name: "t", description: "", resource_types: &["AWS::S3::Bucket"], parameters: &[], disruptive: false };

    #[test]
    fn the_continuation_point_travels_as_the_document_variable_holds_it() {
        let decode = |resume: Value| FixRequest::decode(&SPEC, &json!({"ResourceId": "b", "Resume": resume}));
        assert_eq!(decode(json!("start")).unwrap().resume, None);
        assert_eq!(decode(Value::Null).unwrap().resume, None);
        assert_eq!(decode(json!("after:data/0042")).unwrap().resume.as_deref(), Some("data/0042"));
        assert_eq!(decode(json!("after:start")).unwrap().resume.as_deref(), Some("start"));
        assert!(decode(json!("data/0042")).is_err());
        assert!(decode(json!(42)).is_err());
        let req = decode(json!("start")).unwrap();
        let outcome = FixOutcome::in_progress(&SPEC, &req, "").with_resume("data/0042");
        assert_eq!(outcome.resume.as_deref(), Some("after:data/0042"));
        assert_eq!(serde_json::to_value(&outcome).unwrap()["Resume"], json!("after:data/0042"));
        // Cut to what a runbook variable holds: a prefix sorts before the key it starts.
        let long = "é".repeat(700);
        let cut = FixOutcome::in_progress(&SPEC, &req, "").with_resume(&long).resume.unwrap();
        assert_eq!(cut.chars().count(), 512);
        assert!(long.starts_with(cut.strip_prefix("after:").unwrap()));
        assert_eq!(FixOutcome::in_progress(&SPEC, &req, "").with_resume("").resume, None);
    }
}
