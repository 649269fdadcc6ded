//! The Kustomization reconciler. [`KustomizationReconciler::apply`] is Flux's pipeline as a
//! list of steps, each `async fn(&self, &mut Run) -> Result<(), ReconcileError>`; the numbers
//! are those of `docs/kustomize-controller.md` (step 1, finalizer, deletion and suspend, is the
//! shared runtime's):
//!
//! 2. [`validate`](KustomizationReconciler::validate): `healthCheckExprs` compile, else stall
//! 3. [`find_source`](KustomizationReconciler::find_source): the source's artifact
//! 4. [`check_dependencies`](KustomizationReconciler::check_dependencies): `dependsOn`
//! 5. [`download`](KustomizationReconciler::download): fetch, verify, extract, confine `path`
//! 6. [`connect`](KustomizationReconciler::connect): the client objects are applied with
//! 7. [`build`](KustomizationReconciler::build): generate, decrypt, kustomize, postBuild
//! 8. [`apply_objects`](KustomizationReconciler::apply_objects): staged server-side apply
//! 9. [`prune`](KustomizationReconciler::prune): the inventory, and what left it deleted
//! 10. [`wait_healthy`](KustomizationReconciler::wait_healthy): health checks
//! 11. [`record`](KustomizationReconciler::record): history and applied revisions
//!
//! Each step's errors carry their class by type: what the user must fix stalls, what is not
//! there yet waits, the apiserver and the network are retried.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftless_api::kustomize::{FIELD_MANAGER, GROUP, Kustomization, KustomizationStatus};
use driftless_api::meta::{Artifact, reasons};
use driftless_apply::{
    AppliedObject, ApplyError, ApplyFailure, ApplyOptions, CustomHealth, Discovery, DriftIgnore, ObjectId,
    Observed, Owner,
};
use driftless_artifact::fetch::{FetchError, Fetcher};
use driftless_build::BuildError;
use driftless_runtime::duration;
use driftless_runtime::events::EventType;
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success};
use driftless_runtime::work::timeout_of;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::source;
use driftless_runtime::workload_identity::{TokenCacheLimits, WorkloadIdentity};

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub no_cross_namespace_refs: bool,
    pub requeue_dependency: Duration,
    pub default_service_account: String,
    pub default_kubeconfig_service_account: String,
    /// What kubeConfig Secrets may do (`--insecure-kubeconfig-exec`, `--insecure-kubeconfig-tls`).
    pub kubeconfig: driftless_runtime::kubeconfig::KubeconfigPolicy,
    /// `--no-remote-bases`: remote resources in kustomizations are refused, not fetched.
    pub no_remote_bases: bool,
    /// Feature gate StrictPostBuildSubstitutions (on by default, as in Flux): an unset variable
    /// without a default fails the build.
    pub strict_substitutions: bool,
    /// Feature gate CancelHealthCheckOnNewRevision (off by default, as in Flux).
    pub cancel_health_on_new_revision: bool,
    /// Feature gate ExternalArtifact (off by default, as in Flux): ExternalArtifact sources.
    pub allow_external_artifact: bool,
    /// `--concurrent-ssa`: objects of a stage applied at once.
    pub concurrent_ssa: usize,
    /// `--custom-apply-stage-kinds`.
    pub custom_stage: Vec<driftless_apply::GroupKind>,
    /// `--override-manager`.
    pub override_managers: Vec<String>,
    /// Feature gate MigrateAPIVersion.
    pub migrate_api_version: bool,
    /// Health checks stop at the first failed object (off with DisableFailFastBehavior).
    pub fail_fast: bool,
    /// Feature gate AdditiveCELDependencyCheck: `readyExpr` is checked besides Ready.
    pub additive_ready_expr: bool,
    /// Feature gate GroupChangeLog: the apply's log line groups objects by action.
    pub group_change_log: bool,
    /// `--sops-age-secret`: the Secret (namespace, name: RUNTIME_NAMESPACE's) with fallback
    /// age keys.
    pub sops_age_secret: Option<(String, String)>,
    /// Feature gate ObjectLevelWorkloadIdentity: ServiceAccount tokens for remote clusters.
    pub object_level_workload_identity: bool,
    /// `--http-retry`.
    pub http_retry: u32,
    /// `--token-cache-max-size`, `--token-cache-max-duration`.
    pub token_cache: TokenCacheLimits,
    /// The sources the triggers' watches see, and the artifact each Kustomization last read.
    pub sources: driftless_runtime::sources::SourceCache,
    /// The label selector of the ConfigMaps and Secrets whose changes reconcile the
    /// Kustomizations that read them (`--watch-configs-label-selector`); None with Flux's
    /// DisableConfigWatchers gate.
    pub watch_configs: Option<String>,
}

