//! HelmRepository end to end against the testenv's Helm repository server (lighttpd): public,
//! basic auth (`/private`), HTTPS with the testenv CA; the index published as an artifact with
//! Flux's revision (sha256 of the bytes served).

use crate::support;

use driftless_api::meta::FINALIZER;
use driftless_api::source::HelmRepository;
use driftless_runtime::{conditions, testing};
use sha2::{Digest, Sha256};
use source_controller::helm_repository::{DEFAULT_INDEX_MAX_SIZE, HelmRepositoryReconciler};
use support::{Harness, NEGATIVE, T, conds, env, ready};

type H = Harness<HelmRepository>;

/// An index with `podinfo` at `versions` (in the order given).
fn index(versions: &[&str]) -> String {
    let mut out = String::from("apiVersion: v1\nentries:\n  podinfo:\n");
    for v in versions {
        out.push_str(&format!(
            "  - name: podinfo\n    version: {v}\n    apiVersion: v2\n    urls:\n    - podinfo-{v}.tgz\n    digest: \"0\"\n"
        ));
    }
    out.push_str("generated: \"2026-12-02T00:00:00Z\"\n");
    out
}

/// Writes `text` as `<HELM_REPO_DIR>/<dir>/index.yaml`; the revision Flux gives it.
fn serve(dir: &str, text: &str) -> String {
    let path = std::path::Path::new(&env("HELM_REPO_DIR")).join(dir);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("index.yaml"), text).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

