//! Table tests of the AzlinVM plan: spec × observation → step, health and status, without
//! any I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use azlin_arm::compute::{PowerAction, VirtualMachine, VirtualMachineStatus};
use azlin_arm::network::{NetworkInterface, PublicIpAddress};
use azlin_arm::{OperationState, compute};
use serde_json::json;

use super::cleanup::{self, Release};
use super::observe::{Net, Observed};
use super::plan::{Step, plan};
use super::sshkey::{KeyState, VmKey};
use crate::api::AzlinVM;
use crate::api::azlinvm::VmPhase;
use crate::api::conditions::Health;
use crate::controllers::azlinvm::build::{self, VmNames};
use crate::controllers::azlinvm::mounts::DesiredMount;
use crate::infra::network::{self, Site, managed_subnet};
use crate::reconcile::ownership::{Owner, TAG_RELEASED, managed_network_tags};
use crate::reconcile::{ControllerSettings, PlanCx, Requeue};
use crate::ssh::keys::generate_ed25519;

const NSG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/azlin-westus2-nsg";
const SUBNET: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/azlin-westus2-vnet/subnets/default";

fn vm(extra: serde_json::Value) -> AzlinVM {
    let mut spec = json!({"resourceGroup": "rg", "location": "westus2", "size": "Standard_D2s_v5"});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "azlin.io/v1alpha1", "kind": "AzlinVM",
        "metadata": {"name": "dev", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": spec,
    }))
    .expect("vm")
}

fn key() -> VmKey {
    let pair = generate_ed25519("t").expect("key");
    VmKey {
        secret_name: "dev-ssh".into(),
        public_line: pair.public_key_line.clone(),
        private: Arc::new(
            russh::keys::PrivateKey::from_openssh(&pair.private_key_pem).expect("private"),
        ),
        pins: Default::default(),
    }
}

fn owner() -> Owner {
    Owner {
        kind: "AzlinVM".into(),
        namespace: "ns".into(),
        name: "dev".into(),
        uid: "u1".into(),
        identity: None,
    }
}

fn site_ok() -> network::Observed {
    network::Observed {
        group: true,
        subnet: Some(managed_subnet(NSG)),
        ..network::Observed::default()
    }
}

/// An observation of a VM whose resources do not exist yet, with a ready key and network.
fn seen() -> Observed {
    let names = VmNames::new("ns", "dev");
    Observed {
        owner: owner(),
        site: Site::new("rg", "westus2"),
        managed_subnet_id: SUBNET.into(),
        nsg_id: NSG.into(),
        nic_id: format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/{}",
            names.nic
        ),
        pip_id: format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/{}",
            names.pip
        ),
        key: Some(KeyState::Ready(key())),
        mounts: Vec::new(),
        env: None,
        net: Some(Net::Managed(Box::new(site_ok()))),
        group: true,
        pip: None,
        nic: None,
        vm: None,
        disks: BTreeMap::new(),
        restore: None,
        rival: None,
        view_due: None,
        names,
    }
}

fn nic(tags: BTreeMap<String, String>) -> NetworkInterface {
    let mut n = build::desired_nic("westus2", SUBNET, None, &tags);
    n.id = Some(seen().nic_id);
    n.properties.ip_configurations[0]
        .properties
        .private_ip_address = Some("10.42.0.4".into());
    n
}

fn ours() -> BTreeMap<String, String> {
    owner().tags()
}

fn vm_status(
    size: &str,
    power: compute::PowerState,
    state: OperationState,
) -> VirtualMachineStatus {
    let names = VmNames::new("ns", "dev");
    let v: VirtualMachine = serde_json::from_value(json!({
        "id": "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/ns-dev",
        "location": "westus2",
        "tags": ours(),
        "properties": {
            "vmId": "vm-1",
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {"osDisk": {"name": names.os_disk, "createOption": "FromImage"}, "dataDisks": []},
            "instanceView": {"statuses": [{"code": "ProvisioningState/failed/AllocationFailed", "level": "Error", "message": "no capacity"}]}
        }
    }))
    .expect("vm");
    VirtualMachineStatus {
        vm: v,
        power_state: Some(power),
        provisioning_state: Some(state),
    }
}

fn ready(seen: &mut Observed) {
    seen.nic = Some(nic(ours()));
    seen.vm = Some(vm_status(
        "Standard_D2s_v5",
        compute::PowerState::Running,
        OperationState::Succeeded,
    ));
}

