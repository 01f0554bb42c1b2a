//! Bad input and the tool's own security, in the normal test suite:
//!
//! - a short proptest run of the cargo-fuzz targets (the same code: `fuzz/src/lib.rs`), fed
//!   with structure-aware mutations of the sample events;
//! - hand-written hostile cases, each answered with a clear error or the right NOT_APPLICABLE,
//!   never a panic, and a well-formed Lambda response (`RuleRunner::handle_lambda`,
//!   `FixRunner::step`);
//! - malformed SSM parameters for every fix fail fast, naming the parameter, with no AWS call
//!   made (counted by the fault proxy);
//! - the JSON logs of a full run carry no credentials or key material.
//!
//! Cases the existing tests already hold (event.rs: truncated `invokingEvent`, `invokingEvent` as
//! an object; s3_rule.rs: missing `resultToken`, bad rule parameters; s3_fix.rs: the S3 fix's
//! bad parameters) are not repeated here.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code, unexpected_cfgs)]
mod targets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use atrest::config_api::Delivery;
use atrest::event::Invocation;
use atrest::{Compliance, Fix, FixRunner, FixStatus, ParamKind, RuleRunner};
use atrest_testkit::faults::{FaultPlan, FaultProxy};
use atrest_testkit::{endpoint, load_event, sdk, sdk_at, unique};
use proptest::prelude::*;
use rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Proptest over the fuzz targets

/// Every sample Config event in `events/` (rule events only: they have an `invokingEvent`).
fn sample_events() -> Vec<Value> {
    static SAMPLES: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(read_sample_events).clone()
}

fn read_sample_events() -> Vec<Value> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(atrest_testkit::events_dir()).unwrap().flatten() {
        for file in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(file.path()) else { continue };
            if let Ok(v) = serde_json::from_str::<Value>(&text)
                && v.get("invokingEvent").is_some()
            {
                out.push(v);
            }
        }
    }
    assert!(out.len() >= 5, "sample events found: {}", out.len());
    out
}

/// Replacements for one JSON node: wrong types, empties, huge and unicode values.
fn hostile_value(pick: usize) -> Value {
    match pick % 12 {
        0 => Value::Null,
        1 => json!(42),
        2 => json!(-1),
        3 => json!(""),
        4 => json!("x".repeat(5000)),
        5 => json!([]),
        6 => json!({}),
        7 => json!(true),
        8 => json!("bücket-😀-名前"),
        9 => json!("2026-13-45T99:99:99Z"),
        10 => json!([{"key": 1, "value": null}]),
        _ => json!("{\"nested\": \"json string\""),
    }
}

/// Replaces the `target`-th node (pre-order) of `v` with a hostile value.
fn mutate(v: &mut Value, target: &mut usize, pick: usize) {
    if *target == 0 {
        *v = hostile_value(pick);
        *target = usize::MAX;
        return;
    }
    *target -= 1;
    match v {
        Value::Object(map) => {
            for (_, child) in map.iter_mut() {
                if *target == usize::MAX {
                    return;
                }
                mutate(child, target, pick);
            }
        }
        Value::Array(list) => {
            for child in list.iter_mut() {
                if *target == usize::MAX {
                    return;
                }
                mutate(child, target, pick);
            }
        }
        _ => {}
    }
}

/// A sample event with its invoking event decoded, so mutations reach inside it.
fn open_event(mut event: Value) -> Value {
    if let Some(text) = event["invokingEvent"].as_str() {
        event["invokingEvent"] = serde_json::from_str(text).unwrap_or(Value::Null);
    }
    event
}

