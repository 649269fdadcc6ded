//! Step 10: health, with kstatus rules for the built-in kinds and the Ready condition for
//! everything else.

use serde_json::Value;

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
    use serde_json::json;

    #[test]
    fn a_deployment_is_current_when_available() {
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}});
        assert!(matches!(compute(&d), Health::InProgress(_)));
        d["status"]["availableReplicas"] = json!(2);
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
