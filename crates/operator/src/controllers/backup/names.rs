//! Deterministic names, ids and tags of a Backup's Azure resources: the same run of the same
//! Backup always names the same snapshot, so a restart finds what it started instead of
//! taking it twice, and the tags say which Backup, run, VM and disk a snapshot belongs to.

use std::collections::BTreeMap;

use azlin_arm::ResourceId;
use chrono::{DateTime, Utc};

use crate::infra::naming::bounded;
use crate::reconcile::ownership::Owner;

/// Longest snapshot and disk name Azure accepts.
pub const NAME_MAX: usize = 80;
/// Longest resource group name.
pub const GROUP_MAX: usize = 90;
/// Tag key: the run id.
pub const TAG_RUN: &str = "azlin-operator-backup-run";
/// Tag key: the run time (RFC 3339).
pub const TAG_RUN_TIME: &str = "azlin-operator-backup-time";
/// Tag key: the AzlinVM whose disk was snapshotted.
pub const TAG_VM: &str = "azlin-operator-source-vm";
/// Tag key: the snapshotted disk's name.
pub const TAG_DISK: &str = "azlin-operator-disk";
/// Tag key: `os`, or the LUN of a data disk.
pub const TAG_LUN: &str = "azlin-operator-lun";
/// Tag key marking a throwaway verification disk (`verify`).
pub const TAG_PURPOSE: &str = "azlin-operator-purpose";
/// Value of [`TAG_PURPOSE`] on verification disks.
pub const PURPOSE_VERIFY: &str = "verify";
/// Value of [`TAG_LUN`] for an OS disk.
pub const LUN_OS: &str = "os";

/// The run id of a run at `time`: `YYYYMMDD-HHMMSS` (UTC).
pub fn run_name(time: DateTime<Utc>) -> String {
    time.format("%Y%m%d-%H%M%S").to_string()
}

/// The snapshot of disk `disk` (id `disk_id`) in run `run` of Backup `backup` (uid `uid`):
/// `<backup>-<run>-<disk>`, shortened with a hash of the identity when too long.
pub fn snapshot_name(backup: &str, uid: &str, run: &str, disk: &str, disk_id: &str) -> String {
    bounded(
        &format!("{backup}-{run}-{disk}"),
        &format!("{uid}/{run}/{}", disk_id.to_ascii_lowercase()),
        NAME_MAX,
    )
}

/// The throwaway disk verifying snapshot `snapshot`.
pub fn verify_disk_name(snapshot: &str) -> String {
    bounded(
        &format!("{snapshot}-verify"),
        &format!("verify/{snapshot}"),
        NAME_MAX,
    )
}

/// The resource group in `region` holding the copies of snapshots from group `group`:
/// `<group>-backup-<region>`.
pub fn copy_group(group: &str, region: &str) -> String {
    bounded(
        &format!("{group}-backup-{region}"),
        &format!("{}/{region}", group.to_ascii_lowercase()),
        GROUP_MAX,
    )
}

/// The id of snapshot `name` in group `group`.
pub fn snapshot_id(subscription: &str, group: &str, name: &str) -> String {
    ResourceId::resource_group(subscription, group)
        .provider_resource("Microsoft.Compute", "snapshots", name)
        .to_string()
}

/// The id of disk `name` in group `group`.
pub fn disk_id(subscription: &str, group: &str, name: &str) -> String {
    ResourceId::resource_group(subscription, group)
        .provider_resource("Microsoft.Compute", "disks", name)
        .to_string()
}

/// The resource group and name of an ARM id.
pub fn group_and_name(id: &str) -> Option<(String, String)> {
    let id = ResourceId::parse(id).ok()?;
    Some((id.resource_group_name()?.to_string(), id.name().to_string()))
}

/// What a snapshot's tags say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTags {
    /// Run id.
    pub run: String,
    /// Run time.
    pub time: Option<DateTime<Utc>>,
    /// AzlinVM name.
    pub vm: String,
    /// Disk name.
    pub disk: String,
    /// LUN of a data disk, `None` for the OS disk.
    pub lun: Option<i32>,
}

impl SnapshotTags {
    /// The tags of a snapshot of `owner` (with its ownership tags).
    pub fn to_tags(&self, owner: &Owner) -> BTreeMap<String, String> {
        let mut tags = owner.tags();
        tags.insert(TAG_RUN.into(), self.run.clone());
        if let Some(t) = self.time {
            tags.insert(TAG_RUN_TIME.into(), t.to_rfc3339());
        }
        tags.insert(TAG_VM.into(), self.vm.clone());
        tags.insert(TAG_DISK.into(), self.disk.clone());
        tags.insert(
            TAG_LUN.into(),
            self.lun
                .map(|l| l.to_string())
                .unwrap_or_else(|| LUN_OS.to_string()),
        );
        tags
    }

    /// Reads the tags of a snapshot; `None` when it has no run tag.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| tags.get(k).cloned().unwrap_or_default();
        let run = tags.get(TAG_RUN)?.clone();
        Some(Self {
            time: tags
                .get(TAG_RUN_TIME)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            run,
            vm: get(TAG_VM),
            disk: get(TAG_DISK),
            lun: tags.get(TAG_LUN).and_then(|l| l.parse().ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_bounded_and_distinct() {
        let t = DateTime::parse_from_rfc3339("2026-03-29T07:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        assert_eq!(run_name(t), "20260329-070000");
        let a = snapshot_name(
            "nightly",
            "u1",
            "20260329-070000",
            "default-dev-osdisk",
            "/d/os",
        );
        assert_eq!(a, "nightly-20260329-070000-default-dev-osdisk");
        let long_disk = "d".repeat(NAME_MAX);
        let b = snapshot_name("nightly", "u1", "r", &long_disk, "/d/1");
        let c = snapshot_name("nightly", "u1", "r", &long_disk, "/d/2");
        assert!(b.len() <= NAME_MAX && c.len() <= NAME_MAX);
        assert_ne!(b, c);
        assert_eq!(b, snapshot_name("nightly", "u1", "r", &long_disk, "/D/1"));
        assert!(verify_disk_name(&b).len() <= NAME_MAX);
        assert_eq!(
            copy_group("azlin-dev", "eastus2"),
            "azlin-dev-backup-eastus2"
        );
        assert!(copy_group(&"g".repeat(90), "eastus2").len() <= GROUP_MAX);
        let id = snapshot_id("sub", "rg", "s1");
        assert_eq!(
            id,
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s1"
        );
        assert_eq!(group_and_name(&id), Some(("rg".into(), "s1".into())));
    }

    #[test]
    fn tags_round_trip() {
        let owner = Owner {
            kind: "Backup".into(),
            namespace: "ns".into(),
            name: "b".into(),
            uid: "u".into(),
            identity: None,
        };
        let t = SnapshotTags {
            run: "20260101-000000".into(),
            time: Some(
                DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                    .expect("t")
                    .with_timezone(&Utc),
            ),
            vm: "dev".into(),
            disk: "ns-dev-data-1".into(),
            lun: Some(1),
        };
        let tags = t.to_tags(&owner);
        assert_eq!(tags[TAG_LUN], "1");
        assert_eq!(SnapshotTags::from_tags(&tags), Some(t));
        assert_eq!(SnapshotTags::from_tags(&owner.tags()), None);
    }
}
