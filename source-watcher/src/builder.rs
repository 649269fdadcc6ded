//! Builds one artifact's directory from the fetched sources: the copy operations of an
//! `artifacts[]` entry applied in order, as source-watcher applies them.
//!
//! * `from` is `@<alias>/<path or glob>`. A path (no `*?[]`) copies that file, or that
//!   directory under its own name (`@src/` copies the source's contents). A glob matches one
//!   path segment per pattern segment (Go's `fs.Glob`: `**` is `*`); a match that is a directory
//!   is copied whole. With `dir/**` the matches land under `to` without the `dir/` prefix.
//! * `to` is `@artifact/<path>`: a file copied to a path ending in `/`, or to a directory that
//!   exists already, keeps its name.
//! * `exclude` globs (recursive `**`, as doublestar) are matched against the path from the
//!   source's root and from the non-glob prefix of `from`; a pattern without `/` matches the
//!   file name at any depth.
//! * Strategies: Overwrite (default); Merge deep-merges a YAML file into the one already
//!   there, Helm-values style (maps merged, lists replaced); Extract unpacks `.tar.gz`/`.tgz`
//!   files into `to` (other files matched by a glob are skipped).
//!
//! Every destination stays inside the artifact directory: `..` in `to` or in a capture is refused.

use driftless_api::source_extensions::{CopyOperation, strategies};
use globset::{Glob, GlobBuilder, GlobMatcher};
use serde_json::{Map, Value};
use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

/// Largest size of a tarball's extracted contents (Flux's `tar.Untar` default).
const EXTRACT_MAX_SIZE: u64 = 100 << 20;

/// Why an artifact could not be built; the message is the one users see.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, BuildError> {
    Err(BuildError(message.into()))
}

fn io_error(e: io::Error) -> BuildError {
    BuildError(e.to_string())
}

/// Applies `copies` in order from `sources` (alias → fetched directory) into `staging`.
pub fn build(
    copies: &[CopyOperation],
    sources: &BTreeMap<String, PathBuf>,
    staging: &Path,
) -> Result<(), BuildError> {
    fs::create_dir_all(staging).map_err(io_error)?;
    for copy in copies {
        apply(copy, sources, staging).map_err(|BuildError(e)| {
            BuildError(format!(
                "failed to apply copy operations: failed to apply copy operation from '{}' to '{}': {e}",
                copy.from, copy.to
            ))
        })?;
    }
    Ok(())
}

/// `@<alias>/<pattern>` split.
pub fn split_alias(reference: &str) -> Result<(&str, &str), BuildError> {
    let Some(rest) = reference.strip_prefix('@') else {
        return fail(format!(
            "invalid copy source '{reference}': source must start with '@'"
        ));
    };
    match rest.split_once('/') {
        Some((alias, pattern)) if !alias.is_empty() => Ok((alias, pattern)),
        _ => fail(format!(
            "invalid copy source '{reference}': source format must be '@alias/pattern'"
        )),
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', ']'])
}

/// `path` cleaned (`.` segments and a trailing `/` dropped), or None when it leaves its root.
fn clean(path: &str) -> Option<String> {
    let confined = driftless_artifact::extract::confined(Path::new(path))?;
    let text = confined.to_string_lossy().replace('\\', "/");
    Some(if text.is_empty() { ".".into() } else { text })
}

