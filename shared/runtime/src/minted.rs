//! Tokens minted from credentials (a GitHub App's installation tokens, Google access tokens),
//! kept by the digest of what minted them for 80 % of their lifetime and at most an hour, as
//! Flux's token cache keeps them, so a busy Provider does not mint one per event.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The longest a token is reused (Flux's `--token-cache-max-duration` cap).
const MAX_REUSE: Duration = Duration::from_secs(3600);
/// Most tokens kept; past it, the one whose reuse ends first makes room.
const MAX_TOKENS: usize = 1000;

/// Minted tokens by the digest of their credentials, with when their reuse ends.
pub struct MintedTokens(Mutex<BTreeMap<[u8; 32], (String, Instant)>>);

impl MintedTokens {
    pub const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    /// The digest that keys a token: of everything that minted it.
    pub fn key(parts: &[&str]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.finalize().into()
    }

    /// The token kept under `key`, while it may be reused.
    pub fn get(&self, key: &[u8; 32]) -> Option<String> {
        let tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(token, _)| token.clone())
    }

    /// Keeps `token`, which lives `lifetime`, for 80 % of it (at most an hour).
    pub fn keep(&self, key: [u8; 32], token: &str, lifetime: Duration) {
        let now = Instant::now();
        let mut tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, until)| *until > now);
        if tokens.len() >= MAX_TOKENS
            && let Some(first) = tokens
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| *k)
        {
            tokens.remove(&first);
        }
        tokens.insert(
            key,
            (token.to_string(), now + lifetime.mul_f64(0.8).min(MAX_REUSE)),
        );
    }
}

impl Default for MintedTokens {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_reused_for_most_of_their_life() {
        let tokens = MintedTokens::new();
        let key = MintedTokens::key(&["app", "42"]);
        assert_ne!(key, MintedTokens::key(&["app4", "2"]));
        tokens.keep(key, "t", Duration::from_secs(3600));
        assert_eq!(tokens.get(&key).as_deref(), Some("t"));
        tokens.keep(key, "gone", Duration::ZERO);
        assert_eq!(tokens.get(&key), None);
    }
}
