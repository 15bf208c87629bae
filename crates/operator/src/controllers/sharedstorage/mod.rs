//! The SharedStorage controller: one Azure Files NFS 4.1 share per object, on a Premium
//! `FileStorage` account reachable only from the operator-managed VM subnet of its region
//! (plus `spec.allowedSubnets`).
//!
//! It runs on the shared reconcile layer ([`crate::reconcile`]): [`observe`] reads the
//! account, the share (with usage) and, while the storage is kept, the resource group and
//! managed subnet; [`plan`] (and [`cleanup`] while deleting) decides the next write without
//! I/O; [`apply`] makes it. At rest a reconcile makes no ARM and no Kubernetes writes.
//!
//! - Account name: [`naming::storage_account_name`](crate::infra::naming::storage_account_name)
//!   (deterministic, 24 characters), tagged with the owner tags; a same-named account
//!   without them is never touched (Stalled).
//! - Share: named after the object, `enabledProtocols: NFS` (creation only), `rootSquash`,
//!   `shareQuota` = `spec.sizeGiB`. Growth is applied; a shrink only when the share's reported
//!   usage (`shareUsageBytes`, `$expand=stats`) fits, otherwise Stalled `ShrinkBelowUsage`.
//! - `status.mountedBy`: AzlinVMs of the namespace listing the storage in `spec.mounts[]`,
//!   and `fleet/<name>` for Fleets with `spec.sharedHome` naming it; kept current by watching
//!   both kinds. A change of a namespace's tenant credential Secret reconciles its storages.
//! - Deletion: see [`cleanup`].
//! - For the VM side: [`status::mount_source`] is the endpoint to mount (set whenever the
//!   share exists, also while Stalled or Deleting).
//! - Templates: [`build::mount_layout`] gives the default mount path and directories of a
//!   storage; [`build::templates_markdown`] renders the README table.

pub mod apply;
pub mod build;
pub mod cleanup;
pub mod observe;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::azlinvm::AzlinVM;
use crate::api::fleet::Fleet;
use crate::api::sharedstorage::{SharedStorage, SharedStorageStatus};
use crate::reconcile::Context;
use crate::reconcile::caches::{CacheSet, Guarded, spec_changes};

pub use observe::KIND;

/// Finalizer guarding the Azure resources of a SharedStorage.
pub const FINALIZER: &str = "azlin.io/sharedstorage-cleanup";

crate::reconcile::reconciled_controller!(
    SharedStorage,
    status: SharedStorageStatus,
    name: KIND,
    finalizer: Some(FINALIZER),
);

/// The controller: SharedStorage changes, and the changes of what its status and deletion
/// depend on — the namespace's tenant credential, the AzlinVMs and Fleets that mount it.
pub fn controller(ctx: &Context, caches: &CacheSet) -> Controller<Guarded<SharedStorage>> {
    let store = ctx.caches.storages.clone();
    let (by_secret, by_vm, by_fleet) = (store.clone(), store.clone(), store.clone());
    Controller::for_shared_stream(spec_changes(caches.storages(), store.clone()), store)
        .watches_shared_stream(caches.tenant_secrets(), move |secret: Arc<Secret>| {
            storages_in(&by_secret, secret.meta().namespace.as_deref())
        })
        .watches_shared_stream(caches.vms(), move |vm| storages_of_vm(&by_vm, &vm))
        .watches_shared_stream(caches.fleets(), move |fleet| {
            storages_of_fleet(&by_fleet, &fleet)
        })
}

/// Every storage of `namespace` (a change of its tenant credential concerns them all).
fn storages_in(
    store: &Store<Guarded<SharedStorage>>,
    namespace: Option<&str>,
) -> Vec<ObjectRef<Guarded<SharedStorage>>> {
    store
        .state()
        .iter()
        .filter(|s| s.meta().namespace.as_deref() == namespace)
        .filter_map(|s| {
            let name = s.meta().name.as_deref()?;
            Some(ObjectRef::new(name).within(namespace.unwrap_or_default()))
        })
        .collect()
}

/// The storages a VM event concerns: those its spec or status mounts, and those whose
/// status still lists it (so removing a mount or the VM updates `mountedBy`).
fn storages_of_vm(
    store: &Store<Guarded<SharedStorage>>,
    vm: &Guarded<AzlinVM>,
) -> Vec<ObjectRef<Guarded<SharedStorage>>> {
    let (meta, refs): (_, Vec<String>) = match &vm.0 {
        Ok(vm) => (
            &vm.metadata,
            vm.spec
                .mounts
                .iter()
                .map(|m| m.storage_ref.clone())
                .chain(
                    vm.status
                        .iter()
                        .flat_map(|s| &s.mounts)
                        .map(|m| m.storage_ref.clone()),
                )
                .collect(),
        ),
        Err(invalid) => (&invalid.metadata, Vec::new()),
    };
    affected(store, meta, refs, meta.name.clone().unwrap_or_default())
}

