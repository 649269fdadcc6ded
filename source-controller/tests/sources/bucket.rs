//! Bucket end to end against the testenv's real S3 server (versitygw over HTTP and TLS), its GCS
//! emulator (fake-gcs-server) and the apiserver, source-controller's storage and artifact server running in-process.

use crate::support;

use driftless_api::source::Bucket;
use driftless_artifact::fetch::Fetcher;
use driftless_runtime::testing::{self, AzureContainer, GcsBucket, S3Bucket};
use sha2::{Digest, Sha256};
use source_controller::bucket::BucketReconciler;
use support::{Harness, T, conds, env, ready};

type H = Harness<Bucket>;

async fn harness(prefix: &str) -> H {
    driftless_artifact::install_crypto_provider();
    support::harness(prefix, BucketReconciler::new).await
}

async fn keys_secret(h: &H, secret_key: &str) {
    h.secret(
        "s3-keys",
        &[
            ("accesskey", env("S3_ACCESS_KEY")),
            ("secretkey", secret_key.to_string()),
        ],
    )
    .await;
}

/// Flux's revision of a bucket whose index is `entries` (key, ETag).
fn revision(entries: &[(&str, &str)]) -> String {
    let mut entries = entries.to_vec();
    entries.sort();
    let lines: String = entries.iter().map(|(k, e)| format!("{k} {e}\n")).collect();
    format!("sha256:{}", hex::encode(Sha256::digest(lines.as_bytes())))
}

async fn wait_revision(h: &H, name: &str, revision: &str) -> Bucket {
    testing::wait_for(&h.objects, name, T, |b: &Bucket| {
        ready(b).is_some_and(|c| c.status == "True")
            && b.status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .is_some_and(|a| a.revision == revision)
    })
    .await
}

async fn extracted(b: &Bucket) -> tempfile::TempDir {
    let artifact = b.status.as_ref().unwrap().artifact.clone().unwrap();
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&artifact.url, &artifact.digest, out.path())
        .await
        .unwrap();
    out
}

