//! Crash suite: the real `azlin-operator run` binary, SIGKILLed and restarted again and
//! again while ten AzlinVMs mounting one SharedStorage are created, power-changed and
//! deleted. The in-memory Kubernetes API and the ARM emulator live in this test process and
//! outlive every operator process. Kills come after every few ARM writes the emulator
//! recorded (so many land between Azure doing something and the operator recording it).
//!
//! Afterwards the emulator's inventory must show no duplicate resource while the objects
//! exist and nothing at all once they are deleted (the managed network and resource group
//! included), and no object may be left with a finalizer. Figures are printed for
//! `docs/RELIABILITY.md`:
//! `cargo test -p azlin-operator --test crash -- --nocapture`.

mod reliability_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azlin_arm_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use azlin_kubemem::ApiServer;
use azlin_operator::embedded::register_azlin_crds;
use reliability_support as rs;

/// ARM writes (PUT, PATCH, POST, DELETE) an operator process gets before it is killed.
const WRITES_PER_LIFE: usize = 1;
/// Most kills per phase (create, power change, delete), so each phase also converges.
const KILLS_PER_PHASE: usize = 12;
/// Longest any phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

/// One operator process after another, each logging to its own file.
struct Operator {
    child: Option<Child>,
    args: Vec<String>,
    kubeconfig: PathBuf,
    logs: PathBuf,
    lives: usize,
    kills: usize,
    /// Index in the emulator's request log at which the current process started.
    since: usize,
}

impl Operator {
    fn start(&mut self, log_len: usize) {
        self.lives += 1;
        let log = std::fs::File::create(self.logs.join(format!("operator-{}.log", self.lives)))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_azlin-operator"))
            .arg("run")
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", format!("crash-{}", self.lives))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start azlin-operator run");
        self.child = Some(child);
        self.since = log_len;
    }

    /// SIGKILL (`Child::kill`) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            self.kills += 1;
        }
    }

    /// Fails the test when the current process exited by itself.
    fn check_alive(&mut self) {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait().expect("try_wait")
        {
            panic!(
                "operator process {} exited by itself with {status}; log:\n{}",
                self.lives,
                self.tail()
            );
        }
    }

    fn tail(&self) -> String {
        let text = (self.lives.saturating_sub(1)..=self.lives)
            .map(|l| {
                std::fs::read_to_string(self.logs.join(format!("operator-{l}.log")))
                    .unwrap_or_default()
            })
            .collect::<String>();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn writes_since(emulator: &EmulatorHandle, since: usize) -> usize {
    emulator
        .requests()
        .iter()
        .skip(since)
        .filter(|r| r.method != "GET")
        .count()
}

/// Polls `done` until it holds, killing and restarting the operator after every
/// [`WRITES_PER_LIFE`] writes of a process, at most `max_kills` times; fails after
/// [`PHASE_LIMIT`]. Returns the phase's kills.
fn phase(
    name: &str,
    op: &mut Operator,
    emulator: &EmulatorHandle,
    max_kills: usize,
    mut done: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) -> usize {
    let started = Instant::now();
    let mut kills = 0;
    loop {
        if done() {
            println!(
                "phase {name}: converged in {:.1} s with {kills} kills",
                started.elapsed().as_secs_f64()
            );
            return kills;
        }
        op.check_alive();
        if kills < max_kills && writes_since(emulator, op.since) >= WRITES_PER_LIFE {
            op.kill();
            kills += 1;
            op.start(emulator.requests().len());
        }
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "phase {name} did not converge within {PHASE_LIMIT:?} ({kills} kills); last operator logs:\n{}\nobjects:\n{}",
            op.tail(),
            describe()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rest(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn sigkilled_operator_converges_without_duplicates_leaks_or_stuck_finalizers() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let api = ApiServer::new();
    register_azlin_crds(&api, true).expect("CRDs");
    let served = rt
        .block_on(api.serve("127.0.0.1:0".parse().expect("addr")))
        .expect("serve the in-memory API");
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig {
            latency: Duration::from_millis(20),
            rate_limit_scale: 0.0,
            ..EmulatorConfig::default()
        }))
        .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, served.kubeconfig()).expect("kubeconfig");
    let sandbox = dir.path().join("guests");
    let mut op = Operator {
        child: None,
        args: vec![
            format!("--emulator-url={}", emulator.base_url()),
            format!("--guest-sandbox={}", rest(&sandbox)),
            "--leader-election=false".into(),
            "--admin-addr=127.0.0.1:0".into(),
            "--log-format=json".into(),
            "--log-level=info,azlin_operator=debug".into(),
        ],
        kubeconfig,
        logs: dir.path().to_path_buf(),
        lives: 0,
        kills: 0,
        since: 0,
    };
    let client = api.client();
    let started = Instant::now();
    op.start(0);

    api.apply_yaml(&rs::manifests())
        .expect("apply the scenario");
    let list = |kind: &str| api.list("azlin.io/v1alpha1", kind, Some(rs::NS));
    let describe = || rs::describe(&api);
    let created = phase(
        "create",
        &mut op,
        &emulator,
        KILLS_PER_PHASE,
        || rs::vms_ready(&list("AzlinVM"), None) && list("SharedStorage").iter().all(rs::ready),
        describe,
    );
    let after_create = rs::counts_by_type(&emulator);
    let dup_create = rs::duplicates(&emulator);
    assert_eq!(
        after_create,
        rs::expected_counts(),
        "inventory after creation"
    );

    rt.block_on(rs::change_power(&client));
    let powered = phase(
        "power",
        &mut op,
        &emulator,
        KILLS_PER_PHASE,
        || rs::vms_ready(&list("AzlinVM"), Some(rs::new_power)),
        describe,
    );
    let dup_power = rs::duplicates(&emulator);

    rt.block_on(rs::delete_all(&client));
    let deleted = phase(
        "delete",
        &mut op,
        &emulator,
        KILLS_PER_PHASE,
        || rs::remaining_objects(&api).is_empty(),
        describe,
    );
    // The janitor removes the managed network and the group once nothing uses them.
    phase(
        "sweep",
        &mut op,
        &emulator,
        0,
        || emulator.resource_ids().is_empty(),
        describe,
    );
    let elapsed = started.elapsed();
    let requests = emulator.requests();
    let writes = requests.iter().filter(|r| r.method != "GET").count();
    println!(
        "crash suite: {} SIGKILLs ({created} create, {powered} power, {deleted} delete), {} operator processes, {} ARM requests ({writes} writes), duplicates {:?}/{:?}, leaked {}, stuck finalizers {}, {:.1} s",
        op.kills,
        op.lives,
        requests.len(),
        dup_create,
        dup_power,
        emulator.resource_ids().len(),
        rs::remaining_objects(&api).len(),
        elapsed.as_secs_f64()
    );
    assert!(
        op.kills >= 20,
        "only {} kills: the scenario made too few ARM writes",
        op.kills
    );
    assert!(
        dup_create.is_empty(),
        "duplicates after creation: {dup_create:?}"
    );
    assert!(
        dup_power.is_empty(),
        "duplicates after the power change: {dup_power:?}"
    );
    assert!(emulator.resource_ids().is_empty());
    assert!(rs::remaining_objects(&api).is_empty());
}
