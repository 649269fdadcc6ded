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
    sourceignore::SourceIgnore,
    storage::{ObjectDir, Storage},
};
use driftless_api::{
    meta::{ReconcileStatus, condition_types as ct},
    source::{GitRepository, GitRepositoryStatus, reasons},
};
use driftless_runtime::{
    conditions::{self, Status},
    duration,
    events::EventType,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Resource, ResourceExt};
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
}

fn timeout_of(obj: &GitRepository) -> Duration {
    obj.spec
        .timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// Checks what the CRD pattern cannot: a host after the scheme, and no whitespace. A bad URL
/// needs a spec change, so it stalls instead of retrying.
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

/// Marks `FetchFailed` and returns the (transient) error.
fn fetch_failed(
    status: &mut GitRepositoryStatus,
    generation: Option<i64>,
    reason: &str,
    message: String,
) -> ReconcileError {
    conditions::set(
        status.conditions_mut(),
        ct::FETCH_FAILED,
        Status::True,
        reason,
        &message,
        generation,
    );
    ReconcileError::transient(reason, message)
}

/// Marks `StorageOperationFailed` and returns the (transient) error.
fn storage_failed(
    status: &mut GitRepositoryStatus,
    generation: Option<i64>,
    reason: &str,
    message: String,
) -> ReconcileError {
    conditions::set(
        status.conditions_mut(),
        ct::STORAGE_OPERATION_FAILED,
        Status::True,
        reason,
        &message,
        generation,
    );
    ReconcileError::transient(reason, message)
}

/// Runs blocking git work off the async runtime, bounded by the object's timeout.
async fn blocking<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Result<T, git::GitError> + Send + 'static,
) -> Result<T, git::GitError> {
    match tokio::time::timeout(timeout + Duration::from_secs(2), tokio::task::spawn_blocking(f)).await {
        Err(_) => Err(git::GitError(format!(
            "timeout after {} waiting for the git operation",
            duration::format(timeout)
        ))),
        Ok(Err(join)) => Err(git::GitError(format!("git operation failed: {join}"))),
        Ok(Ok(r)) => r,
    }
}

impl GitRepositoryReconciler {
    fn dir<'a>(ns: &'a str, name: &'a str) -> ObjectDir<'a> {
        ObjectDir {
            kind: STORAGE_KIND,
            namespace: ns,
            name,
        }
    }

    /// Step 1.
    async fn reconcile_storage(&self, obj: &GitRepository, status: &mut GitRepositoryStatus) {
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        if let Some(artifact) = status.artifact.clone() {
            if !self.storage.exists(&artifact) {
                status.artifact = None;
                conditions::delete(status.conditions_mut(), ct::ARTIFACT_IN_STORAGE);
                conditions::mark_reconciling(
                    status.conditions_mut(),
                    "NoArtifact",
                    "building artifact: disappeared from storage",
                    obj.meta().generation,
                );
                return;
            }
            let storage = self.storage.clone();
            let current = artifact.path.rsplit('/').next().unwrap_or_default().to_string();
            let gc = tokio::task::spawn_blocking(move || {
                storage.garbage_collect(&Self::dir(&ns, &name), &current)
            })
            .await;
            if let Ok(Err(err)) = gc {
                tracing::warn!(%err, "garbage collection of old artifacts failed");
            }
        }
    }

    async fn credentials(
        &self,
        obj: &GitRepository,
        ctx: &ReconcileContext<GitRepository>,
    ) -> Result<auth::GitCredentials, (String, String)> {
        let Some(secret_ref) = &obj.spec.secret_ref else {
            return Ok(auth::GitCredentials::default());
        };
        let ns = obj.namespace().unwrap_or_default();
        let shown = format!("{ns}/{}", secret_ref.name);
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let secret = match secrets.get_opt(&secret_ref.name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err((
                    reasons::AUTHENTICATION_FAILED.into(),
                    format!("failed to get secret '{shown}': secret not found"),
                ));
            }
            Err(e) => {
                return Err((
                    reasons::AUTHENTICATION_FAILED.into(),
                    format!("failed to get secret '{shown}': {e}"),
                ));
            }
        };
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        auth::from_secret(&obj.spec.url, &shown, &data)
            .map_err(|e| (reasons::AUTHENTICATION_FAILED.into(), e.to_string()))
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

