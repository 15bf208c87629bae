//! `azlin-operator local`, the README's first command, run as a user would.

mod local_support;

use local_support::{Run, final_table, local, root, run_local, write};

use azlin_operator::controllers::KINDS;

#[test]
fn samples_settle_and_exit_zero_only_when_every_object_is_ready() {
    let run = local(&[
        "-f",
        "config/samples/",
        "--latency-ms",
        "20",
        "--timeout",
        "240",
    ]);
    let table = final_table(&run.stdout);
    let samples = [
        ("AzlinVM", "default/devbox"),
        ("SharedStorage", "default/team-share"),
        ("SharedStorage", "default/home-share"),
        ("Fleet", "default/workers"),
        ("Backup", "default/devbox-nightly"),
    ];
    for (kind, name) in samples {
        let row = table
            .iter()
            .find(|r| r[0] == kind && r[1] == name)
            .unwrap_or_else(|| {
                panic!(
                    "{kind} {name} missing from the final table:\n{}",
                    run.stdout
                )
            });
        if KINDS.contains(&kind) {
            assert_eq!(row[3], "Ready", "{kind} {name}: {row:?}");
        } else {
            assert_eq!(row[3], "NotReconciled", "{row:?}");
            assert_eq!(row[5], "NoController", "{row:?}");
            assert!(
                run.stdout.contains(&format!(
                    "Not reconciled: {kind} {name}: NoController: no {kind} controller"
                )),
                "{}",
                run.stdout
            );
        }
    }
    let all_controlled = samples.iter().all(|(k, _)| KINDS.contains(k));
    assert_eq!(
        run.code == 0,
        all_controlled,
        "exit {}:\n{}",
        run.code,
        run.stdout
    );
    assert_eq!(
        run.stdout.lines().any(|l| l == "all objects are Ready"),
        all_controlled,
        "{}",
        run.stdout
    );
}

#[test]
fn invalid_manifests_are_rejected_before_anything_runs() {
    let run = local(&["-f", "config/samples/invalid/"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let files = std::fs::read_dir(root().join("config/samples/invalid"))
        .expect("invalid samples")
        .count();
    let rejected = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .count();
    assert!(
        rejected >= files,
        "each of {files} files is rejected:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains("nothing was applied"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("KIND"),
        "no table when nothing was applied:\n{}",
        run.stdout
    );
}

#[test]
fn a_stalled_object_exits_one_with_its_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: big, namespace: default}\nspec: {resourceGroup: rg-x, location: westus2, size: Standard_NoSuchSize_v9}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let run = local(&["-f", &path, "--latency-ms", "20", "--timeout", "120"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let stalled = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Stalled: AzlinVM default/big"))
        .unwrap_or_else(|| panic!("no Stalled line:\n{}", run.stdout));
    assert!(stalled.contains("Standard_NoSuchSize_v9"), "{stalled}");
}

#[test]
fn a_typo_in_a_storage_ref_is_shown_while_waiting_and_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev}\nspec: {resourceGroup: rg, location: westus2, size: Standard_D2s_v5, mounts: [{storageRef: tem-share}]}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let run = local(&["-f", &path, "--latency-ms", "20", "--timeout", "20"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let row = final_table(&run.stdout)
        .into_iter()
        .find(|r| r[1] == "default/dev")
        .expect("row of the VM");
    assert!(
        row[6].contains("tem-share"),
        "the row says what it waits for: {row:?}"
    );
    let verdict = run
        .stdout
        .lines()
        .find(|l| l.contains("AzlinVM default/dev:") && !l.starts_with('['))
        .unwrap_or_else(|| panic!("no verdict line:\n{}", run.stdout));
    assert!(verdict.contains("tem-share"), "{verdict}");
    assert!(
        run.stdout.contains("elapsed "),
        "the table shows the elapsed time:\n{}",
        run.stdout
    );
}

#[test]
fn only_fleets_and_backups_finish_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["fleet.yaml", "backup.yaml"] {
        std::fs::copy(root().join("config/samples").join(f), dir.path().join(f)).expect("copy");
    }
    let path = dir.path().to_string_lossy().into_owned();
    for _ in 0..3 {
        let run = run_local(
            &["-f", &path, "--latency-ms", "20", "--timeout", "20"],
            &[],
            std::time::Duration::from_secs(60),
        );
        let ready = run.stdout.lines().any(|l| l == "all objects are Ready");
        assert_eq!(run.code == 0, ready, "exit {}:\n{}", run.code, run.stdout);
        for row in final_table(&run.stdout).iter().filter(|r| r[3] != "Ready") {
            assert!(
                run.stdout.lines().any(|l| !l.starts_with('[')
                    && l.contains(&format!("{} {}: ", row[0], row[1]))),
                "no verdict line for {row:?}:\n{}",
                run.stdout
            );
        }
    }
}

#[test]
fn core_objects_are_applied_first_and_the_key_pair_flow_works() {
    let key = azlin_operator::ssh::keys::generate_ed25519("dev@team-a").expect("key");
    let indent = |s: &str| s.trim().replace('\n', "\n    ");
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a-vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev, namespace: team-a}\nspec: {resourceGroup: rg-a, location: westus2, size: Standard_D2s_v5, sshKeySecretRef: {name: dev-key}}\n",
    );
    write(
        dir.path(),
        "b-secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: dev-key, namespace: team-a}}\ntype: kubernetes.io/ssh-auth\nstringData:\n  ssh-privatekey: |\n    {}\n  ssh-publickey: {}\n",
            indent(&key.private_key_pem),
            key.public_key_line
        ),
    );
    write(
        dir.path(),
        "c-config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: team-settings, namespace: team-a}\ndata: {owner: platform}\n",
    );
    write(
        dir.path(),
        "d-namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let run = local(&["-f", &path, "--latency-ms", "20", "--timeout", "120"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let position = |needle: &str| {
        run.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{}", run.stdout))
    };
    assert!(position("namespace/team-a created") < position("secret/dev-key created"));
    assert!(position("configmap/team-settings created") < position("applied 4 object(s)"));
    assert!(
        !run.stdout.contains("not declared"),
        "the namespace was declared:\n{}",
        run.stdout
    );
    let table = final_table(&run.stdout);
    assert_eq!(table.len(), 1, "only azlin objects are rows: {table:?}");
    assert_eq!(table[0][3], "Ready", "{table:?}");
}

