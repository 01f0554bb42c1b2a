//! Shared by the EBS/EC2 integration tests: an EC2 client on the stand-in that records which
//! operations were sent (and can make one attach fail for real), and a small estate builder.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, EbsInstanceBlockDeviceSpecification, InstanceBlockDeviceMappingSpecification, InstanceType,
    ResourceType, Tag, TagSpecification, VolumeType,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

/// Records the EC2 actions sent. With `fail_attach_at`, an AttachVolume of any volume other
/// than the named original at that device is sent for an instance that does not exist, so the
/// stand-in answers a real EC2 error (InvalidInstanceID.NotFound) and nothing is attached.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub actions: Arc<Mutex<Vec<String>>>,
    pub fail_attach_at: Arc<Mutex<Option<(String, String)>>>,
}

impl Recorder {
    pub fn count(&self, action: &str) -> usize {
        self.actions.lock().unwrap().iter().filter(|a| *a == action).count()
    }
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&').find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "atrest-test-recorder"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let body = request.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let action = form_value(&body, "Action").unwrap_or_default().to_string();
        self.actions.lock().unwrap().push(action.clone());
        if action == "AttachVolume"
            && let Some((device, original)) = self.fail_attach_at.lock().unwrap().clone()
            && form_value(&body, "Device") == Some(device.replace('/', "%2F").as_str())
            && form_value(&body, "VolumeId") != Some(original.as_str())
            && let Some(instance) = form_value(&body, "InstanceId")
        {
            let rewritten = body.replace(&format!("InstanceId={instance}"), "InstanceId=i-0000000000000dead");
            request.headers_mut().insert("content-length", rewritten.len().to_string());
            *request.body_mut() = SdkBody::from(rewritten);
        }
        Ok(())
    }
}

pub fn ec2(sdk: &SdkConfig) -> Client {
    Client::new(sdk)
}

pub fn recorded_ec2(sdk: &SdkConfig) -> (Client, Recorder) {
    let recorder = Recorder::default();
    let conf = aws_sdk_ec2::config::Builder::from(sdk).interceptor(recorder.clone()).build();
    (Client::from_conf(conf), recorder)
}

pub fn tag_spec(resource: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    let tags = tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
    TagSpecification::builder().resource_type(resource).set_tags(Some(tags)).build()
}

/// An instance with an unencrypted root (/dev/xvda, DeleteOnTermination=true) and an
/// unencrypted gp3 data volume (/dev/sdf, 20 GiB, 4000 IOPS, 250 MiB/s, tagged,
/// DeleteOnTermination=false). Returns (instance, root volume, data volume).
pub async fn instance_with_two_plain_volumes(sdk: &SdkConfig, name: &str) -> (String, String, String) {
    instance_of_type_with_two_plain_volumes(sdk, name, InstanceType::T3Micro).await
}

/// The same estate on an instance of the given type (e.g. one with instance store).
pub async fn instance_of_type_with_two_plain_volumes(sdk: &SdkConfig, name: &str, instance_type: InstanceType) -> (String, String, String) {
    let ec2 = ec2(sdk);
    let run = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(instance_type)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(EbsBlockDevice::builder().volume_size(8).volume_type(VolumeType::Gp2).delete_on_termination(true).build())
                .build(),
        )
        .tag_specifications(tag_spec(ResourceType::Instance, &[("Name", name)]))
        .send()
        .await
        .expect("RunInstances");
    let instance = run.instances()[0].instance_id().unwrap().to_string();
    let described = describe_instance(sdk, &instance).await;
    let az = described.placement().unwrap().availability_zone().unwrap().to_string();
    let root = described.block_device_mappings().iter().find(|m| m.device_name() == Some("/dev/xvda")).unwrap();
    let root = root.ebs().unwrap().volume_id().unwrap().to_string();
    let data = ec2
        .create_volume()
        .availability_zone(&az)
        .size(20)
        .volume_type(VolumeType::Gp3)
        .iops(4000)
        .throughput(250)
        .tag_specifications(tag_spec(ResourceType::Volume, &[("Name", &format!("{name}-data")), ("app", "db")]))
        .send()
        .await
        .expect("CreateVolume")
        .volume_id()
        .unwrap()
        .to_string();
    ec2.attach_volume().volume_id(&data).instance_id(&instance).device("/dev/sdf").send().await.expect("AttachVolume");
    ec2.modify_instance_attribute()
        .instance_id(&instance)
        .block_device_mappings(
            InstanceBlockDeviceMappingSpecification::builder()
                .device_name("/dev/sdf")
                .ebs(EbsInstanceBlockDeviceSpecification::builder().volume_id(&data).delete_on_termination(false).build())
                .build(),
        )
        .send()
        .await
        .expect("ModifyInstanceAttribute");
    (instance, root, data)
}

