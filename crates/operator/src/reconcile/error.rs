//! The controllers' error type and its classification.
//!
//! Every error is either [`Class::Transient`] — retried with per-object exponential backoff
//! (honouring ARM's `Retry-After`), the object reports `Reconciling` with the reason — or
//! [`Class::NeedsChange`] — the object reports `Stalled` with the ARM code and message and is
//! re-evaluated on resync and whenever something it depends on changes, never in a loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::ssh::{MountError, SshError};
use azlin_arm::{ArmError, FailedStatus};

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
    /// No shared list of Azure resources is fresh enough for this object yet, and the next
    /// may be taken only after this long (the object is requeued then; not a failure).
    #[error("the next list of Azure resources is due in {0:?}")]
    SnapshotDue(Duration),
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
    /// The namespace's Azure credential cannot be used.
    #[error("{message}")]
    Credential {
        /// What is wrong and how to fix it.
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

/// What an error means for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retrying later may succeed: back off and retry; the object is `Reconciling`.
    Transient,
    /// Retrying cannot help until something changes (the spec, a Secret, a quota, a policy):
    /// the object is `Stalled` and re-evaluated on resync and on changes it depends on.
    NeedsChange,
}

/// Codes of failed long-running operations that need a change of the request (or of the
/// subscription) before a retry can succeed. Any other failed operation — `AllocationFailed`,
/// `InternalServerError`, `OSProvisioningTimedOut`, ... — is retried with backoff.
const NEEDS_CHANGE_OPERATION_CODES: &[&str] = &[
    "InvalidParameter",
    "InvalidRequestFormat",
    "InvalidTemplate",
    "InvalidResourceReference",
    "ImageNotFound",
    "PlatformImageNotFound",
    "OperationNotAllowed",
    "MarketplacePurchaseEligibilityFailed",
    "ResourcePurchaseValidationFailed",
    "SkuNotAvailable",
    "NotSupported",
    "PropertyChangeNotAllowed",
    "LinkedAuthorizationFailed",
    "AuthorizationFailed",
    "RequestDisallowedByPolicy",
];

/// 404 codes meaning the addressed resource (or its group) does not exist (yet, or any
/// more): retried.
const TRANSIENT_NOT_FOUND: &[&str] = &[
    "ResourceNotFound",
    "ResourceGroupNotFound",
    "NotFound",
    "ParentResourceNotFound",
];

/// Whether a failed operation with ARM `code` needs a change before a retry can help.
pub fn failed_operation_needs_change(code: &str) -> bool {
    NEEDS_CHANGE_OPERATION_CODES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(code))
}

/// The class of an ARM error.
pub fn arm_class(e: &ArmError) -> Class {
    match e {
        ArmError::Conflict { .. }
        | ArmError::Throttled { .. }
        | ArmError::Server { .. }
        | ArmError::Transport { .. }
        | ArmError::OperationTimeout { .. } => Class::Transient,
        // A resource (or its group) vanishing mid-way passes with the next observation;
        // a 404 about something the request names (an image, a plan) needs a change.
        ArmError::NotFound { code, .. } => {
            if TRANSIENT_NOT_FOUND
                .iter()
                .any(|c| c.eq_ignore_ascii_case(code))
            {
                Class::Transient
            } else {
                Class::NeedsChange
            }
        }
        ArmError::OperationFailed { status, code, .. } => {
            if *status == FailedStatus::Failed && failed_operation_needs_change(code) {
                Class::NeedsChange
            } else {
                Class::Transient
            }
        }
        ArmError::InvalidRequest { .. }
        | ArmError::QuotaExceeded { .. }
        | ArmError::AuthFailed { .. }
        | ArmError::Protocol(_)
        | ArmError::Config(_) => Class::NeedsChange,
    }
}

impl Error {
    /// Whether retrying can help ([`Class::Transient`]) or a change is needed.
    pub fn class(&self) -> Class {
        match self {
            Error::Kube(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 422) => {
                Class::NeedsChange
            }
            Error::Kube(_)
            | Error::DependencyNotReady { .. }
            | Error::SnapshotDue(_)
            | Error::Finalizer(_) => Class::Transient,
            Error::Arm(e) => arm_class(e),
            Error::Mount(MountError::Plan(_)) => Class::NeedsChange,
            Error::Mount(MountError::Ssh(e)) | Error::Ssh(e) => ssh_class(e),
            Error::InvalidSpec { .. }
            | Error::NotManaged { .. }
            | Error::Credential { .. }
            | Error::Serialization(_)
            | Error::Config(_) => Class::NeedsChange,
        }
    }

