//! Working hours: whether a Fleet's schedule has it running at a given time, and when that
//! next changes. Windows start on the listed days at `start` (in the schedule's IANA time
//! zone) and end at `end` — the next day when `end` is not after `start`, so 22:00–06:00
//! is a night shift. Daylight-saving gaps and overlaps follow the zone: a window starting in
//! a skipped hour starts when the clock resumes, one in a repeated hour at its first
//! occurrence.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::api::fleet::{Weekday, WorkSchedule};

/// Why a schedule cannot be evaluated (names the field and the fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The time zone is not in the IANA database.
    #[error(
        "spec.schedule.timeZone: {0:?} is not an IANA time zone; use e.g. UTC, Europe/Berlin or America/New_York"
    )]
    TimeZone(String),
    /// A time is not HH:MM.
    #[error("spec.schedule.{field}: {value:?} is not HH:MM in 24-hour time, e.g. 08:00")]
    Time {
        /// `start` or `end`.
        field: &'static str,
        /// The value given.
        value: String,
    },
}

/// Where the schedule stands at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Whether the fleet should run now.
    pub open: bool,
    /// When that changes next (within the coming week).
    pub next_transition: Option<DateTime<Utc>>,
}

fn weekday(d: Weekday) -> chrono::Weekday {
    match d {
        Weekday::Mon => chrono::Weekday::Mon,
        Weekday::Tue => chrono::Weekday::Tue,
        Weekday::Wed => chrono::Weekday::Wed,
        Weekday::Thu => chrono::Weekday::Thu,
        Weekday::Fri => chrono::Weekday::Fri,
        Weekday::Sat => chrono::Weekday::Sat,
        Weekday::Sun => chrono::Weekday::Sun,
    }
}

fn parse_time(field: &'static str, value: &str) -> Result<NaiveTime, ScheduleError> {
    NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| ScheduleError::Time {
        field,
        value: value.to_string(),
    })
}

/// The instant `date` at `time` in `tz`: the first of two in a repeated hour, the end of
/// the gap in a skipped one.
fn at(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = date.and_time(time);
    for _ in 0..4 {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            // In a daylight-saving gap: move on until the clock exists again.
            LocalResult::None => naive += Duration::minutes(30),
        }
    }
    Utc.from_utc_datetime(&naive)
}

