//! `azlin-operator run`: the operator process as it runs in a cluster — telemetry, admin
//! server, leader election and every controller, with graceful shutdown on SIGTERM.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::controllers;
use crate::guest::GuestAccess;
use crate::reconcile::context::arm_client_from_settings;
use crate::reconcile::{ContextBuilder, ControllerSettings};
use crate::runtime::admin::{AdminError, AdminServer};
use crate::runtime::leader::{LeaderElector, LeaderError, LeadershipEnd, LeaseConfig, run_gated};
use crate::runtime::metrics::Metrics;
use crate::runtime::readiness::Readiness;
use crate::runtime::settings::Settings;
use crate::runtime::{shutdown, telemetry};
use crate::ssh::SshConfig;
use azlin_arm_emulator::{Emulator, EmulatorConfig, EmulatorError, EmulatorHandle};

/// Why the operator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// No Kubernetes configuration or connection.
    #[error("cannot connect to Kubernetes (kubeconfig or in-cluster config): {0}")]
    Kube(#[from] kube::Error),
    /// The in-process emulator failed to start.
    #[error("cannot start the in-process emulator: {0}")]
    Emulator(#[from] EmulatorError),
    /// Invalid Azure settings or credentials.
    #[error("{0}")]
    Controllers(#[from] crate::reconcile::Error),
    /// The admin server failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Leader election failed or the lease was lost.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The guest sandbox directory could not be created.
    #[error("cannot create the guest sandbox: {0}")]
    Sandbox(std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs the operator until SIGTERM/Ctrl-C (returns `Ok`) or a fatal error, including the
/// loss of the leader lease (the pod then restarts and stands by again).
pub async fn run(settings: Settings) -> Result<(), OperatorError> {
    telemetry::init(&settings.log_level, settings.log_format)?;
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone()).map_err(OperatorError::Signals)?;

    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let admin = AdminServer::bind(settings.admin_addr, readiness.clone(), metrics.clone()).await?;
    tracing::info!(addr = %admin.local_addr(), "admin server listening");
    let admin_task = tokio::spawn(admin.serve(token.clone()));

    let client = kube::Client::try_default().await?;
    let emulator: Option<EmulatorHandle> = if settings.emulator {
        let handle = Emulator::start(EmulatorConfig::default()).await?;
        tracing::info!(url = %handle.base_url(), "in-process ARM emulator started");
        Some(handle)
    } else {
        None
    };
    let emulator_url = match (&emulator, &settings.emulator_url) {
        (Some(handle), _) => Some(handle.base_url()),
        (None, Some(url)) => Some(url.as_str().trim_end_matches('/').to_string()),
        (None, None) => None,
    };
    let arm = arm_client_from_settings(&settings, emulator_url.as_deref())?;
    let ssh = SshConfig {
        max_concurrency: usize::from(settings.ssh_concurrency),
        ..SshConfig::default()
    };
    let mut builder = ContextBuilder::new(client.clone(), arm)
        .metrics(metrics.clone())
        .settings(controller_settings(&settings, emulator_url.is_some()))
        .ssh_config(ssh);
    if let Some(dir) = &settings.guest_sandbox {
        if emulator_url.is_none() {
            return Err(OperatorError::Controllers(crate::reconcile::Error::Config(
                "--guest-sandbox works only with --emulator or --emulator-url".into(),
            )));
        }
        std::fs::create_dir_all(dir).map_err(OperatorError::Sandbox)?;
        builder = builder.guest(GuestAccess::sandbox(dir).map_err(OperatorError::Sandbox)?);
    }
    let ctx = builder.build();

    let elector = if settings.leader_election {
        let config = LeaseConfig::from_settings(&settings, client.default_namespace());
        Some(
            LeaderElector::new(client.clone(), config)?
                .with_metrics(metrics.clone())
                .with_readiness(&readiness),
        )
    } else {
        None
    };
    let controllers_ctx = Arc::clone(&ctx);
    let work_readiness = readiness.clone();
    let outcome = run_gated(elector, token.clone(), move |work_token| async move {
        if let Err(e) = controllers::run(controllers_ctx, work_token, work_readiness).await {
            tracing::error!(error = %e, "controllers stopped");
        }
    })
    .await;
    token.cancel();
    if let Ok(Err(e)) = admin_task.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    if let Some(emulator) = emulator
        && let Err(e) = emulator.shutdown().await
    {
        tracing::warn!(error = %e, "emulator shutdown failed");
    }
    match outcome? {
        LeadershipEnd::Shutdown => tracing::info!("shut down"),
        LeadershipEnd::WorkFinished => tracing::warn!("controllers finished on their own"),
    }
    Ok(())
}

/// The controllers' settings: the flags, with the short requeue intervals of `local` when
/// Azure is an emulator (whose operations finish in milliseconds).
fn controller_settings(settings: &Settings, emulated: bool) -> ControllerSettings {
    let flags = ControllerSettings::from_runtime(settings);
    if !emulated {
        return flags;
    }
    ControllerSettings {
        namespace: flags.namespace,
        ssh_port: flags.ssh_port,
        concurrency: flags.concurrency,
        instance: flags.instance,
        ..ControllerSettings::fast()
    }
    .with_intervals(settings)
}
