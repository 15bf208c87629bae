//! The live table of `azlin-operator local`: one row per object with its phase, state, how
//! long it has been in that state and the reason, read generically from the kstatus
//! conditions (`Ready`, `Reconciling`, `Stalled`) and `status.observedGeneration`.

use std::time::Duration;

use serde_json::Value;

/// What an object's status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowState {
    /// Stalled=True for the current generation: needs a change from the user.
    Stalled,
    /// No controller runs for this kind: it will never be reconciled.
    NoController,
    /// Still converging, or not reported on yet.
    Progressing,
    /// Ready=True for the current generation.
    Ready,
}

impl RowState {
    /// The word shown in the table.
    pub fn label(self) -> &'static str {
        match self {
            RowState::Ready => "Ready",
            RowState::Stalled => "Stalled",
            RowState::Progressing => "Progressing",
            RowState::NoController => "NotReconciled",
        }
    }

    /// Whether the object will not change any more without the user (or a controller).
    pub fn is_final(self) -> bool {
        self != RowState::Progressing
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Kind.
    pub kind: String,
    /// `namespace/name`.
    pub name: String,
    /// `status.phase`, or `-`.
    pub phase: String,
    /// Summary state.
    pub state: RowState,
    /// Why: the deciding condition's reason, never empty.
    pub reason: String,
    /// What it waits for or what failed, never empty.
    pub message: String,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn text(c: Option<&Value>, key: &str) -> String {
    c.and_then(|c| c[key].as_str())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The row of `obj`; `controlled` tells whether a controller for its kind runs.
pub fn row(obj: &Value, controlled: bool) -> Row {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or("default"),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    );
    let phase = obj["status"]["phase"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or("-")
        .to_string();
    let (state, reason, message) = judge(obj, &kind, controlled);
    Row {
        kind,
        name,
        phase,
        state,
        reason,
        message,
    }
}

/// The row of an applied object that no longer exists (deleted, e.g. with kubectl).
pub fn gone(applied: &Value) -> Row {
    Row {
        state: RowState::Progressing,
        phase: "-".into(),
        reason: "NotFound".into(),
        message: "the object no longer exists in the API (deleted?)".into(),
        ..row(applied, true)
    }
}

fn judge(obj: &Value, kind: &str, controlled: bool) -> (RowState, String, String) {
    if !controlled {
        return (
            RowState::NoController,
            "NoController".into(),
            format!("no {kind} controller runs in this build, so nothing will reconcile it"),
        );
    }
    let generation = obj["metadata"]["generation"].as_i64();
    let observed = obj["status"]["observedGeneration"].as_i64();
    let ready = condition(obj, "Ready");
    let stalled = condition(obj, "Stalled");
    let reconciling = condition(obj, "Reconciling");
    if ready.is_none() && stalled.is_none() && reconciling.is_none() {
        return (
            RowState::Progressing,
            "NotReconciledYet".into(),
            format!("waiting for the {kind} controller to report on it (no status conditions yet)"),
        );
    }
    if let (Some(g), Some(o)) = (generation, observed)
        && o < g
    {
        return (
            RowState::Progressing,
            "NewGeneration".into(),
            format!(
                "status describes generation {o}; waiting for the controller to observe generation {g}"
            ),
        );
    }
    if observed.is_none() && generation.is_some() {
        return (
            RowState::Progressing,
            "NotObserved".into(),
            "the status has no observedGeneration; waiting for the controller to report on this generation".into(),
        );
    }
    let is_true = |c: Option<&Value>| c.is_some_and(|c| c["status"] == "True");
    let (state, deciding) = if is_true(ready) {
        (RowState::Ready, [ready, reconciling, stalled])
    } else if is_true(stalled) {
        (RowState::Stalled, [stalled, ready, reconciling])
    } else {
        (RowState::Progressing, [reconciling, ready, stalled])
    };
    let reason = deciding
        .iter()
        .map(|c| text(*c, "reason"))
        .find(|r| !r.is_empty())
        .unwrap_or_else(|| state.label().to_string());
    let message = deciding
        .iter()
        .map(|c| text(*c, "message"))
        .find(|m| !m.is_empty())
        .unwrap_or_else(|| match state {
            RowState::Ready => "ready".to_string(),
            _ => format!("the {kind} controller reported {reason} without a message"),
        });
    (state, reason, message)
}

/// True when no object is Progressing.
pub fn settled(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.state.is_final())
}

/// True when every object is Ready.
pub fn all_ready(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.state == RowState::Ready)
}

