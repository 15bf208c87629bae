//! Table tests of the Backup plan (kept and deleting): observations in, step, status,
//! health and events out.

use std::collections::BTreeSet;

use azlin_arm::ProvisioningState;
use azlin_arm::compute::Snapshot;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::names::{self, SnapshotTags};
use super::observe::{AzState, Found, FoundDisk, Member, Observed, Source, SourceDisk, SourceVm};
use super::plan::Step;
use super::runs::{from_time, to_time};
use crate::api::backup::{
    Backup, BackupPhase, BackupStatus, RunState, RunTrigger, SnapshotState, Verification,
};
use crate::api::conditions::Health;
use crate::reconcile::ownership::{Owner, TAG_RELEASED};
use crate::reconcile::{ControllerSettings, Plan, PlanCx, Reconciled, Requeue};

const SUB: &str = "sub";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn owner() -> Owner {
    Owner {
        kind: "Backup".into(),
        namespace: "ns".into(),
        name: "bk".into(),
        uid: "u1".into(),
        identity: None,
    }
}

fn backup(spec: Value, status: Option<BackupStatus>) -> Backup {
    let mut base = json!({"source": {"kind": "AzlinVM", "name": "dev"}, "schedule": "0 * * * *"});
    json_patch::merge(&mut base, &spec);
    let mut b: Backup = serde_json::from_value(json!({
        "apiVersion": "azlin.io/v1alpha1", "kind": "Backup",
        "metadata": {"name": "bk", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": base,
    }))
    .expect("backup");
    b.status = status;
    b
}

fn disk(vm: &str, lun: Option<i32>) -> SourceDisk {
    let name = match lun {
        None => format!("ns-{vm}-osdisk"),
        Some(l) => format!("ns-{vm}-data-{l}"),
    };
    SourceDisk {
        id: format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/{name}"
        ),
        name,
        lun,
    }
}

fn member(provisioned: Option<bool>) -> Member {
    Member {
        name: "dev".into(),
        resource_group: "rg".into(),
        location: "westus2".into(),
        vm_name: "ns-dev".into(),
        vm: provisioned.map(|p| SourceVm {
            provisioned: p,
            disks: vec![disk("dev", None), disk("dev", Some(1))],
        }),
    }
}

fn seen(source: Source, snapshots: Vec<Found>) -> Observed {
    Observed {
        owner: owner(),
        subscription: SUB.into(),
        source,
        snapshots,
        verify_disks: Vec::new(),
        missing_groups: BTreeSet::new(),
        foreign: BTreeSet::new(),
    }
}

/// The snapshot of `lun` of run `run` (at `time`) as Azure reports it.
fn found(run: &str, time: &str, lun: Option<i32>, state: &str) -> Found {
    let d = disk("dev", lun);
    let name = names::snapshot_name("bk", "u1", run, &d.name, &d.id);
    let tags = SnapshotTags {
        run: run.into(),
        time: Some(t(time)),
        vm: "dev".into(),
        disk: d.name.clone(),
        lun,
    }
    .to_tags(&owner());
    let mut s = Snapshot::incremental_of("westus2", &d.id).with_tags(tags);
    s.id = Some(names::snapshot_id(SUB, "rg", &name));
    s.name = Some(name);
    s.properties.provisioning_state = Some(ProvisioningState(state.into()));
    s.properties.disk_size_gb = Some(30);
    Found::of(&s)
}

fn plan_at(b: &Backup, seen: &Observed, now: &str, deleting: bool) -> Plan<Backup> {
    let settings = ControllerSettings::default();
    let cx = PlanCx {
        now: t(now),
        settings: &settings,
        deleting,
    };
    b.plan(seen, &cx)
}

fn reason(h: &Health) -> &str {
    match h {
        Health::Ready { reason, .. }
        | Health::Progressing { reason, .. }
        | Health::Stalled { reason, .. } => reason,
    }
}

fn message(h: &Health) -> &str {
    match h {
        Health::Ready { message, .. }
        | Health::Progressing { message, .. }
        | Health::Stalled { message, .. } => message,
    }
}

