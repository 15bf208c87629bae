//! `azlin-operator local -f DIR`: the embedded default. Validates the manifests in `DIR`
//! with the API server's schema and CEL rules, applies them to the in-memory Kubernetes
//! API, runs the real controllers against the in-process ARM emulator and shows a live
//! table until every object is Ready, Stalled or known never to be reconciled. Exit status
//! 0 only when every object is Ready.

pub mod apply;
pub mod live;
pub mod manifests;
pub mod table;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::validation::{Admission, SchemaError};
use crate::embedded::{EmbeddedEnv, EmbeddedError, EmbeddedOptions};
use crate::reconcile::ControllerSettings;
use crate::runtime::telemetry::{self, LogFormat};
use live::Live;
use manifests::{Limits, Manifest};
use table::{Row, RowState};

/// Arguments of `local`.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Manifest directory (its `*.yaml` files, not recursive) or file; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub filename: Vec<PathBuf>,
    /// Give up after this many seconds; the whole run, shutdown included, ends within a few
    /// seconds after it.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Provisioning time of every emulated Azure operation, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub latency_ms: u64,
    /// Objects each controller reconciles at the same time (default: from the number of
    /// objects, between 4 and 64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
    /// Azure's request limits in the emulator (ARM's token buckets and Compute's windows):
    /// 0 turns them off, 1 applies the real budgets of one subscription.
    #[arg(long, value_name = "SCALE", default_value_t = 0.0)]
    pub rate_limit_scale: f64,
    /// Most YAML documents read from one file.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_documents)]
    pub max_documents: usize,
    /// Largest manifest file read, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().max_file_bytes >> 20)]
    pub max_file_mib: u64,
    /// Also serve the in-memory Kubernetes API over HTTP on this loopback address and
    /// write a kubeconfig (removed at exit) to the temporary directory, for `kubectl`.
    #[arg(long, value_name = "ADDR")]
    pub serve_api: Option<SocketAddr>,
    /// Keep running (and the table updating) after everything settled, until Ctrl-C.
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
    /// Serving the API or writing the kubeconfig failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Objects each controller reconciles at once for `objects` objects: one per 8 objects,
/// at least the operator's default of 4 and at most 64.
pub fn auto_concurrency(objects: usize) -> u16 {
    u16::try_from((objects / 8).clamp(4, 64)).unwrap_or(64)
}

/// Runs `local` and returns the process exit code.
pub async fn run(args: LocalArgs) -> Result<ExitCode, LocalError> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    telemetry::init_stderr(&args.log_level, LogFormat::Text)?;
    let limits = Limits {
        max_file_bytes: args.max_file_mib.saturating_mul(1024 * 1024),
        max_documents: args.max_documents,
    };
    let mut problems = Vec::new();
    let mut loaded = manifests::load(&args.filename, &limits).unwrap_or_else(|e| {
        problems.extend(e);
        Vec::new()
    });
    if problems.is_empty() {
        let admission = Admission::for_azlin_kinds()?;
        if let Err(e) = manifests::validate(&admission, &mut loaded) {
            problems.extend(e);
        }
        problems.extend(manifests::duplicates(&loaded));
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
    let watched: Vec<&Manifest> = loaded.iter().filter(|m| !m.is_core()).collect();
    if watched.is_empty() {
        println!("no azlin objects found in the given paths");
        return Ok(ExitCode::FAILURE);
    }

    let concurrency = args
        .concurrency
        .unwrap_or_else(|| auto_concurrency(watched.len()));
    let mut options = EmbeddedOptions::default();
    options.emulator.latency = Duration::from_millis(args.latency_ms);
    options.emulator.rate_limit_scale = args.rate_limit_scale;
    options.settings.concurrency = concurrency;
    // Periodic drift checks of Ready objects would compete with converging the rest.
    options.settings.resync_interval = ControllerSettings::default().resync_interval;
    let env = EmbeddedEnv::start(options).await?;
    let mut live = Live::new(std::io::stdout().is_terminal(), started);
    let mut kubeconfig = None;
    let _served = match args.serve_api {
        Some(addr) => {
            let served = env.api().serve(addr).await?;
            let mut file = tempfile::Builder::new()
                .prefix(&format!("azlin-local-{}-", served.addr().port()))
                .suffix(".kubeconfig")
                .tempfile()?;
            std::io::Write::write_all(&mut file, served.kubeconfig().as_bytes())?;
            live.say(format!(
                "in-memory Kubernetes API on {}: KUBECONFIG={} kubectl get azlin",
                served.url(),
                file.path().display()
            ));
            kubeconfig = Some(file);
            Some(served)
        }
        None => None,
    };
    let code = match apply::apply(&env, &loaded) {
        Ok(lines) => {
            for l in lines {
                live.say(l);
            }
            live.say(format!(
                "applied {} object(s); controllers ({}, {concurrency} at a time each) running against the Azure emulator at {}",
                loaded.len(),
                crate::controllers::KINDS.join(", "),
                env.emulator().base_url()
            ));
            watch(&env, &watched, &mut live, &args, deadline, concurrency).await
        }
        Err(e) => {
            println!("rejected: {e}");
            ExitCode::FAILURE
        }
    };
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    if !env.shutdown_within(grace).await {
        eprintln!(
            "warning: the controllers did not stop within {}s and were aborted",
            grace.as_secs()
        );
    }
    drop(kubeconfig);
    Ok(code)
}

