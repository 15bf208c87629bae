//! Everything a reconcile needs: the Kubernetes client, the shared caches, ARM access
//! (default and per-namespace tenant credentials), metrics, guest (SSH) access, event
//! recorders, the clock, backoff and settings, built with [`ContextBuilder`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast;

pub use super::caches::TENANT_CREDENTIALS_SECRET;
use super::caches::{CacheSet, Caches};
use super::clock::Clock;
use super::error::{Backoff, Error};
use super::events::Recorder;
use crate::api::common::{AzureIdentity, IDENTITY_NAMESPACE_SECRET, IDENTITY_OPERATOR};
use crate::guest::GuestAccess;
use crate::infra::inventory::Inventory;
use crate::runtime::metrics::Metrics;
use crate::runtime::observers::{ArmMetrics, SshMetrics};
use crate::runtime::settings::Settings;
use crate::ssh::{SshConfig, SshRunner};
use azlin_arm::{ArmClient, ArmConfig, CredentialChoice};

/// Subscription id used with the emulator when none is configured.
pub const EMULATOR_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// Bearer token sent to the emulator (it accepts any token).
pub const EMULATOR_TOKEN: &str = "azlin-emulator-token";

/// Settings of the controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// SSH port connected to on every VM.
    pub ssh_port: u16,
    /// Objects reconciled concurrently per controller.
    pub concurrency: u16,
    /// Requeue interval while Azure is still working (provisioning, power changes, deletes).
    pub progress_requeue: Duration,
    /// Requeue interval at rest (periodic drift detection).
    pub resync_interval: Duration,
    /// First retry delay after a transient error.
    pub backoff_min: Duration,
    /// Largest retry delay after transient errors.
    pub backoff_max: Duration,
    /// `reportingInstance` of events (e.g. the pod name).
    pub instance: Option<String>,
    /// How long a Stalled object first waits before it is re-evaluated anyway (the wait
    /// doubles while it stays Stalled, up to 8 times this).
    pub stalled_recheck: Duration,
    /// Least time between two LISTs of one Azure collection (see [`Inventory`]).
    pub list_interval: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            namespace: None,
            ssh_port: 22,
            concurrency: 4,
            progress_requeue: Duration::from_secs(10),
            resync_interval: Duration::from_secs(300),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            instance: std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()),
            stalled_recheck: Duration::from_secs(300),
            list_interval: Duration::from_secs(2),
        }
    }
}

impl ControllerSettings {
    /// Settings from the operator's command line.
    pub fn from_runtime(settings: &Settings) -> Self {
        Self {
            namespace: settings.namespace.clone(),
            ssh_port: settings.ssh_port,
            concurrency: settings.concurrency,
            ..Self::default()
        }
        .with_intervals(settings)
    }

    /// These settings with the intervals the flags set, if they set any.
    pub fn with_intervals(self, settings: &Settings) -> Self {
        let progress_requeue = settings
            .progress_interval_ms
            .map_or(self.progress_requeue, Duration::from_millis);
        Self {
            resync_interval: settings
                .resync_interval
                .map_or(self.resync_interval, Duration::from_secs),
            progress_requeue,
            list_interval: self.list_interval.min(progress_requeue / 2),
            ..self
        }
    }

    /// Fast intervals for the embedded environment (tests, `local`, benchmarks).
    pub fn fast() -> Self {
        Self {
            progress_requeue: Duration::from_millis(100),
            resync_interval: Duration::from_secs(30),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            stalled_recheck: Duration::from_secs(30),
            list_interval: Duration::from_millis(20),
            ..Self::default()
        }
    }
}

