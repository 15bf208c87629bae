//! Azure Resource Graph: KQL queries over the resources of whole subscriptions, up to 1000
//! rows a read, across resource types — the cheap way to observe thousands of resources at
//! once (for example after a restart), where ARM's per-type lists take a read per 100 or so.
//!
//! Resource Graph is a tenant-level service with its own quota per user (15 queries per
//! 5-second window by default), reported in `x-ms-user-quota-remaining` and
//! `x-ms-user-quota-resets-after`; it does not draw on a subscription's ARM budgets. Queries
//! here wait for the window to reset once the quota is spent instead of drawing 429s.
//! Its data lags ARM by seconds (sometimes minutes) after a change: callers must not treat
//! an answer as newer than that.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{ArmClient, ArmResponse, decode};
use super::error::ArmError;

/// The API version of `Microsoft.ResourceGraph/resources` used.
pub const API_VERSION: &str = "2022-10-01";

/// Rows per page asked for (Resource Graph's most).
pub const PAGE_ROWS: u32 = 1000;

/// Longest wait for a spent quota to reset that is honoured as told (a longer answer is
/// taken as this).
const MAX_QUOTA_WAIT: Duration = Duration::from_secs(60);

/// When the spent quota of the client's identity resets, if it is spent.
#[derive(Debug, Default)]
pub(crate) struct QuotaState(Mutex<Option<Instant>>);

impl QuotaState {
    fn spent_until(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn observe(&self, response: &ArmResponse) {
        let remaining = response
            .header("x-ms-user-quota-remaining")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let resets = response
            .header("x-ms-user-quota-resets-after")
            .and_then(parse_resets_after);
        let mut until = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *until = match (remaining, resets) {
            (Some(0), Some(after)) => Some(Instant::now() + after.min(MAX_QUOTA_WAIT)),
            _ => None,
        };
    }
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
        let url = self.client.url(
            "/providers/Microsoft.ResourceGraph/resources",
            API_VERSION,
            &[],
        )?;
        let mut token: Option<String> = None;
        loop {
            if let Some(until) = self.client.graph_quota().spent_until() {
                tokio::time::sleep_until(until).await;
            }
            let mut options = json!({ "$top": PAGE_ROWS, "resultFormat": "objectArray" });
            if let Some(t) = &token {
                options["$skipToken"] = Value::from(t.as_str());
            }
            let body = json!({
                "subscriptions": subscriptions,
                "query": query,
                "options": options,
            });
            let sent = self.client.send(Method::POST, &url, Some(&body)).await;
            if let Ok(response) = &sent {
                self.client.graph_quota().observe(response);
            }
            let page: QueryPage = decode(sent?.json_value()?.unwrap_or(Value::Null))?;
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
