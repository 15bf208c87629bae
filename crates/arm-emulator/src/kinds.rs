//! The declarative resource-type registry: each ARM type is a [`Kind`] with its api-versions,
//! provisioning style, URL shape and [`Hooks`] (validation and side effects). The generic
//! handlers in `handlers.rs` do GET/PUT/PATCH/DELETE/list for every kind.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::ArmError;
use super::state::{Entry, OpKind, Store};
use super::{compute, disks, network, resources, storage};

/// How a kind reports provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// PUT answers `Creating`/`Updating` plus `Azure-AsyncOperation`; `Succeeded` after the latency.
    Async,
    /// Create answers `202 Accepted` with only `Location` and no body (as storage accounts
    /// do), `Succeeded` after the latency; an update of an existing resource completes at once.
    AcceptedOnCreate,
    /// PUT completes at once with `Succeeded`.
    Sync,
    /// The type has no `provisioningState` and completes at once (file shares).
    Untracked,
}

/// Runtime settings the hooks consult.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Provisioning time of asynchronous operations.
    pub latency: Duration,
    /// Address reported as every VM's private and public IP.
    pub vm_address: Option<IpAddr>,
    /// vCPU quota per region and subscription.
    pub core_quota: u32,
    /// Items per page of list answers.
    pub page_size: usize,
    /// The subscription listed by `GET /subscriptions` (any subscription is served).
    pub subscription: String,
}

/// Context of a PUT/PATCH: hooks validate `body` and may change the store.
pub struct PutCtx<'a> {
    /// The store (locked).
    pub store: &'a mut Store,
    /// Settings.
    pub settings: &'a Settings,
    /// Canonical id of the resource.
    pub id: &'a str,
    /// Resource name (last id segment).
    pub name: &'a str,
    /// The stored parent for child kinds.
    pub parent: Option<Entry>,
    /// The resource before this request, on update.
    pub existing: Option<Entry>,
    /// The new body (id, name, type, location and tags already set).
    pub body: Value,
    /// Internal facts kept with the resource.
    pub meta: Map<String, Value>,
}

impl PutCtx<'_> {
    /// Location of the resource (its own, or the stored parent's for child kinds).
    pub fn location(&self) -> String {
        self.body
            .get("location")
            .and_then(Value::as_str)
            .or_else(|| self.parent.as_ref().and_then(|p| p.str_at("/location")))
            .unwrap_or_default()
            .to_string()
    }
}

/// Per-kind behaviour; every method has a neutral default.
pub trait Hooks: Sync {
    /// Validates the PUT body (400s with `target`) and applies side effects.
    fn put(&self, _ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        Ok(())
    }

    /// Refuses a DELETE while the resource is in use.
    fn check_delete(&self, _store: &Store, _entry: &Entry) -> Result<(), ArmError> {
        Ok(())
    }

    /// Cascades after the resource has been removed from the store.
    fn deleted(&self, _store: &mut Store, _entry: &Entry) {}

    /// Validates a POST action and sets the transitional state; returns `Ok(())` to start it.
    fn action(
        &self,
        _store: &mut Store,
        _settings: &Settings,
        _id: &str,
        name: &str,
    ) -> Result<(), ArmError> {
        Err(unknown_action(name))
    }

    /// Finishes an operation (after `provisioningState` has become `Succeeded`).
    fn complete(&self, _store: &mut Store, _settings: &Settings, _id: &str, _op: &OpKind) {}

    /// Undoes the transitional state of an operation that ended `Failed`.
    fn failed(&self, _store: &mut Store, _id: &str, _op: &OpKind) {}

    /// A synchronous POST action (e.g. `listKeys`): `Some` answers `200 OK` with the value.
    fn sync_action(
        &self,
        _store: &Store,
        _entry: &Entry,
        _name: &str,
    ) -> Option<Result<Value, ArmError>> {
        None
    }

    /// Adds derived parts to a GET answer (`expand` = `$expand=instanceView`).
    fn render(
        &self,
        _store: &Store,
        _settings: &Settings,
        _entry: &Entry,
        _out: &mut Value,
        _expand: bool,
    ) {
    }

    /// Answers a GET sub-view such as `/instanceView`.
    fn view(
        &self,
        _store: &Store,
        _settings: &Settings,
        _entry: &Entry,
        name: &str,
    ) -> Result<Value, ArmError> {
        Err(unknown_action(name))
    }
}

/// 404 for an unknown action or view path.
pub fn unknown_action(name: &str) -> ArmError {
    ArmError::not_found(
        "NotFound",
        format!("No HTTP resource was found that matches the request URI (action '{name}')."),
    )
}

