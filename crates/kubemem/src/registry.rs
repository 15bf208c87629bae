//! The set of served resources: built-in core kinds and CRDs registered at runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::error::{FieldCause, KubeMemError};

/// Validates and defaults objects of a CRD on create, update and patch of the main resource.
///
/// Called after a patch has been applied and before the object is stored. `new` may be changed
/// (defaults); `old` is `None` on create. Returning causes rejects the write with HTTP 422 `Invalid`.
pub trait Admission: Send + Sync {
    /// Admit or reject `new`.
    fn admit(&self, new: &mut Value, old: Option<&Value>) -> Result<(), Vec<FieldCause>>;
}

/// One served resource (group, version, plural) and how it behaves.
#[derive(Clone)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version, e.g. `v1alpha1`.
    pub version: String,
    /// Plural resource name used in paths.
    pub plural: String,
    /// Kind.
    pub kind: String,
    /// Namespaced (true) or cluster scoped.
    pub namespaced: bool,
    /// Has a `status` subresource.
    pub status_subresource: bool,
    /// Custom resource: `metadata.generation` is maintained.
    pub custom: bool,
    /// Admission hook for the main resource.
    pub admission: Option<Arc<dyn Admission>>,
    /// Singular name (discovery), lowercase kind by default.
    pub singular: String,
    /// Short names (discovery), e.g. `avm`.
    pub short_names: Vec<String>,
    /// Categories (discovery), e.g. `azlin` for `kubectl get azlin`.
    pub categories: Vec<String>,
    /// Columns of the `Table` view after `Name` (a CRD's `additionalPrinterColumns`).
    pub printer_columns: Vec<PrinterColumn>,
    /// OpenAPI v3 schema of the objects (a CRD version's `openAPIV3Schema`), published for
    /// `kubectl explain`; also used to find unknown fields (`fieldValidation`).
    pub schema: Option<Value>,
    /// The `scale` subresource (a CRD version's `subresources.scale`).
    pub scale: Option<ScaleSubresource>,
    /// API verbs of the main resource (discovery; other verbs get `405 MethodNotAllowed`).
    pub verbs: Vec<String>,
}

/// The verbs of a stored resource.
pub(crate) const STORED_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Where a resource keeps the fields of its `autoscaling/v1` `Scale` subresource (a CRD's
/// `subresources.scale`), as simple JSON paths such as `.spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSubresource {
    /// Path of the desired replica count (`Scale.spec.replicas`).
    pub spec_replicas_path: String,
    /// Path of the observed replica count (`Scale.status.replicas`).
    pub status_replicas_path: String,
    /// Path of the label selector string (`Scale.status.selector`), if any.
    pub label_selector_path: Option<String>,
}

/// One column of the server-side `Table` view of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Header.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// OpenAPI format (e.g. `name`), may be empty.
    pub format: String,
    /// Description shown by `kubectl explain`-like tools.
    pub description: String,
    /// 0 for default output, higher for `-o wide` only.
    pub priority: i32,
    /// Simple JSONPath evaluated against the object (see `table`), e.g. `.status.phase`.
    pub json_path: String,
}

impl PrinterColumn {
    /// The `Age` column every resource shows by default.
    pub fn age() -> Self {
        Self {
            name: "Age".to_string(),
            type_: "date".to_string(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".to_string(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".to_string(),
        }
    }
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("plural", &self.plural)
            .field("kind", &self.kind)
            .field("namespaced", &self.namespaced)
            .field("status_subresource", &self.status_subresource)
            .field("custom", &self.custom)
            .field("admission", &self.admission.is_some())
            .field("singular", &self.singular)
            .field("short_names", &self.short_names)
            .field("categories", &self.categories)
            .field("printer_columns", &self.printer_columns)
            .field("schema", &self.schema.is_some())
            .field("scale", &self.scale)
            .field("verbs", &self.verbs)
            .finish()
    }
}

impl ResourceInfo {
    /// A built-in resource without status subresource or admission (singular name: lowercase
    /// kind; no short names or categories; an `Age` printer column).
    pub fn core(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
            status_subresource: false,
            custom: false,
            admission: None,
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            printer_columns: vec![PrinterColumn::age()],
            schema: None,
            scale: None,
            verbs: STORED_VERBS.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// A create-only, never stored resource such as `SelfSubjectAccessReview`.
    pub(crate) fn review(group: &str, plural: &str, kind: &str) -> Self {
        let mut r = Self::core(group, "v1", plural, kind, false);
        r.verbs = vec!["create".to_string()];
        r.printer_columns = Vec::new();
        r
    }

    /// Whether the main resource serves `verb` (`get`, `list`, `create`, ...).
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The same resource with these short names.
    pub fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key of the resource: `group/version/plural`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }

