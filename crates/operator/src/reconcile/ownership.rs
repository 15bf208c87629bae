//! Ownership of Azure resources: the tags every resource the operator creates carries,
//! and the adoption rule that decides whether an existing resource is ours.
//!
//! A resource with our `managed-by` tag and the same namespace/name/kind tags is ours (its
//! uid tag is rewritten when the object was re-created, or after `deletionPolicy: Retain`
//! released it); a same-named resource without our `managed-by` tag, or one belonging to
//! another object, is never touched.

use std::collections::BTreeMap;

/// Tag key marking resources created by the operator.
pub const TAG_MANAGED_BY: &str = "managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY: &str = "azlin-operator";
/// Tag key: uid of the owning Kubernetes object.
pub const TAG_UID: &str = "azlin-operator-uid";
/// Tag key: namespace of the owning object.
pub const TAG_NAMESPACE: &str = "azlin-operator-namespace";
/// Tag key: name of the owning object.
pub const TAG_NAME: &str = "azlin-operator-name";
/// Tag key: kind of the owning object.
pub const TAG_KIND: &str = "azlin-operator-kind";
/// Tag key: the credential source the owning object's resources are managed with
/// (`status.azure.identity`: `operator` or `secret/azlin-azure-credentials`).
pub const TAG_IDENTITY: &str = "azlin-operator-identity";
/// Tag key set to `true` on resources left behind by `deletionPolicy: Retain`.
pub const TAG_RELEASED: &str = "azlin-operator-released";
/// Kind tag value of the shared, operator-managed network (vnet, subnet, NSG).
pub const MANAGED_NETWORK_KIND: &str = "ManagedNetwork";

/// The Kubernetes object owning Azure resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Kind, e.g. `AzlinVM`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The credential source its resources are managed with (tag [`TAG_IDENTITY`]), when
    /// known. Not part of the adoption rule.
    pub identity: Option<String>,
}

