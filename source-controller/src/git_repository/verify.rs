//! Verification of commit and tag signatures (`spec.verify`) with the public keys of
//! `verify.secretRef`, as Flux reads them: `*.sshpub` entries hold SSH public keys (one
//! authorized_keys line each), every other entry armored OpenPGP keys. A signature is checked
//! with the keys of its kind: OpenPGP, or SSH (`ssh-keygen -Y sign`, namespace `git`, what
//! `gpg.format=ssh` makes git write).

use git2::{Oid, Repository};
use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    types::KeyDetails,
};
use ssh_key::{HashAlg, SshSig};
use std::{collections::BTreeMap, path::Path};

/// How an SSH signature block starts.
const SSH_SIGNATURE: &str = "-----BEGIN SSH SIGNATURE-----";
/// How an OpenPGP signature block starts.
const PGP_SIGNATURE: &str = "-----BEGIN PGP SIGNATURE-----";
/// The namespace git signs in with SSH keys.
const GIT_SSH_NAMESPACE: &str = "git";

/// Trusted public keys.
pub struct Keyring {
    pgp: Vec<SignedPublicKey>,
    ssh: Vec<ssh_key::PublicKey>,
}

/// Reads every public key in the Secret's data.
pub fn keyring_from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Keyring, String> {
    let mut keyring = Keyring {
        pgp: Vec::new(),
        ssh: Vec::new(),
    };
    for (name, value) in data {
        let text = String::from_utf8_lossy(value);
        if name.ends_with(".sshpub") {
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            for line in lines {
                let key = ssh_key::PublicKey::from_openssh(line)
                    .map_err(|e| format!("secret '{secret}' key '{name}': not an SSH public key: {e}"))?;
                keyring.ssh.push(key);
            }
            continue;
        }
        let (parsed, _) = SignedPublicKey::from_string_many(&text)
            .map_err(|e| format!("secret '{secret}' key '{name}': not an armored OpenPGP public key: {e}"))?;
        for key in parsed {
            keyring
                .pgp
                .push(key.map_err(|e| format!("secret '{secret}' key '{name}': {e}"))?);
        }
    }
    if keyring.pgp.is_empty() && keyring.ssh.is_empty() {
        return Err(format!("secret '{secret}' holds no public keys"));
    }
    Ok(keyring)
}

impl Keyring {
    /// Verifies an armored detached signature (OpenPGP or SSH) over `data`; returns the signing
    /// key: its OpenPGP key id, or its SSH SHA256 fingerprint.
    pub fn verify(&self, armored: &str, data: &[u8]) -> Result<String, String> {
        let armored = armored.trim();
        if armored.starts_with(SSH_SIGNATURE) {
            let sig = SshSig::from_pem(armored).map_err(|e| format!("unreadable signature: {e}"))?;
            return self
                .ssh
                .iter()
                .find(|key| key.verify(GIT_SSH_NAMESPACE, data, &sig).is_ok())
                .map(|key| key.fingerprint(HashAlg::Sha256).to_string())
                .ok_or_else(|| "no trusted key verifies the signature".into());
        }
        let (sig, _) =
            DetachedSignature::from_string(armored).map_err(|e| format!("unreadable signature: {e}"))?;
        for key in &self.pgp {
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
    // The signature block is appended to the tag message.
    let at = [PGP_SIGNATURE, SSH_SIGNATURE]
        .iter()
        .filter_map(|begin| raw.windows(begin.len()).position(|w| w == begin.as_bytes()))
        .min()
        .ok_or_else(|| format!("signature verification of tag '{tag}' failed: the tag is not signed"))?;
    let key = keyring
        .verify(&String::from_utf8_lossy(&raw[at..]), &raw[..at])
        .map_err(|e| format!("signature verification of tag '{tag}' failed: {e}"))?;
    Ok(format!("tag '{tag}' with key '{key}'"))
}
