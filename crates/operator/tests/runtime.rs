//! Operator runtime: admin server over real HTTP, metrics, telemetry, settings, shutdown,
//! and leader election on the in-memory Kubernetes API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use azlin_kubemem::ApiServer;
use azlin_operator::runtime::leader::{LeaderElector, LeaderError, LeadershipEnd, LeaseConfig};

use azlin_operator::runtime::admin::AdminServer;
use azlin_operator::runtime::metrics::{self, Metrics, RateLimitRemaining, RateLimitScope};
use azlin_operator::runtime::readiness::Readiness;
use azlin_operator::runtime::settings::{Settings, settings_markdown_table};
use azlin_operator::runtime::telemetry::{self, LogFormat, TelemetryError};
use clap::{CommandFactory, Parser};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);

async fn get(client: &reqwest::Client, url: String) -> (u16, String, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().expect("ascii content type").to_owned())
        .unwrap_or_default();
    let body = response.text().await.expect("body");
    (status, content_type, body)
}

#[tokio::test]
async fn admin_server_answers_health_readiness_and_metrics_over_http() {
    let readiness = Readiness::new();
    let metrics = Metrics::new();
    let server = AdminServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        readiness.clone(),
        metrics.clone(),
    )
    .await
    .expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");

    let (status, _, body) = get(&client, format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("no component"), "{body}");

    let gate = readiness.register("AzlinVM cache");
    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("waiting for AzlinVM cache"), "{body}");

    gate.set_ready();
    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!((status, body.trim()), (200, "ready"));

    {
        let _timer = metrics.reconcile_timer("AzlinVM");
    }
    metrics.record_reconcile_error("AzlinVM", "arm_throttled");
    metrics.record_arm_response(
        "put",
        "Microsoft.Compute/virtualMachines",
        201,
        &[RateLimitRemaining {
            scope: RateLimitScope::SubscriptionWrites,
            remaining: 1199,
        }],
    );
    metrics.record_arm_retry();
    metrics.record_ssh("mount", true);
    metrics.set_fleet_members("ready", 3);
    metrics.set_managed("Fleet", 2);
    metrics.set_leader(true);

    let (status, content_type, body) = get(&client, format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, metrics::CONTENT_TYPE);
    for family in [
        "azlin_reconcile_total{kind=\"AzlinVM\"} 1",
        "azlin_reconcile_errors_total{kind=\"AzlinVM\",reason=\"arm_throttled\"} 1",
        "azlin_reconcile_duration_seconds_count{kind=\"AzlinVM\"} 1",
        "azlin_arm_requests_total{method=\"PUT\",resource_type=\"Microsoft.Compute/virtualMachines\",status=\"201\"} 1",
        "azlin_arm_ratelimit_remaining{scope=\"subscription-writes\"} 1199",
        "azlin_arm_retries_total 1",
        "azlin_ssh_operations_total{operation=\"mount\",result=\"success\"} 1",
        "azlin_fleet_members{state=\"ready\"} 3",
        "azlin_managed_objects{kind=\"Fleet\"} 2",
        "azlin_leader 1",
        "# EOF",
    ] {
        assert!(body.contains(family), "missing {family:?} in\n{body}");
    }

    let (status, _, _) = get(&client, format!("{base}/nope")).await;
    assert_eq!(status, 404);

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("server stops after cancellation")
        .expect("join")
        .expect("serve result");
}

#[tokio::test]
async fn admin_bind_reports_an_address_in_use() {
    let first = AdminServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        Readiness::new(),
        Metrics::new(),
    )
    .await
    .expect("bind");
    let second = AdminServer::bind(first.local_addr(), Readiness::new(), Metrics::new()).await;
    assert!(second.is_err(), "second bind to the same port must fail");
}

