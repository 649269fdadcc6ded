//! The `nats` provider: the event JSON published on subject `channel` at server `address` (a
//! comma-separated list is tried in turn), over a connection made for the event and closed after
//! it (as Flux's notifier does), authenticated by the Secret's `creds` (a credentials file: user
//! JWT and seed), else its `nkey` seed, else `username` and `password` — Flux's order.

use std::time::Duration;

use async_nats::{ConnectErrorKind, ServerAddr};

use crate::event::Event;
use crate::providers::Target;

/// Publishes `event` through `target`. A failure is worth retrying (`true`) unless the provider
/// is misconfigured: no server, no subject, a malformed address or credential, or a server that
/// refuses the credentials.
pub async fn send(target: &Target, event: &Event, timeout: Duration) -> Result<(), (bool, String)> {
    if target.address.is_empty() {
        return Err((false, "NATS server (address) cannot be empty".into()));
    }
    if target.channel.is_empty() {
        return Err((false, "NATS subject (channel) cannot be empty".into()));
    }
    let subject = target.channel.clone();
    let failed = |retry: bool, why: String| {
        (
            retry,
            format!("error publishing event to subject {subject}: {why}"),
        )
    };
    let payload =
        serde_json::to_vec(event).map_err(|e| (false, format!("error json-marshaling event: {e}")))?;
    let servers = target
        .address
        .split(',')
        .map(|a| a.trim().parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(false, format!("error connecting to server: invalid address: {e}")))?;
    // One attempt per server: a dead server is the delivery's retry to make, not the client's.
    let mut options = async_nats::ConnectOptions::new()
        .name("NATS Provider Publisher")
        .connection_timeout(timeout)
        .max_reconnects(1);
    if !target.nats_creds.is_empty() {
        options = options
            .credentials(&target.nats_creds)
            .map_err(|e| failed(false, format!("error parsing credentials: {e}")))?;
    } else if !target.nats_nkey.is_empty() {
        nkeys::KeyPair::from_seed(&target.nats_nkey)
            .map_err(|e| failed(false, format!("error parsing nkey seed: {e}")))?;
        options = options.nkey(target.nats_nkey.clone());
    } else if !target.username.is_empty() && !target.password.is_empty() {
        options = options.user_and_password(target.username.clone(), target.password.clone());
    }
    let client = tokio::time::timeout(timeout, options.connect(servers))
        .await
        .map_err(|_| failed(true, "error connecting to server: timed out".into()))?
        .map_err(|e| {
            let refused = matches!(
                e.kind(),
                ConnectErrorKind::AuthorizationViolation
                    | ConnectErrorKind::Authentication
                    | ConnectErrorKind::ServerParse
            );
            failed(!refused, format!("error connecting to server: {e}"))
        })?;
    let published = async {
        client
            .publish(subject.clone(), payload.into())
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(timeout, published)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
        .map_err(|e| failed(true, format!("error publishing message to server: {e}")));
    let _ = tokio::time::timeout(timeout, client.drain()).await;
    outcome
}
