//! `fix-sqs-encrypt-queue`: encrypt an SQS queue at rest and verify it, without cutting off the
//! AWS services that send to it.
//!
//! Reconciler turns: read the queue's encryption and policy (GetQueueAttributes with only those
//! attribute names) → gone: `Failed` → already encrypted as asked: `Succeeded` without touching
//! it → SSE-SQS (the default, `SSEAlgorithm=SQS`): set `SqsManagedSseEnabled` (no key, nothing
//! for publishers to be granted) → SSE-KMS (`SSEAlgorithm=aws:kms`): check the key (a customer
//! key must exist, be enabled and symmetric) and the publishers
//! (`atrest_messaging::publisher_refusal`; `Force=true` overrides), then set `KmsMasterKeyId`
//! and `KmsDataKeyReusePeriodSeconds` → read back.
//!
//! Non-disruptive: SQS encrypts messages sent from then on; messages already in the queue stay
//! readable. A queue already on SSE-KMS is never moved back to SSE-SQS.

use std::collections::HashMap;

use atrest::error::{Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_messaging::{SQS_MANAGED_KEY, SQS_SEND_ACTION, Switch, key_problem, publisher_refusal, same_key};
use aws_sdk_sqs::types::QueueAttributeName;

pub const RESOURCE_TYPE: &str = "AWS::SQS::Queue";
pub const ALGORITHM_PARAM: &str = "SSEAlgorithm";
pub const REUSE_PARAM: &str = "KmsDataKeyReusePeriodSeconds";
pub const FORCE_PARAM: &str = "Force";
const SSE_SQS: &str = "SQS";
const SSE_KMS: &str = "aws:kms";

pub static SPEC: FixSpec = FixSpec {
    name: "sqs-encrypt-queue",
    description: "Encrypt an SQS queue at rest: SSE-SQS, or SSE-KMS with a key that does not cut off AWS service publishers; verify it.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[
        ParamSpec {
            name: ALGORITHM_PARAM,
            kind: ParamKind::OneOf(&[SSE_SQS, SSE_KMS]),
            default: SSE_SQS,
            description: "SQS: SSE-SQS (SQS owned keys; a queue already on SSE-KMS is left as it is). aws:kms: SSE-KMS with KmsKeyId.",
        },
        ParamSpec {
            name: KMS_KEY_PARAM,
            kind: ParamKind::KmsKey,
            default: "",
            description: "With aws:kms: key id, key ARN, alias or alias ARN. Empty: the AWS managed key alias/aws/sqs, and a queue already on any KMS key is left as it is.",
        },
        ParamSpec {
            name: REUSE_PARAM,
            kind: ParamKind::Integer { min: 60, max: 86400 },
            default: "300",
            description: "With aws:kms: seconds SQS reuses a data key before calling KMS again (60-86400).",
        },
        ParamSpec {
            name: FORCE_PARAM,
            kind: ParamKind::Bool,
            default: "false",
            description: "true: switch to the key even when AWS service publishers named in the queue policy could not use it (their messages stop until the key policy allows them).",
        },
    ],
    disruptive: false,
};

/// The queue's encryption at rest, from its attributes. A key means SSE-KMS whatever
/// `SqsManagedSseEnabled` says (moto keeps it true after a key is set; AWS reports false).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    None,
    SqsManaged,
    Kms(String),
}

fn current(attributes: &HashMap<String, String>) -> Current {
    match attributes.get("KmsMasterKeyId").map(|k| k.trim()).filter(|k| !k.is_empty()) {
        Some(key) => Current::Kms(key.to_string()),
        None if attributes.get("SqsManagedSseEnabled").is_some_and(|v| v.eq_ignore_ascii_case("true")) => Current::SqsManaged,
        None => Current::None,
    }
}

impl Current {
    fn describe(&self) -> String {
        match self {
            Current::None => "no encryption".into(),
            Current::SqsManaged => "SSE-SQS".into(),
            Current::Kms(key) => format!("SSE-KMS with {key}"),
        }
    }
}

/// What the next turn does, from what was observed: pure, table-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Done,
    EnableSqsManaged,
    SetKey,
}

/// `kms`: SSE-KMS asked for; `requested`: the `KmsKeyId` parameter, if given; `key_matches`:
/// whether the queue's key is the requested one (decided by the caller, only when both exist).
fn next(current: &Current, kms: bool, requested: Option<&str>, key_matches: bool) -> Next {
    match (current, kms) {
        // Any encryption satisfies SSE-SQS; a KMS queue is never weakened to SQS owned keys.
        (Current::SqsManaged | Current::Kms(_), false) => Next::Done,
        (Current::None, false) => Next::EnableSqsManaged,
        (Current::Kms(_), true) if requested.is_none() || key_matches => Next::Done,
        (_, true) => Next::SetKey,
    }
}

