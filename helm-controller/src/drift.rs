//! Drift detection (`driftDetection.mode`): the deployed revision's manifest is dry-run applied
//! through the shared apply engine (field manager `helm-controller`, `ignore` rules honoured)
//! and compared with the cluster. `warn` reports what drifted (the `Drifted` condition and a
//! Warning event); `enabled` also corrects it by applying those objects.

use driftless_api::helm::{FIELD_MANAGER, GROUP, condition_types, reasons as helm_reasons};
use driftless_apply::{ApplyFailure, ApplyOptions, DriftIgnore};
use driftless_runtime::events::EventType;
use driftless_runtime::reconcile::ReconcileError;
use serde_json::Value;

use crate::reconciler::{HelmReleaseReconciler, Run};
use crate::release;

pub async fn detect(r: &HelmReleaseReconciler, run: &mut Run<'_>) -> Result<(), ReconcileError> {
    let spec = run.hr.spec.drift_detection.clone().unwrap_or_default();
    let mode = spec.mode.as_deref().unwrap_or("disabled");
    if mode == "disabled" {
        if let Some(conds) = run.status.conditions.as_mut() {
            driftless_runtime::conditions::delete(conds, condition_types::DRIFTED);
        }
        return Ok(());
    }
    let Some(deployed) = run.releases.first().cloned() else {
        return Ok(());
    };
    let mut objects = release::manifest_objects(&deployed.manifest)
        .map_err(|m| ReconcileError::transient(helm_reasons::INVENTORY_BUILD_FAILED, m))?;
    // Helm creates namespaced objects without a namespace in the release namespace; the
    // engine drops the namespace of cluster-scoped kinds.
    for object in objects.iter_mut() {
        if object.pointer("/metadata/namespace").is_none()
            && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            metadata.insert("namespace".into(), Value::String(deployed.namespace.clone()));
        }
    }
    let ignore: Vec<DriftIgnore> = spec.ignore.iter().flatten().map(DriftIgnore::from).collect();
    let options = ApplyOptions {
        manager: FIELD_MANAGER,
        group: GROUP,
        force: false,
        ignore: &ignore,
        dry_run: mode != "enabled",
        ..Default::default()
    };
    let (_, changes, _) =
        driftless_apply::apply_staged(&run.client, &r.discovery, objects, &options, &r.observed)
            .await
            .map_err(|e| match e.failure {
                ApplyFailure::Invalid => ReconcileError::stalled(helm_reasons::DRIFT_DETECTED, e.message),
                _ => ReconcileError::transient(helm_reasons::DRIFT_DETECTED, e.message),
            })?;
    let release = deployed.full_name();
    if changes.is_empty() {
        run.condition(
            condition_types::DRIFTED,
            false,
            helm_reasons::NO_DRIFT_DETECTED,
            &format!("No drift detected for release {release}"),
        );
        return Ok(());
    }
    let list = changes.join("\n");
    if mode == "enabled" {
        let message = format!("Cluster state of release {release} has been corrected:\n{list}");
        run.event(EventType::Warning, helm_reasons::DRIFT_DETECTED, &message)
            .await;
        run.condition(
            condition_types::DRIFTED,
            false,
            helm_reasons::NO_DRIFT_DETECTED,
            &format!("Drift corrected for release {release}"),
        );
    } else {
        let message =
            format!("Cluster state of release {release} has drifted from the desired state:\n{list}");
        run.event(EventType::Warning, helm_reasons::DRIFT_DETECTED, &message)
            .await;
        run.condition(
            condition_types::DRIFTED,
            true,
            helm_reasons::DRIFT_DETECTED,
            &message,
        );
    }
    Ok(())
}
