//! Field-manager takeover: fields that `kubectl` (and the controller's own Update entries) own
//! move to the controller's Apply entry, as Flux's cleanup of field managers does.

use serde_json::Value;

/// Field managers whose fields the controller takes over, as Flux's cleanup does: objects
/// created with `kubectl apply` or `kubectl create` keep fields owned by those managers, and
/// fields removed from Git would then never be removed from the cluster.
fn taken_over(entry: &Value, manager: &str) -> bool {
    if entry
        .get("subresource")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return false;
    }
    let operation = entry.get("operation").and_then(Value::as_str).unwrap_or_default();
    match entry.get("manager").and_then(Value::as_str).unwrap_or_default() {
        "kubectl" => true,
        "before-first-apply" => operation == "Update",
        m => m == manager && operation == "Update",
    }
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

pub(crate) fn has_taken_over_managers(object: &Value, manager: &str) -> bool {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| taken_over(e, manager)))
}

/// The object's managed fields with the taken-over managers' fields moved to `manager`'s Apply
/// entry, or None when there is nothing to take over.
pub(crate) fn take_over_fields(live: &Value, manager: &str, desired: &Value) -> Option<Value> {
    if !has_taken_over_managers(live, manager) {
        return None;
    }
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    let api_version = desired.get("apiVersion").cloned().unwrap_or(Value::Null);
    let mut merged = Value::Object(Default::default());
    let mut kept = Vec::new();
    for entry in entries {
        let own_apply = entry.get("manager").and_then(Value::as_str) == Some(manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply");
        if taken_over(entry, manager) || own_apply {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubectl_managers_are_taken_over() {
        let live = serde_json::json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {"f:b": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:status": {}}},
        ]}});
        let desired = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        let fields = take_over_fields(&live, "kustomize-controller", &desired).unwrap();
        let fields = fields.as_array().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0]["manager"], "kube-controller-manager");
        assert_eq!(fields[1]["manager"], "kustomize-controller");
        assert_eq!(
            fields[1]["fieldsV1"],
            serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        let clean = serde_json::json!({"metadata": {"managedFields": [fields[1].clone()]}});
        assert!(take_over_fields(&clean, "kustomize-controller", &desired).is_none());
    }
}
