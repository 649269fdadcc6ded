//! Receivers: webhooks that make the toolkit reconcile at once.
//!
//! The reconciler gives each Receiver its path, `/hook/<hex sha256(token + name + namespace)>`
//! (`status.webhookPath`, Ready `Succeeded` "Receiver initialized for path: …"). The webhook
//! server ([`handle`]) finds the Receiver by that path, checks the request as its type says —
//! `generic` (nothing), `generic-hmac` (`X-Signature: <sha1|sha256|sha512>=<hex HMAC>`),
//! `github` (also Gitea: `X-Hub-Signature-256` / `X-Hub-Signature`, `ping` answered, `events`
//! on `X-GitHub-Event`), `gitlab` (`X-Gitlab-Token`, `events` on `X-Gitlab-Event`),
//! `bitbucket` (`X-Hub-Signature`, `events` on `X-Event-Key`), `harbor` (`Authorization`),
//! `nexus` (`X-Nexus-Webhook-Signature`), `dockerhub`, `quay`, `acr` (the payload's shape) — with
//! constant-time comparisons, refuses a replayed signature, then annotates every matching
//! resource with `reconcile.fluxcd.io/requestedAt`. Other types stall with a plain message.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use driftless_api::meta::{CrossNamespaceObjectReference, REQUESTED_AT_ANNOTATION};
use driftless_api::notification::{Receiver, ReceiverStatus};
use driftless_runtime::reconcile::{ReconcileContext, ReconcileError, Reconciler, Success};
use hmac::{Hmac, KeyInit, Mac};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};

use crate::connect::raw_secret_data;

/// Receiver types this controller validates.
const SUPPORTED: [&str; 13] = [
    "generic",
    "generic-oidc",
    "gcr",
    "cdevents",
    "generic-hmac",
    "github",
    "gitlab",
    "bitbucket",
    "harbor",
    "nexus",
    "dockerhub",
    "quay",
    "acr",
];
/// What makes `payload` not a CDEvent (the v0.4 context and subject), if anything.
fn cdevent_problem(payload: &serde_json::Value) -> Option<String> {
    let text = |pointer: &str| {
        payload
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    for field in ["version", "id", "source", "type", "timestamp"] {
        if text(&format!("/context/{field}")).is_none() {
            return Some(format!("context.{field} is missing"));
        }
    }
    let kind = text("/context/type").unwrap_or_default();
    if !kind.starts_with("dev.cdevents.") {
        return Some(format!("context.type '{kind}' is not a CDEvent type"));
    }
    if text("/context/timestamp").is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_err()) {
        return Some("context.timestamp is not an RFC 3339 time".into());
    }
    if text("/subject/id").is_none() {
        return Some("subject.id is missing".into());
    }
    if !payload.pointer("/subject/content").is_some_and(|c| c.is_object()) {
        return Some("subject.content is missing".into());
    }
    None
}

/// How long a Receiver waits for its token Secret before looking again.
const TOKEN_REQUEUE: Duration = Duration::from_secs(10);
/// How long a signature is remembered to refuse its replay.
const REPLAY_WINDOW: Duration = Duration::from_secs(600);

/// `/hook/<hex sha256(token + name + namespace)>`.
pub fn webhook_path(token: &[u8], name: &str, namespace: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(token);
    hasher.update(name.as_bytes());
    hasher.update(namespace.as_bytes());
    format!("/hook/{}", hex::encode(hasher.finalize()))
}

/// What is wrong with the OIDC side of a Receiver's spec: `generic-oidc` takes
/// `oidcProviders` and no `secretRef`, the other types the other way round (Flux's rules).
fn oidc_problem(receiver: &Receiver) -> Option<String> {
    let spec = &receiver.spec;
    let providers = spec.oidc_providers.as_deref().unwrap_or_default();
    if spec.receiver_type != "generic-oidc" {
        if !providers.is_empty() {
            return Some("oidcProviders can only be set when type is generic-oidc".into());
        }
        return spec
            .secret_ref
            .is_none()
            .then(|| "secretRef is required when type is not generic-oidc".to_string());
    }
    if spec.secret_ref.is_some() {
        return Some("secretRef cannot be set when type is generic-oidc".into());
    }
    crate::oidc::config_problem(providers)
}

