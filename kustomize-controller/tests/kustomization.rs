//! Kustomizations end to end: the real source-controller fetching from the testenv git server,
//! the kustomize-controller applying to the testenv apiserver, both in-process and scoped to a
//! fresh namespace per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::{Condition, REQUESTED_AT_ANNOTATION};
use driftless_api::source::GitRepository;
use driftless_runtime::{conditions, testing};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

const T: Duration = Duration::from_secs(90);

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: run hack/testenv.sh up and source env.sh"))
}

/// A repository on the testenv git server whose commits return Flux's revision string.
struct Repo(testing::GitRepo);

impl Repo {
    fn new(prefix: &str) -> Repo {
        Repo(testing::GitRepo::new(prefix))
    }

    fn write(&self, path: &str, content: &str) -> &Repo {
        self.0.write(path, content);
        self
    }

    fn remove(&self, path: &str) -> &Repo {
        self.0.remove(path);
        self
    }

    fn commit(&self, message: &str) -> String {
        format!("main@sha1:{}", self.0.commit(message))
    }

    fn url(&self) -> String {
        self.0.http_url()
    }
}

/// One test's world: a namespace, source-controller and kustomize-controller watching it.
struct World {
    client: Client,
    ns: String,
    kustomizations: Api<Kustomization>,
    sources: Api<GitRepository>,
    _controllers: driftless_testkit::Controllers,
}

async fn world(prefix: &str) -> World {
    world_with(prefix, |_, _| {}).await
}

/// A world whose kustomize-controller runs with settings changed by `configure` (given the
/// world's namespace): a flag or a feature gate of Flux's set.
async fn world_with(
    prefix: &str,
    configure: impl FnOnce(&mut kustomize_controller::reconciler::Settings, &str),
) -> World {
    driftless_artifact::install_crypto_provider();
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, prefix).await;
    let controllers =
        driftless_testkit::start_controllers_with(&client, &ns, |settings| configure(settings, &ns)).await;
    World {
        kustomizations: Api::namespaced(client.clone(), &ns),
        sources: Api::namespaced(client.clone(), &ns),
        client,
        ns,
        _controllers: controllers,
    }
}

impl World {
    async fn git_repository(&self, name: &str, repo: &Repo) {
        let auth: Secret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("{name}-auth")},
            "stringData": {"username": env("GIT_HTTP_USER"), "password": env("GIT_HTTP_PASSWORD")}}))
            .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &auth)
            .await
            .unwrap();
        let source: GitRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name},
            "spec": {"url": repo.url(), "interval": "1m", "ref": {"branch": "main"}, "secretRef": {"name": format!("{name}-auth")}}
        }))
        .unwrap();
        self.sources
            .create(&PostParams::default(), &source)
            .await
            .unwrap();
    }

    async fn kustomization(&self, name: &str, spec: serde_json::Value) {
        // A failed apply is retried after `retryInterval` (the interval when unset, as Flux).
        let mut full = serde_json::json!({"interval": "10m", "retryInterval": "2s", "prune": true, "targetNamespace": self.ns,
            "sourceRef": {"kind": "GitRepository", "name": "repo"}});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let ks: Kustomization = serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name}, "spec": full
        }))
        .unwrap();
        self.kustomizations
            .create(&PostParams::default(), &ks)
            .await
            .unwrap();
    }

    /// Asks source-controller to fetch now (a new commit), as `flux reconcile source git` does.
    async fn refresh(&self, name: &str) {
        let token = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}});
        self.sources
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn request(&self, name: &str) {
        let token = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}});
        self.kustomizations
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn wait_applied(&self, name: &str, revision: &str) -> Kustomization {
        testing::wait_for(&self.kustomizations, name, T, |k: &Kustomization| {
            ready(k).is_some_and(|c| c.status == "True")
                && k.status.as_ref().and_then(|s| s.last_applied_revision.as_deref()) == Some(revision)
        })
        .await
    }

    async fn wait_failed(&self, name: &str, reason: &str, words: &str) -> Kustomization {
        testing::wait_for(&self.kustomizations, name, T, |k: &Kustomization| {
            ready(k).is_some_and(|c| c.status == "False" && c.reason == reason && c.message.contains(words))
        })
        .await
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// ConfigMap `vars` with `labels` and `color: blue`, for `postBuild.substituteFrom`.
    async fn color_vars(&self, labels: serde_json::Value) {
        let vars: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "vars",
            "labels": labels}, "data": {"color": "blue"}}))
        .unwrap();
        self.config_maps()
            .create(&PostParams::default(), &vars)
            .await
            .unwrap();
    }

    /// Sets `color` in ConfigMap `vars`.
    async fn set_color(&self, color: &str) {
        self.config_maps()
            .patch(
                "vars",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"color": color}})),
            )
            .await
            .unwrap();
    }

    async fn done(self) {
        testing::delete_namespace(&self.client, &self.ns).await;
    }
}

fn ready(k: &Kustomization) -> Option<Condition> {
    let conds = k
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions::get(&conds, "Ready").cloned()
}

fn condition(k: &Kustomization, type_: &str) -> Option<Condition> {
    let conds = k
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions::get(&conds, type_).cloned()
}

