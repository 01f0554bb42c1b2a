//! What the SNS and SQS encryption fixes share: the publisher trap.
//!
//! AWS services that publish to a topic or queue (EventBridge rules, S3 event notifications,
//! CloudWatch alarms, AWS Config, …) call KMS as themselves when the topic or queue is encrypted
//! with a KMS key: they need `kms:GenerateDataKey*` and `kms:Decrypt` on it, granted to their
//! service principal in the key policy. Without that, their deliveries stop silently (SNS
//! Developer Guide, "Configure AWS KMS permissions for AWS services"; SQS Developer Guide,
//! "Enable compatibility between event sources from AWS services and encrypted queues"). The AWS
//! managed keys `aws/sns` and `aws/sqs` can never be used by them: their key policies cannot be
//! changed.
//!
//! A fix therefore reads which service principals the topic/queue policy lets publish, and
//! which of them the key policy lets use the key, before it switches; a publisher that would be
//! cut off makes it refuse with the statement to add. Publishers are seen only through the
//! resource policy's service principals, as the issue asks: EventBridge targets and S3 event
//! notifications need such a statement to deliver at all.
//!
//! Policies are parsed as AWS writes them: `Statement` an object or an array, `Principal` `"*"`,
//! `{"AWS": "*"}` or `{"Service": "x"}` with a string or an array, `Action`/`NotAction` strings
//! or arrays with wildcards, any case in action names. A statement granting the account root
//! (`arn:aws:iam::<account>:root`) does NOT grant a service principal: it delegates to IAM
//! policies, which a service principal does not have.

use std::collections::BTreeSet;

use atrest::error::{Error, Result, aws_error};
use atrest::kms::{KMS_KEY_PARAM, KeyRef, KeyResolver};
use atrest::policy::wildcard_match;
use serde_json::{Map, Value, json};

/// The AWS managed key SNS uses when a topic names it (created by AWS on first use).
pub const SNS_MANAGED_KEY: &str = "alias/aws/sns";
/// The AWS managed key SQS uses when a queue names it (created by AWS on first use).
pub const SQS_MANAGED_KEY: &str = "alias/aws/sqs";

/// The action a service principal is granted on a topic to publish to it.
pub const SNS_PUBLISH_ACTION: &str = "sns:Publish";
/// The action a service principal is granted on a queue to send to it.
pub const SQS_SEND_ACTION: &str = "sqs:SendMessage";

/// What a service publisher calls on the key (as the developer guides grant it:
/// `kms:GenerateDataKey*` covers the first).
const PUBLISHER_KEY_CALLS: [(&str, &str); 2] = [("kms:GenerateDataKey", "kms:GenerateDataKey*"), ("kms:Decrypt", "kms:Decrypt")];

/// The key policy name KMS reads and writes (`GetKeyPolicy` accepts only `default`).
const KEY_POLICY_NAME: &str = "default";

/// Who owns the key a topic or queue would be switched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    /// An AWS managed key (`aws/sns`, `aws/sqs`): its key policy cannot grant service publishers.
    AwsManaged,
    /// A customer managed key: its key policy decides.
    Customer,
}

/// A service principal that publishes to the resource and could not use the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutOff {
    pub service: String,
    /// The key-policy actions it lacks (as a statement would grant them).
    pub missing: Vec<&'static str>,
}

/// One policy statement, reduced to what the publisher analysis needs.
#[derive(Debug, Default)]
struct Stmt {
    allow: bool,
    /// `Principal: "*"` or `{"AWS": "*"}`: everyone, service principals included.
    everyone: bool,
    /// `Principal: {"Service": …}`, lower-cased.
    services: Vec<String>,
    /// Set with `NotPrincipal`: `services`/`everyone` are then the exceptions.
    not_principal: bool,
    actions: Vec<String>,
    not_action: bool,
    conditional: bool,
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn principals(value: Option<&Value>) -> (bool, Vec<String>) {
    match value {
        Some(Value::String(s)) => (s == "*", Vec::new()),
        Some(Value::Object(map)) => {
            let everyone = map.get("AWS").map(|v| strings(Some(v)).iter().any(|p| p == "*")).unwrap_or(false);
            let services = map.get("Service").map(|v| strings(Some(v))).unwrap_or_default();
            (everyone, services.into_iter().map(|s| s.trim().to_ascii_lowercase()).collect())
        }
        _ => (false, Vec::new()),
    }
}

impl Stmt {
    fn from_object(obj: &Map<String, Value>) -> Stmt {
        let not_principal = obj.contains_key("NotPrincipal");
        let (everyone, services) = principals(obj.get(if not_principal { "NotPrincipal" } else { "Principal" }));
        let not_action = obj.contains_key("NotAction");
        Stmt {
            allow: obj.get("Effect").and_then(Value::as_str).is_some_and(|e| e.eq_ignore_ascii_case("Allow")),
            everyone,
            services,
            not_principal,
            actions: strings(obj.get(if not_action { "NotAction" } else { "Action" })),
            not_action,
            conditional: obj.get("Condition").is_some_and(|c| !c.is_null()),
        }
    }

