//! Markdown API reference generated from the CRD schemas (`azlin-operator crds --markdown`).
//! The README embeds it and a test keeps the two identical.

use serde_json::Value;

use super::crds;

/// Renders the reference of every kind's `spec` as Markdown tables.
pub fn api_reference_markdown() -> String {
    let mut out = String::new();
    for crd in crds() {
        let names = &crd.spec.names;
        let Some(schema) = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
        else {
            continue;
        };
        let short = names
            .short_names
            .as_ref()
            .map(|s| s.join(", "))
            .unwrap_or_default();
        out.push_str(&format!(
            "### {} (`{}`, short name `{}`)\n\n{}\n\n",
            names.kind,
            names.plural,
            short,
            description(&schema)
        ));
        out.push_str("| field | type | default | description |\n|---|---|---|---|\n");
        let mut rows = Vec::new();
        walk(&schema["properties"]["spec"], "spec", &mut rows);
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn description(schema: &Value) -> String {
    schema["description"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn type_name(schema: &Value) -> String {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return "int or string".into();
    }
    let base = schema["type"].as_str().unwrap_or("object");
    let mut name = match base {
        "array" => format!("[]{}", type_name(&schema["items"])),
        "object" if schema.get("additionalProperties").is_some() => {
            format!("map[string]{}", type_name(&schema["additionalProperties"]))
        }
        other => other.to_string(),
    };
    if let Some(values) = schema["enum"].as_array() {
        let v: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str().map(|s| format!("`{s}`")))
            .collect();
        if !v.is_empty() {
            name = format!("{name}: {}", v.join(" \\| "));
        }
    }
    name
}

fn walk(schema: &Value, path: &str, rows: &mut Vec<String>) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    for (name, prop) in props {
        let field = format!("{path}.{name}");
        let default = match prop.get("default") {
            Some(Value::String(s)) => format!("`{s}`"),
            Some(Value::Object(_)) | Some(Value::Array(_)) => "see below".to_string(),
            Some(v) => format!("`{v}`"),
            None if required.contains(&name.as_str()) => "required".to_string(),
            None => String::new(),
        };
        rows.push(format!(
            "| `{field}` | {} | {default} | {} |",
            type_name(prop),
            description(prop)
        ));
        // A Fleet's member template is an AzlinVM spec, documented once under AzlinVM.
        if nested_is_vm_spec(path, name) {
            continue;
        }
        let nested = if prop["type"] == "array" {
            &prop["items"]
        } else {
            prop
        };
        let nested_path = if prop["type"] == "array" {
            format!("{field}[]")
        } else {
            field
        };
        walk(nested, &nested_path, rows);
    }
}

fn nested_is_vm_spec(path: &str, name: &str) -> bool {
    path == "spec.template" && name == "spec"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_lists_every_kind_and_key_fields() {
        let md = api_reference_markdown();
        for needle in [
            "### AzlinVM (`azlinvms`, short name `avm`)",
            "### SharedStorage",
            "### Fleet",
            "### Backup",
            "| `spec.powerState` | string: `Running` \\| `Stopped` \\| `Deallocated` | `Running` |",
            "| `spec.resourceGroup` | string | required |",
            "| `spec.template.spec` | object | required |",
            "`spec.mounts[].path`",
        ] {
            assert!(md.contains(needle), "reference lacks {needle}:\n{md}");
        }
    }
}
