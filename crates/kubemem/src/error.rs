//! API errors rendered as Kubernetes `Status` objects, and the error type of the library helpers.

use http::StatusCode;
use serde_json::{Value, json};

use super::registry::ResourceInfo;

/// A failed API call, rendered on the wire as a `meta/v1 Status` object with `status: Failure`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// Machine readable reason (`NotFound`, `Conflict`, `Invalid`, ...).
    pub reason: String,
    /// Human readable message, worded like the real API server.
    pub message: String,
    /// `Status.details` (name, group, kind, causes); `{}` when there is nothing to say.
    pub details: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// A failure with the given code, reason and message and empty details.
    pub fn new(code: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.as_u16(),
            reason: reason.to_string(),
            message: message.into(),
            details: json!({}),
        }
    }

    /// Replaces `details`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The `Status` object as JSON.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        })
    }

    /// 404 for a path that names no served resource.
    pub fn unknown_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for a missing object.
    pub fn not_found(res: &ResourceInfo, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", res.group_resource()),
        )
        .with_details(res.details(name))
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(res: &ResourceInfo, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.group_resource()),
        )
        .with_details(res.details(name))
    }

    /// 409 Conflict for a stale `resourceVersion` (or failed precondition).
    pub fn conflict(res: &ResourceInfo, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                res.group_resource()
            ),
        )
        .with_details(res.details(name))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 410 Gone / Expired for a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 for an unsupported patch content type.
    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct})"
            ),
        )
    }

    /// 422 Invalid with field causes, formatted like the API server:
    /// `Kind.group "name" is invalid: field: message`.
    pub fn invalid(res: &ResourceInfo, name: &str, causes: &[FieldCause]) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let qualified = if res.group.is_empty() {
            res.kind.clone()
        } else {
            format!("{}.{}", res.kind, res.group)
        };
        let causes_json: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {summary}"),
        )
        .with_details(json!({
            "name": name,
            "group": res.group,
            "kind": res.kind,
            "causes": causes_json,
        }))
    }

    /// 413 for a request body over the limit (`Request entity too large: limit is N`).
    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: {}", message.into()),
        )
    }

    /// 500 for an object larger than etcd stores, with etcd's own message as kube-apiserver
    /// passes it on (reason empty, as for any storage error it does not translate).
    pub fn storage_too_large() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "",
            "etcdserver: request is too large",
        )
    }

    /// 422 from a failed JSON patch (bad path or failed `test` operation).
    pub fn patch_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }
}

/// One rejected field, as returned by an [`Admission`](super::Admission) hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// Field path such as `spec.size`.
    pub field: String,
    /// What is wrong, e.g. `Invalid value: "x": must be one of ...`.
    pub message: String,
    /// Cause reason; `FieldValueInvalid` unless set otherwise.
    pub reason: String,
}

impl FieldCause {
    /// A `FieldValueInvalid` cause.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            reason: "FieldValueInvalid".to_string(),
        }
    }

    /// A cause with an explicit reason (`FieldValueRequired`, `FieldValueForbidden`, ...).
    pub fn with_reason(
        field: impl Into<String>,
        message: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            reason: reason.into(),
        }
    }
}

/// Errors of the library helpers ([`ApiServer::apply_yaml`](super::ApiServer::apply_yaml), CRD registration).
#[derive(Debug, thiserror::Error)]
pub enum KubeMemError {
    /// The API rejected the object (admission 422, 409, unknown kind 404, ...).
    #[error("api error: {0}")]
    Api(#[from] ApiError),
    /// The YAML seed could not be parsed.
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// A seeded document has no `apiVersion`/`kind`, or they name no registered resource.
    #[error("document {index}: {message}")]
    Document {
        /// Zero-based document index in the YAML stream.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The CRD lacks a served version or names.
    #[error("invalid CustomResourceDefinition: {0}")]
    InvalidCrd(String),
}
