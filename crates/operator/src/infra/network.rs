//! The Azure infrastructure VMs and storage accounts of one resource group and region
//! share, defined once for every controller: the resource group itself and the
//! operator-managed network — NSG `azlin-<location>-nsg` (SSH allowed in), virtual network
//! `azlin-<location>-vnet` and its subnet `default` with that NSG and the
//! `Microsoft.Storage` service endpoint (so NFS storage accounts can allow it).
//!
//! Like a kind, it is observed ([`observe`]), planned without I/O ([`plan`]) and applied one
//! write at a time ([`apply`]); whichever controller comes first creates it and the others
//! find it. Reconciles only ever add to it and never touch a same-named network the
//! operator does not manage; once no object uses it, the [`super::janitor`] deletes it.

use std::collections::BTreeMap;

use azlin_arm::network::{NetworkSecurityGroup, SecurityRule, Subnet, VirtualNetwork};
use azlin_arm::{ArmClient, Poller};

use super::inventory::{Groups, SecurityGroups, VirtualNetworks};
use super::naming::{
    MANAGED_SUBNET, MANAGED_SUBNET_PREFIX, MANAGED_VNET_PREFIX, STORAGE_SERVICE_ENDPOINT,
    managed_nsg_name, managed_vnet_name,
};
use crate::reconcile::events::Event;
use crate::reconcile::ownership::{MANAGED_BY, TAG_MANAGED_BY, is_managed, managed_network_tags};
use crate::reconcile::{Cx, Error};

/// Where the shared infrastructure lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Resource group.
    pub resource_group: String,
    /// Region.
    pub location: String,
}

/// What exists of a site's infrastructure.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Whether the resource group exists.
    pub group: bool,
    /// The managed subnet, when it exists.
    pub subnet: Option<Subnet>,
    /// The managed NSG (read only when the subnet is not as wanted).
    pub nsg: Option<NetworkSecurityGroup>,
    /// The managed virtual network.
    pub vnet: Option<VirtualNetwork>,
    /// Another object writing this site's network right now (its key), whose write this
    /// object waits to see instead of making its own.
    pub busy: Option<String>,
}

/// The key under which one object at a time writes `site`'s network
/// ([`crate::infra::inventory::Inventory::claim_shared_write`]).
pub fn write_key(arm: &ArmClient, site: &Site) -> String {
    format!(
        "{}/{}/{}",
        arm.subscription_id(),
        site.resource_group,
        site.location
    )
    .to_ascii_lowercase()
}

/// One write towards the wanted infrastructure.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create the resource group.
    CreateGroup,
    /// Create the managed NSG.
    CreateNsg(Box<NetworkSecurityGroup>),
    /// Create the managed virtual network with its subnet.
    CreateVnet(Box<VirtualNetwork>),
    /// Create or correct the managed subnet (NSG and service endpoint).
    PutSubnet(Box<Subnet>),
}

/// What the plan concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Everything exists as wanted.
    Ready,
    /// Azure is still provisioning a part of it.
    Wait(String),
    /// Take this step.
    Step(Step),
    /// A same-named network exists that the operator does not manage.
    Foreign(String),
}

impl Site {
    /// The site of a resource group and region.
    pub fn new(resource_group: &str, location: &str) -> Self {
        Self {
            resource_group: resource_group.to_string(),
            location: location.to_string(),
        }
    }

    /// The id of the managed subnet.
    pub fn subnet_id(&self, arm: &ArmClient) -> String {
        arm.network()
            .subnets(&self.resource_group, &managed_vnet_name(&self.location))
            .id(MANAGED_SUBNET)
            .to_string()
    }

    /// The id of the managed NSG.
    pub fn nsg_id(&self, arm: &ArmClient) -> String {
        arm.network()
            .security_groups(&self.resource_group)
            .id(&managed_nsg_name(&self.location))
            .to_string()
    }
}

/// The managed NSG: SSH (22/tcp) allowed inbound.
pub fn managed_nsg(location: &str) -> NetworkSecurityGroup {
    NetworkSecurityGroup::build(
        location,
        vec![SecurityRule::allow_inbound_tcp("allow-ssh", 1000, 22, "*")],
    )
    .with_tags(managed_network_tags())
}

