//! Watch streams: initial ADDED events or history replay from a resourceVersion, live events,
//! BOOKMARKs, `410 Expired` ERROR events, and `timeoutSeconds`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::error::ApiError;
use super::registry::ResourceInfo;
use super::selector::Selector;
use super::store::{Broadcast, EventType, HistEvent, State, expired};
use super::table::IncludeObject;

/// Parsed watch query parameters.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// `resourceVersion` (absent, `"0"` or a number).
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks=true`.
    pub allow_bookmarks: bool,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// Namespace filter (`None` = all namespaces).
    pub namespace: Option<String>,
    /// Label and field selectors.
    pub selector: Selector,
    /// Send `PartialObjectMetadata` objects instead of full ones.
    pub metadata_only: bool,
    /// Send each object as a one-row `meta.k8s.io/v1` Table (`kubectl get -w`).
    pub table: Option<IncludeObject>,
}

impl WatchRequest {
    fn event(&self, res: &ResourceInfo, etype: &str, obj: &Value) -> Bytes {
        if let Some(include) = self.table {
            line(etype, &super::table::to_table(res, obj, include))
        } else if self.metadata_only {
            line(etype, &super::handlers::metadata_only(obj))
        } else {
            line(etype, obj)
        }
    }
}

struct WatchState {
    queue: VecDeque<Bytes>,
    rx: broadcast::Receiver<Broadcast>,
    start_rv: u64,
    last_rv: u64,
    res: Arc<ResourceInfo>,
    res_id: String,
    req: WatchRequest,
    deadline: Instant,
    bookmark_every: Duration,
    next_bookmark: Instant,
    done: bool,
}

fn line(etype: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": etype, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(res: &ResourceInfo, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": meta}),
    )
}

fn error_line(err: &ApiError) -> Bytes {
    line("ERROR", &err.to_status())
}

/// How `ev` appears to a watcher with this filter (selector transitions become ADDED/DELETED).
fn classify<'a>(
    ev: &'a HistEvent,
    res_id: &str,
    req: &WatchRequest,
) -> Option<(EventType, &'a Value)> {
    if ev.resource != res_id
        || req
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != ev.namespace)
    {
        return None;
    }
    let now = req.selector.matches(&ev.obj);
    match ev.etype {
        EventType::Added => now.then_some((EventType::Added, &*ev.obj)),
        EventType::Deleted => {
            let before = ev.prev.as_deref().is_some_and(|p| req.selector.matches(p));
            (now || before).then_some((EventType::Deleted, &*ev.obj))
        }
        EventType::Modified => {
            let before = ev.prev.as_deref().is_some_and(|p| req.selector.matches(p));
            match (before, now) {
                (true, true) => Some((EventType::Modified, &*ev.obj)),
                (false, true) => Some((EventType::Added, &*ev.obj)),
                (true, false) => Some((EventType::Deleted, &*ev.obj)),
                (false, false) => None,
            }
        }
    }
}

/// Starts a watch on the locked state; the returned stream yields newline-delimited JSON events.
pub fn start(
    state: &State,
    res: Arc<ResourceInfo>,
    req: WatchRequest,
    bookmark_every: Duration,
) -> Result<impl Stream<Item = Bytes> + Send + 'static, ApiError> {
    let rx = state.subscribe();
    let res_id = res.id();
    let current = state.rv;
    let mut queue = VecDeque::new();
    let mut done = false;
    let rv_param = req.resource_version.as_deref().filter(|s| !s.is_empty());
    let start_rv = match rv_param {
        None | Some("0") => {
            for (_, s) in state.range(&res_id, req.namespace.as_deref()) {
                if req.selector.matches(&s.obj) {
                    queue.push_back(req.event(&res, "ADDED", &s.obj));
                }
            }
            if req.send_initial_events && req.allow_bookmarks {
                queue.push_back(bookmark(&res, current, true));
            }
            current
        }
        Some(v) => {
            let n: u64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
            if req.send_initial_events {
                for (_, s) in state.range(&res_id, req.namespace.as_deref()) {
                    if req.selector.matches(&s.obj) {
                        queue.push_back(req.event(&res, "ADDED", &s.obj));
                    }
                }
                if req.allow_bookmarks {
                    queue.push_back(bookmark(&res, current, true));
                }
                current.max(n)
            } else if n < state.compacted_rv {
                queue.push_back(error_line(&expired(n, state.compacted_rv)));
                done = true;
                n
            } else {
                for ev in state.events_after(n)? {
                    if let Some((t, o)) = classify(&ev, &res_id, &req) {
                        queue.push_back(req.event(&res, t.as_str(), o));
                    }
                }
                current.max(n)
            }
        }
    };
    let now = Instant::now();
    let st = WatchState {
        queue,
        rx,
        start_rv,
        last_rv: start_rv,
        res,
        res_id,
        deadline: now + req.timeout,
        req,
        bookmark_every,
        next_bookmark: now + bookmark_every,
        done,
    };
    Ok(futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.queue.pop_front() {
                return Some((b, st));
            }
            if st.done {
                return None;
            }
            let bookmarks = st.req.allow_bookmarks;
            tokio::select! {
                _ = tokio::time::sleep_until(st.deadline) => {
                    st.done = true;
                }
                _ = tokio::time::sleep_until(st.next_bookmark), if bookmarks => {
                    st.next_bookmark = Instant::now() + st.bookmark_every;
                    st.queue.push_back(bookmark(&st.res, st.last_rv, false));
                }
                msg = st.rx.recv() => match msg {
                    Ok(Broadcast::Event(ev)) => {
                        if ev.rv > st.start_rv {
                            st.last_rv = st.last_rv.max(ev.rv);
                            if let Some((t, o)) = classify(&ev, &st.res_id, &st.req) {
                                let b = st.req.event(&st.res, t.as_str(), o);
                                st.queue.push_back(b);
                            }
                        }
                    }
                    Ok(Broadcast::Close) => {
                        st.done = true;
                    }
                    Ok(Broadcast::Expire) => {
                        st.queue.push_back(error_line(&expired(st.last_rv, st.last_rv + 1)));
                        st.done = true;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        st.queue.push_back(error_line(&expired(st.last_rv, st.last_rv + 1)));
                        st.done = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        st.done = true;
                    }
                },
            }
        }
    }))
}
