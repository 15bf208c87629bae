//! Whole-controller tests of the AzlinVM controller on the embedded environment: the
//! in-memory Kubernetes API and the ARM emulator over real HTTP.

use std::time::Duration;

use azlin_arm_emulator::ErrorInjection;
use azlin_kubemem::testing::eventually;
use azlin_operator::api::AzlinVM;
use azlin_operator::api::conditions::{self, READY, STALLED};
use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions};
use azlin_operator::reconcile::context::EMULATOR_SUBSCRIPTION;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;
use support::{WAIT, assert_no_writes_at_rest, env, event_reasons, resync_and_wait};

fn vm_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  resourceGroup: rg-{name}\n  location: westus2\n  size: Standard_D2s_v5\n{extra}"
    )
}

fn rg_id(name: &str) -> String {
    format!("/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/rg-{name}")
}

fn arm_id(name: &str, kind: &str, resource: &str) -> String {
    format!("{}/providers/{kind}/{resource}", rg_id(name))
}

fn vm_arm_id(name: &str) -> String {
    arm_id(
        name,
        "Microsoft.Compute/virtualMachines",
        &format!("default-{name}"),
    )
}

fn is_ready(vm: &AzlinVM) -> bool {
    vm.status.as_ref().is_some_and(|s| {
        s.observed_generation == vm.metadata.generation && conditions::is_true(&s.conditions, READY)
    })
}

fn power(vm: &AzlinVM) -> Option<&str> {
    vm.status.as_ref().and_then(|s| s.power_state.as_deref())
}

async fn wait_ready(env: &EmbeddedEnv, name: &str) -> AzlinVM {
    env.wait_for("default", name, is_ready, WAIT)
        .await
        .expect("AzlinVM Ready")
}

/// Waits until `default/name` is Ready in power state `word` (`what` names the wait).
async fn wait_power(env: &EmbeddedEnv, name: &str, word: &str, what: &str) -> AzlinVM {
    env.wait_for(
        "default",
        name,
        |v: &AzlinVM| is_ready(v) && power(v) == Some(word),
        WAIT,
    )
    .await
    .expect(what)
}

/// Applies AzlinVM `name` (spec `vm_yaml` plus `extra`) and waits until it is Ready.
async fn create_ready(env: &EmbeddedEnv, name: &str, extra: &str) -> AzlinVM {
    env.apply_yaml(&vm_yaml(name, extra)).expect("apply");
    wait_ready(env, name).await
}

async fn patch_spec(env: &EmbeddedEnv, name: &str, spec: Value) {
    support::patch_spec::<AzlinVM>(env, "default", name, spec).await;
}

async fn wait_event(env: &EmbeddedEnv, name: &str, reason: &str) {
    eventually(WAIT, &format!("event {reason}"), || async {
        event_reasons(env, "default", Some(name))
            .iter()
            .any(|r| r == reason)
            .then_some(())
    })
    .await;
}

/// Waits until `namespace/name` is Stalled (`what` names the wait) and returns the condition.
async fn wait_stalled(env: &EmbeddedEnv, namespace: &str, name: &str, what: &str) -> Condition {
    let vm = env
        .wait_for(
            namespace,
            name,
            |v: &AzlinVM| {
                v.status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, STALLED))
            },
            WAIT,
        )
        .await
        .expect(what);
    conditions::find(&vm.status.expect("status").conditions, STALLED)
        .expect("stalled condition")
        .clone()
}

fn count_posts(env: &EmbeddedEnv, action: &str) -> usize {
    env.emulator()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/{action}")))
        .count()
}

#[tokio::test]
async fn create_becomes_ready_with_tagged_resources_and_generated_key() {
    let env = env().await;
    env.apply_yaml(&vm_yaml(
        "dev",
        "  publicIP: true\n  restartRequestedAt: \"2026-01-01T00:00:00Z\"\n  tags:\n    team: a\n",
    ))
    .expect("apply");
    let vm = wait_ready(&env, "dev").await;
    let st = vm.status.clone().expect("status");
    assert_eq!(
        st.phase,
        Some(azlin_operator::api::azlinvm::VmPhase::Running)
    );
    assert_eq!(st.power_state.as_deref(), Some("Running"));
    assert_eq!(st.size.as_deref(), Some("Standard_D2s_v5"));
    assert!(st.vm_id.is_some());
    assert_eq!(
        st.resource_id.as_deref().map(str::to_ascii_lowercase),
        Some(vm_arm_id("dev").to_ascii_lowercase())
    );
    assert!(st.private_ip.is_some());
    assert!(st.public_ip.is_some());
    assert_eq!(st.ssh_key_secret.as_deref(), Some("dev-ssh"));

    let arm_vm = env
        .emulator()
        .resource(&vm_arm_id("dev"))
        .expect("VM exists");
    let tags = &arm_vm["tags"];
    assert_eq!(tags["managed-by"], "azlin-operator");
    assert_eq!(tags["azlin-operator-namespace"], "default");
    assert_eq!(tags["azlin-operator-name"], "dev");
    assert_eq!(tags["azlin-operator-kind"], "AzlinVM");
    assert_eq!(
        tags["azlin-operator-uid"],
        vm.metadata.uid.clone().unwrap_or_default()
    );
    assert_eq!(tags["team"], "a");
    for (kind, res) in [
        ("Microsoft.Network/networkInterfaces", "default-dev-nic"),
        ("Microsoft.Network/publicIPAddresses", "default-dev-pip"),
        ("Microsoft.Network/virtualNetworks", "azlin-westus2-vnet"),
        (
            "Microsoft.Network/networkSecurityGroups",
            "azlin-westus2-nsg",
        ),
        ("Microsoft.Compute/disks", "default-dev-osdisk"),
    ] {
        assert!(
            env.emulator().resource(&arm_id("dev", kind, res)).is_some(),
            "{kind}/{res} missing"
        );
    }
    let nic = env
        .emulator()
        .resource(&arm_id(
            "dev",
            "Microsoft.Network/networkInterfaces",
            "default-dev-nic",
        ))
        .expect("nic");
    assert_eq!(nic["tags"]["azlin-operator-name"], "dev");

    let secrets: Api<Secret> = Api::namespaced(env.client(), "default");
    let secret = secrets.get("dev-ssh").await.expect("key secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/ssh-auth"));
    let data = secret.data.clone().expect("data");
    assert!(data.contains_key("ssh-privatekey") && data.contains_key("ssh-publickey"));
    let owner = &secret.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(owner.kind, "AzlinVM");
    assert_eq!(Some(owner.uid.clone()), vm.metadata.uid);
    wait_event(&env, "dev", "Created").await;
    // A restart requested before the VM existed is satisfied by its first boot.
    assert_eq!(count_posts(&env, "restart"), 0);
    assert!(st.last_restart_requested_at.is_some());
    let readiness = env.readiness().expect("controllers running").clone();
    eventually(WAIT, "controller readiness", || async {
        readiness.is_ready().then_some(())
    })
    .await;
    env.shutdown().await;
}

