//! OCIRepository: pull an artifact from an OCI registry and republish it as a source artifact.
//!
//! Steps: **storage** (as GitRepository) → **source** (a pull client from the Secrets:
//! docker-config credentials of `secretRef` or of the ServiceAccount's image pull secrets, CA and
//! client certificate of `certSecretRef`, proxy; resolve `ref` — digest > semver
//! (+ `semverFilter`) > tag, `latest` by default — to a manifest digest with a HEAD request) →
//! **verify** (`spec.verify`: the digest's cosign signature, before anything is pulled; skipped
//! when that revision is stored and verified) → nothing is pulled when the stored artifact
//! already has that revision and `ignore`/`layerSelector` are unchanged → **artifact** (pull
//! the selected layer; `extract` re-archives its content with the ignore rules, `copy` stores
//! it as-is; the manifest annotations become the artifact metadata, so
//! `org.opencontainers.image.revision` carries the origin revision downstream).

use crate::{
    common::{self, Problem, failed, within},
    cosign,
    sourceignore::SourceIgnore,
    storage::{ObjectDir, Storage},
};
use driftless_api::{
    meta::{ReconcileStatus, condition_types as ct, reasons as meta_reasons},
    source::{OCIRepository, OCIRepositoryStatus, reasons},
};
use driftless_artifact::{access::RegistryAccess, extract, oci, registry::Puller};
use driftless_runtime::{
    conditions,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
    work::{Blocking, blocking, timeout_of},
};
use kube::{Resource, ResourceExt};
use std::{sync::Arc, time::Duration};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "ocirepository";
/// Largest layer content extracted.
const MAX_EXTRACTED: u64 = 4 << 30;

/// Reconciles OCIRepositories into artifacts in `storage`.
pub struct OCIRepositoryReconciler {
    storage: Arc<Storage>,
}

impl OCIRepositoryReconciler {
    /// A reconciler storing artifacts in `storage`.
    pub fn new(storage: Arc<Storage>) -> Self {
        Self { storage }
    }
}

/// A pull client for `repository` (`host/path`) as the OCIRepository's Secrets say to reach it.
async fn registry_client(
    obj: &OCIRepository,
    repository: &str,
    ctx: &ReconcileContext<OCIRepository>,
) -> Result<Puller, Problem> {
    let ns = obj.namespace().unwrap_or_default();
    let access = RegistryAccess {
        namespace: &ns,
        secret_ref: obj.spec.secret_ref.as_ref().map(|r| r.name.as_str()),
        service_account_name: obj.spec.service_account_name.as_deref(),
        cert_secret_ref: obj.spec.cert_secret_ref.as_ref().map(|r| r.name.as_str()),
        proxy_secret_ref: obj.spec.proxy_secret_ref.as_ref().map(|r| r.name.as_str()),
        insecure: obj.spec.insecure.unwrap_or(false),
    };
    access.puller(&ctx.client, repository).await
}

/// The tag to pull for a semver range: the highest matching tag, after `semverFilter`.
fn pick_semver_tag(tags: &[String], range: &str, filter: Option<&str>) -> Result<String, String> {
    let constraints = driftless_semver::Constraints::parse(range).map_err(|e| e.to_string())?;
    let filter = filter
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| format!("invalid semverFilter: {e}"))?;
    let candidates = tags
        .iter()
        .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(t)));
    constraints
        .highest(candidates, |t| t.as_str())
        .cloned()
        .ok_or_else(|| format!("no match found for semver: {range}"))
}

impl OCIRepositoryReconciler {
    /// Step 1: an `oci://<registry>/<repository>` URL, and no cloud provider: both stall.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let url = &run.obj.spec.url;
        let Some(repository) = oci::repository_of(url).map(str::to_string) else {
            let m = format!("invalid OCI URL '{url}': expected oci://<registry>/<repository>");
            return Err(common::stalled(
                run.status,
                run.generation,
                reasons::URL_INVALID,
                m,
            ));
        };
        run.repository = repository;
        if let Some(provider) = run
            .obj
            .spec
            .provider
            .as_deref()
            .filter(|p| !p.is_empty() && *p != "generic")
        {
            let m = format!(
                "provider '{provider}' is not supported: give the registry credentials in secretRef or \
                 the image pull secrets of serviceAccountName"
            );
            return Err(common::stalled(
                run.status,
                run.generation,
                reasons::AUTHENTICATION_FAILED,
                m,
            ));
        }
        Ok(())
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

