//! The pure decisions of the Backup controller while the object is deleted.
//!
//! Verification disks always go. Then, with `deletionPolicy: Delete`, every snapshot and
//! copy this Backup made is deleted (one batch of deletes per reconcile, awaited by looking
//! again) and the finalizer goes once none is left; with `Retain`, they are tagged
//! `azlin-operator-released=true` and left in Azure (a Backup created again with the same
//! name finds them as recovered runs). Snapshots this Backup did not make are never
//! touched: only those with its ownership tags are listed.

use super::observe::{AzState, Observed};
use super::plan::Step;
use crate::api::backup::{Backup, BackupPhase};
use crate::api::common::DeletionPolicy;
use crate::api::conditions::Health;
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{TAG_RELEASED, released};
use crate::reconcile::{Outcome, Plan, PlanCx, Requeue};

fn outcome(backup: &Backup, message: String) -> Outcome<Backup> {
    let mut st = backup.status.clone().unwrap_or_default();
    st.phase = Some(BackupPhase::Deleting);
    let mut out = Outcome::new(st, Health::progressing("Deleting", message));
    out.requeue = Requeue::Progress;
    out
}

fn release(backup: &Backup, reason: &str, note: String) -> Plan<Backup> {
    let mut out = outcome(backup, note.clone());
    out.released = true;
    out.event(Event::normal(reason, note));
    Plan::report(out)
}

/// The plan of a Backup being deleted.
pub fn plan(backup: &Backup, seen: &Observed, _cx: &PlanCx<'_>) -> Plan<Backup> {
    let disks: Vec<String> = seen
        .verify_disks
        .iter()
        .filter(|d| d.state.settled())
        .map(|d| d.id.clone())
        .collect();
    let busy = seen
        .snapshots
        .iter()
        .any(|f| !f.state.settled() && !f.transferring)
        || seen.verify_disks.iter().any(|d| !d.state.settled());
    match backup.spec.deletion_policy {
        DeletionPolicy::Delete => {
            // A copy still transferring is deleted too (that cancels it).
            let mut ids: Vec<String> = seen
                .snapshots
                .iter()
                .filter(|f| f.state.settled() || f.transferring)
                .map(|f| f.id.clone())
                .collect();
            ids.extend(disks);
            if !ids.is_empty() {
                let message = format!("deleting {} snapshots and disks of this Backup", ids.len());
                return Plan::step(Step::Delete(ids), outcome(backup, message));
            }
            if busy {
                return Plan::report(outcome(
                    backup,
                    "waiting for Azure to finish with the snapshots of this Backup".into(),
                ));
            }
            release(
                backup,
                "Deleted",
                "the snapshots and copies of this Backup are deleted".into(),
            )
        }
        DeletionPolicy::Retain => {
            if !disks.is_empty() {
                let message = "deleting the verification disks".to_string();
                return Plan::step(Step::Delete(disks), outcome(backup, message));
            }
            let untagged: Vec<(String, std::collections::BTreeMap<String, String>)> = seen
                .snapshots
                .iter()
                .filter(|f| (f.state.settled() || f.transferring) && !f.released())
                .map(|f| (f.id.clone(), released(&f.tags)))
                .collect();
            if !untagged.is_empty() {
                let message = format!("tagging {} snapshots released", untagged.len());
                return Plan::step(Step::Tag(untagged), outcome(backup, message));
            }
            if busy {
                return Plan::report(outcome(
                    backup,
                    "waiting for Azure to finish the snapshots of this Backup".into(),
                ));
            }
            let kept = seen
                .snapshots
                .iter()
                .filter(|f| f.state != AzState::Deleting)
                .count();
            release(
                backup,
                "Retained",
                format!(
                    "deletionPolicy Retain: left {kept} snapshots in Azure, tagged {TAG_RELEASED}=true"
                ),
            )
        }
    }
}
