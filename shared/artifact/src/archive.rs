//! Deterministic tar.gz archives: the digest depends only on content.
//!
//! Entries are sorted by path; directories and regular files only (symlinks and special files
//! are skipped, as Flux does); owners, names and times are zeroed; modes are normalised to
//! 0755 for directories and executables and 0644 for other files; the gzip header carries no
//! time or name.

use crate::digest::HashingWriter;
use flate2::{Compression, GzBuilder};
use std::{
    fs,
    io::{self, BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// `sha256:<hex>` of the tar.gz file.
    pub digest: String,
    /// Size of the tar.gz file in bytes.
    pub size: u64,
}

/// Decides whether a path (relative to the archived directory, `/`-separated) is included.
pub trait Filter: Fn(&str, bool) -> bool {}
impl<F: Fn(&str, bool) -> bool> Filter for F {}

/// Writes a deterministic tar.gz of `dir` to `writer`. `include(path, is_dir)` filters entries;
/// an excluded directory is not descended into.
pub fn write_tar_gz<W: Write>(dir: &Path, include: &dyn Filter, writer: W) -> io::Result<Archived> {
    let hashing = HashingWriter::new(writer);
    let gz = GzBuilder::new().mtime(0).write(hashing, Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut stack = vec![PathBuf::new()];
    let mut entries = Vec::new();
    while let Some(rel) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(dir.join(&rel))?.collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        // Push in reverse so the walk pops them in order.
        for child in children.into_iter().rev() {
            let child_rel = rel.join(child.file_name());
            let name = child_rel.to_string_lossy().replace('\\', "/");
            let ft = child.file_type()?;
            if ft.is_dir() {
                if include(&name, true) {
                    stack.push(child_rel.clone());
                    entries.push((name, None));
                }
            } else if ft.is_file() && include(&name, false) {
                entries.push((name, Some(child_rel)));
            }
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, file) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{name}/"), io::empty())?;
            }
            Some(rel) => {
                let path = dir.join(rel);
                let meta = fs::metadata(&path)?;
                let exec = meta.permissions().mode() & 0o111 != 0;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if exec { 0o755 } else { 0o644 });
                header.set_size(meta.len());
                tar.append_data(&mut header, &name, fs::File::open(&path)?)?;
            }
        }
    }
    let gz = tar.into_inner()?;
    let hashing = gz.finish()?;
    let (mut inner, digest, size) = hashing.finish();
    inner.flush()?;
    Ok(Archived { digest, size })
}

/// Archives `dir` into `out` atomically: the tar.gz is written to a temporary file next to
/// `out` and renamed over it only when complete, so readers never see a partial artifact.
pub fn archive_dir(dir: &Path, include: &dyn Filter, out: &Path) -> io::Result<Archived> {
    let parent = out
        .parent()
        .ok_or_else(|| io::Error::other("artifact path has no parent"))?;
    fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".tar.gz")
        .tempfile_in(parent)?;
    let archived = {
        let mut w = BufWriter::new(tmp.as_file());
        let a = write_tar_gz(dir, include, &mut w)?;
        w.flush()?;
        a
    };
    tmp.as_file().sync_all()?;
    let file = tmp.persist(out).map_err(|e| e.error)?;
    let mut perms = file.metadata()?.permissions();
    perms.set_mode(0o644);
    fs::set_permissions(out, perms)?;
    Ok(archived)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("deploy/base")).unwrap();
        fs::write(root.join("deploy/base/app.yaml"), "kind: Deployment\n").unwrap();
        fs::write(root.join("README.md"), "hello\n").unwrap();
        fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("/etc/passwd", root.join("escape")).unwrap();
    }

    fn all(_: &str, _: bool) -> bool {
        true
    }

    #[test]
    fn same_content_gives_the_same_digest_whatever_the_metadata() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        tree(b.path());
        // Different times and modes on disk must not matter.
        fs::set_permissions(b.path().join("README.md"), fs::Permissions::from_mode(0o600)).unwrap();
        let da = write_tar_gz(a.path(), &all, Vec::new()).unwrap();
        let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(b.path().join("deploy/base/app.yaml"))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let db = write_tar_gz(b.path(), &all, Vec::new()).unwrap();
        assert_eq!(da, db);
        fs::write(b.path().join("README.md"), "changed\n").unwrap();
        assert_ne!(
            write_tar_gz(b.path(), &all, Vec::new()).unwrap().digest,
            da.digest
        );
    }

    #[test]
    fn entries_are_sorted_normalised_and_symlinks_skipped() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let mut buf = Vec::new();
        write_tar_gz(a.path(), &|p: &str, _| p != "README.md", &mut buf).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&buf[..]));
        let got: Vec<(String, u32, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("deploy/".into(), 0o755, 0),
                ("deploy/base/".into(), 0o755, 0),
                ("deploy/base/app.yaml".into(), 0o644, 0),
                ("run.sh".into(), 0o755, 0),
            ]
        );
    }

    #[test]
    fn archive_dir_writes_atomically_and_reports_the_file_digest() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("gitrepository/ns/name/abc.tar.gz");
        let archived = archive_dir(a.path(), &all, &out).unwrap();
        let bytes = fs::read(&out).unwrap();
        assert_eq!(archived.digest, crate::digest::of_bytes(&bytes));
        assert_eq!(archived.size, bytes.len() as u64);
        let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }
}
