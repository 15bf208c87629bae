//! The release pipeline (.github/workflows/release.yml) passes `actionlint` and publishes
//! what the chart and the Flux example install: the multi-arch image and the OCI chart, both
//! signed. Needs `actionlint`: `scripts/install-test-tools.sh` puts it in `.tools/bin`.

mod local_support;

use std::process::Command;

use local_support::{root, tool};
use serde_json::Value;

fn workflow() -> Value {
    let text = std::fs::read_to_string(root().join(".github/workflows/release.yml"))
        .expect("read release.yml");
    serde_saphyr::from_str(&text).expect("release.yml is YAML")
}

fn steps(job: &Value) -> Vec<&Value> {
    job["steps"].as_array().expect("steps").iter().collect()
}

fn runs(job: &Value) -> String {
    steps(job)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn workflows_pass_actionlint() {
    let out = Command::new(tool("actionlint"))
        .current_dir(root())
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", root().join(".tools/bin").display()),
        )
        .output()
        .expect("run actionlint");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_is_built_for_amd64_and_arm64_pushed_and_signed() {
    let w = workflow();
    let job = &w["jobs"]["image"];
    assert_eq!(
        job["permissions"]["id-token"], "write",
        "keyless signing needs the OIDC token"
    );
    assert_eq!(job["permissions"]["packages"], "write");
    let uses: Vec<&str> = steps(job)
        .iter()
        .filter_map(|s| s["uses"].as_str())
        .collect();
    assert!(
        uses.iter()
            .any(|u| u.starts_with("docker/setup-qemu-action@")),
        "{uses:?}"
    );
    assert!(
        uses.iter()
            .any(|u| u.starts_with("docker/setup-buildx-action@")),
        "{uses:?}"
    );
    let build = steps(job)
        .into_iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("a build-push step");
    let platforms: Vec<&str> = build["with"]["platforms"]
        .as_str()
        .expect("platforms")
        .split(',')
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(build["with"]["push"], true);
    assert!(
        job["env"]["IMAGE"]
            .as_str()
            .is_some_and(|i| i.starts_with("ghcr.io/")),
        "{job}"
    );
    assert!(
        runs(job).contains("cosign sign --yes \"${IMAGE}@${DIGEST}\""),
        "signs by digest"
    );
}

#[test]
fn the_chart_is_pushed_as_oci_where_the_flux_example_pulls_it_and_signed() {
    let w = workflow();
    let job = &w["jobs"]["chart"];
    assert_eq!(job["permissions"]["id-token"], "write");
    let script = runs(job);
    assert!(
        script.contains("helm push") && script.contains("oci://${REPOSITORY}"),
        "{script}"
    );
    assert!(
        script.contains("cosign sign --yes \"${REPOSITORY}/azlin-operator@${DIGEST}\""),
        "{script}"
    );
    // The owner is github.com/azlin-operator: what the workflow pushes is what is installed.
    let repository = job["env"]["REPOSITORY"].as_str().expect("REPOSITORY");
    let owner = "azlin-operator";
    assert_eq!(
        repository.replace("${{ needs.version.outputs.owner }}", owner),
        "ghcr.io/azlin-operator/charts"
    );
    let flux = std::fs::read_to_string(root().join("deploy/flux/helmrelease.yaml")).expect("flux");
    assert!(
        flux.contains("url: oci://ghcr.io/azlin-operator/charts"),
        "{flux}"
    );
    let values =
        std::fs::read_to_string(root().join("charts/azlin-operator/values.yaml")).expect("values");
    let image = w["jobs"]["image"]["env"]["IMAGE"]
        .as_str()
        .expect("IMAGE")
        .replace("${{ needs.version.outputs.owner }}", owner);
    assert!(
        values.contains(&format!("repository: {image}")),
        "chart values name {image}"
    );
    let chart =
        std::fs::read_to_string(root().join("charts/azlin-operator/Chart.yaml")).expect("chart");
    assert!(
        chart.contains("home: https://github.com/azlin-operator/azlin-operator"),
        "{chart}"
    );
}
