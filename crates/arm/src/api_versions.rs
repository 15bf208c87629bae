//! Pinned api-versions per resource type (see `shared/notes/azure.md`).

/// `Microsoft.Resources` (resource groups, generic resource listing).
pub const RESOURCES: &str = "2021-04-01";
/// `Microsoft.Compute/virtualMachines` and its actions.
pub const VIRTUAL_MACHINES: &str = "2024-11-01";
/// `Microsoft.Compute/disks` and `Microsoft.Compute/snapshots`.
pub const DISKS: &str = "2024-03-02";
/// `Microsoft.Network/*`.
pub const NETWORK: &str = "2024-05-01";
/// `Microsoft.Storage/*` (accounts, file shares).
pub const STORAGE: &str = "2023-05-01";

/// The pinned api-version for a full resource type such as `Microsoft.Network/virtualNetworks/subnets`
/// (case-insensitive); `None` for types this client does not manage.
pub fn for_resource_type(resource_type: &str) -> Option<&'static str> {
    let t = resource_type.to_ascii_lowercase();
    let (namespace, rest) = t.split_once('/')?;
    let top = rest.split('/').next().unwrap_or_default();
    match (namespace, top) {
        ("microsoft.resources", _) => Some(RESOURCES),
        ("microsoft.compute", "virtualmachines") => Some(VIRTUAL_MACHINES),
        ("microsoft.compute", "disks" | "snapshots") => Some(DISKS),
        ("microsoft.network", _) => Some(NETWORK),
        ("microsoft.storage", _) => Some(STORAGE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_versions() {
        assert_eq!(
            for_resource_type("Microsoft.Compute/virtualMachines"),
            Some("2024-11-01")
        );
        assert_eq!(
            for_resource_type("microsoft.compute/SNAPSHOTS"),
            Some("2024-03-02")
        );
        assert_eq!(
            for_resource_type("Microsoft.Network/virtualNetworks/subnets"),
            Some("2024-05-01")
        );
        assert_eq!(
            for_resource_type("Microsoft.Storage/storageAccounts/fileServices/shares"),
            Some("2023-05-01")
        );
        assert_eq!(
            for_resource_type("Microsoft.Resources/resourceGroups"),
            Some("2021-04-01")
        );
        assert_eq!(for_resource_type("Microsoft.Web/sites"), None);
        assert_eq!(for_resource_type("nonsense"), None);
    }
}
