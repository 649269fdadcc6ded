//! Reconcile triggers from other objects: "when a source publishes a new artifact, reconcile
//! what uses it". One watch per kind; an object whose fingerprint changed wakes the objects of
//! the controller's own store that use it.

use std::hash::{Hash, Hasher};

use futures::{StreamExt, stream::BoxStream};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::sources::{Source, SourceCache};

/// A fingerprint of what matters in an object (in-process only: never persisted).
pub fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The fingerprint of an artifact: its revision and digest.
pub fn artifact_fingerprint(artifact: Option<&driftless_api::meta::Artifact>) -> Option<u64> {
    artifact.map(|a| hash_of((&a.revision, &a.digest)))
}

/// The objects of `store` that `uses` says use an object of kind `K` (watched in `namespace`,
/// or all, with `config`) whose `fingerprint` changed. An object without a fingerprint (None)
/// wakes nothing.
pub fn referrers<K, T>(
    client: &Client,
    namespace: Option<&str>,
    store: Store<T>,
    config: watcher::Config,
    fingerprint: fn(&K) -> Option<u64>,
    uses: impl Fn(&T, &K) -> bool + Send + 'static,
) -> BoxStream<'static, ObjectRef<T>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    T: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    watch_referrers(client, namespace, store, config, None, fingerprint, uses)
}

/// The consumers in `store` that `uses` says take their artifact from a source of kind `K`
/// whose artifact changed, but not those whose reconcile read that artifact already (it is
/// being applied, or was). The watch also fills `cache`'s store of `K` (when no other watch
/// does), before it wakes anything: a reconcile it wakes reads the artifact that woke it.
pub fn artifact_referrers<K, T>(
    client: &Client,
    namespace: Option<&str>,
    store: Store<T>,
    cache: &SourceCache,
    uses: impl Fn(&T, &K) -> bool + Send + 'static,
) -> BoxStream<'static, ObjectRef<T>>
where
    K: Source,
    T: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let read = cache.clone();
    watch_referrers(
        client,
        namespace,
        store,
        watcher::Config::default(),
        cache.writer::<K>(namespace),
        |source: &K| artifact_fingerprint(source.artifact()),
        move |consumer: &T, source: &K| uses(consumer, source) && !read.was_read(consumer, source.artifact()),
    )
}

fn watch_referrers<K, T>(
    client: &Client,
    namespace: Option<&str>,
    store: Store<T>,
    config: watcher::Config,
    cache: Option<Writer<K>>,
    fingerprint: fn(&K) -> Option<u64>,
    uses: impl Fn(&T, &K) -> bool + Send + 'static,
) -> BoxStream<'static, ObjectRef<T>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    T: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let api = crate::object::namespaced_or_all::<K>(client, namespace);
    let events = watcher(api, config.any_semantic())
        .default_backoff()
        // Who manages which field is nothing a trigger or a reader of the store needs.
        .modify(|object| object.managed_fields_mut().clear());
    let events = match cache {
        Some(writer) => events.reflect(writer).boxed(),
        None => events.boxed(),
    };
    changed_objects(events)
        // kube's predicate filter passes objects whose predicate is None; an object without a
        // fingerprint (a source without an artifact yet) must wake nothing, or every write to
        // it (creation, finalizer, progress) would reconcile its referrers for nothing.
        .filter(move |object| futures::future::ready(fingerprint(object).is_some()))
        .map(Ok::<K, watcher::Error>)
        .predicate_filter(fingerprint, Default::default())
        .filter_map(|r| futures::future::ready(r.ok()))
        .flat_map(move |changed| {
            let refs: Vec<_> = store
                .state()
                .iter()
                .filter(|object| uses(object, &changed))
                .map(|object| ObjectRef::from_obj(&**object))
                .collect();
            futures::stream::iter(refs)
        })
        .boxed()
}

/// The objects a watch saw created or changed. Those of a list (the first, or one after the
/// watch lost its place) come out once the list is complete: the reflector swaps them into its
/// store only then, and a reconcile they wake must read them, not the previous list's.
pub(crate) fn changed_objects<K: Send + 'static>(
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
) -> impl futures::Stream<Item = K> + Send {
    events
        .scan(Vec::new(), |listed, event| {
            let changed = match event {
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(object)) => {
                    listed.push(object);
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => std::mem::take(listed),
                Ok(watcher::Event::Apply(object)) => vec![object],
                Ok(watcher::Event::Delete(_)) | Err(_) => Vec::new(),
            };
            futures::future::ready(Some(futures::stream::iter(changed)))
        })
        .flatten()
}
