//! The console "Remediate" path, end to end, for every remediation in template.yaml: one
//! non-compliant resource per Config rule; the rule's RemediationConfiguration and SSM document
//! exactly as the template defines them (stack defaults); StartRemediationExecution (the
//! console button) starts the automation execution; the shared document runner
//! (`atrest_automation`, through `atrest_testkit::console`; `atrest remediate` uses it too) runs
//! the template's document with the execution's parameters, calling the workers in-process;
//! Config's remediation status and the resource agree.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atrest::{Fix, FixRunner};
use atrest_automation::{RunOptions, Template};
use atrest_testkit::console::{create_document, put_remediation_configuration, run_recorded_execution};
use atrest_testkit::{ACCOUNT_ID, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_config::types::{ResourceKey, ResourceType};
use rds_support::{aurora_cluster, postgres_instance, rds};

#[path = "rds_support/mod.rs"]
mod rds_support;

/// Remediations moto cannot run end to end, with the reason. Empty today: every fix runs.
const SKIPPED: &[(&str, &str)] = &[];

/// The workers, by binary name, as the template's functions build them (every fix in the
/// catalog; the EBS swap with no in-invocation polling, so a turn returns at once and the
/// document loop does the waiting).
fn workers(sdk: &SdkConfig) -> BTreeMap<&'static str, Arc<FixRunner>> {
    atrest_catalog::fix_entries()
        .map(|entry| {
            let fix: Arc<dyn Fix> = if std::ptr::eq(entry.spec, &fix_ebs_encrypt_volumes::SPEC) {
                Arc::new(fix_ebs_encrypt_volumes::EbsEncryptVolumes { poll: Duration::ZERO, ..Default::default() })
            } else {
                (entry.build)()
            };
            let binary: &'static str = Box::leak(format!("fix-{}", entry.spec.name).into_boxed_str());
            (binary, Arc::new(FixRunner::new(fix, sdk, None)))
        })
        .collect()
}

fn ec2(sdk: &SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(sdk)
}

/// A non-compliant resource for a rule (by logical id): its Config resource type and id, and
/// the check that it is fixed.
struct Target {
    resource_type: &'static str,
    resource_id: String,
    /// A name the fixed state is found under (the new copy, or the resource itself).
    name: String,
}