    /// Whether this needs a change before a retry can help.
    pub fn needs_change(&self) -> bool {
        self.class() == Class::NeedsChange
    }

    /// A CamelCase reason for conditions, metrics and events. ARM errors use ARM's own code.
    pub fn reason(&self) -> String {
        match self {
            Error::Arm(e) => e
                .code()
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("Arm{}", e.category())),
            other => other.metric_reason().to_string(),
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
            Error::SnapshotDue(_) => "SnapshotDue",
            Error::NotManaged { .. } => "ResourceNotManaged",
            Error::Credential { .. } => "CredentialUnavailable",
            Error::Finalizer(_) => "FinalizerError",
            Error::Serialization(_) => "SerializationError",
            Error::Config(_) => "ConfigurationError",
        }
    }

    /// The user-facing message: for ARM errors, ARM's code and message (and target).
    pub fn message(&self) -> String {
        match self {
            Error::Arm(e) => {
                let code = e.code().filter(|c| !c.is_empty());
                let mut m = match code {
                    Some(code) => format!("{code}: {}", e.message()),
                    None => e.message(),
                };
                if let Some(t) = e.target() {
                    m.push_str(&format!(" (target {t})"));
                }
                m
            }
            other => other.to_string(),
        }
    }

    /// The delay the server asked for before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Arm(e) => e.retry_after(),
            _ => None,
        }
    }
}

