//! kustomize's legacy output order: a fixed ranking of kinds, then group/version/kind, then
//! namespace and name.

use std::cmp::Ordering;

use crate::kustomization::LegacySortOptions;
use crate::resource::{Gvk, ResId, Resource};

const ORDER_FIRST: [&str; 22] = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: [&str; 2] = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"];

pub fn legacy(resources: &mut Vec<Resource>, options: Option<&LegacySortOptions>) {
    let (first, last): (Vec<&str>, Vec<&str>) = match options {
        Some(o) => (
            o.order_first.iter().map(String::as_str).collect(),
            o.order_last.iter().map(String::as_str).collect(),
        ),
        None => (ORDER_FIRST.to_vec(), ORDER_LAST.to_vec()),
    };
    let rank = |kind: &str| -> i64 {
        if let Some(i) = first.iter().position(|k| *k == kind) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|k| *k == kind) {
            return 1 + i as i64;
        }
        0
    };
    let mut keyed: Vec<(ResId, Resource)> = resources.drain(..).map(|r| (r.id(), r)).collect();
    keyed.sort_by(|(a, _), (b, _)| {
        if a.gvk != b.gvk {
            return gvk_order(&a.gvk, &b.gvk, rank(&a.gvk.kind), rank(&b.gvk.kind));
        }
        id_string(a).cmp(&id_string(b))
    });
    resources.extend(keyed.into_iter().map(|(_, resource)| resource));
}

fn gvk_order(a: &Gvk, b: &Gvk, rank_a: i64, rank_b: i64) -> Ordering {
    if rank_a != rank_b {
        return rank_a.cmp(&rank_b);
    }
    let ordering = gvk_string(a).cmp(&gvk_string(b));
    // Core Namespaces sort after other groups' Namespace kinds, as kustomize does.
    if a.kind == "Namespace" && b.kind == "Namespace" && (a.group.is_empty() || b.group.is_empty()) {
        return ordering.reverse();
    }
    ordering
}

fn or<'a>(value: &'a str, placeholder: &'a str) -> &'a str {
    if value.is_empty() { placeholder } else { value }
}

fn gvk_string(gvk: &Gvk) -> String {
    format!(
        "{}_{}_{}",
        or(&gvk.group, "~G"),
        or(&gvk.version, "~V"),
        or(&gvk.kind, "~K")
    )
}

fn id_string(id: &ResId) -> String {
    format!(
        "{}|{}|{}",
        gvk_string(&id.gvk),
        or(&id.namespace, "~X"),
        or(&id.name, "~N")
    )
}
