//! The single seam for symmetric encryption: nothing else in the crate touches AES.
//!
//! Every vault value is an envelope (DESIGN 3.1):
//!
//! ```text
//! [format version = 1][key id][nonce: 12 bytes][ciphertext || tag: 16 bytes]
//! ```
//!
//! sealed with AES-256-GCM (NIST SP 800-38D) through `aws-lc-rs`. The nonce is 96 random bits
//! from the system CSPRNG for every seal; SP 800-38D section 8.3 bounds random nonces at 2^32
//! invocations per key, far above what one gateway's vault writes between key rotations.
//!
//! The associated data binds the envelope to where it is stored:
//!
//! ```text
//! [format version][key id] || tree name || 0x00 || record key bytes
//! ```
//!
//! so a value copied under another record key (alice's GitHub token moved under bob's key) or
//! into another tree fails to open (DESIGN 3.2 invariant 3). The two header bytes are included
//! too, so that a later format version cannot be downgraded by editing the first byte.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::keyring::Keyring;

/// The envelope format this build writes and reads.
pub(super) const FORMAT_VERSION: u8 = 1;
/// Length of raw key material: AES-256.
pub(super) const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2 + NONCE_LEN;

/// Why an envelope did not open. Carries no key material and no plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum SealError {
    #[error("the sealed value is truncated")]
    Truncated,
    #[error("unknown envelope format version {0}")]
    UnknownVersion(u8),
    #[error("sealed with key id {0}, which the keyring does not hold")]
    UnknownKeyId(u8),
    #[error(
        "authentication failed (wrong key, tampered value, or value moved from another record)"
    )]
    Authentication,
    #[error("the system random generator failed")]
    Random,
    #[error("the encryption library refused the operation")]
    Crypto,
}

/// One AES-256-GCM key, ready to use. Built by the keyring from its raw material.
pub(super) struct AeadKey(LessSafeKey);

impl AeadKey {
    pub(super) fn new(material: &[u8; KEY_LEN]) -> Result<AeadKey, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, material).map_err(|_| SealError::Crypto)?;
        Ok(AeadKey(LessSafeKey::new(unbound)))
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey([redacted])")
    }
}

/// Fresh key material from the system CSPRNG.
pub(super) fn random_key_material() -> Result<Zeroizing<[u8; KEY_LEN]>, SealError> {
    let mut material = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(material.as_mut())
        .map_err(|_| SealError::Random)?;
    Ok(material)
}

/// Seals `plaintext` with the keyring's current key for `tree` / `record_key`.
pub(super) fn seal(
    keyring: &Keyring,
    tree: &str,
    record_key: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let (key_id, key) = keyring.current();
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut envelope = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    envelope.push(FORMAT_VERSION);
    envelope.push(key_id);
    envelope.extend_from_slice(&nonce);
    envelope.extend_from_slice(plaintext);
    let aad = associated_data(FORMAT_VERSION, key_id, tree, record_key);
    // Encrypts in place, so the only copy of the plaintext in `envelope` becomes ciphertext.
    let tag = key
        .0
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut envelope[HEADER_LEN..],
        )
        .map_err(|_| SealError::Crypto)?;
    envelope.extend_from_slice(tag.as_ref());
    Ok(envelope)
}

/// Opens an envelope sealed by [`seal`] for the same `tree` / `record_key`, with whichever
/// keyring key its key id names. The plaintext is zeroed when the returned buffer drops.
pub(super) fn open(
    keyring: &Keyring,
    tree: &str,
    record_key: &[u8],
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if envelope.len() < HEADER_LEN + TAG_LEN {
        return Err(SealError::Truncated);
    }
    let (version, key_id) = (envelope[0], envelope[1]);
    if version != FORMAT_VERSION {
        return Err(SealError::UnknownVersion(version));
    }
    let key = keyring.get(key_id).ok_or(SealError::UnknownKeyId(key_id))?;
    let nonce = Nonce::try_assume_unique_for_key(&envelope[2..HEADER_LEN])
        .map_err(|_| SealError::Truncated)?;
    let aad = associated_data(version, key_id, tree, record_key);
    let mut buffer = Zeroizing::new(envelope[HEADER_LEN..].to_vec());
    let plaintext_len = key
        .0
        .open_in_place(nonce, Aad::from(aad.as_slice()), buffer.as_mut_slice())
        .map_err(|_| SealError::Authentication)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

/// The key id an envelope claims to be sealed with, if it is a version-1 envelope. Used by
/// rotation to find records that still need re-sealing; not authenticated by itself.
pub(super) fn envelope_key_id(envelope: &[u8]) -> Option<u8> {
    match envelope {
        [FORMAT_VERSION, key_id, ..] => Some(*key_id),
        _ => None,
    }
}

fn associated_data(version: u8, key_id: u8, tree: &str, record_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(2 + tree.len() + 1 + record_key.len());
    aad.push(version);
    aad.push(key_id);
    aad.extend_from_slice(tree.as_bytes());
    aad.push(0);
    aad.extend_from_slice(record_key);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_binds_the_location() {
        let keyring = Keyring::generate().unwrap();
        let sealed = seal(&keyring, "tokens", b"alice", b"hello").unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + 5 + TAG_LEN);
        assert_eq!(envelope_key_id(&sealed), Some(keyring.current_key_id()));
        assert_eq!(
            open(&keyring, "tokens", b"alice", &sealed)
                .unwrap()
                .as_slice(),
            b"hello"
        );
        assert_eq!(
            open(&keyring, "tokens", b"bob", &sealed),
            Err(SealError::Authentication)
        );
        assert_eq!(
            open(&keyring, "api_keys", b"alice", &sealed),
            Err(SealError::Authentication)
        );
        // "tokens" + 0x00 + "alice" must differ from "tokens\0a" + 0x00 + "lice" etc.
        assert_eq!(
            open(&keyring, "tokensa", b"lice", &sealed),
            Err(SealError::Authentication)
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let keyring = Keyring::generate().unwrap();
        let a = seal(&keyring, "t", b"k", b"same").unwrap();
        let b = seal(&keyring, "t", b"k", b"same").unwrap();
        assert_ne!(a[2..HEADER_LEN], b[2..HEADER_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn every_single_byte_change_is_refused_without_panicking() {
        let keyring = Keyring::generate().unwrap();
        let sealed = seal(&keyring, "t", b"k", b"some plaintext").unwrap();
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert!(
                open(&keyring, "t", b"k", &tampered).is_err(),
                "byte {index}"
            );
        }
        for len in 0..sealed.len() {
            assert!(
                open(&keyring, "t", b"k", &sealed[..len]).is_err(),
                "length {len}"
            );
        }
    }
}
