//! Test-control ("what if") API under `/_emulator`, outside ARM's URL space, and the same
//! operations for the in-process handle. Admin requests are neither authenticated nor counted.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::NfsAccessError;
use super::compute::{self, PowerState};
use super::context::Shared;
use super::discovery;
use super::error::ArmError;
use super::faults::ErrorInjection;
use super::handlers;
use super::lro;

/// Routes mounted under `/_emulator`.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/counts", get(counts).delete(reset))
        .route("/counts/reset", post(reset))
        .route("/requests", get(requests))
        .route("/resource", get(resource))
        .route("/vms/evict", post(evict))
        .route("/vms/power", post(power))
        .route("/delete", post(delete))
        .route("/inject", post(inject))
        .route("/identity/token", get(identity_token))
        .route("/nfs-access", get(nfs_access))
}

/// Query of the identity token endpoint.
#[derive(Deserialize)]
pub struct TokenQuery {
    /// Audience the token is for.
    pub resource: Option<String>,
    /// Client id of a user-assigned identity.
    pub client_id: Option<String>,
}

/// A managed-identity token endpoint (App Service protocol: `GET ?api-version=2019-08-01&resource=`
/// with `X-IDENTITY-HEADER`; IMDS protocol with `Metadata: true`), so `az login --identity`
/// and azure-identity's `ManagedIdentityCredential` work offline. The token is an unsigned JWT
/// (`tid`, `oid`); the emulator accepts any bearer token.
pub async fn identity_token(headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    let has = |name: &str| headers.get(name).is_some_and(|v| !v.is_empty());
    if !has("x-identity-header") && !has("metadata") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid_request",
                "error_description": "Required header X-IDENTITY-HEADER (or Metadata: true) is missing."
            })),
        )
            .into_response();
    }
    let resource = q
        .resource
        .unwrap_or_else(|| "https://management.azure.com/".to_string());
    let (token, expires_on) = discovery::mint_token(&resource, q.client_id.as_deref());
    Json(json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "expires_in": "3600",
        "resource": resource,
        "token_type": "Bearer",
        "client_id": q.client_id.unwrap_or_else(|| "a21c0000-0000-4000-8000-00000000a21c".to_string()),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct NfsQuery {
    vm: String,
    account: String,
}

/// `GET /_emulator/nfs-access?vm=<VM id or private IP>&account=<storage account name>`:
/// 200 `{"allowed": true}` or 403 `{"allowed": false, "reason"}` (404 for unknown names).
async fn nfs_access(State(shared): State<Arc<Shared>>, Query(q): Query<NfsQuery>) -> Response {
    match super::access::nfs_access(&shared, &q.vm, &q.account) {
        Ok(()) => Json(json!({ "allowed": true })).into_response(),
        Err(e) => {
            let status = match e {
                NfsAccessError::Denied { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::NOT_FOUND,
            };
            (
                status,
                Json(json!({ "allowed": false, "reason": e.to_string() })),
            )
                .into_response()
        }
    }
}

async fn counts(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.recorder().counts()).into_response()
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.recorder().requests()).into_response()
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.recorder().reset();
    axum::http::StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct IdQuery {
    id: String,
}

async fn resource(State(shared): State<Arc<Shared>>, Query(q): Query<IdQuery>) -> Response {
    match resource_json(&shared, &q.id) {
        Some(v) => Json(v).into_response(),
        None => ArmError::not_found(
            "ResourceNotFound",
            format!("The Resource '{}' was not found.", q.id),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
struct PowerBody {
    id: String,
    state: PowerState,
}

async fn evict(State(shared): State<Arc<Shared>>, Json(body): Json<IdQuery>) -> Response {
    done(evict_vm(&shared, &body.id))
}

async fn power(State(shared): State<Arc<Shared>>, Json(body): Json<PowerBody>) -> Response {
    done(set_power(&shared, &body.id, body.state))
}

async fn delete(State(shared): State<Arc<Shared>>, Json(body): Json<IdQuery>) -> Response {
    done(delete_out_of_band(&shared, &body.id))
}

async fn inject(State(shared): State<Arc<Shared>>, Json(body): Json<ErrorInjection>) -> Response {
    shared.faults.inject(body);
    axum::http::StatusCode::NO_CONTENT.into_response()
}

fn done(result: Result<(), ArmError>) -> Response {
    match result {
        Ok(()) => axum::http::StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The GET representation of a resource (with a VM's instance view), if it exists.
pub fn resource_json(shared: &Shared, id: &str) -> Option<Value> {
    let store = shared.store();
    store
        .get(id)
        .map(|e| handlers::render(shared, &store, e, true))
}

/// Simulates a Spot eviction (per the VM's `evictionPolicy`).
pub fn evict_vm(shared: &Arc<Shared>, id: &str) -> Result<(), ArmError> {
    let mut store = shared.store();
    compute::evict(&mut store, id)?;
    drop(store);
    shared.changed();
    Ok(())
}

/// Sets a VM's power state out of band.
pub fn set_power(shared: &Arc<Shared>, id: &str, state: PowerState) -> Result<(), ArmError> {
    let mut store = shared.store();
    compute::set_power_out_of_band(&mut store, id, state)?;
    drop(store);
    shared.changed();
    Ok(())
}

/// Deletes a resource (and everything below it) out of band, with the kind's cascades.
pub fn delete_out_of_band(shared: &Arc<Shared>, id: &str) -> Result<(), ArmError> {
    let mut store = shared.store();
    if store.get(id).is_none() {
        return Err(ArmError::not_found(
            "ResourceNotFound",
            format!("The Resource '{id}' was not found."),
        ));
    }
    lro::cancel(&mut store, id);
    lro::remove_tree(&mut store, id);
    drop(store);
    shared.changed();
    Ok(())
}
