//! Who applies: the toolkit object whose labels mark what it owns, and whose API group prefixes
//! the annotations that steer the apply of each object (`<group>/ssa`, `/force`, `/reconcile`,
//! `/prune`), as Flux's `ssa.Owner` does for kustomize-controller and helm-controller alike.

use serde_json::Value;

/// The owner of applied objects: `group` is the owner's API group
/// (`kustomize.toolkit.fluxcd.io`), `name` and `namespace` the owning object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub group: String,
    pub name: String,
    pub namespace: String,
}

impl Owner {
    pub fn new(group: &str, name: &str, namespace: &str) -> Self {
        Self {
            group: group.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// `<group>/<suffix>`: the owner's labels (`name`, `namespace`) and steering annotations.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.group)
    }

    /// Stamps the ownership labels (`<group>/name` and `<group>/namespace`).
    pub fn label(&self, object: &mut Value) {
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let labels = metadata
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(labels) = labels {
                labels.insert(self.key("name"), Value::String(self.name.clone()));
                labels.insert(self.key("namespace"), Value::String(self.namespace.clone()));
            }
        }
    }

    /// Whether a live object carries this owner's labels.
    pub fn owns(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(&self.key("name")) == Some(&self.name)
            && labels.get(&self.key("namespace")) == Some(&self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_keys_are_fluxs() {
        let owner = Owner::new("kustomize.toolkit.fluxcd.io", "apps", "flux-system");
        let mut object = serde_json::json!({"metadata": {"name": "x"}});
        owner.label(&mut object);
        assert_eq!(
            object["metadata"]["labels"],
            serde_json::json!({"kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
        );
        assert_eq!(owner.key("ssa"), "kustomize.toolkit.fluxcd.io/ssa");
    }
}
