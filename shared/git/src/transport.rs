//! Git transport with git2 (blocking; callers run it off the async runtime): list the remote's
//! refs (no pack data), fetch + check out one commit (shallow where the ref allows), commit the
//! working tree and push.
//!
//! SSH host keys are checked against the Secret's `known_hosts`: a mismatch or an unknown host
//! fails. Operations stop at the deadline (the transfer callback cancels them). Credentials
//! never appear in the errors.

use crate::{
    auth::{GitAuth, GitCredentials},
    reference::{RemoteRef, RemoteRefs, Resolved},
};
use base64::Engine;
use git2::{
    CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions, Oid, ProxyOptions,
    RemoteCallbacks, Repository, build::CheckoutBuilder,
};
use std::{cell::Cell, path::Path, time::Instant};

/// Bounds every socket operation of libgit2: connecting, and each read or write.
///
/// A server that accepts a connection and then says nothing would otherwise block a git
/// thread forever (the transfer callback that enforces `spec.timeout` only runs while data
/// flows), and blocking threads cannot be cancelled from async code.
///
/// The bounds are handed to libgit2 before its first network operation, not now: setting them
/// initialises libgit2 and with it OpenSSL, which costs an idle controller about 2.5 MiB of
/// resident memory before any repository needs it.
pub fn set_socket_timeouts(connect: std::time::Duration, io: std::time::Duration) {
    // Every caller in a process sets the same values; the first wins.
    let _ = SOCKET_TIMEOUTS.set((connect, io));
}

static SOCKET_TIMEOUTS: std::sync::OnceLock<(std::time::Duration, std::time::Duration)> =
    std::sync::OnceLock::new();

/// Gives libgit2 the socket bounds, once, before the first connection.
#[allow(unsafe_code)]
fn apply_socket_timeouts() {
    static APPLIED: std::sync::Once = std::sync::Once::new();
    // (A connection before any bounds were set leaves them to a later one.)
    let Some((connect, io)) = SOCKET_TIMEOUTS.get() else {
        return;
    };
    APPLIED.call_once(|| {
        let ms = |d: &std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: these set process-global libgit2 options (two ints), once, before this
        // process opens its first git connection.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect));
            let _ = git2::opts::set_server_timeout_in_milliseconds(ms(io));
        }
    });
}

/// A failed git operation, with a message fit for a status condition.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GitError(pub String);

/// The commit checked out.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// Commit id (hex).
    pub commit: String,
    /// First line of the commit message.
    pub summary: String,
}

/// Where and how to reach the remote.
pub struct Remote<'a> {
    /// Repository URL.
    pub url: &'a str,
    /// Credentials.
    pub creds: &'a GitCredentials,
    /// Give up after this instant.
    pub deadline: Instant,
}

fn redact(url: &str, msg: &str) -> String {
    // A URL with inline credentials (`https://user:pass@host`) must not leak into status.
    let mut out = msg.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.split_once('@')
        && !userinfo.contains('/')
    {
        out = out.replace(&format!("{scheme}://{userinfo}@"), &format!("{scheme}://"));
        out = out.replace(userinfo, "***");
    }
    out
}

fn host_and_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.trim_matches(['[', ']']).to_string(), p.parse().ok())
        }
        _ => (hostport.trim_matches(['[', ']']).to_string(), None),
    }
}

/// Whether `known_hosts` has a key for `host`/`port` equal to `key` (raw key blob).
fn known_host_matches(known_hosts: &str, host: &str, port: Option<u16>, key: &[u8]) -> Result<(), String> {
    let wanted: Vec<String> = match port {
        Some(p) if p != 22 => vec![format!("[{host}]:{p}")],
        _ => vec![host.to_string(), format!("[{host}]:22")],
    };
    let mut known = false;
    for line in known_hosts
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(b64)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if !hosts.split(',').any(|h| wanted.iter().any(|w| w == h)) {
            continue;
        }
        known = true;
        if base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|k| k == key)
        {
            return Ok(());
        }
    }
    Err(if known {
        format!(
            "host key mismatch for {}: the server's key is not in known_hosts",
            wanted[0]
        )
    } else {
        format!("unknown host {}: no entry in known_hosts", wanted[0])
    })
}

