//! Shared reflector caches: one watch and one in-memory store per kind for the whole
//! operator. Each controller's trigger stream is a subscription to its kind's cache, and
//! cross-kind questions (which VMs mount a storage, which Fleet owns a VM, what a Backup's
//! source is) are answered from the stores, never by LIST calls inside a reconcile.
//!
//! Objects that do not deserialize are kept as [`DeserializeGuard`] errors, so one bad object
//! never breaks a watch; lookups skip them.

use std::fmt::Debug;
use std::sync::Arc;

use std::sync::Mutex;

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{AzlinVM, Backup, Fleet, SharedStorage};
use crate::runtime::watches::WatchCheck;

/// Name of the optional per-namespace Secret with a tenant's Azure credential
/// (keys documented in [`azlin_arm::credential`]).
pub const TENANT_CREDENTIALS_SECRET: &str = "azlin-azure-credentials";

/// A cached object that may have failed to deserialize.
pub type Guarded<K> = DeserializeGuard<K>;

/// Read handles of the shared caches (cheap to clone).
#[derive(Clone)]
pub struct Caches {
    /// Every AzlinVM.
    pub vms: Store<Guarded<AzlinVM>>,
    /// Every SharedStorage.
    pub storages: Store<Guarded<SharedStorage>>,
    /// Every Fleet.
    pub fleets: Store<Guarded<Fleet>>,
    /// Every Backup.
    pub backups: Store<Guarded<Backup>>,
    /// The tenant credential Secrets ([`TENANT_CREDENTIALS_SECRET`]) of every namespace.
    pub tenant_secrets: Store<Secret>,
    /// Set once every store had its first list (see [`Caches::wait_ready`]).
    ready: Arc<tokio::sync::OnceCell<()>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("vms", &self.vms.len())
            .field("storages", &self.storages.len())
            .field("fleets", &self.fleets.len())
            .field("backups", &self.backups.len())
            .finish_non_exhaustive()
    }
}

/// The valid objects of `store` in `namespace`.
pub fn valid_in<K>(store: &Store<Guarded<K>>, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    store
        .state()
        .into_iter()
        .filter(|g| g.meta().namespace.as_deref() == Some(namespace))
        .filter_map(|g| g.0.as_ref().ok().map(|k| Arc::new(k.clone())))
        .collect()
}

/// The valid object `namespace/name` of `store`.
pub fn get_valid<K>(store: &Store<Guarded<K>>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let key = reflector::ObjectRef::new(name).within(namespace);
    store.get(&key).and_then(|g| g.0.as_ref().ok().cloned())
}

impl Caches {
    /// Waits until every store has its first complete list.
    ///
    /// Only one task at a time waits on the stores themselves: kube's `wait_until_ready`
    /// wakes only the last of several tasks waiting at once (a oneshot receiver keeps one
    /// waker), which left reconciles that started before the first list hanging forever.
    pub async fn wait_ready(&self) {
        self.ready
            .get_or_init(|| async {
                // `wait_until_ready` fails only when the writer is dropped (shutdown).
                let _ = futures::join!(
                    self.vms.wait_until_ready(),
                    self.storages.wait_until_ready(),
                    self.fleets.wait_until_ready(),
                    self.backups.wait_until_ready(),
                    self.tenant_secrets.wait_until_ready(),
                );
            })
            .await;
    }

    /// The tenant credential Secret of `namespace`, if it exists.
    pub fn tenant_secret(&self, namespace: &str) -> Option<Arc<Secret>> {
        let key = reflector::ObjectRef::new(TENANT_CREDENTIALS_SECRET).within(namespace);
        self.tenant_secrets.get(&key)
    }
}

/// Buffer of each subscription: how many changes a slow subscriber may lag behind before
/// the watch waits for it.
const SUBSCRIPTION_BUFFER: usize = 256;

/// A subscription to one kind's changes: every applied **or deleted** object, once per change
/// (kube's shared streams drop deletions, which the controllers need to hear about).
pub type Subscription<K> = mpsc::Receiver<Arc<K>>;

/// One kind's cache before it runs: the store's writer and the subscribers.
struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    subscribers: Mutex<Vec<mpsc::Sender<Arc<K>>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Feed<K> {
    fn new() -> (Store<K>, Self) {
        let writer = Writer::default();
        (
            writer.as_reader(),
            Self {
                writer,
                subscribers: Mutex::new(Vec::new()),
            },
        )
    }

    fn subscribe(&self) -> Subscription<K> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }
}

/// The writers of the caches, until [`CacheSet::run`] drives them. Subscribe first: a
/// subscription made later misses what happened before it.
pub struct CacheSet {
    caches: Caches,
    vms: Feed<Guarded<AzlinVM>>,
    storages: Feed<Guarded<SharedStorage>>,
    fleets: Feed<Guarded<Fleet>>,
    backups: Feed<Guarded<Backup>>,
    tenant_secrets: Feed<Secret>,
    checks: WatchCheck,
}

impl Default for CacheSet {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheSet {
    /// Empty caches, not watching yet.
    pub fn new() -> Self {
        let (vms_r, vms) = Feed::new();
        let (storages_r, storages) = Feed::new();
        let (fleets_r, fleets) = Feed::new();
        let (backups_r, backups) = Feed::new();
        let (tenant_r, tenant_secrets) = Feed::new();
        Self {
            caches: Caches {
                vms: vms_r,
                storages: storages_r,
                fleets: fleets_r,
                backups: backups_r,
                tenant_secrets: tenant_r,
                ready: Arc::default(),
            },
            vms,
            storages,
            fleets,
            backups,
            tenant_secrets,
            checks: WatchCheck::default(),
        }
    }

