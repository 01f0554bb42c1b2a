//! Parameters, for rules (`InputParameters`, camelCase) and fixes (SSM parameters, PascalCase).
//!
//! Both arrive as strings: a list is a comma-separated string (a JSON array is accepted too),
//! a boolean is `"true"`/`"false"`, and a missing or empty value takes the default. Each rule or
//! fix declares its parameters once; parsing rejects unknown names and bad values with an error
//! naming the parameter, before anything is evaluated or changed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ParamKind {
    /// Free text (still trimmed).
    Text,
    /// Comma-separated list.
    List,
    /// `true` / `false`.
    Bool,
    /// One of a fixed set of values.
    OneOf(&'static [&'static str]),
    /// A KMS key reference: key id, key ARN, alias name or alias ARN.
    KmsKey,
    /// A whole number within bounds.
    Integer { min: i64, max: i64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Used when the parameter is missing or empty. Empty means "no value".
    pub default: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ParamValue {
    Text(String),
    List(Vec<String>),
    Bool(bool),
    Integer(i64),
}

/// Validated parameter values.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<&'static str, ParamValue>,
}

impl Params {
    /// Parses raw values (from `ruleParameters`, an SSM payload or the CLI) against `specs`.
    pub fn parse(specs: &[ParamSpec], raw: &BTreeMap<String, Value>) -> Result<Self> {
        for name in raw.keys() {
            if !specs.iter().any(|s| s.name == name) {
                let accepted = specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
                return Err(Error::UnknownParameter { name: name.clone(), accepted });
            }
        }
        let mut values = BTreeMap::new();
        for spec in specs {
            let given = raw.get(spec.name).map(|v| as_text(spec.name, v)).transpose()?;
            let text = match given.as_deref().map(str::trim) {
                Some(t) if !t.is_empty() => t.to_string(),
                _ => spec.default.to_string(),
            };
            values.insert(spec.name, parse_value(spec, &text)?);
        }
        Ok(Params { values })
    }

    /// Parses the `ruleParameters` JSON string of a Config event (absent or empty = no parameters).
    pub fn parse_json(specs: &[ParamSpec], json: Option<&str>) -> Result<Self> {
        let raw = match json.map(str::trim) {
            None | Some("") => BTreeMap::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map.into_iter().collect(),
                Ok(Value::Null) => BTreeMap::new(),
                Ok(_) => return Err(Error::MalformedEvent("ruleParameters must be a JSON object".into())),
                Err(e) => return Err(Error::MalformedEvent(format!("ruleParameters is not valid JSON: {e}"))),
            },
        };
        Self::parse(specs, &raw)
    }

    /// The text value, `None` when empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(ParamValue::Text(t)) if !t.is_empty() => Some(t),
            _ => None,
        }
    }

    pub fn list(&self, name: &str) -> &[String] {
        match self.values.get(name) {
            Some(ParamValue::List(l)) => l,
            _ => &[],
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(ParamValue::Bool(true)))
    }

    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(ParamValue::Integer(i)) => Some(*i),
            _ => None,
        }
    }
}

fn as_text(name: &str, value: &Value) -> Result<String> {
    Ok(match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // Config passes strings, but a hand-written parameters file may hold a real list.
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.clone()),
                    Value::Number(n) => parts.push(n.to_string()),
                    _ => return Err(Error::invalid_parameter(name, "list items must be strings")),
                }
            }
            serde_json::to_string(&parts).map_err(|e| Error::Internal(e.to_string()))?
        }
        Value::Object(_) => return Err(Error::invalid_parameter(name, "expected a string, got a JSON object")),
    })
}

fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = if text.starts_with('[') {
        serde_json::from_str::<Vec<String>>(text).map_err(|e| format!("not a JSON list of strings: {e}"))?
    } else {
        text.split(',').map(str::to_string).collect()
    };
    Ok(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn parse_value(spec: &ParamSpec, text: &str) -> Result<ParamValue> {
    let bad = |reason: String| Error::invalid_parameter(spec.name, reason);
    match spec.kind {
        ParamKind::Text => Ok(ParamValue::Text(text.to_string())),
        ParamKind::List => parse_list(text).map(ParamValue::List).map_err(bad),
        ParamKind::Bool => match text.to_ascii_lowercase().as_str() {
            "" | "false" => Ok(ParamValue::Bool(false)),
            "true" => Ok(ParamValue::Bool(true)),
            _ => Err(bad(format!("expected \"true\" or \"false\", got {text:?}"))),
        },
        ParamKind::OneOf(allowed) => {
            if text.is_empty() || allowed.contains(&text) {
                Ok(ParamValue::Text(text.to_string()))
            } else {
                Err(bad(format!("expected one of {}, got {text:?}", allowed.join(", "))))
            }
        }
        ParamKind::KmsKey => {
            if text.is_empty() {
                return Ok(ParamValue::Text(String::new()));
            }
            crate::kms::KeyRef::parse(text).map_err(bad)?;
            Ok(ParamValue::Text(text.to_string()))
        }
        ParamKind::Integer { min, max } => {
            if text.is_empty() {
                return Ok(ParamValue::Text(String::new()));
            }
            let n: i64 = text.parse().map_err(|_| bad(format!("expected a whole number, got {text:?}")))?;
            if n < min || n > max {
                return Err(bad(format!("must be between {min} and {max}, got {n}")));
            }
            Ok(ParamValue::Integer(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[ParamSpec] = &[
        ParamSpec { name: "kmsKeyArns", kind: ParamKind::List, default: "", description: "" },
        ParamSpec { name: "requiredAlgorithm", kind: ParamKind::OneOf(&["AES256", "aws:kms"]), default: "", description: "" },
        ParamSpec { name: "includeDetached", kind: ParamKind::Bool, default: "true", description: "" },
        ParamSpec { name: "concurrency", kind: ParamKind::Integer { min: 1, max: 100 }, default: "10", description: "" },
    ];

    fn parse(v: Value) -> Result<Params> {
        let raw = v.as_object().unwrap().clone().into_iter().collect();
        Params::parse(SPECS, &raw)
    }

    #[test]
    fn lists_accept_csv_and_json_arrays_with_spaces_trimmed() {
        let a = parse(json!({"kmsKeyArns": " arn:a , arn:b,, "})).unwrap();
        assert_eq!(a.list("kmsKeyArns"), ["arn:a", "arn:b"]);
        let b = parse(json!({"kmsKeyArns": "[\"arn:a\", \" arn:b\"]"})).unwrap();
        assert_eq!(b.list("kmsKeyArns"), ["arn:a", "arn:b"]);
        let c = parse(json!({"kmsKeyArns": ["arn:a", "arn:b"]})).unwrap();
        assert_eq!(c.list("kmsKeyArns"), ["arn:a", "arn:b"]);
    }

    #[test]
    fn missing_or_empty_values_take_defaults() {
        let p = parse(json!({"includeDetached": "", "requiredAlgorithm": "  "})).unwrap();
        assert!(p.bool("includeDetached"));
        assert_eq!(p.text("requiredAlgorithm"), None);
        assert_eq!(p.integer("concurrency"), Some(10));
        assert!(p.list("kmsKeyArns").is_empty());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let e = parse(json!({"includeDetached": "yes"})).unwrap_err().to_string();
        assert!(e.contains("includeDetached") && e.contains("\"yes\""), "{e}");
        let e = parse(json!({"requiredAlgorithm": "DES"})).unwrap_err().to_string();
        assert!(e.contains("requiredAlgorithm") && e.contains("AES256"), "{e}");
        let e = parse(json!({"concurrency": "-3"})).unwrap_err().to_string();
        assert!(e.contains("concurrency") && e.contains("between 1 and 100"), "{e}");
    }

    #[test]
    fn unknown_parameters_are_rejected() {
        let e = parse(json!({"kmsKeyArn": "x"})).unwrap_err().to_string();
        assert!(e.contains("unknown parameter kmsKeyArn") && e.contains("kmsKeyArns"), "{e}");
    }

    #[test]
    fn rule_parameters_json_string_is_decoded() {
        let p = Params::parse_json(SPECS, Some("{\"kmsKeyArns\":\"arn:a\"}")).unwrap();
        assert_eq!(p.list("kmsKeyArns"), ["arn:a"]);
        assert!(Params::parse_json(SPECS, None).is_ok());
        assert!(Params::parse_json(SPECS, Some("{not json")).is_err());
        assert!(Params::parse_json(SPECS, Some("[1]")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(key in "[a-zA-Z]{0,12}", value in ".{0,64}") {
            let mut raw = BTreeMap::new();
            raw.insert(key, Value::String(value));
            let _ = Params::parse(SPECS, &raw);
        }
    }
}
