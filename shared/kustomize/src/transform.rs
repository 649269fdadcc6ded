//! The built-in transformers, in the order kustomize runs them within one kustomization.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use crate::Error;
use crate::config::TransformerConfig;
use crate::fieldspec::{self, CreateKind, FieldSpec};
use crate::kustomization::{Image, Kustomization, Label, Patch, ReplacementEntry, Replica, Selector};
use crate::loader::Loader;
use crate::patch;
use crate::resource::Resource;

/// One built-in transformer, configured: from a kustomization's own fields, or from a plugin
/// configuration (`apiVersion: builtin`) that `transformers:` names.
pub enum Transformer {
    StrategicMerge(Vec<String>),
    Patch(Patch),
    Namespace {
        namespace: String,
        specs: Vec<FieldSpec>,
        unset_only: bool,
        subjects: SubjectMode,
    },
    Prefix(String, Vec<FieldSpec>),
    Suffix(String, Vec<FieldSpec>),
    Labels(BTreeMap<String, String>, Vec<FieldSpec>),
    Annotations(BTreeMap<String, String>, Vec<FieldSpec>),
    Json6902(Patch),
    Replicas(Replica, Vec<FieldSpec>),
    Image(Image, Vec<FieldSpec>),
    Replacements(Vec<ReplacementEntry>),
    /// Several run in order as one (PrefixSuffixTransformer).
    Composite(Vec<Transformer>),
}

/// Which RoleBinding subjects get the namespace (NamespaceTransformer's `setRoleBindingSubjects`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SubjectMode {
    DefaultOnly,
    AllServiceAccounts,
    None,
}

impl Transformer {
    /// The built-in plugin kind kustomize configures for it (build metadata names it).
    pub fn builtin_kind(&self) -> &'static str {
        match self {
            Transformer::StrategicMerge(_) => "PatchStrategicMergeTransformer",
            Transformer::Patch(_) => "PatchTransformer",
            Transformer::Namespace { .. } => "NamespaceTransformer",
            Transformer::Prefix(..) => "PrefixTransformer",
            Transformer::Suffix(..) => "SuffixTransformer",
            Transformer::Labels(..) => "LabelTransformer",
            Transformer::Annotations(..) => "AnnotationsTransformer",
            Transformer::Json6902(_) => "PatchJson6902Transformer",
            Transformer::Replicas(..) => "ReplicaCountTransformer",
            Transformer::Image(..) => "ImageTagTransformer",
            Transformer::Replacements(_) => "ReplacementTransformer",
            Transformer::Composite(_) => "PrefixSuffixTransformer",
        }
    }
}

/// The transformers a kustomization's fields configure, in the order kustomize runs them.
pub fn configured(k: &Kustomization, config: &TransformerConfig) -> Vec<Transformer> {
    let mut list = Vec::new();
    if !k.patches_strategic_merge.is_empty() {
        list.push(Transformer::StrategicMerge(k.patches_strategic_merge.clone()));
    }
    list.extend(k.patches.iter().cloned().map(Transformer::Patch));
    if !k.namespace.is_empty() {
        list.push(Transformer::Namespace {
            namespace: k.namespace.clone(),
            specs: config.namespace.clone(),
            unset_only: false,
            subjects: SubjectMode::DefaultOnly,
        });
    }
    if !k.name_prefix.is_empty() {
        list.push(Transformer::Prefix(
            k.name_prefix.clone(),
            config.name_prefix.clone(),
        ));
    }
    if !k.name_suffix.is_empty() {
        list.push(Transformer::Suffix(
            k.name_suffix.clone(),
            config.name_suffix.clone(),
        ));
    }
    for label in &k.labels {
        list.push(Transformer::Labels(
            label.pairs.clone(),
            label_specs(label, config),
        ));
    }
    // kustomize configures the commonLabels one whenever `labels` or `commonLabels` is set.
    if !k.labels.is_empty() || !k.common_labels.is_empty() {
        list.push(Transformer::Labels(
            k.common_labels.clone(),
            config.common_labels.clone(),
        ));
    }
    if !k.common_annotations.is_empty() {
        list.push(Transformer::Annotations(
            k.common_annotations.clone(),
            config.common_annotations.clone(),
        ));
    }
    list.extend(k.patches_json6902.iter().cloned().map(Transformer::Json6902));
    for replica in &k.replicas {
        list.push(Transformer::Replicas(replica.clone(), config.replicas.clone()));
    }
    for image in &k.images {
        list.push(Transformer::Image(image.clone(), config.images.clone()));
    }
    if !k.replacements.is_empty() {
        list.push(Transformer::Replacements(k.replacements.clone()));
    }
    list
}

