//! In-memory Kubernetes API server for whole-controller tests and `azlin-operator local`.
//!
//! [`ApiServer`] is a `tower::Service` over HTTP requests, so it plugs into [`kube::Client`]
//! without TCP ([`ApiServer::client`]). It follows the API server rules controllers depend on:
//! monotonic `resourceVersion`, 409 on stale writes, `generation` bumps on spec changes only,
//! status subresource, finalizers and `deletionTimestamp`, owner-reference garbage collection,
//! watches with history replay, BOOKMARKs and `410 Expired`, JSON merge / JSON / server-side apply
//! patches, label and field selectors, and CRD admission hooks.
//!
//! Expired resourceVersions behave as on a real cluster: a watch from a version older than the
//! retained history ([`Config::history_limit`]) is accepted (HTTP 200) and its stream carries one
//! `ERROR` event with a `410 Expired` Status, which is what makes kube-runtime's watcher re-list
//! (an HTTP 410 at watch start would make it retry the same version forever); exact lists and
//! continue tokens from before the window get an HTTP 410. [`ApiServer::expire_watches`] forces this.
//!
//! Namespaces behave as on a cluster (see `namespaces`): `default`, `kube-system`,
//! `kube-public` and `kube-node-lease` exist, creates in a missing namespace get `404`, in a
//! terminating one `403`, and deleting a namespace deletes its content (honouring finalizers)
//! before the namespace goes. Writes accept `dryRun=All` (admission and defaulting run, nothing is
//! stored), JSON and, for Namespace, Secret, ConfigMap, ServiceAccount and the access reviews, the
//! Kubernetes protobuf encoding kubectl's typed clients send; request bodies over 3 MiB get `413`
//! and objects over etcd's 1.5 MiB `500 etcdserver: request is too large`. Custom resources
//! declaring `subresources.scale` serve `autoscaling/v1` `Scale`; `SelfSubjectAccessReview` and
//! `SelfSubjectRulesReview` answer as with `--authorization-mode=AlwaysAllow`. Fields a CRD's
//! schema does not declare are pruned, refused with `fieldValidation=Strict` and warned about
//! with `Warn`.
//!
//! Simplifications (documented, deliberate): `Foreground` deletion
//! behaves like `Background`; garbage collection and the namespace controller run synchronously
//! at the end of the write that triggers them; dependents created for an already-absent owner are
//! not collected; lists and ownership treat lists as atomic; strategic merge patch is a merge
//! patch; server-side apply of a `Scale` is not supported;
//! each served version of a CRD has its own storage; discovery is the legacy (unaggregated) format
//! only; the OpenAPI v3 document holds only PATCH operations and CRD schemas (enough for `kubectl
//! apply` and `kubectl explain` of custom resources); the two Event
//! APIs have separate storage, but lists of core `v1` events include the `events.k8s.io/v1` ones
//! (converted), so `kubectl describe` shows events a kube-runtime `Recorder` wrote.
//!
//! For real clients over HTTP ([`ApiServer::serve`]): discovery (`/version`, `/api`, `/apis`,
//! `/api/v1`, `/apis/{group}/{version}`, with CRD short names and categories) and server-side
//! printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, with a CRD's
//! `additionalPrinterColumns`, also for watches) make `kubectl get [-w]`, `describe`, `apply`,
//! `explain` and `api-resources` work.
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use azlin_kubemem::ApiServer;
//! let server = ApiServer::new();
//! server.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\n")?;
//! let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::default_namespaced(server.client());
//! let s = secrets.get("s").await?;
//! # Ok(()) }
//! ```

mod authz;
mod discovery;
mod error;
mod event_view;
mod fields;
mod gc;
mod handlers;
mod namespaces;
mod openapi;
mod patch;
mod protobuf;
mod registry;
mod router;
mod scale;
mod selector;
mod serve;
mod store;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod watch;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

pub use error::{ApiError, FieldCause, KubeMemError};
pub use patch::{Endpoint, ManagedFields, Operation, PatchKind};
pub use registry::{Admission, PrinterColumn, ResourceInfo, ScaleSubresource};
pub use router::Verb;
pub use selector::{FieldSelector, LabelSelector, Selector};
pub use serve::Served;

use router::{Call, Reply};
use store::State;