/// ConfigMap `settings` whose `color` comes from the postBuild variable `color`.
const COLOR_SETTINGS: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: ${color}\n";

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n")
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
";

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn commit_change_removal_and_drift_are_reconciled() {
    let w = world("ks-flow").await;
    let repo = Repo::new("ks-flow");
    repo.write("app/settings.yaml", &config_map("settings", "one"))
        .write("app/extra.yaml", &config_map("extra", "x"));
    repo.write("app/deployment.yaml", DEPLOYMENT);
    let first = repo.commit("first");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({"path": "./app"})).await;

    // Commit → applied, with Flux's ownership labels and inventory ids.
    let ks = w.wait_applied("app", &first).await;
    assert_eq!(ready(&ks).unwrap().message, format!("Applied revision: {first}"));
    let ids: Vec<String> = ks
        .status
        .unwrap()
        .inventory
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(ids.contains(&format!("{}_settings__ConfigMap", w.ns)), "{ids:?}");
    assert!(ids.contains(&format!("{}_web_apps_Deployment", w.ns)), "{ids:?}");
    let settings = w.config_maps().get("settings").await.unwrap();
    let labels = settings.metadata.labels.unwrap();
    assert_eq!(labels["kustomize.toolkit.fluxcd.io/name"], "app");
    assert_eq!(labels["kustomize.toolkit.fluxcd.io/namespace"], w.ns);

    // Change → updated; file removed → pruned.
    repo.write("app/settings.yaml", &config_map("settings", "two"))
        .remove("app/extra.yaml");
    let second = repo.commit("second");
    w.refresh("repo").await;
    w.wait_applied("app", &second).await;
    let settings = w.config_maps().get("settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["value"], "two");
    testing::wait_gone(&w.config_maps(), "extra", T).await;

    // A manual edit is corrected at the next reconcile.
    let deployments: Api<Deployment> = Api::namespaced(w.client.clone(), &w.ns);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    w.request("app").await;
    testing::wait_for(&deployments, "web", T, |d: &Deployment| {
        d.spec.as_ref().and_then(|s| s.replicas) == Some(1)
    })
    .await;
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_broken_build_keeps_the_last_good_state() {
    let w = world("ks-broken").await;
    let repo = Repo::new("ks-broken");
    repo.write("settings.yaml", &config_map("settings", "good"));
    let good = repo.commit("good");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({})).await;
    w.wait_applied("app", &good).await;

    repo.write(
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [broken\n",
    );
    let broken = repo.commit("broken");
    w.refresh("repo").await;
    let ks = w.wait_failed("app", "BuildFailed", "settings.yaml").await;
    let status = ks.status.unwrap();
    assert_eq!(status.last_applied_revision.as_deref(), Some(good.as_str()));
    assert_eq!(status.last_attempted_revision.as_deref(), Some(broken.as_str()));
    assert_eq!(
        w.config_maps().get("settings").await.unwrap().data.unwrap()["value"],
        "good"
    );
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn an_object_the_apiserver_rejects_stops_its_whole_stage() {
    let w = world("ks-reject").await;
    let repo = Repo::new("ks-reject");
    repo.write("settings.yaml", &config_map("settings", "v"));
    repo.write(
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 99999999\n",
    );
    repo.commit("reject");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({})).await;
    let ks = w.wait_failed("app", "ReconciliationFailed", "Service/").await;
    assert!(
        ready(&ks).unwrap().message.contains("dry-run failed"),
        "{:?}",
        ready(&ks)
    );
    assert!(
        w.config_maps().get_opt("settings").await.unwrap().is_none(),
        "nothing of the stage is applied"
    );
    // The failure is in the history, with its reason and the revision attempted.
    let history = ks.status.as_ref().unwrap().history.clone().unwrap_or_default();
    let failed = history.first().expect("a history entry for the failure");
    assert_eq!(failed.last_reconciled_status, "ReconciliationFailed");
    assert!(failed.digest.starts_with("sha256:"));
    assert!(
        failed
            .metadata
            .as_ref()
            .and_then(|m| m.get("revision"))
            .is_some_and(|r| r.contains("@sha1:")),
        "{failed:?}"
    );
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn health_checks_pass_for_available_deployments_and_time_out_otherwise() {
    let w = world("ks-health").await;
    let repo = Repo::new("ks-health");
    repo.write("good/deployment.yaml", DEPLOYMENT);
    // No node matches: the Deployment never becomes Available.
    let stuck = DEPLOYMENT
        .replace("name: web", "name: stuck")
        .replace("app: web", "app: stuck")
        .replace(
            "      containers:",
            "      nodeSelector:\n        nowhere: \"true\"\n      containers:",
        );
    repo.write("bad/deployment.yaml", &stuck);
    let revision = repo.commit("health");
    w.git_repository("repo", &repo).await;
    w.kustomization(
        "good",
        serde_json::json!({"path": "./good", "wait": true, "timeout": "60s"}),
    )
    .await;
    w.kustomization(
        "bad",
        serde_json::json!({"path": "./bad", "wait": true, "timeout": "5s"}),
    )
    .await;
    let good = w.wait_applied("good", &revision).await;
    assert_eq!(condition(&good, "Healthy").unwrap().status, "True");
    // Retries set Healthy back to Unknown while they run: wait for a settled failure.
    let bad = testing::wait_for(&w.kustomizations, "bad", T, |k: &Kustomization| {
        ready(k).is_some_and(|c| c.reason == "HealthCheckFailed" && c.message.contains("Deployment/"))
            && condition(k, "Healthy").is_some_and(|c| c.status == "False")
    })
    .await;
    assert!(
        ready(&bad).unwrap().message.contains("timeout waiting for"),
        "{:?}",
        ready(&bad)
    );
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_dependency_chain_of_three_resolves_in_order() {
    let w = world("ks-deps").await;
    let repo = Repo::new("ks-deps");
    for name in ["a", "b", "c"] {
        repo.write(&format!("{name}/cm.yaml"), &config_map(name, name));
    }
    let revision = repo.commit("deps");
    w.git_repository("repo", &repo).await;
    // Created in reverse order: c waits for b, which waits for a.
    w.kustomization(
        "c",
        serde_json::json!({"path": "./c", "dependsOn": [{"name": "b"}]}),
    )
    .await;
    w.kustomization(
        "b",
        serde_json::json!({"path": "./b", "dependsOn": [{"name": "a"}]}),
    )
    .await;
    let c = testing::wait_for(&w.kustomizations, "c", T, |k: &Kustomization| {
        ready(k).is_some_and(|c| c.reason == "DependencyNotReady")
    })
    .await;
    assert!(
        ready(&c).unwrap().message.contains("dependency"),
        "{:?}",
        ready(&c)
    );
    w.kustomization("a", serde_json::json!({"path": "./a"})).await;
    let a = w.wait_applied("a", &revision).await;
    let b = w.wait_applied("b", &revision).await;
    let c = w.wait_applied("c", &revision).await;
    let applied_at = |k: &Kustomization| ready(k).unwrap().last_transition_time.0;
    assert!(applied_at(&a) <= applied_at(&b) && applied_at(&b) <= applied_at(&c));
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn post_build_substitutes_variables_and_strict_mode_fails_on_missing_ones() {
    let w = world("ks-subst").await;
    let repo = Repo::new("ks-subst");
    repo.write(
        "ok/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vars\ndata:\n  cluster: ${cluster}\n  region: ${region:=eu-west-1}\n  from: ${from_cm}\n",
    );
    repo.write(
        "missing/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: missing\ndata:\n  x: ${undefined}\n",
    );
    let revision = repo.commit("subst");
    let vars: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "cluster-vars"}, "data": {"from_cm": "yes-from-cm"}}),
    )
    .unwrap();
    w.config_maps()
        .create(&PostParams::default(), &vars)
        .await
        .unwrap();
    w.git_repository("repo", &repo).await;
    let post_build = serde_json::json!({"substitute": {"cluster": "prod"}, "substituteFrom": [{"kind": "ConfigMap", "name": "cluster-vars"}]});
    w.kustomization("ok", serde_json::json!({"path": "./ok", "postBuild": post_build}))
        .await;
    w.kustomization(
        "missing",
        // With variables, an undefined one fails (without any, Flux substitutes nothing).
        serde_json::json!({"path": "./missing", "postBuild": {"substitute": {"other": "x"}}}),
    )
    .await;
    w.wait_applied("ok", &revision).await;
    let data = w.config_maps().get("vars").await.unwrap().data.unwrap();
    assert_eq!(
        (
            data["cluster"].as_str(),
            data["region"].as_str(),
            data["from"].as_str()
        ),
        ("prod", "eu-west-1", "yes-from-cm")
    );
    w.wait_failed("missing", "BuildFailed", "undefined").await;
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn impersonating_a_service_account_without_rights_is_refused() {
    let w = world("ks-sa").await;
    let repo = Repo::new("ks-sa");
    repo.write("cm.yaml", &config_map("settings", "v"));
    repo.commit("sa");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({"serviceAccountName": "nobody"}))
        .await;
    let ks = w.wait_failed("app", "ReconciliationFailed", "forbidden").await;
    assert!(
        ready(&ks).unwrap().message.contains("system:serviceaccount"),
        "{:?}",
        ready(&ks)
    );
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_kubeconfig_config_map_reaches_the_cluster_with_a_service_account_token() {
    let w = world("ks-wi").await;
    let repo = Repo::new("ks-wi");
    repo.write("cm.yaml", &config_map("settings", "v"));
    let revision = repo.commit("workload identity");
    w.git_repository("repo", &repo).await;
    // The "remote" cluster is the testenv's own apiserver, which trusts the tokens of its
    // ServiceAccounts for its issuer's audience; the ServiceAccount may only manage ConfigMaps.
    testing::service_account_with_role(
        &w.client,
        &w.ns,
        "deployer",
        serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]),
    )
    .await;
    let identity = testing::workload_identity_data("deployer").await;
    let remote = |name: &str, extra: &[(&str, &str)]| {
        let mut data = identity.clone();
        for (k, v) in extra {
            if v.is_empty() {
                data.as_object_mut().unwrap().remove(*k);
            } else {
                data[*k] = serde_json::Value::String(v.to_string());
            }
        }
        serde_json::from_value::<ConfigMap>(serde_json::json!({"metadata": {"name": name}, "data": data}))
            .unwrap()
    };
    for (name, extra) in [
        ("remote", vec![]),
        ("no-account", vec![("serviceAccountName", "")]),
        ("cloud", vec![("provider", "aws")]),
    ] {
        w.config_maps()
            .create(&PostParams::default(), &remote(name, &extra))
            .await
            .unwrap();
        w.kustomization(
            name,
            serde_json::json!({"kubeConfig": {"configMapRef": {"name": name}}}),
        )
        .await;
    }
    w.wait_applied("remote", &revision).await;
    let settings = w.config_maps().get("settings").await.unwrap();
    let managers: Vec<_> = settings
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"kustomize-controller".to_string()),
        "{managers:?}"
    );
    w.wait_failed(
        "no-account",
        "ReconciliationFailed",
        "has no 'serviceAccountName'",
    )
    .await;
    w.wait_failed("cloud", "ReconciliationFailed", "provider 'aws'")
        .await;
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn wait_skips_the_kustomization_itself_and_jobs_with_a_ttl() {
    let w = world("ks-selfwait").await;
    let repo = Repo::new("ks-selfwait");
    // The Kustomization applies its own object (as flux-system does) and a Job that never
    // finishes on kwok's nodes but would be deleted by its TTL once it did: Flux waits on neither.
    let itself = format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: self\nspec:\n  interval: 10m\n  prune: true\n  targetNamespace: {ns}\n  path: ./self\n  wait: true\n  timeout: 30s\n  sourceRef:\n    kind: GitRepository\n    name: repo\n",
        ns = w.ns
    );
    repo.write("self/itself.yaml", &itself);
    repo.write(
        "self/job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  ttlSecondsAfterFinished: 600\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: busybox\n",
    );
    repo.write("self/config.yaml", &config_map("settings", "v"));
    let revision = repo.commit("self");
    w.git_repository("repo", &repo).await;
    w.kustomization(
        "self",
        serde_json::json!({"path": "./self", "wait": true, "timeout": "30s"}),
    )
    .await;
    let ks = w.wait_applied("self", &revision).await;
    assert_eq!(condition(&ks, "Healthy").unwrap().status, "True");
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn prune_disabled_is_respected_and_deletion_policies_apply() {
    let w = world("ks-prune").await;
    let repo = Repo::new("ks-prune");
    repo.write(
        "keep/kept.yaml",
        &config_map("kept", "v").replace(
            "metadata:\n",
            "metadata:\n  annotations:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n",
        ),
    );
    repo.write("keep/other.yaml", &config_map("other", "v"));
    // Flux honours the marker as a label too.
    repo.write(
        "keep/labelled.yaml",
        &config_map("labelled", "v").replace(
            "metadata:\n",
            "metadata:\n  labels:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n",
        ),
    );
    repo.write("mirror/mirror.yaml", &config_map("mirror", "v"));
    repo.write("orphan/orphan.yaml", &config_map("orphan", "v"));
    let first = repo.commit("first");
    w.git_repository("repo", &repo).await;
    w.kustomization("keep", serde_json::json!({"path": "./keep"}))
        .await;
    w.kustomization("mirror", serde_json::json!({"path": "./mirror"}))
        .await;
    w.kustomization(
        "orphan",
        serde_json::json!({"path": "./orphan", "deletionPolicy": "Orphan"}),
    )
    .await;
    for name in ["keep", "mirror", "orphan"] {
        w.wait_applied(name, &first).await;
    }
    // An object not in the inventory is never touched, even with the ownership labels.
    let stranger: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "stranger",
        "labels": {"kustomize.toolkit.fluxcd.io/name": "keep", "kustomize.toolkit.fluxcd.io/namespace": w.ns}}})).unwrap();
    w.config_maps()
        .create(&PostParams::default(), &stranger)
        .await
        .unwrap();

    repo.remove("keep/kept.yaml")
        .remove("keep/other.yaml")
        .remove("keep/labelled.yaml");
    repo.write("keep/new.yaml", &config_map("new", "v"));
    let second = repo.commit("second");
    w.refresh("repo").await;
    w.wait_applied("keep", &second).await;
    testing::wait_gone(&w.config_maps(), "other", T).await;
    assert!(
        w.config_maps().get_opt("kept").await.unwrap().is_some(),
        "prune: disabled is kept"
    );
    assert!(
        w.config_maps().get_opt("labelled").await.unwrap().is_some(),
        "prune: disabled as a label is kept"
    );
    assert!(
        w.config_maps().get_opt("stranger").await.unwrap().is_some(),
        "not in the inventory"
    );

    // MirrorPrune (the default, with prune) deletes what it applied; Orphan leaves it.
    w.kustomizations
        .delete("mirror", &Default::default())
        .await
        .unwrap();
    w.kustomizations
        .delete("orphan", &Default::default())
        .await
        .unwrap();
    testing::wait_gone(&w.kustomizations, "mirror", T).await;
    testing::wait_gone(&w.kustomizations, "orphan", T).await;
    testing::wait_gone(&w.config_maps(), "mirror", T).await;
    assert!(
        w.config_maps().get_opt("orphan").await.unwrap().is_some(),
        "Orphan keeps objects"
    );
    w.done().await;
}

