//! Resources as kustomize tracks them: the object, where it came from and which names it had.

use std::fmt;

use serde_json::{Map, Value};

/// Group, version and kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn from_api_version(api_version: &str, kind: &str) -> Gvk {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    /// A selector matches when each of its non-empty parts is equal.
    pub fn selected_by(&self, group: &str, version: &str, kind: &str) -> bool {
        (group.is_empty() || self.group == group)
            && (version.is_empty() || self.version == version)
            && (kind.is_empty() || self.kind == kind)
    }

    pub fn is_cluster_scoped(&self) -> bool {
        let api_version = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        is_cluster_scoped(&api_version, &self.kind)
    }
}

/// The kinds kustomize (v5.5) knows to be cluster-scoped, by exact apiVersion: its built-in
/// schema's table. Every other kind and version counts as namespaced, so a `v1` FlowSchema gets a
/// namespace where a `v1beta1` one does not, as in kustomize.
pub fn is_cluster_scoped(api_version: &str, kind: &str) -> bool {
    matches!(
        (api_version, kind),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")
            | (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration"
            )
            | (
                "admissionregistration.k8s.io/v1beta1",
                "MutatingWebhookConfiguration"
            )
            | (
                "admissionregistration.k8s.io/v1beta1",
                "ValidatingWebhookConfiguration"
            )
            | ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            | ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition")
            | ("apiregistration.k8s.io/v1", "APIService")
            | ("apiregistration.k8s.io/v1beta1", "APIService")
            | ("certificates.k8s.io/v1", "CertificateSigningRequest")
            | ("certificates.k8s.io/v1beta1", "CertificateSigningRequest")
            | ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema")
            | (
                "flowcontrol.apiserver.k8s.io/v1beta1",
                "PriorityLevelConfiguration"
            )
            | ("networking.k8s.io/v1", "IngressClass")
            | ("networking.k8s.io/v1beta1", "IngressClass")
            | ("node.k8s.io/v1", "RuntimeClass")
            | ("node.k8s.io/v1beta1", "RuntimeClass")
            | ("policy/v1beta1", "PodSecurityPolicy")
            | ("rbac.authorization.k8s.io/v1", "ClusterRole")
            | ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
            | ("rbac.authorization.k8s.io/v1beta1", "ClusterRole")
            | ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding")
            | ("scheduling.k8s.io/v1", "PriorityClass")
            | ("scheduling.k8s.io/v1beta1", "PriorityClass")
            | ("storage.k8s.io/v1", "CSIDriver")
            | ("storage.k8s.io/v1", "CSINode")
            | ("storage.k8s.io/v1", "StorageClass")
            | ("storage.k8s.io/v1", "VolumeAttachment")
            | ("storage.k8s.io/v1beta1", "CSIDriver")
            | ("storage.k8s.io/v1beta1", "CSINode")
            | ("storage.k8s.io/v1beta1", "StorageClass")
            | ("storage.k8s.io/v1beta1", "VolumeAttachment")
            | ("v1", "ComponentStatus")
            | ("v1", "Namespace")
            | ("v1", "Node")
            | ("v1", "NodeProxyOptions")
            | ("v1", "PersistentVolume")
    )
}

/// A resource's identity: kind, name and namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResId {
    pub gvk: Gvk,
    pub name: String,
    pub namespace: String,
}

impl ResId {
    /// The namespace as the apiserver sees it: "default" when empty, none when cluster-scoped.
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped() {
            ""
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    pub fn same_namespace(&self, other: &ResId) -> bool {
        self.effective_namespace() == other.effective_namespace()
    }

    /// A hashable form of [`ResId::equals`].
    pub fn key(&self) -> (String, String, String, String, String) {
        (
            self.gvk.group.clone(),
            self.gvk.version.clone(),
            self.gvk.kind.clone(),
            self.name.clone(),
            self.effective_namespace().to_string(),
        )
    }

    /// kustomize's notion of the same object: same gvk, name and effective namespace.
    pub fn equals(&self, other: &ResId) -> bool {
        self.gvk == other.gvk && self.name == other.name && self.same_namespace(other)
    }
}

impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.gvk.group.is_empty() {
            "[noGrp]"
        } else {
            &self.gvk.group
        };
        let ns = if self.namespace.is_empty() {
            "[noNs]"
        } else {
            &self.namespace
        };
        write!(
            f,
            "{}.{}.{}/{}.{}",
            self.gvk.kind, self.gvk.version, group, self.name, ns
        )
    }
}

