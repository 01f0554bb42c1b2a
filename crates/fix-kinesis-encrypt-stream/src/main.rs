#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_kinesis_encrypt_stream::KinesisEncryptStream).await
}
