//! `Microsoft.Compute/virtualMachines`: validation, quota, power actions and the instance view.

use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::catalog;
use super::disks::{STORAGE_TYPES, attach_disk, check_attachable, new_disk};
use super::error::ArmError;
use super::kinds::{Hooks, Kind, Provisioning, PutCtx, Settings, VM_API};
use super::network;
use super::state::{Entry, OpKind, Store, props_mut};
use super::validation::{
    self as v, opt_array, opt_bool, opt_enum, opt_int, opt_str, req_str, same,
};

/// Virtual machines.
pub static VIRTUAL_MACHINE: Kind = Kind {
    type_name: "Microsoft.Compute/virtualMachines",
    api_versions: VM_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &["start", "powerOff", "deallocate", "restart"],
    views: &["instanceView"],
    put_accepted: false,
    sync_delete: false,
    hooks: &VmHooks,
};

/// A VM power state as shown in `instanceView.statuses` (`PowerState/<state>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Booting.
    Starting,
    /// Running.
    Running,
    /// Shutting down (still allocated).
    Stopping,
    /// Stopped but allocated (still billed).
    Stopped,
    /// Releasing its hardware.
    Deallocating,
    /// Deallocated.
    Deallocated,
}

impl PowerState {
    /// The lower-case code suffix.
    pub fn code(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Deallocating => "deallocating",
            Self::Deallocated => "deallocated",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Starting,
            Self::Running,
            Self::Stopping,
            Self::Stopped,
            Self::Deallocating,
            Self::Deallocated,
        ]
        .into_iter()
        .find(|p| p.code() == s)
    }
}

const RESERVED_USERS: &[&str] = &[
    "administrator",
    "admin",
    "user",
    "user1",
    "test",
    "user2",
    "test1",
    "user3",
    "admin1",
    "1",
    "123",
    "a",
    "actuser",
    "adm",
    "admin2",
    "aspnet",
    "backup",
    "console",
    "david",
    "guest",
    "john",
    "owner",
    "root",
    "server",
    "sql",
    "support",
    "support_388945a0",
    "sys",
    "test2",
    "test3",
    "user4",
    "user5",
];

/// The stored power state of a VM.
pub fn power(entry: &Entry) -> Option<PowerState> {
    entry.meta_str("power").and_then(PowerState::parse)
}

/// Meta key: the power state before the action in flight.
const POWER_BEFORE: &str = "powerBefore";

fn set_power(entry: &mut Entry, state: PowerState) {
    entry.meta.insert("power".into(), Value::from(state.code()));
}

fn hex32() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn rg_prefix(id: &str) -> String {
    id.split("/providers/").next().unwrap_or(id).to_string()
}

/// Where the disks a VM creates implicitly (OS disk from image, empty data disks) are put.
struct DiskHome<'a> {
    rg: &'a str,
    location: &'a str,
    vm_id: &'a str,
    zones: Option<&'a Value>,
}

impl DiskHome<'_> {
    /// Creates the managed disk that the VM's OS or data disk entry `disk` describes, managed by
    /// the VM: named `disk.name` (else `default_name()`), SKU `managedDisk.storageAccountType`
    /// (else `Premium_LRS`), `diskSizeGB` (else `default_size`), with `props`. Records the name
    /// and `managedDisk` (id and SKU) in `disk` and returns the size.
    fn create_disk(
        &self,
        store: &mut Store,
        disk: &mut Value,
        default_name: impl FnOnce() -> String,
        default_size: i64,
        props: Value,
    ) -> i64 {
        let name = disk
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(default_name);
        let id = format!("{}/providers/Microsoft.Compute/disks/{name}", self.rg);
        let sku = disk
            .pointer("/managedDisk/storageAccountType")
            .and_then(Value::as_str)
            .unwrap_or("Premium_LRS")
            .to_string();
        let size = disk
            .get("diskSizeGB")
            .and_then(Value::as_i64)
            .unwrap_or(default_size);
        store.put(new_disk(
            &id,
            self.location,
            &sku,
            size,
            props,
            Some(self.vm_id),
            self.zones,
        ));
        disk["name"] = Value::from(name);
        disk["managedDisk"] = json!({ "id": id, "storageAccountType": sku });
        size
    }
}

fn size_of(entry: &Entry) -> Option<&'static catalog::VmSize> {
    entry
        .str_at("/properties/hardwareProfile/vmSize")
        .and_then(catalog::vm_size)
}

/// vCPUs used by VMs of a subscription in a region (all VMs count, as Azure's quota does).
fn cores_in_use(store: &Store, sub: &str, location: &str, except: &str) -> u32 {
    let prefix = format!("/subscriptions/{sub}/");
    store
        .of_kind(VIRTUAL_MACHINE.type_name)
        .filter(|vm| {
            vm.id
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
        })
        .filter(|vm| vm.str_at("/location") == Some(location) && !same(&vm.id, except))
        .filter_map(size_of)
        .map(|s| s.cores)
        .sum()
}

