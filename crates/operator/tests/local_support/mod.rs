//! Running `azlin-operator local` as a user would, with a deadline on every run, for the
//! local-mode tests.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository root (where the README's commands run).
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write manifest");
}

/// A finished run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

fn command(args: &[&str], envs: &[(&str, &OsStr)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_azlin-operator"));
    c.arg("local")
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = r.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Waits for `child` until `limit`; kills it and fails the test after that.
fn finish(mut child: Child, out: std::thread::JoinHandle<String>, limit: Duration) -> Run {
    let err = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`local` still running after {limit:?}; stdout:\n{}\nstderr:\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}

/// Runs `local ARGS` with extra environment variables; fails the test when it is still
/// running after `limit`.
pub fn run_local(args: &[&str], envs: &[(&str, &OsStr)], limit: Duration) -> Run {
    let mut child = command(args, envs)
        .spawn()
        .expect("run azlin-operator local");
    let out = drain(child.stdout.take().expect("stdout"));
    finish(child, out, limit)
}

/// Runs `local ARGS` (at most 10 minutes).
pub fn local(args: &[&str]) -> Run {
    run_local(args, &[], Duration::from_secs(600))
}

/// Splits a table line into its cells (columns are separated by two or more spaces and
/// no cell is empty).
pub fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

/// The rows of the last table printed (KIND, NAME, PHASE, STATE, FOR, REASON, MESSAGE).
pub fn final_table(stdout: &str) -> Vec<Vec<String>> {
    let last = stdout.rsplit("\nKIND ").next().expect("a table");
    last.lines()
        .skip(1)
        .map(cells)
        .take_while(|c| c.len() == 7)
        .collect()
}

/// `kubectl ARGS` against `kubeconfig`; its stdout, failing the test on an error.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(tool("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path of tool `name` from `.tools/bin` or PATH; fails the test with the install command
/// otherwise.
pub fn tool(name: &str) -> PathBuf {
    let local = root().join(".tools/bin").join(name);
    if local.is_file() {
        return local;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`{name}` not found in .tools/bin or PATH: run `scripts/install-test-tools.sh`")
        })
}

/// A `local` still running, read line by line.
pub struct Session {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Session {
    /// Starts `local ARGS`.
    pub fn start(args: &[&str]) -> Self {
        let mut child = command(args, &[])
            .spawn()
            .expect("run azlin-operator local");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most two minutes) for a line matching `pred` and returns it.
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no such line within 2 minutes; seen:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// The kubeconfig named by the `KUBECONFIG=` hint.
    pub fn kubeconfig(&self) -> PathBuf {
        let hint = self
            .seen
            .iter()
            .find(|l| l.contains("KUBECONFIG="))
            .expect("a KUBECONFIG= hint");
        let path = hint
            .split("KUBECONFIG=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("a path");
        PathBuf::from(path)
    }

    /// Sends SIGINT (Ctrl-C) and waits (at most a minute) for the exit.
    pub fn interrupt(mut self) -> Run {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -INT {pid}");
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        let seen = std::mem::take(&mut self.seen);
        let out = std::thread::spawn(move || {
            let mut all = seen;
            all.extend(lines.iter());
            all.join("\n") + "\n"
        });
        finish(self.child, out, Duration::from_secs(60))
    }
}
