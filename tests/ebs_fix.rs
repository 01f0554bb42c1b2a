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

/// The fix with shorter budgets, and the EC2 client its runner is to use.
fn fix(ec2: aws_sdk_ec2::Client, max_actions: usize) -> (EbsEncryptVolumes, aws_sdk_ec2::Client) {
    (EbsEncryptVolumes { max_actions, poll: Duration::ZERO, ..EbsEncryptVolumes::default() }, ec2)
}

/// Runs the SSM loop (every step, with each step's changes kept) until a final status.
async fn drive(
    sdk: &SdkConfig,
    (fix, ec2): (EbsEncryptVolumes, aws_sdk_ec2::Client),
    payload: &Value,
    alerts: Option<&str>,
) -> (FixOutcome, Vec<String>) {
    let runner = FixRunner::new(Arc::new(fix), sdk, alerts.map(|t| AlertPublisher::new(sdk, t))).with_client(ec2);
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

#[tokio::test]
async fn keys_ebs_cannot_use_are_refused_before_anything_is_made() {
    // EC2 checks KmsKeyId only asynchronously; the fix checks the key first (DescribeKey).
    let sdk = sdk().await;
    let (instance, _, data) = instance_with_two_plain_volumes(&sdk, &unique("ebs-keys")).await;
    let kms = atrest::clients::kms(&sdk);
    let disabled = kms.create_key().send().await.unwrap().key_metadata().unwrap().clone();
    // By key id: moto 5.2.5's DisableKey does not resolve a key ARN (no atrest code calls it).
    kms.disable_key().key_id(disabled.key_id()).send().await.unwrap();
    let disabled = disabled.arn().unwrap().to_string();
    let signing = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let (client, recorder) = recorded_ec2(&sdk);
    for (key, why) in [(&disabled, "is Disabled"), (&signing, "SIGN_VERIFY")] {
        let (outcome, _) =
            drive(&sdk, fix(client.clone(), 200), &payload(&data, json!({"KmsKeyId": key, "AllowInstanceStop": "true"})), None).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{key}");
        assert!(outcome.message.contains("KmsKeyId") && outcome.message.contains(why), "{}", outcome.message);
    }
    assert!(recorder.actions.lock().unwrap().is_empty(), "no EC2 call at all: {:?}", recorder.actions.lock().unwrap());
    assert!(snapshots_tagged(&sdk, "atrest:encrypting", &data).await.is_empty());
    assert_eq!(instance_state(&sdk, &instance).await, "running");
}

#[tokio::test]
async fn an_instance_with_instance_store_is_stopped_only_when_the_loss_is_accepted() {
    // A stop erases every block of the instance store (m5d.large: one 75 GB NVMe disk).
    let sdk = sdk().await;
    let (instance, root, data) =
        instance_of_type_with_two_plain_volumes(&sdk, &unique("ebs-store"), aws_sdk_ec2::types::InstanceType::M5dLarge).await;
    let before = block_devices(&sdk, &instance).await;
    let (client, recorder) = recorded_ec2(&sdk);

    let (dry, _) =
        drive(&sdk, fix(client.clone(), 200), &payload(&data, json!({"AllowInstanceStop": "true", "DryRun": "true"})), None).await;
    assert!(dry.message.contains("75 GB of instance store") && dry.message.contains("AllowInstanceStoreDataLoss=true"), "{}", dry.message);

    let (outcome, _) = drive(&sdk, fix(client.clone(), 200), &payload(&data, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
    assert!(
        outcome.message.contains("AllowInstanceStoreDataLoss=true") && outcome.message.contains("m5d.large has 75 GB of instance store"),
        "{}",
        outcome.message
    );
    assert_eq!(recorder.count("StopInstances") + recorder.count("DetachVolume"), 0);
    assert_eq!(instance_state(&sdk, &instance).await, "running", "the instance store is intact");
    assert_eq!(block_devices(&sdk, &instance).await, before);

    let accepted = json!({"AllowInstanceStop": "true", "AllowInstanceStoreDataLoss": "true"});
    let (outcome, _) = drive(&sdk, fix(client, 200), &payload(&data, accepted), None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}");
    assert_swapped(&sdk, &instance, &root, &data).await;
    assert_eq!(recorder.count("StopInstances"), 1);
}

#[tokio::test]
async fn an_auto_scaling_member_is_stopped_only_when_the_group_would_not_replace_it() {
    // A stopped InService instance is marked unhealthy and terminated by its group: refused
    // unless it is in Standby or the group's ReplaceUnhealthy (or HealthCheck) is suspended.
    use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
    let sdk = sdk().await;
    let name = unique("ebs-asg");
    let ec2c = ec2(&sdk);
    ec2c.create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_template(LaunchTemplateSpecification::builder().launch_template_name(&name).version("$Latest").build())
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let group = asg.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
    let instance = group.auto_scaling_groups()[0].instances()[0].instance_id().unwrap().to_string();
    let devices = block_devices(&sdk, &instance).await;
    let (device, (root, _)) = devices.into_iter().next().expect("a root volume");
    let (client, recorder) = recorded_ec2(&sdk);

    let (outcome, _) = drive(&sdk, fix(client.clone(), 200), &payload(&root, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
    assert!(
        outcome.message.contains(&format!("Auto Scaling group {name}")) && outcome.message.contains("InService"),
        "{}",
        outcome.message
    );
    assert_eq!(recorder.count("StopInstances"), 0, "not stopped: the group would have replaced it");
    assert_eq!(instance_state(&sdk, &instance).await, "running");

    asg.suspend_processes().auto_scaling_group_name(&name).scaling_processes("ReplaceUnhealthy").send().await.unwrap();
    let (outcome, _) = drive(&sdk, fix(client, 200), &payload(&root, json!({"AllowInstanceStop": "true"})), None).await;
    assert_eq!(outcome.status, FixStatus::Succeeded, "{outcome:#?}");
    let (new_root, _) = block_devices(&sdk, &instance).await[&device].clone();
    assert_ne!(new_root, root);
    assert_eq!(volume(&sdk, &new_root).await.encrypted(), Some(true));
    assert_eq!(instance_state(&sdk, &instance).await, "running");
    assert_eq!(recorder.count("StopInstances"), 1);
}

// ---------------------------------------------------------------------------------------------
// What the stand-in cannot show, answered as AWS documents it (aws-smithy-mocks). KMS and Auto
// Scaling come from the stand-in; EC2 is mocked.

mod aws_behaviour {
    use super::*;
    use aws_sdk_ec2::operation::attach_volume::AttachVolumeOutput;
    use aws_sdk_ec2::operation::create_snapshot::{CreateSnapshotError, CreateSnapshotOutput};
    use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
    use aws_sdk_ec2::operation::create_volume::{CreateVolumeError, CreateVolumeOutput};
    use aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotOutput;
    use aws_sdk_ec2::operation::delete_volume::DeleteVolumeOutput;
    use aws_sdk_ec2::operation::start_instances::StartInstancesOutput;
    use aws_sdk_ec2::operation::stop_instances::StopInstancesOutput;
    use aws_sdk_ec2::types::{InstanceStateName, SnapshotState, VolumeState};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use ebs_support::mocked::{self, instance, snapshot, volume};

    const I: &str = "i-0123456789abcdef0";
    const OLD: &str = "vol-0000000000000a01d";
    const NEW: &str = "vol-0000000000000a0e1";
    const EXEC: &str = "4f1c8a52-0000-4000-8000-000000000004";

    /// Every write the fix can make, counted; none answers unless a test says so.
    struct Writes {
        create_snapshot: Rule,
        create_volume: Rule,
        delete_snapshot: Rule,
        delete_volume: Rule,
        attach: Rule,
        stop: Rule,
        start: Rule,
        create_tags: Rule,
    }

    impl Writes {
        fn new() -> Writes {
            Writes {
                create_snapshot: mock!(aws_sdk_ec2::Client::create_snapshot)
                    .then_output(|| CreateSnapshotOutput::builder().snapshot_id("snap-0000000000000f00d").build()),
                create_volume: mock!(aws_sdk_ec2::Client::create_volume)
                    .then_output(|| CreateVolumeOutput::builder().volume_id("vol-0000000000000f00d").build()),
                delete_snapshot: mock!(aws_sdk_ec2::Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build()),
                delete_volume: mock!(aws_sdk_ec2::Client::delete_volume).then_output(|| DeleteVolumeOutput::builder().build()),
                attach: mock!(aws_sdk_ec2::Client::attach_volume).then_output(|| AttachVolumeOutput::builder().build()),
                stop: mock!(aws_sdk_ec2::Client::stop_instances).then_output(|| StopInstancesOutput::builder().build()),
                start: mock!(aws_sdk_ec2::Client::start_instances).then_output(|| StartInstancesOutput::builder().build()),
                create_tags: mock!(aws_sdk_ec2::Client::create_tags).then_output(|| CreateTagsOutput::builder().build()),
            }
        }

        fn all(&self) -> Vec<&Rule> {
            vec![
                &self.create_snapshot,
                &self.create_volume,
                &self.delete_snapshot,
                &self.delete_volume,
                &self.attach,
                &self.stop,
                &self.start,
                &self.create_tags,
            ]
        }
    }

    /// One SSM turn (one action at most) of the fix on the mocked estate.
    async fn turn(sdk: &SdkConfig, describe: &[Rule], extra: &[&Rule], writes: &Writes) -> FixOutcome {
        let rules: Vec<&Rule> = describe.iter().chain(extra.iter().copied()).chain(writes.all()).collect();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules);
        let (fix, ec2) = fix(client, 1);
        let runner = FixRunner::new(Arc::new(fix), sdk, None).with_client(ec2);
        let req = FixRequest::decode(&SPEC, &payload(OLD, json!({"AllowInstanceStop": "true"}))).unwrap();
        runner.step_request(&req).await
    }

    fn new_volume(attached: Option<(&str, &str)>, state: VolumeState) -> aws_sdk_ec2::types::Volume {
        volume(
            NEW,
            true,
            state,
            attached,
            &[
                ("atrest:encrypted-from", OLD),
                ("atrest:encrypting", OLD),
                ("atrest:source-snapshot", "snap-0000000000000c0de"),
                ("atrest:execution", EXEC),
                ("atrest:for-instance", I),
                ("atrest:for-device", "/dev/sdf"),
                ("atrest:delete-on-termination", "false"),
                ("atrest:taken-while", "stopped"),
                ("atrest:taken-at", "400"),
            ],
        )
    }

    const STOPPED_BY_FIX: &[(&str, &str)] = &[("atrest:restart-after-encryption", "true"), ("atrest:stopped-for-encryption-at", "300")];

    #[tokio::test]
    async fn describe_instances_still_listing_the_detached_volume_is_waited_out_then_the_swap_goes_on() {
        // After DetachVolume, DescribeVolumes shows the old volume detached while
        // DescribeInstances, eventually consistent, still lists it at the device. That is no
        // conflict: the run waits, and attaches the new volume once EC2 catches up.
        let sdk = sdk().await;
        let lagging = instance(I, InstanceStateName::Stopped, None, &[("/dev/sdf", OLD, false)], STOPPED_BY_FIX);
        let caught_up = instance(I, InstanceStateName::Stopped, None, &[], STOPPED_BY_FIX);
        let describe = mocked::describe_rules(
            vec![volume(OLD, false, VolumeState::Available, None, &[]), new_volume(None, VolumeState::Available)],
            vec![],
            vec![lagging, caught_up],
        );
        let writes = Writes::new();
        let first = turn(&sdk, &describe, &[], &writes).await;
        assert_eq!(first.status, FixStatus::InProgress, "{first:#?}");
        assert!(first.message.contains(&format!("still lists {OLD}")), "{}", first.message);
        assert_eq!(writes.attach.num_calls(), 0, "nothing attached while EC2 catches up");

        let second = turn(&sdk, &describe, &[], &writes).await;
        assert_eq!(second.status, FixStatus::InProgress, "{second:#?}");
        assert_eq!(writes.attach.num_calls(), 1, "{second:#?}");
        assert!(second.changes.iter().any(|c| c.contains(&format!("attached encrypted {NEW} to {I} /dev/sdf"))), "{second:#?}");
    }

    #[tokio::test]
    async fn new_volumes_failing_asynchronously_are_retried_under_new_tokens_then_the_run_fails_naming_the_key() {
        // EC2 checks KmsKeyId asynchronously: CreateVolume succeeds and the volume ends in
        // `error`. Each failure is kept (the count lives in AWS) and the next attempt uses the next
        // client token; the third failure of the execution ends the run, the instance untouched.
        let sdk = sdk().await;
        let running = || instance(I, InstanceStateName::Running, None, &[("/dev/sdf", OLD, false)], &[]);
        let failed = |n: usize| {
            let mut v = new_volume(None, VolumeState::Error);
            v.volume_id = Some(format!("vol-000000000000000e{n}"));
            v.tags = Some(mocked::tag_list(&[
                ("atrest:encrypted-from", OLD),
                ("atrest:encrypting", OLD),
                ("atrest:source-snapshot", "snap-0000000000000c0de"),
                ("atrest:execution", EXEC),
                ("atrest:taken-while", "running"),
                ("atrest:taken-at", "400"),
            ]));
            v
        };
        let source = snapshot(
            "snap-0000000000000c0de",
            SnapshotState::Completed,
            None,
            &[
                ("atrest:encrypting", OLD),
                ("atrest:stage", "source"),
                ("atrest:execution", EXEC),
                ("atrest:taken-while", "running"),
                ("atrest:taken-at", "400"),
            ],
        );
        let old = || volume(OLD, false, VolumeState::InUse, Some((I, "/dev/sdf")), &[]);
        let types = mocked::no_instance_store();

        let describe = mocked::describe_rules(vec![old(), failed(1)], vec![source.clone()], vec![running()]);
        let writes = Writes::new();
        let retry = mock!(aws_sdk_ec2::Client::create_volume)
            .match_requests(|r| r.client_token() == Some("atrest-snap-0000000000000c0de-1") && r.encrypted() == Some(true))
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-0000000000000f00d").build());
        let outcome = turn(&sdk, &describe, &[&types, &retry], &writes).await;
        assert_eq!(retry.num_calls(), 1, "the retry uses the next token: {outcome:#?}");
        assert_eq!(writes.delete_volume.num_calls(), 0, "the failed volume stays until the end: it is the count");

        let describe = mocked::describe_rules(vec![old(), failed(1), failed(2), failed(3)], vec![source], vec![running()]);
        let writes = Writes::new();
        let outcome = turn(&sdk, &describe, &[&types], &writes).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
        assert!(outcome.message.contains("3 attempts") && outcome.message.contains("KMS key"), "{}", outcome.message);
        assert!(outcome.message.contains("Nothing was detached"), "{}", outcome.message);
        let made: usize =
            [&writes.create_volume, &writes.create_snapshot, &writes.stop, &writes.delete_volume].iter().map(|r| r.num_calls()).sum();
        assert_eq!(made, 0, "no fourth attempt, no stop");
    }

    #[tokio::test]
    async fn new_volumes_ec2_deletes_by_itself_are_counted_on_the_snapshot_then_the_run_fails_naming_the_key() {
        // What AWS does with a KMS key EBS cannot use on CreateVolume (reported by every tool
        // that met it, e.g. aws-ebs-csi-driver#3010, aws-cli#2604): the call answers `creating`,
        // the volume is deleted within seconds (DescribeVolumes: InvalidVolume.NotFound; no
        // `error` state ever shows), and the same client token then answers
        // IdempotentParameterMismatch. Resending the token is how the fix finds out; the count
        // goes on the plain snapshot, since nothing else is left in AWS.
        let sdk = sdk().await;
        let running = || instance(I, InstanceStateName::Running, None, &[("/dev/sdf", OLD, false)], &[]);
        let old = || volume(OLD, false, VolumeState::InUse, Some((I, "/dev/sdf")), &[]);
        let source = |vanished: Option<&str>| {
            let mut tags = vec![
                ("atrest:encrypting", OLD),
                ("atrest:stage", "source"),
                ("atrest:execution", EXEC),
                ("atrest:taken-while", "running"),
                ("atrest:taken-at", "400"),
            ];
            if let Some(v) = vanished {
                tags.push(("atrest:vanished-volumes", v));
            }
            snapshot("snap-0000000000000c0de", SnapshotState::Completed, None, &tags)
        };
        let types = mocked::no_instance_store();
        let spent = |token: &'static str| {
            mock!(aws_sdk_ec2::Client::create_volume).match_requests(move |r| r.client_token() == Some(token)).then_error(|| {
                CreateVolumeError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("IdempotentParameterMismatch")
                        .message("The client token you have provided is associated with a resource that is already deleted.")
                        .build(),
                )
            })
        };

        // The volume of the first attempt is gone: its token is spent. Counted, not failed.
        let first = spent("atrest-snap-0000000000000c0de-0");
        let counted = format!("1 {EXEC} 1");
        let count = {
            let counted = counted.clone();
            mock!(aws_sdk_ec2::Client::create_tags)
                .match_requests(move |r| {
                    r.resources() == ["snap-0000000000000c0de"]
                        && r.tags().iter().any(|t| t.key() == Some("atrest:vanished-volumes") && t.value() == Some(counted.as_str()))
                })
                .then_output(|| CreateTagsOutput::builder().build())
        };
        let writes = Writes::new();
        let describe = mocked::describe_rules(vec![old()], vec![source(None)], vec![running()]);
        let outcome = turn(&sdk, &describe, &[&types, &first, &count], &writes).await;
        assert_eq!((first.num_calls(), count.num_calls()), (1, 1), "{outcome:#?}");
        assert_eq!(outcome.status, FixStatus::InProgress, "{outcome:#?}");
        assert!(outcome.changes.iter().any(|c| c.contains("EC2 deleted the encrypted volume")), "{outcome:#?}");

        // The next turn sends the next token.
        let next = mock!(aws_sdk_ec2::Client::create_volume)
            .match_requests(|r| r.client_token() == Some("atrest-snap-0000000000000c0de-1"))
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-0000000000000f00d").build());
        let writes = Writes::new();
        let describe = mocked::describe_rules(vec![old()], vec![source(Some(&counted))], vec![running()]);
        let outcome = turn(&sdk, &describe, &[&types, &next], &writes).await;
        assert_eq!(next.num_calls(), 1, "{outcome:#?}");

        // The third in this execution ends the run naming the key; nothing made, nothing stopped.
        let writes = Writes::new();
        let describe = mocked::describe_rules(vec![old()], vec![source(Some(&format!("3 {EXEC} 3")))], vec![running()]);
        let outcome = turn(&sdk, &describe, &[&types], &writes).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
        assert!(
            outcome.message.contains("deleted by EC2 right after creation") && outcome.message.contains("KMS key"),
            "{}",
            outcome.message
        );
        let made: usize =
            [&writes.create_volume, &writes.create_snapshot, &writes.stop, &writes.delete_volume].iter().map(|r| r.num_calls()).sum();
        assert_eq!(made, 0, "no fourth attempt, no stop");
    }

    #[tokio::test]
    async fn snapshots_failing_asynchronously_end_the_run_with_their_state_message() {
        let sdk = sdk().await;
        let failed = |id: &str| {
            snapshot(
                id,
                SnapshotState::Error,
                Some("The KMS key used for this operation is not accessible."),
                &[
                    ("atrest:encrypting", OLD),
                    ("atrest:stage", "source"),
                    ("atrest:execution", EXEC),
                    ("atrest:taken-while", "running"),
                    ("atrest:taken-at", "400"),
                ],
            )
        };
        let describe = mocked::describe_rules(
            vec![volume(OLD, false, VolumeState::InUse, Some((I, "/dev/sdf")), &[])],
            vec![failed("snap-00000000000000e01"), failed("snap-00000000000000e02"), failed("snap-00000000000000e03")],
            vec![instance(I, InstanceStateName::Running, None, &[("/dev/sdf", OLD, false)], &[])],
        );
        let writes = Writes::new();
        let outcome = turn(&sdk, &describe, &[&mocked::no_instance_store()], &writes).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
        assert!(outcome.message.contains("The KMS key used for this operation is not accessible."), "{}", outcome.message);
        assert_eq!(writes.create_snapshot.num_calls() + writes.delete_snapshot.num_calls(), 0, "no endless delete-and-retry");
    }

    #[tokio::test]
    async fn an_account_snapshot_limit_is_a_wait_not_a_failure() {
        // 20 concurrent snapshot copies per Region, a cap on pending snapshots: EC2 answers
        // ResourceLimitExceeded / PendingSnapshotLimitExceeded, which clear as others complete.
        let sdk = sdk().await;
        for code in ["ResourceLimitExceeded", "PendingSnapshotLimitExceeded"] {
            let describe = mocked::describe_rules(
                vec![volume(OLD, false, VolumeState::InUse, Some((I, "/dev/sdf")), &[])],
                vec![],
                vec![instance(I, InstanceStateName::Running, None, &[("/dev/sdf", OLD, false)], &[])],
            );
            let limit = mock!(aws_sdk_ec2::Client::create_snapshot).then_error(move || {
                CreateSnapshotError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder().code(code).message("too many snapshots in progress").build(),
                )
            });
            let writes = Writes::new();
            let outcome = turn(&sdk, &describe, &[&mocked::no_instance_store(), &limit], &writes).await;
            assert_eq!(limit.num_calls(), 1);
            assert_eq!(outcome.status, FixStatus::InProgress, "{code}: {outcome:#?}");
            assert!(outcome.message.contains("account limit") && outcome.message.contains(code), "{}", outcome.message);
        }
    }

    #[tokio::test]
    async fn a_start_that_fails_asynchronously_is_counted_and_reported_not_looped() {
        // StartInstances is accepted, then the instance falls back to `stopped` with a
        // StateReason (e.g. a volume's KMS key it cannot use). Each start is counted on the
        // instance first; after three the run fails with the reason.
        let sdk = sdk().await;
        let estate = |attempts: &str| {
            let mut tags = STOPPED_BY_FIX.to_vec();
            tags.push(("atrest:start-attempts", attempts));
            mocked::describe_rules(
                vec![
                    volume(OLD, false, VolumeState::Available, None, &[("atrest:replaced-by", NEW)]),
                    volume(NEW, true, VolumeState::InUse, Some((I, "/dev/sdf")), &[("atrest:encrypted-from", OLD)]),
                ],
                vec![],
                vec![instance(
                    I,
                    InstanceStateName::Stopped,
                    Some(("Client.InternalError", "Client.InternalError: Client error on launch")),
                    &[("/dev/sdf", NEW, false)],
                    &tags,
                )],
            )
        };
        let writes = Writes::new();
        let outcome = turn(&sdk, &estate("1"), &[], &writes).await;
        assert_eq!((writes.create_tags.num_calls(), writes.start.num_calls()), (1, 1), "{outcome:#?}");
        assert!(outcome.changes.iter().any(|c| c.contains("attempt 2")), "{outcome:#?}");

        let writes = Writes::new();
        let outcome = turn(&sdk, &estate("3"), &[], &writes).await;
        assert_eq!(outcome.status, FixStatus::Failed, "{outcome:#?}");
        assert!(outcome.message.contains("did not start") && outcome.message.contains("Client error on launch"), "{}", outcome.message);
        assert!(outcome.message.contains(&format!("/dev/sdf: {OLD} -> {NEW}")), "{}", outcome.message);
        assert_eq!(writes.start.num_calls(), 0, "no fourth start");
    }
}
