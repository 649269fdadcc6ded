//! The Setters update strategy: YAML values marked with a policy comment
//! (`# {"$imagepolicy": "<ns>:<policy>[:tag|:name|:digest]"}`) get the policy's latest image.
//!
//! Flux rewrites changed files through kyaml, which may reformat them; here only the marked
//! scalar changes and every other byte of the file stays as it was (comments, key order,
//! quoting, blank lines, indentation). A file is read as YAML first (a file that does not parse
//! is skipped, as Flux skips it), then edited line by line: a marker is a line comment after a
//! scalar (`image: app:1.0 # {...}`, `- app:1.0 # {...}`) or a comment line right above one.

use driftless_api::image::ImageRef;
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

/// The token a file must contain to be read at all (Flux's pre-screen).
const MARKER: &str = "\"$imagepolicy\"";
/// The long marker form: `{"$ref": "#/definitions/io.k8s.cli.setters.<setter>"}`.
const REF_PREFIX: &str = "#/definitions/io.k8s.cli.setters.";

/// Setter name → value, four per policy: `ns:name` (the image ref), `ns:name:tag`,
/// `ns:name:name` and `ns:name:digest`.
#[derive(Debug, Default, Clone)]
pub struct Setters(HashMap<String, String>);

impl Setters {
    /// Adds the setters of policy `namespace/name` whose latest image is `latest`.
    pub fn add(&mut self, namespace: &str, name: &str, latest: &ImageRef) {
        let base = format!("{namespace}:{name}");
        let digest = latest.digest.clone().unwrap_or_default();
        let full = if digest.is_empty() {
            format!("{}:{}", latest.name, latest.tag)
        } else {
            format!("{}:{}@{digest}", latest.name, latest.tag)
        };
        self.0.insert(format!("{base}:tag"), latest.tag.clone());
        self.0.insert(format!("{base}:name"), latest.name.clone());
        self.0.insert(format!("{base}:digest"), digest);
        self.0.insert(base, full);
    }
}

/// The object a change was made in (Flux's `ObjectIdentifier`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// One value changed by a setter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub old_value: String,
    pub new_value: String,
    /// The setter name, e.g. `flux-system:podinfo:tag`.
    pub setter: String,
}

/// The changes in one file, by object.
pub type ObjectChanges = BTreeMap<ObjectId, Vec<Change>>;

/// What an update changed: file (relative to the update path) → object → changes.
pub type FileChanges = BTreeMap<String, ObjectChanges>;

/// What [`update_tree`] did.
#[derive(Debug, Default)]
pub struct Updated {
    /// The recorded changes (in documents that name their object).
    pub changes: FileChanges,
    /// Files rewritten.
    pub written: usize,
    /// Files skipped because they are not YAML (or not UTF-8).
    pub problems: Vec<String>,
}

/// Updates the YAML files under `root` (`.yaml`, `.yml` and `Kustomization`, not following
/// symlinks, `.git` skipped).
pub fn update_tree(root: &Path, setters: &Setters) -> std::io::Result<Updated> {
    let mut updated = Updated::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path)?;
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if meta.is_dir() {
                if file_name != ".git" {
                    stack.push(path);
                }
                continue;
            }
            let yaml =
                file_name.ends_with(".yaml") || file_name.ends_with(".yml") || file_name == "Kustomization";
            if !meta.is_file() || !yaml {
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let Ok(content) = String::from_utf8(std::fs::read(&path)?) else {
                updated.problems.push(rel);
                continue;
            };
            match update_file(&content, setters) {
                Ok(Some((new_content, file_changes))) => {
                    std::fs::write(&path, new_content)?;
                    updated.written += 1;
                    if !file_changes.is_empty() {
                        updated.changes.insert(rel, file_changes);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(file = %rel, error = %e, "problem file: skipped");
                    updated.problems.push(rel);
                }
            }
        }
    }
    Ok(updated)
}

