//! The SharedStorage controller: one Azure Files NFS 4.1 share per object, on a Premium
//! `FileStorage` account reachable only from the operator-managed VM subnet of its region
//! (plus `spec.allowedSubnets`).
//!
//! Level-based: every reconcile GETs the resource group, the managed subnet, the account and
//! the share, compares them with the desired state ([`build`]) and writes only what differs;
//! status is written only when it changed ([`crate::controllers::status`]). At rest a
//! reconcile makes no ARM and no Kubernetes writes.
//!
//! - Account name: [`naming::storage_account_name`] (deterministic, 24 characters), tagged
//!   with the owner tags; a same-named account without them is never touched (Stalled).
//! - Share: named after the object, `enabledProtocols: NFS` (creation only), `rootSquash`,
//!   `shareQuota` = `spec.sizeGiB`. Growth is applied; a shrink only when the share's reported
//!   usage (`shareUsageBytes`, `$expand=stats`) fits, otherwise Stalled `ShrinkBelowUsage`.
//! - `status.mountedBy`: AzlinVMs of the namespace listing the storage in `spec.mounts[]`,
//!   and `fleet/<name>` for Fleets with `spec.sharedHome` naming it; kept current by watching
//!   both kinds. A change of a namespace's tenant credential Secret reconciles its storages.
//! - Deletion (finalizer [`FINALIZER`]): with `deletionPolicy: Delete` it is refused while
//!   anything still mounts the share (Stalled `DeletionBlocked` listing the users); then the
//!   share and the account are deleted and awaited. With `Retain` the account is tagged
//!   `azlin-operator-released=true` and the finalizer goes at once. A missing account or
//!   resource group never blocks deletion.
//! - For the VM side: [`status::mount_source`] is the endpoint to mount (set whenever the
//!   share exists, also while Stalled or Deleting).
//! - Templates: [`build::mount_layout`] gives the default mount path and directories of a
//!   storage (the VM side creates them); [`build::templates_markdown`] renders the README table.

pub mod build;
pub mod network;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::azlinvm::AzlinVM;
use crate::api::common::DeletionPolicy;
use crate::api::conditions::{self, Health};
use crate::api::fleet::Fleet;
use crate::api::sharedstorage::{SharedStorage, SharedStorageStatus, StoragePhase};
use crate::controllers::context::{Context, TENANT_CREDENTIALS_SECRET};
use crate::controllers::error::Error;
use crate::controllers::naming::{self, Owner, Ownership};
use crate::controllers::status::{publish_event, write_status};
use crate::runtime::readiness::ReadyGate;
use azlin_arm::storage::{FileShare, StorageAccount};
use azlin_arm::{ArmClient, ArmError};

use build::SharePlan;
use network::Prepared;
use status::{Observed, Users};

/// Kind name (controller, metrics, events).
pub const KIND: &str = "SharedStorage";
/// Finalizer guarding the Azure resources of a SharedStorage.
pub const FINALIZER: &str = "azlin.io/sharedstorage-cleanup";

type Guarded = DeserializeGuard<SharedStorage>;

/// Runs the SharedStorage controller until `shutdown`; `gate` turns ready once its cache synced.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken, gate: ReadyGate) {
    let client = ctx.client.clone();
    let (storages, vms, fleets): (
        Api<Guarded>,
        Api<DeserializeGuard<AzlinVM>>,
        Api<DeserializeGuard<Fleet>>,
    ) = match &ctx.settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let tenant_secrets: Api<Secret> = match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(storages, watcher::Config::default().any_semantic());
    let by_vm = controller.store();
    let by_fleet = controller.store();
    let by_secret = controller.store();
    let controller = controller
        .watches(
            tenant_secrets,
            watcher::Config::default()
                .any_semantic()
                .fields(&format!("metadata.name={TENANT_CREDENTIALS_SECRET}")),
            move |secret: Secret| storages_in(&by_secret, secret.namespace().as_deref()),
        )
        .watches(vms, watcher::Config::default().any_semantic(), move |vm| {
            storages_of_vm(&by_vm, &vm)
        })
        .watches(
            fleets,
            watcher::Config::default().any_semantic(),
            move |fleet| storages_of_fleet(&by_fleet, &fleet),
        );
    crate::controllers::drive(KIND, controller, reconcile, ctx, shutdown, gate).await;
}

