//! The status of a Backup for the reconcile layer.

use crate::api::backup::{BackupPhase, BackupStatus};
use crate::reconcile::KindStatus;

impl KindStatus for BackupStatus {
    crate::reconcile::standard_status_fields!();
    crate::reconcile::status::azure_identity_field!();

    fn set_error_phase(&mut self, stalled: bool, deleting: bool) {
        if deleting {
            self.phase = Some(BackupPhase::Deleting);
        } else if stalled {
            self.phase = Some(BackupPhase::Failed);
        }
    }
}
