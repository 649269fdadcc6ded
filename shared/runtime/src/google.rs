//! Google service account keys: the OAuth access token of a key (the JSON Google issues, with
//! `client_email`, `private_key` and `token_uri`), obtained as Google's client libraries do — an
//! RS256 JWT assertion exchanged at the key's `token_uri`. Used by Buckets on Google Cloud
//! Storage and by `googlepubsub` Providers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::minted::MintedTokens;
use crate::secrets::Problem;

/// Access tokens by the key and scope they were had for.
static TOKENS: MintedTokens = MintedTokens::new();

#[derive(serde::Deserialize)]
struct ServiceAccountKey {
    #[serde(default, rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// The signed JWT assertion of `key_json` for `scope` at `now` (seconds since the epoch), and
/// the token URI it is exchanged at. `what` names the key's place in messages.
pub fn assertion(key_json: &str, scope: &str, now: u64, what: &str) -> Result<(String, String), String> {
    let key: ServiceAccountKey =
        serde_json::from_str(key_json).map_err(|e| format!("invalid service account key in {what}: {e}"))?;
    if !key.kind.is_empty() && key.kind != "service_account" {
        return Err(format!(
            "credentials of type '{}' in {what} are not supported: give a service account key",
            key.kind
        ));
    }
    let signing = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
        .map_err(|e| format!("invalid private key in {what}: {e}"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.private_key_id.clone()).filter(|k| !k.is_empty());
    let claims = Claims {
        iss: &key.client_email,
        scope,
        aud: &key.token_uri,
        iat: now,
        exp: now + 3600,
    };
    let jwt = jsonwebtoken::encode(&header, &claims, &signing)
        .map_err(|e| format!("cannot sign with the key in {what}: {e}"))?;
    Ok((jwt, key.token_uri))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An access token for `scope` from the service account key `key_json` (`what` names where the
/// key was read). A malformed key, or a token endpoint refusing it (4xx), is the spec's
/// problem; an unreachable or failing endpoint (network, 429, 5xx) is retried.
pub async fn access_token(
    http: &reqwest::Client,
    key_json: &str,
    scope: &str,
    what: &str,
) -> Result<String, Problem> {
    let cache_key = MintedTokens::key(&[key_json, scope]);
    if let Some(token) = TOKENS.get(&cache_key) {
        return Ok(token);
    }
    let (jwt, token_uri) = assertion(key_json, scope, now(), what).map_err(Problem::Invalid)?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
        .append_pair("assertion", &jwt)
        .finish();
    let response = http
        .post(&token_uri)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| {
            Problem::Unavailable(format!(
                "failed to get an access token from '{token_uri}': {}",
                e.without_url()
            ))
        })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match body.get("access_token").and_then(|t| t.as_str()) {
        Some(token) if status.is_success() => {
            let lifetime = body.get("expires_in").and_then(|s| s.as_u64()).unwrap_or(3600);
            TOKENS.keep(cache_key, token, std::time::Duration::from_secs(lifetime));
            Ok(token.to_string())
        }
        _ => {
            let message = format!(
                "failed to get an access token from '{token_uri}': {} {}",
                status,
                body.get("error_description")
                    .or_else(|| body.get("error"))
                    .and_then(|e| e.as_str())
                    .unwrap_or_default()
            );
            let retried = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            Err(if retried {
                Problem::Unavailable(message)
            } else {
                Problem::Invalid(message)
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The test key pair (PKCS#1 private, SPKI public).
    pub(crate) const KEY: &str = include_str!("../testdata/rsa-test-key.pem");
    pub(crate) const PUBLIC: &str = include_str!("../testdata/rsa-test-key.pub.pem");

    /// The assertion is an RS256 JWT the key's public half verifies, for the key's token URI
    /// and the scope asked for.
    #[test]
    fn the_assertion_is_a_signed_jwt_for_the_token_uri() {
        let key = serde_json::json!({"type": "service_account", "client_email": "flux@p.iam.gserviceaccount.com",
            "private_key": KEY, "private_key_id": "k1", "token_uri": "https://oauth2.example/token"});
        let (jwt, uri) = assertion(&key.to_string(), "scope-a", now(), "'serviceaccount'").unwrap();
        assert_eq!(uri, "https://oauth2.example/token");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://oauth2.example/token"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("k1"));
        assert_eq!(decoded.claims["scope"], "scope-a");
        assert_eq!(decoded.claims["iss"], "flux@p.iam.gserviceaccount.com");
        let exp = decoded.claims["exp"].as_u64().unwrap();
        assert_eq!(exp - decoded.claims["iat"].as_u64().unwrap(), 3600);
        let refused = assertion("{}", "s", 0, "'serviceaccount'").unwrap_err();
        assert!(
            refused.starts_with("invalid service account key in 'serviceaccount'"),
            "{refused}"
        );
    }
}
