//! Pulling from an OCI registry (distribution spec v2): tags, manifest digests, manifests and
//! blobs, with token or basic authentication, a private CA, a TLS client certificate and a
//! proxy.
//!
//! Pushes go through oci-client ([`crate::oci::push_dir`]), but oci-client cannot present a TLS
//! client certificate, which OCIRepository's `certSecretRef` (`tls.crt`/`tls.key`) needs; so
//! pulls use this small client over reqwest. It reuses oci-client's manifest types.

use crate::oci::Connection;
use futures::StreamExt;
use oci_client::{manifest::OciDescriptor, manifest::OciImageManifest, secrets::RegistryAuth};
use reqwest::{Method, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;

/// Manifest media types a pull accepts: OCI and Docker v2 images and their indexes.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of an OCI image index (the referrers list is one).
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Largest manifest read.
const MAX_MANIFEST: usize = 4 << 20;

/// A manifest that refers to another (an entry of a referrers index).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// The referring manifest's digest.
    pub digest: String,
    /// What kind of artifact it is (`application/vnd.dev.sigstore.bundle.v0.3+json`, …).
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// A pull client for one repository (`host/path`) of a registry.
pub struct Puller {
    http: reqwest::Client,
    /// `https://host` or `http://host`.
    base: String,
    /// The repository path inside the registry.
    repository: String,
    auth: RegistryAuth,
    /// The `Authorization` value earned by the last challenge, reused until refused.
    authorization: Mutex<Option<String>>,
}

impl Puller {
    /// A client for `repository` (`host/path`) reached as `connection` says, with `auth`.
    /// `identity` is a PEM client certificate and its key (`tls.crt` + `tls.key`).
    pub fn new(
        connection: &Connection<'_>,
        identity: Option<&[u8]>,
        repository: &str,
        auth: RegistryAuth,
    ) -> Result<Self, String> {
        crate::install_crypto_provider();
        let (host, path) = repository
            .split_once('/')
            .ok_or_else(|| format!("invalid repository '{repository}': expected <registry>/<path>"))?;
        // Docker Hub's API lives on another host than its name.
        let host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        let scheme = if connection.insecure { "http" } else { "https" };
        let settings = crate::http::ClientSettings {
            ca: connection.ca,
            identity,
            proxy: connection.proxy,
        };
        let http = crate::http::client(&settings, concat!("driftless/", env!("CARGO_PKG_VERSION")))?;
        Ok(Self {
            http,
            base: format!("{scheme}://{host}"),
            repository: path.to_string(),
            auth,
            authorization: Mutex::new(None),
        })
    }

    /// All tags of the repository, following the registry's pagination.
    pub async fn tags(&self) -> Result<Vec<String>, String> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut next = Some(format!("{}/v2/{}/tags/list", self.base, self.repository));
        while let Some(url) = next.take() {
            let resp = self.send(Method::GET, &url, None).await?;
            let resp = ok(resp, "list tags").await?;
            next = next_page(&self.base, resp.headers());
            let page: TagList = resp.json().await.map_err(|e| format!("invalid tag list: {e}"))?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// The digest of the manifest `reference` (a tag or a digest) names, from a HEAD request
    /// (nothing is downloaded when the registry reports the digest).
    pub async fn manifest_digest(&self, reference: &str) -> Result<String, String> {
        let url = self.manifest_url(reference);
        let resp = self.send(Method::HEAD, &url, Some(MANIFEST_ACCEPT)).await?;
        let resp = ok(resp, "read manifest").await?;
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            return Ok(d.to_string());
        }
        let (_, digest) = self.manifest_bytes(reference).await?;
        Ok(digest)
    }

    /// The image manifest `reference` names, or None when the registry has none by that name.
    pub async fn manifest_if_present(&self, reference: &str) -> Result<Option<OciImageManifest>, String> {
        let Some((body, _)) = self.manifest_body(reference, MANIFEST_ACCEPT).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| format!("invalid manifest: {e}"))
    }

    /// The manifests that name `digest` as their subject (OCI 1.1 referrers): from the referrers
    /// API, or, where the registry has none (404), from the referrers tag `sha256-<hex>`.
    pub async fn referrers(&self, digest: &str) -> Result<Vec<Referrer>, String> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Referrer>,
        }
        let api = format!("{}/v2/{}/referrers/{digest}", self.base, self.repository);
        let resp = self.send(Method::GET, &api, Some(OCI_INDEX)).await?;
        let body = if resp.status() == StatusCode::NOT_FOUND {
            let tag = digest.replacen(':', "-", 1);
            match self.manifest_body(&tag, OCI_INDEX).await? {
                Some((body, _)) => body,
                None => return Ok(Vec::new()),
            }
        } else {
            let resp = ok(resp, "read referrers").await?;
            resp.bytes()
                .await
                .map_err(|e| format!("read referrers: {e}"))?
                .to_vec()
        };
        let index: Index =
            serde_json::from_slice(&body).map_err(|e| format!("invalid referrers index: {e}"))?;
        Ok(index.manifests)
    }

    /// The image manifest `reference` names and its digest. An index resolves to the entry for
    /// this machine's platform (linux and its architecture), else to its first entry.
    pub async fn manifest(&self, reference: &str) -> Result<(OciImageManifest, String), String> {
        let (body, digest) = self.manifest_bytes(reference).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("invalid manifest: {e}"))?;
        if let Some(entries) = value.get("manifests").and_then(|m| m.as_array()) {
            let entry = pick_platform(entries).ok_or("the image index lists no manifests")?;
            let (body, digest) = self.manifest_bytes(entry).await?;
            let manifest = serde_json::from_slice(&body).map_err(|e| format!("invalid manifest: {e}"))?;
            return Ok((manifest, digest));
        }
        let manifest = serde_json::from_value(value).map_err(|e| format!("invalid manifest: {e}"))?;
        Ok((manifest, digest))
    }

    /// Streams the blob `descriptor` names into `out` (a file, or a `Vec<u8>` for small blobs),
    /// checking its size and sha256 digest.
    pub async fn blob<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        descriptor: &OciDescriptor,
        out: &mut W,
    ) -> Result<(), String> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, descriptor.digest);
        let resp = self.send(Method::GET, &url, None).await?;
        let resp = ok(resp, "pull blob").await?;
        let expected = u64::try_from(descriptor.size).unwrap_or(0);
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("pull blob: {e}"))?;
            written += chunk.len() as u64;
            if written > expected {
                return Err(format!(
                    "blob {} is larger than its descriptor says ({expected} bytes)",
                    descriptor.digest
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        out.flush().await.map_err(|e| e.to_string())?;
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if written != expected || digest != descriptor.digest {
            return Err(format!(
                "blob {} does not match its descriptor (got {digest}, {written} bytes)",
                descriptor.digest
            ));
        }
        Ok(())
    }

    fn manifest_url(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.base, self.repository)
    }

    /// The manifest body and its digest; a missing manifest is an error.
    async fn manifest_bytes(&self, reference: &str) -> Result<(Vec<u8>, String), String> {
        self.manifest_body(reference, MANIFEST_ACCEPT)
            .await?
            .ok_or_else(|| {
                format!(
                    "read manifest: {}: 404 manifest unknown",
                    self.manifest_url(reference)
                )
            })
    }

    /// A manifest (or index) body and its digest, None on a 404; a digest reference must match
    /// what was received.
    async fn manifest_body(
        &self,
        reference: &str,
        accept: &str,
    ) -> Result<Option<(Vec<u8>, String)>, String> {
        let resp = self
            .send(Method::GET, &self.manifest_url(reference), Some(accept))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = ok(resp, "read manifest").await?;
        let body = resp.bytes().await.map_err(|e| format!("read manifest: {e}"))?;
        if body.len() > MAX_MANIFEST {
            return Err(format!("manifest is larger than {MAX_MANIFEST} bytes"));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(format!(
                "manifest {reference} does not match its content ({digest})"
            ));
        }
        Ok(Some((body.to_vec(), digest)))
    }

    /// Sends a request with the current authorization; on a 401 answers the challenge once and
    /// retries.
    async fn send(&self, method: Method, url: &str, accept: Option<&str>) -> Result<Response, String> {
        let resp = self.request(method.clone(), url, accept).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let authorization = self.answer(&challenge).await?;
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(authorization);
        let resp = self.request(method, url, accept).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(format!("{}: authentication failed", self.base));
        }
        Ok(resp)
    }

    async fn request(&self, method: Method, url: &str, accept: Option<&str>) -> Result<Response, String> {
        let mut req = self.http.request(method, url);
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        let authorization = self
            .authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.send().await.map_err(|e| describe(&e))
    }

    /// The `Authorization` value answering `challenge`: the credentials themselves for Basic, a
    /// token from the realm (asked with the credentials, if any) for Bearer.
    async fn answer(&self, challenge: &str) -> Result<String, String> {
        let challenges = http_auth::parse_challenges(challenge)
            .map_err(|e| format!("{}: unreadable authentication challenge: {e}", self.base))?;
        let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if let Some(c) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let realm =
                param(c, "realm").ok_or_else(|| format!("{}: bearer challenge without realm", self.base))?;
            let mut req = self.http.get(&realm);
            let mut query = Vec::new();
            if let Some(service) = param(c, "service") {
                query.push(("service", service));
            }
            let scope = param(c, "scope").unwrap_or_else(|| format!("repository:{}:pull", self.repository));
            query.push(("scope", scope));
            req = req.query(&query);
            if let RegistryAuth::Basic(user, password) = &self.auth {
                req = req.basic_auth(user, Some(password));
            }
            let resp = req.send().await.map_err(|e| describe(&e))?;
            if !resp.status().is_success() {
                return Err(format!(
                    "{}: the token service refused the credentials ({})",
                    self.base,
                    resp.status()
                ));
            }
            #[derive(serde::Deserialize)]
            struct Token {
                token: Option<String>,
                access_token: Option<String>,
            }
            let t: Token = resp
                .json()
                .await
                .map_err(|e| format!("invalid token response: {e}"))?;
            let token = t
                .token
                .or(t.access_token)
                .ok_or("the token response has no token")?;
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| c.scheme.eq_ignore_ascii_case("basic")) {
            let RegistryAuth::Basic(user, password) = &self.auth else {
                return Err(format!("{}: authentication required", self.base));
            };
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            return Ok(format!("Basic {encoded}"));
        }
        Err(format!("{}: authentication required", self.base))
    }
}