fn cx(settings: &ControllerSettings, deleting: bool) -> PlanCx<'_> {
    PlanCx {
        now: chrono::Utc::now(),
        settings,
        deleting,
    }
}

fn reason(h: &Health) -> (&'static str, String) {
    match h {
        Health::Ready { reason, .. } => ("Ready", reason.clone()),
        Health::Progressing { reason, .. } => ("Progressing", reason.clone()),
        Health::Stalled { reason, .. } => ("Stalled", reason.clone()),
    }
}

#[test]
fn apply_mode_table() {
    let settings = ControllerSettings::fast();
    type Case = (
        &'static str,
        AzlinVM,
        fn(&mut Observed),
        fn(&Option<Step>) -> bool,
        (&'static str, &'static str),
    );
    let cases: Vec<Case> = vec![
        (
            "key to generate",
            vm(json!({})),
            |s| s.key = Some(KeyState::Generate),
            |st| matches!(st, Some(Step::CreateKey)),
            ("Progressing", "GeneratingKey"),
        ),
        (
            "unusable key",
            vm(json!({})),
            |s| {
                s.key = Some(KeyState::Invalid {
                    field: "spec.sshKeySecretRef".into(),
                    message: "missing".into(),
                })
            },
            Option::is_none,
            ("Stalled", "InvalidSpec"),
        ),
        (
            "no resource group",
            vm(json!({})),
            |s| {
                s.net = Some(Net::Managed(Box::default()));
                s.group = false;
            },
            |st| matches!(st, Some(Step::Infra(network::Step::CreateGroup))),
            ("Progressing", "PreparingNetwork"),
        ),
        (
            "custom subnet missing: nothing is created",
            vm(json!({"network": {"subnetId": SUBNET}})),
            |s| {
                s.net = Some(Net::Custom {
                    subnet_id: SUBNET.into(),
                    exists: false,
                    group: false,
                });
                s.group = false;
            },
            Option::is_none,
            ("Stalled", "InvalidSpec"),
        ),
        (
            "missing storage: nothing is created",
            vm(json!({"mounts": [{"storageRef": "data"}]})),
            |s| {
                s.mounts = vec![DesiredMount {
                    storage_ref: "data".into(),
                    path: "/mnt/data".into(),
                    read_only: false,
                    source: None,
                    pending: "SharedStorage data not found in namespace ns".into(),
                    storage_missing: true,
                    home_user: None,
                    dirs: Default::default(),
                    denied: None,
                }]
            },
            Option::is_none,
            ("Stalled", "StorageNotFound"),
        ),
        (
            "no NIC",
            vm(json!({})),
            |_| {},
            |st| matches!(st, Some(Step::PutNic(_))),
            ("Progressing", "CreatingNIC"),
        ),
        (
            "public IP wanted",
            vm(json!({"publicIP": true})),
            |_| {},
            |st| matches!(st, Some(Step::PutPip(_))),
            ("Progressing", "CreatingPublicIP"),
        ),
        (
            "foreign NIC",
            vm(json!({})),
            |s| s.nic = Some(nic(BTreeMap::new())),
            Option::is_none,
            ("Stalled", "ResourceNotManaged"),
        ),
        (
            "no VM",
            vm(json!({})),
            |s| s.nic = Some(nic(ours())),
            |st| matches!(st, Some(Step::CreateVm(_))),
            ("Progressing", "Creating"),
        ),
        (
            "provisioning",
            vm(json!({})),
            |s| {
                ready(s);
                s.vm = Some(vm_status(
                    "Standard_D2s_v5",
                    compute::PowerState::Unknown,
                    OperationState::InProgress("Creating".into()),
                ));
            },
            Option::is_none,
            ("Progressing", "Provisioning"),
        ),
        (
            "allocation failed: PUT again",
            vm(json!({})),
            |s| {
                ready(s);
                s.vm = Some(vm_status(
                    "Standard_D2s_v5",
                    compute::PowerState::Unknown,
                    OperationState::Failed,
                ));
            },
            |st| matches!(st, Some(Step::UpdateVm { retry: true, .. })),
            ("Progressing", "AllocationFailed"),
        ),
        (
            "resize",
            vm(json!({"size": "Standard_D4s_v5"})),
            ready,
            |st| matches!(st, Some(Step::UpdateVm { changes, retry: false, .. }) if matches!(changes.as_slice(), [build::VmChange::Resize { .. }])),
            ("Progressing", "Updating"),
        ),
        (
            "deallocate",
            vm(json!({"powerState": "Deallocated"})),
            ready,
            |st| matches!(st, Some(Step::Power(PowerAction::Deallocate))),
            ("Progressing", "Deallocating"),
        ),
        (
            "restart requested",
            vm(json!({"restartRequestedAt": "2026-01-01T00:00:00Z"})),
            ready,
            |st| matches!(st, Some(Step::Power(PowerAction::Restart))),
            ("Progressing", "Restarting"),
        ),
        (
            "as wanted",
            vm(json!({})),
            ready,
            Option::is_none,
            ("Ready", "Running"),
        ),
    ];
    for (name, vm, setup, step_ok, (health, why)) in cases {
        let mut s = seen();
        setup(&mut s);
        let p = plan(&vm, &s, &cx(&settings, false));
        assert!(step_ok(&p.step), "{name}: step {:?}", p.step);
        assert_eq!(
            reason(&p.out.health),
            (health, why.to_string()),
            "{name}: {:?}",
            p.out.health
        );
    }
}

