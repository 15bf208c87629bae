//! russh client: connect with host key verification, authenticate with a
//! private key, run one command with a timeout, and a bounded-concurrency
//! runner shared by all SSH work across VMs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use russh::client::{self, AuthResult, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Semaphore;

use super::keys::{key_data_fingerprint, public_key_fingerprint};
use super::shell::shell_join;

/// How the server's host key is checked. There is deliberately no accept-any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// No fingerprint is known yet: accept the key and report its fingerprint
    /// (in [`CommandOutput::host_key_fingerprint`]) so the caller pins it.
    PinOnFirstContact,
    /// Accept only this `SHA256:...` fingerprint.
    Require(String),
}

impl HostKeyPolicy {
    /// Policy for a stored fingerprint (e.g. `status.hostKeyFingerprint`):
    /// require it when present and non-empty, pin on first contact otherwise.
    pub fn from_stored(fingerprint: Option<&str>) -> Self {
        match fingerprint.map(str::trim) {
            Some(fp) if !fp.is_empty() => HostKeyPolicy::Require(fp.to_owned()),
            _ => HostKeyPolicy::PinOnFirstContact,
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct SshTarget {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (the operator's `--ssh-port`, default 22).
    pub port: u16,
    /// User to authenticate as (the VM's admin user).
    pub user: String,
    /// Private key for public key authentication.
    pub key: Arc<PrivateKey>,
    /// Host key verification.
    pub host_key: HostKeyPolicy,
}

impl std::fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("key", &public_key_fingerprint(self.key.public_key()))
            .field("host_key", &self.host_key)
            .finish()
    }
}

impl SshTarget {
    /// A target; see the field docs.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        key: Arc<PrivateKey>,
        host_key: HostKeyPolicy,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            key,
            host_key,
        }
    }

    /// `host:port` for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What to run on the remote host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshCommand {
    kind: CommandKind,
    timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CommandKind {
    /// `interpreter` is executed and `body` is written to its stdin.
    Script { interpreter: String, body: String },
    /// A command line (already quoted).
    Exec(String),
}

impl SshCommand {
    /// A script fed on stdin to `sh -s`.
    pub fn script(body: impl Into<String>) -> Self {
        Self::script_with(body, "sh -s")
    }

    /// A script fed on stdin to `interpreter` (a trusted command line such as
    /// `sudo -n sh -s`).
    pub fn script_with(body: impl Into<String>, interpreter: impl Into<String>) -> Self {
        Self {
            kind: CommandKind::Script {
                interpreter: interpreter.into(),
                body: body.into(),
            },
            timeout: None,
        }
    }

    /// A program and its arguments; every word is shell-quoted.
    pub fn exec<S: AsRef<str>>(argv: &[S]) -> Self {
        Self {
            kind: CommandKind::Exec(shell_join(argv)),
            timeout: None,
        }
    }

    /// Overrides the runner's command timeout for this command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn command_line(&self) -> &str {
        match &self.kind {
            CommandKind::Script { interpreter, .. } => interpreter,
            CommandKind::Exec(line) => line,
        }
    }

    fn stdin(&self) -> Option<&[u8]> {
        match &self.kind {
            CommandKind::Script { body, .. } => Some(body.as_bytes()),
            CommandKind::Exec(_) => None,
        }
    }
}

/// Result of a command that ran to completion (whatever its exit status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status, if the command exited normally.
    pub exit_status: Option<u32>,
    /// Name of the signal that killed the command, if any.
    pub exit_signal: Option<String>,
    /// Standard output (lossy UTF-8), at most [`SshConfig::max_output_bytes`].
    pub stdout: String,
    /// Standard error (lossy UTF-8), at most [`SshConfig::max_output_bytes`].
    pub stderr: String,
    /// Whether stdout or stderr was cut off.
    pub truncated: bool,
    /// Fingerprint of the host key the server presented (`SHA256:...`);
    /// store it when the policy was [`HostKeyPolicy::PinOnFirstContact`].
    pub host_key_fingerprint: String,
}

