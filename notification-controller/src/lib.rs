//! notification-controller: not yet a reconciler. It starts, serves `/healthz`, `/readyz` and
//! `/metrics` and takes part in leader election, so the install bundle and `driftless check` see
//! it; Providers, Alerts and Receivers are accepted by their CRDs and left alone, and nothing
//! listens on the event or receiver ports yet (issue 16).
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

