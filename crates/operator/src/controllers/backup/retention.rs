//! Which runs a Backup keeps, without I/O.
//!
//! Only finished runs are judged (a running run is always kept). A successful run is kept
//! when any rule keeps it, as restic's `forget` does:
//! - the newest `retention.count` successful runs;
//! - with grandfather-father-son rotation, the newest successful run of each of the newest
//!   `daily` days, `weekly` ISO weeks and `monthly` months (calendar of `spec.timeZone`);
//! - with `keepLastGood`, the newest good run (successful, and verified when it was checked),
//!   whatever happened since.
//!
//! Failed runs are never kept. [`prune`] turns the decision into deletes.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use super::observe::{AzState, Observed};
use super::plan::{Step, list};
use super::runs::from_time;
use crate::api::backup::{BackupRun, Retention, RunState};
use crate::reconcile::events::Event;

/// A finished run as retention sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The run's time.
    pub time: DateTime<Utc>,
    /// All its snapshots succeeded.
    pub succeeded: bool,
    /// Succeeded, and passed verification when verified.
    pub good: bool,
}

/// The indices into `runs` of the runs to keep.
pub fn keep(runs: &[Finished], retention: &Retention, tz: Tz) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|a, b| runs[*b].time.cmp(&runs[*a].time));
    let successful: Vec<usize> = order
        .iter()
        .copied()
        .filter(|i| runs[*i].succeeded)
        .collect();
    let count = usize::try_from(retention.count).unwrap_or(0);
    let mut kept: BTreeSet<usize> = successful.iter().copied().take(count).collect();
    if let Some((daily, weekly, monthly)) = retention.gfs() {
        let local = |i: usize| runs[i].time.with_timezone(&tz);
        kept.extend(newest_per_bucket(&successful, daily, |i| {
            let d = local(i);
            (d.year(), d.ordinal())
        }));
        kept.extend(newest_per_bucket(&successful, weekly, |i| {
            let w = local(i).iso_week();
            (w.year(), w.week())
        }));
        kept.extend(newest_per_bucket(&successful, monthly, |i| {
            let d = local(i);
            (d.year(), d.month())
        }));
    }
    if retention.keep_last_good
        && let Some(i) = order.iter().copied().find(|i| runs[*i].good)
    {
        kept.insert(i);
    }
    kept
}

/// From `newest_first`, the first run of each new bucket, for at most `buckets` buckets.
fn newest_per_bucket<K: PartialEq>(
    newest_first: &[usize],
    buckets: u32,
    key: impl Fn(usize) -> K,
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut last: Option<K> = None;
    for &i in newest_first {
        if out.len() >= buckets as usize {
            break;
        }
        let k = key(i);
        if last.as_ref() != Some(&k) {
            out.push(i);
            last = Some(k);
        }
    }
    out
}

/// The names of the runs to keep: running runs and what retention keeps of the others.
pub fn kept_runs(runs: &[BackupRun], retention: &Retention, tz: Tz) -> BTreeSet<String> {
    let finished: Vec<&BackupRun> = runs
        .iter()
        .filter(|r| r.state != RunState::Running)
        .collect();
    let info: Vec<Finished> = finished
        .iter()
        .map(|r| Finished {
            time: from_time(&r.time),
            succeeded: r.state == RunState::Succeeded,
            good: r.is_good(),
        })
        .collect();
    let mut kept: BTreeSet<String> = keep(&info, retention, tz)
        .into_iter()
        .map(|i| finished[i].name.clone())
        .collect();
    kept.extend(
        runs.iter()
            .filter(|r| r.state == RunState::Running)
            .map(|r| r.name.clone()),
    );
    kept
}

/// What retention says, for the Pruned event.
fn describe(r: &Retention) -> String {
    let mut m = format!("keep the newest {} successful runs", r.count);
    if let Some((d, w, mo)) = r.gfs() {
        m.push_str(&format!(", {d} daily, {w} weekly, {mo} monthly"));
    }
    if r.keep_last_good {
        m.push_str(" and the newest good run");
    }
    m
}

