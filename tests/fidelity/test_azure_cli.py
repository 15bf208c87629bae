"""azure-cli against the emulator: registered as a custom cloud (with endpoint discovery from
/metadata/endpoints), logged in offline with a managed identity (the emulator's token endpoint),
then a few read commands."""

import json
import os
import subprocess

from helpers import make_group, make_network


def az(*args):
    result = subprocess.run([os.environ["AZLIN_AZ"], *args, "--only-show-errors"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, f"az {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_azure_cli_reads_emulated_state(resources, network, base_url, subscription, name):
    make_group(resources, name)
    make_network(network, name)
    az("cloud", "register", "--name", "AzlinEmulator", "--endpoint-resource-manager", base_url + "/")
    az("cloud", "set", "--name", "AzlinEmulator")
    accounts = json.loads(az("login", "--identity", "--output", "json"))
    assert subscription in [a["id"] for a in accounts]
    az("account", "set", "--subscription", subscription)
    shown = json.loads(az("account", "show", "--output", "json"))
    assert (shown["id"], shown["environmentName"]) == (subscription, "AzlinEmulator")
    groups = json.loads(az("group", "list", "--output", "json"))
    assert name in [g["name"] for g in groups]
    vnets = json.loads(az("network", "vnet", "list", "--resource-group", name, "--output", "json"))
    assert [v["name"] for v in vnets] == ["vnet"]
    assert vnets[0]["subnets"][0]["serviceEndpoints"][0]["service"] == "Microsoft.Storage"
    listed = json.loads(az("resource", "list", "--resource-group", name, "--output", "json"))
    assert [r["type"] for r in listed] == ["Microsoft.Network/virtualNetworks"]
    vms = json.loads(az("vm", "list", "--resource-group", name, "--output", "json"))
    assert vms == []
