//! Bearer tokens of `gcr` and `generic-oidc` Receivers, checked as Flux checks them: a JWT
//! signed by one of its issuer's published keys (JWKS), for the expected audience and issuer,
//! not expired; `generic-oidc` finds the keys by OIDC discovery and then runs the provider's
//! CEL `variables` and `validations` over the claims.

use axum::http::HeaderMap;
use driftless_api::notification::OIDCProvider;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// The audience a generic-oidc provider expects when it names none (Flux's default).
pub const DEFAULT_AUDIENCE: &str = "notification-controller";
/// The issuers of Google ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// The bearer token of the `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, String> {
    let value = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("the Authorization header is missing or malformed")?;
    let token = value.trim();
    if token.is_empty() {
        return Err("the Authorization header is missing a bearer token".into());
    }
    Ok(token)
}

/// The `iss` claim of `token`, not verified (it says which provider's keys verify it).
pub fn unverified_issuer(token: &str) -> Result<String, String> {
    use base64::Engine;
    let failed = |why: String| format!("failed to parse bearer token: {why}");
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(failed("token is not a JWT".into()));
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .map_err(|e| failed(format!("failed to decode token payload: {e}")))?;
    let claims: Value = serde_json::from_slice(&payload)
        .map_err(|e| failed(format!("failed to parse token payload: {e}")))?;
    claims["iss"]
        .as_str()
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .ok_or_else(|| failed("token is missing the 'iss' claim".into()))
}

/// How long a discovery document or key set may take to arrive.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// GETs `url` as JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("invalid JSON from {url}: {e}"))
}

/// The signing keys published at `url`.
pub async fn keys(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    serde_json::from_value(get_json(http, url).await?).map_err(|e| format!("invalid JWKS at {url}: {e}"))
}

/// The claims of `token` once its signature (by a key of `keys` with one of `algorithms`), its
/// issuer (one of `issuers`), audience (contains `audience`) and lifetime (`leeway` seconds
/// either side) are checked.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    algorithms: &[Algorithm],
    issuers: &[&str],
    audience: &str,
    leeway: u64,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if !algorithms.contains(&header.alg) {
        return Err(format!("unexpected signing algorithm {:?}", header.alg));
    }
    let mut validation = Validation::new(header.alg);
    // A token without an audience, an issuer or an expiry is refused (go-oidc's rules): the
    // checks below only look at claims that are there.
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(issuers);
    validation.set_audience(&[audience]);
    validation.validate_nbf = true;
    validation.leeway = leeway;
    let candidates: Vec<_> = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err("no published key matches the token's key id".into());
    }
    let mut last = String::new();
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<Value>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Checks a `gcr` Receiver's request: a Google ID token for `audience` (exact), from Google,
/// for the verified `email`.
pub fn check_google(token: &str, keys: &JwkSet, audience: &str, email: &str) -> Result<(), String> {
    let claims = verify(
        token,
        keys,
        &[Algorithm::RS256, Algorithm::ES256],
        &GOOGLE_ISSUERS,
        audience,
        0,
    )
    .map_err(|e| format!("invalid ID token: audience is '{audience}': {e}"))?;
    let found = claims["email"].as_str().unwrap_or_default();
    if found != email {
        return Err(format!("token email is '{found}', want '{email}'"));
    }
    if claims["email_verified"] != Value::Bool(true) {
        return Err(format!("token email '{found}' is not verified"));
    }
    Ok(())
}

