//! `Microsoft.Network`: virtual networks and subnets, network security groups, public IPs and NICs.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::error::ArmError;
use super::kinds::{Hooks, Kind, NETWORK_API, Provisioning, PutCtx, Settings};
use super::state::{Entry, Store};
use super::validation::{self as v, opt_array, opt_enum, opt_str, req_str, same};

/// Virtual networks.
pub static VIRTUAL_NETWORK: Kind = Kind {
    type_name: "Microsoft.Network/virtualNetworks",
    api_versions: NETWORK_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: false,
    hooks: &VnetHooks,
};

/// Subnets of a virtual network.
pub static SUBNET: Kind = Kind {
    type_name: "Microsoft.Network/virtualNetworks/subnets",
    api_versions: NETWORK_API,
    provisioning: Provisioning::Async,
    located: false,
    parent_strip: 2,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: false,
    hooks: &SubnetHooks,
};

/// Network security groups.
pub static NSG: Kind = Kind {
    type_name: "Microsoft.Network/networkSecurityGroups",
    api_versions: NETWORK_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: false,
    hooks: &NsgHooks,
};

/// Public IP addresses.
pub static PUBLIC_IP: Kind = Kind {
    type_name: "Microsoft.Network/publicIPAddresses",
    api_versions: NETWORK_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: false,
    hooks: &PublicIpHooks,
};

/// Network interfaces.
pub static NIC: Kind = Kind {
    type_name: "Microsoft.Network/networkInterfaces",
    api_versions: NETWORK_API,
    provisioning: Provisioning::Async,
    located: true,
    parent_strip: 0,
    actions: &[],
    views: &[],
    put_accepted: false,
    sync_delete: false,
    hooks: &NicHooks,
};

/// 400 `InvalidResourceReference` for a referenced resource that does not exist.
pub fn bad_reference(referenced: &str, by: &str, target: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidResourceReference",
        format!(
            "Resource {referenced} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
        ),
    )
    .with_target(target)
}

/// NIC ip configuration ids (`{nic id}/ipConfigurations/{name}`) whose `pointer` (relative to
/// the configuration) references `id`.
fn ip_configs_referencing(store: &Store, pointer: &str, id: &str) -> Vec<String> {
    store
        .of_kind(NIC.type_name)
        .flat_map(|nic| {
            nic.body
                .pointer("/properties/ipConfigurations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| {
                    c.pointer(pointer)
                        .and_then(Value::as_str)
                        .is_some_and(|s| same(s, id))
                })
                .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// NIC ip configurations that use a subnet.
fn subnet_users(store: &Store, subnet_id: &str) -> Vec<String> {
    ip_configs_referencing(store, "/properties/subnet/id", subnet_id)
}

fn subnet_in_use(store: &Store, subnet_id: &str, name: &str) -> Result<(), ArmError> {
    match subnet_users(store, subnet_id).first() {
        Some(user) => Err(ArmError::bad_request(
            "InUseSubnetCannotBeDeleted",
            format!(
                "Subnet {name} is in use by {user} and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet."
            ),
        )),
        None => Ok(()),
    }
}

fn check_prefixes(prefixes: &[Value], target: &str) -> Result<Vec<(u32, u8)>, ArmError> {
    prefixes
        .iter()
        .map(|p| {
            p.as_str().and_then(v::parse_cidr).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidAddressPrefixFormat",
                    format!("Address prefix {p} does not have a valid format."),
                )
                .with_target(target)
            })
        })
        .collect()
}

fn subnet_prefix(body: &Value) -> Option<(u32, u8)> {
    opt_str(body, "/properties/addressPrefix")
        .or_else(|| {
            body.pointer("/properties/addressPrefixes/0")
                .and_then(Value::as_str)
        })
        .and_then(v::parse_cidr)
}

