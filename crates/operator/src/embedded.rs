//! The embedded environment: the in-memory Kubernetes API with the four CRDs (and their real
//! schema/CEL admission), the in-process ARM emulator, a [`Context`] pointed at both and the
//! controllers running on a tokio task. Used by the whole-controller tests,
//! `azlin-operator local` and the benchmarks.
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use azlin_operator::api::AzlinVM;
//! use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions};
//! let env = EmbeddedEnv::start(EmbeddedOptions::for_tests()).await?;
//! env.apply_yaml("apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev}\nspec: {resourceGroup: rg, location: westus2, size: Standard_D2s_v5}\n")?;
//! let vm: AzlinVM = env
//!     .wait_for("default", "dev", |vm: &AzlinVM| vm.status.is_some(), std::time::Duration::from_secs(30))
//!     .await?;
//! env.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt::Debug;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::validation::{SchemaError, SchemaValidator};
use crate::controllers;
use crate::guest::GuestAccess;
use crate::reconcile::clock::{Clock, ManualClock};
use crate::reconcile::context::{EMULATOR_SUBSCRIPTION, EMULATOR_TOKEN};
use crate::reconcile::{Context, ContextBuilder, ControllerSettings};
use crate::runtime::metrics::Metrics;
use crate::runtime::readiness::Readiness;
use azlin_arm::{ArmClient, ArmConfig, ArmError};
use azlin_arm_emulator::{Emulator, EmulatorConfig, EmulatorError, EmulatorHandle};
use azlin_kubemem::{ApiServer, FieldCause, KubeMemError};

/// A CRD's schema and CEL rules as a kubemem admission hook.
#[derive(Debug)]
pub struct SchemaAdmission(pub SchemaValidator);

impl azlin_kubemem::Admission for SchemaAdmission {
    fn admit(&self, new: &mut Value, old: Option<&Value>) -> Result<(), Vec<FieldCause>> {
        self.0.admit(new, old).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| FieldCause::invalid(e.field, e.message))
                .collect()
        })
    }
}

/// Registers the four azlin CRDs on `api`, with real schema/CEL admission when `admission`.
pub fn register_azlin_crds(api: &ApiServer, admission: bool) -> Result<(), EmbeddedError> {
    for crd in crate::api::crds() {
        let hook: Option<Arc<dyn azlin_kubemem::Admission>> = if admission {
            Some(Arc::new(SchemaAdmission(SchemaValidator::new(&crd)?)))
        } else {
            None
        };
        api.register_crd(&crd, hook)?;
    }
    Ok(())
}

/// How guest OS access is set up.
#[derive(Debug, Clone, Default)]
pub enum GuestMode {
    /// Local sandboxes (see [`crate::guest`]) under a temporary directory owned by the env.
    #[default]
    SandboxTemp,
    /// Local sandboxes under this directory.
    SandboxIn(PathBuf),
    /// This access (e.g. SSH to a test sshd).
    Custom(GuestAccess),
}

/// Options of [`EmbeddedEnv::start`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Emulator configuration (latency, VM address, fault rates, quota, ...).
    pub emulator: EmulatorConfig,
    /// Controller settings (requeue intervals, concurrency, SSH port).
    pub settings: ControllerSettings,
    /// Guest OS access.
    pub guest: GuestMode,
    /// Metrics registry to report to.
    pub metrics: Metrics,
    /// Enforce the CRDs' schema and CEL rules on writes (turn off only to test how the
    /// controllers cope with objects that do not deserialize).
    pub admission: bool,
    /// The controllers' clock (a [`ManualClock`] lets tests move time; moving it
    /// re-evaluates every object).
    pub clock: Clock,
    /// Timeout of one ARM request (`None`: the emulator client's default, 20 s).
    pub arm_request_timeout: Option<Duration>,
}

impl Default for EmbeddedOptions {
    /// Settings for `azlin-operator local`: default emulator latency, fast requeues.
    fn default() -> Self {
        Self {
            emulator: EmulatorConfig::default(),
            settings: ControllerSettings::fast(),
            clock: Clock::System,
            guest: GuestMode::SandboxTemp,
            metrics: Metrics::new(),
            admission: true,
            arm_request_timeout: None,
        }
    }
}

impl EmbeddedOptions {
    /// Like [`EmbeddedOptions::for_tests`], with a manual clock starting at `start`.
    pub fn with_manual_clock(start: chrono::DateTime<chrono::Utc>) -> (Self, ManualClock) {
        let clock = ManualClock::new(start);
        let mut o = Self::for_tests();
        o.clock = Clock::Manual(clock.clone());
        (o, clock)
    }

