//! `atrest smoke`: the deployed stack's console path, end to end, in a sandbox account.
//!
//! One throwaway non-compliant resource per cheap fix (an S3 bucket, a detached 1 GiB gp3
//! volume, the account's EBS encryption by default), each remediated the way the Config
//! console's *Remediate* button does it (`StartRemediationExecution` on the deployed rule, then
//! `DescribeRemediationExecutionStatus` until it ends), each read back, then everything the run
//! made deleted and the EBS setting put back. The RDS fixes are left out: an instance, cluster or
//! snapshot to encrypt takes many minutes and costs real money per run.
//!
//! Safety: it refuses to do anything unless the credentials' account is the one given with
//! `--account-id`; it finds what it made again in AWS (the tag `atrest:smoke=<run id>`, the
//! bucket name `atrest-smoke-<run id>`, the fix's own `atrest:encrypted-from`/`atrest:encrypting`
//! tags pointing at its volume), never from memory, so a run interrupted at any point is cleaned
//! up by `atrest smoke --cleanup --run-id <id>`; and it deletes nothing else. The EBS setting it
//! changes is recorded in tags on what it creates before it changes it.
//!
//! Only real AWS APIs are used; the tests run the same code against the local stand-in, with a
//! task playing SSM for the executions Config starts.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use atrest::error::aws_error;
use aws_config::SdkConfig;
use aws_sdk_config::types::{RemediationExecutionState, ResourceKey, ResourceType};
use aws_sdk_ec2::types::{Filter, TagSpecification, VolumeType};
use aws_sdk_s3::error::ProvideErrorMetadata;
// The tags the EBS volume fix puts on what it makes from a volume.
use fix_ebs_encrypt_volumes::model::tag::{
    ENCRYPTED_FROM as ENCRYPTED_FROM_TAG, ENCRYPTING as ENCRYPTING_TAG, REPLACED_BY as REPLACED_BY_TAG,
};
use serde::Serialize;

use crate::output::{print_json, table};

/// The tag on everything a run creates; its value is the run id.
pub const SMOKE_TAG: &str = "atrest:smoke";
/// Whether EBS encryption by default was on before the run, recorded before the run changes it,
/// on the bucket and the volume (and so on the fix's replacement volume, which copies tags).
pub const EBS_DEFAULT_BEFORE_TAG: &str = "atrest:smoke-ebs-default-before";
/// The account's default EBS key before the run (the fix may set another one).
pub const EBS_KEY_BEFORE_TAG: &str = "atrest:smoke-ebs-default-key-before";
/// Every smoke bucket's name starts with this; the run id follows.
pub const BUCKET_PREFIX: &str = "atrest-smoke-";
/// What GetEbsDefaultKmsKeyId answers while the AWS managed key is the default.
const AWS_MANAGED_EBS_KEY: &str = "alias/aws/ebs";

/// Fixes the smoke test leaves out, and why.
pub const NOT_COVERED: &[(&str, &str)] = &[
    ("rds-encrypt-instance", "an RDS instance takes 10+ minutes to create, snapshot, copy and restore, and is billed per hour"),
    ("rds-encrypt-cluster", "an Aurora cluster takes 10+ minutes per step and is billed per instance-hour"),
    ("rds-encrypt-snapshot", "needs an RDS instance to snapshot first (minutes and money)"),
];

/// `atrest smoke` arguments.
#[derive(Debug, clap::Args)]
pub struct SmokeArgs {
    /// The 12-digit id of the sandbox account: nothing happens unless the credentials belong to
    /// exactly this account.
    #[arg(long, value_parser = parse_account_id)]
    pub account_id: String,
    /// The stack's RuleNamePrefix: the rules remediated are <prefix><rule name>.
    #[arg(long, default_value = "atrest-smoke-")]
    pub rule_name_prefix: String,
    /// Give up on a remediation after this many seconds (the volume copy takes minutes).
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_seconds: u64,
    /// Seconds between reads of a remediation's status.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_seconds: u64,
    /// Only confirm the account (exit 0) or refuse it (exit 2); `make smoke` runs this before
    /// deploying anything.
    #[arg(long, conflicts_with = "cleanup")]
    pub check_account_only: bool,
    /// Delete what a run made (by --run-id, or every run's with --all-runs) and put the EBS
    /// setting back, instead of running.
    #[arg(long)]
    pub cleanup: bool,
    /// With --cleanup, the run to clean up (printed when a run starts, and in its JSON summary).
    /// Without it, this run's id (default: generated), so a caller can clean up after an
    /// interruption without reading the output (`make smoke` does).
    #[arg(long, value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// With --cleanup: every resource tagged atrest:smoke, whatever its run.
    #[arg(long, requires = "cleanup", conflicts_with = "run_id")]
    pub all_runs: bool,
}

pub fn parse_account_id(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_string())
    } else {
        Err(format!("an AWS account id is 12 digits, got {text:?}"))
    }
}