    /// How the watches are checked and where they report their readiness (see
    /// [`crate::runtime::watches`]).
    pub fn check_watches(&mut self, checks: WatchCheck) {
        self.checks = checks;
    }

    /// The read handles.
    pub fn caches(&self) -> Caches {
        self.caches.clone()
    }

    /// A subscription to AzlinVM changes.
    pub fn vms(&self) -> Subscription<Guarded<AzlinVM>> {
        self.vms.subscribe()
    }

    /// A subscription to SharedStorage changes.
    pub fn storages(&self) -> Subscription<Guarded<SharedStorage>> {
        self.storages.subscribe()
    }

    /// A subscription to Fleet changes.
    pub fn fleets(&self) -> Subscription<Guarded<Fleet>> {
        self.fleets.subscribe()
    }

    /// A subscription to Backup changes.
    pub fn backups(&self) -> Subscription<Guarded<Backup>> {
        self.backups.subscribe()
    }

    /// A subscription to tenant credential Secret changes.
    pub fn tenant_secrets(&self) -> Subscription<Secret> {
        self.tenant_secrets.subscribe()
    }

    /// Watches every kind (in `namespace`, or cluster-wide) and keeps the stores current and
    /// the subscribers informed until the returned future is dropped. Watch errors are
    /// retried with backoff by the watcher; a watch that cannot be trusted any more (the
    /// server's resourceVersion went backwards, or it failed) lists again.
    pub fn run(self, client: Client, namespace: Option<String>) -> impl Future<Output = ()> {
        let ns = namespace.as_deref();
        let c = &self.checks;
        let vms = drive(api(&client, ns), watcher::Config::default(), self.vms, c);
        let storages = drive(
            api(&client, ns),
            watcher::Config::default(),
            self.storages,
            c,
        );
        let fleets = drive(api(&client, ns), watcher::Config::default(), self.fleets, c);
        let backups = drive(
            api(&client, ns),
            watcher::Config::default(),
            self.backups,
            c,
        );
        let tenant = drive(
            api::<Secret>(&client, ns),
            watcher::Config::default()
                .fields(&format!("metadata.name={TENANT_CREDENTIALS_SECRET}")),
            self.tenant_secrets,
            c,
        );
        async move {
            futures::join!(vms, storages, fleets, backups, tenant);
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn drive<K>(
    api: Api<K>,
    config: watcher::Config,
    feed: Feed<K>,
    checks: &WatchCheck,
) -> impl Future<Output = ()> + use<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut subscribers = feed
        .subscribers
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let touched = move |obj: Arc<K>| {
        subscribers.retain(|s| !s.is_closed());
        let sends = subscribers
            .iter()
            .map(|s| {
                let mut s = s.clone();
                let obj = Arc::clone(&obj);
                // A subscriber that went away is forgotten on the next change.
                async move {
                    let _ = s.send(obj).await;
                }
            })
            .collect::<Vec<_>>();
        async move {
            futures::future::join_all(sends).await;
        }
    };
    crate::runtime::watches::run(api, config, feed.writer, touched, checks.clone())
}

/// Changes of `subscription` whose meaning for the object's own controller changed:
/// generation (spec), labels, annotations, finalizers, owner references or deletion — not
/// status-only writes, so the controller's own status write never triggers a reconcile.
/// Fingerprints of objects no longer in `store` are dropped now and then.
pub fn spec_changes<K>(
    subscription: Subscription<K>,
    store: Store<K>,
) -> impl Stream<Item = Arc<K>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut seen: std::collections::HashMap<reflector::ObjectRef<K>, u64> =
        std::collections::HashMap::new();
    let mut events = 0usize;
    subscription.filter_map(move |obj| {
        events += 1;
        if events.is_multiple_of(4096) {
            seen.retain(|k, _| store.get(k).is_some());
        }
        let key = reflector::ObjectRef::from_obj(obj.as_ref());
        let fingerprint = meaning(obj.meta());
        let changed = seen.insert(key, fingerprint) != Some(fingerprint);
        futures::future::ready(changed.then_some(obj))
    })
}

/// Hash of what a controller reacts to in its own object's metadata.
fn meaning(meta: &kube::core::ObjectMeta) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .hash(&mut h);
    if let Some(owners) = &meta.owner_references {
        for o in owners {
            (&o.uid, &o.kind, &o.name, o.controller).hash(&mut h);
        }
    }
    h.finish()
}

/// The name of an object for logs (`namespace/name`).
pub fn object_name<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Names of the valid objects of `store` in `namespace` for which `pred` holds.
pub fn names_where<K>(
    store: &Store<Guarded<K>>,
    namespace: &str,
    pred: impl Fn(&K) -> bool,
) -> Vec<String>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    store
        .state()
        .into_iter()
        .filter_map(|g| {
            let k = g.0.as_ref().ok()?;
            (k.meta().namespace.as_deref() == Some(namespace) && pred(k)).then(|| k.name_any())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reconciles that start before the first list all go on once it is there (kube's
    /// readiness alone woke only the last of them).
    #[tokio::test(flavor = "current_thread")]
    async fn every_task_waiting_before_the_first_list_is_released() {
        let api = azlin_kubemem::ApiServer::new();
        crate::embedded::register_azlin_crds(&api, false).expect("CRDs");
        let set = CacheSet::new();
        let caches = set.caches();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let c = caches.clone();
                tokio::spawn(async move { c.wait_ready().await })
            })
            .collect();
        // Every waiter polls once, before the caches start.
        tokio::task::yield_now().await;
        let watches = tokio::spawn(set.run(api.client(), None));
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(10), w)
                .await
                .expect("a waiter was never released")
                .expect("waiter task");
        }
        watches.abort();
    }
}
