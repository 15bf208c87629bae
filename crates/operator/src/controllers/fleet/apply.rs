//! The writes of the Fleet controller: one batch of member writes per reconcile, made in
//! parallel — server-side apply (field manager [`FIELD_MANAGER`]) to create and update,
//! and deletes in the background (each member's finalizer cleans up its Azure resources).

use futures::future::try_join_all;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

use super::observe::Observed;
use super::plan::Step;
use crate::api::{AzlinVM, Fleet};
use crate::reconcile::{Cx, Error, Outcome, Requeue};

/// Field manager of the Fleet controller's member writes.
pub const FIELD_MANAGER: &str = "azlin-operator/fleet";

/// Performs `step`.
pub async fn apply(
    _fleet: &Fleet,
    cx: &Cx<'_>,
    _seen: &Observed,
    step: Step,
    out: &mut Outcome<Fleet>,
) -> Result<(), Error> {
    let Step::Members(writes) = step;
    let api: Api<AzlinVM> = Api::namespaced(cx.ctx.client.clone(), &cx.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applies = writes.apply.iter().map(|vm| {
        let (api, params) = (&api, &params);
        async move {
            let name = vm.metadata.name.clone().unwrap_or_default();
            api.patch(&name, params, &Patch::Apply(vm))
                .await
                .map(|_| ())
        }
    });
    let deletes = writes.delete.iter().map(|name| {
        let api = &api;
        async move {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                // Gone already: what we wanted.
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
    });
    try_join_all(applies).await?;
    try_join_all(deletes).await?;
    // The members' own changes trigger the next reconcile; look again soon regardless.
    out.requeue = Requeue::Progress;
    Ok(())
}
