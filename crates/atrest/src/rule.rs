//! The Config rule runtime: what rdklib does for Python.
//!
//! A rule supplies its spec, a `judge` (configuration item + parameters → verdict) and, for
//! periodic sweeps, `discover`/`fetch_item`. The runtime does everything else: decoding,
//! status and scope handling, exemptions, oversized items, bounded-concurrency sweeps, stale
//! evaluation cleanup, timestamps, annotation limits and `PutEvaluations`.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_smithy_types::DateTime;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config_api::{self, Delivery};
use crate::error::{Error, ErrorClass, Result};
use crate::evaluation::{Compliance, Evaluation, Verdict};
use crate::event::{Invocation, Trigger};
use crate::item::ConfigurationItem;
use crate::kms::KeyResolver;
use crate::overrides::ClientOverrides;
use crate::params::{ParamKind, ParamSpec, Params};

/// How a rule is triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TriggerKind {
    /// Configuration changes (and oversized changes) of the rule's resource types.
    ConfigurationChange,
    /// Scheduled sweeps of every in-scope resource.
    Periodic,
}

/// What a rule is, for the CLI, the template checks and the docs.
#[derive(Debug, Serialize)]
pub struct RuleSpec {
    /// Also the crate name without the `rule-` prefix; the AWS managed rule's name where we mirror one.
    pub name: &'static str,
    pub description: &'static str,
    pub resource_types: &'static [&'static str],
    pub triggers: &'static [TriggerKind],
    pub parameters: &'static [ParamSpec],
    /// The AWS managed rule identifier this rule can replace, if any.
    pub mirrors: Option<&'static str>,
    /// The fix that remediates this rule's findings.
    pub fix: Option<&'static str>,
}

/// The tag that exempts a resource from every rule; its key is a parameter of every rule.
pub const EXEMPT_TAG_PARAM: ParamSpec = ParamSpec {
    name: "exemptTagKey",
    kind: ParamKind::Text,
    default: "atrest:exempt",
    description: "Resources tagged <key>=true are NOT_APPLICABLE (exempt).",
};

impl RuleSpec {
    /// The rule's own parameters plus the ones every rule accepts.
    pub fn all_parameters(&self) -> Vec<ParamSpec> {
        let mut all = self.parameters.to_vec();
        all.push(EXEMPT_TAG_PARAM);
        all
    }

    pub fn parse_params_json(&self, json: Option<&str>) -> Result<Params> {
        Params::parse_json(&self.all_parameters(), json)
    }

    pub fn parse_params(&self, raw: &std::collections::BTreeMap<String, Value>) -> Result<Params> {
        Params::parse(&self.all_parameters(), raw)
    }
}

/// Everything a rule may use while judging: clients, the per-invocation KMS cache, parameters.
pub struct RuleContext {
    pub sdk: SdkConfig,
    pub kms: KeyResolver,
    pub params: Params,
    overrides: ClientOverrides,
}

impl RuleContext {
    pub fn new(sdk: &SdkConfig, params: Params) -> Self {
        Self::with_overrides(sdk, params, ClientOverrides::default())
    }

    /// This context with `client` in place of the one its type would be built from `sdk` (a KMS
    /// client also backs `kms`); for tests that judge without a runner.
    pub fn with_client<C: Clone + Send + Sync + 'static>(self, client: C) -> Self {
        Self::with_overrides(&self.sdk, self.params, self.overrides.with(client))
    }

    fn with_overrides(sdk: &SdkConfig, params: Params, overrides: ClientOverrides) -> Self {
        RuleContext { sdk: sdk.clone(), kms: KeyResolver::new(overrides.client(sdk, crate::clients::kms)), params, overrides }
    }

    /// The client of type `C` a test registered, else `build(&self.sdk)`:
    /// `ctx.client(aws_sdk_ec2::Client::new)`.
    pub fn client<C: Clone + 'static>(&self, build: impl FnOnce(&SdkConfig) -> C) -> C {
        self.overrides.client(&self.sdk, build)
    }
}

/// A resource found by a periodic sweep: either fully described already (paginated describes)
/// or only named (its state is fetched with `fetch_item`).
// Items are built once and consumed once; boxing them would only add allocations.
#[allow(clippy::large_enum_variant)]
pub enum Discovered {
    Item(ConfigurationItem),
    Id { resource_type: String, resource_id: String },
}

