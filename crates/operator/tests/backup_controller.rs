//! Whole-controller tests of the Backup controller on the embedded environment: the
//! in-memory Kubernetes API, the ARM emulator over real HTTP and a manual clock.

use std::collections::BTreeSet;

use azlin_arm_emulator::ErrorInjection;
use azlin_kubemem::testing::eventually;
use azlin_operator::api::backup::{Backup, BackupPhase, RunState, RunTrigger, SnapshotState};
use azlin_operator::api::conditions::{RECONCILING, STALLED};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;
use support::backup::*;
use support::{WAIT, assert_no_writes_at_rest, event_reasons, patch_spec};

const HOURLY_DEV: &str = "  source: {kind: AzlinVM, name: dev}\n  schedule: \"0 * * * *\"\n";

fn has_event(env: &azlin_operator::embedded::EmbeddedEnv, name: &str, reason: &str) -> bool {
    event_reasons(env, "default", Some(name))
        .iter()
        .any(|r| r == reason)
}

#[tokio::test]
async fn on_demand_run_snapshots_every_disk_incrementally_with_tags() {
    let (env, _clock) = env_at("2026-06-01T10:00:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    env.apply_yaml(&backup_yaml(
        "nightly",
        "  source: {kind: AzlinVM, name: dev}\n  schedule: \"0 2 * * *\"\n  runRequestedAt: \"2026-06-01T09:59:00Z\"\n",
    ))
    .expect("backup");
    let b = wait_backup(&env, "nightly", "the requested run succeeds", |b| {
        is_ready(b) && finished(b, "20260601-095900")
    })
    .await;
    let st = b.status.clone().expect("status");
    let run = &st.runs[0];
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(run.trigger, RunTrigger::OnDemand);
    assert_eq!(run.snapshots.len(), 2, "OS and data disk: {run:?}");
    assert!(
        run.snapshots
            .iter()
            .all(|s| s.state == SnapshotState::Succeeded && s.size_gib.is_some())
    );
    assert_eq!(st.phase, Some(BackupPhase::Active));
    assert_eq!(
        st.last_successful_time.as_ref().map(time_of),
        Some(t("2026-06-01T09:59:00Z"))
    );
    assert_eq!(
        st.next_schedule_time.as_ref().map(time_of),
        Some(t("2026-06-02T02:00:00Z"))
    );
    assert_eq!(st.last_schedule_time, None, "no scheduled run yet");
    let snaps = snapshots_in(&env, "rg-dev").await;
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        let p = &s.properties;
        assert_eq!(p.incremental, Some(true));
        assert_eq!(p.creation_data.create_option, "Copy");
        let source = p.creation_data.source_resource_id.clone().expect("source");
        assert!(
            source.to_ascii_lowercase().contains("/disks/default-dev-"),
            "{source}"
        );
        assert_eq!(s.tags["azlin-operator-kind"], "Backup");
        assert_eq!(s.tags["azlin-operator-name"], "nightly");
        assert_eq!(s.tags["azlin-operator-backup-run"], "20260601-095900");
        assert_eq!(s.tags["azlin-operator-source-vm"], "dev");
        assert!(
            run.snapshots
                .iter()
                .any(|x| x.name == s.name.clone().unwrap_or_default()),
            "deterministic names recorded in the status"
        );
    }
    let mut luns: Vec<&str> = snaps
        .iter()
        .map(|s| s.tags["azlin-operator-lun"].as_str())
        .collect();
    luns.sort();
    assert_eq!(luns, ["1", "os"]);
    assert!(has_event(&env, "nightly", "RunStarted"));
    assert!(has_event(&env, "nightly", "RunSucceeded"));
    assert_no_writes_at_rest(&env, "Backup", 2).await;
    // A restart of the controllers neither repeats the run nor duplicates a snapshot.
    let mut env = env;
    env.restart_controllers().await;
    settle(&env).await;
    assert_eq!(snapshots_in(&env, "rg-dev").await.len(), 2);
    let b: Backup = Api::namespaced(env.client(), "default")
        .get("nightly")
        .await
        .expect("backup");
    assert_eq!(runs(&b).len(), 1);
    env.shutdown().await;
}

