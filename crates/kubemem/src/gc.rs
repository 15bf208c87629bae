//! Deletion with finalizers and the garbage collector for owner references.
//!
//! Deleting an object with finalizers sets `deletionTimestamp` and keeps it; it is removed once its
//! finalizers are empty. When an object is removed, its dependents (objects whose
//! `ownerReferences` carry its uid) are deleted right after it, in the same write
//! (`Background` semantics; `Foreground` is treated as `Background`), recursively and respecting the
//! dependents' own finalizers. A dependent that still has another existing owner only loses the
//! reference. With `Orphan` the dependents lose the reference instead.

use std::sync::Arc;

use serde_json::{Value, json};

use super::handlers::now_timestamp;
use super::namespaces;
use super::store::{ObjKey, Propagation, State};

fn api_version_of(v: &Value) -> String {
    v.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string()
}

/// Deletes the object at `key`. Returns its (new or last) state and whether it was removed now;
/// `None` when it does not exist.
pub fn delete_object(
    state: &mut State,
    key: &ObjKey,
    policy: Propagation,
) -> Option<(Arc<Value>, bool)> {
    if namespaces::is_namespace_key(key) {
        let out = namespaces::begin_deletion(state, key)?;
        let gone = state.get(key).is_none();
        return Some((out, gone));
    }
    let stored = state.get(key)?.clone();
    let has_finalizers = stored
        .obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_finalizers {
        if stored.obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Some((stored.obj, false));
        }
        let mut obj = (*stored.obj).clone();
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("deletionTimestamp".into(), Value::String(now_timestamp()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            // As the API server's BeforeDelete: graceful deletion bumps a set generation, so
            // controllers filtering on generation still see it.
            if let Some(g) = m.get("generation").and_then(Value::as_i64)
                && g > 0
            {
                m.insert("generation".into(), json!(g + 1));
            }
            if let Some(uid) = m.get("uid").and_then(Value::as_str)
                && !state.dry_run
            {
                state.pending_policy.insert(uid.to_string(), policy);
            }
        }
        let av = api_version_of(&obj);
        let out = state.put(key.clone(), obj, stored.managed, &av);
        return Some((out, false));
    }
    let last = (*stored.obj).clone();
    finish_removal(state, key, last, policy).map(|o| (o, true))
}

/// Removes the object at `key` (final state `last`) and collects its dependents.
pub fn finish_removal(
    state: &mut State,
    key: &ObjKey,
    last: Value,
    policy: Propagation,
) -> Option<Arc<Value>> {
    let removed = state.remove(key, last)?;
    if state.dry_run {
        return Some(removed);
    }
    if !key.1.is_empty() {
        // Content of a terminating namespace may have been the last thing keeping it.
        state.namespaces_to_sync.insert(key.1.clone());
    }
    let Some(uid) = removed
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Some(removed);
    };
    state.pending_policy.remove(&uid);
    for dep in state.dependents_of(&uid) {
        let Some(stored) = state.get(&dep).cloned() else {
            continue;
        };
        let other_owner_alive = stored
            .obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter().any(|r| {
                    r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u != uid && state.key_of_uid(u).is_some())
                })
            });
        if policy == Propagation::Orphan || other_owner_alive {
            let mut obj = (*stored.obj).clone();
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                let keep: Vec<Value> = m
                    .get("ownerReferences")
                    .and_then(Value::as_array)
                    .map(|refs| {
                        refs.iter()
                            .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                if keep.is_empty() {
                    m.remove("ownerReferences");
                } else {
                    m.insert("ownerReferences".into(), Value::Array(keep));
                }
            }
            let av = api_version_of(&obj);
            state.put(dep, obj, stored.managed, &av);
        } else {
            delete_object(state, &dep, Propagation::Background);
        }
    }
    Some(removed)
}
