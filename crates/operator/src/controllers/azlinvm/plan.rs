//! The pure decisions of the AzlinVM controller while the object is kept: from what was
//! observed, the next write and the status to report. In order: key, storages the mounts
//! need, resource group and network, public IP, NIC, VM (create, retry a failed
//! provisioning, update, grow disks, restart, power), and the guest's mounts.

use std::collections::BTreeMap;
use std::sync::Arc;

use azlin_arm::OperationState;
use azlin_arm::compute::{PowerAction, PowerState as Observed_, VirtualMachine};
use azlin_arm::network::{NetworkInterface, PublicIpAddress};

use super::build::{self, PowerStep, VmChange, power_word};
use super::cloudinit;
use super::mounts;
use super::observe::{Net, Observed, provisioning};
use super::restore;
use super::sshkey::{HostKeyTrust, KeyState, VmKey};
use super::status::{mount_health, settled_phase, transition_event};
use crate::api::azlinvm::{AzlinVMStatus, VmPhase};
use crate::api::conditions::Health;
use crate::api::{AzlinVM, PowerState};
use crate::guest::GuestVm;
use crate::infra::network;
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{Ownership, ownership};
use crate::reconcile::{Outcome, Plan, PlanCx, Requeue};
use crate::ssh::MountPlan;

/// Guest work: converge the mounts of a running VM over SSH (or in the local sandbox).
#[derive(Debug)]
pub struct GuestWork {
    /// The VM to reach.
    pub vm: GuestVm,
    /// What to mount and unmount.
    pub plan: MountPlan,
    /// How its host key is checked, and where the pin is recorded.
    pub trust: HostKeyTrust,
}

/// One write of the AzlinVM controller.
#[derive(Debug)]
pub enum Step {
    /// Generate the admin key pair into `<name>-ssh`.
    CreateKey,
    /// Prepare the resource group or managed network.
    Infra(network::Step),
    /// Create the public IP.
    PutPip(Box<PublicIpAddress>),
    /// Replace the tags of the public IP (a PATCH).
    TagPip(BTreeMap<String, String>),
    /// Delete the public IP.
    DeletePip,
    /// Create the NIC.
    PutNic(Box<NetworkInterface>),
    /// Update the NIC ([`build::nic_update`]): read it whole and PUT it back changed (the
    /// snapshots keep only what plans decide on).
    UpdateNic {
        /// The public IP it should reference.
        pip_id: Option<String>,
        /// Its tags.
        tags: BTreeMap<String, String>,
    },
    /// Create the disks of a restored VM from a Backup run's snapshots.
    RestoreDisks(Vec<super::restore::NewDisk>),
    /// Create the VM.
    CreateVm(Box<VirtualMachine>),
    /// Update the VM (size, tags, data disks, Spot price; [`build::vm_update`]), or PUT it
    /// again after a failed provisioning: read it whole and PUT it back changed (the
    /// snapshots keep only what plans decide on).
    UpdateVm {
        /// Its tags.
        tags: BTreeMap<String, String>,
        /// What differs.
        changes: Vec<VmChange>,
        /// PUT it even when nothing differs (its provisioning failed).
        retry: bool,
    },
    /// A power action.
    Power(PowerAction),
    /// Grow these disks (name, GiB) of the deallocated VM.
    GrowDisks(Vec<(String, u32)>),
    /// Converge the mounts on the guest.
    Guest(Box<GuestWork>),
    /// Delete the VM.
    DeleteVm,
    /// Delete the NIC.
    DeleteNic,
    /// Delete these disks (each checked to carry this object's ownership tags).
    DeleteDisks(Vec<String>),
    /// Give these disks (created by the VM PUT, which tags nothing) the ownership tags, so
    /// they are known as the operator's once detached.
    TagDisks(Vec<super::cleanup::Release>),
    /// Tag these resources released (`deletionPolicy: Retain`).
    Release(Vec<super::cleanup::Release>),
    /// Keep the generated key Secret with the retained VM (`deletionPolicy: Retain`).
    RetainKey,
}

