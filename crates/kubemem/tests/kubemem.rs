//! Tests of the in-memory API server, all through `kube::Api` over `ApiServer::client()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use azlin_kubemem::testing::eventually;
use azlin_kubemem::{Admission, ApiServer, Config, FieldCause, Verb};
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, ResourceExt,
    VersionMatch, WatchEvent, WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Test CRD with a status subresource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.azlin.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<String>,
}

/// Status of [`Widget`].
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    ready: bool,
}

/// Test CRD without a status subresource, cluster scoped.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(group = "test.azlin.io", version = "v1", kind = "Gadget")]
pub struct GadgetSpec {
    size: i64,
}

/// Rejects `spec.size > 10` and defaults `spec.color` to `blue`.
struct SizeAdmission;

impl Admission for SizeAdmission {
    fn admit(&self, new: &mut Value, _old: Option<&Value>) -> Result<(), Vec<FieldCause>> {
        let size = new
            .pointer("/spec/size")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if size > 10 {
            return Err(vec![FieldCause::invalid(
                "spec.size",
                format!("Invalid value: {size}: must be at most 10"),
            )]);
        }
        if new.pointer("/spec/color").is_none()
            && let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("color".into(), json!("blue"));
        }
        Ok(())
    }
}

fn server() -> ApiServer {
    server_with(Config::default())
}

fn server_with(config: Config) -> ApiServer {
    let s = ApiServer::with_config(config);
    s.register_crd(&Widget::crd(), None).expect("widget crd");
    s.register_crd(&gadget_crd(), None).expect("gadget crd");
    s
}

/// The Gadget CRD, whose schema also declares a free-form `status` (ordinary content, since
/// Gadget has no status subresource; undeclared fields would be pruned).
fn gadget_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = serde_json::to_value(Gadget::crd()).expect("crd json");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    serde_json::from_value(crd).expect("crd")
}

fn widget(name: &str, size: i64) -> Widget {
    Widget::new(name, WidgetSpec { size, color: None })
}

fn rv(o: &impl Resource) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("numeric resourceVersion")
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected API error, got {other:?}"),
    }
}

fn secret(name: &str, labels: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn resource_version_is_monotonic_and_metadata_is_set() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    let a = api.create(&pp, &secret("a", &[])).await.expect("create a");
    let b = api.create(&pp, &secret("b", &[])).await.expect("create b");
    assert!(rv(&b) > rv(&a));
    let a2 = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "dg=="}})),
        )
        .await
        .expect("patch");
    assert!(rv(&a2) > rv(&b));
    assert_eq!(a2.metadata.uid, a.metadata.uid);
    assert!(uuid::Uuid::parse_str(a.metadata.uid.as_deref().expect("uid")).is_ok());
    assert!(a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
    let list = api.list(&ListParams::default()).await.expect("list");
    let list_rv: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("list rv");
    assert!(list_rv >= rv(&a2));
    assert_eq!(list_rv, s.resource_version());
    assert_eq!(list.items.len(), 2);
}

