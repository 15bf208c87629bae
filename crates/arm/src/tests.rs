//! Client, retry and LRO behaviour against the scripted server in [`super::testing`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};

use super::testing::{Reply, ScriptServer};
use super::*;

const RG: &str = "/subscriptions/sub/resourceGroups/rg";
const VM: &str =
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
const OP: &str = "/subscriptions/sub/providers/Microsoft.Compute/locations/westus2/operations/op1";

/// One observed response: method, resource type, status, remaining budget.
type Seen = (String, String, u16, Option<RateLimitRemaining>);

#[derive(Default)]
struct Recorder {
    responses: Mutex<Vec<Seen>>,
    retries: Mutex<Vec<(u32, Duration, &'static str)>>,
    limited: AtomicU32,
    transport_errors: AtomicU32,
}

impl ArmObserver for Recorder {
    fn on_response(
        &self,
        method: &Method,
        resource_type: &str,
        status: u16,
        rl: Option<&RateLimitRemaining>,
    ) {
        if let Ok(mut v) = self.responses.lock() {
            v.push((
                method.to_string(),
                resource_type.to_string(),
                status,
                rl.cloned(),
            ));
        }
    }
    fn on_retry(&self, _m: &Method, _t: &str, attempt: u32, delay: Duration, error: &ArmError) {
        if let Ok(mut v) = self.retries.lock() {
            v.push((attempt, delay, error.category()));
        }
    }
    fn on_transport_error(&self, _m: &Method, _t: &str, _e: &ArmError) {
        self.transport_errors.fetch_add(1, Ordering::SeqCst);
    }
    fn on_rate_limited(&self, _m: &Method, _t: &str, _waited: Duration) {
        self.limited.fetch_add(1, Ordering::SeqCst);
    }
}

fn observed(server: &ScriptServer) -> (ArmClient, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (server.client().with_observer(rec.clone()), rec)
}

fn vm_body(state: &str) -> Value {
    json!({"id": VM, "name": "vm1", "type": "Microsoft.Compute/virtualMachines", "location": "westus2",
           "properties": {"provisioningState": state, "hardwareProfile": {"vmSize": "Standard_D2s_v5"}}})
}

#[tokio::test]
async fn get_typed_missing_is_none_and_sends_auth_and_version() {
    let s = ScriptServer::start().await;
    s.on("GET", VM, vec![Reply::json(200, vm_body("Succeeded"))]);
    let c = s.client();
    let vms = c.compute().virtual_machines("rg");
    let vm = vms.get("vm1").await.expect("get").expect("exists");
    assert_eq!(
        vm.properties.hardware_profile.map(|h| h.vm_size).as_deref(),
        Some("Standard_D2s_v5")
    );
    assert!(
        vms.get("missing")
            .await
            .expect("404 is not an error")
            .is_none()
    );
    assert!(
        !c.network()
            .public_ips("rg")
            .exists("nope")
            .await
            .expect("exists")
    );
    let reqs = s.requests();
    assert_eq!(reqs[0].authorization.as_deref(), Some("Bearer test-token"));
    assert_eq!(reqs[0].query, "api-version=2024-11-01");
    assert!(reqs[2].query.contains("api-version=2024-05-01"));
}

#[tokio::test]
async fn throttled_429_honours_retry_after_then_succeeds() {
    let s = ScriptServer::start().await;
    s.on(
        "GET",
        VM,
        vec![
            Reply::error(429, "TooManyRequests", "slow down").header("Retry-After", "1"),
            Reply::json(200, vm_body("Succeeded"))
                .header("x-ms-ratelimit-remaining-subscription-reads", "11998"),
        ],
    );
    let mut config = s.config();
    config.retry.max_retry_after = Duration::from_secs(5);
    let rec = Arc::new(Recorder::default());
    let c = ArmClient::new(config)
        .expect("client")
        .with_observer(rec.clone());
    let vm = get_vm(&c).await.expect("retried");
    assert!(vm.is_some());
    let retries = rec.retries.lock().expect("lock").clone();
    assert_eq!(
        retries,
        vec![(1, Duration::from_secs(1), "Throttled")],
        "waited exactly Retry-After"
    );
    let responses = rec.responses.lock().expect("lock").clone();
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].2, 429);
    assert_eq!(responses[1].1, "Microsoft.Compute/virtualMachines");
    assert_eq!(
        responses[1].3.as_ref().and_then(|r| r.subscription_reads),
        Some(11998)
    );
}