/// Validates a subnet body against its vnet's address space and sibling subnets.
fn validate_subnet(
    body: &Value,
    name: &str,
    vnet: &Value,
    vnet_name: &str,
    siblings: &[(String, (u32, u8))],
    store: &Store,
    target: &str,
) -> Result<(), ArmError> {
    if opt_str(body, "/properties/addressPrefix").is_none()
        && body.pointer("/properties/addressPrefixes/0").is_none()
    {
        return Err(ArmError::required(&format!("{target}addressPrefix")));
    }
    let prefix = subnet_prefix(body).ok_or_else(|| {
        ArmError::bad_request(
            "InvalidAddressPrefixFormat",
            format!("Subnet '{name}' has an invalid address prefix."),
        )
        .with_target(&format!("{target}addressPrefix"))
    })?;
    let space = check_prefixes(
        opt_array(
            vnet,
            "/properties/addressSpace/addressPrefixes",
            "addressSpace.addressPrefixes",
        )?,
        "addressSpace.addressPrefixes",
    )?;
    if !space.iter().any(|outer| v::cidr_within(prefix, *outer)) {
        return Err(ArmError::bad_request(
            "NetcfgSubnetRangeOutsideVnet",
            format!("Subnet '{name}' is not valid because its IP address range is outside the IP address range of virtual network '{vnet_name}'."),
        )
        .with_target(&format!("{target}addressPrefix")));
    }
    for (other, range) in siblings {
        if !same(other, name) && (v::cidr_within(prefix, *range) || v::cidr_within(*range, prefix))
        {
            return Err(ArmError::bad_request(
                "NetcfgSubnetRangesOverlap",
                format!("Subnet '{name}' is not valid because its IP address range overlaps with that of an existing subnet '{other}' in virtual network '{vnet_name}'."),
            )
            .with_target(&format!("{target}addressPrefix")));
        }
    }
    for (i, ep) in opt_array(body, "/properties/serviceEndpoints", "serviceEndpoints")?
        .iter()
        .enumerate()
    {
        req_str(
            ep,
            "/service",
            &format!("{target}serviceEndpoints[{i}].service"),
        )?;
    }
    check_nsg_reference(
        store,
        body,
        name,
        &format!("{target}networkSecurityGroup.id"),
    )
}

/// Fails with [`bad_reference`] when `body` (of resource `by`) names an NSG that does not exist.
fn check_nsg_reference(
    store: &Store,
    body: &Value,
    by: &str,
    target: &str,
) -> Result<(), ArmError> {
    match opt_str(body, "/properties/networkSecurityGroup/id") {
        Some(nsg) if store.get(nsg).is_none() => Err(bad_reference(nsg, by, target)),
        _ => Ok(()),
    }
}

/// Virtual networks; inline `properties.subnets` are kept as subnet child resources.
pub struct VnetHooks;

