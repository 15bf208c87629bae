//! Settings of `azlin-operator run`: one clap struct, every flag also readable from an
//! `AZLIN_*` environment variable, and a Markdown rendering of the table for the README.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, CommandFactory, Parser};
use url::Url;

use crate::runtime::leader::{DEFAULT_LEASE_DURATION_SECS, DEFAULT_LEASE_GRACE_SECS};
use crate::runtime::telemetry::LogFormat;

/// Default ARM endpoint.
pub const DEFAULT_AZURE_ENDPOINT: &str = "https://management.azure.com";
/// Default address of the admin server (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";
/// Default name of the leader-election Lease.
pub const DEFAULT_LEASE_NAME: &str = "azlin-operator";

/// Operator settings. Flatten into the `run` subcommand with `#[command(flatten)]`;
/// every flag can also be set by the environment variable shown in `--help`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "azlin-operator-run",
    about = "Run the azlin operator controllers"
)]
pub struct Settings {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "AZLIN_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Azure Resource Manager endpoint.
    #[arg(long, env = "AZLIN_AZURE_ENDPOINT", value_name = "URL", default_value = DEFAULT_AZURE_ENDPOINT)]
    pub azure_endpoint: Url,

    /// Azure subscription id used when an object does not name one.
    #[arg(long, env = "AZLIN_SUBSCRIPTION_ID", value_name = "UUID")]
    pub subscription_id: Option<String>,

    /// Extra PEM CA bundle trusted for the ARM endpoint (e.g. an emulator with its own certificate).
    #[arg(long, env = "AZLIN_AZURE_CA_FILE", value_name = "PATH")]
    pub azure_ca_file: Option<PathBuf>,

    /// SSH port the operator connects to on every VM.
    #[arg(
        long,
        env = "AZLIN_SSH_PORT",
        value_name = "PORT",
        default_value_t = 22
    )]
    pub ssh_port: u16,

    /// Start the ARM emulator in-process and point the operator at it.
    #[arg(long, env = "AZLIN_EMULATOR", action = ArgAction::SetTrue)]
    pub emulator: bool,

    /// ARM emulator already running at this URL (e.g. `azlin-operator emulator`): like `--emulator`, but the emulator outlives the operator.
    #[arg(
        long,
        env = "AZLIN_EMULATOR_URL",
        value_name = "URL",
        conflicts_with = "emulator"
    )]
    pub emulator_url: Option<Url>,

    /// With an emulator only: run each VM's guest steps (NFS mounts) in a sandbox directory under this path, with `mount` and package installs recorded instead of executed (as `local` does), instead of over SSH.
    #[arg(long, env = "AZLIN_GUEST_SANDBOX", value_name = "DIR")]
    pub guest_sandbox: Option<PathBuf>,

    /// Timeout of one ARM request in seconds (it is then retried); default 60, 20 with an emulator.
    #[arg(
        long,
        env = "AZLIN_ARM_REQUEST_TIMEOUT",
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub arm_request_timeout: Option<u64>,

    /// Listen address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "AZLIN_ADMIN_ADDR", value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Elect a leader through a Lease so that only one replica reconciles (`true` or `false`).
    #[arg(
        long,
        env = "AZLIN_LEADER_ELECTION",
        value_name = "BOOL",
        default_value_t = true,
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "AZLIN_LEASE_NAME", value_name = "NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (default: the client's namespace, i.e. the pod's own namespace in a cluster).
    #[arg(long, env = "AZLIN_LEASE_NAMESPACE", value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Lease duration in seconds: how long a silent leader keeps the lease.
    #[arg(
        long,
        env = "AZLIN_LEASE_DURATION",
        value_name = "SECONDS",
        default_value_t = DEFAULT_LEASE_DURATION_SECS,
        value_parser = clap::value_parser!(u64).range(2..),
    )]
    pub lease_duration: u64,

    /// Seconds before expiry at which the leader renews the lease (must be less than the duration).
    #[arg(
        long,
        env = "AZLIN_LEASE_GRACE",
        value_name = "SECONDS",
        default_value_t = DEFAULT_LEASE_GRACE_SECS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub lease_grace: u64,

    /// Log level or filter directives, used when RUST_LOG is not set (e.g. `info`, `azlin_operator=debug`).
    #[arg(
        long,
        env = "AZLIN_LOG_LEVEL",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub log_level: String,

    /// Log format: JSON when not on a terminal and text on a terminal (`auto`), or forced.
    #[arg(long, env = "AZLIN_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Objects reconciled concurrently by each controller.
    #[arg(
        long,
        env = "AZLIN_CONCURRENCY",
        value_name = "N",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..),
    )]
    pub concurrency: u16,

    /// SSH sessions open at the same time across all VMs.
    #[arg(
        long,
        env = "AZLIN_SSH_CONCURRENCY",
        value_name = "N",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..),
    )]
    pub ssh_concurrency: u16,

    /// Seconds between re-checks of objects at rest (drift detection), lengthened automatically when one round would spend more than half of Azure's read budget; default 300, 30 with an emulator.
    #[arg(
        long,
        env = "AZLIN_RESYNC_INTERVAL",
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub resync_interval: Option<u64>,

    /// Milliseconds between looks at an Azure operation still in progress; default 10000, 100 with an emulator.
    #[arg(
        long,
        env = "AZLIN_PROGRESS_INTERVAL_MS",
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(10..),
    )]
    pub progress_interval_ms: Option<u64>,
}

