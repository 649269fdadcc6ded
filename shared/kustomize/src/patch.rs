//! Patches: strategic merge (kyaml's merge2 semantics, with the merge keys of the built-in
//! kinds) and JSON 6902.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Strategic-merge metadata of the built-in kinds, extracted from the apiserver's OpenAPI by
/// `hack/gen-merge-keys.py`.
#[derive(Deserialize)]
struct MergeSchema {
    kinds: HashMap<String, String>,
    definitions: HashMap<String, HashMap<String, Property>>,
}

#[derive(Deserialize)]
struct Property {
    #[serde(rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    list: bool,
    strategy: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
}

static SCHEMA: LazyLock<MergeSchema> = LazyLock::new(|| {
    serde_json::from_str(include_str!("merge_keys.json")).unwrap_or(MergeSchema {
        kinds: HashMap::new(),
        definitions: HashMap::new(),
    })
});

/// Where the walk is in the schema: an object definition, or the items of a list.
#[derive(Clone, Copy)]
enum Schema {
    Object(&'static HashMap<String, Property>),
    List(&'static Property),
}

impl Schema {
    fn for_kind(api_version: &str, kind: &str) -> Option<Schema> {
        let schema = &*SCHEMA;
        let definition = schema.kinds.get(&format!("{api_version}/{kind}"))?;
        schema.definitions.get(definition).map(Schema::Object)
    }

    fn field(self, name: &str) -> Option<Schema> {
        let Schema::Object(fields) = self else { return None };
        let property = fields.get(name)?;
        if property.list {
            Some(Schema::List(property))
        } else {
            property
                .reference
                .as_ref()
                .and_then(|r| SCHEMA.definitions.get(r))
                .map(Schema::Object)
        }
    }

    fn elements(self) -> Option<Schema> {
        let Schema::List(property) = self else { return None };
        property
            .reference
            .as_ref()
            .and_then(|r| SCHEMA.definitions.get(r))
            .map(Schema::Object)
    }

    /// The merge keys of an associative list, or None when the list is replaced as a whole.
    fn merge_keys(self) -> Option<Vec<String>> {
        let Schema::List(property) = self else { return None };
        let strategy = property.strategy.as_deref()?;
        strategy
            .split(',')
            .any(|s| s == "merge")
            .then(|| property.keys.clone())
    }
}

const DIRECTIVE: &str = "$patch";

#[derive(PartialEq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

/// Applies a strategic merge patch to an object. None means the patch deleted the object.
/// `empty_nulls` are the paths of the object's values written empty, which the merge drops
/// (a written `null` stays).
pub fn strategic_merge(
    object: &Value,
    patch: &Value,
    empty_nulls: &[Vec<String>],
) -> Result<Option<Value>, String> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let schema = Schema::for_kind(api_version, kind);
    let mut walk = Walk {
        path: Vec::new(),
        empty_nulls,
    };
    walk.merge_value(Some(object.clone()), patch.clone(), schema)
}

/// Where the merge is in the destination object, to tell its empty values from written nulls.
struct Walk<'a> {
    path: Vec<String>,
    empty_nulls: &'a [Vec<String>],
}

