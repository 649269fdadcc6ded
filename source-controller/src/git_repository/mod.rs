//! GitRepository: fetch a ref, package it as a deterministic artifact, publish it in status.
//!
//! Steps, in order (each owns its conditions):
//! 1. **storage** — garbage-collect old artifacts; forget a stored artifact whose file vanished.
//! 2. **source** — credentials from `secretRef`; list the remote's refs (no pack data); resolve
//!    `ref` to a revision. When the stored artifact already has that revision and the
//!    content-affecting spec (`ignore`, `recurseSubmodules`, `sparseCheckout`) is unchanged,
//!    nothing is cloned. Failures: `FetchFailed=True`.
//! 3. **artifact** — shallow clone, check out, archive with the ignore rules, store, point
//!    `latest.tar.gz` at it, record `status.artifact` and the `observed*` fields, emit
//!    `NewArtifact`. Failures: `StorageOperationFailed=True`.
//!
//! A failure never removes the previously stored artifact: it stays in status and is served.

pub mod auth;
pub mod git;
pub mod reference;

use crate::{
    common::{self, blocking, failed, stored},
    sourceignore::SourceIgnore,
    storage::{ObjectDir, Storage},
};
use driftless_api::{
    meta::condition_types as ct,
    source::{GitRepository, GitRepositoryStatus, reasons},
};
use driftless_runtime::{
    events::EventType,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
};
use kube::{Resource, ResourceExt};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "gitrepository";

/// Reconciles GitRepositories into artifacts in `storage`.
pub struct GitRepositoryReconciler {
    storage: Arc<Storage>,
}

impl GitRepositoryReconciler {
    /// A reconciler storing artifacts in `storage`. `socket_timeout` bounds each network read
    /// or write of git (process-wide), so a silent server cannot hold a thread forever.
    pub fn new(storage: Arc<Storage>, socket_timeout: Duration) -> Self {
        git::set_socket_timeouts(Duration::from_secs(10).min(socket_timeout), socket_timeout);
        Self { storage }
    }

    async fn credentials(
        &self,
        obj: &GitRepository,
        ctx: &ReconcileContext<GitRepository>,
    ) -> Result<auth::GitCredentials, String> {
        let Some(secret_ref) = &obj.spec.secret_ref else {
            return Ok(auth::GitCredentials::default());
        };
        let ns = obj.namespace().unwrap_or_default();
        let data = common::secret_data(&ctx.client, &ns, &secret_ref.name).await?;
        auth::from_secret(&obj.spec.url, &format!("{ns}/{}", secret_ref.name), &data)
            .map_err(|e| e.to_string())
    }

    /// Whether the stored artifact already reflects `revision` and the content-affecting spec.
    fn artifact_current(&self, obj: &GitRepository, status: &GitRepositoryStatus, revision: &str) -> bool {
        status
            .artifact
            .as_ref()
            .is_some_and(|a| a.revision == revision && self.storage.exists(a))
            && status.observed_ignore == obj.spec.ignore
            && status.observed_recurse_submodules.unwrap_or(false)
                == obj.spec.recurse_submodules.unwrap_or(false)
            && status.observed_sparse_checkout == obj.spec.sparse_checkout.clone().filter(|s| !s.is_empty())
    }
}

