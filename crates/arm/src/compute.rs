//! `Microsoft.Compute`: virtual machines (api-version 2024-11-01) with power actions and
//! instance view; managed disks and snapshots (api-version 2024-03-02), including incremental
//! snapshots and cross-region `CopyStart` copies.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::{ArmClient, decode};
use super::collection::ResourceOps;
use super::error::{ArmError, ErrorDetail, FailedStatus};
use super::lro::{OperationState, Poller, provisioning_state_of};
use super::models::{ProvisioningState, Resource, Sku};

const PROVIDER: &str = "Microsoft.Compute";

/// `hardwareProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    /// VM size, e.g. `Standard_E16as_v5`.
    pub vm_size: String,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Marketplace image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    /// Publisher, e.g. `Canonical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Offer, e.g. `ubuntu-24_04-lts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// SKU, e.g. `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Version, e.g. `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Other fields (`id`, `exactVersion`, ...), preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageReference {
    /// The marketplace image `publisher:offer:sku:version`.
    pub fn marketplace(publisher: &str, offer: &str, sku: &str, version: &str) -> ImageReference {
        ImageReference {
            publisher: Some(publisher.to_string()),
            offer: Some(offer.to_string()),
            sku: Some(sku.to_string()),
            version: Some(version.to_string()),
            ..Default::default()
        }
    }
}

