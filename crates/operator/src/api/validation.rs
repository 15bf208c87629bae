//! Admission of azlin objects the way the API server does it: schema defaults, the
//! OpenAPI structural schema (types, enums, patterns, ranges, unknown fields) and the
//! CEL rules (`x-kubernetes-validations`), evaluated locally.
//!
//! Used by the in-memory API server, by `azlin-operator local` to reject invalid
//! manifests before applying them, and by the tests of the rules themselves.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, RootContext, Validator, apply_defaults, compile_schema};
use serde_json::Value;

/// One rejected field, as the API server reports it in `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.size`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Why a validator could not be built from a CRD.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The CRD has no `openAPIV3Schema`.
    #[error("CRD {0} has no openAPIV3Schema")]
    MissingSchema(String),
    /// The schema is not a valid JSON schema.
    #[error("CRD {crd} schema is invalid: {message}")]
    InvalidSchema {
        /// CRD name.
        crd: String,
        /// Compiler message.
        message: String,
    },
    /// A CEL rule does not compile.
    #[error("CRD {crd} has CEL rules that do not compile: {message}")]
    InvalidRule {
        /// CRD name.
        crd: String,
        /// Compiler messages.
        message: String,
    },
    /// Serialising the CRD failed.
    #[error("CRD {crd} cannot be serialised: {source}")]
    Serialize {
        /// CRD name.
        crd: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Validates and defaults objects of one CRD.
pub struct SchemaValidator {
    kind: String,
    group: String,
    version: String,
    schema: Value,
    structural: jsonschema::Validator,
    compiled: CompiledSchema,
    cel: Validator,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("kind", &self.kind)
            .finish()
    }
}

