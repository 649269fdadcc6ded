//! The artifact of a source object, as every consumer (Kustomizations, HelmReleases) looks it
//! up: a missing source or artifact is waited for, a kind the consumer cannot read stalls.
//!
//! A consumer's controller watches its sources anyway (a new artifact reconciles the consumers
//! at once: [`crate::triggers::artifact_referrers`]); [`SourceCache`] keeps what those watches
//! see, so a reconcile reads its source from memory as Flux's controllers read theirs from the
//! informer cache, and remembers which artifact each consumer's reconcile read, so the watch
//! event of an artifact a reconcile already took wakes it no second time.

use driftless_api::meta::Artifact;
use driftless_api::meta::reasons::ARTIFACT_FAILED;
use driftless_api::source::{Bucket, ExternalArtifact, GitRepository, HelmChart, OCIRepository};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::reconcile::ReconcileError;
use crate::triggers::artifact_fingerprint;

/// A kind of source whose artifact consumers read.
pub trait Source:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn artifact(&self) -> Option<&Artifact>;
    /// Where a [`SourceCache`] keeps its store of this kind.
    fn slot(cache: &Cache) -> &OnceLock<Watched<Self>>;
}

/// A store of one source kind and the namespace its watch sees (None: all).
pub struct Watched<K: Source> {
    store: Store<K>,
    namespace: Option<String>,
}

/// What a [`SourceCache`] shares: a store per source kind, each filled by the first watch that
/// asks for it, and the artifact each consumer last read.
#[derive(Default)]
pub struct Cache {
    git: OnceLock<Watched<GitRepository>>,
    oci: OnceLock<Watched<OCIRepository>>,
    bucket: OnceLock<Watched<Bucket>>,
    external: OnceLock<Watched<ExternalArtifact>>,
    chart: OnceLock<Watched<HelmChart>>,
    /// The fingerprint of the artifact each consumer (`namespace/name`) last read.
    read: Mutex<HashMap<String, u64>>,
    /// Flux's DirectSourceFetch gate: no store is kept, every read asks the apiserver.
    direct: bool,
}

macro_rules! source {
    ($kind:ty, $slot:ident) => {
        impl Source for $kind {
            fn artifact(&self) -> Option<&Artifact> {
                self.status.as_ref()?.artifact.as_ref()
            }
            fn slot(cache: &Cache) -> &OnceLock<Watched<Self>> {
                &cache.$slot
            }
        }
    };
}
source!(GitRepository, git);
source!(OCIRepository, oci);
source!(Bucket, bucket);
source!(ExternalArtifact, external);
source!(HelmChart, chart);

/// How long a reconcile waits for a source store's first list before it asks the apiserver.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// The sources a consumer's controller watches, and the artifact each consumer last read.
/// Cheap to clone (shared). A source of a kind no watch keeps, or in a namespace the watch does
/// not see, is read from the apiserver.
#[derive(Clone, Default)]
pub struct SourceCache(Arc<Cache>);

impl std::fmt::Debug for SourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCache")
    }
}

/// How [`SourceCache`] names a consumer: `namespace/name`.
fn consumer_key(consumer: &impl kube::Resource) -> String {
    format!(
        "{}/{}",
        consumer.meta().namespace.as_deref().unwrap_or_default(),
        consumer.meta().name.as_deref().unwrap_or_default()
    )
}

impl SourceCache {
    /// A cache whose reads go to the apiserver when `direct_fetch` (Flux's DirectSourceFetch
    /// gate: a source is never older than the apiserver's copy, at a GET per reconcile), else to
    /// the stores the watches fill.
    pub fn new(direct_fetch: bool) -> Self {
        Self(Arc::new(Cache {
            direct: direct_fetch,
            ..Cache::default()
        }))
    }

    /// The writer of this cache's store of `K`, for a watch of `namespace` (None: all) that runs
    /// for the controller's life; None when a watch of that kind feeds it already, or when
    /// sources are fetched directly.
    pub fn writer<K: Source>(&self, namespace: Option<&str>) -> Option<Writer<K>> {
        if self.0.direct {
            return None;
        }
        let (store, writer) = reflector::store();
        let watched = Watched {
            store,
            namespace: namespace.map(str::to_string),
        };
        K::slot(&self.0).set(watched).is_ok().then_some(writer)
    }

    /// The artifact of source `kind/namespace/name` for `consumer`, which is remembered as
    /// read by it.
    pub async fn artifact_for(
        &self,
        consumer: &impl kube::Resource,
        client: &Client,
        kind: &str,
        namespace: &str,
        name: &str,
        requeue_dependency: Duration,
    ) -> Result<Artifact, ReconcileError> {
        let artifact = self
            .latest(client, kind, namespace, name, requeue_dependency)
            .await?;
        self.remember(consumer, &artifact);
        Ok(artifact)
    }

