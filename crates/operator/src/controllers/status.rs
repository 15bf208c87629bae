//! Writing status and publishing events.
//!
//! Status is written with a JSON merge patch on the `/status` subresource **only when it
//! changed**, so a resync at rest makes no Kubernetes writes. Conditions go through
//! [`api::conditions`](crate::api::conditions) so `lastTransitionTime` moves only on flips.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::Error;
use crate::api::conditions::{Health, NewCondition, apply_health, set_condition};

/// Field manager of the operator's writes.
pub const FIELD_MANAGER: &str = "azlin-operator";

/// Sets the kstatus conditions from `health` plus `extra` conditions for `generation`.
/// Returns whether anything changed.
pub fn set_conditions(
    conditions: &mut Vec<Condition>,
    health: &Health,
    extra: Vec<NewCondition>,
    generation: Option<i64>,
) -> bool {
    let now = Timestamp::now();
    let mut changed = apply_health(conditions, health, generation, now);
    for c in extra {
        changed |= set_condition(conditions, c, generation, now);
    }
    changed
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

/// Publishes an event about `regarding`. Failures are logged, never fatal.
pub async fn publish_event(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: impl Into<String>,
) {
    let mut note = note.into();
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        tracing::warn!(error = %e, reason, "publishing an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn conditions_change_only_when_health_changes() {
        let mut c = Vec::new();
        assert!(set_conditions(
            &mut c,
            &Health::ready("Running", "ok"),
            vec![NewCondition::truthy("Mounted", "Mounted", "all")],
            Some(1)
        ));
        assert_eq!(c.len(), 4);
        assert!(!set_conditions(
            &mut c,
            &Health::ready("Running", "ok"),
            vec![NewCondition::truthy("Mounted", "Mounted", "all")],
            Some(1)
        ));
    }
}