/// Every storage of `namespace` (a change of its tenant credential concerns them all).
fn storages_in(store: &Store<Guarded>, namespace: Option<&str>) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter(|s| s.meta().namespace.as_deref() == namespace)
        .filter_map(|s| {
            let name = s.meta().name.as_deref()?;
            Some(ObjectRef::new(name).within(namespace.unwrap_or_default()))
        })
        .collect()
}

/// The storages a VM event concerns: those its spec mounts, and those whose status still
/// lists it (so removing a mount or the VM updates `mountedBy`).
fn storages_of_vm(
    store: &Store<Guarded>,
    vm: &DeserializeGuard<AzlinVM>,
) -> Vec<ObjectRef<Guarded>> {
    let (meta, refs): (_, Vec<String>) = match &vm.0 {
        Ok(vm) => (
            &vm.metadata,
            vm.spec
                .mounts
                .iter()
                .map(|m| m.storage_ref.clone())
                .collect(),
        ),
        Err(invalid) => (&invalid.metadata, Vec::new()),
    };
    affected(store, meta, refs, meta.name.clone().unwrap_or_default())
}

/// The storages a Fleet event concerns: its `sharedHome`, and those whose status lists it.
fn storages_of_fleet(
    store: &Store<Guarded>,
    fleet: &DeserializeGuard<Fleet>,
) -> Vec<ObjectRef<Guarded>> {
    let (meta, refs): (_, Vec<String>) = match &fleet.0 {
        Ok(f) => (&f.metadata, f.spec.shared_home.iter().cloned().collect()),
        Err(invalid) => (&invalid.metadata, Vec::new()),
    };
    let user = format!(
        "{}{}",
        status::FLEET_PREFIX,
        meta.name.as_deref().unwrap_or_default()
    );
    affected(store, meta, refs, user)
}

/// The storages whose `mountedBy` a change of `user` (a VM name or `fleet/<name>`, with
/// `meta` and the storages `refs` it now uses) may make stale: those it uses but that do not
/// list it, those that list it but it no longer uses, and all it uses or is listed by when
/// it is being deleted or has no finalizer (then a delete event carries no
/// `deletionTimestamp`, so any event may be the last). Status-only changes of a user with a
/// finalizer (every AzlinVM the operator handles) map to nothing, so busy VMs do not cause
/// storage reconciles, each of which reads Azure.
fn affected(
    store: &Store<Guarded>,
    meta: &kube::core::ObjectMeta,
    refs: Vec<String>,
    user: String,
) -> Vec<ObjectRef<Guarded>> {
    let ns = meta.namespace.clone().unwrap_or_default();
    let may_be_gone =
        meta.deletion_timestamp.is_some() || meta.finalizers.as_ref().is_none_or(|f| f.is_empty());
    let refs: BTreeSet<String> = refs.into_iter().collect();
    let mut names = BTreeSet::new();
    for s in store.state() {
        let Ok(s) = &s.0 else { continue };
        let Some(name) = &s.metadata.name else {
            continue;
        };
        if s.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let listed = s
            .status
            .as_ref()
            .is_some_and(|st| st.mounted_by.contains(&user));
        let uses = refs.contains(name);
        if listed != uses || (may_be_gone && (listed || uses)) {
            names.insert(name.clone());
        }
    }
    names
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(&ns))
        .collect()
}

