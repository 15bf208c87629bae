//! Command-line flags of `azlin-operator emulator`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::EmulatorConfig;

fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// Flags of the ARM emulator.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", env = "AZLIN_EMULATOR_LISTEN")]
    pub listen: SocketAddr,
    /// Provisioning time of asynchronous operations, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u64,
    /// Fraction (0..1) of ARM requests answered 500 InternalServerError.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub fault_rate: f64,
    /// Fraction (0..1) of ARM requests answered 429 TooManyRequests with Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub throttle_rate: f64,
    /// Fraction (0..1) of ARM requests whose connection drops before the answer is complete (half of them after the request took effect).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub reset_rate: f64,
    /// Fraction (0..1) of ARM requests answered only after --slow-answer-ms (the request takes effect at once).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub slow_rate: f64,
    /// How late slow answers come, in milliseconds (default: past the ARM client's 60 s timeout).
    #[arg(long, default_value_t = 65_000)]
    pub slow_answer_ms: u64,
    /// Fraction (0..1) of writes (PUT, PATCH, POST, DELETE) accepted whose long-running operation then ends Failed (InternalExecutionError).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub failed_operation_rate: f64,
    /// Address reported as every VM's private IP and public IP (e.g. a local sshd).
    #[arg(long)]
    pub vm_address: Option<IpAddr>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// JSON file the state is loaded from at start and saved to on change and shutdown.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Subscription listed by `GET /subscriptions` (for `az login`); any subscription id is served.
    #[arg(long)]
    pub subscription_id: Option<String>,
    /// vCPU quota per region and subscription.
    #[arg(long, default_value_t = 100_000)]
    pub core_quota: u32,
    /// Items per page of list answers (larger lists get a nextLink).
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Multiplier of all request budgets: ARM's token buckets per subscription and principal (reads 250/25 per s, writes and deletes 200/10 per s, 15x per subscription) and Compute's windows; 0 disables them.
    #[arg(long, default_value_t = 1.0)]
    pub rate_limit_scale: f64,
    /// Extra multiplier of Compute's 3- and 30-minute windows (PutVM 240/1200, CreateUpdateDisks 1000/8000, HighCostGet 160/800, LowCostGet 4000/32000); 0 disables only them.
    #[arg(long, default_value_t = 1.0)]
    pub compute_limit_scale: f64,
}

impl From<EmulatorArgs> for EmulatorConfig {
    fn from(a: EmulatorArgs) -> Self {
        Self {
            listen: a.listen,
            latency: Duration::from_millis(a.latency_ms),
            fault_rate: a.fault_rate,
            throttle_rate: a.throttle_rate,
            reset_rate: a.reset_rate,
            slow_rate: a.slow_rate,
            slow_answer: Duration::from_millis(a.slow_answer_ms),
            failed_operation_rate: a.failed_operation_rate,
            vm_address: a.vm_address,
            tls: a.tls_cert.zip(a.tls_key),
            state_file: a.state_file,
            core_quota: a.core_quota,
            page_size: a.page_size,
            rate_limit_scale: a.rate_limit_scale,
            compute_limit_scale: a.compute_limit_scale,
            subscription_id: a.subscription_id,
        }
    }
}
