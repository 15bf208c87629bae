//! Typed ARM errors, parsed from ARM's error envelope
//! `{"error": {"code", "message", "target", "details"}}`.
//!
//! Every error says whether retrying later can help ([`ArmError::is_transient`]) or whether it
//! needs a change of input or of the environment ([`ArmError::is_terminal`]). The client retries
//! by itself only throttling, server errors and transport failures
//! ([`ArmError::is_retryable`]); the other transient classes (conflicts, cancelled operations,
//! timeouts of long-running operations) are left to the caller's requeue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One entry of ARM's error body (`error` or an element of `error.details`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// ARM error code, e.g. `ResourceNotFound`.
    #[serde(default)]
    pub code: String,
    /// Human readable message.
    #[serde(default)]
    pub message: String,
    /// The property or resource the error is about, when ARM names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Nested errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// The ARM error envelope `{"error": {...}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: Option<ErrorDetail>,
}

impl ErrorDetail {
    /// Parses an ARM error body; tolerates a bare `{"code","message"}` object as some providers send.
    pub fn parse(body: &[u8]) -> Option<ErrorDetail> {
        if let Ok(ErrorEnvelope { error: Some(e) }) = serde_json::from_slice::<ErrorEnvelope>(body)
        {
            return Some(e);
        }
        match serde_json::from_slice::<ErrorDetail>(body) {
            Ok(e) if !e.code.is_empty() => Some(e),
            _ => None,
        }
    }
}

/// Terminal status of a long-running operation that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedStatus {
    /// The operation (or the resource's provisioningState) ended `Failed`.
    Failed,
    /// The operation ended `Canceled`.
    Canceled,
}

impl std::fmt::Display for FailedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailedStatus::Failed => "Failed",
            FailedStatus::Canceled => "Canceled",
        })
    }
}

