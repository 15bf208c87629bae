//! Pacing: spend ARM's request budget as Azure grants it, before it runs out, fairly.
//!
//! ARM throttles with token buckets per subscription and principal (reads 250 burst / 25
//! per second; writes and deletes 200 / 10) and resource providers add their own windows
//! (Compute: `PutVM3Min`, `PutVM30Min`, `HighCostGet3Min`, ...). Every response says what is
//! left (`x-ms-ratelimit-remaining-subscription-*`, `x-ms-ratelimit-remaining-resource`).
//! The [`Pacer`] keeps a model of each budget, corrected by every response, and makes a
//! request wait while its budgets are at their reserve — so the operator does not draw 429s
//! and leaves headroom for every other tool in the subscription. A 429's `Retry-After`
//! blocks only what it is about: the request class, or the provider policy that answered.
//!
//! Waiting requests are served **least-served flow first**: a flow is what the caller set
//! with [`with_flow`] (the operator uses the owning object), so a fleet of 1000 VMs, one
//! flow, cannot starve a single VM's power change, another flow.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::headers::RateLimitRemaining;
use super::throttle::{BucketRate, RateLimits, RequestClass};

/// The flow a task's requests belong to, and how many reads and writes it sent.
#[derive(Debug)]
struct Flow {
    name: Arc<str>,
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

tokio::task_local! {
    static FLOW: Arc<Flow>;
}

/// Runs `fut` with its ARM requests counted against `flow` for fairness.
pub async fn with_flow<F: Future>(flow: impl Into<Arc<str>>, fut: F) -> F::Output {
    let flow = Arc::new(Flow {
        name: flow.into(),
        reads: std::sync::atomic::AtomicU64::new(0),
        writes: std::sync::atomic::AtomicU64::new(0),
    });
    FLOW.scope(flow, fut).await
}

/// ARM writes (PUT, PATCH, POST, DELETE) the current flow has sent so far (0 outside one).
pub fn writes_in_flow() -> u64 {
    FLOW.try_with(|f| f.writes.load(std::sync::atomic::Ordering::Relaxed))
        .unwrap_or(0)
}

/// ARM reads (GET, HEAD, Resource Graph queries) the current flow has sent so far (0 outside one).
pub fn reads_in_flow() -> u64 {
    FLOW.try_with(|f| f.reads.load(std::sync::atomic::Ordering::Relaxed))
        .unwrap_or(0)
}

/// Counts a request against the current flow: GET, HEAD and Resource Graph queries (a POST
/// that only reads) as reads, the rest as writes.
pub(crate) fn note_request(method: &Method, resource_type: &str) {
    let read = *method == Method::GET
        || *method == Method::HEAD
        || resource_type.eq_ignore_ascii_case("Microsoft.ResourceGraph/resources");
    let counter = |f: &Flow| {
        if read { &f.reads } else { &f.writes }.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
    let _ = FLOW.try_with(|f| counter(f));
}

fn current_flow() -> Arc<str> {
    FLOW.try_with(|f| Arc::clone(&f.name))
        .unwrap_or_else(|_| Arc::from(""))
}

/// A modelled token bucket: refills continuously, corrected by what Azure reports.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: BucketRate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            capacity: f64::from(rate.burst),
            per_second: f64::from(rate.per_second.max(1)),
            at: now,
        }
    }

    /// A provider window (`...3Min`, `...30Min`): `remaining` of an unknown capacity that
    /// returns over `window`.
    fn window(remaining: f64, window: Duration, now: Instant) -> Self {
        let capacity = remaining.max(1.0) + 1.0;
        Self {
            tokens: remaining,
            capacity,
            per_second: capacity / window.as_secs_f64().max(1.0),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_second).min(self.capacity);
        self.at = now;
    }

    /// Azure says `remaining` are left: that is the truth (others spend from it too).
    fn correct(&mut self, remaining: f64, now: Instant) {
        self.refill(now);
        self.capacity = self.capacity.max(remaining);
        self.tokens = remaining;
    }

    /// How long until one token above `reserve` is there.
    fn wait(&self, reserve: f64) -> Duration {
        let missing = reserve + 1.0 - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.per_second)
        }
    }
}