impl Walk<'_> {
    fn is_empty_null(&self, key: &str) -> bool {
        self.empty_nulls
            .iter()
            .any(|p| p.len() == self.path.len() + 1 && p.starts_with(&self.path) && p[self.path.len()] == key)
    }

    fn enter<T>(&mut self, key: String, f: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(key);
        let result = f(self);
        self.path.pop();
        result
    }

    /// kyaml's walk of [dest, patch]: returns the merged value, or None to clear the field.
    fn merge_value(
        &mut self,
        dest: Option<Value>,
        patch: Value,
        schema: Option<Schema>,
    ) -> Result<Option<Value>, String> {
        let dest = dest.filter(|d| !d.is_null());
        match patch {
            Value::Null => Ok(None),
            Value::Object(mut patch) => {
                let directive = map_directive(&mut patch)?;
                if directive == Directive::Delete {
                    return Ok(None);
                }
                let (mut dest, walked) = match dest {
                    None => (patch.clone(), false),
                    Some(Value::Object(dest)) if directive == Directive::Merge => (dest, true),
                    Some(Value::Object(_)) => (patch.clone(), false),
                    Some(_) => return Err("wrong node kind: expected a map".into()),
                };
                if walked {
                    // The fields only the destination has are walked too.
                    let keys: Vec<String> =
                        dest.keys().filter(|k| !patch.contains_key(*k)).cloned().collect();
                    for key in keys {
                        if dest.get(&key).is_some_and(Value::is_null) {
                            if self.is_empty_null(&key) {
                                dest.remove(&key);
                            }
                        } else if let Some(field) = dest.get_mut(&key) {
                            let field_schema = schema.and_then(|s| s.field(&key));
                            self.enter(key, |walk| walk.drop_empty_nulls(field, field_schema));
                        }
                    }
                }
                for (key, value) in patch {
                    let field_schema = schema.and_then(|s| s.field(&key));
                    let old = dest.remove(&key);
                    match self.enter(key.clone(), |walk| walk.merge_value(old, value, field_schema))? {
                        Some(merged) => {
                            dest.insert(key, merged);
                        }
                        None => {
                            dest.remove(&key);
                        }
                    }
                }
                Ok(Some(Value::Object(dest)))
            }
            Value::Array(mut patch) => {
                let Some(keys) = schema.and_then(|s| s.merge_keys()) else {
                    return Ok(Some(Value::Array(patch)));
                };
                let directive = list_directive(&mut patch)?;
                match directive {
                    Directive::Delete => return Ok(None),
                    Directive::Replace => return Ok(Some(Value::Array(patch))),
                    Directive::Merge => {}
                }
                let dest = match dest {
                    None => Vec::new(),
                    Some(Value::Array(items)) => items,
                    Some(_) => return Err("wrong node kind: expected a list".into()),
                };
                self.merge_list(dest, patch, &keys, schema.and_then(|s| s.elements()))
                    .map(|l| Some(Value::Array(l)))
            }
            scalar => Ok(Some(scalar)),
        }
    }

    /// An associative list merge: the patch's elements first (merged into their counterparts),
    /// then the elements only the destination has; elements merged to nothing are dropped.
    fn merge_list(
        &mut self,
        dest: Vec<Value>,
        patch: Vec<Value>,
        keys: &[String],
        element_schema: Option<Schema>,
    ) -> Result<Vec<Value>, String> {
        if keys.is_empty() {
            // A list of scalars merged as a set.
            let mut merged = patch;
            for item in dest {
                if !merged.contains(&item) {
                    merged.push(item);
                }
            }
            return Ok(merged);
        }
        let key_values = |item: &Value| -> Vec<String> {
            keys.iter()
                .map(|k| item.get(k).map(scalar_text).unwrap_or_default())
                .collect()
        };
        // Keys no element sets are ignored, as kyaml does for multi-key lists.
        let used_keys: Vec<usize> = (0..keys.len())
            .filter(|&i| {
                dest.iter()
                    .chain(patch.iter())
                    .any(|item| !key_values(item)[i].is_empty())
            })
            .collect();
        let used_keys = if used_keys.is_empty() {
            (0..keys.len()).collect()
        } else {
            used_keys
        };
        let identity = |item: &Value| -> Vec<String> {
            let values = key_values(item);
            used_keys.iter().map(|&i| values[i].clone()).collect()
        };
        let matches = |a: &[String], b: &[String]| {
            let mut common = false;
            for (x, y) in a.iter().zip(b) {
                if x == y {
                    common = true;
                } else if !x.is_empty() && !y.is_empty() {
                    return false;
                }
            }
            common
        };
        // With several keys in use (ports: containerPort and protocol), kyaml completes a patch
        // element's keys from the destination element it matches, then looks the patch element up
        // by the completed keys: one that lacks a key the destination sets is not found, and
        // changes nothing. Its result list is then the new elements first, then the destination's
        // in their order; with one key, the patch's elements come first, then the rest.
        let multi_key = used_keys.len() > 1;
        let mut dest: Vec<Option<Value>> = dest.into_iter().map(Some).collect();
        let dest_ids: Vec<Vec<String>> = dest
            .iter()
            .map(|d| d.as_ref().map(&identity).unwrap_or_default())
            .collect();
        let mut merged = Vec::new();
        let mut seen: Vec<Vec<String>> = Vec::new();
        for item in patch {
            let id = identity(&item);
            if seen.iter().any(|s| s == &id) {
                continue;
            }
            seen.push(id.clone());
            let position = dest_ids
                .iter()
                .enumerate()
                .position(|(i, d)| dest[i].is_some() && matches(d, &id));
            if multi_key
                && let Some(i) = position
                && id
                    .iter()
                    .zip(&dest_ids[i])
                    .any(|(p, d)| p.is_empty() && !d.is_empty())
            {
                continue;
            }
            let counterpart = position.and_then(|i| dest[i].take());
            // Paths of the destination's empty values name its own positions.
            let index = position.unwrap_or(usize::MAX).to_string();
            let value = self
                .enter(index, |walk| walk.merge_value(counterpart, item, element_schema))?
                .filter(|value| !value.as_object().is_some_and(Map::is_empty));
            match (multi_key, position) {
                (true, Some(i)) => dest[i] = value,
                (_, _) => merged.extend(value),
            }
        }
        let mut rest: Vec<(Vec<String>, Value)> = Vec::new();
        for (index, item) in dest.into_iter().enumerate() {
            let Some(mut item) = item else { continue };
            self.enter(index.to_string(), |walk| {
                walk.drop_empty_nulls(&mut item, element_schema)
            });
            let id = dest_ids[index].clone();
            // An element listed twice is listed once, at its first place, with its last value.
            if !multi_key && seen.contains(&id) {
                continue;
            }
            match rest.iter_mut().find(|(other, _)| !multi_key && *other == id) {
                Some((_, earlier)) => *earlier = item,
                None => rest.push((id, item)),
            }
        }
        merged.extend(rest.into_iter().map(|(_, item)| item));
        Ok(merged)
    }

    /// kyaml's merge walks the whole destination, not only what the patch touches, and clears on
    /// the way every field whose value was written empty (`key:`), while a written `null` stays.
    /// The walk visits maps and the elements of associative lists (listing each element once);
    /// other lists are taken whole.
    fn drop_empty_nulls(&mut self, value: &mut Value, schema: Option<Schema>) {
        match value {
            Value::Object(map) => {
                let empty: Vec<String> = map
                    .iter()
                    .filter(|(key, v)| v.is_null() && self.is_empty_null(key))
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in empty {
                    map.remove(&key);
                }
                for (key, field) in map.iter_mut() {
                    let field_schema = schema.and_then(|s| s.field(key));
                    self.enter(key.clone(), |walk| walk.drop_empty_nulls(field, field_schema));
                }
            }
            Value::Array(items) if schema.and_then(|s| s.merge_keys()).is_some_and(|k| !k.is_empty()) => {
                let keys = schema.and_then(|s| s.merge_keys()).unwrap_or_default();
                let element_schema = schema.and_then(|s| s.elements());
                for (index, item) in items.iter_mut().enumerate() {
                    self.enter(index.to_string(), |walk| {
                        walk.drop_empty_nulls(item, element_schema)
                    });
                }
                // The walk lists each element once: at its first place, with its last value.
                let mut unique: Vec<(Vec<String>, Value)> = Vec::with_capacity(items.len());
                for item in items.drain(..) {
                    let id: Vec<String> = keys
                        .iter()
                        .map(|k| item.get(k).map(scalar_text).unwrap_or_default())
                        .collect();
                    match unique.iter_mut().find(|(other, _)| *other == id) {
                        Some((_, earlier)) => *earlier = item,
                        None => unique.push((id, item)),
                    }
                }
                items.extend(unique.into_iter().map(|(_, item)| item));
            }
            _ => {}
        }
    }
}

