//! The writes of the SharedStorage controller: one per reconcile, started and not awaited.

use azlin_arm::ArmError;
use serde_json::json;

use super::observe::Observed;
use super::plan::Step;
use crate::api::sharedstorage::SharedStorage;
use crate::infra::{network, ok_if_gone, requeue_after};
use crate::reconcile::{Cx, Error, Outcome};

/// ARM codes of an account name that is taken: by another subscription, or by another
/// resource group of this one.
const NAME_TAKEN: &[&str] = &[
    "StorageAccountAlreadyTaken",
    "StorageAccountInAnotherResourceGroup",
];

/// A taken account name needs a change (someone else owns it); ARM's code is kept.
pub fn account_error(e: ArmError, account: &str, managed_subnet: &str) -> Error {
    // The managed subnet refused while it is being deleted or re-created (the janitor
    // removed an unused network a moment before this storage needed it): look again.
    if e.code() == Some("NetworkAclsValidationFailure")
        && e.message()
            .to_ascii_lowercase()
            .contains(&managed_subnet.to_ascii_lowercase())
    {
        return Error::DependencyNotReady {
            what: format!("the managed subnet {managed_subnet}: {}", e.message()),
        };
    }
    if let Some(code) = e.code().filter(|c| NAME_TAKEN.contains(c)) {
        return Error::NotManaged {
            message: format!(
                "{code}: {} The operator derives the name {account} from the subscription, resource group, namespace and name; use another resource group or object name",
                e.message()
            ),
        };
    }
    Error::Arm(e)
}

/// Performs `step`.
pub async fn apply(
    _storage: &SharedStorage,
    cx: &Cx<'_>,
    seen: &Observed,
    step: Step,
    out: &mut Outcome<SharedStorage>,
) -> Result<(), Error> {
    let arm = cx.arm()?;
    let t = &seen.target;
    let rg = &t.site.resource_group;
    let accounts = arm.storage().accounts(rg);
    let shares = arm.storage().file_shares(rg, &t.account);
    let poller = match step {
        Step::Infra(s) => network::apply(cx, &arm, &t.site, &s).await?,
        Step::CreateAccount(body) | Step::UpdateAccount(body) => Some(
            accounts
                .begin_create_or_update(&t.account, &body)
                .await
                .map_err(|e| account_error(e, &t.account, &t.subnet_id))?,
        ),
        Step::CreateShare(body) => Some(shares.begin_create_or_update(&t.share, &body).await?),
        Step::UpdateShare(update) => {
            Some(shares.begin_update(&t.share, &update.patch_body()).await?)
        }
        Step::TagAccount(tags) => Some(
            accounts
                .begin_update(&t.account, &json!({ "tags": tags }))
                .await?,
        ),
        Step::DeleteShare => ok_if_gone(shares.begin_delete(&t.share).await)?,
        Step::DeleteAccount => ok_if_gone(accounts.begin_delete(&t.account).await)?,
    };
    out.requeue = requeue_after(&arm, poller.as_ref(), cx.ctx.settings.progress_requeue);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_account_name_needs_a_change_and_keeps_the_arm_code() {
        let e = account_error(
            ArmError::Conflict {
                code: "StorageAccountAlreadyTaken".into(),
                message: "The storage account named x is already taken.".into(),
            },
            "x",
            SUBNET,
        );
        assert!(e.needs_change());
        assert!(e.message().contains("StorageAccountAlreadyTaken"));
        let other = account_error(
            ArmError::Conflict {
                code: "AnotherOperationInProgress".into(),
                message: "busy".into(),
            },
            "x",
            SUBNET,
        );
        assert!(!other.needs_change());
    }

    const SUBNET: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/azlin-westus2-vnet/subnets/default";

    #[test]
    fn a_refused_managed_subnet_is_waited_for_and_a_users_subnet_needs_a_change() {
        let refused = |subnet: &str| ArmError::InvalidRequest {
            status: 400,
            code: "NetworkAclsValidationFailure".into(),
            message: format!(
                "Subnets {subnet} do not have ServiceEndpoints for Microsoft.Storage resources configured."
            ),
            target: None,
        };
        assert!(!account_error(refused(SUBNET), "x", SUBNET).needs_change());
        let users = "/subscriptions/s/resourceGroups/other/providers/Microsoft.Network/virtualNetworks/v/subnets/s";
        assert!(account_error(refused(users), "x", SUBNET).needs_change());
    }
}
