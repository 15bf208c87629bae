//! Pure desired-state builders: the ARM bodies of a VM and its NIC, public IP and managed
//! network, the read-modify-write updates of existing resources, and the power step to take.

use std::collections::BTreeMap;

use crate::api::PowerState;
use crate::api::azlinvm::{AzlinVMSpec, EvictionPolicy};
use crate::infra::naming;
use azlin_arm::compute::{
    self, BillingProfile, DataDisk, HardwareProfile, ImageReference, ManagedDiskParameters,
    NetworkProfile, OsDisk, OsProfile, StorageProfile, VirtualMachine, VirtualMachineProperties,
};
use azlin_arm::network::{NetworkInterface, PublicIpAddress};
use azlin_arm::{ArmError, Resource, SubResource};

/// Deterministic names of one AzlinVM's Azure resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmNames {
    /// VM (and host) name.
    pub vm: String,
    /// NIC.
    pub nic: String,
    /// Public IP.
    pub pip: String,
    /// OS disk.
    pub os_disk: String,
}

impl VmNames {
    /// Names of AzlinVM `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        let vm = naming::vm_name(namespace, name);
        Self {
            nic: naming::nic_name(&vm),
            pip: naming::public_ip_name(&vm),
            os_disk: naming::os_disk_name(&vm),
            vm,
        }
    }

    /// Data disk at `lun`.
    pub fn data_disk(&self, lun: i32) -> String {
        naming::data_disk_name(&self.vm, lun)
    }
}

