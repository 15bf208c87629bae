//! Graceful shutdown: SIGTERM (what Kubernetes sends) and Ctrl-C cancel one
//! [`CancellationToken`] that every long-running part of the process watches.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGTERM (Kubernetes pod termination).
    Terminate,
    /// SIGINT / Ctrl-C.
    Interrupt,
}

impl std::fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        })
    }
}

/// Installs the signal handlers now and returns a future resolving at the first
/// SIGTERM or Ctrl-C. Installing first means no signal is lost between this call and
/// the first poll.
pub fn signal() -> std::io::Result<impl Future<Output = ShutdownSignal> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        let terminate = async move {
            term.recv().await;
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = terminate => ShutdownSignal::Terminate,
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => ShutdownSignal::Interrupt,
                Err(error) => {
                    // Ctrl-C cannot be watched (no terminal support): rely on SIGTERM alone.
                    tracing::warn!(%error, "cannot listen for Ctrl-C");
                    std::future::pending::<ShutdownSignal>().await
                }
            },
        }
    })
}

/// Spawns a task that cancels `token` at the first SIGTERM or Ctrl-C. The task ends
/// early when `token` is cancelled by someone else. Handlers are installed before this
/// returns.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<JoinHandle<()>> {
    let signal = signal()?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            received = signal => {
                tracing::info!(signal = %received, "shutdown requested, stopping gracefully");
                token.cancel();
            }
            () = token.cancelled() => {}
        }
    }))
}
