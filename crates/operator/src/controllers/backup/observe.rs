//! What a Backup reconcile reads: its source from the shared caches (the AzlinVM, or the
//! AzlinVMs a Fleet controls), the snapshots and copies it made (one LIST per resource
//! group, filtered by its ownership tags), its verification disks and — only when a run is
//! about to start — the source VMs with their disks.

use std::collections::{BTreeMap, BTreeSet};

use azlin_arm::compute::{Disk, Snapshot, VirtualMachine};
use azlin_arm::{ArmClient, ArmError, OperationState, ProvisioningState};
use kube::ResourceExt;

use super::names::{self, PURPOSE_VERIFY, SnapshotTags, TAG_PURPOSE};
use super::plan;
use crate::api::backup::{Backup, BackupSourceKind};
use crate::controllers::azlinvm::build::VmNames;
use crate::controllers::azlinvm::mounts::fleet_owner;
use crate::reconcile::caches::{get_valid, valid_in};
use crate::reconcile::ownership::{Owner, Ownership, TAG_RELEASED, ownership};
use crate::reconcile::{Cx, Error};

/// Kind name (controller, metrics, events).
pub const KIND: &str = "Backup";

/// A managed disk of a source VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDisk {
    /// ARM id.
    pub id: String,
    /// Disk name.
    pub name: String,
    /// LUN of a data disk; `None` for the OS disk.
    pub lun: Option<i32>,
}

/// A source VM as Azure reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceVm {
    /// Provisioned (its disks exist).
    pub provisioned: bool,
    /// OS disk first, then the data disks by LUN.
    pub disks: Vec<SourceDisk>,
}

/// One AzlinVM a run snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// AzlinVM name.
    pub name: String,
    /// Its resource group.
    pub resource_group: String,
    /// Its region.
    pub location: String,
    /// The Azure VM name.
    pub vm_name: String,
    /// The VM in Azure (read only when a run is about to start; `None` when missing).
    pub vm: Option<SourceVm>,
}

/// The source of the Backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The AzlinVMs to snapshot (a Fleet may have none yet).
    Members(Vec<Member>),
    /// The AzlinVM or Fleet does not exist: why, for the Stalled message.
    NotFound(String),
}

/// Progress of an Azure resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzState {
    /// Being created (or a copy still transferring).
    Creating,
    /// Ready.
    Succeeded,
    /// Failed, with why.
    Failed(String),
    /// Being deleted.
    Deleting,
}

impl AzState {
    /// The state of a resource with `provisioning`.
    pub fn of(provisioning: Option<&ProvisioningState>) -> AzState {
        match provisioning.map(ProvisioningState::state) {
            None | Some(OperationState::Succeeded) => AzState::Succeeded,
            Some(OperationState::Failed) => AzState::Failed("provisioning failed".into()),
            Some(OperationState::Canceled) => AzState::Failed("provisioning was canceled".into()),
            Some(OperationState::InProgress(s)) if s.eq_ignore_ascii_case("Deleting") => {
                AzState::Deleting
            }
            Some(OperationState::InProgress(_)) => AzState::Creating,
        }
    }

    /// Whether Azure is done with it (not creating, not deleting).
    pub fn settled(&self) -> bool {
        matches!(self, AzState::Succeeded | AzState::Failed(_))
    }
}

/// A snapshot (or cross-region copy) of this Backup found in Azure.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// ARM id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Run, VM and disk from the tags.
    pub info: Option<SnapshotTags>,
    /// Progress (a copy is `Creating` until `completionPercent` reaches 100).
    pub state: AzState,
    /// A `CopyStart` copy.
    pub copy: bool,
    /// Copy progress in percent.
    pub completion: Option<i32>,
    /// A copy whose data is still transferring while no operation is in flight on it (it
    /// can be deleted, which cancels the copy).
    pub transferring: bool,
    /// Size in GiB.
    pub size_gib: Option<i32>,
    /// The source disk (or, for a copy, the source snapshot).
    pub source: Option<String>,
}

impl Found {
    /// Reads a snapshot.
    pub fn of(s: &Snapshot) -> Found {
        let p = &s.properties;
        let copy = p
            .creation_data
            .create_option
            .eq_ignore_ascii_case("CopyStart");
        let mut state = AzState::of(p.provisioning_state.as_ref());
        let mut transferring = false;
        if let Some(e) = &p.copy_completion_error {
            state = AzState::Failed(format!("{}: {}", e.error_code, e.error_message));
        } else if copy && state == AzState::Succeeded && !s.copy_complete() {
            state = AzState::Creating;
            transferring = true;
        }
        Found {
            id: s.id.clone().unwrap_or_default(),
            name: s.name.clone().unwrap_or_default(),
            region: s.location.clone().unwrap_or_default(),
            info: SnapshotTags::from_tags(&s.tags),
            tags: s.tags.clone(),
            state,
            copy,
            completion: p.completion_percent.map(|c| c as i32),
            transferring,
            size_gib: p.disk_size_gb.and_then(|g| i32::try_from(g).ok()),
            source: p.creation_data.source_resource_id.clone(),
        }
    }