/// A run id becomes part of a bucket name: lower-case letters, digits and hyphens, at most 40
/// (with the 13-character prefix, within S3's 63).
pub fn parse_run_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok { Ok(text.to_string()) } else { Err(format!("a run id is 1-40 lower-case letters, digits and inner hyphens, got {text:?}")) }
}

/// Unique per run and valid in a bucket name: the start time and a random suffix (bucket names
/// are global across all accounts).
pub fn new_run_id() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{secs}-{}", &random[..8])
}

pub fn bucket_name(run_id: &str) -> String {
    format!("{BUCKET_PREFIX}{run_id}")
}

/// One throwaway non-compliant resource per cheap fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    S3Bucket,
    EbsVolume,
    EbsDefault,
}

impl Fixture {
    pub const ALL: [Fixture; 3] = [Fixture::S3Bucket, Fixture::EbsVolume, Fixture::EbsDefault];

    /// The rule's name without the stack's prefix.
    pub fn rule(self) -> &'static str {
        match self {
            Fixture::S3Bucket => rule_s3_bucket_server_side_encryption_enabled::SPEC.name,
            Fixture::EbsVolume => rule_encrypted_volumes::SPEC.name,
            Fixture::EbsDefault => rule_ec2_ebs_encryption_by_default::SPEC.name,
        }
    }

    pub fn fix(self) -> &'static str {
        match self {
            Fixture::S3Bucket => fix_s3_enable_default_encryption::SPEC.name,
            Fixture::EbsVolume => fix_ebs_encrypt_volumes::SPEC.name,
            Fixture::EbsDefault => fix_ebs_enable_default_encryption::SPEC.name,
        }
    }

    /// The resource type Config keys the remediation on.
    pub fn resource_type(self) -> &'static str {
        match self {
            Fixture::S3Bucket => "AWS::S3::Bucket",
            Fixture::EbsVolume => "AWS::EC2::Volume",
            Fixture::EbsDefault => "AWS::::Account",
        }
    }
}

/// How long to wait for a remediation, and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub poll: Duration,
    pub timeout: Duration,
}

/// What the deployed stack's remediation configurations say, read before anything is created.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The SSEAlgorithm the S3 remediation sets (aws:kms or aws:kms:dsse).
    pub s3_algorithm: String,
}

/// What a run created.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub bucket: String,
    pub volume: String,
    pub account_id: String,
}

impl Created {
    fn resource_id(&self, fixture: Fixture) -> &str {
        match fixture {
            Fixture::S3Bucket => &self.bucket,
            Fixture::EbsVolume => &self.volume,
            Fixture::EbsDefault => &self.account_id,
        }
    }
}

/// One fix's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub fix: &'static str,
    pub rule: String,
    pub resource_type: &'static str,
    pub resource_id: String,
    /// SUCCEEDED, FAILED or TIMED_OUT, as Config reported it (or NOT_STARTED).
    pub remediation: String,
    pub seconds: u64,
    /// What reading the resource back showed, or why the check failed.
    pub outcome: String,
    pub passed: bool,
}

/// What teardown did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Teardown {
    pub deleted: Vec<String>,
    pub restored: Vec<String>,
    /// What is still there (or could not be put back), with the reason: not clean.
    pub left: Vec<String>,
}

