//! Which files go into an artifact: Flux's exclusion rules in gitignore syntax.
//!
//! Lowest to highest priority: the VCS patterns (always), Flux's default exclusions (only when
//! `spec.ignore` is not set — setting it replaces them), `.sourceignore` files anywhere in the
//! tree (each relative to its own directory, deeper files overriding shallower ones), and
//! `spec.ignore`.

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::path::{Path, PathBuf};

/// Always excluded.
pub const VCS_PATTERNS: &[&str] = &[".git/", ".gitignore", ".gitmodules", ".gitattributes"];

/// Excluded unless `spec.ignore` is set.
pub const DEFAULT_EXCLUSIONS: &[&str] = &[
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
];

/// File name of per-directory ignore files.
pub const SOURCEIGNORE: &str = ".sourceignore";

/// The compiled rules for one tree.
pub struct SourceIgnore {
    /// (directory relative to the root, its rules), shallowest first; the root's first.
    layers: Vec<(PathBuf, Gitignore)>,
}

fn build(root: &Path, lines: impl IntoIterator<Item = String>) -> Gitignore {
    let mut b = GitignoreBuilder::new(root);
    for line in lines {
        // A bad pattern is skipped, as git does.
        let _ = b.add_line(None, &line);
    }
    b.build().unwrap_or_else(|_| Gitignore::empty())
}

impl SourceIgnore {
    /// Compiles the rules for the tree at `root`.
    ///
    /// As Flux's `SourceIgnoreFilter`: the default exclusions apply only when no pattern at all
    /// is given, by `.sourceignore` files or `spec.ignore`; the VCS patterns always apply.
    pub fn new(root: &Path, spec_ignore: Option<&str>) -> Self {
        let root_file = std::fs::read_to_string(root.join(SOURCEIGNORE)).unwrap_or_default();
        let mut nested = Vec::new();
        find_nested(root, Path::new(""), &mut nested);
        nested.sort();
        let nested: Vec<(PathBuf, String)> = nested
            .into_iter()
            .filter_map(|rel| {
                let text = std::fs::read_to_string(root.join(&rel).join(SOURCEIGNORE)).ok()?;
                Some((rel, text))
            })
            .collect();
        let has_patterns = |text: &str| {
            text.lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && !l.starts_with('#'))
        };
        let patterns_given = has_patterns(&root_file)
            || nested.iter().any(|(_, text)| has_patterns(text))
            || spec_ignore.is_some_and(has_patterns);
        let mut base: Vec<String> = VCS_PATTERNS.iter().map(|s| s.to_string()).collect();
        if !patterns_given {
            base.extend(DEFAULT_EXCLUSIONS.iter().map(|s| s.to_string()));
        }
        base.extend(root_file.lines().map(str::to_string));
        let mut layers = vec![(PathBuf::new(), build(root, base))];
        for (rel, text) in nested {
            layers.push((
                rel.clone(),
                build(&root.join(&rel), text.lines().map(str::to_string)),
            ));
        }
        if let Some(spec) = spec_ignore {
            layers.push((PathBuf::new(), build(root, spec.lines().map(str::to_string))));
        }
        Self { layers }
    }

    /// Whether `rel` (`/`-separated, relative to the root) is included.
    pub fn includes(&self, rel: &str, is_dir: bool) -> bool {
        let path = Path::new(rel);
        let mut included = true;
        for (dir, gi) in &self.layers {
            let Ok(sub) = path.strip_prefix(dir) else { continue };
            if sub.as_os_str().is_empty() {
                continue;
            }
            let m = gi.matched(sub, is_dir);
            if m.is_ignore() {
                included = false;
            } else if m.is_whitelist() {
                included = true;
            }
        }
        included
    }
}

fn find_nested(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != ".git" {
            let child = rel.join(e.file_name());
            if root.join(&child).join(SOURCEIGNORE).is_file() {
                out.push(child.clone());
            }
            find_nested(root, &child, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "deploy/app.yaml",
            "docs/logo.png",
            ".github/workflows/ci.yml",
            "README.md",
            "apps/.sops.yaml",
            "apps/x.yaml",
        ] {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        }
        d
    }

    #[test]
    fn defaults_exclude_vcs_ci_and_binaries() {
        let d = tree();
        let si = SourceIgnore::new(d.path(), None);
        assert!(!si.includes(".git", true));
        assert!(!si.includes(".github", true));
        assert!(!si.includes("docs/logo.png", false));
        assert!(!si.includes("apps/.sops.yaml", false));
        assert!(si.includes("deploy/app.yaml", false));
        assert!(si.includes("README.md", false));
    }

    #[test]
    fn spec_ignore_replaces_the_defaults_and_supports_negation() {
        let d = tree();
        let si = SourceIgnore::new(d.path(), Some("/*\n!/deploy\n"));
        assert!(si.includes("deploy", true));
        assert!(si.includes("deploy/app.yaml", false));
        assert!(!si.includes("README.md", false));
        assert!(!si.includes("apps", true));
        assert!(!si.includes(".git", true), "VCS patterns always apply");
    }

    #[test]
    fn nested_sourceignore_files_apply_to_their_directory() {
        let d = tree();
        fs::write(d.path().join(SOURCEIGNORE), "*.md\n").unwrap();
        fs::write(d.path().join("apps/.sourceignore"), "x.yaml\n").unwrap();
        let si = SourceIgnore::new(d.path(), None);
        assert!(!si.includes("README.md", false));
        assert!(!si.includes("apps/x.yaml", false));
        assert!(si.includes("deploy/app.yaml", false));
        assert!(
            si.includes("x.yaml", false),
            "apps/.sourceignore must not apply at the root"
        );
        // Patterns were given (by the files): the defaults no longer apply, as in Flux.
        assert!(si.includes(".github", true) && si.includes("docs/logo.png", false));
        assert!(!si.includes(".git", true), "VCS patterns always apply");
    }

    /// An empty or comment-only `spec.ignore` gives no pattern: the defaults stay, as in Flux.
    #[test]
    fn an_ignore_without_patterns_keeps_the_defaults() {
        let d = tree();
        for spec in ["", "# nothing\n\n"] {
            let si = SourceIgnore::new(d.path(), Some(spec));
            assert!(!si.includes(".github", true) && !si.includes("docs/logo.png", false));
        }
    }
}