    /// The artifact of source `kind/namespace/name` as it is now, remembered as read by no one
    /// (for a look at whether a newer one came while the consumer applies its own).
    pub async fn latest(
        &self,
        client: &Client,
        kind: &str,
        namespace: &str,
        name: &str,
        requeue_dependency: Duration,
    ) -> Result<Artifact, ReconcileError> {
        lookup(Some(&self.0), client, kind, namespace, name, requeue_dependency).await
    }

    /// Remembers that `consumer`'s reconcile is applying `artifact` (read elsewhere).
    pub fn remember(&self, consumer: &impl kube::Resource, artifact: &Artifact) {
        if let (Ok(mut read), Some(fingerprint)) = (self.0.read.lock(), artifact_fingerprint(Some(artifact)))
        {
            read.insert(consumer_key(consumer), fingerprint);
        }
    }

    /// Whether `consumer`'s last reconcile read `artifact` already (it is being applied, or was).
    pub fn was_read(&self, consumer: &impl kube::Resource, artifact: Option<&Artifact>) -> bool {
        let Some(fingerprint) = artifact_fingerprint(artifact) else {
            return false;
        };
        self.0
            .read
            .lock()
            .is_ok_and(|read| read.get(&consumer_key(consumer)) == Some(&fingerprint))
    }

    /// Forgets what a deleted consumer read.
    pub fn forget(&self, consumer: &impl kube::Resource) {
        if let Ok(mut read) = self.0.read.lock() {
            read.remove(&consumer_key(consumer));
        }
    }
}

/// The artifact of source `kind/namespace/name`, or why there is none yet, read from the
/// apiserver (for callers without a [`SourceCache`]).
pub async fn artifact(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
    requeue_dependency: Duration,
) -> Result<Artifact, ReconcileError> {
    lookup(None, client, kind, namespace, name, requeue_dependency).await
}

async fn lookup(
    cache: Option<&Cache>,
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
    requeue_dependency: Duration,
) -> Result<Artifact, ReconcileError> {
    let source = (cache, client, namespace, name, requeue_dependency);
    let artifact = match kind {
        "GitRepository" => artifact_of::<GitRepository>(source).await?,
        "OCIRepository" => artifact_of::<OCIRepository>(source).await?,
        "Bucket" => artifact_of::<Bucket>(source).await?,
        "ExternalArtifact" => artifact_of::<ExternalArtifact>(source).await?,
        "HelmChart" => artifact_of::<HelmChart>(source).await?,
        other => {
            return Err(ReconcileError::stalled(
                ARTIFACT_FAILED,
                format!("source kind '{other}' is not supported"),
            ));
        }
    };
    artifact.ok_or_else(|| {
        ReconcileError::waiting(
            ARTIFACT_FAILED,
            format!(
                "Source artifact not found for {kind}/{namespace}/{name}, retrying in {}s",
                requeue_dependency.as_secs()
            ),
            requeue_dependency,
        )
    })
}

/// From the watch's store when the watch sees the source's namespace (as Flux's controllers
/// read their informer cache: never an answer older than one already given, as a GET before
/// the store caught up could be), else from the apiserver. A watch that has not listed its
/// kind within [`FIRST_LIST_WAIT`] (it may not be allowed to) is passed over.
async fn artifact_of<K: Source>(
    (cache, client, namespace, name, requeue): (Option<&Cache>, &Client, &str, &str, Duration),
) -> Result<Option<Artifact>, ReconcileError> {
    let watched = cache
        .and_then(|cache| K::slot(cache).get())
        .filter(|watched| watched.namespace.as_deref().is_none_or(|n| n == namespace));
    if let Some(watched) = watched {
        let listed = tokio::time::timeout(FIRST_LIST_WAIT, watched.store.wait_until_ready()).await;
        if matches!(listed, Ok(Ok(()))) {
            return match watched.store.get(&ObjectRef::new(name).within(namespace)) {
                Some(source) => Ok(source.artifact().cloned()),
                None => Err(not_found::<K>(namespace, name, requeue)),
            };
        }
    }
    Ok(get::<K>(client, namespace, name, requeue)
        .await?
        .artifact()
        .cloned())
}

/// A missing source is waited for, not a failure of the spec: it may be created later.
fn not_found<K: Source>(namespace: &str, name: &str, requeue: Duration) -> ReconcileError {
    ReconcileError::waiting(
        ARTIFACT_FAILED,
        format!("Source '{}/{namespace}/{name}' not found", K::kind(&())),
        requeue,
    )
}

async fn get<K: Source>(
    client: &Client,
    namespace: &str,
    name: &str,
    requeue: Duration,
) -> Result<K, ReconcileError> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(source)) => Ok(source),
        Ok(None) => Err(not_found::<K>(namespace, name, requeue)),
        Err(e) => Err(ReconcileError::transient(
            ARTIFACT_FAILED,
            format!("failed to get source: {e}"),
        )),
    }
}
