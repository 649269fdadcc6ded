//! The HTTP(S) client of a source, as its Secrets configure it: a CA bundle and a client
//! certificate (`certSecretRef`: `ca.crt`, `tls.crt` + `tls.key`) and a proxy
//! (`proxySecretRef`). One builder for registries and Helm repositories.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// How an HTTP client reaches a server.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings<'a> {
    /// PEM CA bundle trusted in addition to the system roots.
    pub ca: Option<&'a [u8]>,
    /// PEM client certificate and key, concatenated.
    pub identity: Option<&'a [u8]>,
    /// Proxy URL, credentials embedded.
    pub proxy: Option<&'a str>,
}

/// Clients with no CA, identity or proxy, by user agent, kept: building one costs a few
/// milliseconds of TLS set-up (measured on every OCIRepository pull in W4), and a kept one keeps
/// its idle connections. It holds no credentials: those go with each request.
static PLAIN: LazyLock<Mutex<HashMap<String, reqwest::Client>>> = LazyLock::new(Mutex::default);

/// A client with those settings; the error says which setting is wrong.
pub fn client(settings: &ClientSettings<'_>, user_agent: &str) -> Result<reqwest::Client, String> {
    let plain = settings.ca.is_none() && settings.identity.is_none() && settings.proxy.is_none();
    if !plain {
        return build(settings, user_agent);
    }
    let mut kept = PLAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(client) = kept.get(user_agent) {
        return Ok(client.clone());
    }
    let client = build(settings, user_agent)?;
    kept.insert(user_agent.to_string(), client.clone());
    Ok(client)
}

fn build(settings: &ClientSettings<'_>, user_agent: &str) -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder().user_agent(user_agent);
    if let Some(ca) = settings.ca {
        let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| format!("invalid ca.crt: {e}"))?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(identity) = settings.identity {
        let identity =
            reqwest::Identity::from_pem(identity).map_err(|e| format!("invalid tls.crt/tls.key: {e}"))?;
        builder = builder.identity(identity);
    }
    if let Some(proxy) = settings.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(|_| "invalid proxy address".to_string())?);
    }
    builder.build().map_err(|e| e.to_string())
}