/// The managed subnet: its prefix, the NSG and the `Microsoft.Storage` service endpoint.
pub fn managed_subnet(nsg_id: &str) -> Subnet {
    Subnet::build(MANAGED_SUBNET, MANAGED_SUBNET_PREFIX)
        .with_service_endpoint(STORAGE_SERVICE_ENDPOINT)
        .with_nsg(nsg_id)
}

/// The managed virtual network with its subnet.
pub fn managed_vnet(location: &str, nsg_id: &str) -> VirtualNetwork {
    VirtualNetwork::build(
        location,
        &[MANAGED_VNET_PREFIX],
        vec![managed_subnet(nsg_id)],
    )
    .with_tags(managed_network_tags())
}

/// Whether a subnet has the `Microsoft.Storage` service endpoint.
pub fn has_storage_endpoint(subnet: &Subnet) -> bool {
    subnet
        .properties
        .service_endpoints
        .iter()
        .any(|e| e.service.eq_ignore_ascii_case(STORAGE_SERVICE_ENDPOINT))
}

/// Whether an existing managed subnet has what it needs: the storage service endpoint and
/// an NSG (ours, or one its owner put there instead, which the operator leaves alone).
pub fn subnet_ok(subnet: &Subnet) -> bool {
    has_storage_endpoint(subnet) && subnet.properties.network_security_group.is_some()
}

fn provisioning(p: Option<&azlin_arm::ProvisioningState>) -> bool {
    p.is_some_and(|s| !s.is_terminal())
}

/// Reads the site from the shared snapshots: the group, the managed vnet with its subnet
/// and — only while the subnet is not as wanted — the NSGs.
pub async fn observe(cx: &Cx<'_>, arm: &ArmClient, site: &Site) -> Result<Observed, Error> {
    let groups = cx.list::<Groups>(arm, &site.resource_group).await?;
    let mut seen = Observed {
        group: groups.get(&site.resource_group).is_some(),
        busy: cx
            .ctx
            .inventory
            .shared_write_holder(&write_key(arm, site), &cx.key),
        ..Observed::default()
    };
    if !seen.group {
        return Ok(seen);
    }
    let vnets = cx
        .list::<VirtualNetworks>(arm, &site.resource_group)
        .await?;
    seen.vnet = vnets.get(&managed_vnet_name(&site.location)).cloned();
    seen.subnet = seen.vnet.as_ref().and_then(|v| {
        v.properties
            .subnets
            .iter()
            .find(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(MANAGED_SUBNET))
            })
            .cloned()
    });
    if seen.subnet.as_ref().is_some_and(subnet_ok) {
        return Ok(seen);
    }
    seen.nsg = cx
        .list::<SecurityGroups>(arm, &site.resource_group)
        .await?
        .get(&managed_nsg_name(&site.location))
        .cloned();
    Ok(seen)
}

/// The next write towards the wanted site; `nsg_id` is [`Site::nsg_id`].
pub fn plan(seen: &Observed, site: &Site, nsg_id: &str) -> Plan {
    match (plan_writes(seen, site, nsg_id), &seen.busy) {
        (Plan::Step(_), Some(holder)) => Plan::Wait(format!(
            "{holder} is preparing the network of resource group {}",
            site.resource_group
        )),
        (plan, _) => plan,
    }
}