impl Owner {
    /// The ownership tags every resource of this object carries.
    pub fn tags(&self) -> BTreeMap<String, String> {
        [
            (TAG_MANAGED_BY, MANAGED_BY),
            (TAG_UID, self.uid.as_str()),
            (TAG_NAMESPACE, self.namespace.as_str()),
            (TAG_NAME, self.name.as_str()),
            (TAG_KIND, self.kind.as_str()),
        ]
        .into_iter()
        .chain(self.identity.as_deref().map(|i| (TAG_IDENTITY, i)))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Ownership tags plus the user's extra tags: keys reserved for the operator (in any
    /// case) cannot override the ownership tags, and keys Azure reserves are left out.
    pub fn tags_with(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut tags: BTreeMap<String, String> = extra
            .iter()
            .filter(|(k, _)| !is_reserved_tag(k) && !is_azure_reserved_tag(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tags.extend(self.tags());
        tags
    }

    /// `namespace/name` for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Tags of the shared managed network (not owned by one object).
pub fn managed_network_tags() -> BTreeMap<String, String> {
    [
        (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (TAG_KIND.to_string(), MANAGED_NETWORK_KIND.to_string()),
    ]
    .into()
}

/// Tag-name prefixes Azure reserves (compared without case).
pub const AZURE_RESERVED_TAG_PREFIXES: &[&str] = &["microsoft", "azure", "windows"];

/// Whether a tag key is reserved for the operator. Azure tag names are case-insensitive,
/// so `Managed-By` is the same tag as `managed-by`.
pub fn is_reserved_tag(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == TAG_MANAGED_BY || key.starts_with("azlin-operator")
}

/// Whether a tag key starts with a prefix Azure reserves.
pub fn is_azure_reserved_tag(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    AZURE_RESERVED_TAG_PREFIXES
        .iter()
        .any(|p| key.starts_with(p))
}

/// `tags` with [`TAG_RELEASED`] set (for `deletionPolicy: Retain`).
pub fn released(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut t = tags.clone();
    t.insert(TAG_RELEASED.to_string(), "true".to_string());
    t
}

/// How an existing Azure resource relates to an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Ours, tags current.
    Owned,
    /// Ours by namespace/name/kind but with another (or no) uid, or marked released:
    /// adopt it by rewriting the tags.
    Adopt,
    /// Not ours: never touch it.
    Foreign {
        /// Why, for the Stalled message.
        reason: String,
    },
}

/// Applies the adoption rule to the tags of an existing resource.
pub fn ownership(tags: &BTreeMap<String, String>, owner: &Owner) -> Ownership {
    if tags.get(TAG_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
        return Ownership::Foreign {
            reason: format!("it has no tag {TAG_MANAGED_BY}={MANAGED_BY}"),
        };
    }
    let same = |key: &str, want: &str| tags.get(key).map(String::as_str) == Some(want);
    if !(same(TAG_NAMESPACE, &owner.namespace)
        && same(TAG_NAME, &owner.name)
        && same(TAG_KIND, &owner.kind))
    {
        return Ownership::Foreign {
            reason: format!(
                "it belongs to {} {}/{}",
                tags.get(TAG_KIND).map(String::as_str).unwrap_or("?"),
                tags.get(TAG_NAMESPACE).map(String::as_str).unwrap_or("?"),
                tags.get(TAG_NAME).map(String::as_str).unwrap_or("?"),
            ),
        };
    }
    if same(TAG_UID, &owner.uid) && !tags.contains_key(TAG_RELEASED) {
        Ownership::Owned
    } else {
        Ownership::Adopt
    }
}

/// Whether a shared resource (vnet, NSG) may be used and updated by the operator.
pub fn is_managed(tags: &BTreeMap<String, String>) -> bool {
    tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            kind: "AzlinVM".into(),
            namespace: "team-a".into(),
            name: "dev1".into(),
            uid: "u-1".into(),
            identity: None,
        }
    }

    #[test]
    fn tags_and_reserved_keys() {
        let extra: BTreeMap<String, String> = [
            ("team".to_string(), "a".to_string()),
            ("managed-by".to_string(), "me".to_string()),
            ("azlin-operator-uid".to_string(), "x".to_string()),
            ("Managed-By".to_string(), "me".to_string()),
            ("AZLIN-OPERATOR-UID".to_string(), "x".to_string()),
            ("Azlin-Operator-Name".to_string(), "x".to_string()),
            ("MicrosoftThing".to_string(), "x".to_string()),
            ("azure-x".to_string(), "x".to_string()),
            ("WINDOWS".to_string(), "x".to_string()),
        ]
        .into();
        let t = owner().tags_with(&extra);
        let lower: Vec<String> = t.keys().map(|k| k.to_ascii_lowercase()).collect();
        let mut unique = lower.clone();
        unique.dedup();
        assert_eq!(lower, unique, "no two tags differ only by case: {t:?}");
        assert_eq!(t.len(), 6, "{t:?}");
        assert!(is_reserved_tag("MANAGED-BY") && is_reserved_tag("Azlin-Operator-X"));
        assert!(!is_reserved_tag("managed-by-team") && !is_azure_reserved_tag("team-azure"));
        assert_eq!(t["team"], "a");
        assert_eq!(t[TAG_MANAGED_BY], MANAGED_BY);
        assert_eq!(t[TAG_UID], "u-1");
        assert_eq!(t[TAG_NAMESPACE], "team-a");
        assert_eq!(t[TAG_NAME], "dev1");
        assert_eq!(t[TAG_KIND], "AzlinVM");
        assert_eq!(released(&t)[TAG_RELEASED], "true");
    }

    #[test]
    fn adoption_rule() {
        let o = owner();
        assert_eq!(ownership(&o.tags(), &o), Ownership::Owned);
        let mut other_uid = o.tags();
        other_uid.insert(TAG_UID.into(), "old".into());
        assert_eq!(ownership(&other_uid, &o), Ownership::Adopt);
        assert_eq!(ownership(&released(&o.tags()), &o), Ownership::Adopt);
        let mut no_uid = o.tags();
        no_uid.remove(TAG_UID);
        assert_eq!(ownership(&no_uid, &o), Ownership::Adopt);
        assert!(matches!(
            ownership(&BTreeMap::new(), &o),
            Ownership::Foreign { .. }
        ));
        let mut other_object = o.tags();
        other_object.insert(TAG_NAME.into(), "dev2".into());
        match ownership(&other_object, &o) {
            Ownership::Foreign { reason } => assert!(reason.contains("team-a/dev2"), "{reason}"),
            other => panic!("expected Foreign, got {other:?}"),
        }
        assert!(is_managed(&managed_network_tags()));
        assert!(!is_managed(&BTreeMap::new()));
        let with_identity = Owner {
            identity: Some("operator".into()),
            ..o.clone()
        };
        assert_eq!(with_identity.tags()[TAG_IDENTITY], "operator");
        assert_eq!(ownership(&with_identity.tags(), &o), Ownership::Owned);
        assert_eq!(ownership(&o.tags(), &with_identity), Ownership::Owned);
    }
}
