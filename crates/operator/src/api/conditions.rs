//! Status conditions shared by every kind, following the Kubernetes API conventions
//! that kstatus, `kubectl wait` and Argo CD read.
//!
//! Every kind reports three condition types:
//! - `Ready`: `True` only when Azure matches the spec;
//! - `Reconciling`: `True` only while the operator is still converging (abnormal-true);
//! - `Stalled`: `True` only when progress needs a change from the user (abnormal-true).
//!
//! Kinds may add specific types (for example `Mounted` on a VM).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `Ready` condition type: the object's Azure resources match its spec.
pub const READY: &str = "Ready";
/// `Reconciling` condition type: the operator is working towards the spec.
pub const RECONCILING: &str = "Reconciling";
/// `Stalled` condition type: the operator cannot make progress without a change.
pub const STALLED: &str = "Stalled";

/// Condition status values.
pub const TRUE: &str = "True";
/// Condition status `False`.
pub const FALSE: &str = "False";
/// Condition status `Unknown`.
pub const UNKNOWN: &str = "Unknown";

/// A condition to set, without the bookkeeping fields the helper fills in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition {
    /// Condition type, e.g. [`READY`].
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase programmatic reason.
    pub reason: String,
    /// Human readable message: what happened and what to do.
    pub message: String,
}

impl NewCondition {
    /// A condition with status `True`.
    pub fn truthy(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(type_, TRUE, reason, message)
    }

    /// A condition with status `False`.
    pub fn falsy(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(type_, FALSE, reason, message)
    }

    /// A condition with an explicit status.
    pub fn new(type_: &str, status: &str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Sets `new` in `conditions` for `generation`, keeping `lastTransitionTime` when the
/// status did not change. Returns `true` when anything in the list changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    new: NewCondition,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let transition = existing.status != new.status;
            let changed = transition
                || existing.reason != new.reason
                || existing.message != new.message
                || existing.observed_generation != generation;
            if transition {
                existing.last_transition_time = Time(now);
            }
            existing.status = new.status;
            existing.reason = new.reason;
            existing.message = new.message;
            existing.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: new.type_,
                status: new.status,
                reason: new.reason,
                message: new.message,
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of `type_` exists with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// The overall state of an object in kstatus terms, which sets the three standard
/// conditions consistently (never Ready and Stalled together, etc.).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Azure matches the spec.
    Ready {
        /// Reason for `Ready=True`.
        reason: String,
        /// Message for `Ready=True`.
        message: String,
    },
    /// Still converging; the operator will retry by itself.
    Progressing {
        /// Reason for `Reconciling=True` and `Ready=False`.
        reason: String,
        /// What is being done.
        message: String,
    },
    /// Needs a change from the user (or outside help) to make progress.
    Stalled {
        /// Reason for `Stalled=True` and `Ready=False`.
        reason: String,
        /// What failed and what to do.
        message: String,
    },
}

impl Health {
    /// Ready with reason and message.
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Progressing with reason and message.
    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Self::Progressing {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Stalled with reason and message.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Whether this is [`Health::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// Applies `health` to the `Ready`, `Reconciling` and `Stalled` conditions.
/// Returns `true` when anything changed.
pub fn apply_health(
    conditions: &mut Vec<Condition>,
    health: &Health,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let (ready, reconciling, stalled) = match health {
        Health::Ready { reason, message } => (
            NewCondition::truthy(READY, reason, message.clone()),
            NewCondition::falsy(RECONCILING, reason, ""),
            NewCondition::falsy(STALLED, reason, ""),
        ),
        Health::Progressing { reason, message } => (
            NewCondition::falsy(READY, reason, message.clone()),
            NewCondition::truthy(RECONCILING, reason, message.clone()),
            NewCondition::falsy(STALLED, reason, ""),
        ),
        Health::Stalled { reason, message } => (
            NewCondition::falsy(READY, reason, message.clone()),
            NewCondition::falsy(RECONCILING, reason, ""),
            NewCondition::truthy(STALLED, reason, message.clone()),
        ),
    };
    let mut changed = set_condition(conditions, ready, generation, now);
    changed |= set_condition(conditions, reconciling, generation, now);
    changed |= set_condition(conditions, stalled, generation, now);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    #[test]
    fn adding_a_condition_stamps_transition_time() {
        let mut c = Vec::new();
        assert!(set_condition(
            &mut c,
            NewCondition::truthy(READY, "Provisioned", "ok"),
            Some(1),
            at(100)
        ));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(at(100)));
        assert_eq!(c[0].observed_generation, Some(1));
    }

    #[test]
    fn unchanged_condition_keeps_transition_time_and_reports_no_change() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            NewCondition::truthy(READY, "A", "m"),
            Some(1),
            at(100),
        );
        let changed = set_condition(
            &mut c,
            NewCondition::truthy(READY, "A", "m"),
            Some(1),
            at(200),
        );
        assert!(!changed);
        assert_eq!(c[0].last_transition_time, Time(at(100)));
    }

    #[test]
    fn new_message_with_same_status_keeps_transition_time() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            NewCondition::falsy(READY, "A", "one"),
            Some(1),
            at(100),
        );
        let changed = set_condition(
            &mut c,
            NewCondition::falsy(READY, "B", "two"),
            Some(2),
            at(200),
        );
        assert!(changed);
        assert_eq!(c[0].last_transition_time, Time(at(100)));
        assert_eq!(c[0].reason, "B");
        assert_eq!(c[0].message, "two");
        assert_eq!(c[0].observed_generation, Some(2));
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            NewCondition::falsy(READY, "A", "m"),
            Some(1),
            at(100),
        );
        set_condition(
            &mut c,
            NewCondition::truthy(READY, "A", "m"),
            Some(1),
            at(300),
        );
        assert_eq!(c[0].last_transition_time, Time(at(300)));
        assert!(is_true(&c, READY));
    }

    #[test]
    fn health_sets_kstatus_triple_consistently() {
        let mut c = Vec::new();
        apply_health(
            &mut c,
            &Health::progressing("Creating", "creating VM"),
            Some(1),
            at(1),
        );
        assert!(is_true(&c, RECONCILING));
        assert!(!is_true(&c, READY));
        assert!(!is_true(&c, STALLED));

        apply_health(
            &mut c,
            &Health::stalled("InvalidSize", "fix spec.size"),
            Some(1),
            at(2),
        );
        assert!(is_true(&c, STALLED));
        assert!(!is_true(&c, RECONCILING));
        assert_eq!(
            find(&c, READY).map(|r| r.message.as_str()),
            Some("fix spec.size")
        );

        apply_health(
            &mut c,
            &Health::ready("Running", "VM is running"),
            Some(2),
            at(3),
        );
        assert!(is_true(&c, READY));
        assert!(!is_true(&c, STALLED));
        assert!(!is_true(&c, RECONCILING));
        assert!(c.iter().all(|x| x.observed_generation == Some(2)));
        assert_eq!(c.len(), 3);
        assert!(!apply_health(
            &mut c,
            &Health::ready("Running", "VM is running"),
            Some(2),
            at(4)
        ));
    }
}
