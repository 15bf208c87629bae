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
use super::context::Shared;
use super::counts::RequestRecord;
use super::error::{ArmError, EmulatorError};
use super::faults::Bucket;
use super::handlers::{self, Req};
use super::path;

/// The emulator's router: the admin API under `/_emulator`, everything else is ARM.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .nest("/_emulator", admin::router())
        .fallback(arm_entry)
        .with_state(shared)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// 401 unless `Authorization: Bearer <non-empty token>` is present (any token is accepted).
fn authenticate(headers: &HeaderMap) -> Result<(), ArmError> {
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
    Ok(())
}

async fn arm_entry(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    let (mut response, remaining) = match process(&shared, &method, &uri, &headers, &body, route) {
        Ok(pair) => pair,
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
            (response, None)
        }
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        h.insert("x-ms-correlation-request-id", v);
    }
    if let Some((bucket, n)) = remaining
        && let Ok(v) = HeaderValue::from_str(&n.to_string())
    {
        h.insert(bucket.header(), v);
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
        status,
        duration_ms,
        request_id,
    });
    response
}

type Processed = (Response, Option<(Bucket, u32)>);

fn process(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    route: Option<path::Route>,
) -> Result<Processed, ArmError> {
    authenticate(headers)?;
    let path = uri.path();
    shared.faults.check(method.as_str(), path)?;
    let subscription = path
        .split('/')
        .filter(|s| !s.is_empty())
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let bucket = Bucket::of(method.as_str());
    let remaining = shared.faults.rate_limit(&subscription, bucket)?;
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
    let host = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| header_str(headers, "host").map(str::to_string))
        .unwrap_or_else(|| "localhost".to_string());
    let base = format!("{}://{host}", shared.scheme);
    let req = Req {
        method,
        path,
        query: &query,
        api_version: &api_version,
        body,
        base: &base,
        fail_operation: shared.faults.operation_failure(method.as_str(), path),
    };
    let response = handlers::dispatch(shared, route, &req)?;
    Ok((response, remaining.map(|n| (bucket, n))))
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
