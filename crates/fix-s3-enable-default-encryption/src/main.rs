#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_s3_enable_default_encryption::S3EnableDefaultEncryption).await
}
