//! Decoding the event AWS Config sends a custom-rule Lambda.
//!
//! The envelope is `aws_lambda_events`' `ConfigEvent`; `invokingEvent` and `ruleParameters`
//! inside it are JSON *strings*. Hand-written events often omit `eventLeftScope` (the struct
//! requires it) or put `invokingEvent` in as an object; both are accepted rather than failing
//! a whole evaluation over the envelope's formality.

use aws_lambda_events::event::config::ConfigEvent;
use aws_smithy_types::DateTime;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::item::{ConfigurationItem, ItemStatus, parse_time};

/// What triggered the invocation.
// One per invocation and never copied around: boxing the item would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A configuration change, with the item inline.
    Change { item: ConfigurationItem },
    /// A configuration change whose item was too large to inline: only a summary, the item
    /// must be fetched with `GetResourceConfigHistory`.
    OversizedChange { summary: ItemSummary },
    /// A periodic run: evaluate every in-scope resource.
    Scheduled,
}

/// The summary of an oversized item.
#[derive(Debug, Clone)]
pub struct ItemSummary {
    pub resource_type: String,
    pub resource_id: String,
    pub status: ItemStatus,
    pub capture_time: DateTime,
}

/// One decoded invocation of a rule.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub rule_name: String,
    pub result_token: Option<String>,
    pub event_left_scope: bool,
    pub account_id: Option<String>,
    pub rule_parameters: Option<String>,
    pub notification_time: DateTime,
    pub trigger: Trigger,
}

impl Invocation {
    pub fn message_type(&self) -> &'static str {
        match self.trigger {
            Trigger::Change { .. } => "ConfigurationItemChangeNotification",
            Trigger::OversizedChange { .. } => "OversizedConfigurationItemChangeNotification",
            Trigger::Scheduled => "ScheduledNotification",
        }
    }

    /// Decodes the raw Lambda payload.
    pub fn decode(payload: &Value) -> Result<Self> {
        let mut envelope = match payload {
            Value::Object(map) => map.clone(),
            _ => return Err(Error::MalformedEvent("the event must be a JSON object".into())),
        };
        envelope.entry("eventLeftScope").or_insert(Value::Bool(false));
        if let Some(Value::String(flag)) = envelope.get("eventLeftScope") {
            let flag = flag.eq_ignore_ascii_case("true");
            envelope.insert("eventLeftScope".into(), Value::Bool(flag));
        }
        for key in ["invokingEvent", "ruleParameters"] {
            if let Some(v @ (Value::Object(_) | Value::Array(_))) = envelope.get(key) {
                let text = v.to_string();
                envelope.insert(key.into(), Value::String(text));
            }
        }
        let event: ConfigEvent =
            serde_json::from_value(Value::Object(envelope)).map_err(|e| Error::MalformedEvent(format!("not a Config rule event: {e}")))?;
        Self::from_config_event(event)
    }

    pub fn from_config_event(event: ConfigEvent) -> Result<Self> {
        let invoking_text = event.invoking_event.as_deref().ok_or_else(|| Error::MalformedEvent("invokingEvent is missing".into()))?;
        let invoking: Value =
            serde_json::from_str(invoking_text).map_err(|e| Error::MalformedEvent(format!("invokingEvent is not valid JSON: {e}")))?;
        let message_type = invoking
            .get("messageType")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::MalformedEvent("invokingEvent.messageType is missing".into()))?;
        let notification_time = match invoking.get("notificationCreationTime").and_then(Value::as_str) {
            Some(t) => parse_time("invokingEvent.notificationCreationTime", t)?,
            None => DateTime::from(std::time::SystemTime::now()),
        };
        let trigger = match message_type {
            "ConfigurationItemChangeNotification" => {
                let item = invoking
                    .get("configurationItem")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| Error::MalformedEvent("invokingEvent.configurationItem is missing".into()))?;
                Trigger::Change { item: ConfigurationItem::from_notification(item)? }
            }
            "OversizedConfigurationItemChangeNotification" => {
                let summary = invoking
                    .get("configurationItemSummary")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| Error::MalformedEvent("invokingEvent.configurationItemSummary is missing".into()))?;
                Trigger::OversizedChange { summary: ItemSummary::decode(summary)? }
            }
            "ScheduledNotification" => Trigger::Scheduled,
            other => {
                return Err(Error::MalformedEvent(format!(
                    "unsupported messageType {other:?}; expected ConfigurationItemChangeNotification, \
                     OversizedConfigurationItemChangeNotification or ScheduledNotification"
                )));
            }
        };
        let rule_name = event.config_rule_name.filter(|n| !n.is_empty()).unwrap_or_default();
        Ok(Invocation {
            rule_name,
            result_token: event.result_token.filter(|t| !t.is_empty()),
            event_left_scope: event.event_left_scope,
            account_id: event.account_id,
            rule_parameters: event.rule_parameters,
            notification_time,
            trigger,
        })
    }
}

