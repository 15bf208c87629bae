//! `azlin-operator crds --apply` against the in-memory API server.

use std::time::Duration;

use azlin_kubemem::{ApiServer, ResourceInfo};
use azlin_operator::crd_install::{CrdInstallError, apply_crds};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

fn server() -> ApiServer {
    let api = ApiServer::new();
    let mut info = ResourceInfo::core(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    info.status_subresource = true;
    api.register_resource(info);
    api
}

#[tokio::test]
async fn apply_creates_then_updates_all_crds_idempotently() {
    let api = server();
    let names = apply_crds(api.client(), None).await.expect("first apply");
    assert_eq!(names.len(), 4);
    for n in &names {
        let crd = api
            .get(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                n,
            )
            .unwrap_or_else(|| panic!("{n} created"));
        assert_eq!(crd["spec"]["group"], "azlin.io");
    }
    // An old version of a CRD in the cluster is brought up to date.
    let crds: Api<CustomResourceDefinition> = Api::all(api.client());
    crds.patch(
        "azlinvms.azlin.io",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"names": {"shortNames": ["old"]}}})),
    )
    .await
    .expect("simulate an older CRD");
    let mark = api.mark();
    apply_crds(api.client(), None).await.expect("second apply");
    let crd = crds.get("azlinvms.azlin.io").await.expect("get");
    assert_eq!(crd.spec.names.short_names, Some(vec!["avm".to_string()]));
    assert_eq!(api.writes_since(mark).len(), 4, "one apply per CRD");
}

#[tokio::test]
async fn apply_waits_for_established() {
    let api = server();
    let err = apply_crds(api.client(), Some(Duration::from_millis(300)))
        .await
        .expect_err("kubemem never establishes CRDs by itself");
    assert!(
        matches!(err, CrdInstallError::NotEstablished { .. }),
        "{err}"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(api.client());
    for crd in azlin_operator::api::crds() {
        let name = crd.metadata.name.expect("name");
        crds.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}})),
        )
        .await
        .expect("establish");
    }
    apply_crds(api.client(), Some(Duration::from_secs(5)))
        .await
        .expect("established CRDs pass");
}
