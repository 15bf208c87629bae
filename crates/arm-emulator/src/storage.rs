//! `Microsoft.Storage`: storage accounts and Azure Files shares (with the NFS 4.1 rules).

use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};

use super::error::ArmError;
use super::kinds::{Hooks, Kind, Provisioning, PutCtx, SHARE_API, STORAGE_API};
use super::network::SUBNET;
use super::state::{Entry, Store, props_mut};
use super::validation::{
    self as v, opt_array, opt_bool, opt_enum, opt_int, opt_str, req_str, same,
};

/// Storage accounts.
pub static STORAGE_ACCOUNT: Kind = Kind {
    type_name: "Microsoft.Storage/storageAccounts",
    api_versions: STORAGE_API,
    provisioning: Provisioning::AcceptedOnCreate,
    located: true,
    parent_strip: 0,
    actions: &["listKeys"],
    views: &[],
    put_accepted: false,
    sync_delete: true,
    hooks: &AccountHooks,
};

/// File shares (`.../fileServices/default/shares/{name}`).
pub static FILE_SHARE: Kind = Kind {
    type_name: "Microsoft.Storage/storageAccounts/fileServices/shares",
    api_versions: SHARE_API,
    provisioning: Provisioning::Untracked,
    located: false,
    parent_strip: 4,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: true,
    hooks: &ShareHooks,
};

const SKUS: &[&str] = &[
    "Standard_LRS",
    "Standard_GRS",
    "Standard_RAGRS",
    "Standard_ZRS",
    "Premium_LRS",
    "Premium_ZRS",
    "Standard_GZRS",
    "Standard_RAGZRS",
];

fn sub_of(id: &str) -> &str {
    id.split('/').nth(2).unwrap_or_default()
}

/// `POST /subscriptions/{sub}/providers/Microsoft.Storage/checkNameAvailability`:
/// `{nameAvailable, reason?, message?}` for `{"name", "type": "Microsoft.Storage/storageAccounts"}`.
pub fn check_name_availability(store: &Store, _sub: &str, body: &Value) -> Result<Value, ArmError> {
    let name = req_str(body, "/name", "name")?;
    let kind = req_str(body, "/type", "type")?;
    if !same(kind, STORAGE_ACCOUNT.type_name) {
        return Err(ArmError::invalid(
            "type",
            format!("The type '{kind}' is not supported: use 'Microsoft.Storage/storageAccounts'."),
        ));
    }
    if let Err(e) = v::check_storage_account_name(name) {
        return Ok(
            json!({ "nameAvailable": false, "reason": "AccountNameInvalid", "message": e.message }),
        );
    }
    if store
        .of_kind(STORAGE_ACCOUNT.type_name)
        .any(|e| e.str_at("/name") == Some(name))
    {
        return Ok(json!({
            "nameAvailable": false,
            "reason": "AlreadyExists",
            "message": format!("The storage account named {name} is already taken."),
        }));
    }
    Ok(json!({ "nameAvailable": true }))
}

/// The two access keys of an account (stable per account, as Azure keeps them until regenerated).
fn account_keys(entry: &Entry) -> Value {
    let created = entry
        .str_at("/properties/creationTime")
        .unwrap_or_default()
        .to_string();
    let key = |n: &str| {
        let digest = <sha2::Sha512 as sha2::Digest>::digest(
            format!("{}|{created}|{n}", entry.id.to_ascii_lowercase()).as_bytes(),
        );
        base64::engine::general_purpose::STANDARD.encode(digest)
    };
    json!({ "keys": [
        { "keyName": "key1", "value": key("key1"), "permissions": "FULL", "creationTime": created },
        { "keyName": "key2", "value": key("key2"), "permissions": "FULL", "creationTime": created },
    ]})
}

/// Storage accounts: global name uniqueness, kind/sku rules, network rules needing the
/// `Microsoft.Storage` service endpoint on referenced subnets.
pub struct AccountHooks;