/// Encrypts with the real sops binary, as a user would before committing: to an age recipient,
/// or with `--pgp <fingerprint>` to an OpenPGP key of `gnupg_home`.
fn sops_encrypt(
    file_name: &str,
    plain: &str,
    recipient: &[&str],
    gnupg_home: Option<&std::path::Path>,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(file_name);
    std::fs::write(&file, plain).unwrap();
    let mut sops = Command::new(env("SOPS_BIN"));
    if let Some(home) = gnupg_home {
        sops.env("GNUPGHOME", home);
    }
    let out = sops
        .arg("--encrypt")
        .args(recipient)
        .args(
            file_name
                .ends_with("secret.yaml")
                .then_some(["--encrypted-regex", "^(data|stringData)$"])
                .into_iter()
                .flatten(),
        )
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sops: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn sops_encrypted_secrets_are_decrypted_with_age_and_openpgp_keys() {
    use age::secrecy::ExposeSecret;
    let w = world("ks-sops").await;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: s3cr3t\n  port: \"5432\"\ndata:\n  token: dG9rZW4=\n";
    let encrypted = sops_encrypt("secret.yaml", plain, &["--age", &recipient], None);
    assert!(encrypted.contains("ENC[AES256_GCM") && !encrypted.contains("s3cr3t"));
    let key = testing::GpgKey::new("sops <sops@example.com>", "default", "default");
    let (gnupg_home, fingerprint, armored) = (&key.home, key.fingerprint.as_str(), key.secret_armored());
    let openpgp_plain =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\nstringData:\n  key: pgp-s3cr3t\n";
    let openpgp_encrypted = sops_encrypt(
        "secret.yaml",
        openpgp_plain,
        &["--pgp", fingerprint],
        Some(gnupg_home.path()),
    );
    assert!(openpgp_encrypted.contains("BEGIN PGP MESSAGE") && !openpgp_encrypted.contains("pgp-s3cr3t"));
    let repo = Repo::new("ks-sops");
    repo.write("secret.yaml", &encrypted);
    repo.write("api.yaml", &openpgp_encrypted);
    // Files a secretGenerator reads: a dotenv file (OpenPGP) and a binary one (age).
    let age = ["--age", recipient.as_str()];
    repo.write(
        "app.env",
        &sops_encrypt(
            "app.env",
            "USER=admin\nPASSWORD=env-s3cr3t\n",
            &["--pgp", fingerprint],
            Some(gnupg_home.path()),
        ),
    );
    repo.write(
        "token.bin",
        &sops_encrypt("token.bin", "bin-s3cr3t\n", &age, None),
    );
    repo.write(
        "kustomization.yaml",
        "resources: [secret.yaml, api.yaml]\nsecretGenerator:\n- name: app\n  envs: [app.env]\n  files: [token=token.bin]\n  options: {disableNameSuffixHash: true}\n",
    );
    let revision = repo.commit("encrypted secrets");
    let keys: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "sops-age"},
        "stringData": {"identity.agekey": identity.to_string().expose_secret(), "sops.asc": armored}}))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &keys)
        .await
        .unwrap();
    w.git_repository("repo", &repo).await;
    w.kustomization("plain", serde_json::json!({})).await;
    w.wait_failed("plain", "BuildFailed", "SOPS encrypted").await;
    w.kustomizations
        .delete("plain", &Default::default())
        .await
        .unwrap();
    testing::wait_gone(&w.kustomizations, "plain", T).await;
    w.kustomization(
        "decrypted",
        serde_json::json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}}),
    )
    .await;
    w.wait_applied("decrypted", &revision).await;
    let secret = Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .get("db")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["password"].0, b"s3cr3t");
    assert_eq!(data["port"].0, b"5432");
    assert_eq!(data["token"].0, b"token");
    let api = Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .get("api")
        .await
        .unwrap();
    assert_eq!(api.data.unwrap()["key"].0, b"pgp-s3cr3t");
    let generated = Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .get("app")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(generated["USER"].0, b"admin");
    assert_eq!(generated["PASSWORD"].0, b"env-s3cr3t");
    assert_eq!(generated["token"].0, b"bin-s3cr3t\n");
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_crd_and_its_custom_resource_apply_in_one_kustomization() {
    let w = world("ks-crd").await;
    // A group of its own per test: CRDs are cluster-wide.
    let group = format!("{}.example.com", w.ns);
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  names: {{kind: Widget, plural: widgets}}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
    );
    let widget =
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: gadget\nspec:\n  size: 3\n");
    let repo = Repo::new("ks-crd");
    repo.write("crd.yaml", &crd).write("widget.yaml", &widget);
    let revision = repo.commit("crd and cr");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({})).await;
    let ks = w.wait_applied("app", &revision).await;
    let ids: Vec<String> = ks
        .status
        .unwrap()
        .inventory
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(
        ids.contains(&format!("{}_gadget_{group}_Widget", w.ns)),
        "{ids:?}"
    );
    assert!(
        ids.contains(&format!(
            "_widgets.{group}_apiextensions.k8s.io_CustomResourceDefinition"
        )),
        "{ids:?}"
    );
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(w.client.clone());
    crds.delete(&format!("widgets.{group}"), &Default::default())
        .await
        .ok();
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn ignore_rules_history_and_watched_configs() {
    let w = world("ks-ignore").await;
    let repo = Repo::new("ks-ignore");
    repo.write("deploy.yaml", DEPLOYMENT);
    repo.write("cm.yaml", COLOR_SETTINGS);
    let revision = repo.commit("app");
    w.color_vars(serde_json::json!({"reconcile.fluxcd.io/watch": "Enabled"}))
        .await;
    w.git_repository("repo", &repo).await;
    w.kustomization(
        "app",
        serde_json::json!({
            "ignore": [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment", "name": "web"}}],
            "postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]},
        }),
    )
    .await;
    let ks = w.wait_applied("app", &revision).await;
    let history = ks.status.unwrap().history.unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].digest.starts_with("sha256:"), "{history:?}");
    assert_eq!(history[0].last_reconciled_status, "ReconciliationSucceeded");
    assert_eq!(history[0].metadata.as_ref().unwrap()["revision"], revision);

    // A scaler changes replicas: an ignored field, so it is not corrected.
    let deployments: Api<Deployment> = Api::namespaced(w.client.clone(), &w.ns);
    deployments
        .patch(
            "web",
            &PatchParams::apply("autoscaler").force(),
            &Patch::Apply(
                serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 4}}),
            ),
        )
        .await
        .unwrap();

    // The watched ConfigMap changes: the Kustomization reconciles at once (its interval is 10m).
    w.set_color("green").await;
    let settings = testing::wait_for(&w.config_maps(), "settings", T, |c| {
        c.data.as_ref().is_some_and(|d| d["color"] == "green")
    })
    .await;
    assert_eq!(settings.data.unwrap()["color"], "green");
    let replicas = deployments.get("web").await.unwrap().spec.unwrap().replicas;
    assert_eq!(replicas, Some(4), "an ignored field keeps its live value");
    // The status (with the history) is written after the apply the test just saw.
    let ks = testing::wait_for(&w.kustomizations, "app", T, |k: &Kustomization| {
        k.status
            .as_ref()
            .and_then(|s| s.history.as_ref())
            .is_some_and(|h| h.len() == 2)
    })
    .await;
    let history = ks.status.unwrap().history.unwrap();
    assert_ne!(
        history[0].digest, history[1].digest,
        "a new build digest is a new snapshot: {history:?}"
    );
    w.done().await;
}

