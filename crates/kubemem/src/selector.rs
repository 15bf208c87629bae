//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!exists`) and field selectors
//! (`metadata.name`, `metadata.namespace`, and the Event fields `involvedObject.*`, `regarding.*`,
//! `reason`, `type`, `source`, `reportingComponent`, `reportingController` that `kubectl describe`
//! uses; the Event fields are accepted for every kind, where they match nothing).

use serde_json::Value;

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {whole}")))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {p}"));
            if let Some(key) = p.strip_prefix('!') {
                reqs.push(LabelReq::NotExists(key.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(LabelReq::NotEq(k.trim().to_string(), v.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
            } else if let Some(idx) = p.find(" notin ") {
                let vals = parse_set(&p[idx + 7..], p)?;
                reqs.push(LabelReq::NotIn(p[..idx].trim().to_string(), vals));
            } else if let Some(idx) = p.find(" in ") {
                let vals = parse_set(&p[idx + 4..], p)?;
                reqs.push(LabelReq::In(p[..idx].trim().to_string(), vals));
            } else if p.contains(char::is_whitespace) || p.contains('(') {
                return Err(bad());
            } else {
                reqs.push(LabelReq::Exists(p.to_string()));
            }
        }
        Ok(Self(reqs))
    }

    /// True when the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    pointer: &'static str,
    value: String,
    negate: bool,
}

/// A parsed field selector over `metadata.name`, `metadata.namespace` and Event fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<FieldReq>);

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter; other fields are rejected with 400 as the server does.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, negate) = if let Some((f, v)) = p.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = p.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = p.split_once('=') {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{p}'"
                )));
            };
            let pointer = match field.trim() {
                "metadata.name" => "/metadata/name",
                "metadata.namespace" => "/metadata/namespace",
                "involvedObject.kind" => "/involvedObject/kind",
                "involvedObject.namespace" => "/involvedObject/namespace",
                "involvedObject.name" => "/involvedObject/name",
                "involvedObject.uid" => "/involvedObject/uid",
                "involvedObject.apiVersion" => "/involvedObject/apiVersion",
                "involvedObject.resourceVersion" => "/involvedObject/resourceVersion",
                "involvedObject.fieldPath" => "/involvedObject/fieldPath",
                "regarding.kind" => "/regarding/kind",
                "regarding.namespace" => "/regarding/namespace",
                "regarding.name" => "/regarding/name",
                "regarding.uid" => "/regarding/uid",
                "reason" => "/reason",
                "type" => "/type",
                "reportingComponent" => "/reportingComponent",
                "reportingController" => "/reportingController",
                "source" => "/source/component",
                other => {
                    return Err(ApiError::bad_request(format!(
                        "field label not supported: {other}"
                    )));
                }
            };
            reqs.push(FieldReq {
                pointer,
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(Self(reqs))
    }

    /// True when all requirements hold.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let v = obj.pointer(r.pointer).and_then(Value::as_str).unwrap_or("");
            (v == r.value) != r.negate
        })
    }
}

/// Label and field selector together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    /// Label part.
    pub labels: LabelSelector,
    /// Field part.
    pub fields: FieldSelector,
}

impl Selector {
    /// Parses optional `labelSelector` and `fieldSelector` parameters.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            labels: labels
                .map(LabelSelector::parse)
                .transpose()?
                .unwrap_or_default(),
            fields: fields
                .map(FieldSelector::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// True when both parts match.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_operators() {
        let o = json!({"metadata": {"labels": {"app": "a", "tier": "web"}}});
        let m = |s: &str| LabelSelector::parse(s).map(|l| l.matches(&o));
        assert_eq!(m("app=a"), Ok(true));
        assert_eq!(m("app==a,tier"), Ok(true));
        assert_eq!(m("app!=a"), Ok(false));
        assert_eq!(m("tier in (web, db)"), Ok(true));
        assert_eq!(m("tier notin (web)"), Ok(false));
        assert_eq!(m("!missing,app in (a)"), Ok(true));
        assert_eq!(m("!app"), Ok(false));
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "x", "namespace": "ns"}});
        assert!(FieldSelector::parse("metadata.name=x").is_ok_and(|f| f.matches(&o)));
        assert!(FieldSelector::parse("metadata.namespace!=ns").is_ok_and(|f| !f.matches(&o)));
        assert!(FieldSelector::parse("spec.x=1").is_err());
        let ev = json!({"involvedObject": {"kind": "AzlinVM", "name": "dev", "uid": "u"}});
        assert!(
            FieldSelector::parse(
                "involvedObject.kind=AzlinVM,involvedObject.name=dev,involvedObject.uid=u"
            )
            .is_ok_and(|f| f.matches(&ev))
        );
    }
}
