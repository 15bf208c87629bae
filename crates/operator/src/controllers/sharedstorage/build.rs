//! Pure desired state of a SharedStorage: the storage account and NFS share bodies ARM
//! needs, the comparison with what Azure reports, and the mount layout VMs use.
//!
//! Nothing here does I/O; the reconciler GETs, asks these functions what differs and writes
//! only that.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::sharedstorage::{RootSquash, SharedStorage, StorageTemplate};
use crate::reconcile::ownership::TAG_RELEASED;
use azlin_arm::storage::{self as arm, FileShare, StorageAccount};

/// SKU of every account: NFS 4.1 needs Premium; LRS is the cheapest Premium redundancy.
pub const ACCOUNT_SKU: &str = "Premium_LRS";
/// Account kind serving Premium file shares.
pub const ACCOUNT_KIND: &str = "FileStorage";
/// One GiB in bytes.
pub const GIB: u64 = 1 << 30;

/// The ARM root squash value of a spec's root squash.
pub fn arm_root_squash(squash: RootSquash) -> arm::RootSquash {
    match squash {
        RootSquash::NoRootSquash => arm::RootSquash::NoRootSquash,
        RootSquash::RootSquash => arm::RootSquash::RootSquash,
        RootSquash::AllSquash => arm::RootSquash::AllSquash,
    }
}

/// The subnets allowed to reach the account: the operator-managed VM subnet first, then
/// `spec.allowedSubnets`, without duplicates (ARM ids compare case-insensitively).
pub fn allowed_subnets(managed_subnet_id: &str, extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(extra.len() + 1);
    for id in std::iter::once(managed_subnet_id).chain(extra.iter().map(String::as_str)) {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(id)) {
            out.push(id.to_string());
        }
    }
    out
}

/// The desired account: Premium `FileStorage`, HTTPS-only off (NFS has no TLS), network
/// default `Deny` with the `AzureServices` bypass and one allow rule per subnet in
/// `subnet_ids`, tagged with `tags`. `publicNetworkAccess` stays `Enabled` because service
/// endpoint rules only apply to the public endpoint; `Deny` keeps everything else out.
pub fn desired_account(
    location: &str,
    subnet_ids: &[String],
    tags: &BTreeMap<String, String>,
) -> StorageAccount {
    StorageAccount::nfs_file_storage(location, ACCOUNT_SKU, subnet_ids).with_tags(tags.clone())
}

/// Why an existing account cannot be brought to the desired state by an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountMismatch {
    /// The account kind is not `FileStorage` (ARM cannot change it).
    Kind(String),
    /// The SKU is not Premium (ARM cannot change the tier).
    Sku(String),
}

impl std::fmt::Display for AccountMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kind(k) => write!(
                f,
                "has kind {k:?} but NFS shares need kind {ACCOUNT_KIND:?}, which Azure cannot change on an existing account"
            ),
            Self::Sku(s) => write!(
                f,
                "has SKU {s:?} but NFS shares need a Premium SKU, and Azure cannot change the tier of an existing account"
            ),
        }
    }
}

/// Checks the properties ARM cannot update (kind and performance tier).
pub fn account_immutable_mismatch(actual: &StorageAccount) -> Option<AccountMismatch> {
    let kind = actual.kind.as_deref().unwrap_or_default();
    if !kind.eq_ignore_ascii_case(ACCOUNT_KIND) {
        return Some(AccountMismatch::Kind(kind.to_string()));
    }
    let sku = actual
        .sku
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or_default();
    if !sku.starts_with("Premium") {
        return Some(AccountMismatch::Sku(sku.to_string()));
    }
    None
}

