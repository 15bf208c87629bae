//! How the AzlinVM controller reaches a VM's guest OS to converge its NFS mounts.
//!
//! - [`GuestAccess::Ssh`]: the real thing. russh to the VM's address on the operator's
//!   `--ssh-port` with the VM's key; the host key is pinned on first contact (the caller
//!   stores the returned fingerprint in `status.hostKeyFingerprint`) and a mismatch is refused.
//! - [`GuestAccess::Sandbox`]: **for `azlin-operator local` only**, where there are no real
//!   VMs. The same mount script runs locally with `sh` against a per-VM sandbox root under a
//!   directory, with `mount`, `umount` and the package installer replaced by the recording
//!   fakes of [`crate::ssh::sandbox::MountSandbox`]; all VMs share one set of "share"
//!   directories, like VMs mounting one Azure Files share. The host fingerprint is a stable
//!   fake derived from the VM id. Never use it against real machines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine;
use russh::keys::PrivateKey;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::ssh::sandbox::MountSandbox;
use crate::ssh::{
    HostKeyPolicy, MountError, MountOutcome, MountPlan, ScriptEnv, SshError, SshRunner, SshTarget,
    apply_mounts, build_mount_script,
};

/// One VM as the guest access sees it.
#[derive(Clone)]
pub struct GuestVm {
    /// Stable identity of the VM (Azure's `vmId`).
    pub id: String,
    /// Address to connect to.
    pub host: String,
    /// Admin user.
    pub user: String,
    /// Admin private key.
    pub key: Arc<PrivateKey>,
    /// Host key check (from the pin in the key Secret).
    pub host_key: HostKeyPolicy,
}

impl std::fmt::Debug for GuestVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestVm")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("user", &self.user)
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

/// Guest OS access.
#[derive(Clone, Debug)]
pub enum GuestAccess {
    /// Real SSH.
    Ssh {
        /// Bounded-concurrency SSH runner.
        runner: SshRunner,
        /// Port connected to on every VM.
        port: u16,
        /// Where the script runs on the VM (production: real `mount` via `sudo`).
        env: Arc<ScriptEnv>,
        /// Log in as this user instead of the VM's admin user (`None` in production; a
        /// private test sshd only accepts the user running it).
        login_user: Option<String>,
    },
    /// Local sandboxes, for `azlin-operator local` only (see the module docs).
    Sandbox(Arc<SandboxGuests>),
}

impl GuestAccess {
    /// SSH on `port` with the production script environment.
    pub fn ssh(runner: SshRunner, port: u16) -> Self {
        GuestAccess::Ssh {
            runner,
            port,
            env: Arc::new(ScriptEnv::production()),
            login_user: None,
        }
    }

    /// Local sandboxes under `dir` (created when missing). For `azlin-operator local` only.
    pub fn sandbox(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(GuestAccess::Sandbox(Arc::new(SandboxGuests::new(
            dir.into(),
        )?)))
    }

    /// Converges `plan` on `vm` and reports per-mount results and the host fingerprint.
    pub async fn apply_mounts(
        &self,
        vm: &GuestVm,
        plan: &MountPlan,
    ) -> Result<MountOutcome, MountError> {
        match self {
            GuestAccess::Ssh {
                runner,
                port,
                env,
                login_user,
            } => {
                let target = SshTarget {
                    host: vm.host.clone(),
                    port: *port,
                    user: login_user.clone().unwrap_or_else(|| vm.user.clone()),
                    key: Arc::clone(&vm.key),
                    host_key: vm.host_key.clone(),
                };
                apply_mounts(runner, &target, plan, env).await
            }
            GuestAccess::Sandbox(guests) => guests.apply_mounts(vm, plan).await,
        }
    }
}

/// The sandboxes of [`GuestAccess::Sandbox`], one per VM id, sharing share storage.
pub struct SandboxGuests {
    dir: PathBuf,
    shares: MountSandbox,
    vms: Mutex<HashMap<String, Arc<MountSandbox>>>,
}

