//! The pure decisions of the Backup controller while the object is kept: bring the runs up
//! to date with Azure, move the running run on (snapshots, then cross-region copies and
//! verification), start a due or requested run, apply retention, and report.
//!
//! One write per reconcile, in this order: the running run's next write; a new run's
//! snapshots; deletes of what retention no longer keeps (and of verification disks and
//! failed copies). Long operations are started, never awaited: the next reconcile sees
//! their progress in Azure.

use std::collections::{BTreeMap, BTreeSet};

use azlin_arm::compute::{Disk, Snapshot};
use chrono::{DateTime, Utc};

use super::names;
use super::observe::{AzState, Member, Observed, Source};
use super::retention::{kept_runs, prune};
use super::runs::{self, NewResource, from_time, key, to_time};
use super::schedule::{self, Decision, Schedule, Stored};
use crate::api::backup::{
    Backup, BackupPhase, BackupRun, BackupSourceKind, BackupStatus, RunState, RunTrigger,
    SnapshotCopy, SnapshotState, SnapshotStatus, Verification,
};
use crate::api::conditions::Health;
use crate::reconcile::events::Event;
use crate::reconcile::{Outcome, Plan, PlanCx, Requeue};

/// One write of the Backup controller.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Take (or take again) these incremental snapshots.
    CreateSnapshots(Vec<NewResource<Snapshot>>),
    /// Create these copy resource groups: (name, region).
    CreateGroups(Vec<(String, String)>),
    /// Start these cross-region copies.
    StartCopies(Vec<NewResource<Snapshot>>),
    /// Create these verification disks.
    CreateVerifyDisks(Vec<NewResource<Disk>>),
    /// Delete these snapshots and disks (ARM ids).
    Delete(Vec<String>),
    /// Replace the tags of these snapshots: (id, tags).
    Tag(Vec<(String, BTreeMap<String, String>)>),
}

/// Copies are looked at every this many progress intervals.
const COPY_POLL_FACTOR: u32 = 6;

/// How the running run moves on.
enum Progress {
    /// Take this step (what it does).
    Step(Step, String),
    /// Azure is working (on what).
    Wait(String),
    /// Cross-region copies are transferring (they can take hours): look again less often.
    Copying(String),
    /// The run finished.
    Done,
}

/// The schedule as stored in the status.
pub fn stored(backup: &Backup) -> Stored {
    let st = backup.status.as_ref();
    Stored {
        next: st
            .and_then(|s| s.next_schedule_time.as_ref())
            .map(from_time),
        current: st.is_some_and(|s| s.observed_generation == backup.metadata.generation),
        last: st
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(from_time),
    }
}

/// The run to start now, if any: a new `runRequestedAt` first, else a due slot.
fn wanted_run(
    backup: &Backup,
    old: &BackupStatus,
    decision: &Decision,
) -> Option<(DateTime<Utc>, RunTrigger)> {
    if let Some(t) = &backup.spec.run_requested_at
        && old.last_run_requested_at.as_ref() != Some(t)
    {
        return Some((from_time(t), RunTrigger::OnDemand));
    }
    decision.due.map(|d| (d, RunTrigger::Schedule))
}

/// Whether a reconcile at `now` may start a run (so observe reads the source VMs).
pub fn run_wanted(backup: &Backup, now: DateTime<Utc>) -> bool {
    let old = backup.status.clone().unwrap_or_default();
    if old.runs.iter().any(|r| r.state == RunState::Running) {
        return false;
    }
    let Ok(s) = Schedule::parse(&backup.spec.schedule, &backup.spec.time_zone, now) else {
        return false;
    };
    let decision = schedule::decide(&s, backup.spec.suspend, stored(backup), now);
    wanted_run(backup, &old, &decision).is_some()
}

fn outcome(st: BackupStatus, phase: BackupPhase, health: Health) -> Outcome<Backup> {
    let mut st = st;
    st.phase = Some(phase);
    Outcome::new(st, health)
}

fn stalled(st: BackupStatus, reason: &str, message: String) -> Plan<Backup> {
    Plan::report(outcome(
        st,
        BackupPhase::Failed,
        Health::stalled(reason, message),
    ))
}

