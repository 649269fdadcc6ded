//! `replacements` (copy a field from one object into others) and legacy `vars` (`$(NAME)`
//! substituted in well-known fields at the end of the build).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::Error;
use crate::fieldspec::{self, CreateKind, FieldSpec};
use crate::kustomization::{FieldOptions, Replacement, ReplacementEntry, ReplacementTarget, Selector, Var};
use crate::loader::Loader;
use crate::resource::{Gvk, ResId, Resource};
use crate::transform::LabelSelector;

pub fn replacements(
    entries: &[ReplacementEntry],
    loader: &Loader,
    resources: &mut [Resource],
) -> Result<(), Error> {
    let mut list = Vec::new();
    for entry in entries {
        if entry.path.is_empty() {
            list.push(Replacement {
                source: entry.source.clone(),
                targets: entry.targets.clone(),
            });
            continue;
        }
        let (_, text) = loader.read_string(&entry.path)?;
        for document in crate::yaml::parse_documents(&text).map_err(Error::new)? {
            let parsed: Vec<Replacement> = match document {
                Value::Array(_) => serde_json::from_value(document),
                other => serde_json::from_value(other).map(|r| vec![r]),
            }
            .map_err(|e| Error::new(format!("replacements file '{}': {e}", entry.path)))?;
            list.extend(parsed);
        }
    }
    for replacement in &list {
        let (Some(source), false) = (&replacement.source, replacement.targets.is_empty()) else {
            return Err(Error::new(
                "replacements must specify a source and at least one target",
            ));
        };
        let describe = format!("{}/{}", source.kind, source.name);
        let matches: Vec<&Resource> = resources
            .iter()
            .filter(|r| {
                r.all_ids().any(|id| {
                    selected_by(
                        &id,
                        &source.group,
                        &source.version,
                        &source.kind,
                        &source.name,
                        &source.namespace,
                    )
                })
            })
            .collect();
        let source_resource = match matches.as_slice() {
            [one] => *one,
            [] => return Err(Error::new(format!("nothing selected by {describe}"))),
            _ => return Err(Error::new(format!("multiple matches for selector {describe}"))),
        };
        let field_path = if source.field_path.is_empty() {
            "metadata.name"
        } else {
            &source.field_path
        };
        let value = lookup(&source_resource.object, &split_dotted(field_path))
            .filter(|v| !is_empty(v))
            .ok_or_else(|| {
                Error::new(format!(
                    "fieldPath `{field_path}` is missing for replacement source {describe}"
                ))
            })?;
        let value = refine(value, source.options.as_ref())?;
        for target in &replacement.targets {
            apply_target(&value, target, resources)?;
        }
    }
    Ok(())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn selected_by(id: &ResId, group: &str, version: &str, kind: &str, name: &str, namespace: &str) -> bool {
    id.gvk.selected_by(group, version, kind)
        && (name.is_empty() || id.name == name)
        && (namespace.is_empty() || id.namespace == namespace)
}

fn selector_selects(selector: &Selector, id: &ResId) -> bool {
    selected_by(
        id,
        &selector.group,
        &selector.version,
        &selector.kind,
        &selector.name,
        &selector.namespace,
    )
}

fn refine(value: Value, options: Option<&FieldOptions>) -> Result<Value, Error> {
    let Some(options) = options.filter(|o| !o.delimiter.is_empty()) else {
        return Ok(value);
    };
    let text = scalar_text(&value)
        .ok_or_else(|| Error::new("delimiter option can only be used with scalar nodes"))?;
    let parts: Vec<&str> = text.split(options.delimiter.as_str()).collect();
    let part = usize::try_from(options.index)
        .ok()
        .and_then(|i| parts.get(i))
        .ok_or_else(|| {
            Error::new(format!(
                "options.index {} is out of bounds for value {text}",
                options.index
            ))
        })?;
    Ok(Value::String(part.to_string()))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn apply_target(value: &Value, target: &ReplacementTarget, resources: &mut [Resource]) -> Result<(), Error> {
    let select = target
        .select
        .as_ref()
        .ok_or_else(|| Error::new("target must specify resources to select"))?;
    let labels = LabelSelector::parse(&select.label_selector)?;
    let annotations = LabelSelector::parse(&select.annotation_selector)?;
    let default_paths = vec!["metadata.name".to_string()];
    let paths = if target.field_paths.is_empty() {
        &default_paths
    } else {
        &target.field_paths
    };
    let create = target.options.as_ref().is_some_and(|o| o.create);
    for resource in resources.iter_mut() {
        if !labels.matches(&resource.string_map("labels"))
            || !annotations.matches(&resource.string_map("annotations"))
        {
            continue;
        }
        let mut rejected = false;
        for reject in &target.reject {
            let by_id = !(reject.group.is_empty()
                && reject.version.is_empty()
                && reject.kind.is_empty()
                && reject.name.is_empty()
                && reject.namespace.is_empty());
            if by_id && resource.all_ids().any(|id| selector_selects(reject, &id)) {
                rejected = true;
            }
            let by_labels = !reject.label_selector.is_empty() || !reject.annotation_selector.is_empty();
            if by_labels
                && LabelSelector::parse(&reject.label_selector)?.matches(&resource.string_map("labels"))
                && LabelSelector::parse(&reject.annotation_selector)?
                    .matches(&resource.string_map("annotations"))
            {
                rejected = true;
            }
        }
        if rejected || !resource.all_ids().any(|id| selector_selects(select, &id)) {
            continue;
        }
        for path in paths {
            let elements = split_dotted(path);
            let mut count = 0;
            set_path(&mut resource.object, &elements, create, &mut |node| {
                count += 1;
                set_value(node, value, target.options.as_ref())
            })?;
            if count == 0 {
                let verb = if create { "find or create" } else { "find" };
                return Err(Error::new(format!(
                    "unable to {verb} field \"{path}\" in replacement target {}",
                    resource.id()
                )));
            }
        }
    }
    Ok(())
}

fn set_value(node: &mut Value, value: &Value, options: Option<&FieldOptions>) -> Result<(), Error> {
    let mut value = value.clone();
    if let Some(options) = options.filter(|o| !o.delimiter.is_empty()) {
        let current = scalar_text(node)
            .ok_or_else(|| Error::new("delimiter option can only be used with scalar nodes"))?;
        let mut parts: Vec<String> = current
            .split(options.delimiter.as_str())
            .map(str::to_string)
            .collect();
        let v = scalar_text(&value).unwrap_or_default();
        if options.index < 0 {
            parts.insert(0, v);
        } else if options.index as usize >= parts.len() {
            parts.push(v);
        } else {
            parts[options.index as usize] = v;
        }
        value = Value::String(parts.join(&options.delimiter));
    }
    // A scalar target keeps its type: only the text is copied.
    *node = match (&*node, scalar_text(&value)) {
        (Value::String(_), Some(text)) => Value::String(text),
        (Value::Number(_), Some(text)) => text
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        (Value::Bool(_), Some(text)) => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        _ => value,
    };
    Ok(())
}

/// Splits a kyaml field path on dots outside brackets.
pub fn split_dotted(path: &str) -> Vec<String> {
    // Split on dots, keeping escaped ones (`\.`); a leading dot is allowed.
    let mut pieces: Vec<&str> = path.split('.').collect();
    if pieces.len() > 1 && pieces[0].is_empty() {
        pieces.remove(0);
    }
    let mut split: Vec<String> = Vec::new();
    for piece in pieces {
        match split.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('.');
                last.push_str(piece);
            }
            _ => split.push(piece.to_string()),
        }
    }
    // A bracketed element split by the dots inside it is joined again: a list selector
    // (`[name=a.b]`) keeps its brackets, a map key (`[limits.memory]`) loses them.
    let mut parts = Vec::new();
    let mut i = 0;
    while i < split.len() {
        let element = &split[i];
        if element.starts_with('[') && !element.ends_with(']') {
            let mut bracketed = vec![element.clone()];
            while i < split.len() - 1 {
                i += 1;
                bracketed.push(split[i].clone());
                if split[i].ends_with(']') {
                    break;
                }
            }
            let joined = bracketed.join(".");
            if joined.contains('=') {
                parts.push(joined);
            } else {
                parts.push(joined.trim_matches(|c| c == '[' || c == ']').to_string());
            }
        } else {
            parts.push(element.clone());
        }
        i += 1;
    }
    parts
}

