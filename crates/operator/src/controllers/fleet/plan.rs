//! The pure decisions of the Fleet controller: the fleet's effective power (its own, or
//! deallocated outside working hours), the member writes the rollout arithmetic asks for,
//! and the status — counts, members, the next schedule transition and kstatus health, with
//! a member's Stalled reason surfaced on the Fleet.

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::members::{self, Drift};
use super::observe::Observed;
use super::rollout::{self, Actions, MemberState};
use super::schedule;
use crate::api::conditions::{self, Health};
use crate::api::fleet::{Fleet, FleetMemberStatus, FleetPhase, FleetStatus};
use crate::api::{AzlinVM, PowerState};
use crate::reconcile::events::Event;
use crate::reconcile::status::timestamp;
use crate::reconcile::{Outcome, Plan, PlanCx, Requeue};

/// The member writes of one reconcile.
#[derive(Debug, Default)]
pub struct MemberWrites {
    /// Members to create or update (server-side apply of the whole member).
    pub apply: Vec<AzlinVM>,
    /// Names of members to delete.
    pub delete: Vec<String>,
}

/// One write of the Fleet controller: a batch of member writes.
#[derive(Debug)]
pub enum Step {
    /// Create, update and delete members.
    Members(MemberWrites),
}

fn condition_of<'a>(
    vm: &'a AzlinVM,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    vm.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, type_))
        .filter(|c| c.status == conditions::TRUE)
}

/// Whether member `vm` is Ready for its current generation.
pub fn member_ready(vm: &AzlinVM) -> bool {
    vm.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == vm.metadata.generation)
        && condition_of(vm, conditions::READY).is_some()
}