#[tokio::test]
async fn power_transitions_and_restart_once() {
    let env = env().await;
    create_ready(&env, "pw", "").await;
    for state in ["Stopped", "Deallocated", "Running"] {
        patch_spec(&env, "pw", json!({ "powerState": state })).await;
        // status.powerState is spelled like spec.powerState (the POWER column).
        let vm = wait_power(&env, "pw", state, "power state reached with Ready").await;
        assert_eq!(
            env.emulator().resource(&vm_arm_id("pw")).expect("vm")["properties"]["instanceView"]["statuses"]
                [1]["code"],
            format!("PowerState/{}", state.to_lowercase())
        );
        assert!(is_ready(&vm));
    }
    wait_event(&env, "pw", "Stopped").await;
    wait_event(&env, "pw", "Deallocated").await;
    wait_event(&env, "pw", "Started").await;

    assert_eq!(count_posts(&env, "restart"), 0);
    patch_spec(
        &env,
        "pw",
        json!({ "restartRequestedAt": "2026-01-01T00:00:00Z" }),
    )
    .await;
    env.wait_for(
        "default",
        "pw",
        |v: &AzlinVM| {
            is_ready(v)
                && v.status
                    .as_ref()
                    .and_then(|s| s.last_restart_requested_at.as_ref())
                    .is_some()
        },
        WAIT,
    )
    .await
    .expect("restart handled");
    // Further reconciles do not restart again.
    resync_and_wait(&env, "AzlinVM", "a resync").await;
    resync_and_wait(&env, "AzlinVM", "another resync").await;
    assert_eq!(count_posts(&env, "restart"), 1);
    wait_event(&env, "pw", "Restarted").await;
    env.shutdown().await;
}

/// With Azure's budgets on, VMs are read from the plain (low-cost) VM list and their power
/// states from lists with instance views that Compute charges to its high-cost windows:
/// those lists are spaced to half of that budget, no VM is read one by one with its
/// instance view, and nothing draws a 429.
#[tokio::test]
async fn within_azures_budgets_power_states_come_from_paced_lists_without_a_429() {
    let mut options = EmbeddedOptions::for_tests();
    options.emulator.rate_limit_scale = 1.0;
    options.emulator.compute_limit_scale = 1.0;
    let env = EmbeddedEnv::start(options).await.expect("env");
    let names = ["paced-a", "paced-b", "paced-c"];
    for name in names {
        env.apply_yaml(&format!(
            "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  resourceGroup: rg-paced\n  location: westus2\n  size: Standard_D2s_v5\n"
        ))
        .expect("apply");
    }
    for name in names {
        wait_ready(&env, name).await;
    }
    for name in names {
        patch_spec(&env, name, json!({ "powerState": "Deallocated" })).await;
    }
    for name in names {
        wait_power(&env, name, "Deallocated", "deallocated within the budgets").await;
    }
    assert_eq!(env.emulator().counts().throttled, 0, "no 429 drawn");
    let requests = env.emulator().requests();
    let policy = |p: &str| {
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.compute_policy.as_deref() == Some(p))
            .map(|r| r.time)
            .collect::<Vec<_>>()
    };
    let views = policy("HighCostGet");
    assert!(views.len() >= 2, "power states were listed: {views:?}");
    // One page at half of HighCostGet30Min (800 per 30 minutes): 4.5 s apart.
    for pair in views.windows(2) {
        let apart = pair[1] - pair[0];
        assert!(
            apart >= chrono::Duration::milliseconds(4400),
            "lists with instance views {apart} apart: {views:?}"
        );
    }
    assert!(
        !policy("LowCostGet").is_empty(),
        "VMs read from the plain list"
    );
    assert!(
        !requests.iter().any(|r| r.path.ends_with("/instanceView")),
        "no VM read one by one with its instance view"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn resize_tags_and_data_disks() {
    let env = env().await;
    create_ready(&env, "rs", "").await;
    // Another tool sets fields the operator does not model: its updates keep them (the
    // operator's snapshots do not hold them, so an update reads the resource whole first).
    let vms = env.arm().compute().virtual_machines("rg-rs");
    let mut full = vms.get("default-rs").await.expect("get").expect("vm");
    full.properties.provisioning_state = None;
    full.properties.extra.insert(
        "diagnosticsProfile".into(),
        json!({"bootDiagnostics": {"enabled": true}}),
    );
    vms.create_or_update("default-rs", &full)
        .await
        .expect("another tool's VM PUT");
    let nics = env.arm().network().interfaces("rg-rs");
    let mut nic = nics.get("default-rs-nic").await.expect("get").expect("nic");
    nic.properties.provisioning_state = None;
    nic.properties
        .extra
        .insert("enableAcceleratedNetworking".into(), json!(true));
    nics.create_or_update("default-rs-nic", &nic)
        .await
        .expect("another tool's NIC PUT");
    // Same family: in-place resize; a public IP the NIC is updated to reference.
    patch_spec(
        &env,
        "rs",
        json!({ "size": "Standard_D4s_v5", "tags": {"env": "dev"}, "publicIP": true }),
    )
    .await;
    env.wait_for(
        "default",
        "rs",
        |v: &AzlinVM| {
            is_ready(v)
                && v.status.as_ref().and_then(|s| s.size.as_deref()) == Some("Standard_D4s_v5")
        },
        WAIT,
    )
    .await
    .expect("resized");
    let vm = env.emulator().resource(&vm_arm_id("rs")).expect("vm");
    assert_eq!(vm["tags"]["env"], "dev");
    assert_eq!(
        vm["properties"]["diagnosticsProfile"]["bootDiagnostics"]["enabled"], true,
        "the resize kept what another tool set: {vm}"
    );
    let nic_id = arm_id(
        "rs",
        "Microsoft.Network/networkInterfaces",
        "default-rs-nic",
    );
    let pip_id = arm_id(
        "rs",
        "Microsoft.Network/publicIPAddresses",
        "default-rs-pip",
    );
    let nic = env.emulator().resource(&nic_id).expect("nic");
    assert_eq!(
        nic["properties"]["enableAcceleratedNetworking"], true,
        "{nic}"
    );
    assert!(
        nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(&pip_id)),
        "{nic}"
    );
    // Another family: Azure requires deallocation; the VM ends up running again.
    patch_spec(
        &env,
        "rs",
        json!({ "size": "Standard_E4s_v5", "dataDisks": [{"lun": 0, "sizeGiB": 32}], "tags": {"env": "prod"} }),
    )
    .await;
    env.wait_for(
        "default",
        "rs",
        |v: &AzlinVM| {
            is_ready(v)
                && v.status.as_ref().and_then(|s| s.size.as_deref()) == Some("Standard_E4s_v5")
                && power(v) == Some("Running")
        },
        WAIT,
    )
    .await
    .expect("resized across families");
    assert!(
        env.emulator()
            .resource(&arm_id(
                "rs",
                "Microsoft.Compute/disks",
                "default-rs-data-0"
            ))
            .is_some()
    );
    assert!(count_posts(&env, "deallocate") >= 1);
    wait_event(&env, "rs", "Resized").await;
    for id in [&vm_arm_id("rs"), &nic_id, &pip_id] {
        let r = env.emulator().resource(id).expect("exists");
        assert_eq!(r["tags"]["env"], "prod", "{r}");
    }
    let vm = env.emulator().resource(&vm_arm_id("rs")).expect("vm");
    assert_eq!(
        vm["properties"]["diagnosticsProfile"]["bootDiagnostics"]["enabled"], true,
        "{vm}"
    );
    // Growing a data disk (Azure needs the VM deallocated; it runs again afterwards).
    patch_spec(
        &env,
        "rs",
        json!({ "dataDisks": [{"lun": 0, "sizeGiB": 64}] }),
    )
    .await;
    env.wait_for(
        "default",
        "rs",
        |v: &AzlinVM| {
            is_ready(v)
                && power(v) == Some("Running")
                && env
                    .emulator()
                    .resource(&arm_id(
                        "rs",
                        "Microsoft.Compute/disks",
                        "default-rs-data-0",
                    ))
                    .is_some_and(|d| d["properties"]["diskSizeGB"] == 64)
        },
        WAIT,
    )
    .await
    .expect("data disk grown");
    wait_event(&env, "rs", "DisksResized").await;
    env.shutdown().await;
}

