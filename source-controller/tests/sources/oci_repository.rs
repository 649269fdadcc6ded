//! OCIRepository end to end against the testenv's real registry: artifacts pushed in Flux's
//! layout (as `driftless push artifact` / `flux push artifact` write them) are pulled, verified
//! and republished as source artifacts.

use crate::support;

use driftless_api::source::OCIRepository;
use driftless_artifact::{fetch::Fetcher, oci};
use driftless_runtime::{conditions, testing};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, api::PostParams};
use oci_client::{
    client::{Config, ImageLayer},
    secrets::RegistryAuth,
};
use source_controller::oci_repository::OCIRepositoryReconciler;
use std::collections::BTreeMap;
use support::{Harness, NEGATIVE, T, conds, env, ready};

type H = Harness<OCIRepository>;

async fn harness(prefix: &str) -> H {
    support::harness(prefix, OCIRepositoryReconciler::new).await
}

/// Pushes a directory with `files` as `<repo>:<tag>`; returns the manifest digest.
async fn push(repo: &str, tag: &str, files: &[(&str, &str)], revision: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    let meta = oci::PushMetadata {
        source: "https://example.com/repo".into(),
        revision: revision.into(),
        annotations: BTreeMap::new(),
    };
    oci::push_dir(
        &oci::client(true),
        &format!("{}/{repo}:{tag}", env("OCI_REGISTRY")),
        &RegistryAuth::Anonymous,
        dir.path(),
        &meta,
        "2026-11-23T00:00:00Z",
    )
    .await
    .unwrap()
}

async fn wait_ready(h: &H, name: &str, revision: &str) -> OCIRepository {
    testing::wait_for(&h.objects, name, T, |r: &OCIRepository| {
        ready(r).is_some_and(|c| c.status == "True")
            && r.status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .is_some_and(|a| a.revision == revision)
    })
    .await
}

