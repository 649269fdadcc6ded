//! The reconcile framework against the real apiserver (hack/testenv.sh): a Widget controller
//! runs in-process, watching one fresh namespace per test.

#![allow(clippy::unwrap_used)]

mod support;

use driftless_api::meta::{FINALIZER, REQUESTED_AT_ANNOTATION, ReconcileStatus};
use driftless_runtime::{
    conditions::{self, check_kstatus},
    metrics::Metrics,
    reconcile::{KindController, LoopSettings},
    testing,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use std::{sync::Arc, time::Duration};
use support::{Widget, WidgetReconciler, widget_crd};
use tokio::sync::oneshot;

const T: Duration = Duration::from_secs(30);

/// A running widget controller for one namespace; stops when dropped.
struct Harness {
    client: Client,
    ns: String,
    widgets: Api<Widget>,
    metrics: Metrics,
    _stop: oneshot::Sender<()>,
}

async fn harness(prefix: &str) -> Harness {
    let client = testing::client().await;
    testing::install_crds(&client, &[widget_crd()]).await;
    let ns = testing::namespace(&client, prefix).await;
    let metrics = Metrics::new();
    let settings = LoopSettings {
        namespace: Some(ns.clone()),
        min_retry_delay: Duration::from_millis(200),
        max_retry_delay: Duration::from_secs(2),
        ..LoopSettings::default()
    };
    let ctrl = Arc::new(KindController::new(
        WidgetReconciler {
            identity: "in-process".into(),
        },
        client.clone(),
        "widget-controller",
        "widget-controller",
        metrics.clone(),
        settings,
    ));
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(ctrl.run(async move {
        let _ = rx.await;
    }));
    Harness {
        widgets: Api::namespaced(client.clone(), &ns),
        client,
        ns,
        metrics,
        _stop: tx,
    }
}

fn widget(name: &str, outcome: &str) -> Widget {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "test.driftless.dev/v1", "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"interval": "1s", "outcome": outcome}
    }))
    .expect("widget")
}

fn conds(w: &Widget) -> Vec<driftless_api::meta::Condition> {
    w.status
        .as_ref()
        .map(|s| s.conditions().to_vec())
        .unwrap_or_default()
}

fn ready_reason(w: &Widget) -> Option<(String, String)> {
    conditions::get(&conds(w), "Ready").map(|c| (c.status.clone(), c.reason.clone()))
}

/// How many reconciles of widget `name` have finished (`gotk_reconcile_duration_seconds_count`).
fn reconcile_count(metrics: &Metrics, name: &str) -> f64 {
    let label = format!("name=\"{name}\"");
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("gotk_reconcile_duration_seconds_count") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn patch_spec(h: &Harness, name: &str, spec: serde_json::Value) {
    h.widgets
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": spec})),
        )
        .await
        .unwrap();
}

