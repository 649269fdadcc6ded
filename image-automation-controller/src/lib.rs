//! image-automation-controller: not yet a reconciler. It starts, serves `/healthz`, `/readyz` and
//! `/metrics` and takes part in leader election, so the install bundle and `driftless check` see
//! it; ImageUpdateAutomations are accepted by their CRD and left alone (issue 17).
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the kind controllers.

use driftless_runtime::{args::CommonArgs, runtime::Runtime};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "image-automation-controller";

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

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    Runtime::start(CONTROLLER_NAME, args.common)
        .await?
        .run_idle("ImageUpdateAutomation")
        .await
}
