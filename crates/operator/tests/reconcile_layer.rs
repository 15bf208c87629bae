//! The shared reconcile layer's promises, through the real controllers on the embedded
//! environment: an object that needs the user's change is Stalled with Azure's code and
//! message and costs (almost) nothing while it waits; transient failures recover without any
//! spec edit; a fixed credential Secret is picked up at once.

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use azlin_arm_emulator::ErrorInjection;
use azlin_operator::api::azlinvm::AzlinVM;
use azlin_operator::api::conditions::{self, STALLED};
use azlin_operator::api::sharedstorage::SharedStorage;
use azlin_operator::embedded::{EmbeddedEnv, NamespacedObject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use support::{WAIT, env};
use tokio::time::Instant;

/// How long a Stalled object is watched for requests it should not make.
const WINDOW: Duration = Duration::from_secs(30);

fn stalled_condition(conditions: &[Condition]) -> Option<Condition> {
    conditions::find(conditions, STALLED)
        .filter(|c| c.status == conditions::TRUE)
        .cloned()
}

/// Waits until `name` of kind `K` is Stalled and returns the condition.
async fn wait_stalled<K, F>(env: &EmbeddedEnv, ns: &str, name: &str, conds: F) -> Condition
where
    K: NamespacedObject,
    F: Fn(&K) -> Vec<Condition>,
{
    let obj: K = env
        .wait_for(
            ns,
            name,
            |k: &K| stalled_condition(&conds(k)).is_some(),
            WAIT,
        )
        .await
        .expect("stalled");
    stalled_condition(&conds(&obj)).expect("Stalled=True")
}

/// Watches the environment for [`WINDOW`] after an object stalled: fails as soon as it made
/// more than `max_arm` ARM requests or more than `max_status` writes of its status.
async fn assert_quiet_while_stalled(
    env: &EmbeddedEnv,
    status_resource: &str,
    max_arm: usize,
    max_status: usize,
) {
    env.emulator().reset_counts();
    let mark = env.api().mark();
    let deadline = Instant::now() + WINDOW;
    let mut checks = 0;
    while Instant::now() < deadline {
        let arm: Vec<String> = env
            .emulator()
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let status_writes = env
            .api()
            .writes_since(mark)
            .into_iter()
            .filter(|w| {
                w.resource.as_deref() == Some(status_resource) && w.path.ends_with("/status")
            })
            .count();
        assert!(
            arm.len() <= max_arm,
            "at most {max_arm} ARM requests while Stalled: {arm:#?}"
        );
        assert!(
            status_writes <= max_status,
            "at most {max_status} status writes while Stalled: {status_writes}"
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(checks > 10, "the window was observed");
}

fn persistent(method: &str, path: &str, status: u16, code: &str, message: &str) -> ErrorInjection {
    ErrorInjection {
        times: u32::MAX,
        message: Some(message.into()),
        ..ErrorInjection::once(method, path, status, code)
    }
}

#[tokio::test]
async fn a_storage_account_refused_by_policy_stalls_quietly_with_arms_code_and_message() {
    let env = env().await;
    env.emulator().inject_error(persistent(
        "PUT",
        "Microsoft.Storage/storageAccounts/",
        403,
        "RequestDisallowedByPolicy",
        "Resource 'azlinx' was disallowed by policy. Policy identifiers: 'deny-premium-storage'.",
    ));
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {name: denied, namespace: default}\nspec: {resourceGroup: rg-deny, location: westus2}\n",
    )
    .expect("applied");
    let c = wait_stalled(&env, "default", "denied", |s: &SharedStorage| {
        s.status
            .as_ref()
            .map(|st| st.conditions.clone())
            .unwrap_or_default()
    })
    .await;
    assert_eq!(c.reason, "RequestDisallowedByPolicy");
    assert!(
        c.message.contains("RequestDisallowedByPolicy"),
        "{}",
        c.message
    );
    assert!(c.message.contains("disallowed by policy"), "{}", c.message);
    assert_quiet_while_stalled(&env, "sharedstorages.azlin.io", 10, 3).await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_vm_put_refused_persistently_stalls_quietly_with_arms_code_and_message() {
    let env = env().await;
    env.emulator().inject_error(persistent(
        "PUT",
        "Microsoft.Compute/virtualMachines/default-refused",
        400,
        "InvalidParameter",
        "The value of parameter imageReference.sku is invalid.",
    ));
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: refused, namespace: default}\nspec: {resourceGroup: rg-refused, location: westus2, size: Standard_D2s_v5}\n",
    )
    .expect("applied");
    let c = wait_stalled(&env, "default", "refused", |v: &AzlinVM| {
        v.status
            .as_ref()
            .map(|st| st.conditions.clone())
            .unwrap_or_default()
    })
    .await;
    assert_eq!(c.reason, "InvalidParameter");
    assert!(
        c.message.contains("imageReference.sku is invalid"),
        "{}",
        c.message
    );
    assert_quiet_while_stalled(&env, "azlinvms.azlin.io", 10, 3).await;
    env.shutdown().await;
}

fn is_ready(vm: &AzlinVM) -> bool {
    vm.status.as_ref().is_some_and(|s| {
        s.observed_generation == vm.metadata.generation
            && conditions::is_true(&s.conditions, conditions::READY)
    })
}

#[tokio::test]
async fn an_allocation_failure_is_retried_until_the_vm_is_ready_without_a_spec_edit() {
    let env = env().await;
    env.emulator().inject_error(ErrorInjection {
        message: Some("Allocation failed. We do not have sufficient capacity for the requested VM size in this region.".into()),
        ..ErrorInjection::failed_operation(
            "PUT",
            "Microsoft.Compute/virtualMachines/default-alloc",
            409,
            "AllocationFailed",
        )
    });
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: alloc, namespace: default}\nspec: {resourceGroup: rg-alloc, location: westus2, size: Standard_D2s_v5}\n",
    )
    .expect("applied");
    let vm: AzlinVM = env
        .wait_for("default", "alloc", is_ready, WAIT)
        .await
        .expect("Ready after the failed allocation");
    assert_eq!(vm.metadata.generation, Some(1), "no spec edit");
    let reasons = support::event_reasons(&env, "default", Some("alloc"));
    assert!(
        reasons.iter().any(|r| r == "AllocationFailed"),
        "the failure was reported: {reasons:?}"
    );
    let vm_puts = env
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("virtualMachines/default-alloc"))
        .count();
    assert!(
        vm_puts >= 2,
        "the VM was PUT again after the failure: {vm_puts}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_fixed_credential_secret_recovers_a_vm_without_a_spec_edit() {
    let env = env().await;
    support::apply_unusable_tenant_secret(&env, "creds");
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {name: c1, namespace: creds}\nspec: {resourceGroup: rg-creds, location: westus2, size: Standard_D2s_v5}\n",
    )
    .expect("applied");
    let c = wait_stalled(&env, "creds", "c1", |v: &AzlinVM| {
        v.status
            .as_ref()
            .map(|st| st.conditions.clone())
            .unwrap_or_default()
    })
    .await;
    assert_eq!(c.reason, "CredentialUnavailable");
    assert!(
        c.message.contains("azlin-azure-credentials"),
        "{}",
        c.message
    );
    assert!(
        !env.emulator()
            .requests()
            .iter()
            .any(|r| r.path.contains("rg-creds")),
        "nothing was done in Azure with another identity"
    );

    let tenant_sub = "22222222-3333-4444-5555-666666666666";
    support::fix_tenant_secret(&env, "creds", tenant_sub).await;
    let vm: AzlinVM = env
        .wait_for("creds", "c1", is_ready, WAIT)
        .await
        .expect("Ready once the Secret is fixed");
    assert_eq!(vm.metadata.generation, Some(1), "no spec edit");
    let id = vm.status.and_then(|s| s.resource_id).unwrap_or_default();
    assert!(
        id.starts_with(&format!("/subscriptions/{tenant_sub}/")),
        "{id}"
    );
    env.shutdown().await;
}
