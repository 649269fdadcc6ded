//! GitRepository end to end against the testenv's real servers: git over smart HTTP with basic
//! auth and over SSH with a pinned host key, the apiserver, and source-controller's storage
//! and artifact server running in-process for one namespace per test.

use crate::support;

use driftless_api::source::GitRepository;
use driftless_artifact::fetch::{FetchError, Fetcher};
use driftless_runtime::{conditions, testing};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use source_controller::git_repository::{GitRepositoryReconciler, include_triggers};
use std::sync::{Arc, Mutex};
use std::{process::Command, time::Duration};
use support::{Harness, NEGATIVE, T, conds, env, ready};

type Repo = testing::GitRepo;
use testing::git;

type H = Harness<GitRepository>;

async fn harness(prefix: &str) -> H {
    support::harness_with(
        prefix,
        |storage| GitRepositoryReconciler::new(storage, Duration::from_secs(3)),
        |client, ns| Some(include_triggers(client, Some(ns))),
    )
    .await
}

async fn http_secret(h: &H) {
    h.secret(
        "http-auth",
        &[
            ("username", env("GIT_HTTP_USER")),
            ("password", env("GIT_HTTP_PASSWORD")),
        ],
    )
    .await;
}

async fn ssh_secret(h: &H, known_hosts: String) {
    let identity = std::fs::read_to_string(env("GIT_SSH_KEY")).unwrap();
    h.secret(
        "ssh-auth",
        &[("identity", identity), ("known_hosts", known_hosts)],
    )
    .await;
}

async fn wait_ready(h: &H, name: &str, revision: &str) -> GitRepository {
    testing::wait_for(&h.objects, name, T, |r: &GitRepository| {
        ready(r).is_some_and(|c| c.status == "True")
            && r.status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .is_some_and(|a| a.revision == revision)
    })
    .await
}

