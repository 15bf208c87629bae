//! The scenario of the reliability suites (`tests/crash.rs`, `tests/arm_faults.rs`): ten
//! AzlinVMs mounting one SharedStorage are created, power-changed and deleted; and what
//! they check in the emulator's inventory afterwards.

#![allow(dead_code)]

use std::collections::BTreeMap;

use azlin_arm_emulator::{EmulatorHandle, RequestRecord};
use azlin_operator::api::conditions::is_true;
use azlin_operator::api::{AzlinVM, SharedStorage};
use azlin_operator::infra::naming::vm_name;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

/// Namespace of the scenario.
pub const NS: &str = "default";
/// Resource group of every VM and the storage.
pub const RG: &str = "rg-reliability";
/// Number of VMs.
pub const VMS: usize = 10;
/// Name of the SharedStorage every VM mounts.
pub const STORAGE: &str = "share";

/// Name of VM `i`.
pub fn vm(i: usize) -> String {
    format!("vm-{i:02}")
}

/// Power state VM `i` is changed to: the first half Stopped, the rest Deallocated.
pub fn new_power(i: usize) -> &'static str {
    if i < VMS / 2 {
        "Stopped"
    } else {
        "Deallocated"
    }
}

/// The SharedStorage (deleted with the object) and the VMs mounting it.
pub fn manifests() -> String {
    let mut yaml = format!(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {{name: {STORAGE}, namespace: {NS}}}\nspec: {{resourceGroup: {RG}, location: westus2, deletionPolicy: Delete}}\n"
    );
    for i in 0..VMS {
        yaml.push_str(&format!(
            "---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: {}, namespace: {NS}}}\nspec: {{resourceGroup: {RG}, location: westus2, size: Standard_D2s_v5, mounts: [{{storageRef: {STORAGE}}}]}}\n",
            vm(i)
        ));
    }
    yaml
}

/// Whether a stored object (JSON) is Ready for its current generation.
pub fn ready(obj: &Value) -> bool {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let conditions: Vec<Condition> = obj
        .pointer("/status/conditions")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    generation.is_some() && generation == observed && is_true(&conditions, "Ready")
}

/// Whether every VM is Ready and, when `power` is given, reports that power state.
pub fn vms_ready(vms: &[Value], power: Option<fn(usize) -> &'static str>) -> bool {
    vms.len() == VMS
        && (0..VMS).all(|i| {
            vms.iter()
                .find(|v| v.pointer("/metadata/name").and_then(Value::as_str) == Some(&vm(i)))
                .is_some_and(|v| {
                    ready(v)
                        && power.is_none_or(|p| {
                            v.pointer("/status/powerState")
                                .and_then(Value::as_str)
                                .is_some_and(|s| s.eq_ignore_ascii_case(p(i)))
                        })
                })
        })
}

/// Patches every VM's `spec.powerState` to [`new_power`].
pub async fn change_power(client: &kube::Client) {
    let api: Api<AzlinVM> = Api::namespaced(client.clone(), NS);
    for i in 0..VMS {
        api.patch(
            &vm(i),
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"powerState": new_power(i)}})),
        )
        .await
        .expect("power patched");
    }
}

/// Deletes every VM and the storage.
pub async fn delete_all(client: &kube::Client) {
    let vms: Api<AzlinVM> = Api::namespaced(client.clone(), NS);
    for i in 0..VMS {
        vms.delete(&vm(i), &DeleteParams::default())
            .await
            .expect("VM deleted");
    }
    let storages: Api<SharedStorage> = Api::namespaced(client.clone(), NS);
    storages
        .delete(STORAGE, &DeleteParams::default())
        .await
        .expect("storage deleted");
}

/// The type of a (lower-cased) resource id, e.g. `microsoft.compute/virtualmachines` or
/// `microsoft.network/virtualnetworks/subnets`; `resourcegroups` for a group.
pub fn type_of(id: &str) -> String {
    let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    match segments.iter().position(|s| *s == "providers") {
        Some(p) => {
            let rest = &segments[p + 1..];
            let mut ty = rest.first().copied().unwrap_or_default().to_string();
            for pair in rest[1..].chunks(2) {
                ty.push('/');
                ty.push_str(pair[0]);
            }
            ty
        }
        None => "resourcegroups".to_string(),
    }
}

