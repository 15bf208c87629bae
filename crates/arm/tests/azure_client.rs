//! The ARM client against the in-process ARM emulator over real HTTP(S): every resource family,
//! the LRO paths (Azure-AsyncOperation, Location, resource polling, resume), typed errors and
//! faults (random 500/429, injected errors, throttling headers).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azlin_arm::compute::{
    DataDisk, Disk, EvictionPolicy, HardwareProfile, ImageReference, NetworkProfile, OsDisk,
    OsProfile, PowerAction, PowerState, Priority, StorageProfile, VirtualMachine,
    VirtualMachineProperties,
};
use azlin_arm::network::{
    NetworkInterface, NetworkSecurityGroup, PublicIpAddress, SecurityRule, Subnet, VirtualNetwork,
};
use azlin_arm::storage::RootSquash;
use azlin_arm::{
    ArmClient, ArmConfig, ArmError, ArmObserver, CredentialChoice, FailedStatus, OperationState,
    Poller, RateLimitRemaining, Resource, ResourceId, SecretString, TagFilter,
};
use azlin_arm_emulator::{Emulator, EmulatorConfig, EmulatorHandle, ErrorInjection};
use reqwest::Method;

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const LOC: &str = "westus2";
const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@azlin";

async fn emulator(config: EmulatorConfig) -> (EmulatorHandle, ArmClient) {
    let handle = Emulator::start(EmulatorConfig {
        latency: Duration::from_millis(60),
        ..config
    })
    .await
    .expect("emulator starts");
    let client = ArmClient::new(
        ArmConfig::for_emulator(&handle.base_url(), SUB, "test-token").expect("config"),
    )
    .expect("client");
    (handle, client)
}