impl CommandOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }

    /// `Ok(self)` on exit status 0, [`SshError::CommandFailed`] otherwise.
    pub fn check(self) -> Result<Self, SshError> {
        if self.success() {
            Ok(self)
        } else {
            Err(SshError::CommandFailed {
                exit: self.exit_status,
                signal: self.exit_signal,
                stderr: self.stderr,
            })
        }
    }
}

/// Phase of an SSH operation, used in timeout errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshPhase {
    /// TCP connect, key exchange and authentication.
    Connect,
    /// Running the command.
    Command,
}

impl std::fmt::Display for SshPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SshPhase::Connect => "connect",
            SshPhase::Command => "command",
        })
    }
}

/// SSH failures. [`SshError::is_transient`] tells whether retrying later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// TCP connection or SSH handshake failed (transient).
    #[error("cannot connect to {address}: {message}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Cause.
        message: String,
    },
    /// A phase did not finish in time (transient).
    #[error("SSH {phase} timed out after {after:?}")]
    Timeout {
        /// Which phase timed out.
        phase: SshPhase,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The server rejected the key: the key Secret or the VM's authorized keys need
    /// fixing — or cloud-init has not installed the key yet, which is why the controller
    /// retries it with backoff.
    #[error("authentication as {user} was rejected: {message}")]
    Auth {
        /// User name.
        user: String,
        /// Detail.
        message: String,
    },
    /// The host key differs from the pinned one (terminal: possible
    /// man-in-the-middle or a re-created VM; needs a human).
    #[error("host key mismatch: expected {expected}, server presented {actual}")]
    HostKeyMismatch {
        /// Stored fingerprint.
        expected: String,
        /// Fingerprint the server presented.
        actual: String,
    },
    /// The command exited unsuccessfully (transient: it is retried on the
    /// next reconcile).
    #[error("remote command failed ({}): {stderr}", describe_exit(*.exit, .signal.as_deref()))]
    CommandFailed {
        /// Exit status, if it exited.
        exit: Option<u32>,
        /// Signal name, if it was killed.
        signal: Option<String>,
        /// Standard error (bounded).
        stderr: String,
    },
    /// SSH protocol or channel error after connecting (transient).
    #[error("SSH protocol error: {0}")]
    Protocol(String),
}

fn describe_exit(exit: Option<u32>, signal: Option<&str>) -> String {
    match (exit, signal) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "no exit status".to_owned(),
    }
}

impl SshError {
    /// Whether retrying later may succeed (connection trouble, timeouts,
    /// command failures) as opposed to needing a configuration change
    /// (authentication rejected, host key mismatch).
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Connect { .. }
            | SshError::Timeout { .. }
            | SshError::CommandFailed { .. }
            | SshError::Protocol(_) => true,
            SshError::Auth { .. } | SshError::HostKeyMismatch { .. } => false,
        }
    }

    /// Short stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SshError::Connect { .. } => "connect",
            SshError::Timeout { .. } => "timeout",
            SshError::Auth { .. } => "auth",
            SshError::HostKeyMismatch { .. } => "host_key_mismatch",
            SshError::CommandFailed { .. } => "command_failed",
            SshError::Protocol(_) => "protocol",
        }
    }

    /// Errors worth retrying immediately with backoff: nothing was run yet.
    fn is_retryable_connect(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::Timeout {
                    phase: SshPhase::Connect,
                    ..
                }
        )
    }
}

/// Timeouts, limits and retry settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshConfig {
    /// Limit for TCP connect + key exchange + authentication (per attempt).
    pub connect_timeout: Duration,
    /// Default limit for running a command.
    pub command_timeout: Duration,
    /// Maximum bytes kept of stdout and of stderr each.
    pub max_output_bytes: usize,
    /// Maximum number of SSH operations in flight across all VMs.
    pub max_concurrency: usize,
    /// Extra connection attempts after a transient connect failure.
    pub connect_retries: usize,
    /// First backoff delay between connection attempts.
    pub retry_min_delay: Duration,
    /// Largest backoff delay between connection attempts.
    pub retry_max_delay: Duration,
    /// Interval of SSH keepalives while a command runs.
    pub keepalive_interval: Duration,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(600),
            max_output_bytes: 256 * 1024,
            max_concurrency: 10,
            connect_retries: 3,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
        }
    }
}

