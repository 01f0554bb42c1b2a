#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_s3_restrict_ssl_requests_only::S3RestrictSslRequestsOnly).await
}
