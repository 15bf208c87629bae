//! The `AzlinVM` kind: one Azure Linux VM.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::mount_path::mount_path_cel_rule;

use super::common::{
    DeletionPolicy, IMMUTABLE_RULE, LOCATION_MESSAGE, LOCATION_RULE, MOUNT_PATH_MESSAGE,
    PowerState, RESOURCE_GROUP_MESSAGE, RESOURCE_GROUP_RULE, SecretReference,
};

/// Desired state of one Azure Linux VM.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "azlin.io",
    version = "v1alpha1",
    kind = "AzlinVM",
    plural = "azlinvms",
    singular = "azlinvm",
    shortname = "avm",
    category = "azlin",
    namespaced,
    status = "AzlinVMStatus",
    derive = "PartialEq",
    doc = "An Azure Linux development VM managed by azlin-operator.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Power", type_ = "string", json_path = ".status.powerState"),
    printcolumn(name = "Size", type_ = "string", json_path = ".spec.size"),
    printcolumn(name = "IP", type_ = "string", json_path = ".status.privateIP"),
    printcolumn(name = "Public-IP", type_ = "string", json_path = ".status.publicIP", priority = "1"),
    printcolumn(name = "Location", type_ = "string", json_path = ".spec.location", priority = "1"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("metadata.name must be a DNS label of at most 63 lowercase letters, digits and '-' (it becomes the VM's host name)"),
)]
#[x_kube(
    validation = Rule::new("has(self.spot) == has(oldSelf.spot)").message("spec.spot cannot be added or removed after creation: Azure fixes a VM's priority when it is created; create a new AzlinVM instead"),
    validation = Rule::new("has(self.restoreFrom) == has(oldSelf.restoreFrom)").message("spec.restoreFrom can only be set when the AzlinVM is created"),
    validation = Rule::new("has(self.network) == has(oldSelf.network)").message("spec.network cannot be added or removed after creation: the VM's NIC stays in its subnet; create a new AzlinVM instead"),
    validation = Rule::new("has(self.sshKeySecretRef) == has(oldSelf.sshKeySecretRef)").message("spec.sshKeySecretRef cannot be added or removed after creation: the key is installed when the VM is created"),
    validation = Rule::new("has(self.zone) == has(oldSelf.zone)").message("spec.zone cannot be added or removed after creation"),
)]
#[serde(rename_all = "camelCase")]
pub struct AzlinVMSpec {
    /// Azure resource group of the VM; created when it does not exist. Immutable.
    #[x_kube(validation = Rule::new(RESOURCE_GROUP_RULE).message(RESOURCE_GROUP_MESSAGE))]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.resourceGroup is immutable: create a new AzlinVM to move a VM"))]
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,

    /// Azure region, e.g. `westus2`. Immutable.
    #[x_kube(validation = Rule::new(LOCATION_RULE).message(LOCATION_MESSAGE))]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.location is immutable: create a new AzlinVM in the other region"))]
    #[schemars(length(min = 2, max = 40))]
    pub location: String,

    /// Azure VM size, e.g. `Standard_E16as_v5`.
    #[serde(default = "default_size")]
    #[x_kube(validation = Rule::new("self.matches('^(Standard|Basic)_[A-Za-z0-9_]{1,40}$')").message("spec.size must be an Azure VM size such as Standard_D4s_v5 (see `az vm list-sizes --location <region>`)"))]
    #[schemars(length(min = 1, max = 64))]
    pub size: String,

    /// Marketplace image; defaults to Ubuntu 24.04 LTS (gen2). Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.image is immutable: the OS disk is created from it; create a new AzlinVM for another image"))]
    pub image: ImageReference,

    /// Admin user created by cloud-init, with SSH key login only. Immutable.
    #[serde(default = "default_admin_username")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z_][a-z0-9_-]{0,31}$')").message("spec.adminUsername must be 1-32 characters: a lowercase letter or '_' followed by lowercase letters, digits, '_' or '-'"))]
    #[x_kube(validation = Rule::new("!(self in ['root', 'admin', 'administrator', 'user', 'user1', 'user2', 'user3', 'user4', 'user5', 'test', 'test1', 'test2', 'test3', 'guest', 'owner', 'server', 'sql', 'support', 'sys', 'console', 'backup', 'adm', 'admin1', 'admin2', 'aspnet', 'actuser', 'a', 'david', 'john'])").message("spec.adminUsername is a name Azure reserves: choose another, e.g. azureuser"))]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.adminUsername is immutable: it is set when the VM is created"))]
    #[schemars(length(min = 1, max = 32))]
    pub admin_username: String,

