//! Real `kubectl` against a served in-memory API server (what `azlin-operator local
//! --serve-api` offers): discovery, short names and categories, server-side Table printing
//! with the CRDs' printer columns, `-o yaml`, `apply` (client-side), `describe`,
//! `api-resources`, and CEL admission errors in kubectl's stderr.
//!
//! Needs a real `kubectl`: `scripts/install-test-tools.sh` puts it in `.tools/bin` (found
//! there or on PATH).

use azlin_kubemem::Verb;
use serde_json::{Value, json};

// Shared by the kubectl tests; each uses a part of it.
#[allow(dead_code)]
mod kubectl_support;

use kubectl_support::{Cluster, root};

impl Cluster {
    fn vm(&self, name: &str) -> Option<Value> {
        self.api
            .get("azlin.io/v1alpha1", "AzlinVM", Some("default"), name)
    }

    /// Creates the VM `dev` and gives it a status, as the controller would.
    async fn seed_vm(&self) {
        self.api
            .apply_yaml(
                "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: dev, namespace: default}\n\
                 spec: {resourceGroup: rg-dev, location: westus2, size: Standard_D4s_v5}\n",
            )
            .expect("seed vm");
        let client_status = json!({
            "status": {
                "phase": "Running",
                "powerState": "Running",
                "privateIP": "10.0.0.4",
                "publicIP": "20.1.2.3",
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Provisioned", "message": "ok",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]
            }
        });
        self.patch_status("dev", client_status).await;
    }

    async fn patch_status(&self, name: &str, status: serde_json::Value) {
        let mut vm = self
            .api
            .get("azlin.io/v1alpha1", "AzlinVM", Some("default"), name)
            .expect("vm exists");
        vm["status"] = status["status"].clone();
        let body = serde_json::to_vec(&vm).expect("json");
        let req = http::Request::builder()
            .method("PUT")
            .uri(format!(
                "/apis/azlin.io/v1alpha1/namespaces/default/azlinvms/{name}/status"
            ))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let resp = self.api.handle(req).await;
        assert_eq!(resp.status(), 200, "status update");
    }
}

/// Splits a kubectl table into rows of whitespace-separated cells (multi-word headers are
/// not used by the kinds checked here).
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], first: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r.first().is_some_and(|c| c == first))
        .unwrap_or_else(|| panic!("no row {first:?} in {rows:?}"))
}