#[test]
fn reconcile_timer_records_on_drop_only() {
    let metrics = Metrics::new();
    let timer = metrics.reconcile_timer("Backup");
    let before = metrics.encode().expect("encode");
    assert!(before.contains("azlin_reconcile_total{kind=\"Backup\"} 1"));
    assert!(!before.contains("azlin_reconcile_duration_seconds_count{kind=\"Backup\"}"));
    drop(timer);
    let after = metrics.encode().expect("encode");
    assert!(after.contains("azlin_reconcile_duration_seconds_count{kind=\"Backup\"} 1"));
    // Unlabelled families are exported before any sample; labelled ones appear with
    // their first sample.
    let empty = Metrics::new().encode().expect("encode");
    assert!(empty.contains("azlin_arm_retries_total 0"), "{empty}");
    assert!(empty.contains("azlin_leader 0"), "{empty}");
    assert!(!empty.contains("azlin_reconcile_total"), "{empty}");
}

#[test]
fn rate_limit_headers_are_parsed() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-ms-ratelimit-remaining-subscription-reads",
        http::HeaderValue::from_static("11999"),
    );
    headers.insert(
        "x-ms-ratelimit-remaining-resource",
        http::HeaderValue::from_static(
            "Microsoft.Compute/HighCostGet3Min;107,Microsoft.Compute/HighCostGet30Min;17",
        ),
    );
    headers.insert(
        "x-ms-ratelimit-remaining-subscription-writes",
        http::HeaderValue::from_static("garbage"),
    );
    let remaining = RateLimitRemaining::from_headers(&headers);
    assert_eq!(
        remaining,
        vec![
            RateLimitRemaining {
                scope: RateLimitScope::SubscriptionReads,
                remaining: 11999
            },
            RateLimitRemaining {
                scope: RateLimitScope::Resource,
                remaining: 17
            },
        ]
    );
}

#[test]
fn telemetry_init_returns_an_error_the_second_time() {
    // The only test in this binary that installs the global subscriber.
    telemetry::init("off", LogFormat::Json).expect("first init succeeds");
    let second = telemetry::init("info", LogFormat::Text);
    assert!(
        matches!(second, Err(TelemetryError::AlreadyInitialised(_))),
        "{second:?}"
    );
}

#[test]
fn telemetry_rejects_an_invalid_filter_and_resolves_auto() {
    if std::env::var_os("RUST_LOG").is_none() {
        assert!(matches!(
            telemetry::filter("azlin_operator=notalevel"),
            Err(TelemetryError::InvalidFilter { .. })
        ));
        assert!(telemetry::filter("azlin_operator=debug,kube=info").is_ok());
    }
    assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
    assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
    assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
    assert_eq!(LogFormat::Text.resolve(false), LogFormat::Text);
}

#[test]
fn settings_parse_from_flags_with_defaults() {
    let defaults = Settings::try_parse_from(["run"]).expect("defaults");
    assert_eq!(defaults.namespace, None);
    assert_eq!(
        defaults.azure_endpoint.as_str(),
        "https://management.azure.com/"
    );
    assert_eq!(defaults.ssh_port, 22);
    assert!(!defaults.emulator);
    assert!(defaults.leader_election);
    assert_eq!(defaults.admin_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(defaults.lease_name, "azlin-operator");
    assert_eq!(defaults.log_format, LogFormat::Auto);
    assert_eq!(Settings::default(), defaults);

    let s = Settings::try_parse_from([
        "run",
        "--namespace",
        "dev",
        "--azure-endpoint",
        "https://127.0.0.1:8443",
        "--subscription-id",
        "00000000-0000-0000-0000-000000000001",
        "--azure-ca-file",
        "/tmp/ca.pem",
        "--ssh-port",
        "2222",
        "--emulator",
        "--admin-addr",
        "127.0.0.1:9090",
        "--leader-election=false",
        "--lease-name",
        "x",
        "--lease-namespace",
        "ops",
        "--lease-duration",
        "20",
        "--lease-grace",
        "4",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "--concurrency",
        "3",
        "--ssh-concurrency",
        "5",
    ])
    .expect("parse");
    assert_eq!(s.namespace.as_deref(), Some("dev"));
    assert_eq!(s.azure_endpoint.as_str(), "https://127.0.0.1:8443/");
    assert_eq!(
        s.subscription_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        s.azure_ca_file.as_deref(),
        Some(std::path::Path::new("/tmp/ca.pem"))
    );
    assert_eq!(s.ssh_port, 2222);
    assert!(s.emulator);
    assert_eq!(s.admin_addr.to_string(), "127.0.0.1:9090");
    assert!(!s.leader_election);
    assert_eq!(
        (s.lease_name.as_str(), s.lease_namespace.as_deref()),
        ("x", Some("ops"))
    );
    assert_eq!((s.lease_duration, s.lease_grace), (20, 4));
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!((s.concurrency, s.ssh_concurrency), (3, 5));

    assert!(Settings::try_parse_from(["run", "--concurrency", "0"]).is_err());
    assert!(Settings::try_parse_from(["run", "--log-format", "xml"]).is_err());
    assert!(Settings::try_parse_from(["run", "--azure-endpoint", "not a url"]).is_err());
}

const CHILD_MARKER: &str = "AZLIN_RUNTIME_TEST_CHILD";

/// Runs in a child process (see `settings_parse_from_environment_variables`) so that
/// environment variables never leak into other tests.
#[test]
fn settings_env_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let s = Settings::try_parse_from(["run"]).expect("parse from env");
    assert_eq!(s.namespace.as_deref(), Some("team-a"));
    assert_eq!(s.azure_endpoint.as_str(), "http://127.0.0.1:7777/");
    assert_eq!(s.ssh_port, 2022);
    assert!(s.emulator);
    assert!(!s.leader_election);
    assert_eq!(s.log_format, LogFormat::Text);
    assert_eq!(s.concurrency, 7);
    // A flag wins over the environment.
    let s = Settings::try_parse_from(["run", "--ssh-port", "23", "--leader-election", "true"])
        .expect("parse");
    assert_eq!(s.ssh_port, 23);
    assert!(s.leader_election);
    println!("CHILD-OK");
}