/// The window of a provider policy from its name (`...3Min`, `...30Min`, `...1Hour`).
fn policy_window(name: &str) -> Duration {
    let digits_then = |suffix: &str| -> Option<u64> {
        let head = name.strip_suffix(suffix)?;
        let n: String = head
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        n.parse().ok()
    };
    if let Some(m) = digits_then("Min") {
        Duration::from_secs(m * 60)
    } else if let Some(h) = digits_then("Hour") {
        Duration::from_secs(h * 3600)
    } else {
        Duration::from_secs(60)
    }
}

/// What a request is, for the provider policies that apply to it.
fn request_kind(method: &Method, resource_type: &str) -> String {
    format!("{method} {}", resource_type.to_ascii_lowercase())
}

#[derive(Debug, Default)]
struct Subscription {
    classes: HashMap<RequestClass, Bucket>,
    /// Classes whose remaining budget Azure reported (so it enforces one).
    reported: std::collections::HashSet<RequestClass>,
    /// Provider policies by name.
    policies: HashMap<String, Bucket>,
    /// Which policies answered each request kind.
    kinds: HashMap<String, BTreeSet<String>>,
    /// Requests blocked by a 429 until then: by class, and by request kind.
    class_blocked: HashMap<RequestClass, Instant>,
    kind_blocked: HashMap<String, Instant>,
    /// Waiting requests by kind: (tokens served to the flow, arrival) — the smallest goes
    /// first.
    waiting: HashMap<String, BTreeSet<(u64, u64)>>,
    served: HashMap<Arc<str>, u64>,
}

#[derive(Debug)]
struct State {
    subscriptions: HashMap<String, Subscription>,
    seq: u64,
}

/// Budget-aware pacing of ARM requests, shared by all clones of a client.
#[derive(Debug)]
pub struct Pacer {
    limits: RateLimits,
    /// Longest a 429's `Retry-After` blocks anything.
    max_retry_after: Duration,
    state: Mutex<State>,
    changed: Notify,
}

/// A request's place in its queue, given up when it is dropped.
struct Queued<'a> {
    pacer: &'a Pacer,
    subscription: String,
    kind: String,
    ticket: Option<(u64, u64)>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let Some(t) = self.ticket.take() else {
            return;
        };
        let mut state = self.pacer.lock();
        if let Some(w) = state
            .subscriptions
            .get_mut(&self.subscription)
            .and_then(|s| s.waiting.get_mut(&self.kind))
        {
            w.remove(&t);
        }
        drop(state);
        self.pacer.changed.notify_waiters();
    }
}

