//! `azlin-operator bench`: the speed and memory figures recorded in `docs/PERFORMANCE.md`.
//!
//! As in production, the operator runs as its own process (`azlin-operator run`); the
//! benchmark process serves it the in-memory Kubernetes API and the ARM emulator over
//! loopback, with Azure's request budgets on. For each size it measures: time until N
//! AzlinVMs are Ready and its ratio to the [`lower_bound`], ARM reads and writes per VM
//! until then, reads per VM per resync and writes while everything is at rest, the 429s the
//! operator drew, the ARM reads a restarted operator makes to re-observe every VM (at most
//! `--vms-per-group` in one resource group), the time from a spec change to the first ARM request for that VM (p50 and
//! p99), and the operator process's peak resident memory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azlin_arm_emulator::{Emulator, EmulatorConfig, EmulatorError, EmulatorHandle};
use azlin_kubemem::{ApiServer, KubeMemError};

use crate::embedded::{EmbeddedError, register_azlin_crds};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Numbers of AzlinVMs to run with, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [100usize])]
    pub vms: Vec<usize>,
    /// Most AzlinVMs in one resource group: larger sizes are spread over several (a managed
    /// network's subnet holds 4091 NICs).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub vms_per_group: u64,
    /// Provisioning time of every emulated Azure operation, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub latency_ms: u64,
    /// Objects the operator reconciles concurrently per controller.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u16,
    /// Seconds between resyncs of objects at rest (the operator's `--resync-interval`).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub resync_interval: u64,
    /// Give up on a size after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Multiplier of Azure's request budgets in the emulator (1 = Azure's; 0 turns them off,
    /// which no recorded figure may use).
    #[arg(long, default_value_t = 1.0)]
    pub rate_limit_scale: f64,
    /// Extra multiplier of Compute's VM-write windows.
    #[arg(long, default_value_t = 1.0)]
    pub compute_limit_scale: f64,
    /// Spec changes timed for the spec-change-to-first-ARM-request figures.
    #[arg(long, default_value_t = 40)]
    pub changes: usize,
    /// The operator binary to run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub operator: Option<PathBuf>,
}

/// Azure's budgets as the emulator enforces them, scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// Write bucket size.
    pub write_burst: f64,
    /// Write bucket refill per second.
    pub writes_per_second: f64,
    /// VM creates and updates allowed per 3 minutes (`PutVM3Min`).
    pub vm_writes_per_3min: f64,
    /// ... per 30 minutes (`PutVM30Min`).
    pub vm_writes_per_30min: f64,
}

impl Budgets {
    /// Azure's budgets times `scale`, Compute's windows times `scale × compute_scale`.
    pub fn scaled(scale: f64, compute_scale: f64) -> Self {
        Self {
            write_burst: 200.0 * scale,
            writes_per_second: 10.0 * scale,
            vm_writes_per_3min: 240.0 * scale * compute_scale,
            vm_writes_per_30min: 1200.0 * scale * compute_scale,
        }
    }
}

/// The least time `vms` VMs in `groups` new resource groups can take to be Ready: the
/// slowest of the provisioning chain the first VM waits for (network security group,
/// virtual network, public IP, NIC, VM: five emulated provisioning times), the writes needed
/// (five for the shared resources of each group, then a public IP, a NIC and a VM per VM)
/// beyond the write burst at the write refill, and the VM creates beyond one Compute window
/// at that window's pace.
pub fn lower_bound(
    vms: usize,
    groups: usize,
    latency: Duration,
    budgets: Option<Budgets>,
) -> Duration {
    let chain = latency * 5;
    let Some(b) = budgets else {
        return chain;
    };
    let writes = 5.0 * groups as f64 + 3.0 * vms as f64;
    let write_wait = (writes - b.write_burst).max(0.0) / b.writes_per_second;
    let windows = |per: f64, seconds: f64| ((vms as f64 - per) / per).max(0.0).ceil() * seconds;
    let vm_wait = windows(b.vm_writes_per_3min, 180.0).max(windows(b.vm_writes_per_30min, 1800.0));
    chain.max(Duration::from_secs_f64(write_wait.max(vm_wait)))
}

