//! Object storage: objects keyed by (resource, namespace, name), the global resourceVersion,
//! the retained event history used by watches, and uid/owner indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::error::ApiError;
use super::fields::FieldValidation;
use super::patch::ManagedFields;
use super::registry::{Registry, ResourceInfo};

/// Storage key: (resource id `group/version/plural`, namespace or `""`, name).
pub type ObjKey = (String, String, String);

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the history window and broadcast to live watches.
#[derive(Debug)]
pub struct HistEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource id.
    pub resource: String,
    /// Namespace (`""` for cluster scoped).
    pub namespace: String,
    /// Event type.
    pub etype: EventType,
    /// Object after the change (last state for deletions).
    pub obj: Arc<Value>,
    /// Object before the change.
    pub prev: Option<Arc<Value>>,
}

/// What live watches receive.
#[derive(Debug, Clone)]
pub enum Broadcast {
    /// A stored change.
    Event(Arc<HistEvent>),
    /// History was compacted under open watches: they end with 410 Expired.
    Expire,
    /// The server went away: open watches end without an event (a closed connection).
    Close,
}

/// A stored object with its field ownership.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object as served.
    pub obj: Arc<Value>,
    /// Field managers.
    pub managed: ManagedFields,
}

/// Deletion propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the owner (also used for `Foreground`).
    Background,
    /// Dependents lose their owner reference.
    Orphan,
}

/// The whole mutable state, behind one mutex.
pub struct State {
    pub(crate) registry: Registry,
    pub(crate) rv: u64,
    pub(crate) objects: BTreeMap<ObjKey, Stored>,
    history: VecDeque<Arc<HistEvent>>,
    pub(crate) history_limit: usize,
    /// Watches and exact lists from a resourceVersion below this are expired.
    pub(crate) compacted_rv: u64,
    uid_index: HashMap<String, ObjKey>,
    owner_index: HashMap<String, BTreeSet<ObjKey>>,
    pub(crate) pending_policy: HashMap<String, Propagation>,
    /// The current request is a dry run (`dryRun=All`): [`put`](Self::put) and
    /// [`remove`](Self::remove) compute the result without storing or emitting anything.
    pub(crate) dry_run: bool,
    /// Terminating namespaces whose content changed: the namespace "controller" runs for them
    /// at the end of the current write.
    pub(crate) namespaces_to_sync: BTreeSet<String>,
    /// `Warning` headers for the current request's response.
    pub(crate) warnings: Vec<String>,
    /// The current request's `fieldValidation` directive.
    pub(crate) field_validation: FieldValidation,
    tx: broadcast::Sender<Broadcast>,
}

fn uid_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/uid").and_then(Value::as_str)
}

