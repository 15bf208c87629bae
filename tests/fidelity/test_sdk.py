"""The operator's resource types and actions through Microsoft's management SDKs: their LRO
pollers (`begin_*().result()`), error parsing (`HttpResponseError.error`) and retry policy."""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.compute import models as cm
from azure.mgmt.network import models as nm
from azure.mgmt.storage import models as sm

from conftest import eventually
from helpers import LOCATION, make_group, make_network, make_nic, power_state, vm_model


def test_subscriptions_and_resource_groups(subscriptions, resources, subscription, name):
    subs = [s.subscription_id for s in subscriptions.subscriptions.list()]
    assert subscription in subs
    assert subscriptions.subscriptions.get(subscription).state == "Enabled"
    group = make_group(resources, name)
    assert group.properties.provisioning_state == "Succeeded"
    assert resources.resource_groups.check_existence(name) is True
    listed = [g.name for g in resources.resource_groups.list(filter="tagName eq 'managed-by' and tagValue eq 'azlin'")]
    assert name in listed
    resources.resource_groups.begin_delete(name).result()
    assert resources.resource_groups.check_existence(name) is False
    with pytest.raises(ResourceNotFoundError) as err:
        resources.resource_groups.get(name)
    assert err.value.error.code == "ResourceGroupNotFound"


def test_network_vnet_subnet_nsg_public_ip_nic(resources, network, name):
    make_group(resources, name)
    vnet, subnet = make_network(network, name)
    assert vnet.provisioning_state == "Succeeded"
    endpoint = subnet.service_endpoints[0]
    assert (endpoint.service, endpoint.provisioning_state) == ("Microsoft.Storage", "Succeeded")
    assert endpoint.locations == [LOCATION, "westcentralus"]
    nsg = network.network_security_groups.begin_create_or_update(
        name,
        "nsg",
        nm.NetworkSecurityGroup(
            location=LOCATION,
            security_rules=[
                nm.SecurityRule(
                    name="ssh", protocol="Tcp", access="Allow", direction="Inbound", priority=100,
                    source_address_prefix="*", source_port_range="*",
                    destination_address_prefix="*", destination_port_range="22",
                )
            ],
        ),
    ).result()
    assert [r.name for r in nsg.security_rules] == ["ssh"]
    assert len(nsg.default_security_rules) == 6
    assert {r.priority for r in nsg.default_security_rules} == {65000, 65001, 65500}
    pip = network.public_ip_addresses.begin_create_or_update(
        name, "pip", nm.PublicIPAddress(location=LOCATION, sku=nm.PublicIPAddressSku(name="Standard"),
                                        public_ip_allocation_method="Static")
    ).result()
    assert pip.ip_address
    nic = make_nic(network, name, "nic", subnet, public_ip=pip, nsg=nsg)
    assert nic.ip_configurations[0].private_ip_address.startswith("10.20.0.")
    assert network.public_ip_addresses.get(name, "pip").ip_configuration.id.lower() == nic.ip_configurations[0].id.lower()
    # In-use resources refuse deletion with ARM's codes, parsed by the SDK.
    with pytest.raises(HttpResponseError) as err:
        network.public_ip_addresses.begin_delete(name, "pip").result()
    assert err.value.error.code == "PublicIPAddressCannotBeDeleted"
    network.network_interfaces.begin_delete(name, "nic").result()
    network.public_ip_addresses.begin_delete(name, "pip").result()
    network.network_security_groups.begin_delete(name, "nsg").result()
    with pytest.raises(ResourceNotFoundError):
        network.network_interfaces.get(name, "nic")


