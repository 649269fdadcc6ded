//! The HelmRelease reconciler. [`HelmReleaseReconciler::apply`] is a list of steps, each
//! `async fn(&self, &mut Run) -> Result<(), ReconcileError>`; the numbers are those of
//! `docs/helm-controller.md` (step 1, finalizer, deletion and suspend, is the shared runtime's):
//!
//! 2. [`validate`](HelmReleaseReconciler::validate): names, namespaces, health expressions
//! 3. [`find_chart`](HelmReleaseReconciler::find_chart): the template's HelmChart, or `chartRef`
//! 4. [`check_dependencies`](HelmReleaseReconciler::check_dependencies): `dependsOn`
//! 5. [`compose_values`](HelmReleaseReconciler::compose_values): `valuesFrom`, then `values`
//! 6. [`download`](HelmReleaseReconciler::download): fetch, verify, extract, read `Chart.yaml`
//! 7. [`connect`](HelmReleaseReconciler::connect): who Helm acts as, on which cluster
//! 8. [`release`](HelmReleaseReconciler::release): the release state machine ([`crate::actions`])
//! 9. [`record`](HelmReleaseReconciler::record): history, inventory, storage namespace
//!
//! Errors carry their class by type, as in every controller: what the user must fix stalls,
//! what is not there yet waits, the apiserver, the network and failed Helm actions with
//! retries left are retried.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftless_api::helm::{HelmRelease, HelmReleaseStatus, condition_types, reasons as helm_reasons};
use driftless_api::meta::{Artifact, reasons};
use driftless_apply::dependency::{self, DependencyFailure, Dependent};
use driftless_apply::{CustomHealth, Discovery, Observed};
use driftless_artifact::fetch::{FetchError, Fetcher};
use driftless_runtime::conditions;
use driftless_runtime::duration;
use driftless_runtime::events::EventType;
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::chart::{self, ChartFile, SourceKey};
use crate::helm::{Connection, Helm};
use crate::release::{self, Release};

/// Flux's default of `spec.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub no_cross_namespace_refs: bool,
    pub requeue_dependency: Duration,
    pub default_service_account: String,
    /// What kubeConfig Secrets may do (`--insecure-kubeconfig-exec`, `--insecure-kubeconfig-tls`).
    pub kubeconfig: driftless_runtime::kubeconfig::KubeconfigPolicy,
    /// Feature gate ExternalArtifact (off by default, as in Flux): ExternalArtifact chartRefs.
    pub allow_external_artifact: bool,
    /// Feature gate AdditiveCELDependencyCheck: `readyExpr` is checked besides Ready.
    pub additive_ready_expr: bool,
    /// `--default-kubeconfig-service-account`: whose tokens reach a `kubeConfig.configMapRef`
    /// cluster when its ConfigMap names none.
    pub default_kubeconfig_service_account: String,
    /// Feature gate ObjectLevelWorkloadIdentity: `kubeConfig.configMapRef` tokens are issued.
    pub object_level_workload_identity: bool,
    /// How many of those tokens are cached, for how long.
    pub token_cache: driftless_runtime::workload_identity::TokenCacheLimits,
    /// The chart sources the triggers' watches see, and the artifact each release last read.
    pub sources: driftless_runtime::sources::SourceCache,
}

pub struct HelmReleaseReconciler {
    pub(crate) helm: Helm,
    pub(crate) fetcher: Fetcher,
    pub(crate) discovery: Arc<Discovery>,
    /// What drift detection's last applies and reads saw.
    pub(crate) observed: Observed,
    pub(crate) settings: Settings,
    /// The controller's own connection, to derive impersonating clients from.
    pub(crate) config: kube::Config,
    /// `kubeConfig.configMapRef`: ServiceAccount tokens, reused until close to expiry.
    pub(crate) workload_identity: driftless_runtime::workload_identity::WorkloadIdentity,
}

impl HelmReleaseReconciler {
    pub fn new(helm: Helm, settings: Settings, config: kube::Config) -> Self {
        Self {
            helm,
            fetcher: Fetcher::default(),
            discovery: Arc::new(Discovery::default()),
            observed: Observed::default(),
            workload_identity: driftless_runtime::workload_identity::WorkloadIdentity::new(
                settings.token_cache,
                &settings.default_kubeconfig_service_account,
                settings.object_level_workload_identity,
            ),
            settings,
            config,
        }
    }
}

