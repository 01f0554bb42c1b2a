#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_s3_bucket_objects_encrypted::S3BucketObjectsEncrypted).await
}
