//! HelmChart end to end: real charts (`../shared/testdata/charts`) packaged and indexed by the
//! real `helm` (`HELM_BIN`, built by hack/build-testbins.sh), served by the testenv's Helm
//! repository, pulled through a HelmRepository.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless_api::source::{HelmChart, HelmRepository};
use driftless_runtime::metrics::Metrics;
use driftless_runtime::reconcile::{KindController, LoopSettings};
use driftless_runtime::{conditions, testing};
use kube::Api;
use kube::api::PostParams;
use source_controller::helm_chart::{DEFAULT_CHART_MAX_SIZE, HelmChartReconciler, source_triggers};
use source_controller::helm_repository::{DEFAULT_INDEX_MAX_SIZE, HelmRepositoryReconciler};
use support::{Harness, T, conds, env, ready};

type H = Harness<HelmChart>;

/// A HelmChart harness with a HelmRepository controller beside it (same namespace, storage).
async fn harness(prefix: &str) -> H {
    let storage = Arc::new(Mutex::new(None));
    let keep = storage.clone();
    let h = support::harness_with(
        prefix,
        move |s| {
            *keep.lock().unwrap() = Some(s.clone());
            HelmChartReconciler::new(s, DEFAULT_CHART_MAX_SIZE)
        },
        |client, ns| Some(source_triggers(client, Some(ns))),
    )
    .await;
    let storage = storage.lock().unwrap().take().unwrap();
    let repositories = KindController::new(
        HelmRepositoryReconciler::new(storage, DEFAULT_INDEX_MAX_SIZE),
        h.client.clone(),
        "source-controller",
        "source-controller",
        Metrics::new(),
        LoopSettings {
            namespace: Some(h.ns.clone()),
            min_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(3),
            ..LoopSettings::default()
        },
    );
    tokio::spawn(Arc::new(repositories).run(futures::future::pending::<()>()));
    h
}

fn charts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/charts")
}

