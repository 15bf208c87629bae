//! The live table of `azlin-operator local`: one row per object with its phase and
//! conditions, and the rule that decides when the run is over.

use serde_json::Value;

/// What an object's conditions say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowState {
    /// Ready=True for the current generation.
    Ready,
    /// Stalled=True for the current generation.
    Stalled,
    /// Still converging (or no status yet).
    Progressing,
    /// No controller for this kind exists yet; not waited for.
    NoController,
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Kind.
    pub kind: String,
    /// `namespace/name`.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// Summary state.
    pub state: RowState,
    /// Reason of the deciding condition.
    pub reason: String,
    /// Message of the deciding condition.
    pub message: String,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The row of `obj`; `controlled` tells whether its kind has a controller.
pub fn row(obj: &Value, controlled: bool) -> Row {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or("default"),
        obj["metadata"]["name"].as_str().unwrap_or_default()
    );
    let phase = obj["status"]["phase"].as_str().unwrap_or("-").to_string();
    if !controlled {
        return Row {
            kind,
            name,
            phase,
            state: RowState::NoController,
            reason: "NoController".into(),
            message: "this kind has no controller yet; not waited for".into(),
        };
    }
    let generation = obj["metadata"]["generation"].as_i64();
    let observed = obj["status"]["observedGeneration"].as_i64();
    let current = generation.is_none() || generation == observed;
    let is_true = |c: Option<&Value>| c.is_some_and(|c| c["status"] == "True");
    let text = |c: Option<&Value>, key: &str| {
        c.and_then(|c| c[key].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let ready = condition(obj, "Ready");
    let stalled = condition(obj, "Stalled");
    let reconciling = condition(obj, "Reconciling");
    let (state, deciding) = if current && is_true(ready) {
        (RowState::Ready, ready)
    } else if current && is_true(stalled) {
        (RowState::Stalled, stalled)
    } else {
        (RowState::Progressing, reconciling.or(ready))
    };
    Row {
        kind,
        name,
        phase,
        state,
        reason: text(deciding, "reason"),
        message: text(deciding, "message"),
    }
}

/// True when every controlled object is Ready or Stalled.
pub fn settled(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.state != RowState::Progressing)
}

/// True when every controlled object is Ready.
pub fn all_ready(rows: &[Row]) -> bool {
    rows.iter()
        .all(|r| matches!(r.state, RowState::Ready | RowState::NoController))
}

/// Renders rows as an aligned text table.
pub fn render(rows: &[Row]) -> String {
    let state = |s: RowState| match s {
        RowState::Ready => "Ready",
        RowState::Stalled => "Stalled",
        RowState::Progressing => "Progressing",
        RowState::NoController => "-",
    };
    let mut lines = vec![[
        "KIND".to_string(),
        "NAME".to_string(),
        "PHASE".to_string(),
        "STATE".to_string(),
        "REASON".to_string(),
        "MESSAGE".to_string(),
    ]];
    for r in rows {
        let mut message = r.message.clone();
        if message.chars().count() > 80 {
            message = message.chars().take(77).collect::<String>() + "...";
        }
        lines.push([
            r.kind.clone(),
            r.name.clone(),
            r.phase.clone(),
            state(r.state).to_string(),
            r.reason.clone(),
            message,
        ]);
    }
    let mut widths = [0usize; 6];
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
        assert_eq!(
            row(&obj(3, 2, "True", "False"), true).state,
            RowState::Progressing
        );
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
    fn kinds_without_controller_are_not_waited_for() {
        let r = row(&json!({"kind": "Backup", "metadata": {"name": "b"}}), false);
        assert_eq!(r.state, RowState::NoController);
        assert!(settled(std::slice::from_ref(&r)));
        assert!(all_ready(&[r]));
    }

    #[test]
    fn table_is_aligned() {
        let t = render(&[row(&obj(1, 1, "True", "False"), true)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("NAME"), lines[1].find("default/dev"));
    }
}
