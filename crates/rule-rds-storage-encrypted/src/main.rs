#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_rds_storage_encrypted::RdsStorageEncrypted).await
}