/// An error talking to Azure Resource Manager.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArmError {
    /// 404: the resource (or its resource group) does not exist.
    #[error("not found ({code}): {message}")]
    NotFound {
        /// ARM code, e.g. `ResourceNotFound` or `ResourceGroupNotFound`.
        code: String,
        /// ARM message.
        message: String,
    },
    /// 409: the request conflicts with the resource's current state (in use, another operation
    /// in progress, ...). Usually resolves itself; the client does not retry it.
    #[error("conflict ({code}): {message}")]
    Conflict {
        /// ARM code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// 429: throttled by ARM or a resource provider, after the client's own retries ran out.
    #[error("throttled ({code}): {message}")]
    Throttled {
        /// ARM code (e.g. `TooManyRequests`, `RetryableErrorDueToAnotherOperation`).
        code: String,
        /// ARM message.
        message: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 400 (and other 4xx not classified elsewhere): the request is invalid.
    #[error("invalid request ({code}){}: {message}", target.as_deref().map(|t| format!(" at {t}")).unwrap_or_default())]
    InvalidRequest {
        /// HTTP status.
        status: u16,
        /// ARM code, e.g. `InvalidParameter`.
        code: String,
        /// ARM message.
        message: String,
        /// The offending property, if ARM names it.
        target: Option<String>,
    },
    /// A quota or capacity limit stops the request (codes containing `Quota`, or `OperationNotAllowed`
    /// mentioning quota).
    #[error("quota exceeded ({code}): {message}")]
    QuotaExceeded {
        /// ARM code.
        code: String,
        /// ARM message.
        message: String,
    },
    /// 401/403 from ARM, or no token could be obtained.
    #[error("authentication/authorization failed ({code}): {message}")]
    AuthFailed {
        /// HTTP status (0 when the token could not be obtained).
        status: u16,
        /// ARM code (`AuthenticationFailed`, `AuthorizationFailed`, `CredentialUnavailable`, ...).
        code: String,
        /// Message (never contains a token).
        message: String,
    },
    /// 5xx after the client's own retries ran out.
    #[error("server error {status} ({code}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// ARM code.
        code: String,
        /// ARM message.
        message: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The request did not reach ARM or no response came back (connect error, timeout, reset).
    #[error("transport error: {message}")]
    Transport {
        /// Description of the failure.
        message: String,
        /// Whether it was a timeout.
        timeout: bool,
    },
    /// A long-running operation (or the resource's provisioningState) ended Failed or Canceled.
    #[error("operation {status} ({code}): {message}")]
    OperationFailed {
        /// Failed or Canceled.
        status: FailedStatus,
        /// ARM code from the operation's `error`.
        code: String,
        /// ARM message from the operation's `error`.
        message: String,
        /// Target, if any.
        target: Option<String>,
    },
    /// A long-running operation did not finish within the configured time limit; it may still finish.
    #[error("operation still running after {waited:?}: {what}")]
    OperationTimeout {
        /// What was awaited.
        what: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// The response could not be understood (bad JSON, missing headers).
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// Invalid client configuration (endpoint, CA file, credential settings).
    #[error("configuration error: {0}")]
    Config(String),
}

/// ARM codes meaning "in use / busy" whatever the HTTP status (the network provider answers 400
/// `NicInUse` for a NIC still attached to a VM): classified as [`ArmError::Conflict`].
const CONFLICT_CODES: &[&str] = &[
    "Conflict",
    "NicInUse",
    "InUseSubnetCannotBeDeleted",
    "InUseNetworkSecurityGroupCannotBeDeleted",
    "PublicIPAddressCannotBeDeleted",
    "InUsePublicIpAddressCannotBeDeleted",
    "AnotherOperationInProgress",
    "OperationNotAllowedOnResourceInTransition",
    "ResourceGroupBeingDeleted",
    "DiskInUse",
    "OperationNotAllowedOnDiskAttachedToVM",
];

/// ARM codes that need a change of the request although ARM answers them with 409:
/// classified as [`ArmError::InvalidRequest`].
const INVALID_CODES: &[&str] = &[
    "PropertyChangeNotAllowed",
    "SkuNotAvailable",
    "InvalidParameter",
];

/// ARM error codes of failed operations that are worth retrying later.
const TRANSIENT_OPERATION_CODES: &[&str] = &[
    "InternalServerError",
    "InternalExecutionError",
    "RetryableError",
    "RetryableErrorDueToAnotherOperation",
    "OperationPreempted",
    "TooManyRequests",
    "ServiceUnavailable",
    "GatewayTimeout",
];

impl ArmError {
    /// Classifies an HTTP error response from ARM by status and envelope.
    pub fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> ArmError {
        let detail = ErrorDetail::parse(body).unwrap_or_else(|| ErrorDetail {
            code: default_code(status).to_string(),
            message: String::from_utf8_lossy(body).chars().take(512).collect(),
            ..ErrorDetail::default()
        });
        let ErrorDetail {
            code,
            message,
            target,
            ..
        } = detail;
        if is_quota_code(&code, &message) {
            return ArmError::QuotaExceeded { code, message };
        }
        if INVALID_CODES.iter().any(|c| c.eq_ignore_ascii_case(&code))
            && (400..500).contains(&status)
        {
            return ArmError::InvalidRequest {
                status,
                code,
                message,
                target,
            };
        }
        if CONFLICT_CODES.iter().any(|c| c.eq_ignore_ascii_case(&code))
            && status != 429
            && status < 500
        {
            return ArmError::Conflict { code, message };
        }
        match status {
            404 => ArmError::NotFound { code, message },
            409 => ArmError::Conflict { code, message },
            429 => ArmError::Throttled {
                code,
                message,
                retry_after,
            },
            401 | 403 => ArmError::AuthFailed {
                status,
                code,
                message,
            },
            408 => ArmError::Transport {
                message: format!("{code}: {message}"),
                timeout: true,
            },
            500..=599 => ArmError::Server {
                status,
                code,
                message,
                retry_after,
            },
            _ => ArmError::InvalidRequest {
                status,
                code,
                message,
                target,
            },
        }
    }

    /// Builds the error of a long-running operation that ended Failed or Canceled.
    pub fn operation_failed(status: FailedStatus, error: Option<ErrorDetail>) -> ArmError {
        let e = error.unwrap_or_else(|| ErrorDetail {
            code: format!("Operation{status}"),
            message: format!("the operation ended {status} without an error body"),
            ..ErrorDetail::default()
        });
        if is_quota_code(&e.code, &e.message) {
            return ArmError::QuotaExceeded {
                code: e.code,
                message: e.message,
            };
        }
        ArmError::OperationFailed {
            status,
            code: e.code,
            message: e.message,
            target: e.target,
        }
    }

    /// Whether trying again later (without changing anything) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ArmError::Conflict { .. }
            | ArmError::Throttled { .. }
            | ArmError::Server { .. }
            | ArmError::Transport { .. }
            | ArmError::OperationTimeout { .. } => true,
            ArmError::OperationFailed { status, code, .. } => {
                *status == FailedStatus::Canceled
                    || TRANSIENT_OPERATION_CODES.contains(&code.as_str())
            }
            ArmError::NotFound { .. }
            | ArmError::InvalidRequest { .. }
            | ArmError::QuotaExceeded { .. }
            | ArmError::AuthFailed { .. }
            | ArmError::Protocol(_)
            | ArmError::Config(_) => false,
        }
    }

    /// Whether the error needs a change (spec, quota, permissions, config) before a retry can help.
    pub fn is_terminal(&self) -> bool {
        !self.is_transient()
    }

    /// Whether the client's own retry loop retries this error (429, 5xx, timeouts, connection errors).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ArmError::Throttled { .. } | ArmError::Server { .. } | ArmError::Transport { .. }
        )
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ArmError::NotFound { .. })
    }

    /// The ARM error code, when the error came from ARM.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::NotFound { code, .. }
            | ArmError::Conflict { code, .. }
            | ArmError::Throttled { code, .. }
            | ArmError::InvalidRequest { code, .. }
            | ArmError::QuotaExceeded { code, .. }
            | ArmError::AuthFailed { code, .. }
            | ArmError::Server { code, .. }
            | ArmError::OperationFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The error message (ARM's message when the error came from ARM).
    pub fn message(&self) -> String {
        match self {
            ArmError::NotFound { message, .. }
            | ArmError::Conflict { message, .. }
            | ArmError::Throttled { message, .. }
            | ArmError::InvalidRequest { message, .. }
            | ArmError::QuotaExceeded { message, .. }
            | ArmError::AuthFailed { message, .. }
            | ArmError::Server { message, .. }
            | ArmError::OperationFailed { message, .. }
            | ArmError::Transport { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The ARM error target, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            ArmError::InvalidRequest { target, .. } | ArmError::OperationFailed { target, .. } => {
                target.as_deref()
            }
            _ => None,
        }
    }

    /// The server's `Retry-After`, for throttling and server errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Throttled { retry_after, .. } | ArmError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A short, stable category name for logs, metrics labels and condition reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ArmError::NotFound { .. } => "NotFound",
            ArmError::Conflict { .. } => "Conflict",
            ArmError::Throttled { .. } => "Throttled",
            ArmError::InvalidRequest { .. } => "InvalidRequest",
            ArmError::QuotaExceeded { .. } => "QuotaExceeded",
            ArmError::AuthFailed { .. } => "AuthFailed",
            ArmError::Server { .. } => "ServerError",
            ArmError::Transport { .. } => "Transport",
            ArmError::OperationFailed { .. } => "OperationFailed",
            ArmError::OperationTimeout { .. } => "OperationTimeout",
            ArmError::Protocol(_) => "Protocol",
            ArmError::Config(_) => "Config",
        }
    }
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "AuthenticationFailed",
        403 => "AuthorizationFailed",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        500..=599 => "InternalServerError",
        _ => "HttpError",
    }
}

