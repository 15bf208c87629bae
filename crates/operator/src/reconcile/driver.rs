//! Runs one kind's controller on the layer: the kube-runtime `Controller` around the generic
//! reconcile (finalizer → observe → plan → apply → status → events → requeue).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::{Action, Config};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::caches::{Guarded, object_name};
use super::error::{Class, Error};
use super::events::Event;
use super::status::{self, finish, health_of, write_status};
use super::{Context, Cx, KindStatus, Outcome, PlanCx, Reconciled, Requeue};
use crate::api::common::AzureIdentity;
use crate::api::conditions::Health;
use crate::runtime::readiness::ReadyGate;

/// The backoff key of `obj`: `Kind:namespace/name`.
pub fn backoff_key<K: Reconciled>(obj: &K) -> String {
    format!("{}:{}", K::KIND, object_name(obj))
}

/// The pacing flow of `obj`'s ARM requests: its controlling owner's, else its own.
pub fn pacing_flow<K: Reconciled>(obj: &K) -> String {
    let meta = obj.meta();
    match meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        Some(o) => format!(
            "{}:{}/{}",
            o.kind,
            meta.namespace.as_deref().unwrap_or(""),
            o.name
        ),
        None => backoff_key(obj),
    }
}

/// Runs `controller` (built by the kind on the shared caches) until `shutdown`: objects that
/// do not deserialize are logged and skipped, every other object goes through
/// [`reconcile`]; `gate` turns ready once the caches synced.
pub async fn run<K: Reconciled>(
    controller: Controller<Guarded<K>>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    gate: ReadyGate,
) {
    let kind = K::KIND;
    let ready = {
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = ctx.caches.wait_ready() => {
                    gate.set_ready();
                    tracing::info!(kind, "caches synced; controller ready");
                }
                () = shutdown.cancelled() => {}
            }
            gate
        }
    };
    let reconciler = move |obj: Arc<Guarded<K>>,
                           ctx: Arc<Context>|
          -> BoxFuture<'static, Result<Action, Error>> {
        match &obj.0 {
            Ok(k) => {
                let k = Arc::new(k.clone());
                Box::pin(async move {
                    let _timer = ctx.metrics.reconcile_timer(kind);
                    // ARM's budget is shared fairly between owners: a Fleet's members are one
                    // flow, so a thousand of them cannot starve one VM's change.
                    let flow = pacing_flow(k.as_ref());
                    let result = azlin_arm::pacing::with_flow(flow, reconcile(k, &ctx)).await;
                    // A reconcile that only learned the next list is not due yet did nothing.
                    if !matches!(result, Err(Error::SnapshotDue(_))) {
                        ctx.stats.record(kind);
                    }
                    result
                })
            }
            Err(invalid) => {
                tracing::warn!(kind, object = %object_name(&*obj), error = %invalid.error, "skipping an object that cannot be read");
                Box::pin(async { Ok(Action::await_change()) })
            }
        }
    };
    let error_policy = move |obj: Arc<Guarded<K>>, error: &Error, ctx: Arc<Context>| {
        if let Error::SnapshotDue(due) = error {
            return Action::requeue(*due);
        }
        let key = format!("{kind}:{}", object_name(&*obj));
        ctx.metrics
            .record_reconcile_error(kind, error.metric_reason());
        tracing::info!(kind, object = %key, reason = %error.reason(), error = %error, "reconcile failed; retrying");
        Action::requeue(ctx.backoff().after_error(&key, error))
    };
    let stream = controller
        .with_config(Config::default().concurrency(ctx.settings.concurrency))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .reconcile_all_on(ctx.resync_stream())
        .run(reconciler, error_policy, Arc::clone(&ctx))
        .for_each(|result| {
            match result {
                Ok((obj, _)) => tracing::debug!(kind, object = %obj.name, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::debug!(kind, error = %e, "controller event"),
            }
            futures::future::ready(())
        });
    let (gate, ()) = futures::join!(ready, stream);
    drop(gate);
    tracing::info!(kind, "controller stopped");
}

/// How a reconcile of one object ended, before its status is written.
enum Ended<K: Reconciled> {
    /// Observe, plan and (if any) the step's write succeeded.
    Done(Outcome<K>),
    /// Observe failed: nothing new is known.
    ObserveFailed(Error),
    /// The step's write failed; the plan's status describes what was attempted.
    ApplyFailed(Outcome<K>, Error),
}