impl Hooks for VnetHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let prefixes = v::req_nonempty_array(
            &ctx.body,
            "/properties/addressSpace/addressPrefixes",
            "properties.addressSpace.addressPrefixes",
        )?;
        check_prefixes(prefixes, "properties.addressSpace.addressPrefixes")?;
        let inline: Vec<Value> =
            opt_array(&ctx.body, "/properties/subnets", "properties.subnets")?.to_vec();
        let mut ranges = Vec::new();
        for (i, subnet) in inline.iter().enumerate() {
            let name = req_str(subnet, "/name", &format!("properties.subnets[{i}].name"))?;
            v::check_resource_name(name)?;
            validate_subnet(
                subnet,
                name,
                &ctx.body,
                ctx.name,
                &ranges,
                ctx.store,
                &format!("properties.subnets[{i}].properties."),
            )?;
            if let Some(range) = subnet_prefix(subnet) {
                ranges.push((name.to_string(), range));
            }
        }
        // Subnets left out of the body are deleted, as ARM does — unless they are in use.
        let dropped: Vec<(String, String)> = ctx
            .store
            .under(ctx.id, SUBNET.type_name)
            .map(|e| {
                (
                    e.id.clone(),
                    e.str_at("/name").unwrap_or_default().to_string(),
                )
            })
            .filter(|(_, name)| !ranges.iter().any(|(n, _)| same(n, name)))
            .collect();
        for (id, name) in &dropped {
            subnet_in_use(ctx.store, id, name)?;
        }
        for (id, _) in &dropped {
            ctx.store.remove(id);
        }
        for subnet in inline {
            let name = subnet
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let id = format!("{}/subnets/{name}", ctx.id);
            let meta = ctx
                .store
                .get(&id)
                .map(|e| e.meta.clone())
                .unwrap_or_default();
            let mut body = json!({
                "id": id,
                "name": name,
                "type": SUBNET.type_name,
                "properties": subnet.get("properties").cloned().unwrap_or_else(|| json!({})),
            });
            if let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("provisioningState".into(), Value::from("Succeeded"));
            }
            ctx.store.put(Entry {
                id,
                kind: SUBNET.type_name.into(),
                body,
                meta,
                busy: None,
            });
        }
        if let Some(props) = ctx
            .body
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            props.remove("subnets");
        }
        Ok(())
    }

    fn check_delete(&self, store: &Store, entry: &Entry) -> Result<(), ArmError> {
        for subnet in store.under(&entry.id, SUBNET.type_name) {
            subnet_in_use(
                store,
                &subnet.id,
                subnet.str_at("/name").unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    fn render(
        &self,
        store: &Store,
        settings: &Settings,
        entry: &Entry,
        out: &mut Value,
        expand: bool,
    ) {
        let subnets: Vec<Value> = store
            .under(&entry.id, SUBNET.type_name)
            .map(|s| {
                let mut body = s.body.clone();
                SubnetHooks.render(store, settings, s, &mut body, expand);
                body
            })
            .collect();
        super::state::props_mut(out).insert("subnets".into(), Value::from(subnets));
    }
}

/// Subnets.
pub struct SubnetHooks;

impl Hooks for SubnetHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let Some(vnet) = ctx.parent.clone() else {
            return Err(ArmError::not_found(
                "ParentResourceNotFound",
                "Parent virtual network not found.",
            ));
        };
        let siblings: Vec<(String, (u32, u8))> = ctx
            .store
            .under(&vnet.id, SUBNET.type_name)
            .filter_map(|s| Some((s.str_at("/name")?.to_string(), subnet_prefix(&s.body)?)))
            .collect();
        let vnet_name = vnet.str_at("/name").unwrap_or_default().to_string();
        validate_subnet(
            &ctx.body,
            ctx.name,
            &vnet.body,
            &vnet_name,
            &siblings,
            ctx.store,
            "properties.",
        )?;
        if let Some(old) = &ctx.existing
            && subnet_prefix(&old.body) != subnet_prefix(&ctx.body)
            && !subnet_users(ctx.store, ctx.id).is_empty()
        {
            return Err(ArmError::bad_request(
                "InUseSubnetCannotBeUpdated",
                format!(
                    "Subnet {} is in use and its address prefix cannot be changed.",
                    ctx.name
                ),
            )
            .with_target("properties.addressPrefix"));
        }
        Ok(())
    }

    fn check_delete(&self, store: &Store, entry: &Entry) -> Result<(), ArmError> {
        subnet_in_use(store, &entry.id, entry.str_at("/name").unwrap_or_default())
    }

    fn render(
        &self,
        store: &Store,
        _settings: &Settings,
        entry: &Entry,
        out: &mut Value,
        _expand: bool,
    ) {
        let vnet_location = SUBNET
            .parent_id(&entry.id)
            .and_then(|vnet| store.get(&vnet))
            .and_then(|vnet| vnet.str_at("/location"))
            .unwrap_or_default()
            .to_string();
        if let Some(endpoints) = out
            .pointer_mut("/properties/serviceEndpoints")
            .and_then(Value::as_array_mut)
        {
            for ep in endpoints {
                let service = ep
                    .get("service")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if ep.get("locations").is_none_or(Value::is_null) {
                    ep["locations"] =
                        Value::from(service_endpoint_locations(&service, &vnet_location));
                }
                ep["provisioningState"] = Value::from("Succeeded");
            }
        }
        let users: Vec<Value> = subnet_users(store, &entry.id)
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        if !users.is_empty() {
            super::state::props_mut(out).insert("ipConfigurations".into(), Value::from(users));
        }
    }
}

/// Locations a service endpoint covers when the request names none: `Microsoft.Storage`
/// covers the virtual network's region and its pair, other services (and
/// `Microsoft.Storage.Global`) every region (`*`).
pub fn service_endpoint_locations(service: &str, vnet_location: &str) -> Vec<String> {
    if same(service, "Microsoft.Storage") && !vnet_location.is_empty() {
        let mut out = vec![vnet_location.to_string()];
        if let Some(pair) = super::catalog::paired_region(vnet_location) {
            out.push(pair.to_string());
        }
        out
    } else {
        vec!["*".to_string()]
    }
}

