//! The operator's view of Azure, read by LIST and shared: one snapshot per subscription,
//! resource group and resource type, which every object in that group observes from.
//!
//! A thousand VMs in one resource group cost a handful of reads per resync (VMs with their
//! instance views, NICs, public IPs, disks, networks) instead of seven GETs each. A snapshot
//! is reused while it is younger than the resync interval and newer than what the reading
//! object needs to see: after an object wrote to Azure, or while it waits for Azure to
//! finish something, it needs a snapshot taken after that moment. Refreshes of one
//! snapshot are single-flight and at least `min_interval` apart, so objects progressing at
//! the same time share each LIST.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azlin_arm::compute::{Disk, VirtualMachineStatus};
use azlin_arm::network::{NetworkInterface, NetworkSecurityGroup, PublicIpAddress, VirtualNetwork};
use azlin_arm::resource_groups::ResourceGroup;
use azlin_arm::storage::StorageAccount;
use azlin_arm::{ArmClient, ArmError};
use tokio::time::Instant;

/// What a collection's LIST returns, by lower-cased name.
#[derive(Debug)]
pub struct Snapshot<T> {
    items: HashMap<String, T>,
    /// The resource group does not exist (the LIST answered 404).
    pub group_missing: bool,
}

impl<T> Snapshot<T> {
    /// The item named `name` (ARM names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&T> {
        self.items.get(&name.to_ascii_lowercase())
    }

    /// Every item.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.items.values()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A resource type listed per resource group (or subscription).
pub trait Collection: Send + Sync + 'static {
    /// Name for the snapshot key and logs.
    const NAME: &'static str;
    /// One listed resource.
    type Item: Send + Sync + 'static;
    /// Lists the collection in `group` (ignored for subscription-wide collections), with
    /// each item's name.
    fn list(
        arm: &ArmClient,
        group: &str,
    ) -> impl Future<Output = Result<Vec<(String, Self::Item)>, ArmError>> + Send;
}

fn named<P>(items: Vec<azlin_arm::Resource<P>>) -> Vec<(String, azlin_arm::Resource<P>)> {
    items
        .into_iter()
        .filter_map(|r| Some((r.name.clone()?, r)))
        .collect()
}

macro_rules! collection {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $item:ty, |$arm:ident, $group:ident| $list:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl Collection for $ty {
            const NAME: &'static str = $name;
            type Item = $item;

            async fn list($arm: &ArmClient, $group: &str) -> Result<Vec<(String, $item)>, ArmError> {
                $list
            }
        }
    };
}

collection!(
    /// Resource groups of the subscription.
    Groups, "resourceGroups", ResourceGroup,
    |arm, _group| Ok(named(arm.resources().list(None).await?))
);
collection!(
    /// VMs of a group with their instance views.
    VirtualMachines, "virtualMachines", VirtualMachineStatus,
    |arm, group| Ok(arm
        .compute()
        .virtual_machines(group)
        .list_with_instance_view()
        .await?
        .into_iter()
        .filter_map(|v| Some((v.vm.name.clone()?, v)))
        .collect())
);
collection!(
    /// Managed disks of a group.
    Disks, "disks", Disk,
    |arm, group| Ok(named(arm.compute().disks(group).list().await?))
);
collection!(
    /// Network interfaces of a group.
    NetworkInterfaces, "networkInterfaces", NetworkInterface,
    |arm, group| Ok(named(arm.network().interfaces(group).list().await?))
);
collection!(
    /// Public IP addresses of a group.
    PublicIps, "publicIPAddresses", PublicIpAddress,
    |arm, group| Ok(named(arm.network().public_ips(group).list().await?))
);
collection!(
    /// Network security groups of a group.
    SecurityGroups, "networkSecurityGroups", NetworkSecurityGroup,
    |arm, group| Ok(named(arm.network().security_groups(group).list().await?))
);
collection!(
    /// Virtual networks of a group, with their subnets.
    VirtualNetworks, "virtualNetworks", VirtualNetwork,
    |arm, group| Ok(named(arm.network().virtual_networks(group).list().await?))
);
collection!(
    /// Storage accounts of a group.
    StorageAccounts, "storageAccounts", StorageAccount,
    |arm, group| Ok(named(arm.storage().accounts(group).list().await?))
);

