#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_firehose_encrypt_delivery_stream::FirehoseEncryptDeliveryStream).await
}
