//! Commands that act on existing objects: `reconcile`, `suspend`, `resume`, `delete`.

use anyhow::bail;
use kube::api::DeleteParams;
use serde_json::{Value, json};

use crate::args::Named;
use crate::cluster::{self, Cluster, step, success, waiting};
use crate::kinds::{self, KindInfo, text};

/// What a finished reconciliation reports, as flux prints it.
fn outcome(kind: &KindInfo, object: &Value) -> String {
    if kind.group == kinds::GIT_REPOSITORY.group {
        let revision = text(object, "/status/artifact/revision");
        if !revision.is_empty() {
            return format!("fetched revision {revision}");
        }
    }
    if kind == &kinds::HELM_RELEASE {
        let revision = text(object, "/status/lastAttemptedRevision");
        if !revision.is_empty() {
            return format!("applied revision {revision}");
        }
    }
    let applied = text(object, "/status/lastAppliedRevision");
    if !applied.is_empty() {
        return format!("applied revision {applied}");
    }
    format!("{} reconciliation completed", kind.kind)
}

/// The source of a Kustomization or HelmRelease: (kind, namespace, name).
fn source_of(
    kind: &KindInfo,
    object: &Value,
    own_namespace: &str,
) -> Option<(&'static KindInfo, String, String)> {
    let reference = if kind == &kinds::HELM_RELEASE {
        object
            .pointer("/spec/chart/spec/sourceRef")
            .or_else(|| object.pointer("/spec/chartRef"))?
    } else {
        object.pointer("/spec/sourceRef")?
    };
    let source_kind = KindInfo::by_kind(text(reference, "/kind"))?;
    let namespace = match text(reference, "/namespace") {
        "" => own_namespace.to_string(),
        ns => ns.to_string(),
    };
    Some((source_kind, namespace, text(reference, "/name").to_string()))
}

/// Sets `reconcile.fluxcd.io/requestedAt` and waits until the request is handled and the
/// object is Ready.
async fn request_and_wait(
    cluster: &Cluster,
    kind: &KindInfo,
    namespace: &str,
    name: &str,
    also: &[&str],
) -> anyhow::Result<Value> {
    step(format!(
        "annotating {} {name} in {namespace} namespace",
        kind.kind
    ));
    let token = cluster::request_token();
    let mut annotations = serde_json::Map::new();
    for key in std::iter::once(&driftless_api::meta::REQUESTED_AT_ANNOTATION).chain(also) {
        annotations.insert(key.to_string(), json!(token));
    }
    cluster
        .merge_patch(
            kind,
            namespace,
            name,
            json!({"metadata": {"annotations": annotations}}),
        )
        .await?;
    success(format!("{} annotated", kind.kind));
    waiting(format!("waiting for {} reconciliation", kind.kind));
    let object = cluster.wait_ready(kind, namespace, name, Some(&token)).await?;
    success(outcome(kind, &object));
    Ok(object)
}

/// `reconcile <kind> NAME [--with-source] [--force] [--reset]`: `--force` and `--reset` set
/// the HelmRelease annotations `reconcile.fluxcd.io/forceAt` and `resetAt` to the request's
/// token (a one-off upgrade even in sync or out of retries; failure counters cleared).
pub async fn reconcile(
    cluster: &Cluster,
    kind: &'static KindInfo,
    named: &Named,
    with_source: bool,
    force: bool,
    reset: bool,
) -> anyhow::Result<()> {
    if (force || reset) && kind != &kinds::HELM_RELEASE {
        bail!("--force and --reset apply to HelmReleases only");
    }
    let Some(name) = &named.name else {
        bail!("{} name is required", kind.noun());
    };
    let namespace = cluster.namespace.clone();
    let object = cluster.get(kind, &namespace, name).await?;
    if object.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        bail!("resource is suspended");
    }
    if with_source {
        let Some((source_kind, source_ns, source_name)) = source_of(kind, &object, &namespace) else {
            bail!("{} '{namespace}/{name}' has no source to reconcile", kind.kind);
        };
        request_and_wait(cluster, source_kind, &source_ns, &source_name, &[]).await?;
    }
    let mut also = Vec::new();
    if force {
        also.push(driftless_api::meta::FORCE_AT_ANNOTATION);
    }
    if reset {
        also.push(driftless_api::meta::RESET_AT_ANNOTATION);
    }
    request_and_wait(cluster, kind, &namespace, name, &also).await?;
    Ok(())
}

