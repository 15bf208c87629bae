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
//!
//! The resync interval adapts to Azure's read budget: when one round of LISTs in a
//! subscription (every snapshot refreshed once, each page a read) would take more than half
//! of what the subscription's read bucket refills in one interval, the interval grows
//! ([`adaptive_resync`]), so an operator at rest never spends more than half of the reads.
//!
//! While objects progress they need fresh snapshots often; once Azure reported the
//! subscription's read budget, refreshes are spaced so that a round of them (every
//! snapshot once) takes at most half of the read refill too, leaving the rest to other tools
//! and to objects reacting to changes.
//!
//! Some lists are charged to a scarcer provider budget as well: Compute counts a VM list
//! with instance views (the only way to read power states in bulk) against its high-cost
//! read windows (`HighCostGet3Min` 160, `HighCostGet30Min` 800). Such a snapshot
//! ([`Collection::scarce_rate`]) is refreshed at most once per [`scarce_spacing`] of the
//! pages of every such snapshot in the subscription (they share the budget), and an
//! object that needs a newer one than exists is told when to come back
//! ([`Inventory::get_paced`]) instead of holding a worker until then. VM existence and
//! provisioning come from the plain VM list, a low-cost read.
//!
//! After a start, a group's first VM, instance-view, NIC, public IP and disk snapshots come
//! from one Azure Resource Graph query ([`super::warm_start`]) where it can answer for them.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azlin_arm::OperationState;
use azlin_arm::compute::{
    Disk, InstanceView, InstanceViewStatus, VirtualMachine, VirtualMachineStatus,
};
use azlin_arm::network::{NetworkInterface, NetworkSecurityGroup, PublicIpAddress, VirtualNetwork};
use azlin_arm::resource_groups::ResourceGroup;
use azlin_arm::storage::StorageAccount;
use azlin_arm::{ArmClient, ArmError};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::warm_start;

/// What a collection's LIST returns, by lower-cased name.
#[derive(Debug)]
pub struct Snapshot<T> {
    items: BTreeMap<String, T>,
    /// The resource group does not exist (the LIST answered 404).
    pub group_missing: bool,
}

impl<T> Snapshot<T> {
    /// The snapshot of listed `items` (name, item) of an existing group.
    pub fn listed(items: Vec<(String, T)>) -> Self {
        Snapshot {
            items: items
                .into_iter()
                .map(|(n, i)| (n.to_ascii_lowercase(), i))
                .collect(),
            group_missing: false,
        }
    }

    /// The item named `name` (ARM names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&T> {
        self.items.get(&name.to_ascii_lowercase())
    }

    /// The items whose names start with `prefix` (compared case-insensitively), without
    /// visiting the others.
    pub fn starting_with(&self, prefix: &str) -> impl Iterator<Item = &T> {
        let prefix = prefix.to_ascii_lowercase();
        self.items
            .range(prefix.clone()..)
            .take_while(move |(name, _)| name.starts_with(&prefix))
            .map(|(_, item)| item)
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

    /// Pages per second a scarce provider budget lets this collection be listed at, when
    /// one applies (learned from the provider's answers).
    fn scarce_rate(_arm: &ArmClient, _group: &str) -> Option<f64> {
        None
    }

    /// The Resource Graph type (lower-case) whose rows can stand in for this collection's
    /// first LIST after a start ([`super::warm_start`]), if any.
    const GRAPH_TYPE: Option<&'static str> = None;

    /// The item (with its name) a Resource Graph row of [`Collection::GRAPH_TYPE`] stands
    /// for; `None` when the row cannot, and the snapshot must be listed from ARM.
    fn from_graph(_row: &Value) -> Option<(String, Self::Item)> {
        None
    }

    /// Whether the snapshot being replaced stays readable while its successor is listed,
    /// for readers it is fresh enough for. Worth it for small items whose lists are slow
    /// (a changed object at rest then does not wait behind another's refresh); otherwise
    /// the old snapshot is let go first, so a big collection is never held twice.
    const KEPT_WHILE_LISTING: bool = false;
}

fn named<P>(items: Vec<azlin_arm::Resource<P>>) -> Vec<(String, azlin_arm::Resource<P>)> {
    items
        .into_iter()
        .filter_map(|r| Some((r.name.clone()?, r)))
        .collect()
}