    /// Secret of type `kubernetes.io/ssh-auth` (keys `ssh-privatekey`, `ssh-publickey`)
    /// holding the admin user's key pair. When absent the operator generates one into
    /// `<name>-ssh`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.sshKeySecretRef is immutable: the key is installed when the VM is created"))]
    pub ssh_key_secret_ref: Option<SecretReference>,

    /// Power state to keep the VM in.
    #[serde(default)]
    pub power_state: PowerState,

    /// Changing this timestamp restarts the VM once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_requested_at: Option<Time>,

    /// Run as an Azure Spot VM. Cannot be added or removed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<SpotSpec>,

    /// OS disk settings.
    #[serde(default)]
    pub os_disk: OsDiskSpec,

    /// Data disks, attached at their LUNs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, e.lun == d.lun))").message("spec.dataDisks[].lun must be unique: give each data disk its own LUN"))]
    #[x_kube(validation = Rule::new("self.all(d, !oldSelf.exists(o, o.lun == d.lun) || oldSelf.exists(o, o.lun == d.lun && o.sizeGiB <= d.sizeGiB))").message("spec.dataDisks[].sizeGiB can only grow: Azure cannot shrink a managed disk"))]
    #[schemars(length(max = 16))]
    pub data_disks: Vec<DataDiskSpec>,

    /// Availability zone (`1`, `2` or `3`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.zone is immutable: a VM cannot move between zones"))]
    pub zone: Option<Zone>,

    /// Give the VM a static Standard public IP.
    #[serde(default, rename = "publicIP")]
    pub public_ip: bool,

    /// Network placement. When absent the operator manages a virtual network
    /// `azlin-<location>-vnet` with subnet `default` in the resource group. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.network is immutable: create a new AzlinVM to move it to another subnet"))]
    pub network: Option<NetworkSpec>,

    /// Extra Azure tags. Keys starting with `azlin-operator` and the key `managed-by` are
    /// reserved for the operator, and keys starting with `microsoft`, `azure` or `windows`
    /// for Azure; Azure compares tag names without case, and so do these rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.matches('(?i)^(azlin-operator|managed-by$)'))").message("spec.tags: keys starting with 'azlin-operator' and the key 'managed-by' (in any case) are reserved for the operator; rename the tag"))]
    #[x_kube(validation = Rule::new("self.all(k, !k.matches('(?i)^(microsoft|azure|windows)'))").message("spec.tags: keys starting with 'microsoft', 'azure' or 'windows' (in any case) are reserved by Azure; rename the tag"))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 512 && !k.matches('[<>%&\\\\\\\\?/]') && size(self[k]) <= 256)").message("spec.tags: Azure tag names are at most 512 characters without < > % & \\ ? /, and values at most 256 characters"))]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,

    /// Extra cloud-init user data (a `#cloud-config` document or a `#!` script), run after
    /// the operator's own cloud-config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('#cloud-config') || self.startsWith('#!')").message("spec.cloudInit must start with '#cloud-config' or a '#!' interpreter line"))]
    #[schemars(length(max = 32768))]
    pub cloud_init: Option<String>,

    /// NFS mounts of SharedStorage objects in the same namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(m, !has(m.path) || self.exists_one(n, has(n.path) && n.path == m.path))").message("spec.mounts[].path must be unique: mount each share at its own path"))]
    #[schemars(length(max = 16))]
    pub mounts: Vec<MountSpec>,

    /// Create the OS and data disks from a Backup run's snapshots instead of the image (the
    /// run's data disks need their LUNs in `dataDisks`). Only at creation. The restored disk
    /// keeps its users and keys: use the backed-up VM's `sshKeySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.restoreFrom can only be set when the AzlinVM is created"))]
    pub restore_from: Option<RestoreFrom>,

