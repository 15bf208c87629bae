//! The API of the product: generated CRDs, their schema and CEL rules, and the samples.

use std::path::{Path, PathBuf};
use std::process::Command;

use azlin_operator::api::validation::{Admission, FieldError};
use azlin_operator::api::{self, crds};
use kube::core::cel::{ScopeContext, WarningKind, analyze_rule, compile_schema};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn admission() -> Admission {
    Admission::for_azlin_kinds().expect("every CRD compiles into a validator")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn messages(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn crds_dir_matches_generated_crds() {
    for crd in crds() {
        let path = repo().join("crds").join(api::crd_file_name(&crd));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = api::crd_yaml(&crd).expect("render CRD");
        assert!(
            on_disk == generated,
            "{} differs from the generated CRD: run `cargo run -- crds --output-dir crds`",
            path.display()
        );
    }
    let files = yaml_files(&repo().join("crds"));
    assert_eq!(
        files.len(),
        4,
        "crds/ holds exactly one file per CRD: {files:?}"
    );
}

#[test]
fn crds_command_prints_all_four_as_one_stream() {
    let out = Command::new(env!("CARGO_BIN_EXE_azlin-operator"))
        .arg("crds")
        .output()
        .expect("run azlin-operator crds");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).expect("utf-8"))
            .expect("YAML stream");
    let mut names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().expect("name"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "azlinvms.azlin.io",
            "backups.azlin.io",
            "fleets.azlin.io",
            "sharedstorages.azlin.io"
        ]
    );
    for d in &docs {
        assert_eq!(d["spec"]["scope"], "Namespaced");
        assert_eq!(d["spec"]["names"]["categories"], json!(["azlin"]));
        let v = &d["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert_eq!(v["subresources"]["status"], json!({}));
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .map(|c| c["name"].as_str().expect("column name"))
            .collect();
        assert!(columns.contains(&"Age"), "{columns:?}");
    }
}

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_azlin-operator"))
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["crds", "version", "run", "emulator", "local"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help lacks {cmd}:\n{help}"
        );
    }
}

/// Every CEL rule compiles, uses only CRD-scope variables and stays within the API
/// server's cost budget (the API server refuses a CRD otherwise).
#[test]
fn every_cel_rule_compiles_within_cost_budget() {
    fn walk(schema: &Value, path: &str, found: &mut usize, problems: &mut Vec<String>) {
        if let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            let compiled = compile_schema(schema);
            for r in rules {
                let rule = r["rule"].as_str().expect("rule");
                *found += 1;
                assert!(
                    r["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "rule {rule} at {path} has no message"
                );
                for w in analyze_rule(rule, &compiled, ScopeContext::CrdValidation) {
                    // The scope check does not know macro-bound variables such as `d` in
                    // `self.all(d, ...)`; those are valid.
                    let bound = w.kind == WarningKind::WrongScope
                        && w.message
                            .split('\'')
                            .nth(1)
                            .is_some_and(|v| rule.contains(&format!("({v},")));
                    if !bound {
                        problems.push(format!("{path}: {rule}: {}", w.message));
                    }
                }
            }
            if compiled.has_errors() {
                problems.push(format!("{path}: {:?}", compiled.compilation_errors()));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, &format!("{path}.{k}"), found, problems);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = schema.get(key).filter(|v| v.is_object()) {
                walk(v, &format!("{path}[]"), found, problems);
            }
        }
    }
    let mut found = 0;
    let mut problems = Vec::new();
    for crd in crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema");
        walk(
            &schema["openAPIV3Schema"],
            &crd.spec.names.kind,
            &mut found,
            &mut problems,
        );
    }
    assert!(
        found >= 40,
        "expected the CRDs to carry their CEL rules, found {found}"
    );
    assert!(
        problems.is_empty(),
        "CEL problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn valid_samples_are_admitted_and_defaulted() {
    let adm = admission();
    let mut kinds = Vec::new();
    for file in yaml_files(&repo().join("config/samples")) {
        for mut doc in yaml_docs(&file) {
            let kind = doc["kind"].as_str().expect("kind").to_string();
            if kind == "Kustomization" {
                continue;
            }
            adm.admit(&mut doc, None).unwrap_or_else(|e| {
                panic!("{} ({kind}) rejected: {}", file.display(), messages(&e))
            });
            kinds.push(kind);
        }
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["AzlinVM", "Backup", "Fleet", "SharedStorage"]);
}

