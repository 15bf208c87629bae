//! Storage templates do what they say: the template's directories are created on the share
//! (once, when missing) and its local directories on each mounting VM, and each VM reports
//! only the directories that exist.

use azlin_operator::api::azlinvm::MountState;
use azlin_operator::api::conditions::{self, READY};
use azlin_operator::api::{AzlinVM, SharedStorage};
use azlin_operator::embedded::EmbeddedEnv;
use azlin_operator::guest::GuestAccess;
use azlin_operator::ssh::sandbox::MountSandbox;
use std::sync::Arc;

#[allow(dead_code)]
mod support;
use support::{WAIT, env};

const NS: &str = "default";

async fn storage_ready(env: &EmbeddedEnv, name: &str, template: &str) -> SharedStorage {
    env.apply_yaml(&format!(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{resourceGroup: rg-tpl, location: westus2, template: {template}}}\n"
    ))
    .expect("storage");
    env.wait_for(
        NS,
        name,
        |s: &SharedStorage| {
            s.status
                .as_ref()
                .is_some_and(|st| conditions::is_true(&st.conditions, READY))
        },
        WAIT,
    )
    .await
    .expect("storage Ready")
}

/// Applies VM `name` mounting `storage` at its default path and waits until it is mounted.
async fn mounted_vm(env: &EmbeddedEnv, name: &str, storage: &str, read_only: bool) -> AzlinVM {
    env.apply_yaml(&format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  resourceGroup: rg-tpl\n  location: westus2\n  mounts:\n  - storageRef: {storage}\n    readOnly: {read_only}\n"
    ))
    .expect("vm");
    env.wait_for(
        NS,
        name,
        |v: &AzlinVM| {
            v.status
                .as_ref()
                .is_some_and(|s| s.mounts.len() == 1 && s.mounts[0].state == MountState::Mounted)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{name} mounted: {e}"))
}

fn sandbox_of(env: &EmbeddedEnv, vm: &AzlinVM) -> Arc<MountSandbox> {
    let GuestAccess::Sandbox(guests) = env.guest() else {
        panic!("the test env uses sandboxed guests")
    };
    let id = vm
        .status
        .as_ref()
        .and_then(|s| s.vm_id.clone())
        .expect("vm id");
    guests.get(&id).expect("the VM's sandbox")
}

fn message(vm: &AzlinVM) -> String {
    vm.status.as_ref().expect("status").mounts[0]
        .message
        .clone()
}

#[tokio::test]
async fn template_directories_are_created_on_the_share_and_each_vm() {
    let env = env().await;
    let storage = storage_ready(&env, "mlshare", "ml-training").await;
    let ready = conditions::find(&storage.status.expect("status").conditions, READY)
        .expect("Ready")
        .message
        .clone();
    assert!(!ready.contains("shared directories:"), "{ready}");

    let first = mounted_vm(&env, "tpl-a", "mlshare", false).await;
    let want = "directories: on the share: datasets, models, checkpoints; on this VM: /mnt/scratch";
    assert_eq!(message(&first), want);
    let sandbox = sandbox_of(&env, &first);
    for dir in [
        "/mnt/ml/datasets",
        "/mnt/ml/models",
        "/mnt/ml/checkpoints",
        "/mnt/scratch",
    ] {
        assert!(sandbox.path(dir).is_dir(), "{dir} exists on the first VM");
    }
    // Made for the admin user, not left to root.
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(sandbox.path("/mnt/ml/datasets"))
        .expect("datasets")
        .uid();
    assert_eq!(owner, 1000, "datasets belongs to the admin user");

    // A second VM finds the shared directories and makes its own local one.
    let second = mounted_vm(&env, "tpl-b", "mlshare", false).await;
    assert_eq!(message(&second), want);
    let other = sandbox_of(&env, &second);
    assert!(other.path("/mnt/scratch").is_dir());
    assert!(other.path("/mnt/ml/models").is_dir());
    env.shutdown().await;
}

#[tokio::test]
async fn a_read_only_mount_reports_only_the_directories_that_exist() {
    let env = env().await;
    storage_ready(&env, "cishare", "ci-runner").await;
    let vm = mounted_vm(&env, "tpl-ro", "cishare", true).await;
    let got = message(&vm);
    assert_eq!(
        got,
        "directories: on this VM: /var/lib/ci-work; not created: cache on the share, artifacts on the share"
    );
    let sandbox = sandbox_of(&env, &vm);
    assert!(!sandbox.path("/mnt/ci/cache").exists());
    env.shutdown().await;
}
