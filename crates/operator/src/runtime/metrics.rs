//! Operator metrics on a `prometheus-client` registry.
//!
//! Other modules call plain methods on [`Metrics`]; no prometheus-client type leaks out.
//! Labels never carry object names (unbounded cardinality): fleet sizes and object
//! counts are aggregated per state / kind.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Content type of [`Metrics::encode`] output (OpenMetrics text 1.0.0, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every family name.
pub const PREFIX: &str = "azlin";

/// Upper bounds (seconds) of the reconcile duration histogram buckets.
const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    method: String,
    resource_type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SshLabels {
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// ARM throttling budget reported by `x-ms-ratelimit-remaining-*` response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitScope {
    /// `x-ms-ratelimit-remaining-subscription-reads`
    SubscriptionReads,
    /// `x-ms-ratelimit-remaining-subscription-writes`
    SubscriptionWrites,
    /// `x-ms-ratelimit-remaining-subscription-deletes`
    SubscriptionDeletes,
    /// `x-ms-ratelimit-remaining-resource` (resource-provider policies; the smallest value is kept)
    Resource,
}

impl RateLimitScope {
    /// All scopes with their response header names.
    pub const ALL: [(RateLimitScope, &'static str); 4] = [
        (
            RateLimitScope::SubscriptionReads,
            "x-ms-ratelimit-remaining-subscription-reads",
        ),
        (
            RateLimitScope::SubscriptionWrites,
            "x-ms-ratelimit-remaining-subscription-writes",
        ),
        (
            RateLimitScope::SubscriptionDeletes,
            "x-ms-ratelimit-remaining-subscription-deletes",
        ),
        (
            RateLimitScope::Resource,
            "x-ms-ratelimit-remaining-resource",
        ),
    ];

    /// Label value of the `scope` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitScope::SubscriptionReads => "subscription-reads",
            RateLimitScope::SubscriptionWrites => "subscription-writes",
            RateLimitScope::SubscriptionDeletes => "subscription-deletes",
            RateLimitScope::Resource => "resource",
        }
    }
}

/// One remaining-budget reading taken from an ARM response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitRemaining {
    /// Which budget.
    pub scope: RateLimitScope,
    /// Requests left in it.
    pub remaining: i64,
}

impl RateLimitRemaining {
    /// Reads every `x-ms-ratelimit-remaining-*` header of an ARM response.
    ///
    /// Subscription headers hold a number; the resource header holds
    /// `Policy;count` pairs separated by commas, of which the smallest count is kept.
    /// Unparseable values are skipped.
    pub fn from_headers(headers: &http::HeaderMap) -> Vec<RateLimitRemaining> {
        let mut out = Vec::new();
        for (scope, name) in RateLimitScope::ALL {
            let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let remaining = match scope {
                RateLimitScope::Resource => value
                    .split(',')
                    .filter_map(|part| part.rsplit(';').next()?.trim().parse::<i64>().ok())
                    .min(),
                _ => value.trim().parse::<i64>().ok(),
            };
            if let Some(remaining) = remaining {
                out.push(RateLimitRemaining { scope, remaining });
            }
        }
        out
    }
}

struct Families {
    reconcile_total: Family<KindLabels, Counter>,
    reconcile_errors_total: Family<ErrorLabels, Counter>,
    reconcile_duration_seconds: HistogramFamily,
    arm_requests_total: Family<ArmLabels, Counter>,
    arm_ratelimit_remaining: Family<ScopeLabels, Gauge>,
    arm_retries_total: Counter,
    ssh_operations_total: Family<SshLabels, Counter>,
    fleet_members: Family<StateLabels, Gauge>,
    managed_objects: Family<KindLabels, Gauge>,
    leader: Gauge,
    resync_interval_seconds: Gauge,
}

struct Inner {
    registry: Registry,
    families: Families,
}

