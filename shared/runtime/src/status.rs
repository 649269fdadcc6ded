//! Writes status with server-side apply, only when it changed.
//!
//! An apply that changes nothing is meant to be a no-op, but apiserver issues (kubernetes
//! #124605, #121404, #95460) show re-applies that still bump `resourceVersion` when a value does
//! not round-trip; comparing desired and last-written status first avoids the write entirely,
//! and with it a self-triggered watch event.

use crate::object::ToolkitObject;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};

/// Applies the status subresource of objects of one kind with one field manager.
#[derive(Clone)]
pub struct StatusWriter {
    client: Client,
    field_manager: String,
}

impl StatusWriter {
    /// A writer owning status fields as `field_manager` (Flux: `source-controller`,
    /// `gotk-kustomize-controller`, …).
    pub fn new(client: Client, field_manager: &str) -> Self {
        Self {
            client,
            field_manager: field_manager.to_string(),
        }
    }

    /// Applies `status` unless it equals `current`. Returns whether a write happened.
    pub async fn apply<K: ToolkitObject>(
        &self,
        obj: &K,
        current: Option<&K::Status>,
        status: &K::Status,
    ) -> Result<bool, kube::Error> {
        if current == Some(status) {
            return Ok(false);
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(&self.field_manager).force(),
            &Patch::Apply(&body),
        )
        .await?;
        Ok(true)
    }
}
