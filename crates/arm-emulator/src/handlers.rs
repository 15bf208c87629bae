//! Generic ARM handlers: GET/PUT/PATCH/DELETE/list/actions for every kind, and operation polling.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::catalog;
use super::context::Shared;
use super::error::ArmError;
use super::filter::ListFilter;
use super::kinds::{self, Kind, Provisioning, PutCtx};
use super::lro;
use super::path::{self, Route};
use super::state::{Entry, OpKind, OpStatus, Store};

/// A parsed ARM request.
pub struct Req<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Path without query.
    pub path: &'a str,
    /// Query parameters.
    pub query: &'a HashMap<String, String>,
    /// The `api-version` query value.
    pub api_version: &'a str,
    /// Request body.
    pub body: &'a [u8],
    /// `scheme://host` the client used, for polling URLs.
    pub base: &'a str,
    /// Injected asynchronous failure for the operation this request starts.
    pub fail_operation: Option<ArmError>,
}

/// Resource type label of a route, for request counts.
pub fn route_label(route: &Route, method: &Method) -> String {
    match route {
        Route::Subscriptions | Route::Subscription { .. } => {
            "Microsoft.Resources/subscriptions".to_string()
        }
        Route::Tenants => "Microsoft.Resources/tenants".to_string(),
        Route::ResourceGraph => "Microsoft.ResourceGraph/resources".to_string(),
        Route::SubscriptionResources { .. } => "Microsoft.Resources/resources".to_string(),
        Route::CheckNameAvailability { .. } => {
            "Microsoft.Storage/checkNameAvailability".to_string()
        }
        Route::ResourceGroups { .. } | Route::ResourceGroup { .. } => {
            kinds::RESOURCE_GROUP.type_name.to_string()
        }
        Route::GenericResources { .. } => "Microsoft.Resources/resources".to_string(),
        Route::RgOperationResult { .. } => "Microsoft.Resources/operationResults".to_string(),
        Route::Operation {
            namespace, result, ..
        } => {
            let ns = kinds::canonical_namespace(namespace).unwrap_or(namespace);
            format!(
                "{ns}/{}",
                if *result {
                    "operationResults"
                } else {
                    "operations"
                }
            )
        }
        Route::Collection { kind, .. } => kind.type_name.to_string(),
        Route::Resource { kind, action, .. } => match action {
            Some(a) if *method == Method::POST || *method == Method::GET => {
                format!("{}/{a}", kind.type_name)
            }
            _ => kind.type_name.to_string(),
        },
    }
}

