//! Client-side token buckets per subscription (reads, writes, deletes) so that a large fleet
//! stays under ARM's throttling limits instead of collecting 429s.
//!
//! Defaults follow ARM's documented per-subscription, per-principal token buckets
//! (reads 250 burst / 25 per second; writes and deletes 200 burst / 10 per second).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use reqwest::Method;

/// Size and refill of one token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRate {
    /// Tokens added per second.
    pub per_second: u32,
    /// Bucket size (maximum burst).
    pub burst: u32,
}

/// Client-side request budgets per subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Whether the client throttles itself at all.
    pub enabled: bool,
    /// GET/HEAD (including LRO polls and list pages).
    pub reads: BucketRate,
    /// PUT/PATCH/POST.
    pub writes: BucketRate,
    /// DELETE.
    pub deletes: BucketRate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            reads: BucketRate {
                per_second: 25,
                burst: 250,
            },
            writes: BucketRate {
                per_second: 10,
                burst: 200,
            },
            deletes: BucketRate {
                per_second: 10,
                burst: 200,
            },
        }
    }
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// GET / HEAD.
    Read,
    /// PUT / PATCH / POST.
    Write,
    /// DELETE.
    Delete,
}

impl RequestClass {
    /// Classifies an HTTP method as ARM does.
    pub fn of(method: &Method) -> RequestClass {
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => RequestClass::Read,
            Method::DELETE => RequestClass::Delete,
            _ => RequestClass::Write,
        }
    }
}

/// The keyed (by subscription id) limiters shared by all clones of a client.
pub(crate) struct Throttle {
    buckets: Option<[DefaultKeyedRateLimiter<String>; 3]>,
}

fn quota(rate: BucketRate) -> Quota {
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
    Quota::per_second(per_second).allow_burst(burst)
}

impl Throttle {
    pub(crate) fn new(limits: &RateLimits) -> Throttle {
        let buckets = limits.enabled.then(|| {
            [limits.reads, limits.writes, limits.deletes]
                .map(|r| DefaultKeyedRateLimiter::keyed(quota(r)))
        });
        Throttle { buckets }
    }

    /// Waits for a token of `class` in `subscription`'s bucket; returns how long it waited.
    pub(crate) async fn acquire(&self, subscription: &str, class: RequestClass) -> Duration {
        let Some(buckets) = &self.buckets else {
            return Duration::ZERO;
        };
        let bucket = match class {
            RequestClass::Read => &buckets[0],
            RequestClass::Write => &buckets[1],
            RequestClass::Delete => &buckets[2],
        };
        let key = subscription.to_ascii_lowercase();
        if bucket.check_key(&key).is_ok() {
            return Duration::ZERO;
        }
        let start = Instant::now();
        bucket.until_key_ready(&key).await;
        start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_methods() {
        assert_eq!(RequestClass::of(&Method::GET), RequestClass::Read);
        assert_eq!(RequestClass::of(&Method::PUT), RequestClass::Write);
        assert_eq!(RequestClass::of(&Method::POST), RequestClass::Write);
        assert_eq!(RequestClass::of(&Method::PATCH), RequestClass::Write);
        assert_eq!(RequestClass::of(&Method::DELETE), RequestClass::Delete);
    }

    #[tokio::test]
    async fn buckets_are_per_subscription_and_class() {
        let limits = RateLimits {
            enabled: true,
            reads: BucketRate {
                per_second: 1,
                burst: 2,
            },
            writes: BucketRate {
                per_second: 1,
                burst: 1,
            },
            deletes: BucketRate {
                per_second: 1,
                burst: 1,
            },
        };
        let t = Throttle::new(&limits);
        let buckets = t.buckets.as_ref().expect("enabled");
        assert!(buckets[0].check_key(&"a".to_string()).is_ok());
        assert!(buckets[0].check_key(&"a".to_string()).is_ok());
        assert!(
            buckets[0].check_key(&"a".to_string()).is_err(),
            "burst of 2 exhausted"
        );
        assert!(
            buckets[0].check_key(&"b".to_string()).is_ok(),
            "other subscription has its own bucket"
        );
        assert!(
            buckets[1].check_key(&"a".to_string()).is_ok(),
            "writes have their own bucket"
        );
        // acquire on a full bucket returns immediately.
        assert_eq!(t.acquire("B2", RequestClass::Delete).await, Duration::ZERO);
        let disabled = Throttle::new(&RateLimits {
            enabled: false,
            ..limits
        });
        for _ in 0..10 {
            assert_eq!(
                disabled.acquire("a", RequestClass::Write).await,
                Duration::ZERO
            );
        }
    }
}
