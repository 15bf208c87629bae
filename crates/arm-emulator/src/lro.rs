//! Long-running operations: creation, polling headers, and completion after the configured latency.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use chrono::Utc;
use serde_json::Value;

use super::context::Shared;
use super::error::ArmError;
use super::kinds::{self, Kind, Provisioning, Settings};
use super::state::{OpKind, OpStatus, Operation, Store};

/// The kind (including resource groups) of a stored type name.
pub fn kind_of(type_name: &str) -> Option<&'static Kind> {
    if kinds::RESOURCE_GROUP
        .type_name
        .eq_ignore_ascii_case(type_name)
    {
        Some(&kinds::RESOURCE_GROUP)
    } else {
        kinds::find(type_name)
    }
}

/// Starts an operation on a stored resource: records it, marks the resource busy and
/// schedules its completion after the configured latency. Returns the operation id.
pub fn begin(
    shared: &Arc<Shared>,
    store: &mut Store,
    resource_id: &str,
    kind: &Kind,
    op: OpKind,
    api_version: &str,
    failure: Option<&ArmError>,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let method = match &op {
        OpKind::Put { .. } => "PUT",
        OpKind::Delete => "DELETE",
        OpKind::Action(_) => "POST",
    };
    store.operations.insert(
        id.clone(),
        Operation {
            id: id.clone(),
            resource_id: resource_id.to_string(),
            resource_kind: kind.type_name.to_string(),
            kind: op,
            status: OpStatus::InProgress,
            error: None,
            start_time: Utc::now(),
            end_time: None,
            api_version: api_version.to_string(),
            fail_with: failure.map(ArmError::body),
            error_status: failure.map(|f| f.status.as_u16()),
        },
    );
    if let Some(entry) = store.get_mut(resource_id) {
        entry.busy = Some(id.clone());
    }
    let delay = shared
        .faults
        .operation_delay(method, resource_id)
        .map_or(shared.settings.latency, |d| d.max(shared.settings.latency));
    schedule(shared, id.clone(), delay);
    id
}

/// Completes `op_id` after `delay` on the emulator's runtime.
pub fn schedule(shared: &Arc<Shared>, op_id: String, delay: Duration) {
    let shared_for_task = Arc::clone(shared);
    shared.runtime.spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut store = shared_for_task.store();
        complete(&mut store, &shared_for_task.settings, &op_id);
        drop(store);
        shared_for_task.changed();
    });
}

/// Applies an operation's effect and marks it `Succeeded` (no-op unless it is in progress).
pub fn complete(store: &mut Store, settings: &Settings, op_id: &str) {
    let Some(op) = store.operations.get(op_id).cloned() else {
        return;
    };
    if op.status != OpStatus::InProgress {
        return;
    }
    if let Some(error) = op.fail_with.clone() {
        // An injected asynchronous failure: the resource is left Failed, as ARM does.
        if let Some(entry) = store.get_mut(&op.resource_id) {
            entry.busy = None;
            entry.set_provisioning("Failed");
            // Compute reports the failure in the instance view until a later success.
            entry.meta.insert("provisioningError".into(), error.clone());
        }
        if let Some(kind) = kind_of(&op.resource_kind) {
            kind.hooks.failed(store, &op.resource_id, &op.kind);
        }
        if let Some(stored) = store.operations.get_mut(op_id) {
            stored.status = OpStatus::Failed;
            stored.error = Some(error);
            stored.end_time = Some(Utc::now());
        }
        return;
    }
    if let Some(kind) = kind_of(&op.resource_kind) {
        match &op.kind {
            OpKind::Delete => remove_tree(store, &op.resource_id),
            OpKind::Put { .. } | OpKind::Action(_) => {
                if let Some(entry) = store.get_mut(&op.resource_id) {
                    entry.busy = None;
                    entry.meta.remove("provisioningError");
                    if kind.provisioning != Provisioning::Untracked {
                        entry.set_provisioning("Succeeded");
                    }
                }
                kind.hooks
                    .complete(store, settings, &op.resource_id, &op.kind);
            }
        }
    }
    if let Some(stored) = store.operations.get_mut(op_id) {
        stored.status = OpStatus::Succeeded;
        stored.end_time = Some(Utc::now());
    }
}

/// Completes every in-progress operation at once (used when loading a state file).
pub fn complete_all(store: &mut Store, settings: &Settings) {
    let pending: Vec<String> = store
        .operations
        .values()
        .filter(|o| o.status == OpStatus::InProgress)
        .map(|o| o.id.clone())
        .collect();
    for id in pending {
        complete(store, settings, &id);
    }
}