/// 09:00 in Berlin is 08:00 UTC before the change to summer time on 2026-03-29 and 07:00
/// UTC after it; the runs follow the wall clock.
#[tokio::test]
async fn schedule_fires_on_time_in_a_non_utc_zone_across_dst() {
    let (env, clock) = env_at("2026-03-28T07:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.apply_yaml(&backup_yaml(
        "daily",
        "  source: {kind: AzlinVM, name: dev}\n  schedule: \"0 9 * * *\"\n  timeZone: Europe/Berlin\n",
    ))
    .expect("backup");
    wait_backup(&env, "daily", "the first slot is scheduled", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.next_schedule_time.as_ref())
            .map(time_of)
            == Some(t("2026-03-28T08:00:00Z"))
    })
    .await;
    clock.set(t("2026-03-28T07:59:59Z"));
    settle(&env).await;
    let b: Backup = Api::namespaced(env.client(), "default")
        .get("daily")
        .await
        .expect("backup");
    assert!(
        runs(&b).is_empty(),
        "nothing before 09:00 CET: {:?}",
        runs(&b)
    );
    clock.set(t("2026-03-28T08:00:00Z"));
    let b = wait_run(&env, "daily", "20260328-080000").await;
    let st = b.status.clone().expect("status");
    assert_eq!(
        st.last_schedule_time.as_ref().map(time_of),
        Some(t("2026-03-28T08:00:00Z"))
    );
    assert_eq!(
        st.next_schedule_time.as_ref().map(time_of),
        Some(t("2026-03-29T07:00:00Z")),
        "09:00 CEST"
    );
    clock.set(t("2026-03-29T06:59:00Z"));
    settle(&env).await;
    let b: Backup = Api::namespaced(env.client(), "default")
        .get("daily")
        .await
        .expect("backup");
    assert_eq!(runs(&b).len(), 1);
    clock.set(t("2026-03-29T07:00:00Z"));
    let b = wait_run(&env, "daily", "20260329-070000").await;
    assert_eq!(
        run(&b, "20260329-070000").map(|r| r.state),
        Some(RunState::Succeeded)
    );
    assert_eq!(
        b.status
            .and_then(|s| s.next_schedule_time)
            .as_ref()
            .map(time_of),
        Some(t("2026-03-30T07:00:00Z"))
    );
    env.shutdown().await;
}

