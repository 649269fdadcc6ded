//! Helpers for integration tests against the real control plane started by
//! `hack/testenv.sh up` (feature `testing`). Tests that use them are `#[ignore]`d and run by
//! `hack/test.sh` with `-- --ignored` once the environment is up.

use driftless_api::all_crds;
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::de::DeserializeOwned;
use std::{fmt::Debug, time::Duration};

/// Label on namespaces created by tests, so leftovers can be found and deleted.
pub const TEST_NAMESPACE_LABEL: &str = "driftless.dev/test";

/// A client for the testenv cluster, from `KUBECONFIG`.
///
/// # Panics
/// When `KUBECONFIG` is unset or unreadable: run `hack/testenv.sh up` and source
/// `target/testenv/env.sh` (hack/test.sh does both).
pub async fn client() -> Client {
    crate::apiserver::client(config().await).expect("client")
}

/// A client of the testenv's admin impersonating `user`: with no binding, an identity that may
/// read nothing.
///
/// # Panics
/// As [`client`].
pub async fn client_as(user: &str) -> Client {
    let mut config = config().await;
    config.auth_info.impersonate = Some(user.to_string());
    crate::apiserver::client(config).expect("client")
}

async fn config() -> kube::Config {
    let path = std::env::var("KUBECONFIG")
        .expect("KUBECONFIG is unset: run `hack/testenv.sh up` and `. target/testenv/env.sh` first");
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig")
}

/// Creates a fresh namespace `<prefix>-<random>` labelled as a test namespace.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true"}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Deletes a test namespace (background; the namespace controller finishes it).
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

/// Applies CRDs with server-side apply and waits until they are established.
pub async fn install_crds(client: &Client, crds: &[CustomResourceDefinition]) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("driftless-test").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {}: {e}", crd.name_any()));
    }
    for crd in crds {
        wait_for(
            &api,
            &crd.name_any(),
            Duration::from_secs(30),
            |c: &CustomResourceDefinition| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
            },
        )
        .await;
    }
}

/// Installs every toolkit CRD.
pub async fn install_toolkit_crds(client: &Client) {
    install_crds(client, &all_crds()).await;
}

