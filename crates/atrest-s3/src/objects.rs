//! What the rule `s3-bucket-objects-encrypted` and the fix `s3-encrypt-existing-objects` share:
//! when an S3 object counts as encrypted as required, decided from what `ListObjectsV2` and
//! `HeadObject` report. Pure, table-tested.
//!
//! `ListObjectsV2` does not report an object's encryption, so deciding costs a `HeadObject` per
//! object, except for one documented case: since January 5, 2023 S3 encrypts every new object
//! with at least SSE-S3 ("Amazon S3 now automatically encrypts all new objects", S3 User Guide,
//! default-encryption-faq). An object whose `LastModified` is on or after that date is therefore
//! encrypted; when any server-side encryption will do, its listing entry is enough.

use aws_smithy_types::DateTime;

/// 2023-01-05T00:00:00Z (epoch seconds): from then on S3 encrypts every new object (SSE-S3 at least).
pub const SSE_FOR_ALL_NEW_OBJECTS_SINCE: i64 = 1_672_876_800;

/// What encryption an object must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// Any server-side encryption (SSE-S3, SSE-KMS, DSSE-KMS, SSE-C).
    AnySse,
    /// SSE-KMS or DSSE-KMS; with `key_arn`, under that key.
    Kms { key_arn: Option<String> },
}

impl Required {
    /// Whether the listing entry alone shows the object meets this (no `HeadObject` needed).
    pub fn met_by_listing(&self, last_modified: Option<&DateTime>) -> bool {
        matches!(self, Required::AnySse) && last_modified.is_some_and(|t| t.secs() >= SSE_FOR_ALL_NEW_OBJECTS_SINCE)
    }
}

/// The parts of a `HeadObject` answer that decide what may be done with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectState {
    /// `x-amz-server-side-encryption`: AES256, aws:kms, aws:kms:dsse; None: not encrypted.
    pub sse: Option<String>,
    pub kms_key: Option<String>,
    /// Encrypted with a customer-provided key (SSE-C): S3 cannot copy it without that key.
    pub sse_c: bool,
    pub storage_class: Option<String>,
    /// `x-amz-restore`: `ongoing-request="false", expiry-date=...` once a restored copy exists.
    pub restore: Option<String>,
    /// Intelligent-Tiering archive tiers (ARCHIVE_ACCESS, DEEP_ARCHIVE_ACCESS).
    pub archive_status: Option<String>,
    /// Object Lock retention or a legal hold on the current version.
    pub locked: bool,
}

/// Why an object is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// GLACIER / DEEP_ARCHIVE (or an Intelligent-Tiering archive tier) without a restored copy:
    /// S3 refuses to copy it (InvalidObjectState).
    ArchivedNotRestored,
    /// SSE-C: copying needs the customer's key, which only its owner has.
    CustomerKey,
    /// Object Lock retention or legal hold: a copy would be a new version without that
    /// protection; left for its owner to decide.
    ObjectLock,
    /// Owned by another account (ACLs enabled): a copy would change its owner.
    OtherOwner,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::ArchivedNotRestored => "archived (Glacier/Deep Archive) and not restored",
            SkipReason::CustomerKey => "encrypted with a customer-provided key (SSE-C)",
            SkipReason::ObjectLock => "under Object Lock retention or legal hold",
            SkipReason::OtherOwner => "owned by another account",
        }
    }
}

/// Whether the object is encrypted as required. `key_matches` says whether its KMS key is the
/// required one (the caller resolves aliases and ids; ignored when no key is required).
pub fn is_compliant(state: &ObjectState, required: &Required, key_matches: bool) -> bool {
    if state.sse_c {
        return matches!(required, Required::AnySse);
    }
    match (required, state.sse.as_deref()) {
        (_, None) => false,
        (Required::AnySse, Some(_)) => true,
        (Required::Kms { key_arn }, Some(sse)) => {
            (sse == "aws:kms" || sse == "aws:kms:dsse") && (key_arn.is_none() || (state.kms_key.is_some() && key_matches))
        }
    }
}

/// What the fix does with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    AlreadyCompliant,
    Copy,
    Skip(SkipReason),
}

pub fn decide(state: &ObjectState, required: &Required, key_matches: bool) -> Decision {
    if is_compliant(state, required, key_matches) {
        return Decision::AlreadyCompliant;
    }
    if state.sse_c {
        return Decision::Skip(SkipReason::CustomerKey);
    }
    if needs_restore(state) && !is_restored(state) {
        return Decision::Skip(SkipReason::ArchivedNotRestored);
    }
    if state.locked {
        return Decision::Skip(SkipReason::ObjectLock);
    }
    Decision::Copy
}

