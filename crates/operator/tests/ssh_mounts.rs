//! SSH executor and mount script against the real OpenSSH server
//! (`/usr/sbin/sshd`, Debian `openssh-server`) on loopback, with the mount
//! commands replaced by the recording fakes of `MountSandbox`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azlin_operator::ssh::keys::generate_ed25519;
use azlin_operator::ssh::nfs::{FSTAB_MARKER, NFS_MOUNT_OPTIONS};
use azlin_operator::ssh::sandbox::{MountSandbox, SANDBOX_ADMIN};
use azlin_operator::ssh::testing::TestSshd;
use azlin_operator::ssh::{
    CommandOutput, HostKeyPolicy, MountOutcome, MountPlan, MountResult, MountState, NfsMount,
    SharedHome, SshCommand, SshConfig, SshError, SshObserver, SshPhase, SshRunner, SshTarget,
    apply_mounts,
};

/// The `/home/azureuser` result of a run in which every mount converged.
fn converged_home(outcome: &MountOutcome) -> &MountResult {
    assert!(outcome.all_converged(), "{:?}", outcome.results);
    outcome
        .results
        .iter()
        .find(|r| r.path == "/home/azureuser")
        .expect("home result")
}

const SRC_DATA: &str = "acct1.file.core.windows.net:/acct1/data";
const SRC_MODELS: &str = "acct1.file.core.windows.net:/acct1/models";
const SRC_HOME: &str = "acct1.file.core.windows.net:/acct1/home";

/// Starts the real sshd; a missing OpenSSH server fails the test (no skip).
fn sshd() -> TestSshd {
    TestSshd::start().unwrap_or_else(|e| panic!("{e}"))
}

fn config() -> SshConfig {
    SshConfig {
        connect_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(60),
        connect_retries: 2,
        retry_min_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(50),
        ..SshConfig::default()
    }
}

fn nfs(source: &str, path: &str, read_only: bool) -> NfsMount {
    NfsMount {
        source: source.into(),
        path: path.into(),
        read_only,
        dirs: Default::default(),
    }
}

fn pinned(sshd: &TestSshd) -> SshTarget {
    sshd.target(HostKeyPolicy::Require(
        sshd.host_key_fingerprint().to_owned(),
    ))
}

#[tokio::test]
async fn first_contact_pins_the_host_key_and_a_mismatch_is_refused() {
    let sshd = sshd();
    let runner = SshRunner::new(config());
    let marker = tempfile::tempdir().expect("tempdir");
    let touched = marker.path().join("ran");
    let touch = SshCommand::exec(&["touch", &touched.to_string_lossy()]);

    let first = runner
        .run(&sshd.target(HostKeyPolicy::PinOnFirstContact), &touch)
        .await
        .unwrap_or_else(|e| panic!("first contact failed: {e}\n{}", sshd.log()));
    assert!(first.success());
    assert_eq!(first.host_key_fingerprint, sshd.host_key_fingerprint());
    assert!(first.host_key_fingerprint.starts_with("SHA256:"));

    let again = runner
        .run(
            &sshd.target(HostKeyPolicy::from_stored(Some(
                &first.host_key_fingerprint,
            ))),
            &SshCommand::exec(&["true"]),
        )
        .await
        .expect("pinned key accepted");
    assert_eq!(again.host_key_fingerprint, first.host_key_fingerprint);

    fs::remove_file(&touched).expect("remove marker");
    let other = generate_ed25519("other-host").expect("key").fingerprint;
    let err = runner
        .run(&sshd.target(HostKeyPolicy::Require(other.clone())), &touch)
        .await
        .expect_err("mismatch must be refused");
    assert_eq!(
        err,
        SshError::HostKeyMismatch {
            expected: other,
            actual: sshd.host_key_fingerprint().to_owned(),
        }
    );
    assert!(!err.is_transient());
    assert!(!touched.exists(), "no command may run after a mismatch");
}