#[tokio::test]
async fn retry_after_is_capped_by_policy() {
    let s = ScriptServer::start().await;
    s.on(
        "GET",
        VM,
        vec![
            Reply::error(429, "TooManyRequests", "x").header("Retry-After", "3600"),
            Reply::json(200, vm_body("Succeeded")),
        ],
    );
    let (c, rec) = observed(&s);
    get_vm(&c).await.expect("retried");
    let retries = rec.retries.lock().expect("lock").clone();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].1, s.config().retry.max_retry_after);
}

#[tokio::test]
async fn server_errors_are_retried_then_surface() {
    let s = ScriptServer::start().await;
    s.on(
        "GET",
        VM,
        vec![
            Reply::error(500, "InternalServerError", "a"),
            Reply::error(503, "ServiceUnavailable", "b"),
            Reply::json(200, vm_body("Succeeded")),
        ],
    );
    let (c, rec) = observed(&s);
    assert!(get_vm(&c).await.expect("retried").is_some());
    assert_eq!(s.count("GET", VM), 3);
    let attempts: Vec<u32> = rec
        .retries
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(attempts, vec![1, 2]);

    let s2 = ScriptServer::start().await;
    s2.on(
        "GET",
        VM,
        vec![Reply::error(500, "InternalServerError", "always")],
    );
    let c2 = s2.client().with_retry_policy(RetryPolicy {
        max_retries: 2,
        ..s2.config().retry
    });
    let e = get_vm(&c2).await.expect_err("gives up");
    assert!(matches!(e, ArmError::Server { status: 500, .. }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(s2.count("GET", VM), 3, "first attempt + 2 retries");
}

#[derive(Debug)]
struct CountingSource(Arc<AtomicU32>);

impl credential::TokenSource for CountingSource {
    fn fetch<'a>(
        &'a self,
        _scope: &'a str,
    ) -> BoxFuture<'a, Result<credential::FetchedToken, ArmError>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            Ok(credential::FetchedToken {
                token: SecretString::new(format!("t{n}")),
                expires_at: SystemTime::now() + Duration::from_secs(3600),
            })
        })
    }
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_drops_cached_token() {
    let s = ScriptServer::start().await;
    s.on(
        "GET",
        VM,
        vec![
            Reply::error(401, "AuthenticationFailed", "bad token"),
            Reply::json(200, vm_body("Succeeded")),
        ],
    );
    let fetches = Arc::new(AtomicU32::new(0));
    let c = s.client().with_credential(ArmCredential::from_source(
        Box::new(CountingSource(fetches.clone())),
        ARM_SCOPE,
    ));
    let vms = c.compute().virtual_machines("rg");
    let e = vms.get("vm1").await.expect_err("401");
    assert!(
        matches!(e, ArmError::AuthFailed { status: 401, .. }) && e.is_terminal(),
        "{e:?}"
    );
    assert_eq!(s.count("GET", VM), 1, "401 is not retried");
    assert!(vms.get("vm1").await.expect("second call").is_some());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "token fetched again after the 401"
    );
    let auths: Vec<_> = s
        .requests()
        .into_iter()
        .filter_map(|r| r.authorization)
        .collect();
    assert_eq!(
        auths,
        vec!["Bearer t1".to_string(), "Bearer t2".to_string()]
    );
}

