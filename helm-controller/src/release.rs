//! What Helm stored about a release, read straight from its storage Secrets, and the names a
//! HelmRelease gives its release.
//!
//! Helm keeps every revision of a release in a Secret `sh.helm.release.v1.<name>.v<version>`
//! (type `helm.sh/release.v1`, labels `owner=helm`, `name`, `status`, `version`) whose
//! `data.release` is base64 of the gzipped release JSON. Reading it with one list request costs
//! far less than a `helm history` plus a `helm get` process per reconcile, and gives the
//! config, manifest and hooks the state machine and the inventory need. Writing stays Helm's:
//! every change to a release goes through the `helm` CLI.

use std::io::Read;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Helm's limit on release names.
const MAX_RELEASE_NAME: usize = 53;

/// The release name of a HelmRelease: `releaseName`, else `[targetNamespace-]name`; a name
/// over 53 characters becomes its first 40 characters, `-` and 12 hex digits of its sha256,
/// as Flux shortens it.
pub fn release_name(name: &str, target_namespace: Option<&str>, release_name: Option<&str>) -> String {
    let full = match (
        release_name.filter(|n| !n.is_empty()),
        target_namespace.filter(|n| !n.is_empty()),
    ) {
        (Some(r), _) => r.to_string(),
        (None, Some(ns)) => format!("{ns}-{name}"),
        (None, None) => name.to_string(),
    };
    if full.len() <= MAX_RELEASE_NAME {
        return full;
    }
    let digest = hex::encode(Sha256::digest(full.as_bytes()));
    let head: String = full.chars().take(40).collect();
    format!("{head}-{}", &digest[..12])
}

/// Whether `name` is a valid release name (Helm's rule: a DNS-1123 subdomain of at most 53
/// characters). It keeps names from being read as `helm` flags or label-selector syntax.
pub fn valid_release_name(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= MAX_RELEASE_NAME && name.split('.').all(label)
}

/// Largest decompressed release the controller reads (a stored release is a few MB at most;
/// a Secret that merely carries Helm's labels must not exhaust memory).
const MAX_RELEASE_BYTES: u64 = 64 << 20;

/// One revision of a release as Helm stored it (the fields the controller reads).
#[derive(Clone, Debug, Deserialize)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub version: i64,
    #[serde(default)]
    pub info: Info,
    #[serde(default)]
    pub chart: Option<Chart>,
    /// The values the user supplied (not merged with the chart's defaults).
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// `sha256:` of the stored JSON, the snapshot digest.
    #[serde(skip)]
    pub digest: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub first_deployed: Option<String>,
    #[serde(default)]
    pub last_deployed: Option<String>,
    #[serde(default)]
    pub deleted: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Chart {
    pub metadata: ChartMetadata,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ChartMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "appVersion")]
    pub app_version: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Hook {
    pub name: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub last_run: Option<HookRun>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct HookRun {
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub phase: String,
}

impl Release {
    pub fn chart_name(&self) -> &str {
        self.chart
            .as_ref()
            .map(|c| c.metadata.name.as_str())
            .unwrap_or_default()
    }
    pub fn chart_version(&self) -> &str {
        self.chart
            .as_ref()
            .map(|c| c.metadata.version.as_str())
            .unwrap_or_default()
    }
    pub fn app_version(&self) -> Option<&str> {
        self.chart
            .as_ref()
            .and_then(|c| c.metadata.app_version.as_deref())
    }
    /// `<namespace>/<name>.v<version>`, as Flux names a release revision in messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}.v{}", self.namespace, self.name, self.version)
    }
    /// Digest of the user-supplied values, comparable with [`config_digest`] of new values.
    pub fn config_digest(&self) -> String {
        config_digest(self.config.as_ref().unwrap_or(&Value::Null))
    }
    /// A `pending-*` status: an action was cut short and the release is locked.
    pub fn is_pending(&self) -> bool {
        self.info.status.starts_with("pending-")
    }
    /// The test hooks of the release.
    pub fn test_hooks(&self) -> impl Iterator<Item = &Hook> {
        self.hooks
            .iter()
            .filter(|h| h.events.iter().any(|e| e == "test" || e == "test-success"))
    }
}

/// `sha256:<hex>` of values as canonical JSON (object keys sorted, as `serde_json` keeps them);
/// empty values and no values are the same.
pub fn config_digest(values: &Value) -> String {
    let values = if values.is_null() {
        Value::Object(Default::default())
    } else {
        whole_numbers(values)
    };
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(values.to_string().as_bytes()))
    )
}