fn owner_uids(v: &Value) -> Vec<String> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl State {
    /// Empty state with the core kinds registered.
    pub fn new(history_limit: usize, broadcast_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(broadcast_capacity.max(16));
        Self {
            registry: Registry::with_core_kinds(),
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            uid_index: HashMap::new(),
            owner_index: HashMap::new(),
            pending_policy: HashMap::new(),
            dry_run: false,
            namespaces_to_sync: BTreeSet::new(),
            warnings: Vec::new(),
            field_validation: FieldValidation::Ignore,
            tx,
        }
    }

    /// A receiver for changes after now.
    pub fn subscribe(&self) -> broadcast::Receiver<Broadcast> {
        self.tx.subscribe()
    }

    /// Stored object by key.
    pub fn get(&self, key: &ObjKey) -> Option<&Stored> {
        self.objects.get(key)
    }

    /// Key of the object with `uid`.
    pub fn key_of_uid(&self, uid: &str) -> Option<&ObjKey> {
        self.uid_index.get(uid)
    }

    /// Keys of objects with an ownerReference to `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<ObjKey> {
        self.owner_index
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects of `res` (in `namespace`, or all namespaces) in key order.
    pub fn range<'a>(
        &'a self,
        res: &str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Stored)> + 'a {
        let start = (
            res.to_string(),
            namespace.unwrap_or("").to_string(),
            String::new(),
        );
        let res_owned = res.to_string();
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.0 == res_owned && namespace.is_none_or(|ns| k.1 == ns))
    }

    fn index_remove(&mut self, key: &ObjKey, obj: &Value) {
        if let Some(uid) = uid_of(obj) {
            self.uid_index.remove(uid);
        }
        for o in owner_uids(obj) {
            if let Some(set) = self.owner_index.get_mut(&o) {
                set.remove(key);
                if set.is_empty() {
                    self.owner_index.remove(&o);
                }
            }
        }
    }

    fn index_add(&mut self, key: &ObjKey, obj: &Value) {
        if let Some(uid) = uid_of(obj) {
            self.uid_index.insert(uid.to_string(), key.clone());
        }
        for o in owner_uids(obj) {
            self.owner_index.entry(o).or_default().insert(key.clone());
        }
    }

    fn record(&mut self, ev: HistEvent) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(Broadcast::Event(ev));
    }

    /// Stores `obj` under `key` with a new resourceVersion and emits ADDED/MODIFIED.
    ///
    /// In a dry run nothing is stored: the object is returned as it would be stored, with the
    /// current resourceVersion (none for a create), as the API server answers a dry run.
    pub fn put(
        &mut self,
        key: ObjKey,
        mut obj: Value,
        managed: ManagedFields,
        api_version: &str,
    ) -> Arc<Value> {
        if self.dry_run {
            let current = self
                .objects
                .get(&key)
                .and_then(|s| s.obj.pointer("/metadata/resourceVersion").cloned());
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                match current {
                    Some(rv) => meta.insert("resourceVersion".into(), rv),
                    None => meta.remove("resourceVersion"),
                };
                let mf = managed.render(api_version);
                if mf.as_array().is_some_and(|a| a.is_empty()) {
                    meta.remove("managedFields");
                } else {
                    meta.insert("managedFields".into(), mf);
                }
            }
            return Arc::new(obj);
        }
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            let mf = managed.render(api_version);
            if mf.as_array().is_some_and(|a| a.is_empty()) {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), mf);
            }
        }
        let obj = Arc::new(obj);
        let prev = self.objects.get(&key).map(|s| s.obj.clone());
        if let Some(p) = &prev {
            self.index_remove(&key, p);
        }
        self.index_add(&key, &obj);
        self.objects.insert(
            key.clone(),
            Stored {
                obj: obj.clone(),
                managed,
            },
        );
        self.record(HistEvent {
            rv,
            resource: key.0,
            namespace: key.1,
            etype: if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            obj: obj.clone(),
            prev,
        });
        obj
    }

    /// Removes the object under `key`; `last` is its final state. Emits DELETED.
    ///
    /// In a dry run the object stays; `last` is returned as it is.
    pub fn remove(&mut self, key: &ObjKey, mut last: Value) -> Option<Arc<Value>> {
        if self.dry_run {
            return self.objects.get(key).map(|_| Arc::new(last));
        }
        let stored = self.objects.remove(key)?;
        self.index_remove(key, &stored.obj);
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let last = Arc::new(last);
        self.record(HistEvent {
            rv,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            etype: EventType::Deleted,
            obj: last.clone(),
            prev: Some(stored.obj),
        });
        Some(last)
    }

    /// Events of `res` with resourceVersion above `after`, or `Err` when `after` is no longer retained.
    pub fn events_after(&self, after: u64) -> Result<Vec<Arc<HistEvent>>, ApiError> {
        if after < self.compacted_rv {
            return Err(expired(after, self.compacted_rv));
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        Ok(self.history.range(start..).cloned().collect())
    }

    /// Objects of `res` as of resourceVersion `at` (rolled back through the history window).
    pub fn snapshot_at(
        &self,
        res: &ResourceInfo,
        namespace: Option<&str>,
        at: u64,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let id = res.id();
        let mut objs: BTreeMap<(String, String), Arc<Value>> = self
            .range(&id, namespace)
            .map(|(k, s)| ((k.1.clone(), k.2.clone()), s.obj.clone()))
            .collect();
        if at < self.rv {
            let later = self.events_after(at)?;
            for ev in later.iter().rev() {
                if ev.resource != id || namespace.is_some_and(|ns| ns != ev.namespace) {
                    continue;
                }
                let name = ev
                    .obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let k = (ev.namespace.clone(), name);
                match &ev.prev {
                    Some(p) => objs.insert(k, p.clone()),
                    None => objs.remove(&k),
                };
            }
        }
        Ok(objs.into_values().collect())
    }

    /// Drops the whole history and ends every open watch with 410 Expired.
    pub fn expire_watches(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
        let _ = self.tx.send(Broadcast::Expire);
    }

    /// Forgets everything, as an API server restarted on an empty (or restored) etcd: every
    /// object and registered custom resource goes, the resourceVersion starts again from 1
    /// (it goes backwards for clients), and open watches end as closed connections.
    pub fn reset(&mut self) {
        self.registry = Registry::with_core_kinds();
        self.objects.clear();
        self.history.clear();
        self.rv = 1;
        self.compacted_rv = 0;
        self.uid_index.clear();
        self.owner_index.clear();
        self.pending_policy.clear();
        self.namespaces_to_sync.clear();
        let _ = self.tx.send(Broadcast::Close);
    }

    /// Changes the history window size, compacting if needed.
    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
    }
}

/// 410 Expired for `rv` older than the history window.
pub fn expired(rv: u64, oldest: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {rv} ({oldest})"))
}