#[tokio::test]
async fn invalid_request_surfaces_code_and_target() {
    let s = ScriptServer::start().await;
    s.on("PUT", VM, vec![Reply::json(400, json!({"error": {"code": "InvalidParameter", "message": "vmSize is bad", "target": "hardwareProfile.vmSize"}}))]);
    let c = s.client();
    let e = c
        .compute()
        .virtual_machines("rg")
        .create_or_update("vm1", &compute::VirtualMachine::default())
        .await
        .expect_err("400");
    assert_eq!(e.code(), Some("InvalidParameter"));
    assert_eq!(e.target(), Some("hardwareProfile.vmSize"));
    assert_eq!(e.message(), "vmSize is bad");
    assert!(e.is_terminal());
    assert_eq!(s.count("PUT", VM), 1);
}

#[tokio::test]
async fn put_polls_azure_async_operation_then_gets_resource() {
    let s = ScriptServer::start().await;
    s.on(
        "PUT",
        VM,
        vec![
            Reply::json(201, vm_body("Creating"))
                .header(
                    "Azure-AsyncOperation",
                    &format!("{{base}}{OP}?api-version=2024-11-01"),
                )
                .header("Retry-After", "0"),
        ],
    );
    s.on(
        "GET",
        OP,
        vec![
            Reply::operation("InProgress"),
            Reply::operation("InProgress"),
            Reply::operation("Succeeded"),
        ],
    );
    s.on("GET", VM, vec![Reply::json(200, vm_body("Succeeded"))]);
    let c = s.client();
    let vm = put_vm(&c).await.expect("created");
    assert!(
        vm.properties
            .provisioning_state
            .expect("state")
            .is_succeeded()
    );
    assert_eq!(s.count("GET", OP), 3);
    assert_eq!(s.count("GET", VM), 1);
    let put = &s.requests()[0];
    let sent: Value = serde_json::from_str(&put.body).expect("json body");
    assert_eq!(
        sent["properties"]["hardwareProfile"]["vmSize"],
        json!("Standard_D2s_v5")
    );
}

fn vm_body_typed() -> compute::VirtualMachine {
    serde_json::from_value(vm_body("Creating")).expect("vm")
}

/// GETs `rg/vm1`.
async fn get_vm(c: &ArmClient) -> Result<Option<compute::VirtualMachine>, ArmError> {
    c.compute().virtual_machines("rg").get("vm1").await
}

/// PUTs [`vm_body_typed`] as `rg/vm1`.
async fn put_vm(c: &ArmClient) -> Result<compute::VirtualMachine, ArmError> {
    c.compute()
        .virtual_machines("rg")
        .create_or_update("vm1", &vm_body_typed())
        .await
}

