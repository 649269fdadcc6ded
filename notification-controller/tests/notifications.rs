//! notification-controller end to end: Kubernetes Events of the real kustomize-controller and
//! source-controller (started by the dev-only testkit) and events POSTed in Flux's JSON are
//! routed by Alerts to Providers whose endpoints are a recording sink on loopback; Receivers
//! are called as GitHub calls them and the resources they name reconcile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use driftless_api::meta::Condition;
use driftless_api::notification::{Alert, Provider, Receiver};
use driftless_api::source::GitRepository;
use driftless_runtime::metrics::Metrics;
use driftless_runtime::reconcile::LoopSettings;
use driftless_runtime::{conditions, testing};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is unset: run hack/testenv.sh up and source env.sh"))
}

/// A request the sink received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
    raw: Vec<u8>,
}

/// An HTTP endpoint on loopback that records every POST; `/hang` never answers in time,
/// `/slack-api` answers as Slack's bot API does.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
}

async fn record(State(sink): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    if uri.path() == "/hang" {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    sink.received.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or_default(),
        raw: body.to_vec(),
    });
    // Token endpoints answer as Google's and GitHub's do.
    if uri.path() == "/token" {
        return (
            StatusCode::OK,
            r#"{"access_token": "ya29.test", "expires_in": 3600}"#.into(),
        );
    }
    if uri.path().ends_with("/access_tokens") {
        return (
            StatusCode::CREATED,
            r#"{"token": "ghs_test", "expires_at": "2099-01-01T00:00:00Z"}"#.into(),
        );
    }
    if uri.path() == "/slack-api" {
        return (StatusCode::OK, r#"{"ok": true}"#.into());
    }
    (StatusCode::OK, String::new())
}

impl Sink {
    /// The sink over HTTPS with the testenv's `sources` certificate (127.0.0.1, signed by
    /// `SOURCES_CA_FILE`).
    async fn start_tls() -> (Sink, String) {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let sink = Sink::default();
        let app = Router::new()
            .fallback(axum::routing::post(record))
            .with_state(sink.clone());
        let pki = format!("{}/pki", env("TESTENV_DIR"));
        let certs = CertificateDer::pem_file_iter(format!("{pki}/sources.crt"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(format!("{pki}/sources.key")).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ =
                        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .serve_connection(
                                hyper_util::rt::TokioIo::new(tls),
                                hyper_util::service::TowerToHyperService::new(app),
                            )
                            .await;
                });
            }
        });
        (sink, url)
    }

    async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let app = Router::new()
            .fallback(axum::routing::post(record))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (sink, url)
    }

    /// Waits until a request on `path` satisfies `what`; returns it.
    async fn wait(&self, path: &str, what: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + T;
        loop {
            if let Some(found) = self
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.path == path && what(r))
            {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nothing on {path} yet; received: {:?}",
                self.received
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|r| (&r.path, &r.body))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count(&self, path: &str, what: impl Fn(&Received) -> bool) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path && what(r))
            .count()
    }
}

/// One test's world: a namespace, the source and kustomize controllers, notification-controller
/// serving on free loopback ports.
struct World {
    client: Client,
    ns: String,
    events_url: String,
    receiver_url: String,
    metrics: Metrics,
    _controllers: driftless_testkit::Controllers,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn world(prefix: &str) -> World {
    world_with(prefix, notification_controller::GoogleEndpoints::from_env()).await
}

/// A world whose controller reaches Google's services at `google`.
async fn world_with(prefix: &str, google: notification_controller::GoogleEndpoints) -> World {
    driftless_artifact::install_crypto_provider();
    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, prefix).await;
    let controllers = driftless_testkit::start_controllers(&client, &ns).await;
    let events = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receivers = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let events_url = format!("http://{}/", events.local_addr().unwrap());
    let receiver_url = format!("http://{}", receivers.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = futures::FutureExt::shared(async move {
        let _ = stopped.await;
    });
    let settings = notification_controller::Settings {
        loop_settings: LoopSettings {
            namespace: Some(ns.clone()),
            min_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(2),
            ..LoopSettings::default()
        },
        no_cross_namespace_refs: false,
        rate_limit_interval: Duration::from_secs(300),
        google,
    };
    let serving_client = client.clone();
    let metrics = Metrics::new();
    let serving_metrics = metrics.clone();
    tokio::spawn(async move {
        notification_controller::serve(
            serving_client,
            settings,
            events,
            receivers,
            serving_metrics,
            shutdown,
        )
        .await
        .unwrap();
    });
    World {
        client,
        ns,
        events_url,
        receiver_url,
        metrics,
        _controllers: controllers,
        _stop: stop,
    }
}

impl World {
    async fn create<K>(&self, object: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(object).unwrap();
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &object)
            .await
            .unwrap()
    }

