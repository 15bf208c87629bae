//! The caches' watches recover when the API server's resourceVersion goes backwards (an API
//! server restarted on an empty or restored etcd), and `/readyz` says so meanwhile.

use azlin_kubemem::testing::eventually;
use azlin_operator::api::AzlinVM;
use azlin_operator::api::conditions::{self, READY};
use azlin_operator::embedded::{EmbeddedEnv, register_azlin_crds};
use azlin_operator::runtime::readiness::ReadinessStatus;

#[allow(dead_code)]
mod support;
use support::{WAIT, env};

fn vm_yaml(name: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: {name}, namespace: default}}\nspec: {{resourceGroup: rg-{name}, location: westus2}}\n"
    )
}

async fn wait_ready(env: &EmbeddedEnv, name: &str) {
    env.wait_for(
        "default",
        name,
        |v: &AzlinVM| {
            v.status.as_ref().is_some_and(|s| {
                s.observed_generation == v.metadata.generation
                    && conditions::is_true(&s.conditions, READY)
            })
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{name} Ready: {e}"));
}

fn readiness(env: &EmbeddedEnv) -> ReadinessStatus {
    env.readiness().expect("controllers running").status()
}

#[tokio::test]
async fn watches_list_again_after_the_api_server_restarted_empty() {
    let env = env().await;
    env.apply_yaml(&vm_yaml("before")).expect("vm");
    wait_ready(&env, "before").await;
    eventually(WAIT, "ready", || async {
        readiness(&env).is_ready().then_some(())
    })
    .await;
    let rv_before = env.api().resource_version();

    // The API server comes back empty, without our CRDs: the watches cannot work, and the
    // operator says so.
    env.api().restart_empty();
    assert!(env.api().resource_version() < rv_before);
    eventually(WAIT, "not ready while the watches fail", || async {
        match readiness(&env) {
            ReadinessStatus::Waiting(gates) if gates.iter().any(|g| g == "AzlinVM watch") => {
                Some(())
            }
            _ => None,
        }
    })
    .await;

    // The CRDs are installed again and a new object appears, at resourceVersions lower than
    // the watches saw before: they list again, the object is reconciled, and the operator is
    // ready again.
    register_azlin_crds(env.api(), true).expect("CRDs");
    env.apply_yaml(&vm_yaml("after")).expect("vm");
    assert!(env.api().resource_version() < rv_before);
    wait_ready(&env, "after").await;
    eventually(WAIT, "ready again", || async {
        readiness(&env).is_ready().then_some(())
    })
    .await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_watch_gone_quiet_after_a_restore_lists_again() {
    let env = env().await;
    env.apply_yaml(&vm_yaml("one")).expect("vm");
    wait_ready(&env, "one").await;
    // Restored at once with the CRDs (no failing request for the watches to see): the old
    // watches re-watch from resourceVersions the server has not reached and hear nothing.
    env.api().restart_empty();
    register_azlin_crds(env.api(), true).expect("CRDs");
    env.apply_yaml(&vm_yaml("two")).expect("vm");
    wait_ready(&env, "two").await;
    eventually(WAIT, "ready", || async {
        readiness(&env).is_ready().then_some(())
    })
    .await;
    env.shutdown().await;
}

#[tokio::test]
async fn objects_first_seen_in_a_relist_are_reconciled() {
    let env = env().await;
    env.apply_yaml(&vm_yaml("first")).expect("vm");
    wait_ready(&env, "first").await;

    // The watches fall behind (410 Expired, as when a watcher lags) and objects are
    // created before they list again: the controllers hear of them only from that list,
    // and must still reconcile every one.
    env.api().expire_watches();
    let names: Vec<String> = (0..20).map(|i| format!("relisted-{i}")).collect();
    let yaml: String = names
        .iter()
        .map(|n| {
            format!(
                "---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: {n}, namespace: default}}\nspec: {{resourceGroup: rg-relisted, location: westus2}}\n"
            )
        })
        .collect();
    env.apply_yaml(&yaml).expect("vms");
    for name in &names {
        wait_ready(&env, name).await;
    }
    env.shutdown().await;
}
