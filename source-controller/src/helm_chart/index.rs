//! The charts of a Helm repository index, as HelmCharts choose and pull them.
//!
//! An index is parsed once per revision into a compact table (chart name → versions with their
//! URLs) that every HelmChart and worker shares ([`IndexCache`]): a large index is neither parsed
//! per chart nor held once per reconcile. The version picked is an exact match, else the highest
//! that the semver range allows (Masterminds rules, as Flux: pre-releases only for a range that
//! names one).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// Parsed indexes kept at most (one per repository revision in use) unless
/// `--helm-cache-max-size` says otherwise.
const INDEX_CACHE_LIMIT: usize = 64;

/// Flux's `--helm-cache-max-size` and `--helm-cache-ttl`. Unlike Flux's (off unless sized),
/// the cache is always on: an index is parsed once per revision and shared by every chart and
/// worker, whatever the flags; a size of 0 keeps its own bound.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub max_size: usize,
    /// How long an index stays parsed after its first use; None: until superseded.
    pub ttl: Option<std::time::Duration>,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_size: INDEX_CACHE_LIMIT,
            ttl: None,
        }
    }
}

/// A chart version as the index lists it: only what choosing and pulling it needs.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexedVersion {
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub created: Option<String>,
}

/// The charts of one index revision: name → versions. Only the fields listed here are kept
/// (serde skips the rest while parsing), so a 50 MB index becomes a few MB of table.
#[derive(Debug, Default, Deserialize)]
pub struct ChartIndex {
    #[serde(default, rename = "apiVersion")]
    pub api_version: String,
    #[serde(default)]
    pub entries: HashMap<String, Vec<IndexedVersion>>,
}

impl ChartIndex {
    /// Parses an index (YAML, or JSON, which is YAML); one without `apiVersion` is refused,
    /// as Helm refuses it. The parser's events are consumed one at a time and only the
    /// table's fields are kept, so a large index never exists as a document tree or an event
    /// list in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("the index is not UTF-8: {e}"))?;
        let mut builder = TableBuilder::default();
        yaml_rust2::parser::Parser::new_from_str(text)
            .load(&mut builder, false)
            .map_err(|e| e.to_string())?;
        if let Some(error) = builder.error {
            return Err(error);
        }
        if !builder.seen_map {
            return Err("the index is not a map".into());
        }
        if builder.index.api_version.is_empty() {
            return Err("no API version specified".into());
        }
        Ok(builder.index)
    }
}

/// A container being read: a map (with the key whose value comes next) or a sequence.
enum Frame {
    Map(Option<String>),
    Seq,
}

/// Builds a [`ChartIndex`] from parser events, tracking only the path to the current value.
#[derive(Default)]
struct TableBuilder {
    frames: Vec<Frame>,
    /// Keys (and `[]` for sequence items) from the document root to the current container.
    path: Vec<String>,
    index: ChartIndex,
    /// The version entry being read: its chart and fields.
    current: Option<(String, IndexedVersion)>,
    seen_map: bool,
    error: Option<String>,
}

impl TableBuilder {
    /// The path segment of the value that starts now (a map's pending key is used up).
    fn segment(&mut self) -> String {
        match self.frames.last_mut() {
            Some(Frame::Map(key)) => key.take().unwrap_or_default(),
            Some(Frame::Seq) => "[]".into(),
            None => String::new(),
        }
    }

    fn at(&self, segments: &[&str]) -> bool {
        self.path.len() == segments.len() && self.path.iter().zip(segments).all(|(p, s)| *s == "*" || p == s)
    }

    fn start(&mut self, frame: Frame) {
        let is_map = matches!(frame, Frame::Map(_));
        if self.frames.is_empty() {
            self.seen_map |= is_map;
        } else {
            let segment = self.segment();
            self.path.push(segment);
        }
        if self.at(&["entries"]) && !is_map {
            self.error.get_or_insert_with(|| "entries is not a map".into());
        } else if self.at(&["entries", "*"]) {
            if is_map {
                let chart = self.path[1].clone();
                self.error
                    .get_or_insert_with(|| format!("entries of chart '{chart}' are not a list"));
            } else {
                self.index.entries.entry(self.path[1].clone()).or_default();
            }
        } else if self.at(&["entries", "*", "[]"]) && is_map {
            let version = IndexedVersion {
                version: String::new(),
                urls: Vec::new(),
                created: None,
            };
            self.current = Some((self.path[1].clone(), version));
        }
        self.frames.push(frame);
    }

