//! `azlin-operator bench`: the speed and memory figures recorded in `docs/PERFORMANCE.md`.
//!
//! Runs the real controllers on the embedded environment (in-memory Kubernetes API and
//! the in-process ARM emulator over HTTP) and measures: time until N AzlinVMs are Ready,
//! the reconciles and ARM requests it took, the ARM and Kubernetes writes of a resync at
//! rest (must be zero), and the process's peak resident memory.

use std::time::{Duration, Instant};

use crate::embedded::{EmbeddedEnv, EmbeddedError, EmbeddedOptions};
use azlin_kubemem::KubeMemError;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Number of AzlinVMs to create.
    #[arg(long, default_value_t = 200)]
    pub vms: usize,
    /// Provisioning time of every emulated Azure operation, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub latency_ms: u64,
    /// Objects reconciled concurrently by the AzlinVM controller.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Create one Fleet with `--vms` members instead of `--vms` separate AzlinVMs.
    #[arg(long)]
    pub fleet: bool,
    /// Enforce Azure's request budgets in the emulator (reads 250/25 per s, writes 200/10
    /// per s, Compute's VM-write windows).
    #[arg(long)]
    pub budgets: bool,
}

/// The least time `vms` VMs in one new resource group can take to be Ready: the longest
/// of the chain of operations the first one waits for (network security group, virtual
/// network, NIC, VM: four emulated provisioning times) and the time Azure's write budget
/// needs for all the writes (three for the shared network, a NIC and a VM per VM: a burst
/// of 200, then 10 per second; VM creates: 240 per 3 minutes).
pub fn lower_bound(vms: usize, latency: Duration, budgets: bool) -> Duration {
    let chain = latency * 4;
    if !budgets {
        return chain;
    }
    let writes = 3 + 2 * vms as u64;
    let write_wait = Duration::from_secs(writes.saturating_sub(200).div_ceil(10));
    let vm_windows = (vms as u64).saturating_sub(1) / 240;
    let vm_wait = Duration::from_secs(vm_windows * 180);
    chain.max(write_wait).max(vm_wait)
}

/// Results of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// VMs created.
    pub vms: usize,
    /// Whether they were members of one Fleet.
    pub fleet: bool,
    /// The least time they could take ([`lower_bound`]), in seconds.
    pub lower_bound_seconds: f64,
    /// Seconds from applying the objects until all were Ready.
    pub seconds_to_ready: f64,
    /// AzlinVM reconciles until all were Ready.
    pub reconciles: u64,
    /// ARM requests until all were Ready.
    pub arm_requests: u64,
    /// ARM writes (PUT/POST/PATCH/DELETE) during a full resync at rest.
    pub arm_writes_at_rest: u64,
    /// Kubernetes writes during a full resync at rest.
    pub kube_writes_at_rest: usize,
    /// Peak resident set size of the process in MiB (`VmHWM`).
    pub peak_rss_mib: f64,
}

impl BenchReport {
    /// One Markdown table row:
    /// `| vms | s | bound s (ratio) | reconciles | ARM | writes at rest | RSS |`.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {}{} | {:.1} | {:.1} ({:.1}×) | {} | {} | {} ARM / {} Kubernetes | {:.0} |",
            self.vms,
            if self.fleet { " (one Fleet)" } else { "" },
            self.seconds_to_ready,
            self.lower_bound_seconds,
            self.seconds_to_ready / self.lower_bound_seconds.max(0.001),
            self.reconciles,
            self.arm_requests,
            self.arm_writes_at_rest,
            self.kube_writes_at_rest,
            self.peak_rss_mib
        )
    }
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The environment did not start.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The objects were refused.
    #[error(transparent)]
    Apply(#[from] KubeMemError),
    /// Not everything became Ready in time.
    #[error("only {ready} of {total} AzlinVMs Ready after {timeout:?}")]
    Timeout {
        /// Ready count.
        ready: usize,
        /// Total.
        total: usize,
        /// Limit.
        timeout: Duration,
    },
}

fn fleet_ready(env: &EmbeddedEnv, n: usize) -> usize {
    env.api()
        .get("azlin.io/v1alpha1", "Fleet", Some("bench"), "bench")
        .filter(|f| {
            f["metadata"]["generation"] == f["status"]["observedGeneration"]
                && f["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .map_or(0, |_| n)
}

fn ready_count(env: &EmbeddedEnv) -> usize {
    env.api()
        .list("azlin.io/v1alpha1", "AzlinVM", Some("bench"))
        .iter()
        .filter(|vm| {
            vm["metadata"]["generation"] == vm["status"]["observedGeneration"]
                && vm["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .count()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Runs the benchmark.
pub async fn run(args: &BenchArgs) -> Result<BenchReport, BenchError> {
    let mut options = EmbeddedOptions::for_tests();
    options.emulator.latency = Duration::from_millis(args.latency_ms);
    options.settings.concurrency = args.concurrency;
    if args.budgets {
        options.emulator.rate_limit_scale = 1.0;
    }
    let env = EmbeddedEnv::start(options).await?;
    let mut yaml = String::new();
    if args.fleet {
        yaml.push_str(&format!(
            "apiVersion: azlin.io/v1alpha1\nkind: Fleet\nmetadata: {{name: bench, namespace: bench}}\nspec:\n  replicas: {}\n  template:\n    spec: {{resourceGroup: bench-rg, location: westus2, size: Standard_D2s_v5}}\n",
            args.vms
        ));
    } else {
        for i in 0..args.vms {
            yaml.push_str(&format!(
                "---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: vm-{i:04}, namespace: bench}}\nspec: {{resourceGroup: bench-rg, location: westus2, size: Standard_D2s_v5}}\n"
            ));
        }
    }
    let started = Instant::now();
    env.apply_yaml(&yaml)?;
    let timeout = Duration::from_secs(args.timeout);
    loop {
        let ready = if args.fleet {
            fleet_ready(&env, args.vms)
        } else {
            ready_count(&env)
        };
        if ready == args.vms {
            break;
        }
        if started.elapsed() > timeout {
            return Err(BenchError::Timeout {
                ready,
                total: args.vms,
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds_to_ready = started.elapsed().as_secs_f64();
    let reconciles = env.reconciles("AzlinVM");
    let arm_requests = env.emulator().counts().total;

    env.emulator().reset_counts();
    let mark = env.api().mark();
    let before = env.reconciles("AzlinVM");
    env.resync();
    let settle = Instant::now();
    while env.reconciles("AzlinVM") < before + args.vms as u64 && settle.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = env.emulator().counts();
    let arm_writes_at_rest = ["PUT", "POST", "PATCH", "DELETE"]
        .iter()
        .map(|m| counts.method(m))
        .sum();
    let kube_writes_at_rest = env.api().writes_since(mark).len();
    let report = BenchReport {
        vms: args.vms,
        fleet: args.fleet,
        lower_bound_seconds: lower_bound(
            args.vms,
            Duration::from_millis(args.latency_ms),
            args.budgets,
        )
        .as_secs_f64(),
        seconds_to_ready,
        reconciles,
        arm_requests,
        arm_writes_at_rest,
        kube_writes_at_rest,
        peak_rss_mib: peak_rss_mib(),
    };
    env.shutdown().await;
    Ok(report)
}