fn map_directive(patch: &mut Map<String, Value>) -> Result<Directive, String> {
    match patch.remove(DIRECTIVE) {
        None => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "merge" => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "replace" => Ok(Directive::Replace),
        Some(Value::String(s)) if s == "delete" => Ok(Directive::Delete),
        Some(other) => Err(format!(
            "unknown patch strategy '{}'",
            other.as_str().unwrap_or_default()
        )),
    }
}

fn list_directive(patch: &mut Vec<Value>) -> Result<Directive, String> {
    let position = patch.iter().position(|item| {
        item.as_object()
            .is_some_and(|m| m.contains_key(DIRECTIVE) && m.len() <= 1)
    });
    let Some(position) = position else {
        return Ok(Directive::Merge);
    };
    let directive = match patch[position].get(DIRECTIVE).and_then(Value::as_str) {
        Some("merge") => Directive::Merge,
        Some("replace") => Directive::Replace,
        Some("delete") => Directive::Delete,
        other => return Err(format!("unknown patch strategy '{}'", other.unwrap_or_default())),
    };
    patch.remove(position);
    Ok(directive)
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One RFC 6902 operation.
#[derive(Deserialize)]
struct Operation {
    op: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    from: String,
    value: Option<Value>,
}

/// Parses JSON 6902 operations written as JSON or YAML.
pub fn parse_json_patch(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    let value: Value = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| e.to_string())?
    } else {
        let mut docs = crate::yaml::parse_documents_yaml11(text)?;
        if docs.len() != 1 {
            return Err("expected one list of operations".into());
        }
        docs.remove(0)
    };
    match value {
        Value::Array(ops) if ops.iter().all(|op| op.get("op").is_some()) => Ok(ops),
        _ => Err("not a list of JSON patch operations".into()),
    }
}