async fn non_compliant(sdk: &SdkConfig, rule: &str) -> Target {
    match rule {
        "S3BucketServerSideEncryptionEnabledRule" | "S3DefaultEncryptionKmsRule" => {
            let bucket = unique("console-all");
            aws_sdk_s3::Client::new(sdk).create_bucket().bucket(&bucket).send().await.unwrap();
            Target { resource_type: "AWS::S3::Bucket", resource_id: bucket.clone(), name: bucket }
        }
        "S3BucketSslRequestsOnlyRule" => {
            // A policy with another statement, which the fix must keep.
            let bucket = unique("console-ssl");
            let s3 = aws_sdk_s3::Client::new(sdk);
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
            s3.put_bucket_policy().bucket(&bucket).policy(console_ssl_policy(&bucket).to_string()).send().await.unwrap();
            Target { resource_type: "AWS::S3::Bucket", resource_id: bucket.clone(), name: bucket }
        }
        "S3BucketObjectsEncryptedRule" => {
            // Deployed only with S3ObjectsRuleEnabled=true; its remediation is in the template
            // all the same (under that condition), so it runs here.
            let bucket = unique("console-objs");
            let s3 = atrest::clients::s3(sdk);
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
            for key in ["old/a.txt", "old/b c+d.txt"] {
                s3.put_object().bucket(&bucket).key(key).body(key.as_bytes().to_vec().into()).send().await.unwrap();
            }
            atrest_testkit::make_legacy_objects(&bucket, None, "").await;
            Target { resource_type: "AWS::S3::Bucket", resource_id: bucket.clone(), name: bucket }
        }
        "EncryptedVolumesRule" => {
            // Detached: with the default EbsAllowInstanceStop=false an attached volume waits.
            let out = ec2(sdk).create_volume().availability_zone("us-east-1a").size(1).encrypted(false).send().await.unwrap();
            let vol = out.volume_id().unwrap().to_string();
            assert_eq!(out.encrypted(), Some(false));
            Target { resource_type: "AWS::EC2::Volume", resource_id: vol.clone(), name: vol }
        }
        "Ec2EbsEncryptionByDefaultRule" => {
            ec2(sdk).disable_ebs_encryption_by_default().send().await.unwrap();
            Target { resource_type: "AWS::::Account", resource_id: ACCOUNT_ID.into(), name: ACCOUNT_ID.into() }
        }
        "RdsStorageEncryptedRule" => {
            let id = unique("console-db");
            // moto's default option groups are not restorable: the instance names its own.
            let og = unique("console-options");
            rds(sdk)
                .create_option_group()
                .option_group_name(&og)
                .engine_name("mysql")
                .major_engine_version("8.0")
                .option_group_description("t")
                .send()
                .await
                .unwrap();
            let out = rds(sdk)
                .create_db_instance()
                .db_instance_identifier(&id)
                .db_instance_class("db.t3.micro")
                .engine("mysql")
                .engine_version("8.0.35")
                .option_group_name(&og)
                .master_username("admin")
                .master_user_password("correct-horse-battery")
                .allocated_storage(20)
                .storage_encrypted(false)
                .send()
                .await
                .unwrap();
            let dbi = out.db_instance().unwrap().dbi_resource_id().unwrap().to_string();
            Target { resource_type: "AWS::RDS::DBInstance", resource_id: dbi, name: id }
        }
        "RdsClusterEncryptedAtRestRule" => {
            let id = unique("console-cluster");
            let resource_id = aurora_cluster(sdk, &id, None, &Default::default(), &[("writer", "db.r5.large")]).await;
            Target { resource_type: "AWS::RDS::DBCluster", resource_id, name: id }
        }
        "RdsSnapshotEncryptedRule" => {
            let db = unique("console-snapsrc");
            postgres_instance(sdk, &db).await;
            let snap = unique("console-snap");
            rds(sdk).create_db_snapshot().db_instance_identifier(&db).db_snapshot_identifier(&snap).send().await.unwrap();
            Target { resource_type: "AWS::RDS::DBSnapshot", resource_id: snap.clone(), name: snap }
        }
        "DynamodbTableEncryptedKmsRule" => {
            // On DynamoDB's default, the AWS owned key.
            let table = unique("console-table");
            aws_sdk_dynamodb::Client::new(sdk)
                .create_table()
                .table_name(&table)
                .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
                .attribute_definitions(
                    aws_sdk_dynamodb::types::AttributeDefinition::builder()
                        .attribute_name("pk")
                        .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                        .build()
                        .unwrap(),
                )
                .key_schema(
                    aws_sdk_dynamodb::types::KeySchemaElement::builder()
                        .attribute_name("pk")
                        .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            Target { resource_type: "AWS::DynamoDB::Table", resource_id: table.clone(), name: table }
        }
        "CmkBackingKeyRotationEnabledRule" => {
            // A customer managed symmetric key, rotation off (KMS's default).
            let key = atrest::clients::kms(sdk).create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
            Target { resource_type: "AWS::KMS::Key", resource_id: key.clone(), name: key }
        }
        "KinesisStreamEncryptedRule" => {
            let stream = unique("console-stream");
            aws_sdk_kinesis::Client::new(sdk).create_stream().stream_name(&stream).shard_count(1).send().await.unwrap();
            Target { resource_type: "AWS::Kinesis::Stream", resource_id: stream.clone(), name: stream }
        }
        "KinesisFirehoseDeliveryStreamEncryptedRule" => {
            // A Direct PUT delivery stream without server-side encryption.
            use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
            let stream = unique("console-delivery");
            let destination = ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose-delivery")
                .bucket_arn("arn:aws:s3:::atrest-firehose-landing")
                .build()
                .unwrap();
            aws_sdk_firehose::Client::new(sdk)
                .create_delivery_stream()
                .delivery_stream_name(&stream)
                .delivery_stream_type(DeliveryStreamType::DirectPut)
                .extended_s3_destination_configuration(destination)
                .send()
                .await
                .unwrap();
            Target { resource_type: "AWS::KinesisFirehose::DeliveryStream", resource_id: stream.clone(), name: stream }
        }
        "SnsEncryptedKmsRule" => {
            let topic = unique("console-topic");
            let out = aws_sdk_sns::Client::new(sdk).create_topic().name(&topic).send().await.unwrap();
            let arn = out.topic_arn().unwrap().to_string();
            Target { resource_type: "AWS::SNS::Topic", resource_id: arn.clone(), name: arn }
        }
        "SqsQueueEncryptedRule" => {
            // New queues default to SSE-SQS: this one turns it off.
            let out = aws_sdk_sqs::Client::new(sdk)
                .create_queue()
                .queue_name(unique("console-queue"))
                .attributes(aws_sdk_sqs::types::QueueAttributeName::SqsManagedSseEnabled, "false")
                .send()
                .await
                .unwrap();
            let url = out.queue_url().unwrap().to_string();
            Target { resource_type: "AWS::SQS::Queue", resource_id: url.clone(), name: url }
        }
        other => panic!("no non-compliant resource for {other}: add one to tests/console_remediate_all.rs"),
    }
}

/// The SSL-only target's policy before the fix: one cross-account read statement.
fn console_ssl_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Sid": "PartnerRead", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
}