impl Hooks for AccountHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_storage_account_name(ctx.name)?;
        if let Some(other) = ctx
            .store
            .of_kind(STORAGE_ACCOUNT.type_name)
            .find(|e| e.str_at("/name") == Some(ctx.name) && !same(&e.id, ctx.id))
        {
            let same_subscription = same(sub_of(&other.id), sub_of(ctx.id));
            return Err(if same_subscription {
                ArmError::conflict(
                    "StorageAccountInAnotherResourceGroup",
                    format!(
                        "The account {} is already in another resource group in this subscription.",
                        ctx.name
                    ),
                )
            } else {
                ArmError::conflict(
                    "StorageAccountAlreadyTaken",
                    format!("The storage account named {} is already taken.", ctx.name),
                )
            });
        }
        let sku = v::req_enum(&ctx.body, "/sku/name", "sku.name", SKUS)?;
        let kind = v::req_enum(
            &ctx.body,
            "/kind",
            "kind",
            &[
                "Storage",
                "StorageV2",
                "BlobStorage",
                "FileStorage",
                "BlockBlobStorage",
            ],
        )?;
        let premium = sku.starts_with("Premium");
        if matches!(kind, "FileStorage" | "BlockBlobStorage") && !premium {
            return Err(ArmError::invalid(
                "sku.name",
                format!(
                    "Storage account kind '{kind}' requires a Premium sku (Premium_LRS or Premium_ZRS)."
                ),
            ));
        }
        if let Some(old) = &ctx.existing {
            if old.str_at("/kind").is_some_and(|k| !same(k, kind)) {
                return Err(ArmError::conflict(
                    "PropertyChangeNotAllowed",
                    "Changing property 'kind' is not allowed.",
                )
                .with_target("kind"));
            }
            let was_premium = old
                .str_at("/sku/name")
                .is_some_and(|s| s.starts_with("Premium"));
            if was_premium != premium {
                return Err(ArmError::invalid(
                    "sku.name",
                    "The performance tier (Standard/Premium) of a storage account cannot be changed.",
                ));
            }
        }
        let https_only = opt_bool(
            &ctx.body,
            "/properties/supportsHttpsTrafficOnly",
            "supportsHttpsTrafficOnly",
        )?
        .unwrap_or(true);
        opt_enum(
            &ctx.body,
            "/properties/minimumTlsVersion",
            "minimumTlsVersion",
            &["TLS1_0", "TLS1_1", "TLS1_2"],
        )?;
        opt_enum(
            &ctx.body,
            "/properties/accessTier",
            "accessTier",
            &["Hot", "Cool", "Cold", "Premium"],
        )?;
        opt_enum(
            &ctx.body,
            "/properties/publicNetworkAccess",
            "publicNetworkAccess",
            &["Enabled", "Disabled", "SecuredByPerimeter"],
        )?;
        if ctx
            .body
            .pointer("/properties/networkAcls")
            .is_some_and(|a| !a.is_null())
        {
            v::req_enum(
                &ctx.body,
                "/properties/networkAcls/defaultAction",
                "networkAcls.defaultAction",
                &["Allow", "Deny"],
            )?;
            for (i, rule) in opt_array(
                &ctx.body,
                "/properties/networkAcls/virtualNetworkRules",
                "networkAcls.virtualNetworkRules",
            )?
            .iter()
            .enumerate()
            {
                let subnet_id = req_str(
                    rule,
                    "/id",
                    &format!("networkAcls.virtualNetworkRules[{i}].id"),
                )?;
                opt_enum(
                    rule,
                    "/action",
                    &format!("networkAcls.virtualNetworkRules[{i}].action"),
                    &["Allow"],
                )?;
                let subnet = ctx
                    .store
                    .get(subnet_id)
                    .filter(|e| same(&e.kind, SUBNET.type_name));
                let has_endpoint = subnet.is_some_and(|s| {
                    s.body
                        .pointer("/properties/serviceEndpoints")
                        .and_then(Value::as_array)
                        .is_some_and(|eps| {
                            eps.iter().any(|e| {
                                e.get("service").and_then(Value::as_str).is_some_and(|s| {
                                    same(s, "Microsoft.Storage")
                                        || same(s, "Microsoft.Storage.Global")
                                })
                            })
                        })
                });
                if !has_endpoint {
                    return Err(ArmError::bad_request(
                        "NetworkAclsValidationFailure",
                        format!(
                            "Validation of network acls failure: SubnetsHaveNoServiceEndpointsConfigured:Subnets {subnet_id} do not have ServiceEndpoints for Microsoft.Storage resources configured. Add Microsoft.Storage to subnet's ServiceEndpoints collection before trying again."
                        ),
                    )
                    .with_target(&format!("networkAcls.virtualNetworkRules[{i}].id")));
                }
            }
        }
        let name = ctx.name.to_string();
        let location = ctx.location();
        let created = ctx
            .existing
            .as_ref()
            .and_then(|e| e.body.pointer("/properties/creationTime").cloned())
            .unwrap_or_else(|| Value::from(Utc::now().to_rfc3339()));
        ctx.body["sku"] =
            json!({ "name": sku, "tier": if premium { "Premium" } else { "Standard" } });
        ctx.body["kind"] = Value::from(kind);
        let props = props_mut(&mut ctx.body);
        props.insert("supportsHttpsTrafficOnly".into(), Value::Bool(https_only));
        props.insert("creationTime".into(), created);
        props.insert("primaryLocation".into(), Value::from(location));
        props.insert("statusOfPrimary".into(), Value::from("available"));
        props.insert(
            "primaryEndpoints".into(),
            json!({
                "blob": format!("https://{name}.blob.core.windows.net/"),
                "file": format!("https://{name}.file.core.windows.net/"),
                "queue": format!("https://{name}.queue.core.windows.net/"),
                "table": format!("https://{name}.table.core.windows.net/"),
            }),
        );
        if kind == "StorageV2" && !props.contains_key("accessTier") {
            props.insert("accessTier".into(), Value::from("Hot"));
        }
        Ok(())
    }

    fn sync_action(
        &self,
        _store: &Store,
        entry: &Entry,
        name: &str,
    ) -> Option<Result<Value, ArmError>> {
        (name == "listKeys").then(|| Ok(account_keys(entry)))
    }
}

