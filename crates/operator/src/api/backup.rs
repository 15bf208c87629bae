//! The `Backup` kind: scheduled incremental disk snapshots of a VM or a fleet.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::DeletionPolicy;

/// Message of the schedule rule ([`cron_cel_rule`]).
pub const CRON_MESSAGE: &str = "spec.schedule must be a cron expression with five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT; each a list of values, ranges, '*' and '/step'), e.g. '0 2 * * *', or a macro such as @daily";

/// Message of the time zone rule ([`time_zone_cel_rule`]).
pub const TIME_ZONE_MESSAGE: &str = "spec.timeZone must be an IANA time zone name such as UTC, Europe/Berlin or America/New_York (case-sensitive)";

/// One cron field: a comma-separated list of `*` (or `?` where allowed), values or ranges of
/// `value`, each with an optional `/step`.
fn cron_field(value: &str, question: bool) -> String {
    let any = if question { r"\\*|\\?" } else { r"\\*" };
    let item = format!("({any}|({value})(-({value}))?)(/[1-9][0-9]*)?");
    format!("{item}(,{item})*")
}

/// CEL rule accepting a standard five-field cron expression whose values are in range, or an
/// `@daily`-style macro: what croner (the controller's parser) accepts of standard cron.
/// What a regular expression cannot judge (a backwards range such as `5-1`, a date that
/// never comes such as February 30) is checked by the controller, which reports `Stalled`
/// naming `spec.schedule`.
pub fn cron_cel_rule() -> String {
    let minute = cron_field("[0-5]?[0-9]", false);
    let hour = cron_field("[01]?[0-9]|2[0-3]", false);
    let dom = cron_field("0?[1-9]|[12][0-9]|3[01]", true);
    let month = cron_field(
        "0?[1-9]|1[0-2]|(?i:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)",
        false,
    );
    let dow = cron_field("[0-7]|(?i:SUN|MON|TUE|WED|THU|FRI|SAT)", true);
    format!(
        "self.matches('^(@(?i:yearly|annually|monthly|weekly|daily|hourly)|{minute} +{hour} +{dom} +{month} +{dow})$')"
    )
}

/// CEL rule accepting exactly the IANA time zone names the controller knows (chrono-tz).
pub fn time_zone_cel_rule() -> String {
    let names: Vec<String> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|z| format!("'{}'", z.name()))
        .collect();
    format!("self in [{}]", names.join(", "))
}

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
    printcolumn(name = "Next-Run", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters (it is part of the snapshot names)"),
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// What to back up.
    pub source: BackupSource,

    /// Cron schedule (five fields, or `@daily`/`@hourly`/...), evaluated in `timeZone`.
    /// After downtime at most one missed run is made up (the latest missed slot), never a
    /// burst.
    #[x_kube(validation = Rule::new(cron_cel_rule()).message(CRON_MESSAGE))]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// IANA time zone of the schedule (and of the days, weeks and months of `retention`).
    #[serde(default = "default_time_zone")]
    #[x_kube(validation = Rule::new(time_zone_cel_rule()).message(TIME_ZONE_MESSAGE))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// Which runs to keep.
    #[serde(default)]
    pub retention: Retention,

    /// Regions to copy every snapshot to (into resource group `<source group>-backup-<region>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, r.matches('^[a-z][a-z0-9]{1,39}$'))").message("spec.copyToRegions[] must be Azure region names such as eastus2"))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s == r))").message("spec.copyToRegions must not repeat a region"))]
    #[schemars(length(max = 5), inner(length(max = 40)))]
    pub copy_to_regions: Vec<String>,

    /// Test-restore each run's OS disk snapshots to a throwaway disk (deleted afterwards) and
    /// record the result; with verification only verified runs count as good.
    #[serde(default)]
    pub verify: bool,

    /// Stop scheduled runs (existing snapshots are kept; `runRequestedAt` still runs once).
    #[serde(default)]
    pub suspend: bool,

    /// Changing this timestamp runs a backup once, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_requested_at: Option<Time>,

    /// What happens to the snapshots when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

/// The kind of object a Backup snapshots.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupSourceKind {
    /// One AzlinVM.
    AzlinVM,
    /// Every member of a Fleet (the AzlinVMs it controls).
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

/// Which runs are kept. A successful run is kept when any rule keeps it: the newest `count`,
/// the grandfather-father-son tiers, or `keepLastGood`. Failed runs are never kept (their
/// partial snapshots are deleted). Setting any of `daily`, `weekly` or `monthly` turns on
/// grandfather-father-son rotation; a tier left unset then takes azlin's default (daily 7,
/// weekly 4, monthly 12) and `0` turns a tier off. Days, weeks (ISO) and months are those of
/// `spec.timeZone`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest this many successful runs.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 500))]
    pub count: i32,
    /// Keep the newest successful run of each of the newest this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub daily: Option<i32>,
    /// Keep the newest successful run of each of the newest this many weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 520))]
    pub weekly: Option<i32>,
    /// Keep the newest successful run of each of the newest this many months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 240))]
    pub monthly: Option<i32>,
    /// Never delete the newest good run (successful and, with `verify`, verified), even when
    /// every later run failed.
    #[serde(default = "default_true")]
    pub keep_last_good: bool,
}

