//! `fix-dynamodb-encrypt-table`: switch a DynamoDB table from the AWS owned key to KMS.
//!
//! Reconciler: observe `DescribeTable` → the pure [`plan`] → at most one `UpdateTable` with
//! `SSESpecification {Enabled: true, SSEType: KMS, KMSMasterKeyId}` (the key's ARN, or omitted for
//! the AWS managed key `aws/dynamodb`) → observe again. DynamoDB applies the change in the
//! background (`SSEDescription.Status` UPDATING, then ENABLED), so the fix answers `InProgress`
//! until the table reports ENABLED with the expected key (compared as key ARNs), and any turn
//! finds the change again in DynamoDB: nothing is kept in memory.
//!
//! Non-disruptive: the table stays readable and writable while its encryption changes (DynamoDB
//! developer guide, "Managing encrypted tables"); nothing else about the table changes. A table
//! that already uses a KMS key is never moved to another key unless a key was asked for.

use atrest::error::{Error, Result, aws_error};
use atrest::kms::KMS_KEY_PARAM;
use atrest::remediation::FixContext;
use atrest::{Fix, FixOutcome, FixRequest, FixSpec, ParamKind, ParamSpec, async_trait};
use aws_sdk_dynamodb::types::{SseSpecification, SseType, TableDescription};

pub const RESOURCE_TYPE: &str = "AWS::DynamoDB::Table";

pub static SPEC: FixSpec = FixSpec {
    name: "dynamodb-encrypt-table",
    description: "Switch a DynamoDB table to KMS encryption (the AWS managed key aws/dynamodb or a given key) and verify it.",
    resource_types: &[RESOURCE_TYPE],
    parameters: &[ParamSpec {
        name: KMS_KEY_PARAM,
        kind: ParamKind::KmsKey,
        default: "",
        description: "Symmetric KMS key (key id, key ARN, alias or alias ARN). Empty: the AWS managed key aws/dynamodb.",
    }],
    disruptive: false,
};

/// What `DescribeTable` says, as far as the fix cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub table_status: String,
    /// `SSEDescription.Status`; `None` when the table has none (the AWS owned key).
    pub sse_status: Option<String>,
    pub sse_type: Option<String>,
    pub key_arn: Option<String>,
    /// Regions of the table's global table replicas (other than this one).
    pub replica_regions: Vec<String>,
}

impl Observed {
    pub fn from_description(table: &TableDescription, own_region: &str) -> Self {
        let sse = table.sse_description();
        Observed {
            table_status: table.table_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            sse_status: sse.and_then(|s| s.status()).map(|s| s.as_str().to_string()),
            sse_type: sse.and_then(|s| s.sse_type()).map(|t| t.as_str().to_string()),
            key_arn: sse.and_then(|s| s.kms_master_key_arn()).map(str::to_string),
            replica_regions: table
                .replicas()
                .iter()
                .filter_map(|r| r.region_name())
                .filter(|r| *r != own_region)
                .map(str::to_string)
                .collect(),
        }
    }

    fn encryption(&self) -> String {
        match (&self.sse_status, &self.key_arn) {
            (None, _) => "the AWS owned key".into(),
            (Some(status), Some(key)) => format!("KMS key {key} ({status})"),
            (Some(status), None) => format!("KMS ({status})"),
        }
    }
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The table reports ENABLED KMS with the wanted key (any key when none was asked).
    Done,
    /// DynamoDB is busy with this table (its own update, or ours): look again later.
    Wait(String),
    /// The table cannot be changed now or by this fix.
    Refuse(String),
    /// `UpdateTable` with the SSE specification.
    Update,
}

/// Pure: what to do with a table as observed, given the key ARN wanted (`None`: the AWS managed
/// key, or any KMS key the table already has).
pub fn plan(observed: &Observed, wanted_key_arn: Option<&str>) -> Plan {
    match observed.table_status.as_str() {
        "ACTIVE" => {}
        status @ ("CREATING" | "UPDATING") => return Plan::Wait(format!("the table is {status}")),
        "INACCESSIBLE_ENCRYPTION_CREDENTIALS" => {
            return Plan::Refuse("DynamoDB cannot reach the table's current KMS key: restore access to that key first".into());
        }
        other => return Plan::Refuse(format!("the table is {other}")),
    }
    match observed.sse_status.as_deref() {
        Some("ENABLED") => {}
        Some(status @ ("UPDATING" | "ENABLING" | "DISABLING")) => return Plan::Wait(format!("its encryption is {status}")),
        _ => return Plan::Update,
    }
    if observed.sse_type.as_deref().is_some_and(|t| t != "KMS") {
        return Plan::Update;
    }
    match (wanted_key_arn, observed.key_arn.as_deref()) {
        (None, _) => Plan::Done,
        // Both sides are key ARNs (DynamoDB reports KMSMasterKeyArn; the wanted key was resolved).
        (Some(wanted), Some(have)) if wanted == have => Plan::Done,
        _ => Plan::Update,
    }
}

