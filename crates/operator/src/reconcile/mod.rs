//! The shared reconcile layer every controller runs on.
//!
//! A kind implements [`Reconciled`]: what it observes (reads only: the shared caches, ARM
//! GETs and LISTs), how it plans (a pure function from spec, observation and previous status
//! to the next step, the new status, its health, events and when to look again) and how it
//! applies a step (the one write the step needs). The layer ([`driver`]) owns everything
//! else, once for all kinds:
//!
//! - the finalizer (added before anything is created in Azure, removed when a deleting
//!   object's plan says it released everything);
//! - exactly one status write per reconcile, and only when the status changed
//!   ([`status`]); `observedGeneration` and the kstatus conditions `Ready`, `Reconciling`
//!   and `Stalled` are derived from the plan's [`Health`];
//! - buffered events, published after the write ([`events`]);
//! - error classes ([`error`]): a transient error is retried with per-object exponential
//!   backoff (honouring `Retry-After`) while the object reports `Reconciling`; an error that
//!   needs the user's change makes it `Stalled` with the Azure code and message, and it is
//!   re-evaluated on resync and whenever anything it depends on changes — never in a loop;
//! - triggers: a controller reacts to changes of its objects' spec and metadata (its own
//!   status writes never trigger it), to changes of what they depend on (mapped through the
//!   shared [`caches`]), to resyncs and to clock changes ([`clock`]);
//! - the ARM client of the object's namespace ([`context::Context::arm_for`]), bound to the
//!   identity and subscription the object's resources were created with (recorded in
//!   `status.azure` before anything is created; see [`Cx::arm`]), and ownership tags for
//!   Azure resources ([`ownership`]).

pub mod caches;
pub mod clock;
pub mod context;
pub mod driver;
pub mod error;
pub mod events;
pub mod ownership;
pub mod status;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::{Context, ContextBuilder, ControllerSettings};
pub use error::{Class, Error};
pub use events::Event;
pub use status::KindStatus;

use crate::api::common::AzureIdentity;
use crate::api::conditions::Health;
use azlin_arm::ArmClient;