fn fetch_failed(r: &GitRepository) -> Option<driftless_api::meta::Condition> {
    conditions::get(&conds(r), "FetchFailed").cloned()
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn http_basic_auth_fetches_the_branch_and_serves_a_verified_artifact() {
    let h = harness("git-http").await;
    let repo = Repo::new("http");
    repo.write("deploy/app.yaml", "kind: ConfigMap\n")
        .write(".github/workflows/ci.yml", "on: push\n")
        .write("logo.png", "png");
    let commit = repo.commit("Add app");
    http_secret(&h).await;
    h.create(
        "app",
        serde_json::json!({"url": repo.http_url(), "interval": "1m", "secretRef": {"name": "http-auth"},
        "ref": {"branch": "main"}}),
    )
    .await;
    let r = wait_ready(&h, "app", &format!("main@sha1:{commit}")).await;
    assert!(
        conditions::check_kstatus(&conds(&r), NEGATIVE).is_empty(),
        "{:?}",
        conds(&r)
    );
    assert_eq!(
        ready(&r).unwrap().message,
        format!("stored artifact for revision 'main@sha1:{commit}'")
    );
    assert!(conditions::is_true(&conds(&r), "ArtifactInStorage"));
    let artifact = r.status.as_ref().unwrap().artifact.clone().unwrap();
    assert_eq!(
        artifact.path,
        format!("gitrepository/{}/app/{commit}.tar.gz", h.ns)
    );
    assert_eq!(
        artifact.url,
        format!("http://{}/{}", h.artifact_addr, artifact.path)
    );

    // A consumer downloads it, verifies the digest and extracts it: default exclusions applied.
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&artifact.url, &artifact.digest, out.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("deploy/app.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    assert!(
        !out.path().join(".github").exists()
            && !out.path().join("logo.png").exists()
            && !out.path().join(".git").exists()
    );
    // A wrong digest is refused before anything is extracted.
    let out2 = tempfile::tempdir().unwrap();
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert!(matches!(
        Fetcher::default().fetch(&artifact.url, wrong, out2.path()).await,
        Err(FetchError::DigestMismatch { .. })
    ));
    assert_eq!(std::fs::read_dir(out2.path()).unwrap().count(), 0);

    // NewArtifact event with the revision and digest annotations (written after the status).
    let ev = testing::wait_for_event(&h.client, &h.ns, T, |e| {
        e.reason.as_deref() == Some("NewArtifact")
    })
    .await;
    assert_eq!(ev.note.as_deref(), Some("stored artifact for commit 'Add app'"));
    let ann = ev.metadata.annotations.clone().unwrap();
    assert_eq!(
        ann.get("source.toolkit.fluxcd.io/revision"),
        Some(&format!("main@sha1:{commit}"))
    );
    assert_eq!(ann.get("source.toolkit.fluxcd.io/digest"), Some(&artifact.digest));

    // New commit → new artifact; unchanged remote → the same artifact, nothing rebuilt.
    repo.write("deploy/app.yaml", "kind: Secret\n");
    let commit2 = repo.commit("Change app");
    h.request("app", "1").await;
    let r2 = wait_ready(&h, "app", &format!("main@sha1:{commit2}")).await;
    let a2 = r2.status.as_ref().unwrap().artifact.clone().unwrap();
    assert_ne!(a2.digest, artifact.digest);
    h.request("app", "2").await;
    let r3 = testing::wait_for(&h.objects, "app", T, |r: &GitRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some("2")
    })
    .await;
    assert_eq!(
        r3.status.unwrap().artifact.unwrap(),
        a2,
        "an unchanged remote must not rebuild the artifact"
    );

    // Deleting the object removes its storage directory.
    h.objects.delete("app", &DeleteParams::default()).await.unwrap();
    testing::wait_gone(&h.objects, "app", T).await;
    assert!(
        !h.storage_dir
            .path()
            .join(format!("gitrepository/{}/app", h.ns))
            .exists()
    );
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn ssh_with_a_pinned_host_key_works_and_a_mismatch_fails() {
    let h = harness("git-ssh").await;
    let repo = Repo::new("ssh");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    let known_hosts = std::fs::read_to_string(env("GIT_SSH_KNOWN_HOSTS")).unwrap();
    ssh_secret(&h, known_hosts.clone()).await;
    h.create(
        "ok",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.ssh_url(), "interval": "1m", "secretRef": {"name": "ssh-auth"}}),
    )
    .await;
    wait_ready(&h, "ok", &format!("main@sha1:{commit}")).await;

    // The same host with another key: refused.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
        .status()
        .unwrap();
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let host = known_hosts.split_whitespace().next().unwrap().to_string();
    let wrong = format!(
        "{host} {}",
        pubkey.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    );
    h.secret(
        "ssh-wrong",
        &[
            ("identity", std::fs::read_to_string(env("GIT_SSH_KEY")).unwrap()),
            ("known_hosts", wrong),
        ],
    )
    .await;
    h.create(
        "mismatch",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.ssh_url(), "interval": "1m", "secretRef": {"name": "ssh-wrong"}}),
    )
    .await;
    let r = h
        .wait_failed("mismatch", "GitOperationFailed", "host key mismatch")
        .await;
    assert!(fetch_failed(&r).is_some_and(|c| c.status == "True"));
    assert!(conditions::check_kstatus(&conds(&r), NEGATIVE).is_empty());
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn refs_resolve_by_tag_semver_name_and_commit() {
    let h = harness("git-refs").await;
    let repo = Repo::new("refs");
    repo.write("v", "1");
    let c1 = repo.commit("one");
    repo.tag("v1.0.0");
    repo.write("v", "2");
    let c2 = repo.commit("two");
    repo.tag("v1.1.0");
    repo.write("v", "3");
    let c3 = repo.commit("three");
    repo.tag("v2.0.0");
    http_secret(&h).await;
    let base = serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1m", "secretRef": {"name": "http-auth"}});
    let with = |r: serde_json::Value| {
        let mut s = base.clone();
        s["ref"] = r;
        s
    };
    h.create("tag", with(serde_json::json!({"tag": "v1.0.0"}))).await;
    h.create("semver", with(serde_json::json!({"semver": ">=1.0.0 <2.0.0"})))
        .await;
    h.create("commit", with(serde_json::json!({"commit": c1}))).await;
    h.create("default", base.clone()).await;
    wait_ready(&h, "tag", &format!("v1.0.0@sha1:{c1}")).await;
    wait_ready(&h, "semver", &format!("v1.1.0@sha1:{c2}")).await;
    wait_ready(&h, "commit", &format!("sha1:{c1}")).await;
    wait_ready(&h, "default", &format!("main@sha1:{c3}")).await;

    // No tag in range: a clear failure.
    h.create("nomatch", with(serde_json::json!({"semver": "5.x"})))
        .await;
    h.wait_failed("nomatch", "GitOperationFailed", "no match found for semver: 5.x")
        .await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn failures_keep_the_last_artifact_served_and_name_the_cause() {
    let h = harness("git-fail").await;
    let repo = Repo::new("fail");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    http_secret(&h).await;
    h.create(
        "app",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1m", "secretRef": {"name": "http-auth"}}),
    )
    .await;
    let r = wait_ready(&h, "app", &format!("main@sha1:{commit}")).await;
    let artifact = r.status.unwrap().artifact.unwrap();

    // Missing branch: Ready=False with the ref named; the old artifact stays in status and served.
    h.patch_spec("app", serde_json::json!({"ref": {"branch": "nope"}}))
        .await;
    let r = h
        .wait_failed(
            "app",
            "GitOperationFailed",
            "couldn't find remote ref 'refs/heads/nope'",
        )
        .await;
    assert_eq!(r.status.as_ref().unwrap().artifact.as_ref(), Some(&artifact));
    assert!(conditions::get(&conds(&r), "Reconciling").is_some_and(|c| c.reason == "ProgressingWithRetry"));
    let body = reqwest::get(&artifact.url).await.unwrap();
    assert_eq!(body.status(), 200);

    // Wrong password.
    h.secret(
        "bad-auth",
        &[("username", env("GIT_HTTP_USER")), ("password", "wrong".into())],
    )
    .await;
    h.create(
        "badpw",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1m", "secretRef": {"name": "bad-auth"}}),
    )
    .await;
    let r = h
        .wait_failed("badpw", "GitOperationFailed", "authentication failed")
        .await;
    assert!(
        !ready(&r).unwrap().message.contains("wrong"),
        "credentials leaked into status"
    );

    // A Secret that does not exist, then appears: the object recovers on its own.
    h.create(
        "nosecret",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1m", "secretRef": {"name": "later"}}),
    )
    .await;
    h.wait_failed("nosecret", "AuthenticationFailed", "secret not found")
        .await;
    h.secret(
        "later",
        &[
            ("username", env("GIT_HTTP_USER")),
            ("password", env("GIT_HTTP_PASSWORD")),
        ],
    )
    .await;
    wait_ready(&h, "nosecret", &format!("main@sha1:{commit}")).await;

    // A Secret lacking keys.
    h.secret("no-known-hosts", &[("identity", "x".into())]).await;
    h.create(
        "nokeys",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.ssh_url(), "interval": "1m", "secretRef": {"name": "no-known-hosts"}}),
    )
    .await;
    h.wait_failed("nokeys", "AuthenticationFailed", "has no 'known_hosts' key")
        .await;

    // Unreachable host.
    h.create(
        "unreachable",
        serde_json::json!({"ref": {"branch": "main"}, "url": "http://127.0.0.1:1/git/x.git", "interval": "1m"}),
    )
    .await;
    h.wait_failed("unreachable", "GitOperationFailed", "127.0.0.1:1")
        .await;

    // A host name that does not resolve.
    h.create(
        "unknownhost",
        serde_json::json!({"ref": {"branch": "main"}, "url": "http://no-such-host.invalid/git/x.git", "interval": "1m"}),
    )
    .await;
    h.wait_failed("unknownhost", "GitOperationFailed", "no-such-host.invalid")
        .await;

    // A malformed URL the CRD pattern lets through stalls: no retry storm.
    h.create(
        "badurl",
        serde_json::json!({"ref": {"branch": "main"}, "url": "https:///nohost", "interval": "1m"}),
    )
    .await;
    let r = h.wait_failed("badurl", "URLInvalid", "invalid URL").await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));

    // Providers that need a cloud's identity stall by name instead of being ignored.
    h.create(
        "azure",
        serde_json::json!({"ref": {"branch": "main"}, "url": "https://dev.azure.com/org/repo", "interval": "1m", "provider": "azure"}),
    )
    .await;
    let r = h
        .wait_failed("azure", "AuthenticationFailed", "provider 'azure'")
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));
    h.done().await;
}

