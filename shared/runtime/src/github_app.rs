//! GitHub App credentials (Secret keys `githubAppID`, `githubAppInstallationID` or
//! `githubAppInstallationOwner`, `githubAppPrivateKey`, optional `githubAppBaseURL`, as Flux
//! reads them): an installation access token minted as GitHub documents — an RS256 app JWT
//! (`iss` = app ID, issued 30 s in the past, valid 2 minutes) exchanged at
//! `POST {base}app/installations/{id}/access_tokens` — and cached for 80 % of its lifetime (at
//! most an hour), as Flux's token cache keeps it, so a busy Provider does not mint one per event.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::minted::MintedTokens;
use crate::secrets::Problem;

/// GitHub's API, where tokens are minted unless `githubAppBaseURL` says otherwise.
pub const GITHUB_API: &str = "https://api.github.com/";
/// Installation tokens and slugs, by the credentials they were had with.
static TOKENS: MintedTokens = MintedTokens::new();
/// The longest a token is kept (Flux's `--token-cache-max-duration` default).
const MAX_CACHED: Duration = Duration::from_secs(3600);

/// Which installation the token is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installation {
    Id(String),
    /// An organisation or user login, looked up first as an organisation.
    Owner(String),
}

/// A GitHub App's credentials from a Secret.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: String,
    pub installation: Installation,
    private_key: String,
    /// With a trailing `/`.
    pub base_url: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("installation", &self.installation)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    exp: u64,
    iat: u64,
}

