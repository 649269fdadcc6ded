//! HelmReleases end to end: real charts packaged by the real `helm` (`HELM_BIN`), served by the
//! testenv's Helm repository, pulled by the real source-controller and released by
//! helm-controller driving `helm` against the testenv apiserver, all in-process and scoped to a
//! fresh namespace per test. What Helm stored is checked with `helm list` and `helm history`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driftless_api::helm::HelmRelease;
use driftless_api::meta::Condition;
use driftless_api::source::{HelmChart, HelmRepository};
use driftless_runtime::{conditions, testing};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(180);

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: run hack/testenv.sh up and source env.sh"))
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(env("HELM_BIN")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&helm(&all)).unwrap()
}

fn chart_dir(name: &str) -> PathBuf {
    match name {
        "tested" => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts/tested"),
        other => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/charts")
            .join(other),
    }
}

/// One test's world: a namespace with a Helm repository of its own and the controllers.
struct World {
    client: Client,
    ns: String,
    releases: Api<HelmRelease>,
    _controllers: driftless_testkit::Controllers,
}

async fn world(prefix: &str) -> World {
    driftless_artifact::install_crypto_provider();
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, prefix).await;
    let controllers = driftless_testkit::start_controllers(&client, &ns).await;
    World {
        releases: Api::namespaced(client.clone(), &ns),
        client,
        ns,
        _controllers: controllers,
    }
}

impl World {
    /// Packages `chart` at `versions` into this test's directory of the Helm repository and
    /// (re)indexes it; creates the HelmRepository `charts` the first time.
    async fn publish(&self, chart: &str, versions: &[&str]) {
        self.publish_dir(&chart_dir(chart), versions).await;
    }

