//! The pure decisions of the SharedStorage controller while the object is kept: from what
//! was observed, the next write (network, account, share) and the status to report.

use std::collections::BTreeMap;

use azlin_arm::storage::FileShare;

use super::build::{self, SharePlan, ShareUpdate};
use super::observe::{Observed, Target};
use super::status::{self, next_status};
use crate::api::conditions::Health;
use crate::api::sharedstorage::{SharedStorage, StoragePhase};
use crate::infra::network;
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{Ownership, ownership};
use crate::reconcile::{Outcome, Plan, PlanCx, Requeue};

/// One write of the SharedStorage controller.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Prepare the resource group or managed network.
    Infra(network::Step),
    /// Create the storage account.
    CreateAccount(Box<azlin_arm::storage::StorageAccount>),
    /// Replace the account's settings (drift, or adoption of an account of ours).
    UpdateAccount(Box<azlin_arm::storage::StorageAccount>),
    /// Create the NFS share.
    CreateShare(Box<FileShare>),
    /// Change quota and/or root squash.
    UpdateShare(ShareUpdate),
    /// Set these tags on the account (`deletionPolicy: Retain`).
    TagAccount(BTreeMap<String, String>),
    /// Delete the share.
    DeleteShare,
    /// Delete the account.
    DeleteAccount,
}

/// The Azure facts the status reports.
pub fn facts(seen: &Observed) -> status::Observed {
    status::Observed {
        account: Some(seen.target.account.clone()),
        share: seen.share.as_ref().map(|_| seen.target.share.clone()),
        quota_gib: seen
            .share
            .as_ref()
            .and_then(|s| s.properties.share_quota)
            .and_then(|q| i32::try_from(q).ok()),
    }
}

/// An outcome in `phase` with `health`.
pub fn outcome(
    storage: &SharedStorage,
    seen: &Observed,
    phase: StoragePhase,
    health: Health,
) -> Outcome<SharedStorage> {
    Outcome::new(
        next_status(storage.status.as_ref(), phase, &facts(seen), &seen.users),
        health,
    )
}

/// Work in progress in `phase`: Reconciling with `reason`, looked at again soon.
pub fn working(
    storage: &SharedStorage,
    seen: &Observed,
    phase: StoragePhase,
    reason: &str,
    message: String,
) -> Outcome<SharedStorage> {
    let mut out = outcome(storage, seen, phase, Health::progressing(reason, message));
    out.requeue = Requeue::Progress;
    out
}

fn progress(
    storage: &SharedStorage,
    seen: &Observed,
    reason: &str,
    message: String,
) -> Outcome<SharedStorage> {
    working(storage, seen, StoragePhase::Provisioning, reason, message)
}

fn stalled(
    storage: &SharedStorage,
    seen: &Observed,
    reason: &str,
    message: String,
) -> Plan<SharedStorage> {
    Plan::report(outcome(
        storage,
        seen,
        StoragePhase::Failed,
        Health::stalled(reason, message),
    ))
}

fn step(mut out: Outcome<SharedStorage>, step: Step, event: Option<Event>) -> Plan<SharedStorage> {
    out.events.extend(event);
    Plan::step(step, out)
}

/// The account of `target` was found with another owner.
pub fn foreign_account(t: &Target, reason: &str) -> String {
    format!(
        "storage account {} in resource group {} exists but is not managed by this SharedStorage ({reason}); the operator never touches it. Delete or tag it, or use another resource group",
        t.account, t.site.resource_group
    )
}

