//! What makes a HelmRelease reconcile besides its own changes: a new artifact of its chart
//! source (the template's HelmChart, or the `chartRef` HelmChart, OCIRepository or
//! ExternalArtifact), a change to a ConfigMap or Secret of its `valuesFrom` labelled
//! `reconcile.fluxcd.io/watch: Enabled` (Flux's `--watch-configs-label-selector`), and a
//! dependency becoming ready. So a new chart version or changed values upgrade at once.

use driftless_api::helm::HelmRelease;
use driftless_api::meta::condition_types;
use driftless_api::source::{ExternalArtifact, HelmChart, OCIRepository};
use driftless_runtime::reconcile::TriggerFn;
use driftless_runtime::sources::SourceCache;
use driftless_runtime::triggers::{self, hash_of};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

/// Flux's `--watch-configs-label-selector` default.
pub const WATCH_CONFIGS_SELECTOR: &str = "reconcile.fluxcd.io/watch=Enabled";

/// Whether `hr`'s chart comes from `kind/namespace/name`.
fn uses_source<K: Resource<DynamicType = ()>>(hr: &HelmRelease, source: &K) -> bool {
    crate::chart::source_key(hr).is_some_and(|key| {
        key.kind == K::kind(&())
            && Some(key.namespace.as_str()) == source.meta().namespace.as_deref()
            && key.name == source.name_any()
    })
}

/// Whether `hr` takes values from the ConfigMap or Secret `config`.
fn uses_values<K: Resource<DynamicType = ()>>(hr: &HelmRelease, config: &K) -> bool {
    hr.namespace() == config.meta().namespace
        && hr
            .spec
            .values_from
            .iter()
            .flatten()
            .any(|v| v.kind == K::kind(&()) && v.name == config.name_any())
}

pub fn triggers(client: Client, namespace: Option<String>, cache: SourceCache) -> TriggerFn<HelmRelease> {
    Box::new(move |store| {
        let ns = namespace.as_deref();
        let configs = || watcher::Config::default().labels(WATCH_CONFIGS_SELECTOR);
        futures::stream::select_all([
            triggers::artifact_referrers::<HelmChart, _>(&client, ns, store.clone(), &cache, uses_source),
            triggers::artifact_referrers::<OCIRepository, _>(&client, ns, store.clone(), &cache, uses_source),
            triggers::artifact_referrers::<ExternalArtifact, _>(
                &client,
                ns,
                store.clone(),
                &cache,
                uses_source,
            ),
            triggers::referrers::<ConfigMap, _>(
                &client,
                ns,
                store.clone(),
                configs(),
                |c| Some(hash_of(&c.data)),
                uses_values,
            ),
            triggers::referrers::<Secret, _>(
                &client,
                ns,
                store.clone(),
                configs(),
                |s| {
                    Some(hash_of(
                        s.data
                            .as_ref()
                            .map(|d| d.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>()),
                    ))
                },
                uses_values,
            ),
            triggers::referrers::<HelmRelease, _>(
                &client,
                ns,
                store,
                watcher::Config::default(),
                |hr| {
                    let status = hr.status.as_ref()?;
                    let ready = status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == condition_types::READY && c.status == "True");
                    ready.then(|| hash_of(status.observed_generation))
                },
                |hr: &HelmRelease, dependency: &HelmRelease| {
                    let own = hr.namespace().unwrap_or_default();
                    hr.spec.depends_on.iter().flatten().any(|d| {
                        d.name == dependency.name_any()
                            && d.namespace
                                .clone()
                                .filter(|n| !n.is_empty())
                                .unwrap_or_else(|| own.clone())
                                == dependency.namespace().unwrap_or_default()
                    })
                },
            ),
        ])
        .boxed()
    })
}
