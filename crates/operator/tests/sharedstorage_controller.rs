//! Whole-controller tests of the SharedStorage controller on the embedded environment:
//! in-memory Kubernetes API with the CRDs and admission, the ARM emulator over HTTP, and the
//! controllers running.

use azlin_arm::network::{Subnet, VirtualNetwork};
use azlin_arm_emulator::ErrorInjection;
use azlin_kubemem::testing::eventually;
use azlin_kubemem::{RecordedRequest, RequestMark};
use azlin_operator::api::conditions::{self, READY, STALLED};
use azlin_operator::api::sharedstorage::{SharedStorage, StoragePhase};
use azlin_operator::api::{AzlinVM, Fleet};
use azlin_operator::controllers::sharedstorage::{FINALIZER, KIND};
use azlin_operator::embedded::EmbeddedEnv;
use azlin_operator::infra::naming;
use azlin_operator::reconcile::context::EMULATOR_SUBSCRIPTION;
use azlin_operator::reconcile::ownership;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;
use support::{WAIT, env, event_reasons, resync_at_rest};

const NS: &str = "default";
const RG: &str = "rg-storage";
const LOCATION: &str = "westus2";
const GIB: u64 = 1 << 30;

fn storage_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  resourceGroup: {RG}\n  location: {LOCATION}\n{extra}"
    )
}

fn vm_yaml(name: &str, mounts: &[&str]) -> String {
    let mounts: Vec<String> = mounts
        .iter()
        .map(|m| format!("{{storageRef: {m}}}"))
        .collect();
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  resourceGroup: {RG}\n  location: {LOCATION}\n  powerState: Deallocated\n  mounts: [{}]\n",
        mounts.join(", ")
    )
}

fn account_name(name: &str) -> String {
    naming::storage_account_name(EMULATOR_SUBSCRIPTION, RG, NS, name)
}

fn account_id(name: &str) -> String {
    format!(
        "/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{}",
        account_name(name)
    )
}

fn share_id(name: &str) -> String {
    format!("{}/fileServices/default/shares/{name}", account_id(name))
}

fn managed_subnet_id() -> String {
    format!(
        "/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/azlin-{LOCATION}-vnet/subnets/default"
    )
}

fn storages(env: &EmbeddedEnv) -> Api<SharedStorage> {
    Api::namespaced(env.client(), NS)
}

