//! HelmRepository: a Helm repository's `index.yaml`, fetched and published as an artifact.
//!
//! `type: default` (HTTP(S)): the index is fetched with the repository's credentials; its
//! revision is `sha256:` of the bytes served, as Flux computes it, so both publish the same
//! revision for the same index. A new revision is parsed once, validated, its versions sorted
//! newest first, and stored as JSON (`index-<hex>.yaml`, served as `index.yaml` too): JSON is
//! YAML, and the HelmCharts that read it parse it far faster than YAML. Parsing happens only
//! when the revision changes; an unchanged index costs one download and a digest.
//!
//! `type: oci`: a static holder of a URL and credentials, read by the HelmCharts that use it;
//! as in Flux it gets no finalizer and no status ([`Reconciler::ignores`]).

use std::sync::Arc;
use std::time::Duration;

use driftless_api::meta::{ReconcileStatus, condition_types as ct, reasons as meta_reasons};
use driftless_api::source::{HelmRepository, HelmRepositoryStatus, reasons};
use driftless_artifact::http::{ClientSettings, client};
use driftless_runtime::conditions::{self, Status};
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success};
use driftless_runtime::work::{Blocking, blocking, timeout_of};
use futures::StreamExt;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::common::{self, Problem, failed};
use crate::storage::{ObjectDir, Storage};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "helmrepository";
/// The link under which the current index is served (Flux's `status.url`).
pub const INDEX_LINK: &str = "index.yaml";
/// Largest index fetched (Flux's `--helm-index-max-size` default).
pub const DEFAULT_INDEX_MAX_SIZE: u64 = 50 << 20;

/// Reconciles HelmRepositories into index artifacts in `storage`.
pub struct HelmRepositoryReconciler {
    storage: Arc<Storage>,
    index_max_size: u64,
}

impl HelmRepositoryReconciler {
    /// A reconciler storing indexes in `storage`, refusing indexes over `index_max_size` bytes.
    pub fn new(storage: Arc<Storage>, index_max_size: u64) -> Self {
        Self {
            storage,
            index_max_size,
        }
    }
}

/// Whether a HelmRepository is an OCI one (a static holder of URL and credentials).
pub fn is_oci(obj: &HelmRepository) -> bool {
    obj.spec.repository_type.as_deref() == Some("oci")
}

/// One reconcile of one HelmRepository and what each step leaves for the next.
struct Run<'a> {
    obj: &'a HelmRepository,
    status: &'a mut HelmRepositoryStatus,
    ctx: &'a ReconcileContext<HelmRepository>,
    generation: Option<i64>,
    namespace: String,
    name: String,
    timeout: Duration,
    /// `<url>/index.yaml` (step 1).
    index_url: String,
    /// The HTTP client and basic-auth credentials (step 3).
    http: Option<reqwest::Client>,
    basic_auth: Option<(String, String)>,
    /// The index as served, and its revision (step 4).
    index: Vec<u8>,
    revision: String,
    /// The stored artifact has this revision already.
    current: bool,
}

impl Reconciler for HelmRepositoryReconciler {
    type Kind = HelmRepository;

    fn ignores(&self, obj: &HelmRepository) -> bool {
        is_oci(obj)
    }

    /// 1. [`validate`](Self::validate): an http(s) URL; `index.yaml` under it;
    /// 2. [`storage`](Self::storage): the stored index still there, older ones collected;
    /// 3. [`connect`](Self::connect): basic auth from `secretRef`, TLS from `certSecretRef`;
    /// 4. [`fetch`](Self::fetch): the index, within the size limit; its revision;
    /// 5. [`store`](Self::store): unless current, parsed, sorted and stored as the artifact.
    async fn apply(
        &self,
        obj: &HelmRepository,
        status: &mut HelmRepositoryStatus,
        ctx: &ReconcileContext<HelmRepository>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            generation: obj.meta().generation,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            timeout: timeout_of(obj.spec.timeout.as_deref(), common::SOURCE_TIMEOUT),
            index_url: String::new(),
            http: None,
            basic_auth: None,
            index: Vec::new(),
            revision: String::new(),
            current: false,
        };
        self.validate(&mut run).await?;
        self.storage(&mut run).await?;
        self.connect(&mut run).await?;
        self.fetch(&mut run).await?;
        self.store(&mut run).await?;
        let message = format!("stored artifact: revision '{}'", run.revision);
        Ok(common::stored_as(
            run.status,
            run.generation,
            &run.revision,
            meta_reasons::SUCCEEDED,
            message,
        ))
    }

    async fn cleanup(
        &self,
        obj: &HelmRepository,
        _ctx: &ReconcileContext<HelmRepository>,
    ) -> Result<(), ReconcileError> {
        common::remove_artifacts(
            &self.storage,
            STORAGE_KIND,
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
        )
        .await
    }
}

