//! The AzlinVM controller: one AzlinVM ↔ one Azure VM with its NIC, optional public IP, OS
//! and data disks, in a resource group created when missing, on the operator-managed network
//! or an existing subnet.
//!
//! Level-based: every reconcile GETs Azure, diffs against the spec and writes only what
//! differs, so a resync at rest makes no ARM and no Kubernetes writes. Long operations (VM
//! create/update, power actions) are started and the object is requeued; the next reconcile
//! re-derives progress from `provisioningState` and the power state, so a restart at any
//! point adopts what exists (deterministic names, ownership tags) instead of duplicating it.
//! Deletion (finalizer) waits for ARM's delete operations; resources already gone, or a
//! resource group already gone, count as deleted.

pub mod build;
pub mod cloudinit;
pub mod mounts;
pub mod sshkey;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::build::{PowerStep, VmChange, VmNames};
use crate::api::azlinvm::{AzlinVMStatus, VmPhase};
use crate::api::conditions::{self, Health};
use crate::api::{AzlinVM, DeletionPolicy, Fleet, PowerState, SharedStorage};
use crate::controllers::context::{Context, TENANT_CREDENTIALS_SECRET};
use crate::controllers::drive;
use crate::controllers::error::Error;
use crate::controllers::guest::GuestVm;
use crate::controllers::naming::{self, Owner, Ownership};
use crate::controllers::status::{publish_event, set_conditions, write_status};
use crate::runtime::readiness::ReadyGate;
use crate::ssh::HostKeyPolicy;
use azlin_arm::compute::{PowerAction, PowerState as ObservedPower, VirtualMachineStatus};
use azlin_arm::{ArmClient, ArmError, OperationState, ResourceId};

/// Kind name (metrics label, recorder).
pub const KIND: &str = "AzlinVM";
/// Finalizer guarding the Azure resources.
pub const FINALIZER: &str = "azlin.io/azlinvm-cleanup";

fn api_of<K>(ctx: &Context) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

fn refs_where(
    store: &Store<DeserializeGuard<AzlinVM>>,
    namespace: Option<String>,
    matches: impl Fn(&AzlinVM) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<AzlinVM>>> {
    store
        .state()
        .into_iter()
        .filter_map(|g| {
            let vm = g.0.as_ref().ok()?;
            (vm.namespace() == namespace && matches(vm)).then(|| {
                ObjectRef::new(&vm.name_any()).within(&namespace.clone().unwrap_or_default())
            })
        })
        .collect()
}

/// The AzlinVM controller: watches AzlinVMs, the Secrets holding their keys, the namespaces'
/// tenant credential Secrets, the SharedStorage objects they mount and the Fleets controlling
/// them (a Fleet's `sharedHome` is mounted on its members).
pub fn controller(ctx: &Context) -> Controller<DeserializeGuard<AzlinVM>> {
    let c = Controller::new(
        api_of::<DeserializeGuard<AzlinVM>>(ctx),
        watcher::Config::default(),
    );
    let store = c.store();
    let secrets_store = store.clone();
    let fleets_store = store.clone();
    c.watches(
        api_of::<Secret>(ctx),
        watcher::Config::default(),
        move |secret: Secret| {
            let name = secret.name_any();
            let tenant = name == TENANT_CREDENTIALS_SECRET;
            refs_where(&secrets_store, secret.namespace(), |vm| {
                tenant
                    || match &vm.spec.ssh_key_secret_ref {
                        Some(r) => r.name == name,
                        None => sshkey::generated_secret_name(&vm.name_any()) == name,
                    }
            })
        },
    )
    .watches(
        api_of::<DeserializeGuard<SharedStorage>>(ctx),
        watcher::Config::default(),
        move |storage: DeserializeGuard<SharedStorage>| {
            let name = storage.meta().name.clone().unwrap_or_default();
            refs_where(&store, storage.meta().namespace.clone(), |vm| {
                vm.spec.mounts.iter().any(|m| m.storage_ref == name)
                    || vm
                        .status
                        .iter()
                        .flat_map(|s| &s.mounts)
                        .any(|m| m.storage_ref == name)
            })
        },
    )
    .watches(
        api_of::<DeserializeGuard<Fleet>>(ctx),
        watcher::Config::default(),
        move |fleet: DeserializeGuard<Fleet>| {
            let name = fleet.meta().name.clone().unwrap_or_default();
            refs_where(&fleets_store, fleet.meta().namespace.clone(), |vm| {
                mounts::fleet_owner(vm).is_some_and(|o| o.name == name)
            })
        },
    )
}

/// Runs the controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken, gate: ReadyGate) {
    let c = controller(&ctx);
    drive(KIND, c, reconcile, ctx, shutdown, gate).await;
}

