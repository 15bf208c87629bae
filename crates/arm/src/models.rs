//! Shared model pieces: the generic ARM resource envelope, SKU, sub-resource references,
//! provisioning state and tag filters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lro::OperationState;

/// The ARM envelope around a resource's `properties`. Unknown top-level fields are kept in
/// `extra` so read-modify-write round-trips them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource<P> {
    /// Full resource id (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Resource name (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resource type (read-only), e.g. `Microsoft.Compute/virtualMachines`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Region. Absent on child resources such as subnets and file shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Availability zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// SKU (public IPs, disks, snapshots, storage accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// Kind (storage accounts: `FileStorage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Entity tag (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Resource-specific properties.
    #[serde(default)]
    pub properties: P,
    /// Other top-level fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<P: Default> Resource<P> {
    /// A new resource body in `location` with `properties`.
    pub fn new(location: impl Into<String>, properties: P) -> Resource<P> {
        Resource {
            location: Some(location.into()),
            properties,
            ..Resource::default()
        }
    }
}

impl<P> Resource<P> {
    /// Adds tags.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = (String, String)>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// Whether the resource carries tag `key` = `value`.
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        self.tags.get(key).is_some_and(|v| v == value)
    }
}

/// A SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    /// SKU name, e.g. `Standard`, `Premium_LRS`.
    pub name: String,
    /// SKU tier, e.g. `Regional`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

impl Sku {
    /// A SKU with only a name.
    pub fn named(name: impl Into<String>) -> Sku {
        Sku {
            name: name.into(),
            tier: None,
        }
    }
}

/// A reference to another resource: `{"id": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubResource {
    /// The referenced resource id.
    pub id: String,
}

impl SubResource {
    /// A reference to `id`.
    pub fn new(id: impl ToString) -> SubResource {
        SubResource { id: id.to_string() }
    }
}

/// A resource's `provisioningState` as ARM reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProvisioningState(pub String);

impl ProvisioningState {
    /// Parsed state.
    pub fn state(&self) -> OperationState {
        OperationState::parse(&self.0)
    }

    /// Whether the state is Succeeded.
    pub fn is_succeeded(&self) -> bool {
        self.state() == OperationState::Succeeded
    }

    /// Whether the state is final (Succeeded, Failed, Canceled).
    pub fn is_terminal(&self) -> bool {
        self.state().is_terminal()
    }
}

/// An ARM `$filter` on a tag (`tagName eq 'k' and tagValue eq 'v'`), supported by the resource
/// group and generic resource list operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// Tag name.
    pub name: String,
    /// Tag value; `None` matches any value.
    pub value: Option<String>,
}

impl TagFilter {
    /// Resources with tag `name` = `value`.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> TagFilter {
        TagFilter {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// Resources with tag `name`, any value.
    pub fn exists(name: impl Into<String>) -> TagFilter {
        TagFilter {
            name: name.into(),
            value: None,
        }
    }

    /// The OData `$filter` expression (single quotes doubled as OData requires).
    pub fn to_odata(&self) -> String {
        let q = |s: &str| s.replace('\'', "''");
        match &self.value {
            Some(v) => format!("tagName eq '{}' and tagValue eq '{}'", q(&self.name), q(v)),
            None => format!("tagName eq '{}'", q(&self.name)),
        }
    }

    /// Whether `tags` match (for client-side filtering of lists without server-side `$filter`).
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        match (&self.value, tags.get(&self.name)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Props {
        #[serde(default)]
        size: Option<u32>,
        #[serde(flatten)]
        extra: Map<String, Value>,
    }

    #[test]
    fn unknown_fields_roundtrip() {
        let input = serde_json::json!({
            "id": "/x", "name": "n", "type": "T", "location": "westus2",
            "tags": {"owner": "a"}, "identity": {"type": "SystemAssigned"},
            "properties": {"size": 3, "future": {"nested": true}}
        });
        let r: Resource<Props> = serde_json::from_value(input.clone()).expect("de");
        assert_eq!(r.properties.size, Some(3));
        assert!(r.extra.contains_key("identity"));
        assert!(r.has_tag("owner", "a"));
        assert_eq!(serde_json::to_value(&r).expect("ser"), input);
    }

    #[test]
    fn tag_filters() {
        assert_eq!(
            TagFilter::eq("owner", "o'k").to_odata(),
            "tagName eq 'owner' and tagValue eq 'o''k'"
        );
        assert_eq!(TagFilter::exists("owner").to_odata(), "tagName eq 'owner'");
        let tags: BTreeMap<String, String> = [("owner".to_string(), "x".to_string())].into();
        assert!(TagFilter::eq("owner", "x").matches(&tags));
        assert!(!TagFilter::eq("owner", "y").matches(&tags));
        assert!(TagFilter::exists("owner").matches(&tags));
        assert!(!TagFilter::exists("other").matches(&tags));
    }

    #[test]
    fn provisioning_state() {
        assert!(ProvisioningState("Succeeded".into()).is_succeeded());
        assert!(ProvisioningState("Failed".into()).is_terminal());
        assert!(!ProvisioningState("Creating".into()).is_terminal());
    }
}
