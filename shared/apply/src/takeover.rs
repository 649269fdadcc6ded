//! Field-manager takeover: fields that `kubectl` (and the controller's own Update entries, and
//! the managers of `--override-manager`) own move to the controller's Apply entry, as Flux's
//! cleanup of field managers does; with `MigrateAPIVersion`, the controller's own Apply entry
//! recorded at another API version is moved to the applied one.

use serde_json::Value;

use crate::ssa::ApplyOptions;

/// Field managers whose fields the controller takes over, as Flux's cleanup does: objects
/// created with `kubectl apply` or `kubectl create` keep fields owned by those managers, and
/// fields removed from Git would then never be removed from the cluster.
fn taken_over(entry: &Value, options: &ApplyOptions<'_>) -> bool {
    if entry
        .get("subresource")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return false;
    }
    let operation = entry.get("operation").and_then(Value::as_str).unwrap_or_default();
    // Managers match by prefix, as Flux's `matchFieldManager`: `kubectl` covers
    // `kubectl-client-side-apply`, `kubectl-edit`, `kubectl-patch`.
    let manager = entry.get("manager").and_then(Value::as_str).unwrap_or_default();
    if manager.starts_with("kubectl") {
        return true;
    }
    if manager.starts_with("before-first-apply")
        || (!options.manager.is_empty() && manager.starts_with(options.manager))
    {
        return operation == "Update";
    }
    options
        .override_managers
        .iter()
        .any(|o| !o.is_empty() && manager.starts_with(o.as_str()))
}

/// Union of two `fieldsV1` trees.
fn merge_fields(into: &mut Value, from: &Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (key, value) in from {
            merge_fields(
                into.entry(key.clone())
                    .or_insert_with(|| Value::Object(Default::default())),
                value,
            );
        }
    }
}

/// Whether `object` has fields to take over.
pub(crate) fn has_taken_over_managers(object: &Value, options: &ApplyOptions<'_>) -> bool {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| taken_over(e, options)))
}

/// The object's managed fields with the taken-over managers' fields moved to `manager`'s Apply
/// entry, or None when there is nothing to take over.
pub(crate) fn take_over_fields(live: &Value, options: &ApplyOptions<'_>, desired: &Value) -> Option<Value> {
    let manager = options.manager;
    let api_version = desired.get("apiVersion").cloned().unwrap_or(Value::Null);
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    if !entries.iter().any(|e| taken_over(e, options)) {
        return None;
    }
    let mut merged = Value::Object(Default::default());
    let mut kept = Vec::new();
    for entry in entries {
        let own_apply = entry.get("manager").and_then(Value::as_str) == Some(manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply");
        if taken_over(entry, options) || own_apply {
            merge_fields(&mut merged, entry.get("fieldsV1").unwrap_or(&Value::Null));
        } else {
            kept.push(entry.clone());
        }
    }
    kept.push(serde_json::json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "fieldsType": "FieldsV1",
        "fieldsV1": merged,
    }));
    Some(Value::Array(kept))
}

/// With `MigrateAPIVersion`, the live object's managed fields all moved to the applied API
/// version (every manager's, as Flux's `PatchMigrateToVersion`), or None when they are there
/// already. Written before the dry-run: any entry at a version a CRD no longer serves makes the
/// apply fail with "field not declared in schema".
pub(crate) fn migrated_fields(live: &Value, options: &ApplyOptions<'_>, desired: &Value) -> Option<Value> {
    if !options.migrate_api_version {
        return None;
    }
    let api_version = desired.get("apiVersion")?;
    let mut entries = live.pointer("/metadata/managedFields")?.as_array()?.clone();
    let mut migrated = false;
    for entry in &mut entries {
        if entry.get("apiVersion") != Some(api_version) {
            entry["apiVersion"] = api_version.clone();
            migrated = true;
        }
    }
    migrated.then_some(Value::Array(entries))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubectl_managers_are_taken_over() {
        let live = serde_json::json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:c": {}}}},
            {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {}}},
        ]}});
        let desired = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let options = ApplyOptions {
            manager: "kustomize-controller",
            ..ApplyOptions::default()
        };
        let fields = take_over_fields(&live, &options, &desired).unwrap();
        let fields = fields.as_array().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0]["manager"], "kube-controller-manager");
        assert_eq!(fields[1]["manager"], "kustomize-controller");
        assert_eq!(
            fields[1]["fieldsV1"],
            serde_json::json!({"f:data": {"f:a": {}, "f:b": {}, "f:c": {}}})
        );
        let clean = serde_json::json!({"metadata": {"managedFields": [fields[1].clone()]}});
        assert!(take_over_fields(&clean, &options, &desired).is_none());
    }

    /// `--override-manager` adds managers to take over; `MigrateAPIVersion` moves the
    /// controller's own entry recorded at an older version to the applied one.
    #[test]
    fn override_managers_and_api_version_migration() {
        let live = serde_json::json!({"metadata": {"managedFields": [
            {"manager": "helm", "operation": "Update", "apiVersion": "example.com/v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:a": {}}}},
            {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "example.com/v1beta1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:b": {}}}},
        ]}});
        let desired = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget"});
        let plain = ApplyOptions {
            manager: "kustomize-controller",
            ..ApplyOptions::default()
        };
        assert!(take_over_fields(&live, &plain, &desired).is_none());
        let overrides = ["helm".to_string()];
        let overriding = ApplyOptions {
            override_managers: &overrides,
            ..ApplyOptions {
                manager: "kustomize-controller",
                ..ApplyOptions::default()
            }
        };
        let fields = take_over_fields(&live, &overriding, &desired).unwrap();
        assert_eq!(
            fields,
            serde_json::json!([{"manager": "kustomize-controller", "operation": "Apply",
                "apiVersion": "example.com/v1", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:a": {}, "f:b": {}}}}])
        );
        assert!(migrated_fields(&live, &plain, &desired).is_none());
        let migrating = ApplyOptions {
            migrate_api_version: true,
            ..ApplyOptions {
                manager: "kustomize-controller",
                ..ApplyOptions::default()
            }
        };
        let fields = migrated_fields(&live, &migrating, &desired).unwrap();
        assert_eq!(fields[0], live["metadata"]["managedFields"][0], "already at v1");
        assert_eq!(fields[1]["apiVersion"], "example.com/v1");
        assert_eq!(fields[1]["fieldsV1"], serde_json::json!({"f:spec": {"f:b": {}}}));
    }
}