#[tokio::test]
async fn create_conflicts_and_generate_name() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    api.create(&pp, &secret("dup", &[])).await.expect("create");
    let err = api_err(api.create(&pp, &secret("dup", &[])).await.expect_err("409"));
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    let mut generated = secret("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let created = api.create(&pp, &generated).await.expect("generateName");
    let name = created.name_any();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let err = api_err(
        api.create(&pp, &secret("Bad_Name", &[]))
            .await
            .expect_err("invalid name"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let mut with_rv = secret("with-rv", &[]);
    with_rv.metadata.resource_version = Some("5".into());
    let err = api_err(api.create(&pp, &with_rv).await.expect_err("rv on create"));
    assert_eq!(err.code, 500);
}

#[tokio::test]
async fn stale_replace_gets_409_conflict() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    let orig = api.create(&pp, &secret("x", &[])).await.expect("create");
    let mut first = orig.clone();
    first.metadata.labels = Some([("v".to_string(), "1".to_string())].into());
    let updated = api.replace("x", &pp, &first).await.expect("first replace");
    assert!(rv(&updated) > rv(&orig));
    let mut second = orig.clone();
    second.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
    let err = api_err(api.replace("x", &pp, &second).await.expect_err("stale"));
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    // merge patch carrying a stale resourceVersion conflicts too
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": orig.resource_version()}}));
    let err = api_err(
        api.patch("x", &PatchParams::default(), &stale)
            .await
            .expect_err("stale"),
    );
    assert_eq!(err.code, 409);
}

#[tokio::test]
async fn generation_bumps_only_on_spec_changes() {
    let s = server();
    let api: Api<Widget> = Api::default_namespaced(s.client());
    let w = api
        .create(&PostParams::default(), &widget("g", 1))
        .await
        .expect("create");
    assert_eq!(w.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let w = api
        .patch(
            "g",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label patch");
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch_status("g", &pp, &Patch::Merge(json!({"status": {"ready": true}})))
        .await
        .expect("status patch");
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch("g", &pp, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .expect("spec patch");
    assert_eq!(w.metadata.generation, Some(2));
    // a no-op write keeps resourceVersion and generation
    let again = api
        .patch("g", &pp, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .expect("noop patch");
    assert_eq!(again.resource_version(), w.resource_version());
    assert_eq!(again.metadata.generation, Some(2));
}

#[tokio::test]
async fn status_subresource_rules_both_ways() {
    let s = server();
    let api: Api<Widget> = Api::default_namespaced(s.client());
    let mut w = widget("st", 1);
    w.status = Some(WidgetStatus { ready: true });
    let created = api
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    assert_eq!(created.status, None, "create ignores status");
    let pp = PatchParams::default();
    let main = api
        .patch(
            "st",
            &pp,
            &Patch::Merge(json!({"spec": {"size": 3}, "status": {"ready": true}})),
        )
        .await
        .expect("main patch");
    assert_eq!(main.spec.size, 3);
    assert_eq!(main.status, None, "main endpoint ignores status");
    let st = api
        .patch_status(
            "st",
            &pp,
            &Patch::Merge(json!({"spec": {"size": 9}, "status": {"ready": true}})),
        )
        .await
        .expect("status patch");
    assert_eq!(st.spec.size, 3, "status endpoint ignores spec");
    assert_eq!(st.status, Some(WidgetStatus { ready: true }));
    // replace_status with a full object
    let mut full = st.clone();
    full.status = Some(WidgetStatus { ready: false });
    full.spec.size = 7;
    let replaced = api
        .replace_status("st", &PostParams::default(), &full)
        .await
        .expect("replace status");
    assert_eq!(replaced.spec.size, 3);
    assert_eq!(replaced.status, Some(WidgetStatus { ready: false }));

    // Gadget has no status subresource: status is ordinary content and /status is unknown.
    let gadgets: Api<Gadget> = Api::all(s.client());
    let mut g = Gadget::new("g1", GadgetSpec { size: 1 });
    g.metadata.namespace = None;
    gadgets
        .create(&PostParams::default(), &g)
        .await
        .expect("create gadget");
    let patched: Value = s
        .client()
        .request(
            http::Request::patch("/apis/test.azlin.io/v1/gadgets/g1")
                .header("content-type", "application/merge-patch+json")
                .body(serde_json::to_vec(&json!({"status": {"x": 1}})).expect("json"))
                .expect("request"),
        )
        .await
        .expect("patch gadget status as content");
    assert_eq!(patched["status"], json!({"x": 1}));
    assert_eq!(patched["metadata"]["generation"], json!(2));
    let err = api_err(
        gadgets
            .patch_status("g1", &pp, &Patch::Merge(json!({"status": {}})))
            .await
            .expect_err("no status subresource"),
    );
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let s = server();
    let api: Api<ConfigMap> = Api::default_namespaced(s.client());
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cm".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let pp = PatchParams::default();
    let merged = api
        .patch(
            "cm",
            &pp,
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .expect("merge");
    let data = merged.data.clone().expect("data");
    assert_eq!(data.get("a"), None);
    assert_eq!(data.get("c").map(String::as_str), Some("3"));
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "22"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}
    ]))
    .expect("ops");
    let jp = api
        .patch("cm", &pp, &Patch::<()>::Json(ops))
        .await
        .expect("json patch");
    assert_eq!(
        jp.data.expect("data").get("b").map(String::as_str),
        Some("22")
    );
    assert_eq!(
        jp.metadata
            .labels
            .expect("labels")
            .get("x")
            .map(String::as_str),
        Some("y")
    );
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "nope"}]))
            .expect("ops");
    let err = api_err(
        api.patch("cm", &pp, &Patch::<()>::Json(failing))
            .await
            .expect_err("test op fails"),
    );
    assert_eq!(err.code, 422);
    let strategic = api
        .patch("cm", &pp, &Patch::Strategic(json!({"data": {"d": "4"}})))
        .await
        .expect("strategic");
    assert_eq!(
        strategic.data.expect("data").get("d").map(String::as_str),
        Some("4")
    );
    let missing = api_err(
        api.patch("nope", &pp, &Patch::Merge(json!({})))
            .await
            .expect_err("404"),
    );
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn server_side_apply_creates_merges_removes_and_conflicts() {
    let s = server();
    let api: Api<Widget> = Api::default_namespaced(s.client());
    let ssa = PatchParams::apply("mgr-a");
    let first = json!({
        "apiVersion": "test.azlin.io/v1", "kind": "Widget",
        "metadata": {"name": "ap", "labels": {"one": "1", "two": "2"}},
        "spec": {"size": 1, "color": "red"}
    });
    let w = api
        .patch("ap", &ssa, &Patch::Apply(&first))
        .await
        .expect("apply create");
    assert_eq!(w.spec.color.as_deref(), Some("red"));
    assert_eq!(w.labels().get("two").map(String::as_str), Some("2"));
    assert_eq!(w.metadata.generation, Some(1));
    // another writer adds a label with a merge patch: not owned by mgr-a
    api.patch(
        "ap",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"other": "x"}}})),
    )
    .await
    .expect("merge");
    // mgr-a drops spec.color and label two: both removed; label other stays
    let second = json!({
        "apiVersion": "test.azlin.io/v1", "kind": "Widget",
        "metadata": {"name": "ap", "labels": {"one": "1"}},
        "spec": {"size": 1}
    });
    let w = api
        .patch("ap", &ssa, &Patch::Apply(&second))
        .await
        .expect("apply again");
    assert_eq!(
        w.spec.color, None,
        "field dropped by its manager is removed"
    );
    assert_eq!(w.labels().get("two"), None);
    assert_eq!(w.labels().get("other").map(String::as_str), Some("x"));
    assert_eq!(w.metadata.generation, Some(2));
    let managers: Vec<String> = w
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"mgr-a".to_string()), "{managers:?}");
    // mgr-b applying a different spec.size conflicts without force
    let other = json!({
        "apiVersion": "test.azlin.io/v1", "kind": "Widget",
        "metadata": {"name": "ap"}, "spec": {"size": 5}
    });
    let err = api_err(
        api.patch("ap", &PatchParams::apply("mgr-b"), &Patch::Apply(&other))
            .await
            .expect_err("conflict"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("mgr-a"), "{}", err.message);
    let forced = api
        .patch(
            "ap",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("forced");
    assert_eq!(forced.spec.size, 5);
    // apply to the status subresource only touches status
    let status = json!({
        "apiVersion": "test.azlin.io/v1", "kind": "Widget",
        "metadata": {"name": "ap"}, "status": {"ready": true}
    });
    let st = api
        .patch_status(
            "ap",
            &PatchParams::apply("mgr-a").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("status apply");
    assert_eq!(st.status, Some(WidgetStatus { ready: true }));
    assert_eq!(st.spec.size, 5);
    // re-applying the main object without status keeps status
    let again = api
        .patch(
            "ap",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("reapply");
    assert_eq!(again.status, Some(WidgetStatus { ready: true }));
    assert_eq!(
        again.resource_version(),
        st.resource_version(),
        "no-op apply"
    );
}

#[tokio::test]
async fn label_and_field_selectors() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    api.create(&pp, &secret("a", &[("app", "web"), ("tier", "front")]))
        .await
        .expect("a");
    api.create(&pp, &secret("b", &[("app", "db")]))
        .await
        .expect("b");
    api.create(&pp, &secret("c", &[])).await.expect("c");
    s.ensure_namespace("other").expect("namespace other");
    let other: Api<Secret> = Api::namespaced(s.client(), "other");
    other
        .create(&pp, &secret("d", &[("app", "web")]))
        .await
        .expect("d");
    let names = |l: kube::core::ObjectList<Secret>| -> Vec<String> {
        l.items.iter().map(|o| o.name_any()).collect()
    };
    let q = |sel: &str| ListParams::default().labels(sel);
    assert_eq!(names(api.list(&q("app=web")).await.expect("=")), ["a"]);
    assert_eq!(names(api.list(&q("app==db")).await.expect("==")), ["b"]);
    assert_eq!(
        names(api.list(&q("app!=web")).await.expect("!=")),
        ["b", "c"]
    );
    assert_eq!(
        names(api.list(&q("app in (web,db)")).await.expect("in")),
        ["a", "b"]
    );
    assert_eq!(
        names(api.list(&q("app notin (web)")).await.expect("notin")),
        ["b", "c"]
    );
    assert_eq!(names(api.list(&q("tier")).await.expect("exists")), ["a"]);
    assert_eq!(names(api.list(&q("!app")).await.expect("!exists")), ["c"]);
    let f = ListParams::default().fields("metadata.name=b");
    assert_eq!(names(api.list(&f).await.expect("field")), ["b"]);
    let all: Api<Secret> = Api::all(s.client());
    assert_eq!(
        names(all.list(&q("app=web")).await.expect("all ns")),
        ["a", "d"]
    );
    let f = ListParams::default().fields("metadata.namespace=other");
    assert_eq!(names(all.list(&f).await.expect("ns field")), ["d"]);
    let err = api_err(
        api.list(&ListParams::default().fields("spec.x=1"))
            .await
            .expect_err("unsupported field"),
    );
    assert_eq!(err.code, 400);
    // paging with limit/continue
    let page1 = all
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("continue token");
    let page2 = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(page2.items.len(), 2);
    assert!(page2.metadata.continue_.is_none());
}

async fn next_event<K>(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
) -> WatchEvent<K> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("watch event in time")
        .expect("stream open")
        .expect("event ok")
}

#[tokio::test]
async fn watch_sees_added_modified_deleted_from_resource_version() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    let pre = api.create(&pp, &secret("pre", &[])).await.expect("pre");
    let start = pre.resource_version().expect("rv");
    // history replay: events after `start` are created before the watch opens
    api.create(&pp, &secret("w", &[])).await.expect("create");
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "w"),
        other => panic!("expected ADDED w, got {other:?}"),
    }
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})),
    )
    .await
    .expect("modify");
    match next_event(&mut stream).await {
        WatchEvent::Modified(o) => assert_eq!(o.labels().get("m").map(String::as_str), Some("1")),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    api.delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    match next_event(&mut stream).await {
        WatchEvent::Deleted(o) => assert_eq!(o.name_any(), "w"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    // resourceVersion=0 starts with synthetic ADDED events for current objects
    let mut from_zero = api
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch 0")
        .boxed();
    match next_event(&mut from_zero).await {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "pre"),
        other => panic!("expected synthetic ADDED, got {other:?}"),
    }
    // a label-selected watch sees an object entering the selection as ADDED
    let now = s.resource_version().to_string();
    let mut selected = api
        .watch(&WatchParams::default().labels("sel=yes"), &now)
        .await
        .expect("selected watch")
        .boxed();
    api.patch(
        "pre",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "yes"}}})),
    )
    .await
    .expect("label");
    match next_event(&mut selected).await {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "pre"),
        other => panic!("expected ADDED on entering selection, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_sends_bookmarks_and_honours_timeout() {
    let s = server_with(Config {
        bookmark_interval: Duration::from_millis(50),
        ..Config::default()
    });
    let api: Api<Secret> = Api::default_namespaced(s.client());
    api.create(&PostParams::default(), &secret("b", &[]))
        .await
        .expect("create");
    let now = s.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &now)
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, now),
        other => panic!("expected BOOKMARK, got {other:?}"),
    }
    // streaming list: initial events end with an annotated bookmark
    let mut streaming = api
        .watch(&WatchParams::streaming_lists(), "0")
        .await
        .expect("streaming list")
        .boxed();
    assert!(matches!(
        next_event(&mut streaming).await,
        WatchEvent::Added(_)
    ));
    match next_event(&mut streaming).await {
        WatchEvent::Bookmark(b) => {
            assert!(
                b.metadata
                    .annotations
                    .contains_key("k8s.io/initial-events-end")
            )
        }
        other => panic!("expected initial-events-end BOOKMARK, got {other:?}"),
    }
    // timeoutSeconds ends the stream
    let mut short = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &now)
        .await
        .expect("short watch")
        .boxed();
    let ended = tokio::time::timeout(WAIT, short.next())
        .await
        .expect("stream ends in time");
    assert!(ended.is_none(), "expected end of stream, got {ended:?}");
}