impl Pacer {
    /// A pacer for `limits` (`enabled: false` lets every request through at once).
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            max_retry_after: Duration::MAX,
            state: Mutex::new(State {
                subscriptions: HashMap::new(),
                seq: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// Caps how long a 429's `Retry-After` blocks requests (the retry policy's cap).
    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rate(&self, class: RequestClass) -> BucketRate {
        match class {
            RequestClass::Read => self.limits.reads,
            RequestClass::Write => self.limits.writes,
            RequestClass::Delete => self.limits.deletes,
        }
    }

    /// Tokens kept back for other tools: a tenth of the bucket.
    fn reserve(capacity: f64) -> f64 {
        (capacity / 10.0).floor()
    }

    /// Waits until a request of `method` on `resource_type` in `subscription` may go, then
    /// counts it. Returns how long it waited.
    pub async fn acquire(
        &self,
        subscription: &str,
        method: &Method,
        resource_type: &str,
    ) -> Duration {
        if !self.limits.enabled {
            return Duration::ZERO;
        }
        let class = RequestClass::of(method);
        let kind = request_kind(method, resource_type);
        let sub_key = subscription.to_ascii_lowercase();
        let flow = current_flow();
        let start = Instant::now();
        // Takes the request out of the queue however the wait ends (a cancelled reconcile
        // must not hold its place).
        let mut queued = Queued {
            pacer: self,
            subscription: sub_key.clone(),
            kind: kind.clone(),
            ticket: None,
        };
        loop {
            let wait = {
                let mut state = self.lock();
                state.seq += 1;
                let seq = state.seq;
                let now = Instant::now();
                let rate = self.rate(class);
                let sub = state.subscriptions.entry(sub_key.clone()).or_default();
                let t = *queued.ticket.get_or_insert_with(|| {
                    let served = sub.served.get(&flow).copied().unwrap_or(0);
                    (served, seq)
                });
                sub.waiting.entry(kind.clone()).or_default().insert(t);
                let mut wait = Duration::ZERO;
                for until in [sub.class_blocked.get(&class), sub.kind_blocked.get(&kind)]
                    .into_iter()
                    .flatten()
                {
                    wait = wait.max(until.saturating_duration_since(now));
                }
                let bucket = sub
                    .classes
                    .entry(class)
                    .or_insert_with(|| Bucket::new(rate, now));
                bucket.refill(now);
                wait = wait.max(bucket.wait(Self::reserve(bucket.capacity)));
                let policies: Vec<String> = sub
                    .kinds
                    .get(&kind)
                    .map(|p| p.iter().cloned().collect())
                    .unwrap_or_default();
                for p in &policies {
                    if let Some(b) = sub.policies.get_mut(p) {
                        b.refill(now);
                        wait = wait.max(b.wait(Self::reserve(b.capacity)));
                    }
                }
                let first = sub.waiting.get(&kind).and_then(|w| w.first()) == Some(&t);
                if wait.is_zero() && first {
                    if let Some(b) = sub.classes.get_mut(&class) {
                        b.tokens -= 1.0;
                    }
                    for p in &policies {
                        if let Some(b) = sub.policies.get_mut(p) {
                            b.tokens -= 1.0;
                        }
                    }
                    if let Some(w) = sub.waiting.get_mut(&kind) {
                        w.remove(&t);
                    }
                    queued.ticket = None;
                    *sub.served.entry(Arc::clone(&flow)).or_default() += 1;
                    drop(state);
                    self.changed.notify_waiters();
                    return start.elapsed();
                }
                // Not this request's turn yet: look again when the one ahead went.
                if wait.is_zero() {
                    Duration::from_millis(50)
                } else {
                    wait
                }
            };
            let notified = self.changed.notified();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = notified => {}
            }
        }
    }

    /// The sustained rate (requests per second) of the provider policies that answered
    /// requests of `method` on `resource_type` in `subscription`: the slowest window's
    /// capacity over its length. `None` while no provider policy answered such a request.
    pub fn provider_rate(
        &self,
        subscription: &str,
        method: &Method,
        resource_type: &str,
    ) -> Option<f64> {
        let state = self.lock();
        let sub = state
            .subscriptions
            .get(&subscription.to_ascii_lowercase())?;
        sub.kinds
            .get(&request_kind(method, resource_type))?
            .iter()
            .filter_map(|p| {
                let b = sub.policies.get(p)?;
                Some(b.capacity / policy_window(p).as_secs_f64().max(1.0))
            })
            .min_by(f64::total_cmp)
    }

    /// The refill (requests per second) of `class`'s budget in `subscription`, once Azure
    /// reported that budget's remaining count; `None` before (or when pacing is off).
    pub fn class_rate(&self, subscription: &str, class: RequestClass) -> Option<f64> {
        if !self.limits.enabled {
            return None;
        }
        let state = self.lock();
        let sub = state
            .subscriptions
            .get(&subscription.to_ascii_lowercase())?;
        sub.reported
            .contains(&class)
            .then(|| f64::from(self.rate(class).per_second))
    }

    /// Learns from a response: the remaining budgets it reports, and a 429's `Retry-After`.
    pub fn observe(
        &self,
        subscription: &str,
        method: &Method,
        resource_type: &str,
        status: u16,
        remaining: Option<&RateLimitRemaining>,
        retry_after: Option<Duration>,
    ) {
        if !self.limits.enabled {
            return;
        }
        let class = RequestClass::of(method);
        let kind = request_kind(method, resource_type);
        let now = Instant::now();
        let mut state = self.lock();
        let rate = self.rate(class);
        let sub = state
            .subscriptions
            .entry(subscription.to_ascii_lowercase())
            .or_default();
        if let Some(r) = remaining {
            let reported = match class {
                RequestClass::Read => r.subscription_reads,
                RequestClass::Write => r.subscription_writes,
                RequestClass::Delete => r.subscription_deletes,
            };
            if let Some(n) = reported {
                sub.reported.insert(class);
                sub.classes
                    .entry(class)
                    .or_insert_with(|| Bucket::new(rate, now))
                    .correct(n as f64, now);
            }
            for (policy, n) in &r.resource {
                let window = policy_window(policy);
                sub.policies
                    .entry(policy.clone())
                    .or_insert_with(|| Bucket::window(*n as f64, window, now))
                    .correct(*n as f64, now);
                sub.kinds
                    .entry(kind.clone())
                    .or_default()
                    .insert(policy.clone());
            }
        }
        if status == 429 {
            let until = now
                + retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(self.max_retry_after);
            // A provider policy at zero answered: only its requests wait. A 429 while the
            // subscription's budget for the class is left is about one resource (Network's
            // `RetryableErrorDueToAnotherOperation`): only that request waits, by its retry.
            // Else the whole class waits.
            let provider = remaining.is_some_and(|r| r.resource.iter().any(|(_, n)| *n == 0));
            let class_left = remaining.and_then(|r| match class {
                RequestClass::Read => r.subscription_reads,
                RequestClass::Write => r.subscription_writes,
                RequestClass::Delete => r.subscription_deletes,
            });
            if provider {
                sub.kind_blocked.insert(kind, until);
            } else if class_left.is_none_or(|n| n == 0) {
                sub.class_blocked.insert(class, until);
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, per_second: u32) -> RateLimits {
        let rate = BucketRate { per_second, burst };
        RateLimits {
            enabled: true,
            reads: rate,
            writes: rate,
            deletes: rate,
        }
    }

    #[test]
    fn provider_rate_is_the_slowest_window_of_the_policies_that_answered() {
        let p = Pacer::new(limits(250, 25));
        let views = "Microsoft.Compute/virtualMachines?$expand=instanceview";
        assert_eq!(p.provider_rate("s", &Method::GET, views), None);
        assert_eq!(p.class_rate("s", RequestClass::Read), None);
        let high = RateLimitRemaining {
            subscription_reads: Some(249),
            resource: vec![
                ("Microsoft.Compute/HighCostGet3Min".into(), 159),
                ("Microsoft.Compute/HighCostGet30Min".into(), 799),
            ],
            ..RateLimitRemaining::default()
        };
        p.observe("s", &Method::GET, views, 200, Some(&high), None);
        let rate = p.provider_rate("s", &Method::GET, views).unwrap();
        assert_eq!(p.class_rate("s", RequestClass::Read), Some(25.0));
        assert_eq!(p.class_rate("s", RequestClass::Write), None);
        // 800 per 1800 s is slower than 160 per 180 s.
        assert!((rate - 800.0 / 1800.0).abs() < 1e-9, "{rate}");
        // The plain list is charged elsewhere: not limited by the high-cost windows.
        let plain = "Microsoft.Compute/virtualMachines";
        assert_eq!(p.provider_rate("s", &Method::GET, plain), None);
    }

    #[test]
    fn windows_from_policy_names() {
        assert_eq!(
            policy_window("Microsoft.Compute/PutVM3Min"),
            Duration::from_secs(180)
        );
        assert_eq!(
            policy_window("Microsoft.Compute/PutVM30Min"),
            Duration::from_secs(1800)
        );
        assert_eq!(
            policy_window("Microsoft.Compute/HighCostGet1Hour"),
            Duration::from_secs(3600)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_a_reserve_and_refills() {
        let p = Pacer::new(limits(20, 10));
        // 20 tokens, reserve 2: 18 go at once.
        for _ in 0..18 {
            assert_eq!(p.acquire("s", &Method::GET, "t").await, Duration::ZERO);
        }
        let waited = p.acquire("s", &Method::GET, "t").await;
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        // Writes have their own bucket.
        assert_eq!(p.acquire("s", &Method::PUT, "t").await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn azure_reports_correct_the_model() {
        let p = Pacer::new(limits(250, 25));
        let low = RateLimitRemaining {
            subscription_reads: Some(25),
            ..RateLimitRemaining::default()
        };
        p.observe("s", &Method::GET, "t", 200, Some(&low), None);
        // 25 left, reserve 25: the next read waits for a refill.
        let waited = p.acquire("s", &Method::GET, "t").await;
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn provider_windows_pace_only_their_requests() {
        let p = Pacer::new(limits(200, 10));
        let put_vm = RateLimitRemaining {
            subscription_writes: Some(199),
            resource: vec![("Microsoft.Compute/PutVM3Min".into(), 0)],
            ..RateLimitRemaining::default()
        };
        let vm = "Microsoft.Compute/virtualMachines";
        p.observe("s", &Method::PUT, vm, 200, Some(&put_vm), None);
        let waited = p.acquire("s", &Method::PUT, vm).await;
        assert!(
            waited >= Duration::from_secs(1),
            "a VM PUT waits for the window: {waited:?}"
        );
        assert_eq!(
            p.acquire("s", &Method::PUT, "Microsoft.Network/networkInterfaces")
                .await,
            Duration::ZERO,
            "other writes do not"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_blocks_what_it_is_about() {
        let p = Pacer::new(limits(200, 10));
        p.observe(
            "s",
            &Method::GET,
            "t",
            429,
            None,
            Some(Duration::from_secs(5)),
        );
        let waited = p.acquire("s", &Method::GET, "other").await;
        assert!(waited >= Duration::from_secs(5), "{waited:?}");
        assert_eq!(p.acquire("s", &Method::PUT, "t").await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_about_one_resource_blocks_no_one_else() {
        let p = Pacer::new(limits(200, 10));
        let left = RateLimitRemaining {
            subscription_writes: Some(150),
            ..RateLimitRemaining::default()
        };
        p.observe(
            "s",
            &Method::PUT,
            "Microsoft.Network/networkSecurityGroups",
            429,
            Some(&left),
            Some(Duration::from_secs(5)),
        );
        assert_eq!(
            p.acquire("s", &Method::PUT, "Microsoft.Compute/virtualMachines")
                .await,
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_least_served_flow_goes_first() {
        let p = Arc::new(Pacer::new(limits(12, 1)));
        // The fleet flow spends the budget (12 tokens, reserve 1: 11 go at once).
        for _ in 0..11 {
            with_flow("fleet", p.acquire("s", &Method::GET, "t")).await;
        }
        // Now both wait; the single VM's request is served before the fleet's next ones.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (p, order) = (Arc::clone(&p), Arc::clone(&order));
            tasks.push(tokio::spawn(with_flow("fleet", async move {
                p.acquire("s", &Method::GET, "t").await;
                order.lock().expect("lock").push(format!("fleet-{i}"));
            })));
            tokio::task::yield_now().await;
        }
        let (p2, order2) = (Arc::clone(&p), Arc::clone(&order));
        tasks.push(tokio::spawn(with_flow("vm", async move {
            p2.acquire("s", &Method::GET, "t").await;
            order2.lock().expect("lock").push("vm".to_string());
        })));
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("lock").clone();
        assert_eq!(order.first().map(String::as_str), Some("vm"), "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_pacing_never_waits() {
        let p = Pacer::new(RateLimits {
            enabled: false,
            ..limits(1, 1)
        });
        for _ in 0..10 {
            assert_eq!(p.acquire("s", &Method::GET, "t").await, Duration::ZERO);
        }
    }
}
