//! Server-side printing: the `meta.k8s.io/v1` `Table` answer to a get or list whose `Accept`
//! asks for `application/json;as=Table;v=v1;g=meta.k8s.io` (what `kubectl get` sends).
//!
//! Columns are `Name` followed by the resource's [`PrinterColumn`]s (a CRD's
//! `additionalPrinterColumns`, evaluated with the simple JSONPath forms CRDs use: `.a.b`,
//! `.a[0].b`, `.a[*].b` and `.a[?(@.k=="v")].b`), or for a few core kinds the columns the real
//! API server prints. Cells follow the column type as the API server's CRD table convertor
//! does: `date` becomes a human duration (`5m3s`), `integer`/`number`/`boolean` stay JSON
//! values, missing values are `null` (kubectl shows `<none>`). Each row carries the object as
//! `PartialObjectMetadata` (`includeObject=Metadata`, the default), in full (`Object`) or not
//! at all (`None`). Watches are not converted (`kubectl get -w` is not supported).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::handlers;
use super::registry::{PrinterColumn, ResourceInfo};

/// What each row's `object` holds (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (absent means `Metadata`).
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(ApiError::bad_request(format!(
                "unsupported includeObject value {other:?}: must be None, Metadata or Object"
            ))),
        }
    }
}

/// True when an `Accept` header asks for a `meta.k8s.io/v1` Table.
pub(crate) fn requested(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating \
    resources, although some resources may allow a client to request the generation of an \
    appropriate name automatically. Name is primarily intended for creation idempotence and \
    configuration definition. Cannot be updated.";

/// How a column's cell is computed.
enum Source<'a> {
    /// Evaluate a CRD printer column.
    Path(&'a PrinterColumn),
    /// A built-in computation for a core kind.
    Builtin(fn(&Value) -> Value),
}

struct Column<'a> {
    name: &'a str,
    type_: &'a str,
    format: &'a str,
    description: &'a str,
    priority: i32,
    source: Source<'a>,
}

fn column_defs(res: &ResourceInfo) -> Vec<Column<'_>> {
    let name = Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DESCRIPTION,
        priority: 0,
        source: Source::Builtin(|o| json!(handlers::name_of(o))),
    };
    let builtin = |name, type_, description, source| Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
        source: Source::Builtin(source),
    };
    let age = builtin(
        "Age",
        "string",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        |o| age_cell(o.pointer("/metadata/creationTimestamp")),
    );
    if !res.custom {
        match (res.group.as_str(), res.kind.as_str()) {
            ("", "Secret") => {
                return vec![
                    name,
                    builtin("Type", "string", "The type of the secret", |o| {
                        json!(o.get("type").and_then(Value::as_str).unwrap_or("Opaque"))
                    }),
                    builtin("Data", "string", "The number of data items", |o| {
                        json!(o.get("data").and_then(Value::as_object).map_or(0, Map::len))
                    }),
                    age,
                ];
            }
            ("", "ConfigMap") => {
                return vec![
                    name,
                    builtin("Data", "string", "The number of data items", |o| {
                        let n = |k: &str| o.get(k).and_then(Value::as_object).map_or(0, Map::len);
                        json!(n("data") + n("binaryData"))
                    }),
                    age,
                ];
            }
            ("", "Namespace") => {
                return vec![
                    name,
                    builtin("Status", "string", "The status of the namespace", |o| {
                        json!(
                            o.pointer("/status/phase")
                                .and_then(Value::as_str)
                                .unwrap_or("Active")
                        )
                    }),
                    age,
                ];
            }
            (_, "Event") => {
                return vec![
                    builtin("Last Seen", "string", "Time of the last occurrence", |o| {
                        let at = ["/lastTimestamp", "/eventTime", "/deprecatedLastTimestamp"]
                            .iter()
                            .chain(
                                ["/series/lastObservedTime", "/metadata/creationTimestamp"].iter(),
                            )
                            .find_map(|p| o.pointer(p).filter(|v| v.is_string()));
                        age_cell(at)
                    }),
                    builtin("Type", "string", "Normal or Warning", |o| {
                        o.get("type").cloned().unwrap_or(Value::Null)
                    }),
                    builtin("Reason", "string", "Why the event was emitted", |o| {
                        o.get("reason").cloned().unwrap_or(Value::Null)
                    }),
                    builtin("Object", "string", "The object the event is about", |o| {
                        let r = o.get("involvedObject").or_else(|| o.get("regarding"));
                        let kind = r.and_then(|r| r.get("kind")).and_then(Value::as_str);
                        let name = r.and_then(|r| r.get("name")).and_then(Value::as_str);
                        json!(format!(
                            "{}/{}",
                            kind.unwrap_or("").to_lowercase(),
                            name.unwrap_or("")
                        ))
                    }),
                    builtin("Message", "string", "A human-readable description", |o| {
                        o.get("message")
                            .or_else(|| o.get("note"))
                            .cloned()
                            .unwrap_or(Value::Null)
                    }),
                ];
            }
            _ => {}
        }
    }
    std::iter::once(name)
        .chain(res.printer_columns.iter().map(|c| Column {
            name: &c.name,
            type_: &c.type_,
            format: &c.format,
            description: &c.description,
            priority: c.priority,
            source: Source::Path(c),
        }))
        .collect()
}

