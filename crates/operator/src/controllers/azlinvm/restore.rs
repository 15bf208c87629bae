//! Creating an AzlinVM from a Backup run (`spec.restoreFrom`), honoured only while the VM
//! is created.
//!
//! The run is the one of the snapshot `restoreFrom.snapshot` names (with that snapshot's
//! VM), or the newest good run of a Backup of one VM. Its OS disk snapshot becomes the OS
//! disk (`creationData.createOption: Copy` from the snapshot, attached with
//! `createOption: Attach`, so no image and no OS profile), and its data disk snapshots the
//! data disks at their LUNs, which `spec.dataDisks` must list. Snapshots in another region
//! are taken from the Backup's cross-region copy in `spec.location`.
//!
//! Everything that can be wrong — no such Backup, snapshot or successful run, a snapshot
//! gone from Azure, a region without a copy, a data disk the spec does not list — is
//! `Stalled` with the field and the fix **before** anything is created in Azure.

use std::collections::BTreeMap;

use azlin_arm::ResourceId;
use azlin_arm::compute::{DataDisk, Disk, ManagedDiskParameters, OsDisk, Snapshot, VirtualMachine};
use serde_json::Value;

use super::build::VmNames;
use super::observe::Observed as VmObserved;
use super::plan::Step;
use crate::api::AzlinVM;
use crate::api::azlinvm::RestoreFrom;
use crate::api::backup::{Backup, BackupRun, RunState, SnapshotState, SnapshotStatus};
use crate::reconcile::caches::get_valid;
use crate::reconcile::ownership::{Ownership, ownership};
use crate::reconcile::{Cx, Error};

/// What a restoring VM's reconcile read.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The Backup `restoreFrom.backupRef` names, from the shared cache.
    pub backup: Option<Backup>,
    /// The snapshots the restore uses, by lower-case id (`None`: gone from Azure).
    pub snapshots: BTreeMap<String, Option<Snapshot>>,
    /// The VM's disks that exist already, by name.
    pub disks: BTreeMap<String, Disk>,
}

/// A snapshot to restore a disk from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Snapshot name.
    pub snapshot: String,
    /// The id to copy from (the snapshot, or its copy in the VM's region).
    pub id: String,
    /// LUN of a data disk; `None` for the OS disk.
    pub lun: Option<i32>,
    /// Size of the snapshotted disk in GiB.
    pub size_gib: Option<i32>,
}

/// The run and snapshots a VM is restored from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Backup name.
    pub backup: String,
    /// Run id.
    pub run: String,
    /// The backed-up AzlinVM.
    pub vm: String,
    /// OS disk first, then data disks.
    pub disks: Vec<Restored>,
}

/// Why a restore cannot go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Condition reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn stall(reason: &'static str, message: String) -> Stall {
    Stall {
        reason,
        message: format!("{message} (nothing was created in Azure)"),
    }
}

/// The next thing creating a VM needs, as far as restoring is concerned.
#[derive(Debug)]
pub enum Next {
    /// The VM is not restored: create it from its image.
    NotRestoring,
    /// Stalled before anything is created.
    Stalled(Stall),
    /// Create the disks from the snapshots (what it does).
    Step(Step, String),
    /// Azure is creating the disks.
    Wait(String),
    /// Create the VM with these disks attached.
    Attach(Attached),
}

/// The restored disks to attach: OS disk id, and (LUN, id) of data disks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The run, for events.
    pub run: String,
    /// OS disk id.
    pub os: String,
    /// Data disks: (LUN, id).
    pub data: Vec<(i32, String)>,
}

/// A disk to create from a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDisk {
    /// Disk name.
    pub name: String,
    /// Body (`createOption: Copy` from the snapshot).
    pub body: Disk,
}

fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// Whether a restore is still to be done: `restoreFrom` is set and the VM was never created.
pub fn restoring(vm: &AzlinVM) -> Option<&RestoreFrom> {
    let created = vm.status.as_ref().is_some_and(|s| s.vm_id.is_some());
    vm.spec.restore_from.as_ref().filter(|_| !created)
}

/// The entries of `run` for `vm_name`, OS disk first.
fn entries<'a>(run: &'a BackupRun, vm_name: &str) -> Vec<&'a SnapshotStatus> {
    let mut e: Vec<&SnapshotStatus> = run.snapshots.iter().filter(|s| s.vm == vm_name).collect();
    e.sort_by_key(|s| s.lun.map_or(-1, i64::from));
    e
}

