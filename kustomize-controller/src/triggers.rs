//! What makes a Kustomization reconcile besides its own changes: a new artifact of its source,
//! a dependency becoming ready (Flux polls every 30 s for the latter; we do not need to), and a
//! change to a ConfigMap or Secret it uses that is labelled `reconcile.fluxcd.io/watch: Enabled`.

use std::hash::{Hash, Hasher};

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::condition_types;
use driftless_api::source::{Bucket, ExternalArtifact, GitRepository, OCIRepository};
use driftless_runtime::reconcile::TriggerFn;
use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Kustomizations that use the changed source.
fn source_changes<K>(
    client: &Client,
    namespace: &Option<String>,
    store: Store<Kustomization>,
    artifact: fn(&K) -> Option<u64>,
) -> BoxStream<'static, ObjectRef<Kustomization>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(
        api::<K>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(artifact, Default::default())
    .filter_map(|r| futures::future::ready(r.ok()))
    .flat_map(move |source| {
        let kind = K::kind(&()).to_string();
        let (ns, name) = (source.namespace().unwrap_or_default(), source.name_any());
        let refs: Vec<_> = store
            .state()
            .iter()
            .filter(|ks| crate::source::source_key(ks) == (kind.clone(), ns.clone(), name.clone()))
            .map(|ks| ObjectRef::from_obj(&**ks))
            .collect();
        futures::stream::iter(refs)
    })
    .boxed()
}

/// Dependents of a Kustomization that just became ready (or applied a new revision).
fn dependency_ready(
    client: &Client,
    namespace: &Option<String>,
    store: Store<Kustomization>,
) -> BoxStream<'static, ObjectRef<Kustomization>> {
    let readiness = |ks: &Kustomization| {
        let status = ks.status.as_ref()?;
        let ready = status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == condition_types::READY && c.status == "True");
        ready.then(|| hash_of((&status.last_applied_revision, status.observed_generation)))
    };
    watcher(
        api::<Kustomization>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(readiness, Default::default())
    .filter_map(|r| futures::future::ready(r.ok()))
    .flat_map(move |dependency| {
        let (ns, name) = (dependency.namespace().unwrap_or_default(), dependency.name_any());
        let refs: Vec<_> = store
            .state()
            .iter()
            .filter(|ks| {
                let own = ks.namespace().unwrap_or_default();
                ks.spec.depends_on.iter().flatten().any(|d| {
                    d.name == name
                        && d.namespace
                            .clone()
                            .filter(|n| !n.is_empty())
                            .unwrap_or_else(|| own.clone())
                            == ns
                })
            })
            .map(|ks| ObjectRef::from_obj(&**ks))
            .collect();
        futures::stream::iter(refs)
    })
    .boxed()
}

/// Flux's `--watch-configs-label-selector` default.
pub const WATCH_CONFIGS_SELECTOR: &str = "reconcile.fluxcd.io/watch=Enabled";

/// Whether `ks` uses the ConfigMap or Secret `kind/name` in its namespace (postBuild
/// substituteFrom, decryption, kubeConfig).
fn uses_config(ks: &Kustomization, kind: &str, name: &str) -> bool {
    let substitutes = ks
        .spec
        .post_build
        .iter()
        .flat_map(|p| p.substitute_from.iter().flatten())
        .any(|r| r.kind == kind && r.name == name);
    let secret = |n: Option<&str>| kind == "Secret" && n == Some(name);
    substitutes
        || secret(
            ks.spec
                .decryption
                .as_ref()
                .and_then(|d| d.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
        )
        || secret(
            ks.spec
                .kube_config
                .as_ref()
                .and_then(|k| k.secret_ref.as_ref())
                .map(|r| r.name.as_str()),
        )
}

/// Kustomizations that use a watched ConfigMap or Secret whose data changed.
fn config_changes<K>(
    client: &Client,
    namespace: &Option<String>,
    store: Store<Kustomization>,
    data: fn(&K) -> Option<u64>,
) -> BoxStream<'static, ObjectRef<Kustomization>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(
        api::<K>(client, namespace),
        watcher::Config::default()
            .labels(WATCH_CONFIGS_SELECTOR)
            .any_semantic(),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(data, Default::default())
    .filter_map(|r| futures::future::ready(r.ok()))
    .flat_map(move |config| {
        let kind = K::kind(&()).to_string();
        let (ns, name) = (config.namespace().unwrap_or_default(), config.name_any());
        let refs: Vec<_> = store
            .state()
            .iter()
            .filter(|ks| ks.namespace().as_deref() == Some(ns.as_str()) && uses_config(ks, &kind, &name))
            .map(|ks| ObjectRef::from_obj(&**ks))
            .collect();
        futures::stream::iter(refs)
    })
    .boxed()
}

pub fn triggers(client: Client, namespace: Option<String>) -> TriggerFn<Kustomization> {
    Box::new(move |store| {
        futures::stream::select_all([
            source_changes::<GitRepository>(&client, &namespace, store.clone(), |s| {
                s.status
                    .as_ref()?
                    .artifact
                    .as_ref()
                    .map(|a| hash_of((&a.revision, &a.digest)))
            }),
            source_changes::<OCIRepository>(&client, &namespace, store.clone(), |s| {
                s.status
                    .as_ref()?
                    .artifact
                    .as_ref()
                    .map(|a| hash_of((&a.revision, &a.digest)))
            }),
            source_changes::<Bucket>(&client, &namespace, store.clone(), |s| {
                s.status
                    .as_ref()?
                    .artifact
                    .as_ref()
                    .map(|a| hash_of((&a.revision, &a.digest)))
            }),
            source_changes::<ExternalArtifact>(&client, &namespace, store.clone(), |s| {
                s.status
                    .as_ref()?
                    .artifact
                    .as_ref()
                    .map(|a| hash_of((&a.revision, &a.digest)))
            }),
            config_changes::<ConfigMap>(&client, &namespace, store.clone(), |c| {
                Some(hash_of((
                    &c.data,
                    &c.binary_data.as_ref().map(|b| b.keys().collect::<Vec<_>>()),
                )))
            }),
            config_changes::<Secret>(&client, &namespace, store.clone(), |s| {
                Some(hash_of(
                    s.data
                        .as_ref()
                        .map(|d| d.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>()),
                ))
            }),
            dependency_ready(&client, &namespace, store),
        ])
        .boxed()
    })
}