/// One reconcile of one HelmRelease: the object, its status being written, and what each step
/// leaves for the next.
pub struct Run<'a> {
    pub hr: &'a HelmRelease,
    pub status: &'a mut HelmReleaseStatus,
    pub ctx: &'a ReconcileContext<HelmRelease>,
    pub started: Instant,
    /// `spec.timeout`, else 5m.
    pub timeout: Duration,
    /// Release name and namespace (step 2); Helm stores the release in its namespace.
    pub release_name: String,
    pub release_namespace: String,
    pub custom_health: Vec<CustomHealth>,
    /// The chart's source and its artifact (step 3).
    pub source: Option<SourceKey>,
    pub artifact: Option<Artifact>,
    /// The composed values and their digest (step 5).
    pub values: Value,
    pub config_digest: String,
    /// The extracted chart and its `Chart.yaml` (step 6).
    pub workdir: Option<tempfile::TempDir>,
    pub chart_dir: PathBuf,
    pub chart: ChartFile,
    /// How Helm and the storage reads reach the cluster (step 7).
    pub client: Client,
    pub connection: Connection,
    /// The stored revisions, newest first (read by step 8 and refreshed after each action).
    pub releases: Vec<Release>,
    /// Revisions this reconcile's actions stored (known before `history` records them).
    pub made: Vec<i64>,
    /// The Ready summary of what this reconcile did, if anything.
    pub done: Option<(String, String)>,
    /// A `forceAt` request not handled yet.
    pub force: Option<String>,
}

impl<'a> Run<'a> {
    fn new(
        hr: &'a HelmRelease,
        status: &'a mut HelmReleaseStatus,
        ctx: &'a ReconcileContext<HelmRelease>,
    ) -> Self {
        Run {
            hr,
            status,
            ctx,
            started: Instant::now(),
            timeout: hr
                .spec
                .timeout
                .as_deref()
                .and_then(|t| duration::parse(t).ok())
                .unwrap_or(DEFAULT_TIMEOUT),
            release_name: String::new(),
            release_namespace: String::new(),
            custom_health: Vec::new(),
            source: None,
            artifact: None,
            values: Value::Null,
            config_digest: String::new(),
            workdir: None,
            chart_dir: PathBuf::new(),
            chart: ChartFile::default(),
            client: ctx.client.clone(),
            connection: Connection::default(),
            releases: Vec::new(),
            made: Vec::new(),
            done: None,
            force: None,
        }
    }

    /// A run for deleting: the release's names and a work directory, nothing else.
    pub(crate) fn for_deletion(
        hr: &'a HelmRelease,
        status: &'a mut HelmReleaseStatus,
        ctx: &'a ReconcileContext<HelmRelease>,
    ) -> Self {
        let mut run = Run::new(hr, status, ctx);
        (run.release_name, run.release_namespace) = names(hr);
        run.workdir = tempfile::tempdir().ok();
        run
    }

    /// `name@version` of the chart being released.
    pub fn chart_ref(&self) -> String {
        format!("{}@{}", self.chart.name, self.chart.version)
    }

    /// Sets one of the HelmRelease's own conditions (Released, TestSuccess, Remediated).
    pub fn condition(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        let status = if ok {
            conditions::Status::True
        } else {
            conditions::Status::False
        };
        let generation = self.hr.metadata.generation;
        let conds = self.status.conditions.get_or_insert_with(Vec::new);
        conditions::set(conds, type_, status, reason, message, generation);
    }

    /// The digest a chart's version carries (Flux's `mutateChartWithSourceRevision`): for an
    /// OCIRepository, or an ExternalArtifact whose revision has one (`latest@sha256:…`,
    /// `main@sha1:…`), the part after `@` when a semver tag precedes it, else the whole
    /// revision.
    pub fn oci_digest(&self) -> Option<String> {
        let kind = self.source.as_ref()?.kind.as_str();
        let revision = &self.artifact.as_ref()?.revision;
        match kind {
            "OCIRepository" => {}
            "ExternalArtifact" if revision.contains(':') => {}
            _ => return None,
        }
        Some(match revision.split_once('@') {
            Some((tag, digest)) if semver_tag(tag).is_some() => digest.to_string(),
            _ => revision.clone(),
        })
    }

