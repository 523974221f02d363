//! Record keys of the sled vault's trees (the table in the parent module's docs) and how a
//! record is named in an error without revealing a secret.

use aws_lc_rs::digest;

use super::{API_KEYS, CONSENTS, META, TOKENS, TRANSIENT};
use crate::vault::{RecordKind, TokenKey};

/// Record key of a token: user first, for prefix scans by user.
pub(in crate::vault) fn token_record_key(key: &TokenKey) -> Vec<u8> {
    encode_parts(&[&key.user, &key.workload, &key.provider])
}

pub(in crate::vault) fn decode_token_key(bytes: &[u8]) -> Option<TokenKey> {
    let mut parts = decode_parts(bytes)?.into_iter();
    let (user, workload, provider) = (parts.next()?, parts.next()?, parts.next()?);
    parts
        .next()
        .is_none()
        .then(|| TokenKey::new(workload, user, provider))
}

pub(in crate::vault) fn api_key_record_key(workload: &str, name: &str) -> Vec<u8> {
    encode_parts(&[workload, name])
}

/// `(workload, name)` of an API key record key.
pub(in crate::vault) fn decode_api_key_record_key(bytes: &[u8]) -> Option<(String, String)> {
    let mut parts = decode_parts(bytes)?.into_iter();
    let (workload, name) = (parts.next()?, parts.next()?);
    parts.next().is_none().then_some((workload, name))
}

/// Record key of a [`crate::vault::Store::shared_secret`] in the meta tree (`canary` is the
/// only other key there).
pub(in crate::vault) fn shared_secret_record_key(name: &str) -> Vec<u8> {
    [b"secret/".as_slice(), name.as_bytes()].concat()
}

/// The kind's tag byte, then the SHA-256 of the id (ids are bearer-like: only hashes on disk).
pub(in crate::vault) fn consent_record_key(kind: RecordKind, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(kind.tag());
    key.extend_from_slice(digest::digest(&digest::SHA256, id.as_bytes()).as_ref());
    key
}

/// Each part as a u32 big-endian length and its bytes.
pub(super) fn encode_parts(parts: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| 4 + p.len()).sum());
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

fn decode_parts(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let part = rest.get(..len)?;
        parts.push(String::from_utf8(part.to_vec()).ok()?);
        bytes = &rest[len..];
    }
    Some(parts)
}

/// Names a record for an error message without revealing a secret: token and API key record
/// keys are names; consent keys are hashes of bearer-like ids, so they are not shown.
pub(in crate::vault) fn describe(tree_name: &str, record_key: &[u8]) -> String {
    let parts = decode_parts(record_key).unwrap_or_default();
    match (tree_name, parts.as_slice()) {
        (TOKENS, [user, workload, provider]) => format!("token {workload}/{user}/{provider}"),
        (API_KEYS, [workload, name]) => format!("API key {workload}/{name}"),
        (CONSENTS, _) => "a consent session".to_string(),
        (META, _) => "the vault canary".to_string(),
        (TRANSIENT, _) => "a sealed browser value".to_string(),
        (tree, _) => format!("a record in tree {tree}"),
    }
}