#[tokio::test]
async fn expired_resource_version_gets_410() {
    let s = server_with(Config {
        history_limit: 2,
        ..Config::default()
    });
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let first = api
        .create(&PostParams::default(), &secret("s0", &[]))
        .await
        .expect("create");
    let old = first.resource_version().expect("rv");
    for i in 1..5 {
        api.create(&PostParams::default(), &secret(&format!("s{i}"), &[]))
            .await
            .expect("create");
    }
    let mut stream = api
        .watch(&WatchParams::default(), &old)
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("ends")
            .is_none()
    );
    let err = api_err(
        api.list(&ListParams::default().at(&old).matching(VersionMatch::Exact))
            .await
            .expect_err("exact list at expired rv"),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    // an exact list inside the window reconstructs the past
    let recent = (s.resource_version() - 1).to_string();
    let past = api
        .list(
            &ListParams::default()
                .at(&recent)
                .matching(VersionMatch::Exact),
        )
        .await
        .expect("exact list in window");
    assert_eq!(past.items.len(), 4);
    assert_eq!(
        past.metadata.resource_version.as_deref(),
        Some(recent.as_str())
    );
}

#[tokio::test]
async fn finalizers_delay_removal_until_empty() {
    let s = server();
    let api: Api<Widget> = Api::default_namespaced(s.client());
    let mut w = widget("fin", 1);
    w.metadata.finalizers = Some(vec!["test/keep".into()]);
    let created = api
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    let mut stream = api
        .watch(
            &WatchParams::default(),
            &created.resource_version().expect("rv"),
        )
        .await
        .expect("watch")
        .boxed();
    let del = api
        .delete("fin", &DeleteParams::default())
        .await
        .expect("delete");
    let pending = del
        .left()
        .expect("object returned while finalizers pending");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(
        pending.metadata.generation,
        Some(2),
        "graceful deletion bumps generation"
    );
    assert!(
        s.get("test.azlin.io/v1", "Widget", Some("default"), "fin")
            .is_some()
    );
    match next_event(&mut stream).await {
        WatchEvent::Modified(o) => {
            assert!(o.metadata.deletion_timestamp.is_some());
            assert_eq!(
                s.get("test.azlin.io/v1", "Widget", Some("default"), "fin")
                    .and_then(|v| v.pointer("/metadata/deletionGracePeriodSeconds").cloned()),
                Some(json!(0))
            );
        }
        other => panic!("expected MODIFIED with deletionTimestamp, got {other:?}"),
    }
    let err = api_err(
        api.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["test/keep", "test/new"]}})),
        )
        .await
        .expect_err("new finalizer on deleting object"),
    );
    assert_eq!(err.code, 422);
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizers");
    match next_event(&mut stream).await {
        WatchEvent::Deleted(o) => assert_eq!(o.name_any(), "fin"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    assert!(
        s.get("test.azlin.io/v1", "Widget", Some("default"), "fin")
            .is_none()
    );
    let err = api_err(api.get("fin").await.expect_err("gone"));
    assert_eq!(err.code, 404);
}

fn owned_by(name: &str, owner: &Widget, finalizers: Option<Vec<String>>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![owner.controller_owner_ref(&()).expect("owner ref")]),
            finalizers,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn garbage_collector_deletes_dependents() {
    let s = server();
    let widgets: Api<Widget> = Api::default_namespaced(s.client());
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let secrets: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    let owner = widgets
        .create(&pp, &widget("owner", 1))
        .await
        .expect("owner");
    let child = cms
        .create(&pp, &owned_by("child", &owner, None))
        .await
        .expect("child");
    cms.create(
        &pp,
        &owned_by("held", &owner, Some(vec!["test/hold".into()])),
    )
    .await
    .expect("held child");
    // grandchild owned by the config map
    let child_ref = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "child".into(),
        uid: child.uid().expect("uid"),
        ..Default::default()
    };
    let mut gc_secret = secret("grandchild", &[]);
    gc_secret.metadata.owner_references = Some(vec![child_ref]);
    secrets.create(&pp, &gc_secret).await.expect("grandchild");
    widgets
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    eventually(WAIT, "dependents collected", || async {
        let child_gone = s.get("v1", "ConfigMap", Some("default"), "child").is_none();
        let grandchild_gone = s
            .get("v1", "Secret", Some("default"), "grandchild")
            .is_none();
        (child_gone && grandchild_gone).then_some(())
    })
    .await;
    let held = cms.get("held").await.expect("held stays while finalized");
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert!(s.get("v1", "ConfigMap", Some("default"), "held").is_none());

    // Orphan keeps dependents and drops their owner references.
    let owner2 = widgets
        .create(&pp, &widget("owner2", 1))
        .await
        .expect("owner2");
    cms.create(&pp, &owned_by("orphan", &owner2, None))
        .await
        .expect("orphan child");
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    widgets.delete("owner2", &dp).await.expect("orphan delete");
    let orphan = cms.get("orphan").await.expect("orphan kept");
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_paths_and_missing_objects_get_404_status() {
    let s = server();
    let client = s.client();
    let resp = client
        .send(
            http::Request::get("/apis/nope.example.com/v1/things")
                .body(kube::client::Body::empty())
                .expect("request"),
        )
        .await
        .expect("send");
    assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json status");
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["status"], "Failure");
    assert_eq!(v["reason"], "NotFound");
    assert_eq!(v["code"], 404);
    assert!(v.get("details").is_some());
    let api: Api<Widget> = Api::default_namespaced(client);
    let err = api_err(api.get("missing").await.expect_err("404"));
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    let details = err.details.expect("details");
    assert_eq!(details.name, "missing");
    assert_eq!(details.kind, "widgets");
    assert_eq!(err.message, "widgets.test.azlin.io \"missing\" not found");
}

