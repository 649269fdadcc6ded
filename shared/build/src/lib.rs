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

/// `kustomize build` of `dir` with the native engine as Flux runs it: kustomize's load
/// restrictions off (a kustomization may read `../common/patch.yaml`), nothing read outside
/// `root`, the artifact.
pub fn kustomize(dir: &Path, root: &Path) -> Result<Vec<Value>, BuildError> {
    driftless_kustomize::build_restricted(dir, Some(root), driftless_kustomize::LoadRestrictor::None)
        .map_err(|e| BuildError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  mode: base\n";
    const PATCH: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  mode: patched\n";

    /// Flux builds with kustomize's load restrictions off: an overlay may read a patch from a
    /// sibling directory of the artifact; only what leaves the artifact is refused.
    #[test]
    fn a_kustomization_reads_files_elsewhere_in_the_artifact_but_not_outside() {
        let dir = tempfile::tempdir().unwrap();
        let artifact = dir.path().join("artifact");
        let write = |path: &Path, text: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(&artifact.join("common/patch.yaml"), PATCH);
        write(&artifact.join("apps/cm.yaml"), CM);
        write(
            &artifact.join("apps/kustomization.yaml"),
            "resources:\n- cm.yaml\npatches:\n- path: ../common/patch.yaml\n",
        );
        let objects = kustomize(&artifact.join("apps"), &artifact).unwrap();
        assert_eq!(objects[0]["data"]["mode"], "patched");

        write(&dir.path().join("outside.yaml"), PATCH);
        write(
            &artifact.join("apps/kustomization.yaml"),
            "resources:\n- cm.yaml\npatches:\n- path: ../../outside.yaml\n",
        );
        let error = kustomize(&artifact.join("apps"), &artifact)
            .unwrap_err()
            .to_string();
        assert!(error.contains("outside the build root"), "{error}");
    }
}
