//! Every fix under faults: seeded random fault schedules, every fault class at every call, and
//! a kill after every call followed by a resume from a fresh runner. After each run the
//! invariants are checked straight against the stand-in: the resource is compliant, exactly
//! one target exists, nothing the user had is gone, intermediate artifacts are cleaned up or
//! tagged.
//!
//! A fix joins by adding one line to `SCENARIOS` (and a `FixScenario` + `Fixture` below).
//! Run with `--nocapture` to print the per-scenario table RELIABILITY.md reports.

#[path = "dynamodb_kms_support/mod.rs"]
mod dynamodb_kms_support;
#[path = "ebs_support/mod.rs"]
mod ebs_support;
#[path = "kinesis_support/mod.rs"]
mod kinesis_support;
#[path = "messaging_support/mod.rs"]
mod messaging_support;
#[path = "rds_support/mod.rs"]
mod rds_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use atrest::{ConfigRule, Fix, Params, RuleContext};
use atrest_testkit::faults::{ALL_FAULTS, FaultClass};
use atrest_testkit::reliability::{
    Coverage, FixScenario, Fixture, Harness, RunResult, clean_run, failures, kill_jobs_sampled, operations, random_jobs, run_all,
    targeted_jobs,
};
use atrest_testkit::{endpoint, sdk, topic, unique};
use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use rds_support::{SnapshotKind, aurora_cluster, manual_snapshot_ids, manual_snapshots, postgres_instance, rds, rds_tags, user_tags};
use serde_json::{Value, json};

/// The table: one line per fix (variant).
static SCENARIOS: &[&dyn FixScenario] = &[
    &S3Scenario { name: "s3-enable-default-encryption/sse-kms-aws-managed-key", kms: false },
    &S3Scenario { name: "s3-enable-default-encryption/sse-kms-alias", kms: true },
    &SslOnlyScenario,
    &RdsInstanceScenario,
    &RdsSnapshotScenario { name: "rds-encrypt-snapshot/keep-source", cluster: false, delete_source: false },
    &RdsSnapshotScenario { name: "rds-encrypt-snapshot/cluster-snapshot", cluster: true, delete_source: false },
    &RdsSnapshotScenario { name: "rds-encrypt-snapshot/cluster-snapshot-delete-source", cluster: true, delete_source: true },
    &RdsClusterScenario,
    &EbsDefaultScenario { name: "ebs-enable-default-encryption/keep-key", kms: false },
    &EbsDefaultScenario { name: "ebs-enable-default-encryption/customer-key", kms: true },
    &ObjectsScenario,
    &kinesis_support::KinesisScenario { name: "kinesis-encrypt-stream/aws-managed-key", customer_key: false },
    &kinesis_support::KinesisScenario { name: "kinesis-encrypt-stream/customer-key-alias", customer_key: true },
    &kinesis_support::FirehoseScenario { name: "firehose-encrypt-delivery-stream/aws-owned-key", customer_key: false },
    &kinesis_support::FirehoseScenario { name: "firehose-encrypt-delivery-stream/customer-key-alias", customer_key: true },
    &dynamodb_kms_support::DynamoDbScenario { name: "dynamodb-encrypt-table/aws-managed-key", kms: false },
    &dynamodb_kms_support::DynamoDbScenario { name: "dynamodb-encrypt-table/customer-key-alias", kms: true },
    &dynamodb_kms_support::KmsRotationScenario,
    &messaging_support::SnsScenario { name: "sns-encrypt-topic/aws-managed-key", customer_key: false },
    &messaging_support::SnsScenario { name: "sns-encrypt-topic/customer-key-with-publisher", customer_key: true },
    &messaging_support::SqsScenario { name: "sqs-encrypt-queue/sse-sqs", customer_key: false },
    &messaging_support::SqsScenario { name: "sqs-encrypt-queue/customer-key-with-publisher", customer_key: true },
];

/// Scenarios too slow for every `cargo test` (hundreds of calls per run): `make test` (and so
/// CI) runs them with `RELIABILITY_SLOW=1`; `RELIABILITY_ONLY` picks one by name. See
/// RELIABILITY.md for their numbers.
static SLOW_SCENARIOS: &[&dyn FixScenario] = &[&EbsVolumesScenario];

/// The scenarios to run: all (the slow ones with `RELIABILITY_SLOW=1`), or those whose name
/// contains `RELIABILITY_ONLY` (to rerun one fix alone, e.g. `RELIABILITY_ONLY=rds-encrypt-cluster`).
fn scenarios() -> Vec<&'static dyn FixScenario> {
    let only = std::env::var("RELIABILITY_ONLY").unwrap_or_default();
    let slow = !only.is_empty() || std::env::var("RELIABILITY_SLOW").is_ok_and(|v| v == "1");
    let table = SCENARIOS.iter().chain(if slow { SLOW_SCENARIOS } else { &[] });
    table.copied().filter(|s| s.name().contains(only.as_str())).collect()
}

/// The shape of the random schedules (how many: `FixScenario::seeds`).
const RATE_PERCENT: u64 = 35;
const MAX_FAULTS: u32 = 4;
/// Runs in flight at once (moto is one GIL-bound process; more only queues).
const CONCURRENCY: usize = 6;

async fn harness(direct: &SdkConfig) -> Harness {
    let mut h = Harness::new(&endpoint());
    h.alert_topic = Some(topic(direct, &unique("reliability")).await);
    h
}