async fn reconcile(storage: Arc<SharedStorage>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = storage.namespace().ok_or_else(|| Error::InvalidSpec {
        field: "metadata.namespace".into(),
        message: "a SharedStorage must be namespaced".into(),
    })?;
    let api: Api<SharedStorage> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, storage, |event| async {
        match event {
            FinalizerEvent::Apply(s) => apply(&s, &ctx, &api).await,
            FinalizerEvent::Cleanup(s) => cleanup(&s, &ctx, &api).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// Names and identity of one SharedStorage's Azure resources.
struct Target {
    name: String,
    resource_group: String,
    location: String,
    account: String,
    owner: Owner,
}

impl Target {
    fn new(storage: &SharedStorage, arm: &ArmClient) -> Target {
        let namespace = storage.namespace().unwrap_or_default();
        let name = storage.name_any();
        let resource_group = storage.spec.resource_group.clone();
        Target {
            account: naming::storage_account_name(
                arm.subscription_id(),
                &resource_group,
                &namespace,
                &name,
            ),
            owner: Owner {
                kind: KIND.to_string(),
                namespace: namespace.clone(),
                name: name.clone(),
                uid: storage.uid().unwrap_or_default(),
            },
            location: storage.spec.location.clone(),
            resource_group,
            name,
        }
    }
}

/// Writes status only when it differs from the last status written or read.
struct StatusWriter<'a> {
    api: &'a Api<SharedStorage>,
    storage: &'a SharedStorage,
    current: Option<SharedStorageStatus>,
    users: Users,
    observed: Observed,
}

impl<'a> StatusWriter<'a> {
    fn new(api: &'a Api<SharedStorage>, storage: &'a SharedStorage, users: Users) -> Self {
        Self {
            api,
            storage,
            current: storage.status.clone(),
            users,
            // Start from what the last status said, so progress and error statuses keep the
            // endpoint VMs mount until a GET shows otherwise.
            observed: storage
                .status
                .as_ref()
                .map(|s| Observed {
                    account: s.storage_account.clone(),
                    share: s.share.clone(),
                    quota_gib: s.quota_gib,
                })
                .unwrap_or_default(),
        }
    }

    /// Writes phase and health with what was observed so far; returns whether it changed.
    async fn write(&mut self, phase: StoragePhase, health: &Health) -> Result<bool, Error> {
        let next = status::next_status(
            self.storage,
            self.current.as_ref(),
            phase,
            health,
            &self.observed,
            &self.users,
        );
        let changed = write_status(
            self.api,
            &self.storage.name_any(),
            self.current.as_ref(),
            &next,
        )
        .await?;
        self.current = Some(next);
        Ok(changed)
    }

    /// Records the share as Azure reported it (`None`: it does not exist).
    fn observe_share(&mut self, name: &str, share: Option<&FileShare>) {
        self.observed.share = share.map(|_| name.to_string());
        self.observed.quota_gib = share
            .and_then(|s| s.properties.share_quota)
            .and_then(|q| i32::try_from(q).ok());
    }

    /// Reports progress before a slow Azure write.
    async fn progress(&mut self, reason: &str, message: String) -> Result<(), Error> {
        self.write(
            StoragePhase::Provisioning,
            &Health::progressing(reason, message),
        )
        .await
        .map(|_| ())
    }

    /// Whether the last status is `Ready=True` for the object's current generation.
    fn is_ready_for_generation(&self) -> bool {
        self.current.as_ref().is_some_and(|s| {
            s.observed_generation == self.storage.metadata.generation
                && conditions::is_true(&s.conditions, conditions::READY)
        })
    }

    /// Whether the last status had `Stalled=True` with `reason`.
    fn was_stalled_with(&self, reason: &str) -> bool {
        self.current.as_ref().is_some_and(|s| {
            conditions::find(&s.conditions, conditions::STALLED)
                .is_some_and(|c| c.status == conditions::TRUE && c.reason == reason)
        })
    }
}

/// The users of `storage`: AzlinVMs and Fleets of its namespace that mount it.
async fn users_of(ctx: &Context, storage: &SharedStorage) -> Result<Users, Error> {
    let ns = storage.namespace().unwrap_or_default();
    let vms: Vec<AzlinVM> = list_valid(ctx, &ns).await?;
    let fleets: Vec<Fleet> = list_valid(ctx, &ns).await?;
    Ok(Users::of(&storage.name_any(), &vms, &fleets))
}

/// The objects of kind `K` in namespace `ns`, skipping those that do not deserialize.
async fn list_valid<K>(ctx: &Context, ns: &str) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<DeserializeGuard<K>> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|g| g.0.ok())
        .collect())
}

