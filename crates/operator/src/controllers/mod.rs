//! The controllers: one `kube::runtime::Controller` per kind, sharing a [`Context`].
//!
//! - [`context`]: [`Context`] and [`ContextBuilder`] (Kubernetes client, ARM access with
//!   per-namespace tenant credentials, metrics, guest access, event recorders, settings).
//! - [`error`]: the typed [`Error`], its reason/terminal classification and the backoff policy.
//! - [`naming`]: deterministic Azure names, ownership tags and the adoption rule.
//! - [`status`]: status written only when changed; event publishing.
//! - [`guest`]: SSH (or, for `local`, sandboxed) access to a VM's guest OS.
//! - [`observe`]: metrics adapters for the ARM client and the SSH runner.
//!
//! [`run`] runs every controller until shutdown. A kind's module provides
//! `run(ctx, shutdown, gate)` built on [`drive`].

pub mod azlinvm;
pub mod context;
pub mod error;
pub mod guest;
pub mod naming;
pub mod observe;
pub mod sharedstorage;
pub mod status;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::{Action, Config};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use context::{Context, ContextBuilder, ControllerSettings};
pub use error::Error;
pub use guest::GuestAccess;

use crate::runtime::readiness::{Readiness, ReadyGate};

/// Kinds that have a controller (the others are accepted by the API but not reconciled yet).
pub const KINDS: &[&str] = &["AzlinVM", "SharedStorage"];

/// Runs every controller until `shutdown` is cancelled and in-flight reconciles finished.
/// Each controller registers a readiness gate that turns ready after its cache synced.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    readiness: Readiness,
) -> Result<(), Error> {
    let controllers: Vec<BoxFuture<'static, ()>> = vec![
        Box::pin(azlinvm::run(
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.register("AzlinVM controller"),
        )),
        Box::pin(sharedstorage::run(
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.register("SharedStorage controller"),
        )),
    ];
    futures::future::join_all(controllers).await;
    Ok(())
}

/// `namespace/name` of an object, the key of its backoff state.
fn object_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Drives `controller` with `reconcile` until `shutdown`: objects that fail to deserialize are
/// logged and skipped, reconciles are timed and counted, failures go through the shared error
/// policy (terminal → wait for a change; transient → per-object exponential backoff), and
/// `gate` turns ready once the controller's cache synced.
pub async fn drive<K, F, Fut>(
    kind: &'static str,
    controller: Controller<DeserializeGuard<K>>,
    reconcile: F,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    gate: ReadyGate,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let store = controller.store();
    let ready = {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                r = store.wait_until_ready() => {
                    if r.is_ok() {
                        gate.set_ready();
                        tracing::info!(kind, "cache synced; controller ready");
                    }
                }
                () = shutdown.cancelled() => {}
            }
            gate
        }
    };
    let reconcile = Arc::new(reconcile);
    let reconciler = move |obj: Arc<DeserializeGuard<K>>, ctx: Arc<Context>| {
        let reconcile = Arc::clone(&reconcile);
        let key = object_key(obj.as_ref());
        let inner: Option<BoxFuture<'static, Result<Action, Error>>> = match &obj.0 {
            Ok(k) => Some(Box::pin(reconcile(Arc::new(k.clone()), Arc::clone(&ctx)))),
            Err(invalid) => {
                tracing::warn!(kind, object = %key, error = %invalid.error, "skipping an object that cannot be read");
                None
            }
        };
        async move {
            let _timer = ctx.metrics.reconcile_timer(kind);
            let result = match inner {
                Some(f) => f.await,
                None => Ok(Action::await_change()),
            };
            if result.is_ok() {
                ctx.backoff().reset(&key);
            }
            ctx.stats.record(kind);
            result
        }
    };
    let error_policy = move |obj: Arc<DeserializeGuard<K>>, error: &Error, ctx: Arc<Context>| {
        let key = object_key(obj.as_ref());
        ctx.metrics
            .record_reconcile_error(kind, error.metric_reason());
        let action = error::error_action(error, ctx.backoff(), &key);
        if error.is_terminal() {
            tracing::warn!(kind, object = %key, reason = %error.reason(), error = %error, "reconcile failed; waiting for a change");
        } else {
            tracing::info!(kind, object = %key, reason = %error.reason(), error = %error, ?action, "reconcile failed; retrying");
        }
        action
    };
    let stream = controller
        .with_config(Config::default().concurrency(ctx.settings.concurrency))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .reconcile_all_on(ctx.resync_stream())
        .run(reconciler, error_policy, Arc::clone(&ctx))
        .for_each(|result| {
            match result {
                Ok((obj, _)) => tracing::debug!(kind, object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::debug!(kind, error = %e, "controller event"),
            }
            futures::future::ready(())
        });
    let (gate, ()) = futures::join!(ready, stream);
    drop(gate);
    tracing::info!(kind, "controller stopped");
}
