//! Command-line interface: one binary, one subcommand per way of running the product.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api;
use crate::emulator::{self, EmulatorArgs};
use crate::runtime::telemetry::{self, LogFormat};

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
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
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
    /// The emulator failed.
    #[error("emulator: {0}")]
    Emulator(#[from] emulator::EmulatorError),
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
        Command::Crds(args) => crds(&args),
        Command::Emulator(args) => block_on(async {
            telemetry::init("info", LogFormat::Auto)?;
            emulator::run(args).await?;
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
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(fut)
}

fn crds(args: &CrdsArgs) -> Result<(), CliError> {
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