/// How a converge ended without an error.
enum Converged {
    /// Everything matches the spec.
    Ready { message: String },
    /// Azure is fine but the spec asks for something refused (e.g. a shrink below usage).
    Refused {
        reason: &'static str,
        message: String,
    },
}

async fn apply(
    storage: &SharedStorage,
    ctx: &Context,
    api: &Api<SharedStorage>,
) -> Result<Action, Error> {
    let users = users_of(ctx, storage).await?;
    let mut writer = StatusWriter::new(api, storage, users);
    let result = converge(storage, ctx, &mut writer).await;
    let recorder = ctx.recorder(KIND);
    let oref = storage.object_ref(&());
    let resync = Action::requeue(ctx.settings.resync_interval);
    match result {
        Ok(Converged::Ready { message }) => {
            writer
                .write(StoragePhase::Ready, &Health::ready("Provisioned", message))
                .await?;
            Ok(resync)
        }
        Ok(Converged::Refused { reason, message }) => {
            let first = !writer.was_stalled_with(reason);
            writer
                .write(
                    StoragePhase::Failed,
                    &Health::stalled(reason, message.clone()),
                )
                .await?;
            if first {
                publish_event(&recorder, &oref, EventType::Warning, reason, message).await;
            }
            Ok(resync)
        }
        Err(e) => {
            report_error(&mut writer, &recorder, &oref, &e).await;
            Err(e)
        }
    }
}

/// Puts a failed reconcile into the conditions: Stalled for terminal errors (with a Warning
/// event the first time), Reconciling for transient ones — except that a transient error
/// (throttling, a 5xx, a timeout) on a storage that is Ready for its current generation
/// leaves the status alone: nothing is known to have changed, and VMs keep relying on
/// `Ready`. A failing status write is logged: the reconcile error matters more.
async fn report_error(
    writer: &mut StatusWriter<'_>,
    recorder: &kube::runtime::events::Recorder,
    oref: &ObjectReference,
    e: &Error,
) {
    let reason = e.reason();
    if !e.is_terminal() && writer.is_ready_for_generation() {
        tracing::info!(kind = KIND, reason = %reason, error = %e, "transient error on a Ready storage; status kept");
        return;
    }
    let (phase, health) = if e.is_terminal() {
        (StoragePhase::Failed, Health::stalled(&reason, e.message()))
    } else {
        let phase = if writer.storage.metadata.deletion_timestamp.is_some() {
            StoragePhase::Deleting
        } else {
            StoragePhase::Provisioning
        };
        (phase, Health::progressing(&reason, e.message()))
    };
    let first = e.is_terminal() && !writer.was_stalled_with(&reason);
    if let Err(w) = writer.write(phase, &health).await {
        tracing::warn!(kind = KIND, error = %w, "writing the error status failed");
    }
    if first {
        publish_event(recorder, oref, EventType::Warning, &reason, e.message()).await;
    }
}

/// An ARM error of the account: a globally taken name is terminal (another subscription owns
/// it), with ARM's code kept in the message.
fn account_error(e: ArmError, account: &str) -> Error {
    if e.code() == Some("StorageAccountAlreadyTaken") {
        return Error::NotManaged {
            message: format!(
                "StorageAccountAlreadyTaken: {} The operator derives the name {account} from the subscription, resource group, namespace and name; use another resource group or object name",
                e.message()
            ),
        };
    }
    Error::Arm(e)
}

