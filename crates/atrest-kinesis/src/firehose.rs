//! A Firehose delivery stream as the rule and the fix see it: its source, its server-side
//! encryption, read with `DescribeDeliveryStream` and kept in a configuration item.
//!
//! Where data rests depends on the source (Firehose developer guide, Data protection):
//! - Direct PUT (and other sources that write into Firehose): Firehose buffers the records, so
//!   its own server-side encryption (StartDeliveryStreamEncryption) is what protects them.
//! - A Kinesis data stream: Firehose stores nothing at rest; the records rest in the source
//!   stream, whose encryption protects them. StartDeliveryStreamEncryption is refused ("You can
//!   only enable SSE for a delivery stream that uses DirectPut as its source").
//! - An Amazon MSK cluster: the records rest in the cluster, and Amazon MSK always encrypts data
//!   at rest.

use atrest::error::{Error, Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_str};
use aws_sdk_firehose::error::ProvideErrorMetadata;
use serde_json::{Value, json};

/// The Config resource type of a delivery stream; its Config resource id is the stream name.
pub const DELIVERY_STREAM_RESOURCE_TYPE: &str = "AWS::KinesisFirehose::DeliveryStream";

/// ListDeliveryStreams returns at most this many names per call (AWS's maximum is 10000).
const LIST_PAGE_SIZE: i32 = 100;

/// Where a delivery stream's records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    DirectPut,
    /// `KinesisStreamAsSource`: the data stream's ARN.
    KinesisStream {
        arn: String,
    },
    /// `MSKAsSource`: the cluster's ARN, when reported.
    Msk {
        cluster_arn: Option<String>,
    },
    /// Any other type (DatabaseAsSource, or one added after this was written): Firehose holds
    /// the records, so its own encryption decides, as for Direct PUT.
    Other(String),
}

/// `DeliveryStreamEncryptionConfiguration` as DescribeDeliveryStream reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encryption {
    /// ENABLED, ENABLING, ENABLING_FAILED, DISABLED, DISABLING, DISABLING_FAILED.
    pub status: Option<String>,
    /// AWS_OWNED_CMK or CUSTOMER_MANAGED_CMK.
    pub key_type: Option<String>,
    pub key_arn: Option<String>,
    /// `FailureDescription.Details` of a failed enable or disable.
    pub failure: Option<String>,
}

impl Encryption {
    pub fn is_enabled(&self) -> bool {
        self.status.as_deref() == Some("ENABLED")
    }

    /// Plain words for the key: "an AWS owned key" or "customer managed key <arn>".
    pub fn describe_key(&self) -> String {
        match (self.key_type.as_deref(), self.key_arn.as_deref()) {
            (Some("CUSTOMER_MANAGED_CMK"), Some(arn)) => format!("customer managed key {arn}"),
            (Some("CUSTOMER_MANAGED_CMK"), None) => "a customer managed key".into(),
            _ => "an AWS owned key".into(),
        }
    }
}

/// What DescribeDeliveryStream says about a delivery stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStreamState {
    pub name: String,
    pub arn: String,
    /// CREATING, CREATING_FAILED, DELETING, DELETING_FAILED or ACTIVE.
    pub status: String,
    pub source: Source,
    pub encryption: Encryption,
}

/// The stream's source from `DeliveryStreamType` and `Source`.
fn source_of(stream_type: &str, source: &Value) -> Source {
    match stream_type {
        "DirectPut" => Source::DirectPut,
        "KinesisStreamAsSource" => {
            let arn = field(source, "KinesisStreamSourceDescription").and_then(|d| field_str(d, "KinesisStreamARN"));
            match arn {
                Some(arn) => Source::KinesisStream { arn: arn.to_string() },
                // Without the ARN there is no stream to read: judged as Firehose's own encryption.
                None => Source::Other(stream_type.to_string()),
            }
        }
        "MSKAsSource" => Source::Msk {
            cluster_arn: field(source, "MSKSourceDescription").and_then(|d| field_str(d, "MSKClusterARN")).map(str::to_string),
        },
        other => Source::Other(other.to_string()),
    }
}

impl DeliveryStreamState {
    /// The state a configuration item built by [`delivery_stream_item`] carries; `None` when
    /// the item has no configuration to read.
    pub fn from_configuration(configuration: &Value) -> Option<DeliveryStreamState> {
        let name = field_str(configuration, "DeliveryStreamName")?.to_string();
        let text = |v: &Value, k: &str| field_str(v, k).map(str::to_string);
        let encryption = field(configuration, "DeliveryStreamEncryptionConfiguration")
            .map(|e| Encryption {
                status: text(e, "Status"),
                key_type: text(e, "KeyType"),
                key_arn: text(e, "KeyARN"),
                failure: field(e, "FailureDescription").and_then(|f| text(f, "Details")),
            })
            .unwrap_or_default();
        Some(DeliveryStreamState {
            arn: text(configuration, "DeliveryStreamARN").unwrap_or_default(),
            status: text(configuration, "DeliveryStreamStatus").unwrap_or_default(),
            source: source_of(
                field_str(configuration, "DeliveryStreamType").unwrap_or("DirectPut"),
                field(configuration, "Source").unwrap_or(&Value::Null),
            ),
            encryption,
            name,
        })
    }

