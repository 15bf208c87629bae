//! The Backup controller: scheduled, incremental snapshots of every managed disk of an
//! AzlinVM, or of every member of a Fleet, with retention, cross-region copies and restore
//! verification.
//!
//! It runs on the shared reconcile layer ([`crate::reconcile`]): [`observe`] reads the source
//! from the shared caches and the Backup's snapshots from Azure; [`plan`] (and [`cleanup`]
//! while deleting) decides the next write without I/O; [`apply`] makes it.
//!
//! - **Schedule** ([`schedule`]): cron in `spec.timeZone`, checked by the controller as well
//!   as by the schema (`Stalled` naming the field otherwise). After downtime at most one
//!   missed slot runs. `spec.suspend` stops scheduled runs; a new `spec.runRequestedAt`
//!   runs once.
//! - **A run** snapshots each disk (OS and data) of each provisioned source VM as an
//!   incremental snapshot named `<backup>-<run>-<disk>` ([`names`]) in the disk's resource
//!   group, tagged with the Backup's ownership tags and the run, VM, disk and LUN: a restart
//!   finds what it started instead of taking it again, and runs found only in Azure are
//!   recovered into the status. A run succeeds when every snapshot succeeded.
//! - **Copies**: for each of `spec.copyToRegions`, a `CopyStart` copy into resource group
//!   `<group>-backup-<region>` (created in that region), followed until `completionPercent`
//!   is 100. **Verification** (`spec.verify`): each OS snapshot is restored to a throwaway
//!   disk, the result recorded on the run, and the disk deleted.
//! - **Retention** ([`retention`]): deletes the snapshots (and copies) of the runs it no
//!   longer keeps; never a snapshot without this Backup's ownership tags.
//! - **Deletion**: see [`cleanup`].

pub mod apply;
pub mod cleanup;
pub mod names;
pub mod observe;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod retention;
pub mod runs;
pub mod schedule;
pub mod status;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::backup::{Backup, BackupSourceKind, BackupStatus};
use crate::api::{AzlinVM, Fleet};
use crate::controllers::azlinvm::mounts::fleet_owner;
use crate::reconcile::Context;
use crate::reconcile::caches::{CacheSet, Guarded, spec_changes};

pub use observe::KIND;

/// Finalizer guarding the snapshots of a Backup.
pub const FINALIZER: &str = "azlin.io/backup-cleanup";

crate::reconcile::reconciled_controller!(
    Backup,
    status: BackupStatus,
    name: KIND,
    finalizer: Some(FINALIZER),
);

/// References to the valid Backups of `namespace` for which `pred` holds.
fn backups_where(
    store: &Store<Guarded<Backup>>,
    namespace: Option<&str>,
    pred: impl Fn(&Backup) -> bool,
) -> Vec<ObjectRef<Guarded<Backup>>> {
    let Some(ns) = namespace else {
        return Vec::new();
    };
    crate::reconcile::caches::names_where(store, ns, pred)
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(ns))
        .collect()
}

fn sources(b: &Backup, kind: BackupSourceKind, name: &str) -> bool {
    b.spec.source.kind == kind && b.spec.source.name == name
}

/// The Backups an AzlinVM change concerns: those of the VM, and of the Fleet controlling it.
fn backups_of_vm(
    store: &Store<Guarded<Backup>>,
    vm: &Guarded<AzlinVM>,
) -> Vec<ObjectRef<Guarded<Backup>>> {
    let name = vm.meta().name.clone().unwrap_or_default();
    let fleet =
        vm.0.as_ref()
            .ok()
            .and_then(|v| fleet_owner(v).map(|o| o.name.clone()));
    backups_where(store, vm.meta().namespace.as_deref(), |b| {
        sources(b, BackupSourceKind::AzlinVM, &name)
            || fleet
                .as_deref()
                .is_some_and(|f| sources(b, BackupSourceKind::Fleet, f))
    })
}

/// The controller: Backup changes, and the changes of what a Backup depends on — its source
/// AzlinVM or Fleet (and the Fleet's members) and the namespace's tenant credential.
pub fn controller(ctx: &Context, caches: &CacheSet) -> Controller<Guarded<Backup>> {
    let store = ctx.caches.backups.clone();
    let (by_vm, by_fleet, by_tenant) = (store.clone(), store.clone(), store.clone());
    Controller::for_shared_stream(spec_changes(caches.backups(), store.clone()), store)
        .watches_shared_stream(caches.vms(), move |vm: Arc<Guarded<AzlinVM>>| {
            backups_of_vm(&by_vm, &vm)
        })
        .watches_shared_stream(caches.fleets(), move |fleet: Arc<Guarded<Fleet>>| {
            let name = fleet.meta().name.clone().unwrap_or_default();
            backups_where(&by_fleet, fleet.meta().namespace.as_deref(), |b| {
                sources(b, BackupSourceKind::Fleet, &name)
            })
        })
        .watches_shared_stream(caches.tenant_secrets(), move |secret: Arc<Secret>| {
            backups_where(&by_tenant, secret.meta().namespace.as_deref(), |_| true)
        })
}
