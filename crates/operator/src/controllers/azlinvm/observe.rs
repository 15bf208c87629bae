//! What an AzlinVM reconcile reads: its key Secret, its mounts (from the shared caches), the
//! resource group and network, and the VM's public IP, NIC, VM (with instance view) and —
//! when sizes matter — disks. Reads stop early where nothing further can exist (no resource
//! group: nothing in it), and resources the spec cannot involve are not read.

use std::collections::BTreeMap;

use azlin_arm::compute::{Disk, VirtualMachineStatus};
use azlin_arm::network::{NetworkInterface, PublicIpAddress};
use azlin_arm::{ArmClient, ResourceId};
use kube::ResourceExt;

use super::build::VmNames;
use super::mounts::{self, DesiredMount};
use super::restore;
use super::sshkey::{self, KeyState};
use crate::api::AzlinVM;
use crate::infra::inventory::{
    Disks, Groups, NetworkInterfaces, Paced, PublicIps, VirtualMachineViews, VirtualMachines,
    VirtualNetworks,
};
use crate::infra::network::{self, Site};
use crate::reconcile::ownership::Owner;
use crate::reconcile::{Cx, Error};
use crate::ssh::nfs::env_file;

/// Kind name (metrics label, recorder).
pub const KIND: &str = "AzlinVM";

/// The network a VM's NIC lives in, as observed.
#[derive(Clone, Debug)]
pub enum Net {
    /// The operator-managed network of the VM's resource group and region.
    Managed(Box<network::Observed>),
    /// An existing subnet named by `spec.network.subnetId`.
    Custom {
        /// Its id.
        subnet_id: String,
        /// Whether it exists.
        exists: bool,
        /// Whether the VM's resource group exists.
        group: bool,
    },
    /// `spec.network.subnetId` is not an ARM subnet id.
    BadSubnetId(String),
}

impl Net {
    /// Whether the VM's resource group exists.
    pub fn group_exists(&self) -> bool {
        match self {
            Net::Managed(o) => o.group,
            Net::Custom { group, .. } => *group,
            Net::BadSubnetId(_) => false,
        }
    }
}

/// What a reconcile found.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Deterministic Azure names.
    pub names: VmNames,
    /// Owner identity (tags).
    pub owner: Owner,
    /// Resource group and region.
    pub site: Site,
    /// Ids of the managed subnet and NSG.
    pub managed_subnet_id: String,
    /// Id of the managed NSG.
    pub nsg_id: String,
    /// Id the NIC has (or will have).
    pub nic_id: String,
    /// Id the public IP has (or will have).
    pub pip_id: String,
    /// The admin key (not read while deleting).
    pub key: Option<KeyState>,
    /// Wanted mounts (not resolved while deleting).
    pub mounts: Vec<DesiredMount>,
    /// Content of the environment file of the controlling Fleet (`None`: no file).
    pub env: Option<String>,
    /// Resource group and network (read while the VM is kept).
    pub net: Option<Net>,
    /// Whether the resource group exists (known from `net`, or read while deleting).
    pub group: bool,
    /// The public IP, when it exists (read only when it may exist).
    pub pip: Option<PublicIpAddress>,
    /// The NIC.
    pub nic: Option<NetworkInterface>,
    /// The VM: from the plain VM list, with its instance view (power state) from the list
    /// with instance views once it provisioned or failed.
    pub vm: Option<VirtualMachineStatus>,
    /// The VM provisioned or failed, but no list with instance views fresh enough was
    /// taken yet: the next may be taken after this long (these lists are spaced to stay
    /// within Compute's high-cost read budget and the subscription's read budget).
    pub view_due: Option<std::time::Duration>,
    /// Disks of the VM by name, read once the VM is provisioned and while deleting: the OS
    /// disk and every disk named like one of its data disks (`<vm>-data-<lun>`), attached
    /// or not.
    pub disks: BTreeMap<String, Disk>,
    /// Another AzlinVM (`namespace/name`), created earlier, whose Azure names are this
    /// one's (e.g. `a/b-c` and `a-b/c` both map to VM `a-b-c`) in the same resource group.
    pub rival: Option<String>,
    /// What restoring the VM from a Backup needs (`spec.restoreFrom`, until it is created).
    pub restore: Option<restore::Observed>,
}

