//! SNS topics and SQS queues end to end against the local stand-in, over HTTP, with the real
//! SDK: Config events in → evaluations stored in Config; the fixes driven as the SSM document
//! drives them, read back from the stand-in, including the publisher trap on real topics,
//! queues and key policies (moto stores key policies but enforces none of this: the refusal is
//! the fix's own reading of the policies).
//!
//! Stand-in gaps (FIDELITY.md): moto has no `alias/aws/sns` / `alias/aws/sqs` (DescribeKey
//! answers NotFoundException), so the fixes must set them without describing them, as AWS
//! allows (the managed key is created on first use); moto keeps `SqsManagedSseEnabled` true
//! after a key is set (AWS reports false), so the rule and the fix let the key decide.

use std::sync::Arc;
use std::time::Duration;

use atrest::remediation::DriveOptions;
use atrest::{FixRequest, FixRunner, FixStatus, RuleRunner};
use atrest_testkit::{ACCOUNT_ID, REGION, adapt_event, load_event, result_for, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use fix_sns_encrypt_topic::SnsEncryptTopic;
use fix_sqs_encrypt_queue::SqsEncryptQueue;
use rule_sns_encrypted_kms::SnsEncryptedKms;
use rule_sqs_queue_encrypted::SqsQueueEncrypted;
use serde_json::{Value, json};

const SNS_RULE_DIR: &str = "sns-encrypted-kms";
const SQS_RULE_DIR: &str = "sqs-queue-encrypted";

fn topic_arn(name: &str) -> String {
    format!("arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}")
}

fn fast() -> DriveOptions {
    DriveOptions { max_steps: 5, pause: Duration::ZERO }
}

async fn invoke(runner: RuleRunner, event: Value) -> Value {
    runner.handle_lambda(event).await.expect("the handler answers")
}

fn with_parameters(mut event: Value, parameters: Value) -> Value {
    event["ruleParameters"] = json!(parameters.to_string());
    event
}

/// Points a sample event at another resource (id, name, ARN and the configuration's own id).
fn rename(resource_id: String, name: String, arn: String) -> impl FnOnce(&mut Value) {
    move |invoking| {
        let item = if invoking.get("configurationItem").is_some() {
            &mut invoking["configurationItem"]
        } else {
            &mut invoking["configurationItemSummary"]
        };
        item["resourceId"] = json!(resource_id);
        item["resourceName"] = json!(name);
        item["ARN"] = json!(arn);
        if let Some(configuration) = item["configuration"].as_object_mut() {
            for field in ["topicArn", "QueueUrl"] {
                if configuration.contains_key(field) {
                    configuration.insert(field.into(), json!(resource_id));
                }
            }
        }
    }
}

fn rename_topic(name: &str) -> impl FnOnce(&mut Value) {
    rename(topic_arn(name), name.to_string(), topic_arn(name))
}

fn rename_queue(url: &str) -> impl FnOnce(&mut Value) {
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    rename(url.to_string(), name.clone(), format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"))
}

// --- KMS keys with the key policies AWS writes -------------------------------------------

fn root_only_policy() -> Value {
    json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT_ID}:root")}, "Action": "kms:*", "Resource": "*"}]})
}

fn policy_granting(service: &str) -> Value {
    let mut policy = root_only_policy();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "AllowServicePublishers", "Effect": "Allow", "Principal": {"Service": [service]},
        "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"}));
    policy
}

/// A customer managed key with `policy` and an alias; returns (alias, key ARN).
async fn key_with_policy(sdk: &SdkConfig, policy: &Value) -> (String, String) {
    let kms = aws_sdk_kms::Client::new(sdk);
    let key = kms.create_key().policy(policy.to_string()).send().await.expect("CreateKey");
    let arn = key.key_metadata().and_then(|m| m.arn()).expect("key ARN").to_string();
    let alias = format!("alias/{}", unique("msg-key"));
    kms.create_alias().alias_name(&alias).target_key_id(&arn).send().await.expect("CreateAlias");
    (alias, arn)
}

// --- SNS --------------------------------------------------------------------------------

fn sns(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(sdk)
}

async fn create_topic(sdk: &SdkConfig, name: &str, policy: Option<&Value>, key: Option<&str>) -> String {
    let mut create = sns(sdk).create_topic().name(name);
    if let Some(policy) = policy {
        create = create.attributes("Policy", policy.to_string());
    }
    if let Some(key) = key {
        create = create.attributes("KmsMasterKeyId", key);
    }
    create.send().await.expect("CreateTopic").topic_arn().expect("topic ARN").to_string()
}

