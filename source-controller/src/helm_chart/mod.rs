//! HelmChart: a chart pulled from a Helm repository (HTTP or OCI) or built from a GitRepository
//! or Bucket artifact, and published as `<chart>-<version>.tgz`.
//!
//! - From an HTTP HelmRepository, the version comes from the repository's stored index
//!   ([`index`], parsed once per index revision and shared by every HelmChart and worker).
//! - From an OCI HelmRepository (URL and credentials only), from the registry's tags
//!   (`_` read as `+`); `verify` checks the chart's cosign signature before it is pulled.
//! - From a GitRepository or Bucket, the chart at `spec.chart` in the source artifact, with
//!   its missing dependencies built as `helm dependency build` builds them (charts of the same
//!   source, HTTP and OCI repositories, with the credentials of the HelmRepository that has
//!   the URL). `reconcileStrategy: Revision` adds the source revision's first 12 hex digits as
//!   build metadata (`6.0.3+<hex>`), so every new revision is a new chart version.
//! - `valuesFiles` are merged in order into the packaged `values.yaml`, and the generation is
//!   added to the version's build metadata (`6.0.3+2`, `6.0.3+<hex>.2`), as Flux writes it.
//!
//! The build itself ([`build`]) runs off the async runtime. A new artifact of the source
//! reconciles its HelmCharts at once ([`source_triggers`]).

pub mod build;
pub mod index;
pub mod remote;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use driftless_api::meta::{ReconcileStatus, condition_types as ct, reasons as meta_reasons};
use driftless_api::source::{Bucket, GitRepository, HelmChart, HelmChartStatus, HelmRepository, reasons};
use driftless_runtime::conditions::{self, Status};
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success, TriggerFn};
use driftless_runtime::triggers;
use driftless_runtime::work::{Blocking, blocking, timeout_of};
use futures::StreamExt;
use kube::{Api, Resource, ResourceExt};

use crate::common::{self, Problem, failed};
use crate::helm_repository::{self, is_oci};
use crate::storage::{ObjectDir, Storage};
use build::{BuildError, Unpacked};
pub use index::{ChartIndex, IndexCache, IndexedVersion, chart_url, pick_version};
use remote::{Located, Repository};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "helmchart";
/// Largest chart archive pulled (Flux's `--helm-chart-max-size` default).
pub const DEFAULT_CHART_MAX_SIZE: u64 = 10 << 20;
/// How long a HelmChart waits for its source or the source's artifact.
const SOURCE_REQUEUE: Duration = Duration::from_secs(10);

