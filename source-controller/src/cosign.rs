//! cosign signature verification for OCIRepository and OCI HelmCharts (`verify.provider: cosign` with public keys
//! in `verify.secretRef`), the way Flux verifies with a key: offline, without consulting a
//! transparency log. Both places cosign keeps signatures are read, as Flux reads them:
//!
//! * cosign v3 (and v2 with `--new-bundle-format`): Sigstore bundles attached to the manifest as
//!   OCI 1.1 referrers (the referrers API, or the `sha256-<hex>` referrers tag where the
//!   registry has none). A bundle holds a DSSE envelope whose in-toto statement names the
//!   digest as its subject, or a message signature over the digest itself.
//! * cosign v2, used when no bundle is attached: the image `<repository>:sha256-<hex>.sig`,
//!   each layer a "simple signing" JSON payload naming the digest, its signature in the layer
//!   annotation `dev.cosignproject.cosign/signature`.
//!
//! Signatures are ASN.1 DER ECDSA P-256 with SHA-256 (what `cosign generate-key-pair` makes).

use crate::common::{self, VerificationFailure};
use base64::Engine;
use driftless_api::meta::{ReconcileStatus, condition_types as ct};
use driftless_api::source::OCIRepositoryVerification;
use driftless_artifact::registry::Puller;
use driftless_runtime::conditions;
use driftless_runtime::reconcile::ReconcileError;
use p256::{
    ecdsa::{
        DerSignature, VerifyingKey,
        signature::{Verifier, hazmat::PrehashVerifier},
    },
    pkcs8::DecodePublicKey,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Media types (and artifact types) of Sigstore bundles start so (`…v0.3+json`).
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle";
/// The OCI empty descriptor's media type.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Most referrers read when looking for bundles.
const MAX_REFERRERS: usize = 32;
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
    // A referrers index may describe a bundle manifest by its config media type (the empty
    // descriptor) rather than its artifactType, so candidates are read to find the bundles.
    let candidates = registry.referrers(digest).await?.into_iter().filter(|r| {
        r.artifact_type
            .as_deref()
            .is_none_or(|t| t.starts_with(BUNDLE_MEDIA_TYPE) || t == EMPTY_MEDIA_TYPE)
    });
    let mut bundles = Vec::new();
    for referrer in candidates.take(MAX_REFERRERS) {
        let (manifest, _) = registry.manifest(&referrer.digest).await?;
        bundles.extend(
            manifest
                .layers
                .into_iter()
                .filter(|l| l.media_type.starts_with(BUNDLE_MEDIA_TYPE) && l.size <= MAX_PAYLOAD),
        );
    }
    if bundles.is_empty() {
        return verify_signature_image(registry, digest, keys).await;
    }
    for layer in &bundles {
        let mut bundle = Vec::new();
        registry.blob(layer, &mut bundle).await?;
        if let Some(name) = bundle_verified_by(keys, &bundle, digest) {
            return Ok(name.to_string());
        }
    }
    Err("no matching signatures were found".into())
}

/// cosign v2's signature image: `<repository>:sha256-<hex>.sig`.
async fn verify_signature_image(
    registry: &Puller,
    digest: &str,
    keys: &PublicKeys,
) -> Result<String, String> {
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

fn base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// The key whose signature (base64 DER) over `message` verifies.
fn signer<'k>(keys: &'k PublicKeys, message: &[u8], signature: &str) -> Option<&'k str> {
    let signature = DerSignature::from_bytes(&base64(signature)?).ok()?;
    let (name, _) = keys
        .0
        .iter()
        .find(|(_, key)| key.verify(message, &signature).is_ok())?;
    Some(name)
}

/// The key that verifies `signature` (base64 DER) over `payload`, when the payload names `digest`.
fn verified_by<'k>(keys: &'k PublicKeys, payload: &[u8], signature: &str, digest: &str) -> Option<&'k str> {
    let name = signer(keys, payload, signature)?;
    let payload: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let signed = payload
        .pointer("/critical/image/docker-manifest-digest")?
        .as_str()?;
    (signed == digest).then_some(name)
}

/// The key that verifies a Sigstore bundle (JSON) about `digest`: a DSSE envelope whose in-toto
/// statement has the digest as a subject, or a message signature over the digest.
fn bundle_verified_by<'k>(keys: &'k PublicKeys, bundle: &[u8], digest: &str) -> Option<&'k str> {
    let bundle: serde_json::Value = serde_json::from_slice(bundle).ok()?;
    let hex_digest = digest.strip_prefix("sha256:")?;
    if let Some(envelope) = bundle.get("dsseEnvelope") {
        let payload_type = envelope.get("payloadType")?.as_str()?;
        let payload = base64(envelope.get("payload")?.as_str()?)?;
        // DSSE signs the pre-authentication encoding of type and payload.
        let mut pae = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
        pae.extend_from_slice(&payload);
        let name = envelope
            .get("signatures")?
            .as_array()?
            .iter()
            .find_map(|s| signer(keys, &pae, s.get("sig")?.as_str()?))?;
        let statement: serde_json::Value = serde_json::from_slice(&payload).ok()?;
        let names_digest = statement
            .get("subject")?
            .as_array()?
            .iter()
            .any(|s| s.pointer("/digest/sha256").and_then(|d| d.as_str()) == Some(hex_digest));
        return names_digest.then_some(name);
    }
    let message = bundle.get("messageSignature")?;
    let signed_digest = base64(message.pointer("/messageDigest/digest")?.as_str()?)?;
    if hex::encode(&signed_digest) != hex_digest {
        return None;
    }
    let signature = DerSignature::from_bytes(&base64(message.get("signature")?.as_str()?)?).ok()?;
    let (name, _) = keys
        .0
        .iter()
        .find(|(_, key)| key.verify_prehash(&signed_digest, &signature).is_ok())?;
    Some(name)
}

