//! Structured logging with `tracing-subscriber`: JSON lines (with the current span and
//! span list, so object and trace context travel with every event) when not on a
//! terminal, human-readable text on a terminal.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal (in a cluster), text when it is.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// Resolves `Auto` against whether output goes to a terminal; never returns `Auto`.
    pub fn resolve(self, is_terminal: bool) -> LogFormat {
        match self {
            LogFormat::Auto if is_terminal => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// Errors from [`init`].
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` or the log-level setting is not a valid filter.
    #[error("invalid log filter {filter:?}: {source}")]
    InvalidFilter {
        /// The rejected filter text.
        filter: String,
        /// Parser error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was installed before (by an earlier `init` or someone else).
    #[error("logging is already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Builds the log filter: `RUST_LOG` when set and non-empty, otherwise `level`
/// (a level such as `info` or full directives such as `azlin_operator=debug,kube=info`).
pub fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let text = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => level.to_owned(),
    };
    EnvFilter::try_new(&text).map_err(|source| TelemetryError::InvalidFilter {
        filter: text,
        source,
    })
}

/// Installs the global tracing subscriber writing to stdout.
///
/// Returns [`TelemetryError::AlreadyInitialised`] instead of panicking when a global
/// subscriber already exists.
pub fn init(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    install(level, format, false)
}

/// Like [`init`], but writes to stderr (for commands whose stdout is their output,
/// such as `local`'s table).
pub fn init_stderr(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    install(level, format, true)
}

fn install(level: &str, format: LogFormat, stderr: bool) -> Result<(), TelemetryError> {
    let filter = filter(level)?;
    let is_terminal = if stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let result = match format.resolve(is_terminal) {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
        _ => builder.with_ansi(is_terminal).try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}