/// Converts a get (one object) or list (`items`) response body into a Table.
pub(crate) fn to_table(res: &ResourceInfo, body: &Value, include: IncludeObject) -> Value {
    let columns = column_defs(res);
    let (items, metadata): (&[Value], Value) = match body.get("items").and_then(Value::as_array) {
        Some(items) => (
            items,
            body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        ),
        None => (
            std::slice::from_ref(body),
            json!({"resourceVersion": body.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))}),
        ),
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns
                .iter()
                .map(|c| match &c.source {
                    Source::Builtin(f) => f(obj),
                    Source::Path(pc) => cell(pc, obj),
                })
                .collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = handlers::metadata_only(obj),
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let defs: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// The cell of a CRD printer column, typed as the API server's CRD table convertor does.
fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    let Some(path) = JsonPath::parse(&col.json_path) else {
        return Value::Null;
    };
    let Some(v) = path.eval(obj).into_iter().next() else {
        return Value::Null;
    };
    match col.type_.as_str() {
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, |i| json!(i)),
            Value::String(s) => s.parse::<i64>().map_or(Value::Null, |i| json!(i)),
            _ => Value::Null,
        },
        "number" => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => s.parse::<f64>().map_or(Value::Null, |f| json!(f)),
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) => s.parse::<bool>().map_or(Value::Null, |b| json!(b)),
            _ => Value::Null,
        },
        "date" => age_cell(Some(v)),
        _ => match v {
            Value::String(_) => v.clone(),
            Value::Null => Value::Null,
            other => json!(other.to_string()),
        },
    }
}

/// A timestamp rendered as the time since then (`<unknown>` when unparsable, null when absent).
fn age_cell(ts: Option<&Value>) -> Value {
    let Some(s) = ts.and_then(Value::as_str) else {
        return Value::Null;
    };
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => json!(human_duration(Utc::now().signed_duration_since(t))),
        Err(_) => json!("<unknown>"),
    }
}

/// Human-readable duration as Kubernetes prints ages (`45s`, `5m3s`, `3h10m`, `2d4h`, `1y30d`).
pub(crate) fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// One step of a simple JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[n]`.
    Index(usize),
    /// `[*]` or `.*`.
    All,
    /// `[?(@.a.b=="v")]` (also `!=`).
    Filter {
        path: Vec<String>,
        value: Value,
        negate: bool,
    },
}

