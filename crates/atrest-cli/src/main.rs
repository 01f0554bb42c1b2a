use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use atrest_automation::{Progress, RunOptions, Sleep};
use atrest_cli::output::{Format, print_json};
use atrest_cli::{commands, demo, smoke};
use clap::{Parser, Subcommand};

/// Find and fix AWS resources that store data without encryption at rest.
///
/// Uses the standard AWS credential and region chain and honours AWS_ENDPOINT_URL.
/// Results go to stdout; logs and progress go to stderr (set ATREST_LOG=debug for more).
#[derive(Parser)]
#[command(name = "atrest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the rules and fixes, with their resource types, triggers and parameters.
    Rules {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Run a rule's Lambda handler code on a Config event file and print the evaluations.
    Evaluate {
        rule: String,
        #[arg(long)]
        event: PathBuf,
        /// Also send the evaluations to AWS Config (PutEvaluations with the event's resultToken).
        #[arg(long)]
        put: bool,
        /// Send them with TestMode=true: Config validates them and stores nothing.
        #[arg(long, conflicts_with = "put")]
        test_mode: bool,
    },
    /// Sweep the current account and region with every rule (or the named ones).
    Scan {
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// JSON file {"<rule>": {"<param>": value}}, the values the template passes.
        #[arg(long)]
        rule_params: Option<PathBuf>,
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: atrest_cli::output::ReportFormat,
    },
    /// Remediate one resource the way the Config console's "Remediate" button does: the
    /// stack's SSM Automation document for the fix (embedded from template.yaml at build time),
    /// with its remediation configuration's parameters, run here until the worker reports
    /// Succeeded or Failed.
    Remediate {
        /// A fix, or a rule (needed when its fix serves several rules, e.g.
        /// s3-default-encryption-kms for s3-enable-default-encryption with SSE-KMS).
        fix: String,
        /// The AWS Config resource id (bucket name, DbiResourceId, volume id, ...).
        #[arg(long)]
        resource_id: String,
        /// A document parameter, KEY=VALUE (repeatable), e.g. --param SSEAlgorithm=aws:kms.
        /// Overrides the remediation configuration's value.
        #[arg(long = "param", value_parser = parse_key_value)]
        params: Vec<(String, String)>,
        /// Report what would change and change nothing (DryRun=true).
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait between turns while the fix reports InProgress [default: the
        /// document's own wait, 30 s].
        #[arg(long)]
        pause_seconds: Option<u64>,
        /// Give up after this many worker turns (a later run resumes where this one stopped).
        #[arg(long, default_value_t = 720)]
        max_turns: usize,
    },
    /// Find and fix: sweep (every rule, or the named ones), then remediate every NON_COMPLIANT
    /// resource the way `remediate` does, many at a time. Disruptive fixes run only when named
    /// with --include. The JSON report goes to stdout, a table to stderr; exit 1 when a fix
    /// failed or was left unfinished.
    Fix {
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// JSON file {"<rule>": {"<param>": value}}, the values the template passes.
        #[arg(long)]
        rule_params: Option<PathBuf>,
        #[command(flatten)]
        scope: ScopeArgs,
        /// A disruptive fix to run too (repeatable), e.g. --include rds-encrypt-instance.
        #[arg(long = "include")]
        include: Vec<String>,
        /// Show what every fix would do and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remediations in flight at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Seconds between a fix's turns [default: the document's own wait, 30 s].
        #[arg(long)]
        pause_seconds: Option<u64>,
        /// Turns per remediation before it is left for a rerun.
        #[arg(long, default_value_t = 720)]
        max_turns: usize,
    },
    /// Seed an unencrypted estate on the local stand-in, scan, remediate, scan again.
    Demo,
    /// Write template.yaml from crates/atrest-template/skeleton and every rule's and fix's
    /// spec and deploy.yaml (`make template`). Without --write: print it; with --check: fail
    /// when the committed template.yaml differs.
    Template {
        #[arg(long)]
        write: bool,
        #[arg(long, conflicts_with = "write")]
        check: bool,
    },
    /// In a sandbox account where the stack is deployed (`make smoke`): create one throwaway
    /// non-compliant resource per cheap fix, remediate each from the console path, check it,
    /// delete everything the run made. Refuses any account but --account-id.
    Smoke(smoke::SmokeArgs),
}

/// Where `scan` and `fix` run: by default the configured account and region.
#[derive(clap::Args)]
struct ScopeArgs {
    /// A region to sweep (repeatable) instead of the configured one.
    #[arg(long = "region", conflicts_with = "all_regions")]
    regions: Vec<String>,
    /// Every region enabled for the account (ec2:DescribeRegions).
    #[arg(long)]
    all_regions: bool,
    /// A role to assume in each account to sweep (repeatable), as c7n-org does.
    #[arg(long = "role-arn")]
    role_arns: Vec<String>,
    /// JSON file of roles to assume: {"accounts": [{"role_arn": "...", "name": "..."}]} or a list of ARNs.
    #[arg(long)]
    accounts_file: Option<PathBuf>,
}

impl ScopeArgs {
    fn scope(&self) -> atrest_cli::targets::Scope<'_> {
        atrest_cli::targets::Scope {
            regions: &self.regions,
            all_regions: self.all_regions,
            role_arns: &self.role_arns,
            accounts_file: self.accounts_file.as_deref(),
        }
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    atrest::telemetry::init_cli("warn");
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    if let Command::Rules { format } = cli.command {
        commands::rules(format)?;
        return Ok(true);
    }
    if let Command::Template { write, check } = cli.command {
        return template(write, check);
    }
    if matches!(cli.command, Command::Demo) && std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        return relaunch_under_stand_in();
    }
    let sdk = atrest::clients::load_sdk_config().await;
    match cli.command {
        Command::Rules { .. } | Command::Template { .. } => unreachable!("handled above"),
        Command::Evaluate { rule, event, put, test_mode } => commands::evaluate(&sdk, &rule, &event, put, test_mode).await,
        Command::Scan { rules, rule_params, scope, format } => {
            commands::scan(&sdk, &rules, rule_params.as_deref(), &scope.scope(), format).await
        }
        Command::Remediate { fix, resource_id, params, dry_run, pause_seconds, max_turns } => {
            let sleep = match pause_seconds {
                Some(seconds) => Sleep::Fixed(std::time::Duration::from_secs(seconds)),
                None => Sleep::AsDocumented,
            };
            let progress = commands::RemediationProgress::on_stderr(&fix, &resource_id);
            let on_progress = |p: Progress<'_>| progress.show(p);
            let options = RunOptions { max_turns, sleep, on_progress: Some(&on_progress) };
            let report = commands::remediate(&sdk, &fix, &resource_id, &params, dry_run, &options, Some(progress.work())).await;
            progress.finish();
            let report = report?;
            print_json(&report)?;
            Ok(report.succeeded())
        }
        Command::Fix { rules, rule_params, scope, include, dry_run, concurrency, pause_seconds, max_turns } => {
            let sleep = match pause_seconds {
                Some(seconds) => Sleep::Fixed(std::time::Duration::from_secs(seconds)),
                None => Sleep::AsDocumented,
            };
            let options = atrest_cli::fix_all::FixAllOptions {
                rules,
                rule_params: commands::read_rule_params(rule_params.as_deref())?,
                include,
                dry_run,
                concurrency: usize::from(concurrency),
                sleep,
                max_turns,
            };
            // Ctrl-C: no new fix starts; running turns finish (a second Ctrl-C ends the process).
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let on_interrupt = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
                    eprintln!("\nInterrupted: no new fix starts; the running ones finish their turn. Ctrl-C again to quit now.");
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
            let report = atrest_cli::fix_all::find_and_fix(&sdk, &options, &scope.scope(), &stop).await?;
            atrest_cli::fix_all::print_table(&report);
            print_json(&report)?;
            Ok(report.succeeded())
        }
        Command::Demo => demo::run(&sdk).await,
        Command::Smoke(args) => smoke::command(&sdk, args).await,
    }
}