/// The six rules every NSG carries (`defaultSecurityRules`), as Azure creates them.
fn default_security_rules(nsg_id: &str) -> Vec<Value> {
    let rule = |name: &str,
                description: &str,
                src: &str,
                dst: &str,
                access: &str,
                priority: i64,
                direction: &str| {
        json!({
            "id": format!("{nsg_id}/defaultSecurityRules/{name}"),
            "name": name,
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "provisioningState": "Succeeded",
                "description": description,
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": src,
                "destinationAddressPrefix": dst,
                "access": access,
                "priority": priority,
                "direction": direction,
                "sourcePortRanges": [],
                "destinationPortRanges": [],
                "sourceAddressPrefixes": [],
                "destinationAddressPrefixes": []
            }
        })
    };
    vec![
        rule(
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Inbound",
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            "AzureLoadBalancer",
            "*",
            "Allow",
            65001,
            "Inbound",
        ),
        rule(
            "DenyAllInBound",
            "Deny all inbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Inbound",
        ),
        rule(
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow",
            65000,
            "Outbound",
        ),
        rule(
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            "*",
            "Internet",
            "Allow",
            65001,
            "Outbound",
        ),
        rule(
            "DenyAllOutBound",
            "Deny all outbound traffic",
            "*",
            "*",
            "Deny",
            65500,
            "Outbound",
        ),
    ]
}

/// Network security groups.
pub struct NsgHooks;

impl Hooks for NsgHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let rules = opt_array(
            &ctx.body,
            "/properties/securityRules",
            "properties.securityRules",
        )?
        .to_vec();
        let mut seen: Vec<(String, i64)> = Vec::new();
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let t = |f: &str| format!("properties.securityRules[{i}].{f}");
            let name = req_str(rule, "/name", &t("name"))?;
            v::req_enum(
                rule,
                "/properties/protocol",
                &t("properties.protocol"),
                &["Tcp", "Udp", "Icmp", "Esp", "Ah", "*"],
            )?;
            v::req_enum(
                rule,
                "/properties/access",
                &t("properties.access"),
                &["Allow", "Deny"],
            )?;
            let direction = v::req_enum(
                rule,
                "/properties/direction",
                &t("properties.direction"),
                &["Inbound", "Outbound"],
            )?;
            let priority = v::opt_int(rule, "/properties/priority", &t("properties.priority"))?
                .ok_or_else(|| ArmError::required(&t("properties.priority")))?;
            if !(100..=4096).contains(&priority) {
                return Err(ArmError::bad_request(
                    "SecurityRuleInvalidPriority",
                    format!("Security rule {name} has invalid priority {priority}. Value provided: {priority} Allowed range 100-4096."),
                )
                .with_target(&t("properties.priority")));
            }
            if let Some((other, _)) = seen.iter().find(|(d, p)| d == direction && *p == priority) {
                return Err(ArmError::bad_request(
                    "SecurityRuleConflict",
                    format!("Security rule {name} conflicts with rule {other}. Rules cannot have the same Priority and Direction."),
                )
                .with_target(&t("properties.priority")));
            }
            seen.push((direction.to_string(), priority));
            let mut rule = rule.clone();
            rule["id"] = Value::from(format!("{}/securityRules/{name}", ctx.id));
            rule["type"] = Value::from("Microsoft.Network/networkSecurityGroups/securityRules");
            if let Some(props) = rule.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("provisioningState".into(), Value::from("Succeeded"));
            }
            out.push(rule);
        }
        let props = super::state::props_mut(&mut ctx.body);
        props.insert("securityRules".into(), Value::from(out));
        props.insert(
            "defaultSecurityRules".into(),
            Value::from(default_security_rules(ctx.id)),
        );
        Ok(())
    }

    fn check_delete(&self, store: &Store, entry: &Entry) -> Result<(), ArmError> {
        let users: Vec<String> = store
            .of_kind(NIC.type_name)
            .chain(store.of_kind(SUBNET.type_name))
            .filter(|e| {
                e.str_at("/properties/networkSecurityGroup/id")
                    .is_some_and(|id| same(id, &entry.id))
            })
            .map(|e| e.id.clone())
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(ArmError::bad_request(
            "InUseNetworkSecurityGroupCannotBeDeleted",
            format!(
                "Network security group {} cannot be deleted because it is in use by the following resources: {}. In order to delete the Network security group, remove the association with the resource(s).",
                entry.id,
                users.join(", ")
            ),
        ))
    }
}

