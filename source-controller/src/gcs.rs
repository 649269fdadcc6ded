//! Google Cloud Storage for `provider: gcp` Buckets: where the JSON API is, and the OAuth access
//! token of a service account key (`secretRef` key `serviceaccount`), obtained as Google's
//! client libraries do (a signed JWT exchanged at the key's `token_uri`).

use driftless_api::source::BucketSpec;
use driftless_runtime::secrets::Problem;

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

/// An access token for the service account key `key_json` (`secretRef` key `serviceaccount`).
pub async fn access_token(http: &reqwest::Client, key_json: &str) -> Result<String, Problem> {
    driftless_runtime::google::access_token(http, key_json, SCOPE, "'serviceaccount'").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_and_emulators_are_told_apart() {
        assert!(is_google("storage.googleapis.com"));
        assert!(is_google("https://storage.googleapis.com"));
        assert!(!is_google("127.0.0.1:4443"));
        assert!(!is_google("http://gcs.local:4443/"));
    }
}