#[test]
fn settings_parse_from_environment_variables() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "settings_env_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MARKER, "1")
        .env("AZLIN_NAMESPACE", "team-a")
        .env("AZLIN_AZURE_ENDPOINT", "http://127.0.0.1:7777")
        .env("AZLIN_SSH_PORT", "2022")
        .env("AZLIN_EMULATOR", "true")
        .env("AZLIN_LEADER_ELECTION", "false")
        .env("AZLIN_LOG_FORMAT", "text")
        .env("AZLIN_CONCURRENCY", "7")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("CHILD-OK"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn markdown_table_lists_every_flag_with_env_and_default() {
    let table = settings_markdown_table();
    let command = Settings::command();
    let mut flags = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        flags += 1;
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `--{long}` |")))
            .unwrap_or_else(|| panic!("no row for --{long} in\n{table}"));
        let env = arg.get_env().expect("every flag has an env var");
        assert!(
            row.contains(&format!("`{}`", env.to_string_lossy())),
            "{row}"
        );
    }
    assert_eq!(
        flags, 21,
        "update this count and the README when adding flags"
    );
    assert_eq!(table.lines().count(), flags + 2);
    assert!(table.contains("| `--leader-election` | `AZLIN_LEADER_ELECTION` | `true` |"));
    assert!(table.contains("| `--emulator` | `AZLIN_EMULATOR` | `false` |"));
    assert!(table.contains("| `--ssh-port` | `AZLIN_SSH_PORT` | `22` |"));
    assert!(table.contains("One of `auto`, `json`, `text`."));
}

#[test]
fn an_external_emulator_excludes_the_in_process_one() {
    let s = Settings::try_parse_from([
        "run",
        "--emulator-url",
        "http://127.0.0.1:8443",
        "--guest-sandbox",
        "/tmp/guests",
        "--arm-request-timeout",
        "2",
    ])
    .expect("parse");
    assert_eq!(
        s.emulator_url.map(|u| u.to_string()).as_deref(),
        Some("http://127.0.0.1:8443/")
    );
    assert_eq!(s.arm_request_timeout, Some(2));
    assert!(Settings::try_parse_from(["run", "--emulator", "--emulator-url", "http://x"]).is_err());
    assert!(Settings::try_parse_from(["run", "--arm-request-timeout", "0"]).is_err());
}

#[tokio::test]
async fn sigterm_cancels_the_shutdown_token() {
    let token = CancellationToken::new();
    let task = azlin_operator::runtime::shutdown::cancel_on_signal(token.clone())
        .expect("install handlers");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + DEADLINE;
    while !token.is_cancelled() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not cancel the token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("task ends")
        .expect("join");
}