/// GitHub's API as a GitHub App sees it: every installation token it mints is `token`, and it
/// records the paths asked and whether each came with an app JWT.
async fn github_api(token: String) -> (String, Arc<Mutex<Vec<(String, bool)>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
        let (seen, token) = (seen.clone(), token.clone());
        async move {
            let jwt = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer ey"));
            seen.lock().unwrap().push((uri.path().to_string(), jwt));
            (
                axum::http::StatusCode::CREATED,
                serde_json::json!({"token": token, "expires_at": "2099-01-01T00:00:00Z"}).to_string(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

/// Flux's `provider: github`: the Secret's GitHub App (id, installation, private key, API URL)
/// mints an installation token, which authenticates as `x-access-token`; the provider without
/// app data in its Secret, or app data without the provider, is refused with Flux's messages.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn provider_github_fetches_with_a_github_app_installation_token() {
    let h = harness("git-github").await;
    let (api, asked) = github_api(env("GIT_APP_TOKEN")).await;
    let repo = Repo::new("github-app");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    let key = include_str!("../../../shared/runtime/testdata/rsa-test-key.pem").to_string();
    h.secret(
        "app",
        &[
            ("githubAppID", "42".into()),
            ("githubAppInstallationID", "7".into()),
            ("githubAppPrivateKey", key),
            ("githubAppBaseURL", api),
        ],
    )
    .await;
    http_secret(&h).await;
    for (name, provider, secret) in [
        ("github", Some("github"), Some("app")),
        ("no-app-data", Some("github"), Some("http-auth")),
        ("no-secret", Some("github"), None),
        ("not-github", None, Some("app")),
    ] {
        let mut spec =
            serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1h"});
        if let Some(provider) = provider {
            spec["provider"] = provider.into();
        }
        if let Some(secret) = secret {
            spec["secretRef"] = serde_json::json!({"name": secret});
        }
        h.create(name, spec).await;
    }
    wait_ready(&h, "github", &format!("main@sha1:{commit}")).await;
    assert!(
        asked
            .lock()
            .unwrap()
            .contains(&("/app/installations/7/access_tokens".to_string(), true)),
        "an installation token minted with the app's JWT: {asked:?}"
    );
    let needs_app = "secretRef with github app data must be specified when provider is set to github";
    h.wait_failed("no-app-data", "InvalidProviderConfiguration", needs_app)
        .await;
    let r = h
        .wait_failed("no-secret", "InvalidProviderConfiguration", needs_app)
        .await;
    assert!(conditions::is_true(&conds(&r), "Stalled"));
    h.wait_failed(
        "not-github",
        "InvalidProviderConfiguration",
        "has github app data but provider is not set to github",
    )
    .await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_force_pushed_branch_and_a_hanging_server_are_handled() {
    let h = harness("git-force").await;
    let repo = Repo::new("force");
    repo.write("a", "1");
    let c1 = repo.commit("one");
    http_secret(&h).await;
    h.create(
        "app",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1m", "secretRef": {"name": "http-auth"}}),
    )
    .await;
    wait_ready(&h, "app", &format!("main@sha1:{c1}")).await;
    // Rewrite history and force-push.
    git(repo.work.path(), &["reset", "-q", "--hard", "HEAD"]);
    repo.write("a", "rewritten");
    git(repo.work.path(), &["add", "-A"]);
    git(repo.work.path(), &["commit", "-q", "--amend", "-m", "rewritten"]);
    git(
        repo.work.path(),
        &["push", "-q", "--force", "origin", "HEAD:main"],
    );
    let c2 = git(repo.work.path(), &["rev-parse", "HEAD"]);
    h.request("app", "after-force-push").await;
    wait_ready(&h, "app", &format!("main@sha1:{c2}")).await;

    // A server that accepts connections and never answers: the timeout ends the attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    h.create("hang", serde_json::json!({"ref": {"branch": "main"}, "url": format!("http://127.0.0.1:{port}/x.git"), "interval": "1m", "timeout": "2s"}))
        .await;
    h.wait_failed("hang", "GitOperationFailed", "timed out").await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn the_artifact_server_answers_404_outside_the_storage_root() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness("git-srv").await;
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/gitrepository/../../../etc/passwd",
    ] {
        let mut s = tokio::net::TcpStream::connect(h.artifact_addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let status_line = resp.lines().next().unwrap_or_default().to_string();
        assert!(
            status_line.contains(" 404") || status_line.contains(" 400"),
            "{path}: {status_line}"
        );
        assert!(!resp.contains("root:"), "{path} leaked /etc/passwd");
    }
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn included_repositories_are_copied_in_and_their_changes_rebuild_the_includer() {
    let h = harness("git-include").await;
    let shared = Repo::new("shared");
    shared
        .write("base/common.yaml", "shared: 1\n")
        .write("other/x.yaml", "x: 1\n");
    let s1 = shared.commit("shared one");
    let app = Repo::new("app");
    app.write("app.yaml", "app: 1\n");
    let a1 = app.commit("app one");
    http_secret(&h).await;
    let auth = serde_json::json!({"name": "http-auth"});
    h.create(
        "shared",
        serde_json::json!({"ref": {"branch": "main"}, "url": shared.http_url(), "interval": "1h", "secretRef": auth}),
    )
    .await;
    h.create(
        "app",
        serde_json::json!({"ref": {"branch": "main"}, "url": app.http_url(), "interval": "1h", "secretRef": auth,
        "include": [{"repository": {"name": "shared"}, "fromPath": "base", "toPath": "vendor/shared"}]}),
    )
    .await;
    wait_ready(&h, "shared", &format!("main@sha1:{s1}")).await;
    let r = wait_ready(&h, "app", &format!("main@sha1:{a1}")).await;
    let st = r.status.unwrap();
    assert_eq!(
        st.included_artifacts.as_ref().map(|v| v[0].revision.clone()),
        Some(format!("main@sha1:{s1}"))
    );
    let a = st.artifact.unwrap();
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&a.url, &a.digest, out.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("vendor/shared/common.yaml")).unwrap(),
        "shared: 1\n"
    );
    assert!(!out.path().join("vendor/shared/x.yaml").exists() && out.path().join("app.yaml").exists());

    // A new commit in the included repository: the includer rebuilds with no request of its own.
    shared.write("base/common.yaml", "shared: 2\n");
    let s2 = shared.commit("shared two");
    h.request("shared", "new-commit").await;
    let r = testing::wait_for(&h.objects, "app", T, |r: &GitRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.included_artifacts.as_ref())
            .is_some_and(|v| v[0].revision == format!("main@sha1:{s2}"))
    })
    .await;
    let a2 = r.status.unwrap().artifact.unwrap();
    assert_ne!(a2.digest, a.digest);
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&a2.url, &a2.digest, out.path())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("vendor/shared/common.yaml")).unwrap(),
        "shared: 2\n"
    );

    // An include that does not exist: IncludeUnavailable, Ready=False.
    h.create(
        "dangling",
        serde_json::json!({"ref": {"branch": "main"}, "url": app.http_url(), "interval": "1h", "secretRef": auth,
        "include": [{"repository": {"name": "missing"}}]}),
    )
    .await;
    let r = h
        .wait_failed(
            "dangling",
            "NotFound",
            "could not get resource for include 'missing'",
        )
        .await;
    assert!(conditions::is_true(&conds(&r), "IncludeUnavailable"));
    h.done().await;
}

