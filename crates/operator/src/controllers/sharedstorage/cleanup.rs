//! The pure decisions of the SharedStorage controller while the object is deleted.
//!
//! - With either policy, deletion waits while anything holds the share (Stalled `InUse`
//!   naming the holders, see [`super::status::holders`]: VMs mounting it by spec or still by
//!   status, members of a Fleet sharing it as home, Fleets naming it), re-evaluated when
//!   they change; so `Retain` never unmounts it from running VMs either.
//! - `deletionPolicy: Delete`: the share and the account are deleted, one per reconcile,
//!   and the finalizer goes once the account is gone. A missing account (or resource group)
//!   never blocks deletion; an account that is not ours is left alone.
//! - `deletionPolicy: Retain`: the account is tagged `azlin-operator-released=true` and the
//!   finalizer goes.

use super::observe::Observed;
use super::plan::{Step, foreign_account, outcome, working};
use crate::api::common::DeletionPolicy;
use crate::api::conditions::Health;
use crate::api::sharedstorage::{SharedStorage, StoragePhase};
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{Ownership, TAG_RELEASED, ownership, released};
use crate::reconcile::{Outcome, Plan, PlanCx, Requeue};

fn deleting(
    storage: &SharedStorage,
    seen: &Observed,
    reason: &str,
    message: String,
) -> Outcome<SharedStorage> {
    working(storage, seen, StoragePhase::Deleting, reason, message)
}

fn release(
    storage: &SharedStorage,
    seen: &Observed,
    reason: &str,
    note: String,
) -> Plan<SharedStorage> {
    let mut out = outcome(
        storage,
        seen,
        StoragePhase::Deleting,
        Health::progressing("Deleting", note.clone()),
    );
    out.released = true;
    out.event(Event::normal(reason, note));
    Plan::report(out)
}

/// The plan of a SharedStorage being deleted.
pub fn plan(storage: &SharedStorage, seen: &Observed, _cx: &PlanCx<'_>) -> Plan<SharedStorage> {
    let t = &seen.target;
    if !seen.holders.is_empty() {
        let list = seen.holders.join(", ");
        let message = format!(
            "held by {list}: deletion waits until nothing mounts or names the share (remove those mounts and sharedHome references, or delete those objects); it then proceeds by itself"
        );
        let mut out = outcome(
            storage,
            seen,
            StoragePhase::Deleting,
            Health::stalled("InUse", message),
        );
        // Users that are deleted themselves leave no trace in the caches to trigger on:
        // look again soon (this costs no Azure request, see `observe`).
        out.requeue = Requeue::Progress;
        return Plan::report(out);
    }
    let was_deleting = storage
        .status
        .as_ref()
        .is_some_and(|s| s.phase == Some(StoragePhase::Deleting));
    let Some(account) = &seen.account else {
        let note = match storage.spec.deletion_policy {
            DeletionPolicy::Retain => format!(
                "storage account {} does not exist; nothing to retain",
                t.account
            ),
            DeletionPolicy::Delete if was_deleting => {
                format!(
                    "deleted NFS share {} and storage account {}",
                    t.share, t.account
                )
            }
            DeletionPolicy::Delete => format!("storage account {} is already gone", t.account),
        };
        let reason = match storage.spec.deletion_policy {
            DeletionPolicy::Retain => "Released",
            DeletionPolicy::Delete => "Deleted",
        };
        return release(storage, seen, reason, note);
    };
    if let Ownership::Foreign { reason } = ownership(&account.tags, &t.owner) {
        let note = format!("{}; left untouched", foreign_account(t, &reason));
        return release(storage, seen, "Released", note);
    }
    match storage.spec.deletion_policy {
        DeletionPolicy::Retain => {
            if account.tags.get(TAG_RELEASED).map(String::as_str) == Some("true") {
                let note = format!(
                    "retained storage account {} and share {} (tagged {TAG_RELEASED}=true)",
                    t.account, t.share
                );
                return release(storage, seen, "Released", note);
            }
            let out = deleting(
                storage,
                seen,
                "Releasing",
                format!("tagging storage account {} released", t.account),
            );
            Plan::step(Step::TagAccount(released(&account.tags)), out)
        }
        DeletionPolicy::Delete if seen.share.is_some() => {
            let out = deleting(
                storage,
                seen,
                "Deleting",
                format!("deleting NFS share {}", t.share),
            );
            Plan::step(Step::DeleteShare, out)
        }
        DeletionPolicy::Delete => {
            let out = deleting(
                storage,
                seen,
                "Deleting",
                format!("deleting storage account {}", t.account),
            );
            Plan::step(Step::DeleteAccount, out)
        }
    }
}
