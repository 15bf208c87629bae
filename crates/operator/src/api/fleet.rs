//! The `Fleet` kind: N AzlinVMs from one template, like a ReplicaSet.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::azlinvm::AzlinVMSpec;
use super::common::PowerState;

/// Desired state of a fleet of identical VMs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "azlin.io",
    version = "v1alpha1",
    kind = "Fleet",
    plural = "fleets",
    singular = "fleet",
    shortname = "flt",
    category = "azlin",
    namespaced,
    status = "FleetStatus",
    derive = "PartialEq",
    doc = "A fleet of AzlinVMs created from one template.",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.replicas", label_selector_path = ".status.selector"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Up-To-Date", type_ = "integer", json_path = ".status.updatedReplicas"),
    printcolumn(name = "Power", type_ = "string", json_path = ".spec.powerState"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,57}[a-z0-9])?$')").message("metadata.name must be a DNS label of at most 59 characters: members are named <fleet>-<NNN> and become host names"),
)]
#[serde(rename_all = "camelCase")]
pub struct FleetSpec {
    /// Number of member VMs.
    #[schemars(range(min = 0, max = 500))]
    pub replicas: i32,

    /// Template of every member.
    pub template: FleetTemplate,

    /// SharedStorage mounted as the admin user's home directory on every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{1,61}[a-z0-9])$')").message("spec.sharedHome must be the name of a SharedStorage in this namespace"))]
    #[schemars(length(min = 3, max = 63))]
    pub shared_home: Option<String>,

    /// Power state of the whole fleet; overrides the template's.
    #[serde(default)]
    pub power_state: PowerState,

    /// Environment variables set for every login shell on every member.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]{0,127}$'))").message("spec.env keys must be shell variable names: letters, digits and '_', not starting with a digit"))]
    #[x_kube(validation = Rule::new("self.all(k, size(self[k]) <= 4096)").message("spec.env values must be at most 4096 characters"))]
    #[schemars(extend("maxProperties" = 64))]
    pub env: BTreeMap<String, String>,

    /// How template changes roll out.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,

    /// Working hours: outside the window the fleet is deallocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<WorkSchedule>,

    /// Replacing members that stay failed.
    #[serde(default)]
    pub healing: Healing,
}

/// When a failed member is replaced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Healing {
    /// Replace members that stay failed (Stalled) longer than `afterMinutes`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Minutes a member may stay failed before it is replaced.
    #[serde(default = "default_heal_after")]
    #[schemars(range(min = 1, max = 10080))]
    pub after_minutes: i32,
}

fn default_true() -> bool {
    true
}

fn default_heal_after() -> i32 {
    10
}

impl Default for Healing {
    fn default() -> Self {
        Self {
            enabled: true,
            after_minutes: default_heal_after(),
        }
    }
}

/// Member template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetTemplate {
    /// Labels and annotations copied to every member.
    #[serde(default, skip_serializing_if = "TemplateMetadata::is_empty")]
    pub metadata: TemplateMetadata,
    /// AzlinVM spec of every member. `powerState` is taken from the Fleet. Fields an
    /// AzlinVM cannot change (image, location, network, ...) can change here: the members
    /// are replaced one batch at a time.
    #[schemars(schema_with = "template_spec_schema")]
    pub spec: AzlinVMSpec,
}

/// The AzlinVM spec schema without its transition rules (`oldSelf`): what is immutable on
/// one VM rolls out by replacement in a Fleet.
fn template_spec_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut value = generator.subschema_for::<AzlinVMSpec>().to_value();
    strip_transition_rules(&mut value);
    schemars::Schema::try_from(value).unwrap_or_else(|_| generator.subschema_for::<AzlinVMSpec>())
}

/// Removes every `x-kubernetes-validations` rule that mentions `oldSelf`.
fn strip_transition_rules(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(rules)) = map.get_mut("x-kubernetes-validations") {
                rules.retain(|r| {
                    !r.get("rule")
                        .and_then(serde_json::Value::as_str)
                        .is_some_and(|rule| rule.contains("oldSelf"))
                });
                if rules.is_empty() {
                    map.remove("x-kubernetes-validations");
                }
            }
            map.values_mut().for_each(strip_transition_rules);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_transition_rules),
        _ => {}
    }
}

/// Metadata copied to members.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl TemplateMetadata {
    /// True when there are no labels and no annotations.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Rolling update settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])").message("spec.updateStrategy: maxSurge and maxUnavailable cannot both be 0, or a rolling update could never make progress; set maxSurge: 1"))]
pub struct UpdateStrategy {
    /// Extra members allowed above `replicas` during an update (number or percentage).
    #[serde(default = "default_max_surge")]
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]{1,3}%?$')").message("spec.updateStrategy.maxSurge must be a non-negative number or a percentage such as 25%"))]
    pub max_surge: IntOrString,
    /// Members allowed to be unavailable during an update (number or percentage).
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]{1,3}%?$')").message("spec.updateStrategy.maxUnavailable must be a non-negative number or a percentage such as 25%"))]
    pub max_unavailable: IntOrString,
}

fn default_max_surge() -> IntOrString {
    IntOrString::Int(1)
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(0)
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        Self {
            max_surge: default_max_surge(),
            max_unavailable: default_max_unavailable(),
        }
    }
}

/// Day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Working-hours window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start != self.end").message("spec.schedule.start and spec.schedule.end must differ; a window may cross midnight, e.g. start 22:00, end 06:00"))]
pub struct WorkSchedule {
    /// Days on which the window starts (a window crossing midnight ends the next day).
    #[serde(default = "default_days")]
    #[schemars(length(min = 1, max = 7))]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, e == d))").message("spec.schedule.days must not repeat a day"))]
    pub days: Vec<Weekday>,
    /// Start of the window, `HH:MM` (24-hour).
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("spec.schedule.start must be HH:MM in 24-hour time, e.g. 08:00"))]
    #[schemars(length(min = 5, max = 5))]
    pub start: String,
    /// End of the window, `HH:MM` (24-hour).
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("spec.schedule.end must be HH:MM in 24-hour time, e.g. 18:00"))]
    #[schemars(length(min = 5, max = 5))]
    pub end: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z]+(/[A-Za-z0-9_+-]+){0,2}$')").message("spec.schedule.timeZone must be an IANA time zone such as UTC or Europe/Berlin"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

fn default_days() -> Vec<Weekday> {
    vec![
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

/// Lifecycle phase of a Fleet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FleetPhase {
    /// Accepted, no members yet.
    #[default]
    Pending,
    /// Creating or removing members.
    Scaling,
    /// Rolling a template change out.
    Updating,
    /// Every member matches the spec.
    Ready,
    /// Deallocated outside its working hours or by `powerState`.
    Deallocated,
    /// Cannot make progress; see the Stalled condition.
    Failed,
}

/// Observed state of one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetMemberStatus {
    /// AzlinVM name.
    pub name: String,
    /// The member's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// True when the member is Ready.
    pub ready: bool,
    /// True when the member runs the current template.
    pub updated: bool,
    /// Private IP address.
    #[serde(default, rename = "privateIP", skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
}

/// Observed state of a Fleet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FleetPhase>,
    /// Ready, Reconciling and Stalled conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of members that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Number of Ready members.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Number of members running the current template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Hash of the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// Members, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<FleetMemberStatus>,
    /// Label selector of the members (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// When the working-hours schedule next starts or stops the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<Time>,
    /// Members replaced because they stayed failed, since the Fleet was created.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub healed_replicas: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}
