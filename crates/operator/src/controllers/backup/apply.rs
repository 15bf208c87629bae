//! The writes of the Backup controller: one batch of the same write per reconcile, started
//! and not awaited. A create Azure refuses for good (an error that needs a change, or a
//! source that is gone) is recorded on the run — the snapshot, copy or verification failed —
//! instead of failing the reconcile; a transient error is retried with backoff (what was
//! created is found again by its deterministic name).

use std::collections::BTreeMap;

use azlin_arm::{ArmClient, ArmError};
use serde_json::json;

use super::names;
use super::observe::Observed;
use super::plan::Step;
use super::runs::key;
use crate::api::backup::{Backup, BackupRun, RunState, SnapshotState};
use crate::infra::ok_if_gone;
use crate::reconcile::error::{Class, arm_class};
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{MANAGED_BY, TAG_MANAGED_BY};
use crate::reconcile::{Cx, Error, Outcome, Requeue};

/// A failed create: recorded when it needs a change or its source is gone (404), else kept
/// to retry.
fn sort_error(e: ArmError, first_transient: &mut Option<ArmError>) -> Option<String> {
    if arm_class(&e) == Class::NeedsChange || e.is_not_found() {
        let code = e.code().unwrap_or("Error").to_string();
        return Some(format!("{code}: {}", e.message()));
    }
    if first_transient.is_none() {
        *first_transient = Some(e);
    }
    None
}

fn running(out: &mut Outcome<Backup>) -> Option<&mut BackupRun> {
    out.status
        .runs
        .iter_mut()
        .find(|r| r.state == RunState::Running)
}

/// Performs `step`.
pub async fn apply(
    _backup: &Backup,
    cx: &Cx<'_>,
    _seen: &Observed,
    step: Step,
    out: &mut Outcome<Backup>,
) -> Result<(), Error> {
    let arm = cx.arm()?;
    let compute = arm.compute();
    let mut transient: Option<ArmError> = None;
    match step {
        Step::CreateSnapshots(list) => {
            for s in list {
                let r = compute
                    .snapshots(&s.group)
                    .begin_create_or_update(&s.name, &s.body)
                    .await;
                if let Err(e) = r
                    && let Some(message) = sort_error(e, &mut transient)
                    && let Some(run) = running(out)
                    && let Some(entry) = run
                        .snapshots
                        .iter_mut()
                        .find(|x| x.resource_id.as_deref().map(key) == Some(key(&s.id)))
                {
                    entry.state = SnapshotState::Failed;
                    entry.message = format!("snapshot {}: {message}", s.name);
                }
            }
        }
        Step::StartCopies(list) => {
            for c in list {
                let r = compute
                    .snapshots(&c.group)
                    .begin_create_or_update(&c.name, &c.body)
                    .await;
                if let Err(e) = r
                    && let Some(message) = sort_error(e, &mut transient)
                {
                    record_copy_failure(out, &c.id, &message);
                }
            }
        }
        Step::CreateVerifyDisks(list) => {
            for d in list {
                let r = compute
                    .disks(&d.group)
                    .begin_create_or_update(&d.name, &d.body)
                    .await;
                if let Err(e) = r
                    && let Some(message) = sort_error(e, &mut transient)
                {
                    record_verify_failure(out, &d.name, &message);
                }
            }
        }
        Step::CreateGroups(groups) => {
            let tags = BTreeMap::from([(TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string())]);
            for (name, region) in groups {
                arm.resources()
                    .create_or_update(&name, &region, &tags)
                    .await?;
            }
        }
        Step::Delete(ids) => {
            for id in ids {
                if let Err(e) = delete(&arm, &id).await {
                    match e {
                        Error::Arm(a) if arm_class(&a) == Class::Transient => {
                            transient.get_or_insert(a);
                        }
                        other => return Err(other),
                    }
                }
            }
        }
        Step::Tag(list) => {
            for (id, tags) in list {
                let Some((group, name)) = names::group_and_name(&id) else {
                    continue;
                };
                ok_if_gone(
                    compute
                        .snapshots(&group)
                        .begin_update(&name, &json!({ "tags": tags }))
                        .await,
                )?;
            }
        }
    }
    if let Some(e) = transient {
        return Err(e.into());
    }
    if out.requeue != Requeue::Progress {
        out.requeue = Requeue::Progress;
    }
    Ok(())
}

/// Deletes the snapshot or disk `id` (already gone is fine).
async fn delete(arm: &ArmClient, id: &str) -> Result<(), Error> {
    let Some((group, name)) = names::group_and_name(id) else {
        return Ok(());
    };
    let compute = arm.compute();
    let lower = id.to_ascii_lowercase();
    if lower.contains("/microsoft.compute/disks/") {
        ok_if_gone(compute.disks(&group).begin_delete(&name).await)?;
    } else {
        ok_if_gone(compute.snapshots(&group).begin_delete(&name).await)?;
    }
    Ok(())
}

fn record_copy_failure(out: &mut Outcome<Backup>, copy_id: &str, message: &str) {
    let mut note = None;
    if let Some(run) = running(out) {
        for s in &mut run.snapshots {
            for c in &mut s.copies {
                if c.resource_id.as_deref().map(key) == Some(key(copy_id)) {
                    c.state = SnapshotState::Failed;
                    c.message = format!("copy to {}: {message}", c.region);
                    note = Some(format!(
                        "run {}: copying snapshot {} to {} failed: {message}",
                        run.name, s.name, c.region
                    ));
                }
            }
        }
    }
    if let Some(n) = note {
        out.event(Event::warning("CopyFailed", n));
    }
}

fn record_verify_failure(out: &mut Outcome<Backup>, disk: &str, message: &str) {
    let mut note = None;
    if let Some(run) = running(out)
        && let Some(v) = run.verification.as_mut()
        && v.state == SnapshotState::Pending
    {
        v.state = SnapshotState::Failed;
        v.message = format!("restoring to disk {disk} failed: {message}");
        note = Some(format!("run {}: {}", run.name, v.message));
    }
    if let Some(n) = note {
        out.event(Event::warning("VerificationFailed", n));
    }
}
