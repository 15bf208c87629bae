//! NFS mounts of a VM: resolve `spec.mounts[]` to SharedStorage endpoints, decide whether the
//! guest must be contacted, and turn script results into `status.mounts[]`.

use kube::Api;

use crate::api::azlinvm::{MountSpec, MountState as ApiMountState, MountStatus};
use crate::api::{AzlinVM, SharedStorage};
use crate::controllers::error::Error;
use crate::controllers::sharedstorage::status::mount_source;
use crate::ssh::{MountOutcome, MountPlan, MountState, NfsMount};

/// Condition type reporting the mounts.
pub const MOUNTED: &str = "Mounted";

/// One mount of the spec with what is known about its storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredMount {
    /// SharedStorage name.
    pub storage_ref: String,
    /// Mount point.
    pub path: String,
    /// Read-only.
    pub read_only: bool,
    /// NFS source once the storage's share exists.
    pub source: Option<String>,
    /// Why it is pending, when `source` is `None`.
    pub pending: String,
}

/// Mount point of `m`: its `path`, else the storage template's, else `/mnt/<storageRef>`.
pub fn mount_path(m: &MountSpec, storage: Option<&SharedStorage>) -> String {
    m.path
        .clone()
        .or_else(|| {
            storage
                .and_then(|s| s.spec.template)
                .map(|t| t.mount_path().to_string())
        })
        .unwrap_or_else(|| format!("/mnt/{}", m.storage_ref))
}

/// Resolves `spec.mounts[]` against the SharedStorage objects of the VM's namespace.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    vm: &AzlinVM,
) -> Result<Vec<DesiredMount>, Error> {
    let api: Api<SharedStorage> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for m in &vm.spec.mounts {
        let storage = api.get_opt(&m.storage_ref).await?;
        // Mount whenever the share exists, not only while the storage is Ready: a quota
        // change or a blocked deletion must not unmount the share from its users.
        let ready_source = storage.as_ref().and_then(mount_source).map(str::to_string);
        let pending = match (&storage, &ready_source) {
            (None, _) => format!(
                "SharedStorage {} not found in namespace {namespace}",
                m.storage_ref
            ),
            (Some(_), None) => format!(
                "waiting for SharedStorage {} to create its NFS share",
                m.storage_ref
            ),
            (Some(_), Some(_)) => String::new(),
        };
        out.push(DesiredMount {
            storage_ref: m.storage_ref.clone(),
            path: mount_path(m, storage.as_ref()),
            read_only: m.read_only,
            source: ready_source,
            pending,
        });
    }
    Ok(out)
}

/// The plan for the guest: the mounts whose storage is ready (others are left out, and
/// managed mounts not in the plan are removed by the script).
pub fn plan(desired: &[DesiredMount]) -> MountPlan {
    MountPlan {
        mounts: desired
            .iter()
            .filter_map(|d| {
                d.source.as_ref().map(|s| NfsMount {
                    source: s.clone(),
                    path: d.path.clone(),
                    read_only: d.read_only,
                })
            })
            .collect(),
        shared_home: None,
    }
}

/// Whether the guest must be contacted: a ready mount is not yet Mounted at its path, or a
/// mount in the status is no longer wanted (must be unmounted).
pub fn needs_run(desired: &[DesiredMount], current: &[MountStatus]) -> bool {
    let ready_missing = desired.iter().any(|d| {
        d.source.is_some()
            && !current.iter().any(|c| {
                c.path == d.path
                    && c.storage_ref == d.storage_ref
                    && c.state == ApiMountState::Mounted
            })
    });
    let removed = current.iter().any(|c| {
        c.state == ApiMountState::Mounted
            && !desired
                .iter()
                .any(|d| d.path == c.path && d.source.is_some())
    });
    ready_missing || removed
}