/// The status after planning `b` at `now` (with observedGeneration current).
fn next_status(p: &Plan<Backup>) -> BackupStatus {
    let mut st = p.out.status.clone();
    st.observed_generation = Some(1);
    st
}

#[test]
fn first_look_schedules_the_next_slot_and_waits() {
    let b = backup(json!({}), None);
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), vec![]),
        "2026-05-01T10:30:00Z",
        false,
    );
    assert!(p.step.is_none());
    assert_eq!(reason(&p.out.health), "Scheduled");
    assert_eq!(p.out.status.phase, Some(BackupPhase::Pending));
    assert_eq!(
        p.out.status.next_schedule_time.as_ref().map(from_time),
        Some(t("2026-05-01T11:00:00Z"))
    );
    assert_eq!(p.out.requeue, Requeue::At(t("2026-05-01T11:00:00Z")));
}

#[test]
fn a_due_slot_snapshots_every_disk_or_waits_for_the_vm() {
    let first = plan_at(
        &backup(json!({"copyToRegions": ["eastus2"], "verify": true}), None),
        &seen(Source::Members(vec![member(None)]), vec![]),
        "2026-05-01T10:30:00Z",
        false,
    );
    let b = backup(
        json!({"copyToRegions": ["eastus2"], "verify": true}),
        Some(next_status(&first)),
    );
    // The VM is not provisioned yet: the slot stays due.
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(Some(false))]), vec![]),
        "2026-05-01T11:00:30Z",
        false,
    );
    assert!(p.step.is_none());
    assert_eq!(reason(&p.out.health), "WaitingForSource");
    assert!(message(&p.out.health).contains("waiting for VM dev"));
    assert_eq!(
        p.out.status.next_schedule_time.as_ref().map(from_time),
        Some(t("2026-05-01T11:00:00Z"))
    );
    // Provisioned: the run starts.
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(Some(true))]), vec![]),
        "2026-05-01T11:00:30Z",
        false,
    );
    let Some(Step::CreateSnapshots(list)) = &p.step else {
        panic!("expected snapshots, got {:?}", p.step);
    };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name, "bk-20260501-110000-ns-dev-osdisk");
    assert_eq!(list[0].body.properties.incremental, Some(true));
    assert_eq!(list[0].body.tags[names::TAG_LUN], "os");
    let st = &p.out.status;
    let run = &st.runs[0];
    assert_eq!(
        (run.state, run.trigger),
        (RunState::Running, RunTrigger::Schedule)
    );
    assert_eq!(
        run.verification.as_ref().map(|v| v.state),
        Some(SnapshotState::Pending)
    );
    assert_eq!(run.snapshots[0].copies[0].region, "eastus2");
    assert!(
        run.snapshots[0].copies[0]
            .resource_id
            .as_deref()
            .is_some_and(|id| id.contains("/resourceGroups/rg-backup-eastus2/"))
    );
    assert_eq!(
        st.last_schedule_time.as_ref().map(from_time),
        Some(t("2026-05-01T11:00:00Z"))
    );
    assert_eq!(
        st.next_schedule_time.as_ref().map(from_time),
        Some(t("2026-05-01T12:00:00Z"))
    );
    assert_eq!(p.out.events[0].reason, "RunStarted");
    assert_eq!(p.out.status.phase, Some(BackupPhase::Running));
}

