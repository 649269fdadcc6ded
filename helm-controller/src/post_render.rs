//! The post-renderer Helm runs on every rendered manifest (hooks included): the HelmRelease's
//! kustomize `postRenderers` (patches and images, through the native kustomize engine), then
//! `commonMetadata`, then the origin labels Flux's post-renderer adds
//! (`helm.toolkit.fluxcd.io/name` and `/namespace`), so objects of a release moved from Flux
//! keep the same labels.
//!
//! It runs as `helm-controller post-render <spec.json>` in a process Helm starts. Helm reads its
//! stdout and discards its stderr: a failure here reaches the user only as Helm's "plugin
//! exited with error", which is why it does nothing that can fail on well-formed input but
//! the user's own patches.

use std::io::{Read, Write};
use std::path::Path;

use driftless_api::helm::{GROUP, PostRenderer};
use driftless_api::meta::CommonMetadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the post-renderer applies, written by the controller for one Helm action.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Name and namespace of the HelmRelease (the origin labels).
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub common_metadata: Option<CommonMetadata>,
    #[serde(default)]
    pub post_renderers: Vec<PostRenderer>,
    /// `postRenderStrategy`: `combined` (Helm 4's default: hooks and the rest in one stream),
    /// `separate` (hooks post-rendered on their own), `nohooks` (hooks left as rendered, as
    /// Helm 3 did).
    #[serde(default)]
    pub strategy: Option<String>,
}

/// The `post-render` entry point: `args` are those after `post-render`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let spec_path = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: helm-controller post-render <spec.json>"))?;
    let spec: Spec = serde_json::from_slice(&std::fs::read(spec_path)?)?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let output = render(&input, &spec)?;
    std::io::stdout().write_all(output.as_bytes())?;
    Ok(())
}

/// Applies `spec` to a YAML stream of rendered objects, hooks as `postRenderStrategy` says.
pub fn render(input: &str, spec: &Spec) -> anyhow::Result<String> {
    let objects = crate::release::manifest_objects(input).map_err(anyhow::Error::msg)?;
    let objects = match spec.strategy.as_deref() {
        Some(strategy @ ("nohooks" | "separate")) => {
            let (hooks, rest): (Vec<Value>, Vec<Value>) = objects
                .into_iter()
                .partition(|o| o.pointer("/metadata/annotations/helm.sh~1hook").is_some());
            let mut rendered = post_rendered(rest, spec)?;
            if strategy == "separate" {
                rendered.extend(post_rendered(hooks, spec)?);
            } else {
                rendered.extend(hooks);
            }
            rendered
        }
        _ => post_rendered(objects, spec)?,
    };
    Ok(driftless_kustomize::to_yaml_stream(&objects))
}

/// The objects through the kustomize post-renderers, then common metadata and origin labels.
fn post_rendered(mut objects: Vec<Value>, spec: &Spec) -> anyhow::Result<Vec<Value>> {
    if objects.is_empty() {
        return Ok(objects);
    }
    for renderer in &spec.post_renderers {
        if let Some(kustomize) = &renderer.kustomize {
            objects = kustomized(objects, kustomize)?;
        }
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut annotations: Vec<(String, String)> = Vec::new();
    if let Some(common) = &spec.common_metadata {
        labels.extend(common.labels.clone().unwrap_or_default());
        annotations.extend(common.annotations.clone().unwrap_or_default());
    }
    labels.push((format!("{GROUP}/name"), spec.name.clone()));
    labels.push((format!("{GROUP}/namespace"), spec.namespace.clone()));
    for object in objects.iter_mut() {
        set_all(object, "labels", &labels);
        set_all(object, "annotations", &annotations);
    }
    Ok(objects)
}

fn set_all(object: &mut Value, field: &str, entries: &[(String, String)]) {
    if entries.is_empty() {
        return;
    }
    let Some(metadata) = object
        .as_object_mut()
        .map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let map = metadata
        .entry(field)
        .or_insert_with(|| Value::Object(Default::default()));
    if !map.is_object() {
        *map = Value::Object(Default::default());
    }
    if let Some(map) = map.as_object_mut() {
        for (k, v) in entries {
            map.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

/// Runs the native kustomize engine over the objects with the renderer's patches and images.
fn kustomized(
    objects: Vec<Value>,
    kustomize: &driftless_api::helm::KustomizePostRenderer,
) -> anyhow::Result<Vec<Value>> {
    let dir = tempfile::tempdir()?;
    write_kustomization(dir.path(), &objects, kustomize)?;
    driftless_kustomize::build(dir.path(), Some(dir.path()))
        .map_err(|e| anyhow::anyhow!("kustomize post-renderer: {e}"))
}

fn write_kustomization(
    dir: &Path,
    objects: &[Value],
    kustomize: &driftless_api::helm::KustomizePostRenderer,
) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("resources.yaml"),
        driftless_kustomize::to_yaml_stream(objects),
    )?;
    let kustomization = serde_json::json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["resources.yaml"],
        "patches": kustomize.patches.clone().unwrap_or_default(),
        "images": kustomize.images.clone().unwrap_or_default(),
    });
    std::fs::write(dir.join("kustomization.yaml"), kustomization.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_rendering_patches_then_labels() {
        let input = "---\n# Source: x/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    postrenderer.helm.sh/postrender-filename: templates/cm.yaml\ndata:\n  k: v\n";
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "name": "web", "namespace": "apps",
            "commonMetadata": {"labels": {"team": "a"}},
            "postRenderers": [{"kustomize": {"patches": [{"patch": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: patched\n"}]}}]
        }))
        .unwrap();
        let out = render(input, &spec).unwrap();
        let objects = crate::release::manifest_objects(&out).unwrap();
        assert_eq!(objects.len(), 1);
        let cm = &objects[0];
        assert_eq!(cm["data"]["k"], "patched");
        assert_eq!(cm["metadata"]["labels"]["team"], "a");
        assert_eq!(cm["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"], "web");
        assert_eq!(
            cm["metadata"]["annotations"]["postrenderer.helm.sh/postrender-filename"],
            "templates/cm.yaml"
        );
    }

    #[test]
    fn hooks_are_post_rendered_as_the_strategy_says() {
        let input = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-upgrade\n";
        let labelled = |strategy: Option<&str>| -> Vec<bool> {
            let spec = Spec {
                name: "web".into(),
                namespace: "apps".into(),
                strategy: strategy.map(str::to_string),
                ..Spec::default()
            };
            let out = render(input, &spec).unwrap();
            crate::release::manifest_objects(&out)
                .unwrap()
                .iter()
                .map(|o| {
                    o.pointer("/metadata/labels/helm.toolkit.fluxcd.io~1name")
                        .is_some()
                })
                .collect()
        };
        assert_eq!(labelled(None), [true, true]);
        assert_eq!(labelled(Some("separate")), [true, true]);
        assert_eq!(labelled(Some("nohooks")), [true, false]);
    }
}
