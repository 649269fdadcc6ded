//! Charts fetched from Helm repositories: an HTTP repository's index and archives, an OCI
//! repository's tags and chart layers. A HelmChart's own chart and the dependencies of a chart
//! from Git or a Bucket are fetched the same way, with the credentials of the HelmRepository
//! that has the URL.

use std::sync::Arc;
use std::time::Duration;

use driftless_api::source::HelmRepository;
use driftless_artifact::oci;
use driftless_artifact::registry::Puller;
use kube::{Api, ResourceExt};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;

use super::index::{ChartIndex, IndexCache, chart_url, pick_version};
use crate::common::{self, Problem, within};
use crate::helm_repository;
use crate::storage::Storage;

/// Media types of a Helm chart layer: Helm's, and the legacy one Helm still pulls.
const CHART_LAYER_TYPES: [&str; 2] = [
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/tar+gzip",
];

/// A chart version in a repository: where to get it.
pub enum Located {
    /// An archive URL (from an HTTP repository's index).
    Archive { version: String, url: String },
    /// An OCI tag of `<repository>/<chart>` and the manifest it names.
    Oci {
        version: String,
        manifest: Box<OciImageManifest>,
        digest: String,
    },
}

impl Located {
    pub fn version(&self) -> &str {
        match self {
            Self::Archive { version, .. } | Self::Oci { version, .. } => version,
        }
    }
}

/// A Helm repository reached with the credentials of its HelmRepository (or anonymously, for a
/// dependency whose URL no HelmRepository has).
pub enum Repository {
    Http {
        /// The repository URL, as the HelmRepository (or the dependency) gives it.
        url: String,
        http: reqwest::Client,
        basic_auth: Option<(String, String)>,
        pass_credentials: bool,
        index: Arc<ChartIndex>,
    },
    Oci {
        /// `host/path` of the `oci://` URL.
        repository: String,
        connect: OciAccess,
    },
}

/// What an OCI repository is reached with.
#[derive(Clone)]
pub struct OciAccess {
    insecure: bool,
    ca: Option<Vec<u8>>,
    identity: Option<Vec<u8>>,
    auth: RegistryAuth,
}

impl OciAccess {
    /// A pull client for `repository` (`host/path`).
    pub fn puller(&self, repository: &str) -> Result<Puller, String> {
        let connection = oci::Connection {
            insecure: self.insecure,
            ca: self.ca.as_deref(),
            proxy: None,
        };
        Puller::new(
            &connection,
            self.identity.as_deref(),
            repository,
            self.auth.clone(),
        )
    }
}

/// The registry access an OCI HelmRepository's Secrets give: `secretRef` a docker config (the
/// entry for the registry host) or `username`/`password`, `certSecretRef` CA and client
/// certificate, `insecure` plain HTTP.
pub async fn oci_access(obj: &HelmRepository, kube: &kube::Client) -> Result<OciAccess, Problem> {
    let ns = obj.namespace().unwrap_or_default();
    let host = oci::repository_of(&obj.spec.url)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string();
    let mut auth = RegistryAuth::Anonymous;
    if let Some(r) = &obj.spec.secret_ref {
        let data = common::secret_data(kube, &ns, &r.name).await?;
        auth = if let Some(config) = data.get(".dockerconfigjson") {
            let found = oci::auth_from_docker_config(config, &host)
                .map_err(|e| Problem::Invalid(format!("secret '{ns}/{}': {e}", r.name)))?;
            if found == RegistryAuth::Anonymous {
                return Err(Problem::Invalid(format!(
                    "no auth config for '{host}' in the docker-registry Secret '{}'",
                    r.name
                )));
            }
            found
        } else {
            match (
                common::secret_text(&data, "username"),
                common::secret_text(&data, "password"),
            ) {
                (Some(user), Some(password)) => RegistryAuth::Basic(user, password),
                (None, None) => RegistryAuth::Anonymous,
                _ => {
                    return Err(Problem::Invalid(format!(
                        "secret '{ns}/{}' must contain both 'username' and 'password'",
                        r.name
                    )));
                }
            }
        };
    }
    let tls = match &obj.spec.cert_secret_ref {
        Some(r) => common::tls_from_secret(kube, &ns, &r.name).await?,
        None => common::TlsMaterial::default(),
    };
    Ok(OciAccess {
        insecure: obj.spec.insecure.unwrap_or(false),
        ca: tls.ca,
        identity: tls.identity,
        auth,
    })
}

/// A repository URL as Flux compares them: http(s) with one trailing `/`, oci without.
pub fn normalize_url(url: &str) -> String {
    if url.starts_with("oci://") {
        url.trim_end_matches('/').to_string()
    } else {
        format!("{}/", url.trim_end_matches('/'))
    }
}

