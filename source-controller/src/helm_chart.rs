//! HelmChart: a chart pulled from a HelmRepository and published as an artifact.
//!
//! The chart's versions come from the repository's stored index, parsed once per index
//! revision into a compact table (chart name → versions with their URLs) that every HelmChart
//! and worker shares ([`IndexCache`]): a large index is neither parsed per chart nor held once
//! per reconcile. The version picked is an exact match of `version`, else the highest that its
//! semver range allows (Masterminds rules, as Flux: pre-releases only for a range that names
//! one). The chart archive is stored byte for byte as `<chart>-<version>.tgz`; the revision is
//! the version, as Flux writes it.
//!
//! A new index of the repository reconciles its HelmCharts at once ([`repository_triggers`]).
//!
//! Not yet (each stalls with a message naming what is missing, never accepted silently):
//! charts from GitRepository, Bucket and OCI HelmRepositories, `valuesFiles`, `verify`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless_api::meta::{ReconcileStatus, condition_types as ct, reasons as meta_reasons};
use driftless_api::source::{HelmChart, HelmChartStatus, HelmRepository, reasons};
use driftless_runtime::conditions::{self, Status};
use driftless_runtime::events::EventType;
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success, TriggerFn};
use driftless_runtime::triggers;
use driftless_runtime::work::{blocking, timeout_of};
use kube::{Api, Resource, ResourceExt};
use serde::Deserialize;

use crate::common::{self, Problem, failed};
use crate::helm_repository::{self, is_oci};
use crate::storage::{ObjectDir, Storage};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "helmchart";
/// Largest chart archive pulled (Flux's `--helm-chart-max-size` default).
pub const DEFAULT_CHART_MAX_SIZE: u64 = 10 << 20;
/// How long a HelmChart waits for its repository or the repository's index.
const SOURCE_REQUEUE: Duration = Duration::from_secs(10);
/// Parsed indexes kept at most (one per repository revision in use).
const INDEX_CACHE_LIMIT: usize = 64;

/// A chart version as the index lists it: only what choosing and pulling it needs.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexedVersion {
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub created: Option<String>,
}

/// The charts of one index revision: name → versions. Only the fields listed here are kept
/// (serde skips the rest while parsing), so a 50 MB index becomes a few MB of table.
#[derive(Debug, Default, Deserialize)]
pub struct ChartIndex {
    #[serde(default, rename = "apiVersion")]
    pub api_version: String,
    #[serde(default)]
    pub entries: HashMap<String, Vec<IndexedVersion>>,
}

impl ChartIndex {
    /// Parses an index (YAML, or JSON, which is YAML); one without `apiVersion` is refused,
    /// as Helm refuses it. The parser's events are consumed one at a time and only the
    /// table's fields are kept, so a large index never exists as a document tree or an event
    /// list in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("the index is not UTF-8: {e}"))?;
        let mut builder = TableBuilder::default();
        yaml_rust2::parser::Parser::new_from_str(text)
            .load(&mut builder, false)
            .map_err(|e| e.to_string())?;
        if let Some(error) = builder.error {
            return Err(error);
        }
        if !builder.seen_map {
            return Err("the index is not a map".into());
        }
        if builder.index.api_version.is_empty() {
            return Err("no API version specified".into());
        }
        Ok(builder.index)
    }
}

/// A container being read: a map (with the key whose value comes next) or a sequence.
enum Frame {
    Map(Option<String>),
    Seq,
}

/// Builds a [`ChartIndex`] from parser events, tracking only the path to the current value.
#[derive(Default)]
struct TableBuilder {
    frames: Vec<Frame>,
    /// Keys (and `[]` for sequence items) from the document root to the current container.
    path: Vec<String>,
    index: ChartIndex,
    /// The version entry being read: its chart and fields.
    current: Option<(String, IndexedVersion)>,
    seen_map: bool,
    error: Option<String>,
}

impl TableBuilder {
    /// The path segment of the value that starts now (a map's pending key is used up).
    fn segment(&mut self) -> String {
        match self.frames.last_mut() {
            Some(Frame::Map(key)) => key.take().unwrap_or_default(),
            Some(Frame::Seq) => "[]".into(),
            None => String::new(),
        }
    }