impl Teardown {
    pub fn clean(&self) -> bool {
        self.left.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub account_id: String,
    pub region: String,
    pub run_id: String,
    pub rule_name_prefix: String,
    pub created: Option<Created>,
    /// Why the resources could not all be created (nothing was remediated then).
    pub error: Option<String>,
    pub checks: Vec<Check>,
    pub teardown: Teardown,
    pub not_covered: Vec<String>,
    pub passed: bool,
}

/// The command: run, clean up, or only confirm the account. Ok(false) means a check failed or
/// something was left behind (exit 1); an Err is a refusal or a usage error (exit 2).
pub async fn command(sdk: &SdkConfig, args: SmokeArgs) -> anyhow::Result<bool> {
    let caller = confirm_account(sdk, &args.account_id).await?;
    eprintln!("Account {} confirmed ({caller}), Region {}.", args.account_id, atrest::clients::region_name(sdk));
    if args.check_account_only {
        return Ok(true);
    }
    if args.cleanup {
        let scope = match (&args.run_id, args.all_runs) {
            (Some(id), _) => Scope::Run(id),
            (None, true) => Scope::AllRuns,
            (None, false) => bail!("--cleanup needs --run-id <id> (printed when the run started) or --all-runs"),
        };
        let teardown = cleanup(sdk, scope).await;
        print_json(&teardown)?;
        return Ok(teardown.clean());
    }
    let wait = Wait { poll: Duration::from_secs(args.poll_seconds), timeout: Duration::from_secs(args.timeout_seconds) };
    let run_id = args.run_id.unwrap_or_else(new_run_id);
    let report = run(sdk, &args.account_id, &args.rule_name_prefix, &run_id, wait).await?;
    eprintln!("{}", summary_table(&report));
    print_json(&report)?;
    Ok(report.passed)
}

/// Refuses unless the credentials belong to `expected`; returns the caller's ARN.
pub async fn confirm_account(sdk: &SdkConfig, expected: &str) -> anyhow::Result<String> {
    let out =
        aws_sdk_sts::Client::new(sdk).get_caller_identity().send().await.map_err(|e| aws_error("sts:GetCallerIdentity", expected, e))?;
    let actual = out.account().unwrap_or("an unknown account");
    let arn = out.arn().unwrap_or("unknown caller");
    if actual != expected {
        bail!(
            "refusing to run: these credentials ({arn}) belong to account {actual}, not to {expected} given with --account-id; nothing was created or changed"
        );
    }
    Ok(arn.to_string())
}

/// The whole run: account check, stack check (both before anything is created), create,
/// remediate and check each fix, teardown (always, once anything may have been created).
pub async fn run(sdk: &SdkConfig, account_id: &str, prefix: &str, run_id: &str, wait: Wait) -> anyhow::Result<Report> {
    parse_run_id(run_id).map_err(anyhow::Error::msg)?;
    confirm_account(sdk, account_id).await?;
    let stack = preflight(sdk, prefix).await?;
    let region = atrest::clients::region_name(sdk);
    eprintln!(
        "Smoke run {run_id}. If it is interrupted, clean up with:\n  atrest smoke --cleanup --account-id {account_id} --run-id {run_id}"
    );
    let mut report = Report {
        account_id: account_id.to_string(),
        region,
        run_id: run_id.to_string(),
        rule_name_prefix: prefix.to_string(),
        created: None,
        error: None,
        checks: Vec::new(),
        teardown: Teardown::default(),
        not_covered: NOT_COVERED.iter().map(|(fix, why)| format!("{fix}: {why}")).collect(),
        passed: false,
    };
    match create(sdk, run_id, account_id).await {
        Ok(created) => {
            let one = |fixture| check_fix(sdk, prefix, fixture, &created, run_id, &stack, wait);
            let (s3, volume, default) = tokio::join!(one(Fixture::S3Bucket), one(Fixture::EbsVolume), one(Fixture::EbsDefault));
            report.checks = vec![s3, volume, default];
            report.created = Some(created);
        }
        Err(e) => report.error = Some(format!("creating the throwaway resources: {e:#}")),
    }
    report.teardown = cleanup(sdk, Scope::Run(run_id)).await;
    report.passed = report.error.is_none() && report.checks.iter().all(|c| c.passed) && report.teardown.clean();
    Ok(report)
}

/// Reads the stack's remediation configurations: the rules must exist under `prefix`, run only
/// when asked (the smoke test presses the button itself), change something (no DryRun), and the
/// S3 one must set a KMS algorithm: every bucket already has SSE-S3, so AES256 would fix nothing.
pub async fn preflight(sdk: &SdkConfig, prefix: &str) -> anyhow::Result<Stack> {
    let names: Vec<String> = Fixture::ALL.iter().map(|f| format!("{prefix}{}", f.rule())).collect();
    let out = atrest::clients::config(sdk)
        .describe_remediation_configurations()
        .set_config_rule_names(Some(names.clone()))
        .send()
        .await
        .map_err(|e| aws_error("config:DescribeRemediationConfigurations", names.join(", "), e))?;
    let mut s3_algorithm = String::new();
    for (fixture, name) in Fixture::ALL.iter().zip(&names) {
        let Some(c) = out.remediation_configurations().iter().find(|c| c.config_rule_name() == name) else {
            bail!(
                "the rule {name} has no remediation configuration in this account and Region: deploy the stack first (`make smoke` does) or pass its RuleNamePrefix with --rule-name-prefix; nothing was created"
            );
        };
        if c.automatic() {
            bail!(
                "{name} remediates automatically; the smoke test runs the console path itself: deploy with the *AutomaticRemediation parameters false (`make smoke` does); nothing was created"
            );
        }
        let first_static = |param: &str| {
            c.parameters().and_then(|p| p.get(param)).and_then(|v| v.static_value()).and_then(|s| s.values().first().cloned())
        };
        if first_static("DryRun").as_deref() == Some("true") {
            bail!("{name} remediates with DryRun=true, which changes nothing: deploy with RemediationDryRun=false; nothing was created");
        }
        if *fixture == Fixture::S3Bucket {
            s3_algorithm = first_static("SSEAlgorithm").unwrap_or_else(|| "AES256".into());
            if !s3_algorithm.starts_with("aws:kms") {
                bail!(
                    "{name} remediates with SSEAlgorithm={s3_algorithm}, which every bucket already has (S3 applies SSE-S3 to all buckets since January 2023): deploy with S3RequiredAlgorithm=aws:kms and S3RemediationSSEAlgorithm=aws:kms (`make smoke` does); nothing was created"
                );
            }
        }
    }
    Ok(Stack { s3_algorithm })
}

fn s3_tag(key: &str, value: &str) -> anyhow::Result<aws_sdk_s3::types::Tag> {
    Ok(aws_sdk_s3::types::Tag::builder().key(key).value(value).build()?)
}

fn ec2_tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder().key(key).value(value).build()
}

