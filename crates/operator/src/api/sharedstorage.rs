//! The `SharedStorage` kind: an Azure Files NFS 4.1 share many VMs mount.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    DeletionPolicy, IMMUTABLE_RULE, LOCATION_MESSAGE, LOCATION_RULE, RESOURCE_GROUP_MESSAGE,
    RESOURCE_GROUP_RULE,
};

/// Desired state of an Azure Files NFS 4.1 share on a Premium FileStorage account
/// with private network access.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "azlin.io",
    version = "v1alpha1",
    kind = "SharedStorage",
    plural = "sharedstorages",
    singular = "sharedstorage",
    shortname = "ss",
    category = "azlin",
    namespaced,
    status = "SharedStorageStatus",
    derive = "PartialEq",
    doc = "An Azure Files NFS 4.1 share that AzlinVMs and Fleets mount.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.sizeGiB"),
    printcolumn(name = "Mounted-By", type_ = "integer", json_path = ".status.mountCount"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.nfsEndpoint", priority = "1"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{1,61}[a-z0-9])$') && !self.metadata.name.contains('--')").message("metadata.name must be 3-63 lowercase letters, digits and single '-' (it becomes the Azure file share name)"),
)]
#[serde(rename_all = "camelCase")]
pub struct SharedStorageSpec {
    /// Azure resource group of the storage account; created when it does not exist. Immutable.
    #[x_kube(validation = Rule::new(RESOURCE_GROUP_RULE).message(RESOURCE_GROUP_MESSAGE))]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.resourceGroup is immutable: create a new SharedStorage and copy the data"))]
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,

    /// Azure region; must be the VMs' region for NFS over a service endpoint. Immutable.
    #[x_kube(validation = Rule::new(LOCATION_RULE).message(LOCATION_MESSAGE))]
    #[x_kube(validation = Rule::new(IMMUTABLE_RULE).message("spec.location is immutable: create a new SharedStorage in the other region"))]
    #[schemars(length(min = 2, max = 40))]
    pub location: String,

    /// Performance tier. Only `Premium` can serve NFS 4.1.
    #[serde(default = "default_tier")]
    #[x_kube(validation = Rule::new("self == 'Premium'").message("spec.tier must be Premium: Azure Files serves NFS 4.1 shares only from Premium (FileStorage) accounts; Standard storage cannot serve NFS"))]
    #[schemars(length(max = 32))]
    pub tier: String,

    /// Provisioned size in GiB (Premium minimum 100). Can grow; shrinking below the used
    /// capacity is refused.
    #[serde(rename = "sizeGiB", default = "default_size_gib")]
    #[x_kube(validation = Rule::new("self >= 100").message("spec.sizeGiB must be at least 100: Premium NFS shares have a 100 GiB minimum provisioned size"))]
    #[x_kube(validation = Rule::new("self <= 102400").message("spec.sizeGiB must be at most 102400 (100 TiB, the largest Premium file share)"))]
    pub size_gib: i32,

    /// How the share maps root on the clients.
    #[serde(default)]
    pub root_squash: RootSquash,

    /// Extra subnet resource ids allowed to reach the share (the operator-managed VM
    /// subnet is always allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$'))").message("spec.allowedSubnets[] must be subnet resource ids: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"))]
    #[schemars(length(max = 32), inner(length(max = 512)))]
    pub allowed_subnets: Vec<String>,

    /// Built-in directory layout created on the share, with its default mount path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<StorageTemplate>,

    /// What happens to the account and share when this object is deleted. Defaults to
    /// `Retain` so that deleting the object never destroys shared data by accident.
    #[serde(default = "default_storage_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
}

fn default_tier() -> String {
    "Premium".to_string()
}

fn default_size_gib() -> i32 {
    100
}

fn default_storage_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Retain
}

/// Root squash mode of an NFS share.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RootSquash {
    /// Root on the client is root on the share.
    #[default]
    NoRootSquash,
    /// Root on the client is mapped to the anonymous user (65534).
    RootSquash,
    /// Every client user is mapped to the anonymous user.
    AllSquash,
}

impl RootSquash {
    /// The Azure value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRootSquash => "NoRootSquash",
            Self::RootSquash => "RootSquash",
            Self::AllSquash => "AllSquash",
        }
    }
}

