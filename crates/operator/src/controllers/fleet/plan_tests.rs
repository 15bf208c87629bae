//! Table tests of the Fleet plan: members and clock → member writes, status and health.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::json;

use super::members::{self, TEMPLATE_HASH_LABEL};
use super::observe::Observed;
use super::plan::{Step, plan};
use crate::api::conditions::Health;
use crate::api::fleet::{Fleet, FleetPhase};
use crate::api::{AzlinVM, PowerState};
use crate::reconcile::status::timestamp;
use crate::reconcile::{ControllerSettings, PlanCx, Requeue};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn fleet(extra: serde_json::Value) -> Fleet {
    let mut spec = json!({"replicas": 2, "template": {"spec": {
        "resourceGroup": "rg", "location": "westus2", "size": "Standard_D2s_v5"}}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "azlin.io/v1alpha1", "kind": "Fleet",
        "metadata": {"name": "f", "namespace": "ns", "uid": "fu", "generation": 1},
        "spec": spec,
    }))
    .expect("fleet")
}

fn condition(type_: &str, status: &str, reason: &str, since: DateTime<Utc>) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{reason} message"),
        observed_generation: Some(1),
        last_transition_time: Time(timestamp(since)),
    }
}

/// Member `n` of `f`, on the current template and power, Ready or Stalled since `since`.
fn member(
    f: &Fleet,
    n: u32,
    power: PowerState,
    health: Option<(&str, DateTime<Utc>)>,
) -> Arc<AzlinVM> {
    let hash = members::template_hash(&f.spec.template);
    let spec = members::desired_spec(f, power);
    let mut vm = members::member(f, &members::member_name("f", n), &spec, &hash, false);
    vm.metadata.generation = Some(1);
    let conditions = match health {
        None => vec![condition(
            "Ready",
            "True",
            "Running",
            t("2026-11-30T08:00:00Z"),
        )],
        Some((reason, since)) => vec![
            condition("Ready", "False", reason, since),
            condition("Stalled", "True", reason, since),
        ],
    };
    vm.status = Some(crate::api::azlinvm::AzlinVMStatus {
        observed_generation: Some(1),
        conditions,
        ..Default::default()
    });
    Arc::new(vm)
}

fn run(f: &Fleet, members: Vec<Arc<AzlinVM>>, now: DateTime<Utc>) -> crate::reconcile::Plan<Fleet> {
    let settings = ControllerSettings::fast();
    let cx = PlanCx {
        now,
        settings: &settings,
        deleting: false,
    };
    plan(
        f,
        &Observed {
            members,
            other_names: Vec::new(),
            shared_home_exists: f.spec.shared_home.as_ref().map(|_| false),
        },
        &cx,
    )
}

fn written(p: &crate::reconcile::Plan<Fleet>) -> (Vec<String>, Vec<String>) {
    match &p.step {
        Some(Step::Members(w)) => (
            w.apply
                .iter()
                .filter_map(|v| v.metadata.name.clone())
                .collect(),
            w.delete.clone(),
        ),
        None => (Vec::new(), Vec::new()),
    }
}

#[test]
fn an_empty_fleet_creates_its_members_with_the_fleet_power() {
    let f = fleet(json!({"powerState": "Stopped"}));
    let p = run(&f, Vec::new(), t("2026-11-30T09:00:00Z"));
    let Some(Step::Members(w)) = &p.step else {
        panic!("members expected")
    };
    let names: Vec<_> = w
        .apply
        .iter()
        .filter_map(|v| v.metadata.name.clone())
        .collect();
    assert_eq!(names, ["f-001", "f-002"]);
    assert!(
        w.apply
            .iter()
            .all(|v| v.spec.power_state == PowerState::Stopped)
    );
    assert!(w.apply.iter().all(|v| {
        v.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(TEMPLATE_HASH_LABEL))
    }));
    assert_eq!(p.out.status.phase, Some(FleetPhase::Pending));
    assert!(matches!(p.out.health, Health::Progressing { .. }));
}

