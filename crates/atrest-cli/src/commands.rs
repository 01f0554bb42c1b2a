//! The subcommands.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use atrest::config_api::Delivery;
use atrest::event::Invocation;
use atrest::progress::WorkProgress;
use atrest::rule::Report;
use atrest::{Compliance, Evaluation, FixOutcome, FixRunner, FixStatus, RuleRunner};
use atrest_automation::{Execution, Progress, RunOptions, Stack, Template};
use aws_config::SdkConfig;
use aws_smithy_types::DateTime;
use serde::Serialize;
use serde_json::Value;

use crate::catalog;
use crate::output::{Format, ReportFormat, print_json, table};
use crate::report;
use crate::targets::{self, Scope};

pub fn rules(format: Format) -> anyhow::Result<()> {
    let rules = catalog::rules();
    let fixes = catalog::fixes();
    if format == Format::Json {
        let rule_specs: Vec<_> = rules.iter().map(|r| r.spec()).collect();
        let fix_specs: Vec<_> = fixes.iter().map(|f| f.spec()).collect();
        return print_json(&serde_json::json!({ "rules": rule_specs, "fixes": fix_specs }));
    }
    let mut t = table(&["Rule", "Resource types", "Trigger", "Parameters", "Fix"]);
    for r in &rules {
        let s = r.spec();
        let params: Vec<String> = s
            .all_parameters()
            .iter()
            .map(|p| if p.default.is_empty() { p.name.to_string() } else { format!("{}={}", p.name, p.default) })
            .collect();
        let triggers: Vec<String> = s.triggers.iter().map(|t| format!("{t:?}")).collect();
        t.add_row(vec![
            s.name.to_string(),
            s.resource_types.join("\n"),
            triggers.join("\n"),
            params.join("\n"),
            s.fix.unwrap_or("-").to_string(),
        ]);
    }
    println!("{t}");
    let mut t = table(&["Fix", "Resource types", "Parameters", "Disruptive"]);
    for f in &fixes {
        let s = f.spec();
        let params: Vec<String> = s
            .parameters
            .iter()
            .map(|p| if p.default.is_empty() { p.name.to_string() } else { format!("{}={}", p.name, p.default) })
            .collect();
        t.add_row(vec![
            s.name.to_string(),
            s.resource_types.join("\n"),
            params.join("\n"),
            if s.disruptive { "yes" } else { "no" }.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn report_failures(report: &Report) -> bool {
    for f in &report.failures {
        eprintln!("error: {} {} was not evaluated: {}", f.resource_type, f.resource_id, f.error);
    }
    !report.failures.is_empty()
}

/// Returns whether every resource could be evaluated.
pub async fn evaluate(sdk: &SdkConfig, rule_name: &str, event_file: &Path, put: bool, test_mode: bool) -> anyhow::Result<bool> {
    let rule = catalog::rule(rule_name).with_context(|| format!("unknown rule {rule_name}; known: {}", catalog::rule_names()))?;
    let text = std::fs::read_to_string(event_file).with_context(|| format!("reading {}", event_file.display()))?;
    let payload: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", event_file.display()))?;
    let invocation = Invocation::decode(&payload)?;
    let delivery = if put {
        Delivery::Put { result_token: invocation.result_token.clone().context("--put needs the event's resultToken")? }
    } else if test_mode {
        Delivery::TestMode
    } else {
        Delivery::None
    };
    let report = RuleRunner::new(rule, sdk).handle(&invocation, &delivery).await?;
    print_json(&report.evaluations)?;
    Ok(!report_failures(&report))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleEvaluation {
    /// Where the resource is, when the sweep covered more than the configured account and
    /// region (`--region`, `--all-regions`, `--role-arn`, `--accounts-file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub config_rule_name: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// The sweep behind `scan` and `demo`. Progress goes to stderr, only on a terminal.
/// Rule parameters per rule name: `{"<rule>": {"<param>": value}}`.
pub type RuleParams = BTreeMap<String, BTreeMap<String, Value>>;

/// The `--rule-params` file: {"<rule>": {"<param>": value}}; none given, no overrides.
pub fn read_rule_params(params_file: Option<&Path>) -> anyhow::Result<RuleParams> {
    Ok(match params_file {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}: expected {{\"<rule>\": {{\"<param>\": value}}}}", path.display()))?,
        None => BTreeMap::new(),
    })
}

pub async fn sweep(sdk: &SdkConfig, rule_names: &[String], params_file: Option<&Path>) -> anyhow::Result<(Vec<RuleEvaluation>, bool)> {
    let overrides = read_rule_params(params_file)?;
    sweep_with_params(sdk, rule_names, &overrides)
        .await
        .with_context(|| params_file.map(|p| p.display().to_string()).unwrap_or_else(|| "sweep".into()))
}

pub async fn sweep_with_params(
    sdk: &SdkConfig,
    rule_names: &[String],
    overrides: &RuleParams,
) -> anyhow::Result<(Vec<RuleEvaluation>, bool)> {
    let mut selected = Vec::new();
    if rule_names.is_empty() {
        selected = catalog::rules();
    } else {
        for name in rule_names {
            selected.push(catalog::rule(name).with_context(|| format!("unknown rule {name}; known: {}", catalog::rule_names()))?);
        }
    }
    for name in overrides.keys() {
        if catalog::rule(name).is_none() {
            bail!("unknown rule {name}; known: {}", catalog::rule_names());
        }
    }
    let now = DateTime::from(std::time::SystemTime::now());
    let mut all = Vec::new();
    let mut complete = true;
    for rule in selected {
        let spec = rule.spec();
        let raw =
            overrides.iter().find(|(k, _)| k.strip_prefix("rule-").unwrap_or(k) == spec.name).map(|(_, v)| v.clone()).unwrap_or_default();
        let params = spec.parse_params(&raw).with_context(|| format!("parameters of {}", spec.name))?;
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::with_template("{msg:40} {bar:30} {pos}/{len} {elapsed}").expect("static template"));
        bar.set_message(spec.name);
        let progress = {
            let bar = bar.clone();
            move |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        };
        let report = RuleRunner::new(rule.clone(), sdk).sweep(params, now, Some(&progress)).await?;
        bar.finish_and_clear();
        complete &= !report_failures(&report);
        all.extend(report.evaluations.into_iter().map(|evaluation| RuleEvaluation {
            account: None,
            region: None,
            config_rule_name: spec.name.to_string(),
            evaluation,
        }));
    }
    Ok((all, complete))
}

pub async fn scan(
    sdk: &SdkConfig,
    rule_names: &[String],
    params_file: Option<&Path>,
    scope: &Scope<'_>,
    format: ReportFormat,
) -> anyhow::Result<bool> {
    let (evaluations, complete) = if scope.is_default() {
        sweep(sdk, rule_names, params_file).await?
    } else {
        let params = read_rule_params(params_file)?;
        let mut all = Vec::new();
        let mut complete = true;
        for target in targets::resolve(sdk, scope).await? {
            eprintln!("Sweeping account {} in {}", target.account, target.region);
            let (found, done) = sweep_with_params(&target.sdk, rule_names, &params).await?;
            complete &= done;
            all.extend(found.into_iter().map(|e| RuleEvaluation {
                account: Some(target.account.clone()),
                region: Some(target.region.clone()),
                ..e
            }));
        }
        (all, complete)
    };
    match format {
        ReportFormat::Json => print_json(&evaluations)?,
        ReportFormat::Csv => print!("{}", report::csv(&evaluations)?),
        ReportFormat::Html => print!("{}", report::html(&evaluations, &DateTime::from(std::time::SystemTime::now()).to_string())),
        ReportFormat::Table => {
            let many = !scope.is_default();
            let mut header = vec!["Rule", "Resource", "Compliance", "Annotation"];
            if many {
                header.insert(0, "Account / Region");
            }
            let mut t = table(&header);
            for e in &evaluations {
                let ev = &e.evaluation;
                let mut row = vec![
                    e.config_rule_name.clone(),
                    format!("{}\n{}", ev.compliance_resource_id, ev.compliance_resource_type),
                    ev.compliance_type.to_string(),
                    ev.annotation.clone().unwrap_or_default(),
                ];
                if many {
                    row.insert(0, format!("{}\n{}", e.account.as_deref().unwrap_or_default(), e.region.as_deref().unwrap_or_default()));
                }
                t.add_row(row);
            }
            println!("{t}");
            let non_compliant = evaluations.iter().filter(|e| e.evaluation.compliance_type == Compliance::NonCompliant).count();
            eprintln!("{} resources evaluated, {non_compliant} NON_COMPLIANT", evaluations.len());
        }
    }
    Ok(complete)
}

/// How a remediation run went: the worker's last answer (its fields at the top level, as the
/// Lambda returns them) and the Automation run around it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemediationReport {
    #[serde(flatten)]
    pub outcome: FixOutcome,
    pub automation: AutomationSummary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutomationSummary {
    /// The template's document (logical id), as the console would run it.
    pub document: String,
    /// `Success` or `Failed`, as SSM reports the execution.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    pub execution_id: String,
    /// How many times the worker was invoked.
    pub turns: usize,
}

impl RemediationReport {
    pub fn succeeded(&self) -> bool {
        self.automation.status == "Success" && self.outcome.status == FixStatus::Succeeded
    }
}

/// A spinner on stderr while a remediation runs (hidden when stderr is not a terminal, so
/// scripts see only the JSON on stdout): the current turn, the worker's status and message,
/// and the waits in between.
pub struct RemediationProgress {
    bar: indicatif::ProgressBar,
    /// Whether the last turn answered InProgress (the document's closing 1-second step is a
    /// wait too, but no turn follows it).
    in_progress: std::sync::atomic::AtomicBool,
    /// What a long fix counts while a turn runs (objects examined and copied), drawn with its
    /// rate by a ticker until `finish`.
    work: WorkProgress,
    ticker: tokio::task::JoinHandle<()>,
}

impl RemediationProgress {
    pub fn on_stderr(fix: &str, resource_id: &str) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {prefix} {elapsed} {wide_msg}").expect("static template"));
        bar.set_prefix(format!("{fix} {resource_id}"));
        bar.set_message("starting the document");
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let work = WorkProgress::default();
        let ticker = tokio::spawn(draw_work(bar.clone(), work.clone(), format!("{fix} {resource_id}")));
        RemediationProgress { bar, in_progress: false.into(), work, ticker }
    }

    /// The counters the fix reports into (give them to `remediate`).
    pub fn work(&self) -> &WorkProgress {
        &self.work
    }

    pub fn show(&self, progress: Progress<'_>) {
        match progress {
            Progress::Turn { number, outcome } => {
                self.in_progress.store(outcome.status == FixStatus::InProgress, std::sync::atomic::Ordering::Relaxed);
                self.bar.set_message(format!("turn {number}: {:?}: {}", outcome.status, outcome.message));
                // Each change stays on screen above the spinner.
                for change in &outcome.changes {
                    self.bar.println(format!("  {change}"));
                }
            }
            Progress::Waiting(wait) if self.in_progress.load(std::sync::atomic::Ordering::Relaxed) => {
                let last = self.bar.message();
                self.bar.set_message(format!("{last} (next turn in {} s)", wait.as_secs()));
            }
            Progress::Waiting(_) => {}
        }
    }

    pub fn finish(&self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
        let (examined, changed) = self.work.counts();
        if examined > 0 {
            let (items, changed_word) = self.work.words();
            eprintln!("{examined} {items} examined, {changed} {changed_word}");
        }
    }
}

/// Puts the fix's counts and their rate in the bar's prefix, four times a second, once there
/// are any: "fix-... bucket: 12400 objects examined (610/s), 9800 copied".
async fn draw_work(bar: indicatif::ProgressBar, work: WorkProgress, prefix: String) {
    let mut first: Option<(std::time::Instant, u64)> = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        let (examined, changed) = work.counts();
        if examined == 0 {
            continue;
        }
        let (since, base) = *first.get_or_insert_with(|| (std::time::Instant::now(), examined));
        let seconds = since.elapsed().as_secs_f64();
        let rate = if seconds >= 1.0 { format!(" ({:.0}/s)", (examined - base) as f64 / seconds) } else { String::new() };
        let (items, changed_word) = work.words();
        bar.set_prefix(format!("{prefix}: {examined} {items} examined{rate}, {changed} {changed_word}"));
    }
}

/// Runs a fix the way the Config console's "Remediate" button does: the template's
/// remediation configuration for that fix gives the document and its static parameters, `params`
/// override them (document parameter names), and the document runs here, invoking the worker
/// code in-process against the configured account.
pub async fn remediate(
    sdk: &SdkConfig,
    fix_name: &str,
    resource_id: &str,
    params: &[(String, String)],
    dry_run: bool,
    options: &RunOptions<'_>,
    work: Option<&WorkProgress>,
) -> anyhow::Result<RemediationReport> {
    let stack = Stack { region: sdk.region().map(|r| r.to_string()).unwrap_or_else(|| Stack::default().region), ..Stack::default() };
    let template = Template::embedded().map_err(anyhow::Error::msg)?.for_stack(stack);
    // A rule names one remediation configuration; a fix does unless it serves several rules.
    let (fix, (remediation, document)) = match catalog::rule(fix_name) {
        Some(rule) => {
            let fix_of_rule = rule.spec().fix.and_then(catalog::fix).with_context(|| format!("the rule {fix_name} has no fix"))?;
            let logical = format!("{}Rule", atrest_template::logical_id(rule.spec().name));
            (fix_of_rule, template.remediation_for_rule(&logical).map_err(anyhow::Error::msg)?)
        }
        None => {
            let fix = catalog::fix(fix_name).with_context(|| {
                format!("unknown fix or rule {fix_name}; fixes: {}; rules: {}", catalog::fix_names(), catalog::rule_names())
            })?;
            let found = template.remediation_for_worker(&format!("fix-{}", fix.spec().name)).map_err(anyhow::Error::msg)?;
            (fix, found)
        }
    };
    let binary = format!("fix-{}", fix.spec().name);

    let mut given = remediation.execution_parameters(resource_id);
    for (k, v) in params {
        given.insert(k.clone(), vec![v.clone()]);
    }
    if dry_run {
        given.insert("DryRun".into(), vec!["true".into()]);
    }
    let execution_id = uuid::Uuid::new_v4().to_string();
    let mut runner = FixRunner::new(fix.clone(), sdk, atrest::alerts::AlertPublisher::from_env(sdk));
    if let Some(work) = work {
        runner = runner.with_progress(work.clone());
    }
    let runner = Arc::new(runner);
    let worker = |name: &str| (name == binary).then(|| runner.clone());
    let execution = match document.parameters_for(&given) {
        Ok(settled) => document.run(&settled, &execution_id, &worker, options).await,
        Err(refused) => Execution::refused(refused.to_string()),
    };
    let outcome = execution.last_outcome().cloned().unwrap_or_else(|| FixOutcome {
        status: FixStatus::Failed,
        message: format!("Nothing was changed: {}", execution.failure_message.as_deref().unwrap_or("the run did not start")),
        resource_id: resource_id.to_string(),
        resource_type: remediation.resource_type.clone(),
        fix: binary.clone(),
        dry_run,
        changes: Vec::new(),
        execution_id: Some(execution_id.clone()),
        resume: None,
    });
    Ok(RemediationReport {
        outcome,
        automation: AutomationSummary {
            document: document.logical_id.clone(),
            status: execution.status.clone(),
            failure_message: execution.failure_message.clone(),
            execution_id,
            turns: execution.worker_outcomes.len(),
        },
    })
}
