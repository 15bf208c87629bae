//! The `scale` subresource of custom resources (`subresources.scale` of a CRD version): `GET`,
//! `PUT` and `PATCH` of `.../{name}/scale` with an `autoscaling/v1` `Scale` built from the
//! object's `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath`, as the
//! apiextensions API server serves it (`kubectl scale`, HorizontalPodAutoscalers).
//!
//! A write sets the spec replicas field of the object and goes through the same update as a write
//! of the main resource (admission, generation, field ownership, dry run). Merge, JSON and
//! strategic merge patches of the `Scale` are supported; server-side apply of a `Scale` is not
//! (`415`).

use http::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, FieldCause};
use super::handlers::{self, UpdateOwnership};
use super::patch::{Endpoint, PatchKind, apply_patch};
use super::registry::ScaleSubresource;
use super::router::{Call, Reply, Target, Verb};
use super::store::State;

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('.').split('.').collect()
}

fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path).iter().try_fold(obj, |v, s| v.get(*s))
}

fn set(obj: &mut Value, path: &str, value: Value) {
    let segs = segments(path);
    let mut cur = obj;
    for (i, s) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segs.len() {
            map.insert((*s).to_string(), value);
            return;
        }
        cur = map.entry((*s).to_string()).or_insert_with(|| json!({}));
    }
}

/// The `Scale` of `obj`, and whether its spec replicas field is set.
fn scale_of(scale: &ScaleSubresource, obj: &Value) -> (Value, bool) {
    let spec = at(obj, &scale.spec_replicas_path).and_then(Value::as_i64);
    let status = at(obj, &scale.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut meta = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.pointer(&format!("/metadata/{f}")) {
            meta.insert(f.to_string(), v.clone());
        }
    }
    let mut status_obj = json!({"replicas": status});
    if let Some(sel) = scale
        .label_selector_path
        .as_deref()
        .and_then(|p| at(obj, p))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        status_obj["selector"] = json!(sel);
    }
    (
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": meta,
            "spec": {"replicas": spec.unwrap_or(0)},
            "status": status_obj,
        }),
        spec.is_some(),
    )
}

fn internal(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("Internal error occurred: {message}"),
    )
    .with_details(json!({"causes": [{"message": message}]}))
}

/// Handles a request to the `scale` subresource of `target`.
pub(crate) fn dispatch(
    state: &mut State,
    target: &Target,
    verb: Verb,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let res = &target.res;
    let Some(scale) = res.scale.clone() else {
        return Err(ApiError::unknown_path());
    };
    let name = target.name.clone().unwrap_or_default();
    if res.namespaced && target.namespace.is_none() {
        return Err(ApiError::unknown_path());
    }
    let k = handlers::key(res, target.namespace.as_deref().unwrap_or(""), &name);
    let stored = state
        .get(&k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res, &name))?;
    let (current, has_replicas) = scale_of(&scale, &stored.obj);
    let wanted = match verb {
        Verb::Get => {
            if !has_replicas {
                return Err(internal(format!(
                    "the spec replicas field {:?} does not exist",
                    scale.spec_replicas_path
                )));
            }
            return Ok(Reply::Json(StatusCode::OK, current));
        }
        Verb::Update => super::router::parse_body(call.body)?,
        Verb::Patch => {
            let kind = PatchKind::from_content_type(call.content_type)?;
            if kind == PatchKind::Apply {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types \
                         include: application/json-patch+json, application/merge-patch+json, \
                         application/strategic-merge-patch+json (got {})",
                        call.content_type
                    ),
                ));
            }
            let mut doc = current.clone();
            if !has_replicas && let Some(spec) = doc.get_mut("spec") {
                spec["replicas"] = Value::Null;
            }
            apply_patch(kind, &mut doc, call.body)?;
            doc
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    for (field, want) in [("apiVersion", "autoscaling/v1"), ("kind", "Scale")] {
        if let Some(given) = wanted.get(field).and_then(Value::as_str)
            && given != want
        {
            return Err(ApiError::bad_request(format!(
                "wrong object passed to Scale update: {field} {given:?}"
            )));
        }
    }
    let replicas = match wanted.pointer("/spec/replicas") {
        Some(Value::Null) | None if verb == Verb::Patch && !has_replicas => {
            return Err(ApiError::bad_request(format!(
                "the spec replicas field {:?} cannot be empty",
                scale.spec_replicas_path
            )));
        }
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: {v} is not an integer"
            ))
        })?,
    };
    if replicas < 0 || replicas > i64::from(i32::MAX) {
        let why = if replicas < 0 {
            "should be a non-negative integer".to_string()
        } else {
            format!("should be less than or equal to {}", i32::MAX)
        };
        return Err(ApiError::invalid(
            res,
            &name,
            &[FieldCause::invalid(
                scale.spec_replicas_path.clone(),
                format!("Invalid value: {replicas}: {why}"),
            )],
        ));
    }
    handlers::check_rv(
        res,
        &k,
        state,
        wanted
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str),
    )?;
    let mut obj = (*stored.obj).clone();
    set(&mut obj, &scale.spec_replicas_path, json!(replicas));
    let manager = super::router::manager(call);
    let out = handlers::update(
        state,
        res,
        &k,
        obj,
        Endpoint::Main,
        UpdateOwnership::Update(&manager),
    )?;
    Ok(Reply::Json(StatusCode::OK, scale_of(&scale, &out).0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reads_the_configured_paths() {
        let s = ScaleSubresource {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: Some(".status.selector".into()),
        };
        let obj = json!({
            "metadata": {"name": "f", "namespace": "default", "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {"replicas": 3},
            "status": {"replicas": 2, "selector": "app=f"},
        });
        let (scale, found) = scale_of(&s, &obj);
        assert!(found);
        assert_eq!(scale["spec"]["replicas"], json!(3));
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=f"}));
        assert_eq!(scale["metadata"]["resourceVersion"], json!("7"));
        assert!(scale["metadata"].get("labels").is_none());
        let mut o = json!({});
        set(&mut o, ".spec.replicas", json!(5));
        assert_eq!(o, json!({"spec": {"replicas": 5}}));
    }
}
