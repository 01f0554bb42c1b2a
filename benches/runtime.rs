//! `make bench`: what a rule Lambda spends its own CPU on, without the network.
//!
//! - decoding a Config change event (every invocation does it),
//! - judging an S3 item (the whole evaluation of a change event: no AWS call),
//! - the full change path through RuleRunner with delivery off,
//! - container init: loading the SDK configuration and building a runner (cold start work).
//!
//! Calls to AWS are not benchmarked here: against the local stand-in they measure moto.

use std::sync::Arc;

use atrest::config_api::Delivery;
use atrest::event::Invocation;
use atrest::{ConfigRule, RuleContext, RuleRunner};
use criterion::{Criterion, criterion_group, criterion_main};
use rule_s3_bucket_server_side_encryption_enabled::{S3BucketServerSideEncryptionEnabled, SPEC};
use serde_json::Value;

fn sample_event() -> Value {
    let text = include_str!("../events/s3-bucket-server-side-encryption-enabled/change-sse-kms-requires-kms.json");
    serde_json::from_str(text).expect("sample event")
}

fn offline_sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let event = sample_event();

    c.bench_function("decode change event", |b| b.iter(|| Invocation::decode(std::hint::black_box(&event)).unwrap()));

    let invocation = Invocation::decode(&event).unwrap();
    let atrest::event::Trigger::Change { item } = &invocation.trigger else { unreachable!() };
    let ctx = RuleContext::new(&offline_sdk(), SPEC.parse_params_json(invocation.rule_parameters.as_deref()).unwrap());
    c.bench_function("judge S3 item", |b| {
        b.iter(|| rt.block_on(S3BucketServerSideEncryptionEnabled.judge(&ctx, std::hint::black_box(item))).unwrap())
    });

    let runner = RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), &offline_sdk());
    c.bench_function("change event end to end (no delivery)", |b| {
        b.iter(|| {
            let inv = Invocation::decode(&event).unwrap();
            rt.block_on(runner.handle(&inv, &Delivery::None)).unwrap()
        })
    });

    c.bench_function("container init (SDK config + runner)", |b| {
        b.iter(|| {
            let sdk = rt.block_on(atrest::clients::load_sdk_config());
            RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), &sdk)
        })
    });
}

criterion_group!(runtime, benches);
criterion_main!(runtime);