impl Repository {
    /// The repository of `obj`, its index read from `storage` (parsed once per revision, shared).
    pub async fn of(
        obj: &HelmRepository,
        kube: &kube::Client,
        storage: &Arc<Storage>,
        indexes: &Arc<IndexCache>,
        timeout: Duration,
        index_max_size: u64,
    ) -> Result<Self, Problem> {
        if helm_repository::is_oci(obj) {
            // Flux logs in to ECR, ACR or GAR with the cloud's workload identity: not here.
            if let Some(provider) = obj
                .spec
                .provider
                .as_deref()
                .filter(|p| !p.is_empty() && *p != "generic")
            {
                return Err(Problem::Invalid(format!(
                    "HelmRepository '{}' has provider '{provider}', which needs the cloud's workload identity \
                     and is not supported: give the registry credentials in its secretRef with provider 'generic'",
                    obj.name_any()
                )));
            }
            let repository = oci::repository_of(&obj.spec.url)
                .ok_or_else(|| Problem::Invalid(format!("invalid OCI registry URL '{}'", obj.spec.url)))?
                .trim_end_matches('/')
                .to_string();
            let connect = oci_access(obj, kube).await?;
            return Ok(Self::Oci { repository, connect });
        }
        let (http, basic_auth) = helm_repository::connection(obj, kube).await?;
        let stored = obj
            .status
            .as_ref()
            .and_then(|s| s.artifact.as_ref())
            .map(|a| a.path.clone());
        let index = match stored {
            Some(path) => {
                let (file, indexes) = (storage.root().join(path), indexes.clone());
                driftless_runtime::work::blocking(timeout, move || indexes.get(&file))
                    .await
                    .map_err(|e| Problem::Unavailable(format!("failed to load the repository index: {e}")))?
            }
            None => fetch_index(&http, &obj.spec.url, basic_auth.as_ref(), timeout, index_max_size).await?,
        };
        Ok(Self::Http {
            url: obj.spec.url.clone(),
            http,
            basic_auth,
            pass_credentials: obj.spec.pass_credentials == Some(true),
            index,
        })
    }