async fn converge(
    storage: &SharedStorage,
    ctx: &Context,
    writer: &mut StatusWriter<'_>,
) -> Result<Converged, Error> {
    let arm = ctx
        .arm_for(&storage.namespace().unwrap_or_default())
        .await?;
    let t = Target::new(storage, &arm);
    writer.observed.account = Some(t.account.clone());
    let recorder = ctx.recorder(KIND);
    let oref = storage.object_ref(&());
    let event = |reason: &'static str, note: String| {
        let (recorder, oref) = (&recorder, &oref);
        async move { publish_event(recorder, oref, EventType::Normal, reason, note).await }
    };

    // An existing account implies its resource group: only a missing account (or group)
    // needs the group checked.
    let accounts = arm.storage().accounts(&t.resource_group);
    let existing = accounts.get(&t.account).await?;
    if existing.is_none()
        && network::ensure_resource_group(&arm, &t.resource_group, &t.location).await?
            == Prepared::Created
    {
        event(
            "ResourceGroupCreated",
            format!(
                "created resource group {} in {}",
                t.resource_group, t.location
            ),
        )
        .await;
    }
    match network::ensure_managed_subnet(&arm, &t.resource_group, &t.location).await? {
        Prepared::Unchanged => {}
        Prepared::Created => {
            event(
                "NetworkCreated",
                format!(
                    "created virtual network {} with subnet {} and the {} service endpoint",
                    naming::managed_vnet_name(&t.location),
                    naming::MANAGED_SUBNET,
                    naming::STORAGE_SERVICE_ENDPOINT
                ),
            )
            .await
        }
        Prepared::Updated => {
            event(
                "NetworkUpdated",
                format!(
                    "added the {} service endpoint to subnet {}/{}",
                    naming::STORAGE_SERVICE_ENDPOINT,
                    naming::managed_vnet_name(&t.location),
                    naming::MANAGED_SUBNET
                ),
            )
            .await
        }
    }
    let subnet_id = network::managed_subnet_id(&arm, &t.resource_group, &t.location);
    let desired = build::desired_account(
        &t.location,
        &build::allowed_subnets(&subnet_id, &storage.spec.allowed_subnets),
        &t.owner.tags(),
    );
    match existing {
        None => {
            writer
                .progress(
                    "CreatingStorageAccount",
                    format!("creating storage account {}", t.account),
                )
                .await?;
            accounts
                .create_or_update(&t.account, &desired)
                .await
                .map_err(|e| account_error(e, &t.account))?;
            event(
                "StorageAccountCreated",
                format!(
                    "created Premium FileStorage account {} in {}",
                    t.account, t.resource_group
                ),
            )
            .await;
        }
        Some(actual) => {
            let ownership = naming::ownership(&actual.tags, &t.owner);
            if let Ownership::Foreign { reason } = &ownership {
                return Err(Error::NotManaged {
                    message: format!(
                        "storage account {} in resource group {} exists but is not managed by this SharedStorage ({reason}); the operator never touches it. Delete or tag it, or use another resource group",
                        t.account, t.resource_group
                    ),
                });
            }
            if let Some(mismatch) = build::account_immutable_mismatch(&actual) {
                return Err(Error::InvalidSpec {
                    field: "spec.tier".into(),
                    message: format!("storage account {} {mismatch}", t.account),
                });
            }
            if actual
                .properties
                .provisioning_state
                .as_ref()
                .is_some_and(|p| !p.is_terminal())
            {
                return Err(Error::DependencyNotReady {
                    what: format!("storage account {} to finish provisioning", t.account),
                });
            }
            let drift = build::account_drift(&actual, &desired);
            if ownership == Ownership::Adopt || !drift.is_empty() {
                writer
                    .progress(
                        "UpdatingStorageAccount",
                        format!("updating storage account {}", t.account),
                    )
                    .await?;
                accounts
                    .create_or_update(&t.account, &build::account_update(&actual, &desired))
                    .await
                    .map_err(|e| account_error(e, &t.account))?;
                if ownership == Ownership::Adopt {
                    event(
                        "StorageAccountAdopted",
                        format!("adopted storage account {} (owner tags updated)", t.account),
                    )
                    .await;
                } else {
                    event(
                        "StorageAccountUpdated",
                        format!(
                            "corrected storage account {}: {}",
                            t.account,
                            drift.join(", ")
                        ),
                    )
                    .await;
                }
            }
        }
    }

    let shares = arm.storage().file_shares(&t.resource_group, &t.account);
    let quota = build::spec_quota(storage.spec.size_gib);
    let actual = shares.get_query(&t.name, &[("$expand", "stats")]).await?;
    writer.observe_share(&t.name, actual.as_ref());
    let (share, refused) = match build::plan_share(actual.as_ref(), quota, storage.spec.root_squash)
    {
        SharePlan::InSync => (actual, None),
        SharePlan::Create(body) => {
            writer
                .progress(
                    "CreatingShare",
                    format!("creating NFS share {} ({quota} GiB)", t.name),
                )
                .await?;
            let created = shares.create_or_update(&t.name, &body).await?;
            event(
                "ShareCreated",
                format!(
                    "created NFS share {} on account {} ({quota} GiB, {})",
                    t.name,
                    t.account,
                    storage.spec.root_squash.as_str()
                ),
            )
            .await;
            (Some(created), None)
        }
        SharePlan::Update(update) => {
            writer
                .progress(
                    "UpdatingShare",
                    format!("updating NFS share {}: {}", t.name, update.describe()),
                )
                .await?;
            let updated = shares.update(&t.name, &update.patch_body()).await?;
            event(
                "ShareUpdated",
                format!("updated NFS share {}: {}", t.name, update.describe()),
            )
            .await;
            (Some(updated), None)
        }
        SharePlan::NotNfs { protocol } => {
            return Err(Error::InvalidSpec {
                field: "metadata.name".into(),
                message: format!(
                    "file share {} on storage account {} is a {protocol} share and Azure cannot change a share's protocol to NFS; delete that share or use another name",
                    t.name, t.account
                ),
            });
        }
        SharePlan::ShrinkBelowUsage {
            current_gib,
            requested_gib,
            used_bytes,
            other,
        } => {
            let message = format!(
                "spec.sizeGiB {requested_gib} is below the {} already stored on share {}: the quota stays at {current_gib} GiB. Free space on the share or set spec.sizeGiB to at least {}",
                build::format_bytes(used_bytes),
                t.name,
                used_bytes.div_ceil(build::GIB)
            );
            let share = match other {
                Some(update) => {
                    let updated = shares.update(&t.name, &update.patch_body()).await?;
                    event(
                        "ShareUpdated",
                        format!("updated NFS share {}: {}", t.name, update.describe()),
                    )
                    .await;
                    Some(updated)
                }
                None => actual,
            };
            (share, Some(message))
        }
    };
    writer.observe_share(&t.name, share.as_ref());
    if let Some(message) = refused {
        return Ok(Converged::Refused {
            reason: "ShrinkBelowUsage",
            message,
        });
    }
    let endpoint = writer.observed.nfs_endpoint().unwrap_or_default();
    Ok(Converged::Ready {
        message: status::ready_message(&endpoint, quota, &build::mount_layout(storage)),
    })
}

