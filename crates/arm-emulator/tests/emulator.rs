//! The ARM emulator over real HTTP (reqwest to 127.0.0.1:0).

use std::time::{Duration, Instant};

use azlin_arm_emulator::testing::{self as t, DISK_API, NETWORK_API, RG_API, STORAGE_API, VM_API};
use azlin_arm_emulator::{
    Emulator, EmulatorConfig, EmulatorHandle, ErrorInjection, NfsAccessError, PowerState,
};
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

struct Env {
    handle: EmulatorHandle,
    client: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    fn target(&self) -> &str {
        self.body
            .pointer("/error/target")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// Status, error code and error target, compared at once.
    fn error(&self) -> (StatusCode, &str, &str) {
        (self.status, self.code(), self.target())
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn state(&self) -> &str {
        self.body
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

fn config(latency_ms: u64) -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(latency_ms),
        ..EmulatorConfig::default()
    }
}

impl Env {
    async fn start(config: EmulatorConfig) -> Self {
        let handle = Emulator::start(config).await.expect("emulator starts");
        Self {
            handle,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str, api: &str) -> String {
        if path.starts_with("http") {
            return path.to_string();
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version={api}", self.handle.base_url())
    }

    async fn send(&self, method: reqwest::Method, url: String, body: Option<&Value>) -> Answer {
        self.send_as("test-token", method, url, body).await
    }

    /// Sends with a given bearer token (the principal ARM's budgets are kept for).
    async fn send_as(
        &self,
        token: &str,
        method: reqwest::Method,
        url: String,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.client.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn put(&self, path: &str, api: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::PUT, self.url(path, api), Some(body))
            .await
    }
    async fn get(&self, path: &str, api: &str) -> Answer {
        self.send(reqwest::Method::GET, self.url(path, api), None)
            .await
    }
    /// POSTs power `action` to `vm` (accepted), then checks that the power state passes
    /// through `PowerState/{via}` first and reaches `PowerState/{end}`.
    async fn power_action(&self, vm: &str, action: &str, via: &str, end: &str) {
        assert_eq!(
            self.post(&format!("{vm}/{action}"), VM_API).await.status,
            StatusCode::ACCEPTED
        );
        let seen = self.wait_power(vm, &format!("PowerState/{end}")).await;
        assert_eq!(
            seen.first().map(String::as_str),
            Some(format!("PowerState/{via}").as_str()),
            "{seen:?}"
        );
    }
    /// PUTs an NFS share `home` of 100 GiB into storage account `account` of group `nfs`.
    async fn put_nfs_home_share(&self, account: &str) -> Answer {
        self.put(
            &t::share_id("nfs", account, "home"),
            STORAGE_API,
            &t::nfs_share_body(100),
        )
        .await
    }
    async fn delete(&self, path: &str, api: &str) -> Answer {
        self.send(reqwest::Method::DELETE, self.url(path, api), None)
            .await
    }
    async fn patch(&self, path: &str, api: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::PATCH, self.url(path, api), Some(body))
            .await
    }
    async fn post(&self, path: &str, api: &str) -> Answer {
        self.send(reqwest::Method::POST, self.url(path, api), Some(&json!({})))
            .await
    }

    /// Polls GET until provisioningState is Succeeded (no provisioningState counts as done, as ARM says).
    async fn wait_succeeded(&self, path: &str, api: &str) -> Answer {
        eventually(&format!("{path} succeeds"), 10, async || {
            let a = self.get(path, api).await;
            let done = a.state() == "Succeeded"
                || a.body.pointer("/properties/provisioningState").is_none();
            if a.status == StatusCode::OK && done {
                Ok(a)
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        })
        .await
    }

    /// Polls GET until 404.
    async fn wait_gone(&self, path: &str, api: &str) {
        eventually(&format!("{path} goes away"), 10, async || {
            let a = self.get(path, api).await;
            if a.status == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        })
        .await
    }

    /// Polls a VM's instance view until the power status is `code`; returns the power statuses seen.
    async fn wait_power(&self, vm: &str, code: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        eventually(&format!("{vm} reaches {code}"), 10, async || {
            let a = self.get(&format!("{vm}/instanceView"), VM_API).await;
            let power = statuses(&a.body)
                .into_iter()
                .find(|s| s.starts_with("PowerState/"))
                .unwrap_or_default();
            if seen.last() != Some(&power) {
                seen.push(power.clone());
            }
            if power == code {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
        .await;
        seen
    }

    /// Polls a URL until it answers `status`.
    async fn wait_status(&self, url: &str, api: &str, status: StatusCode) -> Answer {
        eventually(&format!("{url} answers {status}"), 10, async || {
            let a = self.get(url, api).await;
            if a.status == status {
                Ok(a)
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        })
        .await
    }

    /// Resource group + vnet (subnet `default`), all Succeeded.
    async fn network(&self, rg: &str) -> String {
        assert_eq!(
            self.put(&t::rg_id(rg), RG_API, &t::rg_body()).await.status,
            StatusCode::CREATED
        );
        let vnet = t::vnet_id(rg, "vnet");
        assert_eq!(
            self.put(&vnet, NETWORK_API, &t::vnet_body()).await.status,
            StatusCode::CREATED
        );
        self.wait_succeeded(&vnet, NETWORK_API).await;
        t::subnet_id(rg, "vnet", "default")
    }

    /// NIC + VM, both Succeeded; returns the VM id.
    async fn vm(&self, rg: &str, subnet: &str, name: &str, size: &str) -> String {
        let nic = t::nic_id(rg, &format!("{name}-nic"));
        let a = self
            .put(&nic, NETWORK_API, &t::nic_body(subnet, None))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let vm = t::vm_id(rg, name);
        let a = self.put(&vm, VM_API, &t::vm_body(&nic, size)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        self.wait_succeeded(&vm, VM_API).await;
        vm
    }
}

/// Retries `check` every 10 ms until it succeeds; fails the test with its last error after `secs`.
async fn eventually<T>(
    what: &str,
    secs: u64,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn statuses(view: &Value) -> Vec<String> {
    view.get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("code").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Lists a collection following nextLink; returns all items.
async fn list_items(env: &Env, path: &str, api: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut url = env.url(path, api);
    loop {
        let a = env.send(reqwest::Method::GET, url.clone(), None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        items.extend(a.body["value"].as_array().cloned().unwrap_or_default());
        match a.body.get("nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_string(),
            None => return items,
        }
    }
}

/// Lists a collection following nextLink; returns all ids.
async fn list_all(env: &Env, path: &str, api: &str) -> Vec<String> {
    list_items(env, path, api)
        .await
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

/// PUT 201 then PUT 200, GET and list show it.
async fn create_update_get_list(env: &Env, id: &str, api: &str, body: &Value, collection: &str) {
    let created = env.put(id, api, body).await;
    if id.contains("/Microsoft.Storage/storageAccounts/") && !id.contains("/fileServices/") {
        // Storage accounts answer a create with 202, a Location to poll and no body.
        assert_eq!(
            created.status,
            StatusCode::ACCEPTED,
            "create {id}: {}",
            created.body
        );
        assert!(
            created.header("location").is_some(),
            "no Location on create of {id}"
        );
        assert!(created.header("azure-asyncoperation").is_none());
        assert!(created.body.is_null(), "no body: {}", created.body);
    } else {
        // Disks and snapshots answer 202 (with the body and both polling URLs); ARM's others 201.
        let compute_disk = id.contains("/Microsoft.Compute/disks/")
            || id.contains("/Microsoft.Compute/snapshots/");
        let expected = if compute_disk {
            StatusCode::ACCEPTED
        } else {
            StatusCode::CREATED
        };
        assert_eq!(created.status, expected, "create {id}: {}", created.body);
        if compute_disk {
            assert!(
                created.header("location").is_some(),
                "no Location on create of {id}"
            );
            assert!(created.header("azure-asyncoperation").is_some());
        }
        assert!(
            created.body["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(id)),
            "{}",
            created.body
        );
    }
    let got = env.wait_succeeded(id, api).await;
    let mut update = body.clone();
    if got.body.get("location").is_some() {
        update["tags"] = json!({ "updated": "yes" });
    }
    let updated = env.put(id, api, &update).await;
    let expected = if id.contains("/Microsoft.Compute/disks/")
        || id.contains("/Microsoft.Compute/snapshots/")
    {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    assert_eq!(updated.status, expected, "update {id}: {}", updated.body);
    env.wait_succeeded(id, api).await;
    let ids = list_all(env, collection, api).await;
    assert!(
        ids.iter().any(|i| i.eq_ignore_ascii_case(id)),
        "{id} not listed in {collection}: {ids:?}"
    );
}

async fn delete_and_wait(env: &Env, id: &str, api: &str) {
    let a = env.delete(id, api).await;
    if id.contains("/Microsoft.Storage/") {
        // The Storage RP deletes accounts and shares synchronously: 200, then gone.
        assert_eq!(a.status, StatusCode::OK, "delete {id}: {}", a.body);
        assert!(a.header("location").is_none());
        assert_eq!(env.get(id, api).await.status, StatusCode::NOT_FOUND);
        assert_eq!(env.delete(id, api).await.status, StatusCode::NO_CONTENT);
        return;
    }
    assert_eq!(a.status, StatusCode::ACCEPTED, "delete {id}: {}", a.body);
    assert!(
        a.header("location").is_some(),
        "no Location on delete of {id}"
    );
    env.wait_gone(id, api).await;
}

#[tokio::test]
async fn every_resource_type_create_update_get_list_delete() {
    let env = Env::start(config(30)).await;
    let rg = "crud";
    let rg_id = t::rg_id(rg);
    let created = env.put(&rg_id, RG_API, &t::rg_body()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.state(), "Succeeded");
    assert_eq!(
        env.put(&rg_id, RG_API, &t::rg_body()).await.status,
        StatusCode::OK
    );
    let rgs = list_all(
        &env,
        &format!("/subscriptions/{}/resourcegroups", t::SUBSCRIPTION),
        RG_API,
    )
    .await;
    assert!(rgs.contains(&rg_id));
    // Case-insensitive path segments, as ARM.
    let lower = env
        .get(
            &rg_id
                .to_lowercase()
                .replace("resourcegroups", "RESOURCEGROUPS"),
            RG_API,
        )
        .await;
    assert_eq!(lower.status, StatusCode::OK);

    let prov = |p: &str| format!("{rg_id}/providers/{p}");
    let vnet = t::vnet_id(rg, "vnet");
    create_update_get_list(
        &env,
        &vnet,
        NETWORK_API,
        &t::vnet_body(),
        &prov("Microsoft.Network/virtualNetworks"),
    )
    .await;
    let subnet = format!("{vnet}/subnets/extra");
    create_update_get_list(
        &env,
        &subnet,
        NETWORK_API,
        &json!({ "properties": { "addressPrefix": "10.0.16.0/24" } }),
        &format!("{vnet}/subnets"),
    )
    .await;
    // The vnet shows both subnets.
    let v = env.get(&vnet, NETWORK_API).await;
    assert_eq!(
        v.body["properties"]["subnets"].as_array().map(Vec::len),
        Some(2),
        "{}",
        v.body
    );
    let nsg = prov("Microsoft.Network/networkSecurityGroups/nsg");
    let nsg_body = json!({ "location": "westus2", "properties": { "securityRules": [{ "name": "ssh", "properties": {
        "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 100,
        "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22" } }] } });
    create_update_get_list(
        &env,
        &nsg,
        NETWORK_API,
        &nsg_body,
        &prov("Microsoft.Network/networkSecurityGroups"),
    )
    .await;
    let pip = prov("Microsoft.Network/publicIPAddresses/pip");
    let pip_body = json!({ "location": "westus2", "sku": { "name": "Standard" }, "properties": { "publicIPAllocationMethod": "Static" } });
    create_update_get_list(
        &env,
        &pip,
        NETWORK_API,
        &pip_body,
        &prov("Microsoft.Network/publicIPAddresses"),
    )
    .await;
    let nic = t::nic_id(rg, "nic");
    create_update_get_list(
        &env,
        &nic,
        NETWORK_API,
        &t::nic_body(&t::subnet_id(rg, "vnet", "default"), Some(&pip)),
        &prov("Microsoft.Network/networkInterfaces"),
    )
    .await;
    let n = env.get(&nic, NETWORK_API).await;
    assert_eq!(
        n.body
            .pointer("/properties/ipConfigurations/0/properties/privateIPAddress")
            .and_then(Value::as_str),
        Some("10.0.0.4")
    );
    let vm = t::vm_id(rg, "vm");
    let mut vm_body = t::vm_body(&nic, "Standard_E16as_v5");
    vm_body["properties"]["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] =
        json!("Detach");
    create_update_get_list(
        &env,
        &vm,
        VM_API,
        &vm_body,
        &prov("Microsoft.Compute/virtualMachines"),
    )
    .await;
    let got = env.get(&vm, VM_API).await;
    assert!(
        got.body
            .pointer("/properties/vmId")
            .and_then(Value::as_str)
            .is_some_and(|v| uuid::Uuid::parse_str(v).is_ok())
    );
    assert_eq!(got.body["type"], "Microsoft.Compute/virtualMachines");
    let patched = env
        .patch(&vm, VM_API, &json!({ "tags": { "owner": "alice" } }))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["tags"]["owner"], "alice");
    assert_eq!(
        patched.body["properties"]["vmId"],
        got.body["properties"]["vmId"]
    );
    env.wait_succeeded(&vm, VM_API).await;
    let disk = prov("Microsoft.Compute/disks/data1");
    let disk_body = json!({ "location": "westus2", "sku": { "name": "Premium_LRS" }, "properties": { "creationData": { "createOption": "Empty" }, "diskSizeGB": 64 } });
    create_update_get_list(
        &env,
        &disk,
        DISK_API,
        &disk_body,
        &prov("Microsoft.Compute/disks"),
    )
    .await;
    let snap = prov("Microsoft.Compute/snapshots/snap1");
    let snap_body = json!({ "location": "westus2", "properties": { "incremental": true, "creationData": { "createOption": "Copy", "sourceResourceId": disk } } });
    create_update_get_list(
        &env,
        &snap,
        DISK_API,
        &snap_body,
        &prov("Microsoft.Compute/snapshots"),
    )
    .await;
    let account = t::account_id(rg, "azlincrud01");
    create_update_get_list(
        &env,
        &account,
        STORAGE_API,
        &t::nfs_account_body(),
        &prov("Microsoft.Storage/storageAccounts"),
    )
    .await;
    let share = t::share_id(rg, "azlincrud01", "home");
    create_update_get_list(
        &env,
        &share,
        STORAGE_API,
        &t::nfs_share_body(100),
        &format!("{account}/fileServices/default/shares"),
    )
    .await;
    // Subscription-wide list.
    let all = list_all(
        &env,
        &format!(
            "/subscriptions/{}/providers/Microsoft.Compute/virtualMachines",
            t::SUBSCRIPTION
        ),
        VM_API,
    )
    .await;
    // Compute answers ids with the resource-group segment upper-cased.
    assert!(
        all.contains(&vm.replace("/resourceGroups/crud/", "/resourceGroups/CRUD/")),
        "{all:?}"
    );

    // Deletes, dependants first.
    delete_and_wait(&env, &share, STORAGE_API).await;
    for (id, api) in [
        (&vm, VM_API),
        (&nic, NETWORK_API),
        (&pip, NETWORK_API),
        (&nsg, NETWORK_API),
        (&snap, DISK_API),
        (&disk, DISK_API),
        (&account, STORAGE_API),
        (&subnet, NETWORK_API),
        (&vnet, NETWORK_API),
    ] {
        delete_and_wait(&env, id, api).await;
    }
    // Deleting what is not there is 204; a missing resource group is 404.
    assert_eq!(env.delete(&vm, VM_API).await.status, StatusCode::NO_CONTENT);
    delete_and_wait(&env, &rg_id, RG_API).await;
    let missing = env.delete(&rg_id, RG_API).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "ResourceGroupNotFound");
}

#[tokio::test]
async fn long_running_operations_expose_headers_and_poll_to_completion() {
    let env = Env::start(config(800)).await;
    let subnet = env.network("lro").await;
    let nic = t::nic_id("lro", "nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let vm = t::vm_id("lro", "vm");
    let a = env
        .put(&vm, VM_API, &t::vm_body(&nic, "Standard_D2s_v5"))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.state(), "Creating");
    assert_eq!(a.header("retry-after"), Some("1"));
    let op_url = a
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation")
        .to_string();
    assert!(
        op_url.contains("/providers/Microsoft.Compute/locations/westus2/operations/"),
        "{op_url}"
    );
    let first = env.get(&op_url, VM_API).await;
    assert_eq!(first.body["status"], "InProgress");
    // A power action while the create runs conflicts.
    let busy = env.post(&format!("{vm}/start"), VM_API).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.code(), "AnotherOperationInProgress");
    let done = eventually("the create operation succeeds", 10, async || {
        let s = env.get(&op_url, VM_API).await;
        assert!(
            s.body["status"] == "InProgress" || s.body["status"] == "Succeeded",
            "{}",
            s.body
        );
        if s.body["status"] == "Succeeded" {
            Ok(s)
        } else {
            Err(s.body.to_string())
        }
    })
    .await;
    assert!(done.body.get("endTime").is_some());
    assert_eq!(env.get(&vm, VM_API).await.state(), "Succeeded");

    // POST action: 202 + Location + Azure-AsyncOperation; Location answers 202 then 204.
    let a = env.post(&format!("{vm}/powerOff"), VM_API).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.header("azure-asyncoperation").is_some());
    let location = a.header("location").expect("Location").to_string();
    assert!(location.contains("/operationResults/"));
    let poll = env.get(&location, VM_API).await;
    assert_eq!(poll.status, StatusCode::ACCEPTED);
    assert!(poll.header("retry-after").is_some());
    env.wait_status(&location, VM_API, StatusCode::NO_CONTENT)
        .await;

    // Resource-group delete: Location under /subscriptions/{sub}/operationresults, removes everything.
    let a = env.delete(&t::rg_id("lro"), RG_API).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let location = a.header("location").expect("Location").to_string();
    assert!(location.contains("/operationresults/"), "{location}");
    assert_eq!(env.get(&t::rg_id("lro"), RG_API).await.state(), "Deleting");
    let refused = env
        .put(
            &t::nic_id("lro", "late"),
            NETWORK_API,
            &t::nic_body(&subnet, None),
        )
        .await;
    assert_eq!(refused.code(), "ResourceGroupBeingDeleted");
    env.wait_status(&location, RG_API, StatusCode::NO_CONTENT)
        .await;
    assert_eq!(env.get(&vm, VM_API).await.code(), "ResourceGroupNotFound");
    assert!(env.handle.resource(&nic).is_none());
}

#[tokio::test]
async fn invalid_bodies_are_rejected_with_code_and_target() {
    let env = Env::start(config(0)).await;
    let subnet = env.network("bad").await;
    let nic = t::nic_id("bad", "nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    env.wait_succeeded(&nic, NETWORK_API).await;
    let vm = t::vm_id("bad", "vm");
    let base = t::vm_body(&nic, "Standard_E16as_v5");
    let with = |pointer: &str, value: Value| {
        let mut b = base.clone();
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        match b.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.insert(key.to_string(), value);
            }
            Some(Value::Array(a)) => {
                a[key.parse::<usize>().expect("index")] = value;
            }
            _ => panic!("no parent {parent}"),
        }
        b
    };
    let without = |parent: &str, key: &str| {
        let mut b = base.clone();
        if let Some(Value::Object(m)) = b.pointer_mut(parent) {
            m.remove(key);
        }
        b
    };
    let spot = |size: &str, max_price: Value| {
        let mut b = t::vm_body(&nic, size);
        b["properties"]["priority"] = json!("Spot");
        b["properties"]["billingProfile"] = json!({ "maxPrice": max_price });
        b
    };
    let nsg_rule = |priority: i64| {
        json!({ "location": "westus2", "properties": { "securityRules": [{ "name": "ssh", "properties": {
            "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": priority } }] } })
    };
    let nsg = t::resource_id("bad", "Microsoft.Network/networkSecurityGroups", "nsg");
    let cases: Vec<(String, &str, Value, u16, &str, &str)> = vec![
        (
            vm.clone(),
            VM_API,
            spot("Standard_B2s", json!(-1)),
            409,
            "SkuNotAvailable",
            "vmSize",
        ),
        (
            vm.clone(),
            VM_API,
            spot("Standard_D2s_v5", json!(0)),
            400,
            "InvalidParameter",
            "billingProfile.maxPrice",
        ),
        (
            vm.clone(),
            VM_API,
            with("/properties/billingProfile", json!({ "maxPrice": 0.5 })),
            400,
            "InvalidParameter",
            "billingProfile",
        ),
        (
            vm.clone(),
            VM_API,
            with(
                "/properties/storageProfile/dataDisks",
                json!([
            { "lun": 0, "createOption": "Empty", "diskSizeGB": 64 }, { "lun": 0, "createOption": "Empty", "diskSizeGB": 64 }]),
            ),
            400,
            "InvalidParameter",
            "dataDisks.lun",
        ),
        (
            vm.clone(),
            VM_API,
            with(
                "/properties/storageProfile/osDisk/createOption",
                json!("Sideways"),
            ),
            400,
            "InvalidParameter",
            "osDisk.createOption",
        ),
        (
            nsg.clone(),
            NETWORK_API,
            nsg_rule(50),
            400,
            "SecurityRuleInvalidPriority",
            "properties.securityRules[0].properties.priority",
        ),
        (
            vm.clone(),
            VM_API,
            without("", "location"),
            400,
            "LocationRequired",
            "location",
        ),
        (
            vm.clone(),
            VM_API,
            with("/location", json!("marsnorth")),
            400,
            "LocationNotAvailableForResourceType",
            "location",
        ),
        (
            vm.clone(),
            VM_API,
            without("/properties/hardwareProfile", "vmSize"),
            400,
            "InvalidParameter",
            "hardwareProfile.vmSize",
        ),
        (
            vm.clone(),
            VM_API,
            with(
                "/properties/hardwareProfile/vmSize",
                json!("Standard_Nope_v9"),
            ),
            400,
            "InvalidParameter",
            "vmSize",
        ),
        (
            vm.clone(),
            VM_API,
            with(
                "/properties/storageProfile/imageReference/offer",
                json!("nope"),
            ),
            404,
            "PlatformImageNotFound",
            "imageReference",
        ),
        (
            vm.clone(),
            VM_API,
            with("/properties/priority", json!("Cheap")),
            400,
            "InvalidParameter",
            "priority",
        ),
        (
            vm.clone(),
            VM_API,
            with("/properties/evictionPolicy", json!("Delete")),
            400,
            "InvalidParameter",
            "evictionPolicy",
        ),
        (
            vm.clone(),
            VM_API,
            without("/properties/networkProfile", "networkInterfaces"),
            400,
            "InvalidParameter",
            "networkProfile.networkInterfaces",
        ),
        (
            vm.clone(),
            VM_API,
            with("/properties/osProfile/adminUsername", json!("root")),
            400,
            "InvalidParameter",
            "adminUsername",
        ),
        (
            vm.clone(),
            VM_API,
            with("/properties/osProfile/customData", json!("%%% not base64")),
            400,
            "InvalidParameter",
            "customData",
        ),
        (
            vm.clone(),
            VM_API,
            with(
                "/properties/osProfile/linuxConfiguration/ssh/publicKeys",
                json!([]),
            ),
            400,
            "InvalidParameter",
            "linuxConfiguration",
        ),
        (
            vm.clone(),
            VM_API,
            with(
                "/properties/osProfile/linuxConfiguration/ssh/publicKeys/0/path",
                json!("/root/.ssh/authorized_keys"),
            ),
            400,
            "InvalidParameter",
            "linuxConfiguration.ssh.publicKeys.path",
        ),
        (
            vm.clone(),
            VM_API,
            with("/zones", json!(["7"])),
            400,
            "InvalidParameter",
            "zones",
        ),
        (
            t::vm_id("bad", "bad!name"),
            VM_API,
            base.clone(),
            400,
            "InvalidParameter",
            "name",
        ),
        (
            t::vm_id("bad", &"x".repeat(65)),
            VM_API,
            base.clone(),
            400,
            "InvalidParameter",
            "name",
        ),
        (
            t::vnet_id("bad", "v2"),
            NETWORK_API,
            json!({ "location": "westus2", "properties": {} }),
            400,
            "InvalidParameter",
            "properties.addressSpace.addressPrefixes",
        ),
        (
            t::subnet_id("bad", "vnet", "outside"),
            NETWORK_API,
            json!({ "properties": { "addressPrefix": "192.168.0.0/24" } }),
            400,
            "NetcfgSubnetRangeOutsideVnet",
            "properties.addressPrefix",
        ),
        (
            t::nic_id("bad", "n2"),
            NETWORK_API,
            t::nic_body(&t::subnet_id("bad", "vnet", "missing"), None),
            400,
            "InvalidResourceReference",
            "properties.ipConfigurations[0].properties.subnet.id",
        ),
        (
            t::resource_id("bad", "Microsoft.Network/publicIPAddresses", "p"),
            NETWORK_API,
            json!({ "location": "westus2", "sku": { "name": "Standard" }, "properties": { "publicIPAllocationMethod": "Dynamic" } }),
            400,
            "StandardSkuPublicIPAddressesMustBeStatic",
            "properties.publicIPAllocationMethod",
        ),
        (
            t::resource_id("bad", "Microsoft.Compute/disks", "d"),
            DISK_API,
            json!({ "location": "westus2", "properties": { "creationData": { "createOption": "Empty" } } }),
            400,
            "InvalidParameter",
            "diskSizeGB",
        ),
        (
            t::resource_id("bad", "Microsoft.Compute/disks", "d"),
            DISK_API,
            json!({ "location": "westus2", "sku": { "name": "Gold_LRS" }, "properties": { "creationData": { "createOption": "Empty" }, "diskSizeGB": 4 } }),
            400,
            "InvalidParameter",
            "sku.name",
        ),
        (
            t::account_id("bad", "Not_Valid"),
            STORAGE_API,
            t::nfs_account_body(),
            400,
            "AccountNameInvalid",
            "accountName",
        ),
        (
            t::account_id("bad", "ab"),
            STORAGE_API,
            t::nfs_account_body(),
            400,
            "AccountNameInvalid",
            "accountName",
        ),
        (
            t::account_id("bad", "azlinbad01"),
            STORAGE_API,
            json!({ "location": "westus2", "sku": { "name": "Standard_LRS" }, "kind": "FileStorage" }),
            400,
            "InvalidParameter",
            "sku.name",
        ),
        (
            t::account_id("bad", "azlinbad01"),
            STORAGE_API,
            json!({ "location": "westus2", "sku": { "name": "Premium_LRS" } }),
            400,
            "InvalidParameter",
            "kind",
        ),
        (
            t::account_id("bad", "azlinbad02"),
            STORAGE_API,
            json!({ "location": "westus2", "sku": { "name": "Premium_LRS" }, "kind": "FileStorage",
            "properties": { "networkAcls": { "defaultAction": "Sideways" } } }),
            400,
            "InvalidParameter",
            "networkAcls.defaultAction",
        ),
    ];
    for (id, api, body, status, code, target) in cases {
        let a = env.put(&id, api, &body).await;
        assert_eq!(a.status.as_u16(), status, "{id} {body}: {}", a.body);
        assert_eq!(a.code(), code, "{id}: {}", a.body);
        assert_eq!(a.target(), target, "{id}: {}", a.body);
        assert!(
            a.body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Malformed JSON.
    let raw = env
        .client
        .put(env.url(&vm, VM_API))
        .bearer_auth("x")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    // Nothing invalid was stored.
    assert_eq!(env.get(&vm, VM_API).await.code(), "ResourceNotFound");
}

#[tokio::test]
async fn nfs_storage_rules() {
    let env = Env::start(config(0)).await;
    let subnet = env.network("nfs").await;
    let account = t::account_id("nfs", "azlinnfs01");
    assert_eq!(
        env.put(&account, STORAGE_API, &t::nfs_account_body())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    env.wait_succeeded(&account, STORAGE_API).await;
    // Globally unique names.
    env.put(&t::rg_id("other"), RG_API, &t::rg_body()).await;
    let taken = env
        .put(
            &t::account_id("other", "azlinnfs01"),
            STORAGE_API,
            &t::nfs_account_body(),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.code(), "StorageAccountInAnotherResourceGroup");
    // In another subscription the name is simply taken.
    let elsewhere = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/other";
    env.put(elsewhere, RG_API, &t::rg_body()).await;
    let taken = env
        .put(
            &format!("{elsewhere}/providers/Microsoft.Storage/storageAccounts/azlinnfs01"),
            STORAGE_API,
            &t::nfs_account_body(),
        )
        .await;
    assert_eq!(
        taken.error(),
        (StatusCode::CONFLICT, "StorageAccountAlreadyTaken", "")
    );
    // Premium quota floor.
    let small = env
        .put(
            &t::share_id("nfs", "azlinnfs01", "home"),
            STORAGE_API,
            &t::nfs_share_body(50),
        )
        .await;
    assert_eq!(
        small.error(),
        (StatusCode::BAD_REQUEST, "InvalidParameter", "shareQuota")
    );
    let share = t::share_id("nfs", "azlinnfs01", "home");
    let ok = env.put(&share, STORAGE_API, &t::nfs_share_body(100)).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(
        ok.body.pointer("/properties/enabledProtocols"),
        Some(&json!("NFS"))
    );
    // enabledProtocols is fixed at creation.
    let change = env
        .put(
            &share,
            STORAGE_API,
            &json!({ "properties": { "enabledProtocols": "SMB", "shareQuota": 200 } }),
        )
        .await;
    assert_eq!(
        change.error(),
        (
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "enabledProtocols"
        )
    );
    let grow = env
        .put(
            &share,
            STORAGE_API,
            &json!({ "properties": { "shareQuota": 200 } }),
        )
        .await;
    assert_eq!(grow.status, StatusCode::OK);
    assert_eq!(
        grow.body.pointer("/properties/enabledProtocols"),
        Some(&json!("NFS"))
    );
    // NFS on a Standard StorageV2 account, and on an https-only Premium account.
    let std_account = t::account_id("nfs", "azlinstd01");
    env.put(
        &std_account,
        STORAGE_API,
        &json!({ "location": "westus2", "sku": { "name": "Standard_LRS" }, "kind": "StorageV2" }),
    )
    .await;
    let a = env.put_nfs_home_share("azlinstd01").await;
    assert_eq!(
        a.error(),
        (
            StatusCode::BAD_REQUEST,
            "FeatureNotSupportedForAccount",
            "enabledProtocols"
        )
    );
    let https = t::account_id("nfs", "azlinhttps01");
    let mut body = t::nfs_account_body();
    body["properties"]["supportsHttpsTrafficOnly"] = json!(true);
    env.put(&https, STORAGE_API, &body).await;
    let a = env.put_nfs_home_share("azlinhttps01").await;
    assert_eq!(
        a.error(),
        (
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "enabledProtocols"
        )
    );
    // Network rules need the Microsoft.Storage service endpoint on the subnet.
    let plain = t::subnet_id("nfs", "vnet", "plain");
    env.put(
        &plain,
        NETWORK_API,
        &json!({ "properties": { "addressPrefix": "10.0.32.0/24" } }),
    )
    .await;
    let mut acl = t::nfs_account_body();
    acl["properties"]["networkAcls"] = json!({ "defaultAction": "Deny", "bypass": "AzureServices", "virtualNetworkRules": [{ "id": plain, "action": "Allow" }] });
    let a = env
        .put(&t::account_id("nfs", "azlinacl01"), STORAGE_API, &acl)
        .await;
    assert_eq!(a.code(), "NetworkAclsValidationFailure", "{}", a.body);
    acl["properties"]["networkAcls"]["virtualNetworkRules"][0]["id"] = json!(subnet);
    let a = env
        .put(&t::account_id("nfs", "azlinacl01"), STORAGE_API, &acl)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
}

#[tokio::test]
async fn authentication_api_version_and_not_found_errors() {
    let env = Env::start(config(0)).await;
    let url = env.url(&t::rg_id("auth"), RG_API);
    let none = env.client.get(&url).send().await.expect("sent");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers().get("www-authenticate").is_some());
    let body: Value = none.json().await.expect("json");
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let empty = env
        .client
        .get(&url)
        .header("authorization", "Bearer ")
        .send()
        .await
        .expect("sent");
    assert_eq!(empty.status(), StatusCode::UNAUTHORIZED);
    let body: Value = empty.json().await.expect("json");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let a = env.get(&t::rg_id("missing"), RG_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    let a = env.get(&t::vm_id("missing", "vm"), VM_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    env.put(&t::rg_id("auth"), RG_API, &t::rg_body()).await;
    let a = env.get(&t::vm_id("auth", "vm"), VM_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let a = env
        .get(&t::subnet_id("auth", "novnet", "s"), NETWORK_API)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = env
        .put(
            &t::subnet_id("auth", "novnet", "s"),
            NETWORK_API,
            &json!({ "properties": { "addressPrefix": "10.0.0.0/24" } }),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, "ParentResourceNotFound")
    );

    let a = env.get(&t::rg_id("auth"), "2099-01-01").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
    let a = env.get(&t::vm_id("auth", "vm"), "2099-01-01").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound")
    );
    let a = env
        .send(
            reqwest::Method::GET,
            format!("{}{}", env.handle.base_url(), t::rg_id("auth")),
            None,
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    // ARM headers on every answer.
    assert!(a.header("x-ms-request-id").is_some());
    assert!(a.header("x-ms-correlation-request-id").is_some());
    let g = env.get(&t::rg_id("auth"), RG_API).await;
    assert!(
        g.header("x-ms-ratelimit-remaining-subscription-reads")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some()
    );
    let p = env.put(&t::rg_id("auth"), RG_API, &t::rg_body()).await;
    assert!(
        p.header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );
}

#[tokio::test]
async fn dependants_block_deletes_and_vm_delete_honours_delete_options() {
    let env = Env::start(config(10)).await;
    let subnet = env.network("deps").await;
    let vm = env.vm("deps", &subnet, "vm1", "Standard_D2s_v5").await;
    let nic = t::nic_id("deps", "vm1-nic");
    let a = env.delete(&nic, NETWORK_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "NicInUse"),
        "{}",
        a.body
    );
    let a = env.delete(&subnet, NETWORK_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "InUseSubnetCannotBeDeleted"),
        "{}",
        a.body
    );
    let os_disk = env
        .get(&vm, VM_API)
        .await
        .body
        .pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .expect("os disk id");
    let d = env.get(&os_disk, DISK_API).await;
    assert_eq!(
        d.body["managedBy"].as_str().map(str::to_lowercase),
        Some(vm.to_lowercase())
    );
    let a = env.delete(&os_disk, DISK_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::CONFLICT, "OperationNotAllowed"),
        "{}",
        a.body
    );
    // A vnet PUT that leaves out an in-use subnet would delete it: refused.
    let mut no_subnets = t::vnet_body();
    no_subnets["properties"]["subnets"] = json!([]);
    let a = env
        .put(&t::vnet_id("deps", "vnet"), NETWORK_API, &no_subnets)
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "InUseSubnetCannotBeDeleted"),
        "{}",
        a.body
    );
    // A second VM cannot take a NIC that is in use.
    let a = env
        .put(
            &t::vm_id("deps", "vm2"),
            VM_API,
            &t::vm_body(&nic, "Standard_D2s_v5"),
        )
        .await;
    assert_eq!(a.code(), "NicInUse");
    // Deleting the VM deletes the NIC and OS disk (deleteOption Delete), then the subnet can go.
    delete_and_wait(&env, &vm, VM_API).await;
    assert_eq!(
        env.get(&nic, NETWORK_API).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get(&os_disk, DISK_API).await.status,
        StatusCode::NOT_FOUND
    );
    // deleteOption Detach keeps the NIC, now free.
    let nic3 = t::nic_id("deps", "nic3");
    env.put(&nic3, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let mut body = t::vm_body(&nic3, "Standard_D2s_v5");
    body["properties"]["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] =
        json!("Detach");
    let vm3 = t::vm_id("deps", "vm3");
    env.put(&vm3, VM_API, &body).await;
    env.wait_succeeded(&vm3, VM_API).await;
    delete_and_wait(&env, &vm3, VM_API).await;
    let kept = env.get(&nic3, NETWORK_API).await;
    assert_eq!(kept.status, StatusCode::OK);
    assert!(kept.body.pointer("/properties/virtualMachine").is_none());
    delete_and_wait(&env, &nic3, NETWORK_API).await;
    delete_and_wait(&env, &subnet, NETWORK_API).await;
}

#[tokio::test]
async fn power_actions_move_through_instance_view_states() {
    let env = Env::start(config(400)).await;
    let subnet = env.network("pwr").await;
    let vm = env.vm("pwr", &subnet, "vm", "Standard_E16as_v5").await;
    let view = env.get(&format!("{vm}?$expand=instanceView"), VM_API).await;
    let codes = statuses(&view.body["properties"]["instanceView"]);
    assert!(
        codes.contains(&"ProvisioningState/succeeded".to_string()),
        "{codes:?}"
    );
    assert!(
        codes.contains(&"PowerState/running".to_string()),
        "{codes:?}"
    );

    env.power_action(&vm, "deallocate", "deallocating", "deallocated")
        .await;
    let a = env.post(&format!("{vm}/restart"), VM_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::CONFLICT, "OperationNotAllowed")
    );

    env.power_action(&vm, "start", "starting", "running").await;

    env.power_action(&vm, "powerOff", "stopping", "stopped")
        .await;
    env.wait_succeeded(&vm, VM_API).await;

    // Resizing a stopped (still allocated) VM to another family needs deallocation.
    let nic = t::nic_id("pwr", "vm-nic");
    let a = env
        .put(&vm, VM_API, &t::vm_body(&nic, "Standard_B2s"))
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::CONFLICT, "OperationNotAllowed"),
        "{}",
        a.body
    );
    // Within the family it is fine; after deallocation any size is.
    let a = env
        .put(&vm, VM_API, &t::vm_body(&nic, "Standard_E8as_v5"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    env.wait_succeeded(&vm, VM_API).await;
    env.post(&format!("{vm}/deallocate"), VM_API).await;
    env.wait_power(&vm, "PowerState/deallocated").await;
    env.wait_succeeded(&vm, VM_API).await;
    let a = env
        .put(&vm, VM_API, &t::vm_body(&nic, "Standard_B2s"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn regional_core_quota_is_enforced() {
    let env = Env::start(EmulatorConfig {
        core_quota: 20,
        ..config(0)
    })
    .await;
    let subnet = env.network("quota").await;
    env.vm("quota", &subnet, "vm1", "Standard_E16as_v5").await;
    let nic = t::nic_id("quota", "vm2-nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let a = env
        .put(
            &t::vm_id("quota", "vm2"),
            VM_API,
            &t::vm_body(&nic, "Standard_E16as_v5"),
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::CONFLICT, "OperationNotAllowed")
    );
    assert!(
        a.body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .is_some_and(|m| m.contains("quota"))
    );
    let a = env
        .put(
            &t::vm_id("quota", "vm2"),
            VM_API,
            &t::vm_body(&nic, "Standard_D4s_v5"),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

#[tokio::test]
async fn snapshots_incremental_restore_and_cross_region_copy() {
    let env = Env::start(config(40)).await;
    let subnet = env.network("snap").await;
    let vm = env.vm("snap", &subnet, "vm", "Standard_D2s_v5").await;
    let os_disk = env
        .get(&vm, VM_API)
        .await
        .body
        .pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .expect("os disk");
    let snap = t::resource_id("snap", "Microsoft.Compute/snapshots", "daily");
    let a = env.put(&snap, DISK_API, &json!({ "location": "westus2", "properties": { "incremental": true, "creationData": { "createOption": "Copy", "sourceResourceId": os_disk } } })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let s = env.wait_succeeded(&snap, DISK_API).await;
    assert_eq!(s.body["properties"]["incremental"], true);
    assert_eq!(s.body["properties"]["diskSizeGB"], 30);
    // Restore: a disk from the snapshot.
    let restored = t::resource_id("snap", "Microsoft.Compute/disks", "restore-test");
    let a = env.put(&restored, DISK_API, &json!({ "location": "westus2", "properties": { "creationData": { "createOption": "Copy", "sourceResourceId": snap } } })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let d = env.wait_succeeded(&restored, DISK_API).await;
    assert_eq!(d.body["properties"]["diskSizeGB"], 30);
    assert_eq!(d.body["properties"]["diskState"], "Unattached");
    // Cross-region: Copy is refused, CopyStart progresses to 100.
    env.put(&t::rg_id("dr"), RG_API, &json!({ "location": "eastus2" }))
        .await;
    let remote = t::resource_id("dr", "Microsoft.Compute/snapshots", "daily-eastus2");
    let a = env.put(&remote, DISK_API, &json!({ "location": "eastus2", "properties": { "incremental": true, "creationData": { "createOption": "Copy", "sourceResourceId": snap } } })).await;
    assert_eq!(
        (a.status, a.target()),
        (StatusCode::BAD_REQUEST, "creationData.createOption")
    );
    let a = env.put(&remote, DISK_API, &json!({ "location": "eastus2", "properties": { "incremental": true, "creationData": { "createOption": "CopyStart", "sourceResourceId": snap } } })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let first = a.body["properties"]["completionPercent"]
        .as_i64()
        .expect("completionPercent");
    assert!(first < 100);
    let mut last = first;
    eventually("the CopyStart snapshot reaches 100%", 10, async || {
        let s = env.get(&remote, DISK_API).await;
        let pct = s.body["properties"]["completionPercent"]
            .as_i64()
            .expect("completionPercent");
        assert!(pct >= last, "completion went backwards");
        last = pct;
        if pct == 100 {
            Ok(())
        } else {
            Err(format!("{pct}%"))
        }
    })
    .await;
}

#[tokio::test]
async fn throttle_and_fault_injection() {
    let throttled = Env::start(EmulatorConfig {
        throttle_rate: 1.0,
        ..config(0)
    })
    .await;
    let a = throttled.get(&t::rg_id("x"), RG_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
    );
    assert!(
        a.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some()
    );

    let faulty = Env::start(EmulatorConfig {
        fault_rate: 1.0,
        ..config(0)
    })
    .await;
    let a = faulty.get(&t::rg_id("x"), RG_API).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
    );

    // The token bucket runs dry: writes burst 200 * 0.01 = 2.
    let limited = Env::start(EmulatorConfig {
        rate_limit_scale: 0.01,
        ..config(0)
    })
    .await;
    let first = limited.put(&t::rg_id("a"), RG_API, &t::rg_body()).await;
    assert_eq!(
        first.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("1")
    );
    limited.put(&t::rg_id("b"), RG_API, &t::rg_body()).await;
    let third = limited.put(&t::rg_id("c"), RG_API, &t::rg_body()).await;
    assert_eq!(
        (third.status, third.code()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled"
        )
    );
    assert!(third.header("retry-after").is_some());
}

#[tokio::test]
async fn connection_resets_slow_answers_and_failed_operations() {
    // Resets: the client gets no answer; some requests still took effect.
    let resets = Env::start(EmulatorConfig {
        reset_rate: 1.0,
        ..config(0)
    })
    .await;
    for i in 0..20 {
        let url = resets.url(&t::rg_id(&format!("r{i}")), RG_API);
        let sent = resets
            .client
            .put(url)
            .bearer_auth("t")
            .json(&t::rg_body())
            .send()
            .await;
        let failed = match sent {
            Err(_) => true,
            Ok(r) => r.bytes().await.is_err(),
        };
        assert!(failed, "request {i} was answered despite the reset");
    }
    let log = resets.handle.requests();
    assert!(log.iter().all(|r| r.fault.as_deref() == Some("reset")));
    let applied = resets.handle.resource_ids().len();
    assert!(
        applied > 0 && applied < 20,
        "{applied} of 20 resets took effect (expected some, not all)"
    );

    // Slow answers: the client times out, the request took effect.
    let slow = Env::start(EmulatorConfig {
        slow_rate: 1.0,
        slow_answer: Duration::from_millis(800),
        ..config(0)
    })
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let sent = impatient
        .put(slow.url(&t::rg_id("late"), RG_API))
        .bearer_auth("t")
        .json(&t::rg_body())
        .send()
        .await;
    assert!(sent.is_err_and(|e| e.is_timeout()));
    assert_eq!(
        slow.handle.resource_ids(),
        vec![t::rg_id("late").to_ascii_lowercase()]
    );
    assert_eq!(slow.handle.requests()[0].fault.as_deref(), Some("slow"));

    // Failed operations (the asynchronous path is the one of injected failures): a
    // synchronous write answers the failure at once; reads are not affected.
    let failing = Env::start(EmulatorConfig {
        failed_operation_rate: 1.0,
        ..config(0)
    })
    .await;
    let a = failing.put(&t::rg_id("f"), RG_API, &t::rg_body()).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "InternalExecutionError"),
        "a synchronous write answers the failure at once"
    );
    let get = failing.get(&t::rg_id("f"), RG_API).await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn test_control_api_over_http_and_handle() {
    let env = Env::start(config(20)).await;
    let subnet = env.network("ctl").await;
    let nic = t::nic_id("ctl", "spot-nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let spot = t::vm_id("ctl", "spot");
    let mut body = t::vm_body(&nic, "Standard_D2s_v5");
    body["properties"]["priority"] = json!("Spot");
    body["properties"]["evictionPolicy"] = json!("Deallocate");
    body["properties"]["billingProfile"] = json!({ "maxPrice": -1 });
    assert_eq!(
        env.put(&spot, VM_API, &body).await.status,
        StatusCode::CREATED
    );
    env.wait_succeeded(&spot, VM_API).await;

    let counts = env.handle.counts();
    assert_eq!(counts.get("PUT", "Microsoft.Compute/virtualMachines"), 1);
    assert_eq!(counts.get("PUT", "Microsoft.Network/networkInterfaces"), 1);
    assert!(counts.get("GET", "Microsoft.Compute/virtualMachines") >= 1);
    let admin = |p: &str| format!("{}/_emulator{p}", env.handle.base_url());
    let over_http: Value = env
        .client
        .get(admin("/counts"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        over_http["byMethodAndType"]["PUT Microsoft.Compute/virtualMachines"],
        1
    );
    let log: Vec<Value> = env
        .client
        .get(admin("/requests"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(
        log.iter()
            .any(|r| r["method"] == "PUT" && r["status"] == 201)
    );
    assert_eq!(
        env.client
            .post(admin("/counts/reset"))
            .send()
            .await
            .expect("sent")
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(env.handle.counts().total, 0);

    // Spot eviction with Deallocate.
    let r = env
        .client
        .post(admin("/vms/evict"))
        .json(&json!({ "id": spot }))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    env.wait_power(&spot, "PowerState/deallocated").await;
    // Out-of-band power changes, over HTTP and the handle.
    let r = env
        .client
        .post(admin("/vms/power"))
        .json(&json!({ "id": spot, "state": "running" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    env.wait_power(&spot, "PowerState/running").await;
    env.handle
        .set_vm_power_out_of_band(&spot, PowerState::Stopped)
        .expect("power change");
    env.wait_power(&spot, "PowerState/stopped").await;
    let view = env.handle.resource(&spot).expect("resource");
    assert!(
        statuses(&view["properties"]["instanceView"]).contains(&"PowerState/stopped".to_string())
    );

    // Eviction with Delete removes the VM (and its NIC, deleteOption Delete).
    let nic2 = t::nic_id("ctl", "spot2-nic");
    env.put(&nic2, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let spot2 = t::vm_id("ctl", "spot2");
    let mut body2 = t::vm_body(&nic2, "Standard_D2s_v5");
    body2["properties"]["priority"] = json!("Spot");
    body2["properties"]["evictionPolicy"] = json!("Delete");
    env.put(&spot2, VM_API, &body2).await;
    env.wait_succeeded(&spot2, VM_API).await;
    env.handle.evict_vm(&spot2).expect("evicted");
    assert_eq!(env.get(&spot2, VM_API).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        env.get(&nic2, NETWORK_API).await.status,
        StatusCode::NOT_FOUND
    );
    // Regular VMs cannot be evicted.
    let regular = env.vm("ctl", &subnet, "regular", "Standard_D2s_v5").await;
    assert!(env.handle.evict_vm(&regular).is_err());

    // Injected one-shot errors.
    let r = env
        .client
        .post(admin("/inject"))
        .json(&json!({ "method": "GET", "pathContains": "virtualMachines/regular", "status": 409, "code": "Conflict", "retryAfter": 3 }))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let a = env.get(&regular, VM_API).await;
    assert_eq!(
        (a.status, a.code(), a.header("retry-after")),
        (StatusCode::CONFLICT, "Conflict", Some("3"))
    );
    assert_eq!(env.get(&regular, VM_API).await.status, StatusCode::OK);
    env.handle.inject_error(ErrorInjection::once(
        "PUT",
        "networkInterfaces",
        500,
        "InternalServerError",
    ));
    let a = env
        .put(
            &t::nic_id("ctl", "x"),
            NETWORK_API,
            &t::nic_body(&subnet, None),
        )
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);

    // Out-of-band delete.
    let r = env
        .client
        .post(admin("/delete"))
        .json(&json!({ "id": regular }))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.get(&regular, VM_API).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(env.handle.delete_out_of_band(&regular).is_err());
}

#[tokio::test]
async fn state_file_persists_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("arm.json");
    let first = Env::start(EmulatorConfig {
        state_file: Some(path.clone()),
        ..config(0)
    })
    .await;
    let subnet = first.network("persist").await;
    let vm = first.vm("persist", &subnet, "vm", "Standard_D2s_v5").await;
    let before = first.get(&vm, VM_API).await.body;
    // Saved on change, before any shutdown.
    eventually("the state file holds the VM", 10, async || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(&vm) {
            Ok(())
        } else {
            Err(format!("{} bytes", text.len()))
        }
    })
    .await;
    first.handle.shutdown().await.expect("shutdown saves");
    assert!(path.exists());

    let second = Env::start(EmulatorConfig {
        state_file: Some(path.clone()),
        ..config(0)
    })
    .await;
    let after = second.get(&vm, VM_API).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(
        after.body["properties"]["vmId"],
        before["properties"]["vmId"]
    );
    // Dependants survived too: the NIC is still in use.
    assert_eq!(
        second
            .delete(&t::nic_id("persist", "vm-nic"), NETWORK_API)
            .await
            .code(),
        "NicInUse"
    );
    // An operation in flight at shutdown is completed on load.
    let a = second.post(&format!("{vm}/deallocate"), VM_API).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    second.handle.shutdown().await.expect("shutdown");
    let third = Env::start(EmulatorConfig {
        state_file: Some(path),
        ..config(0)
    })
    .await;
    third.wait_power(&vm, "PowerState/deallocated").await;
}

#[tokio::test]
async fn serves_https_with_a_generated_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let handle = Emulator::start(EmulatorConfig {
        tls: Some((cert_path, key_path)),
        ..config(0)
    })
    .await
    .expect("starts");
    assert!(handle.base_url().starts_with("https://"));
    let ca = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let url = format!(
        "{}{}?api-version={RG_API}",
        handle.base_url(),
        t::rg_id("tls")
    );
    let resp = client
        .put(&url)
        .bearer_auth("t")
        .json(&t::rg_body())
        .send()
        .await
        .expect("https request");
    assert_eq!(resp.status(), StatusCode::CREATED);
    // A client that does not trust the certificate fails the handshake.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .expect("client");
    assert!(untrusting.get(&url).bearer_auth("t").send().await.is_err());
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn thousand_concurrent_vm_creates() {
    let env = Env::start(EmulatorConfig {
        rate_limit_scale: 100.0,
        ..config(50)
    })
    .await;
    let subnet = env.network("fleet").await;
    let results: Vec<(StatusCode, StatusCode)> = futures::stream::iter(0..1000)
        .map(|i| {
            let env = &env;
            let subnet = subnet.clone();
            async move {
                let nic = t::nic_id("fleet", &format!("vm-{i:04}-nic"));
                let n = env
                    .put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
                    .await
                    .status;
                let vm = env
                    .put(
                        &t::vm_id("fleet", &format!("vm-{i:04}")),
                        VM_API,
                        &t::vm_body(&nic, "Standard_D2s_v5"),
                    )
                    .await
                    .status;
                (n, vm)
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    assert!(
        results
            .iter()
            .all(|r| *r == (StatusCode::CREATED, StatusCode::CREATED)),
        "some creates failed"
    );
    let collection = format!(
        "{}/providers/Microsoft.Compute/virtualMachines",
        t::rg_id("fleet")
    );
    eventually("1000 VMs are listed as Succeeded", 30, async || {
        let vms = list_items(&env, &collection, VM_API).await;
        assert_eq!(vms.len(), 1000);
        let succeeded = vms
            .iter()
            .filter(|v| v.pointer("/properties/provisioningState") == Some(&json!("Succeeded")))
            .count();
        if succeeded == 1000 {
            Ok(())
        } else {
            Err(format!("{succeeded} succeeded"))
        }
    })
    .await;
    // Every NIC got its own address.
    let nics = list_all(
        &env,
        &format!(
            "{}/providers/Microsoft.Network/networkInterfaces",
            t::rg_id("fleet")
        ),
        NETWORK_API,
    )
    .await;
    assert_eq!(nics.len(), 1000);
    let nic_items = list_items(
        &env,
        &format!(
            "{}/providers/Microsoft.Network/networkInterfaces",
            t::rg_id("fleet")
        ),
        NETWORK_API,
    )
    .await;
    let addresses: std::collections::HashSet<&str> = nic_items
        .iter()
        .filter_map(|n| {
            n.pointer("/properties/ipConfigurations/0/properties/privateIPAddress")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(addresses.len(), 1000);
    assert_eq!(
        env.handle
            .counts()
            .get("PUT", "Microsoft.Compute/virtualMachines"),
        1000
    );
}

#[tokio::test]
async fn vm_address_is_reported_as_private_and_public_ip() {
    let env = Env::start(EmulatorConfig {
        vm_address: Some("127.0.0.1".parse().expect("ip")),
        ..config(0)
    })
    .await;
    let subnet = env.network("addr").await;
    let pip = t::resource_id("addr", "Microsoft.Network/publicIPAddresses", "pip");
    env.put(&pip, NETWORK_API, &json!({ "location": "westus2", "sku": { "name": "Standard" }, "properties": { "publicIPAllocationMethod": "Static" } })).await;
    let nic = t::nic_id("addr", "nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, Some(&pip)))
        .await;
    let n = env.get(&nic, NETWORK_API).await;
    assert_eq!(
        n.body
            .pointer("/properties/ipConfigurations/0/properties/privateIPAddress"),
        Some(&json!("127.0.0.1"))
    );
    let p = env.get(&pip, NETWORK_API).await;
    assert_eq!(
        p.body.pointer("/properties/ipAddress"),
        Some(&json!("127.0.0.1"))
    );
    // The public IP is in use by the NIC.
    assert_eq!(
        env.delete(&pip, NETWORK_API).await.code(),
        "PublicIPAddressCannotBeDeleted"
    );
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    emulator: azlin_arm_emulator::EmulatorArgs,
}

#[tokio::test]
async fn cli_flags_parse_validate_and_start() {
    use clap::Parser;
    assert!(Cli::try_parse_from(["emulator", "--fault-rate", "1.5"]).is_err());
    assert!(Cli::try_parse_from(["emulator", "--tls-cert", "cert.pem"]).is_err());
    let cli = Cli::try_parse_from([
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        "5",
        "--throttle-rate",
        "0",
        "--vm-address",
        "127.0.0.1",
        "--core-quota",
        "64",
        "--page-size",
        "2",
    ])
    .expect("flags parse");
    assert_eq!(cli.emulator.latency_ms, 5);
    let env = Env::start(cli.emulator.into()).await;
    for rg in ["a", "b", "c"] {
        env.put(&t::rg_id(rg), RG_API, &t::rg_body()).await;
    }
    // Page size 2: the third group comes on the nextLink page.
    let first = env
        .get(
            &format!("/subscriptions/{}/resourcegroups", t::SUBSCRIPTION),
            RG_API,
        )
        .await;
    assert_eq!(first.body["value"].as_array().map(Vec::len), Some(2));
    assert!(first.body.get("nextLink").is_some());
    // The next page keeps the request's query, as ARM's does ($expand, $filter, statusOnly).
    let url = format!(
        "{}&$expand=instanceView",
        env.url(
            &format!("/subscriptions/{}/resourcegroups", t::SUBSCRIPTION),
            RG_API
        )
    );
    let expanded = env.send(reqwest::Method::GET, url, None).await;
    let next = expanded.body["nextLink"].as_str().expect("nextLink");
    assert!(next.contains("%24expand=instanceView"), "{next}");
    assert_eq!(
        list_all(
            &env,
            &format!("/subscriptions/{}/resourcegroups", t::SUBSCRIPTION),
            RG_API
        )
        .await
        .len(),
        3
    );
}

#[tokio::test]
async fn injected_asynchronous_failures_end_operations_failed() {
    let env = Env::start(config(20)).await;
    let subnet = env.network("fail").await;
    let nic = t::nic_id("fail", "nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    env.handle.inject_error(ErrorInjection::failed_operation(
        "PUT",
        "virtualMachines/vm",
        409,
        "AllocationFailed",
    ));
    let vm = t::vm_id("fail", "vm");
    let a = env
        .put(&vm, VM_API, &t::vm_body(&nic, "Standard_D2s_v5"))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let op_url = a
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation")
        .to_string();
    let failed = eventually("the operation fails", 10, async || {
        let s = env.get(&op_url, VM_API).await;
        if s.body["status"] == "Failed" {
            Ok(s)
        } else {
            Err(s.body.to_string())
        }
    })
    .await;
    assert_eq!(failed.body["error"]["code"], "AllocationFailed");
    let got = env.get(&vm, VM_API).await;
    assert_eq!(got.state(), "Failed");
    let view = env.get(&format!("{vm}/instanceView"), VM_API).await;
    assert!(
        statuses(&view.body).contains(&"ProvisioningState/failed/AllocationFailed".to_string()),
        "Compute names the failure in the instance view: {}",
        view.body
    );
    // A retry of the PUT recovers, and the VM that never started runs.
    let retry = env
        .put(&vm, VM_API, &t::vm_body(&nic, "Standard_D2s_v5"))
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    env.wait_succeeded(&vm, VM_API).await;
    let view = env.get(&format!("{vm}/instanceView"), VM_API).await;
    let codes = statuses(&view.body);
    assert!(
        codes.contains(&"PowerState/running".to_string()),
        "{codes:?}"
    );
    assert!(
        codes.contains(&"ProvisioningState/succeeded".to_string()),
        "{codes:?}"
    );

    // A power action that fails leaves the VM in the power state it had (not `stopping`).
    env.handle.inject_error(ErrorInjection::failed_operation(
        "POST",
        "virtualMachines/vm/powerOff",
        500,
        "InternalExecutionError",
    ));
    let off = env.post(&format!("{vm}/powerOff"), VM_API).await;
    assert_eq!(off.status, StatusCode::ACCEPTED);
    let location = off.header("location").expect("Location").to_string();
    env.wait_status(&location, VM_API, StatusCode::INTERNAL_SERVER_ERROR)
        .await;
    let codes = statuses(&env.get(&format!("{vm}/instanceView"), VM_API).await.body);
    assert!(
        codes.contains(&"PowerState/running".to_string()),
        "{codes:?}"
    );

    // Over HTTP: a failing delete; its Location URL answers the injected status with the error.
    let admin = format!("{}/_emulator/inject", env.handle.base_url());
    let r = env
        .client
        .post(admin)
        .json(&json!({ "method": "DELETE", "pathContains": "virtualMachines/vm", "status": 500, "code": "InternalExecutionError", "failOperation": true }))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let d = env.delete(&vm, VM_API).await;
    assert_eq!(d.status, StatusCode::ACCEPTED);
    let location = d.header("location").expect("Location").to_string();
    let end = env
        .wait_status(&location, VM_API, StatusCode::INTERNAL_SERVER_ERROR)
        .await;
    assert_eq!(end.code(), "InternalExecutionError");
    assert_eq!(env.get(&vm, VM_API).await.state(), "Failed");
}

/// An `ssh-rsa` public key line with a synthetic modulus of `bits` bits (structure only).
fn rsa_key(bits: usize) -> String {
    use base64::Engine;
    let mut blob = Vec::new();
    let mut put = |bytes: &[u8]| {
        blob.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        blob.extend_from_slice(bytes);
    };
    put(b"ssh-rsa");
    put(&[0x01, 0x00, 0x01]);
    let mut modulus = vec![0u8; 1 + bits / 8];
    modulus[1] = 0x80;
    modulus[bits / 8] = 0x01;
    put(&modulus);
    format!(
        "ssh-rsa {} test@azlin",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

#[tokio::test]
async fn compute_answers_ids_with_upper_cased_resource_groups() {
    let env = Env::start(config(20)).await;
    let subnet = env.network("casing").await;
    let vm = env.vm("casing", &subnet, "vm1", "Standard_D2s_v5").await;
    let upper = |id: &str| id.replace("/resourceGroups/casing/", "/resourceGroups/CASING/");
    let got = env.get(&vm, VM_API).await.body;
    assert_eq!(got["id"], upper(&vm).as_str());
    let os_disk = got
        .pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
        .expect("os disk id")
        .to_string();
    assert!(os_disk.contains("/resourceGroups/CASING/"), "{os_disk}");
    let disk = env.get(&os_disk, DISK_API).await.body;
    assert_eq!(disk["id"], os_disk.as_str());
    assert_eq!(disk["managedBy"], upper(&vm).as_str());
    // The network RP keeps the caller's casing for its own ids, and shows the VM as Compute named it.
    let nic = t::nic_id("casing", "vm1-nic");
    let nic_body = env.get(&nic, NETWORK_API).await.body;
    assert_eq!(nic_body["id"], nic.as_str());
    assert_eq!(
        nic_body["properties"]["virtualMachine"]["id"],
        upper(&vm).as_str()
    );
}

#[tokio::test]
async fn the_sdks_default_api_versions_are_served() {
    let env = Env::start(config(20)).await;
    // Defaults of azure-mgmt-resource 26, -network 33, -compute 39 (VMs, disks), -storage 25.
    let rg = t::rg_id("versions");
    assert_eq!(
        env.put(&rg, "2025-04-01", &t::rg_body()).await.status,
        StatusCode::CREATED
    );
    let vnet = t::vnet_id("versions", "vnet");
    assert_eq!(
        env.put(&vnet, "2026-03-01", &t::vnet_body()).await.status,
        StatusCode::CREATED
    );
    env.wait_succeeded(&vnet, "2026-03-01").await;
    let nic = t::nic_id("versions", "nic");
    let subnet = t::subnet_id("versions", "vnet", "default");
    assert_eq!(
        env.put(&nic, "2026-03-01", &t::nic_body(&subnet, None))
            .await
            .status,
        StatusCode::CREATED
    );
    let vm = t::vm_id("versions", "vm");
    let a = env
        .put(&vm, "2026-04-01", &t::vm_body(&nic, "Standard_D2s_v5"))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    env.wait_succeeded(&vm, "2015-06-15").await;
    let disk = t::resource_id("versions", "Microsoft.Compute/disks", "d");
    let a = env
        .put(&disk, "2026-03-02", &json!({ "location": "westus2", "properties": { "creationData": { "createOption": "Empty" }, "diskSizeGB": 8 } }))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let account = t::account_id("versions", "azlinversions");
    assert_eq!(
        env.put(&account, "2026-09-01", &t::nfs_account_body())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    env.wait_succeeded(&account, "2026-09-01").await;
    let share = t::share_id("versions", "azlinversions", "share");
    let a = env.put(&share, "2026-09-01", &t::nfs_share_body(100)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // Unknown versions are still refused, shares did not exist before 2019-04-01.
    assert_eq!(
        env.get(&vm, "2026-04-02").await.code(),
        "NoRegisteredProviderFound"
    );
    assert_eq!(
        env.get(&share, "2018-11-01").await.code(),
        "NoRegisteredProviderFound"
    );
    assert_eq!(
        env.get(&rg, "2099-01-01").await.code(),
        "InvalidApiVersionParameter"
    );
}

#[tokio::test]
async fn malformed_ssh_public_keys_are_rejected_like_arm() {
    let env = Env::start(config(20)).await;
    let subnet = env.network("keys").await;
    let nic = t::nic_id("keys", "nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    env.wait_succeeded(&nic, NETWORK_API).await;
    let vm = t::vm_id("keys", "vm");
    let with_key = |key: &str| {
        let mut body = t::vm_body(&nic, "Standard_D2s_v5");
        body["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"] =
            json!(key);
        body
    };
    let truncated = &t::SSH_KEY[..60];
    for bad in [
        truncated.to_string(),
        "ssh-ed25519 not-base64!! me@host".to_string(),
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ me@host".to_string(),
        rsa_key(1024),
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEm me"
            .to_string(),
        "ssh-ed25519".to_string(),
    ] {
        let a = env.put(&vm, VM_API, &with_key(&bad)).await;
        assert_eq!(
            a.error(),
            (
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "linuxConfiguration.ssh.publicKeys.keyData"
            ),
            "{bad}: {}",
            a.body
        );
    }
    assert_eq!(
        env.put(&vm, VM_API, &with_key(&rsa_key(2048))).await.status,
        StatusCode::CREATED
    );
    env.wait_succeeded(&vm, VM_API).await;
    let rfc4716 = format!(
        "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"test\"\n{}\n---- END SSH2 PUBLIC KEY ----",
        t::SSH_KEY.split(' ').nth(1).unwrap_or_default()
    );
    let a = env.put(&vm, VM_API, &with_key(&rfc4716)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn disks_vm_etags_and_status_only_lists_read_like_azure() {
    let env = Env::start(config(20)).await;
    let subnet = env.network("reads").await;
    let vm = env.vm("reads", &subnet, "vm", "Standard_D2s_v5").await;
    let first = env.get(&vm, VM_API).await.body;
    let etag = first["etag"].as_str().expect("VM etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let mut update = t::vm_body(&t::nic_id("reads", "vm-nic"), "Standard_D2s_v5");
    update["tags"] = json!({ "changed": "yes" });
    assert_eq!(env.put(&vm, VM_API, &update).await.status, StatusCode::OK);
    env.wait_succeeded(&vm, VM_API).await;
    assert_ne!(env.get(&vm, VM_API).await.body["etag"], etag.as_str());
    let os_disk = first
        .pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
        .expect("os disk")
        .to_string();
    let disk = env.get(&os_disk, DISK_API).await.body;
    assert_eq!(disk["properties"]["diskState"], "Attached");
    assert_eq!(
        disk["properties"]["diskSizeBytes"],
        30_i64 * 1024 * 1024 * 1024
    );
    env.power_action(&vm, "deallocate", "deallocating", "deallocated")
        .await;
    assert_eq!(
        env.get(&os_disk, DISK_API).await.body["properties"]["diskState"],
        "Reserved"
    );
    env.power_action(&vm, "start", "starting", "running").await;
    assert_eq!(
        env.get(&os_disk, DISK_API).await.body["properties"]["diskState"],
        "Attached"
    );
    // Subscription-wide statusOnly=true lists carry each VM's instance view.
    let url = format!(
        "/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?statusOnly=true",
        t::SUBSCRIPTION
    );
    let items = list_items(&env, &url, VM_API).await;
    assert_eq!(items.len(), 1);
    let codes = statuses(&items[0]["properties"]["instanceView"]);
    assert!(
        codes.contains(&"PowerState/running".to_string()),
        "{codes:?}"
    );
}

#[tokio::test]
async fn storage_names_availability_and_keys() {
    let env = Env::start(config(20)).await;
    env.put(&t::rg_id("names"), RG_API, &t::rg_body()).await;
    let check = format!(
        "/subscriptions/{}/providers/Microsoft.Storage/checkNameAvailability",
        t::SUBSCRIPTION
    );
    let ask = async |name: &str| {
        env.send(
            reqwest::Method::POST,
            env.url(&check, STORAGE_API),
            Some(&json!({ "name": name, "type": "Microsoft.Storage/storageAccounts" })),
        )
        .await
    };
    let a = ask("azlinnames").await;
    assert_eq!(
        (a.status, a.body["nameAvailable"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(ask("Bad_Name").await.body["reason"], "AccountNameInvalid");
    let account = t::account_id("names", "azlinnames");
    env.put(&account, STORAGE_API, &t::nfs_account_body()).await;
    env.wait_succeeded(&account, STORAGE_API).await;
    let a = ask("azlinnames").await;
    assert_eq!(
        (a.body["nameAvailable"].clone(), a.body["reason"].clone()),
        (json!(false), json!("AlreadyExists"))
    );
    let keys = env.post(&format!("{account}/listKeys"), STORAGE_API).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
    let names: Vec<&str> = keys.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["keyName"].as_str())
        .collect();
    assert_eq!(names, ["key1", "key2"]);
    let again = env.post(&format!("{account}/listKeys"), STORAGE_API).await;
    assert_eq!(again.body, keys.body, "keys are stable");
}

#[tokio::test]
async fn discovery_endpoints_and_offline_identity() {
    let env = Env::start(EmulatorConfig {
        subscription_id: Some("11111111-2222-3333-4444-555555555555".into()),
        ..config(20)
    })
    .await;
    env.network("disco").await;
    let subs = env.get("/subscriptions", "2022-12-01").await;
    assert_eq!(subs.status, StatusCode::OK, "{}", subs.body);
    let ids: Vec<&str> = subs.body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["subscriptionId"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["11111111-2222-3333-4444-555555555555", t::SUBSCRIPTION]
    );
    let one = env
        .get(&format!("/subscriptions/{}", t::SUBSCRIPTION), "2022-12-01")
        .await;
    assert_eq!(one.body["state"], "Enabled");
    assert!(one.body["tenantId"].is_string());
    assert_eq!(
        env.get("/tenants", "2022-12-01").await.body["value"][0]["tenantId"],
        one.body["tenantId"]
    );
    let resources = list_items(
        &env,
        &format!(
            "/subscriptions/{}/resources?$expand=createdTime,changedTime,provisioningState",
            t::SUBSCRIPTION
        ),
        RG_API,
    )
    .await;
    assert_eq!(resources.len(), 1, "{resources:?}");
    assert_eq!(resources[0]["type"], "Microsoft.Network/virtualNetworks");
    assert!(resources[0]["createdTime"].is_string() && resources[0]["changedTime"].is_string());
    assert_eq!(resources[0]["provisioningState"], "Succeeded");
    // Cloud metadata is served without a token, naming the emulator as resource manager.
    let meta = reqwest::get(format!(
        "{}/metadata/endpoints?api-version=2022-09-01",
        env.handle.base_url()
    ))
    .await
    .expect("metadata");
    assert_eq!(meta.status(), StatusCode::OK);
    let meta: Value = meta.json().await.expect("json");
    assert_eq!(
        meta["resourceManager"],
        format!("{}/", env.handle.base_url())
    );
    assert!(meta["authentication"]["audiences"][0].is_string());
    // Managed-identity token endpoint (App Service protocol), then the token works on ARM.
    let token: Value = env
        .client
        .get(format!(
            "{}/_emulator/identity/token?api-version=2019-08-01&resource=https://management.core.windows.net/",
            env.handle.base_url()
        ))
        .header("X-IDENTITY-HEADER", "x")
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let access = token["access_token"].as_str().expect("access_token");
    assert_eq!(access.split('.').count(), 3);
    assert!(
        token["expires_on"]
            .as_str()
            .is_some_and(|e| e.parse::<i64>().is_ok())
    );
    let a = env
        .send_as(
            access,
            reqwest::Method::GET,
            env.url("/subscriptions", "2022-12-01"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn network_read_fields_used_for_drift() {
    let env = Env::start(config(20)).await;
    env.network("drift").await;
    let nsg = t::resource_id("drift", "Microsoft.Network/networkSecurityGroups", "nsg");
    env.put(&nsg, NETWORK_API, &json!({ "location": "westus2" }))
        .await;
    let body = env.wait_succeeded(&nsg, NETWORK_API).await.body;
    let defaults: Vec<(&str, i64, &str)> = body["properties"]["defaultSecurityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default(),
                r["properties"]["priority"].as_i64().unwrap_or_default(),
                r["properties"]["direction"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        defaults,
        [
            ("AllowVnetInBound", 65000, "Inbound"),
            ("AllowAzureLoadBalancerInBound", 65001, "Inbound"),
            ("DenyAllInBound", 65500, "Inbound"),
            ("AllowVnetOutBound", 65000, "Outbound"),
            ("AllowInternetOutBound", 65001, "Outbound"),
            ("DenyAllOutBound", 65500, "Outbound"),
        ]
    );
    let subnet = env
        .get(&t::subnet_id("drift", "vnet", "default"), NETWORK_API)
        .await
        .body;
    let ep = &subnet["properties"]["serviceEndpoints"][0];
    assert_eq!(ep["service"], "Microsoft.Storage");
    assert_eq!(ep["provisioningState"], "Succeeded");
    assert_eq!(ep["locations"], json!(["westus2", "westcentralus"]));
}

#[tokio::test]
async fn nfs_access_follows_the_accounts_network_rules() {
    let env = Env::start(config(20)).await;
    let home = env.network("nfs").await;
    let vm = env.vm("nfs", &home, "vm", "Standard_D2s_v5").await;
    // A VM in another resource group and vnet, same region.
    let other = env.network("other").await;
    let other_vm = env.vm("other", &other, "vm", "Standard_D2s_v5").await;
    // A VM in another region (eastus2, whose Microsoft.Storage endpoint covers eastus2/centralus).
    env.put(&t::rg_id("far"), RG_API, &json!({ "location": "eastus2" }))
        .await;
    let mut far_vnet = t::vnet_body();
    far_vnet["location"] = json!("eastus2");
    let far_vnet_id = t::vnet_id("far", "vnet");
    env.put(&far_vnet_id, NETWORK_API, &far_vnet).await;
    env.wait_succeeded(&far_vnet_id, NETWORK_API).await;
    let far_subnet = t::subnet_id("far", "vnet", "default");
    let far_nic = t::nic_id("far", "vm-nic");
    let mut nic = t::nic_body(&far_subnet, None);
    nic["location"] = json!("eastus2");
    env.put(&far_nic, NETWORK_API, &nic).await;
    let mut far = t::vm_body(&far_nic, "Standard_D2s_v5");
    far["location"] = json!("eastus2");
    let far_vm = t::vm_id("far", "vm");
    assert_eq!(
        env.put(&far_vm, VM_API, &far).await.status,
        StatusCode::CREATED
    );
    env.wait_succeeded(&far_vm, VM_API).await;

    let account = t::account_id("nfs", "azlinaccess");
    let acls = |subnets: &[&str]| {
        let mut body = t::nfs_account_body();
        body["properties"]["networkAcls"] = json!({
            "defaultAction": "Deny",
            "bypass": "AzureServices",
            "virtualNetworkRules": subnets.iter().map(|s| json!({ "id": s, "action": "Allow" })).collect::<Vec<_>>(),
        });
        body
    };
    // Open to all networks: Azure does not serve NFS that way.
    env.put(&account, STORAGE_API, &t::nfs_account_body()).await;
    env.wait_succeeded(&account, STORAGE_API).await;
    let denied = env.handle.nfs_access(&vm, "azlinaccess");
    assert!(
        matches!(&denied, Err(NfsAccessError::Denied { reason }) if reason.contains("defaultAction")),
        "{denied:?}"
    );
    // Restricted to the storage's own subnet: only that VM gets in.
    env.put(&account, STORAGE_API, &acls(&[&home])).await;
    env.wait_succeeded(&account, STORAGE_API).await;
    assert_eq!(env.handle.nfs_access(&vm, "azlinaccess"), Ok(()));
    let nic_ip = env.get(&t::nic_id("nfs", "vm-nic"), NETWORK_API).await.body
        ["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        .as_str()
        .expect("ip")
        .to_string();
    // Every vnet here uses 10.0.0.0/20, so the address names three VMs: ambiguous, as in Azure.
    assert!(matches!(
        env.handle.nfs_access(&nic_ip, "AZLINACCESS"),
        Err(NfsAccessError::AmbiguousAddress(_))
    ));
    let cross_rg = env.handle.nfs_access(&other_vm, "azlinaccess");
    assert!(
        matches!(&cross_rg, Err(NfsAccessError::Denied { reason }) if reason.contains("not in the virtualNetworkRules")),
        "{cross_rg:?}"
    );
    // Adding the other group's subnet lets it in; the far region's subnet is listed but its
    // service endpoint does not reach westus2.
    env.put(&account, STORAGE_API, &acls(&[&home, &other, &far_subnet]))
        .await;
    env.wait_succeeded(&account, STORAGE_API).await;
    assert_eq!(env.handle.nfs_access(&other_vm, "azlinaccess"), Ok(()));
    let cross_region = env.handle.nfs_access(&far_vm, "azlinaccess");
    assert!(
        matches!(&cross_region, Err(NfsAccessError::Denied { reason }) if reason.contains("covering region westus2")),
        "{cross_region:?}"
    );
    assert!(matches!(
        env.handle.nfs_access(&vm, "nosuchaccount"),
        Err(NfsAccessError::AccountNotFound(_))
    ));
    assert!(matches!(
        env.handle.nfs_access("10.9.9.9", "azlinaccess"),
        Err(NfsAccessError::VmNotFound(_))
    ));
    // The same over HTTP.
    let ask = async |vm: &str| {
        env.client
            .get(format!(
                "{}/_emulator/nfs-access?account=azlinaccess&vm={}",
                env.handle.base_url(),
                url::form_urlencoded::byte_serialize(vm.as_bytes()).collect::<String>()
            ))
            .send()
            .await
            .expect("nfs-access")
    };
    assert_eq!(ask(&vm).await.status(), StatusCode::OK);
    let refused = ask(&far_vm).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["allowed"], false);
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("service endpoint"))
    );
}

#[tokio::test]
async fn request_budgets_per_principal_and_compute_windows() {
    // writes: 200 * 0.02 = 4 per principal; PutVM3Min 240 * 0.02 * 0.5 = 2.
    let env = Env::start(EmulatorConfig {
        rate_limit_scale: 0.02,
        compute_limit_scale: 0.5,
        ..config(10)
    })
    .await;
    let rg = |n: &str| t::rg_id(&format!("budget{n}"));
    let mut remaining = Vec::new();
    for n in 0..4 {
        let a = env.put(&rg(&n.to_string()), RG_API, &t::rg_body()).await;
        assert_eq!(a.status, StatusCode::CREATED);
        remaining.push(
            a.header("x-ms-ratelimit-remaining-subscription-writes")
                .map(str::to_string),
        );
    }
    assert_eq!(
        remaining,
        [
            Some("3".into()),
            Some("2".into()),
            Some("1".into()),
            Some("0".into())
        ]
    );
    let throttled = env.put(&rg("x"), RG_API, &t::rg_body()).await;
    assert_eq!(
        throttled.error(),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled",
            ""
        )
    );
    assert!(
        throttled
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    // Another principal has its own bucket in the same subscription; reads are a separate bucket.
    let other = env
        .send_as(
            "other-principal",
            reqwest::Method::PUT,
            env.url(&rg("y"), RG_API),
            Some(&t::rg_body()),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    let read = env.get(&rg("0"), RG_API).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        read.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some()
    );

    // Compute's PutVM window: a fresh principal, two VM PUTs, then 429 with the window named.
    let env = Env::start(EmulatorConfig {
        rate_limit_scale: 1.0,
        compute_limit_scale: 240f64.recip() * 2.0,
        ..config(10)
    })
    .await;
    let subnet = env.network("win").await;
    let mut seen = Vec::new();
    for name in ["a", "b"] {
        let nic = t::nic_id("win", name);
        env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
            .await;
        let a = env
            .put(
                &t::vm_id("win", name),
                VM_API,
                &t::vm_body(&nic, "Standard_D2s_v5"),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        seen.push(
            a.header("x-ms-ratelimit-remaining-resource")
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        seen,
        [
            "Microsoft.Compute/PutVM3Min;1,Microsoft.Compute/PutVM30Min;9",
            "Microsoft.Compute/PutVM3Min;0,Microsoft.Compute/PutVM30Min;8",
        ]
    );
    let nic = t::nic_id("win", "c");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let refused = env
        .put(
            &t::vm_id("win", "c"),
            VM_API,
            &t::vm_body(&nic, "Standard_D2s_v5"),
        )
        .await;
    assert_eq!(
        refused.error(),
        (StatusCode::TOO_MANY_REQUESTS, "OperationNotAllowed", "")
    );
    assert_eq!(refused.body["error"]["details"][0]["target"], "PutVM3Min");
    assert!(
        refused
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s > 60)
    );
    assert_eq!(
        refused.header("x-ms-ratelimit-remaining-resource"),
        Some("Microsoft.Compute/PutVM3Min;0,Microsoft.Compute/PutVM30Min;8")
    );
    // VM reads: plain GETs are low-cost, instance views high-cost.
    let get = env.get(&t::vm_id("win", "a"), VM_API).await;
    assert!(
        get.header("x-ms-ratelimit-remaining-resource")
            .is_some_and(|h| h.starts_with("Microsoft.Compute/LowCostGet3Min;"))
    );
    let view = env
        .get(&format!("{}/instanceView", t::vm_id("win", "a")), VM_API)
        .await;
    assert!(
        view.header("x-ms-ratelimit-remaining-resource")
            .is_some_and(|h| h.starts_with("Microsoft.Compute/HighCostGet3Min;"))
    );

    // Scale 0 disables every budget but keeps the headers.
    let env = Env::start(EmulatorConfig {
        rate_limit_scale: 0.0,
        ..config(10)
    })
    .await;
    for n in 0..300 {
        let a = env.put(&rg(&n.to_string()), RG_API, &t::rg_body()).await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert_eq!(
            a.header("x-ms-ratelimit-remaining-subscription-writes"),
            Some("200")
        );
    }
}

/// POSTs a Resource Graph query as `token`.
async fn graph(env: &Env, token: &str, body: &Value) -> Answer {
    env.send_as(
        token,
        reqwest::Method::POST,
        env.url("/providers/Microsoft.ResourceGraph/resources", "2022-10-01"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn resource_graph_answers_pages_of_rows_with_power_states() {
    let env = Env::start(config(0)).await;
    let subnet = env.network("arg").await;
    let one = env.vm("arg", &subnet, "one", "Standard_B2s").await;
    env.vm("arg", &subnet, "two", "Standard_B2s").await;
    env.post(&format!("{one}/deallocate"), VM_API).await;
    env.wait_power(&one, "PowerState/deallocated").await;
    let sub = t::SUBSCRIPTION;
    let query = "Resources | where resourceGroup =~ 'ARG' and type in~ ('Microsoft.Compute/virtualMachines', 'Microsoft.Network/networkInterfaces') | order by name asc";

    // Pages of two rows; the token carries the query on.
    let mut rows = Vec::new();
    let mut options = json!({ "$top": 2 });
    loop {
        let a = graph(
            &env,
            "t",
            &json!({ "subscriptions": [sub], "query": query, "options": options }),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["totalRecords"], 4);
        assert_eq!(a.body["resultTruncated"], "false");
        assert!(a.header("x-ms-user-quota-remaining").is_some());
        rows.extend(a.body["data"].as_array().cloned().unwrap_or_default());
        match a.body["$skipToken"].as_str() {
            Some(token) => options = json!({ "$top": 2, "$skipToken": token }),
            None => break,
        }
    }
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["one", "one-nic", "two", "two-nic"]);
    assert_eq!(rows[0]["type"], "microsoft.compute/virtualmachines");
    assert_eq!(rows[0]["resourceGroup"], "arg");
    assert_eq!(rows[0]["subscriptionId"], sub);
    assert_eq!(
        rows[0]["properties"]["extended"]["instanceView"]["powerState"]["code"],
        "PowerState/deallocated"
    );
    assert_eq!(
        rows[2]["properties"]["extended"]["instanceView"]["powerState"]["code"],
        "PowerState/running"
    );
    assert_eq!(
        rows[2]["properties"]["hardwareProfile"]["vmSize"],
        "Standard_B2s"
    );
    assert_eq!(rows[1]["properties"]["provisioningState"], "Succeeded");

    // A projection without `id` cannot be paged: the answer says it was truncated.
    let a = graph(
        &env,
        "t",
        &json!({ "subscriptions": [sub], "query": "Resources | project name", "options": { "$top": 1 } }),
    )
    .await;
    assert_eq!(
        (a.body["resultTruncated"].as_str(), a.body["count"].as_u64()),
        (Some("true"), Some(1))
    );
    assert!(a.body.get("$skipToken").is_none());

    // The table format, and resource groups in ResourceContainers.
    let a = graph(
        &env,
        "t",
        &json!({ "subscriptions": [sub], "query": "ResourceContainers | where type == 'microsoft.resources/subscriptions/resourcegroups' | project id, name", "options": { "resultFormat": "table" } }),
    )
    .await;
    assert_eq!(
        a.body["data"]["columns"][1],
        json!({ "name": "name", "type": "string" })
    );
    assert_eq!(a.body["data"]["rows"], json!([[t::rg_id("arg"), "arg"]]));

    // What the emulator does not understand is refused with where it stands.
    let a = graph(
        &env,
        "t",
        &json!({ "subscriptions": [sub], "query": "Resources | summarize count() by type" }),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "BadRequest")
    );
    assert_eq!(a.body["error"]["details"][1]["code"], "ParserFailure");
    assert_eq!(a.body["error"]["details"][1]["characterPositionInLine"], 12);

    // A token from another query is refused.
    let a = graph(
        &env,
        "t",
        &json!({ "subscriptions": [sub], "query": "Resources", "options": { "$skipToken": "MjoxMjM=" } }),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
}

#[tokio::test]
async fn resource_graph_has_its_own_quota_per_user() {
    // 15 queries per 5 s per user, not ARM's subscription buckets.
    let env = Env::start(EmulatorConfig {
        rate_limit_scale: 1.0,
        ..config(0)
    })
    .await;
    let body = json!({ "subscriptions": [t::SUBSCRIPTION], "query": "Resources | count" });
    for left in (0..15).rev() {
        let a = graph(&env, "alice", &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(
            a.header("x-ms-user-quota-remaining"),
            Some(left.to_string().as_str())
        );
        assert!(
            a.header("x-ms-ratelimit-remaining-subscription-reads")
                .is_none()
        );
    }
    let a = graph(&env, "alice", &body).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::TOO_MANY_REQUESTS, "RateLimiting")
    );
    assert_eq!(a.header("x-ms-user-quota-remaining"), Some("0"));
    assert!(
        a.header("x-ms-user-quota-resets-after")
            .is_some_and(|v| v.starts_with("00:00:0"))
    );
    assert_eq!(graph(&env, "bob", &body).await.status, StatusCode::OK);
}
