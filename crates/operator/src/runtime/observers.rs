//! Adapters reporting ARM and SSH activity to the runtime's [`Metrics`].

use std::time::Duration;

use reqwest::Method;

use crate::runtime::metrics::{self, Metrics, RateLimitScope};
use crate::ssh::{CommandOutput, SshError, SshObserver, SshTarget};
use azlin_arm::{ArmError, ArmObserver, RateLimitRemaining};

/// Counts ARM responses, retries and remaining throttling budgets.
#[derive(Debug, Clone)]
pub struct ArmMetrics(pub Metrics);

fn readings(r: &RateLimitRemaining) -> Vec<metrics::RateLimitRemaining> {
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for (scope, value) in [
        (RateLimitScope::SubscriptionReads, r.subscription_reads),
        (RateLimitScope::SubscriptionWrites, r.subscription_writes),
        (RateLimitScope::SubscriptionDeletes, r.subscription_deletes),
        (
            RateLimitScope::Resource,
            r.resource.iter().map(|(_, n)| *n).min(),
        ),
    ] {
        if let Some(v) = value {
            out.push(metrics::RateLimitRemaining {
                scope,
                remaining: to_i64(v),
            });
        }
    }
    out
}

impl ArmObserver for ArmMetrics {
    fn on_response(
        &self,
        method: &Method,
        resource_type: &str,
        status: u16,
        ratelimit_remaining: Option<&RateLimitRemaining>,
    ) {
        let remaining = ratelimit_remaining.map(readings).unwrap_or_default();
        self.0
            .record_arm_response(method.as_str(), resource_type, status, &remaining);
    }

    fn on_retry(
        &self,
        method: &Method,
        resource_type: &str,
        _attempt: u32,
        _delay: Duration,
        error: &ArmError,
    ) {
        if matches!(error, ArmError::Transport { .. }) {
            self.0
                .record_arm_transport_error(method.as_str(), resource_type);
        }
        self.0.record_arm_retry();
    }
}

/// Counts SSH operations by result.
#[derive(Debug, Clone)]
pub struct SshMetrics(pub Metrics);

impl SshObserver for SshMetrics {
    fn connect_retry(&self, _target: &SshTarget, _error: &SshError, _delay: Duration) {
        self.0.record_ssh("connect", false);
    }

    fn finished(
        &self,
        _target: &SshTarget,
        result: Result<&CommandOutput, &SshError>,
        _elapsed: Duration,
    ) {
        self.0
            .record_ssh("command", result.is_ok_and(CommandOutput::success));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_metrics_are_recorded() {
        let m = Metrics::new();
        let obs = ArmMetrics(m.clone());
        let r = RateLimitRemaining {
            subscription_reads: Some(249),
            resource: vec![("a".into(), 5), ("b".into(), 3)],
            ..Default::default()
        };
        obs.on_response(
            &Method::GET,
            "Microsoft.Compute/virtualMachines",
            200,
            Some(&r),
        );
        let text = m.encode().unwrap_or_default();
        assert!(text.contains("azlin_arm_requests_total"), "{text}");
        assert!(
            text.contains("azlin_arm_ratelimit_remaining{scope=\"resource\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("azlin_arm_ratelimit_remaining{scope=\"subscription-reads\"} 249"),
            "{text}"
        );
    }
}
