//! HTTP routing: path parsing (`/api/v1/...`, `/apis/{group}/{version}/...`), verb classification
//! and dispatch to the verb implementations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::Stream;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::authz;
use super::error::ApiError;
use super::event_view;
use super::fields::{self, FieldValidation};
use super::gc;
use super::handlers::{self, CreateOwnership, UpdateOwnership};
use super::namespaces;
use super::patch::{Endpoint, ManagedFields, PatchKind, apply_patch, parse_apply_body};
use super::protobuf;
use super::registry::ResourceInfo;
use super::scale;
use super::selector::Selector;
use super::store::{Propagation, State};
use super::table::IncludeObject;
use super::watch::{self, WatchRequest};

/// API verb of a request, as in Kubernetes audit logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Read one object.
    Get,
    /// Read a collection.
    List,
    /// Stream changes.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH (any type, including apply).
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
    /// Anything that did not name a served resource.
    Unknown,
}

impl Verb {
    /// True for verbs that can change state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
        )
    }
}

/// What a request addresses.
pub(crate) struct Target {
    pub res: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses a request path against the registry.
pub(crate) fn parse_path(state: &State, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::unknown_path()),
    };
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        // A namespace's own subresources, not a resource in the namespace.
        ["namespaces", _, "status" | "finalize"] if group.is_empty() => (None, rest),
        ["namespaces", ns, more @ ..] if !more.is_empty() => (Some((*ns).to_string()), more),
        other => (None, other),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some((*n).to_string()), None),
        [p, n, s] => (*p, Some((*n).to_string()), Some((*s).to_string())),
        _ => return Err(ApiError::unknown_path()),
    };
    let res = state
        .registry
        .by_path(group, version, plural)
        .ok_or_else(|| {
            ApiError::unknown_path().with_details(json!({"group": group, "kind": plural}))
        })?;
    if namespace.is_some() && !res.namespaced {
        return Err(ApiError::unknown_path());
    }
    if let Some(s) = &sub {
        let served = match s.as_str() {
            "status" => res.status_subresource,
            "scale" => res.scale.is_some(),
            "finalize" => namespaces::is_namespace(&res),
            _ => false,
        };
        if !served {
            return Err(ApiError::unknown_path());
        }
    }
    Ok(Target {
        res,
        namespace,
        name,
        subresource: sub,
    })
}

/// Verb of a request to `target`.
pub(crate) fn classify(method: &Method, target: &Target, query: &HashMap<String, String>) -> Verb {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => Verb::Get,
        ("GET", false) if watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => Verb::Unknown,
    }
}

/// A handled request's reply.
pub(crate) enum Reply {
    /// A JSON body.
    Json(StatusCode, Value),
    /// A watch stream.
    Watch(std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>>),
}

/// Request data the handlers need.
pub(crate) struct Call<'a> {
    pub query: &'a HashMap<String, String>,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    pub body: &'a [u8],
    /// `Accept` asked for `PartialObjectMetadata`.
    pub metadata_only: bool,
    /// `Accept` asked for a Table (only used by watches; gets and lists are converted after
    /// dispatch).
    pub table: Option<IncludeObject>,
    pub bookmark_every: Duration,
}

/// Parses a JSON request body.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Decodes a request body by its `Content-Type`: JSON, or the Kubernetes protobuf envelope that
/// client-go's typed clients send for built-in kinds.
fn decode_body(call: &Call<'_>) -> Result<Value, ApiError> {
    let media = call.content_type.split(';').next().unwrap_or("").trim();
    if media == protobuf::MEDIA_TYPE {
        protobuf::decode(call.body)
    } else {
        parse_body(call.body)
    }
}

/// The wire name of a verb, as in discovery and authorization.
fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
        Verb::Unknown => "",
    }
}

/// The `*Options` kind validating a write's query parameters.
fn options_kind(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "CreateOptions",
        Verb::Update => "UpdateOptions",
        Verb::Patch => "PatchOptions",
        _ => "DeleteOptions",
    }
}

fn unsupported_option(verb: Verb, field: &str, given: &[String], supported: &[&str]) -> ApiError {
    let given: Vec<String> = given.iter().map(|g| format!("{g:?}")).collect();
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    let value = if field == "dryRun" {
        format!("[]string{{{}}}", given.join(", "))
    } else {
        given.join(", ")
    };
    let message = format!(
        "Unsupported value: {value}: supported values: {}",
        supported.join(", ")
    );
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!(
            "{}.meta.k8s.io \"\" is invalid: {field}: {message}",
            options_kind(verb)
        ),
    )
    .with_details(json!({
        "group": "meta.k8s.io",
        "kind": options_kind(verb),
        "causes": [{"reason": "FieldValueNotSupported", "message": message, "field": field}],
    }))
}

