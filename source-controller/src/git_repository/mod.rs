//! GitRepository: fetch a ref, package it as a deterministic artifact, publish it in status.
//!
//! The steps are listed on [`GitRepositoryReconciler`]'s `apply` (each owns its conditions):
//! validate, storage, connect, resolve, include, checkout, verify, copy includes, store. When the
//! stored artifact already has the resolved revision and the content-affecting spec (`ignore`,
//! `recurseSubmodules`, `sparseCheckout`, includes, verification) is unchanged, nothing is
//! cloned. Fetch failures set `FetchFailed=True`, storage failures `StorageOperationFailed=True`.
//!
//! A failure never removes the previously stored artifact: it stays in status and is served.

pub mod verify;

use driftless_git::{auth, reference, transport as git};

use crate::{
    common::{self, Problem, failed, stored},
    sourceignore::SourceIgnore,
    storage::{ObjectDir, Storage},
};
use driftless_api::{
    meta::{Artifact, ReconcileStatus, condition_types as ct},
    source::{GitRepository, GitRepositoryInclude, GitRepositoryStatus, reasons},
};
use driftless_artifact::{extract::confined, fetch::Fetcher};
use driftless_runtime::{
    conditions::{self, Status},
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success, TriggerFn},
    triggers,
    work::{blocking, timeout_of},
};
use kube::{Api, Client, Resource, ResourceExt, runtime::watcher};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "gitrepository";

/// Reconciles GitRepositories into artifacts in `storage`.
pub struct GitRepositoryReconciler {
    storage: Arc<Storage>,
    requeue_dependency: Duration,
}

impl GitRepositoryReconciler {
    /// A reconciler storing artifacts in `storage`. `socket_timeout` bounds each network read
    /// or write of git (process-wide), so a silent server cannot hold a thread forever.
    pub fn new(storage: Arc<Storage>, socket_timeout: Duration) -> Self {
        git::set_socket_timeouts(Duration::from_secs(10).min(socket_timeout), socket_timeout);
        Self {
            storage,
            requeue_dependency: Duration::from_secs(10),
        }
    }

    /// How long a GitRepository waits for an `include` that is missing or has no artifact
    /// (Flux's `--requeue-dependency`).
    #[must_use]
    pub fn with_requeue_dependency(mut self, requeue_dependency: Duration) -> Self {
        self.requeue_dependency = requeue_dependency;
        self
    }

    /// Credentials from `secretRef` (for `provider: github`, its GitHub App's installation
    /// token), the proxy from `proxySecretRef`; a failure with the reason it is reported by.
    async fn credentials(
        &self,
        obj: &GitRepository,
        ctx: &ReconcileContext<GitRepository>,
        timeout: Duration,
    ) -> Result<auth::GitCredentials, (&'static str, Problem)> {
        auth::repository_credentials(&ctx.client, obj, timeout)
            .await
            .map_err(|e| match e {
                auth::CredentialsError::Provider(problem) => {
                    (reasons::INVALID_PROVIDER_CONFIGURATION, problem)
                }
                auth::CredentialsError::Authentication(problem) => (reasons::AUTHENTICATION_FAILED, problem),
            })
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
            Err(e) => Err(e.message().to_string()),
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
            return Err(ReconcileError::waiting(reason, message, self.requeue_dependency));
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

/// Downloads an included artifact and copies its `fromPath` into `<checkout>/<toPath>`.
async fn copy_include(
    inc: &GitRepositoryInclude,
    artifact: &Artifact,
    checkout: &Path,
) -> Result<(), String> {
    let name = &inc.repository.name;
    let from = confined(Path::new(inc.from_path.as_deref().unwrap_or("")))
        .ok_or_else(|| format!("include '{name}': fromPath must stay inside the artifact"))?;
    let to = confined(Path::new(inc.to_path.as_deref().unwrap_or(name)))
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| format!("include '{name}': toPath must be a path inside the repository"))?;
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
        let includes = |r: &GitRepository, changed: &GitRepository| {
            let digest = changed
                .status
                .as_ref()
                .and_then(|s| s.artifact.as_ref())
                .map(|a| a.digest.clone());
            let seen = r
                .status
                .as_ref()
                .and_then(|s| s.included_artifacts.as_deref())
                .unwrap_or_default();
            r.namespace() == changed.namespace()
                && r.spec
                    .include
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|i| i.repository.name == changed.name_any())
                && !seen.iter().any(|a| Some(&a.digest) == digest.as_ref())
        };
        triggers::referrers(
            &client,
            namespace.as_deref(),
            store,
            watcher::Config::default(),
            |r: &GitRepository| triggers::artifact_fingerprint(r.status.as_ref()?.artifact.as_ref()),
            includes,
        )
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

impl GitRepositoryReconciler {
    /// Step 1: a URL the CRD pattern let through but git cannot use stalls.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        validate_url(&run.obj.spec.url)
            .map_err(|message| common::stalled(run.status, run.generation, reasons::URL_INVALID, message))?;
        let spec = &run.obj.spec;
        if spec.provider.as_deref() == Some("github") && spec.secret_ref.is_none() {
            return Err(common::stalled(
                run.status,
                run.generation,
                reasons::INVALID_PROVIDER_CONFIGURATION,
                auth::GITHUB_NEEDS_APP.into(),
            ));
        }
        match auth::unsupported_provider(spec.provider.as_deref(), spec.service_account_name.as_deref()) {
            Some(message) => Err(common::stalled(
                run.status,
                run.generation,
                reasons::AUTHENTICATION_FAILED,
                message,
            )),
            None => Ok(()),
        }
    }

