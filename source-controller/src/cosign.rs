//! cosign signature verification for OCIRepository (`verify.provider: cosign` with public keys
//! in `verify.secretRef`), the way Flux verifies with a key: offline, without consulting a
//! transparency log.
//!
//! A cosign signature of the manifest `sha256:<hex>` is stored as the image
//! `<repository>:sha256-<hex>.sig`. Each of its layers is a "simple signing" JSON payload whose
//! signature (base64, ASN.1 DER ECDSA over the payload's SHA-256) is the layer annotation
//! `dev.cosignproject.cosign/signature`. A signature counts when one of the trusted keys verifies
//! it and its payload names the digest being pulled.

use driftless_artifact::registry::Puller;
use p256::{
    ecdsa::{DerSignature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use std::collections::BTreeMap;

/// Layer annotation holding a layer's signature.
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Largest signature payload read.
const MAX_PAYLOAD: i64 = 1 << 20;

/// Trusted cosign public keys, by their Secret entry name.
pub struct PublicKeys(Vec<(String, VerifyingKey)>);

/// Reads the `*.pub` entries of the Secret (PEM public keys, as `cosign generate-key-pair` writes).
pub fn keys_from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<PublicKeys, String> {
    let mut keys = Vec::new();
    for (name, value) in data.iter().filter(|(k, _)| k.ends_with(".pub")) {
        let pem = String::from_utf8_lossy(value);
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| format!("secret '{secret}' key '{name}': not a PEM ECDSA P-256 public key: {e}"))?;
        keys.push((name.clone(), key));
    }
    if keys.is_empty() {
        return Err(format!("secret '{secret}' holds no '*.pub' public keys"));
    }
    Ok(PublicKeys(keys))
}

/// Checks that a signature of `digest` in the repository `registry` pulls from verifies with
/// one of `keys`; returns the name of the key that verified it.
pub async fn verify(registry: &Puller, digest: &str, keys: &PublicKeys) -> Result<String, String> {
    let signature_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    let Some(manifest) = registry.manifest_if_present(&signature_tag).await? else {
        return Err("no signatures found".into());
    };
    for layer in &manifest.layers {
        let Some(encoded) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            continue;
        };
        if layer.size > MAX_PAYLOAD {
            continue;
        }
        let mut payload = Vec::new();
        registry.blob(layer, &mut payload).await?;
        if let Some(name) = verified_by(keys, &payload, encoded, digest) {
            return Ok(name.to_string());
        }
    }
    Err("no matching signatures were found".into())
}

/// The key that verifies `signature` (base64 DER) over `payload`, when the payload names `digest`.
fn verified_by<'k>(keys: &'k PublicKeys, payload: &[u8], signature: &str, digest: &str) -> Option<&'k str> {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .ok()?;
    let signature = DerSignature::from_bytes(&der).ok()?;
    let (name, _) = keys
        .0
        .iter()
        .find(|(_, key)| key.verify(payload, &signature).is_ok())?;
    let payload: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let signed = payload
        .pointer("/critical/image/docker-manifest-digest")?
        .as_str()?;
    (signed == digest).then_some(name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{SigningKey, signature::Signer};
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn keys(signing: &SigningKey) -> PublicKeys {
        let pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        keys_from_secret(
            "ns/keys",
            &BTreeMap::from([("cosign.pub".to_string(), pem.into_bytes())]),
        )
        .unwrap()
    }

    #[test]
    fn a_signature_counts_only_with_a_trusted_key_over_the_same_digest() {
        let signer = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let stranger = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let payload = br#"{"critical":{"identity":{"docker-reference":"r/app"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"cosign container image signature"},"optional":null}"#;
        let sign = |k: &SigningKey| {
            use base64::Engine;
            let sig: DerSignature = k.sign(payload);
            base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
        };
        let trusted = keys(&signer);
        assert_eq!(
            verified_by(&trusted, payload, &sign(&signer), "sha256:aa"),
            Some("cosign.pub")
        );
        assert_eq!(verified_by(&trusted, payload, &sign(&signer), "sha256:bb"), None);
        assert_eq!(
            verified_by(&trusted, payload, &sign(&stranger), "sha256:aa"),
            None
        );
        assert_eq!(verified_by(&trusted, payload, "not base64", "sha256:aa"), None);
    }

    #[test]
    fn secrets_without_public_keys_are_refused() {
        let e = keys_from_secret("ns/k", &BTreeMap::from([("readme".to_string(), b"x".to_vec())]))
            .err()
            .unwrap();
        assert!(e.contains("no '*.pub' public keys"), "{e}");
        let e = keys_from_secret("ns/k", &BTreeMap::from([("a.pub".to_string(), b"junk".to_vec())]))
            .err()
            .unwrap();
        assert!(e.contains("key 'a.pub'"), "{e}");
    }
}
