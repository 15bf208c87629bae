//! Resource groups (`Microsoft.Resources/resourceGroups`, api-version 2021-04-01) and the generic
//! listing of resources in a group (used to find resources by owner tag across types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::api_versions::RESOURCES;
use super::client::ArmClient;
use super::error::ArmError;
use super::id::ResourceId;
use super::lro::Poller;
use super::models::{ProvisioningState, Resource, TagFilter};

/// Properties of a resource group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroupProperties {
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A resource group.
pub type ResourceGroup = Resource<ResourceGroupProperties>;

/// Any resource as returned by the generic resources list (`id`, `name`, `type`, `location`, `tags`).
pub type GenericResource = Resource<Value>;

/// Resource group operations; from [`ArmClient::resources`].
#[derive(Debug, Clone, Copy)]
pub struct ResourceGroups<'a> {
    client: &'a ArmClient,
}

impl ArmClient {
    /// Resource groups and generic resource listing.
    pub fn resources(&self) -> ResourceGroups<'_> {
        ResourceGroups { client: self }
    }
}

impl ResourceGroups<'_> {
    /// The id of group `name`.
    pub fn id(&self, name: &str) -> ResourceId {
        self.client.resource_group_id(name)
    }

    /// GET; `Ok(None)` when the group does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<ResourceGroup>, ArmError> {
        self.client
            .get_json(&self.id(name).to_string(), RESOURCES)
            .await
    }

    /// Whether the group exists.
    pub async fn exists(&self, name: &str) -> Result<bool, ArmError> {
        Ok(self.get(name).await?.is_some())
    }

    /// Creates or updates the group with `tags` (replacing its tags).
    pub async fn create_or_update(
        &self,
        name: &str,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<ResourceGroup, ArmError> {
        let body = ResourceGroup::new(location, ResourceGroupProperties::default())
            .with_tags(tags.clone());
        self.client
            .put_json(&self.id(name).to_string(), RESOURCES, &body)
            .await
    }

    /// Deletes the group and everything in it; waits until it is gone.
    pub async fn delete(&self, name: &str) -> Result<(), ArmError> {
        self.client
            .delete(&self.id(name).to_string(), RESOURCES)
            .await
    }

    /// Starts deleting the group without waiting.
    pub async fn begin_delete(&self, name: &str) -> Result<Poller, ArmError> {
        self.client
            .begin_delete(&self.id(name).to_string(), RESOURCES)
            .await
    }

    /// Groups in the subscription, optionally filtered by tag (server-side `$filter`).
    pub async fn list(&self, filter: Option<&TagFilter>) -> Result<Vec<ResourceGroup>, ArmError> {
        let path = format!(
            "{}/resourcegroups",
            ResourceId::subscription(self.client.subscription_id())
        );
        self.list_filtered(&path, filter).await
    }

    /// Resources of any type in group `resource_group`, optionally filtered by tag (server-side).
    pub async fn list_resources(
        &self,
        resource_group: &str,
        filter: Option<&TagFilter>,
    ) -> Result<Vec<GenericResource>, ArmError> {
        let path = format!("{}/resources", self.id(resource_group));
        self.list_filtered(&path, filter).await
    }

    async fn list_filtered<P: serde::de::DeserializeOwned + Default>(
        &self,
        path: &str,
        filter: Option<&TagFilter>,
    ) -> Result<Vec<Resource<P>>, ArmError> {
        let odata = filter.map(TagFilter::to_odata);
        let query: Vec<(&str, &str)> = odata.iter().map(|f| ("$filter", f.as_str())).collect();
        let mut items: Vec<Resource<P>> = self.client.list_json(path, RESOURCES, &query).await?;
        // Re-check client-side: a server that ignores `$filter` must not widen the result.
        if let Some(f) = filter {
            items.retain(|r| f.matches(&r.tags));
        }
        Ok(items)
    }
}
