//! Step 9: what Helm stored, recorded in status after every reconcile that reached the
//! release (failures too): `history` (the newest revisions, as many as `maxHistory` keeps),
//! `inventory` (the objects of the deployed revision, hooks excluded as Helm keeps them apart)
//! and `lastReleaseRevision`.

use std::collections::BTreeMap;

use driftless_api::helm::{ReleaseSnapshot, TestHookStatus, reasons as helm_reasons};
use driftless_apply::{ObjectId, group_version};
use driftless_runtime::reconcile::ReconcileError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use crate::reconciler::{HelmReleaseReconciler, Run};
use crate::release::{self, Release};

pub async fn record(r: &HelmReleaseReconciler, run: &mut Run<'_>) -> Result<(), ReconcileError> {
    if run.workdir.is_none() {
        return Ok(());
    }
    let releases = release::history(&run.client, &run.release_namespace, &run.release_name)
        .await
        .map_err(|m| ReconcileError::transient(driftless_api::meta::reasons::FAILED, m))?;
    let keep = match run.hr.spec.max_history.unwrap_or(5) {
        n if n <= 0 => usize::MAX,
        n => n as usize,
    };
    let history: Vec<ReleaseSnapshot> = releases.iter().take(keep).map(snapshot).collect();
    run.status.history = (!history.is_empty()).then_some(history);
    run.status.last_release_revision = releases.first().map(|r| r.version);
    run.status.inventory = match releases.iter().find(|r| r.info.status == "deployed") {
        Some(deployed) => Some(inventory(r, run, deployed).await?),
        None => None,
    };
    run.releases = releases;
    Ok(())
}

/// The inventory of a revision's manifest; an object without a namespace is in the release
/// namespace when its kind is namespaced.
async fn inventory(
    r: &HelmReleaseReconciler,
    run: &Run<'_>,
    release: &Release,
) -> Result<driftless_api::meta::ResourceInventory, ReconcileError> {
    let objects = release::manifest_objects(&release.manifest)
        .map_err(|m| ReconcileError::transient(helm_reasons::INVENTORY_BUILD_FAILED, m))?;
    let mut entries = Vec::new();
    for object in &objects {
        let text = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (group, version) = group_version(&text("/apiVersion"));
        let kind = text("/kind");
        let mut namespace = text("/metadata/namespace");
        if namespace.is_empty() {
            let namespaced = r
                .discovery
                .resolve(&run.client, &group, &version, &kind)
                .await
                .map(|(_, namespaced)| namespaced)
                .unwrap_or(true);
            if namespaced {
                namespace = release.namespace.clone();
            }
        }
        let id = ObjectId {
            namespace,
            name: text("/metadata/name"),
            group,
            kind,
        };
        entries.push((id, version));
    }
    Ok(driftless_apply::inventory(entries))
}

fn time(text: Option<&str>) -> Option<Time> {
    text.and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(Time)
}

/// A status snapshot of one stored revision.
fn snapshot(release: &Release) -> ReleaseSnapshot {
    let epoch = || Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let tests: BTreeMap<String, TestHookStatus> = release
        .test_hooks()
        .filter_map(|h| {
            let run = h.last_run.as_ref().filter(|r| r.started_at.is_some())?;
            Some((
                h.name.clone(),
                TestHookStatus {
                    last_started: time(run.started_at.as_deref()),
                    last_completed: time(run.completed_at.as_deref()),
                    phase: Some(run.phase.clone()).filter(|p| !p.is_empty()),
                },
            ))
        })
        .collect();
    ReleaseSnapshot {
        api_version: None,
        digest: release.digest.clone(),
        name: release.name.clone(),
        namespace: release.namespace.clone(),
        version: release.version,
        status: release.info.status.clone(),
        action: None,
        chart_name: release.chart_name().to_string(),
        chart_version: release.chart_version().to_string(),
        app_version: release.app_version().map(str::to_string),
        config_digest: release.config_digest(),
        first_deployed: time(release.info.first_deployed.as_deref()).unwrap_or_else(epoch),
        last_deployed: time(release.info.last_deployed.as_deref()).unwrap_or_else(epoch),
        deleted: time(release.info.deleted.as_deref()),
        test_hooks: (!tests.is_empty()).then_some(tests),
        oci_digest: None,
    }
}