#[test]
fn every_invalid_sample_is_rejected_for_its_stated_reason() {
    let adm = admission();
    let files = yaml_files(&repo().join("config/samples/invalid"));
    assert!(
        files.len() >= 12,
        "need at least 12 invalid samples, have {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            text.lines().any(|l| l.starts_with("# Rejected by: ")),
            "{} lacks a '# Rejected by:' comment",
            file.display()
        );
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an '# expect:' comment", file.display()))
            .to_string();
        for mut doc in yaml_docs(&file) {
            match adm.admit(&mut doc, None) {
                Ok(()) => panic!("{} was admitted but must be rejected", file.display()),
                Err(errors) => {
                    let all = messages(&errors);
                    assert!(
                        all.contains(&expect),
                        "{}: expected {expect:?} in: {all}",
                        file.display()
                    );
                }
            }
        }
    }
}

fn vm(spec: Value) -> Value {
    json!({
        "apiVersion": "azlin.io/v1alpha1",
        "kind": "AzlinVM",
        "metadata": {"name": "devbox", "namespace": "default"},
        "spec": spec,
    })
}

fn base_vm_spec() -> Value {
    json!({"resourceGroup": "azlin-dev", "location": "westus2"})
}

fn with(mut base: Value, patch: Value) -> Value {
    json_patch::merge(&mut base, &patch);
    base
}

fn reject(adm: &Admission, new: Value, old: Option<Value>, expect: &str) {
    let mut new = new;
    let mut old = old;
    if let Some(o) = old.as_mut() {
        adm.admit(o, None)
            .unwrap_or_else(|e| panic!("old object invalid: {}", messages(&e)));
    }
    match adm.admit(&mut new, old.as_ref()) {
        Ok(()) => panic!("admitted, expected rejection containing {expect:?}"),
        Err(e) => assert!(
            messages(&e).contains(expect),
            "expected {expect:?} in {}",
            messages(&e)
        ),
    }
}

fn admit(adm: &Admission, new: Value, old: Option<Value>) -> Value {
    let mut new = new;
    let mut old = old;
    if let Some(o) = old.as_mut() {
        adm.admit(o, None)
            .unwrap_or_else(|e| panic!("old object invalid: {}", messages(&e)));
    }
    adm.admit(&mut new, old.as_ref())
        .unwrap_or_else(|e| panic!("rejected: {}", messages(&e)));
    new
}

#[test]
fn defaults_are_applied_like_the_api_server() {
    let adm = admission();
    let obj = admit(&adm, vm(base_vm_spec()), None);
    let spec = &obj["spec"];
    assert_eq!(spec["size"], "Standard_E16as_v5");
    assert_eq!(spec["adminUsername"], "azureuser");
    assert_eq!(spec["powerState"], "Running");
    assert_eq!(spec["deletionPolicy"], "Delete");
    assert_eq!(
        spec["image"],
        json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
    );
}

#[test]
fn immutable_fields_cannot_change_after_creation() {
    let adm = admission();
    let old = vm(base_vm_spec());
    for (field, value, msg) in [
        (
            "resourceGroup",
            json!("other-rg"),
            "spec.resourceGroup is immutable",
        ),
        ("location", json!("eastus"), "spec.location is immutable"),
        (
            "adminUsername",
            json!("alice"),
            "spec.adminUsername is immutable",
        ),
        (
            "image",
            json!({"publisher": "Canonical", "offer": "ubuntu-22_04-lts", "sku": "server"}),
            "spec.image is immutable",
        ),
    ] {
        let new = vm(with(base_vm_spec(), json!({ field: value })));
        reject(&adm, new, Some(old.clone()), msg);
    }
    let spot_old = vm(with(base_vm_spec(), json!({"spot": {"maxPrice": -1}})));
    reject(
        &adm,
        vm(base_vm_spec()),
        Some(spot_old),
        "spec.spot cannot be added or removed",
    );
    let new = vm(with(base_vm_spec(), json!({"zone": "1"})));
    reject(
        &adm,
        new,
        Some(vm(base_vm_spec())),
        "spec.zone cannot be added or removed",
    );
    // Mutable fields may change.
    let resized = vm(with(
        base_vm_spec(),
        json!({"size": "Standard_D2s_v5", "powerState": "Deallocated"}),
    ));
    admit(&adm, resized, Some(vm(base_vm_spec())));
}

