//! Hook for metrics: the runtime implements [`ArmObserver`] to count ARM responses, retries and
//! remaining rate-limit budgets. This module depends on no metrics code.

use std::time::Duration;

use reqwest::Method;

use super::error::ArmError;
use super::headers::RateLimitRemaining;

/// Receives one call per ARM response and per retry. All methods default to no-ops and must not block.
pub trait ArmObserver: Send + Sync {
    /// Called for every HTTP response from ARM (including error statuses and LRO polls).
    /// `resource_type` is derived from the URL, e.g. `Microsoft.Compute/virtualMachines`.
    fn on_response(
        &self,
        method: &Method,
        resource_type: &str,
        status: u16,
        ratelimit_remaining: Option<&RateLimitRemaining>,
    ) {
        let _ = (method, resource_type, status, ratelimit_remaining);
    }

    /// Called before the client sleeps `delay` and retries a request that failed with `error`;
    /// `attempt` counts retries from 1.
    fn on_retry(
        &self,
        method: &Method,
        resource_type: &str,
        attempt: u32,
        delay: Duration,
        error: &ArmError,
    ) {
        let _ = (method, resource_type, attempt, delay, error);
    }

    /// Called when a request got no HTTP response (connect error, timeout, broken body).
    fn on_transport_error(&self, method: &Method, resource_type: &str, error: &ArmError) {
        let _ = (method, resource_type, error);
    }

    /// Called when the client-side token bucket delayed a request by `waited`.
    fn on_rate_limited(&self, method: &Method, resource_type: &str, waited: Duration) {
        let _ = (method, resource_type, waited);
    }
}

/// An observer that ignores everything (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl ArmObserver for NoopObserver {}
