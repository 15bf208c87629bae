//! Every command in the README's `sh` blocks, run as written and in order where this
//! machine can: `cargo run --release -- …` as the built binary, `kubectl …` with the real
//! kubectl against `local --serve-api`, `helm install …` as `helm template` and `helm lint`
//! with the same arguments. A command of a kind not handled here fails the test, so a new
//! README command is either run or given a reason why not.

mod local_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azlin_operator::controllers::KINDS;
use local_support::{Session, root, run_local, tool};

/// The commands of the README's ```sh blocks, continuation lines joined, comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = match line.find(" #") {
            Some(i) if !line[..i].contains('\'') => &line[..i],
            _ => line,
        };
        let code = code.trim();
        if let Some(head) = code.strip_suffix('\\') {
            current.push_str(head.trim());
            current.push(' ');
            continue;
        }
        current.push_str(code);
        if !current.trim().is_empty() {
            commands.push(current.trim().to_string());
        }
        current.clear();
    }
    commands
}

/// The words of `command`, with the README's placeholders filled in as a user would.
fn words(command: &str) -> Vec<String> {
    let example_id = "6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c";
    let filled = command
        .replace("<subscription-id>", example_id)
        .replace("<client-id>", example_id)
        .replace("<tenant-id>", example_id);
    assert!(
        !filled.contains('<'),
        "unknown placeholder in README command: {command}"
    );
    filled.split_whitespace().map(String::from).collect()
}

fn run_tool(name: &str, args: &[String], kubeconfig: Option<&Path>) -> String {
    let home = tempfile::tempdir().expect("tempdir");
    let mut c = Command::new(tool(name));
    c.args(args)
        .current_dir(root())
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null());
    if let Some(k) = kubeconfig {
        c.env("KUBECONFIG", k);
    }
    let out = c.output().expect("run tool");
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `command` with `sh -c`, the tools of `.tools/bin` first on PATH and `kubeconfig`.
fn run_shell(command: &str, kubeconfig: &Path) -> String {
    let home = tempfile::tempdir().expect("tempdir");
    let bin = tool("kubectl");
    let dir = bin.parent().expect("tools dir");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(root())
        .env("PATH", path)
        .env("HOME", home.path())
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{command}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo run --release -- local …` as written: exit 0 exactly when every kind in the
/// samples has a controller in this build.
fn local_as_written(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_local(&args[1..], &[], Duration::from_secs(600));
    let dir = args
        .iter()
        .skip_while(|a| **a != "-f")
        .nth(1)
        .expect("-f DIR");
    if dir.contains("invalid") {
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(run.stdout.contains("nothing was applied"), "{}", run.stdout);
        return;
    }
    let every_kind = ["AzlinVM", "SharedStorage", "Fleet", "Backup"]
        .iter()
        .all(|k| KINDS.contains(k));
    assert_eq!(
        run.code == 0,
        every_kind,
        "exit {}:\n{}",
        run.code,
        run.stdout
    );
}

/// `cargo run --release -- emulator …` as written: it answers ARM on the given address.
fn emulator_as_written(args: &[String]) {
    let listen = args
        .iter()
        .skip_while(|a| *a != "--listen")
        .nth(1)
        .expect("--listen ADDR")
        .clone();
    let mut child = Command::new(env!("CARGO_BIN_EXE_azlin-operator"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the emulator");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        if let Ok(mut s) = TcpStream::connect(&listen) {
            let request = format!(
                "GET /subscriptions?api-version=2022-12-01 HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer readme\r\nConnection: close\r\n\r\n"
            );
            s.write_all(request.as_bytes()).expect("send");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not listen on {listen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn every_readme_command_runs_as_written() {
    let commands = readme_commands();
    assert!(commands.len() >= 10, "{commands:#?}");
    let mut cluster: Option<Session> = None;
    let mut ran = Vec::new();
    for command in &commands {
        let w = words(command);
        match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["cargo", "run", "--release", "--", "local", ..] => local_as_written(&w[4..]),
            ["cargo", "run", "--release", "--", "emulator", ..] => emulator_as_written(&w[4..]),
            // The command that runs this test.
            ["bash", "scripts/test.sh"] => continue,
            // Docker cannot run here: the Dockerfile it builds must exist.
            ["docker", ..] => {
                assert!(root().join("Dockerfile").is_file());
                continue;
            }
            ["helm", "install", release, chart, rest @ ..] => {
                let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                let mut template = vec![
                    "template".to_string(),
                    release.to_string(),
                    chart.to_string(),
                ];
                template.extend(rest.iter().cloned());
                let out = run_tool("helm", &template, None);
                assert!(out.contains("kind: Deployment"), "{out}");
                let mut lint = vec!["lint".to_string(), chart.to_string()];
                for pair in rest.windows(2).filter(|p| p[0] == "--set") {
                    lint.extend(pair.iter().cloned());
                }
                run_tool("helm", &lint, None);
            }
            ["kubectl", ..] => {
                let session = cluster.get_or_insert_with(|| {
                    let mut s = Session::start(&[
                        "-f",
                        "config/samples/azlinvm.yaml",
                        "-f",
                        "config/samples/sharedstorage.yaml",
                        "-f",
                        "config/samples/backup.yaml",
                        "--latency-ms",
                        "20",
                        "--serve-api",
                        "127.0.0.1:0",
                        "--keep-running",
                    ]);
                    s.wait_for_line(|l| l.starts_with("running until Ctrl-C"));
                    s
                });
                // Through a shell, as a user types it (quotes, `$(date ...)`).
                let out = run_shell(&words(command).join(" "), &session.kubeconfig());
                if w[1] == "get" && w[2] == "azlin" {
                    assert!(
                        out.contains("devbox") && out.contains("team-share"),
                        "{out}"
                    );
                }
            }
            _ => panic!(
                "README command not handled by this test: {command}\n(run it here, or skip it with a reason)"
            ),
        }
        ran.push(command.clone());
    }
    if let Some(session) = cluster {
        session.interrupt();
    }
    assert!(
        ran.iter()
            .any(|c| c.starts_with("kubectl apply -k config/samples")),
        "{ran:#?}"
    );
    assert!(
        ran.iter().any(|c| c.starts_with("kubectl wait avm/devbox")),
        "{ran:#?}"
    );
}