/// The storages a Fleet event concerns. A Fleet is listed through its members (whose
/// events keep `mountedBy` current), so only a Fleet that may be gone concerns the storages
/// that list it or that it names as `sharedHome`; every Fleet change concerns the storages
/// being deleted (their deletion may wait for it).
fn storages_of_fleet(
    store: &Store<Guarded<SharedStorage>>,
    fleet: &Guarded<Fleet>,
) -> Vec<ObjectRef<Guarded<SharedStorage>>> {
    let (meta, home) = match &fleet.0 {
        Ok(f) => (&f.metadata, f.spec.shared_home.clone()),
        Err(invalid) => (&invalid.metadata, None),
    };
    let user = format!(
        "{}{}",
        status::FLEET_PREFIX,
        meta.name.as_deref().unwrap_or_default()
    );
    let may_be_gone =
        meta.deletion_timestamp.is_some() || meta.finalizers.as_ref().is_none_or(|f| f.is_empty());
    let ns = meta.namespace.as_deref().unwrap_or_default();
    let mut listing: Vec<String> = store
        .state()
        .iter()
        .filter_map(|s| s.0.as_ref().ok())
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| {
            // A storage waiting for its holders to go is re-evaluated on every Fleet change.
            s.metadata.deletion_timestamp.is_some()
                || (may_be_gone
                    && s.status
                        .as_ref()
                        .is_some_and(|st| st.mounted_by.contains(&user)))
        })
        .filter_map(|s| s.metadata.name.clone())
        .chain(home.filter(|_| may_be_gone))
        .collect();
    listing.sort();
    listing.dedup();
    listing
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(ns))
        .collect()
}

/// The storages whose `mountedBy` a change of `user` (a VM name or `fleet/<name>`, with
/// `meta` and the storages `refs` it now uses) may make stale: those it uses but that do not
/// list it, those that list it but it no longer uses, and all it uses or is listed by when
/// it is being deleted or has no finalizer (then a delete event carries no
/// `deletionTimestamp`, so any event may be the last). Status-only changes of a user with a
/// finalizer (every AzlinVM the operator handles) map to nothing, so busy VMs do not cause
/// storage reconciles, each of which reads Azure. Storages being deleted are concerned by
/// every change (their deletion may wait for `user`; while it waits they read no Azure).
fn affected(
    store: &Store<Guarded<SharedStorage>>,
    meta: &kube::core::ObjectMeta,
    refs: Vec<String>,
    user: String,
) -> Vec<ObjectRef<Guarded<SharedStorage>>> {
    let ns = meta.namespace.clone().unwrap_or_default();
    let may_be_gone =
        meta.deletion_timestamp.is_some() || meta.finalizers.as_ref().is_none_or(|f| f.is_empty());
    let refs: BTreeSet<String> = refs.into_iter().collect();
    let mut names = BTreeSet::new();
    for s in store.state() {
        let Ok(s) = &s.0 else { continue };
        let Some(name) = &s.metadata.name else {
            continue;
        };
        if s.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let listed = s
            .status
            .as_ref()
            .is_some_and(|st| st.mounted_by.contains(&user));
        let uses = refs.contains(name);
        let waiting = s.metadata.deletion_timestamp.is_some();
        if waiting || listed != uses || (may_be_gone && (listed || uses)) {
            names.insert(name.clone());
        }
    }
    names
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(&ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DeserializeGuard;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn guarded_storage(name: &str, mounted_by: &[&str]) -> Guarded<SharedStorage> {
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "SharedStorage",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"resourceGroup": "rg", "location": "westus2"},
            "status": {"mountedBy": mounted_by}
        }))
        .expect("storage")))
    }

    fn store(items: Vec<Guarded<SharedStorage>>) -> Store<Guarded<SharedStorage>> {
        let mut w: Writer<Guarded<SharedStorage>> = Writer::default();
        let r = w.as_reader();
        w.apply_watcher_event(&Event::Init);
        for i in items {
            w.apply_watcher_event(&Event::InitApply(i));
        }
        w.apply_watcher_event(&Event::InitDone);
        r
    }

    fn names(refs: Vec<ObjectRef<Guarded<SharedStorage>>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    fn vm(name: &str, mounts: &[&str], deleting: bool) -> Guarded<AzlinVM> {
        let mounts: Vec<_> = mounts.iter().map(|m| json!({"storageRef": m})).collect();
        let mut v = json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "AzlinVM",
            "metadata": {"name": name, "namespace": "ns", "finalizers": ["azlin.io/azlinvm-cleanup"]},
            "spec": {"resourceGroup": "rg", "location": "westus2", "mounts": mounts}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        DeserializeGuard(Ok(serde_json::from_value(v).expect("vm")))
    }

    #[test]
    fn vm_events_map_to_storages_whose_mounted_by_is_stale() {
        let s = store(vec![
            guarded_storage("old", &["vm1"]),
            guarded_storage("new", &[]),
            guarded_storage("kept", &["vm1"]),
            guarded_storage("other", &["vm2"]),
        ]);
        assert_eq!(
            names(storages_of_vm(&s, &vm("vm1", &["new", "kept"], false))),
            vec!["new", "old"],
            "newly mounted and no longer mounted; not the unchanged one"
        );
        assert!(
            storages_of_vm(&s, &vm("vm2", &["other"], false)).is_empty(),
            "a status-only change of a VM triggers nothing"
        );
        assert_eq!(
            names(storages_of_vm(&s, &vm("vm1", &["kept"], true))),
            vec!["kept", "old"],
            "a VM being deleted triggers every storage it used"
        );
        let mut bare = vm("vm2", &["other"], false);
        if let Ok(v) = bare.0.as_mut() {
            v.metadata.finalizers = None;
        }
        assert_eq!(
            names(storages_of_vm(&s, &bare)),
            vec!["other"],
            "without a finalizer any event may be the deletion"
        );
    }

    #[test]
    fn fleet_events_map_to_shared_home_and_listed_storages() {
        let s = store(vec![
            guarded_storage("home", &["fleet/f"]),
            guarded_storage("next", &[]),
        ]);
        let fleet: Guarded<Fleet> = DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "Fleet",
            "metadata": {"name": "f", "namespace": "ns"},
            "spec": {"replicas": 1, "sharedHome": "next", "template": {"spec": {"resourceGroup": "rg", "location": "westus2"}}}
        }))
        .expect("fleet")));
        assert_eq!(names(storages_of_fleet(&s, &fleet)), vec!["home", "next"]);
    }
}