#[tokio::test]
async fn recreated_host_is_refused_and_newly_authorized_keys_work() {
    let mut sshd = sshd();
    let runner = SshRunner::new(config());
    let old = sshd.host_key_fingerprint().to_owned();
    let vm_key = generate_ed25519("vm-01").expect("key");
    sshd.authorize_public_key(&vm_key.public_key_line)
        .expect("authorize");
    let target = SshTarget::new(
        sshd.host(),
        sshd.port(),
        sshd.user(),
        Arc::new(vm_key.private_key().expect("parse")),
        HostKeyPolicy::from_stored(Some(&old)),
    );
    let out = runner
        .run(&target, &SshCommand::exec(&["true"]))
        .await
        .expect("operator-generated key accepted");
    assert_eq!(out.host_key_fingerprint, old);

    let new = sshd.rotate_host_key().expect("restart with new host key");
    assert_ne!(new, old);
    let err = runner
        .run(&target, &SshCommand::exec(&["true"]))
        .await
        .expect_err("re-created host must be refused");
    assert_eq!(
        err,
        SshError::HostKeyMismatch {
            expected: old,
            actual: new
        }
    );
}

#[tokio::test]
async fn wrong_client_key_is_an_auth_error() {
    let sshd = sshd();
    let mut target = pinned(&sshd);
    target.key = Arc::new(
        generate_ed25519("stranger")
            .expect("key")
            .private_key()
            .expect("parse"),
    );
    let err = SshRunner::new(config())
        .run(&target, &SshCommand::exec(&["true"]))
        .await
        .expect_err("unknown key");
    assert!(matches!(err, SshError::Auth { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[derive(Default)]
struct Counting {
    retries: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    outcomes: Mutex<Vec<Result<(), &'static str>>>,
}

impl SshObserver for Counting {
    fn started(&self, _target: &SshTarget) {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    fn connect_retry(&self, _target: &SshTarget, _error: &SshError, _delay: Duration) {
        self.retries.fetch_add(1, Ordering::SeqCst);
    }
    fn finished(
        &self,
        _target: &SshTarget,
        result: Result<&CommandOutput, &SshError>,
        _elapsed: Duration,
    ) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut o) = self.outcomes.lock() {
            o.push(result.map(|_| ()).map_err(SshError::kind));
        }
    }
}

#[tokio::test]
async fn dropped_connections_are_retried_then_reported_as_transient_connect_error() {
    // A listener that accepts and immediately closes every connection, like
    // a VM whose sshd is not up yet behind a load balancer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let sshd = sshd();
    let mut target = pinned(&sshd);
    target.port = port;
    let observer = Arc::new(Counting::default());
    let runner = SshRunner::with_observer(config(), observer.clone());
    let err = runner
        .run(&target, &SshCommand::exec(&["true"]))
        .await
        .expect_err("the handshake cannot succeed");
    assert!(matches!(err, SshError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(observer.retries.load(Ordering::SeqCst), 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(observer.started.load(Ordering::SeqCst), 1);
    assert_eq!(
        *observer.outcomes.lock().expect("lock"),
        vec![Err("connect")]
    );
}

#[tokio::test]
async fn exec_quotes_arguments_and_captures_status_and_streams() {
    let sshd = sshd();
    let runner = SshRunner::new(config());
    let target = pinned(&sshd);
    let nasty = [
        "",
        "a b",
        "it's",
        "$(touch /tmp/azlin-pwned)",
        "`id`",
        "x;y&&z|w",
        "line1\nline2",
        "*",
        "~",
        "\"'\\",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(nasty);
    let out = runner
        .run(&target, &SshCommand::exec(&argv))
        .await
        .expect("printf");
    assert!(out.success());
    let echoed: Vec<&str> = out.stdout.split('\0').collect();
    assert_eq!(&echoed[..nasty.len()], &nasty[..]);

    let out = runner
        .run(
            &target,
            &SshCommand::script("echo out; echo err >&2; exit 3\n"),
        )
        .await
        .expect("script");
    assert_eq!(out.exit_status, Some(3));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    let err = out.check().expect_err("exit 3");
    assert_eq!(
        err,
        SshError::CommandFailed {
            exit: Some(3),
            signal: None,
            stderr: "err\n".into()
        }
    );

    let small = SshRunner::new(SshConfig {
        max_output_bytes: 1000,
        ..config()
    });
    let out = small
        .run(&target, &SshCommand::script("head -c 100000 /dev/zero\n"))
        .await
        .expect("big output");
    assert!(out.success());
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1000);
}

#[tokio::test]
async fn command_timeout_is_a_timeout_error() {
    let sshd = sshd();
    let runner = SshRunner::new(config());
    let err = runner
        .run(
            &pinned(&sshd),
            &SshCommand::exec(&["sleep", "5"]).with_timeout(Duration::from_millis(300)),
        )
        .await
        .expect_err("must time out");
    assert_eq!(
        err,
        SshError::Timeout {
            phase: SshPhase::Command,
            after: Duration::from_millis(300)
        }
    );
    assert!(err.is_transient());
}

/// Polls `check` every 20 ms until it returns true or the deadline passes.
async fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn active_jobs(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("active."))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_bound_is_respected() {
    let sshd = sshd();
    let observer = Arc::new(Counting::default());
    let runner = SshRunner::with_observer(
        SshConfig {
            max_concurrency: 2,
            ..config()
        },
        observer.clone(),
    );
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().to_string_lossy().into_owned();
    // Each job marks itself active, records how many jobs are active, then
    // waits for the test's release file before leaving.
    let mut jobs = Vec::new();
    for i in 0..6 {
        let script = format!(
            "d={dir}\ntouch \"$d/active.{i}\"\nls \"$d\" | grep -c '^active\\.' >\"$d/count.{i}\"\n\
             n=0\nwhile [ ! -e \"$d/release\" ]; do n=$((n + 1)); [ $n -gt 3000 ] && exit 9; sleep 0.02; done\n\
             rm \"$d/active.{i}\"\n",
            dir = azlin_operator::ssh::shell::shell_quote(&dir),
        );
        let runner = runner.clone();
        let target = pinned(&sshd);
        jobs.push(tokio::spawn(async move {
            runner.run(&target, &SshCommand::script(script)).await
        }));
    }
    wait_until("two jobs to be active", Duration::from_secs(30), || {
        active_jobs(work.path()) >= 2
    })
    .await;
    assert_eq!(active_jobs(work.path()), 2);
    assert_eq!(observer.in_flight.load(Ordering::SeqCst), 2);
    fs::write(work.path().join("release"), "").expect("release");
    for job in jobs {
        let out = job.await.expect("join").expect("ssh");
        assert!(out.success(), "{out:?}");
    }
    let mut counts = Vec::new();
    for i in 0..6 {
        let text = fs::read_to_string(work.path().join(format!("count.{i}"))).expect("count");
        counts.push(text.trim().parse::<usize>().expect("number"));
    }
    assert!(counts.iter().all(|c| (1..=2).contains(c)), "{counts:?}");
    assert_eq!(observer.max_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(observer.finished.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn mount_script_over_ssh_persists_fstab_once_and_removes_cleanly() {
    let sshd = sshd();
    let runner = SshRunner::new(config());
    let vm = MountSandbox::new().expect("sandbox");
    let user_lines = "# static file system information\nUUID=1234 / ext4 defaults 0 1\n\
                      /dev/disk/azure/resource-part1 /mnt auto defaults,nofail 0 2\n";
    vm.write_fstab(user_lines).expect("fstab");
    let env = vm.script_env();
    let plan = MountPlan {
        mounts: vec![
            nfs(SRC_DATA, "/data", false),
            nfs(SRC_MODELS, "/srv/models", true),
        ],
        shared_home: None,
        env: None,
    };

    // First contact pins the key.
    let first = apply_mounts(
        &runner,
        &sshd.target(HostKeyPolicy::PinOnFirstContact),
        &plan,
        &env,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(first.host_key_fingerprint, sshd.host_key_fingerprint());
    assert!(first.all_converged(), "{:?}", first.results);
    assert_eq!(first.exit_status, Some(0));
    let states: Vec<(&str, MountState, &str)> = first
        .results
        .iter()
        .map(|r| (r.path.as_str(), r.state, r.message.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("/data", MountState::Mounted, "mounted"),
            ("/srv/models", MountState::Mounted, "mounted")
        ]
    );
    let fstab_after_first = vm.fstab();

    let target = sshd.target(HostKeyPolicy::from_stored(Some(
        &first.host_key_fingerprint,
    )));
    let second = apply_mounts(&runner, &target, &plan, &env)
        .await
        .expect("second run");
    assert!(
        second
            .results
            .iter()
            .all(|r| r.state == MountState::Mounted && r.message == "already mounted"),
        "{:?}",
        second.results
    );
    let fstab = vm.fstab();
    assert_eq!(fstab, fstab_after_first, "second run must not change fstab");
    assert!(fstab.starts_with(user_lines));
    assert_eq!(fstab.matches(" /data nfs ").count(), 1);
    assert_eq!(fstab.matches(" /srv/models nfs ").count(), 1);
    assert!(fstab.contains(&format!(
        "{FSTAB_MARKER}/data\n{SRC_DATA} /data nfs {NFS_MOUNT_OPTIONS},_netdev,nofail 0 0\n"
    )));
    assert!(fstab.contains(&format!(
        "{SRC_MODELS} /srv/models nfs {NFS_MOUNT_OPTIONS},ro,_netdev,nofail 0 0\n"
    )));
    let log = vm.command_log();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("mount ")).count(),
        2,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| *l == "install-nfs").count(),
        1,
        "{log:?}"
    );
    assert!(log.contains(&format!(
        "mount -t nfs -o {NFS_MOUNT_OPTIONS},ro {SRC_MODELS} {}",
        vm.path("/srv/models").display()
    )));

    // Drop /srv/models: unmounted, its line removed, everything else kept.
    let smaller = MountPlan {
        mounts: vec![nfs(SRC_DATA, "/data", false)],
        shared_home: None,
        env: None,
    };
    let third = apply_mounts(&runner, &target, &smaller, &env)
        .await
        .expect("third run");
    let removed = third
        .results
        .iter()
        .find(|r| r.path == "/srv/models")
        .expect("removal reported");
    assert_eq!(removed.state, MountState::Unmounted);
    assert!(vm.mounted("/srv/models").is_none());
    assert!(vm.mounted("/data").is_some());
    let fstab = vm.fstab();
    assert!(!fstab.contains("/srv/models"), "{fstab}");
    assert!(fstab.starts_with(user_lines));
    assert!(
        vm.command_log()
            .contains(&format!("umount {}", vm.path("/srv/models").display()))
    );

    // Remove everything: back to exactly the user's lines.
    let last = apply_mounts(&runner, &target, &MountPlan::default(), &env)
        .await
        .expect("last run");
    assert_eq!(last.results.len(), 1);
    assert_eq!(last.results[0].state, MountState::Unmounted);
    assert_eq!(vm.fstab(), user_lines);
    assert_eq!(vm.mount_count(), 0);
}

#[tokio::test]
async fn failing_mount_surfaces_as_failed_result_with_error_text() {
    let sshd = sshd();
    let runner = SshRunner::new(config());
    let vm = MountSandbox::new().expect("sandbox");
    vm.fail_mount(SRC_MODELS).expect("fail");
    let plan = MountPlan {
        mounts: vec![
            nfs(SRC_DATA, "/data", false),
            nfs(SRC_MODELS, "/models", false),
        ],
        shared_home: None,
        env: None,
    };
    let outcome = apply_mounts(&runner, &pinned(&sshd), &plan, &vm.script_env())
        .await
        .expect("script ran");
    assert_eq!(outcome.exit_status, Some(1));
    assert!(!outcome.all_converged());
    let by_path: HashMap<&str, _> = outcome
        .results
        .iter()
        .map(|r| (r.path.as_str(), r))
        .collect();
    assert_eq!(by_path["/data"].state, MountState::Mounted);
    assert_eq!(by_path["/models"].state, MountState::Failed);
    assert_eq!(
        by_path["/models"].message,
        format!("mount failed: mount.nfs: access denied by server while mounting {SRC_MODELS}")
    );
    // Still persisted (nofail), so the next run or a reboot retries.
    assert!(vm.fstab().contains(&format!("{FSTAB_MARKER}/models\n")));
}

#[tokio::test]
async fn shared_home_over_ssh_seeds_once_never_overwrites_and_skips_secrets() {
    let sshd = sshd();
    let runner = SshRunner::new(config());
    let plan = MountPlan {
        mounts: vec![nfs(SRC_DATA, "/data", false)],
        shared_home: Some(SharedHome::new(SRC_HOME, SANDBOX_ADMIN)),
        env: None,
    };
    let home_files: &[(&str, &str)] = &[
        (".bashrc", "vm1 bashrc\n"),
        (".config/git/config", "[user]\n\tname = dev\n"),
        (".ssh/authorized_keys", "ssh-ed25519 AAAAvm1 vm1\n"),
        (".ssh/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        (".ssh/id_rsa.pub", "ssh-rsa AAAA vm1\n"),
        (".aws/credentials", "[default]\n"),
        (".azure/accessTokens.json", "[]\n"),
        (".config/gcloud/credentials.db", "x\n"),
        (".env", "SECRET=1\n"),
        (".project/.env.production", "SECRET=1\n"),
        (".certs/client.pem", "x\n"),
        (".certs/client.key", "x\n"),
        (".certs/client.pfx", "x\n"),
    ];
    let make_vm = |vm: &MountSandbox, extra: &[(&str, &str)]| {
        let home = vm.path("/home/azureuser");
        for (rel, contents) in home_files.iter().chain(extra) {
            let p = home.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, contents).expect("write");
        }
        let ok = std::process::Command::new("chown")
            .args(["-R", "1000:1000"])
            .arg(&home)
            .status()
            .expect("chown")
            .success();
        assert!(ok);
    };

    let vm1 = MountSandbox::new().expect("vm1");
    make_vm(&vm1, &[]);
    let outcome = apply_mounts(&runner, &pinned(&sshd), &plan, &vm1.script_env())
        .await
        .expect("vm1 run");
    let home = converged_home(&outcome);
    assert_eq!(home.message, "mounted; seeded from the local home");
    let share = vm1.share_dir(SRC_HOME);
    let on_share = |rel: &str| fs::read_to_string(share.join(rel)).ok();
    assert_eq!(on_share(".bashrc").as_deref(), Some("vm1 bashrc\n"));
    assert!(on_share(".config/git/config").is_some());
    assert!(on_share(".ssh/id_rsa.pub").is_some());
    for secret in [
        ".ssh/id_rsa",
        ".ssh/authorized_keys",
        ".aws",
        ".azure",
        ".config/gcloud",
        ".env",
        ".project/.env.production",
        ".certs/client.pem",
        ".certs/client.key",
        ".certs/client.pfx",
    ] {
        assert!(!share.join(secret).exists(), "{secret} was copied");
    }
    // The fake mount makes the VM's home show the share.
    assert_eq!(
        fs::read_to_string(vm1.path("/home/azureuser/.bashrc")).expect("read"),
        "vm1 bashrc\n"
    );
    assert_eq!(
        fs::read_to_string(vm1.path("/etc/ssh/azlin-operator/authorized_keys/azureuser"))
            .expect("local keys"),
        "ssh-ed25519 AAAAvm1 vm1\n"
    );
    let fstab = vm1.fstab();
    assert_eq!(fstab.matches(" /home/azureuser nfs ").count(), 1, "{fstab}");

    // Second reconcile of vm1: nothing re-seeded or re-mounted.
    let again = apply_mounts(&runner, &pinned(&sshd), &plan, &vm1.script_env())
        .await
        .expect("vm1 rerun");
    assert!(
        again.results.iter().all(|r| r.message == "already mounted"),
        "{:?}",
        again.results
    );
    assert_eq!(vm1.fstab(), fstab);

    // A user edits the share; vm2 has different dotfiles and joins later.
    fs::write(share.join(".bashrc"), "edited on the share\n").expect("edit");
    let vm2 = MountSandbox::sharing_with(&vm1).expect("vm2");
    make_vm(
        &vm2,
        &[
            (".vm2-only", "vm2\n"),
            (".ssh/authorized_keys", "ssh-ed25519 AAAAvm2 vm2\n"),
        ],
    );
    fs::write(vm2.path("/home/azureuser/.bashrc"), "vm2 bashrc\n").expect("vm2 bashrc");
    let outcome = apply_mounts(&runner, &pinned(&sshd), &plan, &vm2.script_env())
        .await
        .expect("vm2 run");
    let home = converged_home(&outcome);
    assert_eq!(
        home.message,
        "mounted; share already has content, not seeded"
    );
    assert_eq!(
        on_share(".bashrc").as_deref(),
        Some("edited on the share\n")
    );
    assert!(on_share(".vm2-only").is_none());
    // vm2 keeps its own per-VM key locally.
    assert_eq!(
        fs::read_to_string(vm2.path("/etc/ssh/azlin-operator/authorized_keys/azureuser"))
            .expect("vm2 keys"),
        "ssh-ed25519 AAAAvm2 vm2\n"
    );
}

#[tokio::test]
async fn a_connection_lost_mid_command_is_a_protocol_error() {
    let sshd = sshd();
    // The session's sshd process is the nearest ancestor named sshd; killing
    // it drops the connection before any exit status is sent.
    let script = "p=$$\n\
                  while [ \"$p\" -gt 1 ]; do\n\
                    p=$(awk '/^PPid:/ { print $2 }' /proc/$p/status)\n\
                    case $(awk '/^Name:/ { print $2 }' /proc/$p/status) in sshd*) kill -9 \"$p\"; break ;; esac\n\
                  done\n\
                  sleep 5\n";
    let err = SshRunner::new(config())
        .run(&pinned(&sshd), &SshCommand::script(script))
        .await
        .expect_err("connection was killed");
    assert!(matches!(err, SshError::Protocol(_)), "{err:?}");
    assert!(err.is_transient());
}
