//! A fake VM root for running the real mount script without a VM: the guest OS of
//! `azlin-operator local` (see the operator's guest access) and the mount tests.
//!
//! [`MountSandbox`] is a directory tree standing for the VM's file system plus recording
//! fakes of `mount`, `umount`, the NFS client installer, `id`, `runuser` and the sshd
//! reload, so the script's own checks, fstab handling and home seeding run for real.
//! It cleans up after itself on drop.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::nfs::ScriptEnv;
use super::shell::shell_quote;

/// Admin user known to a new [`MountSandbox`] (uid/gid 1000).
pub const SANDBOX_ADMIN: &str = "azureuser";

/// A fake VM root directory and recording fakes of the commands the mount
/// script runs. The fake `mount` "mounts" by swapping the mount point for a
/// symlink to a per-source share directory (restored by the fake `umount`)
/// and records the mount in a fake mount table, so the script's own checks,
/// fstab handling and home seeding run for real.
///
/// The fake `runuser` switches to the user's uid/gid with `setpriv` when run
/// as root, so seeding really happens as the admin user.
pub struct MountSandbox {
    _dir: TempDir,
    root: PathBuf,
    state: PathBuf,
    shares: PathBuf,
    tools: PathBuf,
}

impl std::fmt::Debug for MountSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountSandbox")
            .field("root", &self.root)
            .finish()
    }
}

impl MountSandbox {
    /// A sandbox with an empty `etc/`, the admin user `azureuser` (1000:1000)
    /// and its own share storage.
    pub fn new() -> io::Result<Self> {
        Self::create(None, None)
    }

    /// A second "VM" whose shares are the same directories as `other`'s
    /// (like two VMs mounting one Azure Files share).
    pub fn sharing_with(other: &MountSandbox) -> io::Result<Self> {
        Self::create(Some(other.shares.clone()), None)
    }

    /// Like [`MountSandbox::new`] (or [`MountSandbox::sharing_with`] when `other` is
    /// given), with its files in a new directory under `parent` instead of the system
    /// temporary directory (used by `azlin-operator local`).
    pub fn new_in(parent: &Path, other: Option<&MountSandbox>) -> io::Result<Self> {
        Self::create(other.map(|o| o.shares.clone()), Some(parent))
    }

