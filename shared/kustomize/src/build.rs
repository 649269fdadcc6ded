//! The build: accumulate a kustomization tree, then the steps kustomize runs once at the top
//! (name hashes, name references, vars, local-config removal, sorting).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::Error;
use crate::config::TransformerConfig;
use crate::generate::{self, Kind};
use crate::kustomization::{FILE_NAMES, Kustomization, Var};
use crate::loader::Loader;
use crate::origin::Origin;
use crate::resource::{Behavior, Resource};
use crate::{nameref, plugin, replace, transform};

/// What a kustomization tree accumulates: its objects, its vars and its transformer
/// configuration (kustomize's defaults plus every `configurations:` file in the tree so far).
struct Accumulated {
    resources: Vec<Resource>,
    vars: Vec<Var>,
    config: Arc<TransformerConfig>,
}

impl Default for Accumulated {
    fn default() -> Accumulated {
        Accumulated {
            resources: Vec::new(),
            vars: Vec::new(),
            config: TransformerConfig::default_shared(),
        }
    }
}

type IdKey = (String, String, String, String, String);

impl Accumulated {
    /// Appends objects, refusing any whose id is already taken.
    fn append_all(&mut self, new: Vec<Resource>) -> Result<(), Error> {
        let mut taken: HashSet<IdKey> = self.resources.iter().map(|r| r.id().key()).collect();
        for resource in new {
            let id = resource.id();
            if !taken.insert(id.key()) {
                return Err(Error::new(format!(
                    "may not add resource with an already registered id: {id}"
                )));
            }
            self.resources.push(resource);
        }
        Ok(())
    }

    fn absorb(&mut self, other: Accumulated) -> Result<(), Error> {
        self.append_all(other.resources)?;
        self.merge_config(&other.config)?;
        self.add_vars(other.vars)
    }

    fn merge_config(&mut self, other: &Arc<TransformerConfig>) -> Result<(), Error> {
        if !Arc::ptr_eq(&self.config, other) && !Arc::ptr_eq(other, &TransformerConfig::default_shared()) {
            Arc::make_mut(&mut self.config).merge(other)?;
        }
        Ok(())
    }

    fn add_vars(&mut self, vars: Vec<Var>) -> Result<(), Error> {
        for var in vars {
            if self.vars.iter().any(|v| v.name == var.name) {
                return Err(Error::new(format!("var '{}' already encountered", var.name)));
            }
            self.vars.push(var);
        }
        Ok(())
    }

    /// Every id (current and previous) of every object, for generators to find their target.
    fn id_index(&self) -> HashMap<IdKey, Vec<usize>> {
        let mut index: HashMap<IdKey, Vec<usize>> = HashMap::new();
        for (i, resource) in self.resources.iter().enumerate() {
            for id in resource.all_ids() {
                let entry = index.entry(id.key()).or_default();
                if !entry.contains(&i) {
                    entry.push(i);
                }
            }
        }
        index
    }