    /// Step 2: the stored artifact is still there (else forgotten, so it is rebuilt), and older
    /// artifacts are garbage-collected.
    async fn storage(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        common::reconcile_storage(
            &self.storage,
            STORAGE_KIND,
            &run.namespace,
            &run.name,
            run.status,
            run.generation,
        )
        .await;
        Ok(())
    }

    /// Step 3: credentials from `secretRef` (a GitHub App's installation token for `provider:
    /// github`), the proxy from `proxySecretRef`.
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        run.creds = self
            .credentials(run.obj, run.ctx, run.timeout)
            .await
            .map_err(|(reason, problem)| {
                common::fail(run.status, run.generation, ct::FETCH_FAILED, reason, problem)
            })?;
        Ok(())
    }

    /// Step 4: the remote's refs, without pack data, and `ref` resolved to a revision.
    async fn resolve(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let (url, creds, deadline) = run.remote();
        let listed = blocking(run.timeout, move || {
            git::list_remote(&git::Remote {
                url: &url,
                creds: &creds,
                deadline,
            })
            .map_err(|e| e.0)
        })
        .await
        .map_err(|e| run.fetch_failed(reasons::GIT_OPERATION_FAILED, e.to_string()))?;
        let resolved = reference::resolve(run.obj.spec.reference.as_ref(), &listed).map_err(|e| {
            run.fetch_failed(
                reasons::GIT_OPERATION_FAILED,
                format!("failed to resolve ref: {e}"),
            )
        })?;
        run.resolved = Some(resolved);
        Ok(())
    }

    /// Step 5: the included artifacts; then whether the stored artifact is current. When it is
    /// not, progress says which revision is being built.
    async fn include(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let includes = run.obj.spec.include.clone().unwrap_or_default();
        run.included = self
            .included_artifacts(run.obj, &includes, run.status, run.ctx)
            .await?;
        let revision = run.revision();
        run.current = self.artifact_current(run.obj, run.status, &revision, &run.included);
        if !run.current {
            let had_artifact = run.status.artifact.is_some();
            let message = common::outdated(run.status, had_artifact, run.generation, &revision);
            run.ctx.progress(run.obj, run.status, &message).await;
        }
        Ok(())
    }

    /// Step 6: shallow clone and checkout of the resolved commit (sparse, with submodules);
    /// every sparse directory must exist at that revision.
    async fn checkout(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.current {
            return Ok(());
        }
        let workdir = tempfile::tempdir().map_err(|e| {
            failed(
                run.status,
                run.generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::DIRECTORY_CREATION_FAILED,
                format!("failed to create temporary directory: {e}"),
            )
        })?;
        run.checkout_dir = workdir.path().join("checkout");
        run.workdir = Some(workdir);
        let sparse: Vec<String> = run.obj.spec.sparse_checkout.clone().unwrap_or_default();
        let submodules = run.obj.spec.recurse_submodules.unwrap_or(false);
        let (url, creds, deadline) = run.remote();
        let (target, dir, wanted) = (run.resolved()?.clone(), run.checkout_dir.clone(), sparse.clone());
        let checked_out = blocking(run.timeout, move || {
            let remote = git::Remote {
                url: &url,
                creds: &creds,
                deadline,
            };
            git::checkout(&remote, &target, &dir, &wanted, submodules).map_err(|e| e.0)
        })
        .await
        .map_err(|e| run.fetch_failed(reasons::GIT_OPERATION_FAILED, e.to_string()))?;
        for dir in &sparse {
            if !run.checkout_dir.join(dir.trim_matches('/')).is_dir() {
                let m = format!(
                    "sparse checkout directory '{dir}' does not exist at revision '{}'",
                    run.revision()
                );
                return Err(run.fetch_failed(reasons::GIT_OPERATION_FAILED, m));
            }
        }
        run.commit = Some(checked_out);
        Ok(())
    }

    /// Step 7: `spec.verify` on the checked-out commit and tag.
    async fn verify_signatures(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(checked_out) = run.commit.clone().filter(|_| !run.current) else {
            return Ok(());
        };
        let resolved = run.resolved()?.clone();
        self.verify(
            run.obj,
            run.status,
            run.ctx,
            &resolved,
            &checked_out.commit,
            &run.checkout_dir,
        )
        .await
    }

    /// Step 8: the included artifacts' `fromPath` copied to their `toPath` in the checkout.
    async fn copy_includes(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.current {
            return Ok(());
        }
        let includes = run.obj.spec.include.clone().unwrap_or_default();
        for (inc, artifact) in includes.iter().zip(&run.included) {
            if let Err(m) = copy_include(inc, artifact, &run.checkout_dir).await {
                conditions::set(
                    run.status.conditions_mut(),
                    ct::INCLUDE_UNAVAILABLE,
                    Status::True,
                    "CopyFailure",
                    &m,
                    run.generation,
                );
                return Err(ReconcileError::transient("CopyFailure", m));
            }
        }
        Ok(())
    }

    /// Step 9: the checkout archived with the ignore rules and stored; `latest.tar.gz` points at
    /// it; `status.artifact` and the `observed*` fields are recorded; `NewArtifact` is emitted.
    async fn store(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(checked_out) = run.commit.clone().filter(|_| !run.current) else {
            return Ok(());
        };
        let storage = self.storage.clone();
        let spec_ignore = run.obj.spec.ignore.clone();
        let file = format!("{}.tar.gz", checked_out.commit);
        let revision = run.revision();
        let (ns, name, checkout_dir) = (run.namespace.clone(), run.name.clone(), run.checkout_dir.clone());
        let rev = revision.clone();
        let artifact = blocking(run.timeout, move || {
            let rules = SourceIgnore::new(&checkout_dir, spec_ignore.as_deref());
            let include = |p: &str, is_dir: bool| rules.includes(p, is_dir);
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns,
                name: &name,
            };
            storage.store_dir(&dir, &file, &checkout_dir, &include, &rev, None)
        })
        .await
        .map_err(|e| {
            failed(
                run.status,
                run.generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!("unable to archive artifact to storage: {e}"),
            )
        })?;
        run.workdir = None;

        let digest = artifact.digest.clone();
        let obj = run.obj;
        run.status.artifact = Some(artifact);
        run.status.observed_ignore = obj.spec.ignore.clone();
        run.status.observed_recurse_submodules = obj.spec.recurse_submodules.filter(|r| *r);
        run.status.observed_sparse_checkout = obj.spec.sparse_checkout.clone().filter(|s| !s.is_empty());
        let included = std::mem::take(&mut run.included);
        run.status.included_artifacts = (!included.is_empty()).then_some(included);
        run.status.observed_include = obj.spec.include.clone().filter(|i| !i.is_empty());
        run.ctx
            .announce(
                obj,
                reasons::NEW_ARTIFACT,
                &format!("stored artifact for commit '{}'", checked_out.summary),
                &[("revision", revision.as_str()), ("digest", digest.as_str())],
            )
            .await;
        Ok(())
    }
}

