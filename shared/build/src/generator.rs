//! The kustomization.yaml that is built. Like Flux, a directory without one gets one
//! listing its manifests, and the Kustomization's own transformations (targetNamespace,
//! namePrefix, nameSuffix, patches, images, components, buildMetadata) are written into it.
//! `commonMetadata` is not: Flux sets it on each object after the build
//! ([`crate::set_common_metadata`]), so it never reaches pod templates or selectors.

use std::path::{Component, Path, PathBuf};

use driftless_api::kustomize::KustomizationSpec;

use crate::BuildError;
use serde_json::{Map, Value, json};

const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// `path` inside `root`, refusing anything that would leave it.
pub fn secure_join(root: &Path, path: &str) -> Result<PathBuf, BuildError> {
    secure_join_text(root, path).map_err(BuildError::Invalid)
}

fn secure_join_text(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut joined = root.to_path_buf();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if joined == root {
                    return Err(format!("path '{path}' is outside the artifact"));
                }
                joined.pop();
            }
            Component::Prefix(_) => return Err(format!("invalid path '{path}'")),
        }
    }
    let resolved =
        std::fs::canonicalize(&joined).map_err(|_| format!("kustomization path not found: '{path}'"))?;
    let root = std::fs::canonicalize(root).map_err(|e| e.to_string())?;
    if !resolved.starts_with(&root) {
        return Err(format!("path '{path}' is outside the artifact"));
    }
    if !resolved.is_dir() {
        return Err(format!("kustomization path '{path}' is not a directory"));
    }
    Ok(resolved)
}

/// Writes the kustomization.yaml to build in `dir`.
pub fn prepare(dir: &Path, spec: &KustomizationSpec) -> Result<(), BuildError> {
    prepare_text(dir, spec).map_err(BuildError::Invalid)
}

fn prepare_text(dir: &Path, spec: &KustomizationSpec) -> Result<(), String> {
    let existing = FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    let found = existing.is_some();
    let (file, mut kustomization) = match existing {
        Some(file) => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            let document = driftless_kustomize::yaml::parse_documents_yaml11(&text)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .into_iter()
                .next()
                .unwrap_or_else(|| json!({}));
            (file, document)
        }
        None => (dir.join("kustomization.yaml"), generate(dir)?),
    };
    let Value::Object(k) = &mut kustomization else {
        return Err(format!("{}: not a map", file.display()));
    };
    // Flux marks an existing kustomization without resources with build metadata, so kustomize
    // does not refuse it as empty; its objects then carry origin annotations.
    if found
        && k.get("resources")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        k.insert("buildMetadata".into(), json!(["originAnnotations"]));
    }
    overlay(k, spec, dir);
    std::fs::write(&file, driftless_kustomize::yaml::to_yaml(&kustomization))
        .map_err(|e| format!("writing {}: {e}", file.display()))
}

/// A kustomization of every manifest below `dir`; a sub-directory with its own kustomization is
/// one resource and is not descended into.
fn generate(dir: &Path) -> Result<Value, String> {
    let mut resources = Vec::new();
    scan(dir, dir, &mut resources)?;
    Ok(json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }))
}

fn scan(root: &Path, dir: &Path, resources: &mut Vec<String>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let relative = format!("./{}", path.strip_prefix(root).unwrap_or(&path).display());
        if path.is_dir() {
            if FILE_NAMES.iter().any(|n| path.join(n).is_file()) {
                resources.push(relative);
            } else {
                scan(root, &path, resources)?;
            }
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {relative}: {e}"))?;
            driftless_kustomize::yaml::parse_documents(&text)
                .map_err(|e| format!("failed to decode Kubernetes YAML from {relative}: {e}"))?;
            resources.push(relative);
        }
    }
    Ok(())
}

fn push_all(k: &mut Map<String, Value>, field: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    let list = k.entry(field).or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Value::Array(list) = list {
        list.extend(items);
    }
}

fn set_string(k: &mut Map<String, Value>, field: &str, value: Option<&String>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        k.insert(field.into(), Value::String(value.clone()));
    }
}

fn overlay(k: &mut Map<String, Value>, spec: &KustomizationSpec, dir: &Path) {
    set_string(k, "namespace", spec.target_namespace.as_ref());
    set_string(k, "namePrefix", spec.name_prefix.as_ref());
    set_string(k, "nameSuffix", spec.name_suffix.as_ref());
    if let Some(options) = spec.build_metadata.as_ref().filter(|b| !b.is_empty()) {
        k.insert(
            "buildMetadata".into(),
            serde_json::to_value(options).unwrap_or(Value::Null),
        );
    }
    let patches = spec.patches.iter().flatten().map(|p| {
        let mut patch = json!({"patch": p.patch});
        if let Some(target) = &p.target {
            patch["target"] = serde_json::to_value(target).unwrap_or(Value::Null);
        }
        patch
    });
    push_all(k, "patches", patches.collect());
    // An image the source's kustomization already lists by name is replaced, as Flux does.
    let mut added = Vec::new();
    for image in spec.images.iter().flatten() {
        let image = serde_json::to_value(image).unwrap_or(Value::Null);
        let listed = k
            .get_mut("images")
            .and_then(Value::as_array_mut)
            .and_then(|list| list.iter_mut().find(|i| i.get("name") == image.get("name")));
        match listed {
            Some(existing) => *existing = image,
            None => added.push(image),
        }
    }
    push_all(k, "images", added);
    // `ignoreMissingComponents`: components not in the source are left out, not an error.
    let ignore_missing = spec.ignore_missing_components == Some(true);
    let components = spec
        .components
        .iter()
        .flatten()
        .filter(|c| !ignore_missing || dir.join(c).exists())
        .map(|c| Value::String(c.clone()));
    push_all(k, "components", components.collect());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spec_images_replace_those_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "images:\n- name: reg/app\n  newTag: v1\n- name: reg/db\n  newTag: v2\n",
        )
        .unwrap();
        let spec: KustomizationSpec = serde_json::from_value(json!({
            "interval": "1m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "s"},
            "images": [{"name": "reg/app", "newName": "mirror/app"}, {"name": "reg/web", "newTag": "v3"}],
        }))
        .unwrap();
        prepare(dir.path(), &spec).unwrap();
        let text = std::fs::read_to_string(dir.path().join("kustomization.yaml")).unwrap();
        let written = driftless_kustomize::yaml::parse_documents(&text)
            .unwrap()
            .remove(0);
        assert_eq!(
            written["images"],
            json!([{"name": "reg/app", "newName": "mirror/app"}, {"name": "reg/db", "newTag": "v2"},
                   {"name": "reg/web", "newTag": "v3"}])
        );
    }

    #[test]
    fn missing_components_are_left_out_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("components/present")).unwrap();
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n").unwrap();
        let mut spec: KustomizationSpec = serde_json::from_value(json!({
            "interval": "1m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "s"},
            "components": ["components/present", "components/absent"],
        }))
        .unwrap();
        prepare(dir.path(), &spec).unwrap();
        let written = std::fs::read_to_string(dir.path().join("kustomization.yaml")).unwrap();
        assert!(written.contains("components/absent"), "{written}");

        std::fs::write(dir.path().join("kustomization.yaml"), "resources: []\n").unwrap();
        spec.ignore_missing_components = Some(true);
        prepare(dir.path(), &spec).unwrap();
        let written = std::fs::read_to_string(dir.path().join("kustomization.yaml")).unwrap();
        assert!(
            written.contains("components/present") && !written.contains("components/absent"),
            "{written}"
        );
    }
}
