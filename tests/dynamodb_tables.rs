//! DynamoDB tables end to end against the local stand-in, over HTTP, with the real SDK: the rule
//! `dynamodb-table-encrypted-kms` (change events judged from the item alone, periodic sweeps over
//! ListTables + DescribeTable) and the fix `dynamodb-encrypt-table` (UpdateTable SSESpecification,
//! read back). moto 5.2.5 ignores SSESpecification on UpdateTable; tests/moto/atrest_moto_dynamodb.py
//! applies it as AWS documents. The UPDATING interval moto cannot show is tested with
//! aws-smithy-mocks in the fix crate (crates/fix-dynamodb-encrypt-table/tests/mocked.rs).

use std::sync::Arc;

use atrest::alerts::AlertPublisher;
use atrest::rule::RuleRunner;
use atrest::{Compliance, FixRunner, FixStatus};
use atrest_testkit::{adapt_event, load_event, result_for, sdk, sns_messages, topic, unique};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification, SseType, Tag,
};
use aws_smithy_types::DateTime;
use fix_dynamodb_encrypt_table::DynamodbEncryptTable;
use rule_dynamodb_table_encrypted_kms::DynamodbTableEncryptedKms;
use serde_json::{Value, json};

const DIR: &str = "dynamodb-table-encrypted-kms";

fn dynamodb(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// A table on DynamoDB's default (the AWS owned key), or on `sse` when given.
async fn create_table(sdk: &SdkConfig, prefix: &str, sse: Option<SseSpecification>, tags: &[(&str, &str)]) -> String {
    let name = unique(prefix);
    dynamodb(sdk)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .set_sse_specification(sse)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap()).collect()))
        .send()
        .await
        .expect("CreateTable");
    dynamodb(sdk)
        .put_item()
        .table_name(&name)
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("order-1".into()))
        .send()
        .await
        .unwrap();
    name
}

