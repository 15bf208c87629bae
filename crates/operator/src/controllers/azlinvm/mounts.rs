//! NFS mounts of a VM: resolve `spec.mounts[]` (and the shared home of the VM's Fleet) to
//! SharedStorage endpoints, decide whether the guest must be contacted, and turn script
//! results into `status.mounts[]`.
//!
//! ## Shared home
//! An AzlinVM whose controller ownerReference is a Fleet (`azlin.io/v1alpha1`) with
//! `spec.sharedHome` gets that SharedStorage mounted over `/home/<adminUsername>` (uid/gid
//! 1000, seeded once from the existing home's dotfiles, secrets never copied, per-VM
//! `authorized_keys` kept on the local disk; see [`crate::ssh::nfs`]). It is one entry of
//! `status.mounts[]` with the storage's name and path `/home/<adminUsername>`.
//!
//! Removing `sharedHome` (or the ownerReference) makes the script unmount the home like any
//! removed mount: a plain `umount` (never forced or lazy) and then the `/etc/fstab` line is
//! dropped. The local home underneath is visible again as it was before the share was
//! mounted; what was written while shared stays on the share. The sshd drop-in and the
//! local copy of `authorized_keys` stay (harmless: the drop-in also reads
//! `.ssh/authorized_keys`). A home is often busy — any login session, and on a real VM the
//! operator's own SSH session as the admin user, whose `sudo` runs with the home as working
//! directory — and then `umount` fails: the share stays mounted and in `/etc/fstab`, and the
//! home stays in `status.mounts[]` as `Failed` with the reason (and `Mounted` is False)
//! while the operator retries with backoff, instead of claiming it was removed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::runtime::reflector::Store;

use crate::api::azlinvm::{MountSpec, MountState as ApiMountState, MountStatus};
use crate::api::fleet::Fleet;
use crate::api::{AzlinVM, SharedStorage};
use crate::controllers::sharedstorage::status::mount_source;
use crate::reconcile::caches::{Guarded, get_valid};
use crate::ssh::layout::reported_layout;
use crate::ssh::{MountDirs, MountOutcome, MountPlan, MountState, NfsMount, SharedHome};

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
    /// Whether the SharedStorage does not exist at all.
    pub storage_missing: bool,
    /// For the shared home of the VM's Fleet: the admin user whose home it is.
    pub home_user: Option<String>,
    /// The storage template's directories, made sure of when mounting.
    pub dirs: MountDirs,
    /// Why the storage's network rules keep this VM out, if they do (see [`check_network`]).
    pub denied: Option<String>,
}