fn describe_target(key_arn: Option<&str>) -> String {
    match key_arn {
        Some(k) => format!("KMS key {k}"),
        None => "KMS (the AWS managed key aws/dynamodb, or the KMS key already in use)".into(),
    }
}

pub struct DynamodbEncryptTable;

impl DynamodbEncryptTable {
    /// The wanted key's ARN, after checking DynamoDB can use it: an Enabled symmetric
    /// encryption key (DynamoDB supports no other kind).
    async fn wanted_key(&self, ctx: &FixContext, req: &FixRequest) -> Result<Option<String>> {
        let Some(reference) = req.params.text(KMS_KEY_PARAM) else { return Ok(None) };
        let meta = ctx.kms.requested_key_metadata(reference).await?;
        let unusable = |why: String| {
            Err(Error::invalid_parameter(KMS_KEY_PARAM, format!("{reference} {why}; DynamoDB needs an Enabled symmetric encryption key")))
        };
        if meta.key_state().map(|s| s.as_str()) != Some("Enabled") {
            return unusable(format!("is {}", meta.key_state().map(|s| s.as_str()).unwrap_or("in an unknown state")));
        }
        if meta.key_spec().is_some_and(|s| s.as_str() != "SYMMETRIC_DEFAULT")
            || meta.key_usage().is_some_and(|u| u.as_str() != "ENCRYPT_DECRYPT")
        {
            return unusable(format!("is a {} key", meta.key_spec().map(|s| s.as_str()).unwrap_or("non-symmetric")));
        }
        Ok(meta.arn().map(str::to_string))
    }

    async fn observe(&self, dynamodb: &aws_sdk_dynamodb::Client, table: &str, region: &str) -> Result<Option<Observed>> {
        match dynamodb.describe_table().table_name(table).send().await {
            Ok(out) => Ok(out.table().map(|t| Observed::from_description(t, region))),
            Err(e) => {
                let err = aws_error("dynamodb:DescribeTable", table, e);
                if err.aws_code() == Some("ResourceNotFoundException") { Ok(None) } else { Err(err) }
            }
        }
    }
}

/// What to tell the operator about the table's other Regions.
fn replica_note(observed: &Observed) -> String {
    if observed.replica_regions.is_empty() {
        return String::new();
    }
    format!(
        " The table is a global table with replicas in {}: only this Region's replica was looked at; each replica is judged and fixed in its own Region.",
        observed.replica_regions.join(", ")
    )
}