#[tokio::test]
async fn signal_task_ends_when_the_token_is_cancelled_elsewhere() {
    let token = CancellationToken::new();
    let task = azlin_operator::runtime::shutdown::cancel_on_signal(token.clone())
        .expect("install handlers");
    token.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("task ends")
        .expect("join");
}

#[tokio::test]
async fn without_an_elector_the_work_runs_until_shutdown() {
    use azlin_operator::runtime::leader::run_gated;
    let shutdown = CancellationToken::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run_gated(None, shutdown.clone(), |token| async move {
        let _ = started_tx.send(());
        token.cancelled().await;
    }));
    tokio::time::timeout(DEADLINE, started_rx)
        .await
        .expect("work starts")
        .expect("sender alive");
    shutdown.cancel();
    let end = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("work stops")
        .expect("join");
    assert_eq!(end.expect("ok"), LeadershipEnd::Shutdown);

    let end = run_gated(None, CancellationToken::new(), |_| async {}).await;
    assert_eq!(end.expect("ok"), LeadershipEnd::WorkFinished);
}

// ---- leader election on the in-memory API ----

const LEASE: &str = "azlin-operator";

fn config(identity: &str) -> LeaseConfig {
    // Short timings keep the test fast: renew 1 s before a 2 s expiry.
    LeaseConfig::new(LEASE, "default")
        .with_identity(identity)
        .with_timing(2, 1)
}

/// Work that marks itself running until its token is cancelled, and records whether it
/// ever started while the other replica's work was running.
#[derive(Clone, Default)]
struct Probe {
    running: Arc<AtomicBool>,
    starts: Arc<AtomicUsize>,
}

impl Probe {
    fn work(
        &self,
        other: Probe,
        overlap: Arc<AtomicBool>,
    ) -> impl FnOnce(CancellationToken) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + use<>
    {
        let me = self.clone();
        move |token| {
            Box::pin(async move {
                me.starts.fetch_add(1, Ordering::SeqCst);
                me.running.store(true, Ordering::SeqCst);
                // Clears `running` however the work ends: returned or dropped.
                let _running = ClearOnDrop(me.running.clone());
                while !token.is_cancelled() {
                    if other.running.load(Ordering::SeqCst) {
                        overlap.store(true, Ordering::SeqCst);
                    }
                    tokio::select! {
                        () = token.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            })
        }
    }
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

async fn wait_for(rx: &mut watch::Receiver<bool>, value: bool, what: &str) {
    tokio::time::timeout(DEADLINE, rx.wait_for(|v| *v == value))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("elector alive");
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get(LEASE)
        .await
        .expect("get lease")
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn lease_hands_over_from_one_elector_to_the_other() {
    let server = ApiServer::new();
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let overlap = Arc::new(AtomicBool::new(false));
    let (probe_a, probe_b) = (Probe::default(), Probe::default());
    let metrics_a = Metrics::new();
    let readiness_b = Readiness::new();

    let a = LeaderElector::new(server.client(), config("replica-a"))
        .expect("elector a")
        .with_metrics(metrics_a.clone());
    let b = LeaderElector::new(server.client(), config("replica-b"))
        .expect("elector b")
        .with_readiness(&readiness_b);
    let (mut a_leader, mut b_leader) = (a.subscribe(), b.subscribe());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());

    let task_a = tokio::spawn(a.run_while_leader(
        stop_a.clone(),
        probe_a.work(probe_b.clone(), overlap.clone()),
    ));
    wait_for(&mut a_leader, true, "replica-a to lead").await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));
    assert!(
        metrics_a
            .encode()
            .expect("encode")
            .contains("azlin_leader 1")
    );

    let task_b = tokio::spawn(b.run_while_leader(
        stop_b.clone(),
        probe_b.work(probe_a.clone(), overlap.clone()),
    ));
    // A standby that reached the API is ready.
    let deadline = Instant::now() + DEADLINE;
    while !readiness_b.is_ready() {
        assert!(Instant::now() < deadline, "standby never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // For more than one lease duration (A renews, B checks at A's expiry), exactly one
    // replica leads and B's work never starts.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        assert!(
            *a_leader.borrow(),
            "replica-a lost the lease while renewing"
        );
        assert!(!*b_leader.borrow(), "both replicas lead");
        assert_eq!(probe_b.starts.load(Ordering::SeqCst), 0, "standby work ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(probe_a.running.load(Ordering::SeqCst));

    // Graceful shutdown of A: its work drains, the lease is released, B takes over.
    stop_a.cancel();
    let end_a = tokio::time::timeout(DEADLINE, task_a)
        .await
        .expect("replica-a stops")
        .expect("join");
    assert_eq!(end_a.expect("clean end"), LeadershipEnd::Shutdown);
    assert!(!probe_a.running.load(Ordering::SeqCst));
    assert!(
        metrics_a
            .encode()
            .expect("encode")
            .contains("azlin_leader 0")
    );

    wait_for(&mut b_leader, true, "replica-b to take over").await;
    let deadline = Instant::now() + DEADLINE;
    while !probe_b.running.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "replica-b's work never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-b"));
    assert_eq!(probe_a.starts.load(Ordering::SeqCst), 1);
    assert_eq!(probe_b.starts.load(Ordering::SeqCst), 1);

    stop_b.cancel();
    let end_b = tokio::time::timeout(DEADLINE, task_b)
        .await
        .expect("replica-b stops")
        .expect("join");
    assert_eq!(end_b.expect("clean end"), LeadershipEnd::Shutdown);
    assert_eq!(holder(&leases).await, None, "lease released on shutdown");
    assert!(!overlap.load(Ordering::SeqCst), "the two works overlapped");
}

#[tokio::test]
async fn losing_the_lease_stops_the_work_and_reports_the_loss() {
    let server = ApiServer::new();
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let probe = Probe::default();
    let elector = LeaderElector::new(server.client(), config("replica-a")).expect("elector");
    let mut leader = elector.subscribe();
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run_while_leader(
        stop.clone(),
        probe.work(Probe::default(), Arc::new(AtomicBool::new(false))),
    ));
    wait_for(&mut leader, true, "replica-a to lead").await;

