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
    /// Set when the statement uses `NotPrincipal` (everyone *except* the listed principals).
    pub not_principal: bool,
    pub actions: Vec<String>,
    /// Set when the statement uses `NotAction`; such statements are not interpreted.
    pub not_action: bool,
    pub resources: Vec<String>,
    /// Set when the statement uses `NotResource`; such statements are not interpreted.
    pub not_resource: bool,
    /// (operator, condition key, values), keys lower-cased.
    pub conditions: Vec<(String, String, Vec<String>)>,
    /// Set when `Condition` is present but not the documented shape (operator → key → values):
    /// the statement applies under conditions this reader cannot name.
    pub condition_unreadable: bool,
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
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                // Condition values are written `false` as often as `"false"`, in lists too.
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
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
        let mut condition_unreadable = false;
        match obj.get("Condition") {
            None => {}
            Some(Value::Object(ops)) => {
                for (op, keys) in ops {
                    if let Value::Object(keys) = keys {
                        for (key, values) in keys {
                            let parsed = strings(Some(values));
                            condition_unreadable |= parsed.is_empty();
                            conditions.push((op.clone(), key.to_ascii_lowercase(), parsed));
                        }
                    } else {
                        condition_unreadable = true;
                    }
                }
            }
            Some(_) => condition_unreadable = true,
        }
        Some(Statement {
            sid: obj.get("Sid").and_then(Value::as_str).map(str::to_string),
            deny: obj.get("Effect").and_then(Value::as_str) == Some("Deny"),
            principal_everyone,
            not_principal: obj.contains_key("NotPrincipal"),
            actions: strings(obj.get("Action")),
            not_action: obj.contains_key("NotAction"),
            resources: strings(obj.get("Resource")),
            not_resource: obj.contains_key("NotResource"),
            conditions,
            condition_unreadable,
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

// ---------------------------------------------------------------------------------------------
// SSL-only bucket policies (S3_BUCKET_SSL_REQUESTS_ONLY and its fix)

const SECURE_TRANSPORT_KEY: &str = "aws:securetransport";

/// S3 bucket policies are limited to 20 KB
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-iam-policies.html).
pub const BUCKET_POLICY_MAX_BYTES: usize = 20 * 1024;

/// The Sid of the statement the SSL-only fix adds, as AWS's own runbook and most published
/// policies name it (the statement denies; the name says what it leaves allowed).
pub const SSL_ONLY_SID: &str = "AllowSSLRequestsOnly";

/// The ARN of a bucket in the partition of `region` (`cn-*` → aws-cn, `us-gov-*` → aws-us-gov).
pub fn bucket_arn(region: &str, bucket: &str) -> String {
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    format!("arn:{partition}:s3:::{bucket}")
}

/// Whether a bucket policy denies plain-HTTP requests, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslOnly {
    /// An explicit Deny for `aws:SecureTransport = false` covers the bucket ARN …
    pub bucket: bool,
    /// … and every object (`<bucket ARN>/*`), for every principal and every S3 action.
    pub objects: bool,
    /// For a policy that falls short: why the statements that mention `aws:SecureTransport`
    /// do not count (the first reason found), for the annotation.
    pub near_miss: Option<String>,
}

impl SslOnly {
    pub fn complete(&self) -> bool {
        self.bucket && self.objects
    }

    /// One sentence for an annotation or a fix message (well under 256 characters).
    pub fn explain(&self) -> String {
        match (self.bucket, self.objects) {
            (true, true) => "The bucket policy denies every request that does not use SSL/TLS (aws:SecureTransport = false) to the bucket and its objects.".into(),
            (true, false) => "The bucket policy denies plain-HTTP requests to the bucket ARN but not to its objects (<bucket>/*).".into(),
            (false, true) => "The bucket policy denies plain-HTTP requests to the objects (<bucket>/*) but not to the bucket ARN.".into(),
            (false, false) => match &self.near_miss {
                Some(why) => format!("The bucket policy does not deny plain-HTTP requests: {why}."),
                None => "The bucket policy has no Deny statement for aws:SecureTransport = false.".into(),
            },
        }
    }
}

