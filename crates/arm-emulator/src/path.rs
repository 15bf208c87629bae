//! Parses ARM request paths (case-insensitive segments) into routes.

use super::kinds::{self, Kind};

/// What a request path addresses.
pub enum Route {
    /// `/subscriptions`: the subscriptions the caller can see.
    Subscriptions,
    /// `/subscriptions/{sub}`
    Subscription {
        /// Subscription id.
        sub: String,
    },
    /// `/tenants`
    Tenants,
    /// `/providers/Microsoft.ResourceGraph/resources`: Azure Resource Graph queries.
    ResourceGraph,
    /// `/subscriptions/{sub}/resources`: every top-level resource of a subscription.
    SubscriptionResources {
        /// Subscription id.
        sub: String,
    },
    /// `/subscriptions/{sub}/providers/Microsoft.Storage/checkNameAvailability`
    CheckNameAvailability {
        /// Subscription id.
        sub: String,
    },
    /// `/subscriptions/{sub}/resourcegroups`
    ResourceGroups {
        /// Subscription id.
        sub: String,
    },
    /// `/subscriptions/{sub}/resourcegroups/{rg}`
    ResourceGroup {
        /// Subscription id.
        sub: String,
        /// Resource group name.
        rg: String,
    },
    /// `/subscriptions/{sub}/resourcegroups/{rg}/resources`: every resource of a group.
    GenericResources {
        /// Subscription id.
        sub: String,
        /// Resource group name.
        rg: String,
    },
    /// `/subscriptions/{sub}/operationresults/{id}` (resource-group deletion `Location`).
    RgOperationResult {
        /// Operation id.
        op: String,
    },
    /// `/subscriptions/{sub}/providers/{ns}/locations/{loc}/operations|operationResults/{id}`
    Operation {
        /// Provider namespace.
        namespace: String,
        /// Operation id.
        op: String,
        /// `operationResults` (the `Location` URL) rather than `operations`.
        result: bool,
    },
    /// A list endpoint of a kind, within a subscription, a resource group or a parent resource.
    Collection {
        /// The listed kind.
        kind: &'static Kind,
        /// Subscription id.
        sub: String,
        /// Resource group, unless subscription-wide.
        rg: Option<String>,
        /// Names of the parent levels (empty for top-level kinds).
        names: Vec<String>,
    },
    /// One resource, optionally with a trailing action/view segment.
    Resource {
        /// Its kind.
        kind: &'static Kind,
        /// Subscription id.
        sub: String,
        /// Resource group name.
        rg: String,
        /// One name per type level.
        names: Vec<String>,
        /// Trailing action (`start`) or view (`instanceView`).
        action: Option<String>,
    },
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Parses a path; `None` means no such ARM endpoint.
pub fn parse(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [t] if eq(t, "tenants") => return Some(Route::Tenants),
        [p, ns, t]
            if eq(p, "providers") && eq(ns, "Microsoft.ResourceGraph") && eq(t, "resources") =>
        {
            return Some(Route::ResourceGraph);
        }
        [s] if eq(s, "subscriptions") => return Some(Route::Subscriptions),
        [s, sub] if eq(s, "subscriptions") => {
            return Some(Route::Subscription {
                sub: sub.to_string(),
            });
        }
        [s, sub, r] if eq(s, "subscriptions") && eq(r, "resources") => {
            return Some(Route::SubscriptionResources {
                sub: sub.to_string(),
            });
        }
        [s, sub, p, ns, c]
            if eq(s, "subscriptions")
                && eq(p, "providers")
                && eq(ns, "Microsoft.Storage")
                && eq(c, "checkNameAvailability") =>
        {
            return Some(Route::CheckNameAvailability {
                sub: sub.to_string(),
            });
        }
        _ => {}
    }
    if segs.len() < 3 || !eq(segs[0], "subscriptions") {
        return None;
    }
    let sub = segs[1].to_string();
    match (segs[2].to_ascii_lowercase().as_str(), segs.len()) {
        ("resourcegroups", 3) => Some(Route::ResourceGroups { sub }),
        ("resourcegroups", 4) => Some(Route::ResourceGroup {
            sub,
            rg: segs[3].to_string(),
        }),
        ("resourcegroups", 5) if eq(segs[4], "resources") => Some(Route::GenericResources {
            sub,
            rg: segs[3].to_string(),
        }),
        ("resourcegroups", n) if n >= 6 && eq(segs[4], "providers") => {
            provider_path(sub, Some(segs[3].to_string()), &segs[5..])
        }
        ("operationresults", 4) => Some(Route::RgOperationResult {
            op: segs[3].to_string(),
        }),
        ("providers", 8) if eq(segs[4], "locations") => {
            let result = if eq(segs[6], "operationResults") {
                true
            } else if eq(segs[6], "operations") {
                false
            } else {
                return None;
            };
            Some(Route::Operation {
                namespace: segs[3].to_string(),
                op: segs[7].to_string(),
                result,
            })
        }
        ("providers", 5) => {
            let kind = kinds::find(&format!("{}/{}", segs[3], segs[4]))?;
            Some(Route::Collection {
                kind,
                sub,
                rg: None,
                names: Vec::new(),
            })
        }
        _ => None,
    }
}

