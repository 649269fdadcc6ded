//! Deletion of a Kustomization, by its `deletionPolicy`: `MirrorPrune` (the default) deletes the
//! inventory when `prune` is on, `Delete` always, `WaitForTermination` deletes and waits until
//! the objects are gone, `Orphan` leaves everything.

use std::time::Instant;

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::reasons;
use driftless_apply::ObjectId;
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::wait::{Condition, conditions};

use crate::reconciler::KustomizationReconciler;

pub(crate) async fn cleanup(
    reconciler: &KustomizationReconciler,
    ks: &Kustomization,
    ctx: &ReconcileContext<Kustomization>,
) -> Result<(), ReconcileError> {
    let policy = ks.spec.deletion_policy.as_deref().unwrap_or("MirrorPrune");
    let delete = match policy {
        "Delete" | "WaitForTermination" => true,
        "Orphan" => false,
        _ => ks.spec.prune,
    };
    if !delete || ks.spec.suspend == Some(true) {
        return Ok(());
    }
    let Some(inventory) = ks.status.as_ref().and_then(|s| s.inventory.as_ref()) else {
        return Ok(());
    };
    let client = reconciler.client_for(ks, &ctx.client).await?;
    let owner = driftless_apply::Owner::new(
        driftless_api::kustomize::GROUP,
        &ks.name_any(),
        &ks.namespace().unwrap_or_default(),
    );
    let pruned = driftless_apply::prune(&client, &reconciler.discovery, &inventory.entries, &owner).await;
    if !pruned.kept.is_empty() {
        return Err(ReconcileError::transient(
            reasons::PRUNE_FAILED,
            pruned.errors.join("\n"),
        ));
    }
    if policy != "WaitForTermination" {
        return Ok(());
    }
    let timeout = crate::reconciler::timeout(ks);
    let deadline = Instant::now() + timeout;
    for entry in &inventory.entries {
        let Some(id) = ObjectId::parse(&entry.id) else {
            continue;
        };
        let Ok((resource, namespaced)) = reconciler
            .discovery
            .resolve(&client, &id.group, &entry.v, &id.kind)
            .await
        else {
            continue;
        };
        let api = driftless_apply::api(&client, &resource, namespaced, &id.namespace);
        let Ok(Some(object)) = api.get_opt(&id.name).await else {
            continue;
        };
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let gone = move |o: Option<&DynamicObject>| conditions::is_deleted(&uid).matches_object(o);
        let left = deadline.saturating_duration_since(Instant::now());
        if !driftless_apply::wait::until(api, &id.name, gone, left).await {
            return Err(ReconcileError::transient(
                reasons::PRUNE_FAILED,
                format!("timeout waiting for {} to be terminated", id.display()),
            ));
        }
    }
    Ok(())
}