/// Creates the three non-compliant resources. The bucket comes first and carries the EBS
/// setting as it was, so the setting is recorded in AWS before it is changed.
pub async fn create(sdk: &SdkConfig, run_id: &str, account_id: &str) -> anyhow::Result<Created> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let s3 = atrest::clients::s3(sdk);
    let default_on = ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(|e| aws_error("ec2:GetEbsEncryptionByDefault", account_id, e))?
        .ebs_encryption_by_default()
        .unwrap_or(false);
    let key_before = ec2
        .get_ebs_default_kms_key_id()
        .send()
        .await
        .map_err(|e| aws_error("ec2:GetEbsDefaultKmsKeyId", account_id, e))?
        .kms_key_id()
        .unwrap_or(AWS_MANAGED_EBS_KEY)
        .to_string();
    let records =
        [(SMOKE_TAG, run_id), (EBS_DEFAULT_BEFORE_TAG, if default_on { "true" } else { "false" }), (EBS_KEY_BEFORE_TAG, &key_before)];

    // A run id names one run: resources left by an earlier run with this id hold its record of
    // the EBS setting, which this run must not overwrite (in us-east-1 CreateBucket on a bucket
    // the account already owns succeeds).
    let bucket = bucket_name(run_id);
    let leftover_volumes = ec2
        .describe_volumes()
        .filters(Filter::builder().name(format!("tag:{SMOKE_TAG}")).values(run_id).build())
        .send()
        .await
        .map_err(|e| aws_error("ec2:DescribeVolumes", run_id, e))?;
    if s3.head_bucket().bucket(&bucket).send().await.is_ok() || !leftover_volumes.volumes().is_empty() {
        bail!("run id {run_id} already has resources in this account: clean them up first (atrest smoke --cleanup --run-id {run_id})");
    }
    let mut request = s3.create_bucket().bucket(&bucket);
    let region = atrest::clients::region_name(sdk);
    // us-east-1 is the one Region that refuses a LocationConstraint naming itself.
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    request.send().await.map_err(|e| aws_error("s3:CreateBucket", &bucket, e))?;
    let tag_set = records.iter().map(|(k, v)| s3_tag(k, v)).collect::<anyhow::Result<Vec<_>>>()?;
    s3.put_bucket_tagging()
        .bucket(&bucket)
        .tagging(aws_sdk_s3::types::Tagging::builder().set_tag_set(Some(tag_set)).build()?)
        .send()
        .await
        .map_err(|e| aws_error("s3:PutBucketTagging", &bucket, e))?;
    eprintln!("Created bucket {bucket} (S3 gives it SSE-S3; the stack requires SSE-KMS).");

    // With encryption by default on, EC2 encrypts every new volume whatever the request says.
    if default_on {
        ec2.disable_ebs_encryption_by_default().send().await.map_err(|e| aws_error("ec2:DisableEbsEncryptionByDefault", account_id, e))?;
        eprintln!("Turned EBS encryption by default off (it was on; teardown turns it back on).");
    }
    let zones = ec2.describe_availability_zones().send().await.map_err(|e| aws_error("ec2:DescribeAvailabilityZones", &region, e))?;
    let zone = zones
        .availability_zones()
        .iter()
        .filter(|z| z.state().map(|s| s.as_str()) == Some("available") && z.zone_type().is_none_or(|t| t == "availability-zone"))
        .find_map(|z| z.zone_name())
        .ok_or_else(|| anyhow::anyhow!("no available Availability Zone in {region}"))?
        .to_string();
    let tags = TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
        .set_tags(Some(records.iter().map(|(k, v)| ec2_tag(k, v)).chain([ec2_tag("Name", &bucket)]).collect()))
        .build();
    let out = ec2
        .create_volume()
        .availability_zone(&zone)
        .size(1)
        .volume_type(VolumeType::Gp3)
        .encrypted(false)
        .tag_specifications(tags)
        .send()
        .await
        .map_err(|e| aws_error("ec2:CreateVolume", &zone, e))?;
    let volume = out.volume_id().ok_or_else(|| anyhow::anyhow!("CreateVolume returned no volume id"))?.to_string();
    if out.encrypted() == Some(true) {
        bail!("EC2 encrypted the new volume {volume} anyway (encryption by default turned back on by someone else?): nothing to remediate");
    }
    eprintln!("Created unencrypted 1 GiB gp3 volume {volume} in {zone}, detached.");
    Ok(Created { bucket, volume, account_id: account_id.to_string() })
}