/// Dispatches a parsed route.
pub fn dispatch(shared: &Arc<Shared>, route: Route, req: &Req<'_>) -> Result<Response, ArmError> {
    match route {
        Route::ResourceGroups { sub } => {
            check_rg_api(req.api_version)?;
            only(req, &[Method::GET])?;
            let filter = ListFilter::parse(req.query.get("$filter").map(String::as_str))?;
            let store = shared.store();
            let items: Vec<&Entry> = store
                .under(
                    &format!("/subscriptions/{sub}/resourceGroups"),
                    kinds::RESOURCE_GROUP.type_name,
                )
                .filter(|e| filter.matches(&e.body))
                .collect();
            Ok(page(shared, &store, &items, req))
        }
        Route::GenericResources { sub, rg } => {
            check_rg_api(req.api_version)?;
            only(req, &[Method::GET])?;
            let store = shared.store();
            let group = rg_entry(&store, &sub, &rg)?;
            generic_list(shared, &store, &format!("{}/providers", group.id), req)
        }
        Route::SubscriptionResources { sub } => {
            check_rg_api(req.api_version)?;
            only(req, &[Method::GET])?;
            let store = shared.store();
            let groups: Vec<String> = store
                .under(
                    &format!("/subscriptions/{sub}/resourceGroups"),
                    kinds::RESOURCE_GROUP.type_name,
                )
                .map(|g| format!("{}/providers", g.id))
                .collect();
            let filter = ListFilter::parse(req.query.get("$filter").map(String::as_str))?;
            let items: Vec<&Entry> = groups
                .iter()
                .flat_map(|prefix| top_level(&store, prefix))
                .filter(|e| filter.matches(&e.body))
                .collect();
            let expand = GenericExpand::parse(req);
            Ok(page_with(shared, &items, req, |e| {
                generic_resource(e, &expand)
            }))
        }
        Route::Subscriptions => {
            check_subscriptions_api(req.api_version)?;
            only(req, &[Method::GET])?;
            let subs = super::discovery::known_subscriptions(shared);
            let value: Vec<Value> = subs
                .iter()
                .map(|s| super::discovery::subscription_body(s))
                .collect();
            Ok(axum::Json(json!({ "value": value })).into_response())
        }
        Route::Subscription { sub } => {
            check_subscriptions_api(req.api_version)?;
            only(req, &[Method::GET])?;
            Ok(axum::Json(super::discovery::subscription_body(&sub)).into_response())
        }
        Route::ResourceGraph => {
            only(req, &[Method::POST])?;
            super::graph::query(shared, req)
        }
        Route::Tenants => {
            check_subscriptions_api(req.api_version)?;
            only(req, &[Method::GET])?;
            Ok(axum::Json(json!({ "value": [super::discovery::tenant_body()] })).into_response())
        }
        Route::CheckNameAvailability { sub } => {
            check_kind_api(&super::storage::STORAGE_ACCOUNT, req.api_version)?;
            only(req, &[Method::POST])?;
            let body = parse_body(req)?;
            let store = shared.store();
            Ok(axum::Json(super::storage::check_name_availability(
                &store, &sub, &body,
            )?)
            .into_response())
        }
        Route::ResourceGroup { sub, rg } => {
            check_rg_api(req.api_version)?;
            let id = path::rg_id(&sub, &rg);
            match *req.method {
                Method::GET => get(shared, &kinds::RESOURCE_GROUP, &id, &rg, req),
                Method::HEAD => Ok(if shared.store().get(&id).is_some() {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }),
                Method::PUT | Method::PATCH => {
                    put(shared, &kinds::RESOURCE_GROUP, &sub, &id, &rg, req)
                }
                Method::DELETE => delete(shared, &kinds::RESOURCE_GROUP, &sub, &id, &rg, req),
                _ => Err(method_not_allowed(req)),
            }
        }
        Route::RgOperationResult { op } => {
            check_rg_api(req.api_version)?;
            only(req, &[Method::GET])?;
            poll(shared, &op, true, req)
        }
        Route::Operation {
            namespace,
            op,
            result,
            ..
        } => {
            if !kinds::namespace_accepts(&namespace, req.api_version) {
                return Err(no_registered_provider(
                    req.api_version,
                    "locations/operations",
                    &[],
                ));
            }
            only(req, &[Method::GET])?;
            poll(shared, &op, result, req)
        }
        Route::Collection {
            kind,
            sub,
            rg,
            names,
        } => {
            check_kind_api(kind, req.api_version)?;
            only(req, &[Method::GET])?;
            let store = shared.store();
            if let Some(rg) = &rg {
                rg_entry(&store, &sub, rg)?;
            }
            let prefix = match &rg {
                Some(rg) => path::collection_id(&sub, Some(rg), kind, &names),
                None => format!("/subscriptions/{sub}"),
            };
            if rg.is_some()
                && let Some(parent) = kind.parent_id(&format!("{prefix}/x"))
                && store.get(&parent).is_none()
            {
                return Err(not_found_parent(&parent));
            }
            let items: Vec<&Entry> = store.under(&prefix, kind.type_name).collect();
            Ok(page(shared, &store, &items, req))
        }
        Route::Resource {
            kind,
            sub,
            rg,
            names,
            action,
        } => {
            check_kind_api(kind, req.api_version)?;
            let (id, name) = {
                let store = shared.store();
                let rg_name = rg_entry(&store, &sub, &rg)
                    .ok()
                    .and_then(|e| e.str_at("/name").map(str::to_string))
                    .unwrap_or(rg.clone());
                let id = store
                    .get(&path::resource_id(&sub, &rg_name, kind, &names))
                    .map(|e| e.id.clone())
                    .unwrap_or_else(|| path::resource_id(&sub, &rg_name, kind, &names));
                (id, names.last().cloned().unwrap_or_default())
            };
            match (req.method.clone(), action) {
                (Method::GET, None) => get(shared, kind, &id, &name, req),
                (Method::PUT | Method::PATCH, None) => put(shared, kind, &sub, &id, &name, req),
                (Method::DELETE, None) => delete(shared, kind, &sub, &id, &name, req),
                (Method::GET, Some(view))
                    if kind.views.iter().any(|v| v.eq_ignore_ascii_case(&view)) =>
                {
                    let store = shared.store();
                    let entry = existing(&store, kind, &sub, &id, &name)?;
                    let body = kind.hooks.view(&store, &shared.settings, entry, &view)?;
                    Ok(axum::Json(body).into_response())
                }
                (Method::POST, Some(action))
                    if kind.actions.iter().any(|a| a.eq_ignore_ascii_case(&action)) =>
                {
                    post_action(shared, kind, &sub, &id, &name, &action, req)
                }
                (_, Some(action)) => Err(kinds::unknown_action(&action)),
                _ => Err(method_not_allowed(req)),
            }
        }
    }
}

