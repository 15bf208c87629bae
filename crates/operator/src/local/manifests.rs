//! Loading manifests for `azlin-operator local` and validating them client-side with the
//! same schema and CEL rules the API server enforces.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::validation::{Admission, FieldError};

/// One document of a manifest file.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// File it came from.
    pub file: PathBuf,
    /// Position of the document in the file (0-based).
    pub index: usize,
    /// The object.
    pub object: Value,
}

impl Manifest {
    /// `Kind/namespace/name`.
    pub fn display_name(&self) -> String {
        let kind = self.object["kind"].as_str().unwrap_or("?");
        let ns = self.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let name = self.object["metadata"]["name"].as_str().unwrap_or("?");
        format!("{kind}/{ns}/{name}")
    }
}

/// A manifest problem: unreadable file, bad YAML, unknown kind or a rejected object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// File and document.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Kinds that are not ours but may appear in a samples directory and are skipped.
const SKIPPED_KINDS: &[&str] = &["Kustomization"];

/// Reads every `*.yaml`/`*.yml` file of `path` (a directory, not recursive, or one file)
/// and returns the azlin objects in file order. Other kinds are errors, except a
/// kustomization file, which is skipped.
pub fn load(path: &Path) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| {
            vec![ManifestError {
                location: path.display().to_string(),
                message: format!("cannot read directory: {e}"),
            }]
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ManifestError {
                    location: file.display().to_string(),
                    message: format!("cannot read file: {e}"),
                });
                continue;
            }
        };
        let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(ManifestError {
                    location: file.display().to_string(),
                    message: format!("invalid YAML: {e}"),
                });
                continue;
            }
        };
        for (index, object) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
            let kind = object["kind"].as_str().unwrap_or_default();
            if SKIPPED_KINDS.contains(&kind) {
                continue;
            }
            if object["apiVersion"].as_str() != Some("azlin.io/v1alpha1") {
                errors.push(ManifestError {
                    location: format!("{} (document {})", file.display(), index + 1),
                    message: format!(
                        "{kind:?} with apiVersion {:?} is not an azlin.io/v1alpha1 object: local mode runs only AzlinVM, SharedStorage, Fleet and Backup",
                        object["apiVersion"].as_str().unwrap_or_default()
                    ),
                });
                continue;
            }
            out.push(Manifest {
                file: file.clone(),
                index,
                object,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Validates (and defaults) every manifest like the API server would at apply time.
pub fn validate(
    admission: &Admission,
    manifests: &mut [Manifest],
) -> Result<(), Vec<ManifestError>> {
    let mut errors = Vec::new();
    for m in manifests.iter_mut() {
        if let Err(fields) = admission.admit(&mut m.object, None) {
            let location = format!("{} ({})", m.file.display(), m.display_name());
            errors.extend(fields.into_iter().map(|f: FieldError| ManifestError {
                location: location.clone(),
                message: f.to_string(),
            }));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Renders objects back to a multi-document YAML stream for the in-memory API.
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&m.object)?);
    }
    Ok(out)
}