    fn covers_action(&self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let listed = self.actions.iter().any(|a| wildcard_match(&a.to_ascii_lowercase(), &action));
        listed != self.not_action
    }

    fn applies_to_service(&self, service: &str) -> bool {
        let named = self.everyone || self.services.iter().any(|s| s == service);
        named != self.not_principal
    }
}

fn statements(doc: &Value) -> Vec<Stmt> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_object).map(Stmt::from_object).collect(),
        Some(Value::Object(single)) => vec![Stmt::from_object(single)],
        _ => Vec::new(),
    }
}

fn parse(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the {what} is not JSON ({e})"))
}

/// The service principals a topic or queue policy lets publish (`publish_action`: `sns:Publish`
/// or `sqs:SendMessage`), lower-cased and sorted. Only `Allow` statements that name a service
/// principal count; conditions (usually `aws:SourceArn`) narrow which of the service's
/// resources may publish, not whether the service does.
pub fn service_publishers(resource_policy: &str, publish_action: &str) -> Result<BTreeSet<String>, String> {
    if resource_policy.trim().is_empty() {
        return Ok(BTreeSet::new());
    }
    let doc = parse(resource_policy, "resource policy")?;
    Ok(statements(&doc)
        .into_iter()
        .filter(|s| s.allow && !s.not_principal && s.covers_action(publish_action))
        .flat_map(|s| s.services)
        .collect())
}

/// The key-policy actions `service` lacks to publish to a topic or queue encrypted with the
/// key: an `Allow` to that service principal or to everyone (`"*"`; conditions are the key
/// owner's to judge and are taken as met), not undone by an unconditional `Deny`. A grant to
/// the account root or to IAM roles does not count.
pub fn missing_key_permissions(key_policy: &Value, service: &str) -> Vec<&'static str> {
    let service = service.to_ascii_lowercase();
    let stmts = statements(key_policy);
    PUBLISHER_KEY_CALLS
        .iter()
        .filter(|(call, _)| {
            let allowed = stmts.iter().any(|s| s.allow && s.applies_to_service(&service) && s.covers_action(call));
            let denied = stmts.iter().any(|s| !s.allow && !s.conditional && s.applies_to_service(&service) && s.covers_action(call));
            !allowed || denied
        })
        .map(|(_, granted_as)| *granted_as)
        .collect()
}

/// The publishers a switch to a key would cut off. `key_policy`: the customer managed key's
/// policy document (ignored for an AWS managed key, which no service publisher can use).
pub fn cut_off_publishers(publishers: &BTreeSet<String>, owner: KeyOwner, key_policy: Option<&str>) -> Result<Vec<CutOff>, String> {
    let all_missing = || PUBLISHER_KEY_CALLS.iter().map(|(_, granted_as)| *granted_as).collect::<Vec<_>>();
    let doc = match (owner, key_policy) {
        (KeyOwner::AwsManaged, _) | (KeyOwner::Customer, None) => None,
        (KeyOwner::Customer, Some(text)) => Some(parse(text, "key policy")?),
    };
    Ok(publishers
        .iter()
        .filter_map(|service| {
            let missing = match &doc {
                Some(doc) => missing_key_permissions(doc, service),
                None => all_missing(),
            };
            (!missing.is_empty()).then(|| CutOff { service: service.clone(), missing })
        })
        .collect())
}

/// The key policy statement that lets `services` publish to a resource encrypted with the key.
pub fn publisher_key_statement(services: &[&str]) -> Value {
    let principal = match services {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "Sid": "AllowAwsServicePublishers",
        "Effect": "Allow",
        "Principal": {"Service": principal},
        "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
        "Resource": "*"
    })
}

/// The `Failed` message of a refused switch: who would be cut off and what to add.
pub fn refusal_message(resource: &str, key: &str, owner: KeyOwner, cut_off: &[CutOff]) -> String {
    let services: Vec<&str> = cut_off.iter().map(|c| c.service.as_str()).collect();
    let statement = publisher_key_statement(&services).to_string();
    let who = services.join(", ");
    match owner {
        KeyOwner::AwsManaged => format!(
            "Refused to encrypt {resource} with the AWS managed key {key}: AWS service publishers ({who}) send to it, and an AWS \
             managed key's policy cannot let them use it, so their deliveries would stop silently. Use a customer managed key \
             (KmsKeyId) whose key policy has this statement: {statement}. Nothing was changed (Force=true switches anyway)."
        ),
        KeyOwner::Customer => {
            let missing: Vec<String> = cut_off.iter().map(|c| format!("{} lacks {}", c.service, c.missing.join(" and "))).collect();
            format!(
                "Refused to encrypt {resource} with KMS key {key}: AWS service publishers send to it but the key policy does not let \
                 them use the key ({}), so their deliveries would stop silently. Add this statement to the key policy, then run the \
                 fix again: {statement}. Nothing was changed (Force=true switches anyway).",
                missing.join("; ")
            )
        }
    }
}

