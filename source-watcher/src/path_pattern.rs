//! `spec.pathPattern`: one set of artifacts per directory of a source that matches
//! `@<alias>/<pattern>`, its `{capture}` placeholders filled in the artifacts' names (lowercased,
//! also set as labels) and copy paths (as captured).

use crate::builder::split_alias;
use driftless_api::source_extensions::OutputArtifact;
use regex::Regex;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// One artifact to build: the spec entry with its placeholders filled, and its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub artifact: OutputArtifact,
    pub labels: BTreeMap<String, String>,
}

/// Why expansion failed: `Terminal` for a pattern that cannot work (stalls), `Io` for a walk
/// that may work next time.
#[derive(Debug)]
pub enum ExpandError {
    Terminal(String),
    Io(String),
}

/// The requests of a generator: its artifacts as written, or expanded by `path_pattern`.
pub fn requests(
    artifacts: &[OutputArtifact],
    path_pattern: Option<&str>,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Request>, ExpandError> {
    let Some(pattern) = path_pattern.filter(|p| !p.is_empty()) else {
        return Ok(artifacts
            .iter()
            .map(|a| Request {
                artifact: a.clone(),
                labels: BTreeMap::new(),
            })
            .collect());
    };
    let terminal = |m: String| ExpandError::Terminal(format!("pathPattern \"{pattern}\": {m}"));
    let (alias, dirs) = split_alias(pattern)
        .map_err(|_| ExpandError::Terminal(format!("invalid pathPattern format: {pattern}")))?;
    let Some(root) = sources.get(alias) else {
        return Err(terminal(format!(
            "source alias {alias} not found in local sources"
        )));
    };
    let (regex, names) = compile(dirs).map_err(terminal)?;
    for name in &names {
        if !is_label_key(name) {
            return Err(terminal(format!(
                "capture variable \"{name}\" is not a valid Kubernetes label key"
            )));
        }
    }
    let mut matched = Vec::new();
    walk_dirs(root, "", &mut |rel| {
        if let Some(caps) = regex.captures(rel) {
            let values: BTreeMap<String, String> = names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        caps.name(n).map(|m| m.as_str().to_string()).unwrap_or_default(),
                    )
                })
                .collect();
            matched.push((rel.to_string(), values));
        }
    })
    .map_err(|e| ExpandError::Io(format!("failed to walk source directory: {e}")))?;

    let mut out = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (dir, raw) in matched {
        let lower: BTreeMap<String, String> =
            raw.iter().map(|(k, v)| (k.clone(), v.to_lowercase())).collect();
        for (name, value) in &lower {
            if !is_label_value(value) {
                return Err(terminal(format!(
                    "captured value \"{value}\" for variable \"{name}\" is not a valid Kubernetes label value"
                )));
            }
        }
        for artifact in artifacts {
            let render = |template: &str, values: &BTreeMap<String, String>| {
                render(template, values).map_err(|e| {
                    terminal(format!(
                        "failed to render artifact {} for match {dir}: invalid template \"{template}\": {e}",
                        artifact.name
                    ))
                })
            };
            let mut rendered = artifact.clone();
            rendered.name = render(&artifact.name, &lower)?;
            for copy in &mut rendered.copy {
                copy.from = render(&copy.from, &raw)?;
                copy.to = render(&copy.to, &raw)?;
            }
            if !is_dns_subdomain(&rendered.name) {
                return Err(terminal(format!(
                    "rendered artifact name \"{}\" is not a valid Kubernetes object name",
                    rendered.name
                )));
            }
            if let Some(other) = seen.insert(rendered.name.clone(), dir.clone()) {
                return Err(terminal(format!(
                    "directories \"{other}\" and \"{dir}\" both resolve to artifact name \"{}\"",
                    rendered.name
                )));
            }
            out.push(Request {
                artifact: rendered,
                labels: lower.clone(),
            });
        }
    }
    Ok(out)
}

