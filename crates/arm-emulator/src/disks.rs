//! `Microsoft.Compute` disks and snapshots: empty and copied disks, incremental snapshots,
//! cross-region `CopyStart` with `completionPercent`, and the attach/detach helpers VMs use.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::compute::{PowerState, power};
use super::error::ArmError;
use super::kinds::{DISK_API, Hooks, Kind, Provisioning, PutCtx, Settings};
use super::state::{Entry, Store, props_mut};
use super::validation::{self as v, opt_bool, opt_enum, opt_int, req_str, same};

/// Managed disks.
pub static DISK: Kind = Kind {
    type_name: "Microsoft.Compute/disks",
    api_versions: DISK_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: true,
    sync_delete: false,
    hooks: &DiskHooks,
};

/// Snapshots.
pub static SNAPSHOT: Kind = Kind {
    type_name: "Microsoft.Compute/snapshots",
    api_versions: DISK_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: true,
    sync_delete: false,
    hooks: &SnapshotHooks,
};

/// Managed disk storage account types.
pub const STORAGE_TYPES: &[&str] = &[
    "Standard_LRS",
    "Premium_LRS",
    "StandardSSD_LRS",
    "UltraSSD_LRS",
    "Premium_ZRS",
    "StandardSSD_ZRS",
    "PremiumV2_LRS",
];
/// A managed disk entry (used for OS and data disks created with a VM).
pub fn new_disk(
    id: &str,
    location: &str,
    sku: &str,
    size_gb: i64,
    props: Value,
    managed_by: Option<&str>,
    zones: Option<&Value>,
) -> Entry {
    let name = id.rsplit('/').next().unwrap_or_default();
    let mut body = json!({
        "id": id,
        "name": name,
        "type": DISK.type_name,
        "location": location,
        "sku": { "name": sku, "tier": sku.split('_').next().unwrap_or("Standard") },
        "properties": props,
    });
    let p = props_mut(&mut body);
    p.insert("diskSizeGB".into(), Value::from(size_gb));
    p.insert(
        "diskState".into(),
        Value::from(if managed_by.is_some() {
            "Attached"
        } else {
            "Unattached"
        }),
    );
    p.insert(
        "uniqueId".into(),
        Value::from(uuid::Uuid::new_v4().to_string()),
    );
    p.insert("timeCreated".into(), Value::from(Utc::now().to_rfc3339()));
    p.insert("provisioningState".into(), Value::from("Succeeded"));
    if let Some(vm) = managed_by {
        body["managedBy"] = Value::from(vm);
    }
    if let Some(z) = zones {
        body["zones"] = z.clone();
    }
    Entry {
        id: id.to_string(),
        kind: DISK.type_name.to_string(),
        body,
        meta: Default::default(),
        busy: None,
    }
}

/// Read-only fields Compute adds to disks and snapshots: `diskSizeBytes`, and ids (own and
/// `managedBy`) with the resource-group segment upper-cased.
fn disk_read_model(out: &mut Value) {
    if let Some(gb) = out
        .pointer("/properties/diskSizeGB")
        .and_then(Value::as_i64)
    {
        props_mut(out).insert("diskSizeBytes".into(), Value::from(gb * 1024 * 1024 * 1024));
    }
    for key in ["id", "managedBy"] {
        if let Some(id) = out.get(key).and_then(Value::as_str) {
            out[key] = Value::from(super::path::compute_casing(id));
        }
    }
}

/// Marks a disk attached to `vm_id`, or detached when `None`.
pub fn attach_disk(store: &mut Store, disk_id: &str, vm_id: Option<&str>) {
    if let Some(disk) = store.get_mut(disk_id) {
        match vm_id {
            Some(vm) => {
                disk.body["managedBy"] = Value::from(vm);
                props_mut(&mut disk.body).insert("diskState".into(), Value::from("Attached"));
            }
            None => {
                if let Value::Object(m) = &mut disk.body {
                    m.remove("managedBy");
                }
                props_mut(&mut disk.body).insert("diskState".into(), Value::from("Unattached"));
            }
        }
    }
}

