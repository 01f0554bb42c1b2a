//! Logging setup. Lambdas log JSON (one object per line, searchable in CloudWatch Logs
//! Insights); the CLI logs human-readable lines to stderr so stdout stays machine-readable.

use tracing_subscriber::EnvFilter;

/// The SDK's credential, identity-cache and signing code names the access key id at debug
/// level: these targets stay at info whatever RUST_LOG says, so credentials never reach logs.
const CREDENTIAL_TARGETS_AT_INFO: &[&str] =
    &["aws_config=info", "aws_credential_types=info", "aws_runtime=info", "aws_sigv4=info", "aws_smithy_runtime=info"];

/// The filter every subscriber of ours uses: `directives` (e.g. `RUST_LOG`'s value) with the
/// credential-bearing SDK targets capped at info.
pub fn filter(directives: &str) -> EnvFilter {
    without_credential_debug(EnvFilter::new(directives))
}

fn without_credential_debug(mut filter: EnvFilter) -> EnvFilter {
    for directive in CREDENTIAL_TARGETS_AT_INFO {
        filter = filter.add_directive(directive.parse().expect("static directive"));
    }
    filter
}

pub fn init_lambda() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = without_credential_debug(filter);
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
    let filter = without_credential_debug(filter);
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
