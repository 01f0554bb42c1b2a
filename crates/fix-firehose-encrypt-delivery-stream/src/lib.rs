//! `fix-firehose-encrypt-delivery-stream`: turn on server-side encryption of a Firehose delivery
//! stream and verify it.
//!
//! Reconciler turns: read the delivery stream (DescribeDeliveryStream) →
//! - fed by a Kinesis data stream: Firehose stores nothing at rest and refuses
//!   StartDeliveryStreamEncryption for such streams, so nothing is changed; the answer names the
//!   source stream, which is what to encrypt (kinesis-encrypt-stream);
//! - fed by MSK: nothing to do (Amazon MSK always encrypts at rest);
//! - Direct PUT: already encrypted as asked → `Succeeded` without touching it; ENABLING →
//!   `InProgress`; otherwise StartDeliveryStreamEncryption (an AWS owned key, or the customer
//!   managed key `KmsKeyId` names, resolved to its key ARN as Firehose requires) → read back:
//!   `InProgress` while ENABLING, `Failed` quoting Firehose's FailureDescription on
//!   ENABLING_FAILED.
//!
//! Firehose allows 25 Start/StopDeliveryStreamEncryption calls per stream per 24 hours, so the
//! call is never repeated while a change is being applied, and a failed one is not retried with
//! the same key (the operator fixes the cause first; the message says how).

use atrest::error::{Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use atrest_kinesis::firehose::{DELIVERY_STREAM_RESOURCE_TYPE, DeliveryStreamState, Encryption, Source, describe_delivery_stream};
use atrest_kinesis::{StreamEncryption, describe_stream, stream_name_from_arn};
use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::types::{DeliveryStreamEncryptionConfigurationInput, KeyType};

pub static SPEC: FixSpec = FixSpec {
    name: "firehose-encrypt-delivery-stream",
    description: "Turn on server-side encryption of a Direct PUT Firehose delivery stream (AWS owned or customer managed key) and verify it.",
    resource_types: &[DELIVERY_STREAM_RESOURCE_TYPE],
    parameters: &[ParamSpec {
        name: KMS_KEY_PARAM,
        kind: ParamKind::KmsKey,
        default: "",
        description: "Customer managed key (key id, key ARN, alias or alias ARN; resolved to its key ARN). Empty: an AWS owned key, and a stream already encrypted with any key is left as it is.",
    }],
    disruptive: false,
};

/// The key the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Desired {
    AwsOwned,
    Customer { key_arn: String },
}

impl Desired {
    fn describe(&self) -> String {
        match self {
            Desired::AwsOwned => "an AWS owned key".into(),
            Desired::Customer { key_arn } => format!("customer managed key {key_arn}"),
        }
    }

    fn input(&self) -> Result<DeliveryStreamEncryptionConfigurationInput> {
        let builder = match self {
            Desired::AwsOwned => DeliveryStreamEncryptionConfigurationInput::builder().key_type(KeyType::AwsOwnedCmk),
            Desired::Customer { key_arn } => {
                DeliveryStreamEncryptionConfigurationInput::builder().key_type(KeyType::CustomerManagedCmk).key_arn(key_arn)
            }
        };
        builder.build().map_err(|e| atrest::Error::Internal(e.to_string()))
    }
}

/// What the next turn does with a Direct PUT stream: pure, table-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Wait(String),
    Stop(String),
    Done,
    Encrypt,
}

/// Whether the stream's current encryption is the desired one (both sides key ARNs, so text
/// comparison is exact).
fn is_desired(e: &Encryption, desired: &Desired) -> bool {
    match desired {
        Desired::AwsOwned => true,
        Desired::Customer { key_arn } => e.key_type.as_deref() == Some("CUSTOMER_MANAGED_CMK") && e.key_arn.as_deref() == Some(key_arn),
    }
}