/// Checks the explicit Deny `S3_BUCKET_SSL_REQUESTS_ONLY` asks for. A statement counts when it is
/// `Effect: Deny`; `Principal` is `"*"`, `{"AWS": "*"}` or `{"AWS": ["*"]}`; its actions cover
/// every S3 action (`s3:*`, `*`, or a wildcard that matches all of them); its only conditions
/// are `Bool`/`BoolIfExists` on `aws:SecureTransport` with the value false (string, boolean or
/// a list holding it). The bucket ARN and `<bucket ARN>/*` may be covered by one statement or
/// two. Conservatively, a statement with `NotPrincipal`, `NotAction` or `NotResource`, an extra
/// condition (it narrows the deny), or a condition this reader cannot parse never counts: it
/// may deny less than the rule requires, and an explicit Deny cannot be overridden by any Allow,
/// so no other statement matters.
pub fn ssl_only(policy: &Policy, bucket_arn: &str) -> SslOnly {
    let objects_prefix = format!("{bucket_arn}/");
    let mut result = SslOnly { bucket: false, objects: false, near_miss: None };
    for statement in &policy.statements {
        let mentions_transport = statement.conditions.iter().any(|(_, key, _)| key == SECURE_TRANSPORT_KEY);
        match ssl_deny_shortfall(statement) {
            None => {
                result.bucket |= statement.covers_resource(bucket_arn);
                result.objects |= statement.resources.iter().any(|r| covers_every_suffix(r, &objects_prefix));
                if result.near_miss.is_none()
                    && !statement.covers_resource(bucket_arn)
                    && !statement.resources.iter().any(|r| covers_every_suffix(r, &objects_prefix))
                {
                    result.near_miss = Some("its Deny on aws:SecureTransport names neither this bucket nor its objects".into());
                }
            }
            Some(why) if mentions_transport && result.near_miss.is_none() => {
                // Sids are user text of any length; annotations hold 256 characters.
                let sid = statement
                    .sid
                    .as_deref()
                    .map(|s| format!("statement {:?} ", s.chars().take(40).collect::<String>()))
                    .unwrap_or_default();
                result.near_miss = Some(format!("{sid}{why}"));
            }
            Some(_) => {}
        }
    }
    result
}

/// Why a statement is not a Deny of plain-HTTP requests for everyone and every S3 action (None:
/// it is one; which resources it covers is checked separately).
fn ssl_deny_shortfall(s: &Statement) -> Option<&'static str> {
    if !s.deny {
        return Some("is not a Deny (an Allow for aws:SecureTransport = true still lets HTTP requests others allow through)");
    }
    if s.not_principal || !s.principal_everyone {
        return Some("does not apply to every principal");
    }
    if s.not_action || !s.actions.iter().any(|a| covers_every_suffix(&a.to_ascii_lowercase(), "s3:")) {
        return Some("does not cover every S3 action (s3:*)");
    }
    if s.not_resource {
        return Some("uses NotResource, which is not interpreted");
    }
    if s.condition_unreadable {
        return Some("has a condition that cannot be read");
    }
    let transport_false = |(op, key, values): &(String, String, Vec<String>)| {
        (op == "Bool" || op == "BoolIfExists") && key == SECURE_TRANSPORT_KEY && values.iter().any(|v| v.eq_ignore_ascii_case("false"))
    };
    if s.conditions.is_empty() || !s.conditions.iter().all(transport_false) {
        return Some("is not conditioned on aws:SecureTransport = false alone");
    }
    None
}

/// Whether an IAM wildcard pattern matches `prefix` followed by anything at all. True exactly
/// when it ends in `*` and matches `prefix` itself: the `*` then absorbs any continuation.
fn covers_every_suffix(pattern: &str, prefix: &str) -> bool {
    pattern.ends_with('*') && wildcard_match(pattern, prefix)
}

