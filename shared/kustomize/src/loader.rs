//! File access with kustomize's load restrictors: by default a kustomization reads files only in
//! or below its own directory (`LoadRestrictionsRootOnly`); with `LoadRestrictionsNone` anywhere.
//! Nothing is read outside the jail (when one is set), whatever the restrictor.

use std::path::{Path, PathBuf};

use crate::Error;

/// Which files a kustomization may read, as kustomize's `--load-restrictor` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadRestrictor {
    /// Only files in or below the kustomization's own directory (kustomize's default).
    #[default]
    RootOnly,
    /// Any file (within the jail, when there is one): how Flux builds, confined to the artifact.
    None,
}

#[derive(Clone, Debug)]
pub struct Loader {
    /// The kustomization's directory, canonical.
    pub root: PathBuf,
    jail: Option<PathBuf>,
    restrictor: LoadRestrictor,
}

impl Loader {
    pub fn new(root: &Path, jail: Option<&Path>, restrictor: LoadRestrictor) -> Result<Loader, Error> {
        let jail = jail.map(canonical).transpose()?;
        let root = canonical(root)?;
        let loader = Loader {
            root,
            jail,
            restrictor,
        };
        loader.check_jail(&loader.root)?;
        if !loader.root.is_dir() {
            return Err(Error::new(format!(
                "must build at directory: '{}' is not a directory",
                loader.root.display()
            )));
        }
        Ok(loader)
    }

    fn check_jail(&self, path: &Path) -> Result<(), Error> {
        match &self.jail {
            Some(jail) if !path.starts_with(jail) => Err(Error::new(format!(
                "security; path '{}' is outside the build root '{}'",
                path.display(),
                jail.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Where `relative` points, canonical, without any check; None when it does not exist.
    pub fn locate(&self, relative: &str) -> Option<PathBuf> {
        std::fs::canonicalize(self.root.join(relative)).ok()
    }

    /// Reads a file that must be in or below the kustomization's directory.
    pub fn read(&self, relative: &str) -> Result<(PathBuf, Vec<u8>), Error> {
        let joined = self.root.join(relative);
        let path = std::fs::canonicalize(&joined)
            .map_err(|e| Error::new(format!("file '{}': {e}", joined.display())))?;
        if self.restrictor == LoadRestrictor::RootOnly && !path.starts_with(&self.root) {
            return Err(Error::new(format!(
                "security; file '{}' is not in or below '{}'",
                path.display(),
                self.root.display()
            )));
        }
        self.check_jail(&path)?;
        let bytes =
            std::fs::read(&path).map_err(|e| Error::new(format!("file '{}': {e}", path.display())))?;
        Ok((path, bytes))
    }

    pub fn read_string(&self, relative: &str) -> Result<(PathBuf, String), Error> {
        let (path, bytes) = self.read(relative)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::new(format!("file '{}' is not UTF-8", path.display())))?;
        Ok((path, text))
    }

    /// A loader for another kustomization directory (a base or a component).
    pub fn child(&self, relative: &str) -> Result<Loader, Error> {
        let joined = self.root.join(relative);
        let dir =
            std::fs::canonicalize(&joined).map_err(|e| Error::new(format!("'{}': {e}", joined.display())))?;
        let child = Loader {
            root: dir,
            jail: self.jail.clone(),
            restrictor: self.restrictor,
        };
        child.check_jail(&child.root)?;
        Ok(child)
    }
}

fn canonical(path: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(path).map_err(|e| Error::new(format!("'{}': {e}", path.display())))
}
