//! Pure status helpers of the AzlinVM controller.

use crate::api::PowerState;
use crate::api::azlinvm::{AzlinVMStatus, MountState, MountStatus, VmPhase};
use crate::api::conditions::{Health, NewCondition};
use crate::reconcile::{KindStatus, PlanCx, Requeue};

use super::mounts::MOUNTED;

impl KindStatus for AzlinVMStatus {
    crate::reconcile::standard_status_fields!();

    /// The recorded identity; for a VM created before identities were recorded, the
    /// subscription of its resource id.
    fn azure_identity(&self) -> Option<crate::api::common::AzureIdentity> {
        self.azure.clone().or_else(|| {
            self.resource_id
                .as_deref()
                .and_then(crate::api::common::AzureIdentity::of_resource_id)
        })
    }

    fn record_azure_identity(&mut self, identity: &crate::api::common::AzureIdentity) {
        self.azure = Some(identity.clone());
    }

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
        let running = self
            .power_state
            .as_deref()
            .is_none_or(|p| p.eq_ignore_ascii_case(PowerState::Running.as_str()));
        let mounted = match mounted_condition(&self.mounts) {
            Some(_) if !running => Some(NewCondition::falsy(
                MOUNTED,
                "VMNotRunning",
                format!(
                    "the VM is {}: nothing is mounted until it runs",
                    self.power_state.as_deref().unwrap_or_default()
                ),
            )),
            other => other,
        };
        vec![(MOUNTED, mounted)]
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

/// The health of the mounts: `None` when all are mounted (or there are none).
pub fn mount_health(mounts: &[MountStatus], cx: &PlanCx<'_>) -> Option<(Health, Requeue)> {
    if let Some(f) = mounts.iter().find(|m| m.state == MountState::Failed) {
        let message = format!(
            "mounting {} at {} failed: {}",
            f.storage_ref, f.path, f.message
        );
        return Some((
            Health::progressing("MountFailed", message),
            Requeue::Backoff,
        ));
    }
    let pending = mounts.iter().find(|m| m.state != MountState::Mounted)?;
    let message = format!(
        "{} at {}: {}",
        pending.storage_ref, pending.path, pending.message
    );
    let after = cx
        .settings
        .progress_requeue
        .max(std::time::Duration::from_secs(1));
    Some((
        Health::progressing("MountPending", message),
        Requeue::After(after),
    ))
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
        let mut st = AzlinVMStatus {
            mounts: vec![m(MountState::Mounted)],
            power_state: Some("Running".into()),
            ..Default::default()
        };
        let cond = |st: &AzlinVMStatus| {
            st.derived_conditions()
                .into_iter()
                .find_map(|(t, c)| (t == MOUNTED).then_some(c))
                .flatten()
                .expect("a Mounted condition")
        };
        assert_eq!(cond(&st).status, "True");
        for word in ["Deallocated", "Stopped", "Deallocating"] {
            st.power_state = Some(word.into());
            let c = cond(&st);
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "VMNotRunning")
            );
        }
        assert_eq!(transition_event(PowerState::Deallocated), "Deallocated");
    }
}