fn is_quota_code(code: &str, message: &str) -> bool {
    code.contains("Quota")
        || (code == "OperationNotAllowed" && message.to_ascii_lowercase().contains("quota"))
}

impl From<reqwest::Error> for ArmError {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's Display names the URL, which never carries a token (tokens go in a header).
        ArmError::Transport {
            message: error_chain(&e),
            timeout: e.is_timeout(),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": message, "target": "properties.x"}}))
            .unwrap_or_default()
    }

    #[test]
    fn classifies_statuses() {
        let nf = ArmError::from_response(404, &body("ResourceGroupNotFound", "rg missing"), None);
        assert!(
            matches!(nf, ArmError::NotFound { ref code, .. } if code == "ResourceGroupNotFound")
        );
        assert!(nf.is_terminal() && nf.is_not_found());

        let c = ArmError::from_response(409, &body("AnotherOperationInProgress", "busy"), None);
        assert!(matches!(c, ArmError::Conflict { .. }) && c.is_transient() && !c.is_retryable());
        let change = ArmError::from_response(409, &body("PropertyChangeNotAllowed", "no"), None);
        assert!(
            matches!(change, ArmError::InvalidRequest { status: 409, .. }) && change.is_terminal()
        );
        let nic = ArmError::from_response(400, &body("NicInUse", "attached to a VM"), None);
        assert!(
            matches!(nic, ArmError::Conflict { ref code, .. } if code == "NicInUse"),
            "{nic:?}"
        );

        let t = ArmError::from_response(
            429,
            &body("TooManyRequests", "slow"),
            Some(Duration::from_secs(3)),
        );
        assert!(t.is_transient() && t.is_retryable());
        assert_eq!(t.retry_after(), Some(Duration::from_secs(3)));

        let i = ArmError::from_response(400, &body("InvalidParameter", "bad size"), None);
        assert!(i.is_terminal());
        assert_eq!(i.code(), Some("InvalidParameter"));
        assert_eq!(i.target(), Some("properties.x"));
        assert_eq!(i.message(), "bad size");

        let a = ArmError::from_response(401, b"", None);
        assert!(
            matches!(a, ArmError::AuthFailed { status: 401, ref code, .. } if code == "AuthenticationFailed")
        );
        assert!(a.is_terminal() && !a.is_retryable());

        let s = ArmError::from_response(503, b"<html>down</html>", None);
        assert!(matches!(s, ArmError::Server { status: 503, .. }) && s.is_retryable());
        assert!(s.message().contains("down"));
    }

