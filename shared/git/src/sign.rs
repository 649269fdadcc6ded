//! Commit signing keys as Flux reads them from a Secret: OpenPGP (`git.asc`, `passphrase` when
//! the key is protected) or SSH (`identity`, `password` when encrypted). A signature is the
//! armored detached signature git stores in the commit's `gpgsig` header; SSH signatures use
//! namespace `git` and SHA-512, as `ssh-keygen -Y sign` run by git.

use driftless_runtime::secrets::secret_text;
use pgp::{
    composed::{Deserializable, DetachedSignature, SignedSecretKey},
    crypto::hash::HashAlgorithm,
    types::Password,
};
use ssh_key::{HashAlg, LineEnding, PrivateKey, rand_core::OsRng};
use std::collections::BTreeMap;

/// A key commits are signed with.
pub enum SigningKey {
    Pgp(Box<SignedSecretKey>, Password),
    Ssh(Box<PrivateKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Pgp(..) => "SigningKey::Pgp(redacted)",
            SigningKey::Ssh(_) => "SigningKey::Ssh(redacted)",
        })
    }
}

impl SigningKey {
    /// Reads the key of `kind` (`gpg`, the default, or `ssh`) from Secret `data` (`secret`
    /// names it in errors).
    pub fn from_secret(kind: &str, secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        match kind {
            "" | "gpg" => {
                let armored = secret_text(data, "git.asc").ok_or_else(|| {
                    format!("signing key secret '{secret}' does not contain a 'git.asc' key")
                })?;
                let (key, _) = SignedSecretKey::from_string(&armored)
                    .map_err(|e| format!("signing key secret '{secret}': unreadable OpenPGP key: {e}"))?;
                let passphrase = secret_text(data, "passphrase");
                let protected = key.primary_key.secret_params().is_encrypted();
                if protected && passphrase.is_none() {
                    return Err(format!(
                        "can not use passphrase protected signing key without 'passphrase' field present in secret {secret}"
                    ));
                }
                let password = passphrase.map(Password::from).unwrap_or_else(Password::empty);
                Ok(SigningKey::Pgp(Box::new(key), password))
            }
            "ssh" => {
                let identity = secret_text(data, "identity").ok_or_else(|| {
                    format!("signing key secret '{secret}' does not contain an 'identity' key")
                })?;
                let mut key = PrivateKey::from_openssh(format!("{identity}\n"))
                    .map_err(|e| format!("signing key secret '{secret}': unreadable SSH key: {e}"))?;
                if key.is_encrypted() {
                    let password = secret_text(data, "password").ok_or_else(|| {
                        format!(
                            "can not use passphrase protected signing key without 'password' field present in secret {secret}"
                        )
                    })?;
                    key = key.decrypt(password.as_bytes()).map_err(|e| {
                        format!("signing key secret '{secret}': cannot decrypt the SSH key: {e}")
                    })?;
                }
                Ok(SigningKey::Ssh(Box::new(key)))
            }
            other => Err(format!("unsupported signing key type '{other}' (gpg or ssh)")),
        }
    }

    /// The armored detached signature of `data` (a commit without its `gpgsig` header).
    pub fn sign(&self, data: &[u8]) -> Result<String, String> {
        match self {
            SigningKey::Pgp(key, password) => {
                let signature = DetachedSignature::sign_binary_data(
                    OsRng,
                    &key.primary_key,
                    password,
                    HashAlgorithm::Sha256,
                    data,
                )
                .map_err(|e| format!("signing the commit: {e}"))?;
                signature
                    .to_armored_string(Default::default())
                    .map_err(|e| format!("signing the commit: {e}"))
            }
            SigningKey::Ssh(key) => key
                .sign("git", HashAlg::Sha512, data)
                .and_then(|sig| sig.to_pem(LineEnding::LF))
                .map_err(|e| format!("signing the commit: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ssh_keys_sign_as_git_does_and_need_their_password() {
        let key = PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let public = key.public_key().clone();
        let pem = key.to_openssh(LineEnding::LF).unwrap().to_string();
        let data = BTreeMap::from([("identity".to_string(), pem.into_bytes())]);
        let signer = SigningKey::from_secret("ssh", "ns/key", &data).unwrap();
        let armored = signer.sign(b"tree abc\n").unwrap();
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"), "{armored}");
        let sig = ssh_key::SshSig::from_pem(&armored).unwrap();
        public.verify("git", b"tree abc\n", &sig).unwrap();

        let encrypted = key.encrypt(&mut OsRng, "s3cret").unwrap();
        let pem = encrypted.to_openssh(LineEnding::LF).unwrap().to_string();
        let mut data = BTreeMap::from([("identity".to_string(), pem.into_bytes())]);
        let e = SigningKey::from_secret("ssh", "ns/key", &data).unwrap_err();
        assert!(e.contains("without 'password' field"), "{e}");
        data.insert("password".into(), b"s3cret".to_vec());
        SigningKey::from_secret("ssh", "ns/key", &data).unwrap();
    }

    #[test]
    fn missing_keys_are_named() {
        let e = SigningKey::from_secret("gpg", "ns/key", &BTreeMap::new()).unwrap_err();
        assert_eq!(e, "signing key secret 'ns/key' does not contain a 'git.asc' key");
        let e = SigningKey::from_secret("ssh", "ns/key", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e,
            "signing key secret 'ns/key' does not contain an 'identity' key"
        );
    }
}