impl std::fmt::Debug for SandboxGuests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxGuests")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The fake host key fingerprint of a sandboxed VM: `SHA256:` + base64 of SHA-256 of its id.
pub fn sandbox_fingerprint(vm_id: &str) -> String {
    let digest = Sha256::digest(format!("azlin-sandbox-host-key:{vm_id}").as_bytes());
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

impl SandboxGuests {
    /// Sandboxes under `dir`.
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let shares = MountSandbox::new_in(&dir, None)?;
        Ok(Self {
            dir,
            shares,
            vms: Mutex::new(HashMap::new()),
        })
    }

    /// The directory holding the sandboxes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox of VM `vm_id`, if it was contacted.
    pub fn get(&self, vm_id: &str) -> Option<Arc<MountSandbox>> {
        self.vms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(vm_id)
            .cloned()
    }

    /// The sandbox of `vm`, created on first contact with its admin user provisioned as
    /// cloud-init would (home with the VM key in `authorized_keys`).
    fn sandbox(&self, vm: &GuestVm) -> std::io::Result<Arc<MountSandbox>> {
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = vms.get(&vm.id) {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(MountSandbox::new_in(&self.dir, Some(&self.shares))?);
        let public = vm
            .key
            .public_key()
            .to_openssh()
            .map_err(std::io::Error::other)?;
        s.provision_admin(&vm.user, &public)?;
        vms.insert(vm.id.clone(), Arc::clone(&s));
        Ok(s)
    }

    async fn apply_mounts(
        &self,
        vm: &GuestVm,
        plan: &MountPlan,
    ) -> Result<MountOutcome, MountError> {
        let fingerprint = sandbox_fingerprint(&vm.id);
        if let HostKeyPolicy::Require(expected) = &vm.host_key
            && *expected != fingerprint
        {
            return Err(SshError::HostKeyMismatch {
                expected: expected.clone(),
                actual: fingerprint,
            }
            .into());
        }
        let failed = |message: String| {
            MountError::Ssh(SshError::CommandFailed {
                exit: None,
                signal: None,
                stderr: message,
            })
        };
        let sandbox = self
            .sandbox(vm)
            .map_err(|e| failed(format!("cannot create the sandbox: {e}")))?;
        let script = build_mount_script(plan, &sandbox.script_env())?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run sh: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|e| failed(format!("cannot write the script: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| failed(format!("sh failed: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let exit = output.status.code().and_then(|c| u32::try_from(c).ok());
        Ok(MountOutcome {
            results: plan.interpret(&stdout, exit, &stderr),
            env: crate::ssh::env_result(&stdout, &stderr),
            host_key_fingerprint: fingerprint,
            exit_status: exit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::keys::generate_ed25519;
    use crate::ssh::{MountState, NfsMount};

    #[tokio::test]
    async fn sandbox_runs_the_real_script_and_pins_a_stable_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let guest = GuestAccess::sandbox(dir.path().join("vms")).expect("sandbox");
        let key = generate_ed25519("t")
            .expect("key")
            .private_key()
            .expect("pk");
        let vm = GuestVm {
            id: "vm-1".into(),
            host: "127.0.0.1".into(),
            user: "azureuser".into(),
            key: Arc::new(key),
            host_key: HostKeyPolicy::PinOnFirstContact,
        };
        let plan = MountPlan {
            mounts: vec![NfsMount {
                source: "acct.file.core.windows.net:/acct/share".into(),
                path: "/mnt/data".into(),
                read_only: false,
                dirs: Default::default(),
            }],
            shared_home: None,
            env: None,
        };
        let out = guest.apply_mounts(&vm, &plan).await.expect("mounts");
        assert_eq!(out.results.len(), 1);
        assert_eq!(out.results[0].state, MountState::Mounted, "{out:?}");
        assert_eq!(out.host_key_fingerprint, sandbox_fingerprint("vm-1"));
        let GuestAccess::Sandbox(guests) = &guest else {
            panic!("sandbox expected")
        };
        let sb = guests.get("vm-1").expect("sandbox exists");
        assert!(sb.mounted("/mnt/data").is_some());
        assert!(sb.root().starts_with(dir.path()));

        let pinned = GuestVm {
            host_key: HostKeyPolicy::Require("SHA256:other".into()),
            ..vm
        };
        let err = guest
            .apply_mounts(&pinned, &plan)
            .await
            .expect_err("mismatch");
        assert!(matches!(
            err,
            MountError::Ssh(SshError::HostKeyMismatch { .. })
        ));
    }
}