/// Verifies an HTTPS server certificate (DER) for `host` against the PEM CA bundle `ca`.
fn verify_with_ca(ca: &[u8], leaf: &[u8], host: &str) -> Result<(), String> {
    use rustls::{
        RootCertStore,
        client::{WebPkiServerVerifier, danger::ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    };
    driftless_artifact::install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| format!("invalid ca.crt: {e}"))?;
        roots.add(cert).map_err(|e| format!("invalid ca.crt: {e}"))?;
    }
    let verifier = WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .map_err(|e| format!("invalid ca.crt: {e}"))?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("invalid host '{host}': {e}"))?;
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("TLS certificate of '{host}' is not trusted by the secret's ca.crt: {e}"))
}

/// Callbacks with credentials, host key verification and the deadline; `failure` receives a
/// readable reason when a callback rejects.
fn callbacks<'a>(remote: &'a Remote<'a>, failure: &'a Cell<Option<String>>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let attempts = Cell::new(0u32);
    let auth = &remote.creds.auth;
    cb.credentials(move |_url, username, allowed| {
        attempts.set(attempts.get() + 1);
        if attempts.get() > 1 {
            failure.set(Some("authentication failed".into()));
            return Err(git2::Error::from_str("authentication failed"));
        }
        match auth {
            GitAuth::Basic {
                username: u,
                password,
            } if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(u, password)
            }
            GitAuth::Ssh {
                identity, passphrase, ..
            } if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key_from_memory(username.unwrap_or("git"), None, identity, passphrase.as_deref())
            }
            _ if allowed.contains(CredentialType::USERNAME) => Cred::username(username.unwrap_or("git")),
            _ => {
                failure.set(Some(
                    "authentication required but no matching credentials in secretRef".into(),
                ));
                Err(git2::Error::from_str("authentication required"))
            }
        }
    });
    let (host, port) = host_and_port(remote.url);
    let ca_cert = remote.creds.ca_cert.as_deref();
    cb.certificate_check(move |cert, _host| {
        if let Some(x509) = cert.as_x509() {
            // HTTPS: with a `ca.crt` the server must chain to it; without one, libgit2 checks
            // the system roots.
            let Some(ca) = ca_cert else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            return match verify_with_ca(ca, x509.data(), &host) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(reason) => {
                    failure.set(Some(reason.clone()));
                    Err(git2::Error::from_str(&reason))
                }
            };
        }
        let Some(hostkey) = cert.as_hostkey() else {
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let GitAuth::Ssh { known_hosts, .. } = auth else {
            failure.set(Some(
                "SSH URLs need a secretRef with identity and known_hosts".into(),
            ));
            return Err(git2::Error::from_str("no known_hosts"));
        };
        let key = hostkey.hostkey().unwrap_or_default();
        match known_host_matches(known_hosts, &host, port, key) {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(reason) => {
                failure.set(Some(reason.clone()));
                Err(git2::Error::from_str(&reason))
            }
        }
    });
    let deadline = remote.deadline;
    cb.transfer_progress(move |_| {
        if Instant::now() > deadline {
            failure.set(Some("timed out waiting for the git operation to finish".into()));
            return false;
        }
        true
    });
    cb
}

fn describe(remote: &Remote<'_>, what: &str, e: &git2::Error, failure: &Cell<Option<String>>) -> GitError {
    let reason = failure.take().unwrap_or_else(|| e.message().to_string());
    GitError(redact(remote.url, &format!("{what} '{}': {reason}", remote.url)))
}

/// The proxy from `proxySecretRef`, else the environment's (`HTTPS_PROXY`, …).
fn proxy_options<'a>(remote: &Remote<'_>) -> ProxyOptions<'a> {
    let mut proxy = ProxyOptions::new();
    match &remote.creds.proxy {
        Some(url) => {
            proxy.url(url);
        }
        None => {
            proxy.auto();
        }
    }
    proxy
}

