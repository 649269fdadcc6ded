//! Google Cloud Storage for `provider: gcp` Buckets: where the JSON API is, and the OAuth access
//! token of a service account key (`secretRef` key `serviceaccount`), obtained as Google's
//! client libraries do (a signed JWT exchanged at the key's `token_uri`).

use driftless_api::source::BucketSpec;
use driftless_runtime::secrets::Problem;
use rsa::{pkcs1v15::SigningKey, pkcs8::DecodePrivateKey, sha2::Sha256, signature::SignatureEncoding};
use std::time::{SystemTime, UNIX_EPOCH};

/// Read-only access to objects, the scope Flux's client asks for.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
/// Google's JSON API host.
const GOOGLE: &str = "storage.googleapis.com";

/// The JSON API endpoint of a Bucket: `STORAGE_EMULATOR_HOST` when set (as Google's clients
/// honour it), else `spec.endpoint`, else Google's.
pub fn endpoint(spec: &BucketSpec) -> String {
    std::env::var("STORAGE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| Some(spec.endpoint.clone()).filter(|e| !e.is_empty()))
        .unwrap_or_else(|| GOOGLE.into())
}

/// Whether `endpoint` is Google's service (where a request needs credentials) rather than an
/// emulator or a proxy of one.
pub fn is_google(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .last()
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host == "googleapis.com" || host.ends_with(".googleapis.com")
}

#[derive(serde::Deserialize)]
struct ServiceAccountKey {
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

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The signed JWT assertion of `key` for `now` (seconds since the epoch), and the token URI.
fn assertion(key_json: &str, now: u64) -> Result<(String, String), String> {
    let key: ServiceAccountKey = serde_json::from_str(key_json)
        .map_err(|e| format!("invalid service account key in 'serviceaccount': {e}"))?;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&key.private_key)
        .map_err(|e| format!("invalid private key in 'serviceaccount': {e}"))?;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.private_key_id});
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let unsigned = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = rsa::signature::Signer::sign(&SigningKey::<Sha256>::new(private), unsigned.as_bytes());
    Ok((format!("{unsigned}.{}", b64(&signature.to_vec())), key.token_uri))
}

/// An access token for the service account key `key_json`. A malformed key, or a token
/// endpoint refusing it (4xx), is the spec's problem; an unreachable or failing endpoint
/// (network, 429, 5xx) is retried.
pub async fn access_token(http: &reqwest::Client, key_json: &str) -> Result<String, Problem> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (jwt, token_uri) = assertion(key_json, now).map_err(Problem::Invalid)?;
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
        Some(token) if status.is_success() => Ok(token.to_string()),
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
mod tests {
    use super::*;
    use rsa::{pkcs1v15::VerifyingKey, pkcs8::EncodePrivateKey, signature::Verifier};

    #[test]
    fn google_and_emulators_are_told_apart() {
        assert!(is_google("storage.googleapis.com"));
        assert!(is_google("https://storage.googleapis.com"));
        assert!(!is_google("127.0.0.1:4443"));
        assert!(!is_google("http://gcs.local:4443/"));
    }

    /// The assertion is an RS256 JWT the key's public half verifies, for the key's token URI
    /// and the read-only storage scope.
    #[test]
    fn the_assertion_is_a_signed_jwt_for_the_token_uri() {
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap_or_else(|e| panic!("{e}"));
        let pem = private
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap_or_else(|e| panic!("{e}"));
        let key = serde_json::json!({"type": "service_account", "client_email": "flux@p.iam.gserviceaccount.com",
            "private_key": pem.as_str(), "private_key_id": "k1", "token_uri": "https://oauth2.example/token"});
        let (jwt, uri) = assertion(&key.to_string(), 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(uri, "https://oauth2.example/token");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        use base64::Engine;
        let decode = |p: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap_or_default();
        assert_eq!(claims["aud"], "https://oauth2.example/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"], 4600);
        let signature =
            rsa::pkcs1v15::Signature::try_from(decode(parts[2]).as_slice()).unwrap_or_else(|e| panic!("{e}"));
        VerifyingKey::<Sha256>::new(private.to_public_key())
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(assertion("{}", 0).is_err());
    }
}
