//! The shell the operator runs on VMs passes `shellcheck` (Debian package `shellcheck`,
//! installed by `scripts/install-test-tools.sh`): the static mount library and the scripts
//! generated from it, for the production environment and the local sandbox.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::BTreeMap;

use azlin_operator::ssh::nfs::{
    MountPlan, NfsMount, ScriptEnv, SharedHome, build_mount_script, env_file,
};
use azlin_operator::ssh::sandbox::MountSandbox;

fn shellcheck(path: &Path, exclude: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("shellcheck");
    cmd.args(["--shell=sh", "--severity=info"]);
    if !exclude.is_empty() {
        cmd.arg(format!("--exclude={}", exclude.join(",")));
    }
    let out = cmd
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
                dirs: azlin_operator::ssh::MountDirs {
                    user: "azureuser".into(),
                    shared: vec!["datasets".into(), "models".into()],
                    local: vec!["/mnt/scratch".into()],
                },
            },
            NfsMount {
                source: "azlinabc.file.core.windows.net:/azlinabc/shared".into(),
                path: "/srv/shared".into(),
                read_only: true,
                dirs: Default::default(),
            },
        ],
        shared_home: Some(SharedHome::new(
            "azlinabc.file.core.windows.net:/azlinabc/home",
            "azureuser",
        )),
        env: Some(env_file(
            "team",
            &BTreeMap::from([
                ("TEAM".to_string(), "platform".to_string()),
                ("QUOTED".to_string(), "it's $HOME `x`".to_string()),
            ]),
        )),
    }
}

#[test]
fn the_mount_library_passes_shellcheck() {
    let lib = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ssh/mount.sh"));
    let (ok, report) = shellcheck(&lib, &[]);
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
            // The data lines quote user values on purpose: shellcheck's hints about the
            // '\'' idiom (SC1003) and unexpanded `$` in single quotes (SC2016) do not apply.
            let (ok, report) = shellcheck(&path, &["SC1003", "SC2016"]);
            assert!(ok, "shellcheck on the {name} script {which}:\n{report}");
        }
    }
}
