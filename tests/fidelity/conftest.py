"""Fixtures for the fidelity suite: Microsoft's official management SDKs pointed at the emulator.

The emulator is started by crates/arm-emulator/tests/fidelity.rs (HTTPS, request budgets on),
which passes its URL and CA bundle in the environment. Credentials come from azure-identity's
ManagedIdentityCredential against the emulator's managed-identity endpoint (IDENTITY_ENDPOINT /
IDENTITY_HEADER, the App Service protocol), so no test needs Azure or a network.
"""

import os
import time
import uuid

import pytest
from azure.identity import ManagedIdentityCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.storage import StorageManagementClient

SCOPES = ["https://management.azure.com/.default"]
LOCATION = "westus2"


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite through `cargo test -p azlin-arm-emulator --test fidelity`", 2)
    return value


@pytest.fixture(scope="session")
def base_url():
    return _env("AZLIN_EMULATOR_URL")


@pytest.fixture(scope="session")
def subscription():
    return _env("AZLIN_SUBSCRIPTION")


@pytest.fixture(scope="session")
def credential():
    return ManagedIdentityCredential()


def _client(cls, credential, subscription, base_url, **kwargs):
    return cls(credential, subscription, base_url=base_url, credential_scopes=SCOPES, **kwargs)


@pytest.fixture(scope="session")
def resources(credential, subscription, base_url):
    return _client(ResourceManagementClient, credential, subscription, base_url)


@pytest.fixture(scope="session")
def subscriptions(credential, base_url):
    return SubscriptionClient(credential, base_url=base_url, credential_scopes=SCOPES)


@pytest.fixture(scope="session")
def network(credential, subscription, base_url):
    return _client(NetworkManagementClient, credential, subscription, base_url)


@pytest.fixture(scope="session")
def compute(credential, subscription, base_url):
    return _client(ComputeManagementClient, credential, subscription, base_url)


@pytest.fixture(scope="session")
def storage(credential, subscription, base_url):
    return _client(StorageManagementClient, credential, subscription, base_url)


@pytest.fixture(scope="session")
def graph(credential, base_url):
    return ResourceGraphClient(credential, base_url=base_url, credential_scopes=SCOPES)


@pytest.fixture
def name():
    """A fresh lower-case name prefix per test."""
    return "fid" + uuid.uuid4().hex[:8]


def eventually(what, check, timeout=30.0, interval=0.1):
    """Polls `check` until it returns a truthy value; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}: last {last!r}")
        time.sleep(interval)
