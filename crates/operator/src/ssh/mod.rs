//! SSH access to VMs and the NFS mounts converged over it.
//!
//! - [`keys`]: ed25519 key pairs for the VM key Secret, host key fingerprints.
//! - [`executor`]: russh client with host key pinning, timeouts, retries and a
//!   bounded-concurrency [`SshRunner`].
//! - [`nfs`]: pure builders of the idempotent mount script and its report parser.
//! - [`layout`]: the storage template directories each mount makes sure of.
//! - [`sandbox`]: a fake VM root running the real mount script (the guest of `local`).
//! - `testing` (feature `testing`): a private real `sshd` for tests.
//!
//! [`apply_mounts`] ties them together for the AzlinVM controller.

pub mod executor;
pub mod keys;
pub mod layout;
pub mod nfs;
pub mod sandbox;
pub mod shell;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use executor::{
    CommandOutput, HostKeyPolicy, NoopObserver, SshCommand, SshConfig, SshError, SshObserver,
    SshPhase, SshRunner, SshTarget,
};
pub use layout::MountDirs;
pub use nfs::{
    MountPlan, MountResult, MountState, NfsMount, PlanError, ScriptEnv, SharedHome,
    build_mount_script, validate_mount_path,
};

/// Outcome of converging the mounts of one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOutcome {
    /// One result per desired mount (plan order), then removed mounts.
    pub results: Vec<MountResult>,
    /// Host key fingerprint the VM presented (store it when it was pinned on
    /// first contact).
    pub host_key_fingerprint: String,
    /// Exit status of the script (non-zero when any mount failed).
    pub exit_status: Option<u32>,
    /// The environment file's result: `Ok(what was done)` or `Err(why it failed)`;
    /// `Err` also when the script did not report on it.
    pub env: Result<String, String>,
}

impl MountOutcome {
    /// Whether every desired mount is mounted and every removal succeeded.
    pub fn all_converged(&self) -> bool {
        self.results.iter().all(|r| r.state != MountState::Failed)
    }
}

/// The environment file's result from the script's output.
pub fn env_result(stdout: &str, stderr: &str) -> Result<String, String> {
    nfs::parse_mount_report(stdout).env.unwrap_or_else(|| {
        let tail: String = stderr
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!(
            "the script did not report on the environment file: {tail}"
        ))
    })
}

/// Errors of [`apply_mounts`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// The plan is invalid (terminal until the spec changes).
    #[error("invalid mounts: {0}")]
    Plan(#[from] PlanError),
    /// SSH failed before the script could report.
    #[error(transparent)]
    Ssh(#[from] SshError),
}

impl MountError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            MountError::Plan(_) => false,
            MountError::Ssh(e) => e.is_transient(),
        }
    }
}

/// Builds the mount script for `plan`, runs it on `target` through `runner`
/// and returns per-mount results. Failures of individual mounts are results,
/// not errors; errors mean the script could not run at all.
pub async fn apply_mounts(
    runner: &SshRunner,
    target: &SshTarget,
    plan: &MountPlan,
    env: &ScriptEnv,
) -> Result<MountOutcome, MountError> {
    let script = build_mount_script(plan, env)?;
    let output = runner
        .run(target, &SshCommand::script_with(script, env.shell.clone()))
        .await?;
    Ok(MountOutcome {
        results: plan.interpret(&output.stdout, output.exit_status, &output.stderr),
        env: env_result(&output.stdout, &output.stderr),
        host_key_fingerprint: output.host_key_fingerprint,
        exit_status: output.exit_status,
    })
}
