//! The AzlinVM controller: one AzlinVM ↔ one Azure VM with its NIC, optional public IP, OS
//! and data disks, in a resource group created when missing, on the operator-managed network
//! or an existing subnet; and the NFS mounts of the VM's guest.
//!
//! It runs on the shared reconcile layer ([`crate::reconcile`]): [`observe`] reads Azure and
//! the caches; [`plan`] (and [`cleanup`] while deleting) decides the next write without I/O;
//! [`apply`] makes it. Long operations (VM create/update, power actions, deletes) are started
//! and the object is requeued; the next reconcile re-derives progress from
//! `provisioningState` and the power state, so a restart at any point adopts what exists
//! (deterministic names, ownership tags) instead of duplicating it. A resync at rest makes
//! no ARM and no Kubernetes writes.

pub mod apply;
pub mod build;
pub mod cleanup;
pub mod cloudinit;
pub mod mounts;
pub mod observe;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod restore;
pub mod sshkey;
pub mod status;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::azlinvm::AzlinVMStatus;
use crate::api::{AzlinVM, Backup, Fleet, SharedStorage};
use crate::reconcile::Context;
use crate::reconcile::caches::{CacheSet, Guarded, spec_changes};

pub use observe::KIND;

/// Finalizer guarding the Azure resources.
pub const FINALIZER: &str = "azlin.io/azlinvm-cleanup";

crate::reconcile::reconciled_controller!(
    AzlinVM,
    status: AzlinVMStatus,
    name: KIND,
    finalizer: Some(FINALIZER),
);

/// References to the valid VMs of `namespace` for which `pred` holds.
fn vms_where(
    store: &Store<Guarded<AzlinVM>>,
    namespace: Option<&str>,
    pred: impl Fn(&AzlinVM) -> bool,
) -> Vec<ObjectRef<Guarded<AzlinVM>>> {
    let Some(ns) = namespace else {
        return Vec::new();
    };
    crate::reconcile::caches::names_where(store, ns, pred)
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(ns))
        .collect()
}

/// The controller: AzlinVM changes, and the changes of what a VM depends on — the
/// namespace's tenant credential, the SharedStorages it mounts, the Fleet controlling it and
/// the Backup it is being restored from.
///
/// Key Secrets are not watched: watching them needs `list`/`watch` on every Secret of the
/// cluster, which the operator does not hold (see `config/rbac/role.yaml`). A generated key
/// is created by the reconcile that reads it back; a referenced key Secret that does not
/// exist yet leaves the VM Stalled until the next change of the AzlinVM or the stalled
/// recheck.
pub fn controller(ctx: &Context, caches: &CacheSet) -> Controller<Guarded<AzlinVM>> {
    let store = ctx.caches.vms.clone();
    let (by_tenant, by_storage, by_fleet, by_backup) =
        (store.clone(), store.clone(), store.clone(), store.clone());
    Controller::for_shared_stream(spec_changes(caches.vms(), store.clone()), store)
        .watches_shared_stream(caches.tenant_secrets(), move |secret: Arc<Secret>| {
            vms_where(&by_tenant, secret.meta().namespace.as_deref(), |_| true)
        })
        .watches_shared_stream(
            caches.storages(),
            move |storage: Arc<Guarded<SharedStorage>>| {
                let name = storage.meta().name.clone().unwrap_or_default();
                vms_where(&by_storage, storage.meta().namespace.as_deref(), |vm| {
                    vm.spec.mounts.iter().any(|m| m.storage_ref == name)
                        || vm
                            .status
                            .iter()
                            .flat_map(|s| &s.mounts)
                            .any(|m| m.storage_ref == name)
                })
            },
        )
        .watches_shared_stream(caches.fleets(), move |fleet: Arc<Guarded<Fleet>>| {
            let name = fleet.meta().name.clone().unwrap_or_default();
            vms_where(&by_fleet, fleet.meta().namespace.as_deref(), |vm| {
                mounts::fleet_owner(vm).is_some_and(|o| o.name == name)
            })
        })
        .watches_shared_stream(caches.backups(), move |backup: Arc<Guarded<Backup>>| {
            let name = backup.meta().name.clone().unwrap_or_default();
            vms_where(&by_backup, backup.meta().namespace.as_deref(), |vm| {
                restore::restoring(vm).is_some_and(|r| r.backup_ref == name)
            })
        })
}