fn plan_writes(seen: &Observed, site: &Site, nsg_id: &str) -> Plan {
    if !seen.group {
        return Plan::Step(Step::CreateGroup);
    }
    if let Some(s) = &seen.subnet {
        if provisioning(s.properties.provisioning_state.as_ref()) {
            return Plan::Wait(format!("subnet {MANAGED_SUBNET} is being provisioned"));
        }
        if subnet_ok(s) {
            return Plan::Ready;
        }
    }
    // A subnet that has an NSG only needs the endpoint added; anything else needs ours.
    let needs_our_nsg = seen
        .subnet
        .as_ref()
        .is_none_or(|s| s.properties.network_security_group.is_none());
    let foreign = |what: &str, name: &str| {
        Plan::Foreign(format!(
            "{what} {name} in resource group {} exists but is not managed by azlin-operator (no tag {TAG_MANAGED_BY}={MANAGED_BY}); the operator will not change it. Tag it, delete it, or use another resource group",
            site.resource_group
        ))
    };
    match &seen.nsg {
        _ if !needs_our_nsg => {}
        None => return Plan::Step(Step::CreateNsg(Box::new(managed_nsg(&site.location)))),
        Some(n) if !is_managed(&n.tags) => {
            return foreign("network security group", &managed_nsg_name(&site.location));
        }
        Some(n) if provisioning(n.properties.provisioning_state.as_ref()) => {
            return Plan::Wait("the managed NSG is being provisioned".into());
        }
        Some(_) => {}
    }
    match &seen.vnet {
        None => Plan::Step(Step::CreateVnet(Box::new(managed_vnet(
            &site.location,
            nsg_id,
        )))),
        Some(v) if !is_managed(&v.tags) => {
            foreign("virtual network", &managed_vnet_name(&site.location))
        }
        Some(v) if provisioning(v.properties.provisioning_state.as_ref()) => {
            Plan::Wait("the managed virtual network is being provisioned".into())
        }
        Some(_) => {
            // Keep whatever else the subnet has (delegations, other endpoints).
            let body = match &seen.subnet {
                Some(s) => {
                    let mut b = s.clone().with_service_endpoint(STORAGE_SERVICE_ENDPOINT);
                    if b.properties.network_security_group.is_none() {
                        b = b.with_nsg(nsg_id);
                    }
                    b.properties.provisioning_state = None;
                    b
                }
                None => managed_subnet(nsg_id),
            };
            Plan::Step(Step::PutSubnet(Box::new(body)))
        }
    }
}

impl Step {
    /// The event announcing this step.
    pub fn event(&self, site: &Site) -> Event {
        match self {
            Step::CreateGroup => Event::normal(
                "ResourceGroupCreated",
                format!(
                    "creating resource group {} in {}",
                    site.resource_group, site.location
                ),
            ),
            Step::CreateNsg(_) => Event::normal(
                "NetworkCreated",
                format!(
                    "creating network security group {}",
                    managed_nsg_name(&site.location)
                ),
            ),
            Step::CreateVnet(_) => Event::normal(
                "NetworkCreated",
                format!(
                    "creating virtual network {} with subnet {MANAGED_SUBNET} and the {STORAGE_SERVICE_ENDPOINT} service endpoint",
                    managed_vnet_name(&site.location)
                ),
            ),
            Step::PutSubnet(_) => Event::normal(
                "NetworkUpdated",
                format!(
                    "setting the NSG and the {STORAGE_SERVICE_ENDPOINT} service endpoint on subnet {}/{MANAGED_SUBNET}",
                    managed_vnet_name(&site.location)
                ),
            ),
        }
    }

    /// What the step does, for the Reconciling message.
    pub fn describe(&self, site: &Site) -> String {
        self.event(site).note
    }
}

