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
pub mod http;
pub mod reference;
pub mod verify;

use crate::{
    common::{self, blocking, failed, stored},
    sourceignore::SourceIgnore,
    storage::{ObjectDir, Storage},
};
use driftless_api::{
    meta::{Artifact, ReconcileStatus, condition_types as ct},
    source::{GitRepository, GitRepositoryInclude, GitRepositoryStatus, reasons},
};
use driftless_artifact::fetch::Fetcher;
use driftless_runtime::{
    conditions::{self, Status},
    events::EventType,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success, TriggerFn},
};
use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{WatchStreamExt, reflector::ObjectRef, watcher},
};
use std::{
    path::{Component, Path},
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
        let ns = obj.namespace().unwrap_or_default();
        let mut creds = match &obj.spec.secret_ref {
            None => auth::GitCredentials::default(),
            Some(r) => {
                let data = common::secret_data(&ctx.client, &ns, &r.name).await?;
                auth::from_secret(&obj.spec.url, &format!("{ns}/{}", r.name), &data)
                    .map_err(|e| e.to_string())?
            }
        };
        if let Some(r) = &obj.spec.proxy_secret_ref {
            let data = common::secret_data(&ctx.client, &ns, &r.name).await?;
            creds.proxy = Some(common::proxy_from_secret(&format!("{ns}/{}", r.name), &data)?);
        }
        Ok(creds)
    }

    /// Whether the stored artifact already reflects `revision`, the included artifacts and the
    /// content-affecting spec.
    fn artifact_current(
        &self,
        obj: &GitRepository,
        status: &GitRepositoryStatus,
        revision: &str,
        included: &[Artifact],
    ) -> bool {
        let seen = status.included_artifacts.as_deref().unwrap_or_default();
        let same_includes = seen
            .iter()
            .map(|a| (&a.revision, &a.digest))
            .eq(included.iter().map(|a| (&a.revision, &a.digest)));
        same_includes
            && status.source_verification_mode == verification_mode(obj)
            && status.observed_include == obj.spec.include.clone().filter(|i| !i.is_empty())
            && status
                .artifact
                .as_ref()
                .is_some_and(|a| a.revision == revision && self.storage.exists(a))
            && status.observed_ignore == obj.spec.ignore
            && status.observed_recurse_submodules.unwrap_or(false)
                == obj.spec.recurse_submodules.unwrap_or(false)
            && status.observed_sparse_checkout == obj.spec.sparse_checkout.clone().filter(|s| !s.is_empty())
    }
}

impl GitRepositoryReconciler {
    /// Step 2b, `spec.verify`: checks the OpenPGP or SSH signature of the commit (`HEAD`), of the
    /// annotated tag (`Tag`) or both, and records `SourceVerified`.
    async fn verify(
        &self,
        obj: &GitRepository,
        status: &mut GitRepositoryStatus,
        ctx: &ReconcileContext<GitRepository>,
        resolved: &reference::Resolved,
        commit: &str,
        checkout: &Path,
    ) -> Result<(), ReconcileError> {
        let generation = obj.meta().generation;
        let (Some(spec), Some(mode)) = (&obj.spec.verify, verification_mode(obj)) else {
            conditions::delete(status.conditions_mut(), ct::SOURCE_VERIFIED);
            status.source_verification_mode = None;
            return Ok(());
        };
        let ns = obj.namespace().unwrap_or_default();
        let secret = format!("{ns}/{}", spec.secret_ref.name);
        let outcome = match common::secret_data(&ctx.client, &ns, &spec.secret_ref.name).await {
            Err(e) => Err(e),
            Ok(data) => {
                let (dir, commit, tag, mode) = (
                    checkout.to_path_buf(),
                    commit.to_string(),
                    resolved.tag_object.clone(),
                    mode.clone(),
                );
                tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
                    let keyring = verify::keyring_from_secret(&secret, &data)?;
                    let mut verified = Vec::new();
                    if mode != "Tag" {
                        verified.push(verify::verify_commit(&keyring, &dir, &commit)?);
                    }
                    if mode != "HEAD" {
                        let (name, oid) = tag.ok_or_else(|| {
                            format!("verification mode {mode} needs an annotated tag reference")
                        })?;
                        verified.push(verify::verify_tag(&keyring, &dir, &name, &oid)?);
                    }
                    Ok(verified)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            }
        };
        let outcome = outcome
            .map(|verified| format!("verified signature of\n\t- {}", verified.join("\n\t- ")))
            .map_err(common::VerificationFailure::Failed);
        common::record_verification(status, generation, outcome)?;
        status.source_verification_mode = Some(mode);
        Ok(())
    }

