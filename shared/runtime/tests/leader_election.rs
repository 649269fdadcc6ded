//! Leader election between two real processes: only the leader reconciles; when the leader is
//! killed, the standby takes over once the lease expires; a graceful stop hands over at once.
//!
//! The candidate processes are the helper binary `leader-election-candidate`
//! (`tests/support/leader_election_candidate.rs`), each running the full `Runtime` with
//! `--enable-leader-election` and a Widget controller.

#![allow(clippy::unwrap_used)]

mod support;

use driftless_api::meta::REQUESTED_AT_ANNOTATION;
use driftless_runtime::testing;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use support::{Widget, widget_crd};

const LEASE: &str = "widget-controller-leader-election";
/// `--leader-election-lease-duration` of the candidates.
const LEASE_DURATION: Duration = Duration::from_secs(4);
/// `--leader-election-retry-period` of the candidates.
const RETRY_PERIOD: Duration = Duration::from_millis(500);
/// What a candidate logs once it found the lease held by another: it is up and contending.
const STANDING_BY: &str = "lease held by another candidate, standing by";

/// A candidate process, killed when dropped. Its log (stderr) is kept for waits and failure
/// messages.
struct Candidate {
    identity: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Candidate {
    fn spawn(ns: &str, identity: &str) -> Candidate {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leader-election-candidate"))
            .env("POD_NAME", identity)
            .env("RUNTIME_NAMESPACE", ns)
            // --log-level (info) decides, so that STANDING_BY is logged.
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn candidate");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("candidate stderr");
        let sink = Arc::clone(&log);
        // Drains the pipe until the process exits, so the candidate never blocks on logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Candidate {
            identity: identity.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the candidate has logged `needle`.
    async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not log {needle:?} within {timeout:?}; its log:\n{}",
                self.identity,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the process has exited; returns its status.
    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still runs {timeout:?} after it was asked to stop; its log:\n{}",
                self.identity,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn lease_spec(leases: &Api<Lease>) -> Option<LeaseSpec> {
    leases.get_opt(LEASE).await.ok().flatten().and_then(|l| l.spec)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    lease_spec(leases).await.and_then(|s| s.holder_identity)
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

/// Polls the lease for `window`: the candidate `prefix` holds it all along, and renews it.
async fn assert_held_throughout(leases: &Api<Lease>, prefix: &str, window: Duration) {
    let renewed_at = |spec: &Option<LeaseSpec>| spec.as_ref().and_then(|s| s.renew_time.clone());
    let first = lease_spec(leases).await;
    let mut last = first.clone();
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = lease_spec(leases).await;
        let h = last.as_ref().and_then(|s| s.holder_identity.as_deref());
        assert!(
            h.is_some_and(|h| h.starts_with(&format!("{prefix}_"))),
            "lease holder is {h:?} while {prefix} leads"
        );
    }
    assert_ne!(
        renewed_at(&first),
        renewed_at(&last),
        "{prefix} did not renew the lease within {window:?}"
    );
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

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn leader_election_hands_over_when_the_leader_dies() {
    let client = testing::client().await;
    testing::install_crds(&client, &[widget_crd()]).await;
    let ns = testing::namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let widgets: Api<Widget> = Api::namespaced(client.clone(), &ns);

    let mut a = Candidate::spawn(&ns, "cand-a");
    wait_holder(&leases, "cand-a", Duration::from_secs(60)).await;
    let b = Candidate::spawn(&ns, "cand-b");
    b.wait_log(STANDING_BY, Duration::from_secs(30)).await;

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

    // The standby stays passive while the leader lives. That something does not happen can only
    // be watched for a while: one lease duration and two retry periods, in which a standby that
    // ignored the holder would take the lease at its next attempt, and one that ignored the
    // renewals would find the lease expired; meanwhile the leader must renew it.
    assert_held_throughout(&leases, "cand-a", LEASE_DURATION + 2 * RETRY_PERIOD).await;

    // Kill the leader without a chance to release: the standby takes over after expiry.
    let _ = a.child.kill();
    let _ = a.child.wait();
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

    let mut a = Candidate::spawn(&ns, "cand-a");
    wait_holder(&leases, "cand-a", Duration::from_secs(60)).await;
    let b = Candidate::spawn(&ns, "cand-b");
    // The standby contends before the leader stops, so the hand-over is measured from the release.
    b.wait_log(STANDING_BY, Duration::from_secs(30)).await;

    // SIGTERM: the leader finishes, releases the lease and exits 0; the standby takes over
    // well before the 4s lease would have expired on its own.
    let pid = a.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = a.wait_exit(Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "leader exited with {exit:?}; its log:\n{}",
        a.log()
    );
    wait_holder(&leases, "cand-b", Duration::from_secs(3)).await;
    testing::delete_namespace(&client, &ns).await;
}