/// Counts SSH operations; implement it on top of the operator's metrics.
/// All methods default to doing nothing.
pub trait SshObserver: Send + Sync {
    /// An operation got a concurrency permit and starts connecting.
    fn started(&self, _target: &SshTarget) {}
    /// A connection attempt failed transiently and is retried after `delay`.
    fn connect_retry(&self, _target: &SshTarget, _error: &SshError, _delay: Duration) {}
    /// An operation ended; `result` is `Ok` when the command ran to
    /// completion (whatever its exit status).
    fn finished(
        &self,
        _target: &SshTarget,
        _result: Result<&CommandOutput, &SshError>,
        _elapsed: Duration,
    ) {
    }
}

/// Observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl SshObserver for NoopObserver {}

/// Runs SSH commands with at most [`SshConfig::max_concurrency`] in flight.
/// Cheap to clone; clones share the limit.
#[derive(Clone)]
pub struct SshRunner {
    inner: Arc<RunnerInner>,
}

struct RunnerInner {
    config: SshConfig,
    client_config: Arc<client::Config>,
    permits: Semaphore,
    observer: Arc<dyn SshObserver>,
}

impl std::fmt::Debug for SshRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRunner")
            .field("config", &self.inner.config)
            .field("available_permits", &self.inner.permits.available_permits())
            .finish()
    }
}

impl SshRunner {
    /// A runner without observer. `max_concurrency` is raised to at least 1.
    pub fn new(config: SshConfig) -> Self {
        Self::with_observer(config, Arc::new(NoopObserver))
    }

    /// A runner reporting to `observer`.
    pub fn with_observer(mut config: SshConfig, observer: Arc<dyn SshObserver>) -> Self {
        config.max_concurrency = config.max_concurrency.max(1);
        let client_config = client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(config.keepalive_interval),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        };
        Self {
            inner: Arc::new(RunnerInner {
                permits: Semaphore::new(config.max_concurrency),
                client_config: Arc::new(client_config),
                config,
                observer,
            }),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &SshConfig {
        &self.inner.config
    }

    /// Connects to `target` (retrying transient connect failures with
    /// exponential backoff), verifies the host key, authenticates, runs
    /// `command` and returns its output. A non-zero exit status is not an
    /// error here; use [`CommandOutput::check`] for that.
    pub async fn run(
        &self,
        target: &SshTarget,
        command: &SshCommand,
    ) -> Result<CommandOutput, SshError> {
        let inner = &self.inner;
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|_| SshError::Protocol("SSH runner is shut down".into()))?;
        inner.observer.started(target);
        let started = Instant::now();
        let result = self.run_permitted(target, command).await;
        inner
            .observer
            .finished(target, result.as_ref(), started.elapsed());
        result
    }

    async fn run_permitted(
        &self,
        target: &SshTarget,
        command: &SshCommand,
    ) -> Result<CommandOutput, SshError> {
        let config = &self.inner.config;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(config.retry_min_delay)
            .with_max_delay(config.retry_max_delay)
            .with_max_times(config.connect_retries)
            .with_jitter();
        let (mut session, fingerprint) = (|| self.connect(target))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(SshError::is_retryable_connect)
            .notify(|err, delay| self.inner.observer.connect_retry(target, err, delay))
            .await?;
        let timeout = command.timeout.unwrap_or(config.command_timeout);
        let result = tokio::time::timeout(
            timeout,
            exec(&mut session, command, config.max_output_bytes),
        )
        .await
        .unwrap_or(Err(SshError::Timeout {
            phase: SshPhase::Command,
            after: timeout,
        }));
        // Best effort: the connection is dropped either way.
        let _ = session
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        let (exit_status, exit_signal, stdout, stderr, truncated) = result?;
        Ok(CommandOutput {
            exit_status,
            exit_signal,
            stdout,
            stderr,
            truncated,
            host_key_fingerprint: fingerprint,
        })
    }