fn only(req: &Req<'_>, methods: &[Method]) -> Result<(), ArmError> {
    if methods.contains(req.method) {
        Ok(())
    } else {
        Err(method_not_allowed(req))
    }
}

fn method_not_allowed(req: &Req<'_>) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The requested resource does not support http method '{}'.",
            req.method
        ),
    )
}

fn check_rg_api(api_version: &str) -> Result<(), ArmError> {
    if kinds::RESOURCE_GROUP.accepts(api_version) {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                kinds::RESOURCE_GROUP.api_versions.join(",")
            ),
        ))
    }
}

fn check_subscriptions_api(api_version: &str) -> Result<(), ArmError> {
    if kinds::SUBSCRIPTIONS_API.contains(&api_version) {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                kinds::SUBSCRIPTIONS_API.join(",")
            ),
        ))
    }
}

fn check_kind_api(kind: &Kind, api_version: &str) -> Result<(), ArmError> {
    if kind.accepts(api_version) {
        Ok(())
    } else {
        Err(no_registered_provider(
            api_version,
            kind.short_name(),
            kind.api_versions,
        ))
    }
}

fn no_registered_provider(api_version: &str, short_type: &str, versions: &[&str]) -> ArmError {
    ArmError::bad_request(
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location 'westus2' and API version '{api_version}' for type '{short_type}'. The supported api-versions are '{}'. The supported locations are '{}'.",
            versions.join(", "),
            catalog::REGIONS.join(", ")
        ),
    )
}

/// The resource group entry, or 404 `ResourceGroupNotFound`.
pub fn rg_entry<'s>(store: &'s Store, sub: &str, rg: &str) -> Result<&'s Entry, ArmError> {
    store
        .get(&path::rg_id(sub, rg))
        .ok_or_else(|| rg_not_found(rg))
}

fn rg_not_found(rg: &str) -> ArmError {
    ArmError::not_found(
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

fn rg_of(id: &str) -> Option<&str> {
    let segs: Vec<&str> = id.split('/').collect();
    segs.iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| segs.get(i + 1).copied())
}

/// 404 `ResourceNotFound` in ARM's wording.
pub fn not_found(kind: &Kind, id: &str, name: &str) -> ArmError {
    let rg = rg_of(id).unwrap_or_default();
    if kind.is_resource_group() {
        return rg_not_found(name);
    }
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource '{}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            kind.type_name
        ),
    )
}

fn not_found_parent(parent_id: &str) -> ArmError {
    let name = parent_id.rsplit('/').next().unwrap_or(parent_id);
    ArmError::not_found(
        "ParentResourceNotFound",
        format!(
            "Can not perform requested operation on nested resource. Parent resource '{name}' not found."
        ),
    )
}

fn existing<'s>(
    store: &'s Store,
    kind: &Kind,
    sub: &str,
    id: &str,
    name: &str,
) -> Result<&'s Entry, ArmError> {
    if !kind.is_resource_group()
        && let Some(rg) = rg_of(id)
    {
        rg_entry(store, sub, rg)?;
    }
    store.get(id).ok_or_else(|| not_found(kind, id, name))
}

/// The GET representation of a stored resource.
pub fn render(shared: &Shared, store: &Store, entry: &Entry, expand: bool) -> Value {
    let mut out = entry.body.clone();
    if let Some(kind) = lro::kind_of(&entry.kind) {
        kind.hooks
            .render(store, &shared.settings, entry, &mut out, expand);
    }
    out
}

