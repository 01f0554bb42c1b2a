#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_ec2_instance_store_encrypted::Ec2InstanceStoreEncrypted::default()).await
}