/// Runs git with `gpg` signing as `fpr` from `home`.
fn signed_git(repo: &Repo, home: &std::path::Path, fpr: &str, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "gpg.program=gpg",
            "-c",
        ])
        .arg(format!("user.signingkey={fpr}"))
        .args(args)
        .env("GNUPGHOME", home)
        .current_dir(repo.work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn commit_and_tag_signatures_are_verified_against_the_trusted_keys() {
    let h = harness("git-verify").await;
    let key = testing::GpgKey::new("trusted <trusted@example.com>", "ed25519", "sign");
    let (home, fpr, public) = (&key.home, key.fingerprint.as_str(), key.public_armored());
    let other_public =
        testing::GpgKey::new("stranger <stranger@example.com>", "ed25519", "sign").public_armored();
    let repo = Repo::new("signed");
    repo.write("a.yaml", "a: 1\n");
    git(repo.work.path(), &["add", "-A"]);
    signed_git(&repo, home.path(), fpr, &["commit", "-q", "-S", "-m", "signed"]);
    signed_git(&repo, home.path(), fpr, &["tag", "-s", "v1.0.0", "-m", "v1.0.0"]);
    git(
        repo.work.path(),
        &["push", "-q", "--force", "origin", "HEAD:main", "v1.0.0"],
    );
    let commit = git(repo.work.path(), &["rev-parse", "HEAD"]);
    http_secret(&h).await;
    h.secret("trusted-keys", &[("author.asc", public)]).await;
    h.secret("other-keys", &[("stranger.asc", other_public)]).await;
    let auth = serde_json::json!({"name": "http-auth"});

    h.create(
        "head",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1h", "secretRef": auth,
        "verify": {"mode": "HEAD", "secretRef": {"name": "trusted-keys"}}}),
    )
    .await;
    let r = wait_ready(&h, "head", &format!("main@sha1:{commit}")).await;
    let v = conditions::get(&conds(&r), "SourceVerified").cloned().unwrap();
    assert_eq!(v.status, "True");
    assert!(
        v.message.contains(&format!("commit '{commit}' with key '")),
        "{}",
        v.message
    );
    assert_eq!(
        r.status.unwrap().source_verification_mode.as_deref(),
        Some("HEAD")
    );

    h.create("tag", serde_json::json!({"url": repo.http_url(), "interval": "1h", "secretRef": auth, "ref": {"tag": "v1.0.0"},
        "verify": {"mode": "TagAndHEAD", "secretRef": {"name": "trusted-keys"}}}))
    .await;
    let r = wait_ready(&h, "tag", &format!("v1.0.0@sha1:{commit}")).await;
    let msg = conditions::get(&conds(&r), "SourceVerified")
        .unwrap()
        .message
        .clone();
    assert!(
        msg.contains("tag 'v1.0.0' with key") && msg.contains("commit '"),
        "{msg}"
    );

    // A key nobody signed with: refused, nothing stored.
    h.create(
        "stranger",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1h", "secretRef": auth,
        "verify": {"secretRef": {"name": "other-keys"}}}),
    )
    .await;
    let r = h
        .wait_failed(
            "stranger",
            "VerificationError",
            "no trusted key verifies the signature",
        )
        .await;
    assert!(r.status.unwrap().artifact.is_none());

    // An unsigned commit.
    let plain = Repo::new("unsigned");
    plain.write("a", "1");
    let c = plain.commit("unsigned");
    h.create(
        "unsigned",
        serde_json::json!({"ref": {"branch": "main"}, "url": plain.http_url(), "interval": "1h", "secretRef": auth,
        "verify": {"secretRef": {"name": "trusted-keys"}}}),
    )
    .await;
    h.wait_failed(
        "unsigned",
        "VerificationError",
        &format!("commit '{c}' failed: the commit is not signed"),
    )
    .await;
    h.done().await;
}