pub(super) fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan of a Backup that is kept.
pub fn plan(backup: &Backup, seen: &Observed, cx: &PlanCx<'_>) -> Plan<Backup> {
    let now = cx.now;
    let spec = &backup.spec;
    let old = backup.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let schedule = match Schedule::parse(&spec.schedule, &spec.time_zone, now) {
        Ok(s) => s,
        Err(e) => {
            return stalled(
                st,
                "InvalidSpec",
                format!("invalid {}: {}", e.field, e.message),
            );
        }
    };
    let mut events = Vec::new();
    runs::refresh(&mut st.runs, seen, &mut events);
    let mut step: Option<Step> = None;
    let mut working: Option<(&str, String)> = None;
    if let Some(run) = st.runs.iter_mut().find(|r| r.state == RunState::Running) {
        match advance(run, seen, now, &mut events) {
            Progress::Step(s, m) => {
                step = Some(s);
                working = Some(("Running", m));
            }
            Progress::Wait(m) => working = Some(("Running", m)),
            Progress::Copying(m) => working = Some(("Copying", m)),
            Progress::Done => {}
        }
    }
    let decision = schedule::decide(&schedule, spec.suspend, stored(backup), now);
    st.next_schedule_time = decision.next.map(to_time);
    let running = st.runs.iter().any(|r| r.state == RunState::Running);
    if !running
        && step.is_none()
        && let Source::Members(members) = &seen.source
        && let Some((time, trigger)) = wanted_run(backup, &old, &decision)
    {
        let started = match start(backup, seen, members, &mut st.runs, time, trigger) {
            Start::Started {
                step: s,
                message,
                event,
            } => {
                step = s;
                working = Some(("Running", message));
                events.push(event);
                true
            }
            Start::Done => true,
            Start::Wait(m) => {
                working = Some(("WaitingForSource", m));
                false
            }
        };
        if started {
            match trigger {
                RunTrigger::OnDemand => st.last_run_requested_at = spec.run_requested_at.clone(),
                RunTrigger::Schedule | RunTrigger::Recovered => {
                    st.last_schedule_time = Some(to_time(time));
                    st.next_schedule_time = decision.following.map(to_time);
                }
            }
        }
    }
    let kept = kept_runs(&st.runs, &spec.retention, schedule.tz());
    if step.is_none()
        && let Some((s, event)) = prune(&st.runs, &kept, seen, &spec.retention)
    {
        step = Some(s);
        events.extend(event);
    }
    runs::tidy(&mut st.runs, &|r| kept.contains(&r.name), seen);
    let newest_success = st
        .runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .map(|r| from_time(&r.time))
        .max();
    st.last_successful_time = newest_success
        .max(old.last_successful_time.as_ref().map(from_time))
        .map(to_time);
    let mut out = report(backup, seen, st, working, &schedule, step.is_some());
    if out.requeue == Requeue::Progress
        && matches!(&out.health, Health::Progressing { reason, .. } if reason == "Copying")
    {
        out.requeue = Requeue::After(cx.settings.progress_requeue * COPY_POLL_FACTOR);
    }
    out.events.extend(events);
    Plan { step, out }
}

