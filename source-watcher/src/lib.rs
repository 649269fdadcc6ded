//! source-watcher: reconciles ArtifactGenerators (`source.extensions.fluxcd.io/v1beta1`) into
//! ExternalArtifacts whose artifacts it stores and serves itself, as Flux's source-watcher
//! (`flux install --components-extra=source-watcher`).
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime, the artifact
//! storage and its HTTP server (the same code as source-controller's), and the controller, woken
//! by its own changes and by a new artifact of any source a generator reads.

pub mod builder;
pub mod generator;
pub mod path_pattern;

use driftless_api::source::{Bucket, ExternalArtifact, GitRepository, HelmChart, OCIRepository};
use driftless_api::source_extensions::ArtifactGenerator;
use driftless_artifact::{server, storage::Storage};
use driftless_runtime::{
    args::{CommonArgs, addr_arg, duration_arg},
    reconcile::{KindController, TriggerFn},
    runtime::{Runtime, instance_name},
    triggers,
};
use futures::StreamExt;
use kube::{Client, Resource, ResourceExt, runtime::watcher};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// Name used for events, the field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "source-watcher";
/// Reconciles at once when `--concurrent` is not given (Flux's source-watcher default).
pub const DEFAULT_CONCURRENCY: u16 = 10;

/// Command-line flags (Flux's source-watcher's).
#[derive(clap::Parser, Debug)]
#[command(
    name = "source-watcher",
    version,
    about = "Driftless source-watcher (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Local directory of the artifact storage.
    #[arg(long, env = "STORAGE_PATH", default_value = "/data")]
    pub storage_path: PathBuf,
    /// Address the artifact server listens on.
    #[arg(long, env = "STORAGE_ADDRESS", default_value = ":9090", value_parser = addr_arg)]
    pub storage_addr: SocketAddr,
    /// Advertised address of the artifact server, used in artifact URLs (default: host name and
    /// the port of --storage-addr).
    #[arg(long, env = "STORAGE_ADV_ADDR", default_value = "")]
    pub storage_adv_addr: String,
    /// How long superseded artifacts are kept.
    #[arg(long, default_value = "1m", value_parser = duration_arg)]
    pub artifact_retention_ttl: Duration,
    /// How many artifacts (the current one included) are kept per ExternalArtifact.
    #[arg(long, default_value_t = 2)]
    pub artifact_retention_records: usize,
    /// Digest algorithm of artifacts; only sha256 is supported.
    #[arg(long, default_value = "sha256", value_parser = ["sha256"])]
    pub artifact_digest_algo: String,
    /// Retries of a source artifact download.
    #[arg(long, default_value_t = 9)]
    pub http_retry: u32,
    /// Longest one reconcile may take.
    #[arg(long, default_value = "10m", value_parser = duration_arg)]
    pub reconciliation_timeout: Duration,
    /// Which ConfigMaps and Secrets are watched: bound but unused, as in Flux's source-watcher.
    #[arg(long, default_value = "reconcile.fluxcd.io/watch=Enabled")]
    pub watch_configs_label_selector: String,
}

/// Flux's feature gates of source-watcher and their defaults (`--feature-gates`). Sources are
/// always read from the apiserver, so DirectSourceFetch changes nothing.
pub const FEATURE_GATES: &[(&str, bool)] = &[driftless_runtime::features::DIRECT_SOURCE_FETCH];

/// Whether `generator` reads the source `kind/namespace/name`.
fn reads(generator: &ArtifactGenerator, kind: &str, namespace: &str, name: &str) -> bool {
    let own = generator.namespace().unwrap_or_default();
    generator
        .spec
        .sources
        .iter()
        .any(|s| s.kind == kind && s.name == name && s.namespace.as_deref().unwrap_or(&own) == namespace)
}

/// Generators that read an object of kind `K` whose artifact (`fingerprint`) changed.
fn readers_of<K>(
    client: &Client,
    namespace: Option<&str>,
    store: kube::runtime::reflector::Store<ArtifactGenerator>,
    fingerprint: fn(&K) -> Option<u64>,
) -> futures::stream::BoxStream<'static, kube::runtime::reflector::ObjectRef<ArtifactGenerator>>
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
    triggers::referrers(
        client,
        namespace,
        store,
        watcher::Config::default(),
        fingerprint,
        move |g: &ArtifactGenerator, source: &K| {
            reads(
                g,
                &kind,
                &source.namespace().unwrap_or_default(),
                &source.name_any(),
            )
        },
    )
}