/// `[key=value]` or `[=value]`.
fn element_filter(element: &str) -> Option<(&str, &str)> {
    element.strip_prefix('[')?.strip_suffix(']')?.split_once('=')
}

fn element_matches(item: &Value, key: &str, value: &str) -> bool {
    let field = if key.is_empty() { Some(item) } else { item.get(key) };
    field.and_then(scalar_text).is_some_and(|t| t == value)
}

pub fn lookup(node: &Value, path: &[String]) -> Option<Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node.clone());
    };
    match node {
        Value::Object(map) => lookup(map.get(first.as_str())?, rest),
        Value::Array(items) => {
            if let Some((key, value)) = element_filter(first) {
                let item = items.iter().find(|i| element_matches(i, key, value))?;
                lookup(item, rest)
            } else {
                let index: usize = first.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
                lookup(items.get(index)?, rest)
            }
        }
        _ => None,
    }
}

fn set_path(
    node: &mut Value,
    path: &[String],
    create: bool,
    set: &mut dyn FnMut(&mut Value) -> Result<(), Error>,
) -> Result<(), Error> {
    let Some((first, rest)) = path.split_first() else {
        return set(node);
    };
    match node {
        Value::Object(map) => {
            if first == "*" {
                for value in map.values_mut() {
                    set_path(value, rest, create, set)?;
                }
                return Ok(());
            }
            if !map.contains_key(first.as_str()) {
                if !create {
                    return Ok(());
                }
                let fresh = if rest.first().is_some_and(|r| r.starts_with('[')) {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                };
                map.insert(first.clone(), if rest.is_empty() { Value::Null } else { fresh });
            }
            match map.get_mut(first.as_str()) {
                Some(child) => set_path(child, rest, create, set),
                None => Ok(()),
            }
        }
        Value::Array(items) => {
            if first == "*" {
                for item in items.iter_mut() {
                    set_path(item, rest, create, set)?;
                }
                return Ok(());
            }
            if let Some((key, value)) = element_filter(first) {
                let mut any = false;
                for item in items.iter_mut().filter(|i| element_matches(i, key, value)) {
                    any = true;
                    set_path(item, rest, create, set)?;
                }
                if !any && create && !key.is_empty() {
                    let mut element = Map::new();
                    element.insert(key.to_string(), Value::String(value.to_string()));
                    items.push(Value::Object(element));
                    if let Some(last) = items.last_mut() {
                        set_path(last, rest, create, set)?;
                    }
                }
                return Ok(());
            }
            match first
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<usize>()
            {
                Ok(index) => match items.get_mut(index) {
                    Some(item) => set_path(item, rest, create, set),
                    None => Ok(()),
                },
                Err(_) => Ok(()),
            }
        }
        Value::Null if create => {
            *node = Value::Object(Map::new());
            set_path(node, path, create, set)
        }
        _ => Ok(()),
    }
}

