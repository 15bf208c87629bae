//! Errors: the ARM error envelope answered to clients and the emulator's own start-up errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An ARM error answered as `{"error": {"code", "message", "target"?}}` with its HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// ARM error code, e.g. `InvalidParameter`.
    pub code: String,
    /// Human readable message.
    pub message: String,
    /// The request field at fault, when there is one.
    pub target: Option<String>,
    /// `Retry-After` seconds for throttling answers.
    pub retry_after: Option<u64>,
    /// Rarely used parts (boxed to keep the error small).
    pub extra: Option<Box<ErrorExtra>>,
}

/// `details` of the envelope and extra headers of an [`ArmError`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorExtra {
    /// `details` of the error envelope (e.g. the exhausted Compute window).
    pub details: Vec<serde_json::Value>,
    /// `x-ms-ratelimit-remaining-resource` to answer with the error (Compute throttling).
    pub resource_header: Option<String>,
}

impl ArmError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            target: None,
            retry_after: None,
            extra: None,
        }
    }

    /// 400 with an arbitrary code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `InvalidParameter` naming the offending field.
    pub fn invalid(target: &str, message: impl Into<String>) -> Self {
        Self::bad_request("InvalidParameter", message).with_target(target)
    }

    /// 400 for a required field that is missing.
    pub fn required(target: &str) -> Self {
        Self::invalid(
            target,
            format!("Required parameter '{target}' is missing (null)."),
        )
    }

    /// 409 with an arbitrary code.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 404 with an arbitrary code.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// Sets the `target` field.
    pub fn with_target(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }

    /// Sets the `Retry-After` seconds.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The `error` object of the envelope (also used inside operation status bodies).
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(target) = &self.target {
            error["target"] = json!(target);
        }
        if let Some(extra) = &self.extra
            && !extra.details.is_empty()
        {
            error["details"] = json!(extra.details);
        }
        error
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        let mut response =
            (self.status, axum::Json(json!({ "error": self.body() }))).into_response();
        if let Some(header) = self.extra.as_ref().and_then(|e| e.resource_header.as_ref())
            && let Ok(value) = header.parse()
        {
            response
                .headers_mut()
                .insert("x-ms-ratelimit-remaining-resource", value);
        }
        if let Some(seconds) = retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }
}

/// Why the emulator could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: std::net::SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be read or used.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The state file could not be read, parsed or written.
    #[error("state file {path}: {message}")]
    StateFile {
        /// The state file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Waiting for the shutdown signal failed.
    #[error("signal handling failed: {0}")]
    Signal(std::io::Error),
}
