//! The SNS and SQS fixes' fault-sweep scenarios (tests/reliability_fixes.rs): one topic or queue
//! per run, with what the user had (display name, visibility timeout, policy, tags) checked to
//! survive and the rule judging the result compliant. The customer-key variants have an AWS
//! service publisher in the resource policy and a key policy that lets it use the key, so the
//! publisher check reads both under faults and lets the switch through.

use std::sync::Arc;

use atrest::Fix;
use atrest_testkit::reliability::{FixScenario, Fixture, rule_judges_compliant};
use atrest_testkit::{ACCOUNT_ID, unique};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

/// A customer managed key whose policy lets `service` publish with it; returns its alias.
async fn key_for_publisher(sdk: &SdkConfig, service: &str) -> String {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT_ID}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "AllowServicePublishers", "Effect": "Allow", "Principal": {"Service": service}, "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"}]});
    let kms = aws_sdk_kms::Client::new(sdk);
    let arn =
        kms.create_key().policy(policy.to_string()).send().await.expect("CreateKey").key_metadata.and_then(|m| m.arn).expect("key ARN");
    let alias = format!("alias/{}", unique("rel-msg-key"));
    kms.create_alias().alias_name(&alias).target_key_id(&arn).send().await.expect("CreateAlias");
    alias
}

fn publisher_policy(service: &str, action: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Sid": "AllowService", "Effect": "Allow", "Principal": {"Service": service}, "Action": action, "Resource": "*"}]})
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// fix-sns-encrypt-topic

pub struct SnsScenario {
    pub name: &'static str,
    /// EventBridge publishes and a customer key (by alias) grants it, instead of alias/aws/sns.
    pub customer_key: bool,
}

struct SnsFixture {
    topic: String,
    key: Option<String>,
    policy: Option<String>,
}

#[atrest::async_trait]
impl FixScenario for SnsScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_sns_encrypt_topic::SnsEncryptTopic)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = aws_sdk_sns::Client::new(sdk).list_topics().send().await;
        let _ = aws_sdk_kms::Client::new(sdk).list_keys().send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let sns = aws_sdk_sns::Client::new(sdk);
        let policy = self.customer_key.then(|| publisher_policy("events.amazonaws.com", "sns:Publish"));
        let mut create = sns.create_topic().name(unique("rel-topic")).attributes("DisplayName", "Orders");
        if let Some(policy) = &policy {
            create = create.attributes("Policy", policy);
        }
        let topic = create.send().await.expect("CreateTopic").topic_arn.expect("topic ARN");
        sns.tag_resource()
            .resource_arn(&topic)
            .tags(aws_sdk_sns::types::Tag::builder().key("team").value("orders").build().unwrap())
            .send()
            .await
            .expect("TagResource");
        let key = if self.customer_key { Some(key_for_publisher(sdk, "events.amazonaws.com").await) } else { None };
        Box::new(SnsFixture { topic, key, policy })
    }
}

