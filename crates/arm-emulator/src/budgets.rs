//! Azure's request budgets: ARM's token buckets per subscription and principal (and 15× that
//! per subscription across principals), and the Compute resource provider's sliding windows
//! for VM writes, disk writes and VM reads. Exhausted budgets answer 429 with `Retry-After`.
//!
//! Numbers and sources (`docs/emulator.md`, "Request budgets"): ARM reads 250 tokens refilled at
//! 25/s, writes and deletes 200 at 10/s (Microsoft Learn, "Understand how Azure Resource Manager
//! throttles requests"); Compute `PutVM3Min` 240 / `PutVM30Min` 1200,
//! `CreateUpdateDisks3Min` 1000 / `CreateUpdateDisks30Min` 8000, `HighCostGet3Min` 160 /
//! `HighCostGet30Min` 800 and `LowCostGet3Min` 4000 / `LowCostGet30Min` 32000 (values reported in
//! `x-ms-ratelimit-remaining-resource` headers and Microsoft's Compute throttling troubleshooting
//! page; Azure does not publish them as contractual limits).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::json;

use super::error::{ArmError, ErrorExtra};

/// Which ARM bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// GET/HEAD.
    Reads,
    /// PUT/PATCH/POST.
    Writes,
    /// DELETE.
    Deletes,
}

impl Bucket {
    /// The bucket of an HTTP method.
    pub fn of(method: &str) -> Self {
        match method {
            "GET" | "HEAD" => Self::Reads,
            "DELETE" => Self::Deletes,
            _ => Self::Writes,
        }
    }

    /// The `x-ms-ratelimit-remaining-subscription-*` header name.
    pub fn header(self) -> &'static str {
        match self {
            Self::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }

    /// ARM's bucket per subscription and principal: (burst, refill per second).
    pub fn nominal(self) -> (f64, f64) {
        match self {
            Self::Reads => (250.0, 25.0),
            Self::Writes | Self::Deletes => (200.0, 10.0),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Reads => "read",
            Self::Writes => "write",
            Self::Deletes => "delete",
        }
    }
}

/// The subscription-wide bucket is this many times a principal's (ARM: 15×).
pub const SUBSCRIPTION_FACTOR: f64 = 15.0;

#[derive(Debug, Clone)]
struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(capacity: f64, rate: f64, now: Instant) -> Self {
        Self {
            capacity,
            rate,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Time until one token is available.
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// A Compute throttling policy a request is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComputePolicy {
    /// VM creates and updates (PUT/PATCH).
    PutVm,
    /// Disk creates and updates.
    CreateUpdateDisks,
    /// Expensive VM reads: with the instance view (`$expand=instanceView`, `/instanceView`,
    /// `statusOnly=true` lists).
    HighCostGet,
    /// Plain VM reads and lists.
    LowCostGet,
}

impl ComputePolicy {
    /// The policy family's name (`PutVM`, `CreateUpdateDisks`, `HighCostGet`, `LowCostGet`).
    pub fn family(self) -> &'static str {
        match self {
            Self::PutVm => "PutVM",
            Self::CreateUpdateDisks => "CreateUpdateDisks",
            Self::HighCostGet => "HighCostGet",
            Self::LowCostGet => "LowCostGet",
        }
    }

    /// The policy's windows: (name, length, limit).
    pub fn windows(self) -> [(&'static str, Duration, u32); 2] {
        const M3: Duration = Duration::from_secs(180);
        const M30: Duration = Duration::from_secs(1800);
        match self {
            Self::PutVm => [("PutVM3Min", M3, 240), ("PutVM30Min", M30, 1200)],
            Self::CreateUpdateDisks => [
                ("CreateUpdateDisks3Min", M3, 1000),
                ("CreateUpdateDisks30Min", M30, 8000),
            ],
            Self::HighCostGet => [("HighCostGet3Min", M3, 160), ("HighCostGet30Min", M30, 800)],
            Self::LowCostGet => [
                ("LowCostGet3Min", M3, 4000),
                ("LowCostGet30Min", M30, 32000),
            ],
        }
    }
}

fn scaled(limit: f64, scale: f64) -> f64 {
    (limit * scale).round().max(1.0)
}

type BucketKey = (String, String, Bucket);
/// Buckets per (subscription, principal) and per subscription.
type BucketMaps = (
    HashMap<BucketKey, TokenBucket>,
    HashMap<(String, Bucket), TokenBucket>,
);
type WindowKey = (String, String, &'static str);

/// Remaining budget reported on an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remaining {
    /// The ARM bucket drawn from.
    pub bucket: Bucket,
    /// Tokens left for this principal in the subscription.
    pub count: u32,
}

/// ARM token buckets and Compute windows.
pub struct Budgets {
    arm_scale: f64,
    compute_scale: f64,
    buckets: Mutex<BucketMaps>,
    windows: Mutex<HashMap<WindowKey, VecDeque<Instant>>>,
    /// Resource Graph windows per principal: (window start, queries in it).
    graph: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Resource Graph's quota per user: queries per window (Microsoft Learn, "Guidance for
/// throttled requests in Azure Resource Graph").
pub const GRAPH_QUOTA: (u32, Duration) = (15, Duration::from_secs(5));

/// Resource Graph quota left after a query, as `x-ms-user-quota-*` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQuota {
    /// Queries left in the window.
    pub remaining: u32,
    /// Until the window resets.
    pub resets_after: Duration,
}

impl GraphQuota {
    /// The `x-ms-user-quota-remaining` and `x-ms-user-quota-resets-after` headers.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        let s = self.resets_after.as_secs_f64().ceil() as u64;
        [
            ("x-ms-user-quota-remaining", self.remaining.to_string()),
            (
                "x-ms-user-quota-resets-after",
                format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
            ),
        ]
    }
}