fn mutated(sample: usize, target: usize, pick: usize, restring: bool) -> Value {
    let samples = sample_events();
    let mut event = open_event(samples[sample % samples.len()].clone());
    let mut t = target;
    mutate(&mut event, &mut t, pick);
    if restring && event["invokingEvent"].is_object() {
        event["invokingEvent"] = json!(event["invokingEvent"].to_string());
    }
    event
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_target_config_event(sample in 0usize..64, target in 0usize..64, pick in 0usize..12, restring: bool, cut in 0usize..4096) {
        let event = mutated(sample, target, pick, restring);
        let bytes = event.to_string().into_bytes();
        targets::config_event(&bytes);
        // Truncated too: the invoking event text cut short.
        if let Some(text) = event["invokingEvent"].as_str() {
            let cut = text.char_indices().map(|(i, _)| i).nth(cut % text.chars().count().max(1)).unwrap_or(0);
            targets::config_event(&text.as_bytes()[..cut]);
        }
    }

    #[test]
    fn fuzz_target_configuration_item(sample in 0usize..64, target in 0usize..48, pick in 0usize..12) {
        let samples = sample_events();
        let invoking = open_event(samples[sample % samples.len()].clone())["invokingEvent"].clone();
        let mut item = invoking["configurationItem"].clone();
        let mut t = target;
        mutate(&mut item, &mut t, pick);
        targets::configuration_item(item.to_string().as_bytes());
    }

    #[test]
    fn fuzz_target_rule_parameters(
        names in proptest::collection::vec(0usize..64, 0..4),
        values in proptest::collection::vec("(arn:aws:kms:[a-z0-9-]{0,12}:[0-9]{0,12}:(key|alias)/[ -~]{0,20}|alias/[ -~]{0,12}|-?[0-9]{1,20}|true|false|AES256|aws:kms|\\[[ -~]{0,20}\\]|[ -~,]{0,30}|[^\\x00]{0,8})", 0..4),
        as_array: bool,
    ) {
        let mut known: Vec<&str> = targets::rules().iter().flat_map(|r| r.spec().all_parameters().into_iter().map(|p| p.name)).collect();
        known.extend(targets::fix_specs().iter().flat_map(|s| s.parameters.iter().map(|p| p.name)));
        known.extend(["ResourceId", "DryRun", "ExecutionId", "unknownName"]);
        let mut map = serde_json::Map::new();
        for (n, v) in names.iter().zip(values.iter()) {
            let value = if as_array { json!(v.split(',').collect::<Vec<_>>()) } else { json!(v) };
            map.insert(known[n % known.len()].to_string(), value);
        }
        targets::rule_parameters(Value::Object(map).to_string().as_bytes());
    }

    #[test]
    fn fuzz_target_bucket_policy(
        statements in proptest::collection::vec((0usize..4, 0usize..6, 0usize..5, 0usize..6, "[ -~]{0,12}"), 0..12),
        wrap: bool,
    ) {
        let effects = [json!("Deny"), json!("Allow"), json!(7), Value::Null];
        let principals = [json!("*"), json!({"AWS": "*"}), json!({"AWS": ["x", "*"]}), json!({"Service": "s3"}), json!(["*"]), json!(null)];
        let actions = [json!("s3:PutObject"), json!(["s3:*"]), json!("s3:Put*"), json!(42), json!([null, "s3:?utObject"])];
        let conditions = [
            json!({"Null": {"s3:x-amz-server-side-encryption": "true"}}),
            json!({"StringNotEquals": {"S3:X-AMZ-SERVER-SIDE-ENCRYPTION": ["AES256", "aws:kms"]}}),
            json!({"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
            json!({"Null": "not an object"}),
            json!([]),
            json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": []}}),
        ];
        let list: Vec<Value> = statements
            .iter()
            .map(|(e, p, a, c, r)| json!({"Effect": effects[*e], "Principal": principals[*p], "Action": actions[*a], "Condition": conditions[*c], "Resource": format!("arn:aws:s3:::b/{r}*")}))
            .collect();
        let doc = if wrap { json!({"Statement": list}) } else { json!({"Statement": list.first().cloned().unwrap_or(Value::Null)}) };
        targets::bucket_policy(doc.to_string().as_bytes());
    }
}

#[test]
fn fuzz_corpus_seeds_run_clean() {
    // The seed corpora cargo-fuzz starts from (fuzz/corpus/*) must pass, as crash regressions do.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut ran = 0;
    for (target, run) in [
        ("config_event", targets::config_event as fn(&[u8])),
        ("configuration_item", targets::configuration_item),
        ("rule_parameters", targets::rule_parameters),
        ("bucket_policy", targets::bucket_policy),
    ] {
        for dir in ["corpus", "regressions"] {
            let path = corpus.parent().unwrap().join(dir).join(target);
            for file in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                run(&std::fs::read(file.path()).unwrap());
                ran += 1;
            }
        }
    }
    assert!(ran > 0, "no seed corpus under {}", corpus.display());
}

// ---------------------------------------------------------------------------------------------
// Hand-written hostile rule events

const S3_DIR: &str = "s3-bucket-server-side-encryption-enabled";

fn s3_runner(sdk: &aws_config::SdkConfig) -> RuleRunner {
    RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), sdk)
}

