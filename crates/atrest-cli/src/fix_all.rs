//! `atrest fix`: find and fix in one command. A sweep finds the NON_COMPLIANT resources, and
//! each is remediated the way `atrest remediate` does it (the stack's remediation configuration
//! for its rule, the SSM document run locally), many at a time.
//!
//! Disruptive fixes (replacing an RDS database, swapping EBS volumes under a stopped instance)
//! run only when the operator names them with `--include`; the others run by default, as their
//! automatic remediation does in the stack. Ctrl-C stops new fixes from starting and lets the
//! running ones finish their turns; a rerun picks up where each fix stood, since fixes are
//! reconcilers that find their progress in AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, bail};
use atrest::{Compliance, FixStatus};
use atrest_automation::{RunOptions, Sleep};
use aws_config::SdkConfig;
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::catalog;
use crate::commands::{RuleParams, remediate, sweep_with_params};
use crate::output::table;
use crate::targets::{self, Scope, Target};

/// What the operator asked for.
pub struct FixAllOptions {
    /// Rules to sweep (all when empty).
    pub rules: Vec<String>,
    /// Rule parameters, as the stack passes them (`--rule-params`).
    pub rule_params: RuleParams,
    /// Disruptive fixes the operator names: only these of them run.
    pub include: Vec<String>,
    pub dry_run: bool,
    /// Remediations in flight at once.
    pub concurrency: usize,
    /// What each document's `aws:sleep` between turns does.
    pub sleep: Sleep,
    /// Turns per remediation before it is left for a rerun.
    pub max_turns: usize,
}

/// What happened to one NON_COMPLIANT resource.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FixRecord {
    /// Where the resource is, when the run covered more than the configured account and region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub rule: String,
    pub resource_type: String,
    pub resource_id: String,
    pub before: Compliance,
    /// The rule's annotation: why it was NON_COMPLIANT.
    pub annotation: String,
    /// The fix that applies, if the rule has one.
    pub fix: Option<String>,
    pub action: Action,
    /// The fix's last answer (or why nothing ran).
    pub message: String,
    /// Each change made, or in a dry run that would be made.
    pub changes: Vec<String>,
    /// The rule's verdict after the fixes (absent in a dry run or when nothing ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Compliance>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// The fix ran and reported Succeeded (in a dry run: what it would do).
    Fixed,
    DryRun,
    Failed,
    /// Still in progress after `max_turns`: a rerun resumes it.
    InProgress,
    /// Disruptive and not named with `--include`.
    SkippedDisruptive,
    /// The rule has no fix.
    NoFix,
    /// Not started: the run was interrupted first.
    NotStarted,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Fixed => "fixed",
            Action::DryRun => "would fix (dry run)",
            Action::Failed => "FAILED",
            Action::InProgress => "still in progress",
            Action::SkippedDisruptive => "skipped: disruptive",
            Action::NoFix => "no fix",
            Action::NotStarted => "not started (interrupted)",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FixAllReport {
    /// Resources swept, per compliance.
    pub evaluated: BTreeMap<String, usize>,
    pub resources: Vec<FixRecord>,
    /// False when a rule could not evaluate every resource.
    pub sweep_complete: bool,
    pub interrupted: bool,
}

impl FixAllReport {
    pub fn count(&self, action: Action) -> usize {
        self.resources.iter().filter(|r| r.action == action).count()
    }
    /// Exit status 0: every fix that ran succeeded and the sweep was complete.
    pub fn succeeded(&self) -> bool {
        self.sweep_complete && !self.interrupted && !self.resources.iter().any(|r| matches!(r.action, Action::Failed | Action::InProgress))
    }
}

/// Refuses names that are not fixes before anything runs.
fn check_included(include: &[String]) -> anyhow::Result<BTreeSet<String>> {
    include
        .iter()
        .map(|name| match catalog::fix(name) {
            Some(fix) => Ok(fix.spec().name.to_string()),
            None => bail!("unknown fix {name} in --include; fixes: {}", catalog::fix_names()),
        })
        .collect()
}

/// Sweeps, fixes what the options allow, sweeps again: in the configured account and region,
/// or in each account and region of `scope`, one after the other. `stop` set (Ctrl-C) means:
/// start no further fix.
pub async fn find_and_fix(sdk: &SdkConfig, options: &FixAllOptions, scope: &Scope<'_>, stop: &AtomicBool) -> anyhow::Result<FixAllReport> {
    let include = check_included(&options.include)?;
    if scope.is_default() {
        return fix_in(sdk, None, options, &include, stop).await;
    }
    let mut report = FixAllReport { evaluated: BTreeMap::new(), resources: Vec::new(), sweep_complete: true, interrupted: false };
    for target in targets::resolve(sdk, scope).await? {
        if stop.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        eprintln!("Account {} in {}", target.account, target.region);
        let part = fix_in(&target.sdk, Some(&target), options, &include, stop).await?;
        for (compliance, n) in part.evaluated {
            *report.evaluated.entry(compliance).or_insert(0) += n;
        }
        report.resources.extend(part.resources);
        report.sweep_complete &= part.sweep_complete;
        report.interrupted |= part.interrupted;
    }
    Ok(report)
}

