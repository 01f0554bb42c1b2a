#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_sns_encrypted_kms::SnsEncryptedKms).await
}
