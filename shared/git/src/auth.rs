//! Git credentials from a GitRepository's `secretRef`, with Flux's keys: `username`/`password`
//! or `bearerToken` for HTTP(S); `identity` (+ `password` for an encrypted key) and
//! `known_hosts` for SSH; `ca.crt` for a private CA; a GitHub App for `provider: github`.

use driftless_api::source::GitRepository;
use driftless_artifact::http::{ClientSettings, client as http_client};
use driftless_runtime::github_app::AppCredentials;
use driftless_runtime::secrets::{Problem, proxy_from_secret_ref, secret_data, secret_text, tls_material};
use std::collections::BTreeMap;
use std::time::Duration;

/// How to authenticate to the remote.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum GitAuth {
    /// Anonymous access.
    #[default]
    None,
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// HTTP `Authorization: Bearer`.
    Bearer(String),
    /// SSH public-key auth with a pinned host key.
    Ssh {
        /// Private key (PEM / OpenSSH format).
        identity: String,
        /// Passphrase of the private key.
        passphrase: Option<String>,
        /// `known_hosts` lines the server's host key must match.
        known_hosts: String,
    },
}

// Credentials never reach logs, events or status.
impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GitAuth::None => "GitAuth::None",
            GitAuth::Basic { .. } => "GitAuth::Basic(redacted)",
            GitAuth::Bearer(_) => "GitAuth::Bearer(redacted)",
            GitAuth::Ssh { .. } => "GitAuth::Ssh(redacted)",
        })
    }
}

/// Credentials plus TLS material and proxy.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    /// Authentication.
    pub auth: GitAuth,
    /// PEM CA bundle for HTTPS (`ca.crt`, or the legacy `caFile`).
    pub ca_cert: Option<Vec<u8>>,
    /// Proxy URL, with its credentials embedded (from `proxySecretRef`).
    pub proxy: Option<String>,
    /// PEM client certificate and key for HTTPS (`tls.crt` + `tls.key`).
    pub client_identity: Option<Vec<u8>>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("auth", &self.auth)
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<pem>"))
            .field("proxy", &self.proxy.as_ref().map(|_| "<redacted>"))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The Secret does not fit the URL's transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A key the transport needs is missing.
    #[error("secret '{secret}' has no '{key}' key, required for {transport} authentication")]
    MissingKey {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The missing key.
        key: &'static str,
        /// `SSH` or `HTTP basic`.
        transport: &'static str,
    },
    /// A client certificate without its key, or the other way round.
    #[error("secret '{0}': a TLS client certificate needs both 'tls.crt' and 'tls.key'")]
    ClientCertIncomplete(String),
}