#[atrest::async_trait]
impl Fixture for SnsFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.topic, "ExecutionId": "00000000-0000-4000-8000-00000000c5a5", "KmsKeyId": self.key.clone().unwrap_or_default()})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let t = &self.topic;
        if let Some(problem) =
            rule_judges_compliant(&rule_sns_encrypted_kms::SnsEncryptedKms, sdk, json!({}), "AWS::SNS::Topic", t).await.err()
        {
            v.push(problem);
        }
        let sns = aws_sdk_sns::Client::new(sdk);
        match sns.get_topic_attributes().topic_arn(t).send().await {
            Ok(out) => {
                let attributes = out.attributes.unwrap_or_default();
                let wanted = self.key.as_deref().unwrap_or("alias/aws/sns");
                if attributes.get("KmsMasterKeyId").map(String::as_str) != Some(wanted) {
                    v.push(format!("topic {t} has key {:?}, not {wanted}", attributes.get("KmsMasterKeyId")));
                }
                if attributes.get("DisplayName").map(String::as_str) != Some("Orders") {
                    v.push(format!("topic {t} lost its display name: {attributes:?}"));
                }
                if let Some(policy) = &self.policy {
                    let now: Option<Value> = attributes.get("Policy").and_then(|p| serde_json::from_str(p).ok());
                    if now != serde_json::from_str(policy).ok() {
                        v.push(format!("topic {t} policy changed: {now:?}"));
                    }
                }
            }
            Err(e) => v.push(format!("topic {t} is gone: {e:?}")),
        }
        match sns.list_tags_for_resource().resource_arn(t).send().await {
            Ok(out) if out.tags().iter().any(|tag| tag.key() == "team" && tag.value() == "orders") => {}
            other => v.push(format!("topic {t} lost its tag: {other:?}")),
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// fix-sqs-encrypt-queue

pub struct SqsScenario {
    pub name: &'static str,
    /// SSE-KMS with a customer key (by alias) that SNS, the queue's publisher, may use; else SSE-SQS.
    pub customer_key: bool,
}

struct SqsFixture {
    queue: String,
    key: Option<String>,
}

#[atrest::async_trait]
impl FixScenario for SqsScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_sqs_encrypt_queue::SqsEncryptQueue)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = aws_sdk_sqs::Client::new(sdk).list_queues().send().await;
        let _ = aws_sdk_kms::Client::new(sdk).list_keys().send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut create = sqs
            .create_queue()
            .queue_name(unique("rel-queue"))
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "false")
            .attributes(QueueAttributeName::VisibilityTimeout, "45")
            .tags("team", "orders");
        if self.customer_key {
            create = create.attributes(QueueAttributeName::Policy, publisher_policy("sns.amazonaws.com", "sqs:SendMessage"));
        }
        let queue = create.send().await.expect("CreateQueue").queue_url.expect("queue URL");
        let key = if self.customer_key { Some(key_for_publisher(sdk, "sns.amazonaws.com").await) } else { None };
        Box::new(SqsFixture { queue, key })
    }
}

#[atrest::async_trait]
impl Fixture for SqsFixture {
    fn payload(&self) -> Value {
        let algorithm = if self.key.is_some() { "aws:kms" } else { "SQS" };
        json!({"ResourceId": self.queue, "ExecutionId": "00000000-0000-4000-8000-00000000c5a6", "SSEAlgorithm": algorithm,
            "KmsKeyId": self.key.clone().unwrap_or_default()})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let q = &self.queue;
        if let Some(problem) =
            rule_judges_compliant(&rule_sqs_queue_encrypted::SqsQueueEncrypted, sdk, json!({}), "AWS::SQS::Queue", q).await.err()
        {
            v.push(problem);
        }
        let sqs = aws_sdk_sqs::Client::new(sdk);
        match sqs.get_queue_attributes().queue_url(q).attribute_names(QueueAttributeName::All).send().await {
            Ok(out) => {
                let attributes = out.attributes.unwrap_or_default();
                let get = |name: QueueAttributeName| attributes.get(&name).map(String::as_str);
                match &self.key {
                    Some(key) => {
                        if get(QueueAttributeName::KmsMasterKeyId) != Some(key.as_str()) {
                            v.push(format!("queue {q} has key {:?}, not {key}", get(QueueAttributeName::KmsMasterKeyId)));
                        }
                        if get(QueueAttributeName::KmsDataKeyReusePeriodSeconds) != Some("300") {
                            v.push(format!("queue {q} data key reuse period is not 300 s: {attributes:?}"));
                        }
                    }
                    None if get(QueueAttributeName::SqsManagedSseEnabled) != Some("true") => {
                        v.push(format!("queue {q} is not on SSE-SQS: {attributes:?}"));
                    }
                    None => {}
                }
                if get(QueueAttributeName::VisibilityTimeout) != Some("45") {
                    v.push(format!("queue {q} lost its 45 s visibility timeout: {attributes:?}"));
                }
            }
            Err(e) => v.push(format!("queue {q} is gone: {e:?}")),
        }
        match sqs.list_queue_tags().queue_url(q).send().await {
            Ok(out) if out.tags().and_then(|t| t.get("team")).map(String::as_str) == Some("orders") => {}
            other => v.push(format!("queue {q} lost its tag: {other:?}")),
        }
        v
    }
}