/// The plan of a SharedStorage that is kept.
pub fn plan(storage: &SharedStorage, seen: &Observed, _cx: &PlanCx<'_>) -> Plan<SharedStorage> {
    let t = &seen.target;
    if let Some(site) = &seen.site {
        match network::plan(site, &t.site, &t.nsg_id) {
            network::Plan::Ready => {}
            network::Plan::Wait(m) => {
                return Plan::report(progress(storage, seen, "Provisioning", m));
            }
            network::Plan::Foreign(m) => return stalled(storage, seen, "ResourceNotManaged", m),
            network::Plan::Step(s) => {
                let out = progress(storage, seen, "PreparingNetwork", s.describe(&t.site));
                let event = s.event(&t.site);
                return step(out, Step::Infra(s), Some(event));
            }
        }
    }
    let desired = build::desired_account(
        &t.site.location,
        &build::allowed_subnets(&t.subnet_id, &storage.spec.allowed_subnets),
        &t.owner.tags(),
    );
    match &seen.account {
        None => {
            let out = progress(
                storage,
                seen,
                "CreatingStorageAccount",
                format!("creating storage account {}", t.account),
            );
            let event = Event::normal(
                "StorageAccountCreated",
                format!(
                    "creating Premium FileStorage account {} in {}",
                    t.account, t.site.resource_group
                ),
            );
            return step(out, Step::CreateAccount(Box::new(desired)), Some(event));
        }
        Some(actual) => {
            let owned = ownership(&actual.tags, &t.owner);
            if let Ownership::Foreign { reason } = &owned {
                return stalled(
                    storage,
                    seen,
                    "ResourceNotManaged",
                    foreign_account(t, reason),
                );
            }
            if let Some(mismatch) = build::account_immutable_mismatch(actual) {
                return stalled(
                    storage,
                    seen,
                    "InvalidSpec",
                    format!("spec.tier: storage account {} {mismatch}", t.account),
                );
            }
            if actual
                .properties
                .provisioning_state
                .as_ref()
                .is_some_and(|p| !p.is_terminal())
            {
                return Plan::report(progress(
                    storage,
                    seen,
                    "Provisioning",
                    format!("storage account {} is being provisioned", t.account),
                ));
            }
            let drift = build::account_drift(actual, &desired);
            if owned == Ownership::Adopt || !drift.is_empty() {
                let (reason, note) = if owned == Ownership::Adopt {
                    (
                        "StorageAccountAdopted",
                        format!(
                            "adopting storage account {} (owner tags updated)",
                            t.account
                        ),
                    )
                } else {
                    (
                        "StorageAccountUpdated",
                        format!(
                            "correcting storage account {}: {}",
                            t.account,
                            drift.join(", ")
                        ),
                    )
                };
                let out = progress(
                    storage,
                    seen,
                    "UpdatingStorageAccount",
                    format!("updating storage account {}", t.account),
                );
                let body = build::account_update(actual, &desired);
                return step(
                    out,
                    Step::UpdateAccount(Box::new(body)),
                    Some(Event::normal(reason, note)),
                );
            }
        }
    }
    let quota = build::spec_quota(storage.spec.size_gib);
    match build::plan_share(seen.share.as_ref(), quota, storage.spec.root_squash) {
        SharePlan::InSync => {
            let endpoint = facts(seen).nfs_endpoint().unwrap_or_default();
            let message = status::ready_message(&endpoint, quota, &build::mount_layout(storage));
            Plan::report(outcome(
                storage,
                seen,
                StoragePhase::Ready,
                Health::ready("Provisioned", message),
            ))
        }
        SharePlan::Create(body) => {
            let out = progress(
                storage,
                seen,
                "CreatingShare",
                format!("creating NFS share {} ({quota} GiB)", t.share),
            );
            let event = Event::normal(
                "ShareCreated",
                format!(
                    "creating NFS share {} on account {} ({quota} GiB, {})",
                    t.share,
                    t.account,
                    storage.spec.root_squash.as_str()
                ),
            );
            step(out, Step::CreateShare(body), Some(event))
        }
        SharePlan::Update(update) => {
            let what = update.describe();
            let out = progress(
                storage,
                seen,
                "UpdatingShare",
                format!("updating NFS share {}: {what}", t.share),
            );
            let event = Event::normal(
                "ShareUpdated",
                format!("updating NFS share {}: {what}", t.share),
            );
            step(out, Step::UpdateShare(update), Some(event))
        }
        SharePlan::NotNfs { protocol } => stalled(
            storage,
            seen,
            "InvalidSpec",
            format!(
                "metadata.name: file share {} on storage account {} is a {protocol} share and Azure cannot change a share's protocol to NFS; delete that share or use another name",
                t.share, t.account
            ),
        ),
        SharePlan::ShrinkBelowUsage {
            current_gib,
            requested_gib,
            used_bytes,
            other,
        } => {
            let message = format!(
                "spec.sizeGiB {requested_gib} is below the {} already stored on share {}: the quota stays at {current_gib} GiB. Free space on the share or set spec.sizeGiB to at least {}",
                build::format_bytes(used_bytes),
                t.share,
                used_bytes.div_ceil(build::GIB)
            );
            let out = outcome(
                storage,
                seen,
                StoragePhase::Failed,
                Health::stalled("ShrinkBelowUsage", message),
            );
            match other {
                Some(update) => {
                    let event = Event::normal(
                        "ShareUpdated",
                        format!("updating NFS share {}: {}", t.share, update.describe()),
                    );
                    step(out, Step::UpdateShare(update), Some(event))
                }
                None => Plan::report(out),
            }
        }
    }
}