/// Builds credentials for `url` from Secret `data` (`secret` names it in errors).
pub fn from_secret(
    url: &str,
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<GitCredentials, AuthError> {
    let tls = tls_material(data).ok_or_else(|| AuthError::ClientCertIncomplete(secret.to_string()))?;
    let auth = if url.starts_with("ssh://") {
        let identity = secret_text(data, "identity").ok_or(AuthError::MissingKey {
            secret: secret.to_string(),
            key: "identity",
            transport: "SSH",
        })?;
        let known_hosts = secret_text(data, "known_hosts").ok_or(AuthError::MissingKey {
            secret: secret.to_string(),
            key: "known_hosts",
            transport: "SSH",
        })?;
        GitAuth::Ssh {
            identity: format!("{identity}\n"),
            passphrase: secret_text(data, "password"),
            known_hosts,
        }
    } else if let Some(token) = secret_text(data, "bearerToken") {
        GitAuth::Bearer(token)
    } else {
        match (secret_text(data, "username"), secret_text(data, "password")) {
            (Some(username), Some(password)) => GitAuth::Basic { username, password },
            (Some(_), None) => {
                return Err(AuthError::MissingKey {
                    secret: secret.to_string(),
                    key: "password",
                    transport: "HTTP basic",
                });
            }
            (None, Some(password)) => GitAuth::Basic {
                username: "git".into(),
                password,
            },
            (None, None) => GitAuth::None,
        }
    };
    Ok(GitCredentials {
        auth,
        ca_cert: tls.ca,
        proxy: None,
        client_identity: tls.identity,
    })
}

/// Flux's message for `provider: github` without a Secret holding a GitHub App.
pub const GITHUB_NEEDS_APP: &str =
    "secretRef with github app data must be specified when provider is set to github";

/// Why a repository's credentials could not be made.
#[derive(Debug)]
pub enum CredentialsError {
    /// `provider` and the Secret do not go together (Flux's InvalidProviderConfiguration).
    Provider(Problem),
    /// The Secret's content, or getting a token with it (Flux's AuthenticationFailed).
    Authentication(Problem),
}

/// A GitRepository's credentials as Flux makes them, for source-controller and
/// image-automation-controller alike: from its `secretRef`, with the proxy of its
/// `proxySecretRef` (both Secrets read with `client`, a failed read being an authentication
/// failure); for `provider: github` the Secret's GitHub App (`githubAppID`,
/// `githubAppInstallationID` or `githubAppInstallationOwner`, `githubAppPrivateKey`,
/// `githubAppBaseURL`) mints an installation token, asked of its API through the same CA,
/// client certificate and proxy within `timeout` and reused while fresh, which authenticates as
/// Flux's `x-access-token` user.
pub async fn repository_credentials(
    client: &kube::Client,
    repo: &GitRepository,
    timeout: Duration,
) -> Result<GitCredentials, CredentialsError> {
    let ns = repo.metadata.namespace.clone().unwrap_or_default();
    let secret = match &repo.spec.secret_ref {
        None => None,
        Some(r) => Some((
            format!("{ns}/{}", r.name),
            secret_data(client, &ns, &r.name)
                .await
                .map_err(CredentialsError::Authentication)?,
        )),
    };
    let mut creds = match &secret {
        None => GitCredentials::default(),
        Some((name, data)) => from_secret(&repo.spec.url, name, data)
            .map_err(|e| CredentialsError::Authentication(Problem::Invalid(e.to_string())))?,
    };
    if let Some(r) = &repo.spec.proxy_secret_ref {
        let proxy = proxy_from_secret_ref(client, &ns, &r.name)
            .await
            .map_err(CredentialsError::Authentication)?;
        creds.proxy = Some(proxy);
    }
    let app = secret
        .as_ref()
        .filter(|(_, data)| data.get("githubAppID").is_some_and(|id| !id.is_empty()));
    match (repo.spec.provider.as_deref() == Some("github"), app) {
        (true, Some((_, data))) => creds.auth = github_app_auth(data, &creds, timeout).await?,
        (true, None) => {
            return Err(CredentialsError::Provider(Problem::Invalid(
                GITHUB_NEEDS_APP.into(),
            )));
        }
        (false, Some((name, _))) => {
            return Err(CredentialsError::Provider(Problem::Invalid(format!(
                "secretRef '{name}' has github app data but provider is not set to github"
            ))));
        }
        (false, None) => {}
    }
    Ok(creds)
}

/// An installation token of the GitHub App in `data`, as basic auth. A Secret that cannot work
/// stalls; GitHub refusing or failing is retried, as Flux retries it (a clock skew, a key or
/// installation being set up, a rate limit).
async fn github_app_auth(
    data: &BTreeMap<String, Vec<u8>>,
    creds: &GitCredentials,
    timeout: Duration,
) -> Result<GitAuth, CredentialsError> {
    let failed = |m: &str| format!("failed to configure authentication options: {m}");
    let text = data
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let app = AppCredentials::from_secret(&text)
        .map_err(|m| CredentialsError::Authentication(Problem::Invalid(failed(&m))))?
        .ok_or_else(|| CredentialsError::Provider(Problem::Invalid(GITHUB_NEEDS_APP.into())))?;
    let settings = ClientSettings {
        ca: creds.ca_cert.as_deref(),
        identity: creds.client_identity.as_deref(),
        proxy: creds.proxy.as_deref(),
    };
    let http = http_client(&settings, "driftless")
        .map_err(|m| CredentialsError::Authentication(Problem::Invalid(failed(&m))))?;
    let token = tokio::time::timeout(timeout, app.installation_token(&http))
        .await
        .map_err(|_| {
            let message = failed("timed out minting a GitHub App installation token");
            CredentialsError::Authentication(Problem::Unavailable(message))
        })?
        .map_err(|p| CredentialsError::Authentication(Problem::Unavailable(failed(p.message()))))?;
    Ok(GitAuth::Basic {
        username: "x-access-token".into(),
        password: token,
    })
}

/// Why a GitRepository's `provider` / `serviceAccountName` cannot be served here, if so: Azure
/// DevOps and AWS CodeCommit need a cloud's workload identity, which this toolkit does not
/// have. Refused with this message (a stall), never ignored. (`github` is served: the
/// credentials are a GitHub App's installation tokens.)
pub fn unsupported_provider(provider: Option<&str>, service_account_name: Option<&str>) -> Option<String> {
    match provider.filter(|p| !p.is_empty()).unwrap_or("generic") {
        "generic" | "github" => service_account_name.filter(|s| !s.is_empty()).map(|_| {
            "spec.serviceAccountName needs a cloud provider's workload identity (provider 'azure' or 'aws'), \
             which is not available: remove it and use a secretRef"
                .to_string()
        }),
        "aws" => Some(
            "provider 'aws' needs AWS workload identity (CodeCommit), which is not available: use provider \
             'generic' with a secretRef"
                .into(),
        ),
        "azure" => Some(
            "provider 'azure' needs Azure workload identity, which is not available: use provider 'generic' \
             with a secretRef (a personal access token as password)"
                .into(),
        ),
        other => Some(format!(
            "provider '{other}' is not supported (generic, aws, azure or github)"
        )),
    }
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
    fn http_secrets_give_basic_or_bearer_auth() {
        let c = from_secret(
            "https://h/r",
            "ns/s",
            &data(&[("username", "u"), ("password", "p\n")]),
        )
        .unwrap();
        assert_eq!(
            c.auth,
            GitAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let c = from_secret(
            "https://h/r",
            "ns/s",
            &data(&[("bearerToken", "t"), ("ca.crt", "PEM")]),
        )
        .unwrap();
        assert_eq!(c.auth, GitAuth::Bearer("t".into()));
        assert_eq!(c.ca_cert.as_deref(), Some(&b"PEM"[..]));
        let e = from_secret("https://h/r", "ns/s", &data(&[("username", "u")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret 'ns/s' has no 'password' key, required for HTTP basic authentication"
        );
    }

    #[test]
    fn the_generic_and_github_providers_are_served() {
        assert_eq!(unsupported_provider(None, None), None);
        assert_eq!(unsupported_provider(Some("generic"), Some("")), None);
        assert_eq!(unsupported_provider(Some("github"), None), None);
        assert!(
            unsupported_provider(Some("azure"), None)
                .unwrap()
                .contains("workload identity")
        );
        assert!(
            unsupported_provider(Some("github"), Some("sa"))
                .unwrap()
                .contains("serviceAccountName")
        );
        assert!(
            unsupported_provider(None, Some("sa"))
                .unwrap()
                .contains("serviceAccountName")
        );
    }

    #[test]
    fn ssh_secrets_need_identity_and_known_hosts() {
        let e = from_secret("ssh://git@h/r", "ns/s", &data(&[("identity", "KEY")])).unwrap_err();
        assert!(e.to_string().contains("'known_hosts'"), "{e}");
        let c = from_secret(
            "ssh://git@h/r",
            "ns/s",
            &data(&[("identity", "KEY"), ("known_hosts", "h ssh-ed25519 AAAA")]),
        )
        .unwrap();
        assert!(matches!(c.auth, GitAuth::Ssh { .. }));
        assert_eq!(format!("{:?}", c.auth), "GitAuth::Ssh(redacted)");
    }
}
