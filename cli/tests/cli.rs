//! The `driftless` binary as a user runs it, against the testenv control plane and git server,
//! with the real source-controller and kustomize-controller running in-process and scoped to a
//! fresh namespace per test (`-n <namespace>` on every command).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;

use common::{T, configmap, env, fails, ok, stderr, stdout, world};
use driftless_runtime::testing::{self, GitRepo};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn bootstrap_over_http_into_a_repo_with_content_then_rerun_changes_nothing() {
    let (client, ns, _controllers) = world("cli-boot-http").await;
    let repo = GitRepo::new("cli-boot-http");
    repo.write("apps/hello/configmap.yaml", &configmap("hello", "blue"));
    repo.write(
        "clusters/test/apps.yaml",
        &format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n  namespace: {ns}\n\
spec:\n  interval: 10m\n  prune: true\n  path: ./apps/hello\n  targetNamespace: {ns}\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        ),
    );
    repo.commit("existing content");
    let url = repo.http_url();
    let (user, password) = (env("GIT_HTTP_USER"), env("GIT_HTTP_PASSWORD"));
    let args = [
        "bootstrap",
        "git",
        "-n",
        &ns,
        "--url",
        &url,
        "--username",
        &user,
        "--password",
        &password,
        "--allow-insecure-http",
        "--path",
        "clusters/test",
        "--components",
        "source-controller,kustomize-controller",
        "--silent",
        "--timeout",
        "3m",
    ];

    // Plain HTTP needs the explicit opt-in, before anything is touched.
    let insecure: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--allow-insecure-http")
        .collect();
    let refused = fails(&insecure).await;
    assert!(
        stderr(&refused).contains("--allow-insecure-http"),
        "{}",
        stderr(&refused)
    );

    let out = ok(&args).await;
    let log = stderr(&out);
    assert!(log.contains("✔ bootstrap finished"), "{log}");
    let sync = repo
        .remote_file("clusters/test/flux-system/gotk-sync.yaml")
        .expect("gotk-sync.yaml committed");
    assert!(
        sync.contains(&format!("namespace: {ns}")) && sync.contains("path: ./clusters/test"),
        "{sync}"
    );
    let components = repo
        .remote_file("clusters/test/flux-system/gotk-components.yaml")
        .unwrap();
    assert!(components.contains("kind: CustomResourceDefinition"));
    assert_eq!(
        components.matches("kind: Deployment").count(),
        2,
        "only the selected components"
    );
    assert!(
        repo.remote_file("clusters/test/flux-system/kustomization.yaml")
            .is_some()
    );
    assert!(
        repo.remote_file("apps/hello/configmap.yaml").is_some(),
        "existing content kept"
    );

    // The cluster now manages itself and the existing content from Git.
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("flux-system")
        .await
        .unwrap();
    assert!(secret.data.unwrap().contains_key("password"));
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    testing::wait_for(&configmaps, "hello", T, |_| true).await;

    // Running it again is safe: nothing to commit, nothing to change.
    let head = repo.remote_head();
    let again = ok(&args).await;
    let log = stderr(&again);
    assert!(log.contains("component manifests are up to date"), "{log}");
    assert!(log.contains("sync manifests are up to date"), "{log}");
    assert_eq!(repo.remote_head(), head, "a re-run must not commit");

    let tree = ok(&["tree", "kustomization", "flux-system", "-n", &ns]).await;
    let tree = stdout(&tree);
    assert!(tree.contains(&format!("Kustomization/{ns}/apps")), "{tree}");
    assert!(
        tree.contains(&format!("ConfigMap/{ns}/hello")),
        "nested inventory: {tree}"
    );
    assert!(
        tree.contains("Deployment/") && tree.contains("CustomResourceDefinition/"),
        "{tree}"
    );

    // Another path for the same cluster is refused.
    let mut other = args.to_vec();
    let at = other.iter().position(|a| *a == "clusters/test").unwrap();
    other[at] = "clusters/other";
    let refused = fails(&other).await;
    assert!(stderr(&refused).contains("syncs path"), "{}", stderr(&refused));
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn bootstrap_over_ssh_initialises_an_empty_repo() {
    let (client, ns, _controllers) = world("cli-boot-ssh").await;
    let repo = GitRepo::new("cli-boot-ssh");
    let url = repo.ssh_url();
    let key = env("GIT_SSH_KEY");
    let out = ok(&[
        "bootstrap",
        "git",
        "-n",
        &ns,
        "--url",
        &url,
        "--private-key-file",
        &key,
        "--branch",
        "main",
        "--path",
        "clusters/ssh",
        "--components",
        "source-controller,kustomize-controller",
        "--network-policy=false",
        "--silent",
        "--timeout",
        "3m",
    ])
    .await;
    assert!(stderr(&out).contains("✔ bootstrap finished"), "{}", stderr(&out));
    assert!(
        repo.remote_file("clusters/ssh/flux-system/gotk-sync.yaml")
            .is_some()
    );
    let data = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("flux-system")
        .await
        .unwrap()
        .data
        .unwrap();
    let known_hosts = String::from_utf8(data["known_hosts"].0.clone()).unwrap();
    assert!(known_hosts.starts_with("[127.0.0.1]:"), "{known_hosts}");
    assert!(data.contains_key("identity") && data.contains_key("identity.pub"));
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn create_get_reconcile_suspend_resume_tree_diff_build_export_delete() {
    let (client, ns, _controllers) = world("cli-day2").await;
    let repo = GitRepo::new("cli-day2");
    repo.write("app/settings.yaml", &configmap("settings", "blue"));
    let revision = format!("main@sha1:{}", repo.commit("app"));
    let url = repo.http_url();
    let (user, password) = (env("GIT_HTTP_USER"), env("GIT_HTTP_PASSWORD"));
    let n = ["-n", ns.as_str()];
    let with_ns =
        |args: &[&str]| -> Vec<String> { args.iter().chain(n.iter()).map(|s| s.to_string()).collect() };
    async fn run_ok(args: Vec<String>) -> Output {
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
    async fn run_fails(args: Vec<String>) -> Output {
        fails(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
    }

    // create: --export needs no cluster; otherwise apply and wait.
    let exported = run_ok(with_ns(&[
        "create", "source", "git", "repo", "--url", &url, "--branch", "main", "--export",
    ]))
    .await;
    assert!(stdout(&exported).contains("kind: GitRepository") && stdout(&exported).contains("branch: main"));
    run_ok(with_ns(&[
        "create",
        "secret",
        "git",
        "repo-auth",
        "--url",
        &url,
        "-u",
        &user,
        "-p",
        &password,
    ]))
    .await;
    let created = run_ok(with_ns(&[
        "create",
        "source",
        "git",
        "repo",
        "--url",
        &url,
        "--branch",
        "main",
        "--secret-ref",
        "repo-auth",
    ]))
    .await;
    assert!(
        stderr(&created).contains(&format!("fetched revision: {revision}")),
        "{}",
        stderr(&created)
    );
    let created = run_ok(with_ns(&[
        "create",
        "kustomization",
        "app",
        "--source",
        "GitRepository/repo",
        "--path",
        "./app",
        "--prune",
        "--target-namespace",
        &ns,
    ]))
    .await;
    assert!(
        stderr(&created).contains(&format!("applied revision {revision}")),
        "{}",
        stderr(&created)
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        configmaps.get("settings").await.unwrap().data.unwrap()["color"],
        "blue"
    );

    // get: tables like flux's.
    let get = stdout(&run_ok(with_ns(&["get", "kustomizations"])).await);
    assert!(
        get.starts_with("NAME") && get.contains("REVISION") && get.contains("SUSPENDED"),
        "{get}"
    );
    assert!(
        get.lines()
            .any(|l| l.starts_with("app ") && l.contains("True") && l.contains("main@sha1:")),
        "{get}"
    );
    let all = stdout(&run_ok(with_ns(&["get", "all"])).await);
    assert!(
        all.contains("gitrepository/repo") && all.contains("kustomization/app"),
        "{all}"
    );
    let not_ready = run_ok(with_ns(&[
        "get",
        "sources",
        "git",
        "--status-selector",
        "ready=false",
    ]))
    .await;
    assert!(stdout(&not_ready).is_empty(), "{}", stdout(&not_ready));
    let missing = run_fails(with_ns(&["get", "kustomization", "nope"])).await;
    assert!(stderr(&missing).contains("not found"), "{}", stderr(&missing));

    // reconcile --with-source picks up a new commit.
    repo.write("app/settings.yaml", &configmap("settings", "green"));
    let revision = format!("main@sha1:{}", repo.commit("green"));
    let reconciled = run_ok(with_ns(&["reconcile", "kustomization", "app", "--with-source"])).await;
    let log = stderr(&reconciled);
    assert!(log.contains(&format!("fetched revision {revision}")), "{log}");
    assert!(log.contains(&format!("applied revision {revision}")), "{log}");
    assert_eq!(
        configmaps.get("settings").await.unwrap().data.unwrap()["color"],
        "green"
    );

    // suspend / resume.
    run_ok(with_ns(&["suspend", "kustomization", "app"])).await;
    let get = stdout(&run_ok(with_ns(&["get", "kustomization", "app"])).await);
    assert!(
        get.lines().nth(1).unwrap().split_whitespace().nth(2) == Some("True"),
        "{get}"
    );
    let refused = run_fails(with_ns(&["reconcile", "kustomization", "app"])).await;
    assert!(stderr(&refused).contains("suspended"), "{}", stderr(&refused));
    let resumed = run_ok(with_ns(&["resume", "kustomization", "app"])).await;
    assert!(
        stderr(&resumed).contains("reconciliation completed"),
        "{}",
        stderr(&resumed)
    );

    // tree, export, build.
    let tree = stdout(&run_ok(with_ns(&["tree", "kustomization", "app"])).await);
    assert_eq!(
        tree,
        format!("Kustomization/{ns}/app\n└── ConfigMap/{ns}/settings\n")
    );
    let export = stdout(&run_ok(with_ns(&["export", "kustomization", "app"])).await);
    assert!(
        export.starts_with("---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"),
        "{export}"
    );
    assert!(
        !export.contains("status:") && !export.contains("managedFields"),
        "{export}"
    );
    let local = repo.work.path().join("app");
    let local = local.to_str().unwrap();
    let built = stdout(&run_ok(with_ns(&["build", "kustomization", "app", "--path", local])).await);
    assert!(built.contains("kustomize.toolkit.fluxcd.io/name: app"), "{built}");
    assert!(
        built.contains(&format!("namespace: {ns}")) && built.contains("color: green"),
        "{built}"
    );

    // diff: nothing while in sync; a manual edit shows as drift (exit code 1).
    let clean = run_ok(with_ns(&["diff", "kustomization", "app", "--path", local])).await;
    assert!(stderr(&clean).contains("no changes"), "{}", stderr(&clean));
    configmaps
        .patch(
            "settings",
            &PatchParams::apply("kubectl-edit").force(),
            &Patch::Apply(
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"color": "red"}}),
            ),
        )
        .await
        .unwrap();
    let drift = run_fails(with_ns(&["diff", "kustomization", "app", "--path", local])).await;
    let out = stdout(&drift);
    assert!(
        out.contains(&format!("► ConfigMap/{ns}/settings drifted")),
        "{out}"
    );
    assert!(
        out.contains("-  color: red") && out.contains("+  color: green"),
        "{out}"
    );

    // events and delete.
    let events = stdout(&run_ok(with_ns(&["events", "--for", "Kustomization/app"])).await);
    assert!(events.contains("Kustomization/app"), "{events}");
    run_ok(with_ns(&["delete", "kustomization", "app", "--silent"])).await;
    run_fails(with_ns(&["get", "kustomization", "app"])).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn errors_a_user_can_act_on() {
    // No cluster reachable.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: x\n",
    )
    .unwrap();
    let out = fails(&[
        "get",
        "kustomizations",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ])
    .await;
    assert!(
        stderr(&out).contains("cannot reach the Kubernetes API server"),
        "{}",
        stderr(&out)
    );

    // A generated SSH secret, with known_hosts scanned from the server, printed only.
    let url = format!("{}/nothing.git", env("GIT_SSH_BASE"));
    let out = ok(&[
        "create",
        "secret",
        "git",
        "ssh-auth",
        "--url",
        &url,
        "--ssh-key-algorithm",
        "ed25519",
        "--export",
    ])
    .await;
    let yaml = stdout(&out);
    assert!(
        yaml.contains("identity: |") && yaml.contains("identity.pub: ssh-ed25519"),
        "{yaml}"
    );
    assert!(yaml.contains("known_hosts: |\n    [127.0.0.1]:"), "{yaml}");

    // check --pre passes on the testenv.
    let out = ok(&["check", "--pre"]).await;
    assert!(
        stderr(&out).contains("prerequisites checks passed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn oci_artifacts_pushed_with_credentials_are_pulled_with_secrets_and_applied() {
    let (client, ns, _controllers) = world("cli-oci").await;
    let n = ns.as_str();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.yaml"),
        configmap("oci-settings", "green"),
    )
    .unwrap();
    let repo = ns.clone(); // unique per run
    let token_registry = env("OCI_REGISTRY_TOKEN");
    let (user, password) = (env("OCI_REGISTRY_USER"), env("OCI_REGISTRY_PASSWORD"));
    let creds = format!("{user}:{password}");
    let path = dir.path().to_str().unwrap();
    let pushed = ok(&[
        "push",
        "artifact",
        &format!("oci://{token_registry}/{repo}:1.0.0"),
        "--path",
        path,
        "--source",
        "https://example.com/app",
        "--revision",
        "main@sha1:0123456789abcdef0123456789abcdef01234567",
        "--creds",
        &creds,
        "--insecure-registry",
    ])
    .await;
    let digest = stdout(&pushed).rsplit('@').next().unwrap().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{}", stdout(&pushed));

    // Registry credentials in a docker config Secret, exchanged for a token by the controller.
    let exported = ok(&[
        "create",
        "secret",
        "oci",
        "creds",
        "-n",
        n,
        "--url",
        &token_registry,
        "-u",
        &user,
        "-p",
        &password,
        "--export",
    ])
    .await;
    assert!(stdout(&exported).contains("type: kubernetes.io/dockerconfigjson"));
    ok(&[
        "create",
        "secret",
        "oci",
        "creds",
        "-n",
        n,
        "--url",
        &token_registry,
        "-u",
        &user,
        "-p",
        &password,
    ])
    .await;
    let created = ok(&[
        "create",
        "source",
        "oci",
        "app",
        "-n",
        n,
        "--url",
        &format!("oci://{token_registry}/{repo}"),
        "--tag-semver",
        "1.x",
        "--secret-ref",
        "creds",
        "--insecure",
    ])
    .await;
    assert!(
        stderr(&created).contains(&format!("1.0.0@{digest}")),
        "{}",
        stderr(&created)
    );
    ok(&[
        "create",
        "kustomization",
        "app",
        "-n",
        n,
        "--source",
        "OCIRepository/app",
        "--path",
        "./",
        "--target-namespace",
        n,
        "--prune",
    ])
    .await;
    let cm: ConfigMap = Api::namespaced(client.clone(), n)
        .get("oci-settings")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["color"], "green");

    // A client certificate from a TLS Secret, for the registry that requires one.
    let (ca, cert, key) = (
        env("SOURCES_CA_FILE"),
        env("GIT_CLIENT_CERT"),
        env("GIT_CLIENT_KEY"),
    );
    let half = fails(&[
        "create",
        "secret",
        "tls",
        "half",
        "-n",
        n,
        "--tls-crt-file",
        &cert,
        "--export",
    ])
    .await;
    assert!(stderr(&half).contains("--tls-key-file"), "{}", stderr(&half));
    ok(&[
        "create",
        "secret",
        "tls",
        "client",
        "-n",
        n,
        "--ca-crt-file",
        &ca,
        "--tls-crt-file",
        &cert,
        "--tls-key-file",
        &key,
    ])
    .await;
    let secret: Secret = Api::namespaced(client.clone(), n).get("client").await.unwrap();
    let keys: Vec<_> = secret.data.unwrap().into_keys().collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    let created = ok(&[
        "create",
        "source",
        "oci",
        "app-mtls",
        "-n",
        n,
        "--url",
        &format!("oci://{}/{repo}", env("OCI_REGISTRY_MTLS")),
        "--tag",
        "1.0.0",
        "--cert-ref",
        "client",
    ])
    .await;
    assert!(
        stderr(&created).contains(&format!("1.0.0@{digest}")),
        "{}",
        stderr(&created)
    );
}