    // Another party takes the lease over (as after a network partition).
    let takeover = serde_json::json!({
        "spec": {
            "holderIdentity": "intruder",
            "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now()
            ),
            "leaseDurationSeconds": 60,
        }
    });
    leases
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&takeover))
        .await
        .expect("take over");

    let result = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("elector notices the loss")
        .expect("join");
    match result {
        Err(LeaderError::LeadershipLost { identity, .. }) => assert_eq!(identity, "replica-a"),
        other => panic!("expected LeadershipLost, got {other:?}"),
    }
    assert!(!*leader.borrow());
    assert!(!probe.running.load(Ordering::SeqCst), "work still running");
    assert!(!stop.is_cancelled(), "loss must not look like a shutdown");
    assert_eq!(holder(&leases).await.as_deref(), Some("intruder"));
}

#[tokio::test]
async fn standby_shuts_down_without_running_its_work() {
    let server = ApiServer::new();
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let a = LeaderElector::new(server.client(), config("replica-a")).expect("elector a");
    let b = LeaderElector::new(server.client(), config("replica-b")).expect("elector b");
    let mut a_leader = a.subscribe();
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (probe_a, probe_b) = (Probe::default(), Probe::default());
    let overlap = Arc::new(AtomicBool::new(false));
    let task_a = tokio::spawn(a.run_while_leader(
        stop_a.clone(),
        probe_a.work(probe_b.clone(), overlap.clone()),
    ));
    wait_for(&mut a_leader, true, "replica-a to lead").await;
    let task_b = tokio::spawn(b.run_while_leader(
        stop_b.clone(),
        probe_b.work(probe_a.clone(), overlap.clone()),
    ));
    stop_b.cancel();
    let end_b = tokio::time::timeout(DEADLINE, task_b)
        .await
        .expect("standby stops")
        .expect("join");
    assert_eq!(end_b.expect("clean end"), LeadershipEnd::Shutdown);
    assert_eq!(probe_b.starts.load(Ordering::SeqCst), 0);
    // The standby's release must not free the leader's lease.
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));
    assert!(*a_leader.borrow());
    stop_a.cancel();
    let end_a = tokio::time::timeout(DEADLINE, task_a)
        .await
        .expect("leader stops")
        .expect("join");
    assert_eq!(end_a.expect("clean end"), LeadershipEnd::Shutdown);
    assert!(!overlap.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_stops_before_its_lease_expires() {
    let server = ApiServer::new();
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let cut = Arc::new(AtomicBool::new(false));
    let partitioned = {
        let (server, cut) = (server.clone(), cut.clone());
        tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (server, cut) = (server.clone(), cut.clone());
            async move {
                if cut.load(Ordering::SeqCst) {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "partitioned",
                    ))
                } else {
                    Ok(server.handle(req).await)
                }
            }
        })
    };
    let client = kube::Client::new(partitioned, "default");
    let probe = Probe::default();
    let elector = LeaderElector::new(client, config("replica-a")).expect("elector");
    let mut leader = elector.subscribe();
    let task = tokio::spawn(elector.run_while_leader(
        CancellationToken::new(),
        probe.work(Probe::default(), Arc::new(AtomicBool::new(false))),
    ));
    wait_for(&mut leader, true, "replica-a to lead").await;

    cut.store(true, Ordering::SeqCst);
    let result = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("elector notices it cannot renew")
        .expect("join");
    let stopped_at = std::time::SystemTime::now();
    assert!(
        matches!(&result, Err(LeaderError::LeadershipLost { reason, .. }) if reason.contains("not renewed")),
        "{result:?}"
    );
    assert!(!probe.running.load(Ordering::SeqCst), "work still running");

    // It stepped down while its lease was still valid, i.e. before anyone could take over.
    let spec = leases.get(LEASE).await.expect("get").spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    let renewed = std::time::SystemTime::from(spec.renew_time.expect("renew time").0);
    let duration = u64::try_from(spec.lease_duration_seconds.expect("duration")).expect("positive");
    assert!(
        stopped_at < renewed + Duration::from_secs(duration),
        "stepped down only after the lease expired"
    );
}