    fn configuration(&self) -> Value {
        let (stream_type, source) = match &self.source {
            Source::DirectPut => ("DirectPut".to_string(), Value::Null),
            Source::KinesisStream { arn } => {
                ("KinesisStreamAsSource".to_string(), json!({"KinesisStreamSourceDescription": {"KinesisStreamARN": arn}}))
            }
            Source::Msk { cluster_arn } => ("MSKAsSource".to_string(), json!({"MSKSourceDescription": {"MSKClusterARN": cluster_arn}})),
            Source::Other(t) => (t.clone(), Value::Null),
        };
        let e = &self.encryption;
        json!({
            "DeliveryStreamName": self.name,
            "DeliveryStreamARN": self.arn,
            "DeliveryStreamStatus": self.status,
            "DeliveryStreamType": stream_type,
            "Source": source,
            "DeliveryStreamEncryptionConfiguration": {
                "Status": e.status, "KeyType": e.key_type, "KeyARN": e.key_arn,
                "FailureDescription": e.failure.as_ref().map(|d| json!({"Details": d})),
            },
        })
    }
}

/// Reads a delivery stream; `None` when it does not exist.
pub async fn describe_delivery_stream(firehose: &aws_sdk_firehose::Client, name: &str) -> Result<Option<DeliveryStreamState>> {
    // Limit 1: the destinations are not needed, only the stream's own description.
    let out = match firehose.describe_delivery_stream().delivery_stream_name(name).limit(1).send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("firehose:DescribeDeliveryStream", name, e)),
    };
    let d = out
        .delivery_stream_description()
        .ok_or_else(|| Error::Internal(format!("DescribeDeliveryStream {name} returned no description")))?;
    let source = match d.source() {
        Some(s) => json!({
            "KinesisStreamSourceDescription": s.kinesis_stream_source_description().map(|k| json!({"KinesisStreamARN": k.kinesis_stream_arn()})),
            "MSKSourceDescription": s.msk_source_description().map(|m| json!({"MSKClusterARN": m.msk_cluster_arn()})),
        }),
        None => Value::Null,
    };
    let encryption = d
        .delivery_stream_encryption_configuration()
        .map(|e| Encryption {
            status: e.status().map(|s| s.as_str().to_string()),
            key_type: e.key_type().map(|t| t.as_str().to_string()),
            key_arn: e.key_arn().map(str::to_string),
            failure: e.failure_description().map(|f| f.details().to_string()),
        })
        .unwrap_or_default();
    Ok(Some(DeliveryStreamState {
        name: d.delivery_stream_name().to_string(),
        arn: d.delivery_stream_arn().to_string(),
        status: d.delivery_stream_status().as_str().to_string(),
        source: source_of(d.delivery_stream_type().as_str(), &source),
        encryption,
    }))
}

/// A delivery stream as a configuration item (DescribeDeliveryStream's field names).
pub fn delivery_stream_item(state: &DeliveryStreamState) -> ConfigurationItem {
    let mut item = ConfigurationItem::live(DELIVERY_STREAM_RESOURCE_TYPE, state.name.clone(), state.configuration());
    item.resource_name = Some(state.name.clone());
    item.arn = Some(state.arn.clone()).filter(|a| !a.is_empty());
    item
}

/// Every delivery stream name in the client's region, paged with
/// `ExclusiveStartDeliveryStreamName` while `HasMoreDeliveryStreams` says so.
pub async fn list_delivery_stream_names(firehose: &aws_sdk_firehose::Client) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    loop {
        let page = firehose
            .list_delivery_streams()
            .limit(LIST_PAGE_SIZE)
            .set_exclusive_start_delivery_stream_name(names.last().cloned())
            .send()
            .await
            .map_err(|e| aws_error("firehose:ListDeliveryStreams", "the region's delivery streams", e))?;
        let before = names.len();
        names.extend(page.delivery_stream_names().iter().cloned());
        // A page that adds nothing cannot move the cursor: stop rather than loop forever.
        if !page.has_more_delivery_streams() || names.len() == before {
            break;
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_firehose::operation::list_delivery_streams::ListDeliveryStreamsOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[test]
    fn every_source_survives_the_item() {
        let encryption = Encryption {
            status: Some("ENABLING_FAILED".into()),
            key_type: Some("CUSTOMER_MANAGED_CMK".into()),
            key_arn: Some("arn:aws:kms:us-east-1:123456789012:key/k".into()),
            failure: Some("KMS key disabled".into()),
        };
        for source in [
            Source::DirectPut,
            Source::KinesisStream { arn: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into() },
            Source::Msk { cluster_arn: Some("arn:aws:kafka:us-east-1:123456789012:cluster/c/1".into()) },
            Source::Other("DatabaseAsSource".into()),
        ] {
            let state = DeliveryStreamState {
                name: "d".into(),
                arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/d".into(),
                status: "ACTIVE".into(),
                source,
                encryption: encryption.clone(),
            };
            let item = delivery_stream_item(&state);
            assert_eq!(item.resource_id, "d");
            assert_eq!(DeliveryStreamState::from_configuration(&item.configuration), Some(state));
        }
        assert_eq!(DeliveryStreamState::from_configuration(&json!({})), None);
    }

    #[tokio::test]
    async fn delivery_streams_are_listed_after_the_last_name() {
        let first = mock!(aws_sdk_firehose::Client::list_delivery_streams)
            .match_requests(|r| r.exclusive_start_delivery_stream_name().is_none())
            .then_output(|| {
                ListDeliveryStreamsOutput::builder()
                    .delivery_stream_names("a")
                    .delivery_stream_names("b")
                    .has_more_delivery_streams(true)
                    .build()
                    .unwrap()
            });
        let second = mock!(aws_sdk_firehose::Client::list_delivery_streams)
            .match_requests(|r| r.exclusive_start_delivery_stream_name() == Some("b"))
            .then_output(|| {
                ListDeliveryStreamsOutput::builder().delivery_stream_names("c").has_more_delivery_streams(false).build().unwrap()
            });
        let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&first, &second]);
        assert_eq!(list_delivery_stream_names(&client).await.unwrap(), vec!["a", "b", "c"]);
    }
}