/// Status, health, phase and requeue once the step (if any) is chosen.
fn report(
    backup: &Backup,
    seen: &Observed,
    st: BackupStatus,
    working: Option<(&str, String)>,
    schedule: &Schedule,
    stepping: bool,
) -> Outcome<Backup> {
    let spec = &backup.spec;
    let next = st.next_schedule_time.as_ref().map(from_time);
    let next_text = match next {
        Some(n) => format!(
            "next run at {} ({} {})",
            n.to_rfc3339(),
            spec.time_zone,
            n.with_timezone(&schedule.tz()).format("%Y-%m-%d %H:%M")
        ),
        None => "suspended: no scheduled runs".to_string(),
    };
    let deleting = seen.snapshots.iter().any(|f| f.state == AzState::Deleting)
        || seen
            .verify_disks
            .iter()
            .any(|d| d.state == AzState::Deleting);
    let requeue = if stepping || deleting {
        Requeue::Progress
    } else {
        next.map(Requeue::At).unwrap_or(Requeue::Resync)
    };
    if let Some((reason, message)) = working {
        let phase = if reason == "WaitingForSource" {
            BackupPhase::Pending
        } else {
            BackupPhase::Running
        };
        let mut out = outcome(st, phase, Health::progressing(reason, message));
        out.requeue = Requeue::Progress;
        return out;
    }
    if let Source::NotFound(m) = &seen.source {
        let message = format!(
            "spec.source: {m}; create it or correct spec.source.name (the snapshots taken so far are kept)"
        );
        let mut out = outcome(
            st,
            BackupPhase::Failed,
            Health::stalled("SourceNotFound", message),
        );
        if stepping {
            out.requeue = Requeue::Progress;
        }
        return out;
    }
    let phase = if spec.suspend {
        BackupPhase::Suspended
    } else if st.runs.is_empty() && st.last_schedule_time.is_none() {
        BackupPhase::Pending
    } else {
        BackupPhase::Active
    };
    let kept = st
        .runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .count();
    let health = match st.runs.iter().find(|r| r.state != RunState::Running) {
        Some(r) if r.state == RunState::Failed => Health::progressing(
            "LastRunFailed",
            format!("run {} failed: {}; {next_text}", r.name, r.message),
        ),
        Some(r) if !r.is_good() => Health::progressing(
            "VerificationFailed",
            format!(
                "run {} could not be restored: {}; {next_text}",
                r.name,
                r.verification
                    .as_ref()
                    .map(|v| v.message.as_str())
                    .unwrap_or_default()
            ),
        ),
        Some(r) => Health::ready(
            "Succeeded",
            format!(
                "run {} succeeded ({} snapshots); successful runs kept: {kept}; {next_text}",
                r.name,
                r.snapshots.len()
            ),
        ),
        None => Health::ready("Scheduled", format!("no run yet; {next_text}")),
    };
    let mut out = outcome(st, phase, health);
    out.requeue = requeue;
    out
}