/// Response body type of the service.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// Tunables of an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of changes kept for watch replay and exact lists; older resourceVersions get 410.
    pub history_limit: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Buffer of the live event channel; a watch that falls this far behind ends with 410.
    pub broadcast_capacity: usize,
    /// Most recorded requests kept; the oldest are dropped beyond this (long `local` runs).
    pub request_log_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
            broadcast_capacity: 4_096,
            request_log_limit: 100_000,
        }
    }
}

/// One recorded API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Sequence number (monotonic across [`ApiServer::clear_requests`]).
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string (`""` when none).
    pub query: String,
    /// API verb.
    pub verb: Verb,
    /// Resource (`plural.group` or plural) when the path named one (`None` for discovery and
    /// OpenAPI documents, which are recorded as [`Verb::Get`]).
    pub resource: Option<String>,
    /// HTTP status of the response.
    pub status: u16,
}

impl RecordedRequest {
    /// True for verbs that can change state.
    pub fn is_write(&self) -> bool {
        self.verb.is_write()
    }
}

/// A point in the request log, from [`ApiServer::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestMark(u64);

struct Inner {
    state: Mutex<State>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    seq: AtomicU64,
    config: Config,
}

/// The in-memory API server. Cheap to clone (shared state); thread-safe.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

impl Default for ApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("resource_version", &self.resource_version())
            .finish()
    }
}

impl ApiServer {
    /// A server with the core kinds (Secret, ConfigMap, Event v1 and events.k8s.io/v1, Lease,
    /// Namespace, ServiceAccount, the `authorization.k8s.io` self reviews), the namespaces
    /// `default`, `kube-node-lease`, `kube-public` and `kube-system`, and default [`Config`].
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A server with explicit tunables.
    pub fn with_config(config: Config) -> Self {
        let mut state = State::new(config.history_limit, config.broadcast_capacity);
        for ns in namespaces::INITIAL {
            if let Err(e) = ensure_namespace(&mut state, ns) {
                // The built-in Namespace resource always admits these names.
                tracing::error!(error = %e, namespace = ns, "in-memory API: initial namespace");
            }
        }
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                requests: Mutex::new(VecDeque::new()),
                seq: AtomicU64::new(0),
                config,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later
        // requests could not handle, so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A `kube::Client` talking to this server (default namespace `default`).
    ///
    /// Must be called inside a Tokio runtime (the client spawns its request buffer task).
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// Serves the versions of a CRD, with an optional admission hook for its main resource.
    pub fn register_crd(
        &self,
        crd: &CustomResourceDefinition,
        admission: Option<Arc<dyn Admission>>,
    ) -> Result<(), KubeMemError> {
        let infos = registry::crd_resources(crd, admission)?;
        let mut st = self.state();
        for info in infos {
            st.registry.insert(info);
        }
        Ok(())
    }

    /// Serves an arbitrary resource (e.g. another core kind).
    pub fn register_resource(&self, info: ResourceInfo) {
        self.state().registry.insert(info);
    }

    /// Creates every document of a multi-document YAML stream (namespaced objects without a
    /// namespace go to `default`), through the same path as a POST, including admission.
    /// Stops at the first failure.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, KubeMemError> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| KubeMemError::Yaml(e.to_string()))?;
        let mut out = Vec::new();
        let mut st = self.state();
        for (index, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            out.push(seed_one(&mut st, index, doc)?);
        }
        Ok(out)
    }

