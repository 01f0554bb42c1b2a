//! Logging setup. Lambdas log JSON (one object per line, searchable in CloudWatch Logs
//! Insights); the CLI logs human-readable lines to stderr so stdout stays machine-readable.

use tracing_subscriber::EnvFilter;

pub fn init_lambda() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line already.
        .try_init();
}

pub fn init_cli(default_level: &str) {
    let filter = EnvFilter::try_from_env("ATREST_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
