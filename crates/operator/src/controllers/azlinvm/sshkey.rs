//! The admin SSH key pair of a VM: generated into Secret `<name>-ssh` (type
//! `kubernetes.io/ssh-auth`, owned by the AzlinVM) when `spec.sshKeySecretRef` is absent,
//! else read from the referenced Secret. With `deletionPolicy: Retain` the generated Secret
//! outlives the AzlinVM ([`retain_key`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use russh::keys::PrivateKey;

use crate::api::AzlinVM;
use crate::reconcile::Error;
use crate::ssh::keys::{
    PRIVATE_KEY_FIELD, PUBLIC_KEY_FIELD, SECRET_TYPE, fingerprint_of_public_line, generate_ed25519,
    private_key_from_secret,
};

/// The key pair in use for a VM.
#[derive(Clone)]
pub struct VmKey {
    /// Name of the Secret holding it.
    pub secret_name: String,
    /// Public key line (`ssh-ed25519 AAAA... comment`).
    pub public_line: String,
    /// Private key for SSH.
    pub private: Arc<PrivateKey>,
}

impl std::fmt::Debug for VmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmKey")
            .field("secret_name", &self.secret_name)
            .field("public_line", &self.public_line)
            .finish_non_exhaustive()
    }
}

/// Label on a generated key Secret kept after its AzlinVM was deleted with
/// `deletionPolicy: Retain`; the value is the AzlinVM's name.
pub const RETAINED_FROM_LABEL: &str = "azlin.io/retained-from";

/// Name of the generated key Secret of AzlinVM `name`.
pub fn generated_secret_name(name: &str) -> String {
    format!("{name}-ssh")
}

/// Reads the key pair from a Secret; errors name the Secret and the keys it needs.
pub fn key_from_secret(secret: &Secret) -> Result<VmKey, String> {
    let name = secret.name_any();
    let need = format!(
        "Secret {name} must be of type {SECRET_TYPE} with keys {PRIVATE_KEY_FIELD} and {PUBLIC_KEY_FIELD}"
    );
    let private = private_key_from_secret(secret).map_err(|e| format!("{need}: {e}"))?;
    let public_line = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PUBLIC_KEY_FIELD))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(PUBLIC_KEY_FIELD))
                .map(|s| s.trim().to_string())
        })
        .ok_or_else(|| format!("{need}: missing {PUBLIC_KEY_FIELD}"))?;
    fingerprint_of_public_line(&public_line).map_err(|e| format!("{need}: {e}"))?;
    Ok(VmKey {
        secret_name: name,
        public_line,
        private: Arc::new(private),
    })
}

/// The key of a VM as observed.
#[derive(Clone, Debug)]
pub enum KeyState {
    /// Usable.
    Ready(VmKey),
    /// The generated Secret does not exist yet: create it.
    Generate,
    /// The Secret is missing or unusable; the user must fix it.
    Invalid {
        /// The field to fix.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Reads the key of `vm`: the referenced Secret, or the generated one.
pub async fn read_key(client: &kube::Client, vm: &AzlinVM) -> Result<KeyState, Error> {
    let ns = vm.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    if let Some(r) = &vm.spec.ssh_key_secret_ref {
        let Some(secret) = secrets.get_opt(&r.name).await? else {
            return Ok(KeyState::Invalid {
                field: "spec.sshKeySecretRef".into(),
                message: format!(
                    "Secret {} not found in namespace {ns}: create it with type {SECRET_TYPE} and keys {PRIVATE_KEY_FIELD} and {PUBLIC_KEY_FIELD}",
                    r.name
                ),
            });
        };
        return Ok(match key_from_secret(&secret) {
            Ok(key) => KeyState::Ready(key),
            Err(message) => KeyState::Invalid {
                field: "spec.sshKeySecretRef".into(),
                message,
            },
        });
    }
    let name = generated_secret_name(&vm.name_any());
    Ok(match secrets.get_opt(&name).await? {
        None => KeyState::Generate,
        Some(secret) => match key_from_secret(&secret) {
            Ok(key) => KeyState::Ready(key),
            Err(message) => KeyState::Invalid {
                field: "metadata.name".into(),
                message: format!(
                    "{message} (the operator generates this Secret; delete it to have a new key generated before the VM is created)"
                ),
            },
        },
    })
}

/// Creates the generated key Secret `<name>-ssh` of `vm` (owned by it). A Secret created
/// concurrently (e.g. by a run that crashed after creating it) is fine.
pub async fn create_key(client: &kube::Client, vm: &AzlinVM) -> Result<(), Error> {
    let ns = vm.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = generated_secret_name(&vm.name_any());
    let pair = generate_ed25519(&format!("azlin-operator/{ns}/{}", vm.name_any()))
        .map_err(|e| Error::Config(format!("cannot generate an SSH key: {e}")))?;
    let owner = vm.controller_owner_ref(&()).into_iter().collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns),
            owner_references: Some(owner),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "azlin-operator".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.to_string()),
        data: Some(pair.secret_data()),
        ..Default::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the generated key Secret of `vm` when the AzlinVM goes: drops its ownerReference
/// to `vm` (so the garbage collector leaves it) and labels it [`RETAINED_FROM_LABEL`].
/// Returns the Secret's name, or `None` when there is no generated Secret owned by `vm`.
pub async fn retain_key(client: &kube::Client, vm: &AzlinVM) -> Result<Option<String>, Error> {
    let ns = vm.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = generated_secret_name(&vm.name_any());
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(None);
    };
    let uid = vm.uid().unwrap_or_default();
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    if !owners.iter().any(|o| o.uid == uid) {
        return Ok(None);
    }
    let rest: Vec<_> = owners.into_iter().filter(|o| o.uid != uid).collect();
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": rest,
            "labels": { RETAINED_FROM_LABEL: vm.name_any() },
            "resourceVersion": secret.metadata.resource_version,
        }
    });
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn reads_generated_pairs_and_names_missing_keys() {
        let pair = generate_ed25519("t").expect("key");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("k".into()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.into()),
            data: Some(pair.secret_data()),
            ..Default::default()
        };
        let key = key_from_secret(&secret).expect("valid");
        assert_eq!(key.public_line, pair.public_key_line);
        let mut broken = secret.clone();
        broken.data = Some(BTreeMap::from([(
            PRIVATE_KEY_FIELD.to_string(),
            ByteString(pair.private_key_pem.into_bytes()),
        )]));
        let err = key_from_secret(&broken).expect_err("missing public key");
        assert!(err.contains("Secret k"), "{err}");
        assert!(err.contains(PUBLIC_KEY_FIELD), "{err}");
        let mut empty = secret;
        empty.data = None;
        let err = key_from_secret(&empty).expect_err("missing private key");
        assert!(err.contains(PRIVATE_KEY_FIELD), "{err}");
    }
}
