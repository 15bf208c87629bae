//! Discovery endpoints clients call before (or instead of) resource operations:
//! `GET /subscriptions[/{id}]`, `GET /tenants`, `GET /metadata/endpoints` (cloud registration),
//! and a managed-identity token endpoint so `az login --identity` works offline.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::context::Shared;

/// The tenant every emulated subscription belongs to.
pub const TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000a21c";
/// The subscription listed when nothing else is known.
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000a21c";
/// Object id of the principal in tokens minted by the identity endpoint.
pub const IDENTITY_OBJECT_ID: &str = "0b1c2d3e-0000-4000-8000-00000000a21c";

/// The configured subscription plus every subscription that holds resources.
pub fn known_subscriptions(shared: &Shared) -> Vec<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = vec![shared.settings.subscription.clone()];
    seen.insert(shared.settings.subscription.to_ascii_lowercase());
    let store = shared.store();
    for entry in store.resources.values() {
        if let Some(sub) = entry.id.split('/').nth(2)
            && seen.insert(sub.to_ascii_lowercase())
        {
            out.push(sub.to_string());
        }
    }
    out
}

/// A `Subscription` as `GET /subscriptions/{id}` answers it.
pub fn subscription_body(sub: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{sub}"),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub,
        "tenantId": TENANT_ID,
        "displayName": "azlin emulator",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off"
        }
    })
}

/// A `TenantIdDescription` as `GET /tenants` lists it.
pub fn tenant_body() -> Value {
    json!({
        "id": format!("/tenants/{TENANT_ID}"),
        "tenantId": TENANT_ID,
        "tenantCategory": "Home",
        "displayName": "azlin emulator",
        "defaultDomain": "azlin-emulator.onmicrosoft.com",
        "tenantType": "AAD",
        "countryCode": "US",
        "domains": ["azlin-emulator.onmicrosoft.com"]
    })
}

/// The cloud metadata (`GET /metadata/endpoints`) naming `base` as the resource manager.
/// api-version 2022-09-01 and 2015-01-01 answer one cloud; 2019-05-01 and 2020-06-01 a list.
pub fn cloud_metadata(base: &str, api_version: Option<&str>) -> Value {
    let cloud = json!({
        "name": "AzlinEmulator",
        "portal": "https://portal.azure.com",
        "resourceManager": format!("{base}/"),
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com/",
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD"
        },
        "media": "https://rest.media.azure.net",
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "batch": "https://batch.core.windows.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "gallery": "https://gallery.azure.com/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/quickstart-templates/aliases.json",
        "suffixes": {
            "storage": "core.windows.net",
            "keyVaultDns": "vault.azure.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net"
        }
    });
    match api_version {
        Some("2019-05-01" | "2020-06-01") => Value::Array(vec![cloud]),
        _ => cloud,
    }
}

/// An unsigned JWT for the ARM audience (`tid`, `oid`, `appid`; valid for an hour), as the
/// managed-identity endpoint hands out. The emulator accepts any bearer token; clients such as
/// azure-cli decode the token (without verifying it) to learn the tenant.
pub fn mint_token(resource: &str, client_id: Option<&str>) -> (String, i64) {
    let now = chrono::Utc::now().timestamp();
    let expires = now + 3600;
    let app = client_id.unwrap_or("a21c0000-0000-4000-8000-00000000a21c");
    let header = json!({ "typ": "JWT", "alg": "RS256", "kid": "azlin-emulator" });
    let claims = json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
        "iat": now,
        "nbf": now,
        "exp": expires,
        "tid": TENANT_ID,
        "oid": IDENTITY_OBJECT_ID,
        "sub": IDENTITY_OBJECT_ID,
        "appid": app,
        "idtyp": "app",
    });
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.{}",
        part(&header),
        part(&claims),
        URL_SAFE_NO_PAD.encode(b"unsigned-emulator-token")
    );
    (token, expires)
}
