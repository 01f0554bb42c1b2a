#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_sqs_encrypt_queue::SqsEncryptQueue).await
}