/// Ids of managed disks referenced by a VM body (OS disk first).
fn vm_disks(body: &Value) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    if let Some(id) = body
        .pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
    {
        let opt = body
            .pointer("/properties/storageProfile/osDisk/deleteOption")
            .and_then(Value::as_str);
        out.push((id.to_string(), opt.map(str::to_string)));
    }
    for d in body
        .pointer("/properties/storageProfile/dataDisks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = d.pointer("/managedDisk/id").and_then(Value::as_str) {
            let opt = d.get("deleteOption").and_then(Value::as_str);
            out.push((id.to_string(), opt.map(str::to_string)));
        }
    }
    out
}

fn vm_nics(body: &Value) -> Vec<(String, Option<String>)> {
    body.pointer("/properties/networkProfile/networkInterfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let id = n.get("id").and_then(Value::as_str)?;
            let opt = n
                .pointer("/properties/deleteOption")
                .and_then(Value::as_str);
            Some((id.to_string(), opt.map(str::to_string)))
        })
        .collect()
}

fn property_change(target: &str) -> ArmError {
    ArmError::conflict(
        "PropertyChangeNotAllowed",
        format!("Changing property '{target}' is not allowed."),
    )
    .with_target(target)
}

/// Validates the OS profile of a new VM.
fn check_os_profile(body: &Value, name: &str, creating: bool) -> Result<(), ArmError> {
    let user = req_str(
        body,
        "/properties/osProfile/adminUsername",
        "osProfile.adminUsername",
    )?;
    let user_ok = (1..=64).contains(&user.len())
        && !RESERVED_USERS.iter().any(|r| same(r, user))
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !user.starts_with('-');
    if !user_ok {
        return Err(ArmError::invalid(
            "adminUsername",
            format!(
                "The Admin Username specified is not allowed: '{user}'. Reserved names and special characters are not allowed."
            ),
        ));
    }
    let computer = opt_str(body, "/properties/osProfile/computerName").unwrap_or(name);
    v::check_computer_name(computer, "osProfile.computerName")?;
    if let Some(data) = opt_str(body, "/properties/osProfile/customData")
        && (data.len() > 87_380
            || base64::engine::general_purpose::STANDARD
                .decode(data)
                .is_err())
    {
        return Err(ArmError::invalid(
            "customData",
            "Custom data in OSProfile must be in Base64 encoding and with a maximum length of 87380 characters.",
        ));
    }
    let no_password = opt_bool(
        body,
        "/properties/osProfile/linuxConfiguration/disablePasswordAuthentication",
        "linuxConfiguration.disablePasswordAuthentication",
    )?
    .unwrap_or(false);
    let keys = opt_array(
        body,
        "/properties/osProfile/linuxConfiguration/ssh/publicKeys",
        "linuxConfiguration.ssh.publicKeys",
    )?;
    if no_password && keys.is_empty() {
        return Err(ArmError::invalid(
            "linuxConfiguration",
            "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
        ));
    }
    if creating && !no_password && opt_str(body, "/properties/osProfile/adminPassword").is_none() {
        return Err(ArmError::required("adminPassword"));
    }
    let expected = format!("/home/{user}/.ssh/authorized_keys");
    for key in keys {
        let path = req_str(key, "/path", "linuxConfiguration.ssh.publicKeys.path")?;
        if path != expected {
            return Err(ArmError::invalid(
                "linuxConfiguration.ssh.publicKeys.path",
                format!(
                    "Destination path for SSH public keys is currently limited to its default value {expected} due to a known issue in Linux provisioning agent."
                ),
            ));
        }
        let data = req_str(key, "/keyData", "linuxConfiguration.ssh.publicKeys.keyData")?;
        if !valid_ssh_public_key(data) {
            return Err(ArmError::invalid(
                "linuxConfiguration.ssh.publicKeys.keyData",
                "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
            ));
        }
    }
    Ok(())
}

/// Reads an SSH wire-format string (u32 big-endian length + bytes) from `blob` at `pos`.
fn ssh_string<'b>(blob: &'b [u8], pos: &mut usize) -> Option<&'b [u8]> {
    let len_bytes: [u8; 4] = blob.get(*pos..*pos + 4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let start = *pos + 4;
    let out = blob.get(start..start.checked_add(len)?)?;
    *pos = start + len;
    Some(out)
}

/// Whether `blob` is a well-formed `ssh-rsa` (modulus ≥ 2048 bits) or `ssh-ed25519` public key
/// of type `expected`, with nothing trailing.
fn valid_key_blob(blob: &[u8], expected: &str) -> bool {
    let mut pos = 0;
    if ssh_string(blob, &mut pos) != Some(expected.as_bytes()) {
        return false;
    }
    let parsed = match expected {
        "ssh-ed25519" => ssh_string(blob, &mut pos).is_some_and(|k| k.len() == 32),
        "ssh-rsa" => {
            let exponent = ssh_string(blob, &mut pos);
            let modulus = ssh_string(blob, &mut pos);
            match (exponent, modulus) {
                (Some(e), Some(n)) if !e.is_empty() => {
                    let n = match n.iter().position(|b| *b != 0) {
                        Some(first) => &n[first..],
                        None => &[][..],
                    };
                    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                    bits >= 2048
                }
                _ => false,
            }
        }
        _ => false,
    };
    parsed && pos == blob.len()
}

