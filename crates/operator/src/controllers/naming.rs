//! Deterministic Azure names and ownership tags.
//!
//! Every Azure resource the operator creates has a name derived only from the owning
//! object's namespace and name (so a restart at any point finds it again instead of creating
//! a duplicate) and carries [`Owner::tags`]. The adoption rule ([`ownership`]): a resource
//! with our `managed-by` tag and the same namespace/name/kind tags is ours (its uid tag is
//! updated when the object was re-created); a same-named resource without our `managed-by`
//! tag, or one belonging to another object, is never touched.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Tag key marking resources created by the operator.
pub const TAG_MANAGED_BY: &str = "managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY: &str = "azlin-operator";
/// Tag key: uid of the owning Kubernetes object.
pub const TAG_UID: &str = "azlin-operator-uid";
/// Tag key: namespace of the owning object.
pub const TAG_NAMESPACE: &str = "azlin-operator-namespace";
/// Tag key: name of the owning object.
pub const TAG_NAME: &str = "azlin-operator-name";
/// Tag key: kind of the owning object.
pub const TAG_KIND: &str = "azlin-operator-kind";
/// Tag key set to `true` on resources left behind by `deletionPolicy: Retain`.
pub const TAG_RELEASED: &str = "azlin-operator-released";
/// Kind tag value of the shared, operator-managed network (vnet, subnet, NSG).
pub const MANAGED_NETWORK_KIND: &str = "ManagedNetwork";

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

/// The Kubernetes object owning Azure resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Kind, e.g. `AzlinVM`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl Owner {
    /// The ownership tags every resource of this object carries.
    pub fn tags(&self) -> BTreeMap<String, String> {
        [
            (TAG_MANAGED_BY, MANAGED_BY),
            (TAG_UID, self.uid.as_str()),
            (TAG_NAMESPACE, self.namespace.as_str()),
            (TAG_NAME, self.name.as_str()),
            (TAG_KIND, self.kind.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Ownership tags plus the user's extra tags (reserved keys cannot be overridden).
    pub fn tags_with(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut tags: BTreeMap<String, String> = extra
            .iter()
            .filter(|(k, _)| !is_reserved_tag(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.extend(self.tags());
        tags
    }

    /// `namespace/name` for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Tags of the shared managed network (not owned by one object).
pub fn managed_network_tags() -> BTreeMap<String, String> {
    [
        (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (TAG_KIND.to_string(), MANAGED_NETWORK_KIND.to_string()),
    ]
    .into()
}

/// Whether a tag key is reserved for the operator.
pub fn is_reserved_tag(key: &str) -> bool {
    key == TAG_MANAGED_BY || key.starts_with("azlin-operator")
}

/// `tags` with [`TAG_RELEASED`] set (for `deletionPolicy: Retain`).
pub fn released(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut t = tags.clone();
    t.insert(TAG_RELEASED.to_string(), "true".to_string());
    t
}

/// How an existing Azure resource relates to an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Ours, tags current.
    Owned,
    /// Ours by namespace/name/kind but with another (or no) uid, or marked released:
    /// adopt it by rewriting the tags.
    Adopt,
    /// Not ours: never touch it.
    Foreign {
        /// Why, for the Stalled message.
        reason: String,
    },
}

/// Applies the adoption rule to the tags of an existing resource.
pub fn ownership(tags: &BTreeMap<String, String>, owner: &Owner) -> Ownership {
    if tags.get(TAG_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
        return Ownership::Foreign {
            reason: format!("it has no tag {TAG_MANAGED_BY}={MANAGED_BY}"),
        };
    }
    let same = |key: &str, want: &str| tags.get(key).map(String::as_str) == Some(want);
    if !(same(TAG_NAMESPACE, &owner.namespace)
        && same(TAG_NAME, &owner.name)
        && same(TAG_KIND, &owner.kind))
    {
        return Ownership::Foreign {
            reason: format!(
                "it belongs to {} {}/{}",
                tags.get(TAG_KIND).map(String::as_str).unwrap_or("?"),
                tags.get(TAG_NAMESPACE).map(String::as_str).unwrap_or("?"),
                tags.get(TAG_NAME).map(String::as_str).unwrap_or("?"),
            ),
        };
    }
    if same(TAG_UID, &owner.uid) && !tags.contains_key(TAG_RELEASED) {
        Ownership::Owned
    } else {
        Ownership::Adopt
    }
}

/// Whether a shared resource (vnet, NSG) may be used and updated by the operator.
pub fn is_managed(tags: &BTreeMap<String, String>) -> bool {
    tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            kind: "AzlinVM".into(),
            namespace: "team-a".into(),
            name: "dev1".into(),
            uid: "u-1".into(),
        }
    }

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

    #[test]
    fn tags_and_reserved_keys() {
        let extra: BTreeMap<String, String> = [
            ("team".to_string(), "a".to_string()),
            ("managed-by".to_string(), "me".to_string()),
            ("azlin-operator-uid".to_string(), "x".to_string()),
        ]
        .into();
        let t = owner().tags_with(&extra);
        assert_eq!(t["team"], "a");
        assert_eq!(t[TAG_MANAGED_BY], MANAGED_BY);
        assert_eq!(t[TAG_UID], "u-1");
        assert_eq!(t[TAG_NAMESPACE], "team-a");
        assert_eq!(t[TAG_NAME], "dev1");
        assert_eq!(t[TAG_KIND], "AzlinVM");
        assert_eq!(released(&t)[TAG_RELEASED], "true");
    }

    #[test]
    fn adoption_rule() {
        let o = owner();
        assert_eq!(ownership(&o.tags(), &o), Ownership::Owned);
        let mut other_uid = o.tags();
        other_uid.insert(TAG_UID.into(), "old".into());
        assert_eq!(ownership(&other_uid, &o), Ownership::Adopt);
        assert_eq!(ownership(&released(&o.tags()), &o), Ownership::Adopt);
        let mut no_uid = o.tags();
        no_uid.remove(TAG_UID);
        assert_eq!(ownership(&no_uid, &o), Ownership::Adopt);
        assert!(matches!(
            ownership(&BTreeMap::new(), &o),
            Ownership::Foreign { .. }
        ));
        let mut other_object = o.tags();
        other_object.insert(TAG_NAME.into(), "dev2".into());
        match ownership(&other_object, &o) {
            Ownership::Foreign { reason } => assert!(reason.contains("team-a/dev2"), "{reason}"),
            other => panic!("expected Foreign, got {other:?}"),
        }
        assert!(is_managed(&managed_network_tags()));
        assert!(!is_managed(&BTreeMap::new()));
    }
}