async fn default_emulator() -> (EmulatorHandle, ArmClient) {
    emulator(EmulatorConfig::default()).await
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Resource group with a VNet (subnet with the Storage endpoint and an SSH NSG).
async fn network_base(c: &ArmClient, rg: &str) -> ResourceId {
    c.resources()
        .create_or_update(rg, LOC, &tags(&[("managed-by", "azlin")]))
        .await
        .expect("rg");
    let nsg = c
        .network()
        .security_groups(rg)
        .create_or_update(
            "nsg",
            &NetworkSecurityGroup::build(
                LOC,
                vec![SecurityRule::allow_inbound_tcp("allow-ssh", 1000, 22, "*")],
            ),
        )
        .await
        .expect("nsg");
    let nsg_id = nsg.id.expect("nsg id");
    let subnet = Subnet::build("default", "10.40.1.0/24")
        .with_service_endpoint("Microsoft.Storage")
        .with_nsg(&nsg_id);
    c.network()
        .virtual_networks(rg)
        .create_or_update(
            "vnet",
            &VirtualNetwork::build(LOC, &["10.40.0.0/16"], vec![subnet]),
        )
        .await
        .expect("vnet");
    c.network().subnets(rg, "vnet").id("default")
}

fn vm_body(nic_id: &str, spot: bool) -> VirtualMachine {
    let mut vm = Resource::new(
        LOC,
        VirtualMachineProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: "Standard_D2s_v5".into(),
                ..Default::default()
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(ImageReference::marketplace(
                    "Canonical",
                    "ubuntu-24_04-lts",
                    "server",
                    "latest",
                )),
                os_disk: Some(OsDisk::from_image(Some(64), "Premium_LRS")),
                data_disks: vec![DataDisk {
                    lun: 0,
                    create_option: "Empty".into(),
                    disk_size_gb: Some(32),
                    delete_option: Some("Delete".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            os_profile: Some(OsProfile::linux_ssh(
                "vm1",
                "azureuser",
                &[SSH_KEY.to_string()],
                Some("#cloud-config\npackages: [nfs-common]\n"),
            )),
            network_profile: Some(NetworkProfile::primary_nic(nic_id, "Detach")),
            ..Default::default()
        },
    )
    .with_tags(tags(&[
        ("managed-by", "azlin"),
        ("azlin.io/owner", "dev/vm1"),
    ]));
    if spot {
        vm.properties.set_spot(EvictionPolicy::Deallocate, -1.0);
    }
    vm
}

/// [`network_base`] in resource group `rg` and a [`nic`] named `name` in it; returns the NIC id.
async fn nic_in_new_network(c: &ArmClient, rg: &str, name: &str) -> String {
    let subnet = network_base(c, rg).await;
    nic(c, rg, &subnet, name).await
}

/// NIC (with public IP and NSG) in the base network; returns the NIC id.
async fn nic(c: &ArmClient, rg: &str, subnet: &ResourceId, name: &str) -> String {
    let pip = c
        .network()
        .public_ips(rg)
        .create_or_update(
            &format!("{name}-ip"),
            &PublicIpAddress::standard_static(LOC),
        )
        .await
        .expect("pip");
    let nsg = c.network().security_groups(rg).id("nsg").to_string();
    let nic = c
        .network()
        .interfaces(rg)
        .create_or_update(
            name,
            &NetworkInterface::build(LOC, subnet, pip.id, Some(nsg)),
        )
        .await
        .expect("nic");
    nic.id.expect("nic id")
}

#[tokio::test]
async fn resource_groups_lifecycle_and_tag_listing() {
    let (emu, c) = default_emulator().await;
    let rgs = c.resources();
    assert!(rgs.get("rg1").await.expect("get").is_none());
    assert!(!rgs.exists("rg1").await.expect("exists"));
    let rg = rgs
        .create_or_update("rg1", LOC, &tags(&[("owner", "a")]))
        .await
        .expect("create");
    assert_eq!(rg.location.as_deref(), Some(LOC));
    assert!(
        rg.properties
            .provisioning_state
            .expect("state")
            .is_succeeded()
    );
    rgs.create_or_update("rg2", LOC, &tags(&[("owner", "b")]))
        .await
        .expect("create");
    let updated = rgs
        .create_or_update("rg1", LOC, &tags(&[("owner", "a"), ("env", "dev")]))
        .await
        .expect("update");
    assert_eq!(updated.tags.get("env").map(String::as_str), Some("dev"));
    let owned = rgs
        .list(Some(&TagFilter::eq("owner", "a")))
        .await
        .expect("list");
    assert_eq!(
        owned
            .iter()
            .filter_map(|g| g.name.as_deref())
            .collect::<Vec<_>>(),
        vec!["rg1"]
    );
    assert_eq!(rgs.list(None).await.expect("list").len(), 2);

    rgs.delete("rg2").await.expect("delete (Location LRO)");
    assert!(!rgs.exists("rg2").await.expect("exists"));
    rgs.delete("rg2")
        .await
        .expect("deleting a missing group succeeds");
    assert_eq!(
        emu.counts()
            .get("DELETE", "Microsoft.Resources/resourceGroups"),
        2
    );
}

#[tokio::test]
async fn network_resources_and_in_use_conflict() {
    let (emu, c) = default_emulator().await;
    let subnet_id = network_base(&c, "net").await;
    let net = c.network();

    let subnet = net
        .subnets("net", "vnet")
        .get("default")
        .await
        .expect("get")
        .expect("subnet exists");
    assert_eq!(
        subnet.properties.address_prefix.as_deref(),
        Some("10.40.1.0/24")
    );
    assert!(
        subnet
            .properties
            .service_endpoints
            .iter()
            .any(|e| e.service == "Microsoft.Storage")
    );
    assert!(subnet.properties.network_security_group.is_some());

    // A second subnet as a child resource (its own LRO).
    let extra = net
        .subnets("net", "vnet")
        .create_or_update("extra", &Subnet::build("extra", "10.40.2.0/24"))
        .await
        .expect("subnet put");
    assert!(
        extra
            .properties
            .provisioning_state
            .expect("state")
            .is_succeeded()
    );
    let vnet = net
        .virtual_networks("net")
        .get("vnet")
        .await
        .expect("get")
        .expect("vnet");
    assert_eq!(vnet.properties.subnets.len(), 2);

    let nsg = net
        .security_groups("net")
        .get("nsg")
        .await
        .expect("get")
        .expect("nsg");
    assert_eq!(
        nsg.properties.security_rules[0]
            .properties
            .destination_port_range
            .as_deref(),
        Some("22")
    );

    let nic_id = nic(&c, "net", &subnet_id, "vm1-nic").await;
    let nic = net
        .interfaces("net")
        .get("vm1-nic")
        .await
        .expect("get")
        .expect("nic");
    assert!(nic.private_ip().is_some(), "NIC got a private address");
    let pip = net
        .public_ips("net")
        .get("vm1-nic-ip")
        .await
        .expect("get")
        .expect("pip");
    assert_eq!(pip.sku.map(|s| s.name).as_deref(), Some("Standard"));

    // A NIC attached to a VM cannot be deleted.
    c.compute()
        .virtual_machines("net")
        .create_or_update("vm1", &vm_body(&nic_id, false))
        .await
        .expect("vm");
    let e = net
        .interfaces("net")
        .delete("vm1-nic")
        .await
        .expect_err("in use");
    assert!(matches!(e, ArmError::Conflict { .. }), "{e:?}");
    assert!(e.is_transient());
    c.compute()
        .virtual_machines("net")
        .delete("vm1")
        .await
        .expect("vm delete");
    net.interfaces("net")
        .delete("vm1-nic")
        .await
        .expect("nic delete after the VM");
    assert!(
        net.interfaces("net")
            .get("vm1-nic")
            .await
            .expect("get")
            .is_none()
    );
    net.public_ips("net")
        .delete("vm1-nic-ip")
        .await
        .expect("pip delete");
    net.subnets("net", "vnet")
        .delete("extra")
        .await
        .expect("subnet delete");
    assert_eq!(
        net.virtual_networks("net")
            .list()
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        emu.counts()
            .get("DELETE", "Microsoft.Network/networkInterfaces")
            >= 2
    );
}

#[tokio::test]
async fn vm_lifecycle_through_power_states() {
    let (emu, c) = default_emulator().await;
    let nic_id = nic_in_new_network(&c, "vms", "vm1-nic").await;
    let vms = c.compute().virtual_machines("vms");

    let vm = vms
        .create_or_update("vm1", &vm_body(&nic_id, true))
        .await
        .expect("create");
    assert!(
        vm.properties
            .provisioning_state
            .as_ref()
            .expect("state")
            .is_succeeded()
    );
    assert_eq!(vm.properties.priority, Some(Priority::Spot));
    assert!(vm.properties.vm_id.is_some());

    let status = vms
        .get_with_instance_view("vm1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(status.power_state, Some(PowerState::Running));
    assert_eq!(status.provisioning_state, Some(OperationState::Succeeded));

    vms.power_off("vm1").await.expect("powerOff");
    assert_eq!(power(&vms_view(&c).await), Some(PowerState::Stopped));
    vms.deallocate("vm1").await.expect("deallocate");
    assert_eq!(power(&vms_view(&c).await), Some(PowerState::Deallocated));
    vms.start("vm1").await.expect("start");
    assert_eq!(power(&vms_view(&c).await), Some(PowerState::Running));
    vms.restart("vm1").await.expect("restart");
    let view = vms
        .instance_view("vm1")
        .await
        .expect("instance view")
        .expect("exists");
    assert_eq!(view.power_state(), Some(PowerState::Running));

    // Read-modify-write keeps unknown fields and applies the change.
    let mut current = vms.get("vm1").await.expect("get").expect("exists");
    current.tags.insert("env".into(), "dev".into());
    let updated = vms.create_or_update("vm1", &current).await.expect("update");
    assert_eq!(updated.tags.get("env").map(String::as_str), Some("dev"));

    let tagged = vms
        .list_tagged(&TagFilter::eq("azlin.io/owner", "dev/vm1"))
        .await
        .expect("list");
    assert_eq!(tagged.len(), 1);

    vms.delete("vm1").await.expect("delete");
    assert!(vms.get("vm1").await.expect("get").is_none());
    let counts = emu.counts();
    for action in ["start", "powerOff", "deallocate", "restart"] {
        assert_eq!(
            counts.get(
                "POST",
                &format!("Microsoft.Compute/virtualMachines/{action}")
            ),
            1,
            "{action}"
        );
    }
}

async fn vms_view(c: &ArmClient) -> Option<azlin_arm::compute::VirtualMachineStatus> {
    c.compute()
        .virtual_machines("vms")
        .get_with_instance_view("vm1")
        .await
        .expect("get")
}

fn power(status: &Option<azlin_arm::compute::VirtualMachineStatus>) -> Option<PowerState> {
    status.as_ref().and_then(|s| s.power_state)
}

#[tokio::test]
async fn disks_and_snapshots_including_cross_region_copy() {
    let (_emu, c) = default_emulator().await;
    c.resources()
        .create_or_update("bk", LOC, &BTreeMap::new())
        .await
        .expect("rg");
    let compute = c.compute();
    let none = BTreeMap::new();

    let disk = compute
        .disks("bk")
        .create_empty("data1", LOC, 64, "Premium_LRS", &tags(&[("k", "v")]))
        .await
        .expect("disk");
    assert_eq!(disk.properties.disk_size_gb, Some(64));
    assert_eq!(disk.properties.disk_state.as_deref(), Some("Unattached"));
    let disk_id = disk.id.expect("disk id");

    let snap = compute
        .snapshots("bk")
        .create_incremental("data1-snap", LOC, &disk_id, &none)
        .await
        .expect("snapshot");
    assert_eq!(snap.properties.incremental, Some(true));
    let snap_id = snap.id.expect("snapshot id");

    let restored = compute
        .disks("bk")
        .create_from_snapshot("data1-restore", LOC, &snap_id, "Premium_LRS", &none)
        .await
        .expect("restore");
    assert_eq!(
        restored
            .properties
            .creation_data
            .source_resource_id
            .as_deref(),
        Some(snap_id.as_str())
    );
    assert!(
        compute
            .disks("bk")
            .get("data1-restore")
            .await
            .expect("get")
            .is_some()
    );

    let copy = compute
        .snapshots("bk")
        .copy_start("data1-snap-eastus", "eastus", &snap_id, &none)
        .await
        .expect("copy start");
    assert_eq!(copy.location.as_deref(), Some("eastus"));
    let done = compute
        .snapshots("bk")
        .wait_copy_complete("data1-snap-eastus")
        .await
        .expect("copy completes");
    assert_eq!(done.properties.completion_percent, Some(100.0));

    let snaps = compute.snapshots("bk").list().await.expect("list");
    assert_eq!(snaps.len(), 2);
    compute
        .snapshots("bk")
        .delete("data1-snap-eastus")
        .await
        .expect("delete copy");
    compute
        .disks("bk")
        .delete("data1-restore")
        .await
        .expect("delete disk");
    assert!(
        compute
            .disks("bk")
            .get("data1-restore")
            .await
            .expect("get")
            .is_none()
    );

    // Disk bodies from helpers carry the SKU.
    let d: Disk = compute
        .disks("bk")
        .get("data1")
        .await
        .expect("get")
        .expect("disk");
    assert_eq!(d.sku.map(|s| s.name).as_deref(), Some("Premium_LRS"));
}

#[tokio::test]
async fn nfs_storage_account_and_share() {
    let (_emu, c) = default_emulator().await;
    let subnet_id = network_base(&c, "st").await;
    let accounts = c.storage().accounts("st");
    let acct = accounts
        .create_nfs(
            "azlinnfs01",
            LOC,
            "Premium_LRS",
            &[subnet_id.to_string()],
            &tags(&[("managed-by", "azlin")]),
        )
        .await
        .expect("account");
    assert_eq!(acct.kind.as_deref(), Some("FileStorage"));
    assert_eq!(acct.properties.supports_https_traffic_only, Some(false));
    let acls = acct.properties.network_acls.expect("acls");
    assert_eq!(acls.default_action, "Deny");
    assert_eq!(acls.virtual_network_rules.len(), 1);

    let shares = c.storage().file_shares("st", "azlinnfs01");
    let share = shares
        .create_nfs("home", 100, RootSquash::NoRootSquash)
        .await
        .expect("share");
    assert_eq!(share.properties.enabled_protocols.as_deref(), Some("NFS"));
    let grown = shares.update_quota("home", 200).await.expect("quota");
    assert_eq!(grown.properties.share_quota, Some(200));
    let read = shares.get("home").await.expect("get").expect("share");
    assert_eq!(read.properties.share_quota, Some(200));
    assert_eq!(read.properties.root_squash, Some(RootSquash::NoRootSquash));
    assert_eq!(shares.list().await.expect("list").len(), 1);
    shares.delete("home").await.expect("delete share");
    assert!(shares.get("home").await.expect("get").is_none());
    accounts.delete("azlinnfs01").await.expect("delete account");
    assert!(!accounts.exists("azlinnfs01").await.expect("exists"));
}

#[tokio::test]
async fn errors_are_typed() {
    let (_emu, c) = emulator(EmulatorConfig {
        core_quota: 4,
        ..EmulatorConfig::default()
    })
    .await;
    // PUT into a missing group.
    let e = c
        .network()
        .public_ips("nogroup")
        .create_or_update("ip", &PublicIpAddress::standard_static(LOC))
        .await
        .expect_err("no rg");
    assert!(
        matches!(&e, ArmError::NotFound { code, .. } if code == "ResourceGroupNotFound"),
        "{e:?}"
    );

    // An NFS share on an account that keeps HTTPS-only on is invalid, with a target.
    c.resources()
        .create_or_update("err", LOC, &BTreeMap::new())
        .await
        .expect("rg");
    let mut https_only =
        azlin_arm::storage::StorageAccount::nfs_file_storage(LOC, "Premium_LRS", &[]);
    https_only.properties.supports_https_traffic_only = Some(true);
    c.storage()
        .accounts("err")
        .create_or_update("azlinbad01", &https_only)
        .await
        .expect("account itself is valid");
    let e = c
        .storage()
        .file_shares("err", "azlinbad01")
        .create_nfs("home", 100, RootSquash::RootSquash)
        .await
        .expect_err("NFS needs https off");
    assert!(
        matches!(e, ArmError::InvalidRequest { status: 400, .. }),
        "{e:?}"
    );
    assert_eq!(e.target(), Some("enabledProtocols"));
    assert!(e.is_terminal());
    let e = c
        .network()
        .public_ips("err")
        .create_or_update("bad name!", &PublicIpAddress::standard_static(LOC))
        .await
        .expect_err("bad name");
    assert!(matches!(e, ArmError::InvalidRequest { .. }), "{e:?}");

    // Quota: 4 cores allow one D2s_v5 but not a third.
    let subnet = network_base(&c, "err").await;
    for (i, expect_ok) in [(1, true), (2, true), (3, false)] {
        let nic_id = nic(&c, "err", &subnet, &format!("n{i}")).await;
        let r = c
            .compute()
            .virtual_machines("err")
            .create_or_update(&format!("vm{i}"), &vm_body(&nic_id, false))
            .await;
        match (expect_ok, r) {
            (true, Ok(_)) => {}
            (false, Err(e)) => {
                assert!(matches!(e, ArmError::QuotaExceeded { .. }), "{e:?}");
                assert!(e.is_terminal());
            }
            (want, got) => panic!("vm{i}: expected ok={want}, got {got:?}"),
        }
    }

    // Without a token the emulator answers 401.
    let no_token = c
        .for_tenant(&CredentialChoice::Static(SecretString::new("")), None)
        .expect("client");
    let e = no_token.resources().get("err").await.expect_err("401");
    assert!(
        matches!(e, ArmError::AuthFailed { status: 401, .. }),
        "{e:?}"
    );
}

#[derive(Default)]
struct Recorder {
    retries: AtomicU32,
    reads_remaining: Mutex<Vec<u64>>,
}

impl ArmObserver for Recorder {
    fn on_response(&self, _m: &Method, _t: &str, _s: u16, rl: Option<&RateLimitRemaining>) {
        if let (Some(n), Ok(mut v)) = (
            rl.and_then(|r| r.subscription_reads),
            self.reads_remaining.lock(),
        ) {
            v.push(n);
        }
    }
    fn on_retry(&self, _m: &Method, _t: &str, _a: u32, _d: Duration, _e: &ArmError) {
        self.retries.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn random_faults_and_throttling_are_retried() {
    let (emu, c) = emulator(EmulatorConfig {
        fault_rate: 0.2,
        throttle_rate: 0.2,
        ..EmulatorConfig::default()
    })
    .await;
    let rec = Arc::new(Recorder::default());
    let c = c
        .with_retry_policy(azlin_arm::RetryPolicy {
            max_retries: 14,
            min_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_millis(20),
        })
        .with_observer(rec.clone());
    let nic_id = nic_in_new_network(&c, "flaky", "nic").await;
    c.compute()
        .virtual_machines("flaky")
        .create_or_update("vm1", &vm_body(&nic_id, false))
        .await
        .expect("vm despite faults");
    c.compute()
        .virtual_machines("flaky")
        .deallocate("vm1")
        .await
        .expect("deallocate despite faults");
    for _ in 0..10 {
        assert!(
            c.resources()
                .exists("flaky")
                .await
                .expect("get despite faults")
        );
    }
    c.resources()
        .delete("flaky")
        .await
        .expect("delete despite faults");
    assert!(
        rec.retries.load(Ordering::SeqCst) > 0,
        "faults were injected and retried"
    );
    let counts = emu.counts();
    assert!(counts.total > 20);
}

#[tokio::test]
async fn injected_errors_and_ratelimit_headers() {
    let (emu, c) = default_emulator().await;
    let rec = Arc::new(Recorder::default());
    let c = c.with_observer(rec.clone());
    c.resources()
        .create_or_update("inj", LOC, &BTreeMap::new())
        .await
        .expect("rg");

    emu.inject_error(ErrorInjection {
        retry_after: Some(1),
        times: 2,
        ..ErrorInjection::once("GET", "/resourceGroups/inj", 429, "TooManyRequests")
    });
    assert!(
        c.resources()
            .exists("inj")
            .await
            .expect("retried past 429s")
    );
    emu.inject_error(ErrorInjection {
        times: 2,
        ..ErrorInjection::once("GET", "/resourceGroups/inj", 503, "ServiceUnavailable")
    });
    assert!(
        c.resources()
            .exists("inj")
            .await
            .expect("retried past 503s")
    );
    assert_eq!(rec.retries.load(Ordering::SeqCst), 4);

    emu.inject_error(ErrorInjection::once(
        "GET",
        "/resourceGroups/inj",
        401,
        "AuthenticationFailed",
    ));
    let e = c.resources().get("inj").await.expect_err("401 surfaces");
    assert!(matches!(e, ArmError::AuthFailed { .. }));
    assert_eq!(rec.retries.load(Ordering::SeqCst), 4, "401 not retried");

    emu.inject_error(ErrorInjection::once(
        "PUT",
        "/publicIPAddresses/",
        409,
        "AnotherOperationInProgress",
    ));
    let e = c
        .network()
        .public_ips("inj")
        .create_or_update("ip", &PublicIpAddress::standard_static(LOC))
        .await
        .expect_err("409");
    assert!(
        matches!(e, ArmError::Conflict { .. }) && e.is_transient(),
        "{e:?}"
    );

    let seen = rec.reads_remaining.lock().expect("lock").clone();
    assert!(
        !seen.is_empty(),
        "x-ms-ratelimit-remaining-subscription-reads observed"
    );
}

#[tokio::test]
async fn lro_begin_resume_and_rederive_after_restart() {
    let (emu, c) = emulator(EmulatorConfig {
        latency: Duration::from_millis(300),
        ..EmulatorConfig::default()
    })
    .await;
    let nic_id = nic_in_new_network(&c, "lro", "nic").await;
    let vms = c.compute().virtual_machines("lro");

    // Begin a create, "restart" (drop the poller), and re-derive completion from provisioningState.
    let poller = vms
        .begin_create_or_update("vm1", &vm_body(&nic_id, false))
        .await
        .expect("begin");
    assert!(
        matches!(poller.monitor, azlin_arm::Monitor::AsyncOperation(_)),
        "{poller:?}"
    );
    drop(poller);
    let vm = vms.wait_provisioned("vm1").await.expect("provisioned");
    assert!(
        vm.properties
            .provisioning_state
            .expect("state")
            .is_succeeded()
    );

    // Begin a power action, persist the poller as JSON, resume it.
    let poller = vms
        .begin_power("vm1", PowerAction::PowerOff)
        .await
        .expect("begin");
    let stored = serde_json::to_string(&poller).expect("ser");
    let resumed: Poller = serde_json::from_str(&stored).expect("de");
    c.wait(resumed).await.expect("resumed to completion");
    assert_eq!(
        vms.get_with_instance_view("vm1")
            .await
            .expect("get")
            .and_then(|s| s.power_state),
        Some(PowerState::Stopped)
    );

    // An out-of-band change cancels the operation in flight: Canceled surfaces with its error.
    let poller = vms
        .begin_power("vm1", PowerAction::Start)
        .await
        .expect("begin start");
    emu.set_vm_power_out_of_band(
        &vms.id("vm1").to_string(),
        azlin_arm_emulator::PowerState::Deallocated,
    )
    .expect("oob");
    let e = c.wait(poller).await.expect_err("canceled");
    assert!(
        matches!(
            e,
            ArmError::OperationFailed {
                status: FailedStatus::Canceled,
                ..
            }
        ),
        "{e:?}"
    );

    // Begin a delete and re-derive its end (404) without the poller.
    let _ = vms.begin_delete("vm1").await.expect("begin delete");
    c.wait_deleted(&vms.id("vm1")).await.expect("deleted");
    assert!(vms.get("vm1").await.expect("get").is_none());

    // Resource-group deletion is tracked through Location.
    let poller = c
        .resources()
        .begin_delete("lro")
        .await
        .expect("begin rg delete");
    assert!(
        matches!(poller.monitor, azlin_arm::Monitor::Location(_)),
        "{poller:?}"
    );
    c.wait(poller).await.expect("rg deleted");
    assert!(!c.resources().exists("lro").await.expect("exists"));
}

#[tokio::test]
async fn list_pages_follow_next_link() {
    let (_emu, c) = emulator(EmulatorConfig {
        page_size: 2,
        ..EmulatorConfig::default()
    })
    .await;
    c.resources()
        .create_or_update("pg", LOC, &BTreeMap::new())
        .await
        .expect("rg");
    let ips = c.network().public_ips("pg");
    let creates = (0..5).map(|i| {
        let ips = ips.clone();
        async move {
            ips.create_or_update(&format!("ip{i}"), &PublicIpAddress::standard_static(LOC))
                .await
        }
    });
    for r in futures::future::join_all(creates).await {
        r.expect("create");
    }
    let listed = ips.list().await.expect("list all pages");
    assert_eq!(listed.len(), 5);
}

#[tokio::test]
async fn https_emulator_with_extra_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let ca_path = cert_path.clone();

    let emu = Emulator::start(EmulatorConfig {
        tls: Some((cert_path, key_path)),
        ..EmulatorConfig::default()
    })
    .await
    .expect("https emulator");
    assert!(emu.base_url().starts_with("https://"));
    let config = ArmConfig::for_emulator(&emu.base_url(), SUB, "t")
        .expect("config")
        .with_ca_file(&ca_path);
    let c = ArmClient::new(config).expect("client");
    c.resources()
        .create_or_update("tls", LOC, &BTreeMap::new())
        .await
        .expect("over TLS");
    assert!(c.resources().exists("tls").await.expect("exists"));

    let mut untrusting = ArmConfig::for_emulator(&emu.base_url(), SUB, "t").expect("config");
    untrusting.retry.max_retries = 0;
    let e = ArmClient::new(untrusting)
        .expect("client")
        .resources()
        .get("tls")
        .await
        .expect_err("unknown certificate");
    assert!(matches!(e, ArmError::Transport { .. }), "{e:?}");
}

#[tokio::test]
async fn tenant_secret_client_uses_its_own_subscription() {
    let (emu, c) = default_emulator().await;
    let other_sub = "00000000-0000-0000-0000-0000000000bb";
    let secret: BTreeMap<String, Vec<u8>> = [
        ("AZURE_ACCESS_TOKEN", "tenant-token"),
        ("AZURE_SUBSCRIPTION_ID", other_sub),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    let tenant = c.for_tenant_secret(&secret).expect("tenant client");
    assert_eq!(tenant.subscription_id(), other_sub);
    tenant
        .resources()
        .create_or_update("tenant-rg", LOC, &BTreeMap::new())
        .await
        .expect("create in tenant subscription");
    assert!(
        !c.resources().exists("tenant-rg").await.expect("exists"),
        "the operator's subscription is untouched"
    );
    assert!(
        tenant
            .resources()
            .exists("tenant-rg")
            .await
            .expect("exists")
    );
    assert!(emu.requests().iter().any(|r| r.path.contains(other_sub)));
}

#[tokio::test]
async fn generic_resource_listing_filters_by_tag_on_the_server() {
    let (emu, c) = default_emulator().await;
    network_base(&c, "rg-list").await;
    for (name, owner) in [("pip-a", "a"), ("pip-b", "b")] {
        let mut pip = PublicIpAddress::standard_static(LOC);
        pip.tags = tags(&[("owner", owner)]);
        c.network()
            .public_ips("rg-list")
            .create_or_update(name, &pip)
            .await
            .expect("public ip");
    }
    let all = c
        .resources()
        .list_resources("rg-list", None)
        .await
        .expect("list all");
    let mut names: Vec<&str> = all.iter().filter_map(|r| r.name.as_deref()).collect();
    names.sort();
    // Top-level resources only: the subnet is part of the vnet.
    assert_eq!(names, ["nsg", "pip-a", "pip-b", "vnet"]);
    let owned = c
        .resources()
        .list_resources("rg-list", Some(&TagFilter::eq("owner", "a")))
        .await
        .expect("list filtered");
    assert_eq!(
        owned
            .iter()
            .filter_map(|r| r.name.as_deref())
            .collect::<Vec<_>>(),
        ["pip-a"]
    );
    // The filter is applied by the server (ARM semantics), not only re-checked by the client.
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/subscriptions/{}/resourceGroups/rg-list/resources?api-version=2021-04-01&$filter={}",
            emu.base_url(),
            c.subscription_id(),
            url::form_urlencoded::byte_serialize(b"tagName eq 'owner' and tagValue eq 'b'")
                .collect::<String>()
        ))
        .bearer_auth("token")
        .send()
        .await
        .expect("raw list");
    assert_eq!(raw.status(), 200);
    let body: serde_json::Value = raw.json().await.expect("json");
    let value = body["value"].as_array().expect("value");
    assert_eq!(value.len(), 1);
    assert_eq!(value[0]["name"], "pip-b");
    assert!(value[0].get("properties").is_none(), "GenericResource view");
    let missing = c.resources().list_resources("no-such-rg", None).await;
    assert!(
        matches!(&missing, Err(e) if e.code() == Some("ResourceGroupNotFound")),
        "{missing:?}"
    );
}