/// `status.mounts[]` from the desired mounts and, when the guest was contacted, its results.
/// Without results, the previous state of a mount is kept when it is still wanted and ready.
pub fn statuses(
    desired: &[DesiredMount],
    outcome: Option<&MountOutcome>,
    previous: &[MountStatus],
) -> Vec<MountStatus> {
    desired
        .iter()
        .map(|d| {
            if d.source.is_none() {
                return MountStatus {
                    storage_ref: d.storage_ref.clone(),
                    path: d.path.clone(),
                    state: ApiMountState::Pending,
                    message: d.pending.clone(),
                };
            }
            let result = outcome.and_then(|o| o.results.iter().find(|r| r.path == d.path));
            match result {
                Some(r) => MountStatus {
                    storage_ref: d.storage_ref.clone(),
                    path: d.path.clone(),
                    state: match r.state {
                        MountState::Mounted => ApiMountState::Mounted,
                        MountState::Unmounted | MountState::Failed => ApiMountState::Failed,
                    },
                    message: if r.state == MountState::Mounted {
                        String::new()
                    } else {
                        r.message.clone()
                    },
                },
                None => previous
                    .iter()
                    .find(|p| p.path == d.path && p.storage_ref == d.storage_ref)
                    .cloned()
                    .unwrap_or_else(|| MountStatus {
                        storage_ref: d.storage_ref.clone(),
                        path: d.path.clone(),
                        state: ApiMountState::Pending,
                        message: "waiting for the VM to be running".into(),
                    }),
            }
        })
        .collect()
}

/// Whether every removed mount was unmounted according to `outcome`.
pub fn removals_done(outcome: &MountOutcome, desired: &[DesiredMount]) -> bool {
    outcome
        .results
        .iter()
        .filter(|r| !desired.iter().any(|d| d.path == r.path))
        .all(|r| r.state == MountState::Unmounted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::MountResult;

    fn ready(path: &str) -> DesiredMount {
        DesiredMount {
            storage_ref: "data".into(),
            path: path.into(),
            read_only: false,
            source: Some("a.file.core.windows.net:/a/data".into()),
            pending: String::new(),
        }
    }

    fn st(path: &str, state: ApiMountState) -> MountStatus {
        MountStatus {
            storage_ref: "data".into(),
            path: path.into(),
            state,
            message: String::new(),
        }
    }

    #[test]
    fn mount_paths_default_sensibly() {
        let m = MountSpec {
            storage_ref: "data".into(),
            path: None,
            read_only: false,
        };
        assert_eq!(mount_path(&m, None), "/mnt/data");
        let m2 = MountSpec {
            path: Some("/data/x".into()),
            ..m
        };
        assert_eq!(mount_path(&m2, None), "/data/x");
    }

    #[test]
    fn run_only_when_something_differs() {
        let d = vec![ready("/mnt/data")];
        assert!(needs_run(&d, &[]));
        assert!(!needs_run(&d, &[st("/mnt/data", ApiMountState::Mounted)]));
        assert!(needs_run(&d, &[st("/mnt/data", ApiMountState::Failed)]));
        assert!(needs_run(&[], &[st("/mnt/data", ApiMountState::Mounted)]));
        let pending = DesiredMount {
            source: None,
            pending: "waiting".into(),
            ..ready("/mnt/data")
        };
        assert!(!needs_run(std::slice::from_ref(&pending), &[]));
        assert!(plan(std::slice::from_ref(&pending)).mounts.is_empty());
        let s = statuses(&[pending], None, &[]);
        assert_eq!(s[0].state, ApiMountState::Pending);
        assert_eq!(s[0].message, "waiting");
    }

    #[test]
    fn statuses_from_results() {
        let d = vec![ready("/mnt/data")];
        let outcome = MountOutcome {
            results: vec![
                MountResult {
                    path: "/mnt/data".into(),
                    state: MountState::Mounted,
                    message: "ok".into(),
                },
                MountResult {
                    path: "/mnt/old".into(),
                    state: MountState::Unmounted,
                    message: String::new(),
                },
            ],
            host_key_fingerprint: "SHA256:x".into(),
            exit_status: Some(0),
        };
        let s = statuses(&d, Some(&outcome), &[]);
        assert_eq!(s, vec![st("/mnt/data", ApiMountState::Mounted)]);
        assert!(removals_done(&outcome, &d));
        let kept = statuses(&d, None, &s);
        assert_eq!(kept, s);
    }
}
