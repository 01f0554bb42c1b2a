//! The Rust semantics of our two `aws:executeScript` scripts, known by handler and exact text.

use serde_json::{Value as Json, json};

/// The `read_answer` script of every document's Answer step, exactly as in template.yaml.
pub const READ_ANSWER_SCRIPT: &str = r#"import json

STATUSES = ("InProgress", "Succeeded", "Failed")


def text(value):
    return value if isinstance(value, str) else ""


def resume_point(answer):
    # Where a long worker's next turn starts ("start": from the beginning). Only a
    # resumable document keeps it, in a runbook variable: a string of 1-512 characters.
    value = answer.get("Resume")
    return value if isinstance(value, str) and 1 <= len(value) <= 512 else "start"


def read_answer(events, context):
    # Payload is a string: the JSON of what the worker returned, or Lambda's error object
    # (errorType, errorMessage) when the function crashed or timed out.
    payload = text(events.get("Payload"))
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"Status": "Unreadable", "Message": "The worker's answer is not a JSON object: " + payload[:500], "Resume": "start"}
    if "errorType" in answer or "errorMessage" in answer:
        return {
            "Status": "WorkerError",
            "Message": "The worker stopped with an error before answering ({}): {}".format(
                text(answer.get("errorType")) or "no error type", text(answer.get("errorMessage")) or "no message"),
            "Resume": "start",
        }
    status = answer.get("Status")
    message = text(answer.get("Message"))
    if status not in STATUSES:
        return {"Status": "Unreadable", "Message": "The worker's answer has no known Status. " + message, "Resume": "start"}
    return {"Status": status, "Message": message, "Resume": resume_point(answer)}"#;

/// The `fail` script of every document's Fail step, exactly as in template.yaml.
pub const FAIL_SCRIPT: &str = r#"def fail(events, context):
    status = (events.get("Status") or "").strip() or "no status"
    message = (events.get("Message") or "").strip() or "The worker gave no reason."
    raise Exception(
        "Remediation of {} did not succeed (worker status: {}). {}".format(
            events.get("ResourceId"), status, message))"#;

/// What a known `aws:executeScript` script does, in Rust: the handler's return value, or the
/// message of the exception it raises.
pub type Script = fn(&Json) -> Result<Json, String>;

/// The Rust semantics of a script the runner knows, by handler and exact text; `None` for any
/// other (refused at load time).
pub fn known_script(handler: &str, script: &str) -> Option<Script> {
    match (handler, script) {
        ("read_answer", READ_ANSWER_SCRIPT) => Some(read_answer),
        ("fail", FAIL_SCRIPT) => Some(fail),
        _ => None,
    }
}

/// Python's `str(value)` for the JSON values an InputPayload holds.
fn python_text(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => "None".into(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Bool(b)) => if *b { "True" } else { "False" }.into(),
        Some(other) => other.to_string(),
    }
}

/// Python's `str.strip()`: Rust's whitespace plus the separators U+001C..U+001F that Python
/// also counts as whitespace.
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// `text(value)` of the script: the value if it is a string, else "".
fn string_or_empty(v: Option<&Json>) -> &str {
    v.and_then(Json::as_str).unwrap_or("")
}

/// The `Resume` of an answer that hands on no continuation point (`atrest::remediation::RESUME_FROM_START`).
const FROM_START: &str = "start";

fn read_answer(events: &Json) -> Result<Json, String> {
    let payload = string_or_empty(events.get("Payload"));
    // Python's json.loads and serde_json agree on every RFC 8259 text, which is all Lambda
    // returns; they differ only on extensions (NaN, lone surrogates) no worker produces.
    let answer = match serde_json::from_str::<Json>(payload) {
        Ok(Json::Object(answer)) => answer,
        _ => {
            let head: String = payload.chars().take(500).collect();
            return Ok(
                json!({"Status": "Unreadable", "Message": format!("The worker's answer is not a JSON object: {head}"), "Resume": FROM_START}),
            );
        }
    };
    if answer.contains_key("errorType") || answer.contains_key("errorMessage") {
        let or = |s: &str, default: &str| if s.is_empty() { default.to_string() } else { s.to_string() };
        let message = format!(
            "The worker stopped with an error before answering ({}): {}",
            or(string_or_empty(answer.get("errorType")), "no error type"),
            or(string_or_empty(answer.get("errorMessage")), "no message")
        );
        return Ok(json!({"Status": "WorkerError", "Message": message, "Resume": FROM_START}));
    }
    let message = string_or_empty(answer.get("Message"));
    // Python's len() counts code points, as chars() does.
    let resume = match answer.get("Resume").and_then(Json::as_str) {
        Some(point) if (1..=512).contains(&point.chars().count()) => point,
        _ => FROM_START,
    };
    Ok(match answer.get("Status").and_then(Json::as_str) {
        Some(status @ ("InProgress" | "Succeeded" | "Failed")) => json!({"Status": status, "Message": message, "Resume": resume}),
        _ => {
            json!({"Status": "Unreadable", "Message": format!("The worker's answer has no known Status. {message}"), "Resume": FROM_START})
        }
    })
}

fn fail(events: &Json) -> Result<Json, String> {
    let field = |key: &str, default: &str| {
        let text = python_strip(string_or_empty(events.get(key)));
        if text.is_empty() { default.to_string() } else { text.to_string() }
    };
    Err(format!(
        "Remediation of {} did not succeed (worker status: {}). {}",
        python_text(events.get("ResourceId")),
        field("Status", "no status"),
        field("Message", "The worker gave no reason.")
    ))
}
