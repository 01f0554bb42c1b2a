//! The console "Remediate" path on the stand-in: the stand-in records the automation execution
//! that StartRemediationExecution starts; this module plays SSM for it with the shared document
//! runner (`atrest_automation`) and records the final status where Config's
//! DescribeRemediationExecutionStatus reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use atrest_automation::{Document, Execution, RunOptions};
use aws_config::SdkConfig;
use serde_json::{Value as Json, json};

use crate::{endpoint, http_request};

/// Plays SSM for an execution the stand-in recorded: reads its parameters, settles them
/// against the document, runs the document (no waiting between turns) and records the final
/// status on the execution.
pub async fn run_recorded_execution(
    sdk: &SdkConfig,
    document: &Document,
    execution_id: &str,
    worker: &dyn Fn(&str) -> Option<Arc<atrest::FixRunner>>,
) -> Execution {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let out = ssm.get_automation_execution().automation_execution_id(execution_id).send().await.expect("GetAutomationExecution");
    let given: BTreeMap<String, Vec<String>> =
        out.automation_execution().expect("execution").parameters().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    let ex = match document.parameters_for(&given) {
        Ok(params) => document.run(&params, execution_id, worker, &RunOptions::immediate()).await,
        Err(e) => Execution::refused(e),
    };
    record_status(execution_id, &ex).await;
    ex
}

/// Records a run's final status on the stand-in's automation execution.
pub async fn record_status(execution_id: &str, ex: &Execution) {
    let outputs: serde_json::Map<String, Json> = ex.outputs.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
    let body = json!({"Status": ex.status, "Outputs": outputs, "FailureMessage": ex.failure_message.clone().unwrap_or_default()});
    let url = format!("{}/atrest-ext/automation-executions/{execution_id}/status", endpoint());
    tokio::task::spawn_blocking(move || http_request("POST", &url, &body.to_string())).await.expect("join");
}