/// azlin's grandfather-father-son defaults: daily, weekly, monthly.
pub const GFS_DEFAULTS: (i32, i32, i32) = (7, 4, 12);

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
            daily: None,
            weekly: None,
            monthly: None,
            keep_last_good: true,
        }
    }
}

impl Retention {
    /// The grandfather-father-son tiers (daily, weekly, monthly) when rotation is on.
    pub fn gfs(&self) -> Option<(u32, u32, u32)> {
        if self.daily.is_none() && self.weekly.is_none() && self.monthly.is_none() {
            return None;
        }
        let tier = |v: Option<i32>, d: i32| u32::try_from(v.unwrap_or(d)).unwrap_or(0);
        let (d, w, m) = GFS_DEFAULTS;
        Some((
            tier(self.daily, d),
            tier(self.weekly, w),
            tier(self.monthly, m),
        ))
    }
}

/// Lifecycle phase of a Backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    /// Waiting for the first run or for the source.
    #[default]
    Pending,
    /// A run is taking, verifying or copying snapshots.
    Running,
    /// Scheduled; waiting for the next run.
    Active,
    /// `spec.suspend` is true.
    Suspended,
    /// Cannot make progress; see the Stalled condition.
    Failed,
    /// Being deleted.
    Deleting,
}

/// What started a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunTrigger {
    /// A slot of `spec.schedule`.
    Schedule,
    /// A new `spec.runRequestedAt`.
    OnDemand,
    /// Found in Azure (tagged by this Backup) but missing from the status, e.g. after the
    /// object was re-created; kept under the same retention.
    Recovered,
}

/// State of a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunState {
    /// Snapshots are being taken (or verified, or copied).
    Running,
    /// Every snapshot of the run succeeded.
    Succeeded,
    /// A snapshot failed; the run's snapshots are deleted.
    Failed,
}

/// State of one snapshot, copy or check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotState {
    /// Being created, copied or checked.
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
    /// Error detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One snapshot of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Snapshot name (usable in an AzlinVM's `restoreFrom.snapshot`).
    pub name: String,
    /// AzlinVM whose disk was snapshotted.
    pub vm: String,
    /// Name of the snapshotted disk.
    pub disk: String,
    /// LUN of a data disk; absent for the OS disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<i32>,
    /// ARM id of the source disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_disk: Option<String>,
    /// ARM id of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Region of the snapshot (the disk's).
    pub region: String,
    /// Snapshot state.
    pub state: SnapshotState,
    /// Size of the snapshotted disk in GiB.
    #[serde(default, rename = "sizeGiB", skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<i32>,
    /// Error detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Cross-region copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<SnapshotCopy>,
}

/// The result of test-restoring a run's OS disk snapshots.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Pending while the throwaway disks are created; then Succeeded or Failed.
    pub state: SnapshotState,
    /// What was checked, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One backup run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    /// Run id (`YYYYMMDD-HHMMSS` of `time` in UTC), part of every snapshot name of the run.
    pub name: String,
    /// The scheduled slot, or the requested time of an on-demand run.
    pub time: Time,
    /// What started the run.
    pub trigger: RunTrigger,
    /// Run state.
    pub state: RunState,
    /// When the run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Summary or error detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Test-restore result (with `spec.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The snapshots, one per disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotStatus>,
}

impl BackupRun {
    /// Whether the run succeeded and, if it was verified, passed verification.
    pub fn is_good(&self) -> bool {
        self.state == RunState::Succeeded
            && self
                .verification
                .as_ref()
                .is_none_or(|v| v.state == SnapshotState::Succeeded)
    }
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
    /// The slot (or requested time) of the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The time of the newest successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next scheduled run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The `spec.runRequestedAt` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_requested_at: Option<Time>,
    /// Runs whose snapshots exist (and the latest failures), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<BackupRun>,
    /// The Azure identity and subscription the object's Azure resources were created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<crate::api::common::AzureIdentity>,
}