fn next(stream: &DeliveryStreamState, desired: &Desired) -> Next {
    let name = &stream.name;
    match stream.status.as_str() {
        "CREATING" => return Next::Wait(format!("Delivery stream {name} is being created; waiting for it to become ACTIVE.")),
        "DELETING" => return Next::Stop(format!("Delivery stream {name} is being deleted; nothing was changed.")),
        failed @ ("CREATING_FAILED" | "DELETING_FAILED") => {
            return Next::Stop(format!("Delivery stream {name} is {failed}; nothing was changed."));
        }
        _ => {}
    }
    let e = &stream.encryption;
    match e.status.as_deref() {
        Some("ENABLED") if is_desired(e, desired) => Next::Done,
        Some("ENABLING") => Next::Wait(format!("Server-side encryption of delivery stream {name} is being turned on (ENABLING).")),
        Some("DISABLING") => {
            Next::Wait(format!("Server-side encryption of delivery stream {name} is being turned off (DISABLING); waiting."))
        }
        Some(failed @ ("ENABLING_FAILED" | "DISABLING_FAILED")) if desired_matches_failed(e, desired) => Next::Stop(format!(
            "Server-side encryption of delivery stream {name} is {failed}: {}. Fix the cause (the key's state and key policy), then turn it \
             on again (StartDeliveryStreamEncryption) or run this remediation with another key. Nothing was changed.",
            e.failure.as_deref().unwrap_or("Firehose gave no failure description")
        )),
        _ => Next::Encrypt,
    }
}

/// A failed change with the very key asked for would fail again the same way.
fn desired_matches_failed(e: &Encryption, desired: &Desired) -> bool {
    match desired {
        Desired::AwsOwned => e.key_type.as_deref() != Some("CUSTOMER_MANAGED_CMK"),
        Desired::Customer { key_arn } => e.key_arn.as_deref() == Some(key_arn),
    }
}

pub struct FirehoseEncryptDeliveryStream;

impl FirehoseEncryptDeliveryStream {
    /// A stream fed by a Kinesis data stream: nothing to change here; say what to encrypt.
    async fn kinesis_source(&self, ctx: &FixContext, req: &FixRequest, name: &str, source_arn: &str) -> Result<FixOutcome> {
        let source_name = stream_name_from_arn(source_arn).unwrap_or(source_arn);
        let source = describe_stream(&ctx.client(aws_sdk_kinesis::Client::new), source_arn).await?;
        Ok(match source.map(|s| s.encryption) {
            Some(StreamEncryption::None) => FixOutcome::failed(
                &SPEC,
                req,
                format!(
                    "Delivery stream {name} reads from Kinesis data stream {source_name} and stores nothing at rest itself; Firehose \
                     encryption only applies to Direct PUT streams. Encrypt the source stream {source_name} (remediation \
                     kinesis-encrypt-stream). Nothing was changed."
                ),
            ),
            Some(encryption) => FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Delivery stream {name} stores nothing at rest; its source, Kinesis data stream {source_name}, has {}. Nothing was changed.",
                    encryption.describe()
                ),
            ),
            None => FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Delivery stream {name} reads from Kinesis data stream {source_name}, which no longer exists: nothing is stored at rest. Nothing was changed."
                ),
            ),
        })
    }

    async fn start(&self, firehose: &aws_sdk_firehose::Client, name: &str, desired: &Desired) -> Result<Option<String>> {
        let sent = firehose
            .start_delivery_stream_encryption()
            .delivery_stream_name(name)
            .delivery_stream_encryption_configuration_input(desired.input()?)
            .send()
            .await;
        let Err(e) = sent else { return Ok(None) };
        let code = e.code().unwrap_or_default().to_string();
        let message = e.message().unwrap_or_default().to_string();
        Ok(Some(match code.as_str() {
            "InvalidKMSResourceException" => format!(
                "Firehose cannot use {} for delivery stream {name} ({code}: {message}). Check that the key is enabled, symmetric, in this \
                 Region and that its key policy lets this role create grants on it. Nothing was changed.",
                desired.describe()
            ),
            // Firehose's 25 start/stop calls per stream per 24 hours: retrying today will not help.
            "LimitExceededException" => format!(
                "Firehose refused to change delivery stream {name}'s encryption ({code}: {message}): at most 25 encryption changes per \
                 stream per 24 hours. Run this remediation again later. Nothing was changed."
            ),
            "InvalidArgumentException" => {
                format!("Firehose refused to encrypt delivery stream {name} ({code}: {message}). Nothing was changed.")
            }
            _ => return Err(aws_error("firehose:StartDeliveryStreamEncryption", name, e)),
        }))
    }
}

