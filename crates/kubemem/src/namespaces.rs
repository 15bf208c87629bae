//! Namespaces as kube-apiserver and the namespace controller of kube-controller-manager handle
//! them.
//!
//! - A new server has `default`, `kube-node-lease`, `kube-public` and `kube-system`.
//! - Creating a namespaced object in a namespace that does not exist is refused with
//!   `404 NotFound` (`namespaces "x" not found`), and in a terminating namespace with
//!   `403 Forbidden` (cause `NamespaceTerminating`), as the `NamespaceLifecycle` admission plugin
//!   does. Updates and deletes are not affected.
//! - A created namespace gets `status.phase: Active`, the `kubernetes` spec finalizer and the
//!   `kubernetes.io/metadata.name` label; updates of the main resource keep `spec.finalizers` and
//!   `status` (the `status` and `finalize` subresources change them).
//! - Deleting a namespace (other than the immortal `default`, `kube-system` and `kube-public`,
//!   which gives `403`) sets `deletionTimestamp` and `status.phase: Terminating`. Then, at the end
//!   of the same write, the namespace controller's work is done: every object in the namespace is
//!   deleted (objects with finalizers get `deletionTimestamp` and stay until their finalizers are
//!   removed), the `NamespaceContentRemaining`/`NamespaceFinalizersRemaining`... conditions are
//!   reported, and once nothing is left the `kubernetes` finalizer is removed and the namespace
//!   goes away (after its own `metadata.finalizers`, if any). Each later removal of an object of a
//!   terminating namespace runs this again.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::gc;
use super::handlers::now_timestamp;
use super::patch::{Endpoint, ManagedFields};
use super::registry::ResourceInfo;
use super::store::{ObjKey, Propagation, State};

/// The namespaces a new server has.
pub(crate) const INITIAL: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];
/// Namespaces that may not be deleted.
const IMMORTAL: [&str; 3] = ["default", "kube-public", "kube-system"];
/// Storage id of namespaces.
const NAMESPACES_ID: &str = "/v1/namespaces";
/// The spec finalizer of the namespace controller.
const FINALIZER: &str = "kubernetes";
/// The label every namespace carries with its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether `res` is the core `v1` Namespace resource.
pub(crate) fn is_namespace(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.version == "v1" && res.plural == "namespaces"
}

/// Whether `k` is the storage key of a namespace.
pub(crate) fn is_namespace_key(k: &ObjKey) -> bool {
    k.0 == NAMESPACES_ID
}

fn key(name: &str) -> ObjKey {
    (NAMESPACES_ID.to_string(), String::new(), name.to_string())
}

fn terminating(ns: &Value) -> bool {
    ns.pointer("/metadata/deletionTimestamp").is_some()
        || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
}

fn strings_at(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a namespace still has `spec.finalizers` (it is only removed once they are empty).
pub(crate) fn has_spec_finalizers(ns: &Value) -> bool {
    !strings_at(ns, "/spec/finalizers").is_empty()
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("namespaces \"{name}\" not found"),
    )
    .with_details(json!({"name": name, "kind": "namespaces"}))
}

/// The `NamespaceLifecycle` check of a create of a `res` object named `name` (or its
/// `generateName`) in `namespace`.
pub(crate) fn admit_create(
    state: &State,
    res: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !res.namespaced {
        return Ok(());
    }
    let Some(ns) = state.get(&key(namespace)) else {
        return Err(not_found(namespace));
    };
    if terminating(&ns.obj) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} \
                 because it is being terminated",
                res.group_resource()
            ),
        )
        .with_details(json!({
            "name": name,
            "group": res.group,
            "kind": res.plural,
            "causes": [{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {namespace} is being terminated"),
                "field": "metadata.namespace",
            }],
        })));
    }
    Ok(())
}

/// Whether namespace `name` exists.
pub(crate) fn exists(state: &State, name: &str) -> bool {
    state.get(&key(name)).is_some()
}

fn object_mut<'a>(v: &'a mut Value, field: &str) -> Option<&'a mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    let entry = o.entry(field).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

