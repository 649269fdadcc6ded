//! ImageRepository: list an image's tags in its registry, drop the excluded ones, keep them in
//! the [`TagStore`] and report the scan in `status.lastScanResult`.
//!
//! A failed scan keeps the last good result in status (and the stored tags), so the policies
//! built on it keep their choice.

use crate::{image::ImageName, tags};
use driftless_api::{
    image::{ImageRepository, ImageRepositoryStatus, ScanResult},
    meta::{REQUESTED_AT_ANNOTATION, reasons as meta_reasons},
};
use driftless_artifact::{access::RegistryAccess, registry::Puller};
use driftless_runtime::{
    object::ToolkitObject,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
    work::{blocking, timeout_of},
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::{sync::Arc, time::Duration};

/// Condition reasons of ImageRepositories (Flux's).
pub mod reasons {
    /// `spec.image` is not an image repository name.
    pub const IMAGE_URL_INVALID: &str = "ImageURLInvalid";
    /// Credentials or TLS settings could not be built from the Secrets.
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// Listing the tags or storing them failed.
    pub const READ_OPERATION_FAILED: &str = "ReadOperationFailed";
}

/// The default `spec.exclusionList`: cosign signature tags.
pub const DEFAULT_EXCLUSION: &str = "^.*\\.sig$";
/// How many tags `status.lastScanResult.latestTags` lists.
const LATEST_TAGS: usize = 10;

/// Reconciles ImageRepositories: steps 1–4 of [`Reconciler::apply`].
pub struct ImageRepositoryReconciler {
    tags: Arc<tags::TagStore>,
}

impl ImageRepositoryReconciler {
    /// A reconciler keeping tags in `tags`.
    pub fn new(tags: Arc<tags::TagStore>) -> Self {
        Self { tags }
    }
}

/// What one reconcile carries from step to step.
struct Run<'a> {
    obj: &'a ImageRepository,
    status: &'a mut ImageRepositoryStatus,
    ctx: &'a ReconcileContext<ImageRepository>,
    /// Step 1: the parsed image and the exclusion patterns.
    image: Option<ImageName>,
    exclusions: Vec<regex::Regex>,
    exclusion_list: Vec<String>,
    /// Step 2: why this reconcile scans, None when the last scan still holds; then when the
    /// next scan is due.
    scan_reason: Option<&'static str>,
    next_scan: Option<Duration>,
    /// Step 3: the registry client.
    registry: Option<Puller>,
}

impl Run<'_> {
    fn image(&self) -> Result<&ImageName, ReconcileError> {
        self.image
            .as_ref()
            .ok_or_else(|| ReconcileError::transient(meta_reasons::FAILED, "image not validated"))
    }
}

