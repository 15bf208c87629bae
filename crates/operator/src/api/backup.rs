//! The `Backup` kind: scheduled incremental disk snapshots of a VM or a fleet.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL rule accepting a five-field cron expression or a `@daily`-style macro.
pub const CRON_RULE: &str = r"self.matches('^(@(yearly|annually|monthly|weekly|daily|hourly)|(\\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*( +(\\*|[0-9A-Za-z?]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*){4})$')";

/// Desired backup schedule of a VM or fleet.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "azlin.io",
    version = "v1alpha1",
    kind = "Backup",
    plural = "backups",
    singular = "backup",
    shortname = "bk",
    category = "azlin",
    namespaced,
    status = "BackupStatus",
    derive = "PartialEq",
    doc = "Scheduled incremental snapshots of an AzlinVM's or a Fleet's disks.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source.name"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last-Success", type_ = "date", json_path = ".status.lastSuccessfulTime"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters (it is part of the snapshot names)"),
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// What to back up.
    pub source: BackupSource,

    /// Cron schedule (five fields, or `@daily`/`@hourly`/...), evaluated in `timeZone`.
    #[x_kube(validation = Rule::new(CRON_RULE).message("spec.schedule must be a cron expression with five fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *', or a macro such as @daily"))]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// IANA time zone of the schedule.
    #[serde(default = "default_time_zone")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z]+(/[A-Za-z0-9_+-]+){0,2}$')").message("spec.timeZone must be an IANA time zone such as UTC or Europe/Berlin"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// How many snapshots to keep.
    #[serde(default)]
    pub retention: Retention,

    /// Regions to copy every snapshot to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, r.matches('^[a-z][a-z0-9]{1,39}$'))").message("spec.copyToRegions[] must be Azure region names such as eastus2"))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s == r))").message("spec.copyToRegions must not repeat a region"))]
    #[schemars(length(max = 5), inner(length(max = 40)))]
    pub copy_to_regions: Vec<String>,

    /// Stop taking new snapshots (existing ones are kept).
    #[serde(default)]
    pub suspend: bool,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

/// The kind of object a Backup snapshots.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupSourceKind {
    /// One AzlinVM.
    AzlinVM,
    /// Every member of a Fleet.
    Fleet,
}

/// Reference to the backed-up object in the Backup's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec.source is immutable: create a new Backup for another source"))]
pub struct BackupSource {
    /// `AzlinVM` or `Fleet`.
    pub kind: BackupSourceKind,
    /// Name of the object.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("spec.source.name must be the name of an AzlinVM or Fleet in this namespace"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// Snapshot retention.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Number of snapshots kept per disk.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 500))]
    pub count: i32,
    /// Never delete the newest successful snapshot, even past `count`.
    #[serde(default = "default_true")]
    pub keep_last_good: bool,
}

fn default_count() -> i32 {
    7
}

fn default_true() -> bool {
    true
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            count: default_count(),
            keep_last_good: true,
        }
    }
}

/// Lifecycle phase of a Backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    /// Waiting for the first run or for the source.
    #[default]
    Pending,
    /// Taking or copying snapshots.
    Running,
    /// Scheduled; the last run succeeded.
    Active,
    /// `spec.suspend` is true.
    Suspended,
    /// Cannot make progress; see the Stalled condition.
    Failed,
}

/// State of one snapshot or copy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotState {
    /// Being created or copied.
    Pending,
    /// Complete.
    Succeeded,
    /// Failed; see `message`.
    Failed,
}

/// A cross-region copy of a snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCopy {
    /// Target region.
    pub region: String,
    /// ARM id of the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Copy state.
    pub state: SnapshotState,
    /// Percentage copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_percent: Option<i32>,
}

/// One snapshot taken by the Backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Snapshot name (usable in `restoreFrom.snapshot`).
    pub name: String,
    /// AzlinVM whose disk was snapshotted.
    pub vm: String,
    /// ARM id of the source disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_disk: Option<String>,
    /// ARM id of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// When the snapshot was requested.
    pub created_at: Time,
    /// Snapshot state.
    pub state: SnapshotState,
    /// Error detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Cross-region copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<SnapshotCopy>,
}

/// Observed state of a Backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Ready, Reconciling and Stalled conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the last run was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last run completed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Snapshots kept, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotStatus>,
}