/// Runs transformers over the accumulated resources; `loader` reads the files they name.
pub fn run_all(
    transformers: &[Transformer],
    loader: &Loader,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    for transformer in transformers {
        match transformer {
            Transformer::StrategicMerge(paths) => {
                for path in paths {
                    patches_strategic_merge(path, loader, resources)
                        .map_err(|e| e.context("patchesStrategicMerge"))?;
                }
            }
            Transformer::Patch(p) => apply_patch(p, loader, resources).map_err(|e| e.context("patches"))?,
            Transformer::Namespace {
                namespace: ns,
                specs,
                unset_only,
                subjects,
            } => namespace(ns, specs, *unset_only, *subjects, resources)?,
            Transformer::Prefix(prefix, specs) => prefix_suffix(prefix, true, specs, resources)?,
            Transformer::Suffix(suffix, specs) => prefix_suffix(suffix, false, specs, resources)?,
            // Without entries nothing happens, not even the creation of empty maps.
            Transformer::Labels(pairs, specs) | Transformer::Annotations(pairs, specs) => {
                if !pairs.is_empty() {
                    set_map_entries(pairs, specs, resources)?;
                }
            }
            Transformer::Json6902(p) => {
                apply_patch(p, loader, resources).map_err(|e| e.context("patchesJson6902"))?;
            }
            Transformer::Replicas(replica, specs) => replicas(replica, specs, resources)?,
            Transformer::Image(image, specs) => images(image, specs, resources)?,
            Transformer::Replacements(entries) => crate::replace::replacements(entries, loader, resources)?,
            Transformer::Composite(list) => run_all(list, loader, resources)?,
        }
    }
    Ok(())
}

/// A `labels` entry's field specs: its own, the configured `labels`, and the object's labels
/// (with templates, or with selectors and templates).
fn label_specs(label: &Label, config: &TransformerConfig) -> Vec<FieldSpec> {
    let mut specs = crate::config::specs_of(&label.fields);
    let mut add = |more: &[FieldSpec]| {
        // kustomize refuses an entry whose own spec conflicts with a default one on `create`;
        // keeping the entry's spec builds instead, which is the only difference.
        let _ = crate::config::merge_specs(&mut specs, more);
    };
    add(&config.labels);
    if label.include_selectors {
        add(&config.common_labels);
    } else {
        if label.include_templates {
            add(&config.template_labels);
        }
        add(&[FieldSpec::new("", "metadata/labels", true)]);
    }
    specs
}

fn each_spec(
    resources: &mut [Resource],
    specs: &[FieldSpec],
    create: CreateKind,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), Error> {
    for resource in resources.iter_mut() {
        for spec in specs {
            fieldspec::apply(&mut resource.object, spec, create, set)
                .map_err(|e| Error::new(format!("{e} of object {}", resource.id())))?;
        }
    }
    Ok(())
}

