//! source-controller: fetches GitRepositories, OCIRepositories and Helm repository indexes
//! (HelmRepositories) and publishes them as artifacts.
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown), the artifact storage and its HTTP server, and one
//! controller per kind.

pub mod bucket;
pub mod common;
pub mod cosign;
pub mod gcs;
pub mod git_repository;
pub mod helm_chart;
pub mod helm_repository;
pub mod oci_repository;
pub mod sourceignore;

// Storage and its server are the shared producer side of artifacts (source-watcher has them too).
pub use driftless_artifact::{server, storage};

use driftless_runtime::{
    args::{CommonArgs, addr_arg, duration_arg},
    reconcile::KindController,
    runtime::{Runtime, instance_name},
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "source-controller";
/// Reconciles at once when `--concurrent` is not given (Flux's default).
pub const DEFAULT_CONCURRENCY: u16 = 2;

/// Longest a git socket read or write may block; `spec.timeout` bounds whole operations.
pub const GIT_SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "source-controller",
    version,
    about = "Driftless source-controller (Flux-compatible)"
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
    /// How many artifacts (the current one included) are kept per object.
    #[arg(long, default_value_t = 2)]
    pub artifact_retention_records: usize,
    /// Largest Helm repository index fetched, in bytes.
    #[arg(long, default_value_t = helm_repository::DEFAULT_INDEX_MAX_SIZE)]
    pub helm_index_max_size: u64,
    /// Largest Helm chart archive pulled, in bytes.
    #[arg(long, default_value_t = helm_chart::DEFAULT_CHART_MAX_SIZE)]
    pub helm_chart_max_size: u64,
    /// Digest algorithm of artifacts; only sha256 is supported (Flux also offers sha384,
    /// sha512 and blake3: those stop the start with a plain message).
    #[arg(long, default_value = "sha256", value_parser = ["sha256"])]
    pub artifact_digest_algo: String,
    /// Largest file inside a chart, in bytes.
    #[arg(long, default_value_t = helm_chart::DEFAULT_CHART_FILE_MAX_SIZE)]
    pub helm_chart_file_max_size: u64,
    /// Parsed Helm indexes kept at most; 0 keeps the controller's own bound (the cache is
    /// always on: an index is parsed once per revision).
    #[arg(long, default_value_t = 0)]
    pub helm_cache_max_size: usize,
    /// How long a parsed index is kept (with --helm-cache-max-size).
    #[arg(long, default_value = "15m", value_parser = duration_arg)]
    pub helm_cache_ttl: Duration,
    /// How often indexes past their time to live are dropped from the cache.
    #[arg(long, default_value = "1m", value_parser = duration_arg)]
    pub helm_cache_purge_interval: Duration,
    /// SSH key-exchange algorithms for git; libssh2 negotiates its own, so a value is logged
    /// and not applied.
    #[arg(long, value_delimiter = ',')]
    pub ssh_kex_algos: Vec<String>,
    /// SSH host-key algorithms for git; as --ssh-kex-algos.
    #[arg(long, value_delimiter = ',')]
    pub ssh_hostkey_algos: Vec<String>,
    /// Which ConfigMaps and Secrets are watched: bound but unused in Flux's source-controller,
    /// and here.
    #[arg(long, default_value = "reconcile.fluxcd.io/watch=Enabled")]
    pub watch_configs_label_selector: String,
    /// Cloud-provider tokens cached at most; cloud providers are refused by field here.
    #[arg(long, default_value_t = 100)]
    pub token_cache_max_size: usize,
    /// Longest a cloud-provider token is cached.
    #[arg(long, default_value = "1h", value_parser = duration_arg)]
    pub token_cache_max_duration: Duration,
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("CacheSecretsAndConfigMaps", false),
    driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    // In source-controller, the default service account is a workload identity: Flux refuses
    // it without the gate.
    if !rt.args.default_service_account.is_empty()
        && !rt
            .gates
            .enabled(driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY.0)
    {
        anyhow::bail!(
            "invalid configuration: cannot set default service accounts when the feature gate {} is not enabled",
            driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY.0
        );
    }
    if !args.ssh_kex_algos.is_empty() || !args.ssh_hostkey_algos.is_empty() {
        tracing::warn!(kex = ?args.ssh_kex_algos, hostkey = ?args.ssh_hostkey_algos,
            "--ssh-kex-algos and --ssh-hostkey-algos are not applied: libssh2 negotiates its own algorithms");
    }
    let advertised = if args.storage_adv_addr.is_empty() {
        format!("{}:{}", instance_name(), args.storage_addr.port())
    } else {
        args.storage_adv_addr.clone()
    };
    let storage = Arc::new(storage::Storage::new(
        args.storage_path.clone(),
        &advertised,
        args.artifact_retention_ttl,
        args.artifact_retention_records.max(1),
    )?);
    let server = server::serve(args.storage_addr, args.storage_path.clone(), rt.shutdown().wait());
    tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(%err, "artifact server failed");
        }
    });
    tracing::info!(path = %args.storage_path.display(), addr = %args.storage_addr, %advertised, "artifact storage ready");
    let settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    let git = Arc::new(
        KindController::new(
            git_repository::GitRepositoryReconciler::new(storage.clone(), GIT_SOCKET_TIMEOUT)
                .with_requeue_dependency(rt.args.requeue_dependency),
            rt.client.clone(),
            CONTROLLER_NAME,
            CONTROLLER_NAME,
            rt.metrics.clone(),
            settings.clone(),
        )
        .with_triggers(git_repository::include_triggers(
            rt.client.clone(),
            settings.namespace.clone(),
        )),
    );
    let oci = Arc::new(KindController::new(
        oci_repository::OCIRepositoryReconciler::new(storage.clone()),
        rt.client.clone(),
        CONTROLLER_NAME,
        CONTROLLER_NAME,
        rt.metrics.clone(),
        rt.loop_settings(DEFAULT_CONCURRENCY),
    ));
    let helm = Arc::new(KindController::new(
        helm_repository::HelmRepositoryReconciler::new(storage.clone(), args.helm_index_max_size),
        rt.client.clone(),
        CONTROLLER_NAME,
        CONTROLLER_NAME,
        rt.metrics.clone(),
        rt.loop_settings(DEFAULT_CONCURRENCY),
    ));
    let chart_reconciler = helm_chart::HelmChartReconciler::with_limits(
        storage.clone(),
        args.helm_chart_max_size,
        helm_chart::HelmLimits {
            index_max_size: args.helm_index_max_size,
            file_max_size: args.helm_chart_file_max_size,
            cache: helm_chart::index::CacheLimits {
                max_size: args.helm_cache_max_size,
                ttl: (args.helm_cache_max_size > 0).then_some(args.helm_cache_ttl),
            },
        },
    );
    if args.helm_cache_max_size > 0 && !args.helm_cache_purge_interval.is_zero() {
        let (indexes, every) = (chart_reconciler.index_cache(), args.helm_cache_purge_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                indexes.purge_expired();
            }
        });
    }
    let charts = Arc::new(
        KindController::new(
            chart_reconciler,
            rt.client.clone(),
            CONTROLLER_NAME,
            CONTROLLER_NAME,
            rt.metrics.clone(),
            settings.clone(),
        )
        .with_triggers(helm_chart::source_triggers(
            rt.client.clone(),
            settings.namespace.clone(),
        )),
    );
    let buckets = Arc::new(KindController::new(
        bucket::BucketReconciler::new(storage.clone()),
        rt.client.clone(),
        CONTROLLER_NAME,
        CONTROLLER_NAME,
        rt.metrics.clone(),
        rt.loop_settings(DEFAULT_CONCURRENCY),
    ));
    let shutdown = rt.shutdown().clone();
    let work = async move {
        tokio::join!(
            git.run(shutdown.wait()),
            oci.run(shutdown.wait()),
            helm.run(shutdown.wait()),
            charts.run(shutdown.wait()),
            buckets.run(shutdown.wait())
        );
    };
    rt.run(work).await
}