/// `N objects: a Ready, b Progressing, ...` (states with a count only).
pub fn summary(rows: &[Row]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for r in rows {
        *counts.entry(r.state).or_insert(0usize) += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {}", s.label()))
        .collect();
    format!("{} object(s): {}", rows.len(), parts.join(", "))
}

/// `1h2m`, `3m4s`, `5s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Renders rows as an aligned text table; `since[i]` is how long row `i` has been in its
/// state. With `max_rows`, at most that many rows are shown, the ones not Ready first, and
/// a last line tells how many were left out.
pub fn render(rows: &[Row], since: &[Duration], max_rows: Option<usize>) -> String {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut hidden = Vec::new();
    if let Some(max) = max_rows.filter(|m| rows.len() > *m) {
        order.sort_by_key(|&i| (rows[i].state == RowState::Ready, i));
        hidden = order
            .split_off(max)
            .into_iter()
            .map(|i| rows[i].clone())
            .collect();
        order.sort_unstable();
    }
    let mut lines =
        vec![["KIND", "NAME", "PHASE", "STATE", "FOR", "REASON", "MESSAGE"].map(String::from)];
    for i in order {
        let r = &rows[i];
        let mut message = r.message.replace('\n', " ");
        if message.chars().count() > 100 {
            message = message.chars().take(97).collect::<String>() + "...";
        }
        lines.push([
            r.kind.clone(),
            r.name.clone(),
            r.phase.clone(),
            r.state.label().to_string(),
            since
                .get(i)
                .copied()
                .map(human)
                .unwrap_or_else(|| "-".into()),
            r.reason.clone(),
            message,
        ]);
    }
    let mut widths = [0usize; 7];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if !hidden.is_empty() {
        out.push_str(&format!("... and {} not shown\n", summary(&hidden)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(generation: i64, observed: i64, ready: &str, stalled: &str) -> Value {
        json!({
            "kind": "AzlinVM",
            "metadata": {"name": "dev", "namespace": "default", "generation": generation},
            "status": {"phase": "Running", "observedGeneration": observed, "conditions": [
                {"type": "Ready", "status": ready, "reason": "R", "message": "ready msg"},
                {"type": "Stalled", "status": stalled, "reason": "S", "message": "stalled msg"},
                {"type": "Reconciling", "status": "False", "reason": "C", "message": ""}
            ]}
        })
    }

    #[test]
    fn ready_needs_the_current_generation() {
        assert_eq!(
            row(&obj(2, 2, "True", "False"), true).state,
            RowState::Ready
        );
        let stale = row(&obj(3, 2, "True", "False"), true);
        assert_eq!(stale.state, RowState::Progressing);
        assert_eq!(stale.reason, "NewGeneration");
        assert!(stale.message.contains("generation 3"), "{stale:?}");
    }

    #[test]
    fn stalled_carries_its_message() {
        let r = row(&obj(1, 1, "False", "True"), true);
        assert_eq!(r.state, RowState::Stalled);
        assert_eq!(r.message, "stalled msg");
        assert!(settled(std::slice::from_ref(&r)));
        assert!(!all_ready(&[r]));
    }

    #[test]
    fn kinds_without_controller_are_final_and_not_ready() {
        let r = row(&json!({"kind": "Backup", "metadata": {"name": "b"}}), false);
        assert_eq!(r.state, RowState::NoController);
        assert!(r.message.contains("Backup"), "{r:?}");
        assert!(settled(std::slice::from_ref(&r)));
        assert!(!all_ready(&[r]));
    }

    #[test]
    fn every_waiting_row_says_why() {
        let cases = [
            json!({"kind": "Fleet", "metadata": {"name": "f", "generation": 1}}),
            json!({"kind": "Fleet", "metadata": {"name": "f", "generation": 1}, "status": {}}),
            json!({"kind": "Fleet", "metadata": {"name": "f", "generation": 1}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            json!({"kind": "Fleet", "metadata": {"name": "f", "generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Reconciling", "status": "True", "reason": "", "message": ""}]}}),
            json!({"kind": "Fleet", "metadata": {"name": "f", "generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Reconciling", "status": "True", "reason": "Scaling", "message": ""}, {"type": "Ready", "status": "False", "reason": "Scaling", "message": "1 of 3 members Ready"}]}}),
        ];
        for c in &cases {
            let r = row(c, true);
            assert_eq!(r.state, RowState::Progressing, "{c}");
            assert!(!r.reason.is_empty() && !r.message.is_empty(), "{c}: {r:?}");
        }
        assert_eq!(row(&cases[4], true).message, "1 of 3 members Ready");
    }

    #[test]
    fn table_is_aligned_and_capped_with_waiting_rows_first() {
        let rows = vec![
            row(&obj(1, 1, "True", "False"), true),
            row(&obj(1, 1, "False", "True"), true),
            row(&obj(1, 1, "True", "False"), true),
        ];
        let since = [Duration::from_secs(75); 3];
        let t = render(&rows, &since, None);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].find("NAME"), lines[1].find("default/dev"));
        assert!(lines[1].contains("1m15s"), "{t}");
        let capped = render(&rows, &since, Some(1));
        assert!(
            capped.lines().nth(1).is_some_and(|l| l.contains("Stalled")),
            "{capped}"
        );
        assert!(
            capped.contains("and 2 object(s): 2 Ready not shown"),
            "{capped}"
        );
        assert_eq!(summary(&rows), "3 object(s): 2 Ready, 1 Stalled");
    }
}
