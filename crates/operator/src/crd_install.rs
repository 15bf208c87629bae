//! Installing and upgrading the CRDs in a cluster (`azlin-operator crds --apply`), as the
//! Helm chart's pre-install/pre-upgrade hook does: Helm never upgrades `crds/` itself.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};

/// Field manager of the CRD server-side apply.
pub const FIELD_MANAGER: &str = "azlin-operator-crds";

/// Why applying the CRDs failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdInstallError {
    /// The API server refused or could not be reached.
    #[error("applying CRD {name} failed: {source}")]
    Apply {
        /// CRD name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// Reading a CRD back failed.
    #[error("reading CRD {name} failed: {source}")]
    Get {
        /// CRD name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// The API server did not report the CRD as Established in time.
    #[error("CRD {name} is not Established after {waited:?}: check `kubectl describe crd {name}`")]
    NotEstablished {
        /// CRD name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
}

/// Server-side applies every CRD (forcing ownership of our fields) and, when `wait` is
/// given, waits until each is `Established`. Returns the applied names.
pub async fn apply_crds(
    client: kube::Client,
    wait: Option<Duration>,
) -> Result<Vec<String>, CrdInstallError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for crd in crate::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| CrdInstallError::Apply {
                name: name.clone(),
                source,
            })?;
        tracing::info!(crd = %name, "CRD applied");
        names.push(name);
    }
    if let Some(timeout) = wait {
        let deadline = tokio::time::Instant::now() + timeout;
        for name in &names {
            loop {
                let crd = api.get(name).await.map_err(|source| CrdInstallError::Get {
                    name: name.clone(),
                    source,
                })?;
                if is_established(&crd) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(CrdInstallError::NotEstablished {
                        name: name.clone(),
                        waited: timeout,
                    });
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(names)
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}
