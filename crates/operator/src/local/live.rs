//! Showing the table while `local` runs. On a terminal the screen is redrawn in place every
//! second (the lines printed before the table, such as the `KUBECONFIG=` hint, are part of
//! every redraw); otherwise the full table is printed once and then one line per change,
//! like `kubectl get --watch`, with a progress summary every 10 seconds.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use super::table::{self, Row};

/// Rows shown on a terminal; the rest (Ready ones first) are summarised in one line.
const TERMINAL_ROWS: usize = 40;

/// How often the summary line is repeated when nothing changes (not on a terminal).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often a terminal is redrawn when nothing changes (the FOR column moves).
const REDRAW: Duration = Duration::from_secs(1);

/// The live display.
#[derive(Debug)]
pub struct Live {
    terminal: bool,
    preamble: Vec<String>,
    started: Instant,
    rows: Vec<Row>,
    since: Vec<Instant>,
    last_output: Option<Instant>,
}

impl Live {
    /// A display that started at `started`; `terminal` selects in-place redraws.
    pub fn new(terminal: bool, started: Instant) -> Self {
        Self {
            terminal,
            preamble: Vec::new(),
            started,
            rows: Vec::new(),
            since: Vec::new(),
            last_output: None,
        }
    }

    /// Prints `line` now and keeps it above the table in every later redraw.
    pub fn say(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("{line}");
        self.preamble.push(line);
    }

    /// The latest rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    fn elapsed(&self, now: Instant) -> String {
        table::human(now.duration_since(self.started))
    }

    /// Takes a new snapshot and shows what changed.
    pub fn update(&mut self, rows: Vec<Row>) {
        let now = Instant::now();
        let first = self.rows.len() != rows.len();
        let mut changed = Vec::new();
        if first {
            self.since = vec![now; rows.len()];
        } else {
            for (i, (old, new)) in self.rows.iter().zip(&rows).enumerate() {
                if old != new {
                    if (old.state, &old.reason) != (new.state, &new.reason) {
                        self.since[i] = now;
                    }
                    changed.push(i);
                }
            }
        }
        self.rows = rows;
        let mut out = std::io::stdout().lock();
        if self.terminal {
            let due = self
                .last_output
                .is_none_or(|t| now.duration_since(t) >= REDRAW);
            if first || !changed.is_empty() || due {
                let _ = write!(out, "\x1b[H\x1b[2J{}", self.screen(now));
                self.last_output = Some(now);
            }
        } else if first {
            let _ = write!(out, "{}", self.table(now, None));
            self.last_output = Some(now);
        } else if !changed.is_empty() {
            for i in changed {
                let r = &self.rows[i];
                let _ = writeln!(
                    out,
                    "[{}] {} {}: {} {}: {}",
                    self.elapsed(now),
                    r.kind,
                    r.name,
                    r.state.label(),
                    r.reason,
                    r.message
                );
            }
            self.last_output = Some(now);
        } else if self
            .last_output
            .is_none_or(|t| now.duration_since(t) >= HEARTBEAT)
        {
            let _ = writeln!(
                out,
                "[{}] {}",
                self.elapsed(now),
                table::summary(&self.rows)
            );
            self.last_output = Some(now);
        }
        let _ = out.flush();
    }

    fn since(&self, now: Instant) -> Vec<Duration> {
        self.since.iter().map(|t| now.duration_since(*t)).collect()
    }

    /// The summary line and the table.
    fn table(&self, now: Instant, max_rows: Option<usize>) -> String {
        format!(
            "elapsed {}: {}\n{}",
            self.elapsed(now),
            table::summary(&self.rows),
            table::render(&self.rows, &self.since(now), max_rows)
        )
    }

    fn screen(&self, now: Instant) -> String {
        let mut s = String::new();
        for l in &self.preamble {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str(&self.table(now, Some(TERMINAL_ROWS)));
        s
    }

    /// Prints the final table: the whole table, or on a terminal the last screen.
    pub fn finish(&mut self) {
        let now = Instant::now();
        let mut out = std::io::stdout().lock();
        if self.terminal {
            let _ = write!(out, "\x1b[H\x1b[2J{}", self.screen(now));
        } else {
            let _ = write!(out, "{}", self.table(now, None));
        }
        let _ = out.flush();
        self.last_output = Some(now);
    }
}