impl AppCredentials {
    /// The credentials in a Secret's `data` (values trimmed), none without `githubAppID`;
    /// Flux's messages for the incomplete ones.
    pub fn from_secret(data: &BTreeMap<String, String>) -> Result<Option<Self>, String> {
        let value = |key: &str| data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let Some(app_id) = value("githubAppID") else {
            return Ok(None);
        };
        let installation = match (
            value("githubAppInstallationID"),
            value("githubAppInstallationOwner"),
        ) {
            (Some(_), Some(_)) => {
                return Err("only one of app installation owner or ID must be provided to use github app authentication".into());
            }
            (Some(id), None) => Installation::Id(id.to_string()),
            (None, Some(owner)) => Installation::Owner(owner.to_string()),
            (None, None) => {
                return Err(
                    "app installation owner or ID must be provided to use github app authentication".into(),
                );
            }
        };
        let private_key = value("githubAppPrivateKey")
            .ok_or("private key must be provided to use github app authentication")?
            .to_string();
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|e| format!("could not parse private key: {e}"))?;
        let base_url = match value("githubAppBaseURL") {
            Some(base) => {
                url::Url::parse(base).map_err(|e| format!("invalid API URL: {e}"))?;
                format!("{}/", base.trim_end_matches('/'))
            }
            None => GITHUB_API.to_string(),
        };
        Ok(Some(Self {
            app_id: app_id.to_string(),
            installation,
            private_key,
            base_url,
        }))
    }

    /// The app's JWT at `now` (seconds since the epoch).
    pub fn app_jwt(&self, now: u64) -> Result<String, String> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.as_bytes())
            .map_err(|e| format!("could not parse private key: {e}"))?;
        let iat = now.saturating_sub(30);
        let claims = Claims {
            iss: &self.app_id,
            exp: iat + 120,
            iat,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| format!("cannot sign the GitHub App JWT: {e}"))
    }

    /// What keys this app's tokens in the cache: everything that mints them.
    fn cache_key(&self, what: &str) -> [u8; 32] {
        let installation = match &self.installation {
            Installation::Id(id) => format!("id={id}"),
            Installation::Owner(owner) => format!("owner={owner}"),
        };
        MintedTokens::key(&[
            what,
            &self.app_id,
            &installation,
            &self.base_url,
            &self.private_key,
        ])
    }

    /// An installation access token: the cached one while it is fresh, else a new one.
    pub async fn installation_token(&self, http: &reqwest::Client) -> Result<String, Problem> {
        let key = self.cache_key("installation token");
        if let Some(token) = TOKENS.get(&key) {
            return Ok(token);
        }
        let (token, lifetime) = self.mint(http).await?;
        TOKENS.keep(key, &token, lifetime);
        Ok(token)
    }

    /// The app's slug (its comments are written by `<slug>[bot]`), asked once an hour.
    pub async fn slug(&self, http: &reqwest::Client) -> Result<String, Problem> {
        let key = self.cache_key("slug");
        if let Some(slug) = TOKENS.get(&key) {
            return Ok(slug);
        }
        let jwt = self.app_jwt(crate::google::now()).map_err(Problem::Invalid)?;
        let app = self.call(http, &jwt, "GET", "app").await?;
        let slug = app["slug"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Problem::Invalid("failed to get app information: no slug".into()))?;
        TOKENS.keep(key, &slug, MAX_CACHED);
        Ok(slug)
    }

    /// A new installation token and how long it lives.
    async fn mint(&self, http: &reqwest::Client) -> Result<(String, Duration), Problem> {
        let jwt = self.app_jwt(crate::google::now()).map_err(Problem::Invalid)?;
        let id = match &self.installation {
            Installation::Id(id) => id.clone(),
            Installation::Owner(owner) => {
                let organisation = self
                    .call(http, &jwt, "GET", &format!("orgs/{owner}/installation"))
                    .await;
                let found = match organisation {
                    Ok(found) => found,
                    Err(org_error) => self
                        .call(http, &jwt, "GET", &format!("users/{owner}/installation"))
                        .await
                        .map_err(|user_error| {
                            user_error.map_message(|user| {
                                format!(
                                    "failed to find organization installation: {}\nfailed to find user installation: {user}",
                                    org_error.message()
                                )
                            })
                        })?,
                };
                match &found["id"] {
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return Err(Problem::Invalid(format!("no installation id for '{owner}'"))),
                }
            }
        };
        let minted = self
            .call(
                http,
                &jwt,
                "POST",
                &format!("app/installations/{id}/access_tokens"),
            )
            .await?;
        let token = minted["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Problem::Invalid("GitHub returned no installation token".into()))?;
        let lifetime = minted["expires_at"]
            .as_str()
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|at| {
                let left = at.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
                Duration::from_secs(u64::try_from(left).unwrap_or_default())
            })
            .unwrap_or(MAX_CACHED);
        Ok((token.to_string(), lifetime))
    }

    /// One GitHub API call with the app JWT; its JSON answer.
    async fn call(
        &self,
        http: &reqwest::Client,
        jwt: &str,
        method: &str,
        path: &str,
    ) -> Result<serde_json::Value, Problem> {
        let url = format!("{}{path}", self.base_url);
        let method = if method == "POST" {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let mut request = http
            .request(method.clone(), &url)
            .bearer_auth(jwt)
            .header("Accept", "application/vnd.github.v3+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if method == reqwest::Method::POST {
            request = request.header("Content-Type", "application/json").body("null");
        }
        let response = request
            .send()
            .await
            .map_err(|e| Problem::Unavailable(format!("{method} {url}: {}", e.without_url())))?;
        let status = response.status();
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let message = format!(
            "{method} {url}: {} {}",
            status.as_u16(),
            body["message"].as_str().unwrap_or_default()
        );
        Err(
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                Problem::Unavailable(message)
            } else {
                Problem::Invalid(message)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::google::tests::{KEY, PUBLIC};

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Flux's messages for incomplete credentials; a PKCS#1 key (as GitHub hands them out)
    /// signs a JWT with the app ID as issuer, 30 s in the past, for two minutes.
    #[test]
    fn credentials_are_read_as_flux_reads_them_and_sign_the_app_jwt() {
        assert!(
            AppCredentials::from_secret(&secret(&[("token", "t")]))
                .unwrap()
                .is_none()
        );
        let refused = |pairs: &[(&str, &str)]| AppCredentials::from_secret(&secret(pairs)).unwrap_err();
        assert!(
            refused(&[("githubAppID", "1")]).starts_with("app installation owner or ID must be provided")
        );
        assert!(
            refused(&[
                ("githubAppID", "1"),
                ("githubAppInstallationID", "2"),
                ("githubAppInstallationOwner", "o")
            ])
            .starts_with("only one of app installation owner or ID")
        );
        assert!(
            refused(&[("githubAppID", "1"), ("githubAppInstallationID", "2")])
                .starts_with("private key must be provided")
        );
        assert!(
            refused(&[
                ("githubAppID", "1"),
                ("githubAppInstallationID", "2"),
                ("githubAppPrivateKey", "x")
            ])
            .starts_with("could not parse private key")
        );
        let app = AppCredentials::from_secret(&secret(&[
            ("githubAppID", "42"),
            ("githubAppInstallationOwner", "acme"),
            ("githubAppPrivateKey", KEY),
            ("githubAppBaseURL", "https://ghe.example/api/v3"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(app.base_url, "https://ghe.example/api/v3/");
        assert_eq!(app.installation, Installation::Owner("acme".into()));
        let jwt = app.app_jwt(crate::google::now()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["iss"], "42");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            120
        );
        assert!(format!("{app:?}").contains("42") && !format!("{app:?}").contains("PRIVATE"));
    }
}
