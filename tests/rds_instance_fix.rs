//! The RDS instance fix against the local stand-in (moto with atrest's RDS corrections): the
//! encrypted twin carries the source's settings, the source is never stopped or deleted, any
//! crash point resumes to exactly one target, the rename cutover needs WritesFrozen=true, and
//! dry runs change nothing.

use std::sync::Arc;
use std::time::Duration;

use atrest::alerts::AlertPublisher;
use atrest::remediation::DriveOptions;
use atrest::{FixOutcome, FixRequest, FixRunner, FixStatus};
use atrest_rds::{TAG_ENCRYPTED_FROM, TAG_REPLACED_BY, TAG_SOURCE_RESOURCE_ID, is_valid_identifier, tag_value};
use atrest_testkit::{load_event, sdk, sns_messages, topic, unique};
use aws_config::SdkConfig;
use aws_sdk_rds::types::{DbInstance, Tag};
use fix_rds_encrypt_instance::{RdsEncryptInstance, SPEC};
use rds_support::{SnapshotKind, manual_snapshot_ids, rds};
use serde_json::{Value, json};

#[path = "rds_support/mod.rs"]
mod rds_support;

fn runner(sdk: &SdkConfig, topic_arn: Option<&str>) -> FixRunner {
    FixRunner::new(Arc::new(RdsEncryptInstance), sdk, topic_arn.map(|t| AlertPublisher::new(sdk, t)))
}

