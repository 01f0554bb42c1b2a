//! Reads what AWS shows now into the model. Every lookup goes by id or by this fix's tags, so
//! a fresh invocation sees exactly what an earlier one left.

use std::collections::{BTreeMap, BTreeSet};

use atrest::error::{Result, aws_error};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;

use crate::model::{Attachment, AutoScaling, BlockDevice, Instance, Observed, Snapshot, StopFacts, Tags, Target, Volume, tag};

fn tags_of(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

fn volume(v: &aws_sdk_ec2::types::Volume) -> Option<Volume> {
    Some(Volume {
        id: v.volume_id()?.to_string(),
        availability_zone: v.availability_zone().unwrap_or_default().to_string(),
        volume_type: v.volume_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        size_gib: v.size().unwrap_or(0),
        iops: v.iops(),
        throughput: v.throughput(),
        multi_attach: v.multi_attach_enabled().unwrap_or(false),
        outpost_arn: v.outpost_arn().map(str::to_string),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(str::to_string),
        state: v.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        created_secs: v.create_time().map(|t| t.secs()).unwrap_or(0),
        tags: tags_of(v.tags()),
        attachments: v
            .attachments()
            .iter()
            .filter_map(|a| {
                Some(Attachment {
                    instance_id: a.instance_id()?.to_string(),
                    device: a.device().unwrap_or_default().to_string(),
                    state: a.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                })
            })
            .collect(),
    })
}

fn snapshot(s: &aws_sdk_ec2::types::Snapshot) -> Option<Snapshot> {
    Some(Snapshot {
        id: s.snapshot_id()?.to_string(),
        state: s.state().map(|st| st.as_str().to_string()).unwrap_or_default(),
        start_secs: s.start_time().map(|t| t.secs()).unwrap_or(0),
        encrypted: s.encrypted().unwrap_or(false),
        progress: s.progress().map(str::to_string),
        state_message: s.state_message().filter(|m| !m.is_empty()).map(str::to_string),
        tags: tags_of(s.tags()),
    })
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder().name(name).set_values(Some(values.into_iter().collect())).build()
}

/// Volumes by id; ids that no longer exist are left out.
pub async fn volumes_by_id(ec2: &Client, ids: &BTreeSet<String>) -> Result<Vec<Volume>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // By filter rather than VolumeIds: one missing id must not fail the whole call.
    volumes_where(ec2, filter("volume-id", ids.iter().cloned())).await
}

async fn volumes_where(ec2: &Client, f: Filter) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    let mut pages = ec2.describe_volumes().filters(f).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ec2:DescribeVolumes", "volumes", e))?;
        out.extend(page.volumes().iter().filter_map(volume).filter(|v| !matches!(v.state.as_str(), "deleting" | "deleted")));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

async fn snapshots_where(ec2: &Client, f: Filter) -> Result<Vec<Snapshot>> {
    let mut out = Vec::new();
    let mut pages = ec2.describe_snapshots().owner_ids("self").filters(f).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ec2:DescribeSnapshots", "temporary snapshots", e))?;
        out.extend(page.snapshots().iter().filter_map(snapshot));
    }
    out.sort_by(|a, b| (a.start_secs, &a.id).cmp(&(b.start_secs, &b.id)));
    Ok(out)
}