/// Reconciles the HelmCharts of a HelmRepository, GitRepository or Bucket as soon as it
/// publishes a new artifact (a new chart version is pulled then, not at the chart's next
/// interval).
pub fn source_triggers(client: kube::Client, namespace: Option<String>) -> TriggerFn<HelmChart> {
    fn uses<K: ResourceExt>(kind: &'static str) -> impl Fn(&HelmChart, &K) -> bool + Send + 'static {
        move |chart, source| {
            chart.spec.source_ref.kind == kind
                && chart.spec.source_ref.name == source.name_any()
                && chart.namespace() == source.namespace()
        }
    }
    Box::new(move |store| {
        let config = kube::runtime::watcher::Config::default;
        let ns = namespace.as_deref();
        futures::stream::select_all([
            triggers::referrers(
                &client,
                ns,
                store.clone(),
                config(),
                |r: &HelmRepository| triggers::artifact_fingerprint(r.status.as_ref()?.artifact.as_ref()),
                uses("HelmRepository"),
            ),
            triggers::referrers(
                &client,
                ns,
                store.clone(),
                config(),
                |r: &GitRepository| triggers::artifact_fingerprint(r.status.as_ref()?.artifact.as_ref()),
                uses("GitRepository"),
            ),
            triggers::referrers(
                &client,
                ns,
                store,
                config(),
                |r: &Bucket| triggers::artifact_fingerprint(r.status.as_ref()?.artifact.as_ref()),
                uses("Bucket"),
            ),
        ])
        .boxed()
    })
}

/// Reconciles HelmCharts into chart artifacts in `storage`.
pub struct HelmChartReconciler {
    storage: Arc<Storage>,
    indexes: Arc<IndexCache>,
    chart_max_size: u64,
    limits: HelmLimits,
}

/// Flux's Helm limits besides the archive size: `--helm-index-max-size`,
/// `--helm-chart-file-max-size`, and the index cache's `--helm-cache-max-size` and
/// `--helm-cache-ttl`.
#[derive(Clone, Copy, Debug)]
pub struct HelmLimits {
    pub index_max_size: u64,
    pub file_max_size: u64,
    pub cache: index::CacheLimits,
}

impl Default for HelmLimits {
    fn default() -> Self {
        Self {
            index_max_size: helm_repository::DEFAULT_INDEX_MAX_SIZE,
            file_max_size: DEFAULT_CHART_FILE_MAX_SIZE,
            cache: index::CacheLimits::default(),
        }
    }
}

/// Flux's `--helm-chart-file-max-size` default: 5 MiB.
pub const DEFAULT_CHART_FILE_MAX_SIZE: u64 = 5 << 20;

impl HelmChartReconciler {
    /// A reconciler storing charts in `storage`, refusing archives over `chart_max_size`.
    pub fn new(storage: Arc<Storage>, chart_max_size: u64) -> Self {
        Self::with_limits(storage, chart_max_size, HelmLimits::default())
    }

    /// The parsed-index cache this reconciler's charts share.
    pub fn index_cache(&self) -> Arc<IndexCache> {
        self.indexes.clone()
    }

    /// [`new`](Self::new) with Flux's other Helm limits.
    pub fn with_limits(storage: Arc<Storage>, chart_max_size: u64, limits: HelmLimits) -> Self {
        Self {
            storage,
            indexes: Arc::new(IndexCache::new(limits.cache)),
            chart_max_size,
            limits,
        }
    }
}

/// Where the chart comes from (step 3).
enum Source {
    /// A Helm repository (HTTP with its index, or OCI).
    Repository(Box<Repository>),
    /// A GitRepository or Bucket artifact in storage, and its revision.
    Artifact { file: PathBuf, revision: String },
}

/// The source object as read: a HelmRepository, or a source's artifact (None: none yet).
enum Found {
    Repository(Box<HelmRepository>),
    Artifact(Option<driftless_api::meta::Artifact>),
}

/// What a reconcile leaves in storage.
enum Outcome {
    /// The stored artifact is this build already.
    Kept,
    /// A new artifact, pulled as it was or packaged here (with the values files merged).
    Stored { packaged: bool, merged: Vec<String> },
}

/// One reconcile of one HelmChart and what each step leaves for the next.
struct Run<'a> {
    obj: &'a HelmChart,
    status: &'a mut HelmChartStatus,
    ctx: &'a ReconcileContext<HelmChart>,
    generation: Option<i64>,
    namespace: String,
    name: String,
    timeout: Duration,
    /// The last reconcile of this generation succeeded: an artifact of the same version is
    /// this build (else it is built again, as Flux forces a build on a new generation).
    settled: bool,
    /// `valuesFiles`, without a lone `values.yaml` (the chart's own: nothing to merge).
    values_files: Vec<String>,
    /// The chart's source and its artifact's revision, when it has one (step 3).
    source: Option<Source>,
    source_revision: Option<String>,
    /// The repository's version of the chart (step 4).
    located: Option<Located>,
    /// The chart's name and the version published (step 6).
    chart_name: String,
    version: String,
    outcome: Outcome,
}

