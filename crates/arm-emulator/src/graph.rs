//! Azure Resource Graph: `POST /providers/Microsoft.ResourceGraph/resources` answers a
//! query ([`super::kql`]) over the resources of the requested subscriptions, up to 1000
//! rows a page with a `$skipToken` for the next, as Resource Graph does. Rows look like
//! Resource Graph's: lower-case `type` and `resourceGroup`, every column present, and VMs
//! with their power state in `properties.extended.instanceView.powerState`.
//!
//! Resource Graph is a tenant-level service with its own quota per user (15 queries per
//! 5-second window, reported in `x-ms-user-quota-remaining` and
//! `x-ms-user-quota-resets-after`), not ARM's subscription buckets
//! ([`super::budgets::Budgets::graph_quota`]). The emulator answers from its live state;
//! real Resource Graph lags ARM by seconds (sometimes minutes), so clients must not treat
//! its answer as newer than that.

use std::hash::{Hash, Hasher};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::compute::{self, PowerState, VIRTUAL_MACHINE};
use super::context::Shared;
use super::discovery::{self, TENANT_ID};
use super::error::{ArmError, ErrorExtra};
use super::handlers::{self, Req};
use super::kinds;
use super::kql::{self, Table};
use super::state::{Entry, Store};

/// API versions of `Microsoft.ResourceGraph/resources` served.
pub const API_VERSIONS: [&str; 5] = [
    "2019-04-01",
    "2020-04-01-preview",
    "2021-03-01",
    "2022-10-01",
    "2024-04-01",
];

/// Rows per page when `options.$top` is not given.
const DEFAULT_TOP: usize = 100;
/// Most rows per page.
const MAX_TOP: usize = 1000;

/// Columns of `Resources` and `ResourceContainers` rows, in Resource Graph's order.
const COLUMNS: [&str; 16] = [
    "id",
    "name",
    "type",
    "tenantId",
    "kind",
    "location",
    "resourceGroup",
    "subscriptionId",
    "managedBy",
    "sku",
    "plan",
    "properties",
    "tags",
    "identity",
    "zones",
    "extendedLocation",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    #[serde(default)]
    subscriptions: Vec<String>,
    #[serde(default)]
    management_groups: Vec<String>,
    query: Option<String>,
    #[serde(default)]
    options: Options,
    #[serde(default)]
    facets: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Options {
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
    #[serde(rename = "$top")]
    top: Option<i64>,
    #[serde(rename = "$skip")]
    skip: Option<i64>,
    result_format: Option<String>,
}

/// Resource Graph's envelope for a refused request: a support line, then the reasons.
fn graph_error(status: StatusCode, code: &str, details: Vec<Value>) -> ArmError {
    let mut e = ArmError::new(
        status,
        code,
        format!(
            "Please provide below info when asking for support: timestamp = {}, correlationId = {}.",
            chrono::Utc::now().to_rfc3339(),
            uuid::Uuid::new_v4()
        ),
    );
    e.extra = Some(Box::new(ErrorExtra {
        details,
        resource_header: None,
    }));
    e
}

fn invalid_query(detail: Value) -> ArmError {
    graph_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        vec![
            json!({
                "code": "InvalidQuery",
                "message": "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying."
            }),
            detail,
        ],
    )
}

fn bad_request(code: &str, message: impl Into<String>) -> ArmError {
    graph_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        vec![json!({ "code": code, "message": message.into() })],
    )
}

/// 429 for a user whose quota is spent (the answer's `x-ms-user-quota-resets-after` says
/// when to come back).
pub fn throttled() -> ArmError {
    graph_error(
        StatusCode::TOO_MANY_REQUESTS,
        "RateLimiting",
        vec![json!({
            "code": "RateLimiting",
            "message": "Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."
        })],
    )
}

