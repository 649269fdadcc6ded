//! A Provider with its Secrets resolved: `secretRef` (`address`, `token`, `username`, `proxy`,
//! `headers` as a YAML map), `certSecretRef` (`ca.crt`, `tls.crt` + `tls.key`) and
//! `proxySecretRef` (`address`, `username`, `password`), and the HTTP client they make.
//! Secret values go into requests only, never into logs, events or status.

use std::collections::BTreeMap;

use driftless_api::notification::Provider;
use driftless_artifact::http::{ClientSettings, client};
use driftless_runtime::github_app::AppCredentials;
use driftless_runtime::secrets::Problem;
use kube::{Client, ResourceExt};

use crate::providers::Target;

/// The types that authenticate as a GitHub App when their Secret has no token (Flux's).
const GITHUB_APP_TYPES: [&str; 3] = ["github", "githubdispatch", "githubpullrequestcomment"];
/// What a `googlepubsub` Provider's access token may do.
const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";

/// The data of Secret `namespace/name` as written; the error names the Secret only.
pub async fn raw_secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    driftless_runtime::secrets::secret_data(client, namespace, name)
        .await
        .map_err(|problem| problem.message().to_string())
}

/// The data of Secret `namespace/name` as text, surrounding whitespace trimmed (as Flux reads
/// a Provider's Secret).
pub async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    Ok(raw_secret_data(client, namespace, name)
        .await?
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).trim().to_string()))
        .collect())
}

/// The provider's target and the client that reaches it.
pub async fn target(kube: &Client, provider: &Provider) -> Result<(Target, reqwest::Client), String> {
    let namespace = provider.namespace().unwrap_or_default();
    let spec = &provider.spec;
    let mut target = Target {
        provider_type: spec.provider_type.clone(),
        address: spec.address.clone().unwrap_or_default(),
        channel: spec.channel.clone().unwrap_or_default(),
        username: spec.username.clone().unwrap_or_default(),
        uid: provider.metadata.uid.clone().unwrap_or_default(),
        ..Target::default()
    };
    let mut proxy = spec.proxy.clone().filter(|p| !p.is_empty());
    if let Some(r) = &spec.secret_ref {
        let data = secret_data(kube, &namespace, &r.name).await?;
        if let Some(address) = data.get("address").filter(|a| !a.is_empty()) {
            target.address = address.clone();
        }
        if let Some(password) = data.get("password") {
            target.password = password.clone();
        }
        if let Some(token) = data.get("token") {
            target.token = token.clone();
        }
        if let Some(username) = data.get("username").filter(|u| !u.is_empty()) {
            target.username = username.clone();
        }
        if let Some(p) = data.get("proxy").filter(|p| !p.is_empty()) {
            proxy = Some(p.clone());
        }
        if target.provider_type == "nats" {
            target.nats_creds = data.get("creds").cloned().unwrap_or_default();
            target.nats_nkey = data.get("nkey").cloned().unwrap_or_default();
        }
        if GITHUB_APP_TYPES.contains(&target.provider_type.as_str())
            && target.token.is_empty()
            && target.password.is_empty()
        {
            target.github_app = AppCredentials::from_secret(&data)?;
        }
        if let Some(headers) = data.get("headers") {
            // The parser's error would quote the value, which may be a credential.
            target.headers = serde_norway::from_str(headers).map_err(|_| {
                format!(
                    "secret '{namespace}/{}': invalid 'headers': expected a YAML map of strings",
                    r.name
                )
            })?;
        }
    }
    if let Some(r) = &spec.proxy_secret_ref {
        let data = secret_data(kube, &namespace, &r.name).await?;
        let address = data
            .get("address")
            .ok_or_else(|| format!("secret '{namespace}/{}' has no 'address' key", r.name))?;
        let mut url = url::Url::parse(address)
            .map_err(|e| format!("secret '{namespace}/{}': invalid proxy address: {e}", r.name))?;
        if let (Some(user), Some(password)) = (data.get("username"), data.get("password")) {
            let _ = url.set_username(user);
            let _ = url.set_password(Some(password));
        }
        proxy = Some(url.to_string());
    }
    let (mut ca, mut identity) = (None, None);
    if let Some(r) = &spec.cert_secret_ref {
        let data = secret_data(kube, &namespace, &r.name).await?;
        ca = data.get("ca.crt").cloned();
        if let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) {
            identity = Some(format!("{cert}\n{key}\n"));
        }
        if ca.is_none() && identity.is_none() {
            return Err(format!(
                "secret '{namespace}/{}' has neither 'ca.crt' nor 'tls.crt' and 'tls.key'",
                r.name
            ));
        }
    }
    let settings = ClientSettings {
        ca: ca.as_deref().map(str::as_bytes),
        identity: identity.as_deref().map(str::as_bytes),
        proxy: proxy.as_deref(),
    };
    let http = client(
        &settings,
        concat!("driftless-notification-controller/", env!("CARGO_PKG_VERSION")),
    )?;
    Ok((target, http))
}

/// Turns the credentials of `target` that are exchanged for a token (a GitHub App's, a Google
/// service account key of `googlepubsub`) into the token its requests carry. An endpoint that
/// fails or cannot be reached is worth retrying ([`Problem::Unavailable`]), a refusal is not.
pub async fn mint(
    target: &mut Target,
    http: &reqwest::Client,
    pubsub_authenticated: bool,
) -> Result<(), Problem> {
    if let Some(app) = target.github_app.clone() {
        target.token = app.installation_token(http).await?;
        if target.provider_type == "githubpullrequestcomment" {
            target.login = Some(format!("{}[bot]", app.slug(http).await?));
        }
    }
    if target.provider_type == "googlepubsub" && pubsub_authenticated && target.token.is_empty() {
        return Err(Problem::Invalid(
            "googlepubsub needs a service account key in the secret's 'token' (workload identity is not supported)".into(),
        ));
    }
    if target.provider_type == "googlepubsub" && !target.token.is_empty() {
        target.token = if pubsub_authenticated {
            driftless_runtime::google::access_token(http, &target.token, PUBSUB_SCOPE, "the secret's 'token'")
                .await?
        } else {
            String::new()
        };
    }
    Ok(())
}