    /// Like [`World::publish`], for a chart directory.
    async fn publish_dir(&self, chart: &Path, versions: &[&str]) {
        let out = Path::new(&env("HELM_REPO_DIR")).join(&self.ns);
        let first = !out.exists();
        std::fs::create_dir_all(&out).unwrap();
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
        if first {
            let repo: HelmRepository = serde_json::from_value(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
                "metadata": {"name": "charts"},
                "spec": {"url": format!("{}/{}", env("HELM_REPO_URL"), self.ns), "interval": "1m"},
            }))
            .unwrap();
            Api::<HelmRepository>::namespaced(self.client.clone(), &self.ns)
                .create(&PostParams::default(), &repo)
                .await
                .unwrap();
        } else {
            self.refresh_repository().await;
        }
    }

    /// A GitRepository `name` for `repo`, over smart HTTP with the testenv's credentials.
    async fn git_source(&self, name: &str, repo: &testing::GitRepo) {
        driftless_testkit::git_source(&self.client, &self.ns, name, repo, "10m").await;
    }

    /// Asks for a reconcile of `kind/name` now.
    async fn request_reconcile<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let token = format!("{:?}", std::time::SystemTime::now());
        let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// The HelmChart a HelmRelease's `chart` template made, once `what` holds.
    async fn helm_chart(
        &self,
        release: &str,
        what: impl Fn(&HelmChart) -> bool + Send + 'static,
    ) -> HelmChart {
        let charts: Api<HelmChart> = Api::namespaced(self.client.clone(), &self.ns);
        testing::wait_for(&charts, &format!("{}-{release}", self.ns), T, what).await
    }

    async fn config_map(&self, name: &str) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn refresh_repository(&self) {
        let token = format!("{:?}", std::time::SystemTime::now());
        let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
        Api::<HelmRepository>::namespaced(self.client.clone(), &self.ns)
            .patch("charts", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn release(&self, name: &str, chart: &str, version: &str, extra: Value) {
        let mut spec = json!({
            "interval": "10m",
            "timeout": "2m",
            "chart": {"spec": {"chart": chart, "version": version,
                "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let hr: HelmRelease = serde_json::from_value(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.releases.create(&PostParams::default(), &hr).await.unwrap();
    }

    async fn patch_spec(&self, name: &str, spec: Value) {
        self.releases
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// Waits until Ready has `status` and `reason` at the current generation.
    async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> HelmRelease {
        let (status, reason) = (status.to_string(), reason.to_string());
        testing::wait_for(&self.releases, name, T, move |hr: &HelmRelease| {
            condition(hr, "Ready").is_some_and(|c| {
                c.status == status && c.reason == reason && c.observed_generation == hr.metadata.generation
            })
        })
        .await
    }

    async fn wait_for(
        &self,
        name: &str,
        what: impl Fn(&HelmRelease) -> bool + Send + 'static,
    ) -> HelmRelease {
        testing::wait_for(&self.releases, name, T, what).await
    }

    /// The revisions Helm stored for `release`, as `helm history` reports them.
    fn history(&self, release: &str) -> Vec<Value> {
        helm_json(&["history", release, "--namespace", &self.ns])
            .as_array()
            .unwrap()
            .clone()
    }

    async fn release_secrets(&self, release: &str) -> usize {
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
            .await
            .unwrap()
            .items
            .len()
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
            .unwrap()
    }
}

fn condition(hr: &HelmRelease, type_: &str) -> Option<Condition> {
    hr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| conditions::get(c, type_).cloned())
}

fn latest_version(hr: &HelmRelease) -> i64 {
    hr.status
        .as_ref()
        .and_then(|s| s.history.as_ref())
        .and_then(|h| h.first())
        .map(|s| s.version)
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn podinfo_is_installed_upgraded_and_uninstalled_from_a_helm_repository() {
    let w = world("hr-podinfo").await;
    w.publish("podinfo", &["6.14.0", "6.14.1"]).await;
    w.release(
        "podinfo",
        "podinfo",
        "6.14.0",
        json!({"values": {"replicaCount": 1}}),
    )
    .await;

    // Installed: status, `helm list` and `helm history` agree.
    let hr = w.wait_ready("podinfo", "True", "InstallSucceeded").await;
    let ready = condition(&hr, "Ready").unwrap();
    assert_eq!(
        ready.message,
        format!(
            "Helm install succeeded for release {}/podinfo.v1 with chart podinfo@6.14.0",
            w.ns
        )
    );
    assert_eq!(condition(&hr, "Released").unwrap().reason, "InstallSucceeded");
    let status = hr.status.clone().unwrap();
    assert_eq!(status.helm_chart, Some(format!("{0}/{0}-podinfo", w.ns)));
    assert_eq!(status.storage_namespace.as_deref(), Some(w.ns.as_str()));
    assert_eq!(status.last_attempted_revision.as_deref(), Some("6.14.0"));
    assert_eq!(status.last_attempted_release_action.as_deref(), Some("install"));
    let list = helm_json(&["list", "--namespace", &w.ns]);
    assert_eq!(list[0]["name"], "podinfo");
    assert_eq!(list[0]["chart"], "podinfo-6.14.0");
    assert_eq!(list[0]["status"], "deployed");
    let snapshot = &status.history.as_ref().unwrap()[0];
    assert_eq!((snapshot.version, snapshot.status.as_str()), (1, "deployed"));
    assert_eq!(snapshot.chart_version, "6.14.0");
    assert!(snapshot.digest.starts_with("sha256:"));
    let inventory = status.inventory.unwrap();
    assert!(
        inventory
            .entries
            .iter()
            .any(|e| e.id == format!("{}_podinfo_apps_Deployment", w.ns) && e.v == "v1"),
        "{inventory:?}"
    );
    // Objects carry the origin labels Flux's post-renderer adds.
    let deployment = w.deployment("podinfo").await.unwrap();
    let labels = deployment.metadata.labels.clone().unwrap();
    assert_eq!(labels["helm.toolkit.fluxcd.io/name"], "podinfo");
    assert_eq!(labels["helm.toolkit.fluxcd.io/namespace"], w.ns);
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");

    // A values change upgrades.
    w.patch_spec("podinfo", json!({"values": {"replicaCount": 2}}))
        .await;
    let hr = w.wait_ready("podinfo", "True", "UpgradeSucceeded").await;
    assert_eq!(latest_version(&hr), 2);
    let deployment = w.deployment("podinfo").await.unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(2));
    assert_eq!(
        helm_json(&["get", "values", "podinfo", "--namespace", &w.ns]),
        json!({"replicaCount": 2})
    );

    // A new chart version in range upgrades at once (the HelmChart's new artifact triggers it).
    w.patch_spec(
        "podinfo",
        json!({"chart": {"spec": {"chart": "podinfo", "version": "6.14.x",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}),
    )
    .await;
    let hr = w
        .wait_for("podinfo", |hr| {
            hr.status
                .as_ref()
                .and_then(|s| s.history.as_ref())
                .and_then(|h| h.first())
                .is_some_and(|s| s.chart_version == "6.14.1" && s.status == "deployed")
        })
        .await;
    assert_eq!(latest_version(&hr), 3);
    let history = w.history("podinfo");
    assert_eq!(history.len(), 3);
    assert_eq!(history[2]["chart"], "podinfo-6.14.1");
    assert_eq!(history[2]["status"], "deployed");
    assert_eq!(history[1]["status"], "superseded");

    // valuesFrom a Secret that does not exist yet: the release waits, then upgrades when it
    // appears.
    w.patch_spec(
        "podinfo",
        json!({"valuesFrom": [{"kind": "Secret", "name": "extra-values"},
            {"kind": "Secret", "name": "extra-values", "valuesKey": "tag", "targetPath": "image.tag"}]}),
    )
    .await;
    let hr = w.wait_ready("podinfo", "False", "ValuesError").await;
    assert!(
        condition(&hr, "Ready")
            .unwrap()
            .message
            .contains(&format!("could not find Secret '{}/extra-values'", w.ns))
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "extra-values"},
        "stringData": {"values.yaml": "replicaCount: 3\nui:\n  message: from a secret\n", "tag": "6.14.1"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let hr = w.wait_ready("podinfo", "True", "UpgradeSucceeded").await;
    assert_eq!(latest_version(&hr), 4);
    assert_eq!(
        helm_json(&["get", "values", "podinfo", "--namespace", &w.ns]),
        json!({"replicaCount": 2, "ui": {"message": "from a secret"}, "image": {"tag": "6.14.1"}})
    );

    // Suspended, a change waits; resumed, it is released.
    w.patch_spec("podinfo", json!({"suspend": true})).await;
    w.patch_spec("podinfo", json!({"values": {"replicaCount": 1}}))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.history("podinfo").len(), 4, "a suspended release is left alone");
    w.patch_spec("podinfo", json!({"suspend": false})).await;
    let hr = w.wait_ready("podinfo", "True", "UpgradeSucceeded").await;
    assert_eq!(latest_version(&hr), 5);

    // Deleted: the release is uninstalled and the HelmChart it made deleted.
    w.releases.delete("podinfo", &Default::default()).await.unwrap();
    testing::wait_gone(&w.releases, "podinfo", T).await;
    assert_eq!(w.release_secrets("podinfo").await, 0);
    assert!(w.deployment("podinfo").await.is_none());
    let charts: Api<driftless_api::source::HelmChart> = Api::namespaced(w.client.clone(), &w.ns);
    testing::wait_gone(&charts, &format!("{}-podinfo", w.ns), T).await;
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn failed_upgrades_are_remediated_until_retries_run_out() {
    let w = world("hr-remediate").await;
    w.publish("tested", &["1.0.0"]).await;

    // Rollback (the default) while retries remain, then on the last failure; then stalled.
    w.release(
        "web",
        "tested",
        "1.0.0",
        json!({"upgrade": {"remediation": {"retries": 1}}}),
    )
    .await;
    w.wait_ready("web", "True", "InstallSucceeded").await;
    w.patch_spec("web", json!({"values": {"badService": true}})).await;
    let hr = w
        .wait_for("web", |hr| {
            condition(hr, "Stalled").is_some_and(|c| c.reason == "RetriesExceeded")
        })
        .await;
    let status = hr.status.clone().unwrap();
    assert_eq!(status.upgrade_failures, Some(2));
    let remediated = condition(&hr, "Remediated").unwrap();
    assert_eq!(
        (remediated.status.as_str(), remediated.reason.as_str()),
        ("True", "RollbackSucceeded")
    );
    let ready = condition(&hr, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("Failed to upgrade after 2 attempt(s)"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&hr, "Released").unwrap().reason, "UpgradeFailed");
    // Helm's history: the install, two failed upgrades, each rolled back.
    let statuses: Vec<String> = w
        .history("web")
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        ["superseded", "failed", "superseded", "failed", "deployed"]
    );

    // A fixed spec is a new attempt: counters reset, the upgrade succeeds.
    w.patch_spec(
        "web",
        json!({"values": {"badService": false, "message": "fixed"}}),
    )
    .await;
    let hr = w.wait_ready("web", "True", "UpgradeSucceeded").await;
    assert_eq!(hr.status.unwrap().upgrade_failures, None);

    // With `strategy: uninstall` a failed upgrade is uninstalled instead.
    w.release(
        "solo",
        "tested",
        "1.0.0",
        json!({"upgrade": {"remediation": {"strategy": "uninstall", "remediateLastFailure": true}}}),
    )
    .await;
    w.wait_ready("solo", "True", "InstallSucceeded").await;
    w.patch_spec("solo", json!({"values": {"badService": true}}))
        .await;
    let hr = w
        .wait_for("solo", |hr| {
            condition(hr, "Stalled").is_some_and(|c| c.reason == "RetriesExceeded")
        })
        .await;
    assert_eq!(condition(&hr, "Remediated").unwrap().reason, "UninstallSucceeded");
    assert_eq!(w.release_secrets("solo").await, 0);
    assert!(w.deployment("solo").await.is_none());

    // Values the chart's schema rejects: a clear InstallFailed and nothing installed (Helm
    // refuses before it stores anything: retried, not counted, as in Flux).
    w.release("bad", "tested", "1.0.0", json!({"values": {"replicas": "many"}}))
        .await;
    let hr = w.wait_ready("bad", "False", "InstallFailed").await;
    let ready = condition(&hr, "Ready").unwrap();
    assert_eq!(hr.status.as_ref().unwrap().install_failures, None);
    assert!(ready.message.contains("schema"), "{}", ready.message);
    assert_eq!(w.release_secrets("bad").await, 0);
    assert!(w.deployment("bad").await.is_none());
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn helm_tests_run_after_release_and_failures_count_unless_ignored() {
    let w = world("hr-test").await;
    w.publish("tested", &["1.0.0"]).await;

    w.release("ok", "tested", "1.0.0", json!({"test": {"enable": true}}))
        .await;
    let hr = w.wait_ready("ok", "True", "TestSucceeded").await;
    let ready = condition(&hr, "Ready").unwrap();
    assert_eq!(
        ready.message,
        format!(
            "Helm test succeeded for release {}/ok.v1 with chart tested@1.0.0: 1 test hook(s) completed successfully",
            w.ns
        )
    );
    let hooks = hr.status.unwrap().history.unwrap()[0].test_hooks.clone().unwrap();
    assert_eq!(hooks["ok-test"].phase.as_deref(), Some("Succeeded"));

    // A failing test counts as a failed install: with no retries the release stalls (and is
    // kept, as remediateLastFailure defaults to false without retries).
    w.release(
        "failing",
        "tested",
        "1.0.0",
        json!({"test": {"enable": true}, "values": {"failTest": true}}),
    )
    .await;
    let hr = w
        .wait_for("failing", |hr| {
            condition(hr, "Stalled").is_some_and(|c| c.reason == "RetriesExceeded")
        })
        .await;
    assert_eq!(condition(&hr, "Ready").unwrap().reason, "TestFailed");
    assert_eq!(condition(&hr, "TestSuccess").unwrap().status, "False");
    assert_eq!(hr.status.unwrap().install_failures, Some(1));
    assert_eq!(w.history("failing")[0]["status"], "deployed");

    // Ignored test failures leave the release Ready.
    w.release(
        "ignored",
        "tested",
        "1.0.0",
        json!({"test": {"enable": true, "ignoreFailures": true}, "values": {"failTest": true}}),
    )
    .await;
    let hr = w.wait_ready("ignored", "True", "InstallSucceeded").await;
    assert_eq!(condition(&hr, "TestSuccess").unwrap().reason, "TestFailed");
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn drift_is_corrected_when_enabled_and_reported_when_warn() {
    let w = world("hr-drift").await;
    w.publish("tested", &["1.0.0"]).await;
    w.release(
        "fixed",
        "tested",
        "1.0.0",
        json!({"driftDetection": {"mode": "enabled"}}),
    )
    .await;
    w.release(
        "watched",
        "tested",
        "1.0.0",
        json!({"driftDetection": {"mode": "warn", "ignore": [{"paths": ["/data/message"], "target": {"kind": "ConfigMap"}}]}}),
    )
    .await;
    w.wait_ready("fixed", "True", "InstallSucceeded").await;
    w.wait_ready("watched", "True", "InstallSucceeded").await;

    // `kubectl edit`: another manager changes the released objects.
    let edit = |replicas: i32| json!({"spec": {"replicas": replicas}});
    let deployments: Api<Deployment> = Api::namespaced(w.client.clone(), &w.ns);
    let by_hand = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    for name in ["fixed", "watched"] {
        deployments
            .patch(name, &by_hand, &Patch::Merge(edit(5)))
            .await
            .unwrap();
    }
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(w.client.clone(), &w.ns);
    configs
        .patch(
            "watched-config",
            &by_hand,
            &Patch::Merge(json!({"data": {"message": "edited"}})),
        )
        .await
        .unwrap();
    for name in ["fixed", "watched"] {
        let token = format!("{:?}", std::time::SystemTime::now());
        w.releases
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}),
                ),
            )
            .await
            .unwrap();
    }

    // enabled: corrected.
    testing::wait_for(&deployments, "fixed", T, |d: &Deployment| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(1)
    })
    .await;
    // warn: reported, not corrected; the ignored ConfigMap field is not drift.
    let hr = w
        .wait_for("watched", |hr| {
            condition(hr, "Drifted").is_some_and(|c| c.status == "True")
                && condition(hr, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    let drifted = condition(&hr, "Drifted").unwrap();
    assert_eq!(drifted.reason, "DriftDetected");
    assert!(
        drifted
            .message
            .contains(&format!("Deployment/{}/watched configured", w.ns)),
        "{}",
        drifted.message
    );
    assert!(!drifted.message.contains("ConfigMap"), "{}", drifted.message);
    assert_eq!(condition(&hr, "Ready").unwrap().status, "True");
    let watched = w.deployment("watched").await.unwrap();
    assert_eq!(watched.spec.unwrap().replicas, Some(5));
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn podinfo_is_installed_from_an_oci_repository_through_chart_ref() {
    let w = world("hr-oci").await;
    // podinfo pushed by the real helm to the testenv registry.
    let dir = tempfile::tempdir().unwrap();
    helm(&[
        "package",
        chart_dir("podinfo").to_str().unwrap(),
        "--destination",
        dir.path().to_str().unwrap(),
    ]);
    let package = dir.path().join("podinfo-6.14.1.tgz");
    helm(&[
        "push",
        package.to_str().unwrap(),
        &format!("oci://{}/{}/charts", env("OCI_REGISTRY"), w.ns),
        "--plain-http",
    ]);
    let source: driftless_api::source::OCIRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "podinfo"},
        "spec": {"url": format!("oci://{}/{}/charts/podinfo", env("OCI_REGISTRY"), w.ns),
            "ref": {"tag": "6.14.1"}, "interval": "10m", "insecure": true,
            "layerSelector": {"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "operation": "copy"}},
    }))
    .unwrap();
    Api::<driftless_api::source::OCIRepository>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &source)
        .await
        .unwrap();
    let hr: HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "podinfo"},
        "spec": {"interval": "10m", "timeout": "2m",
            "chartRef": {"kind": "OCIRepository", "name": "podinfo"}},
    }))
    .unwrap();
    w.releases.create(&PostParams::default(), &hr).await.unwrap();
    let hr = w.wait_ready("podinfo", "True", "InstallSucceeded").await;
    let status = hr.status.unwrap();
    // The chart is versioned with the first 12 hex digits of its digest, as Flux tracks it.
    let digest = status.last_attempted_revision_digest.clone().unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let version = format!("6.14.1+{}", &digest["sha256:".len().."sha256:".len() + 12]);
    assert_eq!(status.last_attempted_revision.as_deref(), Some(version.as_str()));
    assert_eq!(status.helm_chart, None);
    let list = helm_json(&["list", "--namespace", &w.ns]);
    assert_eq!(list[0]["chart"], format!("podinfo-{version}"));
    assert_eq!(list[0]["status"], "deployed");
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_kustomization_waits_for_the_helm_release_it_depends_on() {
    let w = world("hr-dep").await;
    w.publish("tested", &["1.0.0"]).await;
    // The Kustomization first: it names the HelmRelease by kind and waits for it.
    let repo = testing::GitRepo::new("hr-dep");
    repo.write(
        "app/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  uses: db\n",
    );
    repo.commit("app");
    w.git_source("repo", &repo).await;
    let ks: driftless_api::kustomize::Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app"},
        "spec": {"interval": "10m", "prune": true, "path": "./app", "targetNamespace": w.ns,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            "dependsOn": [{"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "name": "db"}]},
    }))
    .unwrap();
    let kustomizations: Api<driftless_api::kustomize::Kustomization> =
        Api::namespaced(w.client.clone(), &w.ns);
    kustomizations.create(&PostParams::default(), &ks).await.unwrap();
    let waiting = testing::wait_for(
        &kustomizations,
        "app",
        T,
        |k: &driftless_api::kustomize::Kustomization| {
            k.status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .and_then(|c| conditions::get(c, "Ready").cloned())
                .is_some_and(|c| c.reason == "DependencyNotReady")
        },
    )
    .await;
    let message = waiting.status.unwrap().conditions.unwrap()[0].message.clone();
    assert!(
        message.contains(&format!("dependency '{}/db' not found", w.ns)),
        "{message}"
    );

    // The HelmRelease appears and becomes Ready: the Kustomization applies.
    w.release("db", "tested", "1.0.0", json!({})).await;
    w.wait_ready("db", "True", "InstallSucceeded").await;
    testing::wait_for(
        &kustomizations,
        "app",
        T,
        |k: &driftless_api::kustomize::Kustomization| {
            k.status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .is_some_and(|c| conditions::is_true(c, "Ready"))
        },
    )
    .await;
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(w.client.clone(), &w.ns);
    assert!(configs.get_opt("app").await.unwrap().is_some());

    // readyExpr (CEL over `self` and `dep`) replaces the Ready check: the release waits until
    // the dependency carries the label the expression asks for.
    w.release(
        "gated",
        "tested",
        "1.0.0",
        json!({"releaseName": "gated", "dependsOn": [{"name": "db",
            "readyExpr": "has(dep.metadata.labels) && 'tier' in dep.metadata.labels && dep.metadata.labels.tier == self.metadata.name"}]}),
    )
    .await;
    let waiting = w.wait_ready("gated", "False", "DependencyNotReady").await;
    let message = condition(&waiting, "Ready").unwrap().message;
    assert!(message.contains("readyExpr"), "{message}");
    w.releases
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gated"}}})),
        )
        .await
        .unwrap();
    w.wait_ready("gated", "True", "InstallSucceeded").await;
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn cert_manager_is_installed_with_its_crds_and_its_values_schema_enforced() {
    let w = world("hr-certs").await;
    w.publish("cert-manager", &["1.19.0"]).await;
    // Cluster-scoped objects are named after the release: one per test namespace.
    w.release(
        "cert-manager",
        "cert-manager",
        "1.19.0",
        json!({"releaseName": w.ns, "install": {"crds": "CreateReplace"}, "upgrade": {"crds": "CreateReplace"},
            "values": {"crds": {"enabled": true, "keep": false}}}),
    )
    .await;
    let hr = w.wait_ready("cert-manager", "True", "InstallSucceeded").await;
    let inventory = hr.status.unwrap().inventory.unwrap();
    assert!(
        inventory
            .entries
            .iter()
            .any(|e| e.id == "_certificates.cert-manager.io_apiextensions.k8s.io_CustomResourceDefinition"),
        "{inventory:?}"
    );
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(w.client.clone());
    let crd = crds.get("certificates.cert-manager.io").await.unwrap();
    assert_eq!(
        crd.metadata.labels.unwrap()["helm.toolkit.fluxcd.io/namespace"],
        w.ns
    );
    let webhook = format!("{}-cert-manager-webhook", w.ns);
    assert!(w.deployment(&webhook).await.is_some());

    // Values the chart's schema rejects: a clear InstallFailed, nothing installed.
    w.release(
        "invalid",
        "cert-manager",
        "1.19.0",
        json!({"values": {"replicaCount": "two"}}),
    )
    .await;
    let hr = w.wait_ready("invalid", "False", "InstallFailed").await;
    let ready = condition(&hr, "Ready").unwrap();
    assert!(
        ready.message.contains("replicaCount") && ready.message.contains("schema"),
        "{}",
        ready.message
    );
    assert_eq!(w.release_secrets("invalid").await, 0);
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn chart_crds_are_replaced_on_upgrade_with_create_replace() {
    let w = world("hr-crds").await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(w.client.clone());
    // A CRD left by an earlier run (changed by its upgrade) would conflict with the install.
    if crds
        .get_opt("gadgets.tests.driftless.dev")
        .await
        .unwrap()
        .is_some()
    {
        crds.delete("gadgets.tests.driftless.dev", &Default::default())
            .await
            .unwrap();
        testing::wait_gone(&crds, "gadgets.tests.driftless.dev", T).await;
    }
    // Version 2.0.0 of the chart adds a field to its CRD.
    let copy = tempfile::tempdir().unwrap();
    let chart = copy.path().join("tested");
    let status = Command::new("cp")
        .args([
            "-r",
            chart_dir("tested").to_str().unwrap(),
            chart.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // A CRD of its own (the other tests share the chart's Widget CRD), and version 2.0.0 of
    // the chart adds a field to it.
    let crd_file = chart.join("crds/widgets.yaml");
    let own = std::fs::read_to_string(&crd_file)
        .unwrap()
        .replace("widgets.tests", "gadgets.tests")
        .replace("Widget", "Gadget")
        .replace("widget", "gadget");
    std::fs::write(&crd_file, &own).unwrap();
    w.publish_dir(&chart, &["1.0.0"]).await;
    let crd = own.replace(
        "                size:\n                  type: integer\n",
        "                size:\n                  type: integer\n                color:\n                  type: string\n",
    );
    std::fs::write(&crd_file, crd).unwrap();
    w.publish_dir(&chart, &["2.0.0"]).await;

    w.release(
        "crds",
        "tested",
        "1.0.0",
        json!({"upgrade": {"crds": "CreateReplace"}}),
    )
    .await;
    w.wait_ready("crds", "True", "InstallSucceeded").await;
    w.patch_spec(
        "crds",
        json!({"chart": {"spec": {"chart": "tested", "version": "2.0.0",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}),
    )
    .await;
    w.wait_ready("crds", "True", "UpgradeSucceeded").await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(w.client.clone());
    let crd = serde_json::to_value(crds.get("gadgets.tests.driftless.dev").await.unwrap()).unwrap();
    assert_eq!(
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/color/type"),
        Some(&json!("string")),
        "{crd}"
    );
    testing::delete_namespace(&w.client, &w.ns).await;
}

fn chart_condition(chart: &HelmChart, type_: &str) -> Option<Condition> {
    chart
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| conditions::get(c, type_).cloned())
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_chart_from_git_is_built_with_its_dependencies_and_values_files() {
    let w = world("hr-git").await;
    w.publish("podinfo", &["6.14.1"]).await;
    let repository_url = format!("{}/{}", env("HELM_REPO_URL"), w.ns);
    let repo = testing::GitRepo::new("hr-git");
    // An umbrella chart: podinfo from the Helm repository (the HelmRepository `charts` has its
    // URL), `lib` from the same source, values merged from two files.
    repo.write(
        "charts/umbrella/Chart.yaml",
        &format!(
            "apiVersion: v2\nname: umbrella\nversion: 0.1.0\ndependencies:\n- name: podinfo\n  version: 6.x\n  repository: {repository_url}\n- name: lib\n  version: ~1.0\n  repository: file://../lib\n"
        ),
    );
    repo.write(
        "charts/umbrella/values.yaml",
        "greeting: hello\npodinfo:\n  replicaCount: 1\n",
    );
    repo.write(
        "charts/umbrella/templates/greeting.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    );
    repo.write(
        "charts/lib/Chart.yaml",
        "apiVersion: v2\nname: lib\nversion: 1.0.3\n",
    );
    repo.write(
        "charts/lib/templates/lib.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lib\ndata:\n  from: lib\n",
    );
    repo.write("env/prod.yaml", "greeting: prod\n");
    let first = repo.commit("umbrella");
    w.git_source("repo", &repo).await;
    let spec = json!({
        "interval": "10m", "timeout": "2m",
        "chart": {"spec": {"chart": "./charts/umbrella", "reconcileStrategy": "Revision",
            "valuesFiles": ["charts/umbrella/values.yaml", "env/prod.yaml"],
            "sourceRef": {"kind": "GitRepository", "name": "repo"}}},
    });
    let hr: HelmRelease = serde_json::from_value(json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "app"}, "spec": spec,
    }))
    .unwrap();
    w.releases.create(&PostParams::default(), &hr).await.unwrap();
    w.wait_ready("app", "True", "InstallSucceeded").await;

    // The version carries the commit and the HelmChart's generation, as Flux writes it.
    let version = format!("0.1.0+{}.1", &first[..12]);
    let chart = w
        .helm_chart("app", |c| {
            c.status.as_ref().and_then(|s| s.artifact.as_ref()).is_some()
        })
        .await;
    let status = chart.status.clone().unwrap();
    assert_eq!(status.artifact.as_ref().unwrap().revision, version);
    assert_eq!(
        status.observed_source_artifact_revision.as_deref(),
        Some(format!("main@sha1:{first}").as_str())
    );
    let ready = chart_condition(&chart, "Ready").unwrap();
    assert_eq!(ready.reason, "ChartPackageSucceeded");
    assert!(
        ready
            .message
            .contains("merged values files [charts/umbrella/values.yaml env/prod.yaml]"),
        "{}",
        ready.message
    );
    let listed = helm_json(&["list", "--namespace", &w.ns]);
    assert_eq!(listed[0]["chart"], format!("umbrella-{version}"));
    // Both dependencies were built into the chart, and the values files merged.
    assert_eq!(
        w.config_map("greeting").await.unwrap().data.unwrap()["greeting"],
        "prod"
    );
    assert!(w.config_map("lib").await.is_some());
    assert!(w.deployment("app-podinfo").await.is_some());

    // A new commit is a new chart version (reconcileStrategy Revision): upgraded at once.
    repo.write("env/prod.yaml", "greeting: prod-2\n");
    let second = repo.commit("prod-2");
    w.request_reconcile::<driftless_api::source::GitRepository>("repo")
        .await;
    let upgraded = format!("0.1.0+{}.1", &second[..12]);
    let expected = upgraded.clone();
    w.wait_for("app", move |hr| {
        hr.status
            .as_ref()
            .and_then(|s| s.last_attempted_revision.as_deref())
            == Some(expected.as_str())
            && condition(hr, "Ready").is_some_and(|c| c.reason == "UpgradeSucceeded")
    })
    .await;
    assert_eq!(
        w.config_map("greeting").await.unwrap().data.unwrap()["greeting"],
        "prod-2"
    );
    assert_eq!(w.history("app").len(), 2);
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn podinfo_is_installed_from_an_oci_helm_repository_when_its_signature_verifies() {
    let w = world("hr-ocihelm").await;
    let registry = env("OCI_REGISTRY");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().to_str().unwrap();
    // Two versions pushed by the real `helm push`; only 6.14.1 is signed by the real cosign.
    let mut digests = std::collections::BTreeMap::new();
    for version in ["6.14.0", "6.14.1"] {
        helm(&[
            "package",
            chart_dir("podinfo").to_str().unwrap(),
            "--version",
            version,
            "--destination",
            out,
        ]);
        let pushed = Command::new(env("HELM_BIN"))
            .args([
                "push",
                &format!("{out}/podinfo-{version}.tgz"),
                &format!("oci://{registry}/{}/charts", w.ns),
                "--plain-http",
            ])
            .output()
            .unwrap();
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&pushed.stdout),
            String::from_utf8_lossy(&pushed.stderr)
        );
        let digest = text
            .split_whitespace()
            .find(|t| t.starts_with("sha256:"))
            .unwrap()
            .to_string();
        digests.insert(version, digest);
    }
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let generated = Command::new(env("COSIGN_BIN"))
        .args(["generate-key-pair", "--output-key-prefix", "trusted"])
        .env("COSIGN_PASSWORD", "")
        .current_dir(&keys)
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let signed = Command::new(env("COSIGN_BIN"))
        .args([
            "sign",
            "--key",
            "trusted.key",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--yes",
        ])
        .arg(format!(
            "{registry}/{}/charts/podinfo@{}",
            w.ns, digests["6.14.1"]
        ))
        .env("COSIGN_PASSWORD", "")
        .current_dir(&keys)
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let public = std::fs::read_to_string(keys.join("trusted.pub")).unwrap();
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "cosign-keys"}, "stringData": {"cosign.pub": public}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let repository: HelmRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
        "metadata": {"name": "oci"},
        "spec": {"type": "oci", "url": format!("oci://{registry}/{}/charts", w.ns), "insecure": true, "interval": "10m"},
    }))
    .unwrap();
    Api::<HelmRepository>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &repository)
        .await
        .unwrap();
    let release = |name: &str, version: &str| {
        serde_json::from_value::<HelmRelease>(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": name},
            "spec": {"interval": "10m", "timeout": "2m",
                "chart": {"spec": {"chart": "podinfo", "version": version,
                    "sourceRef": {"kind": "HelmRepository", "name": "oci"},
                    "valuesFiles": ["values.yaml", "values-prod.yaml"],
                    "verify": {"provider": "cosign", "secretRef": {"name": "cosign-keys"}}}}},
        }))
        .unwrap()
    };

    // `6.x` picks the highest tag; its signature verifies; values-prod.yaml (in the chart) is
    // merged: its Redis is released too.
    w.releases
        .create(&PostParams::default(), &release("signed", "6.x"))
        .await
        .unwrap();
    w.wait_ready("signed", "True", "InstallSucceeded").await;
    let chart = w
        .helm_chart("signed", |c| {
            c.status.as_ref().and_then(|s| s.artifact.as_ref()).is_some()
        })
        .await;
    assert_eq!(
        chart.status.as_ref().unwrap().artifact.as_ref().unwrap().revision,
        "6.14.1+1"
    );
    let verified = chart_condition(&chart, "SourceVerified").unwrap();
    assert_eq!(verified.status, "True");
    assert!(
        verified.message.contains("verified signature of version 6.14.1"),
        "{}",
        verified.message
    );
    let listed = helm_json(&["list", "--namespace", &w.ns]);
    assert_eq!(listed[0]["chart"], "podinfo-6.14.1+1");
    assert!(w.deployment("signed-podinfo").await.is_some());
    assert!(w.deployment("signed-podinfo-redis").await.is_some());

    // The unsigned version is never pulled, let alone released.
    w.releases
        .create(&PostParams::default(), &release("unsigned", "6.14.0"))
        .await
        .unwrap();
    let refused = w
        .helm_chart("unsigned", |c| {
            chart_condition(c, "SourceVerified").is_some_and(|v| v.status == "False")
        })
        .await;
    let ready = chart_condition(&refused, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "VerificationError")
    );
    assert!(refused.status.unwrap().artifact.is_none());
    assert!(
        helm_json(&["list", "--namespace", &w.ns])
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn health_check_exprs_decide_when_a_release_is_healthy() {
    let w = world("hr-health").await;
    w.publish("tested", &["1.0.0"]).await;
    // The ConfigMap is healthy by the expressions only: ready when its message says so,
    // failed when it says broken (kstatus alone would call any ConfigMap Current).
    let exprs = json!([{"apiVersion": "v1", "kind": "ConfigMap",
        "current": "data.message == 'ready'", "failed": "data.message == 'broken'"}]);
    w.release(
        "health",
        "tested",
        "1.0.0",
        json!({"releaseName": "health", "values": {"message": "ready"}, "healthCheckExprs": exprs}),
    )
    .await;
    w.wait_ready("health", "True", "InstallSucceeded").await;

    // An upgrade whose objects fail the expressions fails, and Helm's storage says so.
    w.patch_spec("health", json!({"values": {"message": "broken"}}))
        .await;
    let failed = w.wait_ready("health", "False", "UpgradeFailed").await;
    let message = condition(&failed, "Ready").unwrap().message;
    assert!(
        message.contains("ConfigMap") && message.contains("the failed expression is true"),
        "{message}"
    );
    let history = w.history("health");
    let last = history.last().unwrap();
    assert_eq!(last["status"], "failed", "{history:?}");
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .contains("failed expression")
    );
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn another_chart_is_reinstalled_and_kept_history_survives_uninstall() {
    let w = world("hr-rename").await;
    w.publish("tested", &["1.0.0"]).await;
    w.publish("podinfo", &["6.14.1"]).await;
    w.release(
        "app",
        "tested",
        "1.0.0",
        json!({"releaseName": "app", "uninstall": {"keepHistory": true}}),
    )
    .await;
    w.wait_ready("app", "True", "InstallSucceeded").await;

    // Another chart name: uninstalled (its history kept), then installed anew.
    w.patch_spec(
        "app",
        json!({"chart": {"spec": {"chart": "podinfo", "version": "6.14.1",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}),
    )
    .await;
    w.wait_for("app", |hr| {
        hr.status
            .as_ref()
            .and_then(|s| s.last_attempted_revision.as_deref())
            == Some("6.14.1")
            && condition(hr, "Ready").is_some_and(|c| c.reason == "InstallSucceeded")
    })
    .await;
    let history = w.history("app");
    let statuses: Vec<(&str, &str)> = history
        .iter()
        .map(|h| (h["chart"].as_str().unwrap(), h["status"].as_str().unwrap()))
        .collect();
    // Helm's `install --replace` over the uninstalled revision marks it superseded.
    assert_eq!(
        statuses,
        [("tested-1.0.0", "superseded"), ("podinfo-6.14.1", "deployed")]
    );
    assert!(w.deployment("app").await.is_none());
    assert!(w.deployment("app-podinfo").await.is_some());

    // Deleted with keepHistory: the objects go, Helm's history stays.
    w.releases.delete("app", &Default::default()).await.unwrap();
    testing::wait_gone(&w.releases, "app", T).await;
    let history = w.history("app");
    assert_eq!(history.last().unwrap()["status"], "uninstalled", "{history:?}");
    assert!(w.deployment("app-podinfo").await.is_none());
    testing::delete_namespace(&w.client, &w.ns).await;
}

/// `kubeConfig.configMapRef`: Helm and the controller reach the cluster as the ConfigMap's
/// ServiceAccount, with a token the TokenRequest API issued (the "remote" cluster is the
/// testenv's own apiserver, which trusts its ServiceAccounts' tokens): a release installs with
/// an account that may manage the namespace, and fails, naming the account, with one that may
/// only read.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_kubeconfig_config_map_installs_as_its_service_account() {
    let w = world("hr-wi").await;
    w.publish("tested", &["1.0.0"]).await;
    testing::service_account_with_role(
        &w.client,
        &w.ns,
        "deployer",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    )
    .await;
    testing::service_account_with_role(
        &w.client,
        &w.ns,
        "reader",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]),
    )
    .await;
    for account in ["deployer", "reader"] {
        let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": account},
            "data": testing::workload_identity_data(account).await}))
        .unwrap();
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(w.client.clone(), &w.ns)
            .create(&PostParams::default(), &config_map)
            .await
            .unwrap();
        w.release(
            account,
            "tested",
            "1.0.0",
            json!({"install": {"crds": "Skip"}, "kubeConfig": {"configMapRef": {"name": account}}}),
        )
        .await;
    }
    w.wait_ready("deployer", "True", "InstallSucceeded").await;
    assert_eq!(w.history("deployer").len(), 1);
    assert!(w.config_map("deployer-config").await.is_some());
    let refused = w
        .wait_for("reader", |hr| {
            condition(hr, "Ready").is_some_and(|c| c.status == "False" && c.message.contains("forbidden"))
        })
        .await;
    let message = condition(&refused, "Ready").unwrap().message;
    assert!(
        message.contains(&format!("system:serviceaccount:{}:reader", w.ns)),
        "{message}"
    );
    assert!(w.config_map("reader-config").await.is_none());
    testing::delete_namespace(&w.client, &w.ns).await;
}
