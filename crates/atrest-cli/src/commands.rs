//! The subcommands.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use atrest::config_api::Delivery;
use atrest::event::Invocation;
use atrest::remediation::DriveOptions;
use atrest::rule::Report;
use atrest::{Compliance, Evaluation, FixOutcome, FixRequest, FixRunner, FixStatus, RuleRunner};
use aws_config::SdkConfig;
use aws_smithy_types::DateTime;
use serde::Serialize;
use serde_json::Value;

use crate::catalog;
use crate::output::{Format, print_json, table};

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
    pub config_rule_name: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// The sweep behind `scan` and `demo`. Progress goes to stderr, only on a terminal.
pub async fn sweep(sdk: &SdkConfig, rule_names: &[String], params_file: Option<&Path>) -> anyhow::Result<(Vec<RuleEvaluation>, bool)> {
    let mut selected = Vec::new();
    if rule_names.is_empty() {
        selected = catalog::rules();
    } else {
        for name in rule_names {
            selected.push(catalog::rule(name).with_context(|| format!("unknown rule {name}; known: {}", catalog::rule_names()))?);
        }
    }
    let overrides: BTreeMap<String, BTreeMap<String, Value>> = match params_file {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}: expected {{\"<rule>\": {{\"<param>\": value}}}}", path.display()))?,
        None => BTreeMap::new(),
    };
    for name in overrides.keys() {
        if catalog::rule(name).is_none() {
            bail!(
                "{}: unknown rule {name}; known: {}",
                params_file.map(|p| p.display().to_string()).unwrap_or_default(),
                catalog::rule_names()
            );
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
        all.extend(report.evaluations.into_iter().map(|evaluation| RuleEvaluation { config_rule_name: spec.name.to_string(), evaluation }));
    }
    Ok((all, complete))
}

pub async fn scan(sdk: &SdkConfig, rule_names: &[String], params_file: Option<&Path>, format: Format) -> anyhow::Result<bool> {
    let (evaluations, complete) = sweep(sdk, rule_names, params_file).await?;
    match format {
        Format::Json => print_json(&evaluations)?,
        Format::Table => {
            let mut t = table(&["Rule", "Resource", "Compliance", "Annotation"]);
            for e in &evaluations {
                let ev = &e.evaluation;
                t.add_row(vec![
                    e.config_rule_name.clone(),
                    format!("{}\n{}", ev.compliance_resource_id, ev.compliance_resource_type),
                    ev.compliance_type.to_string(),
                    ev.annotation.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
            let non_compliant = evaluations.iter().filter(|e| e.evaluation.compliance_type == Compliance::NonCompliant).count();
            eprintln!("{} resources evaluated, {non_compliant} NON_COMPLIANT", evaluations.len());
        }
    }
    Ok(complete)
}

pub fn fix_payload(resource_id: &str, params: &[(String, String)], dry_run: bool) -> Value {
    let mut payload = serde_json::Map::new();
    payload.insert("ResourceId".into(), resource_id.into());
    payload.insert("DryRun".into(), dry_run.to_string().into());
    for (k, v) in params {
        payload.insert(k.clone(), v.clone().into());
    }
    Value::Object(payload)
}

pub async fn remediate(sdk: &SdkConfig, fix_name: &str, payload: &Value, options: &DriveOptions) -> anyhow::Result<FixOutcome> {
    let fix = catalog::fix(fix_name).with_context(|| format!("unknown fix {fix_name}; known: {}", catalog::fix_names()))?;
    let runner = FixRunner::new(fix.clone(), sdk, atrest::alerts::AlertPublisher::from_env(sdk));
    let outcome = match FixRequest::decode(fix.spec(), payload) {
        // A bad request is reported exactly as the Lambda would report it.
        Err(_) => runner.step(payload).await,
        Ok(req) => runner.drive(&req, options).await,
    };
    Ok(outcome)
}

pub fn outcome_succeeded(outcome: &FixOutcome) -> bool {
    outcome.status == FixStatus::Succeeded
}
