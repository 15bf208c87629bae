//! Fault and throttle injection and one-shot injected errors.

use std::sync::Mutex;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ArmError;

/// An error answered to the next matching request(s), then forgotten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInjection {
    /// Only requests with this method (any when `None`).
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path contains this text, case-insensitive (any when `None`).
    #[serde(default)]
    pub path_contains: Option<String>,
    /// HTTP status to answer.
    pub status: u16,
    /// ARM error code.
    pub code: String,
    /// Error message.
    #[serde(default)]
    pub message: Option<String>,
    /// How many matching requests get the error (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// `Retry-After` seconds to include.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Accept the request but let its long-running operation end `Failed` with this error
    /// (ARM's asynchronous failure; the resource's provisioningState becomes `Failed`).
    /// Synchronous operations answer the error directly.
    #[serde(default)]
    pub fail_operation: bool,
}

fn one() -> u32 {
    1
}

impl ErrorInjection {
    /// A one-shot error for requests of `method` whose path contains `path_contains`.
    pub fn once(method: &str, path_contains: &str, status: u16, code: &str) -> Self {
        Self {
            method: Some(method.to_string()),
            path_contains: Some(path_contains.to_string()),
            status,
            code: code.to_string(),
            message: None,
            times: 1,
            retry_after: None,
            fail_operation: false,
        }
    }

    /// A one-shot asynchronous failure: the next matching request is accepted and its operation fails.
    pub fn failed_operation(method: &str, path_contains: &str, status: u16, code: &str) -> Self {
        Self {
            fail_operation: true,
            ..Self::once(method, path_contains, status, code)
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    }

    fn to_error(&self) -> ArmError {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = self.message.clone().unwrap_or_else(|| {
            format!(
                "Injected error {} by the emulator test-control API.",
                self.code
            )
        });
        let mut error = ArmError::new(status, &self.code, message);
        error.retry_after = self.retry_after;
        error
    }
}

/// Long-running operations that take longer than the configured latency: operations of
/// `method` (`PUT`, `DELETE`, `POST`) on resources whose id contains `path_contains`
/// (case-insensitive) complete after `delay` instead. Stays until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowOperations {
    /// `PUT` (also PATCH), `DELETE` or `POST` (actions).
    pub method: String,
    /// Text the resource id contains.
    pub path_contains: String,
    /// How long the operation takes.
    pub delay: std::time::Duration,
}

/// Rates (each 0..1) of the faults answered at random, as real ARM shows them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// 500 `InternalServerError`.
    pub server_error: f64,
    /// 429 `TooManyRequests` with `Retry-After: 1`.
    pub throttle: f64,
    /// The connection drops before the answer is complete; half of these after the request
    /// took effect (the client cannot tell which).
    pub reset: f64,
    /// The answer comes only after [`FaultRates::slow_by`] (the request takes effect at once).
    pub slow: f64,
    /// How late slow answers come.
    pub slow_by: std::time::Duration,
    /// A write (PUT, PATCH, POST, DELETE) is accepted but its long-running operation ends
    /// `Failed` (`InternalExecutionError`); synchronous writes answer that error at once.
    pub failed_operation: f64,
}

impl FaultRates {
    /// The rates as `(name, value)` pairs, for validation.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("fault rate", self.server_error),
            ("throttle rate", self.throttle),
            ("reset rate", self.reset),
            ("slow rate", self.slow),
            ("failed operation rate", self.failed_operation),
        ]
    }
}

/// How a request that passed [`Faults::check`] is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Normally.
    Normal,
    /// Drop the connection without handling the request.
    ResetBefore,
    /// Handle the request, then drop the connection mid-answer.
    ResetAfter,
    /// Handle the request and answer after this delay.
    Slow(std::time::Duration),
}

impl Delivery {
    /// The fault's name in the request log, if any.
    pub fn fault(&self) -> Option<&'static str> {
        match self {
            Delivery::Normal => None,
            Delivery::ResetBefore | Delivery::ResetAfter => Some("reset"),
            Delivery::Slow(_) => Some("slow"),
        }
    }
}

