//! [`ResourceOps`]: typed create/read/update/delete/list/action calls for one resource collection
//! (e.g. the virtual machines of a resource group, the subnets of a virtual network). The
//! per-family modules hand these out and add type-specific helpers on top.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::{ArmClient, api_version_of};
use super::error::ArmError;
use super::id::ResourceId;
use super::lro::Poller;
use super::models::{Resource, TagFilter};

/// Typed operations on the resources of one type under one parent (a resource group for
/// top-level types, the parent resource for child types). `P` is the `properties` model.
pub struct ResourceOps<'a, P> {
    client: &'a ArmClient,
    parent: ResourceId,
    provider: &'static str,
    resource_type: &'static str,
    _model: PhantomData<fn() -> P>,
}

impl<P> Clone for ResourceOps<'_, P> {
    fn clone(&self) -> Self {
        ResourceOps {
            parent: self.parent.clone(),
            _model: PhantomData,
            ..*self
        }
    }
}

impl<'a, P> std::fmt::Debug for ResourceOps<'a, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceOps")
            .field("parent", &self.parent.to_string())
            .field("type", &self.resource_type)
            .finish()
    }
}

impl<'a, P> ResourceOps<'a, P>
where
    P: Serialize + DeserializeOwned + Default,
{
    /// Top-level resources `provider/resource_type` in resource group `resource_group`.
    pub fn in_group(
        client: &'a ArmClient,
        resource_group: &str,
        provider: &'static str,
        resource_type: &'static str,
    ) -> Self {
        ResourceOps {
            client,
            parent: client.resource_group_id(resource_group),
            provider,
            resource_type,
            _model: PhantomData,
        }
    }

    /// Child resources `child_type` of `parent` (e.g. `subnets` of a virtual network).
    pub fn children_of(
        client: &'a ArmClient,
        parent: ResourceId,
        child_type: &'static str,
    ) -> Self {
        ResourceOps {
            client,
            parent,
            provider: "",
            resource_type: child_type,
            _model: PhantomData,
        }
    }

    /// The client.
    pub fn client(&self) -> &'a ArmClient {
        self.client
    }

    /// The id of resource `name` in this collection.
    pub fn id(&self, name: &str) -> ResourceId {
        if self.parent.provider().is_none() {
            self.parent
                .provider_resource(self.provider, self.resource_type, name)
        } else {
            self.parent.child(self.resource_type, name)
        }
    }

    fn collection_path(&self) -> String {
        if self.parent.provider().is_none() {
            format!(
                "{}/providers/{}/{}",
                self.parent, self.provider, self.resource_type
            )
        } else {
            format!("{}/{}", self.parent, self.resource_type)
        }
    }

    fn target(&self, name: &str) -> Result<(String, &'static str), ArmError> {
        let id = self.id(name);
        let version = api_version_of(&id)?;
        Ok((id.to_string(), version))
    }

    /// GET; `Ok(None)` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Resource<P>>, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.get_json(&path, version).await
    }

    /// GET with extra query pairs (e.g. `$expand`); `Ok(None)` when it does not exist.
    pub async fn get_query(
        &self,
        name: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<Resource<P>>, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.get_json_query(&path, version, query).await
    }

    /// Whether it exists.
    pub async fn exists(&self, name: &str) -> Result<bool, ArmError> {
        let (path, version) = self.target(name)?;
        Ok(self
            .client
            .get_json::<Value>(&path, version)
            .await?
            .is_some())
    }

    /// PUT (create or replace) and wait until provisioned.
    pub async fn create_or_update(
        &self,
        name: &str,
        body: &Resource<P>,
    ) -> Result<Resource<P>, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.put_json(&path, version, body).await
    }

    /// Start a PUT without waiting.
    pub async fn begin_create_or_update(
        &self,
        name: &str,
        body: &Resource<P>,
    ) -> Result<Poller, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.begin_put_json(&path, version, body).await
    }

    /// PATCH with a partial body (e.g. `{"properties": {"shareQuota": 200}}`) and wait.
    pub async fn update(&self, name: &str, patch: &Value) -> Result<Resource<P>, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.patch_json(&path, version, patch).await
    }

    /// Start a PATCH with a partial body without waiting.
    pub async fn begin_update(&self, name: &str, patch: &Value) -> Result<Poller, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.begin_patch_json(&path, version, patch).await
    }

    /// DELETE and wait until gone (already gone is success).
    pub async fn delete(&self, name: &str) -> Result<(), ArmError> {
        let (path, version) = self.target(name)?;
        self.client.delete(&path, version).await
    }

    /// Start a DELETE without waiting.
    pub async fn begin_delete(&self, name: &str) -> Result<Poller, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.begin_delete(&path, version).await
    }

    /// POST action `action` (e.g. `start`) and wait; returns its result body, if any.
    pub async fn action(&self, name: &str, action: &str) -> Result<Option<Value>, ArmError> {
        let (path, version) = self.target(name)?;
        self.client.post_action(&path, action, version, None).await
    }

    /// Start POST action `action` without waiting.
    pub async fn begin_action(&self, name: &str, action: &str) -> Result<Poller, ArmError> {
        let (path, version) = self.target(name)?;
        self.client
            .begin_post_action(&path, action, version, None)
            .await
    }

    /// Waits until resource `name` reaches a terminal provisioningState (see [`ArmClient::wait_provisioned`]).
    pub async fn wait_provisioned(&self, name: &str) -> Result<Resource<P>, ArmError> {
        super::client::decode(self.client.wait_provisioned(&self.id(name)).await?)
    }

    /// All resources in the collection (all pages).
    pub async fn list(&self) -> Result<Vec<Resource<P>>, ArmError> {
        self.list_query(&[]).await
    }

    /// All resources in the collection (all pages), with extra query pairs (e.g. `$expand`).
    pub async fn list_query(&self, query: &[(&str, &str)]) -> Result<Vec<Resource<P>>, ArmError> {
        let version = api_version_of(&self.id("x"))?;
        self.client
            .list_json(&self.collection_path(), version, query)
            .await
    }

    /// The sustained rate at which the provider lets this collection be listed with `query`
    /// (see [`ArmClient::provider_rate`]).
    pub fn list_rate(&self, query: &[(&str, &str)]) -> Option<f64> {
        self.client
            .provider_rate(&reqwest::Method::GET, &self.collection_path(), query)
    }

    /// The resources carrying the tag (filtered client-side: these collections have no tag `$filter`).
    pub async fn list_tagged(&self, filter: &TagFilter) -> Result<Vec<Resource<P>>, ArmError> {
        let mut items = self.list().await?;
        items.retain(|r| filter.matches(&r.tags));
        Ok(items)
    }
}
