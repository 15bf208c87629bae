//! Microsoft's official clients against the emulator: runs the Python fidelity suite
//! (`tests/fidelity/`, azure-mgmt-* SDKs with their own LRO pollers, error parsing and retry
//! policy, plus azure-cli) against an emulator served over HTTPS with request budgets on.
//! The interpreters come from `bash scripts/install-test-tools.sh` (venvs under `.tools/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use azlin_arm_emulator::{Emulator, EmulatorConfig};

const SUBSCRIPTION: &str = "5f1d6a0e-7c1b-4f5e-9a43-0e2b8c9d7a21";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("repository root")
        .to_path_buf()
}

/// A CA and a `localhost`/`127.0.0.1` server certificate it signed: (CA PEM, cert PEM, key PEM).
fn certificates() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "azlin emulator test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_azure_sdks_and_cli_drive_the_emulator() {
    let root = repo_root();
    let python = root.join(".tools/fidelity-venv/bin/python");
    let az = root.join(".tools/azure-cli-venv/bin/az");
    assert!(
        python.exists() && az.exists(),
        "the fidelity suite needs {} and {}: run `bash scripts/install-test-tools.sh`",
        python.display(),
        az.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates();
    let ca_path = dir.path().join("ca.pem");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&ca_path, ca).expect("write ca");
    std::fs::write(&cert_path, cert).expect("write cert");
    std::fs::write(&key_path, key).expect("write key");
    let handle = Emulator::start(EmulatorConfig {
        tls: Some((cert_path, key_path)),
        latency: Duration::from_millis(50),
        subscription_id: Some(SUBSCRIPTION.to_string()),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let base = handle.base_url().replace("127.0.0.1", "localhost");
    let output = tokio::process::Command::new(&python)
        .args([
            "-m",
            "pytest",
            "tests/fidelity",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rA",
        ])
        .current_dir(&root)
        .env("AZLIN_EMULATOR_URL", &base)
        .env("AZLIN_SUBSCRIPTION", SUBSCRIPTION)
        .env("AZLIN_AZ", &az)
        .env("AZURE_CONFIG_DIR", dir.path().join("azure-cli"))
        .env("REQUESTS_CA_BUNDLE", &ca_path)
        .env("SSL_CERT_FILE", &ca_path)
        .env(
            "IDENTITY_ENDPOINT",
            format!("{base}/_emulator/identity/token"),
        )
        .env("IDENTITY_HEADER", "azlin-emulator")
        .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
        .env("AZURE_CORE_SURVEY_MESSAGE", "false")
        .env("AZURE_CORE_NO_COLOR", "true")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fidelity suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(" passed"),
        "no test ran:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains(" skipped"),
        "tests were skipped:\n{stdout}"
    );
    handle.shutdown().await.expect("shutdown");
}
