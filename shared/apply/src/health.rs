//! Health, with kstatus rules for the built-in kinds, the Ready condition for
//! everything else, and `healthCheckExprs` (CEL) for the kinds they name.

use driftless_api::meta::CustomHealthCheck;
use serde_json::Value;

/// Compiled `healthCheckExprs` for one kind. The object's top-level fields (`metadata`, `spec`,
/// `status`, …) are the variables, as in Flux.
pub struct CustomHealth {
    api_version: String,
    kind: String,
    current: cel::Program,
    in_progress: Option<cel::Program>,
    failed: Option<cel::Program>,
}

/// Compiles the expressions; an invalid one is named in the error.
pub fn compile(checks: &[CustomHealthCheck]) -> Result<Vec<CustomHealth>, String> {
    let program = |expr: &str, field: &str, check: &CustomHealthCheck| {
        cel::Program::compile(expr).map_err(|e| {
            format!(
                "failed to parse the '{field}' expression of {}/{}: {e}",
                check.api_version, check.kind
            )
        })
    };
    checks
        .iter()
        .map(|check| {
            Ok(CustomHealth {
                api_version: check.api_version.clone(),
                kind: check.kind.clone(),
                current: program(&check.current, "current", check)?,
                in_progress: check
                    .in_progress
                    .as_deref()
                    .map(|e| program(e, "inProgress", check))
                    .transpose()?,
                failed: check
                    .failed
                    .as_deref()
                    .map(|e| program(e, "failed", check))
                    .transpose()?,
            })
        })
        .collect()
}

/// Whether a program is true for the object; evaluation errors (a field not there yet) are
/// "not true".
fn holds(program: &cel::Program, context: &cel::Context<'_, '_>) -> bool {
    matches!(program.execute(context), Ok(cel::Value::Bool(true)))
}

/// The health of a live object: a matching custom check (evaluated inProgress → failed →
/// current, as Flux does), else the built-in rules.
pub fn compute_with(object: &Value, custom: &[CustomHealth]) -> Health {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(check) = custom
        .iter()
        .find(|c| c.api_version == api_version && (c.kind.is_empty() || c.kind == kind))
    else {
        return compute(object);
    };
    let mut context = cel::Context::default();
    if let Some(fields) = object.as_object() {
        for (name, value) in fields {
            if let Ok(value) = cel::to_value(value) {
                context.add_variable_from_value(name.clone(), value);
            }
        }
    }
    if check.in_progress.as_ref().is_some_and(|p| holds(p, &context)) {
        return Health::InProgress("the inProgress expression is true".into());
    }
    if check.failed.as_ref().is_some_and(|p| holds(p, &context)) {
        return Health::Failed("the failed expression is true".into());
    }
    if holds(&check.current, &context) {
        return Health::Current;
    }
    Health::InProgress("no expression is true yet".into())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Current,
    InProgress(String),
    Failed(String),
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_status<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    condition(object, type_)?.get("status")?.as_str()
}

