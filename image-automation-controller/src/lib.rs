//! image-automation-controller: commits the latest images of ImagePolicies to Git
//! (ImageUpdateAutomation, Flux API reference §7).
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the ImageUpdateAutomation controller.

pub mod automation;
pub mod message;
pub mod setters;
pub mod template;

use driftless_runtime::{args::CommonArgs, reconcile::KindController, runtime::Runtime};
use std::{sync::Arc, time::Duration};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "image-automation-controller";
/// Reconciles at once when `--concurrent` is not given (Flux's default).
pub const DEFAULT_CONCURRENCY: u16 = 4;
/// Longest a git socket read or write may block; the GitRepository's timeout bounds whole runs.
pub const GIT_SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "image-automation-controller",
    version,
    about = "Driftless image-automation-controller (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("GitForcePushBranch", true),
    ("GitShallowClone", true),
    ("GitAllBranchReferences", true),
    ("GitSparseCheckout", false),
    ("CacheSecretsAndConfigMaps", false),
    driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    driftless_git::transport::set_socket_timeouts(Duration::from_secs(10), GIT_SOCKET_TIMEOUT);
    let no_cross_namespace_refs = args.common.no_cross_namespace_refs;
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    let settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    let automations = Arc::new(
        KindController::new(
            automation::ImageUpdateAutomationReconciler {
                no_cross_namespace_refs,
            },
            rt.client.clone(),
            CONTROLLER_NAME,
            CONTROLLER_NAME,
            rt.metrics.clone(),
            settings.clone(),
        )
        .with_triggers(automation::policy_triggers(
            rt.client.clone(),
            settings.namespace.clone(),
        )),
    );
    let shutdown = rt.shutdown().clone();
    rt.run(async move { automations.run(shutdown.wait()).await })
        .await
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