fn report(kind: &str, scenario: &str, results: &[RunResult], started: Instant) {
    let faults: usize = results.iter().map(|r| r.faults().count()).sum();
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        for (_, f) in r.faults() {
            *by_class.entry(f.name()).or_default() += 1;
        }
    }
    let killed = results.iter().filter(|r| r.killed).count();
    let passed = results.iter().filter(|r| r.violations.is_empty()).count();
    let calls: usize = results.iter().map(|r| r.exchanges.len()).sum();
    let steps: usize = results.iter().map(|r| r.steps).sum();
    println!(
        "RELIABILITY {kind} {scenario}: runs={} passed={passed} calls={calls} steps={steps} faults={faults} {by_class:?} killed={killed} in {:.1}s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The fault-free run every targeted and kill sweep starts from: what one run of the fix costs.
fn report_clean(scenario: &str, clean: &RunResult) {
    let mut by_operation: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &clean.exchanges {
        *by_operation.entry(e.operation.as_str()).or_default() += 1;
    }
    let mutations = clean.exchanges.iter().filter(|e| e.mutating).count();
    println!("RELIABILITY clean {scenario}: calls={} mutations={mutations} steps={} {by_operation:?}", clean.exchanges.len(), clean.steps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fix_survives_seeded_random_faults() {
    let direct = sdk().await;
    let h = harness(&direct).await;
    let mut problems = Vec::new();
    for scenario in scenarios() {
        scenario.warm_up(&direct).await;
        let started = Instant::now();
        let results =
            run_all(&h, &direct, scenario, random_jobs(&h, 0..scenario.seeds(), RATE_PERCENT, MAX_FAULTS, ALL_FAULTS), CONCURRENCY).await;
        report("random", scenario.name(), &results, started);
        assert!(results.iter().map(|r| r.faults().count()).sum::<usize>() >= scenario.seeds() as usize, "the schedules inject faults");
        problems.extend(failures(&results));
    }
    assert!(problems.is_empty(), "{} runs broke an invariant:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_class_at_every_call_of_every_fix() {
    let direct = sdk().await;
    let h = harness(&direct).await;
    let mut problems = Vec::new();
    for scenario in scenarios() {
        scenario.warm_up(&direct).await;
        let clean = clean_run(&h, &direct, scenario).await;
        assert!(clean.violations.is_empty(), "{}: the fault-free run fails: {:?}", scenario.name(), clean.violations);
        report_clean(scenario.name(), &clean);
        let started = Instant::now();
        let results = run_all(&h, &direct, scenario, targeted_jobs(&h, &clean, scenario.targeted_classes()), CONCURRENCY).await;
        report("targeted", scenario.name(), &results, started);
        let mut coverage = Coverage::default();
        results.iter().for_each(|r| coverage.add(r));
        let missing = coverage.missing(&operations(&clean), scenario.targeted_classes());
        assert!(missing.is_empty(), "{}: not covered: {missing:?}", scenario.name());
        problems.extend(failures(&results));
    }
    assert!(problems.is_empty(), "{} runs broke an invariant:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fix_resumes_after_a_kill_at_every_call() {
    let direct = sdk().await;
    let h = harness(&direct).await;
    let mut problems = Vec::new();
    for scenario in scenarios() {
        scenario.warm_up(&direct).await;
        let clean = clean_run(&h, &direct, scenario).await;
        report_clean(scenario.name(), &clean);
        let jobs = kill_jobs_sampled(&clean, scenario.kill_read_stride());
        let expected = jobs.len();
        let started = Instant::now();
        let results = run_all(&h, &direct, scenario, jobs, CONCURRENCY).await;
        report("kill", scenario.name(), &results, started);
        // Every kill point is reached; the last two are allowed to slip when a loaded machine made
        // the clean run retry a timed-out call (one more call than a normal run makes).
        let killed = results.iter().filter(|r| r.killed).count();
        assert!(killed + 2 >= expected, "{}: {killed} of {expected} kill points reached", scenario.name());
        problems.extend(failures(&results));
    }
    assert!(problems.is_empty(), "{} runs broke an invariant:\n{}", problems.len(), problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// S3: fix-s3-enable-default-encryption

/// Every bucket starts from SSE-S3, its base level since January 2023 (as the stand-in models
/// it), so each run asks for SSE-KMS: with the AWS managed key (`kms: false`) or a customer key.
/// s3-encrypt-existing-objects: a versioned bucket of pre-2023 unencrypted objects (so every
/// copy leaves a version behind and copies can be counted), rewritten with SSE-S3.
struct ObjectsScenario;

/// (key, bytes, content type, metadata, tags, storage class) of one seeded object.
type SeededObject = (String, Vec<u8>, Option<String>, BTreeMap<String, String>, BTreeSet<(String, String)>, Option<String>);

struct ObjectsFixture {
    bucket: String,
    objects: Vec<SeededObject>,
}

#[atrest::async_trait]
impl FixScenario for ObjectsScenario {
    fn name(&self) -> &'static str {
        "s3-encrypt-existing-objects/versioned-sse-s3"
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_s3_encrypt_existing_objects::S3EncryptExistingObjects { page_size: 2, ..Default::default() })
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = atrest::clients::s3(sdk).list_buckets().send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let s3 = atrest::clients::s3(sdk);
        let bucket = unique("rel-objs");
        s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .expect("PutBucketVersioning");
        let objects = vec![
            (
                "data/report.csv".to_string(),
                b"a,b\n1,2\n".to_vec(),
                Some("text/csv".to_string()),
                [("owner".to_string(), "finance".to_string())].into(),
                [("class".to_string(), "pii".to_string())].into(),
                Some("STANDARD_IA".to_string()),
            ),
            ("naïve/ünïcode key+1.bin".to_string(), (0..=255u8).collect(), None, BTreeMap::new(), BTreeSet::new(), None),
            ("empty".to_string(), Vec::new(), None, BTreeMap::new(), [("keep".to_string(), "yes".to_string())].into(), None),
        ];
        for (key, bytes, content_type, metadata, tags, class) in &objects {
            let tagging = tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            s3.put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from(bytes.clone()))
                .set_content_type(content_type.clone())
                .set_metadata(Some(metadata.clone().into_iter().collect()))
                .tagging(tagging)
                .set_storage_class(class.as_deref().map(aws_sdk_s3::types::StorageClass::from))
                .send()
                .await
                .expect("PutObject");
        }
        atrest_testkit::make_legacy_objects(&bucket, None, "").await;
        Box::new(ObjectsFixture { bucket, objects })
    }
}

#[atrest::async_trait]
impl Fixture for ObjectsFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.bucket, "ExecutionId": "00000000-0000-4000-8000-00000000feed", "Concurrency": "2"})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let s3 = atrest::clients::s3(sdk);
        let b = &self.bucket;
        let mut versions: BTreeMap<String, usize> = BTreeMap::new();
        match s3.list_object_versions().bucket(b).send().await {
            Ok(out) => {
                for version in out.versions() {
                    *versions.entry(version.key().unwrap_or_default().to_string()).or_default() += 1;
                }
                if !out.delete_markers().is_empty() {
                    v.push("a delete marker was written".into());
                }
            }
            Err(e) => v.push(format!("ListObjectVersions: {e:?}")),
        }
        for (key, bytes, content_type, metadata, tags, class) in &self.objects {
            // The original version and one encrypted copy; at most one more when the SDK resent a
            // CopyObject whose answer was lost (the resend is harmless, and rare).
            match versions.get(key) {
                Some(2) | Some(3) => {}
                other => v.push(format!("{key}: {other:?} versions, expected the original and one copy")),
            }
            let head = match s3.head_object().bucket(b).key(key).send().await {
                Ok(head) => head,
                Err(e) => {
                    v.push(format!("{key}: HeadObject {e:?}"));
                    continue;
                }
            };
            if head.server_side_encryption().map(|s| s.as_str()) != Some("AES256") {
                v.push(format!("{key}: encryption {:?}", head.server_side_encryption()));
            }
            // (The SDK sends application/octet-stream when a put names no type.)
            if head.content_type().map(str::to_string) != content_type.clone().or(Some("application/octet-stream".into())) {
                v.push(format!("{key}: content type {:?}", head.content_type()));
            }
            let got: BTreeMap<String, String> = head.metadata().cloned().unwrap_or_default().into_iter().collect();
            if &got != metadata {
                v.push(format!("{key}: metadata {got:?}"));
            }
            if head.storage_class().map(|c| c.as_str().to_string()) != *class {
                v.push(format!("{key}: storage class {:?}", head.storage_class()));
            }
            match s3.get_object().bucket(b).key(key).send().await {
                Ok(out) => match out.body.collect().await.map(|d| d.to_vec()) {
                    Ok(data) if data == *bytes => {}
                    _ => v.push(format!("{key}: bytes changed")),
                },
                Err(e) => v.push(format!("{key}: GetObject {e:?}")),
            }
            match s3.get_object_tagging().bucket(b).key(key).send().await {
                Ok(out) => {
                    let got: BTreeSet<(String, String)> =
                        out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
                    if &got != tags {
                        v.push(format!("{key}: tags {got:?}"));
                    }
                }
                Err(e) => v.push(format!("{key}: GetObjectTagging {e:?}")),
            }
        }
        v
    }
}

