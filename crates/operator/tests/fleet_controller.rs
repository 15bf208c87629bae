//! The Fleet controller with the real AzlinVM controller on the in-memory API and the ARM
//! emulator over HTTP: scaling (spec and scale subresource), rolling replacement within
//! maxSurge/maxUnavailable, in-place resize, fleet power, working hours with a moved clock
//! (an overnight window), healing, the fleet environment over a real sshd, and deletion.

// Shared by the controller tests; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azlin_arm_emulator::ErrorInjection;
use azlin_kubemem::testing::eventually;
use azlin_operator::api::conditions::{self, READY, STALLED};
use azlin_operator::api::fleet::{Fleet, FleetPhase};
use azlin_operator::api::{AzlinVM, PowerState};
use azlin_operator::embedded::{EmbeddedEnv, EmbeddedOptions};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::{WAIT, env};

const NS: &str = "default";
const RG: &str = "rg-fleet";
/// Long enough for a fleet of a few members to converge on a busy machine.
const FLEET_WAIT: Duration = Duration::from_secs(90);

fn fleet_yaml(name: &str, replicas: i32, extra: &str, template_extra: &str) -> String {
    format!(
        "apiVersion: azlin.io/v1alpha1\nkind: Fleet\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  replicas: {replicas}\n{extra}  template:\n    spec:\n      resourceGroup: {RG}\n      location: westus2\n      size: Standard_D2s_v5\n{template_extra}"
    )
}

fn fleets(env: &EmbeddedEnv) -> Api<Fleet> {
    Api::namespaced(env.client(), NS)
}

async fn members(env: &EmbeddedEnv, fleet: &str) -> Vec<AzlinVM> {
    let vms: Api<AzlinVM> = Api::namespaced(env.client(), NS);
    let mut list = vms
        .list(&ListParams::default().labels(&format!("azlin.io/fleet={fleet}")))
        .await
        .expect("members")
        .items;
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    list
}

fn names(vms: &[AzlinVM]) -> Vec<String> {
    vms.iter().filter_map(|v| v.metadata.name.clone()).collect()
}

fn is_ready(f: &Fleet) -> bool {
    f.status.as_ref().is_some_and(|s| {
        s.observed_generation == f.metadata.generation && conditions::is_true(&s.conditions, READY)
    })
}

/// Waits until the fleet is Ready with `n` Ready, up-to-date members and nothing else.
async fn wait_ready(env: &EmbeddedEnv, name: &str, n: i32) -> Fleet {
    env.wait_for(
        NS,
        name,
        |f: &Fleet| {
            is_ready(f)
                && f.status.as_ref().is_some_and(|s| {
                    s.replicas == n && s.ready_replicas == n && s.updated_replicas == n
                })
        },
        FLEET_WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("fleet {name} Ready with {n} members: {e}"))
}

/// Waits until the fleet has exactly the members `want` (the others fully deleted).
async fn wait_members(env: &EmbeddedEnv, fleet: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(FLEET_WAIT, &format!("members {want:?}"), || async {
        (names(&members(env, fleet).await) == want).then_some(())
    })
    .await;
}

fn vm_id(member: &str) -> String {
    format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{NS}-{member}"
    )
}

/// Ids of the emulator's VMs, NICs, public IPs and disks (the per-VM resources).
fn vm_resources(env: &EmbeddedEnv) -> Vec<String> {
    env.emulator()
        .resource_ids()
        .into_iter()
        .filter(|id| {
            [
                "/virtualmachines/",
                "/networkinterfaces/",
                "/publicipaddresses/",
                "/disks/",
            ]
            .iter()
            .any(|t| id.contains(t))
        })
        .collect()
}