#[tokio::test]
async fn admission_defaults_and_rejects_with_422() {
    let s = ApiServer::new();
    s.register_crd(&Widget::crd(), Some(Arc::new(SizeAdmission)))
        .expect("crd");
    let api: Api<Widget> = Api::default_namespaced(s.client());
    let ok = api
        .create(&PostParams::default(), &widget("ok", 3))
        .await
        .expect("valid");
    assert_eq!(
        ok.spec.color.as_deref(),
        Some("blue"),
        "admission default applied"
    );
    let err = api_err(
        api.create(&PostParams::default(), &widget("big", 11))
            .await
            .expect_err("invalid"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Widget.test.azlin.io \"big\" is invalid: spec.size: Invalid value: 11: must be at most 10"
    );
    let details = err.details.expect("details");
    assert_eq!(details.causes.len(), 1);
    assert_eq!(details.causes[0].field, "spec.size");
    assert_eq!(details.causes[0].reason, "FieldValueInvalid");
    // patches are admitted after being applied
    let err = api_err(
        api.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 50}})),
        )
        .await
        .expect_err("invalid patch"),
    );
    assert_eq!(err.code, 422);
    assert_eq!(api.get("ok").await.expect("unchanged").spec.size, 3);
    // YAML seeding goes through admission too
    s.ensure_namespace("other").expect("namespace other");
    let seeded = s.apply_yaml(
        "apiVersion: test.azlin.io/v1\nkind: Widget\nmetadata: {name: y1}\nspec: {size: 1}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: y2, namespace: other}\n",
    );
    let seeded = seeded.expect("seed");
    assert_eq!(seeded.len(), 2);
    assert_eq!(seeded[0]["spec"]["color"], "blue");
    assert!(s.get("v1", "Secret", Some("other"), "y2").is_some());
    let bad = s.apply_yaml(
        "apiVersion: test.azlin.io/v1\nkind: Widget\nmetadata: {name: y3}\nspec: {size: 99}\n",
    );
    assert!(matches!(bad, Err(azlin_kubemem::KubeMemError::Api(e)) if e.code == 422));
}