/// What a `generic-oidc` Receiver's spec gets wrong, in Flux's words (the reconciler stalls
/// on it).
pub fn config_problem(providers: &[OIDCProvider]) -> Option<String> {
    if providers.is_empty() {
        return Some("generic-oidc receiver requires at least one oidcProvider".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in providers.iter().enumerate() {
        let url = &p.issuer_url;
        if url.is_empty() {
            return Some(format!("oidcProviders[{i}]: issuerURL is required"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Some(format!(
                "oidcProviders[{i}]: issuerURL \"{url}\" must start with http:// or https://"
            ));
        }
        if !seen.insert(url) {
            return Some(format!("oidcProviders[{i}]: duplicate issuerURL \"{url}\""));
        }
        let at = format!("oidcProviders[{i}] (issuerURL=\"{url}\")");
        let validations = p.validations.as_deref().unwrap_or_default();
        if validations.is_empty() {
            return Some(format!(
                "{at}: at least one validation is required; without validations any caller able to obtain a token from this issuer can trigger the Receiver"
            ));
        }
        for (j, v) in p.variables.iter().flatten().enumerate() {
            if v.name.is_empty() {
                return Some(format!("{at}: variables[{j}]: name is required"));
            }
            if v.expression.is_empty() {
                return Some(format!(
                    "{at}: variables[{j}] (name=\"{}\"): expression is required",
                    v.name
                ));
            }
            if let Err(e) = cel::Program::compile(&v.expression) {
                return Some(format!(
                    "{at}: invalid expression for variable \"{}\": {e}",
                    v.name
                ));
            }
        }
        for (j, v) in validations.iter().enumerate() {
            if v.expression.is_empty() {
                return Some(format!("{at}: validations[{j}]: expression is required"));
            }
            if v.message.is_empty() {
                return Some(format!("{at}: validations[{j}]: message is required"));
            }
            if let Err(e) = cel::Program::compile(&v.expression) {
                return Some(format!(
                    "{at}: invalid expression for validation \"{}\": {e}",
                    v.message
                ));
            }
        }
    }
    None
}

/// Checks a `generic-oidc` Receiver's request; its verified claims.
pub async fn check_generic(
    http: &reqwest::Client,
    token: &str,
    providers: &[OIDCProvider],
) -> Result<Value, String> {
    let issuer = unverified_issuer(token)?;
    let provider = providers
        .iter()
        .find(|p| p.issuer_url == issuer)
        .ok_or_else(|| format!("no oidcProvider configured for issuer \"{issuer}\""))?;
    let failed_init = |e: String| format!("failed to initialize OIDC provider for issuer \"{issuer}\": {e}");
    let discovery = get_json(
        http,
        &format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    )
    .await
    .map_err(failed_init)?;
    let discovered = discovery["issuer"].as_str().unwrap_or_default();
    if discovered != issuer {
        return Err(failed_init(format!(
            "oidc: issuer did not match the issuer returned by provider, expected \"{issuer}\" got \"{discovered}\""
        )));
    }
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default();
    let keys = keys(http, jwks_uri).await.map_err(failed_init)?;
    let algorithms: Vec<Algorithm> = discovery["id_token_signing_alg_values_supported"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok())
        // Never a shared-secret algorithm: the keys are public.
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .collect();
    let algorithms = if algorithms.is_empty() {
        vec![Algorithm::RS256]
    } else {
        algorithms
    };
    let audience = provider
        .audience
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_AUDIENCE);
    let claims = verify(token, &keys, &algorithms, &[issuer.as_str()], audience, 0)
        .map_err(|e| format!("failed to verify OIDC token: {e}"))?;
    validate_claims(provider, &claims)?;
    Ok(claims)
}

/// Runs the provider's `variables` (each sees `claims` and the ones before it as `vars`) then
/// its `validations`; every failing validation's message is reported.
pub fn validate_claims(provider: &OIDCProvider, claims: &Value) -> Result<(), String> {
    let claims = cel::to_value(claims).map_err(|e| e.to_string())?;
    let mut vars: std::collections::HashMap<String, cel::Value> = Default::default();
    let context = |vars: &std::collections::HashMap<String, cel::Value>| {
        let mut context = cel::Context::default();
        context.add_variable_from_value("claims", claims.clone());
        context.add_variable_from_value("vars", cel::Value::from(vars.clone()));
        context
    };
    for variable in provider.variables.iter().flatten() {
        let value = cel::Program::compile(&variable.expression)
            .map_err(|e| e.to_string())
            .and_then(|p| p.execute(&context(&vars)).map_err(|e| e.to_string()))
            .map_err(|e| format!("failed to evaluate variable \"{}\": {e}", variable.name))?;
        vars.insert(variable.name.clone(), value);
    }
    let mut failed = Vec::new();
    for validation in provider.validations.iter().flatten() {
        let passed = cel::Program::compile(&validation.expression)
            .map_err(|e| e.to_string())
            .and_then(|p| p.execute(&context(&vars)).map_err(|e| e.to_string()))
            .map_err(|e| format!("failed to evaluate validation: {e}"))?;
        if passed != cel::Value::Bool(true) {
            failed.push(validation.message.clone());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("token validation failed: {}", failed.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn provider(validations: Value) -> OIDCProvider {
        serde_json::from_value(serde_json::json!({"issuerURL": "https://issuer.example",
            "variables": [{"name": "repo", "expression": "claims.repository"}],
            "validations": validations}))
        .unwrap()
    }

    #[test]
    fn claims_go_through_variables_and_validations() {
        let p = provider(serde_json::json!([
            {"expression": "vars.repo == 'acme/app'", "message": "wrong repository"},
            {"expression": "claims.ref == 'refs/heads/main'", "message": "wrong ref"}]));
        assert!(config_problem(std::slice::from_ref(&p)).is_none());
        let ok = serde_json::json!({"repository": "acme/app", "ref": "refs/heads/main"});
        assert_eq!(validate_claims(&p, &ok), Ok(()));
        let bad = serde_json::json!({"repository": "evil/app", "ref": "refs/heads/dev"});
        assert_eq!(
            validate_claims(&p, &bad).unwrap_err(),
            "token validation failed: wrong repository; wrong ref"
        );
    }

    #[test]
    fn configurations_are_refused_in_fluxs_words() {
        assert_eq!(
            config_problem(&[]).unwrap(),
            "generic-oidc receiver requires at least one oidcProvider"
        );
        assert!(
            config_problem(&[provider(serde_json::json!([]))])
                .unwrap()
                .contains("at least one validation is required")
        );
        let twice = provider(serde_json::json!([{"expression": "true", "message": "m"}]));
        assert!(
            config_problem(&[twice.clone(), twice])
                .unwrap()
                .contains("duplicate issuerURL")
        );
        assert!(
            config_problem(&[provider(
                serde_json::json!([{"expression": "claims.(", "message": "m"}])
            )])
            .unwrap()
            .contains("invalid expression for validation \"m\"")
        );
        assert_eq!(
            unverified_issuer("a.b").unwrap_err(),
            "failed to parse bearer token: token is not a JWT"
        );
    }
}