    /// Step 3: the pull client, from `secretRef`, the ServiceAccount's image pull secrets,
    /// `certSecretRef` and `proxySecretRef`.
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let client = registry_client(run.obj, &run.repository, run.ctx).await;
        run.registry = Some(client.map_err(|problem| {
            common::fail(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                reasons::AUTHENTICATION_FAILED,
                problem,
            )
        })?);
        Ok(())
    }

    /// Step 4: `ref` resolved — digest > semver (+ `semverFilter`) > tag, `latest` by default —
    /// to a revision and a manifest digest (a HEAD request).
    async fn resolve(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let url = run.obj.spec.url.clone();
        let r = run.obj.spec.reference.clone().unwrap_or_default();
        if let Some(digest) = r.digest.filter(|d| !d.is_empty()) {
            (run.revision, run.digest) = (digest.clone(), digest);
        } else {
            let tag = match r.semver.filter(|s| !s.is_empty()) {
                Some(range) => {
                    let what = format!("failed to list tags of '{url}'");
                    let tags = within(run.timeout, &what, run.registry()?.tags()).await;
                    let tags = tags.map_err(|m| run.pull_failed(m))?;
                    pick_semver_tag(&tags, &range, r.semver_filter.as_deref())
                        .map_err(|m| run.pull_failed(m))?
                }
                None => r.tag.filter(|t| !t.is_empty()).unwrap_or_else(|| "latest".into()),
            };
            let what = format!("failed to determine artifact digest of '{url}:{tag}'");
            let digest = within(run.timeout, &what, run.registry()?.manifest_digest(&tag)).await;
            let digest = digest.map_err(|m| run.pull_failed(m))?;
            (run.revision, run.digest) = (format!("{tag}@{digest}"), digest);
        }
        run.current = run
            .status
            .artifact
            .as_ref()
            .is_some_and(|a| a.revision == run.revision && self.storage.exists(a))
            && run.status.observed_ignore == run.obj.spec.ignore
            && run.status.observed_layer_selector == run.obj.spec.layer_selector;
        Ok(())
    }

    /// Step 5: `spec.verify`, before anything is pulled; a stored revision verified before is
    /// not verified again.
    async fn verify(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.current && conditions::is_true(run.status.conditions(), ct::SOURCE_VERIFIED) {
            return Ok(());
        }
        let registry = run.registry.take();
        let verified = match &registry {
            Some(registry) => {
                cosign::verify_signature(
                    run.obj.spec.verify.as_ref(),
                    &cosign::Subject {
                        namespace: &run.namespace,
                        url: &run.obj.spec.url,
                        digest: &run.digest,
                        what: &format!("revision {}", run.revision),
                    },
                    run.status,
                    run.generation,
                    &run.ctx.client,
                    registry,
                    run.timeout,
                )
                .await
            }
            None => run.registry().map(|_| ()),
        };
        run.registry = registry;
        verified
    }

    /// Step 6: unless current, pull the selected layer and store it: `extract` re-archives its
    /// content with the ignore rules, `copy` stores it as-is; the manifest annotations become
    /// the artifact metadata.
    async fn pull(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.current {
            return Ok(());
        }
        let (generation, revision, url) = (run.generation, run.revision.clone(), run.obj.spec.url.clone());
        let had_artifact = run.status.artifact.is_some();
        let message = common::outdated(run.status, had_artifact, generation, &revision);
        run.ctx.progress(run.obj, run.status, &message).await;

        let what = format!("failed to pull artifact from '{url}'");
        let pulled = within(run.timeout, &what, run.registry()?.manifest(&run.digest)).await;
        let (manifest, manifest_digest) = pulled.map_err(|m| run.pull_failed(m))?;
        let selector = run.obj.spec.layer_selector.clone().unwrap_or_default();
        let layer = match selector.media_type.as_deref().filter(|m| !m.is_empty()) {
            Some(mt) => manifest.layers.iter().find(|l| l.media_type == mt),
            None => manifest.layers.first(),
        }
        .cloned()
        .ok_or_else(|| {
            let m = format!(
                "failed to find layer with media type '{}' in artifact '{}@{}'",
                selector.media_type.as_deref().unwrap_or("*"),
                run.repository,
                run.digest
            );
            failed(
                run.status,
                generation,
                ct::FETCH_FAILED,
                reasons::OCI_ARTIFACT_LAYER_OPERATION_FAILED,
                m,
            )
        })?;
        let storage_failed = |status: &mut OCIRepositoryStatus, reason: &str, m: String| {
            failed(status, generation, ct::STORAGE_OPERATION_FAILED, reason, m)
        };
        let workdir = tempfile::tempdir().map_err(|e| {
            let m = format!("failed to create temporary directory: {e}");
            storage_failed(run.status, reasons::DIRECTORY_CREATION_FAILED, m)
        })?;
        let blob_path = workdir.path().join("layer.tar.gz");
        let mut blob_file = tokio::fs::File::create(&blob_path)
            .await
            .map_err(|e| storage_failed(run.status, reasons::ARCHIVE_OPERATION_FAILED, e.to_string()))?;
        let what = format!("failed to pull layer of '{url}'");
        let fetched = within(run.timeout, &what, run.registry()?.blob(&layer, &mut blob_file)).await;
        fetched.map_err(|m| run.pull_failed(m))?;

        let metadata = manifest.annotations.clone().map(|a| a.into_iter().collect());
        let file = format!("{}.tar.gz", manifest_digest.trim_start_matches("sha256:"));
        let copy = selector.operation.as_deref() == Some("copy");
        let (storage, spec_ignore, rev) = (
            self.storage.clone(),
            run.obj.spec.ignore.clone(),
            revision.clone(),
        );
        let (ns, name) = (run.namespace.clone(), run.name.clone());
        let content_dir = workdir.path().join("content");
        let stored_artifact = blocking(run.timeout, move || {
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns,
                name: &name,
            };
            let storage_error = |e: std::io::Error| StoreFailure::Storage(e.to_string());
            if copy {
                return storage
                    .store_file(&dir, &file, &blob_path, &rev, metadata)
                    .map_err(storage_error);
            }
            let reader = std::io::BufReader::new(std::fs::File::open(&blob_path).map_err(storage_error)?);
            extract::extract_tar_gz(reader, &content_dir, MAX_EXTRACTED)
                .map_err(|e| StoreFailure::Layer(e.to_string()))?;
            let rules = SourceIgnore::new(&content_dir, spec_ignore.as_deref());
            let include = |p: &str, is_dir: bool| rules.includes(p, is_dir);
            storage
                .store_dir(&dir, &file, &content_dir, &include, &rev, metadata)
                .map_err(storage_error)
        })
        .await;
        let artifact = stored_artifact.map_err(|e| match e {
            Blocking::Failed(StoreFailure::Layer(e)) => failed(
                run.status,
                generation,
                ct::FETCH_FAILED,
                reasons::OCI_ARTIFACT_LAYER_OPERATION_FAILED,
                format!("failed to extract layer contents from artifact: {e}"),
            ),
            Blocking::Failed(StoreFailure::Storage(e)) => storage_failed(
                run.status,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!("unable to store artifact: {e}"),
            ),
            Blocking::TimedOut(after) => storage_failed(
                run.status,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!(
                    "unable to store artifact: {}",
                    Blocking::<String>::TimedOut(after)
                ),
            ),
            Blocking::Panicked(why) => storage_failed(
                run.status,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!("unable to store artifact: {why}"),
            ),
        })?;
        drop(workdir);

        let digest = artifact.digest.clone();
        run.status.artifact = Some(artifact);
        run.status.url = Some(self.storage.latest_url(&ObjectDir {
            kind: STORAGE_KIND,
            namespace: &run.namespace,
            name: &run.name,
        }));
        run.status.observed_ignore = run.obj.spec.ignore.clone();
        run.status.observed_layer_selector = run.obj.spec.layer_selector.clone();
        run.ctx
            .announce(
                run.obj,
                reasons::NEW_ARTIFACT,
                &format!("stored artifact with revision '{revision}' from '{url}'"),
                &[("revision", revision.as_str()), ("digest", digest.as_str())],
            )
            .await;
        Ok(())
    }
}

