//! Pure builders of the idempotent POSIX `sh` scripts that converge NFS 4.1
//! (Azure Files) mounts on a VM, and the parser of their per-mount report.
//!
//! The script is a function of the desired [`MountPlan`] and a [`ScriptEnv`]
//! (root prefix and command names, so tests can run it in a sandbox with
//! recording fakes of `mount`, `umount` and the package manager). It
//!
//! - installs the NFS client (`nfs-common`) when `mount.nfs` is missing,
//! - creates mount points and mounts with [`NFS_MOUNT_OPTIONS`] (`ro` added for
//!   read-only mounts) unless already mounted from the same source,
//! - keeps exactly one `/etc/fstab` line per managed mount (options plus
//!   `_netdev,nofail`), each preceded by a marker comment
//!   [`FSTAB_MARKER`]`<path>`; lines without the marker are never modified,
//! - unmounts managed mounts that are no longer desired and drops their lines,
//! - for a shared home: checks the admin user's uid/gid, keeps per-VM
//!   `authorized_keys` on the local disk (sshd `AuthorizedKeysFile` drop-in),
//!   seeds an empty share once from the local home's dotfiles as the admin user
//!   (never overwriting, never copying secrets), then mounts it over the home,
//! - prints one [`REPORT_PREFIX`] line per mount, parsed by
//!   [`MountPlan::interpret`].

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use super::layout::{LAYOUT_REPORT, MountDirs};
pub use super::shell::{shell_join, shell_quote};
pub use crate::api::mount_path::{
    MOUNT_PATH_MAX_LEN, MOUNT_PATH_PATTERN, RESERVED_MOUNT_PATHS, RESERVED_MOUNT_PREFIXES,
    mount_path_cel_rule, validate_mount_path,
};

/// Mount options Azure documents for NFS 4.1 shares.
pub const NFS_MOUNT_OPTIONS: &str = "vers=4,minorversion=1,sec=sys,nconnect=4";
/// Options appended to the mount options in `/etc/fstab`.
pub const FSTAB_EXTRA_OPTIONS: &str = "_netdev,nofail";
/// Comment line (followed by the mount path) placed before each managed fstab line.
pub const FSTAB_MARKER: &str = "# azlin-operator managed mount: ";
/// Prefix of the per-mount report lines: `AZLIN-MOUNT <path> <state> <message>`.
pub const REPORT_PREFIX: &str = "AZLIN-MOUNT";
/// Last line the script prints when it ran to the end.
pub const REPORT_DONE: &str = "AZLIN-MOUNT-DONE";
/// Where per-VM authorized keys are kept when the home directory is shared.
pub const LOCAL_AUTHORIZED_KEYS_DIR: &str = "/etc/ssh/azlin-operator/authorized_keys";
/// sshd drop-in that points `AuthorizedKeysFile` at [`LOCAL_AUTHORIZED_KEYS_DIR`].
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/50-azlin-operator.conf";
/// Temporary mount point used to seed a shared home.
pub const SEED_MOUNT_POINT: &str = "/run/azlin-operator/seed";
/// Directory created on a shared home by the VM that seeds it (acts as a lock).
pub const SEED_MARKER_DIR: &str = ".azlin-operator";

/// Accepted NFS source: `<host>:/<export path>`, e.g.
/// `acct.file.core.windows.net:/acct/share`.
pub const MOUNT_SOURCE_PATTERN: &str =
    r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:(/[A-Za-z0-9._-]+)+$";
/// Accepted admin user name (Debian `adduser` default rule, max 32 chars).
pub const USER_NAME_PATTERN: &str = r"^[a-z_][a-z0-9_-]{0,31}$";

/// File names (glob, case-insensitive, any depth) never copied when seeding a shared home.
pub const SECRET_NAME_PATTERNS: &[&str] = &[
    "id_*",
    "identity",
    "*.pem",
    "*.key",
    "*.pfx",
    "*.p12",
    "*.ppk",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "authorized_keys",
    "authorized_keys2",
    ".env",
    ".env.*",
    "*.env",
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".vault-token",
    ".npmrc",
    ".pypirc",
    ".boto",
    ".s3cfg",
    "*credential*",
    "*secret*",
    "*token*",
];
/// Paths relative to the home directory not copied when seeding because they
/// are machine-local or bulky rather than configuration.
pub const SEED_SKIPPED_HOME_PATHS: &[&str] = &[".cache", ".local/share/Trash"];
/// Public halves that match [`SECRET_NAME_PATTERNS`] (`id_*`) but are copied.
pub const SECRET_NAME_EXCEPTIONS: &[&str] = &["id_*.pub"];
/// Paths relative to the home directory never copied when seeding (cloud
/// credentials, key rings, credential stores).
pub const SECRET_HOME_PATHS: &[&str] = &[
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh/hosts.yml",
    ".docker/config.json",
    ".gnupg",
    ".kube",
    ".local/share/keyrings",
    ".password-store",
    ".terraform.d",
];

static MOUNT_SOURCE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(MOUNT_SOURCE_PATTERN).expect("MOUNT_SOURCE_PATTERN is a valid regex")
});
static USER_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(USER_NAME_PATTERN).expect("USER_NAME_PATTERN is a valid regex"));

/// Checks an NFS source `<host>:/<path>`.
pub fn validate_mount_source(source: &str) -> Result<(), String> {
    let path_ok = source
        .split_once(':')
        .is_some_and(|(_, p)| p.split('/').skip(1).all(|c| c != "." && c != ".."));
    if MOUNT_SOURCE_RE.is_match(source) && path_ok {
        Ok(())
    } else {
        Err(format!(
            "NFS source {source:?} must look like <account>.file.core.windows.net:/<account>/<share>"
        ))
    }
}

/// Checks an admin user name.
pub fn validate_user_name(user: &str) -> Result<(), String> {
    if USER_NAME_RE.is_match(user) {
        Ok(())
    } else {
        Err(format!("user name {user:?} must match {USER_NAME_PATTERN}"))
    }
}

