//! Run bookkeeping without I/O: the runs of the status brought up to date with what Azure
//! reports (and runs found only in Azure recovered), the ARM bodies of a run's snapshots,
//! copies and verification disks, and which run entries the status keeps.

use std::collections::{BTreeMap, HashMap};

use azlin_arm::compute::{Disk, Snapshot};
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::names::{self, PURPOSE_VERIFY, SnapshotTags, TAG_PURPOSE, TAG_RUN};
use super::observe::{AzState, Found, Observed};
use crate::api::backup::{BackupRun, RunState, RunTrigger, SnapshotState, SnapshotStatus};
use crate::reconcile::events::Event;
use crate::reconcile::ownership::Owner;
use crate::reconcile::status::timestamp;

/// Failed runs listed in the status at most (the newest, while no later run succeeded).
pub const FAILED_RUNS_SHOWN: usize = 5;
/// Storage type of verification disks (the cheapest).
pub const VERIFY_DISK_SKU: &str = "Standard_LRS";

/// A Kubernetes time of `t`, to the second (as it is serialised).
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(timestamp(
        DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t),
    ))
}

/// The chrono time of `t`.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}

/// The lower-case id of a resource, for case-insensitive lookups.
pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// The found snapshots by lower-case id.
pub fn by_id(found: &[Found]) -> HashMap<String, &Found> {
    found.iter().map(|f| (key(&f.id), f)).collect()
}

/// Brings the pending snapshots and copies of running runs up to date with Azure, and adds
/// runs whose snapshots exist in Azure but are missing from `runs` (state from Azure).
/// Keeps `runs` newest first.
pub fn refresh(runs: &mut Vec<BackupRun>, seen: &Observed, events: &mut Vec<Event>) {
    let found = by_id(&seen.snapshots);
    for run in runs.iter_mut().filter(|r| r.state == RunState::Running) {
        for s in &mut run.snapshots {
            if s.state == SnapshotState::Pending
                && let Some(f) = s.resource_id.as_deref().and_then(|id| found.get(&key(id)))
            {
                match &f.state {
                    AzState::Succeeded => {
                        s.state = SnapshotState::Succeeded;
                        s.size_gib = f.size_gib.or(s.size_gib);
                        s.resource_id = Some(f.id.clone());
                    }
                    AzState::Failed(m) => {
                        s.state = SnapshotState::Failed;
                        s.message = format!("snapshot {}: {m}", s.name);
                    }
                    AzState::Creating | AzState::Deleting => {}
                }
            }
            for c in &mut s.copies {
                let Some(f) = c.resource_id.as_deref().and_then(|id| found.get(&key(id))) else {
                    continue;
                };
                if c.state != SnapshotState::Pending {
                    continue;
                }
                c.completion_percent = f.completion.or(c.completion_percent);
                match &f.state {
                    AzState::Succeeded => {
                        c.state = SnapshotState::Succeeded;
                        c.completion_percent = Some(100);
                        c.resource_id = Some(f.id.clone());
                    }
                    AzState::Failed(m) => {
                        c.state = SnapshotState::Failed;
                        c.message = format!("copy to {}: {m}", c.region);
                        events.push(Event::warning(
                            "CopyFailed",
                            format!(
                                "run {}: copying snapshot {} to {} failed: {m}",
                                run.name, s.name, c.region
                            ),
                        ));
                    }
                    AzState::Creating | AzState::Deleting => {}
                }
            }
        }
    }
    recover(runs, seen);
    runs.sort_by_key(|r| std::cmp::Reverse(from_time(&r.time)));
}

