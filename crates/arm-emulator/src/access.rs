//! Network access the emulated Azure would allow: may a VM reach a storage account's NFS
//! endpoint, given the VM's subnets, their `Microsoft.Storage` service endpoints and the
//! account's `networkAcls`? The guest/mount path of `local` and the tests ask this before
//! "mounting", so cross-resource-group and cross-region set-ups fail as they do in Azure.

use std::net::IpAddr;

use serde_json::Value;

use super::compute::VIRTUAL_MACHINE;
use super::context::Shared;
use super::network::{self, NIC};
use super::state::{Entry, Store};
use super::storage::STORAGE_ACCOUNT;
use super::validation::same;

/// Why a VM may not mount a storage account's NFS shares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NfsAccessError {
    /// No VM has this resource id or private IP address.
    #[error("no virtual machine with id or private IP address '{0}'")]
    VmNotFound(String),
    /// Several VMs hold this private IP address (in different virtual networks).
    #[error("private IP address '{0}' is held by more than one virtual machine")]
    AmbiguousAddress(String),
    /// No storage account has this name.
    #[error("no storage account named '{0}'")]
    AccountNotFound(String),
    /// The account exists but Azure's network rules refuse the VM.
    #[error("NFS access denied: {reason}")]
    Denied {
        /// What blocks the access, naming the subnet, account and rule.
        reason: String,
    },
}

fn denied(reason: String) -> NfsAccessError {
    NfsAccessError::Denied { reason }
}

/// The VM with this id, or whose NIC holds this private IP address (as allocated, not the
/// `--vm-address` override; it must name exactly one VM).
fn find_vm<'s>(store: &'s Store, vm: &str) -> Result<&'s Entry, NfsAccessError> {
    let not_found = || NfsAccessError::VmNotFound(vm.to_string());
    if vm.starts_with('/') {
        return store
            .get(vm)
            .filter(|e| same(&e.kind, VIRTUAL_MACHINE.type_name))
            .ok_or_else(not_found);
    }
    let ip: IpAddr = vm.parse().map_err(|_| not_found())?;
    let ip = ip.to_string();
    let holders: Vec<&Entry> = store
        .of_kind(NIC.type_name)
        .filter(|nic| {
            nic.body
                .pointer("/properties/ipConfigurations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.pointer("/properties/privateIPAddress")
                        .and_then(Value::as_str)
                        == Some(ip.as_str())
                })
        })
        .filter_map(|nic| store.get(nic.str_at("/properties/virtualMachine/id")?))
        .collect();
    match holders.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found()),
        _ => Err(NfsAccessError::AmbiguousAddress(vm.to_string())),
    }
}

