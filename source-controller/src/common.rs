//! What every source kind's steps share: failure marking, the stored-artifact success, Secret
//! reads, the storage step and bounded blocking work.

use crate::storage::{ObjectDir, Storage};
use driftless_api::meta::{Artifact, ReconcileStatus, condition_types as ct, reasons as meta_reasons};
use driftless_api::source::reasons;
use driftless_runtime::{
    conditions::{self, Status},
    duration,
    reconcile::{ReconcileError, Success},
};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// Marks a negative-polarity condition (`FetchFailed`, `StorageOperationFailed`, …) and returns
/// the transient error with the same reason and message.
pub fn failed<S: ReconcileStatus>(
    status: &mut S,
    generation: Option<i64>,
    condition: &str,
    reason: &str,
    message: String,
) -> ReconcileError {
    conditions::set(
        status.conditions_mut(),
        condition,
        Status::True,
        reason,
        &message,
        generation,
    );
    ReconcileError::transient(reason, message)
}

/// Marks `FetchFailed` and returns a stalled error: the spec itself is wrong.
pub fn stalled<S: ReconcileStatus>(
    status: &mut S,
    generation: Option<i64>,
    reason: &str,
    message: String,
) -> ReconcileError {
    conditions::set(
        status.conditions_mut(),
        ct::FETCH_FAILED,
        Status::True,
        reason,
        &message,
        generation,
    );
    ReconcileError::stalled(reason, message)
}

/// Why a signature verification did not pass.
pub enum VerificationFailure {
    /// The signature is missing, unreadable or not trusted: retried.
    Failed(String),
    /// The spec asks for a verification this controller cannot do: stalled, not retried.
    Unsupported(String),
}

impl VerificationFailure {
    /// The same kind of failure with another message.
    pub fn map(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Failed(m) => Self::Failed(f(m)),
            Self::Unsupported(m) => Self::Unsupported(f(m)),
        }
    }
}

/// Records the outcome of a signature verification in `SourceVerified`: True with the message
/// of `outcome`, or False with reason `VerificationError` and a failed reconcile.
pub fn record_verification<S: ReconcileStatus>(
    status: &mut S,
    generation: Option<i64>,
    outcome: Result<String, VerificationFailure>,
) -> Result<(), ReconcileError> {
    let (state, reason, message) = match &outcome {
        Ok(message) => (Status::True, meta_reasons::SUCCEEDED, message),
        Err(VerificationFailure::Failed(message) | VerificationFailure::Unsupported(message)) => {
            (Status::False, reasons::VERIFICATION_ERROR, message)
        }
    };
    conditions::set(
        status.conditions_mut(),
        ct::SOURCE_VERIFIED,
        state,
        reason,
        message,
        generation,
    );
    match outcome {
        Ok(_) => Ok(()),
        Err(VerificationFailure::Unsupported(message)) => {
            Err(ReconcileError::stalled(reasons::VERIFICATION_ERROR, message))
        }
        Err(VerificationFailure::Failed(message)) => {
            Err(ReconcileError::transient(reasons::VERIFICATION_ERROR, message))
        }
    }
}

/// The success of a source reconcile: failures cleared, `ArtifactInStorage=True`.
pub fn stored<S: ReconcileStatus>(status: &mut S, generation: Option<i64>, revision: &str) -> Success {
    let message = format!("stored artifact for revision '{revision}'");
    let conds = status.conditions_mut();
    for negative in [
        ct::FETCH_FAILED,
        ct::STORAGE_OPERATION_FAILED,
        ct::ARTIFACT_OUTDATED,
    ] {
        conditions::delete(conds, negative);
    }
    conditions::set(
        conds,
        ct::ARTIFACT_IN_STORAGE,
        Status::True,
        meta_reasons::SUCCEEDED,
        &message,
        generation,
    );
    Success::new(meta_reasons::SUCCEEDED, message).with_revision(revision)
}

/// Marks progress towards a new revision: `ArtifactOutdated` when an artifact exists, and the
/// Reconciling message to publish.
pub fn outdated<S: ReconcileStatus>(
    status: &mut S,
    had_artifact: bool,
    generation: Option<i64>,
    revision: &str,
) -> String {
    if had_artifact {
        let m = format!("new upstream revision '{revision}'");
        conditions::set(
            status.conditions_mut(),
            ct::ARTIFACT_OUTDATED,
            Status::True,
            driftless_api::source::reasons::NEW_REVISION,
            &m,
            generation,
        );
        format!("building artifact: {m}")
    } else {
        format!("building artifact: new revision '{revision}'")
    }
}

/// Reads a Secret's data; the error names the Secret and is fit for a condition.
pub async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets.get_opt(name).await {
        Ok(Some(s)) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(format!(
            "failed to get secret '{namespace}/{name}': secret not found"
        )),
        Err(e) => Err(format!("failed to get secret '{namespace}/{name}': {e}")),
    }
}

