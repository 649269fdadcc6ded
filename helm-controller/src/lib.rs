//! helm-controller: reconciles HelmRelease.
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the kind controllers.

use driftless_runtime::{args::CommonArgs, runtime::Runtime};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "helm-controller";
/// Reconciles at once when `--concurrent` is not given (Flux's default).
pub const DEFAULT_CONCURRENCY: u16 = 4;

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "helm-controller",
    version,
    about = "Driftless helm-controller (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let rt = Runtime::start(CONTROLLER_NAME, args.common).await?;
    let _settings = rt.loop_settings(DEFAULT_CONCURRENCY);
    tracing::warn!("no kinds are reconciled by this build yet: HelmRelease arrive with their issues");
    let work = rt.shutdown().wait();
    rt.run(work).await
}
