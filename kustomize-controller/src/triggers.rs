//! What makes a Kustomization reconcile besides its own changes: a new artifact of its source,
//! a dependency becoming ready (Flux polls every 30 s for the latter; we do not need to), and a
//! change to a ConfigMap or Secret it uses that is labelled `reconcile.fluxcd.io/watch: Enabled`.

use driftless_api::kustomize::Kustomization;
use driftless_api::meta::condition_types;
use driftless_api::source::{Bucket, ExternalArtifact, GitRepository, OCIRepository};
use driftless_runtime::reconcile::TriggerFn;
use driftless_runtime::sources::{Source, SourceCache};
use driftless_runtime::triggers::{self, hash_of};
use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

/// Which Kustomizations an object of kind `K` concerns: `(ks, kind, namespace, name)`.
type Uses = fn(&Kustomization, &str, &str, &str) -> bool;

/// Kustomizations that use an object of kind `K` whose `fingerprint` changed: a source's
/// artifact, a watched ConfigMap's or Secret's data.
fn referrers<K>(
    client: &Client,
    namespace: &Option<String>,
    store: Store<Kustomization>,
    config: watcher::Config,
    fingerprint: fn(&K) -> Option<u64>,
    uses: Uses,
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
    let kind = K::kind(&()).to_string();
    let uses = move |ks: &Kustomization, object: &K| {
        uses(
            ks,
            &kind,
            &object.namespace().unwrap_or_default(),
            &object.name_any(),
        )
    };
    triggers::referrers(client, namespace.as_deref(), store, config, fingerprint, uses)
}

/// Kustomizations whose source is `kind/namespace/name`.
fn uses_source(ks: &Kustomization, kind: &str, namespace: &str, name: &str) -> bool {
    let (k, ns, n) = crate::source::source_key(ks);
    k == kind && ns == namespace && n == name
}

/// Kustomizations that use the ConfigMap or Secret `kind/namespace/name`.
fn uses_watched_config(ks: &Kustomization, kind: &str, namespace: &str, name: &str) -> bool {
    ks.namespace().as_deref() == Some(namespace) && uses_config(ks, kind, name)
}

/// Kustomizations whose source (of kind `K`) has an artifact they have not read yet.
fn source_referrers<K: Source>(
    client: &Client,
    namespace: &Option<String>,
    store: Store<Kustomization>,
    cache: &SourceCache,
) -> BoxStream<'static, ObjectRef<Kustomization>> {
    let kind = K::kind(&()).to_string();
    triggers::artifact_referrers(
        client,
        namespace.as_deref(),
        store,
        cache,
        move |ks, source: &K| {
            uses_source(
                ks,
                &kind,
                &source.namespace().unwrap_or_default(),
                &source.name_any(),
            )
        },
    )
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
    let depends_on = |ks: &Kustomization, dependency: &Kustomization| {
        let (ns, name) = (dependency.namespace().unwrap_or_default(), dependency.name_any());
        let own = ks.namespace().unwrap_or_default();
        ks.spec.depends_on.iter().flatten().any(|d| {
            d.name == name
                && d.namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| own.clone())
                    == ns
        })
    };
    triggers::referrers(
        client,
        namespace.as_deref(),
        store,
        watcher::Config::default(),
        readiness,
        depends_on,
    )
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

/// The reconciles besides a Kustomization's own changes: a source's new artifact, a dependency
/// turning ready, and (unless `watch_configs` is None: Flux's DisableConfigWatchers gate) a
/// change of a ConfigMap or Secret it uses that matches the `watch_configs` label selector.
pub fn triggers(
    client: Client,
    namespace: Option<String>,
    watch_configs: Option<String>,
    cache: SourceCache,
) -> TriggerFn<Kustomization> {
    Box::new(move |store| {
        let selector = watch_configs.clone().unwrap_or_default();
        let configs = || watcher::Config::default().labels(&selector);
        let mut streams = vec![
            source_referrers::<GitRepository>(&client, &namespace, store.clone(), &cache),
            source_referrers::<OCIRepository>(&client, &namespace, store.clone(), &cache),
            source_referrers::<Bucket>(&client, &namespace, store.clone(), &cache),
            source_referrers::<ExternalArtifact>(&client, &namespace, store.clone(), &cache),
            dependency_ready(&client, &namespace, store.clone()),
        ];
        if watch_configs.is_some() {
            streams.push(referrers::<ConfigMap>(
                &client,
                &namespace,
                store.clone(),
                configs(),
                |c| {
                    Some(hash_of((
                        &c.data,
                        &c.binary_data.as_ref().map(|b| b.keys().collect::<Vec<_>>()),
                    )))
                },
                uses_watched_config,
            ));
            streams.push(referrers::<Secret>(
                &client,
                &namespace,
                store.clone(),
                configs(),
                |s| {
                    Some(hash_of(
                        s.data
                            .as_ref()
                            .map(|d| d.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>()),
                    ))
                },
                uses_watched_config,
            ));
        }
        futures::stream::select_all(streams).boxed()
    })
}
