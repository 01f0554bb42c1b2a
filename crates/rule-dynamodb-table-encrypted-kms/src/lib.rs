//! `dynamodb-table-encrypted-kms`: every DynamoDB table is encrypted with a KMS key.
//!
//! Mirrors the managed rule `DYNAMODB_TABLE_ENCRYPTED_KMS` (parameter `kmsKeyArns`): a table
//! still on DynamoDB's default, the AWS owned key, is NON_COMPLIANT; so is a table whose KMS key
//! is not in `kmsKeyArns` when that is set (the AWS managed key `aws/dynamodb` included, unless
//! it is in the list). Resource id: the table name, as Config reports `AWS::DynamoDB::Table`.
//!
//! DynamoDB reports the encryption in `SSEDescription` (`Status` ENABLED or UPDATING, `SSEType`
//! KMS, `KMSMasterKeyArn`); a table on the AWS owned key has no `SSEDescription` at all. Config
//! records it in the item's configuration (lower-camel `ssedescription`), so a change is judged
//! from the item alone (apart from resolving key aliases in `kmsKeyArns`). Periodic sweeps page
//! through `ListTables` and describe each table.

use atrest::error::{Result, aws_error};
use atrest::item::{ConfigurationItem, field, field_str};
use atrest::rule::TriggerKind;
use atrest::{ConfigRule, Discovered, ParamKind, ParamSpec, RuleContext, RuleSpec, Verdict, async_trait};
use serde_json::{Value, json};

pub const RESOURCE_TYPE: &str = "AWS::DynamoDB::Table";

pub static SPEC: RuleSpec = RuleSpec {
    name: "dynamodb-table-encrypted-kms",
    description: "DynamoDB tables are encrypted with a KMS key (not the AWS owned key); optionally one of the approved keys.",
    resource_types: &[RESOURCE_TYPE],
    triggers: &[TriggerKind::ConfigurationChange, TriggerKind::Periodic],
    parameters: &[ParamSpec {
        name: "kmsKeyArns",
        kind: ParamKind::List,
        default: "",
        description: "Comma-separated approved KMS keys (key ARNs, key ids, aliases or alias ARNs). Empty: any KMS key.",
    }],
    mirrors: Some("DYNAMODB_TABLE_ENCRYPTED_KMS"),
    fix: Some("dynamodb-encrypt-table"),
};

/// A table's encryption as its item records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableEncryption {
    /// No `SSEDescription`: DynamoDB's default, the AWS owned key.
    AwsOwnedKey,
    /// `SSEDescription` with SSE type KMS; `status` is ENABLED or UPDATING (a key change in
    /// progress; the key reported is the one in use until it ends).
    Kms { status: String, key_arn: Option<String> },
    /// Anything else DynamoDB may report (a status or type it does not document today).
    Other { status: Option<String>, sse_type: Option<String> },
}

/// Reads the encryption from an item's configuration (field names compared without case: the
/// notification's `ssedescription`/`kmsmasterKeyArn`, the API's `SSEDescription`/`KMSMasterKeyArn`).
pub fn table_encryption(configuration: &Value) -> TableEncryption {
    let Some(sse) = field(configuration, "ssedescription").or_else(|| field(configuration, "sseDescription")) else {
        return TableEncryption::AwsOwnedKey;
    };
    let status = field_str(sse, "status").map(str::to_string);
    let sse_type = field_str(sse, "ssetype").or_else(|| field_str(sse, "sseType")).map(str::to_string);
    let key_arn = field_str(sse, "kmsmasterKeyArn").or_else(|| field_str(sse, "kmsMasterKeyArn")).filter(|k| !k.is_empty());
    match (status.as_deref(), sse_type.as_deref()) {
        (Some(s @ ("ENABLED" | "ENABLING" | "UPDATING")), Some("KMS") | None) => {
            TableEncryption::Kms { status: s.to_string(), key_arn: key_arn.map(str::to_string) }
        }
        // Neither ENABLED nor being enabled: the table is (going back) on the AWS owned key.
        (Some("DISABLED" | "DISABLING"), _) | (None, None) => TableEncryption::AwsOwnedKey,
        _ => TableEncryption::Other { status, sse_type },
    }
}