    fn create(shares: Option<PathBuf>, parent: Option<&Path>) -> io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("azlin-vm-");
        let dir = match parent {
            Some(p) => builder.tempdir_in(p)?,
            None => builder.tempdir()?,
        };
        // Readable for the admin uid the fake runuser switches to.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let tools = dir.path().join("tools");
        let shares = shares.unwrap_or_else(|| dir.path().join("shares"));
        for d in [&root.join("etc"), &state, &tools, &shares] {
            fs::create_dir_all(d)?;
        }
        fs::write(state.join("mounts"), "")?;
        fs::write(state.join("log"), "")?;
        fs::write(state.join("users"), format!("{SANDBOX_ADMIN} 1000 1000\n"))?;
        let sandbox = Self {
            _dir: dir,
            root,
            state,
            shares,
            tools,
        };
        sandbox.write_tools()?;
        Ok(sandbox)
    }

    /// Creates what cloud-init creates on a new VM: the admin `user` (uid/gid 1000) with a
    /// home holding `.ssh/authorized_keys` with `public_key`.
    pub fn provision_admin(&self, user: &str, public_key: &str) -> io::Result<()> {
        self.set_user(user, 1000, 1000)?;
        let home = self.path(&format!("/home/{user}"));
        let ssh = home.join(".ssh");
        fs::create_dir_all(&ssh)?;
        fs::write(
            ssh.join("authorized_keys"),
            format!("{}\n", public_key.trim()),
        )?;
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700))?;
        fs::set_permissions(
            ssh.join("authorized_keys"),
            fs::Permissions::from_mode(0o600),
        )?;
        // As root (CI), give the home to the admin uid as cloud-init does; otherwise the
        // files already belong to whoever runs the sandbox.
        for p in [&home, &ssh, &ssh.join("authorized_keys")] {
            match std::os::unix::fs::chown(p, Some(1000), Some(1000)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_tools(&self) -> io::Result<()> {
        let header = format!(
            "#!/bin/sh\nS={}\nR={}\n",
            shell_quote(&self.state.to_string_lossy()),
            shell_quote(&self.root.to_string_lossy())
        );
        let shares = format!("SHARES={}\n", shell_quote(&self.shares.to_string_lossy()));
        let tools: [(&str, String); 6] = [
            ("mount", format!("{shares}{FAKE_MOUNT}")),
            ("umount", FAKE_UMOUNT.to_owned()),
            ("install-nfs", FAKE_INSTALL.to_owned()),
            ("id", FAKE_ID.to_owned()),
            ("runuser", FAKE_RUNUSER.to_owned()),
            ("reload-sshd", FAKE_RELOAD_SSHD.to_owned()),
        ];
        for (name, body) in tools {
            let path = self.tools.join(name);
            fs::write(&path, format!("{header}{body}"))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }

    /// The fake VM's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of an absolute VM path (`/etc/fstab` → `<root>/etc/fstab`).
    pub fn path(&self, vm_path: &str) -> PathBuf {
        self.root.join(vm_path.trim_start_matches('/'))
    }

    /// Script settings using this sandbox and its fakes (`sh -s`, no sudo).
    pub fn script_env(&self) -> ScriptEnv {
        let tool = |name: &str| shell_quote(&self.tools.join(name).to_string_lossy());
        ScriptEnv {
            root: self.root.to_string_lossy().into_owned(),
            shell: "sh -s".into(),
            mount_table: self.state.join("mounts").to_string_lossy().into_owned(),
            mount: tool("mount"),
            umount: tool("umount"),
            install_nfs_client: tool("install-nfs"),
            id: tool("id"),
            run_as_user: tool("runuser"),
            reload_sshd: tool("reload-sshd"),
        }
    }

    /// Adds or replaces a user known to the fake `id`/`runuser`.
    pub fn set_user(&self, name: &str, uid: u32, gid: u32) -> io::Result<()> {
        let users = fs::read_to_string(self.state.join("users"))?;
        let mut lines: Vec<String> = users
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(name))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{name} {uid} {gid}"));
        fs::write(self.state.join("users"), lines.join("\n") + "\n")
    }

    /// Every fake command invocation so far, one line each
    /// (`mount -t nfs -o ...`, `umount <target>`, `install-nfs`, ...).
    pub fn command_log(&self) -> Vec<String> {
        fs::read_to_string(self.state.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Source and options of the fake mount at VM path `vm_path`, if mounted.
    pub fn mounted(&self, vm_path: &str) -> Option<(String, String)> {
        let target = self.path(vm_path);
        let table = fs::read_to_string(self.state.join("mounts")).unwrap_or_default();
        table.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 4 && Path::new(f[1]) == target).then(|| (f[0].to_owned(), f[3].to_owned()))
        })
    }

    /// Number of entries in the fake mount table.
    pub fn mount_count(&self) -> usize {
        fs::read_to_string(self.state.join("mounts"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Makes the fake `mount` fail for this NFS source.
    pub fn fail_mount(&self, source: &str) -> io::Result<()> {
        append_line(&self.state.join("fail-mount"), source)
    }

    /// Makes the fake `umount` fail ("target is busy") for VM path `vm_path`.
    pub fn fail_umount(&self, vm_path: &str) -> io::Result<()> {
        append_line(
            &self.state.join("fail-umount"),
            &self.path(vm_path).to_string_lossy(),
        )
    }

    /// Makes the fake NFS client installer fail.
    pub fn fail_install(&self) -> io::Result<()> {
        fs::write(self.state.join("fail-install"), "")
    }

    /// Makes the fake sshd reload fail.
    pub fn fail_sshd_reload(&self) -> io::Result<()> {
        fs::write(self.state.join("fail-sshd-reload"), "")
    }

    /// Host directory holding the contents of the share `source`.
    pub fn share_dir(&self, source: &str) -> PathBuf {
        let name: String = source
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.shares.join(name)
    }

    /// Current `/etc/fstab` of the fake VM (empty when missing).
    pub fn fstab(&self) -> String {
        fs::read_to_string(self.path("/etc/fstab")).unwrap_or_default()
    }

    /// Writes `/etc/fstab` of the fake VM.
    pub fn write_fstab(&self, contents: &str) -> io::Result<()> {
        fs::write(self.path("/etc/fstab"), contents)
    }
}

pub(crate) fn append_line(path: &Path, line: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

const FAKE_MOUNT: &str = r#"printf 'mount %s\n' "$*" >>"$S/log"
if [ "$#" -ne 6 ] || [ "$1" != -t ] || [ "$3" != -o ]; then
  echo "fake mount: unexpected arguments: $*" >&2
  exit 2
fi
opts=$4 src=$5 target=$6
if [ -f "$S/fail-mount" ] && grep -qxF -e "$src" "$S/fail-mount"; then
  echo "mount.nfs: access denied by server while mounting $src" >&2
  exit 32
fi
if [ -L "$target" ] || [ -e "$target.fake-under" ]; then
  echo "fake mount: $target is already a mount point" >&2
  exit 32
fi
if [ ! -d "$target" ]; then
  echo "mount: $target: mount point does not exist." >&2
  exit 32
fi
share="$SHARES/$(printf '%s' "$src" | tr -c 'A-Za-z0-9._-' '_')"
mkdir -p "$share" && mv "$target" "$target.fake-under" && ln -s "$share" "$target" || exit 32
printf '%s %s nfs4 %s 0 0\n' "$src" "$target" "$opts" >>"$S/mounts"
"#;

const FAKE_UMOUNT: &str = r#"printf 'umount %s\n' "$*" >>"$S/log"
target=$1
if [ -f "$S/fail-umount" ] && grep -qxF -e "$target" "$S/fail-umount"; then
  echo "umount: $target: target is busy." >&2
  exit 32
fi
if ! T="$target" awk '$2 == ENVIRON["T"] { found = 1 } END { exit !found }' "$S/mounts"; then
  echo "umount: $target: not mounted." >&2
  exit 32
fi
T="$target" awk '$2 != ENVIRON["T"]' "$S/mounts" >"$S/mounts.tmp" && mv "$S/mounts.tmp" "$S/mounts"
rm -f "$target" && mv "$target.fake-under" "$target"
"#;

const FAKE_INSTALL: &str = r#"printf 'install-nfs\n' >>"$S/log"
if [ -f "$S/fail-install" ]; then
  echo "E: Unable to locate package nfs-common" >&2
  exit 100
fi
mkdir -p "$R/sbin" && printf '#!/bin/sh\nexit 0\n' >"$R/sbin/mount.nfs" && chmod 755 "$R/sbin/mount.nfs"
"#;

const FAKE_ID: &str = r#"case $1 in
  -u) f=2 ;;
  -g) f=3 ;;
  *) echo "fake id: unsupported arguments: $*" >&2; exit 2 ;;
esac
U="$2" awk -v f="$f" '$1 == ENVIRON["U"] { print $f; found = 1 } END { exit !found }' "$S/users" || {
  echo "id: '$2': no such user" >&2
  exit 1
}
"#;

const FAKE_RUNUSER: &str = r#"user=$1
shift
if [ "${1:-}" = -- ]; then shift; fi
printf 'runuser %s %s\n' "$user" "$1" >>"$S/log"
ids=$(U="$user" awk '$1 == ENVIRON["U"] { print $2 " " $3 }' "$S/users")
if [ -z "$ids" ]; then
  echo "runuser: user $user does not exist" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid="${ids% *}" --regid="${ids#* }" --clear-groups -- "$@"
fi
exec "$@"
"#;

const FAKE_RELOAD_SSHD: &str = r#"printf 'reload-sshd\n' >>"$S/log"
if [ -f "$S/fail-sshd-reload" ]; then
  echo "sshd: /etc/ssh/sshd_config.d/50-azlin-operator.conf: bad configuration" >&2
  exit 255
fi
"#;

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn sandbox_paths_and_users() {
        let sb = MountSandbox::new().expect("sandbox");
        assert_eq!(sb.path("/etc/fstab"), sb.root().join("etc/fstab"));
        sb.set_user("dev", 1500, 1600).expect("user");
        let env = sb.script_env();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{} -u dev && {} -g azureuser", env.id, env.id))
            .output()
            .expect("fake id");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1500\n1000\n");
        let other = MountSandbox::sharing_with(&sb).expect("second");
        assert_eq!(other.share_dir("h:/a/b"), sb.share_dir("h:/a/b"));
        assert!(sb.share_dir("h:/a/b").ends_with("h__a_b"));
    }
}
