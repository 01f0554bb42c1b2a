//! What the Kinesis Data Streams and Firehose rules and fixes share: a data stream's
//! server-side encryption, read from a Config item or with `DescribeStreamSummary`, and the
//! region's streams listed page by page.
//!
//! The Firehose rule and fix need it because a delivery stream fed by a Kinesis data stream
//! stores nothing at rest itself: the source stream's encryption is what protects its data. A
//! library crate (not the Kinesis rule) holds it, so no Lambda crate depends on another.

pub mod firehose;

use atrest::error::{Error, Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_str};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use serde_json::{Value, json};

/// The Config resource type of a Kinesis data stream; its Config resource id is the stream name.
pub const STREAM_RESOURCE_TYPE: &str = "AWS::Kinesis::Stream";

/// The AWS managed key Kinesis Data Streams encrypts with when no key is named.
pub const KINESIS_MANAGED_KEY: &str = "alias/aws/kinesis";

/// ListStreams returns at most this many names per call (AWS's default is 100, the most 10000).
const LIST_PAGE_SIZE: i32 = 100;

/// A data stream's server-side encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEncryption {
    /// `EncryptionType` NONE, or no `StreamEncryption` at all.
    None,
    /// `EncryptionType` KMS. Kinesis reports the key as it was given (alias, alias ARN, key id
    /// or key ARN), so it is compared with `atrest::kms`, never as text against an ARN.
    Kms { key_id: Option<String> },
}

impl StreamEncryption {
    pub fn is_encrypted(&self) -> bool {
        matches!(self, StreamEncryption::Kms { .. })
    }

    /// Plain words for messages and annotations.
    pub fn describe(&self) -> String {
        match self {
            StreamEncryption::None => "no server-side encryption".into(),
            StreamEncryption::Kms { key_id: Some(key) } => format!("server-side encryption with KMS key {key}"),
            StreamEncryption::Kms { key_id: None } => "server-side encryption with KMS".into(),
        }
    }

    fn from_parts(encryption_type: Option<&str>, key_id: Option<&str>) -> Self {
        match encryption_type {
            Some(t) if t.eq_ignore_ascii_case("KMS") => StreamEncryption::Kms { key_id: key_id.map(str::to_string) },
            _ => StreamEncryption::None,
        }
    }
}

/// The encryption a Config item of an `AWS::Kinesis::Stream` records, `None` when the item
/// carries no configuration to read (a trimmed item: the live state must be fetched).
///
/// Config records the stream in its CloudFormation shape: `StreamEncryption` {`EncryptionType`,
/// `KeyId`} is present only when the stream is encrypted, which is exactly what the managed rule
/// KINESIS_STREAM_ENCRYPTED checks.
pub fn encryption_from_configuration(configuration: &Value) -> Option<StreamEncryption> {
    let object = configuration.as_object().filter(|o| !o.is_empty())?;
    let configuration = Value::Object(object.clone());
    Some(match field(&configuration, "StreamEncryption") {
        Some(encryption) => StreamEncryption::from_parts(field_str(encryption, "EncryptionType"), field_str(encryption, "KeyId")),
        // The API's flat shape (DescribeStreamSummary) is accepted too.
        None => StreamEncryption::from_parts(field_str(&configuration, "EncryptionType"), field_str(&configuration, "KeyId")),
    })
}

/// What `DescribeStreamSummary` says about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub name: String,
    pub arn: String,
    /// CREATING, ACTIVE, UPDATING or DELETING.
    pub status: String,
    pub encryption: StreamEncryption,
}

/// The stream name in a stream ARN (`arn:aws:kinesis:<region>:<account>:stream/<name>`).
pub fn stream_name_from_arn(arn: &str) -> Option<&str> {
    let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    resource.strip_prefix("stream/").filter(|name| !name.is_empty())
}