impl ItemSummary {
    fn decode(value: &Value) -> Result<Self> {
        let text = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::MalformedEvent(format!("configurationItemSummary.{name} is missing")))
        };
        Ok(ItemSummary {
            resource_type: text("resourceType")?.to_string(),
            resource_id: text("resourceId")?.to_string(),
            status: ItemStatus::parse(value.get("configurationItemStatus").and_then(Value::as_str).unwrap_or("OK")),
            capture_time: parse_time("configurationItemSummary.configurationItemCaptureTime", text("configurationItemCaptureTime")?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change_event() -> Value {
        let invoking = json!({
            "messageType": "ConfigurationItemChangeNotification",
            "notificationCreationTime": "2026-11-20T10:00:05.000Z",
            "configurationItem": {
                "configurationItemCaptureTime": "2026-11-20T10:00:00.000Z",
                "configurationItemStatus": "OK",
                "resourceType": "AWS::S3::Bucket",
                "resourceId": "b",
                "configuration": {}
            }
        });
        json!({"invokingEvent": invoking.to_string(), "resultToken": "tok", "configRuleName": "r", "eventLeftScope": false})
    }

    #[test]
    fn decodes_a_change_event() {
        let inv = Invocation::decode(&change_event()).unwrap();
        assert_eq!(inv.rule_name, "r");
        assert_eq!(inv.result_token.as_deref(), Some("tok"));
        assert!(matches!(inv.trigger, Trigger::Change { ref item } if item.resource_id == "b"));
    }

    #[test]
    fn tolerates_missing_event_left_scope_and_object_invoking_event() {
        let mut ev = change_event();
        let obj = ev.as_object_mut().unwrap();
        obj.remove("eventLeftScope");
        let invoking: Value = serde_json::from_str(obj["invokingEvent"].as_str().unwrap()).unwrap();
        obj.insert("invokingEvent".into(), invoking);
        let inv = Invocation::decode(&ev).unwrap();
        assert!(!inv.event_left_scope);
    }

    #[test]
    fn rejects_bad_envelopes_with_clear_errors() {
        let cases = [
            (json!([]), "JSON object"),
            (json!({"resultToken": "t"}), "invokingEvent is missing"),
            (json!({"invokingEvent": "{trunc"}), "not valid JSON"),
            (json!({"invokingEvent": "{\"messageType\":\"Nope\"}"}), "unsupported messageType"),
            (json!({"invokingEvent": "{\"messageType\":\"ConfigurationItemChangeNotification\"}"}), "configurationItem is missing"),
            (json!({"invokingEvent": 42}), "not a Config rule event"),
        ];
        for (event, expected) in cases {
            let err = Invocation::decode(&event).unwrap_err().to_string();
            assert!(err.contains(expected), "{event}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = Invocation::decode(&json!({"invokingEvent": text, "ruleParameters": "{}"}));
        }
    }
}
