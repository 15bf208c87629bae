//! The admin SSH key pair of a VM: generated into Secret `<name>-ssh` (type
//! `kubernetes.io/ssh-auth`, owned by the AzlinVM) when `spec.sshKeySecretRef` is absent,
//! else read from the referenced Secret. With `deletionPolicy: Retain` the generated Secret
//! outlives the AzlinVM ([`retain_key`]).
//!
//! The key Secret also pins the host key of each VM that logs in with it (annotation
//! `host-key.azlin.io/<vm>`: Azure's `vmId`, the `SHA256:` fingerprint, the re-pin request
//! it honoured). It lives there, not only in `status.hostKeyFingerprint`, because a status
//! edit (`kubectl patch --subresource=status`) or re-creating the AzlinVM must not make the
//! operator trust a new host key: the Secret is the VM's credential, outlives the object
//! whenever the VM does (a referenced Secret is the user's; a generated one is kept with a
//! retained VM), and whoever may edit it may already replace the key itself. A new key is
//! trusted only for a new VM (another `vmId`, e.g. one the operator re-created) or on an
//! explicit request: a new value of the AzlinVM annotation [`REPIN_ANNOTATION`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use russh::keys::PrivateKey;

use crate::api::AzlinVM;
use crate::reconcile::Error;
use crate::ssh::HostKeyPolicy;
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
    /// Host keys pinned in the Secret, by AzlinVM name.
    pub pins: BTreeMap<String, HostKeyPin>,
}

/// Annotation on an AzlinVM asking the operator to accept the VM's current host key once:
/// each new value (e.g. a timestamp) is one request.
pub const REPIN_ANNOTATION: &str = "azlin.io/repin-host-key";
/// Prefix of the key Secret's annotation pinning the host key of AzlinVM `<name>`.
pub const PIN_ANNOTATION_PREFIX: &str = "host-key.azlin.io/";

/// The host key pinned for one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyPin {
    /// Azure's `vmId` of the VM the key belongs to.
    pub vm_id: String,
    /// `SHA256:...` fingerprint.
    pub fingerprint: String,
    /// The value of [`REPIN_ANNOTATION`] this pin was taken for, if any.
    pub repinned_for: Option<String>,
}

impl HostKeyPin {
    /// Parses an annotation value: `<vmId> <fingerprint> [<repin request>]`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split_whitespace();
        let vm_id = parts.next()?.to_string();
        let fingerprint = parts.next()?.to_string();
        let repinned_for = parts.next().map(str::to_string);
        fingerprint.starts_with("SHA256:").then_some(Self {
            vm_id,
            fingerprint,
            repinned_for,
        })
    }

    /// The annotation value.
    pub fn render(&self) -> String {
        match &self.repinned_for {
            Some(r) => format!("{} {} {r}", self.vm_id, self.fingerprint),
            None => format!("{} {}", self.vm_id, self.fingerprint),
        }
    }
}

/// How the host key of one VM is checked on the next guest contact, and what to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyTrust {
    /// The key Secret holding the pin.
    pub secret: String,
    /// The AzlinVM's name (the annotation's name).
    pub vm_name: String,
    /// Azure's `vmId` of the VM contacted.
    pub vm_id: String,
    /// The pin recorded for this VM, if any.
    pub recorded: Option<HostKeyPin>,
    /// A re-pin request not yet honoured (the value of [`REPIN_ANNOTATION`]).
    pub repin: Option<String>,
}

impl HostKeyTrust {
    /// The trust of `vm` (with Azure `vm_id`) logging in with `key`.
    pub fn of(vm: &AzlinVM, key: &VmKey, vm_id: &str) -> Self {
        let vm_name = vm.name_any();
        let recorded = key.pins.get(&vm_name).cloned();
        let repin = vm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPIN_ANNOTATION))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            .filter(|v| recorded.as_ref().and_then(|p| p.repinned_for.as_ref()) != Some(v));
        Self {
            secret: key.secret_name.clone(),
            vm_name,
            vm_id: vm_id.to_string(),
            recorded,
            repin,
        }
    }

    /// The check: the recorded fingerprint of this very VM, unless a re-pin was asked
    /// for; first contact for a VM with no pin (or a new `vmId`).
    pub fn policy(&self) -> HostKeyPolicy {
        match &self.recorded {
            Some(pin) if pin.vm_id == self.vm_id && self.repin.is_none() => {
                HostKeyPolicy::Require(pin.fingerprint.clone())
            }
            _ => HostKeyPolicy::PinOnFirstContact,
        }
    }

    /// The pin to record after a contact that presented `fingerprint`, when it differs
    /// from the recorded one.
    pub fn to_record(&self, fingerprint: &str) -> Option<HostKeyPin> {
        let pin = HostKeyPin {
            vm_id: self.vm_id.clone(),
            fingerprint: fingerprint.to_string(),
            repinned_for: self
                .repin
                .clone()
                .or_else(|| self.recorded.as_ref().and_then(|p| p.repinned_for.clone())),
        };
        (self.recorded.as_ref() != Some(&pin)).then_some(pin)
    }
}

