#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_encrypted_volumes::EncryptedVolumes).await
}
