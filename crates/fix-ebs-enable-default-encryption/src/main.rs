#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_ebs_enable_default_encryption::EbsEnableDefaultEncryption).await
}
