//! Step 2: the source a Kustomization reads, and its artifact.

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::Artifact;
use driftless_api::meta::reasons::{ACCESS_DENIED, ARTIFACT_FAILED};
use driftless_api::source::{Bucket, ExternalArtifact, GitRepository, OCIRepository};
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
    let artifact = match kind.as_str() {
        "GitRepository" => get::<GitRepository>(client, &namespace, &name)
            .await?
            .and_then(|s| s.status.and_then(|s| s.artifact)),
        "OCIRepository" => get::<OCIRepository>(client, &namespace, &name)
            .await?
            .and_then(|s| s.status.and_then(|s| s.artifact)),
        "Bucket" => get::<Bucket>(client, &namespace, &name)
            .await?
            .and_then(|s| s.status.and_then(|s| s.artifact)),
        "ExternalArtifact" => get::<ExternalArtifact>(client, &namespace, &name)
            .await?
            .and_then(|s| s.status.and_then(|s| s.artifact)),
        other => {
            return Err(ReconcileError::stalled(
                ARTIFACT_FAILED,
                format!("source kind '{other}' is not supported"),
            ));
        }
    };
    artifact.ok_or_else(|| {
        ReconcileError::waiting(
            ARTIFACT_FAILED,
            format!(
                "Source artifact not found for {kind}/{namespace}/{name}, retrying in {}s",
                requeue_dependency.as_secs()
            ),
            requeue_dependency,
        )
    })
}

/// A missing source is waited for, not a failure of the spec: it may be created later.
async fn get<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>, ReconcileError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(source)) => Ok(Some(source)),
        Ok(None) => Err(ReconcileError::waiting(
            ARTIFACT_FAILED,
            format!("Source '{}/{namespace}/{name}' not found", K::kind(&())),
            Duration::from_secs(30),
        )),
        Err(e) => Err(ReconcileError::transient(
            ARTIFACT_FAILED,
            format!("failed to get source: {e}"),
        )),
    }
}
