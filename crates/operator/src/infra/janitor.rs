//! Level-based clean-up of the shared infrastructure (see [`super::network`]) once no
//! object uses it any more: the managed virtual network and NSG, and resource groups the
//! operator created.
//!
//! A pass runs at start, after every deletion of an object and at the resync interval; it
//! reads the caches and two LISTs of the default subscription (resources tagged
//! as the managed network, groups tagged `managed-by=azlin-operator`) and takes at most one
//! write per unused group:
//! - a group the operator created that holds nothing but its managed network is deleted
//!   (with the network in it);
//! - otherwise the managed virtual network is deleted when no NIC in the group could sit in
//!   it, and the managed NSG once the network is gone.
//!
//! A group is used while any AzlinVM, SharedStorage, Fleet template or Backup copy names it
//! (in any namespace, also while deleting). Nothing is deleted while a cached object does
//! not deserialize (what it uses is unknown), nor by an operator watching one namespace
//! (another may use the group). Tenant subscriptions are not swept.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use azlin_arm::api_versions::RESOURCES;
use azlin_arm::resource_groups::GenericResource;
use azlin_arm::{ArmClient, ArmError, ResourceId, TagFilter};
use futures::StreamExt;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::reconcile::Context;
use crate::reconcile::caches::{Caches, Guarded, Subscription};
use crate::reconcile::ownership::{MANAGED_BY, MANAGED_NETWORK_KIND, TAG_KIND, TAG_MANAGED_BY};

/// What one unused group needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Delete the group (ours, holding only the managed network).
    DeleteGroup,
    /// Delete this managed resource (the virtual network before the NSG).
    Delete(String),
    /// Leave it (the reason, for the log).
    Keep(String),
}

fn is_managed_network(r: &GenericResource) -> bool {
    r.tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
        && r.tags.get(TAG_KIND).map(String::as_str) == Some(MANAGED_NETWORK_KIND)
}

fn type_is(r: &GenericResource, ty: &str) -> bool {
    r.resource_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(ty))
}

/// The next step for an unused group from its resources (pure). `ours`: the operator
/// created the group.
pub fn sweep(ours: bool, resources: &[GenericResource]) -> Sweep {
    let (managed, other): (Vec<&GenericResource>, Vec<&GenericResource>) =
        resources.iter().partition(|r| is_managed_network(r));
    if ours && other.is_empty() {
        return Sweep::DeleteGroup;
    }
    let id = |r: &&GenericResource| r.id.clone();
    let vnet = managed
        .iter()
        .find(|r| type_is(r, "Microsoft.Network/virtualNetworks"));
    if let Some(vnet) = vnet {
        if other
            .iter()
            .any(|r| type_is(r, "Microsoft.Network/networkInterfaces"))
        {
            return Sweep::Keep("network interfaces may still sit in the managed subnet".into());
        }
        return id(vnet).map_or_else(|| Sweep::Keep("no id".into()), Sweep::Delete);
    }
    managed
        .iter()
        .find(|r| type_is(r, "Microsoft.Network/networkSecurityGroups"))
        .and_then(id)
        .map_or_else(
            || Sweep::Keep("holds resources the operator does not manage".into()),
            Sweep::Delete,
        )
}

/// The resource group of a resource id, lower-cased.
fn group_of(id: &str) -> Option<String> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("resourceGroups") {
            return parts.next().map(str::to_ascii_lowercase);
        }
    }
    None
}

/// Groups the objects in the caches use (lower-cased) and the suffixes of Backup copy
/// groups; `None` when an object could not be read.
pub fn used_groups(caches: &Caches) -> Option<(BTreeSet<String>, Vec<String>)> {
    let mut used = BTreeSet::new();
    let mut copy_suffixes = Vec::new();
    for g in caches.vms.state() {
        let vm = g.0.as_ref().ok()?;
        used.insert(vm.spec.resource_group.to_ascii_lowercase());
        used.extend(
            vm.spec
                .network
                .as_ref()
                .and_then(|n| group_of(&n.subnet_id)),
        );
    }
    for g in caches.storages.state() {
        let s = g.0.as_ref().ok()?;
        used.insert(s.spec.resource_group.to_ascii_lowercase());
        used.extend(s.spec.allowed_subnets.iter().filter_map(|id| group_of(id)));
    }
    for g in caches.fleets.state() {
        let f = g.0.as_ref().ok()?;
        let spec = &f.spec.template.spec;
        used.insert(spec.resource_group.to_ascii_lowercase());
        used.extend(spec.network.as_ref().and_then(|n| group_of(&n.subnet_id)));
    }
    for g in caches.backups.state() {
        let b = g.0.as_ref().ok()?;
        copy_suffixes.extend(
            b.spec
                .copy_to_regions
                .iter()
                .map(|r| format!("-backup-{}", r.to_ascii_lowercase())),
        );
    }
    Some((used, copy_suffixes))
}