fn cells(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_short_name_shows_printer_columns_and_status_values() {
    let c = Cluster::start().await;
    c.seed_vm().await;
    let out = c.ok(&["get", "avm"]).await;
    let rows = table(&out);
    assert_eq!(
        rows[0],
        cells(&["NAME", "PHASE", "POWER", "SIZE", "IP", "READY", "AGE"]),
        "{out}"
    );
    let dev = row(&rows, "dev");
    assert_eq!(
        dev[..6],
        cells(&[
            "dev",
            "Running",
            "Running",
            "Standard_D4s_v5",
            "10.0.0.4",
            "True"
        ])[..],
        "{out}"
    );
    // The Age cell is a human duration such as `3s`.
    assert!(
        dev[6].ends_with('s') && dev[6][..dev[6].len() - 1].parse::<u32>().is_ok(),
        "age cell {:?} in {out}",
        dev[6]
    );

    let wide = c.ok(&["get", "avm", "-o", "wide"]).await;
    let rows = table(&wide);
    assert_eq!(
        rows[0],
        cells(&[
            "NAME",
            "PHASE",
            "POWER",
            "SIZE",
            "IP",
            "PUBLIC-IP",
            "LOCATION",
            "READY",
            "AGE"
        ]),
        "{wide}"
    );
    assert_eq!(
        row(&rows, "dev")[..8],
        cells(&[
            "dev",
            "Running",
            "Running",
            "Standard_D4s_v5",
            "10.0.0.4",
            "20.1.2.3",
            "westus2",
            "True"
        ])[..],
        "{wide}"
    );

    let one = c.ok(&["get", "azlinvm", "dev", "--no-headers"]).await;
    assert_eq!(table(&one)[0][..2], cells(&["dev", "Running"])[..], "{one}");
    let missing = c.fails(&["get", "avm", "nope"]).await;
    assert!(
        missing.contains(r#"azlinvms.azlin.io "nope" not found"#),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_by_category_lists_every_azlin_kind() {
    let c = Cluster::start().await;
    c.seed_vm().await;
    c.api
        .apply_yaml(
            "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {name: team-share, namespace: default}\n\
             spec: {resourceGroup: rg-dev, location: westus2, sizeGiB: 100}\n",
        )
        .expect("seed storage");
    let out = c.ok(&["get", "azlin"]).await;
    let rows = table(&out);
    assert_eq!(
        row(&rows, "azlinvm.azlin.io/dev")[..6],
        cells(&[
            "azlinvm.azlin.io/dev",
            "Running",
            "Running",
            "Standard_D4s_v5",
            "10.0.0.4",
            "True"
        ])[..],
        "{out}"
    );
    let ss = row(&rows, "sharedstorage.azlin.io/team-share");
    assert_eq!(ss[1], "100", "size column (integer) in {out}");
    assert!(
        rows.iter()
            .any(|r| r == &cells(&["NAME", "PHASE", "SIZE", "MOUNTED-BY", "READY", "AGE"])),
        "SharedStorage header in {out}"
    );

    let all_ns = c.ok(&["get", "avm", "-A"]).await;
    assert_eq!(table(&all_ns)[0][..2], cells(&["NAMESPACE", "NAME"])[..]);
    assert_eq!(table(&all_ns)[1][..2], cells(&["default", "dev"])[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_yaml_and_json_show_the_stored_object() {
    let c = Cluster::start().await;
    c.seed_vm().await;
    let out = c.ok(&["get", "avm", "dev", "-o", "yaml"]).await;
    let v: Value = serde_saphyr::from_str(&out).expect("yaml");
    assert_eq!(v["kind"], json!("AzlinVM"));
    assert_eq!(v["spec"]["location"], json!("westus2"));
    assert_eq!(v["status"]["phase"], json!("Running"));
    assert_eq!(v["status"]["privateIP"], json!("10.0.0.4"));
    let out = c
        .ok(&["get", "avm", "dev", "-o", "jsonpath={.status.powerState}"])
        .await;
    assert_eq!(out, "Running");
    let names = c.ok(&["get", "azlin", "-o", "name"]).await;
    assert_eq!(names.trim(), "azlinvm.azlin.io/dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_creates_then_merge_patches() {
    let c = Cluster::start().await;
    let out = c.ok(&["apply", "-f", "config/samples/azlinvm.yaml"]).await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/devbox created");
    let vm = c.vm("devbox").expect("created");
    assert_eq!(vm["spec"]["size"], json!("Standard_E8as_v5"));
    assert!(
        vm.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
            .is_some(),
        "{vm}"
    );

    // The sample leaves `mounts[].readOnly` to its default, so kubectl's three-way JSON merge
    // patch replaces the list (as against a real API server) and prints "configured"; the
    // server sees the same object after defaulting and stores nothing.
    let again = c.ok(&["apply", "-f", "config/samples/azlinvm.yaml"]).await;
    assert_eq!(again.trim(), "azlinvm.azlin.io/devbox configured");
    let same = c.vm("devbox").expect("still there");
    assert_eq!(
        same["metadata"]["resourceVersion"], vm["metadata"]["resourceVersion"],
        "re-applying the same sample must not change the object"
    );

    let sample = std::fs::read_to_string(root().join("config/samples/azlinvm.yaml"))
        .expect("sample")
        .replace("Standard_E8as_v5", "Standard_D8s_v5");
    let file = c.dir.path().join("resized.yaml");
    std::fs::write(&file, sample).expect("write");
    let mark = c.api.mark();
    let path = file.to_string_lossy().to_string();
    let out = c.ok(&["apply", "-f", &path]).await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/devbox configured");
    let vm = c.vm("devbox").expect("still there");
    assert_eq!(vm["spec"]["size"], json!("Standard_D8s_v5"));
    assert_eq!(vm["metadata"]["generation"], json!(2));
    let writes = c.api.writes_since(mark);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].verb, Verb::Patch);

    let deleted = c.ok(&["delete", "-f", &path]).await;
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(c.vm("devbox").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_sample_is_rejected_with_the_cel_message() {
    let c = Cluster::start().await;
    let err = c
        .fails(&["apply", "-f", "config/samples/invalid/vm-bad-location.yaml"])
        .await;
    assert!(
        err.contains(r#"The AzlinVM "devbox" is invalid"#)
            && err.contains("spec.location must be an Azure region name"),
        "{err}"
    );
    assert!(c.vm("devbox").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_spec_status_and_events() {
    let c = Cluster::start().await;
    c.seed_vm().await;
    let uid = c.vm("dev").expect("vm")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    c.api
        .apply_yaml(&format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: dev.1, namespace: default}}\n\
             involvedObject: {{apiVersion: azlin.io/v1alpha1, kind: AzlinVM, name: dev, namespace: default, uid: {uid}}}\n\
             reason: Provisioned\nmessage: VM dev is running\ntype: Normal\ncount: 1\n\
             source: {{component: azlin-operator}}\n\
             firstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\n"
        ))
        .expect("seed event");
    // What kube-runtime's Recorder writes: an events.k8s.io/v1 Event.
    c.api
        .apply_yaml(&format!(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: dev.2, namespace: default}}\n\
             regarding: {{apiVersion: azlin.io/v1alpha1, kind: AzlinVM, name: dev, namespace: default, uid: {uid}}}\n\
             reason: PowerChanged\nnote: VM dev was started\ntype: Normal\naction: Reconcile\n\
             reportingController: azlin-operator\nreportingInstance: local\n\
             eventTime: \"2026-01-01T00:00:01.000000Z\"\n"
        ))
        .expect("seed events.k8s.io event");
    let out = c.ok(&["describe", "avm", "dev"]).await;
    for want in [
        "Name:         dev",
        "Kind:         AzlinVM",
        "Type:                  Ready",
        "Phase:                   Running",
        "Private Ip:              10.0.0.4",
        "Events:",
        "Provisioned",
        "azlin-operator",
        "VM dev is running",
        "PowerChanged",
        "VM dev was started",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    let events = c.ok(&["get", "events"]).await;
    let rows = table(&events);
    assert!(
        rows[0].starts_with(&cells(&[
            "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"
        ])),
        "{events}"
    );
    assert!(events.contains("azlinvm/dev"), "{events}");
    assert!(events.contains("VM dev was started"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_lists_short_names_and_categories() {
    let c = Cluster::start().await;
    let out = c.ok(&["api-resources"]).await;
    let rows = table(&out);
    assert_eq!(
        rows[0],
        cells(&["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"])
    );
    assert_eq!(
        row(&rows, "azlinvms"),
        cells(&["azlinvms", "avm", "azlin.io/v1alpha1", "true", "AzlinVM"])
    );
    assert_eq!(
        row(&rows, "configmaps"),
        cells(&["configmaps", "cm", "v1", "true", "ConfigMap"])
    );
    let azlin = c
        .ok(&["api-resources", "--categories=azlin", "-o", "name"])
        .await;
    let mut names: Vec<&str> = azlin.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "azlinvms.azlin.io",
            "backups.azlin.io",
            "fleets.azlin.io",
            "sharedstorages.azlin.io"
        ]
    );
    let version = c.ok(&["version", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&version).expect("json");
    assert_eq!(v["serverVersion"]["minor"], json!("35"), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_kinds_print_their_columns_and_discovery_is_recorded_as_reads() {
    let c = Cluster::start().await;
    c.api
        .apply_yaml(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: devbox-ssh, namespace: default}\n\
             type: kubernetes.io/ssh-auth\nstringData: {ssh-privatekey: k, ssh-publickey: p}\n\
             ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default}\ndata: {a: b}\n",
        )
        .expect("seed");
    c.api.clear_requests();
    let out = c.ok(&["get", "secret,cm"]).await;
    let rows = table(&out);
    assert_eq!(rows[0], cells(&["NAME", "TYPE", "DATA", "AGE"]), "{out}");
    assert_eq!(
        row(&rows, "secret/devbox-ssh")[..3],
        cells(&["secret/devbox-ssh", "kubernetes.io/ssh-auth", "2"])[..],
        "{out}"
    );
    assert_eq!(row(&rows, "configmap/cfg")[1], "1", "{out}");
    let reqs = c.api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path == "/apis" && r.verb == Verb::Get && r.status == 200),
        "{reqs:?}"
    );
    assert!(reqs.iter().all(|r| !r.is_write()), "{reqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_works_too() {
    let c = Cluster::start().await;
    let out = c
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            "config/samples/azlinvm.yaml",
        ])
        .await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/devbox serverside-applied");
    let vm = c.vm("devbox").expect("created");
    assert_eq!(vm["spec"]["location"], json!("westus2"));
    let managers: Vec<&str> = vm["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["manager"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(managers, vec!["kubectl"], "{vm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_a_row_per_change() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let c = Cluster::start().await;
    c.seed_vm().await;
    let mut child = tokio::process::Command::new(kubectl_support::tool("kubectl"))
        .args(["get", "avm", "-w"])
        .arg("--kubeconfig")
        .arg(c.dir.path().join("kubeconfig"))
        .arg("--cache-dir")
        .arg(c.dir.path().join("cache"))
        .env("HOME", c.dir.path())
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubectl -w");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut next_row = async |seen: &mut Vec<String>| -> Vec<String> {
        let line = tokio::time::timeout(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no output from kubectl -w; so far: {seen:?}"))
            .expect("read")
            .unwrap_or_else(|| panic!("kubectl -w ended; so far: {seen:?}"));
        seen.push(line.clone());
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        next_row(&mut seen).await[..2],
        cells(&["NAME", "PHASE"])[..]
    );
    assert_eq!(
        next_row(&mut seen).await[..2],
        cells(&["dev", "Running"])[..]
    );
    c.patch_status(
        "dev",
        json!({"status": {"phase": "Updating", "powerState": "Running", "privateIP": "10.0.0.4"}}),
    )
    .await;
    assert_eq!(
        next_row(&mut seen).await[..3],
        cells(&["dev", "Updating", "Running"])[..],
        "{seen:?}"
    );
    child.kill().await.expect("kill kubectl -w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_uses_the_crd_schema() {
    let c = Cluster::start().await;
    let out = c.ok(&["explain", "avm"]).await;
    assert!(
        out.contains("KIND:       AzlinVM") && out.contains("An Azure Linux development VM"),
        "{out}"
    );
    let out = c.ok(&["explain", "avm.spec.size"]).await;
    assert!(out.contains("FIELD: size <string>"), "{out}");
    let out = c.ok(&["explain", "avm.spec", "--recursive"]).await;
    assert!(out.contains("resourceGroup"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_dry_runs_persist_nothing() {
    let c = Cluster::start().await;
    let out = c
        .ok(&[
            "apply",
            "--dry-run=server",
            "-f",
            "config/samples/azlinvm.yaml",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "azlinvm.azlin.io/devbox created (server dry run)"
    );
    assert!(c.vm("devbox").is_none(), "a dry run must not create the VM");
    let out = c
        .ok(&[
            "apply",
            "--dry-run=client",
            "-f",
            "config/samples/azlinvm.yaml",
        ])
        .await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/devbox created (dry run)");
    assert!(c.vm("devbox").is_none());
}