def test_vm_lifecycle_power_resize_and_delete(resources, network, compute, subscription, name):
    make_group(resources, name)
    _, subnet = make_network(network, name)
    nic = make_nic(network, name, "vm-nic", subnet)
    vm = compute.virtual_machines.begin_create_or_update(name, "vm", vm_model(nic)).result()
    assert vm.provisioning_state == "Succeeded"
    assert vm.etag
    # Compute upper-cases the resource group in ids and references.
    assert f"/resourceGroups/{name.upper()}/" in vm.id
    assert f"/resourceGroups/{name.upper()}/" in vm.storage_profile.os_disk.managed_disk.id
    got = compute.virtual_machines.get(name, "vm", expand="instanceView")
    assert power_state(got) == "PowerState/running"
    assert [v.name for v in compute.virtual_machines.list(name)] == ["vm"]
    status_only = {v.name: v for v in compute.virtual_machines.list_all(status_only="true")}
    assert power_state(status_only["vm"]) == "PowerState/running"
    # NIC attached to a VM cannot be deleted.
    with pytest.raises(HttpResponseError) as err:
        network.network_interfaces.begin_delete(name, "vm-nic").result()
    assert err.value.error.code == "NicInUse"
    compute.virtual_machines.begin_power_off(name, "vm").result()
    assert power_state(compute.virtual_machines.instance_view(name, "vm")) == "PowerState/stopped"
    compute.virtual_machines.begin_start(name, "vm").result()
    compute.virtual_machines.begin_restart(name, "vm").result()
    assert power_state(compute.virtual_machines.instance_view(name, "vm")) == "PowerState/running"
    # Resizing across hardware families needs a deallocated VM.
    vm.hardware_profile.vm_size = "Standard_E4s_v5"
    with pytest.raises(HttpResponseError) as err:
        compute.virtual_machines.begin_create_or_update(name, "vm", vm).result()
    assert err.value.error.code == "OperationNotAllowed"
    compute.virtual_machines.begin_deallocate(name, "vm").result()
    os_disk = compute.disks.get(name, vm.storage_profile.os_disk.name)
    assert os_disk.disk_state == "Reserved"
    assert os_disk.disk_size_bytes == os_disk.disk_size_gb * 1024**3
    resized = compute.virtual_machines.begin_update(
        name, "vm", cm.VirtualMachineUpdate(hardware_profile=cm.HardwareProfile(vm_size="Standard_E4s_v5"))
    ).result()
    assert resized.hardware_profile.vm_size == "Standard_E4s_v5"
    assert resized.etag != vm.etag
    compute.virtual_machines.begin_start(name, "vm").result()
    assert compute.disks.get(name, vm.storage_profile.os_disk.name).disk_state == "Attached"
    compute.virtual_machines.begin_delete(name, "vm").result()
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get(name, "vm")
    # deleteOption Delete took the NIC and disks along.
    with pytest.raises(ResourceNotFoundError):
        network.network_interfaces.get(name, "vm-nic")
    assert list(compute.disks.list_by_resource_group(name)) == []