#[test]
fn a_failed_provisioning_is_retried_with_backoff_and_reports_arms_message() {
    let settings = ControllerSettings::fast();
    let mut s = seen();
    ready(&mut s);
    s.vm = Some(vm_status(
        "Standard_D2s_v5",
        compute::PowerState::Unknown,
        OperationState::Failed,
    ));
    let p = plan(&vm(json!({})), &s, &cx(&settings, false));
    assert_eq!(p.out.requeue, Requeue::Backoff);
    match &p.out.health {
        Health::Progressing { message, .. } => {
            assert!(message.contains("no capacity"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_settled_vm_reports_its_facts_and_asks_for_nothing() {
    let settings = ControllerSettings::fast();
    let mut s = seen();
    ready(&mut s);
    let p = plan(&vm(json!({})), &s, &cx(&settings, false));
    let st = &p.out.status;
    assert_eq!(st.phase, Some(VmPhase::Running));
    assert_eq!(st.private_ip.as_deref(), Some("10.42.0.4"));
    assert_eq!(st.vm_id.as_deref(), Some("vm-1"));
    assert_eq!(st.power_state.as_deref(), Some("Running"));
    assert_eq!(st.ssh_key_secret.as_deref(), Some("dev-ssh"));
    assert_eq!(p.out.requeue, Requeue::Resync);
}

#[test]
fn a_vm_whose_power_state_is_not_listed_yet_waits_for_the_paced_list_and_acts_on_nothing() {
    let settings = ControllerSettings::fast();
    let mut s = seen();
    ready(&mut s);
    // Wanted deallocated, last listed running: without a fresh power state, no action.
    s.vm.as_mut().unwrap().power_state = None;
    s.view_due = Some(std::time::Duration::from_secs(40));
    let p = plan(
        &vm(json!({"powerState": "Deallocated"})),
        &s,
        &cx(&settings, false),
    );
    assert!(p.step.is_none(), "{:?}", p.step);
    assert_eq!(
        reason(&p.out.health),
        ("Progressing", "ObservingPowerState".to_string())
    );
    assert_eq!(
        p.out.requeue,
        Requeue::After(std::time::Duration::from_secs(40))
    );
}

#[test]
fn a_view_of_another_vm_behind_the_same_name_is_not_used() {
    let mut listed = vm_status(
        "Standard_D2s_v5",
        compute::PowerState::Running,
        OperationState::Succeeded,
    );
    listed.power_state = None;
    listed.vm.properties.instance_view = None;
    let mut old = vm_status(
        "Standard_D2s_v5",
        compute::PowerState::Deallocated,
        OperationState::Succeeded,
    );
    old.vm.properties.vm_id = Some("vm-0".into());
    let mut merged = listed.clone();
    super::observe::with_view(&mut merged, Some(&old));
    assert_eq!(merged, listed);
    let same = vm_status(
        "Standard_D2s_v5",
        compute::PowerState::Deallocated,
        OperationState::Succeeded,
    );
    super::observe::with_view(&mut merged, Some(&same));
    assert_eq!(merged.power_state, Some(compute::PowerState::Deallocated));
    assert!(merged.vm.properties.instance_view.is_some());
}

fn deleting(policy: &str) -> AzlinVM {
    let mut v = vm(json!({"deletionPolicy": policy}));
    v.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    v
}

#[test]
fn delete_removes_vm_then_nic_then_public_ip_then_disks() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, true);
    let vm = deleting("Delete");
    let mut s = seen();
    s.key = None;
    s.net = None;
    ready(&mut s);
    let mut pip: PublicIpAddress = build::desired_pip("westus2", None, &ours());
    pip.id = Some(s.pip_id.clone());
    s.pip = Some(pip);
    let disk: compute::Disk =
        serde_json::from_value(json!({"location": "westus2", "tags": ours(), "properties": {}}))
            .expect("disk");
    s.disks.insert(s.names.os_disk.clone(), disk);
    // A disk with our name but without our tags is never deleted by name.
    let untagged: compute::Disk =
        serde_json::from_value(json!({"location": "westus2", "properties": {}})).expect("disk");
    s.disks.insert(s.names.data_disk(1), untagged);
    let p = cleanup::plan(&vm, &s, &c);
    assert!(matches!(p.step, Some(Step::DeleteVm)), "{:?}", p.step);
    s.vm = None;
    assert!(matches!(
        cleanup::plan(&vm, &s, &c).step,
        Some(Step::DeleteNic)
    ));
    s.nic = None;
    assert!(matches!(
        cleanup::plan(&vm, &s, &c).step,
        Some(Step::DeletePip)
    ));
    s.pip = None;
    assert!(
        matches!(cleanup::plan(&vm, &s, &c).step, Some(Step::DeleteDisks(ref d)) if d == &vec![s.names.os_disk.clone()])
    );
    s.disks.remove(&s.names.os_disk.clone());
    let done = cleanup::plan(&vm, &s, &c);
    assert!(done.step.is_none() && done.out.released, "{:?}", done.step);
    s.group = false;
    assert!(cleanup::plan(&vm, &seen_without_group(), &c).out.released);
}

fn seen_without_group() -> Observed {
    let mut s = seen();
    s.group = false;
    s
}

#[test]
fn delete_never_touches_foreign_resources() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, true);
    let mut s = seen();
    s.nic = Some(nic(managed_network_tags()));
    let p = cleanup::plan(&deleting("Delete"), &s, &c);
    assert!(p.step.is_none() && p.out.released, "{:?}", p.step);
}

#[test]
fn retain_tags_everything_released_once_then_lets_go() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, true);
    let vm = deleting("Retain");
    let mut s = seen();
    ready(&mut s);
    let p = cleanup::plan(&vm, &s, &c);
    let Some(Step::Release(targets)) = p.step else {
        panic!("{:?}", p.step)
    };
    let whats: Vec<&str> = targets.iter().map(|t: &Release| t.what.as_str()).collect();
    assert_eq!(whats, vec!["VM ns-dev", "NIC ns-dev-nic"]);
    assert!(targets.iter().all(|t| t.tags[TAG_RELEASED] == "true"));
    if let Some(v) = s.vm.as_mut() {
        v.vm.tags.insert(TAG_RELEASED.into(), "true".into());
    }
    if let Some(n) = s.nic.as_mut() {
        n.tags.insert(TAG_RELEASED.into(), "true".into());
    }
    let done = cleanup::plan(&vm, &s, &c);
    // The generated key Secret is kept with the VM in the same (last) reconcile.
    assert!(
        matches!(done.step, Some(Step::RetainKey)) && done.out.released,
        "{:?}",
        done.step
    );
    assert!(done.out.events.iter().any(|e| e.reason == "Retained"));
    let mut own_key = vm.clone();
    own_key.spec.ssh_key_secret_ref = Some(crate::api::common::SecretReference {
        name: "mine".into(),
    });
    let theirs = cleanup::plan(&own_key, &s, &c);
    assert!(
        theirs.step.is_none() && theirs.out.released,
        "{:?}",
        theirs.step
    );
}