/// The statement the SSL-only fix adds: deny every S3 action on the bucket and its objects to
/// everyone when the request does not use SSL/TLS.
pub fn ssl_only_statement(sid: &str, bucket_arn: &str) -> Value {
    serde_json::json!({
        "Sid": sid,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, format!("{bucket_arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })
}

/// A Sid not used by any statement of the policy (bucket policy Sids must be unique).
pub fn unused_sid(policy: &Policy, wanted: &str) -> String {
    let taken = |sid: &str| policy.statements.iter().any(|s| s.sid.as_deref() == Some(sid));
    if !taken(wanted) {
        return wanted.to_string();
    }
    (2..).map(|n| format!("{wanted}{n}")).find(|sid| !taken(sid)).unwrap_or_else(|| wanted.to_string())
}

/// The policy text with `statement` appended to its `Statement` list, every other part kept
/// byte for byte (top-level keys in their order, each existing statement's own text): a
/// single-object `Statement` becomes a list of it and the new one. With no policy, a new one.
pub fn append_statement(existing: Option<&str>, statement: &Value) -> Result<String, String> {
    use serde_json::value::RawValue;
    let new = statement.to_string();
    let Some(text) = existing.filter(|t| !t.trim().is_empty()) else {
        return Ok(format!(r#"{{"Version":"2012-10-17","Statement":[{new}]}}"#));
    };
    let doc: RawDocument = serde_json::from_str(text).map_err(|e| format!("the bucket policy is not a JSON object: {e}"))?;
    let mut parts = Vec::with_capacity(doc.0.len() + 1);
    let mut appended = false;
    for (key, value) in &doc.0 {
        let name = serde_json::to_string(key).map_err(|e| e.to_string())?;
        if key == "Statement" && !appended {
            let raw = value.get().trim();
            let list = if raw.starts_with('[') {
                let items: Vec<Box<RawValue>> = serde_json::from_str(raw).map_err(|e| format!("Statement: {e}"))?;
                items.iter().map(|i| i.get()).chain(std::iter::once(new.as_str())).collect::<Vec<_>>().join(",")
            } else if raw.starts_with('{') {
                format!("{raw},{new}")
            } else {
                return Err("the bucket policy's Statement is neither an object nor a list".into());
            };
            parts.push(format!("{name}:[{list}]"));
            appended = true;
        } else {
            parts.push(format!("{name}:{}", value.get()));
        }
    }
    if !appended {
        parts.push(format!(r#""Statement":[{new}]"#));
    }
    Ok(format!("{{{}}}", parts.join(",")))
}

/// A JSON object's members in document order, each value as its original text.
struct RawDocument(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for RawDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawDocument;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a policy document (a JSON object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawDocument, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(RawDocument(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
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

    const B: &str = "arn:aws:s3:::b";

    /// A policy of one statement: the canonical SSL-only deny with `edit` applied.
    fn ssl_policy(edit: impl FnOnce(&mut Value)) -> Policy {
        let mut statement = ssl_only_statement("S", B);
        edit(&mut statement);
        Policy::from_value(&serde_json::json!({"Version": "2012-10-17", "Statement": statement}))
    }

    #[test]
    fn ssl_only_verdict_table() {
        use serde_json::json;
        let set = |k: &'static str, v: Value| move |s: &mut Value| s[k] = v;
        let cases: Vec<(&str, Policy, bool)> = vec![
            ("canonical", ssl_policy(|_| {}), true),
            ("Statement as a list", Policy::from_value(&json!({"Statement": [ssl_only_statement("S", B)]})), true),
            ("Principal {AWS: *}", ssl_policy(set("Principal", json!({"AWS": "*"}))), true),
            ("Principal {AWS: [*]}", ssl_policy(set("Principal", json!({"AWS": ["*"]}))), true),
            ("Action *", ssl_policy(set("Action", json!("*"))), true),
            ("Action [s3:*]", ssl_policy(set("Action", json!(["s3:GetObject", "s3:*"]))), true),
            ("Action S3:* (case)", ssl_policy(set("Action", json!("S3:*"))), true),
            ("Action s3* wildcard", ssl_policy(set("Action", json!("s3*"))), true),
            ("Resource * wildcard", ssl_policy(set("Resource", json!("*"))), true),
            ("Resource arn:aws:s3:::b* covers both", ssl_policy(set("Resource", json!("arn:aws:s3:::b*"))), true),
            ("Resource arn:aws:s3:::* covers both", ssl_policy(set("Resource", json!(["arn:aws:s3:::*"]))), true),
            ("value false as boolean", ssl_policy(set("Condition", json!({"Bool": {"aws:SecureTransport": false}}))), true),
            ("value [\"false\"]", ssl_policy(set("Condition", json!({"Bool": {"aws:SecureTransport": ["false"]}}))), true),
            ("value [false]", ssl_policy(set("Condition", json!({"Bool": {"aws:SecureTransport": [false]}}))), true),
            ("BoolIfExists", ssl_policy(set("Condition", json!({"BoolIfExists": {"aws:SecureTransport": "false"}}))), true),
            ("key case", ssl_policy(set("Condition", json!({"Bool": {"AWS:securetransport": "False"}}))), true),
            (
                "bucket and objects in two statements",
                Policy::from_value(&json!({"Statement": [
                    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": B, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
                    {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "*", "Resource": "arn:aws:s3:::b/*", "Condition": {"Bool": {"aws:SecureTransport": false}}}
                ]})),
                true,
            ),
            (
                "Allow on true",
                ssl_policy(|s| {
                    s["Effect"] = json!("Allow");
                    s["Condition"] = json!({"Bool": {"aws:SecureTransport": "true"}});
                }),
                false,
            ),
            ("Deny on true", ssl_policy(set("Condition", json!({"Bool": {"aws:SecureTransport": "true"}}))), false),
            ("objects only", ssl_policy(set("Resource", json!("arn:aws:s3:::b/*"))), false),
            ("bucket ARN only", ssl_policy(set("Resource", json!(B))), false),
            ("a prefix of objects only", ssl_policy(set("Resource", json!([B, "arn:aws:s3:::b/logs/*"]))), false),
            ("another bucket", ssl_policy(set("Resource", json!(["arn:aws:s3:::bb", "arn:aws:s3:::bb/*"]))), false),
            ("some principals", ssl_policy(set("Principal", json!({"AWS": "arn:aws:iam::123456789012:root"}))), false),
            ("Principal {Service: *}", ssl_policy(set("Principal", json!({"Service": "*"}))), false),
            ("some actions", ssl_policy(set("Action", json!(["s3:GetObject", "s3:PutObject"]))), false),
            ("s3:Get* only", ssl_policy(set("Action", json!("s3:Get*"))), false),
            ("s3:? is not every action", ssl_policy(set("Action", json!("s3:?"))), false),
            (
                "an extra condition narrows it",
                ssl_policy(|s| s["Condition"]["StringEquals"] = json!({"aws:PrincipalAccount": "123456789012"})),
                false,
            ),
            ("StringEquals is not Bool", ssl_policy(set("Condition", json!({"StringEquals": {"aws:SecureTransport": "false"}}))), false),
            (
                "no condition",
                ssl_policy(|s| {
                    s.as_object_mut().unwrap().remove("Condition");
                }),
                false,
            ),
            ("unreadable condition", ssl_policy(set("Condition", json!("aws:SecureTransport=false"))), false),
            ("unreadable value", ssl_policy(set("Condition", json!({"Bool": {"aws:SecureTransport": {"x": 1}}}))), false),
            (
                "NotPrincipal",
                ssl_policy(|s| {
                    s.as_object_mut().unwrap().remove("Principal");
                    s["NotPrincipal"] = json!({"AWS": "arn:aws:iam::123456789012:root"});
                }),
                false,
            ),
            (
                "NotAction",
                ssl_policy(|s| {
                    s.as_object_mut().unwrap().remove("Action");
                    s["NotAction"] = json!("s3:GetObject");
                }),
                false,
            ),
            (
                "NotResource",
                ssl_policy(|s| {
                    s.as_object_mut().unwrap().remove("Resource");
                    s["NotResource"] = json!("arn:aws:s3:::other/*");
                }),
                false,
            ),
            ("no statements", Policy::from_value(&json!({"Version": "2012-10-17"})), false),
        ];
        for (name, policy, expected) in cases {
            let found = ssl_only(&policy, B);
            assert_eq!(found.complete(), expected, "{name}: {found:?}");
            let text = found.explain();
            assert!(!text.is_empty() && text.len() <= 256, "{name}: {text}");
        }
    }

    #[test]
    fn shortfalls_are_explained() {
        use serde_json::json;
        let only_objects = ssl_only(&ssl_policy(|s| s["Resource"] = json!("arn:aws:s3:::b/*")), B);
        assert!(only_objects.objects && !only_objects.bucket);
        assert!(only_objects.explain().contains("not to the bucket ARN"), "{}", only_objects.explain());
        let allow = ssl_only(
            &ssl_policy(|s| {
                s["Effect"] = json!("Allow");
                s["Condition"] = json!({"Bool": {"aws:SecureTransport": "true"}});
            }),
            B,
        );
        assert!(allow.explain().contains("statement \"S\" is not a Deny"), "{}", allow.explain());
        let some = ssl_only(&ssl_policy(|s| s["Principal"] = json!({"AWS": "arn:aws:iam::1:root"})), B);
        assert!(some.explain().contains("every principal"), "{}", some.explain());
        let long_sid = ssl_only(&ssl_policy(|s| s["Sid"] = json!("x".repeat(5000))), B);
        assert!(long_sid.complete());
        let long_sid = ssl_only(
            &ssl_policy(|s| {
                s["Sid"] = json!("x".repeat(5000));
                s["Effect"] = json!("Allow");
            }),
            B,
        );
        assert!(long_sid.explain().len() < 256, "{}", long_sid.explain());
    }

    #[test]
    fn appending_keeps_every_existing_statement_byte_for_byte() {
        let existing = r#"{"Version": "2012-10-17", "Id": "keep-me",
          "Statement": [ {"Sid": "A", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
                         {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"Null":{"s3:x-amz-server-side-encryption":"true"}}} ]}"#;
        let added = ssl_only_statement("AllowSSLRequestsOnly", B);
        let merged = append_statement(Some(existing), &added).unwrap();
        assert!(merged.contains(r#"{"Sid": "A", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}"#));
        assert!(merged.contains(r#"{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*","Condition":{"Null":{"s3:x-amz-server-side-encryption":"true"}}}"#));
        let doc: Value = serde_json::from_str(&merged).unwrap();
        let before: Value = serde_json::from_str(existing).unwrap();
        assert_eq!(doc["Id"], "keep-me");
        assert_eq!(doc["Version"], "2012-10-17");
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(&statements[..2], before["Statement"].as_array().unwrap().as_slice());
        assert_eq!(statements[2], added);
        assert!(merged.starts_with(r#"{"Version":"2012-10-17","Id":"keep-me","Statement":["#), "{merged}");
        assert!(ssl_only(&Policy::parse(&merged).unwrap(), B).complete());
    }

    #[test]
    fn appending_to_a_single_statement_none_or_garbage() {
        let single = r#"{"Version":"2012-10-17","Statement":{"Sid":"Only","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
        let added = ssl_only_statement("X", B);
        let merged: Value = serde_json::from_str(&append_statement(Some(single), &added).unwrap()).unwrap();
        assert_eq!(merged["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(merged["Statement"][0]["Sid"], "Only");
        let fresh: Value = serde_json::from_str(&append_statement(None, &added).unwrap()).unwrap();
        assert_eq!(fresh, serde_json::json!({"Version": "2012-10-17", "Statement": [added.clone()]}));
        assert_eq!(append_statement(Some("  "), &added).unwrap(), append_statement(None, &added).unwrap());
        assert!(append_statement(Some("{{{"), &added).is_err());
        assert!(append_statement(Some("[1]"), &added).is_err());
        assert!(append_statement(Some(r#"{"Statement": 7}"#), &added).is_err());
    }

    #[test]
    fn the_added_sid_never_collides() {
        let p = Policy::parse(r#"{"Statement":[{"Sid":"AllowSSLRequestsOnly"},{"Sid":"AllowSSLRequestsOnly2"}]}"#).unwrap();
        assert_eq!(unused_sid(&p, SSL_ONLY_SID), "AllowSSLRequestsOnly3");
        assert_eq!(unused_sid(&Policy::default(), SSL_ONLY_SID), SSL_ONLY_SID);
    }

    #[test]
    fn bucket_arns_follow_the_partition() {
        assert_eq!(bucket_arn("eu-west-1", "b"), "arn:aws:s3:::b");
        assert_eq!(bucket_arn("cn-north-1", "b"), "arn:aws-cn:s3:::b");
        assert_eq!(bucket_arn("us-gov-west-1", "b"), "arn:aws-us-gov:s3:::b");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,300}") {
            if let Ok(p) = Policy::parse(&text) { let _ = denies_unencrypted_uploads(&p, "b", &["AES256"]); let _ = ssl_only(&p, "arn:aws:s3:::b").explain(); }
            let _ = append_statement(Some(&text), &ssl_only_statement("S", "arn:aws:s3:::b"));
        }
    }
}
