//! The status of a SharedStorage, computed purely from what a reconcile observed: who mounts
//! it, what Azure reports, and the resulting phase and conditions.

use std::collections::BTreeSet;

use crate::api::azlinvm::AzlinVM;
use crate::api::fleet::Fleet;
use crate::api::sharedstorage::{SharedStorage, SharedStorageStatus, StoragePhase};
use crate::reconcile::KindStatus;
use crate::ssh::nfs::azure_files_source;

use super::build::MountLayout;
use crate::controllers::azlinvm::mounts::fleet_owner;

impl KindStatus for SharedStorageStatus {
    crate::reconcile::standard_status_fields!();
    crate::reconcile::status::azure_identity_field!();

    fn set_error_phase(&mut self, stalled: bool, deleting: bool) {
        self.phase = Some(if deleting {
            StoragePhase::Deleting
        } else if stalled {
            StoragePhase::Failed
        } else {
            StoragePhase::Provisioning
        });
    }
}

/// Prefix of Fleet entries in `status.mountedBy`.
pub const FLEET_PREFIX: &str = "fleet/";

/// Who uses a SharedStorage in its namespace.
///
/// A VM uses it when it lists it in `spec.mounts[]` or its `status.mounts[]` shows it (a
/// Fleet member's shared home included); a Fleet only through its members: it is listed
/// once one of its members uses the share, never for naming it as `sharedHome` alone.
/// Members of a Fleet whose `sharedHome` names the share that do not use it yet are
/// `joining`: they will mount it, so they hold it like the users do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    /// AzlinVM names.
    pub vms: BTreeSet<String>,
    /// Fleet names.
    pub fleets: BTreeSet<String>,
    /// Members of Fleets sharing the storage as home that do not use it yet.
    pub joining: BTreeSet<String>,
}

impl Users {
    /// The users of storage `name` among `vms` and `fleets` (all in its namespace).
    pub fn of<'a>(
        name: &str,
        vms: impl IntoIterator<Item = &'a AzlinVM>,
        fleets: impl IntoIterator<Item = &'a Fleet>,
    ) -> Users {
        let homes: Vec<(&str, &str)> = fleets
            .into_iter()
            .filter(|f| f.spec.shared_home.as_deref() == Some(name))
            .filter_map(|f| Some((f.metadata.name.as_deref()?, f.metadata.uid.as_deref()?)))
            .collect();
        let mut users = Users::default();
        for vm in vms {
            let Some(vm_name) = vm.metadata.name.clone() else {
                continue;
            };
            let fleet = fleet_owner(vm).map(|o| (o.name.as_str(), o.uid.as_str()));
            let uses = vm.spec.mounts.iter().any(|m| m.storage_ref == name)
                || vm
                    .status
                    .iter()
                    .flat_map(|s| &s.mounts)
                    .any(|m| m.storage_ref == name);
            if uses {
                if let Some((fleet, _)) = fleet {
                    users.fleets.insert(fleet.to_string());
                }
                users.vms.insert(vm_name);
            } else if fleet.is_some_and(|f| homes.contains(&f)) {
                users.joining.insert(vm_name);
            }
        }
        users
    }

    /// `status.mountedBy`: VM names, then `fleet/<name>` entries, each sorted.
    pub fn mounted_by(&self) -> Vec<String> {
        self.vms
            .iter()
            .cloned()
            .chain(self.fleets.iter().map(|f| format!("{FLEET_PREFIX}{f}")))
            .collect()
    }

    /// Whether nothing uses or is about to use the storage.
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty() && self.fleets.is_empty() && self.joining.is_empty()
    }

    /// Number of AzlinVMs using the storage (`status.mountCount`).
    pub fn len(&self) -> usize {
        self.vms.len()
    }
}

/// The objects of the namespace that keep storage `name` from being deleted, each with
/// why, e.g. `AzlinVM ns/a (status mounts)` or `Fleet ns/f (sharedHome)`: an AzlinVM that
/// lists it in `spec.mounts[]` or still shows it in `status.mounts[]` (a stopped VM
/// included), a member of a Fleet whose `sharedHome` it is, and a Fleet naming it as
/// `sharedHome` or in its template's mounts. Sorted, VMs first.
pub fn holders<'a>(
    name: &str,
    namespace: &str,
    vms: impl IntoIterator<Item = &'a AzlinVM>,
    fleets: impl IntoIterator<Item = &'a Fleet>,
) -> Vec<String> {
    let fleets: Vec<&Fleet> = fleets.into_iter().collect();
    let homes: Vec<(&str, &str)> = fleets
        .iter()
        .filter(|f| f.spec.shared_home.as_deref() == Some(name))
        .filter_map(|f| Some((f.metadata.name.as_deref()?, f.metadata.uid.as_deref()?)))
        .collect();
    let mut vm_holders = BTreeSet::new();
    for vm in vms {
        let Some(vm_name) = vm.metadata.name.as_deref() else {
            continue;
        };
        let mut why = Vec::new();
        if vm.spec.mounts.iter().any(|m| m.storage_ref == name) {
            why.push("spec mounts".to_string());
        }
        if vm
            .status
            .iter()
            .flat_map(|s| &s.mounts)
            .any(|m| m.storage_ref == name)
        {
            why.push("status mounts".to_string());
        }
        if let Some(o) = fleet_owner(vm)
            && homes.contains(&(o.name.as_str(), o.uid.as_str()))
        {
            why.push(format!("member of Fleet {}, sharedHome", o.name));
        }
        if !why.is_empty() {
            vm_holders.insert(format!(
                "AzlinVM {namespace}/{vm_name} ({})",
                why.join(", ")
            ));
        }
    }
    let mut fleet_holders = BTreeSet::new();
    for f in fleets {
        let Some(fleet_name) = f.metadata.name.as_deref() else {
            continue;
        };
        let mut why = Vec::new();
        if f.spec.shared_home.as_deref() == Some(name) {
            why.push("sharedHome");
        }
        if f.spec
            .template
            .spec
            .mounts
            .iter()
            .any(|m| m.storage_ref == name)
        {
            why.push("template mounts");
        }
        if !why.is_empty() {
            fleet_holders.insert(format!(
                "Fleet {namespace}/{fleet_name} ({})",
                why.join(", ")
            ));
        }
    }
    vm_holders.into_iter().chain(fleet_holders).collect()
}

