//! Shared readiness state behind `/readyz`.
//!
//! Components register a named [`ReadyGate`] and mark it ready when they can do their
//! job (a controller after its caches synced, the leader elector once it knows whether
//! it leads or stands by). The process is ready when at least one gate exists and every
//! gate is ready; otherwise `/readyz` names the gates it still waits for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// id -> (name, ready)
    gates: BTreeMap<u64, (String, bool)>,
}

/// Readiness of the process. Cheap to clone; all clones share one state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadinessStatus {
    /// Every registered gate is ready.
    Ready,
    /// No component has registered yet.
    NothingRegistered,
    /// These gates (by name, sorted by registration) are not ready yet.
    Waiting(Vec<String>),
}

impl ReadinessStatus {
    /// True for [`ReadinessStatus::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, ReadinessStatus::Ready)
    }
}

impl std::fmt::Display for ReadinessStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadinessStatus::Ready => f.write_str("ready"),
            ReadinessStatus::NothingRegistered => {
                f.write_str("not ready: no component has registered yet")
            }
            ReadinessStatus::Waiting(names) => {
                write!(f, "not ready: waiting for {}", names.join(", "))
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is a plain map updated in single statements; a panic elsewhere while the
    // lock was held cannot leave it half-written, so a poisoned lock is still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Readiness {
    /// Creates a readiness state without gates (not ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a gate named `name` (e.g. `AzlinVM cache`), initially not ready.
    /// The gate is removed again when the returned handle is dropped.
    pub fn register(&self, name: impl Into<String>) -> ReadyGate {
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.gates.insert(id, (name.into(), false));
        ReadyGate {
            state: Arc::clone(&self.state),
            id,
        }
    }

    /// Current status.
    pub fn status(&self) -> ReadinessStatus {
        let state = lock(&self.state);
        if state.gates.is_empty() {
            return ReadinessStatus::NothingRegistered;
        }
        let waiting: Vec<String> = state
            .gates
            .values()
            .filter(|(_, ready)| !ready)
            .map(|(name, _)| name.clone())
            .collect();
        if waiting.is_empty() {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::Waiting(waiting)
        }
    }

    /// True when every registered gate is ready (and there is at least one).
    pub fn is_ready(&self) -> bool {
        self.status().is_ready()
    }
}

/// One component's part of [`Readiness`]. Dropping it unregisters the component.
#[derive(Debug)]
pub struct ReadyGate {
    state: Arc<Mutex<State>>,
    id: u64,
}

impl ReadyGate {
    /// Marks this component ready.
    pub fn set_ready(&self) {
        self.set(true);
    }

    /// Marks this component not ready (again).
    pub fn set_not_ready(&self) {
        self.set(false);
    }

    fn set(&self, ready: bool) {
        if let Some(gate) = lock(&self.state).gates.get_mut(&self.id) {
            gate.1 = ready;
        }
    }
}

impl Drop for ReadyGate {
    fn drop(&mut self) {
        lock(&self.state).gates.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_ready() {
        let readiness = Readiness::new();
        assert_eq!(readiness.status(), ReadinessStatus::NothingRegistered);
        let vm = readiness.register("AzlinVM cache");
        let fleet = readiness.register("Fleet cache");
        assert_eq!(
            readiness.status(),
            ReadinessStatus::Waiting(vec!["AzlinVM cache".into(), "Fleet cache".into()])
        );
        vm.set_ready();
        assert_eq!(
            readiness.status().to_string(),
            "not ready: waiting for Fleet cache"
        );
        fleet.set_ready();
        assert!(readiness.is_ready());
        fleet.set_not_ready();
        assert!(!readiness.is_ready());
        drop(fleet);
        assert!(readiness.is_ready());
        drop(vm);
        assert_eq!(readiness.status(), ReadinessStatus::NothingRegistered);
    }
}
