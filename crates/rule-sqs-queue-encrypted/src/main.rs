#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_sqs_queue_encrypted::SqsQueueEncrypted).await
}
