//! `source.extensions.fluxcd.io/v1beta1`: ArtifactGenerator, reconciled by source-watcher (Flux's
//! `--components-extra=source-watcher`), which composes or splits source artifacts into
//! ExternalArtifacts (Flux API reference §2.7).

use crate::meta::{Condition, ReconcileStatus, condition_types};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Group of the kind.
pub const GROUP: &str = "source.extensions.fluxcd.io";
/// Finalizer of ArtifactGenerators (removes the ExternalArtifacts they own).
pub const FINALIZER: &str = "source.extensions.fluxcd.io/finalizer";
/// Label on every ExternalArtifact a generator owns, naming its generator.
pub const GENERATOR_LABEL: &str = "source.extensions.fluxcd.io/generator";
/// Artifact metadata key of the origin revision (`originRevision`).
pub const ORIGIN_REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
/// `disabled` here turns reconciliation of a generator off.
pub const RECONCILE_ANNOTATION: &str = "source.extensions.fluxcd.io/reconcile";

/// Condition reasons of ArtifactGenerators, as source-watcher writes them.
pub mod reasons {
    /// Reconciliation is off (`source.extensions.fluxcd.io/reconcile: disabled`).
    pub const RECONCILIATION_DISABLED: &str = "ReconciliationDisabled";
    /// A source in another namespace with `--no-cross-namespace-refs`.
    pub const ACCESS_DENIED: &str = "AccessDenied";
    /// The spec cannot be built (duplicate aliases, unknown alias, bad pattern).
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// A source is missing, not ready, or its artifact could not be fetched.
    pub const SOURCE_FETCH_FAILED: &str = "SourceFetchFailed";
    /// An artifact could not be built from the sources (no match, bad YAML, bad tarball).
    pub const BUILD_FAILED: &str = "BuildFailed";
}

/// Copy strategies.
pub mod strategies {
    /// Later copies replace earlier files (the default).
    pub const OVERWRITE: &str = "Overwrite";
    /// YAML files merged as Helm merges values files.
    pub const MERGE: &str = "Merge";
    /// Tarballs (`.tar.gz`, `.tgz`) extracted.
    pub const EXTRACT: &str = "Extract";
}

/// Labels and annotations set on every ExternalArtifact a generator owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommonMetadata {
    /// Annotations to be added to the object's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to be added to the object's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Desired state of an ArtifactGenerator.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.extensions.fluxcd.io",
    version = "v1beta1",
    kind = "ArtifactGenerator",
    doc = "ArtifactGenerator is the Schema for the artifactgenerators API.",
    namespaced,
    status = "ArtifactGeneratorStatus",
    shortname = "ag",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-sources",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{
    "message": "artifact names must be valid Kubernetes object names when pathPattern is not set",
    "rule": "has(self.pathPattern) && size(self.pathPattern) > 0 || self.artifacts.all(a, a.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))"
}]))]
#[serde(rename_all = "camelCase")]
pub struct ArtifactGeneratorSpec {
    /// Labels and annotations applied to every generated ExternalArtifact; a key that exists
    /// already is overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
    /// The sources the artifacts are generated from.
    #[schemars(length(min = 1, max = 1000))]
    pub sources: Vec<SourceReference>,
    /// A directory traversal pattern `@<alias>/<pattern>`; its `{capture}` placeholders can be
    /// used in the artifacts' fields, one set of artifacts per matched directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)/(.*)$"),
        length(max = 1024)
    )]
    pub path_pattern: Option<String>,
    /// The artifacts to generate.
    #[serde(rename = "artifacts")]
    #[schemars(length(min = 1, max = 1000))]
    pub output_artifacts: Vec<OutputArtifact>,
}

/// A source by alias.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceReference {
    /// Alias of the source, unique in the generator.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"), length(max = 63))]
    pub alias: String,
    /// Name of the source.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"), length(max = 253))]
    pub name: String,
    /// Namespace of the source; defaults to the generator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub namespace: Option<String>,
    /// Kind of the source.
    #[schemars(extend("enum" = ["Bucket", "GitRepository", "OCIRepository", "HelmChart", "ExternalArtifact"]))]
    pub kind: String,
}

/// One generated ExternalArtifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputArtifact {
    /// Name of the ExternalArtifact (may use `pathPattern` captures).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `@<alias>`: the artifact takes that source's revision; by default its content digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)$"), length(max = 64))]
    pub revision: Option<String>,
    /// `@<alias>`: that source's origin revision becomes the artifact's
    /// `org.opencontainers.image.revision` metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)$"), length(max = 64))]
    pub origin_revision: Option<String>,
    /// Copy operations, in order; later ones overwrite earlier files.
    #[schemars(length(min = 1))]
    pub copy: Vec<CopyOperation>,
}

/// Files copied from a source into an artifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CopyOperation {
    /// `@<alias>/<glob>`.
    #[schemars(
        regex(pattern = r"^@([a-z0-9]([a-z0-9_-]*[a-z0-9])?)/(.*)$"),
        length(min = 1, max = 1024)
    )]
    pub from: String,
    /// `@artifact/<path>`.
    #[schemars(regex(pattern = r"^@(artifact)/(.*)$"), length(min = 1, max = 1024))]
    pub to: String,
    /// Globs of files and directories left out, relative to the alias root or to the non-glob
    /// prefix of `from`; a pattern without `/` matches a name at any depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub exclude: Option<Vec<String>>,
    /// Overwrite (default), Merge (YAML, Helm values style) or Extract (tarballs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Overwrite", "Merge", "Extract"]))]
    pub strategy: Option<String>,
}

/// Observed state of an ArtifactGenerator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactGeneratorStatus {
    /// Last `reconcile.fluxcd.io/requestedAt` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// Conditions of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The generated ExternalArtifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Vec<ExternalArtifactReference>>,
    /// Digest of the state of every source the generator read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_sources_digest: Option<String>,
}

/// A generated ExternalArtifact and its artifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalArtifactReference {
    /// Name of the ExternalArtifact.
    pub name: String,
    /// Namespace of the ExternalArtifact.
    pub namespace: String,
    /// Digest of its artifact.
    pub digest: String,
    /// File name of its artifact.
    pub filename: String,
}

/// The kind has no `status.observedGeneration` (as Flux's): the generation last reconciled is
/// the one the Ready condition records.
impl ReconcileStatus for ArtifactGeneratorStatus {
    fn conditions(&self) -> &[Condition] {
        self.conditions.as_deref().unwrap_or_default()
    }
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        self.conditions.get_or_insert_with(Vec::new)
    }
    fn observed_generation(&self) -> i64 {
        self.conditions()
            .iter()
            .find(|c| c.type_ == condition_types::READY && c.status != "Unknown")
            .and_then(|c| c.observed_generation)
            .unwrap_or(-1)
    }
    fn set_observed_generation(&mut self, _generation: i64) {}
    fn last_handled_reconcile_at(&self) -> Option<&str> {
        self.last_handled_reconcile_at.as_deref()
    }
    fn set_last_handled_reconcile_at(&mut self, token: Option<String>) {
        self.last_handled_reconcile_at = token;
    }
}

impl ArtifactGenerator {
    /// Whether `source.extensions.fluxcd.io/reconcile: disabled` turns reconciliation off.
    pub fn disabled(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RECONCILE_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
    }
}