#[test]
fn undeclared_namespaces_are_created_and_said_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev, namespace: team-b}\nspec: {resourceGroup: rg-b, location: westus2, size: Standard_D2s_v5}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let run = local(&["-f", &path, "--latency-ms", "20", "--timeout", "120"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("namespace/team-b created (used by the manifests, not declared in them)"),
        "{}",
        run.stdout
    );
}

#[test]
fn duplicate_objects_name_both_files_and_nothing_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vm = "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev}\nspec: {resourceGroup: rg, location: westus2}\n";
    write(dir.path(), "one.yaml", vm);
    write(dir.path(), "two.yaml", &format!("---\n{vm}"));
    let path = dir.path().to_string_lossy().into_owned();
    let run = local(&["-f", &path]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("rejected: AzlinVM/default/dev"))
        .unwrap_or_else(|| panic!("no duplicate error:\n{}", run.stdout));
    assert!(
        line.contains("one.yaml (document 1)") && line.contains("two.yaml (document 1)"),
        "{line}"
    );
    assert!(run.stdout.contains("nothing was applied"), "{}", run.stdout);
}

#[test]
fn other_kinds_are_refused_naming_the_accepted_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let run = local(&["-f", &path]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("deploy.yaml (document 1): \"Deployment\"")
            && run.stdout.contains("Namespace, Secret, ConfigMap"),
        "{}",
        run.stdout
    );
}

/// `Run` of a `local` whose only object is one small VM.
fn one_vm(extra: &[&str], envs: &[(&str, &std::path::Path)]) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev}\nspec: {resourceGroup: rg, location: westus2, size: Standard_D2s_v5}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let mut args = vec![
        "-f",
        path.as_str(),
        "--latency-ms",
        "20",
        "--timeout",
        "120",
    ];
    args.extend_from_slice(extra);
    let envs: Vec<(&str, &std::ffi::OsStr)> =
        envs.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let run = run_local(&args, &envs, std::time::Duration::from_secs(180));
    (run, dir)
}

#[test]
fn the_kubeconfig_is_removed_at_exit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (run, _dir) = one_vm(&["--serve-api", "127.0.0.1:0"], &[("TMPDIR", tmp.path())]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let hint = run
        .stdout
        .lines()
        .find(|l| l.contains("KUBECONFIG="))
        .unwrap_or_else(|| panic!("no kubeconfig hint:\n{}", run.stdout));
    assert!(
        hint.contains(&tmp.path().to_string_lossy().into_owned()),
        "{hint}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read tmp")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(left.is_empty(), "left in the temporary directory: {left:?}");
}

#[test]
fn on_a_terminal_the_last_screen_still_shows_the_kubeconfig_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev}\nspec: {resourceGroup: rg, location: westus2, size: Standard_D2s_v5}\n",
    );
    let command = format!(
        "{} local -f {} --latency-ms 20 --timeout 120 --serve-api 127.0.0.1:0",
        env!("CARGO_BIN_EXE_azlin-operator"),
        dir.path().display()
    );
    // `script` gives the command a pseudo-terminal, so stdout is a terminal.
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    let redraws = screen.matches("\x1b[2J").count();
    assert!(
        redraws >= 2,
        "the table is redrawn in place ({redraws} redraws):\n{screen}"
    );
    let last = screen.rsplit("\x1b[2J").next().expect("a last screen");
    assert!(
        last.contains("KUBECONFIG="),
        "hint erased by the redraw:\n{last}"
    );
    assert!(
        last.lines()
            .any(|l| l.trim_end() == "all objects are Ready"),
        "{last}"
    );
}

#[test]
fn keep_running_keeps_the_table_updating() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "vm.yaml",
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev}\nspec: {resourceGroup: rg, location: westus2, size: Standard_D2s_v5}\n",
    );
    let path = dir.path().to_string_lossy().into_owned();
    let mut session = local_support::Session::start(&[
        "-f",
        &path,
        "--latency-ms",
        "20",
        "--timeout",
        "120",
        "--serve-api",
        "127.0.0.1:0",
        "--keep-running",
    ]);
    session.wait_for_line(|l| l.starts_with("running until Ctrl-C"));
    let kubeconfig = session.kubeconfig();
    assert!(kubeconfig.is_file(), "{kubeconfig:?}");
    let patched = local_support::kubectl(
        &kubeconfig,
        &[
            "patch",
            "avm",
            "dev",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"powerState":"Deallocated"}}"#,
        ],
    );
    assert!(patched.contains("patched"), "{patched}");
    session.wait_for_line(|l| {
        l.starts_with('[') && l.contains("AzlinVM default/dev: Ready Deallocated")
    });
    let run = session.interrupt();
    assert_eq!(run.code, 0, "all Ready when interrupted:\n{}", run.stdout);
    assert!(
        !kubeconfig.exists(),
        "kubeconfig {kubeconfig:?} left behind"
    );
    let rows = final_table(&run.stdout);
    assert_eq!(rows.len(), 1, "{}", run.stdout);
    assert_eq!(rows[0][5], "Deallocated", "{rows:?}");
}