fn payload(resource_id: &str, extra: Value) -> Value {
    let mut p = load_event("fix-rds-encrypt-instance/ssm-payload.json");
    p["ResourceId"] = json!(resource_id);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn request(resource_id: &str, extra: Value) -> FixRequest {
    FixRequest::decode(&SPEC, &payload(resource_id, extra)).unwrap()
}

const FAST: DriveOptions = DriveOptions { max_steps: 30, pause: Duration::ZERO };

/// The network an instance lives in: a subnet group over two subnets and two security groups.
struct Network {
    subnet_group: String,
    security_groups: Vec<String>,
}

async fn network(sdk: &SdkConfig) -> Network {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let vpc = ec2.create_vpc().cidr_block("10.20.0.0/16").send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_string();
    let mut subnets = Vec::new();
    for (cidr, az) in [("10.20.1.0/24", "us-east-1a"), ("10.20.2.0/24", "us-east-1b")] {
        let out = ec2.create_subnet().vpc_id(&vpc).cidr_block(cidr).availability_zone(az).send().await.unwrap();
        subnets.push(out.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    let mut security_groups = Vec::new();
    for name in ["app", "admin"] {
        let out = ec2.create_security_group().group_name(unique(name)).description("test").vpc_id(&vpc).send().await.unwrap();
        security_groups.push(out.group_id().unwrap().to_string());
    }
    let subnet_group = unique("subnets");
    rds(sdk)
        .create_db_subnet_group()
        .db_subnet_group_name(&subnet_group)
        .db_subnet_group_description("test")
        .set_subnet_ids(Some(subnets))
        .send()
        .await
        .unwrap();
    Network { subnet_group, security_groups }
}

/// An unencrypted MySQL instance with a custom subnet group, two security groups, parameter
/// and option groups, a non-default port, tags and deletion protection.
async fn unencrypted_instance(sdk: &SdkConfig, id: &str) -> DbInstance {
    let net = network(sdk).await;
    let client = rds(sdk);
    let pg = unique("params");
    client
        .create_db_parameter_group()
        .db_parameter_group_name(&pg)
        .db_parameter_group_family("mysql8.0")
        .description("t")
        .send()
        .await
        .unwrap();
    let og = unique("options");
    client
        .create_option_group()
        .option_group_name(&og)
        .engine_name("mysql")
        .major_engine_version("8.0")
        .option_group_description("t")
        .send()
        .await
        .unwrap();
    let out = client
        .create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.medium")
        .engine("mysql")
        .engine_version("8.0.35")
        .master_username("admin")
        .master_user_password("correct-horse-battery")
        .allocated_storage(20)
        .storage_type("gp3")
        .port(3307)
        .db_subnet_group_name(&net.subnet_group)
        .set_vpc_security_group_ids(Some(net.security_groups.clone()))
        .db_parameter_group_name(&pg)
        .option_group_name(&og)
        .deletion_protection(true)
        .publicly_accessible(false)
        .enable_iam_database_authentication(true)
        .copy_tags_to_snapshot(true)
        .backup_retention_period(7)
        .storage_encrypted(false)
        .tags(Tag::builder().key("team").value("orders").build())
        .tags(Tag::builder().key("cost-center").value("42").build())
        .send()
        .await
        .unwrap();
    out.db_instance().unwrap().clone()
}

async fn describe(sdk: &SdkConfig, id: &str) -> Option<DbInstance> {
    rds(sdk).describe_db_instances().db_instance_identifier(id).send().await.ok().and_then(|o| o.db_instances().first().cloned())
}

/// Every instance atrest made from the source with this resource id (paginated: the shared
/// stand-in holds more than a page).
async fn targets_of(sdk: &SdkConfig, resource_id: &str) -> Vec<DbInstance> {
    let all: Vec<DbInstance> = rds(sdk).describe_db_instances().into_paginator().items().send().collect::<Result<_, _>>().await.unwrap();
    all.into_iter().filter(|i| tag_value(i.tag_list(), TAG_SOURCE_RESOURCE_ID) == Some(resource_id)).collect()
}

async fn snapshot_ids(sdk: &SdkConfig, resource_id: &str) -> Vec<String> {
    let mut ids = manual_snapshot_ids(sdk, SnapshotKind::Db, &format!("atrest-{}", resource_id.to_ascii_lowercase())).await;
    ids.sort();
    ids
}

fn sg_ids(instance: &DbInstance) -> Vec<String> {
    let mut ids: Vec<String> =
        instance.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).map(str::to_string).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn encrypts_with_every_setting_carried_over_and_keeps_the_source() {
    let sdk = sdk().await;
    let id = unique("orders");
    let source = unencrypted_instance(&sdk, &id).await;
    let dbi = source.dbi_resource_id().unwrap().to_string();
    let topic_arn = topic(&sdk, &unique("alerts")).await;

    let outcome = runner(&sdk, Some(&topic_arn)).drive(&request(&dbi, json!({})), &FAST).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");

    let target_id = format!("{id}-encrypted");
    let target = describe(&sdk, &target_id).await.expect("the encrypted instance exists");
    assert_eq!(target.storage_encrypted(), Some(true));
    assert!(target.kms_key_id().is_some_and(|k| k.starts_with("arn:aws:kms:")), "{:?}", target.kms_key_id());
    assert_eq!(
        target.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        source.db_subnet_group().and_then(|g| g.db_subnet_group_name())
    );
    assert_eq!(sg_ids(&target), sg_ids(&source));
    assert_eq!(sg_ids(&target).len(), 2);
    assert_eq!(
        target.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()),
        source.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name())
    );
    assert_eq!(
        target.option_group_memberships().first().and_then(|g| g.option_group_name()),
        source.option_group_memberships().first().and_then(|g| g.option_group_name())
    );
    assert_eq!(target.endpoint().and_then(|e| e.port()), Some(3307));
    assert_eq!(target.db_instance_class(), Some("db.t3.medium"));
    assert_eq!(target.deletion_protection(), Some(true));
    assert_eq!(target.iam_database_authentication_enabled(), Some(true));
    assert_eq!(target.multi_az(), source.multi_az());
    assert_eq!(tag_value(target.tag_list(), "team"), Some("orders"));
    assert_eq!(tag_value(target.tag_list(), "cost-center"), Some("42"));
    assert_eq!(tag_value(target.tag_list(), TAG_ENCRYPTED_FROM), Some(id.as_str()));
    assert_eq!(tag_value(target.tag_list(), TAG_SOURCE_RESOURCE_ID), Some(dbi.as_str()));

    // The source: still there, running, unencrypted, only tagged.
    let after = describe(&sdk, &id).await.expect("the source still exists");
    assert_eq!(after.db_instance_status(), Some("available"));
    assert_eq!(after.storage_encrypted(), Some(false));
    assert_eq!(after.dbi_resource_id(), Some(dbi.as_str()));
    assert_eq!(tag_value(after.tag_list(), TAG_REPLACED_BY), Some(target_id.as_str()));

    // Only the encrypted snapshot is kept.
    let snaps = snapshot_ids(&sdk, &dbi).await;
    assert_eq!(snaps, vec![format!("atrest-{}-encrypted", dbi.to_ascii_lowercase())]);
    let kept = rds(&sdk).describe_db_snapshots().db_snapshot_identifier(&snaps[0]).send().await.unwrap();
    assert_eq!(kept.db_snapshots()[0].encrypted(), Some(true));
    assert_eq!(tag_value(kept.db_snapshots()[0].tag_list(), "team"), Some("orders"), "the encrypted snapshot keeps the source's tags");

    // The operator is told what exists and what to do next.
    assert!(
        outcome.message.contains(&format!("point clients at {}", target.endpoint().unwrap().address().unwrap())),
        "{}",
        outcome.message
    );
    assert!(outcome.message.contains(&format!("delete {id} when satisfied")), "{}", outcome.message);
    let messages = sns_messages(&topic_arn).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].1.contains(&target_id), "{}", messages[0].1);

    // Running it again changes nothing and still succeeds.
    let again = runner(&sdk, None).step(&payload(&dbi, json!({}))).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");
    assert!(again.changes.is_empty(), "{again:?}");
    assert_eq!(targets_of(&sdk, &dbi).await.len(), 1);
}