async fn topic_key(sdk: &SdkConfig, arn: &str) -> Option<String> {
    let out = sns(sdk).get_topic_attributes().topic_arn(arn).send().await.expect("GetTopicAttributes");
    out.attributes().and_then(|a| a.get("KmsMasterKeyId")).filter(|k| !k.is_empty()).cloned()
}

fn eventbridge_may_publish(topic: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowEventBridge", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sns:Publish", "Resource": topic_arn(topic)}]})
}

fn sns_request(topic: &str, extra: Value) -> FixRequest {
    let mut payload = load_event("fix-sns-encrypt-topic/ssm-payload-aws-managed-key.json");
    payload["ResourceId"] = json!(topic);
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    FixRequest::decode(&fix_sns_encrypt_topic::SPEC, &payload).unwrap()
}

#[tokio::test]
async fn sns_change_events_are_judged_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("rule-sns-change");
    // No topic exists under these names: the verdict must come from the item.
    let (plain, encrypted, deleted) = (unique("plain"), unique("encrypted"), unique("deleted"));
    let runner = || RuleRunner::new(Arc::new(SnsEncryptedKms), &sdk);
    let event = |file: &str, name: &str| adapt_event(load_event(&format!("{SNS_RULE_DIR}/{file}")), &rule, rename_topic(name));
    let response = invoke(runner(), event("change-unencrypted.json", &plain)).await;
    assert_eq!(response["Evaluations"], 1, "{response}");
    invoke(runner(), event("change-encrypted.json", &encrypted)).await;
    invoke(runner(), event("change-deleted.json", &deleted)).await;
    let stored = result_for(&sdk, &rule, &topic_arn(&plain)).await.expect("stored");
    assert_eq!((stored.compliance.as_str(), stored.resource_type.as_str()), ("NON_COMPLIANT", "AWS::SNS::Topic"));
    assert!(stored.annotation.unwrap().contains("no server-side encryption"));
    let stored = result_for(&sdk, &rule, &topic_arn(&encrypted)).await.expect("stored");
    assert_eq!(stored.compliance, "COMPLIANT");
    assert!(stored.annotation.unwrap().contains("alias/aws/sns"));
    assert_eq!(result_for(&sdk, &rule, &topic_arn(&deleted)).await.unwrap().compliance, "NOT_APPLICABLE");
}

#[tokio::test]
async fn sns_sweep_and_oversized_items_read_the_live_topics_with_a_key_list() {
    let sdk = sdk().await;
    let (approved_alias, approved_arn) = key_with_policy(&sdk, &root_only_policy()).await;
    let (other_alias, _) = key_with_policy(&sdk, &root_only_policy()).await;
    let plain = create_topic(&sdk, &unique("sweep-plain"), None, None).await;
    // Set by key ARN, approved by alias: compared as key ARNs, never as text.
    let approved = create_topic(&sdk, &unique("sweep-approved"), None, Some(&approved_arn)).await;
    let other = create_topic(&sdk, &unique("sweep-other"), None, Some(&other_alias)).await;
    // The sweep sees every topic of the stand-in, other tests' too (some on alias/aws/sns, which
    // the stand-in cannot resolve): without a key list, no key is resolved.
    let rule = unique("rule-sns-sweep");
    let event = adapt_event(load_event(&format!("{SNS_RULE_DIR}/scheduled.json")), &rule, |_| {});
    let response = invoke(RuleRunner::new(Arc::new(SnsEncryptedKms), &sdk), event).await;
    assert!(response["Evaluations"].as_u64().unwrap() >= 3, "{response}");
    assert_eq!(result_for(&sdk, &rule, &plain).await.unwrap().compliance, "NON_COMPLIANT");
    assert_eq!(result_for(&sdk, &rule, &approved).await.unwrap().compliance, "COMPLIANT");

    // Oversized notifications carry no configuration: each topic is read live, and its key
    // compared with the key list as key ARNs.
    let oversized = unique("rule-sns-oversized");
    for topic in [&plain, &approved, &other] {
        let name = topic.rsplit(':').next().unwrap().to_string();
        let event = with_parameters(
            adapt_event(load_event(&format!("{SNS_RULE_DIR}/oversized.json")), &oversized, rename_topic(&name)),
            json!({"kmsKeyIds": approved_alias}),
        );
        invoke(RuleRunner::new(Arc::new(SnsEncryptedKms), &sdk), event).await;
    }
    assert_eq!(result_for(&sdk, &oversized, &plain).await.unwrap().compliance, "NON_COMPLIANT");
    assert_eq!(result_for(&sdk, &oversized, &approved).await.unwrap().compliance, "COMPLIANT");
    let stored = result_for(&sdk, &oversized, &other).await.unwrap();
    assert_eq!(stored.compliance, "NON_COMPLIANT");
    assert!(stored.annotation.unwrap().contains("not in kmsKeyIds"));
}

