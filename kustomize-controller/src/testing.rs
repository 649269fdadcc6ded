//! For integration tests (feature `testing`): the real source-controller (GitRepositories) and
//! kustomize-controller running in-process, scoped to one namespace, with an artifact server on
//! a free loopback port. Dropping [`Controllers`] stops them.

use std::sync::Arc;
use std::time::Duration;

use driftless_runtime::metrics::Metrics;
use driftless_runtime::reconcile::{KindController, LoopSettings};
use kube::Client;
use source_controller::git_repository::GitRepositoryReconciler;
use source_controller::{server, storage::Storage};
use tokio::sync::oneshot;

use crate::reconciler::{KustomizationReconciler, Settings};

/// Running controllers; they stop when this is dropped.
pub struct Controllers {
    _storage: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// Starts source-controller and kustomize-controller watching `namespace`.
pub async fn start_controllers(client: &Client, namespace: &str) -> Controllers {
    driftless_artifact::install_crypto_provider();
    let storage_dir = tempfile::tempdir().expect("storage dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind artifact server");
    let addr = listener.local_addr().expect("artifact server address");
    let storage = Arc::new(
        Storage::new(
            storage_dir.path().to_path_buf(),
            &addr.to_string(),
            Duration::from_secs(60),
            2,
        )
        .expect("storage"),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let stop = futures::FutureExt::shared(async move {
        let _ = rx.await;
    });
    tokio::spawn(server::serve_on(
        listener,
        storage_dir.path().to_path_buf(),
        stop.clone(),
    ));
    let settings = LoopSettings {
        namespace: Some(namespace.to_string()),
        min_retry_delay: Duration::from_millis(500),
        max_retry_delay: Duration::from_secs(2),
        ..LoopSettings::default()
    };
    let sources = KindController::new(
        GitRepositoryReconciler::new(storage, Duration::from_secs(10)),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        settings.clone(),
    );
    tokio::spawn(Arc::new(sources).run(stop.clone()));
    let config = kube::Config::infer().await.expect("kubeconfig");
    let reconciler = KustomizationReconciler::new(
        Settings {
            no_cross_namespace_refs: false,
            requeue_dependency: Duration::from_secs(5),
            default_service_account: String::new(),
        },
        config,
    );
    let kustomizations = KindController::new(
        reconciler,
        client.clone(),
        crate::CONTROLLER_NAME,
        driftless_api::kustomize::STATUS_FIELD_MANAGER,
        Metrics::new(),
        settings,
    )
    .with_triggers(crate::triggers::triggers(
        client.clone(),
        Some(namespace.to_string()),
    ));
    tokio::spawn(Arc::new(kustomizations).run(stop));
    Controllers {
        _storage: storage_dir,
        _stop: tx,
    }
}
