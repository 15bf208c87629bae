//! The Fleet's status: kstatus accessors and its error phase.

use crate::api::fleet::{FleetPhase, FleetStatus};
use crate::reconcile::KindStatus;

impl KindStatus for FleetStatus {
    crate::reconcile::standard_status_fields!();

    fn set_error_phase(&mut self, stalled: bool, _deleting: bool) {
        if stalled {
            self.phase = Some(FleetPhase::Failed);
        }
    }
}
