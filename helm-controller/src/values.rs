//! The values of a release, composed as Flux composes them: each `valuesFrom` entry in order
//! (a whole YAML map merged, or one string placed at `targetPath`), then `values` on top.

use std::collections::BTreeMap;

use driftless_api::helm::HelmRelease;
use driftless_api::meta::ValuesReference;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt};
use serde_json::{Map, Value};

/// Why values could not be composed.
#[derive(Debug)]
pub enum ValuesError {
    /// A referenced ConfigMap or Secret (or its key) is not there yet.
    Missing(String),
    /// The referenced content is not valid values, or a `targetPath` is malformed.
    Invalid(String),
    /// The apiserver failed.
    Unavailable(String),
}

/// Composes the values of `hr`.
pub async fn compose(client: &Client, hr: &HelmRelease) -> Result<Value, ValuesError> {
    let namespace = hr.namespace().unwrap_or_default();
    let mut result = Map::new();
    for reference in hr.spec.values_from.iter().flatten() {
        let Some(data) = read(client, &namespace, reference).await? else {
            continue;
        };
        let described = format!("{} '{namespace}/{}'", reference.kind, reference.name);
        match reference.target_path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => {
                let value = if reference.literal == Some(true) {
                    Value::String(data)
                } else {
                    typed(&data)
                };
                set_path(&mut result, path, value)
                    .map_err(|e| ValuesError::Invalid(format!("invalid targetPath of {described}: {e}")))?;
            }
            None => {
                let parsed: Value = serde_norway::from_str(&data).map_err(|e| {
                    ValuesError::Invalid(format!(
                        "unable to read values from key '{}' in {described}: {e}",
                        key_of(reference)
                    ))
                })?;
                match parsed {
                    Value::Object(map) => merge(&mut result, map),
                    Value::Null => {}
                    _ => {
                        return Err(ValuesError::Invalid(format!(
                            "values from key '{}' in {described} are not a map",
                            key_of(reference)
                        )));
                    }
                }
            }
        }
    }
    if let Some(Value::Object(values)) = &hr.spec.values {
        merge(&mut result, values.clone());
    }
    Ok(Value::Object(result))
}

fn key_of(reference: &ValuesReference) -> &str {
    reference
        .values_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .unwrap_or("values.yaml")
}

/// The text at the reference's key; None when the reference is optional and absent.
async fn read(
    client: &Client,
    namespace: &str,
    reference: &ValuesReference,
) -> Result<Option<String>, ValuesError> {
    let key = key_of(reference);
    let optional = reference.optional == Some(true);
    let described = format!("{} '{namespace}/{}'", reference.kind, reference.name);
    let unavailable = |e: kube::Error| ValuesError::Unavailable(format!("could not get {described}: {e}"));
    let data: Option<BTreeMap<String, String>> = match reference.kind.as_str() {
        "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(unavailable)?
            .map(|c| c.data.unwrap_or_default()),
        "Secret" => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(unavailable)?
            .map(|s| {
                let mut data: BTreeMap<String, String> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(s.string_data.unwrap_or_default());
                data
            }),
        other => {
            return Err(ValuesError::Invalid(format!(
                "unsupported values reference kind '{other}'"
            )));
        }
    };
    let Some(data) = data else {
        return if optional {
            Ok(None)
        } else {
            Err(ValuesError::Missing(format!("could not find {described}")))
        };
    };
    match data.get(key) {
        Some(text) => Ok(Some(text.clone())),
        None if optional => Ok(None),
        None => Err(ValuesError::Missing(format!(
            "missing key '{key}' in {described}"
        ))),
    }
}

/// A value given at a target path is typed as Helm's `--set` types it: integers and booleans
/// become numbers and booleans, `null` null, anything else stays a string.
fn typed(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => text
            .parse::<i64>()
            .ok()
            .filter(|_| !text.starts_with('0') || text == "0")
            .map(Value::from)
            .unwrap_or_else(|| Value::String(text.to_string())),
    }
}

pub use driftless_chart::values::merge;

/// Largest list index a target path may name (Helm's `--set` limit).
const MAX_INDEX: usize = 65536;

/// One step of a target path: a map key, or a list index.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses Helm's `--set` path syntax: keys split at `.` (`\.` is a literal dot), each key
/// optionally followed by `[n]` list indices.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut key = String::new();
    let mut chars = path.chars().peekable();
    let mut after_index = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => key.push(escaped),
                None => return Err(format!("'{path}' ends with an escape")),
            },
            '.' => {
                if !after_index {
                    if key.is_empty() {
                        return Err(format!("'{path}' has an empty key"));
                    }
                    steps.push(Step::Key(std::mem::take(&mut key)));
                }
                after_index = false;
            }
            '[' => {
                if !key.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut key)));
                } else if !after_index {
                    return Err(format!("'{path}' has an index without a key"));
                }
                let mut digits = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    digits.push(d);
                }
                let index = digits
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i <= MAX_INDEX)
                    .ok_or_else(|| format!("'{path}' has an invalid index '[{digits}]'"))?;
                steps.push(Step::Index(index));
                after_index = true;
            }
            c => {
                if after_index {
                    return Err(format!("'{path}' has text after an index"));
                }
                key.push(c);
            }
        }
    }
    if !key.is_empty() {
        steps.push(Step::Key(key));
    } else if !after_index {
        return Err(format!("'{path}' has an empty key"));
    }
    Ok(steps)
}

/// Places `value` at `path`, creating maps and growing lists (with nulls) on the way.
fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), String> {
    let steps = parse_path(path)?;
    let mut slot: &mut Value = {
        let Some(Step::Key(first)) = steps.first() else {
            return Err(format!("'{path}' must start with a key"));
        };
        root.entry(first.clone()).or_insert(Value::Null)
    };
    for step in &steps[1..] {
        slot = match step {
            Step::Key(k) => {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                slot.as_object_mut()
                    .map(|m| m.entry(k.clone()).or_insert(Value::Null))
                    .ok_or_else(|| format!("'{path}': not a map"))?
            }
            Step::Index(i) => {
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                let list = slot
                    .as_array_mut()
                    .ok_or_else(|| format!("'{path}': not a list"))?;
                if list.len() <= *i {
                    list.resize(i + 1, Value::Null);
                }
                &mut list[*i]
            }
        };
    }
    *slot = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_the_rest_replaces() {
        let mut into = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"})
            .as_object()
            .unwrap()
            .clone();
        merge(
            &mut into,
            json!({"a": {"c": [3], "e": true}, "d": {"f": 1}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            Value::Object(into),
            json!({"a": {"b": 1, "c": [3], "e": true}, "d": {"f": 1}})
        );
    }

    #[test]
    fn target_paths_follow_helm_set_syntax() {
        let mut root = Map::new();
        set_path(&mut root, "image.tag", typed("6.0.0")).unwrap();
        set_path(&mut root, "ingress.hosts[1].name", typed("web")).unwrap();
        set_path(&mut root, "annotations.example\\.com/x", typed("1")).unwrap();
        set_path(&mut root, "enabled", typed("true")).unwrap();
        assert_eq!(
            Value::Object(root),
            json!({"image": {"tag": "6.0.0"}, "ingress": {"hosts": [null, {"name": "web"}]},
                "annotations": {"example.com/x": 1}, "enabled": true})
        );
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[x]").is_err());
        assert!(parse_path("a[99999999999]").is_err());
        assert_eq!(typed("007"), json!("007"));
    }
}
