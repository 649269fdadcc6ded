//! Remote bases and files for the build, as Flux allows them unless `--no-remote-bases`: git
//! repositories cloned anonymously (as kustomize's `git` does in Flux's controller: public
//! repositories, or what the URL itself carries) and http(s) files downloaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use driftless_api::source::GitRepositoryRef;
use driftless_git::auth::GitCredentials;
use driftless_git::reference;
use driftless_git::transport::{self, Remote as GitRemoteSpec};
use driftless_kustomize::Error;
use driftless_kustomize::remote::{Remote, RepoSpec};

/// Clones live in temporary directories removed when the fetcher is dropped (after the build);
/// a repository named twice at the same ref is cloned once.
#[derive(Default)]
pub struct Fetcher {
    clones: Mutex<HashMap<(String, String), (tempfile::TempDir, PathBuf)>>,
}

/// The most a remote file may weigh.
const MAX_DOWNLOAD: u64 = 64 << 20;

impl Remote for Fetcher {
    fn checkout(&self, spec: &RepoSpec) -> Result<PathBuf, Error> {
        // A server that accepts and then says nothing must not hold a build thread forever (the
        // deadline is only checked while data flows).
        transport::set_socket_timeouts(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(30),
        );
        let key = (spec.clone_url.clone(), spec.reference.clone());
        if let Some(path) = self
            .clones
            .lock()
            .ok()
            .and_then(|c| c.get(&key).map(|(_, p)| p.clone()))
        {
            return Ok(path);
        }
        let creds = GitCredentials::default();
        let remote = GitRemoteSpec {
            url: &spec.clone_url,
            creds: &creds,
            deadline: Instant::now() + spec.timeout,
        };
        let context = |e: String| {
            Error::new(format!(
                "remote base '{}': {e}",
                driftless_kustomize::remote::redacted(&spec.clone_url)
            ))
        };
        let refs = transport::list_remote(&remote).map_err(|e| context(e.to_string()))?;
        let wanted = match spec.reference.as_str() {
            // kustomize's `git fetch` without a ref takes the remote's HEAD.
            "" => Some(GitRepositoryRef {
                name: Some(
                    refs.default_branch
                        .clone()
                        .unwrap_or_else(|| "refs/heads/master".into()),
                ),
                ..GitRepositoryRef::default()
            }),
            commit if commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()) => {
                Some(GitRepositoryRef {
                    commit: Some(commit.to_string()),
                    ..GitRepositoryRef::default()
                })
            }
            name => {
                let full = [format!("refs/heads/{name}"), format!("refs/tags/{name}")]
                    .into_iter()
                    .find(|full| refs.refs.iter().any(|r| &r.name == full))
                    .ok_or_else(|| context(format!("couldn't find remote ref '{name}'")))?;
                Some(GitRepositoryRef {
                    name: Some(full),
                    ..GitRepositoryRef::default()
                })
            }
        };
        let target = reference::resolve(wanted.as_ref(), &refs).map_err(|e| context(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| context(e.to_string()))?;
        transport::checkout(&remote, &target, dir.path(), &[], spec.submodules)
            .map_err(|e| context(e.to_string()))?;
        let path = dir.path().canonicalize().map_err(|e| context(e.to_string()))?;
        if let Ok(mut clones) = self.clones.lock() {
            clones.insert(key, (dir, path.clone()));
        }
        Ok(path)
    }

    fn download(&self, url: &str) -> Result<Vec<u8>, Error> {
        let failed = |e: String| {
            Error::new(format!(
                "remote file '{}': {e}",
                driftless_kustomize::remote::redacted(url)
            ))
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(27))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let response = client.get(url).send().map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("HTTP error: status code {}", status.as_u16())));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(response, MAX_DOWNLOAD + 1), &mut bytes)
            .map_err(|e| failed(e.to_string()))?;
        if bytes.len() as u64 > MAX_DOWNLOAD {
            return Err(failed(format!("larger than {} MiB", MAX_DOWNLOAD >> 20)));
        }
        Ok(bytes)
    }
}
