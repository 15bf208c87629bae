//! `authorization.k8s.io/v1` access reviews for `kubectl auth can-i`.
//!
//! The in-memory API has no authentication or authorization: it answers as a kube-apiserver
//! running with `--authorization-mode=AlwaysAllow`. A `SelfSubjectAccessReview` is allowed
//! (after the spec check the API server makes: exactly one of `resourceAttributes` and
//! `nonResourceAttributes`), a `SelfSubjectRulesReview` lists the rule allowing every verb on
//! every resource and non-resource URL. Reviews are answered `201 Created` and never stored.

use serde_json::{Value, json};

use super::error::{ApiError, FieldCause};
use super::registry::ResourceInfo;

/// Whether `res` is one of the access reviews answered here.
pub(crate) fn is_review(res: &ResourceInfo) -> bool {
    res.group == "authorization.k8s.io"
        && matches!(
            res.kind.as_str(),
            "SelfSubjectAccessReview" | "SelfSubjectRulesReview"
        )
}

/// Answers the review `body` posted to `res`.
pub(crate) fn review(res: &ResourceInfo, mut body: Value) -> Result<Value, ApiError> {
    let av = res.api_version();
    for (field, want) in [("apiVersion", av.as_str()), ("kind", res.kind.as_str())] {
        if let Some(given) = body.get(field).and_then(Value::as_str)
            && given != want
        {
            return Err(ApiError::bad_request(format!(
                "the {} in the data ({given}) does not match the expected {} ({want})",
                if field == "kind" {
                    "kind"
                } else {
                    "API version"
                },
                if field == "kind" {
                    "kind"
                } else {
                    "API version"
                },
            )));
        }
    }
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    obj.insert("apiVersion".into(), json!(av));
    obj.insert("kind".into(), json!(res.kind));
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    let status = if res.kind == "SelfSubjectAccessReview" {
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let present = |f: &str| spec.get(f).is_some_and(|v| !v.is_null());
        if present("resourceAttributes") == present("nonResourceAttributes") {
            let given = spec
                .get("nonResourceAttributes")
                .map_or_else(|| "null".to_string(), Value::to_string);
            return Err(ApiError::invalid(
                res,
                "",
                &[FieldCause::invalid(
                    "spec.resourceAttributes",
                    format!(
                        "Invalid value: \"{given}\": exactly one of nonResourceAttributes or \
                         resourceAttributes must be specified"
                    ),
                )],
            ));
        }
        json!({"allowed": true})
    } else {
        json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        })
    };
    obj.insert("status".into(), status);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssar() -> ResourceInfo {
        ResourceInfo::review(
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
        )
    }

    #[test]
    fn access_reviews_are_allowed_and_checked() {
        let out = review(
            &ssar(),
            json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "azlinvms"}}}),
        )
        .expect("allowed");
        assert_eq!(out["status"], json!({"allowed": true}));
        assert_eq!(out["spec"]["resourceAttributes"]["verb"], json!("create"));
        let err = review(&ssar(), json!({"spec": {}})).expect_err("neither attribute set");
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .contains("exactly one of nonResourceAttributes or resourceAttributes"),
            "{err}"
        );
    }
}