/// Whether `key` names the AWS managed key `managed_alias` by its alias (name or alias ARN).
pub fn is_managed_alias(key: &str, managed_alias: &str) -> bool {
    match KeyRef::parse(key) {
        Ok(KeyRef::AliasName(name)) => name == managed_alias,
        Ok(KeyRef::AliasArn(arn)) => arn.ends_with(&format!(":{managed_alias}")),
        _ => false,
    }
}

/// Whether a topic's or queue's key (`have`) is the one asked for (`want`). The same text needs
/// no call; otherwise both are resolved to key ARNs. The service's AWS managed alias
/// (`managed_alias`) that does not resolve has never been used, so nothing can be using it.
pub async fn same_key(kms: &KeyResolver, have: &str, want: &str, managed_alias: &str) -> Result<bool> {
    if have == want {
        return Ok(true);
    }
    match kms.is_one_of(have, &[want.to_string()]).await {
        Err(e)
            if e.aws_code() == Some("NotFoundException")
                && (is_managed_alias(have, managed_alias) || is_managed_alias(want, managed_alias)) =>
        {
            Ok(false)
        }
        other => other,
    }
}

/// Why a customer key cannot encrypt for `service` (SNS and SQS take only enabled symmetric
/// encryption keys), or `None`. The AWS managed alias is not described: it may not exist yet.
pub async fn key_problem(kms: &KeyResolver, key: &str, managed_alias: &str, service: &str) -> Result<Option<String>> {
    if is_managed_alias(key, managed_alias) {
        return Ok(None);
    }
    let meta = kms.requested_key_metadata(key).await?;
    if let Some(state) = meta.key_state().filter(|s| s.as_str() != "Enabled") {
        return Ok(Some(format!(
            "KMS key {key} is {}, not Enabled; {service} cannot encrypt with it. Nothing was changed.",
            state.as_str()
        )));
    }
    if let Some(spec) = meta.key_spec().filter(|s| s.as_str() != "SYMMETRIC_DEFAULT") {
        return Ok(Some(format!(
            "KMS key {key} is a {} key; {service} encrypts only with symmetric encryption keys. Nothing was changed.",
            spec.as_str()
        )));
    }
    Ok(None)
}

/// A topic or queue about to be encrypted with a KMS key.
pub struct Switch<'a> {
    /// How messages name it ("topic arn:…", "queue https://…").
    pub resource: &'a str,
    /// Its resource policy (`Policy` attribute), if it has one.
    pub resource_policy: Option<&'a str>,
    /// `SNS_PUBLISH_ACTION` or `SQS_SEND_ACTION`.
    pub publish_action: &'a str,
    /// The key as the fix's `KmsKeyId` names it.
    pub key: &'a str,
    /// `SNS_MANAGED_KEY` or `SQS_MANAGED_KEY`.
    pub managed_alias: &'a str,
}

/// Why the switch must not happen (the `Failed` message), or `None` when no service publisher
/// would be cut off. No KMS call when the resource policy names no service publisher or the key
/// is the AWS managed alias; otherwise `DescribeKey` (who manages the key) and `GetKeyPolicy`.
pub async fn publisher_refusal(kms: &aws_sdk_kms::Client, resolver: &KeyResolver, switch: &Switch<'_>) -> Result<Option<String>> {
    let publishers = service_publishers(switch.resource_policy.unwrap_or_default(), switch.publish_action)
        .map_err(|reason| Error::Unsupported(format!("Cannot read the policy of {}: {reason}; nothing was changed.", switch.resource)))?;
    if publishers.is_empty() {
        return Ok(None);
    }
    let (owner, key_policy) = if is_managed_alias(switch.key, switch.managed_alias) {
        (KeyOwner::AwsManaged, None)
    } else {
        let meta = resolver.requested_key_metadata(switch.key).await?;
        let key_arn = meta.arn().unwrap_or(switch.key).to_string();
        if meta.key_manager() == Some(&aws_sdk_kms::types::KeyManagerType::Aws) {
            (KeyOwner::AwsManaged, None)
        } else {
            let out = kms
                .get_key_policy()
                .key_id(&key_arn)
                .policy_name(KEY_POLICY_NAME)
                .send()
                .await
                .map_err(|e| aws_error("kms:GetKeyPolicy", key_arn.clone(), e))?;
            (KeyOwner::Customer, out.policy)
        }
    };
    let cut_off = cut_off_publishers(&publishers, owner, key_policy.as_deref())
        .map_err(|reason| Error::invalid_parameter(KMS_KEY_PARAM, format!("cannot read the policy of {}: {reason}", switch.key)))?;
    Ok((!cut_off.is_empty()).then(|| refusal_message(switch.resource, switch.key, owner, &cut_off)))
}

#[cfg(test)]
mod tests;