/// The S3 sample change event with its invoking event edited (`invokingEvent` stays a string).
fn s3_event(rule: &str, edit: impl FnOnce(&mut Value)) -> Value {
    atrest_testkit::adapt_event(load_event(&format!("{S3_DIR}/change-unencrypted.json")), rule, edit)
}

/// A well-formed handler response: a customer error, or the success summary. Never an `Err`
/// (that is for transient failures Lambda should retry) and never a panic.
fn assert_well_formed(case: &str, response: &Value) {
    let customer = response.get("customerErrorCode").and_then(Value::as_str).is_some()
        && response.get("customerErrorMessage").and_then(Value::as_str).is_some_and(|m| !m.is_empty());
    let success = response.get("Evaluations").and_then(Value::as_u64).is_some() && response.get("MessageType").is_some();
    assert!(customer ^ success, "{case}: not a well-formed response: {response}");
}

#[tokio::test]
async fn wrong_types_and_unknown_shapes_get_clear_errors_from_the_handler() {
    let sdk = sdk().await;
    let rule = unique("rule-hostile");
    let item = |f: fn(&mut Value)| {
        move |invoking: &mut Value| {
            invoking["configurationItem"]["resourceId"] = json!("hostile-bucket");
            f(&mut invoking["configurationItem"]);
        }
    };
    // (case, event, expected: Some(text in customerErrorMessage) or None for a judged success)
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("resourceId is a number", s3_event(&rule, item(|i| i["resourceId"] = json!(42))), Some("configurationItem")),
        ("capture time is a number", s3_event(&rule, item(|i| i["configurationItemCaptureTime"] = json!(17))), Some("configurationItem")),
        ("capture time is not a time", s3_event(&rule, item(|i| i["configurationItemCaptureTime"] = json!("yesterday"))), Some("ISO-8601")),
        (
            "supplementaryConfiguration is a string",
            s3_event(&rule, item(|i| i["supplementaryConfiguration"] = json!("x"))),
            Some("configurationItem"),
        ),
        (
            "resourceType is missing",
            s3_event(
                &rule,
                item(|i| {
                    i.as_object_mut().unwrap().remove("resourceType");
                }),
            ),
            Some("resourceType"),
        ),
        ("tags are a string", s3_event(&rule, item(|i| i["tags"] = json!("team=x"))), None),
        ("configuration is an array", s3_event(&rule, item(|i| i["configuration"] = json!([1, 2]))), None),
        (
            "unknown messageType",
            s3_event(&rule, |inv| inv["messageType"] = json!("ConfigurationSnapshotDeliveryCompleted")),
            Some("unsupported messageType"),
        ),
        ("messageType is a number", s3_event(&rule, |inv| inv["messageType"] = json!(7)), Some("messageType")),
        (
            "invokingEvent is an array",
            {
                let mut e = s3_event(&rule, |_| {});
                e["invokingEvent"] = json!([1, 2, 3]);
                e
            },
            Some("messageType"),
        ),
        (
            "ruleParameters is a number",
            {
                let mut e = s3_event(&rule, item(|_| {}));
                e["ruleParameters"] = json!(5);
                e
            },
            Some("not a Config rule event"),
        ),
        (
            "ruleParameters is an object, not a string",
            {
                let mut e = s3_event(&rule, item(|_| {}));
                e["ruleParameters"] = json!({"requiredAlgorithm": "AES256"});
                e
            },
            None,
        ),
        (
            "resultToken is a number",
            {
                let mut e = s3_event(&rule, item(|_| {}));
                e["resultToken"] = json!(5);
                e
            },
            Some("not a Config rule event"),
        ),
        (
            "eventLeftScope is a word",
            {
                let mut e = s3_event(&rule, item(|_| {}));
                e["eventLeftScope"] = json!("yes");
                e
            },
            None,
        ),
        ("the event is a string", json!("{\"invokingEvent\": 1}"), Some("JSON object")),
        ("the event is null", Value::Null, Some("JSON object")),
    ];
    for (case, event, expected) in cases {
        let response = s3_runner(&sdk).handle_lambda(event).await.unwrap_or_else(|e| panic!("{case}: the handler failed: {e}"));
        assert_well_formed(case, &response);
        match expected {
            Some(text) => {
                let message = response["customerErrorMessage"].as_str().unwrap_or_else(|| panic!("{case}: expected an error: {response}"));
                assert!(message.contains(text), "{case}: {message}");
            }
            None => assert_eq!(response["Evaluations"], 1, "{case}: {response}"),
        }
    }
}