/// A Receiver's `secretRef` data, as written, and its token (Flux uses the Secret's bytes as
/// they are, trailing newline included, for both the path and the signatures); `generic-oidc`
/// has no Secret (its path is made of an empty token).
async fn secret(
    client: &Client,
    receiver: &Receiver,
) -> Result<(BTreeMap<String, Vec<u8>>, Vec<u8>), String> {
    if receiver.spec.receiver_type == "generic-oidc" {
        return Ok((BTreeMap::new(), Vec::new()));
    }
    let namespace = receiver.namespace().unwrap_or_default();
    let Some(r) = &receiver.spec.secret_ref else {
        return Err("spec.secretRef is required for this receiver type".into());
    };
    let data = raw_secret_data(client, &namespace, &r.name).await?;
    let token = data
        .get("token")
        .filter(|t| !t.is_empty())
        .cloned()
        .ok_or_else(|| format!("secret '{namespace}/{}' has no 'token' key", r.name))?;
    Ok((data, token))
}

/// Gives Receivers their webhook path.
pub struct ReceiverReconciler;

impl Reconciler for ReceiverReconciler {
    type Kind = Receiver;

    /// 1. the type is one this controller validates (else stalled);
    /// 2. the token of `secretRef` (waited for);
    /// 3. `resourceFilter` compiles (else stalled);
    /// 4. the path, in `status.webhookPath`.
    async fn apply(
        &self,
        obj: &Receiver,
        status: &mut ReceiverStatus,
        ctx: &ReconcileContext<Receiver>,
    ) -> Result<Success, ReconcileError> {
        let kind = obj.spec.receiver_type.as_str();
        if !SUPPORTED.contains(&kind) {
            return Err(ReconcileError::stalled(
                "ValidationFailed",
                format!(
                    "receiver type '{kind}' is not supported: it is unknown (supported: {})",
                    SUPPORTED.join(", ")
                ),
            ));
        }
        if let Some(problem) = oidc_problem(obj) {
            return Err(ReconcileError::stalled("ValidationFailed", problem));
        }
        let (_, token) = secret(&ctx.client, obj)
            .await
            .map_err(|m| ReconcileError::waiting("TokenNotFound", m, TOKEN_REQUEUE))?;
        if let Some(filter) = obj.spec.resource_filter.as_deref().filter(|f| !f.is_empty()) {
            cel::Program::compile(filter).map_err(|e| {
                ReconcileError::stalled("ValidationFailed", format!("invalid resourceFilter: {e}"))
            })?;
        }
        let path = webhook_path(&token, &obj.name_any(), &obj.namespace().unwrap_or_default());
        status.webhook_path = Some(path.clone());
        Ok(Success::new(
            "Succeeded",
            format!("Receiver initialized for path: {path}"),
        ))
    }

    async fn cleanup(
        &self,
        _obj: &Receiver,
        _ctx: &ReconcileContext<Receiver>,
    ) -> Result<(), ReconcileError> {
        Ok(())
    }
}

/// What the webhook server needs: the Receivers, the client to annotate with, and the
/// signatures seen lately.
pub struct Webhooks {
    pub client: Client,
    pub receivers: Store<Receiver>,
    pub discovery: driftless_apply::Discovery,
    pub no_cross_namespace_refs: bool,
    pub seen: Mutex<HashMap<String, Instant>>,
    /// The client that fetches OIDC discovery documents and signing keys.
    pub http: reqwest::Client,
    /// Where Google publishes the keys of its ID tokens (`gcr`).
    pub google_id_token_keys: String,
    /// Google's keys as last fetched, and when: a request that anyone knowing the path can
    /// send must not make the controller fetch them every time.
    pub google_keys: Mutex<Option<(Instant, jsonwebtoken::jwk::JwkSet)>>,
}

