//! The configuration item: what AWS Config knows about one resource at one moment.
//!
//! Items reach us in three shapes — inside a change notification, from
//! `GetResourceConfigHistory` (oversized items; different field names, `configuration` as a JSON
//! string), and synthesized from live describe calls during periodic sweeps. All three become
//! this one type, so a rule judges every item the same way.

use std::collections::BTreeMap;

use aws_smithy_types::DateTime;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// `configurationItemStatus` as AWS Config reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemStatus {
    Ok,
    ResourceDiscovered,
    ResourceNotRecorded,
    ResourceDeleted,
    ResourceDeletedNotRecorded,
    Other(String),
}

impl ItemStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "OK" => ItemStatus::Ok,
            "ResourceDiscovered" => ItemStatus::ResourceDiscovered,
            "ResourceNotRecorded" => ItemStatus::ResourceNotRecorded,
            "ResourceDeleted" => ItemStatus::ResourceDeleted,
            "ResourceDeletedNotRecorded" => ItemStatus::ResourceDeletedNotRecorded,
            other => ItemStatus::Other(other.to_string()),
        }
    }

    /// Only items that describe an existing, recorded resource are judged (as rdklib and
    /// Cloud Custodian do); everything else is NOT_APPLICABLE.
    pub fn is_judged(&self) -> bool {
        matches!(self, ItemStatus::Ok | ItemStatus::ResourceDiscovered)
    }

    pub fn as_str(&self) -> &str {
        match self {
            ItemStatus::Ok => "OK",
            ItemStatus::ResourceDiscovered => "ResourceDiscovered",
            ItemStatus::ResourceNotRecorded => "ResourceNotRecorded",
            ItemStatus::ResourceDeleted => "ResourceDeleted",
            ItemStatus::ResourceDeletedNotRecorded => "ResourceDeletedNotRecorded",
            ItemStatus::Other(s) => s,
        }
    }
}

/// Resource tags, whichever shape they arrived in.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct ConfigurationItem {
    pub resource_type: String,
    /// The id Config uses for this resource type; it becomes `ComplianceResourceId` and the
    /// remediation's `RESOURCE_ID`.
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub arn: Option<String>,
    pub aws_region: Option<String>,
    pub account_id: Option<String>,
    pub status: ItemStatus,
    pub capture_time: DateTime,
    pub tags: Tags,
    pub configuration: Value,
    /// Values that arrived as JSON strings (the history API's shape) are parsed into JSON.
    pub supplementary_configuration: Map<String, Value>,
}

impl ConfigurationItem {
    /// An item built by a periodic sweep from live describe calls.
    pub fn live(resource_type: &str, resource_id: impl Into<String>, configuration: Value) -> Self {
        ConfigurationItem {
            resource_type: resource_type.to_string(),
            resource_id: resource_id.into(),
            resource_name: None,
            arn: None,
            aws_region: None,
            account_id: None,
            status: ItemStatus::Ok,
            capture_time: DateTime::from_secs(0),
            tags: Tags::new(),
            configuration,
            supplementary_configuration: Map::new(),
        }
    }

    /// Decodes the `configurationItem` of a change notification.
    pub fn from_notification(value: &Value) -> Result<Self> {
        let raw: NotificationItem =
            serde_json::from_value(value.clone()).map_err(|e| Error::MalformedEvent(format!("configurationItem: {e}")))?;
        raw.into_item()
    }

    /// Converts the `GetResourceConfigHistory` shape (used for oversized items).
    pub fn from_history(item: &aws_sdk_config::types::ConfigurationItem) -> Result<Self> {
        let resource_type = item
            .resource_type()
            .map(|t| t.as_str().to_string())
            .ok_or_else(|| Error::Internal("GetResourceConfigHistory returned an item without resourceType".into()))?;
        let resource_id = item
            .resource_id()
            .ok_or_else(|| Error::Internal("GetResourceConfigHistory returned an item without resourceId".into()))?
            .to_string();
        let configuration = match item.configuration() {
            Some(text) if !text.is_empty() => {
                serde_json::from_str(text).map_err(|e| Error::Internal(format!("configuration of {resource_id} is not JSON: {e}")))?
            }
            _ => Value::Null,
        };
        let supplementary_configuration = item
            .supplementary_configuration()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), parse_embedded_json(Value::String(v.clone())))).collect())
            .unwrap_or_default();
        Ok(ConfigurationItem {
            resource_type,
            resource_id,
            resource_name: item.resource_name().map(str::to_string),
            arn: item.arn().map(str::to_string),
            aws_region: item.aws_region().map(str::to_string),
            account_id: item.account_id().map(str::to_string),
            status: ItemStatus::parse(item.configuration_item_status().map(|s| s.as_str()).unwrap_or("OK")),
            capture_time: item.configuration_item_capture_time().copied().unwrap_or(DateTime::from_secs(0)),
            tags: item.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            configuration,
            supplementary_configuration,
        })
    }

    /// A supplementary configuration entry, looked up without regard to the case of its name
    /// (Config's own spelling has varied between APIs).
    pub fn supplementary(&self, name: &str) -> Option<&Value> {
        self.supplementary_configuration.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// Looks up a field of a JSON object without regard to case: Config's item shapes mix
/// `sseAlgorithm`/`SSEAlgorithm` between the notification and the history API.
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

pub fn field_str<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    field(value, name)?.as_str()
}