/// The default ARM client for `settings`: the configured endpoint, subscription and CA file
/// with a credential chosen from the environment (workload identity, client secret or managed
/// identity); with `emulator_url`, the emulator with a static token instead. `--arm-request-timeout`
/// overrides the request timeout of either.
pub fn arm_client_from_settings(
    settings: &Settings,
    emulator_url: Option<&str>,
) -> Result<ArmClient, Error> {
    let mut config = match emulator_url {
        Some(url) => ArmConfig::for_emulator(
            url,
            settings
                .subscription_id
                .clone()
                .unwrap_or_else(|| EMULATOR_SUBSCRIPTION.to_string()),
            EMULATOR_TOKEN,
        )
        .map(|mut c| {
            // The operator process honours Retry-After as it does against Azure.
            c.retry.max_retry_after = azlin_arm::RetryPolicy::default().max_retry_after;
            c
        })?,
        None => {
            let subscription = settings.subscription_id.clone().ok_or_else(|| {
                Error::Config(
                    "no Azure subscription: set --subscription-id (AZLIN_SUBSCRIPTION_ID)".into(),
                )
            })?;
            let mut c = ArmConfig::new(subscription, CredentialChoice::from_env()?)
                .with_endpoint(settings.azure_endpoint.as_str())?;
            if let Some(ca) = &settings.azure_ca_file {
                c = c.with_ca_file(ca);
            }
            c
        }
    };
    if let Some(secs) = settings.arm_request_timeout {
        config.request_timeout = Duration::from_secs(secs);
    }
    Ok(ArmClient::new(config)?)
}

/// Counters of finished reconciles, per kind (for tests and `local` progress).
#[derive(Debug, Default)]
pub struct ReconcileStats {
    completed: Mutex<BTreeMap<String, u64>>,
}

impl ReconcileStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // Plain counters: usable even after a panic elsewhere.
        self.completed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one finished reconcile (success or error) of `kind`.
    pub fn record(&self, kind: &str) {
        *self.lock().entry(kind.to_string()).or_default() += 1;
    }

    /// Finished reconciles of `kind` so far.
    pub fn completed(&self, kind: &str) -> u64 {
        self.lock().get(kind).copied().unwrap_or(0)
    }
}

