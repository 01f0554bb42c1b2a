//! What the RDS rules share: the approved-keys parameter and the verdict on "encrypted, with
//! which key".

use atrest::error::Result;
use atrest::{ParamKind, ParamSpec, RuleContext, Verdict};
use aws_sdk_rds::types::Tag;

/// The parameter every RDS rule shares.
pub const KMS_KEY_IDS: ParamSpec = ParamSpec {
    name: "kmsKeyIds",
    kind: ParamKind::List,
    default: "",
    description: "Comma-separated approved KMS keys (key ARNs, key ids, aliases or alias ARNs). Empty: any key.",
};

/// The verdict for anything that is encrypted or not, with a key: shared by the RDS rules.
///
/// `what` names the resource ("DB instance orders"); `manual` explains why the fix cannot
/// remediate it, when it cannot.
pub async fn encryption_verdict(
    ctx: &RuleContext,
    what: &str,
    encrypted: Option<bool>,
    key: Option<&str>,
    manual: Option<String>,
) -> Result<Verdict> {
    let manual = manual.map(|m| format!(" {m}")).unwrap_or_default();
    match encrypted {
        Some(true) => {}
        Some(false) => return Ok(Verdict::non_compliant(format!("{what} is not encrypted at rest.{manual}"))),
        None => return Ok(Verdict::non_compliant(format!("{what} does not report whether it is encrypted.{manual}"))),
    }
    let approved = ctx.params.list(KMS_KEY_IDS.name);
    if approved.is_empty() {
        return Ok(Verdict::compliant(format!("{what} is encrypted{}.", key.map(|k| format!(" with KMS key {k}")).unwrap_or_default())));
    }
    let Some(key) = key.filter(|k| atrest::kms::KeyRef::parse(k).is_ok()) else {
        return Ok(Verdict::non_compliant(format!(
            "{what} is encrypted, but its KMS key is not reported, so it cannot be checked against kmsKeyIds."
        )));
    };
    if ctx.kms.is_one_of(key, approved).await? {
        Ok(Verdict::compliant(format!("{what} is encrypted with approved KMS key {key}.")))
    } else {
        Ok(Verdict::non_compliant(format!("{what} is encrypted with KMS key {key}, which is not in kmsKeyIds.{manual}")))
    }
}

/// RDS tags as a configuration item carries them.
pub fn tags_of(tags: &[Tag]) -> atrest::item::Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}