/// The pattern as an anchored regex (placeholders as one-segment captures) and its capture names.
fn compile(pattern: &str) -> Result<(Regex, Vec<String>), String> {
    let mut regex = String::from("^");
    let mut names: Vec<String> = Vec::new();
    let mut rest = pattern;
    let mut offset = 0;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!(
                "invalid capture ending at offset {}: missing opening brace",
                offset + open
            ));
        }
        regex.push_str(&regex::escape(&rest[..open]));
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "invalid capture starting at offset {}: missing closing brace",
                offset + open
            ));
        };
        let name = &rest[open + 1..open + close];
        if name.is_empty() {
            return Err("empty capture variable".into());
        }
        if !is_capture_name(name) {
            return Err(format!(
                "capture variable \"{name}\" must be a valid capture name matching [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("duplicate capture variable \"{name}\""));
        }
        regex.push_str(&format!("(?P<{name}>[^/]+)"));
        names.push(name.to_string());
        offset += open + close + 1;
        rest = &rest[open + close + 1..];
    }
    regex.push_str(&regex::escape(rest));
    regex.push('$');
    Regex::new(&regex).map(|r| (r, names)).map_err(|e| e.to_string())
}

/// `template` with `{name}` replaced by `values[name]`.
fn render(template: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(at) = rest.find(['{', '}']) {
        if rest.as_bytes()[at] == b'}' {
            return Err(format!(
                "capture ending at offset {} is missing opening brace",
                offset + at
            ));
        }
        out.push_str(&rest[..at]);
        let Some(close) = rest[at..].find('}') else {
            return Err(format!(
                "capture starting at offset {} is missing closing brace",
                offset + at
            ));
        };
        let name = &rest[at + 1..at + close];
        if name.is_empty() {
            return Err("empty capture variable".into());
        }
        let Some(value) = values.get(name) else {
            return Err(format!(
                "capture variable \"{name}\" is not defined by pathPattern"
            ));
        };
        out.push_str(value);
        offset += at + close + 1;
        rest = &rest[at + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Visits every directory below `root/rel` (not `root` itself) in lexical order, hidden ones too.
fn walk_dirs(root: &Path, rel: &str, visit: &mut dyn FnMut(&str)) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(rel))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        visit(&path);
        walk_dirs(root, &path, visit)?;
    }
    Ok(())
}

fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label key without prefix: 1–63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn is_label_key(name: &str) -> bool {
    !name.is_empty() && is_label_value(name)
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && (value.is_empty()
            || (value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && value.ends_with(|c: char| c.is_ascii_alphanumeric())
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))))
}

/// A Kubernetes object name (RFC 1123 subdomain).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_api::source_extensions::CopyOperation;

    fn artifact(name: &str, from: &str, to: &str) -> OutputArtifact {
        OutputArtifact {
            name: name.into(),
            copy: vec![CopyOperation {
                from: from.into(),
                to: to.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn one_artifact_per_matched_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for d in ["apps/Frontend", "apps/backend", "apps/backend/nested", "other/x"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap_or_else(|e| panic!("{e}"));
        }
        let sources = BTreeMap::from([("repo".to_string(), dir.path().to_path_buf())]);
        let spec = [artifact(
            "{app}-manifests",
            "@repo/apps/{app}/**",
            "@artifact/{app}/",
        )];
        let got = requests(&spec, Some("@repo/apps/{app}"), &sources).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<_> = got.iter().map(|r| r.artifact.name.as_str()).collect();
        // Directories in byte order (Go's WalkDir): upper case first.
        assert_eq!(names, ["frontend-manifests", "backend-manifests"]);
        // Names and labels lowercased, copy paths as captured.
        assert_eq!(got[0].artifact.copy[0].from, "@repo/apps/Frontend/**");
        assert_eq!(got[0].labels.get("app").map(String::as_str), Some("frontend"));
    }

    #[test]
    fn bad_patterns_are_terminal_with_fluxs_words() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("apps/a")).unwrap_or_else(|e| panic!("{e}"));
        let sources = BTreeMap::from([("repo".to_string(), dir.path().to_path_buf())]);
        let spec = [artifact("{app}", "@repo/apps/{app}/**", "@artifact/")];
        let cases = [
            ("@repo/apps/{app", "missing closing brace"),
            ("@repo/apps/{}", "empty capture variable"),
            ("@repo/{a}/{a}", "duplicate capture variable \"a\""),
            ("@nope/apps/{app}", "source alias nope not found in local sources"),
        ];
        for (pattern, expected) in cases {
            match requests(&spec, Some(pattern), &sources) {
                Err(ExpandError::Terminal(m)) => assert!(m.contains(expected), "{pattern}: {m}"),
                other => panic!("{pattern}: {other:?}"),
            }
        }
        let undefined = [artifact("{other}", "@repo/x", "@artifact/")];
        match requests(&undefined, Some("@repo/apps/{app}"), &sources) {
            Err(ExpandError::Terminal(m)) => {
                assert!(
                    m.contains("capture variable \"other\" is not defined by pathPattern"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