/// One ARM resource type.
pub struct Kind {
    /// Full ARM type, e.g. `Microsoft.Network/virtualNetworks/subnets`.
    pub type_name: &'static str,
    /// Accepted api-versions.
    pub api_versions: &'static [&'static str],
    /// Provisioning style.
    pub provisioning: Provisioning,
    /// Whether the type carries `location` and `tags` (top-level types).
    pub located: bool,
    /// Id segments to strip to reach the stored parent (0 = directly in a resource group).
    pub parent_strip: usize,
    /// POST actions.
    pub actions: &'static [&'static str],
    /// GET sub-views.
    pub views: &'static [&'static str],
    /// Status of an asynchronous PUT: `202 Accepted` with the body (disks, snapshots) instead
    /// of ARM's usual `201 Created` / `200 OK`.
    pub put_accepted: bool,
    /// DELETE completes at once with `200 OK` (`204` when already gone), as the Storage RP
    /// answers, instead of `202 Accepted` and an operation.
    pub sync_delete: bool,
    /// Behaviour.
    pub hooks: &'static dyn Hooks,
}

impl Kind {
    /// Whether this is the resource-group kind ([`RESOURCE_GROUP`]).
    pub fn is_resource_group(&self) -> bool {
        std::ptr::eq(self, &RESOURCE_GROUP)
    }

    /// The provider namespace, e.g. `Microsoft.Compute`.
    pub fn namespace(&self) -> &'static str {
        self.type_name.split('/').next().unwrap_or(self.type_name)
    }

    /// The last type segment, e.g. `subnets`.
    pub fn short_name(&self) -> &'static str {
        self.type_name.rsplit('/').next().unwrap_or(self.type_name)
    }

    /// Whether an api-version is accepted.
    pub fn accepts(&self, api_version: &str) -> bool {
        self.api_versions.contains(&api_version)
    }

    /// The stored parent's id of a resource of this kind, if it is a child kind.
    pub fn parent_id(&self, id: &str) -> Option<String> {
        if self.parent_strip == 0 {
            return None;
        }
        let mut parts: Vec<&str> = id.split('/').collect();
        parts.truncate(parts.len().saturating_sub(self.parent_strip));
        Some(parts.join("/"))
    }
}

// Stable api-versions per resource type, oldest first, as published in azure-rest-api-specs
// (checked against the multi-api folders of Microsoft's Python SDKs and the defaults of the
// current single-api SDKs; see docs/emulator.md). Every version behaves the same here.

/// api-versions of `Microsoft.Resources` (resource groups, generic resource lists).
pub const RESOURCES_API: &[&str] = &[
    "2015-11-01",
    "2016-02-01",
    "2016-07-01",
    "2016-09-01",
    "2017-05-10",
    "2018-02-01",
    "2018-05-01",
    "2019-03-01",
    "2019-05-01",
    "2019-05-10",
    "2019-07-01",
    "2019-08-01",
    "2019-10-01",
    "2020-06-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-09-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-03-01",
    "2025-04-01",
];
/// api-versions of `GET /subscriptions` and `GET /subscriptions/{id}`.
pub const SUBSCRIPTIONS_API: &[&str] = &[
    "2016-06-01",
    "2018-06-01",
    "2019-06-01",
    "2019-11-01",
    "2020-01-01",
    "2021-01-01",
    "2022-12-01",
];
/// api-versions of `Microsoft.Compute/virtualMachines`.
pub const VM_API: &[&str] = &[
    "2015-06-15",
    "2016-03-30",
    "2017-03-30",
    "2017-12-01",
    "2018-04-01",
    "2018-06-01",
    "2018-10-01",
    "2019-03-01",
    "2019-07-01",
    "2019-12-01",
    "2020-06-01",
    "2020-12-01",
    "2021-03-01",
    "2021-04-01",
    "2021-07-01",
    "2021-11-01",
    "2022-03-01",
    "2022-08-01",
    "2022-11-01",
    "2023-03-01",
    "2023-07-01",
    "2023-09-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-04-01",
    "2026-04-01",
];
/// api-versions of disks and snapshots.
pub const DISK_API: &[&str] = &[
    "2017-03-30",
    "2018-04-01",
    "2018-06-01",
    "2018-09-30",
    "2019-03-01",
    "2019-07-01",
    "2019-11-01",
    "2020-05-01",
    "2020-06-30",
    "2020-09-30",
    "2020-12-01",
    "2021-04-01",
    "2021-08-01",
    "2021-12-01",
    "2022-03-02",
    "2022-07-02",
    "2023-01-02",
    "2023-04-02",
    "2023-10-02",
    "2024-03-02",
    "2025-01-02",
    "2026-03-02",
];
/// api-versions of `Microsoft.Network` (virtual networks, subnets, NSGs, public IPs, NICs).
pub const NETWORK_API: &[&str] = &[
    "2015-06-15",
    "2016-03-30",
    "2016-06-01",
    "2016-09-01",
    "2016-12-01",
    "2017-03-01",
    "2017-06-01",
    "2017-08-01",
    "2017-09-01",
    "2017-10-01",
    "2017-11-01",
    "2018-01-01",
    "2018-02-01",
    "2018-04-01",
    "2018-06-01",
    "2018-07-01",
    "2018-08-01",
    "2018-10-01",
    "2018-11-01",
    "2018-12-01",
    "2019-02-01",
    "2019-04-01",
    "2019-06-01",
    "2019-07-01",
    "2019-08-01",
    "2019-09-01",
    "2019-11-01",
    "2019-12-01",
    "2020-03-01",
    "2020-04-01",
    "2020-05-01",
    "2020-06-01",
    "2020-07-01",
    "2020-08-01",
    "2020-11-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-08-01",
    "2022-01-01",
    "2022-05-01",
    "2022-07-01",
    "2022-09-01",
    "2022-11-01",
    "2023-02-01",
    "2023-04-01",
    "2023-05-01",
    "2023-06-01",
    "2023-09-01",
    "2023-11-01",
    "2024-01-01",
    "2024-03-01",
    "2024-05-01",
    "2024-07-01",
    "2024-10-01",
    "2025-01-01",
    "2025-03-01",
    "2025-05-01",
    "2025-07-01",
    "2026-03-01",
];
/// api-versions of `Microsoft.Storage/storageAccounts`.
pub const STORAGE_API: &[&str] = &[
    "2015-06-15",
    "2016-01-01",
    "2016-05-01",
    "2016-12-01",
    "2017-06-01",
    "2017-10-01",
    "2018-02-01",
    "2018-07-01",
    "2018-11-01",
    "2019-04-01",
    "2019-06-01",
    "2021-01-01",
    "2021-02-01",
    "2021-04-01",
    "2021-06-01",
    "2021-08-01",
    "2021-09-01",
    "2022-05-01",
    "2022-09-01",
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
    "2026-09-01",
];
/// api-versions of file shares (`fileServices/default/shares`, introduced with 2019-04-01).
pub const SHARE_API: &[&str] = &[
    "2019-04-01",
    "2019-06-01",
    "2021-01-01",
    "2021-02-01",
    "2021-04-01",
    "2021-06-01",
    "2021-08-01",
    "2021-09-01",
    "2022-05-01",
    "2022-09-01",
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
    "2026-09-01",
];

