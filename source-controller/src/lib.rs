//! source-controller: fetches GitRepositories, OCIRepositories and Helm repository indexes
//! (HelmRepositories) and publishes them as artifacts.
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown), the artifact storage and its HTTP server, and one
//! controller per kind.

pub mod common;
pub mod cosign;
pub mod git_repository;
pub mod helm_chart;
pub mod helm_repository;
pub mod oci_repository;
pub mod server;
pub mod sourceignore;
pub mod storage;

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
    #[arg(long, default_value = "/data")]
    pub storage_path: PathBuf,
    /// Address the artifact server listens on.
    #[arg(long, default_value = ":9090", value_parser = addr_arg)]
    pub storage_addr: SocketAddr,
    /// Advertised address of the artifact server, used in artifact URLs (default: host name and
    /// the port of --storage-addr).
    #[arg(long, default_value = "")]
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
    /// Digest algorithm of artifacts; only sha256 is supported.
    #[arg(long, default_value = "sha256", value_parser = ["sha256"])]
    pub artifact_digest_algo: String,
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("CacheSecretsAndConfigMaps", false),
    driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
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
            git_repository::GitRepositoryReconciler::new(storage.clone(), GIT_SOCKET_TIMEOUT),
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
    let charts = Arc::new(
        KindController::new(
            helm_chart::HelmChartReconciler::new(storage.clone(), args.helm_chart_max_size),
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
    let shutdown = rt.shutdown().clone();
    let work = async move {
        tokio::join!(
            git.run(shutdown.wait()),
            oci.run(shutdown.wait()),
            helm.run(shutdown.wait()),
            charts.run(shutdown.wait())
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
}
