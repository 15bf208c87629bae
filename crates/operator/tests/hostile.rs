//! The hostile-input suite: every manifest under `tests/hostile/` is malformed or hostile
//! (wrong types, sizes, names breaking Azure's rules, unsafe mount paths, shell
//! metacharacters, cross-namespace references, huge values, unicode, cron garbage). Each
//! says in its header how it is stopped and what the refusal names:
//!
//! ```text
//! # hostile: what it tries
//! # via: admission | stalled
//! # expect: text the refusal contains (the field)
//! ```
//!
//! `admission` manifests are rejected when applied (schema and CEL, as the API server does);
//! `stalled` manifests are admitted, and the operator reports them `Stalled` naming the
//! field without writing anything to Azure. Nothing panics. The figures are in
//! `docs/RELIABILITY.md`.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use azlin_kubemem::testing::eventually;
use azlin_operator::api::conditions::{self, STALLED};
use azlin_operator::api::validation::Admission;
use azlin_operator::api::{AzlinVM, Fleet};
use azlin_operator::embedded::EmbeddedEnv;
use serde_json::Value;

#[allow(dead_code)]
mod support;
use support::{WAIT, env};

/// One manifest of the corpus.
struct Case {
    file: String,
    via: String,
    expect: String,
    docs: Vec<Value>,
    text: String,
}

fn corpus() -> Vec<Case> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|f| case(f)).collect()
}

fn case(path: &Path) -> Case {
    let file = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {file}: {e}"));
    let header = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .unwrap_or_else(|| panic!("{file} lacks a '# {key}:' line"))
            .to_string()
    };
    let (via, expect) = (header("via"), header("expect"));
    header("hostile");
    let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    assert!(!docs.is_empty(), "{file} holds no object");
    Case {
        file,
        via,
        expect,
        docs,
        text,
    }
}

#[test]
fn the_corpus_has_at_least_100_manifests_of_every_kind() {
    let cases = corpus();
    assert!(cases.len() >= 100, "{} manifests", cases.len());
    for via in ["admission", "stalled"] {
        assert!(cases.iter().any(|c| c.via == via), "no {via} manifest");
    }
    assert!(
        cases
            .iter()
            .all(|c| c.via == "admission" || c.via == "stalled"),
        "every manifest says how it is stopped"
    );
    for kind in ["AzlinVM", "SharedStorage", "Fleet", "Backup"] {
        assert!(
            cases.iter().any(|c| c.docs[0]["kind"] == kind),
            "no hostile {kind}"
        );
    }
}

#[test]
fn every_admission_manifest_is_rejected_naming_the_field() {
    let admission = Admission::for_azlin_kinds().expect("validators");
    let mut problems = Vec::new();
    let mut rejected = 0;
    for c in corpus().into_iter().filter(|c| c.via == "admission") {
        let mut doc = c.docs[0].clone();
        let verdict =
            std::panic::catch_unwind(AssertUnwindSafe(|| admission.admit(&mut doc, None)));
        match verdict {
            Err(_) => problems.push(format!("{}: admission panicked", c.file)),
            Ok(Ok(())) => problems.push(format!("{}: admitted", c.file)),
            Ok(Err(errors)) => {
                let all = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ");
                if all.contains(&c.expect) {
                    rejected += 1;
                } else {
                    problems.push(format!("{}: {:?} not in: {all}", c.file, c.expect));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(rejected >= 90, "{rejected} rejected");
}

/// The Stalled message of `kind` `namespace/name`, once it is Stalled.
async fn stalled_message(env: &EmbeddedEnv, kind: &str, namespace: &str, name: &str) -> String {
    let stalled =
        |conds: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>| {
            conds
                .and_then(|c| conditions::find(c, STALLED))
                .filter(|c| c.status == "True")
                .map(|c| c.message.clone())
        };
    let what = format!("{kind} {namespace}/{name} Stalled");
    match kind {
        "AzlinVM" => {
            let api: kube::Api<AzlinVM> = kube::Api::namespaced(env.client(), namespace);
            eventually(WAIT, &what, || async {
                let vm = api.get_opt(name).await.ok().flatten()?;
                stalled(vm.status.as_ref().map(|s| &s.conditions))
            })
            .await
        }
        "Fleet" => {
            let api: kube::Api<Fleet> = kube::Api::namespaced(env.client(), namespace);
            eventually(WAIT, &what, || async {
                let f = api.get_opt(name).await.ok().flatten()?;
                stalled(f.status.as_ref().map(|s| &s.conditions))
            })
            .await
        }
        other => panic!("no stalled check for {other}"),
    }
}

#[tokio::test]
async fn every_stalled_manifest_is_stalled_naming_the_field_and_touches_no_azure() {
    let env = env().await;
    let cases: Vec<Case> = corpus()
        .into_iter()
        .filter(|c| c.via == "stalled")
        .collect();
    env.emulator().reset_counts();
    for c in &cases {
        env.apply_yaml(&c.text)
            .unwrap_or_else(|e| panic!("{} is admitted: {e}", c.file));
    }
    let mut problems = Vec::new();
    for c in &cases {
        let target = &c.docs[0];
        let s = |p: &str| {
            target
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let message = stalled_message(
            &env,
            s("/kind"),
            s("/metadata/namespace"),
            s("/metadata/name"),
        )
        .await;
        if !message.contains(&c.expect) {
            problems.push(format!("{}: {:?} not in: {message}", c.file, c.expect));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Nothing hostile reached Azure: the only writes are those of the legitimate storage
    // some manifests point at.
    let writes: Vec<String> = env
        .emulator()
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .filter(|r| !r.path.contains("/resourceGroups/rg-legit-"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes.is_empty(),
        "hostile objects reached Azure: {writes:#?}"
    );
    env.shutdown().await;
}