async fn request_reconcile(h: &Harness, name: &str, token: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}});
    h.widgets
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn a_new_object_gets_the_finalizer_ready_and_its_observed_generation() {
    let h = harness("fw-ready").await;
    let created = h
        .widgets
        .create(&PostParams::default(), &widget("a", ""))
        .await
        .unwrap();
    // Before the first reconcile the CRD default says "never reconciled".
    assert_eq!(
        created.status.as_ref().and_then(|s| s.observed_generation),
        Some(-1)
    );
    let w = testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w) == Some(("True".into(), "Succeeded".into()))
    })
    .await;
    assert!(w.finalizers().contains(&FINALIZER.to_string()));
    assert_eq!(
        w.status.as_ref().unwrap().observed_generation,
        w.metadata.generation
    );
    assert!(check_kstatus(&conds(&w), &[]).is_empty(), "{:?}", conds(&w));
    assert!(conditions::get(&conds(&w), "Reconciling").is_none());
    // The reconciler's own work happened.
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.ns);
    assert!(cms.get_opt("widget-a").await.unwrap().is_some());
    // The duration metric has the object's series.
    let text = h.metrics.encode();
    assert!(
        text.contains("gotk_reconcile_duration_seconds_bucket{") && text.contains("kind=\"Widget\""),
        "{text}"
    );
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn requested_at_is_handled_and_recorded() {
    let h = harness("fw-requested").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", ""))
        .await
        .unwrap();
    testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    request_reconcile(&h, "a", "2026-11-23T10:00:00Z").await;
    testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        w.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some("2026-11-23T10:00:00Z")
    })
    .await;
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn a_suspended_object_is_left_alone_until_resumed() {
    let h = harness("fw-suspend").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", ""))
        .await
        .unwrap();
    testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    patch_spec(
        &h,
        "a",
        serde_json::json!({"suspend": true, "outcome": "stalled"}),
    )
    .await;
    request_reconcile(&h, "a", "while-suspended").await;
    // A fence: "b", created after "a" was suspended and requested, is reconciled only once the
    // controller's watch (one watch, events in order) has delivered both changes of "a".
    h.widgets
        .create(&PostParams::default(), &widget("b", ""))
        .await
        .unwrap();
    testing::wait_for(&h.widgets, "b", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    // That "a" is not reconciled can only be watched for a while: a reconcile of "a" started by
    // these changes would have begun no later than the one of "b" (concurrency 4) and written
    // its status within this window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let w = h.widgets.get("a").await.unwrap();
    assert_eq!(
        ready_reason(&w),
        Some(("True".into(), "Succeeded".into())),
        "suspended object was reconciled"
    );
    assert_ne!(
        w.status.as_ref().unwrap().last_handled_reconcile_at.as_deref(),
        Some("while-suspended")
    );
    patch_spec(&h, "a", serde_json::json!({"suspend": false})).await;
    testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w) == Some(("False".into(), "InvalidSpec".into()))
    })
    .await;
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn stalled_errors_set_stalled_and_observed_generation_without_retrying() {
    let h = harness("fw-stalled").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", "stalled"))
        .await
        .unwrap();
    let w = testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        conditions::is_true(&conds(w), "Stalled")
    })
    .await;
    let c = conds(&w);
    assert_eq!(ready_reason(&w), Some(("False".into(), "InvalidSpec".into())));
    assert_eq!(
        conditions::get(&c, "Ready").unwrap().message,
        "widget asked to stall"
    );
    assert!(conditions::get(&c, "Reconciling").is_none());
    assert_eq!(
        w.status.as_ref().unwrap().observed_generation,
        w.metadata.generation
    );
    assert!(check_kstatus(&c, &[]).is_empty(), "{c:?}");
    // A warning event names the reason, with Flux's reporting controller.
    testing::wait_for_event(&h.client, &h.ns, T, |e| {
        e.reason.as_deref() == Some("InvalidSpec")
            && e.type_.as_deref() == Some("Warning")
            && e.reporting_controller.as_deref() == Some("widget-controller")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("a")
    })
    .await;
    // Fixing the spec recovers: Stalled goes away, and a Normal event carries the revision.
    patch_spec(&h, "a", serde_json::json!({"outcome": ""})).await;
    let w = testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(conditions::get(&conds(&w), "Stalled").is_none());
    testing::wait_for_event(&h.client, &h.ns, T, |e| {
        e.reason.as_deref() == Some("Succeeded")
            && e.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("test.driftless.dev/revision"))
                .map(String::as_str)
                == Some("v1@sha1:0123")
    })
    .await;
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn transient_errors_retry_with_progressing_with_retry() {
    let h = harness("fw-transient").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", "transient"))
        .await
        .unwrap();
    let w = testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        conditions::get(&conds(w), "Reconciling").is_some_and(|c| c.reason == "ProgressingWithRetry")
    })
    .await;
    assert_eq!(ready_reason(&w), Some(("False".into(), "ExternalFailure".into())));
    assert_eq!(
        w.status.as_ref().unwrap().observed_generation,
        Some(-1),
        "transient must not observe the generation"
    );
    assert!(check_kstatus(&conds(&w), &[]).is_empty());
    // Retries keep going: once the cause is gone, the object recovers without a new request.
    patch_spec(&h, "a", serde_json::json!({"outcome": ""})).await;
    testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    let text = h.metrics.encode();
    assert!(
        text.contains("gotk_reconcile_failures_total{kind=\"Widget\",reason=\"ExternalFailure\"}"),
        "{text}"
    );
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn waiting_keeps_reconciling_without_observing_the_generation() {
    let h = harness("fw-waiting").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", "waiting"))
        .await
        .unwrap();
    let w = testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w) == Some(("False".into(), "DependencyNotReady".into()))
    })
    .await;
    let c = conds(&w);
    assert_eq!(
        conditions::get(&c, "Reconciling").map(|c| c.reason.as_str()),
        Some("Progressing")
    );
    assert_eq!(
        conditions::get(&c, "Reconciling").map(|c| c.message.as_str()),
        Some("waiting for a widget dependency")
    );
    assert_eq!(w.status.as_ref().unwrap().observed_generation, Some(-1));
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn periodic_reconciles_of_an_unchanged_object_write_nothing() {
    let h = harness("fw-noop").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", ""))
        .await
        .unwrap();
    let w = testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    let rv = w.resource_version();
    // The interval is 1s: wait for three more finished reconciles (the one that wrote `rv` may
    // still be counted among them), then none of them may have written.
    let before = reconcile_count(&h.metrics, "a");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let count = reconcile_count(&h.metrics, "a");
        if count >= before + 3.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected periodic reconciles: {count} finished after {T:?}, {before} before"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = h.widgets.get("a").await.unwrap();
    assert_eq!(after.resource_version(), rv, "a no-op reconcile wrote the object");
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn deletion_runs_cleanup_then_removes_the_finalizer() {
    let h = harness("fw-delete").await;
    h.widgets
        .create(&PostParams::default(), &widget("a", ""))
        .await
        .unwrap();
    testing::wait_for(&h.widgets, "a", T, |w: &Widget| {
        ready_reason(w).is_some_and(|r| r.0 == "True")
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.ns);
    assert!(cms.get_opt("widget-a").await.unwrap().is_some());
    h.widgets.delete("a", &DeleteParams::default()).await.unwrap();
    testing::wait_gone(&h.widgets, "a", T).await;
    assert!(
        cms.get_opt("widget-a").await.unwrap().is_none(),
        "cleanup did not run"
    );
    testing::delete_namespace(&h.client, &h.ns).await;
}

#[tokio::test]
#[ignore = "needs the testenv control plane (hack/test.sh)"]
async fn a_loop_that_never_listed_its_kind_stops_at_once_on_shutdown() {
    let client = testing::client().await;
    testing::install_crds(&client, &[widget_crd()]).await;
    let ns = testing::namespace(&client, "unlisted").await;
    // An identity that may not list Widgets: the loop's first list never comes in (as when the
    // kind's CRD is not installed).
    let nobody = testing::client_as("driftless-test-nobody").await;
    assert!(
        Api::<Widget>::namespaced(nobody.clone(), &ns)
            .list(&Default::default())
            .await
            .is_err(),
        "the identity may not list Widgets"
    );
    let ctrl = Arc::new(KindController::new(
        WidgetReconciler {
            identity: "in-process".into(),
        },
        nobody,
        "widget-controller",
        "widget-controller",
        Metrics::new(),
        LoopSettings {
            namespace: Some(ns.clone()),
            ..LoopSettings::default()
        },
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(ctrl.run(async move {
        let _ = stopped.await;
    }));
    // Long enough for its list to be refused a few times (the apiserver answers in
    // milliseconds): shutdown comes to a loop that is retrying, not to one not yet started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(()).expect("the loop runs");
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the loop stopped within 10 s of shutdown")
        .expect("the loop did not panic");
    testing::delete_namespace(&client, &ns).await;
}
