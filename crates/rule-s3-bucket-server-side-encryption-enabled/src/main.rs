#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_s3_bucket_server_side_encryption_enabled::S3BucketServerSideEncryptionEnabled).await
}