async fn queue_attributes(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Option<HashMap<String, String>>> {
    let sent = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::KmsMasterKeyId)
        .attribute_names(QueueAttributeName::SqsManagedSseEnabled)
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await;
    match sent {
        Ok(out) => Ok(Some(out.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect())),
        Err(e) => {
            let err = aws_error("sqs:GetQueueAttributes", queue_url, e);
            if is_missing_queue(err.aws_code()) { Ok(None) } else { Err(err) }
        }
    }
}

/// Config reports a queue by its URL: `<scheme>://<host>/<account>/<name>`.
fn is_queue_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")) else { return false };
    let parts: Vec<&str> = rest.split('/').collect();
    parts.len() == 3 && !parts[0].is_empty() && parts[1].len() == 12 && parts[1].chars().all(|c| c.is_ascii_digit()) && !parts[2].is_empty()
}

/// SQS answers a missing queue with `QueueDoesNotExist` (JSON protocol) or, in older and
/// emulated endpoints, `AWS.SimpleQueueService.NonExistentQueue`.
fn is_missing_queue(code: Option<&str>) -> bool {
    matches!(code, Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue"))
}

pub struct SqsEncryptQueue;

#[async_trait]
impl Fix for SqsEncryptQueue {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let queue = req.resource_id.as_str();
        if !is_queue_url(queue) {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "ResourceId {queue:.256} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>, the Config resource id of a queue). Nothing was changed."
                ),
            ));
        }
        let kms_wanted = req.params.text(ALGORITHM_PARAM) == Some(SSE_KMS);
        let requested = req.params.text(KMS_KEY_PARAM);
        if !kms_wanted && requested.is_some() {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("KmsKeyId is used only with SSEAlgorithm aws:kms (SSEAlgorithm is SQS); nothing was changed on queue {queue}."),
            ));
        }
        let key = requested.unwrap_or(SQS_MANAGED_KEY);
        let reuse = req.params.integer(REUSE_PARAM).unwrap_or(300);
        let force = req.params.bool(FORCE_PARAM);
        let sqs = ctx.client(aws_sdk_sqs::Client::new);
        let Some(attributes) = queue_attributes(&sqs, queue).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("Queue {queue} does not exist (deleted since it was evaluated); nothing to do."),
            ));
        };
        let now = current(&attributes);
        let matches = match (&now, requested) {
            (Current::Kms(have), Some(want)) if kms_wanted => same_key(&ctx.kms, have, want, SQS_MANAGED_KEY).await?,
            _ => false,
        };
        let step = next(&now, kms_wanted, requested, matches);
        if step == Next::Done {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("Queue {queue} is encrypted at rest ({}, read back from SQS); nothing was changed.", now.describe()),
            ));
        }
        let mut forced_note = "";
        if step == Next::SetKey {
            if let Some(problem) = key_problem(&ctx.kms, key, SQS_MANAGED_KEY, "SQS").await? {
                return Ok(FixOutcome::failed(&SPEC, req, problem));
            }
            let kms = ctx.client(atrest::clients::kms);
            let switch = Switch {
                resource: &format!("queue {queue}"),
                resource_policy: attributes.get("Policy").map(String::as_str),
                publish_action: SQS_SEND_ACTION,
                key,
                managed_alias: SQS_MANAGED_KEY,
            };
            match publisher_refusal(&kms, &ctx.kms, &switch).await? {
                Some(refusal) if !force => return Ok(FixOutcome::failed(&SPEC, req, refusal)),
                Some(_) => {
                    forced_note = " Force=true: AWS service publishers named in the queue policy cannot use this key; their messages fail until the key policy allows them.";
                }
                None => {}
            }
        }
        let target = match step {
            Next::SetKey => format!("SSE-KMS with {key} (data keys reused for {reuse} s)"),
            _ => "SSE-SQS".to_string(),
        };
        let change = format!("queue {queue}: {} -> {target}", now.describe());
        if req.dry_run {
            return Ok(FixOutcome::succeeded(&SPEC, req, format!("Dry run: would encrypt {change}. Nothing was changed.{forced_note}"))
                .with_change(change));
        }
        let set = match step {
            Next::SetKey => sqs
                .set_queue_attributes()
                .queue_url(queue)
                .attributes(QueueAttributeName::KmsMasterKeyId, key)
                .attributes(QueueAttributeName::KmsDataKeyReusePeriodSeconds, reuse.to_string()),
            _ => sqs.set_queue_attributes().queue_url(queue).attributes(QueueAttributeName::SqsManagedSseEnabled, "true"),
        };
        if let Err(e) = set.send().await {
            let err = aws_error("sqs:SetQueueAttributes", queue, e);
            return match err.aws_code() {
                Some(code) if is_missing_queue(Some(code)) => {
                    Ok(FixOutcome::failed(&SPEC, req, format!("Queue {queue} was deleted; nothing was changed.")))
                }
                Some(
                    code @ ("InvalidAttributeValue"
                    | "InvalidAttributeName"
                    | "KmsAccessDenied"
                    | "KmsNotFound"
                    | "KmsDisabled"
                    | "KmsInvalidState"),
                ) => Ok(FixOutcome::failed(
                    &SPEC,
                    req,
                    format!("SQS refused {target} for queue {queue} ({code}): {err}. Nothing was changed."),
                )),
                _ => Err(err),
            };
        }
        // Read back: a stale read only delays success to the next turn, which changes nothing.
        let Some(after) = queue_attributes(&sqs, queue).await? else {
            return Ok(FixOutcome::failed(&SPEC, req, format!("Queue {queue} was deleted while it was being encrypted.")));
        };
        let after = current(&after);
        let done = match (&step, &after) {
            (Next::SetKey, Current::Kms(now)) => now == key,
            (Next::EnableSqsManaged, Current::SqsManaged | Current::Kms(_)) => true,
            _ => false,
        };
        if done {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Queue {queue} now encrypts messages at rest with {target} (read back from SQS); messages already queued stay \
                     readable and nothing else was changed.{forced_note}"
                ),
            )
            .with_change(change));
        }
        Ok(FixOutcome::in_progress(&SPEC, req, format!("Set {target} on queue {queue}; waiting to read it back from SQS."))
            .with_change(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_table() {
        let kms = |k: &str| Current::Kms(k.into());
        // (case, observed, SSE-KMS asked, KmsKeyId, the keys match, expected)
        type Case<'a> = (&'a str, Current, bool, Option<&'a str>, bool, Next);
        let cases: Vec<Case> = vec![
            ("unencrypted, SSE-SQS asked", Current::None, false, None, false, Next::EnableSqsManaged),
            ("SSE-SQS already", Current::SqsManaged, false, None, false, Next::Done),
            ("a KMS queue is not weakened to SSE-SQS", kms("alias/app"), false, None, false, Next::Done),
            ("unencrypted, KMS asked", Current::None, true, None, false, Next::SetKey),
            ("SSE-SQS, KMS asked", Current::SqsManaged, true, Some("alias/app"), false, Next::SetKey),
            ("any key when none is named", kms("alias/other"), true, None, false, Next::Done),
            ("the key asked for", kms("alias/app"), true, Some("alias/app"), true, Next::Done),
            ("another key than asked", kms("alias/aws/sqs"), true, Some("alias/app"), false, Next::SetKey),
        ];
        for (name, observed, kms_wanted, requested, matches, expected) in cases {
            assert_eq!(next(&observed, kms_wanted, requested, matches), expected, "{name}");
        }
    }

    #[test]
    fn only_queue_urls_are_resource_ids() {
        assert!(is_queue_url("https://sqs.us-east-1.amazonaws.com/123456789012/orders"));
        assert!(is_queue_url("http://127.0.0.1:5000/123456789012/orders.fifo"));
        for bad in
            ["orders", "https://sqs.us-east-1.amazonaws.com/orders", "arn:aws:sqs:us-east-1:123456789012:orders", "https://x/123456789012/"]
        {
            assert!(!is_queue_url(bad), "{bad}");
        }
    }

    #[test]
    fn a_key_wins_over_sqs_managed_sse() {
        let attributes: HashMap<String, String> =
            [("KmsMasterKeyId".to_string(), "alias/app".to_string()), ("SqsManagedSseEnabled".to_string(), "true".to_string())].into();
        assert_eq!(current(&attributes), Current::Kms("alias/app".into()));
        assert_eq!(current(&[("SqsManagedSseEnabled".to_string(), "true".to_string())].into()), Current::SqsManaged);
        assert_eq!(current(&HashMap::new()), Current::None);
    }
}
