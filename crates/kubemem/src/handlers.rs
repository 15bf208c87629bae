//! Verb implementations on the locked state: create, update (replace / patch / status), get, list.

use std::sync::Arc;

use http::StatusCode;
use rand::Rng;
use serde_json::{Map, Value, json};

use super::error::{ApiError, FieldCause};
use super::gc;
use super::namespaces;
use super::patch::{Endpoint, ManagedFields};
use super::registry::ResourceInfo;
use super::store::{ObjKey, State};

/// RFC 3339 timestamp with second precision, as the API server writes it.
pub fn now_timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let o = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Name of an object (`""` when absent).
pub fn name_of(v: &Value) -> &str {
    str_at(v, "/metadata/name").unwrap_or("")
}

/// DNS-1123 subdomain check, as the API server applies to object names.
pub fn validate_name(name: &str) -> Result<(), String> {
    const MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
        characters, '-' or '.', and must start and end with an alphanumeric character";
    if name.len() > 253 {
        return Err("must be no more than 253 characters".to_string());
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = name.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| alnum(c) || c == '-')
            && part.chars().next().is_some_and(alnum)
            && part.chars().last().is_some_and(alnum)
    });
    if ok { Ok(()) } else { Err(MSG.to_string()) }
}

/// Checks and fills `apiVersion`/`kind`.
fn check_type(res: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let av = res.api_version();
    if let Some(given) = str_at(obj, "/apiVersion")
        && given != av
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({given}) does not match the expected API version ({av})"
        )));
    }
    if let Some(given) = str_at(obj, "/kind")
        && given != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({given}) does not match the expected kind ({})",
            res.kind
        )));
    }
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(av));
        o.insert("kind".into(), Value::String(res.kind.clone()));
    }
    Ok(())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn run_admission(res: &ResourceInfo, new: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    if res.group.is_empty() && res.kind == "Secret" {
        merge_string_data(new);
        // Defaulting of the core API.
        if new
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(o) = new.as_object_mut()
        {
            o.insert("type".into(), json!("Opaque"));
        }
    }
    if namespaces::is_namespace(res) {
        namespaces::prepare(new, old);
    }
    if let Some(adm) = &res.admission
        && let Err(causes) = adm.admit(new, old)
    {
        return Err(ApiError::invalid(res, name_of(new), &causes));
    }
    Ok(())
}

/// Moves a Secret's write-only `stringData` into `data` (base64), overriding keys of
/// `data`, as the API server does.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(obj) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = obj.remove("stringData") else {
        return;
    };
    let data = obj
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// The storage key of `name` in `ns` (namespace is ignored for cluster-scoped resources).
pub fn key(res: &ResourceInfo, ns: &str, name: &str) -> ObjKey {
    let ns = if res.namespaced { ns } else { "" };
    (res.id(), ns.to_string(), name.to_string())
}

/// How a create records field ownership.
pub enum CreateOwnership<'a> {
    /// An Update by this manager.
    Update(&'a str),
    /// Already computed by server-side apply.
    Applied(ManagedFields),
}

/// Creates an object (POST, or server-side apply of an absent object).
pub fn create(
    state: &mut State,
    res: &ResourceInfo,
    ns: &str,
    mut obj: Value,
    ownership: CreateOwnership<'_>,
) -> Result<Arc<Value>, ApiError> {
    check_type(res, &mut obj)?;
    let meta = meta_mut(&mut obj)?;
    if res.namespaced {
        if let Some(given) = meta.get("namespace").and_then(Value::as_str)
            && !given.is_empty()
            && given != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.insert("namespace".into(), Value::String(ns.to_string()));
    } else {
        meta.remove("namespace");
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    {
        let shown = if name.is_empty() {
            meta.get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
        } else {
            &name
        };
        namespaces::admit_create(state, res, ns, shown)?;
    }
    if name.is_empty() {
        let prefix = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                res,
                "",
                &[FieldCause::with_reason(
                    "metadata.name",
                    "Required value: name or generateName is required",
                    "FieldValueRequired",
                )],
            ));
        }
        loop {
            let candidate = format!("{prefix}{}", random_suffix());
            if state.get(&key(res, ns, &candidate)).is_none() {
                name = candidate;
                break;
            }
        }
        meta.insert("name".into(), Value::String(name.clone()));
    }
    if let Err(msg) = validate_name(&name) {
        return Err(ApiError::invalid(
            res,
            &name,
            &[FieldCause::invalid(
                "metadata.name",
                format!("Invalid value: \"{name}\": {msg}"),
            )],
        ));
    }
    if state.get(&key(res, ns, &name)).is_some() {
        return Err(ApiError::already_exists(res, &name));
    }
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "resourceVersion should not be set on objects to be created",
        ));
    }
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "generation",
    ] {
        meta.remove(f);
    }
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("creationTimestamp".into(), Value::String(now_timestamp()));
    if res.custom {
        meta.insert("generation".into(), json!(1));
    }
    if res.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    run_admission(res, &mut obj, None)?;
    let managed = match ownership {
        CreateOwnership::Applied(m) => m,
        CreateOwnership::Update(manager) => {
            let mut m = ManagedFields::default();
            m.record_update(
                manager,
                &json!({}),
                &obj,
                Endpoint::Main,
                res.status_subresource,
            );
            m
        }
    };
    let k = key(res, ns, &name);
    let managed = fit_storage(state, res, &k, &obj, managed)?;
    Ok(state.put(k, obj, managed, &res.api_version()))
}