/// A fresh ed25519 SSH key; returns (its directory, the private key path, the public key line).
fn ssh_signing_key() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "signer@example.com", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (dir, key, public)
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn ssh_signed_commits_and_tags_are_verified_against_sshpub_keys() {
    let h = harness("git-verify-ssh").await;
    let (_dir, key, public) = ssh_signing_key();
    let (_other_dir, _other_key, other_public) = ssh_signing_key();
    let repo = Repo::new("ssh-signed");
    repo.write("a.yaml", "a: 1\n");
    git(repo.work.path(), &["add", "-A"]);
    let signing_key = format!("user.signingkey={}", key.display());
    let ssh_git = |args: &[&str]| {
        let signing = ["-c", "gpg.format=ssh", "-c", signing_key.as_str()];
        git(repo.work.path(), &[&signing[..], args].concat());
    };
    ssh_git(&["commit", "-q", "-S", "-m", "ssh-signed"]);
    ssh_git(&["tag", "-s", "v2.0.0", "-m", "v2.0.0"]);
    git(
        repo.work.path(),
        &["push", "-q", "--force", "origin", "HEAD:main", "v2.0.0"],
    );
    let commit = git(repo.work.path(), &["rev-parse", "HEAD"]);
    http_secret(&h).await;
    h.secret("ssh-keys", &[("signer.sshpub", public)]).await;
    h.secret("other-ssh-keys", &[("other.sshpub", other_public)])
        .await;
    let auth = serde_json::json!({"name": "http-auth"});

    h.create(
        "tag-and-head",
        serde_json::json!({"url": repo.http_url(), "interval": "1h", "secretRef": auth,
        "ref": {"tag": "v2.0.0"}, "verify": {"mode": "TagAndHEAD", "secretRef": {"name": "ssh-keys"}}}),
    )
    .await;
    let r = wait_ready(&h, "tag-and-head", &format!("v2.0.0@sha1:{commit}")).await;
    let v = conditions::get(&conds(&r), "SourceVerified").cloned().unwrap();
    assert_eq!(v.status, "True");
    assert!(
        v.message.contains("tag 'v2.0.0' with key 'SHA256:")
            && v.message.contains(&format!("commit '{commit}'")),
        "{}",
        v.message
    );

    h.create(
        "stranger",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1h", "secretRef": auth,
        "verify": {"secretRef": {"name": "other-ssh-keys"}}}),
    )
    .await;
    let r = h
        .wait_failed(
            "stranger",
            "VerificationError",
            "no trusted key verifies the signature",
        )
        .await;
    assert!(r.status.unwrap().artifact.is_none());
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn https_with_a_private_ca_is_trusted_only_through_ca_crt() {
    let h = harness("git-tls").await;
    let repo = Repo::new("tls");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    let url = format!("{}/{}.git", env("GIT_HTTPS_BASE"), repo.name);
    let ca = std::fs::read_to_string(env("SOURCES_CA_FILE")).unwrap();
    let creds = [
        ("username", env("GIT_HTTP_USER")),
        ("password", env("GIT_HTTP_PASSWORD")),
    ];
    h.secret("with-ca", &[creds[0].clone(), creds[1].clone(), ("ca.crt", ca)])
        .await;
    h.secret("no-ca", &creds).await;
    // A CA that did not sign the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other-ca",
            "-keyout",
        ])
        .arg(other.path().join("k"))
        .arg("-out")
        .arg(other.path().join("c"))
        .output()
        .unwrap();
    assert!(status.status.success());
    let other_ca = std::fs::read_to_string(other.path().join("c")).unwrap();
    h.secret(
        "wrong-ca",
        &[creds[0].clone(), creds[1].clone(), ("ca.crt", other_ca)],
    )
    .await;

    h.create(
        "trusted",
        serde_json::json!({"ref": {"branch": "main"}, "url": url, "interval": "1h", "secretRef": {"name": "with-ca"}}),
    )
    .await;
    wait_ready(&h, "trusted", &format!("main@sha1:{commit}")).await;
    h.create(
        "untrusted",
        serde_json::json!({"ref": {"branch": "main"}, "url": url, "interval": "1h", "secretRef": {"name": "no-ca"}}),
    )
    .await;
    h.wait_failed("untrusted", "GitOperationFailed", "certificate")
        .await;
    h.create(
        "wrong",
        serde_json::json!({"ref": {"branch": "main"}, "url": url, "interval": "1h", "secretRef": {"name": "wrong-ca"}}),
    )
    .await;
    h.wait_failed(
        "wrong",
        "GitOperationFailed",
        "not trusted by the secret's ca.crt",
    )
    .await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_bearer_token_authenticates_and_a_wrong_one_fails() {
    let h = harness("git-bearer").await;
    let repo = Repo::new("bearer");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    let url = format!("{}/{}.git", env("GIT_TOKEN_BASE"), repo.name);
    h.secret("token", &[("bearerToken", env("GIT_BEARER_TOKEN"))])
        .await;
    h.secret("wrong-token", &[("bearerToken", "not-the-token".into())])
        .await;
    for (name, secret) in [("bearer", "token"), ("wrong", "wrong-token")] {
        h.create(
            name,
            serde_json::json!({"ref": {"branch": "main"}, "url": url, "interval": "1h", "secretRef": {"name": secret}}),
        )
        .await;
    }
    wait_ready(&h, "bearer", &format!("main@sha1:{commit}")).await;
    let r = h.wait_failed("wrong", "GitOperationFailed", "403").await;
    let message = ready(&r).unwrap().message;
    assert!(!message.contains("not-the-token"), "token leaked: {message}");
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn a_server_requiring_client_certificates_is_reached_with_tls_crt_and_key() {
    let h = harness("git-mtls").await;
    let repo = Repo::new("mtls");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    let url = format!("{}/{}.git", env("GIT_MTLS_BASE"), repo.name);
    let read = |var: &str| std::fs::read_to_string(env(var)).unwrap();
    let basic = [
        ("username", env("GIT_HTTP_USER")),
        ("password", env("GIT_HTTP_PASSWORD")),
        ("ca.crt", read("SOURCES_CA_FILE")),
    ];
    let mut with_cert = basic.to_vec();
    with_cert.extend([
        ("tls.crt", read("GIT_CLIENT_CERT")),
        ("tls.key", read("GIT_CLIENT_KEY")),
    ]);
    h.secret("with-cert", &with_cert).await;
    h.secret("no-cert", &basic).await;
    let mut half = basic.to_vec();
    half.push(("tls.crt", read("GIT_CLIENT_CERT")));
    h.secret("half-cert", &half).await;
    for (name, secret) in [
        ("mtls", "with-cert"),
        ("no-cert", "no-cert"),
        ("half", "half-cert"),
    ] {
        h.create(
            name,
            serde_json::json!({"ref": {"branch": "main"}, "url": url, "interval": "1h", "secretRef": {"name": secret}}),
        )
        .await;
    }
    wait_ready(&h, "mtls", &format!("main@sha1:{commit}")).await;
    h.wait_failed("no-cert", "GitOperationFailed", "unable to list remote")
        .await;
    h.wait_failed(
        "half",
        "AuthenticationFailed",
        "needs both 'tls.crt' and 'tls.key'",
    )
    .await;
    h.done().await;
}

#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn proxy_secret_ref_routes_git_over_http_and_https_through_the_proxy() {
    let h = harness("git-proxy").await;
    let repo = Repo::new("proxied");
    repo.write("a.yaml", "a: 1\n");
    let commit = repo.commit("init");
    let proxy = |password: String| {
        vec![
            ("address", env("PROXY_ADDRESS")),
            ("username", env("PROXY_USER")),
            ("password", password),
        ]
    };
    h.secret("proxy", &proxy(env("PROXY_PASSWORD"))).await;
    h.secret("bad-proxy", &proxy("wrong-proxy-password".into())).await;
    let ca = std::fs::read_to_string(env("SOURCES_CA_FILE")).unwrap();
    h.secret(
        "git",
        &[
            ("username", env("GIT_HTTP_USER")),
            ("password", env("GIT_HTTP_PASSWORD")),
            ("ca.crt", ca),
        ],
    )
    .await;
    let https = format!("{}/{}.git", env("GIT_HTTPS_BASE"), repo.name);
    for (name, url) in [("https", https.clone()), ("http", repo.http_url())] {
        h.create(
            name,
            serde_json::json!({"ref": {"branch": "main"}, "url": url, "interval": "1h", "secretRef": {"name": "git"},
                "proxySecretRef": {"name": "proxy"}}),
        )
        .await;
        wait_ready(&h, name, &format!("main@sha1:{commit}")).await;
    }
    // Plain HTTP requests name the repository; HTTPS goes through a CONNECT to the server.
    let log = std::fs::read_to_string(env("PROXY_LOG")).unwrap();
    assert!(
        log.contains(&format!("{}.git/info/refs", repo.name)),
        "the proxy did not see the HTTP fetch"
    );
    let https_host = https.split('/').nth(2).unwrap();
    assert!(
        log.contains(&format!("CONNECT {https_host}")),
        "the proxy did not tunnel the HTTPS fetch"
    );
    h.create(
        "bad-proxy",
        serde_json::json!({"ref": {"branch": "main"}, "url": repo.http_url(), "interval": "1h", "secretRef": {"name": "git"},
            "proxySecretRef": {"name": "bad-proxy"}}),
    )
    .await;
    let r = h
        .wait_failed("bad-proxy", "GitOperationFailed", "authentication failed")
        .await;
    let message = ready(&r).unwrap().message;
    assert!(
        !message.contains("wrong-proxy-password"),
        "proxy credentials leaked: {message}"
    );
    h.done().await;
}

