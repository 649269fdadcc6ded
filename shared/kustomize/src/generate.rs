//! configMapGenerator and secretGenerator, and the content hash kustomize appends to their names.

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::kustomization::{GeneratorArgs, GeneratorOptions};
use crate::loader::Loader;
use crate::resource::{Behavior, Resource};
use crate::yaml::go_json;

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// Builds the object one generator entry describes.
pub fn generate(
    kind: Kind,
    args: &GeneratorArgs,
    global: Option<&GeneratorOptions>,
    loader: &Loader,
) -> Result<Resource, Error> {
    let options = GeneratorOptions::merged(args.options.as_ref(), global);
    let context = |e: Error| e.context(format!("{} generator '{}'", kind.name(), args.name));
    let pairs = pairs(args, loader).map_err(context)?;

    let mut data = Map::new();
    let mut binary = Map::new();
    for (key, value) in pairs {
        if data.contains_key(&key) || binary.contains_key(&key) {
            return Err(Error::new(format!(
                "{} {} illegally repeats the key `{key}`",
                kind.name().to_lowercase(),
                args.name
            )));
        }
        let encoded = folded_base64(&value);
        match (kind, String::from_utf8(value)) {
            (Kind::Secret, _) => {
                data.insert(key, Value::String(encoded));
            }
            (Kind::ConfigMap, Ok(text)) => {
                data.insert(key, Value::String(text));
            }
            (Kind::ConfigMap, Err(_)) => {
                binary.insert(key, Value::String(encoded));
            }
        }
    }

    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(args.name.clone()));
    if !args.namespace.is_empty() {
        metadata.insert("namespace".into(), Value::String(args.namespace.clone()));
    }
    let string_map = |m: &std::collections::BTreeMap<String, String>| {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    if !options.labels.is_empty() {
        metadata.insert("labels".into(), string_map(&options.labels));
    }
    if !options.annotations.is_empty() {
        metadata.insert("annotations".into(), string_map(&options.annotations));
    }
    let mut object = json!({"apiVersion": "v1", "kind": kind.name(), "metadata": metadata});
    let map = crate::resource::object_mut(&mut object);
    if kind == Kind::Secret {
        let type_ = if args.type_.is_empty() {
            "Opaque"
        } else {
            &args.type_
        };
        map.insert("type".into(), Value::String(type_.to_string()));
    }
    // A Secret always has its data map, empty or not; a ConfigMap only when it has keys.
    if !data.is_empty() || kind == Kind::Secret {
        map.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        map.insert("binaryData".into(), Value::Object(binary));
    }
    if options.immutable {
        map.insert("immutable".into(), Value::Bool(true));
    }

    let mut resource = Resource::new(object);
    resource.needs_hash = !options.disable_name_suffix_hash;
    // kustomize reads any other word (`add`, a typo) as create.
    resource.behavior = match args.behavior.as_str() {
        "merge" => Behavior::Merge,
        "replace" => Behavior::Replace,
        _ => Behavior::Create,
    };
    Ok(resource)
}

/// Key/value pairs in kustomize's order: env files, then literals, then files.
fn pairs(args: &GeneratorArgs, loader: &Loader) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut pairs = Vec::new();
    let env_files = args
        .envs
        .iter()
        .chain(std::iter::once(&args.env).filter(|e| !e.is_empty()));
    for env_file in env_files {
        let (_, text) = loader.read_string(env_file)?;
        for (number, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => (line.to_string(), std::env::var(line).unwrap_or_default()),
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(Error::new(format!(
                    "invalid key '{key}' in env file '{env_file}' line {}",
                    number + 1
                )));
            }
            pairs.push((key, value.into_bytes()));
        }
    }
    for literal in &args.literals {
        let (key, value) = literal
            .split_once('=')
            .ok_or_else(|| Error::new(format!("invalid literal source {literal}, expected key=value")))?;
        pairs.push((key.to_string(), unquote(value).as_bytes().to_vec()));
    }
    for file in &args.files {
        let (key, path) = match file.split_once('=') {
            Some((key, path)) => (key.to_string(), path),
            None => {
                let name = std::path::Path::new(file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                (name.unwrap_or_default(), file.as_str())
            }
        };
        if key.is_empty() {
            return Err(Error::new(format!(
                "key names or file paths cannot be empty: '{file}'"
            )));
        }
        let (_, bytes) = loader.read(path)?;
        pairs.push((key, bytes));
    }
    Ok(pairs)
}

fn unquote(value: &str) -> &str {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[bytes.len() - 1] == bytes[0] {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// kustomize's name suffix: the first ten hex digits of a sha256 over a canonical encoding,
/// with some characters swapped so the result never looks like a number or a bad word.
pub fn content_hash(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    // kustomize looks the name up as a single field called "metadata/name", which never
    // exists: the name always hashes as "".
    let name = Value::String(String::new());
    let field = |f: &str| object.get(f).filter(|v| !v.is_null()).cloned();
    let encoded = match kind {
        "ConfigMap" | "Secret" => {
            let mut m = Map::new();
            m.insert("kind".into(), Value::String(kind.into()));
            m.insert("name".into(), name);
            m.insert(
                "data".into(),
                field("data").unwrap_or_else(|| Value::String(String::new())),
            );
            if kind == "ConfigMap" {
                if let Some(binary @ Value::Object(_)) = field("binaryData") {
                    m.insert("binaryData".into(), binary);
                }
            } else {
                m.insert(
                    "type".into(),
                    field("type").unwrap_or_else(|| Value::String(String::new())),
                );
                if let Some(string_data @ Value::Object(_)) = field("stringData") {
                    m.insert("stringData".into(), string_data);
                }
            }
            go_json(&Value::Object(m))
        }
        _ => go_json(object),
    };
    let digest = hex::encode(Sha256::digest(encoded.as_bytes()));
    digest[..10]
        .chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// Base64 as kustomize writes generated values: when the encoding is 70 characters or longer,
/// it is cut into lines of 70, each ending with a newline (the last one too). The hash suffix
/// is computed over this text, so the folding is part of the generated name.
fn folded_base64(value: &[u8]) -> String {
    const LINE: usize = 70;
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    if encoded.len() < LINE {
        return encoded;
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 1);
    for chunk in encoded.as_bytes().chunks(LINE) {
        // Base64 is ASCII, so every chunk boundary is a character boundary.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}
