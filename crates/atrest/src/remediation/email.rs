//! The email a fix outcome becomes: subject and plain-text body.

use super::{FixOutcome, FixSpec, FixStatus};
use crate::alerts::{Alert, subject_line};

pub fn fix_outcome_alert(spec: &FixSpec, outcome: &FixOutcome, region: &str) -> Alert {
    let verb = match outcome.status {
        FixStatus::Succeeded => "fixed",
        FixStatus::Failed => "NOT fixed",
        FixStatus::InProgress => "in progress",
    };
    let kind = outcome.resource_type.as_deref().or(spec.resource_types.first().copied()).unwrap_or("resource");
    let subject = subject_line(&format!("[atrest] {verb}: {} {}", short_type(kind), outcome.resource_id));
    let mut body = String::new();
    body.push_str(&format!("Remediation {}: {}\n\n", status_word(outcome.status), outcome.fix));
    body.push_str(&format!("Resource:   {} ({kind})\n", outcome.resource_id));
    body.push_str(&format!("Region:     {region}\n"));
    if let Some(id) = &outcome.execution_id {
        body.push_str(&format!("Execution:  SSM Automation {id}\n"));
    }
    body.push_str(&format!("\n{}\n", outcome.message));
    if !outcome.changes.is_empty() {
        body.push_str("\nWhat changed:\n");
        for c in &outcome.changes {
            body.push_str(&format!("  - {c}\n"));
        }
    }
    body.push_str("\nThis message was sent by atrest, the encryption-at-rest remediation stack.\n");
    Alert { subject, body }
}

fn status_word(status: FixStatus) -> &'static str {
    match status {
        FixStatus::Succeeded => "succeeded",
        FixStatus::Failed => "failed",
        FixStatus::InProgress => "in progress",
    }
}

/// `AWS::S3::Bucket` → `S3 bucket`, `AWS::RDS::DBClusterSnapshot` → `RDS DB cluster snapshot`.
fn short_type(resource_type: &str) -> String {
    let mut parts = resource_type.split("::").skip(1);
    match (parts.next(), parts.next()) {
        (Some(""), Some(kind)) => format!("AWS {}", words(kind)),
        (Some(service), Some(kind)) => format!("{service} {}", words(kind)),
        _ => resource_type.to_string(),
    }
}

/// Splits a CamelCase type name into words, keeping acronyms (`DB`) and lower-casing the rest.
fn words(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let starts_word = c.is_uppercase()
            && i > 0
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()) && chars[i - 1].is_uppercase());
        if starts_word && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|w| if w.len() > 1 && w.chars().all(|c| c.is_uppercase()) { w } else { w.to_lowercase() })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_type_reads_well() {
        assert_eq!(short_type("AWS::S3::Bucket"), "S3 bucket");
        assert_eq!(short_type("AWS::RDS::DBInstance"), "RDS DB instance");
        assert_eq!(short_type("AWS::RDS::DBClusterSnapshot"), "RDS DB cluster snapshot");
        assert_eq!(short_type("AWS::EC2::Volume"), "EC2 volume");
        assert_eq!(short_type("AWS::::Account"), "AWS account");
    }

    #[test]
    fn the_email_names_the_kind_of_resource_the_fix_found() {
        static TWO_KINDS: FixSpec = FixSpec {
            name: "rds-encrypt-snapshot",
            description: "",
            resource_types: &["AWS::RDS::DBSnapshot", "AWS::RDS::DBClusterSnapshot"],
            parameters: &[],
            disruptive: false,
        };
        let mut outcome = FixOutcome {
            status: FixStatus::Succeeded,
            message: "Encrypted copy made.".into(),
            resource_id: "orders-nightly".into(),
            resource_type: Some("AWS::RDS::DBClusterSnapshot".into()),
            fix: "fix-rds-encrypt-snapshot".into(),
            dry_run: false,
            changes: vec![],
            execution_id: None,
            resume: None,
        };
        let alert = fix_outcome_alert(&TWO_KINDS, &outcome, "eu-west-1");
        assert_eq!(alert.subject, "[atrest] fixed: RDS DB cluster snapshot orders-nightly");
        assert!(alert.body.contains("orders-nightly (AWS::RDS::DBClusterSnapshot)"), "{}", alert.body);
        // Not known (the id named nothing): the fix's first type, as before.
        outcome.resource_type = None;
        assert!(fix_outcome_alert(&TWO_KINDS, &outcome, "eu-west-1").subject.contains("RDS DB snapshot"));
    }
}