/// The settings of `actual` that differ from `desired`, by name (empty when in sync).
/// Only what the operator owns is compared: HTTPS-only, public network access, the network
/// rules (default action, bypass, exactly the desired subnets) and the desired tags (other
/// tags are left alone).
pub fn account_drift(actual: &StorageAccount, desired: &StorageAccount) -> Vec<&'static str> {
    let mut drift = Vec::new();
    let (a, d) = (&actual.properties, &desired.properties);
    if a.supports_https_traffic_only.unwrap_or(true)
        != d.supports_https_traffic_only.unwrap_or(true)
    {
        drift.push("supportsHttpsTrafficOnly");
    }
    if !same_opt(&a.public_network_access, &d.public_network_access) {
        drift.push("publicNetworkAccess");
    }
    match (&a.network_acls, &d.network_acls) {
        (Some(a), Some(d)) => {
            if !a.default_action.eq_ignore_ascii_case(&d.default_action) {
                drift.push("networkAcls.defaultAction");
            }
            if !bypass_covers(a.bypass.as_deref(), d.bypass.as_deref()) {
                drift.push("networkAcls.bypass");
            }
            let ids = |rules: &[arm::VirtualNetworkRule]| -> Vec<String> {
                let mut v: Vec<String> = rules.iter().map(|r| r.id.to_ascii_lowercase()).collect();
                v.sort();
                v.dedup();
                v
            };
            if ids(&a.virtual_network_rules) != ids(&d.virtual_network_rules) {
                drift.push("networkAcls.virtualNetworkRules");
            }
        }
        (None, Some(_)) => drift.push("networkAcls"),
        _ => {}
    }
    if desired
        .tags
        .iter()
        .any(|(k, v)| actual.tags.get(k) != Some(v))
    {
        drift.push("tags");
    }
    drift
}

fn same_opt(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (_, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, Some(_)) => false,
    }
}

/// ARM reports `bypass` as a comma-separated list (`"Logging, Metrics, AzureServices"`).
fn bypass_covers(actual: Option<&str>, desired: Option<&str>) -> bool {
    let Some(desired) = desired else { return true };
    let have: Vec<&str> = actual
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    desired
        .split(',')
        .map(str::trim)
        .all(|d| have.iter().any(|h| h.eq_ignore_ascii_case(d)))
}

/// The body that updates `actual` to `desired`: the desired account with the tags that are
/// on Azure but not ours kept (a PUT replaces the tag set), except the released mark of a
/// retained account being adopted again.
pub fn account_update(actual: &StorageAccount, desired: &StorageAccount) -> StorageAccount {
    let mut body = desired.clone();
    for (k, v) in &actual.tags {
        if k != TAG_RELEASED {
            body.tags.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    body
}

/// The desired share: NFS, `quota_gib`, `root_squash`.
pub fn desired_share(quota_gib: u32, root_squash: RootSquash) -> FileShare {
    FileShare::nfs(quota_gib, arm_root_squash(root_squash))
}

/// The quota of a spec in GiB (the schema keeps it within 100..=102400).
pub fn spec_quota(size_gib: i32) -> u32 {
    u32::try_from(size_gib).unwrap_or(0)
}

/// Used bytes a share reports (`shareUsageBytes`, returned with `$expand=stats`).
pub fn share_usage_bytes(share: &FileShare) -> Option<u64> {
    share
        .properties
        .extra
        .get("shareUsageBytes")
        .and_then(Value::as_u64)
}

/// What to do with the share.
#[derive(Debug, Clone, PartialEq)]
pub enum SharePlan {
    /// The share does not exist: PUT this body.
    Create(Box<FileShare>),
    /// Quota and root squash match.
    InSync,
    /// PATCH quota and/or root squash.
    Update(ShareUpdate),
    /// The share is not an NFS share; ARM cannot change the protocol.
    NotNfs {
        /// The protocol Azure reports.
        protocol: String,
    },
    /// The new size is below what the share already holds; other changes still apply.
    ShrinkBelowUsage {
        /// Current quota in GiB.
        current_gib: u32,
        /// Requested quota in GiB.
        requested_gib: u32,
        /// Bytes in use.
        used_bytes: u64,
        /// The root squash change to apply anyway, if any.
        other: Option<ShareUpdate>,
    },
}

/// A share update: only the fields that differ are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareUpdate {
    /// New quota (GiB) with the old one.
    pub quota: Option<(u32, u32)>,
    /// New root squash with the old one, if Azure reported one.
    pub root_squash: Option<(Option<arm::RootSquash>, arm::RootSquash)>,
}

impl ShareUpdate {
    /// The PATCH body.
    pub fn patch_body(&self) -> Value {
        let mut props = serde_json::Map::new();
        if let Some((_, to)) = self.quota {
            props.insert("shareQuota".into(), json!(to));
        }
        if let Some((_, to)) = self.root_squash {
            props.insert("rootSquash".into(), json!(to));
        }
        json!({ "properties": props })
    }

    /// A short description for events, e.g. `quota 100 → 200 GiB, root squash NoRootSquash → RootSquash`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((from, to)) = self.quota {
            parts.push(format!("quota {from} → {to} GiB"));
        }
        if let Some((from, to)) = self.root_squash {
            let from = from.map_or_else(|| "unset".to_string(), |f| format!("{f:?}"));
            parts.push(format!("root squash {from} → {to:?}"));
        }
        parts.join(", ")
    }
}