/// What wakes a generator besides its own changes: a new artifact of a source it reads.
pub fn source_triggers(client: Client, namespace: Option<String>) -> TriggerFn<ArtifactGenerator> {
    use triggers::artifact_fingerprint as of;
    Box::new(move |store| {
        let ns = namespace.as_deref();
        let streams = vec![
            readers_of::<GitRepository>(&client, ns, store.clone(), |s| {
                of(s.status.as_ref()?.artifact.as_ref())
            }),
            readers_of::<OCIRepository>(&client, ns, store.clone(), |s| {
                of(s.status.as_ref()?.artifact.as_ref())
            }),
            readers_of::<Bucket>(&client, ns, store.clone(), |s| {
                of(s.status.as_ref()?.artifact.as_ref())
            }),
            readers_of::<HelmChart>(&client, ns, store.clone(), |s| {
                of(s.status.as_ref()?.artifact.as_ref())
            }),
            readers_of::<ExternalArtifact>(&client, ns, store.clone(), |s| {
                of(s.status.as_ref()?.artifact.as_ref())
            }),
        ];
        futures::stream::select_all(streams).boxed()
    })
}

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    let advertised = if args.storage_adv_addr.is_empty() {
        format!("{}:{}", instance_name(), args.storage_addr.port())
    } else {
        args.storage_adv_addr.clone()
    };
    let storage = Arc::new(Storage::new(
        args.storage_path.clone(),
        &advertised,
        args.artifact_retention_ttl,
        args.artifact_retention_records.max(1),
    )?);
    let served = server::serve(args.storage_addr, args.storage_path.clone(), rt.shutdown().wait());
    tokio::spawn(async move {
        if let Err(err) = served.await {
            tracing::error!(%err, "artifact server failed");
        }
    });
    tracing::info!(path = %args.storage_path.display(), addr = %args.storage_addr, %advertised, "artifact storage ready");
    let settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    let reconciler = generator::ArtifactGeneratorReconciler::new(
        storage,
        generator::Settings {
            requeue_dependency: rt.args.requeue_dependency,
            no_cross_namespace_refs: rt.args.no_cross_namespace_refs,
            http_retry: args.http_retry,
            reconciliation_timeout: args.reconciliation_timeout,
        },
    );
    let generators = Arc::new(
        KindController::new(
            reconciler,
            rt.client.clone(),
            CONTROLLER_NAME,
            CONTROLLER_NAME,
            rt.metrics.clone(),
            settings.clone(),
        )
        .with_triggers(source_triggers(rt.client.clone(), settings.namespace.clone())),
    );
    let shutdown = rt.shutdown().clone();
    rt.run(async move { generators.run(shutdown.wait()).await }).await
}

#[cfg(test)]
mod flux_args_tests {
    use super::*;
    use clap::Parser;

    /// Every flag of Flux's source-watcher Deployment and binary, with a value it takes.
    #[test]
    fn every_flux_flag_is_accepted() {
        let args = [
            "source-watcher",
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
            "--watch-all-namespaces=true",
            "--log-level=info",
            "--log-encoding=json",
            "--enable-leader-election=true",
            "--storage-path=/data",
            "--storage-adv-addr=source-watcher.flux-system.svc.cluster.local.",
            "--storage-addr=:9090",
            "--concurrent=10",
            "--metrics-addr=:8080",
            "--health-addr=:9440",
            "--http-retry=9",
            "--reconciliation-timeout=10m",
            "--requeue-dependency=5s",
            "--no-cross-namespace-refs=false",
            "--artifact-retention-ttl=1m",
            "--artifact-retention-records=2",
            "--artifact-digest-algo=sha256",
            "--kube-api-qps=50",
            "--kube-api-burst=300",
            "--feature-gates=DirectSourceFetch=true",
            "--interval-jitter-percentage=5",
            "--leader-election-lease-duration=35s",
            "--leader-election-renew-deadline=30s",
            "--leader-election-retry-period=5s",
            "--leader-election-release-on-cancel=true",
            "--min-retry-delay=750ms",
            "--max-retry-delay=15m",
            "--watch-label-selector=",
            "--watch-configs-label-selector=reconcile.fluxcd.io/watch=Enabled",
        ];
        let parsed = Args::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.http_retry, 9);
        assert!(Args::try_parse_from(["source-watcher", "--no-such-flag=1"]).is_err());
    }
}