/// One pass over the default subscription; returns the writes it started.
pub async fn pass(arm: &ArmClient, caches: &Caches) -> Result<usize, ArmError> {
    let Some((used, copy_suffixes)) = used_groups(caches) else {
        tracing::debug!("janitor: an object does not deserialize; nothing is swept");
        return Ok(0);
    };
    let subscription = ResourceId::subscription(arm.subscription_id()).to_string();
    let filter = TagFilter::eq(TAG_KIND, MANAGED_NETWORK_KIND).to_odata();
    let managed: Vec<GenericResource> = arm
        .list_json(
            &format!("{subscription}/resources"),
            RESOURCES,
            &[("$filter", filter.as_str())],
        )
        .await?;
    let ours: BTreeMap<String, String> = arm
        .resources()
        .list(Some(&TagFilter::eq(TAG_MANAGED_BY, MANAGED_BY)))
        .await?
        .into_iter()
        .filter_map(|g| g.name)
        .map(|n| (n.to_ascii_lowercase(), n))
        .collect();
    let mut groups: BTreeMap<String, String> = ours.clone();
    for r in managed.iter().filter(|r| is_managed_network(r)) {
        if let Some(id) = &r.id
            && let Some(g) = group_of(id)
        {
            groups.entry(g.clone()).or_insert(g);
        }
    }
    let mut writes = 0;
    for (key, name) in &groups {
        if used.contains(key) || copy_suffixes.iter().any(|s| key.ends_with(s)) {
            continue;
        }
        let resources = arm.resources().list_resources(name, None).await?;
        match sweep(ours.contains_key(key), &resources) {
            Sweep::DeleteGroup => {
                tracing::info!(group = %name, "deleting unused resource group created by the operator");
                arm.resources().begin_delete(name).await?;
                writes += 1;
            }
            Sweep::Delete(id) => {
                let parsed = ResourceId::parse(&id)
                    .map_err(|e| ArmError::Protocol(format!("resource id {id}: {e}")))?;
                let version = azlin_arm::client::api_version_of(&parsed)?;
                tracing::info!(%id, "deleting unused managed network resource");
                arm.begin_delete(&id, version).await?;
                writes += 1;
            }
            Sweep::Keep(why) => tracing::debug!(group = %name, why, "janitor keeps the group"),
        }
    }
    Ok(writes)
}

/// Wakes `removed` whenever an object of `subscription` has left its store (deleted).
pub async fn forward_removals<K>(
    subscription: Subscription<Guarded<K>>,
    store: Store<Guarded<K>>,
    removed: Arc<Notify>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    subscription
        .for_each(|obj| {
            if store.get(&ObjectRef::from_obj(obj.as_ref())).is_none() {
                removed.notify_one();
            }
            futures::future::ready(())
        })
        .await;
}

/// Sweeps once the caches are synced, then whenever `removed` is woken (an object was
/// deleted) and at least every `every`, until `shutdown`; `removals` (e.g.
/// [`forward_removals`]) runs alongside. Only when the operator watches every namespace.
pub async fn run(
    ctx: Arc<Context>,
    removals: impl Future<Output = ()>,
    removed: Arc<Notify>,
    every: Duration,
    shutdown: CancellationToken,
) {
    if ctx.settings.namespace.is_some() {
        return;
    }
    let sweeping = async {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = ctx.caches.wait_ready() => {}
        }
        loop {
            match pass(ctx.default_arm(), &ctx.caches).await {
                // Azure changed under every object's view: look again (an object created
                // while the pass ran re-creates what it needs).
                Ok(writes) if writes > 0 => ctx.resync(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "janitor pass failed; retrying on the next one");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
                () = removed.notified() => {}
            }
        }
    };
    let removals = async {
        removals.await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = sweeping => {}
        () = removals => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::ownership::managed_network_tags;

    fn res(ty: &str, name: &str, managed: bool) -> GenericResource {
        let mut r: GenericResource = serde_json::from_value(serde_json::json!({
            "id": format!("/subscriptions/s/resourceGroups/rg/providers/{ty}/{name}"),
            "name": name,
            "type": ty,
        }))
        .expect("resource");
        if managed {
            r.tags = managed_network_tags();
        }
        r
    }

    const VNET: &str = "Microsoft.Network/virtualNetworks";
    const NSG: &str = "Microsoft.Network/networkSecurityGroups";
    const NIC: &str = "Microsoft.Network/networkInterfaces";

    #[test]
    fn sweeps_in_order_and_keeps_what_is_not_ours() {
        let vnet = res(VNET, "v", true);
        let nsg = res(NSG, "n", true);
        let disk = res("Microsoft.Compute/disks", "d", false);
        let nic = res(NIC, "i", false);
        assert_eq!(sweep(true, &[]), Sweep::DeleteGroup);
        assert_eq!(
            sweep(true, &[vnet.clone(), nsg.clone()]),
            Sweep::DeleteGroup
        );
        // A group the operator did not create is never deleted; its network goes in order.
        let vnet_id = vnet.id.clone().expect("id");
        assert_eq!(
            sweep(false, &[vnet.clone(), nsg.clone()]),
            Sweep::Delete(vnet_id.clone())
        );
        assert_eq!(
            sweep(false, std::slice::from_ref(&nsg)),
            Sweep::Delete(nsg.id.clone().expect("id"))
        );
        // Anything else in the group keeps the group; a NIC keeps the network too.
        assert_eq!(
            sweep(true, &[vnet.clone(), nsg.clone(), disk.clone()]),
            Sweep::Delete(vnet_id)
        );
        assert!(matches!(
            sweep(true, &[vnet.clone(), nsg.clone(), nic]),
            Sweep::Keep(_)
        ));
        assert!(matches!(sweep(false, &[disk]), Sweep::Keep(_)));
        // A same-named network without our tags is not ours.
        assert!(matches!(
            sweep(false, &[res(VNET, "v", false)]),
            Sweep::Keep(_)
        ));
    }

    #[test]
    fn group_of_ids() {
        assert_eq!(
            group_of("/subscriptions/s/resourceGroups/RG-1/providers/x/y/z").as_deref(),
            Some("rg-1")
        );
        assert_eq!(group_of("/subscriptions/s"), None);
    }
}
