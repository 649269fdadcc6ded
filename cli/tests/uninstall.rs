//! `install`, `check` and `uninstall`: workloads the toolkit manages survive the uninstall.
//! Its own test binary, because uninstalling deletes the toolkit CRDs cluster-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{T, configmap, env, ok, stderr, world};
use driftless_runtime::testing::{self, GitRepo};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn install_check_and_uninstall_keep_managed_workloads() {
    let (client, ns, controllers) = world("cli-uninstall").await;
    let workloads = testing::namespace(&client, "cli-workloads").await;
    let n = ns.as_str();

    let out = ok(&[
        "install",
        "-n",
        n,
        "--components",
        "source-controller,kustomize-controller",
        "--network-policy=false",
        "--timeout",
        "2m",
    ])
    .await;
    assert!(
        stderr(&out).contains("✔ source-controller: deployment ready"),
        "{}",
        stderr(&out)
    );
    let out = ok(&["check", "-n", n]).await;
    let log = stderr(&out);
    assert!(log.contains("✔ kustomize-controller: deployment ready"), "{log}");
    assert!(
        log.contains("kustomizations.kustomize.toolkit.fluxcd.io/v1") && log.contains("all checks passed"),
        "{log}"
    );

    let repo = GitRepo::new("cli-uninstall");
    repo.write("app/settings.yaml", &configmap("settings", "blue"));
    repo.commit("app");
    let url = repo.http_url();
    let (user, password) = (env("GIT_HTTP_USER"), env("GIT_HTTP_PASSWORD"));
    ok(&[
        "create", "secret", "git", "auth", "-n", n, "--url", &url, "-u", &user, "-p", &password,
    ])
    .await;
    ok(&[
        "create",
        "source",
        "git",
        "repo",
        "-n",
        n,
        "--url",
        &url,
        "--branch",
        "main",
        "--secret-ref",
        "auth",
    ])
    .await;
    ok(&[
        "create",
        "kustomization",
        "app",
        "-n",
        n,
        "--source",
        "repo",
        "--path",
        "./app",
        "--prune",
        "--target-namespace",
        &workloads,
    ])
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &workloads);
    testing::wait_for(&configmaps, "settings", T, |_| true).await;

    // Uninstall while the controllers still run: finalizers go first, so nothing is pruned.
    let out = ok(&["uninstall", "-n", n, "--silent", "--timeout", "2m"]).await;
    assert!(stderr(&out).contains("✔ uninstall finished"), "{}", stderr(&out));
    drop(controllers);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(
        crds.get_opt("kustomizations.kustomize.toolkit.fluxcd.io")
            .await
            .unwrap()
            .is_none()
    );
    let namespace = Api::<Namespace>::all(client.clone()).get_opt(n).await.unwrap();
    assert!(
        namespace.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "namespace deleted"
    );
    assert_eq!(
        configmaps.get("settings").await.unwrap().data.unwrap()["color"],
        "blue",
        "workload kept"
    );

    // Leave the cluster as the other tests expect it.
    testing::install_toolkit_crds(&client).await;
}
