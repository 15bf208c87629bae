//! The pure decisions of the AzlinVM controller while the object is deleted.
//!
//! - `deletionPolicy: Delete`: the VM, then its NIC, public IP and disks are deleted, one
//!   step per reconcile (started, not awaited; the next reconcile observes progress), and the
//!   finalizer goes when nothing of the VM is left. A resource group that is gone means
//!   everything in it is gone; only resources carrying this object's ownership tags are
//!   deleted (a matching name is not enough: another AzlinVM may map to the same names).
//! - `deletionPolicy: Retain`: every resource of the VM is tagged
//!   `azlin-operator-released=true` and left in Azure, and the generated key Secret
//!   `<name>-ssh` is kept with it (no longer owned by the AzlinVM), so the retained VM can
//!   still be logged in to.

use std::collections::BTreeMap;

use azlin_arm::OperationState;

use super::observe::{Observed, provisioning};
use super::plan::{Planner, Step};
use crate::api::AzlinVM;
use crate::api::azlinvm::VmPhase;
use crate::api::common::DeletionPolicy;
use crate::api::conditions::Health;
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{Ownership, TAG_RELEASED, ownership, released};
use crate::reconcile::{Plan, PlanCx, Requeue};

/// A resource to tag released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// What it is, for the event (e.g. `VM ns-vm`).
    pub what: String,
    /// Its ARM id.
    pub id: String,
    /// Its tags with the released mark.
    pub tags: BTreeMap<String, String>,
}

fn ours(tags: &BTreeMap<String, String>, seen: &Observed) -> bool {
    !matches!(ownership(tags, &seen.owner), Ownership::Foreign { .. })
}

fn deleting(p: Planner<'_>, step: Option<Step>, message: String) -> Plan<AzlinVM> {
    let requeue = if step.is_some() {
        Requeue::Now
    } else {
        Requeue::Progress
    };
    p.finish(
        step,
        VmPhase::Deleting,
        Health::progressing("Deleting", message),
        requeue,
    )
}

fn release(mut p: Planner<'_>, reason: &str, note: String) -> Plan<AzlinVM> {
    p.event(Event::normal(reason, note.clone()));
    let mut plan = p.finish(
        None,
        VmPhase::Deleting,
        Health::progressing("Deleting", note),
        Requeue::Resync,
    );
    plan.out.released = true;
    plan
}

/// The plan of an AzlinVM being deleted.
pub fn plan(vm: &AzlinVM, seen: &Observed, cx: &PlanCx<'_>) -> Plan<AzlinVM> {
    let p = Planner::new(vm, seen, cx);
    let rg = &seen.site.resource_group;
    if !seen.group {
        let note = match vm.spec.deletion_policy {
            DeletionPolicy::Delete => {
                format!("resource group {rg} is gone, and the VM's resources with it")
            }
            DeletionPolicy::Retain => format!("resource group {rg} is gone; nothing to retain"),
        };
        let reason = match vm.spec.deletion_policy {
            DeletionPolicy::Delete => "Deleted",
            DeletionPolicy::Retain => "Retained",
        };
        return release(p, reason, note);
    }
    match vm.spec.deletion_policy {
        DeletionPolicy::Delete => plan_delete(p, seen),
        DeletionPolicy::Retain => plan_retain(p, seen),
    }
}

