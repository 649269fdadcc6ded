//! SOPS decryption of Secrets, with age and OpenPGP keys, as kustomize-controller does it after
//! the build.
//!
//! A SOPS document keeps its data key encrypted to each recipient: under `sops.age[].enc` (an
//! armored age file) and `sops.pgp[].enc` (an armored OpenPGP message). Every encrypted value is
//! `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>]`, sealed with the data key and the
//! value's path (`data:password:`) as additional data. Like Flux, the document MAC is not
//! checked: kustomize adds labels and namespaces to the object, which changes what it covers.
//! Each value is still authenticated by its own GCM tag.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine;
use driftless_kustomize::kustomization::Kustomization;
use regex::Regex;
use serde_json::Value;

/// AES-256-GCM with SOPS's 32-byte nonces.
type SopsCipher = AesGcm<Aes256, U32>;

static ENCRYPTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^ENC\[AES256_GCM,data:(.*),iv:(.*),tag:(.*),type:(.*)\]$").expect("valid regex")
});

/// The keys of the decryption Secret: age identities from its `*.agekey` entries, OpenPGP
/// secret keys from its `*.asc` entries (as Flux reads them).
pub struct Keys {
    identities: Vec<age::x25519::Identity>,
    openpgp: Vec<pgp::composed::SignedSecretKey>,
}

impl Keys {
    /// Parses age identity files (one `AGE-SECRET-KEY-1…` per line, `#` comments allowed) and
    /// armored OpenPGP secret keys (several may follow each other in one entry).
    pub fn from_secret_data<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Keys, String> {
        let mut identities = Vec::new();
        let mut openpgp = Vec::new();
        for (name, value) in entries {
            if name.ends_with(".asc") {
                openpgp.extend(openpgp_keys(value).map_err(|e| {
                    format!("failed to import '{name}' data from the decryption Secret: {e}")
                })?);
                continue;
            }
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
        Ok(Keys { identities, openpgp })
    }
}

fn openpgp_keys(armored: &[u8]) -> Result<Vec<pgp::composed::SignedSecretKey>, String> {
    use pgp::composed::{Deserializable, SignedSecretKey};
    let (keys, _) = SignedSecretKey::from_armor_many(armored).map_err(|e| e.to_string())?;
    let keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Err("no OpenPGP secret key found".into());
    }
    Ok(keys)
}

/// The data key from one `sops.pgp[].enc` message, when one of `keys` can open it.
fn openpgp_data_key(message: &str, keys: &[pgp::composed::SignedSecretKey]) -> Option<Vec<u8>> {
    let (message, _) = pgp::composed::Message::from_armor(message.as_bytes()).ok()?;
    let password = pgp::types::Password::empty();
    let mut plain = message
        .decrypt_with_keys(vec![&password; keys.len()], keys.iter().collect())
        .ok()?;
    if plain.is_compressed() {
        plain = plain.decompress().ok()?;
    }
    plain.as_data_vec().ok()
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
    let cipher = cipher(&metadata, keys)?;
    walk(object, &mut Vec::new(), &cipher)
}

fn cipher(metadata: &Value, keys: &Keys) -> Result<SopsCipher, String> {
    let data_key = data_key(metadata, keys)?;
    Ok(SopsCipher::new(GenericArray::from_slice(&data_key)))
}

/// How SOPS stores a file, from its extension (as `sops` itself decides).
#[derive(Clone, Copy, Debug, PartialEq)]
enum FileFormat {
    Yaml,
    Json,
    Dotenv,
    /// Any other file: a JSON document whose `data` holds the whole content.
    Binary,
}

impl FileFormat {
    fn of(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
            "yaml" | "yml" => FileFormat::Yaml,
            "json" => FileFormat::Json,
            "env" => FileFormat::Dotenv,
            _ => FileFormat::Binary,
        }
    }
}

/// The files that the secretGenerators of the kustomization in `dir`, and of the local
/// directories it includes, read and that SOPS encrypted. Flux decrypts these before the build,
/// so the generated Secrets hold the plain values. Paths outside `root` are left to the build
/// to refuse.
pub fn encrypted_generator_sources(dir: &Path, root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut visited = HashSet::new();
    visit_kustomization(dir, root, &mut visited, &mut found);
    found
}

fn inside(path: &Path, root: &Path) -> Option<PathBuf> {
    let path = path.canonicalize().ok()?;
    path.starts_with(root.canonicalize().ok()?).then_some(path)
}

