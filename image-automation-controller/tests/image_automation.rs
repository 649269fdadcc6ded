//! Image automation end to end, against the testenv's registries, git server and control plane:
//! images pushed with tags in several schemes are scanned (ImageRepository), policies pick the
//! expected tags (ImagePolicy), the automation commits them to the fleet repository with a signed
//! commit and the templated message (ImageUpdateAutomation), and source-controller and
//! kustomize-controller roll the Deployment; a second push moves it again. Failures: a registry
//! that refuses the credentials keeps the last good scan; a push the server refuses is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use driftless_api::image::{ImagePolicy, ImageRepository, ImageUpdateAutomation};
use driftless_artifact::oci;
use driftless_runtime::testing::{self, GitRepo, GpgKey};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use oci_client::secrets::RegistryAuth;
use serde_json::json;
use std::{collections::BTreeMap, time::Duration};

const T: Duration = Duration::from_secs(90);

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: source target/testenv/env.sh"))
}

/// Installs `script` as the pre-receive hook of `repo` on the git server.
fn pre_receive_hook(repo: &GitRepo, script: &str) {
    let hook = format!("{}/{}.git/hooks/pre-receive", env("GIT_REPOS_DIR"), repo.name);
    std::fs::write(&hook, script).unwrap();
    std::process::Command::new("chmod")
        .args(["+x", &hook])
        .status()
        .unwrap();
}

/// Pushes a tiny artifact as `<registry>/<repo>:<tag>`.
async fn push(registry: &str, repo: &str, tag: &str, auth: &RegistryAuth) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tag"), tag).unwrap();
    oci::push_dir(
        &oci::client(true),
        &format!("{registry}/{repo}:{tag}"),
        auth,
        dir.path(),
        &oci::PushMetadata::default(),
        "2026-12-02T00:00:00Z",
    )
    .await
    .unwrap();
}

struct World {
    client: Client,
    ns: String,
    _controllers: driftless_testkit::Controllers,
}

async fn world(prefix: &str) -> World {
    driftless_artifact::install_crypto_provider();
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, prefix).await;
    let controllers = driftless_testkit::start_controllers(&client, &ns).await;
    World {
        client,
        ns,
        _controllers: controllers,
    }
}

impl World {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create<K>(&self, value: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(value).unwrap();
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }

    /// Creates the `image.toolkit.fluxcd.io/v1` object `name` of kind `K` with `spec`.
    async fn image<K>(&self, name: &str, spec: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.create::<K>(json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": K::kind(&()),
            "metadata": {"name": name}, "spec": spec,
        }))
        .await;
    }

    /// Waits until automation `name` has pushed or stalled (a transient failure, e.g. a proxy
    /// closing a kept-alive connection, is retried by the controller and waited through).
    async fn pushed_or_failed(&self, name: &str) -> ImageUpdateAutomation {
        testing::wait_for(
            &self.api::<ImageUpdateAutomation>(),
            name,
            T,
            |a: &ImageUpdateAutomation| {
                a.status
                    .as_ref()
                    .and_then(|s| s.last_push_commit.as_deref())
                    .is_some()
                    || a.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Stalled" && c.status == "True")
                    })
            },
        )
        .await
    }

    async fn secret(&self, name: &str, data: BTreeMap<&str, String>) {
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
        self.api::<Secret>()
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": secret.string_data})),
            )
            .await
            .unwrap();
    }

    async fn request_reconcile<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let now = format!("{:?}", std::time::SystemTime::now());
        self.api::<K>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": now}}})),
            )
            .await
            .unwrap();
    }
}

