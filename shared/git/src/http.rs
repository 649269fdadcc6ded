//! Git's smart HTTP protocol over reqwest, for remotes libgit2's own HTTP client cannot serve:
//! behind a proxy (libgit2 sends plain HTTP straight to the server, bypassing it, and its
//! CONNECT tunnel broke intermittently against tinyproxy) and with TLS client certificates
//! (libgit2 has no API for them).
//!
//! libgit2 keeps the protocol (ref advertisement, negotiation, pack parsing); this module only
//! moves its bytes: `GET <url>/info/refs?service=git-upload-pack` for the listing and
//! `POST <url>/git-upload-pack` for each negotiation round (`git-receive-pack` for pushes). Remotes are routed here by a scheme
//! of our own (`driftless+https://…`), so every other remote keeps libgit2's client. The
//! settings of the fetch in progress (proxy, CA, client certificate, credentials, deadline) are
//! handed over in a thread-local: libgit2 calls the transport on the thread that fetches.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::Once;
use std::time::Instant;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};

use crate::auth::{GitAuth, GitCredentials};

/// The prefix that routes a URL to this transport.
const SCHEME_PREFIX: &str = "driftless+";

/// What one fetch needs to reach its remote.
#[derive(Clone)]
struct Settings {
    creds: GitCredentials,
    deadline: Instant,
    /// Built on first use and shared by the requests of the fetch (one connection pool).
    client: Option<Result<reqwest::blocking::Client, String>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Settings>> = const { RefCell::new(None) };
}

/// Whether `creds` need this transport rather than libgit2's HTTP client.
pub fn needed(url: &str, creds: &GitCredentials) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && (creds.proxy.is_some() || creds.client_identity.is_some())
}

/// Routes `url` to this transport for the fetches made while the returned guard lives (on
/// this thread).
pub fn route(url: &str, creds: &GitCredentials, deadline: Instant) -> (String, Route) {
    register();
    CURRENT.with(|c| {
        *c.borrow_mut() = Some(Settings {
            creds: creds.clone(),
            deadline,
            client: None,
        })
    });
    (format!("{SCHEME_PREFIX}{url}"), Route)
}

/// Clears the thread's settings when dropped.
pub struct Route;

impl Drop for Route {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

#[allow(unsafe_code)]
fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for scheme in ["driftless+http", "driftless+https"] {
            // SAFETY: registration happens once, before any fetch through these schemes, and
            // the factory is 'static; git2 requires the call not race with other
            // registrations of the same scheme, which the Once guarantees.
            let registered = unsafe {
                git2::transport::register(scheme, |remote| Transport::smart(remote, true, HttpTransport))
            };
            if let Err(e) = registered {
                tracing::error!(scheme, error = %e, "cannot register the git HTTP transport");
            }
        }
    });
}

struct HttpTransport;

impl SmartSubtransport for HttpTransport {
    fn action(&self, url: &str, action: Service) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let settings = CURRENT
            .with(|c| {
                let mut current = c.borrow_mut();
                let settings = current.as_mut()?;
                if settings.client.is_none() {
                    settings.client = Some(client(settings));
                }
                Some(settings.clone())
            })
            .ok_or_else(|| git2::Error::from_str("git HTTP transport used outside a fetch"))?;
        let base = url
            .strip_prefix(SCHEME_PREFIX)
            .unwrap_or(url)
            .trim_end_matches('/');
        let (method, url, service) = match action {
            Service::UploadPackLs => (
                reqwest::Method::GET,
                format!("{base}/info/refs?service=git-upload-pack"),
                None,
            ),
            Service::UploadPack => (
                reqwest::Method::POST,
                format!("{base}/git-upload-pack"),
                Some("git-upload-pack"),
            ),
            Service::ReceivePackLs => (
                reqwest::Method::GET,
                format!("{base}/info/refs?service=git-receive-pack"),
                None,
            ),
            Service::ReceivePack => (
                reqwest::Method::POST,
                format!("{base}/git-receive-pack"),
                Some("git-receive-pack"),
            ),
        };
        let client = match &settings.client {
            Some(Ok(client)) => client.clone(),
            Some(Err(e)) => return Err(git2::Error::from_str(e)),
            None => return Err(git2::Error::from_str("git HTTP client missing")),
        };
        Ok(Box::new(HttpStream {
            client,
            settings,
            method,
            url,
            service,
            body: Vec::new(),
            response: None,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

fn client(settings: &Settings) -> Result<reqwest::blocking::Client, String> {
    driftless_artifact::install_crypto_provider();
    let creds = &settings.creds;
    let mut builder = reqwest::blocking::Client::builder()
        .user_agent(concat!("git/2.0 (driftless/", env!("CARGO_PKG_VERSION"), ")"))
        .timeout(settings.deadline.saturating_duration_since(Instant::now()));
    if let Some(proxy) = &creds.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(|_| "invalid proxy address".to_string())?);
    }
    if let Some(ca) = &creds.ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| format!("invalid ca.crt: {e}"))?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(identity) = &creds.client_identity {
        let identity =
            reqwest::Identity::from_pem(identity).map_err(|e| format!("invalid tls.crt/tls.key: {e}"))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| e.to_string())
}

struct HttpStream {
    client: reqwest::blocking::Client,
    settings: Settings,
    method: reqwest::Method,
    url: String,
    /// `git-upload-pack` or `git-receive-pack` for a POST of the protocol's request.
    service: Option<&'static str>,
    body: Vec<u8>,
    response: Option<reqwest::blocking::Response>,
}

impl HttpStream {
    fn send(&mut self) -> io::Result<reqwest::blocking::Response> {
        let mut request = self.client.request(self.method.clone(), &self.url);
        if let Some(service) = self.service {
            request = request
                .header("Content-Type", format!("application/x-{service}-request"))
                .header("Accept", format!("application/x-{service}-result"))
                .body(std::mem::take(&mut self.body));
        }
        request = match &self.settings.creds.auth {
            GitAuth::Basic { username, password } => request.basic_auth(username, Some(password)),
            GitAuth::Bearer(token) => request.bearer_auth(token),
            _ => request,
        };
        // reqwest's errors name the URL, which carries no credentials here (they travel in
        // headers), but the chain may hold the proxy's: keep the kind only.
        let response = request.send().map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out waiting for the git operation to finish"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            io::Error::other(format!("{kind}: {}", error_chain(&e)))
        })?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            // Some proxies (tinyproxy) answer a wrong proxy password with 401 too.
            401 | 403 if self.settings.creds.proxy.is_some() => Err(io::Error::other(
                "authentication failed (by the git server or the proxy)",
            )),
            401 | 403 => Err(io::Error::other("authentication failed")),
            404 => Err(io::Error::other("repository not found")),
            407 => Err(io::Error::other("proxy authentication failed")),
            code => Err(io::Error::other(format!("unexpected HTTP status {code}"))),
        }
    }
}

/// The causes of an error, without the URL reqwest puts in its own message.
fn error_chain(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.response = Some(self.send()?);
        }
        match self.response.as_mut() {
            Some(response) => response.read(buf),
            None => Ok(0),
        }
    }
}

impl Write for HttpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