/// Marks the mounts whose storage does not accept NFS from `vm_subnet`: Azure allows NFS
/// only from the subnets in the account's network rules (the storage's managed subnet,
/// `storage_subnet(storage)`, and its `spec.allowedSubnets`), so such a mount would be
/// refused on the VM. They are left out of the guest plan and say what to change.
pub fn check_network(
    mounts: &mut [DesiredMount],
    storages: &Store<Guarded<SharedStorage>>,
    namespace: &str,
    vm_subnet: &str,
    storage_subnet: impl Fn(&SharedStorage) -> String,
) {
    for m in mounts.iter_mut() {
        let Some(storage) = get_valid(storages, namespace, &m.storage_ref) else {
            continue;
        };
        let allowed = crate::controllers::sharedstorage::build::allowed_subnets(
            &storage_subnet(&storage),
            &storage.spec.allowed_subnets,
        );
        if allowed.iter().any(|s| s.eq_ignore_ascii_case(vm_subnet)) {
            continue;
        }
        let message = format!(
            "SharedStorage {} accepts NFS only from the subnets {}; this VM's subnet {vm_subnet} is not one of them: add it to the SharedStorage's spec.allowedSubnets, or create the VM in resource group {} ({})",
            m.storage_ref,
            allowed.join(", "),
            storage.spec.resource_group,
            storage.spec.location,
        );
        m.source = None;
        m.pending = message.clone();
        m.denied = Some(message);
    }
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

/// A SharedStorage reference resolved in the VM's namespace.
struct Share {
    storage: Option<SharedStorage>,
    source: Option<String>,
    pending: String,
}

impl Share {
    fn missing(&self) -> bool {
        self.storage.is_none()
    }
}

/// Looks up SharedStorage `name` in `storages`: its NFS source once the share exists,
/// else why not.
fn resolve_share(storages: &Store<Guarded<SharedStorage>>, namespace: &str, name: &str) -> Share {
    let storage = get_valid(storages, namespace, name);
    // Mount whenever the share exists, not only while the storage is Ready: a quota
    // change or a blocked deletion must not unmount the share from its users.
    let source = storage.as_ref().and_then(mount_source).map(str::to_string);
    let pending = match (&storage, &source) {
        (None, _) => format!("SharedStorage {name} not found in namespace {namespace}"),
        (Some(_), None) => format!("waiting for SharedStorage {name} to create its NFS share"),
        (Some(_), Some(_)) => String::new(),
    };
    Share {
        storage,
        source,
        pending,
    }
}

/// The controller ownerReference of `vm` to a Fleet (`azlin.io/v1alpha1`), if any.
pub fn fleet_owner(vm: &AzlinVM) -> Option<&OwnerReference> {
    vm.metadata.owner_references.as_deref()?.iter().find(|o| {
        o.controller == Some(true)
            && o.kind == Fleet::kind(&())
            && o.api_version == Fleet::api_version(&())
    })
}

/// Path a shared home of `user` is mounted on (as [`SharedHome::path`]).
pub fn home_path(user: &str) -> String {
    format!("/home/{user}")
}

/// The directories of `storage`'s template, made for `user`.
fn template_dirs(storage: &SharedStorage, user: &str) -> MountDirs {
    let layout = crate::controllers::sharedstorage::build::mount_layout(storage);
    MountDirs {
        user: user.to_string(),
        shared: layout.shared_dirs.iter().map(|d| d.to_string()).collect(),
        local: layout.local_dirs.iter().map(|d| d.to_string()).collect(),
    }
}

/// Whether `path` is a user's home, i.e. can only be a shared home (plain mounts may not
/// use `/home/<name>`, see [`crate::ssh::validate_mount_path`]).
fn is_home_path(path: &str) -> bool {
    path.strip_prefix("/home/")
        .is_some_and(|u| !u.is_empty() && !u.contains('/'))
}

/// Resolves `spec.mounts[]` and the shared home of the VM's Fleet against the SharedStorage
/// and Fleet caches.
pub fn resolve(
    storages: &Store<Guarded<SharedStorage>>,
    fleets: &Store<Guarded<Fleet>>,
    namespace: &str,
    vm: &AzlinVM,
) -> Vec<DesiredMount> {
    let mut out: Vec<DesiredMount> = vm
        .spec
        .mounts
        .iter()
        .map(|m| {
            let share = resolve_share(storages, namespace, &m.storage_ref);
            let dirs = share
                .storage
                .as_ref()
                .map(|s| template_dirs(s, &vm.spec.admin_username))
                .unwrap_or_default();
            DesiredMount {
                storage_ref: m.storage_ref.clone(),
                path: mount_path(m, share.storage.as_ref()),
                read_only: m.read_only,
                storage_missing: share.missing(),
                source: share.source,
                pending: share.pending,
                home_user: None,
                dirs,
                denied: None,
            }
        })
        .collect();
    out.extend(resolve_shared_home(storages, fleets, namespace, vm));
    out
}

/// The Fleet controlling `vm` (same uid as its ownerReference), from the cache.
pub fn owning_fleet(
    fleets: &Store<Guarded<Fleet>>,
    namespace: &str,
    vm: &AzlinVM,
) -> Option<Fleet> {
    let owner = fleet_owner(vm)?;
    get_valid(fleets, namespace, &owner.name)
        .filter(|f| f.metadata.uid.as_deref() == Some(owner.uid.as_str()))
}

/// The shared home of the Fleet controlling `vm`: `None` without such a Fleet owner or when
/// the Fleet has no `sharedHome`; pending while the Fleet (same uid) or storage is missing.
fn resolve_shared_home(
    storages: &Store<Guarded<SharedStorage>>,
    fleets: &Store<Guarded<Fleet>>,
    namespace: &str,
    vm: &AzlinVM,
) -> Option<DesiredMount> {
    let owner = fleet_owner(vm)?;
    let user = vm.spec.admin_username.clone();
    let path = home_path(&user);
    let (storage_ref, share) = match owning_fleet(fleets, namespace, vm) {
        None => {
            // The storage is unknown without the Fleet: keep the one last reported.
            let last = vm
                .status
                .iter()
                .flat_map(|s| &s.mounts)
                .find(|m| m.path == path)
                .map(|m| m.storage_ref.clone())
                .unwrap_or_default();
            let pending = format!(
                "Fleet {} (uid {}) not found in namespace {namespace}",
                owner.name, owner.uid
            );
            let share = Share {
                storage: None,
                source: None,
                pending,
            };
            (last, share)
        }
        Some(f) => {
            let name = f.spec.shared_home?;
            let share = resolve_share(storages, namespace, &name);
            (name, share)
        }
    };
    Some(DesiredMount {
        storage_ref,
        path,
        read_only: false,
        storage_missing: share.missing(),
        source: share.source,
        pending: share.pending,
        home_user: Some(user),
        dirs: MountDirs::default(),
        denied: None,
    })
}

/// The plan for the guest: the mounts whose storage is ready (others are left out, and
/// managed mounts not in the plan are removed by the script).
pub fn plan(desired: &[DesiredMount], env: Option<&str>) -> MountPlan {
    MountPlan {
        env: env.map(str::to_string),
        mounts: desired
            .iter()
            .filter(|d| d.home_user.is_none())
            .filter_map(|d| {
                d.source.as_ref().map(|s| NfsMount {
                    source: s.clone(),
                    path: d.path.clone(),
                    read_only: d.read_only,
                    dirs: d.dirs.clone(),
                })
            })
            .collect(),
        shared_home: desired
            .iter()
            .find_map(|d| Some(SharedHome::new(d.source.clone()?, d.home_user.clone()?))),
    }
}

/// Whether the guest must be contacted: a ready mount is not yet Mounted at its path, or a
/// mount in the status (Mounted, or Failed such as a busy unmount) is no longer wanted.
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
        c.state != ApiMountState::Pending
            && !desired
                .iter()
                .any(|d| d.path == c.path && d.source.is_some())
    });
    ready_missing || removed
}

