//! An in-memory Azure Resource Manager emulator for the resources the operator manages:
//! resource groups, virtual networks/subnets, NSGs, public IPs, NICs, VMs (power actions and
//! instance view), disks, snapshots, storage accounts and file shares — at ARM's URL shapes and
//! api-versions, with ARM's envelopes, long-running operations, errors and throttling headers.
//!
//! Start it in-process with [`Emulator::start`] or as a CLI with [`run`]. Test control
//! ("what if") is offered both by [`EmulatorHandle`] and over HTTP under `/_emulator/`:
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/_emulator/health` | liveness |
//! | GET | `/_emulator/counts` | [`RequestCounts`] |
//! | POST | `/_emulator/counts/reset` (or DELETE `/_emulator/counts`) | reset counts and log |
//! | GET | `/_emulator/requests` | the request log ([`RequestRecord`]s) |
//! | GET | `/_emulator/resource?id=` | a resource as GET returns it (VMs with instanceView) |
//! | POST | `/_emulator/vms/evict` `{"id"}` | Spot eviction per `evictionPolicy` |
//! | POST | `/_emulator/vms/power` `{"id","state":"running\|stopped\|deallocated"}` | out-of-band power change |
//! | POST | `/_emulator/delete` `{"id"}` | out-of-band delete (with cascades) |
//! | POST | `/_emulator/inject` [`ErrorInjection`] | error for the next matching request(s), or an asynchronous operation failure |
//! | GET | `/_emulator/nfs-access?vm=&account=` | [`EmulatorHandle::nfs_access`] over HTTP |
//! | GET | `/_emulator/identity/token?resource=` | managed-identity token (App Service protocol, `X-IDENTITY-HEADER`) |
//!
//! Flags, URL list, enforced rules and known differences from Azure: `docs/emulator.md`.

mod access;
mod admin;
mod args;
mod budgets;
pub mod catalog;
mod compute;
mod context;
mod counts;
mod discovery;
mod disks;
mod error;
mod faults;
mod filter;
mod graph;
mod handlers;
mod kinds;
mod kql;
mod lro;
mod network;
mod path;
mod resources;
mod server;
mod state;
mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod validation;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use access::NfsAccessError;
pub use args::EmulatorArgs;
pub use compute::PowerState;
pub use counts::{RequestCounts, RequestRecord};
pub use error::{ArmError, EmulatorError};
pub use faults::{ErrorInjection, SlowOperations};

use budgets::Budgets;
use context::Shared;
use counts::Recorder;
use faults::{FaultRates, Faults};
use kinds::Settings;
use state::Store;

/// Configuration of an emulator instance.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Provisioning time of asynchronous operations.
    pub latency: Duration,
    /// Fraction of ARM requests answered 500.
    pub fault_rate: f64,
    /// Fraction of ARM requests answered 429.
    pub throttle_rate: f64,
    /// Fraction of ARM requests whose connection drops before the answer is complete (half
    /// of them after the request took effect).
    pub reset_rate: f64,
    /// Fraction of ARM requests answered only after `slow_answer` (the request takes effect
    /// at once).
    pub slow_rate: f64,
    /// How late slow answers come (past the client's timeout, typically).
    pub slow_answer: Duration,
    /// Fraction of writes whose long-running operation ends `Failed`.
    pub failed_operation_rate: f64,
    /// Address reported as every VM's private and public IP.
    pub vm_address: Option<IpAddr>,
    /// PEM certificate and key paths: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// State file (loaded at start, saved on change and at shutdown).
    pub state_file: Option<PathBuf>,
    /// vCPU quota per region and subscription.
    pub core_quota: u32,
    /// Items per list page.
    pub page_size: usize,
    /// Multiplier of every request budget: ARM's token buckets per subscription and principal
    /// (reads 250 burst / 25 per s, writes and deletes 200 / 10 per s, 15× per subscription)
    /// and, together with `compute_limit_scale`, Compute's windows. 0 disables all budgets
    /// (answers still carry the nominal remaining counts).
    pub rate_limit_scale: f64,
    /// Extra multiplier of the Compute windows (`PutVM3Min` 240, `PutVM30Min` 1200,
    /// `CreateUpdateDisks3Min` 1000, `CreateUpdateDisks30Min` 8000, `HighCostGet3Min` 160,
    /// `HighCostGet30Min` 800, `LowCostGet3Min` 4000, `LowCostGet30Min` 32000); 0 disables them.
    pub compute_limit_scale: f64,
    /// Subscription listed by `GET /subscriptions` (any subscription id is served).
    pub subscription_id: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::from_millis(200),
            fault_rate: 0.0,
            throttle_rate: 0.0,
            reset_rate: 0.0,
            slow_rate: 0.0,
            slow_answer: Duration::from_secs(65),
            failed_operation_rate: 0.0,
            vm_address: None,
            tls: None,
            state_file: None,
            core_quota: 100_000,
            page_size: 100,
            rate_limit_scale: 1.0,
            compute_limit_scale: 1.0,
            subscription_id: None,
        }
    }
}

/// Entry point of the emulator.
pub struct Emulator;

impl Emulator {
    /// Binds, loads the state file (finishing operations that were in flight) and starts serving.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        let rates = FaultRates {
            server_error: config.fault_rate,
            throttle: config.throttle_rate,
            reset: config.reset_rate,
            slow: config.slow_rate,
            slow_by: config.slow_answer,
            failed_operation: config.failed_operation_rate,
        };
        for (name, rate) in rates.named() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(EmulatorError::Config(format!(
                    "{name} {rate} is not between 0 and 1"
                )));
            }
        }
        let settings = Settings {
            latency: config.latency,
            vm_address: config.vm_address,
            core_quota: config.core_quota,
            page_size: config.page_size.max(1),
            subscription: config
                .subscription_id
                .clone()
                .unwrap_or_else(|| discovery::DEFAULT_SUBSCRIPTION.to_string()),
        };
        for (name, scale) in [
            ("rate limit scale", config.rate_limit_scale),
            ("compute limit scale", config.compute_limit_scale),
        ] {
            if !(scale.is_finite() && scale >= 0.0) {
                return Err(EmulatorError::Config(format!(
                    "{name} {scale} must be a number >= 0"
                )));
            }
        }
        let mut store = match &config.state_file {
            Some(path) => Store::load(path)?,
            None => Store::default(),
        };
        lro::complete_all(&mut store, &settings);
        let tls = match &config.tls {
            Some((cert, key)) => Some(server::tls_config(cert, key)?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            settings,
            store: Mutex::new(store),
            recorder: Mutex::new(Recorder::default()),
            faults: Faults::new(rates),
            budgets: Budgets::new(
                config.rate_limit_scale,
                config.rate_limit_scale * config.compute_limit_scale,
            ),
            dirty: Notify::new(),
            persist: config.state_file.is_some(),
            runtime: tokio::runtime::Handle::current(),
            scheme: if tls.is_some() { "https" } else { "http" },
        });
        let stop = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            listener,
            server::router(Arc::clone(&shared)),
            tls,
            stop.clone(),
        ));
        let saver = config
            .state_file
            .clone()
            .map(|path| tokio::spawn(save_loop(Arc::clone(&shared), path, stop.clone())));
        tracing::info!(%addr, scheme = shared.scheme, "ARM emulator listening");
        Ok(EmulatorHandle {
            shared,
            addr,
            stop,
            server: Some(server),
            saver,
            state_file: config.state_file,
        })
    }
}

fn snapshot(shared: &Shared) -> Result<String, EmulatorError> {
    let store = shared.store();
    serde_json::to_string(&*store)
        .map_err(|e| EmulatorError::Config(format!("state serialization failed: {e}")))
}

/// Saves the state after changes (coalescing bursts) until stopped.
async fn save_loop(shared: Arc<Shared>, path: PathBuf, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = shared.dirty.notified() => {}
        }
        // Coalesce a burst of changes into one write.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let result = match snapshot(&shared) {
            Ok(text) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Store::save(&text, &path))
                    .await
                    .unwrap_or_else(|e| {
                        Err(EmulatorError::Config(format!(
                            "state save task failed: {e}"
                        )))
                    })
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "saving emulator state failed");
        }
    }
}

/// A running emulator.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
    server: Option<JoinHandle<()>>,
    saver: Option<JoinHandle<()>>,
    state_file: Option<PathBuf>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT` (or `https://...`), the ARM endpoint to configure in clients.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Request counts by method and resource type.
    pub fn counts(&self) -> RequestCounts {
        self.shared.recorder().counts()
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.recorder().requests()
    }

    /// Clears counts and the request log.
    pub fn reset_counts(&self) {
        self.shared.recorder().reset();
    }

    /// Simulates a Spot eviction of a VM (deallocated or deleted per its `evictionPolicy`).
    pub fn evict_vm(&self, vm_id: &str) -> Result<(), ArmError> {
        admin::evict_vm(&self.shared, vm_id)
    }

    /// Changes a VM's power state out of band (cancels any operation in flight on it).
    pub fn set_vm_power_out_of_band(&self, vm_id: &str, state: PowerState) -> Result<(), ArmError> {
        admin::set_power(&self.shared, vm_id, state)
    }

    /// Deletes a resource and everything below it out of band (with delete-option cascades).
    pub fn delete_out_of_band(&self, id: &str) -> Result<(), ArmError> {
        admin::delete_out_of_band(&self.shared, id)
    }

    /// Makes matching long-running operations take `rule.delay` (until
    /// [`EmulatorHandle::clear_slow_operations`]).
    pub fn slow_operations(&self, rule: SlowOperations) {
        self.shared.faults.slow_operations(rule);
    }

    /// Forgets the [`SlowOperations`] rules.
    pub fn clear_slow_operations(&self) {
        self.shared.faults.clear_slow_operations();
    }

    /// Answers the next matching request(s) with an error.
    pub fn inject_error(&self, injection: ErrorInjection) {
        self.shared.faults.inject(injection);
    }

    /// Whether VM `vm` (resource id or private IP address) may mount NFS 4.1 shares of storage
    /// account `account` under Azure's network rules, decided from the emulated state: the
    /// account must be Premium `FileStorage`, provisioned, with `networkAcls.defaultAction`
    /// `Deny` and one of the VM's subnets in `virtualNetworkRules`, and that subnet's
    /// `Microsoft.Storage` service endpoint must cover the account's region (`Microsoft.Storage`
    /// covers the virtual network's region and its pair; `Microsoft.Storage.Global` all).
    /// Over HTTP: `GET /_emulator/nfs-access?vm=...&account=...`.
    pub fn nfs_access(&self, vm: &str, account: &str) -> Result<(), NfsAccessError> {
        access::nfs_access(&self.shared, vm, account)
    }

    /// The ids of every resource the emulator holds (lower-cased, sorted): its inventory,
    /// for checking that nothing leaked or was duplicated.
    pub fn resource_ids(&self) -> Vec<String> {
        self.shared.store().resources.keys().cloned().collect()
    }

    /// A resource as GET returns it (VMs include `properties.instanceView`).
    pub fn resource(&self, id: &str) -> Option<Value> {
        admin::resource_json(&self.shared, id)
    }

    /// Stops serving, drains connections and writes the state file.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(saver) = self.saver.take() {
            let _ = saver.await;
        }
        if let Some(path) = self.state_file.clone() {
            let text = snapshot(&self.shared)?;
            tokio::task::spawn_blocking(move || Store::save(&text, &path))
                .await
                .map_err(|e| EmulatorError::Config(format!("state save task failed: {e}")))??;
        }
        Ok(())
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs the emulator from CLI flags until Ctrl-C or SIGTERM.
pub async fn run(args: EmulatorArgs) -> Result<(), EmulatorError> {
    let handle = Emulator::start(args.into()).await?;
    tracing::info!(url = %handle.base_url(), "ARM emulator ready");
    wait_for_signal().await?;
    tracing::info!("ARM emulator shutting down");
    handle.shutdown().await
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), EmulatorError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(EmulatorError::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(EmulatorError::Signal),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), EmulatorError> {
    tokio::signal::ctrl_c().await.map_err(EmulatorError::Signal)
}
