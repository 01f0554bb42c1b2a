//! `atrest smoke` against the local stand-in. The stack is "deployed" as `make smoke` deploys it
//! (the three cheap fixes' SSM documents and remediation configurations from template.yaml,
//! under the rule names `<prefix><rule>`, S3RemediationSSEAlgorithm=aws:kms, manual only); the
//! `atrest` binary runs the smoke test; this test plays SSM for the executions Config starts
//! (the stand-in only records them), with the shared document runner and the real workers.
//! moto's GetCallerIdentity answers account 123456789012.

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use atrest::{Fix, FixRunner};
use atrest_automation::{Document, Execution, RemediationParam, Template};
use atrest_cli::smoke::{self, BUCKET_PREFIX, SMOKE_TAG, Wait};
use atrest_testkit::console::{create_document, put_remediation_configuration, record_status, run_recorded_execution};
use atrest_testkit::{ACCOUNT_ID, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_ec2::types::Filter;
use aws_sdk_s3::error::ProvideErrorMetadata;
use common::{atrest, stdout_json};

mod common;

/// The tests change the account-wide EBS setting and count smoke resources: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The template's rules for the three cheap fixes (logical ids).
const RULES: [&str; 3] = ["S3BucketServerSideEncryptionEnabledRule", "EncryptedVolumesRule", "Ec2EbsEncryptionByDefaultRule"];

fn ec2(sdk: &SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(sdk)
}

/// What `make smoke` deploys, on the stand-in: returns each registered document by name.
async fn deploy(sdk: &SdkConfig, prefix: &str, s3_algorithm: &str) -> Vec<(String, Document)> {
    let template = Template::embedded().unwrap();
    let mut documents = Vec::new();
    for mut rem in template.remediations().unwrap().into_iter().filter(|r| RULES.contains(&r.rule_logical_id.as_str())) {
        let document = template.document(&rem.document_logical_id).unwrap();
        let name = create_document(sdk, &document).await;
        let rule = match rem.rule_logical_id.as_str() {
            "S3BucketServerSideEncryptionEnabledRule" => {
                rem.parameters.insert("SSEAlgorithm".into(), RemediationParam::Static(vec![s3_algorithm.into()]));
                rule_s3_bucket_server_side_encryption_enabled::SPEC.name
            }
            "EncryptedVolumesRule" => rule_encrypted_volumes::SPEC.name,
            _ => rule_ec2_ebs_encryption_by_default::SPEC.name,
        };
        put_remediation_configuration(sdk, &format!("{prefix}{rule}"), &name, &rem, false).await;
        documents.push((name, document));
    }
    assert_eq!(documents.len(), 3);
    documents
}

fn workers(sdk: &SdkConfig) -> BTreeMap<&'static str, Arc<FixRunner>> {
    let ebs = fix_ebs_encrypt_volumes::EbsEncryptVolumes { poll: Duration::ZERO, ..Default::default() };
    let fixes: Vec<(&'static str, Arc<dyn Fix>)> = vec![
        ("fix-s3-enable-default-encryption", Arc::new(fix_s3_enable_default_encryption::S3EnableDefaultEncryption)),
        ("fix-ebs-encrypt-volumes", Arc::new(ebs)),
        ("fix-ebs-enable-default-encryption", Arc::new(fix_ebs_enable_default_encryption::EbsEnableDefaultEncryption)),
    ];
    fixes.into_iter().map(|(binary, f)| (binary, Arc::new(FixRunner::new(f, sdk, None)))).collect()
}

/// What SSM does with a document's executions.
#[derive(Clone, Copy, PartialEq)]
enum Play {
    /// Runs the document with the real worker.
    Run,
    /// Ends the execution Failed without running it (an automation that failed in AWS).
    Fail,
    /// Leaves it Pending (an automation that never ends in time).
    Ignore,
}

/// Plays SSM until `done`: runs every Pending execution of the registered documents. Returns
/// how many it ran and whether each succeeded.
async fn play_ssm(sdk: &SdkConfig, documents: &[(String, Document)], done: &AtomicBool) -> Vec<(String, bool)> {
    play_ssm_with(sdk, documents, done, &|_| Play::Run).await
}

