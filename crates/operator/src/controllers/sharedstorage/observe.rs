//! What a SharedStorage reconcile reads: its users (from the shared caches), the storage
//! account, the share (with usage) and — while the account is missing or being set up —
//! the resource group and managed subnet.

use azlin_arm::storage::{FileShare, StorageAccount};
use kube::ResourceExt;

use super::status::Users;
use crate::api::sharedstorage::SharedStorage;
use crate::infra::inventory::StorageAccounts;
use crate::infra::naming;
use crate::infra::network::{self, Site};
use crate::reconcile::caches::valid_in;
use crate::reconcile::ownership::Owner;
use crate::reconcile::{Cx, Error};

/// Kind name (controller, metrics, events).
pub const KIND: &str = "SharedStorage";

/// Names and identity of one SharedStorage's Azure resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Share name (the object's name).
    pub share: String,
    /// Storage account name (deterministic).
    pub account: String,
    /// Resource group and region.
    pub site: Site,
    /// Owner tags.
    pub owner: Owner,
    /// Id of the managed subnet the account allows.
    pub subnet_id: String,
    /// Id of the managed NSG.
    pub nsg_id: String,
}

/// What a reconcile found.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Names and identity.
    pub target: Target,
    /// The AzlinVMs and Fleets of the namespace using the storage.
    pub users: Users,
    /// What keeps the storage from being deleted (see [`super::status::holders`]); read
    /// only while it is deleted.
    pub holders: Vec<String>,
    /// The storage account, when it exists.
    pub account: Option<StorageAccount>,
    /// The share (with `shareUsageBytes`), when it exists.
    pub share: Option<FileShare>,
    /// The resource group and managed network (read when creating or deleting nothing).
    pub site: Option<network::Observed>,
}

/// The users of `storage` from the shared caches.
pub fn users(cx: &Cx<'_>, storage: &SharedStorage) -> Users {
    let vms = valid_in(&cx.ctx.caches.vms, &cx.namespace);
    let fleets = valid_in(&cx.ctx.caches.fleets, &cx.namespace);
    Users::of(
        &storage.name_any(),
        vms.iter().map(AsRef::as_ref),
        fleets.iter().map(AsRef::as_ref),
    )
}

/// Reads the storage's Azure side.
pub async fn observe(storage: &SharedStorage, cx: &Cx<'_>) -> Result<Observed, Error> {
    let deleting = cx.deleting;
    let (arm, identity) = cx.arm_and_identity()?;
    let name = storage.name_any();
    let site = Site::new(&storage.spec.resource_group, &storage.spec.location);
    let target = Target {
        account: naming::storage_account_name(
            arm.subscription_id(),
            &site.resource_group,
            &cx.namespace,
            &name,
        ),
        owner: Owner {
            kind: KIND.to_string(),
            namespace: cx.namespace.clone(),
            name: name.clone(),
            uid: storage.uid().unwrap_or_default(),
            identity: Some(identity.identity),
        },
        subnet_id: site.subnet_id(&arm),
        nsg_id: site.nsg_id(&arm),
        share: name,
        site,
    };
    let users = users(cx, storage);
    let holders = if deleting {
        let vms = valid_in(&cx.ctx.caches.vms, &cx.namespace);
        let fleets = valid_in(&cx.ctx.caches.fleets, &cx.namespace);
        super::status::holders(
            &target.share,
            &cx.namespace,
            vms.iter().map(AsRef::as_ref),
            fleets.iter().map(AsRef::as_ref),
        )
    } else {
        Vec::new()
    };
    if !holders.is_empty() {
        // Deletion is blocked by its holders: nothing in Azure matters until they are gone.
        return Ok(Observed {
            users,
            holders,
            target,
            account: None,
            share: None,
            site: None,
        });
    }
    let account = cx
        .list::<StorageAccounts>(&arm, &target.site.resource_group)
        .await?
        .get(&target.account)
        .cloned();
    let share = match &account {
        Some(_) => {
            arm.storage()
                .file_shares(&target.site.resource_group, &target.account)
                .get_query(&target.share, &[("$expand", "stats")])
                .await?
        }
        None => None,
    };
    // The network matters only while the storage is kept.
    let site = if deleting {
        None
    } else {
        Some(network::observe(cx, &arm, &target.site).await?)
    };
    Ok(Observed {
        users,
        holders,
        target,
        account,
        share,
        site,
    })
}