fn namespace(
    namespace: &str,
    specs: &[FieldSpec],
    unset_only: bool,
    subjects: SubjectMode,
    resources: &mut [Resource],
) -> Result<(), Error> {
    let set_value = |node: &mut Value| {
        if !unset_only || node.as_str().is_none_or(str::is_empty) {
            *node = Value::String(namespace.to_string());
        }
        Ok(())
    };
    let metadata_namespace = FieldSpec::new("", "metadata/namespace", true);
    for resource in resources.iter_mut() {
        resource.store_previous_id();
        let gvk = resource.gvk();
        if !gvk.is_cluster_scoped() {
            let mut set = set_value;
            fieldspec::apply(
                &mut resource.object,
                &metadata_namespace,
                CreateKind::Scalar,
                &mut set,
            )
            .map_err(Error::new)?;
        }
        let api_version = resource.str_at(&["apiVersion"]).to_string();
        let binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
        let mut set = set_value;
        for spec in specs {
            // metadata/namespace is set above (never on cluster-scoped kinds); a Namespace object
            // is renamed only when it is core v1; binding subjects follow the subject mode.
            if spec.path == "metadata/namespace"
                || (spec.path == "metadata/name" && api_version != "v1")
                || (binding && spec.path == "subjects/namespace")
            {
                continue;
            }
            fieldspec::apply(&mut resource.object, spec, CreateKind::Scalar, &mut set)
                .map_err(|e| Error::new(format!("namespace transformation failed: {e}")))?;
        }
        if binding
            && subjects != SubjectMode::None
            && let Some(Value::Array(list)) = resource.object.get_mut("subjects")
        {
            for subject in list.iter_mut().filter_map(Value::as_object_mut) {
                let selected = match subjects {
                    SubjectMode::DefaultOnly => {
                        subject.get("name").and_then(Value::as_str) == Some("default")
                    }
                    _ => subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount"),
                };
                if selected {
                    set_value(subject.entry("namespace").or_insert(Value::Null)).map_err(Error::new)?;
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for resource in resources.iter() {
        let id = resource.id();
        if !seen.insert(id.key()) {
            return Err(Error::new(format!(
                "namespace transformation produces ID conflict: {id}"
            )));
        }
    }
    Ok(())
}

fn prefix_suffix(
    affix: &str,
    is_prefix: bool,
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    for resource in resources.iter_mut() {
        let original = resource.original_id().gvk;
        let skipped = original.kind == "CustomResourceDefinition"
            || original.kind == "Namespace"
            || (original.group == "apiregistration.k8s.io" && original.kind == "APIService");
        if skipped {
            continue;
        }
        for spec in specs.iter().filter(|s| s.selects(&original)) {
            if spec.path == "metadata/name" {
                if is_prefix {
                    resource.name_prefixes.push(affix.to_string());
                } else {
                    resource.name_suffixes.push(affix.to_string());
                }
                if !affix.is_empty() {
                    resource.store_previous_id();
                }
            }
            let mut set = |node: &mut Value| {
                if let Value::String(value) = node {
                    *value = if is_prefix {
                        format!("{affix}{value}")
                    } else {
                        format!("{value}{affix}")
                    };
                }
                Ok(())
            };
            fieldspec::apply(&mut resource.object, spec, CreateKind::Scalar, &mut set)
                .map_err(|e| Error::new(format!("{e} of object {}", resource.id())))?;
        }
    }
    Ok(())
}

fn set_map_entries(
    entries: &BTreeMap<String, String>,
    specs: &[FieldSpec],
    resources: &mut [Resource],
) -> Result<(), Error> {
    let mut set = |node: &mut Value| {
        for (key, value) in entries {
            fieldspec::set_entry(key, value)(node)?;
        }
        Ok(())
    };
    each_spec(resources, specs, CreateKind::Map, &mut set)
}

fn replicas(replica: &Replica, specs: &[FieldSpec], resources: &mut [Resource]) -> Result<(), Error> {
    let mut found = false;
    for resource in resources.iter_mut() {
        if !resource.all_ids().any(|id| id.name == replica.name) {
            continue;
        }
        let gvk = resource.gvk();
        for spec in specs.iter().filter(|s| s.selects(&gvk)) {
            found = true;
            let mut set = |node: &mut Value| {
                *node = Value::from(replica.count);
                Ok(())
            };
            fieldspec::apply(&mut resource.object, spec, CreateKind::Scalar, &mut set).map_err(Error::new)?;
        }
    }
    if !found {
        let kinds: Vec<&str> = specs.iter().map(|s| s.kind.as_str()).collect();
        return Err(Error::new(format!(
            "resource with name {} does not match a config with the following GVK [{}]",
            replica.name,
            kinds.join(" ")
        )));
    }
    Ok(())
}

fn images(image: &Image, specs: &[FieldSpec], resources: &mut [Resource]) -> Result<(), Error> {
    let pattern = Regex::new(&format!(
        "^{}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$",
        image.name
    ))
    .map_err(|e| Error::new(format!("image name '{}': {e}", image.name)))?;
    let mut update = |node: &mut Value| -> Result<(), String> {
        let Value::String(current) = node else {
            return Err("image must be a string".into());
        };
        if pattern.is_match(current) {
            *current = updated_image(current, image);
        }
        Ok(())
    };
    for resource in resources.iter_mut() {
        if resource.kind() == "CustomResourceDefinition" {
            continue;
        }
        // kustomize's legacy pass: every `containers` and `initContainers` list, anywhere.
        update_containers(&mut resource.object, &mut update).map_err(Error::new)?;
        for spec in specs {
            fieldspec::apply(&mut resource.object, spec, CreateKind::Nothing, &mut update)
                .map_err(Error::new)?;
        }
    }
    Ok(())
}

fn update_containers(
    node: &mut Value,
    update: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    match node {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                update_containers(value, update)?;
                if (key == "containers" || key == "initContainers")
                    && let Value::Array(items) = value
                {
                    for item in items {
                        if let Some(image) = item.get_mut("image") {
                            update(image)?;
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                update_containers(item, update)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|&i| i > 0).unwrap_or(0);
    let search = &image[slash..];
    let at = search.find('@').map(|i| i + slash);
    let colon = search.find(':').map(|i| i + slash);
    match (at, colon) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (Some(at), colon) if colon.is_none_or(|c| at < c) => (
            image[..at].to_string(),
            String::new(),
            image[at + 1..].to_string(),
        ),
        (Some(at), Some(colon)) => (
            image[..colon].to_string(),
            image[colon + 1..at].to_string(),
            image[at + 1..].to_string(),
        ),
        (_, Some(colon)) => (
            image[..colon].to_string(),
            image[colon + 1..].to_string(),
            String::new(),
        ),
        _ => (image.to_string(), String::new(), String::new()),
    }
}

fn updated_image(current: &str, image: &Image) -> String {
    let (mut name, mut tag, mut digest) = split_image(current);
    if !image.new_name.is_empty() {
        name = image.new_name.clone();
    }
    if !image.new_tag.is_empty() && !image.digest.is_empty() {
        tag = image.new_tag.clone();
        digest = image.digest.clone();
    } else if !image.new_tag.is_empty() {
        tag = image.new_tag.clone();
        digest.clear();
    } else if !image.digest.is_empty() {
        tag.clear();
        digest = image.digest.clone();
    } else if !image.tag_suffix.is_empty() {
        tag.push_str(&image.tag_suffix);
        digest.clear();
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    name
}

fn patches_strategic_merge(
    path_or_inline: &str,
    loader: &Loader,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    // An entry is a file path, or the patch itself when it does not name a file.
    let text = match loader.locate(path_or_inline) {
        Some(_) => loader.read_string(path_or_inline)?.1,
        None if path_or_inline.contains('\n') || path_or_inline.contains(':') => path_or_inline.to_string(),
        None => loader.read_string(path_or_inline)?.1,
    };
    let documents = crate::yaml::parse_documents(&text).map_err(Error::new)?;
    for document in documents {
        apply_strategic_merge_by_id(&document, false, false, resources)?;
    }
    Ok(())
}

/// A strategic merge patch applied to the one object its own kind/name/namespace identify.
fn apply_strategic_merge_by_id(
    patch: &Value,
    allow_name_change: bool,
    allow_kind_change: bool,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    let patch_resource = Resource::new(patch.clone());
    let id = patch_resource.id();
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.all_ids().any(|rid| rid.equals(&id)))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [index] => {
            let index = *index;
            if apply_strategic_merge(&mut resources[index], patch, allow_name_change, allow_kind_change)? {
                resources.remove(index);
            }
            Ok(())
        }
        [] => Err(Error::new(format!(
            "no resource matches strategic merge patch \"{id}\""
        ))),
        _ => Err(Error::new(format!(
            "multiple resources match strategic merge patch \"{id}\""
        ))),
    }
}

/// Returns true when the patch deleted the object.
fn apply_strategic_merge(
    resource: &mut Resource,
    patch: &Value,
    allow_name_change: bool,
    allow_kind_change: bool,
) -> Result<bool, Error> {
    let (name, namespace, kind) = (
        resource.name().to_string(),
        resource.namespace().to_string(),
        resource.kind().to_string(),
    );
    if allow_name_change || allow_kind_change {
        resource.store_previous_id();
    }
    let merged = patch::strategic_merge(&resource.object, patch, &resource.empty_nulls)
        .map_err(|e| Error::new(format!("applying patch to {}: {e}", resource.id())))?;
    let Some(merged) = merged.filter(|m| m.as_object().is_some_and(|o| !o.is_empty())) else {
        return Ok(true);
    };
    resource.object = merged;
    if !allow_kind_change {
        crate::resource::object_mut(&mut resource.object).insert("kind".into(), Value::String(kind));
    }
    if !allow_name_change {
        resource.set_name(&name);
    }
    resource.set_namespace(&namespace);
    Ok(false)
}

fn apply_patch(p: &Patch, loader: &Loader, resources: &mut Vec<Resource>) -> Result<(), Error> {
    let inline = p.patch.trim();
    let (text, source) = match (inline.is_empty(), p.path.is_empty()) {
        (true, true) => return Err(Error::new("must specify one of patch and path")),
        (false, false) => return Err(Error::new("patch and path can't be set at the same time")),
        (false, true) => (inline.to_string(), "inline patch".to_string()),
        (true, false) => (loader.read_string(&p.path)?.1, format!("patch file '{}'", p.path)),
    };
    if let Ok(ops) = patch::parse_json_patch(&text) {
        let Some(target) = &p.target else {
            return Err(Error::new(format!(
                "must specify a target for JSON patch {source}"
            )));
        };
        for index in select(target, resources)? {
            let resource = &mut resources[index];
            resource.store_previous_id();
            // kustomize keeps its own bookkeeping annotations on every object while it builds, so
            // an `add` under /metadata/annotations finds the map even when the object has none
            // (labels get no such help). An empty map is dropped again below.
            if let Some(Value::Object(metadata)) = resource.object.get_mut("metadata") {
                let annotations = metadata.entry("annotations").or_insert(Value::Null);
                if annotations.is_null() {
                    *annotations = Value::Object(serde_json::Map::new());
                }
            }
            patch::apply_json_patch(&mut resource.object, &ops)
                .map_err(|e| Error::new(format!("{source} on {}: {e}", resource.id())))?;
            // kustomize applies a JSON patch to the object as JSON: its nulls come back written.
            resource.empty_nulls.clear();
            // kustomize rewrites the annotations after a JSON patch, as a map of strings.
            let annotations: serde_json::Map<String, Value> = resource
                .string_map("annotations")
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, Value::String(text))
                })
                .collect();
            resource.set_string_map("annotations", annotations);
        }
        return Ok(());
    }
    let documents = crate::yaml::parse_documents(&text).map_err(|e| Error::new(format!("{source}: {e}")))?;
    let options = p.options.clone().unwrap_or_default();
    let Some(target) = &p.target else {
        for document in &documents {
            apply_strategic_merge_by_id(
                document,
                options.allow_name_change,
                options.allow_kind_change,
                resources,
            )
            .map_err(|e| e.context(source.clone()))?;
        }
        return Ok(());
    };
    let [patch] = documents.as_slice() else {
        return Err(Error::new(format!(
            "Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field: {source}"
        )));
    };
    let selected = select(target, resources)?;
    let mut deleted = Vec::new();
    for index in selected {
        if apply_strategic_merge(
            &mut resources[index],
            patch,
            options.allow_name_change,
            options.allow_kind_change,
        )? {
            deleted.push(index);
        }
    }
    for index in deleted.into_iter().rev() {
        resources.remove(index);
    }
    Ok(())
}

/// Indices of the resources a patch target selects (regular expressions, anchored).
pub fn select(selector: &Selector, resources: &[Resource]) -> Result<Vec<usize>, Error> {
    let compile = |pattern: &str| -> Result<Option<Regex>, Error> {
        if pattern.is_empty() {
            return Ok(None);
        }
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Some)
            .map_err(|e| Error::new(format!("target selector '{pattern}': {e}")))
    };
    let (group, version, kind) = (
        compile(&selector.group)?,
        compile(&selector.version)?,
        compile(&selector.kind)?,
    );
    let (name, namespace) = (compile(&selector.name)?, compile(&selector.namespace)?);
    let labels = LabelSelector::parse(&selector.label_selector)?;
    let annotations = LabelSelector::parse(&selector.annotation_selector)?;
    let matches = |re: &Option<Regex>, value: &str| re.as_ref().is_none_or(|re| re.is_match(value));
    let mut selected = Vec::new();
    for (index, resource) in resources.iter().enumerate() {
        let (current, original) = (resource.id(), resource.original_id());
        if !matches(&namespace, original.effective_namespace())
            && !matches(&namespace, current.effective_namespace())
        {
            continue;
        }
        if !matches(&name, &original.name) && !matches(&name, &current.name) {
            continue;
        }
        let gvk = &current.gvk;
        if !matches(&group, &gvk.group) || !matches(&version, &gvk.version) || !matches(&kind, &gvk.kind) {
            continue;
        }
        if !labels.matches(&resource.string_map("labels"))
            || !annotations.matches(&resource.string_map("annotations"))
        {
            continue;
        }
        selected.push(index);
    }
    Ok(selected)
}

/// A Kubernetes label selector: `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`.
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, Error> {
        let mut requirements = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let set = |s: &str| -> Vec<String> {
            s.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().to_string())
                .collect()
        };
        for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let requirement = if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotIn(key.trim().into(), vec![value.trim().into()])
            } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::In(key.trim().into(), vec![value.trim().into()])
            } else if let Some((key, values)) = part.split_once(" notin ") {
                Requirement::NotIn(key.trim().into(), set(values))
            } else if let Some((key, values)) = part.split_once(" in ") {
                Requirement::In(key.trim().into(), set(values))
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().into())
            } else if part.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(part.into())
            } else {
                return Err(Error::new(format!(
                    "unable to parse requirement '{part}' of selector '{text}'"
                )));
            };
            requirements.push(requirement);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn matches(&self, labels: &serde_json::Map<String, Value>) -> bool {
        let get = |key: &str| {
            labels
                .get(key)
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
        };
        self.requirements.iter().all(|r| match r {
            Requirement::In(key, values) => get(key).is_some_and(|v| values.contains(&v)),
            Requirement::NotIn(key, values) => get(key).is_none_or(|v| !values.contains(&v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}
