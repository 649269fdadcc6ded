//! The one way every Driftless binary builds its Kubernetes client.
//!
//! It is kube-rs's default stack (`ClientBuilder::try_from(Config)`, whose builder is private)
//! with two differences. Connections to the apiserver set `TCP_NODELAY`, as Go's net package
//! does for Flux's controllers. kube-rs speaks HTTP/1.1, so a watch holds a connection of its
//! own and a request finding no idle one opens a new connection; without `TCP_NODELAY` Nagle
//! holds the request's last segment until the apiserver's delayed ACK of the TLS handshake
//! (40 ms on Linux) — measured as the largest part of W4's p95 (docs/benchmarks.md, W4).
//!
//! And in a long-lived [`client`], watches and the other requests draw on two connection
//! pools. A watch holds its HTTP/1.1 connection for as long as it runs, and one dropped before
//! the apiserver ends it (a health wait that saw its object ready) closes that connection;
//! drawn from the one pool, it took an idle connection the next burst of requests (a
//! reconcile's concurrent dry-runs) then had to open again, a TLS handshake on the reconcile's
//! path. A watch now takes its connection from a pool of watches (a new one, for a health
//! watch, while kube-controller-manager is still to act on the object applied), and requests
//! find the connections earlier requests of the client left. The Go client multiplexes both
//! over one HTTP/2 connection; kube-rs speaks HTTP/1.1. A client built for one reconcile
//! ([`client_for_one_reconcile`]: impersonation, a remote kubeConfig) keeps one pool: its
//! connections go with it, and its health watches had better take the ones its own dry-runs
//! and applies just left.
//!
//! Layers, outermost first, as kube-rs orders them: the base URI, the retry of 429/503/504 when
//! `default_retry`, authentication, extra headers (impersonation), the `HTTP` trace span; under
//! them hyper's pooled HTTP/1.1 client (or two: watches and the rest) and the connector
//! (`TCP_NODELAY`, TLS, connect and read/write timeouts).
//!
//! Not carried over: kube-rs's gzip and proxy features are not enabled in this workspace, so a
//! kubeconfig with `proxy-url` is refused here as kube-rs refuses it without those features; and
//! the client's `valid_until` (an exec plugin's certificate expiry), which nothing here reads.

use http::{HeaderMap, Request, Response};
use hyper_timeout::TimeoutConnector;
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioExecutor};
use kube::{
    Client, Config,
    client::{Body, ConfigExt, retry::RetryPolicy},
};
use std::time::Duration;
use tower::{BoxError, ServiceBuilder, retry::RetryLayer};
use tower_http::{classify::ServerErrorsFailureClass, trace::TraceLayer};
use tracing::Span;

/// A client for the cluster `kube::Config::infer` finds: in a pod its service account, else
/// `KUBECONFIG` or `~/.kube/config`.
pub async fn infer() -> anyhow::Result<Client> {
    Ok(client(Config::infer().await?)?)
}

/// A client for `config` kept for the life of the process: as kube-rs's
/// `Client::try_from(config)` with `TCP_NODELAY` set, watches in a connection pool of their own.
pub fn client(config: Config) -> kube::Result<Client> {
    build(config, Pools::WatchesApart)
}

/// A client for `config` built for one reconcile and dropped with it: as [`client`], with one
/// connection pool for its requests and watches.
pub fn client_for_one_reconcile(config: Config) -> kube::Result<Client> {
    build(config, Pools::One)
}

enum Pools {
    One,
    WatchesApart,
}

fn build(config: Config, pools: Pools) -> kube::Result<Client> {
    if let Some(proxy_url) = &config.proxy_url {
        let proxy_url = Box::new(proxy_url.clone());
        return Err(match proxy_url.scheme_str() {
            Some("socks5") => kube::Error::ProxyProtocolDisabled {
                proxy_url,
                protocol_feature: "kube/socks5",
            },
            Some("http" | "https") => kube::Error::ProxyProtocolDisabled {
                proxy_url,
                protocol_feature: "kube/http-proxy",
            },
            _ => kube::Error::ProxyProtocolUnsupported { proxy_url },
        });
    }
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let mut connector = TimeoutConnector::new(config.rustls_https_connector_with_connector(tcp)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool =
        || hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build::<_, Body>(connector.clone());
    let requests = pool();
    let watches = match pools {
        Pools::One => requests.clone(),
        Pools::WatchesApart => pool(),
    };
    let http = tower::service_fn(move |request: Request<Body>| {
        let pool = if is_watch(request.uri()) {
            &watches
        } else {
            &requests
        };
        pool.request(request)
    });

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        // kube-rs's `HTTP` debug span per request (`RUST_LOG=driftless_runtime::apiserver=debug`
        // shows each request, its status and latency).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    tracing::debug_span!(
                        "HTTP",
                        http.method = %request.method(),
                        http.url = %request.uri(),
                        http.status_code = tracing::field::Empty,
                        otel.name = request.extensions().get::<&'static str>().unwrap_or(&"HTTP"),
                        otel.kind = "client",
                        otel.status_code = tracing::field::Empty,
                    )
                })
                .on_request(|_: &Request<Body>, _: &Span| tracing::debug!("requesting"))
                .on_response(
                    |response: &Response<hyper::body::Incoming>, _: Duration, span: &Span| {
                        let status = response.status();
                        span.record("http.status_code", status.as_u16());
                        if status.is_client_error() || status.is_server_error() {
                            span.record("otel.status_code", "ERROR");
                        }
                    },
                )
                .on_body_chunk(())
                .on_eos(|_: Option<&HeaderMap>, _: Duration, _: &Span| tracing::debug!("stream closed"))
                .on_failure(|class: ServerErrorsFailureClass, _: Duration, span: &Span| {
                    span.record("otel.status_code", "ERROR");
                    match class {
                        ServerErrorsFailureClass::StatusCode(status) => {
                            span.record("http.status_code", status.as_u16());
                            tracing::error!("failed with status {status}")
                        }
                        ServerErrorsFailureClass::Error(err) => tracing::error!("failed with error {err}"),
                    }
                }),
        )
        .map_err(BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}

/// Whether `uri` asks for a watch (`watch=true`, as kube-rs sends it; the apiserver takes `1` too).
fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1"))
    })
}

#[cfg(test)]
mod tests {
    use super::is_watch;

    #[test]
    fn watches_are_told_from_other_requests_by_their_query() {
        let watch = |uri: &str| is_watch(&uri.parse().unwrap_or_default());
        assert!(watch("/api/v1/pods?&watch=true&timeoutSeconds=290"));
        assert!(watch("/apis/apps/v1/namespaces/a/deployments?watch=1"));
        assert!(!watch("/api/v1/pods?limit=500"));
        assert!(!watch("/api/v1/namespaces/watch/pods/watch=true"));
        assert!(!watch("/api/v1/pods?watch=false"));
    }
}