/// Fails unless the disk exists and is free (or already attached to `vm_id`).
pub fn check_attachable(
    store: &Store,
    disk_id: &str,
    vm_id: &str,
    target: &str,
) -> Result<(), ArmError> {
    let disk = store
        .get(disk_id)
        .filter(|d| same(&d.kind, DISK.type_name))
        .ok_or_else(|| {
            ArmError::invalid(target, format!("Managed disk {disk_id} was not found."))
        })?;
    match disk.str_at("/managedBy") {
        Some(owner) if !same(owner, vm_id) => Err(ArmError::conflict(
            "OperationNotAllowed",
            format!(
                "Disk {} is already attached to VM {owner}.",
                disk.str_at("/name").unwrap_or_default()
            ),
        )
        .with_target(target)),
        _ => Ok(()),
    }
}

/// The source of a copy: a disk or snapshot that exists, with its size and location.
fn copy_source<'s>(store: &'s Store, body: &Value, target_id: &str) -> Result<&'s Entry, ArmError> {
    let src = req_str(
        body,
        "/properties/creationData/sourceResourceId",
        "creationData.sourceResourceId",
    )?;
    store
        .get(src)
        .filter(|e| same(&e.kind, DISK.type_name) || same(&e.kind, SNAPSHOT.type_name))
        .ok_or_else(|| {
            ArmError::not_found(
                "NotFound",
                format!("Resource {src} referenced by {target_id} is not found."),
            )
            .with_target("creationData.sourceResourceId")
        })
}

fn completion(entry: &Entry, settings: &Settings) -> i64 {
    let Some(started) = entry
        .meta_str("copyStart")
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    else {
        return 100;
    };
    let total = settings.latency.as_millis() as i64 * 5;
    if total == 0 {
        return 100;
    }
    let elapsed = (Utc::now() - started.with_timezone(&Utc)).num_milliseconds();
    (elapsed * 100 / total).clamp(0, 100)
}

fn check_copy_finished(source: &Entry, settings: &Settings) -> Result<(), ArmError> {
    if same(&source.kind, SNAPSHOT.type_name) && completion(source, settings) < 100 {
        return Err(ArmError::conflict(
            "OperationNotAllowed",
            format!(
                "Snapshot {} is still being copied (CopyStart) and cannot be used as a source yet.",
                source.id
            ),
        ));
    }
    Ok(())
}

/// Managed disks.
pub struct DiskHooks;

