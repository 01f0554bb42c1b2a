#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_s3_bucket_ssl_requests_only::S3BucketSslRequestsOnly).await
}
