//! `Microsoft.Storage` (api-version 2023-05-01): FileStorage accounts for Azure Files NFS 4.1 and
//! their file shares (`.../fileServices/default/shares/{name}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::client::ArmClient;
use super::collection::ResourceOps;
use super::error::ArmError;
use super::models::{ProvisioningState, Resource, Sku};

const PROVIDER: &str = "Microsoft.Storage";

/// A `virtualNetworkRules` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualNetworkRule {
    /// Subnet id (the subnet needs the `Microsoft.Storage` service endpoint).
    pub id: String,
    /// `Allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Rule state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `networkAcls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRuleSet {
    /// `Deny` or `Allow`.
    pub default_action: String,
    /// E.g. `AzureServices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<String>,
    /// Allowed subnets.
    #[serde(default)]
    pub virtual_network_rules: Vec<VirtualNetworkRule>,
    /// IP rules, preserved untyped.
    #[serde(default)]
    pub ip_rules: Vec<Value>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Properties of a storage account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountProperties {
    /// Must be `false` for NFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_https_traffic_only: Option<bool>,
    /// Network rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_acls: Option<NetworkRuleSet>,
    /// `Enabled` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    /// E.g. `TLS1_2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_tls_version: Option<String>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties (`primaryEndpoints`, ...), preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A storage account.
pub type StorageAccount = Resource<StorageAccountProperties>;

impl StorageAccount {
    /// A `FileStorage` account for NFS 4.1 shares: SKU `sku` (`Premium_LRS` or `Premium_ZRS`),
    /// HTTPS-only off, network default `Deny` with `AzureServices` bypass, and an allow rule per
    /// subnet in `allowed_subnet_ids`.
    pub fn nfs_file_storage(
        location: &str,
        sku: &str,
        allowed_subnet_ids: &[String],
    ) -> StorageAccount {
        Resource {
            sku: Some(Sku::named(sku)),
            kind: Some("FileStorage".to_string()),
            ..Resource::new(
                location,
                StorageAccountProperties {
                    supports_https_traffic_only: Some(false),
                    network_acls: Some(NetworkRuleSet {
                        default_action: "Deny".to_string(),
                        bypass: Some("AzureServices".to_string()),
                        virtual_network_rules: allowed_subnet_ids
                            .iter()
                            .map(|id| VirtualNetworkRule {
                                id: id.clone(),
                                action: Some("Allow".to_string()),
                                state: None,
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    public_network_access: Some("Enabled".to_string()),
                    minimum_tls_version: Some("TLS1_2".to_string()),
                    ..Default::default()
                },
            )
        }
    }
}

/// NFS root squash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootSquash {
    /// Root keeps uid 0 (default).
    NoRootSquash,
    /// Root is mapped to 65534.
    RootSquash,
    /// Everyone is mapped to 65534.
    AllSquash,
}

/// Properties of a file share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileShareProperties {
    /// `NFS` or `SMB` (settable only at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_protocols: Option<String>,
    /// NFS root squash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_squash: Option<RootSquash>,
    /// Quota in GiB (Premium minimum 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_quota: Option<u32>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A file share (no location).
pub type FileShare = Resource<FileShareProperties>;

impl FileShare {
    /// An NFS share body with `quota_gib` and `root_squash`.
    pub fn nfs(quota_gib: u32, root_squash: RootSquash) -> FileShare {
        Resource {
            properties: FileShareProperties {
                enabled_protocols: Some("NFS".to_string()),
                root_squash: Some(root_squash),
                share_quota: Some(quota_gib),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Storage operations; from [`ArmClient::storage`].
#[derive(Debug, Clone, Copy)]
pub struct Storage<'a> {
    client: &'a ArmClient,
}

impl ArmClient {
    /// `Microsoft.Storage` resources.
    pub fn storage(&self) -> Storage<'_> {
        Storage { client: self }
    }
}

impl<'a> Storage<'a> {
    /// Storage accounts in `resource_group` (a create answers 202 + `Location`, which is polled).
    pub fn accounts(&self, resource_group: &str) -> ResourceOps<'a, StorageAccountProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "storageAccounts")
    }

    /// File shares of `account`.
    pub fn file_shares(
        &self,
        resource_group: &str,
        account: &str,
    ) -> ResourceOps<'a, FileShareProperties> {
        let parent = self
            .accounts(resource_group)
            .id(account)
            .child("fileServices", "default");
        ResourceOps::children_of(self.client, parent, "shares")
    }
}

impl ResourceOps<'_, StorageAccountProperties> {
    /// Creates (or updates) an NFS `FileStorage` account and waits.
    pub async fn create_nfs(
        &self,
        name: &str,
        location: &str,
        sku: &str,
        allowed_subnet_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<StorageAccount, ArmError> {
        let body = StorageAccount::nfs_file_storage(location, sku, allowed_subnet_ids)
            .with_tags(tags.clone());
        self.create_or_update(name, &body).await
    }
}

impl ResourceOps<'_, FileShareProperties> {
    /// Creates an NFS share and waits.
    pub async fn create_nfs(
        &self,
        name: &str,
        quota_gib: u32,
        root_squash: RootSquash,
    ) -> Result<FileShare, ArmError> {
        self.create_or_update(name, &FileShare::nfs(quota_gib, root_squash))
            .await
    }

    /// Changes the quota (PATCH).
    pub async fn update_quota(&self, name: &str, quota_gib: u32) -> Result<FileShare, ArmError> {
        self.update(name, &json!({"properties": {"shareQuota": quota_gib}}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_account_body() {
        let a =
            StorageAccount::nfs_file_storage("westus2", "Premium_LRS", &["/subnet".to_string()]);
        let v = serde_json::to_value(&a).expect("ser");
        assert_eq!(v["kind"], json!("FileStorage"));
        assert_eq!(v["sku"], json!({"name": "Premium_LRS"}));
        assert_eq!(v["properties"]["supportsHttpsTrafficOnly"], json!(false));
        assert_eq!(
            v["properties"]["networkAcls"],
            json!({"defaultAction": "Deny", "bypass": "AzureServices", "virtualNetworkRules": [{"id": "/subnet", "action": "Allow"}], "ipRules": []})
        );
        assert_eq!(v["properties"]["publicNetworkAccess"], json!("Enabled"));
    }

    #[test]
    fn nfs_share_body() {
        let v = serde_json::to_value(FileShare::nfs(100, RootSquash::NoRootSquash)).expect("ser");
        assert_eq!(
            v,
            json!({"properties": {"enabledProtocols": "NFS", "rootSquash": "NoRootSquash", "shareQuota": 100}})
        );
        let back: FileShare = serde_json::from_value(json!({"id": "/s", "properties": {"rootSquash": "AllSquash", "shareQuota": 200, "accessTier": "Premium"}})).expect("de");
        assert_eq!(back.properties.root_squash, Some(RootSquash::AllSquash));
        assert!(back.properties.extra.contains_key("accessTier"));
    }
}
