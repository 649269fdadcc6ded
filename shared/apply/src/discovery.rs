//! API resources by group/version/kind, discovered once per kind and reused across reconciles.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::wait::{Condition, conditions};

use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client};
use serde_json::Value;

use crate::object::{ObjectId, field_text, group_version};
use crate::ssa::Desired;

/// Longest wait for applied CRDs to be served before the stages that use them.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Group, version and kind.
type GvkKey = (String, String, String);

/// API resources by group/version/kind, discovered once and reused across reconciles.
#[derive(Default)]
pub struct Discovery {
    cache: Mutex<HashMap<GvkKey, (ApiResource, ApiCapabilities)>>,
}

impl Discovery {
    pub async fn resolve(
        &self,
        client: &Client,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), String> {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if let Some((resource, caps)) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok((resource, caps.scope == Scope::Namespaced));
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| {
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            format!("no matches for kind \"{kind}\" in version \"{api_version}\": {e}")
        })?;
        let namespaced = caps.scope == Scope::Namespaced;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (resource.clone(), caps));
        }
        Ok((resource, namespaced))
    }

    /// Where `object` goes: its id, API resource and scope. A namespaced object without a
    /// namespace goes to `default`; a cluster-scoped one loses any namespace it names.
    pub async fn describe(&self, client: &Client, mut object: Value) -> Result<Desired, String> {
        let api_version = field_text(&object, "/apiVersion");
        let kind = field_text(&object, "/kind");
        let (group, version) = group_version(&api_version);
        let (resource, namespaced) = self.resolve(client, &group, &version, &kind).await?;
        let name = field_text(&object, "/metadata/name");
        let mut namespace = field_text(&object, "/metadata/namespace");
        if namespaced && namespace.is_empty() {
            namespace = "default".into();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("namespace".into(), Value::String(namespace.clone()));
            }
        }
        if !namespaced {
            namespace.clear();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("namespace");
            }
        }
        Ok(Desired {
            id: ObjectId {
                namespace,
                name,
                group,
                kind,
            },
            version,
            object,
            resource,
            namespaced,
        })
    }

    /// Waits (up to 30 s in all) for new or changed CRDs to be established, then forgets what
    /// was discovered so the next stage sees their kinds.
    pub async fn wait_established(&self, client: &Client, definitions: &[ObjectId]) {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let deadline = tokio::time::Instant::now() + CRD_ESTABLISHED_TIMEOUT;
        let established =
            |crd: Option<&CustomResourceDefinition>| conditions::is_crd_established().matches_object(crd);
        for id in definitions {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // One that is not established in time is left to the next stage's dry-run to report.
            crate::wait::until(api.clone(), &id.name, established, left).await;
        }
        self.invalidate();
    }

    /// Forgets what was learned, after CRDs changed.
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }
}

/// The API of one kind, in `namespace` when the kind is namespaced.
pub fn api(client: &Client, resource: &ApiResource, namespaced: bool, namespace: &str) -> Api<DynamicObject> {
    if namespaced {
        Api::namespaced_with(client.clone(), namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    }
}
