//! The `atrest:*` tag keys that more than one resource family's fixes write, spelled once.
//! A family's own bookkeeping tags stay with the family (`atrest-rds`, the EBS fix's
//! `model::tag`), which re-exports these under its own names.

/// On an encrypted copy, for good: what it was made from (volume id, DB identifier).
pub const ENCRYPTED_FROM: &str = "atrest:encrypted-from";
/// On the unencrypted original once its encrypted replacement is ready: the replacement.
pub const REPLACED_BY: &str = "atrest:replaced-by";
/// On what a fix creates: the source's immutable resource id, so a re-run trusts only its own.
pub const SOURCE_RESOURCE_ID: &str = "atrest:source-resource-id";
