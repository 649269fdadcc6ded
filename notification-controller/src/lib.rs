//! notification-controller (Flux API reference §5): events to Providers through Alerts, and
//! Receivers that turn webhooks into reconciles.
//!
//! - Intake: Kubernetes Events about toolkit objects (how every controller reports, ours and
//!   Flux's) are watched, and Flux's event JSON is accepted on `--events-addr` (`:9090`), so
//!   Flagger, tofu-controller or Flux's own controllers can post to it ([`event`], [`server`]).
//! - Routing and delivery: [`dispatch`] (duplicates within `--rate-limit-interval` dropped,
//!   Alerts matched, one task per delivery, retries) through [`providers`] (the payload of each
//!   type) and [`connect`] (the Provider's Secrets).
//! - Receivers: [`receiver`] (the reconciler that gives each its path, and the webhook server
//!   on `--receiverAddr`, `:9292`).
//!
//! Alerts and Providers (v1beta3) are static objects, as in Flux: read from caches, no status.
//! The binary's `main.rs` only parses flags; [`run`] wires the shared runtime.

pub mod comments;
pub mod connect;
pub mod dispatch;
pub mod event;
pub mod nats;
pub mod oidc;
pub mod providers;
pub mod receiver;
pub mod server;
pub mod services;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless_api::notification::{Alert, Provider, Receiver};
use driftless_runtime::args::{CommonArgs, addr_arg, duration_arg};
use driftless_runtime::events::Recorder;
use driftless_runtime::metrics::Metrics;
use driftless_runtime::reconcile::{KindController, LoopSettings};
use driftless_runtime::runtime::Runtime;
use futures::StreamExt;
use kube::Client;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// Name used for events, the status field manager and the leader-election lease.
pub const CONTROLLER_NAME: &str = "notification-controller";
/// Where events are received when `--events-addr` is not given.
pub const DEFAULT_EVENTS_ADDR: &str = ":9090";
/// Receivers reconciled at once.
const DEFAULT_CONCURRENCY: u16 = 4;

/// Command-line flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "notification-controller",
    version,
    about = "Driftless notification-controller (Flux-compatible)"
)]
pub struct Args {
    /// Flags every toolkit controller shares (`--events-addr` is where events are received).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where the webhook receiver listens (Flux spells it `--receiverAddr`).
    #[arg(long = "receiverAddr", alias = "receiver-addr", default_value = ":9292", value_parser = addr_arg)]
    pub receiver_addr: SocketAddr,
    /// Identical events within this interval are sent once.
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub rate_limit_interval: Duration,
}

/// What [`serve`] runs with.
pub struct Settings {
    pub loop_settings: LoopSettings,
    pub no_cross_namespace_refs: bool,
    pub rate_limit_interval: Duration,
    pub google: GoogleEndpoints,
}

/// Google's services that Providers and Receivers reach.
#[derive(Clone, Debug)]
pub struct GoogleEndpoints {
    /// Pub/Sub's REST API.
    pub pubsub: String,
    /// Whether Pub/Sub requests carry credentials (not to an emulator).
    pub pubsub_authenticated: bool,
    /// Where Google publishes the keys that sign its ID tokens (`gcr` Receivers).
    pub id_token_keys: String,
}

impl GoogleEndpoints {
    /// Google's own, or the Pub/Sub emulator `PUBSUB_EMULATOR_HOST` names (plain HTTP, no
    /// credentials), as Google's client libraries honour it.
    pub fn from_env() -> Self {
        let emulator = std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.is_empty());
        Self {
            pubsub_authenticated: emulator.is_none(),
            pubsub: emulator.map_or_else(
                || "https://pubsub.googleapis.com".into(),
                |h| format!("http://{h}"),
            ),
            id_token_keys: "https://www.googleapis.com/oauth2/v3/certs".into(),
        }
    }
}

/// Flux v2.9's feature gates of this controller and their defaults (`--feature-gates`).
pub const FEATURE_GATES: &[(&str, bool)] = &[
    ("CacheSecretsAndConfigMaps", false),
    ("DisableConfigWatchers", false),
    driftless_runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY,
];

/// Runs the controller until SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    driftless_artifact::install_crypto_provider();
    let events_addr = if args.common.events_addr.is_empty() {
        DEFAULT_EVENTS_ADDR.to_string()
    } else {
        args.common.events_addr.clone()
    };
    let events_addr = addr_arg(&events_addr).map_err(anyhow::Error::msg)?;
    let rt = Runtime::start(CONTROLLER_NAME, args.common, FEATURE_GATES).await?;
    let events = tokio::net::TcpListener::bind(events_addr).await?;
    let receivers = tokio::net::TcpListener::bind(args.receiver_addr).await?;
    tracing::info!(events = %events_addr, receiver = %args.receiver_addr, "listening");
    let settings = Settings {
        loop_settings: rt.loop_settings(DEFAULT_CONCURRENCY),
        no_cross_namespace_refs: rt.args.no_cross_namespace_refs,
        rate_limit_interval: args.rate_limit_interval,
        google: GoogleEndpoints::from_env(),
    };
    let (client, metrics, shutdown) = (rt.client.clone(), rt.metrics.clone(), rt.shutdown().clone());
    let parts = parts(client, settings, events, receivers, metrics, shutdown.wait()).await;
    // Every replica answers events and webhooks, as Flux's do: a standby (or a new pod during
    // a rollout) that accepted connections without answering would lose them.
    let serving = tokio::spawn(parts.serving);
    rt.run(parts.leading).await?;
    serving.await??;
    Ok(())
}

