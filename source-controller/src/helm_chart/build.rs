//! Building a chart artifact in a work directory, as Flux's chart builders do (blocking work,
//! run off the async runtime):
//!
//! - a chart from a GitRepository or Bucket artifact ([`unpack_source`]) is the directory (or
//!   packaged `.tgz`) at `spec.chart`, confined to the source; its missing dependencies
//!   ([`missing_dependencies`]) are added — charts of the same source copied in
//!   ([`add_local_dependency`]), archives from repositories written to `charts/`
//!   ([`add_archive_dependency`]);
//! - a chart pulled from a repository is unpacked ([`unpack_archive`]) only when `valuesFiles`
//!   change it;
//! - then `valuesFiles` are merged in order into the packaged `values.yaml`
//!   ([`merge_values_files`]), the version gets its build metadata ([`with_metadata`],
//!   [`set_version`]) and the chart is packaged as `<name>-<version>.tgz` ([`package`]).

use std::path::{Path, PathBuf};

use driftless_artifact::extract::{self, confined};
use driftless_chart::metadata::{self, ChartFile, Dependency};
use driftless_chart::values;

/// Largest unpacked source or chart.
const MAX_UNPACKED: u64 = 1 << 30;

/// Why a build failed, as Flux's build errors are classed: each has its reason and message
/// prefix, and the spec's mistakes ([`Self::stalls`]) are not retried.
#[derive(Debug)]
pub enum BuildError {
    Reference(String),
    Metadata(String),
    Values(String),
    Dependency(String),
    Package(String),
}

impl BuildError {
    pub fn reason(&self) -> &'static str {
        use driftless_api::source::reasons::*;
        match self {
            Self::Reference(_) => INVALID_CHART_REFERENCE,
            Self::Metadata(_) => METADATA_PATCH_ERROR,
            Self::Values(_) => VALUES_FILES_ERROR,
            Self::Dependency(_) => DEPENDENCY_BUILD_ERROR,
            Self::Package(_) => CHART_PACKAGE_ERROR,
        }
    }

    /// The spec (or the chart it names) is wrong: retrying cannot help.
    pub fn stalls(&self) -> bool {
        matches!(self, Self::Reference(_) | Self::Metadata(_) | Self::Values(_))
    }

    pub fn message(&self) -> String {
        match self {
            Self::Reference(m) => format!("invalid chart reference: {m}"),
            Self::Metadata(m) => format!("chart metadata patch error: {m}"),
            Self::Values(m) => format!("values files merge error: {m}"),
            Self::Dependency(m) => format!("dependency build error: {m}"),
            Self::Package(m) => format!("chart package error: {m}"),
        }
    }
}

/// A chart unpacked for building.
pub struct Unpacked {
    pub workdir: tempfile::TempDir,
    /// The source's content (for charts from Git or a Bucket): values files and local
    /// dependencies are found in it, never outside.
    pub source_root: Option<PathBuf>,
    pub chart_dir: PathBuf,
    pub chart: ChartFile,
    /// A packaged chart in the source, stored as it is when nothing changes it.
    pub archive: Option<PathBuf>,
}

fn workdir() -> Result<tempfile::TempDir, BuildError> {
    tempfile::tempdir().map_err(|e| BuildError::Package(format!("failed to create temporary directory: {e}")))
}