/// Polls `name` until `pred` holds; returns the object.
///
/// # Panics
/// On timeout, with the last state seen.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, timeout: Duration, pred: F) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug,
    F: Fn(&K) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            if pred(&obj) {
                return obj;
            }
            last = Some(obj);
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {name}; last seen: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the Events of `namespace` until one matches `pred`; returns it.
///
/// # Panics
/// On timeout, with the Events seen.
pub async fn wait_for_event<F>(
    client: &Client,
    namespace: &str,
    timeout: Duration,
    pred: F,
) -> k8s_openapi::api::events::v1::Event
where
    F: Fn(&k8s_openapi::api::events::v1::Event) -> bool,
{
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let list = events
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        if let Some(e) = list.iter().find(|e| pred(e)) {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for an event; seen: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while api.get_opt(name).await.ok().flatten().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still exists after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ServiceAccount `name` in `namespace`, bound to a Role of its own with `rules` (RBAC rule
/// JSON): an identity whose tokens may do exactly that.
///
/// # Panics
/// When the apiserver refuses an object.
pub async fn service_account_with_role(
    client: &Client,
    namespace: &str,
    name: &str,
    rules: serde_json::Value,
) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let metadata = serde_json::json!({"name": name});
    async fn create<K>(client: &Client, namespace: &str, object: serde_json::Value)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + Debug,
    {
        let object: K = serde_json::from_value(object).expect("a valid object");
        Api::<K>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &object)
            .await
            .expect("object created");
    }
    create::<ServiceAccount>(client, namespace, serde_json::json!({"metadata": metadata})).await;
    create::<Role>(
        client,
        namespace,
        serde_json::json!({"metadata": metadata, "rules": rules}),
    )
    .await;
    create::<RoleBinding>(
        client,
        namespace,
        serde_json::json!({"metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}),
    )
    .await;
}

/// The data of a `kubeConfig.configMapRef` ConfigMap (provider `generic`) that reaches the
/// testenv's own apiserver — which trusts its ServiceAccounts' tokens for its issuer's audience —
/// as ServiceAccount `account`.
///
/// # Panics
/// When `KUBECONFIG` or `SOURCES_CA_FILE` cannot be read.
pub async fn workload_identity_data(account: &str) -> serde_json::Value {
    let address = kube::Config::infer()
        .await
        .expect("kubeconfig")
        .cluster_url
        .to_string();
    let ca = std::fs::read_to_string(testenv_var("SOURCES_CA_FILE")).expect("the testenv CA");
    serde_json::json!({"provider": "generic", "address": address.trim_end_matches('/'), "ca.crt": ca,
        "audiences": "https://kubernetes.default.svc.cluster.local", "serviceAccountName": account})
}

/// `git` with a test identity, in `dir`; returns its trimmed stdout.
///
/// # Panics
/// When git fails, with its stderr.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository on the testenv git server (`GIT_REPOS_DIR`) and a working clone to commit from.
pub struct GitRepo {
    /// Repository name on the server (`<name>.git`).
    pub name: String,
    /// The working clone.
    pub work: tempfile::TempDir,
}

fn testenv_var(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: run hack/testenv.sh up and source env.sh"))
}

impl GitRepo {
    /// A new empty repository named `<prefix>-<random>`.
    pub fn new(prefix: &str) -> GitRepo {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let bare = std::path::PathBuf::from(testenv_var("GIT_REPOS_DIR")).join(format!("{name}.git"));
        let bare = bare.to_string_lossy().into_owned();
        git(
            std::path::Path::new("/"),
            &["init", "-q", "--bare", "-b", "main", &bare],
        );
        let work = tempfile::tempdir().expect("temp dir");
        git(work.path(), &["init", "-q", "-b", "main"]);
        git(work.path(), &["remote", "add", "origin", &bare]);
        GitRepo { name, work }
    }

    /// Writes a file of the working clone.
    pub fn write(&self, path: &str, content: &str) -> &GitRepo {
        let p = self.work.path().join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("directories");
        }
        std::fs::write(p, content).expect("file written");
        self
    }

    /// Removes a file of the working clone.
    pub fn remove(&self, path: &str) -> &GitRepo {
        std::fs::remove_file(self.work.path().join(path)).expect("file removed");
        self
    }

    /// Commits everything and pushes `main`; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.work.path(), &["add", "-A"]);
        git(self.work.path(), &["commit", "-q", "-m", message]);
        git(
            self.work.path(),
            &["push", "-q", "--force", "origin", "HEAD:main"],
        );
        git(self.work.path(), &["rev-parse", "HEAD"])
    }

    /// Tags HEAD (annotated) and pushes the tag; returns the commit id.
    pub fn tag(&self, tag: &str) -> String {
        git(self.work.path(), &["tag", "-a", tag, "-m", tag]);
        git(self.work.path(), &["push", "-q", "origin", tag]);
        git(self.work.path(), &["rev-parse", "HEAD"])
    }

    /// Adds `other` as a submodule at `path`, cloned from the server's copy and recorded with
    /// its smart-HTTP URL (what a clone from the server fetches it from); commit to keep it.
    pub fn add_submodule(&self, path: &str, other: &GitRepo) -> &GitRepo {
        git(
            self.work.path(),
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                "-b",
                "main",
                &other.bare(),
                path,
            ],
        );
        git(
            self.work.path(),
            &[
                "config",
                "-f",
                ".gitmodules",
                &format!("submodule.{path}.url"),
                &other.http_url(),
            ],
        );
        self
    }

    /// The bare repository on the server.
    fn bare(&self) -> String {
        format!("{}/{}.git", testenv_var("GIT_REPOS_DIR"), self.name)
    }

    /// The commit `main` points to on the server (what others pushed too).
    pub fn remote_head(&self) -> String {
        git(
            std::path::Path::new("/"),
            &["--git-dir", &self.bare(), "rev-parse", "main"],
        )
    }

    /// A file of `main` on the server, if it exists.
    pub fn remote_file(&self, path: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["--git-dir", &self.bare(), "show", &format!("main:{path}")])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The repository over smart HTTP (basic auth: `GIT_HTTP_USER` / `GIT_HTTP_PASSWORD`).
    pub fn http_url(&self) -> String {
        format!("{}/{}.git", testenv_var("GIT_HTTP_BASE"), self.name)
    }

    /// The repository over SSH (`GIT_SSH_KEY`, `GIT_SSH_KNOWN_HOSTS`).
    pub fn ssh_url(&self) -> String {
        format!("{}/{}.git", testenv_var("GIT_SSH_BASE"), self.name)
    }
}