/// GETs of object `key` of `bucket` the S3 server has logged so far.
fn gets_of(bucket: &str, key: &str) -> usize {
    let log = std::fs::read_to_string(env("S3_ACCESS_LOG")).unwrap_or_default();
    let needle = format!("/{bucket}/{key}");
    log.lines()
        .filter(|l| l.contains(" s3_GetObject ") && l.contains(&needle))
        .count()
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_bucket_is_published_with_fluxs_revision_and_follows_changes() {
    let h = harness("bucket").await;
    let name = h.ns.clone();
    let s3 = S3Bucket::create(&name).await;
    let a = s3.put("apps/a.yaml", "kind: ConfigMap\n").await;
    let b = s3.put("apps/b.yaml", "kind: Secret\n").await;
    s3.put("docs/notes.md", "# notes\n").await;
    s3.put("other/c.yaml", "kind: Other\n").await;
    s3.put(".sourceignore", "*.md\n").await;
    keys_secret(&h, &env("S3_SECRET_KEY")).await;
    h.create(
        "app",
        serde_json::json!({"endpoint": env("S3_ENDPOINT"), "insecure": true, "bucketName": name,
            "prefix": "apps/", "interval": "10m", "secretRef": {"name": "s3-keys"}}),
    )
    .await;
    // The index: what the prefix holds, the ignore file and ignored objects left out.
    let first = revision(&[("apps/a.yaml", &a), ("apps/b.yaml", &b)]);
    let ready_bucket = wait_revision(&h, "app", &first).await;
    let content = extracted(&ready_bucket).await;
    assert_eq!(
        std::fs::read_to_string(content.path().join("apps/a.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    assert!(!content.path().join("other").exists() && !content.path().join("docs").exists());

    // Unchanged: one listing, no object downloaded again.
    let before = gets_of(&name, "apps/a.yaml");
    assert_eq!(before, 1, "downloaded once for the first artifact");
    h.request("app", "unchanged").await;
    testing::wait_for(&h.objects, "app", T, |b: &Bucket| {
        b.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some("unchanged")
    })
    .await;
    assert_eq!(
        gets_of(&name, "apps/a.yaml"),
        before,
        "an unchanged bucket downloads nothing"
    );

    // A changed object: a new revision; a deleted one: gone from the artifact.
    let a2 = s3.put("apps/a.yaml", "kind: ConfigMap\ndata: {}\n").await;
    s3.delete("apps/b.yaml").await;
    h.request("app", "changed").await;
    let second = revision(&[("apps/a.yaml", &a2)]);
    let changed = wait_revision(&h, "app", &second).await;
    let content = extracted(&changed).await;
    assert!(!content.path().join("apps/b.yaml").exists());
    assert!(
        std::fs::read_to_string(content.path().join("apps/a.yaml"))
            .unwrap()
            .contains("data")
    );
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn bucket_failures_say_why_and_keep_the_last_artifact() {
    let h = harness("bucket-fail").await;
    let name = h.ns.clone();
    let s3 = S3Bucket::create(&name).await;
    let etag = s3.put("app.yaml", "kind: ConfigMap\n").await;
    keys_secret(&h, &env("S3_SECRET_KEY")).await;
    h.secret(
        "wrong-keys",
        &[("accesskey", env("S3_ACCESS_KEY")), ("secretkey", "wrong".into())],
    )
    .await;
    h.secret(
        "ca",
        &[("ca.crt", std::fs::read_to_string(env("SOURCES_CA_FILE")).unwrap())],
    )
    .await;
    let spec = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"endpoint": env("S3_ENDPOINT"), "insecure": true, "bucketName": name,
            "interval": "10m", "secretRef": {"name": "s3-keys"}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    // Over TLS with the testenv CA it works; the last artifact stays when the keys go wrong.
    h.create(
        "tls",
        spec(serde_json::json!({"endpoint": env("S3_TLS_ENDPOINT"), "insecure": false, "certSecretRef": {"name": "ca"}})),
    )
    .await;
    let stored = wait_revision(&h, "tls", &revision(&[("app.yaml", &etag)])).await;
    h.patch_spec("tls", serde_json::json!({"secretRef": {"name": "wrong-keys"}}))
        .await;
    let failed = h
        .wait_failed("tls", "BucketOperationFailed", "SignatureDoesNotMatch")
        .await;
    assert_eq!(
        failed.status.unwrap().artifact,
        stored.status.unwrap().artifact,
        "the last artifact is kept"
    );

    h.create(
        "untrusted",
        spec(serde_json::json!({"endpoint": env("S3_TLS_ENDPOINT"), "insecure": false})),
    )
    .await;
    h.wait_failed("untrusted", "BucketOperationFailed", "failed to list objects")
        .await;
    h.create(
        "missing",
        spec(serde_json::json!({"bucketName": "no-such-bucket"})),
    )
    .await;
    h.wait_failed("missing", "BucketOperationFailed", "NoSuchBucket")
        .await;
    h.create(
        "unreachable",
        spec(serde_json::json!({"endpoint": "127.0.0.1:1"})),
    )
    .await;
    h.wait_failed("unreachable", "BucketOperationFailed", "failed to list objects")
        .await;
    // gcp: a Secret without a service account key; Google's endpoint without a Secret needs
    // workload identity. Both stall, saying so.
    h.create("gcp-keys", spec(serde_json::json!({"provider": "gcp"})))
        .await;
    h.wait_failed(
        "gcp-keys",
        "AuthenticationFailed",
        "required fields 'serviceaccount'",
    )
    .await;
    let mut google =
        spec(serde_json::json!({"provider": "gcp", "endpoint": "storage.googleapis.com", "insecure": false}));
    google.as_object_mut().unwrap().remove("secretRef");
    h.create("gcp", google).await;
    let gcp = h
        .wait_failed(
            "gcp",
            "AuthenticationFailed",
            "provider 'gcp' without a secretRef needs GCP workload identity",
        )
        .await;
    assert!(
        conds(&gcp)
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
    h.done().await;
}

/// `provider: gcp` against the testenv's GCS emulator (fake-gcs-server): the index of the JSON
/// API's listing (name → etag) gives Flux's revision; a change and a deletion follow.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_gcp_bucket_is_published_and_follows_changes() {
    let h = harness("bucket-gcp").await;
    let name = h.ns.clone();
    let gcs = GcsBucket::create(&name).await;
    let a = gcs.put("deploy/a.yaml", "kind: ConfigMap\n").await;
    let b = gcs.put("deploy/nested/b.yaml", "kind: Secret\n").await;
    gcs.put("README.md", "# notes\n").await;
    h.create(
        "app",
        serde_json::json!({"provider": "gcp", "endpoint": env("GCS_ENDPOINT"), "insecure": true,
            "bucketName": name, "interval": "10m", "ignore": "*.md"}),
    )
    .await;
    let first = revision(&[("deploy/a.yaml", &a), ("deploy/nested/b.yaml", &b)]);
    let stored = wait_revision(&h, "app", &first).await;
    let content = extracted(&stored).await;
    assert_eq!(
        std::fs::read_to_string(content.path().join("deploy/nested/b.yaml")).unwrap(),
        "kind: Secret\n"
    );
    assert!(!content.path().join("README.md").exists());

    let a2 = gcs.put("deploy/a.yaml", "kind: ConfigMap\ndata: {}\n").await;
    gcs.delete("deploy/nested/b.yaml").await;
    h.request("app", "changed").await;
    let changed = wait_revision(&h, "app", &revision(&[("deploy/a.yaml", &a2)])).await;
    let content = extracted(&changed).await;
    assert!(!content.path().join("deploy/nested/b.yaml").exists());

    h.create(
        "missing",
        serde_json::json!({"provider": "gcp", "endpoint": env("GCS_ENDPOINT"), "insecure": true,
            "bucketName": "no-such-bucket", "interval": "10m"}),
    )
    .await;
    h.wait_failed("missing", "BucketOperationFailed", "failed to list objects")
        .await;
    h.done().await;
}

/// `provider: azure` against the testenv's Azurite: Shared Key (`accountKey`, the account read
/// from the emulator's path-style endpoint), Flux's index (the ETag's bytes in hex), a change
/// and a deletion followed; a Secret without credentials and Azure AD credentials refused.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn an_azure_container_is_published_and_follows_changes() {
    let h = harness("bucket-azure").await;
    let name = h.ns.clone();
    let container = AzureContainer::create(&name).await;
    container.put("deploy/a.yaml", "kind: ConfigMap\n").await;
    container.put("deploy/b.yaml", "kind: Secret\n").await;
    h.secret("azure-key", &[("accountKey", env("AZURE_ACCOUNT_KEY"))])
        .await;
    h.create(
        "app",
        serde_json::json!({"provider": "azure", "endpoint": env("AZURE_BLOB_ENDPOINT"),
            "bucketName": name, "interval": "10m", "secretRef": {"name": "azure-key"}}),
    )
    .await;
    let flux_revision = |etags: Vec<(String, String)>| {
        let hexed: Vec<(String, String)> = etags
            .into_iter()
            .map(|(k, e)| (k, hex::encode(e.as_bytes())))
            .collect();
        let pairs: Vec<(&str, &str)> = hexed.iter().map(|(k, e)| (k.as_str(), e.as_str())).collect();
        revision(&pairs)
    };
    let stored = wait_revision(&h, "app", &flux_revision(container.etags().await)).await;
    let content = extracted(&stored).await;
    assert_eq!(
        std::fs::read_to_string(content.path().join("deploy/b.yaml")).unwrap(),
        "kind: Secret\n"
    );

    container
        .put("deploy/a.yaml", "kind: ConfigMap\ndata: {}\n")
        .await;
    container.delete("deploy/b.yaml").await;
    h.request("app", "changed").await;
    let changed = wait_revision(&h, "app", &flux_revision(container.etags().await)).await;
    assert!(!extracted(&changed).await.path().join("deploy/b.yaml").exists());

    // A SAS token instead of the key: the same bucket, read with the token's rights.
    h.secret("azure-sas", &[("sasKey", container.read_sas())]).await;
    h.create(
        "sas",
        serde_json::json!({"provider": "azure", "endpoint": env("AZURE_BLOB_ENDPOINT"),
            "bucketName": name, "interval": "10m", "secretRef": {"name": "azure-sas"}}),
    )
    .await;
    wait_revision(&h, "sas", &flux_revision(container.etags().await)).await;

    h.secret("empty", &[("other", "x".into())]).await;
    h.create(
        "no-credentials",
        serde_json::json!({"provider": "azure", "endpoint": env("AZURE_BLOB_ENDPOINT"),
            "bucketName": name, "interval": "10m", "secretRef": {"name": "empty"}}),
    )
    .await;
    h.wait_failed(
        "no-credentials",
        "AuthenticationFailed",
        "requires a 'clientId' or 'accountKey' field",
    )
    .await;
    h.secret(
        "aad",
        &[
            ("tenantId", "t".into()),
            ("clientId", "c".into()),
            ("clientSecret", "s".into()),
        ],
    )
    .await;
    h.create(
        "aad",
        serde_json::json!({"provider": "azure", "endpoint": env("AZURE_BLOB_ENDPOINT"),
            "bucketName": name, "interval": "10m", "secretRef": {"name": "aad"}}),
    )
    .await;
    h.wait_failed(
        "aad",
        "AuthenticationFailed",
        "need Microsoft's identity platform",
    )
    .await;
    h.done().await;
}

/// A bucket of 10,000 objects: listed page by page (S3 answers 1,000 keys a page), downloaded
/// 16 at a time (never 10,000 connections), streamed to disk, into one artifact with every object.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_bucket_of_thousands_of_objects_is_listed_page_by_page() {
    use futures::StreamExt;
    const OBJECTS: usize = 10_000;
    let h = harness("bucket-many").await;
    let name = h.ns.clone();
    let s3 = S3Bucket::create(&name).await;
    let uploads: Vec<(String, String)> = futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let s3 = &s3;
            async move {
                let key = format!("objects/{:02}/{i:05}.yaml", i % 50);
                let etag = s3.put(&key, &format!("index: {i}\n")).await;
                (key, etag)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    keys_secret(&h, &env("S3_SECRET_KEY")).await;
    h.create(
        "many",
        serde_json::json!({"endpoint": env("S3_ENDPOINT"), "insecure": true, "bucketName": name,
            "interval": "10m", "timeout": "5m", "secretRef": {"name": "s3-keys"}}),
    )
    .await;
    let pairs: Vec<(&str, &str)> = uploads.iter().map(|(k, e)| (k.as_str(), e.as_str())).collect();
    let expected = revision(&pairs);
    let stored = testing::wait_for(
        &h.objects,
        "many",
        std::time::Duration::from_secs(300),
        |b: &Bucket| {
            b.status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .is_some_and(|a| a.revision == expected)
        },
    )
    .await;
    let content = extracted(&stored).await;
    let mut files = 0;
    for dir in std::fs::read_dir(content.path().join("objects")).unwrap() {
        files += std::fs::read_dir(dir.unwrap().path()).unwrap().count();
    }
    assert_eq!(files, OBJECTS);
    assert_eq!(
        std::fs::read_to_string(content.path().join("objects/07/09957.yaml")).unwrap(),
        "index: 9957\n"
    );
    h.done().await;
}
