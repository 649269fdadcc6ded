//! Flux's Kustomization build, shared by kustomize-controller and the CLI (`driftless build`,
//! `diff`), as Flux keeps it in `fluxcd/pkg/kustomize`:
//!
//! - [`generator`]: the path confined to the artifact, and the kustomization.yaml that is built
//!   (generated where the directory has none, with the Kustomization's own transformations);
//! - [`kustomize`]: the native engine run on it;
//! - [`substitute`]: postBuild variables (from the cluster) and their substitution, in Flux's
//!   envsubst language ([`envsubst`]).
//!
//! Errors say by their type whose move it is ([`BuildError`]).

pub mod envsubst;
pub mod generator;
pub mod substitute;

use std::path::Path;

use serde_json::Value;

/// Why a build failed, by whose move it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// The artifact or the spec is wrong (bad YAML, a path outside the artifact, an undefined
    /// variable): the user must change it.
    Invalid(String),
    /// An object the build reads from the cluster is not there (yet): a `substituteFrom`
    /// ConfigMap or Secret.
    Missing(String),
    /// The cluster could not be read.
    Unavailable(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Invalid(m) | BuildError::Missing(m) | BuildError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BuildError {}

/// `kustomize build` of `dir` with the native engine, reading nothing outside `root`.
pub fn kustomize(dir: &Path, root: &Path) -> Result<Vec<Value>, BuildError> {
    driftless_kustomize::build(dir, Some(root)).map_err(|e| BuildError::Invalid(e.to_string()))
}
