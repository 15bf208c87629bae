//! The core `v1` view of `events.k8s.io/v1` Events.
//!
//! On a real cluster both Event APIs are views of one storage, so events written with
//! `events.k8s.io/v1` (what kube-runtime's `Recorder` writes) show up in `kubectl describe`,
//! which lists core `v1` events by `involvedObject`. kubemem stores the two APIs separately;
//! lists of core `v1` events also return the `events.k8s.io/v1` ones converted as the API server
//! converts them (`regarding` → `involvedObject`, `note` → `message`, `deprecated*` → the old
//! fields). Gets and watches of core `v1` events do not include them.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::registry::ResourceInfo;
use super::store::State;

const EVENTS_V1: &str = "events.k8s.io/v1/events";

/// Whether `res` is the core `v1` Event resource.
pub(crate) fn is_core_event(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.version == "v1" && res.kind == "Event"
}

/// `events.k8s.io/v1` events (in `namespace`, or all) converted to core `v1` Events.
pub(crate) fn converted(state: &State, namespace: Option<&str>) -> Vec<Arc<Value>> {
    state
        .range(EVENTS_V1, namespace)
        .map(|(_, s)| Arc::new(to_core(&s.obj)))
        .collect()
}

/// Converts one `events.k8s.io/v1` Event into a core `v1` Event.
pub(crate) fn to_core(ev: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String("v1".into()));
    out.insert("kind".into(), Value::String("Event".into()));
    let renames = [
        ("metadata", "metadata"),
        ("regarding", "involvedObject"),
        ("related", "related"),
        ("note", "message"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    for (from, to) in renames {
        if let Some(v) = ev.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_v1_fields_map_to_core_fields() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "AzlinVM", "name": "dev"},
            "note": "VM is running", "reason": "Ready", "type": "Normal",
            "reportingController": "azlin-operator", "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}
        });
        let core = to_core(&ev);
        assert_eq!(core["apiVersion"], json!("v1"));
        assert_eq!(core["involvedObject"]["name"], json!("dev"));
        assert_eq!(core["message"], json!("VM is running"));
        assert_eq!(core["reportingComponent"], json!("azlin-operator"));
        assert_eq!(core["series"]["count"], json!(2));
        assert!(core.get("note").is_none());
    }
}
