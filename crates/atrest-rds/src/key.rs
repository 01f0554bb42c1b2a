//! The KMS key a fix is asked for: the `KmsKeyId` parameter, resolved once per request.

use atrest::FixRequest;
use atrest::error::Result;
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;

use crate::DEFAULT_KMS_KEY;

/// Resolves the requested key (RDS's AWS managed key when none is named); "no such key" is a
/// parameter error.
pub async fn resolve_key(ctx: &FixContext, req: &FixRequest) -> Result<String> {
    ctx.kms.requested_key_arn(req.params.text(KMS_KEY_PARAM).unwrap_or(DEFAULT_KMS_KEY)).await
}

/// Whether a resource encrypted with `actual` already meets the request for `wanted`.
pub async fn key_matches(ctx: &FixContext, actual: Option<&str>, wanted_arn: &str) -> Result<bool> {
    match actual {
        // moto reports a placeholder for "the default key"; AWS always reports an ARN.
        Some(a) if atrest::kms::KeyRef::parse(a).is_ok() => ctx.kms.is_one_of(a, &[wanted_arn.to_string()]).await,
        _ => Ok(false),
    }
}