/// Two hourly runs pass verification, two fail it (the test disk cannot be created), two
/// fail outright (their snapshots fail): `count: 2` keeps the two newest successful runs,
/// `keepLastGood` the last verified one, and the failed runs' snapshots are deleted.
#[tokio::test]
async fn retention_keeps_n_and_the_last_good_run_after_failed_runs() {
    let (env, clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.apply_yaml(&backup_yaml(
        "hourly",
        &format!("{HOURLY_DEV}  verify: true\n  retention: {{count: 2, keepLastGood: true}}\n"),
    ))
    .expect("backup");
    settle(&env).await;
    let snapshot_failures = || ErrorInjection {
        times: 2,
        ..ErrorInjection::failed_operation("PUT", "/snapshots/", 500, "InternalDiskManagementError")
    };
    for hour in 11..=16 {
        match hour {
            13 => env
                .emulator()
                .inject_error(ErrorInjection::failed_operation(
                    "PUT",
                    "-verify",
                    500,
                    "InternalDiskManagementError",
                )),
            14 => env.emulator().inject_error(ErrorInjection::once(
                "PUT",
                "-verify",
                400,
                "InvalidParameter",
            )),
            15 | 16 => env.emulator().inject_error(snapshot_failures()),
            _ => {}
        }
        clock.set(t(&format!("2026-05-01T{hour}:00:00Z")));
        wait_run(&env, "hourly", &format!("20260501-{hour}0000")).await;
    }
    let b = wait_backup(&env, "hourly", "the failed runs are pruned", |b| {
        finished(b, "20260501-160000") && run(b, "20260501-110000").is_none()
    })
    .await;
    let state = |name: &str| run(&b, name).map(|r| (r.state, r.is_good()));
    assert_eq!(state("20260501-120000"), Some((RunState::Succeeded, true)));
    assert_eq!(state("20260501-130000"), Some((RunState::Succeeded, false)));
    assert_eq!(state("20260501-140000"), Some((RunState::Succeeded, false)));
    assert_eq!(state("20260501-150000"), Some((RunState::Failed, false)));
    assert_eq!(state("20260501-160000"), Some((RunState::Failed, false)));
    let failed_check = run(&b, "20260501-140000")
        .and_then(|r| r.verification)
        .expect("verification recorded");
    assert_eq!(failed_check.state, SnapshotState::Failed);
    assert!(
        failed_check.message.contains("InvalidParameter"),
        "{failed_check:?}"
    );
    eventually(WAIT, "Azure keeps only the kept runs", || async {
        let tags = run_tags_in(&env, "rg-dev").await;
        (tags == ["20260501-120000", "20260501-130000", "20260501-140000"]).then_some(())
    })
    .await;
    assert!(
        disks_in(&env, "rg-dev").await.iter().all(|d| !d
            .name
            .clone()
            .unwrap_or_default()
            .ends_with("-verify")),
        "verification disks are deleted"
    );
    let reconciling = condition(&b, RECONCILING).expect("Reconciling");
    assert_eq!(reconciling.reason, "LastRunFailed", "{reconciling:?}");
    for reason in ["Pruned", "RunFailed", "VerificationFailed", "RunSucceeded"] {
        assert!(has_event(&env, "hourly", reason), "{reason}");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn cross_region_copies_complete_and_are_pruned_with_their_runs() {
    let (env, clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.apply_yaml(&backup_yaml(
        "dr",
        &format!("{HOURLY_DEV}  copyToRegions: [eastus2]\n  retention: {{count: 1}}\n"),
    ))
    .expect("backup");
    settle(&env).await;
    clock.set(t("2026-05-01T11:00:00Z"));
    let b = wait_run(&env, "dr", "20260501-110000").await;
    let first = run(&b, "20260501-110000").expect("run");
    assert_eq!(first.state, RunState::Succeeded, "{first:?}");
    for s in &first.snapshots {
        assert_eq!(s.copies.len(), 1);
        assert_eq!(s.copies[0].region, "eastus2");
        assert_eq!(s.copies[0].state, SnapshotState::Succeeded);
        assert_eq!(s.copies[0].completion_percent, Some(100));
    }
    let group = env
        .arm()
        .resources()
        .get("rg-dev-backup-eastus2")
        .await
        .expect("read group")
        .expect("the copy group exists");
    assert_eq!(group.location.as_deref(), Some("eastus2"));
    let copies = snapshots_in(&env, "rg-dev-backup-eastus2").await;
    assert_eq!(copies.len(), 2);
    for c in &copies {
        assert_eq!(c.location.as_deref(), Some("eastus2"));
        assert_eq!(c.properties.creation_data.create_option, "CopyStart");
        assert_eq!(c.properties.completion_percent, Some(100.0));
    }
    clock.set(t("2026-05-01T12:00:00Z"));
    wait_run(&env, "dr", "20260501-120000").await;
    eventually(WAIT, "the older run is pruned in both regions", || async {
        let here = run_tags_in(&env, "rg-dev").await;
        let there = run_tags_in(&env, "rg-dev-backup-eastus2").await;
        (here == ["20260501-120000"] && there == ["20260501-120000"]).then_some(())
    })
    .await;
    assert!(has_event(&env, "dr", "Pruned"));
    env.shutdown().await;
}

/// The test disk cannot be created (Azure refuses it): the run records the failed
/// verification, the Backup reports it, and nothing is left behind.
#[tokio::test]
async fn verify_records_a_failed_restore() {
    let (env, _clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.emulator().inject_error(ErrorInjection::once(
        "PUT",
        "-verify",
        409,
        "OperationNotAllowed",
    ));
    env.emulator().inject_error(ErrorInjection::once(
        "PUT",
        "-verify",
        400,
        "InvalidParameter",
    ));
    env.apply_yaml(&backup_yaml(
        "checked",
        &format!("{HOURLY_DEV}  verify: true\n  runRequestedAt: \"2026-05-01T10:30:00Z\"\n"),
    ))
    .expect("backup");
    let b = wait_run(&env, "checked", "20260501-103000").await;
    let r = run(&b, "20260501-103000").expect("run");
    assert_eq!(
        r.state,
        RunState::Succeeded,
        "the snapshots are fine: {r:?}"
    );
    let v = r.verification.clone().expect("verification");
    assert_eq!(v.state, SnapshotState::Failed);
    assert!(v.message.contains("InvalidParameter"), "{v:?}");
    assert!(!r.is_good());
    let b = wait_backup(
        &env,
        "checked",
        "the Backup reports the failed check",
        |b| condition(b, RECONCILING).is_some_and(|c| c.reason == "VerificationFailed"),
    )
    .await;
    assert!(
        condition(&b, RECONCILING)
            .expect("condition")
            .message
            .contains("could not be restored")
    );
    assert!(has_event(&env, "checked", "VerificationFailed"));
    assert!(
        disks_in(&env, "rg-dev")
            .await
            .iter()
            .all(|d| { !d.name.clone().unwrap_or_default().ends_with("-verify") })
    );
    env.shutdown().await;
}

#[tokio::test]
async fn fleet_source_snapshots_every_member() {
    let (env, _clock) = env_at("2026-05-01T10:30:00Z").await;
    // The Fleet controller makes the members team-001 and team-002.
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: Fleet\nmetadata: {name: team, namespace: default}\nspec:\n  replicas: 2\n  template:\n    spec: {resourceGroup: rg-team, location: westus2, size: Standard_D2s_v5, dataDisks: [{lun: 1, sizeGiB: 64}]}\n",
    )
    .expect("fleet");
    env.apply_yaml(&vm_yaml("solo", ""))
        .expect("a VM outside the fleet");
    for vm in ["team-001", "team-002", "solo"] {
        wait_vm_ready(&env, vm).await;
    }
    env.apply_yaml(&backup_yaml(
        "team",
        "  source: {kind: Fleet, name: team}\n  schedule: \"@daily\"\n  runRequestedAt: \"2026-05-01T10:30:00Z\"\n",
    ))
    .expect("backup");
    let b = wait_run(&env, "team", "20260501-103000").await;
    let r = run(&b, "20260501-103000").expect("run");
    assert_eq!(r.state, RunState::Succeeded, "{r:?}");
    let vms: BTreeSet<&str> = r.snapshots.iter().map(|s| s.vm.as_str()).collect();
    assert_eq!(vms, BTreeSet::from(["team-001", "team-002"]));
    assert_eq!(r.snapshots.len(), 4, "OS and data disk of each member");
    assert_eq!(snapshots_in(&env, "rg-team").await.len(), 4);
    assert!(snapshots_in(&env, "rg-solo").await.is_empty());
    env.shutdown().await;
}

/// The operator is down for five hourly slots: on start it makes up the latest one, once.
#[tokio::test]
async fn missed_slots_catch_up_once() {
    let (mut env, clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.apply_yaml(&backup_yaml("hourly", HOURLY_DEV))
        .expect("backup");
    settle(&env).await;
    clock.set(t("2026-05-01T11:00:00Z"));
    wait_run(&env, "hourly", "20260501-110000").await;
    env.stop_controllers().await;
    clock.set(t("2026-05-01T16:30:00Z"));
    env.start_controllers();
    let b = wait_run(&env, "hourly", "20260501-160000").await;
    settle(&env).await;
    let b2: Backup = Api::namespaced(env.client(), "default")
        .get("hourly")
        .await
        .expect("backup");
    let names: Vec<String> = runs(&b2).iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, ["20260501-160000", "20260501-110000"], "{b:?}");
    let st = b2.status.expect("status");
    assert_eq!(
        st.last_schedule_time.as_ref().map(time_of),
        Some(t("2026-05-01T16:00:00Z"))
    );
    assert_eq!(
        st.next_schedule_time.as_ref().map(time_of),
        Some(t("2026-05-01T17:00:00Z"))
    );
    env.shutdown().await;
}

#[tokio::test]
async fn suspend_stops_scheduled_runs_without_catching_up() {
    let (env, clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    env.apply_yaml(&backup_yaml(
        "paused",
        &format!("{HOURLY_DEV}  suspend: true\n"),
    ))
    .expect("backup");
    let b = wait_backup(&env, "paused", "Suspended and Ready", |b| {
        is_ready(b) && b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Suspended)
    })
    .await;
    assert_eq!(b.status.and_then(|s| s.next_schedule_time), None);
    clock.set(t("2026-05-01T13:10:00Z"));
    settle(&env).await;
    let api: Api<Backup> = Api::namespaced(env.client(), "default");
    assert!(runs(&api.get("paused").await.expect("get")).is_empty());
    // An explicit request still runs while suspended.
    patch_spec::<Backup>(
        &env,
        "default",
        "paused",
        json!({"runRequestedAt": "2026-05-01T13:05:00Z"}),
    )
    .await;
    wait_run(&env, "paused", "20260501-130500").await;
    clock.set(t("2026-05-01T13:20:00Z"));
    patch_spec::<Backup>(&env, "default", "paused", json!({"suspend": false})).await;
    let b = wait_backup(&env, "paused", "scheduled again from now", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.next_schedule_time.as_ref())
            .map(time_of)
            == Some(t("2026-05-01T14:00:00Z"))
    })
    .await;
    assert_eq!(
        runs(&b).len(),
        1,
        "the slots missed while suspended are not made up"
    );
    clock.set(t("2026-05-01T14:00:00Z"));
    let b = wait_run(&env, "paused", "20260501-140000").await;
    assert_eq!(
        run(&b, "20260501-140000").map(|r| r.trigger),
        Some(RunTrigger::Schedule)
    );
    env.shutdown().await;
}

#[tokio::test]
async fn deletion_deletes_its_snapshots_or_retains_them_and_never_touches_others() {
    let (env, _clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&vm_yaml("dev", "")).expect("vm");
    wait_vm_ready(&env, "dev").await;
    // A snapshot someone else took of the same disk.
    let os_disk = env
        .arm()
        .compute()
        .virtual_machines("rg-dev")
        .get("default-dev")
        .await
        .expect("get vm")
        .and_then(|v| v.properties.storage_profile?.os_disk?.managed_disk?.id)
        .expect("os disk id");
    env.arm()
        .compute()
        .snapshots("rg-dev")
        .create_incremental("manual", "westus2", &os_disk, &Default::default())
        .await
        .expect("manual snapshot");
    let requested = "  runRequestedAt: \"2026-05-01T10:30:00Z\"\n";
    env.apply_yaml(&backup_yaml("gone", &format!("{HOURLY_DEV}{requested}")))
        .expect("backup gone");
    env.apply_yaml(&backup_yaml(
        "kept",
        &format!("{HOURLY_DEV}{requested}  deletionPolicy: Retain\n"),
    ))
    .expect("backup kept");
    wait_run(&env, "gone", "20260501-103000").await;
    wait_run(&env, "kept", "20260501-103000").await;
    assert_eq!(snapshots_in(&env, "rg-dev").await.len(), 5);
    let api: Api<Backup> = Api::namespaced(env.client(), "default");
    api.delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone::<Backup>("default", "gone", WAIT)
        .await
        .expect("Backup gone is deleted");
    let left = snapshots_in(&env, "rg-dev").await;
    let owner = |s: &azlin_arm::compute::Snapshot| {
        s.tags
            .get("azlin-operator-name")
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|s| owner(s) != "gone"));
    api.delete("kept", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone::<Backup>("default", "kept", WAIT)
        .await
        .expect("Backup kept is deleted");
    let left = snapshots_in(&env, "rg-dev").await;
    assert_eq!(left.len(), 3, "Retain keeps them: {left:?}");
    for s in left.iter().filter(|s| owner(s) == "kept") {
        assert_eq!(s.tags["azlin-operator-released"], "true");
    }
    assert!(
        left.iter()
            .any(|s| s.name.as_deref() == Some("manual") && s.tags.is_empty()),
        "the snapshot it did not take is untouched"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn invalid_schedule_and_missing_source_are_stalled_with_the_fix() {
    let (env, _clock) = env_at("2026-05-01T10:30:00Z").await;
    env.apply_yaml(&backup_yaml(
        "backwards",
        "  source: {kind: AzlinVM, name: dev}\n  schedule: \"5-1 * * * *\"\n",
    ))
    .expect("a backwards range passes the schema");
    env.apply_yaml(&backup_yaml(
        "orphan",
        "  source: {kind: AzlinVM, name: nope}\n  schedule: \"@daily\"\n",
    ))
    .expect("backup");
    let stalled = |name: &'static str| {
        let env = &env;
        async move {
            let b = wait_backup(env, name, "Stalled", |b| {
                condition(b, STALLED).is_some_and(|c| c.status == "True")
            })
            .await;
            condition(&b, STALLED).expect("Stalled")
        }
    };
    let c = stalled("backwards").await;
    assert_eq!(c.reason, "InvalidSpec");
    assert!(c.message.contains("spec.schedule"), "{c:?}");
    assert!(c.message.contains("five fields"), "{c:?}");
    let c = stalled("orphan").await;
    assert_eq!(c.reason, "SourceNotFound");
    assert!(c.message.contains("spec.source"), "{c:?}");
    assert!(c.message.contains("AzlinVM nope not found"), "{c:?}");
    env.shutdown().await;
}
