//! Pure status helpers of the AzlinVM controller.

use crate::api::PowerState;
use crate::api::azlinvm::{AzlinVMStatus, MountState, MountStatus, VmPhase};
use crate::api::conditions::NewCondition;
use crate::reconcile::KindStatus;

use super::mounts::MOUNTED;

impl KindStatus for AzlinVMStatus {
    crate::reconcile::standard_status_fields!();

    fn set_error_phase(&mut self, stalled: bool, deleting: bool) {
        self.phase = Some(if deleting {
            VmPhase::Deleting
        } else if stalled {
            VmPhase::Failed
        } else {
            self.phase.unwrap_or(VmPhase::Pending)
        });
    }

    fn derived_conditions(&self) -> Vec<(&'static str, Option<NewCondition>)> {
        vec![(MOUNTED, mounted_condition(&self.mounts))]
    }
}

/// The phase of a VM that matches its spec.
pub fn settled_phase(power: PowerState) -> VmPhase {
    match power {
        PowerState::Running => VmPhase::Running,
        PowerState::Stopped => VmPhase::Stopped,
        PowerState::Deallocated => VmPhase::Deallocated,
    }
}

/// Event reason of a completed power transition into `power`.
pub fn transition_event(power: PowerState) -> &'static str {
    match power {
        PowerState::Running => "Started",
        PowerState::Stopped => "Stopped",
        PowerState::Deallocated => "Deallocated",
    }
}

/// The `Mounted` condition for `mounts` (`None` when the VM has no mounts).
pub fn mounted_condition(mounts: &[MountStatus]) -> Option<NewCondition> {
    if mounts.is_empty() {
        return None;
    }
    let failed: Vec<&MountStatus> = mounts
        .iter()
        .filter(|m| m.state == MountState::Failed)
        .collect();
    let pending: Vec<&MountStatus> = mounts
        .iter()
        .filter(|m| m.state == MountState::Pending)
        .collect();
    Some(if let Some(f) = failed.first() {
        NewCondition::falsy(
            MOUNTED,
            "MountFailed",
            format!("{} at {}: {}", f.storage_ref, f.path, f.message),
        )
    } else if let Some(p) = pending.first() {
        NewCondition::falsy(
            MOUNTED,
            "MountPending",
            format!("{} at {}: {}", p.storage_ref, p.path, p.message),
        )
    } else {
        NewCondition::truthy(
            MOUNTED,
            "Mounted",
            format!(
                "{} mounted: {}",
                mounts.len(),
                mounts
                    .iter()
                    .map(|m| m.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(state: MountState) -> MountStatus {
        MountStatus {
            storage_ref: "data".into(),
            path: "/mnt/data".into(),
            state,
            message: "msg".into(),
        }
    }

    #[test]
    fn mounted_condition_summarises() {
        assert!(mounted_condition(&[]).is_none());
        let ok = mounted_condition(&[m(MountState::Mounted)]).expect("cond");
        assert_eq!(ok.status, "True");
        let pending =
            mounted_condition(&[m(MountState::Mounted), m(MountState::Pending)]).expect("cond");
        assert_eq!(pending.reason, "MountPending");
        let failed =
            mounted_condition(&[m(MountState::Pending), m(MountState::Failed)]).expect("cond");
        assert_eq!(failed.reason, "MountFailed");
        assert_eq!(settled_phase(PowerState::Stopped), VmPhase::Stopped);
        assert_eq!(transition_event(PowerState::Deallocated), "Deallocated");
    }
}
