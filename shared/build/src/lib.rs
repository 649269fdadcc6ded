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
pub mod remote;
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

/// Flux's `commonMetadata`, set after the build on each object's own labels and annotations
/// (existing keys overridden), as fluxcd/pkg's `SetCommonMetadata`: pod templates and
/// selectors are left alone, so adding an annotation does not roll Deployments.
pub fn set_common_metadata(objects: &mut [Value], metadata: &driftless_api::meta::CommonMetadata) {
    for object in objects {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, entries) in [
            ("labels", &metadata.labels),
            ("annotations", &metadata.annotations),
        ] {
            let Some(entries) = entries.as_ref().filter(|e| !e.is_empty()) else {
                continue;
            };
            let map = meta
                .entry(field)
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !map.is_object() {
                *map = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(map) = map {
                for (key, value) in entries {
                    map.insert(key.clone(), Value::String(value.clone()));
                }
            }
        }
    }
}

/// `kustomize build` of `dir` with the native engine as Flux runs it: kustomize's load
/// restrictions off (a kustomization may read `../common/patch.yaml`), nothing read outside
/// `root`, the artifact.
///
/// With `remote_bases`, remote resources are fetched ([`remote::Fetcher`]), as Flux allows
/// unless `--no-remote-bases`; without, they are refused.
pub fn kustomize(dir: &Path, root: &Path, remote_bases: bool) -> Result<Vec<Value>, BuildError> {
    let restrictor = driftless_kustomize::LoadRestrictor::None;
    let built = if remote_bases {
        let fetcher = remote::Fetcher::default();
        driftless_kustomize::build_with_remote(dir, Some(root), restrictor, &fetcher)
    } else {
        driftless_kustomize::build_restricted(dir, Some(root), restrictor)
    };
    built.map_err(|e| BuildError::Invalid(e.to_string()))
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
        let objects = kustomize(&artifact.join("apps"), &artifact, false).unwrap();
        assert_eq!(objects[0]["data"]["mode"], "patched");

        write(&dir.path().join("outside.yaml"), PATCH);
        write(
            &artifact.join("apps/kustomization.yaml"),
            "resources:\n- cm.yaml\npatches:\n- path: ../../outside.yaml\n",
        );
        let error = kustomize(&artifact.join("apps"), &artifact, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("outside the build root"), "{error}");
    }
}

#[cfg(test)]
mod flux_semantics {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driftless_api::kustomize::KustomizationSpec;
    use serde_json::json;

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  selector:\n    matchLabels: {app: app}\n  template:\n    metadata:\n      labels: {app: app}\n    spec:\n      containers:\n      - {name: app, image: nginx}\n";

    fn spec(extra: serde_json::Value) -> KustomizationSpec {
        let mut spec =
            json!({"interval": "1m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "s"}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(spec).unwrap()
    }

    /// commonMetadata reaches each object's own metadata only: a pod template (or a selector)
    /// that changed with it would roll every Deployment when an annotation is added.
    #[test]
    fn common_metadata_is_set_on_objects_not_on_their_pod_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deployment.yaml"), DEPLOYMENT).unwrap();
        let spec = spec(
            json!({"commonMetadata": {"labels": {"team": "web"}, "annotations": {"owner": "platform"}}}),
        );
        generator::prepare(dir.path(), &spec).unwrap();
        let mut objects = kustomize(dir.path(), dir.path(), false).unwrap();
        set_common_metadata(&mut objects, spec.common_metadata.as_ref().unwrap());
        let deployment = &objects[0];
        assert_eq!(deployment["metadata"]["labels"]["team"], "web");
        assert_eq!(deployment["metadata"]["annotations"]["owner"], "platform");
        assert_eq!(
            deployment["spec"]["template"]["metadata"],
            json!({"labels": {"app": "app"}})
        );
        assert_eq!(
            deployment["spec"]["selector"],
            json!({"matchLabels": {"app": "app"}})
        );
    }

    /// `--no-remote-bases`: a remote resource is refused by name, nothing is fetched.
    #[test]
    fn remote_bases_are_refused_when_disabled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources:\n- github.com/org/repo//deploy?ref=v1\n",
        )
        .unwrap();
        let error = kustomize(dir.path(), dir.path(), false).unwrap_err().to_string();
        assert!(
            error.contains("github.com/org/repo//deploy?ref=v1")
                && error.contains("remote bases are disabled"),
            "{error}"
        );
    }

    /// spec.buildMetadata is passed to kustomize; an existing kustomization without resources
    /// gets origin annotations, as Flux's generator writes it.
    #[test]
    fn build_metadata_is_written_into_the_kustomization() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deployment.yaml"), DEPLOYMENT).unwrap();
        generator::prepare(dir.path(), &spec(json!({"buildMetadata": ["originAnnotations"]}))).unwrap();
        let objects = kustomize(dir.path(), dir.path(), false).unwrap();
        assert_eq!(
            objects[0]["metadata"]["annotations"]["config.kubernetes.io/origin"],
            "path: deployment.yaml\n"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/deployment.yaml"), DEPLOYMENT).unwrap();
        std::fs::write(
            dir.path().join("app/kustomization.yaml"),
            "resources: [deployment.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "components: []\nnamePrefix: x-\nbases: [app]\n",
        )
        .unwrap();
        generator::prepare(dir.path(), &spec(json!({}))).unwrap();
        let objects = kustomize(dir.path(), dir.path(), false).unwrap();
        assert_eq!(objects[0]["metadata"]["name"], "x-app");
        assert_eq!(
            objects[0]["metadata"]["annotations"]["config.kubernetes.io/origin"],
            "path: app/deployment.yaml\n"
        );
    }
}