impl SchemaValidator {
    /// Builds the validator for the (first) version of `crd`.
    pub fn new(crd: &CustomResourceDefinition) -> Result<Self, SchemaError> {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let version = crd
            .spec
            .versions
            .first()
            .ok_or_else(|| SchemaError::MissingSchema(name.clone()))?;
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| SchemaError::MissingSchema(name.clone()))?;
        let schema = serde_json::to_value(schema).map_err(|source| SchemaError::Serialize {
            crd: name.clone(),
            source,
        })?;
        let structural = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .build(&to_json_schema(&with_implicit_root_fields(&schema)))
            .map_err(|e| SchemaError::InvalidSchema {
                crd: name.clone(),
                message: e.to_string(),
            })?;
        let compiled = compile_schema(&schema);
        if compiled.has_errors() {
            let message = compiled
                .compilation_errors()
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SchemaError::InvalidRule { crd: name, message });
        }
        Ok(Self {
            kind: crd.spec.names.kind.clone(),
            group: crd.spec.group.clone(),
            version: version.name.clone(),
            schema,
            structural,
            compiled,
            cel: Validator::new(),
        })
    }

    /// The kind this validator admits.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The CRD's `openAPIV3Schema` as JSON.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Applies schema defaults to `object`, then checks the structural schema and the
    /// CEL rules (transition rules against `old` when given). On success `object`
    /// holds the defaulted object, as the API server would store it.
    pub fn admit(&self, object: &mut Value, old: Option<&Value>) -> Result<(), Vec<FieldError>> {
        let defaulted = apply_defaults(&self.schema, object);
        let mut errors: Vec<FieldError> = self
            .structural
            .iter_errors(&defaulted)
            .map(|e| FieldError {
                field: json_pointer_to_path(&e.instance_path().to_string()),
                message: e.to_string(),
            })
            .collect();
        // CEL rules assume a structurally valid object, as on the API server.
        if errors.is_empty() {
            let old = old.map(|o| apply_defaults(&self.schema, o));
            let ctx = RootContext {
                api_version: format!("{}/{}", self.group, self.version),
                api_group: self.group.clone(),
                kind: self.kind.clone(),
            };
            if let Err(cel) = self.cel.validate_compiled_with_context(
                &self.compiled,
                &defaulted,
                old.as_ref(),
                Some(&ctx),
            ) {
                errors.extend(cel.into_vec().into_iter().map(|e| FieldError {
                    field: e.field_path.clone(),
                    message: e.message.clone(),
                }));
            }
        }
        if errors.is_empty() {
            *object = defaulted;
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Validators for every azlin kind, by kind name.
#[derive(Debug)]
pub struct Admission {
    by_kind: BTreeMap<String, SchemaValidator>,
}

impl Admission {
    /// Validators for the CRDs of [`crate::api::crds`].
    pub fn for_azlin_kinds() -> Result<Self, SchemaError> {
        Self::new(&super::crds())
    }

    /// Validators for the given CRDs.
    pub fn new(crds: &[CustomResourceDefinition]) -> Result<Self, SchemaError> {
        let mut by_kind = BTreeMap::new();
        for crd in crds {
            let v = SchemaValidator::new(crd)?;
            by_kind.insert(v.kind().to_string(), v);
        }
        Ok(Self { by_kind })
    }

    /// The validator of `kind`, if it is one of ours.
    pub fn validator(&self, kind: &str) -> Option<&SchemaValidator> {
        self.by_kind.get(kind)
    }

    /// Admits an object of one of our kinds (found by its `kind` field).
    pub fn admit(&self, object: &mut Value, old: Option<&Value>) -> Result<(), Vec<FieldError>> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.by_kind.get(kind) {
            Some(v) => v.admit(object, old),
            None => Err(vec![FieldError {
                field: "kind".into(),
                message: format!(
                    "unknown kind {kind:?}: expected one of {}",
                    self.by_kind.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }]),
        }
    }
}

/// Turns an OpenAPI v3 structural schema into a JSON schema with the API server's
/// semantics: `nullable` becomes a `null` type and objects with declared properties
/// reject unknown fields (as `kubectl apply` does with strict field validation).
fn to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = match k.as_str() {
                    "properties" | "patternProperties" | "definitions" => match v {
                        Value::Object(props) => Value::Object(
                            props
                                .iter()
                                .map(|(name, s)| (name.clone(), to_json_schema(s)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    "items" | "additionalProperties" | "not" => to_json_schema(v),
                    "allOf" | "anyOf" | "oneOf" => match v {
                        Value::Array(list) => {
                            Value::Array(list.iter().map(to_json_schema).collect())
                        }
                        other => other.clone(),
                    },
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            if out.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = out.get("type").cloned()
            {
                out.insert("type".into(), serde_json::json!([t, "null"]));
            }
            let preserve =
                out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if out.contains_key("properties")
                && !out.contains_key("additionalProperties")
                && !preserve
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The API server accepts `apiVersion`, `kind` and `metadata` at the root of every
/// object even though CRD schemas do not declare them.
fn with_implicit_root_fields(schema: &Value) -> Value {
    let mut root = schema.clone();
    if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
        for (field, ty) in [
            ("apiVersion", "string"),
            ("kind", "string"),
            ("metadata", "object"),
        ] {
            props
                .entry(field)
                .or_insert_with(|| serde_json::json!({ "type": ty }));
        }
    }
    root
}

/// `/spec/dataDisks/0/lun` → `spec.dataDisks[0].lun`.
fn json_pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_paths_read_like_kubectl() {
        assert_eq!(
            json_pointer_to_path("/spec/dataDisks/0/lun"),
            "spec.dataDisks[0].lun"
        );
        assert_eq!(json_pointer_to_path(""), "");
    }

    #[test]
    fn nullable_and_unknown_fields_follow_the_api_server() {
        let s = serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "string", "nullable": true}}
        });
        let js = to_json_schema(&s);
        assert_eq!(
            js["properties"]["a"]["type"],
            serde_json::json!(["string", "null"])
        );
        assert_eq!(js["additionalProperties"], Value::Bool(false));
    }
}
