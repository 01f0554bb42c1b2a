//! Lambda entry points: what every rule's and fix's `main.rs` calls.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use crate::alerts::AlertPublisher;
use crate::remediation::{Fix, FixRunner};
use crate::rule::{ConfigRule, RuleRunner};

/// Serves a Config rule: clients are built once per container, not per invocation.
pub async fn serve_rule(rule: impl ConfigRule + 'static) -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let sdk = crate::clients::load_sdk_config().await;
    let runner = Arc::new(RuleRunner::new(Arc::new(rule), &sdk));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let runner = runner.clone();
        async move { runner.handle_lambda(event.payload).await }
    }))
    .await
}

/// Serves a remediation worker invoked by the SSM Automation loop.
pub async fn serve_fix(fix: impl Fix + 'static) -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let sdk = crate::clients::load_sdk_config().await;
    let alerts = AlertPublisher::from_env(&sdk);
    let runner = Arc::new(FixRunner::new(Arc::new(fix), &sdk, alerts));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let runner = runner.clone();
        async move { Ok::<_, lambda_runtime::Error>(serde_json::to_value(runner.step(&event.payload).await)?) }
    }))
    .await
}