/// `$expand=instanceView`, or `statusOnly=true` on VM lists (which answers the instance view too).
fn expand_instance_view(req: &Req<'_>) -> bool {
    req.query
        .get("$expand")
        .is_some_and(|v| v.to_ascii_lowercase().contains("instanceview"))
        || req
            .query
            .get("statusOnly")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn get(
    shared: &Arc<Shared>,
    kind: &Kind,
    id: &str,
    name: &str,
    req: &Req<'_>,
) -> Result<Response, ArmError> {
    let sub = sub_of(id);
    let store = shared.store();
    let entry = existing(&store, kind, &sub, id, name)?;
    Ok(axum::Json(render(shared, &store, entry, expand_instance_view(req))).into_response())
}

fn sub_of(id: &str) -> String {
    id.split('/').nth(2).unwrap_or_default().to_string()
}

fn page(shared: &Shared, store: &Store, items: &[&Entry], req: &Req<'_>) -> Response {
    let expand = expand_instance_view(req);
    page_with(shared, items, req, |e| render(shared, store, e, expand))
}

/// Top-level resources (`{prefix}/{ns}/{type}/{name}`) under a resource group's `providers`.
pub fn top_level<'s>(store: &'s Store, prefix: &str) -> impl Iterator<Item = &'s Entry> + 's {
    let len = prefix.len();
    store
        .all_under(prefix)
        .filter(move |e| e.id[len..].split('/').filter(|s| !s.is_empty()).count() == 3)
}

/// Lists the top-level resources under `prefix` as `GenericResource`s.
fn generic_list(
    shared: &Shared,
    store: &Store,
    prefix: &str,
    req: &Req<'_>,
) -> Result<Response, ArmError> {
    let filter = ListFilter::parse(req.query.get("$filter").map(String::as_str))?;
    let items: Vec<&Entry> = top_level(store, prefix)
        .filter(|e| filter.matches(&e.body))
        .collect();
    let expand = GenericExpand::parse(req);
    Ok(page_with(shared, &items, req, |e| {
        generic_resource(e, &expand)
    }))
}

/// `$expand` of generic resource lists: `createdTime`, `changedTime`, `provisioningState`.
#[derive(Default)]
struct GenericExpand {
    created: bool,
    changed: bool,
    provisioning: bool,
}

impl GenericExpand {
    fn parse(req: &Req<'_>) -> Self {
        let mut out = Self::default();
        for part in req
            .query
            .get("$expand")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
        {
            match part.trim().to_ascii_lowercase().as_str() {
                "createdtime" => out.created = true,
                "changedtime" => out.changed = true,
                "provisioningstate" => out.provisioning = true,
                _ => {}
            }
        }
        out
    }
}

/// The `GenericResource` view of an entry in `/resources` lists.
fn generic_resource(e: &Entry, expand: &GenericExpand) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "id",
        "name",
        "type",
        "location",
        "tags",
        "kind",
        "sku",
        "zones",
        "managedBy",
    ] {
        if let Some(v) = e.body.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    if let Some(kind) = lro::kind_of(&e.kind)
        && kind.namespace() == "Microsoft.Compute"
        && let Some(id) = e.body.get("id").and_then(Value::as_str)
    {
        out.insert("id".into(), Value::from(path::compute_casing(id)));
    }
    if expand.created
        && let Some(t) = e.meta.get("createdTime")
    {
        out.insert("createdTime".into(), t.clone());
    }
    if expand.changed
        && let Some(t) = e.meta.get("changedTime")
    {
        out.insert("changedTime".into(), t.clone());
    }
    if expand.provisioning {
        let state = e
            .str_at("/properties/provisioningState")
            .unwrap_or("Succeeded");
        out.insert("provisioningState".into(), Value::from(state));
    }
    Value::Object(out)
}

/// One page of `items` rendered by `render`, with a `nextLink` (keeping `$filter`) when more follow.
fn page_with(
    shared: &Shared,
    items: &[&Entry],
    req: &Req<'_>,
    render: impl Fn(&Entry) -> Value,
) -> Response {
    let size = shared.settings.page_size.max(1);
    let skip: usize = req
        .query
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let value: Vec<Value> = items
        .iter()
        .skip(skip)
        .take(size)
        .map(|e| render(e))
        .collect();
    let mut body = json!({ "value": value });
    if skip + size < items.len() {
        // Like ARM, the next page keeps the request's query ($filter, $expand, statusOnly).
        let mut kept: Vec<(&String, &String)> = req
            .query
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("api-version") && !k.eq_ignore_ascii_case("$skiptoken")
            })
            .collect();
        kept.sort();
        let rest: String = kept
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "&{}={}",
                    url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>(),
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        body["nextLink"] = Value::from(format!(
            "{}{}?api-version={}&$skiptoken={}{rest}",
            req.base,
            req.path,
            req.api_version,
            skip + size
        ));
    }
    axum::Json(body).into_response()
}