/// How a generated resource combines with one of the same name from a base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    #[default]
    Create,
    Merge,
    Replace,
}

/// An object in the build, with the bookkeeping kustomize keeps in build annotations.
#[derive(Clone, Debug)]
pub struct Resource {
    pub object: Value,
    /// Ids the object had before renames (prefix, suffix, namespace, hash), oldest first.
    pub previous_ids: Vec<ResId>,
    pub name_prefixes: Vec<String>,
    pub name_suffixes: Vec<String>,
    /// Generated with a content hash to append at the end of the build.
    pub needs_hash: bool,
    pub behavior: Behavior,
    /// Names of the vars that read from this object.
    pub var_refs: Vec<String>,
    /// Paths of the values written empty in the file (see [`crate::yaml::Document`]).
    pub empty_nulls: Vec<Vec<String>>,
    /// Where the object came from, and the transformers it went through, when the build keeps
    /// build metadata (`crate::origin`).
    pub origin: Option<crate::origin::Origin>,
    pub transformations: Vec<crate::origin::Origin>,
}

impl Resource {
    pub fn new(object: Value) -> Resource {
        Resource {
            object,
            previous_ids: Vec::new(),
            name_prefixes: Vec::new(),
            name_suffixes: Vec::new(),
            needs_hash: false,
            behavior: Behavior::Create,
            var_refs: Vec::new(),
            empty_nulls: Vec::new(),
            origin: None,
            transformations: Vec::new(),
        }
    }

    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.str_at(&["apiVersion"]), self.str_at(&["kind"]))
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }

    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }

    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"])
    }

    pub fn id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
        }
    }

    /// The id the resource was created with.
    pub fn original_id(&self) -> ResId {
        self.previous_ids.first().cloned().unwrap_or_else(|| self.id())
    }

    /// Current id first, then the previous ones.
    pub fn all_ids(&self) -> impl Iterator<Item = ResId> + '_ {
        std::iter::once(self.id()).chain(self.previous_ids.iter().cloned())
    }

    pub fn store_previous_id(&mut self) {
        let id = self.id();
        let namespace = id.effective_namespace().to_string();
        self.previous_ids.push(ResId { namespace, ..id });
    }

    pub fn str_at(&self, path: &[&str]) -> &str {
        let mut node = &self.object;
        for key in path {
            match node.get(key) {
                Some(next) => node = next,
                None => return "",
            }
        }
        node.as_str().unwrap_or("")
    }

    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let object = object_mut(&mut self.object);
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        object_mut(metadata)
    }

    pub fn set_name(&mut self, name: &str) {
        self.metadata_mut()
            .insert("name".into(), Value::String(name.to_string()));
    }

    pub fn set_namespace(&mut self, namespace: &str) {
        if namespace.is_empty() {
            self.metadata_mut().remove("namespace");
        } else {
            self.metadata_mut()
                .insert("namespace".into(), Value::String(namespace.to_string()));
        }
    }

    /// A string map under metadata (labels, annotations).
    pub fn string_map(&self, field: &str) -> Map<String, Value> {
        self.object
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_string_map(&mut self, field: &str, map: Map<String, Value>) {
        if map.is_empty() {
            self.metadata_mut().remove(field);
        } else {
            self.metadata_mut().insert(field.to_string(), Value::Object(map));
        }
    }
}

/// The object behind a value, made one if it is not.
pub fn object_mut(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}
