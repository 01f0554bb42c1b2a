//! A tolerant reader for IAM/S3 policy documents.
//!
//! Policies in configuration items are user-written JSON: single values or lists, `Principal`
//! as `"*"` or `{"AWS": "*"}`, any key case in conditions. This reader normalises what the rules
//! need and never fails on shapes it does not understand — an unreadable statement simply does
//! not count as a protection.

use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Default)]
pub struct Statement {
    pub sid: Option<String>,
    pub deny: bool,
    pub principal_everyone: bool,
    pub actions: Vec<String>,
    /// Set when the statement uses `NotAction`; such statements are not interpreted.
    pub not_action: bool,
    pub resources: Vec<String>,
    /// (operator, condition key, values), keys lower-cased.
    pub conditions: Vec<(String, String, Vec<String>)>,
}

/// Policies larger than S3's 20 KB limit (with room) are not parsed at all.
const MAX_POLICY_BYTES: usize = 64 * 1024;

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(format!("policy is {} bytes, larger than any valid bucket policy", text.len()));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("policy is not JSON: {e}"))?;
        Ok(Self::from_value(&doc))
    }

    pub fn from_value(doc: &Value) -> Policy {
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.iter().filter_map(Statement::from_value).collect(),
            Some(single @ Value::Object(_)) => Statement::from_value(single).into_iter().collect(),
            _ => Vec::new(),
        };
        Policy { statements }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

impl Statement {
    fn from_value(value: &Value) -> Option<Statement> {
        let obj = value.as_object()?;
        let principal_everyone = match obj.get("Principal") {
            Some(Value::String(s)) => s == "*",
            Some(Value::Object(map)) => map.get("AWS").map(|v| strings(Some(v)).iter().any(|p| p == "*")).unwrap_or(false),
            _ => false,
        };
        let mut conditions = Vec::new();
        if let Some(Value::Object(ops)) = obj.get("Condition") {
            for (op, keys) in ops {
                if let Value::Object(keys) = keys {
                    for (key, values) in keys {
                        conditions.push((op.clone(), key.to_ascii_lowercase(), strings(Some(values))));
                    }
                }
            }
        }
        Some(Statement {
            sid: obj.get("Sid").and_then(Value::as_str).map(str::to_string),
            deny: obj.get("Effect").and_then(Value::as_str) == Some("Deny"),
            principal_everyone,
            actions: strings(obj.get("Action")),
            not_action: obj.contains_key("NotAction"),
            resources: strings(obj.get("Resource")),
            conditions,
        })
    }

    /// Whether the statement's actions include `action` (wildcards honoured, case-insensitive).
    pub fn covers_action(&self, action: &str) -> bool {
        !self.not_action && self.actions.iter().any(|a| wildcard_match(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
    }

    pub fn covers_resource(&self, resource: &str) -> bool {
        self.resources.iter().any(|r| wildcard_match(r, resource))
    }
}

/// IAM wildcard matching: `*` any run, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

const SSE_HEADER_KEY: &str = "s3:x-amz-server-side-encryption";

/// Whether the bucket policy makes unencrypted uploads impossible, the way the managed rule
/// `s3-bucket-server-side-encryption-enabled` accepts as an alternative to default encryption:
/// a Deny for everyone on `s3:PutObject` to `arn:…:<bucket>/*` when the SSE header is absent
/// (`Null: true`) or names another algorithm (`StringNotEquals`). `accepted` lists the algorithm
/// header values that count as encrypted.
pub fn denies_unencrypted_uploads(policy: &Policy, bucket: &str, accepted: &[&str]) -> bool {
    let object_arn = format!("arn:aws:s3:::{bucket}/some-object");
    let relevant = |s: &&Statement| s.deny && s.principal_everyone && s.covers_action("s3:PutObject") && s.covers_resource(&object_arn);
    let mut denies_missing_header = false;
    let mut denies_other_algorithms = false;
    for statement in policy.statements.iter().filter(relevant) {
        for (op, key, values) in &statement.conditions {
            if key != SSE_HEADER_KEY {
                continue;
            }
            match op.as_str() {
                "Null" if values.iter().any(|v| v.eq_ignore_ascii_case("true")) => denies_missing_header = true,
                // Every value the policy still lets through must be an accepted algorithm.
                // `StringNotEquals` also denies a missing header; `…IfExists` lets it through.
                "StringNotEquals" | "StringNotEqualsIfExists"
                    if !values.is_empty() && values.iter().all(|v| accepted.contains(&v.as_str())) =>
                {
                    denies_other_algorithms = true;
                    denies_missing_header |= op == "StringNotEquals";
                }
                _ => {}
            }
        }
    }
    denies_missing_header && denies_other_algorithms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny_unencrypted(extra: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
              {{"Sid":"Other","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}},
              {{"Sid":"DenyWrongSSE","Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*",
                "Condition":{{"StringNotEquals":{{"s3:x-amz-server-side-encryption":{extra}}}}}}}]}}"#
        )
    }

    #[test]
    fn recognises_the_classic_deny_statement() {
        let p = Policy::parse(&deny_unencrypted(r#"["AES256","aws:kms"]"#)).unwrap();
        assert!(denies_unencrypted_uploads(&p, "b", &["AES256", "aws:kms", "aws:kms:dsse"]));
        // When only KMS counts, a policy that still lets AES256 through is not enough.
        assert!(!denies_unencrypted_uploads(&p, "b", &["aws:kms", "aws:kms:dsse"]));
        // A policy for another bucket does not protect this one.
        assert!(!denies_unencrypted_uploads(&p, "other", &["AES256", "aws:kms"]));
    }

    #[test]
    fn allow_statements_and_garbage_do_not_count() {
        let p = Policy::parse(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#).unwrap();
        assert!(!denies_unencrypted_uploads(&p, "b", &["AES256"]));
        assert!(Policy::parse("not json").is_err());
        let p = Policy::parse(r#"{"Statement":[1, "x", null, {"Effect": 7}]}"#).unwrap();
        assert!(!denies_unencrypted_uploads(&p, "b", &["AES256"]));
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match("s3:put*", "s3:putobject"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y"));
        assert!(!wildcard_match("arn:aws:s3:::b", "arn:aws:s3:::b/x"));
        assert!(wildcard_match("s3:?etObject", "s3:GetObject"));
    }

    #[test]
    fn two_hundred_statements_parse() {
        let statements: Vec<String> = (0..200)
            .map(|i| {
                format!(r#"{{"Sid":"S{i}","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/{i}"}}"#)
            })
            .collect();
        let p = Policy::parse(&format!(r#"{{"Statement":[{}]}}"#, statements.join(","))).unwrap();
        assert_eq!(p.statements.len(), 200);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,300}") {
            if let Ok(p) = Policy::parse(&text) { let _ = denies_unencrypted_uploads(&p, "b", &["AES256"]); }
        }
    }
}
