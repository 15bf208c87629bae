//! Table tests of the SharedStorage plan and cleanup: spec × observation → step and health,
//! without any I/O.

use std::collections::{BTreeMap, BTreeSet};

use azlin_arm::storage::{FileShare, RootSquash, StorageAccount};
use serde_json::json;

use super::build;
use super::cleanup;
use super::observe::{Observed, Target};
use super::plan::{Step, plan};
use super::status::Users;
use crate::api::conditions::Health;
use crate::api::sharedstorage::{SharedStorage, StoragePhase};
use crate::infra::network::{self, Site, managed_subnet};
use crate::reconcile::ownership::{Owner, TAG_RELEASED};
use crate::reconcile::{ControllerSettings, PlanCx};

const NSG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/azlin-westus2-nsg";
const SUBNET: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/azlin-westus2-vnet/subnets/default";

fn storage(extra: serde_json::Value, deleting: bool) -> SharedStorage {
    let mut spec = json!({"resourceGroup": "rg", "location": "westus2", "sizeGiB": 100});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let mut meta = json!({"name": "data", "namespace": "ns", "uid": "u1", "generation": 1});
    if deleting {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    serde_json::from_value(json!({
        "apiVersion": "azlin.io/v1alpha1", "kind": "SharedStorage",
        "metadata": meta, "spec": spec,
    }))
    .expect("storage")
}

fn owner() -> Owner {
    Owner {
        kind: "SharedStorage".into(),
        namespace: "ns".into(),
        name: "data".into(),
        uid: "u1".into(),
        identity: None,
    }
}

fn account(tags: BTreeMap<String, String>) -> StorageAccount {
    let mut a = build::desired_account("westus2", &[SUBNET.to_string()], &tags);
    a.properties.provisioning_state = Some(azlin_arm::ProvisioningState("Succeeded".into()));
    a
}

fn share(quota: u32, used_gib: Option<u64>) -> FileShare {
    let mut s = FileShare::nfs(quota, RootSquash::NoRootSquash);
    if let Some(u) = used_gib {
        s.properties
            .extra
            .insert("shareUsageBytes".into(), json!(u * build::GIB));
    }
    s
}

fn seen() -> Observed {
    Observed {
        target: Target {
            share: "data".into(),
            account: "azlinabc".into(),
            site: Site::new("rg", "westus2"),
            owner: owner(),
            subnet_id: SUBNET.into(),
            nsg_id: NSG.into(),
        },
        users: Users::default(),
        holders: Vec::new(),
        account: None,
        share: None,
        site: Some(network::Observed {
            group: true,
            subnet: Some(managed_subnet(NSG)),
            ..network::Observed::default()
        }),
    }
}

fn kind(h: &Health) -> (&'static str, &str) {
    match h {
        Health::Ready { reason, .. } => ("Ready", reason),
        Health::Progressing { reason, .. } => ("Progressing", reason),
        Health::Stalled { reason, .. } => ("Stalled", reason),
    }
}

#[test]
fn apply_mode_table() {
    let settings = ControllerSettings::fast();
    let cx = PlanCx {
        now: chrono::Utc::now(),
        settings: &settings,
        deleting: false,
    };
    type Case = (
        &'static str,
        serde_json::Value,
        fn(&mut Observed),
        fn(&Option<Step>) -> bool,
        (&'static str, &'static str),
    );
    let cases: Vec<Case> = vec![
        (
            "no resource group",
            json!({}),
            |s| s.site = Some(network::Observed::default()),
            |st| matches!(st, Some(Step::Infra(network::Step::CreateGroup))),
            ("Progressing", "PreparingNetwork"),
        ),
        (
            "no account",
            json!({}),
            |_| {},
            |st| matches!(st, Some(Step::CreateAccount(_))),
            ("Progressing", "CreatingStorageAccount"),
        ),
        (
            "foreign account",
            json!({}),
            |s| s.account = Some(account(BTreeMap::new())),
            Option::is_none,
            ("Stalled", "ResourceNotManaged"),
        ),
        (
            "account drifted",
            json!({}),
            |s| {
                let mut a = account(owner().tags());
                a.properties.supports_https_traffic_only = Some(true);
                s.account = Some(a);
            },
            |st| matches!(st, Some(Step::UpdateAccount(_))),
            ("Progressing", "UpdatingStorageAccount"),
        ),
        (
            "no share",
            json!({}),
            |s| s.account = Some(account(owner().tags())),
            |st| matches!(st, Some(Step::CreateShare(_))),
            ("Progressing", "CreatingShare"),
        ),
        (
            "quota grows",
            json!({"sizeGiB": 200}),
            |s| {
                s.account = Some(account(owner().tags()));
                s.share = Some(share(100, None));
            },
            |st| matches!(st, Some(Step::UpdateShare(u)) if u.quota == Some((100, 200))),
            ("Progressing", "UpdatingShare"),
        ),
        (
            "shrink below usage",
            json!({"sizeGiB": 100}),
            |s| {
                s.account = Some(account(owner().tags()));
                s.share = Some(share(300, Some(250)));
            },
            Option::is_none,
            ("Stalled", "ShrinkBelowUsage"),
        ),
        (
            "in sync",
            json!({}),
            |s| {
                s.account = Some(account(owner().tags()));
                s.share = Some(share(100, None));
            },
            Option::is_none,
            ("Ready", "Provisioned"),
        ),
    ];
    for (name, extra, setup, step_ok, (health, reason)) in cases {
        let mut s = seen();
        setup(&mut s);
        let p = plan(&storage(extra, false), &s, &cx);
        assert!(step_ok(&p.step), "{name}: step {:?}", p.step);
        assert_eq!(
            kind(&p.out.health),
            (health, reason),
            "{name}: {:?}",
            p.out.health
        );
    }
}

#[test]
fn the_ready_status_reports_the_endpoint_and_users() {
    let settings = ControllerSettings::fast();
    let cx = PlanCx {
        now: chrono::Utc::now(),
        settings: &settings,
        deleting: false,
    };
    let mut s = seen();
    s.account = Some(account(owner().tags()));
    s.share = Some(share(100, None));
    s.users = Users {
        vms: BTreeSet::from(["vm1".to_string()]),
        ..Users::default()
    };
    let p = plan(&storage(json!({}), false), &s, &cx);
    let st = &p.out.status;
    assert_eq!(st.phase, Some(StoragePhase::Ready));
    assert_eq!(
        st.nfs_endpoint.as_deref(),
        Some("azlinabc.file.core.windows.net:/azlinabc/data")
    );
    assert_eq!(st.mounted_by, vec!["vm1"]);
}

#[test]
fn cleanup_table() {
    let settings = ControllerSettings::fast();
    let cx = PlanCx {
        now: chrono::Utc::now(),
        settings: &settings,
        deleting: true,
    };
    let holders = vec!["AzlinVM ns/vm1 (status mounts)".to_string()];
    let mut s = seen();
    s.site = None;
    s.holders = holders.clone();
    let blocked = cleanup::plan(&storage(json!({"deletionPolicy": "Delete"}), true), &s, &cx);
    assert!(
        blocked.step.is_none() && !blocked.out.released,
        "{:?} {:?}",
        blocked.step,
        blocked.out.health
    );
    assert_eq!(kind(&blocked.out.health), ("Stalled", "InUse"));
    assert!(
        matches!(&blocked.out.health, Health::Stalled { message, .. } if message.contains("AzlinVM ns/vm1 (status mounts)")),
        "{:?}",
        blocked.out.health
    );
    s.holders = Vec::new();
    s.account = Some(account(owner().tags()));
    s.share = Some(share(100, None));
    let p = cleanup::plan(&storage(json!({"deletionPolicy": "Delete"}), true), &s, &cx);
    assert!(matches!(p.step, Some(Step::DeleteShare)), "{:?}", p.step);
    s.share = None;
    let p = cleanup::plan(&storage(json!({"deletionPolicy": "Delete"}), true), &s, &cx);
    assert!(matches!(p.step, Some(Step::DeleteAccount)), "{:?}", p.step);
    s.account = None;
    assert!(
        cleanup::plan(&storage(json!({"deletionPolicy": "Delete"}), true), &s, &cx)
            .out
            .released
    );

    // Retain: holders block too (the share must not vanish from running VMs); then the
    // account is tagged released and the finalizer goes.
    let retain = storage(json!({"deletionPolicy": "Retain"}), true);
    s.holders = holders;
    let blocked = cleanup::plan(&retain, &s, &cx);
    assert!(blocked.step.is_none() && !blocked.out.released);
    assert_eq!(kind(&blocked.out.health), ("Stalled", "InUse"));
    s.holders = Vec::new();
    s.account = Some(account(owner().tags()));
    let p = cleanup::plan(&retain, &s, &cx);
    assert!(
        matches!(&p.step, Some(Step::TagAccount(t)) if t[TAG_RELEASED] == "true"),
        "{:?}",
        p.step
    );
    s.account = Some(account(crate::reconcile::ownership::released(
        &owner().tags(),
    )));
    assert!(cleanup::plan(&retain, &s, &cx).out.released);

    // Someone else's account is never deleted.
    let mut foreign = seen();
    foreign.account = Some(account(BTreeMap::new()));
    let p = cleanup::plan(
        &storage(json!({"deletionPolicy": "Delete"}), true),
        &foreign,
        &cx,
    );
    assert!(p.step.is_none() && p.out.released);
}
