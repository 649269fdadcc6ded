//! Build metadata (`buildMetadata:` in the top kustomization): where each object came from
//! (`config.kubernetes.io/origin`), which transformers it went through
//! (`alpha.config.kubernetes.io/transformations`) and `app.kubernetes.io/managed-by`.
//!
//! kustomize keeps both annotations on every object through the whole build once any option is
//! set, and removes the ones not asked for at the end; this engine keeps them beside the object
//! ([`crate::resource::Resource::origin`]) and writes them at the end.

use serde_json::Value;

use crate::Error;

pub const ORIGIN_ANNOTATION: &str = "config.kubernetes.io/origin";
pub const TRANSFORMATIONS_ANNOTATION: &str = "alpha.config.kubernetes.io/transformations";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// kustomize's value as `kubectl kustomize` (v1.32) writes it: kubectl embeds kustomize as a
/// library, whose version it reports as "(devel)".
const MANAGED_BY_VALUE: &str = "kustomize-(devel)";

/// kustomize's `Origin`: a file, or the plugin (built-in or configured) that made or changed
/// the object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub path: String,
    pub configured_in: String,
    pub configured_by: Option<ConfiguredBy>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfiguredBy {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Origin {
    pub fn file(path: String) -> Origin {
        Origin {
            path,
            ..Origin::default()
        }
    }

    /// A built-in generator or transformer configured by the kustomization file `configured_in`.
    pub fn builtin(configured_in: String, kind: &str) -> Origin {
        Origin {
            configured_in,
            configured_by: Some(ConfiguredBy {
                api_version: "builtin".into(),
                kind: kind.into(),
                ..ConfiguredBy::default()
            }),
            ..Origin::default()
        }
    }

    /// A plugin configured by an object (from `transformers:` or `generators:`) that came from
    /// `config_origin`.
    pub fn plugin(config: &Value, config_origin: Option<&Origin>) -> Origin {
        let text = |pointer: &str| {
            config
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Origin {
            configured_in: config_origin.map(|o| o.path.clone()).unwrap_or_default(),
            configured_by: Some(ConfiguredBy {
                api_version: text("/apiVersion"),
                kind: text("/kind"),
                name: text("/metadata/name"),
                namespace: text("/metadata/namespace"),
            }),
            ..Origin::default()
        }
    }

    /// The fields as kyaml writes the struct: in declaration order, empty ones left out.
    fn lines(&self, indent: &str, out: &mut String) {
        let mut first = true;
        let mut line = |out: &mut String, key: &str, value: &str| {
            out.push_str(if first { "" } else { indent });
            out.push_str(key);
            out.push_str(": ");
            out.push_str(&scalar(value));
            out.push('\n');
            first = false;
        };
        if !self.path.is_empty() {
            line(out, "path", &self.path);
        }
        if !self.configured_in.is_empty() {
            line(out, "configuredIn", &self.configured_in);
        }
        if let Some(by) = &self.configured_by {
            out.push_str(if first { "" } else { indent });
            out.push_str("configuredBy:\n");
            for (key, value) in [
                ("apiVersion", &by.api_version),
                ("kind", &by.kind),
                ("name", &by.name),
                ("namespace", &by.namespace),
            ] {
                if !value.is_empty() {
                    out.push_str(indent);
                    out.push_str("  ");
                    out.push_str(key);
                    out.push_str(": ");
                    out.push_str(&scalar(value));
                    out.push('\n');
                }
            }
        }
    }

    pub fn annotation(&self) -> String {
        let mut out = String::new();
        self.lines("", &mut out);
        out
    }
}

pub fn transformations_annotation(list: &[Origin]) -> String {
    let mut out = String::new();
    for origin in list {
        out.push_str("- ");
        origin.lines("  ", &mut out);
    }
    out
}

/// A string as a YAML scalar, quoted when it could not be written plain.
fn scalar(value: &str) -> String {
    crate::yaml::to_yaml(&Value::String(value.to_string()))
        .trim_end_matches('\n')
        .to_string()
}

/// Go's `filepath.Join`: the parts joined and cleaned lexically (`a/../b` is `b`, a leading
/// `..` stays).
pub fn join(dir: &str, path: &str) -> String {
    let joined = if dir.is_empty() {
        path.to_string()
    } else {
        format!("{dir}/{path}")
    };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let cleaned = parts.join("/");
    match (rooted, cleaned.is_empty()) {
        (true, _) => format!("/{cleaned}"),
        (false, true) => ".".into(),
        (false, false) => cleaned,
    }
}

/// The `buildMetadata` options of the top kustomization.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub origin: bool,
    pub transformers: bool,
    pub managed_by: bool,
}

impl Options {
    pub fn parse(list: &[String]) -> Result<Options, Error> {
        let mut options = Options::default();
        for option in list {
            match option.as_str() {
                "originAnnotations" => options.origin = true,
                "transformerAnnotations" => options.transformers = true,
                "managedByLabel" => options.managed_by = true,
                other => {
                    return Err(Error::new(format!(
                        "invalid buildMetadata option: {other} (originAnnotations, transformerAnnotations or managedByLabel)"
                    )));
                }
            }
        }
        Ok(options)
    }

    /// Writes what was asked for into the object.
    pub fn write(&self, object: &mut Value, origin: Option<&Origin>, transformations: &[Origin]) {
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let mut set = |field: &str, key: &str, value: String| {
            let map = metadata
                .entry(field)
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !map.is_object() {
                *map = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(map) = map {
                map.insert(key.to_string(), Value::String(value));
            }
        };
        if self.managed_by {
            set("labels", MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_string());
        }
        if self.origin
            && let Some(origin) = origin
        {
            set("annotations", ORIGIN_ANNOTATION, origin.annotation());
        }
        if self.transformers && !transformations.is_empty() {
            set(
                "annotations",
                TRANSFORMATIONS_ANNOTATION,
                transformations_annotation(transformations),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_as_go_does() {
        assert_eq!(join("", "cm.yaml"), "cm.yaml");
        assert_eq!(join("", "../base"), "../base");
        assert_eq!(join("../base", "./cm.yaml"), "../base/cm.yaml");
        assert_eq!(join("../base", "../common"), "../common");
        assert_eq!(join("a/b", "../../.."), "..");
        assert_eq!(join("", "."), ".");
    }

    #[test]
    fn annotations_are_written_as_kyaml_writes_them() {
        let generated = Origin::builtin("../base/kustomization.yaml".into(), "ConfigMapGenerator");
        assert_eq!(
            generated.annotation(),
            "configuredIn: ../base/kustomization.yaml\nconfiguredBy:\n  apiVersion: builtin\n  kind: ConfigMapGenerator\n"
        );
        assert_eq!(Origin::file("svc.yaml".into()).annotation(), "path: svc.yaml\n");
        let list = [Origin::builtin("kustomization.yaml".into(), "PrefixTransformer")];
        assert_eq!(
            transformations_annotation(&list),
            "- configuredIn: kustomization.yaml\n  configuredBy:\n    apiVersion: builtin\n    kind: PrefixTransformer\n"
        );
    }
}