    fn succeeded(status: &mut GitRepositoryStatus, generation: Option<i64>, revision: &str) -> Success {
        let message = format!("stored artifact for revision '{revision}'");
        let conds = status.conditions_mut();
        for negative in [
            ct::FETCH_FAILED,
            ct::STORAGE_OPERATION_FAILED,
            ct::ARTIFACT_OUTDATED,
        ] {
            conditions::delete(conds, negative);
        }
        conditions::set(
            conds,
            ct::ARTIFACT_IN_STORAGE,
            Status::True,
            reasons_succeeded(),
            &message,
            generation,
        );
        Success::new(reasons_succeeded(), message).with_revision(revision)
    }
}

fn reasons_succeeded() -> &'static str {
    driftless_api::meta::reasons::SUCCEEDED
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
        let timeout = timeout_of(obj);

        if let Err(message) = validate_url(&obj.spec.url) {
            conditions::set(
                status.conditions_mut(),
                ct::FETCH_FAILED,
                Status::True,
                reasons::URL_INVALID,
                &message,
                generation,
            );
            return Err(ReconcileError::stalled(reasons::URL_INVALID, message));
        }

        // 1. storage
        self.reconcile_storage(obj, status).await;

        // 2. source
        let creds = self
            .credentials(obj, ctx)
            .await
            .map_err(|(reason, message)| fetch_failed(status, generation, &reason, message))?;
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
            })
            .await
        }
        .map_err(|e| fetch_failed(status, generation, reasons::GIT_OPERATION_FAILED, e.0))?;
        let resolved = reference::resolve(obj.spec.reference.as_ref(), &listed).map_err(|e| {
            fetch_failed(
                status,
                generation,
                reasons::GIT_OPERATION_FAILED,
                format!("failed to resolve ref: {e}"),
            )
        })?;
        if self.artifact_current(obj, status, &resolved.revision) {
            return Ok(Self::succeeded(status, generation, &resolved.revision));
        }
        let message = match &status.artifact {
            Some(_) => {
                let m = format!("new upstream revision '{}'", resolved.revision);
                conditions::set(
                    status.conditions_mut(),
                    ct::ARTIFACT_OUTDATED,
                    Status::True,
                    reasons::NEW_REVISION,
                    &m,
                    generation,
                );
                format!("building artifact: {m}")
            }
            None => format!("building artifact: new revision '{}'", resolved.revision),
        };
        ctx.progress(obj, status, &message).await;

        // 3. artifact
        let workdir = tempfile::tempdir().map_err(|e| {
            storage_failed(
                status,
                generation,
                reasons::DIRECTORY_CREATION_FAILED,
                format!("failed to create temporary directory: {e}"),
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
            })
            .await
        }
        .map_err(|e| fetch_failed(status, generation, reasons::GIT_OPERATION_FAILED, e.0))?;
        for dir in &sparse {
            let path = checkout_dir.join(dir.trim_matches('/'));
            if !path.is_dir() {
                return Err(fetch_failed(
                    status,
                    generation,
                    reasons::GIT_OPERATION_FAILED,
                    format!(
                        "sparse checkout directory '{dir}' does not exist at revision '{}'",
                        resolved.revision
                    ),
                ));
            }
        }

        let storage = self.storage.clone();
        let spec_ignore = obj.spec.ignore.clone();
        let file = format!("{}.tar.gz", checked_out.commit);
        let revision = resolved.revision.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let rules = SourceIgnore::new(&checkout_dir, spec_ignore.as_deref());
            let include = |p: &str, is_dir: bool| rules.includes(p, is_dir);
            storage.store_dir(
                &Self::dir(&ns, &name),
                &file,
                &checkout_dir,
                &include,
                &revision,
                None,
            )
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| {
            storage_failed(
                status,
                generation,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!("unable to archive artifact to storage: {e}"),
            )
        })?;
        drop(workdir);

        let digest = stored.digest.clone();
        status.artifact = Some(stored);
        status.observed_ignore = obj.spec.ignore.clone();
        status.observed_recurse_submodules = obj.spec.recurse_submodules.filter(|r| *r);
        status.observed_sparse_checkout = obj.spec.sparse_checkout.clone().filter(|s| !s.is_empty());
        let success = Self::succeeded(status, generation, &resolved.revision);
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
        let storage = self.storage.clone();
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        tokio::task::spawn_blocking(move || storage.remove_all(&Self::dir(&ns, &name)))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| {
                ReconcileError::transient(
                    reasons::STAT_OPERATION_FAILED,
                    format!("failed to remove artifacts: {e}"),
                )
            })
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
