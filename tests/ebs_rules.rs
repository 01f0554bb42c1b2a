//! The EBS and EC2 rules against the local stand-in: Config events in, evaluations stored in
//! Config; periodic sweeps judge what exists. The account-level EBS default key, which the
//! stand-in does not implement (GetEbsDefaultKmsKeyId), is answered by aws-smithy-mocks in
//! AWS's shape.

mod ebs_support;

use std::sync::Arc;

use atrest::{Compliance, ConfigRule, RuleRunner};
use atrest_testkit::{adapt_event, load_event, result_for, sdk, unique};
use aws_config::SdkConfig;
use aws_sdk_ec2::operation::get_ebs_default_kms_key_id::GetEbsDefaultKmsKeyIdOutput;
use aws_sdk_ec2::operation::get_ebs_encryption_by_default::GetEbsEncryptionByDefaultOutput;
use aws_sdk_ec2::types::{InstanceType, ResourceType, VolumeType};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use ebs_support::*;
use rule_ec2_ebs_encryption_by_default::Ec2EbsEncryptionByDefault;
use rule_ec2_instance_store_encrypted::Ec2InstanceStoreEncrypted;
use rule_encrypted_volumes::EncryptedVolumes;
use serde_json::{Value, json};

/// Sweep verdicts by resource id.
async fn sweep(sdk: &SdkConfig, rule: Arc<dyn ConfigRule>, raw: Value) -> Vec<(String, Compliance, String)> {
    sweep_with(RuleRunner::new(rule, sdk), raw).await
}

async fn sweep_with(runner: RuleRunner, raw: Value) -> Vec<(String, Compliance, String)> {
    let p = runner.spec().parse_params(&raw.as_object().unwrap().clone().into_iter().collect()).unwrap();
    let report = runner.sweep(p, DateTime::from_secs(1_795_168_800), None).await.expect("sweep");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    report.evaluations.into_iter().map(|e| (e.compliance_resource_id, e.compliance_type, e.annotation.unwrap_or_default())).collect()
}

fn verdict_of(results: &[(String, Compliance, String)], id: &str) -> (Compliance, String) {
    let (_, c, a) = results.iter().find(|(r, _, _)| r == id).unwrap_or_else(|| panic!("{id} was not evaluated: {results:?}"));
    (*c, a.clone())
}

async fn plain_volume(sdk: &SdkConfig, encrypted_with: Option<&str>) -> String {
    let mut req = ec2(sdk).create_volume().availability_zone("us-east-1a").size(1).volume_type(VolumeType::Gp3);
    if let Some(key) = encrypted_with {
        req = req.encrypted(true).kms_key_id(key);
    }
    req.send().await.expect("CreateVolume").volume_id().unwrap().to_string()
}

#[tokio::test]
async fn encrypted_volumes_judges_attached_and_detached_volumes() {
    let sdk = sdk().await;
    let (_, root, data) = instance_with_two_plain_volumes(&sdk, &unique("rule-vol")).await;
    let key = aws_ebs_key_arn(&sdk).await;
    let detached = plain_volume(&sdk, None).await;
    let encrypted = plain_volume(&sdk, Some(&key)).await;
    let kms = atrest::clients::kms(&sdk);
    let other_key = kms.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    let other = plain_volume(&sdk, Some(&other_key)).await;

    let all = sweep(&sdk, Arc::new(EncryptedVolumes), json!({})).await;
    assert_eq!(verdict_of(&all, &root).0, Compliance::NonCompliant);
    assert!(verdict_of(&all, &data).1.contains("/dev/sdf"), "{:?}", verdict_of(&all, &data));
    assert_eq!(verdict_of(&all, &detached), (Compliance::NonCompliant, "The volume is not encrypted (detached).".into()));
    assert_eq!(verdict_of(&all, &encrypted).0, Compliance::Compliant);

    let attached_only = sweep(&sdk, Arc::new(EncryptedVolumes), json!({"includeDetached": "false"})).await;
    assert_eq!(verdict_of(&attached_only, &detached).0, Compliance::NotApplicable, "as the managed rule");
    assert_eq!(verdict_of(&attached_only, &data).0, Compliance::NonCompliant);

    // kmsId by alias: resolved with KMS, compared as key ARNs.
    let keyed = sweep(&sdk, Arc::new(EncryptedVolumes), json!({"kmsId": "alias/aws/ebs"})).await;
    assert_eq!(verdict_of(&keyed, &encrypted).0, Compliance::Compliant);
    assert_eq!(verdict_of(&keyed, &other).0, Compliance::NonCompliant);
}

#[tokio::test]
async fn encrypted_volumes_change_events_are_stored_in_config() {
    let sdk = sdk().await;
    let runner = RuleRunner::new(Arc::new(EncryptedVolumes), &sdk);
    let rule = unique("rule-vol-change");
    for (file, expected) in [
        ("encrypted-volumes/change-unencrypted-attached.json", "NON_COMPLIANT"),
        ("encrypted-volumes/change-unencrypted-detached.json", "NON_COMPLIANT"),
        ("encrypted-volumes/change-encrypted-with-kms-id.json", "COMPLIANT"),
    ] {
        let id = format!("vol-{:x}", unique("v").len() * 7919 + expected.len() + file.len());
        let event = adapt_event(load_event(file), &rule, |inv| inv["configurationItem"]["resourceId"] = json!(id));
        let answer = runner.handle_lambda(event).await.expect("handler");
        assert_eq!(answer["Evaluations"], 1, "{answer}");
        let stored = result_for(&sdk, &rule, &id).await.unwrap_or_else(|| panic!("{file}: nothing stored"));
        assert_eq!(stored.compliance, expected, "{file}: {stored:?}");
        assert_eq!(stored.resource_type, "AWS::EC2::Volume");
    }
}

