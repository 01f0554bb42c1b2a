//! KMS key rotation end to end against the local stand-in, over HTTP, with the real SDK: the
//! periodic rule `cmk-backing-key-rotation-enabled` (ListKeys + DescribeKey, GetKeyRotationStatus
//! only for keys rotation applies to) and the fix `kms-enable-key-rotation`. moto 5.2.5 ignores
//! the rotation period and rotates any key; tests/moto/atrest_moto_kms_rotation.py answers as AWS
//! documents. AWS managed keys (moto reports them CUSTOMER) and multi-Region replicas are
//! tested with aws-smithy-mocks in the crates.

use std::sync::Arc;

use atrest::rule::{Report, RuleRunner};
use atrest::{Compliance, FixRunner, FixStatus, Params};
use atrest_testkit::{adapt_event, load_event, result_for, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
use aws_smithy_types::DateTime;
use fix_kms_enable_key_rotation::KmsEnableKeyRotation;
use rule_cmk_backing_key_rotation_enabled::CmkBackingKeyRotationEnabled;
use serde_json::{Value, json};

fn kms(sdk: &SdkConfig) -> aws_sdk_kms::Client {
    atrest::clients::kms(sdk)
}

async fn key(sdk: &SdkConfig, spec: Option<(KeySpec, KeyUsageType)>, tags: &[(&str, &str)]) -> String {
    let mut create = kms(sdk).create_key().description(unique("atrest-test"));
    if let Some((spec, usage)) = spec {
        create = create.key_spec(spec).key_usage(usage);
    }
    for (k, v) in tags {
        create = create.tags(Tag::builder().tag_key(*k).tag_value(*v).build().unwrap());
    }
    create.send().await.expect("CreateKey").key_metadata().unwrap().key_id().to_string()
}

/// (enabled, period) as GetKeyRotationStatus reports them.
async fn rotation(sdk: &SdkConfig, key_id: &str) -> (bool, Option<i32>) {
    let out = kms(sdk).get_key_rotation_status().key_id(key_id).send().await.expect("GetKeyRotationStatus");
    (out.key_rotation_enabled(), out.rotation_period_in_days())
}

fn verdict(report: &Report, key_id: &str) -> Option<(Compliance, String)> {
    report
        .evaluations
        .iter()
        .find(|e| e.compliance_resource_id == key_id)
        .map(|e| (e.compliance_type, e.annotation.clone().unwrap_or_default()))
}

#[tokio::test]
async fn a_sweep_judges_each_kind_of_key_with_its_reason() {
    let sdk = sdk().await;
    let off = key(&sdk, None, &[]).await;
    let on = key(&sdk, None, &[]).await;
    kms(&sdk).enable_key_rotation().key_id(&on).rotation_period_in_days(180).send().await.unwrap();
    let exempt = key(&sdk, None, &[("atrest:exempt", "true")]).await;
    let disabled = key(&sdk, None, &[]).await;
    kms(&sdk).disable_key().key_id(&disabled).send().await.unwrap();
    let pending = key(&sdk, None, &[]).await;
    kms(&sdk).schedule_key_deletion().key_id(&pending).pending_window_in_days(7).send().await.unwrap();
    let rsa = key(&sdk, Some((KeySpec::Rsa2048, KeyUsageType::SignVerify)), &[]).await;
    let hmac = key(&sdk, Some((KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac)), &[]).await;

    let report = RuleRunner::new(Arc::new(CmkBackingKeyRotationEnabled), &sdk)
        .sweep(
            Params::parse(&rule_cmk_backing_key_rotation_enabled::SPEC.all_parameters(), &Default::default()).unwrap(),
            DateTime::from_secs(0),
            None,
        )
        .await
        .unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let cases: [(&str, &str, Compliance, &str); 7] = [
        ("rotation off", &off, Compliance::NonCompliant, "is off"),
        ("rotation on", &on, Compliance::Compliant, "on, every 180 days (next "),
        ("exempt", &exempt, Compliance::NotApplicable, "atrest:exempt=true"),
        ("disabled", &disabled, Compliance::NotApplicable, "in state Disabled"),
        ("pending deletion", &pending, Compliance::NotApplicable, "in state PendingDeletion"),
        ("asymmetric", &rsa, Compliance::NotApplicable, "asymmetric key (RSA_2048)"),
        ("HMAC", &hmac, Compliance::NotApplicable, "HMAC key (HMAC_256)"),
    ];
    for (name, key_id, expected, says) in cases {
        let (compliance, annotation) = verdict(&report, key_id).unwrap_or_else(|| panic!("{name}: {key_id} was not swept"));
        assert_eq!(compliance, expected, "{name}: {annotation}");
        assert!(annotation.contains(says) && (name == "exempt" || annotation.contains(key_id)), "{name}: {annotation}");
    }
}

#[tokio::test]
async fn the_scheduled_event_stores_results_and_the_fix_turns_rotation_on() {
    let sdk = sdk().await;
    let key_id = key(&sdk, None, &[]).await;
    let rule_name = unique("rule-kms-rotation");
    let rule = RuleRunner::new(Arc::new(CmkBackingKeyRotationEnabled), &sdk);
    let event = || adapt_event(load_event("cmk-backing-key-rotation-enabled/scheduled.json"), &rule_name, |_| {});
    let answer = rule.handle_lambda(event()).await.expect("handler");
    assert!(answer["NonCompliant"].as_u64().unwrap_or(0) >= 1, "{answer}");
    let stored = result_for(&sdk, &rule_name, &key_id).await.expect("stored");
    assert_eq!((stored.resource_type.as_str(), stored.compliance.as_str()), ("AWS::KMS::Key", "NON_COMPLIANT"));

    let fix = FixRunner::new(Arc::new(KmsEnableKeyRotation), &sdk, None);
    let payload = |extra: Value| {
        let mut p = load_event("fix-kms-enable-key-rotation/ssm-payload.json");
        p["ResourceId"] = json!(key_id);
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let dry = fix.step(&payload(json!({"DryRun": "true"}))).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{dry:?}");
    assert!(dry.message.contains("would set") && dry.changes.len() == 1, "{dry:?}");
    assert_eq!(rotation(&sdk, &key_id).await, (false, None), "a dry run changes nothing");

    let done = fix.step(&payload(json!({}))).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{done:?}");
    assert!(done.message.contains("verified by reading it back") && done.message.contains("still decrypts"), "{}", done.message);
    assert_eq!(rotation(&sdk, &key_id).await, (true, Some(365)), "KMS's default period");

    let again = fix.step(&payload(json!({}))).await;
    assert!(again.status == FixStatus::Succeeded && again.changes.is_empty() && again.message.contains("already on"), "{again:?}");

    // A period asked for is set on a key already rotating with another one, then converges.
    let period = fix.step(&payload(json!({"RotationPeriodInDays": "180"}))).await;
    assert_eq!(period.status, FixStatus::Succeeded, "{period:?}");
    assert_eq!(period.changes.len(), 1, "{period:?}");
    assert_eq!(rotation(&sdk, &key_id).await, (true, Some(180)));
    let again = fix.step(&payload(json!({"RotationPeriodInDays": "180"}))).await;
    assert!(again.changes.is_empty(), "{again:?}");

    rule.handle_lambda(event()).await.expect("handler");
    assert_eq!(result_for(&sdk, &rule_name, &key_id).await.unwrap().compliance, "COMPLIANT");
}

#[tokio::test]
async fn keys_rotation_does_not_apply_to_are_refused_with_the_reason_and_nothing_changes() {
    let sdk = sdk().await;
    let disabled = key(&sdk, None, &[]).await;
    kms(&sdk).disable_key().key_id(&disabled).send().await.unwrap();
    let rsa = key(&sdk, Some((KeySpec::Rsa2048, KeyUsageType::SignVerify)), &[]).await;
    let fix = FixRunner::new(Arc::new(KmsEnableKeyRotation), &sdk, None);
    let step = |key_id: String, period: &str| {
        let fix = &fix;
        let period = period.to_string();
        async move {
            let mut p = load_event("fix-kms-enable-key-rotation/ssm-payload.json");
            p["ResourceId"] = json!(key_id);
            p["RotationPeriodInDays"] = json!(period);
            fix.step(&p).await
        }
    };
    for (key_id, says) in [(disabled.clone(), "in state Disabled"), (rsa.clone(), "asymmetric key")] {
        let outcome = step(key_id.clone(), "").await;
        assert_eq!(outcome.status, FixStatus::Failed, "{key_id}");
        assert!(outcome.message.starts_with("Nothing was changed") && outcome.message.contains(says), "{}", outcome.message);
        assert!(outcome.changes.is_empty());
    }
    assert_eq!(rotation(&sdk, &disabled).await, (false, None));
    let missing = step("11111111-2222-3333-4444-555555555555".into(), "").await;
    assert!(missing.status == FixStatus::Failed && missing.message.contains("does not exist"), "{missing:?}");
    let too_short = step(key(&sdk, None, &[]).await, "30").await;
    assert!(too_short.status == FixStatus::Failed && too_short.message.contains("RotationPeriodInDays"), "{too_short:?}");
}

/// What a sweep costs, counted at the wire (through the clean fault proxy, in a Region no other
/// test uses): ListKeys once per 1000 keys, DescribeKey per key, and only for a key rotation
/// applies to, ListResourceTags and GetKeyRotationStatus.
#[tokio::test]
async fn a_sweep_costs_one_describe_per_key_and_two_more_calls_per_rotatable_key() {
    use atrest_testkit::faults::{FaultPlan, FaultProxy};
    const REGION: &str = "ca-west-1";
    let direct = sdk().await.to_builder().region(aws_config::Region::new(REGION)).build();
    let rotatable = key(&direct, None, &[]).await;
    let rsa = key(&direct, Some((KeySpec::Rsa2048, KeyUsageType::SignVerify)), &[]).await;
    let disabled = key(&direct, None, &[]).await;
    kms(&direct).disable_key().key_id(&disabled).send().await.unwrap();

    let proxy = FaultProxy::start(&atrest_testkit::endpoint(), FaultPlan::clean()).await;
    let through_proxy = atrest_testkit::sdk_at(&proxy.endpoint(), std::time::Duration::from_secs(10))
        .await
        .to_builder()
        .region(aws_config::Region::new(REGION))
        .build();
    let params = Params::parse(&rule_cmk_backing_key_rotation_enabled::SPEC.all_parameters(), &Default::default()).unwrap();
    let report =
        RuleRunner::new(Arc::new(CmkBackingKeyRotationEnabled), &through_proxy).sweep(params, DateTime::from_secs(0), None).await.unwrap();
    assert_eq!(report.evaluations.len(), 3, "{:?}", report.evaluations);
    assert_eq!(verdict(&report, &rotatable).map(|v| v.0), Some(Compliance::NonCompliant));
    assert_eq!(verdict(&report, &rsa).map(|v| v.0), Some(Compliance::NotApplicable));
    assert_eq!(verdict(&report, &disabled).map(|v| v.0), Some(Compliance::NotApplicable));
    let mut calls = std::collections::BTreeMap::new();
    for exchange in proxy.log() {
        *calls.entry(exchange.operation).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<String, i32> =
        [("ListKeys", 1), ("DescribeKey", 3), ("ListResourceTags", 1), ("GetKeyRotationStatus", 1)].map(|(k, v)| (k.to_string(), v)).into();
    assert_eq!(calls, expected);
}
