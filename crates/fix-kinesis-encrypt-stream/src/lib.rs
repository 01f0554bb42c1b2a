//! `fix-kinesis-encrypt-stream`: turn on server-side encryption of a Kinesis data stream and
//! verify it.
//!
//! Reconciler turns: read the stream (DescribeStreamSummary) → CREATING or UPDATING: wait
//! (`InProgress`); DELETING or gone: `Failed` → already encrypted as asked: `Succeeded` without
//! touching it → otherwise StartStreamEncryption (KMS; the AWS managed key `alias/aws/kinesis`
//! unless `KmsKeyId` names another) → Kinesis applies it asynchronously (UPDATING, then ACTIVE):
//! `InProgress` until the stream reads back encrypted with the key asked for.
//!
//! Non-disruptive: producers and consumers keep working while the stream is UPDATING, and
//! records written before are not rewritten (Kinesis encrypts new records only). Producers using
//! a customer managed key need kms:GenerateDataKey on it, consumers kms:Decrypt: the success
//! message says so.

use atrest::error::{Error, ErrorClass, Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_kinesis::{KINESIS_MANAGED_KEY, STREAM_RESOURCE_TYPE, StreamEncryption, StreamState, describe_stream};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::EncryptionType;

pub static SPEC: FixSpec = FixSpec {
    name: "kinesis-encrypt-stream",
    description: "Turn on server-side encryption of a Kinesis data stream with a KMS key (default alias/aws/kinesis) and verify it.",
    resource_types: &[STREAM_RESOURCE_TYPE],
    parameters: &[ParamSpec {
        name: KMS_KEY_PARAM,
        kind: ParamKind::KmsKey,
        default: "",
        description: "Key id, key ARN, alias or alias ARN. Empty: the AWS managed key alias/aws/kinesis, and a stream already encrypted with any key is left as it is.",
    }],
    disruptive: false,
};

/// The KMS errors StartStreamEncryption answers when the key cannot be used (Kinesis API
/// Reference, StartStreamEncryption, Errors): the operator's key, not a failed call.
const KEY_UNUSABLE_CODES: &[&str] =
    &["KMSNotFoundException", "KMSDisabledException", "KMSInvalidStateException", "KMSAccessDeniedException", "KMSOptInRequired"];

/// What the next turn does, from what was observed: pure, table-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// The stream cannot take the change now (CREATING, UPDATING): look again later.
    Wait(String),
    /// The stream is being deleted: nothing to encrypt.
    Stop(String),
    /// Already encrypted as asked.
    Done,
    /// Start encryption with this key.
    Encrypt,
}

/// `requested`: the `KmsKeyId` parameter, if given. `key_matches`: whether the stream's key is
/// the requested one (decided by the caller with `atrest::kms`, only when both exist).
fn next(stream: &StreamState, requested: Option<&str>, key_matches: bool) -> Next {
    match stream.status.as_str() {
        "DELETING" => return Next::Stop(format!("Data stream {} is being deleted; nothing was changed.", stream.name)),
        "CREATING" => return Next::Wait(format!("Data stream {} is being created; waiting for it to become ACTIVE.", stream.name)),
        "UPDATING" => {
            return Next::Wait(format!(
                "Data stream {} is UPDATING (Kinesis is applying a change); waiting for it to become ACTIVE.",
                stream.name
            ));
        }
        _ => {}
    }
    match (&stream.encryption, requested) {
        (StreamEncryption::Kms { .. }, None) => Next::Done,
        (StreamEncryption::Kms { key_id: Some(_) }, Some(_)) if key_matches => Next::Done,
        _ => Next::Encrypt,
    }
}

pub struct KinesisEncryptStream;

impl KinesisEncryptStream {
    /// Whether the stream's key is the one asked for. The same text needs no call (Kinesis
    /// reports the key as it was given); otherwise both are resolved to key ARNs.
    async fn key_matches(&self, ctx: &FixContext, stream: &StreamState, requested: Option<&str>) -> Result<bool> {
        match (&stream.encryption, requested) {
            (StreamEncryption::Kms { key_id: Some(have) }, Some(want)) if stream.status == "ACTIVE" => {
                if have == want {
                    return Ok(true);
                }
                ctx.kms.is_one_of(have, &[want.to_string()]).await
            }
            _ => Ok(false),
        }
    }

    async fn start_encryption(&self, kinesis: &aws_sdk_kinesis::Client, stream: &str, key: &str) -> Result<Option<String>> {
        let sent = kinesis.start_stream_encryption().stream_name(stream).encryption_type(EncryptionType::Kms).key_id(key).send().await;
        let Err(e) = sent else { return Ok(None) };
        let code = e.code().unwrap_or_default().to_string();
        let message = e.message().unwrap_or_default().to_string();
        if KEY_UNUSABLE_CODES.contains(&code.as_str()) {
            return Ok(Some(format!(
                "Kinesis cannot use KMS key {key} for data stream {stream} ({code}: {message}). Check that the key exists, is enabled, \
                 is a symmetric encryption key in this Region and that its key policy lets this role use it. Nothing was changed."
            )));
        }
        if code == "KMSThrottlingException" {
            return Err(Error::Aws {
                action: "kinesis:StartStreamEncryption",
                resource: stream.to_string(),
                code,
                message,
                class: ErrorClass::Transient,
            });
        }
        Err(aws_error("kinesis:StartStreamEncryption", stream, e))
    }
}