/// Deletes of what is no longer kept: snapshots and copies of runs retention drops (and of
/// failed runs), failed copies, and verification disks no run is checking.
pub fn prune(
    runs: &[BackupRun],
    kept: &BTreeSet<String>,
    seen: &Observed,
    retention: &Retention,
) -> Option<(Step, Option<Event>)> {
    let checking: BTreeSet<&str> = runs
        .iter()
        .filter(|r| r.state == RunState::Running)
        .map(|r| r.name.as_str())
        .collect();
    let mut ids = Vec::new();
    let mut dropped: BTreeSet<&str> = BTreeSet::new();
    for f in seen.snapshots.iter().filter(|f| f.state.settled()) {
        let Some(info) = &f.info else { continue };
        if checking.contains(info.run.as_str()) {
            continue;
        }
        if !kept.contains(&info.run) {
            ids.push(f.id.clone());
            dropped.insert(info.run.as_str());
        } else if f.copy && matches!(f.state, AzState::Failed(_)) {
            ids.push(f.id.clone());
        }
    }
    for d in seen.verify_disks.iter().filter(|d| d.state.settled()) {
        if d.run.as_deref().is_none_or(|r| !checking.contains(r)) {
            ids.push(d.id.clone());
        }
    }
    if ids.is_empty() {
        return None;
    }
    let event = (!dropped.is_empty()).then(|| {
        Event::normal(
            "Pruned",
            format!(
                "deleting the snapshots of run(s) {} ({})",
                list(&dropped),
                describe(retention)
            ),
        )
    });
    Some((Step::Delete(ids), event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate, TimeZone};

    fn retention(count: i32, gfs: Option<(i32, i32, i32)>, keep_last_good: bool) -> Retention {
        Retention {
            count,
            daily: gfs.map(|g| g.0),
            weekly: gfs.map(|g| g.1),
            monthly: gfs.map(|g| g.2),
            keep_last_good,
        }
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, hour, 0, 0)
            .single()
            .expect("t")
    }

    fn run(time: DateTime<Utc>, succeeded: bool, good: bool) -> Finished {
        Finished {
            time,
            succeeded,
            good,
        }
    }

    #[test]
    fn count_keeps_the_newest_successful_and_last_good_survives_failures() {
        // Runs 0..=2 good, 3 and 4 succeeded but failed verification, 5..=7 failed.
        let mut runs: Vec<Finished> = (1..=3).map(|d| run(at(d, 2), true, true)).collect();
        runs.extend((4..=5).map(|d| run(at(d, 2), true, false)));
        runs.extend((6..=8).map(|d| run(at(d, 2), false, false)));
        let cases: [(Retention, &[usize]); 3] = [
            (retention(2, None, true), &[2, 3, 4]),
            (retention(2, None, false), &[3, 4]),
            (retention(7, None, true), &[0, 1, 2, 3, 4]),
        ];
        for (r, want) in cases {
            let kept: Vec<usize> = keep(&runs, &r, Tz::UTC).into_iter().collect();
            assert_eq!(kept, want, "{r:?}");
        }
        assert!(keep(&[], &retention(3, None, true), Tz::UTC).is_empty());
    }

    #[test]
    fn gfs_tiers_default_to_azlin_and_zero_turns_a_tier_off() {
        let r = Retention {
            daily: Some(2),
            ..Retention::default()
        };
        assert_eq!(r.gfs(), Some((2, 4, 12)));
        assert_eq!(Retention::default().gfs(), None);
        // Hourly runs over three days, count 1 and daily 2: the newest of each of the two
        // newest days, plus the newest overall.
        let runs: Vec<Finished> = (1..=3)
            .flat_map(|d| (0..24).step_by(6).map(move |h| run(at(d, h), true, true)))
            .collect();
        let r = retention(1, Some((2, 0, 0)), false);
        let kept: Vec<DateTime<Utc>> = keep(&runs, &r, Tz::UTC)
            .into_iter()
            .map(|i| runs[i].time)
            .collect();
        assert_eq!(kept, vec![at(2, 18), at(3, 18)]);
    }

    #[test]
    fn days_are_those_of_the_time_zone() {
        // 23:30 UTC on May 1 is already May 2 in Berlin, the same day as 10:00 UTC May 2.
        let runs = [
            run(
                Utc.with_ymd_and_hms(2026, 5, 1, 23, 30, 0)
                    .single()
                    .expect("t"),
                true,
                true,
            ),
            run(at(2, 10), true, true),
            run(at(1, 10), true, true),
        ];
        let r = retention(1, Some((2, 0, 0)), false);
        let berlin: Vec<usize> = keep(&runs, &r, chrono_tz::Europe::Berlin)
            .into_iter()
            .collect();
        assert_eq!(berlin, vec![1, 2]);
        let utc: Vec<usize> = keep(&runs, &r, Tz::UTC).into_iter().collect();
        assert_eq!(utc, vec![0, 1]);
    }

    /// A year of nightly runs at 04:00 Berlin time (every tenth failing): azlin's 7/4/12
    /// keeps the last 7 nights, the newest run of the last 4 ISO weeks and of the last 12
    /// months — and nothing else.
    #[test]
    fn gfs_over_a_simulated_year() {
        let tz = chrono_tz::Europe::Berlin;
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let runs: Vec<Finished> = (0..365)
            .map(|d| {
                let day = first + Duration::days(d);
                let local = tz
                    .from_local_datetime(&day.and_hms_opt(4, 0, 0).expect("time"))
                    .single()
                    .expect("04:00 exists once every day in Berlin");
                let ok = d % 10 != 9;
                run(local.with_timezone(&Utc), ok, ok)
            })
            .collect();
        let r = retention(1, Some((7, 4, 12)), true);
        let kept: BTreeSet<NaiveDate> = keep(&runs, &r, tz)
            .into_iter()
            .map(|i| runs[i].time.with_timezone(&tz).date_naive())
            .collect();
        let date = |m, d| NaiveDate::from_ymd_opt(2026, m, d).expect("date");
        // Days 339, 349 and 359 (Dec 6, 16 and 26) fail, like every tenth night.
        let mut want: BTreeSet<NaiveDate> = BTreeSet::new();
        // Daily: the 7 newest successful nights.
        want.extend([
            date(12, 31),
            date(12, 30),
            date(12, 29),
            date(12, 28),
            date(12, 27),
            date(12, 25),
            date(12, 24),
        ]);
        // Weekly (ISO weeks start on Monday): the newest successful run of weeks 53 (Dec
        // 28-31), 52 (Dec 21-27), 51 (Dec 14-20) and 50 (Dec 7-13).
        want.extend([date(12, 31), date(12, 27), date(12, 20), date(12, 13)]);
        // Monthly: the newest successful run of each month (the last day, or the day before
        // when the last day's run failed).
        for m in 1..=12u32 {
            let last = if m == 12 {
                date(12, 31)
            } else {
                date(m + 1, 1) - Duration::days(1)
            };
            let ordinal = (last - first).num_days();
            let newest_ok = if ordinal % 10 == 9 {
                last - Duration::days(1)
            } else {
                last
            };
            want.insert(newest_ok);
        }
        assert_eq!(kept, want);
        assert_eq!(kept.len(), 20, "7 + 4 + 12 with the overlaps counted once");
    }
}