/// `--watch-configs-label-selector` picks the ConfigMaps and Secrets whose changes reconcile the
/// Kustomizations that read them at once; Flux's DisableConfigWatchers gate turns that off, and a
/// change waits for the next reconcile.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn watched_configs_follow_the_label_selector_and_the_gate() {
    for (prefix, selector) in [("ks-selector", Some("team=web")), ("ks-unwatched", None)] {
        let w = world_with(prefix, |settings, _| {
            settings.watch_configs = selector.map(str::to_string);
        })
        .await;
        let repo = Repo::new(prefix);
        repo.write("cm.yaml", COLOR_SETTINGS);
        let revision = repo.commit("app");
        w.color_vars(serde_json::json!({"team": "web"})).await;
        w.git_repository("repo", &repo).await;
        w.kustomization(
            "app",
            serde_json::json!({"postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}}),
        )
        .await;
        w.wait_applied("app", &revision).await;
        w.set_color("green").await;
        let green = |c: &ConfigMap| c.data.as_ref().is_some_and(|d| d["color"] == "green");
        if selector.is_none() {
            // Unwatched: nothing reconciles before the 10m interval (a bounded look, the only
            // way to see that something does not happen), until a reconcile is asked for.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let settings = w.config_maps().get("settings").await.unwrap();
            assert!(!green(&settings), "a change of an unwatched ConfigMap reconciled");
            w.request("app").await;
        }
        testing::wait_for(&w.config_maps(), "settings", T, green).await;
        w.done().await;
    }
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_new_revision_cancels_a_pending_health_wait() {
    let w = world("ks-cancel").await;
    let repo = Repo::new("ks-cancel");
    // No node matches: the Deployment never becomes Available, the wait would last 10 minutes.
    let stuck = DEPLOYMENT.replace(
        "      containers:",
        "      nodeSelector:\n        nowhere: \"true\"\n      containers:",
    );
    repo.write("deployment.yaml", &stuck);
    repo.commit("stuck");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({"wait": true, "timeout": "10m"}))
        .await;
    testing::wait_for(&w.kustomizations, "app", T, |k: &Kustomization| {
        condition(k, "Healthy").is_some_and(|c| c.status == "Unknown")
    })
    .await;
    // The fix lands while the controller waits: it is applied well before the timeout.
    repo.write("deployment.yaml", DEPLOYMENT);
    let fixed = repo.commit("fix");
    w.refresh("repo").await;
    let ks = w.wait_applied("app", &fixed).await;
    assert_eq!(condition(&ks, "Healthy").unwrap().status, "True");
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn health_check_exprs_decide_health_and_invalid_ones_stall() {
    let w = world("ks-cel").await;
    let repo = Repo::new("ks-cel");
    for (dir, state) in [("ok", "yes"), ("broken", "broken")] {
        repo.write(
            &format!("{dir}/cm.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {dir}\ndata:\n  ready: \"{state}\"\n"
            ),
        );
    }
    let revision = repo.commit("cel");
    w.git_repository("repo", &repo).await;
    let exprs = serde_json::json!([{"apiVersion": "v1", "kind": "ConfigMap",
        "current": "data.ready == 'yes'", "failed": "data.ready == 'broken'"}]);
    for name in ["ok", "broken"] {
        w.kustomization(
            name,
            serde_json::json!({"path": format!("./{name}"), "wait": true, "timeout": "1m", "healthCheckExprs": exprs}),
        )
        .await;
    }
    w.kustomization(
        "invalid",
        serde_json::json!({"path": "./ok", "wait": true,
            "healthCheckExprs": [{"apiVersion": "v1", "kind": "ConfigMap", "current": "data.(("}]}),
    )
    .await;
    let ok = w.wait_applied("ok", &revision).await;
    assert_eq!(condition(&ok, "Healthy").unwrap().status, "True");
    // `failed` is true: the wait fails fast, well before its one-minute timeout.
    let broken = w.wait_failed("broken", "HealthCheckFailed", "Failed").await;
    assert!(
        ready(&broken).unwrap().message.contains("ConfigMap/"),
        "{:?}",
        ready(&broken)
    );
    let invalid = w.wait_failed("invalid", "InvalidCELExpression", "current").await;
    assert_eq!(condition(&invalid, "Stalled").unwrap().status, "True");
    w.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn fields_applied_with_kubectl_before_adoption_follow_git() {
    let w = world("ks-adopt").await;
    // Someone ran `kubectl apply --server-side` first, with a key Git does not have.
    w.config_maps()
        .patch(
            "settings",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings"}, "data": {"value": "old", "extra": "stale"}})),
        )
        .await
        .unwrap();
    let repo = Repo::new("ks-adopt");
    repo.write("cm.yaml", &config_map("settings", "new"));
    let revision = repo.commit("adopt");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({})).await;
    w.wait_applied("app", &revision).await;
    let cm = w.config_maps().get("settings").await.unwrap();
    let data = cm.data.clone().unwrap();
    assert_eq!(data["value"], "new");
    assert!(
        !data.contains_key("extra"),
        "kubectl's fields were taken over and pruned: {data:?}"
    );
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(!managers.contains(&"kubectl".to_string()), "{managers:?}");
    w.done().await;
}

/// Flux fetches remote bases unless `--no-remote-bases`: a kustomization in the source names a
/// base in another repository on the git server (credentials in the URL, `git::` so kustomize
/// clones it without a first GET), which is cloned at its ref and applied; a new commit there
/// reaches the cluster on the next reconcile.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn remote_bases_are_cloned_at_their_ref() {
    let w = world("ks-remote").await;
    let base = Repo::new("ks-remote-base");
    base.write("app/kustomization.yaml", "resources: [cm.yaml]\n")
        .write("app/cm.yaml", &config_map("from-remote", "v1"));
    base.commit("base v1");
    let with_credentials = base.url().replacen(
        "http://",
        &format!("http://{}:{}@", env("GIT_HTTP_USER"), env("GIT_HTTP_PASSWORD")),
        1,
    );
    // A remote file (an http(s) URL among the resources) is downloaded as kustomize does.
    let file = format!("{}/ks-remote-{}.yaml", env("HELM_REPO_DIR"), w.ns);
    std::fs::write(&file, config_map("from-url", "v1")).unwrap();
    let file_url = format!("{}/ks-remote-{}.yaml", env("HELM_REPO_URL"), w.ns);
    let repo = Repo::new("ks-remote");
    repo.write(
        "deploy/kustomization.yaml",
        &format!("resources:\n- git::{with_credentials}//app?ref=main\n- {file_url}\n- local.yaml\n"),
    )
    .write("deploy/local.yaml", &config_map("local", "v1"));
    let revision = repo.commit("a remote base");
    w.git_repository("repo", &repo).await;
    w.kustomization("app", serde_json::json!({"path": "./deploy"}))
        .await;
    w.wait_applied("app", &revision).await;
    let remote = w.config_maps().get("from-remote").await.unwrap();
    assert_eq!(remote.data.unwrap()["value"], "v1");
    assert!(w.config_maps().get("from-url").await.is_ok());

    base.write("app/cm.yaml", &config_map("from-remote", "v2"));
    base.commit("base v2");
    w.request("app").await;
    testing::wait_for(&w.config_maps(), "from-remote", T, |cm: &ConfigMap| {
        cm.data.as_ref().is_some_and(|d| d["value"] == "v2")
    })
    .await;

    // A ref the base does not have fails the build and names it; nothing is pruned.
    repo.write(
        "deploy/kustomization.yaml",
        &format!("resources:\n- git::{with_credentials}//app?ref=no-such-branch\n- local.yaml\n"),
    );
    repo.commit("a missing ref");
    w.refresh("repo").await;
    let failed = w.wait_failed("app", "BuildFailed", "no-such-branch").await;
    let message = ready(&failed).unwrap().message;
    assert!(!message.contains(&env("GIT_HTTP_PASSWORD")), "{message}");
    assert!(w.config_maps().get("from-remote").await.is_ok());
    std::fs::remove_file(&file).unwrap();
    w.done().await;
}

/// ExternalArtifact sources need Flux's `ExternalArtifact` feature gate, off by default: a
/// Kustomization naming one is refused with Flux's message.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn external_artifact_sources_need_their_feature_gate() {
    let w = world("ks-extart").await;
    w.kustomization(
        "app",
        serde_json::json!({"sourceRef": {"kind": "ExternalArtifact", "name": "generated"}}),
    )
    .await;
    let failed = w
        .wait_failed("app", "AccessDenied", "ExternalArtifact feature gate is disabled")
        .await;
    assert!(condition(&failed, "Stalled").is_some());
    w.done().await;
}