#[tokio::test]
async fn out_of_band_changes_are_repaired() {
    let env = env().await;
    let vm = create_ready(&env, "oob", "").await;
    let first_id = vm.status.and_then(|s| s.vm_id).expect("vm id");
    env.emulator()
        .set_vm_power_out_of_band(
            &vm_arm_id("oob"),
            azlin_arm_emulator::PowerState::Deallocated,
        )
        .expect("deallocate out of band");
    env.resync();
    wait_event(&env, "oob", "Repaired").await;
    wait_power(&env, "oob", "Running", "started again").await;

    env.emulator()
        .delete_out_of_band(&vm_arm_id("oob"))
        .expect("delete out of band");
    env.resync();
    let vm = env
        .wait_for(
            "default",
            "oob",
            |v: &AzlinVM| {
                is_ready(v)
                    && v.status
                        .as_ref()
                        .and_then(|s| s.vm_id.as_deref())
                        .is_some_and(|id| id != first_id)
            },
            WAIT,
        )
        .await
        .expect("recreated");
    assert!(is_ready(&vm));
    assert!(env.emulator().resource(&vm_arm_id("oob")).is_some());
    env.shutdown().await;
}

#[tokio::test]
async fn spot_eviction_restarts_the_vm() {
    let env = env().await;
    env.apply_yaml(&vm_yaml(
        "spot",
        "  spot:\n    maxPrice: -1\n    evictionPolicy: Deallocate\n",
    ))
    .expect("apply");
    wait_ready(&env, "spot").await;
    let vm = env.emulator().resource(&vm_arm_id("spot")).expect("vm");
    assert_eq!(vm["properties"]["priority"], "Spot");
    env.emulator().evict_vm(&vm_arm_id("spot")).expect("evict");
    env.resync();
    wait_event(&env, "spot", "SpotEvicted").await;
    wait_power(&env, "spot", "Running", "running again").await;
    env.shutdown().await;
}

#[tokio::test]
async fn terminal_errors_stall_until_the_spec_is_fixed() {
    let env = env().await;
    env.apply_yaml(&vm_yaml("bad", "").replace("Standard_D2s_v5", "Standard_Nope_v9"))
        .expect("apply");
    let stalled = wait_stalled(&env, "default", "bad", "stalled").await;
    assert_eq!(stalled.reason, "InvalidParameter", "{stalled:?}");
    assert!(stalled.message.contains("Standard_Nope_v9"), "{stalled:?}");
    patch_spec(&env, "bad", json!({ "size": "Standard_D2s_v5" })).await;
    wait_ready(&env, "bad").await;

    // Quota: injected on the VM PUT.
    env.emulator().inject_error(ErrorInjection {
        message: Some("Operation could not be completed as it results in exceeding approved Total Regional Cores quota.".into()),
        ..ErrorInjection::once("PUT", "virtualMachines/default-quota", 409, "OperationNotAllowed")
    });
    env.apply_yaml(&vm_yaml("quota", "")).expect("apply");
    let c = wait_stalled(&env, "default", "quota", "stalled on quota").await;
    assert_eq!(c.reason, "OperationNotAllowed");
    assert!(c.message.contains("quota"));
    patch_spec(&env, "quota", json!({ "size": "Standard_D4s_v5" })).await;
    wait_ready(&env, "quota").await;
    env.shutdown().await;
}

#[tokio::test]
async fn transient_errors_back_off_and_recover() {
    let env = env().await;
    env.emulator().inject_error(ErrorInjection {
        times: 12,
        ..ErrorInjection::once(
            "PUT",
            "virtualMachines/default-flaky",
            500,
            "InternalServerError",
        )
    });
    env.emulator().inject_error(ErrorInjection {
        times: 12,
        retry_after: Some(0),
        ..ErrorInjection::once(
            "GET",
            "networkInterfaces/default-flaky-nic",
            429,
            "TooManyRequests",
        )
    });
    let vm = create_ready(&env, "flaky", "").await;
    assert!(!conditions::is_true(
        &vm.status.expect("status").conditions,
        STALLED
    ));
    env.shutdown().await;
}

#[tokio::test]
async fn delete_policies_and_missing_resource_group() {
    let env = env().await;
    env.apply_yaml(&vm_yaml(
        "del",
        "  publicIP: true\n  dataDisks:\n  - lun: 1\n    sizeGiB: 16\n",
    ))
    .expect("apply");
    env.apply_yaml(&vm_yaml("keep", "  deletionPolicy: Retain\n"))
        .expect("apply");
    env.apply_yaml(&vm_yaml("gone", "")).expect("apply");
    for n in ["del", "keep", "gone"] {
        wait_ready(&env, n).await;
    }
    let api: Api<AzlinVM> = Api::namespaced(env.client(), "default");
    for n in ["del", "keep"] {
        api.delete(n, &Default::default()).await.expect("delete");
    }
    env.emulator()
        .delete_out_of_band(&rg_id("gone"))
        .expect("delete rg");
    api.delete("gone", &Default::default())
        .await
        .expect("delete");
    for n in ["del", "keep", "gone"] {
        env.wait_gone::<AzlinVM>("default", n, WAIT)
            .await
            .expect("deleted");
    }
    for (kind, res) in [
        ("Microsoft.Compute/virtualMachines", "default-del"),
        ("Microsoft.Network/networkInterfaces", "default-del-nic"),
        ("Microsoft.Network/publicIPAddresses", "default-del-pip"),
        ("Microsoft.Compute/disks", "default-del-osdisk"),
        ("Microsoft.Compute/disks", "default-del-data-1"),
    ] {
        assert!(
            env.emulator().resource(&arm_id("del", kind, res)).is_none(),
            "{res} still exists"
        );
    }
    // The resource group itself is never deleted.
    assert!(env.emulator().resource(&rg_id("del")).is_some());
    for (kind, res) in [
        ("Microsoft.Compute/virtualMachines", "default-keep"),
        ("Microsoft.Network/networkInterfaces", "default-keep-nic"),
        ("Microsoft.Compute/disks", "default-keep-osdisk"),
    ] {
        let r = env
            .emulator()
            .resource(&arm_id("keep", kind, res))
            .expect("retained");
        assert_eq!(r["tags"]["azlin-operator-released"], "true", "{res}: {r}");
    }
    // The retained VM keeps its generated key Secret, no longer owned by the AzlinVM;
    // the deleted VM's key went with it.
    let secrets: Api<Secret> = Api::namespaced(env.client(), "default");
    let kept = secrets
        .get_opt("keep-ssh")
        .await
        .expect("get")
        .expect("the retained VM's key Secret is kept");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "the kept Secret has no owner"
    );
    assert_eq!(
        kept.metadata.labels.unwrap_or_default()["azlin.io/retained-from"],
        "keep"
    );
    eventually(WAIT, "the deleted VM's key Secret is collected", || async {
        secrets
            .get_opt("del-ssh")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        event_reasons(&env, "default", Some("keep")).contains(&"KeyRetained".to_string()),
        "{:?}",
        event_reasons(&env, "default", Some("keep"))
    );
    env.shutdown().await;
}