fn parse_body(req: &Req<'_>) -> Result<Value, ArmError> {
    let value: Value = serde_json::from_slice(req.body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: a JSON object is required.",
        ))
    }
}

/// Normalizes `location` and `tags` of a located kind.
fn check_envelope(
    kind: &Kind,
    body: &mut Map<String, Value>,
    existing: Option<&Entry>,
) -> Result<(), ArmError> {
    if !kind.located {
        body.remove("location");
        body.remove("tags");
        return Ok(());
    }
    let location = match body.get("location") {
        Some(Value::String(s)) if !s.trim().is_empty() => catalog::normalize_location(s),
        _ => {
            return Err(ArmError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            )
            .with_target("location"));
        }
    };
    if !catalog::is_region(&location) {
        return Err(ArmError::bad_request(
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{}'. List of available regions for the resource type is '{}'.",
                kind.type_name,
                catalog::REGIONS.join(",")
            ),
        )
        .with_target("location"));
    }
    if let Some(old) = existing.and_then(|e| e.str_at("/location"))
        && old != location
    {
        return Err(ArmError::conflict(
            "InvalidResourceLocation",
            format!(
                "The resource already exists in location '{old}'. A resource with the same name cannot be created in location '{location}'. Please select a new resource name."
            ),
        )
        .with_target("location"));
    }
    body.insert("location".into(), Value::from(location));
    match body.get("tags") {
        None | Some(Value::Null) => {
            body.remove("tags");
        }
        Some(Value::Object(tags)) => {
            if tags.len() > 50 || tags.values().any(|v| !v.is_string()) {
                return Err(ArmError::invalid(
                    "tags",
                    "Tags must be at most 50 name/value pairs with string values.",
                ));
            }
        }
        Some(_) => {
            return Err(ArmError::invalid(
                "tags",
                "Tags must be an object of string values.",
            ));
        }
    }
    Ok(())
}

fn busy_error(kind: &Kind, store: &Store, id: &str) -> Result<(), ArmError> {
    match store.ensure_idle(id) {
        Ok(()) => Ok(()),
        Err(e) if kind.namespace() == "Microsoft.Network" => Err(ArmError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RetryableErrorDueToAnotherOperation",
            format!("Operation on '{id}' cannot proceed because another operation is in progress on it. {}", e.message),
        )
        .with_retry_after(1)),
        Err(e) => Err(e),
    }
}

