//! The mount paths a VM may use: one rule for the CRD schema (CEL) and for the mount
//! script, so the API accepts exactly the paths the VM side accepts.

use std::sync::LazyLock;

use regex::Regex;

/// Syntax of an accepted mount path (RE2- and ECMA-compatible, usable as a CRD
/// `pattern`): absolute, `/`-separated components of `[A-Za-z0-9._-]`, no
/// empty, `.` or `..` components, no trailing slash, not `/` itself.
/// [`validate_mount_path`] additionally enforces [`MOUNT_PATH_MAX_LEN`],
/// [`RESERVED_MOUNT_PREFIXES`], [`RESERVED_MOUNT_PATHS`], rejects `/home/<name>` (a
/// user's home can only be mounted as a shared home) and [`USER_CONFIG_PATTERN`].
pub const MOUNT_PATH_PATTERN: &str = r"^(/(\.?[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+))+$";
/// Maximum length of a mount path.
pub const MOUNT_PATH_MAX_LEN: usize = 255;
/// System trees that may not be mounted over, neither themselves nor below: what the
/// system runs, trusts or schedules (binaries, libraries, boot, configuration with sudoers,
/// systemd units and cron tables, root's home, cron and at spools, mail, state). Over a
/// `NoRootSquash` share, a mount there would let one VM's root change what another VM runs.
pub const RESERVED_MOUNT_PREFIXES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/efi",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/run",
    "/var/snap",
    "/var/spool",
];
/// Places in a user's home that the user's login trusts, that may not be mounted over
/// (themselves nor below): hidden directories (`~/.ssh` with `authorized_keys`, `~/.config`
/// with systemd user units and autostart, `~/.local/bin`, `~/.gnupg`...) and `~/bin`
/// (on the default `PATH`).
pub const USER_CONFIG_PATTERN: &str = r"^/home/[^/]+/(\.|bin(/|$))";
/// Directories that may not be mounted over themselves (subdirectories are fine;
/// `/mnt` is the Azure resource disk).
pub const RESERVED_MOUNT_PATHS: &[&str] =
    &["/home", "/media", "/mnt", "/opt", "/srv", "/tmp", "/var"];

static MOUNT_PATH_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(MOUNT_PATH_PATTERN).expect("MOUNT_PATH_PATTERN is a valid regex"));
static USER_CONFIG_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(USER_CONFIG_PATTERN).expect("USER_CONFIG_PATTERN is a valid regex")
});
static HOME_DIR_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^/home/[^/]+$").expect("home regex is valid"));

/// Checks that `path` is a mount point we accept; the error says why not.
pub fn validate_mount_path(path: &str) -> Result<(), String> {
    if path.len() > MOUNT_PATH_MAX_LEN {
        return Err(format!(
            "mount path is longer than {MOUNT_PATH_MAX_LEN} characters"
        ));
    }
    if !MOUNT_PATH_RE.is_match(path) {
        return Err(format!(
            "mount path {path:?} must be absolute, use only [A-Za-z0-9._-] in its components, \
             and have no empty, '.' or '..' components or trailing '/'"
        ));
    }
    if let Some(prefix) = RESERVED_MOUNT_PREFIXES
        .iter()
        .find(|p| path == **p || path.starts_with(&format!("{p}/")))
    {
        return Err(format!(
            "mount path {path:?} is inside the system directory {prefix}"
        ));
    }
    if RESERVED_MOUNT_PATHS.contains(&path) {
        return Err(format!(
            "mount path {path:?} is a system directory; mount below it instead"
        ));
    }
    if HOME_DIR_RE.is_match(path) {
        return Err(format!(
            "mount path {path:?} is a user's home directory; use a shared home instead"
        ));
    }
    if USER_CONFIG_RE.is_match(path) {
        return Err(format!(
            "mount path {path:?} is a user's configuration directory (hidden directories and \
             ~/bin of /home/<user>), which the user's login trusts; mount elsewhere, e.g. /data/<name>"
        ));
    }
    Ok(())
}

/// A CEL expression (for `x-kubernetes-validations` on a string field, `self`
/// being the path) equivalent to [`validate_mount_path`].
pub fn mount_path_cel_rule() -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "size(self) <= {MOUNT_PATH_MAX_LEN} && self.matches('{pattern}') && \
         ![{prefixes}].exists(p, self == p || self.startsWith(p + '/')) && \
         !(self in [{exact}]) && !self.matches('^/home/[^/]+$') && \
         !self.matches('{user_config}')",
        pattern = MOUNT_PATH_PATTERN.replace('\\', "\\\\"),
        prefixes = list(RESERVED_MOUNT_PREFIXES),
        exact = list(RESERVED_MOUNT_PATHS),
        user_config = USER_CONFIG_PATTERN.replace('\\', "\\\\"),
    )
}