/// Applies the setters to one file: None when nothing changes; the error when it is not YAML.
pub fn update_file(content: &str, setters: &Setters) -> Result<Option<(String, ObjectChanges)>, String> {
    if !content.contains(MARKER) && !content.contains(REF_PREFIX) {
        return Ok(None);
    }
    let objects = document_ids(content)?;
    let mut out = String::with_capacity(content.len() + 64);
    let mut changes = ObjectChanges::new();
    let mut changed = false;
    let mut doc = 0usize;
    let mut doc_has_content = false;
    let mut pending: Option<String> = None;
    // The indentation of a key whose value is a block scalar (`|`, `>`): deeper lines are its
    // text, not YAML (a marker or a `---` in a patch string is left alone, as kyaml leaves it).
    let mut block: Option<usize> = None;
    for line in content.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => match b.strip_suffix('\r') {
                Some(b) => (b, "\r\n"),
                None => (b, "\n"),
            },
            None => (line, ""),
        };
        let indent = body.len() - body.trim_start().len();
        if let Some(header) = block {
            if body.trim().is_empty() || indent > header {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        if body.starts_with('%') {
            out.push_str(line);
            continue;
        }
        if body == "---" || body.starts_with("--- ") {
            if doc_has_content {
                doc += 1;
                doc_has_content = false;
            }
            pending = None;
            out.push_str(line);
            continue;
        }
        let trimmed = body.trim_start();
        if trimmed.is_empty() {
            out.push_str(line);
            continue;
        }
        if trimmed.starts_with('#') {
            pending = setter_of(trimmed).filter(|s| setters.0.contains_key(s));
            out.push_str(line);
            continue;
        }
        doc_has_content = true;
        let comment_at = comment_start(body);
        if starts_block_scalar(&body[..comment_at.unwrap_or(body.len())]) {
            // The text is indented deeper than its key, which sequence markers push right.
            let mut key = indent;
            while body[key..].starts_with("- ") {
                key += 2;
                key += body[key..].len() - body[key..].trim_start().len();
            }
            block = Some(key);
            pending = None;
            out.push_str(line);
            continue;
        }
        let setter = comment_at
            .and_then(|at| setter_of(&body[at..]))
            .filter(|s| setters.0.contains_key(s))
            .or_else(|| pending.take());
        pending = None;
        let Some(setter) = setter else {
            out.push_str(line);
            continue;
        };
        let code_end = comment_at.unwrap_or(body.len());
        let code = &body[..code_end];
        let Some((start, end)) = scalar_span(code) else {
            out.push_str(line);
            continue;
        };
        let new_value = &setters.0[&setter];
        let raw = &code[start..end];
        let old_value = unquote(raw);
        out.push_str(&body[..start]);
        out.push_str(&format_like(raw, new_value));
        out.push_str(&body[end..]);
        out.push_str(newline);
        if old_value != *new_value {
            changed = true;
            if let Some(Some(id)) = objects.get(doc) {
                changes.entry(id.clone()).or_default().push(Change {
                    old_value,
                    new_value: new_value.clone(),
                    setter,
                });
            }
        }
    }
    Ok(changed.then_some((out, changes)))
}

/// The identity of each document (None for one without apiVersion, kind and metadata.name);
/// the error when the file is not YAML.
fn document_ids(content: &str) -> Result<Vec<Option<ObjectId>>, String> {
    use serde::Deserialize;
    let mut ids = Vec::new();
    for document in serde_norway::Deserializer::from_str(content) {
        let value = serde_norway::Value::deserialize(document).map_err(|e| e.to_string())?;
        if value.is_null() {
            continue;
        }
        let text = |v: Option<&serde_norway::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
        let metadata = value.get("metadata");
        let id = match (
            text(value.get("apiVersion")),
            text(value.get("kind")),
            text(metadata.and_then(|m| m.get("name"))),
        ) {
            (Some(api_version), Some(kind), Some(name)) => Some(ObjectId {
                api_version,
                kind,
                name,
                namespace: text(metadata.and_then(|m| m.get("namespace"))).unwrap_or_default(),
            }),
            _ => None,
        };
        ids.push(id);
    }
    Ok(ids)
}

/// The setter a comment names: `{"$imagepolicy": "ns:name[:field]"}` or the `$ref` form.
fn setter_of(comment: &str) -> Option<String> {
    let text = comment.trim_start_matches('#').trim();
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if let Some(s) = value.get("$imagepolicy").and_then(|v| v.as_str()) {
        return Some(s.to_string());
    }
    value
        .get("$ref")
        .and_then(|v| v.as_str())
        .and_then(|r| r.strip_prefix(REF_PREFIX))
        .map(str::to_string)
}

/// Where a line's comment starts: a `#` at the start or after whitespace, outside quotes.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(b'"') if b == b'\\' => i += 1,
            Some(q) if b == q => {
                // `''` inside a single-quoted scalar is an escaped quote.
                if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => return Some(i),
            None if (b == b'"' || b == b'\'')
                && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'-' | b':' | b'[' | b',')) =>
            {
                quote = Some(b)
            }
            None => {}
        }
        i += 1;
    }
    None
}

/// Whether a line's value opens a block scalar (`key: |`, `- >-`, `key: |2`).
fn starts_block_scalar(code: &str) -> bool {
    let code = code.trim_end();
    let value = match code.rsplit_once(": ") {
        Some((_, v)) => v.trim(),
        None => code.trim_start().trim_start_matches('-').trim(),
    };
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+') || c.is_ascii_digit())
}

/// The byte span of the scalar value on a line (`key: value`, `- value`, `- key: value`),
/// without surrounding spaces; None when the line holds no scalar value.
fn scalar_span(code: &str) -> Option<(usize, usize)> {
    let end = code.trim_end().len();
    let mut start = code.len() - code.trim_start().len();
    // Sequence item markers.
    while code[start..end].starts_with("- ") || &code[start..end] == "-" {
        start += 1;
        start += code[start..].len() - code[start..].trim_start().len();
    }
    // `key: value`: the first `: ` outside quotes.
    let rest = &code[start..end];
    if let Some(colon) = mapping_colon(rest) {
        start += colon + 1;
        start += code[start..].len() - code[start..].trim_start().len();
    }
    let value = &code[start..end.max(start)];
    if value.is_empty() || value.starts_with(['|', '>', '{', '[', '&', '*', '!']) {
        return None;
    }
    Some((start, end))
}

