#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_s3_default_encryption_kms::S3DefaultEncryptionKms).await
}
