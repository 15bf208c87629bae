//! Discovery endpoints built from the registry of served resources, so that `kubectl` and other
//! discovery-driven clients work against a served [`ApiServer`](super::ApiServer):
//! `GET /version`, `/api` (APIVersions), `/apis` (APIGroupList), `/apis/{group}` (APIGroup),
//! `/api/v1` and `/apis/{group}/{version}` (APIResourceList with short names, categories and
//! `<plural>/status`, `<plural>/scale` and `namespaces/finalize` subresources).
//!
//! Only the legacy (unaggregated) format is served, always as `Content-Type: application/json`.
//! Clients that ask for aggregated discovery (`Accept: ...;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`,
//! kubectl ≥ 1.30) read the content type of the answer and fall back to the legacy documents.
//! There is no OpenAPI (`/openapi/v2`, `/openapi/v3` answer 404), which kubectl tolerates.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::error::ApiError;
use super::namespaces;
use super::registry::{Registry, ResourceInfo};

/// Kubernetes version reported by `GET /version`.
pub const KUBE_MAJOR: &str = "1";
/// Kubernetes minor version reported by `GET /version` (matches the kubectl the tests use).
pub const KUBE_MINOR: &str = "35";

const STATUS_VERBS: [&str; 3] = ["get", "patch", "update"];

/// The discovery document for `path`, `None` when `path` is not a discovery path (it is then
/// routed as a resource request), `Some(Err(404))` for an unknown group or version.
pub(crate) fn document(registry: &Registry, path: &str) -> Option<Result<Value, ApiError>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => Some(Ok(version())),
        ["api"] => Some(Ok(api_versions(registry))),
        ["apis"] => Some(Ok(group_list(registry))),
        ["apis", group] => Some(
            group_doc(registry, group)
                .map(|mut g| {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    g
                })
                .ok_or_else(ApiError::unknown_path),
        ),
        ["api", version] => Some(resource_list(registry, "", version)),
        ["apis", group, version] => Some(resource_list(registry, group, version)),
        _ => None,
    }
}

fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-kubemem"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (azlin-operator kubemem)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// Served versions per group, each ordered by Kubernetes version priority (preferred first).
fn groups(registry: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in registry.all() {
        sets.entry(r.group.clone())
            .or_default()
            .insert(r.version.clone());
    }
    sets.into_iter()
        .map(|(g, vs)| {
            let mut vs: Vec<String> = vs.into_iter().collect();
            vs.sort_by(|a, b| version_priority(a, b));
            (g, vs)
        })
        .collect()
}

fn api_versions(registry: &Registry) -> Value {
    let versions = groups(registry).remove("").unwrap_or_default();
    json!({
        "kind": "APIVersions",
        "versions": versions,
        "serverAddressByClientCIDRs": [],
    })
}

fn group_doc(registry: &Registry, group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let versions = groups(registry).remove(group)?;
    let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    Some(json!({
        "name": group,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv),
    }))
}

fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = groups(registry)
        .keys()
        .filter_map(|g| group_doc(registry, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let sub = |name: &str, verbs: &[&str]| {
        json!({
            "name": format!("{}/{name}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        })
    };
    let mut out = vec![main];
    if namespaces::is_namespace(r) {
        out.push(sub("finalize", &["update"]));
    }
    if r.scale.is_some() {
        let mut scale = sub("scale", &STATUS_VERBS);
        scale["group"] = json!("autoscaling");
        scale["version"] = json!("v1");
        scale["kind"] = json!("Scale");
        out.push(scale);
    }
    if r.status_subresource {
        out.push(sub("status", &STATUS_VERBS));
    }
    out
}

fn resource_list(registry: &Registry, group: &str, version: &str) -> Result<Value, ApiError> {
    let mut resources = Vec::new();
    for r in registry
        .all()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.extend(resource_entries(r));
    }
    if resources.is_empty() {
        return Err(ApiError::unknown_path());
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// Parsed `v<major>[(alpha|beta)<minor>]`; `None` for other version strings.
fn parse_kube_version(v: &str) -> Option<(u64, u8, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major: u64 = rest[..digits].parse().ok()?;
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((major, 2, 0));
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (1, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (0, n)
    } else {
        return None;
    };
    let minor: u64 = if num.is_empty() { 0 } else { num.parse().ok()? };
    Some((major, level, minor))
}

/// Orders versions as the API server prefers them: GA before beta before alpha, higher numbers
/// first, then non-Kubernetes version strings alphabetically.
pub(crate) fn version_priority(a: &str, b: &str) -> Ordering {
    match (parse_kube_version(a), parse_kube_version(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_prefers_ga_then_beta_then_alpha() {
        let mut vs = vec![
            "v1alpha1", "foo", "v2beta1", "v1", "v1beta2", "v2", "v1beta1",
        ];
        vs.sort_by(|a, b| version_priority(a, b));
        assert_eq!(
            vs,
            vec![
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    #[test]
    fn core_discovery_documents() {
        let reg = Registry::with_core_kinds();
        let api = document(&reg, "/api").and_then(Result::ok);
        assert_eq!(api.map(|v| v["versions"].clone()), Some(json!(["v1"])));
        let v1 = document(&reg, "/api/v1")
            .and_then(Result::ok)
            .unwrap_or_default();
        let cm = v1["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == "configmaps"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(cm["shortNames"], json!(["cm"]));
        assert_eq!(cm["namespaced"], json!(true));
        let groups = document(&reg, "/apis")
            .and_then(Result::ok)
            .unwrap_or_default();
        assert!(
            groups["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "coordination.k8s.io"))
        );
        assert!(document(&reg, "/apis/nope.io/v1").is_some_and(|r| r.is_err()));
        assert!(document(&reg, "/api/v1/namespaces").is_none());
    }
}
