//! Pure parsing of ARM response headers: `Retry-After` and `x-ms-ratelimit-remaining-*`.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Remaining request budget reported by ARM and resource providers on a response.
///
/// ARM sends `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` (and tenant-scoped
/// variants); Compute adds `x-ms-ratelimit-remaining-resource: Microsoft.Compute/HighCostGet3Min;107,...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitRemaining {
    /// `x-ms-ratelimit-remaining-subscription-reads`.
    pub subscription_reads: Option<u64>,
    /// `x-ms-ratelimit-remaining-subscription-writes`.
    pub subscription_writes: Option<u64>,
    /// `x-ms-ratelimit-remaining-subscription-deletes`.
    pub subscription_deletes: Option<u64>,
    /// `x-ms-ratelimit-remaining-subscription-global-reads` (regional throttling model).
    pub subscription_global_reads: Option<u64>,
    /// `x-ms-ratelimit-remaining-subscription-global-writes`.
    pub subscription_global_writes: Option<u64>,
    /// `x-ms-ratelimit-remaining-subscription-global-deletes`.
    pub subscription_global_deletes: Option<u64>,
    /// `x-ms-ratelimit-remaining-tenant-reads`.
    pub tenant_reads: Option<u64>,
    /// `x-ms-ratelimit-remaining-tenant-writes`.
    pub tenant_writes: Option<u64>,
    /// Resource-provider policies from `x-ms-ratelimit-remaining-resource`, e.g.
    /// `("Microsoft.Compute/HighCostGet3Min", 107)`.
    pub resource: Vec<(String, u64)>,
}

impl RateLimitRemaining {
    /// Reads all ratelimit headers; `None` when the response carries none.
    pub fn from_headers(headers: &HeaderMap) -> Option<RateLimitRemaining> {
        let num = |name: &str| -> Option<u64> { header_str(headers, name)?.trim().parse().ok() };
        let prefix = "x-ms-ratelimit-remaining-";
        let r = RateLimitRemaining {
            subscription_reads: num(&format!("{prefix}subscription-reads")),
            subscription_writes: num(&format!("{prefix}subscription-writes")),
            subscription_deletes: num(&format!("{prefix}subscription-deletes")),
            subscription_global_reads: num(&format!("{prefix}subscription-global-reads")),
            subscription_global_writes: num(&format!("{prefix}subscription-global-writes")),
            subscription_global_deletes: num(&format!("{prefix}subscription-global-deletes")),
            tenant_reads: num(&format!("{prefix}tenant-reads")),
            tenant_writes: num(&format!("{prefix}tenant-writes")),
            resource: headers
                .get_all(format!("{prefix}resource"))
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_resource_policies)
                .collect(),
        };
        (r != RateLimitRemaining::default()).then_some(r)
    }

    /// The smallest remaining count of the resource-provider policies (`x-ms-ratelimit-remaining-resource`).
    pub fn min_resource(&self) -> Option<u64> {
        self.resource.iter().map(|(_, n)| *n).min()
    }

    /// The smallest remaining count across all reported budgets.
    pub fn min_remaining(&self) -> Option<u64> {
        [
            self.subscription_reads,
            self.subscription_writes,
            self.subscription_deletes,
            self.subscription_global_reads,
            self.subscription_global_writes,
            self.subscription_global_deletes,
            self.tenant_reads,
            self.tenant_writes,
        ]
        .into_iter()
        .flatten()
        .chain(self.resource.iter().map(|(_, n)| *n))
        .min()
    }
}

/// Parses `Microsoft.Compute/HighCostGet3Min;107,Microsoft.Compute/HighCostGet30Min;587`.
fn parse_resource_policies(value: &str) -> Vec<(String, u64)> {
    value
        .split(',')
        .filter_map(|item| {
            let (name, count) = item.trim().rsplit_once(';')?;
            Some((name.trim().to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Parses the wait a response asks for: `retry-after-ms` / `x-ms-retry-after-ms` (milliseconds),
/// else `Retry-After` as delay-seconds or an HTTP-date (relative to `now`; a past date is zero).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    parse_retry_after_value(header_str(headers, "retry-after")?, now)
}

/// Parses one `Retry-After` value (seconds, possibly fractional, or an HTTP-date).
pub fn parse_retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at = SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.append(k, v);
            }
        }
        h
    }

    #[test]
    fn retry_after_seconds_date_and_ms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(
            parse_retry_after(&headers(&[("Retry-After", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", " 0 ")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(
                &headers(&[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                now
            ),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after(
                &headers(&[("Retry-After", "Wed, 21 Oct 2015 07:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(
                &headers(&[("Retry-After", "9"), ("retry-after-ms", "250")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("Retry-After", "1.5")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(&headers(&[("Retry-After", "soon")]), now),
            None
        );
        assert_eq!(
            parse_retry_after(&headers(&[("Retry-After", "-3")]), now),
            None
        );
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn ratelimit_headers() {
        let h = headers(&[
            ("x-ms-ratelimit-remaining-subscription-reads", "11999"),
            ("x-ms-ratelimit-remaining-subscription-writes", "1199"),
            (
                "x-ms-ratelimit-remaining-resource",
                "Microsoft.Compute/HighCostGet3Min;107,Microsoft.Compute/HighCostGet30Min;587",
            ),
            (
                "x-ms-ratelimit-remaining-resource",
                "Microsoft.Compute/PutVM3Min;239",
            ),
        ]);
        let r = RateLimitRemaining::from_headers(&h).expect("present");
        assert_eq!(r.subscription_reads, Some(11999));
        assert_eq!(r.subscription_writes, Some(1199));
        assert_eq!(r.subscription_deletes, None);
        assert_eq!(
            r.resource,
            vec![
                ("Microsoft.Compute/HighCostGet3Min".to_string(), 107),
                ("Microsoft.Compute/HighCostGet30Min".to_string(), 587),
                ("Microsoft.Compute/PutVM3Min".to_string(), 239),
            ]
        );
        assert_eq!(r.min_remaining(), Some(107));
        assert_eq!(r.min_resource(), Some(107));
        assert_eq!(
            RateLimitRemaining::from_headers(&headers(&[("content-type", "application/json")])),
            None
        );
        assert_eq!(
            RateLimitRemaining::from_headers(&headers(&[(
                "x-ms-ratelimit-remaining-subscription-deletes",
                "x"
            )])),
            None
        );
    }
}