    async fn secret(&self, name: &str, data: Value) {
        self.create::<Secret>(json!({"metadata": {"name": name}, "stringData": data}))
            .await;
    }

    async fn provider(&self, name: &str, spec: Value) {
        self.create::<Provider>(
            json!({"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    async fn alert(&self, name: &str, spec: Value) {
        self.create::<Alert>(
            json!({"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    async fn git_source(&self, repo: &testing::GitRepo) {
        self.secret(
            "git-auth",
            json!({"username": env("GIT_HTTP_USER"), "password": env("GIT_HTTP_PASSWORD")}),
        )
        .await;
        self.create::<GitRepository>(json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "repo"},
            "spec": {"url": repo.http_url(), "interval": "10m", "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}}}))
            .await;
    }

    /// Posts an event in Flux's JSON; returns the status code.
    async fn post_event(&self, body: &str) -> u16 {
        reqwest::Client::new()
            .post(&self.events_url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn flux_event(&self, name: &str, message: &str) -> String {
        json!({
            "involvedObject": {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": name, "namespace": self.ns},
            "severity": "info", "timestamp": "2026-12-02T10:00:00Z", "message": message, "reason": "NewArtifact",
            "metadata": {"source.toolkit.fluxcd.io/revision": "main@sha1:0123"},
            "reportingController": "source-controller"
        })
        .to_string()
    }
}

fn hmac_hex(token: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_failing_then_recovering_kustomization_alerts_slack_and_a_signed_webhook() {
    let w = world("notify-ks").await;
    let (sink, sink_url) = Sink::start().await;
    w.secret("slack-url", json!({"address": format!("{sink_url}/slack")}))
        .await;
    w.secret(
        "hmac",
        json!({"address": format!("{sink_url}/hmac"), "token": "s3cret"}),
    )
    .await;
    w.provider(
        "slack",
        json!({"type": "slack", "channel": "#ops", "username": "flux", "secretRef": {"name": "slack-url"}}),
    )
    .await;
    w.provider(
        "hmac",
        json!({"type": "generic-hmac", "secretRef": {"name": "hmac"}}),
    )
    .await;
    w.alert(
        "to-slack",
        json!({"providerRef": {"name": "slack"}, "eventMetadata": {"cluster": "test"},
        "eventSources": [{"kind": "Kustomization", "name": "*"}]}),
    )
    .await;
    w.alert(
        "to-hmac",
        json!({"providerRef": {"name": "hmac"}, "eventSources": [{"kind": "Kustomization", "name": "app"}]}),
    )
    .await;
    // Commit statuses on a GitHub Enterprise-shaped API (the sink): `<host>/api/v3/…`.
    w.secret("github-token", json!({"token": "ghp_test"})).await;
    w.provider("github", json!({"type": "github", "address": format!("{sink_url}/acme/web"), "secretRef": {"name": "github-token"}}))
        .await;
    w.alert("to-github", json!({"providerRef": {"name": "github"}, "eventSources": [{"kind": "Kustomization", "name": "app"}]}))
        .await;

    // A Kustomization whose manifests do not build: an error alert.
    let repo = testing::GitRepo::new("notify-ks");
    repo.write(
        "app/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, map\n",
    );
    repo.commit("broken");
    w.git_source(&repo).await;
    w.create::<driftless_api::kustomize::Kustomization>(
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "app"},
        "spec": {"interval": "10m", "prune": true, "path": "./app", "targetNamespace": w.ns,
            "sourceRef": {"kind": "GitRepository", "name": "repo"}}}),
    )
    .await;
    let slack = sink
        .wait("/slack", |r| r.body["attachments"][0]["color"] == "danger")
        .await;
    let attachment = &slack.body["attachments"][0];
    assert_eq!(attachment["author_name"], format!("kustomization/app.{}", w.ns));
    assert_eq!(slack.body["channel"], "#ops");
    assert_eq!(slack.body["username"], "flux");
    let fields: Vec<(String, String)> = attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(fields.contains(&("cluster".into(), "test".into())), "{fields:?}");
    let signed = sink.wait("/hmac", |r| r.body["severity"] == "error").await;
    assert_eq!(
        signed.headers["x-signature"],
        format!("sha256={}", hmac_hex("s3cret", &signed.raw))
    );
    assert_eq!(signed.headers["gotk-component"], "kustomize-controller");
    assert_eq!(signed.body["involvedObject"]["kind"], "Kustomization");

    // Fixed: an info alert, with the revision applied.
    repo.remove("app/broken.yaml");
    repo.write(
        "app/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  ok: \"yes\"\n",
    );
    let fixed = repo.commit("fixed");
    let token = format!("{:?}", std::time::SystemTime::now());
    Api::<GitRepository>::namespaced(w.client.clone(), &w.ns)
        .patch(
            "repo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}),
            ),
        )
        .await
        .unwrap();
    let recovered = sink
        .wait("/hmac", |r| {
            r.body["severity"] == "info" && r.body["reason"] == "ReconciliationSucceeded"
        })
        .await;
    assert_eq!(
        recovered.body["metadata"]["revision"],
        format!("main@sha1:{fixed}")
    );
    sink.wait("/slack", |r| r.body["attachments"][0]["color"] == "good")
        .await;
    let status = sink
        .wait(&format!("/api/v3/repos/acme/web/statuses/{fixed}"), |r| {
            r.body["state"] == "success"
        })
        .await;
    assert_eq!(status.headers["authorization"], "Bearer ghp_test");
    assert_eq!(status.body["description"], "reconciliation succeeded");
    let uid = Api::<Provider>::namespaced(w.client.clone(), &w.ns)
        .get("github")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    assert_eq!(status.body["context"], format!("kustomization/app/{}", &uid[..8]));
    // The commit-status event itself is not sent to Slack, as in Flux.
    assert_eq!(
        sink.count("/slack", |r| r.body["attachments"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Applied revision"))),
        0
    );
    testing::delete_namespace(&w.client, &w.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn posted_events_are_routed_once_filtered_and_never_held_up_by_a_slow_provider() {
    let w = world("notify-post").await;
    let (sink, sink_url) = Sink::start().await;
    w.provider(
        "fast",
        json!({"type": "generic", "address": format!("{sink_url}/fast")}),
    )
    .await;
    w.provider(
        "slow",
        json!({"type": "generic", "address": format!("{sink_url}/hang"), "timeout": "60s"}),
    )
    .await;
    w.alert(
        "fast",
        json!({"providerRef": {"name": "fast"}, "exclusionList": ["^ignored"],
        "eventSources": [{"kind": "GitRepository", "name": "*"}]}),
    )
    .await;
    w.alert(
        "slow",
        json!({"providerRef": {"name": "slow"}, "eventSources": [{"kind": "GitRepository", "name": "*"}]}),
    )
    .await;
    // The caches see the Alerts and Providers: an event sent now is routed.
    let probe = w.flux_event("probe", "probe");
    let started = Instant::now();
    loop {
        w.post_event(&w.flux_event("probe", &format!("probe {:?}", started.elapsed())))
            .await;
        if sink.count("/fast", |_| true) > 0 {
            break;
        }
        assert!(started.elapsed() < T, "the alert never matched");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = probe;

    // Delivered once, with Flux's header, though the other provider hangs.
    let event = w.flux_event("repo", "stored artifact for revision 'main@sha1:0123'");
    let sent = Instant::now();
    assert_eq!(w.post_event(&event).await, 202);
    let received = sink
        .wait("/fast", |r| r.body["involvedObject"]["name"] == "repo")
        .await;
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(received.headers["gotk-component"], "source-controller");
    assert_eq!(received.body["metadata"]["revision"], "main@sha1:0123");

    // The same event again is a duplicate (429); a malformed one is refused (400); an
    // excluded message is accepted and not sent.
    assert_eq!(w.post_event(&event).await, 429);
    assert_eq!(w.post_event("{not json").await, 400);
    assert_eq!(w.post_event(r#"{"severity": "info"}"#).await, 400);
    assert_eq!(w.post_event(&w.flux_event("repo", "ignored: noise")).await, 202);
    assert_eq!(w.post_event(&w.flux_event("repo", "last")).await, 202);
    sink.wait("/fast", |r| r.body["message"] == "last").await;
    assert_eq!(
        sink.count("/fast", |r| r.body["involvedObject"]["name"] == "repo"
            && r.body["message"] != "last"),
        1
    );
    assert_eq!(sink.count("/fast", |r| r.body["message"] == "ignored: noise"), 0);
    // Flux's server metrics count each answer.
    let exposed = w.metrics.encode();
    for code in ["202", "400", "429"] {
        assert!(
            exposed.contains(&format!(
                "gotk_event_http_request_duration_seconds_count{{method=\"POST\",code=\"{code}\"}}"
            )),
            "{exposed}"
        );
    }
    testing::delete_namespace(&w.client, &w.ns).await;
}

fn ready(receiver: &Receiver) -> Option<Condition> {
    receiver
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| conditions::get(c, "Ready").cloned())
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_github_receiver_checks_signatures_and_reconciles_its_resources() {
    let w = world("notify-recv").await;
    let repo = testing::GitRepo::new("notify-recv");
    repo.write(
        "app/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    );
    repo.commit("app");
    w.git_source(&repo).await;
    w.secret("webhook-token", json!({"token": "t0k3n"})).await;
    w.create::<Receiver>(
        json!({"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": "github"},
        "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
            "resources": [{"kind": "GitRepository", "name": "repo"}]}}),
    )
    .await;
    let receivers: Api<Receiver> = Api::namespaced(w.client.clone(), &w.ns);
    let receiver = testing::wait_for(&receivers, "github", T, |r: &Receiver| {
        ready(r).is_some_and(|c| c.status == "True")
    })
    .await;
    let path = receiver.status.as_ref().unwrap().webhook_path.clone().unwrap();
    assert!(ready(&receiver).unwrap().message.contains(&path));
    let url = format!("{}{path}", w.receiver_url);
    let http = reqwest::Client::new();
    let call = |body: &str, event: &str, signature: Option<String>| {
        let mut request = http
            .post(&url)
            .header("X-GitHub-Event", event)
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let body = r#"{"ref": "refs/heads/main", "after": "abc"}"#;
    let good = format!("sha256={}", hmac_hex("t0k3n", body.as_bytes()));

    assert_eq!(call(body, "push", None).await, 401);
    assert_eq!(
        call(
            body,
            "push",
            Some(format!("sha256={}", hmac_hex("wrong", body.as_bytes())))
        )
        .await,
        401
    );
    assert_eq!(call(&"x".repeat(4 << 20), "push", Some(good.clone())).await, 413);
    assert_eq!(
        call("{}", "ping", Some(format!("sha256={}", hmac_hex("t0k3n", b"{}")))).await,
        200
    );
    assert_eq!(call(body, "push", Some(good.clone())).await, 200);
    // The same signed delivery again is a replay.
    assert_eq!(call(body, "push", Some(good)).await, 409);

    // The GitRepository was asked to reconcile, and did.
    let sources: Api<GitRepository> = Api::namespaced(w.client.clone(), &w.ns);
    let reconciled = testing::wait_for(&sources, "repo", T, |g: &GitRepository| {
        let asked = g
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("reconcile.fluxcd.io/requestedAt"))
            .cloned();
        asked.is_some()
            && g.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.clone())
                == asked
    })
    .await;
    assert!(reconciled.status.unwrap().artifact.is_some());

    // GitLab compares its token; Quay cannot sign, so its payload must be a push notification.
    for (name, kind) in [("gitlab", "gitlab"), ("quay", "quay"), ("cdevents", "cdevents")] {
        w.create::<Receiver>(
            json!({"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
            "metadata": {"name": name},
            "spec": {"type": kind, "secretRef": {"name": "webhook-token"},
                "resources": [{"kind": "GitRepository", "name": "repo"}]}}),
        )
        .await;
    }
    let base = w.receiver_url.clone();
    let path_of = |name: &'static str| {
        let (receivers, base) = (receivers.clone(), base.clone());
        async move {
            let r = testing::wait_for(&receivers, name, T, |r: &Receiver| {
                ready(r).is_some_and(|c| c.status == "True")
            })
            .await;
            format!("{base}{}", r.status.unwrap().webhook_path.unwrap())
        }
    };
    let gitlab = path_of("gitlab").await;
    let status =
        |request: reqwest::RequestBuilder| async move { request.send().await.unwrap().status().as_u16() };
    assert_eq!(
        status(http.post(&gitlab).header("X-Gitlab-Token", "wrong").body("{}")).await,
        401
    );
    assert_eq!(
        status(http.post(&gitlab).header("X-Gitlab-Token", "t0k3n").body("{}")).await,
        200
    );
    let quay = path_of("quay").await;
    assert_eq!(status(http.post(&quay).body(r#"{"hello": "world"}"#)).await, 400);
    assert_eq!(
        status(
            http.post(&quay)
                .body(r#"{"docker_url": "quay.io/acme/web", "updated_tags": ["v1"]}"#)
        )
        .await,
        200
    );
    // CDEvents: unsigned, so the body must be a CDEvent.
    let cdevents = path_of("cdevents").await;
    let published = json!({
        "context": {"version": "0.4.1", "id": "271069a8", "source": "/ci/pipelines",
            "type": "dev.cdevents.artifact.published.0.2.0", "timestamp": "2026-12-03T07:00:00Z"},
        "subject": {"id": "pkg:oci/app@sha256:abc", "content": {}}});
    assert_eq!(
        status(http.post(&cdevents).body(r#"{"hello": "world"}"#)).await,
        400
    );
    assert_eq!(
        status(
            http.post(&cdevents)
                .header("Ce-Type", "dev.cdevents.artifact.published.0.2.0")
                .body(published.to_string())
        )
        .await,
        200
    );
    testing::delete_namespace(&w.client, &w.ns).await;
}

/// The test key pair of `shared/runtime/testdata` (a Google service account's, a GitHub App's,
/// an OIDC issuer's).
const TEST_KEY: &str = include_str!("../../shared/runtime/testdata/rsa-test-key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("../../shared/runtime/testdata/rsa-test-key.pub.pem");
const TEST_JWK: &str = include_str!("../../shared/runtime/testdata/rsa-test-key.jwk.json");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RS256 JWT of `claims` signed with the test key (kid `test`).
fn signed(claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(TEST_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Google Pub/Sub (a service account key exchanged at its token URI), Azure Event Hubs (a
/// connection string's shared access signature, over HTTPS to a sink whose CA the Provider's
/// certSecretRef gives), OpenTelemetry (an OTLP span) and a GitHub commit status through a
/// GitHub App (an installation token minted once and reused), each reaching the sink as its
/// service expects.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn cloud_providers_and_a_github_app_deliver_as_their_services_expect() {
    let (sink, sink_url) = Sink::start().await;
    let w = world_with(
        "notify-cloud",
        notification_controller::GoogleEndpoints {
            pubsub: sink_url.clone(),
            pubsub_authenticated: true,
            id_token_keys: String::new(),
        },
    )
    .await;
    let (tls_sink, tls_url) = Sink::start_tls().await;
    let tls_host = tls_url.trim_start_matches("https://");
    let service_account = json!({"type": "service_account", "client_email": "flux@proj.iam.gserviceaccount.com",
        "private_key": TEST_KEY, "private_key_id": "k1", "token_uri": format!("{sink_url}/token")});
    w.secret(
        "pubsub",
        json!({"token": service_account.to_string(), "headers": "team: web"}),
    )
    .await;
    w.secret(
        "eventhub",
        json!({"address": format!(
        "Endpoint=sb://{tls_host}/;SharedAccessKeyName=send;SharedAccessKey=s3cr3t;EntityPath=events")}),
    )
    .await;
    w.secret(
        "sink-ca",
        json!({"ca.crt": std::fs::read_to_string(env("SOURCES_CA_FILE")).unwrap()}),
    )
    .await;
    w.secret(
        "github-app",
        json!({"githubAppID": "42", "githubAppInstallationID": "7",
        "githubAppPrivateKey": TEST_KEY, "githubAppBaseURL": sink_url}),
    )
    .await;
    w.provider("pubsub", json!({"type": "googlepubsub", "address": "proj", "channel": "flux", "secretRef": {"name": "pubsub"}})).await;
    w.provider(
        "eventhub",
        json!({"type": "azureeventhub", "secretRef": {"name": "eventhub"}, "certSecretRef": {"name": "sink-ca"}}),
    )
    .await;
    w.provider("otel", json!({"type": "otel", "address": sink_url}))
        .await;
    w.provider("github", json!({"type": "github", "address": format!("{sink_url}/acme/app"), "secretRef": {"name": "github-app"}})).await;
    for provider in ["pubsub", "eventhub", "otel", "github"] {
        w.alert(
            provider,
            json!({"providerRef": {"name": provider},
            "eventSources": [{"kind": "GitRepository", "name": "*"}]}),
        )
        .await;
    }
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let event = |message: &str| {
        json!({
            "involvedObject": {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "repo", "namespace": w.ns},
            "severity": "error", "timestamp": "2026-12-02T10:00:00Z", "message": message, "reason": "GitOperationFailed",
            "metadata": {"source.toolkit.fluxcd.io/revision": format!("main@sha1:{sha}")},
            "reportingController": "source-controller"
        })
        .to_string()
    };
    // Alerts and Providers reach the controller's caches in a moment; post until delivered.
    let statuses = format!("/api/v3/repos/acme/app/statuses/{sha}");
    let deadline = Instant::now() + T;
    while sink.count(&statuses, |_| true) == 0 {
        assert!(Instant::now() < deadline, "no commit status set");
        assert_eq!(
            w.post_event(&event(&format!("clone failed {:?}", Instant::now())))
                .await,
            202
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let token = sink.wait("/token", |_| true).await;
    assert!(
        String::from_utf8_lossy(&token.raw)
            .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    );
    let published = sink.wait("/v1/projects/proj/topics/flux:publish", |_| true).await;
    assert_eq!(published.headers["authorization"], "Bearer ya29.test");
    let message = &published.body["messages"][0];
    assert_eq!(message["attributes"]["team"], "web");
    use base64::Engine;
    let data: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(message["data"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["reason"], "GitOperationFailed");

    let hub = tls_sink.wait("/events/messages", |_| true).await;
    assert!(
        hub.headers["authorization"].starts_with("SharedAccessSignature sr=https%3a%2f%2f127.0.0.1%3a"),
        "{:?}",
        hub.headers
    );
    assert_eq!(hub.body["involvedObject"]["name"], "repo");

    let span = sink.wait("/v1/traces", |_| true).await;
    let span = &span.body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["name"], format!("GitRepository: {}/repo", w.ns));
    assert_eq!(span["status"]["code"], 2);

    let minted = sink.wait("/app/installations/7/access_tokens", |_| true).await;
    let app_jwt = minted.headers["authorization"].strip_prefix("Bearer ").unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(
        app_jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["iss"], "42");
    let status = sink.wait(&statuses, |_| true).await;
    assert_eq!(status.headers["authorization"], "Bearer ghs_test");
    assert_eq!(status.body["state"], "failure");

    // A second status reuses the installation token.
    assert_eq!(w.post_event(&event("clone failed again")).await, 202);
    let deadline = Instant::now() + T;
    while sink.count(&statuses, |_| true) < 2 {
        assert!(Instant::now() < deadline, "no second commit status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.count("/app/installations/7/access_tokens", |_| true), 1);
    testing::delete_namespace(&w.client, &w.ns).await;
}

/// A local OIDC issuer (discovery document and keys) serving `/.well-known/openid-configuration`
/// and `/jwks`; its URL.
async fn oidc_issuer() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = url.clone();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let issuer = issuer.clone();
                async move {
                    json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
                        "id_token_signing_alg_values_supported": ["RS256"]})
                    .to_string()
                }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(|| async { format!(r#"{{"keys": [{TEST_JWK}]}}"#) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// generic-oidc checks the token against its issuer's keys, audience and CEL validations; gcr
/// checks a Google ID token (keys from the endpoint Google publishes them at) for the Secret's
/// audience and verified email; both reconcile what they name only when the token passes, and
/// a generic-oidc Receiver without validations is refused.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn oidc_and_gcr_receivers_accept_only_tokens_their_issuers_signed() {
    let issuer = oidc_issuer().await;
    let mut google = notification_controller::GoogleEndpoints::from_env();
    google.id_token_keys = format!("{issuer}/jwks");
    let w = world_with("notify-oidc", google).await;
    let repo = testing::GitRepo::new("notify-oidc");
    repo.write(
        "app/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    );
    repo.commit("app");
    w.git_source(&repo).await;
    w.create::<Receiver>(json!({"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": "oidc"},
        "spec": {"type": "generic-oidc", "resources": [{"kind": "GitRepository", "name": "repo"}],
            "oidcProviders": [{"issuerURL": issuer, "audience": "driftless",
                "variables": [{"name": "repo", "expression": "claims.repository"}],
                "validations": [{"expression": "vars.repo == 'acme/app'", "message": "wrong repository"}]}]}}))
        .await;
    w.create::<Receiver>(
        json!({"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": "unvalidated"},
        "spec": {"type": "generic-oidc", "resources": [{"kind": "GitRepository", "name": "repo"}],
            "oidcProviders": [{"issuerURL": issuer}]}}),
    )
    .await;
    w.secret("gcr", json!({"token": "t0k3n", "email": "pusher@proj.iam.gserviceaccount.com", "audience": "https://hooks.example/gcr"})).await;
    w.create::<Receiver>(json!({"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
        "metadata": {"name": "gcr"},
        "spec": {"type": "gcr", "secretRef": {"name": "gcr"}, "resources": [{"kind": "GitRepository", "name": "repo"}]}}))
        .await;
    let receivers: Api<Receiver> = Api::namespaced(w.client.clone(), &w.ns);
    let refused = testing::wait_for(&receivers, "unvalidated", T, |r: &Receiver| {
        ready(r).is_some_and(|c| c.status == "False")
    })
    .await;
    assert!(
        ready(&refused)
            .unwrap()
            .message
            .contains("at least one validation is required")
    );
    let url_of = |name: &'static str| {
        let (receivers, base) = (receivers.clone(), w.receiver_url.clone());
        async move {
            let r = testing::wait_for(&receivers, name, T, |r: &Receiver| {
                ready(r).is_some_and(|c| c.status == "True")
            })
            .await;
            format!("{base}{}", r.status.unwrap().webhook_path.unwrap())
        }
    };
    let http = reqwest::Client::new();
    let post = |url: String, token: Option<String>, body: String| {
        let mut request = http.post(url).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let requested = || async {
        Api::<GitRepository>::namespaced(w.client.clone(), &w.ns)
            .get("repo")
            .await
            .unwrap()
            .metadata
            .annotations
            .and_then(|a| a.get("reconcile.fluxcd.io/requestedAt").cloned())
    };

    let oidc = url_of("oidc").await;
    let token = |repository: &str, audience: &str| {
        signed(
            json!({"iss": issuer, "aud": audience, "sub": "ci", "repository": repository,
            "iat": now(), "exp": now() + 300}),
        )
    };
    assert_eq!(post(oidc.clone(), None, "{}".into()).await, 400);
    assert_eq!(
        post(oidc.clone(), Some(token("evil/app", "driftless")), "{}".into()).await,
        400
    );
    assert_eq!(
        post(oidc.clone(), Some(token("acme/app", "someone-else")), "{}".into()).await,
        400
    );
    let forged = token("acme/app", "driftless");
    let forged = format!("{}x", &forged[..forged.len() - 1]);
    assert_eq!(post(oidc.clone(), Some(forged), "{}".into()).await, 400);
    // Signed by the issuer, but for no audience at all.
    let unaddressed = signed(json!({"iss": issuer, "sub": "ci", "repository": "acme/app",
        "iat": now(), "exp": now() + 300}));
    assert_eq!(post(oidc.clone(), Some(unaddressed), "{}".into()).await, 400);
    assert_eq!(requested().await, None);
    assert_eq!(
        post(oidc, Some(token("acme/app", "driftless")), "{}".into()).await,
        200
    );
    let first = requested().await;
    assert!(first.is_some());

    let gcr = url_of("gcr").await;
    use base64::Engine;
    let push = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode(
        r#"{"action": "INSERT", "digest": "gcr.io/proj/app@sha256:abc", "tag": "gcr.io/proj/app:v2"}"#),
        "messageId": "1"}, "subscription": "projects/proj/subscriptions/gcr"})
    .to_string();
    let google_token = |email: &str| {
        signed(
            json!({"iss": "https://accounts.google.com", "aud": "https://hooks.example/gcr",
            "email": email, "email_verified": true, "iat": now(), "exp": now() + 300}),
        )
    };
    assert_eq!(
        post(
            gcr.clone(),
            Some(google_token("intruder@proj.iam.gserviceaccount.com")),
            push.clone()
        )
        .await,
        400
    );
    assert_eq!(post(gcr.clone(), None, push.clone()).await, 400);
    assert_eq!(
        post(
            gcr,
            Some(google_token("pusher@proj.iam.gserviceaccount.com")),
            push
        )
        .await,
        200
    );
    assert_ne!(requested().await, first);
    testing::delete_namespace(&w.client, &w.ns).await;
}

/// The nats provider publishes the event JSON on its subject at the testenv's NATS server with
/// the Secret's user and password; a wrong password is reported on the Alert.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn nats_receives_events_on_the_providers_subject() {
    let w = world("notify-nats").await;
    let subscriber = async_nats::ConnectOptions::new()
        .user_and_password(env("NATS_USER"), env("NATS_PASSWORD"))
        .connect(env("NATS_URL"))
        .await
        .unwrap();
    let subject = format!("flux.{}", w.ns);
    let mut messages = subscriber.subscribe(subject.clone()).await.unwrap();
    subscriber.flush().await.unwrap();
    w.secret(
        "nats",
        json!({"username": env("NATS_USER"), "password": env("NATS_PASSWORD")}),
    )
    .await;
    w.secret(
        "nats-wrong",
        json!({"username": env("NATS_USER"), "password": "not-the-password-42"}),
    )
    .await;
    w.provider("nats", json!({"type": "nats", "address": env("NATS_URL"), "channel": subject, "secretRef": {"name": "nats"}})).await;
    w.provider("nats-wrong", json!({"type": "nats", "address": env("NATS_URL"), "channel": subject, "secretRef": {"name": "nats-wrong"}})).await;
    for provider in ["nats", "nats-wrong"] {
        w.alert(
            provider,
            json!({"providerRef": {"name": provider},
            "eventSources": [{"kind": "GitRepository", "name": "*"}]}),
        )
        .await;
    }
    // Alerts reach the controller's caches in a moment: post until one arrives.
    let message = loop {
        assert_eq!(
            w.post_event(&w.flux_event("repo", &format!("fetched {:?}", Instant::now())))
                .await,
            202
        );
        if let Ok(Some(message)) = tokio::time::timeout(
            Duration::from_millis(500),
            futures::StreamExt::next(&mut messages),
        )
        .await
        {
            break message;
        }
    };
    let event: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["involvedObject"]["name"], "repo");
    assert_eq!(event["reason"], "NewArtifact");
    assert_eq!(event["metadata"]["revision"], "main@sha1:0123");
    let failed = testing::wait_for_event(&w.client, &w.ns, T, |e| {
        e.reason.as_deref() == Some("NotificationFailed")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("nats-wrong")
    })
    .await;
    let note = failed.note.unwrap_or_default();
    assert!(
        note.contains(&format!("error publishing event to subject {subject}")),
        "{note}"
    );
    assert!(
        !note.contains("not-the-password-42"),
        "the password leaked: {note}"
    );
    testing::delete_namespace(&w.client, &w.ns).await;
}
