//! ARM fault suite: ten AzlinVMs mounting one SharedStorage are created, power-changed and
//! deleted twice on the embedded environment — once against a well-behaved emulator, once
//! with faults on about 20% of ARM requests: 429 with `Retry-After`, 500, connection resets
//! (before or after the request took effect), answers slower than the client's timeout,
//! and writes whose long-running operation ends `Failed`. Everything must converge (Ready,
//! then gone with nothing left in Azure) and the ARM requests per VM with faults (and in
//! all) must stay within twice the fault-free count (no hot loops). Figures are printed for
//! `docs/RELIABILITY.md`: `cargo test -p azlin-operator --test arm_faults -- --nocapture`.

mod reliability_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions};
use reliability_support as rs;

/// Each fault's rate: together about one request in five meets one.
const RATE: f64 = 0.05;
/// The ARM client's request timeout with faults, and how late slow answers come.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
const SLOW_ANSWER: Duration = Duration::from_millis(1500);
/// Longest any phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

/// What one run measured.
#[derive(Debug)]
struct Figures {
    seconds: f64,
    requests: usize,
    /// Requests answered 429 or 5xx, reset or late, by status (0: reset before an answer).
    faulted: BTreeMap<String, usize>,
    per_vm_mean: f64,
    per_vm_max: usize,
}

impl Figures {
    fn faulted(&self) -> usize {
        self.faulted.values().sum()
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "converged in {:.1} s; {} ARM requests, {} faulted ({:.0}%: {:?}); requests naming one VM: mean {:.1}, max {}",
            self.seconds,
            self.requests,
            self.faulted(),
            100.0 * self.faulted() as f64 / self.requests as f64,
            self.faulted,
            self.per_vm_mean,
            self.per_vm_max
        )
    }
}

async fn until(what: &str, env: &EmbeddedEnv, mut done: impl FnMut(&EmbeddedEnv) -> bool) {
    let deadline = Instant::now() + PHASE_LIMIT;
    while !done(env) {
        assert!(
            Instant::now() < deadline,
            "{what} not reached within {PHASE_LIMIT:?}; objects:\n{}",
            rs::describe(env.api())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(faults: bool) -> Figures {
    let mut options = EmbeddedOptions::for_tests();
    if faults {
        let e = &mut options.emulator;
        e.throttle_rate = RATE;
        e.fault_rate = RATE;
        e.reset_rate = RATE;
        e.slow_rate = RATE;
        e.slow_answer = SLOW_ANSWER;
        e.failed_operation_rate = RATE;
        options.arm_request_timeout = Some(CLIENT_TIMEOUT);
    }
    let env = EmbeddedEnv::start(options).await.expect("environment");
    let started = Instant::now();
    env.apply_yaml(&rs::manifests())
        .expect("apply the scenario");
    let list =
        |env: &EmbeddedEnv, kind: &str| env.api().list("azlin.io/v1alpha1", kind, Some(rs::NS));
    until("every VM and the storage Ready", &env, |env| {
        rs::vms_ready(&list(env, "AzlinVM"), None)
            && list(env, "SharedStorage").iter().all(rs::ready)
    })
    .await;
    let duplicates = rs::duplicates(env.emulator());
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert_eq!(rs::counts_by_type(env.emulator()), rs::expected_counts());
    rs::change_power(&env.client()).await;
    until("every VM Ready in its new power state", &env, |env| {
        rs::vms_ready(&list(env, "AzlinVM"), Some(rs::new_power))
    })
    .await;
    rs::delete_all(&env.client()).await;
    until("every object gone", &env, |env| {
        rs::remaining_objects(env.api()).is_empty()
    })
    .await;
    until("nothing left in Azure", &env, |env| {
        env.emulator().resource_ids().is_empty()
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let log = env.emulator().requests();
    let per_vm: Vec<usize> = (0..rs::VMS).map(|i| rs::requests_of_vm(&log, i)).collect();
    let figures = Figures {
        seconds,
        requests: log.len(),
        faulted: log
            .iter()
            .filter(|r| r.fault.is_some() || r.status == 429 || r.status >= 500)
            .fold(BTreeMap::new(), |mut m, r| {
                let key = match &r.fault {
                    Some(f) => format!("{f} {}", r.status),
                    None => r.status.to_string(),
                };
                *m.entry(key).or_insert(0) += 1;
                m
            }),
        per_vm_mean: per_vm.iter().sum::<usize>() as f64 / rs::VMS as f64,
        per_vm_max: per_vm.iter().copied().max().unwrap_or(0),
    };
    env.shutdown().await;
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_converges_under_arm_faults_without_hot_loops() {
    let clean = run(false).await;
    let faulty = run(true).await;
    println!("ARM faults suite, fault-free: {clean}");
    println!("ARM faults suite, with faults: {faulty}");
    assert!(
        faulty.faulted() * 10 >= faulty.requests,
        "too few faults injected to mean anything: {faulty:?}"
    );
    assert!(
        faulty.per_vm_mean <= 2.0 * clean.per_vm_mean,
        "requests naming a VM: {:.1} per VM with faults, {:.1} without",
        faulty.per_vm_mean,
        clean.per_vm_mean
    );
    assert!(
        faulty.requests <= 2 * clean.requests,
        "all requests (LISTs and operation polls included): {} with faults, {} without",
        faulty.requests,
        clean.requests
    );
    // One VM may meet several faults in a row; a hot loop would still show as many times more.
    assert!(
        faulty.per_vm_max <= 3 * clean.per_vm_max,
        "most requests naming one VM: {} with faults, {} without",
        faulty.per_vm_max,
        clean.per_vm_max
    );
}
