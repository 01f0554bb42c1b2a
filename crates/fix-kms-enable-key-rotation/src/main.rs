#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_kms_enable_key_rotation::KmsEnableKeyRotation).await
}
