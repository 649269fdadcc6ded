//! Drift-ignore rules: fields (JSON pointers) that keep their live values on selected objects.

use driftless_api::meta::Selector;
use jsonptr::Pointer;
use serde_json::Value;

/// A drift-ignore rule (Kustomization `spec.ignore`, HelmRelease `driftDetection.ignore`): the
/// fields at `paths` of the objects `target` selects (all when None) keep their live values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriftIgnore {
    pub paths: Vec<String>,
    pub target: Option<Selector>,
}

impl From<&driftless_api::kustomize::IgnoreRule> for DriftIgnore {
    fn from(rule: &driftless_api::kustomize::IgnoreRule) -> Self {
        Self {
            paths: rule.paths.clone(),
            target: rule.target.clone(),
        }
    }
}

impl From<&driftless_api::helm::IgnoreRule> for DriftIgnore {
    fn from(rule: &driftless_api::helm::IgnoreRule) -> Self {
        Self {
            paths: rule.paths.clone(),
            target: rule.target.clone(),
        }
    }
}

/// The JSON pointers the drift-ignore rules that select `object` exclude.
pub(crate) fn ignored_paths(rules: &[DriftIgnore], object: &Value) -> Result<Vec<String>, String> {
    let mut paths = Vec::new();
    for rule in rules {
        let selected = match &rule.target {
            None => true,
            Some(t) => {
                let selector = driftless_kustomize::kustomization::Selector {
                    group: t.group.clone().unwrap_or_default(),
                    version: t.version.clone().unwrap_or_default(),
                    kind: t.kind.clone().unwrap_or_default(),
                    name: t.name.clone().unwrap_or_default(),
                    namespace: t.namespace.clone().unwrap_or_default(),
                    label_selector: t.label_selector.clone().unwrap_or_default(),
                    annotation_selector: t.annotation_selector.clone().unwrap_or_default(),
                };
                driftless_kustomize::selects(&selector, object).map_err(|e| format!("ignore rule: {e}"))?
            }
        };
        if selected {
            paths.extend(rule.paths.iter().cloned());
        }
    }
    Ok(paths)
}

/// Sets the field a JSON pointer names, when it exists or its parent is a map.
pub(crate) fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let Ok(pointer) = Pointer::parse(pointer) else {
        return;
    };
    let Some(parent) = pointer.parent().filter(|_| !pointer.is_root()) else {
        return;
    };
    let settable = pointer.resolve(object).is_ok() || matches!(parent.resolve(object), Ok(Value::Object(_)));
    if settable {
        // Cannot fail: the field or its parent map exists.
        pointer.assign(object, value).ok();
    }
}

/// Removes the field a JSON pointer (RFC 6901) names, if present.
pub(crate) fn remove_pointer(object: &mut Value, pointer: &str) {
    // Only a field that resolves is deleted: jsonptr's delete would take an index equal to an
    // array's length (or `-`) as the slot after the end, and panic removing it.
    if let Ok(pointer) = Pointer::parse(pointer)
        && !pointer.is_root()
        && pointer.resolve(object).is_ok()
    {
        pointer.delete(object);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ignore_rules_remove_selected_fields() {
        let object = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"a/b": "x"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        let rules: Vec<driftless_api::kustomize::IgnoreRule> = serde_json::from_value(serde_json::json!([
            {"paths": ["/spec/replicas", "/metadata/annotations/a~1b"], "target": {"kind": "Deployment", "name": "w.*"}},
            {"paths": ["/spec/template"], "target": {"kind": "StatefulSet"}},
        ]))
        .unwrap();
        let rules: Vec<DriftIgnore> = rules.iter().map(DriftIgnore::from).collect();
        let paths = ignored_paths(&rules, &object).unwrap();
        assert_eq!(paths, ["/spec/replicas", "/metadata/annotations/a~1b"]);
        let mut manifest = object.clone();
        for p in &paths {
            remove_pointer(&mut manifest, p);
        }
        assert!(manifest["spec"].get("replicas").is_none());
        assert_eq!(manifest["metadata"]["annotations"], serde_json::json!({}));
        remove_pointer(&mut manifest, "/spec/template/spec/containers/0");
        assert_eq!(
            manifest["spec"]["template"]["spec"]["containers"],
            serde_json::json!([])
        );
        remove_pointer(&mut manifest, "/nope/deeper");
        // Past the end of an array, or its `-`: nothing to remove (and no panic).
        remove_pointer(&mut manifest, "/spec/template/spec/containers/0");
        remove_pointer(&mut manifest, "/spec/template/spec/containers/-");
        let mut one = serde_json::json!({"list": [1]});
        remove_pointer(&mut one, "/list/1");
        remove_pointer(&mut one, "/list/-");
        remove_pointer(&mut one, "");
        assert_eq!(one, serde_json::json!({"list": [1]}));
        set_pointer(&mut manifest, "/spec/replicas", serde_json::json!(5));
        set_pointer(
            &mut manifest,
            "/metadata/annotations/a~1b",
            serde_json::json!("y"),
        );
        set_pointer(&mut manifest, "/nope/deeper", serde_json::json!(1));
        assert_eq!(manifest["spec"]["replicas"], 5);
        assert_eq!(manifest["metadata"]["annotations"]["a/b"], "y");
        assert!(manifest.get("nope").is_none());
    }
}