/// The binary itself, started with the args of Flux v2.9's Deployment and again with the
/// multi-tenancy lockdown patch's: it runs, reconciles a Kustomization of its shard (one whose
/// source is missing waits for it), enforces `--no-cross-namespace-refs`, serves
/// controller-runtime's series, and an unknown feature gate stops it, as Flux's does.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn the_binary_runs_with_flux_deployment_and_lockdown_args() {
    let binary = env!("CARGO_BIN_EXE_kustomize-controller");
    let (status, stderr) = testing::refused_start(binary, &["--feature-gates=NoSuchGate=true"]);
    assert!(
        !status.success() && stderr.contains("NoSuchGate"),
        "{status}: {stderr}"
    );

    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, "ks-binary").await;
    let shard = format!("--watch-label-selector=driftless.dev/shard={ns}");
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let lockdown = [
        "--no-cross-namespace-refs=true",
        "--no-remote-bases=true",
        "--default-service-account=default",
    ];
    // Flux's `--events-addr` points at a notification-controller: here a stand-in that keeps
    // what is POSTed to it.
    let (sink, mut posted) = testing::event_sink().await;
    let events_addr = format!("--events-addr=http://{sink}/");
    for (name, extra, source_namespace, reason, words, severity) in [
        (
            "plain",
            &[][..],
            ns.as_str(),
            "ArtifactFailed",
            "not found",
            "info",
        ),
        (
            "locked",
            &lockdown[..],
            "flux-system",
            "AccessDenied",
            "cross-namespace references have been blocked",
            "error",
        ),
    ] {
        let extra: Vec<&str> = extra.iter().copied().chain([shard.as_str()]).collect();
        let running =
            testing::start_with_flux_args(binary, "kustomize-controller", &ns, &extra, &[&events_addr]).await;
        let ks: Kustomization = serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "labels": {"driftless.dev/shard": ns}},
            "spec": {"interval": "10m", "prune": true,
                     "sourceRef": {"kind": "GitRepository", "name": "missing", "namespace": source_namespace}}
        }))
        .unwrap();
        kustomizations.create(&PostParams::default(), &ks).await.unwrap();
        testing::wait_for(
            &kustomizations,
            name,
            Duration::from_secs(60),
            |k: &Kustomization| {
                k.status
                    .as_ref()
                    .and_then(|s| conditions::get(s.conditions.as_deref().unwrap_or_default(), "Ready"))
                    .is_some_and(|c| c.status == "False" && c.reason == reason && c.message.contains(words))
            },
        )
        .await;
        let event = testing::wait_for_posted_event(&mut posted, |e| {
            e["involvedObject"]["name"] == name && e["reason"] == reason
        })
        .await;
        assert_eq!(event["severity"], severity, "{event}");
        assert_eq!(event["reportingController"], "kustomize-controller", "{event}");
        assert_eq!(event["involvedObject"]["kind"], "Kustomization", "{event}");
        assert!(event["message"].as_str().unwrap().contains(words), "{event}");
        let metrics = running.metrics().await;
        assert!(
            metrics.contains(r#"controller_runtime_max_concurrent_reconciles{controller="kustomization"} 4"#)
                && metrics
                    .contains(r#"workqueue_adds_total{name="kustomization",controller="kustomization"}"#),
            "{metrics}"
        );
        drop(running);
    }
    testing::delete_namespace(&client, &ns).await;
}