impl Default for Settings {
    /// Flux's defaults: what the controller runs with when no flag says otherwise.
    fn default() -> Self {
        Self {
            no_cross_namespace_refs: false,
            requeue_dependency: Duration::from_secs(30),
            default_service_account: String::new(),
            default_kubeconfig_service_account: String::new(),
            kubeconfig: Default::default(),
            no_remote_bases: false,
            strict_substitutions: true,
            cancel_health_on_new_revision: false,
            allow_external_artifact: false,
            concurrent_ssa: driftless_apply::DEFAULT_CONCURRENCY,
            custom_stage: Vec::new(),
            override_managers: Vec::new(),
            migrate_api_version: false,
            fail_fast: true,
            additive_ready_expr: false,
            group_change_log: false,
            sops_age_secret: None,
            object_level_workload_identity: false,
            http_retry: 9,
            token_cache: Default::default(),
            sources: Default::default(),
            watch_configs: Some(crate::triggers::WATCH_CONFIGS_SELECTOR.to_string()),
        }
    }
}

pub struct KustomizationReconciler {
    pub(crate) fetcher: Fetcher,
    pub(crate) discovery: Arc<Discovery>,
    /// What the last applies and reads saw, so unchanged objects need no second read.
    pub(crate) observed: Observed,
    pub(crate) settings: Settings,
    /// The controller's own connection, to derive impersonating clients from.
    pub(crate) config: kube::Config,
    /// `kubeConfig.configMapRef`: ServiceAccount tokens, reused until close to expiry.
    pub(crate) workload_identity: WorkloadIdentity,
}

impl KustomizationReconciler {
    pub fn new(settings: Settings, config: kube::Config) -> Self {
        Self {
            fetcher: Fetcher::with_retries(settings.http_retry),
            discovery: Arc::new(Discovery::default()),
            observed: Observed::default(),
            workload_identity: WorkloadIdentity::new(
                settings.token_cache,
                &settings.default_kubeconfig_service_account,
                settings.object_level_workload_identity,
            ),
            settings,
            config,
        }
    }
}

/// One reconcile of one Kustomization: the object, its status being written, and what each
/// step leaves for the next.
pub struct Run<'a> {
    pub ks: &'a Kustomization,
    pub status: &'a mut KustomizationStatus,
    pub ctx: &'a ReconcileContext<Kustomization>,
    pub started: Instant,
    /// `spec.timeout`, else the interval less 30 s; at least 30 s ([`timeout`]).
    pub timeout: Duration,
    /// Compiled `healthCheckExprs` (step 2).
    pub custom_health: Vec<CustomHealth>,
    /// The source's artifact (step 3).
    pub artifact: Artifact,
    /// Re-applying the revision already applied (an interval or a requested reconcile) writes
    /// no progress: that keeps a no-op reconcile to the requests the apply itself needs.
    pub quiet: bool,
    /// The extracted artifact and the directory built in it (step 5).
    pub workdir: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    /// The client objects are applied with (step 6); the controller's own until then.
    pub client: Client,
    /// The built objects and the digest of the build (step 7).
    pub objects: Vec<Value>,
    pub digest: String,
    /// What the apply did (step 8): objects, change lines, live objects as the apply saw them.
    pub applied: Vec<AppliedObject>,
    pub changes: Vec<String>,
    /// Whether the apply changed anything (before pruning adds its deletions to `changes`).
    pub drifted: bool,
    pub current: HashMap<ObjectId, Value>,
    /// How steps 8 to 10 ended, recorded by step 11.
    pub outcome: Result<(), ReconcileError>,
}

