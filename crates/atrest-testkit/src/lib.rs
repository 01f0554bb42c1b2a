//! Test harness for integration tests against the local AWS stand-in (moto + the atrest
//! extension in `tests/moto/`), started by `tests/moto/with-moto` (which `make test` uses).
//!
//! Tests share one server, so each test names its resources uniquely (`unique`) and asserts
//! only on what it created; Config results are kept per rule name, and each test uses its own.

pub mod console;
pub mod faults;
pub mod logs;
pub mod reliability;

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde_json::{Value, json};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// The stand-in's endpoint. Fails loudly when the tests were not started through the stand-in:
/// an integration test that silently skips asserts nothing.
pub fn endpoint() -> String {
    let url = std::env::var("ATREST_TEST_ENDPOINT").or_else(|_| std::env::var("AWS_ENDPOINT_URL")).unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
        "integration tests need the local AWS stand-in: run `make test` (or `tests/moto/with-moto cargo test`); got endpoint {url:?}"
    );
    url
}

/// An SDK configuration pointed at the stand-in, with the same retry and timeout policy the
/// Lambdas use, and static credentials so nothing is looked up on the machine.
pub async fn sdk() -> SdkConfig {
    let base = atrest::clients::load_sdk_config().await;
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "atrest-testkit",
        )));
    builder.set_retry_config(base.retry_config().cloned());
    builder.set_timeout_config(base.timeout_config().cloned());
    builder.build()
}

/// An SDK configuration for a test endpoint (the stand-in, or a fault proxy in front of it):
/// the Lambdas' retry policy (same attempts, same retry classification) with millisecond
/// back-off, and a short per-attempt timeout so a hung call is abandoned in about
/// `attempt_timeout` instead of 30 s.
pub async fn sdk_at(endpoint: &str, attempt_timeout: std::time::Duration) -> SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use std::time::Duration;
    assert!(endpoint.starts_with("http://127.0.0.1:"), "test endpoints are loopback only: {endpoint}");
    sdk()
        .await
        .to_builder()
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(atrest::clients::MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(100)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(attempt_timeout)
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build()
}

/// [`sdk_at`] with the given credentials instead of the stand-in's `testing`/`testing` (so a log
/// scan can tell the secret from the key id).
pub async fn sdk_at_with_credentials(
    endpoint: &str,
    attempt_timeout: std::time::Duration,
    key_id: &str,
    secret: &str,
    token: &str,
) -> SdkConfig {
    sdk_at(endpoint, attempt_timeout)
        .await
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            key_id,
            secret,
            Some(token.to_string()),
            None,
            "atrest-testkit-scan",
        )))
        .build()
}

/// A name no other test (or earlier run against the same server) uses: lowercase, valid as an
/// S3 bucket name when `prefix` is.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{:x}-{n}-{:x}", std::process::id(), nanos % 0xfffff)
}

/// The workspace's `events/` directory.
pub fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

/// A sample event from `events/`, parsed.
pub fn load_event(relative: &str) -> Value {
    let path = events_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Rewrites a sample event for one test: its rule name and result token (the stand-in files
/// evaluations under the token, which by convention is the rule name) and, through `edit`,
/// its invoking event.
pub fn adapt_event(mut event: Value, rule_name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut invoking: Value =
        serde_json::from_str(event["invokingEvent"].as_str().expect("invokingEvent is a string")).expect("invokingEvent is JSON");
    edit(&mut invoking);
    event["invokingEvent"] = Value::String(invoking.to_string());
    event["configRuleName"] = json!(rule_name);
    event["resultToken"] = json!(rule_name);
    event
}

/// One stored Config result, as `GetComplianceDetailsByConfigRule` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    pub resource_type: String,
    pub resource_id: String,
    pub compliance: String,
    pub annotation: Option<String>,
}

/// Every result Config holds for a rule, NOT_APPLICABLE included.
pub async fn results_in_config(sdk: &SdkConfig, rule_name: &str) -> Vec<StoredResult> {
    use aws_sdk_config::types::ComplianceType;
    let client = aws_sdk_config::Client::new(sdk);
    let mut out = Vec::new();
    let mut pages = client
        .get_compliance_details_by_config_rule()
        .config_rule_name(rule_name)
        .compliance_types(ComplianceType::Compliant)
        .compliance_types(ComplianceType::NonCompliant)
        .compliance_types(ComplianceType::NotApplicable)
        .limit(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            // The stand-in, like Config, knows a rule only once it has results.
            Err(e) if aws_sdk_config::error::ProvideErrorMetadata::code(&e) == Some("NoSuchConfigRuleException") => break,
            Err(e) => panic!("GetComplianceDetailsByConfigRule: {e:?}"),
        };
        for r in page.evaluation_results() {
            let q = r.evaluation_result_identifier().and_then(|i| i.evaluation_result_qualifier()).expect("qualifier");
            out.push(StoredResult {
                resource_type: q.resource_type().unwrap_or_default().to_string(),
                resource_id: q.resource_id().unwrap_or_default().to_string(),
                compliance: r.compliance_type().map(|c| c.as_str().to_string()).unwrap_or_default(),
                annotation: r.annotation().map(str::to_string),
            });
        }
    }
    out.sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
    out
}

/// The result Config holds for one resource under a rule.
pub async fn result_for(sdk: &SdkConfig, rule_name: &str, resource_id: &str) -> Option<StoredResult> {
    results_in_config(sdk, rule_name).await.into_iter().find(|r| r.resource_id == resource_id)
}

/// Messages published to an SNS topic, read through the stand-in's inspection endpoint.
pub async fn sns_messages(topic_arn: &str) -> Vec<(Option<String>, String)> {
    let url = format!("{}/atrest-ext/sns-messages?TopicArn={}", endpoint(), topic_arn);
    let body = tokio::task::spawn_blocking(move || http_get(&url)).await.expect("join");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap_or_else(|e| panic!("sns-messages is not JSON ({e}): {body}"));
    list.into_iter()
        .map(|m| {
            (
                m.get("Subject").and_then(Value::as_str).map(str::to_string),
                m.get("Message").and_then(Value::as_str).unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Turns objects into ones stored before 2023 without encryption (no encryption attribute,
/// LastModified 2022-12-01), through the stand-in's seeding endpoint: `Some(key)` one object,
/// `None` every object under `prefix`. Returns how many objects changed.
pub async fn make_legacy_objects(bucket: &str, key: Option<&str>, prefix: &str) -> u64 {
    let which = match key {
        Some(k) => format!("Key={}", query_encode(k)),
        None => format!("Prefix={}", query_encode(prefix)),
    };
    let url = format!("{}/atrest-ext/s3-legacy-object?Bucket={}&{which}", endpoint(), query_encode(bucket));
    let body = tokio::task::spawn_blocking(move || http_request("POST", &url, "")).await.expect("join");
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("s3-legacy-object is not JSON ({e}): {body}"));
    answer["Objects"].as_u64().unwrap_or(0)
}

fn query_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn http_get(url: &str) -> String {
    http_request("GET", url, "")
}

/// A minimal HTTP/1.1 request on loopback, so the harness needs no HTTP client crate of its own.
fn http_request(method: &str, url: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the stand-in");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{method} {url}: {head}");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return dechunk(body);
    }
    body.to_string()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Creates an SNS topic for a test and returns its ARN.
pub async fn topic(sdk: &SdkConfig, name: &str) -> String {
    aws_sdk_sns::Client::new(sdk).create_topic().name(name).send().await.expect("CreateTopic").topic_arn().expect("topic ARN").to_string()
}
