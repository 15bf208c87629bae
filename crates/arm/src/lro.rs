//! Long-running operations, as documented in "Track asynchronous Azure operations".
//!
//! After a PUT/PATCH/POST/DELETE the client polls `Azure-AsyncOperation` when present, else
//! `Location`, waiting `Retry-After` (clamped by [`LroPolicy`]) between polls. An operation ends
//! `Succeeded`, `Failed` or `Canceled`; failures surface the operation's `error {code, message}`
//! as [`ArmError::OperationFailed`]. A PUT answered without either header but with a
//! non-terminal `provisioningState` is followed by polling the resource itself.
//!
//! A [`Poller`] is serializable, so a controller can store it and resume; or, after a restart,
//! completion can be re-derived from the resource alone with [`ArmClient::wait_provisioned`]
//! (polls GET until a terminal `provisioningState`) and [`ArmClient::wait_deleted`] (until 404).

use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::client::{ArmClient, ArmResponse, api_version_of};
use super::config::LroPolicy;
use super::error::{ArmError, ErrorDetail, FailedStatus};
use super::headers::parse_retry_after;
use super::id::ResourceId;

/// Status of an asynchronous operation or a resource's `provisioningState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationState {
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Canceled,
    /// Any other value (`InProgress`, `Creating`, `Updating`, `Deleting`, `Accepted`, ...): not finished.
    InProgress(String),
}

impl OperationState {
    /// Parses a status string case-insensitively.
    pub fn parse(s: &str) -> OperationState {
        if s.eq_ignore_ascii_case("Succeeded") {
            OperationState::Succeeded
        } else if s.eq_ignore_ascii_case("Failed") {
            OperationState::Failed
        } else if s.eq_ignore_ascii_case("Canceled") || s.eq_ignore_ascii_case("Cancelled") {
            OperationState::Canceled
        } else {
            OperationState::InProgress(s.to_string())
        }
    }

    /// Whether the state is final.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, OperationState::InProgress(_))
    }

    /// How a `Failed` or `Canceled` state is reported in [`ArmError::OperationFailed`];
    /// `None` for the other states.
    pub fn failed_status(&self) -> Option<FailedStatus> {
        match self {
            OperationState::Failed => Some(FailedStatus::Failed),
            OperationState::Canceled => Some(FailedStatus::Canceled),
            OperationState::Succeeded | OperationState::InProgress(_) => None,
        }
    }
}

/// What a poller watches next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "url")]
pub enum Monitor {
    /// Nothing: the operation has finished.
    Done,
    /// The operation-status URL from `Azure-AsyncOperation`.
    AsyncOperation(String),
    /// The URL from `Location` (202 while running, 200/204 when done).
    Location(String),
    /// The resource itself: its `provisioningState` (or, for deletes, its disappearance).
    Resource,
}

/// The state of a long-running operation; serializable so it can be stored and resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Poller {
    /// HTTP method of the initial request.
    pub method: String,
    /// The resource URL (with api-version): final GET after PUT/PATCH, watched in [`Monitor::Resource`].
    pub resource_url: String,
    /// What to poll next.
    pub monitor: Monitor,
    /// `Location` of the initial response, where a POST's result is fetched after an async operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_location: Option<String>,
    /// Wait the server asked for before the next poll, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The result once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Last reported `percentComplete` of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<f64>,
}

/// An async-operation status body.
#[derive(Debug, Deserialize)]
struct OperationBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<ErrorDetail>,
    #[serde(rename = "percentComplete", default)]
    percent_complete: Option<f64>,
    #[serde(default)]
    properties: Option<Value>,
}

/// `properties.provisioningState` of a resource body, if any.
pub fn provisioning_state_of(body: &Value) -> Option<OperationState> {
    body.pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .map(OperationState::parse)
}

fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    parse_retry_after(headers, SystemTime::now())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn provisioning_failure(state: &OperationState, url: &str) -> ArmError {
    let status = state.failed_status().unwrap_or(FailedStatus::Failed);
    let path = url.split('?').next().unwrap_or(url);
    ArmError::operation_failed(
        status,
        Some(ErrorDetail {
            code: format!("ProvisioningState{status}"),
            message: format!("resource {path} has provisioningState {status}"),
            ..ErrorDetail::default()
        }),
    )
}

impl Poller {
    /// A poller that has already finished with `result`.
    pub fn finished(method: Method, resource_url: &Url, result: Option<Value>) -> Poller {
        Poller {
            method: method.to_string(),
            resource_url: resource_url.to_string(),
            monitor: Monitor::Done,
            final_location: None,
            retry_after_ms: None,
            result,
            percent_complete: None,
        }
    }

    /// A poller that watches the resource at `resource_url` (re-deriving completion from its
    /// `provisioningState`; with `DELETE`, until it is gone).
    pub fn watch_resource(method: Method, resource_url: &Url) -> Poller {
        Poller {
            monitor: Monitor::Resource,
            ..Poller::finished(method, resource_url, None)
        }
    }

    /// Derives the poller from the initial response of a write.
    pub fn from_initial(
        client: &ArmClient,
        method: Method,
        resource_url: &Url,
        response: &ArmResponse,
    ) -> Result<Poller, ArmError> {
        let mut poller = Poller::finished(method.clone(), resource_url, None);
        poller.retry_after_ms = retry_after_ms(&response.headers);
        let location = response
            .header("location")
            .map(|l| client.resolve(l))
            .transpose()?;
        if let Some(op) = response.header("azure-asyncoperation") {
            poller.monitor = Monitor::AsyncOperation(client.resolve(op)?.to_string());
            poller.final_location = location.map(|l| l.to_string());
            return Ok(poller);
        }
        if let Some(loc) = location.filter(|_| matches!(response.status, 201 | 202)) {
            poller.monitor = Monitor::Location(loc.to_string());
            return Ok(poller);
        }
        let body = response.json_value()?;
        if method == Method::DELETE {
            if response.status == 202 {
                poller.monitor = Monitor::Resource;
            }
            return Ok(poller);
        }
        if method == Method::POST {
            poller.result = body;
            return Ok(poller);
        }
        match body.as_ref().and_then(provisioning_state_of) {
            // "If no value is returned for provisioningState, the operation finished and succeeded."
            Some(OperationState::Succeeded) => poller.result = body,
            None if body.is_some() && response.status != 202 => poller.result = body,
            Some(state @ (OperationState::Failed | OperationState::Canceled)) => {
                return Err(provisioning_failure(&state, resource_url.as_str()));
            }
            // In progress, or accepted (202) without a body or a URL to poll: watch the resource.
            Some(OperationState::InProgress(_)) | None => poller.monitor = Monitor::Resource,
        }
        Ok(poller)
    }

    /// Whether the operation has finished.
    pub fn is_done(&self) -> bool {
        self.monitor == Monitor::Done
    }