/// Builds the plan step by step.
pub struct Planner<'a> {
    /// The object.
    pub vm: &'a AzlinVM,
    /// What was observed.
    pub seen: &'a Observed,
    /// The status being built.
    pub st: AzlinVMStatus,
    /// The status the reconcile started from.
    pub old: AzlinVMStatus,
    /// Events to publish.
    pub events: Vec<Event>,
    /// Plan context.
    pub cx: &'a PlanCx<'a>,
}

impl<'a> Planner<'a> {
    /// A planner for `vm`.
    pub fn new(vm: &'a AzlinVM, seen: &'a Observed, cx: &'a PlanCx<'a>) -> Self {
        let old = vm.status.clone().unwrap_or_default();
        Self {
            vm,
            seen,
            st: old.clone(),
            old,
            events: Vec::new(),
            cx,
        }
    }

    /// Adds an event.
    pub fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Finishes with `health`, `phase` and `requeue`, and optionally a step.
    pub fn finish(
        mut self,
        step: Option<Step>,
        phase: VmPhase,
        health: Health,
        requeue: Requeue,
    ) -> Plan<AzlinVM> {
        self.st.phase = Some(phase);
        let out = Outcome {
            status: self.st,
            health,
            events: self.events,
            requeue,
            released: false,
        };
        Plan { step, out }
    }

    /// Work in progress: `step` (if any), then look again per `requeue`.
    pub fn progress(
        self,
        step: Option<Step>,
        phase: VmPhase,
        reason: &str,
        message: String,
    ) -> Plan<AzlinVM> {
        let requeue = if step.is_some() {
            Requeue::Now
        } else {
            Requeue::Progress
        };
        self.finish(step, phase, Health::progressing(reason, message), requeue)
    }

    /// Needs the user: Stalled with `reason` and `message`.
    pub fn stalled(self, reason: &str, message: String) -> Plan<AzlinVM> {
        self.finish(
            None,
            VmPhase::Failed,
            Health::stalled(reason, message),
            Requeue::Resync,
        )
    }

    fn working_phase(&self) -> VmPhase {
        if self.old.vm_id.is_none() || self.old.phase == Some(VmPhase::Provisioning) {
            VmPhase::Provisioning
        } else {
            VmPhase::Updating
        }
    }

    fn not_managed(self, what: &str, name: &str, reason: &str) -> Plan<AzlinVM> {
        let message = format!(
            "{what} {name} in resource group {} exists but is not managed by this AzlinVM ({reason}); the operator never touches it: delete or rename it in Azure, or rename the AzlinVM",
            self.vm.spec.resource_group
        );
        self.stalled("ResourceNotManaged", message)
    }
}

/// Whether a resource with `state` is still being provisioned.
fn busy(state: Option<&azlin_arm::ProvisioningState>) -> bool {
    state.is_some_and(|s| !s.is_terminal())
}