/// The storage step: forget an artifact whose file vanished (so it is rebuilt), otherwise
/// garbage-collect older artifacts of the object.
pub async fn reconcile_storage<S: ReconcileStatus>(
    storage: &Arc<Storage>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    artifact: &mut Option<Artifact>,
    status_conditions: &mut S,
    generation: Option<i64>,
) {
    let Some(current) = artifact.clone() else { return };
    if !storage.exists(&current) {
        *artifact = None;
        let conds = status_conditions.conditions_mut();
        conditions::delete(conds, ct::ARTIFACT_IN_STORAGE);
        conditions::mark_reconciling(
            conds,
            "NoArtifact",
            "building artifact: disappeared from storage",
            generation,
        );
        return;
    }
    let (storage, ns, name) = (storage.clone(), namespace.to_string(), name.to_string());
    let file = current.path.rsplit('/').next().unwrap_or_default().to_string();
    let gc = tokio::task::spawn_blocking(move || {
        storage.garbage_collect(
            &ObjectDir {
                kind,
                namespace: &ns,
                name: &name,
            },
            &file,
        )
    })
    .await;
    if let Ok(Err(err)) = gc {
        tracing::warn!(%err, "garbage collection of old artifacts failed");
    }
}

/// Removes an object's artifacts (finalizer cleanup).
pub async fn remove_artifacts(
    storage: &Arc<Storage>,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<(), ReconcileError> {
    let (storage, ns, name) = (storage.clone(), namespace.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        storage.remove_all(&ObjectDir {
            kind,
            namespace: &ns,
            name: &name,
        })
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|e| {
        ReconcileError::transient(
            driftless_api::source::reasons::STAT_OPERATION_FAILED,
            format!("failed to remove artifacts: {e}"),
        )
    })
}

/// `spec.timeout`, defaulting to Flux's 60s.
pub fn timeout_of(timeout: Option<&str>) -> Duration {
    timeout
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// Runs blocking work off the async runtime, giving up after `timeout` (plus a grace period).
pub async fn blocking<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(timeout + Duration::from_secs(2), tokio::task::spawn_blocking(f)).await {
        Err(_) => Err(format!(
            "timed out after {} waiting for the operation",
            duration::format(timeout)
        )),
        Ok(Err(join)) => Err(format!("operation failed: {join}")),
        Ok(Ok(r)) => r,
    }
}

/// A Secret value as text, without a trailing newline.
pub fn secret_text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key).map(|v| {
        String::from_utf8_lossy(v)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    })
}

/// TLS material from a Secret: a CA bundle (`ca.crt`) and a client certificate (`tls.crt` +
/// `tls.key`), both PEM. The identity is certificate and key concatenated, as reqwest reads it.
#[derive(Default)]
pub struct TlsMaterial {
    /// PEM CA bundle trusted in addition to the system roots.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate followed by its key.
    pub identity: Option<Vec<u8>>,
}

/// Reads [`TlsMaterial`]; `None` when only one of `tls.crt` and `tls.key` is there.
pub fn tls_material(data: &BTreeMap<String, Vec<u8>>) -> Option<TlsMaterial> {
    let identity = match (data.get("tls.crt"), data.get("tls.key")) {
        (Some(cert), Some(key)) => Some([cert.as_slice(), b"\n", key.as_slice()].concat()),
        (None, None) => None,
        _ => return None,
    };
    Some(TlsMaterial {
        ca: data.get("ca.crt").or_else(|| data.get("caFile")).cloned(),
        identity,
    })
}

/// A proxy URL from a `proxySecretRef` Secret (`address`, optional `username`/`password`).
/// HTTP(S) proxies only: libgit2 speaks no SOCKS.
pub fn proxy_from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<String, String> {
    let address = secret_text(data, "address")
        .ok_or_else(|| format!("secret '{secret}' has no 'address' key for the proxy"))?;
    let Some((scheme, rest)) = address.split_once("://") else {
        return Err(format!(
            "secret '{secret}': proxy address {address:?} has no scheme"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "secret '{secret}': proxy scheme '{scheme}' is not supported for git (use http or https)"
        ));
    }
    Ok(
        match (secret_text(data, "username"), secret_text(data, "password")) {
            (Some(u), Some(p)) => format!("{scheme}://{u}:{p}@{rest}"),
            _ => address,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn proxies_are_http_with_optional_credentials() {
        let p = proxy_from_secret(
            "ns/p",
            &data(&[
                ("address", "http://proxy:3128"),
                ("username", "u"),
                ("password", "p"),
            ]),
        );
        assert_eq!(p.unwrap(), "http://u:p@proxy:3128");
        assert!(
            proxy_from_secret("ns/p", &data(&[("address", "socks5://proxy:1080")]))
                .unwrap_err()
                .contains("socks5")
        );
        assert!(
            proxy_from_secret("ns/p", &data(&[]))
                .unwrap_err()
                .contains("'address'")
        );
    }
}
