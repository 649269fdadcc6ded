//! Where a release's chart comes from: the HelmChart a `chart` template makes (created and
//! owned by the HelmRelease, named `<namespace>-<name>` in the source's namespace) or the
//! source `chartRef` names; and the chart itself once downloaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use driftless_api::helm::{FIELD_MANAGER, HelmRelease, reasons as helm_reasons};
use driftless_api::meta::Artifact;
use driftless_api::meta::condition_types::READY;
use driftless_api::source::HelmChart;
use driftless_runtime::reconcile::ReconcileError;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

/// `kind`, namespace and name of a chart source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The source the release's chart artifact comes from.
pub fn source_key(hr: &HelmRelease) -> Option<SourceKey> {
    let own = hr.namespace().unwrap_or_default();
    if let Some(template) = &hr.spec.chart {
        let namespace = template
            .spec
            .source_ref
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| own.clone());
        return Some(SourceKey {
            kind: "HelmChart".into(),
            namespace,
            name: format!("{own}-{}", hr.name_any()),
        });
    }
    hr.spec.chart_ref.as_ref().map(|r| SourceKey {
        kind: r.kind.clone(),
        namespace: r.namespace.clone().filter(|n| !n.is_empty()).unwrap_or(own),
        name: r.name.clone(),
    })
}

/// The HelmChart of a `chart` template, as applied.
pub fn helm_chart_of(hr: &HelmRelease, key: &SourceKey) -> Option<serde_json::Value> {
    let template = hr.spec.chart.as_ref()?;
    let spec = &template.spec;
    let metadata = template.metadata.clone().unwrap_or_default();
    let mut chart_spec = serde_json::json!({
        "chart": spec.chart,
        "version": spec.version.clone().unwrap_or_else(|| "*".into()),
        "sourceRef": {"kind": spec.source_ref.kind, "name": spec.source_ref.name},
        "interval": spec.interval.clone().unwrap_or_else(|| hr.spec.interval.clone()),
        "reconcileStrategy": spec.reconcile_strategy.clone().unwrap_or_else(|| "ChartVersion".into()),
    });
    let fields = chart_spec.as_object_mut()?;
    if let Some(api_version) = &spec.source_ref.api_version {
        fields["sourceRef"]["apiVersion"] = api_version.clone().into();
    }
    if let Some(files) = &spec.values_files {
        fields.insert("valuesFiles".into(), serde_json::json!(files));
    }
    if let Some(ignore) = spec.ignore_missing_values_files {
        fields.insert("ignoreMissingValuesFiles".into(), ignore.into());
    }
    if let Some(verify) = &spec.verify {
        fields.insert("verify".into(), serde_json::to_value(verify).ok()?);
    }
    Some(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {
            "name": key.name,
            "namespace": key.namespace,
            "labels": metadata.labels.unwrap_or_default(),
            "annotations": metadata.annotations.unwrap_or_default(),
        },
        "spec": chart_spec,
    }))
}

/// Applies the template's HelmChart (server-side, as `helm-controller`), deleting the one a
/// previous spec made elsewhere; then waits for it to be ready at its generation. Its artifact
/// then (None without a template).
pub async fn ensure_helm_chart(
    client: &Client,
    hr: &HelmRelease,
    key: &SourceKey,
    requeue: Duration,
) -> Result<Option<Artifact>, ReconcileError> {
    let Some(desired) = helm_chart_of(hr, key) else {
        return Ok(None);
    };
    let previous = hr.status.as_ref().and_then(|s| s.helm_chart.clone());
    let current = format!("{}/{}", key.namespace, key.name);
    if let Some(previous) = previous.filter(|p| *p != current) {
        delete_helm_chart(client, &previous).await?;
    }
    let api: Api<HelmChart> = Api::namespaced(client.clone(), &key.namespace);
    let applied = api
        .patch(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|e| {
            ReconcileError::transient(
                helm_reasons::SOURCE_NOT_READY,
                format!("failed to apply HelmChart '{current}': {e}"),
            )
        })?;
    let status = applied.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == READY);
    let observed = status.observed_generation == applied.metadata.generation;
    if let Some(artifact) = status.artifact.clone()
        && observed
        && ready.is_some_and(|c| c.status == "True")
    {
        return Ok(Some(artifact));
    }
    let why = ready
        .filter(|c| observed && c.status == "False")
        .map(|c| c.message.clone())
        .unwrap_or_else(|| "the chart is not ready yet".into());
    Err(ReconcileError::waiting(
        helm_reasons::SOURCE_NOT_READY,
        format!("HelmChart '{current}' is not ready: {why}"),
        requeue,
    ))
}

/// Deletes the HelmChart `namespace/name` a HelmRelease created; gone already is fine.
pub async fn delete_helm_chart(client: &Client, namespaced_name: &str) -> Result<(), ReconcileError> {
    let Some((namespace, name)) = namespaced_name.split_once('/') else {
        return Ok(());
    };
    let api: Api<HelmChart> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(ReconcileError::transient(
            driftless_api::meta::reasons::FAILED,
            format!("failed to delete HelmChart '{namespaced_name}': {e}"),
        )),
    }
}

pub use driftless_chart::metadata::{ChartFile, locate};

/// The CRDs of a chart's `crds/` directory and of its unpacked subcharts' (`charts/*/crds/`),
/// in file-name order (`.yaml`, `.yml`, `.json`).
pub fn crds(chart_dir: &Path) -> Result<Vec<serde_json::Value>, String> {
    let mut dirs = vec![chart_dir.join("crds")];
    if let Ok(entries) = std::fs::read_dir(chart_dir.join("charts")) {
        let mut subcharts: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("crds")).collect();
        subcharts.sort();
        dirs.extend(subcharts);
    }
    let mut objects = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let documents = crate::release::manifest_objects(&text)
                .map_err(|e| format!("invalid CRD file {}: {e}", file.display()))?;
            objects.extend(documents);
        }
    }
    Ok(objects)
}