impl Budgets {
    /// `arm_scale` multiplies ARM's buckets and `compute_scale` Compute's windows; 0 disables
    /// the respective limits (answers still carry the nominal remaining counts).
    pub fn new(arm_scale: f64, compute_scale: f64) -> Self {
        Self {
            arm_scale: arm_scale.max(0.0),
            compute_scale: compute_scale.max(0.0),
            buckets: Mutex::new((HashMap::new(), HashMap::new())),
            windows: Mutex::new(HashMap::new()),
            graph: Mutex::new(HashMap::new()),
        }
    }

    /// Draws one token for `principal` in `subscription`; `Ok(remaining)` or 429
    /// `SubscriptionRequestsThrottled` with `Retry-After` (nothing is drawn then).
    pub fn draw(
        &self,
        subscription: &str,
        principal: &str,
        bucket: Bucket,
    ) -> Result<Remaining, ArmError> {
        let (burst, rate) = bucket.nominal();
        if self.arm_scale <= 0.0 {
            return Ok(Remaining {
                bucket,
                count: burst as u32,
            });
        }
        let (capacity, refill) = (scaled(burst, self.arm_scale), rate * self.arm_scale);
        let now = Instant::now();
        let sub = subscription.to_ascii_lowercase();
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (per_principal, per_subscription) = &mut *guard;
        let mine = per_principal
            .entry((sub.clone(), principal.to_string(), bucket))
            .or_insert_with(|| TokenBucket::new(capacity, refill, now));
        mine.refill(now);
        let all = per_subscription.entry((sub, bucket)).or_insert_with(|| {
            TokenBucket::new(
                scaled(burst * SUBSCRIPTION_FACTOR, self.arm_scale),
                refill * SUBSCRIPTION_FACTOR,
                now,
            )
        });
        all.refill(now);
        if mine.tokens < 1.0 || all.tokens < 1.0 {
            let wait = mine.wait().max(all.wait());
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of '{}' requests for subscription '{subscription}' actor '{principal}' exceeded. Please try again after '{seconds}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                    bucket.word()
                ),
            )
            .with_retry_after(seconds));
        }
        mine.tokens -= 1.0;
        all.tokens -= 1.0;
        Ok(Remaining {
            bucket,
            count: mine.tokens.min(all.tokens).floor().max(0.0) as u32,
        })
    }

    /// Counts one Resource Graph query of `principal` against [`GRAPH_QUOTA`] (scaled with
    /// ARM's buckets): the quota left and whether the query may run (when not, nothing is
    /// counted and the caller answers 429).
    pub fn graph_quota(&self, principal: &str) -> (GraphQuota, bool) {
        let (limit, window) = GRAPH_QUOTA;
        if self.arm_scale <= 0.0 {
            let quota = GraphQuota {
                remaining: limit,
                resets_after: window,
            };
            return (quota, true);
        }
        let limit = scaled(f64::from(limit), self.arm_scale) as u32;
        let now = Instant::now();
        let mut all = self.graph.lock().unwrap_or_else(|e| e.into_inner());
        let (start, used) = all.entry(principal.to_string()).or_insert((now, 0));
        if now.saturating_duration_since(*start) >= window {
            (*start, *used) = (now, 0);
        }
        let allowed = *used < limit;
        if allowed {
            *used += 1;
        }
        let quota = GraphQuota {
            remaining: limit - *used,
            resets_after: (*start + window).saturating_duration_since(now),
        };
        (quota, allowed)
    }

    /// Charges a Compute request to `policy` in `subscription` and `region`; `Ok(header value)`
    /// for `x-ms-ratelimit-remaining-resource`, or 429 `OperationNotAllowed` with `Retry-After`
    /// and a `TooManyRequests` detail naming the exhausted window.
    pub fn charge_compute(
        &self,
        subscription: &str,
        region: &str,
        policy: ComputePolicy,
    ) -> Result<String, ArmError> {
        let windows = policy.windows();
        let header = |counts: &[u32]| {
            windows
                .iter()
                .zip(counts)
                .map(|((name, _, _), n)| format!("Microsoft.Compute/{name};{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        if self.compute_scale <= 0.0 {
            let full: Vec<u32> = windows.iter().map(|(_, _, l)| *l).collect();
            return Ok(header(&full));
        }
        let now = Instant::now();
        let sub = subscription.to_ascii_lowercase();
        let mut all = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut exhausted: Option<(&'static str, Duration, u32, usize)> = None;
        let mut counts = Vec::new();
        for (name, length, limit) in windows {
            let limit = scaled(f64::from(limit), self.compute_scale) as u32;
            let log = all
                .entry((sub.clone(), region.to_string(), name))
                .or_default();
            while log
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= length)
            {
                log.pop_front();
            }
            if log.len() as u32 >= limit {
                let oldest = log.front().copied().unwrap_or(now);
                let wait = (oldest + length).saturating_duration_since(now);
                if exhausted.is_none_or(|(_, w, _, _)| wait > w) {
                    exhausted = Some((name, wait, limit, log.len()));
                }
            }
            counts.push(limit.saturating_sub(log.len() as u32));
        }
        if let Some((name, wait, limit, measured)) = exhausted {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let end = Utc::now();
            let start = end - chrono::Duration::from_std(wait).unwrap_or_default();
            let detail = json!({
                "operationGroup": name,
                "startTime": start.to_rfc3339(),
                "endTime": end.to_rfc3339(),
                "allowedRequestCount": limit,
                "measuredRequestCount": measured + 1,
            });
            let mut error = ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "OperationNotAllowed",
                "The server rejected the request because too many requests have been received for this subscription.",
            )
            .with_retry_after(seconds);
            error.extra = Some(Box::new(ErrorExtra {
                details: vec![json!({
                    "code": "TooManyRequests",
                    "target": name,
                    "message": detail.to_string(),
                })],
                resource_header: Some(header(&counts)),
            }));
            return Err(error);
        }
        for (name, _, _) in windows {
            if let Some(log) = all.get_mut(&(sub.clone(), region.to_string(), name)) {
                log.push_back(now);
            }
        }
        let counts: Vec<u32> = counts.iter().map(|c| c.saturating_sub(1)).collect();
        Ok(header(&counts))
    }
}