    /// The artifacts of the included GitRepositories, in `spec.include` order. A missing
    /// include or one without an artifact yet is a wait, with `IncludeUnavailable=True`.
    async fn included_artifacts(
        &self,
        obj: &GitRepository,
        includes: &[GitRepositoryInclude],
        status: &mut GitRepositoryStatus,
        ctx: &ReconcileContext<GitRepository>,
    ) -> Result<Vec<Artifact>, ReconcileError> {
        let generation = obj.meta().generation;
        let api: Api<GitRepository> =
            Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        let mut out = Vec::new();
        for inc in includes {
            let name = &inc.repository.name;
            let (reason, message) = match api.get_opt(name).await {
                Ok(Some(dep)) => match dep.status.and_then(|s| s.artifact) {
                    Some(a) => {
                        out.push(a);
                        continue;
                    }
                    None => (
                        "NoArtifact",
                        format!("no artifact available for include '{name}'"),
                    ),
                },
                Ok(None) => (
                    "NotFound",
                    format!("could not get resource for include '{name}': not found"),
                ),
                Err(e) => (
                    "NotFound",
                    format!("could not get resource for include '{name}': {e}"),
                ),
            };
            conditions::set(
                status.conditions_mut(),
                ct::INCLUDE_UNAVAILABLE,
                Status::True,
                reason,
                &message,
                generation,
            );
            return Err(ReconcileError::waiting(reason, message, Duration::from_secs(10)));
        }
        conditions::delete(status.conditions_mut(), ct::INCLUDE_UNAVAILABLE);
        Ok(out)
    }
}

/// The verification mode asked for, normalised (`head` → `HEAD`), or None without `verify`.
fn verification_mode(obj: &GitRepository) -> Option<String> {
    obj.spec.verify.as_ref().map(|v| match v.mode.as_deref() {
        Some("Tag") => "Tag".to_string(),
        Some("TagAndHEAD") => "TagAndHEAD".to_string(),
        _ => "HEAD".to_string(),
    })
}

/// A relative path that stays inside its base (no `..`, not absolute).
fn inside(path: &str) -> Option<&Path> {
    let p = Path::new(path.trim_start_matches("./"));
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then_some(p)
}

/// Downloads an included artifact and copies its `fromPath` into `<checkout>/<toPath>`.
async fn copy_include(
    inc: &GitRepositoryInclude,
    artifact: &Artifact,
    checkout: &Path,
) -> Result<(), String> {
    let name = &inc.repository.name;
    let from = inside(inc.from_path.as_deref().unwrap_or(""))
        .ok_or_else(|| format!("include '{name}': fromPath must stay inside the artifact"))?
        .to_path_buf();
    let to = inside(inc.to_path.as_deref().unwrap_or(name))
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| format!("include '{name}': toPath must be a path inside the repository"))?
        .to_path_buf();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    Fetcher::default()
        .fetch(&artifact.url, &artifact.digest, tmp.path())
        .await
        .map_err(|e| format!("failed to fetch artifact of include '{name}': {e}"))?;
    let (src, dst) = (tmp.path().join(from), checkout.join(to));
    tokio::task::spawn_blocking(move || {
        if dst.exists() {
            std::fs::remove_dir_all(&dst)?;
        }
        copy_tree(&src, &dst)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("failed to copy include '{name}': {e}"))
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Reconciles the GitRepositories that include a repository as soon as it publishes a new
/// artifact (their own spec did not change, so nothing else would wake them).
pub fn include_triggers(client: Client, namespace: Option<String>) -> TriggerFn<GitRepository> {
    Box::new(move |store| {
        let api: Api<GitRepository> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let artifact_hash = |r: &GitRepository| {
            use std::hash::{Hash, Hasher};
            let a = r.status.as_ref().and_then(|s| s.artifact.as_ref())?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&a.revision, &a.digest).hash(&mut h);
            Some(h.finish())
        };
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .applied_objects()
            .predicate_filter(artifact_hash, Default::default())
            .filter_map(|r| futures::future::ready(r.ok()))
            .flat_map(move |changed| {
                let digest = changed
                    .status
                    .as_ref()
                    .and_then(|s| s.artifact.as_ref())
                    .map(|a| a.digest.clone());
                let refs: Vec<_> = store
                    .state()
                    .iter()
                    .filter(|r| r.namespace() == changed.namespace())
                    .filter(|r| {
                        r.spec
                            .include
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .any(|i| i.repository.name == changed.name_any())
                    })
                    .filter(|r| {
                        let seen = r
                            .status
                            .as_ref()
                            .and_then(|s| s.included_artifacts.as_deref())
                            .unwrap_or_default();
                        !seen.iter().any(|a| Some(&a.digest) == digest.as_ref())
                    })
                    .map(|r| ObjectRef::from_obj(&**r))
                    .collect();
                futures::stream::iter(refs)
            })
            .boxed()
    })
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
        let includes = obj.spec.include.clone().unwrap_or_default();
        let included = self.included_artifacts(obj, &includes, status, ctx).await?;
        if self.artifact_current(obj, status, &resolved.revision, &included) {
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

        self.verify(obj, status, ctx, &resolved, &checked_out.commit, &checkout_dir)
            .await?;

        for (inc, artifact) in includes.iter().zip(&included) {
            copy_include(inc, artifact, &checkout_dir).await.map_err(|m| {
                conditions::set(
                    status.conditions_mut(),
                    ct::INCLUDE_UNAVAILABLE,
                    Status::True,
                    "CopyFailure",
                    &m,
                    generation,
                );
                ReconcileError::transient("CopyFailure", m)
            })?;
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
        status.included_artifacts = (!included.is_empty()).then_some(included);
        status.observed_include = obj.spec.include.clone().filter(|i| !i.is_empty());
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
