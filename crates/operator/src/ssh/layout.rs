//! The directories of a storage template on a mounting VM: the template's directories on
//! the share, created once (when missing) as the admin user, so shares with `RootSquash`
//! work too — as root when the admin user may not (a `NoRootSquash` share whose root
//! belongs to root), given to the admin user — and its local directories on each VM's own
//! disk, given to the admin user. The mount script reports the directories that exist after
//! its run (and those it could not create) in the mount's message, after
//! [`LAYOUT_REPORT`].

use std::sync::LazyLock;

use regex::Regex;

use super::nfs::validate_user_name;
use super::shell::shell_quote;
use crate::api::mount_path::MOUNT_PATH_PATTERN;

/// Where a mount's report message starts naming its directories.
pub const LAYOUT_REPORT: &str = "directories: ";

static DIR_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$").expect("directory name regex is valid")
});
static LOCAL_DIR_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(MOUNT_PATH_PATTERN).expect("MOUNT_PATH_PATTERN is valid"));

/// The template directories of one mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountDirs {
    /// Admin user the directories are made for (see [`super::nfs::USER_NAME_PATTERN`]).
    pub user: String,
    /// Names of directories on the share, right under the mount point.
    pub shared: Vec<String>,
    /// Absolute directories on the VM's own disk.
    pub local: Vec<String>,
}

impl MountDirs {
    /// Whether there is nothing to create.
    pub fn is_empty(&self) -> bool {
        self.shared.is_empty() && self.local.is_empty()
    }

    /// Checks the user and every directory; the error names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        validate_user_name(&self.user)?;
        if let Some(d) = self.shared.iter().find(|d| !DIR_NAME_RE.is_match(d)) {
            return Err(format!(
                "shared directory {d:?} must be one name of letters, digits, '.', '_' and '-'"
            ));
        }
        if let Some(d) = self
            .local
            .iter()
            .find(|d| d.len() > 255 || !LOCAL_DIR_RE.is_match(d))
        {
            return Err(format!(
                "local directory {d:?} must be an absolute path of letters, digits, '.', '_' and '-'"
            ));
        }
        Ok(())
    }

    /// The arguments `az_do_mount` takes after source, path and mode: nothing without
    /// directories, else `USER SHARED... -- LOCAL...`, each quoted for the shell.
    pub fn script_args(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut words = vec![shell_quote(&self.user)];
        words.extend(self.shared.iter().map(|d| shell_quote(d)));
        words.push("--".into());
        words.extend(self.local.iter().map(|d| shell_quote(d)));
        format!(" {}", words.join(" "))
    }
}

/// The directory part of a mount's report message (empty when it names none).
pub fn reported_layout(message: &str) -> &str {
    message
        .find(LAYOUT_REPORT)
        .map_or("", |i| message[i..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_validated_and_quoted() {
        let dirs = MountDirs {
            user: "azureuser".into(),
            shared: vec!["datasets".into(), "models".into()],
            local: vec!["/mnt/scratch".into()],
        };
        assert_eq!(dirs.validate(), Ok(()));
        assert_eq!(
            dirs.script_args(),
            " azureuser datasets models -- /mnt/scratch"
        );
        assert_eq!(MountDirs::default().script_args(), "");
        assert_eq!(MountDirs::default().validate(), Ok(()));
        for bad in ["..", "a/b", "a b", "$(x)", ".hidden", ""] {
            let d = MountDirs {
                shared: vec![bad.into()],
                ..dirs.clone()
            };
            assert!(d.validate().is_err(), "{bad:?}");
        }
        for bad in ["relative", "/a/../b", "/a;b"] {
            let d = MountDirs {
                local: vec![bad.into()],
                ..dirs.clone()
            };
            assert!(d.validate().is_err(), "{bad:?}");
        }
        let d = MountDirs {
            user: "Root!".into(),
            ..dirs
        };
        assert!(d.validate().is_err());
    }

    #[test]
    fn the_directory_part_of_a_report() {
        assert_eq!(reported_layout("mounted"), "");
        assert_eq!(
            reported_layout("already mounted; directories: on the share: a, b"),
            "directories: on the share: a, b"
        );
    }
}