/// Reconciles one AzlinVM (apply, or cleanup behind the finalizer).
pub async fn reconcile(vm: Arc<AzlinVM>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = vm
        .namespace()
        .ok_or_else(|| Error::Config("AzlinVM without namespace".into()))?;
    let api: Api<AzlinVM> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, vm, |event| async {
        match event {
            FinalizerEvent::Apply(vm) => apply(vm, &ctx, &api).await,
            FinalizerEvent::Cleanup(vm) => cleanup(vm, &ctx, &api).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// Result of one converge pass.
struct Outcome {
    health: Health,
    phase: VmPhase,
    requeue: Duration,
}

/// State of one reconcile of one AzlinVM.
struct Run<'a> {
    vm: &'a AzlinVM,
    ctx: &'a Context,
    arm: ArmClient,
    ns: String,
    names: VmNames,
    owner: Owner,
    tags: BTreeMap<String, String>,
    old: AzlinVMStatus,
    status: AzlinVMStatus,
    events: Vec<(EventType, String, String)>,
}

impl<'a> Run<'a> {
    /// A run using the default ARM client until [`Run::resolve_arm`] picks the namespace's.
    fn new(vm: &'a AzlinVM, ctx: &'a Context) -> Run<'a> {
        let ns = vm.namespace().unwrap_or_default();
        let owner = Owner {
            kind: KIND.to_string(),
            namespace: ns.clone(),
            name: vm.name_any(),
            uid: vm.uid().unwrap_or_default(),
        };
        let old = vm.status.clone().unwrap_or_default();
        Run {
            vm,
            ctx,
            arm: ctx.default_arm().clone(),
            names: VmNames::new(&ns, &vm.name_any()),
            tags: owner.tags_with(&vm.spec.tags),
            owner,
            ns,
            status: old.clone(),
            old,
            events: Vec::new(),
        }
    }

    /// Switches to the namespace's tenant ARM client when it has one.
    async fn resolve_arm(&mut self) -> Result<(), Error> {
        self.arm = self.ctx.arm_for(&self.ns).await?;
        Ok(())
    }

    fn event(&mut self, type_: EventType, reason: &str, note: impl Into<String>) {
        self.events.push((type_, reason.to_string(), note.into()));
    }

    fn progress(&self, phase: VmPhase, reason: &str, message: impl Into<String>) -> Outcome {
        Outcome {
            health: Health::progressing(reason, message),
            phase,
            requeue: self.ctx.settings.progress_requeue,
        }
    }

    fn not_managed(&self, what: &str, name: &str, reason: &str) -> Error {
        Error::NotManaged {
            message: format!(
                "{what} {name} in resource group {} exists but is not managed by this AzlinVM ({reason}); the operator never touches it: delete or rename it in Azure, or rename the AzlinVM",
                self.vm.spec.resource_group
            ),
        }
    }

    async fn converge(&mut self) -> Result<Outcome, Error> {
        self.resolve_arm().await?;
        let key = sshkey::ensure_key(&self.ctx.client, self.vm).await?;
        self.status.ssh_key_secret = Some(key.secret_name.clone());
        self.ensure_resource_group().await?;
        let subnet_id = self.ensure_network().await?;
        let pip = if self.vm.spec.public_ip {
            Some(self.ensure_public_ip().await?)
        } else {
            None
        };
        let nic = self
            .ensure_nic(&subnet_id, pip.as_ref().and_then(|p| p.id.as_deref()))
            .await?;
        if !self.vm.spec.public_ip {
            self.remove_public_ip().await?;
        }
        self.status.private_ip = nic.private_ip().map(str::to_string);
        self.status.public_ip = pip.and_then(|p| p.properties.ip_address);
        let nic_id = nic
            .id
            .clone()
            .unwrap_or_else(|| self.nic_ops_id().to_string());

        let rg = self.vm.spec.resource_group.clone();
        let observed = self
            .arm
            .compute()
            .virtual_machines(&rg)
            .get_with_instance_view(&self.names.vm)
            .await?;
        match observed {
            None => self.create_vm(&nic_id, &key.public_line).await,
            Some(observed) => self.converge_vm(observed, &key).await,
        }
    }

    fn nic_ops_id(&self) -> ResourceId {
        self.arm
            .network()
            .interfaces(&self.vm.spec.resource_group)
            .id(&self.names.nic)
    }

    async fn ensure_resource_group(&mut self) -> Result<(), Error> {
        let rgs = self.arm.resources();
        let rg = &self.vm.spec.resource_group;
        if rgs.get(rg).await?.is_none() {
            let tags = BTreeMap::from([(
                naming::TAG_MANAGED_BY.to_string(),
                naming::MANAGED_BY.to_string(),
            )]);
            rgs.create_or_update(rg, &self.vm.spec.location, &tags)
                .await?;
            self.event(
                EventType::Normal,
                "ResourceGroupCreated",
                format!("created resource group {rg} in {}", self.vm.spec.location),
            );
        }
        Ok(())
    }

    async fn ensure_network(&mut self) -> Result<String, Error> {
        if let Some(n) = &self.vm.spec.network {
            let id = ResourceId::parse(&n.subnet_id).map_err(|e| Error::InvalidSpec {
                field: "spec.network.subnetId".into(),
                message: e.to_string(),
            })?;
            if self
                .arm
                .get_by_id::<serde_json::Value>(&id)
                .await?
                .is_none()
            {
                return Err(Error::InvalidSpec {
                    field: "spec.network.subnetId".into(),
                    message: format!("subnet {} does not exist", n.subnet_id),
                });
            }
            return Ok(n.subnet_id.clone());
        }
        let rg = self.vm.spec.resource_group.clone();
        let location = self.vm.spec.location.clone();
        let arm = self.arm.clone();
        let net = arm.network();
        let nsg_name = naming::managed_nsg_name(&location);
        let nsgs = net.security_groups(&rg);
        let nsg = match nsgs.get(&nsg_name).await? {
            Some(n) if !naming::is_managed(&n.tags) => {
                return Err(self.not_managed(
                    "Network security group",
                    &nsg_name,
                    "it has no managed-by=azlin-operator tag",
                ));
            }
            Some(n) => n,
            None => {
                let n = nsgs
                    .create_or_update(&nsg_name, &build::managed_nsg(&location))
                    .await?;
                self.event(
                    EventType::Normal,
                    "NetworkCreated",
                    format!("created network security group {nsg_name}"),
                );
                n
            }
        };
        let nsg_id = nsg.id.unwrap_or_else(|| nsgs.id(&nsg_name).to_string());
        let vnet_name = naming::managed_vnet_name(&location);
        let vnets = net.virtual_networks(&rg);
        match vnets.get(&vnet_name).await? {
            Some(v) if !naming::is_managed(&v.tags) => {
                return Err(self.not_managed(
                    "Virtual network",
                    &vnet_name,
                    "it has no managed-by=azlin-operator tag",
                ));
            }
            Some(_) => {}
            None => {
                vnets
                    .create_or_update(&vnet_name, &build::managed_vnet(&location, &nsg_id))
                    .await?;
                self.event(
                    EventType::Normal,
                    "NetworkCreated",
                    format!(
                        "created virtual network {vnet_name} with subnet {}",
                        naming::MANAGED_SUBNET
                    ),
                );
            }
        }
        let subnets = net.subnets(&rg, &vnet_name);
        let ok = subnets
            .get(naming::MANAGED_SUBNET)
            .await?
            .is_some_and(|s| build::subnet_ok(&s, &nsg_id));
        if !ok {
            subnets
                .create_or_update(naming::MANAGED_SUBNET, &build::managed_subnet(&nsg_id))
                .await?;
        }
        Ok(subnets.id(naming::MANAGED_SUBNET).to_string())
    }

    async fn ensure_public_ip(&mut self) -> Result<azlin_arm::network::PublicIpAddress, Error> {
        let pips = self.arm.network().public_ips(&self.vm.spec.resource_group);
        let zone = self.vm.spec.zone.map(|z| z.as_str());
        match pips.get(&self.names.pip).await? {
            None => Ok(pips
                .create_or_update(
                    &self.names.pip,
                    &build::desired_pip(&self.vm.spec.location, zone, &self.tags),
                )
                .await?),
            Some(p) => match naming::ownership(&p.tags, &self.owner) {
                Ownership::Foreign { reason } => {
                    Err(self.not_managed("Public IP", &self.names.pip, &reason))
                }
                _ if p.tags != self.tags => {
                    let mut body = p.clone();
                    body.tags = self.tags.clone();
                    body.properties.provisioning_state = None;
                    Ok(pips.create_or_update(&self.names.pip, &body).await?)
                }
                _ => Ok(p),
            },
        }
    }

    async fn remove_public_ip(&mut self) -> Result<(), Error> {
        let pips = self.arm.network().public_ips(&self.vm.spec.resource_group);
        if let Some(p) = pips.get(&self.names.pip).await?
            && !matches!(
                naming::ownership(&p.tags, &self.owner),
                Ownership::Foreign { .. }
            )
        {
            pips.delete(&self.names.pip).await?;
            self.event(
                EventType::Normal,
                "PublicIPRemoved",
                format!("deleted public IP {}", self.names.pip),
            );
        }
        Ok(())
    }

    async fn ensure_nic(
        &mut self,
        subnet_id: &str,
        pip_id: Option<&str>,
    ) -> Result<azlin_arm::network::NetworkInterface, Error> {
        let nics = self.arm.network().interfaces(&self.vm.spec.resource_group);
        match nics.get(&self.names.nic).await? {
            None => Ok(nics
                .create_or_update(
                    &self.names.nic,
                    &build::desired_nic(&self.vm.spec.location, subnet_id, pip_id, &self.tags),
                )
                .await?),
            Some(n) => {
                if let Ownership::Foreign { reason } = naming::ownership(&n.tags, &self.owner) {
                    return Err(self.not_managed("Network interface", &self.names.nic, &reason));
                }
                match build::nic_update(&n, pip_id, &self.tags) {
                    Some(body) => Ok(nics.create_or_update(&self.names.nic, &body).await?),
                    None => Ok(n),
                }
            }
        }
    }

    async fn create_vm(&mut self, nic_id: &str, public_key: &str) -> Result<Outcome, Error> {
        if self.old.vm_id.is_some() {
            // It existed before: deleted outside the operator, or a Spot eviction with
            // evictionPolicy Delete.
            let spot = self.vm.spec.spot.is_some();
            let (reason, note) = if spot {
                (
                    "SpotEvicted",
                    format!(
                        "Spot VM {} was evicted (deleted); recreating it",
                        self.names.vm
                    ),
                )
            } else {
                (
                    "Repaired",
                    format!(
                        "VM {} was deleted outside the operator; recreating it",
                        self.names.vm
                    ),
                )
            };
            self.event(EventType::Warning, reason, note);
            self.status.vm_id = None;
            self.status.host_key_fingerprint = None;
            self.status.power_state = None;
        }
        let spec = &self.vm.spec;
        // A new VM boots fresh: a restart requested before it existed is already satisfied.
        self.status.last_restart_requested_at = spec.restart_requested_at.clone();
        let user_data =
            cloudinit::user_data(&spec.admin_username, public_key, spec.cloud_init.as_deref());
        let body = build::desired_vm(
            spec,
            &self.names,
            &self.tags,
            nic_id,
            public_key,
            &user_data,
        );
        self.arm
            .compute()
            .virtual_machines(&spec.resource_group)
            .begin_create_or_update(&self.names.vm, &body)
            .await?;
        self.event(
            EventType::Normal,
            "Creating",
            format!(
                "creating VM {} ({}) in {}/{}",
                self.names.vm, spec.size, spec.location, spec.resource_group
            ),
        );
        Ok(self.progress(
            VmPhase::Provisioning,
            "Creating",
            format!("creating VM {}", self.names.vm),
        ))
    }

    async fn converge_vm(
        &mut self,
        observed: VirtualMachineStatus,
        key: &sshkey::VmKey,
    ) -> Result<Outcome, Error> {
        let vm: &'a AzlinVM = self.vm;
        let spec = &vm.spec;
        let arm = self.arm.clone();
        let vms = arm.compute().virtual_machines(&spec.resource_group);
        let ownership = naming::ownership(&observed.vm.tags, &self.owner);
        if let Ownership::Foreign { reason } = &ownership {
            return Err(self.not_managed("VM", &self.names.vm, reason));
        }
        let vm_id = observed.vm.properties.vm_id.clone();
        if self.old.vm_id.is_some() && vm_id != self.old.vm_id {
            // A new VM behind the same name: its host key and mounts are new too.
            self.status.host_key_fingerprint = None;
            self.status.mounts.clear();
        }
        self.status.vm_id = vm_id;
        self.status.resource_id = observed.vm.id.clone();
        self.status.size = build::vm_size(&observed.vm).map(str::to_string);
        let power = observed.power_state.unwrap_or(ObservedPower::Unknown);
        self.status.power_state = Some(build::power_word(power).to_string());

        let provisioning = observed
            .provisioning_state
            .clone()
            .unwrap_or(OperationState::Succeeded);
        match provisioning {
            OperationState::Succeeded => {}
            OperationState::Failed | OperationState::Canceled => {
                let message = observed
                    .vm
                    .properties
                    .instance_view
                    .as_ref()
                    .and_then(|v| {
                        v.statuses
                            .iter()
                            .find(|s| s.level.as_deref() == Some("Error"))
                            .and_then(|s| s.message.clone())
                    })
                    .unwrap_or_else(|| format!("VM {} provisioning failed", self.names.vm));
                return Ok(Outcome {
                    health: Health::stalled("ProvisioningFailed", message),
                    phase: VmPhase::Failed,
                    requeue: self.ctx.settings.resync_interval,
                });
            }
            _ => {
                let phase =
                    if self.old.phase == Some(VmPhase::Provisioning) || self.old.vm_id.is_none() {
                        VmPhase::Provisioning
                    } else {
                        VmPhase::Updating
                    };
                return Ok(self.progress(
                    phase,
                    "Provisioning",
                    format!("Azure is provisioning VM {}", self.names.vm),
                ));
            }
        }
        if matches!(
            self.old.phase,
            None | Some(VmPhase::Pending) | Some(VmPhase::Provisioning)
        ) {
            self.event(
                EventType::Normal,
                "Created",
                format!("VM {} created", self.names.vm),
            );
        }
        if ownership == Ownership::Adopt {
            self.event(
                EventType::Normal,
                "Adopted",
                format!("adopted existing VM {}", self.names.vm),
            );
        }
        if power.is_transitioning() {
            return Ok(self.progress(
                VmPhase::Updating,
                "PowerTransition",
                format!("VM {} is {}", self.names.vm, build::power_word(power)),
            ));
        }

        // Size, tags, data disks, Spot price.
        if let Some((body, changes)) = build::vm_update(&observed.vm, spec, &self.names, &self.tags)
        {
            match vms.begin_create_or_update(&self.names.vm, &body).await {
                Ok(_) => {
                    for change in &changes {
                        let (reason, note) = match change {
                            VmChange::Resize { from, to } => {
                                ("Resized", format!("resizing from {from} to {to}"))
                            }
                            VmChange::Tags => ("TagsUpdated", "updating tags".to_string()),
                            VmChange::DataDisks => (
                                "DataDisksUpdated",
                                "attaching/detaching data disks".to_string(),
                            ),
                            VmChange::SpotPrice => (
                                "SpotPriceUpdated",
                                "updating the Spot max price".to_string(),
                            ),
                        };
                        self.event(EventType::Normal, reason, note);
                    }
                    return Ok(self.progress(
                        VmPhase::Updating,
                        "Updating",
                        format!("updating VM {}", self.names.vm),
                    ));
                }
                Err(e)
                    if build::resize_needs_deallocation(e.code(), &e.message())
                        && power != ObservedPower::Deallocated =>
                {
                    vms.begin_power(&self.names.vm, PowerAction::Deallocate)
                        .await?;
                    self.event(
                        EventType::Normal,
                        "Deallocating",
                        format!(
                            "deallocating VM {} to resize it to {} (Azure requires it for this size)",
                            self.names.vm, spec.size
                        ),
                    );
                    return Ok(self.progress(
                        VmPhase::Updating,
                        "Resizing",
                        format!("deallocating to resize to {}", spec.size),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }

        // Grow disks (Azure needs the VM deallocated for that).
        let growth = self.disk_growth().await?;
        if !growth.is_empty() {
            let disks = arm.compute().disks(&spec.resource_group);
            let list = growth
                .iter()
                .map(|(n, s)| format!("{n} to {s} GiB"))
                .collect::<Vec<_>>()
                .join(", ");
            if power != ObservedPower::Deallocated {
                vms.begin_power(&self.names.vm, PowerAction::Deallocate)
                    .await?;
                self.event(
                    EventType::Normal,
                    "Deallocating",
                    format!("deallocating VM {} to grow {list}", self.names.vm),
                );
            } else {
                for (name, size) in &growth {
                    disks
                        .update(name, &json!({ "properties": { "diskSizeGB": size } }))
                        .await?;
                }
                self.event(EventType::Normal, "DisksResized", format!("grew {list}"));
            }
            return Ok(self.progress(
                VmPhase::Updating,
                "ResizingDisks",
                format!("growing {list}"),
            ));
        }

        // Restart once per new restartRequestedAt.
        if spec.restart_requested_at.is_some()
            && self.old.last_restart_requested_at != spec.restart_requested_at
        {
            self.status.last_restart_requested_at = spec.restart_requested_at.clone();
            if power == ObservedPower::Running && spec.power_state == PowerState::Running {
                vms.begin_power(&self.names.vm, PowerAction::Restart)
                    .await?;
                self.event(
                    EventType::Normal,
                    "Restarted",
                    format!("restarting VM {} as requested", self.names.vm),
                );
                return Ok(self.progress(
                    VmPhase::Updating,
                    "Restarting",
                    format!("restarting VM {}", self.names.vm),
                ));
            }
        }

        // Power state.
        let desired = spec.power_state;
        let step = build::power_step(desired, power);
        let action = match step {
            PowerStep::Converged => None,
            PowerStep::Wait => {
                return Ok(self.progress(
                    VmPhase::Updating,
                    "PowerTransition",
                    format!("VM {} is {}", self.names.vm, build::power_word(power)),
                ));
            }
            PowerStep::Start => Some((PowerAction::Start, "Starting")),
            PowerStep::PowerOff => Some((PowerAction::PowerOff, "Stopping")),
            PowerStep::Deallocate => Some((PowerAction::Deallocate, "Deallocating")),
        };
        if let Some((action, reason)) = action {
            let settled_word = match desired {
                PowerState::Running => "running",
                PowerState::Stopped => "stopped",
                PowerState::Deallocated => "deallocated",
            };
            let was_settled = self.old.power_state.as_deref() == Some(settled_word)
                && self.old.observed_generation == self.vm.metadata.generation;
            let mut reason = reason;
            if was_settled {
                if spec.spot.is_some()
                    && power == ObservedPower::Deallocated
                    && desired == PowerState::Running
                {
                    reason = "SpotEvicted";
                    self.event(
                        EventType::Warning,
                        "SpotEvicted",
                        format!("Spot VM {} was evicted; starting it again", self.names.vm),
                    );
                } else {
                    self.event(
                        EventType::Warning,
                        "Repaired",
                        format!(
                            "VM {} was {} outside the operator; driving it back to {desired}",
                            self.names.vm,
                            build::power_word(power)
                        ),
                    );
                }
            }
            vms.begin_power(&self.names.vm, action).await?;
            return Ok(self.progress(
                VmPhase::Updating,
                reason,
                format!(
                    "VM {} is {}; wanted {desired}",
                    self.names.vm,
                    build::power_word(power)
                ),
            ));
        }
        if self.old.vm_id.is_some()
            && self.old.power_state.is_some()
            && self.old.power_state != self.status.power_state
        {
            self.event(
                EventType::Normal,
                status::transition_event(desired),
                format!("VM {} is {}", self.names.vm, build::power_word(power)),
            );
        }

        // Mounts (only on a running VM).
        let mut health = Health::ready(
            desired.as_str(),
            format!(
                "VM {} is {} ({})",
                self.names.vm,
                build::power_word(power),
                self.status.size.as_deref().unwrap_or("?")
            ),
        );
        let mut requeue = self.ctx.settings.resync_interval;
        if let Some((h, r)) = self.converge_mounts(power, key).await? {
            health = h;
            requeue = r;
        }
        Ok(Outcome {
            health,
            phase: status::settled_phase(desired),
            requeue,
        })
    }

    /// Disks smaller than the spec, read from Azure.
    async fn disk_growth(&self) -> Result<Vec<(String, u32)>, Error> {
        let spec = &self.vm.spec;
        if spec.os_disk.size_gib.is_none() && spec.data_disks.is_empty() {
            return Ok(Vec::new());
        }
        let disks = self.arm.compute().disks(&spec.resource_group);
        let mut current = BTreeMap::new();
        let mut names = vec![self.names.os_disk.clone()];
        names.extend(spec.data_disks.iter().map(|d| self.names.data_disk(d.lun)));
        for name in names {
            if let Some(d) = disks.get(&name).await?
                && let Some(size) = d.properties.disk_size_gb
            {
                current.insert(name, size);
            }
        }
        Ok(build::disk_growth(spec, &self.names, &current))
    }

    /// Converges the mounts; returns a non-ready health when they are not all mounted.
    async fn converge_mounts(
        &mut self,
        power: ObservedPower,
        key: &sshkey::VmKey,
    ) -> Result<Option<(Health, Duration)>, Error> {
        let desired = mounts::resolve(&self.ctx.client, &self.ns, self.vm).await?;
        if desired.is_empty() && self.old.mounts.is_empty() {
            return Ok(None);
        }
        let mut outcome = None;
        let host = self
            .status
            .private_ip
            .clone()
            .or_else(|| self.status.public_ip.clone());
        if power == ObservedPower::Running
            && mounts::needs_run(&desired, &self.old.mounts)
            && let Some(host) = host
        {
            let guest_vm = GuestVm {
                id: self
                    .status
                    .vm_id
                    .clone()
                    .unwrap_or_else(|| self.owner.display()),
                host,
                user: self.vm.spec.admin_username.clone(),
                key: Arc::clone(&key.private),
                host_key: HostKeyPolicy::from_stored(self.status.host_key_fingerprint.as_deref()),
            };
            let plan = mounts::plan(&desired);
            let result = self.ctx.guest.apply_mounts(&guest_vm, &plan).await?;
            if self.status.host_key_fingerprint.is_none() {
                self.event(
                    EventType::Normal,
                    "HostKeyPinned",
                    format!("pinned SSH host key {}", result.host_key_fingerprint),
                );
            }
            self.status.host_key_fingerprint = Some(result.host_key_fingerprint.clone());
            outcome = Some(result);
        }
        let new = mounts::statuses(&desired, outcome.as_ref(), &self.old.mounts);
        if let Some(o) = &outcome
            && o.all_converged()
            && new != self.old.mounts
        {
            self.event(
                EventType::Normal,
                "Mounted",
                format!(
                    "mounts converged: {}",
                    new.iter()
                        .map(|m| format!("{} at {}", m.storage_ref, m.path))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        self.status.mounts = new;
        let failed = self
            .status
            .mounts
            .iter()
            .find(|m| m.state == crate::api::azlinvm::MountState::Failed);
        if let Some(f) = failed {
            let backoff_key = format!("{}/mounts", self.owner.display());
            let delay = self.ctx.backoff().next_delay(&backoff_key);
            return Ok(Some((
                Health::progressing(
                    "MountFailed",
                    format!(
                        "mounting {} at {} failed: {}",
                        f.storage_ref, f.path, f.message
                    ),
                ),
                delay,
            )));
        }
        self.ctx
            .backoff()
            .reset(&format!("{}/mounts", self.owner.display()));
        if let Some(p) = self
            .status
            .mounts
            .iter()
            .find(|m| m.state != crate::api::azlinvm::MountState::Mounted)
        {
            return Ok(Some((
                Health::progressing(
                    "MountPending",
                    format!("{} at {}: {}", p.storage_ref, p.path, p.message),
                ),
                self.ctx
                    .settings
                    .progress_requeue
                    .max(Duration::from_secs(1)),
            )));
        }
        Ok(None)
    }

    /// Writes the status (only when changed) and publishes the collected events.
    async fn finish(
        mut self,
        api: &Api<AzlinVM>,
        result: Result<Outcome, Error>,
    ) -> Result<Action, Error> {
        let generation = self.vm.metadata.generation;
        let (health, phase, out) = match result {
            Ok(o) => (o.health, o.phase, Ok(Action::requeue(o.requeue))),
            Err(e) => {
                let health = if e.is_terminal() {
                    Health::stalled(&e.reason(), e.message())
                } else {
                    Health::progressing(&e.reason(), e.message())
                };
                let phase = if e.is_terminal() {
                    VmPhase::Failed
                } else {
                    self.old.phase.unwrap_or(VmPhase::Pending)
                };
                (health, phase, Err(e))
            }
        };
        self.status.phase = Some(phase);
        self.status.observed_generation = generation;
        let mounted = status::mounted_condition(&self.status.mounts);
        if mounted.is_none() {
            status::drop_mounted(&mut self.status.conditions);
        }
        let changed_health = set_conditions(
            &mut self.status.conditions,
            &health,
            mounted.into_iter().collect(),
            generation,
        );
        if let Err(e) = &out
            && changed_health
        {
            self.events
                .push((EventType::Warning, e.reason(), e.message()));
        }
        let name = self.vm.name_any();
        let written = write_status(api, &name, self.vm.status.as_ref(), &self.status).await;
        let recorder = self.ctx.recorder(KIND);
        let reference: ObjectReference = self.vm.object_ref(&());
        for (type_, reason, note) in std::mem::take(&mut self.events) {
            publish_event(&recorder, &reference, type_, &reason, note).await;
        }
        written?;
        out
    }
}

/// Reasons of Stalled conditions the operator sets itself (re-checked on every trigger);
/// any other Stalled reason is an ARM error code from a write Azure refused.
const OWN_STALL_REASONS: &[&str] = &[
    "InvalidSpec",
    "ResourceNotManaged",
    "ConfigurationError",
    "InvalidMounts",
    "HostKeyMismatch",
    "SshAuthFailed",
    "SerializationError",
];

/// Whether `vm` is Stalled on an ARM error for its current generation: Azure refused a write
/// (invalid size, quota, bad image); retrying without a spec change would repeat the write.
fn stalled_on_arm(vm: &AzlinVM) -> bool {
    let Some(st) = &vm.status else {
        return false;
    };
    st.observed_generation == vm.metadata.generation
        && conditions::find(&st.conditions, conditions::STALLED).is_some_and(|c| {
            c.status == conditions::TRUE && !OWN_STALL_REASONS.contains(&c.reason.as_str())
        })
}

async fn apply(vm: Arc<AzlinVM>, ctx: &Context, api: &Api<AzlinVM>) -> Result<Action, Error> {
    if stalled_on_arm(&vm) {
        return Ok(Action::await_change());
    }
    let mut run = Run::new(&vm, ctx);
    let result = run.converge().await;
    run.finish(api, result).await
}

/// Whether an ARM error means the resource (or its group) is gone.
fn gone(e: &ArmError) -> bool {
    e.is_not_found()
}

async fn cleanup(vm: Arc<AzlinVM>, ctx: &Context, api: &Api<AzlinVM>) -> Result<Action, Error> {
    let mut run = Run::new(&vm, ctx);
    if run.old.phase != Some(VmPhase::Deleting) {
        run.status.phase = Some(VmPhase::Deleting);
        set_conditions(
            &mut run.status.conditions,
            &Health::progressing("Deleting", "deleting the VM's Azure resources"),
            Vec::new(),
            vm.metadata.generation,
        );
        write_status(api, &vm.name_any(), vm.status.as_ref(), &run.status).await?;
    }
    let result = match run.resolve_arm().await {
        Err(e) => Err(e),
        Ok(()) => match vm.spec.deletion_policy {
            DeletionPolicy::Delete => delete_resources(&mut run).await,
            DeletionPolicy::Retain => release_resources(&mut run).await,
        },
    };
    let recorder = ctx.recorder(KIND);
    let reference: ObjectReference = vm.object_ref(&());
    match result {
        Ok(()) => {
            for (type_, reason, note) in std::mem::take(&mut run.events) {
                publish_event(&recorder, &reference, type_, &reason, note).await;
            }
            Ok(Action::await_change())
        }
        Err(e) => {
            publish_event(
                &recorder,
                &reference,
                EventType::Warning,
                &e.reason(),
                format!("deleting failed: {}", e.message()),
            )
            .await;
            Err(e)
        }
    }
}

/// Names of the data disks to handle on delete: the spec's LUNs plus those attached.
fn data_disk_names(run: &Run<'_>, attached: &[String]) -> Vec<String> {
    let mut names: Vec<String> = run
        .vm
        .spec
        .data_disks
        .iter()
        .map(|d| run.names.data_disk(d.lun))
        .collect();
    for a in attached {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    names
}

fn attached_disks(vm: Option<&azlin_arm::compute::VirtualMachine>) -> Vec<String> {
    vm.and_then(|v| v.properties.storage_profile.as_ref())
        .map(|s| s.data_disks.iter().filter_map(|d| d.name.clone()).collect())
        .unwrap_or_default()
}

async fn delete_resources(run: &mut Run<'_>) -> Result<(), Error> {
    let rg = run.vm.spec.resource_group.clone();
    let arm = run.arm.clone();
    if arm.resources().get(&rg).await?.is_none() {
        run.event(
            EventType::Normal,
            "Deleted",
            format!("resource group {rg} is already gone"),
        );
        return Ok(());
    }
    let vms = arm.compute().virtual_machines(&rg);
    let existing = vms.get(&run.names.vm).await?;
    let attached = attached_disks(existing.as_ref());
    let mut deleted = Vec::new();
    if let Some(v) = &existing
        && !matches!(
            naming::ownership(&v.tags, &run.owner),
            Ownership::Foreign { .. }
        )
    {
        ok_if_gone(vms.delete(&run.names.vm).await)?;
        deleted.push(format!("VM {}", run.names.vm));
    }
    let nics = arm.network().interfaces(&rg);
    if let Some(n) = nics.get(&run.names.nic).await?
        && !matches!(
            naming::ownership(&n.tags, &run.owner),
            Ownership::Foreign { .. }
        )
    {
        ok_if_gone(nics.delete(&run.names.nic).await)?;
        deleted.push(format!("NIC {}", run.names.nic));
    }
    let pips = arm.network().public_ips(&rg);
    if let Some(p) = pips.get(&run.names.pip).await?
        && !matches!(
            naming::ownership(&p.tags, &run.owner),
            Ownership::Foreign { .. }
        )
    {
        ok_if_gone(pips.delete(&run.names.pip).await)?;
        deleted.push(format!("public IP {}", run.names.pip));
    }
    let disks = arm.compute().disks(&rg);
    let mut disk_names = vec![run.names.os_disk.clone()];
    disk_names.extend(data_disk_names(run, &attached));
    for d in disk_names {
        // Disks created by the VM PUT carry no tags of ours; the name ties them to this VM.
        if disks.get(&d).await?.is_some() {
            ok_if_gone(disks.delete(&d).await)?;
            deleted.push(format!("disk {d}"));
        }
    }
    let note = if deleted.is_empty() {
        "the Azure resources were already gone".to_string()
    } else {
        format!("deleted {}", deleted.join(", "))
    };
    run.event(EventType::Normal, "Deleted", note);
    Ok(())
}

fn ok_if_gone(r: Result<(), ArmError>) -> Result<(), Error> {
    match r {
        Err(e) if gone(&e) => Ok(()),
        other => other.map_err(Error::from),
    }
}

async fn release_resources(run: &mut Run<'_>) -> Result<(), Error> {
    let rg = run.vm.spec.resource_group.clone();
    let arm = run.arm.clone();
    if arm.resources().get(&rg).await?.is_none() {
        return Ok(());
    }
    let mut released = Vec::new();
    let vms = arm.compute().virtual_machines(&rg);
    let existing = vms.get(&run.names.vm).await?;
    let attached = attached_disks(existing.as_ref());
    let mut targets: Vec<(String, BTreeMap<String, String>, ResourceId)> = Vec::new();
    if let Some(v) = &existing {
        targets.push((
            format!("VM {}", run.names.vm),
            v.tags.clone(),
            vms.id(&run.names.vm),
        ));
    }
    let nics = arm.network().interfaces(&rg);
    if let Some(n) = nics.get(&run.names.nic).await? {
        targets.push((
            format!("NIC {}", run.names.nic),
            n.tags,
            nics.id(&run.names.nic),
        ));
    }
    let pips = arm.network().public_ips(&rg);
    if let Some(p) = pips.get(&run.names.pip).await? {
        targets.push((
            format!("public IP {}", run.names.pip),
            p.tags,
            pips.id(&run.names.pip),
        ));
    }
    let disks = arm.compute().disks(&rg);
    let mut disk_names = vec![run.names.os_disk.clone()];
    disk_names.extend(data_disk_names(run, &attached));
    for d in disk_names {
        if let Some(disk) = disks.get(&d).await? {
            // Disks created by the VM PUT have no tags yet: give them ours, released.
            let tags = if disk.tags.is_empty() {
                run.owner.tags()
            } else {
                disk.tags
            };
            targets.push((format!("disk {d}"), tags, disks.id(&d)));
        }
    }
    for (what, tags, id) in targets {
        if matches!(
            naming::ownership(&tags, &run.owner),
            Ownership::Foreign { .. }
        ) {
            continue;
        }
        if tags.get(naming::TAG_RELEASED).map(String::as_str) == Some("true") {
            continue;
        }
        let body = json!({ "tags": naming::released(&tags) });
        let path = id.to_string();
        let version = azlin_arm::client::api_version_of(&id)?;
        match arm
            .patch_json::<_, serde_json::Value>(&path, version, &body)
            .await
        {
            Ok(_) => released.push(what),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    run.event(
        EventType::Normal,
        "Retained",
        format!(
            "deletionPolicy Retain: left {} in Azure, tagged {}=true",
            if released.is_empty() {
                "nothing new".to_string()
            } else {
                released.join(", ")
            },
            naming::TAG_RELEASED
        ),
    );
    Ok(())
}
