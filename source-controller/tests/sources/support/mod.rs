//! Shared harness: a fresh namespace, artifact storage in a temp dir served over HTTP, and a
//! source-controller kind controller running in-process for that namespace.

#![allow(dead_code)]

use driftless_api::meta::{Condition, REQUESTED_AT_ANNOTATION};
use driftless_runtime::{
    conditions,
    metrics::Metrics,
    object::ToolkitObject,
    reconcile::{KindController, LoopSettings, Reconciler, TriggerFn},
    testing,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use source_controller::{server, storage::Storage};
use std::{sync::Arc, time::Duration};
use tokio::sync::oneshot;

/// How long a test waits for a condition.
pub const T: Duration = Duration::from_secs(60);

/// An environment variable of the testenv (`target/testenv/env.sh`).
pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: run hack/testenv.sh up and source env.sh"))
}

/// One test's world.
pub struct Harness<K: ToolkitObject> {
    pub client: Client,
    pub ns: String,
    pub objects: Api<K>,
    pub storage_dir: tempfile::TempDir,
    pub artifact_addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Starts the artifact server and the controller built by `reconciler` for a new namespace.
pub async fn harness<R: Reconciler>(
    prefix: &str,
    reconciler: impl FnOnce(Arc<Storage>) -> R,
) -> Harness<R::Kind>
where
    <R::Kind as kube::Resource>::DynamicType: Default,
{
    harness_with(prefix, reconciler, |_, _| None).await
}

/// Like [`harness`], with extra reconcile triggers built from the client and namespace.
pub async fn harness_with<R: Reconciler>(
    prefix: &str,
    reconciler: impl FnOnce(Arc<Storage>) -> R,
    triggers: impl FnOnce(Client, String) -> Option<TriggerFn<R::Kind>>,
) -> Harness<R::Kind>
where
    <R::Kind as kube::Resource>::DynamicType: Default,
{
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, prefix).await;
    let (tx, rx) = oneshot::channel::<()>();
    let stop = futures::FutureExt::shared(async move {
        let _ = rx.await;
    });
    let served = server::serve_temporary(stop.clone()).await.unwrap();
    let (storage, storage_dir, artifact_addr) = (served.storage, served.dir, served.addr);
    let mut ctrl = KindController::new(
        reconciler(storage),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        LoopSettings {
            namespace: Some(ns.clone()),
            min_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(3),
            ..LoopSettings::default()
        },
    );
    if let Some(t) = triggers(client.clone(), ns.clone()) {
        ctrl = ctrl.with_triggers(t);
    }
    tokio::spawn(Arc::new(ctrl).run(stop));
    Harness {
        objects: Api::namespaced(client.clone(), &ns),
        client,
        ns,
        storage_dir,
        artifact_addr,
        _stop: tx,
    }
}

impl<K: ToolkitObject> Harness<K>
where
    K::DynamicType: Default,
{
    pub async fn secret(&self, name: &str, data: &[(&str, String)]) {
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        let s: Secret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "stringData": data}))
                .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &s)
            .await
            .unwrap();
    }

    pub async fn create(&self, name: &str, spec: serde_json::Value) {
        let obj: K = serde_json::from_value(serde_json::json!({
            "apiVersion": K::api_version(&Default::default()), "kind": K::kind(&Default::default()),
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        self.objects.create(&PostParams::default(), &obj).await.unwrap();
    }

    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.objects
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    pub async fn request(&self, name: &str, token: &str) {
        let p = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}});
        self.objects
            .patch(name, &PatchParams::default(), &Patch::Merge(p))
            .await
            .unwrap();
    }

    /// Waits for Ready=False with `reason` and a message containing `words`.
    pub async fn wait_failed(&self, name: &str, reason: &str, words: &str) -> K {
        testing::wait_for(&self.objects, name, T, |o: &K| {
            ready(o).is_some_and(|c| c.status == "False" && c.reason == reason && c.message.contains(words))
        })
        .await
    }

    pub async fn done(self) {
        testing::delete_namespace(&self.client, &self.ns).await;
    }
}

/// Conditions of an object.
pub fn conds<K: ToolkitObject>(o: &K) -> Vec<Condition> {
    o.status()
        .map(|s| driftless_api::meta::ReconcileStatus::conditions(s).to_vec())
        .unwrap_or_default()
}

/// The Ready condition.
pub fn ready<K: ToolkitObject>(o: &K) -> Option<Condition> {
    conditions::get(&conds(o), "Ready").cloned()
}

/// Negative-polarity conditions of sources, for kstatus checks.
pub const NEGATIVE: &[&str] = &[
    "FetchFailed",
    "StorageOperationFailed",
    "ArtifactOutdated",
    "IncludeUnavailable",
];
