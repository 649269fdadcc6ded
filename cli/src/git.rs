//! Git for `bootstrap` and `create secret git`: clone (or start) a branch, commit, push, scan an
//! SSH host key, generate deploy keys. libgit2 via git2, with the credentials given on the
//! command line.

use std::cell::RefCell;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use git2::{
    CertificateCheckStatus, Cred, CredentialType, FetchOptions, PushOptions, RemoteCallbacks, Repository,
    Signature,
};

/// Credentials for the clone and push.
#[derive(Clone, Debug)]
pub enum Auth {
    /// http(s) basic auth.
    Basic { username: String, password: String },
    /// An SSH private key (OpenSSH or PEM text).
    SshKey {
        identity: String,
        passphrase: Option<String>,
    },
    /// ssh-agent (no key given).
    SshAgent,
    /// No credentials.
    Anonymous,
}

/// `user@host:path` (scp form) as `ssh://user@host/path`; other URLs unchanged.
pub fn normalize_url(url: &str) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    match url.split_once(':') {
        Some((host, path)) if host.contains('@') => format!("ssh://{host}/{}", path.trim_start_matches('/')),
        _ => url.to_string(),
    }
}

pub fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://")
}

/// Host and port of a URL (`ssh://git@host:2222/x` → ("host", Some(2222))).
fn host_and_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host.trim_matches(['[', ']']).to_string(), port.parse().ok())
        }
        _ => (host_port.trim_matches(['[', ']']).to_string(), None),
    }
}

/// A `known_hosts` line for `host[:port]` and a raw host key.
fn known_hosts_line(host: &str, port: Option<u16>, key_type: &str, key: &[u8]) -> String {
    let host = match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host.to_string(),
    };
    format!(
        "{host} {key_type} {}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Callbacks with the credentials; the SSH host key seen is recorded in `host_key`.
fn callbacks<'a>(auth: &'a Auth, host_key: &'a RefCell<Option<(String, Vec<u8>)>>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let tried = RefCell::new(0u8);
    cb.credentials(move |_url, username, allowed| {
        *tried.borrow_mut() += 1;
        if *tried.borrow() > 3 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        let user = username.unwrap_or("git");
        match auth {
            Auth::Basic { username, password } if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(username, password)
            }
            Auth::SshKey { identity, passphrase } if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key_from_memory(user, None, identity, passphrase.as_deref())
            }
            Auth::SshAgent if allowed.contains(CredentialType::SSH_KEY) => Cred::ssh_key_from_agent(user),
            _ if allowed.contains(CredentialType::USERNAME) => Cred::username(user),
            _ => Err(git2::Error::from_str(
                "no credentials for this URL (see --username/--password or --private-key-file)",
            )),
        }
    });
    cb.certificate_check(move |cert, _host| {
        if let Some(hk) = cert.as_hostkey()
            && let (Some(key), Some(kind)) = (hk.hostkey(), hk.hostkey_type())
        {
            *host_key.borrow_mut() = Some((kind.name().to_string(), key.to_vec()));
        }
        // Trust on first use: bootstrap records the key it saw in the cluster's known_hosts.
        Ok(CertificateCheckStatus::CertificateOk)
    });
    cb
}

/// A working copy of one branch in a temporary directory.
pub struct Checkout {
    pub repo: Repository,
    pub url: String,
    pub branch: String,
    auth: Auth,
    /// The `known_hosts` line of the SSH server, when the URL is SSH.
    pub known_hosts: Option<String>,
    _dir: tempfile::TempDir,
}

impl Checkout {
    /// Fetches `branch` of `url`, or starts it when the repository is empty or lacks it.
    pub fn open(url: &str, branch: &str, auth: Auth) -> anyhow::Result<Checkout> {
        let dir = tempfile::tempdir()?;
        let repo = Repository::init(dir.path())?;
        let host_key = RefCell::new(None);
        let exists = {
            let mut remote = repo.remote("origin", url)?;
            let mut fetch = FetchOptions::new();
            fetch.remote_callbacks(callbacks(&auth, &host_key));
            let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
            remote
                .fetch(&[refspec.as_str()], Some(&mut fetch), None)
                .map_err(|e| anyhow!("cannot clone {url}: {}", e.message()))?;
            repo.find_reference(&format!("refs/remotes/origin/{branch}"))
                .is_ok()
        };
        if exists {
            let commit = repo
                .find_reference(&format!("refs/remotes/origin/{branch}"))?
                .peel_to_commit()?;
            repo.branch(branch, &commit, true)?;
            repo.set_head(&format!("refs/heads/{branch}"))?;
            repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
        } else {
            repo.set_head(&format!("refs/heads/{branch}"))?;
        }
        let known_hosts = host_key.into_inner().map(|(kind, key)| {
            let (host, port) = host_and_port(url);
            known_hosts_line(&host, port, &kind, &key)
        });
        Ok(Checkout {
            repo,
            url: url.to_string(),
            branch: branch.to_string(),
            auth,
            known_hosts,
            _dir: dir,
        })
    }