/// The chart at `chart_path` in the source artifact `artifact` (a tar.gz): a chart directory,
/// or a packaged chart (`.tgz`) that is unpacked.
pub fn unpack_source(artifact: &Path, chart_path: &str) -> Result<Unpacked, BuildError> {
    let workdir = workdir()?;
    let root = workdir.path().join("source");
    let file = std::fs::File::open(artifact)
        .map_err(|e| BuildError::Package(format!("failed to open the source artifact: {e}")))?;
    extract::extract_tar_gz(std::io::BufReader::new(file), &root, MAX_UNPACKED)
        .map_err(|e| BuildError::Package(format!("failed to extract the source artifact: {e}")))?;
    let rel = confined(Path::new(chart_path))
        .ok_or_else(|| BuildError::Reference(format!("path '{chart_path}' leaves the source")))?;
    let path = root.join(&rel);
    let (chart_dir, archive) = if path.is_file() {
        let dir = workdir.path().join("packaged");
        let file = std::fs::File::open(&path).map_err(|e| BuildError::Reference(e.to_string()))?;
        extract::extract_tar_gz(std::io::BufReader::new(file), &dir, MAX_UNPACKED)
            .map_err(|e| BuildError::Reference(format!("'{chart_path}' is not a chart archive: {e}")))?;
        let (chart_dir, _) = metadata::locate(&dir).map_err(BuildError::Reference)?;
        (chart_dir, Some(path))
    } else if path.join("Chart.yaml").is_file() {
        (path, None)
    } else {
        return Err(BuildError::Reference(format!("no chart found at '{chart_path}'")));
    };
    let chart = metadata::read(&chart_dir).map_err(BuildError::Reference)?;
    Ok(Unpacked {
        workdir,
        source_root: Some(root),
        chart_dir,
        chart,
        archive,
    })
}

/// A chart archive pulled from a repository, unpacked to be changed.
pub fn unpack_archive(archive: &[u8]) -> Result<Unpacked, BuildError> {
    let workdir = workdir()?;
    let dir = workdir.path().join("packaged");
    extract::extract_tar_gz(archive, &dir, MAX_UNPACKED)
        .map_err(|e| BuildError::Package(format!("failed to unpack the chart: {e}")))?;
    let (chart_dir, chart) = metadata::locate(&dir).map_err(BuildError::Reference)?;
    Ok(Unpacked {
        workdir,
        source_root: None,
        chart_dir,
        chart,
        archive: None,
    })
}

/// The dependencies `Chart.yaml` (or `Chart.lock`, whose exact versions win) lists that
/// `charts/` does not hold yet (by chart name or alias), as Helm's `dependency build` finds them.
pub fn missing_dependencies(u: &Unpacked) -> Result<Vec<Dependency>, BuildError> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        dependencies: Vec<Dependency>,
    }
    let mut wanted = u.chart.dependencies.clone();
    if let Ok(text) = std::fs::read_to_string(u.chart_dir.join("Chart.lock")) {
        let lock: Lock = serde_norway::from_str(&text)
            .map_err(|e| BuildError::Dependency(format!("invalid Chart.lock: {e}")))?;
        if !lock.dependencies.is_empty() {
            wanted = lock.dependencies;
        }
    }
    let mut present = Vec::new();
    if let Ok(entries) = std::fs::read_dir(u.chart_dir.join("charts")) {
        for entry in entries.flatten() {
            let path = entry.path();
            let chart = if path.is_dir() {
                metadata::read(&path).ok()
            } else if path.extension().is_some_and(|e| e == "tgz") {
                std::fs::read(&path)
                    .ok()
                    .and_then(|b| metadata::read_packaged(&b).ok())
            } else {
                None
            };
            present.extend(chart.map(|c| c.name));
        }
    }
    if present.len() >= wanted.len() {
        return Ok(Vec::new());
    }
    Ok(wanted
        .into_iter()
        .filter(|d| !present.contains(&d.name))
        .collect())
}

