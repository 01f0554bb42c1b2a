//! The console "Remediate" path, end to end: a change event makes the bucket NON_COMPLIANT in
//! Config; `StartRemediationExecution` (what the console button calls) starts the rule's SSM
//! Automation document with `RESOURCE_ID`; the worker runs the document's loop; Config's
//! remediation status turns SUCCEEDED, the bucket re-evaluates COMPLIANT and an email goes out.
//!
//! The stand-in records the automation execution but cannot run documents or Lambdas, so the
//! test plays SSM (`run_automation_execution`) with the same payload the document builds.

use std::sync::Arc;

use atrest::alerts::AlertPublisher;
use atrest::{FixRunner, FixStatus, RuleRunner};
use atrest_testkit::{adapt_event, load_event, result_for, run_automation_execution, sdk, sns_messages, topic, unique};
use aws_sdk_config::types::{
    RemediationConfiguration, RemediationParameterValue, RemediationTargetType, ResourceKey, ResourceType, ResourceValue, StaticValue,
};
use fix_s3_enable_default_encryption::S3EnableDefaultEncryption;
use rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled;
use serde_json::json;

/// The document's parameter block, as in template.yaml (the template tests check that file).
const DOCUMENT: &str = r#"{
  "schemaVersion": "0.3",
  "description": "atrest test copy of the S3 remediation loop",
  "assumeRole": "{{ AutomationAssumeRole }}",
  "parameters": {
    "ResourceId": {"type": "String"},
    "AutomationAssumeRole": {"type": "String", "default": ""},
    "SSEAlgorithm": {"type": "String", "default": "AES256", "allowedValues": ["AES256", "aws:kms", "aws:kms:dsse"]},
    "KmsKeyId": {"type": "String", "default": ""},
    "DryRun": {"type": "String", "default": "false", "allowedValues": ["true", "false"]}
  },
  "mainSteps": [{"name": "Invoke", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}, "isEnd": true}]
}"#;

fn static_value(v: &str) -> RemediationParameterValue {
    RemediationParameterValue::builder().static_value(StaticValue::builder().values(v).build().unwrap()).build()
}

#[tokio::test]
async fn console_remediate_fixes_the_bucket_and_config_sees_it() {
    let sdk = sdk().await;
    let rule = unique("rule-console");
    let bucket = unique("console");
    let document = unique("atrest-S3EnableDefaultEncryption");
    let topic_arn = topic(&sdk, &unique("alerts")).await;
    let s3 = atrest::clients::s3(&sdk);
    let config = atrest::clients::config(&sdk);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    // 1. Config reports the bucket's change; the rule finds it unencrypted.
    let rule_runner = RuleRunner::new(Arc::new(S3BucketServerSideEncryptionEnabled), &sdk);
    let change = |b: &str| {
        let b = b.to_string();
        adapt_event(load_event("s3-bucket-server-side-encryption-enabled/change-unencrypted.json"), &rule, move |inv| {
            inv["configurationItem"]["resourceId"] = json!(b);
        })
    };
    rule_runner.handle_lambda(change(&bucket)).await.unwrap();
    assert_eq!(result_for(&sdk, &rule, &bucket).await.unwrap().compliance, "NON_COMPLIANT");

    // 2. The stack's document and remediation configuration.
    aws_sdk_ssm::Client::new(&sdk)
        .create_document()
        .name(&document)
        .document_type(aws_sdk_ssm::types::DocumentType::Automation)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .content(DOCUMENT)
        .send()
        .await
        .expect("CreateDocument");
    config
        .put_remediation_configurations()
        .remediation_configurations(
            RemediationConfiguration::builder()
                .config_rule_name(&rule)
                .target_type(RemediationTargetType::SsmDocument)
                .target_id(&document)
                .resource_type("AWS::S3::Bucket")
                .automatic(false)
                .parameters(
                    "ResourceId",
                    RemediationParameterValue::builder()
                        .resource_value(ResourceValue::builder().value("RESOURCE_ID".into()).build().unwrap())
                        .build(),
                )
                .parameters("SSEAlgorithm", static_value("AES256"))
                .parameters("DryRun", static_value("false"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("PutRemediationConfigurations");

    // 3. The operator presses "Remediate".
    let started = config
        .start_remediation_execution()
        .config_rule_name(&rule)
        .resource_keys(ResourceKey::builder().resource_type(ResourceType::Bucket).resource_id(&bucket).build().unwrap())
        .send()
        .await
        .expect("StartRemediationExecution");
    assert!(started.failed_items().is_empty(), "{started:?}");

    // 4. SSM runs the document: find the execution Config started and run the worker loop.
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let executions = ssm
        .describe_automation_executions()
        .filters(
            aws_sdk_ssm::types::AutomationExecutionFilter::builder().key("DocumentNamePrefix".into()).values(&document).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let execution_id = executions.automation_execution_metadata_list()[0].automation_execution_id().unwrap().to_string();
    let fix_runner = FixRunner::new(Arc::new(S3EnableDefaultEncryption), &sdk, Some(AlertPublisher::new(&sdk, &topic_arn)));
    let outcome = run_automation_execution(&sdk, &execution_id, &fix_runner).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");

    // 5. Config's remediation status, the bucket, the new evaluation and the email agree.
    let status = config
        .describe_remediation_execution_status()
        .config_rule_name(&rule)
        .resource_keys(ResourceKey::builder().resource_type(ResourceType::Bucket).resource_id(&bucket).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(status.remediation_execution_statuses()[0].state().map(|s| s.as_str()), Some("SUCCEEDED"));
    let enc = s3.get_bucket_encryption().bucket(&bucket).send().await.expect("the bucket has default encryption now");
    assert!(!enc.server_side_encryption_configuration().unwrap().rules().is_empty());

    // Re-evaluating the bucket from its live state now finds it COMPLIANT.
    let report = rule_runner.sweep(default_params(), aws_smithy_types::DateTime::from(std::time::SystemTime::now()), None).await.unwrap();
    let now = report.evaluations.iter().find(|e| e.compliance_resource_id == bucket).unwrap();
    assert_eq!(now.compliance_type, atrest::Compliance::Compliant);

    let emails = sns_messages(&topic_arn).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].1.contains(&execution_id), "the email names the SSM execution: {}", emails[0].1);
}

fn default_params() -> atrest::Params {
    rule_s3_bucket_server_side_encryption_enabled::SPEC.parse_params(&Default::default()).unwrap()
}