    /// One attempt: TCP connect, handshake with host key check, authentication.
    async fn connect(
        &self,
        target: &SshTarget,
    ) -> Result<(Handle<ClientHandler>, String), SshError> {
        let limit = self.inner.config.connect_timeout;
        let observed = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            policy: target.host_key.clone(),
            observed: observed.clone(),
        };
        let attempt = async {
            let mut session = client::connect(
                self.inner.client_config.clone(),
                (target.host.as_str(), target.port),
                handler,
            )
            .await
            .map_err(|e| e.into_ssh_error(target))?;
            let hash_alg = session
                .best_supported_rsa_hash()
                .await
                .map_err(|e| SshError::Protocol(e.to_string()))?
                .flatten();
            let auth = session
                .authenticate_publickey(
                    target.user.clone(),
                    PrivateKeyWithHashAlg::new(target.key.clone(), hash_alg),
                )
                .await
                .map_err(|e| SshError::Protocol(format!("during authentication: {e}")))?;
            match auth {
                AuthResult::Success => Ok(session),
                AuthResult::Failure {
                    remaining_methods, ..
                } => Err(SshError::Auth {
                    user: target.user.clone(),
                    message: format!(
                        "public key not accepted (server allows: {})",
                        method_names(&remaining_methods)
                    ),
                }),
            }
        };
        let session =
            tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or(Err(SshError::Timeout {
                    phase: SshPhase::Connect,
                    after: limit,
                }))?;
        let fingerprint = observed
            .lock()
            .map_err(|_| SshError::Protocol("host key state poisoned".into()))?
            .clone()
            .ok_or_else(|| SshError::Protocol("server host key was never checked".into()))?;
        Ok((session, fingerprint))
    }
}

fn method_names(methods: &russh::MethodSet) -> String {
    let names: Vec<&str> = methods.iter().map(<&str>::from).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

type ExecOutcome = (Option<u32>, Option<String>, String, String, bool);

/// Opens a session channel, runs the command, feeds stdin, collects output.
async fn exec(
    session: &mut Handle<ClientHandler>,
    command: &SshCommand,
    max_output: usize,
) -> Result<ExecOutcome, SshError> {
    let proto = |e: russh::Error| SshError::Protocol(e.to_string());
    let mut channel = session.channel_open_session().await.map_err(proto)?;
    channel
        .exec(true, command.command_line().as_bytes())
        .await
        .map_err(proto)?;
    if let Some(stdin) = command.stdin() {
        channel.data(stdin).await.map_err(proto)?;
    }
    channel.eof().await.map_err(proto)?;
    let mut stdout = BoundedBuf::new(max_output);
    let mut stderr = BoundedBuf::new(max_output);
    let mut exit_status = None;
    let mut exit_signal = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => stdout.push(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => stderr.push(&data),
            ChannelMsg::ExitStatus { exit_status: code } => exit_status = Some(code),
            ChannelMsg::ExitSignal {
                signal_name,
                error_message,
                ..
            } => {
                exit_signal = Some(format!("{signal_name:?}"));
                if !error_message.is_empty() {
                    stderr.push(error_message.as_bytes());
                }
            }
            ChannelMsg::Failure => {
                return Err(SshError::Protocol(
                    "server refused to run the command".into(),
                ));
            }
            _ => {}
        }
    }
    if exit_status.is_none() && exit_signal.is_none() {
        return Err(SshError::Protocol(
            "the connection closed before the command reported an exit status".into(),
        ));
    }
    let truncated = stdout.truncated || stderr.truncated;
    Ok((
        exit_status,
        exit_signal,
        stdout.into_string(),
        stderr.into_string(),
        truncated,
    ))
}