fn power_of(env: &EmbeddedEnv, member: &str) -> String {
    let vm = env.emulator().resource(&vm_id(member)).expect("vm");
    vm["properties"]["instanceView"]["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["code"].as_str())
        .find_map(|c| c.strip_prefix("PowerState/"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn scales_through_spec_and_scale_subresource_without_leaking() {
    let env = env().await;
    env.apply_yaml(&fleet_yaml("team", 0, "", ""))
        .expect("fleet");
    wait_ready(&env, "team", 0).await;
    support::patch_spec::<Fleet>(&env, NS, "team", json!({"replicas": 5})).await;
    let f = wait_ready(&env, "team", 5).await;
    assert_eq!(
        names(&members(&env, "team").await),
        ["team-001", "team-002", "team-003", "team-004", "team-005"]
    );
    let st = f.status.expect("status");
    assert_eq!(st.selector.as_deref(), Some("azlin.io/fleet=team"));
    assert_eq!(st.members.len(), 5);
    assert!(
        st.members
            .iter()
            .all(|m| m.ready && m.updated && m.private_ip.is_some())
    );

    // `kubectl scale fleet/team --replicas=2`: the highest ordinals go.
    fleets(&env)
        .patch_scale(
            "team",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scaled");
    wait_ready(&env, "team", 2).await;
    wait_members(&env, "team", &["team-001", "team-002"]).await;
    for gone in ["team-003", "team-004", "team-005"] {
        assert!(
            env.emulator().resource(&vm_id(gone)).is_none(),
            "{gone} deleted in Azure"
        );
    }
    support::patch_spec::<Fleet>(&env, NS, "team", json!({"replicas": 0})).await;
    wait_ready(&env, "team", 0).await;
    wait_members(&env, "team", &[]).await;
    eventually(WAIT, "no VM resources left", || async {
        vm_resources(&env).is_empty().then_some(())
    })
    .await;
    env.shutdown().await;
}

#[tokio::test]
async fn an_image_change_rolls_out_by_replacement_without_dropping_below_replicas_ready() {
    let env = env().await;
    env.apply_yaml(&fleet_yaml(
        "roll",
        3,
        "  updateStrategy: {maxSurge: 1, maxUnavailable: 0}\n",
        "",
    ))
    .expect("fleet");
    wait_ready(&env, "roll", 3).await;
    let before_members = members(&env, "roll").await;
    let before = names(&before_members);
    let uids = |vms: &[AzlinVM]| -> Vec<String> {
        vms.iter().filter_map(|v| v.metadata.uid.clone()).collect()
    };
    let before_uids = uids(&before_members);
    // Every status the Fleet reports during the rollout.
    let seen: Arc<Mutex<Vec<(i32, i32, i32)>>> = Arc::default();
    let recorder = {
        let seen = Arc::clone(&seen);
        let stream = watcher(
            fleets(&env),
            watcher::Config::default().fields("metadata.name=roll"),
        )
        .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(Ok(f)) = stream.next().await {
                if let Some(s) = f.status {
                    seen.lock().expect("lock").push((
                        s.ready_replicas,
                        s.replicas,
                        s.updated_replicas,
                    ));
                }
            }
        })
    };
    support::patch_spec::<Fleet>(
        &env,
        NS,
        "roll",
        json!({"template": {"spec": {"image": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}}}}),
    )
    .await;
    wait_ready(&env, "roll", 3).await;
    recorder.abort();
    let after = members(&env, "roll").await;
    assert!(after.iter().all(|m| m.spec.image.sku == "12-gen2"));
    let after_uids = uids(&after);
    assert!(
        after_uids.iter().all(|u| !before_uids.contains(u)),
        "every member was replaced: {before:?} → {:?}",
        names(&after)
    );
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() > 3, "the rollout was observed: {seen:?}");
    assert!(
        seen.iter().all(|(ready, _, _)| *ready >= 3),
        "never fewer than replicas - maxUnavailable Ready: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, total, _)| *total <= 4),
        "never more than replicas + maxSurge: {seen:?}"
    );
    // Azure VMs of members whose names were not taken again are gone.
    let now = names(&after);
    for old in before.iter().filter(|n| !now.contains(n)) {
        assert!(
            env.emulator().resource(&vm_id(old)).is_none(),
            "{old} deleted in Azure; members now {now:?}"
        );
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_size_change_is_patched_in_place() {
    let env = env().await;
    env.apply_yaml(&fleet_yaml("grow", 2, "", ""))
        .expect("fleet");
    wait_ready(&env, "grow", 2).await;
    let before = members(&env, "grow").await;
    let ids: Vec<Option<String>> = before
        .iter()
        .map(|m| m.status.as_ref().and_then(|s| s.vm_id.clone()))
        .collect();
    support::patch_spec::<Fleet>(
        &env,
        NS,
        "grow",
        json!({"template": {"spec": {"size": "Standard_D4s_v5"}}}),
    )
    .await;
    env.wait_for(
        NS,
        "grow",
        |f: &Fleet| {
            is_ready(f)
                && f.status
                    .as_ref()
                    .is_some_and(|s| s.updated_replicas == 2 && s.ready_replicas == 2)
        },
        FLEET_WAIT,
    )
    .await
    .expect("resized");
    let after = members(&env, "grow").await;
    assert_eq!(names(&after), names(&before), "no member was replaced");
    let after_ids: Vec<Option<String>> = after
        .iter()
        .map(|m| m.status.as_ref().and_then(|s| s.vm_id.clone()))
        .collect();
    assert_eq!(after_ids, ids, "the same Azure VMs");
    for m in names(&after) {
        let vm = env.emulator().resource(&vm_id(&m)).expect("vm");
        assert_eq!(
            vm["properties"]["hardwareProfile"]["vmSize"],
            "Standard_D4s_v5"
        );
    }
    env.shutdown().await;
}

#[tokio::test]
async fn fleet_power_reaches_every_vm() {
    let env = env().await;
    env.apply_yaml(&fleet_yaml("pwr", 3, "", ""))
        .expect("fleet");
    wait_ready(&env, "pwr", 3).await;
    support::patch_spec::<Fleet>(&env, NS, "pwr", json!({"powerState": "Deallocated"})).await;
    let f = wait_ready(&env, "pwr", 3).await;
    assert_eq!(
        f.status.and_then(|s| s.phase),
        Some(FleetPhase::Deallocated)
    );
    for m in members(&env, "pwr").await {
        assert_eq!(m.spec.power_state, PowerState::Deallocated);
        assert_eq!(
            power_of(&env, m.metadata.name.as_deref().unwrap_or_default()),
            "deallocated"
        );
    }
    env.shutdown().await;
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn next_transition(f: &Fleet) -> Option<DateTime<Utc>> {
    let t = f.status.as_ref()?.next_transition.as_ref()?;
    DateTime::from_timestamp_millis(t.0.as_millisecond())
}

#[tokio::test]
async fn an_overnight_schedule_starts_and_stops_the_fleet_as_the_clock_moves() {
    // Monday 2026-11-30 07:00 UTC: outside the 22:00–06:00 window.
    let (options, clock) = EmbeddedOptions::with_manual_clock(t("2026-11-30T07:00:00Z"));
    let env = EmbeddedEnv::start(options).await.expect("env");
    env.apply_yaml(&fleet_yaml(
        "night",
        2,
        "  schedule: {days: [Mon, Tue, Wed, Thu, Fri], start: \"22:00\", end: \"06:00\", timeZone: UTC}\n",
        "",
    ))
    .expect("fleet");
    let f = wait_ready(&env, "night", 2).await;
    assert_eq!(
        f.status.as_ref().and_then(|s| s.phase),
        Some(FleetPhase::Deallocated)
    );
    assert_eq!(next_transition(&f), Some(t("2026-11-30T22:00:00Z")));
    for m in ["night-001", "night-002"] {
        assert_eq!(power_of(&env, m), "deallocated");
    }
    // 22:30: the night shift runs until Tuesday 06:00.
    clock.set(t("2026-11-30T22:30:00Z"));
    let f = env
        .wait_for(
            NS,
            "night",
            |f: &Fleet| {
                is_ready(f) && f.status.as_ref().and_then(|s| s.phase) == Some(FleetPhase::Ready)
            },
            FLEET_WAIT,
        )
        .await
        .expect("running at night");
    assert_eq!(next_transition(&f), Some(t("2026-12-01T06:00:00Z")));
    for m in ["night-001", "night-002"] {
        assert_eq!(power_of(&env, m), "running");
    }
    // Tuesday 06:30: deallocated until Tuesday 22:00.
    clock.set(t("2026-12-01T06:30:00Z"));
    let f = env
        .wait_for(
            NS,
            "night",
            |f: &Fleet| {
                is_ready(f)
                    && f.status.as_ref().and_then(|s| s.phase) == Some(FleetPhase::Deallocated)
            },
            FLEET_WAIT,
        )
        .await
        .expect("deallocated in the morning");
    assert_eq!(next_transition(&f), Some(t("2026-12-01T22:00:00Z")));
    for m in ["night-001", "night-002"] {
        assert_eq!(power_of(&env, m), "deallocated");
    }
    env.shutdown().await;
}

#[tokio::test]
async fn a_member_that_cannot_be_recreated_is_replaced_after_the_healing_threshold() {
    let (options, clock) = EmbeddedOptions::with_manual_clock(t("2026-11-30T09:00:00Z"));
    let env = EmbeddedEnv::start(options).await.expect("env");
    env.apply_yaml(&fleet_yaml(
        "heal",
        2,
        "  healing: {afterMinutes: 10}\n",
        "",
    ))
    .expect("fleet");
    wait_ready(&env, "heal", 2).await;
    // The VM of heal-002 disappears, and Azure refuses to create it again.
    env.emulator().inject_error(ErrorInjection {
        times: u32::MAX,
        message: Some("The requested VM size Standard_D2s_v5 is not available in the current region for this VM.".into()),
        ..ErrorInjection::once("PUT", "virtualMachines/default-heal-002", 409, "SkuNotAvailable")
    });
    env.emulator()
        .delete_out_of_band(&vm_id("heal-002"))
        .expect("deleted out of band");
    env.resync();
    let f = env
        .wait_for(
            NS,
            "heal",
            |f: &Fleet| {
                f.status.as_ref().is_some_and(|s| {
                    conditions::find(&s.conditions, STALLED).is_some_and(|c| {
                        c.status == "True"
                            && c.reason == "SkuNotAvailable"
                            && c.message.contains("heal-002")
                    })
                })
            },
            FLEET_WAIT,
        )
        .await
        .expect("the fleet shows the member's reason");
    assert_eq!(f.status.as_ref().map(|s| s.healed_replicas), Some(0));
    clock.advance(Duration::from_secs(11 * 60));
    let f = wait_ready(&env, "heal", 2).await;
    assert_eq!(f.status.as_ref().map(|s| s.healed_replicas), Some(1));
    wait_members(&env, "heal", &["heal-001", "heal-003"]).await;
    assert!(
        support::event_reasons(&env, NS, Some("heal"))
            .iter()
            .any(|r| r == "Healed"),
        "a Healed event"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn deleting_a_fleet_deletes_its_members_and_their_azure_resources() {
    let env = env().await;
    env.apply_yaml(&fleet_yaml("gone", 2, "", ""))
        .expect("fleet");
    wait_ready(&env, "gone", 2).await;
    assert!(!vm_resources(&env).is_empty());
    fleets(&env)
        .delete("gone", &DeleteParams::default())
        .await
        .expect("deleted");
    env.wait_gone::<Fleet>(NS, "gone", WAIT)
        .await
        .expect("fleet gone");
    wait_members(&env, "gone", &[]).await;
    eventually(WAIT, "no VM resources left", || async {
        vm_resources(&env).is_empty().then_some(())
    })
    .await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_template_that_cannot_work_stalls_the_fleet_with_the_members_reason() {
    let env = env().await;
    env.apply_yaml(&fleet_yaml("bad", 2, "", "").replace("Standard_D2s_v5", "Standard_Nope_v9"))
        .expect("fleet");
    let f = env
        .wait_for(
            NS,
            "bad",
            |f: &Fleet| {
                f.status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, STALLED))
            },
            FLEET_WAIT,
        )
        .await
        .expect("stalled");
    let c =
        conditions::find(&f.status.as_ref().expect("status").conditions, STALLED).expect("Stalled");
    assert_eq!(c.reason, "InvalidParameter", "{c:?}");
    assert!(c.message.contains("Standard_Nope_v9"), "{}", c.message);
    // A missing shared home: Stalled before any member exists.
    env.apply_yaml(&fleet_yaml("homeless", 1, "  sharedHome: nowhere\n", ""))
        .expect("fleet");
    let f = env
        .wait_for(
            NS,
            "homeless",
            |f: &Fleet| {
                f.status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, STALLED))
            },
            FLEET_WAIT,
        )
        .await
        .expect("stalled");
    let c =
        conditions::find(&f.status.as_ref().expect("status").conditions, STALLED).expect("Stalled");
    assert_eq!(c.reason, "StorageNotFound");
    assert!(c.message.contains("spec.sharedHome"), "{}", c.message);
    assert!(members(&env, "homeless").await.is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn the_fleet_environment_reaches_every_member_over_ssh() {
    use azlin_operator::ssh::nfs::ENV_FILE;
    use azlin_operator::ssh::sandbox::MountSandbox;
    use azlin_operator::ssh::testing::TestSshd;

    let sshd = TestSshd::start().expect("sshd");
    let sandbox = MountSandbox::new().expect("sandbox");
    let env = support::ssh_env(&sshd, &sandbox).await;
    env.apply_yaml(&fleet_yaml(
        "envy",
        2,
        "  env: {TEAM: platform, GREETING: \"it's $HOME\"}\n",
        "      sshKeySecretRef: {name: vm-key}\n",
    ))
    .expect("fleet");
    wait_ready(&env, "envy", 2).await;
    let hashes = |vms: &[AzlinVM]| -> Vec<Option<String>> {
        vms.iter()
            .map(|v| v.status.as_ref().and_then(|s| s.fleet_env_hash.clone()))
            .collect()
    };
    let first = eventually(FLEET_WAIT, "every member wrote the environment", || async {
        let h = hashes(&members(&env, "envy").await);
        h.iter().all(Option::is_some).then_some(h)
    })
    .await;
    let file = std::fs::read_to_string(sandbox.path(ENV_FILE)).expect("env file");
    assert!(file.contains("export TEAM=platform"), "{file}");
    assert!(file.contains("export GREETING='it'\\''s $HOME'"), "{file}");
    support::patch_spec::<Fleet>(
        &env,
        NS,
        "envy",
        json!({"env": {"TEAM": "infra", "GREETING": null}}),
    )
    .await;
    eventually(
        FLEET_WAIT,
        "every member wrote the new environment",
        || async {
            let h = hashes(&members(&env, "envy").await);
            (h.iter().all(|x| x.is_some()) && h.iter().zip(&first).all(|(a, b)| a != b))
                .then_some(())
        },
    )
    .await;
    let file = std::fs::read_to_string(sandbox.path(ENV_FILE)).expect("env file");
    assert!(file.contains("export TEAM=infra"), "{file}");
    assert!(!file.contains("GREETING"), "{file}");
    let written = support::event_reasons(&env, NS, None)
        .iter()
        .filter(|r| *r == "FleetEnvWritten")
        .count();
    assert!(written >= 4, "each member wrote each version: {written}");
    env.shutdown().await;
}