/// Reads the resource back from the stand-in: fixed?
async fn assert_fixed(sdk: &SdkConfig, rule: &str, target: &Target) {
    let name = &target.name;
    match rule {
        "S3BucketServerSideEncryptionEnabledRule" => {
            let enc = aws_sdk_s3::Client::new(sdk).get_bucket_encryption().bucket(name).send().await.expect("bucket encryption");
            assert!(!enc.server_side_encryption_configuration().unwrap().rules().is_empty());
        }
        "S3BucketObjectsEncryptedRule" => {
            let s3 = atrest::clients::s3(sdk);
            for key in ["old/a.txt", "old/b c+d.txt"] {
                let head = s3.head_object().bucket(name).key(key).send().await.unwrap();
                assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"), "{key}");
            }
        }
        "S3DefaultEncryptionKmsRule" => {
            // The same fix, configured by this rule's remediation for SSE-KMS.
            let enc = aws_sdk_s3::Client::new(sdk).get_bucket_encryption().bucket(name).send().await.expect("bucket encryption");
            let rules = enc.server_side_encryption_configuration().unwrap().rules();
            let default = rules[0].apply_server_side_encryption_by_default().unwrap();
            assert_eq!(default.sse_algorithm().as_str(), "aws:kms", "{rules:?}");
        }
        "S3BucketSslRequestsOnlyRule" => {
            let out = aws_sdk_s3::Client::new(sdk).get_bucket_policy().bucket(name).send().await.expect("bucket policy");
            let policy: serde_json::Value = serde_json::from_str(out.policy().unwrap()).unwrap();
            let statements = policy["Statement"].as_array().unwrap();
            assert_eq!(statements.len(), 2, "{policy}");
            assert_eq!(statements[0], console_ssl_policy(name)["Statement"][0], "the other statement is kept");
            let judged = atrest::policy::ssl_only(&atrest::policy::Policy::from_value(&policy), &format!("arn:aws:s3:::{name}"));
            assert!(judged.complete(), "{policy}");
        }
        "EncryptedVolumesRule" => {
            let out = ec2(sdk)
                .describe_volumes()
                .filters(aws_sdk_ec2::types::Filter::builder().name("tag:atrest:encrypted-from").values(name).build())
                .send()
                .await
                .unwrap();
            assert_eq!(out.volumes().len(), 1, "one encrypted copy of {name}");
            assert_eq!(out.volumes()[0].encrypted(), Some(true));
        }
        "Ec2EbsEncryptionByDefaultRule" => {
            let out = ec2(sdk).get_ebs_encryption_by_default().send().await.unwrap();
            assert_eq!(out.ebs_encryption_by_default(), Some(true));
        }
        "RdsStorageEncryptedRule" => {
            let out = rds(sdk).describe_db_instances().db_instance_identifier(format!("{name}-encrypted")).send().await.unwrap();
            assert_eq!(out.db_instances()[0].storage_encrypted(), Some(true));
        }
        "RdsClusterEncryptedAtRestRule" => {
            let out = rds(sdk).describe_db_clusters().db_cluster_identifier(format!("{name}-encrypted")).send().await.unwrap();
            assert_eq!(out.db_clusters()[0].storage_encrypted(), Some(true));
        }
        "RdsSnapshotEncryptedRule" => {
            let out = rds(sdk).describe_db_snapshots().db_snapshot_identifier(format!("{name}-encrypted")).send().await.unwrap();
            assert_eq!(out.db_snapshots()[0].encrypted(), Some(true));
        }
        "DynamodbTableEncryptedKmsRule" => {
            let out = aws_sdk_dynamodb::Client::new(sdk).describe_table().table_name(name).send().await.unwrap();
            let sse = out.table().and_then(|t| t.sse_description()).expect("SSEDescription");
            assert_eq!(sse.status().map(|s| s.as_str()), Some("ENABLED"));
            assert!(sse.kms_master_key_arn().is_some_and(|k| k.starts_with("arn:aws:kms:")), "{sse:?}");
        }
        "CmkBackingKeyRotationEnabledRule" => {
            let out = atrest::clients::kms(sdk).get_key_rotation_status().key_id(name).send().await.unwrap();
            assert!(out.key_rotation_enabled(), "{out:?}");
        }
        "KinesisStreamEncryptedRule" => {
            let out = aws_sdk_kinesis::Client::new(sdk).describe_stream_summary().stream_name(name).send().await.unwrap();
            let summary = out.stream_description_summary().unwrap();
            assert_eq!(summary.encryption_type().map(|t| t.as_str()), Some("KMS"));
            // The stack default: the AWS managed key.
            assert_eq!(summary.key_id(), Some("alias/aws/kinesis"));
        }
        "KinesisFirehoseDeliveryStreamEncryptedRule" => {
            let out = aws_sdk_firehose::Client::new(sdk).describe_delivery_stream().delivery_stream_name(name).send().await.unwrap();
            let sse = out.delivery_stream_description().unwrap().delivery_stream_encryption_configuration().expect("SSE configuration");
            assert_eq!(sse.status().map(|s| s.as_str()), Some("ENABLED"));
            // The stack default: an AWS owned key.
            assert_eq!(sse.key_type().map(|t| t.as_str()), Some("AWS_OWNED_CMK"));
        }
        "SnsEncryptedKmsRule" => {
            let out = aws_sdk_sns::Client::new(sdk).get_topic_attributes().topic_arn(name).send().await.unwrap();
            // The stack default: the AWS managed key.
            assert_eq!(out.attributes().and_then(|a| a.get("KmsMasterKeyId")).map(String::as_str), Some("alias/aws/sns"));
        }
        "SqsQueueEncryptedRule" => {
            use aws_sdk_sqs::types::QueueAttributeName;
            let out = aws_sdk_sqs::Client::new(sdk)
                .get_queue_attributes()
                .queue_url(name)
                .attribute_names(QueueAttributeName::SqsManagedSseEnabled)
                .send()
                .await
                .unwrap();
            // The stack default: SSE-SQS.
            assert_eq!(out.attributes().and_then(|a| a.get(&QueueAttributeName::SqsManagedSseEnabled)).map(String::as_str), Some("true"));
        }
        other => panic!("no check for {other}"),
    }
}