/// What a signature is checked for: the manifest `digest` of `url` (in the messages as
/// `what`, e.g. `revision v1@sha256:…` or `version 6.14.1`), for an object in `namespace`.
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub url: &'a str,
    pub digest: &'a str,
    pub what: &'a str,
}

/// `spec.verify` of an OCIRepository or a HelmChart from an OCI HelmRepository: the signature
/// of the manifest is checked before anything is pulled, and `SourceVerified` recorded. cosign
/// with public keys is supported; keyless cosign and notation fail closed (stalled) rather than
/// pass unverified. Without `spec.verify` the condition is removed.
#[allow(clippy::too_many_arguments)]
pub async fn verify_signature<S: ReconcileStatus>(
    spec: Option<&OCIRepositoryVerification>,
    subject: &Subject<'_>,
    status: &mut S,
    generation: Option<i64>,
    client: &kube::Client,
    registry: &Puller,
    timeout: Duration,
) -> Result<(), ReconcileError> {
    let Some(spec) = spec else {
        conditions::delete(status.conditions_mut(), ct::SOURCE_VERIFIED);
        return Ok(());
    };
    let provider = if spec.provider.is_empty() {
        "cosign"
    } else {
        spec.provider.as_str()
    };
    let ns = subject.namespace;
    let outcome = match (provider, &spec.secret_ref) {
        ("cosign", Some(r)) => {
            let keys = common::secret_data(client, ns, &r.name)
                .await
                .map_err(|p| p.message().to_string())
                .and_then(|data| keys_from_secret(&format!("{ns}/{}", r.name), &data));
            match keys {
                Ok(keys) => common::within(timeout, "verification", verify(registry, subject.digest, &keys))
                    .await
                    .map_err(VerificationFailure::Failed),
                Err(m) => Err(VerificationFailure::Failed(m)),
            }
        }
        ("cosign", None) => Err(VerificationFailure::Unsupported(
            "keyless verification (matchOIDCIdentity) is not supported: give verify.secretRef with public keys".into(),
        )),
        (other, _) => Err(VerificationFailure::Unsupported(format!(
            "verification provider '{other}' is not supported"
        ))),
    };
    let outcome = outcome
        .map(|key| format!("verified signature of {} with key '{key}'", subject.what))
        .map_err(|failure| {
            failure.map(|m| {
                format!(
                    "failed to verify the signature using provider '{provider}': {m} for '{}@{}'",
                    subject.url, subject.digest
                )
            })
        });
    common::record_verification(status, generation, outcome)
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
    fn bundles_count_with_a_trusted_key_over_the_same_digest() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let signer = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let trusted = keys(&signer);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let digest = format!("sha256:{}", "ab".repeat(32));
        // A DSSE envelope with an in-toto statement about the digest.
        let statement = format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"r/app","digest":{{"sha256":"{}"}}}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{{}}}}"#,
            "ab".repeat(32)
        );
        let payload_type = "application/vnd.in-toto+json";
        let pae = format!(
            "DSSEv1 {} {payload_type} {} {statement}",
            payload_type.len(),
            statement.len()
        );
        let sig: DerSignature = signer.sign(pae.as_bytes());
        let dsse = serde_json::json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "dsseEnvelope": {"payload": b64(statement.as_bytes()), "payloadType": payload_type,
            "signatures": [{"sig": b64(sig.as_bytes())}]}})
        .to_string();
        assert_eq!(
            bundle_verified_by(&trusted, dsse.as_bytes(), &digest),
            Some("cosign.pub")
        );
        let other = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(bundle_verified_by(&trusted, dsse.as_bytes(), &other), None);
        let stranger = keys(&SigningKey::from_slice(&[9u8; 32]).unwrap());
        assert_eq!(bundle_verified_by(&stranger, dsse.as_bytes(), &digest), None);
        // A message signature over the digest.
        let raw = hex::decode("ab".repeat(32)).unwrap();
        let sig: p256::ecdsa::Signature = signer.sign_prehash(&raw).unwrap();
        let message = serde_json::json!({"messageSignature": {"messageDigest": {"algorithm": "SHA2_256",
            "digest": b64(&raw)}, "signature": b64(sig.to_der().as_bytes())}})
        .to_string();
        assert_eq!(
            bundle_verified_by(&trusted, message.as_bytes(), &digest),
            Some("cosign.pub")
        );
        assert_eq!(bundle_verified_by(&trusted, message.as_bytes(), &other), None);
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