/// Built-in storage layouts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StorageTemplate {
    /// Datasets, models and checkpoints shared by training VMs.
    #[serde(rename = "ml-training")]
    MlTraining,
    /// Build caches and artifacts shared by CI runners.
    #[serde(rename = "ci-runner")]
    CiRunner,
    /// Team projects and tools.
    #[serde(rename = "dev-team")]
    DevTeam,
    /// Fixtures and results for test VMs.
    #[serde(rename = "testing")]
    Testing,
}

/// One directory of a template layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutDir {
    /// Directory relative to the mount path (shared) or absolute (local).
    pub path: &'static str,
    /// True when the directory lives on the share, false when on the VM's own disk.
    pub shared: bool,
    /// What it is for.
    pub purpose: &'static str,
}

impl StorageTemplate {
    /// Every template.
    pub const ALL: [StorageTemplate; 4] = [
        StorageTemplate::MlTraining,
        StorageTemplate::CiRunner,
        StorageTemplate::DevTeam,
        StorageTemplate::Testing,
    ];

    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MlTraining => "ml-training",
            Self::CiRunner => "ci-runner",
            Self::DevTeam => "dev-team",
            Self::Testing => "testing",
        }
    }

    /// Default mount path of a share with this template.
    pub fn mount_path(self) -> &'static str {
        match self {
            Self::MlTraining => "/mnt/ml",
            Self::CiRunner => "/mnt/ci",
            Self::DevTeam => "/mnt/team",
            Self::Testing => "/mnt/testing",
        }
    }

    /// Directories of the layout.
    pub fn layout(self) -> &'static [LayoutDir] {
        const fn shared(path: &'static str, purpose: &'static str) -> LayoutDir {
            LayoutDir {
                path,
                shared: true,
                purpose,
            }
        }
        const fn local(path: &'static str, purpose: &'static str) -> LayoutDir {
            LayoutDir {
                path,
                shared: false,
                purpose,
            }
        }
        match self {
            Self::MlTraining => {
                const L: &[LayoutDir] = &[
                    shared("datasets", "training data, read by every VM"),
                    shared("models", "trained models"),
                    shared("checkpoints", "training checkpoints"),
                    local(
                        "/mnt/scratch",
                        "fast local scratch space on the VM's own disk",
                    ),
                ];
                L
            }
            Self::CiRunner => {
                const L: &[LayoutDir] = &[
                    shared("cache", "dependency and build caches"),
                    shared("artifacts", "build outputs kept between jobs"),
                    local("/var/lib/ci-work", "per-runner work directory"),
                ];
                L
            }
            Self::DevTeam => {
                const L: &[LayoutDir] = &[
                    shared("projects", "team source trees"),
                    shared("tools", "shared tool installs"),
                    shared("scratch", "team-wide scratch space"),
                ];
                L
            }
            Self::Testing => {
                const L: &[LayoutDir] = &[
                    shared("fixtures", "test input data"),
                    shared("results", "test reports and logs"),
                    local("/tmp/test-work", "per-VM temporary work"),
                ];
                L
            }
        }
    }
}

/// Lifecycle phase of a SharedStorage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StoragePhase {
    /// Accepted, nothing created yet.
    #[default]
    Pending,
    /// Account or share being created or resized.
    Provisioning,
    /// Share is available.
    Ready,
    /// Being deleted (or waiting for mounts to go away).
    Deleting,
    /// Cannot make progress; see the Stalled condition.
    Failed,
}

/// Observed state of a SharedStorage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedStorageStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StoragePhase>,
    /// Ready, Reconciling and Stalled conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Azure storage account name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account: Option<String>,
    /// File share name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// NFS mount source: `<account>.file.core.windows.net:/<account>/<share>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs_endpoint: Option<String>,
    /// Provisioned quota in GiB as Azure reports it.
    #[serde(default, rename = "quotaGiB", skip_serializing_if = "Option::is_none")]
    pub quota_gib: Option<i32>,
    /// AzlinVMs (names in this namespace) that mount the share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounted_by: Vec<String>,
    /// Number of AzlinVMs that mount the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_count: Option<i32>,
    /// The Azure identity and subscription the object's Azure resources were created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<crate::api::common::AzureIdentity>,
}