#[tokio::test]
async fn restart_mid_provisioning_creates_no_duplicates() {
    let mut options = EmbeddedOptions::for_tests();
    options.emulator.latency = Duration::from_millis(600);
    let mut env = EmbeddedEnv::start(options).await.expect("env");
    env.apply_yaml(&vm_yaml("rst", "")).expect("apply");
    // Wait until the VM PUT was sent, then kill the controllers mid-provisioning.
    eventually(WAIT, "VM PUT", || async {
        env.emulator()
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("virtualMachines/default-rst"))
            .then_some(())
    })
    .await;
    env.kill_controllers();
    env.start_controllers();
    wait_ready(&env, "rst").await;
    let vm_puts = env
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("virtualMachines/default-rst"))
        .count();
    assert_eq!(vm_puts, 1, "the VM was created once");
    let list = env
        .arm()
        .compute()
        .virtual_machines("rg-rst")
        .list()
        .await
        .expect("list");
    assert_eq!(list.len(), 1);
    env.shutdown().await;
}

/// A restarted operator re-observes each group's VMs, NICs, public IPs and disks with one
/// Resource Graph query instead of ARM's per-type lists, and still tells power states
/// apart: it writes nothing, and the deallocated VM is neither started nor deallocated again.
#[tokio::test]
async fn a_restart_re_observes_from_resource_graph_without_writes() {
    let mut env = env().await;
    create_ready(
        &env,
        "warm",
        "  powerState: Deallocated\n  publicIP: true\n",
    )
    .await;
    create_ready(&env, "warm2", "").await;
    resync_and_wait(&env, "AzlinVM", "settling resync").await;
    env.stop_controllers().await;
    env.emulator().reset_counts();
    env.start_controllers();
    eventually(WAIT, "both VMs reconciled after the restart", || async {
        (env.reconciles("AzlinVM") >= 2).then_some(())
    })
    .await;
    // (No requested resync here: that re-lists everything from ARM on purpose.)
    let counts = env.emulator().counts();
    assert_eq!(
        counts.get("POST", "Microsoft.ResourceGraph/resources"),
        2,
        "one query per resource group: {:?}",
        counts.by_method_and_type
    );
    for listed in [
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Network/publicIPAddresses",
        "Microsoft.Compute/disks",
    ] {
        assert_eq!(
            counts.get("GET", listed),
            0,
            "{listed} came from Resource Graph: {:?}",
            counts.by_method_and_type
        );
    }
    for method in ["PUT", "PATCH", "DELETE"] {
        assert_eq!(counts.method(method), 0, "{:?}", counts.by_method_and_type);
    }
    assert_eq!(
        counts.method("POST"),
        2,
        "no power action: {:?}",
        counts.by_method_and_type
    );
    let vm = wait_power(&env, "warm", "Deallocated", "still deallocated and Ready").await;
    assert!(is_ready(&vm));
    assert!(vm.status.as_ref().is_some_and(|s| s.public_ip.is_some()));
    wait_power(&env, "warm2", "Running", "still running and Ready").await;
    env.shutdown().await;
}

#[tokio::test]
async fn zero_writes_at_rest() {
    let env = env().await;
    create_ready(&env, "rest", "  publicIP: true\n").await;
    // Let any follow-up reconcile (status write echo) settle.
    resync_and_wait(&env, "AzlinVM", "settling resync").await;
    assert_no_writes_at_rest(&env, "AzlinVM", 1).await;
    env.shutdown().await;
}

#[tokio::test]
async fn mounts_over_real_ssh_pin_the_host_key_and_unmount_on_removal() {
    use azlin_operator::ssh::sandbox::MountSandbox;
    use azlin_operator::ssh::testing::TestSshd;

    let mut sshd = TestSshd::start().expect("test sshd (apt-get install openssh-server)");
    let sandbox = MountSandbox::new().expect("sandbox");
    let env = support::ssh_env(&sshd, &sandbox).await;
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {name: data, namespace: default}\nspec: {resourceGroup: rg-m, location: westus2}\n",
    )
    .expect("storage");
    // The SharedStorage controller runs too: wait for its real share and endpoint.
    let storage = env
        .wait_for(
            "default",
            "data",
            |s: &azlin_operator::api::SharedStorage| {
                s.status.as_ref().is_some_and(|st| {
                    st.nfs_endpoint.is_some() && conditions::is_true(&st.conditions, "Ready")
                })
            },
            WAIT,
        )
        .await
        .expect("storage Ready");
    let endpoint = storage
        .status
        .and_then(|s| s.nfs_endpoint)
        .expect("endpoint");
    env.apply_yaml(&vm_yaml(
        "m",
        "  sshKeySecretRef: {name: vm-key}\n  mounts:\n  - storageRef: data\n    path: /mnt/data\n",
    ))
    .expect("vm");
    let vm = env
        .wait_for(
            "default",
            "m",
            |v: &AzlinVM| {
                is_ready(v)
                    && v.status.as_ref().is_some_and(|s| {
                        s.mounts.len() == 1
                            && s.mounts[0].state
                                == azlin_operator::api::azlinvm::MountState::Mounted
                    })
            },
            WAIT,
        )
        .await
        .expect("mounted");
    let st = vm.status.expect("status");
    assert_eq!(
        st.host_key_fingerprint.as_deref(),
        Some(sshd.host_key_fingerprint())
    );
    assert!(conditions::is_true(&st.conditions, "Mounted"));
    let (source, options) = sandbox
        .mounted("/mnt/data")
        .expect("mounted in the sandbox");
    assert_eq!(source, endpoint);
    assert!(options.contains("vers=4,minorversion=1"), "{options}");
    assert!(sandbox.fstab().contains("/mnt/data"));
    assert!(
        sandbox
            .command_log()
            .iter()
            .any(|l| l.starts_with("mount -t nfs")),
        "{:?}",
        sandbox.command_log()
    );
    let mounts_before = sandbox.command_log().len();
    // At rest no SSH work is repeated.
    resync_and_wait(&env, "AzlinVM", "resync").await;
    assert_eq!(sandbox.command_log().len(), mounts_before);

    patch_spec(&env, "m", json!({ "mounts": [] })).await;
    let vm = env
        .wait_for(
            "default",
            "m",
            |v: &AzlinVM| is_ready(v) && v.status.as_ref().is_some_and(|s| s.mounts.is_empty()),
            WAIT,
        )
        .await
        .expect("unmounted");
    assert!(conditions::find(&vm.status.expect("status").conditions, "Mounted").is_none());
    assert!(sandbox.mounted("/mnt/data").is_none());
    assert!(!sandbox.fstab().contains("/mnt/data"));

    // The pin lives in the key Secret: removing it from the status does not make the
    // operator accept another host key (the VM's sshd now presents a new one).
    let secrets: Api<Secret> = Api::namespaced(env.client(), "default");
    let pin_of = |s: &Secret| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("host-key.azlin.io/m").cloned())
            .unwrap_or_default()
    };
    let first = sshd.host_key_fingerprint().to_string();
    let pinned = pin_of(&secrets.get("vm-key").await.expect("key secret"));
    assert!(pinned.ends_with(&first), "{pinned}");
    let vms: Api<AzlinVM> = Api::namespaced(env.client(), "default");
    vms.patch_status(
        "m",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"hostKeyFingerprint": null}})),
    )
    .await
    .expect("remove the pin from the status");
    let rotated = sshd.rotate_host_key().expect("sshd with a new host key");
    patch_spec(
        &env,
        "m",
        json!({ "mounts": [{"storageRef": "data", "path": "/mnt/data"}] }),
    )
    .await;
    let c = wait_stalled(&env, "default", "m", "stalled on host key mismatch").await;
    assert_eq!(c.reason, "HostKeyMismatch", "{c:?}");
    assert!(sandbox.mounted("/mnt/data").is_none());
    assert_eq!(
        pin_of(&secrets.get("vm-key").await.expect("key secret")),
        pinned,
        "the pin is unchanged"
    );
    // Only an explicit request accepts the new key, once.
    vms.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"azlin.io/repin-host-key": "2026-01-01T00:00:00Z"}}})),
    )
    .await
    .expect("ask for a re-pin");
    let vm = env
        .wait_for(
            "default",
            "m",
            |v: &AzlinVM| {
                is_ready(v)
                    && v.status.as_ref().is_some_and(|s| {
                        s.host_key_fingerprint.as_deref() == Some(rotated.as_str())
                            && s.mounts.len() == 1
                            && s.mounts[0].state
                                == azlin_operator::api::azlinvm::MountState::Mounted
                    })
            },
            WAIT,
        )
        .await
        .expect("re-pinned and mounted");
    assert!(vm.status.is_some());
    let repinned = pin_of(&secrets.get("vm-key").await.expect("key secret"));
    assert!(
        repinned.contains(&rotated) && repinned.ends_with("2026-01-01T00:00:00Z"),
        "{repinned}"
    );
    assert!(sandbox.mounted("/mnt/data").is_some());
    wait_event(&env, "m", "HostKeyRepinned").await;
    env.shutdown().await;
}

