//! ArtifactGenerator: source artifacts composed or split into ExternalArtifacts, each served by
//! this controller's own artifact storage.
//!
//! Steps: **validate** (unique aliases and artifact names, valid names, known revision
//! aliases, cross-namespace policy) → **observe** (every source's artifact; their digest) →
//! **drift** (nothing to do when the sources, the spec, the stored files and the
//! ExternalArtifacts are as last built) → **fetch** (the sources' artifacts downloaded and
//! verified) → **expand** (`pathPattern` into one request per matched directory) → **publish**
//! (each artifact built, archived under `externalartifact/<ns>/<name>/<dirhash>.tar.gz` and its
//! ExternalArtifact applied; an unchanged artifact keeps its status, so its consumers are not
//! woken) → **prune** (ExternalArtifacts no longer generated deleted with their files, old
//! files collected).

use crate::{
    builder,
    path_pattern::{self, ExpandError, Request},
};
use driftless_api::{
    meta::{Artifact, NamespacedObjectKindReference, condition_types as ct},
    source::{ExternalArtifact, ExternalArtifactStatus},
    source_extensions::{
        ArtifactGenerator, ArtifactGeneratorStatus, ExternalArtifactReference, GENERATOR_LABEL,
        ORIGIN_REVISION_ANNOTATION, reasons,
    },
};
use driftless_artifact::{
    fetch::Fetcher,
    storage::{ObjectDir, Storage},
};
use driftless_runtime::{
    conditions::{self, Status},
    events::EventType,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
    work::blocking,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use sha2::{Digest, Sha256};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

/// Field manager of the ExternalArtifacts (and the generators' status).
pub const FIELD_MANAGER: &str = "source-watcher";
/// Kind directory of ExternalArtifacts in storage.
pub const STORAGE_KIND: &str = "externalartifact";

/// Settings from the flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--requeue-dependency`: how soon a generator whose sources are not ready is retried.
    pub requeue_dependency: Duration,
    /// `--no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
    /// `--http-retry`: retries of a source download.
    pub http_retry: u32,
    /// `--reconciliation-timeout`: longest the build of one artifact may take.
    pub reconciliation_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            requeue_dependency: Duration::from_secs(5),
            no_cross_namespace_refs: false,
            http_retry: 9,
            reconciliation_timeout: Duration::from_secs(600),
        }
    }
}

/// Reconciles ArtifactGenerators into ExternalArtifacts stored in `storage`.
pub struct ArtifactGeneratorReconciler {
    storage: Arc<Storage>,
    fetcher: Fetcher,
    settings: Settings,
}

impl ArtifactGeneratorReconciler {
    pub fn new(storage: Arc<Storage>, settings: Settings) -> Self {
        Self {
            storage,
            fetcher: Fetcher::with_retries(settings.http_retry),
            settings,
        }
    }
}

/// A source as observed: what its artifact is and where it is served.
#[derive(Clone, Debug)]
struct Observed {
    kind: String,
    artifact: Artifact,
}

impl Observed {
    /// The origin revision a consumer sees: the source's own origin, else its revision.
    fn origin_revision(&self) -> String {
        self.artifact
            .metadata
            .as_ref()
            .and_then(|m| m.get(ORIGIN_REVISION_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| self.artifact.revision.clone())
    }
}

/// source-watcher's digest of the observed sources: `alias=[digest=…,revision=…,url=…]`
/// sorted, joined by `|`, SHA-256.
fn sources_digest(observed: &BTreeMap<String, Observed>) -> String {
    let mut entries: Vec<String> = observed
        .iter()
        .map(|(alias, o)| {
            format!(
                "{alias}=[digest={},revision={},url={}]",
                o.artifact.digest, o.artifact.revision, o.artifact.url
            )
        })
        .collect();
    entries.sort();
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(entries.join("|").as_bytes()))
    )
}