    fn method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).unwrap_or(Method::GET)
    }

    /// The wait before the next poll under `policy`.
    pub fn next_interval(&self, policy: &LroPolicy) -> Duration {
        policy.interval(self.retry_after_ms.map(Duration::from_millis))
    }

    /// Polls once; afterwards [`Poller::is_done`] tells whether it finished (result in `result`).
    /// A failed or cancelled operation is returned as an error.
    pub async fn poll(&mut self, client: &ArmClient) -> Result<(), ArmError> {
        match self.monitor.clone() {
            Monitor::Done => Ok(()),
            Monitor::AsyncOperation(url) => self.poll_async_operation(client, &url).await,
            Monitor::Location(url) => self.poll_location(client, &url).await,
            Monitor::Resource => self.poll_resource(client).await,
        }
    }

    async fn poll_async_operation(
        &mut self,
        client: &ArmClient,
        url: &str,
    ) -> Result<(), ArmError> {
        let response = client
            .send(Method::GET, &client.resolve(url)?, None)
            .await?;
        self.retry_after_ms = retry_after_ms(&response.headers);
        let body: OperationBody =
            super::client::decode(response.json_value()?.unwrap_or(Value::Null))?;
        self.percent_complete = body.percent_complete.or(self.percent_complete);
        let Some(status) = body.status else {
            return Err(ArmError::Protocol(format!(
                "operation status without 'status' from {}",
                url.split('?').next().unwrap_or(url)
            )));
        };
        match OperationState::parse(&status) {
            OperationState::InProgress(_) => Ok(()),
            OperationState::Failed => {
                Err(ArmError::operation_failed(FailedStatus::Failed, body.error))
            }
            OperationState::Canceled => Err(ArmError::operation_failed(
                FailedStatus::Canceled,
                body.error,
            )),
            OperationState::Succeeded => {
                let post_result = match (self.method(), self.final_location.clone()) {
                    (Method::POST, Some(loc)) => self.get_optional(client, &loc).await?,
                    _ => body.properties,
                };
                self.finish(client, post_result).await
            }
        }
    }

    async fn poll_location(&mut self, client: &ArmClient, url: &str) -> Result<(), ArmError> {
        let is_delete = self.method() == Method::DELETE;
        let response = match client.send(Method::GET, &client.resolve(url)?, None).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() && is_delete => {
                self.monitor = Monitor::Done;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.retry_after_ms = retry_after_ms(&response.headers);
        if response.status == 202 {
            return Ok(());
        }
        self.finish(client, response.json_value()?).await
    }

    /// Marks the operation done: a PUT/PATCH result is the resource read afresh, a POST's is
    /// `post_result`, a DELETE has none.
    async fn finish(
        &mut self,
        client: &ArmClient,
        post_result: Option<Value>,
    ) -> Result<(), ArmError> {
        self.result = match self.method() {
            Method::PUT | Method::PATCH => {
                Some(self.get_final(client, &self.resource_url.clone()).await?)
            }
            Method::POST => post_result,
            _ => None,
        };
        self.monitor = Monitor::Done;
        Ok(())
    }

    async fn poll_resource(&mut self, client: &ArmClient) -> Result<(), ArmError> {
        let url = client.resolve(&self.resource_url)?;
        let body = match client.send(Method::GET, &url, None).await {
            Ok(r) => {
                self.retry_after_ms = retry_after_ms(&r.headers);
                r.json_value()?
            }
            Err(e) if e.is_not_found() && self.method() == Method::DELETE => {
                self.monitor = Monitor::Done;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.method() == Method::DELETE {
            return Ok(());
        }
        match body.as_ref().and_then(provisioning_state_of) {
            Some(OperationState::InProgress(_)) => Ok(()),
            Some(state @ (OperationState::Failed | OperationState::Canceled)) => {
                Err(provisioning_failure(&state, &self.resource_url))
            }
            Some(OperationState::Succeeded) | None => {
                self.result = body;
                self.monitor = Monitor::Done;
                Ok(())
            }
        }
    }

    async fn get_final(&self, client: &ArmClient, url: &str) -> Result<Value, ArmError> {
        self.get_optional(client, url).await?.ok_or_else(|| {
            ArmError::Protocol(format!(
                "empty resource body from {}",
                url.split('?').next().unwrap_or(url)
            ))
        })
    }

    async fn get_optional(&self, client: &ArmClient, url: &str) -> Result<Option<Value>, ArmError> {
        client
            .send(Method::GET, &client.resolve(url)?, None)
            .await?
            .json_value()
    }
}

impl ArmClient {
    /// Polls `poller` until it finishes (or [`LroPolicy::timeout`] passes); returns its result.
    pub async fn wait(&self, mut poller: Poller) -> Result<Option<Value>, ArmError> {
        let policy = *self.lro_policy();
        let start = Instant::now();
        while !poller.is_done() {
            if start.elapsed() >= policy.timeout {
                return Err(ArmError::OperationTimeout {
                    what: format!(
                        "{} {}",
                        poller.method,
                        poller.resource_url.split('?').next().unwrap_or_default()
                    ),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(poller.next_interval(&policy)).await;
            poller.poll(self).await?;
        }
        Ok(poller.result)
    }

    /// Waits until the resource reaches a terminal `provisioningState` (no state counts as
    /// Succeeded) and returns its body; Failed/Canceled become [`ArmError::OperationFailed`], a
    /// missing resource [`ArmError::NotFound`]. Use after a restart to re-derive an operation's outcome.
    pub async fn wait_provisioned(&self, id: &ResourceId) -> Result<Value, ArmError> {
        let url = self.url(&id.to_string(), api_version_of(id)?, &[])?;
        let mut poller = Poller::watch_resource(Method::PUT, &url);
        // Check right away: a resource that already finished needs no wait.
        poller.poll(self).await?;
        self.wait(poller)
            .await?
            .ok_or_else(|| ArmError::Protocol(format!("empty body from GET {id}")))
    }

    /// Waits until GET of the resource answers 404 (after a delete, possibly begun before a restart).
    pub async fn wait_deleted(&self, id: &ResourceId) -> Result<(), ArmError> {
        let url = self.url(&id.to_string(), api_version_of(id)?, &[])?;
        let mut poller = Poller::watch_resource(Method::DELETE, &url);
        poller.poll(self).await?;
        self.wait(poller).await.map(|_| ())
    }

    /// Polls GET of `id` until `done` returns `Some` for the body (404 is [`ArmError::NotFound`]),
    /// waiting [`LroPolicy`] intervals; e.g. a snapshot copy reaching `completionPercent` 100.
    pub async fn wait_until<T>(
        &self,
        id: &ResourceId,
        mut done: impl FnMut(&Value) -> Option<Result<T, ArmError>>,
    ) -> Result<T, ArmError> {
        let policy = *self.lro_policy();
        let version = api_version_of(id)?;
        let path = id.to_string();
        let start = Instant::now();
        loop {
            let body: Value =
                self.get_json(&path, version)
                    .await?
                    .ok_or_else(|| ArmError::NotFound {
                        code: "ResourceNotFound".to_string(),
                        message: format!("{path} disappeared while waiting for it"),
                    })?;
            if let Some(outcome) = done(&body) {
                return outcome;
            }
            if start.elapsed() >= policy.timeout {
                return Err(ArmError::OperationTimeout {
                    what: path,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(policy.interval(None)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_states() {
        assert_eq!(
            OperationState::parse("succeeded"),
            OperationState::Succeeded
        );
        assert_eq!(OperationState::parse("Failed"), OperationState::Failed);
        assert_eq!(OperationState::parse("Canceled"), OperationState::Canceled);
        assert!(!OperationState::parse("Creating").is_terminal());
        assert!(!OperationState::parse("InProgress").is_terminal());
        let body = serde_json::json!({"properties": {"provisioningState": "Updating"}});
        assert_eq!(
            provisioning_state_of(&body),
            Some(OperationState::InProgress("Updating".into()))
        );
        assert_eq!(provisioning_state_of(&serde_json::json!({})), None);
    }

    #[test]
    fn poller_roundtrips_through_json() {
        let url = Url::parse(
            "https://management.azure.com/subscriptions/s/resourceGroups/rg?api-version=2021-04-01",
        )
        .expect("url");
        let mut p = Poller::watch_resource(Method::DELETE, &url);
        p.retry_after_ms = Some(1500);
        let json = serde_json::to_string(&p).expect("ser");
        let back: Poller = serde_json::from_str(&json).expect("de");
        assert_eq!(back, p);
        assert!(!back.is_done());
        assert_eq!(
            back.next_interval(&LroPolicy::default()),
            Duration::from_millis(1500)
        );
        let op = Poller {
            monitor: Monitor::AsyncOperation("https://x/op".into()),
            ..p
        };
        let v = serde_json::to_value(&op).expect("ser");
        assert_eq!(
            v["monitor"],
            serde_json::json!({"kind": "AsyncOperation", "url": "https://x/op"})
        );
    }
}