/// Subnet ids of every ip configuration of every NIC of a VM.
fn vm_subnets(store: &Store, vm: &Entry) -> Vec<String> {
    vm.body
        .pointer("/properties/networkProfile/networkInterfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("id").and_then(Value::as_str))
        .filter_map(|nic| store.get(nic))
        .flat_map(|nic| {
            nic.body
                .pointer("/properties/ipConfigurations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.pointer("/properties/subnet/id").and_then(Value::as_str))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether the subnet has a `Microsoft.Storage` service endpoint covering `region`
/// (`Microsoft.Storage.Global` covers every region).
fn endpoint_covers(store: &Store, subnet: &Entry, region: &str) -> bool {
    let vnet_location = network::SUBNET
        .parent_id(&subnet.id)
        .and_then(|v| store.get(&v))
        .and_then(|v| v.str_at("/location"))
        .unwrap_or_default()
        .to_string();
    subnet
        .body
        .pointer("/properties/serviceEndpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|ep| {
            let service = ep
                .get("service")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if same(service, "Microsoft.Storage.Global") {
                return true;
            }
            if !same(service, "Microsoft.Storage") {
                return false;
            }
            let locations: Vec<String> = match ep.get("locations").and_then(Value::as_array) {
                Some(l) if !l.is_empty() => l
                    .iter()
                    .filter_map(Value::as_str)
                    .map(super::catalog::normalize_location)
                    .collect(),
                _ => network::service_endpoint_locations(service, &vnet_location),
            };
            locations.iter().any(|l| l == "*" || l == region)
        })
}

/// Decides whether VM `vm` (resource id or private IP) may mount NFS shares of storage account
/// `account`, from the emulator's state, as Azure's network rules would:
/// - the account must be a Premium `FileStorage` account that finished provisioning, with
///   `publicNetworkAccess` not `Disabled` (private endpoints are not emulated);
/// - its public endpoint must be restricted (`networkAcls.defaultAction: Deny`): Azure serves
///   NFS 4.1 only to selected virtual networks or private endpoints;
/// - one of the VM's subnets must be listed in `networkAcls.virtualNetworkRules` (action Allow)
///   and have a `Microsoft.Storage` service endpoint covering the account's region (the
///   virtual network's region and its pair, unless `locations` says otherwise) or
///   `Microsoft.Storage.Global`.
pub fn nfs_access(shared: &Shared, vm: &str, account: &str) -> Result<(), NfsAccessError> {
    let store = shared.store();
    let vm_entry = find_vm(&store, vm)?;
    let acct = store
        .of_kind(STORAGE_ACCOUNT.type_name)
        .find(|e| e.str_at("/name").is_some_and(|n| same(n, account)))
        .ok_or_else(|| NfsAccessError::AccountNotFound(account.to_string()))?;
    let name = acct.str_at("/name").unwrap_or(account);
    let region = acct.str_at("/location").unwrap_or_default();
    let file_storage = acct.str_at("/kind").is_some_and(|k| same(k, "FileStorage"));
    let premium = acct
        .str_at("/sku/name")
        .is_some_and(|s| s.starts_with("Premium"));
    if !(file_storage && premium) {
        return Err(denied(format!(
            "storage account {name} is not a Premium FileStorage account and serves no NFS 4.1 shares"
        )));
    }
    if acct.str_at("/properties/provisioningState") != Some("Succeeded") {
        return Err(denied(format!(
            "storage account {name} is still being provisioned"
        )));
    }
    if acct
        .str_at("/properties/publicNetworkAccess")
        .is_some_and(|p| same(p, "Disabled"))
    {
        return Err(denied(format!(
            "storage account {name} has publicNetworkAccess Disabled and the emulator has no private endpoints"
        )));
    }
    let default_action = acct
        .str_at("/properties/networkAcls/defaultAction")
        .unwrap_or("Allow");
    if !same(default_action, "Deny") {
        return Err(denied(format!(
            "storage account {name} allows all networks (networkAcls.defaultAction {default_action}); Azure serves NFS 4.1 shares only to selected virtual networks: set defaultAction Deny and add the VM's subnet to virtualNetworkRules"
        )));
    }
    let allowed: Vec<&str> = acct
        .body
        .pointer("/properties/networkAcls/virtualNetworkRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.get("action")
                .and_then(Value::as_str)
                .is_none_or(|a| same(a, "Allow"))
        })
        .filter_map(|r| r.get("id").and_then(Value::as_str))
        .collect();
    let subnets = vm_subnets(&store, vm_entry);
    let vm_name = vm_entry.str_at("/name").unwrap_or(vm);
    let mut reasons = Vec::new();
    for subnet_id in &subnets {
        if !allowed.iter().any(|a| same(a, subnet_id)) {
            reasons.push(format!(
                "subnet {subnet_id} of VM {vm_name} is not in the virtualNetworkRules of storage account {name}"
            ));
            continue;
        }
        match store.get(subnet_id) {
            Some(subnet) if endpoint_covers(&store, subnet, region) => return Ok(()),
            Some(_) => reasons.push(format!(
                "subnet {subnet_id} has no Microsoft.Storage service endpoint covering region {region} of storage account {name}"
            )),
            None => reasons.push(format!("subnet {subnet_id} does not exist")),
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("VM {vm_name} has no network interface in a subnet"));
    }
    Err(denied(reasons.join("; ")))
}