#[async_trait]
impl Fix for FirehoseEncryptDeliveryStream {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let name = req.resource_id.as_str();
        let firehose = ctx.client(aws_sdk_firehose::Client::new);
        let Some(stream) = describe_delivery_stream(&firehose, name).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("Delivery stream {name} does not exist (deleted since it was evaluated); nothing to do."),
            ));
        };
        match &stream.source {
            Source::KinesisStream { arn } => return self.kinesis_source(ctx, req, name, arn).await,
            Source::Msk { cluster_arn } => {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!(
                        "Delivery stream {name} stores nothing at rest; its records rest in MSK cluster {}, which Amazon MSK always encrypts. Nothing was changed.",
                        cluster_arn.as_deref().unwrap_or("(unnamed)")
                    ),
                ));
            }
            Source::DirectPut | Source::Other(_) => {}
        }
        // Firehose takes a customer managed key only as a key ARN: aliases and ids are resolved
        // (and the key's existence checked) before anything is changed.
        let desired = match req.params.text(KMS_KEY_PARAM) {
            Some(key) => Desired::Customer { key_arn: ctx.kms.requested_key_arn(key).await? },
            None => Desired::AwsOwned,
        };
        match next(&stream, &desired) {
            Next::Wait(message) => return Ok(FixOutcome::in_progress(&SPEC, req, message)),
            Next::Stop(message) => return Ok(FixOutcome::failed(&SPEC, req, message)),
            Next::Done => {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!(
                        "Delivery stream {name} has server-side encryption with {} (ENABLED, read back from Firehose); nothing else was changed.",
                        stream.encryption.describe_key()
                    ),
                ));
            }
            Next::Encrypt => {}
        }
        let before = match stream.encryption.status.as_deref() {
            Some("ENABLED") => stream.encryption.describe_key(),
            other => format!("none ({})", other.unwrap_or("DISABLED")),
        };
        let change = format!("server-side encryption of delivery stream {name}: {before} -> {}", desired.describe());
        if req.dry_run {
            return Ok(
                FixOutcome::succeeded(&SPEC, req, format!("Dry run: would turn on {change}. Nothing was changed.")).with_change(change)
            );
        }
        match self.start(&firehose, name, &desired).await {
            Ok(None) => {}
            Ok(Some(refused)) => return Ok(FixOutcome::failed(&SPEC, req, refused)),
            Err(e) if e.aws_code() == Some("ResourceInUseException") => {
                return Ok(FixOutcome::in_progress(
                    &SPEC,
                    req,
                    format!("Delivery stream {name} is busy with another change; will try again."),
                ));
            }
            Err(e) if e.aws_code() == Some("ResourceNotFoundException") => {
                return Ok(FixOutcome::failed(&SPEC, req, format!("Delivery stream {name} was deleted; nothing was changed.")));
            }
            Err(e) => return Err(e),
        }
        // Read back: Firehose applies the change asynchronously (ENABLING, then ENABLED).
        let after = describe_delivery_stream(&firehose, name).await?;
        Ok(match after.as_ref().map(|s| (next(s, &desired), &s.encryption)) {
            Some((Next::Done, _)) => FixOutcome::succeeded(
                &SPEC,
                req,
                format!(
                    "Delivery stream {name} now encrypts buffered records with {} (read back from Firehose); nothing else was changed.",
                    desired.describe()
                ),
            ),
            Some((Next::Stop(message), _)) => FixOutcome::failed(&SPEC, req, message),
            _ => {
                FixOutcome::in_progress(&SPEC, req, format!("Started {change}; Firehose applies it (ENABLING) while records keep flowing."))
            }
        }
        .with_change(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn stream(status: &str, sse: Option<&str>, key_type: Option<&str>, key: Option<&str>) -> DeliveryStreamState {
        DeliveryStreamState {
            name: "ingest".into(),
            arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/ingest".into(),
            status: status.into(),
            source: Source::DirectPut,
            encryption: Encryption {
                status: sse.map(str::to_string),
                key_type: key_type.map(str::to_string),
                key_arn: key.map(str::to_string),
                failure: Some("Access denied to the KMS key".into()).filter(|_| sse.is_some_and(|s| s.ends_with("FAILED"))),
            },
        }
    }

    #[test]
    fn next_table() {
        let owned = Desired::AwsOwned;
        let customer = |k: &str| Desired::Customer { key_arn: k.into() };
        let cmk = Some("CUSTOMER_MANAGED_CMK");
        let aws = Some("AWS_OWNED_CMK");
        let cases: Vec<(&str, DeliveryStreamState, Desired, &str)> = vec![
            ("no SSE", stream("ACTIVE", None, None, None), owned.clone(), "encrypt"),
            ("DISABLED", stream("ACTIVE", Some("DISABLED"), None, None), owned.clone(), "encrypt"),
            ("any key is enough by default", stream("ACTIVE", Some("ENABLED"), cmk, Some(KEY)), owned.clone(), "done"),
            ("the key asked for", stream("ACTIVE", Some("ENABLED"), cmk, Some(KEY)), customer(KEY), "done"),
            ("another customer key", stream("ACTIVE", Some("ENABLED"), cmk, Some(OTHER)), customer(KEY), "encrypt"),
            ("AWS owned, customer key asked", stream("ACTIVE", Some("ENABLED"), aws, None), customer(KEY), "encrypt"),
            ("ENABLING is not called again", stream("ACTIVE", Some("ENABLING"), aws, None), owned.clone(), "wait"),
            ("DISABLING", stream("ACTIVE", Some("DISABLING"), aws, None), owned.clone(), "wait"),
            ("failed with the same key", stream("ACTIVE", Some("ENABLING_FAILED"), cmk, Some(KEY)), customer(KEY), "stop"),
            ("failed, another key asked", stream("ACTIVE", Some("ENABLING_FAILED"), cmk, Some(OTHER)), customer(KEY), "encrypt"),
            (
                "failed, AWS owned asked after a customer key",
                stream("ACTIVE", Some("ENABLING_FAILED"), cmk, Some(OTHER)),
                owned.clone(),
                "encrypt",
            ),
            ("disabling failed", stream("ACTIVE", Some("DISABLING_FAILED"), aws, None), owned.clone(), "stop"),
            ("being created", stream("CREATING", None, None, None), owned.clone(), "wait"),
            ("being deleted", stream("DELETING", None, None, None), owned.clone(), "stop"),
            ("creation failed", stream("CREATING_FAILED", None, None, None), owned.clone(), "stop"),
        ];
        for (name, observed, desired, expected) in cases {
            let got = match next(&observed, &desired) {
                Next::Wait(m) => {
                    assert!(m.contains("ingest"), "{name}: {m}");
                    "wait"
                }
                Next::Stop(m) => {
                    assert!(m.contains("ingest"), "{name}: {m}");
                    if observed.encryption.failure.is_some() {
                        assert!(m.contains("Access denied to the KMS key"), "{name}: the failure is quoted: {m}");
                    }
                    "stop"
                }
                Next::Done => "done",
                Next::Encrypt => "encrypt",
            };
            assert_eq!(got, expected, "{name}");
        }
    }
}
