//! The in-memory resource store, its operations table and persistence to the state file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ArmError, EmulatorError};

/// One stored ARM resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Canonical resource id (casing as created).
    pub id: String,
    /// Full ARM type, e.g. `Microsoft.Compute/virtualMachines`.
    pub kind: String,
    /// The ARM representation answered on GET (without derived parts).
    pub body: Value,
    /// Internal facts that are not part of the ARM body (power state, IP counters).
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// The in-progress operation holding this resource, if any.
    #[serde(default)]
    pub busy: Option<String>,
}

impl Entry {
    /// `properties` of the body (created on demand).
    pub fn props_mut(&mut self) -> &mut Map<String, Value> {
        props_mut(&mut self.body)
    }

    /// A string at a JSON pointer of the body.
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.body.pointer(pointer).and_then(Value::as_str)
    }

    /// An integer at a JSON pointer of the body.
    pub fn i64_at(&self, pointer: &str) -> Option<i64> {
        self.body.pointer(pointer).and_then(Value::as_i64)
    }

    /// An internal string fact.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta.get(key).and_then(Value::as_str)
    }

    /// Sets `properties.provisioningState`.
    pub fn set_provisioning(&mut self, state: &str) {
        self.props_mut()
            .insert("provisioningState".into(), Value::from(state));
    }
}

/// `properties` of a body, created if missing or not an object.
pub fn props_mut(body: &mut Value) -> &mut Map<String, Value> {
    if !body.is_object() {
        *body = Value::Object(Map::new());
    }
    let Value::Object(map) = body else {
        unreachable!("body was just made an object")
    };
    let props = map
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !props.is_object() {
        *props = Value::Object(Map::new());
    }
    match props {
        Value::Object(p) => p,
        _ => unreachable!("properties was just made an object"),
    }
}

/// Status of an asynchronous operation as ARM reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpStatus {
    /// Still running.
    InProgress,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled (e.g. the resource was deleted out of band).
    Canceled,
}

/// What an operation does when it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// PUT/PATCH provisioning; `created` tells 201 from 200.
    Put {
        /// Whether the resource was created by this operation.
        created: bool,
    },
    /// DELETE of a resource (or resource group).
    Delete,
    /// A POST action such as `start`.
    Action(String),
}

/// An asynchronous operation tracked under the operations URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    /// Operation id (a uuid).
    pub id: String,
    /// Target resource id.
    pub resource_id: String,
    /// Resource type of the target.
    pub resource_kind: String,
    /// What completion does.
    pub kind: OpKind,
    /// ARM status.
    pub status: OpStatus,
    /// Error on failure.
    #[serde(default)]
    pub error: Option<Value>,
    /// When it started.
    pub start_time: DateTime<Utc>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<DateTime<Utc>>,
    /// api-version used by the request (echoed in polling URLs).
    pub api_version: String,
    /// An injected asynchronous failure: the operation ends `Failed` with this error.
    #[serde(default)]
    pub fail_with: Option<Value>,
    /// HTTP status the `Location` URL answers for a failed operation.
    #[serde(default)]
    pub error_status: Option<u16>,
}

impl Operation {
    /// The operation status body (`Azure-AsyncOperation` URL answer).
    pub fn status_body(&self) -> Value {
        let mut body = serde_json::json!({
            "name": self.id,
            "status": self.status,
            "startTime": self.start_time.to_rfc3339(),
        });
        if let Some(end) = self.end_time {
            body["endTime"] = Value::from(end.to_rfc3339());
        }
        if let Some(error) = &self.error {
            body["error"] = error.clone();
        }
        body
    }
}

/// All resources and operations; keys are lower-cased ids (ARM ids are case-insensitive).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Store {
    /// Resources by lower-cased id.
    pub resources: BTreeMap<String, Entry>,
    /// Operations by id.
    pub operations: HashMap<String, Operation>,
}

impl Store {
    /// A resource by id (any casing).
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.resources.get(&id.to_ascii_lowercase())
    }

    /// A resource by id for mutation.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.resources.get_mut(&id.to_ascii_lowercase())
    }

    /// Inserts or replaces a resource.
    pub fn put(&mut self, entry: Entry) {
        self.resources.insert(entry.id.to_ascii_lowercase(), entry);
    }

    /// Removes a resource and returns it.
    pub fn remove(&mut self, id: &str) -> Option<Entry> {
        self.resources.remove(&id.to_ascii_lowercase())
    }

    /// Resources whose id starts with `prefix/` (case-insensitive) and have the given type.
    pub fn under<'a>(
        &'a self,
        prefix: &str,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.all_under(prefix)
            .filter(move |e| e.kind.eq_ignore_ascii_case(kind))
    }

    /// Every resource whose id starts with `prefix/` (case-insensitive).
    pub fn all_under<'a>(&'a self, prefix: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        let start = format!("{}/", prefix.to_ascii_lowercase());
        self.resources
            .range(start.clone()..)
            .take_while(move |(k, _)| k.starts_with(&start))
            .map(|(_, e)| e)
    }

    /// All resources of a type.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.resources
            .values()
            .filter(move |e| e.kind.eq_ignore_ascii_case(kind))
    }

    /// Fails with 409 when the resource is held by an in-progress operation.
    pub fn ensure_idle(&self, id: &str) -> Result<(), ArmError> {
        match self.get(id).and_then(|e| e.busy.as_ref()) {
            Some(op) => Err(ArmError::conflict(
                "AnotherOperationInProgress",
                format!(
                    "Operation on resource '{id}' is not allowed because another operation ({op}) is in progress. Retry after it completes."
                ),
            )),
            None => Ok(()),
        }
    }

    /// Loads a store from a JSON state file; a missing file gives an empty store.
    pub fn load(path: &Path) -> Result<Self, EmulatorError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(state_error(path, e.to_string())),
        };
        serde_json::from_str(&text).map_err(|e| state_error(path, e.to_string()))
    }

    /// Writes the store as JSON, atomically (temp file + rename).
    pub fn save(text: &str, path: &Path) -> Result<(), EmulatorError> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| state_error(path, e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| state_error(path, e.to_string()))
    }
}

fn state_error(path: &Path, message: String) -> EmulatorError {
    EmulatorError::StateFile {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, kind: &str) -> Entry {
        Entry {
            id: id.into(),
            kind: kind.into(),
            body: Value::Null,
            meta: Map::new(),
            busy: None,
        }
    }

    #[test]
    fn lookups_ignore_case_and_under_filters_prefix_and_kind() {
        let mut store = Store::default();
        store.put(entry(
            "/subscriptions/s/resourceGroups/RG/providers/A/b/x",
            "A/b",
        ));
        store.put(entry(
            "/subscriptions/s/resourceGroups/RG/providers/A/b/x/c/y",
            "A/b/c",
        ));
        store.put(entry(
            "/subscriptions/s/resourceGroups/RG2/providers/A/b/z",
            "A/b",
        ));
        assert!(
            store
                .get("/SUBSCRIPTIONS/s/resourcegroups/rg/providers/a/B/X")
                .is_some()
        );
        let ids: Vec<_> = store
            .under("/subscriptions/s/resourcegroups/rg", "a/b")
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(
            ids,
            vec!["/subscriptions/s/resourceGroups/RG/providers/A/b/x".to_string()]
        );
    }
}