#[test]
fn a_converged_fleet_is_ready_and_writes_nothing() {
    let f = fleet(json!({}));
    let members = vec![
        member(&f, 1, PowerState::Running, None),
        member(&f, 2, PowerState::Running, None),
    ];
    let p = run(&f, members, t("2026-11-30T09:00:00Z"));
    assert!(p.step.is_none());
    assert!(p.out.health.is_ready(), "{:?}", p.out.health);
    let st = &p.out.status;
    assert_eq!(
        (st.replicas, st.ready_replicas, st.updated_replicas),
        (2, 2, 2)
    );
    assert_eq!(st.selector.as_deref(), Some("azlin.io/fleet=f"));
    assert_eq!(p.out.requeue, Requeue::Resync);
}

#[test]
fn outside_working_hours_members_are_deallocated_and_the_next_start_is_reported() {
    let f = fleet(
        json!({"schedule": {"days": ["Mon"], "start": "08:00", "end": "18:00", "timeZone": "UTC"}}),
    );
    let now = t("2026-11-30T19:00:00Z");
    let running = vec![
        member(&f, 1, PowerState::Running, None),
        member(&f, 2, PowerState::Running, None),
    ];
    let p = run(&f, running, now);
    let (applied, deleted) = written(&p);
    assert_eq!(applied, ["f-001", "f-002"], "both patched");
    assert!(deleted.is_empty());
    let Some(Step::Members(w)) = &p.step else {
        unreachable!()
    };
    assert!(
        w.apply
            .iter()
            .all(|v| v.spec.power_state == PowerState::Deallocated)
    );
    assert_eq!(p.out.requeue, Requeue::At(t("2026-12-07T08:00:00Z")));
    let deallocated = vec![
        member(&f, 1, PowerState::Deallocated, None),
        member(&f, 2, PowerState::Deallocated, None),
    ];
    let p = run(&f, deallocated, now);
    assert!(p.step.is_none());
    assert_eq!(p.out.status.phase, Some(FleetPhase::Deallocated));
    assert!(p.out.health.is_ready());
}

#[test]
fn a_stalled_member_stalls_the_fleet_then_is_replaced_after_the_threshold() {
    let f = fleet(json!({"healing": {"afterMinutes": 10}}));
    let since = t("2026-11-30T09:00:00Z");
    let members = || {
        vec![
            member(&f, 1, PowerState::Running, None),
            member(&f, 2, PowerState::Running, Some(("QuotaExceeded", since))),
        ]
    };
    let p = run(&f, members(), t("2026-11-30T09:05:00Z"));
    assert!(p.step.is_none());
    match &p.out.health {
        Health::Stalled { reason, message } => {
            assert_eq!(reason, "QuotaExceeded");
            assert!(message.contains("f-002"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.out.requeue,
        Requeue::At(t("2026-11-30T09:10:00Z")),
        "looks again when healing is due"
    );
    let p = run(&f, members(), t("2026-11-30T09:11:00Z"));
    let (applied, deleted) = written(&p);
    assert_eq!(deleted, ["f-002"]);
    assert_eq!(applied, ["f-003"]);
    assert_eq!(p.out.status.healed_replicas, 1);
    assert!(p.out.events.iter().any(|e| e.reason == "Healed"));
}

#[test]
fn a_missing_shared_home_or_bad_time_zone_stalls_naming_the_field() {
    let p = run(
        &fleet(json!({"sharedHome": "nowhere"})),
        Vec::new(),
        t("2026-11-30T09:00:00Z"),
    );
    assert!(p.step.is_none());
    assert!(
        matches!(&p.out.health, Health::Stalled { message, .. } if message.contains("spec.sharedHome"))
    );
    let p = run(
        &fleet(
            json!({"schedule": {"days": ["Mon"], "start": "08:00", "end": "18:00", "timeZone": "Europe/Berlinn"}}),
        ),
        Vec::new(),
        t("2026-11-30T09:00:00Z"),
    );
    assert!(p.step.is_none());
    assert!(
        matches!(&p.out.health, Health::Stalled { message, .. } if message.contains("spec.schedule.timeZone"))
    );
}