    fn end(&mut self) {
        self.frames.pop();
        if self.at(&["entries", "*", "[]"])
            && let Some((chart, version)) = self.current.take()
        {
            self.index.entries.entry(chart).or_default().push(version);
        }
        self.path.pop();
    }

    fn scalar(&mut self, value: String) {
        if let Some(Frame::Map(key @ None)) = self.frames.last_mut() {
            *key = Some(value);
            return;
        }
        let segment = self.segment();
        self.path.push(segment);
        if self.at(&["apiVersion"]) {
            self.index.api_version = value;
        } else if self.at(&["entries", "*"]) {
            // `chart: ~` (no versions) is an empty list; any other scalar is not a list.
            if value.is_empty() || value == "~" || value == "null" {
                self.index.entries.entry(self.path[1].clone()).or_default();
            } else {
                let chart = self.path[1].clone();
                self.error
                    .get_or_insert_with(|| format!("entries of chart '{chart}' are not a list"));
            }
        } else if let Some((_, version)) = self.current.as_mut() {
            if self.path.len() == 4 && self.path[3] == "version" {
                version.version = value;
            } else if self.path.len() == 4 && self.path[3] == "created" {
                version.created = Some(value);
            } else if self.path.len() == 5 && self.path[3] == "urls" {
                version.urls.push(value);
            }
        } else if self.at(&["entries"]) && value != "~" && value != "null" && !value.is_empty() {
            self.error.get_or_insert_with(|| "entries is not a map".into());
        }
        self.path.pop();
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for TableBuilder {
    fn on_event(&mut self, event: yaml_rust2::parser::Event, _mark: yaml_rust2::scanner::Marker) {
        use yaml_rust2::parser::Event;
        match event {
            Event::MappingStart(..) => self.start(Frame::Map(None)),
            Event::SequenceStart(..) => self.start(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => self.end(),
            Event::Scalar(value, ..) => self.scalar(value),
            // An alias is a value like any other; the table keeps none of them.
            Event::Alias(_) => self.scalar(String::new()),
            _ => {}
        }
    }
}

/// Parsed indexes by stored artifact path (one path per index revision), shared by every
/// HelmChart and worker of the controller.
#[derive(Default)]
pub struct IndexCache {
    indexes: Mutex<HashMap<String, (Arc<ChartIndex>, std::time::Instant)>>,
    limits: CacheLimits,
    /// Held while an index is parsed, so that workers asking for the same new revision wait
    /// for one parse instead of each parsing it (a parse of a large index is the costly part).
    parsing: Mutex<()>,
}

impl IndexCache {
    /// A cache within `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits: CacheLimits {
                max_size: if limits.max_size == 0 {
                    INDEX_CACHE_LIMIT
                } else {
                    limits.max_size
                },
                ttl: limits.ttl,
            },
            ..Self::default()
        }
    }

    /// The index stored in `file`, parsed on first use. Blocking.
    pub fn get(&self, file: &Path) -> Result<Arc<ChartIndex>, String> {
        let path = file.to_string_lossy();
        let path = path.as_ref();
        if let Some(index) = self.cached(path) {
            return Ok(index);
        }
        let _parsing = self.parsing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = self.cached(path) {
            return Ok(index);
        }
        let bytes = std::fs::read(file).map_err(|e| format!("reading the index: {e}"))?;
        let index = ChartIndex::parse(&bytes).map_err(|e| format!("reading the index: {e}"))?;
        drop(bytes);
        let index = Arc::new(index);
        let mut indexes = self.lock();
        // Indexes of superseded revisions go; a miss costs one parse.
        if indexes.len() >= self.limits.max_size.max(1) {
            indexes.clear();
        }
        indexes.insert(path.to_string(), (index.clone(), std::time::Instant::now()));
        Ok(index)
    }

