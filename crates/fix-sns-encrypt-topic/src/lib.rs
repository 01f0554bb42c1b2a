//! `fix-sns-encrypt-topic`: encrypt an SNS topic with a KMS key and verify it, without cutting
//! off the AWS services that publish to it.
//!
//! Reconciler turns: read the topic (GetTopicAttributes) → gone: `Failed` → already encrypted as
//! asked: `Succeeded` without touching it → check the key (a customer key must exist, be enabled
//! and symmetric) → check the publishers (`atrest_messaging::publisher_refusal`: a service
//! principal in the topic policy that the key policy does not let use the key, or any with the
//! AWS managed key, makes it refuse with the statement to add, unless `Force=true`) → set
//! `KmsMasterKeyId` → read it back.
//!
//! Non-disruptive: SNS applies the key to messages published from then on; subscribers are
//! unaffected (SNS decrypts before delivery). `alias/aws/sns` needs no DescribeKey: AWS creates
//! the managed key the first time a topic uses it, so it may not exist yet.

use atrest::error::{Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_messaging::{SNS_MANAGED_KEY, SNS_PUBLISH_ACTION, Switch, key_problem, publisher_refusal, same_key};
use std::collections::HashMap;

pub const RESOURCE_TYPE: &str = "AWS::SNS::Topic";
pub const FORCE_PARAM: &str = "Force";

pub static SPEC: FixSpec = FixSpec {
    name: "sns-encrypt-topic",
    description: "Encrypt an SNS topic with a KMS key (default alias/aws/sns) without cutting off AWS service publishers, and verify it.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[
        ParamSpec {
            name: KMS_KEY_PARAM,
            kind: ParamKind::KmsKey,
            default: "",
            description: "Key id, key ARN, alias or alias ARN. Empty: the AWS managed key alias/aws/sns, and a topic already encrypted with any key is left as it is.",
        },
        ParamSpec {
            name: FORCE_PARAM,
            kind: ParamKind::Bool,
            default: "false",
            description: "true: switch even when AWS service publishers named in the topic policy could not use the key (their deliveries stop until the key policy allows them).",
        },
    ],
    disruptive: false,
};

/// What the next turn does, from what was observed: pure, table-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Done,
    Encrypt,
}

/// `current`: the topic's `KmsMasterKeyId`; `requested`: the `KmsKeyId` parameter, if given;
/// `key_matches`: whether the two name the same key (decided by the caller, only when both exist).
fn next(current: Option<&str>, requested: Option<&str>, key_matches: bool) -> Next {
    match (current, requested) {
        (None, _) => Next::Encrypt,
        (Some(_), None) => Next::Done,
        (Some(_), Some(_)) if key_matches => Next::Done,
        (Some(_), Some(_)) => Next::Encrypt,
    }
}

/// Config reports a topic by its ARN; anything else would reach SNS as an invalid parameter.
fn is_topic_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && parts[4].len() == 12 && !parts[5].is_empty()
}

fn topic_key(attributes: &HashMap<String, String>) -> Option<&str> {
    attributes.get("KmsMasterKeyId").map(|k| k.trim()).filter(|k| !k.is_empty())
}

async fn topic_attributes(sns: &aws_sdk_sns::Client, topic: &str) -> Result<Option<HashMap<String, String>>> {
    match sns.get_topic_attributes().topic_arn(topic).send().await {
        Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
        Err(e) => {
            let err = aws_error("sns:GetTopicAttributes", topic, e);
            if err.aws_code() == Some("NotFound") { Ok(None) } else { Err(err) }
        }
    }
}

pub struct SnsEncryptTopic;

#[async_trait]
impl Fix for SnsEncryptTopic {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let topic = req.resource_id.as_str();
        let requested = req.params.text(KMS_KEY_PARAM);
        let key = requested.unwrap_or(SNS_MANAGED_KEY);
        let force = req.params.bool(FORCE_PARAM);
        if !is_topic_arn(topic) {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "ResourceId {topic:.256} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>, the Config resource id of a topic). Nothing was changed."
                ),
            ));
        }
        let sns = ctx.client(aws_sdk_sns::Client::new);
        let Some(attributes) = topic_attributes(&sns, topic).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("Topic {topic} does not exist (deleted since it was evaluated); nothing to do."),
            ));
        };
        let current = topic_key(&attributes);
        let matches = match (current, requested) {
            (Some(have), Some(want)) => same_key(&ctx.kms, have, want, SNS_MANAGED_KEY).await?,
            _ => false,
        };
        if next(current, requested, matches) == Next::Done {
            let have = current.unwrap_or(key);
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("Topic {topic} is encrypted with KMS key {have} (read back from SNS); nothing was changed."),
            ));
        }
        if let Some(problem) = key_problem(&ctx.kms, key, SNS_MANAGED_KEY, "SNS").await? {
            return Ok(FixOutcome::failed(&SPEC, req, problem));
        }
        let kms = ctx.client(atrest::clients::kms);
        let switch = Switch {
            resource: &format!("topic {topic}"),
            resource_policy: attributes.get("Policy").map(String::as_str),
            publish_action: SNS_PUBLISH_ACTION,
            key,
            managed_alias: SNS_MANAGED_KEY,
        };
        let refusal = publisher_refusal(&kms, &ctx.kms, &switch).await?;
        let forced_note = match refusal {
            Some(refusal) if !force => return Ok(FixOutcome::failed(&SPEC, req, refusal)),
            Some(_) => {
                " Force=true: AWS service publishers named in the topic policy cannot use this key; their deliveries fail until the key policy allows them."
            }
            None => "",
        };
        let change = format!(
            "topic {topic}: {} -> KMS key {key}",
            current.map(|k| format!("KMS key {k}")).unwrap_or_else(|| "no encryption".into())
        );
        if req.dry_run {
            return Ok(FixOutcome::succeeded(&SPEC, req, format!("Dry run: would encrypt {change}. Nothing was changed.{forced_note}"))
                .with_change(change));
        }
        let set = sns.set_topic_attributes().topic_arn(topic).attribute_name("KmsMasterKeyId").attribute_value(key).send().await;
        if let Err(e) = set {
            let err = aws_error("sns:SetTopicAttributes", topic, e);
            return match err.aws_code() {
                Some("NotFound") => Ok(FixOutcome::failed(&SPEC, req, format!("Topic {topic} was deleted; nothing was changed."))),
                // SNS checks the key when it is set (KMS errors, InvalidParameter for a key it cannot use).
                Some(code) if code.starts_with("KMS") || code == "InvalidParameter" => {
                    Ok(FixOutcome::failed(&SPEC, req, format!("SNS refused KMS key {key} for topic {topic}: {err}. Nothing was changed.")))
                }
                _ => Err(err),
            };
        }
        // Read back: a stale read (eventual consistency) only delays success to the next turn,
        // which sees the key and changes nothing.
        let after = topic_attributes(&sns, topic).await?;
        match after.as_ref().and_then(topic_key) {
            Some(now) if now == key => Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Topic {topic} now encrypts messages with KMS key {key} (read back from SNS); subscribers are unaffected and nothing \
                     else was changed.{forced_note}"
                ),
            )
            .with_change(change)),
            None if after.is_none() => {
                Ok(FixOutcome::failed(&SPEC, req, format!("Topic {topic} was deleted while it was being encrypted.")))
            }
            _ => Ok(FixOutcome::in_progress(&SPEC, req, format!("Set KMS key {key} on topic {topic}; waiting to read it back from SNS."))
                .with_change(change)),
        }
    }
}

#[cfg(test)]
mod tests;