async fn play_ssm_with(
    sdk: &SdkConfig,
    documents: &[(String, Document)],
    done: &AtomicBool,
    play: &dyn Fn(&str) -> Play,
) -> Vec<(String, bool)> {
    let workers = workers(sdk);
    let worker = |binary: &str| workers.get(binary).cloned();
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let filter =
        |key: &str, value: &str| aws_sdk_ssm::types::AutomationExecutionFilter::builder().key(key.into()).values(value).build().unwrap();
    let mut ran = Vec::new();
    while !done.load(Ordering::SeqCst) {
        for (name, document) in documents.iter().filter(|(_, d)| play(&d.logical_id) != Play::Ignore) {
            let out = ssm
                .describe_automation_executions()
                .filters(filter("DocumentNamePrefix", name))
                .filters(filter("ExecutionStatus", "Pending"))
                .send()
                .await
                .unwrap();
            for meta in out.automation_execution_metadata_list().iter().filter(|m| m.document_name() == Some(name)) {
                let id = meta.automation_execution_id().unwrap();
                let succeeded = if play(&document.logical_id) == Play::Fail {
                    record_status(id, &Execution::refused("Step fails when it is executing.".into())).await;
                    false
                } else {
                    run_recorded_execution(sdk, document, id, &worker).await.succeeded()
                };
                ran.push((document.logical_id.clone(), succeeded));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ran
}

/// Runs `atrest` on a blocking thread while this task plays SSM.
async fn atrest_with_ssm(sdk: &SdkConfig, documents: &[(String, Document)], args: Vec<String>) -> (Output, Vec<(String, bool)>) {
    let done = AtomicBool::new(false);
    let command = async {
        let out = tokio::task::spawn_blocking(move || atrest(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap();
        done.store(true, Ordering::SeqCst);
        out
    };
    tokio::join!(command, play_ssm(sdk, documents, &done))
}

/// Everything that looks like a smoke resource, and the EBS setting: what "nothing created or
/// changed" compares.
async fn account_state(sdk: &SdkConfig) -> (Vec<String>, Vec<String>, Option<bool>, Option<String>) {
    let buckets = atrest::clients::s3(sdk).list_buckets().send().await.unwrap();
    let buckets = buckets.buckets().iter().filter_map(|b| b.name()).filter(|n| n.starts_with(BUCKET_PREFIX)).map(str::to_string).collect();
    let volumes = ec2(sdk).describe_volumes().filters(Filter::builder().name("tag-key").values(SMOKE_TAG).build()).send().await.unwrap();
    let volumes = volumes.volumes().iter().filter_map(|v| v.volume_id()).map(str::to_string).collect();
    let on = ec2(sdk).get_ebs_encryption_by_default().send().await.unwrap().ebs_encryption_by_default();
    let key = ec2(sdk).get_ebs_default_kms_key_id().send().await.unwrap().kms_key_id().map(str::to_string);
    (buckets, volumes, on, key)
}

async fn bucket_exists(sdk: &SdkConfig, bucket: &str) -> bool {
    match atrest::clients::s3(sdk).head_bucket().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) if e.code() == Some("NotFound") || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
        Err(e) => panic!("HeadBucket {bucket}: {e:?}"),
    }
}

async fn volumes_tagged(sdk: &SdkConfig, key: &str, value: &str) -> Vec<String> {
    let out = ec2(sdk).describe_volumes().filters(Filter::builder().name(format!("tag:{key}")).values(value).build()).send().await.unwrap();
    out.volumes().iter().filter_map(|v| v.volume_id()).map(str::to_string).collect()
}

async fn snapshots_tagged(sdk: &SdkConfig, key: &str, value: &str) -> Vec<String> {
    let out = ec2(sdk)
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{key}")).values(value).build())
        .send()
        .await
        .unwrap();
    out.snapshots().iter().filter_map(|s| s.snapshot_id()).map(str::to_string).collect()
}

async fn set_ebs_default(sdk: &SdkConfig, on: bool) {
    if on {
        ec2(sdk).enable_ebs_encryption_by_default().send().await.unwrap();
    } else {
        ec2(sdk).disable_ebs_encryption_by_default().send().await.unwrap();
    }
}

#[tokio::test]
async fn smoke_refuses_another_account_or_an_undeployed_stack_and_creates_nothing() {
    let _serial = SERIAL.lock().await;
    let sdk = sdk().await;
    let prefix = format!("{}-", unique("smk"));
    let documents = deploy(&sdk, &prefix, "aws:kms").await;
    let before = account_state(&sdk).await;

    // The credentials are the stand-in's account 123456789012, not the one given.
    let out = atrest(&["smoke", "--account-id", "111111111111", "--rule-name-prefix", &prefix]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing") && stderr.contains("111111111111") && stderr.contains(ACCOUNT_ID), "{stderr}");
    assert!(out.stdout.is_empty(), "no summary for a refused run");
    // `make smoke` asks this before it deploys anything.
    let out = atrest(&["smoke", "--account-id", "111111111111", "--check-account-only"]);
    assert_eq!(out.status.code(), Some(2));
    let out = atrest(&["smoke", "--account-id", ACCOUNT_ID, "--check-account-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // No account id, or not one, or a poll of 0 s: clap refuses.
    for args in [&["smoke"][..], &["smoke", "--account-id", "12345"][..], &["smoke", "--account-id", ACCOUNT_ID, "--poll-seconds", "0"][..]]
    {
        assert_eq!(atrest(args).status.code(), Some(2), "{args:?}");
    }
    // Cleanup confirms the account too.
    let out = atrest(&["smoke", "--cleanup", "--all-runs", "--account-id", "111111111111"]);
    assert_eq!(out.status.code(), Some(2));

    // The right account but no stack under this prefix, or one whose S3 fix would set the
    // SSE-S3 every bucket already has: refused before anything is created.
    let wait = Wait { poll: Duration::from_millis(50), timeout: Duration::from_secs(5) };
    let run_id = smoke::new_run_id();
    let e = smoke::run(&sdk, ACCOUNT_ID, "nosuchstack-", &run_id, wait).await.unwrap_err();
    assert!(format!("{e:#}").contains("nosuchstack-s3-bucket-server-side-encryption-enabled has no remediation configuration"), "{e:#}");
    let aes_prefix = format!("{}-", unique("smkaes"));
    deploy(&sdk, &aes_prefix, "AES256").await;
    let e = smoke::run(&sdk, ACCOUNT_ID, &aes_prefix, &run_id, wait).await.unwrap_err();
    assert!(format!("{e:#}").contains("S3RemediationSSEAlgorithm=aws:kms"), "{e:#}");

    assert_eq!(account_state(&sdk).await, before, "a refused run creates and changes nothing");
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    for (name, _) in &documents {
        let filter =
            aws_sdk_ssm::types::AutomationExecutionFilter::builder().key("DocumentNamePrefix".into()).values(name).build().unwrap();
        let out = ssm.describe_automation_executions().filters(filter).send().await.unwrap();
        assert!(out.automation_execution_metadata_list().is_empty(), "a refused run starts no remediation");
    }
}

#[tokio::test]
async fn smoke_remediates_each_cheap_fix_from_the_console_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().await;
    let sdk = sdk().await;
    let prefix = format!("{}-", unique("smk"));
    let documents = deploy(&sdk, &prefix, "aws:kms").await;
    // Off before the run: the fix turns it on, so only a real restore ends with it off again.
    set_ebs_default(&sdk, false).await;
    let before = account_state(&sdk).await;

    let args = ["smoke", "--account-id", ACCOUNT_ID, "--rule-name-prefix", &prefix, "--poll-seconds", "1", "--timeout-seconds", "120"];
    let (out, ran) = atrest_with_ssm(&sdk, &documents, args.iter().map(|s| s.to_string()).collect()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stdout_json(&out);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["passed"], true);
    assert!(stderr.contains("smoke test PASSED"), "{stderr}");

    // Each fix ran once, through the console path, and was read back fixed.
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert!(ran.iter().all(|(_, ok)| *ok), "{ran:?}");
    let checks = report["checks"].as_array().unwrap();
    let fixes: Vec<&str> = checks.iter().map(|c| c["fix"].as_str().unwrap()).collect();
    assert_eq!(fixes, ["s3-enable-default-encryption", "ebs-encrypt-volumes", "ebs-enable-default-encryption"]);
    for c in checks {
        assert_eq!(c["remediation"], "SUCCEEDED", "{c:#}");
        assert_eq!(c["passed"], true, "{c:#}");
    }
    assert_eq!(checks[0]["outcome"], "default encryption is aws:kms");
    assert!(checks[1]["outcome"].as_str().unwrap().starts_with("replaced by encrypted vol-"), "{:#}", checks[1]);
    assert_eq!(checks[2]["resource_id"], ACCOUNT_ID);
    assert_eq!(report["not_covered"].as_array().unwrap().len(), 3, "the RDS fixes are named as not covered");

    // Teardown: the bucket, the old volume and its encrypted replacement are gone; the EBS
    // setting is back off; nothing else smoke-tagged remains.
    let run_id = report["run_id"].as_str().unwrap();
    let bucket = report["created"]["bucket"].as_str().unwrap();
    let volume = report["created"]["volume"].as_str().unwrap();
    let teardown = &report["teardown"];
    assert_eq!(teardown["left"], serde_json::json!([]), "{teardown:#}");
    let deleted: Vec<&str> = teardown["deleted"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert_eq!(deleted.iter().filter(|d| d.starts_with("volume ")).count(), 2, "{deleted:?}");
    assert!(deleted.contains(&format!("bucket {bucket}").as_str()), "{deleted:?}");
    assert_eq!(teardown["restored"], serde_json::json!(["EBS encryption by default off"]));
    assert!(!bucket_exists(&sdk, bucket).await, "{bucket} still exists");
    assert!(volumes_tagged(&sdk, SMOKE_TAG, run_id).await.is_empty());
    assert!(volumes_tagged(&sdk, "atrest:encrypted-from", volume).await.is_empty());
    assert!(snapshots_tagged(&sdk, "atrest:encrypting", volume).await.is_empty());
    assert_eq!(account_state(&sdk).await, before, "the account is as it was before the run");
}

/// A remediation that fails and one that never ends: the run says which and why, exits 1, and
/// still deletes everything it made.
#[tokio::test]
async fn a_failed_or_stuck_remediation_fails_the_run_and_teardown_still_runs() {
    let _serial = SERIAL.lock().await;
    let sdk = sdk().await;
    let prefix = format!("{}-", unique("smk"));
    let documents = deploy(&sdk, &prefix, "aws:kms").await;
    let before = account_state(&sdk).await;

    let args = ["smoke", "--account-id", ACCOUNT_ID, "--rule-name-prefix", &prefix, "--poll-seconds", "1", "--timeout-seconds", "3"];
    let done = AtomicBool::new(false);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let command = async {
        let out = tokio::task::spawn_blocking(move || atrest(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap();
        done.store(true, Ordering::SeqCst);
        out
    };
    let play = |document: &str| match document {
        "S3EnableDefaultEncryptionDocument" => Play::Fail,
        "EbsEncryptVolumesDocument" => Play::Ignore,
        _ => Play::Run,
    };
    let (out, _) = tokio::join!(command, play_ssm_with(&sdk, &documents, &done, &play));
    let report = stdout_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{report:#}\n{stderr}");
    assert_eq!(report["passed"], false);
    assert!(stderr.contains("smoke test FAILED"), "{stderr}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!((checks[0]["remediation"].as_str(), checks[0]["passed"].as_bool()), (Some("FAILED"), Some(false)), "{:#}", checks[0]);
    assert!(checks[0]["outcome"].as_str().unwrap().starts_with("remediation failed"), "{:#}", checks[0]);
    assert_eq!((checks[1]["remediation"].as_str(), checks[1]["passed"].as_bool()), (Some("TIMED_OUT"), Some(false)), "{:#}", checks[1]);
    assert!(checks[1]["outcome"].as_str().unwrap().contains("still QUEUED after 3 s"), "{:#}", checks[1]);
    assert_eq!(checks[2]["passed"], true, "{:#}", checks[2]);

    // Teardown ran all the same: nothing of the run is left, the setting is as it was.
    assert_eq!(report["teardown"]["left"], serde_json::json!([]), "{:#}", report["teardown"]);
    assert!(!bucket_exists(&sdk, report["created"]["bucket"].as_str().unwrap()).await);
    assert_eq!(account_state(&sdk).await, before);
}

/// A run cut short after creating its resources (and after the fix started): `--cleanup
/// --run-id` finds everything from AWS alone, deletes only that run's, and puts the EBS
/// setting back as the run recorded it.
#[tokio::test]
async fn an_interrupted_run_is_cleaned_up_by_its_run_id_and_nothing_else_is_touched() {
    let _serial = SERIAL.lock().await;
    let sdk = sdk().await;
    // On before the run: the run turns it off to create an unencrypted volume.
    set_ebs_default(&sdk, true).await;
    let before = account_state(&sdk).await;
    let run_id = smoke::new_run_id();
    let created = smoke::create(&sdk, &run_id, ACCOUNT_ID).await.unwrap();
    // The same run id again would overwrite the recorded setting: refused.
    let again = smoke::create(&sdk, &run_id, ACCOUNT_ID).await.unwrap_err();
    assert!(format!("{again:#}").contains("already has resources"), "{again:#}");
    assert_eq!(ec2(&sdk).get_ebs_encryption_by_default().send().await.unwrap().ebs_encryption_by_default(), Some(false));
    // The EBS fix's first step, as it takes it: a temporary snapshot tagged with the volume.
    let snapshot = ec2(&sdk)
        .create_snapshot()
        .volume_id(&created.volume)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Snapshot)
                .tags(aws_sdk_ec2::types::Tag::builder().key("atrest:encrypting").value(&created.volume).build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    // Not this run's: another run's volume and an untagged one.
    let other_run = smoke::new_run_id();
    let bystanders: Vec<String> = {
        let mut ids = Vec::new();
        for tags in [vec![(SMOKE_TAG, other_run.as_str())], vec![]] {
            let mut request = ec2(&sdk).create_volume().availability_zone("us-east-1a").size(1);
            if !tags.is_empty() {
                let spec = aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                    .set_tags(Some(tags.iter().map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build()).collect()))
                    .build();
                request = request.tag_specifications(spec);
            }
            ids.push(request.send().await.unwrap().volume_id().unwrap().to_string());
        }
        ids
    };

    let out = atrest(&["smoke", "--cleanup", "--account-id", ACCOUNT_ID, "--run-id", &run_id]);
    let teardown = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{teardown:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(teardown["left"], serde_json::json!([]), "{teardown:#}");
    assert_eq!(teardown["restored"], serde_json::json!(["EBS encryption by default on"]));
    assert!(!bucket_exists(&sdk, &created.bucket).await);
    assert!(volumes_tagged(&sdk, SMOKE_TAG, &run_id).await.is_empty());
    let left = ec2(&sdk).describe_snapshots().owner_ids("self").send().await.unwrap();
    assert!(left.snapshots().iter().all(|s| s.snapshot_id() != Some(snapshot.as_str())), "the fix's snapshot is deleted");
    let still = ec2(&sdk).describe_volumes().set_volume_ids(Some(bystanders.clone())).send().await.unwrap();
    assert_eq!(still.volumes().len(), 2, "other volumes are untouched");

    // Running it again finds nothing and changes nothing.
    let again = stdout_json(&atrest(&["smoke", "--cleanup", "--account-id", ACCOUNT_ID, "--run-id", &run_id]));
    assert_eq!(again["deleted"], serde_json::json!([]));
    assert_eq!(again["restored"], serde_json::json!([]));

    // --all-runs takes every run's tagged resources, still nothing untagged.
    let all = atrest(&["smoke", "--cleanup", "--all-runs", "--account-id", ACCOUNT_ID]);
    let all = stdout_json(&all);
    assert_eq!(all["deleted"], serde_json::json!([format!("volume {}", bystanders[0])]), "{all:#}");
    let still = ec2(&sdk).describe_volumes().set_volume_ids(Some(vec![bystanders[1].clone()])).send().await.unwrap();
    assert_eq!(still.volumes().len(), 1, "the untagged volume is untouched");

    ec2(&sdk).delete_volume().volume_id(&bystanders[1]).send().await.unwrap();
    assert_eq!(account_state(&sdk).await, before);
}
