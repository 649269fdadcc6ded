//! Transformer configurations: where each built-in transformer looks (kustomize's
//! `TransformerConfig`). The defaults are kustomize's tables (`builtin.rs`); a kustomization's
//! `configurations:` files add field specs to them, and what a base adds holds for every
//! kustomization above it, as kustomize merges a base's configuration into its parent's.

use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use crate::Error;
use crate::builtin::{self, BackReference};
use crate::fieldspec::FieldSpec;
use crate::kustomization::FieldSpecArgs;
use crate::loader::Loader;

#[derive(Clone, Debug, Default)]
pub struct TransformerConfig {
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub name_reference: Vec<BackReference>,
    pub var_reference: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
}

/// A `configurations:` file, read strictly as kustomize does (an unknown field is an error).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct ConfigFile {
    name_prefix: Vec<FieldSpecArgs>,
    name_suffix: Vec<FieldSpecArgs>,
    namespace: Vec<FieldSpecArgs>,
    common_labels: Vec<FieldSpecArgs>,
    labels: Vec<FieldSpecArgs>,
    template_labels: Vec<FieldSpecArgs>,
    common_annotations: Vec<FieldSpecArgs>,
    name_reference: Vec<BackReferenceArgs>,
    var_reference: Vec<FieldSpecArgs>,
    images: Vec<FieldSpecArgs>,
    replicas: Vec<FieldSpecArgs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct BackReferenceArgs {
    group: String,
    version: String,
    kind: String,
    field_specs: Vec<FieldSpecArgs>,
}

static DEFAULT: LazyLock<Arc<TransformerConfig>> = LazyLock::new(|| {
    Arc::new(TransformerConfig {
        name_prefix: vec![FieldSpec::new("", "metadata/name", false)],
        name_suffix: vec![FieldSpec::new("", "metadata/name", false)],
        namespace: builtin::NAMESPACE.clone(),
        common_labels: builtin::COMMON_LABELS.clone(),
        labels: Vec::new(),
        template_labels: builtin::TEMPLATE_LABELS.clone(),
        common_annotations: builtin::COMMON_ANNOTATIONS.clone(),
        name_reference: builtin::NAME_REFERENCES.clone(),
        var_reference: builtin::VAR_REFERENCES.clone(),
        images: builtin::IMAGES.clone(),
        replicas: builtin::REPLICAS.clone(),
    })
});

impl TransformerConfig {
    /// kustomize's default configuration, shared: only a kustomization with `configurations:`
    /// (or a base with them) gets a copy of its own.
    pub fn default_shared() -> Arc<TransformerConfig> {
        DEFAULT.clone()
    }

    /// The default configuration with the field specs of each file merged in.
    pub fn load(loader: &Loader, paths: &[String]) -> Result<Arc<TransformerConfig>, Error> {
        let mut config = TransformerConfig::default_shared();
        for path in paths {
            let (file, text) = loader.read_string(path)?;
            let context = || format!("configurations file '{}'", file.display());
            let document = crate::yaml::parse_documents_yaml11(&text)
                .map_err(|e| Error::new(e).context(context()))?
                .into_iter()
                .next()
                .unwrap_or(serde_json::Value::Null);
            let parsed: ConfigFile = if document.is_null() {
                ConfigFile::default()
            } else {
                serde_json::from_value(document).map_err(|e| Error::new(e.to_string()).context(context()))?
            };
            Arc::make_mut(&mut config)
                .merge(&parsed.into_config())
                .map_err(|e| e.context(context()))?;
        }
        Ok(config)
    }

    /// Adds every field spec of `other` that this configuration does not have yet.
    pub fn merge(&mut self, other: &TransformerConfig) -> Result<(), Error> {
        let lists: [(&mut Vec<FieldSpec>, &Vec<FieldSpec>, &str); 10] = [
            (&mut self.name_prefix, &other.name_prefix, "NamePrefix"),
            (&mut self.name_suffix, &other.name_suffix, "NameSuffix"),
            (&mut self.namespace, &other.namespace, "NameSpace"),
            (&mut self.common_labels, &other.common_labels, "CommonLabels"),
            (&mut self.labels, &other.labels, "Labels"),
            (
                &mut self.template_labels,
                &other.template_labels,
                "TemplateLabels",
            ),
            (
                &mut self.common_annotations,
                &other.common_annotations,
                "CommonAnnotations",
            ),
            (&mut self.var_reference, &other.var_reference, "VarReference"),
            (&mut self.images, &other.images, "Images"),
            (&mut self.replicas, &other.replicas, "Replicas"),
        ];
        for (mine, theirs, name) in lists {
            merge_specs(mine, theirs).map_err(|e| e.context(format!("failed to merge {name} fieldSpec")))?;
        }
        for reference in &other.name_reference {
            match self.name_reference.iter_mut().find(|r| {
                r.group == reference.group && r.version == reference.version && r.kind == reference.kind
            }) {
                Some(existing) => merge_specs(&mut existing.referrers, &reference.referrers)
                    .map_err(|e| e.context("failed to merge NameReference fieldSpec"))?,
                None => self.name_reference.push(reference.clone()),
            }
        }
        Ok(())
    }
}

/// kustomize's FsSlice.MergeAll: a spec is already there when one with the same path is
/// selected by the new spec's group, version and kind; it must then agree on `create`.
pub fn merge_specs(mine: &mut Vec<FieldSpec>, theirs: &[FieldSpec]) -> Result<(), Error> {
    for spec in theirs {
        let existing = mine.iter().find(|m| {
            m.path == spec.path
                && crate::resource::Gvk {
                    group: m.group.clone(),
                    version: m.version.clone(),
                    kind: m.kind.clone(),
                }
                .selected_by(&spec.group, &spec.version, &spec.kind)
        });
        match existing {
            Some(found) if found.create != spec.create => return Err(Error::new("conflicting fieldspecs")),
            Some(_) => {}
            None => mine.push(spec.clone()),
        }
    }
    Ok(())
}

impl ConfigFile {
    fn into_config(self) -> TransformerConfig {
        let specs = |list: Vec<FieldSpecArgs>| list.iter().map(FieldSpec::from).collect::<Vec<_>>();
        TransformerConfig {
            name_prefix: specs(self.name_prefix),
            name_suffix: specs(self.name_suffix),
            namespace: specs(self.namespace),
            common_labels: specs(self.common_labels),
            labels: specs(self.labels),
            template_labels: specs(self.template_labels),
            common_annotations: specs(self.common_annotations),
            name_reference: self
                .name_reference
                .into_iter()
                .map(|r| BackReference {
                    group: r.group,
                    version: r.version,
                    kind: r.kind,
                    referrers: specs(r.field_specs),
                })
                .collect(),
            var_reference: specs(self.var_reference),
            images: specs(self.images),
            replicas: specs(self.replicas),
        }
    }
}

impl From<&FieldSpecArgs> for FieldSpec {
    fn from(args: &FieldSpecArgs) -> FieldSpec {
        FieldSpec {
            group: args.group.clone(),
            version: args.version.clone(),
            kind: args.kind.clone(),
            path: args.path.clone(),
            create: args.create,
        }
    }
}

/// Field specs as plugin configurations write them (`fieldSpecs:`), for the built-in
/// transformers named in `transformers:`.
pub fn specs_of(list: &[FieldSpecArgs]) -> Vec<FieldSpec> {
    list.iter().map(FieldSpec::from).collect()
}
