//! ARM resource ids: `/subscriptions/{sub}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}[/{childType}/{childName}]*`.
//!
//! ARM treats ids case-insensitively; [`ResourceId::eq_ignore_case`] compares that way, while
//! `Display` keeps the case given (with the canonical `resourceGroups` / `providers` segments).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed ARM resource id (subscription, resource group, or provider resource with children).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    subscription: String,
    resource_group: Option<String>,
    provider: Option<String>,
    /// `(type, name)` pairs: the top-level type first, then child types.
    segments: Vec<(String, String)>,
}

/// Why a string is not a resource id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ARM resource id {id:?}: {reason}")]
pub struct ParseIdError {
    /// The input.
    pub id: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl ResourceId {
    /// The id of a subscription: `/subscriptions/{sub}`.
    pub fn subscription(subscription: impl Into<String>) -> ResourceId {
        ResourceId {
            subscription: subscription.into(),
            resource_group: None,
            provider: None,
            segments: Vec::new(),
        }
    }

    /// The id of a resource group: `/subscriptions/{sub}/resourceGroups/{rg}`.
    pub fn resource_group(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
    ) -> ResourceId {
        ResourceId {
            resource_group: Some(resource_group.into()),
            ..ResourceId::subscription(subscription)
        }
    }

    /// The id of a top-level resource, e.g. `new(sub, rg, "Microsoft.Compute", "virtualMachines", "vm1")`.
    pub fn new(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        provider: impl Into<String>,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> ResourceId {
        ResourceId {
            provider: Some(provider.into()),
            segments: vec![(resource_type.into(), name.into())],
            ..ResourceId::resource_group(subscription, resource_group)
        }
    }

    /// A resource of `provider/resource_type` named `name` in this resource group (or subscription).
    pub fn provider_resource(
        &self,
        provider: impl Into<String>,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> ResourceId {
        ResourceId {
            subscription: self.subscription.clone(),
            resource_group: self.resource_group.clone(),
            provider: Some(provider.into()),
            segments: vec![(resource_type.into(), name.into())],
        }
    }

    /// A child resource, e.g. `vnet.child("subnets", "default")`.
    pub fn child(&self, child_type: impl Into<String>, name: impl Into<String>) -> ResourceId {
        let mut id = self.clone();
        id.segments.push((child_type.into(), name.into()));
        id
    }

    /// Subscription id.
    pub fn subscription_id(&self) -> &str {
        &self.subscription
    }

    /// Resource group name, if the id is inside one.
    pub fn resource_group_name(&self) -> Option<&str> {
        self.resource_group.as_deref()
    }

    /// Provider namespace, e.g. `Microsoft.Compute`.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// Name of the resource the id points at (the last segment: resource, resource group or subscription).
    pub fn name(&self) -> &str {
        match (self.segments.last(), &self.resource_group) {
            (Some((_, n)), _) => n,
            (None, Some(rg)) => rg,
            (None, None) => &self.subscription,
        }
    }

    /// Full type, e.g. `Microsoft.Network/virtualNetworks/subnets`, or
    /// `Microsoft.Resources/resourceGroups` / `Microsoft.Resources/subscriptions`.
    pub fn resource_type(&self) -> String {
        match &self.provider {
            Some(p) => {
                let mut t = p.clone();
                for (ty, _) in &self.segments {
                    t.push('/');
                    t.push_str(ty);
                }
                t
            }
            None if self.resource_group.is_some() => {
                "Microsoft.Resources/resourceGroups".to_string()
            }
            None => "Microsoft.Resources/subscriptions".to_string(),
        }
    }

    /// The `(type, name)` segments below the provider.
    pub fn segments(&self) -> &[(String, String)] {
        &self.segments
    }

    /// The parent resource (drops the last child segment); `None` for a top-level resource or above.
    pub fn parent(&self) -> Option<ResourceId> {
        if self.segments.len() < 2 {
            return None;
        }
        let mut id = self.clone();
        id.segments.pop();
        Some(id)
    }

    /// The resource group id this resource lives in.
    pub fn resource_group_id(&self) -> Option<ResourceId> {
        self.resource_group
            .as_ref()
            .map(|rg| ResourceId::resource_group(self.subscription.clone(), rg.clone()))
    }

    /// Case-insensitive comparison, as ARM compares ids.
    pub fn eq_ignore_case(&self, other: &ResourceId) -> bool {
        self.to_string().eq_ignore_ascii_case(&other.to_string())
    }

    /// Parses an id (same as `str::parse`).
    pub fn parse(s: &str) -> Result<ResourceId, ParseIdError> {
        s.parse()
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/subscriptions/{}", self.subscription)?;
        if let Some(rg) = &self.resource_group {
            write!(f, "/resourceGroups/{rg}")?;
        }
        if let Some(p) = &self.provider {
            write!(f, "/providers/{p}")?;
            for (t, n) in &self.segments {
                write!(f, "/{t}/{n}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for ResourceId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseIdError {
            id: s.to_string(),
            reason,
        };
        let trimmed = s.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err("empty path segment"));
        }
        let mut it = parts.into_iter();
        match it.next() {
            Some(p) if p.eq_ignore_ascii_case("subscriptions") => {}
            _ => return Err(err("must start with /subscriptions/")),
        }
        let subscription = it.next().ok_or_else(|| err("missing subscription id"))?;
        let mut id = ResourceId::subscription(subscription);
        let mut next = it.next();
        if next.is_some_and(|p| p.eq_ignore_ascii_case("resourceGroups")) {
            let rg = it
                .next()
                .ok_or_else(|| err("missing resource group name"))?;
            id.resource_group = Some(rg.to_string());
            next = it.next();
        }
        let Some(p) = next else { return Ok(id) };
        if !p.eq_ignore_ascii_case("providers") {
            return Err(err("expected 'providers' segment"));
        }
        let namespace = it.next().ok_or_else(|| err("missing provider namespace"))?;
        id.provider = Some(namespace.to_string());
        let rest: Vec<&str> = it.collect();
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err(err("resource types and names must come in pairs"));
        }
        id.segments = rest
            .chunks(2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect();
        Ok(id)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_roundtrip() {
        let vnet = ResourceId::new(
            "sub1",
            "rg1",
            "Microsoft.Network",
            "virtualNetworks",
            "vnet1",
        );
        let subnet = vnet.child("subnets", "default");
        let s = subnet.to_string();
        assert_eq!(
            s,
            "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/default"
        );
        let parsed: ResourceId = s.parse().expect("parses");
        assert_eq!(parsed, subnet);
        assert_eq!(parsed.name(), "default");
        assert_eq!(
            parsed.resource_type(),
            "Microsoft.Network/virtualNetworks/subnets"
        );
        assert_eq!(parsed.parent(), Some(vnet.clone()));
        assert_eq!(parsed.resource_group_name(), Some("rg1"));
        assert_eq!(parsed.provider(), Some("Microsoft.Network"));
        assert_eq!(vnet.parent(), None);
    }

    #[test]
    fn parses_case_insensitive_and_scopes() {
        let id = ResourceId::parse(
            "/SUBSCRIPTIONS/s/resourcegroups/RG/PROVIDERS/microsoft.compute/virtualmachines/VM1/",
        )
        .expect("parses");
        assert_eq!(id.name(), "VM1");
        assert!(id.eq_ignore_case(&ResourceId::new(
            "s",
            "rg",
            "Microsoft.Compute",
            "virtualMachines",
            "vm1"
        )));
        let rg = ResourceId::parse("/subscriptions/s/resourceGroups/rg").expect("rg");
        assert_eq!(rg.name(), "rg");
        assert_eq!(rg.resource_type(), "Microsoft.Resources/resourceGroups");
        assert_eq!(
            id.resource_group_id(),
            Some(ResourceId::resource_group("s", "RG"))
        );
        let sub = ResourceId::parse("/subscriptions/s").expect("sub");
        assert_eq!(sub.name(), "s");
        let share = ResourceId::new("s", "rg", "Microsoft.Storage", "storageAccounts", "acct")
            .child("fileServices", "default")
            .child("shares", "home");
        assert_eq!(
            share.resource_type(),
            "Microsoft.Storage/storageAccounts/fileServices/shares"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "subscriptions/s",
            "/subscriptions",
            "/subscriptions/s/resourceGroups",
            "/subscriptions/s/resourceGroups/rg/providers",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines",
            "/subscriptions/s//resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg/foo/bar",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn serde_as_string() {
        let id = ResourceId::new("s", "rg", "Microsoft.Compute", "disks", "d1");
        let v = serde_json::to_value(&id).expect("ser");
        assert_eq!(
            v,
            serde_json::json!(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
            )
        );
        let back: ResourceId = serde_json::from_value(v).expect("de");
        assert_eq!(back, id);
    }
}