/// `managedDisk` of an OS or data disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDiskParameters {
    /// `Premium_LRS`, `StandardSSD_LRS`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
    /// Existing disk id (for `Attach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `osDisk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    /// Disk name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `FromImage` or `Attach`.
    pub create_option: String,
    /// `Delete` or `Detach` when the VM is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    /// Size in GiB.
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// Managed disk settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
    /// Other fields (`osType`, `caching`, ...), preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OsDisk {
    /// An OS disk created from the image on a `storage_account_type` managed disk of
    /// `size_gb` GiB (the image's size when `None`), deleted with the VM.
    pub fn from_image(size_gb: Option<u32>, storage_account_type: &str) -> OsDisk {
        OsDisk {
            create_option: "FromImage".into(),
            delete_option: Some("Delete".into()),
            disk_size_gb: size_gb,
            managed_disk: Some(ManagedDiskParameters {
                storage_account_type: Some(storage_account_type.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// An entry of `dataDisks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    /// Logical unit number.
    pub lun: u32,
    /// Disk name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Empty`, `Attach` or `FromImage`.
    pub create_option: String,
    /// Size in GiB (for `Empty`).
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// `Delete` or `Detach` when the VM is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    /// Managed disk settings (`id` for `Attach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDiskParameters>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `storageProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    /// Image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    /// OS disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<OsDisk>,
    /// Data disks.
    #[serde(default)]
    pub data_disks: Vec<DataDisk>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An authorized SSH key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshPublicKey {
    /// Path on the VM, `/home/<admin>/.ssh/authorized_keys`.
    pub path: String,
    /// OpenSSH public key.
    pub key_data: String,
}

/// `linuxConfiguration.ssh`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshConfiguration {
    /// Keys.
    #[serde(default)]
    pub public_keys: Vec<SshPublicKey>,
}

/// `linuxConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxConfiguration {
    /// Password login off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_password_authentication: Option<bool>,
    /// SSH keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfiguration>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `osProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    /// Admin user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<String>,
    /// Base64 cloud-init (write-only: ARM never returns it, and it cannot change after creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    /// Linux settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_configuration: Option<LinuxConfiguration>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OsProfile {
    /// A Linux profile with SSH-key-only login for `admin_username` and base64-encoded `cloud_init`.
    pub fn linux_ssh(
        computer_name: &str,
        admin_username: &str,
        ssh_public_keys: &[String],
        cloud_init: Option<&str>,
    ) -> OsProfile {
        OsProfile {
            computer_name: Some(computer_name.to_string()),
            admin_username: Some(admin_username.to_string()),
            custom_data: cloud_init.map(|c| base64::engine::general_purpose::STANDARD.encode(c)),
            linux_configuration: Some(LinuxConfiguration {
                disable_password_authentication: Some(true),
                ssh: Some(SshConfiguration {
                    public_keys: ssh_public_keys
                        .iter()
                        .map(|k| SshPublicKey {
                            path: format!("/home/{admin_username}/.ssh/authorized_keys"),
                            key_data: k.trim().to_string(),
                        })
                        .collect(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// `properties` of a NIC reference in `networkProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceReferenceProperties {
    /// Primary NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// `Delete` or `Detach` when the VM is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
}

/// An entry of `networkProfile.networkInterfaces`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterfaceReference {
    /// NIC id.
    pub id: String,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<NetworkInterfaceReferenceProperties>,
}

/// `networkProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// NICs.
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterfaceReference>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetworkProfile {
    /// A single primary NIC `nic_id`, with `delete_option` (`Delete` or `Detach`) applied when
    /// the VM is deleted.
    pub fn primary_nic(nic_id: &str, delete_option: &str) -> NetworkProfile {
        NetworkProfile {
            network_interfaces: vec![NetworkInterfaceReference {
                id: nic_id.to_string(),
                properties: Some(NetworkInterfaceReferenceProperties {
                    primary: Some(true),
                    delete_option: Some(delete_option.to_string()),
                }),
            }],
            ..Default::default()
        }
    }
}

/// VM priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    /// On-demand.
    Regular,
    /// Legacy low priority.
    Low,
    /// Spot.
    Spot,
}

/// What happens to an evicted Spot VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvictionPolicy {
    /// Stop and deallocate (disks kept).
    Deallocate,
    /// Delete the VM.
    Delete,
}

/// `billingProfile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingProfile {
    /// Spot max price in USD/hour; -1 means up to the on-demand price (never evicted for price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<f64>,
}

/// One `instanceView.statuses[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    /// E.g. `PowerState/running`, `ProvisioningState/succeeded`.
    #[serde(default)]
    pub code: String,
    /// `Info`, `Warning`, `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Display text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_status: Option<String>,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// A VM's instance view (only the statuses are typed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// Statuses.
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A VM power state from `PowerState/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// `starting`.
    Starting,
    /// `running`.
    Running,
    /// `stopping`.
    Stopping,
    /// `stopped` (still billed).
    Stopped,
    /// `deallocating`.
    Deallocating,
    /// `deallocated`.
    Deallocated,
    /// `unknown` or anything else.
    Unknown,
}

impl PowerState {
    /// Parses `PowerState/running` or `running` (case-insensitive).
    pub fn parse(code: &str) -> PowerState {
        let s = code.rsplit('/').next().unwrap_or(code).to_ascii_lowercase();
        match s.as_str() {
            "starting" => PowerState::Starting,
            "running" => PowerState::Running,
            "stopping" => PowerState::Stopping,
            "stopped" => PowerState::Stopped,
            "deallocating" => PowerState::Deallocating,
            "deallocated" => PowerState::Deallocated,
            _ => PowerState::Unknown,
        }
    }

    /// Whether the state is changing (`starting`, `stopping`, `deallocating`).
    pub fn is_transitioning(self) -> bool {
        matches!(
            self,
            PowerState::Starting | PowerState::Stopping | PowerState::Deallocating
        )
    }
}

impl InstanceView {
    fn status_with_prefix(&self, prefix: &str) -> Option<&str> {
        self.statuses.iter().find_map(|s| {
            let (p, rest) = s.code.split_once('/')?;
            p.eq_ignore_ascii_case(prefix).then_some(rest)
        })
    }

    /// Power state from the `PowerState/*` status.
    pub fn power_state(&self) -> Option<PowerState> {
        self.status_with_prefix("PowerState").map(PowerState::parse)
    }

    /// Provisioning state from the `ProvisioningState/*` status (e.g. `succeeded`, `failed/...`).
    pub fn provisioning_state(&self) -> Option<OperationState> {
        self.status_with_prefix("ProvisioningState")
            .map(|s| OperationState::parse(s.split('/').next().unwrap_or(s)))
    }
}

/// Properties of a virtual machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfile>,
    /// Image and disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<StorageProfile>,
    /// OS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<OsProfile>,
    /// NICs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    /// `Regular` / `Spot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Spot eviction policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<EvictionPolicy>,
    /// Spot max price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_profile: Option<BillingProfile>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Instance view (read-only; with `$expand=instanceView`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_view: Option<InstanceView>,
    /// Unique VM id (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl VirtualMachineProperties {
    /// Makes the VM a Spot VM: evicted with `eviction_policy`, paying at most `max_price`
    /// USD/hour (-1: up to the on-demand price).
    pub fn set_spot(&mut self, eviction_policy: EvictionPolicy, max_price: f64) {
        self.priority = Some(Priority::Spot);
        self.eviction_policy = Some(eviction_policy);
        self.billing_profile = Some(BillingProfile {
            max_price: Some(max_price),
        });
    }
}

/// A virtual machine.
pub type VirtualMachine = Resource<VirtualMachineProperties>;

/// A VM with its parsed states (from `get_with_instance_view`).
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualMachineStatus {
    /// The VM (with `properties.instanceView`).
    pub vm: VirtualMachine,
    /// Power state, when reported.
    pub power_state: Option<PowerState>,
    /// `properties.provisioningState`, falling back to the instance view's.
    pub provisioning_state: Option<OperationState>,
}

impl VirtualMachineStatus {
    /// The status of `vm` as read with its instance view.
    pub fn of(vm: VirtualMachine) -> Self {
        let view = vm.properties.instance_view.as_ref();
        let power_state = view.and_then(InstanceView::power_state);
        let provisioning_state = vm
            .properties
            .provisioning_state
            .as_ref()
            .map(ProvisioningState::state)
            .or_else(|| view.and_then(InstanceView::provisioning_state));
        Self {
            vm,
            power_state,
            provisioning_state,
        }
    }
}

/// `creationData` of a disk or snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationData {
    /// `Empty`, `Copy`, `CopyStart`, `FromImage`, ...
    pub create_option: String,
    /// Source disk or snapshot for `Copy` / `CopyStart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_resource_id: Option<String>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Properties of a managed disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskProperties {
    /// How the disk is created.
    #[serde(default)]
    pub creation_data: CreationData,
    /// Size in GiB.
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// `Unattached`, `Attached`, `Reserved`, ... (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Creation time (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A managed disk.
pub type Disk = Resource<DiskProperties>;

/// Error of a failed cross-region snapshot copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyCompletionError {
    /// Code, e.g. `CopySourceNotFound`.
    #[serde(default)]
    pub error_code: String,
    /// Message.
    #[serde(default)]
    pub error_message: String,
}

/// Properties of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotProperties {
    /// How the snapshot is created.
    #[serde(default)]
    pub creation_data: CreationData,
    /// Incremental snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<bool>,
    /// Size in GiB (read-only for copies).
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// Progress of a `CopyStart` copy, 0..=100 (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_percent: Option<f64>,
    /// Why a copy failed (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_completion_error: Option<CopyCompletionError>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Creation time (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A snapshot.
pub type Snapshot = Resource<SnapshotProperties>;

impl Disk {
    /// An empty data disk of `size_gb` GiB with storage SKU `sku` (e.g. `Premium_LRS`).
    pub fn empty(location: &str, size_gb: u32, sku: &str) -> Disk {
        Resource {
            sku: Some(Sku::named(sku)),
            ..Resource::new(
                location,
                DiskProperties {
                    creation_data: CreationData {
                        create_option: "Empty".to_string(),
                        ..Default::default()
                    },
                    disk_size_gb: Some(size_gb),
                    ..Default::default()
                },
            )
        }
    }

    /// A disk copied from snapshot `snapshot_id`.
    pub fn from_snapshot(location: &str, snapshot_id: impl ToString, sku: &str) -> Disk {
        Resource {
            sku: Some(Sku::named(sku)),
            ..Resource::new(
                location,
                DiskProperties {
                    creation_data: copy_of(snapshot_id, "Copy"),
                    ..Default::default()
                },
            )
        }
    }
}

fn copy_of(source: impl ToString, option: &str) -> CreationData {
    CreationData {
        create_option: option.to_string(),
        source_resource_id: Some(source.to_string()),
        ..Default::default()
    }
}

impl Snapshot {
    /// An incremental snapshot of disk `disk_id`.
    pub fn incremental_of(location: &str, disk_id: impl ToString) -> Snapshot {
        Resource::new(
            location,
            SnapshotProperties {
                creation_data: copy_of(disk_id, "Copy"),
                incremental: Some(true),
                ..Default::default()
            },
        )
    }

    /// A cross-region copy (`CopyStart`) in `target_location` of incremental snapshot `snapshot_id`.
    pub fn copy_start_of(target_location: &str, snapshot_id: impl ToString) -> Snapshot {
        Resource::new(
            target_location,
            SnapshotProperties {
                creation_data: copy_of(snapshot_id, "CopyStart"),
                incremental: Some(true),
                ..Default::default()
            },
        )
    }

    /// Whether a copy has finished: `completionPercent` reached 100, or none is reported and
    /// the snapshot is provisioned.
    pub fn copy_complete(&self) -> bool {
        match self.properties.completion_percent {
            Some(p) => p >= 100.0,
            None => self
                .properties
                .provisioning_state
                .as_ref()
                .is_some_and(ProvisioningState::is_succeeded),
        }
    }
}

/// Compute operations; from [`ArmClient::compute`].
#[derive(Debug, Clone, Copy)]
pub struct Compute<'a> {
    client: &'a ArmClient,
}

impl ArmClient {
    /// `Microsoft.Compute` resources.
    pub fn compute(&self) -> Compute<'_> {
        Compute { client: self }
    }
}

impl<'a> Compute<'a> {
    /// Virtual machines in `resource_group` (power actions are methods of the returned ops).
    pub fn virtual_machines(
        &self,
        resource_group: &str,
    ) -> ResourceOps<'a, VirtualMachineProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "virtualMachines")
    }

    /// Managed disks in `resource_group`.
    pub fn disks(&self, resource_group: &str) -> ResourceOps<'a, DiskProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "disks")
    }

    /// Snapshots in `resource_group`.
    pub fn snapshots(&self, resource_group: &str) -> ResourceOps<'a, SnapshotProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "snapshots")
    }
}

/// VM power actions, as named in the ARM API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// `start`.
    Start,
    /// `powerOff` (stopped, still billed).
    PowerOff,
    /// `deallocate`.
    Deallocate,
    /// `restart`.
    Restart,
}

impl PowerAction {
    /// The action path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::PowerOff => "powerOff",
            PowerAction::Deallocate => "deallocate",
            PowerAction::Restart => "restart",
        }
    }
}

/// The query that lists VMs with their instance views.
const INSTANCE_VIEW: &[(&str, &str)] = &[("$expand", "instanceView")];

impl ResourceOps<'_, VirtualMachineProperties> {
    /// GET with `$expand=instanceView`, with parsed power and provisioning state; `Ok(None)` if missing.
    pub async fn get_with_instance_view(
        &self,
        name: &str,
    ) -> Result<Option<VirtualMachineStatus>, ArmError> {
        Ok(self
            .get_query(name, &[("$expand", "instanceView")])
            .await?
            .map(VirtualMachineStatus::of))
    }

    /// Every VM of the resource group with its instance view (`$expand=instanceView`): one
    /// read (per page) for all of them, which Compute charges to its scarce high-cost read
    /// windows (`HighCostGet3Min`/`30Min`); [`Self::list`] is a low-cost read.
    pub async fn list_with_instance_view(&self) -> Result<Vec<VirtualMachineStatus>, ArmError> {
        Ok(self
            .list_query(INSTANCE_VIEW)
            .await?
            .into_iter()
            .map(VirtualMachineStatus::of)
            .collect())
    }

    /// The sustained rate (lists per second, each page counting) at which Compute lets
    /// [`Self::list_with_instance_view`] run, once its answers reported the windows.
    pub fn list_with_instance_view_rate(&self) -> Option<f64> {
        self.list_rate(INSTANCE_VIEW)
    }

    /// GET `{vm}/instanceView`; `Ok(None)` if the VM is missing.
    pub async fn instance_view(&self, name: &str) -> Result<Option<InstanceView>, ArmError> {
        let id = self.id(name);
        let path = format!("{id}/instanceView");
        self.client()
            .get_json(&path, super::api_versions::VIRTUAL_MACHINES)
            .await
    }

    /// Runs a power action and waits for it.
    pub async fn power(&self, name: &str, action: PowerAction) -> Result<(), ArmError> {
        self.action(name, action.as_str()).await.map(|_| ())
    }

    /// Starts a power action without waiting.
    pub async fn begin_power(&self, name: &str, action: PowerAction) -> Result<Poller, ArmError> {
        self.begin_action(name, action.as_str()).await
    }

    /// `start` and wait.
    pub async fn start(&self, name: &str) -> Result<(), ArmError> {
        self.power(name, PowerAction::Start).await
    }

    /// `powerOff` and wait (the VM stays allocated and billed).
    pub async fn power_off(&self, name: &str) -> Result<(), ArmError> {
        self.power(name, PowerAction::PowerOff).await
    }

    /// `deallocate` and wait.
    pub async fn deallocate(&self, name: &str) -> Result<(), ArmError> {
        self.power(name, PowerAction::Deallocate).await
    }

    /// `restart` and wait.
    pub async fn restart(&self, name: &str) -> Result<(), ArmError> {
        self.power(name, PowerAction::Restart).await
    }
}

impl ResourceOps<'_, DiskProperties> {
    /// Creates an empty disk and waits.
    pub async fn create_empty(
        &self,
        name: &str,
        location: &str,
        size_gb: u32,
        sku: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Disk, ArmError> {
        self.create_or_update(
            name,
            &Disk::empty(location, size_gb, sku).with_tags(tags.clone()),
        )
        .await
    }

    /// Creates a disk from a snapshot and waits.
    pub async fn create_from_snapshot(
        &self,
        name: &str,
        location: &str,
        snapshot_id: &str,
        sku: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Disk, ArmError> {
        self.create_or_update(
            name,
            &Disk::from_snapshot(location, snapshot_id, sku).with_tags(tags.clone()),
        )
        .await
    }
}

impl ResourceOps<'_, SnapshotProperties> {
    /// Creates an incremental snapshot of `disk_id` and waits.
    pub async fn create_incremental(
        &self,
        name: &str,
        location: &str,
        disk_id: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Snapshot, ArmError> {
        self.create_or_update(
            name,
            &Snapshot::incremental_of(location, disk_id).with_tags(tags.clone()),
        )
        .await
    }

    /// Starts a cross-region copy of `snapshot_id` into `target_location`; returns once the copy
    /// resource exists. Wait for the data with [`Self::wait_copy_complete`].
    pub async fn copy_start(
        &self,
        name: &str,
        target_location: &str,
        snapshot_id: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Snapshot, ArmError> {
        self.create_or_update(
            name,
            &Snapshot::copy_start_of(target_location, snapshot_id).with_tags(tags.clone()),
        )
        .await
    }

    /// Polls the snapshot until its copy is complete (see [`Snapshot::copy_complete`]); a
    /// `copyCompletionError` or a Failed provisioningState is an [`ArmError::OperationFailed`].
    pub async fn wait_copy_complete(&self, name: &str) -> Result<Snapshot, ArmError> {
        self.client()
            .wait_until(&self.id(name), |body| {
                if let Some(status) = provisioning_state_of(body)
                    .as_ref()
                    .and_then(OperationState::failed_status)
                {
                    return Some(Err(ArmError::operation_failed(status, None)));
                }
                let snapshot: Snapshot = match decode(body.clone()) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                };
                if let Some(e) = &snapshot.properties.copy_completion_error {
                    let detail = ErrorDetail {
                        code: e.error_code.clone(),
                        message: e.error_message.clone(),
                        ..Default::default()
                    };
                    return Some(Err(ArmError::operation_failed(
                        FailedStatus::Failed,
                        Some(detail),
                    )));
                }
                snapshot.copy_complete().then_some(Ok(snapshot))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vm_body_has_all_fields() {
        let mut vm = VirtualMachine {
            zones: vec!["1".into()],
            ..Resource::new(
                "westus2",
                VirtualMachineProperties {
                    hardware_profile: Some(HardwareProfile {
                        vm_size: "Standard_E16as_v5".into(),
                        ..Default::default()
                    }),
                    storage_profile: Some(StorageProfile {
                        image_reference: Some(ImageReference::marketplace(
                            "Canonical",
                            "ubuntu-24_04-lts",
                            "server",
                            "latest",
                        )),
                        os_disk: Some(OsDisk::from_image(Some(128), "Premium_LRS")),
                        data_disks: vec![DataDisk {
                            lun: 0,
                            create_option: "Empty".into(),
                            disk_size_gb: Some(256),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    os_profile: Some(OsProfile::linux_ssh(
                        "vm1",
                        "azureuser",
                        &["ssh-ed25519 AAAA test\n".to_string()],
                        Some("#cloud-config\n"),
                    )),
                    network_profile: Some(NetworkProfile::primary_nic("/nic", "Delete")),
                    ..Default::default()
                },
            )
        };
        vm.properties.set_spot(EvictionPolicy::Deallocate, -1.0);
        let v = serde_json::to_value(&vm).expect("ser");
        let p = &v["properties"];
        assert_eq!(v["zones"], json!(["1"]));
        assert_eq!(p["hardwareProfile"]["vmSize"], json!("Standard_E16as_v5"));
        assert_eq!(p["storageProfile"]["osDisk"]["diskSizeGB"], json!(128));
        assert_eq!(
            p["storageProfile"]["osDisk"]["managedDisk"]["storageAccountType"],
            json!("Premium_LRS")
        );
        assert_eq!(
            p["storageProfile"]["osDisk"]["deleteOption"],
            json!("Delete")
        );
        assert_eq!(
            p["storageProfile"]["dataDisks"][0],
            json!({"lun": 0, "createOption": "Empty", "diskSizeGB": 256})
        );
        assert_eq!(p["osProfile"]["customData"], json!("I2Nsb3VkLWNvbmZpZwo="));
        assert_eq!(
            p["osProfile"]["linuxConfiguration"],
            json!({"disablePasswordAuthentication": true, "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA test"}]}})
        );
        assert_eq!(
            p["networkProfile"]["networkInterfaces"][0]["properties"],
            json!({"primary": true, "deleteOption": "Delete"})
        );
        assert_eq!(p["priority"], json!("Spot"));
        assert_eq!(p["evictionPolicy"], json!("Deallocate"));
        assert_eq!(p["billingProfile"]["maxPrice"], json!(-1.0));
    }

    #[test]
    fn parses_instance_view() {
        let vm: VirtualMachine = serde_json::from_value(json!({
            "properties": {"provisioningState": "Succeeded", "instanceView": {"statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info"},
                {"code": "PowerState/deallocating"}
            ], "vmAgent": {}}, "securityProfile": {"x": 1}}
        }))
        .expect("de");
        let view = vm.properties.instance_view.as_ref().expect("view");
        assert_eq!(view.power_state(), Some(PowerState::Deallocating));
        assert!(PowerState::Deallocating.is_transitioning());
        assert_eq!(view.provisioning_state(), Some(OperationState::Succeeded));
        assert!(vm.properties.extra.contains_key("securityProfile"));
        assert_eq!(PowerState::parse("PowerState/RUNNING"), PowerState::Running);
        assert_eq!(PowerState::parse("weird"), PowerState::Unknown);
        let failed = InstanceView {
            statuses: vec![InstanceViewStatus {
                code: "ProvisioningState/failed/OSProvisioningTimedOut".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(failed.provisioning_state(), Some(OperationState::Failed));
        assert_eq!(failed.power_state(), None);
    }

    #[test]
    fn disk_and_snapshot_bodies() {
        let d = serde_json::to_value(Disk::empty("westus2", 64, "Premium_LRS")).expect("ser");
        assert_eq!(
            d,
            json!({"location": "westus2", "sku": {"name": "Premium_LRS"}, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}})
        );
        let r = serde_json::to_value(Disk::from_snapshot("westus2", "/snap", "Premium_LRS"))
            .expect("ser");
        assert_eq!(
            r["properties"]["creationData"],
            json!({"createOption": "Copy", "sourceResourceId": "/snap"})
        );
        let s = serde_json::to_value(Snapshot::incremental_of("westus2", "/disk")).expect("ser");
        assert_eq!(
            s["properties"],
            json!({"creationData": {"createOption": "Copy", "sourceResourceId": "/disk"}, "incremental": true})
        );
        let c = serde_json::to_value(Snapshot::copy_start_of("eastus", "/snap")).expect("ser");
        assert_eq!(
            c["properties"]["creationData"]["createOption"],
            json!("CopyStart")
        );
        assert_eq!(c["location"], json!("eastus"));
    }

    #[test]
    fn copy_completion() {
        let mut s = Snapshot::copy_start_of("eastus", "/snap");
        assert!(!s.copy_complete());
        s.properties.provisioning_state = Some(ProvisioningState("Succeeded".into()));
        assert!(s.copy_complete(), "no percent reported and provisioned");
        s.properties.completion_percent = Some(42.0);
        assert!(!s.copy_complete());
        s.properties.completion_percent = Some(100.0);
        assert!(s.copy_complete());
    }
}