/// Flux's flags and gates that change how Kustomizations apply, each with its effect:
/// `--sops-age-secret` decrypts for a Kustomization whose `decryption` names no Secret,
/// `--override-manager` takes over another manager's fields (a field removed from Git goes),
/// AdditiveCELDependencyCheck checks a `readyExpr` besides Ready, and without
/// ObjectLevelWorkloadIdentity no ServiceAccount token is issued for a remote cluster.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn flux_flags_and_gates_change_how_kustomizations_apply() {
    use age::secrecy::ExposeSecret;
    let w = world_with("ks-flags", |settings, ns| {
        settings.sops_age_secret = Some((ns.to_string(), "global-age".into()));
        settings.override_managers = vec!["helm".into()];
        settings.additive_ready_expr = true;
        settings.object_level_workload_identity = false;
    })
    .await;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: s3cr3t\n";
    let repo = Repo::new("ks-flags");
    repo.write(
        "sops/secret.yaml",
        &sops_encrypt("secret.yaml", plain, &["--age", &recipient], None),
    )
    .write(
        "owned/shared.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  a: \"1\"\n",
    )
    .write(
        "after/after.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\n",
    );
    let revision = repo.commit("flags");
    let keys: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "global-age"},
        "stringData": {"identity.agekey": identity.to_string().expose_secret()}}))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &keys)
        .await
        .unwrap();
    // A ConfigMap another tool applied first, with a field Git does not have.
    let shared = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shared"}, "data": {"a": "1", "extra": "helm's"}});
    w.config_maps()
        .patch("shared", &PatchParams::apply("helm"), &Patch::Apply(&shared))
        .await
        .unwrap();
    let remote: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "remote"},
        "data": {"provider": "generic", "address": "https://127.0.0.1:1", "serviceAccountName": "default"}}))
    .unwrap();
    w.config_maps()
        .create(&PostParams::default(), &remote)
        .await
        .unwrap();
    w.git_repository("repo", &repo).await;

    w.kustomization(
        "sops",
        serde_json::json!({"path": "./sops", "decryption": {"provider": "sops"}}),
    )
    .await;
    w.kustomization("owned", serde_json::json!({"path": "./owned"}))
        .await;
    w.kustomization("missing", serde_json::json!({"path": "./missing"}))
        .await;
    w.kustomization(
        "after",
        serde_json::json!({"path": "./after", "dependsOn": [{"name": "missing", "readyExpr": "true"}]}),
    )
    .await;
    w.kustomization(
        "remote",
        serde_json::json!({"path": "./after", "kubeConfig": {"configMapRef": {"name": "remote"}}}),
    )
    .await;
    // A tenant's kubeconfig whose exec plugin would run a command in the controller: refused
    // without --insecure-kubeconfig-exec, and the command never runs.
    let marker = std::env::temp_dir().join(format!("{}-exec-ran", w.ns));
    let exec_kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1'}}}}]\n\
         users: [{{name: u, user: {{exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/touch, args: ['{}']}}}}}}]\n\
         contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
        marker.display()
    );
    let exec_secret: Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "exec-kubeconfig"},
        "stringData": {"value": exec_kubeconfig}}))
        .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &exec_secret)
        .await
        .unwrap();
    w.kustomization(
        "exec",
        serde_json::json!({"path": "./after", "kubeConfig": {"secretRef": {"name": "exec-kubeconfig"}}}),
    )
    .await;
    // Without ObjectLevelWorkloadIdentity, decryption through an identity is Flux's gate refusal.
    w.kustomization(
        "kms",
        serde_json::json!({"path": "./sops", "decryption": {"provider": "sops", "serviceAccountName": "kms"}}),
    )
    .await;

    w.wait_applied("sops", &revision).await;
    let secret = Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .get("db")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"s3cr3t");

    w.wait_applied("owned", &revision).await;
    let data = w.config_maps().get("shared").await.unwrap().data.unwrap();
    assert!(
        !data.contains_key("extra"),
        "helm's field is taken over, then removed as Git has it not: {data:?}"
    );

    w.wait_failed("missing", "ArtifactFailed", "not found").await;
    // The readyExpr holds, but with the gate the dependency must be Ready too.
    w.wait_failed("after", "DependencyNotReady", "dependency").await;
    w.wait_failed(
        "remote",
        "ReconciliationFailed",
        "ObjectLevelWorkloadIdentity feature gate is not enabled",
    )
    .await;
    w.wait_failed("exec", "ReconciliationFailed", "--insecure-kubeconfig-exec")
        .await;
    assert!(!marker.exists(), "the kubeconfig's exec command ran");
    w.wait_failed(
        "kms",
        "FeatureGateDisabled",
        "to use spec.decryption.serviceAccountName for decryption authentication please enable the ObjectLevelWorkloadIdentity feature gate",
    )
    .await;
    w.done().await;
}

/// Flux's multi-tenancy lockdown (`--no-cross-namespace-refs`, `--default-service-account`) as a
/// tenant would try to get out of its namespace: a source of another namespace is refused by
/// name; without `serviceAccountName` the apply runs as the namespace's `default` account,
/// which may write its own namespace and nothing else (another namespace's objects, through
/// `targetNamespace` or a namespace in the manifest, and cluster-scoped objects are forbidden).
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_locked_down_tenant_cannot_leave_its_namespace() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let w = world_with("ks-tenant", |settings, _| {
        settings.no_cross_namespace_refs = true;
        settings.default_service_account = "default".into();
    })
    .await;
    let other = testing::namespace(&w.client, "ks-tenant-other").await;
    // The tenant's account may edit its own namespace, as a platform team grants it.
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tenant-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": w.ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let repo = Repo::new("ks-tenant");
    repo.write("own/cm.yaml", &config_map("own", "v"))
        .write(
            "elsewhere/cm.yaml",
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: escaped\n  namespace: {other}\ndata:\n  k: v\n"),
        )
        .write(
            "cluster/role.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: tenant-escape\nrules: []\n",
        );
    let revision = repo.commit("tenant");
    w.git_repository("repo", &repo).await;
    w.kustomization("own", serde_json::json!({"path": "./own"})).await;
    // The manifest's own namespace, kept without a targetNamespace.
    w.kustomization(
        "elsewhere",
        serde_json::json!({"path": "./elsewhere", "targetNamespace": null}),
    )
    .await;
    w.kustomization(
        "retargeted",
        serde_json::json!({"path": "./own", "targetNamespace": other}),
    )
    .await;
    w.kustomization("cluster", serde_json::json!({"path": "./cluster"}))
        .await;
    w.kustomization(
        "foreign-source",
        serde_json::json!({"path": "./own", "sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": other}}),
    )
    .await;

    w.wait_applied("own", &revision).await;
    for name in ["elsewhere", "retargeted", "cluster"] {
        let ks = w.wait_failed(name, "ReconciliationFailed", "forbidden").await;
        assert!(
            ready(&ks)
                .unwrap()
                .message
                .contains(&format!("system:serviceaccount:{}:default", w.ns)),
            "{name}: {:?}",
            ready(&ks)
        );
    }
    w.wait_failed(
        "foreign-source",
        "AccessDenied",
        &format!("can't access 'GitRepository/{other}/repo', cross-namespace references have been blocked"),
    )
    .await;
    assert!(
        Api::<ConfigMap>::namespaced(w.client.clone(), &other)
            .get_opt("escaped")
            .await
            .unwrap()
            .is_none()
    );
    testing::delete_namespace(&w.client, &other).await;
    w.done().await;
}

/// Remote bases the controller cannot or may not fetch fail the build naming them, and leave
/// what was applied: over SSH (the controller has no keys for remote bases, as Flux's has
/// none) and any remote with `--no-remote-bases` (Flux's multi-tenancy lockdown).
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn remote_bases_over_ssh_or_when_refused_fail_by_name() {
    let w = world_with("ks-noremote", |settings, _| settings.no_remote_bases = true).await;
    let base = Repo::new("ks-noremote-base");
    base.write("app/kustomization.yaml", "resources: [cm.yaml]\n")
        .write("app/cm.yaml", &config_map("from-remote", "v1"));
    base.commit("base");
    let repo = Repo::new("ks-noremote");
    repo.write(
        "http/kustomization.yaml",
        &format!("resources:\n- {}//app?ref=main\n", base.url()),
    )
    .write(
        "ssh/kustomization.yaml",
        &format!("resources:\n- {}//app?ref=main\n", base.0.ssh_url()),
    );
    repo.commit("remote bases");
    w.git_repository("repo", &repo).await;
    w.kustomization("http", serde_json::json!({"path": "./http"}))
        .await;
    let failed = w.wait_failed("http", "BuildFailed", "remote").await;
    let message = ready(&failed).unwrap().message;
    assert!(message.contains(&base.0.name), "{message}");
    assert!(w.config_maps().get_opt("from-remote").await.unwrap().is_none());
    w.done().await;

    let w = world("ks-sshremote").await;
    w.git_repository("repo", &repo).await;
    w.kustomization("ssh", serde_json::json!({"path": "./ssh"})).await;
    let failed = w.wait_failed("ssh", "BuildFailed", &base.0.name).await;
    let message = ready(&failed).unwrap().message;
    assert!(message.contains("SSH URLs need a secretRef"), "{message}");
    assert!(
        w.config_maps().get_opt("from-remote").await.unwrap().is_none(),
        "{:?}",
        ready(&failed)
    );
    w.done().await;
}