/// etcd's default `--max-request-bytes` (1.5 MiB), the largest object the API server can store.
pub const MAX_STORED_OBJECT_BYTES: usize = 1536 * 1024;

/// Approximate size of `obj` in etcd: its JSON (what custom resources are stored as), with the
/// base64 `data`/`binaryData` of built-in kinds counted at their decoded size (protobuf stores
/// bytes raw), plus the key.
fn stored_size(res: &ResourceInfo, k: &ObjKey, obj: &Value) -> usize {
    let mut n = serde_json::to_vec(obj).map_or(0, |v| v.len());
    if !res.custom {
        for field in ["data", "binaryData"] {
            let encoded = if res.kind == "Secret" || field == "binaryData" {
                obj.get(field).and_then(Value::as_object)
            } else {
                None
            };
            for v in encoded.into_iter().flat_map(|m| m.values()) {
                let len = v.as_str().map_or(0, str::len);
                n = n.saturating_sub(len - len / 4 * 3);
            }
        }
    }
    n + k.0.len() + k.1.len() + k.2.len() + 2
}

/// Checks that `obj` fits in etcd as kube-apiserver stores it: when it does not, the write is
/// retried without `managedFields` (which are then dropped), and refused with etcd's
/// `request is too large` when it still does not fit. Dry runs never reach storage.
fn fit_storage(
    state: &State,
    res: &ResourceInfo,
    k: &ObjKey,
    obj: &Value,
    managed: ManagedFields,
) -> Result<ManagedFields, ApiError> {
    if state.dry_run {
        return Ok(managed);
    }
    let mut with = obj.clone();
    if let Some(meta) = with.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), managed.render(&res.api_version()));
        meta.insert("resourceVersion".into(), json!("18446744073709551615"));
    }
    if stored_size(res, k, &with) <= MAX_STORED_OBJECT_BYTES {
        return Ok(managed);
    }
    if let Some(meta) = with.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if stored_size(res, k, &with) <= MAX_STORED_OBJECT_BYTES {
        return Ok(ManagedFields::default());
    }
    Err(ApiError::storage_too_large())
}