/// Resources in the emulator, counted by type.
pub fn counts_by_type(emulator: &EmulatorHandle) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in emulator.resource_ids() {
        *counts.entry(type_of(&id)).or_insert(0) += 1;
    }
    counts
}

/// What the scenario holds in Azure while the objects exist (before deletion): one of each
/// per VM, and the shared network and storage once.
pub fn expected_counts() -> BTreeMap<String, usize> {
    [
        ("resourcegroups", 1),
        ("microsoft.network/networksecuritygroups", 1),
        ("microsoft.network/virtualnetworks", 1),
        ("microsoft.network/virtualnetworks/subnets", 1),
        ("microsoft.storage/storageaccounts", 1),
        ("microsoft.storage/storageaccounts/fileservices/shares", 1),
        ("microsoft.network/networkinterfaces", VMS),
        ("microsoft.compute/virtualmachines", VMS),
        ("microsoft.compute/disks", VMS),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Resources beyond [`expected_counts`] (type and how many too many), and every owner
/// (`azlin-operator-uid` tag) holding two resources of one type: the duplicates.
pub fn duplicates(emulator: &EmulatorHandle) -> Vec<String> {
    let expected = expected_counts();
    let mut found: Vec<String> = counts_by_type(emulator)
        .into_iter()
        .filter_map(|(ty, n)| {
            let want = expected.get(&ty).copied().unwrap_or(0);
            (n > want).then(|| format!("{} {ty} (expected {want})", n))
        })
        .collect();
    let mut owners: BTreeMap<(String, String), usize> = BTreeMap::new();
    for id in emulator.resource_ids() {
        let uid = emulator
            .resource(&id)
            .and_then(|r| r.pointer("/tags/azlin-operator-uid").cloned())
            .and_then(|v| v.as_str().map(str::to_string));
        if let Some(uid) = uid {
            *owners.entry((type_of(&id), uid)).or_insert(0) += 1;
        }
    }
    found.extend(
        owners
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((ty, uid), n)| format!("{n} {ty} owned by {uid}")),
    );
    found
}

/// Requests that name VM `i`'s own resources (VM, NIC, disks, public IP) in their path.
pub fn requests_of_vm(log: &[RequestRecord], i: usize) -> usize {
    let name = format!("/{}", vm_name(NS, &vm(i))).to_ascii_lowercase();
    log.iter()
        .filter(|r| {
            let path = r.path.to_ascii_lowercase();
            path.match_indices(&name).any(|(at, _)| {
                matches!(
                    path[at + name.len()..].chars().next(),
                    None | Some('/' | '-')
                )
            })
        })
        .count()
}

/// Objects of the scenario's kinds still stored (with or without a finalizer).
pub fn remaining_objects(api: &azlin_kubemem::ApiServer) -> Vec<String> {
    ["AzlinVM", "SharedStorage"]
        .iter()
        .flat_map(|kind| api.list("azlin.io/v1alpha1", kind, Some(NS)))
        .map(|o| {
            format!(
                "{} finalizers={}",
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                o.pointer("/metadata/finalizers")
                    .cloned()
                    .unwrap_or(Value::Null)
            )
        })
        .collect()
}

/// One line per object of the scenario: name, phase, Ready's reason and message.
pub fn describe(api: &azlin_kubemem::ApiServer) -> String {
    ["AzlinVM", "SharedStorage"]
        .iter()
        .flat_map(|kind| api.list("azlin.io/v1alpha1", kind, Some(NS)))
        .map(|o| {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
                .unwrap_or(Value::Null);
            format!(
                "{} phase={} power={} ready={} {} {}",
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                o.pointer("/status/phase").unwrap_or(&Value::Null),
                o.pointer("/status/powerState").unwrap_or(&Value::Null),
                ready["status"],
                ready["reason"],
                ready["message"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