/// The plan of an AzlinVM that is kept.
pub fn plan(vm: &AzlinVM, seen: &Observed, cx: &PlanCx<'_>) -> Plan<AzlinVM> {
    let mut p = Planner::new(vm, seen, cx);
    let key = match seen.key.as_ref() {
        Some(KeyState::Ready(k)) => k.clone(),
        Some(KeyState::Invalid { field, message }) => {
            return p.stalled("InvalidSpec", format!("invalid {field}: {message}"));
        }
        Some(KeyState::Generate) | None => {
            let phase = p.working_phase();
            return p.progress(
                Some(Step::CreateKey),
                phase,
                "GeneratingKey",
                "generating the admin SSH key pair".into(),
            );
        }
    };
    p.st.ssh_key_secret = Some(key.secret_name.clone());
    let creating = seen.vm.is_none() && p.old.vm_id.is_none();
    if creating && let Some((i, m)) = missing_storage(vm, seen) {
        return p.stalled(
            "StorageNotFound",
            format!(
                "spec.mounts[{i}].storageRef: SharedStorage {} not found in namespace {}; create it or correct the name (nothing was created in Azure)",
                m, seen.owner.namespace
            ),
        );
    }
    if creating && let Some(s) = restore::precheck(vm, seen) {
        return p.stalled(s.reason, s.message);
    }
    if let Some(message) = name_collision(vm, seen) {
        return p.stalled("NameCollision", message);
    }
    let phase = p.working_phase();
    let subnet_id = match seen.net.as_ref() {
        Some(Net::Managed(net)) => match network::plan(net, &seen.site, &seen.nsg_id) {
            network::Plan::Ready => seen.managed_subnet_id.clone(),
            network::Plan::Wait(m) => return p.progress(None, phase, "Provisioning", m),
            network::Plan::Foreign(m) => return p.stalled("ResourceNotManaged", m),
            network::Plan::Step(s) => {
                p.event(s.event(&seen.site));
                let what = s.describe(&seen.site);
                return p.progress(Some(Step::Infra(s)), phase, "PreparingNetwork", what);
            }
        },
        Some(Net::BadSubnetId(e)) => {
            return p.stalled("InvalidSpec", format!("invalid spec.network.subnetId: {e}"));
        }
        Some(Net::Custom {
            subnet_id,
            exists,
            group,
        }) => {
            if !exists {
                return p.stalled(
                    "InvalidSpec",
                    format!("invalid spec.network.subnetId: subnet {subnet_id} does not exist; create it or correct the id (nothing was created in Azure)"),
                );
            }
            if !group {
                let s = network::Step::CreateGroup;
                p.event(s.event(&seen.site));
                let what = s.describe(&seen.site);
                return p.progress(Some(Step::Infra(s)), phase, "PreparingNetwork", what);
            }
            subnet_id.clone()
        }
        None => return p.progress(None, phase, "Observing", "the network was not read".into()),
    };
    let tags = seen.owner.tags_with(&vm.spec.tags);
    // Public IP.
    let pip_id = if vm.spec.public_ip {
        match &seen.pip {
            None => {
                let zone = vm.spec.zone.map(|z| z.as_str());
                let body = build::desired_pip(&vm.spec.location, zone, &tags);
                return p.progress(
                    Some(Step::PutPip(Box::new(body))),
                    phase,
                    "CreatingPublicIP",
                    format!("creating public IP {}", seen.names.pip),
                );
            }
            Some(pip) => {
                if let Ownership::Foreign { reason } = ownership(&pip.tags, &seen.owner) {
                    return p.not_managed("Public IP", &seen.names.pip, &reason);
                }
                if busy(pip.properties.provisioning_state.as_ref()) {
                    return p.progress(
                        None,
                        phase,
                        "Provisioning",
                        format!("public IP {} is being provisioned", seen.names.pip),
                    );
                }
                if pip.tags != tags {
                    return p.progress(
                        Some(Step::TagPip(tags.clone())),
                        phase,
                        "Updating",
                        format!("updating the tags of public IP {}", seen.names.pip),
                    );
                }
                p.st.public_ip = pip.properties.ip_address.clone();
                Some(pip.id.clone().unwrap_or_else(|| seen.pip_id.clone()))
            }
        }
    } else {
        p.st.public_ip = None;
        None
    };
    // NIC.
    let nic_id = match &seen.nic {
        None => {
            let body = build::desired_nic(&vm.spec.location, &subnet_id, pip_id.as_deref(), &tags);
            return p.progress(
                Some(Step::PutNic(Box::new(body))),
                phase,
                "CreatingNIC",
                format!("creating network interface {}", seen.names.nic),
            );
        }
        Some(nic) => {
            if let Ownership::Foreign { reason } = ownership(&nic.tags, &seen.owner) {
                return p.not_managed("Network interface", &seen.names.nic, &reason);
            }
            if busy(nic.properties.provisioning_state.as_ref()) {
                return p.progress(
                    None,
                    phase,
                    "Provisioning",
                    format!("network interface {} is being provisioned", seen.names.nic),
                );
            }
            if build::nic_update(nic, pip_id.as_deref(), &tags).is_some() {
                return p.progress(
                    Some(Step::UpdateNic {
                        pip_id: pip_id.clone(),
                        tags: tags.clone(),
                    }),
                    phase,
                    "Updating",
                    format!("updating network interface {}", seen.names.nic),
                );
            }
            p.st.private_ip = nic.private_ip().map(str::to_string);
            nic.id.clone().unwrap_or_else(|| seen.nic_id.clone())
        }
    };
    // A public IP no longer wanted (the NIC no longer references it).
    if !vm.spec.public_ip
        && let Some(pip) = &seen.pip
        && !matches!(ownership(&pip.tags, &seen.owner), Ownership::Foreign { .. })
    {
        p.event(Event::normal(
            "PublicIPRemoved",
            format!("deleting public IP {}", seen.names.pip),
        ));
        return p.progress(
            Some(Step::DeletePip),
            phase,
            "Updating",
            format!("deleting public IP {}", seen.names.pip),
        );
    }
    match &seen.vm {
        None => match restore::next(vm, seen) {
            restore::Next::NotRestoring => create_vm(p, &nic_id, &key, &tags, None),
            restore::Next::Attach(disks) => create_vm(p, &nic_id, &key, &tags, Some(&disks)),
            restore::Next::Step(step, m) => {
                p.progress(Some(step), VmPhase::Provisioning, "RestoringDisks", m)
            }
            restore::Next::Wait(m) => p.progress(None, VmPhase::Provisioning, "RestoringDisks", m),
            restore::Next::Stalled(s) => p.stalled(s.reason, s.message),
        },
        Some(_) => converge_vm(p, &key, &tags),
    }
}

