//! Types shared by several kinds: power state, deletion policy, references and the
//! naming rules the schema enforces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind.
pub const GROUP: &str = "azlin.io";
/// API version of every kind.
pub const VERSION: &str = "v1alpha1";

/// Message of the mount path rule (the rule itself is [`crate::api::mount_path::mount_path_cel_rule`],
/// so the schema accepts exactly the paths the mount script accepts).
pub const MOUNT_PATH_MESSAGE: &str = "spec.mounts[].path must be an absolute path of letters, digits, '.', '_' and '-' without '..' segments, at most 255 characters, not a system directory (/bin, /boot, /dev, /efi, /etc, /lib*, /proc, /root, /run, /sbin, /snap, /sys, /usr, /var/lib, /var/lock, /var/log, /var/mail, /var/run, /var/snap, /var/spool or below), not a user's hidden directory or ~/bin (/home/<user>/.ssh, /home/<user>/.config, /home/<user>/bin or below) and not /home, /home/<user>, /media, /mnt, /opt, /srv, /tmp or /var themselves: use e.g. /mnt/<name> or /data/<name>";

/// Power state an AzlinVM or Fleet should be in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PowerState {
    /// Started and billed.
    #[default]
    Running,
    /// Powered off but still allocated (compute is still billed).
    Stopped,
    /// Powered off and released from the host (compute is not billed).
    Deallocated,
}

impl PowerState {
    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Deallocated => "Deallocated",
        }
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the Azure resources when the object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the Azure resources and wait until Azure has removed them.
    #[default]
    Delete,
    /// Keep the Azure resources, tagged as released by the operator.
    Retain,
}

/// `status.azure.identity` of objects whose Azure resources use the operator's own identity.
pub const IDENTITY_OPERATOR: &str = "operator";
/// `status.azure.identity` of objects whose Azure resources use the namespace's credential
/// Secret `azlin-azure-credentials`.
pub const IDENTITY_NAMESPACE_SECRET: &str = "secret/azlin-azure-credentials";

/// The Azure identity and subscription an object's Azure resources were created with,
/// recorded before anything is created. The operator never manages them with another one:
/// when it is unavailable the object is Stalled (`CredentialUnavailable`) until it is back.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureIdentity {
    /// Credential source: `operator` (the operator's own identity) or
    /// `secret/azlin-azure-credentials` (the namespace's credential Secret).
    pub identity: String,
    /// Azure subscription id.
    pub subscription_id: String,
}

impl AzureIdentity {
    /// Whether `current` is this identity: same source (when known) and subscription.
    pub fn matches(&self, current: &AzureIdentity) -> bool {
        self.subscription_id
            .eq_ignore_ascii_case(&current.subscription_id)
            && (self.identity.is_empty() || self.identity == current.identity)
    }

    /// The subscription of an ARM resource id (`/subscriptions/<id>/...`), as a recorded
    /// identity of unknown source (for objects created before identities were recorded).
    pub fn of_resource_id(id: &str) -> Option<AzureIdentity> {
        let mut parts = id.trim_start_matches('/').split('/');
        match (parts.next(), parts.next()) {
            (Some(k), Some(sub)) if k.eq_ignore_ascii_case("subscriptions") && !sub.is_empty() => {
                Some(AzureIdentity {
                    identity: String::new(),
                    subscription_id: sub.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Reference to a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
pub struct SecretReference {
    /// Name of the Secret (in the object's namespace: a name, never `namespace/name`).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("spec.sshKeySecretRef.name must be the name of a Secret in this namespace: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// CEL rule for an Azure resource group name.
pub const RESOURCE_GROUP_RULE: &str = r"self.matches('^[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]$')";
/// Message for [`RESOURCE_GROUP_RULE`].
pub const RESOURCE_GROUP_MESSAGE: &str = "spec.resourceGroup must be 1-90 characters of letters, digits, '-', '_', '.', '(' or ')' and must not end with '.'";
/// CEL rule for an Azure region name.
pub const LOCATION_RULE: &str = "self.matches('^[a-z][a-z0-9]{1,39}$')";
/// Message for [`LOCATION_RULE`].
pub const LOCATION_MESSAGE: &str = "spec.location must be an Azure region name such as westus2 or eastus: lowercase letters and digits, no spaces (see `az account list-locations -o table`)";
/// CEL rule: the field never changes after creation.
pub const IMMUTABLE_RULE: &str = "self == oldSelf";
