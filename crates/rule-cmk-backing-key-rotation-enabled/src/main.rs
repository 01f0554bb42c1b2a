#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_rule(rule_cmk_backing_key_rotation_enabled::CmkBackingKeyRotationEnabled).await
}