/// The namespace strategy and defaults: on create `status.phase: Active` and the `kubernetes`
/// finalizer; on updates of the main resource `spec.finalizers` stays as stored; always the
/// `kubernetes.io/metadata.name` label.
pub(crate) fn prepare(new: &mut Value, old: Option<&Value>) {
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match old {
        None => {
            if let Some(o) = new.as_object_mut() {
                o.insert("status".into(), json!({"phase": "Active"}));
            }
            let mut finalizers = strings_at(new, "/spec/finalizers");
            if !finalizers.iter().any(|f| f == FINALIZER) {
                finalizers.push(FINALIZER.to_string());
            }
            if let Some(spec) = object_mut(new, "spec") {
                spec.insert("finalizers".into(), json!(finalizers));
            }
        }
        Some(old) => {
            let kept = old.pointer("/spec/finalizers").cloned();
            if let Some(spec) = object_mut(new, "spec") {
                match kept {
                    Some(f) => spec.insert("finalizers".into(), f),
                    None => spec.remove("finalizers"),
                };
            }
            if new
                .get("spec")
                .is_some_and(|s| s.as_object().is_some_and(Map::is_empty))
                && old.get("spec").is_none()
                && let Some(o) = new.as_object_mut()
            {
                o.remove("spec");
            }
        }
    }
    if let Some(labels) = new
        .get_mut("metadata")
        .and_then(|m| object_mut(m, "labels"))
    {
        labels.insert(NAME_LABEL.into(), Value::String(name));
    }
}

/// The admission check of a namespace delete: the immortal namespaces may not be deleted.
pub(crate) fn admit_delete(name: &str) -> Result<(), ApiError> {
    if IMMORTAL.contains(&name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
        )
        .with_details(json!({"name": name, "kind": "namespaces"})));
    }
    Ok(())
}

/// Starts deleting the namespace at `k`: `deletionTimestamp` and `Terminating`; the content is
/// deleted by [`sync_pending`] at the end of the write. Returns the namespace as the delete
/// answers it.
pub(crate) fn begin_deletion(state: &mut State, k: &ObjKey) -> Option<Arc<Value>> {
    let stored = state.get(k)?.clone();
    if stored.obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Some(stored.obj);
    }
    let mut obj = (*stored.obj).clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("deletionTimestamp".into(), Value::String(now_timestamp()));
    }
    if let Some(status) = object_mut(&mut obj, "status") {
        status.insert("phase".into(), json!("Terminating"));
    }
    let no_metadata_finalizers = strings_at(&obj, "/metadata/finalizers").is_empty();
    if !has_spec_finalizers(&obj) && no_metadata_finalizers {
        return gc::finish_removal(state, k, obj, Propagation::Background);
    }
    let out = state.put(k.clone(), obj, stored.managed, "v1");
    if !state.dry_run {
        state.namespaces_to_sync.insert(k.2.clone());
    }
    Some(out)
}

/// `PUT /api/v1/namespaces/{name}/finalize`: replaces `spec.finalizers` (nothing else); a
/// terminating namespace without finalizers left is removed.
pub(crate) fn finalize(
    state: &mut State,
    res: &ResourceInfo,
    name: &str,
    body: &Value,
    manager: &str,
) -> Result<Arc<Value>, ApiError> {
    let k = key(name);
    let stored = state
        .get(&k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, name))?;
    if let Some(given) = body.pointer("/metadata/name").and_then(Value::as_str)
        && given != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let mut new = (*stored.obj).clone();
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    let finalizers = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    if let Some(spec) = object_mut(&mut new, "spec") {
        spec.insert("finalizers".into(), finalizers);
    }
    if new.pointer("/metadata/deletionTimestamp").is_some()
        && !has_spec_finalizers(&new)
        && strings_at(&new, "/metadata/finalizers").is_empty()
    {
        return gc::finish_removal(state, &k, new, Propagation::Background)
            .ok_or_else(|| ApiError::not_found(res, name));
    }
    let mut managed: ManagedFields = stored.managed.clone();
    let mut old = (*stored.obj).clone();
    if let Some(meta) = old.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    managed.record_update(manager, &old, &new, Endpoint::Main, res.status_subresource);
    Ok(state.put(k, new, managed, "v1"))
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_,
        "status": status,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// Runs the namespace controller for every namespace whose content changed during this write.
