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

/// Makes an annotation safe to store and to alert on: the characters the alert email cannot
/// carry are replaced, then the text is cut to Config's limit.
///
/// template.yaml's `NonCompliantAlertRule` input transformer inserts the annotation unescaped into a quoted
/// JSON string, so a double quote, a backslash or a control character (newline, tab …) would
/// break the email or its JSON. Each is replaced by one character, so the length is unchanged.
pub fn clean_annotation(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    truncate_annotation(&safe)
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
        let annotation = (!verdict.annotation.is_empty()).then(|| clean_annotation(&verdict.annotation));
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
    fn annotations_hold_nothing_the_alert_template_cannot_carry() {
        let cases = [
            ("key \"alias/x\" is not allowed", "key 'alias/x' is not allowed"),
            (r"path C:\dir\file", "path C:/dir/file"),
            ("line one\nline two\r\nend", "line one line two  end"),
            ("tab\there", "tab here"),
            ("nul\0and\u{7f}del", "nul and del"),
            ("para\u{2028}graph\u{2029}end", "para graph end"),
            ("unicode é 😀 名前 kept", "unicode é 😀 名前 kept"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_annotation(input), expected, "{input:?}");
        }
    }

    #[test]
    fn cleaned_annotations_stay_within_the_limit_and_show_the_cut() {
        let long = "\"\\\n".repeat(200);
        let out = clean_annotation(&long);
        assert_eq!(out.chars().count(), MAX_ANNOTATION_CHARS);
        assert!(out.ends_with(" [truncated]"));
        assert!(!out.contains(['"', '\\', '\n']));
        assert_eq!(clean_annotation(&"\"".repeat(256)), "'".repeat(256));
    }

    #[test]
    fn evaluations_carry_the_cleaned_annotation() {
        let verdict = Verdict::non_compliant("key \"k\"\nnot allowed");
        let e = Evaluation::new("AWS::S3::Bucket", "b", verdict, DateTime::from_secs(1));
        assert_eq!(e.annotation.as_deref(), Some("key 'k' not allowed"));
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
