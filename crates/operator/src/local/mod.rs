//! `azlin-operator local -f DIR`: the embedded default. Validates the manifests in `DIR`
//! with the API server's schema and CEL rules, applies them to the in-memory Kubernetes
//! API, runs the real controllers against the in-process ARM emulator and shows a live
//! table until every object is Ready or Stalled. Exit status 0 when all are Ready.

pub mod manifests;
pub mod table;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::validation::{Admission, SchemaError};
use crate::embedded::{EmbeddedEnv, EmbeddedError, EmbeddedOptions};
use crate::runtime::telemetry::{self, LogFormat};
use azlin_kubemem::KubeMemError;
use manifests::Manifest;
use table::{Row, RowState};

/// Arguments of `local`.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Manifest directory (its `*.yaml` files, not recursive) or file; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub filename: Vec<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Provisioning time of every emulated Azure operation, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub latency_ms: u64,
    /// Also serve the in-memory Kubernetes API over HTTP on this loopback address and
    /// write a kubeconfig to the temporary directory, so `kubectl` can inspect the objects.
    #[arg(long, value_name = "ADDR")]
    pub serve_api: Option<SocketAddr>,
    /// Keep running after everything settled, until Ctrl-C (e.g. to look around with kubectl).
    #[arg(long)]
    pub keep_running: bool,
    /// Log level of the controllers (logs go to stderr; the table to stdout).
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    pub log_level: String,
}

/// Why `local` could not run (invalid manifests are not errors: they exit 1).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// The CRD schemas did not compile.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The embedded environment did not start.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The in-memory API refused a manifest.
    #[error("applying the manifests failed: {0}")]
    Apply(#[from] KubeMemError),
    /// Rendering YAML failed.
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    /// Serving the API or writing the kubeconfig failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs `local` and returns the process exit code.
pub async fn run(args: LocalArgs) -> Result<ExitCode, LocalError> {
    telemetry::init_stderr(&args.log_level, LogFormat::Text)?;
    let mut loaded: Vec<Manifest> = Vec::new();
    let mut problems = Vec::new();
    for path in &args.filename {
        match manifests::load(path) {
            Ok(m) => loaded.extend(m),
            Err(e) => problems.extend(e),
        }
    }
    if problems.is_empty() {
        let admission = Admission::for_azlin_kinds()?;
        if let Err(e) = manifests::validate(&admission, &mut loaded) {
            problems.extend(e);
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            println!("rejected: {p}");
        }
        println!(
            "{} problem(s) in the manifests; nothing was applied",
            problems.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    if loaded.is_empty() {
        println!("no azlin objects found in the given paths");
        return Ok(ExitCode::FAILURE);
    }

    let mut options = EmbeddedOptions::default();
    options.emulator.latency = Duration::from_millis(args.latency_ms);
    let env = EmbeddedEnv::start(options).await?;
    let _served = match args.serve_api {
        Some(addr) => {
            let served = env.api().serve(addr).await?;
            let path = std::env::temp_dir()
                .join(format!("azlin-local-{}.kubeconfig", served.addr().port()));
            std::fs::write(&path, served.kubeconfig())?;
            println!(
                "in-memory Kubernetes API on {}: KUBECONFIG={} kubectl get azlin",
                served.url(),
                path.display()
            );
            Some(served)
        }
        None => None,
    };
    env.apply_yaml(&manifests::to_yaml(&loaded)?)?;
    println!(
        "applied {} object(s); controllers running against the Azure emulator at {}",
        loaded.len(),
        env.emulator().base_url()
    );

    let rows = watch_until_settled(&env, &loaded, Duration::from_secs(args.timeout)).await;
    let ready = table::all_ready(&rows);
    for r in rows.iter().filter(|r| r.state == RowState::Stalled) {
        println!(
            "Stalled: {} {}: {} ({})",
            r.kind, r.name, r.message, r.reason
        );
    }
    for r in rows.iter().filter(|r| r.state == RowState::Progressing) {
        println!(
            "Not ready after {}s: {} {}: {}",
            args.timeout, r.kind, r.name, r.message
        );
    }
    if ready {
        println!("all objects are Ready");
    }
    if args.keep_running {
        println!("running until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    env.shutdown().await;
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Current rows of every applied object.
fn snapshot(env: &EmbeddedEnv, applied: &[Manifest]) -> Vec<Row> {
    applied
        .iter()
        .map(|m| {
            let kind = m.object["kind"].as_str().unwrap_or_default();
            let ns = m.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            let name = m.object["metadata"]["name"].as_str().unwrap_or_default();
            let controlled = crate::controllers::KINDS.contains(&kind);
            let current = env
                .api()
                .get("azlin.io/v1alpha1", kind, Some(ns), name)
                .unwrap_or_else(|| m.object.clone());
            table::row(&current, controlled)
        })
        .collect()
}

/// Prints the table (redrawn in place on a terminal, on every change otherwise) until
/// every object is Ready or Stalled, the timeout passes or Ctrl-C is pressed.
async fn watch_until_settled(
    env: &EmbeddedEnv,
    applied: &[Manifest],
    timeout: Duration,
) -> Vec<Row> {
    let deadline = Instant::now() + timeout;
    let terminal = std::io::stdout().is_terminal();
    let mut last = String::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let rows = snapshot(env, applied);
        let text = table::render(&rows);
        if text != last {
            let mut out = std::io::stdout().lock();
            if terminal {
                let _ = write!(out, "\x1b[2J\x1b[H");
            } else {
                let _ = writeln!(out);
            }
            let _ = write!(out, "{text}");
            let _ = out.flush();
            last = text;
        }
        if table::settled(&rows) || Instant::now() >= deadline {
            return rows;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut ctrl_c => return rows,
        }
    }
}