struct BoundedBuf {
    data: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl BoundedBuf {
    fn new(limit: usize) -> Self {
        Self {
            data: Vec::new(),
            limit,
            truncated: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn into_string(self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// russh client handler enforcing the [`HostKeyPolicy`].
struct ClientHandler {
    policy: HostKeyPolicy,
    observed: Arc<Mutex<Option<String>>>,
}

/// Errors surfacing from `russh::client::connect`.
#[derive(Debug)]
enum HandlerError {
    Russh(russh::Error),
    HostKeyMismatch { expected: String, actual: String },
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

impl HandlerError {
    fn into_ssh_error(self, target: &SshTarget) -> SshError {
        match self {
            HandlerError::HostKeyMismatch { expected, actual } => {
                SshError::HostKeyMismatch { expected, actual }
            }
            HandlerError::Russh(russh::Error::IO(e)) => SshError::Connect {
                address: target.address(),
                message: e.to_string(),
            },
            HandlerError::Russh(
                e @ (russh::Error::Disconnect
                | russh::Error::HUP
                | russh::Error::ConnectionTimeout
                | russh::Error::KeepaliveTimeout
                | russh::Error::InactivityTimeout),
            ) => SshError::Connect {
                address: target.address(),
                message: e.to_string(),
            },
            HandlerError::Russh(e) => {
                SshError::Protocol(format!("handshake with {} failed: {e}", target.address()))
            }
        }
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let actual = match server_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                public_key_fingerprint(key)
            }
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => {
                key_data_fingerprint(cert.public_key())
            }
        };
        if let Ok(mut slot) = self.observed.lock() {
            *slot = Some(actual.clone());
        }
        match &self.policy {
            HostKeyPolicy::PinOnFirstContact => Ok(true),
            HostKeyPolicy::Require(expected) if expected.trim() == actual => Ok(true),
            HostKeyPolicy::Require(expected) => Err(HandlerError::HostKeyMismatch {
                expected: expected.trim().to_owned(),
                actual,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_from_stored() {
        assert_eq!(
            HostKeyPolicy::from_stored(None),
            HostKeyPolicy::PinOnFirstContact
        );
        assert_eq!(
            HostKeyPolicy::from_stored(Some("  ")),
            HostKeyPolicy::PinOnFirstContact
        );
        assert_eq!(
            HostKeyPolicy::from_stored(Some("SHA256:abc")),
            HostKeyPolicy::Require("SHA256:abc".into())
        );
    }

    #[test]
    fn error_classification() {
        let mismatch = SshError::HostKeyMismatch {
            expected: "a".into(),
            actual: "b".into(),
        };
        assert!(!mismatch.is_transient());
        assert!(!mismatch.is_retryable_connect());
        let auth = SshError::Auth {
            user: "u".into(),
            message: "m".into(),
        };
        assert!(!auth.is_transient());
        let connect = SshError::Connect {
            address: "h:22".into(),
            message: "refused".into(),
        };
        assert!(connect.is_transient() && connect.is_retryable_connect());
        let cmd_timeout = SshError::Timeout {
            phase: SshPhase::Command,
            after: Duration::from_secs(1),
        };
        assert!(cmd_timeout.is_transient() && !cmd_timeout.is_retryable_connect());
        let failed = SshError::CommandFailed {
            exit: Some(2),
            signal: None,
            stderr: "boom".into(),
        };
        assert!(failed.is_transient());
        assert_eq!(
            failed.to_string(),
            "remote command failed (exit status 2): boom"
        );
        assert_eq!(failed.kind(), "command_failed");
    }

    #[test]
    fn bounded_buffer_truncates() {
        let mut buf = BoundedBuf::new(5);
        buf.push(b"abc");
        buf.push(b"defg");
        assert!(buf.truncated);
        assert_eq!(buf.into_string(), "abcde");
    }

    #[test]
    fn exec_command_is_quoted() {
        let cmd = SshCommand::exec(&["ls", "-l", "a b", "it's"]);
        assert_eq!(cmd.command_line(), "ls -l 'a b' 'it'\\''s'");
        assert!(cmd.stdin().is_none());
        let script = SshCommand::script("echo hi\n");
        assert_eq!(script.command_line(), "sh -s");
        assert_eq!(script.stdin(), Some(&b"echo hi\n"[..]));
    }
}
