//! `make bench`: how long a Lambda bootstrap takes to start, measured on the real binaries.
//!
//! Each sample starts a fresh bootstrap process (a cold start: new process, new SDK
//! configuration, new HTTP client) against a local stand-in for the Lambda Runtime API, and
//! times two moments:
//!
//! - **init**: from `exec` to the first `GET /runtime/invocation/next` (what Lambda bills and
//!   reports as Init Duration, minus the download of the package);
//! - **first response**: from `exec` to the `POST /runtime/invocation/<id>/response` of the
//!   first event: a Config change event judged and delivered with `PutEvaluations`, which the
//!   same local server answers at once (so this is our code and the SDK, not AWS latency).
//!
//! The bootstraps are built with the `bench` profile (release without fat LTO) by `make bench`
//! before this runs; the Lambda packages use the `release` profile (opt-level "s", fat LTO),
//! which shrinks the file but does not change what init does. No network: everything is on
//! 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const RULE_BOOTSTRAP: &str = "rule-s3-bucket-server-side-encryption-enabled";
const FIX_BOOTSTRAP: &str = "fix-s3-enable-default-encryption";
const CHANGE_EVENT: &str = include_str!("../events/s3-bucket-server-side-encryption-enabled/change-unencrypted.json");

/// What the fake Runtime API saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Next,
    Response,
    Error(String),
    /// An AWS call, by its `X-Amz-Target` (e.g. `StarlingDoveService.PutEvaluations`).
    Aws(String),
}

/// The bench binary lives in `<target>/release/deps/`; the bootstraps `make bench` built with
/// the bench profile are in `<target>/release/`.
fn bootstrap(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(path.is_file(), "{} is missing: run `make bench`, which builds the bootstraps first", path.display());
    path
}

/// One request: its request line, `X-Amz-Target` and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, String)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut content_length = 0usize;
    let mut target = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("x-amz-target") {
                target = value.trim().to_string();
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some((request_line.trim_end().to_string(), target, String::from_utf8_lossy(&body).into_owned()))
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// Serves one connection: the Runtime API (one event, then `next` is left hanging as Lambda
/// does between invocations) and Config's PutEvaluations.
fn serve(stream: TcpStream, event: &'static str, seen: mpsc::Sender<(Seen, Instant)>) {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    let mut served_event = false;
    while let Some((request_line, target, body)) = read_request(&mut reader) {
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
        if path.ends_with("/runtime/invocation/next") {
            let _ = seen.send((Seen::Next, Instant::now()));
            if served_event {
                // The runtime waits here for the next event; the sample is over.
                return;
            }
            served_event = true;
            let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + Duration::from_secs(60);
            let headers = [
                ("Content-Type", "application/json".to_string()),
                ("Lambda-Runtime-Aws-Request-Id", "00000000-0000-4000-8000-000000000001".to_string()),
                ("Lambda-Runtime-Deadline-Ms", deadline.as_millis().to_string()),
                ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench".to_string()),
                ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_string()),
            ];
            respond(&mut writer, "200 OK", &headers, event);
        } else if path.contains("/runtime/invocation/") && path.ends_with("/response") {
            let _ = seen.send((Seen::Response, Instant::now()));
            respond(&mut writer, "202 Accepted", &[], "");
        } else if path.contains("/runtime/") {
            let _ = seen.send((Seen::Error(format!("{request_line}: {body}")), Instant::now()));
            respond(&mut writer, "202 Accepted", &[], "");
        } else {
            // The AWS endpoint: Config's PutEvaluations (JSON protocol), accepted in full.
            let _ = seen.send((Seen::Aws(target), Instant::now()));
            respond(&mut writer, "200 OK", &[("Content-Type", "application/x-amz-json-1.1".to_string())], r#"{"FailedEvaluations":[]}"#);
        }
    }
}

struct FakeRuntime {
    address: String,
    seen: mpsc::Receiver<(Seen, Instant)>,
}

fn fake_runtime(event: &'static str) -> FakeRuntime {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, event, tx));
        }
    });
    FakeRuntime { address, seen: rx }
}

fn start(binary: &PathBuf, runtime: &FakeRuntime, function: &str) -> Child {
    Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
        .env("AWS_ENDPOINT_URL", format!("http://{}", runtime.address))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHONLY")
        .env("AWS_SECRET_ACCESS_KEY", "bench-only-not-a-secret")
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the bootstrap")
}

/// One cold start: the time to the first `next`, and to the first response, which must come
/// after exactly the AWS calls `expected_calls` (so a sample that skipped the work fails).
fn cold_start(binary: &PathBuf, runtime: &FakeRuntime, function: &str, expected_calls: &[&str]) -> (Duration, Duration) {
    while runtime.seen.try_recv().is_ok() {}
    let started = Instant::now();
    let mut child = start(binary, runtime, function);
    let mut init = None;
    let mut response = None;
    let mut calls = Vec::new();
    while response.is_none() {
        let (what, at) = runtime.seen.recv_timeout(Duration::from_secs(30)).expect("the bootstrap answers within 30 s");
        match what {
            Seen::Next if init.is_none() => init = Some(at - started),
            Seen::Next => {}
            Seen::Response => response = Some(at - started),
            Seen::Error(e) => panic!("{function} reported an error instead of a response: {e}"),
            Seen::Aws(target) => calls.push(target),
        }
    }
    assert_eq!(calls, expected_calls, "{function}: the AWS calls before the response");
    let _ = child.kill();
    let _ = child.wait();
    (init.expect("init"), response.expect("response"))
}

fn benches(c: &mut Criterion) {
    let rule = bootstrap(RULE_BOOTSTRAP);
    let fix = bootstrap(FIX_BOOTSTRAP);
    let rule_runtime = fake_runtime(CHANGE_EVENT);
    // The fix answers a malformed request without any AWS call: its init plus one turn.
    let fix_runtime = fake_runtime(r#"{"ResourceId": "", "DryRun": "true"}"#);

    // The change event is judged from the item alone; the only call is the delivery.
    const DELIVERY: &[&str] = &["StarlingDoveService.PutEvaluations"];
    let mut group = c.benchmark_group("cold start");
    group.sample_size(30).measurement_time(Duration::from_secs(15));
    group.bench_function("rule bootstrap: exec to first next (init)", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| cold_start(&rule, &rule_runtime, RULE_BOOTSTRAP, DELIVERY).0).sum())
    });
    group.bench_function("rule bootstrap: exec to first evaluation delivered", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| cold_start(&rule, &rule_runtime, RULE_BOOTSTRAP, DELIVERY).1).sum())
    });
    group.bench_function("fix bootstrap: exec to first answer", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| cold_start(&fix, &fix_runtime, FIX_BOOTSTRAP, &[]).1).sum())
    });
    group.finish();
}

criterion_group!(cold_start_benches, benches);
criterion_main!(cold_start_benches);
