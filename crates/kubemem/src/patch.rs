//! Patch application (JSON merge, JSON patch, strategic merge as merge) and server-side apply
//! with per-manager field ownership.
//!
//! Field ownership is tracked at leaf granularity: map keys are descended into, lists and scalars
//! are atomic leaves (the default for CRD schemas without `x-kubernetes-list-type: map`).
//! `metadata` is tracked only for `labels`, `annotations`, `finalizers` and `ownerReferences`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::error::ApiError;

/// A field path: map keys from the object root.
pub type FieldPath = Vec<String>;

/// Which endpoint a write went through; decides which fields it may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The main resource endpoint.
    Main,
    /// The `/status` subresource.
    Status,
}

/// Kind of write a manager did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, replace or a non-apply patch.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Field ownership of one object: (manager, operation) → owned leaf paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields(BTreeMap<(String, Operation), BTreeSet<FieldPath>>);

/// Supported patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json` (treated as a merge patch)
    Strategic,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchKind {
    /// Parses a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// Applies a merge or JSON patch body to `doc`.
pub fn apply_patch(kind: PatchKind, doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            json_patch::merge(doc, &p);
            Ok(())
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // Like the API server (evanphx/json-patch), a `test` for `null` passes on a missing path;
            // kube-runtime's finalizer helper relies on it.
            for op in &p.0 {
                if let json_patch::PatchOperation::Test(t) = op
                    && t.value.is_null()
                    && doc.pointer(t.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(doc, std::slice::from_ref(op))
                    .map_err(|e| ApiError::patch_failed(e.to_string()))?;
            }
            Ok(())
        }
        PatchKind::Apply => Err(ApiError::bad_request(
            "apply patches are handled by server-side apply",
        )),
    }
}

/// Parses an apply body (YAML or JSON; JSON is YAML).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("apply body is not UTF-8: {e}")))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("invalid apply body: {e}")))
}

/// Whether a write through `endpoint` owns/touches `path`.
pub fn in_scope(path: &[String], endpoint: Endpoint, status_subresource: bool) -> bool {
    let Some(first) = path.first() else {
        return false;
    };
    match first.as_str() {
        "apiVersion" | "kind" => false,
        "metadata" => {
            endpoint == Endpoint::Main
                && matches!(
                    path.get(1).map(String::as_str),
                    Some("labels" | "annotations" | "finalizers" | "ownerReferences")
                )
        }
        "status" if status_subresource => endpoint == Endpoint::Status,
        _ => !status_subresource || endpoint == Endpoint::Main,
    }
}

/// All leaf paths of `v` (empty maps below the root count as leaves).
pub fn leaves(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                out.insert(prefix.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Removes the value at `path` and prunes nested maps left empty along it.
fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(m)) = parents.iter().try_fold(&mut *v, |cur, k| cur.get_mut(k)) {
        m.remove(last);
    }
    // Nested maps left empty go too; top-level fields (`spec`, `status`, `metadata`) stay.
    for depth in (2..parents.len() + 1).rev() {
        let prefix = &path[..depth];
        let empty = value_at(v, prefix)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty);
        if !empty {
            break;
        }
        let Some((k, ps)) = prefix.split_last() else {
            break;
        };
        if let Some(Value::Object(m)) = ps.iter().try_fold(&mut *v, |cur, k| cur.get_mut(k)) {
            m.remove(k);
        }
    }
}

/// Deep merge of an applied configuration: maps merge key by key, everything else is replaced;
/// `null` removes the key.
fn deep_merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, sv) in s {
                if sv.is_null() {
                    d.remove(k);
                } else if let Some(dv) = d.get_mut(k)
                    && dv.is_object()
                    && sv.is_object()
                {
                    deep_merge(dv, sv);
                } else {
                    d.insert(k.clone(), sv.clone());
                }
            }
        }
        (dst, src) => *dst = src.clone(),
    }
}

/// Keeps only the parts of `v` in scope of `endpoint` (plus apiVersion, kind, metadata.name/namespace).
fn restrict(v: &Value, endpoint: Endpoint, status_subresource: bool) -> Value {
    let mut out = Value::Object(Map::new());
    for p in leaves(v) {
        if in_scope(&p, endpoint, status_subresource)
            && let Some(val) = value_at(v, &p)
        {
            set_at(&mut out, &p, val.clone());
        }
    }
    out
}

fn set_at(v: &mut Value, path: &[String], val: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), val);
    }
}

impl ManagedFields {
    /// Records a non-apply write by `manager`: changed leaves move to it, removed leaves are forgotten.
    pub fn record_update(
        &mut self,
        manager: &str,
        old: &Value,
        new: &Value,
        endpoint: Endpoint,
        status_subresource: bool,
    ) {
        let new_leaves = leaves(new);
        let changed: Vec<FieldPath> = new_leaves
            .iter()
            .filter(|p| in_scope(p, endpoint, status_subresource))
            .filter(|p| value_at(old, p) != value_at(new, p))
            .cloned()
            .collect();
        let removed: Vec<FieldPath> = leaves(old)
            .into_iter()
            .filter(|p| in_scope(p, endpoint, status_subresource))
            .filter(|p| value_at(new, p).is_none())
            .collect();
        for set in self.0.values_mut() {
            set.retain(|q| {
                !changed.iter().any(|p| overlaps(p, q)) && !removed.iter().any(|p| q.starts_with(p))
            });
        }
        if !changed.is_empty() {
            self.0
                .entry((manager.to_string(), Operation::Update))
                .or_default()
                .extend(changed);
        }
        self.0.retain(|_, s| !s.is_empty());
    }

