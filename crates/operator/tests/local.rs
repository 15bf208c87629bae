//! `azlin-operator local`, the README's first command, run as a user would.

use std::process::Command;

fn local(args: &[&str]) -> (i32, String) {
    let (code, stdout, _) = local_with_logs(args);
    (code, stdout)
}

fn local_with_logs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_azlin-operator"))
        .arg("local")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env_remove("RUST_LOG")
        .output()
        .expect("run azlin-operator local");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn samples_become_ready_and_exit_zero() {
    let (code, stdout) = local(&[
        "-f",
        "config/samples/",
        "--latency-ms",
        "20",
        "--timeout",
        "240",
    ]);
    assert_eq!(code, 0, "local exited {code}:\n{stdout}");
    assert!(stdout.contains("all objects are Ready"), "{stdout}");
    let last_table: Vec<&str> = stdout
        .rsplit("KIND ")
        .next()
        .expect("a table")
        .lines()
        .collect();
    for name in [
        "default/devbox",
        "default/team-share",
        "default/home-share",
        "default/workers ",
        "default/devbox-nightly",
    ] {
        let row = last_table
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} missing from the final table:\n{stdout}"));
        assert!(row.contains(" Ready "), "{name} not Ready: {row}");
    }
}

#[test]
fn invalid_manifests_are_rejected_before_anything_runs() {
    let (code, stdout) = local(&["-f", "config/samples/invalid/"]);
    assert_eq!(code, 1, "{stdout}");
    let files = std::fs::read_dir(format!(
        "{}/../../config/samples/invalid",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("invalid samples")
    .count();
    let rejected = stdout
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .count();
    assert!(
        rejected >= files,
        "each of {files} files is rejected:\n{stdout}"
    );
    assert!(stdout.contains("nothing was applied"), "{stdout}");
    assert!(
        !stdout.contains("KIND"),
        "no table when nothing was applied:\n{stdout}"
    );
}

#[test]
fn a_stalled_object_exits_one_with_its_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vm.yaml"),
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: big, namespace: default}\nspec: {resourceGroup: rg-x, location: westus2, size: Standard_NoSuchSize_v9}\n",
    )
    .expect("write manifest");
    let path = dir.path().to_string_lossy().into_owned();
    let (code, stdout) = local(&["-f", &path, "--latency-ms", "20", "--timeout", "120"]);
    assert_eq!(code, 1, "{stdout}");
    let stalled = stdout
        .lines()
        .find(|l| l.starts_with("Stalled: AzlinVM default/big"))
        .unwrap_or_else(|| panic!("no Stalled line:\n{stdout}"));
    assert!(stalled.contains("Standard_NoSuchSize_v9"), "{stalled}");
}