fn visit_kustomization(dir: &Path, root: &Path, visited: &mut HashSet<PathBuf>, found: &mut Vec<PathBuf>) {
    let Some(dir) = inside(dir, root) else { return };
    if !visited.insert(dir.clone()) {
        return;
    }
    let Some(text) = driftless_kustomize::kustomization::FILE_NAMES
        .iter()
        .find_map(|name| std::fs::read_to_string(dir.join(name)).ok())
    else {
        return;
    };
    let Some(kustomization) = driftless_kustomize::yaml::parse_documents_yaml11(&text)
        .ok()
        .and_then(|docs| docs.into_iter().next())
        .and_then(|doc| serde_json::from_value::<Kustomization>(doc).ok())
    else {
        return;
    };
    for generator in &kustomization.secret_generator {
        let files = generator
            .files
            .iter()
            .map(|f| f.split_once('=').map_or(f.as_str(), |(_, path)| path));
        let envs = generator
            .envs
            .iter()
            .map(String::as_str)
            .chain((!generator.env.is_empty()).then_some(generator.env.as_str()));
        for source in files.chain(envs) {
            if let Some(path) = inside(&dir.join(source), root)
                && !found.contains(&path)
                && is_encrypted_file(&path)
            {
                found.push(path);
            }
        }
    }
    for entry in kustomization
        .resources
        .iter()
        .chain(&kustomization.bases)
        .chain(&kustomization.components)
    {
        let path = dir.join(entry);
        if path.is_dir() {
            visit_kustomization(&path, root, visited, found);
        }
    }
}

fn is_encrypted_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    match FileFormat::of(path) {
        FileFormat::Dotenv => text.lines().any(|l| l.starts_with("sops_mac=")),
        FileFormat::Yaml | FileFormat::Json | FileFormat::Binary => {
            driftless_kustomize::yaml::parse_documents(&text)
                .ok()
                .and_then(|docs| docs.into_iter().next())
                .is_some_and(|doc| is_encrypted(&doc))
        }
    }
}

/// Decrypts a SOPS-encrypted file in place, in the format its extension names.
pub fn decrypt_file(path: &Path, keys: &Keys) -> Result<(), String> {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let failed = |e: String| format!("failed to decrypt '{name}': {e}");
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let plain = match FileFormat::of(path) {
        FileFormat::Dotenv => decrypt_dotenv(&text, keys).map_err(failed)?,
        format => {
            let mut document = driftless_kustomize::yaml::parse_documents(&text)
                .map_err(failed)?
                .into_iter()
                .next()
                .unwrap_or_default();
            decrypt(&mut document, keys).map_err(failed)?;
            match format {
                FileFormat::Yaml => driftless_kustomize::yaml::to_yaml(&document),
                FileFormat::Json => {
                    serde_json::to_string_pretty(&document).map_err(|e| failed(e.to_string()))?
                }
                _ => match document.get("data") {
                    Some(Value::String(data)) => data.clone(),
                    _ => return Err(failed("no data in the binary SOPS document".into())),
                },
            }
        }
    };
    std::fs::write(path, plain).map_err(|e| failed(e.to_string()))
}

/// SOPS's dotenv format: `KEY=ENC[…]` lines, encrypted comments, and the metadata flattened into
/// `sops_…` lines (`sops_age__list_0__map_enc=…`, newlines escaped as `\n`).
fn decrypt_dotenv(text: &str, keys: &Keys) -> Result<String, String> {
    let mut recipients: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut entries = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if let Some(meta) = key.strip_prefix("sops_") {
            // e.g. age__list_0__map_enc → (age, 0) enc
            if let Some((kind, rest)) = meta.split_once("__list_")
                && let Some((index, field)) = rest.split_once("__map_")
                && field == "enc"
            {
                recipients.insert((kind.to_string(), index.to_string()), value.replace("\\n", "\n"));
            }
            continue;
        }
        if !line.starts_with('#') {
            entries.push((key.to_string(), value.to_string()));
        }
    }
    let mut metadata = serde_json::Map::new();
    for ((kind, _), enc) in recipients {
        let list = metadata.entry(kind).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(serde_json::json!({ "enc": enc }));
        }
    }
    let cipher = cipher(&Value::Object(metadata), keys)?;
    let mut out = String::new();
    for (key, value) in entries {
        let plain = if value.starts_with("ENC[") {
            match decrypt_value(&value, &format!("{key}:"), &cipher)
                .map_err(|e| format!("failed to decrypt '{key}': {e}"))?
            {
                Value::String(s) => s,
                other => other.to_string(),
            }
        } else {
            value
        };
        out.push_str(&format!("{key}={plain}\n"));
    }
    Ok(out)
}

fn data_key(metadata: &Value, keys: &Keys) -> Result<Vec<u8>, String> {
    let recipients = |kind: &str| {
        metadata
            .get(kind)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (age_recipients, openpgp_recipients) = (recipients("age"), recipients("pgp"));
    if age_recipients.is_empty() && openpgp_recipients.is_empty() {
        return Err(
            "only age and OpenPGP keys are supported; the document has no sops.age or sops.pgp recipients"
                .into(),
        );
    }
    for recipient in &openpgp_recipients {
        let Some(enc) = recipient.get("enc").and_then(Value::as_str) else {
            continue;
        };
        if let Some(key) = openpgp_data_key(enc, &keys.openpgp).filter(|k| k.len() == 32) {
            return Ok(key);
        }
    }
    for recipient in &age_recipients {
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
    Err("failed to get the data key required to decrypt the SOPS file: no age identity or OpenPGP key of the decryption Secret matches its recipients".into())
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