/// NFS source of an Azure Files share: `<account>.file.core.windows.net:/<account>/<share>`.
pub fn azure_files_source(account: &str, share: &str) -> String {
    format!("{account}.file.core.windows.net:/{account}/{share}")
}

/// One desired NFS mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfsMount {
    /// `<host>:/<export>`, see [`azure_files_source`].
    pub source: String,
    /// Absolute mount point, see [`validate_mount_path`].
    pub path: String,
    /// Mount read-only.
    pub read_only: bool,
    /// The storage template's directories (none without a template).
    pub dirs: MountDirs,
}

/// A share mounted over the admin user's home directory on every VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedHome {
    /// `<host>:/<export>`, see [`azure_files_source`].
    pub source: String,
    /// Admin user whose home is shared (e.g. `azureuser`).
    pub user: String,
    /// uid the admin user must have on every VM (cloud-init: 1000).
    pub uid: u32,
    /// gid the admin user must have on every VM (cloud-init: 1000).
    pub gid: u32,
}

impl SharedHome {
    /// Default uid/gid of the first cloud-init user.
    pub const DEFAULT_ID: u32 = 1000;

    /// Shared home for `user` with uid/gid 1000.
    pub fn new(source: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            user: user.into(),
            uid: Self::DEFAULT_ID,
            gid: Self::DEFAULT_ID,
        }
    }

    /// The home directory the share is mounted on: `/home/<user>`.
    pub fn path(&self) -> String {
        format!("/home/{}", self.user)
    }
}

/// Everything that should be mounted on one VM. Managed mounts on the VM that
/// are not in the plan are unmounted and removed from `/etc/fstab`, so an empty
/// plan removes all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountPlan {
    /// Plain NFS mounts.
    pub mounts: Vec<NfsMount>,
    /// Optional shared home.
    pub shared_home: Option<SharedHome>,
    /// Content of the environment file [`ENV_FILE`] (a Fleet's `spec.env`); `None` removes
    /// the file when the operator wrote it.
    pub env: Option<String>,
}

/// The environment file of a Fleet's members, read by every login shell.
pub const ENV_FILE: &str = "/etc/profile.d/azlin-fleet.sh";
/// First line of [`ENV_FILE`]; a file without it is never touched.
pub const ENV_FILE_MARKER: &str = "# Managed by azlin-operator";

/// The content of [`ENV_FILE`] for `env`: one `export NAME='value'` line per variable,
/// values quoted for the shell (keys are shell names, validated by the schema).
pub fn env_file(fleet: &str, env: &std::collections::BTreeMap<String, String>) -> String {
    let mut s =
        format!("{ENV_FILE_MARKER}: the environment of Fleet {fleet}. Edits are overwritten.\n");
    for (k, v) in env {
        let _ = writeln!(s, "export {k}={}", shell_quote(v));
    }
    s
}

/// Why a [`MountPlan`] cannot be turned into a script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A mount path is not acceptable.
    #[error("{0}")]
    InvalidPath(String),
    /// An NFS source is not acceptable.
    #[error("{0}")]
    InvalidSource(String),
    /// The shared-home user name is not acceptable.
    #[error("{0}")]
    InvalidUser(String),
    /// A storage template directory is not acceptable.
    #[error("{0}")]
    InvalidDirectory(String),
    /// Two entries use the same mount point.
    #[error("mount path {0:?} is listed more than once")]
    DuplicatePath(String),
    /// One mount point lies inside another.
    #[error(
        "mount path {inner:?} lies inside mount path {outer:?}; nested mounts are not supported"
    )]
    NestedPaths {
        /// Enclosing mount point.
        outer: String,
        /// Nested mount point.
        inner: String,
    },
}

