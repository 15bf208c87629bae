//! The real `azlin-operator run` binary against the in-memory Kubernetes API served on
//! loopback: admin endpoints, reconciling with the in-process emulator, leader election
//! hand-over between two replicas, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use azlin_kubemem::ApiServer;
use azlin_operator::api::AzlinVM;
use azlin_operator::embedded::register_azlin_crds;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::Value;

/// A running operator process whose JSON log lines are collected.
struct Operator {
    child: Child,
    admin: String,
    logs: mpsc::Receiver<String>,
}

impl Operator {
    fn start(kubeconfig: &std::path::Path, identity: &str) -> Operator {
        Operator::start_with(kubeconfig, identity, &[])
    }

    fn start_with(kubeconfig: &std::path::Path, identity: &str, extra: &[&str]) -> Operator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_azlin-operator"))
            .args([
                "run",
                "--emulator",
                "--admin-addr=127.0.0.1:0",
                "--lease-namespace=default",
                "--lease-duration=3",
                "--lease-grace=1",
                "--log-format=json",
                "--log-level=info",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start azlin-operator run");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the operator logs its admin address within 30s");
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "admin server listening"
            {
                break format!("http://{}", v["addr"].as_str().expect("addr"));
            }
        };
        Operator {
            child,
            admin,
            logs: rx,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.admin);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            match reqwest::get(&url).await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "operator did not exit within 30s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn drain_logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The in-memory API with the azlin CRDs, served on loopback, and a kubeconfig file for it
/// (kept while the returned handles live).
fn serve_api(
    rt: &tokio::runtime::Runtime,
) -> (
    ApiServer,
    azlin_kubemem::Served,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let api = ApiServer::new();
    register_azlin_crds(&api, true).expect("CRDs");
    let served = rt
        .block_on(api.serve("127.0.0.1:0".parse().expect("addr")))
        .expect("serve the in-memory API");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, served.kubeconfig()).expect("kubeconfig");
    (api, served, dir, kubeconfig)
}

#[test]
fn run_binary_serves_admin_reconciles_hands_over_and_shuts_down() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // kube clients spawn their buffer worker on the ambient runtime.
    let _guard = rt.enter();
    let (api, _served, _dir, kubeconfig) = serve_api(&rt);

    let mut a = Operator::start(&kubeconfig, "replica-a");
    let (code, body) = a.get("/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    eventually(
        "replica A ready and leading",
        Duration::from_secs(30),
        || a.get("/readyz").0 == 200 && a.metric("azlin_leader") == Some(1.0),
    );

    let b = Operator::start(&kubeconfig, "replica-b");
    eventually(
        "replica B ready as a standby",
        Duration::from_secs(30),
        || b.get("/readyz").0 == 200,
    );
    assert_eq!(
        b.metric("azlin_leader").unwrap_or(0.0),
        0.0,
        "only one leader"
    );
    let leases: Api<Lease> = Api::namespaced(api.client(), "default");
    let holder = rt
        .block_on(leases.get("azlin-operator"))
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("replica-a"));

    // The leader reconciles against its in-process emulator.
    api.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev, namespace: default}\nspec: {resourceGroup: rg-e2e, location: westus2, size: Standard_D2s_v5}\n",
    )
    .expect("apply AzlinVM");
    let vms: Api<AzlinVM> = Api::namespaced(api.client(), "default");
    eventually(
        "AzlinVM Ready via the real binary",
        Duration::from_secs(60),
        || {
            rt.block_on(vms.get("dev")).ok().is_some_and(|vm| {
                vm.status.is_some_and(|s| {
                    azlin_operator::api::conditions::is_true(&s.conditions, "Ready")
                })
            })
        },
    );
    let (_, metrics) = a.get("/metrics");
    assert!(metrics.contains("azlin_reconcile_total"), "{metrics}");
    assert!(metrics.contains("azlin_arm_requests_total"), "{metrics}");

    // SIGTERM on the leader: clean exit, lease released, the standby takes over.
    let status = a.terminate();
    assert!(
        status.success(),
        "leader exited with {status}: {:?}",
        a.drain_logs()
    );
    eventually(
        "replica B takes over the lease",
        Duration::from_secs(30),
        || b.metric("azlin_leader") == Some(1.0),
    );
    let holder = rt
        .block_on(leases.get("azlin-operator"))
        .expect("lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("replica-b"));
}

/// Sharding: two replicas, each watching its own namespace with its own Lease (as two Helm
/// releases with `watchNamespace` do), both lead at once and each reconciles only its
/// namespace's objects.
#[test]
fn two_replicas_shard_by_namespace() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let (api, _served, _dir, kubeconfig) = serve_api(&rt);
    for ns in ["team-a", "team-b"] {
        api.ensure_namespace(ns).expect("namespace");
    }

    let a = Operator::start_with(
        &kubeconfig,
        "shard-a",
        &["--namespace=team-a", "--lease-name=azlin-operator-team-a"],
    );
    let b = Operator::start_with(
        &kubeconfig,
        "shard-b",
        &["--namespace=team-b", "--lease-name=azlin-operator-team-b"],
    );
    eventually("both shards lead at once", Duration::from_secs(30), || {
        a.metric("azlin_leader") == Some(1.0) && b.metric("azlin_leader") == Some(1.0)
    });

    let mut yaml = String::new();
    for (ns, n) in [("team-a", 3), ("team-b", 2)] {
        for i in 0..n {
            yaml.push_str(&format!(
                "---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: vm-{i}, namespace: {ns}}}\nspec: {{resourceGroup: rg-{ns}, location: westus2, size: Standard_D2s_v5}}\n"
            ));
        }
    }
    api.apply_yaml(&yaml).expect("apply AzlinVMs");
    for (ns, n) in [("team-a", 3), ("team-b", 2)] {
        let vms: Api<AzlinVM> = Api::namespaced(api.client(), ns);
        eventually(
            &format!("{ns}'s VMs Ready"),
            Duration::from_secs(60),
            || {
                rt.block_on(vms.list(&Default::default()))
                    .ok()
                    .is_some_and(|l| {
                        l.items.len() == n
                            && l.items.iter().all(|vm| {
                                vm.status.as_ref().is_some_and(|s| {
                                    azlin_operator::api::conditions::is_true(&s.conditions, "Ready")
                                })
                            })
                    })
            },
        );
    }
    // Each replica acted only on its namespace's objects.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(api.client());
    let events = rt
        .block_on(events.list(&Default::default()))
        .expect("events");
    let mut seen = 0;
    for e in &events.items {
        let ns = e.metadata.namespace.as_deref().unwrap_or_default();
        let by = e.reporting_instance.as_deref().unwrap_or_default();
        match ns {
            "team-a" => assert_eq!(by, "shard-a", "{e:?}"),
            "team-b" => assert_eq!(by, "shard-b", "{e:?}"),
            _ => continue,
        }
        seen += 1;
    }
    assert!(
        seen >= 5,
        "every VM has an event from its shard ({seen} seen)"
    );
    let leases: Api<Lease> = Api::namespaced(api.client(), "default");
    for (lease, holder) in [
        ("azlin-operator-team-a", "shard-a"),
        ("azlin-operator-team-b", "shard-b"),
    ] {
        let spec = rt.block_on(leases.get(lease)).expect("lease").spec;
        assert_eq!(
            spec.and_then(|s| s.holder_identity).as_deref(),
            Some(holder)
        );
    }
}