/// The binary itself, started with the args of Flux v2.9's Deployment: it elects itself leader
/// in its namespace, reconciles a GitRepository of its shard and serves Flux's and
/// controller-runtime's series on `/metrics`; an unknown feature gate stops it, as Flux's does.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn the_binary_runs_with_flux_deployment_args_and_serves_its_metrics() {
    let binary = env!("CARGO_BIN_EXE_source-controller");
    let (status, stderr) = testing::refused_start(binary, &["--feature-gates=NoSuchGate=true"]);
    assert!(
        !status.success() && stderr.contains("NoSuchGate"),
        "{status}: {stderr}"
    );

    let client = testing::client().await;
    testing::install_toolkit_crds(&client).await;
    let ns = testing::namespace(&client, "git-binary").await;
    let storage = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The shard's selector keeps it off the objects of the other tests running beside it.
    let shard = format!("--watch-label-selector=driftless.dev/shard={ns}");
    let running = testing::start_with_flux_args(
        binary,
        "source-controller",
        &ns,
        &[&shard],
        &[
            &format!("--storage-path={}", storage.path().display()),
            &format!("--storage-addr=127.0.0.1:{port}"),
            &format!("--storage-adv-addr=127.0.0.1:{port}"),
        ],
    )
    .await;

    let repo = Repo::new("binary");
    repo.write("deploy/app.yaml", "kind: ConfigMap\n");
    let commit = repo.commit("Add app");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "http-auth"},
        "stringData": {"username": env("GIT_HTTP_USER"), "password": env("GIT_HTTP_PASSWORD")}
    }))
    .unwrap();
    Api::namespaced(client.clone(), &ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let objects: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let obj: GitRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app", "labels": {"driftless.dev/shard": ns}},
        "spec": {"url": repo.http_url(), "interval": "10m", "ref": {"branch": "main"},
                 "secretRef": {"name": "http-auth"}}
    }))
    .unwrap();
    objects.create(&Default::default(), &obj).await.unwrap();
    let revision = format!("main@sha1:{commit}");
    let ready = testing::wait_for(&objects, "app", T, |r: &GitRepository| {
        r.status
            .as_ref()
            .and_then(|s| s.artifact.as_ref())
            .is_some_and(|a| a.revision == revision)
    })
    .await;
    let url = ready.status.unwrap().artifact.unwrap().url;
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/gitrepository/{ns}/app/")),
        "{url}"
    );

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = leases
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|l| l.metadata.name)
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("source-controller-leader-election-")),
        "{names:?}"
    );

    let metrics = running.metrics().await;
    // Counted series at least 1; the depth is there (0 once the work is done).
    for (series, counted) in [
        (
            format!(
                r#"gotk_reconcile_duration_seconds_count{{kind="GitRepository",name="app",namespace="{ns}"}}"#
            ),
            true,
        ),
        (
            r#"controller_runtime_reconcile_total{controller="gitrepository",result="requeue_after"}"#.into(),
            true,
        ),
        (
            r#"controller_runtime_max_concurrent_reconciles{controller="gitrepository"}"#.into(),
            true,
        ),
        (
            r#"workqueue_adds_total{name="gitrepository",controller="gitrepository"}"#.into(),
            true,
        ),
        (
            r#"workqueue_queue_duration_seconds_count{name="gitrepository",controller="gitrepository"}"#
                .into(),
            true,
        ),
        (
            r#"workqueue_depth{name="gitrepository",controller="gitrepository",priority=""}"#.into(),
            false,
        ),
    ] {
        let line = metrics.lines().find(|l| l.starts_with(&series));
        assert!(
            line.is_some_and(|l| !counted || !l.ends_with(" 0")),
            "{series} missing or zero in:\n{metrics}"
        );
    }
    drop(running);
    testing::delete_namespace(&client, &ns).await;
}