    /// A generated object: added, or merged into / replacing the one it names.
    fn append_generated(
        &mut self,
        mut generated: Resource,
        index: &mut HashMap<IdKey, Vec<usize>>,
    ) -> Result<(), Error> {
        let id = generated.id();
        let matches = index.get(&id.key()).cloned().unwrap_or_default();
        match (matches.as_slice(), generated.behavior) {
            ([], Behavior::Create) => {
                index.entry(id.key()).or_default().push(self.resources.len());
                self.resources.push(generated);
                Ok(())
            }
            ([], _) => Err(Error::new(format!(
                "id {id} does not exist; cannot merge or replace"
            ))),
            ([index], Behavior::Merge | Behavior::Replace) => {
                let old = &self.resources[*index];
                let mut labels = old.string_map("labels");
                labels.extend(generated.string_map("labels"));
                let mut annotations = old.string_map("annotations");
                annotations.extend(generated.string_map("annotations"));
                if generated.behavior == Behavior::Merge {
                    for field in ["data", "binaryData"] {
                        let mut merged = old
                            .object
                            .get(field)
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default();
                        if let Some(new) = generated.object.get(field).and_then(Value::as_object) {
                            merged.extend(new.clone());
                        }
                        let is_secret_data = field == "data" && generated.kind() == "Secret";
                        let object = crate::resource::object_mut(&mut generated.object);
                        if merged.is_empty() && !is_secret_data {
                            object.remove(field);
                        } else {
                            object.insert(field.into(), Value::Object(merged));
                        }
                    }
                }
                generated.set_string_map("labels", labels);
                generated.set_string_map("annotations", annotations);
                generated.set_name(old.name());
                generated.set_namespace(old.namespace());
                generated.previous_ids = old.previous_ids.clone();
                generated.name_prefixes = old.name_prefixes.clone();
                generated.name_suffixes = old.name_suffixes.clone();
                // The hash marker is a build annotation, which kustomize takes from the old object.
                generated.needs_hash = generated.needs_hash && old.needs_hash;
                generated.var_refs = old.var_refs.clone();
                self.resources[*index] = generated;
                Ok(())
            }
            ([_], Behavior::Create) => Err(Error::new(format!(
                "id {id} exists; behavior must be merge or replace"
            ))),
            (_, _) => Err(Error::new(format!(
                "found multiple objects that could accept merge of {id}"
            ))),
        }
    }
}

/// One kustomization directory, loaded.
struct Target {
    loader: Loader,
    kustomization: Kustomization,
    /// The kustomization file, which errors of its transformers name.
    file: std::path::PathBuf,
}

impl Target {
    fn load(loader: Loader) -> Result<Target, Error> {
        let mut found = Vec::new();
        for name in FILE_NAMES {
            let path = loader.root.join(name);
            if path.is_file() {
                found.push(name);
            }
        }
        let file = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::new(format!(
                    "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{}'",
                    loader.root.display()
                )));
            }
            _ => {
                return Err(Error::new(format!(
                    "Found multiple kustomization files under: {}",
                    loader.root.display()
                )));
            }
        };
        let (path, text) = loader.read_string(file)?;
        let empty = || Error::new(format!("kustomization.yaml is empty: '{}'", path.display()));
        let kustomization: Kustomization = match crate::yaml::parse_documents_yaml11(&text)
            .map_err(Error::new)?
            .into_iter()
            .next()
        {
            None => return Err(empty()),
            // kustomize refuses a kustomization that sets nothing but its apiVersion and kind.
            Some(Value::Object(map)) if map.iter().all(|(key, value)| is_unset(key, value)) => {
                return Err(empty());
            }
            Some(mut document) => {
                // `resources:` with nothing after it is an empty list, not an error.
                if let Value::Object(map) = &mut document {
                    map.retain(|_, v| !v.is_null());
                }
                serde_json::from_value(document)
                    .map_err(|e| Error::new(format!("invalid kustomization '{}': {e}", path.display())))?
            }
        };
        let unsupported = kustomization.unsupported_fields();
        if !unsupported.is_empty() {
            return Err(Error::new(format!(
                "{}: {} not supported by this engine",
                path.display(),
                unsupported.join(", ")
            )));
        }
        Ok(Target {
            loader,
            kustomization,
            file: path,
        })
    }
}

pub struct Builder<'r> {
    /// What fetches remote bases and files; None refuses them.
    remote: Option<&'r dyn crate::remote::Remote>,
    /// With build metadata, the directory of the kustomization being accumulated, relative to
    /// the top one (origins are paths from there); None when no origin is kept.
    origin_dir: Option<String>,
    jail: Option<std::path::PathBuf>,
    restrictor: crate::LoadRestrictor,
    /// Kustomization directories being built, to refuse cycles.
    stack: Vec<std::path::PathBuf>,
}