/// Resolves legacy vars and substitutes them.
pub fn resolve_vars(
    vars: &[Var],
    var_references: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values = HashMap::new();
    for var in vars {
        let target = &var.objref;
        let gvk = if target.api_version.is_empty() {
            Gvk {
                group: target.group.clone(),
                version: target.version.clone(),
                kind: target.kind.clone(),
            }
        } else {
            Gvk::from_api_version(&target.api_version, &target.kind)
        };
        let matches: Vec<&Resource> = resources
            .iter()
            .filter(|r| {
                r.all_ids().any(|id| {
                    id.gvk.selected_by(&gvk.group, &gvk.version, &gvk.kind)
                        && id.name == target.name
                        && (target.namespace.is_empty() || id.namespace == target.namespace)
                })
            })
            .collect();
        let resource = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::new(format!(
                    "var '{}' cannot be mapped to a field in the set of known resources",
                    var.name
                )));
            }
            _ => {
                return Err(Error::new(format!(
                    "found {} resId matches for var {} (unable to disambiguate)",
                    matches.len(),
                    var.name
                )));
            }
        };
        let field_path = var
            .fieldref
            .as_ref()
            .map(|f| f.field_path.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("metadata.name");
        let path: Vec<String> = split_dotted(&field_path.replace('[', ".["))
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        let value = lookup(&resource.object, &path).ok_or_else(|| {
            Error::new(format!(
                "field specified in var '{}' not found in corresponding resource",
                var.name
            ))
        })?;
        values.insert(var.name.clone(), value);
    }
    for resource in resources.iter_mut() {
        for spec in var_references {
            let mut set = |node: &mut Value| {
                substitute(node, &values);
                Ok(())
            };
            fieldspec::apply(&mut resource.object, spec, CreateKind::Nothing, &mut set)
                .map_err(Error::new)?;
        }
    }
    Ok(())
}

fn substitute(node: &mut Value, values: &HashMap<String, Value>) {
    match node {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("$(").and_then(|r| r.strip_suffix(')'))
                && let Some(value) = values.get(name)
                && !value.is_string()
                && scalar_text(value).is_some()
            {
                *node = value.clone();
                return;
            }
            *s = expand(s, values);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, values)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, values)),
        _ => {}
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` escapes, unknown references stay as written.
fn expand(input: &str, values: &HashMap<String, Value>) -> String {
    let mut out = String::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut checkpoint = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[checkpoint..i]);
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match values.get(name).and_then(scalar_text) {
                            Some(value) => out.push_str(&value),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                    }
                    None => {
                        out.push_str(&input[i..]);
                        i = bytes.len();
                    }
                },
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
            checkpoint = i;
        } else {
            i += 1;
        }
    }
    if checkpoint < bytes.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}