#[tokio::test]
async fn request_log_separates_reads_and_writes() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    api.create(&PostParams::default(), &secret("r", &[]))
        .await
        .expect("create");
    let mark = s.mark();
    api.get("r").await.expect("get");
    api.list(&ListParams::default()).await.expect("list");
    assert!(
        s.writes_since(mark).is_empty(),
        "{:?}",
        s.writes_since(mark)
    );
    api.patch(
        "r",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {}})),
    )
    .await
    .expect("patch");
    let writes = s.writes_since(mark);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].verb, Verb::Patch);
    assert_eq!(writes[0].path, "/api/v1/namespaces/default/secrets/r");
    let all = s.requests();
    assert!(all.iter().any(|r| r.verb == Verb::Get && !r.is_write()));
    assert!(
        all.iter()
            .any(|r| r.verb == Verb::List && r.resource.as_deref() == Some("secrets"))
    );
    s.clear_requests();
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn core_kinds_events_and_leases_are_served() {
    let s = server();
    let leases: Api<Lease> = Api::default_namespaced(s.client());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}
    }))
    .expect("lease");
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("lease create");
    let events: Api<K8sEvent> = Api::default_namespaced(s.client());
    let ev: K8sEvent = serde_json::from_value(json!({
        "metadata": {"generateName": "w."},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Test", "action": "Reconcile", "type": "Normal",
        "reportingController": "test", "reportingInstance": "t-1"
    }))
    .expect("event");
    events
        .create(&PostParams::default(), &ev)
        .await
        .expect("event create");
    assert_eq!(
        s.list("events.k8s.io/v1", "Event", Some("default")).len(),
        1
    );
    assert_eq!(
        leases
            .get("leader")
            .await
            .expect("get")
            .spec
            .expect("spec")
            .holder_identity
            .as_deref(),
        Some("me")
    );
}