/// Answers a Resource Graph query.
pub fn query(shared: &Shared, req: &Req<'_>) -> Result<Response, ArmError> {
    if !API_VERSIONS.contains(&req.api_version) {
        return Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{}' is invalid. The supported versions are '{}'.",
                req.api_version,
                API_VERSIONS.join(",")
            ),
        ));
    }
    let request: QueryRequest = serde_json::from_slice(req.body).map_err(|e| {
        bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    if !request.management_groups.is_empty() {
        return Err(bad_request(
            "UnsupportedScope",
            "managementGroups: the emulator has no management groups; query by subscriptions",
        ));
    }
    if !request.facets.is_empty() {
        return Err(bad_request(
            "UnsupportedFacets",
            "facets: not served by the emulator; run the facet as its own query",
        ));
    }
    let text = request.query.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(bad_request("MissingQuery", "query: a query is required"));
    }
    let parsed = kql::parse(&text).map_err(|e| {
        invalid_query(json!({
            "code": "ParserFailure",
            "message": e.message,
            "line": 1,
            "characterPositionInLine": e.position,
            "token": e.token,
        }))
    })?;
    let format = match request.options.result_format.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("table") => Format::Table,
        Some(f) if f.eq_ignore_ascii_case("objectArray") => Format::Objects,
        Some(other) => {
            return Err(bad_request(
                "InvalidResultFormat",
                format!("options.resultFormat: '{other}' is neither 'table' nor 'objectArray'"),
            ));
        }
        None if req.api_version < "2021-03-01" => Format::Table,
        None => Format::Objects,
    };
    let subscriptions = if request.subscriptions.is_empty() {
        discovery::known_subscriptions(shared)
    } else {
        request.subscriptions
    };
    let store = shared.store();
    let mut rows = match parsed.table {
        Table::Resources => resource_rows(shared, &store, &subscriptions, &parsed),
        Table::ResourceContainers => container_rows(&store, &subscriptions),
    };
    drop(store);
    rows.sort_by_cached_key(|r| r["id"].as_str().unwrap_or_default().to_ascii_lowercase());
    let (rows, keeps_id) = parsed.run(rows);

    let fingerprint = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        subscriptions.hash(&mut h);
        h.finish()
    };
    let offset = match &request.options.skip_token {
        Some(token) => decode_token(token, fingerprint).ok_or_else(|| {
            bad_request(
                "InvalidSkipToken",
                "options.$skipToken: the token does not belong to this query; send the query and subscriptions of the answer that returned it",
            )
        })?,
        None => usize::try_from(request.options.skip.unwrap_or(0).max(0)).unwrap_or(0),
    };
    let top = request
        .options
        .top
        .map_or(DEFAULT_TOP, |t| {
            usize::try_from(t.max(1)).unwrap_or(MAX_TOP)
        })
        .min(MAX_TOP);
    let total = rows.len();
    let page: Vec<Value> = rows.into_iter().skip(offset).take(top).collect();
    let more = offset + page.len() < total;
    let mut body = json!({
        "totalRecords": total,
        "count": page.len(),
        "resultTruncated": if more && !keeps_id { "true" } else { "false" },
        "facets": [],
    });
    if more && keeps_id {
        body["$skipToken"] = Value::from(encode_token(offset + page.len(), fingerprint));
    }
    body["data"] = match format {
        Format::Objects => Value::Array(page),
        Format::Table => table(&parsed, page),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

enum Format {
    Objects,
    Table,
}

fn encode_token(offset: usize, fingerprint: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{offset}:{fingerprint:x}"))
}

fn decode_token(token: &str, fingerprint: u64) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (offset, print) = text.split_once(':')?;
    (print == format!("{fingerprint:x}")).then_some(())?;
    offset.parse().ok()
}

/// The `table` result format: named, typed columns and rows of values.
fn table(query: &kql::Query, rows: Vec<Value>) -> Value {
    let names: Vec<String> = query
        .columns()
        .unwrap_or_else(|| COLUMNS.iter().map(|c| (*c).to_string()).collect());
    let kind = |name: &str| {
        let sample = rows
            .iter()
            .find_map(|r| r.get(name).filter(|v| !v.is_null()));
        match sample {
            Some(Value::Bool(_)) => "boolean",
            Some(Value::Number(n)) if n.is_f64() => "number",
            Some(Value::Number(_)) => "integer",
            Some(Value::Object(_) | Value::Array(_)) => "object",
            _ => "string",
        }
    };
    let columns: Vec<Value> = names
        .iter()
        .map(|n| json!({ "name": n, "type": kind(n) }))
        .collect();
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            Value::Array(
                names
                    .iter()
                    .map(|n| r.get(n).cloned().unwrap_or(Value::Null))
                    .collect(),
            )
        })
        .collect();
    json!({ "columns": columns, "rows": rows })
}

/// A row with every column, filled from `fields` (missing strings empty, objects null).
fn full_row(fields: serde_json::Map<String, Value>) -> Value {
    let mut row = serde_json::Map::new();
    for column in COLUMNS {
        let value = fields.get(column).cloned().unwrap_or(match column {
            "kind" | "managedBy" | "location" | "resourceGroup" => Value::from(""),
            "tenantId" => Value::from(TENANT_ID),
            _ => Value::Null,
        });
        row.insert(column.to_string(), value);
    }
    Value::Object(row)
}

