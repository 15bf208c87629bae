//! Restoring an AzlinVM from a Backup run (`spec.restoreFrom`) on the embedded environment:
//! the restored VM's disks are made from the run's snapshots, and whatever is missing stops
//! the VM before anything is created in Azure.

use azlin_operator::api::backup::{Backup, RunState};
use azlin_operator::reconcile::context::EMULATOR_SUBSCRIPTION;
use serde_json::Value;

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;
use support::backup::*;
use support::event_reasons;

const RUN: &str = "20260501-103000";

/// VM `dev` and Backup `nightly` with one successful run ([`RUN`]).
async fn backed_up() -> (azlin_operator::embedded::EmbeddedEnv, Backup) {
    let (env, _clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.apply_yaml(&backup_yaml(
        "nightly",
        "  source: {kind: AzlinVM, name: dev}\n  schedule: \"@daily\"\n  runRequestedAt: \"2026-05-01T10:30:00Z\"\n",
    ))
    .expect("backup");
    let b = wait_run(&env, "nightly", RUN).await;
    assert_eq!(run(&b, RUN).map(|r| r.state), Some(RunState::Succeeded));
    (env, b)
}

fn restore_yaml(name: &str, restore: &str, extra: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  resourceGroup: rg-{name}\n  location: westus2\n  size: Standard_D2s_v5\n  restoreFrom: {restore}\n{extra}"
    )
}

const DATA_DISK: &str = "  dataDisks: [{lun: 1, sizeGiB: 64}]\n";

fn disk_id(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{name}"
    )
}

fn source_of(disk: &Value) -> String {
    disk.pointer("/properties/creationData/sourceResourceId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

async fn group_exists(env: &azlin_operator::embedded::EmbeddedEnv, rg: &str) -> bool {
    env.arm()
        .resources()
        .get(rg)
        .await
        .expect("read group")
        .is_some()
}

#[tokio::test]
async fn restore_creates_a_ready_vm_from_the_runs_snapshots() {
    let (env, b) = backed_up().await;
    let r = run(&b, RUN).expect("run");
    let snapshot_of = |lun: Option<i32>| {
        r.snapshots
            .iter()
            .find(|s| s.lun == lun)
            .and_then(|s| s.resource_id.clone())
            .expect("snapshot id")
            .to_ascii_lowercase()
    };
    env.apply_yaml(&restore_yaml("copy", "{backupRef: nightly}", DATA_DISK))
        .expect("restored vm");
    let vm = wait_vm_ready(&env, "copy").await;
    let os = env
        .emulator()
        .resource(&disk_id("rg-copy", "default-copy-osdisk"))
        .expect("the OS disk exists");
    assert_eq!(
        os.pointer("/properties/creationData/createOption")
            .and_then(Value::as_str),
        Some("Copy")
    );
    assert_eq!(
        source_of(&os),
        snapshot_of(None),
        "made from the OS snapshot"
    );
    let data = env
        .emulator()
        .resource(&disk_id("rg-copy", "default-copy-data-1"))
        .expect("the data disk exists");
    assert_eq!(source_of(&data), snapshot_of(Some(1)));
    let id = vm.status.and_then(|s| s.resource_id).expect("vm id");
    let azure_vm = env.emulator().resource(&id).expect("vm");
    let storage = &azure_vm["properties"]["storageProfile"];
    assert_eq!(storage["osDisk"]["createOption"], "Attach");
    assert_eq!(
        storage["osDisk"]["managedDisk"]["id"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(disk_id("rg-copy", "default-copy-osdisk").to_ascii_lowercase())
    );
    assert!(storage.get("imageReference").is_none_or(Value::is_null));
    assert_eq!(storage["dataDisks"][0]["createOption"], "Attach");
    let creating = env
        .api()
        .list("events.k8s.io/v1", "Event", Some("default"))
        .into_iter()
        .filter(|e| e.pointer("/regarding/name").and_then(Value::as_str) == Some("copy"))
        .filter_map(|e| e["note"].as_str().map(str::to_string))
        .find(|n| n.starts_with("creating VM"))
        .expect("Creating event");
    assert!(
        creating.contains(&format!("from backup run {RUN}")),
        "{creating}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_missing_backup_or_snapshot_stalls_before_anything_is_created() {
    let (env, _b) = backed_up().await;
    env.apply_yaml(&restore_yaml("early", "{backupRef: later}", DATA_DISK))
        .expect("vm");
    let c = wait_vm_stalled(&env, "early").await;
    assert_eq!(c.reason, "BackupNotFound");
    assert!(c.message.contains("spec.restoreFrom.backupRef"), "{c:?}");
    assert!(c.message.contains("nothing was created in Azure"), "{c:?}");
    env.apply_yaml(&restore_yaml(
        "typo",
        "{backupRef: nightly, snapshot: nightly-19990101-000000-x}",
        DATA_DISK,
    ))
    .expect("vm");
    let c = wait_vm_stalled(&env, "typo").await;
    assert_eq!(c.reason, "SnapshotNotFound");
    assert!(c.message.contains("spec.restoreFrom.snapshot"), "{c:?}");
    env.apply_yaml(&restore_yaml("nodata", "{backupRef: nightly}", ""))
        .expect("vm");
    let c = wait_vm_stalled(&env, "nodata").await;
    assert_eq!(c.reason, "RestoreDataDisks");
    assert!(c.message.contains("{lun: 1, sizeGiB: 64}"), "{c:?}");
    for rg in ["rg-early", "rg-typo", "rg-nodata"] {
        assert!(!group_exists(&env, rg).await, "{rg} was not created");
    }
    assert!(
        event_reasons(&env, "default", Some("early"))
            .iter()
            .all(|r| r != "Creating")
    );
    // The Backup appears and runs: the stalled VM goes ahead on its own.
    env.apply_yaml(&backup_yaml(
        "later",
        "  source: {kind: AzlinVM, name: dev}\n  schedule: \"@daily\"\n  runRequestedAt: \"2026-05-01T10:30:00Z\"\n",
    ))
    .expect("backup");
    wait_vm_ready(&env, "early").await;
    env.shutdown().await;
}
