//! Keeping a cache's watch honest: a watch whose server lost its history can go quiet for
//! good. kube's watcher lists again only after `410 Gone`; an API server that restarted on an
//! empty or restored etcd answers a re-watch from the old resourceVersion with nothing (or
//! with errors), and the cache stays stale while `/readyz` says ready.
//!
//! [`run`] drives one kind's watch into its store and, every [`WatchCheck::every`], asks the
//! server for the kind's current resourceVersion (a LIST of at most one object's metadata,
//! with the watch's selectors). When that resourceVersion is lower than one the watch
//! already saw (it went backwards), or the watch failed since the last check, the watch is
//! dropped and started again, which lists everything afresh. Its readiness gate
//! (`<Kind> watch`) is ready only between a complete list and the next failure.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::readiness::{Readiness, ReadyGate};

/// How a cache's watch is checked.
#[derive(Clone, Debug)]
pub struct WatchCheck {
    /// Interval between checks.
    pub every: Duration,
    /// Where each watch reports whether it can be trusted (`<Kind> watch` gates).
    pub readiness: Option<Readiness>,
}

impl Default for WatchCheck {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(30),
            readiness: None,
        }
    }
}

/// Why a watch is started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relist {
    /// The server's resourceVersion is lower than one the watch saw.
    WentBackwards {
        /// The highest resourceVersion seen before.
        seen: u64,
        /// What the server reports now.
        now: u64,
    },
    /// The watch failed since the last check.
    Failed,
}

/// The decision of one check: relist, or not, from the highest resourceVersion seen, the
/// server's current one (when it could be read and parsed) and whether the watch failed.
pub fn check(seen: u64, now: Option<u64>, failed: bool) -> Option<Relist> {
    match now {
        Some(now) if now < seen => Some(Relist::WentBackwards { seen, now }),
        _ if failed => Some(Relist::Failed),
        _ => None,
    }
}

fn resource_version(meta: &kube::core::ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// The server's current resourceVersion for what `config` selects.
async fn current_version<K>(
    api: &Api<K>,
    config: &watcher::Config,
) -> Result<Option<u64>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut params = ListParams::default().limit(1);
    params.field_selector = config.field_selector.clone();
    params.label_selector = config.label_selector.clone();
    let list = api.list_metadata(&params).await?;
    Ok(list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok()))
}

struct Gate(Option<ReadyGate>);

impl Gate {
    fn set(&self, ready: bool) {
        if let Some(g) = &self.0 {
            if ready {
                g.set_ready();
            } else {
                g.set_not_ready();
            }
        }
    }
}

/// Drives the watch of `api` (with `config`) into `writer` until the future is dropped,
/// calling `touched` with every applied or deleted object, and starts it again (a fresh
/// list) whenever a check finds it cannot be trusted.
pub async fn run<K, F, Fut>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: Writer<K>,
    mut touched: F,
    checks: WatchCheck,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Arc<K>) -> Fut,
    Fut: Future<Output = ()>,
{
    let kind = K::kind(&()).to_string();
    let gate = Gate(
        checks
            .readiness
            .as_ref()
            .map(|r| r.register(format!("{kind} watch"))),
    );
    let mut seen: u64 = 0;
    // Objects of a (re)list in progress: the store holds them only once it is done.
    let mut listed: Vec<ObjectRef<K>> = Vec::new();
    loop {
        let mut stream = watch(api.clone(), config.clone()).default_backoff().boxed();
        let mut ticks = tokio::time::interval(checks.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut failed = false;
        let why = loop {
            tokio::select! {
                event = stream.next() => match event {
                    // The watcher retries forever; it ends only with its API client.
                    None => return,
                    Some(Ok(event)) => {
                        // Nothing decides on managedFields; with thousands of objects they
                        // would be a large share of the cache.
                        let event = event.modify(|o| o.meta_mut().managed_fields = None);
                        writer.apply_watcher_event(&event);
                        match event {
                            Event::Apply(obj) | Event::Delete(obj) => {
                                seen = seen.max(resource_version(obj.meta()).unwrap_or(0));
                                touched(Arc::new(obj)).await;
                            }
                            Event::InitApply(obj) => {
                                seen = seen.max(resource_version(obj.meta()).unwrap_or(0));
                                listed.push(ObjectRef::from_obj(&obj));
                            }
                            Event::Init => listed.clear(),
                            Event::InitDone => {
                                gate.set(true);
                                // A controller skips an object its store does not hold: tell
                                // it of the listed objects only now that the store has them
                                // (objects first seen in a relist after a watch fell behind
                                // were otherwise never reconciled).
                                let store = writer.as_reader();
                                for key in listed.drain(..) {
                                    if let Some(obj) = store.get(&key) {
                                        touched(obj).await;
                                    }
                                }
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(kind = %kind, error = %e, "watch failed; retrying");
                        failed = true;
                        gate.set(false);
                    }
                },
                _ = ticks.tick() => {
                    let now = match current_version(&api, &config).await {
                        Ok(now) => now,
                        Err(e) => {
                            tracing::warn!(kind = %kind, error = %e, "cannot read the current resourceVersion");
                            failed = true;
                            gate.set(false);
                            None
                        }
                    };
                    if let Some(why) = check(seen, now, failed) {
                        if let Some(now) = now {
                            seen = now;
                        }
                        break why;
                    }
                    seen = seen.max(now.unwrap_or(0));
                }
            }
        };
        tracing::warn!(kind = %kind, reason = ?why, "the watch cannot be trusted; listing again");
        gate.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relists_when_the_version_goes_backwards_or_the_watch_failed() {
        assert_eq!(check(100, Some(120), false), None);
        assert_eq!(check(100, Some(100), false), None);
        assert_eq!(check(0, Some(5), false), None);
        assert_eq!(
            check(100, Some(7), false),
            Some(Relist::WentBackwards { seen: 100, now: 7 })
        );
        assert_eq!(check(100, Some(120), true), Some(Relist::Failed));
        assert_eq!(check(100, None, true), Some(Relist::Failed));
        assert_eq!(check(100, None, false), None);
    }
}
