//! The tags of each scanned image, kept on disk under `--storage-path` so a restart does not
//! rescan every repository at once, and so memory holds no tag lists between reconciles:
//! `imagerepository/<canonical image name>/tags.txt`, one tag a line, in descending byte order
//! (the order policies break ties by, as Flux).

use sha2::{Digest, Sha256};
use std::{
    io,
    path::{Path, PathBuf},
};

/// Tags of images, by canonical name.
pub struct TagStore {
    root: PathBuf,
}

impl TagStore {
    /// A store under `root` (created when missing).
    pub fn new(root: &Path) -> io::Result<Self> {
        let root = root.join("imagerepository");
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The file of `image`; a name with an empty, `.` or `..` part (never a validated canonical
    /// name) has none.
    fn file(&self, image: &str) -> io::Result<PathBuf> {
        if image.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid image name '{image}'"),
            ));
        }
        Ok(self.root.join(image).join("tags.txt"))
    }

    /// Replaces the tags of `image`, atomically.
    pub fn write(&self, image: &str, tags: &[String]) -> io::Result<()> {
        let file = self.file(image)?;
        let dir = file.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let mut body = String::with_capacity(tags.iter().map(|t| t.len() + 1).sum());
        for tag in tags {
            body.push_str(tag);
            body.push('\n');
        }
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), body)?;
        tmp.persist(&file).map_err(|e| e.error)?;
        Ok(())
    }

    /// Whether tags of `image` are stored (without reading them).
    pub fn contains(&self, image: &str) -> bool {
        self.file(image).is_ok_and(|f| f.is_file())
    }

    /// The tags of `image`; None when it was never scanned (or its file is gone).
    pub fn read(&self, image: &str) -> io::Result<Option<Vec<String>>> {
        match std::fs::read_to_string(self.file(image)?) {
            Ok(body) => Ok(Some(body.lines().map(str::to_string).collect())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Sorts tags in descending byte order (Flux's order for the store and `latestTags`).
pub fn sort_descending(tags: &mut [String]) {
    tags.sort_unstable_by(|a, b| b.cmp(a));
}

/// The stable hash of a tag list, as Flux's file storage writes it: `sha256:` over each tag and
/// a newline.
pub fn revision(tags: &[String]) -> String {
    let mut hasher = Sha256::new();
    for tag in tags {
        hasher.update(tag.as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tags_round_trip_and_hash_stably() {
        let dir = tempfile::tempdir().unwrap();
        let store = TagStore::new(dir.path()).unwrap();
        assert_eq!(store.read("localhost:5000/app").unwrap(), None);
        assert!(store.read("../../etc").is_err());
        let mut tags = vec!["1.0.0".to_string(), "v2".into(), "1.10.0".into()];
        sort_descending(&mut tags);
        assert_eq!(tags, ["v2", "1.10.0", "1.0.0"]);
        store.write("localhost:5000/app", &tags).unwrap();
        assert_eq!(store.read("localhost:5000/app").unwrap().unwrap(), tags);
        assert_eq!(revision(&tags), revision(&tags.clone()));
        assert_ne!(revision(&tags), revision(&tags[1..]));
        assert_eq!(
            revision(&[]),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
