"""Resource bodies shared by the fidelity tests (the shapes the operator sends)."""

from azure.mgmt.compute import models as cm
from azure.mgmt.network import models as nm

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl fidelity@azlin"
LOCATION = "westus2"


def make_group(resources, name, location=LOCATION):
    return resources.resource_groups.create_or_update(name, {"location": location, "tags": {"managed-by": "azlin"}})


def make_network(network, rg, location=LOCATION, prefix="10.20"):
    """A vnet with subnet `default` (service endpoint Microsoft.Storage), via the SDK poller."""
    vnet = network.virtual_networks.begin_create_or_update(
        rg,
        "vnet",
        nm.VirtualNetwork(
            location=location,
            address_space=nm.AddressSpace(address_prefixes=[f"{prefix}.0.0/16"]),
            subnets=[
                nm.Subnet(
                    name="default",
                    address_prefix=f"{prefix}.0.0/24",
                    service_endpoints=[nm.ServiceEndpointPropertiesFormat(service="Microsoft.Storage")],
                )
            ],
        ),
    ).result()
    return vnet, network.subnets.get(rg, "vnet", "default")


def make_nic(network, rg, name, subnet, location=LOCATION, public_ip=None, nsg=None):
    config = nm.NetworkInterfaceIPConfiguration(
        name="ipconfig1",
        subnet=nm.Subnet(id=subnet.id),
        private_ip_allocation_method="Dynamic",
        public_ip_address=nm.PublicIPAddress(id=public_ip.id) if public_ip else None,
    )
    return network.network_interfaces.begin_create_or_update(
        rg,
        name,
        nm.NetworkInterface(
            location=location,
            ip_configurations=[config],
            network_security_group=nm.NetworkSecurityGroup(id=nsg.id) if nsg else None,
        ),
    ).result()


def vm_model(nic, size="Standard_D2s_v5", location=LOCATION, key=SSH_KEY):
    return cm.VirtualMachine(
        location=location,
        tags={"managed-by": "azlin"},
        hardware_profile=cm.HardwareProfile(vm_size=size),
        storage_profile=cm.StorageProfile(
            image_reference=cm.ImageReference(
                publisher="Canonical", offer="ubuntu-24_04-lts", sku="server", version="latest"
            ),
            os_disk=cm.OSDisk(
                create_option="FromImage",
                managed_disk=cm.ManagedDiskParameters(storage_account_type="Premium_LRS"),
                delete_option="Delete",
            ),
            data_disks=[cm.DataDisk(lun=0, create_option="Empty", disk_size_gb=16, delete_option="Delete")],
        ),
        os_profile=cm.OSProfile(
            computer_name="azlin",
            admin_username="azureuser",
            custom_data="I2Nsb3VkLWNvbmZpZwo=",
            linux_configuration=cm.LinuxConfiguration(
                disable_password_authentication=True,
                ssh=cm.SshConfiguration(
                    public_keys=[cm.SshPublicKey(path="/home/azureuser/.ssh/authorized_keys", key_data=key)]
                ),
            ),
        ),
        network_profile=cm.NetworkProfile(
            network_interfaces=[cm.NetworkInterfaceReference(id=nic.id, primary=True, delete_option="Delete")]
        ),
    )


def power_state(vm_or_view):
    view = getattr(vm_or_view, "instance_view", None) or vm_or_view
    codes = [s.code for s in (view.statuses or [])]
    return next((c for c in codes if c.startswith("PowerState/")), None)