/// Flux's build, not kustomize's CLI defaults: files anywhere in the artifact may be read
/// (load restrictions off) but nothing outside it; `commonMetadata` lands on each object's own
/// metadata only (a pod template is untouched, so no rollout); `buildMetadata` reaches
/// kustomize (origin annotations); with StrictPostBuildSubstitutions off, an unset variable is
/// empty instead of an error.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn flux_build_semantics_hold_in_the_controller() {
    let w = world("ks-build").await;
    let repo = Repo::new("ks-build");
    repo.write(
        "common/patch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n",
    )
    .write("apps/prod/deployment.yaml", DEPLOYMENT)
    .write(
        "apps/prod/kustomization.yaml",
        "resources: [deployment.yaml]\npatches:\n- path: ../../common/patch.yaml\n",
    )
    .write(
        "escape/kustomization.yaml",
        "resources: [../../../../../../../../etc/hostname]\n",
    )
    .write(
        "vars/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vars\ndata:\n  region: \"${region}\"\n",
    );
    let revision = repo.commit("build semantics");
    w.git_repository("repo", &repo).await;
    w.kustomization(
        "prod",
        serde_json::json!({"path": "./apps/prod",
            "commonMetadata": {"labels": {"team": "web"}, "annotations": {"owner": "platform"}},
            "buildMetadata": ["originAnnotations"]}),
    )
    .await;
    w.kustomization("escape", serde_json::json!({"path": "./escape"}))
        .await;
    // Decryption through a KMS identity needs a cloud: refused by field name, not ignored
    // (with ObjectLevelWorkloadIdentity on, as here; without it Flux's gate refusal comes first).
    w.kustomization(
        "kms",
        serde_json::json!({"path": "./vars", "decryption": {"provider": "sops", "serviceAccountName": "kms"}}),
    )
    .await;
    w.wait_applied("prod", &revision).await;
    let web = Api::<Deployment>::namespaced(w.client.clone(), &w.ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.as_ref().unwrap().replicas,
        Some(2),
        "the patch outside the path applies"
    );
    assert_eq!(web.metadata.labels.as_ref().unwrap()["team"], "web");
    let annotations = web.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["owner"], "platform");
    assert!(
        annotations["config.kubernetes.io/origin"].contains("path: deployment.yaml"),
        "{annotations:?}"
    );
    let template = web.spec.unwrap().template.metadata.unwrap();
    assert!(
        !template.labels.unwrap_or_default().contains_key("team")
            && !template.annotations.unwrap_or_default().contains_key("owner"),
        "commonMetadata stays off the pod template"
    );
    w.wait_failed("escape", "BuildFailed", "etc/hostname").await;
    w.wait_failed(
        "kms",
        "BuildFailed",
        "spec.decryption.serviceAccountName (KMS workload identity) is not supported",
    )
    .await;
    w.done().await;

    let w = world_with("ks-lenient", |settings, _| settings.strict_substitutions = false).await;
    w.git_repository("repo", &repo).await;
    w.kustomization(
        "vars",
        serde_json::json!({"path": "./vars", "postBuild": {"substitute": {"other": "x"}}}),
    )
    .await;
    w.wait_applied("vars", &revision).await;
    let data = w.config_maps().get("vars").await.unwrap().data.unwrap();
    assert_eq!(data["region"], "");
    w.done().await;
}

/// A Kustomization whose source is a Bucket: objects uploaded are applied, a changed object is
/// applied again, a deleted one is pruned.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_bucket_source_is_applied_changed_and_pruned() {
    let w = world("ks-bucket").await;
    let endpoint = env("S3_ENDPOINT");
    let s3 = testing::S3Bucket::create(&w.ns).await;
    s3.put("deploy/first.yaml", &config_map("first", "v1")).await;
    s3.put("deploy/second.yaml", &config_map("second", "v1")).await;
    let keys: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "s3-keys"},
        "stringData": {"accesskey": env("S3_ACCESS_KEY"), "secretkey": env("S3_SECRET_KEY")}}))
    .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &w.ns)
        .create(&PostParams::default(), &keys)
        .await
        .unwrap();
    let buckets: Api<driftless_api::source::Bucket> = Api::namespaced(w.client.clone(), &w.ns);
    let source: driftless_api::source::Bucket = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "Bucket", "metadata": {"name": "objects"},
        "spec": {"endpoint": endpoint, "insecure": true, "bucketName": w.ns, "interval": "10m",
            "secretRef": {"name": "s3-keys"}}}))
    .unwrap();
    buckets.create(&PostParams::default(), &source).await.unwrap();
    w.kustomization(
        "app",
        serde_json::json!({"path": "./deploy", "sourceRef": {"kind": "Bucket", "name": "objects"}}),
    )
    .await;
    let revision_of = |b: &driftless_api::source::Bucket| {
        b.status
            .as_ref()
            .and_then(|s| s.artifact.as_ref())
            .map(|a| a.revision.clone())
    };
    let first = testing::wait_for(&buckets, "objects", T, |b| revision_of(b).is_some()).await;
    w.wait_applied("app", &revision_of(&first).unwrap()).await;
    assert!(w.config_maps().get_opt("second").await.unwrap().is_some());

    s3.put("deploy/first.yaml", &config_map("first", "v2")).await;
    s3.delete("deploy/second.yaml").await;
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: "changed"}}});
    buckets
        .patch("objects", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let second = testing::wait_for(&buckets, "objects", T, |b| revision_of(b) != revision_of(&first)).await;
    w.wait_applied("app", &revision_of(&second).unwrap()).await;
    testing::wait_gone(&w.config_maps(), "second", T).await;
    let data = w.config_maps().get("first").await.unwrap().data.unwrap();
    assert_eq!(data["value"], "v2");
    w.done().await;
}