    /// The repository at `url` for a dependency: with the HelmRepository in `namespace` that
    /// has this URL (its credentials, its stored index), else anonymous.
    pub async fn for_dependency(
        url: &str,
        namespace: &str,
        kube: &kube::Client,
        storage: &Arc<Storage>,
        indexes: &Arc<IndexCache>,
        timeout: Duration,
        index_max_size: u64,
    ) -> Result<Self, Problem> {
        let wanted = normalize_url(url);
        let repositories = Api::<HelmRepository>::namespaced(kube.clone(), namespace)
            .list(&Default::default())
            .await
            .map_err(|e| Problem::of_read("HelmRepositories", e))?;
        if let Some(obj) = repositories
            .items
            .iter()
            .find(|r| normalize_url(&r.spec.url) == wanted)
        {
            return Self::of(obj, kube, storage, indexes, timeout, index_max_size).await;
        }
        if let Some(repository) = url.strip_prefix("oci://") {
            let connect = OciAccess {
                insecure: false,
                ca: None,
                identity: None,
                auth: RegistryAuth::Anonymous,
            };
            return Ok(Self::Oci {
                repository: repository.trim_end_matches('/').to_string(),
                connect,
            });
        }
        let http = driftless_artifact::http::client(
            &driftless_artifact::http::ClientSettings::default(),
            concat!("driftless/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(Problem::Invalid)?;
        let index = fetch_index(&http, url, None, timeout, index_max_size).await?;
        Ok(Self::Http {
            url: url.to_string(),
            http,
            basic_auth: None,
            pass_credentials: false,
            index,
        })
    }

    /// The version of `chart` that `wanted` names (exact, else the highest in range) and where
    /// it is. A miss is the spec's ([`Problem::Invalid`]) for an index, the registry's for OCI.
    pub async fn locate(&self, chart: &str, wanted: &str, timeout: Duration) -> Result<Located, Problem> {
        match self {
            Self::Http { url, index, .. } => {
                let picked = pick_version(index, chart, wanted).map_err(Problem::Invalid)?;
                let reference = picked.urls.first().cloned().unwrap_or_default();
                let url = chart_url(url, &reference).map_err(Problem::Invalid)?;
                Ok(Located::Archive {
                    version: picked.version.clone(),
                    url,
                })
            }
            Self::Oci { repository, connect } => {
                let reference = format!("{repository}/{chart}");
                let puller = connect.puller(&reference).map_err(Problem::Invalid)?;
                let version = if driftless_semver::parse_version(wanted)
                    .is_some_and(|_| semver::Version::parse(wanted.trim_start_matches('v')).is_ok())
                {
                    wanted.to_string()
                } else {
                    let what = format!("could not get tags for 'oci://{reference}'");
                    let tags = within(timeout, &what, puller.tags())
                        .await
                        .map_err(Problem::Unavailable)?;
                    // OCI tags cannot hold `+`: Helm pushes `1.0.0+build` as `1.0.0_build`.
                    let tags: Vec<String> = tags.into_iter().map(|t| t.replace('_', "+")).collect();
                    if tags.is_empty() {
                        return Err(Problem::Unavailable(format!(
                            "unable to locate any tags in provided repository: oci://{reference}"
                        )));
                    }
                    pick_tag(&tags, wanted).map_err(Problem::Unavailable)?
                };
                let what = format!("failed to get the manifest of 'oci://{reference}:{version}'");
                let (manifest, digest) = within(timeout, &what, puller.manifest(&version.replace('+', "_")))
                    .await
                    .map_err(Problem::Unavailable)?;
                Ok(Located::Oci {
                    version,
                    manifest: Box::new(manifest),
                    digest,
                })
            }
        }
    }

    /// A pull client for `chart` in this OCI repository (signature checks read through it).
    pub fn puller(&self, chart: &str) -> Option<Result<Puller, String>> {
        match self {
            Self::Oci { repository, connect } => Some(connect.puller(&format!("{repository}/{chart}"))),
            Self::Http { .. } => None,
        }
    }

    /// The archive of `chart` at `located`, at most `max` bytes: HTTP with the repository's
    /// credentials (sent to another host only with `passCredentials`), or the OCI chart layer.
    pub async fn download(
        &self,
        chart: &str,
        located: &Located,
        max: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let too_large = || format!("size of chart '{chart}' exceeds '{max}' bytes limit");
        let archive = match (self, located) {
            (
                Self::Http {
                    url: repository_url,
                    http,
                    basic_auth,
                    pass_credentials,
                    ..
                },
                Located::Archive { url, .. },
            ) => {
                let send_credentials = *pass_credentials || same_host(url, repository_url);
                let fetched = helm_repository::download(
                    http,
                    url,
                    basic_auth.as_ref().filter(|_| send_credentials),
                    max,
                    too_large,
                );
                within(timeout, "failed to download chart", fetched).await?
            }
            (Self::Oci { repository, connect }, Located::Oci { manifest, .. }) => {
                let puller = connect.puller(&format!("{repository}/{chart}"))?;
                let layer = manifest
                    .layers
                    .iter()
                    .find(|l| CHART_LAYER_TYPES.contains(&l.media_type.as_str()))
                    .ok_or_else(|| "the OCI artifact has no Helm chart layer".to_string())?;
                if u64::try_from(layer.size).unwrap_or(u64::MAX) > max {
                    return Err(too_large());
                }
                let mut bytes = Vec::new();
                within(
                    timeout,
                    "failed to pull the chart layer",
                    puller.blob(layer, &mut bytes),
                )
                .await?;
                bytes
            }
            _ => return Err("the chart's location does not match its repository".into()),
        };
        if !archive.starts_with(&[0x1f, 0x8b]) {
            return Err(format!("'{chart}' is not a gzipped chart archive"));
        }
        Ok(archive)
    }
}

/// An index fetched from `url` (for a repository whose index is not stored here).
async fn fetch_index(
    http: &reqwest::Client,
    url: &str,
    basic_auth: Option<&(String, String)>,
    timeout: Duration,
    max: u64,
) -> Result<Arc<ChartIndex>, Problem> {
    let index_url = helm_repository::index_url(url).map_err(Problem::Invalid)?;
    let fetched = helm_repository::download(http, &index_url, basic_auth, max, || {
        format!("index exceeds the maximum index file size of {max} bytes")
    });
    let bytes = within(timeout, "failed to fetch Helm repository index", fetched)
        .await
        .map_err(Problem::Unavailable)?;
    let index = driftless_runtime::work::blocking(timeout, move || ChartIndex::parse(&bytes))
        .await
        .map_err(|e| Problem::Invalid(format!("failed to load the index of '{url}': {e}")))?;
    Ok(Arc::new(index))
}

fn same_host(a: &str, b: &str) -> bool {
    let key = |u: &str| {
        url::Url::parse(u).ok().map(|u| {
            (
                u.scheme().to_string(),
                u.host_str().map(str::to_string),
                u.port_or_known_default(),
            )
        })
    };
    key(a) == key(b)
}

/// The tag `wanted` names among `tags`: exact, else the highest that its range allows (`*` and
/// empty: the highest stable); tags that are not versions are skipped.
pub fn pick_tag(tags: &[String], wanted: &str) -> Result<String, String> {
    if let Some(exact) = tags.iter().find(|t| *t == wanted) {
        return Ok(exact.clone());
    }
    let range = if wanted.is_empty() { "*" } else { wanted };
    let constraints = driftless_semver::Constraints::parse(range).map_err(|e| e.to_string())?;
    constraints
        .highest(tags, |t| t.as_str())
        .cloned()
        .ok_or_else(|| format!("could not locate a version matching provided version string {wanted}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tags_are_picked_exactly_then_by_range() {
        let tags: Vec<String> = ["6.14.1", "6.14.0", "7.0.0-rc.1", "latest", "6.2.0+build.1"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(pick_tag(&tags, "").unwrap(), "6.14.1");
        assert_eq!(pick_tag(&tags, "6.14.0").unwrap(), "6.14.0");
        assert_eq!(pick_tag(&tags, "<6.14.0").unwrap(), "6.2.0+build.1");
        assert_eq!(pick_tag(&tags, ">=7.0.0-0").unwrap(), "7.0.0-rc.1");
        assert!(pick_tag(&tags, "9.x").is_err());
        assert_eq!(normalize_url("https://h/charts"), "https://h/charts/");
        assert_eq!(normalize_url("oci://h/charts/"), "oci://h/charts");
    }
}