struct Ctx {
    client: kube::Client,
    cleaned: AtomicUsize,
}

const FINALIZER: &str = "widgets.test.azlin.io/cleanup";

async fn reconcile(
    w: Arc<Widget>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    let ns = w.namespace().unwrap_or_default();
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, w, |ev| async {
        match ev {
            FinalizerEvent::Apply(w) => {
                if w.status.as_ref().is_none_or(|s| !s.ready) {
                    api.patch_status(
                        &w.name_any(),
                        &PatchParams::apply("test-controller").force(),
                        &Patch::Apply(json!({
                            "apiVersion": "test.azlin.io/v1", "kind": "Widget",
                            "status": {"ready": true}
                        })),
                    )
                    .await?;
                }
                Ok(Action::await_change())
            }
            FinalizerEvent::Cleanup(_) => {
                ctx.cleaned.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(
    _w: Arc<Widget>,
    _e: &kube::runtime::finalizer::Error<kube::Error>,
    _ctx: Arc<Ctx>,
) -> Action {
    Action::requeue(Duration::from_millis(50))
}

#[tokio::test]
async fn controller_runs_finalizer_flow() {
    let s = server();
    s.ensure_namespace("apps").expect("namespace apps");
    let client = s.client();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cleaned: AtomicUsize::new(0),
    });
    let api: Api<Widget> = Api::all(client.clone());
    let controller = tokio::spawn(
        Controller::new(api, watcher::Config::default())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );
    let widgets: Api<Widget> = Api::namespaced(client, "apps");
    widgets
        .create(&PostParams::default(), &widget("ctl", 1))
        .await
        .expect("create");
    eventually(WAIT, "reconcile added the finalizer", || async {
        let w = widgets.get("ctl").await.ok()?;
        w.finalizers().iter().any(|f| f == FINALIZER).then_some(())
    })
    .await;
    eventually(WAIT, "reconcile patched status", || async {
        let w = widgets.get("ctl").await.ok()?;
        w.status.as_ref().is_some_and(|s| s.ready).then_some(())
    })
    .await;
    assert_eq!(ctx.cleaned.load(Ordering::SeqCst), 0);
    let mark = s.mark();
    widgets
        .delete("ctl", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(WAIT, "object removed after cleanup", || async {
        let gone = matches!(widgets.get("ctl").await, Err(kube::Error::Api(st)) if st.code == 404);
        gone.then_some(())
    })
    .await;
    assert_eq!(ctx.cleaned.load(Ordering::SeqCst), 1);
    let writes = s.writes_since(mark);
    assert!(
        writes.iter().any(|r| r.verb == Verb::Patch),
        "finalizer removal patch recorded: {writes:?}"
    );
    controller.abort();
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let entry = match ev {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(o)) => format!("initapply:{}", o.name_any()),
                Ok(watcher::Event::InitDone) => "initdone".to_string(),
                Ok(watcher::Event::Apply(o)) => format!("apply:{}", o.name_any()),
                Ok(watcher::Event::Delete(o)) => format!("delete:{}", o.name_any()),
                Err(e) => format!("error:{e}"),
            };
            log.lock().expect("log").push(entry);
        }
    });
    let count =
        |pred: &dyn Fn(&str) -> bool| seen.lock().expect("log").iter().filter(|e| pred(e)).count();
    let secrets: Api<Secret> = Api::default_namespaced(s.client());
    eventually(WAIT, "initial list done", || async {
        (count(&|e| e == "initdone") == 1).then_some(())
    })
    .await;
    secrets
        .create(&PostParams::default(), &secret("a", &[]))
        .await
        .expect("a");
    eventually(WAIT, "apply a", || async {
        (count(&|e| e == "apply:a") == 1).then_some(())
    })
    .await;
    s.expire_watches();
    eventually(WAIT, "410 error and re-list", || async {
        let relisted = count(&|e| e == "init") >= 2 && count(&|e| e == "initapply:a") >= 1;
        let errored = count(&|e| e.starts_with("error:")) >= 1;
        (relisted && errored).then_some(())
    })
    .await;
    secrets
        .create(&PostParams::default(), &secret("b", &[]))
        .await
        .expect("b");
    eventually(WAIT, "apply b after recovery", || async {
        (count(&|e| e == "apply:b") == 1).then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn delete_collection_honours_selectors() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    let pp = PostParams::default();
    api.create(&pp, &secret("k1", &[("drop", "yes")]))
        .await
        .expect("k1");
    api.create(&pp, &secret("k2", &[("drop", "yes")]))
        .await
        .expect("k2");
    api.create(&pp, &secret("k3", &[])).await.expect("k3");
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("drop=yes"),
        )
        .await
        .expect("delete collection");
    let names: Vec<String> = deleted
        .left()
        .expect("list of deleted objects")
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(names, ["k1", "k2"]);
    let left: Vec<String> = s
        .list("v1", "Secret", Some("default"))
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(left, ["k3"]);
}