async fn instance(ec2: &Client, id: &str) -> Result<Option<Instance>> {
    let out = match ec2.describe_instances().instance_ids(id).send().await {
        Ok(out) => out,
        Err(e) => {
            let err = aws_error("ec2:DescribeInstances", id, e);
            return if err.aws_code() == Some("InvalidInstanceID.NotFound") { Ok(None) } else { Err(err) };
        }
    };
    let Some(i) = out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(id)) else {
        return Ok(None);
    };
    let state_reason = i.state_reason().and_then(|r| match (r.code(), r.message()) {
        (Some(c), Some(m)) if !m.is_empty() => Some(format!("{c}: {m}")),
        (c, m) => c.or(m).map(str::to_string),
    });
    Ok(Some(Instance {
        id: id.to_string(),
        state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
        launch_secs: i.launch_time().map(|t| t.secs()).unwrap_or(0),
        root_device_type: i.root_device_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
        state_reason,
        tags: tags_of(i.tags()),
        block_devices: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                let ebs = m.ebs()?;
                Some(BlockDevice {
                    device: m.device_name()?.to_string(),
                    volume_id: ebs.volume_id()?.to_string(),
                    delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                    // Set once the volumes are read (DescribeVolumes).
                    confirmed: false,
                })
            })
            .collect(),
        stop_facts: StopFacts::default(),
    }))
}

/// Instance-store capacity per instance type, read once per invocation: a running instance's
/// type cannot change (the Auto Scaling state can, and is read on every observation).
pub type InstanceStoreCache = BTreeMap<String, i64>;

/// What a stop of this running instance would cost: its instance store (erased by a stop) and
/// its Auto Scaling group (which replaces a stopped InService instance).
pub async fn stop_facts(
    ec2: &Client,
    autoscaling: &aws_sdk_autoscaling::Client,
    i: &Instance,
    cache: &mut InstanceStoreCache,
) -> Result<StopFacts> {
    let mut facts = StopFacts::default();
    if let Some(gib) = cache.get(&i.instance_type) {
        facts.instance_store_gib = *gib;
    } else if !i.instance_type.is_empty() {
        let out = ec2
            .describe_instance_types()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(i.instance_type.as_str()))
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeInstanceTypes", &i.instance_type, e))?;
        facts.instance_store_gib = out
            .instance_types()
            .iter()
            .filter_map(|t| t.instance_storage_info())
            .map(|s| s.total_size_in_gb().unwrap_or(0).max(if s.disks().is_empty() { 0 } else { 1 }))
            .max()
            .unwrap_or(0);
        cache.insert(i.instance_type.clone(), facts.instance_store_gib);
    }
    let out = autoscaling
        .describe_auto_scaling_instances()
        .instance_ids(&i.id)
        .send()
        .await
        .map_err(|e| aws_error("autoscaling:DescribeAutoScalingInstances", &i.id, e))?;
    if let Some(member) = out.auto_scaling_instances().iter().find(|m| m.instance_id() == Some(i.id.as_str())) {
        let group = member.auto_scaling_group_name().unwrap_or_default().to_string();
        let groups = autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&group)
            .send()
            .await
            .map_err(|e| aws_error("autoscaling:DescribeAutoScalingGroups", &group, e))?;
        let suspended_processes = groups
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.suspended_processes())
            .filter_map(|p| p.process_name().map(str::to_string))
            .collect();
        facts.auto_scaling =
            Some(AutoScaling { group, lifecycle_state: member.lifecycle_state().unwrap_or_default().to_string(), suspended_processes });
    }
    Ok(facts)
}

/// Whether a volume still has to be replaced: unencrypted, or (only the volume the run was
/// started for) encrypted with another key than the one requested.
pub fn needs_replacement(v: &Volume, requested: &str, key_arn: &str) -> bool {
    if v.tag(tag::REPLACED_BY).is_some() {
        return false;
    }
    if !v.encrypted {
        return true;
    }
    v.id == requested && v.tag(tag::ENCRYPTED_FROM).is_none() && v.kms_key_id.as_deref().is_some_and(|k| k != key_arn)
}