/// Checks what the CRD pattern cannot: a host after the scheme, a path, and no whitespace. A
/// bad URL needs a spec change, so it stalls instead of retrying.
fn validate_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("invalid URL '{url}': missing scheme"));
    };
    if !matches!(scheme, "http" | "https" | "ssh") {
        return Err(format!("invalid URL '{url}': unsupported scheme '{scheme}'"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    if host.is_empty()
        || url.chars().any(char::is_whitespace)
        || rest.split('/').nth(1).is_none_or(str::is_empty)
    {
        return Err(format!("invalid URL '{url}': expected <scheme>://<host>/<path>"));
    }
    Ok(())
}

impl Reconciler for GitRepositoryReconciler {
    type Kind = GitRepository;

    async fn apply(
        &self,
        obj: &GitRepository,
        status: &mut GitRepositoryStatus,
        ctx: &ReconcileContext<GitRepository>,
    ) -> Result<Success, ReconcileError> {
        let generation = obj.meta().generation;
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        let timeout = common::timeout_of(obj.spec.timeout.as_deref());
        if let Err(message) = validate_url(&obj.spec.url) {
            return Err(common::stalled(status, generation, reasons::URL_INVALID, message));
        }

        // 1. storage
        let mut artifact = status.artifact.take();
        common::reconcile_storage(
            &self.storage,
            STORAGE_KIND,
            &ns,
            &name,
            &mut artifact,
            status,
            generation,
        )
        .await;
        status.artifact = artifact;

        // 2. source
        let creds = self.credentials(obj, ctx).await.map_err(|m| {
            failed(
                status,
                generation,
                ct::FETCH_FAILED,
                reasons::AUTHENTICATION_FAILED,
                m,
            )
        })?;
        let url = obj.spec.url.clone();
        let listed = {
            let (url, creds) = (url.clone(), creds.clone());
            let deadline = Instant::now() + timeout;
            blocking(timeout, move || {
                git::list_remote(&git::Remote {
                    url: &url,
                    creds: &creds,
                    deadline,
                })
                .map_err(|e| e.0)
            })
            .await
        }
        .map_err(|m| {
            failed(
                status,
                generation,
                ct::FETCH_FAILED,
                reasons::GIT_OPERATION_FAILED,
                m,
            )
        })?;
        let resolved = reference::resolve(obj.spec.reference.as_ref(), &listed).map_err(|e| {
            let m = format!("failed to resolve ref: {e}");
            failed(
                status,
                generation,
                ct::FETCH_FAILED,
                reasons::GIT_OPERATION_FAILED,
                m,
            )
        })?;
        if self.artifact_current(obj, status, &resolved.revision) {
            return Ok(stored(status, generation, &resolved.revision));
        }
        let had_artifact = status.artifact.is_some();
        let message = common::outdated(status, had_artifact, generation, &resolved.revision);
        ctx.progress(obj, status, &message).await;

        // 3. artifact
        let workdir = tempfile::tempdir().map_err(|e| {
            let m = format!("failed to create temporary directory: {e}");
            failed(
                status,
                generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::DIRECTORY_CREATION_FAILED,
                m,
            )
        })?;
        let checkout_dir = workdir.path().join("checkout");
        let sparse: Vec<String> = obj.spec.sparse_checkout.clone().unwrap_or_default();
        let submodules = obj.spec.recurse_submodules.unwrap_or(false);
        let checked_out = {
            let (url, creds, target, dir, sparse) = (
                url.clone(),
                creds.clone(),
                resolved.clone(),
                checkout_dir.clone(),
                sparse.clone(),
            );
            let deadline = Instant::now() + timeout;
            blocking(timeout, move || {
                git::checkout(
                    &git::Remote {
                        url: &url,
                        creds: &creds,
                        deadline,
                    },
                    &target,
                    &dir,
                    &sparse,
                    submodules,
                )
                .map_err(|e| e.0)
            })
            .await
        }
        .map_err(|m| {
            failed(
                status,
                generation,
                ct::FETCH_FAILED,
                reasons::GIT_OPERATION_FAILED,
                m,
            )
        })?;
        for dir in &sparse {
            if !checkout_dir.join(dir.trim_matches('/')).is_dir() {
                let m = format!(
                    "sparse checkout directory '{dir}' does not exist at revision '{}'",
                    resolved.revision
                );
                return Err(failed(
                    status,
                    generation,
                    ct::FETCH_FAILED,
                    reasons::GIT_OPERATION_FAILED,
                    m,
                ));
            }
        }

        let storage = self.storage.clone();
        let spec_ignore = obj.spec.ignore.clone();
        let file = format!("{}.tar.gz", checked_out.commit);
        let revision = resolved.revision.clone();
        let (ns2, name2) = (ns.clone(), name.clone());
        let artifact = tokio::task::spawn_blocking(move || {
            let rules = SourceIgnore::new(&checkout_dir, spec_ignore.as_deref());
            let include = |p: &str, is_dir: bool| rules.includes(p, is_dir);
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns2,
                name: &name2,
            };
            storage.store_dir(&dir, &file, &checkout_dir, &include, &revision, None)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| {
            let m = format!("unable to archive artifact to storage: {e}");
            failed(
                status,
                generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::ARCHIVE_OPERATION_FAILED,
                m,
            )
        })?;
        drop(workdir);

        let digest = artifact.digest.clone();
        status.artifact = Some(artifact);
        status.observed_ignore = obj.spec.ignore.clone();
        status.observed_recurse_submodules = obj.spec.recurse_submodules.filter(|r| *r);
        status.observed_sparse_checkout = obj.spec.sparse_checkout.clone().filter(|s| !s.is_empty());
        let success = stored(status, generation, &resolved.revision);
        ctx.recorder
            .publish(
                obj,
                EventType::Normal,
                reasons::NEW_ARTIFACT,
                &format!("stored artifact for commit '{}'", checked_out.summary),
                &[
                    ("revision", resolved.revision.as_str()),
                    ("digest", digest.as_str()),
                ],
            )
            .await;
        Ok(success)
    }

    async fn cleanup(
        &self,
        obj: &GitRepository,
        _ctx: &ReconcileContext<GitRepository>,
    ) -> Result<(), ReconcileError> {
        common::remove_artifacts(
            &self.storage,
            STORAGE_KIND,
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_without_a_host_or_path_are_invalid() {
        for good in [
            "https://github.com/org/repo",
            "ssh://git@host:2222/repo.git",
            "http://127.0.0.1:18080/git/a.git",
        ] {
            assert!(super::validate_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://",
            "https:///repo",
            "ssh://git@:22/x",
            "https://host",
            "https://ho st/r",
        ] {
            assert!(super::validate_url(bad).is_err(), "{bad}");
        }
    }
}