/// A kind the layer reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Kind name (logs, metrics, events).
    const KIND: &'static str;
    /// Finalizer guarding cleanup; `None` when deleting the object needs no work of ours
    /// (its children go with it through owner references).
    const FINALIZER: Option<&'static str>;
    /// The kind's status.
    type Status: KindStatus;
    /// What [`Reconciled::observe`] found.
    type Observed: Send + Sync;
    /// One write.
    type Step: Debug + Send + Sync;

    /// The current status, if any.
    fn status(&self) -> Option<&Self::Status>;

    /// Reads what the plan needs: the shared caches, Kubernetes objects, ARM resources.
    /// Never writes.
    fn observe(&self, cx: &Cx<'_>) -> impl Future<Output = Result<Self::Observed, Error>> + Send;

    /// Decides, without I/O, the next step and everything to report. Called for objects
    /// being deleted too (`cx.deleting`); their plan says when everything is released.
    fn plan(&self, seen: &Self::Observed, cx: &PlanCx<'_>) -> Plan<Self>;

    /// Performs `step` (one write, or one batch of the same write), recording what it
    /// learned in `out`. Long Azure operations are started, not awaited.
    fn apply(
        &self,
        cx: &Cx<'_>,
        seen: &Self::Observed,
        step: Self::Step,
        out: &mut Outcome<Self>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Per-reconcile access to the world, for observe and apply.
pub struct Cx<'a> {
    /// The shared controller context.
    pub ctx: &'a Context,
    /// The object's namespace.
    pub namespace: String,
    /// The time of this reconcile.
    pub now: DateTime<Utc>,
    /// Backoff key of the object (`Kind:namespace/name`); sub-tasks append `/<task>`.
    pub key: String,
    /// Whether the object is being deleted.
    pub deleting: bool,
    /// The Azure identity the object's resources were created with, when recorded.
    pub recorded_identity: Option<AzureIdentity>,
    /// The identity [`Cx::arm`] handed out in this reconcile (recorded in the status of an
    /// object that has none yet).
    pub used_identity: std::sync::Mutex<Option<AzureIdentity>>,
}

impl Cx<'_> {
    /// The ARM client of the object's namespace. When the object recorded the identity its
    /// resources were created with and the namespace now offers another one (its credential
    /// Secret gone, added, or naming another subscription), this is an error that stalls
    /// the object (`CredentialUnavailable`): it is never managed, or found "deleted", with
    /// another identity or in another subscription.
    pub fn arm(&self) -> Result<ArmClient, Error> {
        self.arm_and_identity().map(|(arm, _)| arm)
    }

    /// [`Cx::arm`] and the identity it acts as.
    pub fn arm_and_identity(&self) -> Result<(ArmClient, AzureIdentity), Error> {
        let (arm, current) = self.ctx.arm_with_identity(&self.namespace)?;
        if let Some(recorded) = &self.recorded_identity
            && !recorded.matches(&current)
        {
            return Err(Error::Credential {
                message: context::identity_mismatch(&self.namespace, recorded, &current),
            });
        }
        *self.used_identity.lock().unwrap_or_else(|e| e.into_inner()) = Some(current.clone());
        Ok((arm, current))
    }

    /// The shared snapshot of collection `C` in resource group `group`, fresh enough for
    /// this object (see [`crate::infra::inventory`]); [`Error::SnapshotDue`] when the next
    /// list is more than `list_interval` away (the driver requeues the object for then).
    pub async fn list<C: crate::infra::inventory::Collection>(
        &self,
        arm: &ArmClient,
        group: &str,
    ) -> Result<std::sync::Arc<crate::infra::inventory::Snapshot<C::Item>>, Error> {
        use crate::infra::inventory::Paced;
        loop {
            match self
                .ctx
                .inventory
                .get_paced::<C>(arm, group, &self.key)
                .await?
            {
                Paced::Ready(snapshot) => return Ok(snapshot),
                // A short wait is cheaper than a requeue; a long one must not hold a
                // worker that an object reacting to a change could use.
                Paced::NotBefore(due) if due <= self.ctx.settings.list_interval => {
                    tokio::time::sleep(due).await;
                }
                Paced::NotBefore(due) => return Err(Error::SnapshotDue(due)),
            }
        }
    }

    /// Like [`Cx::list`], but a long wait for the next list is the caller's to plan (an
    /// object waiting for power states says so in its status).
    pub async fn list_paced<C: crate::infra::inventory::Collection>(
        &self,
        arm: &ArmClient,
        group: &str,
    ) -> Result<
        crate::infra::inventory::Paced<std::sync::Arc<crate::infra::inventory::Snapshot<C::Item>>>,
        Error,
    > {
        Ok(self
            .ctx
            .inventory
            .get_paced::<C>(arm, group, &self.key)
            .await?)
    }
}

/// What a plan may read besides the object and the observation.
#[derive(Debug, Clone)]
pub struct PlanCx<'a> {
    /// The time of this reconcile.
    pub now: DateTime<Utc>,
    /// Controller settings (intervals).
    pub settings: &'a ControllerSettings,
    /// Whether the object is being deleted.
    pub deleting: bool,
}

/// When to reconcile again if nothing else triggers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// At the resync interval (at rest).
    Resync,
    /// Soon, while Azure works (provisioning, power changes, deletes).
    Progress,
    /// After this long (e.g. Azure's `Retry-After`).
    After(Duration),
    /// At this time (a schedule), at the latest on resync.
    At(DateTime<Utc>),
    /// After the object's next backoff delay: the step retries something that failed.
    Backoff,
    /// Immediately: the step finished and the next one can start.
    Now,
}

/// The result of planning: the step to take, if any, and what to report.
pub struct Plan<K: Reconciled> {
    /// The one write to make.
    pub step: Option<K::Step>,
    /// Status, health, events and requeue.
    pub out: Outcome<K>,
}