/// Everything the planner needs; `None` when the volume does not exist.
pub async fn observe(
    ec2: &Client,
    autoscaling: &aws_sdk_autoscaling::Client,
    volume_id: &str,
    key_arn: &str,
    cache: &mut InstanceStoreCache,
) -> Result<Option<Observed>> {
    let Some(requested) = volumes_by_id(ec2, &BTreeSet::from([volume_id.to_string()])).await?.into_iter().next() else {
        return Ok(None);
    };
    // Which instance: where it is attached; mid-swap (after its detach) where its replacement
    // is headed; once replaced, where the replacement is attached (the rest of that instance
    // may still be in progress).
    let mut instance_id = requested.attachments.iter().find(|a| a.state != "detached").map(|a| a.instance_id.clone());
    if instance_id.is_none() {
        let replacements = volumes_where(ec2, filter(&format!("tag:{}", tag::ENCRYPTED_FROM), [requested.id.clone()])).await?;
        instance_id = replacements.iter().find_map(|n| n.tag(tag::FOR_INSTANCE).map(str::to_string));
        if instance_id.is_none()
            && let Some(new) = requested.tag(tag::REPLACED_BY)
        {
            instance_id = replacements
                .iter()
                .filter(|n| n.id == new)
                .find_map(|n| n.attachments.iter().find(|a| a.state != "detached").map(|a| a.instance_id.clone()));
        }
    }
    let mut instance =
        match &instance_id {
            Some(id) => Some(instance(ec2, id).await?.ok_or_else(|| {
                atrest::Error::Unsupported(format!("{volume_id} belongs to instance {id}, which does not exist any more"))
            })?),
            None => None,
        };

    let mut olds: BTreeMap<String, Volume> = BTreeMap::new();
    let mut replaced = Vec::new();
    // Old volumes already tagged `replaced-by`, with their replacement.
    let mut finished: BTreeMap<String, String> = BTreeMap::new();
    match &mut instance {
        Some(i) => {
            let attached_ids: BTreeSet<String> = i.block_devices.iter().map(|b| b.volume_id.clone()).collect();
            let attached = volumes_by_id(ec2, &attached_ids).await?;
            for b in &mut i.block_devices {
                b.confirmed = attached.iter().any(|v| v.id == b.volume_id && v.attachment_to(&i.id).is_some());
            }
            if i.state == "running" {
                i.stop_facts = stop_facts(ec2, autoscaling, i, cache).await?;
            }
            let i = &*i;
            // New volumes not yet handed over (duplicates included): their old volumes are
            // targets until tagged `replaced-by`.
            let in_flight = volumes_where(ec2, filter(&format!("tag:{}", tag::FOR_INSTANCE), [i.id.clone()])).await?;
            let mut from_ids = BTreeSet::new();
            let mut by_id: BTreeMap<String, Volume> = BTreeMap::new();
            for v in &attached {
                if let Some(from) = v.tag(tag::ENCRYPTED_FROM) {
                    from_ids.insert(from.to_string());
                } else if needs_replacement(v, volume_id, key_arn) {
                    olds.insert(v.id.clone(), v.clone());
                }
                by_id.insert(v.id.clone(), v.clone());
            }
            from_ids.extend(in_flight.iter().filter_map(|n| n.tag(tag::ENCRYPTED_FROM).map(str::to_string)));
            let missing: BTreeSet<String> = from_ids.iter().filter(|o| !by_id.contains_key(*o)).cloned().collect();
            for v in volumes_by_id(ec2, &missing).await? {
                by_id.insert(v.id.clone(), v);
            }
            for from in &from_ids {
                let device_of = |new: &str| i.block_devices.iter().find(|b| b.volume_id == new).map(|b| b.device.clone());
                match by_id.get(from) {
                    Some(old) => match old.tag(tag::REPLACED_BY) {
                        Some(new) => {
                            if let Some(device) = device_of(new) {
                                replaced.push((from.clone(), new.to_string(), device));
                            }
                            finished.insert(from.clone(), new.to_string());
                        }
                        None => {
                            olds.insert(from.clone(), old.clone());
                        }
                    },
                    // The old volume was deleted after an earlier run: its replacement stays.
                    None => {
                        if let Some(v) = attached.iter().find(|v| v.tag(tag::ENCRYPTED_FROM) == Some(from.as_str())) {
                            replaced.push((from.clone(), v.id.clone(), device_of(&v.id).unwrap_or_default()));
                            finished.insert(from.clone(), v.id.clone());
                        }
                    }
                }
            }
        }
        None => {
            if let Some(new) = requested.tag(tag::REPLACED_BY) {
                replaced.push((requested.id.clone(), new.to_string(), String::new()));
                finished.insert(requested.id.clone(), new.to_string());
            } else if needs_replacement(&requested, volume_id, key_arn) {
                olds.insert(requested.id.clone(), requested.clone());
            }
        }
    }

    // One read each for the new volumes and the temporary snapshots of every old volume, in
    // progress or finished.
    let ids: BTreeSet<String> = olds.keys().chain(finished.keys()).cloned().collect();
    let (mut new_volumes, snapshots) = if ids.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (
            volumes_where(ec2, filter(&format!("tag:{}", tag::ENCRYPTED_FROM), ids.iter().cloned())).await?,
            snapshots_where(ec2, filter(&format!("tag:{}", tag::ENCRYPTING), ids.iter().cloned())).await?,
        )
    };
    new_volumes.sort_by(|a, b| (a.created_secs, &a.id).cmp(&(b.created_secs, &b.id)));
    let mut targets = Vec::new();
    for old in olds.into_values() {
        let mine: Vec<Volume> = new_volumes.iter().filter(|n| n.tag(tag::ENCRYPTED_FROM) == Some(old.id.as_str())).cloned().collect();
        let snaps = snapshots.iter().filter(|s| s.tag(tag::ENCRYPTING) == Some(old.id.as_str()));
        let (mut device, mut dot) = (None, None);
        if let Some(i) = &instance {
            let recorded = mine.iter().find(|n| n.destination().is_some_and(|(inst, _)| inst == i.id));
            if let Some(b) = i.block_devices.iter().find(|b| b.volume_id == old.id) {
                device = Some(b.device.clone());
                dot = Some(b.delete_on_termination);
                // Reattached by a rollback: the attach reset DeleteOnTermination to false; the
                // value the instance had is the one recorded on the new volume at its creation.
                if i.tag(tag::ROLLED_BACK).is_some()
                    && let Some(v) = recorded.and_then(|n| n.tag(tag::DELETE_ON_TERMINATION))
                {
                    dot = Some(v == "true");
                }
            } else if let Some(n) = recorded {
                device = n.tag(tag::FOR_DEVICE).map(str::to_string);
                dot = n.tag(tag::DELETE_ON_TERMINATION).map(|v| v == "true");
            }
        }
        targets.push(Target {
            sources: snaps.filter(|s| s.tag(tag::STAGE) == Some("source")).cloned().collect(),
            new_volumes: mine,
            device,
            delete_on_termination: dot,
            old,
        });
    }
    targets.sort_by(|a, b| (&a.device, &a.old.id).cmp(&(&b.device, &b.old.id)));
    let is_finished = |old: Option<&str>| old.is_some_and(|o| finished.contains_key(o));
    let leftover_snapshots = snapshots.iter().filter(|s| is_finished(s.tag(tag::ENCRYPTING))).cloned().collect();
    let mut leftover_volumes = Vec::new();
    let mut unfinished_marks = Vec::new();
    for n in &new_volumes {
        let Some((old, new)) = n.tag(tag::ENCRYPTED_FROM).and_then(|o| finished.get_key_value(o)) else { continue };
        if n.id == *new {
            if tag::TRANSIENT_ON_NEW.iter().any(|k| n.tag(k).is_some()) {
                unfinished_marks.push((old.clone(), new.clone()));
            }
        } else if n.is_unused_temporary() {
            leftover_volumes.push(n.clone());
        }
    }
    replaced.sort_by(|a, b| a.2.cmp(&b.2));
    Ok(Some(Observed { requested, instance, targets, replaced, leftover_snapshots, leftover_volumes, unfinished_marks }))
}