impl<'a> Run<'a> {
    fn new(
        ks: &'a Kustomization,
        status: &'a mut KustomizationStatus,
        ctx: &'a ReconcileContext<Kustomization>,
    ) -> Self {
        Run {
            ks,
            status,
            ctx,
            started: Instant::now(),
            timeout: timeout(ks),
            custom_health: Vec::new(),
            // Replaced by step 3 before any step reads it.
            artifact: Artifact {
                path: String::new(),
                url: String::new(),
                revision: String::new(),
                digest: String::new(),
                last_update_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                size: None,
                metadata: None,
            },
            quiet: false,
            workdir: None,
            dir: PathBuf::new(),
            client: ctx.client.clone(),
            objects: Vec::new(),
            digest: String::new(),
            applied: Vec::new(),
            changes: Vec::new(),
            drifted: false,
            current: HashMap::new(),
            outcome: Ok(()),
        }
    }

    /// Publishes `<message> for revision <r> with a timeout of <t>` as progress, unless quiet.
    pub async fn progress(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        let message = format!(
            "{message} for revision {} with a timeout of {}",
            self.artifact.revision,
            duration::format(self.timeout)
        );
        self.ctx.progress(self.ks, self.status, &message).await;
    }

    /// The artifact's origin revision (the commit an OCI artifact was built from).
    pub fn origin_revision(&self) -> Option<&str> {
        self.artifact
            .metadata
            .as_ref()
            .and_then(|m| m.get("org.opencontainers.image.revision"))
            .map(String::as_str)
    }

    /// Event metadata as Flux's: the revision, and the origin revision when there is one.
    pub fn event_metadata(&self) -> Vec<(&str, &str)> {
        let mut metadata = vec![("revision", self.artifact.revision.as_str())];
        metadata.extend(self.origin_revision().map(|o| ("originRevision", o)));
        metadata
    }

    /// A Normal `Progressing` event (a change set, a passed health check) with Flux's metadata.
    pub async fn progress_event(&self, note: &str) {
        self.ctx
            .recorder
            .publish(
                self.ks,
                EventType::Normal,
                reasons::PROGRESSING,
                note,
                &self.event_metadata(),
            )
            .await;
    }

    /// The owner of what this Kustomization applies.
    pub fn owner(&self) -> Owner {
        Owner::new(
            GROUP,
            &self.ks.name_any(),
            &self.ks.namespace().unwrap_or_default(),
        )
    }

    /// The time left of the timeout.
    pub fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.started.elapsed())
    }
}

/// A build error by its type: content or spec the user must fix stalls, a referenced object
/// not there yet is waited for, a failed read of the cluster is retried.
pub fn build_failed(error: BuildError, requeue_dependency: Duration) -> ReconcileError {
    match error {
        BuildError::Invalid(m) => ReconcileError::stalled(reasons::BUILD_FAILED, m),
        BuildError::Missing(m) => ReconcileError::waiting(reasons::BUILD_FAILED, m, requeue_dependency),
        BuildError::Unavailable(m) => ReconcileError::transient(reasons::BUILD_FAILED, m),
    }
}

impl Reconciler for KustomizationReconciler {
    type Kind = Kustomization;