def test_malformed_ssh_key_is_rejected(resources, network, compute, name):
    make_group(resources, name)
    _, subnet = make_network(network, name)
    nic = make_nic(network, name, "nic", subnet)
    with pytest.raises(HttpResponseError) as err:
        compute.virtual_machines.begin_create_or_update(
            name, "vm", vm_model(nic, key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0 truncated")
        ).result()
    assert err.value.status_code == 400
    assert (err.value.error.code, err.value.error.target) == (
        "InvalidParameter",
        "linuxConfiguration.ssh.publicKeys.keyData",
    )


def test_disks_and_snapshots_incremental_copy_and_copy_start(resources, compute, name):
    make_group(resources, name)
    disk = compute.disks.begin_create_or_update(
        name, "data", cm.Disk(location=LOCATION, sku=cm.DiskSku(name="Premium_LRS"), disk_size_gb=64,
                              creation_data=cm.CreationData(create_option="Empty"))
    ).result()
    assert (disk.provisioning_state, disk.disk_state, disk.disk_size_gb) == ("Succeeded", "Unattached", 64)
    snap = compute.snapshots.begin_create_or_update(
        name, "snap", cm.Snapshot(location=LOCATION, incremental=True,
                                  creation_data=cm.CreationData(create_option="Copy", source_resource_id=disk.id))
    ).result()
    assert snap.incremental is True and snap.disk_size_gb == 64
    restored = compute.disks.begin_create_or_update(
        name, "restored", cm.Disk(location=LOCATION,
                                  creation_data=cm.CreationData(create_option="Copy", source_resource_id=snap.id))
    ).result()
    assert restored.disk_size_gb == 64
    dr = name + "dr"
    make_group(resources, dr, location="eastus2")
    remote = compute.snapshots.begin_create_or_update(
        dr, "snap-eastus2", cm.Snapshot(location="eastus2", incremental=True,
                                        creation_data=cm.CreationData(create_option="CopyStart", source_resource_id=snap.id))
    ).result()
    assert remote.provisioning_state == "Succeeded"
    eventually("the CopyStart copy completes",
               lambda: compute.snapshots.get(dr, "snap-eastus2").completion_percent == 100)
    for op in (compute.snapshots.begin_delete(dr, "snap-eastus2"), compute.disks.begin_delete(name, "restored"),
               compute.snapshots.begin_delete(name, "snap"), compute.disks.begin_delete(name, "data")):
        op.result()
    assert list(compute.disks.list_by_resource_group(name)) == []


def test_storage_account_network_rules_nfs_share_and_synchronous_deletes(resources, network, storage, name):
    make_group(resources, name)
    _, subnet = make_network(network, name)
    account = name + "nfs"
    assert storage.storage_accounts.check_name_availability(
        sm.StorageAccountCheckNameAvailabilityParameters(name=account)).name_available is True
    created = storage.storage_accounts.begin_create(
        name, account,
        sm.StorageAccountCreateParameters(
            location=LOCATION, kind="FileStorage", sku=sm.Sku(name="Premium_LRS"),
            enable_https_traffic_only=False, minimum_tls_version="TLS1_2",
            network_rule_set=sm.NetworkRuleSet(
                default_action="Deny", bypass="AzureServices",
                virtual_network_rules=[sm.VirtualNetworkRule(virtual_network_resource_id=subnet.id, action="Allow")],
            ),
        ),
    ).result()
    assert created.provisioning_state == "Succeeded"
    assert created.network_rule_set.virtual_network_rules[0].virtual_network_resource_id.lower() == subnet.id.lower()
    taken = storage.storage_accounts.check_name_availability(
        sm.StorageAccountCheckNameAvailabilityParameters(name=account))
    assert (taken.name_available, taken.reason) == (False, "AlreadyExists")
    other = name + "b"
    make_group(resources, other)
    with pytest.raises(HttpResponseError) as err:
        storage.storage_accounts.begin_create(
            other, account, sm.StorageAccountCreateParameters(location=LOCATION, kind="FileStorage",
                                                              sku=sm.Sku(name="Premium_LRS"))
        ).result()
    assert err.value.error.code == "StorageAccountInAnotherResourceGroup"
    keys = storage.storage_accounts.list_keys(name, account)
    assert [k.key_name for k in keys["keys"]] == ["key1", "key2"]
    share = storage.file_shares.create(
        name, account, "home", sm.FileShare(enabled_protocols="NFS", root_squash="NoRootSquash", share_quota=100)
    )
    assert (share.enabled_protocols, share.share_quota) == ("NFS", 100)
    updated = storage.file_shares.update(name, account, "home", sm.FileShare(share_quota=200))
    assert updated.share_quota == 200
    with pytest.raises(HttpResponseError) as err:
        storage.file_shares.create(name, account, "tiny", sm.FileShare(enabled_protocols="NFS", share_quota=50))
    assert err.value.error.code == "InvalidParameter"
    # Shares and accounts are deleted synchronously (200), which the SDK requires.
    storage.file_shares.delete(name, account, "home")
    with pytest.raises(ResourceNotFoundError):
        storage.file_shares.get(name, account, "home")
    storage.storage_accounts.delete(name, account)
    with pytest.raises(ResourceNotFoundError):
        storage.storage_accounts.get_properties(name, account)


def test_generic_resources_expand_and_rate_limit_headers(resources, network, compute, name):
    make_group(resources, name)
    make_network(network, name)
    listed = list(resources.resources.list_by_resource_group(name, expand="createdTime,changedTime,provisioningState"))
    assert [(r.type, r.provisioning_state) for r in listed] == [("Microsoft.Network/virtualNetworks", "Succeeded")]
    assert listed[0].created_time is not None and listed[0].changed_time is not None
    headers = {}
    resources.resource_groups.get(name, raw_response_hook=lambda r: headers.update(r.http_response.headers))
    assert int(headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0
    headers.clear()
    list(compute.virtual_machines.list(name, raw_response_hook=lambda r: headers.update(r.http_response.headers)))
    assert headers["x-ms-ratelimit-remaining-resource"].startswith("Microsoft.Compute/LowCostGet3Min;")


def test_sdk_retry_policy_honours_throttling(resources, base_url, name):
    import requests

    make_group(resources, name)
    injected = requests.post(f"{base_url}/_emulator/inject", json={
        "method": "GET", "pathContains": f"/resourcegroups/{name}", "status": 429,
        "code": "TooManyRequests", "retryAfter": 1, "times": 1,
    })
    assert injected.status_code == 204
    assert resources.resource_groups.get(name).name == name
    log = requests.get(f"{base_url}/_emulator/requests").json()
    statuses = [r["status"] for r in log if r["method"] == "GET" and r["path"].lower().endswith(f"/resourcegroups/{name}")]
    assert statuses[-2:] == [429, 200]


def test_existing_resource_errors_parse(resources, network, name):
    make_group(resources, name)
    make_network(network, name)
    with pytest.raises(HttpResponseError) as err:
        network.subnets.begin_create_or_update(
            name, "vnet", "outside", nm.Subnet(address_prefix="192.168.0.0/24")).result()
    assert err.value.error.code == "NetcfgSubnetRangeOutsideVnet"
    assert not isinstance(err.value, ResourceExistsError)


def test_resource_graph_pages_rows_with_power_states(resources, network, compute, graph, subscription, name):
    from azure.mgmt.resourcegraph import models as gm

    make_group(resources, name)
    _, subnet = make_network(network, name)
    for vm in ("a", "b", "c"):
        nic = make_nic(network, name, f"{vm}-nic", subnet)
        compute.virtual_machines.begin_create_or_update(name, vm, vm_model(nic)).result()
    compute.virtual_machines.begin_deallocate(name, "b").result()
    query = (
        f"Resources | where resourceGroup =~ '{name.upper()}' "
        "and type =~ 'Microsoft.Compute/virtualMachines' | order by name asc"
    )
    rows, token = [], None
    while True:
        page = graph.resources(
            gm.QueryRequest(
                subscriptions=[subscription],
                query=query,
                options=gm.QueryRequestOptions(top=2, skip_token=token, result_format="objectArray"),
            )
        )
        assert page.total_records == 3
        assert page.result_truncated == "false"
        rows += page.data
        token = page.skip_token
        if not token:
            break
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    states = [r["properties"]["extended"]["instanceView"]["powerState"]["code"] for r in rows]
    assert states == ["PowerState/running", "PowerState/deallocated", "PowerState/running"]
    assert {r["resourceGroup"] for r in rows} == {name}
    assert rows[0]["type"] == "microsoft.compute/virtualmachines"
    # A query the service cannot parse is an error the SDK parses, with the parser's detail.
    with pytest.raises(HttpResponseError) as err:
        graph.resources(gm.QueryRequest(subscriptions=[subscription], query="Resources | where name = 'x'"))
    assert err.value.status_code == 400
    assert [d.code for d in err.value.error.details] == ["InvalidQuery", "ParserFailure"]