    /// The stored object, if any (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let st = self.state();
        let res = st.registry.by_kind(api_version, kind)?;
        let k = handlers::key(&res, namespace.unwrap_or(""), name);
        st.get(&k).map(|s| (*s.obj).clone())
    }

    /// Stored objects of a kind, in one namespace or all (`None`), ordered by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let st = self.state();
        let Some(res) = st.registry.by_kind(api_version, kind) else {
            return Vec::new();
        };
        let ns = if res.namespaced { namespace } else { None };
        st.range(&res.id(), ns)
            .map(|(_, s)| (*s.obj).clone())
            .collect()
    }

    /// Creates namespace `name` unless it exists (`kubectl create namespace`, tolerating
    /// AlreadyExists). Returns whether it was created.
    pub fn ensure_namespace(&self, name: &str) -> Result<bool, KubeMemError> {
        let mut st = self.state();
        let created = ensure_namespace(&mut st, name)?;
        Ok(created)
    }

    /// Like [`apply_yaml`](Self::apply_yaml), but first creates the stream's Namespace documents
    /// and then every other namespace the documents use that does not exist yet, as
    /// `helm install --create-namespace` would; for loading arbitrary manifests (`azlin-operator
    /// local`). Returns the created documents in stream order.
    pub fn apply_yaml_creating_namespaces(&self, yaml: &str) -> Result<Vec<Value>, KubeMemError> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| KubeMemError::Yaml(e.to_string()))?;
        let is_ns = |d: &Value| {
            d.get("apiVersion").and_then(Value::as_str) == Some("v1")
                && d.get("kind").and_then(Value::as_str) == Some("Namespace")
        };
        let mut st = self.state();
        let mut created: Vec<(usize, Value)> = Vec::new();
        for (index, doc) in docs.iter().enumerate().filter(|(_, d)| is_ns(d)) {
            created.push((index, seed_one(&mut st, index, doc.clone())?));
        }
        for doc in docs.iter().filter(|d| !d.is_null() && !is_ns(d)) {
            let av = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
            if st.registry.by_kind(av, kind).is_some_and(|r| r.namespaced) {
                let ns = doc
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                ensure_namespace(&mut st, ns)?;
            }
        }
        for (index, doc) in docs.into_iter().enumerate() {
            if doc.is_null() || is_ns(&doc) {
                continue;
            }
            created.push((index, seed_one(&mut st, index, doc)?));
        }
        created.sort_by_key(|(i, _)| *i);
        Ok(created.into_iter().map(|(_, v)| v).collect())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// All recorded requests since the last [`clear_requests`](Self::clear_requests).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log().iter().cloned().collect()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.log().clear();
    }

    /// The current position in the request log.
    pub fn mark(&self) -> RequestMark {
        RequestMark(self.inner.seq.load(Ordering::SeqCst))
    }

    /// Write requests (create, update, patch, delete) recorded since `mark`.
    pub fn writes_since(&self, mark: RequestMark) -> Vec<RecordedRequest> {
        self.log()
            .iter()
            .filter(|r| r.seq >= mark.0 && r.is_write())
            .cloned()
            .collect()
    }

    /// Drops the whole watch history (as an etcd compaction would) and ends every open watch with
    /// an ERROR 410 Expired event, so watchers must re-list.
    pub fn expire_watches(&self) {
        self.state().expire_watches();
    }

    /// Restarts the server on an empty store (an API server whose etcd was wiped or restored
    /// from an old backup): objects and custom resource registrations are gone, the initial
    /// namespaces are back, resourceVersions start again from a low number — lower than what
    /// clients saw — and open watches end as closed connections. Clients that re-watch from
    /// their last resourceVersion see nothing until they list again.
    pub fn restart_empty(&self) {
        let mut st = self.state();
        st.reset();
        for ns in namespaces::INITIAL {
            if let Err(e) = ensure_namespace(&mut st, ns) {
                tracing::error!(error = %e, namespace = ns, "in-memory API: initial namespace");
            }
        }
    }

    /// Changes how many changes are retained for watch replay.
    pub fn set_history_limit(&self, limit: usize) {
        self.state().set_history_limit(limit);
    }

    /// Handles one HTTP request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = req.into_parts();
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let query: HashMap<String, String> = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let header = |h: http::header::HeaderName| {
            parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let content_type = header(http::header::CONTENT_TYPE);
        let accept = header(http::header::ACCEPT);
        let user_agent = header(http::header::USER_AGENT);
        let path = parts.uri.path().to_string();
        let table_mode = if table::requested(&accept) {
            table::IncludeObject::parse(query.get("includeObject").map(String::as_str)).map(Some)
        } else {
            Ok(None)
        };
        let call = Call {
            query: &query,
            content_type: &content_type,
            user_agent: &user_agent,
            body: &body,
            bookmark_every: self.inner.config.bookmark_interval,
            metadata_only: accept.contains("as=PartialObjectMetadata"),
            table: table_mode.clone().ok().flatten(),
        };
        let (verb, resource, result, warnings) = {
            let mut st = self.state();
            st.warnings.clear();
            let doc = if parts.method == http::Method::GET {
                discovery::document(&st.registry, &path)
                    .or_else(|| openapi::document(&st.registry, &path))
            } else {
                None
            };
            let (verb, resource, result) = match doc {
                Some(doc) => (Verb::Get, None, doc.map(|v| Reply::Json(StatusCode::OK, v))),
                None => match router::parse_path(&st, &path) {
                    Err(e) => (Verb::Unknown, None, Err(e)),
                    Ok(target) => {
                        let verb = router::classify(&parts.method, &target, &query);
                        let resource = Some(target.res.group_resource());
                        let reads = matches!(verb, Verb::Get | Verb::List | Verb::Watch);
                        let result = match &table_mode {
                            Err(e) if reads => Err(e.clone()),
                            mode => {
                                router::dispatch(&mut st, &target, verb, &call).map(|reply| match (
                                    reply, mode,
                                ) {
                                    (Reply::Json(code, body), Ok(Some(include)))
                                        if code.is_success()
                                            && matches!(verb, Verb::Get | Verb::List) =>
                                    {
                                        let t = table::to_table(&target.res, &body, *include);
                                        Reply::Json(code, t)
                                    }
                                    (other, _) => other,
                                })
                            }
                        };
                        (verb, resource, result)
                    }
                },
            };
            (verb, resource, result, std::mem::take(&mut st.warnings))
        };
        let mut response = match result {
            Ok(Reply::Json(code, v)) => json_response(code, &v),
            Ok(Reply::Watch(stream)) => {
                let body = StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
                let mut r = Response::new(body.boxed_unsync());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => error_response(&e),
        };
        for w in warnings {
            let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
            if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
                response.headers_mut().append("warning", v);
            }
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst);
        let mut log = self.log();
        while log.len() >= self.inner.config.request_log_limit.max(1) {
            log.pop_front();
        }
        log.push_back(RecordedRequest {
            seq,
            method: parts.method.to_string(),
            path,
            query: parts.uri.query().unwrap_or("").to_string(),
            verb,
            resource,
            status: response.status().as_u16(),
        });
        response
    }
}

