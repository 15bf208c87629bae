//! `Microsoft.Network` (api-version 2024-05-01): virtual networks and subnets, network security
//! groups, public IP addresses, network interfaces.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::ArmClient;
use super::collection::ResourceOps;
use super::models::{ProvisioningState, Resource, Sku, SubResource};

const PROVIDER: &str = "Microsoft.Network";

/// `addressSpace` of a virtual network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpace {
    /// CIDR prefixes.
    #[serde(default)]
    pub address_prefixes: Vec<String>,
}

/// Properties of a virtual network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetworkProperties {
    /// Address space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<AddressSpace>,
    /// Subnets. A PUT without the existing subnets deletes them: keep them on read-modify-write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Subnet>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A virtual network.
pub type VirtualNetwork = Resource<VirtualNetworkProperties>;

impl VirtualNetwork {
    /// A virtual network body with address prefixes and subnets.
    pub fn build(
        location: &str,
        address_prefixes: &[&str],
        subnets: Vec<Subnet>,
    ) -> VirtualNetwork {
        Resource::new(
            location,
            VirtualNetworkProperties {
                address_space: Some(AddressSpace {
                    address_prefixes: address_prefixes.iter().map(|s| s.to_string()).collect(),
                }),
                subnets,
                ..Default::default()
            },
        )
    }
}

/// A service endpoint on a subnet (e.g. `Microsoft.Storage` for NFS shares).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoint {
    /// Service, e.g. `Microsoft.Storage`.
    pub service: String,
    /// Regions (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// Other fields, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Properties of a subnet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    /// Single prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<String>,
    /// Multiple prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address_prefixes: Vec<String>,
    /// Service endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_endpoints: Vec<ServiceEndpoint>,
    /// Associated NSG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties (e.g. `ipConfigurations`), preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A subnet (inline in a virtual network or as a child resource; no location).
pub type Subnet = Resource<SubnetProperties>;

