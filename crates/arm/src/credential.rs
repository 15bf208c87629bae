//! Bearer tokens for ARM.
//!
//! [`CredentialChoice`] says where tokens come from (workload identity, managed identity, a
//! service principal's client secret, or a static token used only with the emulator);
//! [`ArmCredential`] turns that into a cached token provider that refreshes a token
//! [`REFRESH_MARGIN`] before it expires. Tokens and secrets are held in [`SecretString`], whose
//! `Debug`/`Display` print `<redacted>`, so they never reach logs.
//!
//! ## Tenant credential Secrets
//! A tenant can bring its own service principal in a Kubernetes Secret; the Kubernetes side reads
//! the Secret and passes its `data` to [`CredentialChoice::from_secret_data`]. Keys:
//!
//! | key | meaning |
//! |---|---|
//! | `AZURE_TENANT_ID` | Entra tenant (directory) id — required with `AZURE_CLIENT_SECRET` |
//! | `AZURE_CLIENT_ID` | application (client) id — required with `AZURE_CLIENT_SECRET` |
//! | `AZURE_CLIENT_SECRET` | client secret → [`CredentialChoice::ClientSecret`] |
//! | `AZURE_SUBSCRIPTION_ID` | optional: subscription to manage instead of the operator's ([`secret_subscription_id`]) |
//! | `AZURE_ACCESS_TOKEN` | emulator only: a static bearer token → [`CredentialChoice::Static`] |

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::error::ArmError;

/// Scope of ARM tokens.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// A token is refreshed this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Secret key names in a tenant credential Secret (see the module docs).
pub mod secret_keys {
    /// Entra tenant id.
    pub const TENANT_ID: &str = "AZURE_TENANT_ID";
    /// Application (client) id.
    pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
    /// Client secret.
    pub const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
    /// Optional subscription override.
    pub const SUBSCRIPTION_ID: &str = "AZURE_SUBSCRIPTION_ID";
    /// Static bearer token, emulator only.
    pub const ACCESS_TOKEN: &str = "AZURE_ACCESS_TOKEN";
}

/// A string that must never be logged (tokens, client secrets). `Debug`/`Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> SecretString {
        SecretString(secret.into())
    }

    /// The secret itself — only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where ARM tokens come from. There is no implicit chain: the operator chooses one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChoice {
    /// Entra workload identity on Kubernetes; `None` fields fall back to the webhook-injected env
    /// vars `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity {
        /// Tenant id override.
        tenant_id: Option<String>,
        /// Client id override.
        client_id: Option<String>,
        /// Federated token file override.
        token_file: Option<PathBuf>,
    },
    /// Managed identity (IMDS / App Service); `client_id` selects a user-assigned identity.
    ManagedIdentity {
        /// User-assigned identity client id; `None` for the system-assigned identity.
        client_id: Option<String>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: SecretString,
    },
    /// A fixed bearer token. Only for the emulator (real tokens expire within hours).
    Static(SecretString),
}

impl CredentialChoice {
    /// Chooses from the process environment: workload identity when `AZURE_FEDERATED_TOKEN_FILE`
    /// is set, else a client secret when `AZURE_CLIENT_SECRET` is set (with `AZURE_TENANT_ID` and
    /// `AZURE_CLIENT_ID`), else managed identity (user-assigned when `AZURE_CLIENT_ID` is set).
    pub fn from_env() -> Result<CredentialChoice, ArmError> {
        let vars: BTreeMap<String, String> = [
            "AZURE_FEDERATED_TOKEN_FILE",
            secret_keys::CLIENT_SECRET,
            secret_keys::TENANT_ID,
            secret_keys::CLIENT_ID,
        ]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
        Self::from_env_vars(&vars)
    }

