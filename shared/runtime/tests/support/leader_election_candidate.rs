//! A candidate process for `tests/leader_election.rs`: the full `Runtime` with
//! `--enable-leader-election` and a Widget controller whose Ready message names this candidate
//! (`POD_NAME`). The test starts it (`CARGO_BIN_EXE_leader-election-candidate`) with
//! `RUNTIME_NAMESPACE` set to its namespace and `KUBECONFIG` to the testenv cluster; it runs
//! until killed or, on SIGTERM, until it has released the lease.
//!
//! A helper binary rather than a test (feature `testing`, never installed), so that the test
//! count only counts tests.

#[path = "mod.rs"]
mod support;

use clap::Parser;
use driftless_runtime::{
    args::CommonArgs,
    reconcile::KindController,
    runtime::{Runtime, instance_name},
};
use std::sync::Arc;
use support::WidgetReconciler;

#[derive(Parser)]
struct CandidateArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The timing the test's waits are computed from (its `LEASE_DURATION`).
    let args = CandidateArgs::parse_from([
        "leader-election-candidate",
        "--enable-leader-election",
        "--leader-election-lease-duration=4s",
        "--leader-election-renew-deadline=3s",
        "--leader-election-retry-period=500ms",
        "--watch-all-namespaces=false",
        "--metrics-addr=127.0.0.1:0",
        "--health-addr=127.0.0.1:0",
        "--log-encoding=console",
    ]);
    let rt = Runtime::start("widget-controller", args.common, &[]).await?;
    let ctrl = Arc::new(KindController::new(
        WidgetReconciler {
            identity: instance_name(),
        },
        rt.client.clone(),
        "widget-controller",
        "widget-controller",
        rt.metrics.clone(),
        rt.loop_settings(2),
    ));
    let work = ctrl.run(rt.shutdown().wait());
    rt.run(work).await
}