/// Whether a write is a dry run (`dryRun=All` in the query, or in a delete's DeleteOptions);
/// other values are refused as the API server refuses them.
fn dry_run(verb: Verb, call: &Call<'_>) -> Result<bool, ApiError> {
    if !verb.is_write() {
        return Ok(false);
    }
    let mut values: Vec<String> = call
        .query
        .get("dryRun")
        .filter(|d| !d.is_empty())
        .map(|d| vec![d.clone()])
        .unwrap_or_default();
    if matches!(verb, Verb::Delete | Verb::DeleteCollection) && !call.body.is_empty() {
        let opts = decode_body(call)?;
        values.extend(
            opts.get("dryRun")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
    }
    if values.iter().any(|v| v != "All") {
        return Err(unsupported_option(verb, "dryRun", &values, &["All"]));
    }
    Ok(!values.is_empty())
}

/// The `fieldValidation` directive of a write (`Warn` when absent).
fn field_validation(verb: Verb, call: &Call<'_>) -> Result<FieldValidation, ApiError> {
    match call.query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) => {
            Err(unsupported_option(
                verb,
                "fieldValidation",
                &[other.to_string()],
                &["Ignore", "Strict", "Warn"],
            ))
        }
        Some(_) => Ok(FieldValidation::Warn),
    }
}

/// The field manager of a write: `fieldManager`, else the user agent's program name.
pub(crate) fn manager(call: &Call<'_>) -> String {
    call.query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| {
            let ua = call.user_agent.split('/').next().unwrap_or("").trim();
            if ua.is_empty() {
                "unknown".to_string()
            } else {
                ua.to_string()
            }
        })
}