#[tokio::test]
async fn every_remediation_in_the_template_fixes_its_resource_from_the_console() {
    let sdk = sdk().await;
    let template = Template::embedded().unwrap();
    let remediations = template.remediations().expect("the template's remediation configurations resolve");
    assert!(remediations.len() >= 6, "{remediations:#?}");
    let workers = workers(&sdk);
    let worker = |binary: &str| workers.get(binary).cloned();
    let config = aws_sdk_config::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    // The account-wide EBS setting is shared with other test binaries: put it back afterwards.
    let ebs_default_before = ec2(&sdk).get_ebs_encryption_by_default().send().await.unwrap().ebs_encryption_by_default();

    let mut ran = Vec::new();
    for rem in &remediations {
        if let Some((_, reason)) = SKIPPED.iter().find(|(id, _)| *id == rem.logical_id) {
            println!("SKIPPED {}: {reason}", rem.logical_id);
            continue;
        }
        let document = template.document(&rem.document_logical_id).unwrap_or_else(|e| panic!("{}: {e}", rem.logical_id));
        let target = non_compliant(&sdk, &rem.rule_logical_id).await;
        if let Some(t) = &rem.resource_type {
            assert_eq!(t, target.resource_type, "{}", rem.logical_id);
        }
        let rule = unique(&format!("console-{}", rem.rule_logical_id));
        let document_name = create_document(&sdk, &document).await;

        // The remediation configuration, as the template defines it.
        put_remediation_configuration(&sdk, &rule, &document_name, rem, rem.automatic).await;

        // The operator presses "Remediate".
        let key = || {
            ResourceKey::builder().resource_type(ResourceType::from(target.resource_type)).resource_id(&target.resource_id).build().unwrap()
        };
        let started = config
            .start_remediation_execution()
            .config_rule_name(&rule)
            .resource_keys(key())
            .send()
            .await
            .expect("StartRemediationExecution");
        assert!(started.failed_items().is_empty(), "{}: {started:?}", rem.logical_id);

        // SSM runs the template's document with the execution's parameters.
        let executions = ssm
            .describe_automation_executions()
            .filters(
                aws_sdk_ssm::types::AutomationExecutionFilter::builder()
                    .key("DocumentNamePrefix".into())
                    .values(&document_name)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let list = executions.automation_execution_metadata_list();
        assert_eq!(list.len(), 1, "{}: {list:?}", rem.logical_id);
        let execution_id = list[0].automation_execution_id().unwrap().to_string();
        let run = run_recorded_execution(&sdk, &document, &execution_id, &worker).await;
        assert!(run.succeeded(), "{}: {run:#?}", rem.logical_id);
        assert_eq!(run.outputs.get("Answer.Status").map(String::as_str), Some("Succeeded"), "{}: {run:#?}", rem.logical_id);
        assert_eq!(run.steps.last().map(String::as_str), Some("Succeeded"), "{}: {:?}", rem.logical_id, run.steps);
        assert!(run.worker_outcomes.iter().all(|o| o.execution_id.as_deref() == Some(execution_id.as_str())));

        // Config's remediation status and the resource agree.
        let status = config.describe_remediation_execution_status().config_rule_name(&rule).resource_keys(key()).send().await.unwrap();
        assert_eq!(
            status.remediation_execution_statuses()[0].state().map(|s| s.as_str()),
            Some("SUCCEEDED"),
            "{}: {status:?}",
            rem.logical_id
        );
        assert_fixed(&sdk, &rem.rule_logical_id, &target).await;
        println!("{}: {} {} fixed in {} steps", rem.logical_id, target.resource_type, target.resource_id, run.steps.len());
        ran.push(rem.logical_id.clone());
    }

    if ebs_default_before == Some(false) {
        ec2(&sdk).disable_ebs_encryption_by_default().send().await.unwrap();
    }
    let skipped: Vec<&str> = SKIPPED.iter().map(|(id, _)| *id).collect();
    assert_eq!(ran.len() + skipped.len(), remediations.len(), "ran {ran:?}, skipped {skipped:?}");
}

/// The runner refuses what SSM refuses, before any worker runs.
#[tokio::test]
async fn the_runner_validates_parameters_like_ssm() {
    let template = Template::embedded().unwrap();
    let rem =
        template.remediations().unwrap().into_iter().find(|r| r.rule_logical_id == "S3BucketServerSideEncryptionEnabledRule").unwrap();
    let doc = template.document(&rem.document_logical_id).unwrap();
    let mut given = rem.execution_parameters("my-bucket");
    let settled = doc.parameters_for(&given).unwrap();
    assert_eq!(settled["KmsKeyId"], "", "the document default applies where Config passes nothing");
    assert_eq!(settled["SSEAlgorithm"], "AES256");
    given.insert("SSEAlgorithm".into(), vec!["DES".into()]);
    assert!(doc.parameters_for(&given).unwrap_err().to_string().contains("SSEAlgorithm"));
    given.insert("SSEAlgorithm".into(), vec!["AES256".into()]);
    given.insert("ResourceId".into(), vec!["not a bucket".into()]);
    assert!(doc.parameters_for(&given).unwrap_err().to_string().contains("ResourceId"));
    // Legacy us-east-1 bucket names (before March 2018): upper case, underscores, up to 255
    // characters; the document must accept them.
    for legacy in ["Legacy_Bucket.Name".to_string(), "B".repeat(255)] {
        given.insert("ResourceId".into(), vec![legacy.clone()]);
        assert!(doc.parameters_for(&given).is_ok(), "{legacy} is refused");
    }
    given.insert("ResourceId".into(), vec!["B".repeat(256)]);
    assert!(doc.parameters_for(&given).unwrap_err().to_string().contains("ResourceId"));
    given.insert("ResourceId".into(), vec!["my-bucket".into()]);
    given.insert("Surprise".into(), vec!["x".into()]);
    assert!(doc.parameters_for(&given).unwrap_err().to_string().contains("Surprise"));
}

/// A worker that answers Failed takes the document's Fail branch: the run ends Failed with the
/// worker's message, after one turn.
#[tokio::test]
async fn a_failing_worker_ends_the_run_failed_with_its_message() {
    let sdk = sdk().await;
    let template = Template::embedded().unwrap();
    let rem =
        template.remediations().unwrap().into_iter().find(|r| r.rule_logical_id == "S3BucketServerSideEncryptionEnabledRule").unwrap();
    let doc = template.document(&rem.document_logical_id).unwrap();
    let missing = unique("no-such-bucket");
    let params = doc.parameters_for(&rem.execution_parameters(&missing)).unwrap();
    let workers = workers(&sdk);
    let run = doc.run(&params, "local-run", &|binary: &str| workers.get(binary).cloned(), &RunOptions::immediate()).await;
    assert!(!run.succeeded(), "{run:#?}");
    assert_eq!(run.steps, ["Invoke", "Answer", "Decide", "Fail"]);
    let message = run.failure_message.as_deref().unwrap();
    assert!(message.contains(&missing) && message.contains("worker status: Failed"), "{message}");
    assert!(message.contains(&run.worker_outcomes[0].message), "{message}");
}
