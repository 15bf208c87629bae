//! Issue #13 item 9: long Azure operations never hold a controller worker. Deletes start
//! their long-running operation and requeue, so slow deletes of as many VMs as there are
//! workers do not delay another VM's power change.

use std::time::Duration;

use azlin_arm_emulator::SlowOperations;
use azlin_kubemem::testing::eventually;
use azlin_operator::api::AzlinVM;
use azlin_operator::api::conditions::{self, READY};
use azlin_operator::reconcile::context::EMULATOR_SUBSCRIPTION;
use kube::Api;

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;
use support::{WAIT, env, patch_spec};

fn vm_yaml(name: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  resourceGroup: rg-hol\n  location: westus2\n  size: Standard_D2s_v5\n"
    )
}

fn vm_id(name: &str) -> String {
    format!(
        "/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/rg-hol/providers/Microsoft.Compute/virtualMachines/default-{name}"
    )
}

fn is_ready(vm: &AzlinVM) -> bool {
    vm.status.as_ref().is_some_and(|s| {
        s.observed_generation == vm.metadata.generation && conditions::is_true(&s.conditions, READY)
    })
}

#[tokio::test]
async fn slow_deletes_do_not_delay_another_vms_power_change() {
    let env = env().await;
    let concurrency = env.context().expect("controllers run").settings.concurrency;
    assert_eq!(concurrency, 4, "as many deletes as workers");
    let doomed = ["d1", "d2", "d3", "d4"];
    for name in doomed.iter().chain(&["p1"]) {
        env.apply_yaml(&vm_yaml(name)).expect("apply");
    }
    for name in doomed.iter().chain(&["p1"]) {
        env.wait_for("default", name, is_ready, WAIT)
            .await
            .expect("Ready");
    }

    // VM deletes now take a minute in Azure.
    env.emulator().slow_operations(SlowOperations {
        method: "DELETE".into(),
        path_contains: "/virtualMachines/".into(),
        delay: Duration::from_secs(60),
    });
    let api: Api<AzlinVM> = Api::namespaced(env.client(), "default");
    for name in doomed {
        api.delete(name, &Default::default()).await.expect("delete");
    }
    eventually(WAIT, "the four VM deletes started in Azure", || async {
        let started = env
            .emulator()
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.contains("/virtualMachines/default-d"))
            .count();
        (started >= doomed.len()).then_some(())
    })
    .await;

    let asked = chrono::Utc::now();
    patch_spec::<AzlinVM>(
        &env,
        "default",
        "p1",
        serde_json::json!({"powerState": "Deallocated"}),
    )
    .await;
    let deadline = Duration::from_secs(5);
    let sent = eventually(deadline, "the power change reaches ARM", || async {
        env.emulator()
            .requests()
            .into_iter()
            .find(|r| {
                r.method == "POST" && r.path.ends_with("/virtualMachines/default-p1/deallocate")
            })
            .map(|r| r.time)
    })
    .await;
    let waited = (sent - asked).to_std().unwrap_or_default();
    assert!(
        waited < deadline,
        "the power change waited {waited:?} behind the deletes"
    );
    for name in doomed {
        assert!(
            env.emulator().resource(&vm_id(name)).is_some(),
            "the delete of {name} was still in flight during the power change"
        );
        let vm = api.get(name).await.expect("still there, finalizer kept");
        assert!(vm.metadata.deletion_timestamp.is_some());
    }
    env.shutdown().await;
}