fn mapping_colon(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if matches!(bytes.first(), Some(b'"' | b'\'')) {
        // A quoted key: the colon after its closing quote; a quoted value without key: none.
        let q = bytes[0];
        let close = s[1..].find(q as char)? + 1;
        let after = &s[close + 1..];
        let t = after.trim_start();
        return t.starts_with(':').then(|| close + 1 + (after.len() - t.len()));
    }
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A scalar's value as written: quotes removed and escapes read.
fn unquote(raw: &str) -> String {
    if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
        return raw[1..raw.len() - 1].replace("''", "'");
    }
    if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        return serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw[1..raw.len() - 1].to_string());
    }
    raw.to_string()
}

/// `value` written in the style of `raw`: the same quotes, or plain unless YAML would read it as
/// something other than a string (`1.10`, `true`, `null`), which Flux double-quotes too.
fn format_like(raw: &str, value: &str) -> String {
    if raw.starts_with('\'') {
        return format!("'{}'", value.replace('\'', "''"));
    }
    if raw.starts_with('"') {
        return serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\""));
    }
    let plain_string = serde_norway::from_str::<serde_norway::Value>(value).is_ok_and(|v| v.is_string())
        && !value.contains(" #")
        && !value.contains(": ");
    if value.is_empty() || !plain_string {
        serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn setters() -> Setters {
        let mut s = Setters::default();
        s.add(
            "flux-system",
            "podinfo",
            &ImageRef {
                name: "ghcr.io/org/podinfo".into(),
                tag: "6.1.0".into(),
                digest: None,
            },
        );
        s.add(
            "flux-system",
            "numeric",
            &ImageRef {
                name: "reg/app".into(),
                tag: "1.10".into(),
                digest: Some("sha256:abc".into()),
            },
        );
        s
    }

    #[test]
    fn only_the_marked_values_change() {
        let src = r#"# a leading comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo   # keep this
  namespace: apps
spec:
  template:
    spec:
      containers:
        - name: app
          image: ghcr.io/org/podinfo:6.0.0 # {"$imagepolicy": "flux-system:podinfo"}

        - name: 'quoted'
          image: 'reg/app:1.0' # {"$imagepolicy": "flux-system:numeric"}
---
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: podinfo
    newName: ghcr.io/org/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}
    newTag: 6.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
  - name: app
    # {"$imagepolicy": "flux-system:numeric:tag"}
    newTag: "1.9"
    unrelated: x # {"$imagepolicy": "other:policy"}
"#;
        let (out, changes) = update_file(src, &setters()).unwrap().unwrap();
        let expected = src
            .replace("ghcr.io/org/podinfo:6.0.0 #", "ghcr.io/org/podinfo:6.1.0 #")
            .replace("'reg/app:1.0'", "'reg/app:1.10@sha256:abc'")
            .replace("newTag: 6.0.0", "newTag: 6.1.0")
            .replace("newTag: \"1.9\"", "newTag: \"1.10\"");
        assert_eq!(out, expected);
        let deployment = ObjectId {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "podinfo".into(),
            namespace: "apps".into(),
        };
        assert_eq!(changes[&deployment].len(), 2);
        assert_eq!(changes[&deployment][0].setter, "flux-system:podinfo");
        assert_eq!(changes[&deployment][0].old_value, "ghcr.io/org/podinfo:6.0.0");
        // The kustomization has no metadata.name: changed, not recorded (as Flux).
        assert_eq!(changes.len(), 1);
    }

    #[test]
    fn block_scalars_are_text_not_markers() {
        let src = r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
patches:
  - patch: |
      - op: replace
        path: /spec/image
        value: old:1.0 # {"$imagepolicy": "flux-system:podinfo"}
      ---
    target: {kind: Deployment}
images:
  - name: podinfo
    newTag: 6.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
"#;
        let (out, _) = update_file(src, &setters()).unwrap().unwrap();
        assert_eq!(out, src.replace("newTag: 6.0.0", "newTag: 6.1.0"));
    }

    #[test]
    fn unchanged_and_unreadable_files() {
        let same = "image: ghcr.io/org/podinfo:6.1.0 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n";
        assert!(update_file(same, &setters()).unwrap().is_none());
        assert!(update_file("a: [\n# {\"$imagepolicy\": \"x:y\"}", &setters()).is_err());
        let numeric = "tag: 1.0 # {\"$imagepolicy\": \"flux-system:numeric:tag\"}\n";
        let (out, _) = update_file(numeric, &setters()).unwrap().unwrap();
        assert_eq!(
            out,
            "tag: \"1.10\" # {\"$imagepolicy\": \"flux-system:numeric:tag\"}\n"
        );
    }
}