/// `rest` = `[ns, type, name, subtype, subname, ..., action?]`.
fn provider_path(sub: String, rg: Option<String>, rest: &[&str]) -> Option<Route> {
    let rg_name = rg?;
    let mut types = vec![rest.first()?.to_string(), rest.get(1)?.to_string()];
    if !kinds::is_type_prefix(&types.join("/")) {
        return None;
    }
    let mut names = Vec::new();
    let mut i = 2;
    let action = loop {
        let Some(name) = rest.get(i) else {
            // A type without a name: a collection.
            let kind = kinds::find(&types.join("/"))?;
            return Some(Route::Collection {
                kind,
                sub,
                rg: Some(rg_name),
                names,
            });
        };
        names.push(name.to_string());
        i += 1;
        let Some(next) = rest.get(i) else {
            break None;
        };
        let candidate = format!("{}/{}", types.join("/"), next);
        if kinds::is_type_prefix(&candidate) {
            types.push(next.to_string());
            i += 1;
        } else if i + 1 == rest.len() {
            // A trailing action or view segment.
            break Some(next.to_string());
        } else {
            return None;
        }
    };
    let kind = kinds::find(&types.join("/"))?;
    Some(Route::Resource {
        kind,
        sub,
        rg: rg_name,
        names,
        action,
    })
}

/// An id as the Compute RP answers it: the resource-group segment upper-cased
/// (`/subscriptions/s/resourceGroups/MY-RG/providers/...`), the rest as stored.
pub fn compute_casing(id: &str) -> String {
    let mut parts: Vec<String> = id.split('/').map(str::to_string).collect();
    if let Some(i) = parts
        .iter()
        .position(|p| p.eq_ignore_ascii_case("resourceGroups"))
        && let Some(rg) = parts.get_mut(i + 1)
    {
        *rg = rg.to_ascii_uppercase();
    }
    parts.join("/")
}

/// Canonical resource-group id.
pub fn rg_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

/// Canonical id of a resource of `kind` with one name per type level.
pub fn resource_id(sub: &str, rg: &str, kind: &Kind, names: &[String]) -> String {
    let mut types = kind.type_name.split('/');
    let namespace = types.next().unwrap_or_default();
    let mut id = format!("{}/providers/{namespace}", rg_id(sub, rg));
    for (t, n) in types.zip(names) {
        id.push('/');
        id.push_str(t);
        id.push('/');
        id.push_str(n);
    }
    id
}

/// Canonical id of a collection (the resource id without the last name).
pub fn collection_id(sub: &str, rg: Option<&str>, kind: &Kind, names: &[String]) -> String {
    let mut types: Vec<&str> = kind.type_name.split('/').collect();
    let last = types.pop().unwrap_or_default();
    let namespace = types.first().copied().unwrap_or_default();
    let scope = match rg {
        Some(rg) => rg_id(sub, rg),
        None => format!("/subscriptions/{sub}"),
    };
    let mut id = format!("{scope}/providers/{namespace}");
    for (t, n) in types.iter().skip(1).zip(names) {
        id.push('/');
        id.push_str(t);
        id.push('/');
        id.push_str(n);
    }
    id.push('/');
    id.push_str(last);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kind, names and action of `path`, which must parse as a resource route.
    fn resource_route(path: &str) -> (&'static Kind, Vec<String>, Option<String>) {
        match parse(path) {
            Some(Route::Resource {
                kind,
                names,
                action,
                ..
            }) => (kind, names, action),
            _ => panic!("not a resource route: {path}"),
        }
    }

    #[test]
    fn parses_resource_collection_action_and_share_paths() {
        let (kind, names, action) = resource_route(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1/start",
        );
        assert_eq!(kind.type_name, "Microsoft.Compute/virtualMachines");
        assert_eq!(names, vec!["vm1".to_string()]);
        assert_eq!(action.as_deref(), Some("start"));

        let (kind, names, action) = resource_route(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/fileServices/default/shares/x",
        );
        assert_eq!(
            kind.type_name,
            "Microsoft.Storage/storageAccounts/fileServices/shares"
        );
        assert_eq!(names, vec!["a".to_string(), "default".into(), "x".into()]);
        assert!(action.is_none());
        assert_eq!(
            resource_id("s", "rg", kind, &names),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/fileServices/default/shares/x"
        );

        let r = parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets",
        );
        let Some(Route::Collection {
            kind, names, rg, ..
        }) = r
        else {
            panic!("not a collection")
        };
        assert_eq!(kind.short_name(), "subnets");
        assert_eq!(
            collection_id("s", rg.as_deref(), kind, &names),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets"
        );
        assert!(matches!(
            parse("/subscriptions/s/providers/Microsoft.Compute/locations/westus2/operations/abc"),
            Some(Route::Operation { result: false, .. })
        ));
        assert!(
            parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Nope/things/x").is_none()
        );
    }
}