/// `recurseSubmodules`: submodules, and their submodules, are checked out into the artifact
/// with the repository's credentials, as Flux's client does (down to 10 levels).
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn submodules_of_submodules_are_checked_out() {
    let h = harness("git-submodules").await;
    let inner = Repo::new("inner");
    inner.write("inner.yaml", "kind: Inner\n");
    inner.commit("inner");
    let middle = Repo::new("middle");
    middle.write("middle.yaml", "kind: Middle\n");
    middle.add_submodule("inner", &inner);
    middle.commit("middle");
    let outer = Repo::new("outer");
    outer.write("outer.yaml", "kind: Outer\n");
    outer.add_submodule("middle", &middle);
    let commit = outer.commit("outer");
    http_secret(&h).await;
    h.create(
        "app",
        serde_json::json!({"url": outer.http_url(), "interval": "10m", "ref": {"branch": "main"},
            "secretRef": {"name": "http-auth"}, "recurseSubmodules": true}),
    )
    .await;
    let r = wait_ready(&h, "app", &format!("main@sha1:{commit}")).await;
    let artifact = r.status.unwrap().artifact.unwrap();
    let out = tempfile::tempdir().unwrap();
    Fetcher::default()
        .fetch(&artifact.url, &artifact.digest, out.path())
        .await
        .unwrap();
    let read = |path: &str| std::fs::read_to_string(out.path().join(path)).unwrap_or_default();
    assert_eq!(read("outer.yaml"), "kind: Outer\n");
    assert_eq!(read("middle/middle.yaml"), "kind: Middle\n");
    assert_eq!(read("middle/inner/inner.yaml"), "kind: Inner\n");
    h.done().await;
}

/// A GitRepository without `ref` follows `master`, as Flux's does (not the remote's default
/// branch), so a GitRepository moved from Flux resolves to the same commit.
#[tokio::test]
#[ignore = "needs the testenv (hack/test.sh)"]
async fn without_a_ref_the_master_branch_is_followed() {
    let h = harness("git-master").await;
    let repo = Repo::new("master");
    repo.write("on-main.yaml", "kind: ConfigMap\n");
    repo.commit("main");
    repo.write("on-master.yaml", "kind: ConfigMap\n");
    git(repo.work.path(), &["add", "-A"]);
    git(repo.work.path(), &["commit", "-q", "-m", "master"]);
    git(repo.work.path(), &["push", "-q", "origin", "HEAD:master"]);
    let master = git(repo.work.path(), &["rev-parse", "HEAD"]);
    http_secret(&h).await;
    h.create(
        "app",
        serde_json::json!({"url": repo.http_url(), "interval": "10m", "secretRef": {"name": "http-auth"}}),
    )
    .await;
    wait_ready(&h, "app", &format!("master@sha1:{master}")).await;
    h.done().await;
}
