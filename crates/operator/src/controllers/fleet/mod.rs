//! The Fleet controller: N AzlinVMs from one template, as a ReplicaSet owns Pods.
//!
//! Members are AzlinVMs named `<fleet>-<NNN>` ([`members`]) with a controller
//! ownerReference to the Fleet, created and updated by server-side apply and deleted
//! through the Kubernetes API; the AzlinVM controller does the Azure work, so deleting a
//! Fleet deletes its members and, through their finalizers, everything in Azure.
//! [`rollout`] is the arithmetic (scaling, rolling template changes within `maxSurge` and
//! `maxUnavailable`, replacing members that stay failed), [`schedule`] the working hours;
//! [`plan`] puts them together without I/O. The fleet's `sharedHome` and `env` reach the
//! members through the AzlinVM controller, which reads the controlling Fleet.

pub mod apply;
pub mod members;
pub mod observe;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod rollout;
pub mod schedule;
pub mod status;

use std::sync::Arc;

use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::fleet::FleetStatus;
use crate::api::{AzlinVM, Fleet, SharedStorage};
use crate::reconcile::Context;
use crate::reconcile::caches::{CacheSet, Guarded, names_where, spec_changes};

pub use observe::KIND;

crate::reconcile::reconciled_controller!(
    Fleet,
    status: FleetStatus,
    name: KIND,
    finalizer: None,
);

/// The Fleet controlling `vm`, or the one its [`members::FLEET_LABEL`] names (a member
/// whose ownerReference was removed still tells its Fleet to make a replacement).
fn owner_of(vm: &Guarded<AzlinVM>) -> Option<ObjectRef<Guarded<Fleet>>> {
    let meta = vm.meta();
    let name = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == KIND)
        .map(|o| o.name.as_str())
        .or_else(|| {
            meta.labels
                .as_ref()?
                .get(members::FLEET_LABEL)
                .map(String::as_str)
        })?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// The Fleets of `namespace` whose `sharedHome` is `storage`.
fn fleets_sharing(
    store: &Store<Guarded<Fleet>>,
    storage: &Guarded<SharedStorage>,
) -> Vec<ObjectRef<Guarded<Fleet>>> {
    let (Some(ns), Some(name)) = (
        storage.meta().namespace.as_deref(),
        storage.meta().name.as_deref(),
    ) else {
        return Vec::new();
    };
    names_where(store, ns, |f: &Fleet| {
        f.spec.shared_home.as_deref() == Some(name)
    })
    .into_iter()
    .map(|n| ObjectRef::new(&n).within(ns))
    .collect()
}

/// The controller: Fleet changes, every change of a member (its status included: the
/// fleet counts Ready members) and of the SharedStorage used as shared home.
pub fn controller(ctx: &Context, caches: &CacheSet) -> Controller<Guarded<Fleet>> {
    let store = ctx.caches.fleets.clone();
    let by_storage = store.clone();
    Controller::for_shared_stream(spec_changes(caches.fleets(), store.clone()), store)
        .watches_shared_stream(caches.vms(), move |vm: Arc<Guarded<AzlinVM>>| owner_of(&vm))
        .watches_shared_stream(caches.storages(), move |s: Arc<Guarded<SharedStorage>>| {
            fleets_sharing(&by_storage, &s)
        })
}