/// Flux's reference layout (fluxcd/flux2-kustomize-helm-example): one repository whose
/// `clusters/staging` holds an ArtifactGenerator splitting it into `infrastructure` and `apps`
/// ExternalArtifacts, and the Kustomizations that consume them (with the ExternalArtifact gate,
/// as `flux install --components-extra=source-watcher` enables it). Bootstrapped from one
/// Kustomization of `clusters/staging`; a commit that touches only `apps/` changes the apps
/// artifact and leaves the infrastructure artifact, and what was applied from it, as they were.
#[tokio::test]
#[ignore = "needs the testenv control plane and git server (hack/testenv.sh)"]
async fn an_artifact_generator_splits_a_monorepo_as_fluxs_example() {
    let w = world_with("ks-ag", |settings, _| settings.allow_external_artifact = true).await;
    let ns = w.ns.clone();
    let kustomization = |name: &str, path: &str, artifact: &str, depends: Option<&str>| {
        let depends = depends
            .map(|d| format!("  dependsOn:\n    - name: {d}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\nspec:\n{depends}  interval: 1h\n  retryInterval: 2s\n  timeout: 1m\n  sourceRef:\n    kind: ExternalArtifact\n    name: {artifact}\n  path: {path}\n  prune: true\n  wait: true\n  targetNamespace: {ns}\n"
        )
    };
    let generator = "apiVersion: source.extensions.fluxcd.io/v1beta1
kind: ArtifactGenerator
metadata:
  name: flux-system
spec:
  sources:
    - alias: monorepo
      kind: GitRepository
      name: flux-system
  artifacts:
    - name: infrastructure
      originRevision: \"@monorepo\"
      copy:
        - from: \"@monorepo/infrastructure/**\"
          to: \"@artifact/\"
    - name: apps
      originRevision: \"@monorepo\"
      copy:
        - from: \"@monorepo/apps/base/**\"
          to: \"@artifact/base/\"
        - from: \"@monorepo/apps/staging/**\"
          to: \"@artifact/staging/\"
";
    let kustomize = |resources: &str| {
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}")
    };
    let staging_values = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: podinfo\ndata:\n  value: \"{value}\"\n")
    };
    let repo = Repo::new("ks-ag");
    repo.write("clusters/staging/artifacts.yaml", generator)
        .write(
            "clusters/staging/infrastructure.yaml",
            &format!(
                "{}---\n{}",
                kustomization("infra-controllers", "./controllers", "infrastructure", None),
                kustomization(
                    "infra-configs",
                    "./configs",
                    "infrastructure",
                    Some("infra-controllers")
                )
            ),
        )
        .write(
            "clusters/staging/apps.yaml",
            &kustomization("apps", "./staging", "apps", Some("infra-configs")),
        )
        .write(
            "infrastructure/controllers/kustomization.yaml",
            &kustomize("  - controllers.yaml\n"),
        )
        .write(
            "infrastructure/controllers/controllers.yaml",
            &config_map("cert-manager", "v1"),
        )
        .write(
            "infrastructure/configs/kustomization.yaml",
            &kustomize("  - issuers.yaml\n"),
        )
        .write(
            "infrastructure/configs/issuers.yaml",
            &config_map("cluster-issuers", "v1"),
        )
        .write(
            "apps/base/podinfo/kustomization.yaml",
            &kustomize("  - release.yaml\n"),
        )
        .write("apps/base/podinfo/release.yaml", &config_map("podinfo", "base"))
        .write(
            "apps/staging/kustomization.yaml",
            &format!(
                "{}patches:\n  - path: podinfo-values.yaml\n",
                kustomize("  - ../base/podinfo\n")
            ),
        )
        .write("apps/staging/podinfo-values.yaml", &staging_values("staging"));
    repo.commit("monorepo");
    w.git_repository("flux-system", &repo).await;
    w.kustomization(
        "flux-system",
        serde_json::json!({"path": "./clusters/staging", "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}),
    )
    .await;

    let value_of = |cm: &ConfigMap| cm.data.as_ref().and_then(|d| d.get("value").cloned());
    testing::wait_for(&w.config_maps(), "podinfo", T, |cm| {
        value_of(cm).as_deref() == Some("staging")
    })
    .await;
    for name in ["cert-manager", "cluster-issuers"] {
        assert!(w.config_maps().get_opt(name).await.unwrap().is_some(), "{name}");
    }
    let artifacts: Api<driftless_api::source::ExternalArtifact> = Api::namespaced(w.client.clone(), &ns);
    let artifact_of = |ea: &driftless_api::source::ExternalArtifact| {
        ea.status.as_ref().and_then(|s| s.artifact.clone()).unwrap()
    };
    let infra = artifact_of(&artifacts.get("infrastructure").await.unwrap());
    let apps = artifact_of(&artifacts.get("apps").await.unwrap());
    assert!(infra.revision.starts_with("latest@sha256:"), "{}", infra.revision);
    assert!(
        infra
            .path
            .starts_with(&format!("externalartifact/{ns}/infrastructure/")),
        "{}",
        infra.path
    );
    let applied = |k: &Kustomization| k.status.as_ref().and_then(|s| s.last_applied_revision.clone());
    let infra_applied = applied(&w.kustomizations.get("infra-controllers").await.unwrap());
    assert_eq!(infra_applied.as_deref(), Some(infra.revision.as_str()));
    let generators: Api<driftless_api::source_extensions::ArtifactGenerator> =
        Api::namespaced(w.client.clone(), &ns);
    let generator = generators.get("flux-system").await.unwrap();
    let status = generator.status.unwrap();
    assert_eq!(status.inventory.unwrap_or_default().len(), 2);
    assert_eq!(
        conditions::get(status.conditions.as_deref().unwrap_or_default(), "Ready").map(|c| c.message.clone()),
        Some("reconciliation succeeded, generated 2 artifact(s)".to_string())
    );

    // A commit that touches only apps/.
    repo.write("apps/staging/podinfo-values.yaml", &staging_values("staging-v2"));
    let commit = repo.commit("apps only");
    w.refresh("flux-system").await;
    testing::wait_for(&w.config_maps(), "podinfo", T, |cm| {
        value_of(cm).as_deref() == Some("staging-v2")
    })
    .await;
    let apps_after = artifact_of(&artifacts.get("apps").await.unwrap());
    assert_ne!(apps_after.digest, apps.digest);
    let infra_after = artifact_of(&artifacts.get("infrastructure").await.unwrap());
    assert_eq!(
        (&infra_after.revision, &infra_after.digest),
        (&infra.revision, &infra.digest)
    );
    // The origin revision follows the repository (as Flux's), without waking the consumers.
    assert_eq!(
        apps_after
            .metadata
            .as_ref()
            .and_then(|m| m.get("org.opencontainers.image.revision")),
        Some(&commit)
    );
    assert_eq!(
        applied(&w.kustomizations.get("infra-controllers").await.unwrap()),
        infra_applied
    );
    w.done().await;
}

/// A HelmRelease whose `chartRef` is an ExternalArtifact an ArtifactGenerator made from a chart
/// directory in Git (with the ExternalArtifact gate, as source-watcher's install turns it on):
/// installed, and upgraded when the chart's values change in Git.
#[tokio::test]
#[ignore = "needs the testenv control plane, git server and helm (hack/testenv.sh)"]
async fn a_helm_release_installs_a_chart_from_a_generated_external_artifact() {
    let w = world_with("ks-ag-helm", |settings, _| {
        settings.allow_external_artifact = true
    })
    .await;
    let ns = w.ns.clone();
    let repo = Repo::new("ks-ag-helm");
    let values = |v: &str| format!("value: {v}\n");
    repo.write("charts/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 0.1.0\n")
        .write("charts/app/values.yaml", &values("one"))
        .write(
            "charts/app/templates/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  value: {{ .Values.value | quote }}\n",
        )
        .write("README.md", "# not part of the chart\n");
    repo.commit("chart");
    w.git_repository("repo", &repo).await;
    let generators: Api<driftless_api::source_extensions::ArtifactGenerator> =
        Api::namespaced(w.client.clone(), &ns);
    let generator = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.extensions.fluxcd.io/v1beta1", "kind": "ArtifactGenerator",
        "metadata": {"name": "charts"},
        "spec": {"sources": [{"alias": "repo", "kind": "GitRepository", "name": "repo"}],
            "artifacts": [{"name": "app-chart", "revision": "@repo",
                "copy": [{"from": "@repo/charts/app", "to": "@artifact/"}]}]}
    }))
    .unwrap();
    generators
        .create(&PostParams::default(), &generator)
        .await
        .unwrap();
    let releases: Api<driftless_api::helm::HelmRelease> = Api::namespaced(w.client.clone(), &ns);
    let release = serde_json::from_value(serde_json::json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": "app"},
        "spec": {"interval": "10m", "chartRef": {"kind": "ExternalArtifact", "name": "app-chart"}}
    }))
    .unwrap();
    releases.create(&PostParams::default(), &release).await.unwrap();
    let value_of = |cm: &ConfigMap| cm.data.as_ref().and_then(|d| d.get("value").cloned());
    testing::wait_for(&w.config_maps(), "app-settings", T, |cm| {
        value_of(cm).as_deref() == Some("one")
    })
    .await;
    // The artifact's revision is the Git revision it was made from (`revision: "@repo"`).
    let artifacts: Api<driftless_api::source::ExternalArtifact> = Api::namespaced(w.client.clone(), &ns);
    let artifact = artifacts
        .get("app-chart")
        .await
        .unwrap()
        .status
        .unwrap()
        .artifact
        .unwrap();
    assert!(
        artifact.revision.starts_with("main@sha1:"),
        "{}",
        artifact.revision
    );

    repo.write("charts/app/values.yaml", &values("two"));
    repo.commit("values");
    w.refresh("repo").await;
    testing::wait_for(&w.config_maps(), "app-settings", T, |cm| {
        value_of(cm).as_deref() == Some("two")
    })
    .await;
    w.done().await;
}