/// The response if it succeeded, else an error naming what failed and the registry's answer.
async fn ok(resp: Response, what: &str) -> Result<Response, String> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let url = resp.url().clone();
    let body = resp.text().await.unwrap_or_default();
    // Registries explain failures in a JSON `errors` list.
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("errors")?
                .as_array()?
                .iter()
                .filter_map(|e| e.get("message")?.as_str().map(str::to_string))
                .reduce(|a, b| format!("{a}; {b}"))
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_string());
    Err(format!("{what}: {url}: {} {detail}", status.as_u16()))
}

/// A transport error with its causes (reqwest's own message hides them).
fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// The next page of a paginated list, from a `Link: </v2/...>; rel="next"` header.
fn next_page(base: &str, headers: &header::HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    let target = link
        .split(';')
        .next()?
        .trim()
        .strip_prefix('<')?
        .strip_suffix('>')?;
    Some(
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{base}{target}")
        },
    )
}

/// This machine's architecture as OCI platforms name it.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The digest of the index entry for this machine's platform, else of the first entry.
fn pick_platform(entries: &[serde_json::Value]) -> Option<&str> {
    let arch = oci_architecture();
    let matches = |e: &&serde_json::Value| {
        e.get("platform").is_some_and(|p| {
            p.get("os").and_then(|v| v.as_str()) == Some("linux")
                && p.get("architecture").and_then(|v| v.as_str()) == Some(arch)
        })
    };
    entries
        .iter()
        .find(matches)
        .or_else(|| entries.first())?
        .get("digest")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_links_resolve_against_the_registry() {
        let mut h = header::HeaderMap::new();
        h.insert(
            header::LINK,
            "</v2/app/tags/list?last=b&n=2>; rel=\"next\"".parse().unwrap(),
        );
        assert_eq!(
            next_page("https://r.example", &h).as_deref(),
            Some("https://r.example/v2/app/tags/list?last=b&n=2")
        );
        assert_eq!(next_page("https://r.example", &header::HeaderMap::new()), None);
    }

    #[test]
    fn an_index_resolves_to_this_platform_or_its_first_entry() {
        let arch = oci_architecture();
        let entries = vec![
            serde_json::json!({"digest": "sha256:other", "platform": {"os": "windows", "architecture": arch}}),
            serde_json::json!({"digest": "sha256:mine", "platform": {"os": "linux", "architecture": arch}}),
        ];
        assert_eq!(pick_platform(&entries), Some("sha256:mine"));
        assert_eq!(pick_platform(&entries[..1]), Some("sha256:other"));
        assert_eq!(pick_platform(&[]), None);
    }
}
