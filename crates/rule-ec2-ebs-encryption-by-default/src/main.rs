#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_ec2_ebs_encryption_by_default::Ec2EbsEncryptionByDefault).await
}