#[tokio::test]
async fn failed_operation_surfaces_arm_error() {
    let s = ScriptServer::start().await;
    s.on(
        "PUT",
        VM,
        vec![
            Reply::json(201, vm_body("Creating"))
                .header("Azure-AsyncOperation", &format!("{{base}}{OP}")),
        ],
    );
    s.on("GET", OP, vec![Reply::json(200, json!({"status": "Failed", "error": {"code": "AllocationFailed", "message": "no capacity"}}))]);
    let e = put_vm(&s.client()).await.expect_err("failed");
    assert!(
        matches!(&e, ArmError::OperationFailed { status: FailedStatus::Failed, code, message, .. } if code == "AllocationFailed" && message == "no capacity"),
        "{e:?}"
    );
    assert!(e.is_terminal());

    let s2 = ScriptServer::start().await;
    s2.on(
        "POST",
        &format!("{VM}/start"),
        vec![Reply::empty(202).header("Azure-AsyncOperation", &format!("{{base}}{OP}"))],
    );
    s2.on(
        "GET",
        OP,
        vec![Reply::json(200, json!({"status": "Canceled"}))],
    );
    let e = s2
        .client()
        .compute()
        .virtual_machines("rg")
        .start("vm1")
        .await
        .expect_err("canceled");
    assert!(
        matches!(
            e,
            ArmError::OperationFailed {
                status: FailedStatus::Canceled,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
}

#[tokio::test]
async fn delete_polls_location() {
    let s = ScriptServer::start().await;
    let loc = "/subscriptions/sub/operationresults/del1";
    s.on(
        "DELETE",
        RG,
        vec![
            Reply::empty(202)
                .header("Location", &format!("{{base}}{loc}?api-version=2021-04-01"))
                .header("Retry-After", "0"),
        ],
    );
    s.on(
        "GET",
        loc,
        vec![Reply::empty(202), Reply::empty(202), Reply::empty(200)],
    );
    s.client().resources().delete("rg").await.expect("deleted");
    assert_eq!(s.count("GET", loc), 3);
    let reqs = s.requests();
    assert!(
        reqs.iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer test-token"))
    );
    // A delete of something already gone succeeds at once.
    s.client()
        .network()
        .interfaces("rg")
        .delete("gone")
        .await
        .expect("404 delete is success");
}

#[tokio::test]
async fn azure_async_operation_preferred_over_location() {
    let s = ScriptServer::start().await;
    let loc =
        "/subscriptions/sub/providers/Microsoft.Compute/locations/westus2/operationresults/op1";
    s.on(
        "POST",
        &format!("{VM}/deallocate"),
        vec![
            Reply::empty(202)
                .header("Location", &format!("{{base}}{loc}"))
                .header("Azure-AsyncOperation", &format!("{{base}}{OP}")),
        ],
    );
    s.on(
        "GET",
        OP,
        vec![
            Reply::operation("InProgress"),
            Reply::operation("Succeeded"),
        ],
    );
    s.on("GET", loc, vec![Reply::empty(204)]);
    s.client()
        .compute()
        .virtual_machines("rg")
        .deallocate("vm1")
        .await
        .expect("deallocated");
    assert_eq!(s.count("GET", OP), 2);
    assert_eq!(
        s.count("GET", loc),
        1,
        "Location only fetched for the result after success"
    );
}

#[tokio::test]
async fn put_without_headers_polls_provisioning_state() {
    // 201 with a body, and 202 without any polling header: both poll the resource.
    for (put, first_state, what) in [
        (Reply::json(201, vm_body("Creating")), "Updating", "ok"),
        (Reply::empty(202), "Creating", "202 without headers"),
    ] {
        let s = ScriptServer::start().await;
        s.on("PUT", VM, vec![put]);
        s.on(
            "GET",
            VM,
            vec![
                Reply::json(200, vm_body(first_state)),
                Reply::json(200, vm_body("Succeeded")),
            ],
        );
        let vm = put_vm(&s.client()).await.expect(what);
        assert!(
            vm.properties
                .provisioning_state
                .expect("state")
                .is_succeeded()
        );
        assert_eq!(s.count("GET", VM), 2, "{what}");
    }

    let s2 = ScriptServer::start().await;
    s2.on("PUT", VM, vec![Reply::json(200, vm_body("Failed"))]);
    let e = put_vm(&s2.client()).await.expect_err("failed");
    assert_eq!(e.code(), Some("ProvisioningStateFailed"));
}

#[tokio::test]
async fn storage_create_polls_location_then_reads_account() {
    let s = ScriptServer::start().await;
    let acct =
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";
    let loc = "/subscriptions/sub/providers/Microsoft.Storage/locations/westus2/asyncoperations/a1";
    s.on(
        "PUT",
        acct,
        vec![
            Reply::empty(202)
                .header("Location", &format!("{{base}}{loc}"))
                .header("Retry-After", "17"),
        ],
    );
    s.on(
        "GET",
        loc,
        vec![Reply::empty(202), Reply::json(200, json!({"id": acct}))],
    );
    s.on("GET", acct, vec![Reply::json(200, json!({"id": acct, "kind": "FileStorage", "sku": {"name": "Premium_LRS"}, "properties": {"provisioningState": "Succeeded", "supportsHttpsTrafficOnly": false}}))]);
    let a = s
        .client()
        .storage()
        .accounts("rg")
        .create_nfs(
            "acct",
            "westus2",
            "Premium_LRS",
            &["/subnet".into()],
            &BTreeMap::new(),
        )
        .await
        .expect("created");
    assert_eq!(a.kind.as_deref(), Some("FileStorage"));
    assert_eq!(a.properties.supports_https_traffic_only, Some(false));
    assert_eq!(s.count("GET", loc), 2);
}

#[tokio::test]
async fn wait_provisioned_and_wait_deleted_rederive_state() {
    let s = ScriptServer::start().await;
    s.on(
        "GET",
        VM,
        vec![
            Reply::json(200, vm_body("Updating")),
            Reply::json(200, vm_body("Succeeded")),
        ],
    );
    let id = ResourceId::parse(VM).expect("id");
    let c = s.client();
    let v = c.wait_provisioned(&id).await.expect("provisioned");
    assert_eq!(v["properties"]["provisioningState"], json!("Succeeded"));

    let s2 = ScriptServer::start().await;
    s2.on(
        "GET",
        VM,
        vec![
            Reply::json(200, vm_body("Creating")),
            Reply::json(200, vm_body("Failed")),
        ],
    );
    let e = s2.client().wait_provisioned(&id).await.expect_err("failed");
    assert!(
        matches!(
            e,
            ArmError::OperationFailed {
                status: FailedStatus::Failed,
                ..
            }
        ),
        "{e:?}"
    );
    let e = ScriptServer::start()
        .await
        .client()
        .wait_provisioned(&id)
        .await
        .expect_err("missing");
    assert!(e.is_not_found());

    let s3 = ScriptServer::start().await;
    s3.on(
        "GET",
        VM,
        vec![
            Reply::json(200, vm_body("Deleting")),
            Reply::json(200, vm_body("Deleting")),
            Reply::error(404, "ResourceNotFound", "gone"),
        ],
    );
    s3.client().wait_deleted(&id).await.expect("gone");
    assert_eq!(s3.count("GET", VM), 3);
}

#[tokio::test]
async fn lro_times_out_when_operation_never_ends() {
    let s = ScriptServer::start().await;
    s.on(
        "POST",
        &format!("{VM}/restart"),
        vec![Reply::empty(202).header("Azure-AsyncOperation", &format!("{{base}}{OP}"))],
    );
    s.on("GET", OP, vec![Reply::operation("InProgress")]);
    let c = s.client().with_lro_policy(LroPolicy {
        timeout: Duration::from_millis(100),
        ..LroPolicy::fast()
    });
    let e = c
        .compute()
        .virtual_machines("rg")
        .restart("vm1")
        .await
        .expect_err("timeout");
    assert!(
        matches!(e, ArmError::OperationTimeout { .. }) && e.is_transient(),
        "{e:?}"
    );
}

#[tokio::test]
async fn begin_returns_resumable_poller() {
    let s = ScriptServer::start().await;
    s.on(
        "POST",
        &format!("{VM}/powerOff"),
        vec![Reply::empty(202).header("Azure-AsyncOperation", &format!("{{base}}{OP}"))],
    );
    s.on(
        "GET",
        OP,
        vec![
            Reply::json(
                200,
                json!({"status": "InProgress", "percentComplete": 40.0}),
            ),
            Reply::operation("Succeeded"),
        ],
    );
    let c = s.client();
    let mut poller = c
        .compute()
        .virtual_machines("rg")
        .begin_power("vm1", compute::PowerAction::PowerOff)
        .await
        .expect("begun");
    assert!(!poller.is_done());
    poller.poll(&c).await.expect("poll");
    assert_eq!(poller.percent_complete, Some(40.0));
    // Persist and resume, e.g. across a controller restart.
    let stored = serde_json::to_string(&poller).expect("ser");
    let resumed: Poller = serde_json::from_str(&stored).expect("de");
    c.wait(resumed).await.expect("finished");
    assert_eq!(s.count("GET", OP), 2);
}

#[tokio::test]
async fn list_follows_next_link_and_filters_tags() {
    let s = ScriptServer::start().await;
    let coll = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/disks";
    let page2 = "/page2";
    s.on("GET", coll, vec![Reply::json(200, json!({"value": [{"name": "d1", "tags": {"owner": "a"}}], "nextLink": format!("{{base}}{page2}?token=x")}))]);
    s.on(
        "GET",
        page2,
        vec![Reply::json(
            200,
            json!({"value": [{"name": "d2", "tags": {"owner": "b"}}]}),
        )],
    );
    let c = s.client();
    let all = c.compute().disks("rg").list().await.expect("list");
    assert_eq!(
        all.iter()
            .filter_map(|d| d.name.as_deref())
            .collect::<Vec<_>>(),
        vec!["d1", "d2"]
    );
    let mine = c
        .compute()
        .disks("rg")
        .list_tagged(&TagFilter::eq("owner", "b"))
        .await
        .expect("list");
    assert_eq!(mine.len(), 1);
    assert!(
        s.requests()
            .iter()
            .any(|r| r.path == page2 && r.query == "token=x")
    );

    s.on("GET", &format!("{RG}/resources"), vec![Reply::json(200, json!({"value": [
            {"id": "/x", "name": "x", "type": "Microsoft.Network/networkInterfaces", "tags": {"azlin.io/owner": "ns/vm"}},
            {"id": "/y", "name": "y", "type": "Microsoft.Network/networkInterfaces", "tags": {"azlin.io/owner": "other"}}
        ]}))]);
    let found = c
        .resources()
        .list_resources("rg", Some(&TagFilter::eq("azlin.io/owner", "ns/vm")))
        .await
        .expect("list");
    assert_eq!(found.len(), 1);
    let q = s
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.ends_with("/resources"))
        .expect("request")
        .query;
    assert!(
        q.contains("%24filter=tagName+eq+%27azlin.io%2Fowner%27+and+tagValue+eq+%27ns%2Fvm%27"),
        "{q}"
    );
}

#[tokio::test]
async fn foreign_operation_url_is_refused() {
    let s = ScriptServer::start().await;
    s.on(
        "PUT",
        VM,
        vec![
            Reply::json(201, vm_body("Creating"))
                .header("Azure-AsyncOperation", "http://elsewhere.invalid/op"),
        ],
    );
    let e = put_vm(&s.client()).await.expect_err("refused");
    assert!(matches!(e, ArmError::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn connection_errors_are_retried_then_transport() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut config =
        ArmConfig::for_emulator(&format!("http://{addr}"), "sub", "t").expect("config");
    config.retry.max_retries = 2;
    let rec = Arc::new(Recorder::default());
    let c = ArmClient::new(config)
        .expect("client")
        .with_observer(rec.clone());
    let e = c.resources().get("rg").await.expect_err("no server");
    assert!(
        matches!(e, ArmError::Transport { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert_eq!(rec.retries.lock().expect("lock").len(), 2);
    assert_eq!(
        rec.transport_errors.load(Ordering::SeqCst),
        3,
        "every attempt reported"
    );
}

#[tokio::test]
async fn client_side_bucket_delays_bursts() {
    let s = ScriptServer::start().await;
    s.on("GET", RG, vec![Reply::json(200, json!({"name": "rg", "location": "westus2", "properties": {"provisioningState": "Succeeded"}}))]);
    let mut config = s.config();
    config.rate_limits.enabled = true;
    config.rate_limits.reads = BucketRate {
        per_second: 50,
        burst: 1,
    };
    let rec = Arc::new(Recorder::default());
    let c = ArmClient::new(config)
        .expect("client")
        .with_observer(rec.clone());
    for _ in 0..3 {
        assert!(c.resources().exists("rg").await.expect("get"));
    }
    assert!(
        rec.limited.load(Ordering::SeqCst) >= 1,
        "requests beyond the burst waited for tokens"
    );
    assert_eq!(s.count("GET", RG), 3);
}

#[tokio::test]
async fn vm_instance_view_and_snapshot_copy_wait() {
    let s = ScriptServer::start().await;
    let mut body = vm_body("Succeeded");
    body["properties"]["instanceView"] = json!({"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}]});
    s.on("GET", VM, vec![Reply::json(200, body)]);
    let c = s.client();
    let st = c
        .compute()
        .virtual_machines("rg")
        .get_with_instance_view("vm1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(st.power_state, Some(compute::PowerState::Running));
    assert_eq!(st.provisioning_state, Some(OperationState::Succeeded));
    assert_eq!(
        s.requests()[0].query,
        "api-version=2024-11-01&%24expand=instanceView"
    );

    let snap = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/snapshots/copy1";
    let at = |p: f64| {
        Reply::json(
            200,
            json!({"id": snap, "location": "eastus", "properties": {"provisioningState": "Succeeded", "completionPercent": p, "creationData": {"createOption": "CopyStart"}}}),
        )
    };
    s.on("GET", snap, vec![at(10.0), at(55.0), at(100.0)]);
    let done = c
        .compute()
        .snapshots("rg")
        .wait_copy_complete("copy1")
        .await
        .expect("copied");
    assert_eq!(done.properties.completion_percent, Some(100.0));
    assert_eq!(s.count("GET", snap), 3);

    let bad = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/snapshots/copy2";
    s.on("GET", bad, vec![Reply::json(200, json!({"properties": {"completionPercent": 20.0, "copyCompletionError": {"errorCode": "CopySourceNotFound", "errorMessage": "source gone"}}}))]);
    let e = c
        .compute()
        .snapshots("rg")
        .wait_copy_complete("copy2")
        .await
        .expect_err("copy failed");
    assert_eq!(e.code(), Some("CopySourceNotFound"));
}

#[tokio::test]
async fn share_quota_update_is_a_patch() {
    let s = ScriptServer::start().await;
    let share = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct/fileServices/default/shares/home";
    s.on(
        "PATCH",
        share,
        vec![Reply::json(
            200,
            json!({"id": share, "properties": {"shareQuota": 200, "enabledProtocols": "NFS"}}),
        )],
    );
    let updated = s
        .client()
        .storage()
        .file_shares("rg", "acct")
        .update_quota("home", 200)
        .await
        .expect("patched");
    assert_eq!(updated.properties.share_quota, Some(200));
    let sent: Value = serde_json::from_str(&s.requests()[0].body).expect("json");
    assert_eq!(sent, json!({"properties": {"shareQuota": 200}}));
    assert!(s.requests()[0].query.contains("api-version=2023-05-01"));
}

#[tokio::test]
async fn https_with_extra_ca_file() {
    let (s, ca_pem) = ScriptServer::start_tls().await;
    s.on(
        "GET",
        RG,
        vec![Reply::json(
            200,
            json!({"name": "rg", "location": "westus2"}),
        )],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("write ca");

    let trusted = ArmClient::new(s.config().with_ca_file(&ca)).expect("client");
    assert!(
        trusted
            .resources()
            .exists("rg")
            .await
            .expect("TLS with the extra CA")
    );

    let mut untrusting = s.config();
    untrusting.retry.max_retries = 0;
    let e = ArmClient::new(untrusting)
        .expect("client")
        .resources()
        .get("rg")
        .await
        .expect_err("unknown CA");
    assert!(matches!(e, ArmError::Transport { .. }), "{e:?}");
    assert_eq!(
        s.count("GET", RG),
        1,
        "only the trusting client got through"
    );
}

/// Controllers run these futures on a multi-threaded runtime: they must be `Send`.
#[test]
fn futures_are_send_and_client_is_send_sync() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<ArmClient>();
    send_sync::<ArmCredential>();
    let c =
        ArmClient::new(ArmConfig::for_emulator("http://127.0.0.1:9", "sub", "t").expect("config"))
            .expect("client");
    let vm = compute::VirtualMachine::default();
    let vms = c.compute().virtual_machines("rg");
    send(&vms.create_or_update("vm1", &vm));
    send(&vms.get_with_instance_view("vm1"));
    send(&vms.start("vm1"));
    send(&vms.delete("vm1"));
    send(&vms.list_tagged(&TagFilter::exists("x")));
    send(&c.compute().snapshots("rg").wait_copy_complete("s"));
    send(&c.storage().file_shares("rg", "a").update_quota("s", 100));
    send(&c.resources().list_resources("rg", None));
    send(&c.wait_provisioned(&ResourceId::resource_group("sub", "rg")));
    send(&c.wait(Poller::watch_resource(
        Method::GET,
        &c.url("/x", "v", &[]).expect("url"),
    )));
}

#[tokio::test(start_paused = true)]
async fn resource_graph_queries_follow_skip_tokens_and_wait_out_a_spent_quota() {
    let s = ScriptServer::start().await;
    let path = "/providers/Microsoft.ResourceGraph/resources";
    s.on(
        "POST",
        path,
        vec![
            Reply::json(
                200,
                json!({"totalRecords": 3, "count": 2, "resultTruncated": "false", "$skipToken": "next",
                       "data": [{"id": "/a"}, {"id": "/b"}]}),
            )
            .header("x-ms-user-quota-remaining", "0")
            .header("x-ms-user-quota-resets-after", "00:00:05"),
            Reply::json(
                200,
                json!({"totalRecords": 3, "count": 1, "resultTruncated": "false", "data": [{"id": "/c"}]}),
            )
            .header("x-ms-user-quota-remaining", "14")
            .header("x-ms-user-quota-resets-after", "00:00:05"),
            Reply::json(
                200,
                json!({"totalRecords": 9, "count": 1, "resultTruncated": "true", "data": [{"name": "x"}]}),
            ),
        ],
    );
    let c = s.client();
    let started = tokio::time::Instant::now();
    let rows = pacing::with_flow("test", async {
        let rows = c
            .graph()
            .query(&["sub"], "Resources | where type =~ 'x'")
            .await
            .expect("query");
        assert_eq!(pacing::reads_in_flow(), 2, "each page is a read");
        assert_eq!(pacing::writes_in_flow(), 0);
        rows
    })
    .await;
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["/a", "/b", "/c"]);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the second page waited for the spent quota to reset"
    );
    let sent = s.requests();
    let bodies: Vec<Value> = sent
        .iter()
        .filter(|r| r.path == path)
        .map(|r| serde_json::from_str(&r.body).expect("JSON body"))
        .collect();
    assert_eq!(bodies[0]["subscriptions"], json!(["sub"]));
    assert_eq!(bodies[0]["options"]["$top"], 1000);
    assert!(bodies[0]["options"].get("$skipToken").is_none());
    assert_eq!(bodies[1]["options"]["$skipToken"], "next");
    assert!(
        sent.iter()
            .all(|r| r.query.contains("api-version=2022-10-01"))
    );

    // An answer truncated for want of the id column is an error, not a partial result.
    let e = c
        .graph()
        .query(&["sub"], "Resources | project name")
        .await
        .expect_err("truncated");
    assert!(e.to_string().contains("id column"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_resource_graph_429_waits_for_the_reported_quota_reset() {
    let s = ScriptServer::start().await;
    let path = "/providers/Microsoft.ResourceGraph/resources";
    // A 429 without Retry-After is retried once the quota it reports has reset.
    s.on(
        "POST",
        path,
        vec![
            Reply::json(
                429,
                json!({"error": {"code": "RateLimiting", "message": "throttled"}}),
            )
            .header("x-ms-user-quota-remaining", "0")
            .header("x-ms-user-quota-resets-after", "00:00:20"),
            Reply::json(
                200,
                json!({"totalRecords": 1, "count": 1, "resultTruncated": "false", "data": [{"id": "/d"}]}),
            )
            .header("x-ms-user-quota-remaining", "14")
            .header("x-ms-user-quota-resets-after", "00:00:05"),
        ],
    );
    let c = s.client();
    let throttled_at = tokio::time::Instant::now();
    let rows = c
        .graph()
        .query(&["sub"], "Resources | where type =~ 'x'")
        .await
        .expect("query after the quota reset");
    assert_eq!(rows[0]["id"], "/d");
    assert!(
        throttled_at.elapsed() >= Duration::from_secs(20),
        "the retry waited for the reported reset, not the client's backoff ({:?})",
        throttled_at.elapsed()
    );
    assert_eq!(s.count("POST", path), 2, "one 429, one retry");
}
