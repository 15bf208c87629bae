//! The writes of the AzlinVM controller: one per reconcile. Azure operations are started and
//! not awaited (the next reconcile observes their progress); the guest step runs the mount
//! script and records its results.

use azlin_arm::compute::PowerAction;
use azlin_arm::{ArmError, ResourceId};
use serde_json::json;

use super::build;
use super::mounts;
use super::observe::Observed;
use super::plan::{GuestWork, Step, env_hash};
use super::sshkey;
use super::status::mount_health;
use crate::api::AzlinVM;
use crate::api::conditions::Health;
use crate::infra::{network, ok_if_gone, requeue_after};
use crate::reconcile::events::Event;
use crate::reconcile::{Cx, Error, Outcome, PlanCx, Requeue};

/// Performs `step`.
pub async fn apply(
    vm: &AzlinVM,
    cx: &Cx<'_>,
    seen: &Observed,
    step: Step,
    out: &mut Outcome<AzlinVM>,
) -> Result<(), Error> {
    if let Step::CreateKey = step {
        sshkey::create_key(&cx.ctx.client, vm).await?;
        out.requeue = Requeue::Now;
        return Ok(());
    }
    if let Step::RetainKey = step {
        if let Some(name) = sshkey::retain_key(&cx.ctx.client, vm).await? {
            out.event(Event::normal(
                "KeyRetained",
                format!(
                    "kept Secret {name} with the admin SSH key of the retained VM {}: it is no longer owned by the AzlinVM and is labeled {}={}; delete it when the VM is gone",
                    seen.names.vm,
                    sshkey::RETAINED_FROM_LABEL,
                    seen.owner.name
                ),
            ));
        }
        return Ok(());
    }
    if let Step::Guest(work) = step {
        return guest(vm, cx, seen, *work, out).await;
    }
    let arm = cx.arm()?;
    let rg = &seen.site.resource_group;
    let names = &seen.names;
    let vms = arm.compute().virtual_machines(rg);
    let nics = arm.network().interfaces(rg);
    let pips = arm.network().public_ips(rg);
    let disks = arm.compute().disks(rg);
    let poller = match step {
        Step::CreateKey | Step::Guest(_) | Step::RetainKey => None,
        Step::Infra(s) => network::apply(cx, &arm, &seen.site, &s).await?,
        Step::PutPip(body) => Some(pips.begin_create_or_update(&names.pip, &body).await?),
        Step::DeletePip => {
            ensure_ours(
                "public IP",
                &names.pip,
                seen.pip.as_ref().map(|p| &p.tags),
                seen,
            )?;
            ok_if_gone(pips.begin_delete(&names.pip).await)?
        }
        Step::TagPip(tags) => Some(
            pips.begin_update(&names.pip, &json!({ "tags": tags }))
                .await?,
        ),
        Step::PutNic(body) => Some(
            nics.begin_create_or_update(&names.nic, &body)
                .await
                .map_err(|e| build::explain_subnet_full(e, vm.spec.network.is_none()))?,
        ),
        Step::UpdateNic { pip_id, tags } => {
            // Gone, or converged since it was observed: nothing to write.
            let body = nics
                .get(&names.nic)
                .await?
                .and_then(|full| build::nic_update(&full, pip_id.as_deref(), &tags));
            match body {
                Some(body) => Some(nics.begin_create_or_update(&names.nic, &body).await?),
                None => None,
            }
        }
        Step::DeleteNic => {
            ensure_ours(
                "network interface",
                &names.nic,
                seen.nic.as_ref().map(|n| &n.tags),
                seen,
            )?;
            ok_if_gone(nics.begin_delete(&names.nic).await)?
        }
        Step::RestoreDisks(list) => {
            for d in &list {
                disks.begin_create_or_update(&d.name, &d.body).await?;
            }
            None
        }
        Step::CreateVm(body) => Some(vms.begin_create_or_update(&names.vm, &body).await?),
        Step::UpdateVm { tags, retry, .. } => {
            let Some(body) = vms
                .get(&names.vm)
                .await?
                .and_then(|full| build::vm_put_body(&full, &vm.spec, names, &tags, retry))
            else {
                // Gone, or converged since it was observed: the next reconcile sees which.
                return Ok(());
            };
            match vms.begin_create_or_update(&names.vm, &body).await {
                Ok(p) => Some(p),
                Err(e) if build::resize_needs_deallocation(e.code(), &e.message()) => {
                    // Azure resizes to this size only from a deallocated VM.
                    let p = vms.begin_power(&names.vm, PowerAction::Deallocate).await?;
                    out.events.retain(|e| e.reason != "Resized");
                    out.event(Event::normal(
                        "Deallocating",
                        format!(
                            "deallocating VM {} to resize it to {} (Azure requires it for this size)",
                            names.vm, vm.spec.size
                        ),
                    ));
                    out.health = Health::progressing(
                        "Resizing",
                        format!("deallocating to resize to {}", vm.spec.size),
                    );
                    Some(p)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Step::Power(action) => Some(vms.begin_power(&names.vm, action).await?),
        Step::GrowDisks(growth) => {
            for (name, size) in &growth {
                disks
                    .begin_update(name, &json!({ "properties": { "diskSizeGB": size } }))
                    .await?;
            }
            None
        }
        Step::DeleteVm => {
            ensure_ours("VM", &names.vm, seen.vm.as_ref().map(|v| &v.vm.tags), seen)?;
            ok_if_gone(vms.begin_delete(&names.vm).await)?
        }
        Step::DeleteDisks(list) => {
            for d in &list {
                ensure_ours("disk", d, seen.disks.get(d).map(|x| &x.tags), seen)?;
                ok_if_gone(disks.begin_delete(d).await)?;
            }
            None
        }
        Step::Release(targets) | Step::TagDisks(targets) => {
            for t in &targets {
                let id = ResourceId::parse(&t.id).map_err(|e| {
                    Error::Arm(ArmError::Protocol(format!("resource id {}: {e}", t.id)))
                })?;
                let version = azlin_arm::client::api_version_of(&id)?;
                ok_if_gone(
                    arm.begin_patch_json(&id.to_string(), version, &json!({ "tags": t.tags }))
                        .await,
                )?;
            }
            None
        }
    };
    if out.requeue != Requeue::Backoff {
        out.requeue = requeue_after(&arm, poller.as_ref(), cx.ctx.settings.progress_requeue);
    }
    Ok(())
}

/// The last check before a DELETE: the resource as observed carries this object's ownership
/// tags (a resource not observed is not deleted either).
fn ensure_ours(
    what: &str,
    name: &str,
    tags: Option<&std::collections::BTreeMap<String, String>>,
    seen: &Observed,
) -> Result<(), Error> {
    use crate::reconcile::ownership::{Ownership, is_managed, ownership};
    let reason = match tags {
        None => "it was not observed".to_string(),
        Some(t) if !is_managed(t) => format!(
            "it has no tag managed-by={}",
            crate::reconcile::ownership::MANAGED_BY
        ),
        Some(t) => match ownership(t, &seen.owner) {
            Ownership::Foreign { reason } => reason,
            Ownership::Owned | Ownership::Adopt => return Ok(()),
        },
    };
    Err(Error::NotManaged {
        message: format!(
            "refusing to delete {what} {name}: {reason}; the operator deletes only resources carrying this object's ownership tags"
        ),
    })
}

/// Runs the mount script on the guest and records the results, the pinned host key and the
/// mounts' health.
async fn guest(
    _vm: &AzlinVM,
    cx: &Cx<'_>,
    seen: &Observed,
    work: GuestWork,
    out: &mut Outcome<AzlinVM>,
) -> Result<(), Error> {
    let result = cx.ctx.guest.apply_mounts(&work.vm, &work.plan).await?;
    let trust = &work.trust;
    if let Some(pin) = trust.to_record(&result.host_key_fingerprint) {
        sshkey::record_pin(&cx.ctx.client, &cx.namespace, trust, &pin).await?;
        let event = match (&trust.recorded, &trust.repin) {
            (Some(old), Some(request)) if old.vm_id == pin.vm_id => Event::warning(
                "HostKeyRepinned",
                format!(
                    "re-pinned the SSH host key as requested ({}={request}): {} replaces {} (in Secret {})",
                    sshkey::REPIN_ANNOTATION,
                    pin.fingerprint,
                    old.fingerprint,
                    trust.secret
                ),
            ),
            _ => Event::normal(
                "HostKeyPinned",
                format!(
                    "pinned SSH host key {} of VM {} (in Secret {})",
                    pin.fingerprint, pin.vm_id, trust.secret
                ),
            ),
        };
        out.events.push(event);
    }
    let st = &mut out.status;
    st.host_key_fingerprint = Some(result.host_key_fingerprint.clone());
    let previous = st.mounts.clone();
    st.mounts = mounts::statuses(&seen.mounts, Some(&result), &previous);
    if result.all_converged() && st.mounts != previous {
        let list = st
            .mounts
            .iter()
            .map(|m| format!("{} at {}", m.storage_ref, m.path))
            .collect::<Vec<_>>()
            .join(", ");
        out.events.push(Event::normal(
            "Mounted",
            format!("mounts converged: {list}"),
        ));
    }
    let plan_cx = PlanCx {
        now: cx.now,
        settings: &cx.ctx.settings,
        deleting: false,
    };
    if let Some((health, requeue)) = mount_health(&out.status.mounts, &plan_cx) {
        out.health = health;
        out.requeue = requeue;
    }
    match &result.env {
        Ok(_) => {
            let hash = env_hash(seen.env.as_deref());
            if hash.is_some() && out.status.fleet_env_hash != hash {
                out.events.push(Event::normal(
                    "FleetEnvWritten",
                    format!(
                        "wrote the Fleet environment (version {}) to {}",
                        hash.as_deref().unwrap_or_default(),
                        crate::ssh::nfs::ENV_FILE
                    ),
                ));
            }
            out.status.fleet_env_hash = hash;
        }
        Err(why) if out.health.is_ready() => {
            out.health = Health::progressing(
                "FleetEnvFailed",
                format!("writing {} failed: {why}", crate::ssh::nfs::ENV_FILE),
            );
            out.requeue = Requeue::Backoff;
        }
        Err(_) => {}
    }
    Ok(())
}
