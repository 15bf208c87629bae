//! Azure infrastructure shared by the controllers: deterministic names ([`naming`]) and the
//! resource group with the operator-managed network of a region ([`network`]), deleted by
//! the [`janitor`] once nothing uses them.

pub mod inventory;
pub mod janitor;
pub mod naming;
pub mod network;
pub mod warm_start;

use std::time::Duration;

use azlin_arm::{ArmClient, ArmError, Poller};

use crate::reconcile::{Error, Requeue};

/// When to look again after starting a write: at once when ARM finished it synchronously,
/// else after ARM's `Retry-After` (within the client's polling bounds), when the operation
/// should have moved on; `fallback` when ARM gave no `Retry-After`.
pub fn requeue_after(arm: &ArmClient, poller: Option<&Poller>, fallback: Duration) -> Requeue {
    match poller {
        None => Requeue::Now,
        Some(p) if p.is_done() => Requeue::Now,
        Some(p) => Requeue::After(match p.retry_after_ms {
            Some(ms) => arm.lro_policy().interval(Some(Duration::from_millis(ms))),
            None => fallback,
        }),
    }
}

/// A delete (or update) of something already gone is done: `Ok(None)` for a 404.
pub fn ok_if_gone<T>(r: Result<T, ArmError>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