/// One account and region.
async fn fix_in(
    sdk: &SdkConfig,
    target: Option<&Target>,
    options: &FixAllOptions,
    include: &BTreeSet<String>,
    stop: &AtomicBool,
) -> anyhow::Result<FixAllReport> {
    let (before, sweep_complete) = sweep_with_params(sdk, &options.rules, &options.rule_params).await?;
    let mut evaluated = BTreeMap::new();
    for e in &before {
        *evaluated.entry(e.evaluation.compliance_type.to_string()).or_insert(0) += 1;
    }

    let mut records = Vec::new();
    for e in before.into_iter().filter(|e| e.evaluation.compliance_type == Compliance::NonCompliant) {
        let fix = catalog::rule(&e.config_rule_name).and_then(|r| r.spec().fix).and_then(catalog::fix);
        let (action, message) = match &fix {
            None => (Action::NoFix, "The rule has no fix: see its annotation.".to_string()),
            Some(f) if f.spec().disruptive && !include.contains(f.spec().name) => {
                (Action::SkippedDisruptive, format!("{} is disruptive: name it with --include {} to run it.", f.spec().name, f.spec().name))
            }
            Some(_) => (Action::NotStarted, String::new()),
        };
        records.push(FixRecord {
            account: target.map(|t| t.account.clone()),
            region: target.map(|t| t.region.clone()),
            rule: e.config_rule_name,
            resource_type: e.evaluation.compliance_resource_type,
            resource_id: e.evaluation.compliance_resource_id,
            before: Compliance::NonCompliant,
            annotation: e.evaluation.annotation.unwrap_or_default(),
            fix: fix.map(|f| f.spec().name.to_string()),
            action,
            message,
            changes: Vec::new(),
            after: None,
        });
    }

    let to_run: Vec<usize> = records.iter().enumerate().filter(|(_, r)| r.action == Action::NotStarted).map(|(i, _)| i).collect();
    let progress = FixProgress::on_stderr(to_run.len());
    let run_options = RunOptions { max_turns: options.max_turns, sleep: options.sleep, on_progress: None };
    let results: Vec<(usize, Option<Ran>)> = stream::iter(to_run)
        .map(|i| {
            let record = &records[i];
            let (rule, resource_id, progress, run_options) = (&record.rule, &record.resource_id, &progress, &run_options);
            async move {
                if stop.load(Ordering::SeqCst) {
                    return (i, None);
                }
                progress.started();
                // By rule: its remediation configuration (a fix may serve several rules).
                let ran = remediate(sdk, rule, resource_id, &[], options.dry_run, run_options, None).await;
                let result = match ran {
                    Ok(report) => {
                        let action = match (report.succeeded(), report.outcome.status, options.dry_run) {
                            (true, _, true) => Action::DryRun,
                            (true, _, false) => Action::Fixed,
                            (false, FixStatus::InProgress, _) => Action::InProgress,
                            (false, _, _) => Action::Failed,
                        };
                        let message = match (&report.automation.failure_message, action) {
                            (Some(failure), Action::Failed | Action::InProgress) => failure.clone(),
                            _ => report.outcome.message.clone(),
                        };
                        (action, message, report.outcome.changes)
                    }
                    Err(e) => (Action::Failed, format!("{e:#}"), Vec::new()),
                };
                progress.finished(result.0);
                (i, Some(result))
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    progress.finish();
    for (i, result) in results {
        let record = &mut records[i];
        match result {
            Some((action, message, changes)) => {
                record.action = action;
                record.message = message;
                record.changes = changes;
            }
            None => record.message = "Interrupted before it started: run the command again to fix it.".into(),
        }
    }

    // The verdicts after: one more sweep of the rules whose resources were fixed.
    if !options.dry_run {
        let fixed_rules: BTreeSet<String> = records.iter().filter(|r| r.action == Action::Fixed).map(|r| r.rule.clone()).collect();
        if !fixed_rules.is_empty() {
            let (after, _) = sweep_with_params(sdk, &fixed_rules.into_iter().collect::<Vec<_>>(), &options.rule_params)
                .await
                .context("sweeping again after the fixes")?;
            let verdicts: BTreeMap<(String, String), Compliance> = after
                .into_iter()
                .map(|e| ((e.config_rule_name, e.evaluation.compliance_resource_id), e.evaluation.compliance_type))
                .collect();
            for r in records.iter_mut().filter(|r| r.action == Action::Fixed) {
                r.after = verdicts.get(&(r.rule.clone(), r.resource_id.clone())).copied();
            }
        }
    }
    Ok(FixAllReport { evaluated, resources: records, sweep_complete, interrupted: stop.load(Ordering::SeqCst) })
}

/// How one remediation ended: the action, the last message, the changes.
type Ran = (Action, String, Vec<String>);

/// The table people read at the end (stderr; stdout carries the JSON report).
pub fn print_table(report: &FixAllReport) {
    let many = report.resources.iter().any(|r| r.region.is_some());
    let mut header = vec!["Rule", "Resource", "Before", "Fix outcome", "After"];
    if many {
        header.insert(0, "Account / Region");
    }
    let mut t = table(&header);
    for r in &report.resources {
        let outcome = match &r.fix {
            Some(fix) => format!("{fix}: {}\n{}", r.action.describe(), shorten(&r.message, 160)),
            None => format!("{}\n{}", r.action.describe(), shorten(&r.annotation, 160)),
        };
        let after = r.after.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let mut row = vec![r.rule.clone(), format!("{}\n{}", r.resource_id, r.resource_type), r.before.to_string(), outcome, after];
        if many {
            row.insert(0, format!("{}\n{}", r.account.as_deref().unwrap_or_default(), r.region.as_deref().unwrap_or_default()));
        }
        t.add_row(row);
    }
    eprintln!("{t}");
    let counts: Vec<String> = report.evaluated.iter().map(|(c, n)| format!("{n} {c}")).collect();
    eprintln!(
        "Swept: {}. Fixed {}, failed {}, still in progress {}, would fix {}, skipped as disruptive {}, without a fix {}, not started {}.",
        counts.join(", "),
        report.count(Action::Fixed),
        report.count(Action::Failed),
        report.count(Action::InProgress),
        report.count(Action::DryRun),
        report.count(Action::SkippedDisruptive),
        report.count(Action::NoFix),
        report.count(Action::NotStarted),
    );
    if report.interrupted || report.count(Action::InProgress) > 0 {
        eprintln!("Run the same command again to resume: each fix picks up where it stood in AWS.");
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_string() } else { format!("{}…", text.chars().take(max).collect::<String>()) }
}

/// A bar on stderr (hidden when stderr is not a terminal): fixes done of all, and how many
/// succeeded, failed and are running.
struct FixProgress {
    bar: indicatif::ProgressBar,
    running: AtomicUsize,
    succeeded: AtomicUsize,
    failed: AtomicUsize,
}

impl FixProgress {
    fn on_stderr(total: usize) -> Arc<Self> {
        let bar = indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} fixes {bar:30} {pos}/{len} {elapsed} {wide_msg}").expect("static template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Arc::new(FixProgress { bar, running: 0.into(), succeeded: 0.into(), failed: 0.into() })
    }
    fn started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.redraw();
    }
    fn finished(&self, action: Action) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        match action {
            Action::Fixed | Action::DryRun => self.succeeded.fetch_add(1, Ordering::SeqCst),
            _ => self.failed.fetch_add(1, Ordering::SeqCst),
        };
        self.bar.inc(1);
        self.redraw();
    }
    fn redraw(&self) {
        self.bar.set_message(format!(
            "{} succeeded, {} failed or unfinished, {} running",
            self.succeeded.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.running.load(Ordering::SeqCst)
        ));
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fixes_in_include_are_refused_by_name() {
        let err = check_included(&["no-such-fix".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown fix no-such-fix"), "{err}");
        let named = check_included(&["fix-ebs-encrypt-volumes".into(), "rds-encrypt-instance".into()]).unwrap();
        assert_eq!(named, BTreeSet::from(["ebs-encrypt-volumes".to_string(), "rds-encrypt-instance".to_string()]));
    }

    fn record(action: Action) -> FixRecord {
        FixRecord {
            account: None,
            region: None,
            rule: "r".into(),
            resource_type: "AWS::S3::Bucket".into(),
            resource_id: "b".into(),
            before: Compliance::NonCompliant,
            annotation: String::new(),
            fix: Some("f".into()),
            action,
            message: String::new(),
            changes: vec![],
            after: None,
        }
    }

    #[test]
    fn the_run_succeeds_only_when_no_fix_failed_or_was_left_running() {
        let report = |actions: &[Action], interrupted| FixAllReport {
            evaluated: BTreeMap::new(),
            resources: actions.iter().map(|a| record(*a)).collect(),
            sweep_complete: true,
            interrupted,
        };
        assert!(report(&[Action::Fixed, Action::SkippedDisruptive, Action::NoFix, Action::DryRun], false).succeeded());
        assert!(!report(&[Action::Fixed, Action::Failed], false).succeeded());
        assert!(!report(&[Action::InProgress], false).succeeded());
        assert!(!report(&[Action::Fixed, Action::NotStarted], true).succeeded());
        assert_eq!(serde_json::to_value(record(Action::SkippedDisruptive)).unwrap()["Action"], "SKIPPED_DISRUPTIVE");
    }
}