/// Evaluates `schedule` at `now`.
pub fn evaluate(schedule: &WorkSchedule, now: DateTime<Utc>) -> Result<Window, ScheduleError> {
    let tz: Tz = schedule
        .time_zone
        .parse()
        .map_err(|_| ScheduleError::TimeZone(schedule.time_zone.clone()))?;
    let start = parse_time("start", &schedule.start)?;
    let end = parse_time("end", &schedule.end)?;
    let days: Vec<chrono::Weekday> = schedule.days.iter().copied().map(weekday).collect();
    let today = now.with_timezone(&tz).date_naive();
    // Every window that may contain `now` or start within the next week.
    let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for offset in -1..=8 {
        let day = today + Duration::days(offset);
        if !days.contains(&day.weekday()) {
            continue;
        }
        let end_day = if end > start {
            day
        } else {
            day + Duration::days(1)
        };
        windows.push((at(tz, day, start), at(tz, end_day, end)));
    }
    let open = windows.iter().any(|(s, e)| *s <= now && now < *e);
    // The next instant at which "open" flips: the earliest window edge after now whose
    // crossing changes the state (an end that is another window's start does not).
    // Windows are listed for eight days ahead: edges within a week are all known.
    let horizon = now + Duration::days(7);
    let mut edges: Vec<DateTime<Utc>> = windows
        .iter()
        .flat_map(|(s, e)| [*s, *e])
        .filter(|t| *t > now && *t <= horizon)
        .collect();
    edges.sort();
    let next_transition = edges.into_iter().find(|t| {
        let after = windows.iter().any(|(s, e)| *s <= *t && *t < *e);
        after != open
    });
    Ok(Window {
        open,
        next_transition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(days: &[Weekday], start: &str, end: &str, tz: &str) -> WorkSchedule {
        WorkSchedule {
            days: days.to_vec(),
            start: start.into(),
            end: end.into(),
            time_zone: tz.into(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn office_hours_in_berlin() {
        use Weekday::*;
        let s = schedule(
            &[Mon, Tue, Wed, Thu, Fri],
            "08:00",
            "19:00",
            "Europe/Berlin",
        );
        // Monday 2026-11-30 07:30 Berlin = 06:30 UTC (CET, UTC+1).
        let w = evaluate(&s, t("2026-11-30T06:30:00Z")).expect("ok");
        assert!(!w.open);
        assert_eq!(w.next_transition, Some(t("2026-11-30T07:00:00Z")));
        let w = evaluate(&s, t("2026-11-30T07:00:00Z")).expect("ok");
        assert!(w.open);
        assert_eq!(w.next_transition, Some(t("2026-11-30T18:00:00Z")));
        // Friday evening: closed until Monday 08:00.
        let w = evaluate(&s, t("2026-12-04T18:30:00Z")).expect("ok");
        assert!(!w.open);
        assert_eq!(w.next_transition, Some(t("2026-12-07T07:00:00Z")));
    }

    #[test]
    fn night_shift_crosses_midnight() {
        use Weekday::*;
        let s = schedule(&[Mon, Tue, Wed, Thu, Fri], "22:00", "06:00", "UTC");
        // Monday 23:00: open until Tuesday 06:00.
        let w = evaluate(&s, t("2026-11-30T23:00:00Z")).expect("ok");
        assert!(w.open);
        assert_eq!(w.next_transition, Some(t("2026-12-01T06:00:00Z")));
        // Saturday 03:00: Friday's window still open.
        let w = evaluate(&s, t("2026-12-05T03:00:00Z")).expect("ok");
        assert!(w.open);
        assert_eq!(w.next_transition, Some(t("2026-12-05T06:00:00Z")));
        // Saturday noon: closed until Monday 22:00.
        let w = evaluate(&s, t("2026-12-05T12:00:00Z")).expect("ok");
        assert!(!w.open);
        assert_eq!(w.next_transition, Some(t("2026-12-07T22:00:00Z")));
        // Monday 03:00: Sunday is not a start day, so closed.
        assert!(!evaluate(&s, t("2026-11-30T03:00:00Z")).expect("ok").open);
    }

    #[test]
    fn back_to_back_windows_do_not_flip() {
        use Weekday::*;
        let s = schedule(
            &[Mon, Tue, Wed, Thu, Fri, Sat, Sun],
            "00:00",
            "00:00",
            "UTC",
        );
        let w = evaluate(&s, t("2026-11-30T12:00:00Z")).expect("ok");
        assert!(w.open);
        assert_eq!(w.next_transition, None, "always open");
    }

    #[test]
    fn daylight_saving_change_keeps_local_times() {
        use Weekday::*;
        let s = schedule(&[Sun], "01:30", "04:00", "Europe/Berlin");
        // 2026-03-29: clocks jump from 02:00 to 03:00 CET→CEST. 01:30 CET = 00:30 UTC;
        // 04:00 CEST = 02:00 UTC.
        let w = evaluate(&s, t("2026-03-29T00:00:00Z")).expect("ok");
        assert_eq!(w.next_transition, Some(t("2026-03-29T00:30:00Z")));
        let w = evaluate(&s, t("2026-03-29T01:00:00Z")).expect("ok");
        assert!(w.open);
        assert_eq!(w.next_transition, Some(t("2026-03-29T02:00:00Z")));
        // A window starting in the skipped hour starts when the clock resumes.
        let gap = schedule(&[Sun], "02:30", "05:00", "Europe/Berlin");
        let w = evaluate(&gap, t("2026-03-29T00:00:00Z")).expect("ok");
        assert_eq!(w.next_transition, Some(t("2026-03-29T01:00:00Z")));
    }

    #[test]
    fn bad_input_names_the_field() {
        let s = schedule(&[Weekday::Mon], "08:00", "18:00", "Europe/Berlinn");
        let e = evaluate(&s, Utc::now()).expect_err("bad zone");
        assert!(e.to_string().contains("spec.schedule.timeZone"), "{e}");
        let s = schedule(&[Weekday::Mon], "8am", "18:00", "UTC");
        let e = evaluate(&s, Utc::now()).expect_err("bad time");
        assert!(e.to_string().contains("spec.schedule.start"), "{e}");
    }
}
