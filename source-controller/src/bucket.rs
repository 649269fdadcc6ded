//! Bucket: the objects of an S3-compatible bucket republished as a source artifact.
//!
//! Steps: **validate** (provider `generic` or `aws` with static keys; what needs a cloud's
//! workload identity — `gcp`, `azure`, `sts`, `serviceAccountName`, `aws` without keys —
//! stalls with a message naming it) → **storage** (as GitRepository) → **connect** (access keys
//! of `secretRef`, CA and client certificate of `certSecretRef`, proxy of `proxySecretRef`) →
//! **index** (the bucket's `.sourceignore` and `spec.ignore`, then the listing under `prefix`,
//! page by page: key → ETag; the revision is Flux's digest of that index, so an unchanged bucket
//! costs one listing and no download) → **fetch** (unless the stored artifact has that revision:
//! the indexed objects downloaded a bounded number at a time into a work directory, keys that
//! would leave it refused, then archived).

use crate::{
    common::{self, Problem, failed, stored},
    gcs,
    storage::{ObjectDir, Storage},
};
use driftless_api::{
    meta::condition_types as ct,
    source::{Bucket, BucketStatus, reasons},
};
use driftless_artifact::http::{ClientSettings, client};
use driftless_runtime::{
    reconcile::{ReconcileContext, ReconcileError, Reconciler, Success},
    work::{blocking, timeout_of},
};
use futures::{StreamExt, TryStreamExt};
use kube::{Resource, ResourceExt};
use rusty_s3::{Credentials, S3Action, UrlStyle, actions::ListObjectsV2};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// Kind directory in storage.
pub const STORAGE_KIND: &str = "bucket";
/// Objects downloaded at once.
const DOWNLOADS_AT_ONCE: usize = 16;
/// How long a signed request URL is valid.
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// The ignore file read from the bucket's root, as Flux's.
const IGNORE_FILE: &str = ".sourceignore";

/// Reconciles Buckets into artifacts in `storage`.
pub struct BucketReconciler {
    storage: Arc<Storage>,
}

impl BucketReconciler {
    /// A reconciler storing artifacts in `storage`.
    pub fn new(storage: Arc<Storage>) -> Self {
        Self { storage }
    }
}

/// How a bucket's objects are listed and read: the S3 API (`generic`, `aws`) or Google Cloud
/// Storage's JSON API (`gcp`).
enum ObjectApi {
    S3 {
        bucket: rusty_s3::Bucket,
        credentials: Option<Credentials>,
    },
    Gcs {
        /// `scheme://host[:port]` of the JSON API.
        base: url::Url,
        bucket: String,
        /// OAuth access token of the service account key, if one was given.
        token: Option<String>,
    },
    Azure {
        /// `<endpoint>/<container>`.
        container: url::Url,
        /// The account's key (`accountKey`), signing each request.
        key: Option<driftless_runtime::azure::SharedKey>,
        /// A SAS token (`sasKey`), added to each request's query.
        sas: Vec<(String, String)>,
    },
}

impl ObjectApi {
    /// `url` with the SAS token's parameters, and the request authorised as the API wants it.
    fn azure_request(
        http: &reqwest::Client,
        mut url: url::Url,
        key: Option<&driftless_runtime::azure::SharedKey>,
        sas: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        if !sas.is_empty() {
            url.query_pairs_mut().extend_pairs(sas);
        }
        let headers = key.map(|k| k.headers("GET", &url, 0, "")).unwrap_or_default();
        http.get(url).headers(headers)
    }
}

