//! Steps 3 and 4: the source a Kustomization reads, its artifact, and the Kustomizations it
//! depends on.

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::{Artifact, reasons};
use driftless_runtime::reconcile::ReconcileError;
use kube::{Client, ResourceExt};
use std::time::Duration;

/// The namespace and name of the referenced source.
pub fn source_key(ks: &Kustomization) -> (String, String, String) {
    let r = &ks.spec.source_ref;
    let namespace = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ks.namespace().unwrap_or_default());
    (r.kind.clone(), namespace, r.name.clone())
}

/// Finds the artifact of the source, or says why there is none; it is remembered as the one
/// this Kustomization applies.
pub async fn artifact(
    client: &Client,
    ks: &Kustomization,
    settings: &crate::reconciler::Settings,
) -> Result<Artifact, ReconcileError> {
    let (kind, namespace, name) = allowed_source(ks, settings)?;
    settings
        .sources
        .artifact_for(ks, client, &kind, &namespace, &name, settings.requeue_dependency)
        .await
}

/// The source's artifact as it is now (has a newer one come while this one is applied?).
pub async fn latest_artifact(
    client: &Client,
    ks: &Kustomization,
    settings: &crate::reconciler::Settings,
) -> Result<Artifact, ReconcileError> {
    let (kind, namespace, name) = allowed_source(ks, settings)?;
    settings
        .sources
        .latest(client, &kind, &namespace, &name, settings.requeue_dependency)
        .await
}

/// The source's key, when this Kustomization may read it.
fn allowed_source(
    ks: &Kustomization,
    settings: &crate::reconciler::Settings,
) -> Result<(String, String, String), ReconcileError> {
    let (kind, namespace, name) = source_key(ks);
    let own = ks.namespace().unwrap_or_default();
    driftless_runtime::acl::check_cross_namespace(
        settings.no_cross_namespace_refs,
        driftless_runtime::acl::Wording::CantAccess,
        &own,
        &kind,
        &namespace,
        &name,
    )?;
    driftless_runtime::acl::check_external_artifact(
        settings.allow_external_artifact,
        &kind,
        &namespace,
        &name,
    )?;
    Ok((kind, namespace, name))
}

/// Every dependency exists, is Ready at its generation and, when it shares the source, has
/// applied the same revision; else the Kustomization waits `requeue_dependency`.
pub async fn check_dependencies(
    client: &Client,
    discovery: &driftless_apply::Discovery,
    ks: &Kustomization,
    artifact: &Artifact,
    requeue_dependency: Duration,
    additive_ready_expr: bool,
) -> Result<(), ReconcileError> {
    use driftless_apply::dependency::{self, DependencyFailure, Dependent};
    let object = serde_json::to_value(ks).unwrap_or_default();
    let namespace = ks.namespace().unwrap_or_default();
    let dependent = Dependent {
        object: &object,
        kind: "Kustomization",
        api_version: "kustomize.toolkit.fluxcd.io/v1",
        namespace: &namespace,
        additive_ready_expr,
    };
    let own_source = source_key(ks);
    // A dependency built from the same source must have applied this revision.
    let same_revision = |dep: &serde_json::Value| {
        let dep: Kustomization = serde_json::from_value(dep.clone()).ok()?;
        let applied = dep
            .status
            .as_ref()
            .and_then(|s| s.last_applied_revision.as_deref());
        (source_key(&dep) == own_source && applied != Some(artifact.revision.as_str()))
            .then(|| "revision is not up to date".to_string())
    };
    let dependencies = ks.spec.depends_on.as_deref().unwrap_or_default();
    dependency::check_all(client, discovery, &dependent, dependencies, same_revision)
        .await
        .map_err(|failure| match failure {
            DependencyFailure::NotReady(m) => {
                ReconcileError::waiting(reasons::DEPENDENCY_NOT_READY, m, requeue_dependency)
            }
            DependencyFailure::Invalid(m) => ReconcileError::stalled(reasons::DEPENDENCY_NOT_READY, m),
        })?;
    Ok(())
}