/// Dispatches a parsed request on the locked state.
pub(crate) fn dispatch(
    state: &mut State,
    target: &Target,
    verb: Verb,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let allowed = match target.subresource.as_deref() {
        None => target.res.allows(verb_name(verb)),
        Some("finalize") => verb == Verb::Update,
        Some(_) => matches!(verb, Verb::Get | Verb::Update | Verb::Patch),
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    state.dry_run = dry_run(verb, call)?;
    state.field_validation = field_validation(verb, call)?;
    let out = dispatch_inner(state, target, verb, call);
    state.dry_run = false;
    state.field_validation = FieldValidation::Ignore;
    if verb.is_write() {
        namespaces::sync_pending(state);
    }
    out
}

fn dispatch_inner(
    state: &mut State,
    target: &Target,
    verb: Verb,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    if authz::is_review(&target.res) {
        let body = decode_body(call)?;
        return authz::review(&target.res, body).map(|v| Reply::Json(StatusCode::CREATED, v));
    }
    match target.subresource.as_deref() {
        Some("scale") => return scale::dispatch(state, target, verb, call),
        Some("finalize") => {
            let name = target.name.clone().unwrap_or_default();
            let body = decode_body(call)?;
            let m = manager(call);
            let out = namespaces::finalize(state, &target.res, &name, &body, &m)?;
            return Ok(Reply::Json(StatusCode::OK, Value::clone(&out)));
        }
        _ => {}
    }
    let res = target.res.clone();
    let ns = target.namespace.clone().unwrap_or_default();
    let endpoint = if target.subresource.is_some() {
        Endpoint::Status
    } else {
        Endpoint::Main
    };
    let named = || -> Result<(super::store::ObjKey, String), ApiError> {
        let name = target.name.clone().unwrap_or_default();
        if res.namespaced && target.namespace.is_none() {
            return Err(ApiError::unknown_path());
        }
        Ok((handlers::key(&res, &ns, &name), name))
    };
    match verb {
        Verb::Get => {
            let (k, name) = named()?;
            let s = state
                .get(&k)
                .ok_or_else(|| ApiError::not_found(&res, &name))?;
            let body = if call.metadata_only {
                handlers::metadata_only(&s.obj)
            } else {
                Value::clone(&s.obj)
            };
            Ok(Reply::Json(StatusCode::OK, body))
        }
        Verb::List => list(state, &res, target.namespace.as_deref(), call),
        Verb::Watch => {
            let q = call.query;
            let req = WatchRequest {
                resource_version: q.get("resourceVersion").cloned(),
                allow_bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
                send_initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
                timeout: Duration::from_secs(
                    q.get("timeoutSeconds")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(1800),
                ),
                namespace: target.namespace.clone(),
                metadata_only: call.metadata_only,
                table: call.table,
                selector: Selector::parse(
                    q.get("labelSelector").map(String::as_str),
                    q.get("fieldSelector").map(String::as_str),
                )?,
            };
            let s = watch::start(state, res, req, call.bookmark_every)?;
            Ok(Reply::Watch(Box::pin(s)))
        }
        Verb::Create => {
            if res.namespaced && target.namespace.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let obj = fields::check(state, &res, decode_body(call)?, fields::Source::Body)?;
            let m = manager(call);
            let out = handlers::create(state, &res, &ns, obj, CreateOwnership::Update(&m))?;
            Ok(Reply::Json(StatusCode::CREATED, Value::clone(&out)))
        }
        Verb::Update => {
            let (k, _) = named()?;
            let obj = fields::check(state, &res, decode_body(call)?, fields::Source::Body)?;
            handlers::check_rv(
                &res,
                &k,
                state,
                obj.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str),
            )?;
            let m = manager(call);
            let out =
                handlers::update(state, &res, &k, obj, endpoint, UpdateOwnership::Update(&m))?;
            Ok(Reply::Json(StatusCode::OK, Value::clone(&out)))
        }
        Verb::Patch => {
            let (k, name) = named()?;
            let kind = PatchKind::from_content_type(call.content_type)?;
            if kind == PatchKind::Apply {
                return apply(state, &res, &ns, &k, &name, endpoint, call);
            }
            let stored = state
                .get(&k)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&res, &name))?;
            let mut doc = (*stored.obj).clone();
            apply_patch(kind, &mut doc, call.body)?;
            let doc = fields::check(state, &res, doc, fields::Source::Patch)?;
            let given = doc
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            handlers::check_rv(&res, &k, state, given.as_deref())?;
            let m = manager(call);
            let out =
                handlers::update(state, &res, &k, doc, endpoint, UpdateOwnership::Update(&m))?;
            Ok(Reply::Json(StatusCode::OK, Value::clone(&out)))
        }
        Verb::Delete => {
            let (k, name) = named()?;
            if namespaces::is_namespace(&res) {
                namespaces::admit_delete(&name)?;
            }
            let opts = if call.body.is_empty() {
                json!({})
            } else {
                decode_body(call)?
            };
            let stored = state
                .get(&k)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&res, &name))?;
            if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
                && stored.obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
            {
                return Err(ApiError::conflict(&res, &name));
            }
            handlers::check_rv(
                &res,
                &k,
                state,
                opts.pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str),
            )?;
            let policy = propagation(&opts)?;
            let (out, _) = gc::delete_object(state, &k, policy)
                .ok_or_else(|| ApiError::not_found(&res, &name))?;
            Ok(Reply::Json(StatusCode::OK, Value::clone(&out)))
        }
        Verb::DeleteCollection => {
            let opts = if call.body.is_empty() {
                json!({})
            } else {
                decode_body(call)?
            };
            let policy = propagation(&opts)?;
            let sel = Selector::parse(
                call.query.get("labelSelector").map(String::as_str),
                call.query.get("fieldSelector").map(String::as_str),
            )?;
            let keys: Vec<_> = state
                .range(&res.id(), target.namespace.as_deref())
                .filter(|(_, s)| sel.matches(&s.obj))
                .map(|(k, _)| k.clone())
                .filter(|k| {
                    !namespaces::is_namespace(&res) || namespaces::admit_delete(&k.2).is_ok()
                })
                .collect();
            let mut items = Vec::new();
            for k in keys {
                if let Some((o, _)) = gc::delete_object(state, &k, policy) {
                    items.push(Value::clone(&o));
                }
            }
            Ok(Reply::Json(
                StatusCode::OK,
                handlers::list_body(&res, items, state.rv, None),
            ))
        }
        Verb::Unknown => Err(ApiError::method_not_allowed()),
    }
}

fn propagation(opts: &Value) -> Result<Propagation, ApiError> {
    match opts.get("propagationPolicy").and_then(Value::as_str) {
        None | Some("Background") | Some("Foreground") => Ok(Propagation::Background),
        Some("Orphan") => Ok(Propagation::Orphan),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported propagationPolicy {other:?}"
        ))),
    }
}

