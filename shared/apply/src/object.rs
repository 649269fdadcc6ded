//! Object identity as Flux's inventory writes it, and the views of a manifest the engine compares.

use serde_json::Value;

/// An object's identity as Flux's inventory writes it: `<namespace>_<name>_<group>_<kind>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub namespace: String,
    pub name: String,
    pub group: String,
    pub kind: String,
}

impl ObjectId {
    pub fn inventory_id(&self) -> String {
        format!("{}_{}_{}_{}", self.namespace, self.name, self.group, self.kind)
    }

    pub fn parse(id: &str) -> Option<ObjectId> {
        let mut parts = id.splitn(4, '_');
        Some(ObjectId {
            namespace: parts.next()?.to_string(),
            name: parts.next()?.to_string(),
            group: parts.next()?.to_string(),
            kind: parts.next()?.to_string(),
        })
    }

    /// `Kind/namespace/name`, or `Kind/name` when cluster-scoped, as Flux's messages say.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

pub fn field_text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `group/version` (or a core `version`) split into group and version.
pub fn group_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), api_version.to_string()),
    }
}

/// Fields the apiserver owns; two versions of an object that differ only here are the same.
pub fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            metadata.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

pub(crate) fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("metadata")?.get("annotations")?.get(key)?.as_str()
}