fn ssh_class(e: &SshError) -> Class {
    match e {
        // A changed host key is a security event: only an explicit re-pin may accept it.
        SshError::HostKeyMismatch { .. } => Class::NeedsChange,
        // Authentication fails while cloud-init is still installing the key; connection,
        // timeout and command failures are the network's or the guest's, not the spec's.
        SshError::Auth { .. }
        | SshError::Connect { .. }
        | SshError::Timeout { .. }
        | SshError::CommandFailed { .. }
        | SshError::Protocol(_) => Class::Transient,
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

/// Most a Stalled object's re-evaluation interval grows to, as a multiple of the first.
pub const STALLED_RECHECK_GROWTH: u32 = 8;

/// Bounded exponential backoff per key (an object, or an object's sub-task), reset by
/// success and pruned when objects go away.
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
        self.min.saturating_mul(self.count(key)).min(self.max)
    }

    /// Counts a failure of `key`: 2 to the power of the failures counted before it.
    fn count(&self, key: &str) -> u32 {
        let mut map = self.attempts();
        let n = map.entry(key.to_string()).or_insert(0);
        let growth = 1u32 << (*n).min(20);
        *n = n.saturating_add(1);
        growth
    }

    /// The delay before a Stalled `key` is re-evaluated anyway (to notice a change in Azure
    /// such as a raised quota): `first`, doubling with each consecutive stall up to
    /// [`STALLED_RECHECK_GROWTH`] times `first`. Thousands of objects stalled on one cause
    /// (a full subnet, an exhausted quota) would otherwise repeat their failing write every
    /// `first` and spend the subscription's write budget; a change of the object or of
    /// anything it depends on reconciles it at once anyway.
    pub fn stalled_delay(&self, key: &str, first: Duration) -> Duration {
        first.saturating_mul(self.count(key).min(STALLED_RECHECK_GROWTH))
    }

    /// The delay after `error` for `key`: the next backoff step, at least the server's
    /// `Retry-After` (bounded by the maximum).
    pub fn after_error(&self, key: &str, error: &Error) -> Duration {
        let delay = self.next_delay(key);
        match error.retry_after() {
            Some(after) => delay.max(after.min(self.max)),
            None => delay,
        }
    }

    /// Failures counted for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.attempts().get(key).copied().unwrap_or(0)
    }

    /// Forgets the failures of `key` (and of its sub-tasks `key/...`).
    pub fn reset(&self, key: &str) {
        let prefix = format!("{key}/");
        self.attempts()
            .retain(|k, _| k != key && !k.starts_with(&prefix));
    }

    /// Keeps only the keys for which `alive` holds (objects that still exist).
    pub fn prune(&self, alive: impl Fn(&str) -> bool) {
        self.attempts().retain(|k, _| alive(k));
    }

    /// Number of keys with failures (for tests and metrics).
    pub fn len(&self) -> usize {
        self.attempts().len()
    }

    /// Whether no key has failures.
    pub fn is_empty(&self) -> bool {
        self.attempts().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op_failed(code: &str) -> Error {
        Error::Arm(ArmError::OperationFailed {
            status: FailedStatus::Failed,
            code: code.into(),
            message: "m".into(),
            target: None,
        })
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(Error, Class, &str)> = vec![
            (
                op_failed("AllocationFailed"),
                Class::Transient,
                "AllocationFailed",
            ),
            (
                op_failed("InternalServerError"),
                Class::Transient,
                "InternalServerError",
            ),
            (
                op_failed("OSProvisioningTimedOut"),
                Class::Transient,
                "OSProvisioningTimedOut",
            ),
            (
                op_failed("InvalidParameter"),
                Class::NeedsChange,
                "InvalidParameter",
            ),
            (
                Error::Arm(ArmError::AuthFailed {
                    status: 403,
                    code: "RequestDisallowedByPolicy".into(),
                    message: "policy".into(),
                }),
                Class::NeedsChange,
                "RequestDisallowedByPolicy",
            ),
            (
                Error::Arm(ArmError::QuotaExceeded {
                    code: "QuotaExceeded".into(),
                    message: "no cores".into(),
                }),
                Class::NeedsChange,
                "QuotaExceeded",
            ),
            (
                Error::Arm(ArmError::Throttled {
                    code: "TooManyRequests".into(),
                    message: "slow down".into(),
                    retry_after: Some(Duration::from_secs(7)),
                }),
                Class::Transient,
                "TooManyRequests",
            ),
            (
                Error::InvalidSpec {
                    field: "spec.size".into(),
                    message: "bad".into(),
                },
                Class::NeedsChange,
                "InvalidSpec",
            ),
            (
                Error::DependencyNotReady { what: "x".into() },
                Class::Transient,
                "DependencyNotReady",
            ),
            (
                Error::Ssh(SshError::Auth {
                    user: "u".into(),
                    message: "publickey".into(),
                }),
                Class::Transient,
                "SshAuthFailed",
            ),
        ];
        for (e, class, reason) in cases {
            assert_eq!(e.class(), class, "{e}");
            assert_eq!(e.reason(), reason, "{e}");
        }
    }

    #[test]
    fn arm_messages_carry_the_code() {
        let e = op_failed("AllocationFailed");
        assert_eq!(e.message(), "AllocationFailed: m");
    }

    #[test]
    fn backoff_doubles_is_bounded_resets_and_prunes() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let d: Vec<u64> = (0..5).map(|_| b.next_delay("a").as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 5, 5]);
        assert_eq!(b.next_delay("b").as_secs(), 1);
        b.next_delay("a/mounts");
        b.reset("a");
        assert_eq!(b.failures("a"), 0);
        assert_eq!(b.failures("a/mounts"), 0);
        assert_eq!(b.next_delay("a").as_secs(), 1);
        b.prune(|k| k == "a");
        assert_eq!(b.len(), 1);
        let throttled = Error::Arm(ArmError::Throttled {
            code: "TooManyRequests".into(),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(4)),
        });
        assert_eq!(b.after_error("c", &throttled), Duration::from_secs(4));
    }

    #[test]
    fn a_stalled_object_is_rechecked_less_often_until_it_recovers() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let first = Duration::from_secs(300);
        let waits: Vec<u64> = (0..6)
            .map(|_| b.stalled_delay("vm", first).as_secs())
            .collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 2400, 2400]);
        // Other objects are not affected; a success starts over.
        assert_eq!(b.stalled_delay("other", first), first);
        b.reset("vm");
        assert_eq!(b.stalled_delay("vm", first), first);
    }
}