/// `atrest template`: the workspace this binary was built from is the one it writes into.
fn template(write: bool, check: bool) -> anyhow::Result<bool> {
    let root = atrest_template::workspace_root();
    let fresh = atrest_template::generate(&root).map_err(anyhow::Error::msg)?;
    let path = root.join("template.yaml");
    if write {
        std::fs::write(&path, &fresh)?;
        eprintln!("wrote {}", path.display());
        return Ok(true);
    }
    if check {
        let committed = std::fs::read_to_string(&path)?;
        if committed != fresh {
            eprintln!("template.yaml is stale: run {}", atrest_template::REGENERATE);
            return Ok(false);
        }
        eprintln!("template.yaml is up to date");
        return Ok(true);
    }
    print!("{fresh}");
    Ok(true)
}

/// Without an endpoint, `atrest demo` starts the local stand-in itself (tests/moto/with-moto,
/// found from the working directory upwards) and runs again inside it.
fn relaunch_under_stand_in() -> anyhow::Result<bool> {
    let mut dir = std::env::current_dir()?;
    let launcher = loop {
        let candidate = dir.join("tests/moto/with-moto");
        if candidate.is_file() {
            break candidate;
        }
        if !dir.pop() {
            anyhow::bail!(
                "the demo needs the local AWS stand-in: run it from the atrest checkout (`make demo`), or set AWS_ENDPOINT_URL to a local moto server"
            );
        }
    };
    eprintln!("Starting the local AWS stand-in ({})...", launcher.display());
    let me = std::env::current_exe().context("locating the atrest binary")?;
    let status = std::process::Command::new(&launcher).current_dir(dir).arg(me).arg("demo").status().context("starting the stand-in")?;
    Ok(status.success())
}