pub(crate) fn sync_pending(state: &mut State) {
    if state.dry_run {
        state.namespaces_to_sync.clear();
        return;
    }
    while let Some(name) = state.namespaces_to_sync.pop_first() {
        sync(state, &name);
    }
}

/// One pass of the namespace controller over namespace `name`, when it is terminating.
fn sync(state: &mut State, name: &str) {
    let k = key(name);
    let Some(stored) = state.get(&k).cloned() else {
        return;
    };
    if !terminating(&stored.obj) {
        return;
    }
    let mut ids: Vec<(String, String)> = state
        .registry
        .all()
        .filter(|r| r.namespaced)
        .map(|r| (r.id(), format!("{}.{}", r.plural, r.group)))
        .collect();
    ids.dedup();
    let content: Vec<ObjKey> = ids
        .iter()
        .flat_map(|(id, _)| state.range(id, Some(name)).map(|(k, _)| k.clone()))
        .collect();
    for k in &content {
        gc::delete_object(state, k, Propagation::Background);
    }
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    for (id, resource) in &ids {
        for (_, s) in state.range(id, Some(name)) {
            *remaining.entry(resource.clone()).or_default() += 1;
            for f in strings_at(&s.obj, "/metadata/finalizers") {
                *finalizers.entry(f).or_default() += 1;
            }
        }
    }
    // The namespace may have been removed while its content went (a namespace cannot own its
    // content, but be safe).
    let Some(stored) = state.get(&k).cloned() else {
        return;
    };
    let now = now_timestamp();
    let mut conditions = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered",
            &now,
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
            &now,
        ),
        condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
            &now,
        ),
    ];
    if remaining.is_empty() {
        for t in ["NamespaceContentRemaining", "NamespaceFinalizersRemaining"] {
            conditions.push(condition(
                t,
                "False",
                "ContentRemoved",
                "All content successfully removed",
                &now,
            ));
        }
    } else {
        let resources: Vec<String> = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        conditions.push(condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            &format!("Some resources are remaining: {}", resources.join(", ")),
            &now,
        ));
        if finalizers.is_empty() {
            conditions.push(condition(
                "NamespaceFinalizersRemaining",
                "False",
                "ContentRemoved",
                "All content successfully removed",
                &now,
            ));
        } else {
            let by_finalizer: Vec<String> = finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            conditions.push(condition(
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizerRemain",
                &format!("Some finalizers are remaining: {}", by_finalizer.join(", ")),
                &now,
            ));
        }
    }
    let mut obj = (*stored.obj).clone();
    // Keep the transition time of conditions whose status did not change.
    let old_conditions = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &mut conditions {
        if let Some(old) = old_conditions
            .iter()
            .find(|o| o.get("type") == c.get("type"))
            && old.get("status") == c.get("status")
        {
            c["lastTransitionTime"] = old["lastTransitionTime"].clone();
        }
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if let Some(status) = object_mut(&mut obj, "status") {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    let mut current = (*stored.obj).clone();
    if let Some(meta) = current.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let managed = stored.managed.clone();
    if obj != current {
        state.put(k.clone(), obj.clone(), managed.clone(), "v1");
    }
    if !remaining.is_empty() {
        return;
    }
    // Finalize: drop the controller's spec finalizer; the namespace goes once no finalizer
    // (spec or metadata) is left.
    let kept: Vec<String> = strings_at(&obj, "/spec/finalizers")
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    if let Some(spec) = object_mut(&mut obj, "spec") {
        spec.insert("finalizers".into(), json!(kept));
    }
    if kept.is_empty() && strings_at(&obj, "/metadata/finalizers").is_empty() {
        gc::finish_removal(state, &k, obj, Propagation::Background);
    } else {
        state.put(k, obj, managed, "v1");
    }
}