/// Columns of a row known without rendering its resource.
const LIGHT_COLUMNS: [&str; 7] = [
    "name",
    "type",
    "location",
    "resourceGroup",
    "subscriptionId",
    "tags",
    "tenantId",
];

/// Every resource below the resource groups of `subscriptions` that `query`'s leading
/// filters on [`LIGHT_COLUMNS`] keep, as `Resources` rows (only those are rendered: a
/// query for one group's VMs does not render every resource of the subscription).
fn resource_rows(
    shared: &Shared,
    store: &Store,
    subscriptions: &[String],
    query: &kql::Query,
) -> Vec<Value> {
    let filters = query.leading_filters_on(&LIGHT_COLUMNS);
    let mut rows = Vec::new();
    for sub in subscriptions {
        let groups: Vec<&Entry> = store
            .under(
                &format!("/subscriptions/{sub}/resourceGroups"),
                kinds::RESOURCE_GROUP.type_name,
            )
            .collect();
        for group in groups {
            let rg = group
                .str_at("/name")
                .unwrap_or_default()
                .to_ascii_lowercase();
            for entry in handlers::top_level(store, &format!("{}/providers", group.id)) {
                let light = json!({
                    "name": entry.body.get("name"),
                    "type": entry.kind.to_ascii_lowercase(),
                    "location": entry.body.get("location"),
                    "resourceGroup": rg,
                    "subscriptionId": sub,
                    "tags": entry.body.get("tags").cloned().unwrap_or_else(|| json!({})),
                    "tenantId": TENANT_ID,
                });
                if filters.iter().all(|f| f.matches(&light)) {
                    rows.push(resource_row(shared, store, entry, sub, &rg));
                }
            }
        }
    }
    rows
}

fn resource_row(shared: &Shared, store: &Store, entry: &Entry, sub: &str, rg: &str) -> Value {
    let body = handlers::render(shared, store, entry, false);
    let mut fields = body.as_object().cloned().unwrap_or_default();
    fields.insert("type".into(), Value::from(entry.kind.to_ascii_lowercase()));
    fields.insert("resourceGroup".into(), Value::from(rg));
    fields.insert("subscriptionId".into(), Value::from(sub));
    fields.insert("tenantId".into(), Value::from(TENANT_ID));
    if !fields.contains_key("tags") {
        fields.insert("tags".into(), json!({}));
    }
    if entry.kind.eq_ignore_ascii_case(VIRTUAL_MACHINE.type_name) {
        let power = compute::power(entry).unwrap_or(PowerState::Running);
        let properties = fields.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = properties.as_object_mut() {
            p.insert(
                "extended".into(),
                json!({ "instanceView": { "powerState": {
                    "code": format!("PowerState/{}", power.code()),
                    "displayStatus": format!("VM {}", power.code()),
                    "level": "Info",
                } } }),
            );
        }
    }
    full_row(fields)
}

/// Subscriptions and their resource groups, as `ResourceContainers` rows.
fn container_rows(store: &Store, subscriptions: &[String]) -> Vec<Value> {
    let mut rows = Vec::new();
    for sub in subscriptions {
        let s = discovery::subscription_body(sub);
        let mut fields = serde_json::Map::new();
        fields.insert("id".into(), s["id"].clone());
        fields.insert("name".into(), s["displayName"].clone());
        fields.insert(
            "type".into(),
            Value::from("microsoft.resources/subscriptions"),
        );
        fields.insert("subscriptionId".into(), Value::from(sub.as_str()));
        fields.insert("tags".into(), json!({}));
        fields.insert(
            "properties".into(),
            json!({ "state": s["state"], "subscriptionPolicies": s["subscriptionPolicies"] }),
        );
        rows.push(full_row(fields));
        for group in store.under(
            &format!("/subscriptions/{sub}/resourceGroups"),
            kinds::RESOURCE_GROUP.type_name,
        ) {
            let mut fields = group.body.as_object().cloned().unwrap_or_default();
            let name = group
                .str_at("/name")
                .unwrap_or_default()
                .to_ascii_lowercase();
            fields.insert(
                "type".into(),
                Value::from("microsoft.resources/subscriptions/resourcegroups"),
            );
            fields.insert("resourceGroup".into(), Value::from(name));
            fields.insert("subscriptionId".into(), Value::from(sub.as_str()));
            if !fields.contains_key("tags") {
                fields.insert("tags".into(), json!({}));
            }
            rows.push(full_row(fields));
        }
    }
    rows
}