#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn helm_repositories_and_charts_are_created_and_listed() {
    let (_client, ns, _controllers) = world("cli-helm").await;
    // podinfo packaged and indexed by the real helm, served by the testenv's Helm repository.
    let dir = std::path::Path::new(&env("HELM_REPO_DIR")).join(&ns);
    std::fs::create_dir_all(&dir).unwrap();
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/charts/podinfo");
    for args in [
        vec![
            "package",
            chart.to_str().unwrap(),
            "--destination",
            dir.to_str().unwrap(),
        ],
        vec!["repo", "index", dir.to_str().unwrap()],
    ] {
        let out = std::process::Command::new(env("HELM_BIN"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let url = format!("{}/{ns}", env("HELM_REPO_URL"));
    let n = ns.as_str();

    let exported = ok(&[
        "create", "source", "helm", "podinfo", "--url", &url, "-n", n, "--export",
    ])
    .await;
    assert!(
        stdout(&exported).contains("kind: HelmRepository"),
        "{}",
        stdout(&exported)
    );
    let created = ok(&["create", "source", "helm", "podinfo", "--url", &url, "-n", n]).await;
    assert!(
        stderr(&created).contains("fetched revision: sha256:"),
        "{}",
        stderr(&created)
    );
    let created = ok(&[
        "create",
        "source",
        "chart",
        "podinfo",
        "--chart",
        "podinfo",
        "--chart-version",
        "6.14.x",
        "--source",
        "HelmRepository/podinfo",
        "-n",
        n,
    ])
    .await;
    assert!(
        stderr(&created).contains("fetched revision: 6.14.1"),
        "{}",
        stderr(&created)
    );
    let listed = ok(&["get", "sources", "chart", "-n", n]).await;
    assert!(
        stdout(&listed).contains("podinfo") && stdout(&listed).contains("6.14.1"),
        "{}",
        stdout(&listed)
    );
    // A HelmRelease from the repository: created, listed, force-upgraded, reset.
    let created = ok(&[
        "create",
        "helmrelease",
        "web",
        "--source",
        "HelmRepository/podinfo",
        "--chart",
        "podinfo",
        "--values-from",
        "ConfigMap/missing",
        "-n",
        n,
        "--export",
    ])
    .await;
    assert!(
        stdout(&created).contains("kind: HelmRelease") && stdout(&created).contains("valuesFrom"),
        "{}",
        stdout(&created)
    );
    let created = ok(&[
        "create",
        "hr",
        "web",
        "--source",
        "HelmRepository/podinfo",
        "--chart",
        "podinfo",
        "-n",
        n,
    ])
    .await;
    assert!(
        stderr(&created).contains("applied revision 6.14.1"),
        "{}",
        stderr(&created)
    );
    let listed = ok(&["get", "helmreleases", "-n", n]).await;
    assert!(
        stdout(&listed).contains("web") && stdout(&listed).contains("Helm install succeeded"),
        "{}",
        stdout(&listed)
    );
    ok(&["reconcile", "helmrelease", "web", "--force", "-n", n]).await;
    let history = std::process::Command::new(env("HELM_BIN"))
        .args(["history", "web", "--namespace", n, "-o", "json"])
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(
        history.as_array().unwrap().len(),
        2,
        "--force upgrades once: {history}"
    );
    ok(&["reconcile", "hr", "web", "--reset", "-n", n]).await;
    let refused = fails(&["reconcile", "source", "helm", "podinfo", "--force", "-n", n]).await;
    assert!(
        stderr(&refused).contains("HelmReleases only"),
        "{}",
        stderr(&refused)
    );
    let refused = fails(&[
        "create",
        "source",
        "chart",
        "x",
        "--chart",
        "x",
        "--source",
        "OCIRepository/repo",
        "-n",
        n,
    ])
    .await;
    assert!(
        stderr(&refused).contains("use HelmRepository, GitRepository or Bucket"),
        "{}",
        stderr(&refused)
    );
}

/// `create source bucket` with keys makes the Secret named after the Bucket and the Bucket, as
/// Flux's CLI does, and waits for its artifact; `get sources bucket` lists it and
/// `reconcile source bucket` picks up a new object.
#[tokio::test]
#[ignore = "needs the testenv (hack/testenv.sh up)"]
async fn a_bucket_source_is_created_listed_and_reconciled() {
    let (client, ns, _controllers) = world("cli-bucket").await;
    let n = ns.as_str();
    let endpoint = env("S3_ENDPOINT");
    let s3 = testing::S3Bucket::create(n).await;
    s3.put("app/settings.yaml", &configmap("settings", "blue")).await;
    let (access, secret) = (env("S3_ACCESS_KEY"), env("S3_SECRET_KEY"));
    let created = ok(&[
        "create",
        "source",
        "bucket",
        "objects",
        "--bucket-name",
        n,
        "--endpoint",
        &endpoint,
        "--insecure",
        "--access-key",
        &access,
        "--secret-key",
        &secret,
        "-n",
        n,
    ])
    .await;
    assert!(stderr(&created).contains("sha256:"), "{}", stderr(&created));
    let keys = Api::<Secret>::namespaced(client.clone(), n)
        .get("objects")
        .await
        .unwrap();
    assert!(keys.data.unwrap().contains_key("accesskey"));
    let listed = ok(&["get", "sources", "bucket", "-n", n]).await;
    assert!(stdout(&listed).contains("objects"), "{}", stdout(&listed));
    let first = stdout(&listed);

    s3.put("app/more.yaml", &configmap("more", "green")).await;
    ok(&["reconcile", "source", "bucket", "objects", "-n", n]).await;
    let listed = ok(&["get", "sources", "bucket", "-n", n]).await;
    assert_ne!(stdout(&listed), first, "a new revision after the new object");
    testing::delete_namespace(&client, n).await;
}

/// `get artifact generators` and `reconcile artifact generator` on source-watcher's kind, as
/// Flux's CLI names them: a generator splitting a repository, listed Ready with its message.
#[tokio::test]
#[ignore = "needs the testenv control plane and git server (hack/testenv.sh)"]
async fn artifact_generators_are_listed_and_reconciled() {
    let (client, ns, _controllers) = world("cli-ag").await;
    let n = ns.as_str();
    let repo = GitRepo::new("cli-ag");
    repo.write("apps/settings.yaml", &configmap("settings", "blue"));
    repo.commit("apps");
    let url = repo.http_url();
    let (user, password) = (env("GIT_HTTP_USER"), env("GIT_HTTP_PASSWORD"));
    ok(&[
        "create",
        "secret",
        "git",
        "repo-auth",
        "--url",
        &url,
        "-u",
        &user,
        "-p",
        &password,
        "-n",
        n,
    ])
    .await;
    ok(&[
        "create",
        "source",
        "git",
        "repo",
        "--url",
        &url,
        "--branch",
        "main",
        "--secret-ref",
        "repo-auth",
        "-n",
        n,
    ])
    .await;
    let generator: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.extensions.fluxcd.io/v1beta1", "kind": "ArtifactGenerator",
        "metadata": {"name": "split", "namespace": n},
        "spec": {"sources": [{"alias": "repo", "kind": "GitRepository", "name": "repo"}],
            "artifacts": [{"name": "apps", "copy": [{"from": "@repo/apps/**", "to": "@artifact/"}]}]}
    }))
    .unwrap();
    let resource = kube::api::ApiResource {
        group: "source.extensions.fluxcd.io".into(),
        version: "v1beta1".into(),
        api_version: "source.extensions.fluxcd.io/v1beta1".into(),
        kind: "ArtifactGenerator".into(),
        plural: "artifactgenerators".into(),
    };
    Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), n, &resource)
        .create(&Default::default(), &generator)
        .await
        .unwrap();
    ok(&["reconcile", "artifact", "generator", "split", "-n", n]).await;
    let listed = stdout(&ok(&["get", "artifact", "generators", "-n", n]).await);
    assert!(
        listed.contains("split") && listed.contains("generated 1 artifact(s)"),
        "{listed}"
    );
    testing::delete_namespace(&client, n).await;
}

/// `kustomize build` keeps kustomize's default load restrictor (a kustomization reads only files
/// in or below its directory) and `--load-restrictor LoadRestrictionsNone` lifts it, as kubectl's
/// flag does.
#[tokio::test]
async fn kustomize_build_reads_files_above_its_directory_only_without_load_restrictions() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("app")).unwrap();
    std::fs::write(root.path().join("common.yaml"), configmap("common", "shared")).unwrap();
    std::fs::write(
        root.path().join("app/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../common.yaml\n",
    )
    .unwrap();
    let dir = root.path().join("app");
    let dir = dir.to_str().unwrap();
    let refused = fails(&["kustomize", "build", dir]).await;
    assert!(
        stderr(&refused).contains("common.yaml' is not in or below"),
        "the load restrictor refuses the file: {}",
        stderr(&refused)
    );
    let built = stdout(
        &ok(&[
            "kustomize",
            "build",
            dir,
            "--load-restrictor",
            "LoadRestrictionsNone",
        ])
        .await,
    );
    assert!(built.contains("name: common"), "{built}");
}