    /// Whether it is tagged released (`deletionPolicy: Retain`).
    pub fn released(&self) -> bool {
        self.tags.get(TAG_RELEASED).map(String::as_str) == Some("true")
    }
}

/// A verification disk of this Backup found in Azure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDisk {
    /// ARM id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The run it verifies.
    pub run: Option<String>,
    /// Progress.
    pub state: AzState,
}

/// What a reconcile found.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Owner identity (tags).
    pub owner: Owner,
    /// Subscription (for resource ids).
    pub subscription: String,
    /// The source.
    pub source: Source,
    /// Snapshots and copies of this Backup.
    pub snapshots: Vec<Found>,
    /// Verification disks of this Backup.
    pub verify_disks: Vec<FoundDisk>,
    /// Copy resource groups (lower case) that do not exist.
    pub missing_groups: BTreeSet<String>,
    /// Lower-case ids of snapshots (and, while verifying, disks) in the listed groups that
    /// are not this Backup's: a name it would use that is taken is never written to.
    pub foreign: BTreeSet<String>,
}

/// The source of `backup` from the shared caches (members without their Azure VMs).
pub fn source(cx: &Cx<'_>, backup: &Backup) -> Source {
    let caches = &cx.ctx.caches;
    let ns = &cx.namespace;
    let name = &backup.spec.source.name;
    let member = |vm: &crate::api::AzlinVM| Member {
        name: vm.name_any(),
        resource_group: vm.spec.resource_group.clone(),
        location: vm.spec.location.clone(),
        vm_name: VmNames::new(ns, &vm.name_any()).vm,
        vm: None,
    };
    match backup.spec.source.kind {
        BackupSourceKind::AzlinVM => match get_valid(&caches.vms, ns, name) {
            Some(vm) => Source::Members(vec![member(&vm)]),
            None => Source::NotFound(format!("AzlinVM {name} not found in namespace {ns}")),
        },
        BackupSourceKind::Fleet => {
            let Some(fleet) = get_valid(&caches.fleets, ns, name) else {
                return Source::NotFound(format!("Fleet {name} not found in namespace {ns}"));
            };
            let uid = fleet.uid();
            let mut members: Vec<Member> = valid_in(&caches.vms, ns)
                .iter()
                .filter(|vm| vm.metadata.deletion_timestamp.is_none())
                .filter(|vm| {
                    fleet_owner(vm).is_some_and(|o| {
                        o.name == *name && uid.as_ref().is_none_or(|u| *u == o.uid)
                    })
                })
                .map(|vm| member(vm))
                .collect();
            members.sort_by(|a, b| a.name.cmp(&b.name));
            Source::Members(members)
        }
    }
}

/// The disks of an Azure VM: OS disk first, then data disks by LUN.
pub fn vm_disks(vm: &VirtualMachine) -> SourceVm {
    let provisioned = vm
        .properties
        .provisioning_state
        .as_ref()
        .is_none_or(ProvisioningState::is_succeeded);
    let mut disks = Vec::new();
    if let Some(sp) = &vm.properties.storage_profile {
        if let Some(os) = &sp.os_disk
            && let Some(id) = os.managed_disk.as_ref().and_then(|m| m.id.clone())
        {
            disks.push(SourceDisk {
                name: os.name.clone().unwrap_or_else(|| last_segment(&id)),
                id,
                lun: None,
            });
        }
        let mut data: Vec<SourceDisk> = sp
            .data_disks
            .iter()
            .filter_map(|d| {
                let id = d.managed_disk.as_ref()?.id.clone()?;
                Some(SourceDisk {
                    name: d.name.clone().unwrap_or_else(|| last_segment(&id)),
                    id,
                    lun: i32::try_from(d.lun).ok(),
                })
            })
            .collect();
        data.sort_by_key(|d| d.lun);
        disks.extend(data);
    }
    SourceVm { provisioned, disks }
}

fn last_segment(id: &str) -> String {
    id.rsplit('/').next().unwrap_or_default().to_string()
}

