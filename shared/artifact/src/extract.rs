//! Safe extraction of tar.gz artifacts.
//!
//! Refused: absolute paths, `..` components, symlinks whose target leaves the destination (or is
//! absolute), hard links, device files and FIFOs, and more than `max_size` bytes in total.
//! Symlinks are created after every file and directory, so no entry is ever written through
//! a link. Nothing is written outside the destination.

use flate2::read::GzDecoder;
use std::{
    fs,
    io::{self, Read},
    os::unix::fs::{PermissionsExt, symlink},
    path::{Component, Path, PathBuf},
};

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An entry would land outside the destination.
    #[error("illegal path {0:?} in archive: it would escape the destination")]
    IllegalPath(String),
    /// A symlink would point outside the destination.
    #[error("illegal symlink {path:?} -> {target:?} in archive: it would escape the destination")]
    IllegalSymlink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry type that artifacts never contain.
    #[error("unsupported entry {path:?} of type {kind} in archive")]
    Unsupported {
        /// The entry.
        path: String,
        /// Its type.
        kind: String,
    },
    /// The archive expands to more than allowed.
    #[error("archive expands to more than {0} bytes")]
    TooLarge(u64),
    /// Reading or writing failed.
    #[error("extracting archive: {0}")]
    Io(#[from] io::Error),
}

/// `raw` as a path relative to a root it cannot leave: its normal components (`.` dropped);
/// None when it has `..`, a root or a prefix. The one path confinement for archive entries and
/// for paths a spec names inside an artifact (GitRepository `include` paths).
pub fn confined(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A non-empty confined path, as an archive entry's destination-relative path.
fn safe_relative(raw: &Path) -> Option<PathBuf> {
    confined(raw).filter(|p| !p.as_os_str().is_empty())
}

/// Whether `target`, as a link at `link` (destination-relative), stays inside the destination.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.parent().map(|p| p.components().count() as i64).unwrap_or(0);
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Extracts a tar.gz stream into `dest` (created if missing), writing at most `max_size` bytes.
/// Returns the number of bytes written.
pub fn extract_tar_gz<R: Read>(reader: R, dest: &Path, max_size: u64) -> Result<u64, ExtractError> {
    fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(GzDecoder::new(reader));
    let mut total = 0u64;
    let mut links = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let rel = match safe_relative(&raw) {
            Some(rel) => rel,
            None if matches!(raw.components().next(), Some(Component::CurDir))
                && raw.components().count() == 1 =>
            {
                continue;
            }
            None => return Err(ExtractError::IllegalPath(shown)),
        };
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&target)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size()?;
                total = total.saturating_add(size);
                if total > max_size {
                    return Err(ExtractError::TooLarge(max_size));
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut out = fs::File::create(&target)?;
                // Copy no more than the header promised, whatever the stream holds.
                io::copy(&mut (&mut entry).take(size), &mut out)?;
                fs::set_permissions(
                    &target,
                    fs::Permissions::from_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 }),
                )?;
            }
            tar::EntryType::Symlink => {
                let link_target = entry
                    .link_name()?
                    .ok_or_else(|| ExtractError::IllegalSymlink {
                        path: shown.clone(),
                        target: String::new(),
                    })?
                    .into_owned();
                if !link_stays_inside(&rel, &link_target) {
                    return Err(ExtractError::IllegalSymlink {
                        path: shown,
                        target: link_target.to_string_lossy().into_owned(),
                    });
                }
                links.push((target, link_target));
            }
            // PAX and GNU metadata records are consumed by the tar reader itself.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(ExtractError::Unsupported {
                    path: shown,
                    kind: format!("{other:?}"),
                });
            }
        }
    }
    // Parents first, while no link exists: no directory is ever created through a link.
    for (at, _) in &links {
        if let Some(parent) = at.parent() {
            fs::create_dir_all(parent)?;
        }
    }
    for (at, to) in &links {
        if at.symlink_metadata().is_ok() {
            return Err(ExtractError::IllegalPath(at.to_string_lossy().into_owned()));
        }
        symlink(to, at)?;
    }
    // Each target was checked as text; a chain of links (`b/c -> .`, `a -> b/c/c/../../..`)
    // can still resolve outside. Every link must resolve inside as the OS follows it.
    let root = fs::canonicalize(dest)?;
    if let Some((at, to)) = links.iter().find(|(at, _)| !resolves_inside(&root, at)) {
        for (link, _) in &links {
            let _ = fs::remove_file(link);
        }
        return Err(ExtractError::IllegalSymlink {
            path: at.strip_prefix(dest).unwrap_or(at).to_string_lossy().into_owned(),
            target: to.to_string_lossy().into_owned(),
        });
    }
    Ok(total)
}