/// Moves the running `run` on by one step.
fn advance(
    run: &mut BackupRun,
    seen: &Observed,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Progress {
    let found = runs::by_id(&seen.snapshots);
    refuse_foreign(run, seen);
    let exists = |id: Option<&str>| id.is_some_and(|id| found.contains_key(&key(id)));
    let missing: Vec<NewResource<Snapshot>> = run
        .snapshots
        .iter()
        .filter(|s| s.state == SnapshotState::Pending && !exists(s.resource_id.as_deref()))
        .filter_map(|s| runs::snapshot_body(&seen.owner, run, s))
        .collect();
    let total = run.snapshots.len();
    if !missing.is_empty() {
        let message = format!(
            "run {}: snapshotting {} of {total} disks",
            run.name,
            missing.len()
        );
        return Progress::Step(Step::CreateSnapshots(missing), message);
    }
    let pending = count(&run.snapshots, SnapshotState::Pending);
    if pending > 0 {
        return Progress::Wait(format!(
            "run {}: {} of {total} snapshots complete",
            run.name,
            total - pending
        ));
    }
    let failed: Vec<&SnapshotStatus> = run
        .snapshots
        .iter()
        .filter(|s| s.state == SnapshotState::Failed)
        .collect();
    if !failed.is_empty() || total == 0 {
        run.message = if total == 0 {
            "no disks to snapshot".to_string()
        } else {
            format!(
                "{} of {total} snapshots failed: {}",
                failed.len(),
                list(failed.iter().map(|s| if s.message.is_empty() {
                    s.name.clone()
                } else {
                    s.message.clone()
                }))
            )
        };
        run.state = RunState::Failed;
        run.completed_at = Some(to_time(now));
        events.push(Event::warning(
            "RunFailed",
            format!("run {}: {}", run.name, run.message),
        ));
        return Progress::Done;
    }
    if let Some(p) = copies(run, seen) {
        return p;
    }
    if let Some(p) = verify(run, seen, events) {
        return p;
    }
    let waiting: Vec<String> = run
        .snapshots
        .iter()
        .flat_map(|s| s.copies.iter().map(move |c| (s, c)))
        .filter(|(_, c)| c.state == SnapshotState::Pending)
        .map(|(s, c)| {
            format!(
                "{} to {} ({}%)",
                s.name,
                c.region,
                c.completion_percent.unwrap_or(0)
            )
        })
        .collect();
    if !waiting.is_empty() {
        return Progress::Copying(format!("run {}: copying {}", run.name, list(waiting)));
    }
    if run
        .verification
        .as_ref()
        .is_some_and(|v| v.state == SnapshotState::Pending)
    {
        return Progress::Wait(format!(
            "run {}: test-restoring the OS disk snapshots",
            run.name
        ));
    }
    run.state = RunState::Succeeded;
    run.completed_at = Some(to_time(now));
    run.message = summary(run);
    events.push(Event::normal(
        "RunSucceeded",
        format!("run {}: {}", run.name, run.message),
    ));
    Progress::Done
}

/// Marks failed the pending snapshots and copies of `run` whose name is taken by a
/// snapshot this Backup did not make: it is never overwritten.
fn refuse_foreign(run: &mut BackupRun, seen: &Observed) {
    let taken = |id: &Option<String>| {
        id.as_deref()
            .is_some_and(|id| seen.foreign.contains(&key(id)))
    };
    const TAKEN: &str = "exists but was not made by this Backup (its tags differ); it is never touched: delete or rename it";
    for s in &mut run.snapshots {
        if s.state == SnapshotState::Pending && taken(&s.resource_id) {
            s.state = SnapshotState::Failed;
            s.message = format!("snapshot {} {TAKEN}", s.name);
        }
        for c in &mut s.copies {
            if c.state == SnapshotState::Pending && taken(&c.resource_id) {
                c.state = SnapshotState::Failed;
                c.message = format!("copy {} in {} {TAKEN}", s.name, c.region);
            }
        }
    }
}

fn count(snapshots: &[SnapshotStatus], state: SnapshotState) -> usize {
    snapshots.iter().filter(|s| s.state == state).count()
}

/// What a successful run did.
fn summary(run: &BackupRun) -> String {
    let vms: BTreeSet<&str> = run.snapshots.iter().map(|s| s.vm.as_str()).collect();
    let mut m = format!("{} snapshots of VM(s) {}", run.snapshots.len(), list(vms));
    let copies: Vec<&SnapshotCopy> = run.snapshots.iter().flat_map(|s| &s.copies).collect();
    if !copies.is_empty() {
        let regions: BTreeSet<&str> = copies.iter().map(|c| c.region.as_str()).collect();
        let failed = copies
            .iter()
            .filter(|c| c.state == SnapshotState::Failed)
            .count();
        m.push_str(&format!("; copied to {}", list(regions)));
        if failed > 0 {
            m.push_str(&format!(" ({failed} copies failed)"));
        }
    }
    match &run.verification {
        Some(v) if v.state == SnapshotState::Succeeded => m.push_str("; verified"),
        Some(v) if v.state == SnapshotState::Failed => {
            m.push_str(&format!("; verification failed: {}", v.message));
        }
        _ => {}
    }
    m
}

/// The next copy write of a run whose snapshots all succeeded: create a missing copy
/// group, or start the copies not started yet.
fn copies(run: &BackupRun, seen: &Observed) -> Option<Progress> {
    let found = runs::by_id(&seen.snapshots);
    let mut groups: BTreeSet<(String, String)> = BTreeSet::new();
    let mut starts = Vec::new();
    for s in &run.snapshots {
        for c in s
            .copies
            .iter()
            .filter(|c| c.state == SnapshotState::Pending)
        {
            let Some(id) = c.resource_id.as_deref() else {
                continue;
            };
            let Some((group, _)) = names::group_and_name(id) else {
                continue;
            };
            if seen.missing_groups.contains(&group.to_ascii_lowercase()) {
                groups.insert((group, c.region.clone()));
            } else if !found.contains_key(&key(id))
                && let Some(body) = runs::copy_body(&seen.owner, run, s, &c.region, id)
            {
                starts.push(body);
            }
        }
    }
    if !groups.is_empty() {
        let message = format!(
            "run {}: creating resource group(s) {} for the copies",
            run.name,
            list(groups.iter().map(|(g, r)| format!("{g} in {r}")))
        );
        return Some(Progress::Step(
            Step::CreateGroups(groups.into_iter().collect()),
            message,
        ));
    }
    if !starts.is_empty() {
        let regions: BTreeSet<&str> = starts
            .iter()
            .filter_map(|s| s.body.location.as_deref())
            .collect();
        let message = format!(
            "run {}: copying {} snapshots to {}",
            run.name,
            starts.len(),
            list(regions)
        );
        return Some(Progress::Step(Step::StartCopies(starts), message));
    }
    None
}

/// The next verification write: create the throwaway disks, or — once Azure settled them —
/// record the result and delete them.
fn verify(run: &mut BackupRun, seen: &Observed, events: &mut Vec<Event>) -> Option<Progress> {
    if run
        .verification
        .as_ref()
        .is_none_or(|v| v.state != SnapshotState::Pending)
    {
        return None;
    }
    let wanted: Vec<(String, NewResource<Disk>)> = run
        .snapshots
        .iter()
        .filter(|s| s.lun.is_none() && s.state == SnapshotState::Succeeded)
        .filter_map(|s| Some((s.name.clone(), runs::verify_disk(seen, run, s)?)))
        .collect();
    if let Some((snapshot, w)) = wanted
        .iter()
        .find(|(_, w)| seen.foreign.contains(&key(&w.id)))
    {
        let message = format!(
            "disk {} (for snapshot {snapshot}) exists but was not made by this Backup; it is never touched: delete or rename it",
            w.name
        );
        events.push(Event::warning(
            "VerificationFailed",
            format!("run {}: {message}", run.name),
        ));
        run.verification = Some(Verification {
            state: SnapshotState::Failed,
            message,
        });
        return None;
    }
    let disk = |id: &str| seen.verify_disks.iter().find(|d| key(&d.id) == key(id));
    let missing: Vec<NewResource<Disk>> = wanted
        .iter()
        .filter(|(_, w)| disk(&w.id).is_none())
        .map(|(_, w)| w.clone())
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "run {}: test-restoring {} OS disk snapshot(s)",
            run.name,
            missing.len()
        );
        return Some(Progress::Step(Step::CreateVerifyDisks(missing), message));
    }
    if wanted
        .iter()
        .any(|(_, w)| disk(&w.id).is_some_and(|d| !d.state.settled()))
    {
        return None;
    }
    let failures: Vec<String> = wanted
        .iter()
        .filter_map(|(snapshot, w)| match &disk(&w.id)?.state {
            AzState::Failed(m) => Some(format!("disk {} from snapshot {snapshot}: {m}", w.name)),
            _ => None,
        })
        .collect();
    let result = if failures.is_empty() {
        Verification {
            state: SnapshotState::Succeeded,
            message: format!(
                "restored {} OS disk snapshot(s) to throwaway disks",
                wanted.len()
            ),
        }
    } else {
        let message = format!("restoring failed: {}", list(&failures));
        events.push(Event::warning(
            "VerificationFailed",
            format!("run {}: {message}", run.name),
        ));
        Verification {
            state: SnapshotState::Failed,
            message,
        }
    };
    run.verification = Some(result);
    let ids: Vec<String> = wanted.into_iter().map(|(_, w)| w.id).collect();
    let message = format!("run {}: deleting the verification disks", run.name);
    Some(Progress::Step(Step::Delete(ids), message))
}

