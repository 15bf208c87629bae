//! The real `kubectl` against a served in-memory API server, step by step as against a real
//! kube-apiserver (issue #16): namespaces, protobuf-encoded creates of core kinds, server dry
//! run and `diff`, the scale subresource, `auth can-i`, request and object size limits, strict
//! field validation, and one walk through server-side apply, selectors, patches, the status
//! subresource, finalizers, watch, events and `kubectl wait`. Each step asserts what
//! kube-apiserver answers.
//!
//! Needs a real `kubectl`: `scripts/install-test-tools.sh` puts it in `.tools/bin` (found
//! there or on PATH).

use std::time::Duration;

use azlin_kubemem::ApiServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

// Shared by the kubectl tests; each uses a part of it.
#[allow(dead_code)]
mod kubectl_support;

use kubectl_support::{Cluster, root};

impl Cluster {
    /// Writes `content` to a file in the cluster's directory; returns its path.
    fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write file");
        path.to_string_lossy().to_string()
    }

    fn get(&self, av: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        self.api.get(av, kind, ns, name)
    }
}

const VM: &str = "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: dev\n  namespace: NS\n  labels: {app: web}\nspec:\n  resourceGroup: rg-dev\n  location: westus2\n  size: Standard_D4s_v5\n";

fn vm_in(ns: &str) -> String {
    VM.replace("NS", ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_must_exist_and_deleting_one_deletes_its_content() {
    let c = Cluster::start().await;
    let names = c.ok(&["get", "namespaces", "-o", "name"]).await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&format!("namespace/{ns}\n")), "{names}");
    }

    // `kubectl create namespace` (a protobuf POST).
    assert_eq!(
        c.ok(&["create", "namespace", "team"]).await.trim(),
        "namespace/team created"
    );
    let ns = c.json(&["get", "namespace", "team"]).await;
    assert_eq!(ns["status"]["phase"], json!("Active"), "{ns}");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]), "{ns}");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        json!("team")
    );
    let table = c.ok(&["get", "ns", "team", "--no-headers"]).await;
    assert!(
        table.starts_with("team") && table.contains("Active"),
        "{table}"
    );
    let err = c.fails(&["create", "namespace", "team"]).await;
    assert!(
        err.contains(r#"Error from server (AlreadyExists): namespaces "team" already exists"#),
        "{err}"
    );

    // Objects in a namespace that does not exist are refused.
    let err = c
        .fails(&[
            "create",
            "configmap",
            "cfg",
            "-n",
            "nowhere",
            "--from-literal=a=b",
        ])
        .await;
    assert!(
        err.contains(r#"error: failed to create configmap: namespaces "nowhere" not found"#),
        "{err}"
    );
    let nowhere = c.file("nowhere.yaml", &vm_in("nowhere"));
    let err = c.fails(&["apply", "-f", &nowhere]).await;
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");
    assert!(c.get("v1", "Namespace", None, "nowhere").is_none());

    // Content of `team`: one object held by a finalizer, two without.
    c.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "team",
        "--from-literal=a=b",
    ])
    .await;
    c.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "team",
        "--from-literal=k=v",
    ])
    .await;
    let held = vm_in("team").replace(
        "  labels: {app: web}\n",
        "  labels: {app: web}\n  finalizers: [example.com/hold]\n",
    );
    let held = c.file("held.yaml", &held);
    c.ok(&["apply", "-f", &held]).await;

    for immortal in ["default", "kube-system", "kube-public"] {
        let err = c.fails(&["delete", "namespace", immortal]).await;
        assert!(
            err.contains(&format!(
                r#"Error from server (Forbidden): namespaces "{immortal}" is forbidden: this namespace may not be deleted"#
            )),
            "{err}"
        );
    }

    let out = c.ok(&["delete", "namespace", "team", "--wait=false"]).await;
    assert_eq!(out.trim(), r#"namespace "team" deleted"#);
    let ns = c.json(&["get", "namespace", "team"]).await;
    assert_eq!(ns["status"]["phase"], json!("Terminating"), "{ns}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    let conditions = ns["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no condition {t} in {ns}"))
    };
    assert_eq!(cond("NamespaceContentRemaining")["status"], json!("True"));
    assert_eq!(
        cond("NamespaceContentRemaining")["message"],
        json!("Some resources are remaining: azlinvms.azlin.io has 1 resource instances")
    );
    assert_eq!(
        cond("NamespaceFinalizersRemaining")["message"],
        json!("Some finalizers are remaining: example.com/hold in 1 resource instances")
    );
    // The content without finalizers is gone; the held VM is being deleted.
    let err = c.fails(&["get", "configmap", "cfg", "-n", "team"]).await;
    assert!(err.contains(r#"configmaps "cfg" not found"#), "{err}");
    assert!(c.get("v1", "Secret", Some("team"), "s").is_none());
    let vm = c.json(&["get", "avm", "dev", "-n", "team"]).await;
    assert!(vm["metadata"]["deletionTimestamp"].is_string(), "{vm}");

    // Nothing new may be created in a terminating namespace.
    let err = c
        .fails(&[
            "create",
            "configmap",
            "late",
            "-n",
            "team",
            "--from-literal=a=b",
        ])
        .await;
    assert!(
        err.contains(
            r#"error: failed to create configmap: configmaps "late" is forbidden: unable to create new content in namespace team because it is being terminated"#
        ),
        "{err}"
    );

    // Removing the last finalizer lets the VM and then the namespace go.
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    let err = c.fails(&["get", "namespace", "team"]).await;
    assert!(
        err.contains(r#"Error from server (NotFound): namespaces "team" not found"#),
        "{err}"
    );
    assert!(
        c.get("azlin.io/v1alpha1", "AzlinVM", Some("team"), "dev")
            .is_none()
    );

    // `kubectl delete namespace` waits for the namespace to go by default.
    c.ok(&["create", "namespace", "short"]).await;
    c.ok(&[
        "create",
        "configmap",
        "x",
        "-n",
        "short",
        "--from-literal=a=b",
    ])
    .await;
    let out = c
        .ok(&["delete", "namespace", "short", "--timeout=30s"])
        .await;
    assert_eq!(out.trim(), r#"namespace "short" deleted"#);
    assert!(c.get("v1", "Namespace", None, "short").is_none());
    assert!(c.get("v1", "ConfigMap", Some("short"), "x").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_kinds_are_created_from_kubectls_protobuf() {
    let c = Cluster::start().await;
    let out = c
        .ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
        ])
        .await;
    assert_eq!(out.trim(), "secret/creds created");
    let s = c
        .get("v1", "Secret", Some("default"), "creds")
        .expect("secret");
    assert_eq!(s["data"]["user"], json!("YWRtaW4="), "{s}");
    assert_eq!(s["type"], json!("Opaque"));

    let key = c.file("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n");
    let out = c
        .ok(&[
            "create",
            "secret",
            "generic",
            "devbox-ssh",
            "--type=kubernetes.io/ssh-auth",
            &format!("--from-file=ssh-privatekey={key}"),
        ])
        .await;
    assert_eq!(out.trim(), "secret/devbox-ssh created");
    let table = c.ok(&["get", "secret", "devbox-ssh", "--no-headers"]).await;
    assert!(table.contains("kubernetes.io/ssh-auth"), "{table}");

    let out = c
        .ok(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
            "--from-literal=c=d",
        ])
        .await;
    assert_eq!(out.trim(), "configmap/cfg created");
    let cm = c
        .get("v1", "ConfigMap", Some("default"), "cfg")
        .expect("cm");
    assert_eq!(cm["data"], json!({"a": "b", "c": "d"}));
    let cm = c.json(&["get", "cm", "cfg"]).await;
    assert!(cm["metadata"]["uid"].is_string(), "{cm}");

    let out = c.ok(&["create", "serviceaccount", "bot"]).await;
    assert_eq!(out.trim(), "serviceaccount/bot created");

    let err = c
        .fails(&["create", "secret", "generic", "creds", "--from-literal=x=y"])
        .await;
    assert!(
        err.contains(r#"error: failed to create secret secrets "creds" already exists"#),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_run_and_diff_persist_nothing() {
    let c = Cluster::start().await;
    let sample = "config/samples/azlinvm.yaml";
    let out = c
        .ok(&["apply", "--dry-run=server", "-f", sample, "-o", "yaml"])
        .await;
    let would: Value = serde_saphyr::from_str(&out).expect("yaml");
    assert_eq!(would["metadata"]["name"], json!("devbox"));
    assert!(would["metadata"]["uid"].is_string(), "{out}");
    // Defaulting ran (the sample leaves mounts[].readOnly to its default).
    assert_eq!(
        would["spec"]["mounts"][0]["readOnly"],
        json!(false),
        "{out}"
    );
    assert!(
        c.get("azlin.io/v1alpha1", "AzlinVM", Some("default"), "devbox")
            .is_none()
    );
    let out = c.ok(&["apply", "--dry-run=server", "-f", sample]).await;
    assert_eq!(
        out.trim(),
        "azlinvm.azlin.io/devbox created (server dry run)"
    );
    // Admission runs in a dry run.
    let err = c
        .fails(&[
            "apply",
            "--dry-run=server",
            "-f",
            "config/samples/invalid/vm-bad-location.yaml",
        ])
        .await;
    assert!(
        err.contains("spec.location must be an Azure region name"),
        "{err}"
    );
    let out = c
        .ok(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
            "--dry-run=server",
        ])
        .await;
    assert_eq!(out.trim(), "configmap/cfg created (server dry run)");
    assert!(c.get("v1", "ConfigMap", Some("default"), "cfg").is_none());

    // diff against an absent object shows the whole object, and creates nothing.
    let out = c.kubectl(&["diff", "-f", sample]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("+  name: devbox"), "{diff}");
    assert!(
        c.get("azlin.io/v1alpha1", "AzlinVM", Some("default"), "devbox")
            .is_none()
    );

    c.ok(&["apply", "-f", sample]).await;
    let before = c
        .get("azlin.io/v1alpha1", "AzlinVM", Some("default"), "devbox")
        .expect("created");
    let out = c.kubectl(&["diff", "-f", sample]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "no differences expected: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let resized = std::fs::read_to_string(root().join(sample))
        .expect("sample")
        .replace("Standard_E8as_v5", "Standard_D8s_v5");
    let resized = c.file("resized.yaml", &resized);
    let out = c.kubectl(&["diff", "-f", &resized]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  size: Standard_E8as_v5") && diff.contains("+  size: Standard_D8s_v5"),
        "{diff}"
    );
    let out = c.ok(&["apply", "--dry-run=server", "-f", &resized]).await;
    assert_eq!(
        out.trim(),
        "azlinvm.azlin.io/devbox configured (server dry run)"
    );
    let out = c.ok(&["delete", "--dry-run=server", "-f", sample]).await;
    assert_eq!(
        out.trim(),
        r#"azlinvm.azlin.io "devbox" deleted from default namespace (server dry run)"#
    );
    let after = c
        .get("azlin.io/v1alpha1", "AzlinVM", Some("default"), "devbox")
        .expect("still there");
    assert_eq!(after, before, "dry runs must not change the object");
}

/// A namespaced CRD with a scale subresource including a label selector path.
fn register_scalable(api: &ApiServer) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "pools.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "pools", "singular": "pool", "kind": "Pool", "listKind": "PoolList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {
                        "ready": {"type": "integer"}, "selector": {"type": "string"}}},
                }}},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.size",
                    "statusReplicasPath": ".status.ready",
                    "labelSelectorPath": ".status.selector",
                }},
            }],
        },
    });
    api.register_crd(&serde_json::from_value(crd).expect("crd"), None)
        .expect("register pools");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_serves_autoscaling_v1_scale() {
    let c = Cluster::start().await;
    register_scalable(&c.api);
    c.api
        .apply_yaml(
            "apiVersion: example.com/v1\nkind: Pool\nmetadata: {name: p}\nspec: {size: 1}\n",
        )
        .expect("seed pool");
    let discovery = c.ok(&["get", "--raw", "/apis/example.com/v1"]).await;
    let discovery: Value = serde_json::from_str(&discovery).expect("json");
    let scale = discovery["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "pools/scale"))
        .cloned()
        .unwrap_or_else(|| panic!("no pools/scale in {discovery}"));
    assert_eq!(
        (&scale["group"], &scale["version"], &scale["kind"]),
        (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
    );

    let out = c.ok(&["scale", "pool/p", "--replicas=3"]).await;
    assert_eq!(out.trim(), "pool.example.com/p scaled");
    let pool = c
        .get("example.com/v1", "Pool", Some("default"), "p")
        .expect("pool");
    assert_eq!(pool["spec"]["size"], json!(3));
    assert_eq!(pool["metadata"]["generation"], json!(2));

    c.ok(&[
        "patch",
        "pool",
        "p",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":2,"selector":"app=p"}}"#,
    ])
    .await;
    let raw = c
        .ok(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/pools/p/scale",
        ])
        .await;
    let s: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(s["apiVersion"], json!("autoscaling/v1"));
    assert_eq!(s["kind"], json!("Scale"));
    assert_eq!(s["spec"], json!({"replicas": 3}));
    assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=p"}));
    let err = c
        .fails(&["scale", "pool/p", "--current-replicas=1", "--replicas=5"])
        .await;
    assert!(err.contains("Expected replicas to be 1, was 3"), "{err}");
    let out = c
        .ok(&["scale", "pool/p", "--current-replicas=3", "--replicas=0"])
        .await;
    assert_eq!(out.trim(), "pool.example.com/p scaled");
    let scale = c.json(&["get", "pool", "p", "--subresource=scale"]).await;
    assert_eq!(scale["spec"]["replicas"], json!(0), "{scale}");

    // The Fleet CRD declares the subresource too; its admission still applies.
    c.ok(&["apply", "-f", "config/samples/fleet.yaml"]).await;
    let out = c.ok(&["scale", "fleet/workers", "--replicas=5"]).await;
    assert_eq!(out.trim(), "fleet.azlin.io/workers scaled");
    let fleet = c
        .get("azlin.io/v1alpha1", "Fleet", Some("default"), "workers")
        .expect("fleet");
    assert_eq!(fleet["spec"]["replicas"], json!(5));
    let err = c.fails(&["scale", "fleet/workers", "--replicas=501"]).await;
    assert!(
        err.contains(r#"The Fleet "workers" is invalid: spec.replicas"#),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_is_always_allowed() {
    let c = Cluster::start().await;
    assert_eq!(
        c.ok(&["auth", "can-i", "create", "azlinvms"]).await.trim(),
        "yes"
    );
    assert_eq!(
        c.ok(&["auth", "can-i", "delete", "secrets", "-n", "kube-system"])
            .await
            .trim(),
        "yes"
    );
    assert_eq!(
        c.ok(&["auth", "can-i", "get", "/healthz"]).await.trim(),
        "yes"
    );
    let list = c.ok(&["auth", "can-i", "--list"]).await;
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["*.*", "[]", "[]", "[*]"]), "{list}");
    assert!(rows.contains(&vec!["[*]", "[]", "[*]"]), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_object_size_limits() {
    let c = Cluster::start().await;
    let write = |name: &str, bytes: usize| -> String {
        let path = c.dir.path().join(name);
        std::fs::write(&path, "x".repeat(bytes)).expect("write");
        path.to_string_lossy().to_string()
    };
    let small = write("small", 1024 * 1024);
    c.ok(&[
        "create",
        "configmap",
        "small",
        &format!("--from-file=data={small}"),
    ])
    .await;
    assert!(c.get("v1", "ConfigMap", Some("default"), "small").is_some());

    let big = write("big", 2 * 1024 * 1024);
    let err = c
        .fails(&[
            "create",
            "configmap",
            "big",
            &format!("--from-file=data={big}"),
        ])
        .await;
    assert!(
        err.contains("error: failed to create configmap: etcdserver: request is too large"),
        "{err}"
    );
    assert!(c.get("v1", "ConfigMap", Some("default"), "big").is_none());

    let huge = write("huge", 4 * 1024 * 1024);
    let err = c
        .fails(&[
            "create",
            "configmap",
            "huge",
            &format!("--from-file=data={huge}"),
        ])
        .await;
    assert!(
        err.contains(
            "error: failed to create configmap: Request entity too large: limit is 3145728"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_with_strict_validation_and_pruned_otherwise() {
    let c = Cluster::start().await;
    let bad = "config/samples/invalid/vm-unknown-field.yaml";
    let err = c.fails(&["apply", "-f", bad]).await;
    assert!(
        err.contains(
            r#"Error from server (BadRequest): error when creating "config/samples/invalid/vm-unknown-field.yaml": AzlinVM in version "v1alpha1" cannot be handled as a AzlinVM: strict decoding error: unknown field "spec.sizee""#
        ),
        "{err}"
    );
    assert!(
        c.get("azlin.io/v1alpha1", "AzlinVM", Some("default"), "devbox")
            .is_none()
    );
    let out = c.kubectl(&["apply", "--validate=warn", "-f", bad]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: unknown field "spec.sizee""#),
        "{stderr}"
    );
    let vm = c
        .get("azlin.io/v1alpha1", "AzlinVM", Some("default"), "devbox")
        .expect("created without the unknown field");
    assert!(vm["spec"].get("sizee").is_none(), "{vm}");
}

/// Reads lines of a running `kubectl get -w` until one satisfies `want` (30 s deadline).
async fn watch_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("kubectl -w: nothing matching; so far: {seen:?}"))
            .expect("read")
            .unwrap_or_else(|| panic!("kubectl -w ended; so far: {seen:?}"));
        seen.push(line.clone());
        if want(&line) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_session_walks_the_common_steps() {
    let c = Cluster::start().await;
    let dev = c.file("dev.yaml", &vm_in("default"));
    let other = c.file(
        "other.yaml",
        &vm_in("default")
            .replace("name: dev", "name: other")
            .replace("app: web", "app: db"),
    );

    // Server-side apply.
    let out = c.ok(&["apply", "--server-side", "-f", &dev]).await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/dev serverside-applied");
    c.ok(&["apply", "--server-side", "-f", &other]).await;
    let vm = c
        .json(&["get", "avm", "dev", "--show-managed-fields"])
        .await;
    assert_eq!(
        vm["metadata"]["managedFields"][0]["operation"],
        json!("Apply"),
        "{vm}"
    );

    // Watch from here on: every later change shows up as a row.
    let mut watch = c
        .command(&["get", "avm", "dev", "-w", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl get -w");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    watch_until(&mut lines, &mut seen, |l| l.starts_with("ADDED ")).await;

    // Label and field selectors.
    let out = c.ok(&["get", "avm", "-l", "app=web", "-o", "name"]).await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/dev");
    let out = c.ok(&["get", "avm", "-l", "app!=web", "-o", "name"]).await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/other");
    let out = c
        .ok(&[
            "get",
            "avm",
            "--field-selector",
            "metadata.name=other",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(out.trim(), "azlinvm.azlin.io/other");
    let err = c
        .fails(&["get", "avm", "--field-selector", "spec.size=x"])
        .await;
    assert!(
        err.contains(r#"field label not supported: spec.size"#),
        "{err}"
    );

    // Merge and JSON patches.
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"Standard_D8s_v5"}}"#,
    ])
    .await;
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/tier","value":"gold"}]"#,
    ])
    .await;
    let vm = c.json(&["get", "avm", "dev"]).await;
    assert_eq!(vm["spec"]["size"], json!("Standard_D8s_v5"));
    assert_eq!(vm["metadata"]["labels"]["tier"], json!("gold"));
    assert_eq!(vm["metadata"]["generation"], json!(2));
    let err = c
        .fails(&[
            "patch",
            "avm",
            "dev",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/size","value":"nope"}]"#,
        ])
        .await;
    assert!(
        err.contains("The request is invalid") && err.contains("/spec/size"),
        "{err}"
    );
    watch_until(&mut lines, &mut seen, |l| l.starts_with("MODIFIED ")).await;

    // The status subresource: status writes leave the spec (and generation) alone, main
    // writes cannot change status.
    let waiter = c
        .command(&["wait", "--for=condition=Ready", "avm/dev", "--timeout=60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl wait");
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","reason":"Provisioned","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
    ])
    .await;
    let waited = waiter.wait_with_output().await.expect("kubectl wait");
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "azlinvm.azlin.io/dev condition met"
    );
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ])
    .await;
    let vm = c.json(&["get", "avm", "dev"]).await;
    assert_eq!(vm["status"]["phase"], json!("Running"), "{vm}");
    assert_eq!(vm["metadata"]["generation"], json!(2));

    // Events, as `kubectl events` and `describe` list them.
    let uid = vm["metadata"]["uid"].as_str().expect("uid").to_string();
    c.api
        .apply_yaml(&format!(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {{name: dev.1, namespace: default}}\n\
             regarding: {{apiVersion: azlin.io/v1alpha1, kind: AzlinVM, name: dev, namespace: default, uid: {uid}}}\n\
             reason: Provisioned\nnote: VM dev is running\ntype: Normal\naction: Reconcile\n\
             reportingController: azlin-operator\nreportingInstance: local\n\
             eventTime: \"2026-01-01T00:00:01.000000Z\"\n"
        ))
        .expect("seed event");
    let events = c.ok(&["events", "--for", "azlinvm/dev"]).await;
    assert!(
        events.contains("Provisioned") && events.contains("VM dev is running"),
        "{events}"
    );

    // Finalizers and deletionTimestamp.
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ])
    .await;
    let out = c.ok(&["delete", "avm", "dev", "--wait=false"]).await;
    assert_eq!(
        out.trim(),
        r#"azlinvm.azlin.io "dev" deleted from default namespace"#
    );
    let vm = c.json(&["get", "avm", "dev"]).await;
    assert!(vm["metadata"]["deletionTimestamp"].is_string(), "{vm}");
    let err = c
        .fails(&[
            "patch",
            "avm",
            "dev",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#,
        ])
        .await;
    assert!(
        err.contains("no new finalizers can be added if the object is being deleted"),
        "{err}"
    );
    c.ok(&[
        "patch",
        "avm",
        "dev",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    watch_until(&mut lines, &mut seen, |l| l.starts_with("DELETED ")).await;
    let err = c.fails(&["get", "avm", "dev"]).await;
    assert!(
        err.contains(r#"azlinvms.azlin.io "dev" not found"#),
        "{err}"
    );
    watch.kill().await.expect("kill kubectl -w");

    // A watch with a server-side timeout ends by itself.
    let out = c
        .kubectl(&["get", "avm", "-w", "--request-timeout=2s", "-o", "name"])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("azlinvm.azlin.io/other"), "{out:?}");
}