/// What a reconcile reports.
pub struct Outcome<K: Reconciled> {
    /// The new status (the layer adds `observedGeneration` and the conditions).
    pub status: K::Status,
    /// Ready, progressing or stalled.
    pub health: Health,
    /// Events to publish after the step's write.
    pub events: Vec<Event>,
    /// When to look again.
    pub requeue: Requeue,
    /// For an object being deleted: everything is released, remove the finalizer.
    pub released: bool,
}

impl<K: Reconciled> Debug for Outcome<K>
where
    K::Status: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("status", &self.status)
            .field("health", &self.health)
            .field("events", &self.events)
            .field("requeue", &self.requeue)
            .field("released", &self.released)
            .finish()
    }
}

impl<K: Reconciled> Outcome<K> {
    /// An outcome with `status` and `health`, no events, requeued at resync.
    pub fn new(status: K::Status, health: Health) -> Self {
        Self {
            status,
            health,
            events: Vec::new(),
            requeue: Requeue::Resync,
            released: false,
        }
    }

    /// Adds an event.
    pub fn event(&mut self, event: Event) {
        self.events.push(event);
    }
}

impl<K: Reconciled> Plan<K> {
    /// Nothing to write.
    pub fn report(out: Outcome<K>) -> Self {
        Self { step: None, out }
    }

    /// Take `step`.
    pub fn step(step: K::Step, out: Outcome<K>) -> Self {
        Self {
            step: Some(step),
            out,
        }
    }
}

/// Implements [`Reconciled`] for a kind whose controller folder has the layout every
/// controller shares: `observe::observe` and `observe::Observed`, `plan::plan` and
/// `plan::Step` for kept objects, `cleanup::plan` for objects being deleted, and
/// `apply::apply`. A kind without a finalizer (nothing of its own to clean up) says
/// `finalizer: None` and has no `cleanup` module.
macro_rules! reconciled_controller {
    ($kind:ty, status: $status:ty, name: $name:expr, finalizer: None $(,)?) => {
        $crate::reconcile::reconciled_controller!(@impl $kind, $status, $name, None, plan::plan);
    };
    ($kind:ty, status: $status:ty, name: $name:expr, finalizer: $finalizer:expr $(,)?) => {
        $crate::reconcile::reconciled_controller!(@impl $kind, $status, $name, $finalizer, cleanup::plan);
    };
    (@impl $kind:ty, $status:ty, $name:expr, $finalizer:expr, $cleanup:path) => {
        impl $crate::reconcile::Reconciled for $kind {
            const KIND: &'static str = $name;
            const FINALIZER: Option<&'static str> = $finalizer;
            type Status = $status;
            type Observed = observe::Observed;
            type Step = plan::Step;

            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }

            async fn observe(
                &self,
                cx: &$crate::reconcile::Cx<'_>,
            ) -> Result<observe::Observed, $crate::reconcile::Error> {
                observe::observe(self, cx).await
            }

            fn plan(
                &self,
                seen: &observe::Observed,
                cx: &$crate::reconcile::PlanCx<'_>,
            ) -> $crate::reconcile::Plan<Self> {
                if cx.deleting {
                    $cleanup(self, seen, cx)
                } else {
                    plan::plan(self, seen, cx)
                }
            }

            async fn apply(
                &self,
                cx: &$crate::reconcile::Cx<'_>,
                seen: &observe::Observed,
                step: plan::Step,
                out: &mut $crate::reconcile::Outcome<Self>,
            ) -> Result<(), $crate::reconcile::Error> {
                apply::apply(self, cx, seen, step, out).await
            }
        }
    };
}
pub(crate) use reconciled_controller;

/// The accessors of [`KindStatus`] for a status with `conditions` and
/// `observed_generation` fields, as every kind's status has.
macro_rules! standard_status_fields {
    () => {
        fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
            &self.conditions
        }

        fn conditions_mut(
            &mut self,
        ) -> &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
            &mut self.conditions
        }

        fn set_observed_generation(&mut self, generation: Option<i64>) {
            self.observed_generation = generation;
        }
    };
}
pub(crate) use standard_status_fields;