fn url(repo: &str) -> String {
    format!("oci://{}/{repo}", env("OCI_REGISTRY"))
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn tags_semver_and_digests_resolve_and_the_content_is_republished() {
    let h = harness("oci").await;
    let repo = format!("apps-{:08x}", rand::random::<u32>());
    let d100 = push(
        &repo,
        "v1.0.0",
        &[("app.yaml", "v: 1.0.0\n"), ("img.png", "png")],
        "main@sha1:aaaa",
    )
    .await;
    let d110 = push(&repo, "v1.1.0", &[("app.yaml", "v: 1.1.0\n")], "main@sha1:bbbb").await;
    push(&repo, "v2.0.0", &[("app.yaml", "v: 2.0.0\n")], "main@sha1:cccc").await;

    h.create(
        "tag",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"tag": "v1.0.0"}}),
    )
    .await;
    h.create("semver", serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"semver": ">=1.0.0 <2.0.0"}}))
        .await;
    h.create(
        "digest",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"digest": d100}}),
    )
    .await;

    let r = wait_ready(&h, "tag", &format!("v1.0.0@{d100}")).await;
    assert!(
        conditions::check_kstatus(&conds(&r), NEGATIVE).is_empty(),
        "{:?}",
        conds(&r)
    );
    let st = r.status.clone().unwrap();
    let a = st.artifact.unwrap();
    assert_eq!(
        a.path,
        format!(
            "ocirepository/{}/tag/{}.tar.gz",
            h.ns,
            d100.trim_start_matches("sha256:")
        )
    );
    // The origin revision travels in the artifact metadata.
    assert_eq!(
        a.metadata
            .as_ref()
            .unwrap()
            .get("org.opencontainers.image.revision")
            .map(String::as_str),
        Some("main@sha1:aaaa")
    );
    assert_eq!(
        st.url.unwrap(),
        format!(
            "http://{}/ocirepository/{}/tag/latest.tar.gz",
            h.artifact_addr, h.ns
        )
    );
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&a.url, &a.digest, out.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("app.yaml")).unwrap(),
        "v: 1.0.0\n"
    );
    assert!(
        !out.path().join("img.png").exists(),
        "default exclusions apply to extracted layers"
    );

    wait_ready(&h, "semver", &format!("v1.1.0@{d110}")).await;
    wait_ready(&h, "digest", &d100).await;

    // Unchanged manifest: no new pull, the same artifact.
    h.request("tag", "again").await;
    let again = testing::wait_for(&h.objects, "tag", T, |r: &OCIRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some("again")
    })
    .await;
    assert_eq!(again.status.unwrap().artifact.unwrap(), a);

    // A moved tag is picked up.
    let d100b = push(
        &repo,
        "v1.0.0",
        &[("app.yaml", "v: 1.0.0-fixed\n")],
        "main@sha1:dddd",
    )
    .await;
    h.request("tag", "moved").await;
    wait_ready(&h, "tag", &format!("v1.0.0@{d100b}")).await;

    // layerSelector copy: the layer is stored byte for byte.
    h.create(
        "copy",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"tag": "v2.0.0"},
        "layerSelector": {"mediaType": oci::FLUX_CONTENT_MEDIA_TYPE, "operation": "copy"}}),
    )
    .await;
    let c = testing::wait_for(&h.objects, "copy", T, |r: &OCIRepository| {
        ready(r).is_some_and(|c| c.status == "True")
    })
    .await;
    let ca = c.status.unwrap().artifact.unwrap();
    let image: oci_client::Reference = format!("{}/{repo}:v2.0.0", env("OCI_REGISTRY")).parse().unwrap();
    let (manifest, _) = oci::client(true)
        .pull_image_manifest(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(
        ca.digest, manifest.layers[0].digest,
        "copy must store the layer as-is"
    );
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn registry_failures_and_unsafe_layers_are_reported() {
    let h = harness("oci-fail").await;
    let repo = format!("fail-{:08x}", rand::random::<u32>());
    push(&repo, "v1", &[("a.yaml", "a: 1\n")], "main@sha1:aaaa").await;

    h.create(
        "notag",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"tag": "nope"}}),
    )
    .await;
    h.wait_failed(
        "notag",
        "OCIArtifactPullFailed",
        "failed to determine artifact digest",
    )
    .await;

    h.create(
        "nosemver",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"semver": "5.x"}}),
    )
    .await;
    h.wait_failed(
        "nosemver",
        "OCIArtifactPullFailed",
        "no match found for semver: 5.x",
    )
    .await;

    h.create("unreachable", serde_json::json!({"url": "oci://127.0.0.1:1/x", "interval": "1m", "insecure": true, "timeout": "5s"}))
        .await;
    let r = h
        .wait_failed("unreachable", "OCIArtifactPullFailed", "127.0.0.1:1")
        .await;
    assert!(conditions::is_true(&conds(&r), "FetchFailed"));

    h.create(
        "noselect",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"tag": "v1"},
        "layerSelector": {"mediaType": "application/x-nothing"}}),
    )
    .await;
    h.wait_failed(
        "noselect",
        "OCIArtifactLayerOperationFailed",
        "application/x-nothing",
    )
    .await;

    h.create(
        "badurl",
        serde_json::json!({"url": "oci://hostonly", "interval": "1m"}),
    )
    .await;
    let r = h.wait_failed("badurl", "URLInvalid", "invalid OCI URL").await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));

    // A layer whose tarball has a `../` entry: refused, nothing written outside.
    let evil = {
        use flate2::{Compression, write::GzEncoder};
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let mut hdr = tar::Header::new_old();
        let name = b"../../../../tmp/driftless-oci-escape";
        hdr.as_old_mut().name[..name.len()].copy_from_slice(name);
        hdr.set_size(5);
        hdr.set_entry_type(tar::EntryType::Regular);
        hdr.set_mode(0o644);
        hdr.set_cksum();
        b.append(&hdr, &b"pwned"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap()
    };
    let image: oci_client::Reference = format!("{}/{repo}:evil", env("OCI_REGISTRY")).parse().unwrap();
    let layers = vec![ImageLayer::new(evil, oci::FLUX_CONTENT_MEDIA_TYPE.into(), None)];
    let config = Config::new(b"{}".to_vec(), oci::FLUX_CONFIG_MEDIA_TYPE.into(), None);
    oci::client(true)
        .push(&image, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .unwrap();
    h.create(
        "evil",
        serde_json::json!({"url": url(&repo), "interval": "1m", "insecure": true, "ref": {"tag": "evil"}}),
    )
    .await;
    h.wait_failed("evil", "OCIArtifactLayerOperationFailed", "illegal path")
        .await;
    assert!(!std::path::Path::new("/tmp/driftless-oci-escape").exists());
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_tls_registry_with_a_private_ca_needs_cert_secret_ref() {
    let h = harness("oci-tls").await;
    let ca = std::fs::read(env("SOURCES_CA_FILE")).unwrap();
    let repo = format!("tls-{:08x}", rand::random::<u32>());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
    let meta = oci::PushMetadata {
        source: "s".into(),
        revision: "main@sha1:aaaa".into(),
        annotations: BTreeMap::new(),
    };
    let reference = format!("{}/{repo}:v1", env("OCI_REGISTRY_TLS"));
    let digest = oci::push_dir(
        &oci::connect(&oci::Connection {
            ca: Some(&ca),
            ..Default::default()
        }),
        &reference,
        &RegistryAuth::Anonymous,
        dir.path(),
        &meta,
        "t",
    )
    .await
    .unwrap();
    h.secret("registry-ca", &[("ca.crt", String::from_utf8(ca).unwrap())])
        .await;
    let url = format!("oci://{}/{repo}", env("OCI_REGISTRY_TLS"));
    h.create("trusted", serde_json::json!({"url": url, "interval": "1h", "ref": {"tag": "v1"}, "certSecretRef": {"name": "registry-ca"}}))
        .await;
    wait_ready(&h, "trusted", &format!("v1@{digest}")).await;
    h.create(
        "untrusted",
        serde_json::json!({"url": url, "interval": "1h", "ref": {"tag": "v1"}, "timeout": "10s"}),
    )
    .await;
    h.wait_failed(
        "untrusted",
        "OCIArtifactPullFailed",
        "failed to determine artifact digest",
    )
    .await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn proxy_secret_ref_routes_registry_calls_through_the_proxy() {
    let h = harness("oci-proxy").await;
    let repo = format!("proxied-{:08x}", rand::random::<u32>());
    let digest = push(&repo, "v1", &[("a.yaml", "a: 1\n")], "main@sha1:aaaa").await;
    h.secret(
        "proxy",
        &[
            ("address", env("PROXY_ADDRESS")),
            ("username", env("PROXY_USER")),
            ("password", env("PROXY_PASSWORD")),
        ],
    )
    .await;
    h.create(
        "via-proxy",
        serde_json::json!({"url": url(&repo), "interval": "1h", "insecure": true, "ref": {"tag": "v1"},
        "proxySecretRef": {"name": "proxy"}}),
    )
    .await;
    wait_ready(&h, "via-proxy", &format!("v1@{digest}")).await;
    let log = std::fs::read_to_string(env("PROXY_LOG")).unwrap();
    assert!(log.contains(&repo), "the proxy did not see the registry calls");
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_registry_requiring_client_certificates_gets_them_from_cert_secret_ref() {
    let h = harness("oci-mtls").await;
    let repo = format!("mtls-{:08x}", rand::random::<u32>());
    // Pushed over plain HTTP; the mTLS registry serves the same storage.
    let digest = push(&repo, "v1", &[("a.yaml", "a: 1\n")], "main@sha1:aaaa").await;
    let read = |k: &str| std::fs::read_to_string(env(k)).unwrap();
    h.secret(
        "client-tls",
        &[
            ("ca.crt", read("SOURCES_CA_FILE")),
            ("tls.crt", read("GIT_CLIENT_CERT")),
            ("tls.key", read("GIT_CLIENT_KEY")),
        ],
    )
    .await;
    h.secret("ca-only", &[("ca.crt", read("SOURCES_CA_FILE"))]).await;
    h.secret("cert-only", &[("tls.crt", read("GIT_CLIENT_CERT"))])
        .await;
    let url = format!("oci://{}/{repo}", env("OCI_REGISTRY_MTLS"));
    let spec = |secret: &str| {
        serde_json::json!({"url": url, "interval": "1h", "timeout": "10s", "ref": {"semver": ">=1.0.0-0"},
        "certSecretRef": {"name": secret}})
    };
    h.create("with-cert", spec("client-tls")).await;
    wait_ready(&h, "with-cert", &format!("v1@{digest}")).await;

    h.create("without-cert", spec("ca-only")).await;
    let r = h
        .wait_failed("without-cert", "OCIArtifactPullFailed", "failed to list tags")
        .await;
    let message = ready(&r).unwrap().message;
    assert!(
        message.contains("Certificate"),
        "the TLS alert is reported: {message}"
    );
    assert!(conditions::is_true(&conds(&r), "FetchFailed"));

    h.create("cert-without-key", spec("cert-only")).await;
    h.wait_failed(
        "cert-without-key",
        "AuthenticationFailed",
        "needs both 'tls.crt' and 'tls.key'",
    )
    .await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn docker_config_credentials_are_exchanged_for_a_registry_token() {
    let h = harness("oci-token").await;
    let repo = format!("token-{:08x}", rand::random::<u32>());
    let digest = push(&repo, "v1.2.0", &[("a.yaml", "a: 1\n")], "main@sha1:aaaa").await;
    let registry = env("OCI_REGISTRY_TOKEN");
    let docker_config = |password: &str| {
        serde_json::json!({"auths": {registry.as_str(): {"username": env("OCI_REGISTRY_USER"), "password": password}}})
            .to_string()
    };
    h.secret(
        "registry-creds",
        &[(".dockerconfigjson", docker_config(&env("OCI_REGISTRY_PASSWORD")))],
    )
    .await;
    h.secret(
        "wrong-creds",
        &[(".dockerconfigjson", docker_config("not-the-password"))],
    )
    .await;
    let url = format!("oci://{registry}/{repo}");
    let spec = |secret: Option<&str>| {
        let mut s =
            serde_json::json!({"url": url, "interval": "1h", "insecure": true, "ref": {"semver": "1.x"}});
        if let Some(secret) = secret {
            s["secretRef"] = serde_json::json!({"name": secret});
        }
        s
    };
    // Tags, manifest and blob all go through the token flow.
    h.create("authorized", spec(Some("registry-creds"))).await;
    let r = wait_ready(&h, "authorized", &format!("v1.2.0@{digest}")).await;
    let a = r.status.unwrap().artifact.unwrap();
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&a.url, &a.digest, out.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("a.yaml")).unwrap(),
        "a: 1\n"
    );

    h.create("wrong-password", spec(Some("wrong-creds"))).await;
    let r = h
        .wait_failed("wrong-password", "OCIArtifactPullFailed", "token service refused")
        .await;
    assert!(!ready(&r).unwrap().message.contains("not-the-password"));

    h.create("anonymous", spec(None)).await;
    h.wait_failed("anonymous", "OCIArtifactPullFailed", "token service refused")
        .await;

    // The image pull secrets of a ServiceAccount serve as well.
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "registry-creds"}]
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(h.client.clone(), &h.ns)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let mut via_account = spec(None);
    via_account["serviceAccountName"] = "puller".into();
    h.create("via-service-account", via_account).await;
    wait_ready(&h, "via-service-account", &format!("v1.2.0@{digest}")).await;

    // Cloud providers' identities are not available: said plainly, not retried.
    let mut cloud = spec(None);
    cloud["provider"] = "aws".into();
    h.create("cloud", cloud).await;
    let r = h
        .wait_failed("cloud", "AuthenticationFailed", "provider 'aws' is not supported")
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));
    h.done().await;
}

