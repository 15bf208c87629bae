//! What a Fleet reconcile reads — only the shared caches: its members (AzlinVMs whose
//! controller ownerReference is this Fleet) and whether its `sharedHome` exists.

use std::sync::Arc;

use kube::ResourceExt;

use crate::api::{AzlinVM, Fleet};
use crate::reconcile::caches::{get_valid, valid_in};
use crate::reconcile::{Cx, Error};

/// Kind name (metrics, events).
pub const KIND: &str = "Fleet";

/// What a reconcile found.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The members, by name.
    pub members: Vec<Arc<AzlinVM>>,
    /// Names of other AzlinVMs of the namespace named like members (`<fleet>-<NNN>`), e.g.
    /// former members whose ownerReference was removed: their names stay taken.
    pub other_names: Vec<String>,
    /// Whether the SharedStorage named by `spec.sharedHome` exists (`None` without one).
    pub shared_home_exists: Option<bool>,
}

/// Whether `vm` is controlled by the Fleet with `uid`.
pub fn controlled_by(vm: &AzlinVM, uid: &str) -> bool {
    vm.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == KIND && o.uid == uid)
}

/// Reads the Fleet's members and its shared home from the caches.
pub async fn observe(fleet: &Fleet, cx: &Cx<'_>) -> Result<Observed, Error> {
    let caches = &cx.ctx.caches;
    let uid = fleet.uid().unwrap_or_default();
    let name = fleet.name_any();
    let (mut members, others): (Vec<Arc<AzlinVM>>, Vec<Arc<AzlinVM>>) =
        valid_in(&caches.vms, &cx.namespace)
            .into_iter()
            .partition(|vm| controlled_by(vm, &uid));
    members.sort_by_key(|vm| vm.name_any());
    let other_names = others
        .iter()
        .map(|vm| vm.name_any())
        .filter(|n| super::members::ordinal(&name, n).is_some())
        .collect();
    let shared_home_exists = fleet
        .spec
        .shared_home
        .as_ref()
        .map(|name| get_valid(&caches.storages, &cx.namespace, name).is_some());
    Ok(Observed {
        members,
        other_names,
        shared_home_exists,
    })
}
