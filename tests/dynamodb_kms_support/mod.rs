//! Fault-sweep scenarios (tests/reliability_fixes.rs) for fix-dynamodb-encrypt-table and
//! fix-kms-enable-key-rotation: one resource per run, and after the fix reports `Succeeded` the
//! invariants straight from the stand-in: the rule judges the resource compliant, the setting is
//! exactly the one asked, nothing else about the resource changed (items, tags, key state,
//! description).

use std::collections::BTreeSet;
use std::sync::Arc;

use atrest::Fix;
use atrest_testkit::reliability::{FixScenario, Fixture, rule_judges_compliant};
use atrest_testkit::unique;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// fix-dynamodb-encrypt-table

/// A table on the AWS owned key, with items and tags; each run moves it to the AWS managed key
/// (`kms: false`) or to a customer key named by alias.
pub struct DynamoDbScenario {
    pub name: &'static str,
    pub kms: bool,
}

struct DynamoDbFixture {
    table: String,
    items: BTreeSet<String>,
    tags: BTreeSet<(String, String)>,
    /// (alias, key ARN) when the run asks for a customer managed key.
    kms: Option<(String, String)>,
}

async fn table_items(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<BTreeSet<String>, String> {
    let out = ddb.scan().table_name(table).send().await.map_err(|e| format!("Scan: {e:?}"))?;
    Ok(out.items().iter().filter_map(|i| i.get("pk")).filter_map(|v| v.as_s().ok().cloned()).collect())
}

async fn table_tags(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<BTreeSet<(String, String)>, String> {
    let arn = format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}");
    let out = ddb.list_tags_of_resource().resource_arn(arn).send().await.map_err(|e| format!("ListTagsOfResource: {e:?}"))?;
    Ok(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
}

#[atrest::async_trait]
impl FixScenario for DynamoDbScenario {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_dynamodb_encrypt_table::DynamodbEncryptTable)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = aws_sdk_dynamodb::Client::new(sdk).list_tables().limit(1).send().await;
        let _ = atrest::clients::kms(sdk).list_keys().limit(1).send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let table = unique("rel-ddb");
        let tags: BTreeSet<(String, String)> = [("team".to_string(), "orders".to_string())].into();
        ddb.create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
            )
            .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
            .set_tags(Some(tags.iter().map(|(k, v)| aws_sdk_dynamodb::types::Tag::builder().key(k).value(v).build().unwrap()).collect()))
            .send()
            .await
            .expect("CreateTable");
        let items: BTreeSet<String> = ["order-1", "order-2", "ünïcode order"].into_iter().map(str::to_string).collect();
        for pk in &items {
            ddb.put_item().table_name(&table).item("pk", AttributeValue::S(pk.clone())).send().await.expect("PutItem");
        }
        let kms = if self.kms {
            let client = atrest::clients::kms(sdk);
            let key = client.create_key().send().await.expect("CreateKey").key_metadata().unwrap().clone();
            let alias = format!("alias/{}", unique("rel-ddb"));
            client.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.expect("CreateAlias");
            Some((alias, key.arn().unwrap().to_string()))
        } else {
            None
        };
        Box::new(DynamoDbFixture { table, items, tags, kms })
    }
}

