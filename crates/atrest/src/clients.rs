//! AWS client setup shared by Lambdas, the CLI and the tests.
//!
//! One `SdkConfig` per process, loaded from the standard chain (environment, profile, Lambda
//! role), honouring `AWS_ENDPOINT_URL` — which is how tests and `atrest demo` point everything at
//! the local stand-in. Retries and timeouts are the SDK's, configured once here.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Attempts per call (the SDK default is 3). Throttling and 5xx back off exponentially with
/// jitter inside the SDK; we never hand-roll retry loops for them.
pub const MAX_ATTEMPTS: u32 = 5;

pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                // A single attempt that hangs must not eat the 300 s an SSM step gives a worker.
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .load()
        .await
}

/// S3 needs path-style addressing behind a custom endpoint (`bucket.localhost` does not resolve).
pub fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn config(sdk: &SdkConfig) -> aws_sdk_config::Client {
    aws_sdk_config::Client::new(sdk)
}

pub fn kms(sdk: &SdkConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(sdk)
}

pub fn sns(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(sdk)
}

/// The region the clients talk to, for messages and console links.
pub fn region_name(sdk: &SdkConfig) -> String {
    sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "unknown-region".into())
}