#[tokio::test]
async fn resuming_after_a_stop_at_any_step_converges_to_one_target() {
    let sdk = sdk().await;
    // How many invocations a full run takes, counted on a first instance.
    let id = unique("resume");
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    let mut steps = 0;
    loop {
        steps += 1;
        let o = runner(&sdk, None).step(&payload(&dbi, json!({}))).await;
        assert_ne!(o.status, FixStatus::Failed, "{o:?}");
        if o.status == FixStatus::Succeeded {
            break;
        }
        assert!(steps < 20, "no progress: {o:?}");
    }
    assert!(steps >= 4, "snapshot, copy, restore, finish: {steps}");

    for stop_after in 1..steps {
        let id = unique("resume");
        let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
        // A first worker that stops (a crash, a timeout) after `stop_after` invocations …
        for _ in 0..stop_after {
            let o = runner(&sdk, None).step(&payload(&dbi, json!({}))).await;
            assert_eq!(o.status, FixStatus::InProgress, "stop after {stop_after}: {o:?}");
        }
        // … and a brand-new one that starts from scratch, twice over.
        let first = runner(&sdk, None).drive(&request(&dbi, json!({})), &FAST).await;
        assert_eq!(first.status, FixStatus::Succeeded, "stop after {stop_after}: {first:?}");
        let second = runner(&sdk, None).drive(&request(&dbi, json!({})), &FAST).await;
        assert_eq!(second.status, FixStatus::Succeeded, "{second:?}");
        assert!(second.changes.is_empty(), "{second:?}");

        let targets = targets_of(&sdk, &dbi).await;
        assert_eq!(targets.len(), 1, "exactly one encrypted instance after stopping at step {stop_after}");
        assert_eq!(targets[0].storage_encrypted(), Some(true));
        assert_eq!(snapshot_ids(&sdk, &dbi).await, vec![format!("atrest-{}-encrypted", dbi.to_ascii_lowercase())]);
        assert!(describe(&sdk, &id).await.is_some(), "the source survives");
    }
}

