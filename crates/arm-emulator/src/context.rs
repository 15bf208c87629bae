//! State shared by the server, the operation timers and the in-process handle.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::budgets::Budgets;
use super::counts::Recorder;
use super::faults::Faults;
use super::kinds::Settings;
use super::state::Store;

/// Everything one emulator instance holds.
pub struct Shared {
    /// Runtime settings.
    pub settings: Settings,
    /// Resources and operations.
    pub store: Mutex<Store>,
    /// Request counts and log.
    pub recorder: Mutex<Recorder>,
    /// Faults and injected errors.
    pub faults: Faults,
    /// Request budgets (ARM token buckets, Compute windows).
    pub budgets: Budgets,
    /// Signalled on every change when a state file is configured.
    pub dirty: Notify,
    /// Whether changes are persisted.
    pub persist: bool,
    /// Runtime used to schedule operation completions (also from the sync handle API).
    pub runtime: tokio::runtime::Handle,
    /// `http` or `https`, for polling URLs.
    pub scheme: &'static str,
}

impl Shared {
    /// Locks the store (a panic elsewhere while holding it does not poison the emulator).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the request recorder.
    pub fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a state change for the persistence task.
    pub fn changed(&self) {
        if self.persist {
            self.dirty.notify_one();
        }
    }
}