/// Records `pin` for AzlinVM `vm_name` in key Secret `secret` of `namespace`.
pub async fn record_pin(
    client: &kube::Client,
    namespace: &str,
    trust: &HostKeyTrust,
    pin: &HostKeyPin,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let key = format!("{PIN_ANNOTATION_PREFIX}{}", trust.vm_name);
    let patch = serde_json::json!({ "metadata": { "annotations": { key: pin.render() } } });
    secrets
        .patch(
            &trust.secret,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
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
    let pins = secret
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            let vm = k.strip_prefix(PIN_ANNOTATION_PREFIX)?;
            Some((vm.to_string(), HostKeyPin::parse(v)?))
        })
        .collect();
    Ok(VmKey {
        secret_name: name,
        public_line,
        private: Arc::new(private),
        pins,
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
                    "Secret {} not found in namespace {ns}: create it with type {SECRET_TYPE} and keys {PRIVATE_KEY_FIELD} and {PUBLIC_KEY_FIELD} (it is looked up again when the AzlinVM changes, and every few minutes)",
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

    fn vm_with(annotations: &[(&str, &str)]) -> AzlinVM {
        let mut vm: AzlinVM = serde_json::from_value(serde_json::json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "AzlinVM",
            "metadata": {"name": "dev", "namespace": "ns"},
            "spec": {"resourceGroup": "rg", "location": "westus2"}
        }))
        .expect("vm");
        vm.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        vm
    }

    fn key_pinned(pin: Option<&str>) -> VmKey {
        let pair = generate_ed25519("t").expect("key");
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some("k".into()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.into()),
            data: Some(pair.secret_data()),
            ..Default::default()
        };
        if let Some(p) = pin {
            secret.metadata.annotations = Some(BTreeMap::from([
                (format!("{PIN_ANNOTATION_PREFIX}dev"), p.to_string()),
                (
                    format!("{PIN_ANNOTATION_PREFIX}other"),
                    "vm-9 SHA256:other".into(),
                ),
            ]));
        }
        key_from_secret(&secret).expect("valid")
    }

    #[test]
    fn the_pin_in_the_key_secret_decides_and_only_a_new_request_repins() {
        // Nothing pinned: first contact, then record.
        let t = HostKeyTrust::of(&vm_with(&[]), &key_pinned(None), "vm-1");
        assert_eq!(t.policy(), HostKeyPolicy::PinOnFirstContact);
        let pin = t.to_record("SHA256:aaa").expect("record the first pin");
        assert_eq!(pin.render(), "vm-1 SHA256:aaa");
        // Pinned for this VM: required, and nothing to record while it matches.
        let key = key_pinned(Some("vm-1 SHA256:aaa"));
        assert_eq!(key.pins.len(), 2);
        let t = HostKeyTrust::of(&vm_with(&[]), &key, "vm-1");
        assert_eq!(t.policy(), HostKeyPolicy::Require("SHA256:aaa".into()));
        assert_eq!(t.to_record("SHA256:aaa"), None);
        // Another VM behind the name (re-created by the operator): first contact.
        let t = HostKeyTrust::of(&vm_with(&[]), &key, "vm-2");
        assert_eq!(t.policy(), HostKeyPolicy::PinOnFirstContact);
        // An explicit request re-pins once.
        let asked = vm_with(&[(REPIN_ANNOTATION, "2026-01-02T00:00:00Z")]);
        let t = HostKeyTrust::of(&asked, &key, "vm-1");
        assert_eq!(t.policy(), HostKeyPolicy::PinOnFirstContact);
        let pin = t.to_record("SHA256:bbb").expect("new pin");
        assert_eq!(pin.render(), "vm-1 SHA256:bbb 2026-01-02T00:00:00Z");
        let key = key_pinned(Some(&pin.render()));
        let t = HostKeyTrust::of(&asked, &key, "vm-1");
        assert_eq!(
            t.policy(),
            HostKeyPolicy::Require("SHA256:bbb".into()),
            "the same request is not honoured twice"
        );
        assert_eq!(HostKeyPin::parse("vm-1 not-a-fingerprint"), None);
    }
}