    fn at(&self, segments: &[&str]) -> bool {
        self.path.len() == segments.len() && self.path.iter().zip(segments).all(|(p, s)| *s == "*" || p == s)
    }

    fn start(&mut self, frame: Frame) {
        let is_map = matches!(frame, Frame::Map(_));
        if self.frames.is_empty() {
            self.seen_map |= is_map;
        } else {
            let segment = self.segment();
            self.path.push(segment);
        }
        if self.at(&["entries"]) && !is_map {
            self.error.get_or_insert_with(|| "entries is not a map".into());
        } else if self.at(&["entries", "*"]) {
            if is_map {
                let chart = self.path[1].clone();
                self.error
                    .get_or_insert_with(|| format!("entries of chart '{chart}' are not a list"));
            } else {
                self.index.entries.entry(self.path[1].clone()).or_default();
            }
        } else if self.at(&["entries", "*", "[]"]) && is_map {
            let version = IndexedVersion {
                version: String::new(),
                urls: Vec::new(),
                created: None,
            };
            self.current = Some((self.path[1].clone(), version));
        }
        self.frames.push(frame);
    }

    fn end(&mut self) {
        self.frames.pop();
        if self.at(&["entries", "*", "[]"])
            && let Some((chart, version)) = self.current.take()
        {
            self.index.entries.entry(chart).or_default().push(version);
        }
        self.path.pop();
    }

