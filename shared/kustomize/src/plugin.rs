//! Built-in plugin configurations (`apiVersion: builtin`) named in `transformers:` and
//! `generators:`: the same transformers and generators a kustomization's own fields configure,
//! written out as objects. Plugins of any other apiVersion are external programs, which kustomize
//! runs only when asked to (`--enable-alpha-plugins`); they are refused here as there.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;
use crate::config::specs_of;
use crate::generate::{self, Kind};
use crate::kustomization::{
    FieldSpecArgs, GeneratorArgs, Image, Patch, PatchOptions, ReplacementEntry, Replica, Selector,
};
use crate::loader::Loader;
use crate::resource::Resource;
use crate::transform::{SubjectMode, Transformer};

/// Every field the built-in transformers read from their configuration. Unknown fields are
/// ignored, as kustomize's non-strict reading of plugin configurations does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TransformerArgs {
    metadata: Metadata,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    field_specs: Option<Vec<FieldSpecArgs>>,
    prefix: String,
    suffix: String,
    unset_only: bool,
    set_role_binding_subjects: String,
    image_tag: Image,
    replica: Replica,
    path: String,
    patch: String,
    json_op: String,
    target: Option<Selector>,
    options: BTreeMap<String, bool>,
    paths: Vec<String>,
    patches: String,
    replacements: Vec<ReplacementEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    name: String,
    namespace: String,
}

/// Inline configurations: an entry of `transformers:`/`generators:` that is YAML objects rather
/// than a path.
pub fn inline(entry: &str) -> Option<Vec<Resource>> {
    if !entry.contains(':') {
        return None;
    }
    // A path reads as a plain string, not as objects with a kind.
    crate::build::resources_from(entry).ok().filter(|r| !r.is_empty())
}

/// The plugin kind, once the configuration is known to be a built-in one.
fn builtin_kind(config: &Value) -> Result<&str, Error> {
    let api_version = config.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "builtin" {
        return Err(Error::new(format!(
            "external plugins disabled; unable to load external plugin '{kind}' ({api_version}): \
             only built-in plugins (apiVersion: builtin) are supported"
        )));
    }
    Ok(kind)
}

/// A transformer from its plugin configuration.
pub fn transformer(config: &Value) -> Result<Transformer, Error> {
    let kind = builtin_kind(config)?;
    let context = || format!("plugin {kind}.builtin fails configuration");
    let args: TransformerArgs =
        serde_json::from_value(config.clone()).map_err(|e| Error::new(e.to_string()).context(context()))?;
    let specs = specs_of(args.field_specs.as_deref().unwrap_or_default());
    let transformer = match kind {
        "LabelTransformer" => Transformer::Labels(args.labels, specs),
        "AnnotationsTransformer" => Transformer::Annotations(args.annotations, specs),
        "PrefixTransformer" | "SuffixTransformer" | "PrefixSuffixTransformer"
            if args.field_specs.is_none() =>
        {
            return Err(Error::new("fieldSpecs is not expected to be nil").context(context()));
        }
        "PrefixTransformer" => Transformer::Prefix(args.prefix, specs),
        "SuffixTransformer" => Transformer::Suffix(args.suffix, specs),
        "PrefixSuffixTransformer" => Transformer::Composite(vec![
            Transformer::Prefix(args.prefix, specs.clone()),
            Transformer::Suffix(args.suffix, specs),
        ]),
        "NamespaceTransformer" => Transformer::Namespace {
            namespace: args.metadata.namespace,
            specs,
            unset_only: args.unset_only,
            subjects: match args.set_role_binding_subjects.as_str() {
                "" | "defaultOnly" => SubjectMode::DefaultOnly,
                "allServiceAccounts" => SubjectMode::AllServiceAccounts,
                "none" => SubjectMode::None,
                other => {
                    return Err(Error::new(format!(
                        "invalid value \"{other}\" for setRoleBindingSubjects: must be one of \"defaultOnly\", \"none\" or \"allServiceAccounts\""
                    ))
                    .context(context()));
                }
            },
        },
        "ImageTagTransformer" => Transformer::Image(args.image_tag, specs),
        "ReplicaCountTransformer" => Transformer::Replicas(args.replica, specs),
        "PatchTransformer" => Transformer::Patch(Patch {
            path: args.path,
            patch: args.patch,
            target: args.target,
            options: Some(PatchOptions {
                allow_name_change: args.options.get("allowNameChange").copied().unwrap_or(false),
                allow_kind_change: args.options.get("allowKindChange").copied().unwrap_or(false),
            }),
        }),
        "PatchJson6902Transformer" => {
            if args.target.as_ref().is_none_or(|t| t.name.is_empty()) {
                return Err(Error::new("must specify the target name").context(context()));
            }
            Transformer::Json6902(Patch {
                path: args.path,
                patch: args.json_op,
                target: args.target,
                options: None,
            })
        }
        "PatchStrategicMergeTransformer" => {
            let mut entries = args.paths;
            if !args.patches.trim().is_empty() {
                entries.push(args.patches);
            }
            if entries.is_empty() {
                return Err(Error::new("empty file path and empty patch content").context(context()));
            }
            Transformer::StrategicMerge(entries)
        }
        "ReplacementTransformer" => Transformer::Replacements(args.replacements),
        other => {
            return Err(Error::new(format!(
                "builtin {other} is not supported by this engine as a transformer"
            )));
        }
    };
    Ok(transformer)
}

/// A generated ConfigMap or Secret from its plugin configuration. The kustomization's
/// `generatorOptions` do not apply to these, as in kustomize.
pub fn generator(config: &Value, loader: &Loader) -> Result<Resource, Error> {
    let kind = builtin_kind(config)?;
    let generator_kind = match kind {
        "ConfigMapGenerator" => Kind::ConfigMap,
        "SecretGenerator" => Kind::Secret,
        other => {
            return Err(Error::new(format!(
                "builtin {other} is not supported by this engine as a generator"
            )));
        }
    };
    let context = || format!("plugin {kind}.builtin fails configuration");
    let metadata: Metadata = config
        .get("metadata")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| Error::new(e.to_string()).context(context()))?
        .unwrap_or_default();
    // Only the generator's own fields; the rest of the object (apiVersion, kind, metadata and
    // anything unknown) is not part of its arguments.
    const FIELDS: [&str; 9] = [
        "name",
        "namespace",
        "behavior",
        "files",
        "literals",
        "envs",
        "env",
        "type",
        "options",
    ];
    let mut object = config.as_object().cloned().unwrap_or_default();
    object.retain(|key, _| FIELDS.contains(&key.as_str()));
    let mut args: GeneratorArgs = serde_json::from_value(Value::Object(object))
        .map_err(|e| Error::new(e.to_string()).context(context()))?;
    if args.name.is_empty() {
        args.name = metadata.name;
    }
    if args.namespace.is_empty() {
        args.namespace = metadata.namespace;
    }
    generate::generate(generator_kind, &args, None, loader)
}