/// Presses Remediate for one fixture, waits for the outcome and reads the resource back.
async fn check_fix(sdk: &SdkConfig, prefix: &str, fixture: Fixture, created: &Created, run_id: &str, stack: &Stack, wait: Wait) -> Check {
    let rule = format!("{prefix}{}", fixture.rule());
    let resource_id = created.resource_id(fixture).to_string();
    let began = Instant::now();
    let remediated = remediate(sdk, &rule, fixture.resource_type(), &resource_id, wait).await;
    let seconds = began.elapsed().as_secs();
    let (remediation, outcome) = match remediated {
        Ok(()) => ("SUCCEEDED".to_string(), verify(sdk, fixture, created, run_id, stack).await),
        Err((state, why)) => (state, Err(why)),
    };
    let passed = outcome.is_ok();
    let outcome = outcome.unwrap_or_else(|e| e);
    eprintln!("{}: remediation {remediation} after {seconds} s; {outcome}", fixture.fix());
    Check { fix: fixture.fix(), rule, resource_type: fixture.resource_type(), resource_id, remediation, seconds, outcome, passed }
}

/// The console's Remediate button: StartRemediationExecution, then
/// DescribeRemediationExecutionStatus until SUCCEEDED or FAILED. Err is (state, why).
pub async fn remediate(sdk: &SdkConfig, rule: &str, resource_type: &str, resource_id: &str, wait: Wait) -> Result<(), (String, String)> {
    let config = atrest::clients::config(sdk);
    let key = ResourceKey::builder()
        .resource_type(ResourceType::from(resource_type))
        .resource_id(resource_id)
        .build()
        .map_err(|e| ("NOT_STARTED".to_string(), format!("resource key: {e}")))?;
    let deadline = Instant::now() + wait.timeout;
    // Config keeps the last status per resource: one older than this run (the account's EBS
    // setting is remediated by every run) must not be taken for this run's. A minute of slack
    // absorbs clock skew; runs are minutes apart.
    let not_before = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0) - 60;
    loop {
        let out = config
            .start_remediation_execution()
            .config_rule_name(rule)
            .resource_keys(key.clone())
            .send()
            .await
            .map_err(|e| ("NOT_STARTED".to_string(), aws_error("config:StartRemediationExecution", resource_id, e).to_string()))?;
        if out.failed_items().is_empty() {
            break;
        }
        // Config may refuse a resource it has not recorded yet: a fresh one appears within minutes.
        let why = out.failure_message().unwrap_or("no reason given").to_string();
        if Instant::now() >= deadline {
            return Err(("NOT_STARTED".into(), format!("Config did not start the remediation: {why}")));
        }
        tokio::time::sleep(wait.poll).await;
    }
    let mut last = "QUEUED".to_string();
    loop {
        let out = config
            .describe_remediation_execution_status()
            .config_rule_name(rule)
            .resource_keys(key.clone())
            .send()
            .await
            .map_err(|e| (last.clone(), aws_error("config:DescribeRemediationExecutionStatus", resource_id, e).to_string()))?;
        let current = out
            .remediation_execution_statuses()
            .iter()
            .filter(|s| s.invocation_time().is_none_or(|t| t.secs() >= not_before))
            .max_by_key(|s| s.invocation_time().map(|t| t.secs()).unwrap_or(0));
        if let Some(status) = current {
            match status.state() {
                Some(RemediationExecutionState::Succeeded) => return Ok(()),
                Some(RemediationExecutionState::Failed) => {
                    let why: Vec<String> = status
                        .step_details()
                        .iter()
                        .filter_map(|s| s.error_message().map(|m| format!("{}: {m}", s.name().unwrap_or("step"))))
                        .collect();
                    let why = if why.is_empty() { "no step reported an error".to_string() } else { why.join("; ") };
                    return Err(("FAILED".into(), format!("remediation failed: {why}")));
                }
                Some(state) => last = state.as_str().to_string(),
                None => {}
            }
        }
        if Instant::now() >= deadline {
            return Err((
                "TIMED_OUT".into(),
                format!(
                    "still {last} after {} s; it may still be running: once it ends, run the cleanup command printed at the start",
                    wait.timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(wait.poll).await;
    }
}

/// Reads the resource back. Ok: what shows it fixed; Err: what does not.
async fn verify(sdk: &SdkConfig, fixture: Fixture, created: &Created, run_id: &str, stack: &Stack) -> Result<String, String> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    match fixture {
        Fixture::S3Bucket => {
            let out = atrest::clients::s3(sdk)
                .get_bucket_encryption()
                .bucket(&created.bucket)
                .send()
                .await
                .map_err(|e| aws_error("s3:GetBucketEncryption", &created.bucket, e).to_string())?;
            let algorithms: Vec<String> = out
                .server_side_encryption_configuration()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.apply_server_side_encryption_by_default())
                .map(|d| d.sse_algorithm().as_str().to_string())
                .collect();
            if algorithms.contains(&stack.s3_algorithm) {
                Ok(format!("default encryption is {}", stack.s3_algorithm))
            } else {
                Err(format!("default encryption is {algorithms:?}, not {}", stack.s3_algorithm))
            }
        }
        Fixture::EbsVolume => {
            let old = &created.volume;
            let out = ec2
                .describe_volumes()
                .filters(Filter::builder().name(format!("tag:{ENCRYPTED_FROM_TAG}")).values(old).build())
                .send()
                .await
                .map_err(|e| aws_error("ec2:DescribeVolumes", old, e).to_string())?;
            let copies = out.volumes();
            let [copy] = copies else {
                return Err(format!("expected one volume tagged {ENCRYPTED_FROM_TAG}={old}, found {}", copies.len()));
            };
            let new = copy.volume_id().unwrap_or("?");
            let tag = |v: &aws_sdk_ec2::types::Volume, key: &str| {
                v.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string)
            };
            if copy.encrypted() != Some(true) {
                return Err(format!("the replacement {new} is not encrypted"));
            }
            // Teardown finds the replacement by this tag, which the fix copies from the old volume.
            if tag(copy, SMOKE_TAG).as_deref() != Some(run_id) {
                return Err(format!("the replacement {new} did not keep the tag {SMOKE_TAG}={run_id}"));
            }
            let olds =
                ec2.describe_volumes().volume_ids(old).send().await.map_err(|e| aws_error("ec2:DescribeVolumes", old, e).to_string())?;
            match olds.volumes().first().and_then(|v| tag(v, REPLACED_BY_TAG)) {
                Some(by) if by == new => Ok(format!(
                    "replaced by encrypted {new} ({}); old volume kept, tagged {REPLACED_BY_TAG}",
                    copy.kms_key_id().unwrap_or("?")
                )),
                other => Err(format!("{old} is tagged {REPLACED_BY_TAG}={other:?}, expected {new}")),
            }
        }
        Fixture::EbsDefault => {
            let on = ec2
                .get_ebs_encryption_by_default()
                .send()
                .await
                .map_err(|e| aws_error("ec2:GetEbsEncryptionByDefault", &created.account_id, e).to_string())?
                .ebs_encryption_by_default();
            if on == Some(true) {
                Ok("EBS encryption by default is on".into())
            } else {
                Err("EBS encryption by default is still off".into())
            }
        }
    }
}

