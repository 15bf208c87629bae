//! Events say what happened this time: a second resize or mount shows its own message,
//! not the first one's (issue: events aggregated by reason kept the first message).

use azlin_operator::api::azlinvm::MountState;
use azlin_operator::api::conditions::{self, READY};
use azlin_operator::api::{AzlinVM, SharedStorage};
use azlin_operator::embedded::EmbeddedEnv;
use serde_json::{Value, json};

#[allow(dead_code)]
mod support;
use support::{WAIT, env};

const NS: &str = "default";

/// Notes of the events with `reason` regarding `name`, oldest first.
fn notes(env: &EmbeddedEnv, name: &str, reason: &str) -> Vec<String> {
    let mut events: Vec<Value> = env
        .api()
        .list("events.k8s.io/v1", "Event", Some(NS))
        .into_iter()
        .filter(|e| {
            e.pointer("/regarding/name").and_then(Value::as_str) == Some(name)
                && e["reason"] == reason
        })
        .collect();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_string());
    events
        .iter()
        .filter_map(|e| e["note"].as_str().map(str::to_string))
        .collect()
}

fn ready_at(vm: &AzlinVM) -> bool {
    vm.status.as_ref().is_some_and(|s| {
        s.observed_generation == vm.metadata.generation && conditions::is_true(&s.conditions, READY)
    })
}

async fn wait_size(env: &EmbeddedEnv, size: &str) {
    env.wait_for(
        NS,
        "ev",
        |v: &AzlinVM| {
            ready_at(v) && v.status.as_ref().and_then(|s| s.size.as_deref()) == Some(size)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("resized to {size}: {e}"));
}

async fn wait_mounted(env: &EmbeddedEnv, storage: &str) {
    env.wait_for(
        NS,
        "ev",
        |v: &AzlinVM| {
            ready_at(v)
                && v.status.as_ref().is_some_and(|s| {
                    s.mounts.len() == 1
                        && s.mounts[0].storage_ref == storage
                        && s.mounts[0].state == MountState::Mounted
                })
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{storage} mounted: {e}"));
}

#[tokio::test]
async fn a_second_resize_and_a_second_mount_show_their_own_messages() {
    let env = env().await;
    for s in ["alpha", "beta"] {
        env.apply_yaml(&format!(
            "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {{name: {s}, namespace: {NS}}}\nspec: {{resourceGroup: rg-ev, location: westus2}}\n"
        ))
        .expect("storage");
        env.wait_for(
            NS,
            s,
            |st: &SharedStorage| {
                st.status
                    .as_ref()
                    .is_some_and(|x| conditions::is_true(&x.conditions, READY))
            },
            WAIT,
        )
        .await
        .expect("storage Ready");
    }
    env.apply_yaml(&format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: ev, namespace: {NS}}}\nspec:\n  resourceGroup: rg-ev\n  location: westus2\n  size: Standard_D2s_v5\n  mounts:\n  - storageRef: alpha\n    path: /data/alpha\n"
    ))
    .expect("vm");
    wait_mounted(&env, "alpha").await;

    for size in ["Standard_D4s_v5", "Standard_D8s_v5"] {
        support::patch_spec::<AzlinVM>(&env, NS, "ev", json!({ "size": size })).await;
        wait_size(&env, size).await;
    }
    let resized = notes(&env, "ev", "Resized");
    assert_eq!(
        resized,
        [
            "resizing from Standard_D2s_v5 to Standard_D4s_v5",
            "resizing from Standard_D4s_v5 to Standard_D8s_v5"
        ],
        "each resize has its own event with its own sizes"
    );

    support::patch_spec::<AzlinVM>(
        &env,
        NS,
        "ev",
        json!({ "mounts": [{ "storageRef": "beta", "path": "/data/beta" }] }),
    )
    .await;
    wait_mounted(&env, "beta").await;
    let mounted = notes(&env, "ev", "Mounted");
    assert_eq!(mounted.len(), 2, "{mounted:?}");
    assert!(mounted[0].contains("alpha at /data/alpha"), "{mounted:?}");
    let last = mounted.last().expect("a Mounted event");
    assert!(
        last.contains("beta at /data/beta") && !last.contains("alpha"),
        "the latest Mounted event names the share mounted now: {mounted:?}"
    );
    env.shutdown().await;
}
