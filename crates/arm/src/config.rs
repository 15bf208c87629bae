//! Client configuration: endpoint, subscription, extra CA, credential, retry/LRO/throttle policies.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::credential::{ARM_SCOPE, CredentialChoice};
use super::error::ArmError;
use super::throttle::RateLimits;

/// Public Azure's ARM endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";

/// Retries of single requests (429, 5xx, timeouts, connection errors) with jittered exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Ceiling on a server's `Retry-After` (a larger value is cut to this).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// How long-running operations are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LroPolicy {
    /// Interval when the server sends no `Retry-After`.
    pub default_interval: Duration,
    /// Floor applied to every interval (including `Retry-After`).
    pub min_interval: Duration,
    /// Ceiling applied to every interval (including `Retry-After`); small values make tests against
    /// a fast emulator quick.
    pub max_interval: Duration,
    /// Give up waiting (with [`ArmError::OperationTimeout`]) after this long; the operation may still finish.
    pub timeout: Duration,
}

impl Default for LroPolicy {
    fn default() -> Self {
        LroPolicy {
            default_interval: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(3600),
        }
    }
}

impl LroPolicy {
    /// The wait before the next poll given the server's `Retry-After`.
    pub fn interval(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.default_interval)
            .clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }

    /// Fast polling for tests against the emulator (10 ms floor, 50 ms ceiling, 60 s timeout).
    pub fn fast() -> LroPolicy {
        LroPolicy {
            default_interval: Duration::from_millis(20),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(50),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Everything [`super::ArmClient::new`] needs.
#[derive(Debug, Clone)]
pub struct ArmConfig {
    /// ARM base URL (`--azure-endpoint`), default [`DEFAULT_ENDPOINT`].
    pub endpoint: Url,
    /// Subscription the client manages by default.
    pub subscription_id: String,
    /// Extra PEM CA bundle trusted in addition to the system roots (for an emulator with its own certificate).
    pub ca_file: Option<PathBuf>,
    /// Token source.
    pub credential: CredentialChoice,
    /// Token scope, default [`ARM_SCOPE`].
    pub token_scope: String,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Request retries.
    pub retry: RetryPolicy,
    /// LRO polling.
    pub lro: LroPolicy,
    /// Client-side token buckets.
    pub rate_limits: RateLimits,
}

impl ArmConfig {
    /// Configuration for public Azure with default policies.
    pub fn new(subscription_id: impl Into<String>, credential: CredentialChoice) -> ArmConfig {
        ArmConfig {
            endpoint: Url::parse(DEFAULT_ENDPOINT)
                .unwrap_or_else(|_| unreachable!("DEFAULT_ENDPOINT is a valid URL")),
            subscription_id: subscription_id.into(),
            ca_file: None,
            credential,
            token_scope: ARM_SCOPE.to_string(),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            lro: LroPolicy::default(),
            rate_limits: RateLimits::default(),
        }
    }

    /// Sets the endpoint from a string (e.g. the `--azure-endpoint` flag).
    pub fn with_endpoint(mut self, endpoint: &str) -> Result<ArmConfig, ArmError> {
        let url = Url::parse(endpoint)
            .map_err(|e| ArmError::Config(format!("invalid endpoint {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ArmError::Config(format!(
                "endpoint {endpoint:?} must be an http(s) URL with a host"
            )));
        }
        self.endpoint = url;
        Ok(self)
    }

    /// Trusts an extra PEM CA bundle.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> ArmConfig {
        self.ca_file = Some(path.into());
        self
    }

    /// Settings for the emulator: static token, fast LRO polling and quick retries; requests
    /// are paced from the budgets the emulator reports, as against Azure, and a 429's
    /// `Retry-After` is honoured by the pacer.
    pub fn for_emulator(
        endpoint: &str,
        subscription_id: impl Into<String>,
        token: &str,
    ) -> Result<ArmConfig, ArmError> {
        let mut c = ArmConfig::new(
            subscription_id,
            CredentialChoice::Static(super::credential::SecretString::new(token)),
        )
        .with_endpoint(endpoint)?;
        c.lro = LroPolicy::fast();
        c.retry = RetryPolicy {
            max_retries: 8,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_millis(50),
        };
        c.request_timeout = Duration::from_secs(20);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lro_interval_clamps() {
        let p = LroPolicy {
            default_interval: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
        };
        assert_eq!(p.interval(None), Duration::from_secs(5));
        assert_eq!(p.interval(Some(Duration::ZERO)), Duration::from_secs(1));
        assert_eq!(
            p.interval(Some(Duration::from_secs(90))),
            Duration::from_secs(30)
        );
        assert_eq!(
            LroPolicy::fast().interval(Some(Duration::from_secs(10))),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn endpoint_validation() {
        let c = ArmConfig::new("s", CredentialChoice::ManagedIdentity { client_id: None });
        assert_eq!(c.endpoint.as_str(), "https://management.azure.com/");
        assert!(c.clone().with_endpoint("http://127.0.0.1:8080").is_ok());
        assert!(c.clone().with_endpoint("ftp://x").is_err());
        assert!(c.with_endpoint("not a url").is_err());
    }
}