fn bearer_header(creds: &GitCredentials) -> Option<String> {
    match &creds.auth {
        GitAuth::Bearer(t) => Some(format!("Authorization: Bearer {t}")),
        _ => None,
    }
}

/// The URL to hand libgit2: remotes behind a proxy or needing a client certificate go through
/// our HTTP transport (see `http`) while the returned route lives. Every network operation
/// starts here.
fn transport_url(remote: &Remote<'_>) -> (String, Option<crate::http::Route>) {
    apply_socket_timeouts();
    if crate::http::needed(remote.url, remote.creds) {
        let (url, route) = crate::http::route(remote.url, remote.creds, remote.deadline);
        (url, Some(route))
    } else {
        (remote.url.to_string(), None)
    }
}

/// Lists the remote's refs and default branch, transferring no pack data.
pub fn list_remote(remote: &Remote<'_>) -> Result<RemoteRefs, GitError> {
    let failure = Cell::new(None);
    let (url, _route) = transport_url(remote);
    let mut r = git2::Remote::create_detached(url.as_str()).map_err(|e| {
        GitError(redact(
            remote.url,
            &format!("invalid URL '{}': {}", remote.url, e.message()),
        ))
    })?;
    let headers = bearer_header(remote.creds);
    let conn = if headers.is_some() {
        // git2 sends custom headers only on fetch; a bearer-token remote is listed through a
        // fetch connection of zero refspecs.
        None
    } else {
        Some(
            r.connect_auth(
                Direction::Fetch,
                Some(callbacks(remote, &failure)),
                Some(proxy_options(remote)),
            )
            .map_err(|e| describe(remote, "unable to list remote", &e, &failure))?,
        )
    };
    let (refs, default_branch) = match conn {
        Some(conn) => advertised(remote, &failure, conn.list(), conn.default_branch())?,
        None => list_with_fetch(remote, headers.as_deref().unwrap_or_default())?,
    };
    Ok(RemoteRefs { refs, default_branch })
}

fn list_with_fetch(remote: &Remote<'_>, header: &str) -> Result<(Vec<RemoteRef>, Option<String>), GitError> {
    let failure = Cell::new(None);
    let dir = tempfile::tempdir().map_err(|e| GitError(e.to_string()))?;
    let repo = Repository::init_bare(dir.path()).map_err(|e| GitError(e.message().to_string()))?;
    let (url, _route) = transport_url(remote);
    let mut r = repo
        .remote_anonymous(&url)
        .map_err(|e| GitError(redact(remote.url, e.message())))?;
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(remote, &failure));
    fo.proxy_options(proxy_options(remote));
    fo.custom_headers(&[header]);
    r.fetch::<&str>(&[], Some(&mut fo), None)
        .map_err(|e| describe(remote, "unable to list remote", &e, &failure))?;
    advertised(remote, &failure, r.list(), r.default_branch())
}