#[tokio::test]
async fn objects_that_cannot_be_read_do_not_break_the_watch() {
    let mut options = EmbeddedOptions::for_tests();
    options.admission = false;
    let env = EmbeddedEnv::start(options).await.expect("env");
    env.apply_yaml(&vm_yaml("broken", "  powerState: Sideways\n"))
        .expect("apply broken");
    env.apply_yaml(&vm_yaml("fine", "")).expect("apply fine");
    wait_ready(&env, "fine").await;
    env.shutdown().await;
}

#[tokio::test]
async fn same_named_azure_resources_not_ours_are_never_touched() {
    use azlin_arm::network::PublicIpAddress;
    let env = env().await;
    env.arm()
        .resources()
        .create_or_update("rg-foreign", "westus2", &Default::default())
        .await
        .expect("rg");
    env.arm()
        .network()
        .public_ips("rg-foreign")
        .create_or_update(
            "default-foreign-pip",
            &PublicIpAddress::standard_static("westus2"),
        )
        .await
        .expect("foreign pip");
    env.apply_yaml(&vm_yaml("foreign", "  publicIP: true\n"))
        .expect("apply");
    let c = wait_stalled(&env, "default", "foreign", "stalled").await;
    assert_eq!(c.reason, "ResourceNotManaged");
    assert!(c.message.contains("default-foreign-pip"), "{}", c.message);
    let pip = env
        .emulator()
        .resource(&arm_id(
            "foreign",
            "Microsoft.Network/publicIPAddresses",
            "default-foreign-pip",
        ))
        .expect("pip");
    assert!(
        pip.get("tags")
            .is_none_or(|t| t.get("managed-by").is_none()),
        "{pip}"
    );
    assert!(env.emulator().resource(&vm_arm_id("foreign")).is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn retained_resources_are_adopted_by_a_new_object() {
    let env = env().await;
    let yaml = vm_yaml("adopt", "  deletionPolicy: Retain\n");
    env.apply_yaml(&yaml).expect("apply");
    let first = wait_ready(&env, "adopt").await;
    let api: Api<AzlinVM> = Api::namespaced(env.client(), "default");
    api.delete("adopt", &Default::default())
        .await
        .expect("delete");
    env.wait_gone::<AzlinVM>("default", "adopt", WAIT)
        .await
        .expect("gone");
    let released = env.emulator().resource(&vm_arm_id("adopt")).expect("kept");
    assert_eq!(released["tags"]["azlin-operator-released"], "true");
    env.apply_yaml(&yaml).expect("apply again");
    let second = wait_ready(&env, "adopt").await;
    assert_ne!(first.metadata.uid, second.metadata.uid);
    let vm = env.emulator().resource(&vm_arm_id("adopt")).expect("vm");
    assert_eq!(
        vm["tags"]["azlin-operator-uid"],
        second.metadata.uid.clone().unwrap_or_default()
    );
    assert!(vm["tags"].get("azlin-operator-released").is_none(), "{vm}");
    assert_eq!(
        first.status.and_then(|s| s.vm_id),
        second.status.and_then(|s| s.vm_id),
        "the same Azure VM"
    );
    wait_event(&env, "adopt", "Adopted").await;
    env.shutdown().await;
}

#[tokio::test]
async fn tenant_credentials_secret_selects_the_subscription() {
    let env = env().await;
    let tenant_sub = "11111111-2222-3333-4444-555555555555";
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    env.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: azlin-azure-credentials, namespace: tenant}}\ndata:\n  AZURE_ACCESS_TOKEN: {}\n  AZURE_SUBSCRIPTION_ID: {}\n",
        b64("tenant-token"),
        b64(tenant_sub)
    ))
    .expect("tenant secret");
    env.apply_yaml(&vm_yaml("t1", "").replace("namespace: default", "namespace: tenant"))
        .expect("apply");
    let vm = env
        .wait_for("tenant", "t1", is_ready, WAIT)
        .await
        .expect("ready");
    let id = vm.status.and_then(|s| s.resource_id).expect("resource id");
    assert!(
        id.starts_with(&format!("/subscriptions/{tenant_sub}/")),
        "{id}"
    );

    // An unusable credential Secret stalls the namespace's VMs, naming the Secret.
    support::apply_unusable_tenant_secret(&env, "broken");
    env.apply_yaml(&vm_yaml("t2", "").replace("namespace: default", "namespace: broken"))
        .expect("apply");
    let c = wait_stalled(&env, "broken", "t2", "stalled").await;
    assert_eq!(c.reason, "CredentialUnavailable");
    assert!(
        c.message.contains("azlin-azure-credentials"),
        "{}",
        c.message
    );
    assert!(
        !c.message.contains(support::UNUSABLE_CLIENT_ID),
        "no secret values in messages"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_vm_created_with_a_tenant_credential_never_falls_back_to_the_operators_identity() {
    use azlin_operator::api::common::IDENTITY_NAMESPACE_SECRET;
    let env = env().await;
    let tenant_sub = "22222222-3333-4444-5555-666666666666";
    let ns = "tenant2";
    support::apply_unusable_tenant_secret(&env, ns);
    support::fix_tenant_secret(&env, ns, tenant_sub).await;
    env.apply_yaml(&vm_yaml("t1", "").replace("namespace: default", &format!("namespace: {ns}")))
        .expect("apply");
    let vm = env.wait_for(ns, "t1", is_ready, WAIT).await.expect("ready");
    let st = vm.status.expect("status");
    let azure = st.azure.expect("status.azure recorded");
    assert_eq!(azure.identity, IDENTITY_NAMESPACE_SECRET);
    assert_eq!(azure.subscription_id, tenant_sub);
    let id = st.resource_id.expect("resource id");
    assert!(
        id.starts_with(&format!("/subscriptions/{tenant_sub}/")),
        "{id}"
    );
    let tagged = env.emulator().resource(&id).expect("vm");
    assert_eq!(
        tagged["tags"]["azlin-operator-identity"], IDENTITY_NAMESPACE_SECRET,
        "the Azure resources name the credential they are managed with: {tagged}"
    );

    // The namespace loses its credential (as when a namespace is deleted), then the VM is
    // deleted: nothing may happen with the operator's own identity and subscription.
    let secrets: Api<Secret> = Api::namespaced(env.client(), ns);
    secrets
        .delete("azlin-azure-credentials", &Default::default())
        .await
        .expect("secret deleted");
    let api: Api<AzlinVM> = Api::namespaced(env.client(), ns);
    api.delete("t1", &Default::default()).await.expect("delete");
    let c = wait_stalled(&env, ns, "t1", "stalled without its credential").await;
    assert_eq!(c.reason, "CredentialUnavailable");
    assert!(
        c.message.contains("Secret tenant2/azlin-azure-credentials")
            && c.message.contains(tenant_sub),
        "{}",
        c.message
    );
    support::resync_and_wait(&env, "AzlinVM", "another reconcile while stalled").await;
    let held = api.get("t1").await.expect("still there");
    assert!(
        held.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == azlin_operator::controllers::azlinvm::FINALIZER),
        "the finalizer is kept"
    );
    assert!(
        env.emulator().resource(&id).is_some(),
        "the tenant's VM is untouched"
    );
    let default_rg = format!("/subscriptions/{EMULATOR_SUBSCRIPTION}/resourcegroups/rg-t1");
    let in_default: Vec<String> = env
        .emulator()
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.to_ascii_lowercase().starts_with(&default_rg))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        in_default.is_empty(),
        "no write in the operator's subscription: {in_default:?}"
    );
    assert!(
        !env.emulator()
            .resource_ids()
            .iter()
            .any(|r| r.to_ascii_lowercase().starts_with(&default_rg)),
        "nothing created in the operator's subscription"
    );

    // The credential comes back: the deletion completes in the tenant's subscription.
    support::apply_unusable_tenant_secret(&env, ns);
    support::fix_tenant_secret(&env, ns, tenant_sub).await;
    env.wait_gone::<AzlinVM>(ns, "t1", WAIT)
        .await
        .expect("deleted once the credential is back");
    assert!(
        env.emulator().resource(&id).is_none(),
        "the tenant's VM is deleted"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn fleet_shared_home_is_mounted_seeded_once_and_unmounted_when_removed() {
    use azlin_operator::api::azlinvm::MountState;
    use azlin_operator::api::{Fleet, SharedStorage};
    use azlin_operator::ssh::nfs::{FSTAB_MARKER, SEED_MOUNT_POINT};
    use azlin_operator::ssh::sandbox::{MountSandbox, SANDBOX_ADMIN};
    use azlin_operator::ssh::testing::TestSshd;

    let sshd = TestSshd::start().expect("test sshd (apt-get install openssh-server)");
    // The VM's admin user azureuser (1000:1000 in the sandbox) with its local home, as in
    // tests/ssh_mounts.rs; seeding runs as that uid (root + setpriv, as in CI).
    let sandbox = MountSandbox::new().expect("sandbox");
    let home = sandbox.path(&format!("/home/{SANDBOX_ADMIN}"));
    for (rel, contents) in [
        (".bashrc", "local bashrc\n"),
        (".ssh/authorized_keys", "ssh-ed25519 AAAAvm vm\n"),
        (".ssh/id_ed25519", "PRIVATE\n"),
        (".aws/credentials", "secret\n"),
    ] {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, contents).expect("write");
    }
    let chown = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(&home)
        .status()
        .expect("chown");
    assert!(chown.success());

    let env = support::ssh_env(&sshd, &sandbox).await;

    // The Fleet controller creates the member team-001; the AzlinVM controller mounts the
    // Fleet's sharedHome on it.
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: Fleet\nmetadata: {name: team, namespace: default}\nspec:\n  replicas: 1\n  sharedHome: home\n  template:\n    spec: {resourceGroup: rg-team, location: westus2, size: Standard_D2s_v5, sshKeySecretRef: {name: vm-key}}\n",
    )
    .expect("fleet");
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {name: home, namespace: default}\nspec: {resourceGroup: rg-team, location: westus2}\n",
    )
    .expect("storage");

    let home_path = format!("/home/{SANDBOX_ADMIN}");
    let home_mounted = |v: &AzlinVM| {
        is_ready(v)
            && v.status.as_ref().is_some_and(|s| {
                s.mounts.len() == 1
                    && s.mounts[0].storage_ref == "home"
                    && s.mounts[0].path == home_path
                    && s.mounts[0].state == MountState::Mounted
            })
    };
    let vm = env
        .wait_for("default", "team-001", home_mounted, WAIT)
        .await
        .expect("shared home mounted");
    let st = vm.status.expect("status");
    let mounted = conditions::find(&st.conditions, "Mounted").expect("Mounted condition");
    assert_eq!(mounted.status, "True", "{mounted:?}");
    assert!(mounted.message.contains(&home_path), "{mounted:?}");
    // The member that mounts the home is listed, and its Fleet through it.
    let storage: SharedStorage = env
        .wait_for(
            "default",
            "home",
            |s: &SharedStorage| {
                s.status.as_ref().is_some_and(|st| {
                    st.mounted_by == ["team-001".to_string(), "fleet/team".to_string()]
                })
            },
            WAIT,
        )
        .await
        .expect("storage lists the member and its Fleet");
    let endpoint = storage
        .status
        .as_ref()
        .and_then(|s| s.nfs_endpoint.clone())
        .expect("endpoint");
    let (source, _) = sandbox.mounted(&home_path).expect("home mounted");
    assert_eq!(source, endpoint);
    assert_eq!(
        sandbox
            .fstab()
            .matches(&format!("{FSTAB_MARKER}{home_path}\n"))
            .count(),
        1
    );
    // Seeded once from the local home, as the admin user, without secrets.
    let share = sandbox.share_dir(&endpoint);
    assert_eq!(
        std::fs::read_to_string(share.join(".bashrc"))
            .ok()
            .as_deref(),
        Some("local bashrc\n")
    );
    assert!(share.join(".azlin-operator/seeded").exists());
    for secret in [".ssh/id_ed25519", ".ssh/authorized_keys", ".aws"] {
        assert!(!share.join(secret).exists(), "{secret} copied");
    }
    // The copy runs as the admin user (`find` through the fake runuser) only when seeding.
    let seedings = |log: &[String]| {
        log.iter()
            .filter(|l| *l == &format!("runuser {SANDBOX_ADMIN} find"))
            .count()
    };
    assert_eq!(seedings(&sandbox.command_log()), 1);
    assert!(sandbox.mounted(SEED_MOUNT_POINT).is_none());

    // At rest: no SSH work, no writes (the Fleet settles its status from its members too).
    resync_and_wait(&env, "AzlinVM", "settling resync").await;
    resync_and_wait(&env, "Fleet", "settling Fleet resync").await;
    let log_before = sandbox.command_log().len();
    assert_no_writes_at_rest(&env, "AzlinVM", 2).await;
    assert_eq!(
        sandbox.command_log().len(),
        log_before,
        "no SSH work at rest"
    );

    // sharedHome removed from the Fleet: the members are reconciled and unmount it.
    support::patch_spec::<Fleet>(&env, "default", "team", json!({ "sharedHome": null })).await;
    let vm = env
        .wait_for(
            "default",
            "team-001",
            |v: &AzlinVM| is_ready(v) && v.status.as_ref().is_some_and(|s| s.mounts.is_empty()),
            WAIT,
        )
        .await
        .expect("home unmounted");
    assert!(conditions::find(&vm.status.expect("status").conditions, "Mounted").is_none());
    assert!(sandbox.mounted(&home_path).is_none());
    assert!(!sandbox.fstab().contains(&home_path));
    // The local home is back as it was; per-VM keys are still usable.
    assert_eq!(
        std::fs::read_to_string(home.join(".ssh/authorized_keys"))
            .ok()
            .as_deref(),
        Some("ssh-ed25519 AAAAvm vm\n")
    );
    env.wait_for(
        "default",
        "home",
        |s: &SharedStorage| s.status.as_ref().is_some_and(|st| st.mounted_by.is_empty()),
        WAIT,
    )
    .await
    .expect("mountedBy follows the Fleet");

    // Back again: mounted, not re-seeded (the share has content), nothing overwritten.
    std::fs::write(share.join(".bashrc"), "edited on the share\n").expect("edit share");
    std::fs::write(home.join(".vimrc"), "local only\n").expect("local file");
    support::patch_spec::<Fleet>(&env, "default", "team", json!({ "sharedHome": "home" })).await;
    env.wait_for("default", "team-001", home_mounted, WAIT)
        .await
        .expect("shared home mounted again");
    assert_eq!(seedings(&sandbox.command_log()), 1, "seeded once");
    assert_eq!(
        std::fs::read_to_string(share.join(".bashrc"))
            .ok()
            .as_deref(),
        Some("edited on the share\n")
    );
    assert!(!share.join(".vimrc").exists());

    // Without the ownerReference the VM is no Fleet member: its home is unmounted, and the
    // Fleet makes a new member, whose home is mounted without seeding the share again.
    let vms: Api<AzlinVM> = Api::namespaced(env.client(), "default");
    vms.patch(
        "team-001",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "metadata": { "ownerReferences": null } })),
    )
    .await
    .expect("ownerReferences removed");
    env.wait_for(
        "default",
        "team-001",
        |v: &AzlinVM| is_ready(v) && v.status.as_ref().is_some_and(|s| s.mounts.is_empty()),
        WAIT,
    )
    .await
    .expect("unmounted without the ownerReference");
    env.wait_for("default", "team-002", home_mounted, WAIT)
        .await
        .expect("the new member mounts the home");
    assert_eq!(seedings(&sandbox.command_log()), 1, "still seeded once");

    // A busy home cannot be unmounted: it stays mounted, in fstab, and Failed in status.
    sandbox.fail_umount(&home_path).expect("busy home");
    support::patch_spec::<Fleet>(&env, "default", "team", json!({ "sharedHome": null })).await;
    let vm = env
        .wait_for(
            "default",
            "team-002",
            |v: &AzlinVM| {
                v.status
                    .as_ref()
                    .is_some_and(|s| s.mounts.len() == 1 && s.mounts[0].state == MountState::Failed)
            },
            WAIT,
        )
        .await
        .expect("busy unmount surfaced");
    let st = vm.status.expect("status");
    assert_eq!(st.mounts[0].path, home_path);
    assert_eq!(st.mounts[0].storage_ref, "home");
    assert!(
        st.mounts[0].message.contains("target is busy")
            && st.mounts[0].message.contains("stays mounted"),
        "{:?}",
        st.mounts[0]
    );
    let mounted = conditions::find(&st.conditions, "Mounted").expect("Mounted condition");
    assert_eq!(
        (mounted.status.as_str(), mounted.reason.as_str()),
        ("False", "MountFailed")
    );
    assert!(sandbox.mounted(&home_path).is_some());
    assert!(
        sandbox
            .fstab()
            .contains(&format!("{FSTAB_MARKER}{home_path}\n"))
    );

    env.shutdown().await;
}

