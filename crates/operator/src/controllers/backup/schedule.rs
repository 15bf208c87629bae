//! The schedule of a Backup, without I/O: `spec.schedule` (standard five-field cron or a
//! macro, parsed by croner) in `spec.timeZone` (chrono-tz), and when a run is due.
//!
//! Slots are wall-clock times of the zone: a slot that falls into a spring-forward gap runs
//! at the first minute after the gap, a slot in a fall-back overlap runs once (its first
//! occurrence), as Vixie cron does.
//!
//! When a run is due: `status.nextScheduleTime` is the next slot; when the clock passes it,
//! the latest slot at or before now runs — once, however many slots were missed while the
//! operator was down (at most one catch-up run, never a burst). After a run starts, the next
//! slot is the first one after now. When the spec changes, a next slot still in the future is
//! recomputed from now; a suspended Backup has no next slot, so slots missed while suspended
//! are not made up.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A spec field that cannot be used, with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The field, e.g. `spec.schedule`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

/// The Levenshtein distance of two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The IANA zone name closest to `name` (for "did you mean"), if any is close.
fn closest_zone(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|z| (distance(&lower, &z.name().to_ascii_lowercase()), z.name()))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Parses `spec.timeZone`.
pub fn parse_time_zone(time_zone: &str) -> Result<Tz, SpecError> {
    time_zone.parse::<Tz>().map_err(|_| {
        let hint = match closest_zone(time_zone) {
            Some(z) => format!("did you mean {z}?"),
            None => "use a name such as UTC, Europe/Berlin or America/New_York".to_string(),
        };
        SpecError {
            field: "spec.timeZone",
            message: format!("{time_zone:?} is not an IANA time zone name; {hint}"),
        }
    })
}

impl Schedule {
    /// Parses `spec.schedule` and `spec.timeZone`; `now` checks that the schedule fires at
    /// all (e.g. not only on February 30).
    pub fn parse(
        schedule: &str,
        time_zone: &str,
        now: DateTime<Utc>,
    ) -> Result<Schedule, SpecError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(schedule).map_err(|e| SpecError {
            field: "spec.schedule",
            message: format!(
                "{schedule:?} is not a valid cron expression ({e}); use five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of week 0-7), e.g. \"0 2 * * *\", or a macro such as @daily"
            ),
        })?;
        let tz = parse_time_zone(time_zone)?;
        let parsed = Schedule { cron, tz };
        if parsed.next_after(now).is_none() {
            return Err(SpecError {
                field: "spec.schedule",
                message: format!(
                    "{schedule:?} never fires (no matching date); correct the day of month or month"
                ),
            });
        }
        Ok(parsed)
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest slot at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// What the schedule asks for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The slot to run now, if one is due.
    pub due: Option<DateTime<Utc>>,
    /// `nextScheduleTime` while no run starts (a due slot stays due).
    pub next: Option<DateTime<Utc>>,
    /// `nextScheduleTime` once the due run started: the first slot after now.
    pub following: Option<DateTime<Utc>>,
}

/// What is stored about the schedule in the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// `status.nextScheduleTime`.
    pub next: Option<DateTime<Utc>>,
    /// Whether the status describes the current generation (a future `next` is then valid).
    pub current: bool,
    /// `status.lastScheduleTime`.
    pub last: Option<DateTime<Utc>>,
}