/// NIC ip configurations that use a public IP.
fn public_ip_users(store: &Store, pip_id: &str) -> Vec<String> {
    ip_configs_referencing(store, "/properties/publicIPAddress/id", pip_id)
}

/// A stable fake public address for a resource id.
fn fake_public_ip(id: &str) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(id.to_ascii_lowercase().as_bytes());
    Ipv4Addr::new(20, digest[0], digest[1], digest[2].max(1)).to_string()
}

/// Public IP addresses.
pub struct PublicIpHooks;

impl Hooks for PublicIpHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let sku = opt_enum(&ctx.body, "/sku/name", "sku.name", &["Basic", "Standard"])?
            .unwrap_or("Standard");
        let method = opt_enum(
            &ctx.body,
            "/properties/publicIPAllocationMethod",
            "properties.publicIPAllocationMethod",
            &["Static", "Dynamic"],
        )?
        .unwrap_or(if sku == "Standard" {
            "Static"
        } else {
            "Dynamic"
        });
        if sku == "Standard" && method != "Static" {
            return Err(ArmError::bad_request(
                "StandardSkuPublicIPAddressesMustBeStatic",
                format!(
                    "Standard sku publicIp {} must have AllocationMethod set to Static.",
                    ctx.id
                ),
            )
            .with_target("properties.publicIPAllocationMethod"));
        }
        opt_enum(
            &ctx.body,
            "/properties/publicIPAddressVersion",
            "properties.publicIPAddressVersion",
            &["IPv4", "IPv6"],
        )?;
        ctx.body["sku"] = json!({ "name": sku, "tier": "Regional" });
        let previous_ip = ctx
            .existing
            .as_ref()
            .and_then(|e| e.str_at("/properties/ipAddress"))
            .map(str::to_string);
        let props = super::state::props_mut(&mut ctx.body);
        props.insert("publicIPAllocationMethod".into(), Value::from(method));
        props.remove("ipAddress");
        props.remove("ipConfiguration");
        if method == "Static" {
            let ip = previous_ip.unwrap_or_else(|| fake_public_ip(ctx.id));
            props.insert("ipAddress".into(), Value::from(ip));
        }
        Ok(())
    }

    fn check_delete(&self, store: &Store, entry: &Entry) -> Result<(), ArmError> {
        match public_ip_users(store, &entry.id).first() {
            Some(user) => Err(ArmError::bad_request(
                "PublicIPAddressCannotBeDeleted",
                format!(
                    "Public IP address {} can not be deleted since it is still allocated to resource {user}. In order to delete the public IP, disassociate/detach the Public IP address from the resource.",
                    entry.id
                ),
            )),
            None => Ok(()),
        }
    }

    fn render(
        &self,
        store: &Store,
        settings: &Settings,
        entry: &Entry,
        out: &mut Value,
        _expand: bool,
    ) {
        let users = public_ip_users(store, &entry.id);
        let props = super::state::props_mut(out);
        if let Some(user) = users.first() {
            props.insert("ipConfiguration".into(), json!({ "id": user }));
            if !props.contains_key("ipAddress") {
                props.insert("ipAddress".into(), Value::from(fake_public_ip(&entry.id)));
            }
        }
        if let Some(addr) = settings.vm_address
            && props.contains_key("ipAddress")
        {
            props.insert("ipAddress".into(), Value::from(addr.to_string()));
        }
    }
}

