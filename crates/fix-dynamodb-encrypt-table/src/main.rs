#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_dynamodb_encrypt_table::DynamodbEncryptTable).await
}