pub struct DynamodbTableEncryptedKms;

#[async_trait]
impl ConfigRule for DynamodbTableEncryptedKms {
    fn spec(&self) -> &'static RuleSpec {
        &SPEC
    }

    fn needs_live_state(&self, item: &ConfigurationItem) -> bool {
        // A missing SSEDescription means the AWS owned key, so only an item that describes the
        // table at all can be judged; a trimmed one is read live.
        field(&item.configuration, "tableName").is_none() && field(&item.configuration, "tableStatus").is_none()
    }

    async fn judge(&self, ctx: &RuleContext, item: &ConfigurationItem) -> Result<Verdict> {
        // The annotation leaves the table's name out: Config shows it beside the result, and a
        // name of up to 255 characters would push the reason past the 256-character limit.
        let approved = ctx.params.list("kmsKeyArns");
        match table_encryption(&item.configuration) {
            TableEncryption::AwsOwnedKey => Ok(Verdict::non_compliant(
                "The table is encrypted with the AWS owned key (DynamoDB's default), not a KMS key in this account.",
            )),
            TableEncryption::Other { status, sse_type } => Ok(Verdict::non_compliant(format!(
                "The table reports encryption status {} and type {}, not KMS.",
                status.as_deref().unwrap_or("(none)"),
                sse_type.as_deref().unwrap_or("(none)")
            ))),
            TableEncryption::Kms { status, key_arn } => {
                let updating = if status == "ENABLED" { String::new() } else { format!(" (encryption {status})") };
                match key_arn {
                    None if !approved.is_empty() => Ok(Verdict::non_compliant(format!(
                        "The table uses KMS but reports no key{updating}; kmsKeyArns requires one of the approved keys."
                    ))),
                    None => Ok(Verdict::compliant(format!("The table is encrypted with KMS{updating}."))),
                    Some(key) if approved.is_empty() || ctx.kms.is_one_of(&key, approved).await? => {
                        Ok(Verdict::compliant(format!("The table is encrypted with KMS key {key}{updating}.")))
                    }
                    Some(key) => Ok(Verdict::non_compliant(format!(
                        "The table is encrypted with KMS key {key}, which is not in kmsKeyArns{updating}."
                    ))),
                }
            }
        }
    }

    async fn discover(&self, ctx: &RuleContext) -> Result<Vec<Discovered>> {
        let dynamodb = ctx.client(aws_sdk_dynamodb::Client::new);
        let mut found = Vec::new();
        let mut pages = dynamodb.list_tables().limit(100).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("dynamodb:ListTables", "the region's tables", e))?;
            found.extend(
                page.table_names()
                    .iter()
                    .map(|name| Discovered::Id { resource_type: RESOURCE_TYPE.to_string(), resource_id: name.clone() }),
            );
        }
        Ok(found)
    }

    async fn fetch_item(&self, ctx: &RuleContext, _resource_type: &str, table: &str) -> Result<Option<ConfigurationItem>> {
        let dynamodb = ctx.client(aws_sdk_dynamodb::Client::new);
        let description = match dynamodb.describe_table().table_name(table).send().await {
            Ok(out) => out.table,
            Err(e) => {
                let err = aws_error("dynamodb:DescribeTable", table, e);
                return if err.aws_code() == Some("ResourceNotFoundException") { Ok(None) } else { Err(err) };
            }
        };
        let Some(description) = description else { return Ok(None) };
        let mut item = table_item(table, &description);
        if let Some(arn) = description.table_arn() {
            let mut next: Option<String> = None;
            loop {
                let out = dynamodb
                    .list_tags_of_resource()
                    .resource_arn(arn)
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| aws_error("dynamodb:ListTagsOfResource", table, e))?;
                item.tags.extend(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())));
                match out.next_token {
                    Some(token) if !token.is_empty() => next = Some(token),
                    _ => break,
                }
            }
        }
        Ok(Some(item))
    }
}