#[atrest::async_trait]
impl Fixture for DynamoDbFixture {
    fn payload(&self) -> Value {
        let mut p = json!({"ResourceId": self.table, "ExecutionId": "00000000-0000-4000-8000-00000000feed"});
        if let Some((alias, _)) = &self.kms {
            p["KmsKeyId"] = json!(alias);
        }
        p
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let params = match &self.kms {
            Some((alias, _)) => json!({"kmsKeyArns": alias}),
            None => json!({}),
        };
        let rule = rule_dynamodb_table_encrypted_kms::DynamodbTableEncryptedKms;
        if let Err(e) = rule_judges_compliant(&rule, sdk, params, "AWS::DynamoDB::Table", &self.table).await {
            v.push(e);
        }
        // Exactly the key asked: the customer key's ARN, or aws/dynamodb's.
        let expected = match &self.kms {
            Some((_, arn)) => Some(arn.clone()),
            None => atrest::clients::kms(sdk)
                .describe_key()
                .key_id("alias/aws/dynamodb")
                .send()
                .await
                .ok()
                .and_then(|o| o.key_metadata().and_then(|m| m.arn()).map(str::to_string)),
        };
        match ddb.describe_table().table_name(&self.table).send().await {
            Ok(out) => {
                let table = out.table();
                let sse = table.and_then(|t| t.sse_description());
                let reported = sse.and_then(|s| s.kms_master_key_arn()).map(str::to_string);
                if sse.and_then(|s| s.status()).map(|s| s.as_str()) != Some("ENABLED") || reported != expected {
                    v.push(format!("SSEDescription is {sse:?}, expected ENABLED with {expected:?}"));
                }
                if table.and_then(|t| t.table_status()).map(|s| s.as_str()) != Some("ACTIVE") {
                    v.push(format!("the table is {:?}", table.and_then(|t| t.table_status())));
                }
            }
            Err(e) => v.push(format!("DescribeTable: {e:?}")),
        }
        match table_items(&ddb, &self.table).await {
            Ok(items) if items == self.items => {}
            other => v.push(format!("items are {other:?}, expected {:?}", self.items)),
        }
        match table_tags(&ddb, &self.table).await {
            Ok(tags) if tags == self.tags => {}
            other => v.push(format!("tags are {other:?}, expected {:?}", self.tags)),
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// fix-kms-enable-key-rotation

/// A customer managed key, rotation off, with a description, tags and an alias; each run turns
/// rotation on with a 180-day period.
pub struct KmsRotationScenario;

struct KmsRotationFixture {
    key_id: String,
    description: String,
    alias: String,
    tags: BTreeSet<(String, String)>,
}

const ROTATION_DAYS: i32 = 180;

#[atrest::async_trait]
impl FixScenario for KmsRotationScenario {
    fn name(&self) -> &'static str {
        "kms-enable-key-rotation/period-180"
    }

    fn fix(&self, _sdk: &SdkConfig) -> Arc<dyn Fix> {
        Arc::new(fix_kms_enable_key_rotation::KmsEnableKeyRotation)
    }

    async fn warm_up(&self, sdk: &SdkConfig) {
        let _ = atrest::clients::kms(sdk).list_keys().limit(1).send().await;
    }

    async fn setup(&self, sdk: &SdkConfig) -> Box<dyn Fixture> {
        let kms = atrest::clients::kms(sdk);
        let description = unique("reliability key");
        let tags: BTreeSet<(String, String)> = [("team".to_string(), "payments".to_string())].into();
        let mut create = kms.create_key().description(&description);
        for (k, v) in &tags {
            create = create.tags(aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build().unwrap());
        }
        let key_id = create.send().await.expect("CreateKey").key_metadata().unwrap().key_id().to_string();
        let alias = format!("alias/{}", unique("rel-rotation"));
        kms.create_alias().alias_name(&alias).target_key_id(&key_id).send().await.expect("CreateAlias");
        Box::new(KmsRotationFixture { key_id, description, alias, tags })
    }
}

#[atrest::async_trait]
impl Fixture for KmsRotationFixture {
    fn payload(&self) -> Value {
        json!({"ResourceId": self.key_id, "ExecutionId": "00000000-0000-4000-8000-00000000feed",
               "RotationPeriodInDays": ROTATION_DAYS.to_string()})
    }

    async fn violations(&self, sdk: &SdkConfig) -> Vec<String> {
        let mut v = Vec::new();
        let kms = atrest::clients::kms(sdk);
        let rule = rule_cmk_backing_key_rotation_enabled::CmkBackingKeyRotationEnabled;
        if let Err(e) = rule_judges_compliant(&rule, sdk, json!({}), "AWS::KMS::Key", &self.key_id).await {
            v.push(e);
        }
        match kms.get_key_rotation_status().key_id(&self.key_id).send().await {
            Ok(s) if s.key_rotation_enabled() && s.rotation_period_in_days() == Some(ROTATION_DAYS) => {}
            other => v.push(format!("rotation is {other:?}, expected on every {ROTATION_DAYS} days")),
        }
        match kms.describe_key().key_id(&self.alias).send().await {
            Ok(out) => {
                let meta = out.key_metadata();
                if meta.map(|m| m.key_id()) != Some(self.key_id.as_str()) {
                    v.push(format!("the alias now names {:?}", meta.map(|m| m.key_id())));
                }
                if meta.and_then(|m| m.key_state()).map(|s| s.as_str()) != Some("Enabled") {
                    v.push(format!("the key is {:?}", meta.and_then(|m| m.key_state())));
                }
                if meta.and_then(|m| m.description()) != Some(self.description.as_str()) {
                    v.push(format!("the description is {:?}", meta.and_then(|m| m.description())));
                }
            }
            Err(e) => v.push(format!("DescribeKey by alias: {e:?}")),
        }
        match kms.list_resource_tags().key_id(&self.key_id).send().await {
            Ok(out) => {
                let tags: BTreeSet<(String, String)> =
                    out.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect();
                if tags != self.tags {
                    v.push(format!("tags are {tags:?}, expected {:?}", self.tags));
                }
            }
            Err(e) => v.push(format!("ListResourceTags: {e:?}")),
        }
        v
    }
}