impl HelmRepositoryReconciler {
    /// Step 1: an `http(s)://` URL (an `oci://` one needs `type: oci`); both refusals stall.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let invalid = |run: &mut Run<'_>, m: String| {
            common::stalled(run.status, run.generation, reasons::URL_INVALID, m)
        };
        let url = run.obj.spec.url.clone();
        if url.starts_with("oci://") {
            let m = "invalid Helm repository URL: 'oci' URL scheme cannot be used with 'default' HelmRepository type";
            return Err(invalid(run, m.to_string()));
        }
        run.index_url =
            index_url(&url).map_err(|e| invalid(run, format!("invalid Helm repository URL: {e}")))?;
        Ok(())
    }

    /// Step 2: the stored index is still there (else forgotten, so it is stored again), and
    /// older ones are garbage-collected.
    async fn storage(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        common::reconcile_storage(
            &self.storage,
            STORAGE_KIND,
            &run.namespace,
            &run.name,
            run.status,
            run.generation,
        )
        .await;
        Ok(())
    }

    /// Step 3: `secretRef` (`username` and `password`, both or neither) and `certSecretRef`
    /// (`ca.crt`, `tls.crt` + `tls.key`).
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let connected = connection(run.obj, &run.ctx.client).await;
        let (http, basic_auth) = connected.map_err(|problem| {
            common::fail(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                reasons::AUTHENTICATION_FAILED,
                problem,
            )
        })?;
        run.http = Some(http);
        run.basic_auth = basic_auth;
        Ok(())
    }

    /// Step 4: the index as served (at most `--helm-index-max-size` bytes) and its revision,
    /// `sha256:` of those bytes.
    async fn fetch(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let Some(http) = run.http.clone() else {
            return Err(ReconcileError::transient(
                meta_reasons::FAILED,
                "no HTTP client yet",
            ));
        };
        let fetched = tokio::time::timeout(
            run.timeout,
            download(
                &http,
                &run.index_url,
                run.basic_auth.as_ref(),
                self.index_max_size,
                || {
                    format!(
                        "index exceeds the maximum index file size of {} bytes",
                        self.index_max_size
                    )
                },
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "timed out after {}",
                driftless_runtime::duration::format(run.timeout)
            ))
        });
        run.index = fetched.map_err(|e| {
            failed(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                meta_reasons::FAILED,
                format!("failed to fetch Helm repository index: {e}"),
            )
        })?;
        run.revision = format!("sha256:{}", hex::encode(Sha256::digest(&run.index)));
        run.current = run
            .status
            .artifact
            .as_ref()
            .is_some_and(|a| a.revision == run.revision && self.storage.exists(a));
        if !run.current {
            let message = format!("new index revision '{}'", run.revision);
            if run.status.artifact.is_some() {
                conditions::set(
                    run.status.conditions_mut(),
                    ct::ARTIFACT_OUTDATED,
                    Status::True,
                    reasons::NEW_REVISION,
                    &message,
                    run.generation,
                );
            }
            run.ctx
                .progress(run.obj, run.status, &format!("building artifact: {message}"))
                .await;
        }
        Ok(())
    }

    /// Step 5: unless current, the index validated and stored as it was served
    /// (`index-<hex>.yaml`, linked as `index.yaml`); `NewArtifact`.
    async fn store(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        if run.current {
            return Ok(());
        }
        let index = std::mem::take(&mut run.index);
        let size = index.len();
        let (storage, revision) = (self.storage.clone(), run.revision.clone());
        let (ns, name) = (run.namespace.clone(), run.name.clone());
        let stored = blocking(run.timeout, move || {
            validate_index(&index).map_err(Problem::Invalid)?;
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns,
                name: &name,
            };
            let file = format!("index-{}.yaml", revision.trim_start_matches("sha256:"));
            storage
                .store_bytes(&dir, &file, &index, &revision, INDEX_LINK)
                .map_err(|e| Problem::Unavailable(format!("unable to store artifact: {e}")))
        })
        .await;
        let artifact = stored.map_err(|e| match e {
            Blocking::Failed(Problem::Invalid(m)) => common::fail(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                reasons::INDEXATION_FAILED,
                Problem::Invalid(format!(
                    "failed to load Helm repository from index YAML: failed to load index: {m}"
                )),
            ),
            other => failed(
                run.status,
                run.generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::ARCHIVE_OPERATION_FAILED,
                match other {
                    Blocking::Failed(p) => p.message().to_string(),
                    Blocking::TimedOut(after) => Blocking::<String>::TimedOut(after).to_string(),
                    Blocking::Panicked(why) => why,
                },
            ),
        })?;
        let digest = artifact.digest.clone();
        run.status.artifact = Some(artifact);
        run.status.url = Some(self.storage.link_url(
            &ObjectDir {
                kind: STORAGE_KIND,
                namespace: &run.namespace,
                name: &run.name,
            },
            INDEX_LINK,
        ));
        let note = format!(
            "stored fetched index of size {} from '{}'",
            human_size(size as u64),
            run.obj.spec.url
        );
        let metadata = [("revision", run.revision.as_str()), ("digest", digest.as_str())];
        run.ctx
            .announce(run.obj, reasons::NEW_ARTIFACT, &note, &metadata)
            .await;
        Ok(())
    }
}