/// A fresh OpenPGP key made by the real gpg in a gpg home of its own (signing commits, SOPS).
pub struct GpgKey {
    /// The gpg home (`GNUPGHOME`) holding the key.
    pub home: tempfile::TempDir,
    /// The primary key's fingerprint.
    pub fingerprint: String,
}

impl GpgKey {
    /// A key for `uid` (`Name <mail>`); `algo` and `usage` as `gpg --quick-gen-key` takes them
    /// (`default`, `ed25519`; `default`, `sign`).
    ///
    /// # Panics
    /// When gpg fails, with its stderr.
    pub fn new(uid: &str, algo: &str, usage: &str) -> GpgKey {
        let home = tempfile::tempdir().expect("temp dir");
        let key = GpgKey {
            home,
            fingerprint: String::new(),
        };
        key.gpg(&["--quick-gen-key", uid, algo, usage, "never"]);
        let fingerprint = key
            .gpg(&["--list-secret-keys", "--with-colons"])
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("gpg lists the new key's fingerprint")
            .to_string();
        GpgKey { fingerprint, ..key }
    }

    /// Runs gpg on this key's home (batch mode, empty passphrase); returns its stdout.
    ///
    /// # Panics
    /// When gpg fails, with its stderr.
    pub fn gpg(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg runs");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("gpg output is UTF-8")
    }

    /// The armored public key.
    pub fn public_armored(&self) -> String {
        self.gpg(&["--armor", "--export", &self.fingerprint])
    }

    /// The armored secret key.
    pub fn secret_armored(&self) -> String {
        self.gpg(&["--armor", "--export-secret-keys", &self.fingerprint])
    }
}

