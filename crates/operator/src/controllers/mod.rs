//! The controllers, one folder per kind, each on the shared reconcile layer
//! ([`crate::reconcile`]): `mod.rs` (what it watches and its [`Reconciled`] impl),
//! `observe.rs` (reads), `plan.rs` (pure decisions; `cleanup.rs` while deleting),
//! `apply.rs` (writes) and `status.rs`.
//!
//! [`run`] runs every controller until shutdown on one set of shared caches.
//!
//! [`Reconciled`]: crate::reconcile::Reconciled

pub mod azlinvm;
pub mod backup;
pub mod fleet;
pub mod sharedstorage;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::infra::janitor;
use crate::reconcile::{Context, Error};
use crate::runtime::readiness::Readiness;
use crate::runtime::watches::WatchCheck;

/// Kinds that have a controller.
pub const KINDS: &[&str] = &["AzlinVM", "SharedStorage", "Fleet", "Backup"];

/// Runs every controller until `shutdown` is cancelled and in-flight reconciles finished.
/// Each controller registers a readiness gate that turns ready once the caches synced, and
/// each cache's watch one that is ready while the watch can be trusted.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    readiness: Readiness,
) -> Result<(), Error> {
    let mut caches = ctx.take_cache_set().ok_or_else(|| {
        Error::Config("the controllers of this context are already running".into())
    })?;
    // Watches are checked as often as work in progress is looked at (at least every 30 s);
    // each reports whether it can be trusted to `/readyz`.
    caches.check_watches(WatchCheck {
        every: (ctx.settings.progress_requeue * 3)
            .clamp(Duration::from_millis(200), Duration::from_secs(30)),
        readiness: Some(readiness.clone()),
    });
    // Subscribe every controller before the caches start, so none misses the first list.
    let vm = azlinvm::controller(&ctx, &caches);
    let storage = sharedstorage::controller(&ctx, &caches);
    let fleet = fleet::controller(&ctx, &caches);
    let backups = backup::controller(&ctx, &caches);
    // The managed network and groups nothing uses any more are swept after deletions and
    // at the resync interval.
    let removed = Arc::new(tokio::sync::Notify::new());
    let removals = futures::future::join3(
        janitor::forward_removals(caches.vms(), ctx.caches.vms.clone(), Arc::clone(&removed)),
        janitor::forward_removals(
            caches.storages(),
            ctx.caches.storages.clone(),
            Arc::clone(&removed),
        ),
        janitor::forward_removals(
            caches.fleets(),
            ctx.caches.fleets.clone(),
            Arc::clone(&removed),
        ),
    );
    let watches = caches.run(ctx.client.clone(), ctx.settings.namespace.clone());
    let controllers = futures::future::join4(
        crate::reconcile::driver::run(
            vm,
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.register("AzlinVM controller"),
        ),
        crate::reconcile::driver::run(
            storage,
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.register("SharedStorage controller"),
        ),
        crate::reconcile::driver::run(
            fleet,
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.register("Fleet controller"),
        ),
        crate::reconcile::driver::run(
            backups,
            Arc::clone(&ctx),
            shutdown.clone(),
            readiness.register("Backup controller"),
        ),
    );
    let janitor = janitor::run(
        Arc::clone(&ctx),
        async {
            removals.await;
        },
        removed,
        ctx.settings.resync_interval,
        shutdown.clone(),
    );
    // The caches serve the controllers until they stopped; then they stop too.
    tokio::select! {
        _ = futures::future::join(controllers, janitor) => {}
        () = watches => tracing::warn!("the cache watches ended"),
    }
    Ok(())
}