#[tokio::test]
async fn a_stopped_or_deallocated_vm_reports_nothing_mounted_until_it_runs() {
    let env = env().await;
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {name: pds, namespace: default}\nspec: {resourceGroup: rg-pd, location: westus2}\n",
    )
    .expect("storage");
    env.apply_yaml(&vm_yaml(
        "pd",
        "  mounts:\n  - storageRef: pds\n    path: /data/pds\n",
    ))
    .expect("vm");
    let mounted = |v: &AzlinVM| {
        v.status.as_ref().is_some_and(|s| {
            s.mounts.len() == 1
                && s.mounts[0].state == azlin_operator::api::azlinvm::MountState::Mounted
        })
    };
    env.wait_for(
        "default",
        "pd",
        |v: &AzlinVM| is_ready(v) && mounted(v),
        WAIT,
    )
    .await
    .expect("mounted while running");
    for state in ["Deallocated", "Stopped"] {
        patch_spec(&env, "pd", json!({ "powerState": state })).await;
        let vm = wait_power(&env, "pd", state, "powered off and Ready").await;
        let st = vm.status.expect("status");
        let cond = conditions::find(&st.conditions, "Mounted").expect("Mounted condition");
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "VMNotRunning"),
            "{state}: {cond:?}"
        );
        assert!(
            st.mounts
                .iter()
                .all(|m| m.state != azlin_operator::api::azlinvm::MountState::Mounted),
            "{state}: {:?}",
            st.mounts
        );
    }
    patch_spec(&env, "pd", json!({ "powerState": "Running" })).await;
    let vm = env
        .wait_for(
            "default",
            "pd",
            |v: &AzlinVM| is_ready(v) && power(v) == Some("Running") && mounted(v),
            WAIT,
        )
        .await
        .expect("mounted again once running");
    let st = vm.status.expect("status");
    assert!(conditions::is_true(&st.conditions, "Mounted"));
    env.shutdown().await;
}

