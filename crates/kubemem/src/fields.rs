//! Unknown fields of custom resources and the `fieldValidation` directive.
//!
//! As kube-apiserver does for a CRD with a structural schema, fields the schema does not declare
//! (outside `x-kubernetes-preserve-unknown-fields` and `additionalProperties`) are dropped
//! ("pruned") from created, replaced and patched objects. With `fieldValidation=Strict` (what
//! `kubectl` sends by default, `--validate=strict`) they are refused instead: `400 BadRequest`
//! `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field
//! "spec.x"` for a body, `422 Invalid` for a patch; with `Warn` (the default) each one is
//! reported in a `Warning` header. Resources without a schema (the core kinds) are not checked.
//! Server-side apply bodies are not checked here.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::registry::ResourceInfo;
use super::store::State;

/// What the client asked to happen with unknown fields (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FieldValidation {
    /// Drop them silently.
    #[default]
    Ignore,
    /// Drop them and warn.
    Warn,
    /// Refuse the request.
    Strict,
}

/// Where the checked object came from (decides the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A create or replace body.
    Body,
    /// The result of a merge or JSON patch.
    Patch,
}

const OBJECT_META: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes the fields `schema` does not declare from `v`, recording their paths.
fn prune(schema: &Value, v: &mut Value, path: &str, embedded: bool, unknown: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            let embedded =
                embedded || schema.get("x-kubernetes-embedded-resource") == Some(&json!(true));
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child_path = join(path, &k);
                if let Some(s) = props.and_then(|p| p.get(&k)) {
                    if let Some(child) = map.get_mut(&k) {
                        prune(s, child, &child_path, false, unknown);
                    }
                    continue;
                }
                if embedded && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if embedded && k == "metadata" {
                    if let Some(Value::Object(meta)) = map.get_mut(&k) {
                        prune_metadata(meta, &child_path, unknown);
                    }
                    continue;
                }
                match additional {
                    Some(Value::Object(_)) => {
                        if let (Some(s), Some(child)) = (additional, map.get_mut(&k)) {
                            prune(s, child, &child_path, false, unknown);
                        }
                    }
                    Some(Value::Bool(true)) => {}
                    _ if preserve => {}
                    _ => {
                        unknown.push(child_path);
                        map.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(s, item, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

fn prune_metadata(meta: &mut Map<String, Value>, path: &str, unknown: &mut Vec<String>) {
    let keys: Vec<String> = meta.keys().cloned().collect();
    for k in keys {
        if !OBJECT_META.contains(&k.as_str()) {
            unknown.push(join(path, &k));
            meta.remove(&k);
        }
    }
}

/// Prunes `obj` of the fields `res`'s schema does not declare, and refuses or warns about
/// them as the request's `fieldValidation` asks.
pub(crate) fn check(
    state: &mut State,
    res: &ResourceInfo,
    mut obj: Value,
    source: Source,
) -> Result<Value, ApiError> {
    let Some(schema) = &res.schema else {
        return Ok(obj);
    };
    let original = obj.clone();
    let mut unknown = Vec::new();
    prune(schema, &mut obj, "", true, &mut unknown);
    if unknown.is_empty() {
        return Ok(obj);
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match state.field_validation {
        FieldValidation::Ignore => Ok(obj),
        FieldValidation::Warn => {
            state.warnings.extend(listed);
            Ok(obj)
        }
        FieldValidation::Strict => {
            let strict = format!("strict decoding error: {}", listed.join(", "));
            Err(match source {
                Source::Body => ApiError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: {strict}",
                    kind = res.kind,
                    v = res.version
                )),
                Source::Patch => {
                    let value = format!("{:?}", original.to_string());
                    let message = format!("Invalid value: {value}: {strict}");
                    ApiError::new(
                        http::StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!(" \"\" is invalid: patch: {message}"),
                    )
                    .with_details(json!({
                        "causes": [{"reason": "FieldValueInvalid", "message": message, "field": "patch"}],
                    }))
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_undeclared_fields_and_keeps_preserved_ones() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "a": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }},
            },
        });
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "bogus": 1},
            "spec": {"a": "x", "b": 1, "items": [{"x": 1, "y": 2}], "labels": {"k": "v"}, "free": {"any": true}},
            "extra": true,
        });
        let mut unknown = Vec::new();
        prune(&schema, &mut obj, "", true, &mut unknown);
        assert_eq!(
            unknown,
            vec!["extra", "metadata.bogus", "spec.b", "spec.items[0].y"]
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"a": "x", "items": [{"x": 1}], "labels": {"k": "v"}, "free": {"any": true}},
            })
        );
    }
}