/// A live table in the configuration item's shape (the fields Config records for
/// `AWS::DynamoDB::Table`, lower-camel; `ssedescription` only when DynamoDB reports one).
pub fn table_item(table: &str, description: &aws_sdk_dynamodb::types::TableDescription) -> ConfigurationItem {
    let mut configuration = json!({
        "tableName": description.table_name().unwrap_or(table),
        "tableArn": description.table_arn(),
        "tableStatus": description.table_status().map(|s| s.as_str()),
    });
    if let Some(sse) = description.sse_description() {
        configuration["ssedescription"] = json!({
            "status": sse.status().map(|s| s.as_str()),
            "ssetype": sse.sse_type().map(|t| t.as_str()),
            "kmsmasterKeyArn": sse.kms_master_key_arn(),
        });
    }
    let mut item = ConfigurationItem::live(RESOURCE_TYPE, table, configuration);
    item.arn = description.table_arn().map(str::to_string);
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use atrest::Compliance;
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn sdk() -> SdkConfig {
        // No endpoint is reachable: these tests must decide without calling AWS.
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build()
    }

    fn item(sse: Option<Value>) -> ConfigurationItem {
        let mut configuration = json!({"tableName": "orders", "tableStatus": "ACTIVE"});
        if let Some(sse) = sse {
            configuration["ssedescription"] = sse;
        }
        ConfigurationItem::live(RESOURCE_TYPE, "orders", configuration)
    }

    async fn judge(params: Value, item: &ConfigurationItem) -> Verdict {
        let raw = params.as_object().unwrap().clone().into_iter().collect();
        let ctx = RuleContext::new(&sdk(), SPEC.parse_params(&raw).unwrap());
        DynamodbTableEncryptedKms.judge(&ctx, item).await.unwrap()
    }

    #[tokio::test]
    async fn verdict_table() {
        let kms = |status: &str, key: Option<&str>| Some(json!({"status": status, "ssetype": "KMS", "kmsmasterKeyArn": key}));
        let cases: Vec<(&str, Value, Option<Value>, Compliance, &str)> = vec![
            ("AWS owned key (no SSEDescription)", json!({}), None, Compliance::NonCompliant, "AWS owned key"),
            ("KMS, any key", json!({}), kms("ENABLED", Some(KEY)), Compliance::Compliant, KEY),
            ("KMS, approved key", json!({"kmsKeyArns": format!("{OTHER},{KEY}")}), kms("ENABLED", Some(KEY)), Compliance::Compliant, KEY),
            ("KMS, unapproved key", json!({"kmsKeyArns": OTHER}), kms("ENABLED", Some(KEY)), Compliance::NonCompliant, "not in kmsKeyArns"),
            (
                "a key change in progress is judged by the key in use",
                json!({}),
                kms("UPDATING", Some(KEY)),
                Compliance::Compliant,
                "UPDATING",
            ),
            ("KMS with no key, list set", json!({"kmsKeyArns": KEY}), kms("ENABLED", None), Compliance::NonCompliant, "reports no key"),
            ("going back to the AWS owned key", json!({}), kms("DISABLING", None), Compliance::NonCompliant, "AWS owned key"),
            (
                "an undocumented type",
                json!({}),
                Some(json!({"status": "ENABLED", "ssetype": "AES256"})),
                Compliance::NonCompliant,
                "type AES256",
            ),
            (
                "the API's field names",
                json!({"kmsKeyArns": KEY}),
                Some(json!({"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": KEY})),
                Compliance::Compliant,
                KEY,
            ),
        ];
        for (name, params, sse, expected, says) in cases {
            let verdict = judge(params, &item(sse)).await;
            assert_eq!(verdict.compliance, expected, "{name}: {}", verdict.annotation);
            assert!(verdict.annotation.contains(says), "{name}: {}", verdict.annotation);
        }
    }

    #[test]
    fn only_a_trimmed_item_is_read_live() {
        assert!(!DynamodbTableEncryptedKms.needs_live_state(&item(None)));
        assert!(DynamodbTableEncryptedKms.needs_live_state(&ConfigurationItem::live(RESOURCE_TYPE, "orders", json!({}))));
    }
}