/// Which run's snapshots restore `vm` (from the Backup's status).
pub fn select(vm: &AzlinVM, from: &RestoreFrom, backup: Option<&Backup>) -> Result<Source, Stall> {
    let ns = vm.metadata.namespace.as_deref().unwrap_or("default");
    let name = &from.backup_ref;
    let Some(backup) = backup else {
        return Err(stall(
            "BackupNotFound",
            format!(
                "spec.restoreFrom.backupRef: Backup {name} not found in namespace {ns}; create it or correct the name"
            ),
        ));
    };
    let runs = backup
        .status
        .as_ref()
        .map(|s| s.runs.as_slice())
        .unwrap_or_default();
    let (run, source_vm) = match &from.snapshot {
        Some(snap) => {
            let Some((run, entry)) = runs
                .iter()
                .find_map(|r| Some((r, r.snapshots.iter().find(|s| &s.name == snap)?)))
            else {
                return Err(stall(
                    "SnapshotNotFound",
                    format!(
                        "spec.restoreFrom.snapshot: Backup {name} has no snapshot named {snap}; use a name from its status.runs[].snapshots[].name, or remove the field to restore its newest good run"
                    ),
                ));
            };
            if run.state != RunState::Succeeded {
                return Err(stall(
                    "SnapshotNotFound",
                    format!(
                        "spec.restoreFrom.snapshot: snapshot {snap} belongs to run {} of Backup {name}, which did not succeed; name a snapshot of a successful run",
                        run.name
                    ),
                ));
            }
            (run, entry.vm.clone())
        }
        None => {
            let Some(run) = runs.iter().find(|r| r.is_good()) else {
                return Err(stall(
                    "SnapshotNotFound",
                    format!(
                        "spec.restoreFrom: Backup {name} has no successful run yet; wait for its first run (or set spec.runRequestedAt on it to run it now)"
                    ),
                ));
            };
            let mut vms: Vec<&str> = run.snapshots.iter().map(|s| s.vm.as_str()).collect();
            vms.sort();
            vms.dedup();
            if vms.len() != 1 {
                return Err(stall(
                    "AmbiguousRestore",
                    format!(
                        "spec.restoreFrom.snapshot: run {} of Backup {name} has snapshots of several VMs ({}); name the snapshot of the VM to restore",
                        run.name,
                        vms.join(", ")
                    ),
                ));
            }
            (run, vms[0].to_string())
        }
    };
    let location = &vm.spec.location;
    let mut disks = Vec::new();
    for e in entries(run, &source_vm) {
        if e.state != SnapshotState::Succeeded {
            return Err(stall(
                "SnapshotNotFound",
                format!(
                    "spec.restoreFrom: snapshot {} of run {} did not succeed; name a snapshot of another run",
                    e.name, run.name
                ),
            ));
        }
        let id = if e.region.eq_ignore_ascii_case(location) {
            e.resource_id.clone()
        } else {
            e.copies
                .iter()
                .find(|c| {
                    c.region.eq_ignore_ascii_case(location) && c.state == SnapshotState::Succeeded
                })
                .and_then(|c| c.resource_id.clone())
        };
        let Some(id) = id else {
            return Err(stall(
                "RestoreRegionMismatch",
                format!(
                    "spec.location: the snapshots of run {} are in {} and have no copy in {location}; create the VM in {} or add {location} to spec.copyToRegions of Backup {name} and restore a later run",
                    run.name, e.region, e.region
                ),
            ));
        };
        if let Some(lun) = e.lun
            && !vm.spec.data_disks.iter().any(|d| d.lun == lun)
        {
            let size = e.size_gib.unwrap_or(32);
            return Err(stall(
                "RestoreDataDisks",
                format!(
                    "spec.dataDisks: run {} has a snapshot of the data disk at LUN {lun} ({size} GiB) that spec.dataDisks does not list; add {{lun: {lun}, sizeGiB: {size}}} to restore it",
                    run.name
                ),
            ));
        }
        disks.push(Restored {
            snapshot: e.name.clone(),
            id,
            lun: e.lun,
            size_gib: e.size_gib,
        });
    }
    if disks.first().is_none_or(|d| d.lun.is_some()) {
        return Err(stall(
            "SnapshotNotFound",
            format!(
                "spec.restoreFrom: run {} of Backup {name} has no OS disk snapshot of VM {source_vm}",
                run.name
            ),
        ));
    }
    Ok(Source {
        backup: name.clone(),
        run: run.name.clone(),
        vm: source_vm,
        disks,
    })
}

