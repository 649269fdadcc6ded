//! Step 10: health checks. With `wait` every applied object, else the listed `healthChecks`,
//! must become healthy within the timeout (kstatus and CEL rules of `driftless-apply`); the
//! `Healthy` condition says how it went, and a new source revision cancels the wait (Flux's
//! `CancelHealthCheckOnNewRevision`) so that a fix is applied at once.

use driftless_api::kustomize::KustomizationStatus;
use driftless_api::meta::{ReconcileStatus, condition_types::HEALTHY, reasons};
use driftless_apply::{HealthWait, ObjectId, Unhealthy, group_version};
use driftless_runtime::conditions::{self, Status};
use driftless_runtime::duration;
use driftless_runtime::reconcile::ReconcileError;
use kube::ResourceExt;

use crate::reconciler::{KustomizationReconciler, Run};
use crate::source;

/// The objects whose health is checked, by id and version.
fn targets(run: &Run<'_>) -> Vec<(ObjectId, String)> {
    if run.ks.spec.wait == Some(true) {
        let own = (run.ks.namespace().unwrap_or_default(), run.ks.name_any());
        return run
            .applied
            .iter()
            .filter(|(id, _, object)| {
                // As Flux: a Kustomization never waits on itself (flux-system applies its own
                // object), and a Job with a TTL may be gone before it is seen complete.
                let itself = id.kind == "Kustomization"
                    && id.group == "kustomize.toolkit.fluxcd.io"
                    && (id.namespace.as_str(), id.name.as_str()) == (own.0.as_str(), own.1.as_str());
                let ttl_job = id.kind == "Job"
                    && id.group == "batch"
                    && object
                        .pointer("/spec/ttlSecondsAfterFinished")
                        .is_some_and(|t| !t.is_null());
                !itself && !ttl_job
            })
            .map(|(id, v, _)| (id.clone(), v.clone()))
            .collect();
    }
    let own = run.ks.namespace().unwrap_or_default();
    run.ks
        .spec
        .health_checks
        .iter()
        .flatten()
        .map(|h| {
            let (group, version) = group_version(h.api_version.as_deref().unwrap_or_default());
            let namespace = h
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| own.clone());
            let id = ObjectId {
                namespace,
                name: h.name.clone(),
                group,
                kind: h.kind.clone(),
            };
            (id, version)
        })
        .collect()
}

fn set_healthy(
    status: &mut KustomizationStatus,
    state: Status,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    conditions::set(
        status.conditions_mut(),
        HEALTHY,
        state,
        reason,
        message,
        generation,
    );
}

pub(crate) async fn wait_healthy(
    reconciler: &KustomizationReconciler,
    run: &mut Run<'_>,
) -> Result<(), ReconcileError> {
    let generation = run.ks.metadata.generation;
    let targets = targets(run);
    if targets.is_empty() {
        conditions::delete(run.status.conditions_mut(), HEALTHY);
        return Ok(());
    }
    let timeout = run.remaining();
    let started = std::time::Instant::now();
    let previous = run
        .ks
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let previous_healthy = conditions::get(previous, HEALTHY).filter(|c| c.status == "True");
    if !run.quiet {
        set_healthy(
            run.status,
            Status::Unknown,
            reasons::PROGRESSING,
            "Running health checks",
            generation,
        );
        let message = format!(
            "Running health checks for revision {} with a timeout of {}",
            run.artifact.revision,
            duration::format(timeout)
        );
        run.ctx.progress(run.ks, run.status, &message).await;
    }
    let wait = HealthWait {
        client: &run.client,
        discovery: &reconciler.discovery,
        observed: &reconciler.observed,
        custom: &run.custom_health,
        fail_fast: reconciler.settings.fail_fast,
    };
    let (ks, own_client, revision) = (run.ks, &run.ctx.client, run.artifact.revision.as_str());
    let cancel = reconciler.settings.cancel_health_on_new_revision;
    let new_revision = || async move {
        if !cancel {
            return None;
        }
        let latest = source::latest_artifact(own_client, ks, &reconciler.settings)
            .await
            .ok()?;
        (latest.revision != revision).then(|| {
            format!(
                "health check canceled: new revision '{}' is available",
                latest.revision
            )
        })
    };
    let result = wait
        .until_healthy(&targets, &run.current, timeout, new_revision)
        .await;
    match result {
        Ok(()) => {
            // As Flux: an event when the objects were not healthy before, or a new revision
            // changed them. The message says how long the checks took when it is news; a
            // recheck keeps it, so that a periodic reconcile has no status to write.
            let new_revision = run
                .ks
                .status
                .as_ref()
                .and_then(|s| s.last_applied_revision.as_deref())
                != Some(run.artifact.revision.as_str());
            let news = previous_healthy.is_none() || (new_revision && run.drifted);
            let message = match previous_healthy {
                Some(c) if !news => c.message.clone(),
                _ => format!("Health check passed in {}", duration::format(started.elapsed())),
            };
            set_healthy(run.status, Status::True, reasons::SUCCEEDED, &message, generation);
            if news {
                run.progress_event(&message).await;
            }
            Ok(())
        }
        Err(Unhealthy::Canceled(message)) => {
            set_healthy(
                run.status,
                Status::Unknown,
                reasons::HEALTH_CHECK_CANCELED,
                &message,
                generation,
            );
            Err(ReconcileError::transient(reasons::HEALTH_CHECK_CANCELED, message))
        }
        Err(Unhealthy::Failed(message) | Unhealthy::Timeout(message)) => {
            set_healthy(
                run.status,
                Status::False,
                reasons::HEALTH_CHECK_FAILED,
                &message,
                generation,
            );
            Err(ReconcileError::transient(reasons::HEALTH_CHECK_FAILED, message))
        }
    }
}
