//! A VM made from a restored disk, over real HTTP: the disk copied from a snapshot keeps the
//! snapshot as its source, and — as ARM does — a VM attaching it as its OS disk may not
//! also name an image or an OS profile.

use std::time::{Duration, Instant};

use azlin_arm_emulator::testing::{self as t, DISK_API, NETWORK_API, RG_API, VM_API};
use azlin_arm_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Env {
    handle: EmulatorHandle,
    client: reqwest::Client,
}

impl Env {
    async fn put(&self, path: &str, api: &str, body: &Value) -> (StatusCode, Value) {
        let url = format!("{}{path}?api-version={api}", self.handle.base_url());
        let resp = self
            .client
            .put(url)
            .bearer_auth("test-token")
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until its provisioningState is Succeeded and returns it.
    async fn succeeded(&self, path: &str, api: &str) -> Value {
        let url = format!("{}{path}?api-version={api}", self.handle.base_url());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body: Value = self
                .client
                .get(&url)
                .bearer_auth("test-token")
                .send()
                .await
                .expect("request sent")
                .json()
                .await
                .unwrap_or(Value::Null);
            if body.pointer("/properties/provisioningState") == Some(&json!("Succeeded")) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path} never succeeded: {body}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn error(answer: &(StatusCode, Value)) -> (StatusCode, &str, &str) {
    let field = |k: &str| answer.1["error"][k].as_str().unwrap_or_default();
    (answer.0, field("code"), field("target"))
}

#[tokio::test]
async fn vm_from_a_restored_os_disk_refuses_image_and_os_profile() {
    let env = Env {
        handle: Emulator::start(EmulatorConfig {
            latency: Duration::from_millis(20),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts"),
        client: reqwest::Client::new(),
    };
    env.put(&t::rg_id("rst"), RG_API, &t::rg_body()).await;
    let vnet = t::vnet_id("rst", "vnet");
    env.put(&vnet, NETWORK_API, &t::vnet_body()).await;
    env.succeeded(&vnet, NETWORK_API).await;
    let subnet = t::subnet_id("rst", "vnet", "default");
    let nic = t::nic_id("rst", "vm-nic");
    env.put(&nic, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let vm = t::vm_id("rst", "vm");
    env.put(&vm, VM_API, &t::vm_body(&nic, "Standard_D2s_v5"))
        .await;
    let os_disk = env.succeeded(&vm, VM_API).await["properties"]["storageProfile"]["osDisk"]
        ["managedDisk"]["id"]
        .as_str()
        .expect("os disk")
        .to_string();
    let snap = t::resource_id("rst", "Microsoft.Compute/snapshots", "s");
    env.put(&snap, DISK_API, &json!({ "location": "westus2", "properties": { "incremental": true, "creationData": { "createOption": "Copy", "sourceResourceId": os_disk } } })).await;
    env.succeeded(&snap, DISK_API).await;
    let disk = t::resource_id("rst", "Microsoft.Compute/disks", "restored-os");
    env.put(&disk, DISK_API, &json!({ "location": "westus2", "properties": { "creationData": { "createOption": "Copy", "sourceResourceId": snap } } })).await;
    let d = env.succeeded(&disk, DISK_API).await;
    assert_eq!(
        d["properties"]["osType"], "Linux",
        "the OS type comes from the source"
    );
    let nic2 = t::nic_id("rst", "restored-nic");
    env.put(&nic2, NETWORK_API, &t::nic_body(&subnet, None))
        .await;
    let restored = t::vm_id("rst", "restored");
    let mut body = t::vm_body(&nic2, "Standard_D2s_v5");
    body["properties"]["storageProfile"]["osDisk"] =
        json!({ "createOption": "Attach", "osType": "Linux", "managedDisk": { "id": disk } });
    let a = env.put(&restored, VM_API, &body).await;
    assert_eq!(
        error(&a),
        (StatusCode::BAD_REQUEST, "InvalidParameter", "osDisk"),
        "{}",
        a.1
    );
    body["properties"]["storageProfile"]
        .as_object_mut()
        .expect("storage profile")
        .remove("imageReference");
    let a = env.put(&restored, VM_API, &body).await;
    assert_eq!(
        error(&a),
        (StatusCode::BAD_REQUEST, "InvalidParameter", "osProfile"),
        "{}",
        a.1
    );
    body["properties"]
        .as_object_mut()
        .expect("properties")
        .remove("osProfile");
    let a = env.put(&restored, VM_API, &body).await;
    assert_eq!(a.0, StatusCode::CREATED, "{}", a.1);
    env.succeeded(&restored, VM_API).await;
    let d = env.succeeded(&disk, DISK_API).await;
    assert_eq!(d["properties"]["diskState"], "Attached");
    assert_eq!(
        d["properties"]["creationData"]["sourceResourceId"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(snap.to_ascii_lowercase())
    );
    env.handle.shutdown().await.expect("shutdown");
}