#[cfg(test)]
mod flux_args_tests {
    use super::*;
    use clap::Parser;

    /// The container args of Flux v2.9's Deployment, alone and with the multi-tenancy lockdown
    /// patch's: a cluster moved from Flux keeps its manifests.
    #[test]
    fn flux_deployment_args_are_accepted() {
        let lockdown: &[&str] = &[];
        for extra in [&[][..], lockdown] {
            let args = driftless_runtime::testing::flux_deployment_args(CONTROLLER_NAME, extra);
            if let Err(e) = Args::try_parse_from(&args) {
                panic!("{args:?}: {e}");
            }
        }
    }

    /// Every flag of Flux v2.9's source-controller, with a value it takes; an unknown flag and
    /// a digest algorithm other than sha256 stop the start.
    #[test]
    fn every_flux_flag_is_accepted() {
        let args = [
            "source-controller",
            "--metrics-addr=:8080",
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
            "--health-addr=:9440",
            "--concurrent=2",
            "--helm-index-max-size=52428800",
            "--helm-chart-max-size=10485760",
            "--helm-chart-file-max-size=5242880",
            "--requeue-dependency=30s",
            "--helm-cache-max-size=10",
            "--helm-cache-ttl=15m",
            "--helm-cache-purge-interval=1m",
            "--ssh-kex-algos=curve25519-sha256,diffie-hellman-group14-sha256",
            "--ssh-hostkey-algos=ssh-ed25519",
            "--default-service-account=",
            "--storage-path=/data",
            "--storage-addr=:9090",
            "--storage-adv-addr=source-controller.flux-system.svc.cluster.local.",
            "--artifact-retention-ttl=60s",
            "--artifact-retention-records=2",
            "--artifact-digest-algo=sha256",
            "--kube-api-qps=50",
            "--kube-api-burst=300",
            "--log-encoding=json",
            "--log-level=info",
            "--enable-leader-election=true",
            "--leader-election-release-on-cancel=true",
            "--leader-election-lease-duration=35s",
            "--leader-election-renew-deadline=30s",
            "--leader-election-retry-period=5s",
            "--min-retry-delay=750ms",
            "--max-retry-delay=15m",
            "--feature-gates=CacheSecretsAndConfigMaps=true",
            "--watch-all-namespaces=true",
            "--watch-label-selector=",
            "--watch-configs-label-selector=reconcile.fluxcd.io/watch=Enabled",
            "--interval-jitter-percentage=5",
            "--token-cache-max-size=100",
            "--token-cache-max-duration=1h",
        ];
        let parsed = Args::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.ssh_kex_algos.len(), 2);
        assert_eq!(parsed.helm_cache_max_size, 10);
        assert!(Args::try_parse_from(["source-controller", "--no-such-flag=1"]).is_err());
        assert!(Args::try_parse_from(["source-controller", "--artifact-digest-algo=blake3"]).is_err());
    }
}