/// A refused request: its status and a message safe to return.
type Refusal = (StatusCode, String);

/// Handles `POST <path>` with `body`.
pub async fn handle(
    hooks: Arc<Webhooks>,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let receiver = hooks
        .receivers
        .state()
        .into_iter()
        .find(|r| r.status.as_ref().and_then(|s| s.webhook_path.as_deref()) == Some(path))
        .ok_or((StatusCode::NOT_FOUND, "no receiver for this path".to_string()))?;
    let ready = receiver
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|c| driftless_runtime::conditions::is_true(c, "Ready"));
    if receiver.spec.suspend == Some(true) || !ready {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the receiver is not ready".into(),
        ));
    }
    let (data, token) = secret(&hooks.client, &receiver).await.map_err(|e| {
        tracing::error!(receiver = %receiver.name_any(), error = %e, "receiver token unavailable");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the receiver's token is unavailable".to_string(),
        )
    })?;
    // The path must still be the token's: after a rotation the old URL stops working at once.
    let expected = webhook_path(
        &token,
        &receiver.name_any(),
        &receiver.namespace().unwrap_or_default(),
    );
    if !constant_time_eq(expected.as_bytes(), path.as_bytes()) {
        return Err((StatusCode::NOT_FOUND, "no receiver for this path".into()));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_string());
    let events = receiver.spec.events.clone().unwrap_or_default();
    let mut signature = String::new();
    let mut request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut claims = serde_json::Value::Null;
    // Flux answers a request it cannot authenticate with a bare 400 and logs why.
    let unauthenticated = |why: String| {
        tracing::warn!(receiver = %receiver.name_any(), namespace = %receiver.namespace().unwrap_or_default(), error = %why, "request refused");
        (
            StatusCode::BAD_REQUEST,
            "cannot authenticate the request".to_string(),
        )
    };
    match receiver.spec.receiver_type.as_str() {
        "generic" => {}
        "generic-oidc" => {
            let bearer = crate::oidc::bearer(headers).map_err(&unauthenticated)?;
            let providers = receiver.spec.oidc_providers.as_deref().unwrap_or_default();
            claims = crate::oidc::check_generic(&hooks.http, bearer, providers)
                .await
                .map_err(&unauthenticated)?;
        }
        "gcr" => {
            let field = |key: &str| {
                data.get(key)
                    .map(|v| String::from_utf8_lossy(v).trim().to_string())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("invalid secret data: required field '{key}' for GCR receiver"))
            };
            let (email, audience) = (
                field("email").map_err(&unauthenticated)?,
                field("audience").map_err(&unauthenticated)?,
            );
            let why = |e: String| unauthenticated(format!("cannot authenticate GCR request: {e}"));
            let bearer = crate::oidc::bearer(headers).map_err(why)?;
            let keys = hooks.google_keys().await.map_err(why)?;
            crate::oidc::check_google(bearer, &keys, &audience, &email).map_err(why)?;
            // A Pub/Sub push: the registry's notification is the message's base64 data.
            let push: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot decode GCR webhook payload: {e}"),
                )
            })?;
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD
                .decode(
                    push.pointer("/message/data")
                        .and_then(|d| d.as_str())
                        .unwrap_or_default(),
                )
                .unwrap_or_default();
            let notification: serde_json::Value = if data.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_slice(&data).map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("cannot decode GCR webhook body: {e}"),
                    )
                })?
            };
            tracing::info!(receiver = %receiver.name_any(), digest = %notification["digest"].as_str().unwrap_or_default(), tag = %notification["tag"].as_str().unwrap_or_default(), "handling GCR event");
            request = serde_json::json!({"action": notification["action"], "digest": notification["digest"], "tag": notification["tag"]});
        }
        "generic-hmac" => {
            signature = header("X-Signature");
            if !hmac_matches(&signature, &token, body) {
                return Err(unauthorized("invalid or missing X-Signature"));
            }
        }
        "github" => {
            signature = Some(header("X-Hub-Signature-256"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| header("X-Hub-Signature"));
            if !hmac_matches(&signature, &token, body) {
                return Err(unauthorized("invalid or missing X-Hub-Signature"));
            }
            let event = header("X-GitHub-Event");
            if event == "ping" {
                return Ok("pong".into());
            }
            if !events.is_empty() && !events.iter().any(|e| e.eq_ignore_ascii_case(&event)) {
                return Ok(format!("event '{event}' ignored"));
            }
        }
        "gitlab" => {
            if !constant_time_eq(header("X-Gitlab-Token").as_bytes(), &token) {
                return Err(unauthorized("invalid or missing X-Gitlab-Token"));
            }
            let event = header("X-Gitlab-Event");
            if !events.is_empty() && !events.iter().any(|e| e.eq_ignore_ascii_case(&event)) {
                return Ok(format!("event '{event}' ignored"));
            }
        }
        "bitbucket" => {
            // Bitbucket Server signs with `X-Hub-Signature: sha256=<hex>`; `events` on `X-Event-Key`.
            signature = header("X-Hub-Signature");
            if !hmac_matches(&signature, &token, body) {
                return Err(unauthorized("invalid or missing X-Hub-Signature"));
            }
            let event = header("X-Event-Key");
            if !events.is_empty() && !events.iter().any(|e| e.eq_ignore_ascii_case(&event)) {
                return Ok(format!("event '{event}' ignored"));
            }
        }
        "harbor" => {
            if !constant_time_eq(header("Authorization").as_bytes(), &token) {
                return Err(unauthorized("invalid or missing Authorization"));
            }
        }
        "nexus" => {
            // Nexus signs with HMAC-SHA1 of the body, in hex.
            signature = format!("sha1={}", header("X-Nexus-Webhook-Signature"));
            if !hmac_matches(&signature, &token, body) {
                return Err(unauthorized("invalid or missing X-Nexus-Webhook-Signature"));
            }
        }
        "dockerhub" | "quay" | "acr" => {
            // These registries cannot sign: the secret path is the credential, and the payload
            // must be the registry's push notification.
            let payload: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let valid = match receiver.spec.receiver_type.as_str() {
                "dockerhub" => payload.pointer("/repository/repo_name").is_some(),
                "quay" => payload.get("docker_url").is_some() && payload.get("updated_tags").is_some(),
                _ => matches!(
                    payload.get("action").and_then(|a| a.as_str()),
                    Some("push" | "chart_push")
                ),
            };
            if !valid {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "the payload is not a push notification of this registry".into(),
                ));
            }
        }
        "cdevents" => {
            // Unsigned, as Flux's: the secret path is the credential, and the body must be a
            // CDEvent (v0.4); `events` filters on the CloudEvent type.
            let payload: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            cdevent_problem(&payload).map_or(Ok(()), |why| {
                Err((
                    StatusCode::BAD_REQUEST,
                    format!("unable to validate CDEvent event: {why}"),
                ))
            })?;
            let event = header("Ce-Type");
            if !events.is_empty() && !events.iter().any(|e| e.eq_ignore_ascii_case(&event)) {
                return Ok(format!("event '{event}' ignored"));
            }
        }
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("receiver type '{other}' is not supported"),
            ));
        }
    }
    // A signed delivery (the signature and, for GitHub, the delivery id) is acted on once
    // within the window; it is remembered only once acted on, so a sender's retry after a
    // failure still works.
    let replay_key =
        (!signature.is_empty()).then(|| format!("{path} {signature} {}", header("X-GitHub-Delivery")));
    if replay_key.as_deref().is_some_and(|k| hooks.seen_lately(k)) {
        return Err((StatusCode::CONFLICT, "replayed request".into()));
    }
    let annotated = annotate(&hooks, &receiver, &[("req", &request), ("claims", &claims)]).await.map_err(|m| {
        tracing::error!(receiver = %receiver.name_any(), error = %m, "receiver failed to request reconciles");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to request a reconcile of every resource".to_string(),
        )
    })?;
    if let Some(key) = replay_key {
        hooks.remember(&key);
    }
    tracing::info!(receiver = %receiver.name_any(), namespace = %receiver.namespace().unwrap_or_default(), annotated, "reconcile requested");
    Ok(format!("reconcile requested for {annotated} resource(s)"))
}