#[test]
fn disks_can_only_grow() {
    let adm = admission();
    let old = vm(with(
        base_vm_spec(),
        json!({"osDisk": {"sizeGiB": 64}, "dataDisks": [{"lun": 0, "sizeGiB": 128}]}),
    ));
    let shrink_os = vm(with(
        base_vm_spec(),
        json!({"osDisk": {"sizeGiB": 32}, "dataDisks": [{"lun": 0, "sizeGiB": 128}]}),
    ));
    reject(
        &adm,
        shrink_os,
        Some(old.clone()),
        "spec.osDisk.sizeGiB can only grow",
    );
    let shrink_data = vm(with(
        base_vm_spec(),
        json!({"osDisk": {"sizeGiB": 64}, "dataDisks": [{"lun": 0, "sizeGiB": 64}]}),
    ));
    reject(
        &adm,
        shrink_data,
        Some(old.clone()),
        "spec.dataDisks[].sizeGiB can only grow",
    );
    let grow_and_add = vm(with(
        base_vm_spec(),
        json!({"osDisk": {"sizeGiB": 128}, "dataDisks": [{"lun": 0, "sizeGiB": 256}, {"lun": 1, "sizeGiB": 8}]}),
    ));
    admit(&adm, grow_and_add, Some(old));
}

#[test]
fn naming_rules_accept_real_azure_names() {
    let adm = admission();
    for rg in ["rg", "My_RG-(test).1", "a"] {
        admit(
            &adm,
            vm(with(base_vm_spec(), json!({"resourceGroup": rg}))),
            None,
        );
    }
    for rg in ["rg.", "with space", &"x".repeat(91)] {
        let mut o = vm(with(base_vm_spec(), json!({"resourceGroup": rg})));
        assert!(
            adm.admit(&mut o, None).is_err(),
            "resource group {rg:?} must be rejected"
        );
    }
    for size in ["Standard_E16as_v5", "Standard_D4s_v5", "Basic_A1"] {
        admit(&adm, vm(with(base_vm_spec(), json!({"size": size}))), None);
    }
    for path in ["/mnt/team", "/data/ml-1/x.y", "/home/azureuser/shared"] {
        admit(
            &adm,
            vm(with(
                base_vm_spec(),
                json!({"mounts": [{"storageRef": "s1x", "path": path}]}),
            )),
            None,
        );
    }
    for path in [
        "/",
        "/proc/x",
        "relative/x",
        "/mnt/a b",
        "/mnt/a;rm",
        "/mnt",
        "/home/azureuser",
        "/mnt/../etc",
    ] {
        let mut o = vm(with(
            base_vm_spec(),
            json!({"mounts": [{"storageRef": "s1x", "path": path}]}),
        ));
        assert!(
            adm.admit(&mut o, None).is_err(),
            "mount path {path:?} must be rejected"
        );
    }
    let mut long_name = vm(base_vm_spec());
    long_name["metadata"]["name"] = json!("x".repeat(64));
    assert!(adm.admit(&mut long_name, None).is_err());
}

fn storage(spec: Value) -> Value {
    json!({
        "apiVersion": "azlin.io/v1alpha1",
        "kind": "SharedStorage",
        "metadata": {"name": "team-share", "namespace": "default"},
        "spec": with(json!({"resourceGroup": "azlin-dev", "location": "westus2"}), spec),
    })
}

