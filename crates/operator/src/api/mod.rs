//! The `azlin.io/v1alpha1` API: the four custom resource kinds, their status
//! conditions, and the schema/CEL validation the API server enforces.

pub mod azlinvm;
pub mod backup;
pub mod common;
pub mod conditions;
pub mod fleet;
pub mod mount_path;
pub mod reference;
pub mod sharedstorage;
pub mod validation;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use azlinvm::{AzlinVM, AzlinVMSpec, AzlinVMStatus};
pub use backup::{Backup, BackupSpec, BackupStatus};
pub use common::{DeletionPolicy, PowerState};
pub use fleet::{Fleet, FleetSpec, FleetStatus};
pub use sharedstorage::{SharedStorage, SharedStorageSpec, SharedStorageStatus};

/// The CustomResourceDefinitions of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        AzlinVM::crd(),
        SharedStorage::crd(),
        Fleet::crd(),
        Backup::crd(),
    ]
}

/// File name under `crds/` of a CRD: `<plural>.<group>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// Renders one CRD as a YAML document.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// Renders every CRD as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}