#[async_trait]
impl Fix for DynamodbEncryptTable {
    fn spec(&self) -> &'static FixSpec {
        &SPEC
    }

    async fn reconcile(&self, ctx: &FixContext, req: &FixRequest) -> Result<FixOutcome> {
        let table = req.resource_id.as_str();
        let wanted = self.wanted_key(ctx, req).await?;
        let region = atrest::clients::region_name(&ctx.sdk);
        let dynamodb = ctx.client(aws_sdk_dynamodb::Client::new);
        let Some(observed) = self.observe(&dynamodb, table, &region).await? else {
            return Ok(FixOutcome::failed(
                &SPEC,
                req,
                format!("Table {table} does not exist (deleted since it was evaluated); nothing to do."),
            ));
        };
        let target = describe_target(wanted.as_deref());
        let change = format!("encryption of DynamoDB table {table}: {} -> {target}", observed.encryption());
        match plan(&observed, wanted.as_deref()) {
            Plan::Done => {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!(
                        "Table {table} is encrypted with {} (DynamoDB reports it ENABLED); nothing more to change.{}",
                        observed.encryption(),
                        replica_note(&observed)
                    ),
                ));
            }
            Plan::Refuse(why) => {
                return Ok(FixOutcome::failed(
                    &SPEC,
                    req,
                    format!("Nothing was changed: table {table} cannot be switched to {target}: {why}."),
                ));
            }
            // A dry run reports what a real run would wait for, without waiting.
            Plan::Wait(why) if req.dry_run => {
                return Ok(FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!("Dry run: {why}; a real run would wait, then set {change}. Nothing was changed."),
                ));
            }
            Plan::Wait(why) => {
                return Ok(FixOutcome::in_progress(&SPEC, req, format!("Waiting: {why} (table {table}); {target} is the goal.")));
            }
            Plan::Update if req.dry_run => {
                return Ok(
                    FixOutcome::succeeded(&SPEC, req, format!("Dry run: would set {change}. Nothing was changed.")).with_change(change)
                );
            }
            Plan::Update => {}
        }

        let sse = SseSpecification::builder().enabled(true).sse_type(SseType::Kms).set_kms_master_key_id(wanted.clone()).build();
        if let Err(e) = dynamodb.update_table().table_name(table).sse_specification(sse).send().await {
            let err = aws_error("dynamodb:UpdateTable", table, e);
            match err.aws_code() {
                // The table is busy (another update, or ours whose answer was lost and retried),
                // or too many updates at once: DynamoDB says wait and ask again.
                Some("ResourceInUseException" | "LimitExceededException") => {
                    return Ok(FixOutcome::in_progress(
                        &SPEC,
                        req,
                        format!("DynamoDB is busy with table {table} ({err}); will set {change} when it is free."),
                    ));
                }
                // A retried request whose first attempt landed may be refused as a no-op; what
                // DynamoDB reports now decides.
                _ => match self.observe(&dynamodb, table, &region).await? {
                    Some(now) if matches!(plan(&now, wanted.as_deref()), Plan::Done | Plan::Wait(_)) => {}
                    _ => return Err(err),
                },
            }
        }

        let now = self.observe(&dynamodb, table, &region).await?;
        let outcome = match now.as_ref().map(|n| plan(n, wanted.as_deref())) {
            Some(Plan::Done) => {
                let now = now.unwrap_or_default();
                FixOutcome::succeeded(
                    &SPEC,
                    req,
                    format!(
                        "Table {table} is now encrypted with {} (verified by reading it back). The table stayed available; nothing else was changed.{}",
                        now.encryption(),
                        replica_note(&now)
                    ),
                )
            }
            _ => FixOutcome::in_progress(&SPEC, req, format!("Asked DynamoDB to set {change}; waiting for it to report ENABLED.")),
        };
        Ok(outcome.with_change(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER: &str = "arn:aws:kms:us-east-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab";

    fn table(status: &str, sse: Option<(&str, Option<&str>)>) -> Observed {
        Observed {
            table_status: status.into(),
            sse_status: sse.map(|(s, _)| s.to_string()),
            sse_type: sse.map(|_| "KMS".to_string()),
            key_arn: sse.and_then(|(_, k)| k.map(str::to_string)),
            replica_regions: Vec::new(),
        }
    }

    #[test]
    fn plan_table() {
        let wait = |why: &str| Plan::Wait(why.into());
        let cases: Vec<(&str, Observed, Option<&str>, Plan)> = vec![
            ("AWS owned key -> AWS managed key", table("ACTIVE", None), None, Plan::Update),
            ("AWS owned key -> customer key", table("ACTIVE", None), Some(KEY), Plan::Update),
            ("already the key asked", table("ACTIVE", Some(("ENABLED", Some(KEY)))), Some(KEY), Plan::Done),
            ("another key: switch", table("ACTIVE", Some(("ENABLED", Some(OTHER)))), Some(KEY), Plan::Update),
            ("any KMS key, none asked: kept", table("ACTIVE", Some(("ENABLED", Some(OTHER)))), None, Plan::Done),
            ("our update in flight", table("ACTIVE", Some(("UPDATING", Some(OTHER)))), Some(KEY), wait("its encryption is UPDATING")),
            ("table being updated", table("UPDATING", None), None, wait("the table is UPDATING")),
            ("table being created", table("CREATING", None), Some(KEY), wait("the table is CREATING")),
            ("table being deleted", table("DELETING", None), None, Plan::Refuse("the table is DELETING".into())),
            ("archived", table("ARCHIVED", None), None, Plan::Refuse("the table is ARCHIVED".into())),
        ];
        for (name, observed, wanted, expected) in cases {
            assert_eq!(plan(&observed, wanted), expected, "{name}");
        }
        let locked = plan(&table("INACCESSIBLE_ENCRYPTION_CREDENTIALS", Some(("ENABLED", Some(OTHER)))), Some(KEY));
        assert!(matches!(&locked, Plan::Refuse(why) if why.contains("restore access")), "{locked:?}");
    }
}
