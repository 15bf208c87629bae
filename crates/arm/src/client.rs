//! [`ArmClient`]: authenticated, throttled, retried HTTP to ARM, plus the generic JSON core
//! (`get_json`, `put_json`, `patch_json`, `post_action`, `delete`, `list_json`) that the
//! per-resource-family modules wrap.
//!
//! Every request: waits for a token of its class in the subscription's client-side bucket,
//! attaches a cached bearer token, reports the response (status, remaining ARM budget) to the
//! [`ArmObserver`], and is retried with jittered exponential backoff (the `backon` crate) on
//! 429, 5xx, timeouts and connection errors, waiting the server's `Retry-After` when given.
//! 401 drops the cached token and is not retried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::api_versions;
use super::config::{ArmConfig, LroPolicy, RetryPolicy};
use super::credential::{ArmCredential, CredentialChoice, secret_subscription_id};
use super::error::ArmError;
use super::headers::{RateLimitRemaining, parse_retry_after};
use super::id::ResourceId;
use super::lro::Poller;
use super::observer::{ArmObserver, NoopObserver};
use super::pacing::Pacer;

/// A raw ARM response with a success status (< 400).
#[derive(Debug, Clone)]
pub struct ArmResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}

impl ArmResponse {
    /// The body as JSON; `None` when the body is empty.
    pub fn json_value(&self) -> Result<Option<Value>, ArmError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&self.body)
            .map(Some)
            .map_err(|e| ArmError::Protocol(format!("response body is not JSON: {e}")))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// Decodes a JSON value into a typed model.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ArmError> {
    serde_json::from_value(value)
        .map_err(|e| ArmError::Protocol(format!("cannot decode ARM response: {e}")))
}

/// A page of a list operation.
#[derive(Debug, serde::Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "nextLink", default)]
    next_link: Option<String>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    subscription_id: String,
    credential: ArmCredential,
    scope: String,
    pacer: Arc<Pacer>,
    observer: Arc<dyn ArmObserver>,
    retry: RetryPolicy,
    lro: LroPolicy,
    /// Resource Graph's quota of this client's identity.
    graph_quota: Arc<super::graph::QuotaState>,
}

/// Client for Azure Resource Manager. Cheap to clone (one `Arc`); clones share the connection
/// pool, token cache, rate limiters and observer.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("subscription_id", &self.inner.subscription_id)
            .field("credential", &self.inner.credential)
            .finish()
    }
}

