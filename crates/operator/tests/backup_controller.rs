//! Whole-controller tests of the Backup controller on the embedded environment: the
//! in-memory Kubernetes API, the ARM emulator over real HTTP and a manual clock.

use std::time::Duration;

use azlin_arm::compute::Snapshot;
use azlin_arm_emulator::ErrorInjection;
use azlin_kubemem::testing::eventually;
use azlin_operator::api::backup::{Backup, BackupRun, RunState, RunTrigger, SnapshotState};
use azlin_operator::api::conditions::{self, READY, STALLED};
use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions};
use azlin_operator::reconcile::clock::ManualClock;
use chrono::{DateTime, Utc};
use serde_json::json;

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;
use support::{WAIT, event_reasons};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

async fn env_at(start: &str) -> (EmbeddedEnv, ManualClock) {
    let (options, clock) = EmbeddedOptions::with_manual_clock(t(start));
    let env = EmbeddedEnv::start(options)
        .await
        .expect("embedded environment starts");
    (env, clock)
}

/// AzlinVM `name` in resource group `rg-<name>` with a data disk at LUN 1.
fn vm_yaml(name: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  resourceGroup: rg-{name}\n  location: westus2\n  size: Standard_D2s_v5\n  dataDisks:\n    - lun: 1\n      sizeGiB: 64\n"
    )
}

fn backup_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: Backup\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

fn runs(b: &Backup) -> Vec<BackupRun> {
    b.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
}

fn finished(b: &Backup) -> Vec<BackupRun> {
    runs(b)
        .into_iter()
        .filter(|r| r.state != RunState::Running)
        .collect()
}

fn time_of(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).expect("time")
}

async fn wait_backup(
    env: &EmbeddedEnv,
    name: &str,
    what: &str,
    pred: impl Fn(&Backup) -> bool,
) -> Backup {
    env.wait_for("default", name, pred, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn wait_vm_ready(env: &EmbeddedEnv, name: &str) {
    env.wait_for(
        "default",
        name,
        |v: &azlin_operator::api::AzlinVM| {
            v.status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, READY))
        },
        WAIT,
    )
    .await
    .expect("AzlinVM Ready");
}

async fn snapshots_in(env: &EmbeddedEnv, rg: &str) -> Vec<Snapshot> {
    match env.arm().compute().snapshots(rg).list().await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("listing snapshots of {rg}: {e}"),
    }
}

fn is_ready(b: &Backup) -> bool {
    b.status.as_ref().is_some_and(|s| {
        s.observed_generation == b.metadata.generation && conditions::is_true(&s.conditions, READY)
    })
}

#[tokio::test]
async fn on_demand_run_snapshots_every_disk_incrementally_with_tags() {
    let (env, _clock) = env_at("2026-06-01T10:00:00Z").await;
    env.apply_yaml(&vm_yaml("dev")).expect("vm");
    env.apply_yaml(&backup_yaml(
        "nightly",
        "  source: {kind: AzlinVM, name: dev}\n  schedule: \"0 2 * * *\"\n  runRequestedAt: \"2026-06-01T09:59:00Z\"\n",
    ))
    .expect("backup");
    let b = wait_backup(&env, "nightly", "the requested run succeeds", |b| {
        is_ready(b) && finished(b).iter().any(|r| r.state == RunState::Succeeded)
    })
    .await;
    let st = b.status.clone().expect("status");
    let run = &st.runs[0];
    assert_eq!(run.name, "20260601-095900");
    assert_eq!(run.trigger, RunTrigger::OnDemand);
    assert_eq!(run.snapshots.len(), 2, "OS and data disk: {run:?}");
    assert!(run.snapshots.iter().all(|s| s.state == SnapshotState::Succeeded));
    assert_eq!(
        st.last_successful_time.as_ref().map(time_of),
        Some(t("2026-06-01T09:59:00Z"))
    );
    assert_eq!(
        st.next_schedule_time.as_ref().map(time_of),
        Some(t("2026-06-02T02:00:00Z"))
    );
    let snaps = snapshots_in(&env, "rg-dev").await;
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        let p = &s.properties;
        assert_eq!(p.incremental, Some(true));
        assert_eq!(p.creation_data.create_option, "Copy");
        let source = p.creation_data.source_resource_id.clone().expect("source");
        assert!(source.to_ascii_lowercase().contains("/disks/default-dev-"), "{source}");
        assert_eq!(s.tags["azlin-operator-kind"], "Backup");
        assert_eq!(s.tags["azlin-operator-name"], "nightly");
        assert_eq!(s.tags["azlin-operator-backup-run"], "20260601-095900");
        assert_eq!(s.tags["azlin-operator-source-vm"], "dev");
    }
    let mut luns: Vec<&str> = snaps
        .iter()
        .map(|s| s.tags["azlin-operator-lun"].as_str())
        .collect();
    luns.sort();
    assert_eq!(luns, ["1", "os"]);
    let reasons = event_reasons(&env, "default", Some("nightly"));
    for r in ["RunStarted", "RunSucceeded"] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
    env.shutdown().await;
}
