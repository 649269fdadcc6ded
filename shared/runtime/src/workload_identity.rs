//! `kubeConfig.configMapRef` (Kustomization, HelmRelease): a remote cluster reached with a
//! short-lived token of a ServiceAccount of the object's namespace — Flux's `generic` workload
//! identity provider, for any cluster that trusts this cluster's ServiceAccount tokens (through
//! OIDC, say). ConfigMap keys: `provider`, `address`, `ca.crt`, `audiences`,
//! `serviceAccountName`; the tokens are cached as Flux's token cache keeps them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use kube::config::Kubeconfig;
use kube::{Api, Client};

use crate::secrets::Problem;

/// What a workload-identity token is for: namespace, ServiceAccount, audiences.
type TokenKey = (String, String, Vec<String>);
/// How long a requested workload-identity token is valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The share of a token's lifetime it is reused for, as Flux's token cache.
const TOKEN_REUSE_SHARE: f64 = 0.8;
/// The longest a token is reused, whatever `--token-cache-max-duration` says (Flux's cap).
const TOKEN_REUSE_CAP: Duration = Duration::from_secs(3600);

/// ServiceAccount tokens for `kubeConfig.configMapRef`, reused until close to expiry.
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
    limits: TokenCacheLimits,
}

/// How many tokens are cached, and for how long at most (Flux's `--token-cache-max-size`,
/// `--token-cache-max-duration`).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct TokenCacheLimits {
    /// ServiceAccount tokens cached at most (0: none cached).
    #[arg(long = "token-cache-max-size", default_value_t = 100)]
    pub max_size: usize,
    /// Longest a ServiceAccount token is cached.
    #[arg(long = "token-cache-max-duration", default_value = "1h", value_parser = crate::args::duration_arg)]
    pub max_duration: Duration,
}

impl Default for TokenCacheLimits {
    fn default() -> Self {
        Self {
            max_size: 100,
            max_duration: Duration::from_secs(3600),
        }
    }
}

impl TokenCache {
    pub fn new(limits: TokenCacheLimits) -> Self {
        Self {
            tokens: Mutex::default(),
            limits,
        }
    }

    /// Keeps `token`, valid until `expires`, for reuse during 80% of its lifetime and at most
    /// `--token-cache-max-duration` (an hour at most), as Flux's cache; when full, the token
    /// whose reuse ends first makes room.
    fn keep(&self, key: TokenKey, token: String, expires: Instant) {
        if self.limits.max_size == 0 {
            return;
        }
        let now = Instant::now();
        let reuse = expires
            .saturating_duration_since(now)
            .mul_f64(TOKEN_REUSE_SHARE)
            .min(self.limits.max_duration)
            .min(TOKEN_REUSE_CAP);
        let expires = now + reuse;
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, until)| *until > Instant::now());
        if tokens.len() >= self.limits.max_size
            && !tokens.contains_key(&key)
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(key, (token, expires));
    }
}

/// What `kubeConfig.configMapRef` needs of the controller: the token cache, the
/// `--default-kubeconfig-service-account`, and whether the ObjectLevelWorkloadIdentity gate is on.
pub struct WorkloadIdentity {
    pub tokens: TokenCache,
    pub default_service_account: String,
    pub enabled: bool,
}

impl WorkloadIdentity {
    /// From the controller's flags: `--token-cache-*`, `--default-kubeconfig-service-account`,
    /// and the ObjectLevelWorkloadIdentity gate.
    pub fn new(limits: TokenCacheLimits, default_service_account: &str, enabled: bool) -> Self {
        Self {
            tokens: TokenCache::new(limits),
            default_service_account: default_service_account.to_string(),
            enabled,
        }
    }