/// The operator's Secret requests fit its RBAC (`config/rbac/role.yaml`): Secrets are read,
/// created and patched by name; the only collection it lists or watches is the tenant
/// credential Secret, by name.
#[tokio::test]
async fn secrets_are_only_accessed_by_name() {
    use azlin_kubemem::Verb;
    let env = env().await;
    create_ready(&env, "sec", "  deletionPolicy: Retain\n").await;
    let api: Api<AzlinVM> = Api::namespaced(env.client(), "default");
    api.delete("sec", &Default::default())
        .await
        .expect("delete");
    env.wait_gone::<AzlinVM>("default", "sec", WAIT)
        .await
        .expect("deleted");
    let secret_requests: Vec<_> = env
        .api()
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .collect();
    for verb in [Verb::Create, Verb::Patch, Verb::List, Verb::Watch] {
        assert!(
            secret_requests.iter().any(|r| r.verb == verb),
            "{verb:?} in {secret_requests:?}"
        );
    }
    for r in &secret_requests {
        match r.verb {
            Verb::Get | Verb::Create | Verb::Patch => {}
            Verb::List | Verb::Watch => assert!(
                r.query
                    .contains("fieldSelector=metadata.name%3Dazlin-azure-credentials"),
                "a Secret list or watch not limited to the tenant credential: {r:?}"
            ),
            other => panic!("Secret request {other:?} is outside the operator's RBAC: {r:?}"),
        }
    }
    env.shutdown().await;
}

fn disk_id(name: &str, lun: i32) -> String {
    arm_id(
        name,
        "Microsoft.Compute/disks",
        &format!("default-{name}-data-{lun}"),
    )
}