impl Run<'_> {
    /// The build failed: `FetchFailed` for a bad reference, `BuildFailed` otherwise; the spec's
    /// mistakes stall.
    fn build_failed(&mut self, error: Blocking<BuildError>) -> ReconcileError {
        let error = match error {
            Blocking::Failed(e) => e,
            Blocking::TimedOut(after) => BuildError::Package(Blocking::<String>::TimedOut(after).to_string()),
            Blocking::Panicked(why) => BuildError::Package(why),
        };
        let condition = match error {
            BuildError::Reference(_) => ct::FETCH_FAILED,
            _ => ct::BUILD_FAILED,
        };
        let message = error.message();
        conditions::set(
            self.status.conditions_mut(),
            condition,
            Status::True,
            error.reason(),
            &message,
            self.generation,
        );
        if error.stalls() {
            ReconcileError::stalled(error.reason(), message)
        } else {
            ReconcileError::transient(error.reason(), message)
        }
    }

    fn pull_failed(&mut self, problem: Problem) -> ReconcileError {
        let (reason, problem) = match problem {
            Problem::Invalid(m) => (
                reasons::INVALID_CHART_REFERENCE,
                Problem::Invalid(format!(
                    "invalid chart reference: failed to get chart version for remote reference: {m}"
                )),
            ),
            other => {
                let reason = if other.message().contains("401") || other.message().contains("403") {
                    reasons::AUTHENTICATION_FAILED
                } else {
                    reasons::CHART_PULL_ERROR
                };
                (reason, other.map_message(|m| format!("chart pull error: {m}")))
            }
        };
        common::fail(self.status, self.generation, ct::FETCH_FAILED, reason, problem)
    }

    fn repository(&self) -> Result<&Repository, ReconcileError> {
        match &self.source {
            Some(Source::Repository(r)) => Ok(r),
            _ => Err(ReconcileError::transient(
                meta_reasons::FAILED,
                "no repository yet",
            )),
        }
    }
}

impl Reconciler for HelmChartReconciler {
    type Kind = HelmChart;

    /// 1. [`validate`](Self::validate): the source kind, `verify` only for HelmRepositories;
    /// 2. [`storage`](Self::storage): the stored chart still there, older ones collected;
    /// 3. [`source`](Self::source): the repository (credentials, index) or the source artifact;
    /// 4. [`resolve`](Self::resolve): a repository's version of the chart;
    /// 5. [`verify`](Self::verify): an OCI chart's signature, before it is pulled;
    /// 6. [`build`](Self::build): unless current, the chart pulled or built, stored as
    ///    `<chart>-<version>.tgz`.
    async fn apply(
        &self,
        obj: &HelmChart,
        status: &mut HelmChartStatus,
        ctx: &ReconcileContext<HelmChart>,
    ) -> Result<Success, ReconcileError> {
        let generation = obj.meta().generation;
        let settled = status.observed_generation == generation
            && conditions::get(status.conditions(), ct::READY)
                .is_some_and(|c| c.status == "True" && c.observed_generation == generation);
        let mut values_files: Vec<String> = obj.spec.values_files.clone().unwrap_or_default();
        if values_files.len() == 1 && build_path(&values_files[0]) == "values.yaml" {
            values_files.clear();
        }
        let mut run = Run {
            obj,
            status,
            ctx,
            generation,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            timeout: Duration::from_secs(60),
            settled,
            values_files,
            source: None,
            source_revision: None,
            located: None,
            chart_name: String::new(),
            version: String::new(),
            outcome: Outcome::Kept,
        };
        self.validate(&mut run).await?;
        self.storage(&mut run).await?;
        self.source(&mut run).await?;
        self.resolve(&mut run).await?;
        self.verify(&mut run).await?;
        self.build(&mut run).await?;
        conditions::delete(run.status.conditions_mut(), ct::BUILD_FAILED);
        let (reason, message) = match &run.outcome {
            Outcome::Stored { packaged, merged } => summary(&run.chart_name, &run.version, *packaged, merged),
            Outcome::Kept => conditions::get(run.status.conditions(), ct::ARTIFACT_IN_STORAGE)
                .filter(|c| c.status == "True")
                .map(|c| (c.reason.clone(), c.message.clone()))
                .unwrap_or_else(|| summary(&run.chart_name, &run.version, false, &[])),
        };
        Ok(common::stored_as(
            run.status,
            run.generation,
            &run.version,
            &reason,
            message,
        ))
    }

