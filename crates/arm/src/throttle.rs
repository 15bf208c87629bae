//! ARM's request budgets per subscription (reads, writes, deletes), as the [`crate::pacing`]
//! model starts from them. Defaults follow ARM's documented per-subscription, per-principal
//! token buckets (reads 250 burst / 25 per second; writes and deletes 200 burst / 10 per
//! second).

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
}