/// A dependency from the same source (`file://<path>` relative to the chart, or no repository:
/// `charts/<name>`), copied into `charts/<name>/` once its version meets the constraint.
pub fn add_local_dependency(u: &Unpacked, dep: &Dependency) -> Result<(), BuildError> {
    let failed =
        |m: String| BuildError::Dependency(format!("failed to add local dependency '{}': {m}", dep.name));
    let Some(root) = &u.source_root else {
        return Err(failed(
            "a chart from a repository has no source to find it in".into(),
        ));
    };
    let dir = match dep.repository.strip_prefix("file://") {
        Some(rel) => {
            let chart_rel = u.chart_dir.strip_prefix(root).unwrap_or(Path::new(""));
            within(root, &chart_rel.join(rel))
                .ok_or_else(|| failed(format!("no chart found at '{rel}' (it leaves the source)")))?
        }
        None => u.chart_dir.join("charts").join(&dep.name),
    };
    let chart =
        metadata::read(&dir).map_err(|e| failed(format!("no chart found at '{}': {e}", dir.display())))?;
    if !dep.version.is_empty() && dep.version != "*" {
        let constraints = driftless_semver::Constraints::parse(&dep.version)
            .map_err(|_| failed(format!("invalid version/constraint format '{}'", dep.version)))?;
        let version = driftless_semver::parse_version(&chart.version);
        if !version.is_some_and(|v| constraints.matches(&v)) {
            return Err(failed(format!(
                "can't get a valid version for constraint '{}'",
                dep.version
            )));
        }
    }
    let target = u.chart_dir.join("charts").join(&dep.name);
    if target == dir {
        return Ok(());
    }
    driftless_chart::package::copy_chart(&dir, &target).map_err(|e| failed(e.to_string()))
}

/// `rel` joined to `root` without leaving it (`..` resolved lexically).
fn within(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    Some(parts.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// A dependency pulled from a repository, written as Helm writes it: `charts/<name>-<version>.tgz`.
pub fn add_archive_dependency(
    u: &Unpacked,
    dep: &Dependency,
    version: &str,
    archive: &[u8],
) -> Result<(), BuildError> {
    let charts = u.chart_dir.join("charts");
    std::fs::create_dir_all(&charts)
        .and_then(|_| std::fs::write(charts.join(format!("{}-{version}.tgz", dep.name)), archive))
        .map_err(|e| BuildError::Dependency(format!("failed to add remote dependency '{}': {e}", dep.name)))
}

/// Every file of the chart is at most `max` bytes, as Helm's loader with Flux's
/// `--helm-chart-file-max-size` requires.
pub fn check_file_sizes(u: &Unpacked, max: u64) -> Result<(), BuildError> {
    let mut dirs = vec![u.chart_dir.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| BuildError::Package(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::Package(e.to_string()))?;
            let meta = entry.metadata().map_err(|e| BuildError::Package(e.to_string()))?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.len() > max {
                let path = entry.path();
                let rel = path.strip_prefix(&u.chart_dir).unwrap_or(&path);
                return Err(BuildError::Package(format!(
                    "chart file '{}' is larger than the maximum file size {max}",
                    rel.display()
                )));
            }
        }
    }
    Ok(())
}

/// Merges `files` in order (later wins; maps merge key by key) into the chart's `values.yaml`.
/// A chart from a source finds them relative to the source root, a pulled chart relative to
/// itself. Missing files fail unless `ignore_missing`; returns the files merged.
pub fn merge_values_files(
    u: &Unpacked,
    files: &[String],
    ignore_missing: bool,
) -> Result<Vec<String>, BuildError> {
    let base = u.source_root.as_deref().unwrap_or(&u.chart_dir);
    let mut merged = serde_json::Map::new();
    let mut used = Vec::new();
    for file in files {
        let rel = confined(Path::new(file)).ok_or_else(|| {
            BuildError::Values(format!("values file path '{file}' leaves the chart source"))
        })?;
        let path = base.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && ignore_missing => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BuildError::Values(format!(
                    "no values file found at path '{file}'"
                )));
            }
            Err(e) => {
                return Err(BuildError::Values(format!(
                    "could not read values from file '{file}': {e}"
                )));
            }
        };
        let parsed = values::parse(&text)
            .map_err(|e| BuildError::Values(format!("unmarshaling values from '{file}' failed: {e}")))?;
        values::merge(&mut merged, parsed);
        used.push(file.clone());
    }
    let text = serde_norway::to_string(&serde_json::Value::Object(merged))
        .map_err(|e| BuildError::Values(e.to_string()))?;
    std::fs::write(u.chart_dir.join("values.yaml"), text)
        .map_err(|e| BuildError::Values(format!("failed to write values.yaml: {e}")))?;
    Ok(used)
}