/// A run whose snapshots succeeded goes through copies and verification, one write per
/// reconcile, before it succeeds.
#[test]
fn a_running_run_copies_verifies_then_succeeds() {
    let b0 = backup(json!({"copyToRegions": ["eastus2"], "verify": true}), None);
    let first = plan_at(
        &b0,
        &seen(Source::Members(vec![member(None)]), vec![]),
        "2026-05-01T10:30:00Z",
        false,
    );
    let b1 = backup(
        json!({"copyToRegions": ["eastus2"], "verify": true}),
        Some(next_status(&first)),
    );
    let start = plan_at(
        &b1,
        &seen(Source::Members(vec![member(Some(true))]), vec![]),
        "2026-05-01T11:00:00Z",
        false,
    );
    let b = backup(
        json!({"copyToRegions": ["eastus2"], "verify": true}),
        Some(next_status(&start)),
    );
    let run = "20260501-110000";
    let at = "2026-05-01T11:00:00Z";
    let done = vec![
        found(run, at, None, "Succeeded"),
        found(run, at, Some(1), "Succeeded"),
    ];
    let creating = vec![
        found(run, at, None, "Creating"),
        found(run, at, Some(1), "Succeeded"),
    ];
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), creating),
        "2026-05-01T11:00:05Z",
        false,
    );
    assert!(p.step.is_none());
    assert!(message(&p.out.health).contains("1 of 2 snapshots complete"));
    let mut s = seen(Source::Members(vec![member(None)]), done.clone());
    s.missing_groups.insert("rg-backup-eastus2".into());
    let p = plan_at(&b, &s, "2026-05-01T11:00:06Z", false);
    assert_eq!(
        p.step,
        Some(Step::CreateGroups(vec![(
            "rg-backup-eastus2".into(),
            "eastus2".into()
        )]))
    );
    let s = seen(Source::Members(vec![member(None)]), done.clone());
    let p = plan_at(&b, &s, "2026-05-01T11:00:07Z", false);
    let Some(Step::StartCopies(copies)) = &p.step else {
        panic!("expected copies, got {:?}", p.step);
    };
    assert_eq!(copies.len(), 2);
    assert_eq!(
        copies[0].body.properties.creation_data.create_option,
        "CopyStart"
    );
    assert_eq!(copies[0].body.location.as_deref(), Some("eastus2"));
    // Copies under way: verification starts meanwhile.
    let mut with_copies = done.clone();
    for c in copies {
        let mut copy = c.body.clone();
        copy.id = Some(c.id.clone());
        copy.name = Some(c.name.clone());
        copy.properties.provisioning_state = Some(ProvisioningState("Succeeded".into()));
        copy.properties.completion_percent = Some(40.0);
        with_copies.push(Found::of(&copy));
    }
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), with_copies.clone()),
        "2026-05-01T11:00:08Z",
        false,
    );
    let Some(Step::CreateVerifyDisks(disks)) = &p.step else {
        panic!("expected verification disks, got {:?}", p.step);
    };
    assert_eq!(disks.len(), 1, "one OS disk");
    let verify_id = disks[0].id.clone();
    let mut s = seen(Source::Members(vec![member(None)]), with_copies.clone());
    s.verify_disks = vec![FoundDisk {
        id: verify_id.clone(),
        name: disks[0].name.clone(),
        run: Some(run.into()),
        state: AzState::Succeeded,
    }];
    let p = plan_at(&b, &s, "2026-05-01T11:00:09Z", false);
    assert_eq!(p.step, Some(Step::Delete(vec![verify_id])));
    assert_eq!(
        p.out.status.runs[0].verification,
        Some(Verification {
            state: SnapshotState::Succeeded,
            message: "restored 1 OS disk snapshot(s) to throwaway disks".into()
        })
    );
    let b = backup(
        json!({"copyToRegions": ["eastus2"], "verify": true}),
        Some(next_status(&p)),
    );
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), with_copies.clone()),
        "2026-05-01T11:00:10Z",
        false,
    );
    assert!(p.step.is_none());
    assert!(
        message(&p.out.health).contains("to eastus2 (40%)"),
        "{:?}",
        p.out.health
    );
    let complete: Vec<Found> = with_copies
        .into_iter()
        .map(|mut f| {
            if f.copy {
                f.completion = Some(100);
                f.state = AzState::Succeeded;
            }
            f
        })
        .collect();
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), complete),
        "2026-05-01T11:00:20Z",
        false,
    );
    let r = &p.out.status.runs[0];
    assert_eq!(r.state, RunState::Succeeded, "{r:?}");
    assert!(r.is_good());
    assert_eq!(
        r.completed_at.as_ref().map(from_time),
        Some(t("2026-05-01T11:00:20Z"))
    );
    assert!(r.message.contains("copied to eastus2") && r.message.contains("verified"));
    assert_eq!(
        p.out
            .events
            .iter()
            .map(|e| e.reason.as_str())
            .collect::<Vec<_>>(),
        ["RunSucceeded"]
    );
    assert_eq!(p.out.status.last_successful_time, Some(to_time(t(at))));
    assert_eq!(reason(&p.out.health), "Succeeded");
}