impl Default for Settings {
    /// The documented defaults, independent of the environment (same values as parsing
    /// no flags with no `AZLIN_*` variables set; a test keeps them equal).
    fn default() -> Self {
        Settings {
            namespace: None,
            // Invariant: the constant is a valid absolute URL (checked by the tests).
            azure_endpoint: Url::parse(DEFAULT_AZURE_ENDPOINT)
                .unwrap_or_else(|e| unreachable!("DEFAULT_AZURE_ENDPOINT is invalid: {e}")),
            subscription_id: None,
            azure_ca_file: None,
            ssh_port: 22,
            emulator: false,
            emulator_url: None,
            guest_sandbox: None,
            arm_request_timeout: None,
            // Invariant: the constant is a valid socket address (checked by the tests).
            admin_addr: DEFAULT_ADMIN_ADDR
                .parse()
                .unwrap_or_else(|e| unreachable!("DEFAULT_ADMIN_ADDR is invalid: {e}")),
            leader_election: true,
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            lease_namespace: None,
            lease_duration: DEFAULT_LEASE_DURATION_SECS,
            lease_grace: DEFAULT_LEASE_GRACE_SECS,
            log_level: "info".to_owned(),
            log_format: LogFormat::Auto,
            concurrency: 4,
            ssh_concurrency: 8,
            resync_interval: None,
            progress_interval_ms: None,
        }
    }
}

/// Renders every setting as a Markdown table (flag, environment variable, default,
/// description), straight from clap's metadata so the README cannot drift from the code.
pub fn settings_markdown_table() -> String {
    let command = Settings::command();
    let mut out = String::from(
        "| Flag | Environment variable | Default | Description |\n|---|---|---|---|\n",
    );
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match (defaults.is_empty(), arg.get_action()) {
            (false, _) => format!("`{}`", defaults.join(",")),
            (true, ArgAction::SetTrue) => "`false`".to_owned(),
            (true, _) => String::new(),
        };
        // clap drops the doc comment's final period; put it back.
        let mut description = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if !description.is_empty() && !description.ends_with('.') {
            description.push('.');
        }
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|p| !p.is_hide_set())
            .map(|p| format!("`{}`", p.get_name()))
            .collect();
        let is_bool = choices.iter().all(|c| c == "`true`" || c == "`false`");
        if !choices.is_empty() && !is_bool {
            let _ = write!(description, " One of {}.", choices.join(", "));
        }
        let _ = writeln!(
            out,
            "| `--{long}` | {env} | {default} | {} |",
            description.replace('|', "\\|").replace('\n', " ")
        );
    }
    out
}