#[tokio::test]
async fn metadata_only_requests_get_partial_object_metadata() {
    let s = server();
    let api: Api<Widget> = Api::default_namespaced(s.client());
    api.create(&PostParams::default(), &widget("m", 1))
        .await
        .expect("create");
    let meta = api.get_metadata("m").await.expect("get metadata");
    assert_eq!(meta.metadata.name.as_deref(), Some("m"));
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list metadata");
    assert_eq!(list.items.len(), 1);
    let mut stream = api
        .watch_metadata(&WatchParams::default(), "0")
        .await
        .expect("watch metadata")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("m")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let raw: Value = s
        .client()
        .request(
            http::Request::get("/apis/test.azlin.io/v1/namespaces/default/widgets/m")
                .header(
                    "accept",
                    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                )
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("raw get");
    assert_eq!(raw["kind"], "PartialObjectMetadata");
    assert!(raw.get("spec").is_none());
}

#[tokio::test]
async fn streaming_list_watcher_initialises_and_follows() {
    let s = server();
    let api: Api<Secret> = Api::default_namespaced(s.client());
    api.create(&PostParams::default(), &secret("pre", &[]))
        .await
        .expect("pre");
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("watcher event in time")
            .expect("stream open")
            .expect("event ok")
    };
    assert!(matches!(next().await, watcher::Event::Init));
    match next().await {
        watcher::Event::InitApply(o) => assert_eq!(o.name_any(), "pre"),
        other => panic!("expected InitApply, got {other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::InitDone));
    api.create(&PostParams::default(), &secret("post", &[]))
        .await
        .expect("post");
    match next().await {
        watcher::Event::Apply(o) => assert_eq!(o.name_any(), "post"),
        other => panic!("expected Apply, got {other:?}"),
    }
}

#[tokio::test]
async fn secret_string_data_is_stored_as_base64_data() {
    use k8s_openapi::api::core::v1::Secret;
    let api = azlin_kubemem::ApiServer::new();
    let secrets: kube::Api<Secret> = kube::Api::namespaced(api.client(), "default");
    let created = secrets
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "creds"},
                "data": {"keep": "YQ==", "AZURE_CLIENT_ID": "b2xk"},
                "stringData": {"AZURE_CLIENT_ID": "new-id", "AZURE_TENANT_ID": "tenant"}
            }))
            .expect("secret"),
        )
        .await
        .expect("create");
    let data = created.data.expect("data");
    assert_eq!(data["keep"].0, b"a");
    assert_eq!(data["AZURE_CLIENT_ID"].0, b"new-id");
    assert_eq!(data["AZURE_TENANT_ID"].0, b"tenant");
    assert!(created.string_data.is_none());
}