/// The other AzlinVM named by `tags` when they are the operator's tags of another AzlinVM.
fn other_vm(tags: &std::collections::BTreeMap<String, String>, seen: &Observed) -> Option<String> {
    use crate::reconcile::ownership::{
        MANAGED_BY, TAG_KIND, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE,
    };
    let get = |k: &str| tags.get(k).map(String::as_str);
    if get(TAG_MANAGED_BY) != Some(MANAGED_BY) || get(TAG_KIND) != Some(super::observe::KIND) {
        return None;
    }
    let (ns, name) = (get(TAG_NAMESPACE)?, get(TAG_NAME)?);
    (ns != seen.owner.namespace || name != seen.owner.name).then(|| format!("{ns}/{name}"))
}

/// Whether this AzlinVM's Azure names are taken by another AzlinVM (e.g. `a/b-c` and
/// `a-b/c` both map to VM `a-b-c`): the VM, NIC or public IP carries the other's ownership
/// tags, or — before anything of either exists — the other was created first. Checked
/// before anything is created, so the other's resources are never touched; the message
/// names the other object and the fix.
pub fn name_collision(vm: &AzlinVM, seen: &Observed) -> Option<String> {
    let names = &seen.names;
    let existing = [
        seen.vm.as_ref().map(|v| &v.vm.tags),
        seen.nic.as_ref().map(|n| &n.tags),
        seen.pip.as_ref().map(|p| &p.tags),
    ];
    let taken = existing.iter().flatten().find_map(|t| other_vm(t, seen));
    let ours = existing
        .iter()
        .flatten()
        .any(|t| !matches!(ownership(t, &seen.owner), Ownership::Foreign { .. }));
    let other = taken.or_else(|| (!ours).then(|| seen.rival.clone()).flatten())?;
    Some(format!(
        "Azure name collision: AzlinVM {other} and this AzlinVM {} both map to VM {} (and its NIC, IP and disks) in resource group {} (Azure names are <namespace>-<name>), and AzlinVM {other} has them. Nothing was created in Azure for this object and the operator never touches the other's resources: rename this AzlinVM or move it to another resourceGroup (then delete this one)",
        seen.owner.display(),
        names.vm,
        vm.spec.resource_group
    ))
}