/// What a reconcile learned about the Azure side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Storage account name (known before it exists: it is deterministic).
    pub account: Option<String>,
    /// Share name, once the share exists.
    pub share: Option<String>,
    /// Quota Azure reports for the share.
    pub quota_gib: Option<i32>,
}

impl Observed {
    /// The NFS mount source, once the share exists.
    pub fn nfs_endpoint(&self) -> Option<String> {
        match (&self.account, &self.share) {
            (Some(a), Some(s)) => Some(azure_files_source(a, s)),
            _ => None,
        }
    }
}

/// The NFS source VMs should mount for `storage`: its `status.nfsEndpoint`, which is set
/// whenever the share exists — also while an update is in progress, a shrink is refused
/// (Stalled) or its deletion is blocked by the very VMs mounting it. Gating mounts on
/// `Ready=True` instead would unmount every VM in those cases.
pub fn mount_source(storage: &SharedStorage) -> Option<&str> {
    storage
        .status
        .as_ref()
        .filter(|s| s.share.is_some())
        .and_then(|s| s.nfs_endpoint.as_deref())
}

/// The message of `Ready=True`: endpoint, quota, default mount path and the template's
/// directories. They are made by the VMs that mount the share (each reports in its
/// `status.mounts[]` which exist), so the storage names them as what its VMs make sure of,
/// never as existing.
pub fn ready_message(endpoint: &str, quota_gib: u32, layout: &MountLayout) -> String {
    let mut msg = format!(
        "NFS share {endpoint} ({quota_gib} GiB) is available; VMs mount it at {} by default",
        layout.mount_path
    );
    if !layout.shared_dirs.is_empty() {
        msg.push_str(&format!(
            "; mounting VMs create {} on the share when missing",
            layout.shared_dirs.join(", ")
        ));
    }
    if !layout.local_dirs.is_empty() {
        msg.push_str(&format!(
            "; and {} on their own disk",
            layout.local_dirs.join(", ")
        ));
    }
    msg
}