#[tokio::test]
async fn instance_store_rule_reads_the_instance_type() {
    let sdk = sdk().await;
    let launch = |t: InstanceType, tags: Vec<(&'static str, &'static str)>| {
        let sdk = sdk.clone();
        async move {
            let mut req = ec2(&sdk).run_instances().image_id("ami-12c6146b").instance_type(t).min_count(1).max_count(1);
            if !tags.is_empty() {
                req = req.tag_specifications(tag_spec(ResourceType::Instance, &tags));
            }
            req.send().await.expect("RunInstances").instances()[0].instance_id().unwrap().to_string()
        }
    };
    let old_type = launch(InstanceType::M3Medium, vec![]).await;
    let luks = launch(InstanceType::M3Medium, vec![("atrest:instance-store-encryption", "luks")]).await;
    let nvme = launch(InstanceType::M5dLarge, vec![]).await;
    let no_store = launch(InstanceType::T3Micro, vec![]).await;

    let all = sweep(&sdk, Arc::new(Ec2InstanceStoreEncrypted::default()), json!({})).await;
    let (c, a) = verdict_of(&all, &old_type);
    assert_eq!(c, Compliance::NonCompliant, "{a}");
    assert!(a.contains("m3.medium") && a.contains("LUKS"), "{a}");
    assert_eq!(verdict_of(&all, &luks).0, Compliance::Compliant);
    let (c, a) = verdict_of(&all, &nvme);
    assert_eq!(c, Compliance::Compliant, "{a}");
    assert!(a.contains("hardware"), "{a}");
    assert_eq!(verdict_of(&all, &no_store).0, Compliance::NotApplicable);

    // Another tag key as the parameter.
    let custom = sweep(&sdk, Arc::new(Ec2InstanceStoreEncrypted::default()), json!({"luksTagKey": "disk-crypt"})).await;
    assert_eq!(verdict_of(&custom, &luks).0, Compliance::NonCompliant);

    // Change events carry the instance type and tags: judged from the item.
    let rule = unique("rule-store-change");
    let runner = RuleRunner::new(Arc::new(Ec2InstanceStoreEncrypted::default()), &sdk);
    for (file, expected) in [
        ("ec2-instance-store-encrypted/change-m3-unencrypted.json", "NON_COMPLIANT"),
        ("ec2-instance-store-encrypted/change-m3-luks.json", "COMPLIANT"),
    ] {
        let id = format!("i-0{:015x}", file.len() * 104_729);
        let event = adapt_event(load_event(file), &rule, |inv| inv["configurationItem"]["resourceId"] = json!(id));
        runner.handle_lambda(event).await.expect("handler");
        assert_eq!(result_for(&sdk, &rule, &id).await.unwrap().compliance, expected, "{file}");
    }
}

/// The default-key path needs GetEbsDefaultKmsKeyId, which the stand-in does not implement:
/// EC2 is mocked in AWS's shape, KMS (resolving the parameter's alias) is the stand-in.
#[tokio::test]
async fn ebs_default_key_is_compared_as_key_arns() {
    let sdk = sdk().await;
    let kms = atrest::clients::kms(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata().unwrap().clone();
    let alias = format!("alias/{}", unique("ebs-default"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.unwrap();
    let key_arn = key.arn().unwrap().to_string();

    for (default_key, expected) in [(key_arn.clone(), Compliance::Compliant), (aws_ebs_key_arn(&sdk).await, Compliance::NonCompliant)] {
        let enabled = mock!(aws_sdk_ec2::Client::get_ebs_encryption_by_default)
            .then_output(|| GetEbsEncryptionByDefaultOutput::builder().ebs_encryption_by_default(true).build());
        let default = mock!(aws_sdk_ec2::Client::get_ebs_default_kms_key_id)
            .then_output(move || GetEbsDefaultKmsKeyIdOutput::builder().kms_key_id(default_key.clone()).build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&enabled, &default]);
        let rule = RuleRunner::new(Arc::new(Ec2EbsEncryptionByDefault), &sdk).with_client(client);
        let results = sweep_with(rule, json!({"kmsKeyId": alias})).await;
        assert_eq!(results.len(), 1);
        let (c, a) = verdict_of(&results, "123456789012");
        assert_eq!(c, expected, "{a}");
        assert_eq!(default.num_calls(), 1);
    }

    // Without kmsKeyId the default key is never asked for (the managed rule's behaviour).
    let enabled = mock!(aws_sdk_ec2::Client::get_ebs_encryption_by_default)
        .then_output(|| GetEbsEncryptionByDefaultOutput::builder().ebs_encryption_by_default(false).build());
    let default = mock!(aws_sdk_ec2::Client::get_ebs_default_kms_key_id).then_output(|| panic!("must not be called"));
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&enabled, &default]);
    let results = sweep_with(RuleRunner::new(Arc::new(Ec2EbsEncryptionByDefault), &sdk).with_client(client), json!({})).await;
    assert_eq!(verdict_of(&results, "123456789012").0, Compliance::NonCompliant);
    assert_eq!(default.num_calls(), 0);
}
