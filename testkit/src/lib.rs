//! Dev-only: the real source-controller (GitRepositories, OCIRepositories, HelmRepositories and
//! HelmCharts), kustomize-controller, helm-controller, image-reflector-controller and
//! image-automation-controller and source-watcher running in-process for integration tests, scoped to one namespace, with an artifact server on a free loopback port. Dropping [`Controllers`] stops them.
//!
//! This is the one crate that may depend on several controllers: controllers talk only through
//! Kubernetes objects, and no controller or CLI crate depends on a controller crate
//! (`hack/check-crate-rules.sh`, run by `hack/test.sh`, fails otherwise). Test code of
//! kustomize-controller and the CLI reaches the other controllers through this crate.

use std::sync::Arc;
use std::time::Duration;

use driftless_runtime::metrics::Metrics;
use driftless_runtime::reconcile::{KindController, LoopSettings};
use kube::Client;
use source_controller::git_repository::GitRepositoryReconciler;
use source_controller::helm_chart::{DEFAULT_CHART_MAX_SIZE, HelmChartReconciler, source_triggers};
use source_controller::helm_repository::{DEFAULT_INDEX_MAX_SIZE, HelmRepositoryReconciler};
use source_controller::oci_repository::OCIRepositoryReconciler;
use source_controller::server;
use tokio::sync::oneshot;

use helm_controller::helm::Helm;
use helm_controller::reconciler::HelmReleaseReconciler;
use kustomize_controller::reconciler::{KustomizationReconciler, Settings};

/// The `helm` of the testenv (`HELM_BIN`), with the helm-controller binary cargo built beside
/// the test executable as its post-renderer.
fn helm_cli() -> Helm {
    let binary = std::env::var("HELM_BIN").unwrap_or_else(|_| "helm".into());
    let post_renderer = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("helm-controller")))
        .filter(|p| p.is_file());
    Helm::new(binary.into(), post_renderer.as_deref(), 4).expect("helm homes")
}