#[test]
fn runs_found_only_in_azure_are_recovered_and_retention_prunes_old_runs() {
    let runs = [
        ("20260501-090000", "2026-05-01T09:00:00Z"),
        ("20260501-100000", "2026-05-01T10:00:00Z"),
        ("20260501-110000", "2026-05-01T11:00:00Z"),
    ];
    let mut azure: Vec<Found> = runs
        .iter()
        .flat_map(|(r, at)| {
            [
                found(r, at, None, "Succeeded"),
                found(r, at, Some(1), "Succeeded"),
            ]
        })
        .collect();
    let first = plan_at(
        &backup(json!({"retention": {"count": 1}}), None),
        &seen(Source::Members(vec![member(None)]), vec![]),
        "2026-05-01T11:30:00Z",
        false,
    );
    let b = backup(
        json!({"retention": {"count": 1, "keepLastGood": false}}),
        Some(next_status(&first)),
    );
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), azure.clone()),
        "2026-05-01T11:30:00Z",
        false,
    );
    let recovered: Vec<(&str, RunTrigger, RunState)> = p
        .out
        .status
        .runs
        .iter()
        .map(|r| (r.name.as_str(), r.trigger, r.state))
        .collect();
    assert_eq!(
        recovered[0],
        (
            "20260501-110000",
            RunTrigger::Recovered,
            RunState::Succeeded
        )
    );
    let Some(Step::Delete(ids)) = &p.step else {
        panic!("expected deletes, got {:?}", p.step);
    };
    assert_eq!(ids.len(), 4, "two disks of the two older runs");
    assert!(ids.iter().all(|id| !id.contains("20260501-110000")));
    assert_eq!(p.out.events[0].reason, "Pruned");
    // Foreign snapshots never reach the plan (observe lists only ours); a snapshot of a
    // running run is never deleted.
    azure.push(found(
        "20260501-113000",
        "2026-05-01T11:30:00Z",
        None,
        "Creating",
    ));
    let p = plan_at(
        &b,
        &seen(Source::Members(vec![member(None)]), azure),
        "2026-05-01T11:30:00Z",
        false,
    );
    if let Some(Step::Delete(ids)) = &p.step {
        assert!(ids.iter().all(|id| !id.contains("20260501-113000")));
    }
}

#[test]
fn invalid_specs_and_missing_sources_stall_with_the_field() {
    let s = seen(Source::Members(vec![member(None)]), vec![]);
    for (spec, field) in [
        (json!({"schedule": "0 25 * * *"}), "spec.schedule"),
        (json!({"schedule": "99 99 99 99 99"}), "spec.schedule"),
        (json!({"schedule": "5-1 * * * *"}), "spec.schedule"),
        (json!({"schedule": "0 0 30 2 *"}), "spec.schedule"),
        (json!({"timeZone": "Europe/Berlinn"}), "spec.timeZone"),
    ] {
        let p = plan_at(
            &backup(spec.clone(), None),
            &s,
            "2026-05-01T10:00:00Z",
            false,
        );
        assert!(p.step.is_none());
        assert_eq!(reason(&p.out.health), "InvalidSpec", "{spec}");
        let m = message(&p.out.health);
        assert!(m.contains(field), "{spec}: {m}");
        assert!(
            m.contains("e.g.") || m.contains("did you mean") || m.contains("correct"),
            "the fix: {m}"
        );
        assert_eq!(p.out.status.phase, Some(BackupPhase::Failed));
    }
    let p = plan_at(
        &backup(json!({}), None),
        &seen(
            Source::NotFound("AzlinVM dev not found in namespace ns".into()),
            vec![],
        ),
        "2026-05-01T10:00:00Z",
        false,
    );
    assert_eq!(reason(&p.out.health), "SourceNotFound");
    assert!(message(&p.out.health).contains("spec.source"));
}