/// Which runs to clean up.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Run(&'a str),
    AllRuns,
}

impl Scope<'_> {
    fn owns(&self, tag_value: Option<&str>) -> bool {
        match (self, tag_value) {
            (Scope::Run(id), Some(v)) => v == *id,
            (Scope::AllRuns, Some(_)) => true,
            (_, None) => false,
        }
    }
}

/// Deletes what the run(s) made, found in AWS by tag and name only, and puts the EBS setting
/// back. Never fails: what it cannot do is listed in `left`, so it can be run again.
pub async fn cleanup(sdk: &SdkConfig, scope: Scope<'_>) -> Teardown {
    let mut t = Teardown::default();
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let s3 = atrest::clients::s3(sdk);

    // 1. Find: buckets, volumes (ours, and what the fix made from them), the fix's snapshots.
    let buckets = smoke_buckets(&s3, scope, &mut t).await;
    let filter = match scope {
        Scope::Run(id) => Filter::builder().name(format!("tag:{SMOKE_TAG}")).values(id).build(),
        Scope::AllRuns => Filter::builder().name("tag-key").values(SMOKE_TAG).build(),
    };
    let mut volumes = Vec::new();
    match ec2.describe_volumes().filters(filter).send().await {
        Ok(out) => volumes.extend(out.volumes().iter().cloned()),
        Err(e) => t.left.push(format!("volumes: {}", aws_error("ec2:DescribeVolumes", SMOKE_TAG, e))),
    }
    let ours: Vec<String> = volumes.iter().filter_map(|v| v.volume_id().map(str::to_string)).collect();
    let mut snapshots = Vec::new();
    if !ours.is_empty() {
        // The fix's temporaries: volumes copy the old volume's tags, but a run cut short may
        // leave one before that; snapshots carry only the fix's bookkeeping.
        for tag in [ENCRYPTED_FROM_TAG, ENCRYPTING_TAG] {
            let filter = Filter::builder().name(format!("tag:{tag}")).set_values(Some(ours.clone())).build();
            match ec2.describe_volumes().filters(filter).send().await {
                Ok(out) => {
                    for v in out.volumes() {
                        if !volumes.iter().any(|known| known.volume_id() == v.volume_id()) {
                            volumes.push(v.clone());
                        }
                    }
                }
                Err(e) => t.left.push(format!("volumes made from {ours:?}: {}", aws_error("ec2:DescribeVolumes", tag, e))),
            }
        }
        let filter = Filter::builder().name(format!("tag:{ENCRYPTING_TAG}")).set_values(Some(ours.clone())).build();
        match ec2.describe_snapshots().owner_ids("self").filters(filter).send().await {
            Ok(out) => snapshots.extend(out.snapshots().iter().filter_map(|s| s.snapshot_id().map(str::to_string))),
            Err(e) => t.left.push(format!("snapshots of {ours:?}: {}", aws_error("ec2:DescribeSnapshots", ENCRYPTING_TAG, e))),
        }
    }

    // 2. Put the EBS setting back, from what the run(s) recorded.
    let mut defaults = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for (_, tags) in &buckets {
        defaults.extend(tags.iter().filter(|(k, _)| k == EBS_DEFAULT_BEFORE_TAG).map(|(_, v)| v.clone()));
        keys.extend(tags.iter().filter(|(k, _)| k == EBS_KEY_BEFORE_TAG).map(|(_, v)| v.clone()));
    }
    for v in &volumes {
        for tag in v.tags() {
            match (tag.key(), tag.value()) {
                (Some(EBS_DEFAULT_BEFORE_TAG), Some(value)) => {
                    defaults.insert(value.to_string());
                }
                (Some(EBS_KEY_BEFORE_TAG), Some(value)) => {
                    keys.insert(value.to_string());
                }
                _ => {}
            }
        }
    }
    let restored = restore_ebs_default(&ec2, &defaults, &keys, &mut t).await;

    // 3. Delete.
    for snapshot in &snapshots {
        match ec2.delete_snapshot().snapshot_id(snapshot).send().await {
            Ok(_) => t.deleted.push(format!("snapshot {snapshot}")),
            Err(e) => t.left.push(format!("snapshot {snapshot}: {}", aws_error("ec2:DeleteSnapshot", snapshot, e))),
        }
    }
    for v in &volumes {
        let id = v.volume_id().unwrap_or("?");
        if !v.attachments().is_empty() {
            t.left.push(format!("volume {id}: attached to {:?}; detach it and run the cleanup again", v.attachments()[0].instance_id()));
            continue;
        }
        match ec2.delete_volume().volume_id(id).send().await {
            Ok(_) => t.deleted.push(format!("volume {id}")),
            Err(e) => t.left.push(format!("volume {id}: {}", aws_error("ec2:DeleteVolume", id, e))),
        }
    }
    for (bucket, _) in &buckets {
        if !restored {
            t.left.push(format!("bucket {bucket}: kept, its tags record the EBS setting to put back; run the cleanup again"));
            continue;
        }
        match s3.delete_bucket().bucket(bucket).send().await {
            Ok(_) => t.deleted.push(format!("bucket {bucket}")),
            Err(e) => t.left.push(format!("bucket {bucket}: {}", aws_error("s3:DeleteBucket", bucket, e))),
        }
    }
    t
}