fn plan_delete(p: Planner<'_>, seen: &Observed) -> Plan<AzlinVM> {
    let names = &seen.names;
    if let Some(v) = &seen.vm
        && ours(&v.vm.tags, seen)
    {
        if matches!(provisioning(v), OperationState::InProgress(s) if s.eq_ignore_ascii_case("Deleting"))
        {
            return deleting(p, None, format!("Azure is deleting VM {}", names.vm));
        }
        return deleting(p, Some(Step::DeleteVm), format!("deleting VM {}", names.vm));
    }
    if let Some(n) = &seen.nic
        && ours(&n.tags, seen)
    {
        return deleting(
            p,
            Some(Step::DeleteNic),
            format!("deleting network interface {}", names.nic),
        );
    }
    if let Some(pip) = &seen.pip
        && ours(&pip.tags, seen)
    {
        return deleting(
            p,
            Some(Step::DeletePip),
            format!("deleting public IP {}", names.pip),
        );
    }
    // Only disks with this object's tags: a name alone proves nothing (another AzlinVM may
    // map to the same names). Untagged disks the VM PUT created go with the VM
    // (deleteOption Delete); detached ones were tagged while attached.
    let disks: Vec<String> = seen
        .disks
        .iter()
        .filter(|(_, d)| crate::reconcile::ownership::is_managed(&d.tags) && ours(&d.tags, seen))
        .map(|(n, _)| n.clone())
        .collect();
    if !disks.is_empty() {
        let list = disks.join(", ");
        return deleting(
            p,
            Some(Step::DeleteDisks(disks)),
            format!("deleting disks {list}"),
        );
    }
    let note = format!("the Azure resources of VM {} are deleted", names.vm);
    release(p, "Deleted", note)
}

fn plan_retain(p: Planner<'_>, seen: &Observed) -> Plan<AzlinVM> {
    let names = &seen.names;
    let mut targets: Vec<(String, Option<String>, BTreeMap<String, String>)> = Vec::new();
    if let Some(v) = &seen.vm {
        targets.push((
            format!("VM {}", names.vm),
            v.vm.id.clone(),
            v.vm.tags.clone(),
        ));
    }
    if let Some(n) = &seen.nic {
        targets.push((format!("NIC {}", names.nic), n.id.clone(), n.tags.clone()));
    }
    if let Some(pip) = &seen.pip {
        targets.push((
            format!("public IP {}", names.pip),
            pip.id.clone(),
            pip.tags.clone(),
        ));
    }
    let our_vm_id = seen
        .vm
        .as_ref()
        .filter(|v| ours(&v.vm.tags, seen))
        .and_then(|v| v.vm.id.clone());
    for (name, d) in &seen.disks {
        // Disks created by the VM PUT may have no tags yet: give them ours, released, when
        // they are attached to our VM (never by name alone).
        let tags = if d.tags.is_empty() {
            let attached_to_ours = d
                .extra
                .get("managedBy")
                .and_then(serde_json::Value::as_str)
                .zip(our_vm_id.as_deref())
                .is_some_and(|(m, id)| m.eq_ignore_ascii_case(id));
            if !attached_to_ours {
                continue;
            }
            seen.owner.tags()
        } else {
            d.tags.clone()
        };
        targets.push((format!("disk {name}"), d.id.clone(), tags));
    }
    let kept: Vec<&(String, Option<String>, BTreeMap<String, String>)> = targets
        .iter()
        .filter(|(_, _, tags)| ours(tags, seen))
        .collect();
    let pending: Vec<Release> = kept
        .iter()
        .filter(|(_, _, tags)| tags.get(TAG_RELEASED).map(String::as_str) != Some("true"))
        .filter_map(|(what, id, tags)| {
            Some(Release {
                what: what.clone(),
                id: id.clone()?,
                tags: released(tags),
            })
        })
        .collect();
    if !pending.is_empty() {
        let list = pending
            .iter()
            .map(|r| r.what.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return deleting(
            p,
            Some(Step::Release(pending)),
            format!("tagging {list} released"),
        );
    }
    let list = if kept.is_empty() {
        "nothing".to_string()
    } else {
        kept.iter()
            .map(|(w, _, _)| w.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let vm_kept = seen.vm.as_ref().is_some_and(|v| ours(&v.vm.tags, seen));
    let generated_key = p.vm.spec.ssh_key_secret_ref.is_none();
    let mut plan = release(
        p,
        "Retained",
        format!("deletionPolicy Retain: left {list} in Azure, tagged {TAG_RELEASED}=true"),
    );
    if vm_kept && generated_key {
        // The apply releases the Secret before the finalizer goes, so the garbage
        // collector never sees it owned by a deleted AzlinVM.
        plan.step = Some(Step::RetainKey);
    }
    plan
}
