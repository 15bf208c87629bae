//! Helpers of the Backup and restore tests: a manual clock, manifests, waits and reads of
//! the emulator's snapshots.

use azlin_arm::compute::{Disk, Snapshot};
use azlin_operator::api::AzlinVM;
use azlin_operator::api::backup::{Backup, BackupRun, RunState};
use azlin_operator::api::conditions::{self, READY, STALLED};
use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions};
use azlin_operator::reconcile::clock::ManualClock;
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{WAIT, resync_and_wait};

/// The UTC time of an RFC 3339 string.
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// The chrono time of a Kubernetes time.
pub fn time_of(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).expect("time")
}

/// An embedded environment whose controllers' clock starts at `start` and moves by hand.
pub async fn env_at(start: &str) -> (EmbeddedEnv, ManualClock) {
    let (options, clock) = EmbeddedOptions::with_manual_clock(t(start));
    let env = EmbeddedEnv::start(options)
        .await
        .expect("embedded environment starts");
    (env, clock)
}

/// AzlinVM `name` in resource group `rg-<name>` (westus2) with a 64 GiB data disk at LUN 1,
/// plus `extra` spec lines.
pub fn vm_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  resourceGroup: rg-{name}\n  location: westus2\n  size: Standard_D2s_v5\n  dataDisks:\n    - lun: 1\n      sizeGiB: 64\n{extra}"
    )
}

/// Backup `name` with these spec lines.
pub fn backup_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: Backup\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}"
    )
}

/// The runs of a Backup, newest first.
pub fn runs(b: &Backup) -> Vec<BackupRun> {
    b.status
        .as_ref()
        .map(|s| s.runs.clone())
        .unwrap_or_default()
}

/// The run named `name`, if listed.
pub fn run(b: &Backup, name: &str) -> Option<BackupRun> {
    runs(b).into_iter().find(|r| r.name == name)
}

/// Whether run `name` is listed and finished.
pub fn finished(b: &Backup, name: &str) -> bool {
    run(b, name).is_some_and(|r| r.state != RunState::Running)
}

/// Whether the Backup is Ready for its generation.
pub fn is_ready(b: &Backup) -> bool {
    b.status.as_ref().is_some_and(|s| {
        s.observed_generation == b.metadata.generation && conditions::is_true(&s.conditions, READY)
    })
}

/// A condition of a Backup.
pub fn condition(b: &Backup, type_: &str) -> Option<Condition> {
    conditions::find(&b.status.as_ref()?.conditions, type_).cloned()
}

/// Waits until Backup `default/name` satisfies `pred` (`what` names the wait).
pub async fn wait_backup(
    env: &EmbeddedEnv,
    name: &str,
    what: &str,
    pred: impl Fn(&Backup) -> bool,
) -> Backup {
    env.wait_for("default", name, pred, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Waits until run `run` of Backup `name` finished and returns the Backup.
pub async fn wait_run(env: &EmbeddedEnv, name: &str, run_name: &str) -> Backup {
    wait_backup(env, name, &format!("run {run_name} finishes"), |b| {
        finished(b, run_name)
    })
    .await
}

/// Waits until AzlinVM `default/name` is Ready.
pub async fn wait_vm_ready(env: &EmbeddedEnv, name: &str) -> AzlinVM {
    env.wait_for(
        "default",
        name,
        |v: &AzlinVM| {
            v.status.as_ref().is_some_and(|s| {
                s.observed_generation == v.metadata.generation
                    && conditions::is_true(&s.conditions, READY)
            })
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("AzlinVM {name} Ready: {e}"))
}

/// Waits until AzlinVM `default/name` is Stalled and returns the condition.
pub async fn wait_vm_stalled(env: &EmbeddedEnv, name: &str) -> Condition {
    let vm = env
        .wait_for(
            "default",
            name,
            |v: &AzlinVM| {
                v.status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, STALLED))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("AzlinVM {name} Stalled: {e}"));
    conditions::find(&vm.status.expect("status").conditions, STALLED)
        .expect("Stalled")
        .clone()
}

/// The snapshots of resource group `rg` (none when it does not exist).
pub async fn snapshots_in(env: &EmbeddedEnv, rg: &str) -> Vec<Snapshot> {
    match env.arm().compute().snapshots(rg).list().await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("listing the snapshots of {rg}: {e}"),
    }
}

/// The disks of resource group `rg` (none when it does not exist).
pub async fn disks_in(env: &EmbeddedEnv, rg: &str) -> Vec<Disk> {
    match env.arm().compute().disks(rg).list().await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("listing the disks of {rg}: {e}"),
    }
}

/// The sorted, distinct run tags of the snapshots of `rg`.
pub async fn run_tags_in(env: &EmbeddedEnv, rg: &str) -> Vec<String> {
    let mut runs: Vec<String> = snapshots_in(env, rg)
        .await
        .iter()
        .filter_map(|s| s.tags.get("azlin-operator-backup-run").cloned())
        .collect();
    runs.sort();
    runs.dedup();
    runs
}

/// Lets the Backup controller finish at least one reconcile that started after the caller
/// changed something (e.g. moved the clock): two resync rounds, since the first may be
/// answered by a reconcile already in flight.
pub async fn settle(env: &EmbeddedEnv) {
    resync_and_wait(env, "Backup", "a Backup reconcile").await;
    resync_and_wait(env, "Backup", "a second Backup reconcile").await;
}
