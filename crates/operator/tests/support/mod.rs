//! Support shared by the whole-controller tests on the embedded environment
//! (`tests/azlinvm_controller.rs`, `tests/sharedstorage_controller.rs`, `tests/backup_*.rs`).

pub mod backup;

use std::time::Duration;

use azlin_kubemem::RequestMark;
use azlin_kubemem::testing::eventually;
use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions, NamespacedObject};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// How long a test waits for any state.
pub const WAIT: Duration = Duration::from_secs(30);

/// An embedded environment with the test options.
pub async fn env() -> EmbeddedEnv {
    EmbeddedEnv::start(EmbeddedOptions::for_tests())
        .await
        .expect("embedded environment starts")
}

/// Merge-patches the `spec` of `namespace/name`.
pub async fn patch_spec<K>(env: &EmbeddedEnv, namespace: &str, name: &str, spec: Value)
where
    K: NamespacedObject,
{
    let api: Api<K> = Api::namespaced(env.client(), namespace);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": spec })),
    )
    .await
    .expect("spec patched");
}

/// Reasons of the events in `namespace`, only those regarding `name` when given.
pub fn event_reasons(env: &EmbeddedEnv, namespace: &str, name: Option<&str>) -> Vec<String> {
    env.api()
        .list("events.k8s.io/v1", "Event", Some(namespace))
        .into_iter()
        .filter(|e| {
            name.is_none_or(|n| e.pointer("/regarding/name").and_then(Value::as_str) == Some(n))
        })
        .filter_map(|e| e.get("reason").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Resyncs and waits until the controller of `kind` finished one more reconcile.
pub async fn resync_and_wait(env: &EmbeddedEnv, kind: &str, what: &str) {
    let before = env.reconciles(kind);
    env.resync();
    eventually(WAIT, what, || async {
        (env.reconciles(kind) > before).then_some(())
    })
    .await;
}

/// Resets the ARM request counts, marks the Kubernetes request log, then resyncs `times`
/// times, each waiting for a reconcile of `kind`; returns the mark.
pub async fn resync_at_rest(env: &EmbeddedEnv, kind: &str, times: usize) -> RequestMark {
    env.emulator().reset_counts();
    let mark = env.api().mark();
    for _ in 0..times {
        resync_and_wait(env, kind, "a resync reconcile").await;
    }
    mark
}

/// Resyncs `times` times from rest (see [`resync_at_rest`]) and checks that Azure was read
/// but neither ARM nor Kubernetes saw a write.
pub async fn assert_no_writes_at_rest(env: &EmbeddedEnv, kind: &str, times: usize) {
    let mark = resync_at_rest(env, kind, times).await;
    let counts = env.emulator().counts();
    for method in ["PUT", "PATCH", "POST", "DELETE"] {
        assert_eq!(
            counts.method(method),
            0,
            "no ARM {method} at rest: {:?}",
            counts.by_method_and_type
        );
    }
    assert!(
        counts.method("GET") > 0,
        "the resync read Azure: {counts:?}"
    );
    let writes = env.api().writes_since(mark);
    assert!(
        writes.is_empty(),
        "no Kubernetes writes at rest: {writes:?}"
    );
}

/// A client id that is not a usable credential (messages must never show it).
pub const UNUSABLE_CLIENT_ID: &str = "only-a-client-id";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Creates the tenant credential Secret of `namespace` with only a client id: unusable.
pub fn apply_unusable_tenant_secret(env: &EmbeddedEnv, namespace: &str) {
    env.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: azlin-azure-credentials, namespace: {namespace}}}\ndata:\n  AZURE_CLIENT_ID: {}\n",
        b64(UNUSABLE_CLIENT_ID)
    ))
    .expect("unusable tenant secret");
}

/// Fixes the tenant credential Secret of `namespace`: a static token for `subscription`
/// (the emulator accepts any token).
pub async fn fix_tenant_secret(env: &EmbeddedEnv, namespace: &str, subscription: &str) {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client(), namespace);
    secrets
        .patch(
            "azlin-azure-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {
                "AZURE_CLIENT_ID": null,
                "AZURE_ACCESS_TOKEN": b64("tenant-token"),
                "AZURE_SUBSCRIPTION_ID": b64(subscription),
            }})),
        )
        .await
        .expect("tenant secret fixed");
}

/// An embedded environment whose VMs are reached over SSH at `sshd` (VM address 127.0.0.1,
/// the guest script running in `sandbox`), with the Secret `vm-key` holding the key `sshd`
/// accepts.
pub async fn ssh_env(
    sshd: &azlin_operator::ssh::testing::TestSshd,
    sandbox: &azlin_operator::ssh::sandbox::MountSandbox,
) -> EmbeddedEnv {
    use azlin_operator::embedded::GuestMode;
    use azlin_operator::guest::GuestAccess;
    use azlin_operator::ssh::{SshConfig, SshRunner};
    use std::sync::Arc;

    let mut options = EmbeddedOptions::for_tests();
    options.emulator.vm_address = Some("127.0.0.1".parse().expect("ip"));
    options.guest = GuestMode::Custom(GuestAccess::Ssh {
        runner: SshRunner::new(SshConfig::default()),
        port: sshd.port(),
        env: Arc::new(sandbox.script_env()),
        login_user: Some(sshd.user().to_string()),
    });
    let env = EmbeddedEnv::start(options).await.expect("env");

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client(), "default");
    let key = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("vm-key".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/ssh-auth".into()),
        data: Some(sshd.client_key_pair().secret_data()),
        ..Default::default()
    };
    secrets
        .create(&Default::default(), &key)
        .await
        .expect("key secret");
    env
}
