//! Operator runtime: admin server over real HTTP, metrics, telemetry, settings, shutdown.

use std::time::{Duration, Instant};

use azlin_operator::runtime::admin::AdminServer;
use azlin_operator::runtime::metrics::{self, Metrics, RateLimitRemaining, RateLimitScope};
use azlin_operator::runtime::readiness::Readiness;
use azlin_operator::runtime::settings::{Settings, settings_markdown_table};
use azlin_operator::runtime::telemetry::{self, LogFormat, TelemetryError};
use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

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
        flags, 16,
        "update this count and the README when adding flags"
    );
    assert_eq!(table.lines().count(), flags + 2);
    assert!(table.contains("| `--leader-election` | `AZLIN_LEADER_ELECTION` | `true` |"));
    assert!(table.contains("| `--emulator` | `AZLIN_EMULATOR` | `false` |"));
    assert!(table.contains("| `--ssh-port` | `AZLIN_SSH_PORT` | `22` |"));
    assert!(table.contains("One of `auto`, `json`, `text`."));
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
    use azlin_operator::runtime::leader::{LeadershipEnd, run_gated};
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
