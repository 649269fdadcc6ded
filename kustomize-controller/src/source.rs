//! Steps 3 and 4: the source a Kustomization reads, its artifact, and the Kustomizations it
//! depends on.

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::reasons::ACCESS_DENIED;
use driftless_api::meta::{Artifact, condition_types::READY, reasons};
use driftless_runtime::reconcile::ReconcileError;
use kube::{Api, Client, ResourceExt};
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

/// Finds the artifact of the source, or says why there is none.
pub async fn artifact(
    client: &Client,
    ks: &Kustomization,
    no_cross_namespace_refs: bool,
    requeue_dependency: Duration,
) -> Result<Artifact, ReconcileError> {
    let (kind, namespace, name) = source_key(ks);
    if no_cross_namespace_refs && Some(namespace.as_str()) != ks.namespace().as_deref() {
        return Err(ReconcileError::stalled(
            ACCESS_DENIED,
            format!("cannot access {kind}/{namespace}/{name}, cross-namespace references have been disabled"),
        ));
    }
    driftless_runtime::sources::artifact(client, &kind, &namespace, &name, requeue_dependency).await
}

/// Every dependency exists, is Ready at its generation and, when it shares the source, has
/// applied the same revision; else the Kustomization waits `requeue_dependency`.
pub async fn check_dependencies(
    client: &Client,
    discovery: &driftless_apply::Discovery,
    ks: &Kustomization,
    artifact: &Artifact,
    requeue_dependency: Duration,
) -> Result<(), ReconcileError> {
    use driftless_apply::dependency::{self, DependencyError};
    let own_namespace = ks.namespace().unwrap_or_default();
    for dep in ks.spec.depends_on.iter().flatten() {
        let namespace = dep
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| own_namespace.clone());
        let not_ready = |why: &str| {
            ReconcileError::waiting(
                reasons::DEPENDENCY_NOT_READY,
                format!("dependency '{namespace}/{}' {why}", dep.name),
                requeue_dependency,
            )
        };
        // Beyond Flux: a dependency of another kind is ready by kstatus.
        if let Some(kind) = dependency::other_kind(dep, "Kustomization") {
            match dependency::state(client, discovery, dep, kind, &namespace).await {
                Ok(state) => match state.wait_reason() {
                    None => continue,
                    Some(why) => return Err(not_ready(&why)),
                },
                Err(DependencyError::Invalid(m)) => {
                    return Err(ReconcileError::stalled(reasons::DEPENDENCY_NOT_READY, m));
                }
                Err(DependencyError::Unavailable(m)) => return Err(not_ready(&m)),
            }
        }
        let api: Api<Kustomization> = Api::namespaced(client.clone(), &namespace);
        let found = api.get_opt(&dep.name).await.map_err(|e| {
            ReconcileError::transient(
                reasons::DEPENDENCY_NOT_READY,
                format!("failed to get dependency: {e}"),
            )
        })?;
        let Some(found) = found else {
            return Err(not_ready("not found"));
        };
        let dep_status = found.status.clone().unwrap_or_default();
        let ready = dep_status
            .conditions
            .as_deref()
            .is_some_and(|c| driftless_runtime::conditions::is_true(c, READY));
        if found.metadata.generation != dep_status.observed_generation || !ready {
            return Err(not_ready("is not ready"));
        }
        if source_key(&found) == source_key(ks)
            && dep_status.last_applied_revision.as_deref() != Some(&artifact.revision)
        {
            return Err(not_ready("revision is not up to date"));
        }
    }
    Ok(())
}