    async fn cleanup(
        &self,
        obj: &HelmChart,
        _ctx: &ReconcileContext<HelmChart>,
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

/// A path as Flux compares values file paths (`./values.yaml` is `values.yaml`).
fn build_path(path: &str) -> String {
    driftless_artifact::extract::confined(std::path::Path::new(path))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// Ready's reason and message for a build, as Flux writes them.
fn summary(chart: &str, version: &str, packaged: bool, merged: &[String]) -> (String, String) {
    let (reason, verb) = if packaged {
        (reasons::CHART_PACKAGE_SUCCEEDED, "packaged")
    } else {
        (reasons::CHART_PULL_SUCCEEDED, "pulled")
    };
    let mut message = format!("{verb} '{chart}' chart with version '{version}'");
    if !merged.is_empty() {
        message.push_str(&format!(" and merged values files [{}]", merged.join(" ")));
    }
    (reason.to_string(), message)
}

/// The build metadata Flux adds to a version: the first 12 hex digits of the source revision
/// (`reconcileStrategy: Revision`, Git and Bucket sources), and the generation when values
/// files are merged.
fn version_metadata(source_revision: Option<&str>, values_files: bool, generation: Option<i64>) -> String {
    let mut parts = Vec::new();
    if let Some(revision) = source_revision {
        // `main@sha1:<hex>` (Git), `sha256:<hex>` (Bucket).
        let hex = revision.rsplit(':').next().unwrap_or(revision);
        parts.push(hex.chars().take(12).collect::<String>());
    }
    if values_files {
        parts.push(generation.unwrap_or_default().to_string());
    }
    parts.join(".")
}

impl HelmChartReconciler {
    /// Step 1: a HelmRepository, GitRepository or Bucket source; `verify` only with a
    /// HelmRepository. Anything else stalls.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        let refused = match spec.source_ref.kind.as_str() {
            "HelmRepository" => None,
            "GitRepository" | "Bucket" if spec.verify.is_some() => {
                Some("spec.verify is only supported when spec.sourceRef.kind is 'HelmRepository'".to_string())
            }
            "GitRepository" | "Bucket" => None,
            other => Some(format!("unsupported source kind '{other}'")),
        };
        match refused {
            Some(m) => Err(common::stalled(
                run.status,
                run.generation,
                reasons::UNSUPPORTED_SOURCE_KIND,
                m,
            )),
            None => Ok(()),
        }
    }

    /// Step 2: the stored chart is still there (else forgotten, so it is pulled again), and
    /// older ones are garbage-collected.
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

    /// Step 3: the source in the chart's namespace. A HelmRepository gives its credentials
    /// (and, over HTTP, its stored index: one without an index yet is waited for); a
    /// GitRepository or Bucket its artifact (waited for too).
    async fn source(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let (kind, name) = (
            run.obj.spec.source_ref.kind.clone(),
            run.obj.spec.source_ref.name.clone(),
        );
        let waiting = |run: &mut Run<'_>, reason: &str, m: String| {
            conditions::set(
                run.status.conditions_mut(),
                ct::FETCH_FAILED,
                Status::True,
                reason,
                &m,
                run.generation,
            );
            ReconcileError::waiting(reason, m, SOURCE_REQUEUE)
        };
        let client = run.ctx.client.clone();
        let ns = run.namespace.clone();
        let fetched = match kind.as_str() {
            "HelmRepository" => Api::<HelmRepository>::namespaced(client, &ns)
                .get_opt(&name)
                .await
                .map(|o| o.map(|r| Found::Repository(Box::new(r)))),
            "GitRepository" => Api::<GitRepository>::namespaced(client, &ns)
                .get_opt(&name)
                .await
                .map(|o| o.map(|g| Found::Artifact(g.status.and_then(|s| s.artifact)))),
            _ => Api::<Bucket>::namespaced(client, &ns)
                .get_opt(&name)
                .await
                .map(|o| o.map(|b| Found::Artifact(b.status.and_then(|s| s.artifact)))),
        };
        let found = match fetched {
            Ok(Some(found)) => found,
            Ok(None) => {
                let m = format!("failed to get source: {kind} '{ns}/{name}' not found");
                return Err(waiting(run, reasons::SOURCE_UNAVAILABLE, m));
            }
            Err(e) => {
                let m = format!("failed to get source: {e}");
                return Err(failed(
                    run.status,
                    run.generation,
                    ct::FETCH_FAILED,
                    reasons::SOURCE_UNAVAILABLE,
                    m,
                ));
            }
        };
        let no_artifact = |run: &mut Run<'_>| {
            let m = format!("no artifact available for {kind} source '{name}'");
            waiting(run, reasons::NO_SOURCE_ARTIFACT, m)
        };
        match found {
            Found::Repository(repository) => {
                if !is_oci(&repository)
                    && repository
                        .status
                        .as_ref()
                        .and_then(|s| s.artifact.as_ref())
                        .is_none()
                {
                    return Err(no_artifact(run));
                }
                let index_revision = repository
                    .status
                    .as_ref()
                    .and_then(|s| s.artifact.as_ref())
                    .map(|a| a.revision.clone());
                if !is_oci(&repository) && run.obj.spec.verify.is_some() {
                    let m = "chart verification error: verify is supported for charts from OCI HelmRepositories only".to_string();
                    return Err(common::stalled(
                        run.status,
                        run.generation,
                        reasons::CHART_VERIFICATION_ERROR,
                        m,
                    ));
                }
                run.timeout = timeout_of(repository.spec.timeout.as_deref(), common::SOURCE_TIMEOUT);
                let connected = Repository::of(
                    &repository,
                    &run.ctx.client,
                    &self.storage,
                    &self.indexes,
                    run.timeout,
                    self.limits.index_max_size,
                )
                .await;
                let repository = connected.map_err(|problem| {
                    common::fail(
                        run.status,
                        run.generation,
                        ct::FETCH_FAILED,
                        reasons::AUTHENTICATION_FAILED,
                        problem,
                    )
                })?;
                run.source = Some(Source::Repository(Box::new(repository)));
                run.source_revision = index_revision;
            }
            Found::Artifact(None) => return Err(no_artifact(run)),
            Found::Artifact(Some(artifact)) => {
                run.timeout = common::SOURCE_TIMEOUT;
                run.source = Some(Source::Artifact {
                    file: self.storage.root().join(&artifact.path),
                    revision: artifact.revision.clone(),
                });
                run.source_revision = Some(artifact.revision);
            }
        }
        Ok(())
    }

    /// Step 4: a repository's version of the chart — an exact match of `version`, else the
    /// highest its semver range allows — and where it is. A source artifact's chart has its
    /// version in its `Chart.yaml` (step 6).
    async fn resolve(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if matches!(run.source, Some(Source::Artifact { .. })) {
            return Ok(());
        }
        let chart = run.obj.spec.chart.clone();
        let oci = matches!(run.repository()?, Repository::Oci { .. });
        if oci
            && (chart.is_empty()
                || !chart
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-/.".contains(&b)))
        {
            let m = format!(
                "invalid chart reference: invalid chart name '{chart}': a valid name must be lower case letters and numbers and MAY be separated with dashes (-), slashes (/) or periods (.)"
            );
            return Err(common::stalled(
                run.status,
                run.generation,
                reasons::INVALID_CHART_REFERENCE,
                m,
            ));
        }
        let wanted = run.obj.spec.version.clone().unwrap_or_default();
        let located = run.repository()?.locate(&chart, &wanted, run.timeout).await;
        let located = located.map_err(|problem| {
            run.pull_failed(
                problem.map_message(|m| format!("failed to get chart version for remote reference: {m}")),
            )
        })?;
        run.located = Some(located);
        Ok(())
    }

    /// Step 5: `verify` of a chart from an OCI HelmRepository — its manifest's cosign signature,
    /// before anything is pulled (a stored version verified before is not verified again).
    async fn verify(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(Located::Oci { version, digest, .. }) = &run.located else {
            conditions::delete(run.status.conditions_mut(), ct::SOURCE_VERIFIED);
            return Ok(());
        };
        let (version, digest) = (version.clone(), digest.clone());
        let stored = run.status.artifact.as_ref().is_some_and(|a| {
            a.revision.split('+').next() == Some(version.as_str()) && self.storage.exists(a)
        });
        if run.settled && stored && conditions::is_true(run.status.conditions(), ct::SOURCE_VERIFIED) {
            return Ok(());
        }
        let chart = run.obj.spec.chart.clone();
        let puller = run
            .repository()?
            .puller(&chart)
            .unwrap_or_else(|| Err("not an OCI repository".into()));
        let puller = puller.map_err(|m| run.pull_failed(Problem::Invalid(m)))?;
        let url = match run.repository()? {
            Repository::Oci { repository, .. } => format!("oci://{repository}/{chart}"),
            Repository::Http { .. } => String::new(),
        };
        let verified = crate::cosign::verify_signature(
            run.obj.spec.verify.as_ref(),
            &crate::cosign::Subject {
                namespace: &run.namespace,
                url: &url,
                digest: &digest,
                what: &format!("version {version}"),
            },
            run.status,
            run.generation,
            &run.ctx.client,
            &puller,
            run.timeout,
        )
        .await;
        if let Err(e) = &verified {
            let message = format!("chart verification error: {}", e.message);
            conditions::set(
                run.status.conditions_mut(),
                ct::BUILD_FAILED,
                Status::True,
                reasons::CHART_VERIFICATION_ERROR,
                &message,
                run.generation,
            );
        }
        verified
    }

    /// Step 6: unless the stored artifact is this build, the chart pulled (and repackaged
    /// when values files are merged) or built from the source artifact; stored as
    /// `<chart>-<version>.tgz` with a `ChartPullSucceeded` or `ChartPackageSucceeded` event.
    async fn build(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        match run.source.take() {
            Some(Source::Artifact { file, revision }) => {
                self.build_from_source(run, file, &revision).await?;
            }
            source => {
                run.source = source;
                self.pull_from_repository(run).await?;
            }
        }
        run.status.observed_source_artifact_revision = run.source_revision.clone();
        run.status.observed_chart_name = Some(run.chart_name.clone());
        if let Outcome::Stored { packaged, merged } = &run.outcome {
            let ignore_missing = run.obj.spec.ignore_missing_values_files == Some(true);
            run.status.observed_values_files = ignore_missing.then(|| merged.clone());
            let (reason, note) = summary(&run.chart_name, &run.version, *packaged, merged);
            let digest = run
                .status
                .artifact
                .as_ref()
                .map(|a| a.digest.clone())
                .unwrap_or_default();
            let metadata = [("revision", run.version.as_str()), ("digest", digest.as_str())];
            run.ctx.announce(run.obj, &reason, &note, &metadata).await;
        }
        Ok(())
    }

    /// A chart from a repository: current when the stored artifact has the version (with the
    /// values files' metadata); else pulled and stored as it is, or repackaged with the values
    /// files merged.
    async fn pull_from_repository(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(located) = run.located.take() else {
            return Err(ReconcileError::transient(
                meta_reasons::FAILED,
                "no chart version yet",
            ));
        };
        run.chart_name = run.obj.spec.chart.clone();
        let metadata = version_metadata(None, !run.values_files.is_empty(), run.generation);
        run.version = build::with_metadata(located.version(), &metadata)
            .map(|v| {
                if metadata.is_empty() {
                    located.version().to_string()
                } else {
                    v
                }
            })
            .map_err(|e| run.build_failed(Blocking::Failed(e)))?;
        if self.is_current(run) {
            return Ok(());
        }
        self.progress(run).await;
        let chart = run.chart_name.clone();
        let downloaded = run
            .repository()?
            .download(&chart, &located, self.chart_max_size, run.timeout)
            .await;
        let archive = downloaded.map_err(|m| {
            run.pull_failed(Problem::Unavailable(format!(
                "failed to download chart for remote reference: {m}"
            )))
        })?;
        let file = format!("{chart}-{}.tgz", run.version);
        if run.values_files.is_empty() {
            return self.store_pulled(run, Stored::Bytes(archive), &file).await;
        }
        self.package_and_store(run, move || build::unpack_archive(&archive), &file)
            .await
    }

    /// A chart from a GitRepository or Bucket artifact: nothing is done when this source
    /// revision was built at this generation, nor when the build would have the stored
    /// version; else the chart is unpacked, its missing dependencies added, the values files
    /// merged, the version set, and the chart packaged.
    async fn build_from_source(
        &self,
        run: &mut Run<'_>,
        file: PathBuf,
        revision: &str,
    ) -> Result<(), ReconcileError> {
        let stored = run
            .status
            .artifact
            .as_ref()
            .is_some_and(|a| self.storage.exists(a));
        if run.settled && stored && run.status.observed_source_artifact_revision.as_deref() == Some(revision)
        {
            run.chart_name = run.status.observed_chart_name.clone().unwrap_or_default();
            run.version = run
                .status
                .artifact
                .as_ref()
                .map(|a| a.revision.clone())
                .unwrap_or_default();
            return Ok(());
        }
        let path = run.obj.spec.chart.clone();
        let unpacked = blocking(run.timeout, move || build::unpack_source(&file, &path)).await;
        let mut u = unpacked.map_err(|e| run.build_failed(e))?;
        let by_revision = run.obj.spec.reconcile_strategy.as_deref() == Some("Revision");
        let metadata = version_metadata(
            by_revision.then_some(revision),
            !run.values_files.is_empty(),
            run.generation,
        );
        run.chart_name = u.chart.name.clone();
        run.version = if metadata.is_empty() {
            u.chart.version.clone()
        } else {
            build::with_metadata(&u.chart.version, &metadata)
                .map_err(|e| run.build_failed(Blocking::Failed(e)))?
        };
        if self.is_current(run) {
            return Ok(());
        }
        self.progress(run).await;
        if u.archive.is_none() {
            u = self.add_dependencies(run, u).await?;
        }
        let file = format!("{}-{}.tgz", run.chart_name, run.version);
        if let Some(archive) = u
            .archive
            .clone()
            .filter(|_| metadata.is_empty() && run.values_files.is_empty())
        {
            return self.store_pulled(run, Stored::File(archive), &file).await;
        }
        self.package_and_store(run, move || Ok(u), &file).await
    }

    /// Stores a chart as it was pulled (`ChartPullSucceeded`).
    async fn store_pulled(&self, run: &mut Run<'_>, chart: Stored, file: &str) -> Result<(), ReconcileError> {
        self.store(run, chart, file).await?;
        run.outcome = Outcome::Stored {
            packaged: false,
            merged: Vec::new(),
        };
        Ok(())
    }

    /// Merges the values files into the chart `unpack` gives, sets the version, packages the
    /// chart and stores it as `file` (`ChartPackageSucceeded`); off the async runtime.
    async fn package_and_store(
        &self,
        run: &mut Run<'_>,
        unpack: impl FnOnce() -> Result<Unpacked, BuildError> + Send + 'static,
        file: &str,
    ) -> Result<(), ReconcileError> {
        let (files, ignore_missing) = (
            run.values_files.clone(),
            run.obj.spec.ignore_missing_values_files == Some(true),
        );
        let version = run.version.clone();
        let file_max_size = self.limits.file_max_size;
        let built = blocking(run.timeout, move || {
            let mut u = unpack()?;
            build::check_file_sizes(&u, file_max_size)?;
            let merged = if files.is_empty() {
                Vec::new()
            } else {
                build::merge_values_files(&u, &files, ignore_missing)?
            };
            build::set_version(&mut u, &version)?;
            let path = build::package(&u)?;
            Ok((u, path, merged))
        })
        .await;
        // The work directory (`u`) holds the package until it is stored.
        let (u, path, merged) = built.map_err(|e| run.build_failed(e))?;
        self.store(run, Stored::File(path), file).await?;
        drop(u);
        run.outcome = Outcome::Stored {
            packaged: true,
            merged,
        };
        Ok(())
    }

    /// The dependencies `charts/` lacks, added as `helm dependency build` adds them: charts
    /// of the same source copied, others pulled from their repositories.
    async fn add_dependencies(&self, run: &mut Run<'_>, u: Unpacked) -> Result<Unpacked, ReconcileError> {
        let listed = blocking(run.timeout, move || {
            build::missing_dependencies(&u).map(|m| (u, m))
        })
        .await;
        let (mut u, missing) = listed.map_err(|e| run.build_failed(e))?;
        let count = missing.len();
        for dep in missing {
            if dep.repository.is_empty() || dep.repository.starts_with("file://") {
                let added = blocking(run.timeout, move || {
                    build::add_local_dependency(&u, &dep).map(|_| u)
                })
                .await;
                u = added.map_err(|e| run.build_failed(e))?;
                continue;
            }
            let failed = |m: String| {
                BuildError::Dependency(format!("failed to add remote dependency '{}': {m}", dep.name))
            };
            if dep.repository.starts_with('@') || dep.repository.starts_with("alias:") {
                let m = format!(
                    "aliased repository dependency is not supported: {}",
                    dep.repository
                );
                return Err(run.build_failed(Blocking::Failed(failed(m))));
            }
            if !["http://", "https://", "oci://"]
                .iter()
                .any(|s| dep.repository.starts_with(s))
            {
                let m = format!("invalid dependency repository URL: {}", dep.repository);
                return Err(run.build_failed(Blocking::Failed(failed(m))));
            }
            let repository = Repository::for_dependency(
                &dep.repository,
                &run.namespace,
                &run.ctx.client,
                &self.storage,
                &self.indexes,
                run.timeout,
                self.limits.index_max_size,
            )
            .await
            .map_err(|p| run.build_failed(Blocking::Failed(failed(p.message().to_string()))))?;
            let located = repository
                .locate(&dep.name, &dep.version, run.timeout)
                .await
                .map_err(|p| {
                    let m = format!(
                        "failed to get chart '{}' version '{}' from '{}': {}",
                        dep.name,
                        dep.version,
                        dep.repository,
                        p.message()
                    );
                    run.build_failed(Blocking::Failed(failed(m)))
                })?;
            let archive = repository
                .download(&dep.name, &located, self.chart_max_size, run.timeout)
                .await
                .map_err(|m| {
                    let m = format!("chart download of version '{}' failed: {m}", located.version());
                    run.build_failed(Blocking::Failed(failed(m)))
                })?;
            let version = located.version().to_string();
            let added = blocking(run.timeout, move || {
                build::add_archive_dependency(&u, &dep, &version, &archive).map(|_| u)
            })
            .await;
            u = added.map_err(|e| run.build_failed(e))?;
        }
        if count > 0 {
            tracing::debug!(chart = %run.name, "resolved {count} chart dependencies");
        }
        Ok(u)
    }

    /// The stored artifact is this chart at this version, built at this generation.
    fn is_current(&self, run: &Run<'_>) -> bool {
        run.settled
            && run.status.observed_chart_name.as_deref() == Some(run.chart_name.as_str())
            && run
                .status
                .artifact
                .as_ref()
                .is_some_and(|a| a.revision == run.version && self.storage.exists(a))
    }

    /// `ArtifactOutdated` (when an artifact exists) and the Reconciling message of a build.
    async fn progress(&self, run: &mut Run<'_>) {
        let message = format!(
            "building artifact: '{}' chart with version '{}'",
            run.chart_name, run.version
        );
        if run.status.artifact.is_some() {
            conditions::set(
                run.status.conditions_mut(),
                ct::ARTIFACT_OUTDATED,
                Status::True,
                "NewChart",
                &message,
                run.generation,
            );
        }
        run.ctx.progress(run.obj, run.status, &message).await;
    }

    /// Stores the chart as `file` and records the artifact.
    async fn store(&self, run: &mut Run<'_>, chart: Stored, file: &str) -> Result<(), ReconcileError> {
        let (storage, version, file) = (self.storage.clone(), run.version.clone(), file.to_string());
        let (ns, name) = (run.namespace.clone(), run.name.clone());
        let stored = blocking(run.timeout, move || {
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns,
                name: &name,
            };
            match chart {
                Stored::Bytes(bytes) => {
                    storage.store_bytes(&dir, &file, &bytes, &version, crate::storage::LATEST)
                }
                Stored::File(path) => storage.store_file(&dir, &file, &path, &version, None),
            }
            .map_err(|e| e.to_string())
        })
        .await;
        let artifact = stored.map_err(|e| {
            failed(
                run.status,
                run.generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!("unable to store artifact: {e}"),
            )
        })?;
        run.status.artifact = Some(artifact);
        run.status.url = Some(self.storage.latest_url(&ObjectDir {
            kind: STORAGE_KIND,
            namespace: &run.namespace,
            name: &run.name,
        }));
        Ok(())
    }
}

/// A chart to store: bytes as pulled, or a file packaged here.
enum Stored {
    Bytes(Vec<u8>),
    File(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_metadata_is_written_as_flux_writes_it() {
        let git = "main@sha1:0123456789abcdef0123456789abcdef01234567";
        assert_eq!(version_metadata(Some(git), false, Some(3)), "0123456789ab");
        assert_eq!(version_metadata(Some(git), true, Some(3)), "0123456789ab.3");
        assert_eq!(
            version_metadata(Some("sha256:fedcba9876543210"), false, None),
            "fedcba987654"
        );
        assert_eq!(version_metadata(None, true, Some(2)), "2");
        assert_eq!(version_metadata(None, false, Some(2)), "");
    }
}
