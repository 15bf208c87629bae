//! Kubernetes events (`events.k8s.io/v1`) about the objects the controllers reconcile.
//!
//! A reconcile buffers its events ([`Event`]) and the layer publishes them after the step's
//! write. Repeats of the same event (same object, type, reason **and note**) within a few
//! minutes become one Event with a series count, as `kubectl describe` shows `(x3)`; a new
//! note is a new Event, so the message always says what happened this time.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::Mutex;

use super::status::timestamp;

/// How long a published event can still be continued as a series.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// Longest note Kubernetes accepts (1 KiB).
const MAX_NOTE: usize = 1024;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to publish about the reconciled object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason, e.g. `Created`.
    pub reason: String,
    /// What happened, for humans.
    pub note: String,
}

impl Event {
    /// A Normal event.
    pub fn normal(reason: &str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.to_string(),
            note: note.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: &str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: note.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    regarding: (Option<String>, Option<String>, Option<String>),
    type_: EventType,
    reason: String,
    note: String,
}

#[derive(Clone, Debug)]
struct Published {
    name: String,
    namespace: String,
    count: i32,
    last: DateTime<Utc>,
}

/// Publishes events for one controller (`reportingController`), one per operator process.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<Key, Published>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

fn truncate(mut note: String) -> String {
    if note.len() > MAX_NOTE {
        let mut end = MAX_NOTE;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    note
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `azlin-operator/azlinvm`) from `instance`
    /// (the pod name; the controller name when unknown).
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        Self {
            client,
            instance: instance.unwrap_or_else(|| controller.clone()),
            controller,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes `event` about `regarding` at `now`. Failures are logged, never fatal: an
    /// event is a courtesy, the status is the record.
    pub async fn publish(&self, regarding: &ObjectReference, event: &Event, now: DateTime<Utc>) {
        if let Err(e) = self.try_publish(regarding, event, now).await {
            tracing::warn!(error = %e, reason = %event.reason, "publishing an event failed");
        }
    }

    async fn try_publish(
        &self,
        regarding: &ObjectReference,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<(), kube::Error> {
        let note = truncate(event.note.clone());
        let key = Key {
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
            type_: event.type_,
            reason: event.reason.clone(),
            note: note.clone(),
        };
        let ttl = chrono::Duration::from_std(SERIES_TTL).unwrap_or(chrono::Duration::MAX);
        let mut published = self.published.lock().await;
        published.retain(|_, p| p.last + ttl > now);
        let micro = MicroTime(timestamp(now));
        if let Some(p) = published.get_mut(&key) {
            let count = p.count + 1;
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &p.namespace);
            let patch = serde_json::json!({
                "series": EventSeries { count, last_observed_time: micro },
            });
            api.patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            p.count = count;
            p.last = now;
            return Ok(());
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        // Unique even for several events of one reconcile (they share its time).
        let name = format!(
            "{}.{:x}{:08x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.timestamp_nanos_opt().unwrap_or_default(),
            rand::random::<u32>()
        );
        let k8s = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(event.reason.clone()),
            reason: Some(event.reason.clone()),
            note: Some(note),
            event_time: Some(micro),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(event.type_.as_str().to_string()),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &k8s).await?;
        published.insert(
            key,
            Published {
                name,
                namespace,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_at_a_char_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_NOTE);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
