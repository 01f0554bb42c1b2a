//! The console "Remediate" path, end to end: a change event makes the bucket NON_COMPLIANT in
//! Config; `StartRemediationExecution` (what the console button calls) starts the rule's SSM
//! Automation document with `RESOURCE_ID`; the worker runs the document's loop; Config's
//! remediation status turns SUCCEEDED, the bucket re-evaluates COMPLIANT and an email goes out.
//!
//! The stand-in records the automation execution but cannot run documents or Lambdas, so the
//! test plays SSM with the shared document runner (`atrest_automation`, through
//! `atrest_testkit::console`): the document and the remediation configuration come from
//! template.yaml, and the worker is called in-process.
//! `tests/console_remediate_all.rs` does the same for every remediation in the template.

use std::sync::Arc;

use atrest::alerts::AlertPublisher;
use atrest::{FixRunner, FixStatus, RuleRunner};
use atrest_automation::Template;
use atrest_testkit::console::{create_document, put_remediation_configuration, run_recorded_execution};
use atrest_testkit::{adapt_event, load_event, result_for, sdk, sns_messages, topic, unique};
use aws_sdk_config::types::{ResourceKey, ResourceType};
use fix_s3_enable_default_encryption::S3EnableDefaultEncryption;
use rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled;
use serde_json::json;

#[tokio::test]
async fn console_remediate_fixes_the_bucket_and_config_sees_it() {
    let sdk = sdk().await;
    let rule = unique("rule-console");
    let bucket = unique("console");
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

    // 2. The stack's document and remediation configuration, from template.yaml.
    let template = Template::embedded().unwrap();
    let remediation = template
        .remediations()
        .unwrap()
        .into_iter()
        .find(|r| r.rule_logical_id == "S3BucketServerSideEncryptionEnabledRule")
        .expect("the S3 rule has a remediation configuration");
    let template_document = template.document(&remediation.document_logical_id).unwrap();
    let document = create_document(&sdk, &template_document).await;
    put_remediation_configuration(&sdk, &rule, &document, &remediation, false).await;

    // 3. The operator presses "Remediate".
    let started = config
        .start_remediation_execution()
        .config_rule_name(&rule)
        .resource_keys(ResourceKey::builder().resource_type(ResourceType::Bucket).resource_id(&bucket).build().unwrap())
        .send()
        .await
        .expect("StartRemediationExecution");
    assert!(started.failed_items().is_empty(), "{started:?}");

    // 4. SSM runs the template's document for the execution Config started.
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
    let fix_runner = Arc::new(FixRunner::new(Arc::new(S3EnableDefaultEncryption), &sdk, Some(AlertPublisher::new(&sdk, &topic_arn))));
    let worker = |binary: &str| (binary == "fix-s3-enable-default-encryption").then(|| fix_runner.clone());
    let run = run_recorded_execution(&sdk, &template_document, &execution_id, &worker).await;
    assert!(run.succeeded(), "{run:#?}");
    let outcome = run.worker_outcomes.last().expect("the worker ran");
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert_eq!(run.steps, ["Invoke", "Answer", "Decide", "Succeeded"]);

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