impl MountPlan {
    /// Mount points of the plan, in order (plain mounts, then the shared home).
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.mounts.iter().map(|m| m.path.clone()).collect();
        if let Some(home) = &self.shared_home {
            paths.push(home.path());
        }
        paths
    }

    /// Checks every path, source and user name, and that no mount point is
    /// repeated or nested inside another.
    pub fn validate(&self) -> Result<(), PlanError> {
        for mount in &self.mounts {
            validate_mount_path(&mount.path).map_err(PlanError::InvalidPath)?;
            validate_mount_source(&mount.source).map_err(PlanError::InvalidSource)?;
            mount.dirs.validate().map_err(PlanError::InvalidDirectory)?;
        }
        if let Some(home) = &self.shared_home {
            validate_user_name(&home.user).map_err(PlanError::InvalidUser)?;
            validate_mount_source(&home.source).map_err(PlanError::InvalidSource)?;
        }
        let paths = self.paths();
        let mut seen = HashSet::new();
        for path in &paths {
            if !seen.insert(path.as_str()) {
                return Err(PlanError::DuplicatePath(path.clone()));
            }
        }
        for outer in &paths {
            for inner in &paths {
                if inner.starts_with(&format!("{outer}/")) {
                    return Err(PlanError::NestedPaths {
                        outer: outer.clone(),
                        inner: inner.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Turns the script's stdout (plus exit status and stderr) into one result
    /// per desired mount, in plan order, followed by results for removed
    /// mounts. A desired mount the script did not report on is `Failed` with
    /// the script's exit status and the tail of its stderr.
    pub fn interpret(
        &self,
        stdout: &str,
        exit_status: Option<u32>,
        stderr: &str,
    ) -> Vec<MountResult> {
        let report = parse_mount_report(stdout);
        let mut results = Vec::new();
        let wanted = self.paths();
        for path in &wanted {
            match report.results.iter().find(|r| &r.path == path) {
                Some(found) => results.push(found.clone()),
                None => results.push(MountResult {
                    path: path.clone(),
                    state: MountState::Failed,
                    message: missing_report_message(report.completed, exit_status, stderr),
                }),
            }
        }
        for result in report.results {
            if !wanted.contains(&result.path) && !results.iter().any(|r| r.path == result.path) {
                results.push(result);
            }
        }
        results
    }
}

fn missing_report_message(completed: bool, exit_status: Option<u32>, stderr: &str) -> String {
    let status = match exit_status {
        Some(code) => format!("exit status {code}"),
        None => "no exit status".to_owned(),
    };
    let tail: String = {
        let trimmed = stderr.trim();
        let start = trimmed.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
        trimmed[start..].replace(['\n', '\r', '\t'], " ")
    };
    let what = if completed {
        "mount script finished without reporting this mount"
    } else {
        "mount script did not finish"
    };
    if tail.is_empty() {
        format!("{what} ({status})")
    } else {
        format!("{what} ({status}): {tail}")
    }
}

/// State of one mount after a script run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MountState {
    /// Mounted (and persisted in `/etc/fstab`).
    Mounted,
    /// No longer desired: unmounted and removed from `/etc/fstab`.
    Unmounted,
    /// Could not be converged; see the message.
    Failed,
}

impl MountState {
    /// The word used in report lines and status.
    pub fn as_str(self) -> &'static str {
        match self {
            MountState::Mounted => "Mounted",
            MountState::Unmounted => "Unmounted",
            MountState::Failed => "Failed",
        }
    }

    fn from_report(word: &str) -> Option<Self> {
        match word {
            "mounted" => Some(MountState::Mounted),
            "unmounted" => Some(MountState::Unmounted),
            "failed" => Some(MountState::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for MountState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome for one mount point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountResult {
    /// Mount point.
    pub path: String,
    /// Resulting state.
    pub state: MountState,
    /// Human-readable detail; the error text when `state` is `Failed`.
    pub message: String,
}

/// Parsed report lines of one script run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountReport {
    /// One entry per reported mount point (first report wins).
    pub results: Vec<MountResult>,
    /// Whether the script printed [`REPORT_DONE`].
    pub completed: bool,
    /// The environment file's result: `Ok(what was done)` or `Err(why it failed)`.
    pub env: Option<Result<String, String>>,
}

/// Parses `AZLIN-MOUNT <path> <state> <message>` lines; other lines are ignored.
pub fn parse_mount_report(stdout: &str) -> MountReport {
    let mut report = MountReport::default();
    for line in stdout.lines() {
        let line = line.trim_end_matches('\r');
        if line == REPORT_DONE {
            report.completed = true;
            continue;
        }
        if let Some(rest) = line
            .strip_prefix(REPORT_PREFIX)
            .and_then(|r| r.strip_prefix("-ENV "))
        {
            let (state, message) = rest.split_once(' ').unwrap_or((rest, ""));
            report.env = Some(match state {
                "ok" => Ok(message.trim().to_owned()),
                _ => Err(message.trim().to_owned()),
            });
            continue;
        }
        let Some(rest) = line
            .strip_prefix(REPORT_PREFIX)
            .and_then(|r| r.strip_prefix(' '))
        else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(path), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(state) = MountState::from_report(state) else {
            continue;
        };
        if path.is_empty() || report.results.iter().any(|r| r.path == path) {
            continue;
        }
        report.results.push(MountResult {
            path: path.to_owned(),
            state,
            message: parts.next().unwrap_or("").trim().to_owned(),
        });
    }
    report
}

/// Where and how the script runs. The command fields are trusted shell
/// snippets from the operator's configuration (never from user input); they
/// become bodies of small shell functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptEnv {
    /// Prefix for every file path the script touches (`""` in production, a
    /// sandbox directory in tests). The mount table is not prefixed.
    pub root: String,
    /// Remote command that reads the script from stdin, e.g. `sudo -n sh -s`.
    pub shell: String,
    /// Table of current mounts, `/proc/self/mounts` format.
    pub mount_table: String,
    /// `mount` command; called as `<mount> -t nfs -o <opts> <source> <target>`.
    pub mount: String,
    /// `umount` command; called as `<umount> <target>`.
    pub umount: String,
    /// Installs the NFS client; called without arguments.
    pub install_nfs_client: String,
    /// `id` command; called as `<id> -u <user>` and `<id> -g <user>`.
    pub id: String,
    /// Runs a command as another user; called as `<run_as_user> <user> -- <cmd> <args>...`.
    pub run_as_user: String,
    /// Validates and reloads sshd after the drop-in changed; called without arguments.
    pub reload_sshd: String,
}

impl ScriptEnv {
    /// Settings for a real Ubuntu/Debian VM, the script run as root via `sudo`.
    pub fn production() -> Self {
        Self {
            root: String::new(),
            // Leave the login directory first: sshd starts commands in the user's home,
            // and a shell sitting there would keep a shared home busy for `umount`.
            shell: "cd / && exec sudo -n sh -s".into(),
            mount_table: "/proc/self/mounts".into(),
            mount: "mount".into(),
            umount: "umount".into(),
            install_nfs_client: "export DEBIAN_FRONTEND=noninteractive; \
                 apt-get -q -o DPkg::Lock::Timeout=300 install -y nfs-common || \
                 { apt-get -q -o DPkg::Lock::Timeout=300 update && \
                 apt-get -q -o DPkg::Lock::Timeout=300 install -y nfs-common; }"
                .into(),
            id: "id".into(),
            run_as_user: "runuser -u".into(),
            // try-reload-or-restart is a no-op success when the unit is not running
            // (socket-activated ssh on Ubuntu 22.10+ reads the config per connection).
            reload_sshd:
                "/usr/sbin/sshd -t && { systemctl try-reload-or-restart ssh.service 2>/dev/null || \
                 systemctl try-reload-or-restart sshd.service; }"
                    .into(),
        }
    }
}

impl Default for ScriptEnv {
    fn default() -> Self {
        Self::production()
    }
}

/// Builds the mount script for `plan`. Validates the plan first.
pub fn build_mount_script(plan: &MountPlan, env: &ScriptEnv) -> Result<String, PlanError> {
    plan.validate()?;
    let q = shell_quote;
    let mut s = String::new();
    s.push_str("# azlin-operator mount script (generated; safe to run repeatedly)\n");
    s.push_str("set -u\numask 022\ncd / || exit 1\n");
    let vars = [
        ("ROOT", env.root.as_str()),
        ("MOUNT_TABLE", env.mount_table.as_str()),
        ("BASE_OPTS", NFS_MOUNT_OPTIONS),
        ("FSTAB_EXTRA", FSTAB_EXTRA_OPTIONS),
        ("MARK", FSTAB_MARKER),
        ("REPORT_PREFIX", REPORT_PREFIX),
        ("KEYS_DIR_REAL", LOCAL_AUTHORIZED_KEYS_DIR),
        ("SSHD_DROPIN_REAL", SSHD_DROP_IN),
        ("SEED_MARKER", SEED_MARKER_DIR),
        ("ENV_FILE_REAL", ENV_FILE),
        ("ENV_MARKER", ENV_FILE_MARKER),
        ("LAYOUT_REPORT", LAYOUT_REPORT),
    ];
    for (name, value) in vars {
        let _ = writeln!(s, "{name}={}", q(value));
    }
    s.push_str("FSTAB=\"$ROOT/etc/fstab\"\n");
    let _ = writeln!(s, "SEED_DIR=\"$ROOT\"{}", q(SEED_MOUNT_POINT));
    let _ = writeln!(s, "az_seed_find() {{ {}; }}", seed_find_call());
    let _ = writeln!(s, "az_mount() {{ {} \"$@\"; }}", env.mount);
    let _ = writeln!(s, "az_umount() {{ {} \"$@\"; }}", env.umount);
    let _ = writeln!(
        s,
        "az_install_nfs_client() {{ {}; }}",
        env.install_nfs_client
    );
    let _ = writeln!(s, "az_id() {{ {} \"$@\"; }}", env.id);
    let _ = writeln!(s, "az_as_user() {{ {} \"$@\"; }}", env.run_as_user);
    let _ = writeln!(s, "az_reload_sshd() {{ {}; }}", env.reload_sshd);
    s.push_str(SCRIPT_LIBRARY);
    s.push_str("az_main() {\n  az_init || return 1\n");
    for m in &plan.mounts {
        let ro = if m.read_only { "ro" } else { "rw" };
        let _ = writeln!(s, "  az_want_mount {} {} {ro}", q(&m.source), q(&m.path));
    }
    if let Some(h) = &plan.shared_home {
        let _ = writeln!(
            s,
            "  az_want_home {} {} {} {} {}",
            q(&h.source),
            q(&h.path()),
            q(&h.user),
            h.uid,
            h.gid
        );
    }
    let _ = writeln!(s, "  az_env {}", q(plan.env.as_deref().unwrap_or("")));
    s.push_str("  az_remove_unwanted\n  az_write_fstab\n");
    for m in &plan.mounts {
        let ro = if m.read_only { "ro" } else { "rw" };
        let _ = writeln!(
            s,
            "  az_do_mount {} {} {ro}{}",
            q(&m.source),
            q(&m.path),
            m.dirs.script_args()
        );
    }
    if let Some(h) = &plan.shared_home {
        let _ = writeln!(
            s,
            "  az_do_home {} {} {} {} {}",
            q(&h.source),
            q(&h.path()),
            q(&h.user),
            h.uid,
            h.gid
        );
    }
    s.push_str("  printf '%s\\n' \"$REPORT_PREFIX-DONE\"\n  return \"$AZ_FAILED\"\n}\n");
    // The whole script is parsed before az_main runs, and az_main reads
    // /dev/null, so no command can swallow the rest of the script from stdin.
    s.push_str("az_main </dev/null\n");
    Ok(s)
}

/// Body of `az_seed_find USER DEST`: as USER, walk the current directory
/// (the local home), prune top-level entries that are not dotfiles and all
/// secrets, and copy the rest into DEST without overwriting.
fn seed_find_call() -> String {
    let mut words: Vec<String> = vec![
        "az_as_user".into(),
        "\"$1\"".into(),
        "--".into(),
        "find".into(),
        ".".into(),
        "-mindepth".into(),
        "1".into(),
    ];
    words.push("(".into());
    words.extend(["-path".into(), "./[!.]*".into()]);
    for pattern in SECRET_NAME_PATTERNS {
        words.push("-o".into());
        let exceptions: Vec<&&str> = SECRET_NAME_EXCEPTIONS
            .iter()
            .filter(|e| glob_prefix_matches(pattern, e))
            .collect();
        if exceptions.is_empty() {
            words.extend(["-iname".into(), (*pattern).into()]);
        } else {
            words.extend(["(".into(), "-iname".into(), (*pattern).into()]);
            for e in exceptions {
                words.extend(["!".into(), "-iname".into(), (**e).into()]);
            }
            words.push(")".into());
        }
    }
    for path in SECRET_HOME_PATHS.iter().chain(SEED_SKIPPED_HOME_PATHS) {
        words.extend(["-o".into(), "-path".into(), format!("./{path}")]);
    }
    words.push(")".into());
    words.extend(["-prune".into(), "-o".into()]);
    // The first two words are shell syntax, not literals.
    let (head, tail) = words.split_at(3);
    format!(
        "{} {} -exec sh -c \"$AZ_COPY\" azlin-seed \"$2\" {{}} +",
        head.join(" "),
        shell_join(tail)
    )
}

/// Whether exception glob `e` refines secret glob `p` (same literal prefix before `*`).
fn glob_prefix_matches(p: &str, e: &str) -> bool {
    let prefix = p.split('*').next().unwrap_or("");
    !prefix.is_empty() && e.starts_with(prefix)
}

/// Static part of the script: helper functions, parameterised by the
/// variables and command functions defined before it (`mount.sh`, checked by shellcheck).
const SCRIPT_LIBRARY: &str = include_str!("mount.sh");

#[cfg(test)]
mod tests {
    #[test]
    fn production_script_does_not_run_inside_the_login_home() {
        // A shell whose working directory is the home would keep a shared home busy.
        let env = ScriptEnv::production();
        assert!(env.shell.starts_with("cd / && exec "), "{}", env.shell);
    }

    use super::*;
    use crate::ssh::sandbox::{MountSandbox, SANDBOX_ADMIN};
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    const SRC_A: &str = "acct1.file.core.windows.net:/acct1/data";
    const SRC_B: &str = "acct1.file.core.windows.net:/acct1/models";

    fn mount(source: &str, path: &str, read_only: bool) -> NfsMount {
        NfsMount {
            source: source.into(),
            path: path.into(),
            read_only,
            dirs: MountDirs::default(),
        }
    }

    /// Runs the script for `plan` locally with `sh -s` in `sandbox`.
    fn run_local(plan: &MountPlan, sandbox: &MountSandbox) -> (Vec<MountResult>, String, String) {
        let script = build_mount_script(plan, &sandbox.script_env()).expect("valid plan");
        let mut child = Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write script");
        let out = child.wait_with_output().expect("wait sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().map(|c| c as u32);
        (plan.interpret(&stdout, code, &stderr), stdout, stderr)
    }

    #[test]
    fn accepted_and_rejected_paths() {
        for ok in [
            "/data",
            "/mnt/data",
            "/home/azureuser/shared",
            "/srv/models-v1.2",
            "/opt/x_y",
            "/data/.cache",
            "/data/...",
            "/data/..hidden",
            "/var/cache/pip",
            "/a-b/c.d/E_F/0",
        ] {
            assert_eq!(validate_mount_path(ok), Ok(()), "{ok} should be accepted");
        }
        let long = format!("/{}", "a".repeat(MOUNT_PATH_MAX_LEN));
        for bad in [
            "",
            "/",
            "data",
            "./data",
            "/data/",
            "//data",
            "/data//x",
            "/data/../etc",
            "/data/./x",
            "/..",
            "/.",
            "/data/..",
            "/da ta",
            "/data\n",
            "/data;rm",
            "/data$HOME",
            "/data'x",
            "/dätä",
            "/proc",
            "/proc/x",
            "/sys/fs",
            "/dev/shm",
            "/etc",
            "/etc/ssh",
            "/boot/efi",
            "/usr/local",
            "/run/x",
            "/root",
            "/var/lib/docker",
            "/home",
            "/mnt",
            "/tmp",
            "/var",
            "/home/azureuser",
            "/home/bob",
            "/home/azureuser/.ssh",
            "/home/bob/.ssh/x",
            "/home/azureuser/.config",
            "/home/azureuser/.config/systemd/user",
            "/home/azureuser/.local/bin",
            "/home/azureuser/bin",
            "/home/azureuser/bin/tools",
            "/var/spool/cron",
            "/var/spool/cron/crontabs",
            "/var/spool",
            "/var/mail",
            "/var/lock",
            "/var/snap/lxd",
            "/efi",
            "/etc/sudoers.d",
            "/etc/cron.d",
            "/etc/systemd/system",
            "/usr/lib/systemd",
            "/lib/systemd/system",
            "/root/.ssh",
            long.as_str(),
        ] {
            assert!(
                validate_mount_path(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        // Prefix match is per component: /etcetera and /procs are fine.
        assert_eq!(validate_mount_path("/etcetera"), Ok(()));
        assert_eq!(validate_mount_path("/procs/x"), Ok(()));
        assert_eq!(validate_mount_path("/home/azureuser/binaries"), Ok(()));
        assert_eq!(validate_mount_path("/home/azureuser/data/.cache"), Ok(()));
        assert_eq!(validate_mount_path("/var/spooler"), Ok(()));
    }

    #[test]
    fn pattern_alone_rejects_every_unsafe_character() {
        let re = Regex::new(MOUNT_PATH_PATTERN).expect("regex");
        for c in (0u8..=127).map(char::from) {
            let path = format!("/a{c}b");
            let safe = c.is_ascii_alphanumeric() || "._-/".contains(c);
            assert_eq!(re.is_match(&path), safe, "char {c:?}");
        }
        assert!(!re.is_match("/"));
        assert!(!re.is_match("/a/../b"));
    }

    #[test]
    fn cel_rule_mentions_every_reservation() {
        let rule = mount_path_cel_rule();
        for p in RESERVED_MOUNT_PREFIXES.iter().chain(RESERVED_MOUNT_PATHS) {
            assert!(rule.contains(&format!("'{p}'")), "{p} missing in {rule}");
        }
        assert!(rule.contains("size(self) <= 255"));
        assert!(rule.contains("^/home/[^/]+$"));
        assert!(rule.contains("^/home/[^/]+/(\\\\.|bin(/|$))"), "{rule}");
    }

    #[test]
    fn cel_rule_agrees_with_validate_mount_path() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "x-kubernetes-validations": [{ "rule": mount_path_cel_rule() }]
                }
            }
        });
        let validator = kube::core::cel::Validator::new();
        let long = format!("/{}", "a".repeat(MOUNT_PATH_MAX_LEN));
        for path in [
            "/data",
            "/mnt/data",
            "/data/.cache",
            "/data/...",
            "/etcetera",
            "/home/u/x",
            "/",
            "",
            "data",
            "/data/",
            "/a//b",
            "/a/../b",
            "/.",
            "/da ta",
            "/x;y",
            "/proc",
            "/proc/1",
            "/etc",
            "/var/lib/x",
            "/home",
            "/home/azureuser",
            "/home/azureuser/.ssh",
            "/home/bob/.ssh/keys",
            "/home/azureuser/.config/systemd",
            "/home/azureuser/bin",
            "/home/azureuser/binaries",
            "/home/azureuser/data/.cache",
            "/var/spool/cron",
            "/var/spooler",
            "/var/mail",
            "/etc/sudoers.d",
            "/root/.ssh",
            "/boot/grub",
            "/mnt",
            "/tmp",
            long.as_str(),
        ] {
            let verdict = validator
                .validate(&schema, &serde_json::json!({ "path": path }), None)
                .is_ok();
            assert_eq!(
                verdict,
                validate_mount_path(path).is_ok(),
                "CEL and validate_mount_path disagree on {path:?}"
            );
        }
    }

    #[test]
    fn sources_and_users() {
        assert_eq!(validate_mount_source(SRC_A), Ok(()));
        assert_eq!(
            azure_files_source("acct1", "data"),
            "acct1.file.core.windows.net:/acct1/data"
        );
        for bad in [
            "acct1.file.core.windows.net",
            "acct1.file.core.windows.net:/",
            "acct1.file.core.windows.net:acct1/data",
            "acct1.file.core.windows.net:/acct1/../x",
            "acct1 .file:/a/b",
            "-acct:/a/b",
            "acct:/a/b;reboot",
            "acct:/a/b c",
        ] {
            assert!(validate_mount_source(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_user_name("azureuser"), Ok(()));
        for bad in ["", "Root", "a b", "-x", "x;y", &"a".repeat(33)] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plan_validation() {
        let dup = MountPlan {
            mounts: vec![mount(SRC_A, "/data", false), mount(SRC_B, "/data", true)],
            shared_home: None,
            env: None,
        };
        assert_eq!(
            dup.validate(),
            Err(PlanError::DuplicatePath("/data".into()))
        );
        let nested = MountPlan {
            mounts: vec![
                mount(SRC_A, "/data", false),
                mount(SRC_B, "/data/models", true),
            ],
            shared_home: None,
            env: None,
        };
        assert!(matches!(
            nested.validate(),
            Err(PlanError::NestedPaths { .. })
        ));
        let under_home = MountPlan {
            mounts: vec![mount(SRC_A, "/home/azureuser/data", false)],
            shared_home: Some(SharedHome::new(SRC_B, "azureuser")),
            env: None,
        };
        assert!(matches!(
            under_home.validate(),
            Err(PlanError::NestedPaths { .. })
        ));
        let bad_path = MountPlan {
            mounts: vec![mount(SRC_A, "/etc/x", false)],
            shared_home: None,
            env: None,
        };
        assert!(matches!(
            build_mount_script(&bad_path, &ScriptEnv::production()),
            Err(PlanError::InvalidPath(_))
        ));
        let bad_user = MountPlan {
            mounts: vec![],
            shared_home: Some(SharedHome::new(SRC_B, "x;reboot")),
            env: None,
        };
        assert!(matches!(
            bad_user.validate(),
            Err(PlanError::InvalidUser(_))
        ));
    }

    #[test]
    fn production_script_shape() {
        let plan = MountPlan {
            mounts: vec![mount(SRC_A, "/data", false), mount(SRC_B, "/models", true)],
            shared_home: Some(SharedHome::new(SRC_A, "azureuser")),
            env: None,
        };
        let script = build_mount_script(&plan, &ScriptEnv::production()).expect("script");
        assert!(script.contains("ROOT=''\n"));
        assert!(script.contains("MOUNT_TABLE=/proc/self/mounts\n"));
        assert!(script.contains("BASE_OPTS='vers=4,minorversion=1,sec=sys,nconnect=4'\n"));
        assert!(script.contains(&format!("az_want_mount {SRC_A} /data rw\n")));
        assert!(script.contains(&format!("az_do_mount {SRC_B} /models ro\n")));
        assert!(script.contains(&format!(
            "az_do_home {SRC_A} /home/azureuser azureuser 1000 1000\n"
        )));
        assert!(script.ends_with("az_main </dev/null\n"));
        // Syntax check with the real shell.
        let out = Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh -n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn report_parsing() {
        let out = "noise\nAZLIN-MOUNT /data mounted already mounted\n\
                   AZLIN-MOUNT /old unmounted removed from /etc/fstab\n\
                   AZLIN-MOUNT /bad failed mount failed: access denied\n\
                   AZLIN-MOUNT /data failed duplicate ignored\n\
                   AZLIN-MOUNT /weird sideways x\nAZLIN-MOUNT-DONE\n";
        let report = parse_mount_report(out);
        assert!(report.completed);
        assert_eq!(report.results.len(), 3);
        assert_eq!(report.results[0].state, MountState::Mounted);
        assert_eq!(report.results[0].message, "already mounted");
        assert_eq!(report.results[2].message, "mount failed: access denied");

        let plan = MountPlan {
            mounts: vec![
                mount(SRC_A, "/data", false),
                mount(SRC_A, "/bad", false),
                mount(SRC_A, "/missing", false),
            ],
            shared_home: None,
            env: None,
        };
        let results = plan.interpret(out, Some(1), "");
        let paths: Vec<&str> = results.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/data", "/bad", "/missing", "/old"]);
        assert_eq!(results[2].state, MountState::Failed);
        assert!(results[2].message.contains("without reporting"));
        assert_eq!(results[3].state, MountState::Unmounted);

        let aborted = plan.interpret("", Some(127), "sh: 1: sudo: not found\n");
        assert!(aborted.iter().all(|r| r.state == MountState::Failed));
        assert_eq!(
            aborted[0].message,
            "mount script did not finish (exit status 127): sh: 1: sudo: not found"
        );
    }

    #[test]
    fn local_run_mounts_persists_once_and_removes() {
        let sb = MountSandbox::new().expect("sandbox");
        let user_lines = "# user comment\nUUID=abc / ext4 defaults 0 1\n/dev/sdb1 /mnt auto defaults,nofail 0 2\n";
        sb.write_fstab(user_lines).expect("fstab");
        let plan = MountPlan {
            mounts: vec![mount(SRC_A, "/data", false), mount(SRC_B, "/models", true)],
            shared_home: None,
            env: None,
        };
        let (results, stdout, stderr) = run_local(&plan, &sb);
        assert!(
            results.iter().all(|r| r.state == MountState::Mounted),
            "{results:?}\n{stdout}\n{stderr}"
        );
        assert_eq!(results[0].message, "mounted");
        let first = sb.fstab();
        assert!(first.starts_with(user_lines), "{first}");
        assert_eq!(first.matches(FSTAB_MARKER).count(), 2);
        assert!(first.contains(&format!(
            "{FSTAB_MARKER}/models\n{SRC_B} /models nfs {NFS_MOUNT_OPTIONS},ro,_netdev,nofail 0 0\n"
        )));
        assert_eq!(
            sb.mounted("/models"),
            Some((SRC_B.into(), format!("{NFS_MOUNT_OPTIONS},ro")))
        );
        assert_eq!(
            sb.command_log()
                .iter()
                .filter(|l| *l == "install-nfs")
                .count(),
            1
        );

        // Second run: nothing changes, nothing is mounted again.
        let (results, ..) = run_local(&plan, &sb);
        assert!(
            results.iter().all(|r| r.message == "already mounted"),
            "{results:?}"
        );
        assert_eq!(sb.fstab(), first);
        assert_eq!(sb.mount_count(), 2);
        assert_eq!(
            sb.command_log()
                .iter()
                .filter(|l| l.starts_with("mount "))
                .count(),
            2
        );

        // Switch /models to read-write: remounted, fstab line replaced in place.
        let rw = MountPlan {
            mounts: vec![mount(SRC_A, "/data", false), mount(SRC_B, "/models", false)],
            shared_home: None,
            env: None,
        };
        let (results, ..) = run_local(&rw, &sb);
        assert_eq!(results[1].state, MountState::Mounted);
        assert_eq!(results[1].message, "mounted");
        let fstab = sb.fstab();
        assert_eq!(fstab.matches("/models nfs").count(), 1);
        assert!(!fstab.contains(",ro,"));
        assert_eq!(
            sb.mounted("/models").map(|m| m.1),
            Some(NFS_MOUNT_OPTIONS.into())
        );

        // Remove everything: unmounted, lines gone, user lines intact.
        let (results, ..) = run_local(&MountPlan::default(), &sb);
        assert_eq!(results.len(), 2);
        assert!(
            results.iter().all(|r| r.state == MountState::Unmounted),
            "{results:?}"
        );
        assert_eq!(sb.fstab(), user_lines);
        assert_eq!(sb.mount_count(), 0);
        assert!(sb.path("/data").is_dir());
    }

    #[test]
    fn local_run_reports_failures_per_mount() {
        let sb = MountSandbox::new().expect("sandbox");
        sb.write_fstab("server:/x /taken nfs defaults 0 0\n")
            .expect("fstab");
        sb.fail_mount(SRC_B).expect("fail");
        let plan = MountPlan {
            mounts: vec![
                mount(SRC_A, "/data", false),
                mount(SRC_B, "/models", false),
                mount(SRC_A, "/taken", false),
            ],
            shared_home: None,
            env: None,
        };
        let (results, stdout, _) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Mounted, "{stdout}");
        assert_eq!(results[1].state, MountState::Failed);
        assert_eq!(
            results[1].message,
            format!("mount failed: mount.nfs: access denied by server while mounting {SRC_B}")
        );
        assert_eq!(results[2].state, MountState::Failed);
        assert!(results[2].message.contains("unmanaged /etc/fstab entry"));
        // The user's line is untouched and not duplicated.
        assert_eq!(sb.fstab().matches("/taken").count(), 1, "{}", sb.fstab());
        assert!(!sb.fstab().contains(&format!("{FSTAB_MARKER}/taken")));
    }

    #[test]
    fn local_run_install_failure_and_busy_unmount() {
        let sb = MountSandbox::new().expect("sandbox");
        sb.fail_install().expect("fail");
        let plan = MountPlan {
            mounts: vec![mount(SRC_A, "/data", false)],
            shared_home: None,
            env: None,
        };
        let (results, ..) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Failed);
        assert!(
            results[0].message.contains("nfs-common")
                && results[0].message.contains("Unable to locate"),
            "{results:?}"
        );

        let sb = MountSandbox::new().expect("sandbox");
        let (results, ..) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Mounted);
        sb.fail_umount("/data").expect("fail");
        let (results, ..) = run_local(&MountPlan::default(), &sb);
        assert_eq!(results[0].state, MountState::Failed);
        assert!(results[0].message.contains("target is busy"), "{results:?}");
        // Kept so the next run retries.
        assert!(sb.fstab().contains(&format!("{FSTAB_MARKER}/data\n")));
        assert!(sb.mounted("/data").is_some());
    }

    #[test]
    fn local_run_stale_marker_and_duplicates_are_cleaned() {
        let sb = MountSandbox::new().expect("sandbox");
        // An old managed line with different options and an orphaned marker.
        sb.write_fstab(&format!(
            "/dev/sda1 / ext4 defaults 0 1\n{FSTAB_MARKER}/data\nold:/x /data nfs vers=3 0 0\n{FSTAB_MARKER}/gone\n"
        ))
        .expect("fstab");
        let plan = MountPlan {
            mounts: vec![mount(SRC_A, "/data", false)],
            shared_home: None,
            env: None,
        };
        let (results, ..) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Mounted);
        assert_eq!(
            sb.fstab(),
            format!(
                "/dev/sda1 / ext4 defaults 0 1\n{FSTAB_MARKER}/data\n{SRC_A} /data nfs {NFS_MOUNT_OPTIONS},_netdev,nofail 0 0\n"
            )
        );
    }

    fn seed_home(sb: &MountSandbox) {
        let home = sb.path("/home/azureuser");
        let files: &[(&str, &str)] = &[
            (".bashrc", "local bashrc\n"),
            (".profile", "local profile\n"),
            (".config/git/config", "[user]\n"),
            (".ssh/authorized_keys", "ssh-ed25519 AAAAlocal vm-key\n"),
            (".ssh/id_ed25519", "PRIVATE\n"),
            (".ssh/id_ed25519.pub", "ssh-ed25519 AAAApub\n"),
            (".ssh/config", "Host *\n"),
            (".aws/credentials", "secret\n"),
            (".azure/msal_token_cache.json", "secret\n"),
            (".kube/config", "secret\n"),
            (".env", "TOKEN=x\n"),
            (".config/app/.env.local", "TOKEN=x\n"),
            (".config/tls/server.pem", "secret\n"),
            (".config/tls/server.KEY", "secret\n"),
            (".config/cert.pfx", "secret\n"),
            (".git-credentials", "secret\n"),
            (".cache/pip/wheel", "bulky\n"),
            ("notes.txt", "not a dotfile\n"),
        ];
        for (rel, contents) in files {
            let p = home.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, contents).expect("write");
        }
        let chown = Command::new("chown")
            .args(["-R", "1000:1000"])
            .arg(&home)
            .status()
            .expect("chown");
        assert!(chown.success());
    }

    #[test]
    fn local_run_shared_home_seeds_once_without_secrets() {
        let vm1 = MountSandbox::new().expect("sandbox");
        seed_home(&vm1);
        let plan = MountPlan {
            mounts: vec![],
            shared_home: Some(SharedHome::new(SRC_A, SANDBOX_ADMIN)),
            env: None,
        };
        let (results, stdout, stderr) = run_local(&plan, &vm1);
        assert_eq!(results[0].state, MountState::Mounted, "{stdout}\n{stderr}");
        assert_eq!(results[0].message, "mounted; seeded from the local home");
        let share = vm1.share_dir(SRC_A);
        let read = |rel: &str| std::fs::read_to_string(share.join(rel)).ok();
        assert_eq!(read(".bashrc").as_deref(), Some("local bashrc\n"));
        assert_eq!(read(".config/git/config").as_deref(), Some("[user]\n"));
        assert_eq!(
            read(".ssh/id_ed25519.pub").as_deref(),
            Some("ssh-ed25519 AAAApub\n")
        );
        assert_eq!(read(".ssh/config").as_deref(), Some("Host *\n"));
        for secret in [
            ".ssh/id_ed25519",
            ".ssh/authorized_keys",
            ".aws",
            ".azure",
            ".kube",
            ".env",
            ".config/app/.env.local",
            ".config/tls/server.pem",
            ".config/tls/server.KEY",
            ".config/cert.pfx",
            ".git-credentials",
            ".cache",
            "notes.txt",
        ] {
            assert!(!share.join(secret).exists(), "{secret} must not be copied");
        }
        // Copied as the admin user.
        let meta = std::fs::metadata(share.join(".bashrc")).expect("meta");
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000);
        // Per-VM keys stay local; sshd points at them.
        let keys =
            std::fs::read_to_string(vm1.path(&format!("{LOCAL_AUTHORIZED_KEYS_DIR}/azureuser")))
                .expect("local keys");
        assert_eq!(keys, "ssh-ed25519 AAAAlocal vm-key\n");
        let dropin = std::fs::read_to_string(vm1.path(SSHD_DROP_IN)).expect("drop-in");
        assert!(dropin.contains(&format!(
            "AuthorizedKeysFile {LOCAL_AUTHORIZED_KEYS_DIR}/%u .ssh/authorized_keys"
        )));
        assert_eq!(
            vm1.command_log()
                .iter()
                .filter(|l| *l == "reload-sshd")
                .count(),
            1
        );
        assert!(vm1.mounted("/home/azureuser").is_some());
        assert!(vm1.mounted(SEED_MOUNT_POINT).is_none());

        // Second run: no re-seeding, no reload.
        let (results, ..) = run_local(&plan, &vm1);
        assert_eq!(results[0].message, "already mounted");
        assert_eq!(
            vm1.command_log()
                .iter()
                .filter(|l| *l == "reload-sshd")
                .count(),
            1
        );

        // The user edits a file on the share; a second VM with other dotfiles
        // mounts the same share: nothing on the share is overwritten.
        std::fs::write(share.join(".bashrc"), "edited on share\n").expect("edit");
        let vm2 = MountSandbox::sharing_with(&vm1).expect("sandbox 2");
        seed_home(&vm2);
        std::fs::write(vm2.path("/home/azureuser/.vimrc"), "vm2 only\n").expect("vimrc");
        let (results, ..) = run_local(&plan, &vm2);
        assert_eq!(results[0].state, MountState::Mounted);
        assert_eq!(
            results[0].message,
            "mounted; share already has content, not seeded"
        );
        assert_eq!(read(".bashrc").as_deref(), Some("edited on share\n"));
        assert!(read(".vimrc").is_none());
    }

    #[test]
    fn local_run_shared_home_refuses_unsafe_states() {
        let plan = MountPlan {
            mounts: vec![],
            shared_home: Some(SharedHome::new(SRC_A, SANDBOX_ADMIN)),
            env: None,
        };
        // Unknown admin user.
        let sb = MountSandbox::new().expect("sandbox");
        seed_home(&sb);
        let other_user = MountPlan {
            mounts: vec![],
            shared_home: Some(SharedHome::new(SRC_A, "nosuchuser")),
            env: None,
        };
        let (results, stdout, stderr) = run_local(&other_user, &sb);
        assert_eq!(results[0].state, MountState::Failed, "{stdout}\n{stderr}");
        assert!(
            results[0]
                .message
                .contains("admin user nosuchuser not found"),
            "{results:?}"
        );
        assert!(parse_mount_report(&stdout).completed, "{stderr}");

        // Wrong uid.
        let sb = MountSandbox::new().expect("sandbox");
        seed_home(&sb);
        sb.set_user(SANDBOX_ADMIN, 1001, 1000).expect("user");
        let (results, ..) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Failed);
        assert!(
            results[0].message.contains("uid:gid 1001:1000"),
            "{results:?}"
        );
        assert_eq!(sb.mount_count(), 0);
        assert!(!sb.fstab().contains(FSTAB_MARKER));

        // No authorized_keys to keep: would lock us out.
        let sb = MountSandbox::new().expect("sandbox");
        let (results, ..) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Failed);
        assert!(
            results[0].message.contains("authorized_keys"),
            "{results:?}"
        );
        assert_eq!(sb.mount_count(), 0);

        // sshd rejects the drop-in: it is removed again and nothing is mounted.
        let sb = MountSandbox::new().expect("sandbox");
        seed_home(&sb);
        sb.fail_sshd_reload().expect("fail");
        let (results, ..) = run_local(&plan, &sb);
        assert_eq!(results[0].state, MountState::Failed);
        assert!(
            results[0].message.contains("bad configuration"),
            "{results:?}"
        );
        assert!(!sb.path(SSHD_DROP_IN).exists());
        assert_eq!(sb.mount_count(), 0);
    }
}