    #[test]
    fn classifies_quota() {
        let q = ArmError::from_response(
            409,
            &body(
                "OperationNotAllowed",
                "Operation results in exceeding quota limits of Core.",
            ),
            None,
        );
        assert!(matches!(q, ArmError::QuotaExceeded { .. }) && q.is_terminal());
        let q2 = ArmError::from_response(400, &body("QuotaExceeded", "no"), None);
        assert_eq!(q2.category(), "QuotaExceeded");
        let o = ArmError::operation_failed(
            FailedStatus::Failed,
            Some(ErrorDetail {
                code: "ResourceQuotaExceeded".into(),
                ..Default::default()
            }),
        );
        assert!(matches!(o, ArmError::QuotaExceeded { .. }));
    }

    #[test]
    fn classifies_operation_failures() {
        let f = ArmError::operation_failed(
            FailedStatus::Failed,
            Some(ErrorDetail {
                code: "OSProvisioningTimedOut".into(),
                message: "timed out".into(),
                ..Default::default()
            }),
        );
        assert!(f.is_terminal());
        assert_eq!(f.code(), Some("OSProvisioningTimedOut"));
        let r = ArmError::operation_failed(
            FailedStatus::Failed,
            Some(ErrorDetail {
                code: "InternalExecutionError".into(),
                ..Default::default()
            }),
        );
        assert!(r.is_transient() && !r.is_retryable());
        let c = ArmError::operation_failed(FailedStatus::Canceled, None);
        assert!(c.is_transient());
        assert_eq!(c.code(), Some("OperationCanceled"));
    }

    #[test]
    fn parses_bare_error_object() {
        let d = ErrorDetail::parse(br#"{"code":"Conflict","message":"busy"}"#);
        assert_eq!(d.map(|d| d.code), Some("Conflict".to_string()));
        assert!(ErrorDetail::parse(b"not json").is_none());
    }
}