/// Whole-number floats as integers: Helm stores `replicas: 1.0` from a values file as `1`, and
/// the digests of what was given and what was stored must agree.
fn whole_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| Value::from(f as i64))
            .unwrap_or_else(|| value.clone()),
        Value::Array(items) => Value::Array(items.iter().map(whole_numbers).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), whole_numbers(v))).collect()),
        other => other.clone(),
    }
}

/// Every stored revision of release `name` in `namespace`, newest first.
pub async fn history(client: &Client, namespace: &str, name: &str) -> Result<Vec<Release>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = secrets
        .list(&ListParams::default().labels(&format!("owner=helm,name={name}")))
        .await
        .map_err(|e| format!("failed to read the storage of release {namespace}/{name}: {e}"))?;
    let mut releases = Vec::new();
    for secret in list.items {
        if secret.type_.as_deref() != Some("helm.sh/release.v1") {
            continue;
        }
        let Some(data) = secret.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        match decode(&data.0) {
            Ok(release) => releases.push(release),
            Err(e) => tracing::warn!(secret = ?secret.metadata.name, %e, "unreadable Helm release"),
        }
    }
    releases.sort_by_key(|r| std::cmp::Reverse(r.version));
    Ok(releases)
}

/// Decodes `data.release`: base64 text of gzipped JSON (gzip is optional, as Helm reads it).
pub fn decode(data: &[u8]) -> Result<Release, String> {
    let json = decompress(data)?;
    let mut release: Release = serde_json::from_slice(&json).map_err(|e| format!("not a release: {e}"))?;
    release.digest = format!("sha256:{}", hex::encode(Sha256::digest(&json)));
    Ok(release)
}

/// Decodes `data.release` as plain JSON, every field kept (to write it back changed).
pub fn decode_value(data: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(&decompress(data)?).map_err(|e| format!("not a release: {e}"))
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("not base64: {e}"))?;
    if !bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(MAX_RELEASE_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    Ok(out)
}

/// The objects of a release manifest (`---`-separated YAML documents); empty documents skipped.
pub fn manifest_objects(manifest: &str) -> Result<Vec<Value>, String> {
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(manifest) {
        let value = Value::deserialize(document).map_err(|e| format!("unreadable release manifest: {e}"))?;
        if value.is_object() {
            objects.push(value);
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn release_names_follow_flux() {
        assert_eq!(release_name("podinfo", None, None), "podinfo");
        assert_eq!(release_name("podinfo", Some("apps"), None), "apps-podinfo");
        assert_eq!(release_name("podinfo", Some("apps"), Some("web")), "web");
        let long = release_name(&"a".repeat(30), Some(&"b".repeat(30)), None);
        assert_eq!(long.len(), 53);
        assert!(long.starts_with(&format!("{}-", "b".repeat(30))));
        assert_eq!(&long[40..41], "-");
    }

    #[test]
    fn stored_releases_are_decoded() {
        let json = serde_json::json!({"name": "web", "namespace": "apps", "version": 2,
            "info": {"status": "deployed", "description": "Upgrade complete"},
            "chart": {"metadata": {"name": "podinfo", "version": "6.14.1", "appVersion": "6.14.1"}},
            "config": {"replicaCount": 2}, "manifest": "---\nkind: A\n---\n# empty\n---\nkind: B\n",
            "hooks": [{"name": "t", "events": ["test"], "last_run": {"phase": "Succeeded"}}]});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.to_string().as_bytes()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let release = decode(encoded.as_bytes()).unwrap();
        assert_eq!(release.full_name(), "apps/web.v2");
        assert_eq!(release.chart_version(), "6.14.1");
        assert_eq!(release.test_hooks().count(), 1);
        assert_eq!(
            release.config_digest(),
            config_digest(&serde_json::json!({"replicaCount": 2}))
        );
        assert_eq!(manifest_objects(&release.manifest).unwrap().len(), 2);
        assert_eq!(config_digest(&Value::Null), config_digest(&serde_json::json!({})));
        assert_eq!(
            config_digest(&serde_json::json!({"a": [1.0]})),
            config_digest(&serde_json::json!({"a": [1]}))
        );
        assert!(valid_release_name("apps-podinfo.v2"));
        assert!(!valid_release_name("--kube-as-group=x"));
        assert!(!valid_release_name("Web"));
        assert_eq!(release_name(&"é".repeat(50), None, None).chars().count(), 53);
    }
}
