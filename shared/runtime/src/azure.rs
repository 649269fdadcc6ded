//! Azure Blob Storage requests authorised with an account's Shared Key, as Azure's SDKs sign
//! them: Bucket sources with `provider: azure` and `accountKey`, and the tests writing to the
//! testenv's Azurite.

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::SystemTime;

/// The REST API version requests are made with.
pub const API_VERSION: &str = "2021-08-06";

/// An account name and its key.
#[derive(Clone)]
pub struct SharedKey {
    account: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKey {
    /// The key of `account` (`accountKey`, base64 as the portal shows it).
    pub fn new(account: &str, key_base64: &str) -> Result<Self, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_base64.trim())
            .map_err(|_| "the account key is not base64".to_string())?;
        Ok(Self {
            account: account.to_string(),
            key,
        })
    }

    /// The headers that authorise `method` on `url` with a body of `content_length` bytes and
    /// the given `content_type`: `x-ms-date`, `x-ms-version` and `Authorization`.
    pub fn headers(
        &self,
        method: &str,
        url: &url::Url,
        content_length: usize,
        content_type: &str,
    ) -> HeaderMap {
        self.headers_with(method, url, content_length, content_type, &[])
    }

    /// [`headers`](Self::headers) for a request that also sends the `x-ms-*` headers `extra`
    /// (they are signed, and returned among the headers).
    pub fn headers_with(
        &self,
        method: &str,
        url: &url::Url,
        content_length: usize,
        content_type: &str,
        extra: &[(&'static str, &str)],
    ) -> HeaderMap {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut ms: Vec<(&str, String)> = vec![("x-ms-date", date), ("x-ms-version", API_VERSION.into())];
        ms.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        ms.sort();
        let signature = self.signature(method, url, content_length, content_type, &ms);
        let mut headers = HeaderMap::new();
        let authorization = format!("SharedKey {}:{signature}", self.account);
        for (name, value) in ms
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("authorization", authorization.as_str())])
        {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        headers
    }

    /// The signature of a request, over Azure's string-to-sign for the Blob service; `ms` are
    /// its `x-ms-*` headers, sorted by name.
    fn signature(
        &self,
        method: &str,
        url: &url::Url,
        content_length: usize,
        content_type: &str,
        ms: &[(&str, String)],
    ) -> String {
        let length = if content_length == 0 {
            String::new()
        } else {
            content_length.to_string()
        };
        let mut resource = format!("/{}{}", self.account, url.path());
        let mut query: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
            .collect();
        query.sort();
        for (name, value) in query {
            resource.push_str(&format!("\n{name}:{value}"));
        }
        let headers: String = ms.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
        let to_sign = format!("{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\n{headers}{resource}");
        self.sign(&to_sign)
    }

    /// The base64 HMAC-SHA256 of `to_sign` with the account key: request signatures and SAS
    /// tokens.
    pub fn sign(&self, to_sign: &str) -> String {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// An account SAS token for the Blob service (`ss=b`) over containers and objects with
    /// `permissions` (`rl`: read, list) until `expiry` (ISO 8601), as the portal generates one.
    pub fn account_sas(&self, permissions: &str, expiry: &str) -> String {
        let to_sign = format!(
            "{}\n{permissions}\nb\nco\n\n{expiry}\n\nhttps,http\n{API_VERSION}\n\n",
            self.account
        );
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", API_VERSION)
            .append_pair("ss", "b")
            .append_pair("srt", "co")
            .append_pair("sp", permissions)
            .append_pair("se", expiry)
            .append_pair("spr", "https,http")
            .append_pair("sig", &self.sign(&to_sign))
            .finish()
    }
}

/// The storage account of a Blob endpoint: the first label of `<account>.blob.core.windows.net`
/// (as Flux reads it), or, for an emulator's path-style endpoint
/// (`http://127.0.0.1:10000/devstoreaccount1`), its first path segment.
pub fn account_of(endpoint: &url::Url) -> Option<String> {
    let host = endpoint.host_str()?;
    let labels: Vec<&str> = host.split('.').collect();
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    if labels.len() > 2 && !is_ip {
        return Some(labels[0].to_string());
    }
    endpoint
        .path_segments()?
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

/// A Service Bus / Event Hubs shared access signature for `resource` (a URL), valid until
/// `expiry` (seconds since the epoch), as Azure's SDKs make it: the lower-cased escaped URL,
/// and the HMAC-SHA256 (keyed by the key's text as written, not decoded) of it and the expiry.
pub fn service_bus_sas(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let escape = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let audience = escape(resource).to_lowercase();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{audience}\n{expiry}").as_bytes());
    let signature = escape(&base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    format!("SharedAccessSignature sr={audience}&sig={signature}&se={expiry}&skn={key_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature Azure's SDKs (and Python's urllib with hmac) make for the same input.
    #[test]
    fn service_bus_signatures_match_azures() {
        assert_eq!(
            service_bus_sas(
                "https://flux.servicebus.windows.net/events",
                "send",
                "c2VjcmV0",
                1_700_000_000
            ),
            "SharedAccessSignature sr=https%3a%2f%2fflux.servicebus.windows.net%2fevents&sig=h7kE8NqeFH4VVayFUgDOcjzXJEMAbPefGi2Kw7ark34%3D&se=1700000000&skn=send"
        );
    }

    #[test]
    fn the_account_comes_from_the_host_or_an_emulators_path() {
        let account = |u: &str| account_of(&url::Url::parse(u).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            account("https://flux.blob.core.windows.net").as_deref(),
            Some("flux")
        );
        assert_eq!(
            account("http://127.0.0.1:10000/devstoreaccount1").as_deref(),
            Some("devstoreaccount1")
        );
        assert_eq!(account("https://localhost"), None);
    }

    /// Azure's documented string-to-sign: empty standard headers, the x-ms headers sorted, the
    /// resource as `/<account><path>` and the query parameters one per line, sorted.
    #[test]
    fn the_signature_covers_fluxs_listing_request() {
        let key = SharedKey::new("acct", "a2V5").unwrap_or_else(|e| panic!("{e}"));
        let url =
            url::Url::parse("https://acct.blob.core.windows.net/c?restype=container&comp=list&prefix=a")
                .unwrap_or_else(|e| panic!("{e}"));
        let date = "Thu, 03 Dec 2026 10:00:00 GMT";
        let expected_to_sign = "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Thu, 03 Dec 2026 10:00:00 GMT\nx-ms-version:2021-08-06\n/acct/c\ncomp:list\nprefix:a\nrestype:container";
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"key").unwrap_or_else(|e| panic!("{e}"));
        mac.update(expected_to_sign.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let ms = [
            ("x-ms-date", date.to_string()),
            ("x-ms-version", API_VERSION.to_string()),
        ];
        assert_eq!(key.signature("GET", &url, 0, "", &ms), expected);
    }
}