fn ready<S: driftless_api::meta::ReconcileStatus>(status: Option<&S>) -> Option<(String, String, String)> {
    status
        .and_then(|s| s.conditions().iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

const TEMPLATE: &str = r#"Automated image update by {{ .AutomationObject.Name }} ({{ .Values.cluster }})

{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}:
{{- range $_, $change := $changes }}
    {{ $change.OldValue }} -> {{ $change.NewValue }}
{{- end }}
{{ end -}}
"#;

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn pushed_images_are_committed_signed_and_rolled_out() {
    let w = world("imgauto").await;
    let registry = env("OCI_REGISTRY");
    let image_repo = format!("app-{:08x}", rand::random::<u32>());
    let image = format!("{registry}/{image_repo}");
    for tag in [
        "1.0.0",
        "1.1.0-rc.1",
        "0.9.0",
        "sha256-abc.sig",
        "main-1700000100",
        "main-1700000900",
    ] {
        push(&registry, &image_repo, tag, &RegistryAuth::Anonymous).await;
    }

    // The fleet repository: a Deployment and a kustomization with markers, formatted as people
    // write them (comments, quoting, blank lines) so a diff of whole files shows what moved.
    let ns = &w.ns;
    let deployment = format!(
        r#"# The app, kept current by image automation.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: {ns}   # same namespace as the test
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app}}
  template:
    metadata:
      labels:
        app: app

    spec:
      containers:
        - name: app
          image: "{image}:0.9.0" # {{"$imagepolicy": "{ns}:app"}}
          ports: [{{containerPort: 8080}}]
"#
    );
    let kustomization = format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  - name: build
    newName: {image} # {{"$imagepolicy": "{ns}:builds:name"}}
    newTag: main-1700000000 # {{"$imagepolicy": "{ns}:builds:tag"}}
"#
    );
    let fleet = GitRepo::new("fleet");
    fleet
        .write("apps/deployment.yaml", &deployment)
        .write("apps/kustomization.yaml", &kustomization)
        .commit("initial");
    driftless_testkit::git_source(&w.client, ns, "fleet", &fleet, "2s").await;
    w.create::<driftless_api::kustomize::Kustomization>(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps"},
        "spec": {"interval": "10m", "path": "./apps", "prune": true,
                 "sourceRef": {"kind": "GitRepository", "name": "fleet"}},
    }))
    .await;

    w.image::<ImageRepository>("app", json!({"image": image, "interval": "2s", "insecure": true}))
        .await;
    w.image::<ImagePolicy>(
        "app",
        json!({"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": ">=0.9.0"}},
                 "digestReflectionPolicy": "IfNotPresent"}),
    )
    .await;
    w.image::<ImagePolicy>(
        "builds",
        json!({"imageRepositoryRef": {"name": "app"}, "policy": {"numerical": {"order": "asc"}},
                 "filterTags": {"pattern": "^main-(?P<ts>[0-9]+)$", "extract": "$ts"}}),
    )
    .await;

    let repos = w.api::<ImageRepository>();
    let scanned = testing::wait_for(&repos, "app", T, |r: &ImageRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.last_scan_result.as_ref())
            .is_some_and(|s| s.tag_count == 5)
    })
    .await;
    let (_, _, message) = ready(scanned.status.as_ref()).unwrap();
    let status = scanned.status.unwrap();
    assert_eq!(status.canonical_image_name.as_deref(), Some(image.as_str()));
    let scan = status.last_scan_result.unwrap();
    assert_eq!(
        scan.latest_tags.unwrap(),
        [
            "main-1700000900",
            "main-1700000100",
            "1.1.0-rc.1",
            "1.0.0",
            "0.9.0"
        ],
        "the .sig tag is excluded, the rest sorted descending"
    );
    assert_eq!(
        message,
        format!(
            "successful scan: found 5 tags with checksum {}",
            scan.revision.unwrap()
        )
    );

    let policies = w.api::<ImagePolicy>();
    let app = testing::wait_for(&policies, "app", T, |p: &ImagePolicy| {
        p.status
            .as_ref()
            .and_then(|s| s.latest_ref.as_ref())
            .is_some_and(|r| r.tag == "1.0.0")
    })
    .await;
    let latest = app.status.as_ref().unwrap().latest_ref.clone().unwrap();
    let digest = latest.digest.clone().expect("IfNotPresent reflects the digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    testing::wait_for(&policies, "builds", T, |p: &ImagePolicy| {
        p.status
            .as_ref()
            .and_then(|s| s.latest_ref.as_ref())
            .is_some_and(|r| r.tag == "main-1700000900")
    })
    .await;

    // A signed automation with a template.
    let key = GpgKey::new("Image Automation <bot@example.com>", "ed25519", "sign");
    w.secret("signing", BTreeMap::from([("git.asc", key.secret_armored())]))
        .await;
    w.image::<ImageUpdateAutomation>(
        "auto",
        json!({
            "interval": "2s",
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "git": {
                "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"name": "Flux Bot", "email": "bot@example.com"},
                           "signingKey": {"secretRef": {"name": "signing"}},
                           "messageTemplate": TEMPLATE,
                           "messageTemplateValues": {"cluster": "staging"}},
                "push": {"branch": "main"},
            },
            "update": {"strategy": "Setters", "path": "./apps"},
        }),
    )
    .await;

    let automations = w.api::<ImageUpdateAutomation>();
    let pushed = testing::wait_for(&automations, "auto", T, |a: &ImageUpdateAutomation| {
        a.status
            .as_ref()
            .and_then(|s| s.last_push_commit.as_deref())
            .is_some()
    })
    .await;
    let status = pushed.status.as_ref().unwrap();
    let commit = status.last_push_commit.clone().unwrap();
    assert_eq!(commit, fleet.remote_head());
    assert_eq!(
        status.observed_source_revision.as_deref(),
        Some(format!("main@sha1:{commit}").as_str())
    );
    let observed = status.observed_policies.clone().unwrap();
    assert_eq!(observed["app"].tag, "1.0.0");
    assert_eq!(observed["builds"].tag, "main-1700000900");

    // Whole files: only the marked values changed.
    assert_eq!(
        fleet.remote_file("apps/deployment.yaml").unwrap(),
        deployment.replace(":0.9.0\"", &format!(":1.0.0@{digest}\""))
    );
    assert_eq!(
        fleet.remote_file("apps/kustomization.yaml").unwrap(),
        kustomization.replace("newTag: main-1700000000", "newTag: main-1700000900")
    );

    // The commit: author, templated message, a signature gpg verifies.
    let bare = format!("{}/{}.git", env("GIT_REPOS_DIR"), fleet.name);
    let show = |format: &str| {
        testing::git(
            std::path::Path::new("/"),
            &[
                "--git-dir",
                &bare,
                "log",
                "-1",
                &format!("--format={format}"),
                &commit,
            ],
        )
    };
    assert_eq!(show("%an <%ae>"), "Flux Bot <bot@example.com>");
    assert_eq!(
        show("%B"),
        format!(
            "Automated image update by auto (staging)\n\n- Deployment app:\n    {image}:0.9.0 -> {image}:1.0.0@{digest}"
        )
    );
    let verify = std::process::Command::new("git")
        .args(["--git-dir", &bare, "verify-commit", &commit])
        .env("GNUPGHOME", key.home.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "git verify-commit: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The GitOps path rolls it out.
    let deployments = w.api::<Deployment>();
    let image_of = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    testing::wait_for(&deployments, "app", T, |d: &Deployment| {
        image_of(d) == format!("{image}:1.0.0@{digest}")
    })
    .await;

    // A new release moves it again.
    push(&registry, &image_repo, "1.2.0", &RegistryAuth::Anonymous).await;
    let moved = testing::wait_for(&deployments, "app", T, |d: &Deployment| {
        image_of(d).contains(":1.2.0@sha256:")
    })
    .await;
    let policy = policies.get("app").await.unwrap();
    let (status, _, message) = ready(policy.status.as_ref()).unwrap();
    assert_eq!(status, "True");
    assert!(
        message.starts_with(&format!(
            "Latest image tag for {image} resolved to 1.2.0 with digest sha256:"
        )) && message.contains(&format!("(previously {image}:1.0.0@{digest})")),
        "{message}"
    );
    assert_eq!(policy.status.unwrap().observed_previous_ref.unwrap().tag, "1.0.0");
    assert!(image_of(&moved).starts_with(&format!("{image}:1.2.0@")));
    let automation = automations.get("auto").await.unwrap();
    assert_eq!(
        ready(automation.status.as_ref()).unwrap(),
        ("True".into(), "Succeeded".into(), "repository up-to-date".into())
    );
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn refused_credentials_keep_the_last_scan_and_refused_pushes_are_reported() {
    let w = world("imgfail").await;
    let registry = env("OCI_REGISTRY_TOKEN");
    let user = env("OCI_REGISTRY_USER");
    let password = env("OCI_REGISTRY_PASSWORD");
    let image_repo = format!("private-{:08x}", rand::random::<u32>());
    let auth = RegistryAuth::Basic(user.clone(), password.clone());
    for tag in ["1.0.0", "1.1.0"] {
        push(&registry, &image_repo, tag, &auth).await;
    }
    let docker_config = |password: &str| {
        json!({"auths": {registry.as_str(): {"username": user, "password": password}}}).to_string()
    };
    w.secret(
        "registry",
        BTreeMap::from([(".dockerconfigjson", docker_config(&password))]),
    )
    .await;
    let image = format!("{registry}/{image_repo}");
    w.image::<ImageRepository>(
        "private",
        json!({"image": image, "interval": "10m", "insecure": true, "secretRef": {"name": "registry"}}),
    )
    .await;
    let repos = w.api::<ImageRepository>();
    let scanned = testing::wait_for(&repos, "private", T, |r: &ImageRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.last_scan_result.as_ref())
            .is_some_and(|s| s.tag_count == 2)
    })
    .await;
    let good = scanned.status.unwrap().last_scan_result.unwrap();

    // Wrong credentials: the scan fails, the last good one stays.
    w.secret(
        "registry",
        BTreeMap::from([(".dockerconfigjson", docker_config("wrong"))]),
    )
    .await;
    w.request_reconcile::<ImageRepository>("private").await;
    let failed = testing::wait_for(&repos, "private", T, |r: &ImageRepository| {
        ready(r.status.as_ref()).is_some_and(|(s, reason, _)| s == "False" && reason == "ReadOperationFailed")
    })
    .await;
    let (_, _, message) = ready(failed.status.as_ref()).unwrap();
    assert!(message.starts_with("scan failed: "), "{message}");
    assert_eq!(
        failed.status.unwrap().last_scan_result.unwrap().revision,
        good.revision
    );

    // A branch the server protects: the push is refused and says so.
    let fleet = GitRepo::new("protected");
    fleet
        .write(
            "app.yaml",
            &format!(
                "image: {image}:1.0.0 # {{\"$imagepolicy\": \"{}:private\"}}\n",
                w.ns
            ),
        )
        .commit("initial");
    pre_receive_hook(&fleet, "#!/bin/sh\necho 'main is protected' >&2\nexit 1\n");
    w.secret(
        "registry",
        BTreeMap::from([(".dockerconfigjson", docker_config(&password))]),
    )
    .await;
    w.request_reconcile::<ImageRepository>("private").await;
    w.image::<ImagePolicy>(
        "private",
        json!({"imageRepositoryRef": {"name": "private"}, "policy": {"semver": {"range": "1.x"}}}),
    )
    .await;
    driftless_testkit::git_source(&w.client, &w.ns, "protected", &fleet, "10m").await;
    w.image::<ImageUpdateAutomation>(
        "auto",
        json!({
            "interval": "10m",
            "sourceRef": {"kind": "GitRepository", "name": "protected"},
            "git": {"checkout": {"ref": {"branch": "main"}},
                    "commit": {"author": {"email": "bot@example.com"}}},
            "update": {"strategy": "Setters"},
        }),
    )
    .await;
    let automations = w.api::<ImageUpdateAutomation>();
    let refused = testing::wait_for(&automations, "auto", T, |a: &ImageUpdateAutomation| {
        ready(a.status.as_ref()).is_some_and(|(s, reason, _)| s == "False" && reason == "GitOperationFailed")
    })
    .await;
    let (_, _, message) = ready(refused.status.as_ref()).unwrap();
    assert!(
        message.contains("rejected") && message.contains("main"),
        "{message}"
    );
    assert!(
        fleet.remote_file("app.yaml").unwrap().contains(":1.0.0 #"),
        "nothing was pushed"
    );

    // A branch that moves while the automation works: the first push is refused because
    // someone else pushed meanwhile (the hook moves `main` and refuses once); the automation
    // starts over on the new tip and its commit lands on top of the other one.
    let moving = GitRepo::new("moving");
    moving
        .write(
            "app.yaml",
            &format!(
                "image: {image}:1.0.0 # {{\"$imagepolicy\": \"{}:private\"}}\n",
                w.ns
            ),
        )
        .write("other.txt", "before\n")
        .commit("initial");
    pre_receive_hook(
        &moving,
        r#"#!/bin/sh
[ -f moved ] && exit 0
touch moved
# Outside the push's quarantine: another writer's commit lands on main first.
env -i PATH="$PATH" sh -c '
  blob=$(echo after | git --git-dir=. hash-object -w --stdin)
  tree=$(git --git-dir=. ls-tree main | sed "s/[0-9a-f]\{40\}\tother.txt/$blob\tother.txt/" | git --git-dir=. mktree)
  commit=$(echo "concurrent change" | git --git-dir=. -c user.name=other -c user.email=o@example.com commit-tree "$tree" -p main)
  git --git-dir=. update-ref refs/heads/main "$commit"'
echo "main moved" >&2
exit 1
"#,
    );
    driftless_testkit::git_source(&w.client, &w.ns, "moving", &moving, "10m").await;
    w.image::<ImageUpdateAutomation>(
        "moving",
        json!({
            "interval": "10m",
            "sourceRef": {"kind": "GitRepository", "name": "moving"},
            "git": {"checkout": {"ref": {"branch": "main"}},
                    "commit": {"author": {"email": "bot@example.com"}}},
            "update": {"strategy": "Setters"},
        }),
    )
    .await;
    let landed = w.pushed_or_failed("moving").await;
    assert_eq!(
        landed.status.as_ref().and_then(|s| s.last_push_commit.clone()),
        Some(moving.remote_head()),
        "{:?}",
        ready(landed.status.as_ref())
    );
    assert!(moving.remote_file("app.yaml").unwrap().contains(":1.1.0 #"));
    assert_eq!(
        moving.remote_file("other.txt").unwrap(),
        "after\n",
        "built on the other writer's commit"
    );

    // A policy may use an ImageRepository of another namespace only through its accessFrom.
    let other = testing::namespace(&w.client, "imgacl").await;
    let foreign: Api<ImageRepository> = Api::namespaced(w.client.clone(), &other);
    let repository = |access_from: serde_json::Value| {
        serde_json::from_value::<ImageRepository>(json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
            "metadata": {"name": "shared"},
            "spec": {"image": image, "interval": "10m", "accessFrom": access_from},
        }))
        .unwrap()
    };
    foreign
        .create(&PostParams::default(), &repository(json!(null)))
        .await
        .unwrap();
    w.image::<ImagePolicy>(
        "foreign",
        json!({"imageRepositoryRef": {"name": "shared", "namespace": other},
                 "policy": {"semver": {"range": "1.x"}}}),
    )
    .await;
    let policies = w.api::<ImagePolicy>();
    let denied = testing::wait_for(&policies, "foreign", T, |p: &ImagePolicy| {
        ready(p.status.as_ref()).is_some_and(|(_, reason, _)| reason == "AccessDenied")
    })
    .await;
    let (_, _, message) = ready(denied.status.as_ref()).unwrap();
    assert!(
        message.contains("missing ACL labels on 'accessFrom'"),
        "{message}"
    );
    // Granted to namespaces labelled as the policy's is (every namespace has its name label).
    let granted = json!({"namespaceSelectors": [{"matchLabels": {"kubernetes.io/metadata.name": w.ns}}]});
    foreign
        .patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accessFrom": granted}})),
        )
        .await
        .unwrap();
    w.request_reconcile::<ImagePolicy>("foreign").await;
    // Past the ACL, it waits for the repository's first scan (nothing scans the other namespace here).
    testing::wait_for(&policies, "foreign", T, |p: &ImagePolicy| {
        ready(p.status.as_ref())
            .is_some_and(|(_, reason, m)| reason == "DependencyNotReady" && m.contains("no tags"))
    })
    .await;
    testing::delete_namespace(&w.client, &other).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn automations_push_over_every_git_transport() {
    let w = world("imgpush").await;
    let registry = env("OCI_REGISTRY");
    let image_repo = format!("svc-{:08x}", rand::random::<u32>());
    let image = format!("{registry}/{image_repo}");
    for tag in ["2.0.0", "2.1.0"] {
        push(&registry, &image_repo, tag, &RegistryAuth::Anonymous).await;
    }
    w.image::<ImageRepository>(
        "svc",
        json!({"image": image, "interval": "10m", "insecure": true}),
    )
    .await;
    w.image::<ImagePolicy>(
        "svc",
        json!({"imageRepositoryRef": {"name": "svc"}, "policy": {"semver": {"range": "2.x"}}}),
    )
    .await;

    let read = |var: &str| std::fs::read_to_string(env(var)).unwrap();
    let basic = || {
        BTreeMap::from([
            ("username", env("GIT_HTTP_USER")),
            ("password", env("GIT_HTTP_PASSWORD")),
        ])
    };
    let mut mtls = basic();
    mtls.extend([
        ("ca.crt", read("SOURCES_CA_FILE")),
        ("tls.crt", read("GIT_CLIENT_CERT")),
        ("tls.key", read("GIT_CLIENT_KEY")),
    ]);
    w.secret(
        "ssh",
        BTreeMap::from([
            ("identity", read("GIT_SSH_KEY")),
            ("known_hosts", read("GIT_SSH_KNOWN_HOSTS")),
        ]),
    )
    .await;
    w.secret("mtls", mtls).await;
    w.secret(
        "token",
        BTreeMap::from([("bearerToken", env("GIT_BEARER_TOKEN"))]),
    )
    .await;
    w.secret("basic", basic()).await;
    w.secret(
        "proxy",
        BTreeMap::from([
            ("address", env("PROXY_ADDRESS")),
            ("username", env("PROXY_USER")),
            ("password", env("PROXY_PASSWORD")),
        ]),
    )
    .await;

    /// Name, URL of the repository, credentials Secret, through the proxy.
    type Transport = (&'static str, fn(&GitRepo) -> String, &'static str, bool);
    let transports: [Transport; 4] = [
        ("ssh", GitRepo::ssh_url, "ssh", false),
        (
            "mtls",
            |r| format!("{}/{}.git", env("GIT_MTLS_BASE"), r.name),
            "mtls",
            false,
        ),
        (
            "bearer",
            |r| format!("{}/{}.git", env("GIT_TOKEN_BASE"), r.name),
            "token",
            false,
        ),
        ("proxied", GitRepo::http_url, "basic", true),
    ];
    let mut repos = Vec::new();
    for (name, url, secret, proxied) in transports {
        let fleet = GitRepo::new(name);
        fleet
            .write(
                "app.yaml",
                &format!("image: {image}:2.0.0 # {{\"$imagepolicy\": \"{}:svc\"}}\n", w.ns),
            )
            .commit("initial");
        let mut spec = json!({"url": url(&fleet), "interval": "10m", "ref": {"branch": "main"},
                              "secretRef": {"name": secret}});
        if proxied {
            spec["proxySecretRef"] = json!({"name": "proxy"});
        }
        w.create::<driftless_api::source::GitRepository>(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name}, "spec": spec,
        }))
        .await;
        // Over SSH the push goes to a branch of its own, which does not exist yet.
        let mut git = json!({"commit": {"author": {"name": "bot", "email": "bot@example.com"}}});
        if name == "ssh" {
            git["push"] = json!({"branch": "image-updates"});
        }
        w.image::<ImageUpdateAutomation>(
            name,
            json!({
                "interval": "10m",
                "sourceRef": {"kind": "GitRepository", "name": name},
                "git": git,
                "update": {"strategy": "Setters"},
            }),
        )
        .await;
        repos.push((name, fleet));
    }
    for (name, fleet) in &repos {
        let done = w.pushed_or_failed(name).await;
        let branch = if *name == "ssh" { "image-updates" } else { "main" };
        let bare = format!("{}/{}.git", env("GIT_REPOS_DIR"), fleet.name);
        let on_server = |args: &[&str]| {
            let mut all = vec!["--git-dir", bare.as_str()];
            all.extend_from_slice(args);
            testing::git(std::path::Path::new("/"), &all)
        };
        assert_eq!(
            done.status.as_ref().and_then(|s| s.last_push_commit.clone()),
            Some(on_server(&["rev-parse", branch])),
            "{name}: {:?}",
            ready(done.status.as_ref())
        );
        assert!(
            on_server(&["show", &format!("{branch}:app.yaml")]).contains(":2.1.0 #"),
            "{name}"
        );
        let main_tag = if branch == "main" { ":2.1.0 #" } else { ":2.0.0 #" };
        assert!(
            fleet.remote_file("app.yaml").unwrap().contains(main_tag),
            "{name}: main"
        );
    }
    // The same tags through the TLS registry (one storage behind both), trusted by certSecretRef.
    w.secret(
        "registry-ca",
        BTreeMap::from([("ca.crt", read("SOURCES_CA_FILE"))]),
    )
    .await;
    w.image::<ImageRepository>(
        "svc-tls",
        json!({"image": format!("{}/{image_repo}", env("OCI_REGISTRY_TLS")), "interval": "10m",
                 "certSecretRef": {"name": "registry-ca"}}),
    )
    .await;
    testing::wait_for(
        &w.api::<ImageRepository>(),
        "svc-tls",
        T,
        |r: &ImageRepository| {
            r.status
                .as_ref()
                .and_then(|s| s.last_scan_result.as_ref())
                .is_some_and(|s| s.tag_count == 2)
        },
    )
    .await;

    let log = std::fs::read_to_string(env("PROXY_LOG")).unwrap();
    let proxied = &repos[3].1.name;
    assert!(
        log.contains(&format!("{proxied}.git/git-receive-pack")),
        "the push went through the proxy"
    );
}
