//! Loading manifests for `azlin-operator local` and validating them client-side with the
//! same schema and CEL rules the API server enforces.
//!
//! Files are parsed under a YAML budget sized by the file (see [`Limits`]): any number of
//! documents up to [`Limits::max_documents`] and any size up to [`Limits::max_file_bytes`]
//! parse, but aliases may not expand a file beyond what its size could hold, so alias bombs
//! ("billion laughs") are refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_saphyr::budget::{Budget, BudgetBreach};

use crate::api::validation::{Admission, FieldError};

/// The azlin group's apiVersion.
pub const AZLIN_API_VERSION: &str = "azlin.io/v1alpha1";

/// Core kinds the operator reads that `local` accepts and applies before the azlin objects.
pub const CORE_KINDS: &[&str] = &["Namespace", "Secret", "ConfigMap"];

/// One document of a manifest file.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// File it came from.
    pub file: PathBuf,
    /// Position of the document in the file (0-based, items of a `List` share it).
    pub index: usize,
    /// The object.
    pub object: Value,
}

impl Manifest {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace` (`default` when absent), or `None` for a Namespace.
    pub fn namespace(&self) -> Option<&str> {
        (self.kind() != "Namespace").then(|| {
            self.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
        })
    }

    /// Whether this is a core object (Namespace, Secret, ConfigMap) rather than an azlin one.
    pub fn is_core(&self) -> bool {
        self.object["apiVersion"] == "v1" && CORE_KINDS.contains(&self.kind())
    }

    /// `Kind/namespace/name` (`Namespace/name` for a Namespace).
    pub fn display_name(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{ns}/{}", self.kind(), self.name()),
            None => format!("{}/{}", self.kind(), self.name()),
        }
    }

    /// `file (document N)`.
    pub fn location(&self) -> String {
        format!("{} (document {})", self.file.display(), self.index + 1)
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

/// Limits on one manifest file, against hostile input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read, in bytes (`--max-file-mib`).
    pub max_file_bytes: u64,
    /// Most documents in one file (`--max-documents`).
    pub max_documents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 * 1024 * 1024,
            max_documents: 100_000,
        }
    }
}

impl Limits {
    /// The YAML budget of a file of `len` bytes: every count a plain file of that size could
    /// reach (nodes, events, anchors, aliases, merge keys, scalar bytes) is allowed, so only
    /// alias expansion beyond the file's own size breaches it.
    fn budget(&self, len: usize) -> Budget {
        let mut b = Budget::default();
        b.max_reader_input_bytes = Some(usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX));
        b.max_documents = self.max_documents;
        b.max_nodes = b.max_nodes.max(len / 2);
        b.max_events = b.max_events.max(len);
        b.max_anchors = b.max_anchors.max(len / 4);
        b.max_aliases = b.max_aliases.max(len / 4);
        b.max_merge_keys = b.max_merge_keys.max(len / 4);
        b.max_recorded_anchor_events = b.max_recorded_anchor_events.max(len);
        b.max_recorded_anchor_bytes = b.max_recorded_anchor_bytes.max(len);
        b.max_total_scalar_bytes = b.max_total_scalar_bytes.max(len);
        b
    }

    /// What a budget breach means and how to get past it.
    fn explain(&self, breach: &BudgetBreach, len: usize) -> String {
        let b = self.budget(len);
        match breach {
            BudgetBreach::Documents { .. } => format!(
                "more than {} YAML documents in one file (the limit of --max-documents); split the file or raise --max-documents",
                self.max_documents
            ),
            BudgetBreach::InputBytes { .. } => self.too_large(len as u64),
            BudgetBreach::Depth { depth } => format!(
                "YAML nested {depth} levels deep, more than the {} allowed; flatten the document",
                b.max_depth
            ),
            BudgetBreach::Nodes { .. }
            | BudgetBreach::Events { .. }
            | BudgetBreach::Aliases { .. }
            | BudgetBreach::AliasAnchorRatio { .. }
            | BudgetBreach::ScalarBytes { .. }
            | BudgetBreach::MergeKeys { .. }
            | BudgetBreach::Anchors { .. } => format!(
                "YAML aliases expand this file beyond what its size can hold ({breach:?}; at most {} values for a file of {len} bytes): refused as an alias bomb (\"billion laughs\"); write the repeated parts out instead of using aliases",
                b.max_nodes
            ),
            other => format!("YAML budget exceeded: {other:?}"),
        }
    }

    fn too_large(&self, len: u64) -> String {
        format!(
            "the file is {:.1} MiB, more than the limit of {} MiB per file; split it or raise --max-file-mib",
            len as f64 / (1024.0 * 1024.0),
            self.max_file_bytes / (1024 * 1024)
        )
    }
}

/// Kinds that may appear in a samples directory and are skipped.
const SKIPPED_KINDS: &[&str] = &["Kustomization"];

/// The `*.yaml`/`*.yml` files of `path` (a directory, not recursive, sorted) or `path` itself.
fn files_of(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| ManifestError {
        location: path.display().to_string(),
        message: format!("cannot read directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one file's documents under the budget of `limits`.
fn parse_file(file: &Path, limits: &Limits) -> Result<Vec<Value>, ManifestError> {
    let error = |message: String| ManifestError {
        location: file.display().to_string(),
        message,
    };
    let len = std::fs::metadata(file)
        .map_err(|e| error(format!("cannot read file: {e}")))?
        .len();
    if len > limits.max_file_bytes {
        return Err(error(limits.too_large(len)));
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| error(format!("cannot read file: {e}")))?;
    let mut aliases = serde_saphyr::options::AliasLimits::default();
    aliases.max_total_replayed_events = aliases.max_total_replayed_events.max(text.len());
    let options = serde_saphyr::options! {
        budget: Some(limits.budget(text.len())),
        alias_limits: aliases,
    };
    serde_saphyr::from_multiple_with_options(&text, options).map_err(|e| {
        let at = |l: &serde_saphyr::Location| format!(" (at line {})", l.line());
        match innermost(&e) {
            serde_saphyr::Error::Budget { breach, location } => {
                error(limits.explain(breach, text.len()) + &at(location))
            }
            serde_saphyr::Error::AliasReplayLimitExceeded { location, .. }
            | serde_saphyr::Error::AliasExpansionLimitExceeded { location, .. }
            | serde_saphyr::Error::AliasReplayStackDepthExceeded { location, .. } => error(format!(
                "YAML aliases expand this file beyond what its size can hold: refused as an alias bomb (\"billion laughs\"); write the repeated parts out instead of using aliases{}",
                at(location)
            )),
            _ => error(format!("invalid YAML: {e}")),
        }
    })
}

/// The error inside snippet and alias wrappers.
fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    e
}

/// Reads every `*.yaml`/`*.yml` file of each path (a directory, not recursive, or one file)
/// and returns the objects in file order: azlin objects and the core kinds of
/// [`CORE_KINDS`] (`v1` `List`s are unpacked). Other kinds are errors, except a
/// kustomization file, which is skipped.
pub fn load(paths: &[PathBuf], limits: &Limits) -> Result<Vec<Manifest>, Vec<ManifestError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = match files_of(path) {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for file in files {
            let docs = match parse_file(&file, limits) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for (index, object) in docs.into_iter().enumerate() {
                let items = match object {
                    Value::Null => continue,
                    o if o["apiVersion"] == "v1" && o["kind"] == "List" => match o["items"].clone()
                    {
                        Value::Array(items) => items,
                        _ => Vec::new(),
                    },
                    o => vec![o],
                };
                for object in items {
                    let m = Manifest {
                        file: file.clone(),
                        index,
                        object,
                    };
                    match check_kind(&m) {
                        Ok(true) => out.push(m),
                        Ok(false) => {}
                        Err(message) => errors.push(ManifestError {
                            location: m.location(),
                            message,
                        }),
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Whether `m` is kept (`false`: skipped), or why it is refused.
fn check_kind(m: &Manifest) -> Result<bool, String> {
    let kind = m.kind();
    let api_version = m.object["apiVersion"].as_str().unwrap_or_default();
    if SKIPPED_KINDS.contains(&kind) {
        return Ok(false);
    }
    if api_version == AZLIN_API_VERSION || m.is_core() {
        if m.name().is_empty() {
            return Err(format!("{kind} without metadata.name"));
        }
        return Ok(true);
    }
    Err(format!(
        "{kind:?} with apiVersion {api_version:?} is not accepted: local mode runs the azlin.io/v1alpha1 kinds (AzlinVM, SharedStorage, Fleet, Backup) and the core v1 kinds they read ({})",
        CORE_KINDS.join(", ")
    ))
}

/// An error for every object defined more than once, naming each place it is defined.
pub fn duplicates(manifests: &[Manifest]) -> Vec<ManifestError> {
    let mut seen: BTreeMap<String, Vec<&Manifest>> = BTreeMap::new();
    for m in manifests {
        let api_version = m.object["apiVersion"].as_str().unwrap_or_default();
        let key = format!("{api_version} {}", m.display_name());
        seen.entry(key).or_default().push(m);
    }
    seen.values()
        .filter(|places| places.len() > 1)
        .map(|places| ManifestError {
            location: places[0].display_name(),
            message: format!(
                "defined {} times, in {}; each object may be defined once",
                places.len(),
                places
                    .iter()
                    .map(|m| m.location())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        })
        .collect()
}

/// Validates (and defaults) every azlin manifest like the API server would at apply time.
pub fn validate(
    admission: &Admission,
    manifests: &mut [Manifest],
) -> Result<(), Vec<ManifestError>> {
    let mut errors = Vec::new();
    for m in manifests.iter_mut().filter(|m| !m.is_core()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(
        name: &str,
        text: &str,
        limits: &Limits,
    ) -> Result<Vec<Manifest>, Vec<ManifestError>> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(name), text).expect("write");
        load(&[dir.path().to_path_buf()], limits)
    }

    fn vms(n: usize) -> String {
        (0..n)
            .map(|i| format!("---\napiVersion: azlin.io/v1alpha1\nkind: AzlinVM\nmetadata: {{name: vm-{i}, namespace: big}}\nspec: {{resourceGroup: rg, location: westus2}}\n"))
            .collect()
    }

    #[test]
    fn many_documents_in_one_file_load() {
        let loaded = load_text("vms.yaml", &vms(20_000), &Limits::default()).expect("loads");
        assert_eq!(loaded.len(), 20_000);
    }

    #[test]
    fn the_document_limit_names_its_flag() {
        let limits = Limits {
            max_documents: 10,
            ..Limits::default()
        };
        let errors = load_text("vms.yaml", &vms(11), &limits).expect_err("refused");
        assert!(errors[0].message.contains("--max-documents"), "{errors:?}");
        assert!(errors[0].location.ends_with("vms.yaml"), "{errors:?}");
    }

    #[test]
    fn the_size_limit_names_its_flag() {
        let limits = Limits {
            max_file_bytes: 100,
            ..Limits::default()
        };
        let errors = load_text("vms.yaml", &vms(3), &limits).expect_err("refused");
        assert!(errors[0].message.contains("--max-file-mib"), "{errors:?}");
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut yaml = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            yaml.push_str(&format!(
                "  a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        let errors = load_text("lol.yaml", &yaml, &Limits::default()).expect_err("refused");
        assert!(errors[0].message.contains("alias bomb"), "{errors:?}");
    }

    #[test]
    fn anchors_in_every_document_are_fine() {
        let text: String = (0..3000)
            .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata:\n  a: &v x\n  b: *v\n"))
            .collect();
        assert_eq!(
            load_text("c.yaml", &text, &Limits::default())
                .expect("loads")
                .len(),
            3000
        );
    }

    #[test]
    fn duplicates_name_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), vms(2)).expect("write");
        std::fs::write(dir.path().join("b.yaml"), vms(1)).expect("write");
        let loaded = load(&[dir.path().to_path_buf()], &Limits::default()).expect("loads");
        let errors = duplicates(&loaded);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = errors[0].to_string();
        assert!(e.contains("AzlinVM/big/vm-0"), "{e}");
        assert!(
            e.contains("a.yaml (document 1)") && e.contains("b.yaml (document 1)"),
            "{e}"
        );
    }

    #[test]
    fn core_kinds_and_lists_are_accepted_others_refused() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: team}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: team}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        let loaded = load_text("core.yaml", text, &Limits::default()).expect("loads");
        let names: Vec<String> = loaded.iter().map(Manifest::display_name).collect();
        assert_eq!(
            names,
            ["Namespace/team", "ConfigMap/team/c", "Secret/default/s"]
        );
        let errors = load_text(
            "d.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
            &Limits::default(),
        )
        .expect_err("refused");
        assert!(errors[0].message.contains("Secret"), "{errors:?}");
        assert!(
            errors[0].location.contains("d.yaml (document 1)"),
            "{errors:?}"
        );
    }
}
