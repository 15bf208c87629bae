//! Test support (feature `testing`): [`TestSshd`], the real OpenSSH server
//! (`/usr/sbin/sshd`, Debian package `openssh-server`) as a private process on a
//! loopback port, with a generated host key and client key, no system configuration
//! touched. Killed on drop.

use std::fs;
use std::io::{self, Read as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use tempfile::TempDir;

use super::executor::{HostKeyPolicy, SshTarget};
use super::keys::{GeneratedKeyPair, generate_ed25519};

use super::sandbox::append_line;

/// Where Debian's `openssh-server` installs the daemon.
pub const SSHD_PATH: &str = "/usr/sbin/sshd";
/// How long [`TestSshd::start`] waits for the daemon to listen.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Errors starting a [`TestSshd`].
#[derive(Debug, thiserror::Error)]
pub enum TestSshdError {
    /// `/usr/sbin/sshd` does not exist.
    #[error(
        "{SSHD_PATH} not found: the SSH tests need the real OpenSSH server; \
         install it with `apt-get install -y openssh-server`"
    )]
    SshdMissing,
    /// File system or process error.
    #[error("test sshd: {0}")]
    Io(#[from] io::Error),
    /// Key generation failed.
    #[error("test sshd: {0}")]
    Key(#[from] super::keys::KeyError),
    /// The daemon did not come up.
    #[error("test sshd did not start: {0}")]
    Start(String),
}

/// A private OpenSSH server on `127.0.0.1:<port>` accepting the generated
/// client key for the current user. Killed on drop.
pub struct TestSshd {
    child: Child,
    port: u16,
    user: String,
    client: GeneratedKeyPair,
    client_key: Arc<PrivateKey>,
    host: GeneratedKeyPair,
    dir: TempDir,
}

impl std::fmt::Debug for TestSshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSshd")
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl TestSshd {
    /// Starts the daemon and waits (with a deadline) until it listens.
    /// Fails with [`TestSshdError::SshdMissing`] when OpenSSH is not installed.
    pub fn start() -> Result<Self, TestSshdError> {
        if !Path::new(SSHD_PATH).exists() {
            return Err(TestSshdError::SshdMissing);
        }
        // Privilege separation directory; the daemon refuses to start without it.
        let privsep = Path::new("/run/sshd");
        if is_root() && !privsep.exists() {
            fs::create_dir_all(privsep)?;
            fs::set_permissions(privsep, fs::Permissions::from_mode(0o755))?;
        }
        let dir = tempfile::Builder::new().prefix("azlin-sshd-").tempdir()?;
        let host = generate_ed25519("azlin-test-host")?;
        let client = generate_ed25519("azlin-test-client")?;
        let host_key_path = dir.path().join("ssh_host_ed25519_key");
        write_private(&host_key_path, host.private_key_pem.as_bytes())?;
        let authorized = dir.path().join("authorized_keys");
        write_private(
            &authorized,
            format!("{}\n", client.public_key_line).as_bytes(),
        )?;
        let client_key = Arc::new(client.private_key()?);
        let user = current_user()?;

        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match spawn_sshd(dir.path(), port, &host_key_path, &authorized)? {
                Ok(child) => {
                    return Ok(Self {
                        child,
                        port,
                        user,
                        client,
                        client_key,
                        host,
                        dir,
                    });
                }
                Err(log) => last_error = log,
            }
        }
        Err(TestSshdError::Start(last_error))
    }

    /// Listening port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host to connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// User the client key is authorized for (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Private key the server accepts.
    pub fn client_private_key(&self) -> Arc<PrivateKey> {
        self.client_key.clone()
    }

    /// The accepted client key pair in Secret form.
    pub fn client_key_pair(&self) -> &GeneratedKeyPair {
        &self.client
    }

    /// `SHA256:...` fingerprint of the server's host key.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host.fingerprint
    }

    /// A target for this server with the given host key policy.
    pub fn target(&self, host_key: HostKeyPolicy) -> SshTarget {
        SshTarget {
            host: self.host().to_owned(),
            port: self.port,
            user: self.user.clone(),
            key: self.client_key.clone(),
            host_key,
        }
    }

    /// Also accepts `public_key_line` (`ssh-ed25519 AAAA... comment`), e.g. the
    /// key the operator generated for a VM. sshd re-reads the file on every
    /// connection, so this takes effect immediately.
    pub fn authorize_public_key(&self, public_key_line: &str) -> io::Result<()> {
        append_line(
            &self.dir.path().join("authorized_keys"),
            public_key_line.trim(),
        )
    }

    /// Restarts the daemon on the same port with a newly generated host key
    /// (like a VM re-created behind the same address). Returns the new
    /// fingerprint.
    pub fn rotate_host_key(&mut self) -> Result<String, TestSshdError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let host = generate_ed25519("azlin-test-host")?;
        let host_key_path = self.dir.path().join("ssh_host_ed25519_key");
        write_private(&host_key_path, host.private_key_pem.as_bytes())?;
        let authorized = self.dir.path().join("authorized_keys");
        match spawn_sshd(self.dir.path(), self.port, &host_key_path, &authorized)? {
            Ok(child) => {
                self.child = child;
                self.host = host;
                Ok(self.host.fingerprint.clone())
            }
            Err(log) => Err(TestSshdError::Start(log)),
        }
    }

    /// The daemon's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn current_user() -> io::Result<String> {
    let out = Command::new("id").arg("-un").output()?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || name.is_empty() {
        return Err(io::Error::other(
            "cannot determine the current user (id -un)",
        ));
    }
    Ok(name)
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// A port the OS considers free right now. sshd cannot be told to bind port
/// 0 and report it, so the (small) race with other processes is handled by
/// retrying when the daemon fails to bind.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Spawns sshd; `Ok(Err(log))` when it exited before listening.
fn spawn_sshd(
    dir: &Path,
    port: u16,
    host_key: &Path,
    authorized: &Path,
) -> io::Result<Result<Child, String>> {
    let config_path = dir.join("sshd_config");
    let config = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         AddressFamily inet\n\
         HostKey {host_key}\n\
         PidFile none\n\
         UsePAM no\n\
         StrictModes no\n\
         AuthorizedKeysFile {authorized}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UseDNS no\n\
         MaxStartups 100\n\
         MaxSessions 50\n\
         LogLevel INFO\n",
        host_key = host_key.display(),
        authorized = authorized.display(),
    );
    fs::write(&config_path, config)?;
    let log_path = dir.join("sshd.log");
    let log = fs::File::create(&log_path)?;
    let mut child = Command::new(SSHD_PATH)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let ready_line = format!("Server listening on 127.0.0.1 port {port}.");
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&log_path) {
            let _ = f.read_to_string(&mut text);
        }
        if let Some(status) = child.try_wait()? {
            return Ok(Err(format!("sshd exited with {status}: {text}")));
        }
        if text.contains(&ready_line)
            && TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_secs(1),
            )
            .is_ok()
        {
            return Ok(Ok(child));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Err(format!(
                "sshd did not listen within {START_DEADLINE:?}: {text}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_sshd_error_says_what_to_install() {
        let msg = TestSshdError::SshdMissing.to_string();
        assert!(msg.contains("/usr/sbin/sshd"), "{msg}");
        assert!(msg.contains("apt-get install -y openssh-server"), "{msg}");
    }
}