/// The refs and the default branch a connected remote advertised.
fn advertised(
    remote: &Remote<'_>,
    failure: &Cell<Option<String>>,
    heads: Result<&[git2::RemoteHead<'_>], git2::Error>,
    default_branch: Result<git2::Buf, git2::Error>,
) -> Result<(Vec<RemoteRef>, Option<String>), GitError> {
    let refs = heads
        .map_err(|e| describe(remote, "unable to list remote", &e, failure))?
        .iter()
        .map(|h| RemoteRef {
            name: h.name().to_string(),
            oid: h.oid().to_string(),
        })
        .collect();
    let default = default_branch
        .ok()
        .and_then(|b| b.as_str().ok().map(str::to_string));
    Ok((refs, default))
}

/// Fetches `target` into a new repository at `dir` and checks out its commit. With `sparse`,
/// only those directories are checked out; with `submodules`, submodules are checked out too.
pub fn checkout(
    remote: &Remote<'_>,
    target: &Resolved,
    dir: &Path,
    sparse: &[String],
    submodules: bool,
) -> Result<Checkout, GitError> {
    let failure = Cell::new(None);
    let repo = Repository::init(dir)
        .map_err(|e| GitError(format!("failed to create repository: {}", e.message())))?;
    {
        let (url, _route) = transport_url(remote);
        let mut r = repo
            .remote_anonymous(&url)
            .map_err(|e| GitError(redact(remote.url, e.message())))?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks(remote, &failure));
        fo.proxy_options(proxy_options(remote));
        if target.depth > 0 {
            fo.depth(target.depth);
        }
        let header = bearer_header(remote.creds);
        if let Some(h) = &header {
            fo.custom_headers(&[h.as_str()]);
        }
        fo.download_tags(git2::AutotagOption::None);
        r.fetch(&[target.refspec.as_str()], Some(&mut fo), None)
            .map_err(|e| describe(remote, "unable to fetch", &e, &failure))?;
    }
    let oid = Oid::from_str(&target.commit).map_err(|e| GitError(e.message().to_string()))?;
    let commit = repo.find_commit(oid).map_err(|_| {
        GitError(format!(
            "commit '{}' not found in '{}'",
            target.commit,
            redact(remote.url, remote.url)
        ))
    })?;
    let mut co = CheckoutBuilder::new();
    co.force();
    for p in sparse {
        co.path(format!("{}/", p.trim_matches('/')));
    }
    repo.checkout_tree(commit.as_object(), Some(&mut co))
        .map_err(|e| GitError(format!("checkout failed: {}", e.message())))?;
    repo.set_head_detached(oid)
        .map_err(|e| GitError(e.message().to_string()))?;
    if submodules {
        update_submodules(&repo, remote, SUBMODULE_DEPTH)?;
    }
    Ok(Checkout {
        commit: oid.to_string(),
        summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
    })
}

/// How deep submodules of submodules are checked out (Flux's go-git client: 10 levels).
const SUBMODULE_DEPTH: u32 = 10;

/// Checks out the submodules of `repo`, and theirs, `depth` levels down, with the credentials
/// of the parent's remote.
fn update_submodules(repo: &Repository, remote: &Remote, depth: u32) -> Result<(), GitError> {
    if depth == 0 {
        return Ok(());
    }
    for mut sm in repo.submodules().map_err(|e| GitError(e.message().to_string()))? {
        let failure = Cell::new(None);
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks(remote, &failure));
        let mut opts = git2::SubmoduleUpdateOptions::new();
        opts.fetch(fo);
        let name = sm.name().unwrap_or("").to_string();
        sm.update(true, Some(&mut opts)).map_err(|e| {
            GitError(format!(
                "submodule '{name}': {}",
                failure.take().unwrap_or_else(|| e.message().to_string())
            ))
        })?;
        let nested = sm
            .open()
            .map_err(|e| GitError(format!("submodule '{name}': {}", e.message())))?;
        update_submodules(&nested, remote, depth - 1)?;
    }
    Ok(())
}

/// Who a commit is by.
pub struct Author<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// Commits every change of the working tree of the repository at `dir` on top of its HEAD (signed
/// with `signing` when given) and points `refs/heads/<branch>` and HEAD at it. None when the tree
/// equals HEAD's: nothing to commit.
pub fn commit_all(
    dir: &Path,
    branch: &str,
    message: &str,
    author: &Author<'_>,
    signing: Option<&crate::sign::SigningKey>,
) -> Result<Option<String>, GitError> {
    let git = |e: git2::Error| GitError(e.message().to_string());
    let repo = Repository::open(dir).map_err(git)?;
    let mut index = repo.index().map_err(git)?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .map_err(git)?;
    index.update_all(["*"], None).map_err(git)?;
    index.write().map_err(git)?;
    let tree_id = index.write_tree().map_err(git)?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id).map_err(git)?;
    let signature = git2::Signature::now(author.name, author.email).map_err(git)?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let buffer = repo
        .commit_create_buffer(&signature, &signature, message, &tree, &parents)
        .map_err(git)?;
    let content = buffer
        .as_str()
        .map_err(|_| GitError("commit is not valid UTF-8".into()))?;
    let oid = match signing {
        Some(key) => {
            let armored = key.sign(content.as_bytes()).map_err(GitError)?;
            repo.commit_signed(content, armored.trim_end(), Some("gpgsig"))
                .map_err(git)?
        }
        None => repo
            .commit(None, &signature, &signature, message, &tree, &parents)
            .map_err(git)?,
    };
    let reference = format!("refs/heads/{branch}");
    repo.reference(&reference, oid, true, "commit").map_err(git)?;
    repo.set_head(&reference).map_err(git)?;
    Ok(Some(oid.to_string()))
}

