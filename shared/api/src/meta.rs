//! The shared vocabulary of every toolkit API (Flux's `fluxcd/pkg/apis/meta`, `acl` and
//! `kustomize`): references, the artifact contract, well-known annotations, condition types and
//! reasons.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Finalizer every toolkit controller puts on the objects it reconciles.
pub const FINALIZER: &str = "finalizers.fluxcd.io";
/// Annotation whose changed value requests an immediate reconcile.
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// HelmRelease: forces a one-off install/upgrade when equal to `requestedAt`.
pub const FORCE_AT_ANNOTATION: &str = "reconcile.fluxcd.io/forceAt";
/// HelmRelease: resets failure counters when equal to `requestedAt`.
pub const RESET_AT_ANNOTATION: &str = "reconcile.fluxcd.io/resetAt";
/// Label on Secrets and ConfigMaps whose changes trigger the objects that use them.
pub const WATCH_LABEL: &str = "reconcile.fluxcd.io/watch";
/// Label key of the sharding convention (`--watch-label-selector`).
pub const SHARDING_LABEL: &str = "sharding.fluxcd.io/key";
/// Prefix of object annotations copied into event metadata.
pub const EVENT_ANNOTATION_PREFIX: &str = "event.toolkit.fluxcd.io/";

/// Condition types shared by all kinds (kstatus).
pub mod condition_types {
    /// Normal polarity; every reconciled object has it.
    pub const READY: &str = "Ready";
    /// Abnormal-true: present only while the object is being reconciled.
    pub const RECONCILING: &str = "Reconciling";
    /// Abnormal-true: present only while reconciliation cannot progress without a spec change.
    pub const STALLED: &str = "Stalled";
    /// Kustomization: the applied objects are healthy.
    pub const HEALTHY: &str = "Healthy";
    /// Source: the stored artifact matches the current revision.
    pub const ARTIFACT_IN_STORAGE: &str = "ArtifactInStorage";
    /// Source (negative polarity): a newer revision exists than the stored artifact.
    pub const ARTIFACT_OUTDATED: &str = "ArtifactOutdated";
    /// Source: signature verification result.
    pub const SOURCE_VERIFIED: &str = "SourceVerified";
    /// Source (negative polarity): fetching from upstream failed.
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// Source (negative polarity): building the artifact failed.
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// Source (negative polarity): a storage operation failed.
    pub const STORAGE_OPERATION_FAILED: &str = "StorageOperationFailed";
    /// GitRepository (negative polarity): an included repository is not available.
    pub const INCLUDE_UNAVAILABLE: &str = "IncludeUnavailable";
}

/// Condition reasons shared by all kinds (Flux's generic reasons).
pub mod reasons {
    #![allow(missing_docs)]
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const PROGRESSING: &str = "Progressing";
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    pub const SUSPENDED: &str = "Suspended";
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    pub const INVALID_PATH: &str = "InvalidPath";
    pub const INVALID_URL: &str = "InvalidURL";
    pub const INSECURE_CONNECTIONS_DISALLOWED: &str = "InsecureConnectionsDisallowed";
    pub const UNSUPPORTED_CONNECTION_TYPE: &str = "UnsupportedConnectionType";
    pub const PRUNE_FAILED: &str = "PruneFailed";
    pub const ARTIFACT_FAILED: &str = "ArtifactFailed";
    pub const BUILD_FAILED: &str = "BuildFailed";
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    pub const HEALTH_CHECK_CANCELED: &str = "HealthCheckCanceled";
    pub const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";
    pub const RECONCILIATION_FAILED: &str = "ReconciliationFailed";
    pub const INVALID_CEL_EXPRESSION: &str = "InvalidCELExpression";
    pub const FEATURE_GATE_DISABLED: &str = "FeatureGateDisabled";
    pub const ACCESS_DENIED: &str = "AccessDenied";
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object in any namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the referrer's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to an object of a given kind in any namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedObjectKindReference {
    /// API version of the referent; when empty the latest version is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the referrer's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a key of a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyReference {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret; when empty a kind-specific default is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A dependency on another object of the same kind (`dependsOn`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyReference {
    /// Beyond Flux: API version of a dependency of another kind (`group/version`, with `kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Beyond Flux: kind of the dependency, ready by kstatus (a HelmRelease for a Kustomization,
    /// a Deployment, any custom resource); without it, the dependent's own kind, as in Flux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the dependency.
    pub name: String,
    /// Namespace of the dependency; defaults to the dependent's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// CEL expression (variables `self` and `dep`) that replaces the built-in readiness check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_expr: Option<String>,
}

/// Where to find a kubeconfig for a remote cluster: a ConfigMap (workload identity) or a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.configMapRef) != has(self.secretRef)",
    "message": "exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be specified"
}]))]
pub struct KubeConfigReference {
    /// ConfigMap with the cluster address and provider for secret-less access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectReference>,
    /// Secret holding a static kubeconfig (key `value` or `value.yaml` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyReference>,
}

