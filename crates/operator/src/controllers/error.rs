//! The controllers' error type, its classification (terminal or transient) and the shared
//! `error_policy` with per-object exponential backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::controller::Action;

use crate::ssh::{MountError, SshError};
use azlin_arm::ArmError;

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// Azure Resource Manager answered with an error.
    #[error("{0}")]
    Arm(#[from] ArmError),
    /// Converging the NFS mounts failed before the script could report.
    #[error("mounts: {0}")]
    Mount(#[from] MountError),
    /// SSH to the VM failed.
    #[error("SSH: {0}")]
    Ssh(#[from] SshError),
    /// The spec cannot be acted on (needs a change by the user).
    #[error("invalid {field}: {message}")]
    InvalidSpec {
        /// The offending field, e.g. `spec.sshKeySecretRef`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Something this object depends on is not there or not ready yet (retried).
    #[error("waiting for {what}")]
    DependencyNotReady {
        /// What is awaited.
        what: String,
    },
    /// An Azure resource with our name exists but is not managed by the operator.
    #[error("{message}")]
    NotManaged {
        /// Which resource and what to do.
        message: String,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Serialising a patch or reading an object failed.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The operator is misconfigured (e.g. no subscription id).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// A CamelCase reason for conditions, metrics and events. ARM errors use ARM's own code.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "KubernetesApiError".into(),
            Error::Arm(e) => e
                .code()
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("Arm{}", e.category())),
            Error::Mount(MountError::Plan(_)) => "InvalidMounts".into(),
            Error::Mount(MountError::Ssh(e)) | Error::Ssh(e) => ssh_reason(e).into(),
            Error::InvalidSpec { .. } => "InvalidSpec".into(),
            Error::DependencyNotReady { .. } => "DependencyNotReady".into(),
            Error::NotManaged { .. } => "ResourceNotManaged".into(),
            Error::Finalizer(_) => "FinalizerError".into(),
            Error::Serialization(_) => "SerializationError".into(),
            Error::Config(_) => "ConfigurationError".into(),
        }
    }

    /// A bounded label for metrics (never a message or a name): the ARM category for ARM errors.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::Arm(e) => e.category(),
            Error::Mount(MountError::Plan(_)) => "InvalidMounts",
            Error::Mount(MountError::Ssh(e)) | Error::Ssh(e) => ssh_reason(e),
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::DependencyNotReady { .. } => "DependencyNotReady",
            Error::NotManaged { .. } => "ResourceNotManaged",
            Error::Finalizer(_) => "FinalizerError",
            Error::Serialization(_) => "SerializationError",
            Error::Config(_) => "ConfigurationError",
        }
    }

    /// Whether retrying without a change cannot help (Stalled; wait for a spec change).
    pub fn is_terminal(&self) -> bool {
        match self {
            Error::Kube(_) | Error::DependencyNotReady { .. } | Error::Finalizer(_) => false,
            Error::Arm(e) => e.is_terminal(),
            Error::Mount(e) => !e.is_transient(),
            Error::Ssh(e) => !e.is_transient(),
            Error::InvalidSpec { .. }
            | Error::NotManaged { .. }
            | Error::Serialization(_)
            | Error::Config(_) => true,
        }
    }

    /// The user-facing message (ARM's message for ARM errors).
    pub fn message(&self) -> String {
        match self {
            Error::Arm(e) => e.message(),
            other => other.to_string(),
        }
    }
}

fn ssh_reason(e: &SshError) -> &'static str {
    match e {
        SshError::Connect { .. } => "SshConnectFailed",
        SshError::Timeout { .. } => "SshTimeout",
        SshError::Auth { .. } => "SshAuthFailed",
        SshError::HostKeyMismatch { .. } => "HostKeyMismatch",
        SshError::CommandFailed { .. } => "SshCommandFailed",
        SshError::Protocol(_) => "SshProtocolError",
    }
}

/// Bounded exponential backoff per object, reset by a successful reconcile.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Backoff from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The delay before the next retry of `key`, counting this failure.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut map = self.attempts();
        let n = map.entry(key.to_string()).or_insert(0);
        let delay = self.min.saturating_mul(1u32 << (*n).min(20)).min(self.max);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        self.attempts().remove(key);
    }
}

/// What to do after a failed reconcile: terminal errors wait for a change, transient ones
/// are retried with per-object exponential backoff (honouring ARM's `Retry-After`).
pub fn error_action(error: &Error, backoff: &Backoff, key: &str) -> Action {
    if error.is_terminal() {
        return Action::await_change();
    }
    let mut delay = backoff.next_delay(key);
    if let Error::Arm(e) = error
        && let Some(after) = e.retry_after()
    {
        delay = delay.max(after.min(backoff.max));
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_errors_use_arm_codes_and_classification() {
        let quota = Error::Arm(ArmError::QuotaExceeded {
            code: "QuotaExceeded".into(),
            message: "no cores".into(),
        });
        assert_eq!(quota.reason(), "QuotaExceeded");
        assert!(quota.is_terminal());
        let throttled = Error::Arm(ArmError::Throttled {
            code: "TooManyRequests".into(),
            message: "slow down".into(),
            retry_after: None,
        });
        assert!(!throttled.is_terminal());
        assert_eq!(throttled.metric_reason(), "Throttled");
        let bad = Error::InvalidSpec {
            field: "spec.size".into(),
            message: "bad".into(),
        };
        assert!(bad.is_terminal());
        assert_eq!(bad.reason(), "InvalidSpec");
    }

    #[test]
    fn backoff_doubles_is_bounded_and_resets() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let d: Vec<u64> = (0..5).map(|_| b.next_delay("a").as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 5, 5]);
        assert_eq!(b.next_delay("b").as_secs(), 1);
        b.reset("a");
        assert_eq!(b.next_delay("a").as_secs(), 1);
    }

    #[test]
    fn terminal_waits_transient_requeues() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let t = Error::Config("x".into());
        assert_eq!(error_action(&t, &b, "k"), Action::await_change());
        let s = Error::DependencyNotReady { what: "x".into() };
        assert_eq!(
            error_action(&s, &b, "k"),
            Action::requeue(Duration::from_secs(1))
        );
    }
}