fn condition_message(object: &Value, type_: &str) -> String {
    condition(object, type_)
        .and_then(|c| c.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The kstatus of a live object.
pub fn compute(object: &Value) -> Health {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let generation = int(object, "/metadata/generation");
    let observed = int(object, "/status/observedGeneration");
    if let (Some(generation), Some(observed)) = (generation, observed)
        && observed < generation
    {
        return Health::InProgress("status not observed for the latest generation".into());
    }
    let want = |pointer: &str| int(object, pointer).unwrap_or(1);
    let have = |pointer: &str| int(object, pointer).unwrap_or(0);
    match kind {
        "Deployment" => {
            if condition(object, "Progressing")
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str)
                == Some("ProgressDeadlineExceeded")
            {
                return Health::Failed("Progress deadline exceeded".into());
            }
            let replicas = want("/spec/replicas");
            if observed.is_none() {
                return Health::InProgress("waiting for the rollout to start".into());
            }
            if have("/status/updatedReplicas") < replicas {
                return Health::InProgress(format!(
                    "Updated: {}/{replicas}",
                    have("/status/updatedReplicas")
                ));
            }
            if have("/status/replicas") > have("/status/updatedReplicas") {
                return Health::InProgress("Pending termination of old replicas".into());
            }
            if have("/status/availableReplicas") < replicas {
                return Health::InProgress(format!(
                    "Available: {}/{replicas}",
                    have("/status/availableReplicas")
                ));
            }
            if have("/status/readyReplicas") < replicas {
                return Health::InProgress(format!("Ready: {}/{replicas}", have("/status/readyReplicas")));
            }
            // As kstatus: the controller must also say the new ReplicaSet is available and the
            // Deployment is Available (replica counts alone pass before it has said so). Without
            // a progress deadline (the maximum) it never says the former.
            let progressed = int(object, "/spec/progressDeadlineSeconds") == Some(i64::from(i32::MAX))
                || condition(object, "Progressing").is_some_and(|c| {
                    c.get("status").and_then(Value::as_str) == Some("True")
                        && c.get("reason").and_then(Value::as_str) == Some("NewReplicaSetAvailable")
                });
            if !progressed {
                return Health::InProgress("ReplicaSet not Available".into());
            }
            if condition_status(object, "Available") != Some("True") {
                return Health::InProgress("Deployment not Available".into());
            }
            Health::Current
        }
        "StatefulSet" => {
            let replicas = want("/spec/replicas");
            if have("/status/readyReplicas") < replicas {
                return Health::InProgress(format!("Ready: {}/{replicas}", have("/status/readyReplicas")));
            }
            let current = object.pointer("/status/currentRevision");
            if current.is_some() && current != object.pointer("/status/updateRevision") {
                return Health::InProgress("rollout in progress".into());
            }
            Health::Current
        }
        "DaemonSet" => {
            let desired = have("/status/desiredNumberScheduled");
            if observed.is_none()
                || have("/status/numberAvailable") < desired
                || have("/status/updatedNumberScheduled") < desired
            {
                return Health::InProgress(format!(
                    "Available: {}/{desired}",
                    have("/status/numberAvailable")
                ));
            }
            Health::Current
        }
        "ReplicaSet" | "ReplicationController" => {
            let replicas = want("/spec/replicas");
            if have("/status/availableReplicas") < replicas {
                return Health::InProgress(format!(
                    "Available: {}/{replicas}",
                    have("/status/availableReplicas")
                ));
            }
            Health::Current
        }
        "Job" => {
            if condition_status(object, "Failed") == Some("True") {
                return Health::Failed(condition_message(object, "Failed"));
            }
            if condition_status(object, "Complete") == Some("True") {
                return Health::Current;
            }
            Health::InProgress("Job in progress".into())
        }
        "Pod" => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Health::Current,
            Some("Failed") => Health::Failed("Pod failed".into()),
            _ if condition_status(object, "Ready") == Some("True") => Health::Current,
            _ => Health::InProgress("Pod not ready".into()),
        },
        "PersistentVolumeClaim" => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Health::Current,
            _ => Health::InProgress("PVC is not Bound".into()),
        },
        "Namespace" => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Terminating") => Health::InProgress("Namespace is terminating".into()),
            _ => Health::Current,
        },
        "CustomResourceDefinition" => match condition_status(object, "Established") {
            Some("True") => Health::Current,
            _ => Health::InProgress("CRD is not established".into()),
        },
        "Service" => {
            let load_balancer = object.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
            let ingress = object
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|i| !i.is_empty());
            if load_balancer && !ingress {
                return Health::InProgress("waiting for the load balancer".into());
            }
            Health::Current
        }
        _ => {
            // A kind with no `status.observedGeneration` (ArtifactGenerator) says which
            // generation its Ready condition speaks of, as flux's readiness check reads it.
            let ready_observed = condition(object, "Ready")
                .and_then(|c| c.get("observedGeneration"))
                .and_then(Value::as_i64);
            if let (None, Some(generation), Some(ready_observed)) = (observed, generation, ready_observed)
                && ready_observed < generation
            {
                return Health::InProgress("status not observed for the latest generation".into());
            }
            if condition_status(object, "Stalled") == Some("True") {
                return Health::Failed(condition_message(object, "Stalled"));
            }
            match condition_status(object, "Ready") {
                Some("True") | None => {
                    if condition_status(object, "Reconciling") == Some("True") {
                        Health::InProgress(condition_message(object, "Reconciling"))
                    } else {
                        Health::Current
                    }
                }
                _ => Health::InProgress(condition_message(object, "Ready")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_condition_of_an_older_generation_is_in_progress_without_observed_generation() {
        let generator = |condition_generation: i64| {
            serde_json::json!({"apiVersion": "source.extensions.fluxcd.io/v1beta1", "kind": "ArtifactGenerator",
                "metadata": {"name": "g", "generation": 3},
                "status": {"conditions": [{"type": "Ready", "status": "True", "observedGeneration": condition_generation}]}})
        };
        assert!(matches!(compute(&generator(2)), Health::InProgress(_)));
        assert_eq!(compute(&generator(3)), Health::Current);
    }

    #[test]
    fn custom_expressions_decide_for_their_kind() {
        let checks: Vec<CustomHealthCheck> = serde_json::from_value(serde_json::json!([{
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "current": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
            "failed": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')",
        }]))
        .unwrap_or_default();
        let custom = compile(&checks).unwrap_or_default();
        let cert = |status: &str| {
            serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"},
                "status": {"conditions": [{"type": "Ready", "status": status}]}})
        };
        assert_eq!(compute_with(&cert("True"), &custom), Health::Current);
        assert!(matches!(compute_with(&cert("False"), &custom), Health::Failed(_)));
        assert!(matches!(
            compute_with(&cert("Unknown"), &custom),
            Health::InProgress(_)
        ));
        let no_status = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate"});
        assert!(matches!(compute_with(&no_status, &custom), Health::InProgress(_)));
        let bad: Vec<CustomHealthCheck> = serde_json::from_value(serde_json::json!([{
            "apiVersion": "x/v1", "kind": "X", "current": "status.(("}]))
        .unwrap_or_default();
        assert!(compile(&bad).is_err_and(|e| e.contains("'current' expression of x/v1/X")));
    }
    use serde_json::json;

    #[test]
    fn a_deployment_is_current_when_available() {
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}});
        assert!(matches!(compute(&d), Health::InProgress(_)));
        d["status"]["availableReplicas"] = json!(2);
        d["status"]["readyReplicas"] = json!(2);
        // As kstatus: not before the controller says so in its conditions.
        assert_eq!(compute(&d), Health::InProgress("ReplicaSet not Available".into()));
        let mut no_deadline = d.clone();
        no_deadline["spec"]["progressDeadlineSeconds"] = json!(i32::MAX);
        assert_eq!(
            compute(&no_deadline),
            Health::InProgress("Deployment not Available".into())
        );
        d["status"]["conditions"] = json!([
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]);
        assert_eq!(compute(&d), Health::InProgress("Deployment not Available".into()));
        d["status"]["conditions"][1]["status"] = json!("True");
        assert_eq!(compute(&d), Health::Current);
        d["metadata"]["generation"] = json!(3);
        assert!(matches!(compute(&d), Health::InProgress(_)));
    }

    #[test]
    fn custom_resources_follow_ready_and_stalled() {
        let ready =
            json!({"kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(compute(&ready), Health::Current);
        let stalled = json!({"kind": "Widget", "status": {"conditions": [{"type": "Stalled", "status": "True", "message": "bad"}]}});
        assert_eq!(compute(&stalled), Health::Failed("bad".into()));
    }
}