/// The names a command acts on: the one given, or with `--all` every object of the kind.
async fn names(cluster: &Cluster, kind: &KindInfo, named: &Named) -> anyhow::Result<Vec<String>> {
    match (&named.name, named.all) {
        (Some(name), _) => Ok(vec![name.clone()]),
        (None, true) => Ok(cluster
            .list(kind, Some(&cluster.namespace))
            .await?
            .iter()
            .map(|o| text(o, "/metadata/name").to_string())
            .collect()),
        (None, false) => bail!("{} name is required (or --all)", kind.noun()),
    }
}

/// `suspend <kind> NAME|--all` and `resume <kind> NAME|--all [--wait]`.
pub async fn set_suspend(
    cluster: &Cluster,
    kind: &'static KindInfo,
    named: &Named,
    suspend: bool,
    wait: bool,
) -> anyhow::Result<()> {
    if !kind.suspendable {
        bail!("{} objects cannot be suspended", kind.kind);
    }
    let namespace = cluster.namespace.clone();
    let (verb, done) = if suspend {
        ("suspending", "suspended")
    } else {
        ("resuming", "resumed")
    };
    for name in names(cluster, kind, named).await? {
        step(format!("{verb} {} {name} in {namespace} namespace", kind.noun()));
        let mut patch = json!({"spec": {"suspend": suspend}});
        let token = cluster::request_token();
        if !suspend {
            // A resumed object reconciles at once, and the wait below knows when it has.
            patch["metadata"] = json!({"annotations": {"reconcile.fluxcd.io/requestedAt": token}});
        }
        cluster.merge_patch(kind, &namespace, &name, patch).await?;
        success(format!("{} {done}", kind.noun()));
        if !suspend && wait {
            waiting(format!("waiting for {} reconciliation", kind.kind));
            let object = cluster.wait_ready(kind, &namespace, &name, Some(&token)).await?;
            success(format!("{} reconciliation completed", kind.kind));
            let outcome = outcome(kind, &object);
            if !outcome.ends_with("completed") {
                success(outcome);
            }
        }
    }
    Ok(())
}

/// `delete <kind> NAME [--silent]`.
pub async fn delete(
    cluster: &Cluster,
    kind: &'static KindInfo,
    named: &Named,
    silent: bool,
) -> anyhow::Result<()> {
    let namespace = cluster.namespace.clone();
    for name in names(cluster, kind, named).await? {
        cluster.get(kind, &namespace, &name).await?;
        if !silent && !cluster::confirm(&format!("Are you sure you want to delete this {}", kind.noun())) {
            bail!("aborted (use --silent to skip the confirmation)");
        }
        step(format!(
            "deleting {} {name} in {namespace} namespace",
            kind.noun()
        ));
        kind.api(&cluster.client, Some(&namespace))
            .delete(&name, &DeleteParams::background())
            .await
            .map_err(|e| cluster.explain(kind, Some(&name), &namespace, e))?;
        // The controller finishes the deletion (finalizer, pruning); wait for it.
        let deadline = std::time::Instant::now() + cluster.timeout;
        while kind
            .api(&cluster.client, Some(&namespace))
            .get_opt(&name)
            .await
            .map_err(|e| cluster.explain(kind, Some(&name), &namespace, e))?
            .is_some()
        {
            if std::time::Instant::now() > deadline {
                bail!(
                    "timeout waiting for {} '{namespace}/{name}' to be deleted (is its controller running?)",
                    kind.kind
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        success(format!("{} deleted", kind.noun()));
    }
    Ok(())
}
