//! HTTP(S) front: the axum router, bearer-token check, fault/throttle gates, ARM headers,
//! one log line per request, and the TLS/plain accept loop with graceful shutdown.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::admin;
use super::budgets::{self, Bucket, ComputePolicy, Remaining};
use super::catalog;
use super::compute::VIRTUAL_MACHINE;
use super::context::Shared;
use super::counts::RequestRecord;
use super::discovery;
use super::disks::DISK;
use super::error::{ArmError, EmulatorError};
use super::faults::Delivery;
use super::handlers::{self, Req};
use super::path;

/// The emulator's router: the admin API under `/_emulator`, cloud metadata and a
/// managed-identity token endpoint under `/metadata`, everything else is ARM.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .nest("/_emulator", admin::router())
        .route(
            "/metadata/endpoints",
            axum::routing::get(metadata_endpoints),
        )
        .route(
            "/metadata/identity/oauth2/token",
            axum::routing::get(admin::identity_token),
        )
        .fallback(arm_entry)
        .with_state(shared)
}

/// `GET /metadata/endpoints?api-version=...`: the cloud's endpoints (no authentication, as ARM).
async fn metadata_endpoints(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let base = base_url(&shared, &uri, &headers);
    axum::Json(discovery::cloud_metadata(
        &base,
        query.get("api-version").map(String::as_str),
    ))
    .into_response()
}

/// `scheme://host` the client used.
fn base_url(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| header_str(headers, "host").map(str::to_string))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{}://{host}", shared.scheme)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The bearer token of `Authorization: Bearer <non-empty token>` (any token is accepted), else 401.
fn authenticate(headers: &HeaderMap) -> Result<String, ArmError> {
    let Some(value) = header_str(headers, "authorization") else {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ));
    }
    Ok(token.to_string())
}

async fn arm_entry(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Clients that join a base URL ending in `/` send `//metadata/endpoints`; ARM accepts it.
    if uri.path().starts_with("//") && uri.path().trim_start_matches('/') == "metadata/endpoints" {
        return metadata_endpoints(State(shared), uri, headers).await;
    }
    let started = Instant::now();
    let time = Utc::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = header_str(&headers, "x-ms-correlation-request-id")
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let path = uri.path().to_string();
    let route = path::parse(&path);
    let label = route
        .as_ref()
        .map(|r| handlers::route_label(r, &method))
        .unwrap_or_else(|| "unknown".to_string());
    let mut charged = Charged::default();
    let delivery = shared.faults.delivery();
    if delivery == Delivery::ResetBefore {
        shared.recorder().record(RequestRecord {
            time,
            method: method.to_string(),
            path,
            resource_type: label,
            compute_policy: None,
            status: 0,
            duration_ms: 0,
            request_id,
            fault: delivery.fault().map(str::to_string),
        });
        return dropped_connection();
    }
    let mut response = match process(&shared, &method, &uri, &headers, &body, route, &mut charged) {
        Ok(response) => response,
        Err(e) => {
            let auth_failed = e.status == StatusCode::UNAUTHORIZED;
            let mut response = e.into_response();
            if auth_failed {
                response.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_static(
                        "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\", error_description=\"The authentication failed because of missing or invalid 'Authorization' header.\"",
                    ),
                );
            }
            response
        }
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        h.insert("x-ms-correlation-request-id", v);
    }
    if let Some(remaining) = &charged.arm
        && let Ok(v) = HeaderValue::from_str(&remaining.count.to_string())
    {
        h.insert(remaining.bucket.header(), v);
    }
    for (name, value) in charged.graph.iter().flat_map(budgets::GraphQuota::headers) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(resource) = &charged.compute
        && !h.contains_key("x-ms-ratelimit-remaining-resource")
        && let Ok(v) = HeaderValue::from_str(resource)
    {
        h.insert("x-ms-ratelimit-remaining-resource", v);
    }
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        method = %method,
        path = %path,
        status,
        duration_ms,
        request_id = %request_id,
        "arm request"
    );
    shared.recorder().record(RequestRecord {
        time,
        method: method.to_string(),
        path,
        resource_type: label,
        compute_policy: charged.policy.map(|p| p.family().to_string()),
        status,
        duration_ms,
        request_id,
        fault: delivery.fault().map(str::to_string),
    });
    match delivery {
        Delivery::Normal | Delivery::ResetBefore => response,
        Delivery::ResetAfter => dropped_connection(),
        Delivery::Slow(by) => {
            tokio::time::sleep(by).await;
            response
        }
    }
}

/// An answer whose body fails at once: the server drops the connection before the answer
/// is complete, which the client sees as a connection reset.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset (injected by the emulator)",
        ))
    });
    axum::body::Body::from_stream(failing).into_response()
}

/// Budgets a request was charged to, reported in the answer's headers.
#[derive(Default)]
struct Charged {
    arm: Option<Remaining>,
    compute: Option<String>,
    policy: Option<ComputePolicy>,
    graph: Option<budgets::GraphQuota>,
}