/// Whether the symlink `link` resolves inside `root` (canonical) as the OS follows it: the
/// longest existing prefix of its target canonicalized, the rest applied as text.
fn resolves_inside(root: &Path, link: &Path) -> bool {
    let Ok(target) = fs::read_link(link) else {
        return false;
    };
    let joined = link.parent().unwrap_or(root).join(target);
    let components: Vec<Component<'_>> = joined.components().collect();
    for n in (0..=components.len()).rev() {
        let prefix: PathBuf = components[..n].iter().collect();
        if let Ok(mut resolved) = fs::canonicalize(&prefix) {
            for c in &components[n..] {
                match c {
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::Normal(name) => resolved.push(name),
                    _ => {}
                }
            }
            return resolved.starts_with(root);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Link(&'a str, &'a str),
        Fifo(&'a str),
    }

    /// Builds a tar.gz with raw header names (the tar crate's builder refuses `..`).
    fn tgz(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for e in entries {
            let mut h = tar::Header::new_old();
            match e {
                E::File(name, data) => {
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_size(data.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                E::Link(name, to) => {
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.as_old_mut().linkname[..to.len()].copy_from_slice(to.as_bytes());
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                E::Fifo(name) => {
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn extract(entries: &[E]) -> (tempfile::TempDir, Result<u64, ExtractError>) {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let r = extract_tar_gz(&tgz(entries)[..], &dest, 1 << 20);
        (root, r)
    }

    #[test]
    fn ordinary_archives_extract_with_links_inside() {
        let (root, r) = extract(&[
            E::File("a/b.yaml", b"x: 1\n"),
            E::Link("a/c.yaml", "b.yaml"),
            E::Link("d", "a/../a/b.yaml"),
        ]);
        assert_eq!(r.unwrap(), 5);
        let dest = root.path().join("dest");
        assert_eq!(fs::read_to_string(dest.join("a/c.yaml")).unwrap(), "x: 1\n");
        assert_eq!(fs::read_to_string(dest.join("d")).unwrap(), "x: 1\n");
    }

    /// Each target stays inside as text, but the chain resolves above the destination: refused,
    /// and no link is left behind.
    #[test]
    fn chained_links_that_resolve_outside_are_refused() {
        let (root, r) = extract(&[
            E::File("b/file", b"x"),
            E::Link("b/c", "."),
            E::Link("a", "b/c/c/../../.."),
        ]);
        assert!(matches!(r, Err(ExtractError::IllegalSymlink { .. })), "{r:?}");
        let dest = root.path().join("dest");
        assert!(dest.join("a").symlink_metadata().is_err() && dest.join("b/c").symlink_metadata().is_err());
    }

    #[test]
    fn parent_and_absolute_paths_are_refused_and_nothing_is_written_outside() {
        for bad in ["../evil", "a/../../evil", "/tmp/evil-abs"] {
            let (root, r) = extract(&[E::File(bad, b"pwned")]);
            assert!(matches!(r, Err(ExtractError::IllegalPath(_))), "{bad}: {r:?}");
            assert!(!root.path().join("evil").exists());
        }
        assert!(!Path::new("/tmp/evil-abs").exists());
    }

    #[test]
    fn escaping_symlinks_are_refused_before_anything_goes_through_them() {
        for (link, to) in [("x", "../outside"), ("a/x", "../../outside"), ("x", "/etc")] {
            let (_root, r) = extract(&[E::Link(link, to), E::File("x/passwd", b"pwned")]);
            assert!(
                matches!(
                    r,
                    Err(ExtractError::IllegalSymlink { .. }) | Err(ExtractError::IllegalPath(_))
                ),
                "{link} -> {to}: {r:?}"
            );
        }
    }

    #[test]
    fn special_files_and_oversized_archives_are_refused() {
        let (_r, r) = extract(&[E::Fifo("pipe")]);
        assert!(matches!(r, Err(ExtractError::Unsupported { .. })), "{r:?}");
        let root = tempfile::tempdir().unwrap();
        let r = extract_tar_gz(&tgz(&[E::File("big", &[0u8; 100])])[..], root.path(), 50);
        assert!(matches!(r, Err(ExtractError::TooLarge(50))), "{r:?}");
    }
}
