#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_s3_encrypt_existing_objects::S3EncryptExistingObjects::default()).await
}