fn chance(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

/// Random faults and injected errors.
pub struct Faults {
    rates: FaultRates,
    injected: Mutex<Vec<ErrorInjection>>,
    slow: Mutex<Vec<SlowOperations>>,
}

impl Faults {
    /// Faults answered at random at `rates`.
    pub fn new(rates: FaultRates) -> Self {
        Self {
            rates,
            injected: Mutex::new(Vec::new()),
            slow: Mutex::new(Vec::new()),
        }
    }

    /// Makes matching long-running operations slow (see [`SlowOperations`]).
    pub fn slow_operations(&self, rule: SlowOperations) {
        self.slow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rule);
    }

    /// Forgets every [`SlowOperations`] rule (operations already started keep their delay).
    pub fn clear_slow_operations(&self) {
        self.slow.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The longest delay of the slow rules matching an operation of `method` on
    /// `resource_id`, if any.
    pub fn operation_delay(&self, method: &str, resource_id: &str) -> Option<std::time::Duration> {
        let id = resource_id.to_ascii_lowercase();
        self.slow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| {
                r.method.eq_ignore_ascii_case(method)
                    && id.contains(&r.path_contains.to_ascii_lowercase())
            })
            .map(|r| r.delay)
            .max()
    }

    /// Adds a one-shot error.
    pub fn inject(&self, injection: ErrorInjection) {
        if let Ok(mut injected) = self.injected.lock() {
            injected.push(injection);
        }
    }

    /// Takes one use of the first injection matching the request and mode.
    fn take(&self, method: &str, path: &str, fail_operation: bool) -> Option<ArmError> {
        let mut injected = self.injected.lock().ok()?;
        let pos = injected
            .iter()
            .position(|i| i.fail_operation == fail_operation && i.matches(method, path))?;
        let error = injected[pos].to_error();
        injected[pos].times = injected[pos].times.saturating_sub(1);
        if injected[pos].times == 0 {
            injected.remove(pos);
        }
        Some(error)
    }

    /// An injected (or, for writes, random) asynchronous failure for the operation this
    /// request starts, if any.
    pub fn operation_failure(&self, method: &str, path: &str) -> Option<ArmError> {
        if let Some(error) = self.take(method, path, true) {
            return Some(error);
        }
        let write = ["PUT", "PATCH", "POST", "DELETE"]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method));
        (write && chance(self.rates.failed_operation)).then(|| {
            ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalExecutionError",
                "An internal execution error occurred. Please retry later. (injected by the emulator)",
            )
        })
    }

    /// How to deliver the answer: normally, with the connection dropped, or late.
    pub fn delivery(&self) -> Delivery {
        if chance(self.rates.reset) {
            return if rand::random::<bool>() {
                Delivery::ResetAfter
            } else {
                Delivery::ResetBefore
            };
        }
        if chance(self.rates.slow) {
            return Delivery::Slow(self.rates.slow_by);
        }
        Delivery::Normal
    }

    /// Injected errors first, then random throttling (429) and faults (500).
    pub fn check(&self, method: &str, path: &str) -> Result<(), ArmError> {
        if let Some(error) = self.take(method, path, false) {
            return Err(error);
        }
        if chance(self.rates.throttle) {
            return Err(ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type. Please retry after the Retry-After interval.",
            )
            .with_retry_after(1));
        }
        if chance(self.rates.server_error) {
            return Err(ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Encountered internal server error. Diagnostic information: injected by the emulator.",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_operations_match_method_and_path() {
        let faults = Faults::new(FaultRates::default());
        let d = std::time::Duration::from_secs(30);
        faults.slow_operations(SlowOperations {
            method: "DELETE".into(),
            path_contains: "virtualMachines".into(),
            delay: d,
        });
        assert_eq!(
            faults.operation_delay("delete", "/x/virtualmachines/a"),
            Some(d)
        );
        assert_eq!(faults.operation_delay("POST", "/x/virtualmachines/a"), None);
        assert_eq!(faults.operation_delay("DELETE", "/x/disks/a"), None);
        faults.clear_slow_operations();
        assert_eq!(
            faults.operation_delay("DELETE", "/x/virtualmachines/a"),
            None
        );
    }

    #[test]
    fn injected_errors_are_one_shot() {
        let faults = Faults::new(FaultRates::default());
        faults.inject(ErrorInjection::once(
            "PUT",
            "virtualMachines",
            409,
            "Conflict",
        ));
        assert!(faults.check("GET", "/x/virtualMachines/a").is_ok());
        let err = faults
            .check("PUT", "/x/virtualmachines/a")
            .err()
            .map(|e| e.code);
        assert_eq!(err.as_deref(), Some("Conflict"));
        assert!(faults.check("PUT", "/x/virtualMachines/a").is_ok());
    }

    fn rates(f: impl FnOnce(&mut FaultRates)) -> Faults {
        let mut r = FaultRates::default();
        f(&mut r);
        Faults::new(r)
    }

    #[test]
    fn random_faults_at_their_rates() {
        let none = rates(|_| {});
        for _ in 0..1000 {
            assert!(none.check("GET", "/x").is_ok());
            assert_eq!(none.delivery(), Delivery::Normal);
            assert!(none.operation_failure("PUT", "/x").is_none());
        }
        let throttled = rates(|r| r.throttle = 1.0);
        let e = throttled.check("GET", "/x").expect_err("throttled");
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(1)));
        let failing = rates(|r| r.server_error = 1.0);
        assert_eq!(
            failing.check("GET", "/x").expect_err("500").status.as_u16(),
            500
        );
        let slow = rates(|r| {
            r.slow = 1.0;
            r.slow_by = std::time::Duration::from_millis(1500);
        });
        assert_eq!(
            slow.delivery(),
            Delivery::Slow(std::time::Duration::from_millis(1500))
        );
        let reset = rates(|r| r.reset = 1.0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = reset.delivery();
            assert_eq!(d.fault(), Some("reset"));
            seen.insert(format!("{d:?}"));
        }
        assert_eq!(seen.len(), 2, "resets before and after handling: {seen:?}");
        // Failed operations only for writes.
        let failed_ops = rates(|r| r.failed_operation = 1.0);
        assert!(failed_ops.operation_failure("GET", "/x").is_none());
        let e = failed_ops
            .operation_failure("DELETE", "/x")
            .expect("failed operation");
        assert_eq!(e.code, "InternalExecutionError");
        // About the rate asked for.
        let some = rates(|r| r.server_error = 0.2);
        let failed = (0..5000)
            .filter(|_| some.check("GET", "/x").is_err())
            .count();
        assert!((800..1200).contains(&failed), "{failed} of 5000");
    }
}
