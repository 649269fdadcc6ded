//! SOPS decryption of Secrets, with age keys, as kustomize-controller does it after the build.
//!
//! A SOPS document keeps its data key encrypted to each recipient under `sops.age[].enc` (an
//! armored age file). Every encrypted value is
//! `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>]`, sealed with the data key and the
//! value's path (`data:password:`) as additional data. Like Flux, the document MAC is not
//! checked: kustomize adds labels and namespaces to the object, which changes what it covers.
//! Each value is still authenticated by its own GCM tag.

use std::str::FromStr;
use std::sync::LazyLock;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine;
use regex::Regex;
use serde_json::Value;

/// AES-256-GCM with SOPS's 32-byte nonces.
type SopsCipher = AesGcm<Aes256, U32>;

static ENCRYPTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^ENC\[AES256_GCM,data:(.*),iv:(.*),tag:(.*),type:(.*)\]$").expect("valid regex")
});

/// age identities, from the `*.agekey` entries of the decryption Secret.
pub struct Keys {
    identities: Vec<age::x25519::Identity>,
}

impl Keys {
    /// Parses age identity files: one `AGE-SECRET-KEY-1…` per line, `#` comments allowed.
    pub fn from_secret_data<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Keys, String> {
        let mut identities = Vec::new();
        for (name, value) in entries {
            if !name.ends_with(".agekey") {
                continue;
            }
            let text = String::from_utf8_lossy(value);
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let identity = age::x25519::Identity::from_str(line)
                    .map_err(|e| format!("failed to import '{name}' data from the decryption Secret: {e}"))?;
                identities.push(identity);
            }
        }
        Ok(Keys { identities })
    }
}

/// Is this object SOPS-encrypted (it has `sops.mac`)?
pub fn is_encrypted(object: &Value) -> bool {
    object
        .get("sops")
        .and_then(|s| s.get("mac"))
        .is_some_and(|m| !m.is_null())
}

/// Decrypts an encrypted object in place and removes its `sops` metadata.
pub fn decrypt(object: &mut Value, keys: &Keys) -> Result<(), String> {
    let Some(metadata) = object.as_object_mut().and_then(|o| o.remove("sops")) else {
        return Ok(());
    };
    let data_key = data_key(&metadata, keys)?;
    let cipher = SopsCipher::new(GenericArray::from_slice(&data_key));
    walk(object, &mut Vec::new(), &cipher)
}

fn data_key(metadata: &Value, keys: &Keys) -> Result<Vec<u8>, String> {
    let recipients = metadata
        .get("age")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if recipients.is_empty() {
        return Err("only age keys are supported; the document has no sops.age recipients".into());
    }
    for recipient in &recipients {
        let Some(enc) = recipient.get("enc").and_then(Value::as_str) else {
            continue;
        };
        let reader = age::armor::ArmoredReader::new(enc.as_bytes());
        let Ok(decryptor) = age::Decryptor::new(reader) else {
            continue;
        };
        let identities = keys.identities.iter().map(|i| i as &dyn age::Identity);
        if let Ok(mut plaintext) = decryptor.decrypt(identities) {
            let mut key = Vec::new();
            if std::io::Read::read_to_end(&mut plaintext, &mut key).is_ok() && key.len() == 32 {
                return Ok(key);
            }
        }
    }
    Err("failed to get the data key required to decrypt the SOPS file: no age identity of the decryption Secret matches its recipients".into())
}

fn walk(node: &mut Value, path: &mut Vec<String>, cipher: &SopsCipher) -> Result<(), String> {
    match node {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                path.push(key.clone());
                walk(value, path, cipher)?;
                path.pop();
            }
            Ok(())
        }
        // List elements share their parent's path, as in SOPS.
        Value::Array(items) => items.iter_mut().try_for_each(|item| walk(item, path, cipher)),
        Value::String(text) if text.starts_with("ENC[") => {
            let additional_data = format!("{}:", path.join(":"));
            *node = decrypt_value(text, &additional_data, cipher)
                .map_err(|e| format!("failed to decrypt '{}': {e}", path.join(".")))?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn decrypt_value(text: &str, additional_data: &str, cipher: &SopsCipher) -> Result<Value, String> {
    let captures = ENCRYPTED.captures(text).ok_or("malformed ENC[] value")?;
    let b64 = |i: usize| {
        base64::engine::general_purpose::STANDARD
            .decode(&captures[i])
            .map_err(|e| e.to_string())
    };
    let (mut data, iv, tag) = (b64(1)?, b64(2)?, b64(3)?);
    if iv.len() != 32 {
        return Err(format!("unexpected IV length {}", iv.len()));
    }
    data.extend_from_slice(&tag);
    let plaintext = cipher
        .decrypt(
            GenericArray::from_slice(&iv),
            Payload {
                msg: &data,
                aad: additional_data.as_bytes(),
            },
        )
        .map_err(|_| "authentication failed (wrong key or tampered value)".to_string())?;
    let plain = String::from_utf8(plaintext).map_err(|_| "value is not UTF-8".to_string())?;
    Ok(match &captures[4] {
        "int" => plain
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(plain)),
        "float" => plain
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(plain)),
        "bool" => Value::Bool(plain.eq_ignore_ascii_case("true")),
        _ => Value::String(plain),
    })
}