async fn cleanup(
    storage: &SharedStorage,
    ctx: &Context,
    api: &Api<SharedStorage>,
) -> Result<Action, Error> {
    let users = users_of(ctx, storage).await?;
    let mut writer = StatusWriter::new(api, storage, users.clone());
    let recorder = ctx.recorder(KIND);
    let oref = storage.object_ref(&());
    let result = match storage.spec.deletion_policy {
        DeletionPolicy::Retain => release(storage, ctx).await,
        DeletionPolicy::Delete if !users.is_empty() => {
            let list = users.mounted_by().join(", ");
            let message = format!(
                "deletion is refused while the share is mounted by: {list}. Remove those mounts (or delete those objects), or set deletionPolicy: Retain to keep the share"
            );
            let first = !writer.was_stalled_with("DeletionBlocked");
            writer
                .write(
                    StoragePhase::Deleting,
                    &Health::stalled("DeletionBlocked", message.clone()),
                )
                .await?;
            if first {
                publish_event(
                    &recorder,
                    &oref,
                    EventType::Warning,
                    "DeletionBlocked",
                    message,
                )
                .await;
            }
            return Err(Error::DependencyNotReady {
                what: format!("{list} to stop mounting the share"),
            });
        }
        DeletionPolicy::Delete => {
            writer
                .write(
                    StoragePhase::Deleting,
                    &Health::progressing(
                        "Deleting",
                        "deleting the NFS share and its storage account",
                    ),
                )
                .await?;
            delete_azure(storage, ctx).await
        }
    };
    match result {
        Ok(note) => {
            let reason = match storage.spec.deletion_policy {
                DeletionPolicy::Retain => "Released",
                DeletionPolicy::Delete => "Deleted",
            };
            publish_event(&recorder, &oref, EventType::Normal, reason, note).await;
            Ok(Action::await_change())
        }
        Err(e) => {
            report_error(&mut writer, &recorder, &oref, &e).await;
            Err(e)
        }
    }
}