/// `base/rel` without `.` noise.
fn join(base: &str, rel: &str) -> String {
    match (base, rel) {
        ("" | ".", rel) => rel.to_string(),
        (base, "" | ".") => base.to_string(),
        (base, rel) => format!("{}/{rel}", base.trim_end_matches('/')),
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A doublestar-style matcher: `*` stays in one segment, `**` crosses them, braces allowed.
fn doublestar(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

/// The `exclude` patterns of a copy and the base they are also matched from.
struct Excludes {
    patterns: Vec<(GlobMatcher, bool)>,
}

impl Excludes {
    fn new(patterns: &[String]) -> Result<Self, BuildError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                doublestar(p)
                    .map(|m| (m, p.contains('/')))
                    .map_err(|_| BuildError(format!("invalid exclude pattern '{p}'")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    fn matches_one(&self, path: &str) -> bool {
        self.patterns
            .iter()
            .any(|(m, has_separator)| m.is_match(path) || (!has_separator && m.is_match(base_name(path))))
    }

    /// Whether `path` (from the source's root) is excluded, seen from the root or from `base`.
    fn excludes(&self, path: &str, base: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        if self.matches_one(path) {
            return true;
        }
        base != "."
            && path
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rel| self.matches_one(rel))
    }
}

fn apply(
    copy: &CopyOperation,
    sources: &BTreeMap<String, PathBuf>,
    staging: &Path,
) -> Result<(), BuildError> {
    let (alias, pattern) = split_alias(&copy.from)?;
    let Some(root) = sources.get(alias) else {
        return fail(format!("source alias '{alias}' not found"));
    };
    let Some(dest_raw) = copy.to.strip_prefix("@artifact/") else {
        return fail("destination must start with '@artifact/'");
    };
    let Some(dest_rel) = clean(dest_raw).map(|d| if d == "." { String::new() } else { d }) else {
        return fail(format!("destination '{}' leaves the artifact", copy.to));
    };
    let dest_is_dir_path = dest_raw.is_empty() || dest_raw.ends_with('/');
    let excludes = Excludes::new(copy.exclude.as_deref().unwrap_or_default())?;
    let strategy = copy.strategy.as_deref().unwrap_or(strategies::OVERWRITE);
    let extract = strategy == strategies::EXTRACT;
    let merge = strategy == strategies::MERGE;

    if !is_glob(pattern) {
        let Some(src_rel) = clean(pattern) else {
            return fail(format!("source '{pattern}' does not exist"));
        };
        let src = root.join(&src_rel);
        let meta = fs::symlink_metadata(&src)
            .map_err(|_| BuildError(format!("source '{pattern}' does not exist")))?;
        if meta.is_dir() {
            if extract {
                return fail(format!(
                    "extract strategy is not supported for directories, got '{pattern}'"
                ));
            }
            let dest = join(&dest_rel, if src_rel == "." { "." } else { base_name(&src_rel) });
            return copy_dir(root, &src_rel, staging, &dest, &excludes, &src_rel);
        }
        if excludes.excludes(&src_rel, ".") {
            return Ok(());
        }
        if extract {
            return extract_tarball(&src, &staging.join(&dest_rel), &src_rel, true);
        }
        let dest = if dest_is_dir_path || staging.join(&dest_rel).is_dir() {
            join(&dest_rel, base_name(&src_rel))
        } else {
            dest_rel.clone()
        };
        return copy_file(&src, &staging.join(dest), merge);
    }

    let matches = if extract {
        recursive_glob(root, pattern)?
    } else {
        segment_glob(root, pattern)?
    };
    if matches.is_empty() {
        return fail(format!("no files match pattern '{pattern}' in source '{alias}'"));
    }
    let base = selection_root(pattern);
    let kept: Vec<String> = matches
        .into_iter()
        .filter(|m| !excludes.excludes(m, &base))
        .collect();
    if kept.is_empty() {
        return fail(format!(
            "all files matching pattern '{pattern}' in source '{alias}' were excluded"
        ));
    }
    let under = pattern.strip_suffix("/**").map(|p| format!("{p}/"));
    for matched in kept {
        let src = root.join(&matched);
        let is_dir = src.is_dir();
        if extract {
            if !is_dir && is_tarball(&matched) {
                extract_tarball(&src, &staging.join(&dest_rel), &matched, false)?;
            }
            continue;
        }
        let rel = match &under {
            Some(prefix) if matched.starts_with(prefix.as_str()) => &matched[prefix.len()..],
            _ => matched.as_str(),
        };
        let dest = join(&dest_rel, rel);
        if is_dir {
            copy_dir(root, &matched, staging, &dest, &excludes, &base)?;
        } else {
            copy_file(&src, &staging.join(dest), merge)?;
        }
    }
    Ok(())
}

/// The segments of `pattern` before the first with a glob character (`.` when none).
fn selection_root(pattern: &str) -> String {
    let fixed: Vec<&str> = pattern
        .split('/')
        .take_while(|segment| !is_glob(segment))
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if fixed.is_empty() {
        ".".into()
    } else {
        fixed.join("/")
    }
}

fn is_tarball(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".tar.gz") || lower.ends_with(".tgz")
}

/// Sorted entries of a directory (names).
fn entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Go's `fs.Glob`: each pattern segment matches one path segment (`**` is `*`), in lexical
/// order.
fn segment_glob(root: &Path, pattern: &str) -> Result<Vec<String>, BuildError> {
    let mut current = vec![String::new()];
    for segment in pattern.split('/').filter(|s| !s.is_empty() && *s != ".") {
        let mut next = Vec::new();
        if is_glob(segment) {
            let single = segment.replace("**", "*");
            let matcher = Glob::new(&single)
                .map_err(|_| {
                    BuildError(format!(
                        "invalid glob pattern '{pattern}': syntax error in pattern"
                    ))
                })?
                .compile_matcher();
            for dir in &current {
                let path = root.join(dir);
                if !path.is_dir() {
                    continue;
                }
                for name in entries(&path).map_err(io_error)? {
                    if matcher.is_match(&name) {
                        next.push(join(dir, &name));
                    }
                }
            }
        } else {
            for dir in &current {
                let candidate = join(dir, segment);
                if fs::symlink_metadata(root.join(&candidate)).is_ok() {
                    next.push(candidate);
                }
            }
        }
        current = next;
    }
    current.retain(|m| !m.is_empty());
    Ok(current)
}

/// doublestar's `Glob`: `**` crosses directories; every file and directory below `root`
/// whose path matches.
fn recursive_glob(root: &Path, pattern: &str) -> Result<Vec<String>, BuildError> {
    let matcher = doublestar(pattern).map_err(|_| {
        BuildError(format!(
            "invalid glob pattern '{pattern}': syntax error in pattern"
        ))
    })?;
    let mut found = Vec::new();
    walk(root, "", &mut |rel, _| {
        if matcher.is_match(rel) {
            found.push(rel.to_string());
        }
        true
    })
    .map_err(io_error)?;
    Ok(found)
}

/// Visits every entry below `root/rel` in lexical order; `visit(path, is_dir)` returning false
/// for a directory skips its contents. Symlinks are not followed.
fn walk(root: &Path, rel: &str, visit: &mut dyn FnMut(&str, bool) -> bool) -> io::Result<()> {
    for name in entries(&root.join(rel))? {
        let path = join(rel, &name);
        let meta = fs::symlink_metadata(root.join(&path))?;
        if meta.is_dir() {
            if visit(&path, true) {
                walk(root, &path, visit)?;
            }
        } else if meta.is_file() {
            visit(&path, false);
        }
    }
    Ok(())
}

/// Copies the directory `src_rel` of `root` to `dest` in `staging`, files overwritten (a
/// directory copy never merges), empty directories kept, excluded paths skipped.
fn copy_dir(
    root: &Path,
    src_rel: &str,
    staging: &Path,
    dest: &str,
    excludes: &Excludes,
    base: &str,
) -> Result<(), BuildError> {
    let target = staging.join(dest);
    fs::create_dir_all(&target).map_err(io_error)?;
    let src_root = root.join(src_rel);
    let mut failure = None;
    walk(&src_root, "", &mut |rel, is_dir| {
        if failure.is_some() {
            return false;
        }
        let from_root = join(src_rel, rel);
        if excludes.excludes(&from_root, base) {
            return false;
        }
        let out = target.join(rel);
        let done = if is_dir {
            fs::create_dir_all(&out).map_err(io_error)
        } else {
            copy_file(&src_root.join(rel), &out, false)
        };
        if let Err(e) = done {
            failure = Some(e);
        }
        true
    })
    .map_err(io_error)?;
    failure.map_or(Ok(()), Err)
}

/// Copies one file: overwritten with the source's permissions, or with `merge` and a file
/// already there, merged into it as YAML.
fn copy_file(src: &Path, dest: &Path, merge: bool) -> Result<(), BuildError> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    if merge && dest.is_file() {
        return merge_yaml(src, dest);
    }
    if dest.is_dir() {
        return fail(format!("destination '{}' is a directory", dest.display()));
    }
    fs::copy(src, dest).map_err(io_error)?;
    Ok(())
}

/// Every document of a YAML file folded into one map (later documents win).
fn yaml_map(text: &str) -> Result<Map<String, Value>, BuildError> {
    use serde::Deserialize;
    let mut merged = Map::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document)
            .map_err(|e| BuildError(format!("error reading YAML document: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(map) => driftless_chart::values::merge(&mut merged, map),
            _ => return fail("cannot unmarshal YAML document: not a map"),
        }
    }
    Ok(merged)
}

/// Merges the YAML file `src` into `dest` as Helm merges values files.
fn merge_yaml(src: &Path, dest: &Path) -> Result<(), BuildError> {
    let read = |p: &Path| fs::read_to_string(p).map_err(io_error);
    let mut base = yaml_map(&read(dest)?)?;
    driftless_chart::values::merge(&mut base, yaml_map(&read(src)?)?);
    let text = serde_norway::to_string(&Value::Object(base))
        .map_err(|e| BuildError(format!("failed to merged YAML: {e}")))?;
    fs::write(dest, text).map_err(io_error)
}

/// Extracts the tarball `src` into `dest`; `single` words the errors for a `from` naming one file.
fn extract_tarball(src: &Path, dest: &Path, shown: &str, single: bool) -> Result<(), BuildError> {
    if single && !is_tarball(shown) {
        return fail(format!(
            "extract strategy requires tarball file (.tar.gz or .tgz), got '{shown}'"
        ));
    }
    let file = fs::File::open(src).map_err(io_error)?;
    driftless_artifact::extract::extract_tar_gz(file, dest, EXTRACT_MAX_SIZE)
        .map(|_| ())
        .map_err(|e| {
            BuildError(format!(
                "failed to extract tarball '{shown}' to '{}': {e}",
                dest.display()
            ))
        })
}

/// source-watcher's name for an artifact's content: the Adler-32 of one line per file
/// (`<adler32 of the content in hex>  <name>/<path>`, in path order), in decimal. Only names
/// and contents count, so the same files make the same file name.
pub fn dir_hash(staging: &Path, name: &str) -> Result<u32, BuildError> {
    let mut files = Vec::new();
    walk(staging, "", &mut |rel, is_dir| {
        if !is_dir {
            files.push(format!("{name}/{rel}"));
        }
        true
    })
    .map_err(io_error)?;
    files.sort();
    let mut summary = String::new();
    for file in &files {
        if file.contains('\n') {
            return fail("filenames with newlines are not supported");
        }
        let rel = &file[name.len() + 1..];
        let content = fs::read(staging.join(rel)).map_err(io_error)?;
        summary.push_str(&format!("{:x}  {file}\n", adler2::adler32_slice(&content)));
    }
    Ok(adler2::adler32_slice(summary.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source tree: `(path, content)`; a path ending in `/` is an empty directory.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (path, content) in files {
            let p = dir.path().join(path);
            if path.ends_with('/') {
                fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
                continue;
            }
            fs::create_dir_all(p.parent().unwrap_or(dir.path())).unwrap_or_else(|e| panic!("{e}"));
            fs::write(&p, content).unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }

    fn files_of(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        walk(dir, "", &mut |rel, is_dir| {
            if !is_dir {
                out.push(rel.to_string());
            }
            true
        })
        .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    fn op(from: &str, to: &str) -> CopyOperation {
        CopyOperation {
            from: from.into(),
            to: to.into(),
            ..Default::default()
        }
    }

    fn run(ops: &[CopyOperation], source: &tempfile::TempDir) -> Result<Vec<String>, BuildError> {
        let staging = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sources = BTreeMap::from([("src".to_string(), source.path().to_path_buf())]);
        build(ops, &sources, staging.path())?;
        Ok(files_of(staging.path()))
    }

    /// source-watcher's builder cases: where each `from`/`to` pair puts the files.
    #[test]
    fn copies_land_where_source_watcher_puts_them() {
        let source = tree(&[
            ("config.yaml", "a: 1"),
            ("root.yaml", "r: 1"),
            ("config/app.yaml", "app: 1"),
            ("config/subdir/db.yaml", "db: 1"),
            ("deploy/a.yaml", "a"),
            ("deploy/b.json", "b"),
            ("README.md", "x"),
            ("docs/guide.md", "y"),
        ]);
        let cases: &[(&str, &str, &[&str])] = &[
            ("@src/config.yaml", "@artifact/", &["config.yaml"]),
            ("@src/config.yaml", "@artifact/dest/", &["dest/config.yaml"]),
            ("@src/config.yaml", "@artifact/renamed.yaml", &["renamed.yaml"]),
            (
                "@src/config",
                "@artifact/dest",
                &["dest/config/app.yaml", "dest/config/subdir/db.yaml"],
            ),
            (
                "@src/config/",
                "@artifact/dest/",
                &["dest/config/app.yaml", "dest/config/subdir/db.yaml"],
            ),
            (
                "@src/config/**",
                "@artifact/dest/",
                &["dest/app.yaml", "dest/subdir/db.yaml"],
            ),
            ("@src/deploy/*.yaml", "@artifact/", &["deploy/a.yaml"]),
            // `**` is one segment, as in Go's fs.Glob.
            (
                "@src/**/*.yaml",
                "@artifact/",
                &["config/app.yaml", "deploy/a.yaml"],
            ),
        ];
        for (from, to, expected) in cases {
            let got = run(&[op(from, to)], &source).unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
            assert_eq!(&got, expected, "{from} → {to}");
        }
        let all = run(&[op("@src/", "@artifact/")], &source).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 8);
        let star = run(&[op("@src/**", "@artifact/")], &source).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(star, all);
    }

    #[test]
    fn excludes_match_names_at_any_depth_and_paths_from_either_root() {
        let source = tree(&[
            ("infrastructure/controllers/descheduler/a.yaml", "a"),
            ("infrastructure/controllers/cert-manager.yaml", "c"),
            ("infrastructure/descheduler/b.yaml", "b"),
            ("infrastructure/README.md", "r"),
        ]);
        let with = |from: &str, exclude: &[&str]| {
            let mut o = op(from, "@artifact/");
            o.exclude = Some(exclude.iter().map(|s| s.to_string()).collect());
            run(&[o], &source).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            with(
                "@src/infrastructure/**",
                &["*.md", "infrastructure/controllers/descheduler/**"]
            ),
            ["controllers/cert-manager.yaml", "descheduler/b.yaml"]
        );
        // Relative to the non-glob prefix: drops infrastructure/descheduler only.
        assert_eq!(
            with("@src/infrastructure/**", &["descheduler/**"]),
            [
                "README.md",
                "controllers/cert-manager.yaml",
                "controllers/descheduler/a.yaml"
            ]
        );
        let mut o = op("@src/infrastructure/*.md", "@artifact/");
        o.exclude = Some(vec!["*.md".into()]);
        let err = run(&[o], &source).err().map(|e| e.0).unwrap_or_default();
        assert!(
            err.ends_with("all files matching pattern 'infrastructure/*.md' in source 'src' were excluded"),
            "{err}"
        );
    }

    #[test]
    fn merge_deep_merges_yaml_and_lists_are_replaced() {
        let source = tree(&[
            (
                "base/values.yaml",
                "image:\n  tag: 1.0\n  repo: x\nlist: [1, 2]\n",
            ),
            ("prod/values.yaml", "image:\n  tag: '2.0'\nlist: [3]\n"),
        ]);
        let mut overlay = op("@src/prod/values.yaml", "@artifact/values.yaml");
        overlay.strategy = Some(strategies::MERGE.into());
        let staging = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sources = BTreeMap::from([("src".to_string(), source.path().to_path_buf())]);
        build(
            &[op("@src/base/values.yaml", "@artifact/values.yaml"), overlay],
            &sources,
            staging.path(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let merged: Value = serde_norway::from_str(
            &fs::read_to_string(staging.path().join("values.yaml")).unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(
            merged,
            serde_json::json!({"image": {"tag": "2.0", "repo": "x"}, "list": [3]})
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let source = tree(&[("config.yaml", "a: 1"), ("dir/", "")]);
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                "@src/missing.yaml",
                "@artifact/",
                None,
                "source 'missing.yaml' does not exist",
            ),
            (
                "@src/*.json",
                "@artifact/",
                None,
                "no files match pattern '*.json' in source 'src'",
            ),
            ("@other/x", "@artifact/", None, "source alias 'other' not found"),
            ("@src/[", "@artifact/", None, "syntax error in pattern"),
            ("@src/config.yaml", "@artifact/../x", None, "leaves the artifact"),
            (
                "@src/dir",
                "@artifact/",
                Some("Extract"),
                "extract strategy is not supported for directories, got 'dir'",
            ),
            (
                "@src/config.yaml",
                "@artifact/",
                Some("Extract"),
                "extract strategy requires tarball file (.tar.gz or .tgz), got 'config.yaml'",
            ),
        ];
        for (from, to, strategy, expected) in cases {
            let mut o = op(from, to);
            o.strategy = strategy.map(str::to_string);
            let err = run(&[o], &source).err().map(|e| e.0).unwrap_or_default();
            assert!(err.contains(expected), "{from} → {to}: {err}");
        }
    }

    #[test]
    fn tarballs_are_extracted() {
        let content = tree(&[("m/deploy.yaml", "kind: x")]);
        let source = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tgz = fs::File::create(source.path().join("manifests.tgz")).unwrap_or_else(|e| panic!("{e}"));
        driftless_artifact::archive::write_tar_gz(content.path(), &|_: &str, _: bool| true, tgz)
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(source.path().join("readme.txt"), "r").unwrap_or_else(|e| panic!("{e}"));
        let mut o = op("@src/*", "@artifact/out");
        o.strategy = Some(strategies::EXTRACT.into());
        assert_eq!(
            run(&[o], &source).unwrap_or_else(|e| panic!("{e}")),
            ["out/m/deploy.yaml"]
        );
    }

    #[test]
    fn the_content_hash_depends_on_names_and_contents_only() {
        let a = tree(&[("x.yaml", "1"), ("d/y.yaml", "2")]);
        let b = tree(&[("d/y.yaml", "2"), ("x.yaml", "1"), ("empty/", "")]);
        let hash = |d: &tempfile::TempDir, n: &str| dir_hash(d.path(), n).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hash(&a, "apps"), hash(&b, "apps"));
        assert_ne!(hash(&a, "apps"), hash(&a, "infra"));
        let c = tree(&[("x.yaml", "1"), ("d/y.yaml", "3")]);
        assert_ne!(hash(&a, "apps"), hash(&c, "apps"));
        assert_eq!(dir_hash(tree(&[]).path(), "e").unwrap_or(0), 1);
    }
}