/// The restore source, checked against Azure: every snapshot still exists.
fn checked(vm: &AzlinVM, seen: &Observed) -> Option<Result<Source, Stall>> {
    let from = restoring(vm)?;
    Some(select(vm, from, seen.backup.as_ref()).and_then(|source| {
        for d in &source.disks {
            if seen.snapshots.get(&key(&d.id)).is_some_and(Option::is_none) {
                return Err(stall(
                    "SnapshotNotFound",
                    format!(
                        "spec.restoreFrom: snapshot {} of Backup {} ({}) no longer exists in Azure; name a snapshot of another run in spec.restoreFrom.snapshot",
                        d.snapshot, source.backup, d.id
                    ),
                ));
            }
        }
        Ok(source)
    }))
}

/// Whether the restore cannot go ahead (checked before anything is created in Azure).
pub fn precheck(vm: &AzlinVM, seen: &VmObserved) -> Option<Stall> {
    let restore = seen.restore.as_ref()?;
    checked(vm, restore)?.err()
}

/// The next step of creating a VM that is being restored.
pub fn next(vm: &AzlinVM, seen: &VmObserved) -> Next {
    let Some(restore) = seen.restore.as_ref() else {
        return Next::NotRestoring;
    };
    let source = match checked(vm, restore) {
        None => return Next::NotRestoring,
        Some(Err(s)) => return Next::Stalled(s),
        Some(Ok(s)) => s,
    };
    let names = &seen.names;
    let tags = seen.owner.tags_with(&vm.spec.tags);
    let mut create = Vec::new();
    let mut waiting = Vec::new();
    let mut attached = Attached {
        run: source.run.clone(),
        os: String::new(),
        data: Vec::new(),
    };
    for d in &source.disks {
        let (name, wanted_gib, sku) = match d.lun {
            None => (
                names.os_disk.clone(),
                vm.spec.os_disk.size_gib,
                vm.spec.os_disk.disk_type,
            ),
            Some(lun) => {
                let spec = vm.spec.data_disks.iter().find(|x| x.lun == lun);
                (
                    names.data_disk(lun),
                    spec.map(|x| x.size_gib),
                    spec.map(|x| x.disk_type).unwrap_or_default(),
                )
            }
        };
        match restore.disks.get(&name) {
            None => {
                let mut body = Disk::from_snapshot(&vm.spec.location, &d.id, sku.as_str())
                    .with_tags(tags.clone());
                if let Some(w) = wanted_gib.filter(|w| d.size_gib.is_none_or(|s| *w > s)) {
                    body.properties.disk_size_gb = u32::try_from(w).ok();
                }
                create.push(NewDisk { name, body });
            }
            Some(disk) => {
                if let Ownership::Foreign { reason } = ownership(&disk.tags, &seen.owner) {
                    return Next::Stalled(Stall {
                        reason: "ResourceNotManaged",
                        message: format!(
                            "disk {name} in resource group {} exists but is not managed by this AzlinVM ({reason}); delete or rename it, or rename the AzlinVM",
                            vm.spec.resource_group
                        ),
                    });
                }
                match disk.properties.provisioning_state.as_ref() {
                    Some(p) if p.is_terminal() && !p.is_succeeded() => {
                        return Next::Stalled(Stall {
                            reason: "RestoreFailed",
                            message: format!(
                                "creating disk {name} from snapshot {} failed in Azure; delete the AzlinVM and restore another run",
                                d.snapshot
                            ),
                        });
                    }
                    Some(p) if !p.is_terminal() => waiting.push(name.clone()),
                    _ => {}
                }
                let id = disk.id.clone().unwrap_or_default();
                match d.lun {
                    None => attached.os = id,
                    Some(lun) => attached.data.push((lun, id)),
                }
            }
        }
    }
    if !create.is_empty() {
        let message = format!(
            "creating disks {} from run {} of Backup {}",
            create
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            source.run,
            source.backup
        );
        return Next::Step(Step::RestoreDisks(create), message);
    }
    if !waiting.is_empty() {
        return Next::Wait(format!(
            "Azure is creating disks {} from run {} of Backup {}",
            waiting.join(", "),
            source.run,
            source.backup
        ));
    }
    Next::Attach(attached)
}