#[tokio::test]
async fn unicode_ids_huge_annotations_and_ten_megabyte_items() {
    let sdk = sdk().await;
    let runner = s3_runner(&sdk);
    let rule = unique("rule-huge");

    // A unicode resource id is carried through exactly.
    let event = s3_event(&rule, |inv| inv["configurationItem"]["resourceId"] = json!("bücket-😀-名前"));
    let report = runner.handle(&Invocation::decode(&event).unwrap(), &Delivery::None).await.unwrap();
    assert_eq!(report.evaluations[0].compliance_resource_id, "bücket-😀-名前");
    assert_eq!(report.evaluations[0].compliance_type, Compliance::NonCompliant);

    // A 100 KB algorithm name makes a huge annotation: it is cut to Config's 256 characters.
    let event = s3_event(&rule, |inv| {
        inv["configurationItem"]["resourceId"] = json!("huge-annotation");
        inv["configurationItem"]["supplementaryConfiguration"]["ServerSideEncryptionConfiguration"] =
            json!({"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "ü".repeat(100_000)}}]});
    });
    let mut params_event = event.clone();
    params_event["ruleParameters"] = json!("{\"requiredAlgorithm\": \"aws:kms\"}");
    let report = runner.handle(&Invocation::decode(&params_event).unwrap(), &Delivery::None).await.unwrap();
    let annotation = report.evaluations[0].annotation.clone().unwrap();
    assert!(annotation.chars().count() <= 256, "{} characters", annotation.chars().count());
    let response = runner.handle_lambda(params_event).await.unwrap();
    assert_well_formed("huge annotation", &response);
    let stored = atrest_testkit::result_for(&sdk, &rule, "huge-annotation").await.expect("stored");
    assert!(stored.annotation.unwrap().chars().count() <= 256);

    // A 10 MB configuration item is decoded and judged in well under a Lambda's time.
    let started = Instant::now();
    let event = s3_event(&rule, |inv| {
        inv["configurationItem"]["resourceId"] = json!("ten-megabytes");
        inv["configurationItem"]["configuration"]["padding"] = json!("p".repeat(10 * 1024 * 1024));
    });
    let response = runner.handle_lambda(event).await.unwrap();
    assert_well_formed("10 MB item", &response);
    assert_eq!(response["NonCompliant"], 1, "{response}");
    assert!(started.elapsed() < Duration::from_secs(20), "10 MB item took {:?}", started.elapsed());
}

fn policy_item(bucket: &str, statements: Vec<Value>) -> impl FnOnce(&mut Value) + '_ {
    move |inv: &mut Value| {
        let item = &mut inv["configurationItem"];
        item["resourceId"] = json!(bucket);
        let supplementary = item["supplementaryConfiguration"].as_object_mut().unwrap();
        supplementary.remove("ServerSideEncryptionConfiguration");
        supplementary
            .insert("BucketPolicy".into(), json!({"policyText": json!({"Version": "2012-10-17", "Statement": statements}).to_string()}));
    }
}

#[tokio::test]
async fn bucket_policies_with_two_hundred_statements_are_judged() {
    let sdk = sdk().await;
    let runner = s3_runner(&sdk);
    let allow = |i: usize| json!({"Sid": format!("S{i}"), "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::b200/{i}")});
    let deny = json!({"Sid": "DenyUnencrypted", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b200/*",
                      "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": ["AES256", "aws:kms"]}}});
    let verdict = |statements: Vec<Value>| {
        let event = s3_event("r", policy_item("b200", statements));
        let runner = &runner;
        async move { runner.handle(&Invocation::decode(&event).unwrap(), &Delivery::None).await.unwrap().evaluations.remove(0) }
    };
    // The deny statement last among 200: found.
    let mut statements: Vec<Value> = (0..199).map(allow).collect();
    statements.push(deny.clone());
    assert_eq!(verdict(statements).await.compliance_type, Compliance::Compliant);
    // 200 statements, none protecting: NON_COMPLIANT.
    assert_eq!(verdict((0..200).map(allow).collect()).await.compliance_type, Compliance::NonCompliant);
    // Larger than any valid bucket policy (64 KB+): not read, so it protects nothing; no panic.
    let mut statements: Vec<Value> = (0..2000).map(allow).collect();
    statements.push(deny);
    assert_eq!(verdict(statements).await.compliance_type, Compliance::NonCompliant);
}

// ---------------------------------------------------------------------------------------------
// Hostile fix payloads and malformed SSM parameters, for every fix

fn every_fix() -> Vec<Arc<dyn Fix>> {
    atrest_catalog::fixes()
}

/// A bad value for a parameter of this kind, or `None` when every text is valid.
fn malformed(kind: ParamKind) -> Vec<&'static str> {
    match kind {
        ParamKind::KmsKey => vec!["arn:aws:s3:::not-a-key", "alias/", "key/with/slashes", "arn:aws:kms:us-east-1:123456789012:keyring/x"],
        ParamKind::OneOf(_) => vec!["bogus"],
        ParamKind::Bool => vec!["maybe", "1"],
        ParamKind::Integer { min, .. } if min >= 0 => vec!["-1", "1.5", "lots"],
        ParamKind::Integer { .. } => vec!["1.5", "lots"],
        ParamKind::Text | ParamKind::List => vec![],
    }
}

#[tokio::test]
async fn malformed_payloads_and_parameters_fail_fast_for_every_fix_with_no_aws_call() {
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::clean()).await;
    let sdk = sdk_at(&proxy.endpoint(), Duration::from_secs(5)).await;
    let mut checked = 0;
    for fix in every_fix() {
        let spec = fix.spec();
        let runner = FixRunner::new(fix.clone(), &sdk, None);
        let mut cases: Vec<(Value, String)> = vec![
            (json!([]), "JSON object".into()),
            (json!("bucket"), "JSON object".into()),
            (Value::Null, "JSON object".into()),
            (json!({}), "ResourceId".into()),
            (json!({"ResourceId": 7}), "ResourceId".into()),
            (json!({"ResourceId": {"id": "x"}}), "ResourceId".into()),
            (json!({"ResourceId": "a\u{0}b"}), "ResourceId".into()),
            (json!({"ResourceId": "x".repeat(10_000)}), "ResourceId".into()),
            (json!({"ResourceId": "r", "DryRun": "maybe"}), "DryRun".into()),
            (json!({"ResourceId": "r", "DryRun": 1}), "DryRun".into()),
            (json!({"ResourceId": "r", "ExecutionId": ["x"]}), "ExecutionId".into()),
            (json!({"ResourceId": "r", "NoSuchParameter": "1"}), "unknown parameter NoSuchParameter".into()),
        ];
        for p in spec.parameters {
            for bad in malformed(p.kind) {
                cases.push((json!({"ResourceId": "r", p.name: bad}), p.name.to_string()));
            }
            cases.push((json!({"ResourceId": "r", p.name: {"nested": true}}), p.name.to_string()));
        }
        for (payload, expected) in cases {
            let before = proxy.calls();
            let outcome = runner.step(&payload).await;
            let case = format!("{} {payload:.80}", spec.name);
            assert_eq!(outcome.status, FixStatus::Failed, "{case}: {outcome:?}");
            assert!(outcome.message.contains(&expected), "{case}: the message names {expected}: {}", outcome.message);
            assert!(outcome.message.contains("Nothing was changed"), "{case}: {}", outcome.message);
            assert!(outcome.resource_id.chars().count() <= 256, "{case}: the echoed id is bounded");
            assert_eq!(outcome.fix, format!("fix-{}", spec.name));
            let wire = serde_json::to_value(&outcome).unwrap();
            assert!(wire["Status"] == "Failed" && wire["Message"].is_string() && wire["Changes"].is_array(), "{case}: {wire}");
            assert_eq!(proxy.calls(), before, "{case}: no AWS call is made before the input is valid");
            checked += 1;
        }
    }
    assert!(checked > 80, "{checked} cases");
}

#[tokio::test]
async fn an_unknown_key_alias_fails_naming_the_parameter_before_any_change() {
    // Each fix with a key parameter, asked to use an alias that does not exist, on a resource
    // that does not exist either: whichever it checks first, it fails and changes nothing.
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::clean()).await;
    let direct = sdk().await;
    let sdk = sdk_at(&proxy.endpoint(), Duration::from_secs(5)).await;
    let s3 = atrest::clients::s3(&direct);
    let bucket = unique("alias-check");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    for fix in every_fix() {
        let spec = fix.spec();
        let Some(key_param) = spec.parameters.iter().find(|p| p.kind == ParamKind::KmsKey) else { continue };
        let mut payload =
            json!({"ResourceId": if spec.name.starts_with("s3") { bucket.clone() } else { "atrest-no-such-resource".into() }});
        payload[key_param.name] = json!("alias/atrest-no-such-alias");
        if spec.name.starts_with("s3") {
            payload["SSEAlgorithm"] = json!("aws:kms");
        }
        let start = proxy.log().len();
        let outcome = FixRunner::new(fix.clone(), &sdk, None).step(&payload).await;
        let mutations: Vec<String> = proxy.log()[start..].iter().filter(|e| e.mutating).map(|e| e.operation.clone()).collect();
        assert_eq!(outcome.status, FixStatus::Failed, "{}: {outcome:?}", spec.name);
        assert!(mutations.is_empty(), "{}: changed something before failing: {mutations:?}", spec.name);
        println!("{}: {}", spec.name, outcome.message);
        if spec.name.starts_with("s3") {
            assert!(outcome.message.contains(key_param.name), "{}: {}", spec.name, outcome.message);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Security of the tool

/// Credentials the fix runs with in the log scan: distinct, so a hit says which leaked. The key
/// id is not secret (CloudTrail shows it) and the SDK's debug output names it; the secret and
/// the session token must never appear.
const SCAN_KEY_ID: &str = "AKIDATRESTSCANKEY001";
const SCAN_SECRET: &str = "atrestScanSecretDoNotLog0000000000000000";
const SCAN_TOKEN: &str = "atrestScanSessionTokenDoNotLog";

/// Credentials, signatures and key material that must never reach a log line.
fn secrets_in(text: &str) -> Vec<String> {
    let patterns = [
        (SCAN_SECRET, "the secret access key"),
        (SCAN_TOKEN, "the session token"),
        (r"\btesting\b", "the stand-in's test credentials"),
        (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "an access key id"),
        (r"(?i)aws_secret_access_key|secretaccesskey|x-amz-security-token|sessiontoken", "a credential field"),
        (r"Signature=[0-9a-f]{16,}", "a SigV4 signature"),
        (r"-----BEGIN [A-Z ]*PRIVATE KEY", "a private key"),
        (r#"(?i)"?plaintext"?\s*[:=]"#, "KMS plaintext"),
        (r"\b[A-Za-z0-9/+]{40}\b", "a secret-looking 40-character value"),
    ];
    let mut found = Vec::new();
    for (pattern, what) in patterns {
        let re = regex::Regex::new(pattern).unwrap();
        for m in re.find_iter(text).take(3) {
            let line = text[..m.start()].rfind('\n').map(|i| i + 1).unwrap_or(0);
            let end = text[m.end()..].find('\n').map(|i| m.end() + i).unwrap_or(text.len());
            found.push(format!("{what} ({:?}) in: {}", m.as_str(), &text[line..end].chars().take(300).collect::<String>()));
        }
    }
    found
}

#[tokio::test]
async fn the_logs_of_a_full_run_hold_no_credentials_or_key_material() {
    let direct = sdk().await;
    let rule = unique("rule-logs");
    let bucket = unique("logs");
    let s3 = atrest::clients::s3(&direct);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let kms = atrest::clients::kms(&direct);
    let key = kms.create_key().send().await.unwrap().key_metadata().unwrap().clone();
    let alias = format!("alias/{}", unique("logs"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.unwrap();
    let topic = atrest_testkit::topic(&direct, &unique("logs")).await;

    // From here on everything runs on this thread with the scan's own credentials, so the
    // capture sees every log line of the run (at debug, more than Lambda's default info).
    let (_guard, logs) = atrest_testkit::logs::capture_on_this_thread("debug");
    let scan_sdk = |endpoint: String| async move {
        atrest_testkit::sdk_at_with_credentials(&endpoint, Duration::from_secs(1), SCAN_KEY_ID, SCAN_SECRET, SCAN_TOKEN).await
    };
    let plain = scan_sdk(endpoint()).await;
    // A rule evaluation, bad input, a fix through faults (retries, errors logged), a failed fix.
    let event = s3_event(&rule, |inv| inv["configurationItem"]["resourceId"] = json!(bucket));
    s3_runner(&plain).handle_lambda(event).await.unwrap();
    s3_runner(&plain).handle_lambda(json!({"invokingEvent": "{trunc"})).await.unwrap();
    let plan = FaultPlan::random(3, 60, 6, atrest_testkit::faults::ALL_FAULTS, Duration::from_millis(1300));
    let proxy = FaultProxy::start(&endpoint(), plan).await;
    let faulty = scan_sdk(proxy.endpoint()).await;
    let runner = FixRunner::new(
        Arc::new(fix_s3_enable_default_encryption::S3EnableDefaultEncryption),
        &faulty,
        Some(atrest::alerts::AlertPublisher::new(&faulty, &topic)),
    );
    let payload = json!({"ResourceId": bucket, "SSEAlgorithm": "aws:kms", "KmsKeyId": alias});
    let req = atrest::FixRequest::decode(runner.spec(), &payload).unwrap();
    let outcome = runner.drive(&req, &atrest::remediation::DriveOptions { max_steps: 20, pause: Duration::ZERO }).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    runner.step(&json!({"ResourceId": unique("missing"), "SSEAlgorithm": "aws:kms", "KmsKeyId": "alias/nope"})).await;
    assert!(proxy.faults_injected() > 0);

    let text = logs.text();
    let dump = std::env::temp_dir().join("atrest-log-scan.jsonl");
    std::fs::write(&dump, &text).unwrap();
    assert!(text.lines().count() > 5 && text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "JSON lines:\n{text:.2000}");
    assert!(text.contains(&bucket), "the run was captured");
    let found = secrets_in(&text);
    assert!(found.is_empty(), "secrets in the logs (all of them in {}):\n{}", dump.display(), found.join("\n"));
}

#[test]
fn the_template_passes_no_secrets_in_environment_variables() {
    let template = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml")).unwrap();
    let mut in_variables = None;
    let mut offending = Vec::new();
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with("Variables:") {
            in_variables = Some(indent);
            continue;
        }
        match in_variables {
            Some(base) if indent > base && !line.trim().is_empty() => {
                let name = line.trim().split(':').next().unwrap_or("").to_ascii_uppercase();
                if ["SECRET", "PASSWORD", "ACCESS_KEY", "TOKEN", "PRIVATE"].iter().any(|s| name.contains(s)) {
                    offending.push(line.trim().to_string());
                }
            }
            Some(_) if !line.trim().is_empty() => in_variables = None,
            _ => {}
        }
    }
    assert!(offending.is_empty(), "environment variables that look like secrets: {offending:?}");
}

// ---------------------------------------------------------------------------------------------
// The fault proxy speaks each protocol's error format

#[tokio::test]
async fn injected_faults_reach_the_sdk_as_each_services_own_error_codes() {
    use atrest::error::aws_error;
    use atrest_testkit::faults::FaultClass;
    // Every attempt of the first call faulted (5 attempts), so the SDK gives up and shows the code.
    let plan = |class| FaultPlan { at: (1..=5).map(|n| (n, class)).collect(), ..FaultPlan::clean() };
    for (class, expected) in [
        (
            FaultClass::Throttle,
            ["SlowDown", "ThrottlingException", "Throttling", "RequestLimitExceeded", "Throttling", "ThrottlingException"],
        ),
        (
            FaultClass::ServerError,
            ["InternalError", "InternalFailure", "InternalFailure", "InternalError", "InternalFailure", "InternalFailure"],
        ),
    ] {
        let mut seen = Vec::new();
        for i in 0..6 {
            let proxy = FaultProxy::start(&endpoint(), plan(class)).await;
            let sdk = sdk_at(&proxy.endpoint(), Duration::from_secs(5)).await;
            let err = match i {
                0 => aws_error("s3:ListAllMyBuckets", "-", atrest::clients::s3(&sdk).list_buckets().send().await.unwrap_err()),
                1 => aws_error("kms:ListKeys", "-", atrest::clients::kms(&sdk).list_keys().send().await.unwrap_err()),
                2 => aws_error("sns:ListTopics", "-", atrest::clients::sns(&sdk).list_topics().send().await.unwrap_err()),
                3 => aws_error("ec2:DescribeVolumes", "-", aws_sdk_ec2::Client::new(&sdk).describe_volumes().send().await.unwrap_err()),
                4 => aws_error(
                    "rds:DescribeDBInstances",
                    "-",
                    aws_sdk_rds::Client::new(&sdk).describe_db_instances().send().await.unwrap_err(),
                ),
                _ => aws_error(
                    "config:DescribeConfigRules",
                    "-",
                    atrest::clients::config(&sdk).describe_config_rules().send().await.unwrap_err(),
                ),
            };
            assert_eq!(proxy.calls(), 5, "{class:?} #{i}: the SDK retried it as a transient error");
            assert_eq!(err.class(), atrest::ErrorClass::Transient, "{class:?} #{i}: {err}");
            seen.push(err.aws_code().unwrap_or("-").to_string());
        }
        assert_eq!(seen, expected, "{class:?}");
    }
}