/// The JSONPath subset used by printer columns.
#[derive(Debug, Clone, PartialEq)]
struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parses `.a.b[0].c[?(@.type=="Ready")].status` (optionally wrapped in `{...}`).
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(s);
        let s = s.strip_prefix('$').unwrap_or(s);
        let mut steps = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() {
                    return None;
                }
                steps.push(if name == "*" {
                    Step::All
                } else {
                    Step::Field(name.to_string())
                });
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                let inner = r[..end].trim();
                steps.push(Self::bracket(inner)?);
                rest = &r[end + 1..];
            } else {
                return None;
            }
        }
        Some(Self(steps))
    }

    fn bracket(inner: &str) -> Option<Step> {
        if inner == "*" {
            return Some(Step::All);
        }
        if let Ok(i) = inner.parse::<usize>() {
            return Some(Step::Index(i));
        }
        if let Some(q) = unquote(inner) {
            return Some(Step::Field(q));
        }
        let cond = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
        let (lhs, rhs, negate) = if let Some((l, r)) = cond.split_once("!=") {
            (l, r, true)
        } else {
            let (l, r) = cond.split_once("==")?;
            (l, r, false)
        };
        let path: Vec<String> = lhs
            .trim()
            .strip_prefix("@.")?
            .split('.')
            .map(str::to_string)
            .collect();
        let rhs = rhs.trim();
        let value = match unquote(rhs) {
            Some(s) => Value::String(s),
            None => serde_json::from_str(rhs).ok()?,
        };
        Some(Step::Filter {
            path,
            value,
            negate,
        })
    }

    /// All values the path selects, in document order.
    fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(name) => next.extend(v.get(name.as_str())),
                    Step::Index(i) => next.extend(v.get(*i)),
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(o) => next.extend(o.values()),
                        _ => {}
                    },
                    Step::Filter {
                        path,
                        value,
                        negate,
                    } => {
                        if let Value::Array(a) = v {
                            next.extend(a.iter().filter(|item| {
                                let got = path.iter().try_fold(*item, |acc, k| acc.get(k.as_str()));
                                (got == Some(value)) != *negate
                            }));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

fn unquote(s: &str) -> Option<String> {
    ['"', '\''].iter().find_map(|q| {
        s.strip_prefix(*q)
            .and_then(|r| r.strip_suffix(*q))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(path: &str, type_: &str) -> PrinterColumn {
        PrinterColumn {
            name: "X".into(),
            type_: type_.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        }
    }

    #[test]
    fn jsonpath_forms() {
        let o = json!({
            "spec": {"size": "S", "n": 3, "on": true, "list": [{"a": 1}, {"a": 2}]},
            "status": {"conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"}
            ]}
        });
        assert_eq!(cell(&col(".spec.size", "string"), &o), json!("S"));
        assert_eq!(cell(&col(".spec.n", "integer"), &o), json!(3));
        assert_eq!(cell(&col(".spec.on", "boolean"), &o), json!(true));
        assert_eq!(cell(&col(".spec.list[1].a", "integer"), &o), json!(2));
        assert_eq!(cell(&col(".spec.list[*].a", "integer"), &o), json!(1));
        assert_eq!(
            cell(
                &col(r#".status.conditions[?(@.type=="Ready")].status"#, "string"),
                &o
            ),
            json!("True")
        );
        assert_eq!(
            cell(
                &col(".status.conditions[?(@.type=='Synced')].status", "string"),
                &o
            ),
            json!("False")
        );
        assert_eq!(cell(&col(".status.phase", "string"), &o), Value::Null);
        assert_eq!(cell(&col(".spec.n", "string"), &o), json!("3"));
        assert!(JsonPath::parse(".a[").is_none());
    }

    #[test]
    fn list_tables_follow_include_object() {
        let mut res = ResourceInfo::core("azlin.io", "v1alpha1", "azlinvms", "AzlinVM", true);
        res.custom = true;
        res.printer_columns = vec![
            PrinterColumn {
                priority: 1,
                ..col(".spec.location", "string")
            },
            PrinterColumn::age(),
        ];
        let list = json!({
            "kind": "AzlinVMList",
            "metadata": {"resourceVersion": "7", "continue": "c"},
            "items": [{"metadata": {"name": "a", "namespace": "default"}, "spec": {"location": "westus2"}}],
        });
        let t = to_table(&res, &list, IncludeObject::Metadata);
        assert_eq!(t["kind"], json!("Table"));
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "7", "continue": "c"})
        );
        let names: Vec<&Value> = t["columnDefinitions"]
            .as_array()
            .map(|c| c.iter().map(|d| &d["name"]).collect())
            .unwrap_or_default();
        assert_eq!(names, vec!["Name", "X", "Age"]);
        assert_eq!(t["columnDefinitions"][1]["priority"], json!(1));
        assert_eq!(t["rows"][0]["cells"], json!(["a", "westus2", null]));
        assert_eq!(
            t["rows"][0]["object"]["kind"],
            json!("PartialObjectMetadata")
        );
        let full = to_table(&res, &list, IncludeObject::Object);
        assert_eq!(
            full["rows"][0]["object"]["spec"]["location"],
            json!("westus2")
        );
        let none = to_table(&res, &list, IncludeObject::None);
        assert!(none["rows"][0].get("object").is_none());
        assert!(IncludeObject::parse(Some("Everything")).is_err());
    }

    #[test]
    fn durations_as_kubectl_prints_them() {
        let d = chrono::TimeDelta::seconds;
        assert_eq!(human_duration(d(45)), "45s");
        assert_eq!(human_duration(d(303)), "5m3s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600 + 600)), "3h10m");
        assert_eq!(human_duration(d(20 * 3600)), "20h");
        assert_eq!(human_duration(d(52 * 3600)), "2d4h");
        assert_eq!(human_duration(d(30 * 86400)), "30d");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }

    #[test]
    fn accept_header_detection() {
        assert!(requested(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!requested("application/json"));
        assert!(!requested(
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
        ));
    }
}