    /// Small emulator latency and no ARM rate limiting, for tests.
    pub fn for_tests() -> Self {
        let mut o = Self::default();
        o.emulator.latency = Duration::from_millis(20);
        o.emulator.rate_limit_scale = 0.0;
        o
    }
}

/// Errors starting the environment.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A CRD schema could not be compiled.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The in-memory API refused a CRD or a manifest.
    #[error(transparent)]
    KubeMem(#[from] KubeMemError),
    /// The emulator did not start.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// The ARM client could not be built.
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// A sandbox directory could not be created.
    #[error("sandbox: {0}")]
    Io(#[from] std::io::Error),
}

/// A namespaced object type the wait helpers can read typed.
pub trait NamespacedObject:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
{
}

impl<K> NamespacedObject for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
{
}

/// [`EmbeddedEnv::wait_for`] gave up.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
pub struct WaitError {
    /// What was awaited.
    pub what: String,
    /// The limit.
    pub timeout: Duration,
    /// The last observed object (YAML-ish debug), or why none was seen.
    pub last: String,
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), crate::reconcile::Error>>,
    ctx: Arc<Context>,
    readiness: Readiness,
}

/// A running embedded environment.
pub struct EmbeddedEnv {
    api: ApiServer,
    emulator: EmulatorHandle,
    arm: ArmClient,
    options: EmbeddedOptions,
    guest: GuestAccess,
    running: Option<Running>,
    _sandbox_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for EmbeddedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedEnv")
            .field("emulator", &self.emulator.base_url())
            .field("controllers_running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl EmbeddedEnv {
    /// Starts the in-memory API (with the CRDs), the emulator and the controllers.
    pub async fn start(options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let api = ApiServer::new();
        register_azlin_crds(&api, options.admission)?;
        let emulator = Emulator::start(options.emulator.clone()).await?;
        let mut config =
            ArmConfig::for_emulator(&emulator.base_url(), EMULATOR_SUBSCRIPTION, EMULATOR_TOKEN)?;
        if let Some(timeout) = options.arm_request_timeout {
            config.request_timeout = timeout;
        }
        let arm = ArmClient::new(config)?;
        let (guest, sandbox_dir) = match &options.guest {
            GuestMode::SandboxTemp => {
                let dir = tempfile::Builder::new()
                    .prefix("azlin-local-vms-")
                    .tempdir()?;
                (GuestAccess::sandbox(dir.path())?, Some(dir))
            }
            GuestMode::SandboxIn(dir) => (GuestAccess::sandbox(dir)?, None),
            GuestMode::Custom(g) => (g.clone(), None),
        };
        let mut env = Self {
            api,
            emulator,
            arm,
            options,
            guest,
            running: None,
            _sandbox_dir: sandbox_dir,
        };
        env.start_controllers();
        Ok(env)
    }

    /// Starts the controllers with a fresh [`Context`] (no-op when running).
    pub fn start_controllers(&mut self) {
        if self.running.is_some() {
            return;
        }
        let ctx = ContextBuilder::new(self.api.client(), self.arm.clone())
            .metrics(self.options.metrics.clone())
            .settings(self.options.settings.clone())
            .guest(self.guest.clone())
            .clock(self.options.clock.clone())
            .build();
        let shutdown = CancellationToken::new();
        let readiness = Readiness::new();
        let task = tokio::spawn(controllers::run(
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.clone(),
        ));
        self.running = Some(Running {
            shutdown,
            task,
            ctx,
            readiness,
        });
    }

    /// Stops the controllers (in-flight reconciles finish), keeping API and emulator state.
    pub async fn stop_controllers(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown.cancel();
            match r.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "controllers ended with an error"),
                Err(e) => tracing::warn!(error = %e, "controller task failed"),
            }
        }
    }

    /// Stops and starts the controllers (fresh caches and context; same API and emulator).
    pub async fn restart_controllers(&mut self) {
        self.stop_controllers().await;
        self.start_controllers();
    }

    /// Aborts the controllers immediately, as a crash would (reconciles are cut mid-way).
    pub fn kill_controllers(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown.cancel();
            r.task.abort();
        }
    }

    /// A Kubernetes client of the in-memory API.
    pub fn client(&self) -> kube::Client {
        self.api.client()
    }

    /// The in-memory API server (request log, direct reads).
    pub fn api(&self) -> &ApiServer {
        &self.api
    }

    /// The ARM emulator.
    pub fn emulator(&self) -> &EmulatorHandle {
        &self.emulator
    }

    /// An ARM client for the emulator (for assertions).
    pub fn arm(&self) -> &ArmClient {
        &self.arm
    }

    /// The guest access the controllers use.
    pub fn guest(&self) -> &GuestAccess {
        &self.guest
    }

    /// The running controllers' context.
    pub fn context(&self) -> Option<&Arc<Context>> {
        self.running.as_ref().map(|r| &r.ctx)
    }

    /// The running controllers' readiness.
    pub fn readiness(&self) -> Option<&Readiness> {
        self.running.as_ref().map(|r| &r.readiness)
    }

    /// Asks the running controllers to reconcile every object now.
    pub fn resync(&self) {
        if let Some(r) = &self.running {
            r.ctx.resync();
        }
    }

    /// Finished reconciles of `kind` by the running controllers.
    pub fn reconciles(&self, kind: &str) -> u64 {
        self.running
            .as_ref()
            .map(|r| r.ctx.stats.completed(kind))
            .unwrap_or(0)
    }

    /// Creates every document of `yaml` (with admission), creating the namespaces they use
    /// first when they do not exist.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, KubeMemError> {
        self.api.apply_yaml_creating_namespaces(yaml)
    }

    /// Polls `namespace/name` every 20 ms until `predicate` holds, for at most `timeout`.
    pub async fn wait_for<K>(
        &self,
        namespace: &str,
        name: &str,
        predicate: impl Fn(&K) -> bool,
        timeout: Duration,
    ) -> Result<K, WaitError>
    where
        K: NamespacedObject,
    {
        let what = format!("{} {namespace}/{name}", K::kind(&()));
        self.poll(
            namespace,
            name,
            what,
            timeout,
            |current: Option<K>| match current {
                Some(obj) if predicate(&obj) => ControlFlow::Break(obj),
                Some(obj) => ControlFlow::Continue(format!("{obj:?}")),
                None => ControlFlow::Continue("not found".to_string()),
            },
        )
        .await
    }

    /// Polls until `namespace/name` no longer exists.
    pub async fn wait_gone<K>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), WaitError>
    where
        K: NamespacedObject,
    {
        let what = format!("{} {namespace}/{name} to be deleted", K::kind(&()));
        self.poll(
            namespace,
            name,
            what,
            timeout,
            |current: Option<K>| match current {
                None => ControlFlow::Break(()),
                Some(obj) => ControlFlow::Continue(format!("{obj:?}")),
            },
        )
        .await
    }

    /// Reads `namespace/name` every 20 ms and hands it (or `None` when missing) to `check`
    /// until `check` breaks with a value; after `timeout` fails with the last description
    /// `check` gave (or the last read error).
    async fn poll<K, T>(
        &self,
        namespace: &str,
        name: &str,
        what: String,
        timeout: Duration,
        check: impl Fn(Option<K>) -> ControlFlow<T, String>,
    ) -> Result<T, WaitError>
    where
        K: NamespacedObject,
    {
        let api: Api<K> = Api::namespaced(self.client(), namespace);
        let deadline = Instant::now() + timeout;
        loop {
            let last = match api.get_opt(name).await {
                Ok(current) => match check(current) {
                    ControlFlow::Break(done) => return Ok(done),
                    ControlFlow::Continue(last) => last,
                },
                Err(e) => format!("error: {e}"),
            };
            if Instant::now() > deadline {
                return Err(WaitError {
                    what,
                    timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`EmbeddedEnv::shutdown`], but gives the controllers at most `grace` to stop and
    /// aborts them after that. Returns whether they stopped in time.
    pub async fn shutdown_within(mut self, grace: Duration) -> bool {
        let mut in_time = true;
        if let Some(mut r) = self.running.take() {
            r.shutdown.cancel();
            match tokio::time::timeout(grace, &mut r.task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "controllers ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "controller task failed"),
                Err(_) => {
                    r.task.abort();
                    in_time = false;
                }
            }
        }
        let Self { emulator, .. } = self;
        match tokio::time::timeout(grace, emulator.shutdown()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "emulator shutdown failed"),
            Ok(Ok(())) => {}
            Err(_) => in_time = false,
        }
        in_time
    }

    /// Stops the controllers and the emulator.
    pub async fn shutdown(mut self) {
        self.stop_controllers().await;
        let Self { emulator, .. } = self;
        if let Err(e) = emulator.shutdown().await {
            tracing::warn!(error = %e, "emulator shutdown failed");
        }
    }
}
