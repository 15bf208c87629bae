//! `azlin-operator local` with many objects in one file (issue #17): the YAML budget is
//! sized for real manifest sets but still refuses alias bombs, many VMs become Ready, and
//! every object still waiting says what it waits for.

mod local_support;

use std::time::Duration;

use local_support::{final_table, run_local, write};

fn vm(i: usize) -> String {
    format!(
        "---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: vm-{i:04}, namespace: fleet}}\nspec: {{resourceGroup: fleet-rg, location: westus2, size: Standard_D2s_v5}}\n"
    )
}

#[test]
fn one_file_of_2000_vms_becomes_ready() {
    // 2000 AzlinVMs and 10 ConfigMaps: 2010 documents in one file. In the debug build the
    // tests use this takes about five minutes on two cores (docs/PERFORMANCE.md).
    let mut text: String = (0..2000).map(vm).collect();
    for i in 0..10 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings-{i}, namespace: fleet}}\ndata: {{index: \"{i}\"}}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "fleet.yaml", &text);
    let path = dir.path().join("fleet.yaml").to_string_lossy().into_owned();
    let run = run_local(
        &["-f", &path, "--latency-ms", "5", "--timeout", "1200"],
        &[],
        Duration::from_secs(1320),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("applied 2010 object(s)"),
        "{}",
        run.stdout
    );
    let rows = final_table(&run.stdout);
    assert_eq!(rows.len(), 2000, "one row per VM");
    assert!(rows.iter().all(|r| r[3] == "Ready"), "{rows:?}");
    assert!(
        run.stdout.lines().any(|l| l == "all objects are Ready"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_object_not_ready_says_why_in_its_row_and_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "vms.yaml", &(0..40).map(vm).collect::<String>());
    let path = dir.path().to_string_lossy().into_owned();
    let run = run_local(
        &[
            "-f",
            &path,
            "--latency-ms",
            "3000",
            "--timeout",
            "3",
            "--concurrency",
            "2",
        ],
        &[],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    let rows = final_table(&run.stdout);
    assert_eq!(rows.len(), 40, "{}", run.stdout);
    let waiting: Vec<&Vec<String>> = rows.iter().filter(|r| r[3] != "Ready").collect();
    assert!(!waiting.is_empty(), "{}", run.stdout);
    for row in &waiting {
        assert!(
            !row[5].is_empty() && !row[6].is_empty() && row[5] != "-",
            "{row:?}"
        );
        let prefix = format!("Not ready after 3s: AzlinVM {}: ", row[1]);
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no final line for {}:\n{}", row[1], run.stdout));
        let (reason, message) = line[prefix.len()..].split_once(": ").unwrap_or_default();
        assert!(
            !reason.trim().is_empty() && !message.trim().is_empty(),
            "{line}"
        );
    }
    // Each Azure operation takes 3 s: no VM can be Ready within the 3 s timeout.
    assert_eq!(waiting.len(), 40, "{waiting:?}");
    assert!(
        run.stdout.contains("--concurrency"),
        "says how to go faster:\n{}",
        run.stdout
    );
}

#[test]
fn alias_bombs_and_oversized_files_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lol = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        lol.push_str(&format!(
            "  a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    write(dir.path(), "lol.yaml", &lol);
    let path = dir.path().join("lol.yaml").to_string_lossy().into_owned();
    let run = run_local(&["-f", &path], &[], Duration::from_secs(120));
    assert_eq!(run.code, 1, "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("rejected: "))
        .expect("rejected");
    assert!(
        line.contains("lol.yaml") && line.contains("alias bomb"),
        "{line}"
    );

    write(
        dir.path(),
        "many.yaml",
        &(0..11).map(vm).collect::<String>(),
    );
    let path = dir.path().join("many.yaml").to_string_lossy().into_owned();
    let run = run_local(
        &["-f", &path, "--max-documents", "10"],
        &[],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("many.yaml: more than 10 YAML documents")
            && run.stdout.contains("raise --max-documents"),
        "{}",
        run.stdout
    );
}
