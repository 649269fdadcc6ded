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
use futures::FutureExt;
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
    fn slot(stores: &Stores) -> &OnceLock<Store<Self>>;
}

/// One store per source kind, each filled by the first watch that asks for it.
#[derive(Default)]
pub struct Stores {
    git: OnceLock<Store<GitRepository>>,
    oci: OnceLock<Store<OCIRepository>>,
    bucket: OnceLock<Store<Bucket>>,
    external: OnceLock<Store<ExternalArtifact>>,
    chart: OnceLock<Store<HelmChart>>,
    /// The fingerprint of the artifact each consumer (`namespace/name`) last read.
    read: Mutex<HashMap<String, u64>>,
}

macro_rules! source {
    ($kind:ty, $slot:ident) => {
        impl Source for $kind {
            fn artifact(&self) -> Option<&Artifact> {
                self.status.as_ref()?.artifact.as_ref()
            }
            fn slot(stores: &Stores) -> &OnceLock<Store<Self>> {
                &stores.$slot
            }
        }
    };
}
source!(GitRepository, git);
source!(OCIRepository, oci);
source!(Bucket, bucket);
source!(ExternalArtifact, external);
source!(HelmChart, chart);

/// The sources a consumer's controller has seen, and the artifact each consumer last read.
/// Cheap to clone (shared). A kind without a store (none asked for, or its first list not yet
/// in) is read from the API server.
#[derive(Clone, Default)]
pub struct SourceCache(Arc<Stores>);

impl std::fmt::Debug for SourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCache")
    }
}

impl SourceCache {
    /// The writer of this cache's store of `K`: the watch that feeds it must run for the
    /// controller's life. Only the first writer of a kind feeds the cache.
    pub fn writer<K: Source>(&self) -> Writer<K> {
        let (reader, writer) = reflector::store();
        let _ = K::slot(&self.0).set(reader);
        writer
    }

    /// The artifact of source `kind/namespace/name` for `consumer` (`namespace/name`), which
    /// is remembered as read by it.
    pub async fn artifact_for(
        &self,
        consumer: &str,
        client: &Client,
        kind: &str,
        namespace: &str,
        name: &str,
        requeue_dependency: Duration,
    ) -> Result<Artifact, ReconcileError> {
        let artifact = self
            .lookup(client, kind, namespace, name, requeue_dependency)
            .await?;
        if let (Ok(mut read), Some(fingerprint)) = (self.0.read.lock(), artifact_fingerprint(Some(&artifact)))
        {
            read.insert(consumer.to_string(), fingerprint);
        }
        Ok(artifact)
    }

    /// Whether `consumer`'s last reconcile read `artifact` already (it is being applied, or was).
    pub fn was_read(&self, consumer: &str, artifact: Option<&Artifact>) -> bool {
        let Some(fingerprint) = artifact_fingerprint(artifact) else {
            return false;
        };
        self.0
            .read
            .lock()
            .is_ok_and(|read| read.get(consumer) == Some(&fingerprint))
    }

    /// Forgets what a deleted consumer read.
    pub fn forget(&self, consumer: &str) {
        if let Ok(mut read) = self.0.read.lock() {
            read.remove(consumer);
        }
    }

    async fn lookup(
        &self,
        client: &Client,
        kind: &str,
        namespace: &str,
        name: &str,
        requeue_dependency: Duration,
    ) -> Result<Artifact, ReconcileError> {
        let (ns, n, requeue) = (namespace, name, requeue_dependency);
        let artifact = match kind {
            "GitRepository" => self.artifact_of::<GitRepository>(client, ns, n, requeue).await?,
            "OCIRepository" => self.artifact_of::<OCIRepository>(client, ns, n, requeue).await?,
            "Bucket" => self.artifact_of::<Bucket>(client, ns, n, requeue).await?,
            "ExternalArtifact" => {
                self.artifact_of::<ExternalArtifact>(client, ns, n, requeue)
                    .await?
            }
            "HelmChart" => self.artifact_of::<HelmChart>(client, ns, n, requeue).await?,
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

    /// From the store when it has the source (a source it lacks may be newer than its watch:
    /// asked for), else from the API server.
    async fn artifact_of<K: Source>(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        requeue: Duration,
    ) -> Result<Option<Artifact>, ReconcileError> {
        let cached = K::slot(&self.0).get().filter(|store| {
            // Until its first list is in, a store knows too little to answer.
            store
                .wait_until_ready()
                .now_or_never()
                .is_some_and(|ready| ready.is_ok())
        });
        if let Some(source) = cached.and_then(|store| store.get(&ObjectRef::new(name).within(namespace))) {
            return Ok(source.artifact().cloned());
        }
        Ok(get::<K>(client, namespace, name, requeue)
            .await?
            .artifact()
            .cloned())
    }
}

/// The artifact of source `kind/namespace/name`, or why there is none yet, read from the API
/// server (for callers without a [`SourceCache`]).
pub async fn artifact(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
    requeue_dependency: Duration,
) -> Result<Artifact, ReconcileError> {
    SourceCache::default()
        .lookup(client, kind, namespace, name, requeue_dependency)
        .await
}

/// A missing source is waited for, not a failure of the spec: it may be created later.
async fn get<K: Source>(
    client: &Client,
    namespace: &str,
    name: &str,
    requeue: Duration,
) -> Result<K, ReconcileError> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(source)) => Ok(source),
        Ok(None) => Err(ReconcileError::waiting(
            ARTIFACT_FAILED,
            format!("Source '{}/{namespace}/{name}' not found", K::kind(&())),
            requeue,
        )),
        Err(e) => Err(ReconcileError::transient(
            ARTIFACT_FAILED,
            format!("failed to get source: {e}"),
        )),
    }
}