/// Reconciles one object: finalizer, then observe → plan → apply, then exactly one status
/// write (only when it changed), events, and the requeue the plan or the error asks for.
pub async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or_else(|| Error::InvalidSpec {
        field: "metadata.namespace".into(),
        message: format!("a {} must be namespaced", K::KIND),
    })?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = backoff_key(obj.as_ref());
    let deleting = obj.meta().deletion_timestamp.is_some();
    match K::FINALIZER {
        Some(f) => {
            let has = obj.finalizers().iter().any(|x| x == f);
            if !deleting && !has {
                add_finalizer(&api, obj.as_ref(), f).await?;
                // The finalizer change is a trigger of its own.
                return Ok(Action::await_change());
            }
            if deleting && !has {
                return Ok(Action::await_change());
            }
        }
        None if deleting => return Ok(Action::await_change()),
        None => {}
    }
    ctx.caches.wait_ready().await;
    let now = ctx.clock.now();
    let cx = Cx {
        ctx,
        namespace,
        now,
        key: key.clone(),
        deleting,
        recorded_identity: obj.status().and_then(KindStatus::azure_identity),
        used_identity: std::sync::Mutex::new(None),
    };
    let plan_cx = PlanCx {
        now,
        settings: &ctx.settings,
        deleting,
    };
    let ended = match obj.observe(&cx).await {
        // Nothing new was seen: look again when the next list is due (the error policy
        // requeues for then), status untouched, still needing a list newer than before.
        Err(e @ Error::SnapshotDue(_)) => return Err(e),
        Err(e) => Ended::ObserveFailed(e),
        Ok(seen) => {
            let plan = obj.plan(&seen, &plan_cx);
            let mut out = plan.out;
            match plan.step {
                None => Ended::Done(out),
                Some(step) => {
                    tracing::debug!(kind = K::KIND, object = %key, ?step, "applying");
                    match obj.apply(&cx, &seen, step, &mut out).await {
                        Ok(()) => Ended::Done(out),
                        Err(e) => Ended::ApplyFailed(out, e),
                    }
                }
            }
        }
    };
    // The identity the object's resources are created with is recorded before they are:
    // with the first status written by a reconcile that used ARM.
    let used = cx
        .used_identity
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let record = used.filter(|_| !deleting && cx.recorded_identity.is_none());
    // What this object sees of Azure next time: anything younger than a resync while it is
    // at rest (its plan waits for the resync, a schedule or a change); after it wrote, or
    // while it waits for Azure, only what was read afterwards.
    let rests = matches!(&ended, Ended::Done(out)
        if out.released || matches!(out.requeue, Requeue::Resync | Requeue::At(_)));
    let action =
        finish_reconcile(obj.as_ref(), &api, ctx, &key, now, deleting, ended, record).await;
    let at_rest = azlin_arm::pacing::writes_in_flow() == 0 && rests && action.is_ok();
    if at_rest {
        ctx.inventory.at_rest(&key);
    } else {
        ctx.inventory.needs_fresh(&key);
    }
    action
}

#[allow(clippy::too_many_arguments)]
async fn finish_reconcile<K: Reconciled>(
    obj: &K,
    api: &Api<K>,
    ctx: &Context,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
    deleting: bool,
    ended: Ended<K>,
    record: Option<AzureIdentity>,
) -> Result<Action, Error> {
    let old = obj.status().cloned().unwrap_or_default();
    let generation = obj.meta().generation;
    let recorder = ctx.recorder(K::KIND);
    let reference = obj.object_ref(&());
    let (mut status, health, events, action) = match ended {
        Ended::Done(out) => {
            if out.released {
                if let Some(f) = K::FINALIZER {
                    remove_finalizer(api, obj, f).await?;
                }
                for e in &out.events {
                    recorder.publish(&reference, e, now).await;
                }
                ctx.backoff().reset(key);
                return Ok(Action::await_change());
            }
            let action = action_for(ctx, key, &out.requeue, now);
            if out.requeue != Requeue::Backoff {
                ctx.backoff().reset(key);
            }
            let mut events = out.events;
            if matches!(out.health, Health::Stalled { .. }) {
                events.extend(warning_if_new(&old, &out.health));
            }
            (out.status, out.health, events, action)
        }
        Ended::ObserveFailed(e) => {
            let (health, action) = error_health(ctx, key, &e);
            ctx.metrics
                .record_reconcile_error(K::KIND, e.metric_reason());
            log_error::<K>(key, &e);
            // A transient failure to look says nothing new: an object Ready for this
            // generation stays Ready (VMs keep relying on a storage that is Ready).
            let keep = e.class() == Class::Transient && status::is_ready_for(&old, generation);
            let mut status = old.clone();
            let health = if keep {
                health_of(&old).unwrap_or(health)
            } else {
                status.set_error_phase(e.class() == Class::NeedsChange, deleting);
                health
            };
            let events = warning_if_new(&old, &health);
            (status, health, events, action)
        }
        Ended::ApplyFailed(out, e) => {
            let (health, action) = error_health(ctx, key, &e);
            ctx.metrics
                .record_reconcile_error(K::KIND, e.metric_reason());
            log_error::<K>(key, &e);
            let mut status = out.status;
            status.set_error_phase(e.class() == Class::NeedsChange, deleting);
            let events = warning_if_new(&old, &health);
            (status, health, events, action)
        }
    };
    if let Some(identity) = &record {
        status.record_azure_identity(identity);
    }
    finish(&mut status, &health, generation, now);
    let written = write_status(api, &obj.name_any(), obj.status(), &status).await;
    for e in &events {
        recorder.publish(&reference, e, now).await;
    }
    written?;
    Ok(action)
}