/// Cancels the in-progress operation holding a resource (out-of-band changes).
pub fn cancel(store: &mut Store, resource_id: &str) {
    let Some(op_id) = store.get(resource_id).and_then(|e| e.busy.clone()) else {
        return;
    };
    if let Some(op) = store.operations.get_mut(&op_id) {
        op.status = OpStatus::Canceled;
        op.end_time = Some(Utc::now());
        op.error = Some(serde_json::json!({
            "code": "OperationCanceled",
            "message": "The operation was canceled because the resource changed out of band."
        }));
    }
    if let Some(entry) = store.get_mut(resource_id) {
        entry.busy = None;
    }
}

/// Removes a resource and everything below it, running each kind's delete cascade.
pub fn remove_tree(store: &mut Store, id: &str) {
    let key = id.to_ascii_lowercase();
    let prefix = format!("{key}/");
    let mut doomed: Vec<String> = store
        .resources
        .range(key.clone()..)
        .take_while(|(k, _)| **k == key || k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    // Children first, so cascades of parents see a consistent store.
    doomed.reverse();
    for k in doomed {
        if let Some(entry) = store.resources.remove(&k) {
            if let Some(op_id) = &entry.busy
                && let Some(op) = store.operations.get_mut(op_id)
                && op.status == OpStatus::InProgress
                && op.kind != OpKind::Delete
            {
                op.status = OpStatus::Canceled;
                op.end_time = Some(Utc::now());
            }
            if let Some(kind) = kind_of(&entry.kind) {
                kind.hooks.deleted(store, &entry);
            }
        }
    }
}

/// Seconds to advertise in `Retry-After` for the configured latency.
pub fn retry_after(settings: &Settings) -> u64 {
    settings.latency.as_millis().div_ceil(1000) as u64
}

/// Location of the resource for operation URLs (own, or the top-level ancestor's).
pub fn location_of(store: &Store, id: &str) -> String {
    let mut current = id.to_string();
    loop {
        if let Some(loc) = store.get(&current).and_then(|e| e.str_at("/location")) {
            return loc.to_string();
        }
        match current.rfind('/') {
            Some(pos) if pos > 0 => current.truncate(pos),
            _ => return "westus2".to_string(),
        }
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Polling headers of a provider operation: `Azure-AsyncOperation`, optionally `Location`, and `Retry-After`.
pub fn provider_headers(
    base: &str,
    sub: &str,
    namespace: &str,
    location: &str,
    op: &Operation,
    with_location: bool,
    settings: &Settings,
) -> HeaderMap {
    let prefix = format!("{base}/subscriptions/{sub}/providers/{namespace}/locations/{location}");
    let mut urls = vec![("azure-asyncoperation", op_url(&prefix, "operations", op))];
    if with_location {
        urls.push(("location", op_url(&prefix, "operationResults", op)));
    }
    polling_headers(&urls, settings)
}

/// Polling headers of a create answered `202 Accepted` with only a `Location`
/// (`.../locations/{loc}/operationResults/{id}`), as storage accounts do.
pub fn location_headers(
    base: &str,
    sub: &str,
    namespace: &str,
    location: &str,
    op: &Operation,
    settings: &Settings,
) -> HeaderMap {
    let prefix = format!("{base}/subscriptions/{sub}/providers/{namespace}/locations/{location}");
    polling_headers(
        &[("location", op_url(&prefix, "operationResults", op))],
        settings,
    )
}

/// Polling headers of a resource-group deletion (`Location` only, as ARM does).
pub fn rg_headers(base: &str, sub: &str, op: &Operation, settings: &Settings) -> HeaderMap {
    let prefix = format!("{base}/subscriptions/{sub}");
    polling_headers(
        &[("location", op_url(&prefix, "operationresults", op))],
        settings,
    )
}

/// `{prefix}/{segment}/{op id}?api-version={op api-version}`.
fn op_url(prefix: &str, segment: &str, op: &Operation) -> String {
    format!(
        "{prefix}/{segment}/{}?api-version={}",
        op.id, op.api_version
    )
}

/// The polling `urls` as headers, followed by `Retry-After`.
fn polling_headers(urls: &[(&'static str, String)], settings: &Settings) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, url) in urls {
        insert(&mut headers, name, url);
    }
    insert(
        &mut headers,
        "retry-after",
        &retry_after(settings).to_string(),
    );
    headers
}

/// The error object of a finished-but-unsuccessful operation.
pub fn failure(op: &Operation) -> Option<Value> {
    match op.status {
        OpStatus::Failed | OpStatus::Canceled => Some(op.error.clone().unwrap_or_else(|| {
            serde_json::json!({"code": "OperationCanceled", "message": "The operation was canceled."})
        })),
        _ => None,
    }
}