/// Whether `data` is an SSH public key Azure accepts: OpenSSH `ssh-rsa`/`ssh-ed25519 <base64>
/// [comment]` or the RFC 4716 (`---- BEGIN SSH2 PUBLIC KEY ----`) form, with a well-formed
/// key blob (RSA at least 2048 bits). Azure does not accept ECDSA keys.
pub fn valid_ssh_public_key(data: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = data.trim();
    if let Some(rest) = data.strip_prefix("---- BEGIN SSH2 PUBLIC KEY ----") {
        let Some(body) = rest.trim().strip_suffix("---- END SSH2 PUBLIC KEY ----") else {
            return false;
        };
        let mut encoded = String::new();
        let mut continued = false;
        for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // Header lines ("Comment: ...") may continue with a trailing backslash.
            if continued || line.contains(':') {
                continued = line.ends_with('\\');
                continue;
            }
            encoded.push_str(line);
        }
        let Ok(blob) = b64.decode(encoded) else {
            return false;
        };
        return ["ssh-rsa", "ssh-ed25519"]
            .iter()
            .any(|t| valid_key_blob(&blob, t));
    }
    let mut parts = data.split_whitespace();
    let (Some(kind), Some(encoded)) = (parts.next(), parts.next()) else {
        return false;
    };
    if kind != "ssh-rsa" && kind != "ssh-ed25519" {
        return false;
    }
    b64.decode(encoded)
        .is_ok_and(|blob| valid_key_blob(&blob, kind))
}

/// Spot / priority rules.
fn check_priority(
    body: &Value,
    size: &catalog::VmSize,
    existing: Option<&Entry>,
) -> Result<(), ArmError> {
    let priority = opt_enum(
        body,
        "/properties/priority",
        "priority",
        &["Regular", "Low", "Spot"],
    )?
    .unwrap_or("Regular");
    let eviction = opt_enum(
        body,
        "/properties/evictionPolicy",
        "evictionPolicy",
        &["Deallocate", "Delete"],
    )?;
    let spot = priority != "Regular";
    if eviction.is_some() && !spot {
        return Err(ArmError::invalid(
            "evictionPolicy",
            "Eviction policy can be set only on Azure Spot Virtual Machines.",
        ));
    }
    match body.pointer("/properties/billingProfile/maxPrice") {
        None | Some(Value::Null) => {}
        Some(price) => {
            if !spot {
                return Err(ArmError::invalid(
                    "billingProfile",
                    "Max price can be set only on Azure Spot Virtual Machines.",
                ));
            }
            let p = price.as_f64().unwrap_or(-2.0);
            if p != -1.0 && p <= 0.0 {
                return Err(ArmError::invalid(
                    "billingProfile.maxPrice",
                    format!(
                        "The value {price} of maxPrice is invalid: use -1 (up to the on-demand price) or a price greater than 0."
                    ),
                ));
            }
        }
    }
    if spot && !size.spot {
        return Err(ArmError::conflict(
            "SkuNotAvailable",
            format!(
                "The requested VM size '{}' is not available for Azure Spot Virtual Machines.",
                size.name
            ),
        )
        .with_target("vmSize"));
    }
    if let Some(old) = existing {
        let old_priority = old.str_at("/properties/priority").unwrap_or("Regular");
        if !same(old_priority, priority) {
            return Err(property_change("priority"));
        }
    }
    Ok(())
}

/// Resolves and checks the image reference; returns the exact version.
fn check_image(body: &Value) -> Result<(&'static catalog::Image, &'static str), ArmError> {
    let base = "/properties/storageProfile/imageReference";
    if body.pointer(base).is_none() {
        return Err(ArmError::required("storageProfile.imageReference"));
    }
    let publisher = req_str(
        body,
        &format!("{base}/publisher"),
        "imageReference.publisher",
    )?;
    let offer = req_str(body, &format!("{base}/offer"), "imageReference.offer")?;
    let sku = req_str(body, &format!("{base}/sku"), "imageReference.sku")?;
    let version = opt_str(body, &format!("{base}/version")).unwrap_or("latest");
    catalog::image(publisher, offer, sku, version).ok_or_else(|| {
        ArmError::not_found(
            "PlatformImageNotFound",
            format!(
                "The platform image '{publisher}:{offer}:{sku}:{version}' is not available. Verify that all fields in the storage profile are correct. For more details about storage profile information, please refer to https://aka.ms/storageprofile"
            ),
        )
        .with_target("imageReference")
    })
}

