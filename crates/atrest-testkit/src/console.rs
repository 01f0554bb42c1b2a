//! The console "Remediate" path on the stand-in: the stand-in records the automation execution
//! that StartRemediationExecution starts; this module plays SSM for it with the shared document
//! runner (`atrest_automation`) and records the final status where Config's
//! DescribeRemediationExecutionStatus reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

use atrest_automation::{Document, Execution, Remediation, RemediationParam, RunOptions};
use aws_config::SdkConfig;
use aws_sdk_config::types::{RemediationConfiguration, RemediationParameterValue, RemediationTargetType, ResourceValue, StaticValue};
use serde_json::{Value as Json, json};

use crate::{endpoint, http_request, unique};

/// Registers a template document under a unique name, as CloudFormation would; returns the name.
pub async fn create_document(sdk: &SdkConfig, document: &Document) -> String {
    let name = unique(&format!("atrest-{}", document.logical_id));
    aws_sdk_ssm::Client::new(sdk)
        .create_document()
        .name(&name)
        .document_type(aws_sdk_ssm::types::DocumentType::Automation)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .content(document.content.to_string())
        .send()
        .await
        .expect("CreateDocument");
    name
}

/// Puts the template's remediation configuration on `rule`, pointing at the registered
/// `document_name`, with the template's parameters (RESOURCE_ID and static values).
pub async fn put_remediation_configuration(sdk: &SdkConfig, rule: &str, document_name: &str, remediation: &Remediation, automatic: bool) {
    let mut configuration = RemediationConfiguration::builder()
        .config_rule_name(rule)
        .target_type(RemediationTargetType::SsmDocument)
        .target_id(document_name)
        .set_target_version(remediation.target_version.clone())
        .set_resource_type(remediation.resource_type.clone())
        .automatic(automatic);
    for (name, p) in &remediation.parameters {
        configuration = configuration.parameters(name, parameter_value(p));
    }
    aws_sdk_config::Client::new(sdk)
        .put_remediation_configurations()
        .remediation_configurations(configuration.build().expect("a remediation configuration"))
        .send()
        .await
        .expect("PutRemediationConfigurations");
}

fn parameter_value(p: &RemediationParam) -> RemediationParameterValue {
    match p {
        RemediationParam::ResourceId => RemediationParameterValue::builder()
            .resource_value(ResourceValue::builder().value("RESOURCE_ID".into()).build().expect("resource value"))
            .build(),
        RemediationParam::Static(values) => RemediationParameterValue::builder()
            .static_value(StaticValue::builder().set_values(Some(values.clone())).build().expect("static value"))
            .build(),
    }
}

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
        Err(e) => Execution::refused(e.to_string()),
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