/// The run's bucket (by its name) or every smoke bucket (by name prefix and tag), with its tags.
async fn smoke_buckets(s3: &aws_sdk_s3::Client, scope: Scope<'_>, t: &mut Teardown) -> Vec<(String, Vec<(String, String)>)> {
    let names = match scope {
        Scope::Run(id) => vec![bucket_name(id)],
        Scope::AllRuns => match s3.list_buckets().send().await {
            Ok(out) => out.buckets().iter().filter_map(|b| b.name()).filter(|n| n.starts_with(BUCKET_PREFIX)).map(str::to_string).collect(),
            Err(e) => {
                t.left.push(format!("buckets: {}", aws_error("s3:ListBuckets", BUCKET_PREFIX, e)));
                return Vec::new();
            }
        },
    };
    let mut found = Vec::new();
    for name in names {
        match s3.get_bucket_tagging().bucket(&name).send().await {
            Ok(out) => {
                let tags: Vec<(String, String)> = out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
                let run = tags.iter().find(|(k, _)| k == SMOKE_TAG).map(|(_, v)| v.as_str());
                if scope.owns(run) {
                    found.push((name, tags));
                } else if let Scope::Run(_) = scope {
                    t.left.push(format!("bucket {name}: not tagged {SMOKE_TAG} for this run ({run:?}); not deleted"));
                }
            }
            Err(e) if e.code() == Some("NoSuchBucket") => {}
            // A run cut short between CreateBucket and PutBucketTagging: the random run id in
            // the name makes the bucket this run's.
            Err(e) if e.code() == Some("NoSuchTagSet") && matches!(scope, Scope::Run(_)) => found.push((name, Vec::new())),
            Err(e) if e.code() == Some("NoSuchTagSet") => {
                t.left.push(format!("bucket {name}: untagged, so not provably a smoke bucket; delete it by its run id"));
            }
            Err(e) => t.left.push(format!("bucket {name}: {}", aws_error("s3:GetBucketTagging", &name, e))),
        }
    }
    found
}