/// Allocates the next free private address of a subnet (Azure reserves the first four).
fn allocate_ip(store: &mut Store, subnet_id: &str) -> Result<String, ArmError> {
    let Some(subnet) = store.get_mut(subnet_id) else {
        return Err(ArmError::invalid(
            "subnet.id",
            format!("Subnet {subnet_id} not found."),
        ));
    };
    let Some((net, len)) = subnet_prefix(&subnet.body) else {
        return Err(ArmError::invalid(
            "subnet.id",
            format!("Subnet {subnet_id} has no IPv4 prefix."),
        ));
    };
    let size: u64 = 1u64 << (32 - u32::from(len));
    let next = subnet
        .meta
        .get("nextHost")
        .and_then(Value::as_u64)
        .unwrap_or(4);
    if next + 1 >= size {
        return Err(ArmError::bad_request(
            "SubnetIsFull",
            format!(
                "Subnet {} with address prefix {} does not have enough capacity for 1 IP addresses.",
                subnet.str_at("/name").unwrap_or_default(),
                Ipv4Addr::from(net)
            ),
        ));
    }
    subnet.meta.insert("nextHost".into(), Value::from(next + 1));
    Ok(Ipv4Addr::from(net.wrapping_add(next as u32)).to_string())
}

/// Network interfaces: subnet and public IP references, private IP allocation.
pub struct NicHooks;