/// A cosign key pair made by the real cosign in `dir` as `<name>.key`/`<name>.pub`; returns the
/// public key.
fn cosign_key_pair(dir: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(env("COSIGN_BIN"))
        .args(["generate-key-pair", "--output-key-prefix", name])
        .env("COSIGN_PASSWORD", "")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn cosign_signatures_are_verified_with_the_trusted_public_keys() {
    let h = harness("oci-cosign").await;
    let repo = format!("cosign-{:08x}", rand::random::<u32>());
    let signed = push(&repo, "v1", &[("a.yaml", "a: 1\n")], "main@sha1:aaaa").await;
    let unsigned = push(&repo, "unsigned", &[("a.yaml", "a: 2\n")], "main@sha1:bbbb").await;
    let bundled = push(&repo, "v2", &[("a.yaml", "a: 3\n")], "main@sha1:cccc").await;
    let keys = tempfile::tempdir().unwrap();
    let public = cosign_key_pair(keys.path(), "trusted");
    let other_public = cosign_key_pair(keys.path(), "stranger");
    // Offline, as Flux verifies with a key: no transparency log. v1 gets cosign v2's signature
    // image, v2 a Sigstore bundle attached as an OCI 1.1 referrer (cosign v3's default).
    let sign = |digest: &str, extra: &[&str]| {
        let out = std::process::Command::new(env("COSIGN_BIN"))
            .args([
                "sign",
                "--key",
                "trusted.key",
                "--tlog-upload=false",
                "--allow-http-registry",
                "--yes",
            ])
            .args(extra)
            .arg(format!("{}/{repo}@{digest}", env("OCI_REGISTRY")))
            .env("COSIGN_PASSWORD", "")
            .current_dir(keys.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    sign(&signed, &[]);
    sign(&bundled, &["--new-bundle-format"]);
    h.secret("cosign-keys", &[("cosign.pub", public)]).await;
    h.secret("other-keys", &[("cosign.pub", other_public)]).await;
    let spec = |tag: &str, verify: serde_json::Value| serde_json::json!({"url": url(&repo), "interval": "1h", "insecure": true, "ref": {"tag": tag}, "verify": verify});
    let with_keys = |secret: &str| serde_json::json!({"provider": "cosign", "secretRef": {"name": secret}});

    h.create("signed", spec("v1", with_keys("cosign-keys"))).await;
    let r = wait_ready(&h, "signed", &format!("v1@{signed}")).await;
    let v = conditions::get(&conds(&r), "SourceVerified").cloned().unwrap();
    assert_eq!((v.status.as_str(), v.reason.as_str()), ("True", "Succeeded"));
    assert!(
        v.message
            .contains(&format!("verified signature of revision v1@{signed}")),
        "{}",
        v.message
    );

    h.create("bundled", spec("v2", with_keys("cosign-keys"))).await;
    let r = wait_ready(&h, "bundled", &format!("v2@{bundled}")).await;
    assert!(conditions::is_true(&conds(&r), "SourceVerified"));
    h.create("bundled-stranger", spec("v2", with_keys("other-keys")))
        .await;
    h.wait_failed(
        "bundled-stranger",
        "VerificationError",
        "no matching signatures were found",
    )
    .await;

    h.create("stranger", spec("v1", with_keys("other-keys"))).await;
    let r = h
        .wait_failed(
            "stranger",
            "VerificationError",
            "no matching signatures were found",
        )
        .await;
    assert!(
        r.status.unwrap().artifact.is_none(),
        "nothing unverified is stored"
    );

    h.create("unsigned", spec("unsigned", with_keys("cosign-keys")))
        .await;
    let r = h
        .wait_failed("unsigned", "VerificationError", "no signatures found")
        .await;
    assert!(r.status.as_ref().unwrap().artifact.is_none());
    assert!(ready(&r).unwrap().message.contains(&unsigned));

    // Keyless verification needs Fulcio and Rekor: refused rather than skipped.
    h.create("keyless", spec("v1", serde_json::json!({"provider": "cosign"})))
        .await;
    let r = h
        .wait_failed("keyless", "VerificationError", "keyless verification")
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));
    h.done().await;
}
