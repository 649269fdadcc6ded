//! `dependsOn` entries that name another kind (beyond Flux: a Kustomization may wait for a
//! HelmRelease and the other way round, or for any object): the object is ready when kstatus
//! says Current, which for toolkit kinds means Ready at the current generation.

use driftless_api::meta::DependencyReference;
use kube::Client;

use crate::discovery::{Discovery, api};
use crate::health::{Health, compute};
use crate::object::group_version;

/// The API version of a dependency's kind: the entry's, else the toolkit's own for its kinds.
fn api_version_of(dependency: &DependencyReference, kind: &str) -> Option<String> {
    if let Some(v) = dependency.api_version.as_deref().filter(|v| !v.is_empty()) {
        return Some(v.to_string());
    }
    match kind {
        "Kustomization" => Some("kustomize.toolkit.fluxcd.io/v1".into()),
        "HelmRelease" => Some("helm.toolkit.fluxcd.io/v2".into()),
        _ => None,
    }
}

/// How a dependency of another kind stands.
#[derive(Debug, PartialEq, Eq)]
pub enum DependencyState {
    Ready,
    NotFound,
    NotReady(String),
}

impl DependencyState {
    /// Why the dependent must wait (`not found`, `is not ready: …`), or None when ready.
    pub fn wait_reason(&self) -> Option<String> {
        match self {
            DependencyState::Ready => None,
            DependencyState::NotFound => Some("not found".into()),
            DependencyState::NotReady(why) => Some(format!("is not ready: {why}")),
        }
    }
}

/// The kind a `dependsOn` entry names when it is not the dependent's own (`own`).
pub fn other_kind<'a>(dependency: &'a DependencyReference, own: &str) -> Option<&'a str> {
    dependency.kind.as_deref().filter(|k| !k.is_empty() && *k != own)
}

/// Why a dependency's state is unknown.
#[derive(Debug, PartialEq, Eq)]
pub enum DependencyError {
    /// The entry cannot name an object (a kind without an apiVersion): the user must fix it.
    Invalid(String),
    /// The kind is not served (yet), or the apiserver failed.
    Unavailable(String),
}

/// Whether the dependency `kind` `namespace/name` exists and is Current.
pub async fn state(
    client: &Client,
    discovery: &Discovery,
    dependency: &DependencyReference,
    kind: &str,
    namespace: &str,
) -> Result<DependencyState, DependencyError> {
    let Some(api_version) = api_version_of(dependency, kind) else {
        return Err(DependencyError::Invalid(format!(
            "dependency '{namespace}/{}' of kind {kind} needs an apiVersion",
            dependency.name
        )));
    };
    let (group, version) = group_version(&api_version);
    let (resource, namespaced) = discovery
        .resolve(client, &group, &version, kind)
        .await
        .map_err(DependencyError::Unavailable)?;
    let object = api(client, &resource, namespaced, namespace)
        .get_opt(&dependency.name)
        .await
        .map_err(|e| DependencyError::Unavailable(format!("failed to get dependency: {e}")))?;
    let Some(object) = object else {
        return Ok(DependencyState::NotFound);
    };
    Ok(match compute(&serde_json::to_value(object).unwrap_or_default()) {
        Health::Current => DependencyState::Ready,
        Health::InProgress(why) | Health::Failed(why) => DependencyState::NotReady(why),
    })
}
