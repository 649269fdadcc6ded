//! Field specs: "this path, in objects of this kind", the unit every built-in transformer
//! is configured with.

use serde_json::{Map, Value};

use crate::resource::Gvk;

#[derive(Clone, Debug, Default)]
pub struct FieldSpec {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub path: String,
    pub create: bool,
}

impl FieldSpec {
    pub fn new(kind: &str, path: &str, create: bool) -> FieldSpec {
        FieldSpec {
            kind: kind.into(),
            path: path.into(),
            create,
            ..Default::default()
        }
    }

    pub fn with_group(mut self, group: &str) -> FieldSpec {
        self.group = group.into();
        self
    }

    pub fn with_version(mut self, version: &str) -> FieldSpec {
        self.version = version.into();
        self
    }

    pub fn selects(&self, gvk: &Gvk) -> bool {
        gvk.selected_by(&self.group, &self.version, &self.kind)
    }
}

/// What a field spec creates when its path is missing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// Never create.
    Nothing,
    Map,
    Scalar,
}

/// Splits a path on '/', keeping escaped "\/" inside elements.
pub fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                current.push('/');
                chars.next();
            }
            '/' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// Calls `set` on every node the spec's path reaches in `object`, creating the path when the
/// spec says so. Objects of other kinds are left alone.
pub fn apply(
    object: &mut Value,
    spec: &FieldSpec,
    create: CreateKind,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let gvk = Gvk::from_api_version(
        object.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
        object.get("kind").and_then(Value::as_str).unwrap_or(""),
    );
    if !spec.selects(&gvk) {
        return Ok(());
    }
    let path = split_path(&spec.path);
    let create = if spec.create { create } else { CreateKind::Nothing };
    walk(object, &path, create, set).map_err(|e| format!("considering field '{}': {e}", spec.path))
}

fn walk(
    node: &mut Value,
    path: &[String],
    create: CreateKind,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return set(node);
    };
    match node {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                walk(item, path, create, set)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            let (field, is_seq) = match first.strip_suffix("[]") {
                Some(field) => (field, true),
                None => (first.as_str(), false),
            };
            if field.is_empty() {
                return Err("cannot set or create an empty field name".into());
            }
            let kind = if is_seq || create == CreateKind::Nothing {
                CreateKind::Nothing
            } else if rest.is_empty() {
                create
            } else {
                CreateKind::Map
            };
            if kind != CreateKind::Nothing {
                let child = map.entry(field.to_string()).or_insert(Value::Null);
                if child.is_null() {
                    *child = match kind {
                        CreateKind::Map => Value::Object(Map::new()),
                        _ => Value::String(String::new()),
                    };
                }
            }
            match map.get_mut(field) {
                Some(child) => walk(child, rest, create, set),
                None => Ok(()),
            }
        }
        _ => Err("expected sequence or mapping node".into()),
    }
}

/// A setter that writes one string entry into a map node.
pub fn set_entry(key: &str, value: &str) -> impl FnMut(&mut Value) -> Result<(), String> {
    let (key, value) = (key.to_string(), value.to_string());
    move |node: &mut Value| match node {
        Value::Object(map) => {
            map.insert(key.clone(), Value::String(value.clone()));
            Ok(())
        }
        Value::Null => {
            let mut map = Map::new();
            map.insert(key.clone(), Value::String(value.clone()));
            *node = Value::Object(map);
            Ok(())
        }
        _ => Err(format!("expected a map to set '{key}' in")),
    }
}