/// File shares: NFS needs a Premium FileStorage account with https-only off; quotas; immutable protocol.
pub struct ShareHooks;

impl Hooks for ShareHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_share_name(ctx.name)?;
        let Some(account) = ctx.parent.clone() else {
            return Err(ArmError::not_found(
                "ParentResourceNotFound",
                "Parent storage account not found.",
            ));
        };
        let premium = account
            .str_at("/sku/name")
            .is_some_and(|s| s.starts_with("Premium"));
        let file_storage = account
            .str_at("/kind")
            .is_some_and(|k| same(k, "FileStorage"));
        let requested = opt_enum(
            &ctx.body,
            "/properties/enabledProtocols",
            "enabledProtocols",
            &["SMB", "NFS"],
        )?;
        let previous = ctx
            .existing
            .as_ref()
            .and_then(|e| e.str_at("/properties/enabledProtocols"))
            .map(str::to_string);
        if let (Some(old), Some(new)) = (&previous, requested)
            && !same(old, new)
        {
            return Err(ArmError::invalid(
                "enabledProtocols",
                "The enabledProtocols property of a share can only be set at creation.",
            ));
        }
        let protocol = requested
            .map(str::to_string)
            .or(previous)
            .unwrap_or_else(|| "SMB".to_string());
        let nfs = protocol == "NFS";
        if nfs && !(premium && file_storage) {
            return Err(ArmError::bad_request(
                "FeatureNotSupportedForAccount",
                "NFS 4.1 shares are supported only on FileStorage accounts with Premium performance (Premium_LRS or Premium_ZRS).",
            )
            .with_target("enabledProtocols"));
        }
        if nfs
            && account
                .body
                .pointer("/properties/supportsHttpsTrafficOnly")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        {
            return Err(ArmError::invalid(
                "enabledProtocols",
                "NFS shares require the storage account to have supportsHttpsTrafficOnly set to false (secure transfer is not supported by NFS).",
            ));
        }
        let squash = opt_enum(
            &ctx.body,
            "/properties/rootSquash",
            "rootSquash",
            &["NoRootSquash", "RootSquash", "AllSquash"],
        )?;
        if squash.is_some() && !nfs {
            return Err(ArmError::invalid(
                "rootSquash",
                "rootSquash can only be set on NFS shares.",
            ));
        }
        let quota = opt_int(&ctx.body, "/properties/shareQuota", "shareQuota")?;
        let min = if premium { 100 } else { 1 };
        if let Some(q) = quota
            && !(min..=102_400).contains(&q)
        {
            return Err(ArmError::invalid(
                "shareQuota",
                format!(
                    "The share quota {q} GiB is out of range: it must be between {min} and 102400 GiB for this account."
                ),
            ));
        }
        let quota = quota
            .or_else(|| {
                ctx.existing
                    .as_ref()
                    .and_then(|e| e.i64_at("/properties/shareQuota"))
            })
            .unwrap_or(if premium { 100 } else { 5120 });
        let squash = squash.map(str::to_string).or_else(|| {
            ctx.existing
                .as_ref()
                .and_then(|e| e.str_at("/properties/rootSquash").map(str::to_string))
        });
        let tier = opt_str(&ctx.body, "/properties/accessTier")
            .map(str::to_string)
            .unwrap_or_else(|| {
                if premium {
                    "Premium".into()
                } else {
                    "TransactionOptimized".into()
                }
            });
        ctx.body["etag"] = Value::from(format!(
            "\"0x8DC{}\"",
            &uuid::Uuid::new_v4().simple().to_string()[..12].to_ascii_uppercase()
        ));
        let props = props_mut(&mut ctx.body);
        props.insert("enabledProtocols".into(), Value::from(protocol));
        props.insert("shareQuota".into(), Value::from(quota));
        props.insert("accessTier".into(), Value::from(tier));
        props.insert(
            "lastModifiedTime".into(),
            Value::from(Utc::now().to_rfc3339()),
        );
        if nfs {
            props.insert(
                "rootSquash".into(),
                Value::from(squash.unwrap_or_else(|| "NoRootSquash".into())),
            );
        }
        Ok(())
    }
}