    /// Drops the indexes whose time to live is over (`--helm-cache-purge-interval` calls this,
    /// so memory goes back without waiting for the next request of an index).
    pub fn purge_expired(&self) {
        if let Some(ttl) = self.limits.ttl {
            self.lock().retain(|_, (_, last_used)| last_used.elapsed() <= ttl);
        }
    }

    /// The parsed index of `path`, unless its time to live is over; a hit starts its time to
    /// live again (as Flux's cache sets the expiration on every use), so an index in use stays.
    fn cached(&self, path: &str) -> Option<Arc<ChartIndex>> {
        let mut indexes = self.lock();
        let (index, last_used) = indexes.get_mut(path)?;
        if self.limits.ttl.is_some_and(|ttl| last_used.elapsed() > ttl) {
            indexes.remove(path);
            return None;
        }
        *last_used = std::time::Instant::now();
        Some(index.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<ChartIndex>, std::time::Instant)>> {
        self.indexes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The version of `chart` to pull: an exact match of `wanted`, else the highest version its
/// range allows (the newest `created` among equal versions).
pub fn pick_version<'a>(
    index: &'a ChartIndex,
    chart: &str,
    wanted: &str,
) -> Result<&'a IndexedVersion, String> {
    let versions = index
        .entries
        .get(chart)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("no chart name found: '{chart}'"))?;
    if let Some(exact) = versions.iter().find(|v| v.version == wanted) {
        return Ok(exact);
    }
    let range = if wanted.is_empty() { "*" } else { wanted };
    let constraints = driftless_semver::Constraints::parse(range).map_err(|e| e.to_string())?;
    versions
        .iter()
        .filter_map(|v| driftless_semver::parse_version(&v.version).map(|parsed| (parsed, v)))
        .filter(|(parsed, _)| constraints.matches(parsed))
        .max_by(|(a, va), (b, vb)| a.cmp_precedence(b).then_with(|| va.created.cmp(&vb.created)))
        .map(|(_, v)| v)
        .ok_or_else(|| format!("no '{chart}' chart with version matching '{wanted}' found"))
}