/// Running controllers; they stop when this is dropped.
pub struct Controllers {
    _storage: tempfile::TempDir,
    _generated: tempfile::TempDir,
    _tags: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// Starts source-controller (Git, OCI, Helm, Bucket), kustomize-controller, helm-controller and the image controllers
/// watching `namespace`.
pub async fn start_controllers(client: &Client, namespace: &str) -> Controllers {
    start_controllers_with(client, namespace, |_| {}).await
}

/// [`start_controllers`] with kustomize-controller's settings changed by `configure` first (the
/// effect of a flag or a feature gate).
pub async fn start_controllers_with(
    client: &Client,
    namespace: &str,
    configure: impl FnOnce(&mut Settings),
) -> Controllers {
    driftless_artifact::install_crypto_provider();
    let (tx, rx) = oneshot::channel::<()>();
    let stop = futures::FutureExt::shared(async move {
        let _ = rx.await;
    });
    let served = server::serve_temporary(stop.clone())
        .await
        .expect("artifact storage and server");
    let settings = LoopSettings {
        namespace: Some(namespace.to_string()),
        min_retry_delay: Duration::from_millis(500),
        max_retry_delay: Duration::from_secs(2),
        ..LoopSettings::default()
    };
    let git = KindController::new(
        GitRepositoryReconciler::new(served.storage.clone(), Duration::from_secs(10)),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        settings.clone(),
    );
    tokio::spawn(Arc::new(git).run(stop.clone()));
    let helm = KindController::new(
        HelmRepositoryReconciler::new(served.storage.clone(), DEFAULT_INDEX_MAX_SIZE),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        settings.clone(),
    );
    tokio::spawn(Arc::new(helm).run(stop.clone()));
    let buckets = KindController::new(
        source_controller::bucket::BucketReconciler::new(served.storage.clone()),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        settings.clone(),
    );
    tokio::spawn(Arc::new(buckets).run(stop.clone()));
    let charts = KindController::new(
        HelmChartReconciler::new(served.storage.clone(), DEFAULT_CHART_MAX_SIZE),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        settings.clone(),
    )
    .with_triggers(source_triggers(client.clone(), Some(namespace.to_string())));
    tokio::spawn(Arc::new(charts).run(stop.clone()));
    let oci = KindController::new(
        OCIRepositoryReconciler::new(served.storage),
        client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        settings.clone(),
    );
    tokio::spawn(Arc::new(oci).run(stop.clone()));
    // source-watcher, with its own storage and artifact server, as it runs beside
    // source-controller.
    let generated = server::serve_temporary(stop.clone())
        .await
        .expect("source-watcher storage and server");
    let generators = KindController::new(
        source_watcher::generator::ArtifactGeneratorReconciler::new(
            generated.storage,
            source_watcher::generator::Settings {
                requeue_dependency: Duration::from_secs(2),
                ..Default::default()
            },
        ),
        client.clone(),
        source_watcher::CONTROLLER_NAME,
        source_watcher::CONTROLLER_NAME,
        Metrics::new(),
        settings.clone(),
    )
    .with_triggers(source_watcher::source_triggers(
        client.clone(),
        Some(namespace.to_string()),
    ));
    tokio::spawn(Arc::new(generators).run(stop.clone()));
    let config = kube::Config::infer().await.expect("kubeconfig");
    let mut kustomize_settings = Settings {
        requeue_dependency: Duration::from_secs(5),
        // On here (off by default, as in Flux): the tests show the cancellation.
        cancel_health_on_new_revision: true,
        // On here (off by default, as in Flux): a test issues ServiceAccount tokens for a
        // remote cluster.
        object_level_workload_identity: true,
        ..Settings::default()
    };
    configure(&mut kustomize_settings);
    // Flux's install turns the gate on in both consumers at once (with source-watcher).
    let allow_external_artifact = kustomize_settings.allow_external_artifact;
    let sources = kustomize_settings.sources.clone();
    let watch_configs = kustomize_settings.watch_configs.clone();
    let reconciler = KustomizationReconciler::new(kustomize_settings, config);
    let kustomizations = KindController::new(
        reconciler,
        client.clone(),
        kustomize_controller::CONTROLLER_NAME,
        driftless_api::kustomize::STATUS_FIELD_MANAGER,
        Metrics::new(),
        settings.clone(),
    )
    .with_triggers(kustomize_controller::triggers::triggers(
        client.clone(),
        Some(namespace.to_string()),
        watch_configs,
        sources,
    ));
    tokio::spawn(Arc::new(kustomizations).run(stop.clone()));
    let helm_sources = driftless_runtime::sources::SourceCache::default();
    let helm_releases = KindController::new(
        HelmReleaseReconciler::new(
            helm_cli(),
            helm_controller::reconciler::Settings {
                no_cross_namespace_refs: false,
                requeue_dependency: Duration::from_secs(5),
                default_service_account: String::new(),
                kubeconfig: Default::default(),
                allow_external_artifact,
                additive_ready_expr: false,
                default_kubeconfig_service_account: String::new(),
                // On here (off by default, as in Flux): a test reaches a cluster with a
                // ServiceAccount token.
                object_level_workload_identity: true,
                token_cache: Default::default(),
                sources: helm_sources.clone(),
            },
            kube::Config::infer().await.expect("kubeconfig"),
        ),
        client.clone(),
        helm_controller::CONTROLLER_NAME,
        driftless_api::helm::STATUS_FIELD_MANAGER,
        Metrics::new(),
        settings.clone(),
    )
    .with_triggers(helm_controller::triggers::triggers(
        client.clone(),
        Some(namespace.to_string()),
        helm_sources,
    ));
    tokio::spawn(Arc::new(helm_releases).run(stop.clone()));
    let tags_dir = tempfile::tempdir().expect("tag storage");
    let tags =
        Arc::new(image_reflector_controller::tags::TagStore::new(tags_dir.path()).expect("tag storage"));
    let image_repositories = KindController::new(
        image_reflector_controller::repository::ImageRepositoryReconciler::new(tags.clone()),
        client.clone(),
        image_reflector_controller::CONTROLLER_NAME,
        image_reflector_controller::CONTROLLER_NAME,
        Metrics::new(),
        settings.clone(),
    );
    tokio::spawn(Arc::new(image_repositories).run(stop.clone()));
    let image_policies = KindController::new(
        image_reflector_controller::policy::ImagePolicyReconciler::new(tags, Duration::from_secs(5), false),
        client.clone(),
        image_reflector_controller::CONTROLLER_NAME,
        image_reflector_controller::CONTROLLER_NAME,
        Metrics::new(),
        settings.clone(),
    )
    .with_triggers(image_reflector_controller::policy::repository_triggers(
        client.clone(),
        Some(namespace.to_string()),
    ));
    tokio::spawn(Arc::new(image_policies).run(stop.clone()));
    let automations = KindController::new(
        image_automation_controller::automation::ImageUpdateAutomationReconciler::default(),
        client.clone(),
        image_automation_controller::CONTROLLER_NAME,
        image_automation_controller::CONTROLLER_NAME,
        Metrics::new(),
        settings,
    )
    .with_triggers(image_automation_controller::automation::policy_triggers(
        client.clone(),
        Some(namespace.to_string()),
    ));
    tokio::spawn(Arc::new(automations).run(stop));
    Controllers {
        _storage: served.dir,
        _generated: generated.dir,
        _tags: tags_dir,
        _stop: tx,
    }
}

/// A GitRepository `name` in `namespace` for `repo` (branch `main`, every `interval`), over smart
/// HTTP with the testenv's credentials (Secret `git-auth`, created once per namespace).
///
/// # Panics
/// When the apiserver refuses the objects.
pub async fn git_source(
    client: &Client,
    namespace: &str,
    name: &str,
    repo: &driftless_runtime::testing::GitRepo,
    interval: &str,
) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    let env = |key: &str| {
        std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: source target/testenv/env.sh"))
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    if secrets.get_opt("git-auth").await.expect("read secret").is_none() {
        let auth: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "git-auth"},
            "stringData": {"username": env("GIT_HTTP_USER"), "password": env("GIT_HTTP_PASSWORD")}}))
        .expect("secret");
        secrets
            .create(&PostParams::default(), &auth)
            .await
            .expect("secret created");
    }
    let source: driftless_api::source::GitRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name},
        "spec": {"url": repo.http_url(), "interval": interval, "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}},
    }))
    .expect("GitRepository");
    Api::<driftless_api::source::GitRepository>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &source)
        .await
        .expect("GitRepository created");
}
