//! `Chart.yaml`: the fields Driftless reads (name, version, appVersion, dependencies), finding
//! the chart in an unpacked artifact, and setting the version a build publishes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// `Chart.yaml` fields Driftless reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ChartFile {
    /// `v2` (Helm 3 and later) or `v1` (dependencies in `requirements.yaml`).
    #[serde(default, rename = "apiVersion", deserialize_with = "scalar")]
    pub api_version: String,
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    #[serde(default, deserialize_with = "scalar")]
    pub version: String,
    #[serde(default, rename = "appVersion", deserialize_with = "optional_scalar")]
    pub app_version: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// A dependency as `Chart.yaml` (or a v1 chart's `requirements.yaml`) lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Dependency {
    #[serde(default, deserialize_with = "scalar")]
    pub name: String,
    /// A version or a semver range; empty means any.
    #[serde(default, deserialize_with = "scalar")]
    pub version: String,
    /// `https://…` (a chart repository), `oci://…` (a registry), `file://…` or empty (a chart
    /// in the same source).
    #[serde(default, deserialize_with = "scalar")]
    pub repository: String,
}

#[derive(Deserialize)]
struct Requirements {
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

/// YAML writes `appVersion: 1.16` as a number; Helm reads it as the text it is.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(optional_scalar(d)?.unwrap_or_default())
}

fn optional_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// The `Chart.yaml` of the chart in `dir`, with a v1 chart's `requirements.yaml` dependencies.
pub fn read(dir: &Path) -> Result<ChartFile, String> {
    let text = std::fs::read_to_string(dir.join("Chart.yaml"))
        .map_err(|e| format!("unable to read Chart.yaml: {e}"))?;
    let mut chart: ChartFile =
        serde_norway::from_str(&text).map_err(|e| format!("invalid Chart.yaml: {e}"))?;
    if chart.name.is_empty() {
        return Err("invalid Chart.yaml: chart.metadata.name is required".into());
    }
    if chart.version.is_empty() {
        return Err("invalid Chart.yaml: chart.metadata.version is required".into());
    }
    if chart.api_version == "v1"
        && chart.dependencies.is_empty()
        && let Ok(text) = std::fs::read_to_string(dir.join("requirements.yaml"))
    {
        let requirements: Requirements =
            serde_norway::from_str(&text).map_err(|e| format!("invalid requirements.yaml: {e}"))?;
        chart.dependencies = requirements.dependencies;
    }
    Ok(chart)
}

/// Largest `Chart.yaml` read from a packaged chart.
const MAX_CHART_FILE: u64 = 1 << 20;

/// The `Chart.yaml` of a packaged chart (`<name>/Chart.yaml` in a tar.gz), read without
/// unpacking the rest.
pub fn read_packaged(archive: &[u8]) -> Result<ChartFile, String> {
    use std::io::Read;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let entries = tar.entries().map_err(|e| format!("not a chart archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a chart archive: {e}"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let parts: Vec<_> = path.components().collect();
        if parts.len() == 2 && path.ends_with("Chart.yaml") {
            let mut text = String::new();
            entry
                .take(MAX_CHART_FILE)
                .read_to_string(&mut text)
                .map_err(|e| format!("unable to read Chart.yaml: {e}"))?;
            let chart: ChartFile =
                serde_norway::from_str(&text).map_err(|e| format!("invalid Chart.yaml: {e}"))?;
            if chart.name.is_empty() || chart.version.is_empty() {
                return Err("invalid Chart.yaml: name and version are required".into());
            }
            return Ok(chart);
        }
    }
    Err("no Chart.yaml found in the chart archive".into())
}

/// The chart directory in an extracted artifact (a packaged chart holds `<name>/Chart.yaml`,
/// an OCI or Git artifact may hold `Chart.yaml` at its root) and its `Chart.yaml`.
pub fn locate(root: &Path) -> Result<(PathBuf, ChartFile), String> {
    let mut candidates = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        candidates.extend(dirs);
    }
    for dir in candidates {
        if dir.join("Chart.yaml").is_file() {
            let chart = read(&dir)?;
            return Ok((dir, chart));
        }
    }
    Err("no Chart.yaml found in the artifact".into())
}

/// Rewrites the `version` of the chart in `dir`, leaving every other field as it was.
pub fn set_version(dir: &Path, version: &str) -> Result<(), String> {
    let path = dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("unable to read Chart.yaml: {e}"))?;
    let mut doc: serde_norway::Value =
        serde_norway::from_str(&text).map_err(|e| format!("invalid Chart.yaml: {e}"))?;
    let serde_norway::Value::Mapping(map) = &mut doc else {
        return Err("invalid Chart.yaml: not a map".into());
    };
    map.insert("version".into(), version.into());
    let text = serde_norway::to_string(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("unable to write Chart.yaml: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chart_files_are_read_with_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let chart = dir.path().join("app");
        std::fs::create_dir(&chart).unwrap();
        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: app\nversion: 1.0.0\nappVersion: 1.16\ndependencies:\n- name: db\n  version: ~1.2\n  repository: https://charts.example\n- name: lib\n  repository: file://../lib\n",
        )
        .unwrap();
        let (found, file) = locate(dir.path()).unwrap();
        assert_eq!(found, chart);
        assert_eq!(file.app_version.as_deref(), Some("1.16"));
        assert_eq!(file.dependencies.len(), 2);
        assert_eq!(file.dependencies[1].repository, "file://../lib");
        set_version(&chart, "1.0.0+abc").unwrap();
        let file = read(&chart).unwrap();
        assert_eq!((file.version.as_str(), file.dependencies.len()), ("1.0.0+abc", 2));

        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v1\nname: old\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(
            chart.join("requirements.yaml"),
            "dependencies:\n- name: x\n  version: 1.0.0\n",
        )
        .unwrap();
        assert_eq!(read(&chart).unwrap().dependencies[0].name, "x");
        std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: noversion\n").unwrap();
        assert!(read(&chart).is_err_and(|e| e.contains("version is required")));

        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: app\nversion: 2.0.0\n",
        )
        .unwrap();
        let out = dir.path().join("app.tgz");
        crate::package::package(dir.path(), "app", &out).unwrap();
        let packaged = read_packaged(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(
            (packaged.name.as_str(), packaged.version.as_str()),
            ("app", "2.0.0")
        );
        assert!(read_packaged(b"not gzip").is_err());
    }
}