fn log_error<K: Reconciled>(key: &str, e: &Error) {
    match e.class() {
        Class::NeedsChange => {
            tracing::warn!(kind = K::KIND, object = %key, reason = %e.reason(), error = %e, "stalled until something changes")
        }
        Class::Transient => {
            tracing::info!(kind = K::KIND, object = %key, reason = %e.reason(), error = %e, "transient failure; retrying")
        }
    }
}

/// The health and next action after `e`.
fn error_health(ctx: &Context, key: &str, e: &Error) -> (Health, Action) {
    match e.class() {
        Class::NeedsChange => (
            Health::stalled(&e.reason(), e.message()),
            Action::requeue(
                ctx.backoff()
                    .stalled_delay(key, ctx.settings.stalled_recheck),
            ),
        ),
        Class::Transient => (
            Health::progressing(&e.reason(), format!("{} (retrying)", e.message())),
            Action::requeue(ctx.backoff().after_error(key, e)),
        ),
    }
}

/// A Warning event for an error health, when the conditions did not already say so.
fn warning_if_new<S: KindStatus>(old: &S, health: &Health) -> Vec<Event> {
    if health_of(old).as_ref() == Some(health) {
        return Vec::new();
    }
    match health {
        Health::Stalled { reason, message } | Health::Progressing { reason, message } => {
            vec![Event::warning(reason, message.clone())]
        }
        Health::Ready { .. } => Vec::new(),
    }
}

/// The controller action for `requeue`.
fn action_for(
    ctx: &Context,
    key: &str,
    requeue: &Requeue,
    now: chrono::DateTime<chrono::Utc>,
) -> Action {
    let s = &ctx.settings;
    let delay = match requeue {
        Requeue::Resync => {
            let interval = ctx.inventory.resync_interval();
            ctx.metrics.set_resync_interval(interval);
            interval
        }
        Requeue::Progress => s.progress_requeue,
        Requeue::After(d) => *d,
        Requeue::At(t) => (*t - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(ctx.inventory.resync_interval()),
        Requeue::Backoff => ctx.backoff().next_delay(key),
        Requeue::Now => Duration::ZERO,
    };
    Action::requeue(delay)
}

/// Adds finalizer `f` with a JSON patch guarded by a test of the current list, so a
/// concurrent change makes it fail (and retry) instead of overwriting.
async fn add_finalizer<K: Reconciled>(api: &Api<K>, obj: &K, f: &str) -> Result<(), Error> {
    let patch = match &obj.meta().finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [f]},
        ]),
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": f},
        ]),
    };
    patch_json(api, obj, patch).await
}

/// Removes finalizer `f`, guarded by a test of its position.
async fn remove_finalizer<K: Reconciled>(api: &Api<K>, obj: &K, f: &str) -> Result<(), Error> {
    let Some(i) = obj.finalizers().iter().position(|x| x == f) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let patch = json!([
        {"op": "test", "path": path, "value": f},
        {"op": "remove", "path": path},
    ]);
    match patch_json(api, obj, patch).await {
        // Already gone with the object: nothing left to release.
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => Ok(()),
        other => other,
    }
}

async fn patch_json<K: Reconciled>(
    api: &Api<K>,
    obj: &K,
    patch: serde_json::Value,
) -> Result<(), Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Finalizer(e.to_string()))?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(ae) if ae.code == 422 || ae.code == 409 => {
            Error::Finalizer(format!("the object changed meanwhile: {}", ae.message))
        }
        other => Error::Kube(other),
    })?;
    Ok(())
}
