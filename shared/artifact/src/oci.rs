//! Flux OCI artifacts: the layout `flux push artifact` writes, and registry credentials.
//!
//! An artifact is an OCI image manifest whose config has media type
//! [`FLUX_CONFIG_MEDIA_TYPE`] and whose single layer is a deterministic tar.gz of the directory
//! ([`FLUX_CONTENT_MEDIA_TYPE`]), annotated with `org.opencontainers.image.{created,source,revision}`.

use crate::archive;
use oci_client::{
    Client, Reference,
    client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer},
    manifest::OciImageManifest,
    secrets::RegistryAuth,
};
use std::{collections::BTreeMap, path::Path};

/// Config media type of Flux artifacts.
pub const FLUX_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
/// Content layer media type of Flux artifacts.
pub const FLUX_CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
/// Annotation with the source revision (`<branch>@sha1:<commit>`).
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
/// Annotation with the source URL.
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
/// Annotation with the creation time.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// A registry client; `insecure` speaks plain HTTP.
pub fn client(insecure: bool) -> Client {
    connect(&Connection {
        insecure,
        ..Default::default()
    })
}

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct Connection<'a> {
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// PEM CA bundle trusted in addition to the system roots (OCIRepository `certSecretRef`).
    pub ca: Option<&'a [u8]>,
    /// Proxy URL, credentials embedded (OCIRepository `proxySecretRef`).
    pub proxy: Option<&'a str>,
}

/// A registry client for `connection`.
pub fn connect(connection: &Connection<'_>) -> Client {
    crate::install_crypto_provider();
    let extra_root_certificates = connection
        .ca
        .map(|pem| {
            vec![Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.to_vec(),
            }]
        })
        .unwrap_or_default();
    Client::new(ClientConfig {
        protocol: if connection.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        extra_root_certificates,
        http_proxy: connection.proxy.map(str::to_string),
        https_proxy: connection.proxy.map(str::to_string),
        ..Default::default()
    })
}

/// Parses `oci://host/repo` (no tag) into `host/repo`.
pub fn repository_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("oci://")?;
    (!rest.is_empty() && rest.contains('/') && !rest.ends_with('/')).then_some(rest)
}

/// Registry credentials for `registry` from a `.dockerconfigjson` document.
pub fn auth_from_docker_config(config: &[u8], registry: &str) -> Result<RegistryAuth, String> {
    let v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| format!("invalid docker config JSON: {e}"))?;
    let auths = v
        .get("auths")
        .and_then(|a| a.as_object())
        .ok_or("docker config has no 'auths'")?;
    let entry = auths.iter().find(|(host, _)| {
        let h = host.trim_start_matches("https://").trim_start_matches("http://");
        h.split('/').next().map(docker_hub_as_one) == Some(docker_hub_as_one(registry))
    });
    let Some((_, entry)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(u), Some(p)) = (
        entry.get("username").and_then(|x| x.as_str()),
        entry.get("password").and_then(|x| x.as_str()),
    ) {
        return Ok(RegistryAuth::Basic(u.to_string(), p.to_string()));
    }
    if let Some(a) = entry.get("auth").and_then(|x| x.as_str()) {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("docker config 'auth' is not base64")?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or("docker config 'auth' is not user:password")?;
        return Ok(RegistryAuth::Basic(u.to_string(), p.to_string()));
    }
    Ok(RegistryAuth::Anonymous)
}

/// Docker Hub goes by several host names (`docker.io`, `index.docker.io` — the key `docker
/// login` writes —, `registry-1.docker.io`); they name one registry.
fn docker_hub_as_one(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// What to record about the pushed content.
#[derive(Debug, Clone, Default)]
pub struct PushMetadata {
    /// `org.opencontainers.image.source`.
    pub source: String,
    /// `org.opencontainers.image.revision`.
    pub revision: String,
    /// Extra annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Pushes `dir` to `reference` (`host/repo:tag`) in Flux's layout; returns the manifest digest.
pub async fn push_dir(
    client: &Client,
    reference: &str,
    auth: &RegistryAuth,
    dir: &Path,
    meta: &PushMetadata,
    created: &str,
) -> Result<String, String> {
    let reference: Reference = reference
        .parse()
        .map_err(|e| format!("invalid reference {reference:?}: {e}"))?;
    let dir = dir.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        archive::write_tar_gz(&dir, &|_: &str, _| true, &mut buf).map(|_| buf)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("archiving: {e}"))?;
    let mut annotations = meta.annotations.clone();
    annotations.insert(CREATED_ANNOTATION.into(), created.into());
    annotations.insert(SOURCE_ANNOTATION.into(), meta.source.clone());
    annotations.insert(REVISION_ANNOTATION.into(), meta.revision.clone());
    let layers = vec![ImageLayer::new(layer, FLUX_CONTENT_MEDIA_TYPE.to_string(), None)];
    let config = Config::new(b"{}".to_vec(), FLUX_CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations.into_iter().collect()));
    manifest.media_type = Some("application/vnd.oci.image.manifest.v1+json".into());
    let resp = client
        .push(&reference, &layers, config, auth, Some(manifest))
        .await
        .map_err(|e| format!("pushing {reference}: {e}"))?;
    let digest = client
        .fetch_manifest_digest(&reference, auth)
        .await
        .map_err(|e| format!("reading back {} : {e}", resp.manifest_url))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials_are_found_by_registry_host() {
        let cfg = br#"{"auths":{"https://ghcr.io":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#;
        assert_eq!(
            auth_from_docker_config(cfg, "ghcr.io").unwrap(),
            RegistryAuth::Basic("user".into(), "pass".into())
        );
        assert_eq!(
            auth_from_docker_config(cfg, "127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("a".into(), "b".into())
        );
        assert_eq!(
            auth_from_docker_config(cfg, "docker.io").unwrap(),
            RegistryAuth::Anonymous
        );
        let hub = br#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            auth_from_docker_config(hub, "docker.io").unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert!(auth_from_docker_config(b"nope", "x").is_err());
    }

    #[test]
    fn oci_urls_name_a_repository() {
        assert_eq!(
            repository_of("oci://127.0.0.1:15000/app"),
            Some("127.0.0.1:15000/app")
        );
        assert_eq!(
            repository_of("oci://ghcr.io/org/manifests/podinfo"),
            Some("ghcr.io/org/manifests/podinfo")
        );
        assert_eq!(repository_of("oci://ghcr.io"), None);
        assert_eq!(repository_of("https://ghcr.io/x"), None);
    }
}