/// `body` (the VM as built from its image) with the restored disks attached instead: no
/// image and no OS profile (Azure refuses both with an attached OS disk).
pub fn attach(mut body: VirtualMachine, disks: &Attached) -> VirtualMachine {
    body.properties.os_profile = None;
    if let Some(sp) = body.properties.storage_profile.as_mut() {
        sp.image_reference = None;
        let name = sp.os_disk.as_ref().and_then(|o| o.name.clone());
        let mut extra = serde_json::Map::new();
        extra.insert("osType".into(), Value::from("Linux"));
        sp.os_disk = Some(OsDisk {
            name,
            create_option: "Attach".into(),
            delete_option: Some("Delete".into()),
            managed_disk: Some(ManagedDiskParameters {
                id: Some(disks.os.clone()),
                ..Default::default()
            }),
            extra,
            ..Default::default()
        });
        for (lun, id) in &disks.data {
            let Some(d) = sp
                .data_disks
                .iter_mut()
                .find(|d| i64::from(d.lun) == i64::from(*lun))
            else {
                continue;
            };
            *d = DataDisk {
                lun: d.lun,
                name: d.name.clone(),
                create_option: "Attach".into(),
                delete_option: Some("Delete".into()),
                managed_disk: Some(ManagedDiskParameters {
                    id: Some(id.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
        }
    }
    body
}

/// Reads what restoring `vm` needs (nothing when it is not being restored): the Backup from
/// the cache, the snapshots it names and — when the resource group exists — the VM's disks.
pub async fn observe(
    vm: &AzlinVM,
    cx: &Cx<'_>,
    names: &VmNames,
    group: bool,
) -> Result<Option<Observed>, Error> {
    let Some(from) = restoring(vm) else {
        return Ok(None);
    };
    let arm = cx.arm()?;
    let mut seen = Observed {
        backup: get_valid(&cx.ctx.caches.backups, &cx.namespace, &from.backup_ref),
        ..Observed::default()
    };
    let Ok(source) = select(vm, from, seen.backup.as_ref()) else {
        return Ok(Some(seen));
    };
    for d in &source.disks {
        let snapshot = match ResourceId::parse(&d.id) {
            Ok(id) => arm.get_by_id::<Snapshot>(&id).await?,
            Err(_) => None,
        };
        seen.snapshots.insert(key(&d.id), snapshot);
    }
    if group {
        let disks = arm.compute().disks(&vm.spec.resource_group);
        let mut wanted = vec![names.os_disk.clone()];
        wanted.extend(
            source
                .disks
                .iter()
                .filter_map(|d| d.lun)
                .map(|l| names.data_disk(l)),
        );
        for name in wanted {
            if let Some(disk) = disks.get(&name).await? {
                seen.disks.insert(name, disk);
            }
        }
    }
    Ok(Some(seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(restore: Value, location: &str, data_luns: &[i32]) -> AzlinVM {
        let disks: Vec<Value> = data_luns
            .iter()
            .map(|l| json!({"lun": l, "sizeGiB": 64}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "AzlinVM",
            "metadata": {"name": "copy", "namespace": "ns"},
            "spec": {"resourceGroup": "rg", "location": location, "restoreFrom": restore, "dataDisks": disks},
        }))
        .expect("vm")
    }

    fn snap(name: &str, vm: &str, lun: Option<i32>, copy_eastus2: bool) -> Value {
        let mut s = json!({
            "name": name, "vm": vm, "disk": format!("ns-{vm}-{name}"), "region": "westus2",
            "state": "Succeeded", "sizeGiB": 30,
            "resourceId": format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/{name}"),
        });
        if let Some(l) = lun {
            s["lun"] = json!(l);
        }
        if copy_eastus2 {
            s["copies"] = json!([{"region": "eastus2", "state": "Succeeded",
                "resourceId": format!("/subscriptions/s/resourceGroups/rg-backup-eastus2/providers/Microsoft.Compute/snapshots/{name}")}]);
        }
        s
    }

    fn backup(runs: Value) -> Backup {
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": "bk", "namespace": "ns"},
            "spec": {"source": {"kind": "Fleet", "name": "f"}, "schedule": "@daily"},
            "status": {"runs": runs},
        }))
        .expect("backup")
    }

    fn run(name: &str, state: &str, snapshots: Vec<Value>) -> Value {
        json!({"name": name, "time": "2026-05-01T10:00:00Z", "trigger": "Schedule", "state": state, "snapshots": snapshots})
    }

    fn reason(vm: &AzlinVM, b: Option<&Backup>) -> &'static str {
        let from = vm.spec.restore_from.as_ref().expect("restoreFrom");
        select(vm, from, b).expect_err("stalled").reason
    }

    #[test]
    fn the_newest_good_run_of_one_vm_or_the_named_snapshot_is_restored() {
        let b = backup(json!([
            run("r3", "Failed", vec![snap("a3", "dev", None, false)]),
            run(
                "r2",
                "Succeeded",
                vec![
                    snap("a2", "dev", None, false),
                    snap("d2", "dev", Some(1), false)
                ]
            ),
            run("r1", "Succeeded", vec![snap("a1", "dev", None, false)]),
        ]));
        let v = vm(json!({"backupRef": "bk"}), "westus2", &[1]);
        let s = select(&v, v.spec.restore_from.as_ref().expect("r"), Some(&b)).expect("source");
        assert_eq!((s.run.as_str(), s.vm.as_str()), ("r2", "dev"));
        assert_eq!(
            s.disks.iter().map(|d| d.lun).collect::<Vec<_>>(),
            [None, Some(1)]
        );
        let named = vm(json!({"backupRef": "bk", "snapshot": "a1"}), "westus2", &[]);
        let s = select(
            &named,
            named.spec.restore_from.as_ref().expect("r"),
            Some(&b),
        )
        .expect("source");
        assert_eq!(s.run, "r1");
        let failed = vm(json!({"backupRef": "bk", "snapshot": "a3"}), "westus2", &[]);
        assert_eq!(reason(&failed, Some(&b)), "SnapshotNotFound");
    }

    #[test]
    fn what_cannot_be_restored_is_named() {
        let one = backup(json!([run(
            "r1",
            "Succeeded",
            vec![
                snap("a", "dev", None, true),
                snap("d", "dev", Some(2), true)
            ]
        )]));
        let v = vm(json!({"backupRef": "bk"}), "westus2", &[2]);
        assert_eq!(reason(&v, None), "BackupNotFound");
        assert_eq!(reason(&v, Some(&backup(json!([])))), "SnapshotNotFound");
        let fleet = backup(json!([run(
            "r1",
            "Succeeded",
            vec![snap("a", "m1", None, false), snap("b", "m2", None, false)]
        )]));
        assert_eq!(reason(&v, Some(&fleet)), "AmbiguousRestore");
        let missing_lun = vm(json!({"backupRef": "bk"}), "westus2", &[]);
        assert_eq!(reason(&missing_lun, Some(&one)), "RestoreDataDisks");
        let far = vm(json!({"backupRef": "bk"}), "japaneast", &[2]);
        assert_eq!(reason(&far, Some(&one)), "RestoreRegionMismatch");
        let copied = vm(json!({"backupRef": "bk"}), "eastus2", &[2]);
        let s = select(
            &copied,
            copied.spec.restore_from.as_ref().expect("r"),
            Some(&one),
        )
        .expect("the copy in eastus2");
        assert!(s.disks.iter().all(|d| d.id.contains("rg-backup-eastus2")));
        let gone = Observed {
            backup: Some(one.clone()),
            snapshots: s.disks.iter().map(|d| (key(&d.id), None)).collect(),
            disks: BTreeMap::new(),
        };
        let e = checked(&copied, &gone)
            .expect("restoring")
            .expect_err("gone");
        assert!(e.message.contains("no longer exists in Azure"), "{e:?}");
        assert!(e.message.ends_with("(nothing was created in Azure)"));
    }

    #[test]
    fn attach_replaces_image_and_os_profile_with_the_restored_disks() {
        let spec = vm(json!({"backupRef": "bk"}), "westus2", &[1, 2]).spec;
        let names = VmNames::new("ns", "copy");
        let body =
            super::super::build::desired_vm(&spec, &names, &BTreeMap::new(), "/nic", "k", "c");
        let out = attach(
            body,
            &Attached {
                run: "r".into(),
                os: "/disks/os".into(),
                data: vec![(1, "/disks/d1".into())],
            },
        );
        assert!(out.properties.os_profile.is_none());
        let sp = out.properties.storage_profile.expect("storage");
        assert!(sp.image_reference.is_none());
        let os = sp.os_disk.expect("os disk");
        assert_eq!(os.create_option, "Attach");
        assert_eq!(
            os.managed_disk.and_then(|m| m.id).as_deref(),
            Some("/disks/os")
        );
        assert_eq!(os.extra["osType"], "Linux");
        assert_eq!(sp.data_disks[0].create_option, "Attach");
        assert_eq!(
            sp.data_disks[1].create_option, "Empty",
            "LUN 2 has no snapshot"
        );
    }
}