#[tokio::test]
async fn namespaces_must_exist_and_take_their_content_with_them() {
    use k8s_openapi::api::core::v1::Namespace;
    let s = server();
    let nss: Api<Namespace> = Api::all(s.client());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "team");
    let cm = |name: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = api_err(
        cms.create(&PostParams::default(), &cm("a"))
            .await
            .expect_err("no namespace"),
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, r#"namespaces "team" not found"#);

    assert!(s.ensure_namespace("team").expect("create team"));
    cms.create(&PostParams::default(), &cm("a"))
        .await
        .expect("a");
    let mut held = cm("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held)
        .await
        .expect("held");

    let err = api_err(
        nss.delete("default", &DeleteParams::default())
            .await
            .expect_err("immortal"),
    );
    assert_eq!(err.code, 403);
    nss.delete("team", &DeleteParams::default())
        .await
        .expect("delete team");
    let team = nss.get("team").await.expect("still terminating");
    assert_eq!(
        team.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(cms.get_opt("a").await.expect("get").is_none());
    assert!(
        cms.get("held")
            .await
            .expect("held stays")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let err = api_err(
        cms.create(&PostParams::default(), &cm("late"))
            .await
            .expect_err("terminating"),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert!(nss.get_opt("team").await.expect("get").is_none());
}

#[tokio::test]
async fn dry_runs_answer_without_storing() {
    let s = server();
    let api: Api<Widget> = Api::default_namespaced(s.client());
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let would = api.create(&dry, &widget("w", 1)).await.expect("dry create");
    assert!(would.metadata.uid.is_some());
    assert!(would.metadata.resource_version.is_none());
    assert!(api.get_opt("w").await.expect("get").is_none());
    let created = api
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .expect("create");
    let mark = s.resource_version();
    let pp = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let patched = api
        .patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 5}})))
        .await
        .expect("dry patch");
    assert_eq!(patched.spec.size, 5);
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("w", &dp).await.expect("dry delete");
    assert_eq!(s.resource_version(), mark, "nothing was written");
    let kept = api.get("w").await.expect("kept");
    assert_eq!(
        (kept.spec, kept.metadata.resource_version),
        (created.spec, created.metadata.resource_version)
    );
    let bad = s
        .handle(
            http::Request::post("/api/v1/namespaces/default/configmaps?dryRun=Maybe")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    br#"{"metadata":{"name":"c"}}"#,
                )))
                .expect("request"),
        )
        .await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn bodies_over_3_mib_and_objects_over_1_5_mib_are_refused() {
    let s = server();
    let body = |n: usize| {
        serde_json::to_vec(&json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(n)}}))
            .expect("json")
    };
    let post = |b: Vec<u8>| {
        http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(b)))
            .expect("request")
    };
    let read = |r: http::Response<azlin_kubemem::ResponseBody>| async move {
        let code = r.status().as_u16();
        let b = r.into_body().collect().await.expect("body").to_bytes();
        (code, serde_json::from_slice::<Value>(&b).expect("json"))
    };
    let (code, status) = read(s.handle(post(body(4 * 1024 * 1024))).await).await;
    assert_eq!(code, 413);
    assert_eq!(status["reason"], json!("RequestEntityTooLarge"));
    assert_eq!(
        status["message"],
        json!("Request entity too large: limit is 3145728")
    );
    let (code, status) = read(s.handle(post(body(2 * 1024 * 1024))).await).await;
    assert_eq!(code, 500);
    assert_eq!(status["message"], json!("etcdserver: request is too large"));
    let (code, _) = read(s.handle(post(body(1024 * 1024))).await).await;
    assert_eq!(code, 201);
}

/// A client that writes its whole oversized body before reading gets the `413`, and the
/// connection stays usable (the body is read to its end, not cut off mid-write).
#[tokio::test]
async fn an_oversized_body_is_answered_after_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let served = server()
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let mut conn = tokio::net::TcpStream::connect(served.addr())
        .await
        .expect("connect");
    let body = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let head = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nhost: kube\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(body.as_bytes())
        .await
        .expect("the whole body is accepted");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("limit is 3145728") {
        let n = conn.read(&mut buf).await.expect("read the answer");
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&seen).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    conn.write_all(b"GET /api/v1/namespaces/default/configmaps HTTP/1.1\r\nhost: kube\r\n\r\n")
        .await
        .expect("second request");
    let n = conn.read(&mut buf).await.expect("second answer");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
