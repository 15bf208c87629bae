//! Command-line interface: one binary, one subcommand per way of running the product.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api;
use crate::bench::BenchArgs;
use crate::local::LocalArgs;
use crate::runtime::settings::Settings;
use crate::runtime::telemetry::{self, LogFormat};
use azlin_arm_emulator::EmulatorArgs;

/// Declare Azure development VM fleets as Kubernetes objects.
#[derive(Debug, Parser)]
#[command(name = "azlin-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as a multi-document YAML stream.
    Crds(CrdsArgs),
    /// Run the operator: every controller against the current kubeconfig or in-cluster
    /// config, with leader election, the admin server and graceful shutdown.
    Run(Box<Settings>),
    /// Run the embedded default: the real controllers on an in-memory Kubernetes API and
    /// the in-process Azure emulator, applying the manifests of a directory (no cluster,
    /// no Azure subscription). Exits 0 when every object is Ready.
    Local(LocalArgs),
    /// Measure reconcile speed and memory on the embedded environment (figures of
    /// docs/PERFORMANCE.md).
    Bench(BenchArgs),
    /// Run the Azure Resource Manager emulator on loopback (in-memory ARM for trying
    /// manifests and for tests, no Azure subscription needed).
    Emulator(EmulatorArgs),
    /// Print the version.
    Version,
}

/// Arguments of `crds`.
#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Write one `<plural>.azlin.io.yaml` file per CRD into this directory instead of
    /// printing them (`cargo run -- crds --output-dir crds` regenerates `crds/`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["apply", "markdown"])]
    pub output_dir: Option<PathBuf>,
    /// Server-side apply the CRDs to the cluster of the current kubeconfig or in-cluster
    /// config and wait until they are Established (the Helm chart's CRD-upgrade hook).
    #[arg(long)]
    pub apply: bool,
    /// Print the Markdown API reference of the kinds (embedded in the README).
    #[arg(long, conflicts_with = "apply")]
    pub markdown: bool,
    /// How long `--apply` waits for the CRDs to become Established.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait_seconds: u64,
}

/// Errors that end a subcommand.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Rendering YAML failed.
    #[error("cannot render the CRDs as YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The operator failed.
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorError),
    /// Local mode could not run.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// The benchmark failed.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// The emulator failed.
    #[error("emulator: {0}")]
    Emulator(#[from] azlin_arm_emulator::EmulatorError),
    /// Connecting to Kubernetes failed.
    #[error("cannot connect to Kubernetes (kubeconfig or in-cluster config): {0}")]
    Kube(#[from] kube::Error),
    /// Applying the CRDs failed.
    #[error(transparent)]
    CrdInstall(#[from] crate::crd_install::CrdInstallError),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Local(args) => {
            return match block_on_code(crate::local::run(args)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Bench(args) => block_on(async {
            telemetry::init_stderr("warn", LogFormat::Text)?;
            crate::bench::run(&args).await?;
            Ok(())
        }),
        Command::Crds(args) if args.apply => block_on(async {
            telemetry::init("info", LogFormat::Auto)?;
            let client = kube::Client::try_default().await?;
            let wait = std::time::Duration::from_secs(args.wait_seconds);
            crate::crd_install::apply_crds(client, Some(wait)).await?;
            Ok(())
        }),
        Command::Crds(args) => crds(&args),
        Command::Run(settings) => block_on(async {
            crate::operator::run(*settings).await?;
            Ok(())
        }),
        Command::Emulator(args) => block_on(async {
            telemetry::init("info", LogFormat::Auto)?;
            azlin_arm_emulator::run(args).await?;
            Ok(())
        }),
        Command::Version => {
            println!("azlin-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `fut` on a multi-threaded tokio runtime.
fn block_on<F: std::future::Future<Output = Result<(), CliError>>>(fut: F) -> Result<(), CliError> {
    runtime()?.block_on(fut)
}

/// Runs `fut` (which yields an exit code) on a multi-threaded tokio runtime, then gives
/// tasks still running at most a second to end, so the exit is never held up.
fn block_on_code<F, E>(fut: F) -> Result<ExitCode, CliError>
where
    F: std::future::Future<Output = Result<ExitCode, E>>,
    CliError: From<E>,
{
    let rt = runtime()?;
    let code = rt.block_on(fut);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(code?)
}

/// A multi-threaded tokio runtime with I/O and timers.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

fn crds(args: &CrdsArgs) -> Result<(), CliError> {
    if args.markdown {
        print!("{}", api::reference::api_reference_markdown());
        return Ok(());
    }
    match &args.output_dir {
        None => {
            print!("{}", api::crds_yaml()?);
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
                path: dir.clone(),
                source,
            })?;
            for crd in api::crds() {
                let path = dir.join(api::crd_file_name(&crd));
                std::fs::write(&path, api::crd_yaml(&crd)?)
                    .map_err(|source| CliError::Write { path, source })?;
            }
            Ok(())
        }
    }
}