/// Shows the table until everything settled (or the deadline or a signal), prints the
/// verdict, keeps updating with `--keep-running`, and returns the exit code.
async fn watch(
    env: &EmbeddedEnv,
    watched: &[&Manifest],
    live: &mut Live,
    args: &LocalArgs,
    deadline: Instant,
    concurrency: u16,
) -> ExitCode {
    let signal = stop_signal();
    tokio::pin!(signal);
    // Reading thousands of objects four times a second would slow the controllers down:
    // a millisecond per object, between a quarter of a second and three seconds.
    let poll = Duration::from_millis((watched.len() as u64).clamp(250, 3000));
    let mut interrupted = false;
    loop {
        live.update(snapshot(env, watched));
        if table::settled(live.rows()) || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = &mut signal => {
                interrupted = true;
                break;
            }
        }
    }
    live.finish();
    for line in verdict(live.rows(), args.timeout, concurrency, interrupted) {
        live.say(line);
    }
    if args.keep_running && !interrupted {
        live.say("running until Ctrl-C; the table keeps updating");
        loop {
            tokio::select! {
                () = tokio::time::sleep(poll) => {
                    live.update(snapshot(env, watched));
                }
                () = &mut signal => break,
            }
        }
        live.finish();
        let end = if table::all_ready(live.rows()) {
            "all objects are Ready".to_string()
        } else {
            format!("not all objects are Ready: {}", table::summary(live.rows()))
        };
        live.say(end);
    }
    if table::all_ready(live.rows()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The closing lines: every object that is not Ready with its reason, and what to do.
fn verdict(rows: &[Row], timeout: u64, concurrency: u16, interrupted: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for r in rows {
        let line = match r.state {
            RowState::Ready => continue,
            RowState::Stalled => format!(
                "Stalled: {} {}: {} ({})",
                r.kind, r.name, r.message, r.reason
            ),
            RowState::NoController => format!(
                "Not reconciled: {} {}: {}: {}",
                r.kind, r.name, r.reason, r.message
            ),
            RowState::Progressing if interrupted => format!(
                "Not ready when interrupted: {} {}: {}: {}",
                r.kind, r.name, r.reason, r.message
            ),
            RowState::Progressing => format!(
                "Not ready after {timeout}s: {} {}: {}: {}",
                r.kind, r.name, r.reason, r.message
            ),
        };
        lines.push(line);
    }
    let waiting = rows
        .iter()
        .filter(|r| r.state == RowState::Progressing)
        .count();
    if waiting > 0 && !interrupted {
        lines.push(format!(
            "{waiting} object(s) still progressing after {timeout}s; each controller reconciles {concurrency} object(s) at a time: raise --timeout, or --concurrency for many objects"
        ));
    }
    if table::all_ready(rows) {
        lines.push("all objects are Ready".into());
    } else {
        lines.push(format!(
            "not all objects are Ready: {}",
            table::summary(rows)
        ));
    }
    lines
}

/// Current rows of the watched objects.
fn snapshot(env: &EmbeddedEnv, watched: &[&Manifest]) -> Vec<Row> {
    watched
        .iter()
        .map(|m| {
            let kind = m.kind();
            let controlled = crate::controllers::KINDS.contains(&kind);
            match env
                .api()
                .get(manifests::AZLIN_API_VERSION, kind, m.namespace(), m.name())
            {
                Some(current) => table::row(&current, controlled),
                None => table::gone(&m.object),
            }
        })
        .collect()
}