async fn wait_ready(h: &H, name: &str, revision: &str) -> HelmRepository {
    testing::wait_for(&h.objects, name, T, |r: &HelmRepository| {
        ready(r).is_some_and(|c| c.status == "True")
            && r.status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .is_some_and(|a| a.revision == revision)
    })
    .await
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn an_index_is_published_with_fluxs_revision_and_follows_changes() {
    let h = support::harness("helmrepo", |s| {
        HelmRepositoryReconciler::new(s, DEFAULT_INDEX_MAX_SIZE)
    })
    .await;
    let dir = h.ns.clone();
    let revision = serve(&dir, &index(&["6.0.0", "6.10.1", "6.9.0"]));
    let url = format!("{}/{dir}/", env("HELM_REPO_URL"));
    h.create("podinfo", serde_json::json!({"url": url, "interval": "10m"}))
        .await;
    let r = wait_ready(&h, "podinfo", &revision).await;
    let status = r.status.clone().unwrap();
    let artifact = status.artifact.clone().unwrap();
    assert_eq!(
        ready(&r).unwrap().message,
        format!("stored artifact: revision '{revision}'")
    );
    assert!(
        artifact.path.ends_with(&format!(
            "helmrepository/{}/podinfo/index-{}.yaml",
            h.ns,
            revision.trim_start_matches("sha256:")
        )),
        "{}",
        artifact.path
    );
    assert!(status.url.as_deref().unwrap().ends_with("/podinfo/index.yaml"));
    for negative in NEGATIVE {
        assert!(conditions::get(&conds(&r), negative).is_none(), "{negative}");
    }
    // Served as the server sent it; the digest is that of what is served.
    let served = reqwest::get(status.url.as_deref().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.as_ref(), index(&["6.0.0", "6.10.1", "6.9.0"]).as_bytes());
    assert_eq!(
        artifact.digest,
        format!("sha256:{}", hex::encode(Sha256::digest(&served)))
    );

    // A new index: a new revision on the next reconcile.
    let newer = serve(&dir, &index(&["6.0.0", "6.11.0"]));
    h.request("podinfo", "1").await;
    wait_ready(&h, "podinfo", &newer).await;

    // A malformed index stalls with IndexationFailed; the last good artifact stays.
    serve(&dir, "entries: [\n");
    h.request("podinfo", "2").await;
    let r = h
        .wait_failed(
            "podinfo",
            "IndexationFailed",
            "failed to load Helm repository from index YAML",
        )
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));
    assert_eq!(r.status.unwrap().artifact.unwrap().revision, newer);

    // An oci:// URL with the default type stalls.
    h.create(
        "wrongtype",
        serde_json::json!({"url": "oci://registry.example/charts", "interval": "10m"}),
    )
    .await;
    let r = h
        .wait_failed("wrongtype", "URLInvalid", "'oci' URL scheme cannot be used")
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));

    // Nothing at the URL: FetchFailed with the server's answer, retried.
    h.create(
        "missing",
        serde_json::json!({"url": format!("{}/no-such-dir", env("HELM_REPO_URL")), "interval": "10m"}),
    )
    .await;
    let r = h.wait_failed("missing", "Failed", "404").await;
    assert!(conditions::is_true(&conds(&r), "FetchFailed"));
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn credentials_and_certificates_reach_a_protected_repository() {
    let h = support::harness("helmrepo-auth", |s| {
        HelmRepositoryReconciler::new(s, DEFAULT_INDEX_MAX_SIZE)
    })
    .await;
    let dir = h.ns.clone();
    let revision = serve(&dir, &index(&["1.0.0"]));
    let private = format!("{}/{dir}", env("HELM_REPO_PRIVATE_URL"));

    // Without credentials the server says 401.
    h.create(
        "anonymous",
        serde_json::json!({"url": private, "interval": "10m"}),
    )
    .await;
    h.wait_failed("anonymous", "Failed", "401").await;

    // A Secret that appears later: the repository recovers on its own.
    h.create(
        "basic",
        serde_json::json!({"url": private, "interval": "10m", "secretRef": {"name": "helm-auth"}}),
    )
    .await;
    h.wait_failed("basic", "AuthenticationFailed", "secret not found")
        .await;
    h.secret(
        "helm-auth",
        &[
            ("username", env("HELM_REPO_USER")),
            ("password", env("HELM_REPO_PASSWORD")),
        ],
    )
    .await;
    wait_ready(&h, "basic", &revision).await;

    // Half the credentials: a spec mistake, stalled.
    h.secret("half", &[("username", env("HELM_REPO_USER"))]).await;
    h.create(
        "half",
        serde_json::json!({"url": private, "interval": "10m", "secretRef": {"name": "half"}}),
    )
    .await;
    let r = h
        .wait_failed("half", "AuthenticationFailed", "both 'username' and 'password'")
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));

    // HTTPS: the testenv CA from certSecretRef; without it the certificate is refused.
    let https = format!("{}/{dir}", env("HELM_REPO_HTTPS_URL"));
    h.secret(
        "ca",
        &[("ca.crt", std::fs::read_to_string(env("SOURCES_CA_FILE")).unwrap())],
    )
    .await;
    h.create(
        "tls",
        serde_json::json!({"url": https, "interval": "10m", "certSecretRef": {"name": "ca"}}),
    )
    .await;
    wait_ready(&h, "tls", &revision).await;
    // Flux's deprecated fallback: without certSecretRef, the CA of the secretRef is used.
    h.create(
        "tls-in-secret-ref",
        serde_json::json!({"url": https, "interval": "10m", "secretRef": {"name": "ca"}}),
    )
    .await;
    wait_ready(&h, "tls-in-secret-ref", &revision).await;
    h.create("untrusted", serde_json::json!({"url": https, "interval": "10m"}))
        .await;
    h.wait_failed("untrusted", "Failed", "failed to fetch").await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn oci_repositories_hold_data_only_and_large_indexes_are_refused() {
    let h = support::harness("helmrepo-oci", |s| HelmRepositoryReconciler::new(s, 512)).await;
    let dir = h.ns.clone();
    let small = serve(&dir, &index(&["1.0.0"]));
    let url = format!("{}/{dir}", env("HELM_REPO_URL"));
    h.create("managed", serde_json::json!({"url": url, "interval": "10m"}))
        .await;
    wait_ready(&h, "managed", &small).await;

    // Switched to type oci: a static data holder, its status and finalizer go.
    h.patch_spec(
        "managed",
        serde_json::json!({"type": "oci", "url": "oci://registry.example/charts"}),
    )
    .await;
    testing::wait_for(&h.objects, "managed", T, |r: &HelmRepository| {
        let status = r.status.clone().unwrap_or_default();
        status.conditions.is_none()
            && status.artifact.is_none()
            && status.url.is_none()
            && !r.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER)
    })
    .await;

    // Larger than --helm-index-max-size (512 bytes here).
    serve(
        &dir,
        &index(&["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]),
    );
    h.create("large", serde_json::json!({"url": url, "interval": "10m"}))
        .await;
    h.wait_failed(
        "large",
        "Failed",
        "exceeds the maximum index file size of 512 bytes",
    )
    .await;
    h.done().await;
}