pub fn field_bool(value: &Value, name: &str) -> Option<bool> {
    match field(value, name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The history API and some notifications carry nested documents as JSON strings.
fn parse_embedded_json(value: Value) -> Value {
    match value {
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

pub(crate) fn parse_time(field_name: &str, text: &str) -> Result<DateTime> {
    DateTime::from_str(text, aws_smithy_types::date_time::Format::DateTime)
        .map_err(|e| Error::MalformedEvent(format!("{field_name} {text:?} is not an ISO-8601 time: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationItem {
    resource_type: Option<String>,
    resource_id: Option<String>,
    resource_name: Option<String>,
    #[serde(rename = "ARN", alias = "arn")]
    arn: Option<String>,
    aws_region: Option<String>,
    #[serde(alias = "accountId")]
    aws_account_id: Option<String>,
    configuration_item_status: Option<String>,
    configuration_item_capture_time: Option<String>,
    #[serde(default, deserialize_with = "deserialize_tags")]
    tags: Tags,
    #[serde(default)]
    configuration: Value,
    #[serde(default)]
    supplementary_configuration: Option<Map<String, Value>>,
}

impl NotificationItem {
    fn into_item(self) -> Result<ConfigurationItem> {
        let resource_type = non_empty(self.resource_type, "configurationItem.resourceType")?;
        let resource_id = non_empty(self.resource_id, "configurationItem.resourceId")?;
        let capture_time = match self.configuration_item_capture_time {
            Some(t) => parse_time("configurationItem.configurationItemCaptureTime", &t)?,
            None => {
                return Err(Error::MalformedEvent("configurationItem.configurationItemCaptureTime is missing".into()));
            }
        };
        Ok(ConfigurationItem {
            resource_type,
            resource_id,
            resource_name: self.resource_name,
            arn: self.arn,
            aws_region: self.aws_region,
            account_id: self.aws_account_id,
            status: ItemStatus::parse(self.configuration_item_status.as_deref().unwrap_or("OK")),
            capture_time,
            tags: self.tags,
            configuration: parse_embedded_json(self.configuration),
            supplementary_configuration: self
                .supplementary_configuration
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, parse_embedded_json(v)))
                .collect(),
        })
    }
}

fn non_empty(value: Option<String>, name: &str) -> Result<String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::MalformedEvent(format!("{name} is missing or empty"))),
    }
}

/// Tags arrive as `{"k": "v"}` in change notifications but as `[{"key": "k", "value": "v"}]`
/// (or `Key`/`Value`) in some items; both mean the same.
pub fn deserialize_tags<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Tags, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(tags_from_value(value.as_ref().unwrap_or(&Value::Null)))
}

pub fn tags_from_value(value: &Value) -> Tags {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        other => Some(other.to_string()),
    };
    match value {
        Value::Object(map) => map.iter().filter_map(|(k, v)| Some((k.clone(), text(v)?))).collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(|entry| {
                let key = field_str(entry, "key")?.to_string();
                let value = field(entry, "value").and_then(text).unwrap_or_default();
                Some((key, value))
            })
            .collect(),
        _ => Tags::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(tags: Value) -> Value {
        json!({
            "configurationItemCaptureTime": "2026-11-20T10:00:00.123Z",
            "configurationItemStatus": "OK",
            "resourceType": "AWS::S3::Bucket",
            "resourceId": "my-bucket",
            "awsAccountId": "123456789012",
            "tags": tags,
            "configuration": {"name": "my-bucket"},
            "supplementaryConfiguration": {
                "ServerSideEncryptionConfiguration": "{\"rules\":[{\"applyServerSideEncryptionByDefault\":{\"sseAlgorithm\":\"AES256\"}}]}"
            }
        })
    }

    #[test]
    fn tags_as_map_and_as_list_mean_the_same() {
        let a = ConfigurationItem::from_notification(&item(json!({"atrest:exempt": "true", "team": "x"}))).unwrap();
        let b =
            ConfigurationItem::from_notification(&item(json!([{"key": "atrest:exempt", "value": "true"}, {"Key": "team", "Value": "x"}])))
                .unwrap();
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.tag("atrest:exempt"), Some("true"));
    }

    #[test]
    fn embedded_json_strings_are_parsed() {
        let it = ConfigurationItem::from_notification(&item(Value::Null)).unwrap();
        let sse = it.supplementary("serverSideEncryptionConfiguration").unwrap();
        assert!(sse.get("rules").is_some());
        assert_eq!(it.capture_time.secs(), 1_795_168_800);
    }

    #[test]
    fn missing_id_is_a_clear_error() {
        let mut v = item(Value::Null);
        v.as_object_mut().unwrap().remove("resourceId");
        let err = ConfigurationItem::from_notification(&v).unwrap_err().to_string();
        assert!(err.contains("resourceId"), "{err}");
    }
}