async fn customer_key(sdk: &SdkConfig) -> (String, String) {
    let kms = atrest::clients::kms(sdk);
    let key = kms.create_key().send().await.expect("CreateKey").key_metadata().unwrap().clone();
    let alias = format!("alias/{}", unique("ddb"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.expect("CreateAlias");
    (alias, key.arn().unwrap().to_string())
}

/// (status, key ARN) as DescribeTable reports them; `None` for the AWS owned key.
async fn encryption(sdk: &SdkConfig, table: &str) -> Option<(String, Option<String>)> {
    let out = dynamodb(sdk).describe_table().table_name(table).send().await.expect("DescribeTable");
    out.table()
        .and_then(|t| t.sse_description())
        .map(|s| (s.status().map(|s| s.as_str().to_string()).unwrap_or_default(), s.kms_master_key_arn().map(str::to_string)))
}

fn rename(table: &str) -> impl FnOnce(&mut Value) + '_ {
    move |invoking| {
        let item = &mut invoking["configurationItem"];
        item["resourceId"] = json!(table);
        item["resourceName"] = json!(table);
        item["configuration"]["tableName"] = json!(table);
    }
}

#[tokio::test]
async fn change_events_are_judged_from_the_item_alone() {
    let sdk = sdk().await;
    let rule = unique("rule-ddb-change");
    let runner = RuleRunner::new(Arc::new(DynamodbTableEncryptedKms), &sdk);
    // No table exists under these names: the verdicts come from the items.
    let (owned, kms) = (unique("never-created"), unique("never-created"));
    runner.handle_lambda(adapt_event(load_event(&format!("{DIR}/change-aws-owned-key.json")), &rule, rename(&owned))).await.unwrap();
    runner.handle_lambda(adapt_event(load_event(&format!("{DIR}/change-kms.json")), &rule, rename(&kms))).await.unwrap();
    let stored = result_for(&sdk, &rule, &owned).await.expect("stored");
    assert_eq!((stored.resource_type.as_str(), stored.compliance.as_str()), ("AWS::DynamoDB::Table", "NON_COMPLIANT"));
    assert!(stored.annotation.unwrap().contains("AWS owned key"));
    assert_eq!(result_for(&sdk, &rule, &kms).await.unwrap().compliance, "COMPLIANT");

    // With an approved-key list the sample's key is not in it: NON_COMPLIANT, still without a call.
    let mut event = adapt_event(load_event(&format!("{DIR}/change-kms.json")), &rule, rename(&kms));
    event["ruleParameters"] =
        json!(json!({"kmsKeyArns": "arn:aws:kms:us-east-1:123456789012:key/ffffffff-0000-0000-0000-000000000000"}).to_string());
    runner.handle_lambda(event).await.unwrap();
    let stored = result_for(&sdk, &rule, &kms).await.unwrap();
    assert_eq!(stored.compliance, "NON_COMPLIANT");
    assert!(stored.annotation.unwrap().contains("not in kmsKeyArns"));
}

#[tokio::test]
async fn an_oversized_item_is_read_live() {
    // The stand-in's Config keeps no history for DynamoDB tables (as for any resource Config has
    // not recorded): the runtime falls back to the rule's DescribeTable.
    let sdk = sdk().await;
    let rule = unique("rule-ddb-oversized");
    let table = create_table(&sdk, "ddb-oversized", None, &[]).await;
    let event = adapt_event(load_event(&format!("{DIR}/oversized.json")), &rule, |invoking| {
        invoking["configurationItemSummary"]["resourceId"] = json!(table);
        invoking["configurationItemSummary"]["resourceName"] = json!(table);
    });
    RuleRunner::new(Arc::new(DynamodbTableEncryptedKms), &sdk).handle_lambda(event).await.unwrap();
    let stored = result_for(&sdk, &rule, &table).await.expect("stored");
    assert_eq!(stored.compliance, "NON_COMPLIANT", "{stored:?}");
    assert!(stored.annotation.unwrap().contains("AWS owned key"));
}

#[tokio::test]
async fn a_sweep_judges_every_table_live_and_honours_the_exemption_tag() {
    let sdk = sdk().await;
    let (alias, key_arn) = customer_key(&sdk).await;
    let owned = create_table(&sdk, "ddb-owned", None, &[]).await;
    let exempt = create_table(&sdk, "ddb-exempt", None, &[("atrest:exempt", "true")]).await;
    let kms = SseSpecification::builder().enabled(true).sse_type(SseType::Kms).kms_master_key_id(&key_arn).build();
    let encrypted = create_table(&sdk, "ddb-kms", Some(kms), &[]).await;

    let runner = RuleRunner::new(Arc::new(DynamodbTableEncryptedKms), &sdk);
    let verdict = |report: &atrest::rule::Report, table: &str| {
        report.evaluations.iter().find(|e| e.compliance_resource_id == table).map(|e| (e.compliance_type, e.annotation.clone()))
    };
    let report = runner.sweep(rule_params(json!({})), DateTime::from_secs(0), None).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(verdict(&report, &owned).map(|v| v.0), Some(Compliance::NonCompliant));
    assert_eq!(verdict(&report, &exempt).map(|v| v.0), Some(Compliance::NotApplicable));
    assert_eq!(verdict(&report, &encrypted).map(|v| v.0), Some(Compliance::Compliant));

    // The approved key named by alias: resolved with DescribeKey, then compared as ARNs.
    let report = runner.sweep(rule_params(json!({"kmsKeyArns": alias})), DateTime::from_secs(0), None).await.unwrap();
    assert_eq!(verdict(&report, &encrypted).map(|v| v.0), Some(Compliance::Compliant));
    let report = runner.sweep(rule_params(json!({"kmsKeyArns": "alias/aws/dynamodb"})), DateTime::from_secs(0), None).await.unwrap();
    let (compliance, annotation) = verdict(&report, &encrypted).unwrap();
    assert_eq!(compliance, Compliance::NonCompliant, "{annotation:?}");
}

fn rule_params(json: Value) -> atrest::Params {
    rule_dynamodb_table_encrypted_kms::SPEC.parse_params(&json.as_object().unwrap().clone().into_iter().collect()).unwrap()
}

fn payload(table: &str, key: &str, dry_run: bool) -> Value {
    let mut p = load_event("fix-dynamodb-encrypt-table/ssm-payload.json");
    p["ResourceId"] = json!(table);
    p["KmsKeyId"] = json!(key);
    p["DryRun"] = json!(dry_run.to_string());
    p
}

#[tokio::test]
async fn the_fix_moves_a_table_to_the_aws_managed_key_converges_and_keeps_the_data() {
    let sdk = sdk().await;
    let table = create_table(&sdk, "ddb-fix", None, &[("team", "orders")]).await;
    let alerts = topic(&sdk, &unique("alerts")).await;
    let fix = FixRunner::new(Arc::new(DynamodbEncryptTable), &sdk, Some(AlertPublisher::new(&sdk, &alerts)));

    let dry = fix.step(&payload(&table, "", true)).await;
    assert_eq!(dry.status, FixStatus::Succeeded, "{dry:?}");
    assert!(dry.message.contains("would set") && dry.changes.len() == 1, "{dry:?}");
    assert_eq!(encryption(&sdk, &table).await, None, "a dry run changes nothing");

    let done = fix.step(&payload(&table, "", false)).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{done:?}");
    assert!(done.message.contains("verified by reading it back") && done.message.contains("stayed available"), "{}", done.message);
    let managed = atrest::clients::kms(&sdk).describe_key().key_id("alias/aws/dynamodb").send().await.unwrap();
    let managed_arn = managed.key_metadata().unwrap().arn().unwrap().to_string();
    assert_eq!(encryption(&sdk, &table).await, Some(("ENABLED".into(), Some(managed_arn))));

    let again = fix.step(&payload(&table, "", false)).await;
    assert_eq!(again.status, FixStatus::Succeeded);
    assert!(again.changes.is_empty() && again.message.contains("nothing more to change"), "{again:?}");

    // The data and the tags are untouched; the rule now judges the table compliant.
    let item =
        dynamodb(&sdk).get_item().table_name(&table).key("pk", aws_sdk_dynamodb::types::AttributeValue::S("order-1".into())).send().await;
    assert!(item.unwrap().item().is_some(), "the item is still there");
    let rule = DynamodbTableEncryptedKms;
    let ctx = atrest::RuleContext::new(&sdk, rule_params(json!({})));
    let live = atrest::ConfigRule::fetch_item(&rule, &ctx, "AWS::DynamoDB::Table", &table).await.unwrap().unwrap();
    assert_eq!(live.tag("team"), Some("orders"));
    assert_eq!(atrest::ConfigRule::judge(&rule, &ctx, &live).await.unwrap().compliance, Compliance::Compliant);

    let emails = sns_messages(&alerts).await;
    assert_eq!(emails.len(), 2, "one email per finished real run, none for the dry run: {emails:?}");
    assert!(emails[0].1.contains(&table) && emails[0].1.contains("aws/dynamodb"), "{}", emails[0].1);
}

#[tokio::test]
async fn the_fix_switches_to_a_customer_key_named_by_alias() {
    let sdk = sdk().await;
    let (alias, key_arn) = customer_key(&sdk).await;
    let table = create_table(&sdk, "ddb-cmk", None, &[]).await;
    let fix = FixRunner::new(Arc::new(DynamodbEncryptTable), &sdk, None);
    let done = fix.step(&payload(&table, &alias, false)).await;
    assert_eq!(done.status, FixStatus::Succeeded, "{done:?}");
    assert_eq!(encryption(&sdk, &table).await, Some(("ENABLED".into(), Some(key_arn.clone()))));
    // Asked again by key ARN: the same key, nothing to do.
    let again = fix.step(&payload(&table, &key_arn, false)).await;
    assert!(again.changes.is_empty() && again.status == FixStatus::Succeeded, "{again:?}");
    // The rule with that key approved (by alias) agrees.
    let rule = DynamodbTableEncryptedKms;
    let ctx = atrest::RuleContext::new(&sdk, rule_params(json!({"kmsKeyArns": alias})));
    let live = atrest::ConfigRule::fetch_item(&rule, &ctx, "AWS::DynamoDB::Table", &table).await.unwrap().unwrap();
    assert_eq!(atrest::ConfigRule::judge(&rule, &ctx, &live).await.unwrap().compliance, Compliance::Compliant);
}

#[tokio::test]
async fn bad_keys_and_missing_tables_fail_clearly_and_change_nothing() {
    let sdk = sdk().await;
    let table = create_table(&sdk, "ddb-bad", None, &[]).await;
    let kms = atrest::clients::kms(&sdk);
    let disabled = kms.create_key().send().await.unwrap().key_metadata().unwrap().key_id().to_string();
    kms.disable_key().key_id(&disabled).send().await.unwrap();
    let asymmetric = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    let fix = FixRunner::new(Arc::new(DynamodbEncryptTable), &sdk, None);
    for (key, says) in [
        ("alias/no-such-key", "was not found"),
        (disabled.as_str(), "Disabled"),
        (asymmetric.as_str(), "RSA_2048"),
        ("not a key!", "KmsKeyId"),
    ] {
        let outcome = fix.step(&payload(&table, key, false)).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{key}");
        assert!(outcome.message.contains("KmsKeyId") && outcome.message.contains(says), "{key}: {}", outcome.message);
    }
    assert_eq!(encryption(&sdk, &table).await, None);
    let missing = fix.step(&payload(&unique("no-such-table"), "", false)).await;
    assert_eq!(missing.status, FixStatus::Failed);
    assert!(missing.message.contains("does not exist"), "{}", missing.message);
}

/// What a sweep costs, counted at the wire (through the clean fault proxy, in a Region no other
/// test uses): ListTables once per 100 tables, then DescribeTable and ListTagsOfResource per table.
#[tokio::test]
async fn a_sweep_costs_two_calls_per_table() {
    use atrest_testkit::faults::{FaultPlan, FaultProxy};
    const REGION: &str = "me-central-1";
    let direct = sdk().await.to_builder().region(aws_config::Region::new(REGION)).build();
    let (_, key_arn) = customer_key(&direct).await;
    let kms = SseSpecification::builder().enabled(true).sse_type(SseType::Kms).kms_master_key_id(&key_arn).build();
    let tables = [
        create_table(&direct, "ddb-count", None, &[]).await,
        create_table(&direct, "ddb-count", Some(kms.clone()), &[]).await,
        create_table(&direct, "ddb-count", Some(kms), &[("team", "a")]).await,
    ];
    let proxy = FaultProxy::start(&atrest_testkit::endpoint(), FaultPlan::clean()).await;
    let through_proxy = atrest_testkit::sdk_at(&proxy.endpoint(), std::time::Duration::from_secs(10))
        .await
        .to_builder()
        .region(aws_config::Region::new(REGION))
        .build();
    let report = RuleRunner::new(Arc::new(DynamodbTableEncryptedKms), &through_proxy)
        .sweep(rule_params(json!({"kmsKeyArns": key_arn})), DateTime::from_secs(0), None)
        .await
        .unwrap();
    let verdicts: Vec<Compliance> =
        tables.iter().map(|t| report.evaluations.iter().find(|e| &e.compliance_resource_id == t).unwrap().compliance_type).collect();
    assert_eq!(verdicts, [Compliance::NonCompliant, Compliance::Compliant, Compliance::Compliant]);
    let mut calls = std::collections::BTreeMap::new();
    for exchange in proxy.log() {
        *calls.entry(exchange.operation).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<String, i32> =
        [("ListTables", 1), ("DescribeTable", 3), ("ListTagsOfResource", 3)].map(|(k, v)| (k.to_string(), v)).into();
    assert_eq!(calls, expected);
}