/// One reconcile of one generator and what each step leaves for the next.
struct Run<'a> {
    obj: &'a ArtifactGenerator,
    status: &'a mut ArtifactGeneratorStatus,
    ctx: &'a ReconcileContext<ArtifactGenerator>,
    namespace: String,
    observed: BTreeMap<String, Observed>,
    digest: String,
    /// Nothing changed since the last build: the remaining steps have nothing to do.
    up_to_date: bool,
    workdir: Option<tempfile::TempDir>,
    fetched: BTreeMap<String, PathBuf>,
    requests: Vec<Request>,
    inventory: Vec<ExternalArtifactReference>,
}

impl ArtifactGeneratorReconciler {
    /// Step 1: a spec that can be built.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        let mut aliases = BTreeSet::new();
        for source in &spec.sources {
            if !aliases.insert(source.alias.as_str()) {
                let m = format!("duplicate source alias '{}' found", source.alias);
                return Err(ReconcileError::stalled(reasons::VALIDATION_FAILED, m));
            }
            let namespace = source.namespace.as_deref().unwrap_or(&run.namespace);
            if self.settings.no_cross_namespace_refs && namespace != run.namespace {
                let m = format!(
                    "cross-namespace reference to source {}/{namespace}/{} is not allowed",
                    source.kind, source.name
                );
                return Err(ReconcileError::stalled(reasons::ACCESS_DENIED, m));
            }
        }
        let mut names = BTreeSet::new();
        let templated = spec.path_pattern.as_deref().is_some_and(|p| !p.is_empty());
        for artifact in &spec.output_artifacts {
            if !names.insert(artifact.name.as_str()) {
                let m = format!("duplicate artifact name '{}' found", artifact.name);
                return Err(ReconcileError::stalled(reasons::VALIDATION_FAILED, m));
            }
            if !templated && !path_pattern::is_dns_subdomain(&artifact.name) {
                let m = format!(
                    "artifact name \"{}\" is not a valid Kubernetes object name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    artifact.name
                );
                return Err(ReconcileError::stalled(reasons::VALIDATION_FAILED, m));
            }
            if let Some(alias) = artifact.revision.as_deref().map(|r| r.trim_start_matches('@'))
                && !aliases.contains(alias)
            {
                let m = format!(
                    "artifact {} revision source alias '{alias}' not found",
                    artifact.name
                );
                return Err(ReconcileError::stalled(reasons::VALIDATION_FAILED, m));
            }
        }
        Ok(())
    }

    /// Step 2: every source's artifact, and their digest. A missing source or one without an
    /// artifact yet is waited for.
    async fn observe(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        for source in &run.obj.spec.sources {
            let namespace = source.namespace.clone().unwrap_or_else(|| run.namespace.clone());
            let artifact = driftless_runtime::sources::artifact(
                &run.ctx.client,
                &source.kind,
                &namespace,
                &source.name,
                self.settings.requeue_dependency,
            )
            .await
            .map_err(|e| {
                let not_ready = e.message.starts_with("Source artifact not found");
                let why = if not_ready {
                    format!(
                        "source '{}/{namespace}/{}' is not ready",
                        source.kind, source.name
                    )
                } else {
                    e.message.clone()
                };
                let message = format!("get sources failed: {why}");
                match e.class {
                    driftless_runtime::reconcile::ErrorClass::Transient => {
                        ReconcileError::transient(reasons::SOURCE_FETCH_FAILED, message)
                    }
                    _ => ReconcileError::waiting(
                        reasons::SOURCE_FETCH_FAILED,
                        message,
                        self.settings.requeue_dependency,
                    ),
                }
            })?;
            run.observed.insert(
                source.alias.clone(),
                Observed {
                    kind: source.kind.clone(),
                    artifact,
                },
            );
        }
        run.digest = sources_digest(&run.observed);
        Ok(())
    }

    /// Step 3: whether anything changed since the last build: the Ready state, the generation,
    /// the sources, the number of artifacts, their files, the ExternalArtifacts.
    async fn drift(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let last = run.obj.status.clone().unwrap_or_default();
        let ready = conditions::get(last.conditions.as_deref().unwrap_or_default(), ct::READY);
        let inventory = last.inventory.clone().unwrap_or_default();
        let templated = run
            .obj
            .spec
            .path_pattern
            .as_deref()
            .is_some_and(|p| !p.is_empty());
        let drifted = ready.is_none_or(|c| c.status == "False")
            || ready.and_then(|c| c.observed_generation) != run.obj.meta().generation
            || last.observed_sources_digest.as_deref() != Some(run.digest.as_str())
            || (!templated && inventory.len() != run.obj.spec.output_artifacts.len())
            || inventory.iter().any(|r| {
                !self
                    .storage
                    .root()
                    .join(STORAGE_KIND)
                    .join(&r.namespace)
                    .join(&r.name)
                    .join(&r.filename)
                    .is_file()
            })
            || !self.external_artifacts_match(run, &inventory).await;
        if !drifted {
            run.up_to_date = true;
            run.inventory = inventory;
            return Ok(());
        }
        run.ctx
            .progress(run.obj, run.status, "Reconciliation in progress")
            .await;
        Ok(())
    }

    /// Whether the ExternalArtifacts labelled with the generator are exactly its inventory.
    async fn external_artifacts_match(&self, run: &Run<'_>, inventory: &[ExternalArtifactReference]) -> bool {
        let api: Api<ExternalArtifact> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
        let selector = format!("{GENERATOR_LABEL}={}", run.obj.uid().unwrap_or_default());
        let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
            return false;
        };
        list.items.len() == inventory.len()
            && list.items.iter().all(|ea| {
                let digest = ea
                    .status
                    .as_ref()
                    .and_then(|s| s.artifact.as_ref())
                    .map(|a| a.digest.as_str());
                inventory.iter().any(|r| {
                    Some(r.name.as_str()) == ea.metadata.name.as_deref() && Some(r.digest.as_str()) == digest
                })
            })
    }

    /// Step 4: the sources' artifacts downloaded, verified and extracted, one directory per alias.
    async fn fetch(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.up_to_date {
            return Ok(());
        }
        let workdir = tempfile::Builder::new()
            .prefix("ag-")
            .tempdir()
            .map_err(|e| ReconcileError::transient(reasons::SOURCE_FETCH_FAILED, e.to_string()))?;
        for (alias, observed) in &run.observed {
            let dest = workdir.path().join("sources").join(alias);
            self.fetcher
                .fetch(&observed.artifact.url, &observed.artifact.digest, &dest)
                .await
                .map_err(|e| {
                    ReconcileError::waiting(
                        reasons::SOURCE_FETCH_FAILED,
                        format!(
                            "fetch sources failed: failed to fetch artifact of {} '{alias}': {e}",
                            observed.kind
                        ),
                        self.settings.requeue_dependency,
                    )
                })?;
            run.fetched.insert(alias.clone(), dest);
        }
        run.workdir = Some(workdir);
        Ok(())
    }

    /// Step 5: the artifacts to build, `pathPattern` expanded.
    async fn expand(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.up_to_date {
            return Ok(());
        }
        let spec = &run.obj.spec;
        let expanded =
            path_pattern::requests(&spec.output_artifacts, spec.path_pattern.as_deref(), &run.fetched);
        run.requests = expanded.map_err(|e| match e {
            ExpandError::Terminal(m) => ReconcileError::stalled(
                reasons::BUILD_FAILED,
                format!("failed to expand path pattern: {m}"),
            ),
            ExpandError::Io(m) => ReconcileError::transient(
                reasons::BUILD_FAILED,
                format!("failed to expand path pattern: {m}"),
            ),
        })?;
        Ok(())
    }

    /// Step 6: each artifact built, stored and published by its ExternalArtifact.
    async fn publish(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.up_to_date {
            return Ok(());
        }
        let previous = run
            .obj
            .status
            .as_ref()
            .and_then(|s| s.inventory.clone())
            .unwrap_or_default();
        let mut inventory = Vec::new();
        let mut published = Vec::new();
        let requests = std::mem::take(&mut run.requests);
        for request in &requests {
            let name = request.artifact.name.clone();
            let artifact = self.build(run, request).await.map_err(|m| {
                ReconcileError::transient(reasons::BUILD_FAILED, format!("{name} build failed: {m}"))
            })?;
            self.apply_external_artifact(run, request, &artifact)
                .await
                .map_err(|m| {
                    ReconcileError::transient(
                        driftless_api::meta::reasons::RECONCILIATION_FAILED,
                        format!("{name} reconcile failed: {m}"),
                    )
                })?;
            let entry = ExternalArtifactReference {
                name: name.clone(),
                namespace: run.namespace.clone(),
                digest: artifact.digest.clone(),
                filename: artifact.path.rsplit('/').next().unwrap_or_default().to_string(),
            };
            if !previous
                .iter()
                .any(|p| p.name == entry.name && p.digest == entry.digest)
            {
                published.push(format!("{}/{} ({})", entry.namespace, entry.name, entry.digest));
            }
            inventory.push(entry);
        }
        run.inventory = inventory;
        if !published.is_empty() {
            let message = format!("external artifacts reconciled: {}", published.join("\n"));
            run.ctx
                .recorder
                .publish(run.obj, EventType::Normal, "Ready", &message, &[])
                .await;
        }
        Ok(())
    }

    /// Builds one artifact in the work directory and stores it.
    async fn build(&self, run: &Run<'_>, request: &Request) -> Result<Artifact, String> {
        let workdir = run
            .workdir
            .as_ref()
            .map(|w| w.path().to_path_buf())
            .unwrap_or_default();
        let spec = request.artifact.clone();
        let sources = run.fetched.clone();
        let storage = self.storage.clone();
        let namespace = run.namespace.clone();
        let revision_of = |alias: Option<&str>| {
            alias
                .map(|a| a.trim_start_matches('@'))
                .and_then(|a| run.observed.get(a))
        };
        let revision = revision_of(spec.revision.as_deref()).map(|o| o.artifact.revision.clone());
        let origin = revision_of(spec.origin_revision.as_deref()).map(Observed::origin_revision);
        let built = blocking(
            self.settings.reconciliation_timeout,
            move || -> Result<Artifact, String> {
                let staging = workdir.join("artifacts").join(&spec.name);
                builder::build(&spec.copy, &sources, &staging).map_err(|e| e.0)?;
                let hash = builder::dir_hash(&staging, &spec.name).map_err(|e| e.0)?;
                let dir = ObjectDir {
                    kind: STORAGE_KIND,
                    namespace: &namespace,
                    name: &spec.name,
                };
                let metadata = origin.map(|o| BTreeMap::from([(ORIGIN_REVISION_ANNOTATION.to_string(), o)]));
                let mut artifact = storage
                    .store_dir(
                        &dir,
                        &format!("{hash}.tar.gz"),
                        &staging,
                        &|_: &str, _: bool| true,
                        "",
                        metadata,
                    )
                    .map_err(|e| format!("failed to store artifact: {e}"))?;
                artifact.revision = revision.unwrap_or_else(|| format!("latest@{}", artifact.digest));
                Ok(artifact)
            },
        )
        .await;
        built.map_err(|e| e.to_string())
    }

    /// Applies the ExternalArtifact of `request` (metadata and source reference), and its
    /// status unless it already describes `artifact` (same revision, digest and metadata).
    async fn apply_external_artifact(
        &self,
        run: &Run<'_>,
        request: &Request,
        artifact: &Artifact,
    ) -> Result<(), String> {
        let api: Api<ExternalArtifact> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
        let name = &request.artifact.name;
        let common = run.obj.spec.common_metadata.clone().unwrap_or_default();
        let mut labels = common.labels.unwrap_or_default();
        labels.extend(request.labels.clone());
        labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        labels.insert(GENERATOR_LABEL.into(), run.obj.uid().unwrap_or_default());
        let annotations = common.annotations.filter(|a| !a.is_empty());
        let desired = ExternalArtifact {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(run.namespace.clone()),
                labels: Some(labels),
                annotations,
                ..Default::default()
            },
            spec: driftless_api::source::ExternalArtifactSpec {
                source_ref: Some(NamespacedObjectKindReference {
                    api_version: Some(ArtifactGenerator::api_version(&()).to_string()),
                    kind: ArtifactGenerator::kind(&()).to_string(),
                    name: run.obj.name_any(),
                    namespace: Some(run.namespace.clone()),
                }),
            },
            status: None,
        };
        let mut body = serde_json::to_value(&desired).map_err(|e| e.to_string())?;
        body["apiVersion"] = ExternalArtifact::api_version(&()).into();
        body["kind"] = ExternalArtifact::kind(&()).into();
        let applied = api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| format!("failed to apply ExternalArtifact: {e}"))?;
        let current = applied.status.as_ref().and_then(|s| s.artifact.as_ref());
        let same = current.is_some_and(|c| {
            c.digest == artifact.digest && c.revision == artifact.revision && c.metadata == artifact.metadata
        });
        if same {
            return Ok(());
        }
        let mut ready = Vec::new();
        conditions::set(
            &mut ready,
            ct::READY,
            Status::True,
            driftless_api::meta::reasons::SUCCEEDED,
            "Artifact is ready",
            applied.metadata.generation,
        );
        let status = ExternalArtifactStatus {
            artifact: Some(Artifact {
                last_update_time: Time(k8s_openapi::jiff::Timestamp::now()),
                ..artifact.clone()
            }),
            conditions: Some(ready),
        };
        let body = serde_json::json!({
            "apiVersion": ExternalArtifact::api_version(&()),
            "kind": ExternalArtifact::kind(&()),
            "status": status,
        });
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| format!("failed to patchStatus ExternalArtifact status: {e}"))?;
        Ok(())
    }

    /// Step 7: ExternalArtifacts generated before and not now deleted with their files; old
    /// files of the current ones collected.
    async fn prune(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.up_to_date {
            return Ok(());
        }
        let previous = run
            .obj
            .status
            .as_ref()
            .and_then(|s| s.inventory.clone())
            .unwrap_or_default();
        let orphans: Vec<_> = previous
            .into_iter()
            .filter(|p| {
                !run.inventory
                    .iter()
                    .any(|r| r.name == p.name && r.namespace == p.namespace)
            })
            .collect();
        self.remove(&run.ctx.client, &orphans).await;
        for entry in &run.inventory {
            let (storage, entry) = (self.storage.clone(), entry.clone());
            let collected = tokio::task::spawn_blocking(move || {
                storage.garbage_collect(
                    &ObjectDir {
                        kind: STORAGE_KIND,
                        namespace: &entry.namespace,
                        name: &entry.name,
                    },
                    &entry.filename,
                )
            })
            .await;
            if let Ok(Err(err)) = collected {
                tracing::warn!(%err, "garbage collection of old artifacts failed");
            }
        }
        Ok(())
    }

    /// Deletes the ExternalArtifacts of `entries` and their stored files. Failures are logged:
    /// the next reconcile or the finalizer tries again.
    async fn remove(&self, client: &kube::Client, entries: &[ExternalArtifactReference]) {
        for entry in entries {
            let (storage, e) = (self.storage.clone(), entry.clone());
            let removed = tokio::task::spawn_blocking(move || {
                storage.remove_all(&ObjectDir {
                    kind: STORAGE_KIND,
                    namespace: &e.namespace,
                    name: &e.name,
                })
            })
            .await;
            if let Ok(Err(err)) = removed {
                tracing::warn!(%err, name = %entry.name, "removing stored artifacts failed");
            }
            let api: Api<ExternalArtifact> = Api::namespaced(client.clone(), &entry.namespace);
            match api.delete(&entry.name, &Default::default()).await {
                Err(kube::Error::Api(e)) if e.code != 404 => {
                    tracing::warn!(err = %e, name = %entry.name, "deleting ExternalArtifact failed")
                }
                Err(err) if !matches!(err, kube::Error::Api(_)) => {
                    tracing::warn!(%err, name = %entry.name, "deleting ExternalArtifact failed")
                }
                _ => {}
            }
        }
    }
}