/// Puts EBS encryption by default (and its key) back as recorded. Returns false when the setting
/// could not be put back, so the records are kept.
async fn restore_ebs_default(ec2: &aws_sdk_ec2::Client, defaults: &BTreeSet<String>, keys: &BTreeSet<String>, t: &mut Teardown) -> bool {
    if defaults.len() > 1 || keys.len() > 1 {
        t.left.push(format!(
            "EBS encryption by default: the runs recorded different settings ({defaults:?}, keys {keys:?}); left as it is, set it yourself"
        ));
        return true;
    }
    let mut ok = true;
    if let Some(key) = keys.iter().next() {
        match ec2.get_ebs_default_kms_key_id().send().await {
            Ok(out) if out.kms_key_id().unwrap_or(AWS_MANAGED_EBS_KEY) == key => {}
            Ok(_) => {
                let result = if key == AWS_MANAGED_EBS_KEY {
                    ec2.reset_ebs_default_kms_key_id()
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("ec2:ResetEbsDefaultKmsKeyId", key, e))
                } else {
                    ec2.modify_ebs_default_kms_key_id()
                        .kms_key_id(key)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("ec2:ModifyEbsDefaultKmsKeyId", key, e))
                };
                match result {
                    Ok(()) => t.restored.push(format!("default EBS key {key}")),
                    Err(e) => {
                        ok = false;
                        t.left.push(format!("default EBS key not put back to {key}: {e}"));
                    }
                }
            }
            Err(e) => {
                ok = false;
                t.left.push(format!("default EBS key: {}", aws_error("ec2:GetEbsDefaultKmsKeyId", key, e)));
            }
        }
    }
    if let Some(before) = defaults.iter().next() {
        let want = before == "true";
        match ec2.get_ebs_encryption_by_default().send().await {
            Ok(out) if out.ebs_encryption_by_default().unwrap_or(false) == want => {}
            Ok(_) => {
                let result = if want {
                    ec2.enable_ebs_encryption_by_default()
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("ec2:EnableEbsEncryptionByDefault", "", e))
                } else {
                    ec2.disable_ebs_encryption_by_default()
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("ec2:DisableEbsEncryptionByDefault", "", e))
                };
                match result {
                    Ok(()) => t.restored.push(format!("EBS encryption by default {}", if want { "on" } else { "off" })),
                    Err(e) => {
                        ok = false;
                        t.left.push(format!("EBS encryption by default not put back: {e}"));
                    }
                }
            }
            Err(e) => {
                ok = false;
                t.left.push(format!("EBS encryption by default: {}", aws_error("ec2:GetEbsEncryptionByDefault", "", e)));
            }
        }
    }
    ok
}

/// For people, on stderr.
pub fn summary_table(report: &Report) -> String {
    let mut t = table(&["fix", "resource", "remediation", "seconds", "outcome", "result"]);
    for c in &report.checks {
        t.add_row(vec![
            c.fix.to_string(),
            format!("{} {}", c.resource_type, c.resource_id),
            c.remediation.clone(),
            c.seconds.to_string(),
            c.outcome.clone(),
            if c.passed { "PASS" } else { "FAIL" }.to_string(),
        ]);
    }
    for (fix, why) in NOT_COVERED {
        t.add_row(vec![fix.to_string(), "-".into(), "not run".into(), "-".into(), why.to_string(), "SKIP".into()]);
    }
    let mut text = t.to_string();
    if let Some(e) = &report.error {
        text.push_str(&format!("\nerror: {e}"));
    }
    text.push_str(&format!(
        "\nteardown: deleted {}; restored {}; left {}",
        report.teardown.deleted.len(),
        if report.teardown.restored.is_empty() { "nothing to restore".to_string() } else { report.teardown.restored.join(", ") },
        if report.teardown.clean() { "nothing".to_string() } else { report.teardown.left.join("; ") },
    ));
    text.push_str(if report.passed { "\nsmoke test PASSED" } else { "\nsmoke test FAILED" });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_and_run_ids_are_checked_before_any_call() {
        assert!(parse_account_id("123456789012").is_ok());
        for bad in ["", "12345678901", "1234567890123", "12345678901a", " 123456789012"] {
            assert!(parse_account_id(bad).is_err(), "{bad:?}");
        }
        let id = new_run_id();
        assert_eq!(parse_run_id(&id), Ok(id.clone()));
        assert!(bucket_name(&id).len() <= 63);
        for bad in ["", "-a", "a-", "UPPER", "a_b", &"a".repeat(41)] {
            assert!(parse_run_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_scope_owns_only_its_runs_tagged_resources() {
        assert!(Scope::Run("r1").owns(Some("r1")));
        assert!(!Scope::Run("r1").owns(Some("r2")));
        assert!(!Scope::Run("r1").owns(None));
        assert!(Scope::AllRuns.owns(Some("anything")));
        assert!(!Scope::AllRuns.owns(None));
    }
}
