//! SSH key material: ed25519 key generation, the Kubernetes `ssh-auth` Secret
//! layout, and OpenSSH-style host key fingerprints.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::RngCore;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, public::KeyData};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// Secret type for SSH credentials (`kubernetes.io/ssh-auth`).
pub const SECRET_TYPE: &str = "kubernetes.io/ssh-auth";
/// Secret data key holding the OpenSSH private key PEM.
pub const PRIVATE_KEY_FIELD: &str = "ssh-privatekey";
/// Secret data key holding the `ssh-ed25519 AAAA... comment` public line.
pub const PUBLIC_KEY_FIELD: &str = "ssh-publickey";

/// Errors handling key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Encoding a generated key failed.
    #[error("cannot encode SSH key: {0}")]
    Encode(String),
    /// The private key is not a valid unencrypted OpenSSH private key.
    #[error("invalid OpenSSH private key: {0}")]
    InvalidPrivateKey(String),
    /// The Secret does not have the expected shape.
    #[error("invalid SSH key Secret: {0}")]
    InvalidSecret(String),
}

/// A freshly generated ed25519 key pair in OpenSSH text formats.
#[derive(Clone)]
pub struct GeneratedKeyPair {
    /// OpenSSH private key PEM (`-----BEGIN OPENSSH PRIVATE KEY-----`), LF line endings.
    pub private_key_pem: String,
    /// Public key line `ssh-ed25519 AAAA... comment`, without trailing newline.
    pub public_key_line: String,
    /// SHA256 fingerprint of the public key (`SHA256:...`).
    pub fingerprint: String,
}

impl std::fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("private_key_pem", &"<redacted>")
            .field("public_key_line", &self.public_key_line)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl GeneratedKeyPair {
    /// `data` for a `kubernetes.io/ssh-auth` Secret holding this key pair.
    pub fn secret_data(&self) -> BTreeMap<String, ByteString> {
        BTreeMap::from([
            (
                PRIVATE_KEY_FIELD.to_owned(),
                ByteString(self.private_key_pem.as_bytes().to_vec()),
            ),
            (
                PUBLIC_KEY_FIELD.to_owned(),
                ByteString(self.public_key_line.as_bytes().to_vec()),
            ),
        ])
    }

    /// Parses the private half back into a key usable for authentication.
    pub fn private_key(&self) -> Result<PrivateKey, KeyError> {
        parse_private_key(self.private_key_pem.as_bytes())
    }
}

/// Generates a new ed25519 key pair with `comment` on the public line.
pub fn generate_ed25519(comment: &str) -> Result<GeneratedKeyPair, KeyError> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    key.set_comment(comment);
    let private_key_pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?
        .to_string();
    let public_key_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    Ok(GeneratedKeyPair {
        private_key_pem,
        public_key_line,
        fingerprint: public_key_fingerprint(key.public_key()),
    })
}

/// Parses an unencrypted OpenSSH private key (PEM text as stored in a Secret).
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKey, KeyError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| KeyError::InvalidPrivateKey("not UTF-8 text".into()))?;
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|e| KeyError::InvalidPrivateKey(e.to_string()))?;
    if key.is_encrypted() {
        return Err(KeyError::InvalidPrivateKey(
            "key is passphrase-protected".into(),
        ));
    }
    Ok(key)
}

/// Reads the private key from a `kubernetes.io/ssh-auth` Secret
/// (`data.ssh-privatekey`, or `stringData.ssh-privatekey` for objects not yet
/// round-tripped through the API server).
pub fn private_key_from_secret(secret: &Secret) -> Result<PrivateKey, KeyError> {
    if let Some(type_) = secret.type_.as_deref()
        && type_ != SECRET_TYPE
    {
        return Err(KeyError::InvalidSecret(format!(
            "type is {type_:?}, expected {SECRET_TYPE:?}"
        )));
    }
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PRIVATE_KEY_FIELD))
        .map(|b| b.0.as_slice());
    let from_string_data = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(PRIVATE_KEY_FIELD))
        .map(|s| s.as_bytes());
    let pem = from_data.or(from_string_data).ok_or_else(|| {
        KeyError::InvalidSecret(format!("missing data key {PRIVATE_KEY_FIELD:?}"))
    })?;
    parse_private_key(pem)
}

/// SHA256 fingerprint as OpenSSH prints it: `SHA256:` + unpadded base64.
pub fn public_key_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// SHA256 fingerprint of raw public key data (also used for certificates'
/// embedded keys).
pub fn key_data_fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Fingerprint of an OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
pub fn fingerprint_of_public_line(line: &str) -> Result<String, KeyError> {
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|e| KeyError::InvalidSecret(format!("invalid public key line: {e}")))?;
    Ok(public_key_fingerprint(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn generated_pair_round_trips() {
        let pair = generate_ed25519("azlin@vm-01").expect("generate");
        assert!(
            pair.private_key_pem
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(pair.public_key_line.starts_with("ssh-ed25519 AAAA"));
        assert!(pair.public_key_line.ends_with(" azlin@vm-01"));
        let key = pair.private_key().expect("parse");
        assert_eq!(
            key.public_key().to_openssh().expect("encode"),
            pair.public_key_line
        );
        assert_eq!(public_key_fingerprint(key.public_key()), pair.fingerprint);
        assert_eq!(
            fingerprint_of_public_line(&pair.public_key_line).expect("fp"),
            pair.fingerprint
        );
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = generate_ed25519("a").expect("a");
        let b = generate_ed25519("a").expect("b");
        assert_ne!(a.public_key_line, b.public_key_line);
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let pair = generate_ed25519("fp-test").expect("generate");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pub");
        std::fs::write(&path, format!("{}\n", pair.public_key_line)).expect("write");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&path)
            .output()
            .expect("ssh-keygen must be installed (openssh-client)");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let printed = text.split_whitespace().nth(1).expect("fingerprint column");
        assert_eq!(printed, pair.fingerprint);
        assert!(pair.fingerprint.starts_with("SHA256:"));
        assert!(!pair.fingerprint.ends_with('='));
    }

    #[test]
    fn secret_round_trip_and_validation() {
        let pair = generate_ed25519("vm").expect("generate");
        let secret = Secret {
            metadata: ObjectMeta::default(),
            type_: Some(SECRET_TYPE.into()),
            data: Some(pair.secret_data()),
            ..Secret::default()
        };
        let key = private_key_from_secret(&secret).expect("parse from secret");
        assert_eq!(public_key_fingerprint(key.public_key()), pair.fingerprint);

        let string_data = Secret {
            string_data: Some(BTreeMap::from([(
                PRIVATE_KEY_FIELD.to_owned(),
                pair.private_key_pem.clone(),
            )])),
            ..Secret::default()
        };
        assert!(private_key_from_secret(&string_data).is_ok());

        let wrong_type = Secret {
            type_: Some("Opaque".into()),
            ..secret.clone()
        };
        assert!(matches!(
            private_key_from_secret(&wrong_type),
            Err(KeyError::InvalidSecret(_))
        ));
        let empty = Secret::default();
        assert!(matches!(
            private_key_from_secret(&empty),
            Err(KeyError::InvalidSecret(_))
        ));
        assert!(matches!(
            parse_private_key(b"not a key"),
            Err(KeyError::InvalidPrivateKey(_))
        ));
    }

    #[test]
    fn debug_redacts_private_key() {
        let pair = generate_ed25519("vm").expect("generate");
        let dbg = format!("{pair:?}");
        assert!(!dbg.contains("PRIVATE KEY"));
        assert!(dbg.contains("redacted"));
    }
}