impl Reconciler for ArtifactGeneratorReconciler {
    type Kind = ArtifactGenerator;

    /// 1. [`validate`](Self::validate): a spec that can be built;
    /// 2. [`observe`](Self::observe): every source's artifact and their digest;
    /// 3. [`drift`](Self::drift): whether anything changed since the last build;
    /// 4. [`fetch`](Self::fetch): the sources' artifacts downloaded and verified;
    /// 5. [`expand`](Self::expand): `pathPattern` into one request per matched directory;
    /// 6. [`publish`](Self::publish): each artifact built, stored and its ExternalArtifact applied;
    /// 7. [`prune`](Self::prune): ExternalArtifacts no longer generated deleted, old files collected.
    async fn apply(
        &self,
        obj: &ArtifactGenerator,
        status: &mut ArtifactGeneratorStatus,
        ctx: &ReconcileContext<ArtifactGenerator>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            namespace: obj.namespace().unwrap_or_default(),
            observed: BTreeMap::new(),
            digest: String::new(),
            up_to_date: false,
            workdir: None,
            fetched: BTreeMap::new(),
            requests: Vec::new(),
            inventory: Vec::new(),
        };
        self.validate(&mut run).await?;
        self.observe(&mut run).await?;
        self.drift(&mut run).await?;
        self.fetch(&mut run).await?;
        self.expand(&mut run).await?;
        self.publish(&mut run).await?;
        self.prune(&mut run).await?;
        let count = run.inventory.len();
        run.status.inventory = Some(std::mem::take(&mut run.inventory));
        run.status.observed_sources_digest = Some(run.digest.clone());
        Ok(Success::new(
            driftless_api::meta::reasons::SUCCEEDED,
            format!("reconciliation succeeded, generated {count} artifact(s)"),
        ))
    }

    async fn cleanup(
        &self,
        obj: &ArtifactGenerator,
        ctx: &ReconcileContext<ArtifactGenerator>,
    ) -> Result<(), ReconcileError> {
        let inventory = obj
            .status
            .as_ref()
            .and_then(|s| s.inventory.clone())
            .unwrap_or_default();
        self.remove(&ctx.client, &inventory).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(digest: &str, revision: &str) -> Observed {
        Observed {
            kind: "GitRepository".into(),
            artifact: Artifact {
                digest: digest.into(),
                revision: revision.into(),
                url: "http://s/a.tar.gz".into(),
                path: "a.tar.gz".into(),
                last_update_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                size: None,
                metadata: None,
            },
        }
    }

    /// source-watcher's digest: sorted `alias=[…]` entries joined by `|`; the origin revision
    /// is not part of it.
    #[test]
    fn the_sources_digest_is_source_watchers() {
        let sources = BTreeMap::from([
            ("b".to_string(), observed("sha256:2", "main@sha1:2")),
            ("a".to_string(), observed("sha256:1", "main@sha1:1")),
        ]);
        let expected = hex::encode(Sha256::digest(
            b"a=[digest=sha256:1,revision=main@sha1:1,url=http://s/a.tar.gz]|b=[digest=sha256:2,revision=main@sha1:2,url=http://s/a.tar.gz]",
        ));
        assert_eq!(sources_digest(&sources), format!("sha256:{expected}"));
        let mut with_origin = sources.clone();
        if let Some(o) = with_origin.get_mut("a") {
            o.artifact.metadata = Some(BTreeMap::from([(ORIGIN_REVISION_ANNOTATION.into(), "v1".into())]));
        }
        assert_eq!(sources_digest(&with_origin), sources_digest(&sources));
        assert_eq!(with_origin["a"].origin_revision(), "v1");
        assert_eq!(sources["a"].origin_revision(), "main@sha1:1");
    }
}
