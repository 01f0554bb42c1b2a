//! `atrest demo`: a small unencrypted estate on the local stand-in, found, fixed, verified.
//!
//! The demo creates resources, so it refuses any endpoint that is not on this machine: it can
//! never touch a real AWS account.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use atrest::{Compliance, clients};
use atrest_automation::{RunOptions, Sleep};
use aws_config::SdkConfig;
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};

use crate::catalog;
use crate::commands::{RuleParams, remediate, sweep_with_params};
use crate::output::table;

const RULE: &str = "s3-bucket-server-side-encryption-enabled";

/// Every bucket has had SSE-S3 as its base level since January 2023 (the stand-in does as AWS
/// does), so the demo shows what a security team asks for on top: SSE-KMS.
fn kms_required() -> RuleParams {
    BTreeMap::from([(RULE.to_string(), BTreeMap::from([("requiredAlgorithm".to_string(), serde_json::json!("aws:kms"))]))])
}
const FIX_PARAMS: [(&str, &str); 1] = [("SSEAlgorithm", "aws:kms")];

/// Whether an endpoint URL points at this machine.
pub fn is_loopback(endpoint: &str) -> bool {
    let authority = endpoint.split("://").nth(1).unwrap_or(endpoint).split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub async fn run(sdk: &SdkConfig) -> anyhow::Result<bool> {
    match sdk.endpoint_url() {
        Some(url) if is_loopback(url) => {}
        Some(url) => bail!("refusing to run the demo against {url}: it creates resources, so it only runs against a local stand-in"),
        None => bail!("the demo needs the local stand-in: run `make demo` (or set AWS_ENDPOINT_URL to a local moto server)"),
    }
    let suffix = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() % 0xffff_ffff);
    let prefix = format!("atrest-demo-{suffix}");
    eprintln!("Seeding a small estate ({prefix}-*) on {}", sdk.endpoint_url().unwrap_or_default());
    seed(sdk, &prefix).await?;
    eprintln!("Rule {RULE} with requiredAlgorithm=aws:kms: every bucket has SSE-S3 already; SSE-KMS is required here.");

    let rule_params = kms_required();
    let fix_params: Vec<(String, String)> = FIX_PARAMS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (before, _) = sweep_with_params(sdk, &[RULE.to_string()], &rule_params).await?;
    let before: BTreeMap<String, (Compliance, String)> = before
        .into_iter()
        .filter(|e| e.evaluation.compliance_resource_id.starts_with(&prefix))
        .map(|e| (e.evaluation.compliance_resource_id, (e.evaluation.compliance_type, e.evaluation.annotation.unwrap_or_default())))
        .collect();

    let fix = catalog::rule(RULE).and_then(|r| r.spec().fix).context("the demo rule has no fix")?;
    // The stand-in answers at once: a short wait between turns instead of the document's 30 s.
    let options = RunOptions { max_turns: 20, sleep: Sleep::Fixed(Duration::from_millis(200)), on_progress: None };
    let mut results = BTreeMap::new();
    for (bucket, (compliance, _)) in &before {
        if *compliance == Compliance::NonCompliant {
            eprintln!("Remediating {bucket} with {fix}...");
            // By rule: its remediation configuration (the fix may serve other rules too).
            let outcome = remediate(sdk, RULE, bucket, &fix_params, false, &options, None).await?.outcome;
            let what = if outcome.changes.is_empty() { outcome.message.clone() } else { outcome.changes.join("; ") };
            results.insert(bucket.clone(), format!("{:?}: {what}", outcome.status));
        }
    }

    let (after, complete) = sweep_with_params(sdk, &[RULE.to_string()], &rule_params).await?;
    let after: BTreeMap<String, (Compliance, String)> = after
        .into_iter()
        .filter(|e| e.evaluation.compliance_resource_id.starts_with(&prefix))
        .map(|e| (e.evaluation.compliance_resource_id, (e.evaluation.compliance_type, e.evaluation.annotation.unwrap_or_default())))
        .collect();

    let mut t = table(&["Bucket", "Before", "After", "Remediation"]);
    for (bucket, (was, _)) in &before {
        let (now, note) = after.get(bucket).cloned().unwrap_or((Compliance::NotApplicable, "missing after remediation".into()));
        let remediation = results.get(bucket).cloned().unwrap_or_else(|| format!("none needed ({note})"));
        t.add_row(vec![bucket.clone(), was.to_string(), now.to_string(), remediation]);
    }
    println!("{t}");
    let all_compliant = complete && !after.is_empty() && after.values().all(|(c, _)| *c == Compliance::Compliant);
    eprintln!("{}", if all_compliant { "Every seeded bucket is now COMPLIANT." } else { "Some seeded buckets are still not COMPLIANT." });
    Ok(all_compliant)
}

async fn seed(sdk: &SdkConfig, prefix: &str) -> anyhow::Result<()> {
    let s3 = clients::s3(sdk);
    let kms = clients::kms(sdk);
    for name in ["logs", "reports", "backups", "kms"] {
        let bucket = format!("{prefix}-{name}");
        s3.create_bucket().bucket(&bucket).send().await.with_context(|| format!("creating bucket {bucket}"))?;
    }
    s3.put_bucket_tagging()
        .bucket(format!("{prefix}-reports"))
        .tagging(Tagging::builder().tag_set(Tag::builder().key("team").value("finance").build()?).build()?)
        .send()
        .await
        .context("tagging the reports bucket")?;
    let key = kms.create_key().description("atrest demo key").send().await.context("creating the demo KMS key")?;
    let key_arn = key.key_metadata().and_then(|m| m.arn()).context("the new key has no ARN")?.to_string();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::AwsKms).kms_master_key_id(key_arn).build()?,
        )
        .bucket_key_enabled(true)
        .build();
    s3.put_bucket_encryption()
        .bucket(format!("{prefix}-kms"))
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
        .send()
        .await
        .context("encrypting the kms bucket")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_endpoints_are_local() {
        assert!(super::is_loopback("http://127.0.0.1:5000"));
        assert!(super::is_loopback("http://localhost:5000/"));
        assert!(!super::is_loopback("https://s3.us-east-1.amazonaws.com"));
        assert!(!super::is_loopback("http://127.0.0.1.evil.example:80"));
        assert!(super::is_loopback("http://[::1]:5000"));
    }
}
