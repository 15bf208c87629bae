//! The shell the operator runs on VMs passes `shellcheck` (Debian package `shellcheck`,
//! installed by `scripts/install-test-tools.sh`): the static mount library and the scripts
//! generated from it, for the production environment and the local sandbox.

use std::path::{Path, PathBuf};
use std::process::Command;

use azlin_operator::ssh::nfs::{MountPlan, NfsMount, ScriptEnv, SharedHome, build_mount_script};
use azlin_operator::ssh::sandbox::MountSandbox;

fn shellcheck(path: &Path) -> (bool, String) {
    let out = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=info"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("shellcheck not found ({e}); install it with `apt-get install -y shellcheck` or run scripts/install-test-tools.sh")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn plan() -> MountPlan {
    MountPlan {
        mounts: vec![
            NfsMount {
                source: "azlinabc.file.core.windows.net:/azlinabc/data".into(),
                path: "/mnt/data".into(),
                read_only: false,
            },
            NfsMount {
                source: "azlinabc.file.core.windows.net:/azlinabc/shared".into(),
                path: "/srv/shared".into(),
                read_only: true,
            },
        ],
        shared_home: Some(SharedHome::new(
            "azlinabc.file.core.windows.net:/azlinabc/home",
            "azureuser",
        )),
    }
}

#[test]
fn the_mount_library_passes_shellcheck() {
    let lib = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ssh/mount.sh"));
    let (ok, report) = shellcheck(&lib);
    assert!(ok, "shellcheck on {}:\n{report}", lib.display());
}

#[test]
fn generated_mount_scripts_pass_shellcheck() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = MountSandbox::new().expect("sandbox");
    let envs = [
        ("production", ScriptEnv::production()),
        ("sandbox", sandbox.script_env()),
    ];
    for (name, env) in envs {
        for (which, p) in [("with mounts", plan()), ("empty", MountPlan::default())] {
            let script = build_mount_script(&p, &env).expect("valid plan");
            let path = dir
                .path()
                .join(format!("{name}-{}.sh", which.replace(' ', "-")));
            std::fs::write(&path, &script).expect("written");
            let (ok, report) = shellcheck(&path);
            assert!(ok, "shellcheck on the {name} script {which}:\n{report}");
        }
    }
}