/// How long Google's ID token keys are reused (Google publishes them for days).
const GOOGLE_KEYS_TTL: Duration = Duration::from_secs(3600);

impl Webhooks {
    /// Google's ID token keys: the ones fetched within the last hour, else fetched now.
    async fn google_keys(&self) -> Result<jsonwebtoken::jwk::JwkSet, String> {
        let cached = self.google_keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((_, keys)) = cached.filter(|(at, _)| at.elapsed() < GOOGLE_KEYS_TTL) {
            return Ok(keys);
        }
        let keys = crate::oidc::keys(&self.http, &self.google_id_token_keys).await?;
        *self.google_keys.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Whether `key` was acted on within the replay window.
    fn seen_lately(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, at| now.duration_since(*at) < REPLAY_WINDOW);
        seen.contains_key(key)
    }

    fn remember(&self, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(key.to_string(), Instant::now());
    }
}

/// `<sha1|sha256|sha512>=<hex>` against the HMAC of `body` with `token`, in constant time.
fn hmac_matches(signature: &str, token: &[u8], body: &[u8]) -> bool {
    let Some((algorithm, hex_digest)) = signature.split_once('=') else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest.trim()) else {
        return false;
    };
    let key = token;
    match algorithm {
        "sha1" => <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&expected).is_ok()
            })
            .unwrap_or(false),
        "sha256" => <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&expected).is_ok()
            })
            .unwrap_or(false),
        "sha512" => <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&expected).is_ok()
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API version of a resource a Receiver names: its own, else the toolkit's for its kind.
fn api_version_of(resource: &CrossNamespaceObjectReference) -> Option<String> {
    if let Some(v) = resource.api_version.as_deref().filter(|v| !v.is_empty()) {
        return Some(v.to_string());
    }
    Some(
        match resource.kind.as_str() {
            "GitRepository" | "OCIRepository" | "HelmRepository" | "HelmChart" | "Bucket" => {
                "source.toolkit.fluxcd.io/v1"
            }
            "Kustomization" => "kustomize.toolkit.fluxcd.io/v1",
            "HelmRelease" => "helm.toolkit.fluxcd.io/v2",
            "ImageRepository" | "ImagePolicy" => "image.toolkit.fluxcd.io/v1",
            "ImageUpdateAutomation" => "image.toolkit.fluxcd.io/v1",
            _ => return None,
        }
        .to_string(),
    )
}