    /// Server-side apply of `applied` by `manager` onto `live` (`None` when the object is new).
    ///
    /// Returns the merged object. Fields the manager applied before but no longer applies are removed
    /// unless another manager also owns them. Fields owned by another manager with a different value
    /// conflict (409) unless `force`, which takes them over.
    pub fn apply(
        &mut self,
        manager: &str,
        live: &Value,
        applied: &Value,
        force: bool,
        endpoint: Endpoint,
        status_subresource: bool,
    ) -> Result<Value, ApiError> {
        let applied = restrict(applied, endpoint, status_subresource);
        let applied_set = leaves(&applied);
        let applied_set: BTreeSet<FieldPath> =
            applied_set.into_iter().filter(|p| !p.is_empty()).collect();
        let me = (manager.to_string(), Operation::Apply);

        let mut conflicts: BTreeSet<(String, FieldPath)> = BTreeSet::new();
        for p in &applied_set {
            if value_at(&applied, p) == value_at(live, p) {
                continue;
            }
            for ((name, _), set) in &self.0 {
                if name == manager {
                    continue;
                }
                for q in set.iter().filter(|q| overlaps(p, q)) {
                    conflicts.insert((name.clone(), q.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflict_error(&conflicts.into_iter().collect::<Vec<_>>()));
        }
        for (name, q) in &conflicts {
            for ((n, _), set) in self.0.iter_mut() {
                if n == name {
                    set.remove(q);
                }
            }
        }

        let prev = self.0.get(&me).cloned().unwrap_or_default();
        let mut out = live.clone();
        for p in prev
            .iter()
            .filter(|p| in_scope(p, endpoint, status_subresource))
        {
            if applied_set.iter().any(|a| overlaps(a, p)) {
                continue;
            }
            let shared = self
                .0
                .iter()
                .any(|(k, set)| k != &me && set.iter().any(|q| overlaps(p, q)));
            if !shared {
                remove_at(&mut out, p);
            }
        }
        deep_merge(&mut out, &applied);

        let mut mine: BTreeSet<FieldPath> = prev
            .into_iter()
            .filter(|p| !in_scope(p, endpoint, status_subresource))
            .collect();
        mine.extend(applied_set);
        self.0.insert(me, mine);
        self.0.retain(|_, s| !s.is_empty());
        Ok(out)
    }

    /// Renders `metadata.managedFields` (FieldsV1 format, without timestamps so no-op writes stay no-ops).
    pub fn render(&self, api_version: &str) -> Value {
        let entries: Vec<Value> = self
            .0
            .iter()
            .map(|((manager, op), set)| {
                let mut fields = Value::Object(Map::new());
                for p in set {
                    let fp: FieldPath = p.iter().map(|k| format!("f:{k}")).collect();
                    set_at(&mut fields, &fp, Value::Object(Map::new()));
                }
                serde_json::json!({
                    "manager": manager,
                    "operation": op.as_str(),
                    "apiVersion": api_version,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                })
            })
            .collect();
        Value::Array(entries)
    }

    /// Managers and operations that own at least one field.
    pub fn managers(&self) -> Vec<(String, Operation)> {
        self.0.keys().cloned().collect()
    }
}

fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            serde_json::json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\""),
                "field": format!(".{}", p.join(".")),
            })
        })
        .collect();
    let list: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.join(".")))
        .collect();
    ApiError::new(
        http::StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("\n")
        ),
    )
    .with_details(serde_json::json!({ "causes": causes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_removes_dropped_field_and_detects_conflicts() {
        let mut mf = ManagedFields::default();
        let live = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}});
        let a1 = json!({"spec": {"a": 1, "b": 2}});
        let o1 = mf
            .apply("m1", &live, &a1, false, Endpoint::Main, true)
            .expect("apply");
        assert_eq!(o1["spec"], json!({"a": 1, "b": 2}));
        let a2 = json!({"spec": {"a": 1}});
        let o2 = mf
            .apply("m1", &o1, &a2, false, Endpoint::Main, true)
            .expect("apply");
        assert_eq!(o2["spec"], json!({"a": 1}));
        let err = mf
            .apply(
                "m2",
                &o2,
                &json!({"spec": {"a": 5}}),
                false,
                Endpoint::Main,
                true,
            )
            .expect_err("conflict");
        assert_eq!(err.code, 409);
        let o3 = mf
            .apply(
                "m2",
                &o2,
                &json!({"spec": {"a": 5}}),
                true,
                Endpoint::Main,
                true,
            )
            .expect("forced");
        assert_eq!(o3["spec"]["a"], 5);
        // same value: shared ownership, no conflict
        assert!(
            mf.apply(
                "m3",
                &o3,
                &json!({"spec": {"a": 5}}),
                false,
                Endpoint::Main,
                true
            )
            .is_ok()
        );
    }
}
