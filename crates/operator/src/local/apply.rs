//! Applying the loaded manifests to the in-memory API in the order `kubectl apply` users
//! rely on: Namespaces first, then Secrets and ConfigMaps, then the azlin objects. A
//! namespace the objects use but no manifest declares is created, as
//! `helm install --create-namespace` would, and said so.

use super::manifests::{Manifest, ManifestError};
use crate::embedded::EmbeddedEnv;

/// Applies `manifests` and returns `kubectl`-style lines (`namespace/team created`) for the
/// core objects and created namespaces; stops at the first refusal, naming its file.
pub fn apply(env: &EmbeddedEnv, manifests: &[Manifest]) -> Result<Vec<String>, ManifestError> {
    let rank = |m: &Manifest| match (m.is_core(), m.kind()) {
        (true, "Namespace") => 0,
        (true, _) => 1,
        (false, _) => 2,
    };
    let mut ordered: Vec<&Manifest> = manifests.iter().collect();
    ordered.sort_by_key(|m| rank(m));
    let mut lines = Vec::new();
    for m in ordered {
        let refused = |message: String| ManifestError {
            location: format!("{} ({})", m.location(), m.display_name()),
            message,
        };
        if m.kind() == "Namespace" && m.is_core() {
            if env.api().get("v1", "Namespace", None, m.name()).is_some() {
                lines.push(format!("namespace/{} unchanged", m.name()));
                continue;
            }
        } else if let Some(ns) = m.namespace()
            && env
                .api()
                .ensure_namespace(ns)
                .map_err(|e| refused(format!("cannot create namespace {ns}: {e}")))?
        {
            lines.push(format!(
                "namespace/{ns} created (used by the manifests, not declared in them)"
            ));
        }
        let json = serde_json::to_string(&m.object).map_err(|e| refused(e.to_string()))?;
        env.api()
            .apply_yaml(&json)
            .map_err(|e| refused(format!("the API refused it: {e}")))?;
        if m.is_core() {
            lines.push(format!("{}/{} created", m.kind().to_lowercase(), m.name()));
        }
    }
    Ok(lines)
}