/// Compares the share Azure reports with the desired quota and root squash. A shrink is
/// planned only when the share's reported usage fits in the new quota.
pub fn plan_share(actual: Option<&FileShare>, quota_gib: u32, squash: RootSquash) -> SharePlan {
    let Some(actual) = actual else {
        return SharePlan::Create(Box::new(desired_share(quota_gib, squash)));
    };
    let props = &actual.properties;
    if let Some(protocol) = &props.enabled_protocols
        && !protocol.eq_ignore_ascii_case("NFS")
    {
        return SharePlan::NotNfs {
            protocol: protocol.clone(),
        };
    }
    let desired_squash = arm_root_squash(squash);
    let mut update = ShareUpdate::default();
    if props.root_squash != Some(desired_squash) {
        update.root_squash = Some((props.root_squash, desired_squash));
    }
    match props.share_quota {
        Some(current) if current == quota_gib => {}
        current => {
            let current_gib = current.unwrap_or(0);
            if quota_gib < current_gib
                && let Some(used) = share_usage_bytes(actual)
                && used > u64::from(quota_gib) * GIB
            {
                return SharePlan::ShrinkBelowUsage {
                    current_gib,
                    requested_gib: quota_gib,
                    used_bytes: used,
                    other: (update != ShareUpdate::default()).then_some(update),
                };
            }
            update.quota = Some((current_gib, quota_gib));
        }
    }
    if update == ShareUpdate::default() {
        SharePlan::InSync
    } else {
        SharePlan::Update(update)
    }
}

/// Human-readable size, e.g. `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    // Display only: the precision loss of large values does not matter.
    let gib = bytes as f64 / GIB as f64;
    format!("{gib:.1} GiB")
}

/// Where VMs mount a SharedStorage and which directories it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLayout {
    /// Default mount path on a VM: the template's path, or `/mnt/<name>`.
    pub mount_path: String,
    /// Directories created on the share, relative to the mount path.
    pub shared_dirs: Vec<&'static str>,
    /// Directories created on each VM's own disk (absolute).
    pub local_dirs: Vec<&'static str>,
}

impl MountLayout {
    /// The absolute paths of the shared directories under `mount_path`.
    pub fn shared_paths(&self, mount_path: &str) -> Vec<String> {
        let base = mount_path.trim_end_matches('/');
        self.shared_dirs
            .iter()
            .map(|d| format!("{base}/{d}"))
            .collect()
    }
}

/// The default mount path of a storage named `name` with `template`: the template's path, or
/// `/mnt/<name>` without one (what an AzlinVM's `mounts[].path` defaults to).
pub fn default_mount_path(name: &str, template: Option<StorageTemplate>) -> String {
    template.map_or_else(|| format!("/mnt/{name}"), |t| t.mount_path().to_string())
}

/// The layout of a SharedStorage: default mount path plus the template's shared and local
/// directories. The VM side's mount script creates them (shared ones once, on the share).
pub fn mount_layout(storage: &SharedStorage) -> MountLayout {
    let name = storage.metadata.name.as_deref().unwrap_or_default();
    let template = storage.spec.template;
    let dirs = template.map(StorageTemplate::layout).unwrap_or_default();
    MountLayout {
        mount_path: default_mount_path(name, template),
        shared_dirs: dirs.iter().filter(|d| d.shared).map(|d| d.path).collect(),
        local_dirs: dirs.iter().filter(|d| !d.shared).map(|d| d.path).collect(),
    }
}