#[tokio::test]
async fn a_data_disk_removed_from_the_spec_is_detached_and_deleted() {
    let env = env().await;
    create_ready(
        &env,
        "dd",
        "  dataDisks:\n  - lun: 0\n    sizeGiB: 32\n  - lun: 1\n    sizeGiB: 32\n",
    )
    .await;
    for lun in [0, 1] {
        let d = env.emulator().resource(&disk_id("dd", lun)).expect("disk");
        assert_eq!(
            d["tags"]["azlin-operator-name"], "dd",
            "tagged as ours: {d}"
        );
    }
    patch_spec(
        &env,
        "dd",
        json!({"dataDisks": [{"lun": 0, "sizeGiB": 32}]}),
    )
    .await;
    eventually(WAIT, "the removed data disk is deleted", || async {
        env.emulator()
            .resource(&disk_id("dd", 1))
            .is_none()
            .then_some(())
    })
    .await;
    wait_ready(&env, "dd").await;
    assert!(env.emulator().resource(&disk_id("dd", 0)).is_some());
    wait_event(&env, "dd", "DataDiskDeleted").await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_lun_re_added_smaller_while_its_old_disk_remains_is_refused_naming_the_field() {
    let env = env().await;
    create_ready(
        &env,
        "shrink",
        "  dataDisks:\n  - lun: 1\n    sizeGiB: 64\n",
    )
    .await;
    // The old disk's delete keeps failing, so it remains when LUN 1 comes back.
    env.emulator().inject_error(ErrorInjection {
        times: 1000,
        ..ErrorInjection::once("DELETE", "/disks/default-shrink-data-1", 409, "Conflict")
    });
    patch_spec(&env, "shrink", json!({"dataDisks": []})).await;
    eventually(WAIT, "the detached disk's delete was tried", || async {
        env.emulator()
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.ends_with("/disks/default-shrink-data-1"))
            .then_some(())
    })
    .await;
    patch_spec(
        &env,
        "shrink",
        json!({"dataDisks": [{"lun": 1, "sizeGiB": 32}]}),
    )
    .await;
    let c = env
        .wait_for(
            "default",
            "shrink",
            |v: &AzlinVM| {
                v.status.as_ref().is_some_and(|s| {
                    s.observed_generation == v.metadata.generation
                        && conditions::find(&s.conditions, STALLED)
                            .is_some_and(|c| c.status == "True" && c.reason == "InvalidSpec")
                })
            },
            WAIT,
        )
        .await
        .expect("stalled");
    let stalled = conditions::find(&c.status.expect("status").conditions, STALLED)
        .expect("stalled")
        .clone();
    assert!(
        stalled.message.contains("spec.dataDisks[0].sizeGiB"),
        "{}",
        stalled.message
    );
    let disk = env
        .emulator()
        .resource(&disk_id("shrink", 1))
        .expect("kept");
    assert_eq!(disk["properties"]["diskSizeGB"], 64, "never shrunk: {disk}");
    // At the old size it is attached again.
    patch_spec(
        &env,
        "shrink",
        json!({"dataDisks": [{"lun": 1, "sizeGiB": 64}]}),
    )
    .await;
    wait_ready(&env, "shrink").await;
    env.shutdown().await;
}

fn collision_yaml(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  resourceGroup: rg-coll\n  location: westus2\n  size: Standard_D2s_v5\n  publicIP: true\n  dataDisks:\n  - lun: 0\n    sizeGiB: 8\n"
    )
}

#[tokio::test]
async fn colliding_azure_names_stall_the_later_object_and_its_deletion_touches_nothing() {
    let env = env().await;
    // a/b-c and a-b/c both map to Azure VM a-b-c.
    env.apply_yaml(&collision_yaml("a", "b-c")).expect("winner");
    let winner = env
        .wait_for("a", "b-c", is_ready, WAIT)
        .await
        .expect("ready");
    let winner_vm = winner.status.and_then(|s| s.resource_id).expect("id");
    let mark = env.emulator().requests().len();
    env.apply_yaml(&collision_yaml("a-b", "c")).expect("loser");
    let c = wait_stalled(&env, "a-b", "c", "the later object stalls").await;
    assert_eq!(c.reason, "NameCollision");
    assert!(c.message.contains("AzlinVM a/b-c"), "{}", c.message);
    assert!(c.message.contains("rename this AzlinVM"), "{}", c.message);

    let api: Api<AzlinVM> = Api::namespaced(env.client(), "a-b");
    api.delete("c", &Default::default()).await.expect("delete");
    env.wait_gone::<AzlinVM>("a-b", "c", WAIT)
        .await
        .expect("the loser goes");
    let writes: Vec<String> = env.emulator().requests()[mark..]
        .iter()
        .filter(|r| r.method != "GET" && r.path.to_ascii_lowercase().contains("/a-b-c"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes.is_empty(),
        "no write, and no DELETE, for the winner's resources: {writes:?}"
    );
    let vm = env.emulator().resource(&winner_vm).expect("winner's VM");
    assert_eq!(vm["tags"]["azlin-operator-namespace"], "a");
    for res in [
        "Microsoft.Network/networkInterfaces/a-b-c-nic",
        "Microsoft.Network/publicIPAddresses/a-b-c-pip",
        "Microsoft.Compute/disks/a-b-c-osdisk",
        "Microsoft.Compute/disks/a-b-c-data-0",
    ] {
        let id = format!(
            "/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/rg-coll/providers/{res}"
        );
        assert!(env.emulator().resource(&id).is_some(), "{res} kept");
    }
    resync_and_wait(&env, "AzlinVM", "the winner still converges").await;
    env.wait_for("a", "b-c", is_ready, WAIT)
        .await
        .expect("winner Ready");
    env.shutdown().await;
}

/// A VM in another resource group than its storage: Azure refuses NFS from a subnet that is
/// not in the account's network rules (the emulator enforces it), so the VM reports the
/// mount Stalled naming `spec.allowedSubnets`; once the user allows its subnet, the storage
/// updates its rules, the emulator lets the VM in and the share is mounted.
#[tokio::test]
async fn a_storage_in_another_group_is_mounted_once_its_rules_allow_the_vm() {
    let env = env().await;
    env.apply_yaml(
        "apiVersion: azlin.io/v1alpha1\nkind: SharedStorage\nmetadata: {name: far, namespace: default}\nspec: {resourceGroup: rg-far, location: westus2}\n",
    )
    .expect("storage");
    env.apply_yaml(&vm_yaml("near", "  mounts:\n  - storageRef: far\n"))
        .expect("vm");
    let vm = env
        .wait_for(
            "default",
            "near",
            |v: &AzlinVM| {
                v.status.as_ref().is_some_and(|s| {
                    conditions::find(&s.conditions, STALLED)
                        .is_some_and(|c| c.status == "True" && c.reason == "SubnetNotAllowed")
                })
            },
            WAIT,
        )
        .await
        .expect("the refused mount is Stalled");
    let st = vm.status.expect("status");
    let stalled = conditions::find(&st.conditions, STALLED).expect("Stalled");
    let subnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/azlin-westus2-vnet/subnets/default",
        rg_id("near")
    );
    assert!(
        stalled.message.contains("spec.allowedSubnets") && stalled.message.contains(&subnet),
        "{stalled:?}"
    );
    assert!(st.vm_id.is_some(), "the VM itself was created: {st:?}");
    let account = env
        .api()
        .get("azlin.io/v1alpha1", "SharedStorage", Some("default"), "far")
        .and_then(|s| s["status"]["storageAccount"].as_str().map(str::to_string))
        .expect("account name");
    assert!(
        env.emulator()
            .nfs_access(&vm_arm_id("near"), &account)
            .is_err(),
        "Azure (the emulator) refuses this VM too"
    );

    let storages: Api<azlin_operator::api::SharedStorage> =
        Api::namespaced(env.client(), "default");
    storages
        .patch(
            "far",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"allowedSubnets": [subnet]}})),
        )
        .await
        .expect("allow the VM's subnet");
    env.wait_for(
        "default",
        "near",
        |v: &AzlinVM| {
            is_ready(v)
                && v.status.as_ref().is_some_and(|s| {
                    s.mounts.len() == 1
                        && s.mounts[0].state == azlin_operator::api::azlinvm::MountState::Mounted
                })
        },
        WAIT,
    )
    .await
    .expect("mounted once the rules allow the VM");
    assert_eq!(
        env.emulator().nfs_access(&vm_arm_id("near"), &account),
        Ok(())
    );
    env.shutdown().await;
}