fn needs_restore(state: &ObjectState) -> bool {
    // GLACIER_IR (Instant Retrieval) is copied like any other class.
    matches!(state.storage_class.as_deref(), Some("GLACIER" | "DEEP_ARCHIVE")) || state.archive_status.is_some()
}

fn is_restored(state: &ObjectState) -> bool {
    state.restore.as_deref().is_some_and(|r| r.contains("ongoing-request=\"false\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(sse: Option<&str>, key: Option<&str>) -> ObjectState {
        ObjectState { sse: sse.map(str::to_string), kms_key: key.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn decision_table() {
        let any = Required::AnySse;
        let kms = Required::Kms { key_arn: None };
        let kms_key = Required::Kms { key_arn: Some("arn:k".into()) };
        let glacier = ObjectState { storage_class: Some("GLACIER".into()), ..Default::default() };
        let restored = ObjectState {
            storage_class: Some("DEEP_ARCHIVE".into()),
            restore: Some("ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"".into()),
            ..Default::default()
        };
        let restoring = ObjectState { restore: Some("ongoing-request=\"true\"".into()), ..glacier.clone() };
        let tiered = ObjectState {
            storage_class: Some("INTELLIGENT_TIERING".into()),
            archive_status: Some("ARCHIVE_ACCESS".into()),
            ..Default::default()
        };
        let sse_c = ObjectState { sse_c: true, ..Default::default() };
        let locked = ObjectState { locked: true, ..Default::default() };
        let glacier_ir = ObjectState { storage_class: Some("GLACIER_IR".into()), ..Default::default() };
        let cases: Vec<(&str, ObjectState, &Required, bool, Decision)> = vec![
            ("plain object", state(None, None), &any, false, Decision::Copy),
            ("SSE-S3 meets any", state(Some("AES256"), None), &any, false, Decision::AlreadyCompliant),
            ("KMS meets any", state(Some("aws:kms"), Some("arn:x")), &any, false, Decision::AlreadyCompliant),
            ("SSE-S3 does not meet KMS", state(Some("AES256"), None), &kms, false, Decision::Copy),
            ("DSSE meets KMS", state(Some("aws:kms:dsse"), Some("arn:x")), &kms, false, Decision::AlreadyCompliant),
            ("other key", state(Some("aws:kms"), Some("arn:x")), &kms_key, false, Decision::Copy),
            ("the key", state(Some("aws:kms"), Some("arn:k")), &kms_key, true, Decision::AlreadyCompliant),
            ("glacier not restored", glacier, &any, false, Decision::Skip(SkipReason::ArchivedNotRestored)),
            ("glacier being restored", restoring, &any, false, Decision::Skip(SkipReason::ArchivedNotRestored)),
            ("deep archive restored", restored, &any, false, Decision::Copy),
            ("intelligent-tiering archive", tiered, &any, false, Decision::Skip(SkipReason::ArchivedNotRestored)),
            ("glacier instant retrieval", glacier_ir, &any, false, Decision::Copy),
            ("SSE-C is encrypted", sse_c.clone(), &any, false, Decision::AlreadyCompliant),
            ("SSE-C is not KMS, and cannot be copied", sse_c, &kms, false, Decision::Skip(SkipReason::CustomerKey)),
            ("object lock", locked, &any, false, Decision::Skip(SkipReason::ObjectLock)),
        ];
        for (name, state, required, key_matches, expected) in cases {
            assert_eq!(decide(&state, required, key_matches), expected, "{name}");
        }
    }

    #[test]
    fn listing_decides_only_for_any_sse_after_the_cutoff() {
        let before = DateTime::from_secs(1_672_876_799);
        let after = DateTime::from_secs(1_700_000_000);
        assert!(Required::AnySse.met_by_listing(Some(&after)));
        assert!(Required::AnySse.met_by_listing(Some(&DateTime::from_secs(SSE_FOR_ALL_NEW_OBJECTS_SINCE))));
        assert!(!Required::AnySse.met_by_listing(Some(&before)));
        assert!(!Required::AnySse.met_by_listing(None));
        assert!(!Required::Kms { key_arn: None }.met_by_listing(Some(&after)));
    }
}