/// The URL of a chart archive named in the index: absolute as it is, else relative to the
/// repository URL (with a trailing `/`), whose query replaces the reference's, as Helm resolves it.
pub fn chart_url(repository: &str, reference: &str) -> Result<String, String> {
    if let Ok(absolute) = url::Url::parse(reference) {
        return Ok(absolute.to_string());
    }
    let mut base = url::Url::parse(repository).map_err(|e| format!("invalid repository URL: {e}"))?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let query = base.query().map(str::to_string);
    let mut resolved = base
        .join(reference)
        .map_err(|e| format!("invalid chart URL '{reference}': {e}"))?;
    if query.is_some() {
        resolved.set_query(query.as_deref());
    }
    Ok(resolved.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index() -> ChartIndex {
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "entries": {"podinfo": [
            {"version": "6.14.1", "urls": ["podinfo-6.14.1.tgz"], "created": "2026-01-02T00:00:00Z"},
            {"version": "6.14.0", "urls": ["podinfo-6.14.0.tgz"]},
            {"version": "7.0.0-rc.1", "urls": ["podinfo-7.0.0-rc.1.tgz"]},
            {"version": "6.2.0", "urls": ["https://other.example/podinfo-6.2.0.tgz"], "name": "ignored"}
        ]}}))
        .unwrap()
    }

    /// `--helm-cache-ttl`: an index older than its time to live is parsed again.
    #[test]
    fn cached_indexes_expire_after_their_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("index.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nentries:\n  app:\n  - version: 1.0.0\n    urls: [app-1.0.0.tgz]\n",
        )
        .unwrap();
        let forever = IndexCache::new(CacheLimits::default());
        let first = forever.get(&file).unwrap();
        assert!(Arc::ptr_eq(&first, &forever.get(&file).unwrap()), "parsed once");
        let expiring = IndexCache::new(CacheLimits {
            max_size: 4,
            ttl: Some(std::time::Duration::ZERO),
        });
        let first = expiring.get(&file).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(
            !Arc::ptr_eq(&first, &expiring.get(&file).unwrap()),
            "parsed again"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        expiring.purge_expired();
        assert!(expiring.lock().is_empty(), "expired indexes purged");
        forever.purge_expired();
        assert_eq!(forever.lock().len(), 1, "without a time to live nothing expires");
    }

    #[test]
    fn versions_are_picked_as_flux_picks_them() {
        let index = index();
        let pick = |w: &str| pick_version(&index, "podinfo", w).map(|v| v.version.clone());
        assert_eq!(pick("").unwrap(), "6.14.1");
        assert_eq!(pick("*").unwrap(), "6.14.1");
        assert_eq!(pick("6.14.0").unwrap(), "6.14.0");
        assert_eq!(pick("<6.14.0").unwrap(), "6.2.0");
        assert_eq!(pick(">=7.0.0-0").unwrap(), "7.0.0-rc.1");
        assert!(
            pick("9.9.9")
                .is_err_and(|e| e.contains("no 'podinfo' chart with version matching '9.9.9' found"))
        );
        assert!(pick_version(&index, "nginx", "*").is_err_and(|e| e.contains("no chart name found")));
    }

    #[test]
    fn indexes_are_read_into_the_table_from_parser_events() {
        let yaml = b"apiVersion: v1\nentries:\n  app:\n  - name: app\n    version: 1.2.0\n    urls: [app-1.2.0.tgz, https://m/app.tgz]\n    maintainers: [{name: x, urls: [no]}]\n    annotations: {version: no}\n    created: \"2026-01-01T00:00:00Z\"\n  - {version: 1.0.0, urls: [app-1.0.0.tgz]}\n  empty: []\n  nulled: ~\ngenerated: x\n";
        let index = ChartIndex::parse(yaml).unwrap();
        assert_eq!(index.api_version, "v1");
        let app = &index.entries["app"];
        assert_eq!(app.len(), 2);
        assert_eq!(app[0].version, "1.2.0");
        assert_eq!(app[0].urls, ["app-1.2.0.tgz", "https://m/app.tgz"]);
        assert_eq!(app[0].created.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(app[1].version, "1.0.0");
        assert!(index.entries["empty"].is_empty() && index.entries["nulled"].is_empty());
        let json = br#"{"apiVersion": "v1", "entries": {"a": [{"version": "0.1.0", "urls": ["a.tgz"]}]}}"#;
        assert_eq!(ChartIndex::parse(json).unwrap().entries["a"][0].urls, ["a.tgz"]);
        assert!(ChartIndex::parse(b"- 1\n").is_err_and(|e| e.contains("not a map")));
        assert!(
            ChartIndex::parse(b"apiVersion: v1\nentries: {a: 1}\n").is_err_and(|e| e.contains("not a list"))
        );
        assert!(
            ChartIndex::parse(b"apiVersion: v1\nentries: {a: {b: 1}}\n")
                .is_err_and(|e| e.contains("not a list"))
        );
    }

    #[test]
    fn chart_urls_resolve_against_the_repository() {
        assert_eq!(
            chart_url("http://h/charts", "podinfo-1.0.0.tgz").unwrap(),
            "http://h/charts/podinfo-1.0.0.tgz"
        );
        assert_eq!(
            chart_url("http://h/charts/", "sub/podinfo-1.0.0.tgz").unwrap(),
            "http://h/charts/sub/podinfo-1.0.0.tgz"
        );
        assert_eq!(
            chart_url("http://h/charts?t=1", "podinfo-1.0.0.tgz").unwrap(),
            "http://h/charts/podinfo-1.0.0.tgz?t=1"
        );
        assert_eq!(
            chart_url("http://h/charts", "https://cdn.example/p.tgz").unwrap(),
            "https://cdn.example/p.tgz"
        );
    }
}
