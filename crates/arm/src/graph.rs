//! Azure Resource Graph: KQL queries over the resources of whole subscriptions, up to 1000
//! rows a read, across resource types — the cheap way to observe thousands of resources at
//! once (for example after a restart), where ARM's per-type lists take a read per 100 or so.
//!
//! Resource Graph is a tenant-level service with its own quota per user (15 queries per
//! 5-second window by default), reported in `x-ms-user-quota-remaining` and
//! `x-ms-user-quota-resets-after`; it does not draw on a subscription's ARM budgets. Queries
//! here wait for the window to reset once the quota is spent instead of drawing 429s; the
//! quota headers are read from every answer, a 429 included, whose retry waits for the
//! reported reset when the answer has no `Retry-After`.
//! Its data lags ARM by seconds (sometimes minutes) after a change: callers must not treat
//! an answer as newer than that.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use reqwest::header::HeaderMap;

use super::client::{ArmClient, decode};
use super::error::ArmError;

/// The API version of `Microsoft.ResourceGraph/resources` used.
pub const API_VERSION: &str = "2022-10-01";

/// The path queries are posted to.
const QUERY_PATH: &str = "/providers/Microsoft.ResourceGraph/resources";

/// Rows per page asked for (Resource Graph's most).
pub const PAGE_ROWS: u32 = 1000;

/// Longest wait for a spent quota to reset that is honoured as told (a longer answer is
/// taken as this).
const MAX_QUOTA_WAIT: Duration = Duration::from_secs(60);

/// When the spent quota of the client's identity resets, if it is spent.
#[derive(Debug, Default)]
pub(crate) struct QuotaState(Mutex<Option<Instant>>);

impl QuotaState {
    /// Waits until a spent quota resets (at once when it is not spent).
    pub(crate) async fn wait(&self) {
        let until = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Records the quota an answer (of any status) reports; returns how long until a spent
    /// quota resets, which is how long a 429 without `Retry-After` should wait.
    pub(crate) fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining =
            header("x-ms-user-quota-remaining").and_then(|v| v.trim().parse::<u64>().ok());
        let resets = header("x-ms-user-quota-resets-after")
            .and_then(parse_resets_after)
            .map(|after| after.min(MAX_QUOTA_WAIT));
        let spent = match (remaining, resets) {
            (Some(0), Some(after)) => Some(after),
            _ => None,
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            spent.map(|after| Instant::now() + after);
        spent
    }
}

/// Whether `path` is Resource Graph's query endpoint (whose answers carry its user quota).
pub(crate) fn is_query_path(path: &str) -> bool {
    path.eq_ignore_ascii_case(QUERY_PATH)
}

/// `hh:mm:ss` (optionally with fractions of a second) as Resource Graph reports the time
/// until its quota resets.
pub fn parse_resets_after(value: &str) -> Option<Duration> {
    let mut parts = value.trim().split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let seconds: f64 = s.parse().ok()?;
    let total = h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60;
    (seconds >= 0.0 && seconds.is_finite())
        .then(|| Duration::from_secs(total) + Duration::from_secs_f64(seconds))
}

#[derive(Deserialize)]
struct QueryPage {
    #[serde(default)]
    data: Vec<Value>,
    #[serde(rename = "$skipToken", default)]
    skip_token: Option<String>,
    #[serde(rename = "resultTruncated", default)]
    result_truncated: Option<String>,
}

/// Resource Graph queries through an [`ArmClient`] (its endpoint, credential and retries).
#[derive(Debug, Clone, Copy)]
pub struct Graph<'a> {
    client: &'a ArmClient,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(client: &'a ArmClient) -> Self {
        Self { client }
    }

    /// Every row `query` selects in `subscriptions`, page by page (each page one request).
    /// The query must keep the `id` column, which Resource Graph needs to page; an answer
    /// that says it was truncated anyway is an error rather than a partial result.
    pub async fn query(&self, subscriptions: &[&str], query: &str) -> Result<Vec<Value>, ArmError> {
        let mut rows = Vec::new();
        self.query_pages(subscriptions, query, |page| rows.extend(page))
            .await?;
        Ok(rows)
    }

    /// [`Graph::query`], handing each page's rows to `on_page` as it arrives (so a large
    /// answer need not be held whole).
    pub async fn query_pages(
        &self,
        subscriptions: &[&str],
        query: &str,
        mut on_page: impl FnMut(Vec<Value>) + Send,
    ) -> Result<(), ArmError> {
        let url = self.client.url(QUERY_PATH, API_VERSION, &[])?;
        let mut token: Option<String> = None;
        loop {
            let mut options = json!({ "$top": PAGE_ROWS, "resultFormat": "objectArray" });
            if let Some(t) = &token {
                options["$skipToken"] = Value::from(t.as_str());
            }
            let body = json!({
                "subscriptions": subscriptions,
                "query": query,
                "options": options,
            });
            let sent = self.client.send(Method::POST, &url, Some(&body)).await?;
            let page: QueryPage = decode(sent.json_value()?.unwrap_or(Value::Null))?;
            if page.result_truncated.as_deref() == Some("true") {
                return Err(ArmError::Protocol(
                    "Resource Graph truncated the answer: the query must keep the id column to page"
                        .into(),
                ));
            }
            on_page(page.data);
            match page.skip_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_parse_as_resource_graph_writes_them() {
        assert_eq!(parse_resets_after("00:00:05"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_resets_after("01:02:03"),
            Some(Duration::from_secs(3723))
        );
        assert_eq!(
            parse_resets_after("00:00:04.5"),
            Some(Duration::from_millis(4500))
        );
        assert_eq!(parse_resets_after("5"), None);
        assert_eq!(parse_resets_after("00:00:-1"), None);
    }
}