    /// What happens to the Azure resources when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_size() -> String {
    "Standard_E16as_v5".to_string()
}

fn default_admin_username() -> String {
    "azureuser".to_string()
}

/// A marketplace image reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    /// Image publisher, e.g. `Canonical`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')").message("spec.image.publisher must be a marketplace publisher name such as Canonical"))]
    #[schemars(length(min = 1, max = 64))]
    pub publisher: String,
    /// Image offer, e.g. `ubuntu-24_04-lts`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')").message("spec.image.offer must be a marketplace offer name such as ubuntu-24_04-lts"))]
    #[schemars(length(min = 1, max = 64))]
    pub offer: String,
    /// Image SKU, e.g. `server`.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')").message("spec.image.sku must be a marketplace SKU such as server"))]
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
    /// Image version: `latest` or a version such as `24.04.202411030`.
    #[serde(default = "default_image_version")]
    #[x_kube(validation = Rule::new("self == 'latest' || self.matches('^[0-9]+\\\\.[0-9]+\\\\.[0-9]+$')").message("spec.image.version must be 'latest' or major.minor.patch"))]
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
}

fn default_image_version() -> String {
    "latest".to_string()
}

impl Default for ImageReference {
    fn default() -> Self {
        Self {
            publisher: "Canonical".to_string(),
            offer: "ubuntu-24_04-lts".to_string(),
            sku: "server".to_string(),
            version: default_image_version(),
        }
    }
}

/// Spot VM settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpotSpec {
    /// Highest price per hour in USD; `-1` (default) means up to the on-demand price, so
    /// the VM is never evicted for price.
    #[serde(default = "default_max_price")]
    #[x_kube(validation = Rule::new("double(self) == -1.0 || double(self) > 0.0").message("spec.spot.maxPrice must be -1 (pay up to the on-demand price) or a positive USD price per hour"))]
    pub max_price: f64,
    /// What Azure does to an evicted VM.
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
}

fn default_max_price() -> f64 {
    -1.0
}

/// What Azure does to an evicted Spot VM.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EvictionPolicy {
    /// Deallocate the VM; the operator starts it again when `powerState` is Running.
    #[default]
    Deallocate,
    /// Delete the VM; the operator recreates it.
    Delete,
}

/// Azure managed disk storage type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DiskType {
    /// Standard HDD.
    #[serde(rename = "Standard_LRS")]
    StandardLrs,
    /// Standard SSD.
    #[serde(rename = "StandardSSD_LRS")]
    StandardSsdLrs,
    /// Zone-redundant standard SSD.
    #[serde(rename = "StandardSSD_ZRS")]
    StandardSsdZrs,
    /// Premium SSD.
    #[default]
    #[serde(rename = "Premium_LRS")]
    PremiumLrs,
    /// Zone-redundant premium SSD.
    #[serde(rename = "Premium_ZRS")]
    PremiumZrs,
}

impl DiskType {
    /// The Azure `storageAccountType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardLrs => "Standard_LRS",
            Self::StandardSsdLrs => "StandardSSD_LRS",
            Self::StandardSsdZrs => "StandardSSD_ZRS",
            Self::PremiumLrs => "Premium_LRS",
            Self::PremiumZrs => "Premium_ZRS",
        }
    }
}

/// OS disk settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.sizeGiB) || (has(self.sizeGiB) && self.sizeGiB >= oldSelf.sizeGiB)").message("spec.osDisk.sizeGiB can only grow: Azure cannot shrink a managed disk"))]
pub struct OsDiskSpec {
    /// Size in GiB; defaults to the image's size (30 GiB for Ubuntu).
    #[serde(default, rename = "sizeGiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 4095))]
    pub size_gib: Option<i32>,
    /// Storage type.
    #[serde(default, rename = "type")]
    pub disk_type: DiskType,
}

/// A data disk.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataDiskSpec {
    /// Logical unit number, unique per VM.
    #[schemars(range(min = 0, max = 63))]
    pub lun: i32,
    /// Size in GiB; can only grow.
    #[serde(rename = "sizeGiB")]
    #[schemars(range(min = 4, max = 32767))]
    pub size_gib: i32,
    /// Storage type.
    #[serde(default, rename = "type")]
    pub disk_type: DiskType,
}