/// The README's storage template table: template, default mount path, directories on the
/// share, directories on each VM's own disk.
pub fn templates_markdown() -> String {
    let mut out = String::from(
        "| template | default mount path | on the share | on each VM's own disk |\n|---|---|---|---|\n",
    );
    for t in StorageTemplate::ALL {
        let list = |shared: bool, fmt: &dyn Fn(&str) -> String| {
            let items: Vec<String> = t
                .layout()
                .iter()
                .filter(|d| d.shared == shared)
                .map(|d| fmt(d.path))
                .collect();
            if items.is_empty() {
                "—".to_string()
            } else {
                items.join(", ")
            }
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            t.as_str(),
            t.mount_path(),
            list(true, &|p| format!("`{p}/`")),
            list(false, &|p| format!("`{p}`")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sharedstorage::SharedStorageSpec;
    use azlin_arm::models::Sku;

    const SUBNET: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/azlin-westus2-vnet/subnets/default";
    const OTHER: &str =
        "/subscriptions/s/resourceGroups/x/providers/Microsoft.Network/virtualNetworks/v/subnets/a";

    fn tags() -> BTreeMap<String, String> {
        BTreeMap::from([("managed-by".to_string(), "azlin-operator".to_string())])
    }

    fn account() -> StorageAccount {
        desired_account(
            "westus2",
            &allowed_subnets(SUBNET, &[OTHER.to_string()]),
            &tags(),
        )
    }

    /// What ARM answers on GET for an account created from `account()`.
    fn as_reported(mut a: StorageAccount) -> StorageAccount {
        a.sku = Some(Sku {
            name: "Premium_LRS".into(),
            tier: Some("Premium".into()),
        });
        if let Some(acls) = a.properties.network_acls.as_mut() {
            acls.bypass = Some("Logging, Metrics, AzureServices".into());
            for r in &mut acls.virtual_network_rules {
                r.id = r.id.to_ascii_lowercase();
                r.state = Some("Succeeded".into());
            }
            acls.virtual_network_rules.reverse();
        }
        a.tags.insert("owner".into(), "someone".into());
        a
    }

    #[test]
    fn account_body_has_the_nfs_requirements() {
        let v = serde_json::to_value(account()).expect("ser");
        assert_eq!(v["kind"], json!("FileStorage"));
        assert_eq!(v["sku"]["name"], json!("Premium_LRS"));
        assert_eq!(v["location"], json!("westus2"));
        assert_eq!(v["properties"]["supportsHttpsTrafficOnly"], json!(false));
        let acls = &v["properties"]["networkAcls"];
        assert_eq!(acls["defaultAction"], json!("Deny"));
        assert_eq!(acls["bypass"], json!("AzureServices"));
        assert_eq!(
            acls["virtualNetworkRules"],
            json!([{"id": SUBNET, "action": "Allow"}, {"id": OTHER, "action": "Allow"}])
        );
        assert_eq!(v["tags"]["managed-by"], json!("azlin-operator"));
    }

    #[test]
    fn allowed_subnets_dedupes_case_insensitively_and_keeps_managed_first() {
        let got = allowed_subnets(
            SUBNET,
            &[
                OTHER.to_string(),
                SUBNET.to_ascii_uppercase(),
                OTHER.to_string(),
            ],
        );
        assert_eq!(got, vec![SUBNET.to_string(), OTHER.to_string()]);
    }

    #[test]
    fn account_as_reported_by_arm_is_in_sync() {
        assert!(account_drift(&as_reported(account()), &account()).is_empty());
        assert_eq!(account_immutable_mismatch(&as_reported(account())), None);
    }

    #[test]
    fn account_drift_names_each_difference() {
        let mut a = as_reported(account());
        a.properties.supports_https_traffic_only = Some(true);
        a.properties.public_network_access = Some("Disabled".into());
        let acls = a.properties.network_acls.as_mut().expect("acls");
        acls.default_action = "Allow".into();
        acls.bypass = Some("None".into());
        acls.virtual_network_rules.pop();
        a.tags.remove("managed-by");
        assert_eq!(
            account_drift(&a, &account()),
            vec![
                "supportsHttpsTrafficOnly",
                "publicNetworkAccess",
                "networkAcls.defaultAction",
                "networkAcls.bypass",
                "networkAcls.virtualNetworkRules",
                "tags"
            ]
        );
        let mut none = as_reported(account());
        none.properties.network_acls = None;
        none.properties.supports_https_traffic_only = None;
        assert_eq!(
            account_drift(&none, &account()),
            vec!["supportsHttpsTrafficOnly", "networkAcls"]
        );
    }

    #[test]
    fn extra_subnet_rule_on_azure_is_drift() {
        let mut a = as_reported(account());
        if let Some(acls) = a.properties.network_acls.as_mut() {
            acls.virtual_network_rules.push(arm::VirtualNetworkRule {
                id: "/x".into(),
                action: Some("Allow".into()),
                state: None,
            });
        }
        assert_eq!(
            account_drift(&a, &account()),
            vec!["networkAcls.virtualNetworkRules"]
        );
    }

    #[test]
    fn update_keeps_foreign_tags_and_immutables_are_detected() {
        let actual = as_reported(account());
        let body = account_update(&actual, &account());
        assert_eq!(body.tags.get("owner").map(String::as_str), Some("someone"));
        assert_eq!(
            body.tags.get("managed-by").map(String::as_str),
            Some("azlin-operator")
        );
        let mut v2 = actual.clone();
        v2.kind = Some("StorageV2".into());
        assert_eq!(
            account_immutable_mismatch(&v2),
            Some(AccountMismatch::Kind("StorageV2".into()))
        );
        let mut std = actual;
        std.sku = Some(Sku::named("Standard_LRS"));
        assert!(matches!(
            account_immutable_mismatch(&std),
            Some(AccountMismatch::Sku(_))
        ));
    }

    #[test]
    fn adopting_a_released_account_drops_the_released_mark() {
        let mut actual = as_reported(account());
        actual.tags.insert(TAG_RELEASED.into(), "true".into());
        let body = account_update(&actual, &account());
        assert!(!body.tags.contains_key(TAG_RELEASED));
        assert_eq!(body.tags.get("owner").map(String::as_str), Some("someone"));
    }

    fn share(quota: u32, squash: Option<arm::RootSquash>, used: Option<u64>) -> FileShare {
        let mut s = FileShare::nfs(quota, arm::RootSquash::NoRootSquash);
        s.properties.root_squash = squash;
        if let Some(u) = used {
            s.properties
                .extra
                .insert("shareUsageBytes".into(), json!(u));
        }
        s
    }

    #[test]
    fn missing_share_is_created_as_nfs_with_quota_and_squash() {
        let SharePlan::Create(body) = plan_share(None, 200, RootSquash::RootSquash) else {
            panic!("expected Create");
        };
        assert_eq!(
            serde_json::to_value(*body).expect("ser"),
            json!({"properties": {"enabledProtocols": "NFS", "rootSquash": "RootSquash", "shareQuota": 200}})
        );
    }

    #[test]
    fn matching_share_is_in_sync() {
        let s = share(100, Some(arm::RootSquash::NoRootSquash), Some(5));
        assert_eq!(
            plan_share(Some(&s), 100, RootSquash::NoRootSquash),
            SharePlan::InSync
        );
    }

    #[test]
    fn growth_and_squash_change_patch_only_what_differs() {
        let s = share(100, Some(arm::RootSquash::NoRootSquash), None);
        let SharePlan::Update(u) = plan_share(Some(&s), 300, RootSquash::NoRootSquash) else {
            panic!("expected Update");
        };
        assert_eq!(u.patch_body(), json!({"properties": {"shareQuota": 300}}));
        assert_eq!(u.describe(), "quota 100 → 300 GiB");
        let SharePlan::Update(u) = plan_share(Some(&s), 100, RootSquash::AllSquash) else {
            panic!("expected Update");
        };
        assert_eq!(
            u.patch_body(),
            json!({"properties": {"rootSquash": "AllSquash"}})
        );
        assert_eq!(u.describe(), "root squash NoRootSquash → AllSquash");
    }

    #[test]
    fn shrink_is_refused_below_usage_and_applied_above_it() {
        let used = 150 * GIB + 1;
        let s = share(300, Some(arm::RootSquash::NoRootSquash), Some(used));
        assert_eq!(
            plan_share(Some(&s), 150, RootSquash::NoRootSquash),
            SharePlan::ShrinkBelowUsage {
                current_gib: 300,
                requested_gib: 150,
                used_bytes: used,
                other: None,
            }
        );
        let SharePlan::ShrinkBelowUsage { other: Some(o), .. } =
            plan_share(Some(&s), 150, RootSquash::RootSquash)
        else {
            panic!("expected a refused shrink with the squash change");
        };
        assert_eq!(
            o.patch_body(),
            json!({"properties": {"rootSquash": "RootSquash"}})
        );
        let SharePlan::Update(u) = plan_share(Some(&s), 200, RootSquash::NoRootSquash) else {
            panic!("expected Update");
        };
        assert_eq!(u.quota, Some((300, 200)));
        let unknown = share(300, Some(arm::RootSquash::NoRootSquash), None);
        assert!(matches!(
            plan_share(Some(&unknown), 100, RootSquash::NoRootSquash),
            SharePlan::Update(_)
        ));
        let exact = share(300, Some(arm::RootSquash::NoRootSquash), Some(150 * GIB));
        assert!(matches!(
            plan_share(Some(&exact), 150, RootSquash::NoRootSquash),
            SharePlan::Update(_)
        ));
    }

    #[test]
    fn smb_share_is_not_nfs() {
        let mut s = share(100, None, None);
        s.properties.enabled_protocols = Some("SMB".into());
        assert_eq!(
            plan_share(Some(&s), 100, RootSquash::NoRootSquash),
            SharePlan::NotNfs {
                protocol: "SMB".into()
            }
        );
    }

    fn storage(name: &str, template: Option<StorageTemplate>) -> SharedStorage {
        let spec: SharedStorageSpec = serde_json::from_value(json!({
            "resourceGroup": "rg", "location": "westus2"
        }))
        .expect("spec");
        let mut s = SharedStorage::new(name, spec);
        s.spec.template = template;
        s
    }

    #[test]
    fn layout_follows_the_template() {
        let l = mount_layout(&storage("data", Some(StorageTemplate::MlTraining)));
        assert_eq!(l.mount_path, "/mnt/ml");
        assert_eq!(l.shared_dirs, vec!["datasets", "models", "checkpoints"]);
        assert_eq!(l.local_dirs, vec!["/mnt/scratch"]);
        assert_eq!(
            l.shared_paths("/data/x/"),
            vec!["/data/x/datasets", "/data/x/models", "/data/x/checkpoints"]
        );
        let plain = mount_layout(&storage("data", None));
        assert_eq!(plain.mount_path, "/mnt/data");
        assert!(plain.shared_dirs.is_empty() && plain.local_dirs.is_empty());
    }

    #[test]
    fn templates_table_is_the_readme_table() {
        assert_eq!(
            templates_markdown(),
            "| template | default mount path | on the share | on each VM's own disk |
|---|---|---|---|
| `ml-training` | `/mnt/ml` | `datasets/`, `models/`, `checkpoints/` | `/mnt/scratch` |
| `ci-runner` | `/mnt/ci` | `cache/`, `artifacts/` | `/var/lib/ci-work` |
| `dev-team` | `/mnt/team` | `projects/`, `tools/`, `scratch/` | — |
| `testing` | `/mnt/testing` | `fixtures/`, `results/` | `/tmp/test-work` |
"
        );
    }

    #[test]
    fn bytes_format() {
        assert_eq!(format_bytes(3 * GIB / 2), "1.5 GiB");
    }
}
