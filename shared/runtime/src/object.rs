//! What the runtime needs to know about a toolkit kind, implemented once per kind.

use crate::duration;
use driftless_api::{
    helm::HelmRelease,
    image::{ImagePolicy, ImageRepository, ImageUpdateAutomation},
    kustomize::Kustomization,
    meta::ReconcileStatus,
    notification::Receiver,
    source::{Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository},
    source_extensions::ArtifactGenerator,
};
use kube::Resource;
use serde::{Serialize, de::DeserializeOwned};
use std::{fmt::Debug, time::Duration};

/// A kind reconciled by a toolkit controller: a namespaced custom resource with the standard
/// status fields, `spec.suspend` and `spec.interval`.
pub trait ToolkitObject:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The finalizer the controller puts on objects of the kind (Flux's `finalizers.fluxcd.io`,
    /// unless the kind has its own).
    const FINALIZER: &'static str = driftless_api::meta::FINALIZER;
    /// The status type.
    type Status: ReconcileStatus + Default + Clone + PartialEq + Debug + Serialize + Send + Sync;
    /// The current status.
    fn status(&self) -> Option<&Self::Status>;
    /// Whether `spec.suspend` is true.
    fn suspended(&self) -> bool;
    /// `spec.interval` as written (a Go duration), if the kind has one.
    fn interval_str(&self) -> Option<&str>;
    /// `spec.retryInterval` as written, if the kind has one.
    fn retry_interval_str(&self) -> Option<&str> {
        None
    }

    /// `spec.interval`; ten minutes when absent or invalid (the CRD validates the pattern).
    fn interval(&self) -> Duration {
        self.interval_str()
            .and_then(|s| duration::parse(s).ok())
            .unwrap_or(Duration::from_secs(600))
    }
    /// `spec.retryInterval`, if set.
    fn retry_interval(&self) -> Option<Duration> {
        self.retry_interval_str().and_then(|s| duration::parse(s).ok())
    }
}

macro_rules! toolkit_object {
    ($kind:ty, $status:ty, interval: |$s:ident| $interval:expr $(, retry: |$r:ident| $retry:expr)?) => {
        impl ToolkitObject for $kind {
            type Status = $status;
            fn status(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn suspended(&self) -> bool {
                self.spec.suspend.unwrap_or(false)
            }
            fn interval_str(&self) -> Option<&str> {
                let $s = &self.spec;
                $interval
            }
            $(fn retry_interval_str(&self) -> Option<&str> {
                let $r = &self.spec;
                $retry
            })?
        }
    };
}

use driftless_api::{helm, image, kustomize, notification, source};
toolkit_object!(GitRepository, source::GitRepositoryStatus, interval: |s| Some(&s.interval));
toolkit_object!(OCIRepository, source::OCIRepositoryStatus, interval: |s| Some(&s.interval));
toolkit_object!(HelmRepository, source::HelmRepositoryStatus, interval: |s| s.interval.as_deref());
toolkit_object!(HelmChart, source::HelmChartStatus, interval: |s| Some(&s.interval));
toolkit_object!(Bucket, source::BucketStatus, interval: |s| Some(&s.interval));
// Flux retries a failed Kustomization after `retryInterval`, else after its `interval`
// (`GetRetryInterval`), not with the workqueue's backoff.
toolkit_object!(Kustomization, kustomize::KustomizationStatus, interval: |s| Some(&s.interval),
    retry: |s| s.retry_interval.as_deref().or(Some(&s.interval)));
toolkit_object!(HelmRelease, helm::HelmReleaseStatus, interval: |s| Some(&s.interval),
    retry: |s| s.retry_interval());
toolkit_object!(Receiver, notification::ReceiverStatus, interval: |s| s.interval.as_deref());
toolkit_object!(ImageRepository, image::ImageRepositoryStatus, interval: |s| Some(&s.interval));
toolkit_object!(ImagePolicy, image::ImagePolicyStatus, interval: |s| s.interval.as_deref());
toolkit_object!(ImageUpdateAutomation, image::ImageUpdateAutomationStatus, interval: |s| Some(&s.interval));

/// The API of a namespaced kind in `namespace`, or across all namespaces when None (a
/// controller watching all namespaces or one, as `--watch-all-namespaces` says).
pub fn namespaced_or_all<K>(client: &kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

/// source-watcher's kind: no `spec.suspend` (the `source.extensions.fluxcd.io/reconcile:
/// disabled` annotation instead), no `spec.interval` (Flux requeues every hour), its own
/// finalizer.
impl ToolkitObject for ArtifactGenerator {
    const FINALIZER: &'static str = driftless_api::source_extensions::FINALIZER;
    type Status = driftless_api::source_extensions::ArtifactGeneratorStatus;
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    fn suspended(&self) -> bool {
        self.disabled()
    }
    fn interval_str(&self) -> Option<&str> {
        Some("1h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kustomization_retries_after_its_interval_unless_told_otherwise() {
        let mut ks: Kustomization = serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "app"},
            "spec": {"interval": "5m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "repo"}}
        }))
        .unwrap();
        assert_eq!(ks.retry_interval(), Some(Duration::from_secs(300)));
        ks.spec.retry_interval = Some("30s".into());
        assert_eq!(ks.retry_interval(), Some(Duration::from_secs(30)));
        // Sources keep the workqueue's backoff, as Flux's source-controller returns its errors.
        let repo: GitRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "repo"}, "spec": {"url": "https://example.com/r.git", "interval": "5m"}
        }))
        .unwrap();
        assert_eq!(repo.retry_interval(), None);
    }
}