/// One reconcile of one GitRepository: the object, its status being written, and what each step
/// leaves for the next.
struct Run<'a> {
    obj: &'a GitRepository,
    status: &'a mut GitRepositoryStatus,
    ctx: &'a ReconcileContext<GitRepository>,
    generation: Option<i64>,
    namespace: String,
    name: String,
    timeout: Duration,
    /// Credentials and proxy for the remote (step 3).
    creds: auth::GitCredentials,
    /// The ref resolved against the remote's refs (step 4).
    resolved: Option<reference::Resolved>,
    /// Artifacts of `spec.include`, in order (step 5).
    included: Vec<Artifact>,
    /// The stored artifact already reflects the revision, includes and spec: nothing to build.
    current: bool,
    /// The checkout being built (step 6): its temporary directory, path and commit.
    workdir: Option<tempfile::TempDir>,
    checkout_dir: PathBuf,
    commit: Option<git::Checkout>,
}

impl Run<'_> {
    fn resolved(&self) -> Result<&reference::Resolved, ReconcileError> {
        self.resolved.as_ref().ok_or_else(|| {
            ReconcileError::transient(reasons::GIT_OPERATION_FAILED, "the ref is not resolved yet")
        })
    }

    fn revision(&self) -> String {
        self.resolved
            .as_ref()
            .map(|r| r.revision.clone())
            .unwrap_or_default()
    }

    /// Marks `FetchFailed` with `reason` and returns the (transient) error.
    fn fetch_failed(&mut self, reason: &str, message: String) -> ReconcileError {
        failed(self.status, self.generation, ct::FETCH_FAILED, reason, message)
    }

    /// A remote as git sees it, with a deadline of the object's timeout from now.
    fn remote(&self) -> (String, auth::GitCredentials, Instant) {
        (
            self.obj.spec.url.clone(),
            self.creds.clone(),
            Instant::now() + self.timeout,
        )
    }
}