fn disk(tags: BTreeMap<String, String>, size: u32, managed_by: Option<&str>) -> compute::Disk {
    let mut d = json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/x",
        "location": "westus2", "tags": tags,
        "properties": {"diskSizeGB": size, "diskState": if managed_by.is_some() { "Attached" } else { "Unattached" }}
    });
    if let Some(m) = managed_by {
        d["managedBy"] = json!(m);
    }
    serde_json::from_value(d).expect("disk")
}

const VM_ID: &str =
    "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/ns-dev";

#[test]
fn disks_made_by_the_vm_put_are_tagged_then_removed_ones_deleted() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, false);
    let mut s = seen();
    ready(&mut s);
    let v = vm(json!({"dataDisks": [{"lun": 0, "sizeGiB": 64}]}));
    // Attached and untagged (the VM PUT created them): tagged with ours first.
    s.disks.insert(
        s.names.os_disk.clone(),
        disk(BTreeMap::new(), 30, Some(VM_ID)),
    );
    s.disks
        .insert(s.names.data_disk(0), disk(BTreeMap::new(), 64, Some(VM_ID)));
    let p = plan(&v, &s, &c);
    let Some(Step::TagDisks(t)) = &p.step else {
        panic!("{:?}", p.step)
    };
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|r| r.tags["azlin-operator-uid"] == "u1"));

    // LUN 1 was removed from the spec and detached: ours, so deleted; an untagged or
    // foreign detached disk with a matching name is left alone.
    s.disks
        .insert(s.names.os_disk.clone(), disk(ours(), 30, Some(VM_ID)));
    s.disks
        .insert(s.names.data_disk(0), disk(ours(), 64, Some(VM_ID)));
    s.disks.insert(s.names.data_disk(1), disk(ours(), 32, None));
    s.disks
        .insert(s.names.data_disk(2), disk(BTreeMap::new(), 32, None));
    let mut theirs = ours();
    theirs.insert("azlin-operator-name".into(), "other".into());
    s.disks.insert(s.names.data_disk(3), disk(theirs, 32, None));
    let p = plan(&v, &s, &c);
    assert!(
        matches!(&p.step, Some(Step::DeleteDisks(d)) if d == &vec![s.names.data_disk(1)]),
        "{:?}",
        p.step
    );
    assert!(p.out.events.iter().any(|e| e.reason == "DataDiskDeleted"));
}

