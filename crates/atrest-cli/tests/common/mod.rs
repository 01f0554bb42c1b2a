//! What the CLI's integration tests share: the built binary pointed at the local stand-in.

use std::process::{Command, Output};

use atrest_testkit::endpoint;
use serde_json::Value;

/// Runs the built `atrest` against the stand-in, with throwaway credentials and no alert topic.
pub fn atrest(args: &[&str]) -> Output {
    atrest_in(atrest_testkit::REGION, args)
}

/// `atrest` in another region of the stand-in (a test's own estate, apart from other tests').
pub fn atrest_in(region: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_REGION", region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("ATREST_ALERT_TOPIC_ARN")
        .output()
        .expect("run atrest")
}

/// stdout parsed as JSON; the CLI writes nothing else there.
pub fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not pure JSON ({e}):\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)))
}