    fn scalar(&mut self, value: String) {
        if let Some(Frame::Map(key @ None)) = self.frames.last_mut() {
            *key = Some(value);
            return;
        }
        let segment = self.segment();
        self.path.push(segment);
        if self.at(&["apiVersion"]) {
            self.index.api_version = value;
        } else if self.at(&["entries", "*"]) {
            // `chart: ~` (no versions) is an empty list; any other scalar is not a list.
            if value.is_empty() || value == "~" || value == "null" {
                self.index.entries.entry(self.path[1].clone()).or_default();
            } else {
                let chart = self.path[1].clone();
                self.error
                    .get_or_insert_with(|| format!("entries of chart '{chart}' are not a list"));
            }
        } else if let Some((_, version)) = self.current.as_mut() {
            if self.path.len() == 4 && self.path[3] == "version" {
                version.version = value;
            } else if self.path.len() == 4 && self.path[3] == "created" {
                version.created = Some(value);
            } else if self.path.len() == 5 && self.path[3] == "urls" {
                version.urls.push(value);
            }
        } else if self.at(&["entries"]) && value != "~" && value != "null" && !value.is_empty() {
            self.error.get_or_insert_with(|| "entries is not a map".into());
        }
        self.path.pop();
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for TableBuilder {
    fn on_event(&mut self, event: yaml_rust2::parser::Event, _mark: yaml_rust2::scanner::Marker) {
        use yaml_rust2::parser::Event;
        match event {
            Event::MappingStart(..) => self.start(Frame::Map(None)),
            Event::SequenceStart(..) => self.start(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => self.end(),
            Event::Scalar(value, ..) => self.scalar(value),
            // An alias is a value like any other; the table keeps none of them.
            Event::Alias(_) => self.scalar(String::new()),
            _ => {}
        }
    }
}

/// Parsed indexes by stored artifact path (one path per index revision), shared by every
/// HelmChart and worker of the controller.
#[derive(Default)]
pub struct IndexCache {
    indexes: Mutex<HashMap<String, Arc<ChartIndex>>>,
    /// Held while an index is parsed, so that workers asking for the same new revision wait
    /// for one parse instead of each parsing it (a parse of a large index is the costly part).
    parsing: Mutex<()>,
}

impl IndexCache {
    /// The index stored at `path` in `storage`, parsed on first use. Blocking.
    pub fn get(&self, storage: &Storage, path: &str) -> Result<Arc<ChartIndex>, String> {
        if let Some(index) = self.lock().get(path) {
            return Ok(index.clone());
        }
        let _parsing = self.parsing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = self.lock().get(path) {
            return Ok(index.clone());
        }
        let bytes =
            std::fs::read(storage.root().join(path)).map_err(|e| format!("reading the index: {e}"))?;
        let index = ChartIndex::parse(&bytes).map_err(|e| format!("reading the index: {e}"))?;
        drop(bytes);
        let index = Arc::new(index);
        let mut indexes = self.lock();
        // Indexes of superseded revisions go; a miss costs one parse.
        if indexes.len() >= INDEX_CACHE_LIMIT {
            indexes.clear();
        }
        indexes.insert(path.to_string(), index.clone());
        Ok(index)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ChartIndex>>> {
        self.indexes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The version of `chart` to pull: an exact match of `wanted`, else the highest version its
/// range allows (the newest `created` among equal versions).
pub fn pick_version<'a>(
    index: &'a ChartIndex,
    chart: &str,
    wanted: &str,
) -> Result<&'a IndexedVersion, String> {
    let versions = index
        .entries
        .get(chart)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("no chart name found: '{chart}'"))?;
    if let Some(exact) = versions.iter().find(|v| v.version == wanted) {
        return Ok(exact);
    }
    let range = if wanted.is_empty() { "*" } else { wanted };
    let reqs = crate::git_repository::reference::parse_semver_range(range).map_err(|e| e.to_string())?;
    versions
        .iter()
        .filter_map(|v| crate::git_repository::reference::tag_version(&v.version).map(|parsed| (parsed, v)))
        .filter(|(parsed, _)| reqs.iter().any(|r| r.matches(parsed)))
        .max_by(|(a, va), (b, vb)| a.cmp(b).then_with(|| va.created.cmp(&vb.created)))
        .map(|(_, v)| v)
        .ok_or_else(|| format!("no '{chart}' chart with version matching '{wanted}' found"))
}

/// The URL of a chart archive named in the index: absolute as it is, else relative to the
/// repository URL (with a trailing `/`), whose query replaces the reference's, as Helm resolves it.
pub fn chart_url(repository: &str, reference: &str) -> Result<String, String> {
    if let Ok(absolute) = url::Url::parse(reference) {
        return Ok(absolute.to_string());
    }
    let mut base = url::Url::parse(repository).map_err(|e| format!("invalid repository URL: {e}"))?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let query = base.query().map(str::to_string);
    let mut resolved = base
        .join(reference)
        .map_err(|e| format!("invalid chart URL '{reference}': {e}"))?;
    if query.is_some() {
        resolved.set_query(query.as_deref());
    }
    Ok(resolved.to_string())
}

/// Reconciles the HelmCharts of a HelmRepository as soon as it publishes a new index (a new
/// chart version is pulled then, not at the chart's next interval).
pub fn repository_triggers(client: kube::Client, namespace: Option<String>) -> TriggerFn<HelmChart> {
    Box::new(move |store| {
        let uses = |chart: &HelmChart, repository: &HelmRepository| {
            chart.spec.source_ref.kind == "HelmRepository"
                && chart.spec.source_ref.name == repository.name_any()
                && chart.namespace() == repository.namespace()
        };
        triggers::referrers(
            &client,
            namespace.as_deref(),
            store,
            kube::runtime::watcher::Config::default(),
            |r: &HelmRepository| triggers::artifact_fingerprint(r.status.as_ref()?.artifact.as_ref()),
            uses,
        )
    })
}

/// Reconciles HelmCharts into chart artifacts in `storage`.
pub struct HelmChartReconciler {
    storage: Arc<Storage>,
    indexes: Arc<IndexCache>,
    chart_max_size: u64,
}

impl HelmChartReconciler {
    /// A reconciler storing charts in `storage`, refusing archives over `chart_max_size`.
    pub fn new(storage: Arc<Storage>, chart_max_size: u64) -> Self {
        Self {
            storage,
            indexes: Arc::default(),
            chart_max_size,
        }
    }
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
    /// The HelmRepository and the revision of its index (step 3).
    repository: Option<HelmRepository>,
    index_revision: String,
    /// The version picked and the URL of its archive (step 4).
    version: String,
    chart_url: String,
    /// The stored artifact is this chart at this version already.
    current: bool,
}

impl Reconciler for HelmChartReconciler {
    type Kind = HelmChart;

    /// 1. [`validate`](Self::validate): what this controller can build (else stalled);
    /// 2. [`storage`](Self::storage): the stored chart still there, older ones collected;
    /// 3. [`source`](Self::source): the HelmRepository and its index (else waiting);
    /// 4. [`resolve`](Self::resolve): the version and the archive's URL from the index;
    /// 5. [`pull`](Self::pull): unless current, the archive stored as `<chart>-<version>.tgz`.
    async fn apply(
        &self,
        obj: &HelmChart,
        status: &mut HelmChartStatus,
        ctx: &ReconcileContext<HelmChart>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            generation: obj.meta().generation,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            timeout: Duration::from_secs(60),
            repository: None,
            index_revision: String::new(),
            version: String::new(),
            chart_url: String::new(),
            current: false,
        };
        self.validate(&mut run).await?;
        self.storage(&mut run).await?;
        self.source(&mut run).await?;
        self.resolve(&mut run).await?;
        self.pull(&mut run).await?;
        let message = format!(
            "pulled '{}' chart with version '{}'",
            run.obj.spec.chart, run.version
        );
        Ok(common::stored_as(
            run.status,
            run.generation,
            &run.version,
            reasons::CHART_PULL_SUCCEEDED,
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

impl HelmChartReconciler {
    /// Step 1: a HelmRepository source and no `valuesFiles` or `verify` yet; anything else
    /// stalls with a message that names what is not supported.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        let unsupported = match spec.source_ref.kind.as_str() {
            "HelmRepository" => None,
            "GitRepository" | "Bucket" => Some(format!(
                "charts from a {} are not supported yet: use a HelmRepository",
                spec.source_ref.kind
            )),
            other => Some(format!("unsupported source kind '{other}'")),
        }
        .or_else(|| {
            spec.values_files
                .as_ref()
                .filter(|f| !f.is_empty())
                .map(|_| "valuesFiles are not supported yet: give the values to the HelmRelease".to_string())
        })
        .or_else(|| {
            spec.verify
                .as_ref()
                .map(|_| "verify is only for charts from OCI HelmRepositories, not supported yet".to_string())
        });
        match unsupported {
            Some(m) => Err(common::stalled(
                run.status,
                run.generation,
                "UnsupportedSourceKind",
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

    /// Step 3: the HelmRepository (same namespace) with an index artifact; one that is not there
    /// yet, or has no index yet, is waited for.
    async fn source(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let name = run.obj.spec.source_ref.name.clone();
        let api: Api<HelmRepository> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
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
        let repository = match api.get_opt(&name).await {
            Ok(Some(repository)) => repository,
            Ok(None) => {
                let m = format!(
                    "failed to get source: HelmRepository '{}/{name}' not found",
                    run.namespace
                );
                return Err(waiting(run, "SourceUnavailable", m));
            }
            Err(e) => {
                let m = format!("failed to get source: {e}");
                return Err(failed(
                    run.status,
                    run.generation,
                    ct::FETCH_FAILED,
                    "SourceUnavailable",
                    m,
                ));
            }
        };
        if is_oci(&repository) {
            let m = format!("charts from OCI HelmRepositories ('{name}') are not supported yet");
            return Err(common::stalled(
                run.status,
                run.generation,
                "UnsupportedSourceKind",
                m,
            ));
        }
        let Some(artifact) = repository.status.as_ref().and_then(|s| s.artifact.clone()) else {
            let m = format!("no artifact available for HelmRepository source '{name}'");
            return Err(waiting(run, "NoSourceArtifact", m));
        };
        run.timeout = timeout_of(repository.spec.timeout.as_deref(), common::SOURCE_TIMEOUT);
        run.index_revision = artifact.revision.clone();
        run.repository = Some(repository);
        Ok(())
    }

    /// Step 4: the version to pull (exact, else the highest in range) and its archive's URL
    /// from the repository's index (parsed once per index revision, shared).
    async fn resolve(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(repository) = run.repository.clone() else {
            return Err(ReconcileError::transient(meta_reasons::FAILED, "no source yet"));
        };
        let path = repository
            .status
            .as_ref()
            .and_then(|s| s.artifact.as_ref())
            .map(|a| a.path.clone())
            .unwrap_or_default();
        let (storage, indexes) = (self.storage.clone(), self.indexes.clone());
        let index = blocking(run.timeout, move || indexes.get(&storage, &path)).await;
        let index = index.map_err(|e| {
            failed(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                meta_reasons::FAILED,
                format!("failed to load the repository index: {e}"),
            )
        })?;
        let (chart, wanted) = (
            run.obj.spec.chart.clone(),
            run.obj.spec.version.clone().unwrap_or_default(),
        );
        let picked = pick_version(&index, &chart, &wanted).map_err(|e| {
            let m = format!("invalid chart reference: failed to get chart version for remote reference: {e}");
            common::stalled(run.status, run.generation, reasons::INVALID_CHART_REFERENCE, m)
        })?;
        let reference = picked.urls.first().cloned().unwrap_or_default();
        run.version = picked.version.clone();
        run.chart_url = chart_url(&repository.spec.url, &reference).map_err(|e| {
            let m = format!("invalid chart reference: {e}");
            common::stalled(run.status, run.generation, reasons::INVALID_CHART_REFERENCE, m)
        })?;
        run.current = run
            .status
            .artifact
            .as_ref()
            .is_some_and(|a| a.revision == run.version && self.storage.exists(a))
            && run.status.observed_chart_name.as_deref() == Some(chart.as_str());
        if !run.current {
            let message = format!("pulling '{chart}' chart with version '{}'", run.version);
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
        Ok(())
    }

    /// Step 5: unless current, the archive downloaded with the repository's credentials (sent
    /// to another host only with `passCredentials`), at most `--helm-chart-max-size` bytes, and
    /// stored as it is; `ChartPullSucceeded`.
    async fn pull(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if !run.current {
            self.download_and_store(run).await?;
        }
        run.status.observed_chart_name = Some(run.obj.spec.chart.clone());
        run.status.observed_source_artifact_revision = Some(run.index_revision.clone());
        Ok(())
    }

    async fn download_and_store(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(repository) = run.repository.clone() else {
            return Err(ReconcileError::transient(meta_reasons::FAILED, "no source yet"));
        };
        let connected = helm_repository::connection(&repository, &run.ctx.client).await;
        let (http, basic_auth) = connected.map_err(|problem| {
            common::fail(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                reasons::AUTHENTICATION_FAILED,
                problem,
            )
        })?;
        let same_host = |a: &str, b: &str| {
            let key = |u: &str| {
                url::Url::parse(u).ok().map(|u| {
                    (
                        u.scheme().to_string(),
                        u.host_str().map(str::to_string),
                        u.port_or_known_default(),
                    )
                })
            };
            key(a) == key(b)
        };
        let send_credentials =
            repository.spec.pass_credentials == Some(true) || same_host(&run.chart_url, &repository.spec.url);
        let chart = run.obj.spec.chart.clone();
        let max = self.chart_max_size;
        let downloaded = tokio::time::timeout(
            run.timeout,
            helm_repository::download(
                &http,
                &run.chart_url,
                basic_auth.as_ref().filter(|_| send_credentials),
                max,
                || format!("size of chart '{chart}' exceeds '{max}' bytes limit"),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "timed out after {}",
                driftless_runtime::duration::format(run.timeout)
            ))
        });
        let archive = downloaded.map_err(|e| {
            let reason = if e.contains("401") || e.contains("403") {
                reasons::AUTHENTICATION_FAILED
            } else {
                "ChartPullError"
            };
            failed(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                reason,
                format!("chart pull error: failed to download chart for remote reference: {e}"),
            )
        })?;
        if !archive.starts_with(&[0x1f, 0x8b]) {
            let m = format!(
                "chart pull error: '{}' is not a gzipped chart archive",
                run.chart_url
            );
            return Err(common::fail(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                "ChartPullError",
                Problem::Invalid(m),
            ));
        }
        let (storage, version) = (self.storage.clone(), run.version.clone());
        let (ns, name) = (run.namespace.clone(), run.name.clone());
        let file = format!("{}-{}.tgz", run.obj.spec.chart, run.version);
        let stored = blocking(run.timeout, move || {
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns,
                name: &name,
            };
            storage
                .store_bytes(&dir, &file, &archive, &version, crate::storage::LATEST)
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
        let digest = artifact.digest.clone();
        run.status.artifact = Some(artifact);
        run.status.url = Some(self.storage.latest_url(&ObjectDir {
            kind: STORAGE_KIND,
            namespace: &run.namespace,
            name: &run.name,
        }));
        let note = format!(
            "pulled '{}' chart with version '{}'",
            run.obj.spec.chart, run.version
        );
        let metadata = [("revision", run.version.as_str()), ("digest", digest.as_str())];
        run.ctx
            .recorder
            .publish(
                run.obj,
                EventType::Normal,
                reasons::CHART_PULL_SUCCEEDED,
                &note,
                &metadata,
            )
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index() -> ChartIndex {
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "entries": {"podinfo": [
            {"version": "6.14.1", "urls": ["podinfo-6.14.1.tgz"], "created": "2026-01-02T00:00:00Z"},
            {"version": "6.14.0", "urls": ["podinfo-6.14.0.tgz"]},
            {"version": "7.0.0-rc.1", "urls": ["podinfo-7.0.0-rc.1.tgz"]},
            {"version": "6.2.0", "urls": ["https://other.example/podinfo-6.2.0.tgz"], "name": "ignored"}
        ]}}))
        .unwrap()
    }

    #[test]
    fn versions_are_picked_as_flux_picks_them() {
        let index = index();
        let pick = |w: &str| pick_version(&index, "podinfo", w).map(|v| v.version.clone());
        assert_eq!(pick("").unwrap(), "6.14.1");
        assert_eq!(pick("*").unwrap(), "6.14.1");
        assert_eq!(pick("6.14.0").unwrap(), "6.14.0");
        assert_eq!(pick("<6.14.0").unwrap(), "6.2.0");
        assert_eq!(pick(">=7.0.0-0").unwrap(), "7.0.0-rc.1");
        assert!(
            pick("9.9.9")
                .is_err_and(|e| e.contains("no 'podinfo' chart with version matching '9.9.9' found"))
        );
        assert!(pick_version(&index, "nginx", "*").is_err_and(|e| e.contains("no chart name found")));
    }

    #[test]
    fn indexes_are_read_into_the_table_from_parser_events() {
        let yaml = b"apiVersion: v1\nentries:\n  app:\n  - name: app\n    version: 1.2.0\n    urls: [app-1.2.0.tgz, https://m/app.tgz]\n    maintainers: [{name: x, urls: [no]}]\n    annotations: {version: no}\n    created: \"2026-01-01T00:00:00Z\"\n  - {version: 1.0.0, urls: [app-1.0.0.tgz]}\n  empty: []\n  nulled: ~\ngenerated: x\n";
        let index = ChartIndex::parse(yaml).unwrap();
        assert_eq!(index.api_version, "v1");
        let app = &index.entries["app"];
        assert_eq!(app.len(), 2);
        assert_eq!(app[0].version, "1.2.0");
        assert_eq!(app[0].urls, ["app-1.2.0.tgz", "https://m/app.tgz"]);
        assert_eq!(app[0].created.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(app[1].version, "1.0.0");
        assert!(index.entries["empty"].is_empty() && index.entries["nulled"].is_empty());
        let json = br#"{"apiVersion": "v1", "entries": {"a": [{"version": "0.1.0", "urls": ["a.tgz"]}]}}"#;
        assert_eq!(ChartIndex::parse(json).unwrap().entries["a"][0].urls, ["a.tgz"]);
        assert!(ChartIndex::parse(b"- 1\n").is_err_and(|e| e.contains("not a map")));
        assert!(
            ChartIndex::parse(b"apiVersion: v1\nentries: {a: 1}\n").is_err_and(|e| e.contains("not a list"))
        );
        assert!(
            ChartIndex::parse(b"apiVersion: v1\nentries: {a: {b: 1}}\n")
                .is_err_and(|e| e.contains("not a list"))
        );
    }

    #[test]
    fn chart_urls_resolve_against_the_repository() {
        assert_eq!(
            chart_url("http://h/charts", "podinfo-1.0.0.tgz").unwrap(),
            "http://h/charts/podinfo-1.0.0.tgz"
        );
        assert_eq!(
            chart_url("http://h/charts/", "sub/podinfo-1.0.0.tgz").unwrap(),
            "http://h/charts/sub/podinfo-1.0.0.tgz"
        );
        assert_eq!(
            chart_url("http://h/charts?t=1", "podinfo-1.0.0.tgz").unwrap(),
            "http://h/charts/podinfo-1.0.0.tgz?t=1"
        );
        assert_eq!(
            chart_url("http://h/charts", "https://cdn.example/p.tgz").unwrap(),
            "https://cdn.example/p.tgz"
        );
    }
}
