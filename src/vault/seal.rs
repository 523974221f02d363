//! The single seam for symmetric encryption: nothing else in the crate touches AEAD.
//!
//! Envelope: `[format 1][key id][96-bit random nonce][AES-256-GCM ciphertext || tag]`.
//! The associated data is the record's tree name and key, so a sealed value copied under
//! another key (another user's slot) fails to open (DESIGN 3.1).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::VaultError;
use super::keyring::Keyring;

const FORMAT: u8 = 1;
const HEADER: usize = 2 + NONCE_LEN;

pub struct Sealer {
    keys: Vec<(u8, LessSafeKey)>,
    current: u8,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current_key_id", &self.current)
            .finish_non_exhaustive()
    }
}

fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tree.len() + 1 + key.len());
    aad.extend_from_slice(tree.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}

impl Sealer {
    pub fn new(keyring: &Keyring) -> Result<Sealer, VaultError> {
        let keys = keyring
            .keys()
            .iter()
            .map(|(id, bytes)| {
                UnboundKey::new(&AES_256_GCM, bytes)
                    .map(|k| (*id, LessSafeKey::new(k)))
                    .map_err(|_| VaultError::Key("a vault key is not 32 bytes".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sealer {
            keys,
            current: keyring.current_id(),
            random: SystemRandom::new(),
        })
    }

    pub fn current_key_id(&self) -> u8 {
        self.current
    }

    fn key(&self, id: u8) -> Option<&LessSafeKey> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key)
    }

    pub fn seal(&self, tree: &str, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let sealing_key = self
            .key(self.current)
            .ok_or_else(|| VaultError::Key("the current key is missing from the keyring".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Crypto("no randomness for a nonce".into()))?;
        let mut in_out = plaintext.to_vec();
        sealing_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(tree, key)),
                &mut in_out,
            )
            .map_err(|_| VaultError::Crypto("sealing failed".into()))?;
        let mut envelope = Vec::with_capacity(HEADER + in_out.len());
        envelope.push(FORMAT);
        envelope.push(self.current);
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&in_out);
        Ok(envelope)
    }

    /// Opens an envelope sealed for exactly this tree and key.
    pub fn open(&self, tree: &str, key: &[u8], envelope: &[u8]) -> Result<Vec<u8>, VaultError> {
        if envelope.len() < HEADER || envelope[0] != FORMAT {
            return Err(VaultError::Corrupt(format!(
                "{tree}: unknown record format"
            )));
        }
        let opening_key = self.key(envelope[1]).ok_or_else(|| {
            VaultError::Key(format!(
                "{tree}: sealed with key id {} which the keyring does not hold",
                envelope[1]
            ))
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&envelope[2..HEADER]);
        let mut in_out = envelope[HEADER..].to_vec();
        let plaintext = opening_key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(tree, key)),
                &mut in_out,
            )
            .map_err(|_| {
                VaultError::Corrupt(format!(
                    "{tree}: a record failed authentication (tampered, moved, or wrong key)"
                ))
            })?;
        Ok(plaintext.to_vec())
    }

    /// The key id an envelope was sealed with.
    pub fn key_id_of(envelope: &[u8]) -> Option<u8> {
        envelope.get(1).copied()
    }
}