struct S3Scenario {
    name: &'static str,
    kms: bool,
}

struct S3Object {
    key: String,
    bytes: Vec<u8>,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    tags: BTreeSet<(String, String)>,
}

struct S3Fixture {
    bucket: String,
    objects: Vec<S3Object>,
    policy_statements: BTreeSet<String>,
    bucket_tags: BTreeSet<(String, String)>,
    /// (alias, key ARN) when the run asks for a customer managed key.
    kms: Option<(String, String)>,
}

#[atrest::async_trait]
impl FixScenario for S3Scenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_s3_enable_default_encryption::S3EnableDefaultEncryption)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = atrest::clients::s3(sdk).list_buckets().send().await;
        let _ = atrest::clients::kms(sdk).list_keys().limit(1).send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let s3 = atrest::clients::s3(sdk);
        let bucket = unique("rel-s3");
        s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
        let objects = vec![
            S3Object {
                key: "data/report.csv".into(),
                bytes: b"a,b\n1,2\n".to_vec(),
                content_type: Some("text/csv".into()),
                metadata: [("owner".to_string(), "finance".to_string())].into(),
                tags: [("class".to_string(), "pii".to_string())].into(),
            },
            S3Object {
                key: "naïve/ünïcode key.bin".into(),
                bytes: (0..=255u8).collect(),
                content_type: Some("application/octet-stream".into()),
                metadata: BTreeMap::new(),
                tags: [("keep".to_string(), "forever".to_string()), ("team".to_string(), "data".to_string())].into(),
            },
        ];
        for o in &objects {
            let tagging = o.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            s3.put_object()
                .bucket(&bucket)
                .key(&o.key)
                .body(ByteStream::from(o.bytes.clone()))
                .set_content_type(o.content_type.clone())
                .set_metadata(Some(o.metadata.clone().into_iter().collect()))
                .tagging(tagging)
                .send()
                .await
                .expect("PutObject");
        }
        let statements = vec![
            json!({"Sid": "ReadForAuditors", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                   "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}),
            json!({"Sid": "DenyUnencryptedUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                   "Resource": format!("arn:aws:s3:::{bucket}/*"),
                   "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}),
            json!({"Sid": "ListForAuditors", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                   "Action": "s3:ListBucket", "Resource": format!("arn:aws:s3:::{bucket}")}),
        ];
        let policy = json!({"Version": "2012-10-17", "Statement": statements});
        s3.put_bucket_policy().bucket(&bucket).policy(policy.to_string()).send().await.expect("PutBucketPolicy");
        let bucket_tags: BTreeSet<(String, String)> = [("cost-center".to_string(), "42".to_string())].into();
        let tag_set =
            bucket_tags.iter().map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(k).value(v).build().unwrap()).collect::<Vec<_>>();
        s3.put_bucket_tagging()
            .bucket(&bucket)
            .tagging(aws_sdk_s3::types::Tagging::builder().set_tag_set(Some(tag_set)).build().unwrap())
            .send()
            .await
            .expect("PutBucketTagging");
        let kms = if self.kms {
            let client = atrest::clients::kms(sdk);
            let key = client.create_key().send().await.expect("CreateKey").key_metadata().unwrap().clone();
            let alias = format!("alias/{}", unique("rel"));
            client.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.expect("CreateAlias");
            Some((alias, key.arn().unwrap().to_string()))
        } else {
            None
        };
        Box::new(S3Fixture { bucket, objects, policy_statements: statements.iter().map(Value::to_string).collect(), bucket_tags, kms })
    }
}

#[atrest::async_trait]
impl Fixture for S3Fixture {
    fn payload(&self) -> Value {
        let mut p = json!({"ResourceId": self.bucket, "ExecutionId": "00000000-0000-4000-8000-00000000feed", "SSEAlgorithm": "aws:kms"});
        if let Some((alias, _)) = &self.kms {
            p["KmsKeyId"] = json!(alias);
        }
        p
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let s3 = atrest::clients::s3(sdk);
        let b = &self.bucket;

        // Compliant, as the rule itself judges the live bucket.
        let rule = rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled;
        let params = json!({"requiredAlgorithm": "aws:kms"});
        let params =
            rule.spec().parse_params(&params.as_object().unwrap().clone().into_iter().collect()).unwrap_or_else(|_| Params::default());
        let ctx = RuleContext::new(sdk, params);
        match rule.fetch_item(&ctx, "AWS::S3::Bucket", b).await {
            Ok(Some(item)) => match rule.judge(&ctx, &item).await {
                Ok(verdict) if verdict.compliance == atrest::Compliance::Compliant => {}
                other => v.push(format!("the rule does not judge {b} compliant: {other:?}")),
            },
            other => v.push(format!("cannot read {b} back: {other:?}")),
        }
        // Exactly one default-encryption rule, the one asked for.
        match s3.get_bucket_encryption().bucket(b).send().await {
            Ok(out) => {
                let rules = out.server_side_encryption_configuration().map(|c| c.rules().to_vec()).unwrap_or_default();
                if rules.len() != 1 {
                    v.push(format!("{} encryption rules, expected exactly one", rules.len()));
                }
                if let (Some((_, arn)), Some(rule)) = (&self.kms, rules.first()) {
                    let d = rule.apply_server_side_encryption_by_default();
                    if d.and_then(|d| d.kms_master_key_id()) != Some(arn.as_str()) {
                        v.push(format!("the key is {:?}, expected {arn}", d.and_then(|d| d.kms_master_key_id())));
                    }
                }
            }
            Err(e) => v.push(format!("GetBucketEncryption: {e:?}")),
        }
        // Every object, with its bytes, type, metadata and tags; no object added.
        let listed = s3
            .list_objects_v2()
            .bucket(b)
            .send()
            .await
            .map(|o| o.contents().iter().filter_map(|c| c.key().map(str::to_string)).collect::<BTreeSet<_>>());
        let expected: BTreeSet<String> = self.objects.iter().map(|o| o.key.clone()).collect();
        match listed {
            Ok(keys) if keys == expected => {}
            other => v.push(format!("objects are {other:?}, expected {expected:?}")),
        }
        for o in &self.objects {
            match s3.get_object().bucket(b).key(&o.key).send().await {
                Ok(out) => {
                    if out.content_type() != o.content_type.as_deref() {
                        v.push(format!("{}: content type {:?}", o.key, out.content_type()));
                    }
                    let metadata: BTreeMap<String, String> = out.metadata().cloned().unwrap_or_default().into_iter().collect();
                    if metadata != o.metadata {
                        v.push(format!("{}: metadata {metadata:?}, expected {:?}", o.key, o.metadata));
                    }
                    let bytes = out.body.collect().await.map(|b| b.into_bytes().to_vec()).unwrap_or_default();
                    if bytes != o.bytes {
                        v.push(format!("{}: {} bytes differ from the {} written", o.key, bytes.len(), o.bytes.len()));
                    }
                }
                Err(e) => v.push(format!("{} is gone: {e:?}", o.key)),
            }
            let tags: BTreeSet<(String, String)> = s3
                .get_object_tagging()
                .bucket(b)
                .key(&o.key)
                .send()
                .await
                .map(|t| t.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
                .unwrap_or_default();
            if tags != o.tags {
                v.push(format!("{}: tags {tags:?}, expected {:?}", o.key, o.tags));
            }
        }
        // Every policy statement, unchanged, and no other.
        match s3.get_bucket_policy().bucket(b).send().await {
            Ok(out) => {
                let doc: Value = serde_json::from_str(out.policy().unwrap_or("{}")).unwrap_or(Value::Null);
                let now: BTreeSet<String> = doc["Statement"].as_array().into_iter().flatten().map(Value::to_string).collect();
                if now != self.policy_statements {
                    v.push(format!("policy statements changed: {now:?}"));
                }
            }
            Err(e) => v.push(format!("the bucket policy is gone: {e:?}")),
        }
        let tags: BTreeSet<(String, String)> = s3
            .get_bucket_tagging()
            .bucket(b)
            .send()
            .await
            .map(|t| t.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
            .unwrap_or_default();
        if tags != self.bucket_tags {
            v.push(format!("bucket tags {tags:?}, expected {:?}", self.bucket_tags));
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// S3: fix-s3-restrict-ssl-requests-only

/// A bucket whose policy has three statements (one with a condition, one for another account)
/// and no SSL-only deny. Every run must end with those three unchanged and exactly one deny
/// added, whatever failed or was killed on the way (a lost PutBucketPolicy response included).
struct SslOnlyScenario;

struct SslOnlyFixture {
    bucket: String,
    statements: Vec<Value>,
    object_key: String,
}

#[atrest::async_trait]
impl FixScenario for SslOnlyScenario {
    fn name(&self) -> &'static str {
        "s3-restrict-ssl-requests-only/three-statements"
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_s3_restrict_ssl_requests_only::S3RestrictSslRequestsOnly)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = atrest::clients::s3(sdk).list_buckets().send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let s3 = atrest::clients::s3(sdk);
        let bucket = unique("rel-ssl");
        s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
        // Before the policy: once the deny is in, object requests over HTTP are refused.
        let object_key = "data/report.csv".to_string();
        s3.put_object().bucket(&bucket).key(&object_key).body(ByteStream::from(b"a,b\n".to_vec())).send().await.expect("PutObject");
        let arn = format!("arn:aws:s3:::{bucket}");
        let statements = vec![
            json!({"Sid": "PartnerRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                   "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [arn.clone(), format!("{arn}/*")]}),
            json!({"Sid": "DenyUnencryptedUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
                   "Resource": format!("{arn}/*"), "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}),
            json!({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:DeleteBucket", "Resource": arn}),
        ];
        let policy = json!({"Version": "2012-10-17", "Id": "rel", "Statement": statements});
        s3.put_bucket_policy().bucket(&bucket).policy(policy.to_string()).send().await.expect("PutBucketPolicy");
        Box::new(SslOnlyFixture { bucket, statements, object_key })
    }
}

#[atrest::async_trait]
impl Fixture for SslOnlyFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.bucket, "ExecutionId": "00000000-0000-4000-8000-0000000055a1", "IncludeWebsiteBuckets": "false"})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let s3 = atrest::clients::s3(sdk);
        let b = &self.bucket;

        // Compliant, as the rule itself judges the live bucket.
        let rule = rule_s3_bucket_ssl_requests_only::S3BucketSslRequestsOnly;
        let ctx = RuleContext::new(sdk, Params::default());
        match rule.fetch_item(&ctx, "AWS::S3::Bucket", b).await {
            Ok(Some(item)) => match rule.judge(&ctx, &item).await {
                Ok(verdict) if verdict.compliance == atrest::Compliance::Compliant => {}
                other => v.push(format!("the rule does not judge {b} compliant: {other:?}")),
            },
            other => v.push(format!("cannot read {b} back: {other:?}")),
        }
        // The three statements unchanged and in order, then exactly one deny: no duplicate.
        match s3.get_bucket_policy().bucket(b).send().await {
            Ok(out) => {
                let doc: Value = serde_json::from_str(out.policy().unwrap_or("{}")).unwrap_or(Value::Null);
                let now: Vec<Value> = doc["Statement"].as_array().cloned().unwrap_or_default();
                if now.len() != self.statements.len() + 1 || now[..self.statements.len().min(now.len())] != self.statements[..] {
                    v.push(format!("policy statements are {now:?}"));
                }
                if doc["Id"] != "rel" {
                    v.push(format!("the policy Id is {}", doc["Id"]));
                }
            }
            Err(e) => v.push(format!("the bucket policy is gone: {e:?}")),
        }
        // The object is still there (a bucket-level request: the deny on plain HTTP keeps the
        // stand-in from answering object requests).
        match s3.list_objects_v2().bucket(b).send().await {
            Ok(out) if out.contents().iter().filter_map(|o| o.key()).eq([self.object_key.as_str()]) => {}
            other => v.push(format!("objects: {other:?}")),
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// RDS: fix-rds-encrypt-instance

struct RdsInstanceScenario;

struct RdsInstanceFixture {
    id: String,
    dbi: String,
    tags: BTreeSet<(String, String)>,
}

/// Associated with the source instance: a restore drops it, the fix adds it again.
const INSTANCE_ROLE: &str = "arn:aws:iam::123456789012:role/rel-rds-s3-import";

#[atrest::async_trait]
impl FixScenario for RdsInstanceScenario {
    fn name(&self) -> &'static str {
        "rds-encrypt-instance/default-key"
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_rds_encrypt_instance::RdsEncryptInstance)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = rds(sdk).describe_db_instances().send().await;
        let _ = atrest::clients::kms(sdk).list_keys().limit(1).send().await;
    }

    fn seeds(&self) -> u64 {
        8
    }

    fn targeted_classes(&self) -> &'static [FaultClass] {
        // A lost response on every mutation; "not performed" at every call is the kill sweep's.
        &[FaultClass::DropResponse]
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let id = unique("rel-db");
        let tags: BTreeSet<(String, String)> = [("team".to_string(), "orders".to_string())].into();
        // No parameter or option group: the engine's defaults, the most common case (the restore
        // leaves them to the engine). A Secrets-Manager-managed password and an IAM role, which a
        // restore drops: the fix adds them back (ModifyDBInstance, AddRoleToDBInstance).
        let out = rds(sdk)
            .create_db_instance()
            .db_instance_identifier(&id)
            .db_instance_class("db.t3.micro")
            .engine("mysql")
            .engine_version("8.0.35")
            .master_username("admin")
            .manage_master_user_password(true)
            .allocated_storage(20)
            .storage_encrypted(false)
            .set_tags(Some(tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build()).collect()))
            .send()
            .await
            .expect("CreateDBInstance");
        let dbi = out.db_instance().and_then(|i| i.dbi_resource_id()).expect("DbiResourceId").to_string();
        rds(sdk)
            .add_role_to_db_instance()
            .db_instance_identifier(&id)
            .role_arn(INSTANCE_ROLE)
            .feature_name("s3Import")
            .send()
            .await
            .expect("AddRoleToDBInstance");
        Box::new(RdsInstanceFixture { id, dbi, tags })
    }
}

#[atrest::async_trait]
impl Fixture for RdsInstanceFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.dbi, "ExecutionId": "00000000-0000-4000-8000-00000000feed"})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        use atrest_rds::{TAG_SOURCE_RESOURCE_ID, tag_value};
        let mut v = Vec::new();
        let client = rds(sdk);
        // Paginated: the stand-in holds every run's instances, more than one page.
        let all: Vec<aws_sdk_rds::types::DbInstance> =
            client.describe_db_instances().into_paginator().items().send().collect::<Result<Vec<_>, _>>().await.unwrap_or_default();
        // The source: still there, untouched (same resource, same tags, still unencrypted).
        match all.iter().find(|i| i.dbi_resource_id() == Some(self.dbi.as_str())) {
            Some(source) => {
                if source.db_instance_identifier() != Some(self.id.as_str()) {
                    v.push(format!("the source was renamed to {:?}", source.db_instance_identifier()));
                }
                let tags: BTreeSet<(String, String)> = source
                    .tag_list()
                    .iter()
                    .filter(|t| !t.key().unwrap_or_default().starts_with("atrest:"))
                    .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                    .collect();
                if tags != self.tags {
                    v.push(format!("the source's tags are {tags:?}, expected {:?}", self.tags));
                }
            }
            None => v.push(format!("the source instance {} is gone", self.id)),
        }
        // Exactly one encrypted target.
        let targets: Vec<_> = all.iter().filter(|i| tag_value(i.tag_list(), TAG_SOURCE_RESOURCE_ID) == Some(self.dbi.as_str())).collect();
        if targets.len() != 1 {
            v.push(format!("{} encrypted instances for {}, expected exactly one", targets.len(), self.id));
        }
        if targets.iter().any(|t| t.storage_encrypted() != Some(true)) {
            v.push("a target is not encrypted".into());
        }
        for target in &targets {
            let roles: Vec<_> = target.associated_roles().iter().filter_map(|r| r.role_arn()).collect();
            if roles != [INSTANCE_ROLE] {
                v.push(format!("the target's IAM roles are {roles:?}, expected [{INSTANCE_ROLE}] once"));
            }
            if target.master_user_secret().is_none() {
                v.push("the target's master password is not managed in Secrets Manager".into());
            }
        }
        // Intermediate snapshots cleaned up; the encrypted copy kept (and only it).
        let prefix = format!("atrest-{}", self.dbi.to_ascii_lowercase());
        let snapshots = manual_snapshot_ids(sdk, SnapshotKind::Db, &prefix).await;
        if snapshots != vec![format!("{prefix}-encrypted")] {
            v.push(format!("atrest snapshots left: {snapshots:?}"));
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// RDS: fix-rds-encrypt-snapshot (a DB snapshot, or a DB cluster snapshot)

/// A cluster snapshot is encrypted through a temporary cluster (restore with the key, snapshot,
/// delete): its source cluster has deletion protection on, which the temporary cluster must not
/// inherit, and `delete_source` runs end with the source gone and nothing else left.
struct RdsSnapshotScenario {
    name: &'static str,
    cluster: bool,
    delete_source: bool,
}

struct RdsSnapshotFixture {
    cluster: bool,
    delete_source: bool,
    snapshot: String,
    tags: BTreeSet<(String, String)>,
}

#[atrest::async_trait]
impl FixScenario for RdsSnapshotScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_rds_encrypt_snapshot::RdsEncryptSnapshot)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        RdsInstanceScenario.warm_up(sdk).await;
    }

    fn seeds(&self) -> u64 {
        8
    }

    fn targeted_classes(&self) -> &'static [FaultClass] {
        &[FaultClass::DropResponse]
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let client = rds(sdk);
        let snapshot = unique("rel-snap");
        let tags: BTreeSet<(String, String)> = [("purpose".to_string(), "migration".to_string())].into();
        if self.cluster {
            let cluster = unique("rel-snapcluster");
            aurora_cluster(sdk, &cluster, None, &BTreeSet::new(), &[]).await;
            rds_support::protect_cluster(sdk, &cluster).await;
            client
                .create_db_cluster_snapshot()
                .db_cluster_identifier(&cluster)
                .db_cluster_snapshot_identifier(&snapshot)
                .set_tags(rds_tags(&tags))
                .send()
                .await
                .expect("CreateDBClusterSnapshot");
        } else {
            let db = unique("rel-snapsrc");
            postgres_instance(sdk, &db).await;
            client
                .create_db_snapshot()
                .db_instance_identifier(&db)
                .db_snapshot_identifier(&snapshot)
                .set_tags(rds_tags(&tags))
                .send()
                .await
                .expect("CreateDBSnapshot");
        }
        Box::new(RdsSnapshotFixture { cluster: self.cluster, delete_source: self.delete_source, snapshot, tags })
    }
}

#[atrest::async_trait]
impl Fixture for RdsSnapshotFixture {
    fn payload(&self) -> Value {
        json!({
            "ResourceId": self.snapshot,
            "DeleteSource": self.delete_source.to_string(),
            "ExecutionId": "00000000-0000-4000-8000-00000000feed"
        })
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let kind = if self.cluster { SnapshotKind::Cluster } else { SnapshotKind::Db };
        let snapshots = manual_snapshots(sdk, kind, &self.snapshot).await;
        let ids: BTreeSet<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
        let copy_id = format!("{}-encrypted", self.snapshot);
        let expected: BTreeSet<&str> =
            if self.delete_source { [copy_id.as_str()].into() } else { [self.snapshot.as_str(), copy_id.as_str()].into() };
        if ids != expected {
            v.push(format!("snapshots are {ids:?}, expected exactly {expected:?}"));
        }
        match snapshots.iter().find(|s| s.id == self.snapshot) {
            Some(_) if self.delete_source => v.push("DeleteSource=true left the source".into()),
            Some(source) if source.user_tags != self.tags => v.push(format!("the source's tags are {:?}", source.user_tags)),
            Some(source) if source.encrypted => v.push("the source changed: it reports encrypted".into()),
            Some(_) => {}
            None if self.delete_source => {}
            None => v.push("the source snapshot is gone".into()),
        }
        // The temporary cluster of the restore path is gone once the run is over.
        if self.cluster {
            let temporary = fix_rds_encrypt_snapshot::cluster::temporary_cluster_identifier(&self.snapshot);
            if rds(sdk).describe_db_clusters().db_cluster_identifier(&temporary).send().await.is_ok() {
                v.push(format!("temporary cluster {temporary} was left"));
            }
        }
        match snapshots.iter().find(|s| s.id == copy_id) {
            Some(copy) if !copy.encrypted => v.push("the copy is not encrypted".into()),
            Some(copy) if copy.user_tags != self.tags => v.push(format!("the copy's tags are {:?}", copy.user_tags)),
            _ => {}
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// RDS: fix-rds-encrypt-cluster (an Aurora cluster with a writer and a reader)

struct RdsClusterScenario;

struct RdsClusterFixture {
    id: String,
    resource_id: String,
    tags: BTreeSet<(String, String)>,
    /// (member id, class), writer first.
    members: Vec<(String, String)>,
}

/// Associated with the source cluster after creation: a restore drops it, the fix adds it again.
const CLUSTER_ROLE: &str = "arn:aws:iam::123456789012:role/rel-aurora-s3-import";

const CLUSTER_MEMBERS: &[(&str, &str)] = &[("writer", "db.r5.large"), ("reader", "db.r5.xlarge")];

#[atrest::async_trait]
impl FixScenario for RdsClusterScenario {
    fn name(&self) -> &'static str {
        "rds-encrypt-cluster/aurora-writer-reader"
    }

    fn kill_read_stride(&self) -> usize {
        // 42 calls a clean run, 33 of them reads: every mutation and every third read.
        3
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_rds_encrypt_cluster::RdsEncryptCluster)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = rds(sdk).describe_db_clusters().send().await;
        RdsInstanceScenario.warm_up(sdk).await;
    }

    fn seeds(&self) -> u64 {
        8
    }

    fn targeted_classes(&self) -> &'static [FaultClass] {
        &[FaultClass::DropResponse]
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let id = unique("rel-cluster");
        let tags: BTreeSet<(String, String)> = [("team".to_string(), "billing".to_string())].into();
        let resource_id = aurora_cluster(sdk, &id, None, &tags, CLUSTER_MEMBERS).await;
        rds(sdk)
            .add_role_to_db_cluster()
            .db_cluster_identifier(&id)
            .role_arn(CLUSTER_ROLE)
            .feature_name("s3Import")
            .send()
            .await
            .expect("AddRoleToDBCluster");
        let members = CLUSTER_MEMBERS.iter().map(|(suffix, class)| (format!("{id}-{suffix}"), class.to_string())).collect();
        Box::new(RdsClusterFixture { id, resource_id, tags, members })
    }
}

#[atrest::async_trait]
impl Fixture for RdsClusterFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.resource_id, "ExecutionId": "00000000-0000-4000-8000-00000000feed"})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        use atrest_rds::{TAG_REPLACED_BY, TAG_SOURCE_RESOURCE_ID, tag_value};
        let mut v = Vec::new();
        let client = rds(sdk);
        let clusters: Vec<aws_sdk_rds::types::DbCluster> =
            client.describe_db_clusters().into_paginator().items().send().collect::<Result<Vec<_>, _>>().await.unwrap_or_default();
        let instances: Vec<aws_sdk_rds::types::DbInstance> =
            client.describe_db_instances().into_paginator().items().send().collect::<Result<Vec<_>, _>>().await.unwrap_or_default();
        let members_of = |cluster: &str| -> BTreeSet<(String, String)> {
            instances
                .iter()
                .filter(|i| i.db_cluster_identifier() == Some(cluster))
                .map(|i| {
                    (i.db_instance_identifier().unwrap_or_default().to_string(), i.db_instance_class().unwrap_or_default().to_string())
                })
                .collect()
        };
        let source_members: BTreeSet<(String, String)> = self.members.iter().cloned().collect();

        // Exactly one encrypted target, made from this cluster.
        let targets: Vec<_> =
            clusters.iter().filter(|c| tag_value(c.tag_list(), TAG_SOURCE_RESOURCE_ID) == Some(self.resource_id.as_str())).collect();
        let target_id = format!("{}-encrypted", self.id);
        match targets.as_slice() {
            [target] => {
                if target.db_cluster_identifier() != Some(target_id.as_str()) {
                    v.push(format!("the target is {:?}, expected {target_id}", target.db_cluster_identifier()));
                }
                if target.storage_encrypted() != Some(true) {
                    v.push(format!("the target {target_id} is not encrypted"));
                }
                let roles: Vec<_> = target.associated_roles().iter().filter_map(|r| r.role_arn()).collect();
                if roles != [CLUSTER_ROLE] {
                    v.push(format!("the target's IAM roles are {roles:?}, expected [{CLUSTER_ROLE}] once"));
                }
                if user_tags(target.tag_list()) != self.tags {
                    v.push(format!("the target's tags are {:?}, expected {:?}", user_tags(target.tag_list()), self.tags));
                }
                // The same members (classes), each exactly once, under its derived name.
                let expected: BTreeSet<(String, String)> =
                    self.members.iter().map(|(m, class)| (format!("{m}-encrypted"), class.clone())).collect();
                let members = members_of(&target_id);
                if members != expected {
                    v.push(format!("the target's members are {members:?}, expected {expected:?}"));
                }
                let twins = instances.iter().filter(|i| {
                    i.db_instance_identifier().is_some_and(|id| self.members.iter().any(|(m, _)| id == format!("{m}-encrypted")))
                });
                if twins.clone().count() != self.members.len() {
                    v.push(format!("{} encrypted member instances, expected {}", twins.count(), self.members.len()));
                }
            }
            _ => v.push(format!("{} encrypted clusters for {}, expected exactly one", targets.len(), self.id)),
        }

        // The source: kept, unencrypted, with its members and tags, marked replaced-by.
        match clusters.iter().find(|c| c.db_cluster_resource_id() == Some(self.resource_id.as_str())) {
            Some(source) => {
                if source.db_cluster_identifier() != Some(self.id.as_str()) {
                    v.push(format!("the source was renamed to {:?}", source.db_cluster_identifier()));
                }
                if source.storage_encrypted() == Some(true) {
                    v.push("the source reports encrypted storage".into());
                }
                if user_tags(source.tag_list()) != self.tags {
                    v.push(format!("the source's tags are {:?}, expected {:?}", user_tags(source.tag_list()), self.tags));
                }
                if tag_value(source.tag_list(), TAG_REPLACED_BY) != Some(target_id.as_str()) {
                    v.push(format!("the source is not tagged {TAG_REPLACED_BY}={target_id}"));
                }
                let members = members_of(&self.id);
                if members != source_members {
                    v.push(format!("the source's members are {members:?}, expected {source_members:?}"));
                }
                if source.db_cluster_members().len() != self.members.len() {
                    v.push(format!("the source cluster lists {} members", source.db_cluster_members().len()));
                }
            }
            None => v.push(format!("the source cluster {} is gone", self.id)),
        }

        // The intermediate cluster snapshot is deleted once the target is complete (the fix's
        // last step); nothing else of ours is left.
        let prefix = format!("atrest-{}", self.resource_id.to_ascii_lowercase());
        let snapshots = manual_snapshot_ids(sdk, SnapshotKind::Cluster, &prefix).await;
        if !snapshots.is_empty() {
            v.push(format!("intermediate cluster snapshots left: {snapshots:?}"));
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// EBS: fix-ebs-encrypt-volumes (a running instance with a root and a data volume, one stop)

/// In `SLOW_SCENARIOS`: a clean run makes about 130 calls (13 observe turns of 7-8 describes,
/// DescribeAutoScalingInstances while the instance runs, around 29 changes batched per phase),
/// so even its bounded sweeps take about 2 minutes; see RELIABILITY.md.
struct EbsVolumesScenario;

struct EbsVolumesFixture {
    /// Each run in a Region of its own: moto's EC2 describes scan every volume, instance and
    /// snapshot of the Region, so runs piling up in one Region slow every later call.
    region: RegionLease,
    instance: String,
    root: String,
    data: String,
}

#[atrest::async_trait]
impl FixScenario for EbsVolumesScenario {
    fn name(&self) -> &'static str {
        "ebs-encrypt-volumes/running-instance"
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_ebs_encrypt_volumes::EbsEncryptVolumes { poll: std::time::Duration::ZERO, ..Default::default() })
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        for region in EBS_DEFAULT_REGIONS {
            let sdk = in_region(sdk, region);
            let _ = ebs_support::ec2(&sdk).describe_volumes().max_results(5).send().await;
            let _ = atrest::clients::kms(&sdk).list_keys().limit(1).send().await;
        }
    }

    fn seeds(&self) -> u64 {
        4
    }

    fn targeted_classes(&self) -> &'static [FaultClass] {
        &[FaultClass::DropResponse]
    }

    fn kill_read_stride(&self) -> usize {
        // About 100 reads in a clean run: kill at every mutation (before and after) and every 25th read.
        25
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let region = RegionLease::take().await;
        let sdk = in_region(sdk, region.0);
        let (instance, root, data) = ebs_support::instance_with_two_plain_volumes(&sdk, &unique("rel-ebs")).await;
        Box::new(EbsVolumesFixture { region, instance, root, data })
    }
}

#[atrest::async_trait]
impl Fixture for EbsVolumesFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.data, "AllowInstanceStop": "true", "ExecutionId": "00000000-0000-4000-8000-00000000feed"})
    }

    fn region(&self) -> Option<String> {
        Some(self.region.0.to_string())
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        use ebs_support::*;
        let mut v = Vec::new();
        let sdk = &in_region(sdk, self.region.0);
        let devices = block_devices(sdk, &self.instance).await;
        let expected_dot = [("/dev/xvda", &self.root, true), ("/dev/sdf", &self.data, false)];
        for (device, old, delete_on_termination) in expected_dot {
            match devices.get(device) {
                Some((new, dot)) => {
                    if new == old {
                        v.push(format!("{device} still carries the unencrypted {old}"));
                    } else if volume(sdk, new).await.encrypted() != Some(true) {
                        v.push(format!("{device}: {new} is not encrypted"));
                    }
                    if *dot != delete_on_termination {
                        v.push(format!("{device}: DeleteOnTermination is {dot}"));
                    }
                }
                None => v.push(format!("{device} is empty: {devices:?}")),
            }
            let old_volume = volume(sdk, old).await;
            if old_volume.encrypted() != Some(false) || old_volume.state().map(|s| s.as_str()) != Some("available") {
                v.push(format!("the old volume {old} is not kept detached: {:?}", old_volume.state()));
            }
            let replacements = volumes_tagged(sdk, "atrest:encrypted-from", old).await.len();
            if replacements != 1 {
                v.push(format!("{replacements} replacements for {old}, expected exactly one"));
            }
            let temporary = snapshots_tagged(sdk, "atrest:encrypting", old).await.len();
            if temporary != 0 {
                v.push(format!("{temporary} temporary snapshots of {old} left"));
            }
        }
        if devices.len() != 2 {
            v.push(format!("devices are {devices:?}"));
        }
        let state = instance_state(sdk, &self.instance).await;
        if state != "running" {
            v.push(format!("the instance is {state}, not back to running"));
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// EBS: fix-ebs-enable-default-encryption (an account/Region setting)

/// Regions the runs of this scenario take turns in (never the default Region, which other
/// tests use). The setting is account-wide per Region, so two runs in flight at once must not
/// share one: a run leases a Region for its lifetime, and the next run in it starts by putting
/// the user's settings back.
const EBS_DEFAULT_REGIONS: &[&str] = &[
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
    "af-south-1",
    "me-south-1",
    "ap-east-1",
    "il-central-1",
    "eu-central-2",
    "ap-south-2",
    "ap-southeast-3",
];

static FREE_REGIONS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
static REGIONS_INIT: std::sync::Once = std::sync::Once::new();

/// A Region no other run holds; given back when the lease is dropped.
struct RegionLease(&'static str);

impl RegionLease {
    async fn take() -> RegionLease {
        REGIONS_INIT.call_once(|| FREE_REGIONS.lock().unwrap().extend(EBS_DEFAULT_REGIONS.iter().rev()));
        loop {
            if let Some(region) = FREE_REGIONS.lock().unwrap().pop() {
                return RegionLease(region);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RegionLease {
    fn drop(&mut self) {
        FREE_REGIONS.lock().unwrap().push(self.0);
    }
}

fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder().region(aws_config::Region::new(region.to_string())).build()
}

struct EbsDefaultScenario {
    name: &'static str,
    /// Ask for a customer key (an alias) rather than leaving the default key alone.
    kms: bool,
}

struct EbsDefaultFixture {
    region: RegionLease,
    /// The default key the user had set before the run (a key ARN).
    user_key: String,
    /// (alias, key ARN) asked for.
    wanted: Option<(String, String)>,
}

#[atrest::async_trait]
impl FixScenario for EbsDefaultScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_ebs_enable_default_encryption::EbsEnableDefaultEncryption)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        // moto builds each Region's EC2 backend (default VPC, subnets) on its first call there.
        for region in EBS_DEFAULT_REGIONS {
            let sdk = in_region(sdk, region);
            let _ = aws_sdk_ec2::Client::new(&sdk).get_ebs_encryption_by_default().send().await;
            let _ = atrest::clients::kms(&sdk).list_keys().limit(1).send().await;
        }
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let region = RegionLease::take().await;
        let sdk = in_region(sdk, region.0);
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let kms = atrest::clients::kms(&sdk);
        // The user's state: encryption by default off, a default key of their own.
        ec2.disable_ebs_encryption_by_default().send().await.expect("DisableEbsEncryptionByDefault");
        let user_key = kms.create_key().send().await.expect("CreateKey").key_metadata().unwrap().arn().unwrap().to_string();
        ec2.modify_ebs_default_kms_key_id().kms_key_id(&user_key).send().await.expect("ModifyEbsDefaultKmsKeyId");
        let wanted = if self.kms {
            let key = kms.create_key().send().await.expect("CreateKey").key_metadata().unwrap().clone();
            let alias = format!("alias/{}", unique("rel-ebs-default"));
            kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.expect("CreateAlias");
            Some((alias, key.arn().unwrap().to_string()))
        } else {
            None
        };
        Box::new(EbsDefaultFixture { region, user_key, wanted })
    }
}

#[atrest::async_trait]
impl Fixture for EbsDefaultFixture {
    fn payload(&self) -> Value {
        let mut p = json!({"ResourceId": "123456789012", "ExecutionId": "00000000-0000-4000-8000-00000000feed"});
        if let Some((alias, _)) = &self.wanted {
            p["KmsKeyId"] = json!(alias);
        }
        p
    }

    fn region(&self) -> Option<String> {
        Some(self.region.0.to_string())
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let sdk = in_region(sdk, self.region.0);
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        // Compliant, as the rule judges the Region (with the key asked for, if any).
        let rule = rule_ec2_ebs_encryption_by_default::Ec2EbsEncryptionByDefault;
        let params = match &self.wanted {
            Some((alias, _)) => json!({"kmsKeyId": alias}),
            None => json!({}),
        };
        let params =
            rule.spec().parse_params(&params.as_object().unwrap().clone().into_iter().collect()).unwrap_or_else(|_| Params::default());
        let ctx = RuleContext::new(&sdk, params);
        match rule.fetch_item(&ctx, "AWS::::Account", "123456789012").await {
            Ok(Some(item)) => match rule.judge(&ctx, &item).await {
                Ok(verdict) if verdict.compliance == atrest::Compliance::Compliant => {}
                other => v.push(format!("the rule does not judge {} compliant: {other:?}", self.region.0)),
            },
            other => v.push(format!("cannot read the {} settings back: {other:?}", self.region.0)),
        }
        match ec2.get_ebs_encryption_by_default().send().await {
            Ok(out) if out.ebs_encryption_by_default() == Some(true) => {}
            other => v.push(format!("encryption by default is not on: {other:?}")),
        }
        // The default key: the one asked for; otherwise still the user's own.
        let expected = self.wanted.as_ref().map(|(_, arn)| arn).unwrap_or(&self.user_key);
        match ec2.get_ebs_default_kms_key_id().send().await {
            Ok(out) if out.kms_key_id() == Some(expected.as_str()) => {}
            other => v.push(format!("the default key is {other:?}, expected {expected}")),
        }
        v
    }
}
