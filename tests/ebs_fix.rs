//! The EBS encryption fix against the local stand-in, over HTTP: the whole instance is handled
//! in one run with one stop, devices and DeleteOnTermination are kept, old volumes are kept,
//! every step resumes after a crash, a failed attach rolls back, a dry run changes nothing.

mod ebs_support;

use std::sync::Arc;
use std::time::Duration;

use atrest::alerts::AlertPublisher;
use atrest::{FixOutcome, FixRequest, FixRunner, FixStatus};
use atrest_testkit::{load_event, sdk, sns_messages, topic, unique};
use aws_config::SdkConfig;
use ebs_support::*;
use fix_ebs_encrypt_volumes::{EbsEncryptVolumes, SPEC};
use serde_json::{Value, json};

fn payload(volume: &str, extra: Value) -> Value {
    let mut p = load_event("fix-ebs-encrypt-volumes/ssm-payload.json");
    p["ResourceId"] = json!(volume);
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn fix(ec2: aws_sdk_ec2::Client, max_actions: usize) -> EbsEncryptVolumes {
    let mut fix = EbsEncryptVolumes::default().with_client(ec2);
    fix.max_actions = max_actions;
    fix.poll = Duration::ZERO;
    fix
}

/// Runs the SSM loop (every step, with each step's changes kept) until a final status.
async fn drive(sdk: &SdkConfig, fix: EbsEncryptVolumes, payload: &Value, alerts: Option<&str>) -> (FixOutcome, Vec<String>) {
    let runner = FixRunner::new(Arc::new(fix), sdk, alerts.map(|t| AlertPublisher::new(sdk, t)));
    let req = match FixRequest::decode(&SPEC, payload) {
        Ok(req) => req,
        // Refused before any work: the runner answers Failed, naming the parameter.
        Err(_) => return (runner.step(payload).await, Vec::new()),
    };
    let mut changes = Vec::new();
    for _ in 0..200 {
        let outcome = runner.step_request(&req).await;
        changes.extend(outcome.changes.iter().cloned());
        if outcome.status != FixStatus::InProgress {
            return (outcome, changes);
        }
    }
    panic!("no final status after 200 steps; changes: {changes:#?}");
}

async fn assert_swapped(sdk: &SdkConfig, instance: &str, root: &str, data: &str) -> (String, String) {
    let key = aws_ebs_key_arn(sdk).await;
    let devices = block_devices(sdk, instance).await;
    assert_eq!(devices.len(), 2, "{devices:?}");
    let (new_root, root_dot) = devices["/dev/xvda"].clone();
    let (new_data, data_dot) = devices["/dev/sdf"].clone();
    assert!(new_root != root && new_data != data, "both devices carry new volumes: {devices:?}");
    assert!(root_dot, "the root keeps DeleteOnTermination=true");
    assert!(!data_dot, "the data volume keeps DeleteOnTermination=false");

    let nr = volume(sdk, &new_root).await;
    assert_eq!(nr.encrypted(), Some(true));
    assert_eq!(nr.kms_key_id(), Some(key.as_str()), "created with the requested key, passed explicitly");
    assert_eq!(nr.volume_type().unwrap().as_str(), "gp2");
    assert_eq!(nr.size(), Some(8));
    assert_eq!(tags(&nr).get("atrest:encrypted-from"), Some(&root.to_string()));

    let nd = volume(sdk, &new_data).await;
    assert_eq!(nd.encrypted(), Some(true));
    assert_eq!(nd.kms_key_id(), Some(key.as_str()));
    assert_eq!(nd.volume_type().unwrap().as_str(), "gp3");
    assert_eq!((nd.size(), nd.iops(), nd.throughput()), (Some(20), Some(4000), Some(250)), "same size and performance");
    let old_data = volume(sdk, data).await;
    let mut expected = tags(&old_data);
    expected.remove("atrest:replaced-by");
    expected.insert("atrest:encrypted-from".into(), data.to_string());
    assert_eq!(tags(&nd), expected, "all tags carried over, plus encrypted-from; no bookkeeping left");
    assert_eq!(nd.availability_zone(), old_data.availability_zone());

    for (old, new) in [(root, &new_root), (data, &new_data)] {
        let v = volume(sdk, old).await;
        assert_eq!(v.state().unwrap().as_str(), "available", "old volume {old} kept, detached");
        assert_eq!(v.encrypted(), Some(false));
        assert_eq!(tags(&v).get("atrest:replaced-by"), Some(new), "old volume tagged");
        assert_eq!(volumes_tagged(sdk, "atrest:encrypted-from", old).await.len(), 1, "exactly one replacement for {old}");
        assert!(snapshots_tagged(sdk, "atrest:encrypting", old).await.is_empty(), "temporary snapshots of {old} deleted");
    }
    (new_root, new_data)
}

#[tokio::test]
async fn encrypts_root_and_data_volume_of_a_running_instance_with_one_stop() {
    let sdk = sdk().await;
    let (instance, root, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-run")).await;
    let (client, recorder) = recorded_ec2(&sdk);
    let topic_arn = topic(&sdk, &unique("alerts")).await;

    let (outcome, changes) = drive(&sdk, fix(client, 200), &payload(&data, json!({"AllowInstanceStop": "true"})), Some(&topic_arn)).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}\n{changes:#?}");
    let (new_root, new_data) = assert_swapped(&sdk, &instance, &root, &data).await;
    assert_eq!(instance_state(&sdk, &instance).await, "running", "back in its previous state");
    assert_eq!(recorder.count("StopInstances"), 1, "stopped exactly once");
    assert_eq!(recorder.count("StartInstances"), 1);
    let instance_tags = describe_instance(&sdk, &instance).await;
    assert!(instance_tags.tags().iter().all(|t| !t.key().unwrap().starts_with("atrest:")), "no bookkeeping left on the instance");

    let message = &outcome.message;
    assert!(message.contains(&format!("{root} on {instance} /dev/xvda replaced by encrypted {new_root}")), "{message}");
    assert!(message.contains(&format!("{data} on {instance} /dev/sdf replaced by encrypted {new_data}")), "{message}");
    assert!(message.contains("old volumes kept, detached"), "{message}");

    let emails = sns_messages(&topic_arn).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].1.contains(&new_data) && emails[0].1.contains("old volumes kept"), "{}", emails[0].1);

    // Re-running, from either old or new volume, converges without touching anything.
    for id in [&data, &root, &new_data] {
        let (again, changes) = drive(&sdk, fix(ec2(&sdk), 200), &payload(id, json!({"AllowInstanceStop": "true"})), None).await;
        assert_eq!(again.status, FixStatus::Succeeded, "{again:#?}");
        assert!(changes.is_empty(), "a re-run changes nothing: {changes:?}");
    }
    assert_eq!(recorder.count("StopInstances"), 1);
}