    pub fn workdir(&self) -> &Path {
        self.repo.workdir().unwrap_or_else(|| Path::new("."))
    }

    /// Writes a file (creating directories); returns whether its content changed.
    pub fn write(&self, path: &str, content: &str) -> anyhow::Result<bool> {
        let target = self.workdir().join(path);
        if std::fs::read_to_string(&target).ok().as_deref() == Some(content) {
            return Ok(false);
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        Ok(true)
    }

    pub fn exists(&self, path: &str) -> bool {
        self.workdir().join(path).exists()
    }

    /// Commits everything under the working tree when it differs from HEAD; the new commit's id.
    pub fn commit(&self, message: &str, author: &Signature<'_>) -> anyhow::Result<Option<String>> {
        let mut index = self.repo.index()?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
        index.write()?;
        let tree_id = index.write_tree()?;
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
            return Ok(None);
        }
        let tree = self.repo.find_tree(tree_id)?;
        let parents: Vec<_> = parent.iter().collect();
        let id = self
            .repo
            .commit(Some("HEAD"), author, author, message, &tree, &parents)?;
        Ok(Some(id.to_string()))
    }

    /// The commit HEAD points to.
    pub fn head(&self) -> anyhow::Result<String> {
        Ok(self.repo.head()?.peel_to_commit()?.id().to_string())
    }

    /// Pushes the branch; a rejected (non-fast-forward) push is an error that says so.
    pub fn push(&self) -> anyhow::Result<()> {
        let host_key = RefCell::new(None);
        let rejected = RefCell::new(None);
        let mut cb = callbacks(&self.auth, &host_key);
        cb.push_update_reference(|reference, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(format!("{reference}: {status}"));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cb);
        let mut remote = self.repo.find_remote("origin")?;
        let refspec = format!("refs/heads/{0}:refs/heads/{0}", self.branch);
        remote
            .push(&[refspec.as_str()], Some(&mut options))
            .map_err(|e| anyhow!("cannot push to {}: {}", self.url, e.message()))?;
        drop(remote);
        drop(options);
        if let Some(why) = rejected.into_inner() {
            bail!(
                "push to {} rejected ({why}); the branch moved, run the command again",
                self.url
            );
        }
        Ok(())
    }
}

/// The `known_hosts` line of an SSH URL's server (the connection's host key; no credentials
/// needed, the key is seen before authentication).
pub fn scan_known_hosts(url: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let repo = Repository::init_bare(dir.path())?;
    let host_key = RefCell::new(None);
    {
        let mut remote = repo.remote_anonymous(url)?;
        let auth = Auth::Anonymous;
        let cb = callbacks(&auth, &host_key);
        let _ = remote.connect_auth(git2::Direction::Fetch, Some(cb), None);
    }
    let (kind, key) = host_key
        .into_inner()
        .with_context(|| format!("could not read the SSH host key of {url}"))?;
    let (host, port) = host_and_port(url);
    Ok(known_hosts_line(&host, port, &kind, &key))
}

/// A new SSH key pair, OpenSSH encoded: (private, public).
pub fn generate_key(algorithm: &str) -> anyhow::Result<(String, String)> {
    use ssh_key::{Algorithm, EcdsaCurve, LineEnding, PrivateKey, rand_core::OsRng};
    let algorithm = match algorithm {
        "ecdsa" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        "ed25519" => Algorithm::Ed25519,
        other => bail!("unsupported --ssh-key-algorithm {other:?}: use ecdsa or ed25519"),
    };
    let key = PrivateKey::random(&mut OsRng, algorithm).map_err(|e| anyhow!("generating an SSH key: {e}"))?;
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| anyhow!("encoding the SSH key: {e}"))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding the SSH key: {e}"))?;
    Ok((private, public))
}

/// The public key of an OpenSSH private key.
pub fn public_key_of(private: &str) -> anyhow::Result<String> {
    let key =
        ssh_key::PrivateKey::from_openssh(private).map_err(|e| anyhow!("reading the private key: {e}"))?;
    key.public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding the public key: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_and_hosts() {
        assert_eq!(
            normalize_url("git@github.com:org/repo.git"),
            "ssh://git@github.com/org/repo.git"
        );
        assert_eq!(normalize_url("https://h/x"), "https://h/x");
        assert_eq!(
            host_and_port("ssh://root@127.0.0.1:12222/r"),
            ("127.0.0.1".into(), Some(12222))
        );
        assert_eq!(host_and_port("ssh://git@host/r"), ("host".into(), None));
        assert_eq!(
            known_hosts_line("127.0.0.1", Some(12222), "ssh-ed25519", b"k"),
            "[127.0.0.1]:12222 ssh-ed25519 aw==\n"
        );
    }

    #[test]
    fn keys_are_generated() {
        for algorithm in ["ecdsa", "ed25519"] {
            let (private, public) = generate_key(algorithm).unwrap();
            assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
            assert_eq!(public_key_of(&private).unwrap(), public);
        }
        assert!(generate_key("dsa").is_err());
    }
}