#[derive(Default)]
struct Slot {
    started: Option<Instant>,
    value: Option<Arc<dyn Any + Send + Sync>>,
}

type SlotKey = (String, String, &'static str);

/// The shared snapshots, and what each object needs to see.
pub struct Inventory {
    slots: Mutex<HashMap<SlotKey, Arc<tokio::sync::Mutex<Slot>>>>,
    needs: Mutex<HashMap<String, Instant>>,
    /// Snapshots started before this are not reused (see [`Inventory::expire`]).
    floor: Mutex<Option<Instant>>,
    min_interval: Duration,
    max_age: Duration,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("min_interval", &self.min_interval)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inventory {
    /// Snapshots reused for up to `max_age` (the resync interval), refreshed at most every
    /// `min_interval`.
    pub fn new(min_interval: Duration, max_age: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            needs: Mutex::new(HashMap::new()),
            floor: Mutex::new(None),
            min_interval,
            max_age,
        }
    }

    /// From now on, `object` needs snapshots taken after this moment (it wrote, or waits for
    /// Azure to move on).
    pub fn needs_fresh(&self, object: &str) {
        let now = Instant::now();
        let mut needs = lock(&self.needs);
        // A need older than `max_age` is implied by the age limit: forget it.
        if needs.len() >= 1024 && needs.len().is_power_of_two() {
            needs.retain(|_, at| now.saturating_duration_since(*at) < self.max_age);
        }
        needs.insert(object.to_string(), now);
    }

    /// Every snapshot taken so far is stale: the next reads list again (a requested full
    /// resync).
    pub fn expire(&self) {
        *lock(&self.floor) = Some(Instant::now());
    }

    /// `object` is at rest: any snapshot younger than the resync interval will do.
    pub fn at_rest(&self, object: &str) {
        lock(&self.needs).remove(object);
    }

    /// The snapshot of `C` in `group` (for subscription-wide collections, any group) that
    /// `object` may decide on.
    pub async fn get<C: Collection>(
        &self,
        arm: &ArmClient,
        group: &str,
        object: &str,
    ) -> Result<Arc<Snapshot<C::Item>>, ArmError> {
        let need = lock(&self.needs).get(object).copied();
        let need = need.max(*lock(&self.floor));
        let key = (
            arm.subscription_id().to_ascii_lowercase(),
            if C::NAME == Groups::NAME {
                String::new()
            } else {
                group.to_ascii_lowercase()
            },
            C::NAME,
        );
        let slot = Arc::clone(lock(&self.slots).entry(key).or_default());
        let mut slot = slot.lock().await;
        let now = Instant::now();
        let usable = slot.started.is_some_and(|started| {
            now.saturating_duration_since(started) <= self.max_age
                && need.is_none_or(|n| started >= n)
        });
        if usable
            && let Some(snapshot) = slot
                .value
                .clone()
                .and_then(|v| v.downcast::<Snapshot<C::Item>>().ok())
        {
            return Ok(snapshot);
        }
        if let Some(started) = slot.started {
            tokio::time::sleep_until(started + self.min_interval).await;
        }
        let started = Instant::now();
        let snapshot = match C::list(arm, group).await {
            Ok(items) => Snapshot {
                items: items
                    .into_iter()
                    .map(|(n, i)| (n.to_ascii_lowercase(), i))
                    .collect(),
                group_missing: false,
            },
            Err(e) if e.is_not_found() => Snapshot {
                items: HashMap::new(),
                group_missing: true,
            },
            Err(e) => return Err(e),
        };
        let snapshot = Arc::new(snapshot);
        slot.started = Some(started);
        slot.value = Some(Arc::clone(&snapshot) as Arc<dyn Any + Send + Sync>);
        Ok(snapshot)
    }
}