/// Since when member `vm` is Stalled, if it is.
fn stalled_since(vm: &AzlinVM) -> Option<DateTime<Utc>> {
    let c = condition_of(vm, conditions::STALLED)?;
    DateTime::from_timestamp_millis(c.last_transition_time.0.as_millisecond())
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The plan of a Fleet.
pub fn plan(fleet: &Fleet, seen: &Observed, cx: &PlanCx<'_>) -> Plan<Fleet> {
    let name = fleet.name_any();
    let spec = &fleet.spec;
    let old = fleet.status.clone().unwrap_or_default();
    let mut st = FleetStatus {
        selector: Some(format!("{}={name}", members::FLEET_LABEL)),
        ..old.clone()
    };
    let stall = |mut st: FleetStatus, reason: &str, message: String| {
        st.phase = Some(FleetPhase::Failed);
        Plan::report(Outcome::new(st, Health::stalled(reason, message)))
    };
    // Effective power: the fleet's own, or deallocated outside working hours.
    let mut power = spec.power_state;
    let mut requeue_at: Option<DateTime<Utc>> = None;
    st.next_transition = None;
    if let Some(s) = &spec.schedule {
        match schedule::evaluate(s, cx.now) {
            Err(e) => return stall(st, "InvalidSpec", e.to_string()),
            Ok(w) => {
                if !w.open {
                    power = PowerState::Deallocated;
                }
                st.next_transition = w.next_transition.map(|t| Time(timestamp(t)));
                requeue_at = w.next_transition;
            }
        }
    }
    if seen.shared_home_exists == Some(false) {
        let home = spec.shared_home.clone().unwrap_or_default();
        return stall(
            st,
            "StorageNotFound",
            format!(
                "spec.sharedHome: SharedStorage {home} not found in namespace {}; create it or correct the name (no member is created until it exists)",
                fleet.namespace().unwrap_or_default()
            ),
        );
    }
    let hash = members::template_hash(&spec.template);
    let wanted = members::desired_spec(fleet, power);
    let heal_after = Duration::minutes(i64::from(spec.healing.after_minutes));
    let states: Vec<MemberState> = seen
        .members
        .iter()
        .filter_map(|vm| {
            let vm_name = vm.name_any();
            let ordinal = members::ordinal(&name, &vm_name)?;
            let since = stalled_since(vm);
            let heal_at = since.map(|s| s + heal_after);
            let heal = spec.healing.enabled && heal_at.is_some_and(|t| t <= cx.now);
            if spec.healing.enabled
                && let Some(t) = heal_at.filter(|t| *t > cx.now)
            {
                requeue_at = Some(requeue_at.map_or(t, |r| r.min(t)));
            }
            Some(MemberState {
                ordinal,
                stand_in: vm.labels().contains_key(members::STAND_IN_LABEL),
                name: vm_name,
                deleting: vm.metadata.deletion_timestamp.is_some(),
                ready: member_ready(vm),
                heal,
                drift: members::drift(vm, &wanted, &hash),
            })
        })
        .collect();
    let limits = rollout::limits(
        usize::try_from(spec.replicas).unwrap_or(0),
        &int_or_string(&spec.update_strategy.max_surge),
        &int_or_string(&spec.update_strategy.max_unavailable),
    );
    let reserved = seen
        .other_names
        .iter()
        .filter_map(|n| members::ordinal(&name, n))
        .collect();
    let actions = rollout::plan(&states, &reserved, limits);
    let live: Vec<&MemberState> = states.iter().filter(|m| !m.deleting).collect();
    let count = |f: &dyn Fn(&MemberState) -> bool| {
        i32::try_from(live.iter().filter(|m| f(m)).count()).unwrap_or(i32::MAX)
    };
    st.replicas = count(&|_| true);
    st.ready_replicas = count(&|m| m.ready);
    st.updated_replicas = count(&|m| m.drift == Drift::Current);
    st.template_hash = Some(hash.clone());
    st.healed_replicas = old.healed_replicas + i32::try_from(actions.healed.len()).unwrap_or(0);
    st.members = seen
        .members
        .iter()
        .filter(|vm| vm.metadata.deletion_timestamp.is_none())
        .map(|vm| FleetMemberStatus {
            name: vm.name_any(),
            phase: vm
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .map(|p| format!("{p:?}")),
            ready: member_ready(vm),
            updated: states
                .iter()
                .any(|m| m.name == vm.name_any() && m.drift == Drift::Current),
            private_ip: vm.status.as_ref().and_then(|s| s.private_ip.clone()),
        })
        .collect();
    let events = events_for(fleet, &actions, &states);
    let (health, phase) = health(fleet, seen, &states, &actions, power, &st);
    st.phase = Some(phase);
    let mut out = Outcome::new(st, health);
    out.events = events;
    out.requeue = requeue_at.map_or(Requeue::Resync, Requeue::At);
    if actions.is_empty() {
        return Plan::report(out);
    }
    let mut writes = MemberWrites::default();
    for o in &actions.create {
        let member_name = members::member_name(&name, *o);
        writes.apply.push(members::member(
            fleet,
            &member_name,
            &wanted,
            &hash,
            actions.stand_in,
        ));
    }
    for n in &actions.patch {
        let stand_in = states.iter().any(|m| &m.name == n && m.stand_in);
        writes
            .apply
            .push(members::member(fleet, n, &wanted, &hash, stand_in));
    }
    writes.delete = actions.delete.clone();
    Plan::step(Step::Members(writes), out)
}

fn int_or_string(v: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn list(names: &[String]) -> String {
    names.join(", ")
}

fn events_for(fleet: &Fleet, a: &Actions, states: &[MemberState]) -> Vec<Event> {
    let name = fleet.name_any();
    let mut events = Vec::new();
    if !a.create.is_empty() {
        let created: Vec<String> = a
            .create
            .iter()
            .map(|o| members::member_name(&name, *o))
            .collect();
        events.push(Event::normal(
            "MembersCreated",
            format!("creating members {}", list(&created)),
        ));
    }
    for h in &a.healed {
        events.push(Event::warning(
            "Healed",
            format!(
                "member {h} stayed failed for {} minutes; replacing it",
                fleet.spec.healing.after_minutes
            ),
        ));
    }
    let removed: Vec<String> = a
        .delete
        .iter()
        .filter(|d| !a.healed.contains(d))
        .cloned()
        .collect();
    if !removed.is_empty() {
        let replaced = removed.iter().all(|d| {
            states
                .iter()
                .any(|m| &m.name == d && m.drift == Drift::Replace)
        });
        let (reason, what) = if replaced {
            ("MembersReplaced", "replacing members with the new template")
        } else {
            ("MembersDeleted", "removing members")
        };
        events.push(Event::normal(reason, format!("{what}: {}", list(&removed))));
    }
    if !a.patch.is_empty() {
        events.push(Event::normal(
            "MembersUpdated",
            format!("updating members {}", list(&a.patch)),
        ));
    }
    events
}

/// The Fleet's health and phase.
fn health(
    fleet: &Fleet,
    seen: &Observed,
    states: &[MemberState],
    actions: &Actions,
    power: PowerState,
    st: &FleetStatus,
) -> (Health, FleetPhase) {
    let replicas = fleet.spec.replicas;
    if let Some(vm) = seen.members.iter().find(|vm| {
        vm.metadata.deletion_timestamp.is_none()
            && vm
                .status
                .as_ref()
                .is_some_and(|s| s.observed_generation == vm.metadata.generation)
            && condition_of(vm, conditions::STALLED).is_some()
    }) && let Some(c) = condition_of(vm, conditions::STALLED)
    {
        let healing = if fleet.spec.healing.enabled {
            format!(
                "; it is replaced if it stays so for {} minutes",
                fleet.spec.healing.after_minutes
            )
        } else {
            String::new()
        };
        let message = format!(
            "member {} is stalled: {}{healing}",
            vm.name_any(),
            c.message
        );
        return (Health::stalled(&c.reason, message), FleetPhase::Failed);
    }
    let deleting = states.iter().filter(|m| m.deleting).count();
    let converged = actions.is_empty()
        && deleting == 0
        && st.replicas == replicas
        && st.updated_replicas == replicas
        && st.ready_replicas == replicas;
    if converged {
        let (phase, message) = match (power, &st.next_transition) {
            (PowerState::Deallocated, Some(t))
                if fleet.spec.power_state != PowerState::Deallocated =>
            {
                (
                    FleetPhase::Deallocated,
                    format!(
                        "{replicas} members deallocated outside working hours until {}",
                        fmt_time(
                            DateTime::from_timestamp_millis(t.0.as_millisecond())
                                .unwrap_or_default()
                        )
                    ),
                )
            }
            (PowerState::Deallocated, _) => (
                FleetPhase::Deallocated,
                format!("{replicas} members deallocated"),
            ),
            _ => (
                FleetPhase::Ready,
                format!("{replicas} of {replicas} members Ready"),
            ),
        };
        return (Health::ready(power.as_str(), message), phase);
    }
    let (reason, phase) = if st.updated_replicas < st.replicas.min(replicas)
        || states
            .iter()
            .any(|m| m.drift == Drift::Replace || m.drift == Drift::Disruptive)
    {
        ("Updating", FleetPhase::Updating)
    } else if st.replicas == 0 && replicas > 0 {
        ("Scaling", FleetPhase::Pending)
    } else if st.replicas != replicas || deleting > 0 {
        ("Scaling", FleetPhase::Scaling)
    } else {
        ("MembersNotReady", FleetPhase::Scaling)
    };
    let message = format!(
        "{} of {replicas} members Ready, {} up to date, {} exist{}",
        st.ready_replicas,
        st.updated_replicas,
        st.replicas,
        if deleting > 0 {
            format!(", {deleting} being deleted")
        } else {
            String::new()
        }
    );
    (Health::progressing(reason, message), phase)
}