/// The names of the data disks to consider: the spec's LUNs plus those attached to the VM.
pub fn data_disk_names(
    vm: &AzlinVM,
    names: &VmNames,
    seen: Option<&VirtualMachineStatus>,
) -> Vec<String> {
    let mut out: Vec<String> = vm
        .spec
        .data_disks
        .iter()
        .map(|d| names.data_disk(d.lun))
        .collect();
    let attached = seen
        .and_then(|v| v.vm.properties.storage_profile.as_ref())
        .map(|s| {
            s.data_disks
                .iter()
                .filter_map(|d| d.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for a in attached {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Adds to `vm`, read from the plain list, the power state and instance view of `view`, read
/// from the list with instance views, when it is the same VM (same `vmId`).
pub fn with_view(vm: &mut VirtualMachineStatus, view: Option<&VirtualMachineStatus>) {
    let Some(view) = view.filter(|v| v.vm.properties.vm_id == vm.vm.properties.vm_id) else {
        return;
    };
    vm.power_state = view.power_state;
    vm.vm.properties.instance_view = view.vm.properties.instance_view.clone();
}

/// The VM's provisioning state (ARM omits it on some reads: then it is settled).
pub fn provisioning(vm: &VirtualMachineStatus) -> azlin_arm::OperationState {
    vm.provisioning_state
        .clone()
        .unwrap_or(azlin_arm::OperationState::Succeeded)
}

/// Whether a subnet named by `spec.network.subnetId` exists: from the shared snapshot of
/// its resource group's virtual networks when it is in the operator's subscription, else
/// by reading it.
async fn custom_subnet_exists(
    cx: &Cx<'_>,
    arm: &ArmClient,
    id: &ResourceId,
) -> Result<bool, Error> {
    let vnet = id.parent();
    let in_snapshot = match (&vnet, id.resource_group_name()) {
        (Some(vnet), Some(group))
            if id
                .subscription_id()
                .eq_ignore_ascii_case(arm.subscription_id())
                && id
                    .resource_type()
                    .eq_ignore_ascii_case("Microsoft.Network/virtualNetworks/subnets") =>
        {
            Some((vnet.name().to_string(), group.to_string()))
        }
        _ => None,
    };
    let Some((vnet, group)) = in_snapshot else {
        return Ok(arm.get_by_id::<serde_json::Value>(id).await?.is_some());
    };
    Ok(cx
        .list::<VirtualNetworks>(arm, &group)
        .await?
        .get(&vnet)
        .is_some_and(|v| {
            v.properties.subnets.iter().any(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(id.name()))
            })
        }))
}

/// Reads everything a plan for `vm` needs.
pub async fn observe(vm: &AzlinVM, cx: &Cx<'_>) -> Result<Observed, Error> {
    let deleting = cx.deleting;
    let (arm, identity) = cx.arm_and_identity()?;
    let ns = &cx.namespace;
    let name = vm.name_any();
    let names = VmNames::new(ns, &name);
    let site = Site::new(&vm.spec.resource_group, &vm.spec.location);
    let rg = &vm.spec.resource_group;
    let net_ops = arm.network();
    let mut seen = Observed {
        owner: Owner {
            kind: KIND.to_string(),
            namespace: ns.clone(),
            name,
            uid: vm.uid().unwrap_or_default(),
            identity: Some(identity.identity),
        },
        managed_subnet_id: site.subnet_id(&arm),
        nsg_id: site.nsg_id(&arm),
        nic_id: net_ops.interfaces(rg).id(&names.nic).to_string(),
        pip_id: net_ops.public_ips(rg).id(&names.pip).to_string(),
        key: None,
        mounts: Vec::new(),
        env: None,
        net: None,
        group: false,
        pip: None,
        nic: None,
        vm: None,
        disks: BTreeMap::new(),
        restore: None,
        rival: None,
        view_due: None,
        site,
        names,
    };
    if deleting {
        seen.group = cx.list::<Groups>(&arm, rg).await?.get(rg).is_some();
    } else {
        seen.key = Some(sshkey::read_key(&cx.ctx.client, vm).await?);
        let caches = &cx.ctx.caches;
        seen.mounts = mounts::resolve(&caches.storages, &caches.fleets, ns, vm);
        seen.env = mounts::owning_fleet(&caches.fleets, ns, vm)
            .filter(|f| !f.spec.env.is_empty())
            .map(|f| env_file(&f.name_any(), &f.spec.env));
        let net = match &vm.spec.network {
            None => Net::Managed(Box::new(network::observe(cx, &arm, &seen.site).await?)),
            Some(n) => match ResourceId::parse(&n.subnet_id) {
                Err(e) => Net::BadSubnetId(e.to_string()),
                Ok(id) => Net::Custom {
                    subnet_id: n.subnet_id.clone(),
                    exists: custom_subnet_exists(cx, &arm, &id).await?,
                    group: cx.list::<Groups>(&arm, rg).await?.get(rg).is_some(),
                },
            },
        };
        let vm_subnet = match &net {
            Net::Custom { subnet_id, .. } => subnet_id.clone(),
            _ => seen.managed_subnet_id.clone(),
        };
        mounts::check_network(&mut seen.mounts, &caches.storages, ns, &vm_subnet, |s| {
            Site {
                resource_group: s.spec.resource_group.clone(),
                location: s.spec.location.clone(),
            }
            .subnet_id(&arm)
        });
        seen.group = net.group_exists();
        seen.net = Some(net);
        seen.restore = restore::observe(vm, cx, &seen.names, seen.group).await?;
        seen.rival = rival(&cx.ctx.caches.vms, vm, &seen.names);
    }
    if !seen.group {
        return Ok(seen);
    }
    seen.nic = cx
        .list::<NetworkInterfaces>(&arm, rg)
        .await?
        .get(&seen.names.nic)
        .cloned();
    let nic_has_pip = seen.nic.as_ref().is_some_and(|n| {
        n.properties
            .ip_configurations
            .iter()
            .any(|c| c.properties.public_ip_address.is_some())
    });
    let had_pip = vm.status.as_ref().is_some_and(|s| s.public_ip.is_some());
    if vm.spec.public_ip || nic_has_pip || had_pip || deleting {
        seen.pip = cx
            .list::<PublicIps>(&arm, rg)
            .await?
            .get(&seen.names.pip)
            .cloned();
    }
    seen.vm = cx
        .list::<VirtualMachines>(&arm, rg)
        .await?
        .get(&seen.names.vm)
        .cloned();
    let provisioned = seen
        .vm
        .as_ref()
        .is_some_and(|v| provisioning(v) == azlin_arm::OperationState::Succeeded);
    let settled = seen
        .vm
        .as_ref()
        .is_some_and(|v| provisioning(v).is_terminal());
    if settled && !deleting {
        match cx.list_paced::<VirtualMachineViews>(&arm, rg).await? {
            Paced::Ready(views) => {
                if let Some(vm) = &mut seen.vm {
                    with_view(vm, views.get(&seen.names.vm));
                }
            }
            Paced::NotBefore(due) => seen.view_due = Some(due),
        }
    }
    if deleting || provisioned {
        let disks = cx.list::<Disks>(&arm, rg).await?;
        let mut wanted = vec![seen.names.os_disk.clone()];
        wanted.extend(data_disk_names(vm, &seen.names, seen.vm.as_ref()));
        for d in wanted {
            if let Some(disk) = disks.get(&d) {
                seen.disks.insert(d, disk.clone());
            }
        }
        // Data disks detached from the VM (removed from the spec) keep their names.
        for disk in disks.starting_with(&format!("{}-data-", seen.names.vm)) {
            if let Some(name) = &disk.name
                && !seen.disks.keys().any(|k| k.eq_ignore_ascii_case(name))
            {
                seen.disks.insert(name.clone(), disk.clone());
            }
        }
    }
    Ok(seen)
}

/// The earliest-created other valid AzlinVM of the cache whose Azure VM name and resource
/// group are `vm`'s, when it was created before `vm` (ties broken by `namespace/name`).
pub fn rival(
    store: &kube::runtime::reflector::Store<crate::reconcile::caches::Guarded<AzlinVM>>,
    vm: &AzlinVM,
    names: &VmNames,
) -> Option<String> {
    let (my_ns, my_name) = (
        vm.metadata.namespace.as_deref().unwrap_or_default(),
        vm.metadata.name.as_deref().unwrap_or_default(),
    );
    let me = (
        vm.metadata.creation_timestamp.clone(),
        format!("{my_ns}/{my_name}"),
    );
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter_map(|other| {
            let ns = other.metadata.namespace.as_deref()?;
            let name = other.metadata.name.as_deref()?;
            if (ns, name) == (my_ns, my_name)
                || !other
                    .spec
                    .resource_group
                    .eq_ignore_ascii_case(&vm.spec.resource_group)
                || !crate::infra::naming::is_vm_name(&names.vm, ns, name)
            {
                return None;
            }
            let key = (
                other.metadata.creation_timestamp.clone(),
                format!("{ns}/{name}"),
            );
            older(&key, &me).then_some(key)
        })
        .min_by(|a, b| {
            if older(a, b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
        .map(|(_, n)| n)
}

type Age = (
    Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    String,
);

/// Whether `a` was created before `b` (an unknown time counts as the latest).
fn older(a: &Age, b: &Age) -> bool {
    match (&a.0, &b.0) {
        (Some(x), Some(y)) if x.0 != y.0 => x.0 < y.0,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        _ => a.1 < b.1,
    }
}
