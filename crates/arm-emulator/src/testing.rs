//! Test support shared by the emulator's and other areas' tests: resource ids and minimal
//! valid ARM bodies for every emulated type.

use serde_json::{Value, json};

/// A subscription id for tests (the emulator accepts any).
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000a21c";
/// Region used by the helpers.
pub const LOCATION: &str = "westus2";
/// api-version of resource groups.
pub const RG_API: &str = "2021-04-01";
/// api-version of virtual machines.
pub const VM_API: &str = "2024-11-01";
/// api-version of disks and snapshots.
pub const DISK_API: &str = "2024-03-02";
/// api-version of Microsoft.Network.
pub const NETWORK_API: &str = "2024-05-01";
/// api-version of Microsoft.Storage.
pub const STORAGE_API: &str = "2023-05-01";
/// A syntactically valid SSH public key.
pub const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz8oZ0qRyPZ3N4g0m3QYH2q2x0y1fQmQ3e0E3o5l0pX azlin@test";

/// `/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}`
pub fn rg_id(rg: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}")
}

/// Id of a provider resource in a resource group, e.g. `("Microsoft.Compute/virtualMachines", "vm1")`.
pub fn resource_id(rg: &str, type_path: &str, name: &str) -> String {
    format!("{}/providers/{type_path}/{name}", rg_id(rg))
}

/// VM id.
pub fn vm_id(rg: &str, name: &str) -> String {
    resource_id(rg, "Microsoft.Compute/virtualMachines", name)
}

/// NIC id.
pub fn nic_id(rg: &str, name: &str) -> String {
    resource_id(rg, "Microsoft.Network/networkInterfaces", name)
}

/// Virtual network id.
pub fn vnet_id(rg: &str, name: &str) -> String {
    resource_id(rg, "Microsoft.Network/virtualNetworks", name)
}

/// Subnet id.
pub fn subnet_id(rg: &str, vnet: &str, subnet: &str) -> String {
    format!("{}/subnets/{subnet}", vnet_id(rg, vnet))
}

/// Storage account id.
pub fn account_id(rg: &str, name: &str) -> String {
    resource_id(rg, "Microsoft.Storage/storageAccounts", name)
}

/// File share id.
pub fn share_id(rg: &str, account: &str, share: &str) -> String {
    format!(
        "{}/fileServices/default/shares/{share}",
        account_id(rg, account)
    )
}

/// Resource group body.
pub fn rg_body() -> Value {
    json!({ "location": LOCATION, "tags": { "managed-by": "azlin" } })
}

/// Virtual network `10.0.0.0/16` with subnet `default` `10.0.0.0/20` (service endpoint Microsoft.Storage).
pub fn vnet_body() -> Value {
    json!({
        "location": LOCATION,
        "properties": {
            "addressSpace": { "addressPrefixes": ["10.0.0.0/16"] },
            "subnets": [{
                "name": "default",
                "properties": {
                    "addressPrefix": "10.0.0.0/20",
                    "serviceEndpoints": [{ "service": "Microsoft.Storage" }]
                }
            }]
        }
    })
}

/// NIC in a subnet, optionally with a public IP.
pub fn nic_body(subnet_id: &str, public_ip: Option<&str>) -> Value {
    let mut config = json!({
        "name": "ipconfig1",
        "properties": { "subnet": { "id": subnet_id }, "privateIPAllocationMethod": "Dynamic" }
    });
    if let Some(pip) = public_ip {
        config["properties"]["publicIPAddress"] = json!({ "id": pip });
    }
    json!({ "location": LOCATION, "properties": { "ipConfigurations": [config] } })
}

/// Linux VM of the azlin defaults (Standard_E16as_v5, Ubuntu 24.04, SSH key only) on a NIC.
pub fn vm_body(nic_id: &str, size: &str) -> Value {
    json!({
        "location": LOCATION,
        "tags": { "managed-by": "azlin" },
        "properties": {
            "hardwareProfile": { "vmSize": size },
            "storageProfile": {
                "imageReference": { "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest" },
                "osDisk": { "createOption": "FromImage", "managedDisk": { "storageAccountType": "Premium_LRS" }, "deleteOption": "Delete" }
            },
            "osProfile": {
                "computerName": "azlin-vm",
                "adminUsername": "azureuser",
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "ssh": { "publicKeys": [{ "path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY }] }
                }
            },
            "networkProfile": { "networkInterfaces": [{ "id": nic_id, "properties": { "primary": true, "deleteOption": "Delete" } }] }
        }
    })
}

/// Premium FileStorage account ready for NFS (https-only off).
pub fn nfs_account_body() -> Value {
    json!({
        "location": LOCATION,
        "sku": { "name": "Premium_LRS" },
        "kind": "FileStorage",
        "properties": { "supportsHttpsTrafficOnly": false, "minimumTlsVersion": "TLS1_2" }
    })
}

/// NFS share with a quota in GiB.
pub fn nfs_share_body(quota: i64) -> Value {
    json!({ "properties": { "enabledProtocols": "NFS", "rootSquash": "NoRootSquash", "shareQuota": quota } })
}