/// The container args of Flux v2.9's Deployment of `controller`, as `gotk-components.yaml` has
/// them (`$(RUNTIME_NAMESPACE)` expanded to `flux-system`), then `extra` (e.g. the multi-tenancy
/// lockdown patch's): what a cluster moved from Flux starts our binaries with.
pub fn flux_deployment_args(controller: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![controller.to_string()];
    if controller != "notification-controller" {
        args.push("--events-addr=http://notification-controller.flux-system.svc.cluster.local./".into());
    }
    args.extend(
        [
            "--watch-all-namespaces=true",
            "--log-level=info",
            "--log-encoding=json",
            "--enable-leader-election",
        ]
        .map(String::from),
    );
    if controller == "source-controller" {
        args.push("--storage-path=/data".into());
        args.push("--storage-adv-addr=source-controller.flux-system.svc.cluster.local.".into());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// A controller binary running as Flux's Deployment starts it; killed when dropped.
pub struct FluxStartedBinary {
    child: std::process::Child,
    /// Where it serves `/metrics`.
    pub metrics_addr: std::net::SocketAddr,
    /// Where it serves `/healthz` and `/readyz`.
    pub health_addr: std::net::SocketAddr,
}

impl Drop for FluxStartedBinary {
    /// Stops it as Kubernetes does, SIGTERM first (it releases its lease, so the next one to
    /// start leads at once), then SIGKILL if it is still there after 10 s.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` with [`flux_deployment_args`] of `controller` and `extra`, as a cluster moved
/// from Flux starts it, with what cannot hold on a test machine replaced: `replace` flags
/// (`--storage-path=…`) take the place of Flux's of the same name, metrics and probes listen
/// on free loopback ports, and the leader-election Lease goes to `namespace`
/// (`RUNTIME_NAMESPACE`). Returns once `/readyz` answers 200.
///
/// # Panics
/// When the process exits or is not ready within a minute (its stderr is in the message).
pub async fn start_with_flux_args(
    binary: &str,
    controller: &str,
    namespace: &str,
    extra: &[&str],
    replace: &[&str],
) -> FluxStartedBinary {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
    };
    let (metrics_addr, health_addr) = (free(), free());
    let metrics_flag = format!("--metrics-addr={metrics_addr}");
    let health_flag = format!("--health-addr={health_addr}");
    let replace: Vec<&str> = replace
        .iter()
        .copied()
        .chain([metrics_flag.as_str(), health_flag.as_str()])
        .collect();
    let name_of = |flag: &str| flag.split('=').next().unwrap_or(flag).to_string();
    let mut args = flux_deployment_args(controller, extra);
    for flag in &replace {
        let name = name_of(flag);
        args.retain(|a| name_of(a) != name);
        args.push(flag.to_string());
    }
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let child = std::process::Command::new(binary)
        .args(&args[1..])
        .env("RUNTIME_NAMESPACE", namespace)
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let mut started = FluxStartedBinary {
        child,
        metrics_addr,
        health_addr,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = started.child.try_wait() {
            let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
            panic!("{controller} exited with {status} when started with {args:?}:\n{log}");
        }
        if http_get(health_addr, "/readyz")
            .await
            .is_some_and(|(code, _)| code == 200)
        {
            return started;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{controller} not ready within a minute: {}",
            std::fs::read_to_string(stderr.path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl FluxStartedBinary {
    /// The text of its `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_addr, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

/// Starts `binary` with `args` and returns its exit status and stderr: for flags that must
/// stop a controller before it starts (an unknown feature gate).
pub fn refused_start(binary: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A plain HTTP/1.1 GET on loopback: the status code and body, None when nothing listens.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    // HTTP/1.0: the body comes whole, not chunked.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// A stand-in for a notification-controller's event server: every JSON body POSTed to its
/// address is received on the channel (answered 202, as Flux's server does).
pub async fn event_sink() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                match serde_json::from_slice(&body) {
                    Ok(event) => {
                        let _ = tx.send(event);
                        axum::http::StatusCode::ACCEPTED
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("event sink address");
    let addr = listener.local_addr().expect("event sink address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// The first event from `events` that `matches`, within a minute.
///
/// # Panics
/// When none arrives in time.
pub async fn wait_for_posted_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if matches(&event) => return event,
            Ok(Some(_)) => {}
            _ => panic!("no matching event was posted within a minute"),
        }
    }
}

/// A bucket on the testenv's S3 server (`S3_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`), made
/// and written through the S3 API as a user would.
pub struct S3Bucket {
    /// The bucket's name.
    pub name: String,
    bucket: rusty_s3::Bucket,
    credentials: rusty_s3::Credentials,
    http: reqwest::Client,
}

impl S3Bucket {
    const SIGNED_FOR: Duration = Duration::from_secs(60);

    /// Creates the bucket `name`.
    ///
    /// # Panics
    /// When the server refuses it.
    pub async fn create(name: &str) -> S3Bucket {
        use rusty_s3::S3Action;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = format!("http://{}", testenv_var("S3_ENDPOINT"))
            .parse()
            .expect("S3 endpoint");
        let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, name.to_string(), "us-east-1")
            .expect("bucket name");
        let s3 = S3Bucket {
            name: name.to_string(),
            bucket,
            credentials: rusty_s3::Credentials::new(
                testenv_var("S3_ACCESS_KEY"),
                testenv_var("S3_SECRET_KEY"),
            ),
            http: reqwest::Client::new(),
        };
        let url = s3.bucket.create_bucket(&s3.credentials).sign(Self::SIGNED_FOR);
        s3.send(s3.http.put(url)).await;
        s3
    }

    /// Uploads `content` as `key`; returns its ETag, quotes dropped.
    pub async fn put(&self, key: &str, content: &str) -> String {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(Self::SIGNED_FOR);
        let put = self.send(self.http.put(url).body(content.to_string())).await;
        put.headers()
            .get("etag")
            .and_then(|e| e.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(Self::SIGNED_FOR);
        self.send(self.http.delete(url)).await;
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.expect("S3 server reachable");
        assert!(
            response.status().is_success(),
            "S3 server answered {}",
            response.status()
        );
        response
    }
}

/// A bucket on the testenv's Google Cloud Storage emulator (fake-gcs-server, `GCS_ENDPOINT`),
/// written through the JSON API as `gsutil` would.
pub struct GcsBucket {
    /// The bucket's name.
    pub name: String,
    base: String,
    http: reqwest::Client,
}

impl GcsBucket {
    /// Creates the bucket `name`.
    ///
    /// # Panics
    /// When the emulator refuses it.
    pub async fn create(name: &str) -> GcsBucket {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let gcs = GcsBucket {
            name: name.to_string(),
            base: format!("http://{}", testenv_var("GCS_ENDPOINT")),
            http: reqwest::Client::new(),
        };
        let url = format!("{}/storage/v1/b", gcs.base);
        gcs.send(gcs.http.post(url).json(&serde_json::json!({"name": name})))
            .await;
        gcs
    }

    /// The object URL of `key` under `prefix` (`/storage/v1` or `/upload/storage/v1`).
    fn object_url(&self, prefix: &str, key: Option<&str>) -> reqwest::Url {
        let mut url: reqwest::Url = format!("{}/{prefix}", self.base).parse().expect("GCS endpoint");
        {
            let mut segments = url.path_segments_mut().expect("base URL");
            segments.extend(["b", &self.name, "o"]);
            if let Some(key) = key {
                segments.push(key);
            }
        }
        url
    }

    /// Uploads `content` as `key`; returns its etag, quotes dropped.
    pub async fn put(&self, key: &str, content: &str) -> String {
        let mut url = self.object_url("upload/storage/v1", None);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", key);
        let response = self.send(self.http.post(url).body(content.to_string())).await;
        let object: serde_json::Value = response.json().await.expect("object resource");
        object["etag"]
            .as_str()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) {
        let url = self.object_url("storage/v1", Some(key));
        self.send(self.http.delete(url)).await;
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.expect("GCS emulator reachable");
        assert!(
            response.status().is_success(),
            "GCS emulator answered {}",
            response.status()
        );
        response
    }
}

/// A container on the testenv's Azure Blob emulator (Azurite, `AZURE_BLOB_ENDPOINT`), written
/// with the development account's Shared Key.
pub struct AzureContainer {
    /// The container's name.
    pub name: String,
    endpoint: reqwest::Url,
    key: crate::azure::SharedKey,
    http: reqwest::Client,
}

impl AzureContainer {
    /// Creates the container `name`.
    ///
    /// # Panics
    /// When the emulator refuses it.
    pub async fn create(name: &str) -> AzureContainer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint: reqwest::Url = testenv_var("AZURE_BLOB_ENDPOINT")
            .parse()
            .expect("Azure endpoint");
        let account = crate::azure::account_of(&endpoint).expect("account in the endpoint");
        let container = AzureContainer {
            name: name.to_string(),
            key: crate::azure::SharedKey::new(&account, &testenv_var("AZURE_ACCOUNT_KEY"))
                .expect("account key"),
            endpoint,
            http: reqwest::Client::new(),
        };
        let mut url = container.url(None);
        url.query_pairs_mut().append_pair("restype", "container");
        let headers = container.key.headers("PUT", &url, 0, "");
        container.send(container.http.put(url).headers(headers)).await;
        container
    }

    fn url(&self, blob: Option<&str>) -> reqwest::Url {
        let mut url = self.endpoint.clone();
        {
            let mut segments = url.path_segments_mut().expect("base URL");
            segments.pop_if_empty().push(&self.name);
            if let Some(blob) = blob {
                segments.extend(blob.split('/'));
            }
        }
        url
    }

    /// Uploads `content` as the block blob `blob`.
    pub async fn put(&self, blob: &str, content: &str) {
        let url = self.url(Some(blob));
        let headers =
            self.key
                .headers_with("PUT", &url, content.len(), "", &[("x-ms-blob-type", "BlockBlob")]);
        self.send(self.http.put(url).headers(headers).body(content.to_string()))
            .await;
    }

    /// Deletes `blob`.
    pub async fn delete(&self, blob: &str) {
        let url = self.url(Some(blob));
        let headers = self.key.headers("DELETE", &url, 0, "");
        self.send(self.http.delete(url).headers(headers)).await;
    }

    /// An account SAS token that reads and lists, valid for an hour.
    pub fn read_sas(&self) -> String {
        let expiry = k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(3600);
        self.key
            .account_sas("rl", &expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    /// Every blob's name and ETag, as the container's listing gives them.
    pub async fn etags(&self) -> Vec<(String, String)> {
        let mut url = self.url(None);
        url.query_pairs_mut()
            .append_pair("restype", "container")
            .append_pair("comp", "list");
        let headers = self.key.headers("GET", &url, 0, "");
        let xml = self
            .send(self.http.get(url).headers(headers))
            .await
            .text()
            .await
            .expect("listing");
        let field = |blob: &str, tag: &str| {
            blob.split(&format!("<{tag}>"))
                .nth(1)
                .and_then(|r| r.split(&format!("</{tag}>")).next())
                .unwrap_or_default()
                .replace("&quot;", "\"")
        };
        xml.split("<Blob>")
            .skip(1)
            .map(|b| (field(b, "Name"), field(b, "Etag")))
            .collect()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.expect("Azure emulator reachable");
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            panic!("Azure emulator answered {status}: {body}");
        }
        response
    }
}