/// The items of a LIST in resource group `group`; `None` when the group does not exist.
async fn list_in<T>(
    group: &str,
    list: impl Future<Output = Result<Vec<T>, ArmError>>,
) -> Result<Option<Vec<T>>, Error> {
    match list.await {
        Ok(items) => Ok(Some(items)),
        Err(e) if e.is_not_found() => {
            tracing::debug!(group, "resource group not found");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether resources with `tags` belong to `owner`.
fn ours(tags: &BTreeMap<String, String>, owner: &Owner) -> bool {
    matches!(ownership(tags, owner), Ownership::Owned | Ownership::Adopt)
}

/// Reads everything a plan for `backup` needs.
pub async fn observe(backup: &Backup, cx: &Cx<'_>) -> Result<Observed, Error> {
    let (arm, identity) = cx.arm_and_identity()?;
    let owner = Owner {
        kind: KIND.to_string(),
        namespace: cx.namespace.clone(),
        name: backup.name_any(),
        uid: backup.uid().unwrap_or_default(),
        identity: Some(identity.identity),
    };
    let mut source = source(cx, backup);
    let runs = backup
        .status
        .as_ref()
        .map(|s| s.runs.as_slice())
        .unwrap_or_default();
    // Groups of the sources and of every snapshot recorded; copy groups per region.
    let mut groups: BTreeSet<String> = BTreeSet::new();
    let mut regions: BTreeSet<String> = backup.spec.copy_to_regions.iter().cloned().collect();
    if let Source::Members(members) = &source {
        groups.extend(members.iter().map(|m| m.resource_group.clone()));
    }
    for s in runs.iter().flat_map(|r| &r.snapshots) {
        if let Some((g, _)) = s.resource_id.as_deref().and_then(names::group_and_name) {
            groups.insert(g);
        }
        regions.extend(s.copies.iter().map(|c| c.region.clone()));
    }
    let groups = dedup_case(groups);
    let copy_groups: BTreeSet<String> = dedup_case(
        groups
            .iter()
            .flat_map(|g| regions.iter().map(move |r| names::copy_group(g, r)))
            .collect(),
    );
    let compute = arm.compute();
    let mut snapshots = Vec::new();
    let mut missing_groups = BTreeSet::new();
    let mut foreign = BTreeSet::new();
    for g in groups.iter().chain(&copy_groups) {
        match list_in(g, compute.snapshots(g).list()).await? {
            Some(items) => {
                for s in &items {
                    if ours(&s.tags, &owner) {
                        snapshots.push(Found::of(s));
                    } else if let Some(id) = &s.id {
                        foreign.insert(id.to_ascii_lowercase());
                    }
                }
            }
            None => {
                missing_groups.insert(g.to_ascii_lowercase());
            }
        }
    }
    let verifying =
        backup.spec.verify || cx.deleting || runs.iter().any(|r| r.verification.is_some());
    let mut verify_disks = Vec::new();
    if verifying {
        for g in &groups {
            let Some(items) = list_in(g, compute.disks(g).list()).await? else {
                continue;
            };
            foreign.extend(
                items
                    .iter()
                    .filter(|d| !ours(&d.tags, &owner))
                    .filter_map(|d| d.id.as_deref().map(str::to_ascii_lowercase)),
            );
            verify_disks.extend(items.iter().filter(|d| is_verify_disk(d, &owner)).map(|d| {
                FoundDisk {
                    id: d.id.clone().unwrap_or_default(),
                    name: d.name.clone().unwrap_or_default(),
                    run: d.tags.get(names::TAG_RUN).cloned(),
                    state: AzState::of(d.properties.provisioning_state.as_ref()),
                }
            }));
        }
    }
    if !cx.deleting
        && plan::run_wanted(backup, cx.now)
        && let Source::Members(members) = &mut source
    {
        read_source_vms(&arm, members).await?;
    }
    Ok(Observed {
        owner,
        subscription: arm.subscription_id().to_string(),
        source,
        snapshots,
        verify_disks,
        missing_groups,
        foreign,
    })
}

/// Names without case-insensitive duplicates (Azure group names are case-insensitive).
fn dedup_case(names: BTreeSet<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.to_ascii_lowercase()))
        .collect()
}

fn is_verify_disk(d: &Disk, owner: &Owner) -> bool {
    d.tags.get(TAG_PURPOSE).map(String::as_str) == Some(PURPOSE_VERIFY) && ours(&d.tags, owner)
}

/// Fills in the Azure VMs of `members` (one LIST per resource group).
async fn read_source_vms(arm: &ArmClient, members: &mut [Member]) -> Result<(), Error> {
    let groups: BTreeSet<String> =
        dedup_case(members.iter().map(|m| m.resource_group.clone()).collect());
    let mut vms: Vec<VirtualMachine> = Vec::new();
    for g in &groups {
        if let Some(items) = list_in(g, arm.compute().virtual_machines(g).list()).await? {
            vms.extend(items);
        }
    }
    for m in members.iter_mut() {
        m.vm = vms
            .iter()
            .find(|v| {
                v.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&m.vm_name))
                    && v.id.as_deref().is_some_and(|id| {
                        names::group_and_name(id)
                            .is_some_and(|(g, _)| g.eq_ignore_ascii_case(&m.resource_group))
                    })
            })
            .map(vm_disks);
    }
    Ok(())
}
