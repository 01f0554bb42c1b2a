#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_dynamodb_table_encrypted_kms::DynamodbTableEncryptedKms).await
}