/// The operator's metrics. Cheap to clone (shared `Arc` inside); hand one clone to every
/// component that records.
///
/// Families (all prefixed `azlin_`): `reconcile_total{kind}`,
/// `reconcile_errors_total{kind,reason}`, `reconcile_duration_seconds{kind}`,
/// `arm_requests_total{method,resource_type,status}`, `arm_ratelimit_remaining{scope}`,
/// `arm_retries_total`, `ssh_operations_total{operation,result}`, `fleet_members{state}`,
/// `managed_objects{kind}`, `leader`, `resync_interval_seconds`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates a registry with every family registered (and no samples yet).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = Families {
            reconcile_total: Family::default(),
            reconcile_errors_total: Family::default(),
            reconcile_duration_seconds: Family::new_with_constructor(duration_histogram),
            arm_requests_total: Family::default(),
            arm_ratelimit_remaining: Family::default(),
            arm_retries_total: Counter::default(),
            ssh_operations_total: Family::default(),
            fleet_members: Family::default(),
            managed_objects: Family::default(),
            leader: Gauge::default(),
            resync_interval_seconds: Gauge::default(),
        };
        // Counter names get `_total` appended by the encoder.
        registry.register(
            "reconcile",
            "Reconciliations started, by kind",
            families.reconcile_total.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind and error reason",
            families.reconcile_errors_total.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of reconciliations, by kind",
            Unit::Seconds,
            families.reconcile_duration_seconds.clone(),
        );
        registry.register(
            "arm_requests",
            "Azure Resource Manager requests, by method, resource type and HTTP status",
            families.arm_requests_total.clone(),
        );
        registry.register(
            "arm_ratelimit_remaining",
            "Last x-ms-ratelimit-remaining-* value reported by ARM, by scope",
            families.arm_ratelimit_remaining.clone(),
        );
        registry.register(
            "arm_retries",
            "Azure Resource Manager requests retried (throttling, server errors, timeouts)",
            families.arm_retries_total.clone(),
        );
        registry.register(
            "ssh_operations",
            "SSH operations on VMs, by operation and result",
            families.ssh_operations_total.clone(),
        );
        registry.register(
            "fleet_members",
            "Members of all fleets together, by state",
            families.fleet_members.clone(),
        );
        registry.register(
            "managed_objects",
            "Objects managed by the operator, by kind",
            families.managed_objects.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica holds the leader-election lease, else 0",
            families.leader.clone(),
        );
        registry.register(
            "resync_interval_seconds",
            "Seconds between resyncs of objects at rest (the configured interval, longer when Azure's read budget needs it)",
            families.resync_interval_seconds.clone(),
        );
        Metrics {
            inner: Arc::new(Inner { registry, families }),
        }
    }

    fn families(&self) -> &Families {
        &self.inner.families
    }

    /// Counts one reconciliation of `kind` and returns a timer that records its duration
    /// in `azlin_reconcile_duration_seconds` when dropped.
    pub fn reconcile_timer(&self, kind: &str) -> ReconcileTimer {
        self.families()
            .reconcile_total
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
        ReconcileTimer {
            metrics: self.clone(),
            kind: kind.to_owned(),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconciliation; `reason` is an error category (bounded set), never
    /// a message or an object name.
    pub fn record_reconcile_error(&self, kind: &str, reason: &str) {
        self.families()
            .reconcile_errors_total
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one ARM response (`resource_type` like `Microsoft.Compute/virtualMachines`)
    /// and stores the remaining throttling budgets it reported.
    pub fn record_arm_response(
        &self,
        method: &str,
        resource_type: &str,
        status: u16,
        remaining: &[RateLimitRemaining],
    ) {
        self.count_arm_request(method, resource_type, &status.to_string());
        for r in remaining {
            self.set_arm_ratelimit_remaining(r.scope, r.remaining);
        }
    }

    /// Counts one ARM request that got no HTTP response (connect error, timeout);
    /// recorded with `status="error"`.
    pub fn record_arm_transport_error(&self, method: &str, resource_type: &str) {
        self.count_arm_request(method, resource_type, "error");
    }

    fn count_arm_request(&self, method: &str, resource_type: &str, status: &str) {
        self.families()
            .arm_requests_total
            .get_or_create(&ArmLabels {
                method: method.to_ascii_uppercase(),
                resource_type: resource_type.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// Sets the remaining ARM throttling budget of one scope.
    pub fn set_arm_ratelimit_remaining(&self, scope: RateLimitScope, remaining: i64) {
        self.families()
            .arm_ratelimit_remaining
            .get_or_create(&ScopeLabels {
                scope: scope.as_str().to_owned(),
            })
            .set(remaining);
    }

    /// Counts one retried ARM request.
    pub fn record_arm_retry(&self) {
        self.families().arm_retries_total.inc();
    }

    /// Counts one SSH operation (`operation` like `mount`, `unmount`, `connect`).
    pub fn record_ssh(&self, operation: &str, ok: bool) {
        self.families()
            .ssh_operations_total
            .get_or_create(&SshLabels {
                operation: operation.to_owned(),
                result: if ok { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }

    /// Sets how many members of all fleets together are in `state` (e.g. `ready`,
    /// `provisioning`, `deallocated`). The caller aggregates across fleets.
    pub fn set_fleet_members(&self, state: &str, n: i64) {
        self.families()
            .fleet_members
            .get_or_create(&StateLabels {
                state: state.to_owned(),
            })
            .set(n);
    }

    /// Sets how many objects of `kind` the operator currently manages.
    pub fn set_managed(&self, kind: &str, n: i64) {
        self.families()
            .managed_objects
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .set(n);
    }

    /// Sets the `azlin_leader` gauge.
    pub fn set_leader(&self, is_leader: bool) {
        self.families().leader.set(i64::from(is_leader));
    }

    /// Sets the `azlin_resync_interval_seconds` gauge.
    pub fn set_resync_interval(&self, interval: std::time::Duration) {
        let secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
        self.families().resync_interval_seconds.set(secs);
    }

    /// Encodes every family in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .map_err(|_| MetricsError::Encode)?;
        Ok(out)
    }
}

/// Errors from [`Metrics::encode`].
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The text encoder failed (a label value it cannot write).
    #[error("failed to encode metrics")]
    Encode,
}

/// Records a reconciliation's duration when dropped (see [`Metrics::reconcile_timer`]).
#[must_use = "the duration is recorded when the timer is dropped"]
pub struct ReconcileTimer {
    metrics: Metrics,
    kind: String,
    start: Instant,
}

impl std::fmt::Debug for ReconcileTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconcileTimer")
            .field("kind", &self.kind)
            .field("start", &self.start)
            .finish()
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let kind = std::mem::take(&mut self.kind);
        self.metrics
            .families()
            .reconcile_duration_seconds
            .get_or_create(&KindLabels { kind })
            .observe(self.start.elapsed().as_secs_f64());
    }
}