/// Annotates every resource the Receiver names (and its `resourceFilter` keeps) with
/// `reconcile.fluxcd.io/requestedAt`; returns how many. A resource that fails does not stop
/// the others; the failures are returned together.
async fn annotate(
    hooks: &Webhooks,
    receiver: &Receiver,
    variables: &[(&str, &serde_json::Value)],
) -> Result<usize, String> {
    let own_namespace = receiver.namespace().unwrap_or_default();
    let filter = receiver
        .spec
        .resource_filter
        .as_deref()
        .filter(|f| !f.is_empty())
        .map(cel::Program::compile)
        .transpose()
        .map_err(|e| format!("invalid resourceFilter: {e}"))?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: now}}});
    let mut count = 0;
    let mut errors = Vec::new();
    for resource in &receiver.spec.resources {
        match annotate_one(
            hooks,
            resource,
            &own_namespace,
            filter.as_ref(),
            variables,
            &patch,
        )
        .await
        {
            Ok(n) => count += n,
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(count)
    } else {
        Err(errors.join("; "))
    }
}

/// Annotates the objects one `resources` entry names; returns how many.
async fn annotate_one(
    hooks: &Webhooks,
    resource: &CrossNamespaceObjectReference,
    own_namespace: &str,
    filter: Option<&cel::Program>,
    variables: &[(&str, &serde_json::Value)],
    patch: &serde_json::Value,
) -> Result<usize, String> {
    let namespace = resource
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| own_namespace.to_string());
    if hooks.no_cross_namespace_refs && namespace != own_namespace {
        return Ok(0);
    }
    let api_version = api_version_of(resource)
        .ok_or_else(|| format!("resource kind '{}' needs an apiVersion", resource.kind))?;
    let (group, version) = driftless_apply::object::group_version(&api_version);
    let (api_resource, namespaced) = hooks
        .discovery
        .resolve(&hooks.client, &group, &version, &resource.kind)
        .await?;
    let api = driftless_apply::discovery::api(&hooks.client, &api_resource, namespaced, &namespace);
    let objects = if resource.name == "*" {
        let mut params = ListParams::default();
        if let Some(labels) = resource.match_labels.as_ref().filter(|l| !l.is_empty()) {
            let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            params = params.labels(&selector.join(","));
        }
        api.list_metadata(&params)
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .map(|o| o.metadata)
            .collect()
    } else {
        match api
            .get_metadata_opt(&resource.name)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(o) => vec![o.metadata],
            None => {
                tracing::warn!(kind = %resource.kind, name = %resource.name, %namespace, "receiver resource not found");
                Vec::new()
            }
        }
    };
    let mut count = 0;
    for metadata in objects {
        let name = metadata.name.clone().unwrap_or_default();
        if let Some(program) = filter {
            let mut context = cel::Context::default();
            let res =
                serde_json::json!({"apiVersion": api_version, "kind": resource.kind, "metadata": metadata});
            for (var, value) in std::iter::once(("res", &res)).chain(variables.iter().copied()) {
                if let Ok(value) = cel::to_value(value) {
                    context.add_variable_from_value(var, value);
                }
            }
            if !matches!(program.execute(&context), Ok(cel::Value::Bool(true))) {
                continue;
            }
        }
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| format!("failed to annotate {} '{namespace}/{name}': {e}", resource.kind))?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CDEvent (v0.4) passes; a CloudEvent of another kind or a broken one does not.
    #[test]
    fn cdevents_are_validated() {
        let event = serde_json::json!({
            "context": {"version": "0.4.1", "id": "271069a8", "source": "/ci/pipelines",
                "type": "dev.cdevents.artifact.published.0.2.0", "timestamp": "2026-12-03T07:00:00Z"},
            "subject": {"id": "pkg:oci/app@sha256:abc", "content": {}}});
        assert_eq!(cdevent_problem(&event), None);
        let mut other = event.clone();
        other["context"]["type"] = "com.example.push".into();
        assert!(cdevent_problem(&other).unwrap().contains("not a CDEvent type"));
        let mut broken = event.clone();
        broken["context"]["timestamp"] = "yesterday".into();
        assert!(cdevent_problem(&broken).unwrap().contains("RFC 3339"));
        assert!(
            cdevent_problem(&serde_json::json!({"subject": {}}))
                .unwrap()
                .contains("context.version")
        );
    }

    #[test]
    fn signatures_are_checked_with_the_token() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sign = |token: &str| {
            let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes()).expect("any key");
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        assert!(hmac_matches(&sign("t0k3n"), b"t0k3n", body));
        assert!(!hmac_matches(&sign("other"), b"t0k3n", body));
        assert!(!hmac_matches("", b"t0k3n", body));
        assert!(!hmac_matches("md5=00", b"t0k3n", body));
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
        assert_eq!(
            webhook_path(b"token", "name", "ns"),
            format!("/hook/{}", hex::encode(Sha256::digest(b"tokennamens")))
        );
    }
}