impl Subnet {
    /// A subnet body named `name` (the name matters when inlined in a virtual network).
    pub fn build(name: &str, address_prefix: &str) -> Subnet {
        Resource {
            name: Some(name.to_string()),
            properties: SubnetProperties {
                address_prefix: Some(address_prefix.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Adds a service endpoint (e.g. `Microsoft.Storage`) unless present.
    pub fn with_service_endpoint(mut self, service: &str) -> Subnet {
        if !self
            .properties
            .service_endpoints
            .iter()
            .any(|e| e.service.eq_ignore_ascii_case(service))
        {
            self.properties.service_endpoints.push(ServiceEndpoint {
                service: service.to_string(),
                ..Default::default()
            });
        }
        self
    }

    /// Associates an NSG.
    pub fn with_nsg(mut self, nsg_id: impl ToString) -> Subnet {
        self.properties.network_security_group = Some(SubResource::new(nsg_id));
        self
    }
}

/// Properties of a security rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    /// `Tcp`, `Udp`, `Icmp` or `*`.
    pub protocol: String,
    /// Source port range, e.g. `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    /// Destination port range, e.g. `22`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    /// Source prefix, e.g. `*` or a CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    /// Destination prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    /// `Allow` or `Deny`.
    pub access: String,
    /// 100..4096, lower wins.
    pub priority: u32,
    /// `Inbound` or `Outbound`.
    pub direction: String,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A security rule (inline in an NSG).
pub type SecurityRule = Resource<SecurityRuleProperties>;

impl SecurityRule {
    /// An inbound TCP allow rule for `port` from `source` (e.g. SSH: `("allow-ssh", 1000, 22, "*")`).
    pub fn allow_inbound_tcp(name: &str, priority: u32, port: u16, source: &str) -> SecurityRule {
        Resource {
            name: Some(name.to_string()),
            properties: SecurityRuleProperties {
                protocol: "Tcp".to_string(),
                source_port_range: Some("*".to_string()),
                destination_port_range: Some(port.to_string()),
                source_address_prefix: Some(source.to_string()),
                destination_address_prefix: Some("*".to_string()),
                access: "Allow".to_string(),
                priority,
                direction: "Inbound".to_string(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Properties of a network security group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSecurityGroupProperties {
    /// Rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_rules: Vec<SecurityRule>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A network security group.
pub type NetworkSecurityGroup = Resource<NetworkSecurityGroupProperties>;

impl NetworkSecurityGroup {
    /// An NSG body with `rules`.
    pub fn build(location: &str, rules: Vec<SecurityRule>) -> NetworkSecurityGroup {
        Resource::new(
            location,
            NetworkSecurityGroupProperties {
                security_rules: rules,
                ..Default::default()
            },
        )
    }
}

/// Properties of a public IP address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublicIpAddressProperties {
    /// `Static` or `Dynamic` (Standard SKU requires Static).
    #[serde(
        rename = "publicIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allocation_method: Option<String>,
    /// `IPv4` or `IPv6`.
    #[serde(
        rename = "publicIPAddressVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_version: Option<String>,
    /// The allocated address (read-only).
    #[serde(rename = "ipAddress", default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// Provisioning state (read-only).
    #[serde(
        rename = "provisioningState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A public IP address.
pub type PublicIpAddress = Resource<PublicIpAddressProperties>;

impl PublicIpAddress {
    /// A Standard-SKU static IPv4 address body.
    pub fn standard_static(location: &str) -> PublicIpAddress {
        Resource {
            sku: Some(Sku {
                name: "Standard".to_string(),
                tier: Some("Regional".to_string()),
            }),
            ..Resource::new(
                location,
                PublicIpAddressProperties {
                    allocation_method: Some("Static".to_string()),
                    ip_version: Some("IPv4".to_string()),
                    ..Default::default()
                },
            )
        }
    }
}

/// Properties of a NIC IP configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfigurationProperties {
    /// Subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    /// Public IP.
    #[serde(
        rename = "publicIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address: Option<SubResource>,
    /// `Dynamic` or `Static`.
    #[serde(
        rename = "privateIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_allocation_method: Option<String>,
    /// Private address (read-only with Dynamic).
    #[serde(
        rename = "privateIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address: Option<String>,
    /// Primary configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// Provisioning state (read-only).
    #[serde(
        rename = "provisioningState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A NIC IP configuration (inline in a NIC).
pub type IpConfiguration = Resource<IpConfigurationProperties>;

/// Properties of a network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    /// IP configurations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_configurations: Vec<IpConfiguration>,
    /// NSG on the NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    /// The VM using the NIC (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine: Option<SubResource>,
    /// Provisioning state (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Other properties, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A network interface.
pub type NetworkInterface = Resource<NetworkInterfaceProperties>;

impl NetworkInterface {
    /// A NIC body with one primary dynamic IP configuration `ipconfig1` in `subnet_id`, optionally
    /// with a public IP and an NSG.
    pub fn build(
        location: &str,
        subnet_id: impl ToString,
        public_ip_id: Option<String>,
        nsg_id: Option<String>,
    ) -> NetworkInterface {
        let ipconfig = IpConfiguration {
            name: Some("ipconfig1".to_string()),
            properties: IpConfigurationProperties {
                subnet: Some(SubResource::new(subnet_id)),
                public_ip_address: public_ip_id.map(SubResource::new),
                private_ip_allocation_method: Some("Dynamic".to_string()),
                primary: Some(true),
                ..Default::default()
            },
            ..Default::default()
        };
        Resource::new(
            location,
            NetworkInterfaceProperties {
                ip_configurations: vec![ipconfig],
                network_security_group: nsg_id.map(SubResource::new),
                ..Default::default()
            },
        )
    }

    /// The primary (or first) private IP address.
    pub fn private_ip(&self) -> Option<&str> {
        let configs = &self.properties.ip_configurations;
        configs
            .iter()
            .find(|c| c.properties.primary == Some(true))
            .or_else(|| configs.first())
            .and_then(|c| c.properties.private_ip_address.as_deref())
    }
}

/// Network operations; from [`ArmClient::network`].
#[derive(Debug, Clone, Copy)]
pub struct Network<'a> {
    client: &'a ArmClient,
}

impl ArmClient {
    /// `Microsoft.Network` resources.
    pub fn network(&self) -> Network<'_> {
        Network { client: self }
    }
}

impl<'a> Network<'a> {
    /// Virtual networks in `resource_group`.
    pub fn virtual_networks(
        &self,
        resource_group: &str,
    ) -> ResourceOps<'a, VirtualNetworkProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "virtualNetworks")
    }

    /// Subnets of virtual network `vnet` (a subnet PUT is a long-running operation of its own).
    pub fn subnets(&self, resource_group: &str, vnet: &str) -> ResourceOps<'a, SubnetProperties> {
        let parent = self.virtual_networks(resource_group).id(vnet);
        ResourceOps::children_of(self.client, parent, "subnets")
    }

    /// Network security groups in `resource_group`.
    pub fn security_groups(
        &self,
        resource_group: &str,
    ) -> ResourceOps<'a, NetworkSecurityGroupProperties> {
        ResourceOps::in_group(
            self.client,
            resource_group,
            PROVIDER,
            "networkSecurityGroups",
        )
    }

    /// Public IP addresses in `resource_group`.
    pub fn public_ips(&self, resource_group: &str) -> ResourceOps<'a, PublicIpAddressProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "publicIPAddresses")
    }

    /// Network interfaces in `resource_group`.
    pub fn interfaces(&self, resource_group: &str) -> ResourceOps<'a, NetworkInterfaceProperties> {
        ResourceOps::in_group(self.client, resource_group, PROVIDER, "networkInterfaces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nic_body_shape() {
        let nic = NetworkInterface::build(
            "westus2",
            "/sub/subnet",
            Some("/sub/pip".into()),
            Some("/sub/nsg".into()),
        );
        let v = serde_json::to_value(&nic).expect("ser");
        assert_eq!(
            v,
            json!({
                "location": "westus2",
                "properties": {
                    "ipConfigurations": [{
                        "name": "ipconfig1",
                        "properties": {
                            "subnet": {"id": "/sub/subnet"},
                            "publicIPAddress": {"id": "/sub/pip"},
                            "privateIPAllocationMethod": "Dynamic",
                            "primary": true
                        }
                    }],
                    "networkSecurityGroup": {"id": "/sub/nsg"}
                }
            })
        );
    }

    #[test]
    fn vnet_subnet_nsg_pip_shapes() {
        let vnet = VirtualNetwork::build(
            "westus2",
            &["10.0.0.0/16"],
            vec![
                Subnet::build("default", "10.0.0.0/24")
                    .with_service_endpoint("Microsoft.Storage")
                    .with_service_endpoint("microsoft.storage")
                    .with_nsg("/nsg"),
            ],
        );
        let v = serde_json::to_value(&vnet).expect("ser");
        assert_eq!(
            v["properties"]["addressSpace"]["addressPrefixes"],
            json!(["10.0.0.0/16"])
        );
        assert_eq!(
            v["properties"]["subnets"][0],
            json!({"name": "default", "properties": {"addressPrefix": "10.0.0.0/24", "serviceEndpoints": [{"service": "Microsoft.Storage"}], "networkSecurityGroup": {"id": "/nsg"}}})
        );
        let nsg = NetworkSecurityGroup::build(
            "westus2",
            vec![SecurityRule::allow_inbound_tcp("allow-ssh", 1000, 22, "*")],
        );
        let v = serde_json::to_value(&nsg).expect("ser");
        assert_eq!(
            v["properties"]["securityRules"][0]["properties"]["destinationPortRange"],
            json!("22")
        );
        assert_eq!(
            v["properties"]["securityRules"][0]["properties"]["direction"],
            json!("Inbound")
        );
        let pip = serde_json::to_value(PublicIpAddress::standard_static("westus2")).expect("ser");
        assert_eq!(pip["sku"]["name"], json!("Standard"));
        assert_eq!(
            pip["properties"]["publicIPAllocationMethod"],
            json!("Static")
        );
    }

    #[test]
    fn reads_nic_addresses() {
        let nic: NetworkInterface = serde_json::from_value(json!({
            "id": "/x", "properties": {"provisioningState": "Succeeded", "ipConfigurations": [
                {"name": "a", "properties": {"privateIPAddress": "10.0.0.5", "primary": false}},
                {"name": "b", "properties": {"privateIPAddress": "10.0.0.4", "primary": true}}
            ], "virtualMachine": {"id": "/vm"}, "macAddress": "00-0D"}
        }))
        .expect("de");
        assert_eq!(nic.private_ip(), Some("10.0.0.4"));
        assert_eq!(
            nic.properties.virtual_machine,
            Some(SubResource::new("/vm"))
        );
        assert!(nic.properties.extra.contains_key("macAddress"));
    }
}
