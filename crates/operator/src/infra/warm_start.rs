//! Warm start from Azure Resource Graph: the first snapshots of a resource group after the
//! operator starts come from one Resource Graph query across the group's VMs, NICs, public
//! IPs and disks (1000 rows a read) instead of one ARM list per type (a read per page of
//! about 100 each), so a restarted operator re-observes a thousand VMs in a handful of
//! reads. Later snapshots are ARM lists as before.
//!
//! Resource Graph lags ARM by seconds (sometimes minutes). A warm snapshot is only taken
//! where no object needs one newer than its moment (nothing has written since the start),
//! is reused no longer than any snapshot, and a snapshot that cannot be told exactly from
//! Resource Graph (instance views of VMs whose provisioning is not settled) is listed from
//! ARM. A stale row can at worst make an object repeat a write ARM already holds (every
//! write is idempotent under deterministic names); the object then needs a snapshot newer
//! than its write, which comes from ARM. When Resource Graph cannot answer (an error, a
//! cloud without it), the group's snapshots are listed from ARM.

use std::any::Any;
use std::sync::Arc;

use azlin_arm::{ArmClient, ArmError};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::inventory::{
    Collection, Disks, NetworkInterfaces, PublicIps, Snapshot, VirtualMachineViews, VirtualMachines,
};

/// Columns Resource Graph adds to a resource's ARM representation.
const GRAPH_COLUMNS: [&str; 3] = ["tenantId", "resourceGroup", "subscriptionId"];

/// The Resource Graph query for the resources of `types` in `group`.
pub fn query(group: &str, types: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let types: Vec<String> = types.iter().map(|t| quote(t)).collect();
    format!(
        "Resources | where resourceGroup =~ {} and type in~ ({})",
        quote(group),
        types.join(", ")
    )
}

/// A Resource Graph row in ARM's shape: without the columns Resource Graph adds, its
/// `properties.extended`, and the columns it answers empty (`""` or null) for a resource
/// that has none.
fn arm_shape(row: &Value) -> Value {
    let mut out = row.as_object().cloned().unwrap_or_default();
    out.retain(|k, v| {
        !GRAPH_COLUMNS.contains(&k.as_str()) && !v.is_null() && v.as_str() != Some("")
    });
    if let Some(p) = out.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("extended");
    }
    Value::Object(out)
}

/// The ARM resource a Resource Graph row stands for; `None` when it does not decode.
pub fn decode<T: DeserializeOwned>(row: &Value) -> Option<T> {
    serde_json::from_value(arm_shape(row)).ok()
}

/// A VM row's power state code (`PowerState/running`), from
/// `properties.extended.instanceView.powerState`.
pub fn power_state(row: &Value) -> Option<&str> {
    row.pointer("/properties/extended/instanceView/powerState/code")?
        .as_str()
}

/// One collection's snapshot being built from rows.
trait Sink: Send {
    fn graph_type(&self) -> &'static str;
    fn add(&mut self, row: &Value);
    fn finish(self: Box<Self>) -> Option<(&'static str, Arc<dyn Any + Send + Sync>)>;
}

/// The items of `C` so far; `None` once a row could not stand in for a listed item.
struct Builder<C: Collection>(Option<Vec<(String, C::Item)>>);

impl<C: Collection> Sink for Builder<C> {
    fn graph_type(&self) -> &'static str {
        C::GRAPH_TYPE.unwrap_or_default()
    }

    fn add(&mut self, row: &Value) {
        if let Some(items) = &mut self.0 {
            match C::from_graph(row) {
                Some(item) => items.push(item),
                None => self.0 = None,
            }
        }
    }

    fn finish(self: Box<Self>) -> Option<(&'static str, Arc<dyn Any + Send + Sync>)> {
        let snapshot = Snapshot::listed(self.0?);
        Some((C::NAME, Arc::new(snapshot) as Arc<dyn Any + Send + Sync>))
    }
}

fn builder<C: Collection>() -> Box<dyn Sink> {
    Box::new(Builder::<C>(Some(Vec::new())))
}

/// The snapshots of `group` one Resource Graph query yields, by collection name: none when
/// the group has no such resources at all (ARM's lists then tell an empty group from a
/// missing one).
pub async fn fill(
    arm: &ArmClient,
    group: &str,
) -> Result<Vec<(&'static str, Arc<dyn Any + Send + Sync>)>, ArmError> {
    let mut sinks = vec![
        builder::<VirtualMachines>(),
        builder::<VirtualMachineViews>(),
        builder::<NetworkInterfaces>(),
        builder::<PublicIps>(),
        builder::<Disks>(),
    ];
    let mut types: Vec<&str> = sinks.iter().map(|s| s.graph_type()).collect();
    types.dedup();
    let mut rows = 0usize;
    arm.graph()
        .query_pages(&[arm.subscription_id()], &query(group, &types), |page| {
            rows += page.len();
            for row in &page {
                let kind = row["type"].as_str().unwrap_or_default();
                for sink in sinks.iter_mut() {
                    if sink.graph_type().eq_ignore_ascii_case(kind) {
                        sink.add(row);
                    }
                }
            }
        })
        .await?;
    if rows == 0 {
        return Ok(Vec::new());
    }
    Ok(sinks.into_iter().filter_map(|s| s.finish()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_query_names_the_group_and_types_quoted() {
        assert_eq!(
            query("rg-1", &["microsoft.compute/disks", "x'y"]),
            "Resources | where resourceGroup =~ 'rg-1' and type in~ ('microsoft.compute/disks', 'x\\'y')"
        );
    }

    #[test]
    fn rows_decode_in_arms_shape() {
        let row = json!({
            "id": "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm",
            "name": "vm", "type": "microsoft.compute/virtualmachines", "tenantId": "t",
            "kind": "", "location": "westus2", "resourceGroup": "rg", "subscriptionId": "s",
            "managedBy": "", "sku": null, "plan": null, "tags": {"a": "b"}, "identity": null,
            "zones": null, "extendedLocation": null,
            "properties": {"provisioningState": "Succeeded", "hardwareProfile": {"vmSize": "Standard_B2s"},
                           "extended": {"instanceView": {"powerState": {"code": "PowerState/deallocated"}}}}
        });
        assert_eq!(power_state(&row), Some("PowerState/deallocated"));
        let shaped = arm_shape(&row);
        for gone in [
            "tenantId",
            "resourceGroup",
            "subscriptionId",
            "kind",
            "managedBy",
            "sku",
            "zones",
        ] {
            assert!(shaped.get(gone).is_none(), "{gone}");
        }
        assert!(shaped["properties"].get("extended").is_none());
        let vm: azlin_arm::compute::VirtualMachine = decode(&row).expect("decodes");
        assert_eq!(vm.tags["a"], "b");
        assert!(vm.zones.is_empty());
        assert!(vm.extra.is_empty(), "{:?}", vm.extra);
    }
}