/// The text of every `<tag>…</tag>` in `xml`, entities decoded.
fn xml_values(xml: &str, tag: &str) -> std::vec::IntoIter<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split(close.as_str()).next())
        .map(|v| {
            v.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// One bucket and how to reach it.
struct Connection {
    http: reqwest::Client,
    api: ObjectApi,
}

/// One page of a GCS object listing.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GcsPage {
    #[serde(default)]
    items: Vec<GcsObject>,
    next_page_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct GcsObject {
    name: String,
    #[serde(default)]
    etag: String,
}

impl Connection {
    /// Every key under `prefix` with its ETag (quotes dropped, as Flux's clients do), page by
    /// page; "directory" keys are skipped.
    async fn index(
        &self,
        prefix: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut index = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let (objects, next) = self.page(prefix, token.as_deref()).await?;
            for (key, etag) in objects {
                if key.ends_with('/') || key == IGNORE_FILE || !keep(&key) {
                    continue;
                }
                index.insert(key, etag.trim_matches('"').to_string());
            }
            match next {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(index),
            }
        }
    }

    /// One page of the listing: `(key, etag)` pairs and the next page's token.
    async fn page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<(Vec<(String, String)>, Option<String>), String> {
        match &self.api {
            ObjectApi::S3 { bucket, credentials } => {
                let mut list: ListObjectsV2<'_> = bucket.list_objects_v2(credentials.as_ref());
                if !prefix.is_empty() {
                    list.with_prefix(prefix);
                }
                if let Some(token) = token {
                    list.with_continuation_token(token.to_string());
                }
                let url = list.sign(SIGNED_FOR);
                let text = self.text(self.http.get(url)).await?;
                let page =
                    ListObjectsV2::parse_response(&text).map_err(|e| format!("invalid listing: {e}"))?;
                let objects = page
                    .contents
                    .into_iter()
                    .map(|o| (o.key, o.etag.unwrap_or_default()))
                    .collect();
                Ok((objects, page.next_continuation_token))
            }
            ObjectApi::Gcs {
                base,
                bucket,
                token: auth,
            } => {
                let mut url = base.clone();
                url.path_segments_mut()
                    .map_err(|()| "invalid endpoint".to_string())?
                    .extend(["storage", "v1", "b", bucket, "o"]);
                {
                    let mut query = url.query_pairs_mut();
                    query.append_pair("fields", "items(name,etag),nextPageToken");
                    if !prefix.is_empty() {
                        query.append_pair("prefix", prefix);
                    }
                    if let Some(token) = token {
                        query.append_pair("pageToken", token);
                    }
                }
                let text = self.text(authorized(self.http.get(url), auth.as_deref())).await?;
                let page: GcsPage =
                    serde_json::from_str(&text).map_err(|e| format!("invalid listing: {e}"))?;
                let objects = page.items.into_iter().map(|o| (o.name, o.etag)).collect();
                Ok((objects, page.next_page_token))
            }
            ObjectApi::Azure { container, key, sas } => {
                let mut url = container.clone();
                {
                    let mut query = url.query_pairs_mut();
                    query
                        .append_pair("restype", "container")
                        .append_pair("comp", "list");
                    if !prefix.is_empty() {
                        query.append_pair("prefix", prefix);
                    }
                    if let Some(marker) = token {
                        query.append_pair("marker", marker);
                    }
                }
                let text = self
                    .text(ObjectApi::azure_request(&self.http, url, key.as_ref(), sas))
                    .await?;
                // Flux's index holds the ETag's bytes in hex (`fmt.Sprintf("%x", etag)`).
                let objects = text
                    .split("<Blob>")
                    .skip(1)
                    .filter_map(|blob| {
                        let name = xml_values(blob, "Name").next()?;
                        let etag = xml_values(blob, "Etag").next().unwrap_or_default();
                        Some((name, hex::encode(etag.as_bytes())))
                    })
                    .collect();
                let next = xml_values(&text, "NextMarker").next();
                Ok((objects, next))
            }
        }
    }

    /// The object `key` and, from S3, its ETag; None when there is none.
    async fn get(&self, object: &str) -> Result<Option<(reqwest::Response, Option<String>)>, String> {
        let request = match &self.api {
            ObjectApi::S3 { bucket, credentials } => self
                .http
                .get(bucket.get_object(credentials.as_ref(), object).sign(SIGNED_FOR)),
            ObjectApi::Gcs { base, bucket, token } => {
                let mut url = base.clone();
                url.path_segments_mut()
                    .map_err(|()| "invalid endpoint".to_string())?
                    .extend(["download", "storage", "v1", "b", bucket, "o", object]);
                url.query_pairs_mut().append_pair("alt", "media");
                authorized(self.http.get(url), token.as_deref())
            }
            ObjectApi::Azure { container, key, sas } => {
                let mut url = container.clone();
                url.path_segments_mut()
                    .map_err(|()| "invalid endpoint".to_string())?
                    .pop_if_empty()
                    .extend(object.split('/'));
                ObjectApi::azure_request(&self.http, url, key.as_ref(), sas)
            }
        };
        let response = request.send().await.map_err(|e| e.without_url().to_string())?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = checked(response).await?;
        // GCS media downloads carry another ETag form than the listing's: the index keeps its own.
        let etag = matches!(self.api, ObjectApi::S3 { .. })
            .then(|| {
                response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_string())
            })
            .flatten();
        Ok(Some((response, etag)))
    }

    async fn text(&self, request: reqwest::RequestBuilder) -> Result<String, String> {
        let response = request.send().await.map_err(|e| e.without_url().to_string())?;
        checked(response)
            .await?
            .text()
            .await
            .map_err(|e| e.without_url().to_string())
    }
}