pub async fn describe_instance(sdk: &SdkConfig, instance: &str) -> aws_sdk_ec2::types::Instance {
    let out = ec2(sdk).describe_instances().instance_ids(instance).send().await.expect("DescribeInstances");
    out.reservations()[0].instances()[0].clone()
}

pub async fn instance_state(sdk: &SdkConfig, instance: &str) -> String {
    describe_instance(sdk, instance).await.state().unwrap().name().unwrap().as_str().to_string()
}

/// device -> (volume id, DeleteOnTermination)
pub async fn block_devices(sdk: &SdkConfig, instance: &str) -> BTreeMap<String, (String, bool)> {
    describe_instance(sdk, instance)
        .await
        .block_device_mappings()
        .iter()
        .map(|m| {
            let ebs = m.ebs().unwrap();
            (m.device_name().unwrap().to_string(), (ebs.volume_id().unwrap().to_string(), ebs.delete_on_termination().unwrap_or(false)))
        })
        .collect()
}

pub async fn volume(sdk: &SdkConfig, id: &str) -> aws_sdk_ec2::types::Volume {
    ec2(sdk).describe_volumes().volume_ids(id).send().await.expect("DescribeVolumes").volumes()[0].clone()
}

pub fn tags(v: &aws_sdk_ec2::types::Volume) -> BTreeMap<String, String> {
    v.tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

pub async fn volumes_tagged(sdk: &SdkConfig, key: &str, value: &str) -> Vec<aws_sdk_ec2::types::Volume> {
    let filter = aws_sdk_ec2::types::Filter::builder().name(format!("tag:{key}")).values(value).build();
    ec2(sdk).describe_volumes().filters(filter).send().await.expect("DescribeVolumes").volumes().to_vec()
}

pub async fn snapshots_tagged(sdk: &SdkConfig, key: &str, value: &str) -> Vec<aws_sdk_ec2::types::Snapshot> {
    let filter = aws_sdk_ec2::types::Filter::builder().name(format!("tag:{key}")).values(value).build();
    ec2(sdk).describe_snapshots().owner_ids("self").filters(filter).send().await.expect("DescribeSnapshots").snapshots().to_vec()
}

pub async fn aws_ebs_key_arn(sdk: &SdkConfig) -> String {
    let kms = atrest::clients::kms(sdk);
    kms.describe_key().key_id("alias/aws/ebs").send().await.expect("DescribeKey").key_metadata().unwrap().arn().unwrap().to_string()
}

/// A fixed EC2 estate answered by aws-smithy-mocks, for what the stand-in cannot show (states
/// AWS reaches asynchronously or through eventual consistency). The describe calls answer from
/// it with the filters the fix uses (`volume-id`, `tag:<key>`); writes get their own rules in
/// each test so that their calls can be counted.
pub mod mocked {
    use std::sync::Arc;

    use aws_sdk_ec2::operation::describe_instance_types::DescribeInstanceTypesOutput;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
    use aws_sdk_ec2::types::{
        EbsInstanceBlockDevice, Filter, Instance, InstanceBlockDeviceMapping, InstanceState, InstanceStateName, InstanceTypeInfo,
        Reservation, Snapshot, SnapshotState, StateReason, Tag, Volume, VolumeAttachment, VolumeAttachmentState, VolumeState, VolumeType,
    };
    use aws_smithy_mocks::{Rule, mock};
    use aws_smithy_types::DateTime;

    pub const AZ: &str = "us-east-1a";

    pub fn tag_list(pairs: &[(&str, &str)]) -> Vec<Tag> {
        pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()
    }

    /// A volume; `attached`: (instance, device).
    pub fn volume(id: &str, encrypted: bool, state: VolumeState, attached: Option<(&str, &str)>, tags: &[(&str, &str)]) -> Volume {
        Volume::builder()
            .volume_id(id)
            .availability_zone(AZ)
            .volume_type(VolumeType::Gp3)
            .size(20)
            .iops(3000)
            .throughput(125)
            .encrypted(encrypted)
            .state(state)
            .create_time(DateTime::from_secs(1_000))
            .set_tags(Some(tag_list(tags)))
            .set_attachments(attached.map(|(i, d)| {
                vec![VolumeAttachment::builder().instance_id(i).device(d).volume_id(id).state(VolumeAttachmentState::Attached).build()]
            }))
            .build()
    }

    pub fn snapshot(id: &str, state: SnapshotState, message: Option<&str>, tags: &[(&str, &str)]) -> Snapshot {
        Snapshot::builder()
            .snapshot_id(id)
            .state(state)
            .set_state_message(message.map(str::to_string))
            .start_time(DateTime::from_secs(2_000))
            .encrypted(false)
            .set_tags(Some(tag_list(tags)))
            .build()
    }

    /// An EBS-backed instance; `devices`: (device, volume, DeleteOnTermination).
    pub fn instance(
        id: &str,
        state: InstanceStateName,
        reason: Option<(&str, &str)>,
        devices: &[(&str, &str, bool)],
        tags: &[(&str, &str)],
    ) -> Instance {
        Instance::builder()
            .instance_id(id)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .root_device_type(aws_sdk_ec2::types::DeviceType::Ebs)
            .state(InstanceState::builder().name(state).build())
            .launch_time(DateTime::from_secs(100))
            .set_state_reason(reason.map(|(c, m)| StateReason::builder().code(c).message(m).build()))
            .set_tags(Some(tag_list(tags)))
            .set_block_device_mappings(Some(
                devices
                    .iter()
                    .map(|(d, v, dot)| {
                        InstanceBlockDeviceMapping::builder()
                            .device_name(*d)
                            .ebs(EbsInstanceBlockDevice::builder().volume_id(*v).delete_on_termination(*dot).build())
                            .build()
                    })
                    .collect(),
            ))
            .build()
    }

    fn tag_matches(tags: &[Tag], f: &Filter) -> bool {
        let Some(key) = f.name().and_then(|n| n.strip_prefix("tag:")) else { return true };
        tags.iter().any(|t| t.key() == Some(key) && f.values().iter().any(|v| t.value() == Some(v.as_str())))
    }

    /// The describe rules of an estate. `instances` answers DescribeInstances in order (the
    /// last one repeatedly): EC2's eventually consistent view of the instance, call by call.
    pub fn describe_rules(volumes: Vec<Volume>, snapshots: Vec<Snapshot>, instances: Vec<Instance>) -> Vec<Rule> {
        let volumes = Arc::new(volumes);
        let snapshots = Arc::new(snapshots);
        let describe_volumes = mock!(aws_sdk_ec2::Client::describe_volumes).then_compute_output(move |req| {
            let keep = |v: &&Volume| {
                req.filters().iter().all(|f| match f.name() {
                    Some("volume-id") => f.values().iter().any(|id| v.volume_id() == Some(id.as_str())),
                    _ => tag_matches(v.tags(), f),
                }) && (req.volume_ids().is_empty() || req.volume_ids().iter().any(|id| v.volume_id() == Some(id.as_str())))
            };
            DescribeVolumesOutput::builder().set_volumes(Some(volumes.iter().filter(keep).cloned().collect())).build()
        });
        let describe_snapshots = mock!(aws_sdk_ec2::Client::describe_snapshots).then_compute_output(move |req| {
            let keep = |s: &&Snapshot| req.filters().iter().all(|f| tag_matches(s.tags(), f));
            DescribeSnapshotsOutput::builder().set_snapshots(Some(snapshots.iter().filter(keep).cloned().collect())).build()
        });
        assert!(!instances.is_empty(), "describe_rules needs at least one view of the instance");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let describe_instances = mock!(aws_sdk_ec2::Client::describe_instances).then_compute_output(move |_| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst).min(instances.len() - 1);
            DescribeInstancesOutput::builder().reservations(Reservation::builder().instances(instances[n].clone()).build()).build()
        });
        vec![describe_volumes, describe_snapshots, describe_instances]
    }

    /// DescribeInstanceTypes for an instance type without instance store (t3.micro).
    pub fn no_instance_store() -> Rule {
        mock!(aws_sdk_ec2::Client::describe_instance_types).then_output(|| {
            DescribeInstanceTypesOutput::builder()
                .instance_types(InstanceTypeInfo::builder().instance_type(aws_sdk_ec2::types::InstanceType::T3Micro).build())
                .build()
        })
    }
}