impl ImageRepositoryReconciler {
    /// Step 1: `spec.image` is a repository name without scheme, tag or digest; the provider is
    /// generic; every exclusion pattern compiles. Each failure stalls.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        let image = ImageName::parse(&spec.image)
            .map_err(|e| ReconcileError::stalled(reasons::IMAGE_URL_INVALID, e))?;
        if let Some(provider) = spec.provider.as_deref().filter(|p| *p != "generic") {
            return Err(ReconcileError::stalled(
                meta_reasons::FAILED,
                format!(
                    "provider '{provider}' is not supported: cloud workload identity is not available; \
                     use 'generic' with a secretRef or serviceAccountName"
                ),
            ));
        }
        run.exclusion_list = match &spec.exclusion_list {
            Some(list) if !list.is_empty() => list.clone(),
            _ => vec![DEFAULT_EXCLUSION.to_string()],
        };
        run.exclusions = run
            .exclusion_list
            .iter()
            .map(|p| {
                regex::Regex::new(p).map_err(|e| {
                    ReconcileError::stalled(meta_reasons::FAILED, format!("failed to compile regex {p}: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        run.image = Some(image);
        Ok(())
    }

    /// Step 2: whether to scan now, in Flux's order: first scan, a reconcile request, a new
    /// image name, a new exclusion list, tags missing from the store, the interval elapsed.
    async fn plan(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let canonical = run.image()?.canonical();
        let status = &*run.status;
        let requested = run.obj.annotations().get(REQUESTED_AT_ANNOTATION);
        let stored = {
            let store = self.tags.clone();
            let image = canonical.clone();
            blocking(Duration::from_secs(30), move || {
                Ok::<_, ()>(store.contains(&image))
            })
            .await
            .unwrap_or(false)
        };
        let last_scan = status
            .last_scan_result
            .as_ref()
            .and_then(|r| r.scan_time.as_ref())
            .map(|t| t.0);
        let elapsed = last_scan.map(|t| Timestamp::now().duration_since(t));
        let interval = run.obj.interval();
        run.scan_reason = if status.last_scan_result.is_none() {
            Some("first scan")
        } else if requested.is_some()
            && requested.map(String::as_str) != status.last_handled_reconcile_at.as_deref()
        {
            Some("reconcile requested")
        } else if status.canonical_image_name.as_deref() != Some(canonical.as_str()) {
            Some("new image name")
        } else if status.observed_exclusion_list.as_ref() != Some(&run.exclusion_list) {
            Some("updated exclusion list")
        } else if !stored {
            Some("no tags in database")
        } else if elapsed.is_none_or(|e| e.as_secs_f64() + 1.0 >= interval.as_secs_f64()) {
            Some("triggered by interval")
        } else {
            // Flux's requeue: what is left of the interval (after a restart, not a whole one).
            let elapsed = elapsed
                .and_then(|e| Duration::try_from(e).ok())
                .unwrap_or_default();
            run.next_scan = Some(interval.saturating_sub(elapsed));
            None
        };
        Ok(())
    }

    /// Step 3: the registry client, from `secretRef`, the ServiceAccount's image pull secrets,
    /// `certSecretRef`, `proxySecretRef` and `insecure` (only when scanning).
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.scan_reason.is_none() {
            return Ok(());
        }
        let ns = run.obj.namespace().unwrap_or_default();
        let registry = registry_access(run.obj, &ns)
            .puller(&run.ctx.client, &run.image()?.pull_name())
            .await
            .map_err(|p| {
                p.map_message(|m| format!("failed to configure authentication options: {m}"))
                    .into_error(reasons::AUTHENTICATION_FAILED)
            })?;
        run.registry = Some(registry);
        Ok(())
    }

    /// Step 4: lists the tags (following pagination, within `spec.timeout`), drops the excluded,
    /// sorts them descending, stores them and records the scan. A failure keeps the last scan.
    async fn scan(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let (Some(reason), Some(registry)) = (run.scan_reason, run.registry.as_ref()) else {
            return Ok(());
        };
        run.ctx
            .progress(run.obj, run.status, &format!("scanning: {reason}"))
            .await;
        let failed = |m: String| {
            ReconcileError::transient(reasons::READ_OPERATION_FAILED, format!("scan failed: {m}"))
        };
        let timeout =
            timeout_of(run.obj.spec.timeout.as_deref(), run.obj.interval()).max(Duration::from_secs(1));
        let listed = tokio::time::timeout(timeout, registry.tags())
            .await
            .map_err(|_| failed(format!("timed out after {timeout:?} listing tags")))?
            .map_err(failed)?;
        let mut tags: Vec<String> = listed
            .into_iter()
            .filter(|t| !run.exclusions.iter().any(|re| re.is_match(t)))
            .collect();
        tags::sort_descending(&mut tags);
        tags.dedup();
        let canonical = run.image()?.canonical();
        let revision = tags::revision(&tags);
        let latest: Vec<String> = tags.iter().take(LATEST_TAGS).cloned().collect();
        let count = tags.len();
        let store = self.tags.clone();
        let image = canonical.clone();
        blocking(Duration::from_secs(60), move || store.write(&image, &tags))
            .await
            .map_err(|e| failed(format!("storing tags: {e}")))?;
        run.status.last_scan_result = Some(ScanResult {
            revision: Some(revision),
            tag_count: i64::try_from(count).unwrap_or(i64::MAX),
            scan_time: Some(driftless_runtime::conditions::now()),
            latest_tags: (!latest.is_empty()).then_some(latest),
        });
        run.status.canonical_image_name = Some(canonical);
        run.status.observed_exclusion_list = Some(run.exclusion_list.clone());
        Ok(())
    }
}

/// How `repo` says to reach its registry (`namespace` is the repository's).
pub fn registry_access<'a>(repo: &'a ImageRepository, namespace: &'a str) -> RegistryAccess<'a> {
    let spec = &repo.spec;
    RegistryAccess {
        namespace,
        secret_ref: spec.secret_ref.as_ref().map(|r| r.name.as_str()),
        service_account_name: spec.service_account_name.as_deref(),
        cert_secret_ref: spec.cert_secret_ref.as_ref().map(|r| r.name.as_str()),
        proxy_secret_ref: spec.proxy_secret_ref.as_ref().map(|r| r.name.as_str()),
        insecure: spec.insecure.unwrap_or(false),
    }
}

impl Reconciler for ImageRepositoryReconciler {
    type Kind = ImageRepository;

    /// 1. `validate`: image name, provider, exclusion patterns.
    /// 2. `plan`: whether this reconcile scans.
    /// 3. `connect`: the registry client from the Secrets.
    /// 4. `scan`: list, filter, store and record the tags.
    async fn apply(
        &self,
        obj: &ImageRepository,
        status: &mut ImageRepositoryStatus,
        ctx: &ReconcileContext<ImageRepository>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            image: None,
            exclusions: Vec::new(),
            exclusion_list: Vec::new(),
            scan_reason: None,
            next_scan: None,
            registry: None,
        };
        self.validate(&mut run).await?;
        self.plan(&mut run).await?;
        self.connect(&mut run).await?;
        self.scan(&mut run).await?;
        let result = run.status.last_scan_result.clone().unwrap_or_default();
        let revision = result.revision.unwrap_or_default();
        let success = Success::new(
            meta_reasons::SUCCEEDED,
            format!(
                "successful scan: found {} tags with checksum {revision}",
                result.tag_count
            ),
        );
        Ok(match run.next_scan {
            Some(after) => success.with_requeue_after(after),
            None => success,
        })
    }

    async fn cleanup(
        &self,
        _obj: &ImageRepository,
        _ctx: &ReconcileContext<ImageRepository>,
    ) -> Result<(), ReconcileError> {
        // Tags are kept by image name and may serve another ImageRepository of the same image.
        Ok(())
    }
}