/// Starts `step` for object `cx.key`, unless another object claimed the site's network
/// writes since this one looked; the returned poller says whether it already finished.
pub async fn apply(
    cx: &Cx<'_>,
    arm: &ArmClient,
    site: &Site,
    step: &Step,
) -> Result<Option<Poller>, Error> {
    if !cx
        .ctx
        .inventory
        .claim_shared_write(&write_key(arm, site), &cx.key)
    {
        return Ok(None);
    }
    let net = arm.network();
    let rg = &site.resource_group;
    Ok(match step {
        Step::CreateGroup => {
            let tags = BTreeMap::from([(TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string())]);
            arm.resources()
                .create_or_update(rg, &site.location, &tags)
                .await?;
            None
        }
        Step::CreateNsg(body) => Some(
            net.security_groups(rg)
                .begin_create_or_update(&managed_nsg_name(&site.location), body)
                .await?,
        ),
        Step::CreateVnet(body) => Some(
            net.virtual_networks(rg)
                .begin_create_or_update(&managed_vnet_name(&site.location), body)
                .await?,
        ),
        Step::PutSubnet(body) => Some(
            net.subnets(rg, &managed_vnet_name(&site.location))
                .begin_create_or_update(MANAGED_SUBNET, body)
                .await?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NSG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/azlin-westus2-nsg";

    fn site() -> Site {
        Site::new("rg", "westus2")
    }

    fn managed<T: Clone>(mut r: azlin_arm::Resource<T>) -> azlin_arm::Resource<T> {
        r.tags = managed_network_tags();
        r
    }

    #[test]
    fn managed_vnet_has_the_subnet_with_nsg_and_storage_endpoint() {
        let v = serde_json::to_value(managed_vnet("westus2", NSG)).expect("ser");
        let subnet = &v["properties"]["subnets"][0];
        assert_eq!(subnet["name"], json!("default"));
        assert_eq!(
            subnet["properties"]["serviceEndpoints"],
            json!([{"service": "Microsoft.Storage"}])
        );
        assert_eq!(
            subnet["properties"]["networkSecurityGroup"]["id"],
            json!(NSG)
        );
        assert_eq!(v["tags"][TAG_MANAGED_BY], json!(MANAGED_BY));
    }

    #[test]
    fn plan_table() {
        let good_subnet = managed_subnet(NSG);
        let no_endpoint = Subnet::build("default", MANAGED_SUBNET_PREFIX).with_nsg(NSG);
        let nsg = managed(managed_nsg("westus2"));
        let vnet = managed(managed_vnet("westus2", NSG));
        let mut foreign_vnet = managed_vnet("westus2", NSG);
        foreign_vnet.tags.clear();
        type Check = fn(&Plan) -> bool;
        let cases: Vec<(&str, Observed, Check)> = vec![
            ("no group", Observed::default(), |p| {
                *p == Plan::Step(Step::CreateGroup)
            }),
            (
                "subnet fine",
                Observed {
                    group: true,
                    subnet: Some(good_subnet.clone()),
                    ..Default::default()
                },
                |p| *p == Plan::Ready,
            ),
            (
                "nothing yet",
                Observed {
                    group: true,
                    ..Default::default()
                },
                |p| matches!(p, Plan::Step(Step::CreateNsg(_))),
            ),
            (
                "nsg only",
                Observed {
                    group: true,
                    nsg: Some(nsg.clone()),
                    ..Default::default()
                },
                |p| matches!(p, Plan::Step(Step::CreateVnet(_))),
            ),
            (
                "endpoint missing",
                Observed {
                    group: true,
                    subnet: Some(no_endpoint.clone()),
                    nsg: Some(nsg.clone()),
                    vnet: Some(vnet.clone()),
                    busy: None,
                },
                |p| matches!(p, Plan::Step(Step::PutSubnet(s)) if subnet_ok(s)),
            ),
            (
                "another object is writing the network: wait for it",
                Observed {
                    group: true,
                    busy: Some("AzlinVM:ns/other".into()),
                    ..Default::default()
                },
                |p| matches!(p, Plan::Wait(m) if m.contains("AzlinVM:ns/other")),
            ),
            (
                "another object is writing, but the network is ready",
                Observed {
                    group: true,
                    subnet: Some(managed_subnet(NSG)),
                    busy: Some("AzlinVM:ns/other".into()),
                    ..Default::default()
                },
                |p| *p == Plan::Ready,
            ),
            (
                "foreign vnet",
                Observed {
                    group: true,
                    nsg: Some(nsg.clone()),
                    vnet: Some(foreign_vnet.clone()),
                    ..Default::default()
                },
                |p| matches!(p, Plan::Foreign(m) if m.contains("virtual network azlin-westus2-vnet")),
            ),
        ];
        for (name, seen, check) in cases {
            let p = plan(&seen, &site(), NSG);
            assert!(check(&p), "{name}: {p:?}");
        }
    }

    #[test]
    fn managed_nsg_allows_ssh_only() {
        let nsg = managed_nsg("westus2");
        assert!(is_managed(&nsg.tags));
        assert_eq!(nsg.properties.security_rules.len(), 1);
        assert_eq!(
            nsg.properties.security_rules[0]
                .properties
                .destination_port_range
                .as_deref(),
            Some("22")
        );
        assert!(!subnet_ok(&Subnet::build("default", MANAGED_SUBNET_PREFIX)));
    }

    #[test]
    fn endpoint_detection_ignores_case() {
        let with =
            Subnet::build("default", "10.0.0.0/24").with_service_endpoint("microsoft.storage");
        assert!(has_storage_endpoint(&with));
        assert!(!has_storage_endpoint(&Subnet::build(
            "default",
            "10.0.0.0/24"
        )));
    }
}