    async fn apply(
        &self,
        ks: &Kustomization,
        status: &mut KustomizationStatus,
        ctx: &ReconcileContext<Kustomization>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run::new(ks, status, ctx);
        self.validate(&mut run).await?;
        self.find_source(&mut run).await?;
        self.check_dependencies(&mut run).await?;
        self.download(&mut run).await?;
        self.connect(&mut run).await?;
        self.build(&mut run).await?;
        // From here on every outcome, failures too, is recorded in the history of this build.
        run.outcome = async {
            self.apply_objects(&mut run).await?;
            self.prune(&mut run).await?;
            self.wait_healthy(&mut run).await
        }
        .await;
        self.record(&mut run).await?;
        let revision = run.artifact.revision.clone();
        Ok(Success::new(
            reasons::RECONCILIATION_SUCCEEDED,
            format!("Applied revision: {revision}"),
        )
        .with_revision(revision)
        // As Flux's: the event that sets Git commit statuses (github, gitlab, gitea Providers).
        .with_metadata("commit_status", "update"))
    }

    async fn cleanup(
        &self,
        ks: &Kustomization,
        ctx: &ReconcileContext<Kustomization>,
    ) -> Result<(), ReconcileError> {
        self.settings.sources.forget(ks);
        crate::deletion::cleanup(self, ks, ctx).await
    }
}

/// The `output` of Flux's apply log line: each object (`Kind/namespace/name`) with its action,
/// or with `grouped` (the GroupChangeLog gate) the objects listed under each action.
fn change_log<'a>(entries: impl Iterator<Item = (String, &'a str)>, grouped: bool) -> String {
    let output = if grouped {
        let mut groups: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (subject, action) in entries {
            groups.entry(action).or_default().push(subject);
        }
        serde_json::to_string(&groups)
    } else {
        serde_json::to_string(&entries.collect::<std::collections::BTreeMap<_, _>>())
    };
    output.unwrap_or_default()
}

impl KustomizationReconciler {
    /// Flux's log line of an apply: each object with what happened to it, or, with the
    /// GroupChangeLog gate, the objects grouped by what happened (fewer distinct log values).
    fn log_change_set(&self, applied: &[driftless_apply::AppliedObject], changes: &[String], revision: &str) {
        if applied.is_empty() {
            return;
        }
        let changed: std::collections::HashMap<&str, &str> =
            changes.iter().filter_map(|c| c.rsplit_once(' ')).collect();
        let entries = applied.iter().map(|(id, _, _)| {
            let subject = id.display();
            let action = changed.get(subject.as_str()).copied().unwrap_or("unchanged");
            (subject, action)
        });
        let output = change_log(entries, self.settings.group_change_log);
        tracing::info!(output = %output, revision, "server-side apply completed");
    }

    /// An apply error by its type: manifests, rules or rights the user must fix stall, what
    /// the objects need and is not there yet (their namespace, a kind) is waited for, the
    /// apiserver failing is retried.
    fn apply_failed(&self, error: ApplyError) -> ReconcileError {
        let reason = reasons::RECONCILIATION_FAILED;
        match error.failure {
            ApplyFailure::Invalid => ReconcileError::stalled(reason, error.message),
            ApplyFailure::Missing => {
                ReconcileError::waiting(reason, error.message, self.settings.requeue_dependency)
            }
            ApplyFailure::Unavailable => ReconcileError::transient(reason, error.message),
        }
    }

