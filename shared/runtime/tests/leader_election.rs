//! Leader election between two real processes: only the leader reconciles; when the leader is
//! killed, the standby takes over once the lease expires; a graceful stop hands over at once.
//!
//! The test binary re-executes itself as the candidate processes (`leader_election_candidate`,
//! a no-op unless `DRIFTLESS_LEADER_CANDIDATE` is set), each running the full `Runtime` with
//! `--enable-leader-election` and a Widget controller.

#![allow(clippy::unwrap_used)]

mod support;

use driftless_api::meta::REQUESTED_AT_ANNOTATION;
use driftless_runtime::{args::CommonArgs, reconcile::KindController, runtime::Runtime, testing};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};
use support::{Widget, WidgetReconciler, widget_crd};

const LEASE: &str = "widget-controller-leader-election";

#[derive(clap::Parser)]
struct CandidateArgs {
    #[command(flatten)]
    common: CommonArgs,
}

/// Body of a candidate process.
#[tokio::test]
#[ignore = "re-executed by leader_election_hands_over_when_the_leader_dies"]
async fn leader_election_candidate() {
    let Ok(identity) = std::env::var("DRIFTLESS_LEADER_CANDIDATE") else {
        return;
    };
    use clap::Parser;
    let args = CandidateArgs::parse_from([
        "candidate",
        "--enable-leader-election",
        "--leader-election-lease-duration=4s",
        "--leader-election-renew-deadline=3s",
        "--leader-election-retry-period=500ms",
        "--watch-all-namespaces=false",
        "--metrics-addr=127.0.0.1:0",
        "--health-addr=127.0.0.1:0",
        "--log-encoding=console",
    ]);
    let rt = Runtime::start("widget-controller", args.common)
        .await
        .expect("runtime");
    let ctrl = Arc::new(KindController::new(
        WidgetReconciler { identity },
        rt.client.clone(),
        "widget-controller",
        "widget-controller",
        rt.metrics.clone(),
        rt.loop_settings(2),
    ));
    let work = ctrl.run(rt.shutdown().wait());
    rt.run(work).await.expect("run");
}

fn spawn_candidate(ns: &str, identity: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "leader_election_candidate", "--nocapture"])
        .env("DRIFTLESS_LEADER_CANDIDATE", identity)
        .env("POD_NAME", identity)
        .env("RUNTIME_NAMESPACE", ns)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn candidate")
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn wait_holder(leases: &Api<Lease>, prefix: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let h = holder(leases).await;
        if h.as_deref().is_some_and(|h| h.starts_with(&format!("{prefix}_"))) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease holder is {h:?}, expected {prefix}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reconciled_by(w: &Widget) -> Option<String> {
    w.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .and_then(|c| c.message.strip_prefix("reconciled by ").map(str::to_string))
}

async fn request(widgets: &Api<Widget>, token: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}});
    widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn leader_election_hands_over_when_the_leader_dies() {
    let client = testing::client().await;
    testing::install_crds(&client, &[widget_crd()]).await;
    let ns = testing::namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let widgets: Api<Widget> = Api::namespaced(client.clone(), &ns);

    let mut a = KillOnDrop(spawn_candidate(&ns, "cand-a"));
    wait_holder(&leases, "cand-a", Duration::from_secs(60)).await;
    let _b = KillOnDrop(spawn_candidate(&ns, "cand-b"));

    let w: Widget = serde_json::from_value(serde_json::json!({
        "apiVersion": "test.driftless.dev/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"interval": "1h"}
    }))
    .unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();
    testing::wait_for(&widgets, "w", Duration::from_secs(30), |w: &Widget| {
        reconciled_by(w).as_deref() == Some("cand-a")
    })
    .await;

    // The standby stays passive while the leader lives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(holder(&leases).await.is_some_and(|h| h.starts_with("cand-a_")));

    // Kill the leader without a chance to release: the standby takes over after expiry.
    let _ = a.0.kill();
    let _ = a.0.wait();
    wait_holder(&leases, "cand-b", Duration::from_secs(30)).await;
    request(&widgets, "after-handover").await;
    testing::wait_for(&widgets, "w", Duration::from_secs(30), |w: &Widget| {
        reconciled_by(w).as_deref() == Some("cand-b")
            && w.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some("after-handover")
    })
    .await;
    testing::delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn a_gracefully_stopped_leader_releases_the_lease() {
    let client = testing::client().await;
    testing::install_crds(&client, &[widget_crd()]).await;
    let ns = testing::namespace(&client, "leader-term").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);

    let a = KillOnDrop(spawn_candidate(&ns, "cand-a"));
    wait_holder(&leases, "cand-a", Duration::from_secs(60)).await;
    let _b = KillOnDrop(spawn_candidate(&ns, "cand-b"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // SIGTERM: the leader finishes, releases the lease and exits 0; the standby takes over
    // well before the 4s lease would have expired on its own.
    let pid = a.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let mut a = a;
    let exit = tokio::task::spawn_blocking(move || {
        let s = a.0.wait();
        std::mem::forget(a);
        s
    })
    .await
    .unwrap()
    .unwrap();
    assert!(exit.success(), "leader exited with {exit:?}");
    wait_holder(&leases, "cand-b", Duration::from_secs(3)).await;
    testing::delete_namespace(&client, &ns).await;
}
