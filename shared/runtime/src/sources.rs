//! The artifact of a source object, as every consumer (Kustomizations, HelmReleases) looks it
//! up: a missing source or artifact is waited for, a kind the consumer cannot read stalls.

use driftless_api::meta::Artifact;
use driftless_api::meta::reasons::ARTIFACT_FAILED;
use driftless_api::source::{Bucket, ExternalArtifact, GitRepository, HelmChart, OCIRepository};
use kube::{Api, Client};
use std::time::Duration;

use crate::reconcile::ReconcileError;

/// The artifact of source `kind/namespace/name`, or why there is none yet.
pub async fn artifact(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
    requeue_dependency: Duration,
) -> Result<Artifact, ReconcileError> {
    let artifact = match kind {
        "GitRepository" => get::<GitRepository>(client, namespace, name, requeue_dependency)
            .await?
            .status
            .and_then(|s| s.artifact),
        "OCIRepository" => get::<OCIRepository>(client, namespace, name, requeue_dependency)
            .await?
            .status
            .and_then(|s| s.artifact),
        "Bucket" => get::<Bucket>(client, namespace, name, requeue_dependency)
            .await?
            .status
            .and_then(|s| s.artifact),
        "ExternalArtifact" => get::<ExternalArtifact>(client, namespace, name, requeue_dependency)
            .await?
            .status
            .and_then(|s| s.artifact),
        "HelmChart" => get::<HelmChart>(client, namespace, name, requeue_dependency)
            .await?
            .status
            .and_then(|s| s.artifact),
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
async fn get<K>(client: &Client, namespace: &str, name: &str, requeue: Duration) -> Result<K, ReconcileError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(source)) => Ok(source),
        Ok(None) => Err(ReconcileError::waiting(
            ARTIFACT_FAILED,
            format!("Source '{}/{namespace}/{name}' not found", K::kind(&())),
            requeue,
        )),
        Err(e) => Err(ReconcileError::transient(
            ARTIFACT_FAILED,
            format!("failed to get source: {e}"),
        )),
    }
}
