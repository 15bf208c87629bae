//! The controllers' notion of "now", injectable so that schedules (working hours, backup
//! cron, healing thresholds) can be tested by moving time instead of waiting for it.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use tokio::sync::broadcast;

/// Wall-clock time as the controllers see it.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that only moves when told to (tests, simulations).
    Manual(ManualClock),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// A receiver notified whenever a manual clock moves (never for the system clock), so
    /// that time-dependent objects are re-evaluated at once.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<()>> {
        match self {
            Clock::System => None,
            Clock::Manual(m) => Some(m.moved.subscribe()),
        }
    }
}

/// A clock set and advanced by hand. Cheap to clone; clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    moved: broadcast::Sender<()>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        let (moved, _) = broadcast::channel(16);
        Self {
            now: Arc::new(Mutex::new(start)),
            moved,
        }
    }

    /// The time it shows.
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the time (it may go backwards, as a corrected wall clock does).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
        // Nobody listening means no controller runs: nothing to wake.
        let _ = self.moved.send(());
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = ChronoDuration::from_std(by).unwrap_or(ChronoDuration::MAX);
        self.set(self.now() + by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_notifies() {
        let start = DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let m = ManualClock::new(start);
        let clock = Clock::Manual(m.clone());
        let mut rx = clock.subscribe().expect("manual clocks notify");
        assert_eq!(clock.now(), start);
        m.advance(std::time::Duration::from_secs(3600));
        assert_eq!(clock.now(), start + ChronoDuration::hours(1));
        assert!(rx.try_recv().is_ok());
        assert!(Clock::System.subscribe().is_none());
    }
}