/// Creates document `index` of a seed stream (namespaced objects without a namespace go to
/// `default`).
fn seed_one(st: &mut State, index: usize, doc: Value) -> Result<Value, KubeMemError> {
    let av = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let res = st
        .registry
        .by_kind(av, kind)
        .ok_or_else(|| KubeMemError::Document {
            index,
            message: format!("no resource registered for apiVersion {av:?} kind {kind:?}"),
        })?;
    let ns = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let created = handlers::create(
        st,
        &res,
        &ns,
        doc,
        handlers::CreateOwnership::Update("kubemem-seed"),
    )?;
    Ok((*created).clone())
}

/// Creates namespace `name` unless it exists; whether it was created.
fn ensure_namespace(st: &mut State, name: &str) -> Result<bool, ApiError> {
    if namespaces::exists(st, name) {
        return Ok(false);
    }
    let res = st
        .registry
        .by_kind("v1", "Namespace")
        .ok_or_else(ApiError::unknown_path)?;
    handlers::create(
        st,
        &res,
        "",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        handlers::CreateOwnership::Update("kube-apiserver"),
    )?;
    Ok(true)
}

/// Largest request body the API server reads (`--max-request-bytes` default, 3 MiB).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Largest oversized body read to its end before the `413` is sent. A client still
/// writing its body when the server closes the connection sees a broken pipe instead
/// of the answer, so the rest of a body up to this size is read and discarded first.
const MAX_DISCARDED_BODY_BYTES: usize = 4 * MAX_REQUEST_BODY_BYTES;

/// Reads a request body of at most [`MAX_REQUEST_BODY_BYTES`] (`413` beyond, as the API
/// server's limited reader answers).
async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("failed to read body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            read += data.len();
            if read > MAX_DISCARDED_BODY_BYTES {
                break;
            }
            if read <= MAX_REQUEST_BODY_BYTES {
                out.extend_from_slice(&data);
            } else if !out.is_empty() {
                out = bytes::BytesMut::new();
            }
        }
    }
    if read > MAX_REQUEST_BODY_BYTES {
        return Err(ApiError::request_entity_too_large(format!(
            "limit is {MAX_REQUEST_BODY_BYTES}"
        )));
    }
    Ok(out.freeze())
}

fn json_response(code: StatusCode, v: &Value) -> Response<ResponseBody> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<ResponseBody> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

impl<B> tower::Service<Request<B>> for ApiServer
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_server_is_shareable() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<ApiServer>();
    }
}