    /// `plural.group` (or `plural` for the core group), as used in API messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Status.details` for an object of this resource.
    pub fn details(&self, name: &str) -> Value {
        json!({"name": name, "group": self.group, "kind": self.plural})
    }
}

/// Served resources, looked up by path (group, version, plural) or by (apiVersion, kind).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_path: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
    by_kind: BTreeMap<(String, String), Arc<ResourceInfo>>,
}

impl Registry {
    /// The built-in kinds: Secret, ConfigMap, Event (core and events.k8s.io), Lease, Namespace,
    /// ServiceAccount, and the access reviews of `authorization.k8s.io`.
    pub fn with_core_kinds() -> Self {
        let mut r = Self::default();
        for info in [
            ResourceInfo::core("", "v1", "secrets", "Secret", true),
            ResourceInfo::core("", "v1", "configmaps", "ConfigMap", true).with_short_names(&["cm"]),
            ResourceInfo::core("", "v1", "events", "Event", true).with_short_names(&["ev"]),
            ResourceInfo {
                status_subresource: true,
                ..ResourceInfo::core("", "v1", "namespaces", "Namespace", false)
                    .with_short_names(&["ns"])
            },
            ResourceInfo::core("", "v1", "serviceaccounts", "ServiceAccount", true)
                .with_short_names(&["sa"]),
            ResourceInfo::core("events.k8s.io", "v1", "events", "Event", true),
            ResourceInfo::core("coordination.k8s.io", "v1", "leases", "Lease", true),
            ResourceInfo::review(
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
            ),
            ResourceInfo::review(
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
            ),
        ] {
            r.insert(info);
        }
        r
    }

    /// Adds or replaces a resource.
    pub fn insert(&mut self, info: ResourceInfo) {
        let info = Arc::new(info);
        self.by_path.insert(
            (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            ),
            info.clone(),
        );
        self.by_kind
            .insert((info.api_version(), info.kind.clone()), info);
    }

    /// Resource served at `group/version/plural`.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Every served resource, ordered by (group, version, plural).
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.by_path.values()
    }

    /// Resource for an `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .cloned()
    }
}

/// The served versions of a CRD as resources (all served versions share one admission hook).
pub(crate) fn crd_resources(
    crd: &CustomResourceDefinition,
    admission: Option<Arc<dyn Admission>>,
) -> Result<Vec<ResourceInfo>, KubeMemError> {
    let spec = &crd.spec;
    if spec.group.is_empty() || spec.names.plural.is_empty() || spec.names.kind.is_empty() {
        return Err(KubeMemError::InvalidCrd(
            "group, names.plural and names.kind are required".to_string(),
        ));
    }
    let namespaced = match spec.scope.as_str() {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(KubeMemError::InvalidCrd(format!(
                "scope must be Namespaced or Cluster, got {other:?}"
            )));
        }
    };
    let out: Vec<ResourceInfo> = spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| ResourceInfo {
            group: spec.group.clone(),
            version: v.name.clone(),
            plural: spec.names.plural.clone(),
            kind: spec.names.kind.clone(),
            namespaced,
            status_subresource: v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
            custom: true,
            admission: admission.clone(),
            singular: spec
                .names
                .singular
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| spec.names.kind.to_lowercase()),
            short_names: spec.names.short_names.clone().unwrap_or_default(),
            categories: spec.names.categories.clone().unwrap_or_default(),
            printer_columns: match &v.additional_printer_columns {
                Some(cols) if !cols.is_empty() => cols
                    .iter()
                    .map(|c| PrinterColumn {
                        name: c.name.clone(),
                        type_: c.type_.clone(),
                        format: c.format.clone().unwrap_or_default(),
                        description: c.description.clone().unwrap_or_default(),
                        priority: c.priority.unwrap_or(0),
                        json_path: c.json_path.clone(),
                    })
                    .collect(),
                _ => vec![PrinterColumn::age()],
            },
            schema: v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok()),
            scale: v
                .subresources
                .as_ref()
                .and_then(|s| s.scale.as_ref())
                .map(|s| ScaleSubresource {
                    spec_replicas_path: s.spec_replicas_path.clone(),
                    status_replicas_path: s.status_replicas_path.clone(),
                    label_selector_path: s.label_selector_path.clone(),
                }),
            verbs: STORED_VERBS.iter().map(|v| v.to_string()).collect(),
        })
        .collect();
    if out.is_empty() {
        return Err(KubeMemError::InvalidCrd(format!(
            "{} has no served version",
            crd.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    Ok(out)
}