impl Hooks for DiskHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let sku =
            opt_enum(&ctx.body, "/sku/name", "sku.name", STORAGE_TYPES)?.unwrap_or("Standard_LRS");
        let option = v::req_enum(
            &ctx.body,
            "/properties/creationData/createOption",
            "creationData.createOption",
            &[
                "Empty",
                "Copy",
                "FromImage",
                "Import",
                "Restore",
                "Upload",
                "Attach",
            ],
        )?;
        let size = opt_int(&ctx.body, "/properties/diskSizeGB", "diskSizeGB")?;
        if let Some(s) = size
            && !(1..=32_767).contains(&s)
        {
            return Err(ArmError::invalid(
                "diskSizeGB",
                "Disk size must be between 1 and 32767 GB.",
            ));
        }
        let location = ctx.location();
        if let Some(old) = ctx.existing.clone() {
            let old_size = old.i64_at("/properties/diskSizeGB").unwrap_or(0);
            let new_size = size.unwrap_or(old_size);
            if new_size < old_size {
                return Err(ArmError::invalid(
                    "diskSizeGB",
                    format!(
                        "Disk size reduction is not supported: {new_size} GB < current {old_size} GB."
                    ),
                ));
            }
            if new_size != old_size
                && let Some(vm) = old.str_at("/managedBy").and_then(|vm| ctx.store.get(vm))
                && !matches!(power(vm), Some(PowerState::Deallocated))
            {
                return Err(ArmError::conflict(
                    "OperationNotAllowed",
                    "Disk resizing is allowed only when creating a VM or when the VM is deallocated.",
                )
                .with_target("diskSizeGB"));
            }
            let keep = |k: &str| old.body.pointer(&format!("/properties/{k}")).cloned();
            let managed_by = old.body.get("managedBy").cloned();
            let props = props_mut(&mut ctx.body);
            for k in [
                "diskState",
                "uniqueId",
                "timeCreated",
                "osType",
                "creationData",
            ] {
                if let Some(v) = keep(k) {
                    props.insert(k.into(), v);
                }
            }
            props.insert("diskSizeGB".into(), Value::from(new_size));
            if let (Some(m), Value::Object(map)) = (managed_by, &mut ctx.body) {
                map.insert("managedBy".into(), m);
            }
            ctx.body["sku"] = json!({ "name": sku });
            return Ok(());
        }
        let (size, os_type) = match option {
            "Empty" => (size.ok_or_else(|| ArmError::required("diskSizeGB"))?, None),
            "Copy" | "Restore" => {
                let source = copy_source(ctx.store, &ctx.body, ctx.id)?;
                check_copy_finished(source, ctx.settings)?;
                if source.str_at("/location") != Some(location.as_str()) {
                    return Err(ArmError::invalid(
                        "creationData.sourceResourceId",
                        format!(
                            "The source {} is in a different region; copy it to '{location}' first (snapshot CopyStart).",
                            source.id
                        ),
                    ));
                }
                let source_size = source.i64_at("/properties/diskSizeGB").unwrap_or(30);
                let size = size.unwrap_or(source_size);
                if size < source_size {
                    return Err(ArmError::invalid(
                        "diskSizeGB",
                        format!(
                            "The disk size {size} GB is smaller than the source size {source_size} GB."
                        ),
                    ));
                }
                (size, source.body.pointer("/properties/osType").cloned())
            }
            other => {
                return Err(ArmError::invalid(
                    "creationData.createOption",
                    format!(
                        "createOption '{other}' is not supported by this emulator; use Empty or Copy."
                    ),
                ));
            }
        };
        let props = props_mut(&mut ctx.body);
        props.insert("diskSizeGB".into(), Value::from(size));
        props.insert("diskState".into(), Value::from("Unattached"));
        props.insert(
            "uniqueId".into(),
            Value::from(uuid::Uuid::new_v4().to_string()),
        );
        props.insert("timeCreated".into(), Value::from(Utc::now().to_rfc3339()));
        if let Some(os) = os_type {
            props.insert("osType".into(), os);
        }
        if let Value::Object(map) = &mut ctx.body {
            map.remove("managedBy");
        }
        ctx.body["sku"] =
            json!({ "name": sku, "tier": sku.split('_').next().unwrap_or("Standard") });
        Ok(())
    }

    fn render(
        &self,
        store: &Store,
        _settings: &Settings,
        entry: &Entry,
        out: &mut Value,
        _expand: bool,
    ) {
        // A disk of a deallocated VM is `Reserved`, not `Attached`.
        if let Some(vm) = entry.str_at("/managedBy").and_then(|vm| store.get(vm))
            && power(vm) == Some(PowerState::Deallocated)
        {
            props_mut(out).insert("diskState".into(), Value::from("Reserved"));
        }
        disk_read_model(out);
    }

    fn check_delete(&self, _store: &Store, entry: &Entry) -> Result<(), ArmError> {
        match entry.str_at("/managedBy") {
            Some(vm) => Err(ArmError::conflict(
                "OperationNotAllowed",
                format!(
                    "Disk {} is attached to VM {vm}.",
                    entry.str_at("/name").unwrap_or_default()
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Snapshots: `Copy` (full or incremental, same region) and `CopyStart` (cross-region, incremental).
pub struct SnapshotHooks;

impl Hooks for SnapshotHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let sku = opt_enum(
            &ctx.body,
            "/sku/name",
            "sku.name",
            &["Standard_LRS", "Premium_LRS", "Standard_ZRS"],
        )?
        .unwrap_or("Standard_LRS");
        let option = v::req_enum(
            &ctx.body,
            "/properties/creationData/createOption",
            "creationData.createOption",
            &["Copy", "CopyStart", "Import", "Empty", "Restore"],
        )?;
        let incremental =
            opt_bool(&ctx.body, "/properties/incremental", "incremental")?.unwrap_or(false);
        if let Some(old) = ctx.existing.clone() {
            let props = props_mut(&mut ctx.body);
            for k in [
                "diskSizeGB",
                "uniqueId",
                "timeCreated",
                "osType",
                "creationData",
                "incremental",
            ] {
                if let Some(v) = old.body.pointer(&format!("/properties/{k}")) {
                    props.insert(k.into(), v.clone());
                }
            }
            ctx.body["sku"] = old
                .body
                .get("sku")
                .cloned()
                .unwrap_or_else(|| json!({ "name": sku }));
            return Ok(());
        }
        let location = ctx.location();
        let source = copy_source(ctx.store, &ctx.body, ctx.id)?.clone();
        let source_incremental = source
            .body
            .pointer("/properties/incremental")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let same_region = source.str_at("/location") == Some(location.as_str());
        match option {
            "Copy" => {
                check_copy_finished(&source, ctx.settings)?;
                if !same_region {
                    return Err(ArmError::invalid(
                        "creationData.createOption",
                        "A snapshot in another region can only be copied with createOption 'CopyStart'.",
                    ));
                }
            }
            "CopyStart" => {
                if !same(&source.kind, SNAPSHOT.type_name) || !source_incremental || !incremental {
                    return Err(ArmError::invalid(
                        "incremental",
                        "CopyStart requires an incremental source snapshot and 'incremental: true' on the new snapshot.",
                    ));
                }
                check_copy_finished(&source, ctx.settings)?;
                if same_region {
                    return Err(ArmError::invalid(
                        "creationData.createOption",
                        "CopyStart copies a snapshot to another region; use 'Copy' within the same region.",
                    ));
                }
                ctx.meta
                    .insert("copyStart".into(), Value::from(Utc::now().to_rfc3339()));
            }
            other => {
                return Err(ArmError::invalid(
                    "creationData.createOption",
                    format!(
                        "createOption '{other}' is not supported by this emulator; use Copy or CopyStart."
                    ),
                ));
            }
        }
        let size = source
            .body
            .pointer("/properties/diskSizeGB")
            .cloned()
            .unwrap_or(Value::from(30));
        let source_unique = source
            .body
            .pointer("/properties/uniqueId")
            .cloned()
            .unwrap_or(Value::Null);
        let os_type = source.body.pointer("/properties/osType").cloned();
        let props = props_mut(&mut ctx.body);
        props.insert("diskSizeGB".into(), size);
        props.insert("incremental".into(), Value::Bool(incremental));
        props.insert(
            "uniqueId".into(),
            Value::from(uuid::Uuid::new_v4().to_string()),
        );
        props.insert("timeCreated".into(), Value::from(Utc::now().to_rfc3339()));
        if let Some(os) = os_type {
            props.insert("osType".into(), os);
        }
        if let Some(Value::Object(cd)) = props.get_mut("creationData") {
            cd.insert("sourceUniqueId".into(), source_unique);
        }
        ctx.body["sku"] = json!({ "name": sku, "tier": "Standard" });
        Ok(())
    }

    fn render(
        &self,
        _store: &Store,
        settings: &Settings,
        entry: &Entry,
        out: &mut Value,
        _expand: bool,
    ) {
        disk_read_model(out);
        if entry.meta.contains_key("copyStart") {
            props_mut(out).insert(
                "completionPercent".into(),
                Value::from(completion(entry, settings)),
            );
        }
    }
}