impl<'r> Builder<'r> {
    pub fn new(
        jail: Option<&std::path::Path>,
        restrictor: crate::LoadRestrictor,
        remote: Option<&'r dyn crate::remote::Remote>,
    ) -> Builder<'r> {
        Builder {
            remote,
            origin_dir: None,
            jail: jail.map(std::path::Path::to_path_buf),
            restrictor,
            stack: Vec::new(),
        }
    }

    pub fn build(&mut self, dir: &std::path::Path) -> Result<Vec<Value>, Error> {
        let loader = Loader::new(dir, self.jail.as_deref(), self.restrictor)?;
        // A Component built on its own is built as a kustomization is, as kustomize does.
        let target = Target::load(loader)?;
        // The top kustomization's buildMetadata holds for the whole tree, as in kustomize.
        let metadata = crate::origin::Options::parse(&target.kustomization.build_metadata)?;
        if !target.kustomization.build_metadata.is_empty() {
            self.origin_dir = Some(String::new());
        }
        let mut acc = self.accumulate(&target, Accumulated::default())?;

        for resource in acc.resources.iter_mut().filter(|r| r.needs_hash) {
            let hash = generate::content_hash(&resource.object);
            resource.store_previous_id();
            let name = format!("{}-{hash}", resource.name());
            resource.set_name(&name);
        }
        nameref::fix(&mut acc.resources, &acc.config.name_reference)?;
        replace::resolve_vars(&acc.vars, &acc.config.var_reference, &mut acc.resources)?;
        for resource in &mut acc.resources {
            if self.origin_dir.is_some() {
                metadata.write(
                    &mut resource.object,
                    resource.origin.as_ref(),
                    &resource.transformations,
                );
            }
            drop_empty_annotations(&mut resource.object);
        }
        acc.resources.retain(|r| {
            r.object
                .pointer("/metadata/annotations/config.kubernetes.io~1local-config")
                .and_then(Value::as_str)
                != Some("true")
        });

        let order = target.kustomization.sort_options.as_ref();
        if order.is_none_or(|o| o.order.is_empty() || o.order == "legacy") {
            let legacy = order.and_then(|o| o.legacy_sort_options.clone());
            crate::sort::legacy(&mut acc.resources, legacy.as_ref());
        } else if order.is_some_and(|o| o.order != "fifo") {
            return Err(Error::new("sortOptions.order must be one of 'legacy' or 'fifo'"));
        }
        Ok(acc.resources.into_iter().map(|r| r.object).collect())
    }

    fn enter(&mut self, loader: &Loader) -> Result<(), Error> {
        if let Some(visited) = self.stack.iter().find(|d| **d == loader.root) {
            return Err(Error::new(format!(
                "cycle detected: '{}' includes itself",
                visited.display()
            )));
        }
        self.stack.push(loader.root.clone());
        Ok(())
    }

    fn accumulate(&mut self, target: &Target, mut acc: Accumulated) -> Result<Accumulated, Error> {
        self.enter(&target.loader)?;
        let result = self.accumulate_inner(target, &mut acc);
        self.stack.pop();
        result.map(|()| acc)
    }

    fn accumulate_inner(&mut self, target: &Target, acc: &mut Accumulated) -> Result<(), Error> {
        let k = &target.kustomization;
        let loader = &target.loader;
        let paths: Vec<String> = k.resources.iter().chain(k.bases.iter()).cloned().collect();
        let taken = std::mem::take(acc);
        *acc = self.accumulate_paths_into(&paths, loader, taken)?;
        if !k.configurations.is_empty() {
            let own = TransformerConfig::load(loader, &k.configurations)?;
            acc.merge_config(&own)?;
        }
        let global = k.generator_options.as_ref();
        let configured_in = self.origin_of_kustomization(target);
        let builtin_origin = |kind: &str| configured_in.clone().map(|c| Origin::builtin(c, kind));
        let mut generated = Vec::new();
        for args in &k.config_map_generator {
            let mut resource = generate::generate(Kind::ConfigMap, args, global, loader)?;
            resource.origin = builtin_origin("ConfigMapGenerator");
            generated.push(resource);
        }
        for args in &k.secret_generator {
            let mut resource = generate::generate(Kind::Secret, args, global, loader)?;
            resource.origin = builtin_origin("SecretGenerator");
            generated.push(resource);
        }
        for config in self.plugin_configs(&k.generators, loader, "generators", target)? {
            let mut resource = plugin::generator(&config.object, loader)?;
            if self.origin_dir.is_some() {
                resource.origin = Some(Origin::plugin(&config.object, config.origin.as_ref()));
            }
            generated.push(resource);
        }
        if !generated.is_empty() {
            let mut index = acc.id_index();
            for resource in generated {
                acc.append_generated(resource, &mut index)?;
            }
        }
        for path in &k.components {
            if is_remote(path) {
                let taken = std::mem::take(acc);
                *acc = self.accumulate_remote(path, Some(taken)).map_err(|e| {
                    e.context(format!(
                        "accumulating components from '{}'",
                        crate::remote::redacted(path)
                    ))
                })?;
                continue;
            }
            let child = Target::load(loader.child(path)?)
                .map_err(|e| e.context(format!("accumulating components from '{path}'")))?;
            if !child.kustomization.is_component() {
                return Err(Error::new(format!(
                    "expected kind 'Component' for path '{}' but got '{}'",
                    child.loader.root.display(),
                    child.kustomization.kind.as_deref().unwrap_or("Kustomization")
                )));
            }
            let taken = std::mem::take(acc);
            let outer = self.enter_origin(path);
            let result = self.accumulate(&child, taken);
            self.origin_dir = outer;
            *acc = result?;
        }
        let configured_in = self.origin_of_kustomization(target);
        let mut transformers: Vec<(transform::Transformer, Option<Origin>)> =
            transform::configured(k, &acc.config)
                .into_iter()
                .map(|t| {
                    let origin = configured_in
                        .clone()
                        .map(|c| Origin::builtin(c, t.builtin_kind()));
                    (t, origin)
                })
                .collect();
        for config in self.plugin_configs(&k.transformers, loader, "transformers", target)? {
            let origin = self
                .origin_dir
                .is_some()
                .then(|| Origin::plugin(&config.object, config.origin.as_ref()));
            transformers.push((plugin::transformer(&config.object)?, origin));
        }
        for (transformer, origin) in &transformers {
            transform::run_all(std::slice::from_ref(transformer), loader, &mut acc.resources)
                .map_err(|e| e.context(target.file.display()))?;
            if let Some(origin) = origin {
                // kustomize records every configured transformer on every object, changed or not.
                for resource in &mut acc.resources {
                    match resource.origin {
                        None => resource.origin = Some(origin.clone()),
                        Some(_) => resource.transformations.push(origin.clone()),
                    }
                }
            }
        }
        acc.add_vars(k.vars.clone())
    }

    /// Accumulates `resources:` entries (files or kustomization directories) into `acc`.
    fn accumulate_paths_into(
        &mut self,
        paths: &[String],
        loader: &Loader,
        mut acc: Accumulated,
    ) -> Result<Accumulated, Error> {
        // The files are read and parsed up front, on every core; the loop takes them in order.
        let mut files = crate::parallel::map(paths, 2, |path| {
            let is_file = loader.locate(path).is_some_and(|p| !p.is_dir());
            is_file.then(|| {
                let (file, text) = loader.read_string(path)?;
                resources_from(&text).map_err(|e| e.context(format!("file '{}'", file.display())))
            })
        });
        for (path, file) in paths.iter().zip(files.iter_mut()) {
            if file.is_none() && is_remote(path) {
                let shown = crate::remote::redacted(path);
                let sub = self
                    .accumulate_remote(path, None)
                    .map_err(|e| e.context(format!("accumulating resources from '{shown}'")))?;
                acc.absorb(sub)
                    .map_err(|e| e.context(format!("accumulating resources from '{shown}'")))?;
                continue;
            }
            match loader.locate(path) {
                Some(located) if located.is_dir() => {
                    let child = Target::load(loader.child(path)?)
                        .map_err(|e| e.context(format!("accumulating resources from '{path}'")))?;
                    if child.kustomization.is_component() {
                        return Err(Error::new(format!(
                            "expected kind != 'Component' for path '{}'",
                            child.loader.root.display()
                        )));
                    }
                    let outer = self.enter_origin(path);
                    let sub = self.accumulate(&child, Accumulated::default());
                    self.origin_dir = outer;
                    let sub = sub?;
                    acc.absorb(sub)
                        .map_err(|e| e.context(format!("accumulating resources from '{path}'")))?;
                }
                Some(_) => {
                    let mut resources = match file.take() {
                        Some(parsed) => parsed?,
                        None => {
                            let (file, text) = loader.read_string(path)?;
                            resources_from(&text)
                                .map_err(|e| e.context(format!("file '{}'", file.display())))?
                        }
                    };
                    if let Some(dir) = &self.origin_dir {
                        let origin = Origin::file(crate::origin::join(dir, path));
                        for resource in &mut resources {
                            resource.origin = Some(origin.clone());
                        }
                    }
                    acc.append_all(resources)
                        .map_err(|e| e.context(format!("accumulating resources from '{path}'")))?;
                }
                None => {
                    return Err(Error::new(format!(
                        "accumulating resources: '{}' does not exist",
                        loader.root.join(path).display()
                    )));
                }
            }
        }
        Ok(acc)
    }

    fn accumulate_paths(&mut self, paths: &[String], loader: &Loader) -> Result<Accumulated, Error> {
        self.accumulate_paths_into(paths, loader, Accumulated::default())
    }

    /// The plugin configurations `transformers:` or `generators:` lists: inline YAML, files, or
    /// kustomization directories whose output is configurations, as kustomize reads them.
    fn plugin_configs(
        &mut self,
        entries: &[String],
        loader: &Loader,
        field: &str,
        target: &Target,
    ) -> Result<Vec<Resource>, Error> {
        // As kustomize: every inline configuration first, in order, then the files and
        // directories, in order.
        let mut configs = Accumulated::default();
        let mut paths = Vec::new();
        for entry in entries {
            let Some(mut inline) = plugin::inline(entry) else {
                paths.push(entry.clone());
                continue;
            };
            // Written in the kustomization file itself.
            let origin = self.origin_of_kustomization(target).map(Origin::file);
            for config in &mut inline {
                config.origin = origin.clone();
            }
            configs
                .append_all(inline)
                .map_err(|e| e.context(format!("{field}: inline configuration")))?;
        }
        let sub = self
            .accumulate_paths(&paths, loader)
            .map_err(|e| e.context(field))?;
        configs.append_all(sub.resources).map_err(|e| e.context(field))?;
        Ok(configs.resources)
    }

    /// A remote resource: a file named by an http(s) URL, a base in a git repository, or, with
    /// `component` (the accumulation it joins), a component in one. Fetched by the build's
    /// [`crate::remote::Remote`] and built jailed to its checkout.
    fn accumulate_remote(
        &mut self,
        path: &str,
        component: Option<Accumulated>,
    ) -> Result<Accumulated, Error> {
        let shown = crate::remote::redacted(path);
        let Some(remote) = self.remote else {
            return Err(Error::new(format!(
                "remote resource '{shown}' is not allowed: remote bases are disabled"
            )));
        };
        // An http(s) URL that reads as a repository is cloned (kustomize answers "URL is a git
        // repository" to its download); any other is downloaded, and what is not YAML there is
        // a repository after all.
        let repository = crate::remote::parse(path).is_some_and(|spec| spec.is_ok());
        if component.is_none() && !repository && crate::remote::is_remote_file(path) {
            let bytes = remote.download(path)?;
            if let Some(resources) = String::from_utf8(bytes)
                .ok()
                .and_then(|text| resources_from(&text).ok())
            {
                let mut acc = Accumulated::default();
                acc.append_all(resources)?;
                return Ok(acc);
            }
        }
        let spec = crate::remote::parse(path)
            .unwrap_or_else(|| Err(Error::new("neither a file nor a repository URL")))?;
        let checkout = remote.checkout(&spec)?;
        let loader = Loader::new(&checkout.join(&spec.path), Some(&checkout), self.restrictor)?;
        let child = Target::load(loader)?;
        match (component.is_some(), child.kustomization.is_component()) {
            (false, true) => {
                return Err(Error::new(format!(
                    "expected kind != 'Component' for path '{shown}'"
                )));
            }
            (true, false) => {
                return Err(Error::new(format!(
                    "expected kind 'Component' for path '{shown}'"
                )));
            }
            _ => {}
        }
        // Origins inside a remote base are paths in its repository (kustomize adds the repo and
        // ref to them; not written here).
        let outer = self.origin_dir.clone();
        if outer.is_some() {
            self.origin_dir = Some(spec.path.clone());
        }
        let result = self.accumulate(&child, component.unwrap_or_default());
        self.origin_dir = outer;
        result
    }

    /// Enters `path` (a base or component) for origins; returns the directory to come back to.
    fn enter_origin(&mut self, path: &str) -> Option<String> {
        let outer = self.origin_dir.clone();
        if let Some(dir) = &self.origin_dir {
            self.origin_dir = Some(crate::origin::join(dir, path));
        }
        outer
    }

    /// The kustomization file as origins name it (relative to the top directory).
    fn origin_of_kustomization(&self, target: &Target) -> Option<String> {
        let name = target.file.file_name()?.to_string_lossy().into_owned();
        self.origin_dir
            .as_deref()
            .map(|dir| crate::origin::join(dir, &name))
    }
}

