//! The KMS key a fix is asked for: the `KmsKeyId` parameter, resolved once per request.

use atrest::FixRequest;
use atrest::error::{Error, Result};
use atrest::remediation::FixContext;

use crate::DEFAULT_KMS_KEY;

/// Resolves the requested key, turning "no such key" into a parameter error.
pub async fn resolve_key(ctx: &FixContext, req: &FixRequest) -> Result<String> {
    let key = req.params.text("KmsKeyId").unwrap_or(DEFAULT_KMS_KEY);
    ctx.kms.key_arn(key).await.map_err(|e| match e {
        Error::Aws { code, message, .. } if code == "NotFoundException" => {
            Error::invalid_parameter("KmsKeyId", format!("{key} was not found: {message}"))
        }
        other => other,
    })
}

/// Whether a resource encrypted with `actual` already meets the request for `wanted`.
pub async fn key_matches(ctx: &FixContext, actual: Option<&str>, wanted_arn: &str) -> Result<bool> {
    match actual {
        // moto reports a placeholder for "the default key"; AWS always reports an ARN.
        Some(a) if atrest::kms::KeyRef::parse(a).is_ok() => ctx.kms.is_one_of(a, &[wanted_arn.to_string()]).await,
        _ => Ok(false),
    }
}
