//! Leader election on a `coordination.k8s.io/v1` Lease (via `kube-lease-manager`), and a
//! gate that runs the controllers only while this replica leads.
//!
//! Behaviour, chosen to be simple and safe (as kubert / Linkerd do):
//! - Standby replicas wait; their gated work never starts while another replica holds
//!   the lease.
//! - When this replica acquires the lease, the work (the controllers) starts with a
//!   child of the shutdown token.
//! - **Losing the lease stops reconciling at once**: the work's token is cancelled and
//!   the work future is dropped (in-flight reconciles are abandoned; reconcilers are
//!   idempotent anyway), then [`LeaderElector::run_while_leader`] returns
//!   [`LeaderError::LeadershipLost`]. The caller should log it and exit non-zero so
//!   Kubernetes restarts the pod, which then campaigns again as a standby. Restarting
//!   the process is simpler and safer than restarting controllers with stale caches.
//! - Leadership is considered lost when the lease manager reports another holder, or
//!   when a watchdog that reads the Lease itself sees another holder, the Lease gone, or
//!   the lease about to expire without renewal (`grace / 2` before expiry, e.g. the API
//!   server unreachable). So a cut-off leader stops before a standby may take over.
//! - On graceful shutdown the work drains (the lease keeps being renewed meanwhile) and
//!   then the lease is released. A standby notices at its next check, which is at most
//!   one lease duration after the last renewal (kube-lease-manager sleeps until the
//!   holder's expiry); releasing avoids the extra expired-lock recovery on top.

use std::future::Future;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerBuilder};
use rand::Rng as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::runtime::metrics::Metrics;
use crate::runtime::readiness::{Readiness, ReadyGate};
use crate::runtime::settings::Settings;

/// Default lease duration in seconds.
pub const DEFAULT_LEASE_DURATION_SECS: u64 = 15;
/// Default renew grace in seconds (the leader renews this long before expiry).
pub const DEFAULT_LEASE_GRACE_SECS: u64 = 5;
/// How long a release on shutdown may take before it is abandoned.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Lease to use and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub lease_name: String,
    /// Namespace of the Lease object.
    pub lease_namespace: String,
    /// This replica's unique identity (the pod name in a cluster).
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub duration_secs: u64,
    /// Seconds before expiry at which the leader renews; must be less than the duration.
    pub grace_secs: u64,
}

impl LeaseConfig {
    /// A config with [`default_identity`] and the default duration and grace.
    pub fn new(lease_name: impl Into<String>, lease_namespace: impl Into<String>) -> Self {
        LeaseConfig {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: default_identity(),
            duration_secs: DEFAULT_LEASE_DURATION_SECS,
            grace_secs: DEFAULT_LEASE_GRACE_SECS,
        }
    }

    /// From the operator settings; `default_namespace` is used when `--lease-namespace`
    /// is not given (pass `client.default_namespace()`: the pod's own namespace in a cluster).
    pub fn from_settings(settings: &Settings, default_namespace: &str) -> Self {
        LeaseConfig {
            lease_name: settings.lease_name.clone(),
            lease_namespace: settings
                .lease_namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            identity: default_identity(),
            duration_secs: settings.lease_duration,
            grace_secs: settings.lease_grace,
        }
    }

    /// Sets the identity.
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }

    /// Sets duration and grace (seconds).
    pub fn with_timing(mut self, duration_secs: u64, grace_secs: u64) -> Self {
        self.duration_secs = duration_secs;
        self.grace_secs = grace_secs;
        self
    }

    fn validate(&self) -> Result<(), LeaderError> {
        let timing_ok = self.grace_secs > 0
            && self.grace_secs < self.duration_secs
            && i32::try_from(self.duration_secs).is_ok();
        if !timing_ok {
            return Err(LeaderError::InvalidTiming {
                duration_secs: self.duration_secs,
                grace_secs: self.grace_secs,
            });
        }
        if self.identity.is_empty() || self.lease_name.is_empty() {
            return Err(LeaderError::EmptyName);
        }
        Ok(())
    }

    /// The leader steps down this long before the lease's expiry when it could not renew.
    fn step_down_margin(&self) -> Duration {
        Duration::from_millis(self.grace_secs * 500)
    }

    /// Interval of the watchdog's own Lease reads.
    fn check_interval(&self) -> Duration {
        Duration::from_millis(self.grace_secs * 250)
            .clamp(Duration::from_millis(250), Duration::from_secs(2))
    }
}

/// This replica's identity: `POD_NAME` when set (the Downward API), otherwise the host
/// name plus a random suffix so two local processes never share one.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.trim().is_empty()
    {
        return pod.trim().to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "azlin-operator".to_owned());
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(8)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect();
    format!("{host}-{suffix}")
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Duration/grace do not satisfy `0 < grace < duration <= i32::MAX`.
    #[error(
        "invalid lease timing: duration {duration_secs}s, grace {grace_secs}s (need 0 < grace < duration)"
    )]
    InvalidTiming {
        /// Lease duration.
        duration_secs: u64,
        /// Renew grace.
        grace_secs: u64,
    },
    /// Lease name or identity is empty.
    #[error("lease name and identity must not be empty")]
    EmptyName,
    /// This replica lost the lease; its work was stopped. Exit and let Kubernetes restart.
    #[error("lost leadership of lease {namespace}/{name} as {identity}: {reason}")]
    LeadershipLost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// This replica's identity.
        identity: String,
        /// Why leadership is considered lost.
        reason: String,
    },
}

