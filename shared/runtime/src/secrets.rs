//! Flux's Secret conventions shared by every controller: text values, TLS material (`ca.crt`,
//! `tls.crt` + `tls.key`) and proxy Secrets (`address`, `username`, `password`).

use std::collections::BTreeMap;

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
/// HTTP(S) proxies only: libgit2 speaks no SOCKS.
///
/// The credentials are percent-encoded into the URL, so that any character may be in them;
/// its readers (reqwest, libgit2) decode them.
pub fn proxy_from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<String, String> {
    let address = secret_text(data, "address")
        .ok_or_else(|| format!("secret '{secret}' has no 'address' key for the proxy"))?;
    let Some((scheme, _)) = address.split_once("://") else {
        return Err(format!(
            "secret '{secret}': proxy address {address:?} has no scheme"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "secret '{secret}': proxy scheme '{scheme}' is not supported for git (use http or https)"
        ));
    }
    let mut proxy_url = url::Url::parse(&address)
        .map_err(|e| format!("secret '{secret}': proxy address {address:?} is not a valid URL: {e}"))?;
    let username = secret_text(data, "username");
    let password = secret_text(data, "password");
    let (Some(username), Some(password)) = (username, password) else {
        return Ok(address);
    };
    // `Url` percent-encodes what userinfo cannot hold, except `%` itself, which readers decode.
    let (user, pass) = (username.replace('%', "%25"), password.replace('%', "%25"));
    if proxy_url.set_username(&user).is_err() || proxy_url.set_password(Some(pass.as_str())).is_err() {
        return Err(format!(
            "secret '{secret}': proxy address {address:?} cannot carry credentials"
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

