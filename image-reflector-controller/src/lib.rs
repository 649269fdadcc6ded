//! image-reflector-controller: scans registries for the tags of ImageRepositories and picks the
//! latest image of each ImagePolicy (Flux API reference §6).
//!
//! Tags live on disk under `--storage-path` ([`tags::TagStore`]), not in memory: a policy reads
//! its repository's list when it is evaluated, so memory does not grow with the tags scanned.
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and one controller per kind.

pub mod image;
pub mod policy;
pub mod repository;
pub mod select;
pub mod tags;

use driftless_runtime::{args::CommonArgs, reconcile::KindController, runtime::Runtime};
use std::{path::PathBuf, sync::Arc};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "image-reflector-controller";
/// Reconciles at once when `--concurrent` is not given (Flux's default).
pub const DEFAULT_CONCURRENCY: u16 = 4;

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "image-reflector-controller",
    version,
    about = "Driftless image-reflector-controller (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Directory where scanned tags are kept.
    #[arg(long, default_value = "/data")]
    pub storage_path: PathBuf,
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("CacheSecretsAndConfigMaps", false),
    ("FluxStorage", false),
    driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let requeue_dependency = args.common.requeue_dependency;
    let no_cross_namespace_refs = args.common.no_cross_namespace_refs;
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    let store = Arc::new(tags::TagStore::new(&args.storage_path)?);
    let settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    let repositories = Arc::new(KindController::new(
        repository::ImageRepositoryReconciler::new(store.clone()),
        rt.client.clone(),
        CONTROLLER_NAME,
        CONTROLLER_NAME,
        rt.metrics.clone(),
        settings.clone(),
    ));
    let policies = Arc::new(
        KindController::new(
            policy::ImagePolicyReconciler::new(store, requeue_dependency, no_cross_namespace_refs),
            rt.client.clone(),
            CONTROLLER_NAME,
            CONTROLLER_NAME,
            rt.metrics.clone(),
            settings.clone(),
        )
        .with_triggers(policy::repository_triggers(
            rt.client.clone(),
            settings.namespace.clone(),
        )),
    );
    let shutdown = rt.shutdown().clone();
    let work = async move {
        tokio::join!(repositories.run(shutdown.wait()), policies.run(shutdown.wait()));
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
        let lockdown: &[&str] = &["--no-cross-namespace-refs=true"];
        for extra in [&[][..], lockdown] {
            let args = driftless_runtime::testing::flux_deployment_args(CONTROLLER_NAME, extra);
            if let Err(e) = Args::try_parse_from(&args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