/// `status.mounts[]` from the desired mounts and, when the guest was contacted, its results.
/// Without results, the previous state of a mount is kept when it is still wanted and ready.
/// Mounts no longer wanted but still on the VM follow (see [`still_on_vm`]).
pub fn statuses(
    desired: &[DesiredMount],
    outcome: Option<&MountOutcome>,
    previous: &[MountStatus],
) -> Vec<MountStatus> {
    let mut out: Vec<MountStatus> = desired
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
                        reported_layout(&r.message).to_string()
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
        .collect();
    out.extend(still_on_vm(desired, outcome, previous));
    out
}

/// `status.mounts[]` of a VM that is not running (`power` says how it is): wanted mounts
/// shown as mounted are pending until it runs again (then the guest is contacted again, see
/// [`needs_run`]); mounts no longer wanted keep their entry, so they are removed then.
pub fn not_running(
    mut mounts: Vec<MountStatus>,
    desired: &[DesiredMount],
    power: &str,
) -> Vec<MountStatus> {
    for m in &mut mounts {
        let wanted = desired.iter().any(|d| d.path == m.path);
        if wanted && m.state == ApiMountState::Mounted {
            m.state = ApiMountState::Pending;
            m.message = format!("the VM is {power}; mounted again when it runs");
        }
    }
    mounts
}

