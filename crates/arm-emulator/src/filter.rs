//! ARM's `$filter` on the resource-group and generic-resource lists: `tagName eq 'k'`,
//! `tagName eq 'k' and tagValue eq 'v'`, `resourceType eq 'ns/type'` and `resourceGroup eq 'rg'`.

use serde_json::Value;

use super::error::ArmError;

/// A parsed `$filter`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    tag_name: Option<String>,
    tag_value: Option<String>,
    resource_type: Option<String>,
    resource_group: Option<String>,
}

impl ListFilter {
    /// Parses `$filter` (absent → matches everything). Unsupported expressions are a 400
    /// `InvalidFilterInQueryString`, as ARM answers.
    pub fn parse(filter: Option<&str>) -> Result<Self, ArmError> {
        let mut out = Self::default();
        let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
            return Ok(out);
        };
        for clause in split_and(filter) {
            let (field, value) = parse_eq(clause).ok_or_else(|| invalid(filter))?;
            let slot = match field.to_ascii_lowercase().as_str() {
                "tagname" => &mut out.tag_name,
                "tagvalue" => &mut out.tag_value,
                "resourcetype" => &mut out.resource_type,
                "resourcegroup" => &mut out.resource_group,
                _ => return Err(invalid(filter)),
            };
            if slot.replace(value).is_some() {
                return Err(invalid(filter));
            }
        }
        if out.tag_value.is_some() && out.tag_name.is_none() {
            return Err(invalid(filter));
        }
        Ok(out)
    }

    /// Whether an ARM body (with `type` and `tags`) matches.
    pub fn matches(&self, body: &Value) -> bool {
        if let Some(rg) = &self.resource_group {
            let in_group = body["id"].as_str().is_some_and(|id| {
                let segs: Vec<&str> = id.split('/').collect();
                segs.iter()
                    .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
                    .and_then(|i| segs.get(i + 1))
                    .is_some_and(|g| g.eq_ignore_ascii_case(rg))
            });
            if !in_group {
                return false;
            }
        }
        if let Some(t) = &self.resource_type
            && !body["type"]
                .as_str()
                .is_some_and(|b| b.eq_ignore_ascii_case(t))
        {
            return false;
        }
        match (&self.tag_name, &self.tag_value) {
            (Some(name), value) => body["tags"].as_object().is_some_and(|tags| {
                tags.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case(name)
                        && value.as_ref().is_none_or(|want| v.as_str() == Some(want))
                })
            }),
            (None, _) => true,
        }
    }
}

fn split_and(filter: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = filter;
    while let Some(pos) = rest.to_ascii_lowercase().find(" and ") {
        parts.push(rest[..pos].trim());
        rest = &rest[pos + 5..];
    }
    parts.push(rest.trim());
    parts
}

fn parse_eq(clause: &str) -> Option<(String, String)> {
    let lower = clause.to_ascii_lowercase();
    let pos = lower.find(" eq ")?;
    let field = clause[..pos].trim().to_string();
    let value = clause[pos + 4..].trim();
    let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
    Some((field, value.replace("''", "'")))
}

fn invalid(filter: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidFilterInQueryString",
        format!(
            "Invalid $filter '{filter}' specified in the query string: supported are tagName eq '<name>' [and tagValue eq '<value>'], resourceType eq '<type>' and resourceGroup eq '<name>'."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tag_and_type_filters() {
        let body = json!({"type": "Microsoft.Compute/virtualMachines", "tags": {"owner": "a'b", "x": "y"}});
        assert!(ListFilter::parse(None).expect("none").matches(&body));
        assert!(
            ListFilter::parse(Some("tagName eq 'owner' and tagValue eq 'a''b'"))
                .expect("tag")
                .matches(&body)
        );
        assert!(
            !ListFilter::parse(Some("tagName eq 'owner' and tagValue eq 'c'"))
                .expect("tag")
                .matches(&body)
        );
        assert!(
            ListFilter::parse(Some("tagname eq 'x'"))
                .expect("name")
                .matches(&body)
        );
        let located =
            json!({"id": "/subscriptions/s/resourceGroups/RG1/providers/A/b/x", "type": "A/b"});
        assert!(
            ListFilter::parse(Some("resourceGroup eq 'rg1'"))
                .expect("rg")
                .matches(&located)
        );
        assert!(
            !ListFilter::parse(Some("resourceGroup eq 'rg2'"))
                .expect("rg")
                .matches(&located)
        );
        assert!(
            ListFilter::parse(Some("resourceType eq 'microsoft.compute/virtualmachines'"))
                .expect("type")
                .matches(&body)
        );
        assert!(
            !ListFilter::parse(Some(
                "resourceType eq 'Microsoft.Network/networkInterfaces'"
            ))
            .expect("type")
            .matches(&body)
        );
    }

    #[test]
    fn unsupported_filters_are_rejected() {
        for f in [
            "name eq 'x'",
            "tagValue eq 'v'",
            "tagName ne 'x'",
            "tagName eq x",
            "tagName eq 'a' and tagName eq 'b'",
        ] {
            assert!(ListFilter::parse(Some(f)).is_err(), "{f}");
        }
    }
}