/// Why a push failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The server refused a ref update (the branch moved, or it is protected).
    #[error("{0}")]
    Rejected(String),
    /// Any other failure (connection, authentication).
    #[error("{0}")]
    Failed(GitError),
}

/// Pushes `refspecs` (`[+]<local ref>:<remote ref>`) of the repository at `dir` to `remote`,
/// with git push options `options` (`key=value`).
pub fn push(
    remote: &Remote<'_>,
    dir: &Path,
    refspecs: &[String],
    options: &[String],
) -> Result<(), PushError> {
    let failure = Cell::new(None);
    let rejected = std::cell::RefCell::new(Vec::new());
    let repo = Repository::open(dir).map_err(|e| PushError::Failed(GitError(e.message().to_string())))?;
    let (url, _route) = transport_url(remote);
    let mut r = repo
        .remote_anonymous(&url)
        .map_err(|e| PushError::Failed(GitError(redact(remote.url, e.message()))))?;
    let mut cb = callbacks(remote, &failure);
    cb.push_update_reference(|reference, status| {
        if let Some(status) = status {
            rejected.borrow_mut().push(format!("{reference}: {status}"));
        }
        Ok(())
    });
    let mut po = git2::PushOptions::new();
    po.remote_callbacks(cb);
    po.proxy_options(proxy_options(remote));
    let header = bearer_header(remote.creds);
    if let Some(h) = &header {
        po.custom_headers(&[h.as_str()]);
    }
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    if !options.is_empty() {
        po.remote_push_options(&options);
    }
    let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
    let pushed = r.push(&specs, Some(&mut po));
    drop(po);
    if let Err(e) = pushed {
        let reason = failure.take().unwrap_or_else(|| e.message().to_string());
        let message = redact(
            remote.url,
            &format!("failed to push to '{}': {reason}", remote.url),
        );
        // A non-fast-forward is reported as an error by some transports.
        return Err(
            if reason.contains("non-fast-forward") || reason.contains("rejected") {
                PushError::Rejected(message)
            } else {
                PushError::Failed(GitError(message))
            },
        );
    }
    let rejected = rejected.into_inner();
    if !rejected.is_empty() {
        return Err(PushError::Rejected(redact(
            remote.url,
            &format!("push to '{}' rejected: {}", remote.url, rejected.join(", ")),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_are_read_from_urls() {
        assert_eq!(
            host_and_port("ssh://git@127.0.0.1:12222/r.git"),
            ("127.0.0.1".into(), Some(12222))
        );
        assert_eq!(
            host_and_port("ssh://git@github.com/org/r.git"),
            ("github.com".into(), None)
        );
    }

    #[test]
    fn known_hosts_match_by_host_port_and_key() {
        let key = b"raw-key-blob";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let kh = format!("# comment\n[127.0.0.1]:12222 ssh-ed25519 {b64}\n");
        assert!(known_host_matches(&kh, "127.0.0.1", Some(12222), key).is_ok());
        let e = known_host_matches(&kh, "127.0.0.1", Some(12222), b"other").unwrap_err();
        assert!(e.starts_with("host key mismatch"), "{e}");
        let e = known_host_matches(&kh, "10.1.1.1", Some(22), key).unwrap_err();
        assert!(e.starts_with("unknown host"), "{e}");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        let url = "https://user:s3cret@example.com/r.git";
        let msg = redact(url, &format!("unable to fetch '{url}': 401"));
        assert!(!msg.contains("s3cret") && !msg.contains("user:"), "{msg}");
    }
}