/// `<url>/index.yaml`, joined as Flux joins it: the path cleaned (a trailing `/` or `//` make
/// no difference), a query kept.
pub fn index_url(url: &str) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("parse \"{url}\": {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("unsupported scheme '{}'", parsed.scheme()));
    }
    let segments: Vec<String> = parsed
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let mut path = String::new();
    for segment in segments.iter().map(String::as_str).chain(["index.yaml"]) {
        path.push('/');
        path.push_str(segment);
    }
    parsed.set_path(&path);
    Ok(parsed.to_string())
}

/// The HTTP client and basic-auth credentials a HelmRepository's Secrets give (HelmCharts
/// download with them too).
pub async fn connection(
    obj: &HelmRepository,
    kube: &kube::Client,
) -> Result<(reqwest::Client, Option<(String, String)>), Problem> {
    let ns = obj.namespace().unwrap_or_default();
    let mut basic_auth = None;
    let mut tls = common::TlsMaterial::default();
    if let Some(r) = &obj.spec.secret_ref {
        let data = common::secret_data(kube, &ns, &r.name).await.map_err(|p| {
            p.map_message(|m| format!("failed to get authentication secret '{ns}/{}': {m}", r.name))
        })?;
        // Flux's deprecated fallback: without a certSecretRef, TLS keys of the secretRef count.
        if obj.spec.cert_secret_ref.is_none()
            && let Some(material) = common::tls_material(&data)
        {
            tls = material;
        }
        basic_auth = match (
            common::secret_text(&data, "username"),
            common::secret_text(&data, "password"),
        ) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(Problem::Invalid(format!(
                    "failed to get authentication secret '{ns}/{}': secret must contain both 'username' and 'password'",
                    r.name
                )));
            }
        };
    }
    if let Some(r) = &obj.spec.cert_secret_ref {
        tls = common::tls_from_secret(kube, &ns, &r.name)
            .await
            .map_err(|p| match p {
                Problem::Invalid(_) => p,
                read => read.map_message(|m| {
                    format!("failed to get TLS authentication secret '{ns}/{}': {m}", r.name)
                }),
            })?;
    }
    let settings = ClientSettings {
        ca: tls.ca.as_deref(),
        identity: tls.identity.as_deref(),
        proxy: None,
    };
    let http =
        client(&settings, concat!("driftless/", env!("CARGO_PKG_VERSION"))).map_err(Problem::Invalid)?;
    Ok((http, basic_auth))
}

/// Downloads `url` into memory, refusing more than `max` bytes (with `too_large`'s message).
pub async fn download(
    http: &reqwest::Client,
    url: &str,
    basic_auth: Option<&(String, String)>,
    max: u64,
    too_large: impl Fn() -> String,
) -> Result<Vec<u8>, String> {
    let mut request = http.get(url);
    if let Some((user, password)) = basic_auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("failed to fetch {url} : {e}"))?;
    if !response.status().is_success() {
        return Err(format!("failed to fetch {url} : {}", response.status()));
    }
    if response.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("failed to fetch {url} : {e}"))?;
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks that `bytes` is a Helm repository index: YAML (or JSON) with an `apiVersion` and
/// `entries`, a map of chart names to lists of versions, each with a `version`. Parsed into
/// the compact table HelmCharts use, so a large index costs no more memory here than there.
pub fn validate_index(bytes: &[u8]) -> Result<(), String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty index".into());
    }
    crate::helm_chart::index::ChartIndex::parse(bytes).map(|_| ())
}

/// A byte count as Go's `units.HumanSize` writes it (decimal units, 4 significant digits):
/// `512B`, `2.345kB`, `12.3MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // %.4g: four significant digits, trailing zeros dropped.
    let digits = if size >= 100.0 {
        1
    } else if size >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{size:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_index_url_is_joined_as_flux_joins_it() {
        for (url, want) in [
            ("http://h/charts", "http://h/charts/index.yaml"),
            ("http://h/charts/", "http://h/charts/index.yaml"),
            ("http://h//charts//", "http://h/charts/index.yaml"),
            ("https://h", "https://h/index.yaml"),
            ("https://h/c/?t=1", "https://h/c/index.yaml?t=1"),
        ] {
            assert_eq!(index_url(url).unwrap(), want, "{url}");
        }
        assert!(index_url("ftp://h/c").is_err());
        assert!(index_url("not a url").is_err());
    }

    #[test]
    fn indexes_are_validated() {
        let yaml = b"apiVersion: v1\nentries:\n  app:\n  - version: 1.2.0\n    urls: [app-1.2.0.tgz]\n    extra: {deep: [1]}\n";
        assert!(validate_index(yaml).is_ok());
        assert!(validate_index(b"entries: {}\n").is_err_and(|e| e.contains("API version")));
        assert!(validate_index(b"  \n").is_err());
        assert!(validate_index(b"apiVersion: v1\nentries: [1]\n").is_err());
        assert!(validate_index(b"apiVersion: [\n").is_err());
        assert!(validate_index(b"{\"apiVersion\": \"v1\", \"entries\": {}}").is_ok());
    }

    #[test]
    fn sizes_read_as_go_units_writes_them() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(2345), "2.345kB");
        assert_eq!(human_size(12_300_000), "12.3MB");
        assert_eq!(human_size(123_456), "123.5kB");
    }
}