/// Results of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// VMs created.
    pub vms: usize,
    /// Resource groups they were spread over.
    pub groups: usize,
    /// The least time they could take ([`lower_bound`]), in seconds.
    pub lower_bound_seconds: f64,
    /// Seconds from applying the objects until all were Ready.
    pub seconds_to_ready: f64,
    /// ARM reads (GET) per VM until all were Ready.
    pub reads_per_vm: f64,
    /// ARM writes (PUT, PATCH, POST, DELETE) per VM until all were Ready.
    pub writes_per_vm: f64,
    /// ARM reads per VM per resync while everything was at rest.
    pub reads_per_vm_at_rest: f64,
    /// ARM writes while everything was at rest.
    pub arm_writes_at_rest: u64,
    /// Kubernetes writes while everything was at rest.
    pub kube_writes_at_rest: usize,
    /// ARM reads a restarted operator made until it had reconciled every VM once.
    pub restart_reads: u64,
    /// ARM writes it made meanwhile.
    pub restart_writes: u64,
    /// Resync interval the operator used at rest, in seconds.
    pub resync_seconds: f64,
    /// Requests the emulator answered 429 over the whole run.
    pub throttled: u64,
    /// Spec change to the first ARM request for that VM, median, in milliseconds.
    pub change_p50_ms: f64,
    /// ... 99th percentile.
    pub change_p99_ms: f64,
    /// Peak resident memory of the operator process, MiB (`VmHWM`): the higher of the
    /// first process (creating every VM) and the one that replaced it.
    pub operator_rss_mib: f64,
}

impl BenchReport {
    /// The header of [`BenchReport::markdown_row`].
    pub const MARKDOWN_HEADER: &'static str = "| VMs | s to all Ready | lower bound, s (ratio) | ARM reads / writes per VM until Ready | reads per VM per resync at rest (resync s) | writes at rest (ARM / Kubernetes) | restart: ARM reads / writes to re-observe all (reads per resource group) | 429s | spec change → first ARM request p50 / p99, ms | operator RSS, MiB |\n|---|---|---|---|---|---|---|---|---|---|";

    /// Ready time over the lower bound.
    pub fn bound_ratio(&self) -> f64 {
        self.seconds_to_ready / self.lower_bound_seconds.max(0.001)
    }

    /// One Markdown table row.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {:.1} | {:.1} ({:.2}×) | {:.1} / {:.1} | {:.4} ({:.0}) | {} / {} | {} / {} ({:.0} in each of {}) | {} | {:.0} / {:.0} | {:.0} |",
            self.vms,
            self.seconds_to_ready,
            self.lower_bound_seconds,
            self.bound_ratio(),
            self.reads_per_vm,
            self.writes_per_vm,
            self.reads_per_vm_at_rest,
            self.resync_seconds,
            self.arm_writes_at_rest,
            self.kube_writes_at_rest,
            self.restart_reads,
            self.restart_writes,
            self.restart_reads as f64 / self.groups.max(1) as f64,
            self.groups,
            self.throttled,
            self.change_p50_ms,
            self.change_p99_ms,
            self.operator_rss_mib
        )
    }

    /// The summary line: `bound-ratio=<x> reads-per-vm-at-rest=<y> throttled=<n> rss-mib=<m>`.
    pub fn summary_line(&self) -> String {
        format!(
            "bound-ratio={:.2} reads-per-vm-at-rest={:.4} throttled={} rss-mib={:.0}",
            self.bound_ratio(),
            self.reads_per_vm_at_rest,
            self.throttled,
            self.operator_rss_mib
        )
    }
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The in-memory API did not take the CRDs.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The emulator did not start.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// The objects were refused.
    #[error(transparent)]
    Apply(#[from] KubeMemError),
    /// Serving the API, writing the kubeconfig or starting the operator failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The operator process ended or never became ready, or a change could not be made.
    #[error("the operator process: {0}")]
    Operator(String),
    /// Something did not happen in time.
    #[error("{what} after {timeout:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// Limit.
        timeout: Duration,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io { what, source }
}

