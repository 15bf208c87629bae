//! The Azure prerequisites of a storage account: its resource group and the operator-managed
//! VM subnet of the region (`azlin-<location>-vnet/default`) with the `Microsoft.Storage`
//! service endpoint the account's network rule needs.
//!
//! The managed network is shared with the AzlinVM controller: both use the names, prefixes
//! and tags of [`naming`], and both only ever add to it (read-modify-write), so whichever
//! controller comes first creates it and the other finds it.

use std::collections::BTreeMap;

use crate::controllers::error::Error;
use crate::controllers::naming::{
    self, MANAGED_BY, MANAGED_SUBNET, MANAGED_SUBNET_PREFIX, MANAGED_VNET_PREFIX,
    STORAGE_SERVICE_ENDPOINT, TAG_MANAGED_BY,
};
use azlin_arm::ArmClient;
use azlin_arm::network::{Subnet, VirtualNetwork};

/// What [`ensure_resource_group`] and [`ensure_managed_subnet`] wrote, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Nothing had to change.
    Unchanged,
    /// Created.
    Created,
    /// Updated in place.
    Updated,
}

/// Creates resource group `name` in `location` when it does not exist (never deletes or
/// changes an existing one).
pub async fn ensure_resource_group(
    arm: &ArmClient,
    name: &str,
    location: &str,
) -> Result<Prepared, Error> {
    if arm.resources().get(name).await?.is_some() {
        return Ok(Prepared::Unchanged);
    }
    let tags = BTreeMap::from([(TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string())]);
    arm.resources()
        .create_or_update(name, location, &tags)
        .await?;
    Ok(Prepared::Created)
}

/// The id of the managed VM subnet of `location` in `resource_group`.
pub fn managed_subnet_id(arm: &ArmClient, resource_group: &str, location: &str) -> String {
    arm.network()
        .subnets(resource_group, &naming::managed_vnet_name(location))
        .id(MANAGED_SUBNET)
        .to_string()
}

/// Whether a subnet has the `Microsoft.Storage` service endpoint.
pub fn has_storage_endpoint(subnet: &Subnet) -> bool {
    subnet
        .properties
        .service_endpoints
        .iter()
        .any(|e| e.service.eq_ignore_ascii_case(STORAGE_SERVICE_ENDPOINT))
}

/// The body of a new managed virtual network: the managed prefixes, the `default` subnet
/// with the storage service endpoint, the managed-network tags.
pub fn managed_vnet_body(location: &str) -> VirtualNetwork {
    VirtualNetwork::build(
        location,
        &[MANAGED_VNET_PREFIX],
        vec![
            Subnet::build(MANAGED_SUBNET, MANAGED_SUBNET_PREFIX)
                .with_service_endpoint(STORAGE_SERVICE_ENDPOINT),
        ],
    )
    .with_tags(naming::managed_network_tags())
}

/// Makes sure the managed VM subnet exists with the `Microsoft.Storage` service endpoint:
/// creates the managed virtual network when missing, adds the subnet or the endpoint when
/// missing, and never touches a same-named network the operator does not manage. In the
/// common case (the subnet is fine) this is one GET.
pub async fn ensure_managed_subnet(
    arm: &ArmClient,
    resource_group: &str,
    location: &str,
) -> Result<Prepared, Error> {
    let vnet_name = naming::managed_vnet_name(location);
    let subnets = arm.network().subnets(resource_group, &vnet_name);
    let subnet = subnets.get(MANAGED_SUBNET).await?;
    if subnet.as_ref().is_some_and(has_storage_endpoint) {
        return Ok(Prepared::Unchanged);
    }
    let vnets = arm.network().virtual_networks(resource_group);
    let Some(vnet) = vnets.get(&vnet_name).await? else {
        vnets
            .create_or_update(&vnet_name, &managed_vnet_body(location))
            .await?;
        return Ok(Prepared::Created);
    };
    if !naming::is_managed(&vnet.tags) {
        return Err(Error::NotManaged {
            message: format!(
                "virtual network {vnet_name} in resource group {resource_group} exists but is not managed by azlin-operator (no tag {TAG_MANAGED_BY}={MANAGED_BY}); the operator will not add the {STORAGE_SERVICE_ENDPOINT} service endpoint to it. Tag it, delete it, or use another resource group"
            ),
        });
    }
    match subnet {
        Some(subnet) => {
            let mut body = subnet.with_service_endpoint(STORAGE_SERVICE_ENDPOINT);
            body.properties.provisioning_state = None;
            subnets.create_or_update(MANAGED_SUBNET, &body).await?;
            Ok(Prepared::Updated)
        }
        None => {
            let body = Subnet::build(MANAGED_SUBNET, MANAGED_SUBNET_PREFIX)
                .with_service_endpoint(STORAGE_SERVICE_ENDPOINT);
            subnets.create_or_update(MANAGED_SUBNET, &body).await?;
            Ok(Prepared::Updated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_vnet_has_the_storage_endpoint_on_default() {
        let v = serde_json::to_value(managed_vnet_body("westus2")).expect("ser");
        assert_eq!(v["location"], json!("westus2"));
        assert_eq!(
            v["properties"]["addressSpace"]["addressPrefixes"],
            json!([MANAGED_VNET_PREFIX])
        );
        let subnet = &v["properties"]["subnets"][0];
        assert_eq!(subnet["name"], json!("default"));
        assert_eq!(
            subnet["properties"]["serviceEndpoints"],
            json!([{"service": "Microsoft.Storage"}])
        );
        assert_eq!(v["tags"][TAG_MANAGED_BY], json!(MANAGED_BY));
    }

    #[test]
    fn endpoint_detection_ignores_case() {
        let with =
            Subnet::build("default", "10.0.0.0/24").with_service_endpoint("microsoft.storage");
        assert!(has_storage_endpoint(&with));
        assert!(!has_storage_endpoint(&Subnet::build(
            "default",
            "10.0.0.0/24"
        )));
    }
}