    /// Step 2: invalid health expressions stall before anything else happens.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let exprs = run.ks.spec.health_check_exprs.as_deref().unwrap_or_default();
        run.custom_health = driftless_apply::health::compile(exprs)
            .map_err(|e| ReconcileError::stalled(reasons::INVALID_CEL_EXPRESSION, e))?;
        Ok(())
    }

    /// Step 3: the source's artifact, or a wait for it.
    async fn find_source(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        run.artifact = source::artifact(&run.ctx.client, run.ks, &self.settings).await?;
        let previous = run.ks.status.as_ref();
        run.quiet = previous.and_then(|s| s.last_applied_revision.as_deref())
            == Some(run.artifact.revision.as_str())
            && previous.and_then(|s| s.observed_generation) == run.ks.metadata.generation;
        Ok(())
    }

    /// Step 4: every dependency exists, is Ready at its generation and, when it shares the
    /// source, has applied the same revision.
    async fn check_dependencies(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        source::check_dependencies(
            &run.ctx.client,
            &self.discovery,
            run.ks,
            &run.artifact,
            self.settings.requeue_dependency,
            self.settings.additive_ready_expr,
        )
        .await?;
        run.status.last_attempted_revision = Some(run.artifact.revision.clone());
        Ok(())
    }

    /// Step 5: download, digest check and safe extraction; `path` must stay inside the artifact.
    async fn download(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        run.progress("Fetching manifests").await;
        let workdir = tempfile::tempdir()
            .map_err(|e| ReconcileError::transient(reasons::ARTIFACT_FAILED, e.to_string()))?;
        self.fetcher
            .fetch(&run.artifact.url, &run.artifact.digest, workdir.path())
            .await
            .map_err(|e| match e {
                FetchError::NotFound(_) => ReconcileError::waiting(
                    reasons::ARTIFACT_FAILED,
                    e.to_string(),
                    self.settings.requeue_dependency,
                ),
                other => ReconcileError::transient(reasons::ARTIFACT_FAILED, other.to_string()),
            })?;
        let path = run.ks.spec.path.clone().unwrap_or_default();
        run.dir = driftless_build::generator::secure_join(workdir.path(), &path)
            .map_err(|e| ReconcileError::stalled(reasons::ARTIFACT_FAILED, e.to_string()))?;
        run.workdir = Some(workdir);
        Ok(())
    }

    /// Step 6: the client the objects are applied with.
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        run.client = self.client_for(run.ks, &run.ctx.client).await?;
        Ok(())
    }

    /// Step 7: generate and build, SOPS decryption, postBuild substitution.
    async fn build(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        run.progress("Building manifests").await;
        let root = run
            .workdir
            .as_ref()
            .map(|w| w.path().to_path_buf())
            .unwrap_or_default();
        run.objects = self
            .build_objects(run.ks, &run.ctx.client, &root, &run.dir, run.remaining())
            .await?;
        run.digest = crate::history::digest(&run.objects);
        Ok(())
    }

    /// Step 8: ownership labels, then the stages in order, each validated before it is written.
    async fn apply_objects(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        run.progress("Detecting drift").await;
        let owner = run.owner();
        let mut objects = std::mem::take(&mut run.objects);
        for object in objects.iter_mut() {
            owner.label(object);
        }
        let ignore: Vec<DriftIgnore> = run
            .ks
            .spec
            .ignore
            .iter()
            .flatten()
            .map(DriftIgnore::from)
            .collect();
        let options = ApplyOptions {
            manager: FIELD_MANAGER,
            group: GROUP,
            force: run.ks.spec.force == Some(true),
            ignore: &ignore,
            dry_run: false,
            concurrency: self.settings.concurrent_ssa,
            custom_stage: &self.settings.custom_stage,
            override_managers: &self.settings.override_managers,
            migrate_api_version: self.settings.migrate_api_version,
        };
        let (applied, changes, current) =
            driftless_apply::apply_staged(&run.client, &self.discovery, objects, &options, &self.observed)
                .await
                .map_err(|e| self.apply_failed(e))?;
        self.log_change_set(&applied, &changes, &run.artifact.revision);
        run.applied = applied;
        run.drifted = !changes.is_empty();
        run.changes = changes;
        run.current = current;
        Ok(())
    }

    /// Step 9: the new inventory; stale entries this Kustomization owns are deleted when
    /// `prune` is on, and those that could not be stay in it. An event lists the changes.
    async fn prune(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let mut inventory =
            driftless_apply::inventory(run.applied.iter().map(|(id, v, _)| (id.clone(), v.clone())));
        let old = run.ks.status.as_ref().and_then(|s| s.inventory.as_ref());
        let stale = driftless_apply::stale_entries(old, &inventory);
        let mut errors = Vec::new();
        if run.ks.spec.prune && !stale.is_empty() {
            let pruned = driftless_apply::prune(&run.client, &self.discovery, &stale, &run.owner()).await;
            inventory.entries.extend(pruned.kept);
            inventory.entries.sort_by(|a, b| a.id.cmp(&b.id));
            run.changes.extend(pruned.deleted);
            errors = pruned.errors;
        }
        run.status.inventory = Some(inventory);
        if !run.changes.is_empty() {
            let note = run.changes.join("\n");
            run.progress_event(&note).await;
        }
        if !errors.is_empty() {
            return Err(ReconcileError::transient(
                reasons::PRUNE_FAILED,
                errors.join("\n"),
            ));
        }
        Ok(())
    }

    /// Step 10: with `wait` every applied object, else the listed health checks, must become
    /// healthy within the timeout (see [`crate::health`]).
    async fn wait_healthy(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        crate::health::wait_healthy(self, run).await
    }

    /// Step 11: the history entry of this build (failures of steps 8–10 too), then the applied
    /// revisions when it succeeded.
    async fn record(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let revision = run.artifact.revision.clone();
        let origin_revision = run.origin_revision().map(str::to_string);
        let mut history = run.status.history.clone().unwrap_or_default();
        let mut metadata = BTreeMap::from([("revision".to_string(), revision.clone())]);
        if let Some(origin) = &origin_revision {
            metadata.insert("originRevision".into(), origin.clone());
        }
        let outcome_reason = match &run.outcome {
            Ok(()) => reasons::RECONCILIATION_SUCCEEDED,
            Err(e) => e.reason.as_str(),
        };
        crate::history::upsert(
            &mut history,
            &run.digest,
            outcome_reason,
            run.started.elapsed(),
            metadata,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        );
        run.status.history = Some(history);
        std::mem::replace(&mut run.outcome, Ok(()))?;
        run.status.last_applied_revision = Some(revision);
        run.status.last_applied_origin_revision = origin_revision;
        Ok(())
    }
}
/// A Kustomization's timeout as Flux's `GetTimeout`: `spec.timeout`, else the interval less
/// 30 s, and never under 30 s.
pub fn timeout(ks: &Kustomization) -> Duration {
    const FLOOR: Duration = Duration::from_secs(30);
    let interval = duration::parse(&ks.spec.interval).unwrap_or(Duration::from_secs(300));
    timeout_of(ks.spec.timeout.as_deref(), interval.saturating_sub(FLOOR)).max(FLOOR)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_change_log_lists_objects_or_groups_them_by_action() {
        let entries = || {
            [
                ("ConfigMap/ns/a".to_string(), "created"),
                ("ConfigMap/ns/b".to_string(), "unchanged"),
                ("Deployment/ns/c".to_string(), "created"),
            ]
            .into_iter()
        };
        assert_eq!(
            change_log(entries(), false),
            r#"{"ConfigMap/ns/a":"created","ConfigMap/ns/b":"unchanged","Deployment/ns/c":"created"}"#
        );
        assert_eq!(
            change_log(entries(), true),
            r#"{"created":["ConfigMap/ns/a","Deployment/ns/c"],"unchanged":["ConfigMap/ns/b"]}"#
        );
    }

    fn ks(interval: &str, timeout: Option<&str>) -> Kustomization {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "x"},
            "spec": {"interval": interval, "timeout": timeout, "prune": true,
                     "sourceRef": {"kind": "GitRepository", "name": "s"}},
        }))
        .unwrap()
    }

    #[test]
    fn timeouts_default_as_flux() {
        assert_eq!(timeout(&ks("10m", None)), Duration::from_secs(570));
        assert_eq!(timeout(&ks("40s", None)), Duration::from_secs(30));
        assert_eq!(timeout(&ks("10m", Some("2m"))), Duration::from_secs(120));
        assert_eq!(timeout(&ks("10m", Some("5s"))), Duration::from_secs(30));
    }
}