/// `version` with build metadata `metadata` (replacing any it had, a leading `v` dropped), as
/// Flux's Masterminds `SetMetadata` writes it.
pub fn with_metadata(version: &str, metadata: &str) -> Result<String, BuildError> {
    let mut parsed = driftless_semver::parse_version(version).ok_or_else(|| {
        BuildError::Metadata(format!(
            "failed to parse version '{version}' from chart metadata as SemVer"
        ))
    })?;
    if metadata.is_empty() {
        return Ok(parsed.to_string());
    }
    parsed.build = semver::BuildMetadata::new(metadata).map_err(|_| {
        BuildError::Metadata("failed to set SemVer metadata on chart version: invalid metadata string".into())
    })?;
    Ok(parsed.to_string())
}

/// Writes `version` into the chart's `Chart.yaml`.
pub fn set_version(u: &mut Unpacked, version: &str) -> Result<(), BuildError> {
    if u.chart.version != version {
        metadata::set_version(&u.chart_dir, version).map_err(BuildError::Metadata)?;
        u.chart.version = version.to_string();
    }
    Ok(())
}

/// Packages the chart as `<name>-<version>.tgz` in the work directory; returns its path.
pub fn package(u: &Unpacked) -> Result<PathBuf, BuildError> {
    let failed = |e: std::io::Error| BuildError::Package(e.to_string());
    let stage = u.workdir.path().join("stage");
    std::fs::create_dir_all(&stage).map_err(failed)?;
    let name = &u.chart.name;
    if name.contains(['/', '\\']) || name == ".." || name == "." {
        return Err(BuildError::Reference(format!("invalid chart name '{name}'")));
    }
    std::fs::rename(&u.chart_dir, stage.join(name)).map_err(failed)?;
    let out = u.workdir.path().join(format!("{name}-{}.tgz", u.chart.version));
    driftless_chart::package::package(&stage, name, &out).map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn build_metadata_replaces_what_the_version_had() {
        assert_eq!(
            with_metadata("6.0.3", "abcdef012345").unwrap(),
            "6.0.3+abcdef012345"
        );
        assert_eq!(with_metadata("v6.0.3+old", "1").unwrap(), "6.0.3+1");
        assert_eq!(with_metadata("6.0", "abc.2").unwrap(), "6.0.0+abc.2");
        assert!(matches!(
            with_metadata("latest", "1"),
            Err(BuildError::Metadata(_))
        ));
        assert!(matches!(
            with_metadata("1.0.0", "a_b"),
            Err(BuildError::Metadata(_))
        ));
    }

    /// `--helm-chart-file-max-size`: a chart with a larger file is refused, naming the file.
    #[test]
    fn chart_files_over_the_limit_are_refused() {
        let workdir = tempfile::tempdir().unwrap();
        let chart_dir = workdir.path().join("app");
        std::fs::create_dir_all(chart_dir.join("templates")).unwrap();
        std::fs::write(
            chart_dir.join("Chart.yaml"),
            "apiVersion: v2\nname: app\nversion: 1.0.0\n",
        )
        .unwrap();
        std::fs::write(chart_dir.join("templates/big.yaml"), "x".repeat(2048)).unwrap();
        let u = Unpacked {
            chart: metadata::read(&chart_dir).unwrap(),
            chart_dir,
            workdir,
            source_root: None,
            archive: None,
        };
        assert!(check_file_sizes(&u, 4096).is_ok());
        let refused = check_file_sizes(&u, 1024).unwrap_err().message();
        assert!(
            refused.contains("templates/big.yaml") && refused.contains("1024"),
            "{refused}"
        );
    }

    #[test]
    fn paths_stay_within_the_source() {
        let root = Path::new("/src");
        assert_eq!(
            within(root, Path::new("charts/app/../lib")).unwrap(),
            Path::new("/src/charts/lib")
        );
        assert!(within(root, Path::new("charts/../../etc")).is_none());
    }
}