#[tokio::test]
async fn sns_fix_sets_the_aws_managed_key_without_describing_it_and_converges() {
    let sdk = sdk().await;
    let topic = create_topic(&sdk, &unique("fix-topic"), None, None).await;
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk, None);

    let dry = runner.drive(&sns_request(&topic, json!({"DryRun": "true"})), &fast()).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{}", dry.message);
    assert!(dry.message.starts_with("Dry run"), "{}", dry.message);
    assert_eq!(topic_key(&sdk, &topic).await, None, "a dry run changes nothing");

    // The stand-in has no alias/aws/sns: success shows the fix never needed DescribeKey for it.
    let done = runner.drive(&sns_request(&topic, json!({})), &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert_eq!(done.changes.len(), 1, "{:?}", done.changes);
    assert_eq!(topic_key(&sdk, &topic).await.as_deref(), Some("alias/aws/sns"));

    let again = runner.drive(&sns_request(&topic, json!({})), &fast()).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{}", again.message);
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    let rule = unique("rule-sns-after-fix");
    let name = topic.rsplit(':').next().unwrap().to_string();
    invoke(
        RuleRunner::new(Arc::new(SnsEncryptedKms), &sdk),
        adapt_event(load_event(&format!("{SNS_RULE_DIR}/oversized.json")), &rule, rename_topic(&name)),
    )
    .await;
    assert_eq!(result_for(&sdk, &rule, &topic).await.unwrap().compliance, "COMPLIANT");

    let gone = runner.drive(&sns_request(&topic_arn(&unique("no-such-topic")), json!({})), &fast()).await;
    assert_eq!(gone.status, FixStatus::Failed);
    assert!(gone.message.contains("does not exist"), "{}", gone.message);
}