/// Adds the runs found in Azure (tagged by this Backup) that `runs` does not list.
fn recover(runs: &mut Vec<BackupRun>, seen: &Observed) {
    let mut groups: BTreeMap<String, Vec<&Found>> = BTreeMap::new();
    for f in &seen.snapshots {
        if let Some(info) = &f.info
            && !runs.iter().any(|r| r.name == info.run)
            && f.state != AzState::Deleting
        {
            groups.entry(info.run.clone()).or_default().push(f);
        }
    }
    for (name, found) in groups {
        let originals: Vec<&&Found> = found.iter().filter(|f| !f.copy).collect();
        let time = found
            .iter()
            .find_map(|f| f.info.as_ref().and_then(|i| i.time))
            .unwrap_or_default();
        let snapshots: Vec<SnapshotStatus> = originals
            .iter()
            .filter_map(|f| {
                let info = f.info.clone()?;
                let copies = found
                    .iter()
                    .filter(|c| c.copy && c.name.eq_ignore_ascii_case(&f.name))
                    .map(|c| crate::api::backup::SnapshotCopy {
                        region: c.region.clone(),
                        resource_id: Some(c.id.clone()),
                        state: state_of(&c.state),
                        completion_percent: c.completion,
                        message: String::new(),
                    })
                    .collect();
                Some(SnapshotStatus {
                    name: f.name.clone(),
                    vm: info.vm,
                    disk: info.disk,
                    lun: info.lun,
                    source_disk: f.source.clone(),
                    resource_id: Some(f.id.clone()),
                    region: f.region.clone(),
                    state: state_of(&f.state),
                    size_gib: f.size_gib,
                    message: match &f.state {
                        AzState::Failed(m) => m.clone(),
                        _ => String::new(),
                    },
                    copies,
                })
            })
            .collect();
        let state = if snapshots.iter().any(|s| s.state == SnapshotState::Pending) {
            RunState::Running
        } else if snapshots
            .iter()
            .all(|s| s.state == SnapshotState::Succeeded)
            && !snapshots.is_empty()
        {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        runs.push(BackupRun {
            name,
            time: to_time(time),
            trigger: RunTrigger::Recovered,
            state,
            completed_at: None,
            message: "found in Azure (tagged by this Backup) but not in the status".into(),
            verification: None,
            snapshots,
        });
    }
}

fn state_of(s: &AzState) -> SnapshotState {
    match s {
        AzState::Succeeded => SnapshotState::Succeeded,
        AzState::Failed(_) => SnapshotState::Failed,
        AzState::Creating | AzState::Deleting => SnapshotState::Pending,
    }
}

/// A snapshot, copy or disk to create: where, and its body.
#[derive(Clone, Debug, PartialEq)]
pub struct NewResource<B> {
    /// ARM id it will have.
    pub id: String,
    /// Resource group.
    pub group: String,
    /// Name.
    pub name: String,
    /// Body.
    pub body: B,
}

/// The tags of snapshot `s` of `run`.
pub fn snapshot_tags(
    owner: &Owner,
    run: &BackupRun,
    s: &SnapshotStatus,
) -> BTreeMap<String, String> {
    SnapshotTags {
        run: run.name.clone(),
        time: Some(from_time(&run.time)),
        vm: s.vm.clone(),
        disk: s.disk.clone(),
        lun: s.lun,
    }
    .to_tags(owner)
}

/// The incremental snapshot `s` of `run` (`None` without its source disk or id).
pub fn snapshot_body(
    owner: &Owner,
    run: &BackupRun,
    s: &SnapshotStatus,
) -> Option<NewResource<Snapshot>> {
    let id = s.resource_id.clone()?;
    let (group, name) = names::group_and_name(&id)?;
    let body = Snapshot::incremental_of(&s.region, s.source_disk.as_deref()?)
        .with_tags(snapshot_tags(owner, run, s));
    Some(NewResource {
        id,
        group,
        name,
        body,
    })
}

/// The `CopyStart` copy of snapshot `s` of `run` with id `copy_id` in `region`.
pub fn copy_body(
    owner: &Owner,
    run: &BackupRun,
    s: &SnapshotStatus,
    region: &str,
    copy_id: &str,
) -> Option<NewResource<Snapshot>> {
    let (group, name) = names::group_and_name(copy_id)?;
    let body = Snapshot::copy_start_of(region, s.resource_id.as_deref()?)
        .with_tags(snapshot_tags(owner, run, s));
    Some(NewResource {
        id: copy_id.to_string(),
        group,
        name,
        body,
    })
}

/// The throwaway disk restoring OS snapshot `s` of `run`.
pub fn verify_disk(
    seen: &Observed,
    run: &BackupRun,
    s: &SnapshotStatus,
) -> Option<NewResource<Disk>> {
    let (group, snapshot) = names::group_and_name(s.resource_id.as_deref()?)?;
    let name = names::verify_disk_name(&snapshot);
    let mut tags = seen.owner.tags();
    tags.insert(TAG_RUN.into(), run.name.clone());
    tags.insert(TAG_PURPOSE.into(), PURPOSE_VERIFY.into());
    let body =
        Disk::from_snapshot(&s.region, s.resource_id.as_deref()?, VERIFY_DISK_SKU).with_tags(tags);
    Some(NewResource {
        id: names::disk_id(&seen.subscription, &group, &name),
        group,
        name,
        body,
    })
}

/// Drops the entries of runs that are neither kept nor have anything left in Azure, and of
/// failed runs older than the newest success or beyond [`FAILED_RUNS_SHOWN`].
pub fn tidy(runs: &mut Vec<BackupRun>, kept: &dyn Fn(&BackupRun) -> bool, seen: &Observed) {
    let left = |r: &BackupRun| {
        seen.snapshots
            .iter()
            .any(|f| f.info.as_ref().is_some_and(|i| i.run == r.name))
    };
    let newest_success = runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .map(|r| from_time(&r.time))
        .max();
    let mut failed_shown = 0;
    runs.retain(|r| match r.state {
        RunState::Running => true,
        RunState::Succeeded => kept(r) || left(r),
        RunState::Failed => {
            let recent = newest_success.is_none_or(|t| from_time(&r.time) > t);
            let show = recent && failed_shown < FAILED_RUNS_SHOWN;
            if show {
                failed_shown += 1;
            }
            show || left(r)
        }
    });
}
