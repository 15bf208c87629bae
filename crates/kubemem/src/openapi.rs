//! A minimal OpenAPI v3 publication (`GET /openapi/v3` and `/openapi/v3/{api/v1 | apis/G/V}`),
//! enough for `kubectl apply`: each served resource gets its PATCH operation with the
//! `x-kubernetes-group-version-kind` extension, the `fieldValidation` query parameter and the
//! patch content types the server accepts. kubectl reads this to decide that the server validates
//! fields itself (so it sends `fieldValidation=Strict` instead of downloading schemas for
//! client-side validation) and which patch type to use (JSON merge patch for custom resources,
//! as no strategic merge patch content type is advertised for them).
//!
//! The schemas of custom resources (their CRD's `openAPIV3Schema`, with `apiVersion`, `kind` and
//! `metadata` added) are published under `components.schemas` for `kubectl explain`; core kinds
//! have no schema. `/openapi/v2` is not served.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::discovery::{KUBE_MAJOR, KUBE_MINOR};
use super::error::ApiError;
use super::registry::{Registry, ResourceInfo};

/// The OpenAPI document for `path`, `None` when `path` is not under `/openapi/v3`.
pub(crate) fn document(registry: &Registry, path: &str) -> Option<Result<Value, ApiError>> {
    let rest = path.trim_matches('/').strip_prefix("openapi/v3")?;
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Some(Ok(index(registry)));
    }
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return Some(Err(ApiError::unknown_path())),
    };
    let resources: Vec<&ResourceInfo> = registry
        .all()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| r.as_ref())
        .collect();
    if resources.is_empty() {
        return Some(Err(ApiError::unknown_path()));
    }
    Some(Ok(group_version(&resources)))
}

/// `api/v1` or `apis/group/version`.
fn gv_path(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for r in registry.all() {
        let p = gv_path(r);
        let url = format!("/openapi/v3/{p}");
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "uniqueItems": true},
    })
}

/// `io.azlin.v1alpha1.AzlinVM` for `azlin.io/v1alpha1` `AzlinVM`, as the API server names them.
fn schema_name(r: &ResourceInfo) -> String {
    let group: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), r.version, r.kind)
}

/// A resource's published schema with the object envelope fields and its GVK.
fn published_schema(r: &ResourceInfo, gvk: &Value) -> Option<Value> {
    let mut schema = r.schema.clone()?;
    let obj = schema.as_object_mut()?;
    let props = obj
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    props.entry("apiVersion").or_insert_with(|| json!({
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
    }));
    props.entry("kind").or_insert_with(|| json!({
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
    }));
    props.entry("metadata").or_insert_with(|| json!({
        "type": "object",
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    }));
    obj.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
    Some(schema)
}

fn group_version(resources: &[&ResourceInfo]) -> Value {
    let mut paths: BTreeMap<String, Value> = BTreeMap::new();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    for r in resources.iter().filter(|r| r.allows("patch")) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let ns = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let item = format!("/{}{ns}/{}/{{name}}", gv_path(r), r.plural);
        let mut content = Map::new();
        for ct in [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            content.insert(ct.to_string(), json!({"schema": {"type": "object"}}));
        }
        let patch = json!({
            "operationId": format!("patch{}", r.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                query_param("fieldManager", "Name of the actor making the change."),
                query_param("fieldValidation", "How unknown and duplicate fields are handled: Ignore, Warn or Strict."),
                query_param("force", "Force apply requests to take ownership of conflicting fields."),
            ],
            "requestBody": {"content": content, "required": true},
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(item, json!({"patch": patch}));
        if let Some(schema) = published_schema(r, &gvk) {
            schemas.insert(schema_name(r), schema);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_group_documents() {
        let reg = Registry::with_core_kinds();
        let idx = document(&reg, "/openapi/v3")
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(
            idx["paths"]["api/v1"]["serverRelativeURL"],
            json!("/openapi/v3/api/v1")
        );
        let doc = document(&reg, "/openapi/v3/apis/coordination.k8s.io/v1")
            .and_then(Result::ok)
            .unwrap_or_default();
        let op = &doc["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]
            ["patch"];
        assert_eq!(
            op["x-kubernetes-group-version-kind"]["kind"],
            json!("Lease")
        );
        assert!(
            op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"))
        );
        assert!(document(&reg, "/openapi/v3/apis/nope/v1").is_some_and(|r| r.is_err()));
        assert!(document(&reg, "/api/v1").is_none());
    }
}