/// The principal a bearer token stands for: the `oid` (else `appid`, `azp`, `sub`) claim of a
/// JWT, else a hash of the token (the emulator accepts any token).
pub fn principal_of(token: &str) -> String {
    use base64::Engine;
    let claims = token.split('.').nth(1).and_then(|part| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    });
    if let Some(claims) = claims
        && let Some(id) = ["oid", "appid", "azp", "sub"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(|v| v.as_str()))
    {
        return id.to_string();
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_graph_allows_fifteen_queries_per_user_every_five_seconds() {
        let budgets = super::Budgets::new(1.0, 1.0);
        for left in (0..15).rev() {
            let (quota, allowed) = budgets.graph_quota("alice");
            assert!(allowed);
            assert_eq!(quota.remaining, left);
        }
        let (quota, allowed) = budgets.graph_quota("alice");
        assert!(!allowed);
        assert_eq!(quota.headers()[1].1, "00:00:05");
        assert!(
            budgets.graph_quota("bob").1,
            "another user has its own quota"
        );
        assert!(super::Budgets::new(0.0, 0.0).graph_quota("alice").1);
    }

    use super::*;

    #[test]
    fn principal_buckets_run_dry_independently_and_the_subscription_caps_them() {
        let budgets = Budgets::new(0.01, 0.0);
        // writes: burst 200 * 0.01 = 2 per principal, 30 per subscription.
        assert_eq!(
            budgets.draw("s", "a", Bucket::Writes).map(|r| r.count),
            Ok(1)
        );
        assert_eq!(
            budgets.draw("s", "a", Bucket::Writes).map(|r| r.count),
            Ok(0)
        );
        let err = budgets.draw("s", "a", Bucket::Writes).err();
        assert_eq!(
            err.as_ref().map(|e| e.status),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        assert!(err.is_some_and(|e| e.retry_after.is_some()));
        assert!(budgets.draw("s", "b", Bucket::Writes).is_ok());
        assert!(budgets.draw("other", "a", Bucket::Writes).is_ok());
        // 15 principals exhaust the subscription's 30 tokens (2 went to "a", 1 to "b").
        let mut granted = 3;
        for p in 0..40 {
            for _ in 0..2 {
                if budgets.draw("s", &format!("p{p}"), Bucket::Writes).is_ok() {
                    granted += 1;
                }
            }
        }
        assert_eq!(granted, 30);
    }

    #[test]
    fn compute_windows_count_down_and_refuse_when_full() {
        let budgets = Budgets::new(0.0, 0.01);
        // PutVM3Min 240 * 0.01 = 2, PutVM30Min 1200 * 0.01 = 12.
        assert_eq!(
            budgets.charge_compute("s", "westus2", ComputePolicy::PutVm),
            Ok("Microsoft.Compute/PutVM3Min;1,Microsoft.Compute/PutVM30Min;11".to_string())
        );
        assert!(
            budgets
                .charge_compute("s", "westus2", ComputePolicy::PutVm)
                .is_ok()
        );
        let err = budgets
            .charge_compute("s", "westus2", ComputePolicy::PutVm)
            .err();
        let err = err.expect("third VM PUT in 3 minutes is refused");
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.code, "OperationNotAllowed");
        assert_eq!(err.body()["details"][0]["target"], "PutVM3Min");
        assert!(err.retry_after.is_some_and(|s| s > 100 && s <= 180));
        assert!(
            budgets
                .charge_compute("s", "eastus", ComputePolicy::PutVm)
                .is_ok()
        );
        assert!(
            budgets
                .charge_compute("s", "westus2", ComputePolicy::LowCostGet)
                .is_ok()
        );
    }

    #[test]
    fn disabled_budgets_report_nominal_counts() {
        let budgets = Budgets::new(0.0, 0.0);
        assert_eq!(
            budgets.draw("s", "a", Bucket::Reads).map(|r| r.count),
            Ok(250)
        );
        assert_eq!(
            budgets.charge_compute("s", "x", ComputePolicy::CreateUpdateDisks),
            Ok("Microsoft.Compute/CreateUpdateDisks3Min;1000,Microsoft.Compute/CreateUpdateDisks30Min;8000".to_string())
        );
    }

    #[test]
    fn principals_come_from_jwt_claims_or_a_token_hash() {
        let (token, _) = super::super::discovery::mint_token("https://management.azure.com/", None);
        assert_eq!(
            principal_of(&token),
            super::super::discovery::IDENTITY_OBJECT_ID
        );
        assert_eq!(principal_of("opaque"), principal_of("opaque"));
        assert_ne!(principal_of("opaque"), principal_of("other"));
    }
}