#[tokio::test]
async fn rename_cutover_happens_only_when_writes_are_frozen() {
    let sdk = sdk().await;

    // Asked for, but writes not frozen: side by side, with instructions.
    let id = unique("cut");
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    let o = runner(&sdk, None).drive(&request(&dbi, json!({"Cutover": "rename"})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert!(o.message.contains("NOT done because WritesFrozen"), "{}", o.message);
    assert_eq!(describe(&sdk, &id).await.unwrap().storage_encrypted(), Some(false), "the name still points at the source");

    // With WritesFrozen=true: the name moves to the encrypted instance.
    let id = unique("cut");
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    let o = runner(&sdk, None).drive(&request(&dbi, json!({"Cutover": "rename", "WritesFrozen": "true"})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    let now = describe(&sdk, &id).await.expect("the original name exists");
    assert_eq!(now.storage_encrypted(), Some(true), "the original name is the encrypted instance");
    assert_eq!(tag_value(now.tag_list(), TAG_SOURCE_RESOURCE_ID), Some(dbi.as_str()));
    let old = describe(&sdk, &format!("{id}-unencrypted")).await.expect("the source was renamed, not deleted");
    assert_eq!(old.dbi_resource_id(), Some(dbi.as_str()));
    assert_eq!(old.storage_encrypted(), Some(false));
    assert_eq!(old.db_instance_status(), Some("available"));
    assert!(describe(&sdk, &format!("{id}-encrypted")).await.is_none());
    assert!(o.message.contains("keeps its endpoint"), "{}", o.message);
    assert_eq!(targets_of(&sdk, &dbi).await.len(), 1);

    // A re-run after the cutover recognises the finished state.
    let again = runner(&sdk, None).step(&payload(&dbi, json!({"Cutover": "rename", "WritesFrozen": "true"}))).await;
    assert_eq!(again.status, FixStatus::Succeeded, "{again:?}");
    assert!(again.changes.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_63_character_identifier_gives_valid_derived_names() {
    let sdk = sdk().await;
    let base = unique("l");
    let id = format!("{base}{}", "x".repeat(63 - base.len()));
    assert_eq!(id.len(), 63);
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    let o = runner(&sdk, None).drive(&request(&dbi, json!({"Cutover": "rename", "WritesFrozen": "true"})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    let encrypted = describe(&sdk, &id).await.unwrap();
    assert_eq!(encrypted.storage_encrypted(), Some(true));
    let out = rds(&sdk).describe_db_instances().send().await.unwrap();
    let renamed: Vec<&str> = out
        .db_instances()
        .iter()
        .filter(|i| i.dbi_resource_id() == Some(dbi.as_str()))
        .filter_map(|i| i.db_instance_identifier())
        .collect();
    assert_eq!(renamed.len(), 1);
    assert!(is_valid_identifier(renamed[0]) && renamed[0].ends_with("-unencrypted"), "{renamed:?}");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let sdk = sdk().await;
    let id = unique("dry");
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    let topic_arn = topic(&sdk, &unique("alerts")).await;
    let o: FixOutcome = runner(&sdk, Some(&topic_arn)).step(&payload(&dbi, json!({"DryRun": "true"}))).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert!(o.dry_run && o.message.contains("Nothing was changed"), "{}", o.message);
    assert_eq!(o.changes.len(), 1);
    assert!(snapshot_ids(&sdk, &dbi).await.is_empty());
    assert!(targets_of(&sdk, &dbi).await.is_empty());
    assert!(describe(&sdk, &id).await.unwrap().tag_list().iter().all(|t| !t.key().unwrap_or_default().starts_with("atrest:")));
    assert!(sns_messages(&topic_arn).await.is_empty());
}

#[tokio::test]
async fn replicas_cluster_members_and_missing_instances_fail_clearly() {
    let sdk = sdk().await;
    let client = rds(&sdk);
    let id = unique("primary");
    unencrypted_instance(&sdk, &id).await;
    let replica = client
        .create_db_instance_read_replica()
        .db_instance_identifier(unique("replica"))
        .source_db_instance_identifier(&id)
        .send()
        .await
        .unwrap();
    let replica_dbi = replica.db_instance().unwrap().dbi_resource_id().unwrap().to_string();
    let o = runner(&sdk, None).step(&payload(&replica_dbi, json!({}))).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains("read replica") && o.message.contains(&id), "{}", o.message);

    let cluster = unique("aurora");
    client
        .create_db_cluster()
        .db_cluster_identifier(&cluster)
        .engine("aurora-mysql")
        .master_username("admin")
        .master_user_password("correct-horse-battery")
        .send()
        .await
        .unwrap();
    let member = client
        .create_db_instance()
        .db_instance_identifier(unique("member"))
        .db_cluster_identifier(&cluster)
        .engine("aurora-mysql")
        .db_instance_class("db.r5.large")
        .send()
        .await
        .unwrap();
    let member_dbi = member.db_instance().unwrap().dbi_resource_id().unwrap().to_string();
    let o = runner(&sdk, None).step(&payload(&member_dbi, json!({}))).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains("fix-rds-encrypt-cluster") && o.message.contains(&cluster), "{}", o.message);

    let o = runner(&sdk, None).step(&payload("db-DOESNOTEXIST0000000000000", json!({}))).await;
    assert_eq!(o.status, FixStatus::Failed);
    assert!(o.message.contains("Nothing was changed"), "{}", o.message);
}

/// The most common instance: created without `DBParameterGroupName` or `OptionGroupName`, so it
/// uses the engine's default groups. The restore must leave those to the engine (naming
/// `default:mysql-8-0` is answered `OptionGroupNotFoundFault` where it does not exist).
#[tokio::test]
async fn an_instance_created_with_neither_parameter_nor_option_group_is_encrypted() {
    let sdk = sdk().await;
    let id = unique("plain");
    let source = rds(&sdk)
        .create_db_instance()
        .db_instance_identifier(&id)
        .db_instance_class("db.t3.micro")
        .engine("mysql")
        .engine_version("8.0.35")
        .master_username("admin")
        .master_user_password("correct-horse-battery")
        .allocated_storage(20)
        .storage_encrypted(false)
        .send()
        .await
        .unwrap()
        .db_instance()
        .cloned()
        .unwrap();
    let dbi = source.dbi_resource_id().unwrap().to_string();
    let o = runner(&sdk, None).drive(&request(&dbi, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    let target = describe(&sdk, &format!("{id}-encrypted")).await.expect("the encrypted instance exists");
    assert_eq!(target.storage_encrypted(), Some(true));
    // The copy is on the engine's defaults too, like its source.
    let groups = |i: &DbInstance| {
        (
            i.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()).map(str::to_string),
            i.option_group_memberships().first().and_then(|g| g.option_group_name()).map(str::to_string),
        )
    };
    assert_eq!(groups(&target), groups(&source));
}

#[tokio::test]
async fn a_stopped_instance_is_refused_and_left_as_it_is() {
    let sdk = sdk().await;
    let id = unique("stopped");
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    rds(&sdk).stop_db_instance().db_instance_identifier(&id).send().await.unwrap();
    let topic_arn = topic(&sdk, &unique("alerts")).await;
    let o = runner(&sdk, Some(&topic_arn)).drive(&request(&dbi, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains(&format!("{id} is stopped")) && o.message.contains(&format!("Start {id}")), "{}", o.message);
    // Nothing made, and the source neither started nor otherwise touched.
    assert!(snapshot_ids(&sdk, &dbi).await.is_empty());
    assert!(targets_of(&sdk, &dbi).await.is_empty());
    assert_eq!(describe(&sdk, &id).await.unwrap().db_instance_status(), Some("stopped"));
    let messages = sns_messages(&topic_arn).await;
    assert!(messages.iter().any(|(_, body)| body.contains("is stopped")), "{messages:?}");
}

#[tokio::test]
async fn read_replicas_refuse_the_rename_cutover_and_are_named_without_it() {
    let sdk = sdk().await;
    let id = unique("primary");
    let dbi = unencrypted_instance(&sdk, &id).await.dbi_resource_id().unwrap().to_string();
    let replica = unique("reader");
    rds(&sdk).create_db_instance_read_replica().db_instance_identifier(&replica).source_db_instance_identifier(&id).send().await.unwrap();

    // A rename would leave the replica on the renamed, unencrypted source: refused up front.
    let o = runner(&sdk, None).drive(&request(&dbi, json!({"Cutover": "rename", "WritesFrozen": "true"})), &FAST).await;
    assert_eq!(o.status, FixStatus::Failed, "{o:?}");
    assert!(o.message.contains(&replica) && o.message.contains("Nothing was changed"), "{}", o.message);
    assert!(snapshot_ids(&sdk, &dbi).await.is_empty());
    assert_eq!(describe(&sdk, &id).await.unwrap().dbi_resource_id(), Some(dbi.as_str()), "the source keeps its name");

    // Side by side: the copy is made and the replica it does not carry is named.
    let o = runner(&sdk, None).drive(&request(&dbi, json!({})), &FAST).await;
    assert_eq!(o.status, FixStatus::Succeeded, "{o:?}");
    assert!(o.message.contains("Not carried over") && o.message.contains(&replica), "{}", o.message);
}
