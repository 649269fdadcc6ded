//! OpenPGP verification of commit and tag signatures (`spec.verify`), with the public keys of
//! `verify.secretRef` (every key except `*.sshpub` is read as armored OpenPGP, as Flux does).

use git2::{Oid, Repository};
use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    types::KeyDetails,
};
use std::{collections::BTreeMap, path::Path};

/// Trusted public keys.
pub struct Keyring(Vec<SignedPublicKey>);

/// Reads every OpenPGP public key in the Secret's data.
pub fn keyring_from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Keyring, String> {
    let mut keys = Vec::new();
    for (name, value) in data.iter().filter(|(k, _)| !k.ends_with(".sshpub")) {
        let text = String::from_utf8_lossy(value);
        let (parsed, _) = SignedPublicKey::from_string_many(&text)
            .map_err(|e| format!("secret '{secret}' key '{name}': not an armored OpenPGP public key: {e}"))?;
        for key in parsed {
            keys.push(key.map_err(|e| format!("secret '{secret}' key '{name}': {e}"))?);
        }
    }
    if keys.is_empty() {
        return Err(format!("secret '{secret}' holds no OpenPGP public keys"));
    }
    Ok(Keyring(keys))
}

impl Keyring {
    /// Verifies an armored detached signature over `data`; returns the signing key id.
    pub fn verify(&self, armored: &str, data: &[u8]) -> Result<String, String> {
        let (sig, _) =
            DetachedSignature::from_string(armored).map_err(|e| format!("unreadable signature: {e}"))?;
        for key in &self.0 {
            if sig.verify(key, data).is_ok() {
                return Ok(key.legacy_key_id().to_string().to_uppercase());
            }
            for sub in &key.public_subkeys {
                if sig.verify(sub, data).is_ok() {
                    return Ok(sub.legacy_key_id().to_string().to_uppercase());
                }
            }
        }
        Err("no trusted key verifies the signature".into())
    }
}

/// Verifies the signature of `commit` in the repository at `dir`.
pub fn verify_commit(keyring: &Keyring, dir: &Path, commit: &str) -> Result<String, String> {
    let repo = Repository::open(dir).map_err(|e| e.message().to_string())?;
    let oid = Oid::from_str(commit).map_err(|e| e.message().to_string())?;
    let (sig, data) = repo.extract_signature(&oid, None).map_err(|_| {
        format!("signature verification of commit '{commit}' failed: the commit is not signed")
    })?;
    let key = keyring
        .verify(&String::from_utf8_lossy(&sig), &data)
        .map_err(|e| format!("signature verification of commit '{commit}' failed: {e}"))?;
    Ok(format!("commit '{commit}' with key '{key}'"))
}

/// Verifies the signature of the annotated tag object `tag_oid` (named `tag`).
pub fn verify_tag(keyring: &Keyring, dir: &Path, tag: &str, tag_oid: &str) -> Result<String, String> {
    let repo = Repository::open(dir).map_err(|e| e.message().to_string())?;
    let oid = Oid::from_str(tag_oid).map_err(|e| e.message().to_string())?;
    let odb = repo.odb().map_err(|e| e.message().to_string())?;
    let object = odb
        .read(oid)
        .map_err(|_| format!("signature verification of tag '{tag}' failed: not an annotated tag"))?;
    let raw = object.data();
    const BEGIN: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
    let at = raw
        .windows(BEGIN.len())
        .position(|w| w == BEGIN)
        .ok_or_else(|| format!("signature verification of tag '{tag}' failed: the tag is not signed"))?;
    let key = keyring
        .verify(&String::from_utf8_lossy(&raw[at..]), &raw[..at])
        .map_err(|e| format!("signature verification of tag '{tag}' failed: {e}"))?;
    Ok(format!("tag '{tag}' with key '{key}'"))
}