/// Values for a Helm release taken from a ConfigMap or Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesReference {
    /// Kind of the values referent.
    #[schemars(extend("enum" = ["Secret", "ConfigMap"]))]
    pub kind: String,
    /// Name of the values referent, in the same namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Data key of the values; defaults to `values.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = r"^[\-._a-zA-Z0-9]+$"))]
    pub values_key: Option<String>,
    /// YAML dot-notation path at which the value is merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 250),
        regex(pattern = r"^([a-zA-Z0-9_\-.\\\/]|\[[0-9]{1,5}\])+$")
    )]
    pub target_path: Option<String>,
    /// Whether a missing referent is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Whether the value is taken literally (no YAML parsing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<bool>,
}

/// Access control for cross-namespace references.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessFrom {
    /// Namespaces whose objects may refer to this one.
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// Selects namespaces by label.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels a namespace must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// An artifact published by a source: the contract between source-controller and consumers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Path relative to the storage root: `<kind>/<namespace>/<name>/<file>`.
    pub path: String,
    /// HTTP address of the artifact as served by the storage server.
    pub url: String,
    /// Human-readable identifier, e.g. `main@sha1:<commit>`.
    pub revision: String,
    /// `<algorithm>:<checksum>` of the file.
    #[schemars(regex(pattern = r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"))]
    pub digest: String,
    /// When the artifact was last updated.
    pub last_update_time: Time,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Extra data, e.g. OCI annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A kustomize image override.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Image name to match in the manifests.
    pub name: String,
    /// Replacement name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// Replacement tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    /// Replacement digest; takes precedence over the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A kustomize target selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// API group (regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version (regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Kind (regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace (regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name (regex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Annotation selector expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
    /// Label selector expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

/// A strategic-merge or JSON 6902 patch with an optional target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Patch {
    /// The patch document, YAML or JSON.
    pub patch: String,
    /// Objects the patch applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
}

/// CEL expressions that compute the health of a custom kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomHealthCheck {
    /// `group/version` of the kind.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// True when the object is healthy.
    pub current: String,
    /// True while the object progresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// Labels and annotations added to every applied object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommonMetadata {
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// One reconciliation snapshot in `status.history` (newest first, at most 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Digest of the reconciled content.
    pub digest: String,
    /// First time this digest was reconciled.
    pub first_reconciled: Time,
    /// Last time this digest was reconciled.
    pub last_reconciled: Time,
    /// Duration of the last reconciliation.
    pub last_reconciled_duration: String,
    /// Status of the last reconciliation.
    pub last_reconciled_status: String,
    /// How many times this digest was reconciled.
    pub total_reconciliations: i64,
    /// Extra data, e.g. the revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// One applied object in an inventory: `<namespace>_<name>_<group>_<kind>` and its version.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ResourceRef {
    /// Object id, `<namespace>_<name>_<group>_<kind>`.
    pub id: String,
    /// API version of the object.
    pub v: String,
}

/// The objects a Kustomization or HelmRelease applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceInventory {
    /// Applied objects.
    pub entries: Vec<ResourceRef>,
}

/// A label selector (re-exported for spec fields).
pub type ObjectLabelSelector = LabelSelector;

/// Default for `status.observedGeneration`: never reconciled.
pub fn default_observed_generation() -> i64 {
    -1
}

/// Fields every reconciled kind has in status, accessed generically by the runtime.
pub trait ReconcileStatus {
    /// Conditions of the object.
    fn conditions(&self) -> &[Condition];
    /// Mutable conditions of the object.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// The generation last reconciled to a terminal state, or -1.
    fn observed_generation(&self) -> i64;
    /// Sets the observed generation.
    fn set_observed_generation(&mut self, generation: i64);
    /// The last `requestedAt` token handled.
    fn last_handled_reconcile_at(&self) -> Option<&str>;
    /// Records the handled `requestedAt` token.
    fn set_last_handled_reconcile_at(&mut self, token: Option<String>);
}

/// Implements [`ReconcileStatus`] for a status struct with the standard field names.
#[macro_export]
macro_rules! impl_reconcile_status {
    ($($status:ty),+ $(,)?) => {$(
        impl $crate::meta::ReconcileStatus for $status {
            fn conditions(&self) -> &[$crate::meta::Condition] {
                self.conditions.as_deref().unwrap_or_default()
            }
            fn conditions_mut(&mut self) -> &mut Vec<$crate::meta::Condition> {
                self.conditions.get_or_insert_with(Vec::new)
            }
            fn observed_generation(&self) -> i64 {
                self.observed_generation.unwrap_or(-1)
            }
            fn set_observed_generation(&mut self, generation: i64) {
                self.observed_generation = Some(generation);
            }
            fn last_handled_reconcile_at(&self) -> Option<&str> {
                self.last_handled_reconcile_at.as_deref()
            }
            fn set_last_handled_reconcile_at(&mut self, token: Option<String>) {
                self.last_handled_reconcile_at = token;
            }
        }
    )+};
}

/// A reference to objects by kind and name (or `*`) in any namespace, with a label filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceObjectReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[schemars(extend("enum" = [
        "Bucket", "GitRepository", "Kustomization", "HelmRelease", "HelmChart", "HelmRepository",
        "ImageRepository", "ImagePolicy", "ImageUpdateAutomation", "OCIRepository", "ArtifactGenerator",
        "ExternalArtifact"
    ]))]
    pub kind: String,
    /// Name of the referent, or `*` for all.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Labels the referents must have (with name `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// CEL filter over the referents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}
