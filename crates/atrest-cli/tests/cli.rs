//! The `atrest` binary as users and scripts call it: JSON on stdout only, exit codes that mean
//! something, against the local stand-in.

use atrest_testkit::{events_dir, unique};
use aws_config::Region;
use common::{atrest, atrest_in, stdout_json};
use serde_json::Value;

mod common;

async fn bucket(name: &str) {
    let sdk = atrest_testkit::sdk().await;
    atrest::clients::s3(&sdk).create_bucket().bucket(name).send().await.unwrap();
}

#[test]
fn rules_lists_every_rule_and_fix_as_json() {
    let out = atrest(&["rules", "--format", "json"]);
    assert!(out.status.success());
    let v = stdout_json(&out);
    let rules: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(rules.contains(&"s3-bucket-server-side-encryption-enabled"));
    let fixes: Vec<&str> = v["fixes"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(fixes.contains(&"s3-enable-default-encryption"));
}

#[test]
fn evaluate_prints_aws_shaped_evaluations() {
    let event = events_dir().join("s3-bucket-server-side-encryption-enabled/change-unencrypted.json");
    let out = atrest(&["evaluate", "s3-bucket-server-side-encryption-enabled", "--event", event.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = stdout_json(&out);
    let e = &v[0];
    assert_eq!(e["ComplianceResourceType"], "AWS::S3::Bucket");
    assert_eq!(e["ComplianceResourceId"], "example-unencrypted-bucket");
    assert_eq!(e["ComplianceType"], "NON_COMPLIANT");
    assert_eq!(e["OrderingTimestamp"], "2026-11-20T10:00:00Z");
    assert!(e["Annotation"].as_str().unwrap().contains("no default encryption"));
}

#[test]
fn evaluate_rejects_unknown_rules_and_bad_events() {
    let out = atrest(&["evaluate", "no-such-rule", "--event", "/dev/null"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown rule no-such-rule"));
    let out = atrest(&["evaluate", "s3-bucket-server-side-encryption-enabled", "--event", "/dev/null"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn scan_and_remediate_round_trip() {
    let name = unique("cli");
    bucket(&name).await;
    // Every bucket has SSE-S3 as its base level (AWS, since January 2023): what a bucket can
    // still fall short of is a KMS requirement.
    let dir = std::env::temp_dir().join(unique("kms-params"));
    std::fs::create_dir_all(&dir).unwrap();
    let params = dir.join("params.json");
    std::fs::write(&params, r#"{"s3-bucket-server-side-encryption-enabled": {"requiredAlgorithm": "aws:kms"}}"#).unwrap();
    let params = params.to_str().unwrap().to_string();
    let scan = |format: &str| {
        atrest(&["scan", "--rule", "s3-bucket-server-side-encryption-enabled", "--rule-params", &params, "--format", format])
    };

    let before = stdout_json(&scan("json"));
    let mine = |v: &Value| v.as_array().unwrap().iter().find(|e| e["ComplianceResourceId"] == name.as_str()).cloned().unwrap();
    assert_eq!(mine(&before)["ComplianceType"], "NON_COMPLIANT");
    assert_eq!(mine(&before)["ConfigRuleName"], "s3-bucket-server-side-encryption-enabled");

    let dry = atrest(&["remediate", "s3-bucket-server-side-encryption-enabled", "--resource-id", &name, "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(stdout_json(&dry)["DryRun"], true);
    assert_eq!(mine(&stdout_json(&scan("json")))["ComplianceType"], "NON_COMPLIANT", "a dry run changes nothing");

    let fix =
        atrest(&["remediate", "rule-s3-bucket-server-side-encryption-enabled", "--resource-id", &name, "--param", "SSEAlgorithm=aws:kms"]);
    assert!(fix.status.success(), "{}", String::from_utf8_lossy(&fix.stdout));
    let report = stdout_json(&fix);
    assert_eq!(report["Status"], "Succeeded");
    // The same path as the console button: the template's document ran the worker.
    assert_eq!(report["Automation"]["Document"], "S3EnableDefaultEncryptionDocument");
    assert_eq!(report["Automation"]["Status"], "Success");
    assert_eq!(report["ExecutionId"], report["Automation"]["ExecutionId"], "the worker got the automation's execution id");
    assert!(report["Automation"]["Turns"].as_u64().unwrap() >= 1);
    assert_eq!(mine(&stdout_json(&scan("json")))["ComplianceType"], "COMPLIANT");

    let table = scan("table");
    assert!(String::from_utf8_lossy(&table.stdout).contains(&name));
}

#[test]
fn scan_rule_params_file_is_validated() {
    let dir = std::env::temp_dir().join(unique("params"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("params.json");
    std::fs::write(&file, r#"{"s3-bucket-server-side-encryption-enabled": {"requiredAlgorithm": "DES"}}"#).unwrap();
    let out = atrest(&["scan", "--rule-params", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requiredAlgorithm"));
}

#[test]
fn a_failed_fix_exits_non_zero_with_a_reason() {
    let out = atrest(&["remediate", "s3-bucket-server-side-encryption-enabled", "--resource-id", "bucket", "--param", "SSEAlgorithm=DES"]);
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["Status"], "Failed");
    assert!(v["Message"].as_str().unwrap().contains("SSEAlgorithm"));
    // SSM refuses a value outside the document's allowedValues before the worker runs.
    assert_eq!(v["Automation"]["Status"], "Failed");
    assert_eq!(v["Automation"]["Turns"], 0);
}

#[test]
fn remediate_refuses_what_the_document_does_not_declare() {
    let out = atrest(&["remediate", "s3-bucket-server-side-encryption-enabled", "--resource-id", "some-bucket", "--param", "Surprise=1"]);
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert!(v["Message"].as_str().unwrap().contains("Parameter \"Surprise\" is not defined in the document"), "{v}");
    let out = atrest(&["remediate", "no-such-fix", "--resource-id", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fix or rule no-such-fix"));
    // The S3 default-encryption fix serves two rules, each with its own remediation configuration.
    let out = atrest(&["remediate", "s3-enable-default-encryption", "--resource-id", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name the rule instead of the fix"), "{out:?}");
}

/// A fix that takes several turns, through the CLI: the template's RDS snapshot document loops
/// (InProgress while the copy is made) until the encrypted copy exists.
#[tokio::test]
async fn remediate_loops_through_the_document_until_the_fix_is_done() {
    let sdk = atrest_testkit::sdk().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let db = unique("cli-snapsrc");
    rds.create_db_instance()
        .db_instance_identifier(&db)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("admin")
        .master_user_password("correct-horse-battery")
        .allocated_storage(20)
        .send()
        .await
        .unwrap();
    let snapshot = unique("cli-snap");
    rds.create_db_snapshot().db_instance_identifier(&db).db_snapshot_identifier(&snapshot).send().await.unwrap();

    let out = atrest(&["remediate", "rds-encrypt-snapshot", "--resource-id", &snapshot, "--pause-seconds", "0"]);
    let report = stdout_json(&out);
    assert!(out.status.success(), "{report}");
    assert_eq!(report["Status"], "Succeeded");
    assert_eq!(report["ResourceType"], "AWS::RDS::DBSnapshot");
    assert_eq!(report["Automation"]["Document"], "RdsEncryptSnapshotDocument");
    assert!(report["Automation"]["Turns"].as_u64().unwrap() >= 2, "started, then found done: {report}");
    let copy = rds.describe_db_snapshots().db_snapshot_identifier(format!("{snapshot}-encrypted")).send().await.unwrap();
    assert_eq!(copy.db_snapshots()[0].encrypted(), Some(true));
    let source = rds.describe_db_snapshots().db_snapshot_identifier(&snapshot).send().await.unwrap();
    assert_eq!(source.db_snapshots().len(), 1, "the source is kept (DeleteSource defaults to false)");
}

// ---- `atrest fix` over a mixed estate, in a region of its own so no other test's resources are
// swept: every non-disruptive finding fixed, the disruptive ones untouched unless named, a dry
// run that changes nothing, and one failing fix that does not stop the others.

const FIX_REGION: &str = "ca-central-1";
const BUCKETS: usize = 90;
const VOLUMES: usize = 10;

async fn fix_region_sdk() -> aws_config::SdkConfig {
    atrest_testkit::sdk().await.into_builder().region(Region::new(FIX_REGION)).build()
}

/// 90 buckets with only the SSE-S3 every bucket has (one of them a static website), 10
/// unencrypted volumes and EBS encryption by default off: 101 resources NON_COMPLIANT.
async fn seed(prefix: &str) -> Vec<String> {
    let sdk = fix_region_sdk().await;
    let s3 = atrest::clients::s3(&sdk);
    let mut buckets = Vec::new();
    for i in 0..BUCKETS {
        let bucket = format!("{prefix}-{i:03}");
        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(FIX_REGION))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        buckets.push(bucket);
    }
    s3.put_bucket_website()
        .bucket(&buckets[0])
        .website_configuration(
            aws_sdk_s3::types::WebsiteConfiguration::builder()
                .index_document(aws_sdk_s3::types::IndexDocument::builder().suffix("index.html").build().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    ec2.disable_ebs_encryption_by_default().send().await.unwrap();
    for _ in 0..VOLUMES {
        ec2.create_volume().availability_zone(format!("{FIX_REGION}a")).size(1).send().await.unwrap();
    }
    buckets
}

fn by_rule<'a>(report: &'a Value, rule: &str) -> Vec<&'a Value> {
    report["Resources"].as_array().unwrap().iter().filter(|r| r["Rule"] == rule).collect()
}

fn actions(records: &[&Value]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for r in records {
        *counts.entry(r["Action"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    counts
}

async fn default_encryption(bucket: &str) -> String {
    let out = atrest::clients::s3(&fix_region_sdk().await).get_bucket_encryption().bucket(bucket).send().await.unwrap();
    let rule = &out.server_side_encryption_configuration().unwrap().rules()[0];
    rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm().as_str().to_string()
}

#[tokio::test]
async fn find_and_fix_fixes_what_is_safe_and_only_what_is_named_besides() {
    let prefix = unique("ff");
    let buckets = seed(&prefix).await;
    let rules = [
        "--rule",
        "s3-default-encryption-kms",
        "--rule",
        "s3-bucket-ssl-requests-only",
        "--rule",
        "encrypted-volumes",
        "--rule",
        "ec2-ebs-encryption-by-default",
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["fix", "--concurrency", "8", "--pause-seconds", "0"];
        args.extend_from_slice(&rules);
        args.extend_from_slice(extra);
        atrest_in(FIX_REGION, &args)
    };

    // A dry run shows the plan for all of them and changes nothing.
    let out = run(&["--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = stdout_json(&out);
    assert_eq!(actions(&by_rule(&plan, "s3-default-encryption-kms")).get("DRY_RUN"), Some(&BUCKETS), "{plan}");
    assert_eq!(actions(&by_rule(&plan, "s3-bucket-ssl-requests-only")).get("SKIPPED_DISRUPTIVE"), Some(&BUCKETS));
    assert_eq!(actions(&by_rule(&plan, "encrypted-volumes")).get("SKIPPED_DISRUPTIVE"), Some(&VOLUMES));
    assert_eq!(actions(&by_rule(&plan, "ec2-ebs-encryption-by-default")).get("DRY_RUN"), Some(&1));
    assert_eq!(default_encryption(&buckets[1]).await, "AES256", "a dry run changed a bucket");

    // The real run: every non-disruptive finding fixed and COMPLIANT after; the disruptive ones
    // (SSL-only policies, the volume swap) untouched because nobody named them.
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = stdout_json(&out);
    for rule in ["s3-default-encryption-kms", "ec2-ebs-encryption-by-default"] {
        for r in by_rule(&report, rule) {
            assert_eq!((r["Action"].as_str(), r["After"].as_str()), (Some("FIXED"), Some("COMPLIANT")), "{r}");
        }
    }
    assert_eq!(default_encryption(&buckets[1]).await, "aws:kms");
    let s3 = atrest::clients::s3(&fix_region_sdk().await);
    assert!(s3.get_bucket_policy().bucket(&buckets[1]).send().await.is_err(), "an SSL-only policy was written without --include");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Fix outcome") && stderr.contains("skipped as disruptive"), "{stderr}");

    // Named: the SSL-only fix runs too; the website bucket fails (its website endpoint is
    // HTTP-only) and is reported, and every other bucket is fixed.
    let out = atrest_in(
        FIX_REGION,
        &["fix", "--rule", "s3-bucket-ssl-requests-only", "--include", "s3-restrict-ssl-requests-only", "--pause-seconds", "0"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report = stdout_json(&out);
    let records = by_rule(&report, "s3-bucket-ssl-requests-only");
    assert_eq!(actions(&records), [("FAILED".to_string(), 1), ("FIXED".to_string(), BUCKETS - 1)].into());
    let failed = records.iter().find(|r| r["Action"] == "FAILED").unwrap();
    assert_eq!(failed["ResourceId"], buckets[0].as_str());
    assert!(failed["Message"].as_str().unwrap().contains("website"), "{failed}");

    // Unknown names are refused before anything runs.
    let out = atrest_in(FIX_REGION, &["fix", "--include", "no-such-fix"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fix no-such-fix"));
}

// ---- Many regions and accounts in one command.

async fn bucket_in(sdk: &aws_config::SdkConfig, region: &str, name: &str) {
    atrest::clients::s3(sdk)
        .create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

fn found(report: &Value) -> Vec<(String, String, String)> {
    report
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("Account"), text("Region"), text("ComplianceResourceId"))
        })
        .collect()
}

#[tokio::test]
async fn one_scan_sweeps_several_regions_and_accounts() {
    let sdk = atrest_testkit::sdk().await;
    let (north, south) = (unique("scan-north"), unique("scan-south"));
    bucket_in(&sdk.to_builder().region(Region::new("eu-north-1")).build(), "eu-north-1", &north).await;
    bucket_in(&sdk.to_builder().region(Region::new("ap-south-1")).build(), "ap-south-1", &south).await;
    let rule = ["scan", "--rule", "s3-default-encryption-kms", "--format", "json"];

    let out = atrest(&[&rule[..], &["--region", "eu-north-1", "--region", "ap-south-1"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = found(&stdout_json(&out));
    let account = atrest_testkit::ACCOUNT_ID.to_string();
    assert!(seen.contains(&(account.clone(), "eu-north-1".into(), north.clone())), "{seen:?}");
    assert!(seen.contains(&(account.clone(), "ap-south-1".into(), south.clone())), "{seen:?}");

    // Another account, through a role assumed in it: its own resources only, labelled with it.
    let role = "arn:aws:iam::111122223333:role/atrest-audit";
    let assumed = aws_sdk_sts::Client::new(&sdk).assume_role().role_arn(role).role_session_name("t").send().await.unwrap();
    let c = assumed.credentials().unwrap();
    let other = sdk
        .to_builder()
        .region(Region::new("eu-north-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().into()),
            None,
            "t",
        )))
        .build();
    let theirs = unique("scan-theirs");
    bucket_in(&other, "eu-north-1", &theirs).await;
    let out = atrest(&[&rule[..], &["--role-arn", role, "--region", "eu-north-1"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = found(&stdout_json(&out));
    assert!(seen.contains(&("111122223333".into(), "eu-north-1".into(), theirs)), "{seen:?}");
    assert!(seen.iter().all(|(a, _, id)| a == "111122223333" && *id != north), "{seen:?}");

    // Bad names fail the command before anything is swept.
    for (args, says) in [
        (&["--region", "mars-north-1a"][..], "not an AWS region name"),
        (&["--role-arn", "arn:aws:iam::1:role/x"][..], "not an IAM role ARN"),
        (&["--accounts-file", "/nonexistent/accounts.json"][..], "accounts file"),
    ] {
        let out = atrest(&[&rule[..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

// ---- The HTML report, as a person sees it: opened in a real headless browser.

/// Debian's Chromium (`make test` installs it), or ATREST_CHROMIUM.
fn chromium() -> String {
    let path = std::env::var("ATREST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new(&path).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "{path} is needed to check the HTML report: run `make test` (it installs Debian's chromium) or set ATREST_CHROMIUM");
    path
}

/// The page's DOM after Chromium has loaded and laid it out.
fn rendered_dom(page: &std::path::Path) -> String {
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_html_report_shows_its_numbers_in_a_real_browser() {
    const REPORT_REGION: &str = "me-central-1";
    let sdk = atrest_testkit::sdk().await.into_builder().region(Region::new(REPORT_REGION)).build();
    let plain: Vec<String> = (0..2).map(|i| unique(&format!("report-plain{i}"))).collect();
    for bucket in &plain {
        bucket_in(&sdk, REPORT_REGION, bucket).await;
    }
    let kms = unique("report-kms");
    bucket_in(&sdk, REPORT_REGION, &kms).await;
    let default = aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
        .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .build()
        .unwrap();
    atrest::clients::s3(&sdk)
        .put_bucket_encryption()
        .bucket(&kms)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(aws_sdk_s3::types::ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let args = ["scan", "--rule", "s3-default-encryption-kms", "--region", REPORT_REGION];
    let out = atrest(&[&args[..], &["--format", "html"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::env::temp_dir().join(format!("{}.html", unique("report")));
    std::fs::write(&page, &out.stdout).unwrap();
    let dom = rendered_dom(&page);
    let cell = |compliance: &str, n: usize| format!(r#"data-rule="s3-default-encryption-kms" data-compliance="{compliance}">{n}<"#);
    assert!(dom.contains(&cell("COMPLIANT", 1)) && dom.contains(&cell("NON_COMPLIANT", 2)), "{dom}");
    assert!(dom.contains(r#"data-service="S3" data-compliance="NON_COMPLIANT">2<"#), "{dom}");
    assert!(dom.contains(r#"data-total="NON_COMPLIANT">2<"#) && dom.contains(r#"data-total="COMPLIANT">1<"#), "{dom}");
    let findings = dom.split("id=\"findings\"").nth(1).unwrap();
    assert!(plain.iter().all(|b| findings.contains(b.as_str())) && !findings.contains(&kms), "{findings}");
    assert!(findings.contains("s3-enable-default-encryption"), "the fix that applies is named");

    // The same scan for a spreadsheet.
    let out = atrest(&[&args[..], &["--format", "csv"]].concat());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Account,Region,Rule,ResourceType,ResourceId,Compliance,Annotation,Fix\n"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(",NON_COMPLIANT,")).count(), 2, "{text}");
}
