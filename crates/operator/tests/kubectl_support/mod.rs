//! The real `kubectl` against a served in-memory API server with the azlin CRDs, shared by
//! the kubectl tests. `scripts/install-test-tools.sh` puts kubectl in `.tools/bin` (found
//! there or on PATH).

use std::path::PathBuf;
use std::process::Output;

use azlin_kubemem::{ApiServer, Served};
use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Path of tool `name` from `.tools/bin` or PATH; fails the test with the install command
/// otherwise.
pub fn tool(name: &str) -> PathBuf {
    let local = root().join(".tools/bin").join(name);
    if local.is_file() {
        return local;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "`{name}` not found in .tools/bin or PATH: run `scripts/install-test-tools.sh` \
         (installs helm and kubectl into .tools/bin)"
    );
}

/// A served kubemem with the azlin CRDs (with admission) and a kubeconfig pointing at it.
pub struct Cluster {
    /// The in-memory API server.
    pub api: ApiServer,
    _served: Served,
    /// Kubeconfig, kubectl cache and HOME of this cluster.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Serves a new in-memory API server on loopback.
    pub async fn start() -> Self {
        let api = ApiServer::new();
        azlin_operator::embedded::register_azlin_crds(&api, true).expect("register CRDs");
        let served = api
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kubeconfig"), served.kubeconfig()).expect("kubeconfig");
        Self {
            api,
            _served: served,
            dir,
        }
    }

    /// A kubectl command with this cluster's kubeconfig and a private cache directory.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(tool("kubectl"));
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .current_dir(root())
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("run kubectl")
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `kubectl ... -o json`.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).expect("kubectl json")
    }
}