/// Virtual machines.
pub struct VmHooks;

impl VmHooks {
    fn validate(&self, ctx: &PutCtx<'_>) -> Result<&'static catalog::VmSize, ArmError> {
        let body = &ctx.body;
        v::check_vm_name(ctx.name, "name")?;
        let size_name = req_str(
            body,
            "/properties/hardwareProfile/vmSize",
            "hardwareProfile.vmSize",
        )?;
        let size = catalog::vm_size(size_name).ok_or_else(|| {
            ArmError::invalid(
                "vmSize",
                format!(
                    "The value {size_name} provided for the VM size is not valid. The valid sizes in the current region are: {}.",
                    catalog::VM_SIZES.iter().map(|s| s.name).collect::<Vec<_>>().join(",")
                ),
            )
        })?;
        for z in opt_array(body, "/zones", "zones")? {
            if !matches!(z.as_str(), Some("1" | "2" | "3")) {
                return Err(ArmError::invalid(
                    "zones",
                    format!(
                        "The zone(s) '{z}' for resource is not supported. The supported zones for location are '1,2,3'."
                    ),
                ));
            }
        }
        check_priority(body, size, ctx.existing.as_ref())?;
        let creating = ctx.existing.is_none();
        let create_option = v::req_enum(
            body,
            "/properties/storageProfile/osDisk/createOption",
            "osDisk.createOption",
            &["FromImage", "Attach", "Empty"],
        )?;
        opt_enum(
            body,
            "/properties/storageProfile/osDisk/managedDisk/storageAccountType",
            "osDisk.managedDisk.storageAccountType",
            STORAGE_TYPES,
        )?;
        opt_enum(
            body,
            "/properties/storageProfile/osDisk/deleteOption",
            "osDisk.deleteOption",
            &["Delete", "Detach"],
        )?;
        match create_option {
            "FromImage" => {
                if creating {
                    check_image(body)?;
                } else if let Some(old) = &ctx.existing {
                    for f in ["publisher", "offer", "sku"] {
                        let p = format!("/properties/storageProfile/imageReference/{f}");
                        if let (Some(new), Some(was)) = (opt_str(body, &p), old.str_at(&p))
                            && !same(new, was)
                        {
                            return Err(property_change("imageReference"));
                        }
                    }
                }
                if creating || body.pointer("/properties/osProfile").is_some() {
                    check_os_profile(body, ctx.name, creating)?;
                }
                if let Some(size) = opt_int(
                    body,
                    "/properties/storageProfile/osDisk/diskSizeGB",
                    "osDisk.diskSizeGB",
                )? && !(30..=4095).contains(&size)
                {
                    return Err(ArmError::invalid(
                        "osDisk.diskSizeGB",
                        "The OS disk size must be between 30 and 4095 GB.",
                    ));
                }
            }
            "Attach" => {
                let disk = req_str(
                    body,
                    "/properties/storageProfile/osDisk/managedDisk/id",
                    "osDisk.managedDisk.id",
                )?;
                if creating {
                    v::check_attached_os_disk(body)?;
                    check_attachable(ctx.store, disk, ctx.id, "osDisk.managedDisk.id")?;
                }
            }
            _ => {
                return Err(ArmError::invalid(
                    "osDisk.createOption",
                    "OS disk createOption 'Empty' is not supported for virtual machines.",
                ));
            }
        }
        let mut luns = Vec::new();
        for (i, disk) in opt_array(
            body,
            "/properties/storageProfile/dataDisks",
            "storageProfile.dataDisks",
        )?
        .iter()
        .enumerate()
        {
            let lun = opt_int(disk, "/lun", "dataDisks.lun")?
                .ok_or_else(|| ArmError::required(&format!("dataDisks[{i}].lun")))?;
            if !(0..=63).contains(&lun) || luns.contains(&lun) {
                return Err(ArmError::invalid(
                    "dataDisks.lun",
                    format!("LUN {lun} is invalid or used by more than one data disk."),
                ));
            }
            luns.push(lun);
            let option = v::req_enum(
                disk,
                "/createOption",
                "dataDisks.createOption",
                &["Empty", "Attach", "FromImage"],
            )?;
            opt_enum(
                disk,
                "/deleteOption",
                "dataDisks.deleteOption",
                &["Delete", "Detach"],
            )?;
            opt_enum(
                disk,
                "/managedDisk/storageAccountType",
                "dataDisks.managedDisk.storageAccountType",
                STORAGE_TYPES,
            )?;
            match option {
                "Empty" if disk.pointer("/managedDisk/id").is_none() => {
                    let size = opt_int(disk, "/diskSizeGB", "dataDisks.diskSizeGB")?
                        .ok_or_else(|| ArmError::required("dataDisks.diskSizeGB"))?;
                    if !(1..=32_767).contains(&size) {
                        return Err(ArmError::invalid(
                            "dataDisks.diskSizeGB",
                            "Data disk size must be between 1 and 32767 GB.",
                        ));
                    }
                }
                "Attach" => {
                    let id = req_str(disk, "/managedDisk/id", "dataDisks.managedDisk.id")?;
                    check_attachable(ctx.store, id, ctx.id, "dataDisks.managedDisk.id")?;
                }
                _ => {}
            }
        }
        let nics = v::req_nonempty_array(
            body,
            "/properties/networkProfile/networkInterfaces",
            "networkProfile.networkInterfaces",
        )?;
        let primaries = nics
            .iter()
            .filter(|n| n.pointer("/properties/primary").and_then(Value::as_bool) == Some(true))
            .count();
        if nics.len() > 1 && primaries != 1 {
            return Err(ArmError::invalid(
                "networkProfile.networkInterfaces",
                "Exactly one network interface must be marked primary.",
            ));
        }
        let location = ctx.location();
        for n in nics {
            let nic_id = req_str(n, "/id", "networkProfile.networkInterfaces.id")?;
            opt_enum(
                n,
                "/properties/deleteOption",
                "networkInterfaces.deleteOption",
                &["Delete", "Detach"],
            )?;
            let nic = ctx
                .store
                .get(nic_id)
                .filter(|e| same(&e.kind, network::NIC.type_name))
                .ok_or_else(|| {
                    network::bad_reference(nic_id, ctx.id, "networkProfile.networkInterfaces.id")
                })?;
            if let Some(owner) = nic.str_at("/properties/virtualMachine/id")
                && !same(owner, ctx.id)
            {
                return Err(ArmError::bad_request(
                    "NicInUse",
                    format!("Network Interface {nic_id} is used by existing resource {owner}."),
                )
                .with_target("networkProfile.networkInterfaces.id"));
            }
            if nic.str_at("/location") != Some(location.as_str()) {
                return Err(ArmError::invalid(
                    "networkProfile.networkInterfaces.id",
                    format!(
                        "The network interface {nic_id} must be in the same location '{location}' as the virtual machine."
                    ),
                ));
            }
        }
        // Quota and resize rules.
        let sub = ctx.id.split('/').nth(2).unwrap_or_default();
        let used = cores_in_use(ctx.store, sub, &location, ctx.id);
        if used + size.cores > ctx.settings.core_quota {
            return Err(ArmError::conflict(
                "OperationNotAllowed",
                format!(
                    "Operation could not be completed as it results in exceeding approved Total Regional Cores quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: {}, Current Usage: {used}, Additional Required: {}, (Minimum) New Limit Required: {}.",
                    ctx.settings.core_quota,
                    size.cores,
                    used + size.cores
                ),
            ));
        }
        if let Some(old) = &ctx.existing
            && let Some(old_size) = size_of(old)
            && old_size.name != size.name
            && old_size.family != size.family
            && power(old) != Some(PowerState::Deallocated)
        {
            return Err(ArmError::conflict(
                "OperationNotAllowed",
                format!(
                    "Unable to resize the VM '{}' because the requested size {} is not available in the current hardware cluster. The available sizes in this cluster are: {}. Deallocate the VM to resize to any size. Read more on VM resizing strategy at https://aka.ms/azure-resizevm.",
                    ctx.name,
                    size.name,
                    catalog::VM_SIZES
                        .iter()
                        .filter(|s| s.family == old_size.family)
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        }
        Ok(size)
    }

    fn apply(&self, ctx: &mut PutCtx<'_>) {
        let location = ctx.location();
        let vm_id = ctx.id.to_string();
        let rg = rg_prefix(&vm_id);
        let zones = ctx.body.get("zones").cloned();
        let home = DiskHome {
            rg: &rg,
            location: &location,
            vm_id: &vm_id,
            zones: zones.as_ref(),
        };
        let previous_disks: Vec<String> = ctx
            .existing
            .as_ref()
            .map(|e| vm_disks(&e.body))
            .unwrap_or_default()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let previous_nics: Vec<String> = ctx
            .existing
            .as_ref()
            .map(|e| vm_nics(&e.body))
            .unwrap_or_default()
            .into_iter()
            .map(|(id, _)| id)
            .collect();

        // OS disk.
        if let Some(old_os) = ctx
            .existing
            .as_ref()
            .and_then(|e| e.body.pointer("/properties/storageProfile/osDisk").cloned())
        {
            let mut os = old_os;
            if let Some(opt) = ctx
                .body
                .pointer("/properties/storageProfile/osDisk/deleteOption")
                .cloned()
            {
                os["deleteOption"] = opt;
            }
            ctx.body["properties"]["storageProfile"]["osDisk"] = os;
            if let Some(image) = ctx.existing.as_ref().and_then(|e| {
                e.body
                    .pointer("/properties/storageProfile/imageReference")
                    .cloned()
            }) {
                ctx.body["properties"]["storageProfile"]["imageReference"] = image;
            }
        } else {
            let os = ctx.body["properties"]["storageProfile"]["osDisk"].clone();
            let mut os = if os.is_object() { os } else { json!({}) };
            match os.pointer("/managedDisk/id").and_then(Value::as_str) {
                Some(id) if same(os["createOption"].as_str().unwrap_or_default(), "Attach") => {
                    let id = id.to_string();
                    attach_disk(ctx.store, &id, Some(&vm_id));
                }
                _ => {
                    let image = ctx
                        .body
                        .pointer("/properties/storageProfile/imageReference")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let props = json!({
                        "osType": "Linux",
                        "hyperVGeneration": "V2",
                        "creationData": { "createOption": "FromImage", "imageReference": image },
                    });
                    let vm_name = ctx.name;
                    let size = home.create_disk(
                        ctx.store,
                        &mut os,
                        || format!("{vm_name}_OsDisk_1_{}", hex32()),
                        30,
                        props,
                    );
                    os["diskSizeGB"] = Value::from(size);
                }
            }
            os["osType"] = Value::from("Linux");
            if os.get("caching").is_none() {
                os["caching"] = Value::from("ReadWrite");
            }
            if os.get("deleteOption").is_none() {
                os["deleteOption"] = Value::from("Detach");
            }
            ctx.body["properties"]["storageProfile"]["osDisk"] = os;
            if let Some(version) = check_image(&ctx.body).ok().map(|(_, v)| v) {
                ctx.body["properties"]["storageProfile"]["imageReference"]["exactVersion"] =
                    Value::from(version);
            }
        }
        // Data disks.
        let mut data = ctx
            .body
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for disk in &mut data {
            let existing_id = disk
                .pointer("/managedDisk/id")
                .and_then(Value::as_str)
                .map(str::to_string);
            match existing_id {
                Some(id) => attach_disk(ctx.store, &id, Some(&vm_id)),
                None => {
                    let lun = disk.get("lun").and_then(Value::as_i64).unwrap_or(0);
                    let vm_name = ctx.name;
                    home.create_disk(
                        ctx.store,
                        disk,
                        || format!("{vm_name}_DataDisk_{lun}"),
                        32,
                        json!({ "creationData": { "createOption": "Empty" } }),
                    );
                }
            }
            if disk.get("deleteOption").is_none() {
                disk["deleteOption"] = Value::from("Detach");
            }
        }
        if !data.is_empty()
            || ctx
                .body
                .pointer("/properties/storageProfile/dataDisks")
                .is_some()
        {
            ctx.body["properties"]["storageProfile"]["dataDisks"] = Value::from(data);
        }
        let now_disks: Vec<String> = vm_disks(&ctx.body).into_iter().map(|(id, _)| id).collect();
        for old in previous_disks {
            if !now_disks.iter().any(|d| same(d, &old)) {
                attach_disk(ctx.store, &old, None);
            }
        }
        // NICs.
        let now_nics: Vec<String> = vm_nics(&ctx.body).into_iter().map(|(id, _)| id).collect();
        for nic in &now_nics {
            if let Some(e) = ctx.store.get_mut(nic) {
                props_mut(&mut e.body).insert(
                    "virtualMachine".into(),
                    json!({ "id": super::path::compute_casing(&vm_id) }),
                );
            }
        }
        for old in previous_nics {
            if !now_nics.iter().any(|n| same(n, &old))
                && let Some(e) = ctx.store.get_mut(&old)
            {
                props_mut(&mut e.body).remove("virtualMachine");
            }
        }
        // Secrets are never returned; server-assigned fields survive updates.
        let previous = ctx.existing.as_ref().map(|e| e.body.clone());
        let props = props_mut(&mut ctx.body);
        if let Some(Value::Object(os)) = props.get_mut("osProfile") {
            os.remove("adminPassword");
            os.remove("customData");
            if !os.contains_key("computerName") {
                os.insert("computerName".into(), Value::from(ctx.name));
            }
        }
        let vm_id_value = previous
            .as_ref()
            .and_then(|p| p.pointer("/properties/vmId").cloned())
            .unwrap_or_else(|| Value::from(uuid::Uuid::new_v4().to_string()));
        props.insert("vmId".into(), vm_id_value);
        let created = previous
            .as_ref()
            .and_then(|p| p.pointer("/properties/timeCreated").cloned())
            .unwrap_or_else(|| Value::from(Utc::now().to_rfc3339()));
        props.insert("timeCreated".into(), created);
        if !props.contains_key("osProfile")
            && let Some(os) = previous
                .as_ref()
                .and_then(|p| p.pointer("/properties/osProfile").cloned())
        {
            props.insert("osProfile".into(), os);
        }
        if ctx.existing.is_none() {
            ctx.meta
                .insert("power".into(), Value::from(PowerState::Starting.code()));
        }
        // The model's etag: a counter bumped by every PUT/PATCH, as `"\"N\""`.
        let etag = ctx.meta.get("etag").and_then(Value::as_u64).unwrap_or(0) + 1;
        ctx.meta.insert("etag".into(), Value::from(etag));
    }
}

fn status(code: String, display: &str, time: Option<String>) -> Value {
    let mut s = json!({ "code": code, "level": "Info", "displayStatus": display });
    if let Some(t) = time {
        s["time"] = Value::from(t);
    }
    s
}

/// The instance view of a VM: provisioning and power statuses, disks, OS.
pub fn instance_view(store: &Store, entry: &Entry) -> Value {
    let provisioning = entry
        .str_at("/properties/provisioningState")
        .unwrap_or("Succeeded");
    let prov_display = match provisioning {
        "Succeeded" => "Provisioning succeeded".to_string(),
        other => other.to_string(),
    };
    let power = power(entry).unwrap_or(PowerState::Running);
    let power_display = format!("VM {}", power.code());
    let image = (|| {
        let base = "/properties/storageProfile/imageReference";
        catalog::image(
            entry.str_at(&format!("{base}/publisher"))?,
            entry.str_at(&format!("{base}/offer"))?,
            entry.str_at(&format!("{base}/sku"))?,
            "latest",
        )
    })();
    let disks: Vec<Value> = vm_disks(&entry.body)
        .into_iter()
        .filter_map(|(id, _)| store.get(&id))
        .map(|d| {
            json!({
                "name": d.str_at("/name").unwrap_or_default(),
                "statuses": [status("ProvisioningState/succeeded".into(), "Provisioning succeeded", None)],
            })
        })
        .collect();
    let failed = entry
        .meta
        .get("provisioningError")
        .filter(|_| provisioning == "Failed");
    let provisioning_status = match failed {
        // As Compute reports a failed provisioning: the error code in the status code.
        Some(e) => json!({
            "code": format!("ProvisioningState/failed/{}", e["code"].as_str().unwrap_or("Failed")),
            "level": "Error",
            "displayStatus": "Provisioning failed",
            "message": e["message"].clone(),
            "time": Utc::now().to_rfc3339(),
        }),
        None => status(
            format!("ProvisioningState/{}", provisioning.to_ascii_lowercase()),
            &prov_display,
            Some(Utc::now().to_rfc3339()),
        ),
    };
    let mut view = json!({
        "computerName": entry.str_at("/properties/osProfile/computerName").unwrap_or_else(|| entry.str_at("/name").unwrap_or_default()),
        "hyperVGeneration": "V2",
        "disks": disks,
        "statuses": [
            provisioning_status,
            status(format!("PowerState/{}", power.code()), &power_display, None),
        ],
    });
    if let Some((image, _)) = image {
        view["osName"] = Value::from(image.os_name);
        view["osVersion"] = Value::from(image.os_version);
    }
    if power == PowerState::Running {
        view["vmAgent"] = json!({
            "vmAgentVersion": "2.13.1.1",
            "statuses": [status("ProvisioningState/succeeded".into(), "Ready", Some(Utc::now().to_rfc3339()))],
        });
    }
    view
}

impl Hooks for VmHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        self.validate(ctx)?;
        self.apply(ctx);
        Ok(())
    }

    fn action(
        &self,
        store: &mut Store,
        _settings: &Settings,
        id: &str,
        name: &str,
    ) -> Result<(), ArmError> {
        let Some(entry) = store.get_mut(id) else {
            return Err(ArmError::not_found(
                "ResourceNotFound",
                format!("The Resource '{id}' was not found."),
            ));
        };
        let current = power(entry).unwrap_or(PowerState::Running);
        let vm = entry.str_at("/name").unwrap_or_default().to_string();
        let not_allowed = |why: &str| {
            Err(ArmError::conflict(
                "OperationNotAllowed",
                format!("Operation '{name}' is not allowed on VM '{vm}' since the VM is {why}."),
            ))
        };
        let next = match name {
            "start" => PowerState::Starting,
            "restart" => match current {
                PowerState::Deallocated => return not_allowed("deallocated"),
                PowerState::Stopped => return not_allowed("stopped"),
                _ => PowerState::Starting,
            },
            "powerOff" => match current {
                PowerState::Deallocated => return not_allowed("deallocated"),
                _ => PowerState::Stopping,
            },
            "deallocate" => PowerState::Deallocating,
            other => return Err(super::kinds::unknown_action(other)),
        };
        entry
            .meta
            .insert(POWER_BEFORE.into(), Value::from(current.code()));
        set_power(entry, next);
        entry.set_provisioning("Updating");
        Ok(())
    }

    /// A power action that failed leaves the VM in the power state it had, as in Azure
    /// (it does not stay `stopping` or `starting`).
    fn failed(&self, store: &mut Store, id: &str, op: &OpKind) {
        if let (OpKind::Action(_), Some(entry)) = (op, store.get_mut(id))
            && let Some(before) = entry.meta.remove(POWER_BEFORE)
        {
            entry.meta.insert("power".into(), before);
        }
    }

    fn complete(&self, store: &mut Store, _settings: &Settings, id: &str, op: &OpKind) {
        let Some(entry) = store.get_mut(id) else {
            return;
        };
        let current = power(entry);
        let next = match op {
            OpKind::Put { created: true } => Some(PowerState::Running),
            // A VM whose first provisioning failed (e.g. AllocationFailed) never started;
            // the PUT that finally provisions it starts it, as in Azure.
            OpKind::Put { created: false } if current == Some(PowerState::Starting) => {
                Some(PowerState::Running)
            }
            OpKind::Action(a) if a == "start" || a == "restart" => Some(PowerState::Running),
            OpKind::Action(a) if a == "powerOff" => Some(PowerState::Stopped),
            OpKind::Action(a) if a == "deallocate" => Some(PowerState::Deallocated),
            _ => None,
        };
        entry.meta.remove(POWER_BEFORE);
        if let Some(state) = next {
            set_power(entry, state);
        }
    }

    fn deleted(&self, store: &mut Store, entry: &Entry) {
        for (nic, option) in vm_nics(&entry.body) {
            if option.as_deref().is_some_and(|o| same(o, "Delete")) {
                network::delete_nic_with_vm(store, &nic);
            } else if let Some(e) = store.get_mut(&nic) {
                props_mut(&mut e.body).remove("virtualMachine");
            }
        }
        for (disk, option) in vm_disks(&entry.body) {
            if option.as_deref().is_some_and(|o| same(o, "Delete")) {
                store.remove(&disk);
            } else {
                attach_disk(store, &disk, None);
            }
        }
    }

    fn render(
        &self,
        store: &Store,
        _settings: &Settings,
        entry: &Entry,
        out: &mut Value,
        expand: bool,
    ) {
        if expand {
            props_mut(out).insert("instanceView".into(), instance_view(store, entry));
        }
        compute_ids(out);
        let etag = entry.meta.get("etag").and_then(Value::as_u64).unwrap_or(1);
        out["etag"] = Value::from(format!("\"{etag}\""));
    }

    fn view(
        &self,
        store: &Store,
        _settings: &Settings,
        entry: &Entry,
        _name: &str,
    ) -> Result<Value, ArmError> {
        Ok(instance_view(store, entry))
    }
}

/// Rewrites a VM body's own id and its disk references as Compute answers them (the
/// resource-group segment upper-cased).
fn compute_ids(out: &mut Value) {
    let recase = |v: &mut Value| {
        if let Some(id) = v.as_str() {
            *v = Value::from(super::path::compute_casing(id));
        }
    };
    if let Some(id) = out.get_mut("id") {
        recase(id);
    }
    if let Some(id) = out.pointer_mut("/properties/storageProfile/osDisk/managedDisk/id") {
        recase(id);
    }
    if let Some(disks) = out
        .pointer_mut("/properties/storageProfile/dataDisks")
        .and_then(Value::as_array_mut)
    {
        for d in disks {
            if let Some(id) = d.pointer_mut("/managedDisk/id") {
                recase(id);
            }
        }
    }
}

/// Spot eviction: per `evictionPolicy`, deallocate the VM or delete it (honouring delete options).
pub fn evict(store: &mut Store, id: &str) -> Result<(), ArmError> {
    let entry = store
        .get(id)
        .filter(|e| same(&e.kind, VIRTUAL_MACHINE.type_name))
        .ok_or_else(|| {
            ArmError::not_found(
                "ResourceNotFound",
                format!("Virtual machine '{id}' was not found."),
            )
        })?;
    let priority = entry.str_at("/properties/priority").unwrap_or("Regular");
    if same(priority, "Regular") {
        return Err(ArmError::conflict(
            "OperationNotAllowed",
            format!("Virtual machine '{id}' is not a Spot VM and cannot be evicted."),
        ));
    }
    let policy = entry
        .str_at("/properties/evictionPolicy")
        .unwrap_or("Deallocate")
        .to_string();
    super::lro::cancel(store, id);
    if same(&policy, "Delete") {
        super::lro::remove_tree(store, id);
    } else if let Some(entry) = store.get_mut(id) {
        set_power(entry, PowerState::Deallocated);
        entry.set_provisioning("Succeeded");
        entry.meta.insert("evicted".into(), Value::Bool(true));
    }
    Ok(())
}

/// Sets a VM's power state out of band (as if changed in the portal).
pub fn set_power_out_of_band(
    store: &mut Store,
    id: &str,
    state: PowerState,
) -> Result<(), ArmError> {
    if store
        .get(id)
        .filter(|e| same(&e.kind, VIRTUAL_MACHINE.type_name))
        .is_none()
    {
        return Err(ArmError::not_found(
            "ResourceNotFound",
            format!("Virtual machine '{id}' was not found."),
        ));
    }
    super::lro::cancel(store, id);
    if let Some(entry) = store.get_mut(id) {
        set_power(entry, state);
        entry.set_provisioning("Succeeded");
    }
    Ok(())
}
