//! The status of a SharedStorage, computed purely from what a reconcile observed: who mounts
//! it, what Azure reports, and the resulting phase and conditions.

use std::collections::BTreeSet;

use crate::api::azlinvm::AzlinVM;
use crate::api::fleet::Fleet;
use crate::api::sharedstorage::{SharedStorage, SharedStorageStatus, StoragePhase};
use crate::reconcile::KindStatus;
use crate::ssh::nfs::azure_files_source;

use super::build::MountLayout;

impl KindStatus for SharedStorageStatus {
    crate::reconcile::standard_status_fields!();

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

/// The objects in a namespace that use a SharedStorage: AzlinVMs that list it in
/// `spec.mounts[]` and Fleets whose `spec.sharedHome` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    /// AzlinVM names.
    pub vms: BTreeSet<String>,
    /// Fleet names.
    pub fleets: BTreeSet<String>,
}

impl Users {
    /// The users of storage `name` among `vms` and `fleets` (all in its namespace).
    pub fn of<'a>(
        name: &str,
        vms: impl IntoIterator<Item = &'a AzlinVM>,
        fleets: impl IntoIterator<Item = &'a Fleet>,
    ) -> Users {
        let vms = vms
            .into_iter()
            .filter(|vm| vm.spec.mounts.iter().any(|m| m.storage_ref == name))
            .filter_map(|vm| vm.metadata.name.clone())
            .collect();
        let fleets = fleets
            .into_iter()
            .filter(|f| f.spec.shared_home.as_deref() == Some(name))
            .filter_map(|f| f.metadata.name.clone())
            .collect();
        Users { vms, fleets }
    }

    /// `status.mountedBy`: VM names, then `fleet/<name>` entries, each sorted.
    pub fn mounted_by(&self) -> Vec<String> {
        self.vms
            .iter()
            .cloned()
            .chain(self.fleets.iter().map(|f| format!("{FLEET_PREFIX}{f}")))
            .collect()
    }

    /// Whether nothing uses the storage.
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty() && self.fleets.is_empty()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.vms.len() + self.fleets.len()
    }
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

/// The message of `Ready=True`: endpoint, quota, default mount path and template directories.
pub fn ready_message(endpoint: &str, quota_gib: u32, layout: &MountLayout) -> String {
    let mut msg = format!(
        "NFS share {endpoint} ({quota_gib} GiB) is available; VMs mount it at {} by default",
        layout.mount_path
    );
    if !layout.shared_dirs.is_empty() {
        msg.push_str(&format!(
            "; shared directories: {}",
            layout.shared_dirs.join(", ")
        ));
    }
    if !layout.local_dirs.is_empty() {
        msg.push_str(&format!(
            "; local directories on each VM: {}",
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

    fn fleet(name: &str, home: Option<&str>) -> Fleet {
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "Fleet",
            "metadata": {"name": name, "namespace": "ns"},
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
    fn users_are_vms_mounting_it_and_fleets_sharing_it_as_home() {
        let vms = [
            vm("b", &["data"]),
            vm("a", &["other", "data"]),
            vm("c", &["other"]),
        ];
        let fleets = [fleet("f", Some("data")), fleet("g", None)];
        let users = Users::of("data", &vms, &fleets);
        assert_eq!(users.mounted_by(), vec!["a", "b", "fleet/f"]);
        assert_eq!(users.len(), 3);
        assert!(Users::of("none", &vms, &fleets).is_empty());
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
            fleets: BTreeSet::new(),
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
        assert!(m.contains("shared directories: datasets, models"), "{m}");
        assert!(
            m.contains("local directories on each VM: /mnt/scratch"),
            "{m}"
        );
    }
}