/// Shared state of the controllers.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Metrics registry.
    pub metrics: Metrics,
    /// How VMs' guest OS is reached (SSH, or the local sandbox).
    pub guest: GuestAccess,
    /// Settings.
    pub settings: ControllerSettings,
    /// Finished reconciles per kind.
    pub stats: ReconcileStats,
    /// The shared caches of every kind.
    pub caches: Caches,
    /// The controllers' clock.
    pub clock: Clock,
    /// The shared LIST snapshots of Azure the controllers observe from.
    pub inventory: Inventory,
    cache_set: Mutex<Option<CacheSet>>,
    arm: ArmClient,
    tenants: Mutex<HashMap<String, (String, ArmClient)>>,
    recorders: Mutex<HashMap<String, Arc<Recorder>>>,
    backoff: Backoff,
    resync: broadcast::Sender<()>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("arm", &self.arm)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps updated in single statements: a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Context {
    /// The default ARM client (the operator's own credential).
    pub fn default_arm(&self) -> &ArmClient {
        &self.arm
    }

    /// The cache writers, for [`crate::controllers::run`] to subscribe to and drive; `None`
    /// once taken (the caches of a context are driven once).
    pub fn take_cache_set(&self) -> Option<CacheSet> {
        lock(&self.cache_set).take()
    }

    /// The ARM client for objects in `namespace`: the tenant credential of Secret
    /// [`TENANT_CREDENTIALS_SECRET`] in that namespace when it exists (from the shared cache;
    /// clients are reused per Secret resourceVersion), else the default client. Secret
    /// values are never logged.
    pub fn arm_for(&self, namespace: &str) -> Result<ArmClient, Error> {
        let Some(secret) = self.caches.tenant_secret(namespace) else {
            lock(&self.tenants).remove(namespace);
            return Ok(self.arm.clone());
        };
        let rv = secret.metadata.resource_version.clone().unwrap_or_default();
        if let Some((cached_rv, client)) = lock(&self.tenants).get(namespace)
            && *cached_rv == rv
        {
            return Ok(client.clone());
        }
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let client = self
            .arm
            .for_tenant_secret(&data)
            .map_err(|e| Error::Credential {
                message: format!(
                    "Secret {namespace}/{TENANT_CREDENTIALS_SECRET} cannot be used: {e}. Fix the Secret (keys AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET) or delete it to use the operator's own identity"
                ),
            })?;
        tracing::info!(
            namespace,
            "using the tenant Azure credential of Secret {TENANT_CREDENTIALS_SECRET}"
        );
        lock(&self.tenants).insert(namespace.to_string(), (rv, client.clone()));
        Ok(client)
    }

    /// The ARM client for objects in `namespace` (see [`Context::arm_for`]) and the identity
    /// it acts as: the namespace's credential Secret or the operator's own, and its
    /// subscription.
    pub fn arm_with_identity(&self, namespace: &str) -> Result<(ArmClient, AzureIdentity), Error> {
        let secret = self.caches.tenant_secret(namespace).is_some();
        let arm = self.arm_for(namespace)?;
        let identity = AzureIdentity {
            identity: if secret {
                IDENTITY_NAMESPACE_SECRET
            } else {
                IDENTITY_OPERATOR
            }
            .to_string(),
            subscription_id: arm.subscription_id().to_string(),
        };
        Ok((arm, identity))
    }

    /// The shared event recorder of controller `kind` (one per controller).
    pub fn recorder(&self, kind: &str) -> Arc<Recorder> {
        let mut map = lock(&self.recorders);
        Arc::clone(map.entry(kind.to_string()).or_insert_with(|| {
            Arc::new(Recorder::new(
                self.client.clone(),
                format!("azlin-operator/{}", kind.to_ascii_lowercase()),
                self.settings.instance.clone(),
            ))
        }))
    }

    /// Per-object retry backoff of the controllers.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Asks every controller to reconcile all its objects now, from fresh reads of Azure.
    pub fn resync(&self) {
        self.inventory.expire();
        // No receiver means no controller is running: nothing to resync.
        let _ = self.resync.send(());
    }

    /// A stream yielding once per [`Context::resync`] call and whenever a manual clock moves
    /// (for `reconcile_all_on`).
    pub fn resync_stream(&self) -> impl Stream<Item = ()> + Send + 'static {
        let rx = self.resync.subscribe();
        let resyncs = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Some(((), rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        let ticks = futures::stream::unfold(self.clock.subscribe(), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Some(((), Some(rx))),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        futures::stream::select(resyncs, ticks)
    }
}

/// Builds a [`Context`].
pub struct ContextBuilder {
    client: kube::Client,
    arm: ArmClient,
    metrics: Metrics,
    guest: Option<GuestAccess>,
    settings: ControllerSettings,
    ssh_config: SshConfig,
    clock: Clock,
}

impl ContextBuilder {
    /// A builder with default metrics, settings and SSH guest access.
    pub fn new(client: kube::Client, arm: ArmClient) -> Self {
        Self {
            client,
            arm,
            metrics: Metrics::new(),
            guest: None,
            settings: ControllerSettings::default(),
            ssh_config: SshConfig::default(),
            clock: Clock::System,
        }
    }

    /// A builder for `azlin-operator run`: the default ARM client from `settings` (see
    /// [`arm_client_from_settings`]; `emulator_url` when `--emulator` started one) and the
    /// controller settings, SSH port and SSH concurrency from the flags.
    pub fn from_settings(
        client: kube::Client,
        settings: &Settings,
        emulator_url: Option<&str>,
    ) -> Result<Self, Error> {
        let arm = arm_client_from_settings(settings, emulator_url)?;
        Ok(Self::new(client, arm)
            .settings(ControllerSettings::from_runtime(settings))
            .ssh_config(SshConfig {
                max_concurrency: usize::from(settings.ssh_concurrency),
                ..SshConfig::default()
            }))
    }

    /// Uses this metrics registry (ARM and SSH activity is reported to it).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Uses these settings.
    pub fn settings(mut self, settings: ControllerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// SSH settings of the default guest access.
    pub fn ssh_config(mut self, config: SshConfig) -> Self {
        self.ssh_config = config;
        self
    }

    /// Uses this clock instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses this guest access instead of SSH on `settings.ssh_port`.
    pub fn guest(mut self, guest: GuestAccess) -> Self {
        self.guest = Some(guest);
        self
    }

    /// The context.
    pub fn build(self) -> Arc<Context> {
        let arm = self
            .arm
            .with_observer(Arc::new(ArmMetrics(self.metrics.clone())));
        let guest = self.guest.unwrap_or_else(|| {
            GuestAccess::ssh(
                SshRunner::with_observer(
                    self.ssh_config,
                    Arc::new(SshMetrics(self.metrics.clone())),
                ),
                self.settings.ssh_port,
            )
        });
        let (resync, _) = broadcast::channel(16);
        let cache_set = CacheSet::new();
        let inventory = Inventory::new(
            self.settings.list_interval,
            self.settings.resync_interval,
            f64::from(azlin_arm::RateLimits::default().reads.per_second),
        );
        Arc::new(Context {
            client: self.client,
            metrics: self.metrics,
            guest,
            backoff: Backoff::new(self.settings.backoff_min, self.settings.backoff_max),
            settings: self.settings,
            stats: ReconcileStats::default(),
            caches: cache_set.caches(),
            clock: self.clock,
            inventory,
            cache_set: Mutex::new(Some(cache_set)),
            arm,
            tenants: Mutex::new(HashMap::new()),
            recorders: Mutex::new(HashMap::new()),
            resync,
        })
    }
}

/// Why an object recorded with `recorded` cannot be managed with `current`, the identity
/// namespace `namespace` offers now (the message of Stalled `CredentialUnavailable`).
pub fn identity_mismatch(
    namespace: &str,
    recorded: &AzureIdentity,
    current: &AzureIdentity,
) -> String {
    let secret = format!("Secret {namespace}/{TENANT_CREDENTIALS_SECRET}");
    let was = match recorded.identity.as_str() {
        IDENTITY_NAMESPACE_SECRET => format!("the credential of {secret}"),
        IDENTITY_OPERATOR => "the operator's own identity".to_string(),
        _ => "an earlier credential".to_string(),
    };
    let now = if current.identity == IDENTITY_NAMESPACE_SECRET {
        format!("{secret} (subscription {})", current.subscription_id)
    } else {
        format!(
            "only the operator's own identity (subscription {}), {secret} is missing",
            current.subscription_id
        )
    };
    let fix = if recorded.identity == IDENTITY_NAMESPACE_SECRET
        && current.identity != IDENTITY_NAMESPACE_SECRET
    {
        format!("restore {secret}")
    } else if recorded.identity == IDENTITY_OPERATOR {
        format!(
            "delete {secret} or point it at subscription {}",
            recorded.subscription_id
        )
    } else {
        format!(
            "make {secret} name subscription {} again",
            recorded.subscription_id
        )
    };
    format!(
        "the Azure resources of this object were created in subscription {} with {was}, but namespace {namespace} now offers {now}; the operator never switches an object to another identity or subscription and leaves its Azure resources untouched until then: {fix}",
        recorded.subscription_id
    )
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn id(identity: &str, sub: &str) -> AzureIdentity {
        AzureIdentity {
            identity: identity.into(),
            subscription_id: sub.into(),
        }
    }

    #[test]
    fn identity_mismatch_names_the_secret_and_the_fix() {
        let m = identity_mismatch(
            "team",
            &id(IDENTITY_NAMESPACE_SECRET, "s2"),
            &id(IDENTITY_OPERATOR, "s1"),
        );
        assert!(m.contains("Secret team/azlin-azure-credentials"), "{m}");
        assert!(m.contains("subscription s2"), "{m}");
        assert!(
            m.contains("restore Secret team/azlin-azure-credentials"),
            "{m}"
        );
        let m = identity_mismatch(
            "team",
            &id(IDENTITY_OPERATOR, "s1"),
            &id(IDENTITY_NAMESPACE_SECRET, "s3"),
        );
        assert!(
            m.contains("delete Secret team/azlin-azure-credentials"),
            "{m}"
        );
        assert!(id("", "S1").matches(&id(IDENTITY_OPERATOR, "s1")));
        assert!(!id(IDENTITY_OPERATOR, "s1").matches(&id(IDENTITY_NAMESPACE_SECRET, "s1")));
        assert!(!id(IDENTITY_NAMESPACE_SECRET, "s2").matches(&id(IDENTITY_NAMESPACE_SECRET, "s3")));
        assert_eq!(
            AzureIdentity::of_resource_id("/subscriptions/s2/resourceGroups/rg"),
            Some(id("", "s2"))
        );
        assert_eq!(AzureIdentity::of_resource_id("/foo"), None);
    }
}
