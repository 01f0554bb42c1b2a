//! Carries out one planned action. Each creation carries its bookkeeping tags in the same call
//! (TagSpecifications), so there is no window in which a resource exists but cannot be found.

use atrest::error::{Result, aws_error};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    EbsInstanceBlockDeviceSpecification, InstanceBlockDeviceMappingSpecification, ResourceType, Tag, TagSpecification, VolumeType,
};

use crate::model::{Volume, carries_iops, tag};
use crate::plan::{Action, Destination};

/// EC2 allows 50 tags per resource.
const MAX_TAGS: usize = 50;

fn tags(resource: ResourceType, pairs: Vec<(String, String)>) -> TagSpecification {
    let tags = pairs.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    TagSpecification::builder().resource_type(resource).set_tags(Some(tags)).build()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The old volume's own tags to carry over: everything but `aws:` (reserved) and this fix's
/// bookkeeping.
pub fn carried_tags(old: &Volume) -> Vec<(String, String)> {
    old.tags
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:") && !tag::OPERATIONAL.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub struct Executor<'a> {
    pub ec2: &'a Client,
    pub key_arn: &'a str,
    /// The SSM execution, tagged on what this run creates (its failed attempts are counted).
    pub execution: &'a str,
}

impl Executor<'_> {
    /// Runs the action; returns the change, in plain words.
    pub async fn run(&self, action: &Action) -> Result<String> {
        let ec2 = self.ec2;
        match action {
            Action::SnapshotSource { volume, taken_while } => {
                let out = ec2
                    .create_snapshot()
                    .volume_id(volume)
                    .description(format!("atrest: temporary snapshot of {volume} for encryption; deleted after the swap"))
                    .tag_specifications(tags(
                        ResourceType::Snapshot,
                        vec![
                            (tag::ENCRYPTING.into(), volume.clone()),
                            (tag::STAGE.into(), "source".into()),
                            (tag::EXECUTION.into(), self.execution.to_string()),
                            (tag::TAKEN_WHILE.into(), taken_while.clone()),
                            (tag::TAKEN_AT.into(), now_secs().to_string()),
                        ],
                    ))
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:CreateSnapshot", volume, e))?;
                Ok(format!("snapshot {} of {volume} started (instance {taken_while})", out.snapshot_id().unwrap_or("?")))
            }
            Action::CreateVolume { old, source, attempt, vanished, taken_while, taken_at, destination } => {
                match self.create_volume(old, source, *attempt, taken_while, *taken_at, destination.as_ref()).await {
                    // This attempt's token was already used, and its volume is gone: EC2 deleted
                    // it by itself (an unusable KMS key), since this fix deletes its new volumes
                    // only after the swap or as failed attempts it has counted. Counted on the
                    // snapshot, so the next turn uses the next token or stops at the cap.
                    Err(atrest::Error::Aws { code, .. }) if code == "IdempotentParameterMismatch" => {
                        self.tag(source, vec![(tag::VANISHED_VOLUMES.into(), vanished.one_more(self.execution))], "ec2:CreateTags").await?;
                        Ok(format!(
                            "EC2 deleted the encrypted volume it had created from snapshot {source} for {} (attempt {}): EBS could \
                             not use KMS key {}; trying again with a new client token",
                            old.id,
                            attempt + 1,
                            self.key_arn
                        ))
                    }
                    other => other,
                }
            }
            Action::DeleteVolume { volume, why } => {
                ec2.delete_volume().volume_id(volume).send().await.map_err(|e| aws_error("ec2:DeleteVolume", volume, e))?;
                Ok(format!("deleted temporary volume {volume} ({why})"))
            }
            Action::DeleteSnapshot { snapshot, why } => {
                ec2.delete_snapshot().snapshot_id(snapshot).send().await.map_err(|e| aws_error("ec2:DeleteSnapshot", snapshot, e))?;
                Ok(format!("deleted snapshot {snapshot} ({why})"))
            }
            Action::StopInstance { instance } => {
                // Recorded first: whoever runs next must restart it, and must not trust copies
                // taken before this moment.
                self.tag(
                    instance,
                    vec![
                        (tag::RESTART.into(), "true".into()),
                        (tag::STOPPED_AT.into(), now_secs().to_string()),
                        (tag::START_ATTEMPTS.into(), "0".into()),
                    ],
                    "ec2:CreateTags",
                )
                .await?;
                ec2.stop_instances().instance_ids(instance).send().await.map_err(|e| aws_error("ec2:StopInstances", instance, e))?;
                Ok(format!("stopping instance {instance} to swap its volumes"))
            }
            Action::StartInstance { instance, attempt } => {
                // Counted first: a start EC2 accepts can still end with the instance stopped.
                self.tag(instance, vec![(tag::START_ATTEMPTS.into(), attempt.to_string())], "ec2:CreateTags").await?;
                ec2.start_instances().instance_ids(instance).send().await.map_err(|e| aws_error("ec2:StartInstances", instance, e))?;
                let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                Ok(format!("starting instance {instance} again{again}"))
            }
            Action::ClearInstanceTags { instance } => {
                ec2.delete_tags()
                    .resources(instance)
                    .tags(Tag::builder().key(tag::RESTART).build())
                    .tags(Tag::builder().key(tag::STOPPED_AT).build())
                    .tags(Tag::builder().key(tag::START_ATTEMPTS).build())
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:DeleteTags", instance, e))?;
                Ok(format!("instance {instance} is back in its previous state"))
            }
            Action::Detach { volume, instance, device } => {
                ec2.detach_volume()
                    .volume_id(volume)
                    .instance_id(instance)
                    .device(device)
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:DetachVolume", volume, e))?;
                Ok(format!("detached {volume} from {instance} {device}"))
            }
            Action::Attach { volume, instance, device, original } => {
                ec2.attach_volume()
                    .volume_id(volume)
                    .instance_id(instance)
                    .device(device)
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:AttachVolume", volume, e))?;
                let what = if *original { "reattached original" } else { "attached encrypted" };
                Ok(format!("{what} {volume} to {instance} {device}"))
            }
            Action::SetDeleteOnTermination { instance, device, volume, value } => {
                ec2.modify_instance_attribute()
                    .instance_id(instance)
                    .block_device_mappings(
                        InstanceBlockDeviceMappingSpecification::builder()
                            .device_name(device)
                            .ebs(EbsInstanceBlockDeviceSpecification::builder().volume_id(volume).delete_on_termination(*value).build())
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| aws_error("ec2:ModifyInstanceAttribute", instance, e))?;
                Ok(format!("DeleteOnTermination of {instance} {device} ({volume}) set to {value}"))
            }
            Action::MarkReplaced { old, new } => {
                self.tag(old, vec![(tag::REPLACED_BY.into(), new.clone())], "ec2:CreateTags").await?;
                let mut request = ec2.delete_tags().resources(new);
                for key in tag::TRANSIENT_ON_NEW {
                    request = request.tags(Tag::builder().key(*key).build());
                }
                request.send().await.map_err(|e| aws_error("ec2:DeleteTags", new, e))?;
                Ok(format!("{old} tagged {}={new} (kept, never deleted)", tag::REPLACED_BY))
            }
        }
    }

    async fn tag(&self, resource: &str, pairs: Vec<(String, String)>, action: &'static str) -> Result<()> {
        let tags = pairs.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        self.ec2.create_tags().resources(resource).set_tags(Some(tags)).send().await.map_err(|e| aws_error(action, resource, e))?;
        Ok(())
    }

    async fn create_volume(
        &self,
        old: &Volume,
        source: &str,
        attempt: usize,
        taken_while: &str,
        taken_at: i64,
        destination: Option<&Destination>,
    ) -> Result<String> {
        let mut bookkeeping = vec![
            (tag::ENCRYPTED_FROM.to_string(), old.id.clone()),
            (tag::ENCRYPTING.to_string(), old.id.clone()),
            (tag::SOURCE_SNAPSHOT.to_string(), source.to_string()),
            (tag::EXECUTION.to_string(), self.execution.to_string()),
            (tag::TAKEN_WHILE.to_string(), taken_while.to_string()),
            (tag::TAKEN_AT.to_string(), taken_at.to_string()),
        ];
        if let Some(d) = destination {
            bookkeeping.push((tag::FOR_INSTANCE.into(), d.instance.clone()));
            bookkeeping.push((tag::FOR_DEVICE.into(), d.device.clone()));
            bookkeeping.push((tag::DELETE_ON_TERMINATION.into(), d.delete_on_termination.to_string()));
        }
        let mut all = carried_tags(old);
        all.truncate(MAX_TAGS - bookkeeping.len());
        all.extend(bookkeeping);
        let mut request = self
            .ec2
            .create_volume()
            .availability_zone(&old.availability_zone)
            // Straight from the plain snapshot: EBS encrypts the new volume with the key, and
            // the volume is available at once (its blocks load lazily from the snapshot).
            .snapshot_id(source)
            .volume_type(VolumeType::from(old.volume_type.as_str()))
            .size(old.size_gib)
            .encrypted(true)
            .kms_key_id(self.key_arn)
            .set_outpost_arn(old.outpost_arn.clone())
            .tag_specifications(tags(ResourceType::Volume, all))
            // Same token for every call of one attempt: a retried or concurrent call returns the
            // same volume instead of a second one. A volume that ends in `error` is followed by
            // the next attempt, hence the next token.
            .client_token(format!("atrest-{source}-{attempt}"));
        if carries_iops(&old.volume_type) {
            request = request.set_iops(old.iops);
        }
        if old.volume_type == "gp3" {
            request = request.set_throughput(old.throughput);
        }
        if old.multi_attach {
            request = request.multi_attach_enabled(true);
        }
        let out = request.send().await.map_err(|e| aws_error("ec2:CreateVolume", &old.id, e))?;
        let place = destination.map(|d| format!(" for {} {}", d.instance, d.device)).unwrap_or_default();
        Ok(format!(
            "created encrypted volume {} ({}) from snapshot {source}{place}, replacing {}",
            out.volume_id().unwrap_or("?"),
            old.shape(),
            old.id
        ))
    }
}
