//! A Fleet's members: their names, labels, the AzlinVM each should be, and how an existing
//! member differs from that (already current, patchable in place, or to be replaced).
//!
//! Members are named `<fleet>-<NNN>` (three digits, from 001), taking the lowest ordinal
//! no existing member (including one still being deleted) uses; they carry the labels
//! [`FLEET_LABEL`] and [`TEMPLATE_HASH_LABEL`] and a controller ownerReference to the
//! Fleet, so deleting the Fleet deletes them.

use std::collections::BTreeSet;

use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::azlinvm::AzlinVMSpec;
use crate::api::fleet::{Fleet, FleetTemplate};
use crate::api::{AzlinVM, PowerState};

/// Label naming a member's Fleet (the selector of the scale subresource).
pub const FLEET_LABEL: &str = "azlin.io/fleet";
/// Label with the hash of the template a member was made from.
pub const TEMPLATE_HASH_LABEL: &str = "azlin.io/template-hash";
/// Label on a member created only to keep capacity during interrupting patches.
pub const STAND_IN_LABEL: &str = "azlin.io/stand-in";
/// Highest member ordinal (three digits).
pub const MAX_ORDINAL: u32 = 999;

/// How an existing member relates to the current template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drift {
    /// It is what the template (and the fleet's power state) asks for.
    Current,
    /// It can be patched in place without interrupting it (tags, power, mounts, ...).
    Patch,
    /// It can be patched in place, but the change interrupts it (size, disk growth).
    Disruptive,
    /// It must be replaced: the change is one an AzlinVM cannot make (image, location, ...).
    Replace,
}

/// The name of ordinal `n` of `fleet`.
pub fn member_name(fleet: &str, n: u32) -> String {
    format!("{fleet}-{n:03}")
}

/// The ordinal of member `name` of `fleet`, if it is one of our names.
pub fn ordinal(fleet: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(fleet)?.strip_prefix('-')?;
    (rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

/// The `count` lowest ordinals not in `taken`.
pub fn free_ordinals(taken: &BTreeSet<u32>, count: usize) -> Vec<u32> {
    (1..=MAX_ORDINAL)
        .filter(|n| !taken.contains(n))
        .take(count)
        .collect()
}

/// Hash of a template (the fleet's power state excluded: it is not a rollout).
pub fn template_hash(template: &FleetTemplate) -> String {
    let mut t = template.clone();
    t.spec.power_state = PowerState::Running;
    let bytes = serde_json::to_vec(&t).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))[..10].to_string()
}

/// The spec every member should have: the template's, with the fleet's effective power.
pub fn desired_spec(fleet: &Fleet, power: PowerState) -> AzlinVMSpec {
    let mut spec = fleet.spec.template.spec.clone();
    spec.power_state = power;
    spec
}

/// The member object to apply: labels, annotations, owner and `spec`; a stand-in keeps
/// its [`STAND_IN_LABEL`].
pub fn member(
    fleet: &Fleet,
    name: &str,
    spec: &AzlinVMSpec,
    hash: &str,
    stand_in: bool,
) -> AzlinVM {
    let fleet_name = fleet.name_any();
    let meta = &fleet.spec.template.metadata;
    let mut labels = meta.labels.clone();
    labels.insert(FLEET_LABEL.into(), fleet_name);
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.to_string());
    if stand_in {
        labels.insert(STAND_IN_LABEL.into(), "true".into());
    }
    let mut vm = AzlinVM::new(name, spec.clone());
    vm.metadata = ObjectMeta {
        name: Some(name.to_string()),
        namespace: fleet.namespace(),
        labels: Some(labels),
        annotations: (!meta.annotations.is_empty()).then(|| meta.annotations.clone()),
        owner_references: fleet.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    vm
}

