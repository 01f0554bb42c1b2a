//! Verdicts (what a rule decides) and evaluations (what is sent to AWS Config).

use aws_smithy_types::DateTime;
use serde::Serialize;

/// The compliance values a custom rule may report. `INSUFFICIENT_DATA` is deliberately absent:
/// `PutEvaluations` rejects it for custom rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum Compliance {
    #[serde(rename = "COMPLIANT")]
    Compliant,
    #[serde(rename = "NON_COMPLIANT")]
    NonCompliant,
    #[serde(rename = "NOT_APPLICABLE")]
    NotApplicable,
}

impl Compliance {
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "COMPLIANT",
            Compliance::NonCompliant => "NON_COMPLIANT",
            Compliance::NotApplicable => "NOT_APPLICABLE",
        }
    }

    pub fn to_sdk(self) -> aws_sdk_config::types::ComplianceType {
        use aws_sdk_config::types::ComplianceType;
        match self {
            Compliance::Compliant => ComplianceType::Compliant,
            Compliance::NonCompliant => ComplianceType::NonCompliant,
            Compliance::NotApplicable => ComplianceType::NotApplicable,
        }
    }
}

impl std::fmt::Display for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's decision about one resource, before it is addressed and timestamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub compliance: Compliance,
    pub annotation: String,
}

impl Verdict {
    pub fn compliant(annotation: impl Into<String>) -> Self {
        Verdict { compliance: Compliance::Compliant, annotation: annotation.into() }
    }
    pub fn non_compliant(annotation: impl Into<String>) -> Self {
        Verdict { compliance: Compliance::NonCompliant, annotation: annotation.into() }
    }
    pub fn not_applicable(annotation: impl Into<String>) -> Self {
        Verdict { compliance: Compliance::NotApplicable, annotation: annotation.into() }
    }
}

/// AWS Config's limit on `Annotation`.
pub const MAX_ANNOTATION_CHARS: usize = 256;
const TRUNCATION_MARK: &str = " [truncated]";

/// Shortens an annotation to Config's limit, visibly, on a character boundary.
pub fn truncate_annotation(text: &str) -> String {
    if text.chars().count() <= MAX_ANNOTATION_CHARS {
        return text.to_string();
    }
    let keep = MAX_ANNOTATION_CHARS - TRUNCATION_MARK.chars().count();
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(TRUNCATION_MARK);
    out
}

/// One evaluation as AWS Config stores it; serialized with AWS's field names so the CLI's JSON
/// reads like the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Evaluation {
    pub compliance_resource_type: String,
    pub compliance_resource_id: String,
    pub compliance_type: Compliance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    pub ordering_timestamp: DateTime,
}

impl Evaluation {
    pub fn new(resource_type: &str, resource_id: &str, verdict: Verdict, ordering_timestamp: DateTime) -> Self {
        let annotation = (!verdict.annotation.is_empty()).then(|| truncate_annotation(&verdict.annotation));
        Evaluation {
            compliance_resource_type: resource_type.to_string(),
            compliance_resource_id: resource_id.to_string(),
            compliance_type: verdict.compliance,
            annotation,
            ordering_timestamp,
        }
    }

    pub fn to_sdk(&self) -> crate::Result<aws_sdk_config::types::Evaluation> {
        aws_sdk_config::types::Evaluation::builder()
            .compliance_resource_type(&self.compliance_resource_type)
            .compliance_resource_id(&self.compliance_resource_id)
            .compliance_type(self.compliance_type.to_sdk())
            .set_annotation(self.annotation.clone())
            .ordering_timestamp(self.ordering_timestamp)
            .build()
            .map_err(|e| crate::Error::Internal(format!("building evaluation: {e}")))
    }
}

pub fn format_time(time: &DateTime) -> String {
    time.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_else(|_| time.secs().to_string())
}

fn serialize_time<S: serde::Serializer>(time: &DateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_annotations_are_kept() {
        assert_eq!(truncate_annotation("fine"), "fine");
        let exact: String = "a".repeat(256);
        assert_eq!(truncate_annotation(&exact), exact);
    }

    #[test]
    fn long_annotations_are_truncated_visibly_on_char_boundaries() {
        let long: String = "é".repeat(400);
        let out = truncate_annotation(&long);
        assert_eq!(out.chars().count(), 256);
        assert!(out.ends_with(" [truncated]"));
    }

    #[test]
    fn evaluation_serializes_with_aws_field_names() {
        let e =
            Evaluation::new("AWS::S3::Bucket", "b", Verdict::non_compliant("no default encryption"), DateTime::from_secs(1_795_168_800));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["ComplianceResourceType"], "AWS::S3::Bucket");
        assert_eq!(v["ComplianceResourceId"], "b");
        assert_eq!(v["ComplianceType"], "NON_COMPLIANT");
        assert_eq!(v["Annotation"], "no default encryption");
        assert_eq!(v["OrderingTimestamp"], "2026-11-20T10:00:00Z");
    }
}
