//! Operator runtime: everything around the controllers that a platform team expects
//! from an operator process.
//!
//! - [`settings`]: flags and environment variables of `azlin-operator run`.
//! - [`telemetry`]: structured logging (JSON in a cluster, text on a terminal).
//! - [`metrics`]: Prometheus/OpenMetrics families with plain recording methods.
//! - [`readiness`]: the shared readiness state behind `/readyz`.
//! - [`admin`]: the admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
//! - [`leader`]: Lease-based leader election that gates the controllers.
//! - [`shutdown`]: SIGTERM / Ctrl-C feeding a cancellation token.
//! - [`watches`]: the caches' watches, listed again when they cannot be trusted.

pub mod admin;
pub mod leader;
pub mod metrics;
pub mod observers;
pub mod readiness;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod watches;