/// Whether two objects differ outside `metadata` (and `status` when it is a subresource).
fn spec_changed(res: &ResourceInfo, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            if res.status_subresource {
                o.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// How an update records field ownership.
pub enum UpdateOwnership<'a> {
    /// An Update by this manager.
    Update(&'a str),
    /// Already computed by server-side apply.
    Applied(ManagedFields),
}

/// Stores `new` as the next state of the object at `k` (replace, patch, or status write).
///
/// Applies subresource rules, keeps server-owned metadata, enforces the finalizer rule, runs
/// admission, bumps generation on spec changes, and skips no-op writes. When the object is being
/// deleted and has no finalizers left it is removed. Returns the stored (or last) object.
pub fn update(
    state: &mut State,
    res: &ResourceInfo,
    k: &ObjKey,
    mut new: Value,
    endpoint: Endpoint,
    ownership: UpdateOwnership<'_>,
) -> Result<Arc<Value>, ApiError> {
    let stored = state
        .get(k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, &k.2))?;
    let old: &Value = &stored.obj;
    check_type(res, &mut new)?;
    if let Some(given) = str_at(&new, "/metadata/name")
        && given != k.2
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({})",
            k.2
        )));
    }
    if res.status_subresource {
        match endpoint {
            Endpoint::Main => {
                if let Some(o) = new.as_object_mut() {
                    match old.get("status") {
                        Some(s) => o.insert("status".into(), s.clone()),
                        None => o.remove("status"),
                    };
                }
            }
            Endpoint::Status => {
                let mut merged = old.clone();
                if let Some(o) = merged.as_object_mut() {
                    match new.get("status") {
                        Some(s) => o.insert("status".into(), s.clone()),
                        None => o.remove("status"),
                    };
                }
                new = merged;
            }
        }
    }
    {
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut new)?;
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        meta.remove("managedFields");
        meta.remove("resourceVersion");
        if old_meta.get("deletionTimestamp").is_some() {
            let old_f: Vec<&Value> = old_meta
                .get("finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let added: Vec<String> = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|f| !old_f.contains(f))
                        .map(|f| f.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    res,
                    &k.2,
                    &[FieldCause::with_reason(
                        "metadata.finalizers",
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                        "FieldValueForbidden",
                    )],
                ));
            }
        }
    }
    if endpoint == Endpoint::Main {
        run_admission(res, &mut new, Some(old))?;
    }
    if res.custom && spec_changed(res, old, &new) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("generation".into(), json!(g + 1));
        }
    }
    let managed = match ownership {
        UpdateOwnership::Applied(m) => m,
        UpdateOwnership::Update(manager) => {
            let mut m = stored.managed.clone();
            let mut old_cmp = old.clone();
            if let Some(meta) = old_cmp.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
            m.record_update(manager, &old_cmp, &new, endpoint, res.status_subresource);
            m
        }
    };
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
    let no_finalizers = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
        && !(namespaces::is_namespace(res) && namespaces::has_spec_finalizers(&new));
    if deleting && no_finalizers {
        let uid = str_at(&new, "/metadata/uid").unwrap_or("").to_string();
        let policy = if state.dry_run {
            state.pending_policy.get(&uid).copied()
        } else {
            state.pending_policy.remove(&uid)
        }
        .unwrap_or(super::store::Propagation::Background);
        return gc::finish_removal(state, k, new, policy)
            .ok_or_else(|| ApiError::not_found(res, &k.2));
    }
    // No-op detection: identical content and ownership keep the old resourceVersion.
    let mut candidate = new.clone();
    if let Some(meta) = candidate.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(rv) = old.pointer("/metadata/resourceVersion") {
            meta.insert("resourceVersion".into(), rv.clone());
        }
        let mf = managed.render(&res.api_version());
        if mf.as_array().is_some_and(|a| !a.is_empty()) {
            meta.insert("managedFields".into(), mf);
        }
    }
    if &candidate == old {
        return Ok(stored.obj.clone());
    }
    let managed = fit_storage(state, res, k, &new, managed)?;
    Ok(state.put(k.clone(), new, managed, &res.api_version()))
}

/// Checks `metadata.resourceVersion` of a write against the stored object (409 when stale).
pub fn check_rv(
    res: &ResourceInfo,
    k: &ObjKey,
    state: &State,
    given: Option<&str>,
) -> Result<(), ApiError> {
    let Some(given) = given.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let current = state
        .get(k)
        .and_then(|s| {
            s.obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| ApiError::not_found(res, &k.2))?;
    if given != current {
        return Err(ApiError::conflict(res, &k.2));
    }
    Ok(())
}

/// Builds a list response body.
pub fn list_body(res: &ResourceInfo, items: Vec<Value>, rv: u64, cont: Option<String>) -> Value {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    if let Some(c) = cont {
        meta.insert("continue".into(), Value::String(c));
    }
    json!({
        "apiVersion": res.api_version(),
        "kind": format!("{}List", res.kind),
        "metadata": meta,
        "items": items,
    })
}

/// 504 for a list at a resourceVersion the server has not reached.
pub fn too_large_rv(given: u64, current: u64) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
        format!("Too large resource version: {given}, current: {current}"),
    )
    .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
}

/// The `PartialObjectMetadata` view of an object (for `Accept: ...;as=PartialObjectMetadata`).
pub fn metadata_only(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}
