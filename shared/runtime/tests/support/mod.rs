//! A test-only kind, `Widget` (group `test.driftless.dev`), and a reconciler whose outcome the
//! spec chooses, so each path of the framework can be driven from a test.

#![allow(dead_code)]

use driftless_api::{impl_reconcile_status, meta::Condition};
use driftless_runtime::{
    object::ToolkitObject,
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, CustomResource, CustomResourceExt, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Spec of a test widget.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "test.driftless.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct WidgetSpec {
    pub interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// "" (succeed), "stalled", "transient" or "waiting".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}
impl_reconcile_status!(WidgetStatus);

impl ToolkitObject for Widget {
    type Status = WidgetStatus;
    fn status(&self) -> Option<&WidgetStatus> {
        self.status.as_ref()
    }
    fn suspended(&self) -> bool {
        self.spec.suspend.unwrap_or(false)
    }
    fn interval_str(&self) -> Option<&str> {
        Some(&self.spec.interval)
    }
    fn retry_interval_str(&self) -> Option<&str> {
        self.spec.retry_interval.as_deref()
    }
}

/// The Widget CRD, with Flux's status default.
pub fn widget_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = Widget::crd();
    let mut value = serde_json::to_value(&crd).expect("crd json");
    value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["default"] =
        serde_json::json!({"observedGeneration": -1});
    crd = serde_json::from_value(value).expect("crd");
    crd
}

/// Reconciles widgets: on success it owns a ConfigMap `widget-<name>` (deleted by cleanup) and
/// says who reconciled it in the Ready message.
pub struct WidgetReconciler {
    pub identity: String,
}

impl Reconciler for WidgetReconciler {
    type Kind = Widget;

    async fn apply(
        &self,
        obj: &Widget,
        _status: &mut WidgetStatus,
        ctx: &ReconcileContext<Widget>,
    ) -> Result<Success, ReconcileError> {
        match obj.spec.outcome.as_deref().unwrap_or("") {
            "stalled" => return Err(ReconcileError::stalled("InvalidSpec", "widget asked to stall")),
            "transient" => {
                return Err(ReconcileError::transient(
                    "ExternalFailure",
                    "widget asked to fail",
                ));
            }
            "waiting" => {
                return Err(ReconcileError::waiting(
                    "DependencyNotReady",
                    "waiting for a widget dependency",
                    Duration::from_secs(2),
                ));
            }
            _ => {}
        }
        let ns = obj.namespace().unwrap_or_default();
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("widget-{}", obj.name_any())},
            "data": {"owner": obj.name_any()}
        });
        cms.patch(
            &format!("widget-{}", obj.name_any()),
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(|e| ReconcileError::transient("ApplyFailed", e.to_string()))?;
        Ok(
            Success::new("Succeeded", format!("reconciled by {}", self.identity))
                .with_revision("v1@sha1:0123"),
        )
    }

    async fn cleanup(&self, obj: &Widget, ctx: &ReconcileContext<Widget>) -> Result<(), ReconcileError> {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        match cms
            .delete(&format!("widget-{}", obj.name_any()), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(ReconcileError::transient("DeleteFailed", e.to_string())),
        }
    }
}
