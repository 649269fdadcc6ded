//! Local artifact storage: `<root>/<kind>/<namespace>/<name>/<file>`, written atomically, with a
//! `latest.tar.gz` link to the newest artifact and garbage collection of old ones by age and
//! count (never the current one).

use crate::archive::{self, Filter};
use driftless_api::meta::Artifact;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Name of the link to the newest artifact in an object's directory.
pub const LATEST: &str = "latest.tar.gz";

/// The storage root and how artifacts are addressed and retained.
#[derive(Clone, Debug)]
pub struct Storage {
    root: PathBuf,
    advertised: String,
    retention_ttl: Duration,
    retention_records: usize,
}

/// Identifies an object's artifact directory.
#[derive(Clone, Debug)]
pub struct ObjectDir<'a> {
    /// Lower-case kind, e.g. `gitrepository`.
    pub kind: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
}

impl ObjectDir<'_> {
    fn rel(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

impl Storage {
    /// Storage under `root`, serving URLs at `advertised` (`host:port`, or a full `http(s)://`
    /// base), keeping old artifacts for `ttl` and at most `records` of them.
    pub fn new(root: PathBuf, advertised: &str, ttl: Duration, records: usize) -> io::Result<Self> {
        fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            advertised: advertised.to_string(),
            retention_ttl: ttl,
            retention_records: records,
        })
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL of a storage-relative path, as Flux builds it from `--storage-adv-addr`.
    pub fn url_for(&self, rel: &str) -> String {
        let base = if self.advertised.starts_with("http://") || self.advertised.starts_with("https://") {
            self.advertised.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", self.advertised.trim_end_matches('/'))
        };
        format!("{base}/{rel}")
    }

    /// Whether the artifact's file is present.
    pub fn exists(&self, artifact: &Artifact) -> bool {
        !artifact.path.contains("..") && self.root.join(&artifact.path).is_file()
    }

    /// Archives `src` into `<dir>/<file>` and points `latest.tar.gz` at it. Blocking.
    pub fn store_dir(
        &self,
        dir: &ObjectDir<'_>,
        file: &str,
        src: &Path,
        include: &dyn Filter,
        revision: &str,
        metadata: Option<BTreeMap<String, String>>,
    ) -> io::Result<Artifact> {
        let rel = format!("{}/{file}", dir.rel());
        let archived = archive::archive_dir(src, include, &self.root.join(&rel))?;
        self.link(dir, file, LATEST)?;
        Ok(self.artifact(rel, revision, archived.digest, archived.size, metadata))
    }

    /// Stores the file `src` as-is as `<dir>/<file>` (atomically) and points `latest.tar.gz` at
    /// it. Blocking.
    pub fn store_file(
        &self,
        dir: &ObjectDir<'_>,
        file: &str,
        src: &Path,
        revision: &str,
        metadata: Option<BTreeMap<String, String>>,
    ) -> io::Result<Artifact> {
        let (rel, digest, size) = self.write(dir, file, &mut fs::File::open(src)?)?;
        self.link(dir, file, LATEST)?;
        Ok(self.artifact(rel, revision, digest, size, metadata))
    }

    /// Stores `bytes` as `<dir>/<file>` (atomically) and points the link `link` at it (a
    /// HelmRepository's index is served as `index.yaml`, as Flux serves it). Blocking.
    pub fn store_bytes(
        &self,
        dir: &ObjectDir<'_>,
        file: &str,
        bytes: &[u8],
        revision: &str,
        link: &str,
    ) -> io::Result<Artifact> {
        let (rel, digest, size) = self.write(dir, file, &mut io::Cursor::new(bytes))?;
        self.link(dir, file, link)?;
        Ok(self.artifact(rel, revision, digest, size, None))
    }

    /// Writes `<dir>/<file>` atomically from `content`; its relative path, digest and size.
    fn write(
        &self,
        dir: &ObjectDir<'_>,
        file: &str,
        content: &mut impl io::Read,
    ) -> io::Result<(String, String, u64)> {
        let rel = format!("{}/{file}", dir.rel());
        let out = self.root.join(&rel);
        let parent = out
            .parent()
            .ok_or_else(|| io::Error::other("artifact path has no parent"))?;
        fs::create_dir_all(parent)?;
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(parent)?;
        let mut hashing = crate::digest::HashingWriter::new(tmp.as_file());
        io::copy(content, &mut hashing)?;
        let (_, digest, size) = hashing.finish();
        tmp.as_file().sync_all()?;
        tmp.persist(&out).map_err(|e| e.error)?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644))?;
        Ok((rel, digest, size))
    }

    fn artifact(
        &self,
        rel: String,
        revision: &str,
        digest: String,
        size: u64,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Artifact {
        Artifact {
            url: self.url_for(&rel),
            path: rel,
            revision: revision.to_string(),
            digest,
            last_update_time: Time(
                Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH),
            ),
            size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
            metadata,
        }
    }

    /// The URL of the `latest.tar.gz` link of an object.
    pub fn latest_url(&self, dir: &ObjectDir<'_>) -> String {
        self.link_url(dir, LATEST)
    }

    /// The URL of the link `link` of an object.
    pub fn link_url(&self, dir: &ObjectDir<'_>, link: &str) -> String {
        self.url_for(&format!("{}/{link}", dir.rel()))
    }

    /// Points the symlink `<dir>/<link>` at `file`, atomically.
    fn link(&self, dir: &ObjectDir<'_>, file: &str, link: &str) -> io::Result<()> {
        let d = self.root.join(dir.rel());
        let tmp = d.join(format!(".{link}.tmp"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(file, &tmp)?;
        fs::rename(&tmp, d.join(link))
    }

    /// Removes old artifacts of an object: everything but `current` and the link that is older
    /// than the TTL, then all but the newest `records` of what is left. Returns what was
    /// removed. Blocking.
    pub fn garbage_collect(&self, dir: &ObjectDir<'_>, current: &str) -> io::Result<Vec<String>> {
        let d = self.root.join(dir.rel());
        let Ok(entries) = fs::read_dir(&d) else {
            return Ok(Vec::new());
        };
        let now = SystemTime::now();
        let mut candidates: Vec<(SystemTime, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == current || name == LATEST || name.starts_with('.') {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_file() {
                candidates.push((meta.modified().unwrap_or(now), e.path()));
            }
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut removed = Vec::new();
        // `current` is one of the records kept.
        let keep = self.retention_records.saturating_sub(1);
        for (i, (mtime, path)) in candidates.into_iter().enumerate() {
            let expired = now.duration_since(mtime).unwrap_or_default() > self.retention_ttl;
            if expired || i >= keep {
                fs::remove_file(&path)?;
                removed.push(
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
        Ok(removed)
    }

    /// Removes an object's whole directory (on deletion). Blocking.
    pub fn remove_all(&self, dir: &ObjectDir<'_>) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(dir.rel())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(records: usize, ttl: Duration) -> (tempfile::TempDir, Storage) {
        let d = tempfile::tempdir().unwrap();
        let s = Storage::new(
            d.path().join("data"),
            "source-controller.flux-system.svc.cluster.local.",
            ttl,
            records,
        )
        .unwrap();
        (d, s)
    }

    /// Sets the modification time of `path`, instead of waiting for the clock to move on.
    fn set_mtime(path: &Path, mtime: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    const DIR: ObjectDir<'static> = ObjectDir {
        kind: "gitrepository",
        namespace: "ns",
        name: "app",
    };

    #[test]
    fn artifacts_are_laid_out_and_addressed_as_flux_does() {
        let (tmp, s) = storage(2, Duration::from_secs(60));
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a.yaml"), "a: 1\n").unwrap();
        let a = s
            .store_dir(
                &DIR,
                "abc.tar.gz",
                &src,
                &|_: &str, _| true,
                "main@sha1:abc",
                None,
            )
            .unwrap();
        assert_eq!(a.path, "gitrepository/ns/app/abc.tar.gz");
        assert_eq!(
            a.url,
            "http://source-controller.flux-system.svc.cluster.local./gitrepository/ns/app/abc.tar.gz"
        );
        assert!(a.digest.starts_with("sha256:"));
        assert!(s.exists(&a));
        let latest = s.root().join("gitrepository/ns/app/latest.tar.gz");
        assert_eq!(
            fs::read(&latest).unwrap(),
            fs::read(s.root().join(&a.path)).unwrap()
        );
        assert_eq!(
            s.url_for("x"),
            "http://source-controller.flux-system.svc.cluster.local./x"
        );
        let s2 = Storage::new(
            tmp.path().join("d2"),
            "https://files.example.com/",
            Duration::ZERO,
            1,
        )
        .unwrap();
        assert_eq!(s2.url_for("x/y"), "https://files.example.com/x/y");
    }

    #[test]
    fn garbage_collection_keeps_the_current_artifact_and_the_newest_records() {
        let (tmp, s) = storage(2, Duration::from_secs(3600));
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        // Ages set explicitly (oldest first, all within the TTL) rather than waited for.
        for (f, age) in [("1.tar.gz", 300), ("2.tar.gz", 200), ("3.tar.gz", 100)] {
            fs::write(src.join("v"), f).unwrap();
            s.store_dir(&DIR, f, &src, &|_: &str, _| true, "r", None).unwrap();
            set_mtime(
                &s.root().join("gitrepository/ns/app").join(f),
                SystemTime::now() - Duration::from_secs(age),
            );
        }
        // Current is the oldest: it survives, plus one newest other record.
        let removed = s.garbage_collect(&DIR, "1.tar.gz").unwrap();
        assert_eq!(removed, vec!["2.tar.gz".to_string()]);
        let (_t, s0) = (
            0,
            Storage {
                retention_ttl: Duration::ZERO,
                ..s.clone()
            },
        );
        // "3" is 100s old: expired with a zero TTL.
        assert_eq!(
            s0.garbage_collect(&DIR, "1.tar.gz").unwrap(),
            vec!["3.tar.gz".to_string()]
        );
        assert!(s.root().join("gitrepository/ns/app/1.tar.gz").exists());
        s.remove_all(&DIR).unwrap();
        assert!(!s.root().join("gitrepository/ns/app").exists());
        s.remove_all(&DIR).unwrap();
    }
}