impl ArmClient {
    /// Builds a client: HTTP pool (rustls, plus the extra CA if configured), credential, limiters.
    pub fn new(config: ArmConfig) -> Result<ArmClient, ArmError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("azlin-operator/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ArmError::Config(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ArmError::Config(format!("invalid CA file {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(ArmError::Config(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ArmError::Config(format!("cannot build HTTP client: {e}")))?;
        let credential = ArmCredential::from_choice(&config.credential, &config.token_scope)?;
        Ok(ArmClient {
            inner: Arc::new(Inner {
                http,
                endpoint: config.endpoint,
                subscription_id: config.subscription_id,
                credential,
                scope: config.token_scope,
                pacer: Arc::new(
                    Pacer::new(config.rate_limits)
                        .with_max_retry_after(config.retry.max_retry_after),
                ),
                observer: Arc::new(NoopObserver),
                retry: config.retry,
                lro: config.lro,
                graph_quota: Arc::default(),
            }),
        })
    }

    fn with_inner(&self, change: impl FnOnce(&mut Inner)) -> ArmClient {
        let mut inner = (*self.inner).clone();
        change(&mut inner);
        ArmClient {
            inner: Arc::new(inner),
        }
    }

    /// The same client reporting to `observer` (e.g. the runtime's metrics).
    pub fn with_observer(&self, observer: Arc<dyn ArmObserver>) -> ArmClient {
        self.with_inner(|i| i.observer = observer)
    }

    /// The same client with another LRO polling policy.
    pub fn with_lro_policy(&self, lro: LroPolicy) -> ArmClient {
        self.with_inner(|i| i.lro = lro)
    }

    /// The same client with another retry policy.
    pub fn with_retry_policy(&self, retry: RetryPolicy) -> ArmClient {
        self.with_inner(|i| i.retry = retry)
    }

    /// The same client with another credential (sharing everything else).
    pub fn with_credential(&self, credential: ArmCredential) -> ArmClient {
        self.with_inner(|i| {
            i.credential = credential;
            i.graph_quota = Arc::default();
        })
    }

    /// A client for a tenant's own credential (and optionally subscription), sharing this client's
    /// connection pool, rate limiters and observer.
    pub fn for_tenant(
        &self,
        credential: &CredentialChoice,
        subscription_id: Option<String>,
    ) -> Result<ArmClient, ArmError> {
        let credential = ArmCredential::from_choice(credential, &self.inner.scope)?;
        Ok(self.with_inner(|i| {
            i.credential = credential;
            i.graph_quota = Arc::default();
            if let Some(s) = subscription_id {
                i.subscription_id = s;
            }
        }))
    }

    /// [`ArmClient::for_tenant`] from a tenant credential Secret's `data`
    /// (keys documented in [`super::credential`]).
    pub fn for_tenant_secret(
        &self,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<ArmClient, ArmError> {
        self.for_tenant(
            &CredentialChoice::from_secret_data(data)?,
            secret_subscription_id(data),
        )
    }

    /// The subscription this client manages.
    pub fn subscription_id(&self) -> &str {
        &self.inner.subscription_id
    }

    /// The ARM endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// The LRO polling policy.
    pub fn lro_policy(&self) -> &LroPolicy {
        &self.inner.lro
    }

    /// The id of resource group `name` in this client's subscription.
    pub fn resource_group_id(&self, name: &str) -> ResourceId {
        ResourceId::resource_group(self.inner.subscription_id.clone(), name)
    }

    /// URL for `path` (e.g. a resource id) with `api-version` and extra query pairs.
    pub fn url(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Url, ArmError> {
        let mut url = self.inner.endpoint.clone();
        let base = url.path().trim_end_matches('/').to_string();
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        url.set_path(&format!("{base}{path}"));
        {
            let mut q = url.query_pairs_mut();
            q.clear().append_pair("api-version", api_version);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The sustained rate (requests per second) that the provider policies which answered
    /// requests like `method` on `path` with `query` allow (e.g. Compute's `HighCostGet30Min`
    /// for VM lists with instance views), learned from their answers; `None` while none did.
    pub fn provider_rate(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Option<f64> {
        let url = self.url(path, "", query).ok()?;
        let subscription = subscription_of_path(url.path()).unwrap_or(&self.inner.subscription_id);
        let paced = pacing_type(&resource_type_of_path(url.path()), &url);
        self.inner.pacer.provider_rate(subscription, method, &paced)
    }

    /// Azure Resource Graph queries with this client's credential.
    pub fn graph(&self) -> super::graph::Graph<'_> {
        super::graph::Graph::new(self)
    }

    /// The refill (reads per second) of this subscription's read budget, once Azure reported
    /// it (`x-ms-ratelimit-remaining-subscription-reads`); `None` before, or without pacing.
    pub fn read_rate(&self) -> Option<f64> {
        self.inner.pacer.class_rate(
            &self.inner.subscription_id,
            super::throttle::RequestClass::Read,
        )
    }

    /// Resolves a URL ARM handed out (`nextLink`, `Azure-AsyncOperation`, `Location`). The token is
    /// only ever sent to the configured endpoint's origin, so a URL on another origin is refused.
    pub fn resolve(&self, link: &str) -> Result<Url, ArmError> {
        let url = self
            .inner
            .endpoint
            .join(link)
            .map_err(|e| ArmError::Protocol(format!("invalid URL {link:?} from ARM: {e}")))?;
        if url.origin() != self.inner.endpoint.origin() {
            return Err(ArmError::Protocol(format!(
                "ARM returned a URL on another origin ({}); refusing to send credentials there",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// Sends one request with throttling, auth, retries and observation; statuses ≥ 400 become
    /// typed errors.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<ArmResponse, ArmError> {
        let resource_type = resource_type_of_path(url.path());
        let paced = pacing_type(&resource_type, url);
        let retries = AtomicU32::new(0);
        let policy = self.inner.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        (|| self.send_once(&method, url, body, &resource_type, &paced))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(ArmError::is_retryable)
            .adjust(|e, backoff| backoff.map(|d| e.retry_after().map_or(d, |ra| ra.min(policy.max_retry_after))))
            .notify(|e, delay| {
                let attempt = retries.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(%method, resource_type, attempt, ?delay, error = %e, "retrying ARM request");
                self.inner.observer.on_retry(&method, &resource_type, attempt, delay, e);
            })
            .await
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        resource_type: &str,
        paced: &str,
    ) -> Result<ArmResponse, ArmError> {
        // Tenant-level requests (Resource Graph, the subscription list) do not draw on a
        // subscription's budgets; Resource Graph paces itself from its own quota.
        let subscription = subscription_of_path(url.path());
        let graph = super::graph::is_query_path(url.path());
        if graph {
            self.inner.graph_quota.wait().await;
        }
        let waited = match subscription {
            Some(s) => self.inner.pacer.acquire(s, method, paced).await,
            None => Duration::ZERO,
        };
        if !waited.is_zero() {
            self.inner
                .observer
                .on_rate_limited(method, resource_type, waited);
        }
        let token = self.inner.credential.token().await?;
        super::pacing::note_request(method, resource_type);
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string());
        if let Some(b) = body {
            request = request.json(b);
        } else if *method != Method::GET && *method != Method::HEAD {
            request = request.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let observer = &self.inner.observer;
        let transport = |e: reqwest::Error| {
            let e = ArmError::from(e);
            observer.on_transport_error(method, resource_type, &e);
            e
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        let remaining = RateLimitRemaining::from_headers(&headers);
        let mut retry_after = parse_retry_after(&headers, SystemTime::now());
        if graph {
            let resets = self.inner.graph_quota.observe(&headers);
            if status == 429 {
                retry_after = retry_after.or(resets);
            }
        }
        if let Some(subscription) = subscription {
            self.inner.pacer.observe(
                subscription,
                method,
                paced,
                status,
                remaining.as_ref(),
                retry_after,
            );
        }
        self.inner
            .observer
            .on_response(method, resource_type, status, remaining.as_ref());
        let request_id = headers
            .get("x-ms-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        tracing::debug!(%method, path = url.path(), status, request_id, "ARM response");
        if status >= 400 {
            if status == 401 {
                self.inner.credential.invalidate().await;
            }
            return Err(ArmError::from_response(status, &body, retry_after));
        }
        Ok(ArmResponse {
            status,
            headers,
            body,
        })
    }

    /// GET `path`; `Ok(None)` on 404.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<T>, ArmError> {
        self.get_json_query(path, api_version, &[]).await
    }

    /// GET `path` with extra query pairs (e.g. `$expand`); `Ok(None)` on 404.
    pub async fn get_json_query<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>, ArmError> {
        let url = self.url(path, api_version, query)?;
        match self.send(Method::GET, &url, None).await {
            Ok(r) => match r.json_value()? {
                Some(v) => decode(v).map(Some),
                None => Err(ArmError::Protocol(format!(
                    "empty body from GET {}",
                    url.path()
                ))),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts a PUT (create or replace) and returns its poller without waiting.
    pub async fn begin_put_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<Poller, ArmError> {
        self.begin_write(Method::PUT, path, api_version, body).await
    }

    /// PUT and wait for the operation; returns the resource as ARM reports it afterwards.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<T, ArmError> {
        let poller = self.begin_put_json(path, api_version, body).await?;
        self.finish_write(poller, path).await
    }

    /// Starts a PATCH (partial update) and returns its poller without waiting.
    pub async fn begin_patch_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<Poller, ArmError> {
        self.begin_write(Method::PATCH, path, api_version, body)
            .await
    }

    /// PATCH and wait for the operation; returns the resource afterwards.
    pub async fn patch_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<T, ArmError> {
        let poller = self.begin_patch_json(path, api_version, body).await?;
        self.finish_write(poller, path).await
    }

    async fn begin_write<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<Poller, ArmError> {
        let url = self.url(path, api_version, &[])?;
        let body = serde_json::to_value(body)
            .map_err(|e| ArmError::Protocol(format!("cannot encode request: {e}")))?;
        let response = self.send(method.clone(), &url, Some(&body)).await?;
        Poller::from_initial(self, method, &url, &response)
    }

    async fn finish_write<T: DeserializeOwned>(
        &self,
        poller: Poller,
        path: &str,
    ) -> Result<T, ArmError> {
        match self.wait(poller).await? {
            Some(v) => decode(v),
            None => Err(ArmError::Protocol(format!(
                "no resource body after writing {path}"
            ))),
        }
    }

    /// Starts a POST action (`{path}/{action}`, e.g. a VM's `start`) without waiting.
    pub async fn begin_post_action(
        &self,
        path: &str,
        action: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<Poller, ArmError> {
        let url = self.url(
            &format!("{}/{action}", path.trim_end_matches('/')),
            api_version,
            &[],
        )?;
        let response = self.send(Method::POST, &url, body).await?;
        Poller::from_initial(self, Method::POST, &url, &response)
    }

    /// POST an action and wait for it; returns the action's result body, if any.
    pub async fn post_action(
        &self,
        path: &str,
        action: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ArmError> {
        let poller = self
            .begin_post_action(path, action, api_version, body)
            .await?;
        self.wait(poller).await
    }

    /// Starts a DELETE without waiting; a resource that is already gone gives a finished poller.
    pub async fn begin_delete(&self, path: &str, api_version: &str) -> Result<Poller, ArmError> {
        let url = self.url(path, api_version, &[])?;
        match self.send(Method::DELETE, &url, None).await {
            Ok(response) => Poller::from_initial(self, Method::DELETE, &url, &response),
            Err(e) if e.is_not_found() => Ok(Poller::finished(Method::DELETE, &url, None)),
            Err(e) => Err(e),
        }
    }

    /// DELETE and wait until the resource is gone (404 counts as success).
    pub async fn delete(&self, path: &str, api_version: &str) -> Result<(), ArmError> {
        let poller = self.begin_delete(path, api_version).await?;
        self.wait(poller).await.map(|_| ())
    }

    /// GET a collection, following `nextLink` pages.
    pub async fn list_json<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, ArmError> {
        let mut url = self.url(path, api_version, query)?;
        let mut items = Vec::new();
        loop {
            let response = self.send(Method::GET, &url, None).await?;
            let page: Page<T> = decode(response.json_value()?.unwrap_or(Value::Null))?;
            items.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(link) => url = self.resolve(&link)?,
                None => return Ok(items),
            }
        }
    }

    /// GET any resource by id (api-version from [`api_versions::for_resource_type`]); `Ok(None)` on 404.
    pub async fn get_by_id<T: DeserializeOwned>(
        &self,
        id: &ResourceId,
    ) -> Result<Option<T>, ArmError> {
        self.get_json(&id.to_string(), api_version_of(id)?).await
    }

    /// PUT any resource by id and wait.
    pub async fn put_by_id<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        body: &B,
    ) -> Result<T, ArmError> {
        self.put_json(&id.to_string(), api_version_of(id)?, body)
            .await
    }

    /// Start deleting any resource by id.
    pub async fn begin_delete_by_id(&self, id: &ResourceId) -> Result<Poller, ArmError> {
        self.begin_delete(&id.to_string(), api_version_of(id)?)
            .await
    }

    /// DELETE any resource by id and wait.
    pub async fn delete_by_id(&self, id: &ResourceId) -> Result<(), ArmError> {
        self.delete(&id.to_string(), api_version_of(id)?).await
    }
}

/// The pinned api-version for an id's type, or a configuration error.
pub fn api_version_of(id: &ResourceId) -> Result<&'static str, ArmError> {
    let t = id.resource_type();
    api_versions::for_resource_type(&t)
        .ok_or_else(|| ArmError::Config(format!("no pinned api-version for {t}")))
}

fn subscription_of_path(path: &str) -> Option<&str> {
    let mut it = path.split('/').filter(|s| !s.is_empty());
    match (it.next(), it.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => Some(id),
        _ => None,
    }
}

/// What the pacer tells requests apart by: the resource type, plus an expansion that a
/// provider may charge to other policies (Compute counts a VM list with
/// `$expand=instanceView` or `statusOnly=true` as a high-cost read, a plain one as low-cost).
pub fn pacing_type(resource_type: &str, url: &Url) -> String {
    let mut paced = resource_type.to_string();
    for (k, v) in url.query_pairs() {
        if k.eq_ignore_ascii_case("$expand") || k.eq_ignore_ascii_case("statusOnly") {
            paced.push_str(&format!("?{k}={}", v.to_ascii_lowercase()));
        }
    }
    paced
}

/// A low-cardinality resource type for a URL path (metrics label): `Microsoft.Compute/virtualMachines`,
/// `Microsoft.Compute/virtualMachines/start` for an action, `Microsoft.Compute/locations/operations`
/// for an operation-status URL, `Microsoft.Resources/resourceGroups` for groups.
pub fn resource_type_of_path(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(p) = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    {
        let Some(namespace) = segs.get(p + 1) else {
            return "unknown".to_string();
        };
        let rest = &segs[(p + 2).min(segs.len())..];
        let mut t = (*namespace).to_string();
        for (i, s) in rest.iter().enumerate() {
            if i % 2 == 0 {
                t.push('/');
                t.push_str(s);
            }
        }
        return t;
    }
    match segs
        .iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
    {
        Some(i) => {
            let mut t = "Microsoft.Resources/resourceGroups".to_string();
            if let Some(extra) = segs.get(i + 2) {
                t.push('/');
                t.push_str(extra);
            }
            t
        }
        None if segs
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("subscriptions")) =>
        {
            "Microsoft.Resources/subscriptions".to_string()
        }
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_of_paths() {
        let vm =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
        assert_eq!(
            resource_type_of_path(vm),
            "Microsoft.Compute/virtualMachines"
        );
        assert_eq!(
            resource_type_of_path(&format!("{vm}/start")),
            "Microsoft.Compute/virtualMachines/start"
        );
        assert_eq!(
            resource_type_of_path(
                "/subscriptions/s/providers/Microsoft.Compute/locations/westus2/operations/abc"
            ),
            "Microsoft.Compute/locations/operations"
        );
        assert_eq!(
            resource_type_of_path(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/fileServices/default/shares/h"
            ),
            "Microsoft.Storage/storageAccounts/fileServices/shares"
        );
        assert_eq!(
            resource_type_of_path("/subscriptions/s/resourceGroups/rg"),
            "Microsoft.Resources/resourceGroups"
        );
        assert_eq!(
            resource_type_of_path("/subscriptions/s/resourcegroups/rg/resources"),
            "Microsoft.Resources/resourceGroups/resources"
        );
        assert_eq!(
            resource_type_of_path("/subscriptions/s/resourcegroups"),
            "Microsoft.Resources/resourceGroups"
        );
        assert_eq!(
            resource_type_of_path("/subscriptions/s"),
            "Microsoft.Resources/subscriptions"
        );
        assert_eq!(resource_type_of_path("/foo"), "unknown");
        assert_eq!(
            subscription_of_path("/subscriptions/abc/resourceGroups/x"),
            Some("abc")
        );
        assert_eq!(subscription_of_path("/tenants"), None);
    }

    #[test]
    fn builds_urls_and_refuses_foreign_origins() {
        let config =
            ArmConfig::for_emulator("http://127.0.0.1:9/prefix/", "sub", "t").expect("config");
        let client = ArmClient::new(config).expect("client");
        let url = client
            .url(
                "/subscriptions/sub/resourceGroups/rg",
                "2021-04-01",
                &[("$filter", "tagName eq 'a'")],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/subscriptions/sub/resourceGroups/rg?api-version=2021-04-01&%24filter=tagName+eq+%27a%27"
        );
        assert!(
            client
                .resolve("http://127.0.0.1:9/op/1?api-version=x")
                .is_ok()
        );
        assert!(client.resolve("/relative/op").is_ok());
        assert!(matches!(
            client.resolve("http://evil.example/op"),
            Err(ArmError::Protocol(_))
        ));
        assert!(matches!(
            client.resolve("https://127.0.0.1:9/op"),
            Err(ArmError::Protocol(_))
        ));
    }

    #[test]
    fn rejects_bad_ca_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let config = ArmConfig::for_emulator("https://127.0.0.1:9", "sub", "t")
            .expect("config")
            .with_ca_file(&path);
        assert!(matches!(ArmClient::new(config), Err(ArmError::Config(_))));
        let missing = ArmConfig::for_emulator("https://127.0.0.1:9", "sub", "t")
            .expect("config")
            .with_ca_file(dir.path().join("nope"));
        assert!(matches!(ArmClient::new(missing), Err(ArmError::Config(_))));
    }
}
