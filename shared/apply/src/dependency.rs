//! `dependsOn`, checked the same way by kustomize-controller and helm-controller
//! ([`check_all`]):
//!
//! - an entry of the dependent's own kind is ready, as in Flux, when its `Ready` is True at its
//!   current generation (plus what the kind adds: a Kustomization sharing the source must have
//!   applied the same revision);
//! - `readyExpr` (CEL, with `self` the dependent and `dep` the dependency) replaces that check,
//!   as Flux does without the `AdditiveCELDependencyCheck` gate, and is checked before it with
//!   the gate on;
//! - beyond Flux, an entry naming another kind (a Kustomization waiting for a HelmRelease and
//!   the other way round, or any object) is ready when kstatus says Current.

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

/// The kind a `dependsOn` entry names when it is not the dependent's own (`own`).
pub fn other_kind<'a>(dependency: &'a DependencyReference, own: &str) -> Option<&'a str> {
    dependency.kind.as_deref().filter(|k| !k.is_empty() && *k != own)
}

/// Why the dependent cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub enum DependencyFailure {
    /// A dependency is missing or not ready (`dependency 'ns/name' is not ready`): wait.
    NotReady(String),
    /// The entry cannot be checked as written (an invalid `readyExpr`, a kind without an
    /// apiVersion): the user must fix it.
    Invalid(String),
}

/// The dependent, as its `dependsOn` entries are checked against it.
pub struct Dependent<'a> {
    /// The object itself (`self` in `readyExpr`).
    pub object: &'a serde_json::Value,
    /// Its kind and API version (entries without a kind name this kind).
    pub kind: &'a str,
    pub api_version: &'a str,
    pub namespace: &'a str,
    /// A `readyExpr` is checked besides the built-in check rather than instead of it (Flux's
    /// AdditiveCELDependencyCheck gate).
    pub additive_ready_expr: bool,
}

/// Checks every entry of `dependencies` in order; `same_kind_check` adds the kind's own
/// condition for a ready dependency of the same kind (None: ready; Some(why): not ready).
pub async fn check_all(
    client: &Client,
    discovery: &Discovery,
    dependent: &Dependent<'_>,
    dependencies: &[DependencyReference],
    same_kind_check: impl Fn(&serde_json::Value) -> Option<String>,
) -> Result<(), DependencyFailure> {
    for dependency in dependencies {
        let namespace = dependency
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(dependent.namespace);
        let not_ready = |why: &str| {
            DependencyFailure::NotReady(format!("dependency '{namespace}/{}' {why}", dependency.name))
        };
        let other = other_kind(dependency, dependent.kind);
        let kind = other.unwrap_or(dependent.kind);
        let api_version = match other {
            Some(kind) => api_version_of(dependency, kind).ok_or_else(|| {
                DependencyFailure::Invalid(format!(
                    "dependency '{namespace}/{}' of kind {kind} needs an apiVersion",
                    dependency.name
                ))
            })?,
            None => dependent.api_version.to_string(),
        };
        let ready_expr = dependency
            .ready_expr
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                cel::Program::compile(e).map_err(|err| {
                    DependencyFailure::Invalid(format!(
                        "failed to parse the readyExpr of dependency '{namespace}/{}': {err}",
                        dependency.name
                    ))
                })
            })
            .transpose()?;
        let found = get(client, discovery, &api_version, kind, namespace, &dependency.name).await;
        let found = found.map_err(|m| not_ready(&m))?;
        let Some(found) = found else {
            return Err(not_ready("not found"));
        };
        if let Some(program) = ready_expr {
            let mut context = cel::Context::default();
            for (name, value) in [("self", dependent.object), ("dep", &found)] {
                if let Ok(value) = cel::to_value(value) {
                    context.add_variable_from_value(name, value);
                }
            }
            match program.execute(&context) {
                Ok(cel::Value::Bool(true)) if !dependent.additive_ready_expr => continue,
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => return Err(not_ready("is not ready (readyExpr is false)")),
                Ok(other) => {
                    return Err(DependencyFailure::Invalid(format!(
                        "the readyExpr of dependency '{namespace}/{}' is not a boolean: {other:?}",
                        dependency.name
                    )));
                }
                Err(e) => return Err(not_ready(&format!("is not ready (readyExpr: {e})"))),
            }
        }
        if other.is_some() {
            match compute(&found) {
                Health::Current => continue,
                Health::InProgress(why) | Health::Failed(why) => {
                    return Err(not_ready(&format!("is not ready: {why}")));
                }
            }
        }
        let generation = found
            .pointer("/metadata/generation")
            .and_then(serde_json::Value::as_i64);
        let observed = found
            .pointer("/status/observedGeneration")
            .and_then(serde_json::Value::as_i64);
        let ready = found
            .pointer("/status/conditions")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.get("type").and_then(serde_json::Value::as_str) == Some("Ready")
                        && c.get("status").and_then(serde_json::Value::as_str) == Some("True")
                })
            });
        if generation != observed || !ready {
            return Err(not_ready("is not ready"));
        }
        if let Some(why) = same_kind_check(&found) {
            return Err(not_ready(&why));
        }
    }
    Ok(())
}

/// The object `kind` `namespace/name` of `api_version`, or None when it is not there.
async fn get(
    client: &Client,
    discovery: &Discovery,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<serde_json::Value>, String> {
    let (group, version) = group_version(api_version);
    let (resource, namespaced) = discovery.resolve(client, &group, &version, kind).await?;
    let object = api(client, &resource, namespaced, namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("failed to get dependency: {e}"))?;
    Ok(object.map(|o| serde_json::to_value(o).unwrap_or_default()))
}
