//! Status: what every kind's status has in common, and the one write per reconcile.
//!
//! The layer finishes the status a plan computed — `observedGeneration`, the kstatus
//! conditions from the plan's [`Health`], conditions derived from the status itself — and
//! writes it with a JSON merge patch on the `/status` subresource **only when it changed**,
//! so a resync at rest makes no Kubernetes writes. Conditions go through
//! [`api::conditions`](crate::api::conditions) so `lastTransitionTime` moves only on flips.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::Error;
use crate::api::common::AzureIdentity;
use crate::api::conditions::{self, Health, NewCondition, apply_health, set_condition};

/// Field manager of the operator's writes.
pub const FIELD_MANAGER: &str = "azlin-operator";

/// What the layer needs from a kind's status type.
pub trait KindStatus: Clone + Default + PartialEq + Serialize + Send + Sync + 'static {
    /// The conditions list.
    fn conditions(&self) -> &[Condition];
    /// The conditions list, to update.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Sets `observedGeneration`.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// Updates the phase after an error: `stalled` when the error needs a change, `deleting`
    /// while the object is being deleted.
    fn set_error_phase(&mut self, stalled: bool, deleting: bool);
    /// Kind-specific conditions derived from the rest of the status (e.g. `Mounted` from a
    /// VM's mounts): `(type, Some(condition))` sets it, `(type, None)` removes it.
    fn derived_conditions(&self) -> Vec<(&'static str, Option<NewCondition>)> {
        Vec::new()
    }
    /// The Azure identity the object's resources were created with, for kinds with Azure
    /// resources of their own (`None`: not recorded, or a kind without).
    fn azure_identity(&self) -> Option<AzureIdentity> {
        None
    }
    /// Records the identity the object's resources are created with (kinds without Azure
    /// resources of their own ignore it).
    fn record_azure_identity(&mut self, _identity: &AzureIdentity) {}
}

/// [`KindStatus::azure_identity`] and [`KindStatus::record_azure_identity`] for a status
/// with an `azure` field.
macro_rules! azure_identity_field {
    () => {
        fn azure_identity(&self) -> Option<$crate::api::common::AzureIdentity> {
            self.azure.clone()
        }

        fn record_azure_identity(&mut self, identity: &$crate::api::common::AzureIdentity) {
            self.azure = Some(identity.clone());
        }
    };
}
pub(crate) use azure_identity_field;

/// `jiff` timestamp of a chrono time (the conditions' `lastTransitionTime`).
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_millisecond(t.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Completes `status` for `generation`: `observedGeneration`, the Ready/Reconciling/Stalled
/// conditions from `health` and the derived conditions, with transition times at `now`.
pub fn finish<S: KindStatus>(
    status: &mut S,
    health: &Health,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let now = timestamp(now);
    status.set_observed_generation(generation);
    for (type_, condition) in status.derived_conditions() {
        match condition {
            Some(c) => {
                set_condition(status.conditions_mut(), c, generation, now);
            }
            None => status.conditions_mut().retain(|c| c.type_ != type_),
        }
    }
    apply_health(status.conditions_mut(), health, generation, now);
}

/// Whether `status` says `Ready=True` for `generation`.
pub fn is_ready_for<S: KindStatus>(status: &S, generation: Option<i64>) -> bool {
    conditions::find(status.conditions(), conditions::READY)
        .is_some_and(|c| c.status == conditions::TRUE && c.observed_generation == generation)
}

/// The health a status's conditions describe (used to keep it when nothing new is known).
pub fn health_of<S: KindStatus>(status: &S) -> Option<Health> {
    let c = status.conditions();
    let get = |t| conditions::find(c, t);
    if let Some(s) = get(conditions::STALLED).filter(|s| s.status == conditions::TRUE) {
        return Some(Health::stalled(&s.reason, s.message.clone()));
    }
    if let Some(r) = get(conditions::READY).filter(|r| r.status == conditions::TRUE) {
        return Some(Health::ready(&r.reason, r.message.clone()));
    }
    get(conditions::RECONCILING)
        .filter(|r| r.status == conditions::TRUE)
        .map(|r| Health::progressing(&r.reason, r.message.clone()))
}

/// A JSON merge patch turning `old` into `new` (objects diffed recursively, removed keys set
/// to `null`, arrays and scalars replaced). `None` when they are equal.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(p) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

/// Writes `new` as the status of `name` when it differs from `old` (the status the
/// reconcile started from). Returns whether a write happened.
pub async fn write_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: Option<&S>,
    new: &S,
) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(false);
    }
    let old_v = match old {
        Some(o) => serde_json::to_value(o)?,
        None => Value::Object(Map::new()),
    };
    let new_v = serde_json::to_value(new)?;
    let Some(diff) = merge_diff(&old_v, &new_v) else {
        return Ok(false);
    };
    let body = serde_json::json!({ "status": diff });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&body),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, STALLED};
    use serde_json::json;

    #[derive(Clone, Default, PartialEq, Serialize)]
    struct S {
        generation: Option<i64>,
        conditions: Vec<Condition>,
        failed: bool,
        extra: bool,
    }

    impl KindStatus for S {
        fn conditions(&self) -> &[Condition] {
            &self.conditions
        }
        fn conditions_mut(&mut self) -> &mut Vec<Condition> {
            &mut self.conditions
        }
        fn set_observed_generation(&mut self, generation: Option<i64>) {
            self.generation = generation;
        }
        fn set_error_phase(&mut self, stalled: bool, _deleting: bool) {
            self.failed = stalled;
        }
        fn derived_conditions(&self) -> Vec<(&'static str, Option<NewCondition>)> {
            vec![(
                "Extra",
                self.extra
                    .then(|| NewCondition::truthy("Extra", "On", "extra is on")),
            )]
        }
    }

    #[test]
    fn merge_diff_nulls_removed_keys_and_keeps_unchanged_out() {
        let old = json!({"phase": "Running", "publicIP": "1.2.3.4", "size": "A", "nested": {"a": 1, "b": 2}});
        let new = json!({"phase": "Stopped", "size": "A", "nested": {"a": 1, "c": 3}});
        assert_eq!(
            merge_diff(&old, &new),
            Some(json!({"phase": "Stopped", "publicIP": null, "nested": {"b": null, "c": 3}}))
        );
        assert_eq!(merge_diff(&new, &new), None);
    }

    #[test]
    fn finish_sets_generation_health_and_derived_conditions_and_is_stable() {
        let now = Utc::now();
        let mut s = S {
            extra: true,
            ..S::default()
        };
        finish(&mut s, &Health::ready("Running", "ok"), Some(2), now);
        assert_eq!(s.generation, Some(2));
        assert_eq!(s.conditions.len(), 4);
        assert!(is_ready_for(&s, Some(2)));
        assert!(!is_ready_for(&s, Some(3)));
        let before = s.clone();
        finish(
            &mut s,
            &Health::ready("Running", "ok"),
            Some(2),
            now + chrono::Duration::seconds(5),
        );
        assert!(s == before, "an unchanged finish yields an equal status");
        s.extra = false;
        finish(&mut s, &Health::stalled("Bad", "fix it"), Some(2), now);
        assert_eq!(s.conditions.len(), 3);
        assert_eq!(
            health_of(&s),
            Some(Health::stalled("Bad", "fix it")),
            "{:?}",
            s.conditions
        );
        assert!(conditions::is_true(&s.conditions, STALLED));
        assert!(!conditions::is_true(&s.conditions, READY));
    }
}