#[tokio::test]
async fn sns_fix_refuses_a_key_that_would_cut_off_a_service_publisher() {
    let sdk = sdk().await;
    let name = unique("published-topic");
    let topic = create_topic(&sdk, &name, Some(&eventbridge_may_publish(&name)), None).await;
    let runner = FixRunner::new(Arc::new(SnsEncryptTopic), &sdk, None);

    // The AWS managed key: EventBridge can never use it.
    let refused = runner.drive(&sns_request(&topic, json!({})), &fast()).await;
    assert_eq!(refused.status, FixStatus::Failed, "{}", refused.message);
    assert!(refused.message.contains("events.amazonaws.com") && refused.message.contains("customer managed key"), "{}", refused.message);
    assert_eq!(topic_key(&sdk, &topic).await, None, "a refusal changes nothing");

    // A customer key whose policy only enables IAM (the account root): still cut off.
    let (root_only, _) = key_with_policy(&sdk, &root_only_policy()).await;
    let refused = runner.drive(&sns_request(&topic, json!({"KmsKeyId": root_only})), &fast()).await;
    assert_eq!(refused.status, FixStatus::Failed, "{}", refused.message);
    assert!(refused.message.contains("events.amazonaws.com lacks kms:GenerateDataKey* and kms:Decrypt"), "{}", refused.message);
    assert!(refused.message.contains(r#""Principal":{"Service":"events.amazonaws.com"}"#), "the statement to add: {}", refused.message);
    assert_eq!(topic_key(&sdk, &topic).await, None);

    // A key whose policy lets EventBridge use it: switched and read back.
    let (granting, _) = key_with_policy(&sdk, &policy_granting("events.amazonaws.com")).await;
    let done = runner.drive(&sns_request(&topic, json!({"KmsKeyId": granting})), &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert_eq!(topic_key(&sdk, &topic).await.as_deref(), Some(granting.as_str()));

    // Force=true switches anyway, and says what that costs.
    let other_name = unique("forced-topic");
    let forced_topic = create_topic(&sdk, &other_name, Some(&eventbridge_may_publish(&other_name)), None).await;
    let forced = runner.drive(&sns_request(&forced_topic, json!({"KmsKeyId": root_only, "Force": "true"})), &fast()).await;
    assert_eq!(forced.status, FixStatus::Succeeded, "{}", forced.message);
    assert!(forced.message.contains("Force=true"), "{}", forced.message);
    assert_eq!(topic_key(&sdk, &forced_topic).await.as_deref(), Some(root_only.as_str()));
}

// --- SQS --------------------------------------------------------------------------------

fn sqs(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// A queue; `sse_sqs` false turns off the SSE-SQS default new queues get.
async fn create_queue(sdk: &SdkConfig, name: &str, sse_sqs: bool, policy: Option<&Value>, key: Option<&str>) -> String {
    let mut create = sqs(sdk).create_queue().queue_name(name).attributes(QueueAttributeName::SqsManagedSseEnabled, sse_sqs.to_string());
    if let Some(policy) = policy {
        create = create.attributes(QueueAttributeName::Policy, policy.to_string());
    }
    if let Some(key) = key {
        create = create.attributes(QueueAttributeName::KmsMasterKeyId, key);
    }
    create.send().await.expect("CreateQueue").queue_url().expect("queue URL").to_string()
}

async fn queue_attribute(sdk: &SdkConfig, url: &str, name: QueueAttributeName) -> Option<String> {
    let out = sqs(sdk).get_queue_attributes().queue_url(url).attribute_names(name.clone()).send().await.expect("GetQueueAttributes");
    out.attributes().and_then(|a| a.get(&name)).filter(|v| !v.is_empty()).cloned()
}

fn sns_may_send(queue: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": ["sns.amazonaws.com"]},
        "Action": ["sqs:SendMessage"], "Resource": format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}")}]})
}

fn sqs_request(queue: &str, extra: Value) -> FixRequest {
    let mut payload = load_event("fix-sqs-encrypt-queue/ssm-payload-sse-sqs.json");
    payload["ResourceId"] = json!(queue);
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    FixRequest::decode(&fix_sqs_encrypt_queue::SPEC, &payload).unwrap()
}

#[tokio::test]
async fn sqs_change_events_are_judged_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("rule-sqs-change");
    let base = format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/");
    let (plain, encrypted, deleted) = (base.clone() + &unique("plain"), base.clone() + &unique("encrypted"), base + &unique("deleted"));
    let runner = || RuleRunner::new(Arc::new(SqsQueueEncrypted), &sdk);
    let event = |file: &str, url: &str| adapt_event(load_event(&format!("{SQS_RULE_DIR}/{file}")), &rule, rename_queue(url));
    let response = invoke(runner(), event("change-unencrypted.json", &plain)).await;
    assert_eq!(response["Evaluations"], 1, "{response}");
    invoke(runner(), event("change-encrypted.json", &encrypted)).await;
    invoke(runner(), event("change-deleted.json", &deleted)).await;
    let stored = result_for(&sdk, &rule, &plain).await.expect("stored");
    assert_eq!((stored.compliance.as_str(), stored.resource_type.as_str()), ("NON_COMPLIANT", "AWS::SQS::Queue"));
    assert!(stored.annotation.unwrap().contains("not encrypted"));
    let stored = result_for(&sdk, &rule, &encrypted).await.expect("stored");
    assert_eq!(stored.compliance, "COMPLIANT");
    assert!(stored.annotation.unwrap().contains("alias/aws/sqs"));
    assert_eq!(result_for(&sdk, &rule, &deleted).await.unwrap().compliance, "NOT_APPLICABLE");
}

#[tokio::test]
async fn sqs_sweep_reads_the_live_queues_with_require_kms() {
    let sdk = sdk().await;
    let plain = create_queue(&sdk, &unique("sweep-plain"), false, None, None).await;
    let sse_sqs = create_queue(&sdk, &unique("sweep-sse-sqs"), true, None, None).await;
    let (alias, _) = key_with_policy(&sdk, &root_only_policy()).await;
    let kms = create_queue(&sdk, &unique("sweep-kms"), false, None, Some(&alias)).await;
    let runner = || RuleRunner::new(Arc::new(SqsQueueEncrypted), &sdk);
    let sweep = |rule: &str, parameters: Value| {
        with_parameters(adapt_event(load_event(&format!("{SQS_RULE_DIR}/scheduled.json")), rule, |_| {}), parameters)
    };

    let rule = unique("rule-sqs-sweep");
    invoke(runner(), sweep(&rule, json!({}))).await;
    assert_eq!(result_for(&sdk, &rule, &plain).await.unwrap().compliance, "NON_COMPLIANT");
    assert_eq!(result_for(&sdk, &rule, &sse_sqs).await.unwrap().compliance, "COMPLIANT");
    assert_eq!(result_for(&sdk, &rule, &kms).await.unwrap().compliance, "COMPLIANT");

    let strict = unique("rule-sqs-require-kms");
    invoke(runner(), sweep(&strict, json!({"requireKms": "true"}))).await;
    let stored = result_for(&sdk, &strict, &sse_sqs).await.unwrap();
    assert_eq!(stored.compliance, "NON_COMPLIANT");
    assert!(stored.annotation.unwrap().contains("requireKms"));
    assert_eq!(result_for(&sdk, &strict, &kms).await.unwrap().compliance, "COMPLIANT");
}

#[tokio::test]
async fn sqs_fix_turns_on_sse_sqs_by_default_and_converges() {
    let sdk = sdk().await;
    let queue = create_queue(&sdk, &unique("fix-plain"), false, None, None).await;
    let runner = FixRunner::new(Arc::new(SqsEncryptQueue), &sdk, None);

    let dry = runner.drive(&sqs_request(&queue, json!({"DryRun": "true"})), &fast()).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{}", dry.message);
    assert_eq!(queue_attribute(&sdk, &queue, QueueAttributeName::SqsManagedSseEnabled).await.as_deref(), Some("false"));

    let done = runner.drive(&sqs_request(&queue, json!({})), &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert_eq!(done.changes.len(), 1, "{:?}", done.changes);
    assert_eq!(queue_attribute(&sdk, &queue, QueueAttributeName::SqsManagedSseEnabled).await.as_deref(), Some("true"));
    assert_eq!(queue_attribute(&sdk, &queue, QueueAttributeName::KmsMasterKeyId).await, None);

    let again = runner.drive(&sqs_request(&queue, json!({})), &fast()).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{}", again.message);
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    let bad = runner.drive(&sqs_request(&queue, json!({"KmsKeyId": "alias/app"})), &fast()).await;
    assert_eq!(bad.status, FixStatus::Failed, "KmsKeyId without aws:kms: {}", bad.message);
}

#[tokio::test]
async fn sqs_fix_refuses_a_key_that_would_cut_off_sns_and_switches_with_one_that_does_not() {
    let sdk = sdk().await;
    let name = unique("fanout-queue");
    let queue = create_queue(&sdk, &name, true, Some(&sns_may_send(&name)), None).await;
    let runner = FixRunner::new(Arc::new(SqsEncryptQueue), &sdk, None);

    let refused = runner.drive(&sqs_request(&queue, json!({"SSEAlgorithm": "aws:kms"})), &fast()).await;
    assert_eq!(refused.status, FixStatus::Failed, "{}", refused.message);
    assert!(refused.message.contains("sns.amazonaws.com") && refused.message.contains("AWS managed key"), "{}", refused.message);
    let (root_only, _) = key_with_policy(&sdk, &root_only_policy()).await;
    let refused = runner.drive(&sqs_request(&queue, json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": root_only})), &fast()).await;
    assert_eq!(refused.status, FixStatus::Failed, "{}", refused.message);
    assert!(refused.message.contains("sns.amazonaws.com lacks"), "{}", refused.message);
    assert_eq!(queue_attribute(&sdk, &queue, QueueAttributeName::KmsMasterKeyId).await, None, "a refusal changes nothing");

    let (granting, _) = key_with_policy(&sdk, &policy_granting("sns.amazonaws.com")).await;
    let request = sqs_request(&queue, json!({"SSEAlgorithm": "aws:kms", "KmsKeyId": granting, "KmsDataKeyReusePeriodSeconds": "600"}));
    let done = runner.drive(&request, &fast()).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{}", done.message);
    assert_eq!(queue_attribute(&sdk, &queue, QueueAttributeName::KmsMasterKeyId).await.as_deref(), Some(granting.as_str()));
    assert_eq!(queue_attribute(&sdk, &queue, QueueAttributeName::KmsDataKeyReusePeriodSeconds).await.as_deref(), Some("600"));
    let again = runner.drive(&request, &fast()).await;
    assert!(again.changes.is_empty(), "{:?}", again.changes);

    // The rule with requireKms and the key list agrees.
    let rule = unique("rule-sqs-after-fix");
    let event = with_parameters(
        adapt_event(load_event(&format!("{SQS_RULE_DIR}/oversized.json")), &rule, rename_queue(&queue)),
        json!({"requireKms": "true", "kmsKeyIds": granting}),
    );
    invoke(RuleRunner::new(Arc::new(SqsQueueEncrypted), &sdk), event).await;
    assert_eq!(result_for(&sdk, &rule, &queue).await.unwrap().compliance, "COMPLIANT");
}