fn authorized(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// The response, or the S3 error it carries (its code and message, as S3 clients report them).
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, String> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    // S3 errors are small XML documents: the first 64 KiB tell the code and message.
    let mut body = String::new();
    let mut chunks = response.bytes_stream();
    while body.len() < 64 << 10
        && let Ok(Some(chunk)) = chunks.try_next().await
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let field = |name: &str| {
        body.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|rest| rest.split(&format!("</{name}>")).next())
            .map(str::to_string)
    };
    // GCS errors are JSON: `{"error": {"code": 404, "message": "…"}}`.
    let json_message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_string));
    Err(match (field("Code"), field("Message"), json_message) {
        (Some(code), Some(message), _) => format!("{code}: {message}"),
        (Some(code), None, _) => code,
        (None, _, Some(message)) => format!("{message} ({status})"),
        _ => format!("the server answered {status}"),
    })
}

/// Flux's revision of a bucket: the SHA-256 of its index, one `key etag` line per object in key
/// order, so Flux's and ours publish the same revision for the same contents.
pub fn index_revision(index: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, etag) in index {
        hasher.update(format!("{key} {etag}\n").as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Where `key` goes under `root`, or None when it would leave it (`..`, an absolute path).
fn confined(root: &Path, key: &str) -> Option<PathBuf> {
    let relative = Path::new(key);
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (safe && relative.components().next().is_some()).then(|| root.join(relative))
}

/// The rules of the bucket's `.sourceignore` and `spec.ignore` (no default exclusions, as
/// Flux's Bucket matcher has none).
fn ignore_rules(file: Option<&str>, spec: Option<&str>) -> ignore::gitignore::Gitignore {
    let mut builder = ignore::gitignore::GitignoreBuilder::new("");
    for line in file.into_iter().chain(spec).flat_map(str::lines) {
        let _ = builder.add_line(None, line);
    }
    builder
        .build()
        .unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

/// Whether `key` stays in the index under `rules`. Matched relative: the matcher refuses (by
/// panicking) rooted paths, and a key may start with `/`.
fn kept(rules: &ignore::gitignore::Gitignore, key: &str) -> bool {
    let relative = key.trim_start_matches('/');
    relative.is_empty() || !rules.matched_path_or_any_parents(relative, false).is_ignore()
}

/// One reconcile of one Bucket and what each step leaves for the next.
struct Run<'a> {
    obj: &'a Bucket,
    status: &'a mut BucketStatus,
    ctx: &'a ReconcileContext<Bucket>,
    generation: Option<i64>,
    namespace: String,
    name: String,
    timeout: Duration,
    connection: Option<Connection>,
    index: BTreeMap<String, String>,
    revision: String,
}

impl Run<'_> {
    fn connection(&self) -> Result<&Connection, ReconcileError> {
        self.connection.as_ref().ok_or_else(|| {
            ReconcileError::transient(reasons::BUCKET_OPERATION_FAILED, "no bucket client yet")
        })
    }

    /// `what` failed with the server's error, or ran out of time.
    fn bucket_failed_with(
        &mut self,
        what: &str,
        outcome: Result<String, tokio::time::error::Elapsed>,
    ) -> ReconcileError {
        let why = outcome.unwrap_or_else(|_| {
            format!(
                "timed out after {}",
                driftless_runtime::duration::format(self.timeout)
            )
        });
        self.bucket_failed(format!("{what}: {why}"))
    }

    fn stall(&mut self, reason: &str, message: String) -> ReconcileError {
        common::stalled(self.status, self.generation, reason, message)
    }

    fn bucket_failed(&mut self, message: String) -> ReconcileError {
        failed(
            self.status,
            self.generation,
            ct::FETCH_FAILED,
            reasons::BUCKET_OPERATION_FAILED,
            message,
        )
    }
}

impl BucketReconciler {
    /// Step 1: a provider this controller can serve, an endpoint.
    async fn validate(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let spec = &run.obj.spec;
        let provider = spec
            .provider
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("generic");
        // Per provider: whose workload identity a missing Secret would need, and what to give
        // instead.
        let (identity, instead) = match provider {
            "generic" | "aws" => ("the cloud's", "static keys in secretRef"),
            "gcp" => ("GCP", "a service account key in secretRef ('serviceaccount')"),
            "azure" => ("Azure", "an 'accountKey' or a 'sasKey' in secretRef"),
            other => {
                let m =
                    format!("provider '{other}' is not supported: use 'generic', 'aws', 'gcp' or 'azure'");
                return Err(run.stall(reasons::AUTHENTICATION_FAILED, m));
            }
        };
        let s3 = matches!(provider, "generic" | "aws");
        let service_account = spec
            .service_account_name
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        let refusal = if spec.sts.is_some() && s3 {
            Some(
                "spec.sts (temporary credentials from a security token service) is not supported: \
                 give static keys in secretRef"
                    .to_string(),
            )
        } else if spec.sts.is_some() {
            Some("spec.sts is only supported for the 'generic' and 'aws' providers".into())
        } else if service_account {
            Some(format!(
                "spec.serviceAccountName needs {identity} workload identity, which is not available: give {instead}"
            ))
        } else if provider == "aws" && spec.secret_ref.is_none() {
            Some(
                "provider 'aws' without a secretRef needs AWS workload identity (IRSA, instance roles), \
                 which is not available: give static keys in secretRef"
                    .to_string(),
            )
        } else if provider == "gcp" && spec.secret_ref.is_none() && gcs::is_google(&gcs::endpoint(spec)) {
            Some(format!(
                "provider 'gcp' without a secretRef needs GCP workload identity, which is not available: give {instead}"
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            return Err(run.stall(reasons::AUTHENTICATION_FAILED, message));
        }
        if spec.endpoint.is_empty() {
            return Err(run.stall(reasons::URL_INVALID, "spec.endpoint is required".into()));
        }
        Ok(())
    }

    /// Step 2: the stored artifact is still there (else forgotten, so it is rebuilt), and older
    /// artifacts are garbage-collected.
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

    /// Step 3: the client: access keys of `secretRef`, CA and client certificate of
    /// `certSecretRef`, proxy of `proxySecretRef`.
    async fn connect(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let connection = connect(run.obj, &run.ctx.client).await;
        run.connection = Some(connection.map_err(|problem| {
            common::fail(
                run.status,
                run.generation,
                ct::FETCH_FAILED,
                reasons::AUTHENTICATION_FAILED,
                problem,
            )
        })?);
        Ok(())
    }

    /// Step 4: the index of the bucket (ignore rules applied) and its revision.
    async fn index(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let connection = run.connection()?;
        let bucket = run.obj.spec.bucket_name.clone();
        let listed = tokio::time::timeout(run.timeout, async {
            let ignore_file = match connection.get(IGNORE_FILE).await? {
                Some((response, _)) => Some(response.text().await.map_err(|e| e.without_url().to_string())?),
                None => None,
            };
            let rules = ignore_rules(ignore_file.as_deref(), run.obj.spec.ignore.as_deref());
            let keep = |key: &str| kept(&rules, key);
            connection
                .index(run.obj.spec.prefix.as_deref().unwrap_or_default(), keep)
                .await
        })
        .await;
        let what = format!("failed to list objects from bucket '{bucket}'");
        let index = match listed {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(run.bucket_failed_with(&what, Ok(e))),
            Err(elapsed) => return Err(run.bucket_failed_with(&what, Err(elapsed))),
        };
        run.revision = index_revision(&index);
        run.index = index;
        Ok(())
    }

    /// Step 5: unless the stored artifact has this revision and ignore rules, the indexed
    /// objects downloaded and archived as the artifact.
    async fn fetch(&self, run: &mut Run<'_>) -> Result<(), ReconcileError> {
        let current = run
            .status
            .artifact
            .as_ref()
            .is_some_and(|a| a.revision == run.revision)
            && run.status.observed_ignore == run.obj.spec.ignore;
        if current {
            return Ok(());
        }
        let (generation, revision) = (run.generation, run.revision.clone());
        let had_artifact = run.status.artifact.is_some();
        let message = common::outdated(run.status, had_artifact, generation, &revision);
        run.ctx.progress(run.obj, run.status, &message).await;

        let workdir = tempfile::tempdir().map_err(|e| {
            let m = format!("failed to create temporary directory: {e}");
            failed(
                run.status,
                generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::DIRECTORY_CREATION_FAILED,
                m,
            )
        })?;
        let content = workdir.path().join("content");
        let bucket = run.obj.spec.bucket_name.clone();
        for key in run.index.keys() {
            if confined(&content, key).is_none() {
                let m = format!("object key '{key}' leaves the artifact: refused");
                return Err(run.stall(reasons::BUCKET_OPERATION_FAILED, m));
            }
        }
        let connection = run.connection()?;
        let downloads = futures::stream::iter(run.index.keys().cloned())
            .map(|key| {
                let path = confined(&content, &key).unwrap_or_default();
                async move {
                    let response = connection
                        .get(&key)
                        .await
                        .map_err(|e| format!("failed to get '{key}' object: {e}"))?;
                    let Some((response, etag)) = response else {
                        return Ok((key, None));
                    };
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    let mut file = tokio::fs::File::create(&path).await.map_err(|e| e.to_string())?;
                    let mut body = response.bytes_stream();
                    while let Some(chunk) = body.try_next().await.map_err(|e| e.without_url().to_string())? {
                        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    // tokio's file returns from a write once it has handed the bytes to a
                    // blocking thread; unflushed, the archive (another blocking task) could read
                    // the object before its last write landed, empty or short: an artifact
                    // missing manifests, whose consumers would prune what they describe.
                    tokio::io::AsyncWriteExt::flush(&mut file)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<(String, Option<Option<String>>), String>((key, Some(etag)))
                }
            })
            .buffer_unordered(DOWNLOADS_AT_ONCE)
            .try_collect::<Vec<_>>();
        let what = format!("failed to fetch objects from bucket '{bucket}'");
        let fetched = match tokio::time::timeout(run.timeout, downloads).await {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(e)) => return Err(run.bucket_failed_with(&what, Ok(e))),
            Err(elapsed) => return Err(run.bucket_failed_with(&what, Err(elapsed))),
        };
        // An object deleted since the listing leaves the index, and a downloaded one's ETag is
        // the one indexed, as Flux's fetch does: the revision describes what was archived.
        for (key, downloaded) in fetched {
            match downloaded {
                None => {
                    run.index.remove(&key);
                }
                Some(Some(etag)) => {
                    run.index.insert(key, etag);
                }
                Some(None) => {}
            }
        }
        run.revision = index_revision(&run.index);
        let revision = run.revision.clone();
        std::fs::create_dir_all(&content).ok();
        let (storage, rev) = (self.storage.clone(), revision.clone());
        let (ns, name) = (run.namespace.clone(), run.name.clone());
        let file = format!("{}.tar.gz", revision.trim_start_matches("sha256:"));
        let stored_artifact = blocking(run.timeout, move || {
            let dir = ObjectDir {
                kind: STORAGE_KIND,
                namespace: &ns,
                name: &name,
            };
            storage.store_dir(&dir, &file, &content, &|_: &str, _: bool| true, &rev, None)
        })
        .await;
        let artifact = stored_artifact.map_err(|e| {
            failed(
                run.status,
                generation,
                ct::STORAGE_OPERATION_FAILED,
                reasons::ARCHIVE_OPERATION_FAILED,
                format!("unable to store artifact: {e}"),
            )
        })?;
        drop(workdir);
        let digest = artifact.digest.clone();
        run.status.artifact = Some(artifact);
        run.status.url = Some(self.storage.latest_url(&ObjectDir {
            kind: STORAGE_KIND,
            namespace: &run.namespace,
            name: &run.name,
        }));
        run.status.observed_ignore = run.obj.spec.ignore.clone();
        let objects = run.index.len();
        run.ctx
            .announce(
                run.obj,
                reasons::NEW_ARTIFACT,
                &format!("stored artifact with {objects} fetched files from '{bucket}' bucket"),
                &[("revision", revision.as_str()), ("digest", digest.as_str())],
            )
            .await;
        Ok(())
    }
}

/// The client of `obj`'s bucket from its Secrets.
async fn connect(obj: &Bucket, kube: &kube::Client) -> Result<Connection, Problem> {
    let namespace = obj.namespace().unwrap_or_default();
    let spec = &obj.spec;
    let provider = spec
        .provider
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("generic");
    let gcp = provider == "gcp";
    let secret = match &spec.secret_ref {
        Some(r) => Some((
            r.name.clone(),
            common::secret_data(kube, &namespace, &r.name).await?,
        )),
        None => None,
    };
    let mut credentials = None;
    let mut service_account = None;
    if let Some((name, data)) = secret.as_ref().filter(|_| gcp) {
        match common::secret_text(data, "serviceaccount") {
            Some(key) => service_account = Some(key),
            None => {
                return Err(Problem::Invalid(format!(
                    "invalid '{name}' secret data: required fields 'serviceaccount'"
                )));
            }
        }
    } else if let Some((name, data)) = secret.as_ref().filter(|_| provider != "azure") {
        match (
            common::secret_text(data, "accesskey"),
            common::secret_text(data, "secretkey"),
        ) {
            (Some(key), Some(secret)) => credentials = Some(Credentials::new(key, secret)),
            _ => {
                return Err(Problem::Invalid(format!(
                    "invalid '{name}' secret data: required fields 'accesskey' and 'secretkey'"
                )));
            }
        }
    }
    let tls = match &spec.cert_secret_ref {
        Some(r) => common::tls_from_secret(kube, &namespace, &r.name).await?,
        None => common::TlsMaterial::default(),
    };
    let proxy = match &spec.proxy_secret_ref {
        Some(r) => Some(common::proxy_from_secret_ref(kube, &namespace, &r.name).await?),
        None => None,
    };
    let settings = ClientSettings {
        ca: tls.ca.as_deref(),
        identity: tls.identity.as_deref(),
        proxy: proxy.as_deref(),
    };
    let http =
        client(&settings, concat!("driftless/", env!("CARGO_PKG_VERSION"))).map_err(Problem::Invalid)?;
    let scheme = if spec.insecure == Some(true) {
        "http"
    } else {
        "https"
    };
    let written = if gcp {
        gcs::endpoint(spec)
    } else {
        spec.endpoint.clone()
    };
    let endpoint = if written.contains("://") {
        written.clone()
    } else {
        format!("{scheme}://{written}")
    };
    let endpoint = url::Url::parse(&endpoint)
        .map_err(|e| Problem::Invalid(format!("invalid endpoint '{written}': {e}")))?;
    if provider == "azure" {
        return azure_connection(http, endpoint, &spec.bucket_name, secret);
    }
    if gcp {
        let token = match service_account {
            Some(key) => Some(gcs::access_token(&http, &key).await?),
            None => None,
        };
        return Ok(Connection {
            http,
            api: ObjectApi::Gcs {
                base: endpoint,
                bucket: spec.bucket_name.clone(),
                token,
            },
        });
    }
    let region = spec
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into());
    let bucket = rusty_s3::Bucket::new(endpoint, UrlStyle::Path, spec.bucket_name.clone(), region)
        .map_err(|e| Problem::Invalid(format!("invalid bucket '{}': {e}", spec.bucket_name)))?;
    Ok(Connection {
        http,
        api: ObjectApi::S3 { bucket, credentials },
    })
}

/// The Azure Blob container of a Bucket, with the credentials of its Secret: `accountKey`
/// (Shared Key, the account read from the endpoint) or `sasKey`. Azure AD credentials need
/// Microsoft's identity platform, which is not available: refused with a plain message.
fn azure_connection(
    http: reqwest::Client,
    endpoint: url::Url,
    container: &str,
    secret: Option<(String, BTreeMap<String, Vec<u8>>)>,
) -> Result<Connection, Problem> {
    let mut url = endpoint.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| Problem::Invalid(format!("invalid endpoint '{endpoint}'")))?
        .pop_if_empty()
        .push(container);
    let mut key = None;
    let mut sas = Vec::new();
    if let Some((name, data)) = secret {
        let text = |k: &str| common::secret_text(&data, k);
        if let Some(account_key) = text("accountKey") {
            let account = driftless_runtime::azure::account_of(&endpoint).ok_or_else(|| {
                Problem::Invalid(format!(
                    "failed to extract account name from endpoint: expected '{}' to be a subdomain",
                    endpoint.host_str().unwrap_or_default()
                ))
            })?;
            key = Some(
                driftless_runtime::azure::SharedKey::new(&account, &account_key)
                    .map_err(|e| Problem::Invalid(format!("invalid 'accountKey' in '{name}' secret: {e}")))?,
            );
        } else if let Some(token) = text("sasKey") {
            sas = url::form_urlencoded::parse(token.trim_start_matches('?').as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        } else if [
            "clientId",
            "tenantId",
            "clientSecret",
            "clientCertificate",
            "authorityHost",
        ]
        .iter()
        .any(|k| data.contains_key(*k))
        {
            return Err(Problem::Invalid(format!(
                "Azure AD credentials in '{name}' secret (clientId, tenantId, …) need Microsoft's identity platform, \
                 which is not available: give an 'accountKey' or a 'sasKey'"
            )));
        } else {
            return Err(Problem::Invalid(format!(
                "invalid '{name}' secret data: requires a 'clientId' or 'accountKey' field, a combination of 'tenantId', 'clientId' and 'clientSecret', or 'tenantId', 'clientId' and 'clientCertificate'"
            )));
        }
    }
    Ok(Connection {
        http,
        api: ObjectApi::Azure {
            container: url,
            key,
            sas,
        },
    })
}

impl Reconciler for BucketReconciler {
    type Kind = Bucket;

    /// 1. [`validate`](Self::validate): a provider this controller serves, an endpoint;
    /// 2. [`storage`](Self::storage): the stored artifact still there, older ones collected;
    /// 3. [`connect`](Self::connect): the client from the Secrets;
    /// 4. [`index`](Self::index): the bucket's index and its revision;
    /// 5. [`fetch`](Self::fetch): the objects, archived as the artifact, unless it is current.
    async fn apply(
        &self,
        obj: &Bucket,
        status: &mut BucketStatus,
        ctx: &ReconcileContext<Bucket>,
    ) -> Result<Success, ReconcileError> {
        let mut run = Run {
            obj,
            status,
            ctx,
            generation: obj.meta().generation,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            timeout: timeout_of(obj.spec.timeout.as_deref(), common::SOURCE_TIMEOUT),
            connection: None,
            index: BTreeMap::new(),
            revision: String::new(),
        };
        self.validate(&mut run).await?;
        self.storage(&mut run).await?;
        self.connect(&mut run).await?;
        self.index(&mut run).await?;
        self.fetch(&mut run).await?;
        Ok(stored(run.status, run.generation, &run.revision))
    }

    async fn cleanup(&self, obj: &Bucket, _ctx: &ReconcileContext<Bucket>) -> Result<(), ReconcileError> {
        common::remove_artifacts(
            &self.storage,
            STORAGE_KIND,
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flux's index digest: `key etag` lines in key order.
    #[test]
    fn the_revision_is_fluxs_index_digest() {
        let index: BTreeMap<String, String> = [("b.yaml", "e2"), ("a/x.yaml", "e1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let expected = hex::encode(Sha256::digest(b"a/x.yaml e1\nb.yaml e2\n"));
        assert_eq!(index_revision(&index), format!("sha256:{expected}"));
    }

    #[test]
    fn keys_stay_in_the_artifact() {
        let root = Path::new("/work");
        assert_eq!(
            confined(root, "apps/a.yaml"),
            Some(PathBuf::from("/work/apps/a.yaml"))
        );
        for key in ["../etc/passwd", "/etc/passwd", "apps/../../x", ""] {
            assert_eq!(confined(root, key), None, "{key}");
        }
    }

    #[test]
    fn ignore_rules_have_no_defaults() {
        let rules = ignore_rules(Some("*.md\n"), Some("/secret/\n"));
        let ignored = |key: &str| !kept(&rules, key);
        assert!(ignored("README.md") && ignored("secret/a.yaml"));
        assert!(!ignored("apps/logo.png") && !ignored(".github/ci.yml"));
        // Rooted keys are matched as relative ones, never a panic.
        assert!(ignored("//README.md") && !ignored("/apps/a.yaml") && !ignored("/"));
    }
}