#[test]
fn shared_storage_rules() {
    let adm = admission();
    let ok = admit(&adm, storage(json!({})), None);
    assert_eq!(ok["spec"]["tier"], "Premium");
    assert_eq!(ok["spec"]["sizeGiB"], 100);
    assert_eq!(ok["spec"]["deletionPolicy"], "Retain");
    reject(
        &adm,
        storage(json!({"tier": "Standard"})),
        None,
        "Standard storage cannot serve NFS",
    );
    reject(&adm, storage(json!({"sizeGiB": 99})), None, "at least 100");
    reject(
        &adm,
        storage(json!({"rootSquash": "Squash"})),
        None,
        "rootSquash",
    );
    reject(
        &adm,
        storage(json!({"allowedSubnets": ["subnet-1"]})),
        None,
        "spec.allowedSubnets[] must be subnet resource ids",
    );
    reject(
        &adm,
        storage(json!({"location": "eastus"})),
        Some(storage(json!({}))),
        "spec.location is immutable",
    );
    admit(
        &adm,
        storage(json!({"sizeGiB": 200})),
        Some(storage(json!({}))),
    );
}

fn fleet(spec: Value) -> Value {
    json!({
        "apiVersion": "azlin.io/v1alpha1",
        "kind": "Fleet",
        "metadata": {"name": "workers", "namespace": "default"},
        "spec": with(json!({"replicas": 2, "template": {"spec": base_vm_spec()}}), spec),
    })
}