/// Availability zone.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Zone {
    /// Zone 1.
    #[serde(rename = "1")]
    One,
    /// Zone 2.
    #[serde(rename = "2")]
    Two,
    /// Zone 3.
    #[serde(rename = "3")]
    Three,
}

impl Zone {
    /// The zone number as Azure writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "1",
            Self::Two => "2",
            Self::Three => "3",
        }
    }
}

/// Network placement of a VM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Resource id of an existing subnet to put the VM's NIC in.
    #[x_kube(validation = Rule::new("self.matches('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$')").message("spec.network.subnetId must be a subnet resource id: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"))]
    #[schemars(length(min = 1, max = 512))]
    pub subnet_id: String,
}

/// An NFS mount of a SharedStorage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MountSpec {
    /// Name of a SharedStorage in the same namespace.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("spec.mounts[].storageRef must be the name of a SharedStorage in this namespace"))]
    #[schemars(length(min = 1, max = 63))]
    pub storage_ref: String,
    /// Absolute mount path on the VM; defaults to the storage template's path, or
    /// `/mnt/<storageRef>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 255))]
    #[x_kube(validation = Rule::new(mount_path_cel_rule()).message(MOUNT_PATH_MESSAGE))]
    pub path: Option<String>,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Which backup run the VM's disks are made from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFrom {
    /// Name of a Backup in the same namespace.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("spec.restoreFrom.backupRef must be the name of a Backup in this namespace"))]
    #[schemars(length(min = 1, max = 63))]
    pub backup_ref: String,
    /// A snapshot name from the Backup's `status.runs[].snapshots[]`: the OS disk and the data
    /// disks of that snapshot's VM in that run are restored. When absent, the newest good
    /// run of a Backup of one VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 80))]
    pub snapshot: Option<String>,
}

/// Lifecycle phase of an AzlinVM.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VmPhase {
    /// Accepted, nothing created yet.
    #[default]
    Pending,
    /// Azure resources are being created.
    Provisioning,
    /// Running as requested.
    Running,
    /// Stopped (allocated) as requested.
    Stopped,
    /// Deallocated as requested.
    Deallocated,
    /// Changing power state, size, disks or mounts.
    Updating,
    /// Being deleted.
    Deleting,
    /// Cannot make progress; see the Stalled condition.
    Failed,
}

/// State of one NFS mount on the VM.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MountState {
    /// Waiting for the VM or the storage.
    Pending,
    /// Mounted and persisted in /etc/fstab.
    Mounted,
    /// The last attempt failed; see `message`.
    Failed,
}

/// Observed state of one mount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MountStatus {
    /// SharedStorage name.
    pub storage_ref: String,
    /// Mount path on the VM.
    pub path: String,
    /// Current state.
    pub state: MountState,
    /// Last error or detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Observed state of an AzlinVM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzlinVMStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VmPhase>,
    /// Ready, Reconciling, Stalled and Mounted conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Azure's unique VM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// ARM resource id of the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Observed power state, spelled like `spec.powerState`: `Running`, `Stopped`,
    /// `Deallocated`, or in transition `Starting`, `Stopping`, `Deallocating`; `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<String>,
    /// Private IP address of the primary NIC.
    #[serde(default, rename = "privateIP", skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// Public IP address, when `spec.publicIP` is true.
    #[serde(default, rename = "publicIP", skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// Current size as Azure reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// SSH host key fingerprint pinned on first contact (`SHA256:...`), as reported. The pin
    /// itself is kept in the key Secret (annotation `host-key.azlin.io/<name>`), so editing
    /// this field changes nothing; to accept a new host key, set the AzlinVM annotation
    /// `azlin.io/repin-host-key` to a new value (e.g. the current time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// Name of the Secret holding the admin SSH key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret: Option<String>,
    /// The `spec.restartRequestedAt` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_requested_at: Option<Time>,
    /// Hash of the Fleet environment file last written to the VM
    /// (`/etc/profile.d/azlin-fleet.sh`); absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_env_hash: Option<String>,
    /// Per-mount state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountStatus>,
    /// The Azure identity and subscription the object's Azure resources were created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<crate::api::common::AzureIdentity>,
}