/// Mounts no longer wanted that are still on the VM: with results, those whose removal
/// failed (e.g. a busy unmount; the script keeps their `/etc/fstab` line); without, those
/// the previous status showed on the VM (removed while the VM was not reachable).
fn still_on_vm(
    desired: &[DesiredMount],
    outcome: Option<&MountOutcome>,
    previous: &[MountStatus],
) -> Vec<MountStatus> {
    // As in the plan: a pending mount is not wanted on the VM yet.
    let wanted = |path: &str| desired.iter().any(|d| d.path == path && d.source.is_some());
    let Some(outcome) = outcome else {
        return previous
            .iter()
            .filter(|p| p.state != ApiMountState::Pending && !wanted(&p.path))
            .cloned()
            .collect();
    };
    outcome
        .results
        .iter()
        .filter(|r| r.state == MountState::Failed && !wanted(&r.path))
        .map(|r| MountStatus {
            storage_ref: previous
                .iter()
                .find(|p| p.path == r.path)
                .map(|p| p.storage_ref.clone())
                .unwrap_or_default(),
            path: r.path.clone(),
            state: ApiMountState::Failed,
            message: if is_home_path(&r.path) {
                format!(
                    "the shared home is no longer wanted but stays mounted: {}; a process still \
                     uses the home (a login session; on a VM also the operator's SSH session as \
                     the admin user, whose working directory is the home): retried with backoff, \
                     or unmount it by hand and the operator drops the /etc/fstab line",
                    r.message
                )
            } else {
                format!("no longer wanted but still mounted: {}", r.message)
            },
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
            storage_missing: false,
            home_user: None,
            dirs: Default::default(),
            denied: None,
        }
    }

    fn home(source: Option<&str>) -> DesiredMount {
        DesiredMount {
            storage_ref: "home".into(),
            path: home_path("azureuser"),
            read_only: false,
            source: source.map(str::to_string),
            pending: if source.is_some() {
                String::new()
            } else {
                "waiting".into()
            },
            storage_missing: false,
            home_user: Some("azureuser".into()),
            dirs: Default::default(),
            denied: None,
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
        assert!(plan(std::slice::from_ref(&pending), None).mounts.is_empty());
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
            env: Ok("absent".into()),
        };
        let s = statuses(&d, Some(&outcome), &[]);
        assert_eq!(s, vec![st("/mnt/data", ApiMountState::Mounted)]);
        assert!(removals_done(&outcome, &d));
        let kept = statuses(&d, None, &s);
        assert_eq!(kept, s);
    }

    #[test]
    fn fleet_owner_needs_a_controller_reference_to_a_fleet() {
        let owner = |kind: &str, api_version: &str, controller: Option<bool>| OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "team".into(),
            uid: "u1".into(),
            controller,
            block_owner_deletion: None,
        };
        let mut vm = AzlinVM::new(
            "vm",
            serde_json::from_value(serde_json::json!({
                "resourceGroup": "rg", "location": "westus2"
            }))
            .expect("spec"),
        );
        assert!(fleet_owner(&vm).is_none());
        vm.metadata.owner_references = Some(vec![
            owner("Fleet", "azlin.io/v1alpha1", None),
            owner("Fleet", "other.io/v1", Some(true)),
            owner("ReplicaSet", "apps/v1", Some(true)),
        ]);
        assert!(fleet_owner(&vm).is_none());
        vm.metadata
            .owner_references
            .as_mut()
            .expect("refs")
            .push(owner("Fleet", "azlin.io/v1alpha1", Some(true)));
        assert_eq!(fleet_owner(&vm).map(|o| o.name.as_str()), Some("team"));
    }

    #[test]
    fn shared_home_is_planned_reported_and_left_alone_at_rest() {
        let src = "a.file.core.windows.net:/a/home";
        let d = vec![ready("/mnt/data"), home(Some(src))];
        let p = plan(&d, None);
        assert_eq!(p.mounts.len(), 1);
        assert_eq!(p.shared_home, Some(SharedHome::new(src, "azureuser")));
        assert_eq!(p.paths(), vec!["/mnt/data", "/home/azureuser"]);
        // Pending: no shared home in the plan, no guest run for it.
        let pending = [home(None)];
        assert_eq!(plan(&pending, None).shared_home, None);
        assert!(!needs_run(&pending, &[]));
        let mounted = MountStatus {
            storage_ref: "home".into(),
            ..st("/home/azureuser", ApiMountState::Mounted)
        };
        assert!(!needs_run(
            &[home(Some(src))],
            std::slice::from_ref(&mounted)
        ));
        assert!(needs_run(&[home(Some(src))], &[]));
        // Removed (sharedHome dropped): run to unmount it.
        assert!(needs_run(&[], std::slice::from_ref(&mounted)));
    }

    #[test]
    fn a_busy_removal_stays_in_the_status_until_done() {
        let mounted = MountStatus {
            storage_ref: "home".into(),
            ..st("/home/azureuser", ApiMountState::Mounted)
        };
        let result = |state, message: &str| MountOutcome {
            results: vec![MountResult {
                path: "/home/azureuser".into(),
                state,
                message: message.into(),
            }],
            host_key_fingerprint: "SHA256:x".into(),
            exit_status: Some(u32::from(state == MountState::Failed)),
            env: Ok("absent".into()),
        };
        // Not reachable: still shown as it was, and still to be removed.
        let kept = statuses(&[], None, std::slice::from_ref(&mounted));
        assert_eq!(kept, vec![mounted.clone()]);
        let busy = result(
            MountState::Failed,
            "unmount failed (the /etc/fstab entry is kept): target is busy.",
        );
        let s = statuses(&[], Some(&busy), std::slice::from_ref(&mounted));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].state, ApiMountState::Failed);
        assert_eq!(s[0].storage_ref, "home");
        assert!(s[0].message.contains("target is busy"), "{}", s[0].message);
        assert!(s[0].message.contains("stays mounted"), "{}", s[0].message);
        assert!(needs_run(&[], &s), "a failed removal is retried");
        // Pending again (e.g. the Fleet is gone): still reported as on the VM, and retried.
        let both = statuses(&[home(None)], Some(&busy), std::slice::from_ref(&mounted));
        let states: Vec<ApiMountState> = both.iter().map(|m| m.state).collect();
        assert_eq!(states, [ApiMountState::Pending, ApiMountState::Failed]);
        assert!(needs_run(&[home(None)], &both));
        let done = result(
            MountState::Unmounted,
            "unmounted and removed from /etc/fstab",
        );
        assert!(statuses(&[], Some(&done), &s).is_empty());
        assert!(is_home_path("/home/azureuser"));
        assert!(!is_home_path("/home/azureuser/x"));
        assert!(!is_home_path("/mnt/data"));
    }
}
