//! The runner implements the documents' `aws:executeScript` scripts in Rust (`known_script`), so
//! `atrest remediate` needs no Python. This test runs the real Python of every script in
//! template.yaml with python3 over a table of inputs and checks that the Rust semantics give
//! the same return value, or the same exception message, for each.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use atrest_automation::{Template, known_script};
use serde_json::{Value as Json, json};

/// Runs each `(script, handler, events)` in a fresh Python namespace, as SSM does: the handler's
/// return value, or `str()` of what it raises.
const HARNESS: &str = r#"
import json, sys
results = []
for case in json.load(sys.stdin):
    scope = {}
    exec(case["script"], scope)
    try:
        results.append({"ok": scope[case["handler"]](case["events"], None)})
    except Exception as error:
        results.append({"error": str(error)})
json.dump(results, sys.stdout)
"#;

fn python(cases: &[Json]) -> Vec<Json> {
    let python = std::env::var("ATREST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .args(["-c", HARNESS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} is needed to check the documents' scripts (set ATREST_PYTHON): {e}"));
    child.stdin.take().unwrap().write_all(json!(cases).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the harness failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every distinct `(handler, script)` of the template's Automation documents.
fn template_scripts() -> BTreeSet<(String, String)> {
    let t = Template::embedded().unwrap();
    let mut scripts = BTreeSet::new();
    for r in t.remediations().unwrap() {
        let doc = t.document(&r.document_logical_id).unwrap();
        for step in doc.content["mainSteps"].as_array().unwrap().iter().filter(|s| s["action"] == "aws:executeScript") {
            let inputs = &step["inputs"];
            scripts.insert((inputs["Handler"].as_str().unwrap().to_string(), inputs["Script"].as_str().unwrap().to_string()));
        }
    }
    scripts
}

fn answer(status: &str, message: &str) -> String {
    json!({"Status": status, "Message": message, "ResourceId": "b", "Fix": "fix-x", "DryRun": false, "Changes": ["one"]}).to_string()
}

fn events_for(handler: &str) -> Vec<Json> {
    match handler {
        "read_answer" => {
            let mut payloads: Vec<Json> = [
                answer("InProgress", "Copying snap-1 (40%)."),
                answer("Succeeded", "Encrypted with \"alias/x\"; ünïcödé ✓\nsecond line"),
                answer("Failed", "Key alias/x does not exist."),
                answer("Failed", ""),
                r#"{"Status": "Succeeded"}"#.into(),
                r#"{"Status": "Succeeded", "Message": null}"#.into(),
                r#"{"Status": "Done", "Message": "odd"}"#.into(),
                r#"{"Status": 1, "Message": 2}"#.into(),
                r#"{"Status": ["InProgress"]}"#.into(),
                r#"{"Status": "InProgress", "Status": "Failed", "Message": "last wins"}"#.into(),
                "  {\"Status\": \"InProgress\", \"Message\": \"spaced\"}\n".into(),
                "{}".into(),
                // Lambda's error object: a panic, a runtime exit, a timeout.
                r#"{"errorType": "Panic", "errorMessage": "boom"}"#.into(),
                r#"{"errorType": "Runtime.ExitError", "errorMessage": "RequestId: 1 Error: Runtime exited with error: signal: killed"}"#
                    .into(),
                r#"{"errorMessage": "2026-01-01T00:00:00.000Z 1 Task timed out after 240.00 seconds"}"#.into(),
                r#"{"errorType": null, "errorMessage": ""}"#.into(),
                r#"{"Status": "Succeeded", "errorType": "Panic"}"#.into(),
                "[]".into(),
                "null".into(),
                "42".into(),
                r#""Succeeded""#.into(),
                "".into(),
                "not json".into(),
                "{\"Status\": \"InProgress\"".into(),
                "é".repeat(700),
                // The continuation point of a long worker: kept when a variable can hold it.
                r#"{"Status": "InProgress", "Message": "m", "Resume": "after:data/0042"}"#.into(),
                r#"{"Status": "Succeeded", "Message": "m", "Resume": "after:ünï"}"#.into(),
                r#"{"Status": "InProgress", "Message": "m", "Resume": ""}"#.into(),
                r#"{"Status": "InProgress", "Message": "m", "Resume": 42}"#.into(),
                r#"{"Status": "InProgress", "Message": "m", "Resume": null}"#.into(),
                json!({"Status": "InProgress", "Message": "m", "Resume": "é".repeat(512)}).to_string(),
                json!({"Status": "InProgress", "Message": "m", "Resume": "é".repeat(513)}).to_string(),
                r#"{"Status": "Done", "Resume": "after:x"}"#.into(),
                r#"{"errorType": "Panic", "Resume": "after:x"}"#.into(),
            ]
            .into_iter()
            .map(|p| json!({"Payload": p}))
            .collect();
            payloads.push(json!({}));
            payloads
        }
        "fail" => vec![
            json!({"ResourceId": "my-bucket", "Status": "Failed", "Message": "Key alias/x does not exist."}),
            json!({"ResourceId": "vol-1", "Status": "WorkerError", "Message": "The worker stopped with an error before answering (Panic): boom"}),
            json!({"ResourceId": "b", "Status": "", "Message": ""}),
            json!({"ResourceId": "b", "Status": "  \t", "Message": "\n  padded  \u{3000}"}),
            json!({"ResourceId": "b", "Status": "\u{1c}Failed\u{1f}", "Message": "\u{85}nel\u{a0}"}),
            json!({"Status": "Unreadable"}),
            json!({}),
        ],
        other => panic!("no input table for script handler {other}: add one"),
    }
}

#[test]
fn the_rust_semantics_of_every_script_agree_with_python() {
    let scripts = template_scripts();
    let handlers: BTreeSet<&str> = scripts.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(handlers, BTreeSet::from(["fail", "read_answer"]), "every document reads the answer and fails the same way");
    let mut cases = Vec::new();
    for (handler, script) in &scripts {
        for events in events_for(handler) {
            cases.push(json!({"handler": handler, "script": script, "events": events}));
        }
    }
    let expected = python(&cases);
    assert_eq!(expected.len(), cases.len());
    for (case, python) in cases.iter().zip(expected) {
        let handler = case["handler"].as_str().unwrap();
        let run = known_script(handler, case["script"].as_str().unwrap()).expect("the runner knows the template's scripts");
        let rust = match run(&case["events"]) {
            Ok(returned) => json!({"ok": returned}),
            Err(message) => json!({"error": message}),
        };
        assert_eq!(rust, python, "{handler}({})", case["events"]);
    }
}

#[test]
fn the_answer_of_a_worker_is_read_into_status_and_message() {
    let run = known_script("read_answer", atrest_automation::READ_ANSWER_SCRIPT).unwrap();
    let read = |payload: &str| run(&json!({"Payload": payload})).unwrap();
    assert_eq!(read(&answer("InProgress", "waiting")), json!({"Status": "InProgress", "Message": "waiting", "Resume": "start"}));
    let resumable = json!({"Status": "InProgress", "Message": "m", "Resume": "after:k"}).to_string();
    assert_eq!(read(&resumable)["Resume"], "after:k");
    assert_eq!(read(r#"{"errorType": "Panic", "errorMessage": "boom"}"#)["Status"], "WorkerError");
    assert_eq!(read("garbage")["Status"], "Unreadable");
}