/// How [`LeaderElector::run_while_leader`] ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipEnd {
    /// The shutdown token was cancelled (work drained if it ran; lease released).
    Shutdown,
    /// The work returned on its own while leading; the lease was released.
    WorkFinished,
}

/// Campaigns for a Lease and runs work only while holding it.
pub struct LeaderElector {
    client: Client,
    config: LeaseConfig,
    leader_tx: watch::Sender<bool>,
    metrics: Option<Metrics>,
    gate: Option<ReadyGate>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .field("is_leader", &*self.leader_tx.borrow())
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// Creates an elector; nothing talks to the API until
    /// [`run_while_leader`](Self::run_while_leader).
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        let (leader_tx, _) = watch::channel(false);
        Ok(LeaderElector {
            client,
            config,
            leader_tx,
            metrics: None,
            gate: None,
        })
    }

    /// Keeps the `azlin_leader` gauge in step with leadership.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.set_leader(false);
        self.metrics = Some(metrics);
        self
    }

    /// Registers a `leader election` readiness gate, ready once the Lease could be
    /// read or created (so a healthy standby is ready; the leader's controllers add
    /// their own gates).
    pub fn with_readiness(mut self, readiness: &Readiness) -> Self {
        self.gate = Some(readiness.register("leader election"));
        self
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// The lease settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// "Am I leader" signal; `true` exactly while the gated work may run.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader_tx.subscribe()
    }

    /// Whether this replica leads right now.
    pub fn is_leader(&self) -> bool {
        *self.leader_tx.borrow()
    }

    fn set_leader(&self, leader: bool) {
        self.leader_tx.send_replace(leader);
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(leader);
        }
    }

    fn lost(&self, reason: impl Into<String>) -> LeaderError {
        LeaderError::LeadershipLost {
            namespace: self.config.lease_namespace.clone(),
            name: self.config.lease_name.clone(),
            identity: self.config.identity.clone(),
            reason: reason.into(),
        }
    }

    /// Campaigns until this replica holds the lease, then runs `work(token)` while it
    /// leads. `token` is cancelled on shutdown (and on loss, just before the work is
    /// dropped); the work should stop when it is cancelled and must not leave detached
    /// tasks running after it returns.
    ///
    /// Returns `Ok(Shutdown)` when `shutdown` is cancelled (standby: at once; leader:
    /// after the work returned, then the lease is released), `Ok(WorkFinished)` when the
    /// work returned by itself, or `Err(LeadershipLost)` when the lease was lost (the
    /// work was stopped: exit the process). API errors while campaigning are logged and
    /// retried with backoff.
    pub async fn run_while_leader<F, Fut>(
        self,
        shutdown: CancellationToken,
        work: F,
    ) -> Result<LeadershipEnd, LeaderError>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(manager) = self.build_manager(&shutdown).await else {
            return Ok(LeadershipEnd::Shutdown);
        };
        if let Some(gate) = &self.gate {
            gate.set_ready();
        }
        if !self.campaign(&manager, &shutdown).await {
            self.release(&manager).await;
            return Ok(LeadershipEnd::Shutdown);
        }
        tracing::info!(
            identity = %self.config.identity,
            lease = %self.config.lease_name,
            namespace = %self.config.lease_namespace,
            "acquired the lease: this replica leads and starts reconciling"
        );
        self.set_leader(true);
        let result = self.lead(&manager, &shutdown, work).await;
        self.set_leader(false);
        match &result {
            Ok(end) => {
                self.release(&manager).await;
                tracing::info!(?end, identity = %self.config.identity, "released the lease");
            }
            Err(error) => tracing::error!(%error, "stopped reconciling"),
        }
        result
    }

    /// Builds the lease manager (creating the Lease if needed), retrying API errors.
    /// `None` when shut down first.
    async fn build_manager(&self, shutdown: &CancellationToken) -> Option<LeaseManager> {
        let mut delays = backoff();
        loop {
            let build = LeaseManagerBuilder::new(self.client.clone(), &self.config.lease_name)
                .with_namespace(&self.config.lease_namespace)
                .with_identity(&self.config.identity)
                .with_duration(self.config.duration_secs)
                .with_grace(self.config.grace_secs)
                .with_create_mode(LeaseCreateMode::AutoCreate)
                .build();
            let result = tokio::select! {
                () = shutdown.cancelled() => return None,
                result = build => result,
            };
            match result {
                Ok(manager) => return Some(manager),
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(%error, retry_in = ?delay, lease = %self.config.lease_name, "cannot set up the leader-election lease");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Waits until this replica holds the lease (`true`) or shutdown (`false`).
    async fn campaign(&self, manager: &LeaseManager, shutdown: &CancellationToken) -> bool {
        tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "standing by for the lease");
        let mut delays = backoff();
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return false,
                result = manager.changed() => result,
            };
            match result {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(%error, retry_in = ?delay, "leader election: lease API error");
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Runs the work while renewing and watching the lease.
    async fn lead<F, Fut>(
        &self,
        manager: &LeaseManager,
        shutdown: &CancellationToken,
        work: F,
    ) -> Result<LeadershipEnd, LeaderError>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let work_token = shutdown.child_token();
        let mut work = Box::pin(work(work_token.clone()));
        let renew = async {
            let mut delays = backoff();
            loop {
                match manager.changed().await {
                    Ok(true) => {}
                    Ok(false) => return "another replica holds the lease".to_owned(),
                    Err(error) => {
                        let delay = delays
                            .next()
                            .unwrap_or(Duration::from_secs(1))
                            .min(self.config.check_interval());
                        tracing::warn!(%error, "renewing the lease failed, retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        };
        let watchdog = self.watchdog();
        let reason = tokio::select! {
            () = &mut work => {
                return Ok(if shutdown.is_cancelled() {
                    LeadershipEnd::Shutdown
                } else {
                    LeadershipEnd::WorkFinished
                });
            }
            reason = renew => reason,
            reason = watchdog => reason,
        };
        work_token.cancel();
        drop(work);
        Err(self.lost(reason))
    }

    /// Reads the Lease periodically and returns why leadership must be considered lost:
    /// another holder, the Lease deleted, or expiry closer than the step-down margin.
    async fn watchdog(&self) -> String {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.config.lease_namespace);
        let margin = self.config.step_down_margin();
        let duration = Duration::from_secs(self.config.duration_secs);
        let grace = Duration::from_secs(self.config.grace_secs);
        // The lease was renewed moments ago (the acquiring patch and read just succeeded).
        let mut valid_until = SystemTime::now() + duration.saturating_sub(grace);
        loop {
            tokio::time::sleep(self.config.check_interval()).await;
            match api.get_opt(&self.config.lease_name).await {
                Ok(Some(lease)) => {
                    let spec = lease.spec.unwrap_or_default();
                    if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                        return format!(
                            "the lease is held by {}",
                            spec.holder_identity.as_deref().unwrap_or("nobody")
                        );
                    }
                    if let (Some(renew), Some(secs)) =
                        (spec.renew_time, spec.lease_duration_seconds)
                    {
                        let secs = u64::try_from(secs).unwrap_or(0);
                        valid_until = SystemTime::from(renew.0) + Duration::from_secs(secs);
                    }
                }
                Ok(None) => return "the Lease object was deleted".to_owned(),
                Err(error) => {
                    tracing::warn!(%error, "leader watchdog cannot read the lease");
                }
            }
            if SystemTime::now() + margin >= valid_until {
                return "the lease was not renewed in time".to_owned();
            }
        }
    }

    async fn release(&self, manager: &LeaseManager) {
        match tokio::time::timeout(RELEASE_TIMEOUT, manager.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "releasing the lease failed"),
            Err(_) => tracing::warn!("releasing the lease timed out"),
        }
    }
}

/// Runs `work` under leader election when `elector` is given, or directly when it is
/// `None` (`--leader-election=false`: every replica reconciles, so run one replica).
/// Same token and result semantics as [`LeaderElector::run_while_leader`].
pub async fn run_gated<F, Fut>(
    elector: Option<LeaderElector>,
    shutdown: CancellationToken,
    work: F,
) -> Result<LeadershipEnd, LeaderError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    match elector {
        Some(elector) => elector.run_while_leader(shutdown, work).await,
        None => {
            work(shutdown.child_token()).await;
            Ok(if shutdown.is_cancelled() {
                LeadershipEnd::Shutdown
            } else {
                LeadershipEnd::WorkFinished
            })
        }
    }
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_validated() {
        let ok = LeaseConfig::new("l", "ns").with_timing(15, 5);
        assert!(ok.validate().is_ok());
        for (d, g) in [(5, 5), (5, 0), (3, 7)] {
            let bad = LeaseConfig::new("l", "ns").with_timing(d, g);
            assert!(matches!(
                bad.validate(),
                Err(LeaderError::InvalidTiming { .. })
            ));
        }
        let empty = LeaseConfig::new("l", "ns").with_identity("");
        assert!(matches!(empty.validate(), Err(LeaderError::EmptyName)));
    }

    #[test]
    fn step_down_happens_before_a_standby_may_take_over() {
        let config = LeaseConfig::new("l", "ns").with_timing(2, 1);
        assert_eq!(config.step_down_margin(), Duration::from_millis(500));
        assert!(config.check_interval() < config.step_down_margin());
        let config = LeaseConfig::new("l", "ns").with_timing(15, 5);
        assert!(config.check_interval() < config.step_down_margin());
    }

    #[test]
    fn default_identity_is_unique_without_pod_name() {
        if std::env::var("POD_NAME").is_err() {
            assert_ne!(default_identity(), default_identity());
        }
    }
}