/// Records what a watch reports, and any object reported before its store held it.
#[derive(Default)]
struct Reported {
    names: std::sync::Mutex<std::collections::BTreeSet<String>>,
    not_in_store: std::sync::Mutex<Vec<String>>,
}

#[tokio::test]
async fn a_watch_reports_listed_objects_only_once_its_store_holds_them() {
    use azlin_operator::runtime::watches::{self, WatchCheck};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::{self, ObjectRef};

    let server = ApiServer::new();
    let maps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let create = |names: std::ops::Range<usize>| {
        let yaml: String = names
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: default}}\n"))
            .collect();
        server.apply_yaml(&yaml).expect("config maps");
    };
    create(0..5);
    let (store, writer) = reflector::store::<ConfigMap>();
    let reported = Arc::new(Reported::default());
    let touched = {
        let reported = Arc::clone(&reported);
        move |obj: Arc<ConfigMap>| {
            let name = obj.metadata.name.clone().unwrap_or_default();
            if store.get(&ObjectRef::from_obj(obj.as_ref())).is_none() {
                reported.not_in_store.lock().unwrap().push(name.clone());
            }
            reported.names.lock().unwrap().insert(name);
            std::future::ready(())
        }
    };
    // Pages of two: a list takes several requests, between which a controller could run.
    let config = kube::runtime::watcher::Config::default().page_size(2);
    let watch = tokio::spawn(watches::run(
        maps,
        config,
        writer,
        touched,
        WatchCheck::default(),
    ));
    let all = |n: usize| {
        let reported = Arc::clone(&reported);
        move || {
            let reported = Arc::clone(&reported);
            async move { (reported.names.lock().unwrap().len() >= n).then_some(()) }
        }
    };
    azlin_kubemem::testing::eventually(DEADLINE, "the first list reported", all(5)).await;
    // The watch falls behind (410 Expired) and objects appear before it lists again.
    server.expire_watches();
    create(5..11);
    azlin_kubemem::testing::eventually(DEADLINE, "the relist reported", all(11)).await;
    watch.abort();
    assert_eq!(*reported.not_in_store.lock().unwrap(), Vec::<String>::new());
}