/// The storage account a finalizer cleanup works on.
enum CleanupAccount {
    /// It does not exist.
    Missing,
    /// It exists but is not ours, for this reason.
    Foreign(String),
    /// It exists and is ours.
    Ours(Box<StorageAccount>),
}

/// The ARM client of the storage's namespace, its Azure names, and its storage account.
async fn cleanup_account(
    storage: &SharedStorage,
    ctx: &Context,
) -> Result<(ArmClient, Target, CleanupAccount), Error> {
    let arm = ctx
        .arm_for(&storage.namespace().unwrap_or_default())
        .await?;
    let t = Target::new(storage, &arm);
    let found = match arm
        .storage()
        .accounts(&t.resource_group)
        .get(&t.account)
        .await?
    {
        None => CleanupAccount::Missing,
        Some(actual) => match naming::ownership(&actual.tags, &t.owner) {
            Ownership::Foreign { reason } => CleanupAccount::Foreign(reason),
            _ => CleanupAccount::Ours(Box::new(actual)),
        },
    };
    Ok((arm, t, found))
}

/// `deletionPolicy: Retain`: tags the account released (if it exists and is ours).
async fn release(storage: &SharedStorage, ctx: &Context) -> Result<String, Error> {
    let (arm, t, found) = cleanup_account(storage, ctx).await?;
    let actual = match found {
        CleanupAccount::Missing => {
            return Ok(format!(
                "storage account {} does not exist; nothing to retain",
                t.account
            ));
        }
        CleanupAccount::Foreign(reason) => {
            return Ok(format!(
                "storage account {} is not managed by this SharedStorage ({reason}); left untouched",
                t.account
            ));
        }
        CleanupAccount::Ours(actual) => actual,
    };
    let tags = naming::released(&actual.tags);
    if tags != actual.tags {
        arm.storage()
            .accounts(&t.resource_group)
            .update(&t.account, &json!({ "tags": tags }))
            .await?;
    }
    Ok(format!(
        "retained storage account {} and share {} (tagged {}=true)",
        t.account,
        t.name,
        naming::TAG_RELEASED
    ))
}