/// The Compute policy a request is charged to, if any.
fn compute_policy(
    route: &path::Route,
    method: &Method,
    query: &HashMap<String, String>,
) -> Option<(ComputePolicy, bool)> {
    let expanded = query
        .get("$expand")
        .is_some_and(|v| v.to_ascii_lowercase().contains("instanceview"))
        || query
            .get("statusOnly")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let read = |heavy: bool| {
        if heavy {
            ComputePolicy::HighCostGet
        } else {
            ComputePolicy::LowCostGet
        }
    };
    match route {
        path::Route::Resource { kind, action, .. } if std::ptr::eq(*kind, &VIRTUAL_MACHINE) => {
            match (method.as_str(), action.as_deref()) {
                ("PUT" | "PATCH", None) => Some((ComputePolicy::PutVm, true)),
                ("GET", None) => Some((read(expanded), false)),
                ("GET", Some(view)) if view.eq_ignore_ascii_case("instanceView") => {
                    Some((ComputePolicy::HighCostGet, false))
                }
                _ => None,
            }
        }
        path::Route::Collection { kind, .. }
            if std::ptr::eq(*kind, &VIRTUAL_MACHINE) && method == Method::GET =>
        {
            Some((read(expanded), false))
        }
        path::Route::Resource {
            kind, action: None, ..
        } if std::ptr::eq(*kind, &DISK) && (method == Method::PUT || method == Method::PATCH) => {
            Some((ComputePolicy::CreateUpdateDisks, true))
        }
        _ => None,
    }
}

/// Region a Compute request counts against: the resource's (stored, or in a PUT body), else
/// the resource group's, else `*` for subscription-wide lists.
fn compute_region(shared: &Shared, route: &path::Route, body: &[u8]) -> String {
    let store = shared.store();
    match route {
        path::Route::Resource {
            kind,
            sub,
            rg,
            names,
            ..
        } => {
            let id = path::resource_id(sub, rg, kind, names);
            store
                .get(&id)
                .and_then(|e| e.str_at("/location").map(str::to_string))
                .or_else(|| {
                    serde_json::from_slice::<serde_json::Value>(body)
                        .ok()
                        .and_then(|b| b.get("location")?.as_str().map(catalog::normalize_location))
                })
                .unwrap_or_else(|| "*".to_string())
        }
        path::Route::Collection {
            sub, rg: Some(rg), ..
        } => store
            .get(&path::rg_id(sub, rg))
            .and_then(|e| e.str_at("/location").map(str::to_string))
            .unwrap_or_else(|| "*".to_string()),
        _ => "*".to_string(),
    }
}

fn process(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    route: Option<path::Route>,
    charged: &mut Charged,
) -> Result<Response, ArmError> {
    let token = authenticate(headers)?;
    let path = uri.path();
    shared.faults.check(method.as_str(), path)?;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Subscription-scoped requests draw from the subscription's budgets; tenant-scoped ones
    // (`/subscriptions`, `/tenants`) are not limited.
    if let [first, subscription, ..] = segments.as_slice()
        && first.eq_ignore_ascii_case("subscriptions")
    {
        let principal = budgets::principal_of(&token);
        charged.arm = Some(shared.budgets.draw(
            subscription,
            &principal,
            Bucket::of(method.as_str()),
        )?);
    }
    if matches!(route, Some(path::Route::ResourceGraph)) {
        let (quota, allowed) = shared.budgets.graph_quota(&budgets::principal_of(&token));
        charged.graph = Some(quota);
        if !allowed {
            return Err(super::graph::throttled());
        }
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let Some(api_version) = query.get("api-version").cloned() else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let Some(route) = route else {
        return Err(ArmError::not_found(
            "InvalidResourceType",
            format!(
                "The resource type of '{path}' could not be found. The emulator serves resource groups, Microsoft.Compute, Microsoft.Network and Microsoft.Storage types."
            ),
        ));
    };
    if let Some((policy, _)) = compute_policy(&route, method, &query) {
        charged.policy = Some(policy);
        let sub = segments.get(1).copied().unwrap_or_default();
        let region = compute_region(shared, &route, body);
        charged.compute = Some(shared.budgets.charge_compute(sub, &region, policy)?);
    }
    let base = base_url(shared, uri, headers);
    let req = Req {
        method,
        path,
        query: &query,
        api_version: &api_version,
        body,
        base: &base,
        fail_operation: shared.faults.operation_failure(method.as_str(), path),
    };
    handlers::dispatch(shared, route, &req)
}

/// Reads a PEM certificate chain and private key into a rustls server configuration (aws-lc-rs).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, EmulatorError> {
    let tls_err = |what: &Path, e: &dyn std::fmt::Display| {
        EmulatorError::Tls(format!("{}: {e}", what.display()))
    };
    let certs = rustls_pemfile::certs(&mut BufReader::new(
        File::open(cert).map_err(|e| tls_err(cert, &e))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| tls_err(cert, &e))?;
    if certs.is_empty() {
        return Err(EmulatorError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(
        File::open(key).map_err(|e| tls_err(key, &e))?,
    ))
    .map_err(|e| tls_err(key, &e))?
    .ok_or_else(|| EmulatorError::Tls(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| EmulatorError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections until `stop` is cancelled, then drains them (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "emulator accept failed");
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(tls), service))
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("emulator connections did not drain within 5s");
    }
}
