//! What every source kind's steps share: failure marking, the stored-artifact success, Secret
//! reads, the storage step and bounded blocking work.

use crate::storage::{ObjectDir, Storage};
use driftless_api::meta::{Artifact, ReconcileStatus, condition_types as ct, reasons as meta_reasons};
use driftless_api::source::reasons;
use driftless_runtime::{
    conditions::{self, Status},
    reconcile::{ReconcileError, Success},
};
use std::{sync::Arc, time::Duration};

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
    stored_as(status, generation, revision, meta_reasons::SUCCEEDED, message)
}

/// Like [`stored`], with the kind's own Ready reason and message (HelmRepository: `stored
/// artifact: revision '…'`; HelmChart: `ChartPullSucceeded`, `pulled '…' chart with version '…'`).
pub fn stored_as<S: ReconcileStatus>(
    status: &mut S,
    generation: Option<i64>,
    revision: &str,
    reason: &str,
    message: String,
) -> Success {
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
        reason,
        &message,
        generation,
    );
    Success::new(reason, message).with_revision(revision)
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

/// Marks `condition=True` with `reason` and returns the error in the class the problem has.
pub fn fail<S: ReconcileStatus>(
    status: &mut S,
    generation: Option<i64>,
    condition: &str,
    reason: &str,
    problem: Problem,
) -> ReconcileError {
    let message = problem.message().to_string();
    conditions::set(
        status.conditions_mut(),
        condition,
        Status::True,
        reason,
        &message,
        generation,
    );
    problem.into_error(reason)
}

/// The status of a kind that publishes an artifact.
pub trait SourceStatus: ReconcileStatus {
    fn artifact_mut(&mut self) -> &mut Option<Artifact>;
}

macro_rules! source_status {
    ($($status:ty),*) => {$(
        impl SourceStatus for $status {
            fn artifact_mut(&mut self) -> &mut Option<Artifact> {
                &mut self.artifact
            }
        }
    )*};
}
source_status!(
    driftless_api::source::GitRepositoryStatus,
    driftless_api::source::OCIRepositoryStatus,
    driftless_api::source::HelmRepositoryStatus,
    driftless_api::source::HelmChartStatus,
    driftless_api::source::BucketStatus
);

/// The storage step: forget an artifact whose file vanished (so it is rebuilt), otherwise
/// garbage-collect older artifacts of the object.
pub async fn reconcile_storage<S: SourceStatus>(
    storage: &Arc<Storage>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    status: &mut S,
    generation: Option<i64>,
) {
    let Some(current) = status.artifact_mut().clone() else {
        return;
    };
    if !storage.exists(&current) {
        *status.artifact_mut() = None;
        let conds = status.conditions_mut();
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

/// A source's `spec.timeout` when it has none (Flux's 60 s).
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(60);

pub use driftless_runtime::secrets::{
    Problem, REFERENCE_REQUEUE, TlsMaterial, proxy_from_secret, proxy_from_secret_ref, secret_data,
    secret_text, tls_from_secret, tls_material,
};

/// Bounds a registry call by the object's timeout.
pub async fn within<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(format!(
            "{what}: timed out after {}",
            driftless_runtime::duration::format(timeout)
        )),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Ok(Ok(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
        assert!(
            proxy_from_secret("ns/p", &data(&[("address", "http://proxy:port")]))
                .unwrap_err()
                .contains("not a valid URL")
        );
    }

    /// Every character URLs give a meaning to, and `%`.
    const AWKWARD_PASSWORD: &str = "p/a#s?s@w:rd%41 ;=[]";

    #[test]
    fn proxy_credentials_are_percent_encoded_and_round_trip() {
        let p = proxy_from_secret(
            "ns/p",
            &data(&[
                ("address", "http://proxy:3128"),
                ("username", "us@er/1"),
                ("password", AWKWARD_PASSWORD),
            ]),
        )
        .unwrap();
        assert_eq!(
            p,
            "http://us%40er%2F1:p%2Fa%23s%3Fs%40w%3Ard%2541%20%3B%3D%5B%5D@proxy:3128"
        );
        let url = url::Url::parse(&p).unwrap();
        assert_eq!(
            (url.host_str(), url.port(), url.path()),
            (Some("proxy"), Some(3128), "/")
        );
        assert_eq!(percent_decode(url.username()), "us@er/1");
        assert_eq!(percent_decode(url.password().unwrap()), AWKWARD_PASSWORD);
        // An address with a path keeps it.
        let p = proxy_from_secret(
            "ns/p",
            &data(&[
                ("address", "https://proxy/"),
                ("username", "u"),
                ("password", "p@ss"),
            ]),
        );
        assert_eq!(p.unwrap(), "https://u:p%40ss@proxy/");
    }

    /// `%XX` decoding, as the proxy URL's readers do it.
    fn percent_decode(s: &str) -> String {
        let mut parts = s.split('%');
        let mut out = parts.next().unwrap_or_default().as_bytes().to_vec();
        for part in parts {
            let (hex, rest) = part.split_at(2);
            out.push(u8::from_str_radix(hex, 16).unwrap());
            out.extend_from_slice(rest.as_bytes());
        }
        String::from_utf8(out).unwrap()
    }

    /// The reader that matters: the client the git transport and the registry client build
    /// with `reqwest::Proxy::all` sends the credentials to the proxy decoded.
    #[test]
    fn the_proxy_receives_the_credentials_decoded() {
        use base64::Engine as _;
        use std::io::{BufRead, BufReader, Write};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        // A proxy that records `Proxy-Authorization` and refuses.
        let proxy = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorization = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim_end().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("proxy-authorization")
                {
                    authorization = Some(value.trim().to_string());
                }
            }
            stream
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            authorization
        });
        let url = proxy_from_secret(
            "ns/p",
            &data(&[
                ("address", address.as_str()),
                ("username", "us@er/1"),
                ("password", AWKWARD_PASSWORD),
            ]),
        )
        .unwrap();
        driftless_artifact::install_crypto_provider();
        let client = reqwest::blocking::Client::builder()
            .proxy(reqwest::Proxy::all(&url).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let response = client.get("http://git.example/info/refs").send().unwrap();
        assert_eq!(response.status().as_u16(), 407);
        let authorization = proxy.join().unwrap().expect("no Proxy-Authorization header");
        let token = authorization.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(token).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            format!("us@er/1:{AWKWARD_PASSWORD}")
        );
    }
}