/// Why `current` must be replaced to become `wanted`, if it must: the fields an AzlinVM
/// fixes at creation, and disks that would shrink.
pub fn replace_reason(current: &AzlinVMSpec, wanted: &AzlinVMSpec) -> Option<&'static str> {
    let grows = |from: Option<i32>, to: Option<i32>| match (from, to) {
        (Some(f), Some(t)) => t >= f,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let checks: [(bool, &'static str); 12] = [
        (
            current.resource_group != wanted.resource_group,
            "resourceGroup",
        ),
        (current.location != wanted.location, "location"),
        (current.image != wanted.image, "image"),
        (
            current.admin_username != wanted.admin_username,
            "adminUsername",
        ),
        (
            current.ssh_key_secret_ref != wanted.ssh_key_secret_ref,
            "sshKeySecretRef",
        ),
        (current.spot.is_some() != wanted.spot.is_some(), "spot"),
        (current.network != wanted.network, "network"),
        (current.zone != wanted.zone, "zone"),
        (current.restore_from != wanted.restore_from, "restoreFrom"),
        (current.cloud_init != wanted.cloud_init, "cloudInit"),
        (
            !grows(current.os_disk.size_gib, wanted.os_disk.size_gib),
            "osDisk.sizeGiB",
        ),
        (
            current.data_disks.iter().any(|d| {
                wanted
                    .data_disks
                    .iter()
                    .any(|w| w.lun == d.lun && w.size_gib < d.size_gib)
            }),
            "dataDisks[].sizeGiB",
        ),
    ];
    checks
        .into_iter()
        .find(|(differs, _)| *differs)
        .map(|(_, f)| f)
}

/// How member `vm` differs from `wanted` made from template `hash`.
pub fn drift(vm: &AzlinVM, wanted: &AzlinVMSpec, hash: &str) -> Drift {
    if replace_reason(&vm.spec, wanted).is_some() {
        return Drift::Replace;
    }
    let labelled = vm.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) == Some(hash);
    if vm.spec == *wanted && labelled {
        return Drift::Current;
    }
    let disk_grows = wanted.os_disk.size_gib != vm.spec.os_disk.size_gib
        || wanted.data_disks.iter().any(|w| {
            vm.spec
                .data_disks
                .iter()
                .any(|d| d.lun == w.lun && d.size_gib < w.size_gib)
        });
    if !vm.spec.size.eq_ignore_ascii_case(&wanted.size) || disk_grows {
        Drift::Disruptive
    } else {
        Drift::Patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Fleet {
        serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "Fleet",
            "metadata": {"name": "team", "namespace": "ns", "uid": "f1"},
            "spec": {"replicas": 2, "template": {
                "metadata": {"labels": {"app": "dev"}},
                "spec": {"resourceGroup": "rg", "location": "westus2", "size": "Standard_D2s_v5"}}}
        }))
        .expect("fleet")
    }

    #[test]
    fn names_and_ordinals() {
        assert_eq!(member_name("team", 7), "team-007");
        assert_eq!(ordinal("team", "team-007"), Some(7));
        assert_eq!(ordinal("team", "team-x07"), None);
        assert_eq!(ordinal("team", "teams-007"), None);
        assert_eq!(free_ordinals(&BTreeSet::from([1, 3]), 3), vec![2, 4, 5]);
    }

    #[test]
    fn members_carry_labels_owner_and_the_fleet_power() {
        let f = fleet();
        let hash = template_hash(&f.spec.template);
        let spec = desired_spec(&f, PowerState::Deallocated);
        let m = member(&f, "team-001", &spec, &hash, false);
        assert_eq!(m.labels()[FLEET_LABEL], "team");
        assert_eq!(m.labels()[TEMPLATE_HASH_LABEL], hash);
        assert_eq!(m.labels()["app"], "dev");
        let owner = &m.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Fleet", Some(true))
        );
        assert_eq!(m.spec.power_state, PowerState::Deallocated);
        let mut other = f.clone();
        other.spec.template.spec.power_state = PowerState::Stopped;
        assert_eq!(
            template_hash(&other.spec.template),
            hash,
            "power is not a rollout"
        );
        other.spec.template.spec.size = "Standard_D4s_v5".into();
        assert_ne!(template_hash(&other.spec.template), hash);
    }

    #[test]
    fn drift_table() {
        let f = fleet();
        let hash = template_hash(&f.spec.template);
        let wanted = desired_spec(&f, PowerState::Running);
        let current = member(&f, "team-001", &wanted, &hash, false);
        assert_eq!(drift(&current, &wanted, &hash), Drift::Current);
        type Change = fn(&mut AzlinVMSpec);
        let cases: Vec<(&str, Change, Drift)> = vec![
            (
                "power",
                |s| s.power_state = PowerState::Deallocated,
                Drift::Patch,
            ),
            (
                "tags",
                |s| {
                    s.tags.insert("cost".into(), "x".into());
                },
                Drift::Patch,
            ),
            (
                "size",
                |s| s.size = "Standard_D8s_v5".into(),
                Drift::Disruptive,
            ),
            (
                "os disk grows",
                |s| s.os_disk.size_gib = Some(128),
                Drift::Disruptive,
            ),
            ("image", |s| s.image.sku = "minimal".into(), Drift::Replace),
            ("location", |s| s.location = "eastus".into(), Drift::Replace),
            (
                "cloud-init",
                |s| s.cloud_init = Some("#!/bin/sh\ntrue".into()),
                Drift::Replace,
            ),
        ];
        for (name, change, want) in cases {
            let mut w = wanted.clone();
            change(&mut w);
            assert_eq!(drift(&current, &w, &hash), want, "{name}");
        }
        assert_eq!(
            drift(&current, &wanted, "other"),
            Drift::Patch,
            "relabel only"
        );
    }
}