#[tokio::test]
async fn without_allow_instance_stop_nothing_is_detached_then_a_second_run_swaps() {
    let sdk = sdk().await;
    let (instance, root, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-nostop")).await;
    let before = block_devices(&sdk, &instance).await;
    let (client, recorder) = recorded_ec2(&sdk);

    let (outcome, _) = drive(&sdk, fix(client.clone(), 200), &payload(&root, json!({})), None).await;
    assert_eq!(outcome.status, FixStatus::Failed);
    assert!(outcome.message.contains("volumes are ready") && outcome.message.contains("a stop is needed"), "{}", outcome.message);
    assert!(outcome.message.contains("Nothing was detached"), "{}", outcome.message);
    assert_eq!(block_devices(&sdk, &instance).await, before, "nothing was detached");
    assert_eq!(instance_state(&sdk, &instance).await, "running");
    assert_eq!(recorder.count("StopInstances") + recorder.count("DetachVolume"), 0);
    for old in [&root, &data] {
        let prepared = volumes_tagged(&sdk, "atrest:encrypted-from", old).await;
        assert_eq!(prepared.len(), 1, "an encrypted copy of {old} is ready");
        assert_eq!(prepared[0].encrypted(), Some(true));
    }

    // In the maintenance window: the copies made while it ran are replaced by current ones.
    let (outcome, _) = drive(&sdk, fix(client, 200), &payload(&root, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}");
    assert_swapped(&sdk, &instance, &root, &data).await;
    assert_eq!(recorder.count("StopInstances"), 1);
    assert_eq!(instance_state(&sdk, &instance).await, "running");
}

#[tokio::test]
async fn a_run_interrupted_after_every_single_step_converges_without_duplicates() {
    let sdk = sdk().await;
    let (instance, root, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-resume")).await;
    let (client, recorder) = recorded_ec2(&sdk);
    // One AWS change per invocation: every later invocation starts from what AWS shows.
    let (outcome, changes) = drive(&sdk, fix(client, 1), &payload(&data, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}\n{changes:#?}");
    assert!(changes.len() > 15, "{changes:#?}");
    assert_swapped(&sdk, &instance, &root, &data).await;
    assert_eq!(recorder.count("StopInstances"), 1);
    assert_eq!(recorder.count("CreateVolume"), 4, "two prepared while running, two from current data after the stop");
    assert_eq!(instance_state(&sdk, &instance).await, "running");
}

#[tokio::test]
async fn a_stopped_instance_is_swapped_without_starting_it() {
    let sdk = sdk().await;
    let (instance, root, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-stopped")).await;
    ec2(&sdk).stop_instances().instance_ids(&instance).send().await.unwrap();
    let (client, recorder) = recorded_ec2(&sdk);
    let (outcome, _) = drive(&sdk, fix(client, 200), &payload(&root, json!({})), None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}");
    assert_swapped(&sdk, &instance, &root, &data).await;
    assert_eq!(instance_state(&sdk, &instance).await, "stopped", "left as it was");
    assert_eq!(recorder.count("StopInstances") + recorder.count("StartInstances"), 0);
    assert_eq!(recorder.count("CreateVolume"), 2, "copies taken while stopped are current: no second pass");
}

#[tokio::test]
async fn a_detached_volume_is_simply_replaced() {
    let sdk = sdk().await;
    let client = ec2(&sdk);
    let old = client
        .create_volume()
        .availability_zone("us-east-1a")
        .size(5)
        .volume_type(aws_sdk_ec2::types::VolumeType::Io2)
        .iops(1000)
        .multi_attach_enabled(true)
        .tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Volume, &[("team", "data")]))
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let (outcome, _) = drive(&sdk, fix(client, 200), &payload(&old, json!({})), None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}");
    let new = volumes_tagged(&sdk, "atrest:encrypted-from", &old).await;
    assert_eq!(new.len(), 1);
    let new = &new[0];
    assert_eq!(new.encrypted(), Some(true));
    assert_eq!((new.volume_type().unwrap().as_str(), new.size(), new.iops()), ("io2", Some(5), Some(1000)));
    assert_eq!(new.multi_attach_enabled(), Some(true), "multi-attach kept");
    assert_eq!(tags(new).get("team").map(String::as_str), Some("data"));
    let old_v = volume(&sdk, &old).await;
    assert_eq!(tags(&old_v).get("atrest:replaced-by"), new.volume_id().map(str::to_string).as_ref());
    assert!(snapshots_tagged(&sdk, "atrest:encrypting", &old).await.is_empty());
    assert!(
        outcome.message.contains(&format!("{old} (detached) replaced by encrypted {}", new.volume_id().unwrap())),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_failing_attach_rolls_back_to_the_original_volumes_and_restarts() {
    let sdk = sdk().await;
    let (instance, root, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-rollback")).await;
    let before = block_devices(&sdk, &instance).await;
    let (client, recorder) = recorded_ec2(&sdk);
    *recorder.fail_attach_at.lock().unwrap() = Some(("/dev/sdf".into(), data.clone()));

    let (outcome, changes) = drive(&sdk, fix(client.clone(), 200), &payload(&data, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
    assert!(outcome.message.contains("rolled back") && outcome.message.contains("InvalidInstanceID.NotFound"), "{}", outcome.message);
    assert!(changes.iter().any(|c| c.contains("reattached original")), "{changes:#?}");
    assert_eq!(block_devices(&sdk, &instance).await, before, "original volumes back at their devices, same DeleteOnTermination");
    assert_eq!(instance_state(&sdk, &instance).await, "running", "restarted");
    for old in [&root, &data] {
        let kept = volumes_tagged(&sdk, "atrest:encrypted-from", old).await;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].state().unwrap().as_str(), "available", "encrypted copy kept, detached, for inspection");
    }

    // Until an operator clears the tag, a re-run only reports the rollback.
    let (again, changes) = drive(&sdk, fix(client, 200), &payload(&data, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(again.status, FixStatus::Failed);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(recorder.count("StopInstances"), 1);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let sdk = sdk().await;
    let (instance, root, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-dry")).await;
    let before = block_devices(&sdk, &instance).await;
    let (client, recorder) = recorded_ec2(&sdk);
    let mut p = load_event("fix-ebs-encrypt-volumes/ssm-payload-dry-run.json");
    p["ResourceId"] = json!(data);
    let (outcome, changes) = drive(&sdk, fix(client, 200), &p, None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded);
    assert!(outcome.dry_run && outcome.message.contains("would replace 2 volume(s)"), "{}", outcome.message);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().any(|c| c.contains(&root) && c.contains("/dev/xvda")), "{changes:?}");
    assert_eq!(block_devices(&sdk, &instance).await, before);
    let writes: Vec<String> = recorder.actions.lock().unwrap().iter().filter(|a| !a.starts_with("Describe")).cloned().collect();
    assert!(writes.is_empty(), "a dry run only reads: {writes:?}");
}

#[tokio::test]
async fn bad_input_fails_fast_and_changes_nothing() {
    let sdk = sdk().await;
    let (instance, _, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-bad")).await;
    let before = block_devices(&sdk, &instance).await;
    let cases = [
        (payload(&data, json!({"KmsKeyId": "alias/does-not-exist"})), "KmsKeyId"),
        (payload(&data, json!({"AllowInstanceStop": "yes"})), "AllowInstanceStop"),
        (payload("vol-0000000000000f00d", json!({})), "does not exist"),
        (payload("i-0123", json!({})), "not an EBS volume id"),
    ];
    for (p, expected) in cases {
        let (outcome, _) = drive(&sdk, fix(ec2(&sdk), 200), &p, None).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{p}");
        assert!(outcome.message.contains(expected), "{p}: {}", outcome.message);
    }
    assert_eq!(block_devices(&sdk, &instance).await, before);
}