fn helm(args: &[&str]) {
    let out = Command::new(env("HELM_BIN")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packages podinfo at `versions` into `<HELM_REPO_DIR>/<dir>` and indexes it with `helm repo
/// index` (relative URLs); returns the directory.
fn publish(dir: &str, versions: &[&str]) -> PathBuf {
    let out = Path::new(&env("HELM_REPO_DIR")).join(dir);
    std::fs::create_dir_all(&out).unwrap();
    let chart = charts().join("podinfo");
    for v in versions {
        helm(&[
            "package",
            chart.to_str().unwrap(),
            "--version",
            v,
            "--destination",
            out.to_str().unwrap(),
        ]);
    }
    helm(&["repo", "index", out.to_str().unwrap()]);
    out
}

async fn create_repository(h: &H, name: &str, spec: serde_json::Value) {
    let repo: HelmRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<HelmRepository>::namespaced(h.client.clone(), &h.ns)
        .create(&PostParams::default(), &repo)
        .await
        .unwrap();
}

async fn wait_pulled(h: &H, name: &str, version: &str) -> HelmChart {
    testing::wait_for(&h.objects, name, T, |c: &HelmChart| {
        ready(c).is_some_and(|r| r.status == "True")
            && c.status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .is_some_and(|a| a.revision == version)
    })
    .await
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn charts_are_pulled_from_a_repository_as_helm_packaged_them() {
    let h = harness("helmchart").await;
    let dir = publish(&h.ns, &["6.14.1", "6.14.0", "6.15.0-rc.1"]);

    // The chart first, its repository later: it waits, then pulls.
    h.create(
        "podinfo",
        serde_json::json!({"chart": "podinfo", "version": "6.14.x", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}),
    )
    .await;
    h.wait_failed("podinfo", "SourceUnavailable", "not found").await;
    create_repository(
        &h,
        "charts",
        serde_json::json!({"url": format!("{}/{}", env("HELM_REPO_URL"), h.ns), "interval": "10m"}),
    )
    .await;
    let c = wait_pulled(&h, "podinfo", "6.14.1").await;
    assert_eq!(
        ready(&c).unwrap().message,
        "pulled 'podinfo' chart with version '6.14.1'"
    );
    assert_eq!(ready(&c).unwrap().reason, "ChartPullSucceeded");
    let status = c.status.clone().unwrap();
    assert_eq!(status.observed_chart_name.as_deref(), Some("podinfo"));
    assert!(
        status
            .observed_source_artifact_revision
            .unwrap()
            .starts_with("sha256:")
    );
    let artifact = status.artifact.unwrap();
    assert!(
        artifact.path.ends_with("/podinfo/podinfo-6.14.1.tgz"),
        "{}",
        artifact.path
    );
    // Stored byte for byte as helm packaged it.
    let served = reqwest::get(&artifact.url).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        served.as_ref(),
        std::fs::read(dir.join("podinfo-6.14.1.tgz")).unwrap()
    );

    // A pre-release only for a range that names one; an exact version wins.
    h.create(
        "rc",
        serde_json::json!({"chart": "podinfo", "version": ">=6.15.0-0", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}),
    )
    .await;
    wait_pulled(&h, "rc", "6.15.0-rc.1").await;
    h.create(
        "exact",
        serde_json::json!({"chart": "podinfo", "version": "6.14.0", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}),
    )
    .await;
    wait_pulled(&h, "exact", "6.14.0").await;

    // A version that does not exist is a spec mistake: stalled.
    h.create(
        "missing-version",
        serde_json::json!({"chart": "podinfo", "version": "9.9.9", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}),
    )
    .await;
    let c = h
        .wait_failed(
            "missing-version",
            "InvalidChartReference",
            "no 'podinfo' chart with version matching '9.9.9' found",
        )
        .await;
    assert!(conditions::is_true(&conds(&c), "Stalled"));

    // Signatures are for OCI charts: asking to verify a chart from an HTTP repository stalls.
    h.create(
        "verify-http",
        serde_json::json!({"chart": "podinfo", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            "verify": {"provider": "cosign", "secretRef": {"name": "keys"}}}),
    )
    .await;
    let c = h
        .wait_failed(
            "verify-http",
            "ChartVerificationError",
            "OCI HelmRepositories only",
        )
        .await;
    assert!(conditions::is_true(&conds(&c), "Stalled"));

    // A new version in the repository: pulled as soon as the repository has the new index,
    // without a reconcile of the chart being asked for.
    publish(&h.ns, &["6.14.2"]);
    let token = "new-version";
    let repos: Api<HelmRepository> = Api::namespaced(h.client.clone(), &h.ns);
    let p = serde_json::json!({"metadata": {"annotations": {driftless_api::meta::REQUESTED_AT_ANNOTATION: token}}});
    repos
        .patch(
            "charts",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(p),
        )
        .await
        .unwrap();
    testing::wait_for(&repos, "charts", T, |r: &HelmRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some(token)
    })
    .await;
    wait_pulled(&h, "podinfo", "6.14.2").await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn charts_of_a_protected_repository_are_pulled_with_its_credentials() {
    let h = harness("helmchart-auth").await;
    publish(&h.ns, &["6.14.1"]);
    h.secret(
        "helm-auth",
        &[
            ("username", env("HELM_REPO_USER")),
            ("password", env("HELM_REPO_PASSWORD")),
        ],
    )
    .await;
    create_repository(
        &h,
        "private",
        serde_json::json!({"url": format!("{}/{}", env("HELM_REPO_PRIVATE_URL"), h.ns),
            "interval": "10m", "secretRef": {"name": "helm-auth"}}),
    )
    .await;
    h.create(
        "podinfo",
        serde_json::json!({"chart": "podinfo", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "private"}}),
    )
    .await;
    wait_pulled(&h, "podinfo", "6.14.1").await;
    h.done().await;
}

/// An OCI HelmRepository with a cloud `provider` (Flux logs in to ECR, ACR or GAR with the
/// cloud's workload identity) is refused by name, never pulled from anonymously.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_cloud_provider_of_an_oci_helm_repository_is_refused_by_name() {
    let h = harness("chart-provider").await;
    create_repository(
        &h,
        "ecr",
        serde_json::json!({"type": "oci", "url": "oci://123456789.dkr.ecr.eu-west-1.amazonaws.com/charts",
            "provider": "aws", "interval": "10m"}),
    )
    .await;
    h.create(
        "app",
        serde_json::json!({"chart": "app", "version": "1.0.0", "interval": "10m",
            "sourceRef": {"kind": "HelmRepository", "name": "ecr"}}),
    )
    .await;
    let chart = testing::wait_for(&h.objects, "app", T, |c: &HelmChart| {
        ready(c).is_some_and(|r| r.status == "False" && r.message.contains("provider 'aws'"))
    })
    .await;
    let stalled = conds(&chart).into_iter().find(|c| c.type_ == "Stalled");
    assert!(stalled.is_some_and(|c| c.status == "True"), "{:?}", conds(&chart));
    h.done().await;
}
