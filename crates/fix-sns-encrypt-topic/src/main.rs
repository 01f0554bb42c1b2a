#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_sns_encrypt_topic::SnsEncryptTopic).await
}