#[async_trait]
pub trait ConfigRule: Send + Sync {
    fn spec(&self) -> &'static RuleSpec;

    /// The verdict for one existing, in-scope, non-exempt resource.
    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict>;

    /// Whether a change notification's item lacks what `judge` needs, so the live state must be
    /// fetched. Rules decide from the item whenever it carries the data.
    fn needs_live_state(&self, _item: &ConfigurationItem) -> bool {
        false
    }

    /// Every in-scope resource in the current account and region.
    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>>;

    /// The live state of one resource as a configuration item; `None` when it no longer exists.
    async fn fetch_item(&self, ctx: &RuleContext, resource_type: &str, resource_id: &str) -> Result<Option<ConfigurationItem>>;
}

/// A resource a sweep could not judge, and why.
#[derive(Debug)]
pub struct Failure {
    pub resource_type: String,
    pub resource_id: String,
    pub error: Error,
}

/// The outcome of one invocation or sweep.
#[derive(Debug, Default)]
pub struct Report {
    /// Evaluations posted (or that would be posted), stale cleanups included.
    pub evaluations: Vec<Evaluation>,
    /// Resources that could not be judged; nothing was posted for them.
    pub failures: Vec<Failure>,
    /// How many of `evaluations` are stale-result cleanups.
    pub stale: usize,
}

/// Progress of a sweep, for progress bars.
pub type ProgressFn = dyn Fn(usize, usize) + Send + Sync;

/// Default bound on concurrent per-resource calls during a sweep: enough to hide latency,
/// low enough not to trip service throttling in a large account.
pub const DEFAULT_SWEEP_CONCURRENCY: usize = 8;

pub struct RuleRunner {
    rule: Arc<dyn ConfigRule>,
    sdk: SdkConfig,
    config: aws_sdk_config::Client,
    overrides: ClientOverrides,
    concurrency: usize,
}

impl RuleRunner {
    pub fn new(rule: Arc<dyn ConfigRule>, sdk: &SdkConfig) -> Self {
        RuleRunner {
            rule,
            sdk: sdk.clone(),
            config: crate::clients::config(sdk),
            overrides: ClientOverrides::default(),
            concurrency: DEFAULT_SWEEP_CONCURRENCY,
        }
    }

