//! notification-controller: reconciles Provider, Alert and Receiver.
//!
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime (probes, metrics,
//! leader election, graceful shutdown) and the kind controllers.

use driftless_runtime::{args::CommonArgs, runtime::Runtime};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "notification-controller";

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "notification-controller",
    version,
    about = "Driftless notification-controller (Flux-compatible)"
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
        .run_idle("Provider, Alert and Receiver")
        .await
}