#[test]
fn fleet_rules() {
    let adm = admission();
    let ok = admit(&adm, fleet(json!({})), None);
    assert_eq!(
        ok["spec"]["updateStrategy"],
        json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    admit(
        &adm,
        fleet(json!({"updateStrategy": {"maxSurge": "25%", "maxUnavailable": 0}})),
        None,
    );
    admit(
        &adm,
        fleet(json!({"updateStrategy": {"maxSurge": 0, "maxUnavailable": 1}})),
        None,
    );
    reject(
        &adm,
        fleet(json!({"updateStrategy": {"maxSurge": 0, "maxUnavailable": 0}})),
        None,
        "cannot both be 0",
    );
    reject(
        &adm,
        fleet(json!({"updateStrategy": {"maxSurge": "lots", "maxUnavailable": 0}})),
        None,
        "maxSurge must be a non-negative number or a percentage",
    );
    reject(&adm, fleet(json!({"replicas": -1})), None, "replicas");
    reject(
        &adm,
        fleet(json!({"schedule": {"start": "25:00", "end": "26:00"}})),
        None,
        "spec.schedule.start must be HH:MM",
    );
    reject(
        &adm,
        fleet(json!({"schedule": {"days": ["Mon", "Mon"], "start": "08:00", "end": "18:00"}})),
        None,
        "must not repeat a day",
    );
    // The template carries the AzlinVM rules.
    reject(
        &adm,
        fleet(json!({"template": {"spec": {"location": "West Europe"}}})),
        None,
        "spec.location must be an Azure region name",
    );
    let mut long = fleet(json!({}));
    long["metadata"]["name"] = json!("x".repeat(60));
    assert!(
        adm.admit(&mut long, None).is_err(),
        "fleet names leave room for member suffixes"
    );
}

fn backup(spec: Value) -> Value {
    json!({
        "apiVersion": "azlin.io/v1alpha1",
        "kind": "Backup",
        "metadata": {"name": "nightly", "namespace": "default"},
        "spec": with(json!({"source": {"kind": "AzlinVM", "name": "devbox"}, "schedule": "0 2 * * *"}), spec),
    })
}

#[test]
fn backup_rules() {
    let adm = admission();
    let ok = admit(&adm, backup(json!({})), None);
    assert_eq!(
        ok["spec"]["retention"],
        json!({"count": 7, "keepLastGood": true})
    );
    assert_eq!(ok["spec"]["suspend"], false);
    for cron in [
        "@daily",
        "*/15 * * * *",
        "0 2 * * MON-FRI",
        "0 0 1,15 * *",
        "30 3 * JAN,JUL SUN",
    ] {
        admit(&adm, backup(json!({"schedule": cron})), None);
    }
    for cron in ["", "* * * *", "0 2 * * * *", "daily", "0 2 * * ; rm"] {
        let mut o = backup(json!({"schedule": cron}));
        assert!(
            adm.admit(&mut o, None).is_err(),
            "cron {cron:?} must be rejected"
        );
    }
    // Out-of-range fields are refused at apply time, with the field and the fix.
    for cron in [
        "0 25 * * *",
        "99 99 99 99 99",
        "60 * * * *",
        "0 0 32 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
    ] {
        reject(
            &adm,
            backup(json!({"schedule": cron})),
            None,
            "spec.schedule must be a cron expression with five fields",
        );
    }
    reject(
        &adm,
        backup(json!({"timeZone": "Europe/Berlinn"})),
        None,
        "spec.timeZone must be an IANA time zone name",
    );
    for tz in [
        "UTC",
        "Europe/Berlin",
        "America/Argentina/Buenos_Aires",
        "Etc/GMT+5",
    ] {
        admit(&adm, backup(json!({"timeZone": tz})), None);
    }
    let gfs = admit(
        &adm,
        backup(
            json!({"retention": {"daily": 7, "weekly": 4, "monthly": 12}, "verify": true, "runRequestedAt": "2026-01-01T00:00:00Z", "deletionPolicy": "Retain"}),
        ),
        None,
    );
    assert_eq!(gfs["spec"]["retention"]["count"], 7);
    reject(
        &adm,
        backup(json!({"retention": {"daily": -1}})),
        None,
        "minimum",
    );
    reject(
        &adm,
        backup(json!({"source": {"kind": "Fleet", "name": "workers"}})),
        Some(backup(json!({}))),
        "spec.source is immutable",
    );
    reject(
        &adm,
        backup(json!({"source": {"kind": "Pod", "name": "x"}})),
        None,
        "kind",
    );
}

/// What the controller's cron parser (croner) refuses, the schema refuses at apply time too,
/// except the two cases a regular expression cannot judge.
#[test]
fn schedule_rule_refuses_what_the_controller_refuses() {
    use azlin_operator::controllers::backup::schedule::Schedule;
    let adm = admission();
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let corpus = [
        "0 2 * * *",
        "@daily",
        "@HOURLY",
        "@reboot",
        "*/15 * * * *",
        "0 9-17 * * MON-FRI",
        "5,35 */2 1-15/3 JAN-JUN,DEC sun",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5#2",
        "0 0 * * 5L",
        "0 0 ? * *",
        "0 0 * * ?",
        "0 25 * * *",
        "99 99 99 99 99",
        "60 0 * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 32 * *",
        "0 0 * 0 *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
        "0 0 * * * *",
        "0 0 * *",
        "",
        " ",
        "a b c d e",
        "0-70 * * * *",
        "5-1 * * * *",
        "1,2,,3 * * * *",
        "0 0 1 1 * 2027",
        "0 0 * JANUARY *",
        "0/5 * * * *",
        "00 02 * * *",
        "0 0 */31 * *",
        "* * * * 7",
        "0 0 29 2 *",
        "0 0 30 2 *",
    ];
    let mut both_accept = Vec::new();
    let mut schema_only = Vec::new();
    for cron in corpus {
        let controller = Schedule::parse(cron, "UTC", now).is_ok();
        let mut obj = backup(json!({"schedule": cron}));
        let schema = adm.admit(&mut obj, None).is_ok();
        if schema && !controller {
            schema_only.push(cron);
        }
        if controller && schema {
            both_accept.push(cron);
        }
    }
    // What a regular expression cannot judge — a backwards range, a date that never comes —
    // is accepted at apply time and reported by the controller as Stalled on spec.schedule.
    assert_eq!(
        schema_only,
        ["5-1 * * * *", "0 0 30 2 *"],
        "refused by the controller but accepted at apply time"
    );
    assert_eq!(
        both_accept,
        [
            "0 2 * * *",
            "@daily",
            "@HOURLY",
            "*/15 * * * *",
            "0 9-17 * * MON-FRI",
            "5,35 */2 1-15/3 JAN-JUN,DEC sun",
            "0 0 ? * *",
            "0 0 * * ?",
            "0/5 * * * *",
            "00 02 * * *",
            "0 0 */31 * *",
            "* * * * 7",
            "0 0 29 2 *",
        ],
        "standard cron is accepted by both; croner's extensions (L, W, #) are not standard"
    );
}