impl Hooks for NicHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        v::check_resource_name(ctx.name)?;
        let configs = v::req_nonempty_array(
            &ctx.body,
            "/properties/ipConfigurations",
            "properties.ipConfigurations",
        )?
        .to_vec();
        let location = ctx.location();
        check_nsg_reference(
            ctx.store,
            &ctx.body,
            ctx.id,
            "properties.networkSecurityGroup.id",
        )?;
        // Validate every configuration before allocating anything.
        for (i, config) in configs.iter().enumerate() {
            let t = |f: &str| format!("properties.ipConfigurations[{i}].{f}");
            req_str(config, "/name", &t("name"))?;
            let subnet_id = req_str(config, "/properties/subnet/id", &t("properties.subnet.id"))?;
            let Some(subnet) = ctx.store.get(subnet_id) else {
                return Err(bad_reference(subnet_id, ctx.id, &t("properties.subnet.id")));
            };
            let vnet_id = subnet_id.rsplitn(3, '/').nth(2).unwrap_or_default();
            let vnet_location = ctx
                .store
                .get(vnet_id)
                .and_then(|e| e.str_at("/location"))
                .unwrap_or_default();
            if vnet_location != location {
                return Err(ArmError::bad_request(
                    "InvalidResourceReference",
                    format!("Resource {subnet_id} referenced by resource {} was not found in location '{location}'. Both resources must be in the same region.", ctx.id),
                )
                .with_target(&t("properties.subnet.id")));
            }
            let method = opt_enum(
                config,
                "/properties/privateIPAllocationMethod",
                &t("properties.privateIPAllocationMethod"),
                &["Dynamic", "Static"],
            )?;
            if method == Some("Static") {
                let ip = req_str(
                    config,
                    "/properties/privateIPAddress",
                    &t("properties.privateIPAddress"),
                )?;
                let inside = ip
                    .parse::<Ipv4Addr>()
                    .ok()
                    .zip(subnet_prefix(&subnet.body))
                    .is_some_and(|(ip, (net, len))| (u32::from(ip) & v::mask(len)) == net);
                if !inside {
                    return Err(ArmError::bad_request(
                        "PrivateIPAddressNotInSubnet",
                        format!("IP configuration {} private IP address {ip} does not belong to the subnet {subnet_id}.", config["name"]),
                    )
                    .with_target(&t("properties.privateIPAddress")));
                }
            }
            if let Some(pip) = opt_str(config, "/properties/publicIPAddress/id") {
                if ctx.store.get(pip).is_none() {
                    return Err(bad_reference(
                        pip,
                        ctx.id,
                        &t("properties.publicIPAddress.id"),
                    ));
                }
                let own_prefix = format!("{}/", ctx.id.to_ascii_lowercase());
                if let Some(user) = public_ip_users(ctx.store, pip)
                    .into_iter()
                    .find(|u| !u.to_ascii_lowercase().starts_with(&own_prefix))
                {
                    return Err(ArmError::bad_request(
                        "PublicIPAddressInUse",
                        format!("Resource {pip} is already in use by {user}."),
                    )
                    .with_target(&t("properties.publicIPAddress.id")));
                }
            }
        }
        let previous: Vec<Value> = ctx
            .existing
            .as_ref()
            .and_then(|e| {
                e.body
                    .pointer("/properties/ipConfigurations")
                    .and_then(Value::as_array)
                    .cloned()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, mut config) in configs.into_iter().enumerate() {
            let name = config["name"].as_str().unwrap_or_default().to_string();
            let subnet_id = config
                .pointer("/properties/subnet/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let static_ip = opt_str(&config, "/properties/privateIPAllocationMethod")
                .is_some_and(|m| same(m, "Static"));
            let kept = previous.iter().find(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| same(n, &name))
                    && p.pointer("/properties/subnet/id")
                        .and_then(Value::as_str)
                        .is_some_and(|s| same(s, &subnet_id))
            });
            let ip = if static_ip {
                opt_str(&config, "/properties/privateIPAddress")
                    .unwrap_or_default()
                    .to_string()
            } else if let Some(ip) = kept
                .and_then(|p| p.pointer("/properties/privateIPAddress"))
                .and_then(Value::as_str)
            {
                ip.to_string()
            } else {
                allocate_ip(ctx.store, &subnet_id)?
            };
            config["id"] = Value::from(format!("{}/ipConfigurations/{name}", ctx.id));
            config["type"] = Value::from("Microsoft.Network/networkInterfaces/ipConfigurations");
            let props = super::state::props_mut(&mut config);
            props.insert("privateIPAddress".into(), Value::from(ip));
            props.insert(
                "privateIPAllocationMethod".into(),
                Value::from(if static_ip { "Static" } else { "Dynamic" }),
            );
            props.insert("privateIPAddressVersion".into(), Value::from("IPv4"));
            props.entry("primary").or_insert(Value::Bool(i == 0));
            props.insert("provisioningState".into(), Value::from("Succeeded"));
            out.push(config);
        }
        let vm = ctx
            .existing
            .as_ref()
            .and_then(|e| e.body.pointer("/properties/virtualMachine").cloned());
        let mac = ctx
            .existing
            .as_ref()
            .and_then(|e| e.str_at("/properties/macAddress").map(str::to_string))
            .unwrap_or_else(|| {
                let d =
                    <sha2::Sha256 as sha2::Digest>::digest(ctx.id.to_ascii_lowercase().as_bytes());
                format!("00-0D-3A-{:02X}-{:02X}-{:02X}", d[0], d[1], d[2])
            });
        let props = super::state::props_mut(&mut ctx.body);
        props.insert("ipConfigurations".into(), Value::from(out));
        props.insert("macAddress".into(), Value::from(mac));
        props.remove("virtualMachine");
        if let Some(vm) = vm {
            props.insert("virtualMachine".into(), vm);
        }
        Ok(())
    }

    fn check_delete(&self, _store: &Store, entry: &Entry) -> Result<(), ArmError> {
        match entry.str_at("/properties/virtualMachine/id") {
            Some(vm) => Err(ArmError::bad_request(
                "NicInUse",
                format!(
                    "Network Interface {} is used by existing resource {vm}. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
                    entry.id
                ),
            )),
            None => Ok(()),
        }
    }

    fn render(
        &self,
        _store: &Store,
        settings: &Settings,
        _entry: &Entry,
        out: &mut Value,
        _expand: bool,
    ) {
        let Some(addr) = settings.vm_address else {
            return;
        };
        if let Some(configs) = out
            .pointer_mut("/properties/ipConfigurations")
            .and_then(Value::as_array_mut)
        {
            for config in configs {
                super::state::props_mut(config)
                    .insert("privateIPAddress".into(), Value::from(addr.to_string()));
            }
        }
    }
}

/// Deletes a NIC removed together with its VM, cascading to public IPs whose `deleteOption` is `Delete`.
pub fn delete_nic_with_vm(store: &mut Store, nic_id: &str) {
    let Some(nic) = store.remove(nic_id) else {
        return;
    };
    let configs = nic
        .body
        .pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for config in configs {
        let delete = config
            .pointer("/properties/publicIPAddress/properties/deleteOption")
            .and_then(Value::as_str)
            .is_some_and(|d| same(d, "Delete"));
        if delete
            && let Some(pip) = config
                .pointer("/properties/publicIPAddress/id")
                .and_then(Value::as_str)
        {
            store.remove(pip);
        }
    }
}