fn put(
    shared: &Arc<Shared>,
    kind: &'static Kind,
    sub: &str,
    id: &str,
    name: &str,
    req: &Req<'_>,
) -> Result<Response, ArmError> {
    let is_rg = kind.is_resource_group();
    let request = parse_body(req)?;
    let mut store = shared.store();
    if is_rg {
        super::validation::check_rg_name(name)?;
    } else if let Some(rg) = rg_of(id) {
        let rg_entry = rg_entry(&store, sub, rg)?;
        if rg_entry.str_at("/properties/provisioningState") == Some("Deleting") {
            return Err(ArmError::conflict(
                "ResourceGroupBeingDeleted",
                format!(
                    "The resource group '{rg}' is in deprovisioning state and cannot perform this operation."
                ),
            ));
        }
    }
    let parent = match kind.parent_id(id) {
        Some(pid) => Some(
            store
                .get(&pid)
                .cloned()
                .ok_or_else(|| not_found_parent(&pid))?,
        ),
        None => None,
    };
    let previous = store.get(id).cloned();
    let creates_async = match kind.provisioning {
        Provisioning::Async => true,
        Provisioning::AcceptedOnCreate => previous.is_none(),
        Provisioning::Sync | Provisioning::Untracked => false,
    };
    if !creates_async && let Some(failure) = &req.fail_operation {
        // Synchronous writes have no operation to fail: answer the error directly.
        return Err(failure.clone());
    }
    if previous.is_some() {
        busy_error(kind, &store, id)?;
    }
    let patch = *req.method == Method::PATCH;
    let mut body = match (&previous, patch) {
        (Some(prev), true) => {
            let mut merged = prev.body.clone();
            json_patch::merge(&mut merged, &request);
            merged
        }
        (None, true) => return Err(not_found(kind, id, name)),
        _ => request,
    };
    let Value::Object(map) = &mut body else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "A JSON object is required.",
        ));
    };
    for key in ["id", "name", "type", "etag", "systemData"] {
        map.remove(key);
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        props.remove("provisioningState");
    }
    check_envelope(kind, map, previous.as_ref())?;
    map.insert("id".into(), Value::from(id));
    map.insert("name".into(), Value::from(name));
    map.insert("type".into(), Value::from(kind.type_name));
    let created = previous.is_none();
    let mut ctx = PutCtx {
        store: &mut store,
        settings: &shared.settings,
        id,
        name,
        parent,
        meta: previous
            .as_ref()
            .map(|p| p.meta.clone())
            .unwrap_or_default(),
        existing: previous,
        body,
    };
    kind.hooks.put(&mut ctx)?;
    let PutCtx { body, mut meta, .. } = ctx;
    let now = Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    meta.entry("createdTime").or_insert_with(|| now.clone());
    meta.insert("changedTime".into(), now);
    let mut entry = Entry {
        id: id.to_string(),
        kind: kind.type_name.to_string(),
        body,
        meta,
        busy: None,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut headers = HeaderMap::new();
    let mut status = status;
    let mut with_body = true;
    let provisioning = match kind.provisioning {
        Provisioning::AcceptedOnCreate if !created => Provisioning::Sync,
        p => p,
    };
    match provisioning {
        Provisioning::Async | Provisioning::AcceptedOnCreate => {
            let accepted = provisioning == Provisioning::AcceptedOnCreate;
            entry.set_provisioning(if created { "Creating" } else { "Updating" });
            store.put(entry);
            let op_id = lro::begin(
                shared,
                &mut store,
                id,
                kind,
                OpKind::Put { created },
                req.api_version,
                req.fail_operation.as_ref(),
            );
            let location = lro::location_of(&store, id);
            if let Some(op) = store.operations.get(&op_id) {
                headers = if accepted {
                    lro::location_headers(
                        req.base,
                        sub,
                        kind.namespace(),
                        &location,
                        op,
                        &shared.settings,
                    )
                } else {
                    lro::provider_headers(
                        req.base,
                        sub,
                        kind.namespace(),
                        &location,
                        op,
                        kind.put_accepted,
                        &shared.settings,
                    )
                };
            }
            if accepted {
                status = StatusCode::ACCEPTED;
                with_body = false;
            } else if kind.put_accepted {
                // Disks and snapshots: 202 with the resource body and both polling URLs.
                status = StatusCode::ACCEPTED;
            }
        }
        Provisioning::Sync => {
            entry.set_provisioning("Succeeded");
            store.put(entry);
            kind.hooks
                .complete(&mut store, &shared.settings, id, &OpKind::Put { created });
        }
        Provisioning::Untracked => {
            if let Some(Value::Object(props)) = entry.body.get_mut("properties") {
                props.remove("provisioningState");
            }
            store.put(entry);
            kind.hooks
                .complete(&mut store, &shared.settings, id, &OpKind::Put { created });
        }
    }
    let body = store
        .get(id)
        .map(|e| render(shared, &store, e, false))
        .unwrap_or(Value::Null);
    drop(store);
    shared.changed();
    if with_body {
        Ok((status, headers, axum::Json(body)).into_response())
    } else {
        Ok((status, headers).into_response())
    }
}