/// One reconcile of one OCIRepository: the object, its status being written, and what each step
/// leaves for the next.
struct Run<'a> {
    obj: &'a OCIRepository,
    status: &'a mut OCIRepositoryStatus,
    ctx: &'a ReconcileContext<OCIRepository>,
    generation: Option<i64>,
    namespace: String,
    name: String,
    timeout: Duration,
    /// `host/path` of `spec.url` (step 1).
    repository: String,
    /// The pull client (step 3).
    registry: Option<Puller>,
    /// `<tag>@<digest>` (or the digest) and the manifest digest it resolved to (step 4).
    revision: String,
    digest: String,
    /// The stored artifact already has this revision, ignore rules and layer selector.
    current: bool,
}

impl Run<'_> {
    fn registry(&self) -> Result<&Puller, ReconcileError> {
        self.registry.as_ref().ok_or_else(|| {
            ReconcileError::transient(reasons::AUTHENTICATION_FAILED, "no registry client yet")
        })
    }

    fn pull_failed(&mut self, message: String) -> ReconcileError {
        failed(
            self.status,
            self.generation,
            ct::FETCH_FAILED,
            reasons::OCI_ARTIFACT_PULL_FAILED,
            message,
        )
    }
}

/// Why storing the pulled layer failed: its content (refused by the safe extraction) or the
/// storage itself.
enum StoreFailure {
    Layer(String),
    Storage(String),
}