    /// Uses `client` wherever a client of its type would be built from the SDK configuration:
    /// in every context given to the rule and, for a Config client, for the runner's own
    /// history reads and `PutEvaluations` (tests use mocked ones where the stand-in is wrong).
    pub fn with_client<C: Clone + Send + Sync + 'static>(mut self, client: C) -> Self {
        self.overrides = self.overrides.with(client);
        if let Some(config) = self.overrides.get() {
            self.config = config;
        }
        self
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn spec(&self) -> &'static RuleSpec {
        self.rule.spec()
    }

    /// Decodes, evaluates and delivers one Config event.
    pub async fn handle(&self, invocation: &Invocation, delivery: &Delivery) -> Result<Report> {
        let params = self.spec().parse_params_json(invocation.rule_parameters.as_deref())?;
        let ctx = RuleContext::with_overrides(&self.sdk, params, self.overrides.clone());
        let report = match &invocation.trigger {
            Trigger::Change { item } => {
                let verdict = self.verdict_for_change(&ctx, item, invocation.event_left_scope).await?;
                Report {
                    evaluations: vec![Evaluation::new(&item.resource_type, &item.resource_id, verdict, item.capture_time)],
                    ..Report::default()
                }
            }
            Trigger::OversizedChange { summary } => {
                let verdict = if invocation.event_left_scope || !summary.status.is_judged() {
                    out_of_scope_verdict(invocation.event_left_scope, summary.status.as_str())
                } else {
                    match self.fetch_oversized(&ctx, &summary.resource_type, &summary.resource_id).await? {
                        Some(item) => self.verdict_for_change(&ctx, &item, false).await?,
                        None => Verdict::not_applicable("the resource no longer exists"),
                    }
                };
                Report {
                    evaluations: vec![Evaluation::new(&summary.resource_type, &summary.resource_id, verdict, summary.capture_time)],
                    ..Report::default()
                }
            }
            Trigger::Scheduled => {
                let mut report = self.sweep_with(&ctx, invocation.notification_time, None).await?;
                if !matches!(delivery, Delivery::None) && !invocation.rule_name.is_empty() {
                    self.add_stale_cleanup(&invocation.rule_name, invocation.notification_time, &mut report).await?;
                }
                report
            }
        };
        config_api::put_evaluations(&self.config, delivery, &report.evaluations).await?;
        Ok(report)
    }

    /// A periodic sweep with the given parameters, without delivering anything (the CLI's `scan`).
    pub async fn sweep(&self, params: Params, timestamp: DateTime, progress: Option<&ProgressFn>) -> Result<Report> {
        let ctx = RuleContext::with_overrides(&self.sdk, params, self.overrides.clone());
        self.sweep_with(&ctx, timestamp, progress).await
    }

    async fn sweep_with(&self, ctx: &RuleContext, timestamp: DateTime, progress: Option<&ProgressFn>) -> Result<Report> {
        let discovered = self.rule.discover(ctx).await?;
        let total = discovered.len();
        if let Some(p) = progress {
            p(0, total);
        }
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<(String, String, Result<Verdict>)> = stream::iter(discovered)
            .map(|found| async {
                let (kind, id, verdict) = match found {
                    Discovered::Item(item) => {
                        let verdict = self.verdict_for_item(ctx, &item).await;
                        (item.resource_type, item.resource_id, verdict)
                    }
                    Discovered::Id { resource_type, resource_id } => {
                        let verdict = match self.rule.fetch_item(ctx, &resource_type, &resource_id).await {
                            Ok(Some(item)) => self.verdict_for_item(ctx, &item).await,
                            Ok(None) => Ok(Verdict::not_applicable("the resource no longer exists")),
                            Err(e) => Err(e),
                        };
                        (resource_type, resource_id, verdict)
                    }
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if let Some(p) = progress {
                    p(n, total);
                }
                (kind, id, verdict)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut report = Report::default();
        for (kind, id, verdict) in results {
            match verdict {
                Ok(v) => report.evaluations.push(Evaluation::new(&kind, &id, v, timestamp)),
                Err(error) => {
                    tracing::warn!(resource_type = %kind, resource_id = %id, %error, "could not judge resource");
                    report.failures.push(Failure { resource_type: kind, resource_id: id, error });
                }
            }
        }
        report.evaluations.sort_by(|a, b| a.compliance_resource_id.cmp(&b.compliance_resource_id));
        Ok(report)
    }

    async fn add_stale_cleanup(&self, rule_name: &str, timestamp: DateTime, report: &mut Report) -> Result<()> {
        // Resources we failed to judge still exist: never clear their old result.
        let seen: HashSet<(String, String)> = report
            .evaluations
            .iter()
            .map(|e| (e.compliance_resource_type.clone(), e.compliance_resource_id.clone()))
            .chain(report.failures.iter().map(|f| (f.resource_type.clone(), f.resource_id.clone())))
            .collect();
        let stale = config_api::stale_resources(&self.config, rule_name, self.spec().resource_types, &seen).await?;
        report.stale = stale.len();
        for (kind, id) in stale {
            let verdict = Verdict::not_applicable("the resource no longer exists or left the rule's scope");
            report.evaluations.push(Evaluation::new(&kind, &id, verdict, timestamp));
        }
        Ok(())
    }

    async fn fetch_oversized(&self, ctx: &RuleContext, resource_type: &str, resource_id: &str) -> Result<Option<ConfigurationItem>> {
        match config_api::fetch_item(&self.config, resource_type, resource_id).await? {
            Some(item) => Ok(Some(item)),
            // Config has no history for it (e.g. recording turned off since): ask the service.
            None => self.rule.fetch_item(ctx, resource_type, resource_id).await,
        }
    }

    async fn verdict_for_change(&self, ctx: &RuleContext, item: &ConfigurationItem, left_scope: bool) -> Result<Verdict> {
        if left_scope || !item.status.is_judged() {
            return Ok(out_of_scope_verdict(left_scope, item.status.as_str()));
        }
        if self.rule.needs_live_state(item) && self.spec().resource_types.contains(&item.resource_type.as_str()) {
            return match self.rule.fetch_item(ctx, &item.resource_type, &item.resource_id).await? {
                Some(live) => self.verdict_for_item(ctx, &live).await,
                None => Ok(Verdict::not_applicable("the resource no longer exists")),
            };
        }
        self.verdict_for_item(ctx, item).await
    }

    /// Scope, status and exemption checks shared by every path, then the rule's own judgement.
    async fn verdict_for_item(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        if !item.status.is_judged() {
            return Ok(out_of_scope_verdict(false, item.status.as_str()));
        }
        if !self.spec().resource_types.contains(&item.resource_type.as_str()) {
            return Ok(Verdict::not_applicable(format!("{} is not a resource type this rule evaluates", item.resource_type)));
        }
        let exempt_key = ctx.params.text(EXEMPT_TAG_PARAM.name).unwrap_or(EXEMPT_TAG_PARAM.default);
        if item.tag(exempt_key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Verdict::not_applicable(format!("exempt: the resource is tagged {exempt_key}=true")));
        }
        self.rule.judge(ctx, item).await
    }

    /// The Lambda entry: never panics on input, answers with a well-formed response.
    ///
    /// Customer errors (bad event, bad parameters, missing permissions) are answered as rdklib
    /// does, with `customerErrorCode`/`customerErrorMessage`, and are not retried. Transient and
    /// internal errors fail the invocation so Lambda's asynchronous retries try again.
    pub async fn handle_lambda(&self, payload: Value) -> std::result::Result<Value, lambda_runtime::Error> {
        let invocation = match Invocation::decode(&payload) {
            Ok(inv) => inv,
            Err(e) => return Ok(customer_error_response(&e)),
        };
        let span = tracing::info_span!("evaluate", rule = %invocation.rule_name, message_type = invocation.message_type(), resource_id = tracing::field::Empty);
        if let Trigger::Change { item } = &invocation.trigger {
            span.record("resource_id", item.resource_id.as_str());
        }
        let _guard = span.enter();
        let delivery = match &invocation.result_token {
            Some(token) => Delivery::Put { result_token: token.clone() },
            None => {
                let e = Error::MalformedEvent("resultToken is missing: Config needs it to accept evaluations".into());
                return Ok(customer_error_response(&e));
            }
        };
        match self.handle(&invocation, &delivery).await {
            Ok(report) => {
                for f in &report.failures {
                    tracing::error!(resource_id = %f.resource_id, error = %f.error, "resource not evaluated");
                }
                let non_compliant = report.evaluations.iter().filter(|e| e.compliance_type == Compliance::NonCompliant).count();
                tracing::info!(
                    evaluations = report.evaluations.len(),
                    non_compliant,
                    stale = report.stale,
                    failures = report.failures.len(),
                    "evaluations delivered"
                );
                if let Some(first) = report.failures.first() {
                    return match first.error.class() {
                        ErrorClass::Customer => Ok(customer_error_response(&first.error)),
                        _ => Err(format!("{} resources could not be evaluated; first: {}", report.failures.len(), first.error).into()),
                    };
                }
                Ok(json!({
                    "ConfigRuleName": invocation.rule_name,
                    "MessageType": invocation.message_type(),
                    "Evaluations": report.evaluations.len(),
                    "NonCompliant": non_compliant,
                    "StaleCleared": report.stale,
                }))
            }
            Err(e) => {
                tracing::error!(error = %e, class = ?e.class(), "evaluation failed");
                match e.class() {
                    ErrorClass::Customer => Ok(customer_error_response(&e)),
                    _ => Err(e.to_string().into()),
                }
            }
        }
    }
}

fn out_of_scope_verdict(left_scope: bool, status: &str) -> Verdict {
    if left_scope {
        Verdict::not_applicable("the resource left the rule's scope")
    } else {
        Verdict::not_applicable(format!("not evaluated: configuration item status is {status}"))
    }
}

fn customer_error_response(error: &Error) -> Value {
    tracing::error!(error = %error, "customer error");
    json!({ "customerErrorCode": error.code(), "customerErrorMessage": error.to_string() })
}