/// A resource kustomize fetches: an http(s) URL or a repository URL (`github.com/org/repo`,
/// `git@host:repo`, `ssh://…`, `git::…`).
fn is_remote(path: &str) -> bool {
    crate::remote::is_remote_file(path) || crate::remote::parse(path).is_some()
}

/// The objects in a YAML stream; `List` objects are flattened.
pub fn resources_from(text: &str) -> Result<Vec<Resource>, Error> {
    let mut out = Vec::new();
    for document in crate::yaml::parse_resource_documents(text).map_err(Error::new)? {
        collect(document.value, document.empty_nulls, &mut out)?;
    }
    Ok(out)
}

fn collect(document: Value, empty_nulls: Vec<Vec<String>>, out: &mut Vec<Resource>) -> Result<(), Error> {
    let Value::Object(map) = &document else {
        return Err(Error::new("a resource must be a YAML map"));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List")
        && let Some(Value::Array(items)) = map.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            let prefix = ["items".to_string(), i.to_string()];
            let nulls = empty_nulls
                .iter()
                .filter(|p| p.starts_with(&prefix))
                .map(|p| p[2..].to_vec())
                .collect();
            collect(item.clone(), nulls, out)?;
        }
        return Ok(());
    }
    if kind.is_empty() {
        return Err(Error::new(format!(
            "missing kind in object {}",
            crate::yaml::go_json(&document)
        )));
    }
    if document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Error::new(format!(
            "missing metadata.name in object of kind {kind}"
        )));
    }
    let mut resource = Resource::new(document);
    resource.empty_nulls = empty_nulls;
    out.push(resource);
    Ok(())
}

/// kustomize rewrites every object's annotations when it removes its own bookkeeping ones, and
/// an empty or null `metadata.annotations` does not survive that (labels are left as written).
fn drop_empty_annotations(object: &mut Value) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata")
        && metadata
            .get("annotations")
            .is_some_and(|a| a.is_null() || a.as_object().is_some_and(serde_json::Map::is_empty))
    {
        metadata.remove("annotations");
    }
}

/// A kustomization field left at its zero value (type metadata does not count as content).
fn is_unset(key: &str, value: &Value) -> bool {
    key == "apiVersion"
        || key == "kind"
        || match value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Array(_) | Value::Object(_) => false,
        }
}
