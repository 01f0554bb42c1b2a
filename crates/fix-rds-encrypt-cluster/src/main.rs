#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    atrest::lambda::serve_fix(fix_rds_encrypt_cluster::RdsEncryptCluster).await
}