#[test]
fn deletion_deletes_or_tags_only_what_is_settled() {
    let at = "2026-05-01T11:00:00Z";
    let settled = found("20260501-110000", at, None, "Succeeded");
    let busy = found("20260501-110000", at, Some(1), "Creating");
    let both = seen(Source::Members(vec![]), vec![settled.clone(), busy.clone()]);
    let p = plan_at(&backup(json!({}), None), &both, at, true);
    assert_eq!(p.step, Some(Step::Delete(vec![settled.id.clone()])));
    assert!(!p.out.released);
    let waiting = seen(Source::Members(vec![]), vec![busy]);
    let p = plan_at(&backup(json!({}), None), &waiting, at, true);
    assert!(p.step.is_none() && !p.out.released);
    // A copy still transferring is deleted (cancelled) rather than waited for.
    let mut copy = Snapshot::copy_start_of("eastus2", &settled.id);
    copy.id = Some(names::snapshot_id(SUB, "rg-backup-eastus2", &settled.name));
    copy.tags = settled.tags.clone();
    copy.properties.provisioning_state = Some(ProvisioningState("Succeeded".into()));
    copy.properties.completion_percent = Some(10.0);
    let copy = Found::of(&copy);
    assert!(copy.transferring && copy.state == AzState::Creating);
    let p = plan_at(
        &backup(json!({}), None),
        &seen(Source::Members(vec![]), vec![copy.clone()]),
        at,
        true,
    );
    assert_eq!(p.step, Some(Step::Delete(vec![copy.id.clone()])));
    let p = plan_at(
        &backup(json!({}), None),
        &seen(Source::Members(vec![]), vec![]),
        at,
        true,
    );
    assert!(p.out.released);
    assert_eq!(p.out.events[0].reason, "Deleted");
    let retain = backup(json!({"deletionPolicy": "Retain"}), None);
    let p = plan_at(
        &retain,
        &seen(Source::Members(vec![]), vec![settled.clone()]),
        at,
        true,
    );
    let Some(Step::Tag(tags)) = &p.step else {
        panic!("expected tags, got {:?}", p.step);
    };
    assert_eq!(tags[0].1[TAG_RELEASED], "true");
    let mut tagged = settled;
    tagged.tags = tags[0].1.clone();
    let p = plan_at(
        &retain,
        &seen(Source::Members(vec![]), vec![tagged]),
        at,
        true,
    );
    assert!(p.out.released);
    assert_eq!(p.out.events[0].reason, "Retained");
}

#[test]
fn a_taken_snapshot_name_fails_the_run_and_is_never_written() {
    let b0 = backup(json!({}), None);
    let first = plan_at(
        &b0,
        &seen(Source::Members(vec![member(None)]), vec![]),
        "2026-05-01T10:30:00Z",
        false,
    );
    let b1 = backup(json!({}), Some(next_status(&first)));
    let mut s = seen(Source::Members(vec![member(Some(true))]), vec![]);
    let theirs = found("20260501-110000", "2026-05-01T11:00:00Z", None, "Succeeded");
    s.foreign.insert(theirs.id.to_ascii_lowercase());
    let start = plan_at(&b1, &s, "2026-05-01T11:00:00Z", false);
    let Some(Step::CreateSnapshots(list)) = &start.step else {
        panic!("expected snapshots, got {:?}", start.step);
    };
    assert_eq!(list.len(), 1, "only the data disk's name is free");
    let b = backup(json!({}), Some(next_status(&start)));
    let mut s = seen(
        Source::Members(vec![member(None)]),
        vec![found(
            "20260501-110000",
            "2026-05-01T11:00:00Z",
            Some(1),
            "Succeeded",
        )],
    );
    s.foreign.insert(theirs.id.to_ascii_lowercase());
    let p = plan_at(&b, &s, "2026-05-01T11:00:05Z", false);
    let r = &p.out.status.runs[0];
    assert_eq!(r.state, RunState::Failed);
    assert!(r.message.contains("never touched"), "{}", r.message);
    if let Some(Step::Delete(ids)) = &p.step {
        assert!(!ids.iter().any(|id| id.eq_ignore_ascii_case(&theirs.id)));
    }
}
