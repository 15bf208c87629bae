//! Deterministic Azure names.
//!
//! Every Azure resource the operator creates has a name derived only from the owning
//! object's namespace and name (so a restart at any point finds it again instead of creating
//! a duplicate); ownership is checked from the tags of [`crate::reconcile::ownership`].

use sha2::{Digest, Sha256};

/// Longest Linux VM name (and host name) Azure accepts.
pub const VM_NAME_MAX: usize = 64;
/// Address space of the managed virtual network.
pub const MANAGED_VNET_PREFIX: &str = "10.42.0.0/16";
/// Prefix of the managed subnet.
pub const MANAGED_SUBNET_PREFIX: &str = "10.42.0.0/20";
/// Name of the managed subnet.
pub const MANAGED_SUBNET: &str = "default";
/// Service endpoint on the managed subnet, so NFS storage accounts can allow it.
pub const STORAGE_SERVICE_ENDPOINT: &str = "Microsoft.Storage";

/// Hex of the SHA-256 of `input`.
fn sha_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// `base` when it fits in `max` characters, else a prefix of it plus `-` and 8 hex
/// characters of the hash of `identity` (so distinct long names stay distinct).
pub fn bounded(base: &str, identity: &str, max: usize) -> String {
    if base.len() <= max {
        return base.to_string();
    }
    let hash = &sha_hex(identity)[..8];
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix = base[..keep.min(base.len())].trim_end_matches(['-', '.', '_']);
    format!("{prefix}-{hash}")
}

/// The VM name (also its host name) of AzlinVM `namespace/name`: `<ns>-<name>`, at most
/// [`VM_NAME_MAX`] characters.
pub fn vm_name(namespace: &str, name: &str) -> String {
    bounded(
        &format!("{namespace}-{name}"),
        &format!("{namespace}/{name}"),
        VM_NAME_MAX,
    )
}

/// Whether `vm` is [`vm_name`]`(namespace, name)`; checked without building the name when
/// it needs no shortening (a thousand VMs compare against each other often).
pub fn is_vm_name(vm: &str, namespace: &str, name: &str) -> bool {
    let len = namespace.len() + 1 + name.len();
    if len > VM_NAME_MAX {
        return vm_name(namespace, name) == vm;
    }
    vm.len() == len
        && vm.starts_with(namespace)
        && vm[namespace.len()..].starts_with('-')
        && vm.ends_with(name)
}

/// NIC of a VM: `<vm>-nic`.
pub fn nic_name(vm: &str) -> String {
    format!("{vm}-nic")
}

/// Public IP of a VM: `<vm>-pip`.
pub fn public_ip_name(vm: &str) -> String {
    format!("{vm}-pip")
}

/// OS disk of a VM: `<vm>-osdisk`.
pub fn os_disk_name(vm: &str) -> String {
    format!("{vm}-osdisk")
}

/// Data disk at `lun`: `<vm>-data-<lun>`.
pub fn data_disk_name(vm: &str, lun: i32) -> String {
    format!("{vm}-data-{lun}")
}

/// Managed virtual network of a region: `azlin-<location>-vnet`.
pub fn managed_vnet_name(location: &str) -> String {
    format!("azlin-{location}-vnet")
}

/// Managed network security group of a region: `azlin-<location>-nsg`.
pub fn managed_nsg_name(location: &str) -> String {
    format!("azlin-{location}-nsg")
}

/// Storage account of SharedStorage `namespace/name`: `azlin` + 19 hex characters of
/// SHA-256(`subscription/resourceGroup/namespace/name`) — 24 lowercase alphanumerics,
/// within Azure's 3–24 rule and unique enough for the global namespace.
pub fn storage_account_name(
    subscription: &str,
    resource_group: &str,
    namespace: &str,
    name: &str,
) -> String {
    let hash = sha_hex(&format!(
        "{subscription}/{}/{namespace}/{name}",
        resource_group.to_ascii_lowercase()
    ));
    format!("azlin{}", &hash[..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names_are_deterministic_and_bounded() {
        assert_eq!(vm_name("default", "dev1"), "default-dev1");
        assert_eq!(vm_name("default", "dev1"), vm_name("default", "dev1"));
        let ns = "n".repeat(63);
        let a = vm_name(&ns, &"a".repeat(63));
        let b = vm_name(&ns, &format!("{}b", "a".repeat(62)));
        assert!(a.len() <= VM_NAME_MAX, "{a}");
        assert_ne!(a, b, "truncated names stay distinct");
        assert!(!a.ends_with('-'));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        // The longest derived names stay within the 80-character limit of ARM resources.
        assert!(data_disk_name(&a, 63).len() <= 80);
        assert!(nic_name(&a).len() <= 80);
    }

    #[test]
    fn bounded_trims_separators_before_the_hash() {
        let s = bounded("aaa-bbbbbbbbbbbb", "id", 13);
        assert!(s.len() <= 13, "{s}");
        assert!(s.starts_with("aaa-"), "{s}");
        assert!(!s.contains("--"), "{s}");
    }

    #[test]
    fn is_vm_name_agrees_with_vm_name() {
        let long = "n".repeat(70);
        for (ns, name) in [
            ("a", "b-c"),
            ("a-b", "c"),
            ("team", "dev"),
            ("x", long.as_str()),
        ] {
            for (ons, oname) in [
                ("a", "b-c"),
                ("a-b", "c"),
                ("team", "dev2"),
                ("x", long.as_str()),
            ] {
                assert_eq!(
                    is_vm_name(&vm_name(ns, name), ons, oname),
                    vm_name(ns, name) == vm_name(ons, oname),
                    "{ns}/{name} vs {ons}/{oname}"
                );
            }
        }
    }

    #[test]
    fn derived_resource_names() {
        assert_eq!(nic_name("ns-vm"), "ns-vm-nic");
        assert_eq!(public_ip_name("ns-vm"), "ns-vm-pip");
        assert_eq!(os_disk_name("ns-vm"), "ns-vm-osdisk");
        assert_eq!(data_disk_name("ns-vm", 3), "ns-vm-data-3");
        assert_eq!(managed_vnet_name("westus2"), "azlin-westus2-vnet");
        assert_eq!(managed_nsg_name("westus2"), "azlin-westus2-nsg");
    }

    #[test]
    fn storage_account_names_follow_azure_rules() {
        let a = storage_account_name("sub", "rg", "ns", "data");
        assert_eq!(a.len(), 24);
        assert!(a.starts_with("azlin"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(a, storage_account_name("sub", "RG", "ns", "data"));
        assert_ne!(a, storage_account_name("sub", "rg", "ns", "data2"));
        assert_ne!(a, storage_account_name("sub2", "rg", "ns", "data"));
    }
}