/// The first spec mount whose SharedStorage does not exist: `(index, name)`.
fn missing_storage(vm: &AzlinVM, seen: &Observed) -> Option<(usize, String)> {
    vm.spec.mounts.iter().enumerate().find_map(|(i, m)| {
        seen.mounts
            .iter()
            .any(|d| d.storage_ref == m.storage_ref && d.home_user.is_none() && d.storage_missing)
            .then(|| (i, m.storage_ref.clone()))
    })
}

fn create_vm(
    mut p: Planner<'_>,
    nic_id: &str,
    key: &VmKey,
    tags: &std::collections::BTreeMap<String, String>,
    restored: Option<&restore::Attached>,
) -> Plan<AzlinVM> {
    let vm = p.vm;
    let names = &p.seen.names;
    if p.old.vm_id.is_some() {
        // It existed before: deleted outside the operator, or a Spot eviction with
        // evictionPolicy Delete.
        let event = if vm.spec.spot.is_some() {
            Event::warning(
                "SpotEvicted",
                format!("Spot VM {} was evicted (deleted); recreating it", names.vm),
            )
        } else {
            Event::warning(
                "Repaired",
                format!(
                    "VM {} was deleted outside the operator; recreating it",
                    names.vm
                ),
            )
        };
        p.event(event);
        p.st.vm_id = None;
        p.st.host_key_fingerprint = None;
        p.st.power_state = None;
    }
    // A new VM boots fresh: a restart requested before it existed is already satisfied.
    p.st.last_restart_requested_at = vm.spec.restart_requested_at.clone();
    let spec = &vm.spec;
    let user_data = cloudinit::user_data(
        &spec.admin_username,
        &key.public_line,
        spec.cloud_init.as_deref(),
    );
    let mut body = build::desired_vm(spec, names, tags, nic_id, &key.public_line, &user_data);
    let from = match restored {
        Some(disks) => {
            body = restore::attach(body, disks);
            format!(" from backup run {}", disks.run)
        }
        None => String::new(),
    };
    p.event(Event::normal(
        "Creating",
        format!(
            "creating VM {} ({}) in {}/{}{from}",
            names.vm, spec.size, spec.location, spec.resource_group
        ),
    ));
    let message = format!("creating VM {}", names.vm);
    let mut plan = p.progress(
        Some(Step::CreateVm(Box::new(body))),
        VmPhase::Provisioning,
        "Creating",
        message,
    );
    plan.out.requeue = Requeue::Progress;
    plan
}

/// The message of a failed provisioning from the instance view, with its code.
fn provisioning_failure(seen: &Observed) -> (String, String) {
    let status = seen.vm.as_ref().and_then(|v| {
        v.vm.properties
            .instance_view
            .as_ref()?
            .statuses
            .iter()
            .find(|s| s.level.as_deref() == Some("Error"))
            .cloned()
    });
    let code = status
        .as_ref()
        .and_then(|s| s.code.rsplit('/').next())
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("failed"))
        .unwrap_or("ProvisioningFailed")
        .to_string();
    let message = status
        .and_then(|s| s.message)
        .unwrap_or_else(|| format!("VM {} provisioning failed", seen.names.vm));
    (code, message)
}