/// Reads a stream by name or by ARN (a Firehose source is named by ARN); `None` when it does not
/// exist.
pub async fn describe_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<Option<StreamState>> {
    let request = kinesis.describe_stream_summary();
    let request = if stream.starts_with("arn:") { request.stream_arn(stream) } else { request.stream_name(stream) };
    let out = match request.send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("kinesis:DescribeStreamSummary", stream, e)),
    };
    let summary = out
        .stream_description_summary()
        .ok_or_else(|| Error::Internal(format!("DescribeStreamSummary {stream} returned no stream description")))?;
    Ok(Some(StreamState {
        name: summary.stream_name().to_string(),
        arn: summary.stream_arn().to_string(),
        status: summary.stream_status().as_str().to_string(),
        encryption: StreamEncryption::from_parts(summary.encryption_type().map(|t| t.as_str()), summary.key_id()),
    }))
}

/// A stream as a configuration item in Config's shape, for periodic sweeps and oversized items.
pub fn stream_item(state: &StreamState) -> ConfigurationItem {
    let mut configuration = json!({"Name": state.name, "Arn": state.arn, "StreamStatus": state.status});
    if let StreamEncryption::Kms { key_id } = &state.encryption {
        configuration["StreamEncryption"] = json!({"EncryptionType": "KMS", "KeyId": key_id});
    }
    let mut item = ConfigurationItem::live(STREAM_RESOURCE_TYPE, state.name.clone(), configuration);
    item.resource_name = Some(state.name.clone());
    item.arn = Some(state.arn.clone());
    item
}