/// How starting a run went.
enum Start {
    /// The run is recorded; its snapshots are created by `step` (none when they all exist).
    Started {
        step: Option<Step>,
        message: String,
        event: Event,
    },
    /// The run already exists.
    Done,
    /// No source VM can be snapshotted yet.
    Wait(String),
}

/// Starts run `time` over the members' provisioned VMs.
fn start(
    backup: &Backup,
    seen: &Observed,
    members: &[Member],
    runs: &mut Vec<BackupRun>,
    time: DateTime<Utc>,
    trigger: RunTrigger,
) -> Start {
    let name = names::run_name(time);
    if runs
        .iter()
        .any(|r| r.name == name && r.trigger != RunTrigger::Recovered)
    {
        return Start::Done;
    }
    let ready = |m: &&Member| {
        m.vm.as_ref()
            .is_some_and(|v| v.provisioned && !v.disks.is_empty())
    };
    let (up, down): (Vec<&Member>, Vec<&Member>) = members.iter().partition(ready);
    if up.is_empty() {
        return Start::Wait(match (backup.spec.source.kind, members.is_empty()) {
            (BackupSourceKind::Fleet, true) => format!(
                "Fleet {} has no member VMs yet; run {name} starts once one is provisioned",
                backup.spec.source.name
            ),
            _ => format!(
                "waiting for VM {} to be provisioned before run {name}",
                list(members.iter().map(|m| m.name.as_str()))
            ),
        });
    }
    let uid = seen.owner.uid.as_str();
    let mut snapshots = Vec::new();
    for m in &up {
        for d in m.vm.iter().flat_map(|v| &v.disks) {
            let sname = names::snapshot_name(&seen.owner.name, uid, &name, &d.name, &d.id);
            let copies = backup
                .spec
                .copy_to_regions
                .iter()
                .filter(|r| !r.eq_ignore_ascii_case(&m.location))
                .map(|r| SnapshotCopy {
                    region: r.clone(),
                    resource_id: Some(names::snapshot_id(
                        &seen.subscription,
                        &names::copy_group(&m.resource_group, r),
                        &sname,
                    )),
                    state: SnapshotState::Pending,
                    completion_percent: None,
                    message: String::new(),
                })
                .collect();
            snapshots.push(SnapshotStatus {
                resource_id: Some(names::snapshot_id(
                    &seen.subscription,
                    &m.resource_group,
                    &sname,
                )),
                name: sname,
                vm: m.name.clone(),
                disk: d.name.clone(),
                lun: d.lun,
                source_disk: Some(d.id.clone()),
                region: m.location.clone(),
                state: SnapshotState::Pending,
                size_gib: None,
                message: String::new(),
                copies,
            });
        }
    }
    let message = if down.is_empty() {
        String::new()
    } else {
        format!(
            "VM(s) {} had no provisioned VM and were not snapshotted",
            list(down.iter().map(|m| m.name.as_str()))
        )
    };
    let run = BackupRun {
        name: name.clone(),
        time: to_time(time),
        trigger,
        state: RunState::Running,
        completed_at: None,
        message,
        verification: backup.spec.verify.then(|| Verification {
            state: SnapshotState::Pending,
            message: String::new(),
        }),
        snapshots,
    };
    let found = runs::by_id(&seen.snapshots);
    let creates: Vec<NewResource<Snapshot>> = run
        .snapshots
        .iter()
        .filter(|s| {
            s.resource_id
                .as_deref()
                .is_none_or(|id| !found.contains_key(&key(id)) && !seen.foreign.contains(&key(id)))
        })
        .filter_map(|s| runs::snapshot_body(&seen.owner, &run, s))
        .collect();
    let what = match trigger {
        RunTrigger::OnDemand => "requested",
        RunTrigger::Schedule | RunTrigger::Recovered => "scheduled",
    };
    let message = format!(
        "run {name} ({what}): snapshotting {} disk(s) of VM(s) {}",
        run.snapshots.len(),
        list(up.iter().map(|m| m.name.as_str()))
    );
    runs.retain(|r| r.name != name);
    runs.insert(0, run);
    runs.sort_by_key(|r| std::cmp::Reverse(from_time(&r.time)));
    Start::Started {
        step: (!creates.is_empty()).then_some(Step::CreateSnapshots(creates)),
        event: Event::normal("RunStarted", message.clone()),
        message,
    }
}
