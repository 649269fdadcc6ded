//! Flux-compatible API types for every Driftless controller.
//!
//! This crate is the leaf of the workspace: it depends only on kube's derive, serde, schemars and
//! k8s-openapi, so a consumer (kustomize-controller reading a GitRepository's artifact) never
//! compiles a producer's dependencies (git2, OCI clients).
//!
//! The groups, versions, kinds, field names, enums, defaults, short names, categories and printer
//! columns match Flux v2.9 (`../shared/docs/flux-api-reference.md`). [`all_crds`] renders the
//! CustomResourceDefinitions checked in under `manifests/crds/`.

pub mod helm;
pub mod image;
pub mod kustomize;
pub mod meta;
pub mod notification;
pub mod source;
pub mod source_extensions;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

/// Schema of a free-form JSON field (Helm values): any object, kept as is by the apiserver.
pub fn preserve_unknown_fields(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Every CustomResourceDefinition of the toolkit, in a stable order.
///
/// Kinds with a status get Flux's `status` default `{observedGeneration: -1}`, so "never
/// reconciled" is visible as soon as an object is created.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let with_status_default = [
        source::GitRepository::crd(),
        source::OCIRepository::crd(),
        source::HelmRepository::crd(),
        source::HelmChart::crd(),
        source::Bucket::crd(),
        kustomize::Kustomization::crd(),
        helm::HelmRelease::crd(),
        notification::Receiver::crd(),
        image::ImageRepository::crd(),
        image::ImagePolicy::crd(),
        image::ImageUpdateAutomation::crd(),
    ];
    let without = [
        source::ExternalArtifact::crd(),
        // No status.observedGeneration in Flux's schema: the Ready condition records it.
        source_extensions::ArtifactGenerator::crd(),
        notification::Provider::crd(),
        notification::Alert::crd(),
    ];
    let mut crds: Vec<_> = with_status_default
        .into_iter()
        .map(|mut crd| {
            default_observed_generation(&mut crd);
            crd
        })
        .chain(without)
        .collect();
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds
}

fn default_observed_generation(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|props| props.get_mut("status"));
        if let Some(JSONSchemaProps { default, .. }) = status {
            *default = Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                    serde_json::json!({"observedGeneration": -1}),
                ),
            );
        }
    }
}