/// The resource-group kind.
pub static RESOURCE_GROUP: Kind = Kind {
    type_name: "Microsoft.Resources/resourceGroups",
    api_versions: RESOURCES_API,
    provisioning: Provisioning::Sync,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: false,
    hooks: &resources::ResourceGroupHooks,
};

/// Every provider kind the emulator serves.
pub static KINDS: &[&Kind] = &[
    &network::VIRTUAL_NETWORK,
    &network::SUBNET,
    &network::NSG,
    &network::PUBLIC_IP,
    &network::NIC,
    &compute::VIRTUAL_MACHINE,
    &disks::DISK,
    &disks::SNAPSHOT,
    &storage::STORAGE_ACCOUNT,
    &storage::FILE_SHARE,
];

/// A kind by full type path (case-insensitive).
pub fn find(type_path: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.type_name.eq_ignore_ascii_case(type_path))
}

/// Whether some kind's type starts with this type path (intermediate segments like `fileServices`).
pub fn is_type_prefix(type_path: &str) -> bool {
    let lower = type_path.to_ascii_lowercase();
    KINDS.iter().any(|k| {
        let t = k.type_name.to_ascii_lowercase();
        t == lower || t.starts_with(&format!("{lower}/"))
    })
}

/// All api-versions of a provider namespace (for its operation URLs).
pub fn namespace_accepts(namespace: &str, api_version: &str) -> bool {
    KINDS
        .iter()
        .filter(|k| k.namespace().eq_ignore_ascii_case(namespace))
        .any(|k| k.accepts(api_version))
}

/// The canonical casing of a provider namespace.
pub fn canonical_namespace(namespace: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .map(|k| k.namespace())
        .find(|ns| ns.eq_ignore_ascii_case(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lookups() {
        assert!(find("microsoft.compute/VIRTUALMACHINES").is_some());
        assert!(is_type_prefix(
            "Microsoft.Storage/storageAccounts/fileServices"
        ));
        assert!(find("Microsoft.Storage/storageAccounts/fileServices").is_none());
        let share = find("Microsoft.Storage/storageAccounts/fileServices/shares").map(|k| {
            k.parent_id("/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a/fileServices/default/shares/x")
        });
        assert_eq!(
            share,
            Some(Some(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a"
                    .into()
            ))
        );
        assert!(namespace_accepts("microsoft.network", "2024-05-01"));
        assert!(!namespace_accepts("Microsoft.Network", "2099-01-01"));
    }
}