fn data_disks(spec: &AzlinVMSpec, names: &VmNames) -> Vec<DataDisk> {
    spec.data_disks
        .iter()
        .map(|d| DataDisk {
            lun: u32::try_from(d.lun).unwrap_or(0),
            name: Some(names.data_disk(d.lun)),
            create_option: "Empty".into(),
            disk_size_gb: u32::try_from(d.size_gib).ok(),
            delete_option: Some("Delete".into()),
            managed_disk: Some(ManagedDiskParameters {
                storage_account_type: Some(d.disk_type.as_str().into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The VM body to create: image, OS disk (deleted with the VM), data disks, admin user with
/// SSH key only and cloud-init, the NIC, Spot settings, zone and tags.
pub fn desired_vm(
    spec: &AzlinVMSpec,
    names: &VmNames,
    tags: &BTreeMap<String, String>,
    nic_id: &str,
    ssh_public_key: &str,
    custom_data: &str,
) -> VirtualMachine {
    let image = &spec.image;
    let mut props = VirtualMachineProperties {
        hardware_profile: Some(HardwareProfile {
            vm_size: spec.size.clone(),
            ..Default::default()
        }),
        storage_profile: Some(StorageProfile {
            image_reference: Some(ImageReference::marketplace(
                &image.publisher,
                &image.offer,
                &image.sku,
                &image.version,
            )),
            os_disk: Some(OsDisk {
                name: Some(names.os_disk.clone()),
                ..OsDisk::from_image(
                    spec.os_disk.size_gib.and_then(|s| u32::try_from(s).ok()),
                    spec.os_disk.disk_type.as_str(),
                )
            }),
            data_disks: data_disks(spec, names),
            ..Default::default()
        }),
        os_profile: Some(OsProfile::linux_ssh(
            &names.vm,
            &spec.admin_username,
            &[ssh_public_key.to_string()],
            Some(custom_data),
        )),
        network_profile: Some(NetworkProfile::primary_nic(nic_id, "Detach")),
        ..Default::default()
    };
    if let Some(spot) = &spec.spot {
        props.set_spot(
            match spot.eviction_policy {
                EvictionPolicy::Deallocate => compute::EvictionPolicy::Deallocate,
                EvictionPolicy::Delete => compute::EvictionPolicy::Delete,
            },
            spot.max_price,
        );
    }
    let mut vm = Resource::new(spec.location.clone(), props).with_tags(tags.clone());
    if let Some(z) = spec.zone {
        vm.zones = vec![z.as_str().to_string()];
    }
    vm
}

/// One difference between an existing VM and its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmChange {
    /// `hardwareProfile.vmSize` differs.
    Resize {
        /// Current size.
        from: String,
        /// Wanted size.
        to: String,
    },
    /// Tags differ.
    Tags,
    /// Data disks were added or removed.
    DataDisks,
    /// The Spot max price differs.
    SpotPrice,
}

/// The current size of a VM.
pub fn vm_size(vm: &VirtualMachine) -> Option<&str> {
    vm.properties
        .hardware_profile
        .as_ref()
        .map(|h| h.vm_size.as_str())
}

/// A read-modify-write update of `observed` towards the spec (size, tags, data disks added or
/// removed, Spot max price), or `None` when nothing differs. Growing an existing disk is not
/// done here.
pub fn vm_update(
    observed: &VirtualMachine,
    spec: &AzlinVMSpec,
    names: &VmNames,
    tags: &BTreeMap<String, String>,
) -> Option<(VirtualMachine, Vec<VmChange>)> {
    let mut body = observed.clone();
    let mut changes = Vec::new();
    body.properties.provisioning_state = None;
    body.properties.instance_view = None;
    let current = vm_size(observed).unwrap_or_default().to_string();
    if !current.eq_ignore_ascii_case(&spec.size) {
        changes.push(VmChange::Resize {
            from: current,
            to: spec.size.clone(),
        });
        body.properties.hardware_profile = Some(HardwareProfile {
            vm_size: spec.size.clone(),
            ..observed
                .properties
                .hardware_profile
                .clone()
                .unwrap_or_default()
        });
    }
    if observed.tags != *tags {
        changes.push(VmChange::Tags);
        body.tags = tags.clone();
    }
    if let Some(storage) = body.properties.storage_profile.as_mut() {
        let wanted: Vec<u32> = spec
            .data_disks
            .iter()
            .filter_map(|d| u32::try_from(d.lun).ok())
            .collect();
        let before = storage.data_disks.len();
        storage.data_disks.retain(|d| wanted.contains(&d.lun));
        let mut changed = storage.data_disks.len() != before;
        for d in data_disks(spec, names) {
            if !storage.data_disks.iter().any(|e| e.lun == d.lun) {
                storage.data_disks.push(d);
                changed = true;
            }
        }
        if changed {
            storage.data_disks.sort_by_key(|d| d.lun);
            changes.push(VmChange::DataDisks);
        }
    }
    if let Some(spot) = &spec.spot {
        let current = observed
            .properties
            .billing_profile
            .as_ref()
            .and_then(|b| b.max_price);
        if current != Some(spot.max_price) {
            changes.push(VmChange::SpotPrice);
            body.properties.billing_profile = Some(BillingProfile {
                max_price: Some(spot.max_price),
            });
        }
    }
    (!changes.is_empty()).then_some((body, changes))
}

/// The body that updates `full` (the VM as a GET returns it, every field) towards the spec,
/// or — when `retry` (its provisioning failed) — PUTs it again unchanged; `None` when
/// nothing differs and it is not a retry.
pub fn vm_put_body(
    full: &VirtualMachine,
    spec: &AzlinVMSpec,
    names: &VmNames,
    tags: &BTreeMap<String, String>,
    retry: bool,
) -> Option<VirtualMachine> {
    if let Some((body, _)) = vm_update(full, spec, names, tags) {
        return Some(body);
    }
    retry.then(|| {
        let mut body = full.clone();
        body.properties.provisioning_state = None;
        body.properties.instance_view = None;
        body
    })
}

/// Disks to grow: `(disk name, wanted GiB)` for the OS disk (when `spec.osDisk.sizeGiB` is
/// set) and the data disks whose current size (from `current`, by disk name) is smaller than
/// the spec. Disks not in `current` (not created yet) are skipped.
pub fn disk_growth(
    spec: &AzlinVMSpec,
    names: &VmNames,
    current: &BTreeMap<String, u32>,
) -> Vec<(String, u32)> {
    let mut wanted: Vec<(String, Option<i32>)> =
        vec![(names.os_disk.clone(), spec.os_disk.size_gib)];
    wanted.extend(
        spec.data_disks
            .iter()
            .map(|d| (names.data_disk(d.lun), Some(d.size_gib))),
    );
    wanted
        .into_iter()
        .filter_map(|(name, size)| {
            let want = u32::try_from(size?).ok()?;
            let have = *current.get(&name)?;
            (have < want).then_some((name, want))
        })
        .collect()
}

/// A data disk of the spec smaller than the disk that exists under its name (e.g. a LUN
/// removed and added again smaller before the old disk was deleted): disks only grow, so
/// this is `(field, message)` naming `spec.dataDisks[i].sizeGiB`. Once the old disk is
/// gone (removing the LUN deletes it, see [`detached_disks`]) the size is free again.
pub fn disk_shrink(
    spec: &AzlinVMSpec,
    names: &VmNames,
    disks: &BTreeMap<String, compute::Disk>,
) -> Option<(String, String)> {
    spec.data_disks.iter().enumerate().find_map(|(i, d)| {
        let name = names.data_disk(d.lun);
        let have = disks.get(&name)?.properties.disk_size_gb?;
        let want = u32::try_from(d.size_gib).ok()?;
        (have > want).then(|| {
            (
                format!("spec.dataDisks[{i}].sizeGiB"),
                format!(
                    "disk {name} (LUN {}) exists with {have} GiB and disks can only grow: set sizeGiB to at least {have}, or remove LUN {} from spec.dataDisks first (its disk is then deleted) and add it again",
                    d.lun, d.lun
                ),
            )
        })
    })
}

fn disk_state(disk: &compute::Disk) -> Option<&str> {
    disk.properties.disk_state.as_deref()
}

fn managed_by(disk: &compute::Disk) -> Option<&str> {
    disk.extra
        .get("managedBy")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Disks attached to VM `vm_id` without the operator's tags (the VM PUT creates them
/// untagged): to tag with `tags`, so that they are known as ours once detached.
pub fn untagged_disks(
    disks: &BTreeMap<String, compute::Disk>,
    vm_id: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Vec<super::cleanup::Release> {
    let Some(vm_id) = vm_id else {
        return Vec::new();
    };
    disks
        .iter()
        .filter(|(_, d)| !crate::reconcile::ownership::is_managed(&d.tags))
        .filter(|(_, d)| managed_by(d).is_some_and(|m| m.eq_ignore_ascii_case(vm_id)))
        .filter_map(|(name, d)| {
            let mut t = d.tags.clone();
            t.extend(tags.clone());
            Some(super::cleanup::Release {
                what: format!("disk {name}"),
                id: d.id.clone()?,
                tags: t,
            })
        })
        .collect()
}

/// Data disks removed from the spec: named like one of the VM's data disks, not in
/// `spec.dataDisks`, detached (no `managedBy`, not `Attached`) and carrying this object's
/// ownership tags — to delete. Disks without our tags are left alone.
pub fn detached_disks(
    spec: &AzlinVMSpec,
    names: &VmNames,
    disks: &BTreeMap<String, compute::Disk>,
    owner: &crate::reconcile::ownership::Owner,
) -> Vec<String> {
    use crate::reconcile::ownership::{Ownership, ownership};
    let wanted: Vec<String> = spec
        .data_disks
        .iter()
        .map(|d| names.data_disk(d.lun).to_ascii_lowercase())
        .collect();
    disks
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(&names.os_disk))
        .filter(|(name, _)| !wanted.contains(&name.to_ascii_lowercase()))
        .filter(|(_, d)| managed_by(d).is_none() && disk_state(d) != Some("Attached"))
        .filter(|(_, d)| ownership(&d.tags, owner) == Ownership::Owned)
        .filter(|(_, d)| {
            d.properties
                .provisioning_state
                .as_ref()
                .is_none_or(|s| s.is_terminal())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Azure's `SubnetIsFull` answer to a NIC create, with how to fix it: the message names the
/// subnet but not what the user can change. Other errors pass unchanged.
pub fn explain_subnet_full(e: ArmError, managed_network: bool) -> ArmError {
    match e {
        ArmError::InvalidRequest {
            status,
            code,
            message,
            target,
        } if code.eq_ignore_ascii_case("SubnetIsFull") => {
            let fix = if managed_network {
                "the operator-managed subnet of a resource group and region holds at most 4091 NICs: put further VMs in another spec.resourceGroup, or set spec.network.subnetId to a larger subnet"
            } else {
                "free addresses in the subnet of spec.network.subnetId, or name a larger subnet there"
            };
            ArmError::InvalidRequest {
                status,
                code,
                message: format!("{message} ({fix})"),
                target,
            }
        }
        other => other,
    }
}

/// Whether Azure refused a resize because the VM must be deallocated first.
pub fn resize_needs_deallocation(code: Option<&str>, message: &str) -> bool {
    code.is_some_and(|c| c.eq_ignore_ascii_case("OperationNotAllowed"))
        && (message.contains("Deallocate the VM") || message.contains("current hardware cluster"))
}

/// The NIC body: one dynamic IP configuration in `subnet_id`, optionally with the public IP.
pub fn desired_nic(
    location: &str,
    subnet_id: &str,
    pip_id: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> NetworkInterface {
    NetworkInterface::build(location, subnet_id, pip_id.map(str::to_string), None)
        .with_tags(tags.clone())
}

fn same_id(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

/// A read-modify-write update of an existing NIC (public IP reference, tags), or `None`.
/// The subnet of a NIC cannot change (the schema keeps `spec.network` immutable).
pub fn nic_update(
    observed: &NetworkInterface,
    pip_id: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Option<NetworkInterface> {
    let mut body = observed.clone();
    body.properties.provisioning_state = None;
    body.properties.virtual_machine = None;
    let mut changed = false;
    if let Some(cfg) = body.properties.ip_configurations.first_mut() {
        let current = cfg
            .properties
            .public_ip_address
            .as_ref()
            .map(|s| s.id.as_str());
        if !same_id(current, pip_id) {
            cfg.properties.public_ip_address = pip_id.map(SubResource::new);
            changed = true;
        }
        cfg.properties.provisioning_state = None;
    }
    if observed.tags != *tags {
        body.tags = tags.clone();
        changed = true;
    }
    changed.then_some(body)
}

/// A Standard static public IP (zonal when the VM is).
pub fn desired_pip(
    location: &str,
    zone: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> PublicIpAddress {
    let mut pip = PublicIpAddress::standard_static(location).with_tags(tags.clone());
    if let Some(z) = zone {
        pip.zones = vec![z.to_string()];
    }
    pip
}

/// The next power action to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerStep {
    /// Already in the wanted state.
    Converged,
    /// Azure is changing the power state: wait.
    Wait,
    /// Start the VM.
    Start,
    /// Power it off (stays allocated).
    PowerOff,
    /// Deallocate it.
    Deallocate,
}

/// The step from `observed` towards `desired`. A deallocated VM that should be `Stopped` is
/// started first (Azure can only power off a running VM).
pub fn power_step(desired: PowerState, observed: compute::PowerState) -> PowerStep {
    use compute::PowerState as O;
    match (desired, observed) {
        (_, O::Starting | O::Stopping | O::Deallocating) => PowerStep::Wait,
        (PowerState::Running, O::Running) => PowerStep::Converged,
        (PowerState::Running, _) => PowerStep::Start,
        (PowerState::Stopped, O::Stopped) => PowerStep::Converged,
        (PowerState::Stopped, O::Running) => PowerStep::PowerOff,
        (PowerState::Stopped, _) => PowerStep::Start,
        (PowerState::Deallocated, O::Deallocated) => PowerStep::Converged,
        (PowerState::Deallocated, _) => PowerStep::Deallocate,
    }
}

/// `status.powerState` of an observed power state, spelled like `spec.powerState`
/// (`Running`, `Stopped`, `Deallocated`; in transition `Starting`, `Stopping`,
/// `Deallocating`; `Unknown`).
pub fn power_status(p: compute::PowerState) -> &'static str {
    use compute::PowerState as O;
    match p {
        O::Starting => "Starting",
        O::Running => "Running",
        O::Stopping => "Stopping",
        O::Stopped => "Stopped",
        O::Deallocating => "Deallocating",
        O::Deallocated => "Deallocated",
        O::Unknown => "Unknown",
    }
}

/// An observed power state in prose (`running`, `deallocated`...), for messages.
pub fn power_word(p: compute::PowerState) -> &'static str {
    use compute::PowerState as O;
    match p {
        O::Starting => "starting",
        O::Running => "running",
        O::Stopping => "stopping",
        O::Stopped => "stopped",
        O::Deallocating => "deallocating",
        O::Deallocated => "deallocated",
        O::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::azlinvm::{DataDiskSpec, DiskType, SpotSpec, Zone};

    fn spec() -> AzlinVMSpec {
        serde_json::from_value(serde_json::json!({
            "resourceGroup": "rg", "location": "westus2", "size": "Standard_D2s_v5"
        }))
        .expect("spec")
    }

    fn tags() -> BTreeMap<String, String> {
        [("managed-by".to_string(), "azlin-operator".to_string())].into()
    }

    #[test]
    fn desired_vm_shape() {
        let mut s = spec();
        s.spot = Some(SpotSpec {
            max_price: -1.0,
            eviction_policy: EvictionPolicy::Deallocate,
        });
        s.zone = Some(Zone::Two);
        s.data_disks = vec![DataDiskSpec {
            lun: 1,
            size_gib: 64,
            disk_type: DiskType::StandardSsdLrs,
        }];
        let names = VmNames::new("ns", "dev");
        let vm = desired_vm(
            &s,
            &names,
            &tags(),
            "/nic",
            "ssh-ed25519 AAA",
            "#cloud-config",
        );
        let v = serde_json::to_value(&vm).expect("json");
        assert_eq!(v["location"], "westus2");
        assert_eq!(v["zones"], serde_json::json!(["2"]));
        assert_eq!(
            v["properties"]["hardwareProfile"]["vmSize"],
            "Standard_D2s_v5"
        );
        assert_eq!(v["properties"]["priority"], "Spot");
        assert_eq!(v["properties"]["evictionPolicy"], "Deallocate");
        assert_eq!(v["properties"]["billingProfile"]["maxPrice"], -1.0);
        let os = &v["properties"]["storageProfile"]["osDisk"];
        assert_eq!(os["name"], "ns-dev-osdisk");
        assert_eq!(os["deleteOption"], "Delete");
        assert_eq!(os["managedDisk"]["storageAccountType"], "Premium_LRS");
        let dd = &v["properties"]["storageProfile"]["dataDisks"][0];
        assert_eq!(dd["name"], "ns-dev-data-1");
        assert_eq!(dd["diskSizeGB"], 64);
        assert_eq!(dd["managedDisk"]["storageAccountType"], "StandardSSD_LRS");
        let osp = &v["properties"]["osProfile"];
        assert_eq!(osp["computerName"], "ns-dev");
        assert_eq!(osp["adminUsername"], "azureuser");
        assert_eq!(
            osp["linuxConfiguration"]["disablePasswordAuthentication"],
            true
        );
        assert!(osp["customData"].is_string());
        assert_eq!(
            v["properties"]["networkProfile"]["networkInterfaces"][0]["id"],
            "/nic"
        );
        assert_eq!(v["tags"]["managed-by"], "azlin-operator");
        let plain = desired_vm(&spec(), &names, &tags(), "/nic", "k", "c");
        assert!(plain.properties.priority.is_none());
        assert!(plain.zones.is_empty());
    }

    #[test]
    fn vm_update_detects_only_real_differences() {
        let names = VmNames::new("ns", "dev");
        let s = spec();
        let mut observed = desired_vm(&s, &names, &tags(), "/nic", "k", "c");
        observed.properties.provisioning_state =
            Some(azlin_arm::ProvisioningState("Succeeded".into()));
        assert_eq!(vm_update(&observed, &s, &names, &tags()), None);

        let mut bigger = s.clone();
        bigger.size = "Standard_D4s_v5".into();
        bigger.data_disks = vec![DataDiskSpec {
            lun: 0,
            size_gib: 32,
            disk_type: DiskType::PremiumLrs,
        }];
        let mut new_tags = tags();
        new_tags.insert("team".into(), "a".into());
        let (body, changes) = vm_update(&observed, &bigger, &names, &new_tags).expect("changes");
        assert_eq!(
            changes,
            vec![
                VmChange::Resize {
                    from: "Standard_D2s_v5".into(),
                    to: "Standard_D4s_v5".into()
                },
                VmChange::Tags,
                VmChange::DataDisks
            ]
        );
        assert_eq!(vm_size(&body), Some("Standard_D4s_v5"));
        assert_eq!(body.tags, new_tags);
        assert!(body.properties.provisioning_state.is_none());
        let disks = &body
            .properties
            .storage_profile
            .as_ref()
            .expect("sp")
            .data_disks;
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].name.as_deref(), Some("ns-dev-data-0"));

        // Case-insensitive size comparison, as ARM normalises.
        let mut lower = s.clone();
        lower.size = "standard_d2s_v5".into();
        assert_eq!(vm_update(&observed, &lower, &names, &tags()), None);
    }

    #[test]
    fn a_full_subnet_says_what_to_change() {
        let full = || ArmError::InvalidRequest {
            status: 400,
            code: "SubnetIsFull".into(),
            message: "Subnet default does not have enough capacity for 1 IP addresses.".into(),
            target: None,
        };
        let managed = explain_subnet_full(full(), true);
        assert_eq!(managed.code(), Some("SubnetIsFull"));
        let text = managed.message();
        assert!(
            text.starts_with("Subnet default does not have enough capacity"),
            "{text}"
        );
        assert!(text.contains("another spec.resourceGroup"), "{text}");
        assert!(text.contains("spec.network.subnetId"), "{text}");
        let custom = explain_subnet_full(full(), false).message();
        assert!(
            custom.contains("the subnet of spec.network.subnetId"),
            "{custom}"
        );
        let other = ArmError::InvalidRequest {
            status: 400,
            code: "InvalidParameter".into(),
            message: "m".into(),
            target: None,
        };
        assert_eq!(explain_subnet_full(other, true).message(), "m");
    }

    #[test]
    fn put_bodies_keep_every_field_of_the_vm_read_whole() {
        let names = VmNames::new("ns", "dev");
        let s = spec();
        let mut full = desired_vm(&s, &names, &tags(), "/nic", "k", "c");
        full.properties.provisioning_state = Some(azlin_arm::ProvisioningState("Failed".into()));
        full.properties
            .extra
            .insert("diagnosticsProfile".into(), serde_json::json!({"x": 1}));
        assert_eq!(vm_put_body(&full, &s, &names, &tags(), false), None);
        let again = vm_put_body(&full, &s, &names, &tags(), true).expect("retry");
        assert_eq!(again.properties.extra, full.properties.extra);
        assert!(again.properties.provisioning_state.is_none());

        let mut bigger = s.clone();
        bigger.size = "Standard_D4s_v5".into();
        let body = vm_put_body(&full, &bigger, &names, &tags(), false).expect("resize");
        assert_eq!(vm_size(&body), Some("Standard_D4s_v5"));
        assert_eq!(body.properties.extra, full.properties.extra);
        assert_eq!(body.properties.os_profile, full.properties.os_profile);
    }

    #[test]
    fn disks_only_grow_when_smaller_and_existing() {
        let names = VmNames::new("ns", "dev");
        let mut s = spec();
        s.os_disk.size_gib = Some(64);
        s.data_disks = vec![
            DataDiskSpec {
                lun: 0,
                size_gib: 100,
                disk_type: DiskType::PremiumLrs,
            },
            DataDiskSpec {
                lun: 1,
                size_gib: 10,
                disk_type: DiskType::PremiumLrs,
            },
        ];
        let current: BTreeMap<String, u32> = [
            ("ns-dev-osdisk".to_string(), 30),
            ("ns-dev-data-0".to_string(), 100),
        ]
        .into();
        assert_eq!(
            disk_growth(&s, &names, &current),
            vec![("ns-dev-osdisk".to_string(), 64)]
        );
        s.os_disk.size_gib = None;
        assert!(disk_growth(&s, &names, &current).is_empty());
    }

    #[test]
    fn nic_update_tracks_public_ip_and_tags() {
        let nic = desired_nic("westus2", "/subnet", None, &tags());
        assert!(nic_update(&nic, None, &tags()).is_none());
        let with_pip = nic_update(&nic, Some("/pip"), &tags()).expect("update");
        assert_eq!(
            with_pip.properties.ip_configurations[0]
                .properties
                .public_ip_address
                .as_ref()
                .map(|s| s.id.as_str()),
            Some("/pip")
        );
        assert!(nic_update(&with_pip, Some("/PIP"), &tags()).is_none());
        assert!(nic_update(&with_pip, None, &tags()).is_some());
    }

    #[test]
    fn power_steps() {
        use compute::PowerState as O;
        for (wanted, observed, step) in [
            (PowerState::Running, O::Running, PowerStep::Converged),
            (PowerState::Running, O::Deallocated, PowerStep::Start),
            (PowerState::Running, O::Stopped, PowerStep::Start),
            (PowerState::Stopped, O::Running, PowerStep::PowerOff),
            (PowerState::Stopped, O::Deallocated, PowerStep::Start),
            (PowerState::Deallocated, O::Stopped, PowerStep::Deallocate),
            (PowerState::Deallocated, O::Starting, PowerStep::Wait),
        ] {
            assert_eq!(
                power_step(wanted, observed),
                step,
                "{wanted:?} from {observed:?}"
            );
        }
        assert!(resize_needs_deallocation(
            Some("OperationNotAllowed"),
            "Unable to resize the VM 'x' because the requested size y is not available in the current hardware cluster. Deallocate the VM to resize to any size."
        ));
        assert!(!resize_needs_deallocation(
            Some("OperationNotAllowed"),
            "quota"
        ));
    }
}