fn apply(
    state: &mut State,
    res: &Arc<ResourceInfo>,
    ns: &str,
    k: &super::store::ObjKey,
    name: &str,
    endpoint: Endpoint,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let Some(m) = call.query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    };
    let force = call.query.get("force").is_some_and(|f| f == "true");
    let applied = parse_apply_body(call.body)?;
    if let Some(given) = applied.pointer("/metadata/name").and_then(Value::as_str)
        && given != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    handlers::check_rv(
        res,
        k,
        state,
        applied
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str),
    )
    .or_else(|e| if e.code == 404 { Ok(()) } else { Err(e) })?;
    match state.get(k).cloned() {
        Some(stored) => {
            let mut mf = stored.managed.clone();
            let mut live = (*stored.obj).clone();
            if let Some(meta) = live.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
            let merged = mf.apply(m, &live, &applied, force, endpoint, res.status_subresource)?;
            let out = handlers::update(
                state,
                res,
                k,
                merged,
                endpoint,
                UpdateOwnership::Applied(mf),
            )?;
            Ok(Reply::Json(StatusCode::OK, Value::clone(&out)))
        }
        None => {
            if endpoint == Endpoint::Status {
                return Err(ApiError::not_found(res, name));
            }
            let mut skeleton = json!({
                "apiVersion": res.api_version(),
                "kind": res.kind,
                "metadata": {"name": name},
            });
            if res.namespaced {
                skeleton["metadata"]["namespace"] = json!(ns);
            }
            let mut mf = ManagedFields::default();
            let merged = mf.apply(
                m,
                &skeleton,
                &applied,
                force,
                endpoint,
                res.status_subresource,
            )?;
            let out = handlers::create(state, res, ns, merged, CreateOwnership::Applied(mf))?;
            Ok(Reply::Json(StatusCode::CREATED, Value::clone(&out)))
        }
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{rv}\n{ns}\n{name}"))
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = s.splitn(3, '\n');
    let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}

fn list(
    state: &State,
    res: &ResourceInfo,
    namespace: Option<&str>,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let q = call.query;
    let sel = Selector::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    )?;
    let current = state.rv;
    let mut after: Option<(String, String)> = None;
    let at = if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
        let (rv, ns, name) = decode_continue(token)?;
        if rv < state.compacted_rv {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ));
        }
        after = Some((ns, name));
        rv
    } else {
        match q.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => current,
            Some(v) => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
                if n > current {
                    return Err(handlers::too_large_rv(n, current));
                }
                if q.get("resourceVersionMatch").is_some_and(|m| m == "Exact") {
                    n
                } else {
                    current
                }
            }
        }
    };
    let limit: Option<usize> = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l: &usize| *l > 0);
    let key_of = |o: &Value| {
        (
            o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            handlers::name_of(o).to_string(),
        )
    };
    let mut objs: Vec<Arc<Value>> = if at == current {
        state
            .range(&res.id(), namespace)
            .map(|(_, s)| s.obj.clone())
            .collect()
    } else {
        state.snapshot_at(res, namespace, at)?
    };
    if at == current && event_view::is_core_event(res) {
        let own: std::collections::HashSet<(String, String)> =
            objs.iter().map(|o| key_of(o)).collect();
        objs.extend(
            event_view::converted(state, namespace)
                .into_iter()
                .filter(|o| !own.contains(&key_of(o))),
        );
        objs.sort_by_key(|o| key_of(o));
    }
    let mut items = Vec::new();
    let mut cont = None;
    for o in objs {
        if let Some(a) = &after
            && key_of(&o) <= *a
        {
            continue;
        }
        if !sel.matches(&o) {
            continue;
        }
        if let Some(l) = limit
            && items.len() == l
        {
            let (ns, name) = items.last().map(key_of).unwrap_or_default();
            cont = Some(encode_continue(at, &ns, &name));
            break;
        }
        items.push(if call.metadata_only {
            handlers::metadata_only(&o)
        } else {
            (*o).clone()
        });
    }
    let mut body = handlers::list_body(res, items, at, cont);
    if call.metadata_only {
        body["apiVersion"] = json!("meta.k8s.io/v1");
        body["kind"] = json!("PartialObjectMetadataList");
    }
    Ok(Reply::Json(StatusCode::OK, body))
}