fn condition(s: &SharedStorage, type_: &str) -> Option<(String, String, String)> {
    let st = s.status.as_ref()?;
    conditions::find(&st.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is_ready_at(s: &SharedStorage, generation: i64) -> bool {
    s.status.as_ref().is_some_and(|st| {
        st.observed_generation == Some(generation) && conditions::is_true(&st.conditions, READY)
    })
}

async fn wait_ready(env: &EmbeddedEnv, name: &str, generation: i64) -> SharedStorage {
    env.wait_for(
        NS,
        name,
        |s: &SharedStorage| is_ready_at(s, generation),
        WAIT,
    )
    .await
    .expect("SharedStorage becomes Ready")
}

async fn wait_stalled(env: &EmbeddedEnv, name: &str, reason: &str) -> SharedStorage {
    env.wait_for(
        NS,
        name,
        |s: &SharedStorage| {
            condition(s, STALLED).is_some_and(|(status, r, _)| status == "True" && r == reason)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("SharedStorage {name} becomes Stalled {reason}: {e}"))
}

/// Applies SharedStorage `name` (spec `storage_yaml` plus `extra`) and waits until it is Ready.
async fn create_ready(env: &EmbeddedEnv, name: &str, extra: &str) -> SharedStorage {
    env.apply_yaml(&storage_yaml(name, extra)).expect("applied");
    wait_ready(env, name, 1).await
}

async fn patch_spec(env: &EmbeddedEnv, name: &str, spec: Value) {
    support::patch_spec::<SharedStorage>(env, NS, name, spec).await;
}

fn resource(env: &EmbeddedEnv, id: &str) -> Value {
    env.emulator()
        .resource(id)
        .unwrap_or_else(|| panic!("{id} exists in the emulator"))
}

/// Resyncs twice and waits for the reconciles, then checks that neither ARM nor Kubernetes
/// saw a write since the counters were reset.
async fn assert_no_writes_at_rest(env: &EmbeddedEnv) {
    support::assert_no_writes_at_rest(env, KIND, 2).await;
}

/// The writes to SharedStorage objects since `mark`.
fn storage_writes_since(env: &EmbeddedEnv, mark: RequestMark) -> Vec<RecordedRequest> {
    env.api()
        .writes_since(mark)
        .into_iter()
        .filter(|w| {
            w.resource
                .as_deref()
                .is_some_and(|r| r.starts_with("sharedstorages"))
        })
        .collect()
}

/// Like [`assert_no_writes_at_rest`] but only for what this controller writes (storage ARM
/// resources, SharedStorage objects), while other controllers may still be busy.
async fn assert_no_storage_writes_at_rest(env: &EmbeddedEnv) {
    let mark = resync_at_rest(env, KIND, 2).await;
    let counts = env.emulator().counts();
    let storage_writes: Vec<_> = counts
        .by_method_and_type
        .iter()
        .filter(|(k, _)| !k.starts_with("GET ") && k.contains("Microsoft.Storage/"))
        .collect();
    assert!(
        storage_writes.is_empty(),
        "no storage ARM writes at rest: {storage_writes:?}"
    );
    let writes = storage_writes_since(env, mark);
    assert!(
        writes.is_empty(),
        "no SharedStorage writes at rest: {writes:?}"
    );
}

async fn create_extra_subnet(env: &EmbeddedEnv) -> String {
    let arm = env.arm();
    arm.resources()
        .create_or_update("rg-net", LOCATION, &Default::default())
        .await
        .expect("rg");
    let vnet = VirtualNetwork::build(
        LOCATION,
        &["10.50.0.0/16"],
        vec![Subnet::build("ci", "10.50.1.0/24").with_service_endpoint("Microsoft.Storage")],
    );
    arm.network()
        .virtual_networks("rg-net")
        .create_or_update("ci-vnet", &vnet)
        .await
        .expect("vnet");
    arm.network()
        .subnets("rg-net", "ci-vnet")
        .id("ci")
        .to_string()
}

#[tokio::test]
async fn create_becomes_ready_with_an_nfs_account_and_share() {
    let env = env().await;
    let extra = create_extra_subnet(&env).await;
    env.apply_yaml(&storage_yaml(
        "data",
        &format!(
            "  sizeGiB: 150\n  rootSquash: RootSquash\n  template: ml-training\n  allowedSubnets: ['{extra}']\n"
        ),
    ))
    .expect("applied");
    let s = wait_ready(&env, "data", 1).await;
    let st = s.status.as_ref().expect("status");
    let account = account_name("data");
    assert_eq!(st.storage_account.as_deref(), Some(account.as_str()));
    assert_eq!(st.share.as_deref(), Some("data"));
    assert_eq!(
        st.nfs_endpoint.as_deref(),
        Some(format!("{account}.file.core.windows.net:/{account}/data").as_str())
    );
    assert_eq!(st.quota_gib, Some(150));
    assert_eq!(st.phase, Some(StoragePhase::Ready));
    assert_eq!(st.mount_count, Some(0));
    let (_, _, message) = condition(&s, READY).expect("Ready condition");
    assert!(message.contains("/mnt/ml"), "{message}");
    assert!(message.contains("datasets"), "{message}");
    assert!(
        s.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );

    let a = resource(&env, &account_id("data"));
    assert_eq!(a["kind"], json!("FileStorage"));
    assert_eq!(a["sku"]["name"], json!("Premium_LRS"));
    assert_eq!(a["location"], json!(LOCATION));
    assert_eq!(a["properties"]["supportsHttpsTrafficOnly"], json!(false));
    let acls = &a["properties"]["networkAcls"];
    assert_eq!(acls["defaultAction"], json!("Deny"));
    assert_eq!(acls["bypass"], json!("AzureServices"));
    let rules: Vec<&str> = acls["virtualNetworkRules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(rules, vec![managed_subnet_id().as_str(), extra.as_str()]);
    assert_eq!(
        a["tags"][ownership::TAG_MANAGED_BY],
        json!(ownership::MANAGED_BY)
    );
    assert_eq!(a["tags"][ownership::TAG_KIND], json!("SharedStorage"));
    assert_eq!(a["tags"][ownership::TAG_NAME], json!("data"));
    assert_eq!(
        a["tags"][ownership::TAG_UID],
        json!(s.metadata.uid.clone().expect("uid"))
    );

    let subnet = resource(&env, &managed_subnet_id());
    assert!(
        subnet["properties"]["serviceEndpoints"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["service"] == json!("Microsoft.Storage"))),
        "managed subnet has the storage service endpoint: {subnet}"
    );

    let share = resource(&env, &share_id("data"));
    assert_eq!(share["properties"]["enabledProtocols"], json!("NFS"));
    assert_eq!(share["properties"]["rootSquash"], json!("RootSquash"));
    assert_eq!(share["properties"]["shareQuota"], json!(150));

    let reasons = event_reasons(&env, NS, None);
    for reason in ["NetworkCreated", "StorageAccountCreated", "ShareCreated"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "event {reason} in {reasons:?}"
        );
    }

    assert_no_writes_at_rest(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_allowed_subnet_without_the_service_endpoint_is_stalled_with_arms_error() {
    let env = env().await;
    let missing = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/none/subnets/none";
    env.apply_yaml(&storage_yaml(
        "badnet",
        &format!("  allowedSubnets: ['{missing}']\n"),
    ))
    .expect("applied");
    let s = wait_stalled(&env, "badnet", "NetworkAclsValidationFailure").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(message.contains("Microsoft.Storage"), "{message}");
    assert!(
        event_reasons(&env, NS, None)
            .iter()
            .any(|r| r == "NetworkAclsValidationFailure"),
        "a Warning event names the ARM error"
    );
    patch_spec(&env, "badnet", json!({"allowedSubnets": []})).await;
    wait_ready(&env, "badnet", 2).await;
    env.shutdown().await;
}

async fn create_managed_vnet(env: &EmbeddedEnv, tags: &[(&str, &str)]) {
    let arm = env.arm();
    arm.resources()
        .create_or_update(RG, LOCATION, &Default::default())
        .await
        .expect("rg");
    let nsg = arm
        .network()
        .security_groups(RG)
        .create_or_update(
            "some-nsg",
            &azlin_arm::network::NetworkSecurityGroup::build(LOCATION, vec![]),
        )
        .await
        .expect("nsg");
    let vnet = VirtualNetwork::build(
        LOCATION,
        &[naming::MANAGED_VNET_PREFIX],
        vec![
            Subnet::build(naming::MANAGED_SUBNET, naming::MANAGED_SUBNET_PREFIX)
                .with_nsg(nsg.id.expect("nsg id")),
        ],
    )
    .with_tags(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    arm.network()
        .virtual_networks(RG)
        .create_or_update(&naming::managed_vnet_name(LOCATION), &vnet)
        .await
        .expect("vnet");
}

#[tokio::test]
async fn the_storage_endpoint_is_added_to_an_existing_managed_subnet() {
    let env = env().await;
    create_managed_vnet(&env, &[(ownership::TAG_MANAGED_BY, ownership::MANAGED_BY)]).await;
    create_ready(&env, "endpoint", "").await;
    let subnet = resource(&env, &managed_subnet_id());
    assert_eq!(
        subnet["properties"]["serviceEndpoints"][0]["service"],
        json!("Microsoft.Storage"),
        "{subnet}"
    );
    assert!(
        subnet["properties"]["networkSecurityGroup"]["id"]
            .as_str()
            .is_some_and(|id| id.ends_with("/some-nsg")),
        "the subnet keeps what it had: {subnet}"
    );
    assert!(
        event_reasons(&env, NS, None)
            .iter()
            .any(|r| r == "NetworkUpdated")
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_foreign_vnet_with_the_managed_name_is_never_touched() {
    let env = env().await;
    create_managed_vnet(&env, &[("owner", "network-team")]).await;
    env.apply_yaml(&storage_yaml("foreignnet", ""))
        .expect("applied");
    let s = wait_stalled(&env, "foreignnet", "ResourceNotManaged").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(message.contains("virtual network"), "{message}");
    let subnet = resource(&env, &managed_subnet_id());
    assert!(
        subnet["properties"].get("serviceEndpoints").is_none()
            || subnet["properties"]["serviceEndpoints"] == json!([]),
        "{subnet}"
    );
    assert!(env.emulator().resource(&account_id("foreignnet")).is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn a_transient_arm_error_on_a_ready_storage_keeps_its_status() {
    let env = env().await;
    create_ready(&env, "steady", "").await;
    let mark = env.api().mark();
    env.emulator().reset_counts();
    env.emulator().inject_error(ErrorInjection::once(
        "GET",
        "/fileServices/default/shares/steady",
        409,
        "AnotherOperationInProgress",
    ));
    let before = env.reconciles(KIND);
    env.resync();
    eventually(WAIT, "the failed reconcile and its retry", || async {
        let failed = env.emulator().requests().iter().any(|r| r.status == 409);
        (failed && env.reconciles(KIND) >= before + 2).then_some(())
    })
    .await;
    let writes = storage_writes_since(&env, mark);
    assert!(writes.is_empty(), "status untouched: {writes:?}");
    let s = storages(&env).get("steady").await.expect("get");
    assert!(is_ready_at(&s, 1));
    env.shutdown().await;
}

#[tokio::test]
async fn quota_grows_and_root_squash_changes_then_nothing_is_written_at_rest() {
    let env = env().await;
    create_ready(&env, "grow", "  deletionPolicy: Delete\n").await;
    assert_eq!(
        resource(&env, &share_id("grow"))["properties"]["shareQuota"],
        json!(100)
    );
    patch_spec(
        &env,
        "grow",
        json!({"sizeGiB": 400, "rootSquash": "AllSquash"}),
    )
    .await;
    let s = wait_ready(&env, "grow", 2).await;
    assert_eq!(s.status.as_ref().and_then(|st| st.quota_gib), Some(400));
    let share = resource(&env, &share_id("grow"));
    assert_eq!(share["properties"]["shareQuota"], json!(400));
    assert_eq!(share["properties"]["rootSquash"], json!("AllSquash"));
    assert_eq!(share["properties"]["enabledProtocols"], json!("NFS"));
    assert_no_writes_at_rest(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn shrink_below_usage_is_refused_and_a_shrink_above_usage_applies() {
    let env = env().await;
    create_ready(&env, "shrink", "  sizeGiB: 300\n").await;
    // Simulate 250 GiB of data: the emulator keeps the usage figure it is given and reports it
    // back on GET, like Azure's `shareUsageBytes` with `$expand=stats`.
    env.arm()
        .storage()
        .file_shares(RG, &account_name("shrink"))
        .update(
            "shrink",
            &json!({"properties": {"shareUsageBytes": 250 * GIB}}),
        )
        .await
        .expect("usage set");

    patch_spec(&env, "shrink", json!({"sizeGiB": 200})).await;
    let s = wait_stalled(&env, "shrink", "ShrinkBelowUsage").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(message.contains("spec.sizeGiB 200"), "{message}");
    assert!(message.contains("250.0 GiB"), "{message}");
    assert!(message.contains("at least 250"), "{message}");
    let st = s.status.as_ref().expect("status");
    assert_eq!(st.phase, Some(StoragePhase::Failed));
    assert_eq!(st.quota_gib, Some(300));
    assert!(!conditions::is_true(&st.conditions, READY));
    assert_eq!(
        resource(&env, &share_id("shrink"))["properties"]["shareQuota"],
        json!(300)
    );

    patch_spec(&env, "shrink", json!({"sizeGiB": 260})).await;
    let s = wait_ready(&env, "shrink", 3).await;
    assert_eq!(s.status.as_ref().and_then(|st| st.quota_gib), Some(260));
    assert_eq!(
        resource(&env, &share_id("shrink"))["properties"]["shareQuota"],
        json!(260)
    );
    assert!(!conditions::is_true(
        &s.status.as_ref().expect("status").conditions,
        STALLED
    ));
    env.shutdown().await;
}

async fn wait_mounted_by(env: &EmbeddedEnv, name: &str, want: &[&str]) -> SharedStorage {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    env.wait_for(
        NS,
        name,
        |s: &SharedStorage| {
            s.status.as_ref().is_some_and(|st| {
                st.mounted_by == want && st.mount_count == Some(want.len() as i32)
            })
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("mountedBy of {name} becomes {want:?}: {e}"))
}

#[tokio::test]
async fn mounted_by_tracks_vms_and_fleets_through_their_members() {
    let env = env().await;
    create_ready(&env, "team", "").await;
    env.apply_yaml(&vm_yaml("vm1", &["team"])).expect("vm1");
    env.apply_yaml(&vm_yaml("vm2", &[])).expect("vm2");
    wait_mounted_by(&env, "team", &["vm1"]).await;

    // A Fleet that names the share as home but has no member mounts nothing: not listed.
    env.apply_yaml(&format!(
        "apiVersion: azlin.io/v1alpha1\nkind: Fleet\nmetadata: {{name: workers, namespace: {NS}}}\nspec:\n  replicas: 0\n  sharedHome: team\n  template:\n    spec: {{resourceGroup: rg-vms, location: {LOCATION}}}\n"
    ))
    .expect("fleet");
    env.wait_for(NS, "workers", |f: &Fleet| f.status.is_some(), WAIT)
        .await
        .expect("the Fleet was reconciled");
    support::resync_and_wait(&env, KIND, "a storage reconcile after the Fleet").await;
    wait_mounted_by(&env, "team", &["vm1"]).await;

    let vms: Api<AzlinVM> = Api::namespaced(env.client(), NS);
    vms.patch(
        "vm2",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"mounts": [{"storageRef": "team", "path": "/data/team"}]}})),
    )
    .await
    .expect("vm2 mounts");
    wait_mounted_by(&env, "team", &["vm1", "vm2"]).await;

    vms.patch(
        "vm1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"mounts": []}})),
    )
    .await
    .expect("vm1 unmounts");
    wait_mounted_by(&env, "team", &["vm2"]).await;

    // A member that mounts the home lists itself and its Fleet.
    let fleets: Api<Fleet> = Api::namespaced(env.client(), NS);
    fleets
        .patch(
            "workers",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scaled");
    let s = env
        .wait_for(
            NS,
            "team",
            |s: &SharedStorage| {
                s.status.as_ref().is_some_and(|st| {
                    st.mounted_by.len() == 3
                        && st.mounted_by[0] == "vm2"
                        && st.mounted_by[1].starts_with("workers-")
                        && st.mounted_by[2] == "fleet/workers"
                        && st.mount_count == Some(2)
                })
            },
            WAIT,
        )
        .await
        .expect("the member and its Fleet are listed");
    let member = s.status.expect("status").mounted_by[1].clone();
    let vm = vms.get(&member).await.expect("member");
    assert!(
        vm.status
            .iter()
            .flat_map(|s| &s.mounts)
            .any(|m| m.storage_ref == "team"),
        "the member really has the share in its mounts"
    );

    fleets
        .delete("workers", &DeleteParams::default())
        .await
        .expect("fleet deleted");
    let s = wait_mounted_by(&env, "team", &["vm2"]).await;
    assert!(is_ready_at(&s, 1), "users do not affect readiness");
    assert_no_storage_writes_at_rest(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn delete_is_refused_while_mounted_and_proceeds_once_unmounted() {
    let env = env().await;
    create_ready(&env, "scratch", "  deletionPolicy: Delete\n").await;
    env.apply_yaml(&vm_yaml("user1", &["scratch"])).expect("vm");
    wait_mounted_by(&env, "scratch", &["user1"]).await;

    storages(&env)
        .delete("scratch", &DeleteParams::default())
        .await
        .expect("delete requested");
    let s = wait_stalled(&env, "scratch", "InUse").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(
        message.contains("held by AzlinVM default/user1 (spec mounts"),
        "{message}"
    );
    assert_eq!(
        s.status.as_ref().and_then(|st| st.phase),
        Some(StoragePhase::Deleting)
    );
    assert!(s.metadata.deletion_timestamp.is_some());
    assert!(
        s.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );
    assert!(env.emulator().resource(&share_id("scratch")).is_some());
    assert!(env.emulator().resource(&account_id("scratch")).is_some());
    assert_no_storage_writes_at_rest(&env).await;
    let blocked = event_reasons(&env, NS, None)
        .iter()
        .filter(|r| *r == "InUse")
        .count();
    assert_eq!(blocked, 1, "one InUse event, not one per retry");

    let vms: Api<AzlinVM> = Api::namespaced(env.client(), NS);
    vms.delete("user1", &DeleteParams::default())
        .await
        .expect("vm deleted");
    env.wait_gone::<AzlinVM>(NS, "user1", WAIT)
        .await
        .expect("vm gone");
    env.wait_gone::<SharedStorage>(NS, "scratch", WAIT)
        .await
        .expect("storage deleted once unmounted");
    assert!(env.emulator().resource(&share_id("scratch")).is_none());
    assert!(env.emulator().resource(&account_id("scratch")).is_none());
    let rg = format!("/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/{RG}");
    assert!(
        env.emulator().resource(&rg).is_some(),
        "the resource group is never deleted"
    );
    env.shutdown().await;
}

/// Whether `s` still holds the SharedStorage finalizer.
fn has_finalizer(s: &SharedStorage) -> bool {
    s.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

#[tokio::test]
async fn a_stopped_vm_whose_status_still_shows_the_mount_holds_a_retained_storage() {
    let env = env().await;
    // deletionPolicy Retain (the default): deleting the object must not pull the share
    // from under a VM either.
    create_ready(&env, "held", "").await;
    env.apply_yaml(&vm_yaml("holder", &["held"])).expect("vm");
    let vms: Api<AzlinVM> = Api::namespaced(env.client(), NS);
    vms.patch(
        "holder",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"powerState": "Running"}})),
    )
    .await
    .expect("running");
    let mounted = |v: &AzlinVM| {
        v.status.as_ref().is_some_and(|s| {
            s.mounts.iter().any(|m| {
                m.storage_ref == "held"
                    && m.state == azlin_operator::api::azlinvm::MountState::Mounted
            })
        })
    };
    env.wait_for(NS, "holder", mounted, WAIT)
        .await
        .expect("the VM mounted the share");
    // Stop it and drop the mount from its spec: the stopped VM cannot be unmounted, so its
    // status keeps the mount.
    vms.patch(
        "holder",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"powerState": "Stopped", "mounts": []}})),
    )
    .await
    .expect("stopped, mount removed");
    env.wait_for(
        NS,
        "holder",
        |v: &AzlinVM| {
            v.spec.mounts.is_empty()
                && v.status.as_ref().is_some_and(|s| {
                    s.observed_generation == v.metadata.generation
                        && s.power_state.as_deref() == Some("Stopped")
                        && s.mounts.iter().any(|m| m.storage_ref == "held")
                })
        },
        WAIT,
    )
    .await
    .expect("stopped with the mount only in its status");

    storages(&env)
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete requested");
    let s = wait_stalled(&env, "held", "InUse").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(
        message.contains("AzlinVM default/holder (status mounts)"),
        "{message}"
    );
    assert!(has_finalizer(&s));
    let account = resource(&env, &account_id("held"));
    assert!(
        account["tags"].get(ownership::TAG_RELEASED).is_none(),
        "not released while held: {account}"
    );

    vms.delete("holder", &DeleteParams::default())
        .await
        .expect("vm deleted");
    env.wait_gone::<SharedStorage>(NS, "held", WAIT)
        .await
        .expect("released once the VM is gone");
    let account = resource(&env, &account_id("held"));
    assert_eq!(account["tags"][ownership::TAG_RELEASED], "true");
    env.shutdown().await;
}

#[tokio::test]
async fn a_fleet_naming_the_storage_as_shared_home_holds_it() {
    let env = env().await;
    create_ready(
        &env,
        "fhome",
        "  deletionPolicy: Delete
",
    )
    .await;
    env.apply_yaml(&format!(
        "apiVersion: azlin.io/v1alpha1\nkind: Fleet\nmetadata: {{name: crew, namespace: {NS}}}\nspec:\n  replicas: 0\n  sharedHome: fhome\n  template:\n    spec: {{resourceGroup: rg-vms, location: {LOCATION}}}\n"
    ))
    .expect("fleet");
    env.wait_for(NS, "crew", |f: &Fleet| f.status.is_some(), WAIT)
        .await
        .expect("the Fleet was reconciled");

    storages(&env)
        .delete("fhome", &DeleteParams::default())
        .await
        .expect("delete requested");
    let s = wait_stalled(&env, "fhome", "InUse").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(
        message.contains("Fleet default/crew (sharedHome)"),
        "{message}"
    );
    assert!(has_finalizer(&s));
    assert!(env.emulator().resource(&share_id("fhome")).is_some());

    let fleets: Api<Fleet> = Api::namespaced(env.client(), NS);
    fleets
        .delete("crew", &DeleteParams::default())
        .await
        .expect("fleet deleted");
    env.wait_gone::<SharedStorage>(NS, "fhome", WAIT)
        .await
        .expect("deleted once the Fleet is gone");
    assert!(env.emulator().resource(&share_id("fhome")).is_none());
    assert!(env.emulator().resource(&account_id("fhome")).is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn retain_keeps_the_resources_tagged_released_and_a_new_object_adopts_them() {
    let env = env().await;
    let first = create_ready(&env, "keep", "").await;
    env.apply_yaml(&vm_yaml("still-mounting", &["keep"]))
        .expect("vm");
    wait_mounted_by(&env, "keep", &["still-mounting"]).await;
    storages(&env)
        .delete("keep", &DeleteParams::default())
        .await
        .expect("delete requested");
    // Retain waits for the VM too: the share must not vanish from under it.
    wait_stalled(&env, "keep", "InUse").await;
    let vms: Api<AzlinVM> = Api::namespaced(env.client(), NS);
    vms.delete("still-mounting", &DeleteParams::default())
        .await
        .expect("vm deleted");
    env.wait_gone::<SharedStorage>(NS, "keep", WAIT)
        .await
        .expect("Retain removes the finalizer once nothing holds the share");
    let a = resource(&env, &account_id("keep"));
    assert_eq!(a["tags"][ownership::TAG_RELEASED], json!("true"));
    assert_eq!(
        resource(&env, &share_id("keep"))["properties"]["shareQuota"],
        json!(100)
    );

    env.apply_yaml(&storage_yaml("keep", ""))
        .expect("re-created");
    let second = wait_ready(&env, "keep", 1).await;
    assert_ne!(second.metadata.uid, first.metadata.uid);
    let a = resource(&env, &account_id("keep"));
    assert!(
        a["tags"].get(ownership::TAG_RELEASED).is_none(),
        "adoption drops the released mark: {}",
        a["tags"]
    );
    assert_eq!(
        a["tags"][ownership::TAG_UID],
        json!(second.metadata.uid.clone().expect("uid"))
    );
    env.shutdown().await;
}

#[tokio::test]
async fn restarts_and_crashes_create_no_duplicate_account() {
    let mut env = env().await;
    env.apply_yaml(&storage_yaml("once", "")).expect("applied");
    eventually(WAIT, "the account creation to start", || async {
        env.emulator().resource(&account_id("once")).map(|_| ())
    })
    .await;
    env.kill_controllers();
    env.start_controllers();
    wait_ready(&env, "once", 1).await;
    env.restart_controllers().await;
    eventually(WAIT, "the restarted controller to reconcile", || async {
        (env.reconciles(KIND) > 0).then_some(())
    })
    .await;
    let accounts = env
        .arm()
        .storage()
        .accounts(RG)
        .list()
        .await
        .expect("accounts listed");
    assert_eq!(
        accounts.len(),
        1,
        "one account: {:?}",
        accounts.iter().map(|a| a.name.clone()).collect::<Vec<_>>()
    );
    assert_no_writes_at_rest(&env).await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_foreign_account_with_our_name_is_never_touched() {
    let env = env().await;
    let arm = env.arm();
    arm.resources()
        .create_or_update(RG, LOCATION, &Default::default())
        .await
        .expect("rg");
    let foreign =
        azlin_arm::storage::StorageAccount::nfs_file_storage(LOCATION, "Premium_LRS", &[])
            .with_tags([("owner".to_string(), "someone-else".to_string())]);
    arm.storage()
        .accounts(RG)
        .create_or_update(&account_name("theirs"), &foreign)
        .await
        .expect("foreign account");
    env.emulator().reset_counts();

    env.apply_yaml(&storage_yaml("theirs", "  deletionPolicy: Delete\n"))
        .expect("applied");
    let s = wait_stalled(&env, "theirs", "ResourceNotManaged").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(message.contains(&account_name("theirs")), "{message}");
    assert_eq!(
        env.emulator()
            .counts()
            .get("PUT", "Microsoft.Storage/storageAccounts"),
        0
    );
    storages(&env)
        .delete("theirs", &DeleteParams::default())
        .await
        .expect("delete requested");
    env.wait_gone::<SharedStorage>(NS, "theirs", WAIT)
        .await
        .expect("deletion does not hang on a foreign account");
    let a = resource(&env, &account_id("theirs"));
    assert_eq!(a["tags"]["owner"], json!("someone-else"));
    env.shutdown().await;
}

#[tokio::test]
async fn a_globally_taken_account_name_is_stalled_with_the_arm_code() {
    let env = env().await;
    let arm = env.arm();
    arm.resources()
        .create_or_update("rg-elsewhere", LOCATION, &Default::default())
        .await
        .expect("rg");
    let other = azlin_arm::storage::StorageAccount::nfs_file_storage(LOCATION, "Premium_LRS", &[]);
    arm.storage()
        .accounts("rg-elsewhere")
        .create_or_update(&account_name("taken"), &other)
        .await
        .expect("same name in another resource group");

    env.apply_yaml(&storage_yaml("taken", "")).expect("applied");
    let s = wait_stalled(&env, "taken", "ResourceNotManaged").await;
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(
        message.contains("StorageAccountAlreadyTaken")
            || message.contains("StorageAccountInAnotherResourceGroup"),
        "{message}"
    );
    assert_eq!(
        s.status.as_ref().and_then(|st| st.phase),
        Some(StoragePhase::Failed)
    );
    env.shutdown().await;
}

#[tokio::test]
async fn deletion_does_not_hang_when_the_resource_group_is_gone() {
    let env = env().await;
    create_ready(&env, "orphan", "  deletionPolicy: Delete\n").await;
    env.emulator()
        .delete_out_of_band(&format!(
            "/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/{RG}"
        ))
        .expect("resource group removed out of band");
    storages(&env)
        .delete("orphan", &DeleteParams::default())
        .await
        .expect("delete requested");
    env.wait_gone::<SharedStorage>(NS, "orphan", WAIT)
        .await
        .expect("deletion completes without the resource group");
    env.shutdown().await;
}

#[tokio::test]
async fn a_tenant_credential_secret_change_reconciles_the_namespaces_storages() {
    let env = env().await;
    support::apply_unusable_tenant_secret(&env, "tenant");
    env.apply_yaml(
        &storage_yaml("tenantdata", "").replace("namespace: default", "namespace: tenant"),
    )
    .expect("applied");
    let s = env
        .wait_for(
            "tenant",
            "tenantdata",
            |s: &SharedStorage| {
                condition(s, STALLED)
                    .is_some_and(|(st, r, _)| st == "True" && r == "CredentialUnavailable")
            },
            WAIT,
        )
        .await
        .expect("stalled on the credential");
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(message.contains("azlin-azure-credentials"), "{message}");
    assert!(
        !message.contains(support::UNUSABLE_CLIENT_ID),
        "no secret values in messages"
    );

    // Fixing the Secret reconciles the storage at once (a terminal error waits for a change).
    let tenant_sub = "11111111-2222-3333-4444-555555555555";
    support::fix_tenant_secret(&env, "tenant", tenant_sub).await;
    let s = env
        .wait_for(
            "tenant",
            "tenantdata",
            |s: &SharedStorage| is_ready_at(s, 1),
            WAIT,
        )
        .await
        .expect("Ready with the tenant credential");
    let account = naming::storage_account_name(tenant_sub, RG, "tenant", "tenantdata");
    assert_eq!(
        s.status
            .as_ref()
            .and_then(|st| st.storage_account.as_deref()),
        Some(account.as_str())
    );
    assert!(
        env.emulator()
            .resource(&format!(
                "/subscriptions/{tenant_sub}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{account}"
            ))
            .is_some(),
        "the account is in the tenant's subscription"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_storage_created_with_a_tenant_credential_is_not_deleted_with_another_identity() {
    let env = env().await;
    let tenant_sub = "33333333-2222-3333-4444-555555555555";
    support::apply_unusable_tenant_secret(&env, "tenant3");
    support::fix_tenant_secret(&env, "tenant3", tenant_sub).await;
    env.apply_yaml(
        &storage_yaml("keepsafe", "  deletionPolicy: Delete\n")
            .replace("namespace: default", "namespace: tenant3"),
    )
    .expect("applied");
    let s = env
        .wait_for(
            "tenant3",
            "keepsafe",
            |s: &SharedStorage| is_ready_at(s, 1),
            WAIT,
        )
        .await
        .expect("Ready with the tenant credential");
    let azure = s.status.and_then(|st| st.azure).expect("status.azure");
    assert_eq!(azure.subscription_id, tenant_sub);
    let account = naming::storage_account_name(tenant_sub, RG, "tenant3", "keepsafe");
    let account_id = format!(
        "/subscriptions/{tenant_sub}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{account}"
    );

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client(), "tenant3");
    secrets
        .delete("azlin-azure-credentials", &DeleteParams::default())
        .await
        .expect("secret deleted");
    let api: Api<SharedStorage> = Api::namespaced(env.client(), "tenant3");
    api.delete("keepsafe", &DeleteParams::default())
        .await
        .expect("delete requested");
    let s = env
        .wait_for(
            "tenant3",
            "keepsafe",
            |s: &SharedStorage| {
                condition(s, STALLED)
                    .is_some_and(|(st, r, _)| st == "True" && r == "CredentialUnavailable")
            },
            WAIT,
        )
        .await
        .expect("stalled without its credential");
    let (_, _, message) = condition(&s, STALLED).expect("Stalled");
    assert!(
        message.contains("Secret tenant3/azlin-azure-credentials"),
        "{message}"
    );
    assert!(has_finalizer(&s));
    assert!(env.emulator().resource(&account_id).is_some());

    support::apply_unusable_tenant_secret(&env, "tenant3");
    support::fix_tenant_secret(&env, "tenant3", tenant_sub).await;
    env.wait_gone::<SharedStorage>("tenant3", "keepsafe", WAIT)
        .await
        .expect("deleted once the credential is back");
    assert!(env.emulator().resource(&account_id).is_none());
    env.shutdown().await;
}