    /// An event about a Helm action, annotated with the chart version, app version and (for an
    /// OCI chart) its digest.
    pub async fn event(&self, type_: EventType, reason: &str, message: &str) {
        let mut metadata = vec![("revision", self.chart.version.as_str())];
        if let Some(app) = &self.chart.app_version {
            metadata.push(("app-version", app.as_str()));
        }
        let digest = self.oci_digest();
        if let Some(digest) = &digest {
            metadata.push(("oci-digest", digest.as_str()));
        }
        self.ctx
            .recorder
            .publish(self.hr, type_, reason, message, &metadata)
            .await;
    }
}

impl Reconciler for HelmReleaseReconciler {
    type Kind = HelmRelease;

    async fn apply(
        &self,
        hr: &HelmRelease,
        status: &mut HelmReleaseStatus,
        ctx: &ReconcileContext<HelmRelease>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run::new(hr, status, ctx);
        self.validate(&mut run).await?;
        self.find_chart(&mut run).await?;
        self.check_dependencies(&mut run).await?;
        self.compose_values(&mut run).await?;
        self.download(&mut run).await?;
        self.connect(&mut run).await?;
        let outcome = self.release(&mut run).await;
        // What the release step did decides the outcome; a failed record after it is retried.
        let recorded = self.record(&mut run).await;
        outcome?;
        recorded?;
        Ok(summary(&run))
    }

    async fn cleanup(
        &self,
        hr: &HelmRelease,
        ctx: &ReconcileContext<HelmRelease>,
    ) -> Result<(), ReconcileError> {
        self.settings.sources.forget(hr);
        crate::deletion::cleanup(self, hr, ctx).await
    }
}

/// The release's name and namespace: `releaseName`, else `[targetNamespace-]name`, in
/// `targetNamespace`, else the HelmRelease's namespace.
pub fn names(hr: &HelmRelease) -> (String, String) {
    let spec = &hr.spec;
    let namespace = spec
        .target_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| hr.namespace().unwrap_or_default());
    let name = release::release_name(
        &hr.name_any(),
        spec.target_namespace.as_deref(),
        spec.release_name.as_deref(),
    );
    (name, namespace)
}

/// The Ready summary of a reconcile that ended in sync: what it did, else the state the
/// conditions describe (tests over the release).
fn summary(run: &Run<'_>) -> Success {
    let version = run.chart.version.clone();
    if let Some((reason, message)) = &run.done {
        return Success::new(reason, message.clone()).with_revision(version);
    }
    let conds = run.status.conditions.as_deref().unwrap_or_default();
    let tests = run.hr.spec.test.as_ref().and_then(|t| t.enable) == Some(true);
    let from = [
        tests.then_some(condition_types::TEST_SUCCESS),
        Some(condition_types::RELEASED),
    ];
    for type_ in from.into_iter().flatten() {
        if let Some(c) = conditions::get(conds, type_).filter(|c| c.status == "True") {
            return Success::new(&c.reason, c.message.clone()).with_revision(version);
        }
    }
    let latest = run.releases.first().map(Release::full_name).unwrap_or_default();
    Success::new(
        helm_reasons::UPGRADE_SUCCEEDED,
        format!("Release {latest} with chart {} is in sync", run.chart_ref()),
    )
    .with_revision(version)
}