/// The new status of a storage whose current status is `old`: the observed Azure facts, its
/// users and `phase`. The conditions are carried over; the reconcile layer sets them from the
/// plan's health, so an unchanged reconcile yields a status equal to the old one.
pub fn next_status(
    old: Option<&SharedStorageStatus>,
    phase: StoragePhase,
    observed: &Observed,
    users: &Users,
) -> SharedStorageStatus {
    let old = old.cloned().unwrap_or_default();
    SharedStorageStatus {
        observed_generation: old.observed_generation,
        phase: Some(phase),
        conditions: old.conditions,
        storage_account: observed.account.clone().or(old.storage_account),
        share: observed.share.clone(),
        nfs_endpoint: observed.nfs_endpoint(),
        quota_gib: observed.quota_gib,
        mounted_by: users.mounted_by(),
        mount_count: Some(i32::try_from(users.len()).unwrap_or(i32::MAX)),
        azure: old.azure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(name: &str, refs: &[&str]) -> AzlinVM {
        let mounts: Vec<_> = refs.iter().map(|r| json!({"storageRef": r})).collect();
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "AzlinVM",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"resourceGroup": "rg", "location": "westus2", "mounts": mounts}
        }))
        .expect("vm")
    }

    /// A member of Fleet `fleet` whose status shows `mounted`.
    fn member(name: &str, fleet: &str, mounted: &[&str]) -> AzlinVM {
        let mut vm = vm(name, &[]);
        vm.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "azlin.io/v1alpha1".into(),
                kind: "Fleet".into(),
                name: fleet.into(),
                uid: format!("uid-{fleet}"),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        vm.status = Some(
            serde_json::from_value(json!({
                "mounts": mounted.iter().map(|s| json!({
                    "storageRef": s, "path": format!("/home/{s}"), "state": "Mounted", "message": ""
                })).collect::<Vec<_>>()
            }))
            .expect("status"),
        );
        vm
    }

    fn fleet(name: &str, home: Option<&str>) -> Fleet {
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "Fleet",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"replicas": 1, "sharedHome": home,
                     "template": {"spec": {"resourceGroup": "rg", "location": "westus2"}}}
        }))
        .expect("fleet")
    }

    fn storage() -> SharedStorage {
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "SharedStorage",
            "metadata": {"name": "data", "namespace": "ns", "generation": 3},
            "spec": {"resourceGroup": "rg", "location": "westus2"}
        }))
        .expect("storage")
    }

    #[test]
    fn users_are_vms_mounting_it_and_fleets_only_through_their_members() {
        let vms = [
            vm("b", &["data"]),
            vm("a", &["other", "data"]),
            vm("c", &["other"]),
            member("f-1", "f", &["data"]),
            member("f-2", "f", &[]),
            member("h-1", "h", &[]),
            member("g-1", "g", &["data"]),
        ];
        let fleets = [
            fleet("f", Some("data")),
            fleet("h", Some("data")),
            fleet("g", None),
        ];
        let users = Users::of("data", &vms, &fleets);
        // Fleet h names the share but none of its members mounts it: not listed.
        assert_eq!(
            users.mounted_by(),
            vec!["a", "b", "f-1", "g-1", "fleet/f", "fleet/g"]
        );
        assert_eq!(users.len(), 4, "mountCount counts VMs");
        assert_eq!(
            users.joining,
            ["f-2".to_string(), "h-1".to_string()].into(),
            "members of sharedHome Fleets not mounting yet hold the share"
        );
        assert!(Users::of("none", &vms, &fleets).is_empty());
        let only_named = Users::of("data", &[] as &[AzlinVM], &fleets);
        assert!(only_named.mounted_by().is_empty() && only_named.is_empty());
    }

    #[test]
    fn holders_name_every_object_keeping_the_share() {
        let mut stopped = member("s", "none", &["data"]);
        stopped.metadata.owner_references = None;
        let vms = vec![
            vm("a", &["data"]),
            stopped,
            member("h-1", "h", &[]),
            vm("c", &["other"]),
        ];
        let mut t = fleet("t", None);
        t.spec.template.spec.mounts =
            serde_json::from_value(json!([{"storageRef": "data"}])).expect("mounts");
        let fleets = vec![fleet("h", Some("data")), fleet("g", None), t];
        assert_eq!(
            holders("data", "ns", &vms, &fleets),
            vec![
                "AzlinVM ns/a (spec mounts)",
                "AzlinVM ns/h-1 (member of Fleet h, sharedHome)",
                "AzlinVM ns/s (status mounts)",
                "Fleet ns/h (sharedHome)",
                "Fleet ns/t (template mounts)",
            ]
        );
        assert!(holders("free", "ns", &vms, &fleets).is_empty());
    }

    #[test]
    fn status_carries_endpoint_users_and_consistent_conditions() {
        let observed = Observed {
            account: Some("azlinabc".into()),
            share: Some("data".into()),
            quota_gib: Some(100),
        };
        let users = Users {
            vms: ["vm1".to_string()].into(),
            ..Default::default()
        };
        let mut s = storage();
        let st = next_status(None, StoragePhase::Ready, &observed, &users);
        assert_eq!(
            st.nfs_endpoint.as_deref(),
            Some("azlinabc.file.core.windows.net:/azlinabc/data")
        );
        assert_eq!(st.mounted_by, vec!["vm1"]);
        assert_eq!(st.mount_count, Some(1));
        s.status = Some(st.clone());
        let again = next_status(s.status.as_ref(), StoragePhase::Ready, &observed, &users);
        assert_eq!(again, st, "an unchanged reconcile produces an equal status");
        s.status = Some(again);
        let stalled = next_status(
            s.status.as_ref(),
            StoragePhase::Failed,
            &observed,
            &Users::default(),
        );
        s.status = Some(stalled.clone());
        assert_eq!(
            mount_source(&s),
            Some("azlinabc.file.core.windows.net:/azlinabc/data"),
            "a Stalled storage whose share exists is still mountable"
        );
        assert_eq!(stalled.mount_count, Some(0));
        assert!(stalled.mounted_by.is_empty());
    }

    #[test]
    fn no_mount_source_without_a_share() {
        let mut s = storage();
        assert_eq!(mount_source(&s), None);
        s.status = Some(SharedStorageStatus {
            storage_account: Some("a".into()),
            ..Default::default()
        });
        assert_eq!(mount_source(&s), None);
    }

    #[test]
    fn ready_message_names_the_layout() {
        let layout = MountLayout {
            mount_path: "/mnt/ml".into(),
            shared_dirs: vec!["datasets", "models"],
            local_dirs: vec!["/mnt/scratch"],
        };
        let m = ready_message("a.file.core.windows.net:/a/s", 100, &layout);
        assert!(m.contains("at /mnt/ml"), "{m}");
        assert!(
            m.contains("mounting VMs create datasets, models on the share when missing"),
            "{m}"
        );
        assert!(m.contains("/mnt/scratch on their own disk"), "{m}");
    }
}
