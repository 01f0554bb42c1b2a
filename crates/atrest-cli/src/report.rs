//! Reports people read: `atrest scan --format csv` for spreadsheets, `--format html` for one
//! self-contained page (no script, no external file: it opens from a mail attachment or a
//! bucket) with the counts per rule and per service, a bar for each, and the NON_COMPLIANT
//! resources with why and the fix that applies.

use std::collections::BTreeMap;

use atrest::Compliance;
use html_escape::encode_text as esc;

use crate::catalog;
use crate::commands::RuleEvaluation;

const COLUMNS: [Compliance; 3] = [Compliance::Compliant, Compliance::NonCompliant, Compliance::NotApplicable];

/// One row per evaluation, with a header; quoting as RFC 4180 (annotations hold commas).
pub fn csv(evaluations: &[RuleEvaluation]) -> anyhow::Result<String> {
    let mut out = ::csv::Writer::from_writer(Vec::new());
    out.write_record(["Account", "Region", "Rule", "ResourceType", "ResourceId", "Compliance", "Annotation", "Fix"])?;
    for e in evaluations {
        let ev = &e.evaluation;
        out.write_record([
            e.account.as_deref().unwrap_or_default(),
            e.region.as_deref().unwrap_or_default(),
            e.config_rule_name.as_str(),
            ev.compliance_resource_type.as_str(),
            ev.compliance_resource_id.as_str(),
            &ev.compliance_type.to_string(),
            ev.annotation.as_deref().unwrap_or_default(),
            fix_of(&e.config_rule_name).unwrap_or_default(),
        ])?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}

/// `AWS::S3::Bucket` → `S3`.
fn service(resource_type: &str) -> &str {
    resource_type.split("::").nth(1).unwrap_or(resource_type)
}

fn fix_of(rule: &str) -> Option<&'static str> {
    catalog::rule(rule).and_then(|r| r.spec().fix)
}

/// How to apply a rule's fix, in a sentence.
fn fix_advice(rule: &str, resource_id: &str) -> String {
    match fix_of(rule).and_then(catalog::fix) {
        None => "No automatic fix: see the annotation.".into(),
        Some(fix) => {
            let name = fix.spec().name;
            let how = format!("atrest remediate {rule} --resource-id {resource_id}");
            if fix.spec().disruptive {
                format!("{name} (disruptive: run it by name, `{how}` or `atrest fix --include {name}`)")
            } else {
                format!("{name} (`{how}`, or `atrest fix`)")
            }
        }
    }
}

#[derive(Default)]
struct Counts([usize; 3]);