fn converge_vm(
    mut p: Planner<'_>,
    key: &VmKey,
    tags: &std::collections::BTreeMap<String, String>,
) -> Plan<AzlinVM> {
    let (vm, seen) = (p.vm, p.seen);
    let names = &seen.names;
    let Some(observed) = &seen.vm else {
        return p.progress(
            None,
            VmPhase::Provisioning,
            "Observing",
            "the VM was not read".into(),
        );
    };
    let owned = ownership(&observed.vm.tags, &seen.owner);
    if let Ownership::Foreign { reason } = &owned {
        return p.not_managed("VM", &names.vm, reason);
    }
    if let Some(due) = seen.view_due {
        // Deciding on an older power state could repeat a power action already taken.
        let phase = p.working_phase();
        let message = format!(
            "waiting for the next list of resource group {}'s VMs with their power states (these lists are spaced to stay within Azure's read budgets)",
            vm.spec.resource_group
        );
        let mut plan = p.progress(None, phase, "ObservingPowerState", message);
        plan.out.requeue = Requeue::After(due);
        return plan;
    }
    let vm_id = observed.vm.properties.vm_id.clone();
    if p.old.vm_id.is_some() && vm_id != p.old.vm_id {
        // A new VM behind the same name: its host key and mounts are new too.
        p.st.host_key_fingerprint = None;
        p.st.mounts.clear();
    }
    p.st.vm_id = vm_id;
    p.st.resource_id = observed.vm.id.clone();
    p.st.size = build::vm_size(&observed.vm).map(str::to_string);
    let power = observed.power_state.unwrap_or(Observed_::Unknown);
    p.st.power_state = Some(build::power_status(power).to_string());
    let spec = &vm.spec;
    match provisioning(observed) {
        OperationState::Succeeded => {}
        OperationState::Failed | OperationState::Canceled => {
            // Allocation failures, internal errors and timeouts pass: PUT the VM again,
            // with backoff, until it provisions (or the user changes the spec).
            let (code, message) = provisioning_failure(seen);
            if crate::reconcile::error::failed_operation_needs_change(&code) {
                return p.stalled(
                    &code,
                    format!("VM {} provisioning failed: {message}", names.vm),
                );
            }
            let changes = build::vm_update(&observed.vm, spec, names, tags)
                .map(|(_, changes)| changes)
                .unwrap_or_default();
            p.event(Event::warning(
                &code,
                format!(
                    "VM {} provisioning failed: {message}; trying again",
                    names.vm
                ),
            ));
            let phase = p.working_phase();
            return p.finish(
                Some(Step::UpdateVm {
                    tags: tags.clone(),
                    changes,
                    retry: true,
                }),
                phase,
                Health::progressing(&code, format!("{message} (retrying)")),
                Requeue::Backoff,
            );
        }
        OperationState::InProgress(_) => {
            let phase = p.working_phase();
            return p.progress(
                None,
                phase,
                "Provisioning",
                format!("Azure is provisioning VM {}", names.vm),
            );
        }
    }
    if matches!(
        p.old.phase,
        None | Some(VmPhase::Pending) | Some(VmPhase::Provisioning)
    ) {
        p.event(Event::normal("Created", format!("VM {} created", names.vm)));
    }
    if owned == Ownership::Adopt {
        p.event(Event::normal(
            "Adopted",
            format!("adopted existing VM {}", names.vm),
        ));
    }
    if power.is_transitioning() {
        return p.progress(
            None,
            VmPhase::Updating,
            "PowerTransition",
            format!("VM {} is {}", names.vm, power_word(power)),
        );
    }
    if let Some((field, message)) = build::disk_shrink(spec, names, &seen.disks) {
        return p.stalled("InvalidSpec", format!("invalid {field}: {message}"));
    }
    let untagged = build::untagged_disks(&seen.disks, observed.vm.id.as_deref(), tags);
    if !untagged.is_empty() {
        let list = untagged
            .iter()
            .map(|r| r.what.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return p.progress(
            Some(Step::TagDisks(untagged)),
            VmPhase::Updating,
            "Updating",
            format!("tagging {list} with the ownership tags"),
        );
    }
    let detached = build::detached_disks(spec, names, &seen.disks, &seen.owner);
    if !detached.is_empty() {
        let list = detached.join(", ");
        p.event(Event::normal(
            "DataDiskDeleted",
            format!("deleting data disk(s) {list}: removed from spec.dataDisks and detached"),
        ));
        return p.progress(
            Some(Step::DeleteDisks(detached)),
            VmPhase::Updating,
            "Updating",
            format!("deleting detached data disk(s) {list}"),
        );
    }
    if let Some((_, changes)) = build::vm_update(&observed.vm, spec, names, tags) {
        for change in &changes {
            p.event(change_event(change));
        }
        let step = Step::UpdateVm {
            tags: tags.clone(),
            changes,
            retry: false,
        };
        let mut plan = p.progress(
            Some(step),
            VmPhase::Updating,
            "Updating",
            format!("updating VM {}", names.vm),
        );
        plan.out.requeue = Requeue::Progress;
        return plan;
    }
    let current = seen
        .disks
        .iter()
        .filter_map(|(n, d)| Some((n.clone(), d.properties.disk_size_gb?)))
        .collect();
    let growth = build::disk_growth(spec, names, &current);
    if !growth.is_empty() {
        let list = growth
            .iter()
            .map(|(n, s)| format!("{n} to {s} GiB"))
            .collect::<Vec<_>>()
            .join(", ");
        if power != Observed_::Deallocated {
            p.event(Event::normal(
                "Deallocating",
                format!("deallocating VM {} to grow {list}", names.vm),
            ));
            let mut plan = p.progress(
                Some(Step::Power(PowerAction::Deallocate)),
                VmPhase::Updating,
                "ResizingDisks",
                format!("growing {list}"),
            );
            plan.out.requeue = Requeue::Progress;
            return plan;
        }
        p.event(Event::normal("DisksResized", format!("growing {list}")));
        return p.progress(
            Some(Step::GrowDisks(growth)),
            VmPhase::Updating,
            "ResizingDisks",
            format!("growing {list}"),
        );
    }
    // Restart once per new restartRequestedAt.
    if spec.restart_requested_at.is_some()
        && p.old.last_restart_requested_at != spec.restart_requested_at
    {
        p.st.last_restart_requested_at = spec.restart_requested_at.clone();
        if power == Observed_::Running && spec.power_state == PowerState::Running {
            p.event(Event::normal(
                "Restarted",
                format!("restarting VM {} as requested", names.vm),
            ));
            let mut plan = p.progress(
                Some(Step::Power(PowerAction::Restart)),
                VmPhase::Updating,
                "Restarting",
                format!("restarting VM {}", names.vm),
            );
            plan.out.requeue = Requeue::Progress;
            return plan;
        }
    }
    let desired = spec.power_state;
    let action = match build::power_step(desired, power) {
        PowerStep::Converged => None,
        PowerStep::Wait => {
            return p.progress(
                None,
                VmPhase::Updating,
                "PowerTransition",
                format!("VM {} is {}", names.vm, power_word(power)),
            );
        }
        PowerStep::Start => Some((PowerAction::Start, "Starting")),
        PowerStep::PowerOff => Some((PowerAction::PowerOff, "Stopping")),
        PowerStep::Deallocate => Some((PowerAction::Deallocate, "Deallocating")),
    };
    if let Some((action, mut reason)) = action {
        let was_settled = same_power(p.old.power_state.as_deref(), desired.as_str())
            && p.old.observed_generation == vm.metadata.generation;
        if was_settled {
            if spec.spot.is_some()
                && power == Observed_::Deallocated
                && desired == PowerState::Running
            {
                reason = "SpotEvicted";
                p.event(Event::warning(
                    "SpotEvicted",
                    format!("Spot VM {} was evicted; starting it again", names.vm),
                ));
            } else {
                p.event(Event::warning(
                    "Repaired",
                    format!(
                        "VM {} was {} outside the operator; driving it back to {desired}",
                        names.vm,
                        power_word(power)
                    ),
                ));
            }
        }
        let message = format!("VM {} is {}; wanted {desired}", names.vm, power_word(power));
        let mut plan = p.progress(
            Some(Step::Power(action)),
            VmPhase::Updating,
            reason,
            message,
        );
        plan.out.requeue = Requeue::Progress;
        return plan;
    }
    if p.old.vm_id.is_some()
        && p.old.power_state.is_some()
        && !same_power(p.old.power_state.as_deref(), build::power_status(power))
    {
        p.event(Event::normal(
            transition_event(desired),
            format!("VM {} is {}", names.vm, power_word(power)),
        ));
    }
    guest(p, power, key)
}

/// Whether a recorded `status.powerState` is `word` (older operators wrote it in lower case).
fn same_power(recorded: Option<&str>, word: &str) -> bool {
    recorded.is_some_and(|r| r.eq_ignore_ascii_case(word))
}

fn change_event(change: &VmChange) -> Event {
    match change {
        VmChange::Resize { from, to } => {
            Event::normal("Resized", format!("resizing from {from} to {to}"))
        }
        VmChange::Tags => Event::normal("TagsUpdated", "updating tags"),
        VmChange::DataDisks => Event::normal("DataDisksUpdated", "attaching/detaching data disks"),
        VmChange::SpotPrice => Event::normal("SpotPriceUpdated", "updating the Spot max price"),
    }
}

/// Hash of a Fleet environment file's content, as `status.fleetEnvHash` records it.
pub fn env_hash(content: Option<&str>) -> Option<String> {
    use sha2::{Digest, Sha256};
    content.map(|c| hex::encode(Sha256::digest(c.as_bytes()))[..16].to_string())
}

/// The VM is as wanted: converge its mounts (on a running VM) and report.
fn guest(mut p: Planner<'_>, power: Observed_, key: &VmKey) -> Plan<AzlinVM> {
    let (vm, seen) = (p.vm, p.seen);
    let desired = vm.spec.power_state;
    let ready = Health::ready(
        desired.as_str(),
        format!(
            "VM {} is {} ({})",
            seen.names.vm,
            power_word(power),
            p.st.size.as_deref().unwrap_or("?")
        ),
    );
    let phase = settled_phase(desired);
    let host = p.st.private_ip.clone().or_else(|| p.st.public_ip.clone());
    let env_stale = env_hash(seen.env.as_deref()) != p.old.fleet_env_hash;
    if power == Observed_::Running
        && (mounts::needs_run(&seen.mounts, &p.old.mounts) || env_stale)
        && let Some(host) = host
    {
        let id = p.st.vm_id.clone().unwrap_or_else(|| seen.owner.display());
        let trust = HostKeyTrust::of(vm, key, &id);
        let work = GuestWork {
            vm: GuestVm {
                id,
                host,
                user: vm.spec.admin_username.clone(),
                key: Arc::clone(&key.private),
                host_key: trust.policy(),
            },
            plan: mounts::plan(&seen.mounts, seen.env.as_deref()),
            trust,
        };
        // The apply records the results and the mounts' health.
        return p.finish(
            Some(Step::Guest(Box::new(work))),
            phase,
            ready,
            Requeue::Resync,
        );
    }
    p.st.mounts = mounts::statuses(&seen.mounts, None, &p.old.mounts);
    if power != Observed_::Running {
        // Nothing is mounted on a stopped or deallocated VM: its mounts wait for it to run.
        let mounts = std::mem::take(&mut p.st.mounts);
        p.st.mounts = mounts::not_running(mounts, &seen.mounts, power_word(power));
        return p.finish(None, phase, ready, Requeue::Resync);
    }
    // A mount the storage's network rules refuse waits for the user's change (the
    // SharedStorage's change wakes this VM); the VM itself keeps converging.
    if let Some(message) = seen.mounts.iter().find_map(|m| m.denied.clone()) {
        return p.finish(
            None,
            phase,
            Health::stalled("SubnetNotAllowed", message),
            Requeue::Resync,
        );
    }
    match mount_health(&p.st.mounts, p.cx) {
        Some((health, requeue)) => p.finish(None, phase, health, requeue),
        None => p.finish(None, phase, ready, Requeue::Resync),
    }
}