/// The operator as a child process, killed when dropped.
struct OperatorProcess {
    child: Child,
    admin: String,
}

impl OperatorProcess {
    fn start(
        args: &BenchArgs,
        kubeconfig: &std::path::Path,
        emulator_url: &str,
    ) -> Result<Self, BenchError> {
        let binary = match &args.operator {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(io("finding this binary"))?,
        };
        let progress_ms = (args.latency_ms / 2).clamp(20, 10_000);
        let mut child = Command::new(binary)
            .args([
                "run",
                "--emulator-url",
                emulator_url,
                "--admin-addr=127.0.0.1:0",
                "--leader-election=false",
                "--log-format=json",
                "--log-level=warn,azlin_operator::operator=info",
            ])
            .arg(format!("--concurrency={}", args.concurrency))
            .arg(format!("--resync-interval={}", args.resync_interval))
            .arg(format!("--progress-interval-ms={progress_ms}"))
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io("starting the operator"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Operator("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let admin = loop {
            let Some(Ok(line)) = lines.next() else {
                return Err(BenchError::Operator(
                    "exited before its admin server listened".into(),
                ));
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "admin server listening"
                && let Some(addr) = v["addr"].as_str()
            {
                break format!("http://{addr}");
            }
        };
        // Keep draining the log so the operator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(Self { child, admin })
    }

    /// A gauge or counter from `/metrics`.
    async fn metric(&self, name: &str) -> Option<f64> {
        let body = reqwest::get(format!("{}/metrics", self.admin))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn peak_rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready_count(api: &ApiServer) -> usize {
    api.list("azlin.io/v1alpha1", "AzlinVM", Some("bench"))
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

fn vm_yaml(i: usize, per_group: usize) -> String {
    let group = i / per_group;
    format!(
        "---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: vm-{i:05}, namespace: bench}}\nspec: {{resourceGroup: bench-rg-{group:02}, location: westus2, size: Standard_D2s_v5}}\n"
    )
}

fn reads_and_writes(emulator: &EmulatorHandle) -> (u64, u64) {
    let counts = emulator.counts();
    // Resource Graph queries are POSTs that only read.
    let reads = counts.method("GET")
        + counts.method("HEAD")
        + counts.get("POST", "Microsoft.ResourceGraph/resources");
    (reads, counts.total - reads)
}

/// Prints to stderr which requests drew 429s and which budget said so.
fn report_throttled(emulator: &EmulatorHandle, phase: &str) {
    let mut by_kind = std::collections::BTreeMap::<String, u64>::new();
    for r in emulator.requests().iter().filter(|r| r.status == 429) {
        *by_kind
            .entry(format!("{} {}", r.method, r.resource_type))
            .or_default() += 1;
    }
    for (kind, n) in by_kind {
        eprintln!("{vms_phase}: {n} × 429 on {kind}", vms_phase = phase);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn poll<T>(
    timeout: Duration,
    every: Duration,
    what: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout {
                what: what(),
                timeout,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs one size.
pub async fn run_one(args: &BenchArgs, vms: usize) -> Result<BenchReport, BenchError> {
    let budgets_on = args.rate_limit_scale > 0.0;
    let emulator = Emulator::start(EmulatorConfig {
        latency: Duration::from_millis(args.latency_ms),
        rate_limit_scale: args.rate_limit_scale,
        compute_limit_scale: args.compute_limit_scale,
        ..EmulatorConfig::default()
    })
    .await?;
    let api = ApiServer::new();
    register_azlin_crds(&api, true)?;
    api.ensure_namespace("bench")?;
    let served = api
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .map_err(io("serving the in-memory API"))?;
    let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, served.kubeconfig()).map_err(io("writing the kubeconfig"))?;
    let operator = OperatorProcess::start(args, &kubeconfig, &emulator.base_url())?;
    let timeout = Duration::from_secs(args.timeout);

    let per_group = usize::try_from(args.vms_per_group).unwrap_or(usize::MAX);
    let groups = vms.div_ceil(per_group).max(1);
    let started = Instant::now();
    // One stream holds at most 1024 documents (the API's guard against YAML bombs).
    for first in (0..vms).step_by(1000) {
        let yaml: String = (first..vms.min(first + 1000))
            .map(|i| vm_yaml(i, per_group))
            .collect();
        api.apply_yaml(&yaml)?;
    }
    // Counting Ready objects reads every object: often for a few, less for thousands, so
    // the count does not compete with the operator for the CPU.
    let every = Duration::from_millis((vms as u64 / 10).clamp(5, 1000));
    poll(
        timeout,
        every,
        || format!("{} of {vms} AzlinVMs Ready", ready_count(&api)),
        || (ready_count(&api) == vms).then_some(()),
    )
    .await?;
    let seconds_to_ready = started.elapsed().as_secs_f64();
    let (reads, writes) = reads_and_writes(&emulator);
    let mut throttled = emulator.counts().throttled;
    report_throttled(&emulator, "until Ready");

    // At rest: two resync intervals of whatever the operator settled on.
    let resync = operator
        .metric("azlin_resync_interval_seconds")
        .await
        .unwrap_or(args.resync_interval as f64)
        .max(args.resync_interval as f64);
    emulator.reset_counts();
    let mark = api.mark();
    tokio::time::sleep(Duration::from_secs_f64(resync * 2.0)).await;
    let (reads_at_rest, arm_writes_at_rest) = reads_and_writes(&emulator);
    throttled += emulator.counts().throttled;
    let kube_writes_at_rest = api.writes_since(mark).len();

    // Restart: a new operator process re-observes everything from Azure.
    let first_rss = operator.peak_rss_mib();
    drop(operator);
    emulator.reset_counts();
    let operator = OperatorProcess::start(args, &kubeconfig, &emulator.base_url())?;
    let reconciled = r#"azlin_reconcile_duration_seconds_count{kind="AzlinVM"}"#;
    let deadline = Instant::now() + timeout;
    while operator.metric(reconciled).await.unwrap_or(0.0) < vms as f64 {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout {
                what: "the restarted operator reconciling every VM".into(),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (restart_reads, restart_writes) = reads_and_writes(&emulator);
    throttled += emulator.counts().throttled;
    eprintln!(
        "{vms} VMs: the restarted operator's requests: {:?}",
        emulator.counts().by_method_and_type
    );

    // Spec changes: stop one VM at a time and time its first ARM request.
    emulator.reset_counts();
    let mut latencies = Vec::new();
    let objects: kube::Api<crate::api::AzlinVM> = kube::Api::namespaced(api.client(), "bench");
    let stop = kube::api::Patch::Merge(serde_json::json!({"spec": {"powerState": "Stopped"}}));
    for k in 0..args.changes.min(vms) {
        let i = k * vms / args.changes.min(vms).max(1);
        let name = format!("bench-vm-{i:05}");
        let changed = chrono::Utc::now();
        objects
            .patch(
                &format!("vm-{i:05}"),
                &kube::api::PatchParams::default(),
                &stop,
            )
            .await
            .map_err(|e| BenchError::Operator(format!("patching vm-{i:05}: {e}")))?;
        let first = poll(
            Duration::from_secs(60),
            Duration::from_millis(5),
            || format!("an ARM request for {name}"),
            || {
                emulator
                    .requests()
                    .into_iter()
                    .find(|r| r.time >= changed && r.path.to_ascii_lowercase().contains(&name))
                    .map(|r| r.time)
            },
        )
        .await?;
        latencies.push((first - changed).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    throttled += emulator.counts().throttled;
    latencies.sort_by(f64::total_cmp);

    let budgets =
        budgets_on.then(|| Budgets::scaled(args.rate_limit_scale, args.compute_limit_scale));
    let report = BenchReport {
        vms,
        groups,
        lower_bound_seconds: lower_bound(
            vms,
            groups,
            Duration::from_millis(args.latency_ms),
            budgets,
        )
        .as_secs_f64(),
        seconds_to_ready,
        reads_per_vm: reads as f64 / vms as f64,
        writes_per_vm: writes as f64 / vms as f64,
        reads_per_vm_at_rest: reads_at_rest as f64 / 2.0 / vms as f64,
        arm_writes_at_rest,
        kube_writes_at_rest,
        restart_reads,
        restart_writes,
        resync_seconds: resync,
        throttled,
        change_p50_ms: percentile(&latencies, 50.0),
        change_p99_ms: percentile(&latencies, 99.0),
        operator_rss_mib: first_rss.max(operator.peak_rss_mib()),
    };
    eprintln!(
        "{vms} VMs: operator peak RSS {first_rss:.0} MiB (first process), {:.0} MiB (restarted)",
        operator.peak_rss_mib()
    );
    drop(operator);
    served.stop();
    let _ = emulator.shutdown().await;
    Ok(report)
}

/// Runs every size in turn, printing each row as it completes and the summary line of the
/// largest size last.
pub async fn run(args: &BenchArgs) -> Result<Vec<BenchReport>, BenchError> {
    let mut reports = Vec::new();
    println!("{}", BenchReport::MARKDOWN_HEADER);
    for &vms in &args.vms {
        let report = run_one(args, vms).await?;
        println!("{}", report.markdown_row());
        reports.push(report);
    }
    if let Some(largest) = reports.iter().max_by_key(|r| r.vms) {
        println!("{}", largest.summary_line());
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_bound_without_budgets_is_the_provisioning_chain() {
        let latency = Duration::from_millis(200);
        assert_eq!(lower_bound(1000, 1, latency, None), Duration::from_secs(1));
    }

    #[test]
    fn lower_bound_with_azures_budgets() {
        let latency = Duration::from_millis(200);
        let azure = Some(Budgets::scaled(1.0, 1.0));
        // 100 VMs: 305 writes, 105 beyond the burst (10.5 s); 100 VM creates fit one window.
        assert_eq!(
            lower_bound(100, 1, latency, azure),
            Duration::from_secs_f64(10.5)
        );
        // 1000 VMs: 3005 writes → 280.5 s; 1000 VM creates → 4 more 3-minute windows.
        assert_eq!(
            lower_bound(1000, 1, latency, azure),
            Duration::from_secs(720)
        );
        // 10,000 in 10 groups at 10× budgets: 30,050 writes → 280.5 s; 2400 per 3 min → 4
        // more windows (720 s); 12,000 per 30 min fits one.
        let ten = Some(Budgets::scaled(10.0, 1.0));
        assert_eq!(
            lower_bound(10_000, 10, latency, ten),
            Duration::from_secs(720)
        );
    }

    #[test]
    fn percentiles_take_the_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn summary_line_has_the_documented_shape() {
        let r = BenchReport {
            vms: 1000,
            groups: 1,
            lower_bound_seconds: 720.0,
            seconds_to_ready: 792.0,
            reads_per_vm: 3.0,
            writes_per_vm: 2.0,
            reads_per_vm_at_rest: 0.0125,
            arm_writes_at_rest: 0,
            kube_writes_at_rest: 0,
            restart_reads: 42,
            restart_writes: 0,
            resync_seconds: 30.0,
            throttled: 0,
            change_p50_ms: 10.0,
            change_p99_ms: 40.0,
            operator_rss_mib: 60.4,
        };
        assert_eq!(
            r.summary_line(),
            "bound-ratio=1.10 reads-per-vm-at-rest=0.0125 throttled=0 rss-mib=60"
        );
    }
}