impl Reconciler for OCIRepositoryReconciler {
    type Kind = OCIRepository;

    /// 1. [`validate`](Self::validate): the URL and the provider;
    /// 2. [`storage`](Self::storage): the stored artifact still there, older ones collected;
    /// 3. [`connect`](Self::connect): the pull client from the Secrets;
    /// 4. [`resolve`](Self::resolve): `ref` to a revision and manifest digest;
    /// 5. [`verify`](Self::verify): `spec.verify`, unless that revision is stored and verified;
    /// 6. [`pull`](Self::pull): the layer, stored as the artifact, unless it is current.
    async fn apply(
        &self,
        obj: &OCIRepository,
        status: &mut OCIRepositoryStatus,
        ctx: &ReconcileContext<OCIRepository>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            generation: obj.meta().generation,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            timeout: timeout_of(obj.spec.timeout.as_deref(), common::SOURCE_TIMEOUT),
            repository: String::new(),
            registry: None,
            revision: String::new(),
            digest: String::new(),
            current: false,
        };
        self.validate(&mut run).await?;
        self.storage(&mut run).await?;
        self.connect(&mut run).await?;
        self.resolve(&mut run).await?;
        self.verify(&mut run).await?;
        self.pull(&mut run).await?;
        // Flux's OCIRepository says "digest" where the other sources say "revision".
        let message = format!("stored artifact for digest '{}'", run.revision);
        Ok(common::stored_as(
            run.status,
            run.generation,
            &run.revision,
            meta_reasons::SUCCEEDED,
            message,
        ))
    }

    async fn cleanup(
        &self,
        obj: &OCIRepository,
        _ctx: &ReconcileContext<OCIRepository>,
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
    use super::*;

    #[test]
    fn semver_tags_are_filtered_then_ordered() {
        let tags: Vec<String> = ["v1.0.0", "v1.2.0", "v1.3.0-rc.1", "2.0.0", "latest"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pick_semver_tag(&tags, "1.x", None).unwrap(), "v1.2.0");
        assert_eq!(pick_semver_tag(&tags, ">=1.0.0", None).unwrap(), "2.0.0");
        assert_eq!(
            pick_semver_tag(&tags, ">=1.3.0-0", Some(".*-rc.*")).unwrap(),
            "v1.3.0-rc.1"
        );
        assert!(
            pick_semver_tag(&tags, "9.x", None)
                .unwrap_err()
                .contains("no match")
        );
        assert!(
            pick_semver_tag(&tags, "1.x", Some("("))
                .unwrap_err()
                .contains("invalid semverFilter")
        );
    }
}