impl Counts {
    fn add(&mut self, c: Compliance) {
        if let Some(i) = COLUMNS.iter().position(|k| *k == c) {
            self.0[i] += 1;
        }
    }
    fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

/// A horizontal bar: one segment per compliance value, widths in proportion.
fn bar(counts: &Counts) -> String {
    let total = counts.total().max(1) as f64;
    let mut x = 0.0;
    let mut parts = String::new();
    for (i, n) in counts.0.iter().enumerate() {
        let width = 200.0 * *n as f64 / total;
        if *n > 0 {
            parts.push_str(&format!(
                r#"<rect x="{x:.1}" y="0" width="{width:.1}" height="14" class="{}"><title>{n} {}</title></rect>"#,
                css_class(COLUMNS[i]),
                COLUMNS[i]
            ));
        }
        x += width;
    }
    format!(r#"<svg width="200" height="14" role="img" aria-label="{} of {}">{parts}</svg>"#, counts.0[0], counts.total())
}

fn css_class(c: Compliance) -> &'static str {
    match c {
        Compliance::Compliant => "compliant",
        Compliance::NonCompliant => "non-compliant",
        _ => "not-applicable",
    }
}

fn counts_table(title: &str, key: &str, groups: &BTreeMap<String, Counts>) -> String {
    let mut rows = String::new();
    for (name, counts) in groups {
        let cells: String = counts
            .0
            .iter()
            .zip(COLUMNS)
            .map(|(n, c)| format!(r#"<td class="count" data-{key}="{}" data-compliance="{c}">{n}</td>"#, esc(name)))
            .collect();
        rows.push_str(&format!("<tr><th scope=\"row\">{}</th>{cells}<td>{}</td></tr>\n", esc(name), bar(counts)));
    }
    format!(
        "<h2>{title}</h2>\n<table><thead><tr><th>{}</th><th>COMPLIANT</th><th>NON_COMPLIANT</th><th>NOT_APPLICABLE</th><th></th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n",
        if key == "rule" { "Rule" } else { "Service" }
    )
}

/// The page. `generated` says when (shown as given).
pub fn html(evaluations: &[RuleEvaluation], generated: &str) -> String {
    let mut by_rule: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_service: BTreeMap<String, Counts> = BTreeMap::new();
    let mut overall = Counts::default();
    for e in evaluations {
        let c = e.evaluation.compliance_type;
        by_rule.entry(e.config_rule_name.clone()).or_default().add(c);
        by_service.entry(service(&e.evaluation.compliance_resource_type).to_string()).or_default().add(c);
        overall.add(c);
    }
    let places: std::collections::BTreeSet<String> =
        evaluations.iter().filter_map(|e| Some(format!("{} {}", e.account.as_deref()?, e.region.as_deref()?))).collect();
    let scope =
        if places.is_empty() { "the configured account and region".to_string() } else { places.into_iter().collect::<Vec<_>>().join(", ") };

    let mut findings = String::new();
    for e in evaluations.iter().filter(|e| e.evaluation.compliance_type == Compliance::NonCompliant) {
        let ev = &e.evaluation;
        let place = match (&e.account, &e.region) {
            (Some(a), Some(r)) => format!("{a} {r}"),
            _ => String::new(),
        };
        findings.push_str(&format!(
            "<tr class=\"finding\"><td>{}</td><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td></tr>\n",
            esc(&place),
            esc(&e.config_rule_name),
            esc(&ev.compliance_resource_id),
            esc(&ev.compliance_resource_type),
            esc(ev.annotation.as_deref().unwrap_or_default()),
            esc(&fix_advice(&e.config_rule_name, &ev.compliance_resource_id)),
        ));
    }
    if findings.is_empty() {
        findings = "<tr><td colspan=\"5\">None: every resource evaluated is COMPLIANT or NOT_APPLICABLE.</td></tr>\n".into();
    }
    let summary: String = overall
        .0
        .iter()
        .zip(COLUMNS)
        .map(|(n, c)| format!(r#"<div class="total {}"><span class="number" data-total="{c}">{n}</span> {c}</div>"#, css_class(c)))
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>atrest: encryption at rest report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; vertical-align: top; }}
td.count {{ text-align: right; font-variant-numeric: tabular-nums; }}
.totals {{ display: flex; gap: 2em; margin: 1em 0 2em; }}
.total .number {{ font-size: 2em; font-weight: bold; }}
rect.compliant, .total.compliant .number {{ fill: #2e7d32; color: #2e7d32; }}
rect.non-compliant, .total.non-compliant .number {{ fill: #c62828; color: #c62828; }}
rect.not-applicable, .total.not-applicable .number {{ fill: #9e9e9e; color: #757575; }}
</style>
</head>
<body>
<h1>Encryption at rest: {evaluated} resources evaluated</h1>
<p>Scope: {scope}. Generated {generated} by atrest.</p>
<div class="totals">{summary}</div>
{rules}{services}<h2>NON_COMPLIANT resources</h2>
<table id="findings"><thead><tr><th>Account / Region</th><th>Rule</th><th>Resource</th><th>Why</th><th>Fix</th></tr></thead>
<tbody>
{findings}</tbody></table>
</body>
</html>
"#,
        evaluated = overall.total(),
        scope = esc(&scope),
        generated = esc(generated),
        rules = counts_table("Per rule", "rule", &by_rule),
        services = counts_table("Per service", "service", &by_service),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Evaluation;

    fn evaluation(rule: &str, resource_type: &str, id: &str, c: Compliance, annotation: &str) -> RuleEvaluation {
        let evaluation = Evaluation {
            compliance_resource_type: resource_type.into(),
            compliance_resource_id: id.into(),
            compliance_type: c,
            annotation: Some(annotation.into()),
            ordering_timestamp: aws_smithy_types::DateTime::from_secs(0),
        };
        RuleEvaluation { account: None, region: None, config_rule_name: rule.into(), evaluation }
    }

    fn sample() -> Vec<RuleEvaluation> {
        vec![
            evaluation("s3-default-encryption-kms", "AWS::S3::Bucket", "a", Compliance::Compliant, "SSE-KMS"),
            evaluation("s3-default-encryption-kms", "AWS::S3::Bucket", "b<script>", Compliance::NonCompliant, "SSE-S3, \"not\" KMS"),
            evaluation("encrypted-volumes", "AWS::EC2::Volume", "vol-1", Compliance::NonCompliant, "unencrypted"),
            evaluation("encrypted-volumes", "AWS::EC2::Volume", "vol-2", Compliance::NotApplicable, "deleted"),
        ]
    }

    #[test]
    fn csv_quotes_what_a_spreadsheet_would_split() {
        let text = csv(&sample()).unwrap();
        let mut reader = ::csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(&rows[1][4], "b<script>");
        assert_eq!(&rows[1][6], "SSE-S3, \"not\" KMS");
        assert_eq!(&rows[1][7], "s3-enable-default-encryption");
    }

    #[test]
    fn the_page_counts_per_rule_and_service_and_escapes_what_it_shows() {
        let page = html(&sample(), "2026-11-26T21:00:00Z");
        assert!(page.contains(r#"data-rule="s3-default-encryption-kms" data-compliance="NON_COMPLIANT">1<"#), "{page}");
        assert!(page.contains(r#"data-service="EC2" data-compliance="NOT_APPLICABLE">1<"#));
        assert!(page.contains(r#"data-total="NON_COMPLIANT">2<"#));
        assert!(!page.contains("b<script>") && page.contains("b&lt;script&gt;"));
        assert!(page.contains("disruptive: run it by name"), "the volume swap is named as disruptive");
        assert!(!page.contains("<script") && !page.contains("http"), "self-contained: no script, no external file");
    }
}