fn delete(
    shared: &Arc<Shared>,
    kind: &'static Kind,
    sub: &str,
    id: &str,
    name: &str,
    req: &Req<'_>,
) -> Result<Response, ArmError> {
    let is_rg = kind.is_resource_group();
    let mut store = shared.store();
    if !is_rg && let Some(rg) = rg_of(id) {
        rg_entry(&store, sub, rg)?;
    }
    let Some(entry) = store.get(id).cloned() else {
        if is_rg {
            return Err(rg_not_found(name));
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if is_rg {
        if entry.str_at("/properties/provisioningState") == Some("Deleting")
            && let Some(op) = entry.busy.as_ref().and_then(|op| store.operations.get(op))
        {
            // A repeated delete reports the running deletion.
            let headers = lro::rg_headers(req.base, sub, op, &shared.settings);
            return Ok((StatusCode::ACCEPTED, headers).into_response());
        }
    } else {
        busy_error(kind, &store, id)?;
    }
    kind.hooks.check_delete(&store, &entry)?;
    if kind.sync_delete {
        if let Some(failure) = &req.fail_operation {
            return Err(failure.clone());
        }
        lro::remove_tree(&mut store, id);
        drop(store);
        shared.changed();
        return Ok(StatusCode::OK.into_response());
    }
    if let Some(e) = store.get_mut(id) {
        e.set_provisioning("Deleting");
    }
    let location = lro::location_of(&store, id);
    let op_id = lro::begin(
        shared,
        &mut store,
        id,
        kind,
        OpKind::Delete,
        req.api_version,
        req.fail_operation.as_ref(),
    );
    let headers = match store.operations.get(&op_id) {
        Some(op) if is_rg => lro::rg_headers(req.base, sub, op, &shared.settings),
        Some(op) => lro::provider_headers(
            req.base,
            sub,
            kind.namespace(),
            &location,
            op,
            true,
            &shared.settings,
        ),
        None => HeaderMap::new(),
    };
    drop(store);
    shared.changed();
    Ok((StatusCode::ACCEPTED, headers).into_response())
}

fn post_action(
    shared: &Arc<Shared>,
    kind: &'static Kind,
    sub: &str,
    id: &str,
    name: &str,
    action: &str,
    req: &Req<'_>,
) -> Result<Response, ArmError> {
    let canonical = kind
        .actions
        .iter()
        .find(|a| a.eq_ignore_ascii_case(action))
        .copied()
        .unwrap_or(action);
    let mut store = shared.store();
    let entry = existing(&store, kind, sub, id, name)?;
    if let Some(result) = kind.hooks.sync_action(&store, entry, canonical) {
        return Ok(axum::Json(result?).into_response());
    }
    busy_error(kind, &store, id)?;
    kind.hooks
        .action(&mut store, &shared.settings, id, canonical)?;
    let location = lro::location_of(&store, id);
    let op_id = lro::begin(
        shared,
        &mut store,
        id,
        kind,
        OpKind::Action(canonical.to_string()),
        req.api_version,
        req.fail_operation.as_ref(),
    );
    let headers = store
        .operations
        .get(&op_id)
        .map(|op| {
            lro::provider_headers(
                req.base,
                sub,
                kind.namespace(),
                &location,
                op,
                true,
                &shared.settings,
            )
        })
        .unwrap_or_default();
    drop(store);
    shared.changed();
    Ok((StatusCode::ACCEPTED, headers).into_response())
}

fn poll(
    shared: &Arc<Shared>,
    op_id: &str,
    result: bool,
    req: &Req<'_>,
) -> Result<Response, ArmError> {
    let store = shared.store();
    let op = store
        .operations
        .get(op_id)
        .or_else(|| {
            store
                .operations
                .values()
                .find(|o| o.id.eq_ignore_ascii_case(op_id))
        })
        .ok_or_else(|| {
            ArmError::not_found(
                "NotFound",
                format!("The operation '{op_id}' was not found."),
            )
        })?;
    if !result {
        let mut headers = HeaderMap::new();
        if op.status == OpStatus::InProgress
            && let Ok(v) = lro::retry_after(&shared.settings).to_string().parse()
        {
            headers.insert("retry-after", v);
        }
        return Ok((headers, axum::Json(op.status_body())).into_response());
    }
    match op.status {
        OpStatus::InProgress => {
            let mut headers = HeaderMap::new();
            let url = format!("{}{}?api-version={}", req.base, req.path, req.api_version);
            if let Ok(v) = url.parse() {
                headers.insert("location", v);
            }
            if let Ok(v) = lro::retry_after(&shared.settings).to_string().parse() {
                headers.insert("retry-after", v);
            }
            Ok((StatusCode::ACCEPTED, headers).into_response())
        }
        OpStatus::Succeeded => match &op.kind {
            OpKind::Put { .. } => Ok(match store.get(&op.resource_id) {
                Some(entry) => axum::Json(render(shared, &store, entry, false)).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            }),
            OpKind::Delete | OpKind::Action(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        },
        OpStatus::Failed | OpStatus::Canceled => {
            let error = lro::failure(op).unwrap_or(Value::Null);
            let status = match op.status {
                OpStatus::Canceled => StatusCode::CONFLICT,
                _ => op
                    .error_status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::BAD_REQUEST),
            };
            Ok((status, axum::Json(json!({ "error": error }))).into_response())
        }
    }
}