impl HelmReleaseReconciler {
    /// Step 2: the release's name and namespace, compiled health expressions. Helm's CLI
    /// stores a release in its own namespace, so a different `storageNamespace` stalls.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.hr.spec;
        (run.release_name, run.release_namespace) = names(run.hr);
        // Names reach `helm` as arguments and label selectors: only Helm's valid names do.
        if !release::valid_release_name(&run.release_name) {
            return Err(ReconcileError::stalled(
                reasons::FAILED,
                format!(
                    "invalid release name '{}': a DNS-1123 subdomain of at most 53 characters is required",
                    run.release_name
                ),
            ));
        }
        if run.release_namespace.contains('.') || !release::valid_release_name(&run.release_namespace) {
            return Err(ReconcileError::stalled(
                reasons::FAILED,
                format!("invalid target namespace '{}'", run.release_namespace),
            ));
        }
        if let Some(storage) = spec
            .storage_namespace
            .as_deref()
            .filter(|s| *s != run.release_namespace)
        {
            return Err(ReconcileError::stalled(
                reasons::FAILED,
                format!(
                    "storageNamespace '{storage}' differs from the release namespace '{}': the helm CLI stores a release in its own namespace",
                    run.release_namespace
                ),
            ));
        }
        let exprs = spec.health_check_exprs.as_deref().unwrap_or_default();
        run.custom_health = driftless_apply::health::compile(exprs)
            .map_err(|e| ReconcileError::stalled(reasons::INVALID_CEL_EXPRESSION, e))?;
        Ok(())
    }

    /// Step 3: the chart template's HelmChart applied and ready, or the `chartRef` source;
    /// then its artifact.
    async fn find_chart(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(key) = chart::source_key(run.hr) else {
            return Err(ReconcileError::stalled(
                reasons::FAILED,
                "either chart or chartRef must be set",
            ));
        };
        let own = run.hr.namespace().unwrap_or_default();
        driftless_runtime::acl::check_cross_namespace(
            self.settings.no_cross_namespace_refs,
            driftless_runtime::acl::Wording::NotAllowed,
            &own,
            &key.kind,
            &key.namespace,
            &key.name,
        )?;
        if run.hr.spec.chart.is_none()
            && let Some(previous) = run.status.helm_chart.take()
        {
            // The template gave way to a chartRef: its HelmChart goes.
            chart::delete_helm_chart(&run.ctx.client, &previous).await?;
        }
        // The template's HelmChart answers its apply with its status: its artifact is the one
        // checked ready at its generation (a store could still hold the previous one).
        let mut chart_artifact = None;
        if run.hr.spec.chart.is_some() {
            chart_artifact =
                chart::ensure_helm_chart(&run.ctx.client, run.hr, &key, self.settings.requeue_dependency)
                    .await?;
            run.status.helm_chart = Some(format!("{}/{}", key.namespace, key.name));
        }
        driftless_runtime::acl::check_external_artifact(
            self.settings.allow_external_artifact,
            &key.kind,
            &key.namespace,
            &key.name,
        )?;
        let sources = &self.settings.sources;
        let artifact = match chart_artifact {
            Some(artifact) => {
                sources.remember(run.hr, &artifact);
                artifact
            }
            None => {
                let (client, requeue) = (&run.ctx.client, self.settings.requeue_dependency);
                sources
                    .artifact_for(run.hr, client, &key.kind, &key.namespace, &key.name, requeue)
                    .await?
            }
        };
        run.artifact = Some(artifact);
        run.source = Some(key);
        Ok(())
    }

    /// Step 4: every HelmRelease named in `dependsOn` is Ready at its generation; an entry of
    /// another kind (beyond Flux) is Current by kstatus.
    async fn check_dependencies(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let object = serde_json::to_value(run.hr).unwrap_or_default();
        let namespace = run.hr.namespace().unwrap_or_default();
        let dependent = Dependent {
            object: &object,
            kind: "HelmRelease",
            api_version: "helm.toolkit.fluxcd.io/v2",
            namespace: &namespace,
            additive_ready_expr: self.settings.additive_ready_expr,
        };
        let dependencies = run.hr.spec.depends_on.as_deref().unwrap_or_default();
        dependency::check_all(&run.ctx.client, &self.discovery, &dependent, dependencies, |_| {
            None
        })
        .await
        .map_err(|failure| match failure {
            DependencyFailure::NotReady(m) => {
                ReconcileError::waiting(reasons::DEPENDENCY_NOT_READY, m, self.settings.requeue_dependency)
            }
            DependencyFailure::Invalid(m) => ReconcileError::stalled(reasons::DEPENDENCY_NOT_READY, m),
        })?;
        Ok(())
    }

    /// Step 5: values from ConfigMaps and Secrets in order, then inline values. A referenced
    /// object not there yet is waited for; content that is not values stalls.
    async fn compose_values(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        use crate::values::ValuesError;
        run.values = crate::values::compose(&run.ctx.client, run.hr)
            .await
            .map_err(|e| match e {
                ValuesError::Missing(m) => {
                    ReconcileError::waiting(helm_reasons::VALUES_ERROR, m, self.settings.requeue_dependency)
                }
                ValuesError::Invalid(m) => ReconcileError::stalled(helm_reasons::VALUES_ERROR, m),
                ValuesError::Unavailable(m) => ReconcileError::transient(helm_reasons::VALUES_ERROR, m),
            })?;
        run.config_digest = release::config_digest(&run.values);
        Ok(())
    }

    /// Step 6: the chart artifact downloaded, checked against its digest, extracted; the
    /// chart directory and its `Chart.yaml` found in it.
    async fn download(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(artifact) = run.artifact.clone() else {
            return Ok(());
        };
        let workdir = tempfile::tempdir()
            .map_err(|e| ReconcileError::transient(reasons::ARTIFACT_FAILED, e.to_string()))?;
        let extracted = workdir.path().join("chart");
        self.fetcher
            .fetch(&artifact.url, &artifact.digest, &extracted)
            .await
            .map_err(|e| match e {
                FetchError::NotFound(_) => ReconcileError::waiting(
                    reasons::ARTIFACT_FAILED,
                    e.to_string(),
                    self.settings.requeue_dependency,
                ),
                other => ReconcileError::transient(reasons::ARTIFACT_FAILED, other.to_string()),
            })?;
        let (dir, mut chart) =
            chart::locate(&extracted).map_err(|e| ReconcileError::stalled(reasons::ARTIFACT_FAILED, e))?;
        // A chart from an OCIRepository or a digest-revisioned ExternalArtifact is versioned
        // with its digest (`6.14.1+<12 hex>`), as Flux tracks it: a new push (or a new
        // generated artifact) of the same version is a new release.
        if let Some(digest) = run.oci_digest() {
            let revision = run
                .artifact
                .as_ref()
                .map(|a| a.revision.clone())
                .unwrap_or_default();
            if let Some((tag, _)) = revision.split_once('@')
                && let Some(tagged) = semver_tag(tag)
                && semver::Version::parse(chart.version.trim_start_matches('v')).ok() != Some(tagged)
            {
                return Err(ReconcileError::stalled(
                    "ChartMutateError",
                    format!(
                        "artifact revision {tag} does not match chart version {}",
                        chart.version
                    ),
                ));
            }
            let hex: String = digest
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect();
            if hex.len() < 12 {
                return Err(ReconcileError::stalled(
                    "ChartMutateError",
                    format!("invalid artifact revision {revision}"),
                ));
            }
            if let Ok(mut version) = semver::Version::parse(chart.version.trim_start_matches('v'))
                && let Ok(build) = semver::BuildMetadata::new(&hex)
            {
                version.build = build;
                chart.version = version.to_string();
                driftless_chart::metadata::set_version(&dir, &chart.version)
                    .map_err(|e| ReconcileError::transient(reasons::ARTIFACT_FAILED, e))?;
            }
        }
        run.chart_dir = dir;
        run.chart = chart;
        run.workdir = Some(workdir);
        Ok(())
    }

    /// Step 7: Helm acts as `serviceAccountName` (else `--default-service-account`) when set,
    /// on the cluster of `kubeConfig.secretRef` when set; storage reads use the same identity.
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        crate::connect::connect(self, run).await
    }

    /// Step 8: the release state machine, action after action until the release is in sync
    /// or an action fails (see [`crate::actions`]).
    async fn release(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        crate::actions::reconcile_release(self, run).await
    }

    /// Step 9: what Helm stored after this reconcile, recorded in status: the history of
    /// revisions, the inventory of the deployed release, its storage namespace.
    async fn record(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        crate::record::record(self, run).await
    }

    /// Sets `Reconciling` with Flux's progress message for an action about to run.
    pub(crate) async fn progress(&self, run: &mut Run<'_>, action: &str, timeout: Duration) {
        let message = format!(
            "Running '{action}' action with timeout of {}",
            duration::format(timeout)
        );
        run.ctx.progress(run.hr, run.status, &message).await;
    }
}

/// The semver version of an OCI tag (`_` standing for `+`, as Helm pushes them), if it is one.
fn semver_tag(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.trim_start_matches('v').replace('_', "+").as_str()).ok()
}