    /// [`CredentialChoice::from_env`] over given variables (empty values count as unset).
    pub fn from_env_vars(vars: &BTreeMap<String, String>) -> Result<CredentialChoice, ArmError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if vars.contains_key("AZURE_FEDERATED_TOKEN_FILE") {
            return Ok(CredentialChoice::WorkloadIdentity {
                tenant_id: None,
                client_id: None,
                token_file: None,
            });
        }
        if vars.contains_key(secret_keys::CLIENT_SECRET) {
            return Self::from_secret_string_data(&vars);
        }
        Ok(CredentialChoice::ManagedIdentity {
            client_id: vars.get(secret_keys::CLIENT_ID).cloned(),
        })
    }

    /// Builds a credential from a tenant Secret's `data` (see the module docs for the keys).
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<CredentialChoice, ArmError> {
        let mut strings = BTreeMap::new();
        for (k, v) in data {
            let s = String::from_utf8(v.clone())
                .map_err(|_| ArmError::Config(format!("credential Secret key {k} is not UTF-8")))?;
            strings.insert(k.clone(), s);
        }
        Self::from_secret_string_data(&strings)
    }

    /// Same as [`CredentialChoice::from_secret_data`] for already-decoded strings (`stringData`).
    pub fn from_secret_string_data(
        data: &BTreeMap<String, String>,
    ) -> Result<CredentialChoice, ArmError> {
        let get = |k: &str| {
            data.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(secret) = get(secret_keys::CLIENT_SECRET) {
            let missing = |k: &str| {
                ArmError::Config(format!(
                    "credential Secret has {} but no {k}",
                    secret_keys::CLIENT_SECRET
                ))
            };
            return Ok(CredentialChoice::ClientSecret {
                tenant_id: get(secret_keys::TENANT_ID)
                    .ok_or_else(|| missing(secret_keys::TENANT_ID))?,
                client_id: get(secret_keys::CLIENT_ID)
                    .ok_or_else(|| missing(secret_keys::CLIENT_ID))?,
                client_secret: SecretString::new(secret),
            });
        }
        if let Some(token) = get(secret_keys::ACCESS_TOKEN) {
            return Ok(CredentialChoice::Static(SecretString::new(token)));
        }
        Err(ArmError::Config(format!(
            "credential Secret needs {} (with {} and {}) or {}",
            secret_keys::CLIENT_SECRET,
            secret_keys::TENANT_ID,
            secret_keys::CLIENT_ID,
            secret_keys::ACCESS_TOKEN
        )))
    }

    /// Short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialChoice::WorkloadIdentity { .. } => "WorkloadIdentity",
            CredentialChoice::ManagedIdentity { .. } => "ManagedIdentity",
            CredentialChoice::ClientSecret { .. } => "ClientSecret",
            CredentialChoice::Static(_) => "Static",
        }
    }
}

/// The optional `AZURE_SUBSCRIPTION_ID` of a tenant credential Secret.
pub fn secret_subscription_id(data: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    data.get(secret_keys::SUBSCRIPTION_ID)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A token as fetched from its source.
#[derive(Debug, Clone)]
pub struct FetchedToken {
    /// The bearer token.
    pub token: SecretString,
    /// When it stops being valid.
    pub expires_at: SystemTime,
}

/// Something that fetches fresh tokens; [`ArmCredential`] caches in front of it.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Fetches a new token for `scope`.
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<FetchedToken, ArmError>>;
}

/// Adapter from an azure_identity credential.
#[derive(Debug)]
struct IdentitySource(Arc<dyn TokenCredential>);

impl TokenSource for IdentitySource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<FetchedToken, ArmError>> {
        Box::pin(async move {
            let token =
                self.0
                    .get_token(&[scope], None)
                    .await
                    .map_err(|e| ArmError::AuthFailed {
                        status: 0,
                        code: "CredentialUnavailable".to_string(),
                        message: e.to_string(),
                    })?;
            Ok(FetchedToken {
                token: SecretString::new(token.token.secret()),
                expires_at: SystemTime::from(token.expires_on),
            })
        })
    }
}

/// A fixed token that never expires.
#[derive(Debug)]
struct StaticSource(SecretString);