/// A cache of `K` (in the watched namespace, or all), filled in the background.
async fn cache<K>(client: &Client, namespace: Option<&str>) -> Store<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api = driftless_runtime::object::namespaced_or_all::<K>(client, namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default().any_semantic()))
        .default_backoff()
        .applied_objects();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    let _ = reader.wait_until_ready().await;
    reader
}

/// The controller, in two halves.
pub struct Parts {
    /// The event API and the webhook receiver: every replica serves them.
    pub serving: futures::future::BoxFuture<'static, anyhow::Result<()>>,
    /// The Kubernetes Events watch (one replica dispatches each Event) and the Receiver
    /// reconciler: the elected leader runs them.
    pub leading: futures::future::BoxFuture<'static, ()>,
}

/// Builds the caches and both halves, serving on the given listeners until `shutdown`.
pub async fn parts(
    client: Client,
    settings: Settings,
    events: tokio::net::TcpListener,
    receivers: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Parts {
    let namespace = settings.loop_settings.namespace.clone();
    let dispatcher = Arc::new(dispatch::Dispatcher {
        client: client.clone(),
        alerts: cache::<Alert>(&client, namespace.as_deref()).await,
        providers: cache::<Provider>(&client, namespace.as_deref()).await,
        limiter: dispatch::RateLimiter::new(settings.rate_limit_interval),
        no_cross_namespace_refs: settings.no_cross_namespace_refs,
        recorder: Recorder::new(client.clone(), CONTROLLER_NAME),
        discovery: driftless_apply::Discovery::default(),
        in_flight: Mutex::new(Default::default()),
        google: settings.google.clone(),
    });
    let hooks = Arc::new(receiver::Webhooks {
        client: client.clone(),
        receivers: cache::<Receiver>(&client, namespace.as_deref()).await,
        discovery: driftless_apply::Discovery::default(),
        no_cross_namespace_refs: settings.no_cross_namespace_refs,
        seen: Mutex::new(Default::default()),
        http: driftless_artifact::http::client(
            &driftless_artifact::http::ClientSettings::default(),
            concat!("driftless-notification-controller/", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_default(),
        google_id_token_keys: settings.google.id_token_keys.clone(),
        google_keys: Mutex::new(None),
    });
    let event_durations = server::http_durations(&metrics, "event");
    let receiver_durations = server::http_durations(&metrics, "receiver");
    let receiver_controller = Arc::new(KindController::new(
        receiver::ReceiverReconciler,
        client.clone(),
        CONTROLLER_NAME,
        CONTROLLER_NAME,
        metrics,
        settings.loop_settings,
    ));
    let event_server = server::events(events, dispatcher.clone(), event_durations, shutdown.clone());
    let receiver_server = server::receivers(receivers, hooks, receiver_durations, shutdown.clone());
    let serving = async move {
        let (events, receivers) = tokio::join!(event_server, receiver_server);
        events.and(receivers)
    };
    let watch = server::watch_events(client, namespace, dispatcher);
    let stop = shutdown.clone();
    let leading = async move {
        tokio::select! {
            _ = watch => {},
            _ = receiver_controller.run(shutdown) => {},
            _ = stop => {},
        }
    };
    Parts {
        serving: Box::pin(serving),
        leading: Box::pin(leading),
    }
}

/// Runs both halves on the given listeners until `shutdown` (tests, single replicas).
pub async fn serve(
    client: Client,
    settings: Settings,
    events: tokio::net::TcpListener,
    receivers: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> anyhow::Result<()> {
    let parts = parts(client, settings, events, receivers, metrics, shutdown.clone()).await;
    tokio::select! {
        result = parts.serving => result?,
        _ = parts.leading => {},
        _ = shutdown => {},
    }
    Ok(())
}

#[cfg(test)]
mod flux_args_tests {
    use super::*;
    use clap::Parser;

    /// The container args of Flux v2.9's Deployment, alone and with the multi-tenancy lockdown
    /// patch's: a cluster moved from Flux keeps its manifests.
    #[test]
    fn flux_deployment_args_are_accepted() {
        let lockdown: &[&str] = &["--no-cross-namespace-refs=true"];
        for extra in [&[][..], lockdown] {
            let args = driftless_runtime::testing::flux_deployment_args(CONTROLLER_NAME, extra);
            if let Err(e) = Args::try_parse_from(&args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