/// Every data stream name in the client's region.
///
/// ListStreams pages two ways: `NextToken` (current) and `ExclusiveStartStreamName` with
/// `HasMoreStreams` (the original API, which every version still honours). Both are followed,
/// token first, so no stream is missed whichever one an endpoint returns.
pub async fn list_stream_names(kinesis: &aws_sdk_kinesis::Client) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let mut request = kinesis.list_streams().limit(LIST_PAGE_SIZE);
        request = match (&next_token, names.last()) {
            (Some(token), _) => request.next_token(token),
            (None, Some(last)) => request.exclusive_start_stream_name(last),
            (None, None) => request,
        };
        let page = request.send().await.map_err(|e| aws_error("kinesis:ListStreams", "the region's data streams", e))?;
        let before = names.len();
        names.extend(page.stream_names().iter().cloned());
        let more = page.has_more_streams();
        next_token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
        // A page that adds nothing cannot move the cursor: stop rather than loop forever.
        if !more || names.len() == before {
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
    use aws_sdk_kinesis::operation::describe_stream_summary::{DescribeStreamSummaryError, DescribeStreamSummaryOutput};
    use aws_sdk_kinesis::operation::list_streams::ListStreamsOutput;
    use aws_sdk_kinesis::types::{EncryptionType, StreamDescriptionSummary, StreamStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";

    #[test]
    fn encryption_is_read_from_the_item_in_either_shape() {
        let cases = [
            (json!({"Name": "orders"}), Some(StreamEncryption::None)),
            (
                json!({"Name": "orders", "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}}),
                Some(StreamEncryption::Kms { key_id: Some("alias/aws/kinesis".into()) }),
            ),
            (json!({"StreamEncryption": {"EncryptionType": "NONE"}}), Some(StreamEncryption::None)),
            (json!({"streamEncryption": {"encryptionType": "KMS"}}), Some(StreamEncryption::Kms { key_id: None })),
            (json!({"EncryptionType": "KMS", "KeyId": ARN}), Some(StreamEncryption::Kms { key_id: Some(ARN.into()) })),
            (json!({}), None),
            (Value::Null, None),
            (json!("not an object"), None),
        ];
        for (configuration, expected) in cases {
            assert_eq!(encryption_from_configuration(&configuration), expected, "{configuration}");
        }
    }

    #[test]
    fn stream_names_come_from_stream_arns_only() {
        assert_eq!(stream_name_from_arn(ARN), Some("orders"));
        assert_eq!(stream_name_from_arn("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a.b-c_d"), Some("a.b-c_d"));
        for bad in ["orders", "arn:aws:kinesis:us-east-1:123456789012:stream/", "arn:aws:firehose:us-east-1:123456789012:deliverystream/x"]
        {
            assert_eq!(stream_name_from_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_live_item_reads_back_as_the_same_encryption() {
        for encryption in [StreamEncryption::None, StreamEncryption::Kms { key_id: Some("alias/app".into()) }] {
            let state = StreamState { name: "orders".into(), arn: ARN.into(), status: "ACTIVE".into(), encryption: encryption.clone() };
            let item = stream_item(&state);
            assert_eq!(item.resource_id, "orders");
            assert_eq!(encryption_from_configuration(&item.configuration), Some(encryption));
        }
    }

    #[tokio::test]
    async fn a_stream_named_by_arn_is_described_by_arn_and_a_missing_one_is_none() {
        let by_arn =
            mock!(aws_sdk_kinesis::Client::describe_stream_summary).match_requests(|r| r.stream_arn() == Some(ARN)).then_output(|| {
                DescribeStreamSummaryOutput::builder()
                    .stream_description_summary(
                        StreamDescriptionSummary::builder()
                            .stream_name("orders")
                            .stream_arn(ARN)
                            .stream_status(StreamStatus::Updating)
                            .retention_period_hours(24)
                            .stream_creation_timestamp(aws_smithy_types::DateTime::from_secs(0))
                            .set_enhanced_monitoring(Some(vec![]))
                            .open_shard_count(1)
                            .encryption_type(EncryptionType::Kms)
                            .key_id("alias/app")
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let missing =
            mock!(aws_sdk_kinesis::Client::describe_stream_summary).match_requests(|r| r.stream_name() == Some("gone")).then_error(|| {
                DescribeStreamSummaryError::ResourceNotFoundException(
                    aws_sdk_kinesis::types::error::ResourceNotFoundException::builder()
                        .message("Stream gone under account 123456789012 not found.")
                        .meta(aws_smithy_types::error::ErrorMetadata::builder().code("ResourceNotFoundException").build())
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&by_arn, &missing]);
        let state = describe_stream(&client, ARN).await.unwrap().unwrap();
        assert_eq!(state.status, "UPDATING");
        assert_eq!(state.encryption, StreamEncryption::Kms { key_id: Some("alias/app".into()) });
        assert_eq!(describe_stream(&client, "gone").await.unwrap(), None);
    }

    #[tokio::test]
    async fn streams_are_listed_by_token_or_by_last_name() {
        // Page 1 answers with a token, page 2 (asked by token) with HasMoreStreams only, page 3
        // (asked by the last name) ends the list.
        let first = mock!(aws_sdk_kinesis::Client::list_streams)
            .match_requests(|r| r.next_token().is_none() && r.exclusive_start_stream_name().is_none())
            .then_output(|| {
                ListStreamsOutput::builder().stream_names("a").stream_names("b").has_more_streams(true).next_token("t1").build().unwrap()
            });
        let by_token = mock!(aws_sdk_kinesis::Client::list_streams)
            .match_requests(|r| r.next_token() == Some("t1"))
            .then_output(|| ListStreamsOutput::builder().stream_names("c").has_more_streams(true).build().unwrap());
        let by_name = mock!(aws_sdk_kinesis::Client::list_streams)
            .match_requests(|r| r.exclusive_start_stream_name() == Some("c"))
            .then_output(|| ListStreamsOutput::builder().stream_names("d").has_more_streams(false).build().unwrap());
        let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&first, &by_token, &by_name]);
        assert_eq!(list_stream_names(&client).await.unwrap(), vec!["a", "b", "c", "d"]);
        assert_eq!((first.num_calls(), by_token.num_calls(), by_name.num_calls()), (1, 1, 1));
    }
}