/// `deletionPolicy: Delete` with no users left: deletes the share, then the account, and
/// waits. A missing account (or resource group) counts as deleted; an account that is not
/// ours is left alone.
async fn delete_azure(storage: &SharedStorage, ctx: &Context) -> Result<String, Error> {
    let (arm, t, found) = cleanup_account(storage, ctx).await?;
    match found {
        CleanupAccount::Missing => {
            return Ok(format!("storage account {} is already gone", t.account));
        }
        CleanupAccount::Foreign(reason) => {
            return Ok(format!(
                "storage account {} is not managed by this SharedStorage ({reason}); not deleted",
                t.account
            ));
        }
        CleanupAccount::Ours(_) => {}
    }
    arm.storage()
        .file_shares(&t.resource_group, &t.account)
        .delete(&t.name)
        .await?;
    arm.storage()
        .accounts(&t.resource_group)
        .delete(&t.account)
        .await?;
    Ok(format!(
        "deleted NFS share {} and storage account {}",
        t.name, t.account
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn guarded_storage(name: &str, mounted_by: &[&str]) -> Guarded {
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "SharedStorage",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"resourceGroup": "rg", "location": "westus2"},
            "status": {"mountedBy": mounted_by}
        }))
        .expect("storage")))
    }

    fn store(items: Vec<Guarded>) -> Store<Guarded> {
        let mut w: Writer<Guarded> = Writer::default();
        let r = w.as_reader();
        w.apply_watcher_event(&Event::Init);
        for i in items {
            w.apply_watcher_event(&Event::InitApply(i));
        }
        w.apply_watcher_event(&Event::InitDone);
        r
    }

    fn names(refs: Vec<ObjectRef<Guarded>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    fn vm(name: &str, mounts: &[&str], deleting: bool) -> DeserializeGuard<AzlinVM> {
        let mounts: Vec<_> = mounts.iter().map(|m| json!({"storageRef": m})).collect();
        let mut v = json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "AzlinVM",
            "metadata": {"name": name, "namespace": "ns", "finalizers": ["azlin.io/azlinvm-cleanup"]},
            "spec": {"resourceGroup": "rg", "location": "westus2", "mounts": mounts}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        DeserializeGuard(Ok(serde_json::from_value(v).expect("vm")))
    }

    #[test]
    fn vm_events_map_to_storages_whose_mounted_by_is_stale() {
        let s = store(vec![
            guarded_storage("old", &["vm1"]),
            guarded_storage("new", &[]),
            guarded_storage("kept", &["vm1"]),
            guarded_storage("other", &["vm2"]),
        ]);
        assert_eq!(
            names(storages_of_vm(&s, &vm("vm1", &["new", "kept"], false))),
            vec!["new", "old"],
            "newly mounted and no longer mounted; not the unchanged one"
        );
        assert!(
            storages_of_vm(&s, &vm("vm2", &["other"], false)).is_empty(),
            "a status-only change of a VM triggers nothing"
        );
        assert_eq!(
            names(storages_of_vm(&s, &vm("vm1", &["kept"], true))),
            vec!["kept", "old"],
            "a VM being deleted triggers every storage it used"
        );
        let mut bare = vm("vm2", &["other"], false);
        if let Ok(v) = bare.0.as_mut() {
            v.metadata.finalizers = None;
        }
        assert_eq!(
            names(storages_of_vm(&s, &bare)),
            vec!["other"],
            "without a finalizer any event may be the deletion"
        );
    }

    #[test]
    fn fleet_events_map_to_shared_home_and_listed_storages() {
        let s = store(vec![
            guarded_storage("home", &["fleet/f"]),
            guarded_storage("next", &[]),
        ]);
        let fleet: DeserializeGuard<Fleet> = DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "azlin.io/v1alpha1", "kind": "Fleet",
            "metadata": {"name": "f", "namespace": "ns"},
            "spec": {"replicas": 1, "sharedHome": "next", "template": {"spec": {"resourceGroup": "rg", "location": "westus2"}}}
        }))
        .expect("fleet")));
        assert_eq!(names(storages_of_fleet(&s, &fleet)), vec!["home", "next"]);
    }

    #[test]
    fn taken_account_name_is_terminal_with_the_arm_code() {
        let e = account_error(
            ArmError::Conflict {
                code: "StorageAccountAlreadyTaken".into(),
                message: "The storage account named x is already taken.".into(),
            },
            "x",
        );
        assert!(e.is_terminal());
        assert!(e.message().contains("StorageAccountAlreadyTaken"));
        let other = account_error(
            ArmError::Conflict {
                code: "AnotherOperationInProgress".into(),
                message: "busy".into(),
            },
            "x",
        );
        assert!(!other.is_terminal());
    }
}
