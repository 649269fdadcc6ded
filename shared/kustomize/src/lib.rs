//! A native kustomize engine: `kustomize build` in-process, with output identical to kustomize's
//! (v5). It reads only local files, in or below each kustomization's directory, and never the
//! network; features it does not implement (Helm charts, plugins, remote bases) are refused
//! with an error that names them.

mod build;
mod builtin;
mod config;
mod fieldspec;
mod generate;
pub mod kustomization;
mod loader;
mod nameref;
mod origin;
mod parallel;
mod patch;
mod plugin;
pub mod remote;
mod replace;
mod resource;
mod sort;
mod transform;
pub mod yaml;

use std::path::Path;

use serde_json::Value;

/// A build error; the message names the file or object at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    /// Prefixes the message with where the error happened.
    pub fn context(self, context: impl std::fmt::Display) -> Error {
        Error {
            message: format!("{context}: {}", self.message),
        }
    }
}

pub use loader::LoadRestrictor;

/// Builds the kustomization in `dir` into its objects, in kustomize's output order, with
/// kustomize's default load restrictor (files in or below each kustomization's directory).
///
/// With a `jail`, no file or directory outside it is read, whatever the kustomizations say.
pub fn build(dir: &Path, jail: Option<&Path>) -> Result<Vec<Value>, Error> {
    build_restricted(dir, jail, LoadRestrictor::RootOnly)
}

/// [`build`] with another load restrictor: Flux builds with [`LoadRestrictor::None`], jailed in
/// the artifact, so a kustomization may read `../common/patch.yaml` from elsewhere in it.
pub fn build_restricted(
    dir: &Path,
    jail: Option<&Path>,
    restrictor: LoadRestrictor,
) -> Result<Vec<Value>, Error> {
    build::Builder::new(jail, restrictor, None).build(dir)
}

/// [`build_restricted`] with remote resources (git bases, http(s) files) fetched by `remote`.
pub fn build_with_remote(
    dir: &Path,
    jail: Option<&Path>,
    restrictor: LoadRestrictor,
    remote: &dyn remote::Remote,
) -> Result<Vec<Value>, Error> {
    build::Builder::new(jail, restrictor, Some(remote)).build(dir)
}

/// Builds and prints the objects as `kustomize build` does.
pub fn build_yaml(dir: &Path, jail: Option<&Path>) -> Result<String, Error> {
    Ok(to_yaml_stream(&build(dir, jail)?))
}

/// Objects as one YAML stream, separated by `---`, as kustomize prints them.
/// Whether `object` matches a target selector as patches use it (anchored regular expressions
/// for group, version, kind, name and namespace; label and annotation selectors). Flux's
/// drift-ignore rules select objects the same way.
pub fn selects(selector: &kustomization::Selector, object: &Value) -> Result<bool, Error> {
    let resources = [resource::Resource::new(object.clone())];
    Ok(!transform::select(selector, &resources)?.is_empty())
}

pub fn to_yaml_stream(objects: &[Value]) -> String {
    let documents = parallel::map(objects, 32, yaml::to_yaml);
    let mut out = String::with_capacity(documents.iter().map(|d| d.len() + 4).sum());
    for (i, document) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(document);
    }
    out
}