/// Decides whether a slot is due at `now`.
pub fn decide(
    schedule: &Schedule,
    suspended: bool,
    stored: Stored,
    now: DateTime<Utc>,
) -> Decision {
    if suspended {
        return Decision {
            due: None,
            next: None,
            following: None,
        };
    }
    let following = schedule.next_after(now);
    let next = match stored.next {
        Some(n) if n <= now || stored.current => Some(n),
        _ => following,
    };
    let due = next
        .filter(|n| *n <= now)
        .and_then(|_| schedule.latest_at_or_before(now))
        .filter(|slot| stored.last.is_none_or(|last| *slot > last));
    let next = match (next, due) {
        // Due under an earlier schedule, but the current one has no slot since the last run.
        (Some(n), None) if n <= now => following,
        (n, _) => n,
    };
    Decision {
        due,
        next,
        following,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn sched(expr: &str, tz: &str) -> Schedule {
        Schedule::parse(expr, tz, t("2026-01-01T00:00:00Z")).expect("valid")
    }

    #[test]
    fn invalid_schedules_name_the_field_and_the_fix() {
        let now = t("2026-01-01T00:00:00Z");
        for (expr, tz, field, needle) in [
            ("0 25 * * *", "UTC", "spec.schedule", "five fields"),
            ("99 99 99 99 99", "UTC", "spec.schedule", "not a valid cron"),
            ("0 2 * *", "UTC", "spec.schedule", "five fields"),
            ("0 0 2 * * *", "UTC", "spec.schedule", "five fields"),
            ("0 0 30 2 *", "UTC", "spec.schedule", "never fires"),
            (
                "0 2 * * *",
                "Europe/Berlinn",
                "spec.timeZone",
                "Europe/Berlin?",
            ),
            ("0 2 * * *", "Mars/Olympus", "spec.timeZone", "such as UTC"),
        ] {
            let e = Schedule::parse(expr, tz, now).expect_err(expr);
            assert_eq!(e.field, field, "{expr} {tz}");
            assert!(e.message.contains(needle), "{expr} {tz}: {}", e.message);
        }
        for expr in [
            "@daily",
            "@hourly",
            "*/15 * * * *",
            "0 2 * * MON-FRI",
            "30 3 1,15 JAN,JUL *",
        ] {
            Schedule::parse(expr, "Europe/Berlin", now).expect(expr);
        }
    }

    #[test]
    fn slots_follow_the_zone_across_dst() {
        let s = sched("0 9 * * *", "Europe/Berlin");
        // 09:00 CET is 08:00 UTC; after the change on 2026-03-29, 09:00 CEST is 07:00 UTC.
        assert_eq!(
            s.next_after(t("2026-03-28T07:30:00Z")),
            Some(t("2026-03-28T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-03-28T08:00:00Z")),
            Some(t("2026-03-29T07:00:00Z"))
        );
        // A slot in the spring-forward gap runs right after it; one in the fall-back
        // overlap runs once.
        let gap = sched("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            gap.next_after(t("2026-03-28T12:00:00Z")),
            Some(t("2026-03-29T01:00:00Z"))
        );
        let overlap = sched("30 2 * * *", "Europe/Berlin");
        let first = overlap.next_after(t("2026-10-24T12:00:00Z")).expect("slot");
        assert_eq!(first, t("2026-10-25T00:30:00Z"));
        assert_eq!(
            overlap.next_after(first),
            Some(t("2026-10-26T01:30:00Z")),
            "the repeated 02:30 does not run twice"
        );
        assert_eq!(
            s.latest_at_or_before(t("2026-03-29T07:00:00Z")),
            Some(t("2026-03-29T07:00:00Z"))
        );
    }

    #[test]
    fn decisions_run_once_per_slot_and_catch_up_once() {
        let s = sched("0 * * * *", "UTC");
        let now = t("2026-05-01T10:30:00Z");
        // First look: nothing due, next slot from now.
        let d = decide(&s, false, Stored::default(), now);
        assert_eq!(d.due, None);
        assert_eq!(d.next, Some(t("2026-05-01T11:00:00Z")));
        // The clock passes the stored slot: it is due; the next one follows now.
        let stored = Stored {
            next: d.next,
            current: true,
            last: None,
        };
        let d = decide(&s, false, stored, t("2026-05-01T11:00:00Z"));
        assert_eq!(d.due, Some(t("2026-05-01T11:00:00Z")));
        assert_eq!(d.following, Some(t("2026-05-01T12:00:00Z")));
        // Five hours of downtime: only the latest missed slot runs.
        let stored = Stored {
            next: Some(t("2026-05-01T12:00:00Z")),
            current: true,
            last: Some(t("2026-05-01T11:00:00Z")),
        };
        let d = decide(&s, false, stored, t("2026-05-01T16:20:00Z"));
        assert_eq!(d.due, Some(t("2026-05-01T16:00:00Z")));
        assert_eq!(d.following, Some(t("2026-05-01T17:00:00Z")));
        // A slot already run is not due again.
        let stored = Stored {
            next: Some(t("2026-05-01T16:00:00Z")),
            current: true,
            last: Some(t("2026-05-01T16:00:00Z")),
        };
        let d = decide(&s, false, stored, t("2026-05-01T16:20:00Z"));
        assert_eq!(d.due, None);
        assert_eq!(d.next, Some(t("2026-05-01T17:00:00Z")));
    }

    #[test]
    fn spec_changes_and_suspension_recompute_from_now() {
        let s = sched("0 * * * *", "UTC");
        let now = t("2026-05-01T10:30:00Z");
        let stale = Stored {
            next: Some(t("2026-05-02T02:00:00Z")),
            current: false,
            last: None,
        };
        assert_eq!(
            decide(&s, false, stale, now).next,
            Some(t("2026-05-01T11:00:00Z")),
            "a future slot of the old spec is recomputed"
        );
        let suspended = decide(&s, true, stale, now);
        assert_eq!((suspended.due, suspended.next), (None, None));
        let resumed = Stored {
            next: None,
            current: false,
            last: Some(t("2026-05-01T02:00:00Z")),
        };
        let d = decide(&s, false, resumed, now);
        assert_eq!(d.due, None, "slots missed while suspended are not made up");
        assert_eq!(d.next, Some(t("2026-05-01T11:00:00Z")));
    }
}