#[async_trait]
impl Fix for KinesisEncryptStream {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let name = req.resource_id.as_str();
        let requested = req.params.text(KMS_KEY_PARAM);
        let key = requested.unwrap_or(KINESIS_MANAGED_KEY);
        let kinesis = ctx.client(aws_sdk_kinesis::Client::new);
        let Some(stream) = describe_stream(&kinesis, name).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("Data stream {name} does not exist (deleted since it was evaluated); nothing to do."),
            ));
        };
        let matches = self.key_matches(ctx, &stream, requested).await?;
        match next(&stream, requested, matches) {
            Next::Stop(message) => return Ok(FixOutcome::failed(&SPEC, req, message)),
            Next::Wait(message) => return Ok(FixOutcome::in_progress(&SPEC, req, message)),
            Next::Done => {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!(
                        "Data stream {name} is encrypted at rest ({}, read back from Kinesis). New records are encrypted; \
                         nothing else was changed.",
                        stream.encryption.describe()
                    ),
                ));
            }
            Next::Encrypt => {}
        }
        let change = format!("server-side encryption of data stream {name}: {} -> KMS key {key}", stream.encryption.describe());
        if req.dry_run {
            return Ok(
                FixOutcome::succeeded(&SPEC, req, format!("Dry run: would turn on {change}. Nothing was changed.")).with_change(change)
            );
        }
        match self.start_encryption(&kinesis, name, key).await {
            Ok(None) => {}
            Ok(Some(key_problem)) => return Ok(FixOutcome::failed(&SPEC, req, key_problem)),
            // Another change got there first (the stream is CREATING or UPDATING): look again.
            Err(e) if e.aws_code() == Some("ResourceInUseException") => {
                return Ok(FixOutcome::in_progress(&SPEC, req, format!("Data stream {name} is busy with another change; will try again.")));
            }
            Err(e) if e.aws_code() == Some("ResourceNotFoundException") => {
                return Ok(FixOutcome::failed(&SPEC, req, format!("Data stream {name} was deleted; nothing was changed.")));
            }
            Err(e) => return Err(e),
        }
        let user_key_note =
            if requested.is_some() { " Producers need kms:GenerateDataKey and consumers kms:Decrypt on the key." } else { "" };
        // Read back: Kinesis applies the change asynchronously (UPDATING, then ACTIVE), so the
        // usual answer is InProgress and a later turn finds it done.
        let after = describe_stream(&kinesis, name).await?;
        let done = match &after {
            Some(now) => next(now, requested, self.key_matches(ctx, now, requested).await?) == Next::Done,
            None => false,
        };
        if done {
            return Ok(FixOutcome::succeeded(
                &SPEC,
                req,
                format!("Data stream {name} now encrypts new records with KMS key {key} (read back from Kinesis); nothing else was changed.{user_key_note}"),
            )
            .with_change(change));
        }
        Ok(FixOutcome::in_progress(
            &SPEC,
            req,
            format!("Started {change}; Kinesis applies it while the stream is UPDATING (reads and writes continue).{user_key_note}"),
        )
        .with_change(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(status: &str, encryption: StreamEncryption) -> StreamState {
        StreamState {
            name: "orders".into(),
            arn: "arn:aws:kinesis:us-east-1:123456789012:stream/orders".into(),
            status: status.into(),
            encryption,
        }
    }

    fn kms(key: &str) -> StreamEncryption {
        StreamEncryption::Kms { key_id: Some(key.into()) }
    }

    #[test]
    fn next_table() {
        let cases: Vec<(&str, StreamState, Option<&str>, bool, &str)> = vec![
            ("unencrypted, default key", stream("ACTIVE", StreamEncryption::None), None, false, "encrypt"),
            ("unencrypted, given key", stream("ACTIVE", StreamEncryption::None), Some("alias/app"), false, "encrypt"),
            ("any key is enough by default", stream("ACTIVE", kms("alias/other")), None, false, "done"),
            ("the key asked for", stream("ACTIVE", kms("alias/app")), Some("alias/app"), true, "done"),
            ("another key than asked", stream("ACTIVE", kms("alias/aws/kinesis")), Some("alias/app"), false, "encrypt"),
            ("being created", stream("CREATING", StreamEncryption::None), None, false, "wait"),
            ("our change being applied", stream("UPDATING", kms("alias/aws/kinesis")), None, false, "wait"),
            ("being deleted", stream("DELETING", StreamEncryption::None), None, false, "stop"),
        ];
        for (name, observed, requested, matches, expected) in cases {
            let got = match next(&observed, requested, matches) {
                Next::Wait(m) => {
                    assert!(m.contains("orders"), "{name}: {m}");
                    "wait"
                }
                Next::Stop(m) => {
                    assert!(m.contains("orders"), "{name}: {m}");
                    "stop"
                }
                Next::Done => "done",
                Next::Encrypt => "encrypt",
            };
            assert_eq!(got, expected, "{name}");
        }
    }
}