    /// The kubeconfig of ConfigMap `namespace/name`: the remote cluster, with a short-lived
    /// token of a ServiceAccount of `namespace` as its user. Its text and the parsed kubeconfig (errors by class: a ConfigMap not there yet is
    /// Missing, a wrong one Invalid, an apiserver failure Unavailable).
    pub async fn kubeconfig(
        &self,
        own: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<(String, Kubeconfig), Problem> {
        let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(own.clone(), namespace);
        let data = config_maps
            .get(name)
            .await
            .map_err(|e| Problem::of_read(&format!("kubeconfig ConfigMap '{namespace}/{name}'"), e))?
            .data
            .unwrap_or_default();
        let key = |k: &str| {
            data.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let provider = key("provider").unwrap_or_else(|| "generic".into());
        if provider != "generic" {
            return Err(Problem::Invalid(format!(
                "kubeconfig ConfigMap '{namespace}/{name}': provider '{provider}' needs the cloud's workload identity, which this controller does not support; use provider 'generic' or kubeConfig.secretRef"
            )));
        }
        let address = key("address").ok_or_else(|| {
            Problem::Invalid(format!(
                "kubeconfig ConfigMap '{namespace}/{name}' has no 'address' key"
            ))
        })?;
        let account = key("serviceAccountName")
            .or_else(|| Some(self.default_service_account.clone()).filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                Problem::Invalid(
                    format!(
                        "kubeconfig ConfigMap '{namespace}/{name}' has no 'serviceAccountName' and no --default-kubeconfig-service-account is set"
                    ),
                )
            })?;
        // Flux issues ServiceAccount tokens for remote clusters only with the gate on.
        if !self.enabled {
            return Err(Problem::Invalid(format!(
                "kubeconfig ConfigMap '{namespace}/{name}': ObjectLevelWorkloadIdentity feature gate is not enabled"
            )));
        }
        let audiences = match key("audiences") {
            Some(list) => list
                .split([',', '\n'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            None => vec![address.clone()],
        };
        let token = self
            .service_account_token(own, namespace, &account, audiences)
            .await?;
        let mut cluster = serde_json::json!({"server": address});
        if let Some(ca) = data.get("ca.crt") {
            cluster["certificate-authority-data"] =
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(ca));
        }
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "remote", "cluster": cluster}],
            "users": [{"name": "workload-identity", "user": {"token": token}}],
            "contexts": [{"name": "remote", "context": {"cluster": "remote", "user": "workload-identity"}}],
            "current-context": "remote",
        });
        let parsed: Kubeconfig = serde_json::from_value(kubeconfig.clone()).map_err(|e| {
            Problem::Invalid(format!("invalid kubeconfig ConfigMap '{namespace}/{name}': {e}"))
        })?;
        Ok((kubeconfig.to_string(), parsed))
    }

    /// A token of ServiceAccount `namespace/account` for `audiences`: a cached one while it has
    /// not past its reuse time (see [`TokenCache::keep`]), else a new one from the TokenRequest API.
    pub async fn service_account_token(
        &self,
        own: &Client,
        namespace: &str,
        account: &str,
        audiences: Vec<String>,
    ) -> Result<String, Problem> {
        let key = (namespace.to_string(), account.to_string(), audiences);
        let now = Instant::now();
        let cached = self
            .tokens
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some((token, _)) = cached.filter(|(_, reuse_until)| *reuse_until > now) {
            return Ok(token);
        }
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": key.2, "expirationSeconds": TOKEN_LIFETIME.as_secs()},
        });
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(own.clone(), namespace);
        let response: k8s_openapi::api::authentication::v1::TokenRequest = accounts
            .create_subresource("token", account, &kube::api::PostParams::default(), &request)
            .await
            .map_err(|e| {
                Problem::of_read(&format!("a token for ServiceAccount '{namespace}/{account}'"), e)
            })?;
        let status = response.status.unwrap_or_default();
        // The apiserver may grant less than asked: its expiration counts, from the request on.
        let granted = status
            .expiration_timestamp
            .map(|t| {
                Duration::try_from(t.0.duration_since(k8s_openapi::jiff::Timestamp::now()))
                    .unwrap_or_default()
            })
            .unwrap_or(TOKEN_LIFETIME);
        let expires = now + granted.min(TOKEN_LIFETIME);
        let token = status.token.unwrap_or_default();
        self.tokens.keep(key, token.clone(), expires);
        Ok(token)
    }
}
