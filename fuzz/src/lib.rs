//! Fuzz target bodies, shared by cargo-fuzz (`fuzz/fuzz_targets/*.rs`, coverage-guided, `make
//! fuzz`) and the short proptest run in the normal test suite (`tests/reliability_inputs.rs`
//! includes this file), so CI and the fuzzer exercise the same code.
//!
//! Each target takes arbitrary bytes and must never panic. Judges run with every rule's
//! default parameters (no KMS key lists, which would resolve keys with `DescribeKey`) and an
//! SDK configuration without credentials or a reachable endpoint: a judge that tried to call AWS
//! would get an error, not a hang.

use std::sync::{Arc, OnceLock};

use atrest::evaluation::Evaluation;
use atrest::event::{Invocation, Trigger};
use atrest::item::ConfigurationItem;
use atrest::policy::{Policy, denies_unencrypted_uploads, wildcard_match};
use atrest::{ConfigRule, FixRequest, FixSpec, RuleContext};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde_json::{Value, json};

/// Every rule, as the Lambdas and the CLI build them (the catalog's list). Under cargo-fuzz the
/// EC2/RDS ones are in only with the `all-rules` feature; the proptest run in `make test`
/// always has them.
pub fn rules() -> Vec<Arc<dyn ConfigRule>> {
    atrest_catalog::rules()
}

/// Every fix's spec (decoding a payload needs nothing else).
pub fn fix_specs() -> Vec<&'static FixSpec> {
    atrest_catalog::fix_specs()
}

fn offline_sdk() -> &'static SdkConfig {
    static SDK: OnceLock<SdkConfig> = OnceLock::new();
    SDK.get_or_init(|| {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            // Discard port, loopback: nothing listens; and no credentials, so signing fails first.
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build()
    })
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    }
    RT.with(|rt| rt.block_on(future))
}

/// Judges `item` with every rule that evaluates its type, as the runtime would, and checks
/// what would be sent to Config.
pub fn judge_everywhere(item: &ConfigurationItem) {
    for rule in rules() {
        let spec = rule.spec();
        if !spec.resource_types.contains(&item.resource_type.as_str()) {
            continue;
        }
        let params = spec.parse_params_json(None).expect("default parameters parse");
        let ctx = RuleContext::new(offline_sdk(), params);
        let _ = rule.needs_live_state(item);
        if let Ok(verdict) = block_on(rule.judge(&ctx, item)) {
            let evaluation = Evaluation::new(&item.resource_type, &item.resource_id, verdict, item.capture_time);
            if let Some(a) = &evaluation.annotation {
                assert!(a.chars().count() <= 256, "{}: annotation of {} characters", spec.name, a.chars().count());
                assert!(!a.contains(['"', '\\', '\n', '\r']), "{}: annotation the alert email cannot carry: {a:?}", spec.name);
            }
            let _ = evaluation.to_sdk();
        }
    }
}

fn exercise_event(event: &Value) {
    if let Ok(invocation) = Invocation::decode(event) {
        let _ = invocation.message_type();
        if let Trigger::Change { item } = &invocation.trigger {
            judge_everywhere(item);
        }
    }
}

/// The Config event decoder: the bytes as the whole Lambda payload, and as the
/// `invokingEvent` string of an otherwise well-formed envelope.
pub fn config_event(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        exercise_event(&value);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        exercise_event(&json!({"invokingEvent": text, "ruleParameters": "{}", "resultToken": "t", "configRuleName": "r"}));
    }
}

/// Configuration-item decoding, then every rule's judge for the item's type.
pub fn configuration_item(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    if let Ok(item) = ConfigurationItem::from_notification(&value) {
        judge_everywhere(&item);
    }
}

/// Rule parameters (`ruleParameters` against each rule's spec) and fix payloads (against each
/// fix's spec).
pub fn rule_parameters(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for rule in rules() {
        let _ = rule.spec().parse_params_json(Some(text));
    }
    if let Ok(payload) = serde_json::from_str::<Value>(text) {
        for spec in fix_specs() {
            let _ = FixRequest::decode(spec, &payload);
        }
    }
}

/// The bucket-policy reader and the deny-unencrypted-uploads check.
pub fn bucket_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(policy) = Policy::parse(text) {
        for accepted in [&["AES256", "aws:kms", "aws:kms:dsse"][..], &["aws:kms", "aws:kms:dsse"], &["aws:kms:dsse"]] {
            let _ = denies_unencrypted_uploads(&policy, "b", accepted);
        }
        for s in &policy.statements {
            let _ = s.covers_action("s3:PutObject");
            let _ = s.covers_resource("arn:aws:s3:::b/x");
        }
    }
    // Wildcard matching on arbitrary pattern/text pairs.
    if text.len() <= 512 {
        let mid = text.char_indices().nth(text.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
        let _ = wildcard_match(&text[..mid], &text[mid..]);
    }
}