macro_rules! collection {
    (
        $(#[$doc:meta])* $ty:ident, $name:literal, $item:ty, |$arm:ident, $group:ident| $list:expr
        $(, graph $gtype:literal, |$row:ident| $from:expr)?
    ) => {
        $(#[$doc])*
        pub struct $ty;

        impl Collection for $ty {
            const NAME: &'static str = $name;
            type Item = $item;

            async fn list($arm: &ArmClient, $group: &str) -> Result<Vec<(String, $item)>, ArmError> {
                $list
            }

            $(
                const GRAPH_TYPE: Option<&'static str> = Some($gtype);

                fn from_graph($row: &Value) -> Option<(String, $item)> {
                    $from
                }
            )?
        }
    };
}

collection!(
    /// Resource groups of the subscription.
    Groups, "resourceGroups", ResourceGroup,
    |arm, _group| Ok(named(arm.resources().list(None).await?))
);
collection!(
    /// VMs of a group with their provisioning states (a low-cost read), each reduced to
    /// what plans decide on ([`vm_decided_only`]).
    VirtualMachines, "virtualMachines", VirtualMachineStatus,
    |arm, group| Ok(arm
        .compute()
        .virtual_machines(group)
        .list()
        .await?
        .into_iter()
        .map(|vm| VirtualMachineStatus::of(vm_decided_only(vm)))
        .filter_map(|v| Some((v.vm.name.clone()?, v)))
        .collect()),
    graph "microsoft.compute/virtualmachines", |row| {
        let v = VirtualMachineStatus::of(vm_decided_only(warm_start::decode(row)?));
        Some((v.vm.name.clone()?, v))
    }
);

/// `vm` without what no plan decides on: the fields beyond the typed ones, its OS profile
/// (SSH keys) and image. Thousands of VMs as ARM returns them would take most of the
/// operator's memory; an update reads the VM whole before it writes it back.
fn vm_decided_only(mut vm: VirtualMachine) -> VirtualMachine {
    vm.extra = Map::new();
    let p = &mut vm.properties;
    p.extra = Map::new();
    p.os_profile = None;
    if let Some(h) = &mut p.hardware_profile {
        h.extra = Map::new();
    }
    if let Some(n) = &mut p.network_profile {
        n.extra = Map::new();
    }
    if let Some(s) = &mut p.storage_profile {
        s.extra = Map::new();
        s.image_reference = None;
        if let Some(os) = &mut s.os_disk {
            os.extra = Map::new();
            if let Some(m) = &mut os.managed_disk {
                m.extra = Map::new();
            }
        }
        for d in &mut s.data_disks {
            d.extra = Map::new();
            if let Some(m) = &mut d.managed_disk {
                m.extra = Map::new();
            }
        }
    }
    vm
}

/// `nic` without the fields beyond the typed ones (an update reads the NIC whole first).
fn nic_decided_only(mut nic: NetworkInterface) -> NetworkInterface {
    nic.extra = Map::new();
    nic.properties.extra = Map::new();
    for c in &mut nic.properties.ip_configurations {
        c.extra = Map::new();
        c.properties.extra = Map::new();
    }
    nic
}

/// VMs of a group with their instance views (power states): Compute's high-cost read.
/// Each item keeps only what is decided on — the VM's name and `vmId`, its power and
/// provisioning states and the instance view's statuses — not a second copy of every VM
/// (the plain list's items carry the rest of what plans decide on).
pub struct VirtualMachineViews;

/// `status` reduced to what [`VirtualMachineViews`] keeps.
fn view_only(status: VirtualMachineStatus) -> VirtualMachineStatus {
    let VirtualMachineStatus {
        vm,
        power_state,
        provisioning_state,
    } = status;
    let statuses = vm
        .properties
        .instance_view
        .map(|v| v.statuses)
        .unwrap_or_default();
    VirtualMachineStatus {
        vm: azlin_arm::compute::VirtualMachine {
            name: vm.name,
            properties: azlin_arm::compute::VirtualMachineProperties {
                vm_id: vm.properties.vm_id,
                instance_view: Some(azlin_arm::compute::InstanceView {
                    statuses,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        },
        power_state,
        provisioning_state,
    }
}

impl Collection for VirtualMachineViews {
    const NAME: &'static str = "virtualMachines?$expand=instanceView";
    type Item = VirtualMachineStatus;

    async fn list(arm: &ArmClient, group: &str) -> Result<Vec<(String, Self::Item)>, ArmError> {
        Ok(arm
            .compute()
            .virtual_machines(group)
            .list_with_instance_view()
            .await?
            .into_iter()
            .map(view_only)
            .filter_map(|v| Some((v.vm.name.clone()?, v)))
            .collect())
    }

    fn scarce_rate(arm: &ArmClient, group: &str) -> Option<f64> {
        arm.compute()
            .virtual_machines(group)
            .list_with_instance_view_rate()
    }

    const GRAPH_TYPE: Option<&'static str> = Some("microsoft.compute/virtualmachines");

    /// Its items are a name, an id and a few statuses, and its pages are paced by Compute's
    /// high-cost budget: a VM changed at rest reads the old views rather than wait.
    const KEPT_WHILE_LISTING: bool = true;

    /// Resource Graph has the power state but not the statuses of a failed or ongoing
    /// provisioning (its error message): only a settled VM's view is told from a row.
    fn from_graph(row: &Value) -> Option<(String, Self::Item)> {
        let mut vm: VirtualMachine = warm_start::decode(row)?;
        let settled = vm
            .properties
            .provisioning_state
            .as_ref()
            .is_some_and(|p| p.state() == OperationState::Succeeded);
        if !settled {
            return None;
        }
        let status = |code: &str| InstanceViewStatus {
            code: code.to_string(),
            level: Some("Info".to_string()),
            ..Default::default()
        };
        vm.properties.instance_view = Some(InstanceView {
            statuses: vec![
                status("ProvisioningState/succeeded"),
                status(warm_start::power_state(row)?),
            ],
            ..Default::default()
        });
        let v = view_only(VirtualMachineStatus::of(vm));
        Some((v.vm.name.clone()?, v))
    }
}
collection!(
    /// Managed disks of a group. Disks are only ever patched (tags, size), never written
    /// back whole, so each item keeps its typed fields and `managedBy`, not the rest of what
    /// ARM returns.
    Disks, "disks", Disk,
    |arm, group| Ok(named(arm.compute().disks(group).list().await?)
        .into_iter()
        .map(|(name, disk)| (name, disk_decided_only(disk)))
        .collect()),
    graph "microsoft.compute/disks", |row| {
        let disk: Disk = warm_start::decode(row)?;
        Some((disk.name.clone()?, disk_decided_only(disk)))
    }
);

/// `disk` with its typed fields and `managedBy` only.
fn disk_decided_only(mut disk: Disk) -> Disk {
    disk.properties.extra = Map::new();
    disk.extra.retain(|k, _| k == "managedBy");
    disk
}
collection!(
    /// Network interfaces of a group, each reduced to its typed fields ([`nic_decided_only`]).
    NetworkInterfaces, "networkInterfaces", NetworkInterface,
    |arm, group| Ok(named(arm.network().interfaces(group).list().await?)
        .into_iter()
        .map(|(name, nic)| (name, nic_decided_only(nic)))
        .collect()),
    graph "microsoft.network/networkinterfaces", |row| {
        let nic: NetworkInterface = warm_start::decode(row)?;
        Some((nic.name.clone()?, nic_decided_only(nic)))
    }
);
collection!(
    /// Public IP addresses of a group, each reduced to its typed fields (only their tags
    /// are ever written, by PATCH).
    PublicIps, "publicIPAddresses", PublicIpAddress,
    |arm, group| Ok(named(arm.network().public_ips(group).list().await?)
        .into_iter()
        .map(|(name, pip)| (name, pip_decided_only(pip)))
        .collect()),
    graph "microsoft.network/publicipaddresses", |row| {
        let pip: PublicIpAddress = warm_start::decode(row)?;
        Some((pip.name.clone()?, pip_decided_only(pip)))
    }
);

/// `pip` with its typed fields only.
fn pip_decided_only(mut pip: PublicIpAddress) -> PublicIpAddress {
    pip.extra = Map::new();
    pip.properties.extra = Map::new();
    pip
}
collection!(
    /// Network security groups of a group.
    SecurityGroups, "networkSecurityGroups", NetworkSecurityGroup,
    |arm, group| Ok(named(arm.network().security_groups(group).list().await?))
);
collection!(
    /// Virtual networks of a group, with their subnets. Each subnet's read-only
    /// `ipConfigurations` (a reference to every NIC in it, thousands in a big group) is
    /// dropped: nothing decides on it, and every object observing the network would copy it.
    VirtualNetworks, "virtualNetworks", VirtualNetwork,
    |arm, group| Ok(named(arm.network().virtual_networks(group).list().await?)
        .into_iter()
        .map(|(name, mut vnet)| {
            for subnet in &mut vnet.properties.subnets {
                subnet.properties.extra.remove("ipConfigurations");
            }
            (name, vnet)
        })
        .collect())
);
collection!(
    /// Storage accounts of a group.
    StorageAccounts, "storageAccounts", StorageAccount,
    |arm, group| Ok(named(arm.storage().accounts(group).list().await?))
);

/// What a Resource Graph warm start of a group built.
struct Warmed {
    started: Instant,
    snapshots: HashMap<&'static str, Arc<dyn Any + Send + Sync>>,
}

/// A group's warm start: empty until tried.
type WarmCell = Arc<tokio::sync::Mutex<Option<Warmed>>>;

#[derive(Default)]
struct Slot {
    started: Option<Instant>,
    value: Option<Arc<dyn Any + Send + Sync>>,
}

/// A snapshot's slot, and (for [`Collection::KEPT_WHILE_LISTING`]) the snapshot it had,
/// readable without the slot's lock while the slot is being re-listed.
#[derive(Default)]
struct SlotCell {
    slot: tokio::sync::Mutex<Slot>,
    kept: Mutex<Option<(Instant, Arc<dyn Any + Send + Sync>)>>,
}

/// Whether a snapshot listed at `started` may serve a reader needing one taken after
/// `need`, snapshots living `max_age`.
fn fresh_enough(started: Instant, now: Instant, max_age: Duration, need: Option<Instant>) -> bool {
    now.saturating_duration_since(started) <= max_age && need.is_none_or(|n| started >= n)
}

type SlotKey = (String, String, &'static str);

/// How long a claim on writing a shared resource keeps other objects from writing it
/// (they wait for the claimant's write to show in the snapshots; a claimant that vanished
/// lets the next one write after this).
pub const SHARED_WRITE_HOLD: Duration = Duration::from_secs(30);

/// Share of the subscription's read refill an operator at rest may spend.
pub const AT_REST_READ_SHARE: f64 = 0.5;

/// How far apart refreshes of a snapshot of `pages` pages must be so they spend at most
/// [`AT_REST_READ_SHARE`] of a scarce budget that sustains `rate` pages per second.
pub fn scarce_spacing(pages: u64, rate: f64) -> Duration {
    let seconds = pages as f64 / (rate.max(0.000_1) * AT_REST_READ_SHARE);
    Duration::from_millis((seconds * 1000.0).round() as u64)
}

/// A snapshot, or how long until a fresh enough one may be listed.
#[derive(Debug)]
pub enum Paced<T> {
    /// Fresh enough for the object.
    Ready(T),
    /// None is fresh enough yet; the next may be listed after this long.
    NotBefore(Duration),
}

/// The resync interval for `reads_per_round` ARM reads per round: `base`, or longer when
/// those reads would take more than [`AT_REST_READ_SHARE`] of `reads_per_second` (the read
/// bucket's refill) over the interval.
pub fn adaptive_resync(base: Duration, reads_per_round: u64, reads_per_second: f64) -> Duration {
    let budget = reads_per_second.max(0.001) * AT_REST_READ_SHARE;
    base.max(Duration::from_secs_f64(reads_per_round as f64 / budget))
}

/// How far apart refreshes of scarce snapshot `key` must be: every snapshot of its kind in
/// its subscription (one per resource group) draws on the same budget, so together they
/// may spend at most [`AT_REST_READ_SHARE`] of it. Zero for a snapshot without one.
fn shared_scarce_spacing(scarce: &HashMap<SlotKey, (u64, f64)>, key: &SlotKey) -> Duration {
    if !scarce.contains_key(key) {
        return Duration::ZERO;
    }
    let (subscription, _, kind) = key;
    let (pages, rate) = scarce
        .iter()
        .filter(|((s, _, k), _)| s == subscription && k == kind)
        .fold((0, f64::INFINITY), |(pages, rate), (_, (p, r))| {
            (pages + p, rate.min(*r))
        });
    scarce_spacing(pages, rate)
}

/// The reads of one round in the subscription where it costs most.
fn reads_per_round(costs: &HashMap<SlotKey, u64>) -> u64 {
    let mut per_subscription: HashMap<&str, u64> = HashMap::new();
    for ((subscription, _, _), reads) in costs {
        *per_subscription.entry(subscription.as_str()).or_default() += reads;
    }
    per_subscription.into_values().max().unwrap_or(0)
}

/// The shared snapshots, and what each object needs to see.
pub struct Inventory {
    slots: Mutex<HashMap<SlotKey, Arc<SlotCell>>>,
    /// Reads the last LIST of each snapshot took (its pages).
    costs: Mutex<HashMap<SlotKey, u64>>,
    /// Snapshots charged to a scarce budget: their pages and the pages per second the
    /// budget sustains.
    scarce: Mutex<HashMap<SlotKey, (u64, f64)>>,
    /// Least spacing of any refresh: a round of them within half the read refill, once
    /// Azure reported the read budget.
    round: Mutex<Duration>,
    /// [`Inventory::resync_interval`], recomputed when a LIST's cost is recorded.
    resync: Mutex<Duration>,
    /// Shared resources being written: key → (object, when claimed).
    shared_writes: Mutex<HashMap<String, (String, Instant)>>,
    reads_per_second: f64,
    needs: Mutex<HashMap<String, Instant>>,
    /// Snapshots started before this are not reused (see [`Inventory::expire`]).
    floor: Mutex<Option<Instant>>,
    /// Resource Graph warm starts per (subscription, group), each tried once: when the
    /// query started and the snapshots it built that no object has taken yet.
    warm: Mutex<HashMap<(String, String), WarmCell>>,
    /// One warm start at a time: Resource Graph's quota is per identity, and a group's rows
    /// are held while they are converted.
    warm_gate: tokio::sync::Mutex<()>,
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
    /// Snapshots reused for up to `max_age` (the configured resync interval, lengthened by
    /// [`Inventory::resync_interval`]), refreshed at most every `min_interval`;
    /// `reads_per_second` is the subscription read bucket's refill.
    pub fn new(min_interval: Duration, max_age: Duration, reads_per_second: f64) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            costs: Mutex::new(HashMap::new()),
            scarce: Mutex::new(HashMap::new()),
            round: Mutex::new(Duration::ZERO),
            resync: Mutex::new(max_age),
            shared_writes: Mutex::new(HashMap::new()),
            reads_per_second,
            needs: Mutex::new(HashMap::new()),
            floor: Mutex::new(None),
            warm: Mutex::new(HashMap::new()),
            warm_gate: tokio::sync::Mutex::new(()),
            min_interval,
            max_age,
        }
    }

    /// ARM reads one round of refreshing every snapshot costs, in the subscription where it
    /// costs most.
    pub fn reads_per_round(&self) -> u64 {
        reads_per_round(&lock(&self.costs))
    }

    /// How long objects at rest wait between resyncs, and how long a snapshot is reused:
    /// the configured interval, or longer so a round stays within the read budget
    /// ([`adaptive_resync`]).
    pub fn resync_interval(&self) -> Duration {
        *lock(&self.resync)
    }

    /// Records what the last LIST of `key` cost (and, for a scarce budget sustaining
    /// `scarce_rate` pages per second, the spacing that follows) and the resync interval
    /// that follows: never shorter than a scarce snapshot's spacing. `read_rate` is the read
    /// budget's refill once Azure reported it.
    fn record_cost(
        &self,
        key: SlotKey,
        reads: u64,
        scarce_rate: Option<f64>,
        read_rate: Option<f64>,
    ) {
        let mut scarce = lock(&self.scarce);
        match scarce_rate {
            Some(rate) => scarce.insert(key.clone(), (reads, rate)),
            None => scarce.remove(&key),
        };
        let floor = scarce
            .keys()
            .map(|k| shared_scarce_spacing(&scarce, k))
            .max()
            .unwrap_or_default();
        drop(scarce);
        let mut costs = lock(&self.costs);
        costs.insert(key, reads);
        *lock(&self.round) = read_rate.map_or(Duration::ZERO, |rate| {
            scarce_spacing(reads_per_round(&costs), rate)
        });
        *lock(&self.resync) = adaptive_resync(
            self.max_age.max(floor),
            reads_per_round(&costs),
            self.reads_per_second,
        );
    }

    /// Least time between two refreshes of snapshot `key`.
    fn spacing(&self, key: &SlotKey) -> Duration {
        let scarce = shared_scarce_spacing(&lock(&self.scarce), key);
        self.min_interval.max(scarce).max(*lock(&self.round))
    }

    /// Another object's live claim on writing shared resource `key` (see
    /// [`Inventory::claim_shared_write`]), by that object's name.
    pub fn shared_write_holder(&self, key: &str, object: &str) -> Option<String> {
        let writes = lock(&self.shared_writes);
        let (holder, at) = writes.get(key)?;
        (holder != object && at.elapsed() < SHARED_WRITE_HOLD).then(|| holder.clone())
    }

    /// Claims the writes of shared resource `key` (e.g. one resource group's managed
    /// network) for `object`, so a hundred objects needing it make one write, not a hundred:
    /// false while another object's claim is younger than [`SHARED_WRITE_HOLD`].
    pub fn claim_shared_write(&self, key: &str, object: &str) -> bool {
        let mut writes = lock(&self.shared_writes);
        let now = Instant::now();
        writes.retain(|_, (_, at)| now.saturating_duration_since(*at) < SHARED_WRITE_HOLD);
        match writes.get(key) {
            Some((holder, _)) if holder != object => false,
            _ => {
                writes.insert(key.to_string(), (object.to_string(), now));
                true
            }
        }
    }

    /// From now on, `object` needs snapshots taken after this moment (it wrote, or waits for
    /// Azure to move on).
    pub fn needs_fresh(&self, object: &str) {
        let now = Instant::now();
        let max_age = self.resync_interval();
        let mut needs = lock(&self.needs);
        // A need older than `max_age` is implied by the age limit: forget it.
        if needs.len() >= 1024 && needs.len().is_power_of_two() {
            needs.retain(|_, at| now.saturating_duration_since(*at) < max_age);
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
    /// `object` may decide on — listing it again if none is fresh enough — or, when the next
    /// list is not due yet (refreshes are spaced), how long until then: the caller requeues
    /// instead of holding a worker.
    pub async fn get_paced<C: Collection>(
        &self,
        arm: &ArmClient,
        group: &str,
        object: &str,
    ) -> Result<Paced<Arc<Snapshot<C::Item>>>, ArmError> {
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
        let cell = Arc::clone(lock(&self.slots).entry(key.clone()).or_default());
        let max_age = self.resync_interval();
        let kept = lock(&cell.kept)
            .as_ref()
            .filter(|(started, _)| fresh_enough(*started, Instant::now(), max_age, need))
            .and_then(|(_, v)| Arc::clone(v).downcast::<Snapshot<C::Item>>().ok());
        if let Some(snapshot) = kept {
            return Ok(Paced::Ready(snapshot));
        }
        let mut slot = cell.slot.lock().await;
        let now = Instant::now();
        let usable = slot
            .started
            .is_some_and(|started| fresh_enough(started, now, max_age, need));
        if usable
            && let Some(snapshot) = slot
                .value
                .clone()
                .and_then(|v| v.downcast::<Snapshot<C::Item>>().ok())
        {
            return Ok(Paced::Ready(snapshot));
        }
        if let Some(started) = slot.started {
            let due = started + self.spacing(&key);
            if due > now {
                return Ok(Paced::NotBefore(due - now));
            }
        }
        // Readers of this snapshot wait for this list and get the new one: let the old one
        // go before the new one is built, so a big collection is not held twice (should the
        // list fail, the next reader lists again when it is due) — unless it is kept for
        // the readers it still serves.
        let old = slot.value.take();
        if C::KEPT_WHILE_LISTING {
            *lock(&cell.kept) = slot.started.zip(old);
        } else {
            drop(old);
        }
        if slot.started.is_none()
            && need.is_none()
            && C::GRAPH_TYPE.is_some()
            && let Some((started, snapshot)) = self.warmed::<C>(arm, &key).await
        {
            slot.started = Some(started);
            slot.value = Some(Arc::clone(&snapshot) as Arc<dyn Any + Send + Sync>);
            return Ok(Paced::Ready(snapshot));
        }
        let started = Instant::now();
        let reads_before = azlin_arm::pacing::reads_in_flow();
        let listed = C::list(arm, group).await;
        *lock(&cell.kept) = None;
        let reads = azlin_arm::pacing::reads_in_flow().saturating_sub(reads_before);
        self.record_cost(
            key,
            reads.max(1),
            C::scarce_rate(arm, group),
            arm.read_rate(),
        );
        let snapshot = match listed {
            Ok(items) => Snapshot::listed(items),
            Err(e) if e.is_not_found() => Snapshot {
                items: BTreeMap::new(),
                group_missing: true,
            },
            Err(e) => return Err(e),
        };
        let snapshot = Arc::new(snapshot);
        slot.started = Some(started);
        slot.value = Some(Arc::clone(&snapshot) as Arc<dyn Any + Send + Sync>);
        Ok(Paced::Ready(snapshot))
    }

    /// The first snapshot of `C` for `key`'s group from a Resource Graph warm start
    /// ([`warm_start`]): the group's query runs once, for every collection it can fill;
    /// `None` when it could not fill this one or its snapshot is older than snapshots live.
    async fn warmed<C: Collection>(
        &self,
        arm: &ArmClient,
        key: &SlotKey,
    ) -> Option<(Instant, Arc<Snapshot<C::Item>>)> {
        let (subscription, group, _) = key;
        let cell = Arc::clone(
            lock(&self.warm)
                .entry((subscription.clone(), group.clone()))
                .or_default(),
        );
        let mut warm = cell.lock().await;
        if warm.is_none() {
            let _one_at_a_time = self.warm_gate.lock().await;
            let started = Instant::now();
            let snapshots = match warm_start::fill(arm, group).await {
                Ok(snapshots) => snapshots,
                Err(e) => {
                    tracing::info!(group = %group, error = %e, "Resource Graph could not warm the snapshots; listing from ARM");
                    Vec::new()
                }
            };
            *warm = Some(Warmed {
                started,
                snapshots: snapshots.into_iter().collect(),
            });
        }
        let warmed = warm.as_mut()?;
        let snapshot = warmed.snapshots.remove(C::NAME)?;
        if warmed.started.elapsed() > self.resync_interval() {
            warmed.snapshots.clear();
            return None;
        }
        let snapshot = snapshot.downcast::<Snapshot<C::Item>>().ok()?;
        Some((warmed.started, snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_found_by_name_and_prefix_in_any_case() {
        let snapshot = Snapshot {
            items: ["ns-a-data-0", "ns-a-data-1", "ns-ab-data-0", "ns-a-os"]
                .into_iter()
                .map(|n| (n.to_string(), n.to_uppercase()))
                .collect(),
            group_missing: false,
        };
        assert_eq!(snapshot.get("NS-A-OS").map(String::as_str), Some("NS-A-OS"));
        let data: Vec<&String> = snapshot.starting_with("NS-A-data-").collect();
        assert_eq!(data, ["NS-A-DATA-0", "NS-A-DATA-1"]);
        assert_eq!(snapshot.starting_with("ns-b").count(), 0);
    }

    #[test]
    fn the_instance_view_list_keeps_only_what_is_decided_on() {
        let vm: azlin_arm::compute::VirtualMachine = serde_json::from_value(serde_json::json!({
            "name": "vm1", "location": "westus2", "tags": {"a": "b"},
            "properties": {
                "vmId": "0000-1", "provisioningState": "Succeeded",
                "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                "instanceView": {
                    "computerName": "vm1",
                    "statuses": [
                        {"code": "ProvisioningState/succeeded", "level": "Info"},
                        {"code": "PowerState/running", "level": "Info"}
                    ]
                }
            }
        }))
        .unwrap();
        let full = VirtualMachineStatus::of(vm);
        let kept = view_only(full.clone());
        assert_eq!(kept.power_state, full.power_state);
        assert_eq!(kept.provisioning_state, full.provisioning_state);
        assert_eq!(kept.vm.name.as_deref(), Some("vm1"));
        assert_eq!(kept.vm.properties.vm_id.as_deref(), Some("0000-1"));
        let view = kept.vm.properties.instance_view.as_ref().unwrap();
        assert_eq!(view.statuses.len(), 2);
        assert!(view.extra.is_empty());
        assert!(kept.vm.tags.is_empty() && kept.vm.properties.hardware_profile.is_none());
    }

    #[test]
    fn the_vm_and_nic_lists_keep_their_typed_fields_only() {
        let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
            "name": "vm1", "id": "/x/vm1", "location": "westus2", "tags": {"a": "b"},
            "zones": ["1"], "resources": [{"id": "/x/vm1/extensions/e"}],
            "properties": {
                "vmId": "0000-1", "provisioningState": "Succeeded",
                "hardwareProfile": {"vmSize": "Standard_D2s_v5", "vmSizeProperties": {}},
                "billingProfile": {"maxPrice": -1.0},
                "osProfile": {"computerName": "vm1", "adminUsername": "azureuser"},
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
                "networkProfile": {"networkInterfaces": [{"id": "/x/nic1"}]},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "exactVersion": "1"},
                    "osDisk": {"name": "os1", "createOption": "FromImage", "osType": "Linux",
                               "managedDisk": {"id": "/x/os1", "storageAccountType": "Premium_LRS"}},
                    "dataDisks": [{"lun": 0, "name": "d0", "createOption": "Empty",
                                   "diskSizeGB": 32, "caching": "None",
                                   "managedDisk": {"id": "/x/d0"}}]
                }
            }
        }))
        .unwrap();
        let kept = vm_decided_only(vm.clone());
        assert!(kept.extra.is_empty() && kept.properties.extra.is_empty());
        assert!(kept.properties.os_profile.is_none());
        let (p, q) = (&kept.properties, &vm.properties);
        assert_eq!(
            (&kept.name, &kept.id, &kept.tags, &kept.zones),
            (&vm.name, &vm.id, &vm.tags, &vm.zones)
        );
        assert_eq!(
            (&p.vm_id, &p.provisioning_state),
            (&q.vm_id, &q.provisioning_state)
        );
        assert_eq!(p.billing_profile, q.billing_profile);
        assert_eq!(
            p.hardware_profile.as_ref().unwrap().vm_size,
            "Standard_D2s_v5"
        );
        assert_eq!(
            p.network_profile.as_ref().unwrap().network_interfaces,
            q.network_profile.as_ref().unwrap().network_interfaces
        );
        let storage = p.storage_profile.as_ref().unwrap();
        assert!(storage.image_reference.is_none());
        let os = storage.os_disk.as_ref().unwrap();
        assert!(os.extra.is_empty());
        assert_eq!(
            os.managed_disk.as_ref().unwrap().id.as_deref(),
            Some("/x/os1")
        );
        let d = &storage.data_disks[0];
        assert_eq!(
            (d.lun, d.name.as_deref(), d.disk_size_gb),
            (0, Some("d0"), Some(32))
        );
        assert!(d.extra.is_empty());

        let nic: NetworkInterface = serde_json::from_value(serde_json::json!({
            "name": "nic1", "tags": {"a": "b"},
            "properties": {
                "enableAcceleratedNetworking": true,
                "ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "privateIPAddress": "10.0.0.4", "privateIPAddressVersion": "IPv4",
                    "publicIPAddress": {"id": "/x/pip1"}
                }}]
            }
        }))
        .unwrap();
        let kept = nic_decided_only(nic.clone());
        assert!(kept.properties.extra.is_empty());
        let c = &kept.properties.ip_configurations[0];
        assert!(c.properties.extra.is_empty());
        assert_eq!(c.properties.private_ip_address.as_deref(), Some("10.0.0.4"));
        assert_eq!(
            c.properties.public_ip_address,
            nic.properties.ip_configurations[0]
                .properties
                .public_ip_address
        );
        assert_eq!(kept.tags, nic.tags);
    }

    #[test]
    fn resync_stays_at_base_while_a_round_is_cheap() {
        let base = Duration::from_secs(300);
        // 40 reads a round against 25 reads/s: far below half the refill over 300 s.
        assert_eq!(adaptive_resync(base, 40, 25.0), base);
    }

    #[test]
    fn resync_grows_so_a_round_takes_at_most_half_the_read_refill() {
        let base = Duration::from_secs(300);
        // 10,000 reads at 12.5 reads/s (half of 25) need 800 s.
        assert_eq!(
            adaptive_resync(base, 10_000, 25.0),
            Duration::from_secs(800)
        );
        // Exactly at the share: unchanged.
        assert_eq!(adaptive_resync(base, 3750, 25.0), base);
    }

    #[test]
    fn one_object_writes_a_shared_resource_at_a_time() {
        let inventory = Inventory::new(Duration::ZERO, Duration::from_secs(300), 25.0);
        assert!(inventory.claim_shared_write("s/rg/westus2", "AzlinVM:ns/a"));
        assert!(!inventory.claim_shared_write("s/rg/westus2", "AzlinVM:ns/b"));
        assert!(inventory.claim_shared_write("s/rg/westus2", "AzlinVM:ns/a"));
        assert!(inventory.claim_shared_write("s/other/westus2", "AzlinVM:ns/b"));
        assert_eq!(
            inventory
                .shared_write_holder("s/rg/westus2", "AzlinVM:ns/b")
                .as_deref(),
            Some("AzlinVM:ns/a")
        );
        assert_eq!(
            inventory.shared_write_holder("s/rg/westus2", "AzlinVM:ns/a"),
            None
        );
    }

    #[test]
    fn reads_per_round_is_the_costliest_subscription() {
        let inventory = Inventory::new(Duration::ZERO, Duration::from_secs(300), 25.0);
        inventory.record_cost(
            ("s1".into(), "g1".into(), "virtualMachines"),
            10,
            None,
            None,
        );
        inventory.record_cost(("s1".into(), "g2".into(), "virtualMachines"), 5, None, None);
        inventory.record_cost(
            ("s2".into(), "g1".into(), "virtualMachines"),
            12,
            None,
            None,
        );
        assert_eq!(inventory.reads_per_round(), 15);
        assert_eq!(inventory.resync_interval(), Duration::from_secs(300));
        inventory.record_cost(("s2".into(), "g2".into(), "disks"), 10_000, None, None);
        assert_eq!(
            inventory.resync_interval(),
            Duration::from_secs_f64(10_012.0 / 12.5)
        );
    }

    #[test]
    fn scarce_snapshots_are_spaced_to_half_their_budget_and_bound_the_resync() {
        let inventory = Inventory::new(Duration::from_millis(20), Duration::from_secs(300), 25.0);
        let views: SlotKey = ("s".into(), "g".into(), VirtualMachineViews::NAME);
        // Compute's HighCostGet30Min: 800 per 1800 s. Ten pages at half of that: 45 s.
        let rate = 800.0 / 1800.0;
        inventory.record_cost(views.clone(), 10, Some(rate), None);
        assert_eq!(inventory.spacing(&views), Duration::from_secs(45));
        assert_eq!(inventory.resync_interval(), Duration::from_secs(300));
        // A hundred pages (10,000 VMs): 450 s apart, and objects at rest wait as long.
        inventory.record_cost(views.clone(), 100, Some(rate), None);
        assert_eq!(inventory.spacing(&views), Duration::from_secs(450));
        assert_eq!(inventory.resync_interval(), Duration::from_secs(450));
        // Ten groups of 1000 VMs draw on the same budget: 100 pages, each group's list 450 s
        // apart.
        for g in 1..10 {
            let other: SlotKey = ("s".into(), format!("g{g}"), VirtualMachineViews::NAME);
            inventory.record_cost(other, 10, Some(rate), None);
        }
        inventory.record_cost(views.clone(), 10, Some(rate), None);
        assert_eq!(inventory.spacing(&views), Duration::from_secs(450));
        assert_eq!(inventory.resync_interval(), Duration::from_secs(450));
        // Another subscription has a budget of its own.
        let elsewhere: SlotKey = ("t".into(), "g".into(), VirtualMachineViews::NAME);
        inventory.record_cost(elsewhere.clone(), 10, Some(rate), None);
        assert_eq!(inventory.spacing(&elsewhere), Duration::from_secs(45));
        // Without a scarce budget (none answered): the ordinary spacing.
        let inventory = Inventory::new(Duration::from_millis(20), Duration::from_secs(300), 25.0);
        inventory.record_cost(views.clone(), 100, None, None);
        assert_eq!(inventory.spacing(&views), Duration::from_millis(20));
        assert_eq!(inventory.resync_interval(), Duration::from_secs(300));
    }

    #[test]
    fn refreshes_are_spaced_to_half_the_read_refill_once_azure_reports_it() {
        let inventory = Inventory::new(Duration::from_millis(20), Duration::from_secs(300), 25.0);
        let nics: SlotKey = ("s".into(), "g".into(), NetworkInterfaces::NAME);
        let vms: SlotKey = ("s".into(), "g".into(), VirtualMachines::NAME);
        // No read budget reported (budgets off): refresh as often as needed.
        inventory.record_cost(nics.clone(), 10, None, None);
        assert_eq!(inventory.spacing(&nics), Duration::from_millis(20));
        // 25 reads per second reported: a round of 25 pages at most every 2 s.
        inventory.record_cost(vms.clone(), 15, None, Some(25.0));
        assert_eq!(inventory.spacing(&nics), Duration::from_secs(2));
        assert_eq!(inventory.spacing(&vms), Duration::from_secs(2));
    }

    /// A collection whose lists wait for [`GATE`] and return `[n]`, `n` counting lists.
    struct Gated;
    static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
    static LISTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl Collection for Gated {
        const NAME: &'static str = "gated";
        type Item = usize;
        const KEPT_WHILE_LISTING: bool = true;

        async fn list(_arm: &ArmClient, _group: &str) -> Result<Vec<(String, usize)>, ArmError> {
            let n = LISTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            GATE.acquire().await.expect("gate open").forget();
            Ok(vec![(n.to_string(), n)])
        }
    }

    fn only(paced: Paced<Arc<Snapshot<usize>>>) -> usize {
        match paced {
            Paced::Ready(s) => *s.items.values().next().expect("one item"),
            Paced::NotBefore(d) => panic!("not listed, due in {d:?}"),
        }
    }

    #[tokio::test]
    async fn a_reader_at_rest_reads_a_kept_snapshot_while_another_reader_relists_it() {
        let config =
            azlin_arm::ArmConfig::for_emulator("http://127.0.0.1:9/", "s", "t").expect("config");
        let arm = ArmClient::new(config).expect("client");
        let inventory = Arc::new(Inventory::new(
            Duration::ZERO,
            Duration::from_secs(300),
            25.0,
        ));
        GATE.add_permits(1);
        let first = inventory.get_paced::<Gated>(&arm, "g", "at-rest").await;
        assert_eq!(only(first.expect("first list")), 1);

        // "changed" wrote: it needs a newer snapshot, and its list waits at the gate.
        inventory.needs_fresh("changed");
        let relist = tokio::spawn({
            let (inventory, arm) = (Arc::clone(&inventory), arm.clone());
            async move { inventory.get_paced::<Gated>(&arm, "g", "changed").await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while LISTS.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the second list never started");
            tokio::task::yield_now().await;
        }

        // Meanwhile the object at rest is served the old snapshot without waiting.
        let during = tokio::time::timeout(
            Duration::from_secs(5),
            inventory.get_paced::<Gated>(&arm, "g", "at-rest"),
        )
        .await
        .expect("a reader at rest does not wait for the refresh");
        assert_eq!(only(during.expect("kept snapshot")), 1);

        GATE.add_permits(1);
        let relisted = relist.await.expect("task").expect("second list");
        assert_eq!(only(relisted), 2);
        // Once listed, the new snapshot serves everyone and the old one is let go.
        let after = inventory.get_paced::<Gated>(&arm, "g", "at-rest").await;
        assert_eq!(only(after.expect("new snapshot")), 2);
        assert_eq!(LISTS.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