pub fn apply_json_patch(object: &mut Value, ops: &[Value]) -> Result<(), String> {
    for op in ops {
        let op: Operation = serde_json::from_value(op.clone()).map_err(|e| e.to_string())?;
        let value = || {
            op.value
                .clone()
                .ok_or_else(|| format!("{} operation has no value", op.op))
        };
        match op.op.as_str() {
            "add" => add(object, &op.path, value()?)?,
            "remove" => {
                remove(object, &op.path)?;
            }
            "replace" => match pointer_mut(object, &op.path) {
                Some(target) => *target = value()?,
                // kustomize's JSON patch library replaces a missing key of an existing object.
                None => add(object, &op.path, value()?).map_err(|_| {
                    format!(
                        "replace operation does not apply: doc is missing path: {}",
                        op.path
                    )
                })?,
            },
            "move" => {
                let moved = remove(object, &op.from)?;
                add(object, &op.path, moved)?;
            }
            "copy" => {
                let copied = pointer_mut(object, &op.from).cloned().ok_or_else(|| {
                    format!(
                        "copy operation does not apply: doc is missing from path: {}",
                        op.from
                    )
                })?;
                add(object, &op.path, copied)?;
            }
            "test" => {
                let actual = pointer_mut(object, &op.path).cloned();
                if actual.as_ref() != op.value.as_ref() {
                    return Err(format!("testing value {} failed", op.path));
                }
            }
            other => return Err(format!("unexpected json patch operation '{other}'")),
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("cannot operate on the whole document".into());
    }
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer '{path}'"))?;
    Ok((parent.to_string(), unescape(last)))
}

fn pointer_mut<'a>(object: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    object.pointer_mut(path)
}

fn add(object: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    let container = pointer_mut(object, &parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: {path}"))?;
    match container {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            let index: usize = last
                .parse()
                .map_err(|_| format!("add operation: invalid index in {path}"))?;
            if index > items.len() {
                return Err(format!(
                    "add operation does not apply: index out of bounds in {path}"
                ));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: {parent} is not a container"
        )),
    }
}

fn remove(object: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path}");
    match pointer_mut(object, &parent).ok_or_else(missing)? {
        Value::Object(map) => map.remove(&last).ok_or_else(missing),
        Value::Array(items) => {
            let index: usize = last.parse().map_err(|_| missing())?;
            if index >= items.len() {
                return Err(missing());
            }
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}