impl TokenSource for StaticSource {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<FetchedToken, ArmError>> {
        let t = FetchedToken {
            token: self.0.clone(),
            expires_at: SystemTime::now() + Duration::from_secs(365 * 86400),
        };
        Box::pin(async move { Ok(t) })
    }
}

struct CredInner {
    source: Box<dyn TokenSource>,
    scope: String,
    kind: &'static str,
    cache: Mutex<Option<FetchedToken>>,
}

/// A cached ARM token provider. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct ArmCredential {
    inner: Arc<CredInner>,
}

impl fmt::Debug for ArmCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmCredential")
            .field("kind", &self.inner.kind)
            .field("scope", &self.inner.scope)
            .finish()
    }
}

fn identity_error(e: azure_core::Error) -> ArmError {
    ArmError::Config(format!("cannot build credential: {e}"))
}

impl ArmCredential {
    /// Builds the provider for `choice`, requesting tokens for `scope` (normally [`ARM_SCOPE`]).
    pub fn from_choice(choice: &CredentialChoice, scope: &str) -> Result<ArmCredential, ArmError> {
        let source: Box<dyn TokenSource> = match choice {
            CredentialChoice::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => {
                let options = WorkloadIdentityCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    client_id: client_id.clone(),
                    token_file_path: token_file.clone(),
                    ..Default::default()
                };
                Box::new(IdentitySource(
                    WorkloadIdentityCredential::new(Some(options)).map_err(identity_error)?,
                ))
            }
            CredentialChoice::ManagedIdentity { client_id } => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                Box::new(IdentitySource(
                    ManagedIdentityCredential::new(Some(options)).map_err(identity_error)?,
                ))
            }
            CredentialChoice::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => Box::new(IdentitySource(
                ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    Secret::new(client_secret.expose().to_string()),
                    None,
                )
                .map_err(identity_error)?,
            )),
            CredentialChoice::Static(token) => Box::new(StaticSource(token.clone())),
        };
        Ok(Self::build(source, scope, choice.kind()))
    }

    /// Wraps any token source (used by tests and custom sources).
    pub fn from_source(source: Box<dyn TokenSource>, scope: &str) -> ArmCredential {
        Self::build(source, scope, "Custom")
    }

    fn build(source: Box<dyn TokenSource>, scope: &str, kind: &'static str) -> ArmCredential {
        ArmCredential {
            inner: Arc::new(CredInner {
                source,
                scope: scope.to_string(),
                kind,
                cache: Mutex::new(None),
            }),
        }
    }

    /// Short name of the credential kind.
    pub fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// A valid token: the cached one unless it expires within [`REFRESH_MARGIN`]. Concurrent
    /// callers share one fetch.
    pub async fn token(&self) -> Result<SecretString, ArmError> {
        let mut cache = self.inner.cache.lock().await;
        if let Some(t) = cache.as_ref()
            && t.expires_at > SystemTime::now() + REFRESH_MARGIN
        {
            return Ok(t.token.clone());
        }
        let fresh = self.inner.source.fetch(&self.inner.scope).await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token (after ARM answered 401), so the next call fetches a new one.
    pub async fn invalidate(&self) {
        *self.inner.cache.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts fetches; each token lives `ttl`.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        ttl: Duration,
    }

    impl TokenSource for Counting {
        fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<FetchedToken, ArmError>> {
            Box::pin(async move {
                assert_eq!(scope, ARM_SCOPE);
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(FetchedToken {
                    token: SecretString::new(format!("tok-{n}")),
                    expires_at: SystemTime::now() + self.ttl,
                })
            })
        }
    }

    /// A credential over a [`Counting`] source of `ttl` tokens, and its fetch counter.
    fn counting_credential(ttl: Duration) -> (ArmCredential, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let cred = ArmCredential::from_source(
            Box::new(Counting {
                calls: calls.clone(),
                ttl,
            }),
            ARM_SCOPE,
        );
        (cred, calls)
    }

    #[tokio::test]
    async fn caches_until_near_expiry() {
        let (cred, calls) = counting_credential(Duration::from_secs(3600));
        let clone = cred.clone();
        assert_eq!(cred.token().await.expect("token").expose(), "tok-1");
        assert_eq!(clone.token().await.expect("token").expose(), "tok-1");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "second call served from cache"
        );
        cred.invalidate().await;
        assert_eq!(cred.token().await.expect("token").expose(), "tok-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refreshes_tokens_inside_margin() {
        // Tokens that expire within the refresh margin are never reused.
        let (cred, calls) = counting_credential(REFRESH_MARGIN / 2);
        assert_eq!(cred.token().await.expect("token").expose(), "tok-1");
        assert_eq!(cred.token().await.expect("token").expose(), "tok-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let (cred, calls) = counting_credential(Duration::from_secs(3600));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = cred.clone();
                tokio::spawn(async move { c.token().await.map(|t| t.expose().to_string()) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("join").expect("token"), "tok-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = SecretString::new("super-secret");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let choice = CredentialChoice::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: s,
        };
        assert!(!format!("{choice:?}").contains("super-secret"));
    }

    #[test]
    fn from_secret_data_keys() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("AZURE_CLIENT_ID", "client"),
            ("AZURE_CLIENT_SECRET", "s3cret\n"),
            ("AZURE_SUBSCRIPTION_ID", "sub-2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        let c = CredentialChoice::from_secret_data(&data).expect("valid");
        match &c {
            CredentialChoice::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => {
                assert_eq!(tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
                assert_eq!(client_id, "client");
                assert_eq!(client_secret.expose(), "s3cret");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(secret_subscription_id(&data).as_deref(), Some("sub-2"));
        assert!(ArmCredential::from_choice(&c, ARM_SCOPE).is_ok());

        let mut missing = data.clone();
        missing.remove("AZURE_TENANT_ID");
        let e = CredentialChoice::from_secret_data(&missing).expect_err("tenant id required");
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
        assert!(!e.to_string().contains("s3cret"));

        let token: BTreeMap<String, Vec<u8>> =
            [("AZURE_ACCESS_TOKEN".to_string(), b"emu".to_vec())].into();
        assert_eq!(
            CredentialChoice::from_secret_data(&token).expect("static"),
            CredentialChoice::Static(SecretString::new("emu"))
        );
        assert!(CredentialChoice::from_secret_data(&BTreeMap::new()).is_err());
        let bad: BTreeMap<String, Vec<u8>> =
            [("AZURE_CLIENT_SECRET".to_string(), vec![0xff, 0xfe])].into();
        assert!(CredentialChoice::from_secret_data(&bad).is_err());
    }

    #[test]
    fn chooses_from_environment_variables() {
        let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let wi = CredentialChoice::from_env_vars(&vars(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "ignored"),
        ]))
        .expect("workload identity");
        assert_eq!(wi.kind(), "WorkloadIdentity");
        let sp = CredentialChoice::from_env_vars(&vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", ""),
        ]))
        .expect("client secret");
        assert_eq!(sp.kind(), "ClientSecret");
        assert!(CredentialChoice::from_env_vars(&vars(&[("AZURE_CLIENT_SECRET", "s")])).is_err());
        assert_eq!(
            CredentialChoice::from_env_vars(&vars(&[("AZURE_CLIENT_ID", "uami")])).expect("mi"),
            CredentialChoice::ManagedIdentity {
                client_id: Some("uami".into())
            }
        );
        assert_eq!(
            CredentialChoice::from_env_vars(&BTreeMap::new()).expect("mi"),
            CredentialChoice::ManagedIdentity { client_id: None }
        );
    }

    #[tokio::test]
    async fn static_token() {
        let cred = ArmCredential::from_choice(
            &CredentialChoice::Static(SecretString::new("abc")),
            ARM_SCOPE,
        )
        .expect("static");
        assert_eq!(cred.token().await.expect("token").expose(), "abc");
        assert_eq!(cred.kind(), "Static");
    }
}
