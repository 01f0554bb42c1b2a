//! EBS encryption by default, rule and fix together against the local stand-in (the account
//! setting is global to the stand-in, so this binary holds one test that owns it), and the
//! default-key path of the fix with aws-smithy-mocks (the stand-in lacks GetEbsDefaultKmsKeyId).

mod ebs_support;

use std::sync::Arc;

use atrest::remediation::DriveOptions;
use atrest::{FixRequest, FixRunner, FixStatus, RuleRunner};
use atrest_testkit::{adapt_event, load_event, result_for, sdk, unique};
use aws_sdk_ec2::operation::enable_ebs_encryption_by_default::EnableEbsEncryptionByDefaultOutput;
use aws_sdk_ec2::operation::get_ebs_default_kms_key_id::GetEbsDefaultKmsKeyIdOutput;
use aws_sdk_ec2::operation::get_ebs_encryption_by_default::GetEbsEncryptionByDefaultOutput;
use aws_sdk_ec2::operation::modify_ebs_default_kms_key_id::ModifyEbsDefaultKmsKeyIdOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use ebs_support::*;
use fix_ebs_enable_default_encryption::{EbsEnableDefaultEncryption, SPEC};
use rule_ec2_ebs_encryption_by_default::Ec2EbsEncryptionByDefault;
use serde_json::json;

const ACCOUNT: &str = "123456789012";

#[tokio::test]
async fn the_rule_flags_the_region_and_the_fix_turns_encryption_by_default_on() {
    let sdk = sdk().await;
    let client = ec2(&sdk);
    client.disable_ebs_encryption_by_default().send().await.unwrap();
    let rule_name = unique("rule-ebs-default");
    let rule = RuleRunner::new(Arc::new(Ec2EbsEncryptionByDefault), &sdk);
    let event = || adapt_event(load_event("ec2-ebs-encryption-by-default/scheduled.json"), &rule_name, |_| {});

    let answer = rule.handle_lambda(event()).await.expect("handler");
    assert_eq!(answer["NonCompliant"], 1, "{answer}");
    let stored = result_for(&sdk, &rule_name, ACCOUNT).await.expect("stored");
    assert_eq!((stored.resource_type.as_str(), stored.compliance.as_str()), ("AWS::::Account", "NON_COMPLIANT"));

    let fix = FixRunner::new(Arc::new(EbsEnableDefaultEncryption), &sdk, None);
    let mut dry = load_event("fix-ebs-enable-default-encryption/ssm-payload.json");
    dry["DryRun"] = json!("true");
    let outcome = fix.step(&dry).await;
    assert_eq!(outcome.status, FixStatus::Succeeded);
    assert!(outcome.message.contains("would set") && outcome.changes.len() == 1, "{outcome:?}");
    assert_eq!(client.get_ebs_encryption_by_default().send().await.unwrap().ebs_encryption_by_default(), Some(false));

    let outcome = fix.step(&load_event("fix-ebs-enable-default-encryption/ssm-payload.json")).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert!(outcome.message.contains("verified by reading it back") && outcome.message.contains("existing volumes were not changed"));
    assert_eq!(client.get_ebs_encryption_by_default().send().await.unwrap().ebs_encryption_by_default(), Some(true));

    let again = fix.step(&load_event("fix-ebs-enable-default-encryption/ssm-payload.json")).await;
    assert_eq!(again.status, FixStatus::Succeeded);
    assert!(again.changes.is_empty() && again.message.contains("already on"), "{again:?}");

    rule.handle_lambda(event()).await.expect("handler");
    assert_eq!(result_for(&sdk, &rule_name, ACCOUNT).await.unwrap().compliance, "COMPLIANT");
}

#[tokio::test]
async fn the_fix_sets_the_default_key_and_verifies_it() {
    let sdk = sdk().await;
    let kms = atrest::clients::kms(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata().unwrap().clone();
    let alias = format!("alias/{}", unique("ebs-default"));
    kms.create_alias().alias_name(&alias).target_key_id(key.key_id()).send().await.unwrap();
    let key_arn = key.arn().unwrap().to_string();
    let managed = aws_ebs_key_arn(&sdk).await;

    // EC2 answers in call order: state before, the two writes, state after.
    let before_on = mock!(aws_sdk_ec2::Client::get_ebs_encryption_by_default)
        .sequence()
        .output(|| GetEbsEncryptionByDefaultOutput::builder().ebs_encryption_by_default(false).build())
        .output(|| GetEbsEncryptionByDefaultOutput::builder().ebs_encryption_by_default(true).build())
        .build();
    let (m1, k1) = (managed.clone(), key_arn.clone());
    let default_key = mock!(aws_sdk_ec2::Client::get_ebs_default_kms_key_id)
        .sequence()
        .output(move || GetEbsDefaultKmsKeyIdOutput::builder().kms_key_id(m1.clone()).build())
        .output(move || GetEbsDefaultKmsKeyIdOutput::builder().kms_key_id(k1.clone()).build())
        .build();
    let enable = mock!(aws_sdk_ec2::Client::enable_ebs_encryption_by_default)
        .then_output(|| EnableEbsEncryptionByDefaultOutput::builder().ebs_encryption_by_default(true).build());
    let k2 = key_arn.clone();
    let modify = mock!(aws_sdk_ec2::Client::modify_ebs_default_kms_key_id)
        .match_requests(move |r| r.kms_key_id() == Some(k2.as_str()))
        .then_output(|| ModifyEbsDefaultKmsKeyIdOutput::builder().build());
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&before_on, &default_key, &enable, &modify]);

    let runner = FixRunner::new(Arc::new(EbsEnableDefaultEncryption), &sdk, None).with_client(client);
    let mut payload = load_event("fix-ebs-enable-default-encryption/ssm-payload-with-key.json");
    payload["KmsKeyId"] = json!(alias);
    let req = FixRequest::decode(&SPEC, &payload).unwrap();
    let outcome = runner.drive(&req, &DriveOptions { max_steps: 3, pause: std::time::Duration::ZERO }).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.changes.len(), 2, "{outcome:?}");
    assert!(outcome.message.contains(&key_arn), "{}", outcome.message);
    assert_eq!((enable.num_calls(), modify.num_calls()), (1, 1), "the key is set by its ARN");
}
