#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_kinesis_firehose_delivery_stream_encrypted::KinesisFirehoseDeliveryStreamEncrypted).await
}