impl Reconciler for GitRepositoryReconciler {
    type Kind = GitRepository;

    /// 1. [`validate`](Self::validate): the URL;
    /// 2. [`storage`](Self::storage): the stored artifact still there, older ones collected;
    /// 3. [`connect`](Self::connect): credentials (a GitHub App's token for provider github) and
    ///    proxy from the Secrets;
    /// 4. [`resolve`](Self::resolve): the remote's refs listed (no pack data), `ref` resolved;
    /// 5. [`include`](Self::include): the included GitRepositories' artifacts; when the stored
    ///    artifact already reflects all of it, the steps below do nothing;
    /// 6. [`checkout`](Self::checkout): shallow clone and checkout (sparse, submodules);
    /// 7. [`verify_signatures`](Self::verify_signatures): `spec.verify`;
    /// 8. [`copy_includes`](Self::copy_includes): included artifacts copied into the checkout;
    /// 9. [`store`](Self::store): archive with the ignore rules, store, `status.artifact`, event.
    async fn apply(
        &self,
        obj: &GitRepository,
        status: &mut GitRepositoryStatus,
        ctx: &ReconcileContext<GitRepository>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            generation: obj.meta().generation,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            timeout: timeout_of(obj.spec.timeout.as_deref(), common::SOURCE_TIMEOUT),
            creds: auth::GitCredentials::default(),
            resolved: None,
            included: Vec::new(),
            current: false,
            workdir: None,
            checkout_dir: PathBuf::new(),
            commit: None,
        };
        self.validate(&mut run).await?;
        self.storage(&mut run).await?;
        self.connect(&mut run).await?;
        self.resolve(&mut run).await?;
        self.include(&mut run).await?;
        self.checkout(&mut run).await?;
        self.verify_signatures(&mut run).await?;
        self.copy_includes(&mut run).await?;
        self.store(&mut run).await?;
        let revision = run.revision();
        Ok(stored(run.status, run.generation, &revision))
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