#[test]
fn re_adding_a_lun_smaller_than_its_remaining_disk_is_refused_naming_the_field() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, false);
    let mut s = seen();
    ready(&mut s);
    s.disks
        .insert(s.names.os_disk.clone(), disk(ours(), 30, Some(VM_ID)));
    // LUN 1 was removed (its 128 GiB disk detached, not deleted yet) and added at 64 GiB.
    s.disks
        .insert(s.names.data_disk(1), disk(ours(), 128, None));
    let v = vm(json!({"dataDisks": [{"lun": 0, "sizeGiB": 8}, {"lun": 1, "sizeGiB": 64}]}));
    let p = plan(&v, &s, &c);
    assert!(p.step.is_none(), "{:?}", p.step);
    let (kind, r) = reason(&p.out.health);
    assert_eq!((kind, r.as_str()), ("Stalled", "InvalidSpec"));
    let Health::Stalled { message, .. } = &p.out.health else {
        unreachable!()
    };
    assert!(message.contains("spec.dataDisks[1].sizeGiB"), "{message}");
    // As large as the old disk: it is attached again.
    let v = vm(json!({"dataDisks": [{"lun": 0, "sizeGiB": 8}, {"lun": 1, "sizeGiB": 128}]}));
    assert!(!matches!(reason(&plan(&v, &s, &c).out.health).0, "Stalled"));
}

#[test]
fn a_name_collision_stalls_before_anything_is_created() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, false);
    let v = vm(json!({"publicIP": true}));
    // The other AzlinVM's NIC (and VM) carry its tags: nothing is created, not even the IP.
    let mut s = seen();
    let mut theirs = ours();
    theirs.insert("azlin-operator-namespace".into(), "ns-dev".into());
    theirs.insert("azlin-operator-name".into(), "x".into());
    s.nic = Some(nic(theirs));
    let p = plan(&v, &s, &c);
    assert!(p.step.is_none(), "{:?}", p.step);
    assert_eq!(reason(&p.out.health), ("Stalled", "NameCollision".into()));
    let Health::Stalled { message, .. } = &p.out.health else {
        unreachable!()
    };
    assert!(message.contains("AzlinVM ns-dev/x"), "{message}");
    // Nothing exists yet, but an older AzlinVM maps to the same names.
    let mut s = seen();
    s.rival = Some("n/s-dev".into());
    assert_eq!(
        reason(&plan(&v, &s, &c).out.health),
        ("Stalled", "NameCollision".into())
    );
    // Our own resources exist: the rival is the one that must move.
    ready(&mut s);
    assert_ne!(reason(&plan(&v, &s, &c).out.health).1, "NameCollision");
}

#[test]
fn retain_never_tags_untagged_disks_not_attached_to_our_vm() {
    let settings = ControllerSettings::fast();
    let c = cx(&settings, true);
    let v = deleting("Retain");
    let mut s = seen();
    s.disks.insert(
        s.names.os_disk.clone(),
        disk(BTreeMap::new(), 30, Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/other")),
    );
    let p = cleanup::plan(&v, &s, &c);
    assert!(p.step.is_none() && p.out.released, "{:?}", p.step);
}
