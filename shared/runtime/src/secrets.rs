//! Flux's Secret conventions shared by every controller: text values, TLS material (`ca.crt`,
//! `tls.crt` + `tls.key`) and proxy Secrets (`address`, `username`, `password`); and how a
//! failed read of a referenced object is classed ([`Problem`]).

use crate::reconcile::ReconcileError;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use std::{collections::BTreeMap, time::Duration};

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
/// Errors never repeat the address: it may hold credentials (`http://user:pass@host`).
/// HTTP(S) proxies only: libgit2 speaks no SOCKS.
///
/// The credentials are percent-encoded into the URL, so that any character may be in them;
/// its readers (reqwest, libgit2) decode them.
pub fn proxy_from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<String, String> {
    let address = secret_text(data, "address")
        .ok_or_else(|| format!("secret '{secret}' has no 'address' key for the proxy"))?;
    let Some((scheme, _)) = address.split_once("://") else {
        return Err(format!("secret '{secret}': the proxy address has no scheme"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "secret '{secret}': proxy scheme '{scheme}' is not supported for git (use http or https)"
        ));
    }
    let mut proxy_url = url::Url::parse(&address)
        .map_err(|e| format!("secret '{secret}': the proxy address is not a valid URL: {e}"))?;
    let username = secret_text(data, "username");
    let password = secret_text(data, "password");
    let (Some(username), Some(password)) = (username, password) else {
        return Ok(address);
    };
    // `Url` percent-encodes what userinfo cannot hold, except `%` itself, which readers decode.
    let (user, pass) = (username.replace('%', "%25"), password.replace('%', "%25"));
    if proxy_url.set_username(&user).is_err() || proxy_url.set_password(Some(pass.as_str())).is_err() {
        return Err(format!(
            "secret '{secret}': the proxy address cannot carry credentials"
        ));
    }
    // `Url` writes the empty path of `http://host:port` as `/`; keep the address as written.
    let bare = proxy_url.path() == "/" && proxy_url.query().is_none() && proxy_url.fragment().is_none();
    let mut proxy = String::from(proxy_url);
    if bare && !address.ends_with('/') {
        proxy.pop();
    }
    Ok(proxy)
}

/// A failure by whose move it is, the rule every controller follows: the spec or the content
/// of a referenced Secret is wrong (a missing key, a malformed value) → stalled; a referenced
/// object is not there yet → waited for; the apiserver or a remote failed → retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Invalid(String),
    Missing(String),
    Unavailable(String),
}

/// How long a source waits for a referenced object (a Secret, a ServiceAccount, an include)
/// that is not there yet before it looks again.
pub const REFERENCE_REQUEUE: Duration = Duration::from_secs(10);

impl Problem {
    /// A failed read of a referenced object: not found is Missing, anything else Unavailable.
    pub fn of_read(what: &str, error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(e) if e.code == 404 => {
                Problem::Missing(format!("failed to get {what}: not found"))
            }
            _ => Problem::Unavailable(format!("failed to get {what}: {error}")),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Problem::Invalid(m) | Problem::Missing(m) | Problem::Unavailable(m) => m,
        }
    }

    /// The error of this problem's class, with `reason` for the Ready condition.
    pub fn into_error(self, reason: &str) -> ReconcileError {
        match self {
            Problem::Invalid(m) => ReconcileError::stalled(reason, m),
            Problem::Missing(m) => ReconcileError::waiting(reason, m, REFERENCE_REQUEUE),
            Problem::Unavailable(m) => ReconcileError::transient(reason, m),
        }
    }

    /// The error of this problem's class, a missing object waited for `requeue` (a controller's
    /// `--requeue-dependency`) rather than the default.
    pub fn into_error_after(self, reason: &str, requeue: Duration) -> ReconcileError {
        match self {
            Problem::Missing(m) => ReconcileError::waiting(reason, m, requeue),
            other => other.into_error(reason),
        }
    }

    /// The same problem with its message rewritten.
    pub fn map_message(self, rewrite: impl FnOnce(&str) -> String) -> Self {
        match self {
            Problem::Invalid(m) => Problem::Invalid(rewrite(&m)),
            Problem::Missing(m) => Problem::Missing(rewrite(&m)),
            Problem::Unavailable(m) => Problem::Unavailable(rewrite(&m)),
        }
    }
}

/// The TLS material of a `certSecretRef` Secret: a CA, a client certificate with its key, or
/// both; a certificate without its key (or the other way round) is refused, naming the Secret.
pub async fn tls_from_secret(client: &Client, namespace: &str, name: &str) -> Result<TlsMaterial, Problem> {
    let data = secret_data(client, namespace, name).await?;
    tls_material(&data).ok_or_else(|| {
        Problem::Invalid(format!(
            "secret '{namespace}/{name}': a TLS client certificate needs both 'tls.crt' and 'tls.key'"
        ))
    })
}

/// The proxy URL of a `proxySecretRef` Secret (see [`proxy_from_secret`]).
pub async fn proxy_from_secret_ref(client: &Client, namespace: &str, name: &str) -> Result<String, Problem> {
    let data = secret_data(client, namespace, name).await?;
    proxy_from_secret(&format!("{namespace}/{name}"), &data).map_err(Problem::Invalid)
}

/// Reads a Secret's data; the error names the Secret and is fit for a condition.
pub async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Problem> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets.get_opt(name).await {
        Ok(Some(s)) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(Problem::Missing(format!(
            "failed to get secret '{namespace}/{name}': secret not found"
        ))),
        Err(e) => Err(Problem::Unavailable(format!(
            "failed to get secret '{namespace}/{name}': {e}"
        ))),
    }
}
