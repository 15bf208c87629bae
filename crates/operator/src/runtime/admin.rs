//! Admin HTTP server: `GET /healthz` (liveness), `GET /readyz` (readiness, see
//! [`Readiness`]) and `GET /metrics` (OpenMetrics text).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::metrics::{self, Metrics};
use crate::runtime::readiness::Readiness;

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address could not be bound.
    #[error("cannot bind admin server to {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("admin server failed: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: Metrics,
}

/// A bound, not yet serving admin server. Bind first to learn the address (port 0 in
/// tests), then [`serve`](AdminServer::serve) until the token is cancelled.
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `addr` (e.g. `0.0.0.0:8080`, or `127.0.0.1:0` in tests).
    pub async fn bind(
        addr: SocketAddr,
        readiness: Readiness,
        metrics: Metrics,
    ) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(AdminServer {
            listener,
            local_addr,
            router: router(readiness, metrics),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), AdminError> {
        tracing::info!(addr = %self.local_addr, "admin server listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(AdminError::Serve)?;
        tracing::debug!("admin server stopped");
        Ok(())
    }
}

/// The admin routes, for embedding in another server or testing without a socket.
pub fn router(readiness: Readiness, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { readiness, metrics })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let status = state.readiness.status();
    let code = if status.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{status}\n")).into_response()
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}
