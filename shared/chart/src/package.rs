//! Packaging a chart directory as `helm package` lays it out: a tar.gz whose entries sit under
//! `<name>/`, without what the chart's `.helmignore` names (and, as Helm, without hidden files
//! directly in `templates/`). The archive is deterministic (sorted entries, zeroed times and
//! owners), so the same chart content always has the same digest.

use std::io;
use std::path::Path;

use driftless_artifact::archive::{Archived, archive_dir};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The rules of a chart's `.helmignore` (gitignore syntax, which Helm's follows) plus Helm's
/// default: hidden files directly in `templates/`.
pub struct HelmIgnore {
    rules: Gitignore,
}

impl HelmIgnore {
    /// The rules of the chart in `chart_dir`; a chart without `.helmignore` has only Helm's default.
    pub fn of(chart_dir: &Path) -> Self {
        let mut builder = GitignoreBuilder::new(chart_dir);
        // Unreadable or invalid lines are skipped, as Helm skips what it cannot parse.
        let _ = builder.add_line(None, "templates/.?*");
        if let Ok(text) = std::fs::read_to_string(chart_dir.join(".helmignore")) {
            for line in text.lines() {
                let _ = builder.add_line(None, line);
            }
        }
        Self {
            rules: builder.build().unwrap_or_else(|_| Gitignore::empty()),
        }
    }

    /// Whether `rel` (relative to the chart directory, `/`-separated) is packaged.
    pub fn includes(&self, rel: &str, is_dir: bool) -> bool {
        !self.rules.matched_path_or_any_parents(rel, is_dir).is_ignore()
    }
}

/// Packages the chart directory `stage/<name>` into `out` (written atomically).
pub fn package(stage: &Path, name: &str, out: &Path) -> io::Result<Archived> {
    let rules = HelmIgnore::of(&stage.join(name));
    let prefix = format!("{name}/");
    let include = |path: &str, is_dir: bool| match path.strip_prefix(&prefix) {
        Some(rel) => rules.includes(rel, is_dir),
        None => path == name,
    };
    archive_dir(stage, &include, out)
}

/// Copies the chart in `from` to `to` (created), without what its `.helmignore` names:
/// a chart placed as another's subchart directory (`charts/<name>/`). Symbolic links are
/// skipped, as packaging skips them.
pub fn copy_chart(from: &Path, to: &Path) -> io::Result<()> {
    let rules = HelmIgnore::of(from);
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        std::fs::create_dir_all(to.join(&rel))?;
        for entry in std::fs::read_dir(from.join(&rel))? {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            let name = child.to_string_lossy().replace('\\', "/");
            let kind = entry.file_type()?;
            if kind.is_dir() && rules.includes(&name, true) {
                stack.push(child);
            } else if kind.is_file() && rules.includes(&name, false) {
                std::fs::copy(entry.path(), to.join(&child))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn charts_are_packaged_under_their_name_without_ignored_files() {
        let stage = tempfile::tempdir().unwrap();
        let chart = stage.path().join("app");
        std::fs::create_dir_all(chart.join("templates")).unwrap();
        std::fs::create_dir_all(chart.join("ci")).unwrap();
        std::fs::write(chart.join("Chart.yaml"), "name: app\nversion: 1.0.0\n").unwrap();
        std::fs::write(chart.join(".helmignore"), "# comment\nci/\n*.tmp\n").unwrap();
        std::fs::write(chart.join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
        std::fs::write(chart.join("templates/.hidden"), "x").unwrap();
        std::fs::write(chart.join("ci/values.yaml"), "x: 1\n").unwrap();
        std::fs::write(chart.join("notes.tmp"), "x").unwrap();
        std::fs::write(stage.path().join("stray"), "x").unwrap();
        let out = stage.path().join("out/app-1.0.0.tgz");
        let first = package(stage.path(), "app", &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with('/'))
            .collect();
        assert_eq!(
            names,
            ["app/.helmignore", "app/Chart.yaml", "app/templates/cm.yaml"]
        );
        assert_eq!(package(stage.path(), "app", &out).unwrap(), first);

        let copy = stage.path().join("copy");
        copy_chart(&chart, &copy).unwrap();
        assert!(copy.join("templates/cm.yaml").is_file() && copy.join(".helmignore").is_file());
        assert!(!copy.join("ci").exists() && !copy.join("notes.tmp").exists());
    }
}
